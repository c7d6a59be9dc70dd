/**
 * The quantized program: what the circuit computes and what the fixed-point executor computes, op for op.
 *
 * Every tensor is a flat row-major array of integers. `scale` is the power of two, in multiples of the
 * program's `scaleBits` s, the integers are multiplied by: 1 for activations (x = v / 2^s), 2 for
 * accumulators that must be rescaled (x = v / 2^2s), 0 for plain integers (ArgMax indices). `maxAbs` is a
 * static bound on |v| derived by interval arithmetic from the range-checked inputs; range-check widths come
 * from it, so a value can never wrap around the field.
 */
export interface QTensor {
  id: number;
  shape: number[];
  scale: 0 | 1 | 2;
  maxAbs: bigint;
}

/** acc[r][n] = bias[n] + sum_k weights[n*k + k] * src[r][k]. Free in R1CS (a linear combination). */
export interface DenseOp {
  op: "dense";
  node: string;
  src: number;
  dst: number;
  rows: number;
  k: number;
  n: number;
  weights: bigint[];
  bias: bigint[];
}

/** 2-D convolution (NCHW, groups allowed); zero padding. Free in R1CS. */
export interface ConvOp {
  op: "conv";
  node: string;
  src: number;
  dst: number;
  batch: number;
  c: number;
  h: number;
  w: number;
  oc: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  strides: [number, number];
  pads: [number, number];
  dilations: [number, number];
  group: number;
  weights: bigint[];
  bias: bigint[];
}

/** One term of a linear combination: coef (one per output element, or one for all) times src[index[i]]. */
export interface LinTerm {
  src: number;
  coef: bigint[];
  index: number[] | null;
}

/** dst[i] = bias[i] + sum_terms coef[i] * src[index[i]]. Free in R1CS. */
export interface LinCombOp {
  op: "lincomb";
  node: string;
  dst: number;
  size: number;
  terms: LinTerm[];
  bias: bigint[];
  /**
   * Where this op completes an approximation of a function (Sigmoid, Tanh: piecewise linear), the
   * documented bound on |approximation - function|, in real units, beyond fixed-point rounding.
   */
  approxError?: number;
}

/** dst[i] = a[ia[i]] * b[ib[i]]: one constraint per element. */
export interface MulOp {
  op: "mul";
  node: string;
  a: number;
  b: number;
  ia: number[];
  ib: number[];
  dst: number;
}

/**
 * dst = floor((src + 2^(shift-1)) / 2^shift), range-checked to `bits` signed bits (and ReLU'd when `relu`):
 * one Num2Bits(shift + bits) per element (+1 for the ReLU product).
 */
export interface RescaleOp {
  op: "rescale";
  node: string;
  src: number;
  dst: number;
  shift: number;
  bits: number;
  relu: boolean;
}

/** dst = max(src, 0): sign bit from Num2Bits(bits) of src + 2^(bits-1), then one product. */
export interface ReluOp {
  op: "relu";
  node: string;
  src: number;
  dst: number;
  bits: number;
}

/** dst[i] = max over windows[i] of src: (len-1) comparisons of `bits` + 1 bits each. */
export interface MaxPoolOp {
  op: "maxpool";
  node: string;
  src: number;
  dst: number;
  windows: number[][];
  bits: number;
}

/** dst[i] = mult[i] * sum over windows[i] of src (average pooling at scale 2s). Free in R1CS. */
export interface SumPoolOp {
  op: "sumpool";
  node: string;
  src: number;
  dst: number;
  windows: number[][];
  mult: bigint[];
}

/** dst[i] = src[i] when srcs[i] >= 0, else consts[idx[i]]: wiring (reshape, transpose, pad, concat). */
export interface GatherOp {
  op: "gather";
  node: string;
  dst: number;
  srcs: number[];
  idx: number[];
  consts: bigint[];
}

/** dst[i] = index (0-based, first on ties) of the maximum of src over groups[i]. */
export interface ArgMaxOp {
  op: "argmax";
  node: string;
  src: number;
  dst: number;
  groups: number[][];
  bits: number;
}

/**
 * A comparison against constants: dst[i] = 1 when src[index[i]] (kind[i]) consts[i] holds, else 0 (a plain
 * integer, scale 0). "lt": src < c and "ge": src >= c cost one Num2Bits(bits + 1) each (|src - c| < 2^bits);
 * "eq" / "ne" cost two constraints (an inverse witness). Tree ensembles' branch tests lower to these.
 */
export interface CompareOp {
  op: "compare";
  node: string;
  src: number;
  dst: number;
  index: number[];
  consts: bigint[];
  kinds: CompareKind[];
  bits: number;
}

export type CompareKind = "lt" | "ge" | "eq" | "ne";

