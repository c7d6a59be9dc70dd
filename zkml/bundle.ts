import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { generateCircom, planCircuit } from "./circuit/codegen";
import { inputCommitment } from "./commitment";
import { ZkmlError, fail } from "./errors";
import { SNARK_SCALAR_FIELD, toField } from "./field";
import { loadOnnx } from "./onnx/parse";
import { PublicSignalLayout, makeLayout, packValues, unpackWords, wordCount } from "./packing";
import { programFromJson, programToJson } from "./program-io";
import { PtauCheck, PtauContribution, PtauTrust, PublishedPtau, checkPtau } from "./ceremony/ptau";
import type { ZkeyContribution } from "./ceremony/zkey";
import {
  COMPILE_CONTRIBUTION_NAME,
  Log,
  devPtau,
  exportVerificationKey,
  exportVerifier,
  computeWitnessFile,
  groth16Prove,
  groth16Setup,
  groth16Verify,
  r1csInfo,
  requiredPower,
} from "./prover/groth16";
import { compileCircom, findCircom } from "./prover/circom";
import { packageRoot } from "./prover/paths";
import { NamedOutput, dequantizeOutput, executeQuantized, namedOutputs } from "./quant/executor";
import type { OutputPart } from "./quant/program";
import { QProgram } from "./quant/program";
import {
  BoundDim,
  DEFAULT_QUANTIZE,
  bindSymbolicDims,
  describeBoundDim,
  quantizeGraph,
} from "./quant/quantize";
import { numel } from "./quant/shapes";
import { referenceOutputs, runReference } from "./reference";
import "./prover/snarkjs-types"; // the `snarkjs` module declarations, kept in the emitted .d.ts
import type { Groth16Proof } from "snarkjs";

export const BUNDLE_FORMAT = "opg-zkml-bundle/1";

export interface CompileOptions {
  /** Fixed-point scale bits s (default 8). */
  scaleBits?: number;
  /** Cap on rescaled activation width in signed bits (default 24). */
  activationBits?: number;
  /** B, bits per packed public value (default 16). */
  packBits?: number;
  /** Signed bits each input value is range-checked to (default: packBits). */
  inputBits?: number;
  /** "auto" (default): inline when the packed input fits in maxInlineWords words, else commitment. */
  inputMode?: "inline" | "commitment" | "auto";
  /** Inline-mode limit for "auto" (default 8 words). */
  maxInlineWords?: number;
  /**
   * An existing powers-of-tau ceremony file; without it a cached development ptau is used. The file is
   * verified (once per machine, cached by hash) and marked secure only when it is a published ceremony
   * file (see checkPtau).
   */
  ptau?: string;
  /** Published ceremony files a --ptau file is matched against (default PUBLISHED_PTAU). */
  publishedPtau?: readonly PublishedPtau[];
  /** Solidity contract name of the verifier (default <Model>Groth16Verifier). */
  contractName?: string;
  /** Stop after writing the circuit and the witness wasm (no trusted setup). */
  skipSetup?: boolean;
  /** Values for named symbolic input dimensions (e.g. { batch: 1 }); each one not given is bound to 1. */
  dims?: Record<string, number>;
  log?: Log;
}

export interface ArtifactRef {
  file: string;
  sha256: string;
}

/** The phase-1 file a bundle's zkey was set up with, and how far it can be trusted. */
export interface PtauRecord {
  source: "dev" | "file";
  /** The development ptau's file name (in the cache), or the path of the file passed with --ptau. */
  file: string;
  /** log2 of the powers the file holds. */
  power: number;
  sha256: string;
  /** True only for a byte-identical copy of a published ceremony file (trust "published-ceremony"). */
  secure: boolean;
  /** blake2b-512 of the whole file, as b2sum and the snarkjs README's list of published files give it. */
  blake2b?: string;
  /** "development" (generated here), "published-ceremony", or "verified-unpublished". */
  trust?: PtauTrust;
  /** The published ceremony file this is a copy of. */
  published?: string | null;
  /** Phase-1 contributions recorded in the file. */
  contributions?: PtauContribution[];
}

/** One phase-2 contribution to a bundle's zkey (the zkey records the same name, type and hash). */
export interface Phase2Contribution extends ZkeyContribution {
  /** When it was made, where this tool made it. */
  at?: string;
}

