import { fail } from "../errors";
import type { ConvOp, OutputTransform, QProgram } from "./program";
import { numel } from "./shapes";

/**
 * Visits every tap of a convolution: `out` is the flat output index, `x` the flat input index and `w` the
 * flat weight index it multiplies (padding taps are skipped). The one place the conv geometry (groups,
 * strides, pads, dilations) is written: the executor and the error bound both walk it.
 */
export function forEachConvTap(op: ConvOp, visit: (out: number, x: number, w: number) => void): void {
  const { c, h, w, oc, oh, ow, kh, kw, group } = op;
  const cg = c / group;
  const ocg = oc / group;
  for (let b = 0; b < op.batch; b++)
    for (let o = 0; o < oc; o++) {
      const g = Math.floor(o / ocg);
      for (let oy = 0; oy < oh; oy++)
        for (let ox = 0; ox < ow; ox++) {
          const out = ((b * oc + o) * oh + oy) * ow + ox;
          for (let ic = 0; ic < cg; ic++)
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * op.strides[0] - op.pads[0] + ky * op.dilations[0];
              if (iy < 0 || iy >= h) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * op.strides[1] - op.pads[1] + kx * op.dilations[1];
                if (ix < 0 || ix >= w) continue;
                visit(out, ((b * c + g * cg + ic) * h + iy) * w + ix, ((o * cg + ic) * kh + ky) * kw + kx);
              }
            }
        }
    }
}

/** floor(a / 2^k) for any sign of a (BigInt `>>` is already a floor shift). */
function floorShift(a: bigint, k: number): bigint {
  return a >> BigInt(k);
}

/** floor(a / b) for b > 0 and any sign of a (BigInt `/` truncates toward zero). */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return q * b > a ? q - 1n : q;
}

