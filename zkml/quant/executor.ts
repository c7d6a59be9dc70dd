import { fail } from "../errors";
import type { ConvOp, QProgram } from "./program";
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
  if (program.output.postprocess === "none") return real;
  // Softmax over each normalisation group, applied off-circuit to the proven logits.
  const out = new Array<number>(real.length);
  for (const group of normalizeGroups(program)) {
    const row = group.map((i) => real[i]);
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const sum = e.reduce((a, b) => a + b, 0);
    group.forEach((i, k) => {
      out[i] = program.output.postprocess === "softmax" ? e[k] / sum : row[k] - m - Math.log(sum);
    });
  }
  return out;
}

/** The flat output indices of each group the postprocess normalises together (see QProgram.output). */
export function normalizeGroups(program: QProgram): number[][] {
  const total = numel(program.output.shape);
  const { size, stride } = program.output.normalize ?? {
    size: program.output.shape[program.output.shape.length - 1] ?? total,
    stride: 1,
  };
  const groups: number[][] = [];
  if (size <= 0) return groups;
  for (let outer = 0; outer < total; outer += size * stride)
    for (let inner = 0; inner < stride; inner++)
      groups.push(Array.from({ length: size }, (_, k) => outer + inner + k * stride));
  return groups;
}
