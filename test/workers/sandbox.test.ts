import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { loadManifest, loadProgram } from "../../zkml";
import { buildOnnx } from "../../zkml/onnx/builder";
import { loadOnnx } from "../../zkml/onnx/parse";
import { packagePlainModel, quantizePlainInput } from "../../zkml/plain-bundle";
import {
  BundleCache,
  BundleRejectedError,
  type LoadedBundle,
  type LoadedPlainBundle,
} from "../../workers/runtime/bundles";
import { DataClient } from "../../workers/data/client";
import { ExecutionRefusedError } from "../../workers/runtime/execution-errors";
import {
  dynamicShapeNodes,
  ModelExecutor,
  programCost,
  type ExecutionLimits,
} from "../../workers/runtime/execution-policy";
import { bundleOutputWords, modelOutputWords } from "../../workers/runtime/optimistic";
import { ExecutionCrashError, ExecutionSandbox, failureClass } from "../../workers/runtime/sandbox";
import { InputRejectedError } from "../../workers/runtime/task-input";
import { fixtureBundle } from "../../network/local-network";

const MODELS = path.join(__dirname, "..", "fixtures", "models");
const HOSTILE = path.join(MODELS, "hostile_matmul.onnx");

const LIMITS: ExecutionLimits = {
  execTimeoutMs: 60_000,
  execMemoryMb: 2048,
  execWorkers: 1,
  allowDynamicShapes: false,
  maxModelBytes: 128 * 1024 * 1024,
  maxProgramOps: 200_000_000,
};

async function plainBundle(onnx: string, packBits?: number): Promise<LoadedPlainBundle> {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-sandbox-")), path.basename(onnx, ".onnx"));
  return { kind: "plain", dir, manifest: await packagePlainModel(onnx, dir, { packBits }) };
}

/** The hostile model's input that makes it multiply two n x n matrices (n = floor(|x| * 64) + 1). */
function hostileInput(bundle: LoadedPlainBundle, n: number): bigint[] {
  return quantizePlainInput(bundle.manifest, [(n - 1) / 64 + 1 / 512]);
}

/** The largest gap between ticks of a 10 ms interval while `work` runs: how long the event loop was held. */
async function worstLoopGap<T>(
  work: Promise<T>,
): Promise<{ gapMs: number; result: PromiseSettledResult<T> }> {
  let last = performance.now();
  let gapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gapMs = Math.max(gapMs, now - last);
    last = now;
  }, 10);
  const [result] = await Promise.allSettled([work]);
  clearInterval(timer);
  return { gapMs, result };
}

function refusal(result: PromiseSettledResult<unknown>): ExecutionRefusedError {
  expect(result.status, "the run should have been refused").to.equal("rejected");
  const err = (result as PromiseRejectedResult).reason;
  expect(err, String(err)).to.be.instanceOf(ExecutionRefusedError);
  return err as ExecutionRefusedError;
}

