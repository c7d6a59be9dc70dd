import fs from "node:fs";
import path from "node:path";
import type { InferenceSession } from "onnxruntime-node";
import { ZkmlError } from "../../zkml/errors";
import { loadOnnx } from "../../zkml/onnx/parse";
import { packValues } from "../../zkml/packing";
import {
  dequantizePlainInput,
  loadPlainManifest,
  quantizePlainOutput,
  type PlainBundleManifest,
} from "../../zkml/plain-bundle";
import { programFromJson } from "../../zkml/program-io";
import { executeProgram } from "../../zkml/quant/executor";
import type { QProgram } from "../../zkml/quant/program";
import { dynamicShapeNodes } from "./execution-policy";

/**
 * The execution process (sandbox.ts starts it): runs one job at a time from its parent and answers it.
 * Nothing here limits anything; the parent kills this process when a run is over its time or memory limit.
 */

/** A plain bundle's run: zkml/plain-bundle.ts steps 2-5 (dequantize, onnxruntime, quantize, pack). */
export interface PlainJob {
  id: number;
  kind: "plain";
  dir: string;
  input: bigint[];
}

/** A ZK bundle's run: its fixed-point program (program.json) and the packing of its outputs. */
export interface ProgramJob {
  id: number;
  kind: "program";
  dir: string;
  packBits: number;
  input: bigint[];
}

/** A plain bundle's check before its first task: its shape-from-values nodes, then (unless refused) a probe. */
export interface InspectJob {
  id: number;
  kind: "inspect";
  dir: string;
  /** Probe even when the graph has shape-from-values nodes (the operator allows them). */
  allowDynamicShapes: boolean;
}

export type ExecJob = PlainJob | ProgramJob | InspectJob;

export type ExecReply =
  | { id: number; values: bigint[]; words: bigint[]; ms: number }
  | { id: number; dynamic: string[]; probeMs?: number }
  | { id: number; error: string; name: string; code?: string };

/** Sessions and programs kept per bundle directory, at most this many of each (the oldest released). */
const KEPT = 8;
const sessions = new Map<string, { manifest: PlainBundleManifest; session: Promise<InferenceSession> }>();
const programs = new Map<string, QProgram>();

function ort(): typeof import("onnxruntime-node") {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require("onnxruntime-node") as typeof import("onnxruntime-node");
}

function keep<V>(map: Map<string, V>, key: string, value: V, release?: (v: V) => void): V {
  map.set(key, value);
  if (map.size > KEPT) {
    const [oldKey, old] = map.entries().next().value as [string, V];
    map.delete(oldKey);
    release?.(old);
  }
  return value;
}

function plainSession(dir: string) {
  const kept = sessions.get(dir);
  if (kept) return kept;
  // The parent checked the bundle's hashes when it loaded it; what is read here is that checked copy.
  const manifest = loadPlainManifest(dir, { checkHashes: false });
  const session = ort().InferenceSession.create(path.join(dir, manifest.onnx.file));
  session.catch(() => sessions.delete(dir));
  return keep(sessions, dir, { manifest, session }, (old) =>
    old.session.then((s) => s.release()).catch(() => undefined),
  );
}

async function runPlain(job: PlainJob) {
  const { manifest: m, session } = plainSession(job.dir);
  const x = new (ort().Tensor)("float32", dequantizePlainInput(m, job.input), m.input.shape);
  const out = (await (await session).run({ [m.input.name]: x }))[m.output.name];
  const values = quantizePlainOutput(m, out.data as Float32Array);
  return { values, words: packValues(values, m.publicSignals.packBits) };
}

function runProgram(job: ProgramJob) {
  const program =
    programs.get(job.dir) ??
    keep(programs, job.dir, programFromJson(fs.readFileSync(path.join(job.dir, "program.json"), "utf8")));
  const values = executeProgram(program, job.input)[program.output.tensor];
  return { values, words: packValues(values, job.packBits) };
}

async function inspect(job: InspectJob) {
  const { manifest: m, session } = plainSession(job.dir);
  const dynamic = dynamicShapeNodes(loadOnnx(path.join(job.dir, m.onnx.file)));
  if (dynamic.length > 0 && !job.allowDynamicShapes) return { dynamic };
  const zeros = new Float32Array(m.input.shape.reduce((a, b) => a * b, 1));
  const started = performance.now();
  await (await session).run({ [m.input.name]: new (ort().Tensor)("float32", zeros, m.input.shape) });
  return { dynamic, probeMs: Math.round(performance.now() - started) };
}

async function answer(job: ExecJob): Promise<ExecReply> {
  const started = performance.now();
  try {
    if (job.kind === "inspect") return { id: job.id, ...(await inspect(job)) };
    const out = job.kind === "plain" ? await runPlain(job) : runProgram(job);
    return { id: job.id, ...out, ms: Math.round(performance.now() - started) };
  } catch (e) {
    const err = e as Error;
    return {
      id: job.id,
      error: err?.message ?? String(e),
      name: err?.name ?? "Error",
      ...(e instanceof ZkmlError ? { code: e.code } : {}),
    };
  }
}

process.on("message", (job: ExecJob) => {
  void answer(job).then((reply) => process.send!(reply));
});
// onnxruntime's native module is loaded now, so that a run's time limit does not pay for it.
try {
  ort();
} catch {
  // A node without onnxruntime still runs ZK bundles; a plain job reports the missing module.
}
// Ready once the modules above are loaded: the parent times a run from here, not from the process's start.
process.send!({ ready: true });
process.on("disconnect", () => process.exit(0));
