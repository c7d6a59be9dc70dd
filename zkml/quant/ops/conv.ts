/**
 * Convolution and pooling over NC... tensors: Conv and ConvTranspose (1-D, 2-D, 3-D; free in R1CS, rescaled
 * once), MaxPool and GlobalMaxPool (comparisons), AveragePool and GlobalAveragePool (a sum times 1/count,
 * rescaled once).
 * Pooling windows are computed for any number of spatial dims (1-D, 2-D, 3-D); a 1-D convolution is the
 * 2-D one with a height of 1 (the flat data is the same), so one conv op and one tap walker serve both.
 */
import { fail } from "../../errors";
import { OnnxNode, nodeLabel } from "../../onnx/graph";
import { LinTerm } from "../program";
import { numel } from "../shapes";
import { LoweringContext, OpKernel, OpTable, Value } from "./context";
import { absBig, attrInts, attrNum, attrStr, roundToInt, signedBits } from "./util";

const poolKernel: OpKernel = {
  lower: (ctx, node, ins) => {
    if (node.outputs.length > 1 && node.outputs[1]) {
      fail("UNSUPPORTED_OP", `${nodeLabel(node)}: the Indices output of MaxPool is not supported`);
    }
    return pool(ctx, node, ins[0] as Value);
  },
};

export const CONV_OPS: OpTable = {
  Conv: { lower: (ctx, node, ins) => conv(ctx, node, ins[0] as Value) },
  ConvTranspose: { lower: (ctx, node, ins) => convTranspose(ctx, node, ins[0] as Value) },
  MaxPool: poolKernel,
  AveragePool: poolKernel,
  GlobalAveragePool: poolKernel,
  GlobalMaxPool: poolKernel,
};

/** Window geometry over n spatial dims; pads are [begin_0 .. begin_n-1, end_0 .. end_n-1] as in ONNX. */
interface WindowGeometry {
  out: number[];
  strides: number[];
  padBegin: number[];
  padEnd: number[];
  dilations: number[];
}

function windowGeometry(node: OnnxNode, spatial: number[], kernel: number[], ceil: boolean): WindowGeometry {
  const label = nodeLabel(node);
  const n = spatial.length;
  const ones = new Array<number>(n).fill(1);
  const st = attrInts(node, "strides", ones);
  const dl = attrInts(node, "dilations", ones);
  let pads = attrInts(node, "pads", new Array<number>(2 * n).fill(0));
  const autoPad = attrStr(node, "auto_pad", "NOTSET");
  if (st.length !== n || dl.length !== n || pads.length !== 2 * n) {
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: strides/dilations/pads must describe ${n} spatial dimensions`);
  }
  if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    // onnxruntime sizes SAME padding without the dilation (and refuses it for Conv), so the float
    // reference would disagree with the circuit's ONNX-spec windows: refuse rather than differ.
    if (dl.some((d) => d !== 1))
      fail("UNSUPPORTED_ATTRIBUTE", `${label}: auto_pad ${autoPad} with dilations [${dl}]`);
    pads = new Array<number>(2 * n).fill(0);
    for (let d = 0; d < n; d++) {
      const out = Math.ceil(spatial[d] / st[d]);
      const total = Math.max(0, (out - 1) * st[d] + (kernel[d] - 1) * dl[d] + 1 - spatial[d]);
      const small = Math.floor(total / 2);
      pads[d] = autoPad === "SAME_UPPER" ? small : total - small;
      pads[d + n] = total - pads[d];
    }
  } else if (autoPad === "VALID") {
    pads = new Array<number>(2 * n).fill(0);
  } else if (autoPad !== "NOTSET") {
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: auto_pad '${autoPad}'`);
  }
  const out = spatial.map((size, d) => {
    const span = size + pads[d] + pads[d + n] - ((kernel[d] - 1) * dl[d] + 1);
    let o = (ceil ? Math.ceil(span / st[d]) : Math.floor(span / st[d])) + 1;
    // A last window that would start in the end padding is dropped (PyTorch and onnxruntime agree).
    if (ceil && (o - 1) * st[d] >= size + pads[d]) o--;
    if (o <= 0) fail("MALFORMED_MODEL", `${label}: kernel larger than the padded input`);
    return o;
  });
  return { out, strides: st, padBegin: pads.slice(0, n), padEnd: pads.slice(n), dilations: dl };
}

