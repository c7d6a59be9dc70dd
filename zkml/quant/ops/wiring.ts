/**
 * Wiring: ops that move, copy or relabel values without arithmetic (Reshape, Flatten, Squeeze, Unsqueeze,
 * Transpose, Concat, Split, Slice, Tile, Pad, Identity, Dropout, Cast), and the constant ops of exporters' shape
 * subgraphs (Constant, Shape, ConstantOfShape, Gather). A relabelling reuses the tensor; a move is a gather,
 * free in R1CS.
 */
import { fail } from "../../errors";
import { ConstTensor, OnnxNode, nodeLabel } from "../../onnx/graph";
import { normAxis, numel, strides, transposeIndex } from "../shapes";
import { LoweringContext, OpKernel, OpTable, Value } from "./context";
import { absBig, attrInts, attrNum, attrStr, isTensor, maxBig, scalar, vec } from "./util";

const squeezeKernel: OpKernel = {
  fold: (_ctx, node, ins) => {
    const a = ins[0] as ConstTensor;
    return { ...a, dims: squeezeShape(node.opType, a.dims, axesOf(node, null, ins), node) };
  },
  lower: (ctx, node, ins) => {
    const d = ctx.dyn(ins[0] as Value);
    const axes = axesOf(node, ctx);
    return { kind: "dyn", id: d.id, shape: squeezeShape(node.opType, d.shape, axes, node) };
  },
};

const passThrough = (ctx: LoweringContext, node: OnnxNode, ins: (Value | undefined)[]) => {
  if (node.opType !== "Dropout") return ins[0] as Value;
  checkInferenceDropout(ctx, node);
  const outputs: (Value | undefined)[] = [ins[0] as Value];
  // In inference mode the mask, where asked for, keeps everything.
  if (node.outputs[1]) {
    const v = ins[0] as Value;
    const dims = v.kind === "dyn" ? v.shape : v.t.dims;
    outputs[1] = {
      kind: "const",
      t: { dims, data: new Float64Array(numel(dims)).fill(1), isInteger: true },
    };
  }
  return outputs;
};

