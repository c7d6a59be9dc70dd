import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/**
 * "Today's path" for the benches that compare with it in the same run: a git worktree of an earlier
 * revision of this repository, compiled on its own (its artifacts, cache and typechain types stay in the
 * worktree; this checkout's are not touched), with this checkout's node_modules linked in.
 */

/** The repository root (this file is scripts/lib/baseline.ts). */
export const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** The compiled-bundle and ptau cache of this checkout (as network/local-network's fixtureBundle uses). */
export const CACHE_DIR = process.env.OPG_CACHE_DIR ?? path.join(REPO_ROOT, ".opg", "cache");

function git(args: string[], cwd = REPO_ROOT): string {
  return execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** The full commit id of `rev` in this repository (an error naming it when it is unknown). */
export function resolveRev(rev: string): string {
  try {
    return git(["rev-parse", "--verify", `${rev}^{commit}`]);
  } catch {
    throw new Error(`git revision ${rev} is not in this repository (a shallow clone? fetch its history)`);
  }
}

/** The commit a worktree at `dir` has checked out, or null when `dir` is not a usable worktree. */
function worktreeHead(dir: string): string | null {
  if (!fs.existsSync(path.join(dir, ".git"))) return null;
  try {
    return git(["rev-parse", "HEAD"], dir);
  } catch {
    return null;
  }
}

/**
 * A compiled worktree of `rev` under .opg/cache/baseline-<rev> (created with `git worktree add --detach`, or
 * reused when it is already there at that commit), with this checkout's node_modules linked into it, and
 * `npx hardhat compile --quiet` run there. Returns its path.
 */
export function baselineTree(rev: string, log: (message: string) => void = () => undefined): string {
  const commit = resolveRev(rev);
  // A revision such as HEAD~4 or origin/main names a folder too.
  const dir = path.join(REPO_ROOT, ".opg", "cache", `baseline-${rev.replace(/[^A-Za-z0-9._-]/g, "_")}`);
  if (worktreeHead(dir) !== commit) {
    log(`creating a worktree of ${rev} at ${path.relative(REPO_ROOT, dir)}`);
    fs.rmSync(dir, { recursive: true, force: true });
    // A worktree whose folder was removed by hand is still registered: forget it, or `add` refuses the path.
    git(["worktree", "prune"]);
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    git(["worktree", "add", "--detach", dir, commit]);
  }
  const modules = path.join(dir, "node_modules");
  if (!fs.existsSync(modules)) fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), modules, "dir");
  log(`compiling ${rev}'s contracts in its worktree`);
  // Its output goes to standard error: a bench prints only its table on standard output.
  execFileSync("npx", ["hardhat", "compile", "--quiet"], { cwd: dir, stdio: ["ignore", 2, 2] });
  return dir;
}

/**
 * Run `script` (a path relative to `tree`) with `npx hardhat run <script> --network hardhat` in `tree`, and
 * return the JSON object of the one line of its standard output that starts with `{"probe":`. Its other
 * output goes to this process's standard error; a failure throws with the tail of that output.
 * `env` is added to the environment; the bundle cache (OPG_CACHE_DIR) is this checkout's, so that a tree
 * reuses the compiled bundles instead of compiling its own.
 */
export function runProbe<T>(tree: string, script: string, env: Record<string, string> = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["hardhat", "run", script, "--network", "hardhat"], {
      cwd: tree,
      env: { ...process.env, OPG_CACHE_DIR: CACHE_DIR, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let tail = "";
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      keep(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      keep(chunk);
      process.stderr.write(chunk);
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const lines = stdout.split("\n").filter((l) => l.startsWith('{"probe":'));
      if (code !== 0 || lines.length !== 1) {
        reject(
          new Error(
            `${script} in ${tree} ended with ${signal ?? `exit code ${code}`} and ${lines.length} result ` +
              `lines; its last output:\n${tail}`,
          ),
        );
        return;
      }
      resolve(JSON.parse(lines[0]) as T);
    });
  });
}

/** The revision the benches compare with: today's path before issue 21's redesign. */
export const BASELINE_REV = process.env.OPG_BASELINE_REV ?? "b0811a3";

/**
 * Run the baseline revision's own copy of a bench (`script`, relative to the tree, e.g.
 * scripts/bench-latency.ts) in its worktree with `env` added, and return the markdown table it prints (the
 * lines starting with `|`). Its progress goes to this process's standard error.
 */
export function runBaselineBench(
  tree: string,
  script: string,
  env: Record<string, string> = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["ts-node", "--transpile-only", script], {
      cwd: tree,
      env: { ...process.env, OPG_CACHE_DIR: CACHE_DIR, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => process.stderr.write(chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const table = stdout
        .split("\n")
        .filter((l) => l.startsWith("|"))
        .join("\n");
      if (code !== 0 || !table) {
        reject(
          new Error(
            `${script} in ${tree} ended with ${signal ?? `exit code ${code}`}:\n${stdout.slice(-2000)}`,
          ),
        );
        return;
      }
      resolve(table);
    });
  });
}

/**
 * Print the baseline revision's table of the same bench, measured now on this machine (unless
 * OPG_BASELINE=0), under a heading naming the revision.
 */
export async function printBaseline(
  script: string,
  env: Record<string, string>,
  what: string,
): Promise<void> {
  if (process.env.OPG_BASELINE === "0") return;
  const tree = baselineTree(BASELINE_REV, (m) => console.error(m));
  const table = await runBaselineBench(tree, script, env);
  console.log(`\n### Same run, today's path before the redesign (${BASELINE_REV}: ${what})\n`);
  console.log(table);
}
