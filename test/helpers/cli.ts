import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** Helpers for tests that run the `opg` command line as a user would: a child process on the compiled build. */

export const ROOT = path.join(__dirname, "..", "..");
export const OPG_BIN = path.join(ROOT, "bin", "opg.js");
const DIST = path.join(ROOT, "dist");
const STAMP = path.join(DIST, ".build-stamp");
/** Source folders compiled into dist/ (tsconfig.build.json), and the build files themselves. */
const SOURCES = ["cli", "sdk", "tee", "workers", "zkml", "network", "typechain-types"];
const BUILD_FILES = ["tsconfig.build.json", "tsconfig.json", "cli/copy-assets.js"];

export interface OpgRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function newestMtime(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return /\.(ts|js|json)$/.test(p) ? st.mtimeMs : 0;
  let newest = 0;
  for (const name of fs.readdirSync(p)) newest = Math.max(newest, newestMtime(path.join(p, name)));
  return newest;
}

function sleep(ms: number) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True when dist/ is missing or older than a source file it is compiled from. */
export function cliBuildIsStale(): boolean {
  if (!fs.existsSync(STAMP) || !fs.existsSync(path.join(DIST, "cli", "main.js"))) return true;
  const built = fs.statSync(STAMP).mtimeMs;
  const newest = Math.max(
    ...SOURCES.map((s) => newestMtime(path.join(ROOT, s))),
    ...BUILD_FILES.map((f) => newestMtime(path.join(ROOT, f))),
  );
  return newest > built;
}

/**
 * Rebuild dist/ with tsc (incremental) when a source under cli, sdk, workers, zkml, network or
 * typechain-types is newer than the last build, so that a test never runs a stale command line. Type errors
 * do not stop the emit (a test then shows what the code does); a missing typechain-types (contracts never
 * compiled) does: run `npx hardhat compile`. Processes building at the same time wait for each other.
 */
export function ensureCliBuilt(): void {
  if (!cliBuildIsStale()) return;
  const lock = path.join(ROOT, ".opg", "cli-build.lock");
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  const started = Date.now();
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      // another process is building: a lock older than 5 minutes is from a build that died
      const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > 300_000) fs.rmSync(lock, { recursive: true, force: true });
      else if (Date.now() - started > 600_000) throw new Error(`waited 10 min for ${lock}`);
      sleep(500);
    }
  }
  try {
    if (!cliBuildIsStale()) return;
    const tsc = require.resolve("typescript/bin/tsc");
    const r = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    if (!fs.existsSync(path.join(DIST, "cli", "main.js"))) {
      throw new Error(`the CLI build failed (run \`npm run build\`):\n${r.stdout}${r.stderr}`);
    }
    const copy = spawnSync(process.execPath, [path.join(ROOT, "cli", "copy-assets.js")], {
      encoding: "utf8",
    });
    if (copy.status !== 0) throw new Error(`cli/copy-assets.js failed: ${copy.stderr}`);
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * Run `opg <args>` to its end and resolve its exit code and output (never rejects on a non-zero exit).
 * `env` is added to this process's environment; a key set to undefined is removed from it.
 */
export function runOpg(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; input?: string } = {},
): Promise<OpgRun> {
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OPG_BIN, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: env as NodeJS.ProcessEnv,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

/** A stack trace line ("    at fn (file:line:col)") anywhere in `text`. */
export const hasStackTrace = (text: string) => /^\s+at .+[:(].*\d+:\d+\)?$/m.test(text);

/** dist/explorer/index.html, or a build of it (vite) when it is missing or older than explorer/. */
export function ensureExplorerBuilt(): string {
  const index = path.join(DIST, "explorer", "index.html");
  const built = fs.statSync(index, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const sources = ["src", "index.html", "vite.config.mjs"].map((p) => path.join(ROOT, "explorer", p));
  if (built > 0 && Math.max(...sources.map(newestExplorerMtime)) <= built) return index;
  const vite = path.join(ROOT, "node_modules", "vite", "bin", "vite.js");
  const r = spawnSync(process.execPath, [vite, "build", "--config", "explorer/vite.config.mjs"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  if (r.status !== 0 || !fs.existsSync(index)) {
    throw new Error(`the explorer build failed (run \`npm run build\`):\n${r.stdout}${r.stderr}`);
  }
  return index;
}

function newestExplorerMtime(p: string): number {
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...fs.readdirSync(p).map((n) => newestExplorerMtime(path.join(p, n))));
}
