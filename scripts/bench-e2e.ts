/**
 * npm run bench:e2e — throughput and latency of the whole network on the digits-size fixture model
 * (64-32-16-10 MLP): a real hardhat node, a data node and 1 or 2 inference nodes as child processes, tasks
 * submitted by a dapp account, submit-to-verified latency measured from the submitting receipt to the
 * TaskVerified event, and the time split between execution, proving and chain from the nodes' /metrics.
 */
import fs from "node:fs";
import path from "node:path";
import { ethers } from "ethers";
import { executeQuantized, inputWords, loadManifest, loadProgram } from "../zkml";
import { parseSubmitted, TOPICS } from "../workers/runtime/tasks";
import {
  account,
  fixtureBundle,
  publishModel,
  stakeNode,
  startInferenceNode,
  startNetwork,
  waitFor,
  type Proc,
} from "../network/local-network";

const MODEL = "test/fixtures/models/digits_mlp.onnx";
const TASKS = Number(process.env.OPG_BENCH_TASKS ?? 20);
const FEE = ethers.parseEther("1");

function percentile(sorted: number[], p: number) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function stageSeconds(proc: Proc): Promise<Record<string, number>> {
  const listening = proc.logs().find((l) => l.msg === "metrics and health listening");
  const text = await (await fetch(`http://127.0.0.1:${listening!.port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^opg_stage_seconds_sum\{stage="(\w+)"\} ([0-9.e+-]+)$/gm))
    out[m[1]] = Number(m[2]);
  return out;
}

async function main() {
  const bundleDir = await fixtureBundle(MODEL);
  const manifest = loadManifest(bundleDir);
  const program = loadProgram(bundleDir);
  // Held-out sklearn digits, stored divided by `scale`: multiply back to the model's input range.
  const digits = JSON.parse(fs.readFileSync(path.join("test/fixtures/models/digits_test.json"), "utf8")) as {
    scale: number;
    inputs: number[][];
  };
  const samples = digits.inputs.map((x) => x.map((v) => v * digits.scale));
  const rows: string[] = [];
  let baseline = 0;
  for (const nodes of [1, 2]) {
    const net = await startNetwork();
    const procs: Proc[] = [];
    try {
      const { modelId } = await publishModel(net, bundleDir, FEE);
      for (let i = 0; i < nodes; i++) await stakeNode(net, 5 + i);
      const requester = account(1).connect(net.provider);
      const { token, tasks } = net.deployment;
      await (
        await token.connect(net.deployer).transfer(requester.address, FEE * BigInt(TASKS + nodes))
      ).wait();
      await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
      await (await tasks.connect(requester).deposit(FEE * BigInt(TASKS + nodes))).wait();
      for (let i = 0; i < nodes; i++) {
        procs.push(
          startInferenceNode(net, 5 + i, path.join(net.tmp, `bench-${i}`), {
            env: { OPG_LOG_LEVEL: "info" },
          }),
        );
      }
      await waitFor("nodes up", async () =>
        procs.every((p) => p.logs().some((l) => l.msg === "inference node started")),
      );
      // Warm each node's bundle cache and proving thread with one task each, not counted.
      const submittedAt = new Map<bigint, number>();
      const submitOne = async (i: number) => {
        const q = executeQuantized(program, samples[i % samples.length]);
        const now = (await net.provider.getBlock("latest"))!.timestamp;
        const receipt = await (
          await tasks.connect(requester).submitTask({
            modelId,
            input: inputWords(manifest, q.input),
            inputDataHash: ethers.ZeroHash,
            fee: FEE,
            deadline: now + 3600,
            callback: ethers.ZeroAddress,
            callbackGasLimit: 0,
          })
        ).wait();
        const taskId = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!).taskId;
        submittedAt.set(taskId, Date.now());
        return taskId;
      };
      const verifiedAt = new Map<bigint, number>();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          for (const e of await tasks.queryFilter(tasks.filters.TaskVerified(), 0, "latest")) {
            const id = e.args.taskId;
            if (!verifiedAt.has(id)) verifiedAt.set(id, Date.now());
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const warm: bigint[] = [];
      for (let i = 0; i < nodes; i++) warm.push(await submitOne(1000 + i));
      await waitFor("warm-up", async () => warm.every((id) => verifiedAt.has(id)), 300_000);
      const before = await Promise.all(procs.map(stageSeconds));
      const ids: bigint[] = [];
      const t0 = Date.now();
      for (let i = 0; i < TASKS; i++) ids.push(await submitOne(i));
      await waitFor("all verified", async () => ids.every((id) => verifiedAt.has(id)), 600_000);
      const elapsed = (Math.max(...ids.map((id) => verifiedAt.get(id)!)) - t0) / 1000;
      polling = false;
      await poller;
      const after = await Promise.all(procs.map(stageSeconds));
      const split: Record<string, number> = {};
      after.forEach((a, i) => {
        for (const [k, v] of Object.entries(a)) split[k] = (split[k] ?? 0) + v - (before[i][k] ?? 0);
      });
      const latencies = ids
        .map((id) => (verifiedAt.get(id)! - submittedAt.get(id)!) / 1000)
        .sort((a, b) => a - b);
      const perMinute = (TASKS / elapsed) * 60;
      if (nodes === 1) baseline = perMinute;
      const total = (split.execute ?? 0) + (split.reference ?? 0) + (split.prove ?? 0) + (split.chain ?? 0);
      const pct = (k: string) => `${(((split[k] ?? 0) / total) * 100).toFixed(0)}%`;
      rows.push(
        `| ${nodes} | ${TASKS} | ${perMinute.toFixed(1)} | ${(perMinute / baseline).toFixed(2)}x | ${percentile(latencies, 50).toFixed(2)} s | ${percentile(latencies, 95).toFixed(2)} s | ${pct("execute")} / ${pct("reference")} / ${pct("prove")} / ${pct("chain")} |`,
      );
    } finally {
      for (const p of procs) await p.stop().catch(() => p.stop("SIGKILL"));
      await net.stop();
    }
  }
  console.log(`\nbench:e2e on ${MODEL} (${manifest.constraints} constraints), hardhat node with automine\n`);
  console.log(
    "| inference nodes | tasks | tasks/min | vs 1 node | latency p50 | latency p95 | time: execute / onnxruntime / prove / chain |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
