import { fail } from "../errors";
import { ConstTensor, OnnxGraph, OnnxNode, ValueInfo, nodeLabel } from "../onnx/graph";
import { numel } from "./shapes";
import { LinCombOp, LinTerm, OutputPart, QOp, QProgram, QTensor } from "./program";
import { DynValue, LoweringContext, OutputMeta, Value, kernelFor, SUPPORTED_OPS } from "./ops";
import { ML_DOMAIN, ML_OP_TYPES } from "./ops/ml";
import { foldBatchNorms } from "./ops/linear";
import { absBig, bitLength, roundToInt, signedBits } from "./ops/util";

export { SUPPORTED_OPS } from "./ops";
export { bitLength, signedBits, roundToInt, attrNum, attrInts } from "./ops/util";
export { SIGMOID_BREAKS, SIGMOID_DELTAS, SIGMOID_MAX_ERROR, plSigmoid } from "./ops/activations";

export interface QuantizeOptions {
  /** Fixed-point scale s: a real x is held as round(x * 2^s). */
  scaleBits: number;
  /** Cap on the signed width of a rescaled activation; a value beyond it is an overflow error. */
  activationBits: number;
  /** Signed width each input value is range-checked to. */
  inputBits: number;
  /**
   * Values for the graph input's named symbolic dimensions (ONNX dim_param, e.g. a dynamic 'batch'); each
   * one not given, and each unnamed unknown dimension, is bound to 1 (see bindSymbolicDims).
   */
  dims?: Record<string, number>;
}

export const DEFAULT_QUANTIZE: QuantizeOptions = { scaleBits: 8, activationBits: 24, inputBits: 16 };

/**
 * The quantizer's state while it lowers one graph, and the LoweringContext each op's kernel (ops/) works
 * through. The per-op lowerings live in the op families; this class resolves values, dispatches to the
 * registry and owns the tensors and ops of the program.
 */
class Lowering implements LoweringContext {
  readonly graph: OnnxGraph;
  readonly tensors: QTensor[] = [];
  readonly ops: QOp[] = [];
  readonly env = new Map<string, Value>();
  readonly scaleBits: number;
  readonly one: bigint;
  /**
   * Readers per ONNX name: lets BatchNormalization fold only into a Conv/Gemm it alone reads (see
   * foldBatchNorms). ReLU fusion, where the ReLU may read an alias, is decided on tensor ids instead
   * (fuseRescaleRelus).
   */
  readonly uses = new Map<string, number>();
  /** How each described graph output reads (describeOutput). */
  readonly outputMetas = new Map<string, OutputMeta>();

  constructor(
    graph: OnnxGraph,
    readonly opts: QuantizeOptions,
  ) {
    // Folding rewrites nodes and adds initializers: work on a copy so the caller's graph stays as parsed.
    this.graph = {
      ...graph,
      nodes: graph.nodes.map((n) => ({
        ...n,
        inputs: [...n.inputs],
        outputs: [...n.outputs],
        attrs: new Map(n.attrs),
      })),
      initializers: new Map(graph.initializers),
    };
    this.scaleBits = opts.scaleBits;
    this.one = 1n << BigInt(this.scaleBits);
    for (const n of this.graph.nodes)
      for (const i of n.inputs) if (i) this.uses.set(i, (this.uses.get(i) ?? 0) + 1);
    for (const o of this.graph.outputs) this.uses.set(o.name, (this.uses.get(o.name) ?? 0) + 1);
  }

  get opset(): number {
    return this.graph.opset;
  }

  newTensor(shape: number[], scale: 0 | 1 | 2, maxAbs: bigint): QTensor {
    if (bitLength(maxAbs) > 240) {
      fail(
        "OUT_OF_RANGE",
        `a tensor's static bound reaches 2^${bitLength(maxAbs)}: too deep without rescaling`,
      );
    }
    const t: QTensor = { id: this.tensors.length, shape, scale, maxAbs };
    this.tensors.push(t);
    return t;
  }

  q(x: number, scale = 1): bigint {
    if (!Number.isFinite(x)) fail("BAD_INPUT", `a model constant is ${x}: it cannot be quantized`);
    return roundToInt(x * 2 ** (this.scaleBits * scale));
  }

  // ---- value access -------------------------------------------------------------------------------------

  get(name: string, node: OnnxNode): Value {
    const v = this.env.get(name);
    if (!v) fail("MALFORMED_MODEL", `${nodeLabel(node)} reads '${name}', which nothing produces`);
    return v;
  }

