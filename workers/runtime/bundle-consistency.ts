import { fork } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as snarkjs from "snarkjs";
import {
  expectedPublicSignals,
  loadManifest,
  loadProgram,
  opgVersion,
  witnessInput,
  type BundleManifest,
} from "../../zkml/bundle";
import { ZkmlError } from "../../zkml/errors";
import { loadOnnx } from "../../zkml/onnx/parse";
import { makeLayout, unpackWords } from "../../zkml/packing";
import { computeWitnessFile, groth16Prove, groth16Verify } from "../../zkml/prover/groth16";
import "../../zkml/prover/snarkjs-types"; // the `snarkjs` module declarations
import { programToJson } from "../../zkml/program-io";
import { executeProgram } from "../../zkml/quant/executor";
import type { QProgram } from "../../zkml/quant/program";
import { quantizeGraph } from "../../zkml/quant/quantize";
import { numel } from "../../zkml/quant/shapes";
// Types only: bundles.ts imports this module, so a value import back would be circular.
import type { AnyBundle, LoadedBundle } from "./bundles";

/**
 * Is what a node posts for a model what the model's circuit proves? (issue 19, attack 3: a model whose
 * bundle lies.)
 *
 * In optimistic and TEE mode a node posts, and a verification node attests, the output of the bundle's
 * fixed-point program (program.json, run by modelOutputWords); for a model with a circuit, a challenger
 * disproves a posted result with a Groth16 proof of the circuit's output on the task's input, checked
 * against the verification key the model registry pins (challengeWithProof). A model owner who ships a
 * program.json that disagrees with its circuit (circuit.wasm + circuit.zkey) gets nodes to post outputs the
 * circuit contradicts: its own challenger then proves the circuit's output and wins every dispute, and the
 * node and its attesters are slashed. So, once per bundle and before serving or attesting its model, a node
 * checks:
 *
 * (a) program.json is the program model.onnx (whose sha256 the registry pins) lowers to with the manifest's
 *     recorded compile options (scale, activation and input bits, the bound symbolic dimensions), compared
 *     field by field; and the manifest's public-signal layout is the one those shapes give.
 * (b) the circuit's own witness calculator (circuit.wasm), run on inputs the model owner cannot predict
 *     (zeros, the extremes of the input range, and values drawn from this process's CSPRNG, with a random
 *     task binding each), yields public signals equal bit for bit to the program's packed output words (and
 *     the input words and binding); where the program refuses an input (an overflow), the circuit must fail
 *     to produce a witness too, and the other way round.
 * (c) one of the random witnesses, proved with the bundle's zkey, gives a proof that verifies against the
 *     bundle's verification_key.json, the key whose hash the registry pins (BundleCache checks that hash,
 *     and the ONNX hash, against the model on every get: bundleModelProblems). This ties the witness
 *     calculator to the registered key: the sampled witnesses satisfy the constraints that key verifies.
 *
 * What it establishes: program.json is exactly the compiler's program for the registered ONNX model; and on
 * every sampled input the circuit behind the registered key proves the output the program computes.
 *
 * What it does not:
 * - that the circuit agrees with the program on every input. A circuit.wasm (or a zkey made from another
 *   circuit) that agrees with the program on the sampled inputs and departs from it on inputs the owner
 *   chose in advance (a trigger) passes;
 * - that the circuit is a function of its input. The witnesses checked are the ones circuit.wasm computes;
 *   a circuit whose constraints also admit other outputs (under-constrained outputs: a hint not range
 *   checked) passes, and its owner can then prove another output for any task (challengeWithProof) however
 *   faithfully the node posts the witness calculator's.
 * Closing both needs the circuit rebuilt from the program (circuit.circom regenerated, compiled, its r1cs
 * compared with circuit.r1cs) and `snarkjs zkey verify` of the zkey against that r1cs and the ptau; neither
 * is done here (the compile takes minutes for larger models and the ptau is not in the bundle). That is the
 * residual risk. Note also that (a) compares with this node's compiler: a release that changes how a
 * model is lowered refuses bundles made by the releases before it (the message names both versions).
 *
 * A plain bundle (no circuit: disputes settled by vote) has nothing to be consistent with and is skipped.
 */

