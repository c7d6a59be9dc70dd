/**
 * Linear ops: Gemm, MatMul, elementwise Add/Sub/Mul/Div, Neg, Sum and Mean, BatchNormalization (folded into the Conv or Gemm
 * before it where it can be). Dense products and sums are free in R1CS; each product by a constant is
 * accumulated at scale 2 and rescaled once.
 */
import { fail } from "../../errors";
import { ConstTensor, OnnxGraph, OnnxNode, nodeLabel } from "../../onnx/graph";
import { LinTerm } from "../program";
import { broadcastIndex, broadcastShapes, normAxis, numel, transposeIndex } from "../shapes";
import { LoweringContext, OpKernel, OpTable, Value } from "./context";
import { absBig, attrNum, sameShape } from "./util";

const addSubKernel: OpKernel = {
  fold: (ctx, node, ins) => foldElementwise(ctx, node, ins),
  lower: (ctx, node, ins) => addSub(ctx, node, ins[0] as Value, legacyBroadcast(ctx, node, ins[0], ins[1])),
};

const mulDivKernel: OpKernel = {
  fold: (ctx, node, ins) => foldElementwise(ctx, node, ins),
  lower: (ctx, node, ins) => mulDiv(ctx, node, ins[0] as Value, legacyBroadcast(ctx, node, ins[0], ins[1])),
};

export const LINEAR_OPS: OpTable = {
  Gemm: { lower: (ctx, node, ins) => gemm(ctx, node, ins) },
  MatMul: { lower: (ctx, node, ins) => matmul(ctx, node, ins[0] as Value, ins[1] as Value) },
  Add: addSubKernel,
  Sub: addSubKernel,
  Mul: mulDivKernel,
  Div: mulDivKernel,
  BatchNormalization: { lower: (ctx, node, ins) => batchNorm(ctx, node, ins[0] as Value) },
  Sum: {
    fold: (_ctx, node, ins) => foldSumMean(node, ins),
    lower: (ctx, node, ins) => sumMean(ctx, node, ins),
  },
  Mean: {
    fold: (_ctx, node, ins) => foldSumMean(node, ins),
    lower: (ctx, node, ins) => sumMean(ctx, node, ins),
  },
  Neg: {
    fold: (_ctx, _node, ins) => {
      const a = ins[0] as ConstTensor;
      return { ...a, data: a.data.map((v) => -v) };
    },
    lower: (ctx, node, ins) => {
      // -x: a linear combination at the input's scale, exact and free.
      const x = ctx.dyn(ins[0] as Value);
      const t = ctx.tensor(x.id);
      const id = ctx.lincomb(
        nodeLabel(node),
        x.shape,
        [{ src: x.id, coef: [-1n], index: null }],
        [0n],
        t.scale,
      );
      return { kind: "dyn", id, shape: x.shape };
    },
  },
};

/** Add/Sub/Mul/Div on constants (after the pre-opset-7 broadcast is resolved). */
function foldElementwise(
  ctx: LoweringContext,
  node: OnnxNode,
  ins: (ConstTensor | undefined)[],
): ConstTensor {
  const asValue = (t: ConstTensor | undefined): Value | undefined => (t ? { kind: "const", t } : undefined);
  const bv = legacyBroadcast(ctx, node, asValue(ins[0]), asValue(ins[1])) as { t: ConstTensor };
  const label = nodeLabel(node);
  const a = ins[0] as ConstTensor;
  const b = bv.t;
  const isInt = a?.isInteger ?? false;
  const f = {
    Add: (x: number, y: number) => x + y,
    Sub: (x: number, y: number) => x - y,
    Mul: (x: number, y: number) => x * y,
    Div: (x: number, y: number) => (isInt ? Math.trunc(x / y) : x / y),
  }[node.opType as "Add" | "Sub" | "Mul" | "Div"];
  const shape = broadcastShapes(a.dims, b.dims);
  if (!shape) fail("MALFORMED_MODEL", `${label}: shapes [${a.dims}] and [${b.dims}] do not broadcast`);
  const ia = broadcastIndex(shape, a.dims);
  const ib = broadcastIndex(shape, b.dims);
  const data = Float64Array.from(ia, (j, i) => f(a.data[j], b.data[ib[i]]));
  return { dims: shape, data, isInteger: a.isInteger && b.isInteger };
}

