import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import {
  ZkmlError,
  executeQuantized,
  expectedPublicSignals,
  loadManifest,
  loadOnnx,
  loadProgram,
  parseOnnx,
  quantizeGraph,
  referenceSession,
} from "../../zkml";
import { buildOnnx, mlpSpec } from "../../zkml/onnx/builder";
import { executeWithErrorBound } from "../../zkml/quant/error-bound";
import { bindSymbolicDims } from "../../zkml/quant/quantize";
import { FIXTURES, argmax, compileNoSetup, opgHere, publicOf, tmpDir, witnessFor } from "./helpers";

/**
 * A model exported by PyTorch with the default dynamic batch axis (scripts/fixtures/make_dynamic_batch.py:
 * input [batch, 1, 8, 8], and x.view(x.size(0), -1) as a Shape -> Gather -> Unsqueeze -> Concat -> Reshape
 * subgraph) compiles as exported: its symbolic dimensions are bound at compile time.
 */
const MODEL = path.join(FIXTURES, "digits_dyn_cnn.onnx");
const data = JSON.parse(fs.readFileSync(path.join(FIXTURES, "digits_dyn_cnn_test.json"), "utf8")) as {
  inputs: number[][][][][];
  labels: number[];
  logits: number[][];
  batch2: { input: number[][][][]; logits: number[][] };
};

function flat(x: unknown): number[] {
  return (x as unknown[]).flat(Infinity) as number[];
}

function zkmlError(f: () => unknown, code: string, message: RegExp): void {
  try {
    f();
  } catch (e) {
    expect(e).to.be.instanceOf(ZkmlError);
    expect((e as ZkmlError).code).to.equal(code);
    expect((e as Error).message).to.match(message);
    return;
  }
  expect.fail("expected a ZkmlError");
}

