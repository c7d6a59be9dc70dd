import { expect } from "chai";
import {
  executeQuantized,
  expectedPublicSignals,
  loadOnnx,
  quantizeGraph,
  referenceSession,
} from "../../zkml";
import { expectedConstraints, planCircuit } from "../../zkml/circuit/codegen";
import { executeWithErrorBound } from "../../zkml/quant/error-bound";
import { InitTensor, ModelSpec, NodeSpec, randomArray, seededRandom } from "../../zkml/onnx/builder";
import {
  ELU_MAX_ERROR,
  PiecewiseLinear,
  SOFTPLUS_CURVE,
  SOFTPLUS_MAX_ERROR,
  SOFTSIGN_CURVE,
  SOFTSIGN_MAX_ERROR,
  eluCurve,
  evalPiecewiseLinear,
} from "../../zkml/quant/ops/activations";
import { compileNoSetup, publicOf, witnessFor, writeModel } from "./helpers";

/**
 * Per-op conformance: each supported op on random inputs. The fixed-point executor must match onnxruntime's
 * float output within the op's tolerance (scale 2^-8; documented in docs/zkml.md), and the circuit's
 * witness must equal the executor's output bit for bit, with the constraint count the cost model predicts.
 */
interface OpCase {
  name: string;
  inputDims: number[];
  outputDims: number[];
  nodes: NodeSpec[];
  init?: Record<string, InitTensor>;
  tolerance: number;
  outputElemType?: number;
  /** ops the lowered program must contain (checks folding, e.g. no rescale for BatchNorm after Conv) */
  expectOps?: string[];
  inputScale?: number;
  opset?: number;
  /** the compiled circuit's constraint count, pinned (the cost model is checked for every case) */
  constraints?: number;
}

const rand = seededRandom(42);
const w = (dims: number[], scale = 0.5): InitTensor => ({
  dims,
  data: randomArray(
    dims.reduce((a, b) => a * b, 1),
    rand,
    scale,
  ),
});
const ints = (data: number[]): InitTensor => ({ dims: [data.length], data, type: "int64" });
const scalar = (v: number): InitTensor => ({ dims: [], data: [v] });