  constInput(node: OnnxNode, i: number, what: string): ConstTensor {
    const v = this.get(node.inputs[i], node);
    if (v.kind !== "const") {
      fail(
        "UNSUPPORTED_OP",
        `${nodeLabel(node)}: ${what} must be a constant (an initializer), not a computed tensor`,
      );
    }
    return v.t;
  }

  optConst(node: OnnxNode, i: number, what: string): ConstTensor | undefined {
    if (!node.inputs[i]) return undefined;
    return this.constInput(node, i, what);
  }

  dyn(v: Value): DynValue {
    if (v.kind === "dyn") return v;
    // A constant used where a tensor flows: materialise it as a gather of constants (free).
    const consts = [...v.t.data].map((x) => this.q(x));
    const maxAbs = consts.reduce((m, c) => (absBig(c) > m ? absBig(c) : m), 0n);
    const t = this.newTensor(v.t.dims, 1, maxAbs);
    this.ops.push({
      op: "gather",
      node: "constant",
      dst: t.id,
      srcs: consts.map(() => -1),
      idx: consts.map((_, i) => i),
      consts,
    });
    return { id: t.id, shape: v.t.dims };
  }

  tensor(id: number): QTensor {
    return this.tensors[id];
  }

  // ---- emitters -----------------------------------------------------------------------------------------

  emit(op: QOp): void {
    this.ops.push(op);
  }

  /** Brings a scale-2 accumulator back to scale 1 with a range check. */
  rescale(node: string, src: number, relu = false): number {
    const t = this.tensor(src);
    if (t.scale !== 2) return src;
    const half = 1n << BigInt(this.scaleBits - 1);
    const derived = (t.maxAbs + half) / this.one + 1n;
    const cap = 1n << BigInt(this.opts.activationBits - 1);
    const bits = Math.min(signedBits(derived), this.opts.activationBits);
    const maxAbs = derived < cap ? derived : cap;
    const out = this.newTensor(t.shape, 1, maxAbs);
    this.ops.push({ op: "rescale", node, src, dst: out.id, shift: this.scaleBits, bits, relu });
    return out.id;
  }

  /** A ReLU op; fuseRescaleRelus() later folds it into the rescale before it where that is sound. */
  relu(node: string, src: number): number {
    const t = this.tensor(src);
    const out = this.newTensor(t.shape, t.scale, t.maxAbs);
    this.ops.push({ op: "relu", node, src, dst: out.id, bits: signedBits(t.maxAbs) });
    return out.id;
  }

  lincomb(
    node: string,
    shape: number[],
    terms: LinTerm[],
    bias: bigint[],
    scale: 0 | 1 | 2,
    approxError?: number,
  ): number {
    const size = numel(shape);
    let maxAbs = bias.reduce((m, b) => (absBig(b) > m ? absBig(b) : m), 0n);
    for (const term of terms) {
      const c = term.coef.reduce((m, b) => (absBig(b) > m ? absBig(b) : m), 0n);
      maxAbs += c * this.tensor(term.src).maxAbs;
    }
    const out = this.newTensor(shape, scale, maxAbs);
    const op: LinCombOp = { op: "lincomb", node, dst: out.id, size, terms, bias };
    if (approxError !== undefined) op.approxError = approxError;
    this.ops.push(op);
    return out.id;
  }

  gather(
    node: string,
    shape: number[],
    parts: { src: number; index: number[] }[],
    consts: bigint[] = [],
  ): number {
    const srcs: number[] = [];
    const idx: number[] = [];
    let maxAbs = consts.reduce((m, b) => (absBig(b) > m ? absBig(b) : m), 0n);
    let scale: 0 | 1 | 2 = 1;
    for (const p of parts) {
      if (p.src >= 0) {
        const t = this.tensor(p.src);
        if (t.maxAbs > maxAbs) maxAbs = t.maxAbs;
        scale = t.scale;
      }
      for (const i of p.index) {
        srcs.push(p.src);
        idx.push(i);
      }
    }
    const out = this.newTensor(shape, scale, maxAbs);
    this.ops.push({ op: "gather", node, dst: out.id, srcs, idx, consts });
    return out.id;
  }

  describeOutput(name: string, meta: OutputMeta): void {
    this.outputMetas.set(name, meta);
  }

