// `npm run bench:cli`: start-up time of the compiled `opg` command line, next to a bare `node -e ''` measured
// in the same run (the floor no Node program goes below on this machine), and `npx opg --help` (what npm adds:
// for a project's own bin, npm 11 links the project into its npx cache and reads its whole dependency tree). Each case runs RUNS times
// (OPG_BENCH_RUNS, default 11, round robin) after one warm-up run; the table gives the median, the minimum and the
// median's ratio to the baseline. Build first (`npm run build`, which bench:cli does).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.join(__dirname, "..");
const BIN = path.join(ROOT, "bin", "opg.js");
const RUNS = Number(process.env.OPG_BENCH_RUNS ?? 11);

const NODE = process.execPath;
const CASES: { name: string; cmd?: string; args: string[] }[] = [
  { name: "node -e ''", args: ["-e", ""] },
  { name: "opg --version", args: [BIN, "--version"] },
  { name: "opg --help", args: [BIN, "--help"] },
  { name: "opg task --help", args: [BIN, "task", "--help"] },
  { name: "opg zkml compile --help", args: [BIN, "zkml", "compile", "--help"] },
  { name: "opg node inference --help", args: [BIN, "node", "inference", "--help"] },
  // npm's own part: `npx opg` of a project's own bin links the project into ~/.npm/_npx and walks its tree
  { name: "npx opg --help", cmd: "npx", args: ["opg", "--help"] },
  { name: "npx --version", cmd: "npx", args: ["--version"] },
  { name: "npm run opg --silent -- --help", cmd: "npm", args: ["run", "opg", "--silent", "--", "--help"] },
];

function timeOnce(c: { cmd?: string; args: string[] }): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(c.cmd ?? NODE, c.args, { cwd: ROOT, encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0)
    throw new Error(`${c.cmd ?? "node"} ${c.args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main() {
  if (!fs.existsSync(path.join(ROOT, "dist", "cli", "main.js"))) {
    process.stderr.write("dist/cli/main.js is missing: run `npm run build` first\n");
    process.exit(1);
  }
  // Round robin (every case once per round), so that a change in the machine's load hits all cases alike.
  for (const c of CASES) timeOnce(c); // warm-up: file system cache
  const times: number[][] = CASES.map(() => []);
  for (let round = 0; round < RUNS; round++) CASES.forEach((c, i) => times[i].push(timeOnce(c)));
  const rows = CASES.map((c, i) => ({ name: c.name, median: median(times[i]), min: Math.min(...times[i]) }));
  const base = rows[0].median;
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  process.stdout.write(
    `opg start-up, ${RUNS} runs each, Node ${process.version}, ${os.cpus().length} x ${cpu}, ` +
      `load ${os.loadavg()[0].toFixed(2)}\n\n`,
  );
  process.stdout.write(`${"command".padEnd(28)}${"median ms".padStart(10)}${"min ms".padStart(9)}  x node\n`);
  for (const r of rows) {
    process.stdout.write(
      `${r.name.padEnd(28)}${r.median.toFixed(0).padStart(10)}${r.min.toFixed(0).padStart(9)}` +
        `  ${(r.median / base).toFixed(2)}\n`,
    );
  }
}

main();