const CASES: OpCase[] = [
  {
    name: "Gemm (transB, alpha, beta, 2 rows)",
    inputDims: [2, 5],
    outputDims: [2, 3],
    nodes: [
      {
        op: "Gemm",
        inputs: ["x", "W", "C"],
        outputs: ["y"],
        attrs: { transB: 1, alpha: 0.5, beta: { float: 2 } },
      },
    ],
    init: { W: w([3, 5]), C: w([3]) },
    tolerance: 0.02,
  },
  {
    name: "MatMul + Add (bias broadcast)",
    inputDims: [1, 6],
    outputDims: [1, 4],
    nodes: [
      { op: "MatMul", inputs: ["x", "W"], outputs: ["m"] },
      { op: "Add", inputs: ["m", "b"], outputs: ["y"] },
    ],
    init: { W: w([6, 4]), b: w([4]) },
    tolerance: 0.02,
  },
  {
    name: "Add / Sub of computed tensors with broadcasting",
    inputDims: [1, 2, 3],
    outputDims: [1, 2, 3],
    nodes: [
      { op: "Relu", inputs: ["x"], outputs: ["r"] },
      { op: "Add", inputs: ["x", "r"], outputs: ["s"] },
      { op: "Sub", inputs: ["s", "c"], outputs: ["y"] },
    ],
    init: { c: w([3]) },
    tolerance: 0.01,
  },
  {
    name: "Mul and Div by constants",
    inputDims: [1, 2, 3],
    outputDims: [1, 2, 3],
    nodes: [
      { op: "Mul", inputs: ["x", "c"], outputs: ["m"] },
      { op: "Div", inputs: ["m", "d"], outputs: ["y"] },
    ],
    init: { c: w([1, 3], 2), d: scalar(3) },
    tolerance: 0.01,
  },
  {
    name: "Mul of two computed tensors",
    inputDims: [1, 4],
    outputDims: [1, 4],
    nodes: [
      { op: "Relu", inputs: ["x"], outputs: ["r"] },
      { op: "Mul", inputs: ["x", "r"], outputs: ["y"] },
    ],
    tolerance: 0.01,
    expectOps: ["relu", "mul", "rescale"],
  },
  {
    name: "Relu on the input",
    inputDims: [1, 6],
    outputDims: [1, 6],
    nodes: [{ op: "Relu", inputs: ["x"], outputs: ["y"] }],
    tolerance: 0.005,
    expectOps: ["relu"],
  },
  {
    name: "LeakyRelu",
    inputDims: [1, 6],
    outputDims: [1, 6],
    nodes: [{ op: "LeakyRelu", inputs: ["x"], outputs: ["y"], attrs: { alpha: 0.1 } }],
    tolerance: 0.01,
  },
  {
    name: "Clip (min/max inputs, opset 13)",
    inputDims: [1, 8],
    outputDims: [1, 8],
    nodes: [{ op: "Clip", inputs: ["x", "lo", "hi"], outputs: ["y"] }],
    init: { lo: scalar(-0.5), hi: scalar(0.7) },
    tolerance: 0.005,
  },
  {
    name: "Sigmoid (piecewise linear, max error 0.019)",
    inputDims: [1, 8],
    outputDims: [1, 8],
    nodes: [{ op: "Sigmoid", inputs: ["x"], outputs: ["y"] }],
    tolerance: 0.025,
    inputScale: 6,
  },
  {
    name: "Tanh (piecewise linear, max error 0.038)",
    inputDims: [1, 8],
    outputDims: [1, 8],
    nodes: [{ op: "Tanh", inputs: ["x"], outputs: ["y"] }],
    tolerance: 0.045,
    inputScale: 3,
  },
  {
    name: "Conv (stride 2, pads, groups 2, bias)",
    inputDims: [1, 2, 6, 6],
    outputDims: [1, 4, 3, 3],
    nodes: [
      {
        op: "Conv",
        inputs: ["x", "W", "B"],
        outputs: ["y"],
        attrs: { group: 2, pads: [1, 1, 1, 1], strides: [2, 2], kernel_shape: [3, 3] },
      },
    ],
    init: { W: w([4, 1, 3, 3]), B: w([4]) },
    tolerance: 0.02,
  },
  {
    name: "Conv (dilation 2) + BatchNormalization folded",
    inputDims: [1, 1, 5, 5],
    outputDims: [1, 2, 5, 5],
    nodes: [
      {
        op: "Conv",
        inputs: ["x", "W"],
        outputs: ["c"],
        attrs: { dilations: [2, 2], pads: [2, 2, 2, 2] },
      },
      { op: "BatchNormalization", inputs: ["c", "g", "b", "m", "v"], outputs: ["y"] },
    ],
    init: {
      W: w([2, 1, 3, 3]),
      g: { dims: [2], data: [1.5, 0.5] },
      b: { dims: [2], data: [0.1, -0.2] },
      m: { dims: [2], data: [0.05, -0.1] },
      v: { dims: [2], data: [0.8, 1.2] },
    },
    tolerance: 0.03,
    expectOps: ["conv", "rescale"],
  },
  {
    name: "BatchNormalization on its own (per-channel affine)",
    inputDims: [1, 3, 2, 2],
    outputDims: [1, 3, 2, 2],
    nodes: [
      {
        op: "BatchNormalization",
        inputs: ["x", "g", "b", "m", "v"],
        outputs: ["y"],
        attrs: { epsilon: 1e-3 },
      },
    ],
    init: {
      g: { dims: [3], data: [1.5, 0.5, -1] },
      b: { dims: [3], data: [0.1, -0.2, 0.3] },
      m: { dims: [3], data: [0.05, -0.1, 0.2] },
      v: { dims: [3], data: [0.8, 1.2, 0.3] },
    },
    tolerance: 0.02,
  },
  {
    name: "MaxPool (3x3, stride 2, pads 1)",
    inputDims: [1, 2, 5, 5],
    outputDims: [1, 2, 3, 3],
    nodes: [
      {
        op: "MaxPool",
        inputs: ["x"],
        outputs: ["y"],
        attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
      },
    ],
    tolerance: 0.003,
  },
  {
    name: "MaxPool (2x2, ceil_mode)",
    inputDims: [1, 1, 5, 5],
    outputDims: [1, 1, 3, 3],
    nodes: [
      {
        op: "MaxPool",
        inputs: ["x"],
        outputs: ["y"],
        attrs: { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 },
      },
    ],
    tolerance: 0.003,
  },
  {
    name: "AveragePool (pads, count_include_pad 0)",
    inputDims: [1, 2, 4, 4],
    outputDims: [1, 2, 3, 3],
    nodes: [
      {
        op: "AveragePool",
        inputs: ["x"],
        outputs: ["y"],
        attrs: { kernel_shape: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1] },
      },
    ],
    tolerance: 0.01,
  },
  {
    name: "AveragePool (3x3, count_include_pad 1)",
    inputDims: [1, 1, 4, 4],
    outputDims: [1, 1, 4, 4],
    nodes: [
      {
        op: "AveragePool",
        inputs: ["x"],
        outputs: ["y"],
        attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 1 },
      },
    ],
    tolerance: 0.01,
  },
  {
    name: "GlobalAveragePool",
    inputDims: [1, 3, 3, 3],
    outputDims: [1, 3, 1, 1],
    nodes: [{ op: "GlobalAveragePool", inputs: ["x"], outputs: ["y"] }],
    tolerance: 0.01,
  },
  {
    name: "Pad (constant value, asymmetric)",
    inputDims: [1, 1, 3, 3],
    outputDims: [1, 1, 5, 4],
    nodes: [{ op: "Pad", inputs: ["x", "pads", "v"], outputs: ["y"] }],
    init: { pads: ints([0, 0, 1, 1, 0, 0, 1, 0]), v: scalar(0.25) },
    tolerance: 0.003,
  },
  {
    name: "Transpose, Reshape (0 and -1), Slice, Concat with a constant, Squeeze, Unsqueeze",
    inputDims: [1, 2, 3, 4],
    outputDims: [1, 1, 11],
    nodes: [
      { op: "Transpose", inputs: ["x"], outputs: ["t"], attrs: { perm: [0, 2, 3, 1] } },
      { op: "Reshape", inputs: ["t", "shape"], outputs: ["r"] },
      { op: "Slice", inputs: ["r", "starts", "ends", "axes", "steps"], outputs: ["s"] },
      { op: "Concat", inputs: ["s", "k"], outputs: ["c"], attrs: { axis: 1 } },
      { op: "Unsqueeze", inputs: ["c", "ax0"], outputs: ["u"] },
      { op: "Squeeze", inputs: ["u", "ax0"], outputs: ["q"] },
      { op: "Unsqueeze", inputs: ["q", "ax1"], outputs: ["y"] },
    ],
    init: {
      shape: ints([0, -1]),
      starts: ints([2]),
      ends: ints([20]),
      axes: ints([1]),
      steps: ints([3]),
      k: w([1, 5]),
      ax0: ints([0]),
      ax1: ints([1]),
    },
    tolerance: 0.003,
  },
  {
    // With a negative step, starts clamp to [0, d-1] (not [-1, d-1]): a start below -d selects index 0.
    name: "Slice with negative steps from starts beyond either end",
    inputDims: [1, 2, 3, 4],
    outputDims: [1, 2, 1, 2],
    nodes: [{ op: "Slice", inputs: ["x", "starts", "ends", "axes", "steps"], outputs: ["y"] }],
    init: {
      starts: ints([-10, 10]),
      ends: ints([-1e9, -1e9]),
      axes: ints([2, -1]),
      steps: ints([-1, -2]),
    },
    tolerance: 0.003,
  },
  {
    name: "Flatten through an exporter-style Shape/Gather/Unsqueeze/Concat shape subgraph",
    inputDims: [1, 2, 2, 2],
    outputDims: [1, 8],
    nodes: [
      { op: "Shape", inputs: ["x"], outputs: ["shp"] },
      { op: "Gather", inputs: ["shp", "zero"], outputs: ["n"], attrs: { axis: 0 } },
      { op: "Unsqueeze", inputs: ["n", "ax0"], outputs: ["n1"] },
      { op: "Concat", inputs: ["n1", "minus1"], outputs: ["target"], attrs: { axis: 0 } },
      { op: "Reshape", inputs: ["x", "target"], outputs: ["f"] },
      { op: "Identity", inputs: ["f"], outputs: ["i"] },
      { op: "Dropout", inputs: ["i"], outputs: ["d"] },
      { op: "Flatten", inputs: ["d"], outputs: ["fl"], attrs: { axis: 1 } },
      { op: "Relu", inputs: ["fl"], outputs: ["y"] },
    ],
    init: { zero: { dims: [], data: [0], type: "int64" }, ax0: ints([0]), minus1: ints([-1]) },
    tolerance: 0.003,
    expectOps: ["relu"],
  },
  {
    // A pre-ReLU value read again through an alias: fusing the ReLU into the Gemm's rescale would clamp
    // the Add's operand too (issue 8, item 9).
    name: "Relu through a Flatten alias of a value an Add also reads (not fused)",
    inputDims: [1, 4],
    outputDims: [1, 4],
    nodes: [
      { op: "Gemm", inputs: ["x", "W", "C"], outputs: ["g"], attrs: { transB: 1 } },
      { op: "Flatten", inputs: ["g"], outputs: ["f"] },
      { op: "Relu", inputs: ["f"], outputs: ["r"] },
      { op: "Add", inputs: ["g", "r"], outputs: ["y"] },
    ],
    init: { W: w([4, 4]), C: w([4]) },
    tolerance: 0.02,
    expectOps: ["dense", "rescale", "relu", "lincomb"],
  },
  {
    name: "Relu through Reshape, Identity, Dropout, Cast, Unsqueeze, Squeeze of a value a Sub also reads",
    inputDims: [1, 4],
    outputDims: [1, 4],
    nodes: [
      { op: "MatMul", inputs: ["x", "W"], outputs: ["m"] },
      { op: "Reshape", inputs: ["m", "shape"], outputs: ["a1"] },
      { op: "Identity", inputs: ["a1"], outputs: ["a2"] },
      { op: "Dropout", inputs: ["a2"], outputs: ["a3"] },
      { op: "Cast", inputs: ["a3"], outputs: ["a4"], attrs: { to: 1 } },
      { op: "Unsqueeze", inputs: ["a4", "ax0"], outputs: ["a5"] },
      { op: "Squeeze", inputs: ["a5", "ax0"], outputs: ["a6"] },
      { op: "Relu", inputs: ["a6"], outputs: ["r"] },
      { op: "Sub", inputs: ["r", "m"], outputs: ["y"] },
    ],
    init: { W: w([4, 4]), shape: ints([1, 4]), ax0: ints([0]) },
    tolerance: 0.02,
    expectOps: ["dense", "rescale", "relu", "lincomb"],
  },
  {
    name: "Relu through an alias that is the value's only reader (fused into the rescale)",
    inputDims: [1, 4],
    outputDims: [1, 4],
    nodes: [
      { op: "Gemm", inputs: ["x", "W", "C"], outputs: ["g"], attrs: { transB: 1 } },
      { op: "Flatten", inputs: ["g"], outputs: ["f"] },
      { op: "Relu", inputs: ["f"], outputs: ["y"] },
    ],
    init: { W: w([4, 4]), C: w([4]) },
    tolerance: 0.02,
    expectOps: ["dense", "rescale"],
  },
  {
    name: "Constant nodes as weights",
    inputDims: [1, 3],
    outputDims: [1, 2],
    nodes: [
      { op: "Constant", inputs: [], outputs: ["W"], attrs: { value: { tensor: w([3, 2]) } } },
      { op: "Constant", inputs: [], outputs: ["b"], attrs: { value_floats: { floats: [0.25, -0.5] } } },
      { op: "MatMul", inputs: ["x", "W"], outputs: ["m"] },
      { op: "Add", inputs: ["m", "b"], outputs: ["y"] },
    ],
    tolerance: 0.02,
  },
  {
    name: "Softmax at the end (applied off-circuit to the proven logits)",
    inputDims: [1, 4],
    outputDims: [1, 3],
    nodes: [
      { op: "Gemm", inputs: ["x", "W", "C"], outputs: ["l"], attrs: { transB: 1 } },
      { op: "Softmax", inputs: ["l"], outputs: ["y"], attrs: { axis: 1 } },
    ],
    init: { W: w([3, 4]), C: w([3]) },
    tolerance: 0.01,
  },
  {
    // Before opset 13 Softmax normalises all the dims from `axis` on together (issue 8, item 10).
    name: "Softmax at the end, opset 11, axis 1 of 3 (dims 1 and 2 together)",
    inputDims: [2, 2, 3],
    outputDims: [2, 2, 3],
    nodes: [
      { op: "Mul", inputs: ["x", "c"], outputs: ["l"] },
      { op: "Softmax", inputs: ["l"], outputs: ["y"], attrs: { axis: 1 } },
    ],
    init: { c: scalar(2) },
    tolerance: 0.01,
    opset: 11,
  },
  {
    name: "LogSoftmax at the end over axis 1 of 3 (not the last axis)",
    inputDims: [2, 3, 2],
    outputDims: [2, 3, 2],
    nodes: [
      { op: "Mul", inputs: ["x", "c"], outputs: ["l"] },
      { op: "LogSoftmax", inputs: ["l"], outputs: ["y"], attrs: { axis: 1 } },
    ],
    init: { c: scalar(2) },
    tolerance: 0.02,
  },
  {
    // A bias that varies by row, with M = N, so it cannot be mistaken for a per-column bias.
    name: "Gemm with a bias C of shape [M, 1]",
    inputDims: [3, 4],
    outputDims: [3, 3],
    nodes: [{ op: "Gemm", inputs: ["x", "W", "C"], outputs: ["y"], attrs: { beta: { float: 0.5 } } }],
    init: { W: w([4, 3]), C: w([3, 1]) },
    tolerance: 0.02,
    expectOps: ["dense", "lincomb", "rescale"],
  },
  {
    name: "Dropout with training_mode=false, and with training_mode=true at ratio 0 (both the identity)",
    inputDims: [1, 6],
    outputDims: [1, 6],
    nodes: [
      { op: "Dropout", inputs: ["x", "half", "no"], outputs: ["d"] },
      { op: "Dropout", inputs: ["d", "zero", "yes"], outputs: ["e", "mask"] },
      { op: "Relu", inputs: ["e"], outputs: ["y"] },
    ],
    init: {
      half: scalar(0.5),
      zero: scalar(0),
      no: { dims: [], data: [0], type: "bool" },
      yes: { dims: [], data: [1], type: "bool" },
    },
    tolerance: 0.005,
    expectOps: ["relu"],
  },
  {
    name: "ArgMax at the end (in-circuit index)",
    inputDims: [1, 6],
    outputDims: [1],
    nodes: [
      { op: "Gemm", inputs: ["x", "W", "C"], outputs: ["l"], attrs: { transB: 1 } },
      { op: "ArgMax", inputs: ["l"], outputs: ["y"], attrs: { axis: 1, keepdims: 0 } },
    ],
    init: { W: w([5, 6]), C: w([5]) },
    outputElemType: 7,
    tolerance: 0,
    expectOps: ["dense", "rescale", "argmax"],
  },
];

