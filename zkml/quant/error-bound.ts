import {
  dequantizeOutput,
  executeProgram,
  forEachConvTap,
  groupsOf,
  outputSlices,
  probit,
  quantizeInput,
  type QuantizedResult,
} from "./executor";
import { QProgram } from "./program";
import { numel } from "./shapes";

/**
 * How far the fixed-point result can be from the exact real-valued model, element by element, for one
 * real input: a first-order worst-case bound propagated alongside the executor's own values.
 *
 * The rules (u = 2^-s, one unit at scale 1; constants are rounded to the nearest unit of their scale):
 * - input: the actual rounding error |round(x * 2^s) / 2^s - x| (at most u/2);
 * - every constant (weight, bias, multiplier, padding value) carries at most half a unit of its scale;
 *   an integer coefficient (Add/Sub, Clip's +-1) is exact;
 * - a linear op (dense, conv, lincomb, average pooling) with real coefficients c over inputs with value
 *   x and bound e adds up sum |c| e + sum (half a coefficient unit) (|x| + e) + half a bias unit;
 * - a product a * b: |a| e_b + |b| e_a + e_a e_b;
 * - a rescale adds half a unit of its output; ReLU, max and wiring are 1-Lipschitz and keep the bound;
 * - an op that completes an approximation (Sigmoid, Tanh) adds its documented approximation error;
 * - a comparison (tree branch): 0 where the value is further from the threshold than its bound plus a
 *   unit, else 1 (the branch may differ from the exact model's);
 * - ArgMax: 0 where the maximum is unambiguous (no other value within both bounds), otherwise the
 *   largest index distance to a value that could be the maximum;
 * - division x'/d' (ONNX-ML Normalizer): (e_x + |x'/d'| e_d) / (|d'| - e_d) plus half a unit, unbounded when
 *   |d'| <= e_d (the exact divisor may be 0); an integer square root: min(e / sqrt(a), sqrt(e)) plus a unit;
 * - Softmax over a group whose largest bound is E: p (exp(e + E) - 1); LogSoftmax: e + E.
 * |x| + e bounds the true |x|, so the bound is rigorous (up to the float arithmetic computing it).
 */
/** What executeQuantized returns, plus a bound on each output element's error. */
export interface BoundedResult extends QuantizedResult {
  /** Per output element: |output - exact model output| <= bound. */
  bound: number[];
}

export function executeWithErrorBound(program: QProgram, input: readonly number[]): BoundedResult {
  const q = quantizeInput(program, input);
  const vals = executeProgram(program, q);
  const bounds = errorBounds(program, input, vals);
  const quantized = vals[program.output.tensor];
  const output = dequantizeOutput(program, quantized);
  const e = bounds[program.output.tensor];
  const bound = Array.from(e);
  const real = quantized.map(
    (v) => Number(v) * 2 ** (-program.scaleBits * program.tensors[program.output.tensor].scale),
  );
  for (const p of outputSlices(program)) {
    const at = (i: number): number => p.offset + i;
    if (p.postprocess === "none") continue;
    if (p.postprocess === "logistic") {
      // the logistic is 1/4-Lipschitz
      for (let i = 0; i < numel(p.shape); i++) bound[at(i)] = e[at(i)] / 4;
      continue;
    }
    if (p.postprocess === "probit") {
      // monotone: the worst of the two ends of the interval (unbounded near 0 and 1)
      for (let i = 0; i < numel(p.shape); i++) {
        const [x, d] = [real[at(i)], e[at(i)]];
        bound[at(i)] = Math.max(
          Math.abs(probit(x + d) - output[at(i)]),
          Math.abs(probit(x - d) - output[at(i)]),
        );
        if (!Number.isFinite(bound[at(i)])) bound[at(i)] = Infinity;
      }
      continue;
    }
    for (const group of groupsOf(p.shape, p.normalize)) {
      const worst = Math.max(...group.map((i) => e[at(i)]));
      for (const i of group) {
        const j = at(i);
        bound[j] = p.postprocess === "logsoftmax" ? e[j] + worst : output[j] * Math.expm1(e[j] + worst);
      }
    }
  }
  return { input: q, quantized, output, bound };
}

