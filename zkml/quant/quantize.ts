import { fail } from "../errors";
import { AttrValue, ConstTensor, OnnxGraph, OnnxNode, nodeLabel } from "../onnx/graph";
import { broadcastIndex, broadcastShapes, normAxis, numel, strides, transposeIndex } from "./shapes";
import { LinCombOp, LinTerm, QOp, QProgram, QTensor } from "./program";

export interface QuantizeOptions {
  /** Fixed-point scale s: a real x is held as round(x * 2^s). */
  scaleBits: number;
  /** Cap on the signed width of a rescaled activation; a value beyond it is an overflow error. */
  activationBits: number;
  /** Signed width each input value is range-checked to. */
  inputBits: number;
}

export const DEFAULT_QUANTIZE: QuantizeOptions = { scaleBits: 8, activationBits: 24, inputBits: 16 };

/** Ops the compiler lowers; any other op is an UNSUPPORTED_OP error naming the op and node. */
export const SUPPORTED_OPS = [
  "Add",
  "ArgMax",
  "AveragePool",
  "BatchNormalization",
  "Cast",
  "Clip",
  "Concat",
  "Constant",
  "ConstantOfShape",
  "Conv",
  "Div",
  "Dropout",
  "Flatten",
  "Gather",
  "Gemm",
  "GlobalAveragePool",
  "Identity",
  "LeakyRelu",
  "LogSoftmax",
  "MatMul",
  "MaxPool",
  "Mul",
  "Pad",
  "Relu",
  "Reshape",
  "Shape",
  "Sigmoid",
  "Slice",
  "Softmax",
  "Squeeze",
  "Sub",
  "Tanh",
  "Transpose",
  "Unsqueeze",
];

type Value = { kind: "const"; t: ConstTensor } | { kind: "dyn"; id: number; shape: number[] };

