/**
 * Activations: Relu, LeakyRelu, PRelu, Clip, Abs and elementwise Max/Min (exact, from ReLUs), Sigmoid, Tanh,
 * Elu, Selu, Softplus and Softsign (piecewise-linear, each with a stated error bound), Softmax and
 * LogSoftmax (only as the model's last op, applied off-circuit).
 */
import { fail } from "../../errors";
import { ConstTensor, OnnxNode, nodeLabel } from "../../onnx/graph";
import { LinTerm } from "../program";
import { broadcastIndex, broadcastShapes, normAxis, numel } from "../shapes";
import { DynValue, LoweringContext, OpKernel, OpTable, Value } from "./context";
import { absBig, attrNum, sameShape } from "./util";

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

/**
 * A continuous piecewise-linear function: `values[k]` at `knots[k]` (increasing), straight between them,
 * and straight lines of slope `leftSlope` / `rightSlope` beyond the first / last knot. Lowered as
 * v_0 + s_0 (x - t_0) + sum_k (s_{k+1} - s_k) relu(x - t_k): one relu per knot.
 */
export interface PiecewiseLinear {
  knots: readonly number[];
  values: readonly number[];
  leftSlope: number;
  rightSlope: number;
}

export function evalPiecewiseLinear(p: PiecewiseLinear, x: number): number {
  const { knots: t, values: v } = p;
  const n = t.length;
  if (x <= t[0]) return v[0] + p.leftSlope * (x - t[0]);
  if (x >= t[n - 1]) return v[n - 1] + p.rightSlope * (x - t[n - 1]);
  let k = 0;
  while (x > t[k + 1]) k++;
  return v[k] + ((v[k + 1] - v[k]) * (x - t[k])) / (t[k + 1] - t[k]);
}

/**
 * Elu and Selu below 0: expm1 interpolated at these knots, flat (at -1) left of -4.6, and x itself (exact)
 * from 0 on. sup over x < 0 of |pl(x) - expm1(x)| = 0.010483... (near -2.02), rounded up; Elu's error
 * is |alpha| times this, Selu's |gamma * alpha| times this.
 */
export const ELU_KNOTS = [-4.6, -3.7, -2.45, -1.65, -1.1, -0.66, -0.3, 0];
export const ELU_MAX_ERROR = 0.0105;

export function eluCurve(alpha: number, gamma = 1): PiecewiseLinear {
  return {
    knots: ELU_KNOTS,
    values: ELU_KNOTS.map((t) => gamma * alpha * Math.expm1(t)),
    leftSlope: 0,
    rightSlope: gamma,
  };
}

/**
 * Softplus ln(1 + e^x), interpolated at knots symmetric about 0 (so pl(x) - pl(-x) = x, as for softplus),
 * 0 left of -4.6 and x right of 4.6. sup |pl - softplus| = softplus(-4.6) = 0.0100017... (the tails'
 * limit), rounded up.
 */
const SOFTPLUS_HALF = [0.57, 1.18, 1.9, 2.9, 4.6];
export const SOFTPLUS_KNOTS = [...SOFTPLUS_HALF.map((t) => -t).reverse(), 0, ...SOFTPLUS_HALF];
export const SOFTPLUS_MAX_ERROR = 0.01001;
const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
export const SOFTPLUS_CURVE: PiecewiseLinear = {
  knots: SOFTPLUS_KNOTS,
  values: SOFTPLUS_KNOTS.map(softplus),
  leftSlope: 0,
  rightSlope: 1,
};

/**
 * Softsign x / (1 + |x|), odd: interpolated at knots symmetric about 0, flat beyond +-25 at the middle of
 * softsign's range there, +-(1 + softsign(25)) / 2 (a bounded function has no better straight tail).
 * sup |pl - softsign| = 0.020014... (near +-6.66), rounded up; the tails' limit is 1/52 = 0.0192.
 */
const SOFTSIGN_HALF = [0.35, 0.93, 1.97, 4.19, 10.3, 25];
export const SOFTSIGN_KNOTS = [...SOFTSIGN_HALF.map((t) => -t).reverse(), 0, ...SOFTSIGN_HALF];
export const SOFTSIGN_MAX_ERROR = 0.0201;
const softsign = (x: number): number => x / (1 + Math.abs(x));
const SOFTSIGN_TAIL = (1 + softsign(25)) / 2;
export const SOFTSIGN_CURVE: PiecewiseLinear = {
  knots: SOFTSIGN_KNOTS,
  values: SOFTSIGN_KNOTS.map((t, k) =>
    k === 0 ? -SOFTSIGN_TAIL : k === SOFTSIGN_KNOTS.length - 1 ? SOFTSIGN_TAIL : softsign(t),
  ),
  leftSlope: 0,
  rightSlope: 0,
};