/**
 * Before opset 7, Add/Sub/Mul/Div broadcast only with `broadcast`=1, and then B's dims line up with
 * A's from `axis` on (default: A's last dims). Returns B reshaped so numpy broadcasting means the same.
 */
function legacyBroadcast(
  ctx: LoweringContext,
  node: OnnxNode,
  av: Value | undefined,
  bv: Value | undefined,
): Value {
  const label = nodeLabel(node);
  if (!av || !bv) fail("MALFORMED_MODEL", `${label} needs two inputs`);
  if (ctx.opset >= 7) return bv;
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

/** Sum/Mean of constants, with broadcasting. */
function foldSumMean(node: OnnxNode, ins: (ConstTensor | undefined)[]): ConstTensor {
  const label = nodeLabel(node);
  const ts = ins.filter((t): t is ConstTensor => !!t);
  if (ts.length === 0) fail("MALFORMED_MODEL", `${label} needs at least one input`);
  let shape: number[] = [];
  for (const t of ts) {
    const b = broadcastShapes(shape, t.dims);
    if (!b) fail("MALFORMED_MODEL", `${label}: shapes [${shape}] and [${t.dims}] do not broadcast`);
    shape = b;
  }
  const data = new Float64Array(numel(shape));
  for (const t of ts) broadcastIndex(shape, t.dims).forEach((j, i) => (data[i] += t.data[j]));
  if (node.opType === "Mean") data.forEach((v, i) => (data[i] = v / ts.length));
  return { dims: shape, data, isInteger: node.opType === "Sum" && ts.every((t) => t.isInteger) };
}

/**
 * Sum (free: a linear combination at scale 1, constants in the bias) and Mean (the same sum with every
 * coefficient round(2^s / n), at scale 2, rescaled once) of any number of inputs, with broadcasting.
 */
function sumMean(ctx: LoweringContext, node: OnnxNode, ins: (Value | undefined)[]): Value {
  const label = nodeLabel(node);
  const vals = ins.filter((v): v is Value => !!v);
  const dimsOf = (v: Value): number[] => (v.kind === "dyn" ? v.shape : v.t.dims);
  let shape: number[] = [];
  for (const v of vals) {
    const b = broadcastShapes(shape, dimsOf(v));
    if (!b) fail("MALFORMED_MODEL", `${label}: shapes [${shape}] and [${dimsOf(v)}] do not broadcast`);
    shape = b;
  }
  const mean = node.opType === "Mean";
  const n = vals.length;
  const consts = vals.flatMap((v) => (v.kind === "const" ? [v.t] : []));
  const bias = new Array<bigint>(numel(shape)).fill(0n);
  if (consts.length > 0) {
    const c = foldSumMean({ ...node, opType: "Sum" }, consts);
    const idx = broadcastIndex(shape, c.dims);
    idx.forEach((j, i) => (bias[i] = mean ? ctx.q(c.data[j] / n, 2) : ctx.q(c.data[j])));
  }
  const coef = mean ? ctx.q(1 / n) : 1n;
  const terms: LinTerm[] = [];
  for (const v of vals) {
    if (v.kind !== "dyn") continue;
    if (ctx.tensor(v.id).scale !== 1) fail("UNSUPPORTED_OP", `${label}: operand scale mismatch`);
    terms.push({
      src: v.id,
      coef: [coef],
      index: sameShape(v.shape, shape) ? null : broadcastIndex(shape, v.shape),
    });
  }
  const acc = ctx.lincomb(label, shape, terms, bias, mean ? 2 : 1);
  return { kind: "dyn", id: ctx.rescale(label, acc), shape };
}

function gemm(ctx: LoweringContext, node: OnnxNode, ins: (Value | undefined)[]): Value {
  const label = nodeLabel(node);
  let x = ctx.dyn(ins[0] as Value);
  if (x.shape.length !== 2) fail("UNSUPPORTED_OP", `${label}: input A must be 2-D, got [${x.shape}]`);
  if (attrNum(node, "transA", 0)) {
    const shape = [x.shape[1], x.shape[0]];
    x = { id: ctx.gather(label, shape, [{ src: x.id, index: transposeIndex(x.shape, [1, 0]) }]), shape };
  }
  const b = ctx.constInput(node, 1, "input B (the weights)");
  const cv = node.inputs[2] ? ins[2] : undefined;
  const c = cv?.kind === "const" ? cv.t : undefined;
  const alpha = attrNum(node, "alpha", 1);
  const beta = attrNum(node, "beta", 1);
  const transB = attrNum(node, "transB", 0);
  const [M, K] = x.shape;
  const N = transB ? b.dims[0] : b.dims[1];
  if ((transB ? b.dims[1] : b.dims[0]) !== K)
    fail("MALFORMED_MODEL", `${label}: A is [${x.shape}], B is [${b.dims}]`);
  const weights: bigint[] = new Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) weights[n * K + k] = ctx.q(alpha * b.data[transB ? n * K + k : k * N + n]);
  const bias = new Array<bigint>(N).fill(0n);
  let elementBias: bigint[] | undefined;
  if (c) {
    // C broadcasts to [M, N] (unidirectionally); a C that varies by row is added after the dense op.
    if (!broadcastShapes(c.dims, [M, N])?.every((d, i) => d === [M, N][i]))
      fail("MALFORMED_MODEL", `${label}: bias C [${c.dims}] does not broadcast to [${M},${N}]`);
    const idx = broadcastIndex([M, N], c.dims);
    const perColumn = idx.every((j, i) => j === idx[i % N]);
    if (perColumn) for (let n = 0; n < N; n++) bias[n] = ctx.q(beta * c.data[idx[n]], 2);
    else elementBias = idx.map((j) => ctx.q(beta * c.data[j], 2));
  }
  if (cv?.kind === "dyn") {
    // A computed C (addmm's input): acc + round(beta 2^s) * C[broadcast], free in R1CS, rescaled once.
    if (!broadcastShapes(cv.shape, [M, N])?.every((d, i) => d === [M, N][i]))
      fail("MALFORMED_MODEL", `${label}: bias C [${cv.shape}] does not broadcast to [${M},${N}]`);
    if (ctx.tensor(cv.id).scale !== 1) fail("UNSUPPORTED_OP", `${label}: a bias C that is not an activation`);
    const addC: LinTerm = { src: cv.id, coef: [ctx.q(beta)], index: broadcastIndex([M, N], cv.shape) };
    return dense(ctx, label, x.id, M, K, N, weights, bias, [M, N], undefined, addC);
  }
  return dense(ctx, label, x.id, M, K, N, weights, bias, [M, N], elementBias);
}

