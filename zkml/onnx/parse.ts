import fs from "node:fs";
import { fail, ZkmlError } from "../errors";
import { onnxModelType, onnxTensorType } from "./onnx-schema";
import {
  AttrValue,
  ConstTensor,
  ELEM_BOOL,
  ELEM_DOUBLE,
  ELEM_FLOAT,
  ELEM_INT32,
  ELEM_INT64,
  OnnxGraph,
  OnnxNode,
  ValueInfo,
  elemTypeName,
  sizeOf,
} from "./graph";

/* The decoded protobuf is untyped; these narrow views name only the fields read below. */
type Int64 = number | { toString(): string };
interface PbTensor {
  dims?: Int64[];
  data_type?: number;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: Int64[];
  double_data?: number[];
  raw_data?: Uint8Array;
  name?: string;
  data_location?: number;
  external_data?: unknown[];
}
interface PbAttr {
  name?: string;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: PbTensor;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  type?: number;
}
interface PbValueInfo {
  name?: string;
  type?: {
    tensor_type?: { elem_type?: number; shape?: { dim?: { dim_value?: Int64; dim_param?: string }[] } };
  };
}
interface PbModel {
  producer_name?: string;
  opset_import?: { domain?: string; version?: Int64 }[];
  graph?: {
    name?: string;
    node?: {
      input?: string[];
      output?: string[];
      name?: string;
      op_type?: string;
      domain?: string;
      attribute?: PbAttr[];
    }[];
    initializer?: PbTensor[];
    input?: PbValueInfo[];
    output?: PbValueInfo[];
  };
}

function toNum(v: Int64 | undefined): number {
  if (v === undefined) return 0;
  const n = typeof v === "number" ? v : Number(v.toString());
  return n;
}

// AttributeProto.AttributeType values
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;
const ATTR_STRINGS = 8;

export function decodeTensor(t: PbTensor, what: string): ConstTensor {
  const dims = (t.dims ?? []).map(toNum);
  const n = sizeOf(dims);
  const type = t.data_type ?? 0;
  if (t.data_location === 1 || (t.external_data && t.external_data.length > 0)) {
    fail("MALFORMED_MODEL", `${what}: tensor data is stored in an external file, which is not supported`);
  }
  if (![ELEM_FLOAT, ELEM_DOUBLE, ELEM_INT64, ELEM_INT32, ELEM_BOOL].includes(type)) {
    fail(
      "MALFORMED_MODEL",
      `${what}: element type ${elemTypeName(type)} is not supported (float32/64, int32/64, bool)`,
    );
  }
  const raw = t.raw_data && t.raw_data.length > 0 ? t.raw_data : undefined;
  // Every stored element takes at least one byte or one list entry: check before allocating.
  const held = raw
    ? raw.length
    : Math.max(
        t.float_data?.length ?? 0,
        t.int32_data?.length ?? 0,
        t.int64_data?.length ?? 0,
        t.double_data?.length ?? 0,
      );
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0) || !Number.isSafeInteger(n) || n > held) {
    fail("MALFORMED_MODEL", `${what}: shape [${dims}] needs ${n} values, the tensor holds fewer`);
  }
  const out = new Float64Array(n);
  let isInteger = false;
  const view = raw ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength) : undefined;
  const need = (bytes: number): void => {
    if (raw && raw.length !== n * bytes) {
      fail(
        "MALFORMED_MODEL",
        `${what}: raw_data has ${raw.length} bytes, shape [${dims}] needs ${n * bytes}`,
      );
    }
  };
  const fromList = (list: ArrayLike<number | Int64> | undefined): void => {
    if (!list || list.length !== n) {
      fail("MALFORMED_MODEL", `${what}: holds ${list?.length ?? 0} values, shape [${dims}] needs ${n}`);
    }
    for (let i = 0; i < n; i++) out[i] = toNum(list[i] as Int64);
  };
  switch (type) {
    case ELEM_FLOAT:
      if (view) {
        need(4);
        for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      } else fromList(t.float_data);
      break;
    case ELEM_DOUBLE:
      if (view) {
        need(8);
        for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      } else fromList(t.double_data);
      break;
    case ELEM_INT64:
      isInteger = true;
      if (view) {
        need(8);
        for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(i * 8, true));
      } else fromList(t.int64_data);
      break;
    case ELEM_INT32:
    case ELEM_BOOL:
      isInteger = true;
      if (view) {
        const bytes = type === ELEM_BOOL ? 1 : 4;
        need(bytes);
        for (let i = 0; i < n; i++) out[i] = bytes === 1 ? view.getUint8(i) : view.getInt32(i * 4, true);
      } else fromList(t.int32_data);
      break;
  }
  return { dims, data: out, isInteger };
}