/** Calls visit(coord) for every coordinate of `shape` in row-major order. */
function forEachCoord(shape: readonly number[], visit: (coord: number[]) => void): void {
  const total = shape.reduce((a, b) => a * b, 1);
  const coord = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < total; i++) {
    visit(coord);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++coord[d] < shape[d]) break;
      coord[d] = 0;
    }
  }
}

function conv(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const w = ctx.constInput(node, 1, "the weights");
  const b = ctx.optConst(node, 2, "the bias");
  const rank = x.shape.length;
  if (rank < 3 || rank > 5 || w.dims.length !== rank) {
    fail(
      "UNSUPPORTED_OP",
      `${label}: only 1-D, 2-D and 3-D convolution (NCL, NCHW, NCDHW input) is supported, input is [${x.shape}]`,
    );
  }
  const [batch, c] = x.shape;
  const [oc, cg] = w.dims;
  const group = attrNum(node, "group", 1);
  if (cg * group !== c || oc % group !== 0)
    fail("MALFORMED_MODEL", `${label}: weights [${w.dims}] vs input [${x.shape}]`);
  const kernel = w.dims.slice(2);
  const spatialIn = x.shape.slice(2);
  const geo = windowGeometry(node, spatialIn, kernel, false);
  const shape = [batch, oc, ...geo.out];
  const weights = [...w.data].map((v) => ctx.q(v));
  const bias = new Array<bigint>(oc).fill(0n);
  if (b) for (let o = 0; o < oc; o++) bias[o] = ctx.q(b.data[o], 2);
  if (rank < 5) {
    // A 1-D convolution is the 2-D one over [N, C, 1, L] with a 1 x k kernel: the same flat data.
    const as2d = (v: number[], one: number) => (rank === 3 ? [one, ...v] : v);
    const plane = { in: as2d(spatialIn, 1), k: as2d(kernel, 1), out: as2d(geo.out, 1) };
    const geo2 = { st: as2d(geo.strides, 1), pad: as2d(geo.padBegin, 0), dl: as2d(geo.dilations, 1) };
    const acc = conv2d(ctx, label, x.id, [batch, c, oc, group], plane, geo2, weights, bias);
    return { kind: "dyn", id: ctx.rescale(label, acc), shape };
  }
  // 3-D: for each kernel depth kd, a 2-D convolution of the depth slices it reads (gathered as a batch of
  // N x OD planes, zeros where the slice lies in the padding) with the weights' kd-th plane; the KD
  // accumulators are summed (free) into [N, OC, OD, OH, OW] and rescaled once, as a 2-D conv is.
  const [d, h, wd] = spatialIn;
  const [kd, kh, kw] = kernel;
  const [od, oh, ow] = geo.out;
  const plane = { in: [h, wd], k: [kh, kw], out: [oh, ow] };
  const geo2 = { st: geo.strides.slice(1), pad: geo.padBegin.slice(1), dl: geo.dilations.slice(1) };
  const inMax = ctx.tensor(x.id).maxAbs;
  const terms: LinTerm[] = [];
  const outIndex: number[] = [];
  forEachCoord(shape, ([n, o, z, y, xx]) => outIndex.push((((n * od + z) * oc + o) * oh + y) * ow + xx));
  for (let k = 0; k < kd; k++) {
    const srcs: number[] = [];
    const idx: number[] = [];
    forEachCoord([batch, od, c, h * wd], ([n, z, ch, p]) => {
      const iz = z * geo.strides[0] - geo.padBegin[0] + k * geo.dilations[0];
      const inside = iz >= 0 && iz < d;
      srcs.push(inside ? x.id : -1);
      idx.push(inside ? ((n * c + ch) * d + iz) * h * wd + p : 0);
    });
    const slices = ctx.newTensor([batch * od, c, h, wd], ctx.tensor(x.id).scale, inMax);
    ctx.emit({ op: "gather", node: label, dst: slices.id, srcs, idx, consts: [0n] });
    const wk: bigint[] = [];
    for (let i = 0; i < oc * cg; i++)
      wk.push(...weights.slice((i * kd + k) * kh * kw, (i * kd + k + 1) * kh * kw));
    const acc = conv2d(
      ctx,
      label,
      slices.id,
      [batch * od, c, oc, group],
      plane,
      geo2,
      wk,
      k === 0 ? bias : bias.map(() => 0n),
    );
    terms.push({ src: acc, coef: [1n], index: outIndex });
  }
  const sum = ctx.lincomb(label, shape, terms, [0n], 2);
  return { kind: "dyn", id: ctx.rescale(label, sum), shape };
}

