// snarkjs ships without type declarations; these cover the calls this package makes.
declare module "snarkjs" {
  export interface Groth16Proof {
    pi_a: string[];
    pi_b: string[][];
    pi_c: string[];
    protocol: string;
    curve: string;
  }
  type Logger = {
    debug(m: string): void;
    info(m: string): void;
    warn(m: string): void;
    error(m: string): void;
  };
  export const groth16: {
    fullProve(
      input: object,
      wasm: string | object,
      zkey: string | object,
      logger?: Logger,
    ): Promise<{ proof: Groth16Proof; publicSignals: string[] }>;
    prove(
      zkey: string,
      wtns: string | object,
      logger?: Logger,
    ): Promise<{ proof: Groth16Proof; publicSignals: string[] }>;
    verify(vk: object, publicSignals: string[], proof: Groth16Proof, logger?: Logger): Promise<boolean>;
  };
  export const zKey: {
    newZKey(r1cs: string, ptau: string, zkey: string, logger?: Logger): Promise<unknown>;
    /** Resolves to the contribution hash (64 bytes). */
    contribute(
      oldZkey: string,
      newZkey: string,
      name: string,
      entropy: string,
      logger?: Logger,
    ): Promise<Uint8Array>;
    /** Resolves to the contribution hash, or false when the beacon parameters are invalid. */
    beacon(
      oldZkey: string,
      newZkey: string,
      name: string,
      beaconHashHex: string,
      numIterationsExp: number,
      logger?: Logger,
    ): Promise<Uint8Array | false>;
    verifyFromR1cs(r1cs: string, ptau: string, zkey: string, logger?: Logger): Promise<boolean>;
    exportVerificationKey(zkey: string, logger?: Logger): Promise<object>;
    exportSolidityVerifier(zkey: string, templates: Record<string, string>, logger?: Logger): Promise<string>;
  };
  export const powersOfTau: {
    newAccumulator(curve: unknown, power: number, file: string, logger?: Logger): Promise<unknown>;
    contribute(
      oldPtau: string,
      newPtau: string,
      name: string,
      entropy: string,
      logger?: Logger,
    ): Promise<unknown>;
    beacon(
      oldPtau: string,
      newPtau: string,
      name: string,
      beaconHashHex: string,
      numIterationsExp: number,
      logger?: Logger,
    ): Promise<unknown>;
    preparePhase2(oldPtau: string, newPtau: string, logger?: Logger): Promise<unknown>;
    verify(ptau: string, logger?: Logger): Promise<boolean>;
  };
  export const r1cs: {
    info(
      file: string,
      logger?: Logger,
    ): Promise<{
      nConstraints: number;
      nPubInputs: number;
      nOutputs: number;
      nPrvInputs: number;
      nVars: number;
    }>;
  };
  export const wtns: {
    calculate(input: object, wasm: string, wtns: string | object): Promise<void>;
    check(r1cs: string, wtns: string, logger?: Logger): Promise<boolean>;
    exportJson(wtns: string | object): Promise<bigint[]>;
  };
  export interface CurvePoints {
    F: { n8: number };
    toRprUncompressed(buff: Uint8Array, offset: number, point: Uint8Array): void;
  }
  export const curves: {
    getCurveFromName(name: string): Promise<{ terminate(): Promise<void>; G1: CurvePoints; G2: CurvePoints }>;
  };
}