export interface BundleManifest {
  format: string;
  name: string;
  onnx: ArtifactRef & { producer: string; opset: number };
  input: { name: string; shape: number[] };
  output: {
    name: string;
    shape: number[];
    scaleBits: number;
    postprocess: string;
    /** A multi-output model's outputs: each one's slice of the proven output and how it reads. */
    parts?: OutputPart[];
  };
  quantization: { scaleBits: number; activationBits: number; inputBits: number; commitmentPackBits: number };
  publicSignals: PublicSignalLayout;
  constraints: number;
  /** Constraints of the same circuit with weights fed as private signals: one more per weight multiply. */
  baselineConstraints: number;
  weightMultiplies: number;
  wires: number;
  ptau: PtauRecord | null;
  /**
   * Phase-2 contributions to the zkey, in order: compile's own first, then each `ceremony contribute` /
   * `ceremony beacon`. Absent in bundles made before it was recorded (the zkey still holds them).
   */
  phase2?: { contributions: Phase2Contribution[] };
  artifacts: Record<"circuit" | "program" | "r1cs" | "wasm", ArtifactRef> &
    Partial<Record<"zkey" | "verificationKey" | "verifier", ArtifactRef>>;
  verifierContract: string | null;
  /** Wall time of each build step on the machine that built the bundle. */
  buildTimings: { quantizeMs: number; circomMs: number; setupMs: number | null; ptauMs: number | null };
  tools: Record<string, string>;
  createdAt: string;
  /**
   * The symbolic (dynamic) input dimensions compile bound to numbers; empty when the model's shapes are
   * static. Absent in bundles made before it was recorded.
   */
  boundDims?: BoundDim[];
}

export function sha256File(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function ref(dir: string, file: string): ArtifactRef {
  return { file, sha256: sha256File(path.join(dir, file)) };
}

function pascal(name: string): string {
  const p = name
    .replace(/[^A-Za-z0-9]+/g, " ")
    .trim()
    .split(" ")
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join("");
  return /^[A-Za-z]/.test(p) ? p : `Model${p}`;
}

/** Multiplies by a weight the baseline (weights as private signals) pays one constraint each for. */
export function countWeightMultiplies(program: QProgram): number {
  let n = 0;
  for (const op of program.ops) {
    if (op.op === "dense") n += op.rows * op.k * op.n;
    else if (op.op === "conv") {
      for (let oy = 0; oy < op.oh; oy++)
        for (let ky = 0; ky < op.kh; ky++) {
          const iy = oy * op.strides[0] - op.pads[0] + ky * op.dilations[0];
          if (iy < 0 || iy >= op.h) continue;
          for (let ox = 0; ox < op.ow; ox++)
            for (let kx = 0; kx < op.kw; kx++) {
              const ix = ox * op.strides[1] - op.pads[1] + kx * op.dilations[1];
              if (ix >= 0 && ix < op.w) n += op.batch * op.oc * (op.c / op.group);
            }
        }
    } else if (op.op === "lincomb" && program.tensors[op.dst].scale === 2) n += op.size * op.terms.length;
    else if (op.op === "sumpool") n += op.windows.length;
  }
  return n;
}

/** The installed version of npm package `pkg`, or "unknown". */
export function installedVersion(pkg: string): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(`${pkg}/package.json`).version as string;
  } catch {
    return "unknown";
  }
}

/** This package's name and version, as bundles record the tool that made them. */
export function opgVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const own = require(path.join(packageRoot(), "package.json")) as { name: string; version: string };
  return `${own.name} ${own.version}`;
}

function toolVersions(): Record<string, string> {
  const v = installedVersion;
  return {
    opg: opgVersion(),
    circom: findCircom().version,
    snarkjs: v("snarkjs"),
    circomlib: v("circomlib"),
    onnxruntime: v("onnxruntime-node"),
    node: process.version,
  };
}

/**
 * Compiles an ONNX model into a proving bundle in `outDir`: manifest.json, model.onnx, program.json
 * (the quantized program), circuit.circom, circuit.r1cs, circuit.wasm, circuit.zkey,
 * verification_key.json and the Solidity verifier.
 */
