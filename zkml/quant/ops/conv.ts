/**
 * Convolution and pooling over NCHW tensors: Conv (free in R1CS, rescaled once), MaxPool (comparisons),
 * AveragePool and GlobalAveragePool (a sum times 1/count, rescaled once).
 */
import { fail } from "../../errors";
import { OnnxNode, nodeLabel } from "../../onnx/graph";
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
  MaxPool: poolKernel,
  AveragePool: poolKernel,
  GlobalAveragePool: poolKernel,
};

interface WindowGeometry {
  out: number[];
  strides: [number, number];
  padBegin: number[];
  padEnd: number[];
  dilations: [number, number];
}

function windowGeometry(node: OnnxNode, spatial: number[], kernel: number[], ceil: boolean): WindowGeometry {
  const label = nodeLabel(node);
  const st = attrInts(node, "strides", [1, 1]);
  const dl = attrInts(node, "dilations", [1, 1]);
  let pads = attrInts(node, "pads", [0, 0, 0, 0]);
  const autoPad = attrStr(node, "auto_pad", "NOTSET");
  if (st.length !== 2 || dl.length !== 2 || pads.length !== 4) {
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: strides/dilations/pads must describe 2 spatial dimensions`);
  }
  if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    // onnxruntime sizes SAME padding without the dilation (and refuses it for Conv), so the float
    // reference would disagree with the circuit's ONNX-spec windows: refuse rather than differ.
    if (dl.some((d) => d !== 1))
      fail("UNSUPPORTED_ATTRIBUTE", `${label}: auto_pad ${autoPad} with dilations [${dl}]`);
    pads = [0, 0, 0, 0];
    for (let d = 0; d < 2; d++) {
      const out = Math.ceil(spatial[d] / st[d]);
      const total = Math.max(0, (out - 1) * st[d] + (kernel[d] - 1) * dl[d] + 1 - spatial[d]);
      const small = Math.floor(total / 2);
      pads[d] = autoPad === "SAME_UPPER" ? small : total - small;
      pads[d + 2] = total - pads[d];
    }
  } else if (autoPad === "VALID") {
    pads = [0, 0, 0, 0];
  } else if (autoPad !== "NOTSET") {
    fail("UNSUPPORTED_ATTRIBUTE", `${label}: auto_pad '${autoPad}'`);
  }
  const out = [0, 1].map((d) => {
    const span = spatial[d] + pads[d] + pads[d + 2] - ((kernel[d] - 1) * dl[d] + 1);
    let o = (ceil ? Math.ceil(span / st[d]) : Math.floor(span / st[d])) + 1;
    // A last window that would start in the end padding is dropped (PyTorch and onnxruntime agree).
    if (ceil && (o - 1) * st[d] >= spatial[d] + pads[d]) o--;
    if (o <= 0) fail("MALFORMED_MODEL", `${label}: kernel larger than the padded input`);
    return o;
  });
  return {
    out,
    strides: [st[0], st[1]],
    padBegin: [pads[0], pads[1]],
    padEnd: [pads[2], pads[3]],
    dilations: [dl[0], dl[1]],
  };
}

function conv(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const w = ctx.constInput(node, 1, "the weights");
  const b = ctx.optConst(node, 2, "the bias");
  if (x.shape.length !== 4 || w.dims.length !== 4) {
    fail("UNSUPPORTED_OP", `${label}: only 2-D convolution (NCHW input) is supported, input is [${x.shape}]`);
  }
  const [batch, c, h, wd] = x.shape;
  const [oc, cg, kh, kw] = w.dims;
  const group = attrNum(node, "group", 1);
  if (cg * group !== c || oc % group !== 0)
    fail("MALFORMED_MODEL", `${label}: weights [${w.dims}] vs input [${x.shape}]`);
  const geo = windowGeometry(node, [h, wd], [kh, kw], false);
  const weights = [...w.data].map((v) => ctx.q(v));
  const bias = new Array<bigint>(oc).fill(0n);
  if (b) for (let o = 0; o < oc; o++) bias[o] = ctx.q(b.data[o], 2);
  const inMax = ctx.tensor(x.id).maxAbs;
  let maxAbs = 0n;
  const per = cg * kh * kw;
  for (let o = 0; o < oc; o++) {
    let m = absBig(bias[o]);
    for (let i = 0; i < per; i++) m += absBig(weights[o * per + i]) * inMax;
    if (m > maxAbs) maxAbs = m;
  }
  const shape = [batch, oc, geo.out[0], geo.out[1]];
  const acc = ctx.newTensor(shape, 2, maxAbs);
  ctx.emit({
    op: "conv",
    node: label,
    src: x.id,
    dst: acc.id,
    batch,
    c,
    h,
    w: wd,
    oc,
    oh: geo.out[0],
    ow: geo.out[1],
    kh,
    kw,
    strides: geo.strides,
    pads: [geo.padBegin[0], geo.padBegin[1]],
    dilations: geo.dilations,
    group,
    weights,
    bias,
  });
  return { kind: "dyn", id: ctx.rescale(label, acc.id), shape };
}

function pool(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  if (x.shape.length !== 4) fail("UNSUPPORTED_OP", `${label}: only 2-D pooling (NCHW input) is supported`);
  const [n, c, h, w] = x.shape;
  const global = node.opType === "GlobalAveragePool";
  const kernel = global ? [h, w] : attrInts(node, "kernel_shape", []);
  if (kernel.length !== 2) fail("UNSUPPORTED_ATTRIBUTE", `${label}: kernel_shape must have 2 entries`);
  const geo = global
    ? { out: [1, 1], strides: [1, 1], padBegin: [0, 0], padEnd: [0, 0], dilations: [1, 1] }
    : windowGeometry(node, [h, w], kernel, attrNum(node, "ceil_mode", 0) === 1);
  const includePad = attrNum(node, "count_include_pad", 0) === 1;
  const [oh, ow] = geo.out;
  const windows: number[][] = [];
  const counts: number[] = [];
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++)
      for (let oy = 0; oy < oh; oy++)
        for (let ox = 0; ox < ow; ox++) {
          const win: number[] = [];
          let padded = 0;
          for (let ky = 0; ky < kernel[0]; ky++)
            for (let kx = 0; kx < kernel[1]; kx++) {
              const iy = oy * geo.strides[0] - geo.padBegin[0] + ky * geo.dilations[0];
              const ix = ox * geo.strides[1] - geo.padBegin[1] + kx * geo.dilations[1];
              if (iy >= 0 && iy < h && ix >= 0 && ix < w) win.push(((b * c + ch) * h + iy) * w + ix);
              else if (iy < h + geo.padEnd[0] && ix < w + geo.padEnd[1]) padded++;
            }
          if (win.length === 0)
            fail("UNSUPPORTED_ATTRIBUTE", `${label}: a pooling window lies entirely in the padding`);
          windows.push(win);
          counts.push(includePad ? win.length + padded : win.length);
        }
  const shape = [n, c, oh, ow];
  const src = ctx.tensor(x.id);
  if (node.opType === "MaxPool") {
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
  const mult = counts.map((k) => roundToInt(2 ** ctx.scaleBits / k));
  let maxAbs = 0n;
  windows.forEach((win, i) => {
    const m = mult[i] * BigInt(win.length) * src.maxAbs;
    if (m > maxAbs) maxAbs = m;
  });
  const acc = ctx.newTensor(shape, 2, maxAbs);
  ctx.emit({ op: "sumpool", node: label, src: x.id, dst: acc.id, windows, mult });
  return { kind: "dyn", id: ctx.rescale(label, acc.id), shape };
}