// ---- activations: PRelu, Max/Min (exact), Elu, Selu, Softplus, Softsign (piecewise linear) ----
// Each approximation's tolerance is its stated error (zkml/quant/ops/activations.ts) plus quantization.
const ACTIVATION_CASES: OpCase[] = [
  {
    name: "PRelu (slope per channel, [C,1,1])",
    inputDims: [1, 3, 2, 2],
    outputDims: [1, 3, 2, 2],
    nodes: [{ op: "PRelu", inputs: ["x", "slope"], outputs: ["y"] }],
    init: { slope: { dims: [3, 1, 1], data: [0.25, -0.5, 1.5] } },
    tolerance: 0.01,
  },
  {
    name: "PRelu (one shared slope)",
    inputDims: [2, 4],
    outputDims: [2, 4],
    nodes: [{ op: "PRelu", inputs: ["x", "slope"], outputs: ["y"] }],
    init: { slope: { dims: [1], data: [0.1] } },
    tolerance: 0.01,
  },
  {
    name: "Max of three inputs (two computed, one constant) with broadcasting",
    inputDims: [2, 3],
    outputDims: [2, 3],
    nodes: [
      { op: "Mul", inputs: ["x", "k"], outputs: ["m"] },
      { op: "Max", inputs: ["x", "m", "c"], outputs: ["y"] },
    ],
    init: { k: { dims: [2, 1], data: [-1, 0.5] }, c: { dims: [3], data: [-0.25, 0, 0.3] } },
    tolerance: 0.01,
  },
  {
    name: "Min of a computed tensor and two constants (broadcast up to the output shape)",
    inputDims: [1, 3],
    outputDims: [2, 3],
    nodes: [{ op: "Min", inputs: ["x", "c", "d"], outputs: ["y"] }],
    init: { c: { dims: [2, 1], data: [0.2, -0.1] }, d: scalar(0.5) },
    tolerance: 0.005,
  },
  {
    name: "Elu (alpha 0.5, piecewise linear, max error 0.0053)",
    inputDims: [1, 8],
    outputDims: [1, 8],
    nodes: [{ op: "Elu", inputs: ["x"], outputs: ["y"], attrs: { alpha: 0.5 } }],
    tolerance: 0.015,
    inputScale: 6,
  },
  {
    name: "Selu (defaults, piecewise linear, max error 0.0185)",
    inputDims: [1, 8],
    outputDims: [1, 8],
    nodes: [{ op: "Selu", inputs: ["x"], outputs: ["y"] }],
    tolerance: 0.03,
    inputScale: 6,
  },
  {
    name: "Softplus (piecewise linear, max error 0.0100)",
    inputDims: [1, 8],
    outputDims: [1, 8],
    nodes: [{ op: "Softplus", inputs: ["x"], outputs: ["y"] }],
    tolerance: 0.02,
    inputScale: 7,
  },
  {
    name: "Softsign (piecewise linear, max error 0.0201, inputs out to the flat tails)",
    inputDims: [1, 8],
    outputDims: [1, 8],
    nodes: [{ op: "Softsign", inputs: ["x"], outputs: ["y"] }],
    tolerance: 0.03,
    inputScale: 40,
  },
];

