import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ZkmlError, executeQuantized, flattenInput, loadOnnx, parseOnnx, quantizeGraph } from "../../zkml";
import { ModelSpec, NodeSpec, buildOnnx, mlpSpec } from "../../zkml/onnx/builder";
import { FIXTURES, tmpDir, writeModel } from "./helpers";

const ROOT = path.join(__dirname, "..", "..");

function zkmlError(fn: () => unknown, code: string, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(ZkmlError);
    expect((e as ZkmlError).code).to.equal(code);
    expect((e as Error).message).to.match(pattern);
    return;
  }
  expect.fail("expected a ZkmlError");
}

describe("zkml bad input gives a clear error", function () {
  const irisBytes = fs.readFileSync(path.join(FIXTURES, "iris_mlp.onnx"));

  it("a malformed or truncated file", function () {
    zkmlError(
      () => parseOnnx(Buffer.from("definitely not protobuf \x00\xff\xff"), "x.onnx"),
      "MALFORMED_MODEL",
      /x\.onnx is not a valid ONNX file/,
    );
    zkmlError(() => parseOnnx(new Uint8Array(), "empty.onnx"), "MALFORMED_MODEL", /not a valid ONNX file/);
    zkmlError(
      () => parseOnnx(irisBytes.subarray(0, irisBytes.length - 40), "cut.onnx"),
      "MALFORMED_MODEL",
      /cut\.onnx/,
    );
    zkmlError(() => loadOnnx("/nonexistent/model.onnx"), "BAD_INPUT", /cannot read model file .*ENOENT/);
  });

  it("an unsupported op names the op and the node", function () {
    const file = writeModel({
      input: { name: "x", dims: [1, 4] },
      output: { name: "y", dims: [1, 4] },
      nodes: [{ op: "Erf", name: "gelu_erf", inputs: ["x"], outputs: ["y"] }],
    });
    zkmlError(() => quantizeGraph(loadOnnx(file)), "UNSUPPORTED_OP", /unsupported op Erf node 'gelu_erf'/);
  });

  it("an input without a shape is refused, naming the input", function () {
    // a symbolic dimension is bound at compile time instead (test/zkml/dynamic-axes.test.ts)
    const spec = mlpSpec([4, 3]);
    spec.input.dims = undefined as unknown as number[];
    zkmlError(
      () => quantizeGraph(parseOnnx(buildOnnx(spec))),
      "DYNAMIC_SHAPE",
      /input 'input' has no shape in the model/,
    );
  });

  it("a MatMul of two computed tensors", function () {
    const file = writeModel({
      input: { name: "x", dims: [2, 2] },
      output: { name: "y", dims: [2, 2] },
      nodes: [{ op: "MatMul", name: "mm", inputs: ["x", "x"], outputs: ["y"] }],
    });
    zkmlError(
      () => quantizeGraph(loadOnnx(file)),
      "UNSUPPORTED_OP",
      /MatMul node 'mm'.*B must be a constant/,
    );
  });

  describe("what the circuit cannot compute is refused, naming the op and attribute", function () {
    const one = (nodes: NodeSpec[], initializers: ModelSpec["initializers"] = {}, opset = 13): ModelSpec => ({
      input: { name: "x", dims: [1, 2, 2, 2] },
      output: { name: "y", dims: [1, 2, 2, 2] },
      nodes,
      initializers,
      opset,
    });
    const bn = ["x", "g", "b", "m", "v"];
    const bnParams = {
      g: { dims: [2], data: [1, 2] },
      b: { dims: [2], data: [0, 1] },
      m: { dims: [2], data: [0, 0] },
      v: { dims: [2], data: [1, 1] },
    };

    it("Dropout in training mode (random)", function () {
      const training = one([{ op: "Dropout", name: "drop", inputs: ["x", "r", "t"], outputs: ["y"] }], {
        r: { dims: [], data: [0.3] },
        t: { dims: [], data: [1], type: "bool" },
      });
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(training))),
        "UNSUPPORTED_ATTRIBUTE",
        /Dropout node 'drop': training_mode=true with ratio 0\.3/,
      );
      const old = one([{ op: "Dropout", name: "drop6", inputs: ["x"], outputs: ["y"] }], {}, 6);
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(old))),
        "UNSUPPORTED_ATTRIBUTE",
        /Dropout node 'drop6': is_test=0 \(training mode, opset 6\)/,
      );
    });

    it("BatchNormalization in training mode or with one scale per element", function () {
      const training = one(
        [{ op: "BatchNormalization", name: "bn", inputs: bn, outputs: ["y"], attrs: { training_mode: 1 } }],
        bnParams,
        15,
      );
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(training))),
        "UNSUPPORTED_ATTRIBUTE",
        /BatchNormalization node 'bn': training_mode=1/,
      );
      const perElement = one(
        [{ op: "BatchNormalization", name: "bn7", inputs: bn, outputs: ["y"], attrs: { spatial: 0 } }],
        bnParams,
        7,
      );
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(perElement))),
        "UNSUPPORTED_ATTRIBUTE",
        /BatchNormalization node 'bn7': spatial=0/,
      );
      // folded into a Conv or not, the check is the same
      const folded = one(
        [
          { op: "Conv", inputs: ["x", "W"], outputs: ["c"] },
          { op: "BatchNormalization", name: "bn6", inputs: ["c", "g", "b", "m", "v"], outputs: ["y"] },
        ],
        { ...bnParams, W: { dims: [2, 2, 1, 1], data: [1, 0, 0, 1] } },
        6,
      );
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(folded))),
        "UNSUPPORTED_ATTRIBUTE",
        /BatchNormalization node 'bn6': is_test=0/,
      );
    });

    it("SAME padding with dilations (onnxruntime sizes it differently) and an empty tensor", function () {
      const dilated = one([
        {
          op: "MaxPool",
          name: "pool",
          inputs: ["x"],
          outputs: ["y"],
          attrs: { kernel_shape: [2, 2], auto_pad: "SAME_UPPER", dilations: [1, 2] },
        },
      ]);
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(dilated))),
        "UNSUPPORTED_ATTRIBUTE",
        /MaxPool node 'pool': auto_pad SAME_UPPER with dilations \[1,2\]/,
      );
      const ints = (data: number[]) => ({ dims: [data.length], data, type: "int64" as const });
      const empty = one([{ op: "Slice", name: "cut", inputs: ["x", "s", "e"], outputs: ["y"] }], {
        s: ints([1]),
        e: ints([1]),
      });
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(empty))),
        "UNSUPPORTED_OP",
        /Slice node 'cut' produces an empty tensor \[0,2,2,2\]/,
      );
    });

    it("Softmax anywhere but at the end", function () {
      const early = one([
        { op: "Softmax", name: "sm", inputs: ["x"], outputs: ["s"] },
        { op: "Relu", inputs: ["s"], outputs: ["y"] },
      ]);
      zkmlError(
        () => quantizeGraph(parseOnnx(buildOnnx(early))),
        "UNSUPPORTED_OP",
        /Softmax node 'sm': Softmax is supported only as the model's last op/,
      );
    });
  });

  it("a wrong input shape, an out-of-range value, NaN", function () {
    const program = quantizeGraph(loadOnnx(path.join(FIXTURES, "iris_mlp.onnx")));
    zkmlError(
      () => flattenInput([[1, 2, 3]], [1, 4]),
      "BAD_INPUT",
      /input has shape \[1,3\], the model expects \[1,4\]/,
    );
    zkmlError(
      () =>
        flattenInput(
          [
            [1, 2],
            [3, 4],
          ],
          [1, 4],
        ),
      "BAD_INPUT",
      /shape \[2,2\]/,
    );
    zkmlError(
      () => executeQuantized(program, [0, 0, 1e6, 0]),
      "OUT_OF_RANGE",
      /input value #2 = 1000000 is outside the representable range/,
    );
    zkmlError(() => executeQuantized(program, [0, NaN, 0, 0]), "BAD_INPUT", /input value #1 is NaN/);
    zkmlError(() => flattenInput([[0, "1", 0, 0]], [1, 4]), "BAD_INPUT", /"1", not a number/);
  });

  it("an activation that overflows its range check names the node", function () {
    const spec = mlpSpec([4, 3, 2]);
    spec.initializers = { ...spec.initializers, w0: { dims: [3, 4], data: new Array(12).fill(100) } };
    const program = quantizeGraph(parseOnnx(buildOnnx(spec)), { activationBits: 12 });
    zkmlError(
      () => executeQuantized(program, [1, 1, 1, 1]),
      "OUT_OF_RANGE",
      /Gemm node 'Gemm_0'.*does not fit in 12 signed bits/,
    );
  });

  it("the CLI prints the message, not a stack trace", function () {
    const bad = path.join(tmpDir(), "bad.onnx");
    fs.writeFileSync(bad, "garbage");
    const r = spawnSync(
      process.execPath,
      [path.join(ROOT, "bin", "opg.js"), "zkml", "compile", bad, "--out", tmpDir()],
      {
        cwd: ROOT,
        encoding: "utf8",
      },
    );
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^error: .*bad\.onnx is not a valid ONNX file/m);
    expect(r.stderr).to.not.match(/\n\s+at /);
    const help = spawnSync(process.execPath, [path.join(ROOT, "bin", "opg.js"), "zkml", "prove", "--help"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(help.status).to.equal(0);
    expect(help.stdout).to.match(/--binding <value>/);
  });
});
