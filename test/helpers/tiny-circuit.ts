import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { compileSolidity } from "../../scripts/lib/solidity";
import { proofWords } from "../../workers/runtime/tasks";
import { packValues } from "../../zkml/packing";
import {
  verificationKeyHash,
  verificationKeyWords,
  type SnarkjsVerificationKey,
} from "../../zkml/verification-key";

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
  /** The key in the registry's word order (decimal strings: JSON has no bigint). */
  verificationKey: string[];
  /** keccak256 of the packed key words, as the ModelRegistry records it. */
  verificationKeyHash: string;
  /** snarkjs's own Solidity verifier for the same key: the gas baseline the protocol verifier is held to. */
  verifierAbi: unknown[];
  verifierBytecode: string;
  constraints: number;
}

const ROOT = path.join(__dirname, "..", "..");
const SOURCE = "test/fixtures/circuits/tiny-linear.circom";
const PTAU_POWER = 9;

/** The tiny model's layout: 24 signed 16-bit inputs, packed 6 per word at 40 bits; one 40-bit output. */
export const TINY_INPUTS = 24;
export const TINY_PACK_BITS = 40;
export const TINY_INPUT_BITS = 16;
export const TINY_OUTPUT_OFFSET = 1n << 39n;
export const TINY_WEIGHTS = [3n, -2n, 5n, 1n, ...Array<bigint>(20).fill(1n)];
export const TINY_BIAS = 7n;

function padded(values: bigint[]): bigint[] {
  if (values.length > TINY_INPUTS) throw new Error(`the tiny model takes ${TINY_INPUTS} inputs`);
  return [...values, ...Array<bigint>(TINY_INPUTS - values.length).fill(0n)];
}

/** What the tiny model computes on `values` (zero-padded to 24), in the packed encoding of its output word. */
export function tinyOutputWord(values: bigint[]): bigint {
  const y = padded(values).reduce((acc, v, i) => acc + TINY_WEIGHTS[i] * v, TINY_BIAS);
  return y + TINY_OUTPUT_OFFSET;
}

/** The tiny model's 24 input values: `values` zero-padded (what a consumer contract packs on chain). */
export function tinyInputValues(values: bigint[]): bigint[] {
  return padded(values);
}

/** The 4 canonical input words of `values` (zero-padded to 24). */
export function tinyInputWords(values: bigint[]): bigint[] {
  return packValues(padded(values), TINY_PACK_BITS);
}

/** The input values the 4 words hold (what the circuit's private input is). */
function unpackTiny(words: bigint[]): bigint[] {
  const mask = (1n << BigInt(TINY_PACK_BITS)) - 1n;
  return Array.from({ length: TINY_INPUTS }, (_, i) => {
    const word = words[Math.floor(i / 6)];
    return ((word >> BigInt(TINY_PACK_BITS * (i % 6))) & mask) - TINY_OUTPUT_OFFSET;
  });
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
  const vkey = (await snarkjs.zKey.exportVerificationKey(p("tiny.zkey"))) as SnarkjsVerificationKey;
  const keyWords = verificationKeyWords(vkey);
  const template = fs.readFileSync(
    path.join(ROOT, "node_modules", "snarkjs", "templates", "verifier_groth16.sol.ejs"),
    "utf8",
  );
  const verifierSource = await snarkjs.zKey.exportSolidityVerifier(p("tiny.zkey"), { groth16: template });
  const contract = compileSolidity(verifierSource, "Groth16Verifier");

  const circuit: TinyCircuit = {
    wasm: p(path.join("tiny-linear_js", "tiny-linear.wasm")),
    zkey: p("tiny.zkey"),
    verificationKey: keyWords.map(String),
    verificationKeyHash: verificationKeyHash(keyWords),
    verifierAbi: contract.abi,
    verifierBytecode: contract.bytecode,
    constraints,
  };
  fs.writeFileSync(done, JSON.stringify(circuit));
  return circuit;
}

/** Prove the tiny model on `inputWords` for `binding`; returns the 8 proof words and the public signals. */
export async function proveTiny(circuit: TinyCircuit, inputWords: bigint[], binding: bigint) {
  const { proof, publicSignals } = await snarkjs.groth16.fullProve(
    {
      x: unpackTiny(inputWords).map(String),
      inputWords: inputWords.map(String),
      taskBinding: binding.toString(),
    },
    circuit.wasm,
    circuit.zkey,
  );
  return { proof: proofWords(proof), publicSignals: publicSignals.map(BigInt) };
}