// ---- 1-D/3-D convolution and pooling, global max, reductions, reflect/edge Pad, Gemm with any bias C ----
const SPATIAL_CASES: OpCase[] = [
  {
    name: "Conv 1-D (stride 2, asymmetric pads, groups 2, bias)",
    inputDims: [1, 4, 9],
    outputDims: [1, 4, 5],
    nodes: [
      {
        op: "Conv",
        inputs: ["x", "W", "B"],
        outputs: ["y"],
        attrs: { group: 2, pads: [1, 2], strides: [2], kernel_shape: [3] },
      },
    ],
    init: { W: w([4, 2, 3]), B: w([4]) },
    tolerance: 0.02,
    expectOps: ["conv", "rescale"],
  },
  {
    name: "Conv 1-D (dilation 2) + Relu, then Conv 1-D auto_pad SAME_LOWER",
    inputDims: [1, 2, 10],
    outputDims: [1, 2, 6],
    nodes: [
      { op: "Conv", inputs: ["x", "W"], outputs: ["c"], attrs: { dilations: [2] } },
      { op: "Relu", inputs: ["c"], outputs: ["r"] },
      {
        op: "Conv",
        inputs: ["r", "V"],
        outputs: ["y"],
        attrs: { auto_pad: "SAME_LOWER", kernel_shape: [2] },
      },
    ],
    init: { W: w([3, 2, 3]), V: w([2, 3, 2]) },
    tolerance: 0.03,
  },
  {
    name: "Conv 3-D (groups 2, depth stride 2 and dilation 2, asymmetric pads, bias)",
    inputDims: [1, 2, 4, 4, 4],
    outputDims: [1, 2, 2, 4, 3],
    nodes: [
      {
        op: "Conv",
        inputs: ["x", "W", "B"],
        outputs: ["y"],
        attrs: { group: 2, strides: [2, 1, 1], dilations: [2, 1, 1], pads: [1, 1, 0, 0, 1, 1] },
      },
    ],
    init: { W: w([2, 1, 2, 3, 3]), B: w([2]) },
    tolerance: 0.03,
    expectOps: ["gather", "conv", "gather", "conv", "lincomb", "rescale"],
  },
  {
    name: "MaxPool 1-D (3, stride 2, pads 1)",
    inputDims: [1, 2, 9],
    outputDims: [1, 2, 5],
    nodes: [
      {
        op: "MaxPool",
        inputs: ["x"],
        outputs: ["y"],
        attrs: { kernel_shape: [3], strides: [2], pads: [1, 1] },
      },
    ],
    tolerance: 0.003,
  },
  {
    name: "AveragePool 1-D (pads, count_include_pad 0, ceil_mode)",
    inputDims: [1, 2, 8],
    outputDims: [1, 2, 5],
    nodes: [
      {
        op: "AveragePool",
        inputs: ["x"],
        outputs: ["y"],
        attrs: { kernel_shape: [3], strides: [2], pads: [1, 1], ceil_mode: 1 },
      },
    ],
    tolerance: 0.01,
  },
  {
    name: "MaxPool 3-D (2x2x2, stride 2) and AveragePool 3-D (count_include_pad 1)",
    inputDims: [1, 1, 4, 4, 4],
    outputDims: [1, 1, 2, 2, 2],
    nodes: [
      {
        op: "AveragePool",
        inputs: ["x"],
        outputs: ["a"],
        attrs: { kernel_shape: [2, 2, 2], pads: [0, 0, 0, 1, 1, 1], count_include_pad: 1 },
      },
      {
        op: "MaxPool",
        inputs: ["a"],
        outputs: ["y"],
        attrs: { kernel_shape: [2, 2, 2], strides: [2, 2, 2] },
      },
    ],
    tolerance: 0.01,
  },
  {
    name: "GlobalMaxPool (2-D) and GlobalMaxPool (1-D)",
    inputDims: [1, 3, 4, 4],
    outputDims: [1, 3, 1],
    nodes: [
      { op: "GlobalMaxPool", inputs: ["x"], outputs: ["g"] },
      { op: "Reshape", inputs: ["g", "s"], outputs: ["r"] },
      { op: "GlobalMaxPool", inputs: ["r"], outputs: ["y"] },
    ],
    init: { s: ints([1, 3, 1]) },
    tolerance: 0.003,
    expectOps: ["maxpool", "maxpool"],
  },
  {
    name: "Gemm with a full-matrix bias C [M, N] (constant)",
    inputDims: [3, 4],
    outputDims: [3, 2],
    nodes: [{ op: "Gemm", inputs: ["x", "W", "C"], outputs: ["y"], attrs: { beta: { float: 1.5 } } }],
    init: { W: w([4, 2]), C: w([3, 2]) },
    tolerance: 0.02,
  },
  {
    name: "Gemm with a computed bias C (addmm: beta * x + A B)",
    inputDims: [3, 4],
    outputDims: [3, 4],
    nodes: [
      { op: "Relu", inputs: ["x"], outputs: ["r"] },
      { op: "Gemm", inputs: ["r", "W", "x"], outputs: ["y"], attrs: { beta: { float: 0.5 } } },
    ],
    init: { W: w([4, 4]) },
    tolerance: 0.02,
    expectOps: ["relu", "dense", "lincomb", "rescale"],
  },
  {
    name: "ReduceSum (axes input, opset 13, keepdims 0), twice through an Unsqueeze",
    inputDims: [2, 3, 4],
    outputDims: [2, 4],
    nodes: [
      { op: "ReduceSum", inputs: ["x", "ax"], outputs: ["s"], attrs: { keepdims: 0 } },
      { op: "Unsqueeze", inputs: ["s", "ax0"], outputs: ["u"] },
      { op: "ReduceSum", inputs: ["u", "ax0"], outputs: ["y"], attrs: { keepdims: 0 } },
    ],
    init: { ax: ints([1]), ax0: ints([0]) },
    tolerance: 0.02,
    expectOps: ["lincomb", "lincomb"],
    opset: 13,
  },
  {
    name: "ReduceSum over axes [0, 2] (attribute, opset 11), keepdims",
    inputDims: [2, 3, 4],
    outputDims: [1, 3, 1],
    nodes: [{ op: "ReduceSum", inputs: ["x"], outputs: ["y"], attrs: { axes: [0, -1] } }],
    tolerance: 0.02,
    opset: 11,
  },
  {
    name: "ReduceMean over the last axis, and over every axis (empty axes)",
    inputDims: [1, 3, 5],
    outputDims: [1, 1, 1],
    nodes: [
      { op: "ReduceMean", inputs: ["x"], outputs: ["m"], attrs: { axes: [-1] } },
      { op: "ReduceMean", inputs: ["m"], outputs: ["y"] },
    ],
    tolerance: 0.01,
    expectOps: ["sumpool", "rescale", "sumpool", "rescale"],
    opset: 13,
  },
  {
    name: "ReduceMax (axes input, opset 18) and ReduceMin (axes attribute, keepdims 0)",
    inputDims: [2, 3, 4],
    outputDims: [3],
    nodes: [
      { op: "ReduceMax", inputs: ["x", "ax"], outputs: ["m"] },
      { op: "ReduceMin", inputs: ["m", "ax2"], outputs: ["y"], attrs: { keepdims: 0 } },
    ],
    init: { ax: ints([0]), ax2: ints([0, 2]) },
    tolerance: 0.003,
    opset: 18,
  },
  {
    name: "Pad mode reflect (asymmetric) and mode edge",
    inputDims: [1, 2, 4, 4],
    outputDims: [1, 2, 9, 8],
    nodes: [
      { op: "Pad", inputs: ["x", "p1"], outputs: ["r"], attrs: { mode: "reflect" } },
      { op: "Pad", inputs: ["r", "p2"], outputs: ["y"], attrs: { mode: "edge" } },
    ],
    init: { p1: ints([0, 0, 1, 2, 0, 0, 3, 1]), p2: ints([0, 0, 1, 0, 0, 0, 0, 1]) },
    tolerance: 0.003,
    expectOps: ["gather", "gather"],
  },
];