export function bitLength(v: bigint): number {
  let n = 0;
  let x = v < 0n ? -v : v;
  while (x > 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

/** Signed width that holds every value in [-m, m]. */
export function signedBits(maxAbs: bigint): number {
  return bitLength(maxAbs) + 1;
}

function absBig(v: bigint): bigint {
  return v < 0n ? -v : v;
}

export function roundToInt(x: number): bigint {
  return BigInt(Math.round(x));
}

/**
 * Piecewise-linear sigmoid: sum_k DELTA[k] * relu(x - BREAKS[k]). The slopes are those of Amin et al.'s
 * PLAN approximation (1/4, 1/8, 1/32, 0), with the middle breakpoint moved to 7/3 so the curve is continuous
 * and passes through (0, 1/2). Max abs error against the true sigmoid is documented in docs/zkml.md.
 */
export const SIGMOID_BREAKS = [-5, -7 / 3, -1, 1, 7 / 3, 5];
export const SIGMOID_DELTAS = [1 / 32, 3 / 32, 1 / 8, -1 / 8, -3 / 32, -1 / 32];

/** sup |plSigmoid(x) - sigmoid(x)| = 0.018941... (at the knots), rounded up; Tanh's is twice this. */
export const SIGMOID_MAX_ERROR = 0.01895;

export function plSigmoid(x: number): number {
  let y = 0;
  for (let k = 0; k < SIGMOID_BREAKS.length; k++) y += SIGMOID_DELTAS[k] * Math.max(0, x - SIGMOID_BREAKS[k]);
  return y;
}

class Lowering {
  readonly graph: OnnxGraph;
  readonly tensors: QTensor[] = [];
  readonly ops: QOp[] = [];
  readonly env = new Map<string, Value>();
  readonly s: number;
  readonly one: bigint;
  /**
   * Readers per ONNX name: lets BatchNormalization fold only into a Conv/Gemm it alone reads. Counting by
   * name is sound there because the BatchNormalization reads the producer's own output name, and any other
   * reader of that value (an alias such as Flatten included) reads that name too. ReLU fusion, where the
   * ReLU may read an alias, is decided on tensor ids instead (fuseRescaleRelus).
   */
  readonly uses = new Map<string, number>();

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
    this.s = opts.scaleBits;
    this.one = 1n << BigInt(this.s);
    for (const n of this.graph.nodes)
      for (const i of n.inputs) if (i) this.uses.set(i, (this.uses.get(i) ?? 0) + 1);
    for (const o of this.graph.outputs) this.uses.set(o.name, (this.uses.get(o.name) ?? 0) + 1);
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
    return roundToInt(x * 2 ** (this.s * scale));
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

  dyn(v: Value): { id: number; shape: number[] } {
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

  t(id: number): QTensor {
    return this.tensors[id];
  }

  // ---- emitters -----------------------------------------------------------------------------------------

  /** Brings a scale-2 accumulator back to scale 1 with a range check. */
  rescale(node: string, src: number, relu = false): number {
    const t = this.t(src);
    if (t.scale !== 2) return src;
    const half = 1n << BigInt(this.s - 1);
    const derived = (t.maxAbs + half) / this.one + 1n;
    const cap = 1n << BigInt(this.opts.activationBits - 1);
    const bits = Math.min(signedBits(derived), this.opts.activationBits);
    const maxAbs = derived < cap ? derived : cap;
    const out = this.newTensor(t.shape, 1, maxAbs);
    this.ops.push({ op: "rescale", node, src, dst: out.id, shift: this.s, bits, relu });
    return out.id;
  }

  /** A ReLU op; fuseRescaleRelus() later folds it into the rescale before it where that is sound. */
  relu(node: string, src: number): number {
    const t = this.t(src);
    const out = this.newTensor(t.shape, t.scale, t.maxAbs);
    this.ops.push({ op: "relu", node, src, dst: out.id, bits: signedBits(t.maxAbs) });
    return out.id;
  }

  lincomb(node: string, shape: number[], terms: LinTerm[], bias: bigint[], scale: 0 | 1 | 2): number {
    const size = numel(shape);
    let maxAbs = bias.reduce((m, b) => (absBig(b) > m ? absBig(b) : m), 0n);
    for (const term of terms) {
      const c = term.coef.reduce((m, b) => (absBig(b) > m ? absBig(b) : m), 0n);
      maxAbs += c * this.t(term.src).maxAbs;
    }
    const out = this.newTensor(shape, scale, maxAbs);
    this.ops.push({ op: "lincomb", node, dst: out.id, size, terms, bias });
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
        const t = this.t(p.src);
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
    if (g.outputs.length !== 1) {
      fail("UNSUPPORTED_OP", `the model has ${g.outputs.length} outputs; exactly one is supported`);
    }
    const inp = dynInputs[0];
    if (!inp.dims) fail("DYNAMIC_SHAPE", `input '${inp.name}' has no shape in the model`);
    inp.dims.forEach((d, i) => {
      if (typeof d !== "number") {
        fail(
          "DYNAMIC_SHAPE",
          `input '${inp.name}' dimension ${i} is dynamic (${d === null ? "unknown" : `'${d}'`}); ` +
            `re-export the model with a fixed shape (e.g. batch size 1)`,
        );
      }
    });
    if (inp.elemType !== 1 && inp.elemType !== 11) {
      fail("UNSUPPORTED_OP", `input '${inp.name}' must be float32 or float64`);
    }
    const inShape = inp.dims as number[];
    const inputTensor = this.newTensor(inShape, 1, 1n << BigInt(this.opts.inputBits - 1));
    this.env.set(inp.name, { kind: "dyn", id: inputTensor.id, shape: inShape });

    this.foldBatchNorms();
    let postprocess: QProgram["output"]["postprocess"] = "none";
    let normalize: QProgram["output"]["normalize"];
    const outName = g.outputs[0].name;
    for (const node of g.nodes) {
      if (node.domain && node.domain !== "ai.onnx") {
        fail(
          "UNSUPPORTED_OP",
          `${nodeLabel(node)} is in domain '${node.domain}'; only the default ONNX domain is supported`,
        );
      }
      if ((node.opType === "Softmax" || node.opType === "LogSoftmax") && node.outputs[0] === outName) {
        // The circuit proves the logits; the monotone normalisation is applied off-circuit (argmax unchanged).
        postprocess = node.opType === "Softmax" ? "softmax" : "logsoftmax";
        const logits = this.get(node.inputs[0], node);
        normalize = softmaxGroup(node, logits.kind === "dyn" ? logits.shape : logits.t.dims, g.opset);
        this.env.set(node.outputs[0], logits);
        continue;
      }
      this.lowerNode(node);
    }
    const out = this.env.get(outName);
    if (!out) fail("MALFORMED_MODEL", `graph output '${outName}' is not produced by any node`);
    if (out.kind !== "dyn")
      fail("UNSUPPORTED_OP", `graph output '${outName}' is a constant: nothing to prove`);
    const outId = this.rescale("output", out.id);
    fuseRescaleRelus(this.ops, outId);
    return {
      scaleBits: this.s,
      activationBits: this.opts.activationBits,
      inputBits: this.opts.inputBits,
      input: { name: inp.name, shape: inShape, tensor: inputTensor.id },
      output: {
        name: outName,
        shape: out.shape,
        tensor: outId,
        postprocess,
        ...(normalize ? { normalize } : {}),
      },
      tensors: this.tensors,
      ops: this.ops,
    };
  }

  /**
   * Folds BatchNormalization into the Conv or Gemm right before it when that producer's output feeds the
   * BatchNormalization alone: W' = W * g / sqrt(v + eps) per output channel, b' = (b - m) * g / sqrt(v + eps) + beta.
   */
  foldBatchNorms(): void {
    const g = this.graph;
    const producer = new Map<string, OnnxNode>();
    for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
    const removed = new Set<OnnxNode>();
    for (const bn of g.nodes) {
      if (bn.opType !== "BatchNormalization") continue;
      checkInferenceBatchNorm(bn, g.opset);
      const prev = producer.get(bn.inputs[0]);
      if (!prev || (prev.opType !== "Conv" && prev.opType !== "Gemm")) continue;
      if ((this.uses.get(bn.inputs[0]) ?? 0) !== 1) continue;
      const params = bn.inputs.slice(1, 5).map((n) => g.initializers.get(n));
      const w = g.initializers.get(prev.inputs[1]);
      if (params.some((p) => !p) || !w) continue;
      if (prev.opType === "Gemm" && (attrNum(prev, "transA", 0) !== 0 || attrNum(prev, "alpha", 1) !== 1))
        continue;
      const [gamma, beta, mean, variance] = params as ConstTensor[];
      const eps = attrNum(bn, "epsilon", 1e-5);
      const nOut = prev.opType === "Conv" ? w.dims[0] : attrNum(prev, "transB", 0) ? w.dims[0] : w.dims[1];
      if ([gamma, beta, mean, variance].some((p) => p.data.length !== nOut)) continue;
      const factor = new Float64Array(nOut);
      for (let c = 0; c < nOut; c++) factor[c] = gamma.data[c] / Math.sqrt(variance.data[c] + eps);
      const nw = new Float64Array(w.data.length);
      if (prev.opType === "Conv" || attrNum(prev, "transB", 0)) {
        const per = w.data.length / nOut;
        for (let i = 0; i < w.data.length; i++) nw[i] = w.data[i] * factor[Math.floor(i / per)];
      } else {
        for (let i = 0; i < w.data.length; i++) nw[i] = w.data[i] * factor[i % nOut];
      }
      const oldBias = prev.inputs[2] ? g.initializers.get(prev.inputs[2]) : undefined;
      if (prev.inputs[2] && !oldBias) continue;
      const beta2 = prev.opType === "Gemm" ? attrNum(prev, "beta", 1) : 1;
      if (oldBias && oldBias.data.length !== nOut && oldBias.data.length !== 1) continue;
      const nb = new Float64Array(nOut);
      for (let c = 0; c < nOut; c++) {
        const b = oldBias ? beta2 * oldBias.data[oldBias.data.length === 1 ? 0 : c] : 0;
        nb[c] = (b - mean.data[c]) * factor[c] + beta.data[c];
      }
      const wName = `${prev.inputs[1]}__bnfold_${bn.name}`;
      const bName = `${prev.inputs[1]}__bnfold_bias_${bn.name}`;
      g.initializers.set(wName, { dims: w.dims, data: nw, isInteger: false });
      g.initializers.set(bName, { dims: [nOut], data: nb, isInteger: false });
      this.env.set(wName, { kind: "const", t: g.initializers.get(wName) as ConstTensor });
      this.env.set(bName, { kind: "const", t: g.initializers.get(bName) as ConstTensor });
      prev.inputs = [prev.inputs[0], wName, bName];
      if (prev.opType === "Gemm") prev.attrs.set("beta", 1);
      prev.outputs = [bn.outputs[0]];
      removed.add(bn);
    }
    g.nodes = g.nodes.filter((n) => !removed.has(n));
  }

  lowerNode(node: OnnxNode): void {
    const ins = node.inputs.map((n) => (n ? this.get(n, node) : undefined));
    const allConst = ins.every((v) => !v || v.kind === "const");
    const label = nodeLabel(node);
    const set = (v: Value, i = 0): void => {
      if (v.kind === "dyn" && numel(v.shape) === 0)
        fail("UNSUPPORTED_OP", `${label} produces an empty tensor [${v.shape}]: nothing to compute`);
      this.env.set(node.outputs[i], v);
    };
    if (!SUPPORTED_OPS.includes(node.opType)) {
      fail("UNSUPPORTED_OP", `unsupported op ${label}. Supported ops: ${SUPPORTED_OPS.join(", ")}`);
    }
    if (node.opType === "Constant") {
      const t = node.attrs.get("value");
      const vf = node.attrs.get("value_float");
      const vi = node.attrs.get("value_int");
      const vfs = node.attrs.get("value_floats");
      const vis = node.attrs.get("value_ints");
      if (isTensor(t)) set({ kind: "const", t });
      else if (typeof vf === "number") set({ kind: "const", t: scalar(vf, false) });
      else if (typeof vi === "number") set({ kind: "const", t: scalar(vi, true) });
      else if (Array.isArray(vfs)) set({ kind: "const", t: vec(vfs, false) });
      else if (Array.isArray(vis)) set({ kind: "const", t: vec(vis, true) });
      else
        fail(
          "UNSUPPORTED_ATTRIBUTE",
          `${label}: only value/value_float(s)/value_int(s) constants are supported`,
        );
      return;
    }
    if (node.opType === "Shape") {
      const v = ins[0] as Value;
      const shape = v.kind === "const" ? v.t.dims : v.shape;
      const r = shape.length;
      let start = normAxis(attrNum(node, "start", 0), r);
      let end = node.attrs.has("end") ? normAxis(attrNum(node, "end", r), r) : r;
      start = Math.max(0, Math.min(r, start));
      end = Math.max(0, Math.min(r, end));
      set({ kind: "const", t: vec(shape.slice(start, end), true) });
      return;
    }
    if (node.opType === "Identity" || node.opType === "Dropout") {
      if (node.opType === "Dropout") {
        this.checkInferenceDropout(node);
        // In inference mode the mask, where asked for, keeps everything.
        if (node.outputs[1]) {
          const v = ins[0] as Value;
          const dims = v.kind === "dyn" ? v.shape : v.t.dims;
          set(
            { kind: "const", t: { dims, data: new Float64Array(numel(dims)).fill(1), isInteger: true } },
            1,
          );
        }
      }
      set(ins[0] as Value);
      return;
    }
    if (allConst) {
      const consts = ins.map((v) => (v as { t: ConstTensor } | undefined)?.t);
      if (["Add", "Sub", "Mul", "Div"].includes(node.opType))
        consts[1] = (this.legacyBroadcast(node, ins[0], ins[1]) as { t: ConstTensor }).t;
      set({ kind: "const", t: foldConst(node, consts) });
      return;
    }
    const x = ins[0] as Value;
    switch (node.opType) {
      case "Gemm":
        return set(this.gemm(node, x));
      case "MatMul":
        return set(this.matmul(node, x, ins[1] as Value));
      case "Conv":
        return set(this.conv(node, x));
      case "Relu": {
        const d = this.dyn(x);
        return set({ kind: "dyn", id: this.relu(label, d.id), shape: d.shape });
      }
      case "LeakyRelu":
        return set(this.leakyRelu(node, x));
      case "Clip":
        return set(this.clip(node, x));
      case "Sigmoid":
      case "Tanh":
        return set(this.sigmoidTanh(node, x));
      case "Add":
      case "Sub":
        return set(this.addSub(node, ins[0] as Value, this.legacyBroadcast(node, ins[0], ins[1])));
      case "Mul":
      case "Div":
        return set(this.mulDiv(node, ins[0] as Value, this.legacyBroadcast(node, ins[0], ins[1])));
      case "MaxPool":
      case "AveragePool":
      case "GlobalAveragePool":
        if (node.outputs.length > 1 && node.outputs[1]) {
          fail("UNSUPPORTED_OP", `${label}: the Indices output of MaxPool is not supported`);
        }
        return set(this.pool(node, x));
      case "BatchNormalization":
        return set(this.batchNorm(node, x));
      case "Flatten": {
        const d = this.dyn(x);
        const axis = normAxis(attrNum(node, "axis", 1), d.shape.length);
        return set({
          kind: "dyn",
          id: d.id,
          shape: [numel(d.shape.slice(0, axis)), numel(d.shape.slice(axis))],
        });
      }
      case "Reshape": {
        const d = this.dyn(x);
        // Before opset 5 the target shape is an attribute.
        const target = node.inputs[1]
          ? [...this.constInput(node, 1, "the target shape").data]
          : attrInts(node, "shape", []);
        return set({ kind: "dyn", id: d.id, shape: reshapeTarget(d.shape, target, node) });
      }
      case "Squeeze":
      case "Unsqueeze": {
        const d = this.dyn(x);
        const axes = axesOf(node, this);
        return set({ kind: "dyn", id: d.id, shape: squeezeShape(node.opType, d.shape, axes, node) });
      }
      case "Transpose": {
        const d = this.dyn(x);
        const perm = attrInts(node, "perm", [...d.shape.keys()].reverse());
        const shape = perm.map((p) => d.shape[p]);
        const id = this.gather(label, shape, [{ src: d.id, index: transposeIndex(d.shape, perm) }]);
        return set({ kind: "dyn", id, shape });
      }
      case "Pad":
        return set(this.pad(node, x));
      case "Concat":
        return set(this.concat(node, ins as Value[]));
      case "Slice":
        return set(this.slice(node, x));
      case "ArgMax":
        return set(this.argmax(node, x));
      case "Cast": {
        const to = attrNum(node, "to", 1);
        if (to !== 1 && to !== 11)
          fail("UNSUPPORTED_OP", `${label}: casting a computed tensor to a non-float type`);
        return set(x);
      }
      case "Softmax":
      case "LogSoftmax":
        return fail(
          "UNSUPPORTED_OP",
          `${label}: ${node.opType} is supported only as the model's last op (normalising the proven output)`,
        );
      default:
        fail("UNSUPPORTED_OP", `${label} is supported on constant inputs only (shape computations)`);
    }
  }

  /**
   * Before opset 7, Add/Sub/Mul/Div broadcast only with `broadcast`=1, and then B's dims line up with
   * A's from `axis` on (default: A's last dims). Returns B reshaped so numpy broadcasting means the same.
   */
  legacyBroadcast(node: OnnxNode, av: Value | undefined, bv: Value | undefined): Value {
    const label = nodeLabel(node);
    if (!av || !bv) fail("MALFORMED_MODEL", `${label} needs two inputs`);
    if (this.graph.opset >= 7) return bv;
    const sa = av.kind === "dyn" ? av.shape : av.t.dims;
    const sb = bv.kind === "dyn" ? bv.shape : bv.t.dims;
    if (attrNum(node, "broadcast", 0) === 0) {
      if (!sameShape(sa, sb))
        fail("MALFORMED_MODEL", `${label}: shapes [${sa}] and [${sb}] differ and broadcast=0 (opset < 7)`);
      return bv;
    }
    if (!node.attrs.has("axis")) return bv;
    const axis = normAxis(attrNum(node, "axis", 0), sa.length);
    const trailing = sa.length - axis - sb.length;
    if (axis < 0 || trailing < 0)
      fail("MALFORMED_MODEL", `${label}: B [${sb}] does not fit A [${sa}] at axis ${axis}`);
    const dims = [...sb, ...new Array<number>(trailing).fill(1)];
    return bv.kind === "dyn" ? { ...bv, shape: dims } : { kind: "const", t: { ...bv.t, dims } };
  }

  /**
   * Dropout is the identity only in inference mode. Before opset 7 the mode is the `is_test` attribute
   * (default 0: training); from opset 12 it is the `training_mode` input (default false), and training
   * with a ratio above 0 drops values at random: nothing a circuit can reproduce.
   */
  checkInferenceDropout(node: OnnxNode): void {
    const label = nodeLabel(node);
    if (this.graph.opset < 7 && attrNum(node, "is_test", 0) === 0) {
      fail(
        "UNSUPPORTED_ATTRIBUTE",
        `${label}: is_test=0 (training mode, opset ${this.graph.opset}) drops values at random`,
      );
    }
    if (!node.inputs[2]) return;
    const training = this.constInput(node, 2, "training_mode").data[0] !== 0;
    const ratio = node.inputs[1] ? this.constInput(node, 1, "ratio").data[0] : 0.5;
    if (training && ratio !== 0) {
      fail(
        "UNSUPPORTED_ATTRIBUTE",
        `${label}: training_mode=true with ratio ${ratio} drops values at random`,
      );
    }
  }

  gemm(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    let x = this.dyn(xv);
    if (x.shape.length !== 2) fail("UNSUPPORTED_OP", `${label}: input A must be 2-D, got [${x.shape}]`);
    if (attrNum(node, "transA", 0)) {
      const shape = [x.shape[1], x.shape[0]];
      x = { id: this.gather(label, shape, [{ src: x.id, index: transposeIndex(x.shape, [1, 0]) }]), shape };
    }
    const b = this.constInput(node, 1, "input B (the weights)");
    const c = this.optConst(node, 2, "input C (the bias)");
    const alpha = attrNum(node, "alpha", 1);
    const beta = attrNum(node, "beta", 1);
    const transB = attrNum(node, "transB", 0);
    const [M, K] = x.shape;
    const N = transB ? b.dims[0] : b.dims[1];
    if ((transB ? b.dims[1] : b.dims[0]) !== K)
      fail("MALFORMED_MODEL", `${label}: A is [${x.shape}], B is [${b.dims}]`);
    const weights: bigint[] = new Array(N * K);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) weights[n * K + k] = this.q(alpha * b.data[transB ? n * K + k : k * N + n]);
    const bias = new Array<bigint>(N).fill(0n);
    let elementBias: bigint[] | undefined;
    if (c) {
      // C broadcasts to [M, N] (unidirectionally); a C that varies by row is added after the dense op.
      if (!broadcastShapes(c.dims, [M, N])?.every((d, i) => d === [M, N][i]))
        fail("MALFORMED_MODEL", `${label}: bias C [${c.dims}] does not broadcast to [${M},${N}]`);
      const idx = broadcastIndex([M, N], c.dims);
      const perColumn = idx.every((j, i) => j === idx[i % N]);
      if (perColumn) for (let n = 0; n < N; n++) bias[n] = this.q(beta * c.data[idx[n]], 2);
      else elementBias = idx.map((j) => this.q(beta * c.data[j], 2));
    }
    return this.dense(label, x.id, M, K, N, weights, bias, [M, N], elementBias);
  }

  dense(
    label: string,
    src: number,
    rows: number,
    k: number,
    n: number,
    weights: bigint[],
    bias: bigint[],
    shape: number[],
    elementBias?: bigint[],
  ): Value {
    const inMax = this.t(src).maxAbs;
    let maxAbs = 0n;
    for (let j = 0; j < n; j++) {
      let m = absBig(bias[j]);
      for (let i = 0; i < k; i++) m += absBig(weights[j * k + i]) * inMax;
      if (m > maxAbs) maxAbs = m;
    }
    const acc = this.newTensor(shape, 2, maxAbs);
    this.ops.push({ op: "dense", node: label, src, dst: acc.id, rows, k, n, weights, bias });
    let out = acc.id;
    if (elementBias)
      out = this.lincomb(label, shape, [{ src: out, coef: [1n], index: null }], elementBias, 2);
    return { kind: "dyn", id: this.rescale(label, out), shape };
  }

  matmul(node: OnnxNode, av: Value, bv: Value): Value {
    const label = nodeLabel(node);
    if (bv.kind !== "const") {
      fail(
        "UNSUPPORTED_OP",
        `${label}: MatMul of two computed tensors is not supported; B must be a constant`,
      );
    }
    const a = this.dyn(av);
    const b = bv.t;
    if (b.dims.length !== 2) fail("UNSUPPORTED_OP", `${label}: B must be 2-D, got [${b.dims}]`);
    const [K, N] = b.dims;
    if (a.shape[a.shape.length - 1] !== K)
      fail("MALFORMED_MODEL", `${label}: A is [${a.shape}], B is [${b.dims}]`);
    const rows = numel(a.shape) / K;
    const weights: bigint[] = new Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) weights[n * K + k] = this.q(b.data[k * N + n]);
    const bias = new Array<bigint>(N).fill(0n);
    return this.dense(label, a.id, rows, K, N, weights, bias, [...a.shape.slice(0, -1), N]);
  }

  conv(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    const w = this.constInput(node, 1, "the weights");
    const b = this.optConst(node, 2, "the bias");
    if (x.shape.length !== 4 || w.dims.length !== 4) {
      fail(
        "UNSUPPORTED_OP",
        `${label}: only 2-D convolution (NCHW input) is supported, input is [${x.shape}]`,
      );
    }
    const [batch, c, h, wd] = x.shape;
    const [oc, cg, kh, kw] = w.dims;
    const group = attrNum(node, "group", 1);
    if (cg * group !== c || oc % group !== 0)
      fail("MALFORMED_MODEL", `${label}: weights [${w.dims}] vs input [${x.shape}]`);
    const geo = windowGeometry(node, [h, wd], [kh, kw], false);
    const weights = [...w.data].map((v) => this.q(v));
    const bias = new Array<bigint>(oc).fill(0n);
    if (b) for (let o = 0; o < oc; o++) bias[o] = this.q(b.data[o], 2);
    const inMax = this.t(x.id).maxAbs;
    let maxAbs = 0n;
    const per = cg * kh * kw;
    for (let o = 0; o < oc; o++) {
      let m = absBig(bias[o]);
      for (let i = 0; i < per; i++) m += absBig(weights[o * per + i]) * inMax;
      if (m > maxAbs) maxAbs = m;
    }
    const shape = [batch, oc, geo.out[0], geo.out[1]];
    const acc = this.newTensor(shape, 2, maxAbs);
    this.ops.push({
      op: "conv",
      node: label,
      src: x.id,
      dst: acc.id,
      batch,
      c,
      h,
      w: wd,
      oc,
      oh: geo.out[0],
      ow: geo.out[1],
      kh,
      kw,
      strides: geo.strides,
      pads: [geo.padBegin[0], geo.padBegin[1]],
      dilations: geo.dilations,
      group,
      weights,
      bias,
    });
    return { kind: "dyn", id: this.rescale(label, acc.id), shape };
  }

  pool(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    if (x.shape.length !== 4) fail("UNSUPPORTED_OP", `${label}: only 2-D pooling (NCHW input) is supported`);
    const [n, c, h, w] = x.shape;
    const global = node.opType === "GlobalAveragePool";
    const kernel = global ? [h, w] : attrInts(node, "kernel_shape", []);
    if (kernel.length !== 2) fail("UNSUPPORTED_ATTRIBUTE", `${label}: kernel_shape must have 2 entries`);
    const geo = global
      ? { out: [1, 1], strides: [1, 1], padBegin: [0, 0], padEnd: [0, 0], dilations: [1, 1] }
      : windowGeometry(node, [h, w], kernel, attrNum(node, "ceil_mode", 0) === 1);
    const includePad = attrNum(node, "count_include_pad", 0) === 1;
    const [oh, ow] = geo.out;
    const windows: number[][] = [];
    const counts: number[] = [];
    for (let b = 0; b < n; b++)
      for (let ch = 0; ch < c; ch++)
        for (let oy = 0; oy < oh; oy++)
          for (let ox = 0; ox < ow; ox++) {
            const win: number[] = [];
            let padded = 0;
            for (let ky = 0; ky < kernel[0]; ky++)
              for (let kx = 0; kx < kernel[1]; kx++) {
                const iy = oy * geo.strides[0] - geo.padBegin[0] + ky * geo.dilations[0];
                const ix = ox * geo.strides[1] - geo.padBegin[1] + kx * geo.dilations[1];
                if (iy >= 0 && iy < h && ix >= 0 && ix < w) win.push(((b * c + ch) * h + iy) * w + ix);
                else if (iy < h + geo.padEnd[0] && ix < w + geo.padEnd[1]) padded++;
              }
            if (win.length === 0)
              fail("UNSUPPORTED_ATTRIBUTE", `${label}: a pooling window lies entirely in the padding`);
            windows.push(win);
            counts.push(includePad ? win.length + padded : win.length);
          }
    const shape = [n, c, oh, ow];
    const src = this.t(x.id);
    if (node.opType === "MaxPool") {
      const out = this.newTensor(shape, src.scale, src.maxAbs);
      this.ops.push({
        op: "maxpool",
        node: label,
        src: x.id,
        dst: out.id,
        windows,
        bits: signedBits(2n * src.maxAbs),
      });
      return { kind: "dyn", id: out.id, shape };
    }
    const mult = counts.map((k) => roundToInt(2 ** this.s / k));
    let maxAbs = 0n;
    windows.forEach((win, i) => {
      const m = mult[i] * BigInt(win.length) * src.maxAbs;
      if (m > maxAbs) maxAbs = m;
    });
    const acc = this.newTensor(shape, 2, maxAbs);
    this.ops.push({ op: "sumpool", node: label, src: x.id, dst: acc.id, windows, mult });
    return { kind: "dyn", id: this.rescale(label, acc.id), shape };
  }

  batchNorm(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    checkInferenceBatchNorm(node, this.graph.opset);
    const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) =>
      this.constInput(node, i, "a BatchNormalization parameter"),
    );
    const eps = attrNum(node, "epsilon", 1e-5);
    const c = x.shape[1] ?? 1;
    for (const p of [gamma, beta, mean, variance]) {
      if (p.data.length !== c) {
        fail("MALFORMED_MODEL", `${label}: a parameter has ${p.data.length} values for ${c} channels`);
      }
    }
    const chanOf = channelIndex(x.shape);
    const a: bigint[] = [];
    const bb: bigint[] = [];
    for (let ch = 0; ch < c; ch++) {
      const f = gamma.data[ch] / Math.sqrt(variance.data[ch] + eps);
      a.push(this.q(f));
      bb.push(this.q(beta.data[ch] - mean.data[ch] * f, 2));
    }
    const coef = chanOf.map((ch) => a[ch]);
    const bias = chanOf.map((ch) => bb[ch]);
    const acc = this.lincomb(label, x.shape, [{ src: x.id, coef, index: null }], bias, 2);
    return { kind: "dyn", id: this.rescale(label, acc), shape: x.shape };
  }

  addSub(node: OnnxNode, av: Value, bv: Value): Value {
    const label = nodeLabel(node);
    const sign = node.opType === "Sub" ? -1n : 1n;
    const sa = av.kind === "dyn" ? av.shape : av.t.dims;
    const sb = bv.kind === "dyn" ? bv.shape : bv.t.dims;
    const shape = broadcastShapes(sa, sb);
    if (!shape) fail("MALFORMED_MODEL", `${label}: shapes [${sa}] and [${sb}] do not broadcast`);
    const terms: LinTerm[] = [];
    const bias: bigint[] = new Array<bigint>(numel(shape)).fill(0n);
    const add = (v: Value, inShape: number[], coef: bigint): void => {
      const index = broadcastIndex(shape, inShape);
      if (v.kind === "const") {
        index.forEach((j, i) => (bias[i] += coef * this.q(v.t.data[j])));
      } else {
        const t = this.t(v.id);
        if (t.scale !== 1) fail("UNSUPPORTED_OP", `${label}: operand scale mismatch`);
        terms.push({ src: v.id, coef: [coef], index: sameShape(inShape, shape) ? null : index });
      }
    };
    add(av, sa, 1n);
    add(bv, sb, sign);
    return { kind: "dyn", id: this.lincomb(label, shape, terms, bias, 1), shape };
  }

  mulDiv(node: OnnxNode, av: Value, bv: Value): Value {
    const label = nodeLabel(node);
    let [a, b] = [av, bv];
    if (node.opType === "Mul" && a.kind === "const") [a, b] = [b, a];
    if (a.kind !== "dyn")
      fail("UNSUPPORTED_OP", `${label}: dividing a constant by a computed tensor is not supported`);
    const sb = b.kind === "dyn" ? b.shape : b.t.dims;
    const shape = broadcastShapes(a.shape, sb);
    if (!shape) fail("MALFORMED_MODEL", `${label}: shapes [${a.shape}] and [${sb}] do not broadcast`);
    const ia = broadcastIndex(shape, a.shape);
    const ib = broadcastIndex(shape, sb);
    if (b.kind === "const") {
      const bt = b.t;
      const coef = ib.map((j) => {
        const v = node.opType === "Div" ? 1 / bt.data[j] : bt.data[j];
        if (!Number.isFinite(v)) fail("BAD_INPUT", `${label}: division by zero`);
        return this.q(v);
      });
      const acc = this.lincomb(label, shape, [{ src: a.id, coef, index: ia }], [0n], 2);
      return { kind: "dyn", id: this.rescale(label, acc), shape };
    }
    if (node.opType === "Div")
      fail("UNSUPPORTED_OP", `${label}: division by a computed tensor is not supported`);
    const out = this.newTensor(shape, 2, this.t(a.id).maxAbs * this.t(b.id).maxAbs);
    this.ops.push({ op: "mul", node: label, a: a.id, b: b.id, ia, ib, dst: out.id });
    return { kind: "dyn", id: this.rescale(label, out.id), shape };
  }

  leakyRelu(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    const alpha = this.q(attrNum(node, "alpha", 0.01));
    const r = this.relu(label, x.id);
    // y = alpha*x + (1 - alpha)*relu(x), at scale 2s, then rescaled.
    const acc = this.lincomb(
      label,
      x.shape,
      [
        { src: x.id, coef: [alpha], index: null },
        { src: r, coef: [this.one - alpha], index: null },
      ],
      [0n],
      2,
    );
    return { kind: "dyn", id: this.rescale(label, acc), shape: x.shape };
  }

  clip(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    const lo = node.inputs[1] ? this.constInput(node, 1, "min").data[0] : attrNum(node, "min", -Infinity);
    const hi = node.inputs[2] ? this.constInput(node, 2, "max").data[0] : attrNum(node, "max", Infinity);
    let cur = x.id;
    // max(x, lo) = lo + relu(x - lo); min(y, hi) = hi - relu(hi - y).
    if (Number.isFinite(lo)) {
      const lq = this.q(lo);
      const d = this.lincomb(label, x.shape, [{ src: cur, coef: [1n], index: null }], [-lq], 1);
      const r = this.relu(label, d);
      cur = this.lincomb(label, x.shape, [{ src: r, coef: [1n], index: null }], [lq], 1);
    }
    if (Number.isFinite(hi)) {
      const hq = this.q(hi);
      const d = this.lincomb(label, x.shape, [{ src: cur, coef: [-1n], index: null }], [hq], 1);
      const r = this.relu(label, d);
      cur = this.lincomb(label, x.shape, [{ src: r, coef: [-1n], index: null }], [hq], 1);
    }
    return { kind: "dyn", id: cur, shape: x.shape };
  }

  sigmoidTanh(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    const tanh = node.opType === "Tanh";
    // tanh(x) = 2 sigmoid(2x) - 1 = sum 4 DELTA_k relu(x - BREAK_k / 2) - 1.
    const terms: LinTerm[] = [];
    for (let k = 0; k < SIGMOID_BREAKS.length; k++) {
      const t = this.q(tanh ? SIGMOID_BREAKS[k] / 2 : SIGMOID_BREAKS[k]);
      const d = this.lincomb(label, x.shape, [{ src: x.id, coef: [1n], index: null }], [-t], 1);
      const r = this.relu(label, d);
      terms.push({ src: r, coef: [this.q(tanh ? 4 * SIGMOID_DELTAS[k] : SIGMOID_DELTAS[k])], index: null });
    }
    const acc = this.lincomb(label, x.shape, terms, [tanh ? -this.q(1, 2) : 0n], 2);
    (this.ops[this.ops.length - 1] as LinCombOp).approxError = tanh
      ? 2 * SIGMOID_MAX_ERROR
      : SIGMOID_MAX_ERROR;
    return { kind: "dyn", id: this.rescale(label, acc), shape: x.shape };
  }

  pad(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    const mode = attrStr(node, "mode", "constant");
    if (mode !== "constant") fail("UNSUPPORTED_ATTRIBUTE", `${label}: pad mode '${mode}' (only 'constant')`);
    const r = x.shape.length;
    let pads = node.inputs[1] ? [...this.constInput(node, 1, "pads").data] : attrInts(node, "pads", []);
    if (node.inputs[3]) {
      const axes = [...this.constInput(node, 3, "axes").data].map((a) => normAxis(a, r));
      const full = new Array<number>(2 * r).fill(0);
      axes.forEach((a, i) => {
        full[a] = pads[i];
        full[a + r] = pads[i + axes.length];
      });
      pads = full;
    }
    if (pads.length !== 2 * r) fail("UNSUPPORTED_ATTRIBUTE", `${label}: pads must have ${2 * r} entries`);
    const value = node.inputs[2]
      ? (this.constInput(node, 2, "constant_value").data[0] ?? 0)
      : attrNum(node, "value", 0);
    const shape = x.shape.map((d, i) => d + pads[i] + pads[i + r]);
    const inStrides = strides(x.shape);
    const total = numel(shape);
    const index: number[] = [];
    const srcs: number[] = [];
    const coord = new Array<number>(r).fill(0);
    for (let i = 0; i < total; i++) {
      let idx = 0;
      let inside = true;
      for (let d = 0; d < r; d++) {
        const c = coord[d] - pads[d];
        if (c < 0 || c >= x.shape[d]) inside = false;
        idx += c * inStrides[d];
      }
      srcs.push(inside ? x.id : -1);
      index.push(inside ? idx : 0);
      for (let d = r - 1; d >= 0; d--) {
        if (++coord[d] < shape[d]) break;
        coord[d] = 0;
      }
    }
    const out = this.newTensor(shape, 1, maxBig(this.t(x.id).maxAbs, absBig(this.q(value))));
    this.ops.push({ op: "gather", node: label, dst: out.id, srcs, idx: index, consts: [this.q(value)] });
    return { kind: "dyn", id: out.id, shape };
  }

  concat(node: OnnxNode, ins: Value[]): Value {
    const label = nodeLabel(node);
    const shapes = ins.map((v) => (v.kind === "dyn" ? v.shape : v.t.dims));
    const r = shapes[0].length;
    const axis = normAxis(attrNum(node, "axis", 0), r);
    const shape = [...shapes[0]];
    shape[axis] = shapes.reduce((a, s) => a + s[axis], 0);
    const outer = numel(shape.slice(0, axis));
    const srcs: number[] = [];
    const idx: number[] = [];
    const consts: bigint[] = [];
    const dyns = ins.map((v) => (v.kind === "dyn" ? v : undefined));
    for (let o = 0; o < outer; o++) {
      ins.forEach((v, k) => {
        const inner = numel(shapes[k].slice(axis));
        for (let i = 0; i < inner; i++) {
          const j = o * inner + i;
          const d = dyns[k];
          if (d) {
            srcs.push(d.id);
            idx.push(j);
          } else {
            srcs.push(-1);
            idx.push(consts.length);
            consts.push(this.q((v as { t: ConstTensor }).t.data[j]));
          }
        }
      });
    }
    let maxAbs = consts.reduce((m, c) => maxBig(m, absBig(c)), 0n);
    for (const d of dyns) if (d) maxAbs = maxBig(maxAbs, this.t(d.id).maxAbs);
    const out = this.newTensor(shape, 1, maxAbs);
    this.ops.push({ op: "gather", node: label, dst: out.id, srcs, idx, consts });
    return { kind: "dyn", id: out.id, shape };
  }

  slice(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    const { shape, index } = sliceIndex(node, x.shape, this);
    return { kind: "dyn", id: this.gather(label, shape, [{ src: x.id, index }]), shape };
  }

  argmax(node: OnnxNode, xv: Value): Value {
    const label = nodeLabel(node);
    const x = this.dyn(xv);
    if (attrNum(node, "select_last_index", 0) !== 0)
      fail("UNSUPPORTED_ATTRIBUTE", `${label}: select_last_index=1`);
    const r = x.shape.length;
    const axis = normAxis(attrNum(node, "axis", 0), r);
    const keep = attrNum(node, "keepdims", 1) === 1;
    const st = strides(x.shape);
    const outShapeKeep = x.shape.map((d, i) => (i === axis ? 1 : d));
    const groups: number[][] = [];
    const total = numel(outShapeKeep);
    const coord = new Array<number>(r).fill(0);
    for (let i = 0; i < total; i++) {
      const base = coord.reduce((a, c, d) => a + c * st[d], 0);
      groups.push([...Array(x.shape[axis]).keys()].map((k) => base + k * st[axis]));
      for (let d = r - 1; d >= 0; d--) {
        if (++coord[d] < outShapeKeep[d]) break;
        coord[d] = 0;
      }
    }
    const shape = keep ? outShapeKeep : x.shape.filter((_, i) => i !== axis);
    const src = this.t(x.id);
    const out = this.newTensor(shape, 0, BigInt(x.shape[axis]));
    this.ops.push({
      op: "argmax",
      node: label,
      src: x.id,
      dst: out.id,
      groups,
      bits: signedBits(2n * src.maxAbs + 1n),
    });
    return { kind: "dyn", id: out.id, shape };
  }
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