/** Bumped when the check changes, so verdicts a node recorded before are redone. */
export const CONSISTENCY_CHECK_VERSION = 1;

/** Random inputs per check, besides zeros and the extremes. */
export const DEFAULT_RANDOM_SAMPLES = 6;

export interface ConsistencyOptions {
  /** Inputs drawn at random, besides zeros and the extremes (default 6, at least 1). */
  randomSamples?: number;
  /**
   * Regenerate the program from model.onnx and compare it with program.json (default true). Off, only (b)
   * and (c) run: for a bundle whose compile options are not all recorded.
   */
  regenerate?: boolean;
}

/** What one sampled input gave. */
export interface SampleOutcome {
  name: string;
  /** "agree": same public signals; "both refuse": neither the program nor the circuit takes the input. */
  result: "agree" | "both refuse" | "disagree";
  detail?: string;
}

export interface ConsistencyReport {
  /** Why nothing was checked (a plain bundle), if so. */
  skipped?: string;
  /** Where program.json, the circuit and the key disagree; empty when they agree. */
  problems: string[];
  /** Whether (a) ran. */
  regenerated: boolean;
  samples: SampleOutcome[];
  /** Whether (c) produced a proof that verifies. */
  proved: boolean;
  timings: { regenerateMs: number; witnessMs: number; proveMs: number; totalMs: number };
}

/**
 * Checks (a), (b) and (c) above on a loaded bundle (its files already hash-checked against its manifest)
 * and reports every disagreement. Throws only for failures that are not the bundle's (a file that cannot
 * be read); every disagreement, and any error the bundle's own artifacts cause, is a problem in the report.
 */
export async function checkBundleConsistency(
  bundle: AnyBundle,
  opts: ConsistencyOptions = {},
): Promise<ConsistencyReport> {
  const started = Date.now();
  const report: ConsistencyReport = {
    problems: [],
    regenerated: false,
    samples: [],
    proved: false,
    timings: { regenerateMs: 0, witnessMs: 0, proveMs: 0, totalMs: 0 },
  };
  if (bundle.kind === "plain") {
    report.skipped = "plain bundle: no circuit to be consistent with (disputes are settled by vote)";
    return report;
  }
  const { manifest, program } = bundle;

  if (opts.regenerate ?? true) {
    const t = Date.now();
    report.problems.push(...regenerationProblems(bundle));
    report.regenerated = true;
    report.timings.regenerateMs = Date.now() - t;
  }

  const layoutProblem = layoutMismatch(manifest, program);
  if (layoutProblem) {
    // witnessInput and the packing follow the manifest's layout: sampling would only repeat this.
    report.problems.push(layoutProblem);
    report.timings.totalMs = Date.now() - started;
    return report;
  }

  const tw = Date.now();
  const wasm = {
    type: "mem",
    data: new Uint8Array(fs.readFileSync(path.join(bundle.dir, manifest.artifacts.wasm.file))),
  };
  // The witness proved in (c): the last random input both took (a witness can be large: only one is kept).
  let toProve: { sample: Sample; wtns: object; expected: string[] } | undefined;
  for (const sample of samples(program, opts.randomSamples ?? DEFAULT_RANDOM_SAMPLES)) {
    const { outcome, wtns, expected } = await runSample(manifest, program, wasm, sample);
    report.samples.push(outcome);
    if (outcome.result === "agree" && sample.random) toProve = { sample, wtns: wtns!, expected: expected! };
  }
  report.timings.witnessMs = Date.now() - tw;
  const disagreeing = report.samples.filter((s) => s.result === "disagree");
  if (disagreeing.length > 0) {
    report.problems.push(
      `the circuit (circuit.wasm) and program.json disagree on ${disagreeing.length} of ` +
        `${report.samples.length} sampled inputs: ` +
        disagreeing
          .slice(0, 3)
          .map((s) => `${s.name}: ${s.detail}`)
          .join("; ") +
        (disagreeing.length > 3 ? "; ..." : ""),
    );
  }
  if (!toProve) {
    report.problems.push(
      "no random input was taken by both the program and the circuit: their agreement cannot be checked",
    );
  } else {
    const tp = Date.now();
    const problem = await proofProblem(bundle, toProve);
    report.timings.proveMs = Date.now() - tp;
    if (problem) report.problems.push(problem);
    else report.proved = true;
  }
  report.timings.totalMs = Date.now() - started;
  return report;
}

