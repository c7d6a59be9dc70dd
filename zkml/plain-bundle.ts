// Plain bundles: models served without a circuit, in the TEE and optimistic verification modes.
//
// A model the ZKML compiler cannot prove (an attention MatMul of two activations, an op it has no circuit
// for, or simply a model too large to prove) is still served by the network: in TEE mode an attested enclave
// runs it and signs the outputs, in optimistic mode verification nodes re-run it and attest. Either way the
// node runs the ONNX model itself with onnxruntime in float32, so the bundle is just the model and a
// manifest that fixes how task words become the model's input and its output becomes result words.
//
// A plain bundle directory holds exactly two files:
//
//   model.onnx      the ONNX model, byte for byte as given (its sha256 is `onnxHash` on chain)
//   manifest.json   a PlainBundleManifest:
//     format          "opg-plain-bundle/1"
//     kind            "plain" (a ZK bundle's manifest has no `kind`; its format is "opg-zkml-bundle/1")
//     name            the model's name (the ONNX file name without .onnx)
//     onnx            { file: "model.onnx", sha256, producer, opset }
//     input           { name, shape, dtype: "float32" }: the one graph input, symbolic dimensions bound
//     output          { name, shape, dtype: "float32", scaleBits }: the first graph output, its shape as
//                     onnxruntime produced it for the bound input shape
//     quantization    { scaleBits s, inputBits, commitmentPackBits (= inputBits) }
//     publicSignals   the PublicSignalLayout (zkml/packing.ts makeLayout), as a ZK bundle has it: packBits B,
//                     inputMode "inline" | "commitment", inputWords, outputWords, inputCount, outputCount
//     artifacts       {} (no circuit, program, key or verifier: nothing is proved)
//     boundDims       the symbolic input dimensions bound to numbers (as `opg zkml compile` records them)
//     tools, createdAt
//
// Execution, which every node (inference, verification, an auditor) must follow exactly so that outputs
// agree bit for bit on the same onnxruntime build:
//   1. the task's input values q_i (inputCount signed integers in [-2^(inputBits-1), 2^(inputBits-1)), row-major
//      over input.shape) are unpacked from the input words with packValues' layout (B bits each, offset 2^(B-1));
//      in commitment mode they come from the data node and must hash to the task's commitment
//      (inputCommitment(q, commitmentPackBits));
//   2. the model input is the float32 tensor x_i = q_i / 2^s of input.shape (dequantizePlainInput);
//   3. onnxruntime runs the model; the first output, row-major, is y (float32);
//   4. each output value is quantized as o_j = round(y_j * 2^s), rounding half away from zero, and must fit B
//      signed bits (quantizePlainOutput: an output out of range, NaN or infinite fails the task rather than
//      being clamped);
//   5. the result words are packValues(o, B): outputWords words.
// Floating point makes step 3 exact only for the same onnxruntime build and execution provider; a node that
// runs another build may differ in the last bit of a logit, which step 4 turns into a difference of at most one
// unit after rounding. Optimistic-mode verifiers therefore run the recorded onnxruntime version (tools).

import fs from "node:fs";
import path from "node:path";
import { ZkmlError, fail } from "./errors";
import { loadOnnx } from "./onnx/parse";
import { PublicSignalLayout, makeLayout, packValues, unpackWords, wordCount } from "./packing";
import { BoundDim, bindSymbolicDims, describeBoundDim } from "./quant/quantize";
import { installedVersion, opgVersion, sha256File } from "./bundle";

export const PLAIN_BUNDLE_FORMAT = "opg-plain-bundle/1";
/** ONNX TensorProto.DataType FLOAT. */
const ONNX_FLOAT = 1;

export interface PlainBundleManifest {
  format: typeof PLAIN_BUNDLE_FORMAT;
  kind: "plain";
  name: string;
  onnx: { file: string; sha256: string; producer: string; opset: number };
  input: { name: string; shape: number[]; dtype: "float32" };
  output: { name: string; shape: number[]; dtype: "float32"; scaleBits: number };
  quantization: { scaleBits: number; inputBits: number; commitmentPackBits: number };
  publicSignals: PublicSignalLayout;
  artifacts: Record<string, never>;
  boundDims: BoundDim[];
  tools: Record<string, string>;
  createdAt: string;
}

