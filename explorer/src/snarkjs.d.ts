declare module "snarkjs" {
  export const groth16: {
    verify(vk: unknown, publicSignals: string[], proof: unknown, logger?: unknown): Promise<boolean>;
  };
}
