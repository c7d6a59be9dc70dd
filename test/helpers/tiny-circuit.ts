import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { compileSolidity } from "../../scripts/lib/solidity";
import { proofWords } from "../../workers/runtime/tasks";

/**
 * Builds the tiny test circuit (test/fixtures/circuits/tiny-linear.circom) for real: circom2 compile,
 * a development powers-of-tau, Groth16 setup, the snarkjs Solidity verifier compiled with solc-js.
 * Output is cached under .opg/cache/tiny-circuit/<source hash>, so a test run pays for it once.
 */
// snarkjs ships no TypeScript types: the few calls used here are typed by hand.
/* eslint-disable @typescript-eslint/no-require-imports */
const snarkjs = require("snarkjs") as {
  powersOfTau: {
    newAccumulator(curve: unknown, power: number, file: string): Promise<unknown>;
    contribute(oldFile: string, newFile: string, name: string, entropy: string): Promise<unknown>;
    preparePhase2(oldFile: string, newFile: string): Promise<unknown>;
  };
  zKey: {
    newZKey(r1cs: string, ptau: string, zkey: string): Promise<unknown>;
    contribute(oldZkey: string, newZkey: string, name: string, entropy: string): Promise<unknown>;
    exportVerificationKey(zkey: string): Promise<unknown>;
    exportSolidityVerifier(zkey: string, templates: { groth16: string }): Promise<string>;
  };
  groth16: {
    fullProve(
      input: unknown,
      wasm: string,
      zkey: string,
    ): Promise<{ proof: Groth16Proof; publicSignals: string[] }>;
  };
  curves: { getCurveFromName(name: string): Promise<{ terminate(): Promise<void> }> };
};
/* eslint-enable @typescript-eslint/no-require-imports */

export interface Groth16Proof {
  pi_a: string[];
  pi_b: string[][];
  pi_c: string[];
}

export interface TinyCircuit {
  wasm: string;
  zkey: string;
  verifierAbi: unknown[];
  verifierBytecode: string;
  verificationKeyHash: string;
  constraints: number;
}

const ROOT = path.join(__dirname, "..", "..");
const SOURCE = "test/fixtures/circuits/tiny-linear.circom";
const PTAU_POWER = 8;

/** Input value offset of the tiny circuit's 16-bit inputs and its 40-bit output. */
export const TINY_INPUT_OFFSET = 1n << 15n;
export const TINY_OUTPUT_OFFSET = 1n << 39n;
export const TINY_WEIGHTS = [3n, -2n, 5n, 1n];
export const TINY_BIAS = 7n;

/** What the tiny model computes, in the packed encoding of its output word. */
export function tinyOutputWord(values: bigint[]): bigint {
  const y = values.reduce((acc, v, i) => acc + TINY_WEIGHTS[i] * v, TINY_BIAS);
  return y + TINY_OUTPUT_OFFSET;
}

export function tinyInputWords(values: bigint[]): bigint[] {
  return values.map((v) => v + TINY_INPUT_OFFSET);
}

let cached: Promise<TinyCircuit> | undefined;

export function buildTinyCircuit(): Promise<TinyCircuit> {
  cached ??= build();
  return cached;
}

async function build(): Promise<TinyCircuit> {
  const source = fs.readFileSync(path.join(ROOT, SOURCE));
  const key = crypto
    .createHash("sha256")
    .update(source)
    .update(String(PTAU_POWER))
    .digest("hex")
    .slice(0, 16);
  const dirRel = path.join(".opg", "cache", "tiny-circuit", key);
  const dir = path.join(ROOT, dirRel);
  const done = path.join(dir, "circuit.json");
  if (fs.existsSync(done)) return JSON.parse(fs.readFileSync(done, "utf8"));
  fs.mkdirSync(dir, { recursive: true });

  // circom2 runs under WASI and sees paths relative to its working directory only: run it from the root.
  const circom = path.join(ROOT, "node_modules", "circom2", "cli.js");
  const log = execFileSync(
    process.execPath,
    [circom, SOURCE, "--r1cs", "--wasm", "--O2", "-l", "node_modules", "-o", dirRel],
    {
      cwd: ROOT,
      encoding: "utf8",
    },
  );
  const constraints = Number(/non-linear constraints: (\d+)/.exec(log)?.[1] ?? NaN);

  const entropy = crypto.randomBytes(32).toString("hex");
  const p = (name: string) => path.join(dir, name);
  const curve = await snarkjs.curves.getCurveFromName("bn128");
  try {
    await snarkjs.powersOfTau.newAccumulator(curve, PTAU_POWER, p("pot0.ptau"));
    await snarkjs.powersOfTau.contribute(p("pot0.ptau"), p("pot1.ptau"), "test", entropy);
    await snarkjs.powersOfTau.preparePhase2(p("pot1.ptau"), p("pot.ptau"));
    await snarkjs.zKey.newZKey(p("tiny-linear.r1cs"), p("pot.ptau"), p("tiny0.zkey"));
    await snarkjs.zKey.contribute(p("tiny0.zkey"), p("tiny.zkey"), "test", entropy);
  } finally {
    await curve.terminate();
  }
  const vkey = await snarkjs.zKey.exportVerificationKey(p("tiny.zkey"));
  const template = fs.readFileSync(
    path.join(ROOT, "node_modules", "snarkjs", "templates", "verifier_groth16.sol.ejs"),
    "utf8",
  );
  const verifierSource = await snarkjs.zKey.exportSolidityVerifier(p("tiny.zkey"), { groth16: template });
  const contract = compileSolidity(verifierSource, "Groth16Verifier");

  const circuit: TinyCircuit = {
    wasm: p(path.join("tiny-linear_js", "tiny-linear.wasm")),
    zkey: p("tiny.zkey"),
    verifierAbi: contract.abi,
    verifierBytecode: contract.bytecode,
    verificationKeyHash: "0x" + crypto.createHash("sha256").update(JSON.stringify(vkey)).digest("hex"),
    constraints,
  };
  fs.writeFileSync(done, JSON.stringify(circuit));
  return circuit;
}

/** Prove the tiny model on `inputWords` for `binding`; returns the 8 proof words and the public signals. */
export async function proveTiny(circuit: TinyCircuit, inputWords: bigint[], binding: bigint) {
  const { proof, publicSignals } = await snarkjs.groth16.fullProve(
    { in: inputWords.map(String), taskBinding: binding.toString() },
    circuit.wasm,
    circuit.zkey,
  );
  return { proof: proofWords(proof), publicSignals: publicSignals.map(BigInt) };
}