describe("execution sandbox and policy (workers/runtime/sandbox.ts, execution-policy.ts)", function () {
  this.timeout(300_000);
  let iris: LoadedPlainBundle;
  let digits: LoadedPlainBundle;
  let hostile: LoadedPlainBundle;
  const sandboxes: ExecutionSandbox[] = [];
  const sandbox = (limits: Partial<ExecutionLimits> = {}) => {
    const s = new ExecutionSandbox({ ...LIMITS, ...limits });
    sandboxes.push(s);
    return s;
  };

  /** The default limits' sandbox, shared by the tests that need nothing else (each process start costs seconds). */
  let shared: ExecutionSandbox;

  before(async function () {
    shared = sandbox();
    iris = await plainBundle(path.join(MODELS, "iris_mlp.onnx"));
    digits = await plainBundle(path.join(MODELS, "digits_cnn.onnx"), 24);
    hostile = await plainBundle(HOSTILE);
  });

  after(async function () {
    await Promise.all(sandboxes.map((s) => s.close()));
  });

  describe("outputs", function () {
    it("equal the in-process execution bit for bit: plain bundles (iris MLP, digits CNN)", async function () {
      const s = shared;
      const digitInputs: number[][] = JSON.parse(
        fs.readFileSync(path.join(MODELS, "digits_test.json"), "utf8"),
      ).inputs.map((x: unknown) => (x as number[]).flat(3));
      const irisInputs: number[][] = JSON.parse(
        fs.readFileSync(path.join(MODELS, "iris_test.json"), "utf8"),
      ).inputs;
      const cases: [LoadedPlainBundle, number[]][] = [
        ...irisInputs.slice(0, 4).map((x) => [iris, x] as [LoadedPlainBundle, number[]]),
        ...digitInputs.slice(0, 4).map((x) => [digits, x] as [LoadedPlainBundle, number[]]),
      ];
      for (const [bundle, x] of cases) {
        const input = quantizePlainInput(bundle.manifest, x);
        const inProcess = await bundleOutputWords(bundle, input);
        const sandboxed = await s.plainOutputs(bundle, input);
        expect(sandboxed.values).to.deep.equal(inProcess.values);
        expect(sandboxed.words).to.deep.equal(inProcess.words);
      }
    });

    it("equal the in-process fixed-point executor bit for bit: a ZK bundle (iris MLP)", async function () {
      const dir = await fixtureBundle("test/fixtures/models/iris_mlp.onnx");
      const bundle: LoadedBundle = {
        dir,
        manifest: loadManifest(dir),
        program: loadProgram(dir),
        verificationKeyHash: "0x",
      };
      const s = shared;
      for (const x of [
        [5.1, 3.5, 1.4, 0.2],
        [6.7, 3.0, 5.2, 2.3],
      ]) {
        const input = x.map((v) => BigInt(Math.round(v * 2 ** bundle.program.scaleBits)));
        const sandboxed = await s.programOutputs(bundle, input);
        const inProcess = modelOutputWords(bundle, input);
        expect(sandboxed.values).to.deep.equal(inProcess.values);
        expect(sandboxed.words).to.deep.equal(inProcess.words);
      }
      // Its cost counted from program.json: an iris MLP is tiny, and a policy below it refuses it by name.
      const cost = programCost(bundle.program);
      expect(cost).to.be.greaterThan(0).and.lessThan(1_000_000);
      const strict = new ModelExecutor(s, { ...LIMITS, maxProgramOps: cost - 1 });
      const err = refusal((await Promise.allSettled([strict.outputs(bundle, [0n, 0n, 0n, 0n])]))[0]);
      expect(err.kind).to.equal("program");
      expect(err.message).to.include(`costs ${cost} operations`).and.include("maxProgramOps");
    });

    it("an input out of range is the ZkmlError the in-process run gives; a model that cannot run is refused without the server's paths", async function () {
      const s = shared;
      const tooBig = [1n << 40n, 0n, 0n, 0n];
      const [sandboxed] = await Promise.allSettled([s.plainOutputs(iris, tooBig)]);
      const [inProcess] = await Promise.allSettled([bundleOutputWords(iris, tooBig)]);
      expect(sandboxed.status).to.equal("rejected");
      expect((sandboxed as PromiseRejectedResult).reason.name).to.equal("ZkmlError");
      expect((sandboxed as PromiseRejectedResult).reason.message).to.equal(
        (inProcess as PromiseRejectedResult).reason.message,
      );
      expect(failureClass((sandboxed as PromiseRejectedResult).reason)).to.equal("refuse");

      // A bundle whose model.onnx onnxruntime cannot load (the parent checked hashes; this copy is broken).
      const broken: LoadedPlainBundle = { ...iris, dir: path.join(path.dirname(iris.dir), "broken") };
      fs.cpSync(iris.dir, broken.dir, { recursive: true });
      fs.writeFileSync(path.join(broken.dir, "model.onnx"), "not an onnx model");
      const err = refusal((await Promise.allSettled([s.plainOutputs(broken, [0n, 0n, 0n, 0n])]))[0]);
      expect(err.kind).to.equal("runtime");
      expect(err.message).to.match(/the model failed to run/);
      expect(err.message).not.to.include(os.tmpdir());
      // The process is still there for the next run.
      expect((await s.plainOutputs(iris, [0n, 0n, 0n, 0n])).values).to.have.length(3);
    });
  });

  describe("limits", function () {
    it("kills a run over its time limit, keeps the event loop free meanwhile, and serves the next job in a new process", async function () {
      const s = sandbox({ execTimeoutMs: 1500 });
      await s.plainOutputs(iris, [0n, 0n, 0n, 0n]);
      const [before] = s.pids();
      // n = 6000: ~2 * 10^11 multiply-adds, tens of seconds on this machine; 3 x 144 MB of matrices.
      const started = Date.now();
      const { gapMs, result } = await worstLoopGap(s.plainOutputs(hostile, hostileInput(hostile, 6000)));
      const err = refusal(result);
      expect(err.kind).to.equal("time");
      expect(err.message).to.include("execTimeoutMs (1500 ms)");
      expect(Date.now() - started).to.be.lessThan(20_000);
      expect(gapMs, "event loop held while the model ran").to.be.lessThan(500);
      expect(s.counts.time).to.equal(1);
      const next = await s.plainOutputs(iris, [0n, 0n, 0n, 0n]);
      expect(next.values).to.have.length(3);
      expect(s.pids()[0]).to.not.equal(before);
    });

    it("kills a run over its memory limit (read from /proc) and serves the next job", async function () {
      const s = sandbox({ execMemoryMb: 400 });
      // n = 8001: A = 256 MB, A x A another 256 MB on top of the process's ~150 MB.
      const { gapMs, result } = await worstLoopGap(s.plainOutputs(hostile, hostileInput(hostile, 8001)));
      const err = refusal(result);
      expect(err.kind).to.equal("memory");
      expect(err.message).to.include("execMemoryMb (400 MiB)");
      expect(gapMs).to.be.lessThan(500);
      expect((await s.plainOutputs(iris, [0n, 0n, 0n, 0n])).values).to.have.length(3);
    });

    it("a process that dies for another reason fails its run as a crash (retried, not refused) and is replaced", async function () {
      const s = shared;
      await s.plainOutputs(iris, [0n, 0n, 0n, 0n]);
      const run = s.plainOutputs(hostile, hostileInput(hostile, 6000));
      await new Promise((r) => setTimeout(r, 300));
      process.kill(s.pids()[0], "SIGKILL");
      const [result] = await Promise.allSettled([run]);
      expect(result.status).to.equal("rejected");
      const err = (result as PromiseRejectedResult).reason;
      expect(err).to.be.instanceOf(ExecutionCrashError);
      expect(failureClass(err)).to.equal("unknown");
      expect((await s.plainOutputs(iris, [0n, 0n, 0n, 0n])).values).to.have.length(3);
    });

    it("queues jobs beyond its processes and runs them all", async function () {
      const s = sandbox({ execWorkers: 2 });
      const inputs = Array.from({ length: 6 }, (_, i) => [BigInt(i * 100), 0n, 0n, 0n]);
      const outs = await Promise.all(inputs.map((x) => s.plainOutputs(iris, x)));
      for (const [i, out] of outs.entries())
        expect(out.values).to.deep.equal((await bundleOutputWords(iris, inputs[i])).values);
      expect(s.pids()).to.have.length(2);
    });
  });

  describe("policy", function () {
    it("finds the nodes whose shapes the task's input chooses, and none in static models", function () {
      const found = dynamicShapeNodes(loadOnnx(HOSTILE));
      expect(found).to.have.length(1);
      expect(found[0]).to.match(/^ConstantOfShape node .* computed from the task's input/);
      // A PyTorch export's Shape -> Gather -> Concat -> Reshape reads only the (fixed) input shape.
      for (const f of [
        "digits_dyn_cnn.onnx",
        "digits_cnn.onnx",
        "digits_transformer.onnx",
        "iris_mlp.onnx",
        "cancer_xgb.onnx",
      ])
        expect(dynamicShapeNodes(loadOnnx(path.join(MODELS, f))), f).to.deep.equal([]);
    });

    it("refuses the hostile model by name without running it, once per bundle, and admits it only with allowDynamicShapes", async function () {
      const s = sandbox({ execTimeoutMs: 2000 });
      const executor = new ModelExecutor(s, { ...LIMITS, execTimeoutMs: 2000 });
      const input = hostileInput(hostile, 8001);
      const { gapMs, result } = await worstLoopGap(executor.outputs(hostile, input));
      const err = refusal(result);
      expect(err.kind).to.equal("dynamic-shape");
      expect(err.message).to.include("ConstantOfShape").and.include("allowDynamicShapes");
      expect(gapMs).to.be.lessThan(500);
      const runs = { ...s.counts };
      const again = refusal((await Promise.allSettled([executor.outputs(hostile, input)]))[0]);
      expect(again.message).to.equal(err.message);
      expect(s.counts, "the verdict is kept: nothing runs again").to.deep.equal(runs);
      expect(s.counts.time + s.counts.memory, "never ran the hostile input").to.equal(0);
      // Static models pass the policy and give the in-process outputs.
      const x = [0n, 256n, 512n, 0n];
      expect((await executor.outputs(iris, x)).words).to.deep.equal((await bundleOutputWords(iris, x)).words);

      // Opted in: admitted (probe on zeros: n = 1), a small task runs, a huge one is stopped by the limits.
      const open = new ModelExecutor(s, { ...LIMITS, execTimeoutMs: 2000, allowDynamicShapes: true });
      const small = await open.outputs(hostile, hostileInput(hostile, 50));
      expect(small.values).to.have.length(1);
      const stopped = refusal((await Promise.allSettled([open.outputs(hostile, input)]))[0]);
      expect(["time", "memory"]).to.include(stopped.kind);
    });

    it("refuses a static model whose probe run is over the limits, and a model file over maxModelBytes", async function () {
      const s = sandbox({ execTimeoutMs: 1000 });
      const big = hostile;
      const tooBig = new ModelExecutor(s, { ...LIMITS, maxModelBytes: 100 });
      const err = refusal((await Promise.allSettled([tooBig.outputs(iris, [0n, 0n, 0n, 0n])]))[0]);
      expect(err.kind).to.equal("cost");
      expect(err.message).to.include("maxModelBytes");
      expect(s.counts.ok + s.counts.refused, "refused before anything ran").to.equal(0);

      // The hostile model with its shape fixed by a constant: static, but n = 6000 on every task.
      const staticDir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-static-"));
      const staticOnnx = path.join(staticDir, "static_matmul.onnx");
      const n = 6000;
      fs.writeFileSync(
        staticOnnx,
        buildOnnx({
          input: { name: "x", dims: [1] },
          output: { name: "y", dims: [1, 1] },
          initializers: { shape: { dims: [2], data: [n, n], type: "int64" }, zero: { dims: [1], data: [0] } },
          nodes: [
            {
              op: "ConstantOfShape",
              inputs: ["shape"],
              outputs: ["a"],
              attrs: { value: { tensor: { dims: [1], data: [1] } } },
            },
            { op: "MatMul", inputs: ["a", "a"], outputs: ["aa"] },
            { op: "ReduceSum", inputs: ["aa"], outputs: ["t"], attrs: { keepdims: 1 } },
            { op: "Mul", inputs: ["t", "zero"], outputs: ["z"] },
            { op: "Add", inputs: ["z", "x"], outputs: ["y"] },
          ],
        }),
      );
      expect(dynamicShapeNodes(loadOnnx(staticOnnx))).to.deep.equal([]);
      // packagePlainModel would run it once to learn its output shape: write the bundle from the small one.
      const heavy: LoadedPlainBundle = { ...big, dir: path.join(staticDir, "bundle") };
      fs.cpSync(big.dir, heavy.dir, { recursive: true });
      fs.copyFileSync(staticOnnx, path.join(heavy.dir, "model.onnx"));
      const executor = new ModelExecutor(s, { ...LIMITS, execTimeoutMs: 1000 });
      const probe = refusal((await Promise.allSettled([executor.outputs(heavy, [0n])]))[0]);
      expect(probe.kind).to.equal("cost");
      expect(probe.message).to.include("probe run on zeros").and.include("execTimeoutMs");
    });

    it("classifies failures: refusals are final, the transport is retried, anything else a bounded number of times", function () {
      expect(failureClass(new ExecutionRefusedError("time", "x"))).to.equal("refuse");
      expect(failureClass(new BundleRejectedError("x"))).to.equal("refuse");
      expect(failureClass(new InputRejectedError("x"))).to.equal("refuse");
      expect(
        failureClass(
          Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8545"), { code: "ECONNREFUSED" }),
        ),
      ).to.equal("transient");
      expect(failureClass(new Error("nonce too low"))).to.equal("transient");
      expect(failureClass(new RangeError("Invalid array length"))).to.equal("unknown");
    });
  });

  describe("bundle cache", function () {
    it("remembers a refused bundle: asked again, it is refused without another download", async function () {
      let gets = 0;
      const server = http.createServer((req, res) => {
        gets++;
        res.writeHead(200, { "content-type": "application/octet-stream" });
        res.end("these bytes do not hash to the bundle id");
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      try {
        const port = (server.address() as { port: number }).port;
        const cache = new BundleCache(
          fs.mkdtempSync(path.join(os.tmpdir(), "opg-bundles-")),
          new DataClient(`http://127.0.0.1:${port}`),
          { consistency: false },
        );
        const model = { bundleHash: "0x" + "ab".repeat(32) } as Parameters<BundleCache["getAny"]>[0];
        const first = await Promise.allSettled([cache.getAny(model)]);
        expect((first[0] as PromiseRejectedResult).reason).to.be.instanceOf(BundleRejectedError);
        const downloads = gets;
        expect(downloads).to.be.greaterThan(0);
        const second = await Promise.allSettled([cache.getAny(model)]);
        expect((second[0] as PromiseRejectedResult).reason.message).to.equal(
          (first[0] as PromiseRejectedResult).reason.message,
        );
        expect(gets, "no second download").to.equal(downloads);
      } finally {
        server.close();
      }
    });
  });
});
