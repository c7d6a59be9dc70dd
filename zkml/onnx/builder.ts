import { onnxModelType } from "./onnx-schema";

/**
 * A small ONNX writer: builds single-input, single-output float models from TypeScript (used by the
 * per-op conformance tests and the benchmark's synthetic models). The encoding is standard ONNX protobuf,
 * readable by onnxruntime and by the parser alike.
 */
/** An attribute; a whole number is written as an int unless wrapped as { float }. */
export type Attr =
  | number
  | number[]
  | string
  | { float: number }
  | { floats: number[] }
  | { strings: string[] }
  | { tensor: InitTensor };

export interface InitTensor {
  dims: number[];
  data: number[] | Float32Array;
  type?: "float" | "int64" | "bool";
}

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  /** The op's domain: "" (default ONNX) or "ai.onnx.ml". */
  domain?: string;
  attrs?: Record<string, Attr>;
}

export interface ModelSpec {
  input: { name: string; dims: (number | string)[] };
  output: { name: string; dims?: (number | string)[]; elemType?: number };
  /** Further graph outputs after `output` (a classifier's probabilities after its label). */
  moreOutputs?: { name: string; dims?: (number | string)[]; elemType?: number }[];
  nodes: NodeSpec[];
  initializers?: Record<string, InitTensor>;
  opset?: number;
}

function tensorProto(name: string, t: InitTensor): Record<string, unknown> {
  const type = t.type ?? "float";
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) throw new Error(`tensor ${name}: ${t.data.length} values for dims [${t.dims}]`);
  if (type === "bool")
    return {
      name,
      dims: t.dims,
      data_type: 9,
      raw_data: Buffer.from(Array.from(t.data, (v) => (v ? 1 : 0))),
    };
  if (type === "int64") {
    const buf = Buffer.alloc(8 * n);
    Array.from(t.data).forEach((v, i) => buf.writeBigInt64LE(BigInt(v), i * 8));
    return { name, dims: t.dims, data_type: 7, raw_data: buf };
  }
  const f = Float32Array.from(t.data);
  return { name, dims: t.dims, data_type: 1, raw_data: Buffer.from(f.buffer, f.byteOffset, f.byteLength) };
}

function attrProto(name: string, a: Attr): Record<string, unknown> {
  if (typeof a === "string") return { name, type: 3, s: Buffer.from(a) };
  if (typeof a === "number") return Number.isInteger(a) ? { name, type: 2, i: a } : { name, type: 1, f: a };
  if (Array.isArray(a)) return { name, type: 7, ints: a };
  if ("float" in a) return { name, type: 1, f: a.float };
  if ("floats" in a) return { name, type: 6, floats: a.floats };
  if ("strings" in a) return { name, type: 8, strings: a.strings.map((x) => Buffer.from(x)) };
  return { name, type: 4, t: tensorProto(name, a.tensor) };
}

function valueInfo(
  name: string,
  dims: (number | string)[] | undefined,
  elemType = 1,
): Record<string, unknown> {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: elemType,
        shape: dims
          ? { dim: dims.map((d) => (typeof d === "number" ? { dim_value: d } : { dim_param: d })) }
          : undefined,
      },
    },
  };
}

/** Encodes a model spec as ONNX protobuf bytes. */
export function buildOnnx(spec: ModelSpec): Uint8Array {
  const type = onnxModelType();
  const msg = type.fromObject({
    ir_version: 8,
    producer_name: "opg-zkml-builder",
    opset_import: [
      { domain: "", version: spec.opset ?? 13 },
      ...(spec.nodes.some((n) => n.domain === "ai.onnx.ml") ? [{ domain: "ai.onnx.ml", version: 3 }] : []),
    ],
    graph: {
      name: "model",
      node: spec.nodes.map((n, i) => ({
        name: n.name ?? `${n.op}_${i}`,
        op_type: n.op,
        ...(n.domain ? { domain: n.domain } : {}),
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attrProto(k, v)),
      })),
      initializer: Object.entries(spec.initializers ?? {}).map(([k, t]) => tensorProto(k, t)),
      input: [valueInfo(spec.input.name, spec.input.dims)],
      output: [spec.output, ...(spec.moreOutputs ?? [])].map((o) =>
        valueInfo(o.name, o.dims, o.elemType ?? 1),
      ),
    },
  });
  return type.encode(msg).finish();
}

/** Deterministic pseudo-random numbers (mulberry32) for reproducible synthetic weights. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(n: number, rand: () => number, scale = 1): number[] {
  return Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

/** A dense ReLU MLP (Gemm layers, the last without ReLU) with uniform random weights in +-1/sqrt(fan-in). */
export function mlpSpec(sizes: number[], seed = 1): ModelSpec {
  const rand = seededRandom(seed);
  const nodes: NodeSpec[] = [];
  const initializers: Record<string, InitTensor> = {};
  let cur = "input";
  for (let l = 0; l + 1 < sizes.length; l++) {
    const [k, n] = [sizes[l], sizes[l + 1]];
    const bound = 1 / Math.sqrt(k);
    initializers[`w${l}`] = { dims: [n, k], data: randomArray(n * k, rand, bound) };
    initializers[`b${l}`] = { dims: [n], data: randomArray(n, rand, bound) };
    const last = l + 2 === sizes.length;
    const out = last ? "output" : `h${l}`;
    nodes.push({
      op: "Gemm",
      inputs: [cur, `w${l}`, `b${l}`],
      outputs: [last ? out : `${out}_pre`],
      attrs: { transB: 1 },
    });
    if (!last) nodes.push({ op: "Relu", inputs: [`${out}_pre`], outputs: [out] });
    cur = out;
  }
  return {
    input: { name: "input", dims: [1, sizes[0]] },
    output: { name: "output", dims: [1, sizes[sizes.length - 1]] },
    nodes,
    initializers,
  };
}
