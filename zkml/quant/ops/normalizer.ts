/**
 * ONNX-ML Normalizer, as onnxruntime computes it: per row of a [C] or [N, C] input, y = x / n with n the
 * row's max (MAX: the signed maximum, not |x|), sum |x_i| (L1) or sqrt(sum x_i^2) (L2); a row whose n is 0
 * passes through unchanged. The output is at scale 1.
 *
 * Lowering: the divisor per row, then one `divide` op (a rounded quotient proven by q D plus range checks):
 * - MAX: the row's MaxN chain; the divisor may be negative, so the divide takes its sign bit (negating the
 *   numerator and divisor) and passes a zero-max row through;
 * - L1: |x| = 2 relu(x) - x, a free sum;
 * - L2: x_i^2 (one product each) summed at scale 2s, then r = floor(sqrt(S 2^2s)): the norm at scale 2s,
 *   so the quotient x 2^2s / r keeps s fractional bits even for rows of small norm.
 * L1 and L2 divisors are non-negative by construction and 0 only for an all-zero row (quotients 0 = x).
 */
import { fail } from "../../errors";
import { OnnxNode, nodeLabel } from "../../onnx/graph";
import { isqrt } from "../executor";
import { LinTerm } from "../program";
import { LoweringContext, Value } from "./context";
import { bitLength, maxBig, signedBits } from "./util";

export type NormKind = "MAX" | "L1" | "L2";

/** Largest width sum a divide may reach (2 N 2^shift, D and q D stay below 2^240 << p). */
const MAX_DIVIDE_BITS = 240;

export function normalizer(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const normAttr = node.attrs.get("norm") ?? "MAX";
  if (normAttr !== "MAX" && normAttr !== "L1" && normAttr !== "L2")
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: norm '${String(normAttr)}' is not MAX, L1 or L2`);
  const norm: NormKind = normAttr;
  const x0 = ctx.dyn(xv);
  if (x0.shape.length !== 1 && x0.shape.length !== 2)
    fail("UNSUPPORTED_OP", `${label}: the input must be [N, C] or [C], got [${x0.shape}]`);
  const [rows, cols] = x0.shape.length === 2 ? [x0.shape[0], x0.shape[1]] : [1, x0.shape[0]];
  if (rows * cols === 0) fail("UNSUPPORTED_OP", `${label}: empty input [${x0.shape}]`);
  let x = ctx.rescale(label, x0.id);
  if (ctx.tensor(x).scale === 0)
    x = ctx.lincomb(label, x0.shape, [{ src: x, coef: [ctx.one], index: null }], [0n], 1);
  const xMax = ctx.tensor(x).maxAbs;
  const rowIndex = (j: number): number[] => Array.from({ length: rows }, (_, r) => r * cols + j);

  let den: number;
  if (norm === "MAX") {
    const out = ctx.newTensor([rows], 1, xMax);
    ctx.emit({
      op: "maxpool",
      node: label,
      src: x,
      dst: out.id,
      windows: Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, j) => r * cols + j)),
      bits: signedBits(2n * xMax),
    });
    den = out.id;
  } else if (norm === "L1") {
    const pos = ctx.relu(label, x);
    const terms: LinTerm[] = [];
    for (let j = 0; j < cols; j++)
      terms.push({ src: pos, coef: [2n], index: rowIndex(j) }, { src: x, coef: [-1n], index: rowIndex(j) });
    const out = ctx.newTensor([rows], 1, BigInt(cols) * xMax);
    ctx.emit({ op: "lincomb", node: label, dst: out.id, size: rows, terms, bias: [0n] });
    den = out.id;
  } else {
    const all = Array.from({ length: rows * cols }, (_, i) => i);
    const squares = ctx.newTensor([rows * cols], 2, xMax * xMax);
    ctx.emit({ op: "mul", node: label, a: x, b: x, ia: all, ib: all, dst: squares.id });
    const sumMax = BigInt(cols) * xMax * xMax;
    const sum = ctx.newTensor([rows], 2, sumMax);
    const terms: LinTerm[] = Array.from({ length: cols }, (_, j) => ({
      src: squares.id,
      coef: [1n],
      index: rowIndex(j),
    }));
    ctx.emit({ op: "lincomb", node: label, dst: sum.id, size: rows, terms, bias: [0n] });
    const shift = 2 * ctx.scaleBits;
    const rootMax = isqrt(sumMax << BigInt(shift));
    const root = ctx.newTensor([rows], 2, rootMax);
    ctx.emit({
      op: "isqrt",
      node: label,
      src: sum.id,
      dst: root.id,
      shift,
      bits: Math.max(bitLength(rootMax), 1),
    });
    den = root.id;
  }

  // y 2^s = x 2^s / (d 2^(s * scale(d))) * 2^(s * scale(d)): the shift restores the divisor's scale
  const shift = ctx.scaleBits * ctx.tensor(den).scale;
  const signed = norm === "MAX";
  const denMax = ctx.tensor(den).maxAbs;
  // |x| <= D for L1 and L2 (x 2^s <= r for L2), so |q| <= 2^s; MAX's quotient is bounded only by |x| 2^s
  const quotMax = signed ? maxBig(xMax << BigInt(ctx.scaleBits), 1n) : ctx.one;
  const remBits = bitLength(2n * maxBig(denMax, 1n));
  const quotBits = signedBits(quotMax);
  if (shift + quotBits + 2 * remBits > MAX_DIVIDE_BITS || signedBits(xMax) + shift + 2 > MAX_DIVIDE_BITS)
    fail("OUT_OF_RANGE", `${label}: the division's values would exceed ${MAX_DIVIDE_BITS} bits`);
  const out = ctx.newTensor(x0.shape, 1, maxBig(quotMax, xMax));
  ctx.emit({
    op: "divide",
    node: label,
    src: x,
    den,
    dst: out.id,
    rows,
    cols,
    shift,
    signed,
    denBits: Math.max(signedBits(denMax), 2),
    remBits,
    quotBits,
  });
  return { kind: "dyn", id: out.id, shape: x0.shape };
}
