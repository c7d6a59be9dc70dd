/**
 * npm run bench:latency — submit-to-verified latency of a lone ZK task (issue 21, goal 2): a
 * real `hardhat node`, the protocol, a data node and one idle inference node (child processes), the digits
 * MLP (64-32-16-10). Tasks are submitted one at a time, each after the previous one is verified, so the
 * node is idle when a task arrives.
 *
 * Two chains, in the same run:
 *   - automine (a block per transaction, what `opg dev` and the tests use): latency in seconds, from just
 *     before the submitting transaction is sent to the moment the script sees TaskVerified (polled every
 *     20 ms);
 *   - interval mining, a block every second (`evm_setAutomine false`, `evm_setIntervalMining 1000`): the
 *     same in seconds, and in blocks (the block of TaskVerified minus the block of TaskSubmitted).
 * Also prints the node's own stage split (execute, prove, chain) from its /metrics. Then runs the same bench
 * of the baseline revision (scripts/lib/baseline.ts: before the claimless redesign) in a git worktree on
 * this machine, and prints its table: the same-run baseline (OPG_BASELINE=0 skips it).
 *
 * OPG_BENCH_TASKS (tasks per chain, default 20).
 */
import path from "node:path";
import { ethers } from "ethers";
import { TOPICS } from "../workers/runtime/tasks";
import { ensureCliBuilt } from "../test/helpers/cli";
import {
  freePort,
  publishModel,
  sleep,
  stakeNode,
  startInferenceNode,
  startNetwork,
  waitForLog,
} from "../network/local-network";
import { printBaseline } from "./lib/baseline";
import { digitsWorkload, fundedRequester, submitOne } from "./lib/digits-workload";

const TASKS = Number(process.env.OPG_BENCH_TASKS ?? 20);
const FEE = ethers.parseEther("1");

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function stageSeconds(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^opg_stage_seconds_sum\{stage="(\w+)"\} ([0-9.e+-]+)$/gm))
    out[m[1]] = Number(m[2]);
  return out;
}

interface Row {
  chain: string;
  seconds: number[];
  blocks: number[];
  split: Record<string, number>;
}

async function measure(chain: "automine" | "interval"): Promise<Row> {
  const digits = await digitsWorkload();
  const network = await startNetwork();
  const metricsPort = await freePort();
  const node = startInferenceNode(network, 5, path.join(network.tmp, "inference"), {
    metricsPort,
    output: { keepLines: 500 },
  });
  try {
    const { modelId } = await publishModel(network, digits.bundleDir, FEE);
    await stakeNode(network, 5, 1);
    const requester = await fundedRequester(network, FEE * BigInt(TASKS + 2));
    const { tasks } = network.deployment;
    await waitForLog(node, "inference node started");
    if (chain === "interval") {
      await network.provider.send("evm_setAutomine", [false]);
      await network.provider.send("evm_setIntervalMining", [1000]);
    }
    const verified = new Map<bigint, { at: number; block: number }>();
    let polling = true;
    let from = 0;
    const poller = (async () => {
      while (polling) {
        const head = await network.provider.getBlockNumber();
        for (const log of await network.provider.getLogs({
          address: await tasks.getAddress(),
          topics: [TOPICS.verified],
          fromBlock: from,
          toBlock: head,
        })) {
          const id = BigInt(log.topics[1]);
          if (!verified.has(id)) verified.set(id, { at: Date.now(), block: log.blockNumber });
        }
        from = head + 1;
        await sleep(20);
      }
    })();
    const one = async (i: number) => {
      const t0 = Date.now();
      const { taskId: id, block } = await submitOne(network, requester, {
        modelId,
        input: digits.words(i),
        fee: FEE,
      });
      const started = Date.now();
      while (!verified.has(id)) {
        if (node.hasExited()) throw new Error(`the inference node exited (${node.exitDescription()})`);
        if (Date.now() - started > 300_000) throw new Error(`task ${id} not verified after 300 s`);
        await sleep(5);
      }
      const v = verified.get(id)!;
      return { seconds: (v.at - t0) / 1000, blocks: v.block - block };
    };
    await one(1000); // warm-up: the node fetches the bundle and starts its prover
    const before = await stageSeconds(metricsPort);
    const row: Row = { chain, seconds: [], blocks: [], split: {} };
    for (let i = 0; i < TASKS; i++) {
      const r = await one(i);
      row.seconds.push(r.seconds);
      row.blocks.push(r.blocks);
    }
    const after = await stageSeconds(metricsPort);
    for (const [k, v] of Object.entries(after)) row.split[k] = (v - (before[k] ?? 0)) / TASKS;
    polling = false;
    await poller;
    return row;
  } finally {
    await node.stop().catch(() => node.stop("SIGKILL"));
    await network.stop();
  }
}

async function main() {
  ensureCliBuilt();
  const rows = [await measure("automine"), await measure("interval")];
  console.log(`\n## bench:latency — ${TASKS} lone digits-MLP ZK tasks per chain, one idle inference node\n`);
  console.log("| chain | p50 | p95 | max | p50 in blocks | node's time per task: execute / prove / chain |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    const s = (p: number) => `${percentile(r.seconds, p).toFixed(2)} s`;
    const split = ["execute", "prove", "chain"].map((k) => `${(r.split[k] ?? 0).toFixed(2)} s`).join(" / ");
    const blocks = r.chain === "automine" ? "-" : String(percentile(r.blocks, 50));
    console.log(
      `| ${r.chain === "automine" ? "automine" : "a block every 1 s"} | ${s(50)} | ${s(95)} | ${s(100)} | ${blocks} | ${split} |`,
    );
  }
  await printBaseline(
    "scripts/bench-latency.ts",
    { OPG_BENCH_TASKS: String(TASKS) },
    "submit, claim, submitResult: three transactions",
  );
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
