/**
 * npm run bench:gas — gas per digits-MLP task (64-32-16-10, 5 input words, 1 output word), every transaction
 * counted (the requester's submission, the node's claim where the path has one, the settlement, and for
 * optimistic tasks the finalization), per verification mode and ZK batch size: this checkout's settlement
 * path after issue 21's redesign beside "today's path" before it (the baseline, BASELINE_REV, or
 * OPG_BASELINE_REV), measured in the same run on the in-process Hardhat network.
 *
 * Each path runs in its own tree: this checkout's probe (scripts/lib/gas-probe.ts) here, and the baseline's
 * (scripts/lib/gas-probe-baseline.ts, copied with gas-probe-common.ts) in a compiled git worktree of the
 * baseline revision under .opg/cache (scripts/lib/baseline.ts). Both register the same compiled digits bundle
 * (cached under .opg/cache), the requester prepays credits, and each figure is the node's second task of a
 * mode (the first writes of its accounts are behind it). Prints a markdown table; writes no file (besides the
 * worktree and the bundle cache).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { BASELINE_REV, baselineTree, REPO_ROOT, resolveRev, runProbe } from "./lib/baseline";
import type { ProbeResult, ProbeRow } from "./lib/gas-probe-common";

/** The commit before the redesign (issue 21): today's claim-then-settle path. */
// BASELINE_REV: see scripts/lib/baseline.ts.

/** What the baseline's probe needs from this checkout: copied into its worktree's scripts/lib. */
const BASELINE_PROBE_FILES = ["scripts/lib/gas-probe-common.ts", "scripts/lib/gas-probe-baseline.ts"];

const ROWS: { key: string; label: string }[] = [
  { key: "zk-lone", label: "ZK, lone" },
  { key: "zk-batch-2", label: "ZK, batch of 2" },
  { key: "zk-batch-4", label: "ZK, batch of 4" },
  { key: "zk-batch-8", label: "ZK, batch of 8" },
  { key: "zk-batch-16", label: "ZK, batch of 16" },
  { key: "tee-lone", label: "TEE, lone" },
  { key: "optimistic-lone", label: "Optimistic, lone" },
];

function log(message: string) {
  process.stderr.write(`[bench:gas] ${message}\n`);
}

const number = (n: number) => n.toLocaleString("en-US");

/**
 * A row's transactions and their gas: "submitTask 86,855 + submitResult 310,147", or for a batch
 * "8 × submitTask (86,799 on average) + submitResults 1,035,874, / 8".
 */
function breakdown(row: ProbeRow): string {
  const byName = new Map<string, number[]>();
  for (const t of row.transactions) byName.set(t.name, [...(byName.get(t.name) ?? []), t.gas]);
  const parts = [...byName].map(([name, gas]) =>
    gas.length === 1
      ? `${name} ${number(gas[0])}`
      : `${gas.length} × ${name} (${number(Math.round(gas.reduce((a, b) => a + b, 0) / gas.length))} on average)`,
  );
  return parts.join(" + ") + (row.tasks > 1 ? `, / ${row.tasks}` : "");
}

/** The change from `before` to `after` in percent, signed ("-16.1%", "+2.6%"). */
function change(before: number, after: number): string {
  const percent = ((after - before) / before) * 100;
  return `${percent > 0 ? "+" : ""}${percent.toFixed(1)}%`;
}

async function main() {
  const commit = resolveRev(BASELINE_REV);
  log("measuring this checkout");
  const current = await runProbe<ProbeResult>(REPO_ROOT, "scripts/lib/gas-probe.ts");
  log(`measuring the baseline ${BASELINE_REV}`);
  const tree = baselineTree(BASELINE_REV, log);
  for (const file of BASELINE_PROBE_FILES) {
    fs.copyFileSync(path.join(REPO_ROOT, file), path.join(tree, file));
  }
  const baseline = await runProbe<ProbeResult>(tree, "scripts/lib/gas-probe-baseline.ts");
  if (baseline.commit !== commit) {
    throw new Error(`the baseline probe ran at ${baseline.commit}, not ${commit}`);
  }
  const dirty =
    execFileSync("git", ["status", "--porcelain", "--", "contracts"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
    }).trim() !== "";

  console.log("\n## bench:gas — gas per digits-MLP task, every transaction counted\n");
  console.log("| path | baseline gas per task | new gas per task | change |");
  console.log("|---|---:|---:|---:|");
  for (const { key, label } of ROWS) {
    const before = baseline.rows[key];
    const after = current.rows[key];
    const cells = [
      before ? number(before.perTask) : "-",
      after ? number(after.perTask) : "-",
      before && after ? change(before.perTask, after.perTask) : "-",
    ];
    console.log(`| ${label} | ${cells.join(" | ")} |`);
  }
  console.log(
    `\nBaseline: ${BASELINE_REV} (${commit}), today's path before the redesign; new: this checkout, HEAD ` +
      `${current.commit}${dirty ? " with uncommitted changes under contracts/" : ""}.`,
  );
  console.log("Transactions counted, and their gas (a batch's total is divided by its tasks):\n");
  for (const { key, label } of ROWS) {
    const before = baseline.rows[key];
    const after = current.rows[key];
    const parts = [before && `baseline ${breakdown(before)}`, after && `new ${breakdown(after)}`];
    console.log(`- ${label}: ${parts.filter(Boolean).join("; ")}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