function decodeValueInfo(v: PbValueInfo): ValueInfo {
  const tt = v.type?.tensor_type;
  const dims = tt?.shape?.dim
    ? tt.shape.dim.map((d) =>
        d.dim_value !== undefined && d.dim_value !== null && toNum(d.dim_value) > 0
          ? toNum(d.dim_value)
          : (d.dim_param ?? null),
      )
    : null;
  return { name: v.name ?? "", elemType: tt?.elem_type ?? 0, dims };
}

function decodeAttr(a: PbAttr, where: string): AttrValue {
  const name = a.name ?? "?";
  switch (a.type) {
    case ATTR_FLOAT:
      return a.f ?? 0;
    case ATTR_INT:
      return toNum(a.i);
    case ATTR_STRING:
      return Buffer.from(a.s ?? new Uint8Array()).toString("utf8");
    case ATTR_TENSOR:
      return decodeTensor(a.t ?? {}, `${where} attribute '${name}'`);
    case ATTR_FLOATS:
      return [...(a.floats ?? [])];
    case ATTR_INTS:
      return (a.ints ?? []).map(toNum);
    case ATTR_STRINGS:
      return (a.strings ?? []).map((b) => Buffer.from(b).toString("utf8"));
    default:
      // Old exporters leave `type` unset; infer it from whichever field is present.
      if (a.ints && a.ints.length) return a.ints.map(toNum);
      if (a.floats && a.floats.length) return [...a.floats];
      if (a.strings && a.strings.length) return a.strings.map((b) => Buffer.from(b).toString("utf8"));
      if (a.t) return decodeTensor(a.t, `${where} attribute '${name}'`);
      if (a.s && a.s.length) return Buffer.from(a.s).toString("utf8");
      if (a.i !== undefined && toNum(a.i) !== 0) return toNum(a.i);
      return a.f ?? 0;
  }
}

/** Decodes ONNX protobuf bytes into the graph IR. Any decoding problem is a MALFORMED_MODEL error. */
export function parseOnnx(bytes: Uint8Array, label = "model"): OnnxGraph {
  let pb: PbModel;
  try {
    const type = onnxModelType();
    pb = type.toObject(type.decode(bytes), { defaults: false, arrays: true }) as PbModel;
  } catch (e) {
    fail("MALFORMED_MODEL", `${label} is not a valid ONNX file: ${(e as Error).message}`);
  }
  const g = pb.graph;
  if (!g || !g.node || g.node.length === 0 || !g.output || g.output.length === 0) {
    fail("MALFORMED_MODEL", `${label} is not a valid ONNX file: it has no graph, nodes or outputs`);
  }
  const opsetEntry = (pb.opset_import ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  const opset = opsetEntry ? toNum(opsetEntry.version) : 13;

  const initializers = new Map<string, ConstTensor>();
  for (const t of g.initializer ?? []) {
    const name = t.name ?? "";
    initializers.set(name, decodeTensor(t, `initializer '${name}'`));
  }
  const nodes: OnnxNode[] = g.node.map((n, idx) => {
    const name = n.name || `#${idx}`;
    const where = `${n.op_type ?? "?"} node '${name}'`;
    const attrs = new Map<string, AttrValue>();
    for (const a of n.attribute ?? []) attrs.set(a.name ?? "", decodeAttr(a, where));
    if (!n.op_type) fail("MALFORMED_MODEL", `${label}: node '${name}' has no op_type`);
    return {
      name,
      opType: n.op_type,
      domain: n.domain ?? "",
      inputs: [...(n.input ?? [])],
      outputs: [...(n.output ?? [])],
      attrs,
    };
  });
  return {
    name: g.name ?? "model",
    producer: pb.producer_name ?? "",
    opset,
    inputs: (g.input ?? []).map(decodeValueInfo).filter((v) => !initializers.has(v.name)),
    outputs: g.output.map(decodeValueInfo),
    nodes,
    initializers,
  };
}

/** Decodes a serialized TensorProto (ONNX's test data format: input_0.pb, output_0.pb). */
export function parseTensor(
  bytes: Uint8Array,
  label = "tensor",
): { name: string; elemType: number; tensor: ConstTensor } {
  let pb: PbTensor;
  try {
    const type = onnxTensorType();
    pb = type.toObject(type.decode(bytes), { defaults: false, arrays: true }) as PbTensor;
  } catch (e) {
    fail("MALFORMED_MODEL", `${label} is not a valid ONNX tensor: ${(e as Error).message}`);
  }
  return { name: pb.name ?? "", elemType: pb.data_type ?? 0, tensor: decodeTensor(pb, label) };
}

export function loadOnnx(file: string): OnnxGraph {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new ZkmlError(
      "BAD_INPUT",
      `cannot read model file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return parseOnnx(bytes, file);
}