/** Per tensor, per element, the bound on |value / 2^(s * scale) - exact value| (real units). */
export function errorBounds(
  program: QProgram,
  input: readonly number[],
  vals: readonly (readonly bigint[])[],
): Float64Array[] {
  const s = program.scaleBits;
  const unit = (id: number): number => 2 ** (-s * program.tensors[id].scale);
  const e: Float64Array[] = new Array(program.tensors.length);
  const inT = program.input.tensor;
  e[inT] = Float64Array.from(input, (x, i) => Math.abs(Number(vals[inT][i]) * unit(inT) - x));
  /** Per tensor, |value| + bound: a bound on the true |value|. */
  const mags: Float64Array[] = new Array(program.tensors.length);
  const setMag = (id: number): void => {
    const u = unit(id);
    mags[id] = Float64Array.from(vals[id], (v, i) => Math.abs(Number(v)) * u + e[id][i]);
  };
  const mag = (id: number, i: number): number => mags[id][i];
  setMag(inT);

  for (const op of program.ops) {
    const out = new Float64Array(vals[op.dst].length);
    const du = unit(op.dst);
    switch (op.op) {
      case "dense": {
        const cu = du / unit(op.src);
        for (let r = 0; r < op.rows; r++)
          for (let j = 0; j < op.n; j++) {
            let acc = du / 2;
            for (let i = 0; i < op.k; i++) {
              const x = r * op.k + i;
              acc +=
                Math.abs(Number(op.weights[j * op.k + i])) * cu * e[op.src][x] + (cu / 2) * mag(op.src, x);
            }
            out[r * op.n + j] = acc;
          }
        break;
      }
      case "conv": {
        const cu = du / unit(op.src);
        out.fill(du / 2);
        forEachConvTap(op, (o, x, wi) => {
          out[o] += Math.abs(Number(op.weights[wi])) * cu * e[op.src][x] + (cu / 2) * mag(op.src, x);
        });
        break;
      }
      case "lincomb": {
        for (let i = 0; i < op.size; i++) {
          let acc = du / 2 + (op.approxError ?? 0);
          for (const t of op.terms) {
            const cu = du / unit(t.src);
            const c = Math.abs(Number(t.coef.length === 1 ? t.coef[0] : t.coef[i]));
            const x = t.index ? t.index[i] : i;
            // A coefficient at scale 0 is an exact integer; a real one carries half a unit.
            acc += c * cu * e[t.src][x] + (cu < 1 ? (cu / 2) * mag(t.src, x) : 0);
          }
          out[i] = acc;
        }
        break;
      }
      case "mul": {
        const [ua, ub] = [unit(op.a), unit(op.b)];
        op.ia.forEach((ja, i) => {
          const jb = op.ib[i];
          const [a, b] = [Math.abs(Number(vals[op.a][ja])) * ua, Math.abs(Number(vals[op.b][jb])) * ub];
          const [ea, eb] = [e[op.a][ja], e[op.b][jb]];
          out[i] = a * eb + b * ea + ea * eb;
        });
        break;
      }
      case "rescale":
        e[op.src].forEach((v, i) => (out[i] = v + du / 2));
        break;
      case "relu":
        out.set(e[op.src]);
        break;
      case "maxpool":
        op.windows.forEach((win, i) => (out[i] = Math.max(...win.map((j) => e[op.src][j]))));
        break;
      case "sumpool": {
        const cu = du / unit(op.src);
        op.windows.forEach((win, i) => {
          const m = Number(op.mult[i]) * cu;
          out[i] = win.reduce((acc, j) => acc + m * e[op.src][j] + (cu / 2) * mag(op.src, j), 0);
        });
        break;
      }
      case "gather":
        op.srcs.forEach((src, i) => (out[i] = src < 0 ? du / 2 : e[src][op.idx[i]]));
        break;
      case "compare": {
        // 0 where the decision is certain: the value is further from the threshold than its bound (and a
        // unit, for the threshold's own rounding); otherwise the bit may differ from the exact model's: 1.
        const su = unit(op.src);
        op.index.forEach((j, i) => {
          const gap = Math.abs(Number(vals[op.src][j] - op.consts[i])) * su;
          out[i] = gap <= e[op.src][j] + su ? 1 : 0;
        });
        break;
      }
      case "interval": {
        // every entry of a group may differ when the value is within its bound (plus a unit) of a cut
        const su = unit(op.src);
        let at = 0;
        op.index.forEach((j, g) => {
          const x = vals[op.src][j];
          const near = op.cuts[g].some((c) => Math.abs(Number(x - c)) * su <= e[op.src][j] + su);
          for (let k = 0; k <= op.cuts[g].length; k++) out[at++] = near ? 1 : 0;
        });
        break;
      }
      case "divide": {
        // x/d - x'/d' = (x - x')/d + (x'/d')(d' - d)/d, and |d| >= |d'| - e_d; a divisor within its bound
        // of 0 may be 0 in the exact model (a pass-through, or a sign change): no finite bound.
        const [nu, dnu] = [unit(op.src), unit(op.den)];
        for (let r = 0; r < op.rows; r++) {
          const d = Math.abs(Number(vals[op.den][r])) * dnu;
          const ed = e[op.den][r];
          for (let j = 0; j < op.cols; j++) {
            const i = r * op.cols + j;
            if (d === 0 && ed === 0) out[i] = op.signed ? e[op.src][i] : 0;
            else if (d <= ed) out[i] = Infinity;
            else {
              const ratio = (Math.abs(Number(vals[op.src][i])) * nu) / d;
              out[i] = (e[op.src][i] + ratio * ed) / (d - ed) + du / 2;
            }
          }
        }
        break;
      }
      case "isqrt": {
        // |sqrt(a) - sqrt(b)| <= min(|a - b| / sqrt(a), sqrt(|a - b|)); the floor loses under one unit
        const su = unit(op.src);
        vals[op.src].forEach((v, i) => {
          const a = Number(v) * su;
          const es = e[op.src][i];
          out[i] = Math.min(a > 0 ? es / Math.sqrt(a) : Infinity, Math.sqrt(es)) + du;
        });
        break;
      }
      case "argmax": {
        const su = unit(op.src);
        const x = vals[op.src];
        op.groups.forEach((g, i) => {
          const chosen = Number(vals[op.dst][i]);
          const lowest = Math.max(...g.map((j) => Number(x[j]) * su - e[op.src][j]));
          let worst = 0;
          g.forEach((j, k) => {
            if (Number(x[j]) * su + e[op.src][j] >= lowest) worst = Math.max(worst, Math.abs(k - chosen));
          });
          out[i] = worst;
        });
        break;
      }
    }
    e[op.dst] = out;
    setMag(op.dst);
  }
  return e;
}
