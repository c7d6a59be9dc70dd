import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ZkmlError } from "../../zkml/errors";
import {
  Attr,
  InitTensor,
  ModelSpec,
  NodeSpec,
  buildOnnx,
  randomArray,
  seededRandom,
} from "../../zkml/onnx/builder";
import { parseOnnx } from "../../zkml/onnx/parse";
import { executeWithErrorBound } from "../../zkml/quant/error-bound";
import { quantizeGraph } from "../../zkml/quant/quantize";
import { tmpDir } from "./helpers";

/**
 * Differential test against onnxruntime on random attribute combinations (pads, strides, dilations,
 * auto_pad, ceil_mode, negative slice steps, broadcasting, bias shapes, softmax axes, BatchNormalization
 * folding next to aliases). Each random model is either rejected by onnxruntime (skipped), refused by the
 * quantizer with a ZkmlError, or run by the executor with the same output shape and every element within
 * its propagated error bound (zkml/quant/error-bound.ts). This found the Slice clamp and the SAME-padding
 * with dilations disagreements that ONNX's own test data does not reach.
 */
const CASES = 420;
const FLOAT_SLACK = 2 ** -20;

type Gen = () => { spec: ModelSpec; dims: number[] };

function generators(rand: () => number): Gen[] {
  const int = (a: number, b: number): number => a + Math.floor(rand() * (b - a + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)];
  const tensor = (dims: number[], f = (): number => rand() * 2 - 1): InitTensor => ({
    dims,
    data: Array.from({ length: dims.reduce((a, b) => a * b, 1) }, f),
  });
  const ints = (data: number[]): InitTensor => ({ dims: [data.length], data, type: "int64" });
  const image = (): number[] => [int(1, 2), int(1, 3), int(1, 6), int(1, 6)];
  const model = (
    dims: number[],
    nodes: NodeSpec[],
    initializers = {},
    opset = 13,
    elemType = 1,
  ): ModelSpec => ({
    input: { name: "x", dims },
    output: { name: "y", elemType },
    nodes,
    initializers,
    opset,
  });
  const windowAttrs = (k: number[]): Record<string, Attr> => {
    const attrs: Record<string, Attr> = { kernel_shape: k, strides: [int(1, 3), int(1, 3)] };
    const autoPad = pick(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]);
    if (autoPad !== "NOTSET") attrs.auto_pad = autoPad;
    else attrs.pads = [int(0, k[0] - 1), int(0, k[1] - 1), int(0, k[0] - 1), int(0, k[1] - 1)];
    if (rand() < 0.5) attrs.dilations = [int(1, 2), int(1, 2)];
    return attrs;
  };
  return [
    () => {
      const dims = image();
      const attrs = windowAttrs([int(1, 3), int(1, 3)]);
      if (rand() < 0.5) attrs.ceil_mode = 1;
      const op = pick(["MaxPool", "AveragePool"]);
      if (op === "AveragePool") {
        delete attrs.dilations;
        if (rand() < 0.5) attrs.count_include_pad = 1;
      }
      return { spec: model(dims, [{ op, inputs: ["x"], outputs: ["y"], attrs }]), dims };
    },
    () => {
      const dims = image();
      const group = pick([1, dims[1]]);
      const oc = group * int(1, 2);
      const k = [int(1, 3), int(1, 3)];
      const attrs = { ...windowAttrs(k), group };
      const init = { W: tensor([oc, dims[1] / group, k[0], k[1]]), B: tensor([oc]) };
      return {
        spec: model(dims, [{ op: "Conv", inputs: ["x", "W", "B"], outputs: ["y"], attrs }], init),
        dims,
      };
    },
    () => {
      const dims = [int(1, 2), int(1, 3), int(1, 4), int(1, 5)];
      const axes = [0, 1, 2, 3].sort(() => rand() - 0.5).slice(0, int(1, 4));
      const init = {
        s: ints(axes.map(() => int(-8, 8))),
        e: ints(axes.map(() => pick([int(-8, 8), 1e9, -1e9]))),
        a: ints(axes.map((a) => pick([a, a - 4]))),
        t: ints(axes.map(() => pick([1, 2, -1, -2, 3]))),
      };
      return {
        spec: model(dims, [{ op: "Slice", inputs: ["x", "s", "e", "a", "t"], outputs: ["y"] }], init),
        dims,
      };
    },
    () => {
      const dims = image();
      const init = { p: ints([0, 0, 1, 1, 0, 0, 1, 1].map((m) => int(-m, 2))), v: tensor([]) };
      return { spec: model(dims, [{ op: "Pad", inputs: ["x", "p", "v"], outputs: ["y"] }], init), dims };
    },
    () => {
      const [m, k, n] = [int(1, 4), int(1, 4), int(1, 4)];
      const [transA, transB] = [int(0, 1), int(0, 1)];
      const c = pick([[n], [1, n], [m, 1], [m, n], [], [1, 1]]);
      const attrs = {
        transA,
        transB,
        alpha: { float: pick([1, 0.5, -2]) },
        beta: { float: pick([1, 0.25, 3]) },
      };
      const init = { B: tensor(transB ? [n, k] : [k, n]), C: tensor(c) };
      const dims = transA ? [k, m] : [m, k];
      return {
        spec: model(dims, [{ op: "Gemm", inputs: ["x", "B", "C"], outputs: ["y"], attrs }], init),
        dims,
      };
    },
    () => {
      const dims = [int(1, 2), int(1, 3), int(1, 3)];
      const op = pick(["Add", "Sub", "Mul", "Div"]);
      const cDims = dims.map((d) => (rand() < 0.5 ? 1 : d)).slice(int(0, 2));
      const c = tensor(cDims, () => (rand() < 0.5 ? -1 : 1) * (0.5 + rand()));
      const act = pick(["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Identity"]);
      const nodes: NodeSpec[] = [
        { op, inputs: op !== "Div" && rand() < 0.5 ? ["c", "x"] : ["x", "c"], outputs: ["a"] },
        act === "Clip"
          ? { op: "Clip", inputs: ["a", "lo", "hi"], outputs: ["b"] }
          : {
              op: act,
              inputs: ["a"],
              outputs: ["b"],
              attrs: act === "LeakyRelu" ? { alpha: { float: -0.5 } } : {},
            },
      ];
      const last = pick(["Softmax", "LogSoftmax", "ArgMax", "Mul", "Identity"]);
      if (last === "ArgMax")
        nodes.push({
          op: last,
          inputs: ["b"],
          outputs: ["y"],
          attrs: { axis: int(-3, 2), keepdims: int(0, 1) },
        });
      else if (last === "Mul") nodes.push({ op: last, inputs: ["b", "a"], outputs: ["y"] });
      else
        nodes.push({
          op: last,
          inputs: ["b"],
          outputs: ["y"],
          attrs: last === "Identity" ? {} : { axis: int(-3, 2) },
        });
      const init = { c, lo: { dims: [], data: [-0.3] }, hi: { dims: [], data: [0.6] } };
      return { spec: model(dims, nodes, init, pick([11, 13]), last === "ArgMax" ? 7 : 1), dims };
    },
    () => {
      const c = int(1, 3);
      const dims = [1, c, int(1, 3), int(1, 3)];
      const channel = (f: () => number): InitTensor => tensor([c], f);
      const init = {
        W: tensor([c, c, 1, 1]),
        g: channel(() => rand() * 2 - 1),
        b: channel(() => rand() - 0.5),
        m: channel(() => rand() - 0.5),
        v: channel(() => rand() + 0.1),
      };
      // A value read again through an alias keeps BatchNormalization unfolded (the Conv's output) or the
      // ReLU unfused (the pre-ReLU value).
      const via = pick(["direct", "identity", "shared", "alias"]);
      const nodes: NodeSpec[] = [{ op: "Conv", inputs: ["x", "W"], outputs: ["c"] }];
      if (via === "identity") nodes.push({ op: "Identity", inputs: ["c"], outputs: ["ci"] });
      nodes.push(
        {
          op: "BatchNormalization",
          inputs: [via === "identity" ? "ci" : "c", "g", "b", "m", "v"],
          outputs: ["n"],
        },
        { op: "Flatten", inputs: ["n"], outputs: ["f"] },
        { op: "Relu", inputs: ["f"], outputs: ["r"] },
      );
      if (via === "shared" || via === "alias") {
        // the Conv's output, or the pre-ReLU value, read again through a Flatten
        const again = via === "shared" ? "c" : "n";
        nodes.push(
          { op: "Flatten", inputs: [again], outputs: ["again"] },
          { op: "Add", inputs: ["r", "again"], outputs: ["y"] },
        );
      } else nodes.push({ op: "Identity", inputs: ["r"], outputs: ["y"] });
      return { spec: model(dims, nodes, init), dims };
    },
  ];
}