export async function compileModel(
  onnxPath: string,
  outDir: string,
  opts: CompileOptions = {},
): Promise<BundleManifest> {
  const log = opts.log ?? (() => {});
  const packBits = opts.packBits ?? 16;
  const tq = Date.now();
  const graph = loadOnnx(onnxPath);
  const { graph: boundGraph, bound } = bindSymbolicDims(graph, opts.dims);
  for (const b of bound) log(describeBoundDim(b));
  const program = quantizeGraph(boundGraph, {
    scaleBits: opts.scaleBits ?? DEFAULT_QUANTIZE.scaleBits,
    activationBits: opts.activationBits ?? DEFAULT_QUANTIZE.activationBits,
    inputBits: opts.inputBits ?? packBits,
  });
  if (program.inputBits > packBits) {
    fail("BAD_INPUT", `input bits (${program.inputBits}) cannot exceed pack bits (${packBits})`);
  }
  const nIn = numel(program.input.shape);
  const nOut = numel(program.output.shape);
  const mode =
    opts.inputMode && opts.inputMode !== "auto"
      ? opts.inputMode
      : wordCount(nIn, packBits) <= (opts.maxInlineWords ?? 8)
        ? "inline"
        : "commitment";
  const layout = makeLayout(nIn, nOut, packBits, mode);
  const plan = planCircuit(program, layout);
  const name = path.basename(onnxPath).replace(/\.onnx$/i, "");
  fs.mkdirSync(outDir, { recursive: true });
  const dir = path.resolve(outDir);
  fs.copyFileSync(onnxPath, path.join(dir, "model.onnx"));
  fs.writeFileSync(path.join(dir, "program.json"), programToJson(program));
  fs.writeFileSync(path.join(dir, "circuit.circom"), generateCircom(program, plan, path.basename(onnxPath)));
  const quantizeMs = Date.now() - tq;
  log(`quantized ${name}: ${program.ops.length} ops, scale 2^${program.scaleBits}, input mode ${mode}`);

  // a ceremony file is checked before the (long) circuit compile, so a bad one fails fast
  let givenPtau: PtauCheck | null = null;
  if (opts.ptau && !opts.skipSetup) {
    log(`setup: checking ceremony file ${opts.ptau}`);
    givenPtau = await checkPtau(opts.ptau, { publishedPtau: opts.publishedPtau, log });
  }

  const t0 = Date.now();
  compileCircom(path.join(dir, "circuit.circom"), dir, log);
  const jsDir = path.join(dir, "circuit_js");
  fs.renameSync(path.join(jsDir, "circuit.wasm"), path.join(dir, "circuit.wasm"));
  fs.rmSync(jsDir, { recursive: true, force: true });
  const circomMs = Date.now() - t0;
  const info = await r1csInfo(path.join(dir, "circuit.r1cs"));
  log(
    `circuit: ${info.nConstraints} constraints, ${info.nVars} wires (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );

  const weightMultiplies = countWeightMultiplies(program);
  const contract = opts.contractName ?? `${pascal(name)}Groth16Verifier`;
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    name,
    onnx: { ...ref(dir, "model.onnx"), producer: graph.producer, opset: graph.opset },
    input: { name: program.input.name, shape: program.input.shape },
    output: {
      name: program.output.name,
      shape: program.output.shape,
      scaleBits: program.scaleBits * program.tensors[program.output.tensor].scale,
      postprocess: program.output.postprocess,
      ...(program.output.parts ? { parts: program.output.parts } : {}),
    },
    quantization: {
      scaleBits: program.scaleBits,
      activationBits: program.activationBits,
      inputBits: program.inputBits,
      commitmentPackBits: plan.commitmentPackBits,
    },
    publicSignals: layout,
    constraints: info.nConstraints,
    baselineConstraints: info.nConstraints + weightMultiplies,
    weightMultiplies,
    wires: info.nVars,
    ptau: null,
    artifacts: {
      circuit: ref(dir, "circuit.circom"),
      program: ref(dir, "program.json"),
      r1cs: ref(dir, "circuit.r1cs"),
      wasm: ref(dir, "circuit.wasm"),
    },
    verifierContract: null,
    buildTimings: { quantizeMs, circomMs, setupMs: null, ptauMs: null },
    tools: toolVersions(),
    createdAt: new Date().toISOString(),
    boundDims: bound,
  };

  if (!opts.skipSetup) {
    const power = requiredPower(info);
    let ptau: PtauCheck;
    if (givenPtau) {
      ptau = givenPtau;
      if (ptau.power < power) {
        fail(
          "CEREMONY",
          `ptau ${opts.ptau} holds 2^${ptau.power} powers; this circuit needs at least 2^${power}`,
        );
      }
    } else {
      const tp = Date.now();
      const dev = await devPtau(power, log);
      manifest.buildTimings.ptauMs = Date.now() - tp;
      log(`setup: WARNING development ptau ${path.basename(dev.file)}: NOT a secure ceremony`);
      ptau = await checkPtau(dev.file, { requiredPower: power, log });
    }
    const t1 = Date.now();
    const { contributionHash } = await groth16Setup(
      path.join(dir, "circuit.r1cs"),
      ptau.file,
      path.join(dir, "circuit.zkey"),
      log,
    );
    manifest.verifierContract = contract;
    await writeVerificationArtifacts(dir, manifest);
    manifest.buildTimings.setupMs = Date.now() - t1;
    log(`setup: done in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    const dev = ptau.trust === "development";
    manifest.ptau = {
      source: dev ? "dev" : "file",
      file: dev ? path.basename(ptau.file) : ptau.file,
      power: ptau.power,
      sha256: ptau.sha256,
      secure: ptau.secure,
      blake2b: ptau.blake2b,
      trust: ptau.trust,
      published: ptau.published,
      contributions: ptau.contributions,
    };
    manifest.phase2 = {
      contributions: [
        {
          type: "contribute",
          name: COMPILE_CONTRIBUTION_NAME,
          hash: contributionHash,
          at: new Date().toISOString(),
        },
      ],
    };
  }
  writeManifest(dir, manifest);
  return manifest;
}

