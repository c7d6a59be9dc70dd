/**
 * npm run bench:nodes — many inference nodes on one chain (issue 21, goal 3): a real `hardhat
 * node` (automine), a data node and 1, 2, 4 and 8 inference nodes as child processes on this one machine, a
 * burst of tasks on the digits MLP submitted back to back. Per node count it reports throughput, tasks
 * settled per node (fairness), duplicated work (model runs beyond one per task: nodes that prepared a task
 * another node then claimed), the nodes' transactions that reverted on chain, and gas spent by the nodes per
 * settled task. The CPU is shared by every node, the chain and this script, so throughput here measures the
 * protocol's overhead on one machine, not what separate machines would give.
 *
 * Then runs the same bench of the baseline revision (scripts/lib/baseline.ts: every node prepares every task
 * and races to claim it) in a git worktree on this machine and prints its table: the same-run baseline
 * (OPG_BASELINE=0 skips it).
 *
 * OPG_BENCH_TASKS (tasks per node count, default 24), OPG_BENCH_NODES (default "1,2,4,8").
 */
import path from "node:path";
import { ethers } from "ethers";
import { ensureCliBuilt } from "../test/helpers/cli";
import {
  account,
  freePort,
  publishModel,
  sleep,
  stakeNode,
  startInferenceNode,
  startNetwork,
  waitForLog,
  type Proc,
} from "../network/local-network";
import { printBaseline } from "./lib/baseline";
import { digitsWorkload, fundedRequester, submitOne } from "./lib/digits-workload";

const TASKS = Number(process.env.OPG_BENCH_TASKS ?? 24);
const NODE_COUNTS = (process.env.OPG_BENCH_NODES ?? "1,2,4,8").split(",").map(Number);
const FEE = ethers.parseEther("1");
/** Mnemonic accounts of the nodes: 5 to 12. */
const FIRST_NODE = 5;

async function metric(port: number, name: string, label?: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    if (label && !line.includes(label)) continue;
    if (!/^[a-z_]+(\{|\s)/.test(line)) continue;
    sum += Number(line.split(" ").pop());
  }
  return sum;
}

async function run(nodes: number) {
  const digits = await digitsWorkload();
  const network = await startNetwork();
  const procs: Proc[] = [];
  const ports: number[] = [];
  try {
    const { modelId } = await publishModel(network, digits.bundleDir, FEE);
    for (let i = 0; i < nodes; i++) await stakeNode(network, FIRST_NODE + i, 1);
    const requester = await fundedRequester(network, FEE * BigInt(TASKS + nodes + 2));
    const { tasks } = network.deployment;
    for (let i = 0; i < nodes; i++) {
      ports.push(await freePort());
      procs.push(
        startInferenceNode(network, FIRST_NODE + i, path.join(network.tmp, `inference-${i}`), {
          metricsPort: ports[i],
          output: { keepLines: 500 },
        }),
      );
    }
    for (const p of procs) await waitForLog(p, "inference node started");
    const submit = async (i: number) =>
      (await submitOne(network, requester, { modelId, input: digits.words(i), fee: FEE })).taskId;
    const verifiedBy = new Map<bigint, string>();
    const until = async (what: string, fn: () => boolean) => {
      const t0 = Date.now();
      while (!fn()) {
        const dead = procs.find((p) => p.hasExited());
        if (dead) throw new Error(`${dead.name} exited while waiting for ${what}`);
        if (Date.now() - t0 > 600_000) throw new Error(`timed out waiting for ${what}`);
        const logs = await tasks.queryFilter(tasks.filters.TaskVerified(), 0, "latest");
        for (const e of logs) verifiedBy.set(e.args.taskId, e.args.node);
        await sleep(100);
      }
    };
    // Warm-up: one task per node (each fetches the bundle and starts its prover), not counted.
    const warm: bigint[] = [];
    for (let i = 0; i < nodes; i++) warm.push(await submit(1000 + i));
    await until("the warm-up tasks", () => warm.every((id) => verifiedBy.has(id)));
    const startBlock = await network.provider.getBlockNumber();
    const before = await Promise.all(ports.map((p) => metric(p, "opg_executions", 'outcome="ok"')));
    const ids: bigint[] = [];
    const t0 = Date.now();
    for (let i = 0; i < TASKS; i++) ids.push(await submit(i));
    await until("every task verified", () => ids.every((id) => verifiedBy.has(id)));
    const seconds = (Date.now() - t0) / 1000;
    const runs = (await Promise.all(ports.map((p) => metric(p, "opg_executions", 'outcome="ok"')))).map(
      (v, i) => v - before[i],
    );
    // The nodes' transactions since the burst began, and which of them reverted.
    const nodeAddresses = new Set(procs.map((_, i) => account(FIRST_NODE + i).address.toLowerCase()));
    let sent = 0;
    let reverted = 0;
    let gasUsed = 0n;
    const head = await network.provider.getBlockNumber();
    for (let n = startBlock + 1; n <= head; n++) {
      const block = await network.provider.getBlock(n, true);
      for (const tx of block!.prefetchedTransactions) {
        if (!nodeAddresses.has(tx.from.toLowerCase())) continue;
        sent++;
        const receipt = await network.provider.getTransactionReceipt(tx.hash);
        if (receipt!.status === 0) reverted++;
        gasUsed += receipt!.gasUsed;
      }
    }
    const perNode = procs.map(
      (_, i) =>
        ids.filter(
          (id) => verifiedBy.get(id)!.toLowerCase() === account(FIRST_NODE + i).address.toLowerCase(),
        ).length,
    );
    return {
      nodes,
      seconds,
      perMinute: (TASKS / seconds) * 60,
      perNode,
      duplicated: runs.reduce((a, b) => a + b, 0) - TASKS,
      sent,
      reverted,
      gasPerTask: Number(gasUsed) / TASKS,
    };
  } finally {
    for (const p of procs) await p.stop().catch(() => p.stop("SIGKILL"));
    await network.stop();
  }
}

async function main() {
  ensureCliBuilt();
  const rows = [];
  for (const n of NODE_COUNTS) rows.push(await run(n));
  const base = rows[0].perMinute;
  console.log(`\n## bench:nodes — ${TASKS} digits-MLP ZK tasks in a burst, automine, one 2-core machine\n`);
  console.log(
    "| inference nodes | tasks/min | vs first row | tasks settled per node | duplicated model runs | node transactions | reverted | gas of the nodes' transactions per task |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.nodes} | ${r.perMinute.toFixed(1)} | ${(r.perMinute / base).toFixed(2)}x | ${r.perNode.join(" / ")} | ${r.duplicated} | ${r.sent} | ${r.reverted} | ${Math.round(r.gasPerTask).toLocaleString("en-US")} |`,
    );
  }
  await printBaseline(
    "scripts/bench-nodes.ts",
    { OPG_BENCH_TASKS: String(TASKS), OPG_BENCH_NODES: NODE_COUNTS.join(",") },
    "every node prepares every open task and races to claim it",
  );
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