describe("zkml differential test: executor vs onnxruntime on random attribute combinations", function () {
  it(`${CASES} random models: each rejected by onnxruntime, refused, or within its error bound`, async function () {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ort = require("onnxruntime-node") as typeof import("onnxruntime-node");
    const rand = seededRandom(2026);
    const gens = generators(rand);
    const dir = tmpDir("opg-diff-");
    const tally = { pass: 0, refused: 0, rejectedByOnnxruntime: 0 };
    const bad: string[] = [];
    for (let i = 0; i < CASES; i++) {
      const { spec, dims } = gens[i % gens.length]();
      const bytes = buildOnnx(spec);
      const file = path.join(dir, `m${i}.onnx`);
      fs.writeFileSync(file, bytes);
      const x = randomArray(
        dims.reduce((a, b) => a * b, 1),
        rand,
        2,
      );
      let want: number[];
      let wantDims: readonly number[];
      try {
        const session = await ort.InferenceSession.create(file, { logSeverityLevel: 4 });
        const out = (await session.run({ x: new ort.Tensor("float32", Float32Array.from(x), dims) })).y;
        want = Array.from(out.data as ArrayLike<number | bigint>, Number);
        wantDims = out.dims;
      } catch {
        tally.rejectedByOnnxruntime++;
        continue;
      }
      const what = `${JSON.stringify(spec.nodes)} on [${dims}]`;
      try {
        const program = quantizeGraph(parseOnnx(bytes));
        const r = executeWithErrorBound(program, x);
        if (program.output.shape.join() !== wantDims.join()) {
          bad.push(`${what}: shape [${program.output.shape}], onnxruntime [${wantDims}]`);
          continue;
        }
        const j = r.output.findIndex(
          (v, k) => !(Math.abs(v - want[k]) <= r.bound[k] + FLOAT_SLACK * (1 + Math.abs(want[k]))),
        );
        if (j >= 0) bad.push(`${what}: #${j} = ${r.output[j]}, onnxruntime ${want[j]}, bound ${r.bound[j]}`);
        else tally.pass++;
      } catch (e) {
        if (!(e instanceof ZkmlError)) throw e;
        // These models have no op that turns an empty tensor into a non-empty one.
        if (/empty tensor/.test(e.message) && want.length > 0)
          bad.push(`${what}: ${e.message}, onnxruntime [${wantDims}]`);
        tally.refused++;
      }
    }
    expect(bad).to.deep.equal([]);
    expect(tally.pass, JSON.stringify(tally)).to.be.at.least(CASES / 2);
  });
});
