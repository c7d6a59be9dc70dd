import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers, type Wallet } from "ethers";
import { packValues } from "../../zkml";
import { packagePlainModel, quantizePlainInput, type PlainBundleManifest } from "../../zkml/plain-bundle";
import { MODES, parseSubmitted, TOPICS } from "../../workers/runtime/tasks";
import {
  account,
  freePort,
  publishModel,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  stopAllSpawned,
  waitFor,
  waitForLog,
  type Network,
  type Proc,
} from "../../network/local-network";
import { ensureCliBuilt } from "../helpers/cli";

const MODELS = path.join(__dirname, "..", "fixtures", "models");
const Status = { Claimed: 2n, Verified: 3n, Pending: 5n };
/** The hostile model's n (an n x n MatMul; unbounded, ~30 s and 768 MB on this machine's class of host). */
const HOSTILE_N = 8001;
/** What the node processes' resident memory must stay under while the hostile tasks are in flight. */
const NODE_RSS_BOUND_MB = 600;
/** The execution limits the opted-in nodes run under. */
const EXEC_TIMEOUT_MS = 3000;
const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(MODELS, "iris_test.json"), "utf8"),
).inputs;

/** Resident memory of a process in MiB, from /proc. */
function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

/** The execution processes (exec-worker.js) a node process started. */
function execWorkers(pid: number): number[] {
  let children: number[];
  try {
    children = fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .split(" ")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
  return children.filter((c) => {
    try {
      return fs.readFileSync(`/proc/${c}/cmdline`, "utf8").includes("exec-worker");
    } catch {
      return false;
    }
  });
}

/**
 * Polls each node's /healthz every 100 ms until stopped: the worst answer time, failures, and the nodes'
 * peak resident memory (the node process itself, not its execution processes).
 */
function watchNodes(nodes: { name: string; port: number; proc: Proc }[]) {
  const worstMs: Record<string, number> = {};
  const peakRssMb: Record<string, number> = {};
  const failures: string[] = [];
  let polls = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      await Promise.all(
        nodes.map(async ({ name, port, proc }) => {
          const started = performance.now();
          try {
            const res = await fetch(`http://127.0.0.1:${port}/healthz`, {
              signal: AbortSignal.timeout(30_000),
            });
            await res.text();
          } catch (e) {
            failures.push(`${name}: ${(e as Error).message}`);
          }
          worstMs[name] = Math.max(worstMs[name] ?? 0, performance.now() - started);
          if (!proc.hasExited()) peakRssMb[name] = Math.max(peakRssMb[name] ?? 0, rssMb(proc.child.pid!));
        }),
      );
      polls++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { worstMs, peakRssMb, failures, polls };
    },
  };
}

/**
 * Issue 20 point 2 and 3 with real processes: a stranger registers a plain model (fee 0) whose cost the task's
 * input chooses (hostile_matmul.onnx: an input value becomes n of an n x n MatMul) and submits it with n = 8001,
 * which ran 53 s in the node's own process and silenced /healthz. Now: with the default policy the inference
 * node refuses the model by name without running it; with allowDynamicShapes the sandbox's limits stop the
 * run, and the verification node's /attest re-run too. Either way the task is refused once (never retried),
 * both nodes answer /healthz promptly throughout, an ordinary task is served to completion meanwhile, and both
 * processes stay up with their memory under NODE_RSS_BOUND_MB.
 */