/**
 * The values a final Softmax/LogSoftmax normalises together. From opset 13 it is one axis (default -1);
 * before, the input is coerced to 2-D at `axis` (default 1) and each row, all the dims from `axis` on, is
 * normalised.
 */
function softmaxGroup(node: OnnxNode, shape: number[], opset: number): { size: number; stride: number } {
  const r = shape.length;
  const raw = attrNum(node, "axis", opset >= 13 ? -1 : 1);
  const axis = normAxis(raw, r);
  if (!Number.isInteger(axis) || axis < 0 || axis >= Math.max(r, 1)) {
    fail("MALFORMED_MODEL", `${nodeLabel(node)}: axis ${raw} is out of range for rank ${r}`);
  }
  if (opset >= 13) return { size: shape[axis] ?? 1, stride: numel(shape.slice(axis + 1)) };
  return { size: numel(shape.slice(axis)), stride: 1 };
}

/**
 * BatchNormalization is a per-channel affine map only in inference mode with one scale per channel.
 * Training mode (`is_test`=0 before opset 7, `training_mode`=1 from opset 14, or the running-statistics
 * outputs asked for) normalises with the batch's own statistics; `spatial`=0 (before opset 9) has one
 * scale per element. Both are refused.
 */
function checkInferenceBatchNorm(node: OnnxNode, opset: number): void {
  const label = nodeLabel(node);
  if (opset < 7 && attrNum(node, "is_test", 0) === 0)
    fail(
      "UNSUPPORTED_ATTRIBUTE",
      `${label}: is_test=0 (training mode, opset ${opset}) uses batch statistics`,
    );
  if (attrNum(node, "training_mode", 0) !== 0)
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: training_mode=1 uses batch statistics`);
  if (node.outputs.slice(1).some((o) => o))
    fail("UNSUPPORTED_OP", `${label}: the running mean/variance outputs (training mode) are not supported`);
  if (opset < 9 && attrNum(node, "spatial", 1) === 0)
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: spatial=0 (one scale per element) is not supported`);
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function isTensor(v: AttrValue | undefined): v is ConstTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function scalar(v: number, isInteger: boolean): ConstTensor {
  return { dims: [], data: Float64Array.of(v), isInteger };
}