export function writeManifest(dir: string, manifest: BundleManifest): void {
  fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
}

/**
 * Exports the verification key and the Solidity verifier from the bundle's zkey (circuit.zkey) and
 * records their hashes, with the zkey's, in `manifest` (not written to disk here). Run after compile's
 * setup and after every phase-2 contribution: both files change with each contribution.
 */
export async function writeVerificationArtifacts(dir: string, manifest: BundleManifest): Promise<void> {
  const zkey = path.join(dir, "circuit.zkey");
  const vk = await exportVerificationKey(zkey);
  fs.writeFileSync(path.join(dir, "verification_key.json"), JSON.stringify(vk, null, 1));
  fs.writeFileSync(path.join(dir, "Verifier.sol"), await verifierSource(zkey, manifest));
  manifest.artifacts.zkey = ref(dir, "circuit.zkey");
  manifest.artifacts.verificationKey = ref(dir, "verification_key.json");
  manifest.artifacts.verifier = ref(dir, "Verifier.sol");
}

/** The Solidity verifier for a zkey, with the bundle's header and contract name. */
export async function verifierSource(zkey: string, manifest: BundleManifest): Promise<string> {
  const sol = await exportVerifier(zkey);
  const layout = manifest.publicSignals;
  const contract = manifest.verifierContract ?? `${pascal(manifest.name)}Groth16Verifier`;
  const header =
    `// Generated by opg zkml from ${manifest.name}.onnx (onnx sha256 ${manifest.onnx.sha256}). ` +
    `Do not edit: regenerate with \`opg zkml compile\`.\n` +
    `// Public signals: [outputWords x${layout.outputWords}, ` +
    `${layout.inputMode === "inline" ? `inputWords x${layout.inputWords}` : "inputCommitment"}, taskBinding].\n`;
  return header + sol.replace("contract Groth16Verifier", `contract ${contract}`);
}

/** Reads a bundle's manifest, optionally checking every artifact against its recorded sha256. */
export function loadManifest(dir: string, opts: { checkHashes?: boolean } = {}): BundleManifest {
  const file = path.join(dir, "manifest.json");
  let m: BundleManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, "utf8")) as BundleManifest;
  } catch (e) {
    throw new ZkmlError("BUNDLE", `cannot read ${file}: ${(e as Error).message}`);
  }
  if (m.format !== BUNDLE_FORMAT) fail("BUNDLE", `${file}: unknown bundle format '${m.format}'`);
  if (opts.checkHashes) {
    for (const [key, a] of Object.entries(m.artifacts)) {
      const p = path.join(dir, a.file);
      if (!fs.existsSync(p)) fail("BUNDLE", `bundle artifact ${key} (${a.file}) is missing`);
      if (sha256File(p) !== a.sha256)
        fail("BUNDLE", `bundle artifact ${key} (${a.file}) does not match its sha256`);
    }
  }
  return m;
}