/**
 * Interval decomposition: for each group g, the one-hot vector (k + 1 entries, scale 0) of the interval of
 * src[index[g]] among the ascending cut points cuts[g] (interval m = [cuts[m-1], cuts[m]), with lo and hi
 * closing the ends; the value is known to lie in [lo, hi)). dst is the concatenation of the groups'
 * vectors. Every "value < cut" test against these cuts is then a free sum of entries. Cost per group:
 * k + 1 booleanity constraints and two Num2Bits(bits) (value - lower end, upper end - 1 - value).
 */
export interface IntervalOp {
  op: "interval";
  node: string;
  src: number;
  dst: number;
  index: number[];
  cuts: bigint[][];
  lo: bigint;
  hi: bigint;
  bits: number;
}

/**
 * Row-wise division by a computed divisor, rounded to nearest (half up): for element i of row r,
 * dst[i] = floor((2 N 2^shift + D) / 2D) with D = |den[r]| + [den[r] = 0] (so D >= 1) and N = src[i] (times
 * the divisor's sign when `signed`). Where den[r] = 0 and `signed`, the row passes through: dst[i] = src[i]
 * (ONNX-ML Normalizer's rule; unsigned divisors are zero only for all-zero rows, whose quotients are 0).
 * Proven by 2 N 2^shift + D = 2 q D + rem with 0 <= rem < 2D and q in `quotBits` signed bits. Cost per
 * element: 1 product + quotBits + 2 remBits (+2 products when signed); per row: 2 (IsZero) (+ denBits + 1
 * when signed: the sign bit and |den|).
 */
export interface DivideOp {
  op: "divide";
  node: string;
  /** The numerator; opSources lists it and the divisor `den`. */
  src: number;
  den: number;
  dst: number;
  rows: number;
  cols: number;
  shift: number;
  signed: boolean;
  /** Signed width of den (its sign bit, when `signed`). */
  denBits: number;
  /** Unsigned width holding 2 * max(D). */
  remBits: number;
  /** Signed width of the quotient. */
  quotBits: number;
}

/**
 * dst[i] = floor(sqrt(src[i] * 2^shift)) for src >= 0: a hint r bound by r in [0, 2^bits), src 2^shift - r^2
 * in [0, 2^(bits+1)) and r^2 + 2r - src 2^shift in [0, 2^(bits+1)), i.e. r^2 <= src 2^shift < (r+1)^2.
 * Cost per element: 3 bits + 3 (one product).
 */
export interface IsqrtOp {
  op: "isqrt";
  node: string;
  src: number;
  dst: number;
  shift: number;
  bits: number;
}

export type QOp =
  | DenseOp
  | ConvOp
  | LinCombOp
  | MulOp
  | RescaleOp
  | ReluOp
  | MaxPoolOp
  | SumPoolOp
  | GatherOp
  | ArgMaxOp
  | CompareOp
  | IntervalOp
  | DivideOp
  | IsqrtOp;

/**
 * How a proven output is presented, applied off-circuit to the proven values (each monotone or affine in
 * them, so the proof still decides the result): the ONNX-ML post transforms and Softmax/LogSoftmax.
 */
export type OutputTransform = "none" | "softmax" | "logsoftmax" | "logistic" | "softmax_zero" | "probit";

/**
 * One of a multi-output model's outputs: a slice of the one proven flat output (every part at scale 1).
 */
export interface OutputPart {
  /** The ONNX graph output's name. */
  name: string;
  shape: number[];
  /** Where the part starts in the flat proven output, and how many values it has. */
  offset: number;
  size: number;
  postprocess: OutputTransform;
  /** As QProgram.output.normalize, within the part. */
  normalize?: { size: number; stride: number };
  /** A label output: each proven value is a class index; labels[index] is what the model outputs. */
  labels?: (number | string)[];
  /** A ZipMap output: each row becomes a map from these keys to the row's values. */
  zipmap?: (number | string)[];
}

export interface QProgram {
  scaleBits: number;
  activationBits: number;
  inputBits: number;
  input: { name: string; shape: number[]; tensor: number };
  output: {
    name: string;
    shape: number[];
    tensor: number;
    postprocess: OutputTransform;
    /**
     * The values the postprocess normalises together: groups of `size` elements `stride` apart in the
     * flat output (ONNX Softmax over axis a: size = dims[a], stride = product of the dims after a; before
     * opset 13, over the dims from a on: stride 1). Absent: the last axis.
     */
    normalize?: { size: number; stride: number };
    /**
     * Present when the model has several outputs (or a label output): the proven tensor is their
     * concatenation, in graph order, and each part says how its slice reads; `postprocess` is then "none".
     */
    parts?: OutputPart[];
  };
  tensors: QTensor[];
  ops: QOp[];
}