/** Selu's defaults (the float32 values ONNX states). */
const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;

const sigmoidTanhKernel: OpKernel = { lower: (ctx, node, ins) => sigmoidTanh(ctx, node, ins[0] as Value) };

/**
 * Softmax/LogSoftmax: the circuit proves the logits; the monotone normalisation is applied off-circuit
 * (argmax unchanged), so the op is lowered only where it produces the graph's output.
 */
const softmaxKernel: OpKernel = {
  lower: (_ctx, node) =>
    fail(
      "UNSUPPORTED_OP",
      `${nodeLabel(node)}: ${node.opType} is supported only as the model's last op (normalising the proven output)`,
    ),
  asOutput: (node, logits, opset) => ({
    postprocess: node.opType === "Softmax" ? "softmax" : "logsoftmax",
    normalize: softmaxGroup(node, logits.kind === "dyn" ? logits.shape : logits.t.dims, opset),
  }),
};

export const ACTIVATION_OPS: OpTable = {
  Relu: {
    lower: (ctx, node, ins) => {
      const d = ctx.dyn(ins[0] as Value);
      return { kind: "dyn", id: ctx.relu(nodeLabel(node), d.id), shape: d.shape };
    },
  },
  LeakyRelu: { lower: (ctx, node, ins) => leakyRelu(ctx, node, ins[0] as Value) },
  Abs: {
    fold: (_ctx, _node, ins) => {
      const a = ins[0] as ConstTensor;
      return { ...a, data: a.data.map(Math.abs) };
    },
    lower: (ctx, node, ins) => abs(ctx, node, ins[0] as Value),
  },
  Clip: { lower: (ctx, node, ins) => clip(ctx, node, ins[0] as Value) },
  PRelu: { lower: (ctx, node, ins) => prelu(ctx, node, ins[0] as Value) },
  Max: {
    fold: (_ctx, node, ins) => foldMaxMin(node, ins),
    lower: (ctx, node, ins) => maxMin(ctx, node, ins),
  },
  Min: {
    fold: (_ctx, node, ins) => foldMaxMin(node, ins),
    lower: (ctx, node, ins) => maxMin(ctx, node, ins),
  },
  Sigmoid: sigmoidTanhKernel,
  Tanh: sigmoidTanhKernel,
  Elu: {
    lower: (ctx, node, ins) => {
      const alpha = attrNum(node, "alpha", 1);
      return piecewiseLinear(ctx, node, ins[0] as Value, eluCurve(alpha), Math.abs(alpha) * ELU_MAX_ERROR);
    },
  },
  Selu: {
    lower: (ctx, node, ins) => {
      const alpha = attrNum(node, "alpha", SELU_ALPHA);
      const gamma = attrNum(node, "gamma", SELU_GAMMA);
      const err = Math.abs(alpha * gamma) * ELU_MAX_ERROR;
      return piecewiseLinear(ctx, node, ins[0] as Value, eluCurve(alpha, gamma), err);
    },
  },
  Softplus: {
    lower: (ctx, node, ins) =>
      piecewiseLinear(ctx, node, ins[0] as Value, SOFTPLUS_CURVE, SOFTPLUS_MAX_ERROR),
  },
  Softsign: {
    lower: (ctx, node, ins) =>
      piecewiseLinear(ctx, node, ins[0] as Value, SOFTSIGN_CURVE, SOFTSIGN_MAX_ERROR),
  },
  Softmax: softmaxKernel,
  LogSoftmax: softmaxKernel,
};

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

function leakyRelu(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const alpha = ctx.q(attrNum(node, "alpha", 0.01));
  const r = ctx.relu(label, x.id);
  // y = alpha*x + (1 - alpha)*relu(x), at scale 2s, then rescaled.
  const acc = ctx.lincomb(
    label,
    x.shape,
    [
      { src: x.id, coef: [alpha], index: null },
      { src: r, coef: [ctx.one - alpha], index: null },
    ],
    [0n],
    2,
  );
  return { kind: "dyn", id: ctx.rescale(label, acc), shape: x.shape };
}

