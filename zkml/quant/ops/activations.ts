/**
 * Activations: Relu, LeakyRelu and Clip (exact, from ReLUs), Sigmoid and Tanh (piecewise-linear, with a
 * stated error bound), Softmax and LogSoftmax (only as the model's last op, applied off-circuit).
 */
import { fail } from "../../errors";
import { OnnxNode, nodeLabel } from "../../onnx/graph";
import { LinTerm } from "../program";
import { normAxis, numel } from "../shapes";
import { LoweringContext, OpKernel, OpTable, Value } from "./context";
import { attrNum } from "./util";

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
  Clip: { lower: (ctx, node, ins) => clip(ctx, node, ins[0] as Value) },
  Sigmoid: sigmoidTanhKernel,
  Tanh: sigmoidTanhKernel,
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

function sigmoidTanh(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const tanh = node.opType === "Tanh";
  // tanh(x) = 2 sigmoid(2x) - 1 = sum 4 DELTA_k relu(x - BREAK_k / 2) - 1.
  const terms: LinTerm[] = [];
  for (let k = 0; k < SIGMOID_BREAKS.length; k++) {
    const t = ctx.q(tanh ? SIGMOID_BREAKS[k] / 2 : SIGMOID_BREAKS[k]);
    const d = ctx.lincomb(label, x.shape, [{ src: x.id, coef: [1n], index: null }], [-t], 1);
    const r = ctx.relu(label, d);
    terms.push({ src: r, coef: [ctx.q(tanh ? 4 * SIGMOID_DELTAS[k] : SIGMOID_DELTAS[k])], index: null });
  }
  const acc = ctx.lincomb(
    label,
    x.shape,
    terms,
    [tanh ? -ctx.q(1, 2) : 0n],
    2,
    tanh ? 2 * SIGMOID_MAX_ERROR : SIGMOID_MAX_ERROR,
  );
  return { kind: "dyn", id: ctx.rescale(label, acc), shape: x.shape };
}