function vec(v: number[], isInteger: boolean): ConstTensor {
  return { dims: [v.length], data: Float64Array.from(v), isInteger };
}

export function attrNum(node: OnnxNode, name: string, dflt: number): number {
  const v = node.attrs.get(name);
  if (v === undefined) return dflt;
  if (typeof v !== "number")
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: attribute '${name}' should be a number`);
  return v;
}

export function attrInts(node: OnnxNode, name: string, dflt: number[]): number[] {
  const v = node.attrs.get(name);
  if (v === undefined) return dflt;
  if (!Array.isArray(v))
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: attribute '${name}' should be a list`);
  return v;
}

function attrStr(node: OnnxNode, name: string, dflt: string): string {
  const v = node.attrs.get(name);
  if (v === undefined) return dflt;
  if (typeof v !== "string")
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: attribute '${name}' should be a string`);
  return v;
}

/** The channel (axis 1) of every element of an NC... tensor. */
function channelIndex(shape: number[]): number[] {
  const total = numel(shape);
  const c = shape[1] ?? 1;
  const inner = numel(shape.slice(2));
  return [...Array(total).keys()].map((i) => Math.floor(i / inner) % c);
}

interface WindowGeometry {
  out: number[];
  strides: [number, number];
  padBegin: number[];
  padEnd: number[];
  dilations: [number, number];
}

function windowGeometry(node: OnnxNode, spatial: number[], kernel: number[], ceil: boolean): WindowGeometry {
  const label = nodeLabel(node);
  const st = attrInts(node, "strides", [1, 1]);
  const dl = attrInts(node, "dilations", [1, 1]);
  let pads = attrInts(node, "pads", [0, 0, 0, 0]);
  const autoPad = attrStr(node, "auto_pad", "NOTSET");
  if (st.length !== 2 || dl.length !== 2 || pads.length !== 4) {
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: strides/dilations/pads must describe 2 spatial dimensions`);
  }
  if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    // onnxruntime sizes SAME padding without the dilation (and refuses it for Conv), so the float
    // reference would disagree with the circuit's ONNX-spec windows: refuse rather than differ.
    if (dl.some((d) => d !== 1))
      fail("UNSUPPORTED_ATTRIBUTE", `${label}: auto_pad ${autoPad} with dilations [${dl}]`);
    pads = [0, 0, 0, 0];
    for (let d = 0; d < 2; d++) {
      const out = Math.ceil(spatial[d] / st[d]);
      const total = Math.max(0, (out - 1) * st[d] + (kernel[d] - 1) * dl[d] + 1 - spatial[d]);
      const small = Math.floor(total / 2);
      pads[d] = autoPad === "SAME_UPPER" ? small : total - small;
      pads[d + 2] = total - pads[d];
    }
  } else if (autoPad === "VALID") {
    pads = [0, 0, 0, 0];
  } else if (autoPad !== "NOTSET") {
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: auto_pad '${autoPad}'`);
  }
  const out = [0, 1].map((d) => {
    const span = spatial[d] + pads[d] + pads[d + 2] - ((kernel[d] - 1) * dl[d] + 1);
    let o = (ceil ? Math.ceil(span / st[d]) : Math.floor(span / st[d])) + 1;
    // A last window that would start in the end padding is dropped (PyTorch and onnxruntime agree).
    if (ceil && (o - 1) * st[d] >= spatial[d] + pads[d]) o--;
    if (o <= 0) fail("MALFORMED_MODEL", `${label}: kernel larger than the padded input`);
    return o;
  });
  return {
    out,
    strides: [st[0], st[1]],
    padBegin: [pads[0], pads[1]],
    padEnd: [pads[2], pads[3]],
    dilations: [dl[0], dl[1]],
  };
}

function reshapeTarget(inShape: number[], target: number[], node: OnnxNode): number[] {
  const allowZero = attrNum(node, "allowzero", 0) === 1;
  const out = target.map((d, i) => (d === 0 && !allowZero ? inShape[i] : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = numel(inShape);
  const neg = out.filter((d) => d === -1).length;
  if (neg > 1) fail("MALFORMED_MODEL", `${nodeLabel(node)}: more than one -1 in the target shape`);
  const res = out.map((d) => (d === -1 ? total / known : d));
  if (numel(res) !== total || res.some((d) => !Number.isInteger(d))) {
    fail("MALFORMED_MODEL", `${nodeLabel(node)}: cannot reshape [${inShape}] to [${target}]`);
  }
  return res;
}

function axesOf(node: OnnxNode, low: Lowering | null, consts?: (ConstTensor | undefined)[]): number[] | null {
  if (node.attrs.has("axes")) return attrInts(node, "axes", []);
  if (node.inputs[1]) {
    if (consts) return [...(consts[1] as ConstTensor).data];
    return [...(low as Lowering).constInput(node, 1, "axes").data];
  }
  return null;
}

function squeezeShape(op: string, shape: number[], axes: number[] | null, node: OnnxNode): number[] {
  if (op === "Squeeze") {
    const ax = axes
      ? axes.map((a) => normAxis(a, shape.length))
      : shape.flatMap((d, i) => (d === 1 ? [i] : []));
    for (const a of ax) if (shape[a] !== 1) fail("MALFORMED_MODEL", `${nodeLabel(node)}: axis ${a} is not 1`);
    return shape.filter((_, i) => !ax.includes(i));
  }
  if (!axes) fail("MALFORMED_MODEL", `${nodeLabel(node)}: Unsqueeze without axes`);
  const r = shape.length + axes.length;
  const ax = axes.map((a) => normAxis(a, r)).sort((a, b) => a - b);
  const out = [...shape];
  for (const a of ax) out.splice(a, 0, 1);
  return out;
}

function sliceIndex(
  node: OnnxNode,
  shape: number[],
  low: Lowering | null,
  consts?: (ConstTensor | undefined)[],
): { shape: number[]; index: number[] } {
  const r = shape.length;
  const read = (i: number, attr: string): number[] | undefined => {
    if (node.attrs.has(attr)) return attrInts(node, attr, []);
    if (!node.inputs[i]) return undefined;
    if (consts) return [...(consts[i] as ConstTensor).data];
    return [...(low as Lowering).constInput(node, i, attr).data];
  };
  const starts = read(1, "starts") ?? [];
  const ends = read(2, "ends") ?? [];
  const axes = (read(3, "axes") ?? starts.map((_, i) => i)).map((a) => normAxis(a, r));
  const steps = read(4, "steps") ?? starts.map(() => 1);
  const begin = shape.map(() => 0);
  const step = shape.map(() => 1);
  const outShape = [...shape];
  axes.forEach((a, i) => {
    const d = shape[a];
    const stp = steps[i];
    if (stp === 0) fail("MALFORMED_MODEL", `${nodeLabel(node)}: slice step 0`);
    // ONNX: with a positive step both clamp to [0, d]; with a negative step starts clamp to [0, d-1] and
    // ends to [-1, d-1].
    const clamp = (v: number, lo: number): number => {
      const x = v < 0 ? v + d : v;
      return stp > 0 ? Math.max(0, Math.min(d, x)) : Math.max(lo, Math.min(d - 1, x));
    };
    const s0 = clamp(starts[i], 0);
    const e0 = clamp(ends[i], -1);
    begin[a] = s0;
    step[a] = stp;
    outShape[a] = Math.max(0, Math.ceil((e0 - s0) / stp));
  });
  const inStrides = strides(shape);
  const total = numel(outShape);
  const index: number[] = [];
  const coord = new Array<number>(r).fill(0);
  for (let i = 0; i < total; i++) {
    let idx = 0;
    for (let d = 0; d < r; d++) idx += (begin[d] + coord[d] * step[d]) * inStrides[d];
    index.push(idx);
    for (let d = r - 1; d >= 0; d--) {
      if (++coord[d] < outShape[d]) break;
      coord[d] = 0;
    }
  }
  return { shape: outShape, index };
}

/** Evaluates a node whose inputs are all constant (the shape subgraphs exporters emit). */
function foldConst(node: OnnxNode, ins: (ConstTensor | undefined)[]): ConstTensor {
  const label = nodeLabel(node);
  const a = ins[0] as ConstTensor;
  const isInt = a?.isInteger ?? false;
  const elementwise = (f: (x: number, y: number) => number): ConstTensor => {
    const b = ins[1] as ConstTensor;
    const shape = broadcastShapes(a.dims, b.dims);
    if (!shape) fail("MALFORMED_MODEL", `${label}: shapes [${a.dims}] and [${b.dims}] do not broadcast`);
    const ia = broadcastIndex(shape, a.dims);
    const ib = broadcastIndex(shape, b.dims);
    const data = Float64Array.from(ia, (j, i) => f(a.data[j], b.data[ib[i]]));
    return { dims: shape, data, isInteger: a.isInteger && b.isInteger };
  };
  switch (node.opType) {
    case "Add":
      return elementwise((x, y) => x + y);
    case "Sub":
      return elementwise((x, y) => x - y);
    case "Mul":
      return elementwise((x, y) => x * y);
    case "Div":
      return elementwise((x, y) => (isInt ? Math.trunc(x / y) : x / y));
    case "Cast": {
      const to = attrNum(node, "to", 1);
      const integer = to !== 1 && to !== 11 && to !== 10;
      return { dims: a.dims, data: integer ? a.data.map(Math.trunc) : a.data, isInteger: integer };
    }
    case "Gather": {
      const idx = ins[1] as ConstTensor;
      const axis = normAxis(attrNum(node, "axis", 0), a.dims.length);
      const outer = numel(a.dims.slice(0, axis));
      const inner = numel(a.dims.slice(axis + 1));
      const n = a.dims[axis];
      const data: number[] = [];
      for (let o = 0; o < outer; o++)
        for (const raw of idx.data) {
          const k = raw < 0 ? raw + n : raw;
          for (let i = 0; i < inner; i++) data.push(a.data[(o * n + k) * inner + i]);
        }
      return {
        dims: [...a.dims.slice(0, axis), ...idx.dims, ...a.dims.slice(axis + 1)],
        data: Float64Array.from(data),
        isInteger: isInt,
      };
    }
    case "Unsqueeze":
    case "Squeeze":
      return { ...a, dims: squeezeShape(node.opType, a.dims, axesOf(node, null, ins), node) };
    case "Concat": {
      const parts = ins as ConstTensor[];
      const r = a.dims.length;
      const axis = normAxis(attrNum(node, "axis", 0), r);
      const shape = [...a.dims];
      shape[axis] = parts.reduce((s, p) => s + p.dims[axis], 0);
      const outer = numel(shape.slice(0, axis));
      const data: number[] = [];
      for (let o = 0; o < outer; o++)
        for (const p of parts) {
          const inner = numel(p.dims.slice(axis));
          for (let i = 0; i < inner; i++) data.push(p.data[o * inner + i]);
        }
      return { dims: shape, data: Float64Array.from(data), isInteger: parts.every((p) => p.isInteger) };
    }
    case "Reshape":
      return {
        ...a,
        dims: reshapeTarget(a.dims, ins[1] ? [...ins[1].data] : attrInts(node, "shape", []), node),
      };
    case "Flatten": {
      const axis = normAxis(attrNum(node, "axis", 1), a.dims.length);
      return { ...a, dims: [numel(a.dims.slice(0, axis)), numel(a.dims.slice(axis))] };
    }
    case "Transpose": {
      const perm = attrInts(node, "perm", [...a.dims.keys()].reverse());
      const idx = transposeIndex(a.dims, perm);
      return {
        dims: perm.map((p) => a.dims[p]),
        data: Float64Array.from(idx, (j) => a.data[j]),
        isInteger: isInt,
      };
    }
    case "Slice": {
      const { shape, index } = sliceIndex(node, a.dims, null, ins);
      return { dims: shape, data: Float64Array.from(index, (j) => a.data[j]), isInteger: isInt };
    }
    case "ConstantOfShape": {
      const v = node.attrs.get("value");
      const fill = isTensor(v) ? v.data[0] : 0;
      const dims = [...a.data];
      return {
        dims,
        data: new Float64Array(numel(dims)).fill(fill),
        isInteger: isTensor(v) ? v.isInteger : false,
      };
    }
    default:
      fail("UNSUPPORTED_OP", `${label} on constant inputs is not supported by the constant folder`);
  }
}

/** Lowers an ONNX graph to the quantized program the circuit and the executor share. */
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
  return new Lowering(graph, o).run();
}