/** The static bound of a dense op's accumulator: the largest |bias_j| + sum_i |w_ji| * inMax. */
export function denseBound(inMax: bigint, k: number, n: number, weights: bigint[], bias: bigint[]): bigint {
  let maxAbs = 0n;
  for (let j = 0; j < n; j++) {
    let m = absBig(bias[j]);
    for (let i = 0; i < k; i++) m += absBig(weights[j * k + i]) * inMax;
    if (m > maxAbs) maxAbs = m;
  }
  return maxAbs;
}

function dense(
  ctx: LoweringContext,
  label: string,
  src: number,
  rows: number,
  k: number,
  n: number,
  weights: bigint[],
  bias: bigint[],
  shape: number[],
  elementBias?: bigint[],
  addTerm?: LinTerm,
): Value {
  const acc = ctx.newTensor(shape, 2, denseBound(ctx.tensor(src).maxAbs, k, n, weights, bias));
  ctx.emit({ op: "dense", node: label, src, dst: acc.id, rows, k, n, weights, bias });
  let out = acc.id;
  if (elementBias) out = ctx.lincomb(label, shape, [{ src: out, coef: [1n], index: null }], elementBias, 2);
  if (addTerm) out = ctx.lincomb(label, shape, [{ src: out, coef: [1n], index: null }, addTerm], [0n], 2);
  return { kind: "dyn", id: ctx.rescale(label, out), shape };
}

function matmul(ctx: LoweringContext, node: OnnxNode, av: Value, bv: Value): Value {
  const label = nodeLabel(node);
  if (bv.kind !== "const") {
    fail("UNSUPPORTED_OP", `${label}: MatMul of two computed tensors is not supported; B must be a constant`);
  }
  const a = ctx.dyn(av);
  const b = bv.t;
  if (b.dims.length !== 2) fail("UNSUPPORTED_OP", `${label}: B must be 2-D, got [${b.dims}]`);
  const [K, N] = b.dims;
  if (a.shape[a.shape.length - 1] !== K)
    fail("MALFORMED_MODEL", `${label}: A is [${a.shape}], B is [${b.dims}]`);
  const rows = numel(a.shape) / K;
  const weights: bigint[] = new Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) weights[n * K + k] = ctx.q(b.data[k * N + n]);
  const bias = new Array<bigint>(N).fill(0n);
  return dense(ctx, label, a.id, rows, K, N, weights, bias, [...a.shape.slice(0, -1), N]);
}