export interface PackagePlainOptions {
  /** Fixed-point scale bits s of inputs and outputs (default 8). */
  scaleBits?: number;
  /** B, bits per packed value (default 16). */
  packBits?: number;
  /** Signed bits of each input value (default packBits; at most packBits in inline mode). */
  inputBits?: number;
  /** "auto" (default): inline when the packed input fits in maxInlineWords words, else commitment. */
  inputMode?: "inline" | "commitment" | "auto";
  /** Inline-mode limit for "auto" (default 8 words). */
  maxInlineWords?: number;
  /** Values for named symbolic input dimensions; each one not given is bound to 1. */
  dims?: Record<string, number>;
  log?: (msg: string) => void;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function checkBitsOption(what: string, v: number, lo: number, hi: number): void {
  if (!Number.isInteger(v) || v < lo || v > hi)
    fail("BAD_INPUT", `${what} must be an integer in [${lo}, ${hi}], got ${v}`);
}

function ortModule(): typeof import("onnxruntime-node") {
  // Loaded on use: onnxruntime's native module is not needed to read a manifest.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require("onnxruntime-node") as typeof import("onnxruntime-node");
}

function toolVersions(): Record<string, string> {
  return { opg: opgVersion(), "onnxruntime-node": installedVersion("onnxruntime-node") };
}

/**
 * Package an ONNX model as a plain bundle in `outDir` (model.onnx + manifest.json). The model must have one
 * float32 input; its symbolic dimensions are bound (opts.dims, else 1) and the model is run once on zeros with
 * onnxruntime to learn its output shape (and to refuse a model onnxruntime cannot load). Nothing is quantized
 * or compiled: see the top of this file for how nodes execute it.
 */
export async function packagePlainModel(
  onnxPath: string,
  outDir: string,
  opts: PackagePlainOptions = {},
): Promise<PlainBundleManifest> {
  const log = opts.log ?? (() => {});
  const scaleBits = opts.scaleBits ?? 8;
  const packBits = opts.packBits ?? 16;
  const inputBits = opts.inputBits ?? packBits;
  checkBitsOption("scale bits", scaleBits, 0, 32);
  checkBitsOption("pack bits", packBits, 2, 126);
  checkBitsOption("input bits", inputBits, 2, 126);
  if (!fs.existsSync(onnxPath)) fail("BAD_INPUT", `ONNX file ${onnxPath} not found`);
  const graph = loadOnnx(onnxPath);
  if (graph.inputs.length !== 1) {
    fail(
      "BAD_INPUT",
      `a plain bundle needs a model with exactly one input; ${onnxPath} has ${graph.inputs.length}`,
    );
  }
  if (graph.outputs.length < 1) fail("BAD_INPUT", `${onnxPath} has no output`);
  const input0 = graph.inputs[0];
  if (input0.elemType !== ONNX_FLOAT) {
    fail(
      "BAD_INPUT",
      `input '${input0.name}' has ONNX element type ${input0.elemType}; a plain bundle needs float32`,
    );
  }
  const { graph: bound, bound: boundDims } = bindSymbolicDims(graph, opts.dims);
  for (const b of boundDims) log(describeBoundDim(b));
  const dims = bound.inputs[0].dims;
  if (!dims || dims.some((d) => typeof d !== "number")) {
    fail("BAD_INPUT", `input '${input0.name}' has no static shape after binding its symbolic dimensions`);
  }
  const inputShape = dims as number[];

  const ort = ortModule();
  let outputShape: number[];
  let outputName: string;
  try {
    const session = await ort.InferenceSession.create(onnxPath);
    const x = new ort.Tensor("float32", new Float32Array(numel(inputShape)), inputShape);
    outputName = session.outputNames[0];
    const out = (await session.run({ [session.inputNames[0]]: x }))[outputName];
    if (out.type !== "float32")
      fail("BAD_INPUT", `output '${outputName}' is ${out.type}; a plain bundle needs float32`);
    outputShape = out.dims.map(Number);
    await session.release();
  } catch (e) {
    if (e instanceof ZkmlError) throw e;
    return fail(
      "BAD_INPUT",
      `onnxruntime cannot run ${onnxPath} on input [${inputShape}]: ${(e as Error).message}`,
    );
  }
  const nIn = numel(inputShape);
  const nOut = numel(outputShape);
  const mode =
    opts.inputMode && opts.inputMode !== "auto"
      ? opts.inputMode
      : wordCount(nIn, packBits) <= (opts.maxInlineWords ?? 8)
        ? "inline"
        : "commitment";
  if (mode === "inline" && inputBits > packBits) {
    fail("BAD_INPUT", `input bits (${inputBits}) cannot exceed pack bits (${packBits}) in inline mode`);
  }
  const layout = makeLayout(nIn, nOut, packBits, mode);

  const name = path.basename(onnxPath).replace(/\.onnx$/i, "");
  const dir = path.resolve(outDir);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) {
    if (f !== "model.onnx" && f !== "manifest.json") {
      fail("BAD_INPUT", `${dir} holds ${f}: package a plain bundle into an empty directory`);
    }
  }
  fs.copyFileSync(onnxPath, path.join(dir, "model.onnx"));
  const manifest: PlainBundleManifest = {
    format: PLAIN_BUNDLE_FORMAT,
    kind: "plain",
    name,
    onnx: {
      file: "model.onnx",
      sha256: sha256File(path.join(dir, "model.onnx")),
      producer: graph.producer,
      opset: graph.opset,
    },
    input: { name: input0.name, shape: inputShape, dtype: "float32" },
    output: { name: outputName, shape: outputShape, dtype: "float32", scaleBits },
    quantization: { scaleBits, inputBits, commitmentPackBits: inputBits },
    publicSignals: layout,
    artifacts: {},
    boundDims,
    tools: toolVersions(),
    createdAt: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  log(
    `packaged ${name} as a plain bundle: input [${inputShape}] (${layout.inputWords} ${mode} word(s)), ` +
      `output [${outputShape}] (${layout.outputWords} word(s)), scale 2^${scaleBits}, ${packBits}-bit packing`,
  );
  return manifest;
}

/** Whether a parsed manifest.json is a plain bundle's. */
export function isPlainManifest(m: unknown): m is PlainBundleManifest {
  const o = m as Partial<PlainBundleManifest> | null;
  return typeof o === "object" && o !== null && o.kind === "plain";
}

/** The kind of the bundle in `dir`: "plain" or "zk" (by its manifest; nothing else is checked). */
export function bundleKind(dir: string): "plain" | "zk" {
  const file = path.join(dir, "manifest.json");
  let m: unknown;
  try {
    m = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new ZkmlError("BUNDLE", `cannot read ${file}: ${(e as Error).message}`);
  }
  return isPlainManifest(m) ? "plain" : "zk";
}

/**
 * Reads a plain bundle's manifest and checks it: format, kind, a consistent layout, and (checkHashes, the
 * default) model.onnx against its sha256.
 */
export function loadPlainManifest(dir: string, opts: { checkHashes?: boolean } = {}): PlainBundleManifest {
  const file = path.join(dir, "manifest.json");
  let m: PlainBundleManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, "utf8")) as PlainBundleManifest;
  } catch (e) {
    throw new ZkmlError("BUNDLE", `cannot read ${file}: ${(e as Error).message}`);
  }
  if (m?.format !== PLAIN_BUNDLE_FORMAT || m.kind !== "plain") {
    fail("BUNDLE", `${file}: not a plain bundle (format '${m?.format}', kind '${m?.kind}')`);
  }
  const l = m.publicSignals;
  const expected = makeLayout(numel(m.input.shape), numel(m.output.shape), l.packBits, l.inputMode);
  if (JSON.stringify(expected) !== JSON.stringify(l)) {
    fail("BUNDLE", `${file}: publicSignals do not match the input and output shapes`);
  }
  if (m.onnx.file !== "model.onnx" || Object.keys(m.artifacts ?? {}).length !== 0) {
    fail("BUNDLE", `${file}: a plain bundle holds model.onnx and nothing else`);
  }
  if (opts.checkHashes ?? true) {
    const p = path.join(dir, m.onnx.file);
    if (!fs.existsSync(p)) fail("BUNDLE", `bundle file ${m.onnx.file} is missing`);
    if (sha256File(p) !== m.onnx.sha256)
      fail("BUNDLE", `bundle file ${m.onnx.file} does not match its sha256`);
  }
  return m;
}