export const WIRING_OPS: OpTable = {
  Constant: { always: (_ctx, node) => constant(node) },
  Shape: { always: (_ctx, node, ins) => shapeOf(node, ins[0] as Value) },
  Identity: { always: passThrough },
  Dropout: { always: passThrough },
  ConstantOfShape: {
    fold: (_ctx, node, ins) => {
      const a = ins[0] as ConstTensor;
      const v = node.attrs.get("value");
      const fill = isTensor(v) ? v.data[0] : 0;
      const dims = [...a.data];
      return {
        dims,
        data: new Float64Array(numel(dims)).fill(fill),
        isInteger: isTensor(v) ? v.isInteger : false,
      };
    },
  },
  Gather: { fold: (_ctx, node, ins) => foldGather(node, ins) },
  Cast: {
    fold: (_ctx, node, ins) => {
      const a = ins[0] as ConstTensor;
      const to = attrNum(node, "to", 1);
      const integer = to !== 1 && to !== 11 && to !== 10;
      return { dims: a.dims, data: integer ? a.data.map(Math.trunc) : a.data, isInteger: integer };
    },
    lower: (_ctx, node, ins) => {
      const to = attrNum(node, "to", 1);
      if (to !== 1 && to !== 11)
        fail("UNSUPPORTED_OP", `${nodeLabel(node)}: casting a computed tensor to a non-float type`);
      return ins[0] as Value;
    },
  },
  Flatten: {
    fold: (_ctx, node, ins) => {
      const a = ins[0] as ConstTensor;
      const axis = normAxis(attrNum(node, "axis", 1), a.dims.length);
      return { ...a, dims: [numel(a.dims.slice(0, axis)), numel(a.dims.slice(axis))] };
    },
    lower: (ctx, node, ins) => {
      const d = ctx.dyn(ins[0] as Value);
      const axis = normAxis(attrNum(node, "axis", 1), d.shape.length);
      return {
        kind: "dyn",
        id: d.id,
        shape: [numel(d.shape.slice(0, axis)), numel(d.shape.slice(axis))],
      };
    },
  },
  Reshape: {
    fold: (_ctx, node, ins) => {
      const a = ins[0] as ConstTensor;
      return {
        ...a,
        dims: reshapeTarget(a.dims, ins[1] ? [...ins[1].data] : attrInts(node, "shape", []), node),
      };
    },
    lower: (ctx, node, ins) => {
      const d = ctx.dyn(ins[0] as Value);
      // Before opset 5 the target shape is an attribute.
      const target = node.inputs[1]
        ? [...ctx.constInput(node, 1, "the target shape").data]
        : attrInts(node, "shape", []);
      return { kind: "dyn", id: d.id, shape: reshapeTarget(d.shape, target, node) };
    },
  },
  Squeeze: squeezeKernel,
  Unsqueeze: squeezeKernel,
  Transpose: {
    fold: (_ctx, node, ins) => {
      const a = ins[0] as ConstTensor;
      const perm = attrInts(node, "perm", [...a.dims.keys()].reverse());
      const idx = transposeIndex(a.dims, perm);
      return {
        dims: perm.map((p) => a.dims[p]),
        data: Float64Array.from(idx, (j) => a.data[j]),
        isInteger: a?.isInteger ?? false,
      };
    },
    lower: (ctx, node, ins) => {
      const d = ctx.dyn(ins[0] as Value);
      const perm = attrInts(node, "perm", [...d.shape.keys()].reverse());
      const shape = perm.map((p) => d.shape[p]);
      const id = ctx.gather(nodeLabel(node), shape, [{ src: d.id, index: transposeIndex(d.shape, perm) }]);
      return { kind: "dyn", id, shape };
    },
  },
  Slice: {
    fold: (_ctx, node, ins) => {
      const a = ins[0] as ConstTensor;
      const { shape, index } = sliceIndex(node, a.dims, null, ins);
      return {
        dims: shape,
        data: Float64Array.from(index, (j) => a.data[j]),
        isInteger: a?.isInteger ?? false,
      };
    },
    lower: (ctx, node, ins) => {
      const x = ctx.dyn(ins[0] as Value);
      const { shape, index } = sliceIndex(node, x.shape, ctx);
      return { kind: "dyn", id: ctx.gather(nodeLabel(node), shape, [{ src: x.id, index }]), shape };
    },
  },
  Concat: {
    fold: (_ctx, node, ins) => foldConcat(node, ins),
    lower: (ctx, node, ins) => concat(ctx, node, ins as Value[]),
  },
  Pad: { lower: (ctx, node, ins) => pad(ctx, node, ins[0] as Value) },
  Split: { always: (ctx, node, ins) => split(ctx, node, ins[0] as Value) },
  Tile: {
    fold: (_ctx, node, ins) => {
      const a = ins[0] as ConstTensor;
      const { shape, index } = tileIndex(node, a.dims, [...(ins[1] as ConstTensor).data]);
      return { dims: shape, data: Float64Array.from(index, (j) => a.data[j]), isInteger: a.isInteger };
    },
    lower: (ctx, node, ins) => {
      const x = ctx.dyn(ins[0] as Value);
      const repeats = [...ctx.constInput(node, 1, "the repeats").data];
      const { shape, index } = tileIndex(node, x.shape, repeats);
      return { kind: "dyn", id: ctx.gather(nodeLabel(node), shape, [{ src: x.id, index }]), shape };
    },
  },
};

/**
 * Split along `axis` (default 0): sizes from the `split` input (opset 13 on, and opset 1's optional
 * second input) or attribute (opsets 2-12); without them, equal parts, one per output (from opset 18,
 * `num_outputs` parts of ceil(d / num_outputs), the last one smaller). A computed input is split into
 * gathers (free); a constant one into constants.
 */
