import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as snarkjs from "snarkjs";
import { fail } from "../errors";
import { cacheDir } from "./paths";
import "./snarkjs-types"; // the `snarkjs` module declarations, kept in the emitted .d.ts
import { startStage, type Log, type SnarkjsLogger } from "./progress";

export type { Log } from "./progress";

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** Smallest power of two domain snarkjs needs for a circuit: constraints + public inputs + outputs + 1. */
export function requiredPower(info: { nConstraints: number; nPubInputs: number; nOutputs: number }): number {
  const n = info.nConstraints + info.nPubInputs + info.nOutputs + 1;
  return Math.max(8, Math.ceil(Math.log2(n)));
}

export async function r1csInfo(file: string): ReturnType<typeof snarkjs.r1cs.info> {
  return snarkjs.r1cs.info(file, quiet);
}

export interface PtauChoice {
  file: string;
  power: number;
  source: "dev" | "file";
}

/**
 * A development powers-of-tau file of at least `power`: a cached one when present, else one generated
 * here with a random contribution and cached under .opg/cache/ptau (keyed by power). NOT a secure ceremony:
 * whoever ran it could forge proofs. Production bundles pass --ptau with a public ceremony file.
 */
export async function devPtau(power: number, log: Log): Promise<PtauChoice> {
  const dir = path.join(cacheDir(), "ptau");
  fs.mkdirSync(dir, { recursive: true });
  for (let p = power; p <= 28; p++) {
    const file = path.join(dir, `dev-${p}.ptau`);
    if (fs.existsSync(file)) return { file, power: p, source: "dev" };
  }
  const file = path.join(dir, `dev-${power}.ptau`);
  log(
    `WARNING: generating a DEVELOPMENT powers-of-tau (2^${power}); it is not a secure ceremony. ` +
      `Use --ptau <file> with a public ceremony file for production.`,
  );
  const tmp = `${file}.${process.pid}.tmp`;
  const curve = await snarkjs.curves.getCurveFromName("bn128");
  const t0 = Date.now();
  const step = async (
    what: string,
    body: (logger: SnarkjsLogger) => Promise<unknown>,
    ptauStep?: "contribute" | "prepare",
  ) => {
    const stage = startStage(`ptau 2^${power}: ${what}`, log, {
      ptau: ptauStep && { step: ptauStep, power },
    });
    try {
      await body(stage.logger);
    } finally {
      stage.done();
    }
  };
  await step("new accumulator (1/3)", (l) => snarkjs.powersOfTau.newAccumulator(curve, power, `${tmp}0`, l));
  const entropy = crypto.randomBytes(32).toString("hex");
  await step(
    "random contribution (2/3)",
    (l) => snarkjs.powersOfTau.contribute(`${tmp}0`, `${tmp}1`, "opg dev", entropy, l),
    "contribute",
  );
  await step("prepare phase 2 (3/3)", (l) => snarkjs.powersOfTau.preparePhase2(`${tmp}1`, tmp, l), "prepare");
  fs.rmSync(`${tmp}0`, { force: true });
  fs.rmSync(`${tmp}1`, { force: true });
  fs.renameSync(tmp, file);
  log(`  ptau: 2^${power} generated in ${((Date.now() - t0) / 1000).toFixed(1)} s, cached at ${file}`);
  return { file, power, source: "dev" };
}

/** Name of the phase-2 contribution `compile` makes: the first entry of every bundle's phase 2. */
export const COMPILE_CONTRIBUTION_NAME = "opg zkml compile";

/**
 * Groth16 phase 2: a circuit-specific zkey with one random contribution (named
 * COMPILE_CONTRIBUTION_NAME); resolves to the contribution hash (hex).
 */
export async function groth16Setup(
  r1cs: string,
  ptau: string,
  zkey: string,
  log: Log,
): Promise<{ contributionHash: string }> {
  const tmp = `${zkey}.0`;
  const errors: string[] = [];
  let made: unknown;
  const newKey = startStage("setup: phase 2 new zkey", log, { onError: (m) => errors.push(m) });
  try {
    made = await snarkjs.zKey.newZKey(r1cs, ptau, tmp, newKey.logger);
  } catch (e) {
    errors.push((e as Error).message ?? String(e));
  } finally {
    newKey.done();
  }
  // newZKey reports some failures (a ptau too small or not prepared) by returning -1, not by throwing
  if (errors.length || made === -1 || !fs.existsSync(tmp)) {
    fail("TOOLCHAIN", `Groth16 setup failed with ptau ${ptau}: ${errors.join("; ") || "no zkey written"}`);
  }
  const contribution = startStage("setup: phase 2 contribution", log);
  let hash: Uint8Array;
  try {
    hash = await snarkjs.zKey.contribute(
      tmp,
      zkey,
      COMPILE_CONTRIBUTION_NAME,
      crypto.randomBytes(32).toString("hex"),
      contribution.logger,
    );
  } finally {
    contribution.done();
  }
  fs.rmSync(tmp, { force: true });
  return { contributionHash: Buffer.from(hash).toString("hex") };
}

export async function exportVerificationKey(zkey: string): Promise<object> {
  return snarkjs.zKey.exportVerificationKey(zkey, quiet);
}

export async function exportVerifier(zkey: string): Promise<string> {
  const template = fs.readFileSync(
    path.join(path.dirname(require.resolve("snarkjs")), "..", "templates", "verifier_groth16.sol.ejs"),
    "utf8",
  );
  return snarkjs.zKey.exportSolidityVerifier(zkey, { groth16: template }, quiet);
}

/** Witness and proof in one go; wasm and zkey are file names or in-memory files ({ type: "mem", data }). */
export async function fullProve(
  witnessInput: object,
  wasm: string | object,
  zkey: string | object,
): Promise<{ proof: snarkjs.Groth16Proof; publicSignals: string[] }> {
  return snarkjs.groth16.fullProve(witnessInput, wasm, zkey, quiet);
}

export async function groth16Verify(
  vk: object,
  publicSignals: string[],
  proof: snarkjs.Groth16Proof,
): Promise<boolean> {
  return snarkjs.groth16.verify(vk, publicSignals, proof, quiet);
}

/** Writes the witness for an input into `wtns` (a file name or { type: "mem" }). */
export async function computeWitnessFile(
  witnessInput: object,
  wasm: string | object,
  wtns: string | object,
): Promise<void> {
  await snarkjs.wtns.calculate(witnessInput, wasm as string, wtns);
}

export async function groth16Prove(
  zkey: string | object,
  wtns: string | object,
): Promise<{ proof: snarkjs.Groth16Proof; publicSignals: string[] }> {
  return snarkjs.groth16.prove(zkey as string, wtns, quiet);
}

/** Computes the full witness (all signals) for an input, failing when any constraint is violated. */
export async function computeWitness(witnessInput: object, wasm: string): Promise<bigint[]> {
  const mem = { type: "mem" };
  await snarkjs.wtns.calculate(witnessInput, wasm, mem);
  return snarkjs.wtns.exportJson(mem);
}

/** Stops snarkjs's worker threads so a process (a CLI run, a test run) can exit. */
export async function releaseProver(): Promise<void> {
  const g = globalThis as { curve_bn128?: { terminate(): Promise<void> } | null };
  if (g.curve_bn128) {
    await g.curve_bn128.terminate();
    g.curve_bn128 = null;
  }
}
