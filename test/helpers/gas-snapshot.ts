import fs from "node:fs";
import path from "node:path";
import type { ContractTransactionResponse } from "ethers";

/**
 * Gas snapshot shared by every contract test: tests record the gas of the main operations under a stable
 * name; after the run the figures are compared with the committed `gas/snapshot.json`. A figure that moved
 * by more than the tolerance, or a new name, fails the run. `npm run gas:snapshot` rewrites the file.
 */
const SNAPSHOT_FILE = path.join(__dirname, "..", "..", "gas", "snapshot.json");
const TOLERANCE = 0.01;

const measured = new Map<string, number>();

/** `npm run coverage` instruments the contracts, which inflates gas: budgets and the snapshot are off then. */
export const GAS_CHECKS = process.env.OPG_COVERAGE !== "1";

/** Assert a gas budget (skipped under coverage instrumentation). */
export function expectGasAtMost(gas: number, budget: number, what: string) {
  if (GAS_CHECKS && gas > budget) throw new Error(`${what}: ${gas} gas is over its budget of ${budget}`);
}

export async function recordGas(
  name: string,
  tx: ContractTransactionResponse | Promise<ContractTransactionResponse>,
) {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error(`no receipt for ${name}`);
  const gas = Number(receipt.gasUsed);
  // Keep the first figure for a name: each name is measured once, in a fixed scenario.
  if (!measured.has(name)) measured.set(name, gas);
  return gas;
}

/** Record a figure computed from several transactions (e.g. gas per task over a batch). */
export function recordGasFigure(name: string, gas: number) {
  if (!measured.has(name)) measured.set(name, gas);
  return gas;
}

export function compareWithSnapshot(): string[] {
  if (!GAS_CHECKS) return [];
  const update = process.env.UPDATE_GAS_SNAPSHOT === "1";
  const committed: Record<string, number> = fs.existsSync(SNAPSHOT_FILE)
    ? JSON.parse(fs.readFileSync(SNAPSHOT_FILE, "utf8"))
    : {};
  const problems: string[] = [];
  for (const [name, gas] of [...measured].sort()) {
    const before = committed[name];
    if (before === undefined) problems.push(`${name}: ${gas} gas is not in gas/snapshot.json`);
    else if (Math.abs(gas - before) > before * TOLERANCE)
      problems.push(`${name}: ${gas} gas, snapshot says ${before}`);
  }
  if (update && measured.size > 0) {
    const merged = { ...committed, ...Object.fromEntries(measured) };
    const sorted = Object.fromEntries(Object.entries(merged).sort(([a], [b]) => a.localeCompare(b)));
    fs.mkdirSync(path.dirname(SNAPSHOT_FILE), { recursive: true });
    fs.writeFileSync(SNAPSHOT_FILE, JSON.stringify(sorted, null, 2) + "\n");
    return [];
  }
  return problems;
}

// A root-level hook: registered once, when the first test file imports this module.
after(function () {
  const problems = compareWithSnapshot();
  if (measured.size > 0) {
    console.log("\n  Gas snapshot");
    for (const [name, gas] of [...measured].sort()) console.log(`    ${name.padEnd(48)} ${gas}`);
  }
  if (problems.length > 0) {
    throw new Error(
      `gas snapshot mismatch (run \`npm run gas:snapshot\` if intended):\n  ${problems.join("\n  ")}`,
    );
  }
});