/** Step 1-2: the model's float32 input for quantized input values (q / 2^s), checked against inputBits. */
export function dequantizePlainInput(m: PlainBundleManifest, values: readonly bigint[]): Float32Array {
  const n = numel(m.input.shape);
  if (values.length !== n)
    fail("BAD_INPUT", `input has ${values.length} values, the model's [${m.input.shape}] needs ${n}`);
  const lim = 1n << BigInt(m.quantization.inputBits - 1);
  const div = 2 ** m.quantization.scaleBits;
  return Float32Array.from(values, (v, i) => {
    if (v < -lim || v >= lim) {
      fail("OUT_OF_RANGE", `input value #${i} = ${v} does not fit ${m.quantization.inputBits} signed bits`);
    }
    return Number(v) / div;
  });
}

/** Quantizes real input values as a requester does (round(x * 2^s)); refuses values outside inputBits. */
export function quantizePlainInput(m: PlainBundleManifest, input: readonly number[]): bigint[] {
  const n = numel(m.input.shape);
  if (input.length !== n)
    fail("BAD_INPUT", `input has ${input.length} values, the model's [${m.input.shape}] needs ${n}`);
  const scale = 2 ** m.quantization.scaleBits;
  const lim = 2 ** (m.quantization.inputBits - 1);
  return input.map((x, i) => {
    const v = roundHalfAway(x * scale);
    if (!Number.isFinite(x) || v < -lim || v >= lim) {
      fail(
        "OUT_OF_RANGE",
        `input value #${i} = ${x} is outside the representable range of the model's input`,
      );
    }
    return BigInt(v);
  });
}