// ---- ConvTranspose (one linear combination, rescaled once), GLU (Split + Sigmoid + Mul), Split, Tile,
// Neg, Abs ----
const TRANSPOSE_GLU_CASES: OpCase[] = [
  {
    name: "ConvTranspose 2-D (strides [3, 2], asymmetric pads, output_padding, groups 2, bias)",
    inputDims: [1, 4, 3, 3],
    outputDims: [1, 2, 9, 6],
    nodes: [
      {
        op: "ConvTranspose",
        inputs: ["x", "W", "B"],
        outputs: ["y"],
        attrs: { group: 2, strides: [3, 2], pads: [1, 1, 0, 1], output_padding: [1, 1] },
      },
    ],
    init: { W: w([4, 1, 3, 3]), B: w([2]) },
    tolerance: 0.02,
    expectOps: ["gather", "lincomb", "rescale"],
    // 108 outputs x (8 + 17) for the one rescale; the rest is the input's and output's range checks.
    constraints: 5005,
  },
  {
    name: "ConvTranspose 1-D (stride 2, dilation 2, auto_pad SAME_UPPER with an odd total padding, bias)",
    inputDims: [1, 2, 5],
    outputDims: [1, 3, 10],
    nodes: [
      {
        op: "ConvTranspose",
        inputs: ["x", "W", "B"],
        outputs: ["y"],
        attrs: { strides: [2], dilations: [2], auto_pad: "SAME_UPPER" },
      },
    ],
    init: { W: w([2, 3, 3]), B: w([3]) },
    tolerance: 0.02,
  },
  {
    name: "ConvTranspose 3-D (stride 2, output_shape: one past the full size, one odd total padding)",
    inputDims: [1, 1, 2, 2, 2],
    outputDims: [1, 2, 5, 4, 3],
    nodes: [
      {
        op: "ConvTranspose",
        inputs: ["x", "W"],
        outputs: ["y"],
        attrs: { strides: [2, 2, 2], output_shape: [5, 4, 3] },
      },
    ],
    init: { W: w([1, 2, 2, 2, 2]) },
    tolerance: 0.01,
  },
  {
    name: "GLU as PyTorch exports it (Split in equal halves + Sigmoid + Mul)",
    inputDims: [2, 4, 3],
    outputDims: [2, 2, 3],
    nodes: [
      { op: "Split", inputs: ["x"], outputs: ["a", "b"], attrs: { axis: 1 } },
      { op: "Sigmoid", inputs: ["b"], outputs: ["s"] },
      { op: "Mul", inputs: ["a", "s"], outputs: ["y"] },
    ],
    tolerance: 0.05,
    inputScale: 2,
    // per output: Sigmoid's 6 relus and rescale, one product and its rescale
    constraints: 2401,
  },
  {
    name: "Split (sizes input) + Concat reordering, Neg, Tile, Abs",
    inputDims: [2, 5],
    outputDims: [4, 5],
    nodes: [
      { op: "Split", inputs: ["x", "sizes"], outputs: ["a", "b"], attrs: { axis: -1 } },
      { op: "Neg", inputs: ["a"], outputs: ["n"] },
      { op: "Concat", inputs: ["b", "n"], outputs: ["c"], attrs: { axis: 1 } },
      { op: "Tile", inputs: ["c", "reps"], outputs: ["t"] },
      { op: "Abs", inputs: ["t"], outputs: ["y"] },
    ],
    init: { sizes: ints([2, 3]), reps: ints([2, 1]) },
    tolerance: 0.003,
  },
  {
    name: "Sum of two computed tensors and two constants (broadcast), Mean of two",
    inputDims: [2, 3],
    outputDims: [2, 3],
    nodes: [
      { op: "Neg", inputs: ["x"], outputs: ["n"] },
      { op: "Sum", inputs: ["x", "c", "n", "k"], outputs: ["s"] },
      { op: "Mean", inputs: ["s", "n"], outputs: ["y"] },
    ],
    init: { c: w([3]), k: w([2, 1]) },
    tolerance: 0.01,
    expectOps: ["lincomb", "lincomb", "lincomb", "rescale"],
  },
  {
    name: "Split num_outputs 3 of 7 (opset 18: parts of 3, 3, 1)",
    inputDims: [1, 7],
    outputDims: [1, 7],
    nodes: [
      { op: "Split", inputs: ["x"], outputs: ["a", "b", "c"], attrs: { axis: 1, num_outputs: 3 } },
      { op: "Concat", inputs: ["c", "a", "b"], outputs: ["y"], attrs: { axis: 1 } },
    ],
    tolerance: 0.003,
    opset: 18,
  },
];