/** Emits one 2-D conv op (NCHW) into a new scale-2 accumulator; returns its id. */
function conv2d(
  ctx: LoweringContext,
  label: string,
  src: number,
  [batch, c, oc, group]: number[],
  plane: { in: number[]; k: number[]; out: number[] },
  geo: { st: number[]; pad: number[]; dl: number[] },
  weights: bigint[],
  bias: bigint[],
): number {
  const [h, w] = plane.in;
  const [kh, kw] = plane.k;
  const [oh, ow] = plane.out;
  const inMax = ctx.tensor(src).maxAbs;
  let maxAbs = 0n;
  const per = (c / group) * kh * kw;
  for (let o = 0; o < oc; o++) {
    let m = absBig(bias[o]);
    for (let i = 0; i < per; i++) m += absBig(weights[o * per + i]) * inMax;
    if (m > maxAbs) maxAbs = m;
  }
  const acc = ctx.newTensor([batch, oc, oh, ow], 2, maxAbs);
  ctx.emit({
    op: "conv",
    node: label,
    src,
    dst: acc.id,
    batch,
    c,
    h,
    w,
    oc,
    oh,
    ow,
    kh,
    kw,
    strides: [geo.st[0], geo.st[1]],
    pads: [geo.pad[0], geo.pad[1]],
    dilations: [geo.dl[0], geo.dl[1]],
    group,
    weights,
    bias,
  });
  return acc.id;
}

/**
 * ConvTranspose geometry: per spatial dim the output size and the leading pad. Without an output size,
 * out = s (in - 1) + output_padding + (k - 1) d + 1 - pad_begin - pad_end. Given one (output_shape, or
 * in * s under auto_pad SAME_*), the total padding t = s (in - 1) + output_padding + (k - 1) d + 1 - out
 * is split as the spec says (onnxruntime 1.30 agrees): floor(t / 2) leading under SAME_UPPER, t - floor(t / 2)
 * otherwise. A negative t (an output_shape up to s - 1 past the full size) leaves the extra outputs at the
 * end, reading no input.
 */