/** |x| = 2 relu(x) - x: one relu, exact; bounded by |x|'s own bound (not the 3 |x| the sum suggests). */
function abs(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const t = ctx.tensor(x.id);
  const r = ctx.relu(label, x.id);
  const out = ctx.newTensor(x.shape, t.scale, t.maxAbs);
  const terms: LinTerm[] = [
    { src: r, coef: [2n], index: null },
    { src: x.id, coef: [-1n], index: null },
  ];
  ctx.emit({ op: "lincomb", node: label, dst: out.id, size: numel(x.shape), terms, bias: [0n] });
  return { kind: "dyn", id: out.id, shape: x.shape };
}

function clip(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const lo = node.inputs[1] ? ctx.constInput(node, 1, "min").data[0] : attrNum(node, "min", -Infinity);
  const hi = node.inputs[2] ? ctx.constInput(node, 2, "max").data[0] : attrNum(node, "max", Infinity);
  let cur = x.id;
  // max(x, lo) = lo + relu(x - lo); min(y, hi) = hi - relu(hi - y).
  if (Number.isFinite(lo)) {
    const lq = ctx.q(lo);
    const d = ctx.lincomb(label, x.shape, [{ src: cur, coef: [1n], index: null }], [-lq], 1);
    const r = ctx.relu(label, d);
    cur = ctx.lincomb(label, x.shape, [{ src: r, coef: [1n], index: null }], [lq], 1);
  }
  if (Number.isFinite(hi)) {
    const hq = ctx.q(hi);
    const d = ctx.lincomb(label, x.shape, [{ src: cur, coef: [-1n], index: null }], [hq], 1);
    const r = ctx.relu(label, d);
    cur = ctx.lincomb(label, x.shape, [{ src: r, coef: [-1n], index: null }], [hq], 1);
  }
  return { kind: "dyn", id: cur, shape: x.shape };
}

/**
 * Sigmoid/Tanh: sum_k d_k relu(x - t_k) (+ bias), one relu per knot, rescaled once. The accumulator's bound
 * is the quantized curve's own largest |value| over the input's range (it is piecewise linear in x, so the
 * largest is at a knot or an end of the range), not the sum of the terms' bounds: the rescale then checks
 * a value in [0, 1] (Sigmoid) or [-1, 1] (Tanh) at its real width, and a product after it (GLU) is narrower.
 */
function sigmoidTanh(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const tanh = node.opType === "Tanh";
  // tanh(x) = 2 sigmoid(2x) - 1 = sum 4 DELTA_k relu(x - BREAK_k / 2) - 1.
  const terms: LinTerm[] = [];
  const knots: bigint[] = [];
  const coefs: bigint[] = [];
  for (let k = 0; k < SIGMOID_BREAKS.length; k++) {
    const t = ctx.q(tanh ? SIGMOID_BREAKS[k] / 2 : SIGMOID_BREAKS[k]);
    const d = ctx.lincomb(label, x.shape, [{ src: x.id, coef: [1n], index: null }], [-t], 1);
    const r = ctx.relu(label, d);
    const c = ctx.q(tanh ? 4 * SIGMOID_DELTAS[k] : SIGMOID_DELTAS[k]);
    terms.push({ src: r, coef: [c], index: null });
    knots.push(t);
    coefs.push(c);
  }
  const bias = tanh ? -ctx.q(1, 2) : 0n;
  const xMax = ctx.tensor(x.id).maxAbs;
  const at = (v: bigint): bigint => knots.reduce((acc, t, k) => acc + coefs[k] * (v > t ? v - t : 0n), bias);
  let maxAbs = 0n;
  for (const v of [-xMax, xMax, ...knots]) {
    if (v < -xMax || v > xMax) continue;
    const y = absBig(at(v));
    if (y > maxAbs) maxAbs = y;
  }
  const acc = ctx.newTensor(x.shape, 2, maxAbs);
  ctx.emit({
    op: "lincomb",
    node: label,
    dst: acc.id,
    size: numel(x.shape),
    terms,
    bias: [bias],
    approxError: tanh ? 2 * SIGMOID_MAX_ERROR : SIGMOID_MAX_ERROR,
  });
  return { kind: "dyn", id: ctx.rescale(label, acc.id), shape: x.shape };
}