function split(ctx: LoweringContext, node: OnnxNode, xv: Value): Value[] {
  const label = nodeLabel(node);
  const shape = xv.kind === "dyn" ? xv.shape : xv.t.dims;
  const r = shape.length;
  const rawAxis = attrNum(node, "axis", 0);
  const axis = normAxis(rawAxis, r);
  if (!Number.isInteger(axis) || axis < 0 || axis >= r)
    fail("MALFORMED_MODEL", `${label}: axis ${rawAxis} is out of range for rank ${r}`);
  const d = shape[axis];
  const count = node.outputs.length;
  let sizes: number[];
  if (node.inputs[1]) sizes = [...ctx.constInput(node, 1, "the split sizes").data];
  else if (node.attrs.has("split")) sizes = attrInts(node, "split", []);
  else if (node.attrs.has("num_outputs")) {
    const parts = attrNum(node, "num_outputs", count);
    const each = Math.ceil(d / parts);
    sizes = Array.from({ length: parts }, (_, i) => Math.max(0, Math.min(each, d - i * each)));
  } else {
    if (d % count !== 0)
      fail("MALFORMED_MODEL", `${label}: axis size ${d} does not split into ${count} equal parts`);
    sizes = new Array<number>(count).fill(d / count);
  }
  if (sizes.length !== count || sizes.some((v) => v < 0) || sizes.reduce((a, b) => a + b, 0) !== d)
    fail("MALFORMED_MODEL", `${label}: split sizes [${sizes}] for ${count} outputs of an axis of ${d}`);
  const outer = numel(shape.slice(0, axis));
  const inner = numel(shape.slice(axis + 1));
  let start = 0;
  return sizes.map((size) => {
    const index: number[] = [];
    for (let o = 0; o < outer; o++)
      for (let i = 0; i < size * inner; i++) index.push((o * d + start) * inner + i);
    start += size;
    const partShape = [...shape];
    partShape[axis] = size;
    if (xv.kind === "const") {
      const t = xv.t;
      return {
        kind: "const",
        t: { dims: partShape, data: Float64Array.from(index, (j) => t.data[j]), isInteger: t.isInteger },
      };
    }
    return { kind: "dyn", id: ctx.gather(label, partShape, [{ src: xv.id, index }]), shape: partShape };
  });
}

/** Tile (opset 6 on): the output repeats the input `repeats[i]` times along each axis i. */
function tileIndex(node: OnnxNode, shape: number[], repeats: number[]): { shape: number[]; index: number[] } {
  const label = nodeLabel(node);
  if (node.inputs.length > 2)
    fail("UNSUPPORTED_OP", `${label}: Tile with tiles and axis inputs (opset 1) is not supported`);
  if (repeats.length !== shape.length || repeats.some((v) => !Number.isInteger(v) || v < 0))
    fail("MALFORMED_MODEL", `${label}: repeats [${repeats}] for an input of rank ${shape.length}`);
  const out = shape.map((v, i) => v * repeats[i]);
  const inStrides = strides(shape);
  const index: number[] = [];
  const coord = new Array<number>(out.length).fill(0);
  const total = numel(out);
  for (let i = 0; i < total; i++) {
    index.push(coord.reduce((acc, c, dd) => acc + (c % shape[dd]) * inStrides[dd], 0));
    for (let dd = out.length - 1; dd >= 0; dd--) {
      if (++coord[dd] < out[dd]) break;
      coord[dd] = 0;
    }
  }
  return { shape: out, index };
}

function constant(node: OnnxNode): Value {
  const t = node.attrs.get("value");
  const vf = node.attrs.get("value_float");
  const vi = node.attrs.get("value_int");
  const vfs = node.attrs.get("value_floats");
  const vis = node.attrs.get("value_ints");
  if (isTensor(t)) return { kind: "const", t };
  if (typeof vf === "number") return { kind: "const", t: scalar(vf, false) };
  if (typeof vi === "number") return { kind: "const", t: scalar(vi, true) };
  if (Array.isArray(vfs)) return { kind: "const", t: vec(vfs, false) };
  if (Array.isArray(vis)) return { kind: "const", t: vec(vis, true) };
  return fail(
    "UNSUPPORTED_ATTRIBUTE",
    `${nodeLabel(node)}: only value/value_float(s)/value_int(s) constants are supported`,
  );
}

