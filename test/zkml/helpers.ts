import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command, CommanderError } from "commander";
import * as snarkjs from "snarkjs";
import { compileModel, loadProgram, releaseProver, toField, witnessInput } from "../../zkml";
import type { BundleManifest, CompileOptions, QProgram } from "../../zkml";
import { registerZkmlCommands } from "../../zkml/cli";
import { compileCircom } from "../../zkml/prover/circom";
import { buildOnnx, ModelSpec } from "../../zkml/onnx/builder";

export const FIXTURES = path.join(__dirname, "..", "fixtures", "models");

// snarkjs keeps worker threads alive; stop them once the whole run is over so the process can exit.
after(async () => {
  await releaseProver();
});

export function tmpDir(prefix = "opg-zkml-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function writeModel(spec: ModelSpec, dir = tmpDir()): string {
  const file = path.join(dir, "model.onnx");
  fs.writeFileSync(file, buildOnnx(spec));
  return file;
}

export interface CompiledCircuit {
  dir: string;
  manifest: BundleManifest;
  program: QProgram;
}

/** Compiles a model to circuit + witness wasm only (no trusted setup): enough for witness checks. */
export async function compileNoSetup(onnx: string, opts: CompileOptions = {}): Promise<CompiledCircuit> {
  const dir = tmpDir();
  const manifest = await compileModel(onnx, dir, { ...opts, skipSetup: true });
  return { dir, manifest, program: loadProgram(dir) };
}

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** The full witness the circuit computes for a quantized input (throws when a constraint fails). */
export async function witnessFor(
  c: CompiledCircuit,
  quantizedInput: bigint[],
  binding = 7n,
): Promise<bigint[]> {
  const mem = { type: "mem" };
  await snarkjs.wtns.calculate(
    witnessInput(c.manifest, quantizedInput, binding),
    path.join(c.dir, "circuit.wasm"),
    mem,
  );
  return snarkjs.wtns.exportJson(mem);
}

/** The public signals a witness holds: wires 1 .. nPublic (wire 0 is the constant 1). */
export function publicOf(c: CompiledCircuit, witness: bigint[]): bigint[] {
  return witness.slice(1, c.manifest.publicSignals.bindingIndex + 2);
}

const P = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;

/** Writes a witness as a .wtns file (format version 2) so it can be checked against an R1CS. */
export function writeWtns(file: string, witness: readonly bigint[]): void {
  const n8 = 32;
  const le = (v: bigint): Buffer => {
    const b = Buffer.alloc(n8);
    let x = toField(v);
    for (let i = 0; i < n8; i++) {
      b[i] = Number(x & 0xffn);
      x >>= 8n;
    }
    return b;
  };
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const u64 = (v: number): Buffer => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return b;
  };
  const prime = Buffer.alloc(n8);
  let x = P;
  for (let i = 0; i < n8; i++) {
    prime[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  const s1 = Buffer.concat([u32(n8), prime, u32(witness.length)]);
  const s2 = Buffer.concat(witness.map(le));
  fs.writeFileSync(
    file,
    Buffer.concat([
      Buffer.from("wtns"),
      u32(2),
      u32(2),
      u32(1),
      u64(s1.length),
      s1,
      u32(2),
      u64(s2.length),
      s2,
    ]),
  );
}

/** Whether a (possibly tampered) witness satisfies every constraint of the R1CS. */
export async function witnessSatisfies(r1cs: string, witness: readonly bigint[]): Promise<boolean> {
  const file = path.join(tmpDir(), "w.wtns");
  writeWtns(file, witness);
  return snarkjs.wtns.check(r1cs, file, quiet);
}

/** A hand-written test harness circuit around circuits/lib templates, compiled with symbols. */
export interface TemplateCircuit {
  r1cs: string;
  wasm: string;
  /** signal name (e.g. "main.out[0]") -> witness index (absent when --O2 eliminated it) */
  wires: Map<string, number>;
  constraints: number;
}

export async function compileTemplate(source: string): Promise<TemplateCircuit> {
  const dir = tmpDir("opg-tpl-");
  const file = path.join(dir, "t.circom");
  fs.writeFileSync(file, source);
  compileCircom(file, dir, () => {}, { sym: true });
  const wires = new Map<string, number>();
  for (const line of fs.readFileSync(path.join(dir, "t.sym"), "utf8").split("\n")) {
    const [, witness, , name] = line.split(",");
    if (name && Number(witness) >= 0) wires.set(name, Number(witness));
  }
  const r1cs = path.join(dir, "t.r1cs");
  const info = await snarkjs.r1cs.info(r1cs, quiet);
  return { r1cs, wasm: path.join(dir, "t_js", "t.wasm"), wires, constraints: info.nConstraints };
}

export async function templateWitness(t: TemplateCircuit, input: Record<string, unknown>): Promise<bigint[]> {
  const mem = { type: "mem" };
  await snarkjs.wtns.calculate(input, t.wasm, mem);
  return snarkjs.wtns.exportJson(mem);
}

export function argmax(a: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/**
 * Runs `opg zkml ...` in this process (a child process would pay the CLI start per run): the same command
 * code, with stdout, stderr and the exit code captured; a flag its parser refuses gives commander's code.
 */
export async function opgHere(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const program = new Command().exitOverride();
  registerZkmlCommands(program);
  const out: string[] = [];
  const err: string[] = [];
  const [write, writeErr] = [process.stdout.write, process.stderr.write];
  process.stdout.write = ((chunk: string) => out.push(String(chunk)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => err.push(String(chunk)) > 0) as typeof process.stderr.write;
  let status: number;
  try {
    await program.parseAsync(args, { from: "user" });
    status = Number(process.exitCode ?? 0);
  } catch (e) {
    // an option's parser refused its argument: commander has printed why and would exit
    if (!(e instanceof CommanderError)) throw e;
    status = e.exitCode;
  } finally {
    [process.stdout.write, process.stderr.write] = [write, writeErr];
    process.exitCode = undefined;
  }
  return { status, stdout: out.join(""), stderr: err.join("") };
}