/**
 * y = curve(x), anchored at its knot at 0: v_m + S x + sum_{t_k > 0} d_k relu(x - t_k) + sum_{t_k <= 0} d_k
 * relu(t_k - x), one relu per knot, accumulated at scale 2 and rescaled. The segment slopes are quantized
 * (not the d_k, their differences), so the quantized curve's tails have exactly the quantized tail slopes
 * and its drift from the real curve is bounded: at most 2^-(s+1) |x| (which the error bound already grants
 * the x term's rounded coefficient) plus `driftAtKnots`, computed here and added to the stated error.
 */
function piecewiseLinear(
  ctx: LoweringContext,
  node: OnnxNode,
  xv: Value,
  p: PiecewiseLinear,
  approxError: number,
): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const { knots: t, values: v } = p;
  const n = t.length;
  const m = t.indexOf(0);
  if (m < 0) throw new Error(`${node.opType}: a piecewise-linear curve needs a knot at 0`);
  // slopes[i]: left of knot i (i < n), right of the last knot (i = n).
  const slopes = [p.leftSlope];
  for (let k = 1; k < n; k++) slopes.push((v[k] - v[k - 1]) / (t[k] - t[k - 1]));
  slopes.push(p.rightSlope);
  const qs = slopes.map((s) => ctx.q(s));
  const unit = 2 ** -ctx.scaleBits;
  // |quantized curve - real curve| at each knot, less the x term's allowance; the difference is linear
  // between knots and on the tails grows no faster than that allowance, so its maximum is at a knot.
  let drift = 0;
  let acc = 0;
  for (let k = m + 1; k < n; k++) {
    acc += (Number(qs[k]) * unit - slopes[k]) * (t[k] - t[k - 1]);
    drift = Math.max(drift, Math.abs(acc) - (unit / 2) * Math.abs(t[k]));
  }
  acc = 0;
  for (let k = m - 1; k >= 0; k--) {
    acc += (Number(qs[k + 1]) * unit - slopes[k + 1]) * (t[k] - t[k + 1]);
    drift = Math.max(drift, Math.abs(acc) - (unit / 2) * Math.abs(t[k]));
  }
  const terms: LinTerm[] = [{ src: x.id, coef: [qs[m + 1]], index: null }];
  for (let k = 0; k < n; k++) {
    const delta = qs[k + 1] - qs[k];
    if (delta === 0n) continue;
    const qt = ctx.q(t[k]);
    const right = k > m;
    const shifted =
      qt === 0n && right
        ? x.id
        : ctx.lincomb(
            label,
            x.shape,
            [{ src: x.id, coef: [right ? 1n : -1n], index: null }],
            [right ? -qt : qt],
            1,
          );
    terms.push({ src: ctx.relu(label, shifted), coef: [delta], index: null });
  }
  const out = ctx.lincomb(label, x.shape, terms, [ctx.q(v[m], 2)], 2, approxError + drift);
  return { kind: "dyn", id: ctx.rescale(label, out), shape: x.shape };
}

/**
 * PRelu: y = slope*x + (1 - slope)*relu(x) with a constant slope, exact up to the slope's rounding. From
 * opset 7 the slope broadcasts to x (numpy rules, one way); before, a slope of one value is shared and a
 * 1-D slope holds one value per channel (axis 1), as PyTorch exports it.
 */
function prelu(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const slope = ctx.constInput(node, 1, "the slope");
  const total = numel(x.shape);
  let index: number[];
  if (slope.data.length === 1) {
    index = new Array<number>(total).fill(0);
  } else if (ctx.opset < 7 && slope.dims.length === 1 && slope.dims[0] === x.shape[1]) {
    const inner = numel(x.shape.slice(2));
    index = Array.from({ length: total }, (_, i) => Math.floor(i / inner) % slope.dims[0]);
  } else {
    const shape = broadcastShapes(x.shape, slope.dims);
    if (!shape || !sameShape(shape, x.shape))
      fail("UNSUPPORTED_OP", `${label}: slope [${slope.dims}] does not broadcast to the input [${x.shape}]`);
    index = broadcastIndex(x.shape, slope.dims);
  }
  const a = index.map((j) => ctx.q(slope.data[j]));
  const r = ctx.relu(label, x.id);
  const acc = ctx.lincomb(
    label,
    x.shape,
    [
      { src: x.id, coef: a, index: null },
      { src: r, coef: a.map((c) => ctx.one - c), index: null },
    ],
    [0n],
    2,
  );
  return { kind: "dyn", id: ctx.rescale(label, acc), shape: x.shape };
}