function specOf(c: OpCase): ModelSpec {
  return {
    input: { name: "x", dims: c.inputDims },
    output: { name: "y", dims: c.outputDims, elemType: c.outputElemType },
    nodes: c.nodes,
    initializers: c.init,
    opset: c.opset,
  };
}

describe("zkml semantics before opset 7 (onnxruntime cannot load these: checked by hand)", function () {
  it("Add/Mul with broadcast=1 line B up at `axis` (or A's last dims); Reshape takes its shape attribute", function () {
    const spec: ModelSpec = {
      input: { name: "x", dims: [1, 2, 3] },
      output: { name: "y", dims: [1, 6] },
      nodes: [
        { op: "Add", inputs: ["x", "B"], outputs: ["a"], attrs: { broadcast: 1, axis: 1 } },
        { op: "Mul", inputs: ["a", "C"], outputs: ["m"], attrs: { broadcast: 1 } },
        { op: "Reshape", inputs: ["m"], outputs: ["y"], attrs: { shape: [1, 6] } },
      ],
      initializers: { B: { dims: [2], data: [0.5, -1] }, C: { dims: [3], data: [1, 2, -0.25] } },
      opset: 4,
    };
    const x = [0.25, -0.5, 0.75, 1, 0, -0.125];
    const want = x.map((v, i) => (v + [0.5, -1][Math.floor(i / 3)]) * [1, 2, -0.25][i % 3]);
    const out = executeQuantized(quantizeGraph(loadOnnx(writeModel(spec))), x).output;
    out.forEach((v, i) => expect(v).to.be.closeTo(want[i], 0.01, `output ${i}`));
    const strict = { ...spec, nodes: [{ op: "Add", inputs: ["x", "B"], outputs: ["y"] }] };
    expect(() => quantizeGraph(loadOnnx(writeModel(strict)))).to.throw(/differ and broadcast=0/);
  });
});