function shapeOf(node: OnnxNode, v: Value): Value {
  const shape = v.kind === "const" ? v.t.dims : v.shape;
  const r = shape.length;
  let start = normAxis(attrNum(node, "start", 0), r);
  let end = node.attrs.has("end") ? normAxis(attrNum(node, "end", r), r) : r;
  start = Math.max(0, Math.min(r, start));
  end = Math.max(0, Math.min(r, end));
  return { kind: "const", t: vec(shape.slice(start, end), true) };
}

/**
 * Dropout is the identity only in inference mode. Before opset 7 the mode is the `is_test` attribute
 * (default 0: training); from opset 12 it is the `training_mode` input (default false), and training
 * with a ratio above 0 drops values at random: nothing a circuit can reproduce.
 */
function checkInferenceDropout(ctx: LoweringContext, node: OnnxNode): void {
  const label = nodeLabel(node);
  if (ctx.opset < 7 && attrNum(node, "is_test", 0) === 0) {
    fail(
      "UNSUPPORTED_ATTRIBUTE",
      `${label}: is_test=0 (training mode, opset ${ctx.opset}) drops values at random`,
    );
  }
  if (!node.inputs[2]) return;
  const training = ctx.constInput(node, 2, "training_mode").data[0] !== 0;
  const ratio = node.inputs[1] ? ctx.constInput(node, 1, "ratio").data[0] : 0.5;
  if (training && ratio !== 0) {
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: training_mode=true with ratio ${ratio} drops values at random`);
  }
}

function foldGather(node: OnnxNode, ins: (ConstTensor | undefined)[]): ConstTensor {
  const a = ins[0] as ConstTensor;
  const idx = ins[1] as ConstTensor;
  const axis = normAxis(attrNum(node, "axis", 0), a.dims.length);
  const outer = numel(a.dims.slice(0, axis));
  const inner = numel(a.dims.slice(axis + 1));
  const n = a.dims[axis];
  const data: number[] = [];
  for (let o = 0; o < outer; o++)
    for (const raw of idx.data) {
      const k = raw < 0 ? raw + n : raw;
      for (let i = 0; i < inner; i++) data.push(a.data[(o * n + k) * inner + i]);
    }
  return {
    dims: [...a.dims.slice(0, axis), ...idx.dims, ...a.dims.slice(axis + 1)],
    data: Float64Array.from(data),
    isInteger: a?.isInteger ?? false,
  };
}

function foldConcat(node: OnnxNode, ins: (ConstTensor | undefined)[]): ConstTensor {
  const a = ins[0] as ConstTensor;
  const parts = ins as ConstTensor[];
  const r = a.dims.length;
  const axis = normAxis(attrNum(node, "axis", 0), r);
  const shape = [...a.dims];
  shape[axis] = parts.reduce((s, p) => s + p.dims[axis], 0);
  const outer = numel(shape.slice(0, axis));
  const data: number[] = [];
  for (let o = 0; o < outer; o++)
    for (const p of parts) {
      const inner = numel(p.dims.slice(axis));
      for (let i = 0; i < inner; i++) data.push(p.data[o * inner + i]);
    }
  return { dims: shape, data: Float64Array.from(data), isInteger: parts.every((p) => p.isInteger) };
}

function reshapeTarget(inShape: number[], target: number[], node: OnnxNode): number[] {
  const allowZero = attrNum(node, "allowzero", 0) === 1;
  const out = target.map((d, i) => (d === 0 && !allowZero ? inShape[i] : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = numel(inShape);
  const neg = out.filter((d) => d === -1).length;
  if (neg > 1) fail("MALFORMED_MODEL", `${nodeLabel(node)}: more than one -1 in the target shape`);
  const res = out.map((d) => (d === -1 ? total / known : d));
  if (numel(res) !== total || res.some((d) => !Number.isInteger(d))) {
    fail("MALFORMED_MODEL", `${nodeLabel(node)}: cannot reshape [${inShape}] to [${target}]`);
  }
  return res;
}

/** Squeeze/Unsqueeze axes: the attribute (before opset 13) or input 1 (constant). */
function axesOf(
  node: OnnxNode,
  ctx: LoweringContext | null,
  consts?: (ConstTensor | undefined)[],
): number[] | null {
  if (node.attrs.has("axes")) return attrInts(node, "axes", []);
  if (node.inputs[1]) {
    if (consts) return [...(consts[1] as ConstTensor).data];
    return [...(ctx as LoweringContext).constInput(node, 1, "axes").data];
  }
  return null;
}

function squeezeShape(op: string, shape: number[], axes: number[] | null, node: OnnxNode): number[] {
  if (op === "Squeeze") {
    const ax = axes
      ? axes.map((a) => normAxis(a, shape.length))
      : shape.flatMap((d, i) => (d === 1 ? [i] : []));
    for (const a of ax) if (shape[a] !== 1) fail("MALFORMED_MODEL", `${nodeLabel(node)}: axis ${a} is not 1`);
    return shape.filter((_, i) => !ax.includes(i));
  }
  if (!axes) fail("MALFORMED_MODEL", `${nodeLabel(node)}: Unsqueeze without axes`);
  const r = shape.length + axes.length;
  const ax = axes.map((a) => normAxis(a, r)).sort((a, b) => a - b);
  const out = [...shape];
  for (const a of ax) out.splice(a, 0, 1);
  return out;
}

function sliceIndex(
  node: OnnxNode,
  shape: number[],
  ctx: LoweringContext | null,
  consts?: (ConstTensor | undefined)[],
): { shape: number[]; index: number[] } {
  const r = shape.length;
  const read = (i: number, attr: string): number[] | undefined => {
    if (node.attrs.has(attr)) return attrInts(node, attr, []);
    if (!node.inputs[i]) return undefined;
    if (consts) return [...(consts[i] as ConstTensor).data];
    return [...(ctx as LoweringContext).constInput(node, i, attr).data];
  };
  const starts = read(1, "starts") ?? [];
  const ends = read(2, "ends") ?? [];
  const axes = (read(3, "axes") ?? starts.map((_, i) => i)).map((a) => normAxis(a, r));
  const steps = read(4, "steps") ?? starts.map(() => 1);
  const begin = shape.map(() => 0);
  const step = shape.map(() => 1);
  const outShape = [...shape];
  axes.forEach((a, i) => {
    const d = shape[a];
    const stp = steps[i];
    if (stp === 0) fail("MALFORMED_MODEL", `${nodeLabel(node)}: slice step 0`);
    // ONNX: with a positive step both clamp to [0, d]; with a negative step starts clamp to [0, d-1] and
    // ends to [-1, d-1].
    const clamp = (v: number, lo: number): number => {
      const x = v < 0 ? v + d : v;
      return stp > 0 ? Math.max(0, Math.min(d, x)) : Math.max(lo, Math.min(d - 1, x));
    };
    const s0 = clamp(starts[i], 0);
    const e0 = clamp(ends[i], -1);
    begin[a] = s0;
    step[a] = stp;
    outShape[a] = Math.max(0, Math.ceil((e0 - s0) / stp));
  });
  const inStrides = strides(shape);
  const total = numel(outShape);
  const index: number[] = [];
  const coord = new Array<number>(r).fill(0);
  for (let i = 0; i < total; i++) {
    let idx = 0;
    for (let d = 0; d < r; d++) idx += (begin[d] + coord[d] * step[d]) * inStrides[d];
    index.push(idx);
    for (let d = r - 1; d >= 0; d--) {
      if (++coord[d] < outShape[d]) break;
      coord[d] = 0;
    }
  }
  return { shape: outShape, index };
}

function pad(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const mode = attrStr(node, "mode", "constant");
  if (mode !== "constant" && mode !== "reflect" && mode !== "edge")
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: pad mode '${mode}' (only 'constant', 'reflect', 'edge')`);
  const r = x.shape.length;
  let pads = node.inputs[1] ? [...ctx.constInput(node, 1, "pads").data] : attrInts(node, "pads", []);
  if (node.inputs[3]) {
    const axes = [...ctx.constInput(node, 3, "axes").data].map((a) => normAxis(a, r));
    const full = new Array<number>(2 * r).fill(0);
    axes.forEach((a, i) => {
      full[a] = pads[i];
      full[a + r] = pads[i + axes.length];
    });
    pads = full;
  }
  if (pads.length !== 2 * r) fail("UNSUPPORTED_ATTRIBUTE", `${label}: pads must have ${2 * r} entries`);
  if (mode === "reflect" && x.shape.some((d, i) => pads[i] >= d || pads[i + r] >= d))
    fail(
      "UNSUPPORTED_ATTRIBUTE",
      `${label}: reflect pads [${pads}] must be smaller than the input [${x.shape}]`,
    );
  const value = node.inputs[2]
    ? (ctx.constInput(node, 2, "constant_value").data[0] ?? 0)
    : attrNum(node, "value", 0);
  const shape = x.shape.map((d, i) => d + pads[i] + pads[i + r]);
  const inStrides = strides(x.shape);
  const total = numel(shape);
  const index: number[] = [];
  const srcs: number[] = [];
  const coord = new Array<number>(r).fill(0);
  for (let i = 0; i < total; i++) {
    let idx = 0;
    let inside = true;
    for (let d = 0; d < r; d++) {
      // Reflect mirrors about the edge element, edge repeats it; constant reads the value outside.
      const c = sourceCoord(coord[d] - pads[d], x.shape[d], mode);
      if (c < 0 || c >= x.shape[d]) inside = false;
      idx += c * inStrides[d];
    }
    srcs.push(inside ? x.id : -1);
    index.push(inside ? idx : 0);
    for (let d = r - 1; d >= 0; d--) {
      if (++coord[d] < shape[d]) break;
      coord[d] = 0;
    }
  }
  const out = ctx.newTensor(shape, 1, maxBig(ctx.tensor(x.id).maxAbs, absBig(ctx.q(value))));
  ctx.emit({ op: "gather", node: label, dst: out.id, srcs, idx: index, consts: [ctx.q(value)] });
  return { kind: "dyn", id: out.id, shape };
}