function shapeOf(v: Value): number[] {
  return v.kind === "dyn" ? v.shape : v.t.dims;
}

/** Max/Min of constants, with broadcasting. */
function foldMaxMin(node: OnnxNode, ins: (ConstTensor | undefined)[]): ConstTensor {
  const label = nodeLabel(node);
  const ts = ins.filter((t): t is ConstTensor => !!t);
  if (ts.length === 0) fail("MALFORMED_MODEL", `${label} needs at least one input`);
  const pick = node.opType === "Max" ? Math.max : Math.min;
  return ts.reduce((a, b) => {
    const shape = broadcastShapes(a.dims, b.dims);
    if (!shape) fail("MALFORMED_MODEL", `${label}: shapes [${a.dims}] and [${b.dims}] do not broadcast`);
    const ia = broadcastIndex(shape, a.dims);
    const ib = broadcastIndex(shape, b.dims);
    const data = Float64Array.from(ia, (j, i) => pick(a.data[j], b.data[ib[i]]));
    return { dims: shape, data, isInteger: a.isInteger && b.isInteger };
  });
}

/**
 * Elementwise Max/Min of two or more inputs with broadcasting, exact: the constants are folded into one,
 * then max(a, b) = b + relu(a - b) and min(a, b) = a - relu(a - b), one relu per computed input after
 * the first (and one for the constant).
 */
function maxMin(ctx: LoweringContext, node: OnnxNode, ins: (Value | undefined)[]): Value {
  const label = nodeLabel(node);
  const vals = ins.filter((v): v is Value => !!v);
  const consts = vals.flatMap((v) => (v.kind === "const" ? [v.t] : []));
  const dyns = vals.flatMap((v) => (v.kind === "dyn" ? [v] : []));
  if (dyns.length === 0) fail("MALFORMED_MODEL", `${label} has no computed input`);
  for (const d of dyns)
    if (ctx.tensor(d.id).scale !== 1) fail("UNSUPPORTED_OP", `${label}: operand scale mismatch`);
  const others: Value[] = [...dyns.slice(1)];
  if (consts.length > 0) others.push({ kind: "const", t: foldMaxMin(node, consts) });
  let a: DynValue = dyns[0];
  for (const b of others) a = maxMinPair(ctx, node, a, b);
  return { kind: "dyn", ...a };
}

function maxMinPair(ctx: LoweringContext, node: OnnxNode, a: DynValue, b: Value): DynValue {
  const label = nodeLabel(node);
  const sb = shapeOf(b);
  const shape = broadcastShapes(a.shape, sb);
  if (!shape) fail("MALFORMED_MODEL", `${label}: shapes [${a.shape}] and [${sb}] do not broadcast`);
  const ia = sameShape(a.shape, shape) ? null : broadcastIndex(shape, a.shape);
  const ib = broadcastIndex(shape, sb);
  const size = numel(shape);
  // b's part of a lincomb with coefficient `sign`: a term, or per-element constants in the bias.
  const withB = (sign: bigint, terms: LinTerm[]): { terms: LinTerm[]; bias: bigint[] } => {
    if (b.kind === "dyn") {
      const index = sameShape(sb, shape) ? null : ib;
      return { terms: [...terms, { src: b.id, coef: [sign], index }], bias: [0n] };
    }
    const bias = Array.from({ length: size }, (_, i) => sign * ctx.q(b.t.data[ib[i]]));
    return { terms, bias };
  };
  const diff = withB(-1n, [{ src: a.id, coef: [1n], index: ia }]);
  const r = ctx.relu(label, ctx.lincomb(label, shape, diff.terms, diff.bias, 1));
  const out =
    node.opType === "Max"
      ? withB(1n, [{ src: r, coef: [1n], index: null }])
      : {
          terms: [
            { src: a.id, coef: [1n], index: ia },
            { src: r, coef: [-1n], index: null },
          ],
          bias: [0n],
        };
  return { id: ctx.lincomb(label, shape, out.terms, out.bias, 1), shape };
}