function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** Step 4: the quantized outputs o_j = round(y_j * 2^s) (half away from zero), each within packBits. */
export function quantizePlainOutput(m: PlainBundleManifest, output: ArrayLike<number>): bigint[] {
  const n = numel(m.output.shape);
  if (output.length !== n)
    fail("BAD_INPUT", `output has ${output.length} values, [${m.output.shape}] holds ${n}`);
  const scale = 2 ** m.output.scaleBits;
  const lim = 2 ** (m.publicSignals.packBits - 1);
  const out: bigint[] = [];
  for (let j = 0; j < n; j++) {
    const v = roundHalfAway(output[j] * scale);
    if (!Number.isFinite(v) || v < -lim || v >= lim) {
      fail(
        "OUT_OF_RANGE",
        `output value #${j} = ${output[j]} does not fit ${m.publicSignals.packBits} signed bits at scale 2^${m.output.scaleBits}`,
      );
    }
    out.push(BigInt(v));
  }
  return out;
}

/** Step 1 (inline mode): the input values held by the task's input words. */
export function plainInputValues(m: PlainBundleManifest, inputWords: readonly bigint[]): bigint[] {
  if (m.publicSignals.inputMode !== "inline") {
    fail("BAD_INPUT", "a commitment-mode model's input values come from the data node, not the input words");
  }
  return unpackWords(inputWords, m.publicSignals.inputCount, m.publicSignals.packBits);
}

/** Step 5: the result words of quantized outputs. */
export function plainOutputWords(m: PlainBundleManifest, outputs: readonly bigint[]): bigint[] {
  return packValues(outputs, m.publicSignals.packBits);
}

/**
 * Steps 2-4 with onnxruntime: the quantized outputs of the bundle in `dir` for quantized input values. A
 * reference for tests and auditors; nodes keep one session per bundle instead of creating one per call.
 */
export async function runPlainBundle(dir: string, values: readonly bigint[]): Promise<bigint[]> {
  const m = loadPlainManifest(dir);
  const ort = ortModule();
  const session = await ort.InferenceSession.create(path.join(dir, m.onnx.file));
  try {
    const x = new ort.Tensor("float32", dequantizePlainInput(m, values), m.input.shape);
    const out = (await session.run({ [m.input.name]: x }))[m.output.name];
    return quantizePlainOutput(m, out.data as Float32Array);
  } finally {
    await session.release();
  }
}