/** The input coordinate an output coordinate `c` (relative to the input's start) reads under `mode`. */
function sourceCoord(c: number, size: number, mode: string): number {
  if (c >= 0 && c < size) return c;
  if (mode === "edge") return c < 0 ? 0 : size - 1;
  if (mode === "reflect") return c < 0 ? -c : 2 * (size - 1) - c;
  return c;
}

function concat(ctx: LoweringContext, node: OnnxNode, ins: Value[]): Value {
  const label = nodeLabel(node);
  const shapes = ins.map((v) => (v.kind === "dyn" ? v.shape : v.t.dims));
  const r = shapes[0].length;
  const axis = normAxis(attrNum(node, "axis", 0), r);
  const shape = [...shapes[0]];
  shape[axis] = shapes.reduce((a, s) => a + s[axis], 0);
  const outer = numel(shape.slice(0, axis));
  const srcs: number[] = [];
  const idx: number[] = [];
  const consts: bigint[] = [];
  const dyns = ins.map((v) => (v.kind === "dyn" ? v : undefined));
  for (let o = 0; o < outer; o++) {
    ins.forEach((v, k) => {
      const inner = numel(shapes[k].slice(axis));
      for (let i = 0; i < inner; i++) {
        const j = o * inner + i;
        const d = dyns[k];
        if (d) {
          srcs.push(d.id);
          idx.push(j);
        } else {
          srcs.push(-1);
          idx.push(consts.length);
          consts.push(ctx.q((v as { t: ConstTensor }).t.data[j]));
        }
      }
    });
  }
  let maxAbs = consts.reduce((m, c) => maxBig(m, absBig(c)), 0n);
  for (const d of dyns) if (d) maxAbs = maxBig(maxAbs, ctx.tensor(d.id).maxAbs);
  const out = ctx.newTensor(shape, 1, maxAbs);
  ctx.emit({ op: "gather", node: label, dst: out.id, srcs, idx, consts });
  return { kind: "dyn", id: out.id, shape };
}