// ------------------------------------------------------------------ (a) regeneration

/**
 * The symbolic dimension values compile bound, as quantizeGraph's `dims`: from the manifest's `boundDims`;
 * for a bundle made before they were recorded, read off the recorded input shape (the shape compile bound
 * the graph input to).
 */
function boundDims(
  manifest: BundleManifest,
  graph: ReturnType<typeof loadOnnx>,
): { dims: Record<string, number>; note: string } {
  const dims: Record<string, number> = {};
  if (manifest.boundDims) {
    for (const b of manifest.boundDims) if (b.name !== null) dims[b.name] = b.value;
    return { dims, note: "" };
  }
  const input = graph.inputs.find((v) => v.name === manifest.input.name);
  input?.dims?.forEach((d, axis) => {
    if (typeof d === "string" && d !== "" && manifest.input.shape.length === input.dims!.length)
      dims[d] = manifest.input.shape[axis];
  });
  return {
    dims,
    note: Object.keys(dims).length
      ? ` (the manifest records no boundDims; symbolic dimensions read off its input shape: ${JSON.stringify(dims)})`
      : "",
  };
}

function regenerationProblems(bundle: LoadedBundle): string[] {
  const { manifest } = bundle;
  let regenerated: QProgram;
  let note = "";
  try {
    const graph = loadOnnx(path.join(bundle.dir, manifest.onnx.file));
    const bound = boundDims(manifest, graph);
    note = bound.note;
    regenerated = quantizeGraph(graph, {
      scaleBits: manifest.quantization.scaleBits,
      activationBits: manifest.quantization.activationBits,
      inputBits: manifest.quantization.inputBits,
      dims: bound.dims,
    });
  } catch (e) {
    if (!(e instanceof ZkmlError)) throw e;
    return [`model.onnx does not compile with the manifest's options: ${e.message}`];
  }
  const diff = firstDifference(
    JSON.parse(programToJson(bundle.program)),
    JSON.parse(programToJson(regenerated)),
    "",
  );
  if (!diff) return [];
  return [
    `program.json is not the program model.onnx compiles to with the manifest's options${note}: ` +
      `${diff.path || "the program"} is ${diff.bundled} in program.json, ${diff.regenerated} regenerated` +
      toolNote(manifest),
  ];
}

/** Names the compiler versions when the bundle was made by another one (its lowering may have changed). */
function toolNote(manifest: BundleManifest): string {
  const theirs = manifest.tools?.opg;
  const ours = opgVersion();
  return theirs && theirs !== ours ? ` (bundle made by ${theirs}, this node runs ${ours})` : "";
}

