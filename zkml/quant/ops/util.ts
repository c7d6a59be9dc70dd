/** Helpers the op families share: attribute readers, big-integer bounds and constant builders. */
import { fail } from "../../errors";
import { AttrValue, ConstTensor, OnnxNode, nodeLabel } from "../../onnx/graph";

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

export function absBig(v: bigint): bigint {
  return v < 0n ? -v : v;
}

export function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

export function roundToInt(x: number): bigint {
  return BigInt(Math.round(x));
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function isTensor(v: AttrValue | undefined): v is ConstTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function scalar(v: number, isInteger: boolean): ConstTensor {
  return { dims: [], data: Float64Array.of(v), isInteger };
}

/** A 1-D constant from a list attribute (numbers; a string list would read as NaN and fail downstream). */
export function vec(v: readonly (number | string)[], isInteger: boolean): ConstTensor {
  return { dims: [v.length], data: Float64Array.from(v, Number), isInteger };
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
  if (!Array.isArray(v) || v.some((x) => typeof x !== "number"))
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: attribute '${name}' should be a list of numbers`);
  return v as number[];
}

/** A list-of-strings attribute (ONNX-ML's nodes_modes, classlabels_strings...). */
export function attrStrings(node: OnnxNode, name: string, dflt: string[]): string[] {
  const v = node.attrs.get(name);
  if (v === undefined) return dflt;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string"))
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: attribute '${name}' should be a list of strings`);
  return v as string[];
}

export function attrStr(node: OnnxNode, name: string, dflt: string): string {
  const v = node.attrs.get(name);
  if (v === undefined) return dflt;
  if (typeof v !== "string")
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: attribute '${name}' should be a string`);
  return v;
}