export function loadProgram(dir: string): QProgram {
  return programFromJson(fs.readFileSync(path.join(dir, "program.json"), "utf8"));
}

/** Flattens a nested array that must have exactly `shape` (leading 1-sized dims may be omitted). */
export function flattenInput(input: unknown, shape: readonly number[]): number[] {
  const dims: number[] = [];
  let cur: unknown = input;
  while (Array.isArray(cur)) {
    dims.push(cur.length);
    cur = cur[0];
  }
  let expect = [...shape];
  // an already flat array of the right length is accepted too
  if (dims.length === 1 && dims[0] === numel(shape) && shape.length > 1) expect = [numel(shape)];
  while (expect.length > dims.length && expect[0] === 1) expect = expect.slice(1);
  if (dims.length !== expect.length || dims.some((d, i) => d !== expect[i])) {
    fail("BAD_INPUT", `input has shape [${dims}], the model expects [${shape}]`);
  }
  const flat: number[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (depth === expect.length) {
      if (typeof v !== "number") fail("BAD_INPUT", `input contains ${JSON.stringify(v)}, not a number`);
      flat.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== expect[depth]) {
      fail("BAD_INPUT", `input is ragged: expected ${expect[depth]} entries at depth ${depth}`);
    }
    for (const x of v) walk(x, depth + 1);
  };
  walk(input, 0);
  return flat;
}

/** The public input words of a quantized input: packed values (inline) or the commitment (1 word). */
export function inputWords(
  manifest: Pick<BundleManifest, "publicSignals"> & { quantization: { commitmentPackBits: number } },
  quantizedInput: readonly bigint[],
): bigint[] {
  const l = manifest.publicSignals;
  return l.inputMode === "inline"
    ? packValues(quantizedInput, l.packBits)
    : [inputCommitment(quantizedInput, manifest.quantization.commitmentPackBits)];
}

/** The witness generator's input object for a quantized input and binding. */
export function witnessInput(
  manifest: BundleManifest,
  quantizedInput: readonly bigint[],
  binding: bigint,
): Record<string, unknown> {
  const words = inputWords(manifest, quantizedInput);
  const w: Record<string, unknown> = {
    taskBinding: binding.toString(),
    x: quantizedInput.map((v) => toField(v).toString()),
  };
  if (manifest.publicSignals.inputMode === "inline") w.inputWords = words.map(String);
  else w.inputCommitment = words[0].toString();
  return w;
}

/** The public signals the circuit must produce: [outputWords..., inputWords..., taskBinding]. */
export function expectedPublicSignals(
  manifest: BundleManifest,
  quantizedInput: readonly bigint[],
  quantizedOutput: readonly bigint[],
  binding: bigint,
): bigint[] {
  return [
    ...packValues(quantizedOutput, manifest.publicSignals.packBits),
    ...inputWords(manifest, quantizedInput),
    binding,
  ];
}

export interface ProofResult {
  proof: Groth16Proof;
  publicSignals: string[];
  output: {
    output: number[];
    quantized: string[];
    /** onnxruntime's (first) output; null when not asked, or for a multi-output model (see referenceOutputs). */
    reference: number[] | null;
    /** The outputs by name (labels read as the model's classes): present for a multi-output model. */
    outputs?: Record<string, NamedOutput>;
    /** onnxruntime's outputs by name, for a multi-output model. */
    referenceOutputs?: Record<string, (number | string)[]>;
  };
  timings: { witnessMs: number; proveMs: number; witnessAndProveMs: number };
}

export interface ProveOptions {
  /** Also run the float model with onnxruntime for output.json's `reference` (default true). */
  reference?: boolean;
  /** Re-check artifact hashes before proving (default true). */
  checkHashes?: boolean;
}

/**
 * Proves one inference. `input` is the nested array in the model's input shape (or already flat);
 * `binding` the task binding (see taskBinding()). The circuit's public signals are checked against the
 * fixed-point executor's before returning: they agree bit for bit or this throws.
 */
/** Proving material kept in memory per bundle, so a long-running worker reads the zkey and wasm once. */
interface LoadedBundle {
  manifest: BundleManifest;
  program: QProgram;
  zkey: { type: "mem"; data: Uint8Array };
  wasm: { type: "mem"; data: Uint8Array };
}