/** floor(sqrt(v)) for v >= 0 (Newton's iteration from above). */
export function isqrt(v: bigint): bigint {
  if (v < 2n) return v;
  let x = 1n << BigInt(Math.ceil(v.toString(2).length / 2));
  for (;;) {
    const y = (x + v / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

function checkSigned(v: bigint, bits: number, where: string): void {
  const lim = 1n << BigInt(bits - 1);
  if (v < -lim || v >= lim) {
    fail(
      "OUT_OF_RANGE",
      `${where}: fixed-point value ${v} does not fit in ${bits} signed bits; ` +
        `raise --activation-bits or lower --scale-bits`,
    );
  }
}

/** Quantizes real inputs: round(x * 2^s), range-checked to the program's input width. */
export function quantizeInput(program: QProgram, input: readonly number[]): bigint[] {
  const n = numel(program.input.shape);
  if (input.length !== n) {
    fail(
      "BAD_INPUT",
      `input has ${input.length} values, the model's input [${program.input.shape}] needs ${n}`,
    );
  }
  const scale = 2 ** program.scaleBits;
  const lim = 2 ** (program.inputBits - 1);
  return input.map((x, i) => {
    if (typeof x !== "number" || Number.isNaN(x))
      fail("BAD_INPUT", `input value #${i} is ${String(x)}, not a number`);
    const v = Math.round(x * scale);
    if (!Number.isFinite(x) || v < -lim || v >= lim) {
      fail(
        "OUT_OF_RANGE",
        `input value #${i} = ${x} is outside the representable range [${-lim / scale}, ${(lim - 1) / scale}] ` +
          `(input bits ${program.inputBits}, scale bits ${program.scaleBits})`,
      );
    }
    return BigInt(v);
  });
}

/** Executes the program on quantized inputs; returns every tensor (the last op's output is the result). */
export function executeProgram(program: QProgram, input: readonly bigint[]): bigint[][] {
  const vals: bigint[][] = new Array(program.tensors.length);
  const inLim = 1n << BigInt(program.inputBits - 1);
  input.forEach((v, i) => {
    if (v < -inLim || v >= inLim)
      fail("OUT_OF_RANGE", `quantized input #${i} = ${v} exceeds ${program.inputBits} signed bits`);
  });
  vals[program.input.tensor] = [...input];
  for (const op of program.ops) {
    switch (op.op) {
      case "dense": {
        const x = vals[op.src];
        const out = new Array<bigint>(op.rows * op.n);
        for (let r = 0; r < op.rows; r++)
          for (let j = 0; j < op.n; j++) {
            let acc = op.bias[j];
            const wOff = j * op.k;
            const xOff = r * op.k;
            for (let i = 0; i < op.k; i++) acc += op.weights[wOff + i] * x[xOff + i];
            out[r * op.n + j] = acc;
          }
        vals[op.dst] = out;
        break;
      }
      case "conv": {
        const x = vals[op.src];
        const plane = op.oh * op.ow;
        const out = Array.from(
          { length: op.batch * op.oc * plane },
          (_, i) => op.bias[Math.floor(i / plane) % op.oc],
        );
        forEachConvTap(op, (o, xi, wi) => {
          out[o] += op.weights[wi] * x[xi];
        });
        vals[op.dst] = out;
        break;
      }
      case "lincomb": {
        const out = new Array<bigint>(op.size);
        for (let i = 0; i < op.size; i++) {
          let acc = op.bias.length === 1 ? op.bias[0] : op.bias[i];
          for (const t of op.terms) {
            const c = t.coef.length === 1 ? t.coef[0] : t.coef[i];
            acc += c * vals[t.src][t.index ? t.index[i] : i];
          }
          out[i] = acc;
        }
        vals[op.dst] = out;
        break;
      }
      case "mul": {
        const a = vals[op.a];
        const b = vals[op.b];
        vals[op.dst] = op.ia.map((j, i) => a[j] * b[op.ib[i]]);
        break;
      }
      case "rescale": {
        const half = 1n << BigInt(op.shift - 1);
        vals[op.dst] = vals[op.src].map((acc) => {
          const q = floorShift(acc + half, op.shift);
          checkSigned(q, op.bits, op.node);
          return op.relu && q < 0n ? 0n : q;
        });
        break;
      }
      case "relu":
        vals[op.dst] = vals[op.src].map((v) => (v < 0n ? 0n : v));
        break;
      case "maxpool": {
        const x = vals[op.src];
        vals[op.dst] = op.windows.map((win) => win.reduce((m, j) => (x[j] > m ? x[j] : m), x[win[0]]));
        break;
      }
      case "sumpool": {
        const x = vals[op.src];
        vals[op.dst] = op.windows.map((win, i) => win.reduce((s, j) => s + x[j], 0n) * op.mult[i]);
        break;
      }
      case "gather":
        vals[op.dst] = op.srcs.map((s, i) => (s < 0 ? op.consts[op.idx[i]] : vals[s][op.idx[i]]));
        break;
      case "compare": {
        const x = vals[op.src];
        vals[op.dst] = op.index.map((j, i) => {
          const d = x[j] - op.consts[i];
          const k = op.kinds[i];
          const holds = k === "lt" ? d < 0n : k === "ge" ? d >= 0n : k === "eq" ? d === 0n : d !== 0n;
          return holds ? 1n : 0n;
        });
        break;
      }
      case "interval": {
        const x = vals[op.src];
        const out: bigint[] = [];
        op.index.forEach((j, g) => {
          const v = x[j];
          if (v < op.lo || v >= op.hi)
            fail("OUT_OF_RANGE", `${op.node}: value ${v} is outside its static range [${op.lo}, ${op.hi})`);
          const m = op.cuts[g].filter((c) => c <= v).length;
          for (let k = 0; k <= op.cuts[g].length; k++) out.push(k === m ? 1n : 0n);
        });
        vals[op.dst] = out;
        break;
      }
      case "divide": {
        const num = vals[op.src];
        const den = vals[op.den];
        const out = new Array<bigint>(op.rows * op.cols);
        for (let r = 0; r < op.rows; r++) {
          const d = den[r];
          if (op.signed) checkSigned(d, op.denBits, op.node);
          else if (d < 0n) fail("OUT_OF_RANGE", `${op.node}: divisor ${d} of row ${r} is negative`);
          const zero = d === 0n;
          const sign = d < 0n ? -1n : 1n;
          const D = sign * d + (zero ? 1n : 0n);
          for (let j = 0; j < op.cols; j++) {
            const i = r * op.cols + j;
            const q = floorDiv(2n * sign * num[i] * (1n << BigInt(op.shift)) + D, 2n * D);
            checkSigned(q, op.quotBits, op.node);
            out[i] = op.signed && zero ? num[i] : q;
          }
        }
        vals[op.dst] = out;
        break;
      }
      case "isqrt":
        vals[op.dst] = vals[op.src].map((v) => {
          if (v < 0n) fail("OUT_OF_RANGE", `${op.node}: square root of negative ${v}`);
          const r = isqrt(v << BigInt(op.shift));
          if (r >= 1n << BigInt(op.bits))
            fail("OUT_OF_RANGE", `${op.node}: square root ${r} does not fit in ${op.bits} bits`);
          return r;
        });
        break;
      case "argmax": {
        const x = vals[op.src];
        vals[op.dst] = op.groups.map((g) => {
          let best = 0;
          for (let k = 1; k < g.length; k++) if (x[g[k]] > x[g[best]]) best = k;
          return BigInt(best);
        });
        break;
      }
    }
  }
  return vals;
}

export interface QuantizedResult {
  /** The quantized input as the circuit sees it. */
  input: bigint[];
  /** The quantized output the circuit proves. */
  quantized: bigint[];
  /** The output dequantized (and softmax-normalised where the model ends with Softmax). */
  output: number[];
}

/** Runs the fixed-point program on real-valued input: exactly what the circuit computes. */
export function executeQuantized(program: QProgram, input: readonly number[]): QuantizedResult {
  const q = quantizeInput(program, input);
  const vals = executeProgram(program, q);
  const quantized = vals[program.output.tensor];
  return { input: q, quantized, output: dequantizeOutput(program, quantized) };
}

export function dequantizeOutput(program: QProgram, quantized: readonly bigint[]): number[] {
  const scale = program.tensors[program.output.tensor].scale;
  const div = 2 ** (program.scaleBits * scale);
  const real = quantized.map((v) => Number(v) / div);
  for (const p of outputSlices(program)) applyTransform(real, p);
  return real;
}

/** Each output's slice of the flat proven output with its transform: the parts, or the one output. */
export function outputSlices(program: QProgram): TransformSlice[] {
  return (
    program.output.parts ?? [
      {
        offset: 0,
        shape: program.output.shape,
        postprocess: program.output.postprocess,
        normalize: program.output.normalize,
      },
    ]
  );
}

/** Where a transform applies: a slice of the flat output (a part, or the whole single output). */
export interface TransformSlice {
  offset: number;
  shape: readonly number[];
  postprocess: OutputTransform;
  normalize?: { size: number; stride: number };
}

/** ONNX-ML's logistic: 1 / (1 + e^-x). */
export function logistic(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/**
 * ONNX-ML's probit as onnxruntime computes it: sqrt(2) * erfinv(2x - 1), with erfinv by Winitzki's
 * approximation (a = 0.147), so the proven score reads as onnxruntime's output does.
 */
export function probit(x: number): number {
  const y = 2 * x - 1;
  const a = 0.147;
  const l = Math.log((1 - y) * (1 + y));
  const v = 2 / (Math.PI * a) + l / 2;
  return Math.SQRT2 * Math.sign(y) * Math.sqrt(Math.sqrt(v * v - l / a) - v);
}

/** Applies a slice's off-circuit transform in place (softmax and friends per normalisation group). */
function applyTransform(out: number[], p: TransformSlice): void {
  const total = numel(p.shape);
  switch (p.postprocess) {
    case "none":
      return;
    case "logistic":
      for (let i = p.offset; i < p.offset + total; i++) out[i] = logistic(out[i]);
      return;
    case "probit":
      for (let i = p.offset; i < p.offset + total; i++) out[i] = probit(out[i]);
      return;
  }
  for (const group of groupsOf(p.shape, p.normalize)) {
    const idx = group.map((i) => i + p.offset);
    const row = idx.map((i) => out[i]);
    const m = Math.max(...row);
    if (p.postprocess === "softmax_zero") {
      // onnxruntime's SOFTMAX_ZERO: a (near-)zero score stays out of the sum and maps to ~0
      const e = row.map((v) => (Math.abs(v) > 1e-7 ? Math.exp(v - m) : v * Math.exp(-m)));
      const sum = e.filter((_, k) => Math.abs(row[k]) > 1e-7).reduce((a, b) => a + b, 0);
      idx.forEach((i, k) => (out[i] = e[k] / sum));
      continue;
    }
    const e = row.map((v) => Math.exp(v - m));
    const sum = e.reduce((a, b) => a + b, 0);
    idx.forEach((i, k) => (out[i] = p.postprocess === "softmax" ? e[k] / sum : row[k] - m - Math.log(sum)));
  }
}

/** The flat indices of each group a softmax normalises together over a tensor of `shape`. */
export function groupsOf(shape: readonly number[], normalize?: { size: number; stride: number }): number[][] {
  const total = numel(shape as number[]);
  const { size, stride } = normalize ?? { size: shape[shape.length - 1] ?? total, stride: 1 };
  const groups: number[][] = [];
  if (size <= 0) return groups;
  for (let outer = 0; outer < total; outer += size * stride)
    for (let inner = 0; inner < stride; inner++)
      groups.push(Array.from({ length: size }, (_, k) => outer + inner + k * stride));
  return groups;
}

/** The flat output indices of each group the postprocess normalises together (see QProgram.output). */
export function normalizeGroups(program: QProgram): number[][] {
  return groupsOf(program.output.shape, program.output.normalize);
}

/** A model output as a caller reads it: numbers, class labels, or (ZipMap) one map per row. */
export type NamedOutput = number[] | (number | string)[] | Record<string, number>[];

/**
 * The model's outputs by graph output name, from the dequantized flat output: a label output's class
 * indices read as its classes, a ZipMap output as one {class: probability} map per row. A single-output
 * program gives { [output name]: output }.
 */
export function namedOutputs(program: QProgram, output: readonly number[]): Record<string, NamedOutput> {
  const parts = program.output.parts;
  if (!parts) return { [program.output.name]: [...output] };
  const named: Record<string, NamedOutput> = {};
  for (const p of parts) {
    const slice = output.slice(p.offset, p.offset + p.size);
    if (p.labels) {
      const labels = p.labels;
      named[p.name] = slice.map((v) => {
        const k = Math.round(v);
        if (k < 0 || k >= labels.length)
          fail("BAD_INPUT", `output '${p.name}': class index ${v} is outside the ${labels.length} classes`);
        return labels[k];
      });
    } else if (p.zipmap) {
      const keys = p.zipmap;
      const rows: Record<string, number>[] = [];
      for (let r = 0; r < slice.length; r += keys.length)
        rows.push(Object.fromEntries(keys.map((k, j) => [String(k), slice[r + j]])));
      named[p.name] = rows;
    } else named[p.name] = slice;
  }
  return named;
}