  outputMeta(name: string): OutputMeta | undefined {
    return this.outputMetas.get(name);
  }

  // ---- lowering -----------------------------------------------------------------------------------------

  run(): QProgram {
    const g = this.graph;
    for (const [name, t] of g.initializers) this.env.set(name, { kind: "const", t });
    const dynInputs = g.inputs;
    if (dynInputs.length !== 1) {
      fail(
        "UNSUPPORTED_OP",
        `the model has ${dynInputs.length} inputs (${dynInputs.map((i) => i.name).join(", ")}); exactly one is supported`,
      );
    }
    const inp = dynInputs[0];
    if (!inp.dims) fail("DYNAMIC_SHAPE", `input '${inp.name}' has no shape in the model`);
    if (inp.elemType !== 1 && inp.elemType !== 11) {
      fail("UNSUPPORTED_OP", `input '${inp.name}' must be float32 or float64`);
    }
    // quantizeGraph bound every symbolic dimension (bindSymbolicDims): the shape is all numbers here.
    const inShape = inp.dims as number[];
    const inputTensor = this.newTensor(inShape, 1, 1n << BigInt(this.opts.inputBits - 1));
    this.env.set(inp.name, { kind: "dyn", id: inputTensor.id, shape: inShape });

    foldBatchNorms(g, this.uses, (name, t) => this.env.set(name, { kind: "const", t }));
    const outNames = new Set(g.outputs.map((o) => o.name));
    for (const node of g.nodes) {
      checkDomain(node);
      const asOutput = kernelFor(node.opType)?.asOutput;
      if (asOutput && outNames.has(node.outputs[0])) {
        // The circuit proves the input; the kernel's normalisation is applied off-circuit.
        const input = this.get(node.inputs[0], node);
        this.describeOutput(node.outputs[0], asOutput(node, input, g.opset));
        this.env.set(node.outputs[0], input);
        continue;
      }
      this.lowerNode(node);
    }
    const outs = g.outputs.map((o) => {
      const v = this.env.get(o.name);
      if (!v) fail("MALFORMED_MODEL", `graph output '${o.name}' is not produced by any node`);
      if (v.kind !== "dyn")
        fail("UNSUPPORTED_OP", `graph output '${o.name}' is a constant: nothing to prove`);
      return { name: o.name, v, meta: this.outputMetas.get(o.name) };
    });
    const base = {
      scaleBits: this.scaleBits,
      activationBits: this.opts.activationBits,
      inputBits: this.opts.inputBits,
      input: { name: inp.name, shape: inShape, tensor: inputTensor.id },
      tensors: this.tensors,
      ops: this.ops,
    };
    if (outs.length === 1 && !outs[0].meta?.labels && !outs[0].meta?.zipmap) {
      // One output: the proven tensor is the output itself (the format every single-output bundle has).
      const { name, v, meta } = outs[0];
      const outId = this.rescale("output", v.id);
      fuseRescaleRelus(this.ops, outId);
      return {
        ...base,
        output: {
          name,
          shape: v.shape,
          tensor: outId,
          postprocess: meta?.postprocess ?? "none",
          ...(meta?.normalize ? { normalize: meta.normalize } : {}),
        },
      };
    }
    // Several outputs (a classifier's label and probabilities): each brought to scale 1 (a class index is
    // scaled by 2^s, free) and concatenated into the one tensor the circuit proves.
    const parts: OutputPart[] = [];
    const pieces: { src: number; index: number[] }[] = [];
    let offset = 0;
    for (const { name, v, meta } of outs) {
      let id = this.rescale(`output ${name}`, v.id);
      if (this.tensor(id).scale === 0) {
        id = this.lincomb(`output ${name}`, v.shape, [{ src: id, coef: [this.one], index: null }], [0n], 1);
      }
      const size = numel(v.shape);
      parts.push({
        name,
        shape: v.shape,
        offset,
        size,
        postprocess: meta?.postprocess ?? "none",
        ...(meta?.normalize ? { normalize: meta.normalize } : {}),
        ...(meta?.labels ? { labels: meta.labels } : {}),
        ...(meta?.zipmap ? { zipmap: meta.zipmap } : {}),
      });
      pieces.push({ src: id, index: Array.from({ length: size }, (_, i) => i) });
      offset += size;
    }
    const combined = this.gather("outputs", [offset], pieces);
    fuseRescaleRelus(this.ops, combined);
    return {
      ...base,
      output: {
        name: outs.map((o) => o.name).join(","),
        shape: [offset],
        tensor: combined,
        postprocess: "none",
        parts,
      },
    };
  }