function transposeGeometry(
  node: OnnxNode,
  spatial: number[],
  kernel: number[],
): { out: number[]; strides: number[]; padBegin: number[]; dilations: number[] } {
  const label = nodeLabel(node);
  const n = spatial.length;
  const ones = new Array<number>(n).fill(1);
  const zeros = new Array<number>(n).fill(0);
  const st = attrInts(node, "strides", ones);
  const dl = attrInts(node, "dilations", ones);
  const op = attrInts(node, "output_padding", zeros);
  let pads = attrInts(node, "pads", new Array<number>(2 * n).fill(0));
  const autoPad = attrStr(node, "auto_pad", "NOTSET");
  let outShape = attrInts(node, "output_shape", []);
  if (st.length !== n || dl.length !== n || op.length !== n || pads.length !== 2 * n)
    fail(
      "UNSUPPORTED_ATTRIBUTE",
      `${label}: strides/dilations/output_padding/pads must describe ${n} spatial dimensions`,
    );
  if (st.some((v) => v < 1) || dl.some((v) => v < 1) || op.some((v) => v < 0) || pads.some((v) => v < 0))
    fail(
      "MALFORMED_MODEL",
      `${label}: strides [${st}], dilations [${dl}], output_padding [${op}], pads [${pads}]`,
    );
  if (autoPad !== "NOTSET" && autoPad !== "VALID" && autoPad !== "SAME_UPPER" && autoPad !== "SAME_LOWER")
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: auto_pad '${autoPad}'`);
  const same = autoPad.startsWith("SAME");
  if (outShape.length === 0 && same) outShape = spatial.map((v, d) => v * st[d]);
  if (autoPad === "VALID") pads = new Array<number>(2 * n).fill(0);
  const full = spatial.map((v, d) => st[d] * (v - 1) + op[d] + (kernel[d] - 1) * dl[d] + 1);
  if (outShape.length > 0) {
    if (outShape.length !== n) fail("UNSUPPORTED_ATTRIBUTE", `${label}: output_shape must have ${n} entries`);
    pads = new Array<number>(2 * n).fill(0);
    for (let d = 0; d < n; d++) {
      const total = full[d] - outShape[d];
      if (total < 0 && (same || total <= -st[d]))
        fail(
          "UNSUPPORTED_ATTRIBUTE",
          `${label}: output size ${outShape[d]} is beyond the full size ${full[d]} (auto_pad ${autoPad}, stride ${st[d]})`,
        );
      const small = Math.floor(Math.max(total, 0) / 2);
      pads[d] = total < 0 ? 0 : autoPad === "SAME_UPPER" ? small : total - small;
      pads[d + n] = total - pads[d];
    }
  }
  const out = full.map((f, d) => f - pads[d] - pads[d + n]);
  if (out.some((o) => o <= 0)) fail("MALFORMED_MODEL", `${label}: empty output [${out}]`);
  return { out, strides: st, padBegin: pads.slice(0, n), dilations: dl };
}

/**
 * ConvTranspose over [N, C, spatial...] with constant weights [C, M/group, k...]: each input element
 * x[n, c, i] adds W[c, m, k] x to output [n, g M/group + m, i s - pad + k d]. Lowered as one linear
 * combination (free in R1CS): output element o sums its own taps, term j holding every output's j-th tap
 * (coefficient 0 on a zero element where an output has fewer), then one rescale, as Conv. The accumulator's
 * bound is the largest sum over one output's taps, so a stride that leaves some outputs few taps does not
 * widen the rescale's range check.
 */
function convTranspose(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const w = ctx.constInput(node, 1, "the weights");
  const b = ctx.optConst(node, 2, "the bias");
  const rank = x.shape.length;
  if (rank < 3 || rank > 5 || w.dims.length !== rank)
    fail(
      "UNSUPPORTED_OP",
      `${label}: only 1-D, 2-D and 3-D transposed convolution (NCL, NCHW, NCDHW input) is supported, input is [${x.shape}]`,
    );
  if (ctx.tensor(x.id).scale !== 1)
    fail("UNSUPPORTED_OP", `${label}: input at scale ${ctx.tensor(x.id).scale}`);
  const [batch, c] = x.shape;
  const group = attrNum(node, "group", 1);
  const [wc, mg] = w.dims;
  const kernel = w.dims.slice(2);
  const ks = attrInts(node, "kernel_shape", kernel);
  if (wc !== c || c % group !== 0 || ks.length !== kernel.length || ks.some((k, d) => k !== kernel[d]))
    fail("MALFORMED_MODEL", `${label}: weights [${w.dims}] vs input [${x.shape}], group ${group}`);
  const oc = mg * group;
  const cg = c / group;
  if (b && b.data.length !== oc)
    fail("MALFORMED_MODEL", `${label}: bias of ${b.data.length} for ${oc} channels`);
  const spatial = x.shape.slice(2);
  const geo = transposeGeometry(node, spatial, kernel);
  const shape = [batch, oc, ...geo.out];
  const size = numel(shape);
  const inPlane = numel(spatial);
  const outPlane = numel(geo.out);
  const kSize = numel(kernel);
  const weights = [...w.data].map((v) => ctx.q(v));
  // taps[o]: the (input index, weight) pairs output element o sums.
  const taps: [number, bigint][][] = Array.from({ length: size }, () => []);
  const nd = spatial.length;
  const outStrides = geo.out.map((_, d) => numel(geo.out.slice(d + 1)));
  forEachCoord(spatial, (i) => {
    const iFlat = i.reduce((acc, v, d) => acc * spatial[d] + v, 0);
    forEachCoord(kernel, (k) => {
      let oFlat = 0;
      for (let d = 0; d < nd; d++) {
        const o = i[d] * geo.strides[d] - geo.padBegin[d] + k[d] * geo.dilations[d];
        if (o < 0 || o >= geo.out[d]) return;
        oFlat += o * outStrides[d];
      }
      const kFlat = k.reduce((acc, v, d) => acc * kernel[d] + v, 0);
      for (let n = 0; n < batch; n++)
        for (let ch = 0; ch < c; ch++) {
          const g = Math.floor(ch / cg);
          for (let m = 0; m < mg; m++) {
            const o = (n * oc + g * mg + m) * outPlane + oFlat;
            taps[o].push([(n * c + ch) * inPlane + iFlat, weights[(ch * mg + m) * kSize + kFlat]]);
          }
        }
    });
  });
  // The input with a zero appended: the element a missing tap reads, so it adds nothing to the error bound.
  const total = numel(x.shape);
  const zero = total;
  const xz = ctx.gather(
    label,
    [total + 1],
    [
      { src: x.id, index: [...Array(total).keys()] },
      { src: -1, index: [0] },
    ],
    [0n],
  );
  const bias = Array.from({ length: size }, (_, o) =>
    b ? ctx.q(b.data[Math.floor(o / outPlane) % oc], 2) : 0n,
  );
  const width = taps.reduce((m, t) => Math.max(m, t.length), 0);
  const terms: LinTerm[] = [];
  for (let j = 0; j < width; j++) {
    terms.push({
      src: xz,
      coef: taps.map((t) => (j < t.length ? t[j][1] : 0n)),
      index: taps.map((t) => (j < t.length ? t[j][0] : zero)),
    });
  }
  const inMax = ctx.tensor(x.id).maxAbs;
  let maxAbs = 0n;
  taps.forEach((t, o) => {
    let m = absBig(bias[o]);
    for (const [, wq] of t) m += absBig(wq) * inMax;
    if (m > maxAbs) maxAbs = m;
  });
  const acc = ctx.newTensor(shape, 2, maxAbs);
  ctx.emit({ op: "lincomb", node: label, dst: acc.id, size, terms, bias });
  return { kind: "dyn", id: ctx.rescale(label, acc.id), shape };
}

function pool(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  if (x.shape.length < 3)
    fail("UNSUPPORTED_OP", `${label}: pooling needs an [N, C, spatial...] input, got [${x.shape}]`);
  const [n, c] = x.shape;
  const spatial = x.shape.slice(2);
  const nd = spatial.length;
  const global = node.opType === "GlobalAveragePool" || node.opType === "GlobalMaxPool";
  const kernel = global ? spatial : attrInts(node, "kernel_shape", []);
  if (kernel.length !== nd) fail("UNSUPPORTED_ATTRIBUTE", `${label}: kernel_shape must have ${nd} entries`);
  const zeros = new Array<number>(nd).fill(0);
  const ones = new Array<number>(nd).fill(1);
  const geo = global
    ? { out: ones, strides: ones, padBegin: zeros, padEnd: zeros, dilations: ones }
    : windowGeometry(node, spatial, kernel, attrNum(node, "ceil_mode", 0) === 1);
  const includePad = attrNum(node, "count_include_pad", 0) === 1;
  const windows: number[][] = [];
  const counts: number[] = [];
  const plane = spatial.reduce((a, b) => a * b, 1);
  for (let nc = 0; nc < n * c; nc++)
    forEachCoord(geo.out, (o) => {
      const win: number[] = [];
      let padded = 0;
      forEachCoord(kernel, (k) => {
        let flat = 0;
        let inside = true;
        let inPadEnd = true;
        for (let d = 0; d < nd; d++) {
          const i = o[d] * geo.strides[d] - geo.padBegin[d] + k[d] * geo.dilations[d];
          if (i < 0 || i >= spatial[d]) inside = false;
          if (i >= spatial[d] + geo.padEnd[d]) inPadEnd = false;
          flat = flat * spatial[d] + i;
        }
        if (inside) win.push(nc * plane + flat);
        else if (inPadEnd) padded++;
      });
      if (win.length === 0)
        fail("UNSUPPORTED_ATTRIBUTE", `${label}: a pooling window lies entirely in the padding`);
      windows.push(win);
      counts.push(includePad ? win.length + padded : win.length);
    });
  const shape = [n, c, ...geo.out];
  const src = ctx.tensor(x.id);
  if (node.opType === "MaxPool" || node.opType === "GlobalMaxPool") {
    const out = ctx.newTensor(shape, src.scale, src.maxAbs);
    ctx.emit({
      op: "maxpool",
      node: label,
      src: x.id,
      dst: out.id,
      windows,
      bits: signedBits(2n * src.maxAbs),
    });
    return { kind: "dyn", id: out.id, shape };
  }
  return { kind: "dyn", id: sumTimesReciprocal(ctx, label, x.id, shape, windows, counts), shape };
}

/**
 * The mean of each window: sum(window) * round(2^s / count) at scale 2s, rescaled once (average pooling,
 * ReduceMean). The sum and the multiplier are free in R1CS; the rescale is the only cost.
 */
export function sumTimesReciprocal(
  ctx: LoweringContext,
  label: string,
  src: number,
  shape: number[],
  windows: number[][],
  counts: number[],
): number {
  const t = ctx.tensor(src);
  if (t.scale !== 1) fail("UNSUPPORTED_OP", `${label}: averaging a value at scale ${t.scale}`);
  const mult = counts.map((k) => roundToInt(2 ** ctx.scaleBits / k));
  let maxAbs = 0n;
  windows.forEach((win, i) => {
    const m = mult[i] * BigInt(win.length) * t.maxAbs;
    if (m > maxAbs) maxAbs = m;
  });
  const acc = ctx.newTensor(shape, 2, maxAbs);
  ctx.emit({ op: "sumpool", node: label, src, dst: acc.id, windows, mult });
  return ctx.rescale(label, acc.id);
}