const loaded = new Map<string, LoadedBundle>();

function loadBundle(dir: string, checkHashes: boolean): LoadedBundle {
  const key = path.resolve(dir);
  const manifest = loadManifest(dir);
  const cached = loaded.get(key);
  if (
    cached &&
    cached.manifest.artifacts.zkey?.sha256 === manifest.artifacts.zkey?.sha256 &&
    cached.manifest.artifacts.program.sha256 === manifest.artifacts.program.sha256
  ) {
    return cached;
  }
  if (checkHashes) loadManifest(dir, { checkHashes: true });
  if (!manifest.artifacts.zkey) fail("BUNDLE", `bundle ${dir} was compiled without setup: it has no zkey`);
  const b: LoadedBundle = {
    manifest,
    program: loadProgram(dir),
    zkey: {
      type: "mem",
      data: new Uint8Array(fs.readFileSync(path.join(dir, manifest.artifacts.zkey.file))),
    },
    wasm: {
      type: "mem",
      data: new Uint8Array(fs.readFileSync(path.join(dir, manifest.artifacts.wasm.file))),
    },
  };
  loaded.set(key, b);
  return b;
}

/**
 * Proves one inference. `input` is the nested array in the model's input shape (or already flat);
 * `binding` the task binding (see taskBinding()). The circuit's public signals are checked against the
 * fixed-point executor's before returning: they agree bit for bit or this throws. The bundle's proving
 * key and witness generator stay in memory for later calls (artifact hashes are checked when loaded).
 */
export async function proveBundle(
  dir: string,
  input: unknown,
  binding: bigint,
  opts: ProveOptions = {},
): Promise<ProofResult> {
  const { manifest, program, zkey, wasm } = loadBundle(dir, opts.checkHashes ?? true);
  if (binding < 0n || binding >= SNARK_SCALAR_FIELD)
    fail("BAD_INPUT", `binding must be in [0, r): ${binding}`);
  const flat = flattenInput(input, manifest.input.shape);
  const q = executeQuantized(program, flat);
  checkOutputFits(q.quantized, manifest.publicSignals.packBits);
  const t0 = Date.now();
  const wtns = { type: "mem" };
  await computeWitnessFile(witnessInput(manifest, q.input, binding), wasm, wtns).catch((e: Error) =>
    fail("TOOLCHAIN", `witness generation failed: ${e.message}`),
  );
  const t1 = Date.now();
  const { proof, publicSignals } = await groth16Prove(zkey, wtns).catch((e: Error) =>
    fail("TOOLCHAIN", `proving failed: ${e.message}`),
  );
  const t2 = Date.now();
  const expected = expectedPublicSignals(manifest, q.input, q.quantized, binding).map(String);
  if (expected.length !== publicSignals.length || expected.some((v, i) => v !== publicSignals[i])) {
    fail(
      "TOOLCHAIN",
      "the circuit's public signals differ from the fixed-point executor's: the bundle is inconsistent",
    );
  }
  const multi = program.output.parts !== undefined;
  const onnx = path.join(dir, "model.onnx");
  const reference =
    opts.reference === false || multi ? null : await runReference(onnx, flat, manifest.input.shape);
  const extra = multi
    ? {
        outputs: namedOutputs(program, q.output),
        ...(opts.reference === false
          ? {}
          : { referenceOutputs: await (await referenceOutputs(onnx))(flat, manifest.input.shape) }),
      }
    : {};
  return {
    proof,
    publicSignals,
    output: { output: q.output, quantized: q.quantized.map(String), reference, ...extra },
    timings: { witnessMs: t1 - t0, proveMs: t2 - t1, witnessAndProveMs: t2 - t0 },
  };
}

/** Each proven output value must fit the public signals' pack width; say so before the circuit's assert does. */
function checkOutputFits(quantized: readonly bigint[], packBits: number): void {
  const lim = 1n << BigInt(packBits - 1);
  quantized.forEach((v, i) => {
    if (v < -lim || v >= lim)
      fail(
        "OUT_OF_RANGE",
        `output value #${i} (${v} in fixed point) does not fit the ${packBits}-bit public output words; ` +
          `compile with a larger --pack-bits or a smaller --scale-bits`,
      );
  });
}