function batchNorm(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  checkInferenceBatchNorm(node, ctx.opset);
  const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) =>
    ctx.constInput(node, i, "a BatchNormalization parameter"),
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
    a.push(ctx.q(f));
    bb.push(ctx.q(beta.data[ch] - mean.data[ch] * f, 2));
  }
  const coef = chanOf.map((ch) => a[ch]);
  const bias = chanOf.map((ch) => bb[ch]);
  const acc = ctx.lincomb(label, x.shape, [{ src: x.id, coef, index: null }], bias, 2);
  return { kind: "dyn", id: ctx.rescale(label, acc), shape: x.shape };
}

/** The channel (axis 1) of every element of an NC... tensor. */
function channelIndex(shape: number[]): number[] {
  const total = numel(shape);
  const c = shape[1] ?? 1;
  const inner = numel(shape.slice(2));
  return [...Array(total).keys()].map((i) => Math.floor(i / inner) % c);
}

function addSub(ctx: LoweringContext, node: OnnxNode, av: Value, bv: Value): Value {
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
      index.forEach((j, i) => (bias[i] += coef * ctx.q(v.t.data[j])));
    } else {
      const t = ctx.tensor(v.id);
      if (t.scale !== 1) fail("UNSUPPORTED_OP", `${label}: operand scale mismatch`);
      terms.push({ src: v.id, coef: [coef], index: sameShape(inShape, shape) ? null : index });
    }
  };
  add(av, sa, 1n);
  add(bv, sb, sign);
  return { kind: "dyn", id: ctx.lincomb(label, shape, terms, bias, 1), shape };
}

function mulDiv(ctx: LoweringContext, node: OnnxNode, av: Value, bv: Value): Value {
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
      return ctx.q(v);
    });
    const acc = ctx.lincomb(label, shape, [{ src: a.id, coef, index: ia }], [0n], 2);
    return { kind: "dyn", id: ctx.rescale(label, acc), shape };
  }
  if (node.opType === "Div")
    fail("UNSUPPORTED_OP", `${label}: division by a computed tensor is not supported`);
  const out = ctx.newTensor(shape, 2, ctx.tensor(a.id).maxAbs * ctx.tensor(b.id).maxAbs);
  ctx.emit({ op: "mul", node: label, a: a.id, b: b.id, ia, ib, dst: out.id });
  return { kind: "dyn", id: ctx.rescale(label, out.id), shape };
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

/**
 * A graph pass run before lowering: checks every BatchNormalization is in inference mode, and folds it into
 * the Conv or Gemm right before it when that producer's output feeds the BatchNormalization alone:
 * W' = W * g / sqrt(v + eps) per output channel, b' = (b - m) * g / sqrt(v + eps) + beta. Rewrites `g` in
 * place (nodes and initializers) and reports each initializer it adds through `define`.
 *
 * `uses` counts readers per ONNX name. Counting by name is sound here because the BatchNormalization reads
 * the producer's own output name, and any other reader of that value (an alias such as Flatten included)
 * reads that name too.
 */
export function foldBatchNorms(
  g: OnnxGraph,
  uses: ReadonlyMap<string, number>,
  define: (name: string, t: ConstTensor) => void,
): void {
  const producer = new Map<string, OnnxNode>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const removed = new Set<OnnxNode>();
  for (const bn of g.nodes) {
    if (bn.opType !== "BatchNormalization") continue;
    checkInferenceBatchNorm(bn, g.opset);
    const prev = producer.get(bn.inputs[0]);
    if (!prev || (prev.opType !== "Conv" && prev.opType !== "Gemm")) continue;
    if ((uses.get(bn.inputs[0]) ?? 0) !== 1) continue;
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
    define(wName, g.initializers.get(wName) as ConstTensor);
    define(bName, g.initializers.get(bName) as ConstTensor);
    prev.inputs = [prev.inputs[0], wName, bName];
    if (prev.opType === "Gemm") prev.attrs.set("beta", 1);
    prev.outputs = [bn.outputs[0]];
    removed.add(bn);
  }
  g.nodes = g.nodes.filter((n) => !removed.has(n));
}