describe("zkml per-op conformance (executor vs onnxruntime, circuit vs executor)", function () {
  it("a ReLU read through a Flatten alias leaves the Add's operand unclamped (onnxruntime's numbers)", async function () {
    const file = writeModel({
      input: { name: "x", dims: [1, 4] },
      output: { name: "y", dims: [1, 4] },
      nodes: [
        { op: "Gemm", inputs: ["x", "W"], outputs: ["g"] },
        { op: "Flatten", inputs: ["g"], outputs: ["f"] },
        { op: "Relu", inputs: ["f"], outputs: ["r"] },
        { op: "Add", inputs: ["g", "r"], outputs: ["y"] },
      ],
      initializers: { W: { dims: [4, 4], data: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] } },
    });
    const x = [0.5, -0.5, -0.5, -0.25];
    const expected = [1, -0.5, -0.5, -0.25];
    expect(await (await referenceSession(file))(x, [1, 4])).to.deep.equal(expected);
    expect(executeQuantized(quantizeGraph(loadOnnx(file)), x).output).to.deep.equal(expected);
  });

  for (const c of [...CASES, ...ACTIVATION_CASES, ...SPATIAL_CASES, ...TRANSPOSE_GLU_CASES]) {
    it(c.name, async function () {
      const file = writeModel(specOf(c));
      const program = quantizeGraph(loadOnnx(file), { scaleBits: 8, inputBits: 16 });
      if (c.expectOps) expect(program.ops.map((o) => o.op)).to.deep.equal(c.expectOps);
      const ref = await referenceSession(file);
      const n = c.inputDims.reduce((a, b) => a * b, 1);
      const inputs = Array.from({ length: 6 }, (_, i) =>
        randomArray(n, seededRandom(100 + i), c.inputScale ?? 1),
      );
      for (const x of inputs) {
        const q = executeQuantized(program, x);
        const r = await ref(x, c.inputDims);
        expect(q.output.length).to.equal(r.length);
        q.output.forEach((v, i) =>
          expect(Math.abs(v - r[i])).to.be.at.most(c.tolerance, `output ${i}: ${v} vs ${r[i]}`),
        );
        // The propagated error bound (zkml/quant/error-bound.ts) holds too, up to float32 rounding.
        const b = executeWithErrorBound(program, x);
        expect(b.output).to.deep.equal(q.output);
        b.output.forEach((v, i) =>
          expect(Math.abs(v - r[i])).to.be.at.most(
            b.bound[i] + 2 ** -20 * (1 + Math.abs(r[i])),
            `bound ${i}`,
          ),
        );
      }
      const compiled = await compileNoSetup(file, { scaleBits: 8, inputBits: 16 });
      const plan = planCircuit(compiled.program, compiled.manifest.publicSignals);
      expect(compiled.manifest.constraints).to.equal(expectedConstraints(compiled.program, plan).total);
      if (c.constraints !== undefined) expect(compiled.manifest.constraints).to.equal(c.constraints);
      if (process.env.OPG_PRINT_COSTS)
        console.log(
          `    ${c.name}: ${JSON.stringify(expectedConstraints(compiled.program, plan).breakdown)}`,
        );
      for (const x of inputs.slice(0, 2)) {
        const q = executeQuantized(compiled.program, x);
        const witness = await witnessFor(compiled, q.input, 12345n);
        expect(publicOf(compiled, witness)).to.deep.equal(
          expectedPublicSignals(compiled.manifest, q.input, q.quantized, 12345n),
        );
      }
    });
  }
});