describe("hostile models: bounded, isolated execution (real processes)", function () {
  this.timeout(900_000);
  let net: Network;
  let requester: Wallet;
  let hostile: { dir: string; manifest: PlainBundleManifest; modelId: bigint };
  let iris: { dir: string; manifest: PlainBundleManifest; modelId: bigint };
  let verification: Proc;
  let verificationPort: number;
  const procs: Proc[] = [];

  async function submit(model: typeof hostile, x: number[], fee: bigint) {
    const q = quantizePlainInput(model.manifest, x);
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await net.deployment.tasks.connect(requester).submitTaskInMode(
        {
          modelId: model.modelId,
          input: packValues(q, model.manifest.publicSignals.packBits),
          inputDataHash: ethers.ZeroHash,
          fee,
          deadline: now + 3600,
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        },
        MODES.optimistic,
      )
    ).wait();
    return parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
  }

  /** The hostile model's input for an n x n MatMul (n = floor(|x| * 64) + 1). */
  const hostileX = (n: number) => [(n - 1) / 64 + 1 / 512];

  const lines = (proc: Proc, msg: string, taskId: bigint) =>
    proc.logs().filter((l) => l.msg === msg && l.taskId === taskId.toString());

  before(async function () {
    // The nodes run the compiled build (bin/opg.js), execution processes included.
    ensureCliBuilt();
    net = await startNetwork();
    const pkg = async (file: string, name: string) => {
      const dir = path.join(net.tmp, name);
      const manifest = await packagePlainModel(path.join(MODELS, file), dir);
      return { dir, manifest };
    };
    const h = await pkg("hostile_matmul.onnx", "hostile");
    const i = await pkg("iris_mlp.onnx", "iris");
    hostile = { ...h, ...(await publishModel(net, h.dir, 0n, { verificationModes: MODES.optimistic })) };
    iris = { ...i, ...(await publishModel(net, i.dir, 0n, { verificationModes: MODES.optimistic })) };
    verificationPort = await freePort();
    await stakeNode(net, 5, 1);
    await stakeNode(net, 6, 1);
    await stakeNode(net, 7, 2, 5_000n * 10n ** 18n, `http://127.0.0.1:${verificationPort}`);
    requester = account(1).connect(net.provider) as unknown as Wallet;
    const { token, tasks } = net.deployment;
    await (await token.connect(net.deployer).transfer(requester.address, ethers.parseEther("100"))).wait();
    await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
    // The verification node opts in to dynamic shapes, so that /attest re-runs the hostile task (in its
    // sandbox, under a 3 s limit) rather than refusing it by policy.
    verification = startVerificationNode(net, 7, path.join(net.tmp, "verification"), {
      metricsPort: verificationPort,
      extra: ["--allow-dynamic-shapes", "--exec-timeout-ms", String(EXEC_TIMEOUT_MS)],
    });
    procs.push(verification);
    await waitForLog(verification, "verification node started");
  });

  after(async function () {
    for (const p of procs) await p.stop("SIGKILL").catch(() => undefined);
    await stopAllSpawned();
    await net?.stop();
  });

  async function phase(extra: string[], stateDir: string) {
    const startBlock = await net.provider.getBlockNumber();
    const port = await freePort();
    const inference = startInferenceNode(net, 5, path.join(net.tmp, stateDir), {
      metricsPort: port,
      extra: [
        "--start-block",
        String(startBlock),
        "--attest-urls",
        `http://127.0.0.1:${verificationPort}`,
        "--attest-timeout-ms",
        "30000",
        ...extra,
      ],
    });
    procs.push(inference);
    await waitForLog(inference, "inference node started");
    await waitForLog(inference, "node eligible: claiming tasks");
    const watch = watchNodes([
      { name: "inference", port, proc: inference },
      { name: "verification", port: verificationPort, proc: verification },
    ]);
    const bad = await submit(hostile, hostileX(HOSTILE_N), 0n);
    const good = await submit(iris, irisInputs[0], 0n);
    const { tasks } = net.deployment;
    await waitFor(
      `the ordinary task ${good.taskId} posted with its attestation`,
      async () => [Status.Pending, Status.Verified].includes(await tasks.taskStatus(good.taskId)),
      300_000,
      200,
      inference,
    );
    await waitFor(
      `the hostile task ${bad.taskId} refused`,
      async () => lines(inference, "task refused", bad.taskId).length > 0,
      300_000,
      200,
      inference,
    );
    // A few more rounds of polling: a task retried would show up again.
    await new Promise((r) => setTimeout(r, 3000));
    const seen = await watch.stop();
    return { inference, bad, good, seen };
  }

  function expectHealthy(seen: Awaited<ReturnType<typeof phase>>["seen"], inference: Proc) {
    expect(seen.failures, "every /healthz answered").to.deep.equal([]);
    expect(seen.polls).to.be.greaterThan(10);
    for (const [name, ms] of Object.entries(seen.worstMs))
      expect(ms, `${name}'s worst /healthz answer (ms)`).to.be.lessThan(2000);
    for (const [name, mb] of Object.entries(seen.peakRssMb))
      expect(mb, `${name}'s peak resident memory (MiB)`).to.be.lessThan(NODE_RSS_BOUND_MB);
    expect(inference.hasExited(), "inference node up").to.equal(false);
    expect(verification.hasExited(), "verification node up").to.equal(false);
  }

  it("default policy: the model is refused by name before it runs, once; health and an ordinary task unaffected", async function () {
    const { inference, bad, good, seen } = await phase([], "inference-default");
    const refused = lines(inference, "task refused", bad.taskId);
    expect(refused, "one refusal line").to.have.length(1);
    expect(refused[0].limit).to.equal("dynamic-shape");
    expect(String(refused[0].reason)).to.include("ConstantOfShape").and.include("allowDynamicShapes");
    expect(lines(inference, "stage failed; will retry", bad.taskId)).to.deep.equal([]);
    expect(await net.deployment.tasks.taskStatus(bad.taskId), "never claimed").to.equal(1n);
    const [poster] = await net.deployment.tasks.pendingOf(good.taskId);
    expect(poster, "the ordinary task posted by the inference node").to.equal(account(5).address);
    expectHealthy(seen, inference);
    console.log(
      `      default policy: /healthz worst ${JSON.stringify(seen.worstMs)} ms, peak RSS ${JSON.stringify(seen.peakRssMb)} MiB`,
    );
    await inference.stop();
  });

  it("allowDynamicShapes: the sandbox stops the run at its limit, the node refuses the task once and stays up", async function () {
    const { inference, bad, seen } = await phase(
      [
        "--allow-dynamic-shapes",
        "--exec-timeout-ms",
        String(EXEC_TIMEOUT_MS),
        "--concurrency",
        "2",
        "--exec-workers",
        "2",
      ],
      "inference-open",
    );
    const refused = lines(inference, "task refused", bad.taskId);
    expect(refused, "one refusal line").to.have.length(1);
    expect(["time", "memory"]).to.include(refused[0].limit);
    expect(lines(inference, "stage failed; will retry", bad.taskId)).to.deep.equal([]);
    expect(inference.logs().some((l) => l.msg === "execution process over its limit: killed")).to.equal(true);
    expectHealthy(seen, inference);
    console.log(
      `      opted in: /healthz worst ${JSON.stringify(seen.worstMs)} ms, peak RSS ${JSON.stringify(seen.peakRssMb)} MiB`,
    );
    await inference.stop();
  });

  it("an execution that fails for no reason the sandbox gave (its process killed from outside) is retried twice, then the task is given up", async function () {
    const startBlock = await net.provider.getBlockNumber();
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference-crash"), {
      extra: ["--start-block", String(startBlock), "--allow-dynamic-shapes", "--exec-timeout-ms", "120000"],
    });
    procs.push(inference);
    await waitForLog(inference, "node eligible: claiming tasks");
    const bad = await submit(hostile, hostileX(HOSTILE_N), 0n);
    // Whenever the node's execution process is busy with the hostile run (its memory past 300 MiB), kill it.
    let kills = 0;
    await waitFor(
      `task ${bad.taskId} given up`,
      async () => {
        for (const pid of execWorkers(inference.child.pid!)) {
          if (rssMb(pid) > 300) {
            process.kill(pid, "SIGKILL");
            kills++;
          }
        }
        return (
          lines(inference, "stage failed again with the same unexpected error; task given up", bad.taskId)
            .length > 0
        );
      },
      300_000,
      50,
      inference,
    );
    await new Promise((r) => setTimeout(r, 3000));
    expect(kills).to.equal(3);
    expect(lines(inference, "stage failed; will retry", bad.taskId), "two retries").to.have.length(2);
    expect(
      lines(inference, "stage failed again with the same unexpected error; task given up", bad.taskId),
    ).to.have.length(1);
    expect(lines(inference, "task refused", bad.taskId)).to.deep.equal([]);
    expect(inference.hasExited()).to.equal(false);
    await inference.stop();
  });

  it("the verification node's /attest re-run of the hostile task is stopped by its sandbox; it keeps serving", async function () {
    const bad = await submit(hostile, hostileX(HOSTILE_N), 0n);
    const { tasks } = net.deployment;
    // Claimed by a node of this test, which asks for an attestation of made-up outputs.
    const claimer = account(6).connect(net.provider);
    await (await tasks.connect(claimer).claimTask(bad.taskId, bad.task)).wait();
    expect(await tasks.taskStatus(bad.taskId)).to.equal(Status.Claimed);
    const watch = watchNodes([{ name: "verification", port: verificationPort, proc: verification }]);
    const started = Date.now();
    const res = await fetch(`http://127.0.0.1:${verificationPort}/attest`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ taskId: bad.taskId.toString(), node: claimer.address, outputs: ["1"] }),
    });
    const body = await res.text();
    const tookMs = Date.now() - started;
    const seen = await watch.stop();
    expect(res.status, body).to.not.equal(200);
    expect(tookMs, "answered once the sandbox stopped the run").to.be.lessThan(60_000);
    expect(body).not.to.include(net.tmp);
    expect(seen.failures).to.deep.equal([]);
    expect(seen.worstMs.verification, "worst /healthz (ms) during the re-run").to.be.lessThan(2000);
    expect(seen.peakRssMb.verification).to.be.lessThan(NODE_RSS_BOUND_MB);
    expect(verification.logs().some((l) => l.msg === "execution process over its limit: killed")).to.equal(
      true,
    );
    expect(verification.hasExited()).to.equal(false);
    console.log(
      `      /attest re-run: answered ${res.status} in ${tookMs} ms, /healthz worst ${seen.worstMs.verification.toFixed(0)} ms`,
    );
  });
});