describe("zkml: a PyTorch export with a dynamic batch axis", function () {
  it("is the exporter's dynamic form: a symbolic 'batch' input dimension and a shape subgraph", function () {
    const g = loadOnnx(MODEL);
    expect(g.inputs[0].dims).to.deep.equal(["batch", 1, 8, 8]);
    const ops = g.nodes.map((n) => n.opType);
    for (const op of ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]) expect(ops).to.include(op);
  });

  it("compiles without re-export, binds the batch to 1, says so and records it in the manifest", async function () {
    const log: string[] = [];
    const c = await compileNoSetup(MODEL, { log: (m) => log.push(m) });
    expect(log).to.include("bound symbolic dimension 'batch' of input 'input' to 1 (set with --dim batch=N)");
    expect(c.manifest.input.shape).to.deep.equal([1, 1, 8, 8]);
    expect(c.manifest.output.shape).to.deep.equal([1, 10]);
    expect(c.manifest.boundDims).to.deep.equal([
      { name: "batch", input: "input", axis: 0, value: 1, explicit: false },
    ]);
    expect(loadManifest(c.dir).boundDims).to.deep.equal(c.manifest.boundDims);
    // the shape subgraph folded away: only the arithmetic is left
    expect(c.program.ops.map((o) => o.op)).to.deep.equal(["conv", "rescale", "maxpool", "dense", "rescale"]);
    const q = executeQuantized(c.program, flat(data.inputs[0]));
    const w = await witnessFor(c, q.input, 5n);
    expect(publicOf(c, w)).to.deep.equal(expectedPublicSignals(c.manifest, q.input, q.quantized, 5n));
  });

  it("its fixed-point execution agrees with onnxruntime and PyTorch on the recorded inputs", async function () {
    const program = quantizeGraph(loadOnnx(MODEL));
    const ref = await referenceSession(MODEL);
    expect(data.inputs).to.have.length(8);
    for (let i = 0; i < data.inputs.length; i++) {
      const x = flat(data.inputs[i]);
      const r = executeWithErrorBound(program, x);
      const ort = await ref(x, [1, 1, 8, 8]);
      ort.forEach((v, j) => {
        expect(Math.abs(v - data.logits[i][j])).to.be.below(1e-4);
        expect(Math.abs(r.output[j] - v)).to.be.at.most(r.bound[j] + 1e-6);
        expect(Math.abs(r.output[j] - v)).to.be.below(0.1);
      });
      expect(argmax(r.output)).to.equal(argmax(ort));
      expect(argmax(ort)).to.equal(argmax(data.logits[i]));
    }
  });

  it("--dim batch=2 compiles a batch of two that agrees with onnxruntime and PyTorch", async function () {
    const out = tmpDir();
    const r = await opgHere(["zkml", "compile", MODEL, "--out", out, "--no-setup", "--dim", "batch=2"]);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stderr).to.include("bound symbolic dimension 'batch' of input 'input' to 2\n");
    const manifest = loadManifest(out);
    expect(manifest.input.shape).to.deep.equal([2, 1, 8, 8]);
    expect(manifest.output.shape).to.deep.equal([2, 10]);
    expect(manifest.boundDims).to.deep.equal([
      { name: "batch", input: "input", axis: 0, value: 2, explicit: true },
    ]);
    const program = loadProgram(out);
    const x = flat(data.batch2.input);
    const q = executeQuantized(program, x);
    const ort = await (await referenceSession(MODEL))(x, [2, 1, 8, 8]);
    const torch = data.batch2.logits.flat();
    ort.forEach((v, j) => {
      expect(Math.abs(v - torch[j])).to.be.below(1e-4);
      expect(Math.abs(q.output[j] - v)).to.be.below(0.1);
    });
    const w = await witnessFor({ dir: out, manifest, program }, q.input, 5n);
    expect(publicOf({ dir: out, manifest, program }, w)).to.deep.equal(
      expectedPublicSignals(manifest, q.input, q.quantized, 5n),
    );
  });

  it("--dim with a name the model does not have is refused, naming the model's symbolic dimensions", async function () {
    const r = await opgHere([
      "zkml",
      "compile",
      MODEL,
      "--out",
      tmpDir(),
      "--no-setup",
      "--dim",
      "batch_size=1",
    ]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(
      /error: the model has no symbolic dimension 'batch_size'; its symbolic dimensions are 'batch'/,
    );
    zkmlError(
      () => quantizeGraph(loadOnnx(MODEL), { dims: { seq: 4 } }),
      "BAD_INPUT",
      /no symbolic dimension 'seq'; its symbolic dimensions are 'batch'/,
    );
  });

  it("a value that is not a positive integer is refused", async function () {
    for (const v of ["0", "-1", "1.5", "two", ""]) {
      const r = await opgHere(["zkml", "compile", MODEL, "--out", tmpDir(), "--dim", `batch=${v}`]);
      expect(r.status, v).to.not.equal(0);
      expect(r.stderr).to.include(`symbolic dimension 'batch' must be a positive integer, got '${v}'`);
    }
    const r = await opgHere(["zkml", "compile", MODEL, "--out", tmpDir(), "--dim", "batch"]);
    expect(r.stderr).to.include("expected name=N (e.g. batch=1), got 'batch'");
    zkmlError(
      () => quantizeGraph(loadOnnx(MODEL), { dims: { batch: 0 } }),
      "BAD_INPUT",
      /symbolic dimension 'batch' must be bound to a positive integer, got 0/,
    );
  });

  it("an unnamed unknown dimension is bound to 1; a static model binds nothing", function () {
    const spec = mlpSpec([4, 3]);
    spec.input.dims = ["", 4];
    const { graph, bound } = bindSymbolicDims(parseOnnx(buildOnnx(spec)));
    expect(graph.inputs[0].dims).to.deep.equal([1, 4]);
    expect(bound).to.deep.equal([{ name: null, input: "input", axis: 0, value: 1, explicit: false }]);
    expect(quantizeGraph(parseOnnx(buildOnnx(spec))).input.shape).to.deep.equal([1, 4]);
    expect(bindSymbolicDims(parseOnnx(buildOnnx(mlpSpec([4, 3])))).bound).to.deep.equal([]);
    zkmlError(
      () => bindSymbolicDims(parseOnnx(buildOnnx(mlpSpec([4, 3]))), { batch: 1 }),
      "BAD_INPUT",
      /no symbolic dimension 'batch'; its inputs have no named symbolic dimensions/,
    );
  });
});