describe("zkml spatial ops: variants refused with an error naming the op and node", function () {
  const refused = (nodes: NodeSpec[], inputDims: number[], init: Record<string, InitTensor>, re: RegExp) =>
    expect(() =>
      quantizeGraph(
        loadOnnx(
          writeModel({
            input: { name: "x", dims: inputDims },
            output: { name: "y", dims: [1] },
            nodes,
            initializers: init,
          }),
        ),
      ),
    ).to.throw(re);
  it("4-D Conv", function () {
    refused(
      [{ op: "Conv", inputs: ["x", "W"], outputs: ["y"] }],
      [1, 1, 2, 2, 2, 2],
      { W: w([1, 1, 1, 1, 1, 1]) },
      /Conv node .*only 1-D, 2-D and 3-D convolution/,
    );
  });
  it("Pad mode wrap, and reflect pads as large as the input", function () {
    refused(
      [{ op: "Pad", inputs: ["x", "p"], outputs: ["y"], attrs: { mode: "wrap" } }],
      [1, 3],
      { p: ints([0, 1, 0, 1]) },
      /Pad node .*pad mode 'wrap'/,
    );
    refused(
      [{ op: "Pad", inputs: ["x", "p"], outputs: ["y"], attrs: { mode: "reflect" } }],
      [1, 3],
      { p: ints([0, 3, 0, 0]) },
      /Pad node .*reflect pads/,
    );
  });
});

describe("zkml piecewise-linear activations: the stated error bounds", function () {
  const curves: [string, PiecewiseLinear, (x: number) => number, number][] = [
    ["Elu (alpha 1)", eluCurve(1), (x) => (x > 0 ? x : Math.expm1(x)), ELU_MAX_ERROR],
    [
      "Softplus",
      SOFTPLUS_CURVE,
      (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
      SOFTPLUS_MAX_ERROR,
    ],
    ["Softsign", SOFTSIGN_CURVE, (x) => x / (1 + Math.abs(x)), SOFTSIGN_MAX_ERROR],
  ];
  for (const [name, curve, f, stated] of curves) {
    it(`${name}: sup |curve - f| is at most the stated bound, and the bound is tight (within 5%)`, function () {
      let sup = 0;
      // Far enough out that every tail has reached its limit to well under 1e-4.
      for (let x = -1000; x <= 1000; x += x > -60 && x < 60 ? 1e-3 : 0.5) {
        sup = Math.max(sup, Math.abs(evalPiecewiseLinear(curve, x) - f(x)));
      }
      expect(sup).to.be.at.most(stated);
      expect(sup).to.be.at.least(0.95 * stated);
    });
  }

  // The lowered op (quantized slopes, rounded knots, rescale) against the true function on a dense sweep
  // out to both tails: within the propagated error bound and the conformance tolerance everywhere.
  const ops: [string, Record<string, number>, (x: number) => number, number][] = [
    ["Elu", { alpha: 0.5 }, (x) => (x > 0 ? x : 0.5 * Math.expm1(x)), 0.015],
    ["Selu", {}, (x) => 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * Math.expm1(x)), 0.03],
    ["Softplus", {}, (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))), 0.02],
    ["Softsign", {}, (x) => x / (1 + Math.abs(x)), 0.03],
  ];
  for (const [op, attrs, f, tolerance] of ops) {
    it(`${op} as lowered: within its error bound (and ${tolerance}) on [-60, 60]`, function () {
      const n = 4801;
      const file = writeModel({
        input: { name: "x", dims: [1, n] },
        output: { name: "y", dims: [1, n] },
        nodes: [{ op, inputs: ["x"], outputs: ["y"], attrs }],
      });
      const program = quantizeGraph(loadOnnx(file), { scaleBits: 8, inputBits: 16 });
      const x = Array.from({ length: n }, (_, i) => -60 + (120 * i) / (n - 1));
      const r = executeWithErrorBound(program, x);
      r.output.forEach((y, i) => {
        const err = Math.abs(y - f(x[i]));
        expect(err).to.be.at.most(r.bound[i], `x = ${x[i]}`);
        expect(err).to.be.at.most(tolerance, `x = ${x[i]}`);
      });
    });
  }
});