  /**
   * The dispatcher: a registry lookup. A kernel's `always` lowering runs whatever the inputs; otherwise
   * `fold` evaluates a node whose inputs are all constant (the shape subgraphs exporters emit) and `lower`
   * lowers one with a computed input.
   */
  lowerNode(node: OnnxNode): void {
    const ins = node.inputs.map((n) => (n ? this.get(n, node) : undefined));
    const allConst = ins.every((v) => !v || v.kind === "const");
    const label = nodeLabel(node);
    const set = (v: Value, i = 0): void => {
      if (v.kind === "dyn" && numel(v.shape) === 0)
        fail("UNSUPPORTED_OP", `${label} produces an empty tensor [${v.shape}]: nothing to compute`);
      this.env.set(node.outputs[i], v);
    };
    const kernel = kernelFor(node.opType);
    if (!kernel) {
      fail("UNSUPPORTED_OP", `unsupported op ${label}. Supported ops: ${SUPPORTED_OPS.join(", ")}`);
    }
    if (kernel.always) {
      const outs = kernel.always(this, node, ins);
      // An array binds each index it holds (a hole is an output not bound); a value binds output 0.
      if (Array.isArray(outs)) outs.forEach((v, i) => set(v as Value, i));
      else set(outs);
      return;
    }
    if (allConst) {
      if (!kernel.fold)
        fail("UNSUPPORTED_OP", `${label} on constant inputs is not supported by the constant folder`);
      const consts = ins.map((v) => (v as { t: ConstTensor } | undefined)?.t);
      set({ kind: "const", t: kernel.fold(this, node, consts) });
      return;
    }
    if (!kernel.lower)
      fail("UNSUPPORTED_OP", `${label} is supported on constant inputs only (shape computations)`);
    set(kernel.lower(this, node, ins));
  }
}

/** Refuses a node outside the default domain and ONNX-ML, and an ONNX-ML op outside its domain. */
function checkDomain(node: OnnxNode): void {
  const domain = node.domain || "ai.onnx";
  const ml = ML_OP_TYPES.has(node.opType);
  if (domain === ML_DOMAIN && ml) return;
  if (domain === "ai.onnx" && !ml) return;
  fail(
    "UNSUPPORTED_OP",
    `${nodeLabel(node)} is in domain '${node.domain}'; the supported domains are the default ONNX domain ` +
      `and '${ML_DOMAIN}' (${[...ML_OP_TYPES].join(", ")})`,
  );
}

/** The tensors an op reads. */
export function opSources(op: QOp): number[] {
  switch (op.op) {
    case "lincomb":
      return op.terms.map((t) => t.src);
    case "mul":
      return [op.a, op.b];
    case "gather":
      return op.srcs.filter((s) => s >= 0);
    case "divide":
      return [op.src, op.den];
    default:
      return [op.src];
  }
}

/**
 * Folds each ReLU into the rescale that produced its input when nothing else reads that value: the rescale's
 * decomposition already holds the sign bit, so this saves a w-bit decomposition per element.
 *
 * The decision is taken here, on the lowered program, because a value is a tensor id, not an ONNX name:
 * Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout and Cast re-use a tensor under a new name, so
 * counting readers per name misses the readers of the other names (a pre-ReLU value also read by an Add
 * through a Flatten would be clamped for the Add too). NEVER fuse into a rescale whose output anything
 * else reads, the program output included.
 */
export function fuseRescaleRelus(ops: QOp[], outputTensor: number): void {
  const readers = new Map<number, number>([[outputTensor, 1]]);
  const producer = new Map<number, QOp>();
  for (const op of ops) {
    for (const s of new Set(opSources(op))) readers.set(s, (readers.get(s) ?? 0) + 1);
    producer.set(op.dst, op);
  }
  const fused = new Set<QOp>();
  for (const op of ops) {
    if (op.op !== "relu") continue;
    const r = producer.get(op.src);
    if (!r || r.op !== "rescale" || r.relu || readers.get(op.src) !== 1) continue;
    // The rescale now writes the ReLU's output tensor; its own output had this ReLU as sole reader.
    r.relu = true;
    r.dst = op.dst;
    fused.add(op);
  }
  if (fused.size === 0) return;
  const kept = ops.filter((op) => !fused.has(op));
  ops.length = 0;
  ops.push(...kept);
}
/** One symbolic dimension of a graph input, and the value it was bound to at compile time. */
export interface BoundDim {
  /** The dim_param name, or null for an unnamed unknown dimension. */
  name: string | null;
  input: string;
  axis: number;
  value: number;
  /** True when the caller set the value (`dims` / --dim), false when it is the default 1. */
  explicit: boolean;
}

