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
import { baselineTree, REPO_ROOT, resolveRev, runProbe } from "./lib/baseline";
import type { ProbeResult, ProbeRow } from "./lib/gas-probe-common";

/** The commit before the redesign (issue 21): today's claim-then-settle path. */
export const BASELINE_REV = process.env.OPG_BASELINE_REV ?? "b0811a3";

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

/** The transactions of a row, per task where each task sends its own: "submitTask + claimTask + submitResult". */
function transactions(row: ProbeRow): string {
  const counts = new Map<string, number>();
  for (const t of row.transactions) counts.set(t.name, (counts.get(t.name) ?? 0) + 1);
  return [...counts]
    .map(([name, count]) => (count === 1 && row.tasks > 1 ? `one ${name}` : name))
    .join(" + ");
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
    const change =
      before && after ? `${(((after.perTask - before.perTask) / before.perTask) * 100).toFixed(1)}%` : "-";
    console.log(
      `| ${label} | ${before ? number(before.perTask) : "-"} | ${after ? number(after.perTask) : "-"} | ` +
        `${change.startsWith("-") || change === "-" ? change : `+${change}`} |`,
    );
  }
  console.log(
    `\nBaseline: ${BASELINE_REV} (${commit}), today's path before the redesign; new: this checkout, HEAD ` +
      `${current.commit}${dirty ? " with uncommitted changes under contracts/" : ""}.`,
  );
  console.log("Transactions counted per task (a batch's settlement divided by its tasks):\n");
  for (const { key, label } of ROWS) {
    const before = baseline.rows[key];
    const after = current.rows[key];
    const parts = [
      before && `baseline ${transactions(before)}`,
      after && `new ${transactions(after)}`,
    ].filter(Boolean);
    console.log(`- ${label}: ${parts.join("; ")}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
