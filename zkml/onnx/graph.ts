/** The graph IR the ONNX parser produces: names, static data, nothing ONNX-protobuf specific. */

/** A constant tensor. Integer tensors (shapes, indices) are held as float64 too: exact below 2^53. */
export interface ConstTensor {
  dims: number[];
  data: Float64Array;
  isInteger: boolean;
}

export type AttrValue = number | number[] | string | string[] | ConstTensor;

export interface OnnxNode {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Map<string, AttrValue>;
}

/** A dimension is a number when static, a string (dim_param) or null when not. */
export interface ValueInfo {
  name: string;
  elemType: number;
  dims: (number | string | null)[] | null;
}

export interface OnnxGraph {
  name: string;
  producer: string;
  opset: number;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: OnnxNode[];
  initializers: Map<string, ConstTensor>;
}

export const ELEM_FLOAT = 1;
export const ELEM_DOUBLE = 11;
export const ELEM_INT32 = 6;
export const ELEM_INT64 = 7;
export const ELEM_BOOL = 9;

export function elemTypeName(t: number): string {
  const names: Record<number, string> = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
  };
  return names[t] ?? `type ${t}`;
}

export function sizeOf(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function nodeLabel(node: Pick<OnnxNode, "name" | "opType" | "outputs">): string {
  const name = node.name || node.outputs[0] || "?";
  return `${node.opType} node '${name}'`;
}