const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? "undefined";
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** The first place two JSON values differ (object keys in any order), or undefined when they are equal. */
function firstDifference(
  bundled: unknown,
  regenerated: unknown,
  at: string,
): { path: string; bundled: string; regenerated: string } | undefined {
  const differ = { path: at, bundled: show(bundled), regenerated: show(regenerated) };
  if (Array.isArray(bundled) || Array.isArray(regenerated)) {
    if (!Array.isArray(bundled) || !Array.isArray(regenerated)) return differ;
    if (bundled.length !== regenerated.length)
      return {
        path: `${at}.length`,
        bundled: String(bundled.length),
        regenerated: String(regenerated.length),
      };
    for (let i = 0; i < bundled.length; i++) {
      const d = firstDifference(bundled[i], regenerated[i], `${at}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (
    typeof bundled === "object" &&
    bundled !== null &&
    typeof regenerated === "object" &&
    regenerated !== null
  ) {
    const a = bundled as Record<string, unknown>;
    const b = regenerated as Record<string, unknown>;
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const d = firstDifference(a[k], b[k], at ? `${at}.${k}` : k);
      if (d) return d;
    }
    return undefined;
  }
  return bundled === regenerated ? undefined : differ;
}

/** Where the manifest's public-signal layout is not the one the program's shapes give, if it is not. */
function layoutMismatch(manifest: BundleManifest, program: QProgram): string | undefined {
  const l = manifest.publicSignals;
  const expected = makeLayout(
    numel(program.input.shape),
    numel(program.output.shape),
    l.packBits,
    l.inputMode,
  );
  const d = firstDifference(l, expected, "publicSignals");
  if (manifest.quantization.inputBits !== program.inputBits)
    return `the manifest's input bits (${manifest.quantization.inputBits}) are not program.json's (${program.inputBits})`;
  return d
    ? `the manifest's public-signal layout does not fit program.json's shapes: ${d.path} is ${d.bundled}, ` +
        `the program's shapes give ${d.regenerated}`
    : undefined;
}

// ------------------------------------------------------------------ (b) sampled witnesses

interface Sample {
  name: string;
  random: boolean;
  input: bigint[];
  binding: bigint;
}

/** A uniform-ish integer in [lo, hi] from the CSPRNG (the modulo bias of 64 spare bits is negligible). */
function randomIn(lo: bigint, hi: bigint): bigint {
  const span = hi - lo + 1n;
  return lo + (BigInt("0x" + crypto.randomBytes(16).toString("hex")) % span);
}

/** A random task binding below 2^248 < r. */
const randomBinding = () => BigInt("0x" + crypto.randomBytes(31).toString("hex"));

/**
 * The inputs the check runs: zeros, every value at the maximum, at the minimum, alternating extremes, then
 * `random` inputs drawn afresh from this process's CSPRNG, over the whole input range and over narrower
 * ranges (|x| <= 2^(s+2) and |x| <= 2^s: reals in [-4, 4] and [-1, 1]), where a real model's activations
 * stay within bounds.
 */
function samples(program: QProgram, random: number): Sample[] {
  const n = numel(program.input.shape);
  const max = (1n << BigInt(program.inputBits - 1)) - 1n;
  const min = -max - 1n;
  const fill = (v: bigint) => Array<bigint>(n).fill(v);
  const out: Sample[] = [
    { name: "zeros", random: false, input: fill(0n), binding: 0n },
    { name: "every value at the maximum", random: false, input: fill(max), binding: randomBinding() },
    { name: "every value at the minimum", random: false, input: fill(min), binding: randomBinding() },
    {
      name: "alternating extremes",
      random: false,
      input: Array.from({ length: n }, (_, i) => (i % 2 ? min : max)),
      binding: randomBinding(),
    },
  ];
  const s = BigInt(program.scaleBits);
  const bounds = [max, 1n << (s + 2n), 1n << s];
  for (let i = 0; i < Math.max(1, random); i++) {
    const hi = bounds[i % bounds.length] < max ? bounds[i % bounds.length] : max;
    out.push({
      name: `random input #${i + 1} (values in [-${hi}, ${hi}])`,
      random: true,
      input: Array.from({ length: n }, () => randomIn(-hi, hi)),
      binding: randomBinding(),
    });
  }
  return out;
}

/** The first output value (or word) where the circuit's public signals differ from the program's. */
function describeDifference(manifest: BundleManifest, circuit: bigint[], program: bigint[]): string {
  const l = manifest.publicSignals;
  for (let w = 0; w < l.outputWords; w++) {
    if (circuit[w] === program[w]) continue;
    try {
      const c = unpackWords(circuit.slice(0, l.outputWords), l.outputCount, l.packBits);
      const p = unpackWords(program.slice(0, l.outputWords), l.outputCount, l.packBits);
      const i = c.findIndex((v, j) => v !== p[j]);
      if (i >= 0) return `output value #${i} is ${c[i]} in the circuit, ${p[i]} in program.json`;
    } catch {
      // a word that does not decode: show the words
    }
    return `output word #${w} is ${circuit[w]} in the circuit, ${program[w]} in program.json`;
  }
  const i = circuit.findIndex((v, j) => v !== program[j]);
  return i >= 0
    ? `public signal #${i} is ${circuit[i]} in the circuit, ${program[i]} expected`
    : `the circuit gives ${circuit.length} public signals, ${program.length} expected`;
}

async function runSample(
  manifest: BundleManifest,
  program: QProgram,
  wasm: object,
  sample: Sample,
): Promise<{ outcome: SampleOutcome; wtns?: object; expected?: string[] }> {
  let expected: bigint[] | undefined;
  let programError = "";
  try {
    const values = executeProgram(program, sample.input)[program.output.tensor];
    // packs the outputs too: an output that does not fit the public words is refused as the circuit would
    expected = expectedPublicSignals(manifest, sample.input, values, sample.binding);
  } catch (e) {
    if (!(e instanceof ZkmlError)) throw e;
    programError = e.message;
  }
  const wtns = { type: "mem" };
  let witness: bigint[] | undefined;
  let circuitError = "";
  try {
    await computeWitnessFile(witnessInput(manifest, sample.input, sample.binding), wasm, wtns);
    witness = await snarkjs.wtns.exportJson(wtns);
  } catch (e) {
    circuitError = (e as Error).message ?? String(e);
  }
  const name = sample.name;
  if (!expected && !witness) return { outcome: { name, result: "both refuse", detail: programError } };
  if (!witness)
    return {
      outcome: {
        name,
        result: "disagree",
        detail: `program.json computes an output, the circuit cannot make a witness (${firstLine(circuitError)})`,
      },
    };
  if (!expected)
    return {
      outcome: {
        name,
        result: "disagree",
        detail: `the circuit makes a witness, program.json refuses the input (${firstLine(programError)})`,
      },
    };
  const signals = witness.slice(1, manifest.publicSignals.bindingIndex + 2);
  if (signals.length !== expected.length || signals.some((v, i) => v !== expected[i]))
    return { outcome: { name, result: "disagree", detail: describeDifference(manifest, signals, expected) } };
  return { outcome: { name, result: "agree" }, wtns, expected: expected.map(String) };
}

const firstLine = (m: string) => {
  const line = m.split("\n")[0];
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
};

// ------------------------------------------------------------------ (c) one proof

/** Proves one agreeing random witness with the zkey and verifies it against verification_key.json. */
async function proofProblem(
  bundle: LoadedBundle,
  sample: { sample: Sample; wtns: object; expected: string[] },
): Promise<string | undefined> {
  const { manifest } = bundle;
  const zkey = manifest.artifacts.zkey;
  const vkRef = manifest.artifacts.verificationKey;
  if (!zkey || !vkRef) return "the bundle has no zkey or verification key: nothing it serves can be proved";
  let proved: Awaited<ReturnType<typeof groth16Prove>>;
  try {
    proved = await groth16Prove(path.join(bundle.dir, zkey.file), sample.wtns);
  } catch (e) {
    return `the zkey cannot prove the circuit's witness (${sample.sample.name}): ${firstLine((e as Error).message)}`;
  }
  const { proof, publicSignals } = proved;
  if (
    publicSignals.length !== sample.expected.length ||
    publicSignals.some((v, i) => v !== sample.expected[i])
  )
    return `the proof made with the zkey carries other public signals than the witness (${sample.sample.name})`;
  const vk = JSON.parse(fs.readFileSync(path.join(bundle.dir, vkRef.file), "utf8"));
  let ok = false;
  try {
    ok = await groth16Verify(vk, publicSignals, proof);
  } catch {
    ok = false;
  }
  return ok
    ? undefined
    : `a proof of the circuit's witness (${sample.sample.name}) made with circuit.zkey does not verify against ` +
        "verification_key.json (the registered key): the witness calculator or the zkey is not that key's circuit";
}

// ------------------------------------------------------------------ the check in a child process

/** The argument that makes this module, started as a process, run one check (see checkInChild). */
const CHILD_FLAG = "--opg-bundle-consistency-check";
/** The last bytes of the child's output kept for a message (a witness calculator may print a lot). */
const OUTPUT_TAIL = 2000;

/**
 * checkBundleConsistency in a child process, killed after `timeoutMs`: the bundle's witness calculator is
 * code the model owner wrote, and the check runs it (and proves) for seconds to minutes. In a child, a
 * calculator that loops, exhausts memory or prints without end costs the node nothing but the child, the
 * node's event loop keeps serving the chain and `/attest`, and snarkjs's threads end with the child. A child
 * that does not report (a timeout, a crash) is reported as a problem: the bundle is not shown consistent.
 */
export function checkInChild(
  bundle: LoadedBundle,
  opts: ConsistencyOptions & { timeoutMs?: number } = {},
): Promise<ConsistencyReport> {
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  const fromSource = __filename.endsWith(".ts");
  const child = fork(__filename, [CHILD_FLAG], {
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    // From the TypeScript sources (tests, `ts-node` scripts) the child compiles them as the parent did; the
    // compiled build runs this file's .js as it is.
    execArgv: fromSource ? ["-r", require.resolve("ts-node/register/transpile-only")] : [],
    env: fromSource
      ? { ...process.env, TS_NODE_PROJECT: path.join(__dirname, "..", "..", "tsconfig.json") }
      : process.env,
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-OUTPUT_TAIL);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const started = Date.now();
  return new Promise<ConsistencyReport>((resolve) => {
    let settled = false;
    const finish = (report: ConsistencyReport) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null) child.kill("SIGKILL");
      resolve(report);
    };
    const unfinished = (why: string): ConsistencyReport => ({
      problems: [`the consistency check did not finish: ${why}`],
      regenerated: false,
      samples: [],
      proved: false,
      timings: { regenerateMs: 0, witnessMs: 0, proveMs: 0, totalMs: Date.now() - started },
    });
    const timer = setTimeout(
      () => finish(unfinished(`no verdict within ${Math.round(timeoutMs / 1000)} s`)),
      timeoutMs,
    );
    child.on("message", (m: { report?: ConsistencyReport; error?: string }) => {
      if (m.report) finish(m.report);
      else finish(unfinished(`the check failed: ${m.error}`));
    });
    child.on("error", (e) => finish(unfinished(`the check process could not run: ${e.message}`)));
    child.on("exit", (code, signal) => {
      // let the last message arrive first: 'exit' can come before a 'message' sent just before it
      setImmediate(() =>
        finish(
          unfinished(
            `the check process exited (${signal ?? code}) without a verdict` +
              (output.trim() ? `: ${firstLine(output.trim().split("\n").slice(-1)[0])}` : ""),
          ),
        ),
      );
    });
    const { randomSamples, regenerate } = opts;
    child.send({ dir: bundle.dir, opts: { randomSamples, regenerate } });
  });
}

/** The child's side: load the bundle from its folder (hash-checked by the parent), check it, report, exit. */
function runChild() {
  process.once("message", async (m: { dir: string; opts: ConsistencyOptions }) => {
    let reply: { report?: ConsistencyReport; error?: string };
    try {
      const manifest = loadManifest(m.dir);
      const bundle: LoadedBundle = {
        dir: m.dir,
        manifest,
        program: loadProgram(m.dir),
        verificationKeyHash: "",
      };
      reply = { report: await checkBundleConsistency(bundle, m.opts) };
    } catch (e) {
      reply = { error: (e as Error).message ?? String(e) };
    }
    // exit without waiting for snarkjs's worker threads
    process.send!(reply, () => process.exit(0));
  });
  process.on("disconnect", () => process.exit(0));
}

if (require.main === module && process.argv.includes(CHILD_FLAG)) runChild();

// ------------------------------------------------------------------ verdicts, once per bundle

/** A passing verdict as recorded on disk, so a restarted node does not check again. */
interface RecordedVerdict {
  bundle: string;
  consistent: true;
  check: number;
  randomSamples: number;
  regenerated: boolean;
  checkedAt: string;
  report: ConsistencyReport;
}

export interface ConsistencyCacheOptions extends ConsistencyOptions {
  /** Where passing verdicts are recorded (`<id>.json`); none: in memory only. */
  dir?: string;
  /** Run each check in a child process (checkInChild; default true); false: in this process. */
  isolate?: boolean;
  /** How long a check in a child process may take before it counts as failed (default 10 min). */
  timeoutMs?: number;
}

/**
 * The consistency verdict of each bundle, by bundle id (the archive hash the registry records): checked
 * once (in a child process unless `isolate` is false), kept in memory, and, when `dir` is given, a passing
 * verdict also recorded there as `<id>.json` so a restart does not redo it. A refusal is kept in memory
 * only: after a restart the check runs again with new random inputs, so a node's own failure (a check that
 * timed out on a loaded machine) is not made permanent. A bundle's files are hash-checked against its id
 * whenever BundleCache loads it, so a recorded verdict holds for as long as the id does.
 */
export class BundleConsistencyCache {
  /** How many checks this cache ran (not served from memory or from a recorded verdict). */
  checksRun = 0;
  private readonly verdicts = new Map<string, Promise<ConsistencyReport>>();
  /** The last check queued: checks run one at a time (each uses every core to prove). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: ConsistencyCacheOptions = {}) {}

  /** Where `bundle` (`id`: its bundle id) disagrees with itself; empty when it is consistent or plain. */
  async problems(id: string, bundle: AnyBundle): Promise<string[]> {
    return (await this.report(id, bundle)).problems;
  }

  /** The report of `bundle`'s check, run once per id. */
  report(id: string, bundle: AnyBundle): Promise<ConsistencyReport> {
    if (bundle.kind === "plain") return checkBundleConsistency(bundle);
    let verdict = this.verdicts.get(id);
    if (!verdict) {
      verdict = this.queue.then(() => this.verdict(id, bundle));
      this.queue = verdict.catch(() => undefined);
      this.verdicts.set(id, verdict);
      // A check that failed for a reason of its own (not a disagreement) is redone on the next call.
      verdict.catch(() => this.verdicts.delete(id));
    }
    return verdict;
  }

  private async verdict(id: string, bundle: LoadedBundle): Promise<ConsistencyReport> {
    const recorded = this.recorded(id);
    if (recorded) return recorded.report;
    this.checksRun++;
    const report =
      this.opts.isolate === false
        ? await checkBundleConsistency(bundle, this.opts)
        : await checkInChild(bundle, this.opts);
    if (report.problems.length === 0) this.record(id, report);
    return report;
  }

  private file(id: string): string | undefined {
    return /^[0-9a-f]{64}$/.test(id) && this.opts.dir ? path.join(this.opts.dir, `${id}.json`) : undefined;
  }

  private recorded(id: string): RecordedVerdict | undefined {
    const file = this.file(id);
    if (!file || !fs.existsSync(file)) return undefined;
    try {
      const v = JSON.parse(fs.readFileSync(file, "utf8")) as RecordedVerdict;
      if (
        v.bundle === id &&
        v.consistent === true &&
        v.check === CONSISTENCY_CHECK_VERSION &&
        v.randomSamples >= (this.opts.randomSamples ?? DEFAULT_RANDOM_SAMPLES) &&
        (v.regenerated || this.opts.regenerate === false) &&
        Array.isArray(v.report?.problems) &&
        v.report.problems.length === 0
      )
        return v;
    } catch {
      // unreadable: check again
    }
    return undefined;
  }

  private record(id: string, report: ConsistencyReport) {
    const file = this.file(id);
    if (!file) return;
    const verdict: RecordedVerdict = {
      bundle: id,
      consistent: true,
      check: CONSISTENCY_CHECK_VERSION,
      randomSamples: this.opts.randomSamples ?? DEFAULT_RANDOM_SAMPLES,
      regenerated: report.regenerated,
      checkedAt: new Date().toISOString(),
      report,
    };
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(verdict, null, 1) + "\n");
    fs.renameSync(tmp, file);
  }
}
