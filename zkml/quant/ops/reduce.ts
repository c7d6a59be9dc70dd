/**
 * Reductions: ArgMax over an axis (comparisons; an integer index at scale 0), and ReduceSum (free: a linear
 * combination), ReduceMean (a sum times round(2^s / count), rescaled once, as AveragePool), ReduceMax and
 * ReduceMin (comparisons, as MaxPool) over any set of axes.
 */
import { fail } from "../../errors";
import { OnnxNode, nodeLabel } from "../../onnx/graph";
import { normAxis, numel, strides } from "../shapes";
import { LoweringContext, OpKernel, OpTable, Value } from "./context";
import { sumTimesReciprocal } from "./conv";
import { attrInts, attrNum, signedBits } from "./util";

const reduceKernel: OpKernel = { lower: (ctx, node, ins) => reduce(ctx, node, ins) };

export const REDUCE_OPS: OpTable = {
  ArgMax: { lower: (ctx, node, ins) => argmax(ctx, node, ins[0] as Value) },
  ReduceSum: reduceKernel,
  ReduceMean: reduceKernel,
  ReduceMax: reduceKernel,
  ReduceMin: reduceKernel,
};

/** For each element of the (keepdims) output, the flat input indices it reduces, in row-major order. */
function reductionGroups(shape: readonly number[], axes: ReadonlySet<number>): number[][] {
  const st = strides(shape);
  const outShape = shape.map((d, i) => (axes.has(i) ? 1 : d));
  const inner = shape.map((d, i) => (axes.has(i) ? d : 1));
  const offsets: number[] = [];
  const walk = (d: number, base: number): void => {
    if (d === shape.length) offsets.push(base);
    else for (let k = 0; k < inner[d]; k++) walk(d + 1, base + k * st[d]);
  };
  walk(0, 0);
  const groups: number[][] = [];
  const coord = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < numel(outShape); i++) {
    const base = coord.reduce((a, c, d) => a + c * st[d], 0);
    groups.push(offsets.map((o) => base + o));
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++coord[d] < outShape[d]) break;
      coord[d] = 0;
    }
  }
  return groups;
}

function reduce(ctx: LoweringContext, node: OnnxNode, ins: (Value | undefined)[]): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(ins[0] as Value);
  const r = x.shape.length;
  // Axes are an attribute, or from opset 13 (ReduceSum) or 18 (the others) a constant input 1.
  let axes = node.inputs[1] ? [...ctx.constInput(node, 1, "axes").data] : attrInts(node, "axes", []);
  if (axes.length === 0) {
    // Empty axes: every axis, or the identity with noop_with_empty_axes=1 (where the opset has it).
    if (attrNum(node, "noop_with_empty_axes", 0) === 1) return { kind: "dyn", ...x };
    axes = x.shape.map((_, i) => i);
  }
  const set = new Set(axes.map((a) => normAxis(a, r)));
  if ([...set].some((a) => a < 0 || a >= r))
    fail("MALFORMED_MODEL", `${label}: axes [${axes}] out of range for rank ${r}`);
  const keep = attrNum(node, "keepdims", 1) === 1;
  const shape = keep ? x.shape.map((d, i) => (set.has(i) ? 1 : d)) : x.shape.filter((_, i) => !set.has(i));
  const groups = reductionGroups(x.shape, set);
  const src = ctx.tensor(x.id);
  if (node.opType === "ReduceSum") {
    // One term per position in the group: sum_k src[groups[i][k]], free in R1CS, at the input's scale.
    const terms = groups[0].map((_, k) => ({ src: x.id, coef: [1n], index: groups.map((g) => g[k]) }));
    return { kind: "dyn", id: ctx.lincomb(label, shape, terms, [0n], src.scale), shape };
  }
  if (node.opType === "ReduceMean") {
    const counts = groups.map((g) => g.length);
    return { kind: "dyn", id: sumTimesReciprocal(ctx, label, x.id, shape, groups, counts), shape };
  }
  // max over each group; min(x) = -max(-x), the negations free in R1CS.
  const negate = node.opType === "ReduceMin";
  const from = negate
    ? ctx.lincomb(label, x.shape, [{ src: x.id, coef: [-1n], index: null }], [0n], src.scale)
    : x.id;
  const out = ctx.newTensor(shape, src.scale, src.maxAbs);
  ctx.emit({
    op: "maxpool",
    node: label,
    src: from,
    dst: out.id,
    windows: groups,
    bits: signedBits(2n * src.maxAbs),
  });
  const id = negate
    ? ctx.lincomb(label, shape, [{ src: out.id, coef: [-1n], index: null }], [0n], src.scale)
    : out.id;
  return { kind: "dyn", id, shape };
}

function argmax(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
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
  const src = ctx.tensor(x.id);
  const out = ctx.newTensor(shape, 0, BigInt(x.shape[axis]));
  ctx.emit({
    op: "argmax",
    node: label,
    src: x.id,
    dst: out.id,
    groups,
    bits: signedBits(2n * src.maxAbs + 1n),
  });
  return { kind: "dyn", id: out.id, shape };
}
