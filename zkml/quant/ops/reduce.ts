/** Reductions over an axis: ArgMax (comparisons; an integer index at scale 0). */
import { fail } from "../../errors";
import { OnnxNode, nodeLabel } from "../../onnx/graph";
import { normAxis, numel, strides } from "../shapes";
import { LoweringContext, OpTable, Value } from "./context";
import { attrNum, signedBits } from "./util";

export const REDUCE_OPS: OpTable = {
  ArgMax: { lower: (ctx, node, ins) => argmax(ctx, node, ins[0] as Value) },
};

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