export interface VerifyResult {
  ok: boolean;
  reason: string;
  /** The proven output, decoded from the public signals (when they are well formed). */
  quantized?: bigint[];
  output?: number[];
  /** A multi-output model's proven outputs by name (labels as the model's classes). */
  outputs?: Record<string, NamedOutput>;
}

/**
 * Verifies a proof against a bundle's verification key: the public signals must have the manifest's
 * layout, be field elements, and (when output.json is given) decode to its claimed quantized output.
 */
export async function verifyBundle(
  dir: string,
  proofOrDir: string | { proof: Groth16Proof; publicSignals: string[]; output?: { quantized?: string[] } },
): Promise<VerifyResult> {
  const manifest = loadManifest(dir);
  if (!manifest.artifacts.verificationKey) return { ok: false, reason: "bundle has no verification key" };
  let proof: Groth16Proof;
  let publicSignals: string[];
  let claimed: string[] | undefined;
  try {
    if (typeof proofOrDir === "string") {
      proof = JSON.parse(fs.readFileSync(path.join(proofOrDir, "proof.json"), "utf8"));
      publicSignals = JSON.parse(fs.readFileSync(path.join(proofOrDir, "public.json"), "utf8"));
      const outFile = path.join(proofOrDir, "output.json");
      if (fs.existsSync(outFile)) claimed = JSON.parse(fs.readFileSync(outFile, "utf8")).quantized;
    } else {
      ({ proof, publicSignals } = proofOrDir);
      claimed = proofOrDir.output?.quantized;
    }
  } catch (e) {
    return { ok: false, reason: `cannot read the proof: ${(e as Error).message}` };
  }
  const l = manifest.publicSignals;
  if (!Array.isArray(publicSignals) || publicSignals.length !== l.bindingIndex + 1) {
    return {
      ok: false,
      reason: `expected ${l.bindingIndex + 1} public signals, got ${publicSignals?.length}`,
    };
  }
  let values: bigint[];
  try {
    values = publicSignals.map((s) => BigInt(s));
  } catch {
    return { ok: false, reason: "a public signal is not an integer" };
  }
  if (values.some((v) => v < 0n || v >= SNARK_SCALAR_FIELD))
    return { ok: false, reason: "a public signal is not below the field modulus" };
  let quantized: bigint[];
  try {
    quantized = unpackWords(values.slice(0, l.outputWords), l.outputCount, l.packBits);
    if (packValues(quantized, l.packBits).some((w, i) => w !== values[i])) throw new Error("non-canonical");
  } catch {
    return { ok: false, reason: "the output words do not decode under the manifest's packing" };
  }
  if (
    claimed &&
    (claimed.length !== quantized.length || claimed.some((c, i) => BigInt(c) !== quantized[i]))
  ) {
    return { ok: false, reason: "output.json's quantized output differs from the proven output" };
  }
  const vk = JSON.parse(fs.readFileSync(path.join(dir, manifest.artifacts.verificationKey.file), "utf8"));
  let ok = false;
  try {
    ok = await groth16Verify(vk, publicSignals, proof);
  } catch (e) {
    return { ok: false, reason: `malformed proof: ${(e as Error).message}` };
  }
  if (!ok) return { ok: false, reason: "the Groth16 proof does not verify against the verification key" };
  const program = loadProgram(dir);
  const output = dequantizeOutput(program, quantized);
  return {
    ok: true,
    reason: "proof verifies",
    quantized,
    output,
    ...(program.output.parts ? { outputs: namedOutputs(program, output) } : {}),
  };
}

/** Arguments for the generated verifier's verifyProof(a, b, c, pubSignals) (note b's coordinate swap). */
export function verifierCalldata(proof: Groth16Proof, publicSignals: readonly string[]) {
  const a: [bigint, bigint] = [BigInt(proof.pi_a[0]), BigInt(proof.pi_a[1])];
  const b: [[bigint, bigint], [bigint, bigint]] = [
    [BigInt(proof.pi_b[0][1]), BigInt(proof.pi_b[0][0])],
    [BigInt(proof.pi_b[1][1]), BigInt(proof.pi_b[1][0])],
  ];
  const c: [bigint, bigint] = [BigInt(proof.pi_c[0]), BigInt(proof.pi_c[1])];
  return { a, b, c, pubSignals: publicSignals.map((s) => BigInt(s)) };
}