/** The names of the symbolic (dim_param) dimensions of a graph's inputs, each once, in order. */
export function symbolicDimNames(graph: OnnxGraph): string[] {
  const names: string[] = [];
  for (const inp of graph.inputs)
    for (const d of inp.dims ?? [])
      if (typeof d === "string" && d !== "" && !names.includes(d)) names.push(d);
  return names;
}

/**
 * Binds the symbolic dimensions of the graph's inputs to numbers: a named one to `dims[name]`, or 1; an
 * unnamed unknown one to 1. The outputs' are bound the same way (the lowering infers output shapes and does
 * not read them), so the bound graph has no symbolic dimension left. The bound shapes then flow
 * through the lowering, so the shape subgraphs exporters emit for a dynamic batch (Shape -> Gather ->
 * Unsqueeze -> Concat -> Reshape) fold to constants. Returns a copy of the graph and what it bound.
 */
export function bindSymbolicDims(
  graph: OnnxGraph,
  dims: Record<string, number> = {},
): { graph: OnnxGraph; bound: BoundDim[] } {
  const known = symbolicDimNames(graph);
  for (const [name, value] of Object.entries(dims)) {
    if (!known.includes(name)) {
      fail(
        "BAD_INPUT",
        `the model has no symbolic dimension '${name}'; ` +
          (known.length
            ? `its symbolic dimensions are ${known.map((k) => `'${k}'`).join(", ")}`
            : "its inputs have no named symbolic dimensions"),
      );
    }
    if (!Number.isSafeInteger(value) || value < 1) {
      fail("BAD_INPUT", `symbolic dimension '${name}' must be bound to a positive integer, got ${value}`);
    }
  }
  const bound: BoundDim[] = [];
  const bind = (v: ValueInfo, record: boolean): ValueInfo => {
    if (!v.dims) return v;
    return {
      ...v,
      dims: v.dims.map((d, axis) => {
        if (typeof d === "number") return d;
        const name = typeof d === "string" && d !== "" ? d : null;
        const explicit = name !== null && Object.prototype.hasOwnProperty.call(dims, name);
        const value = explicit ? dims[name as string] : 1;
        if (record) bound.push({ name, input: v.name, axis, value, explicit });
        return value;
      }),
    };
  };
  const inputs = graph.inputs.map((v) => bind(v, true));
  const outputs = graph.outputs.map((v) => bind(v, false));
  return { graph: { ...graph, inputs, outputs }, bound };
}

/** The compile log's line for one bound dimension. */
export function describeBoundDim(b: BoundDim): string {
  return b.name === null
    ? `bound unnamed dynamic dimension ${b.axis} of input '${b.input}' to ${b.value}`
    : `bound symbolic dimension '${b.name}' of input '${b.input}' to ${b.value}` +
        (b.explicit ? "" : ` (set with --dim ${b.name}=N)`);
}

/**
 * Lowers an ONNX graph to the quantized program the circuit and the executor share. Symbolic input
 * dimensions are bound first (opts.dims, else 1): see bindSymbolicDims.
 */
export function quantizeGraph(graph: OnnxGraph, opts: Partial<QuantizeOptions> = {}): QProgram {
  const o = { ...DEFAULT_QUANTIZE, ...opts };
  if (!Number.isInteger(o.scaleBits) || o.scaleBits < 1 || o.scaleBits > 32) {
    fail("BAD_INPUT", `scale bits must be an integer in [1, 32], got ${o.scaleBits}`);
  }
  if (!Number.isInteger(o.activationBits) || o.activationBits < 4 || o.activationBits > 120) {
    fail("BAD_INPUT", `activation bits must be an integer in [4, 120], got ${o.activationBits}`);
  }
  if (!Number.isInteger(o.inputBits) || o.inputBits < 2 || o.inputBits > 64) {
    fail("BAD_INPUT", `input bits must be an integer in [2, 64], got ${o.inputBits}`);
  }
  return new Lowering(bindSymbolicDims(graph, o.dims).graph, o).run();
}
