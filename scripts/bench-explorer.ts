/**
 * npm run bench:explorer — does the explorer page stay usable on a chain with 1,000 tasks?
 *
 * Builds a local chain (scripts/lib/explorer-chain.ts: real tasks, real Groth16 proofs, two inference nodes
 * and a verification node), first with BENCH_BASE_TASKS tasks (default 10), measures the page, grows the
 * same chain to BENCH_TASKS (default 1,000) and measures again, in Debian's Chromium (headless, driven by
 * playwright-core), BENCH_REPS times each (default 5; median, min and max), each repetition in a fresh
 * browser context (empty cache):
 *
 *   - first render: navigation start to the task table's first row, and to the count of every task (#/tasks);
 *   - long tasks (PerformanceObserver 'longtask') from navigation start until every task is listed;
 *   - opening a task by clicking its row: the task view shown, and its Groth16 proof re-verified in the page
 *     (verdict pass): first the cold open (bundle and verification key fetched), then another task (warm);
 *   - the overview's plots drawn (tasks over time);
 *   - a click on the pager to the table updated, while the page polls the chain and blocks keep arriving.
 *
 * Prints the built bundle's size, the chain's build time and the machine's load. Not part of npm test.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import type { Browser, Page } from "playwright-core";
import { buildExplorerChain, launchChromium, type ExplorerChain } from "./lib/explorer-chain";
import { sleep } from "../network/local-network";

const TASKS = Number(process.env.BENCH_TASKS ?? 1000);
const BASE = Number(process.env.BENCH_BASE_TASKS ?? 10);
const REPS = Number(process.env.BENCH_REPS ?? 5);
/** Record a CPU profile of the first render at BENCH_TASKS (first run; the page built unminified). */
const PROFILE = process.env.BENCH_PROFILE === "1";
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 180_000);

// What runs in the page (page.evaluate, init scripts) uses the browser's globals: declared loosely here, in
// this module only, since the project compiles against Node's types and not the DOM's.
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const window: any, document: any, location: any, MutationObserver: any, PerformanceObserver: any;
declare const requestAnimationFrame: (f: () => void) => void;
/* eslint-enable @typescript-eslint/no-explicit-any */

const t0 = Date.now();
const say = (msg: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}`);
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

/**
 * Installed in every page before its scripts run: records, relative to navigation start, when each watched
 * selector first matches (a MutationObserver, so the time the DOM got it), and every long task.
 */
function instrument() {
  const w = window as unknown as {
    __marks: Record<string, number>;
    __watch: Record<string, string>;
    __longTasks: { start: number; duration: number }[];
    __check: () => void;
  };
  w.__marks = {};
  w.__watch = {};
  w.__longTasks = [];
  w.__check = () => {
    for (const [name, selector] of Object.entries(w.__watch)) {
      if (!(name in w.__marks) && document.querySelector(selector)) w.__marks[name] = performance.now();
    }
  };
  new MutationObserver(() => w.__check()).observe(document, {
    subtree: true,
    childList: true,
    attributes: true,
  });
  new PerformanceObserver((list: { getEntries(): { startTime: number; duration: number }[] }) => {
    for (const e of list.getEntries()) w.__longTasks.push({ start: e.startTime, duration: e.duration });
  }).observe({ type: "longtask", buffered: true });
}

/** Watch `selectors` (name -> CSS) from now on; previous marks of the same names are forgotten. */
async function watch(page: Page, selectors: Record<string, string>) {
  await page.evaluate((s) => {
    const w = window as unknown as {
      __marks: Record<string, number>;
      __watch: Record<string, string>;
      __check(): void;
    };
    for (const [k, v] of Object.entries(s)) {
      delete w.__marks[k];
      w.__watch[k] = v;
    }
    w.__check();
  }, selectors);
}

/** The mark `name` (ms since navigation start), waiting for it; `fail` names selectors that end the wait. */
async function mark(page: Page, name: string, fail: string[] = []): Promise<number> {
  const handle = await page.waitForFunction(
    ({ name, fail }) => {
      const m = (window as unknown as { __marks: Record<string, number> }).__marks;
      if (name in m) return { t: m[name] };
      for (const f of fail) if (f in m) return { failed: f, t: m[f] };
      return false;
    },
    { name, fail },
    { timeout: TIMEOUT_MS, polling: 50 },
  );
  const v = (await handle.jsonValue()) as { t: number; failed?: string };
  if (v.failed) throw new Error(`waiting for ${name}: ${v.failed} appeared instead`);
  return v.t;
}

interface Sample {
  firstRow: number;
  allListed: number;
  longTaskTotal: number;
  longTaskMax: number;
  longTasks: number;
  openView: number;
  openVerified: number;
  warmView: number;
  warmVerified: number;
  overviewPlot: number;
  pager: number;
}

async function newPage(browser: Browser) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.addInitScript(instrument);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return { context, page, errors };
}

/** Click a row's link to `#/task/<id>`, then wait for the view and the verdict; times from the click. */
async function openTask(page: Page, id: bigint) {
  await page.evaluate(() => (location.hash = "#/tasks"));
  await page.waitForSelector(`[data-testid=tasks-table] tr[data-task-id="${id}"] a`, { timeout: TIMEOUT_MS });
  await watch(page, {
    view: "[data-testid=task-view]",
    pass: "[data-testid=verdict][data-status=pass]",
    fail: "[data-testid=verdict][data-status=fail]",
  });
  const start = await page.evaluate((id) => {
    const a = document.querySelector(`[data-testid=tasks-table] tr[data-task-id="${id}"] a`)!;
    const t = performance.now();
    a.click();
    return t;
  }, String(id));
  const view = (await mark(page, "view")) - start;
  const verified = (await mark(page, "pass", ["fail"])) - start;
  return { view, verified };
}

/** One repetition on a chain of `count` tasks; `open` are two ZK tasks on the first page of the table. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** The functions that took the most time in a CDP CPU profile: self and inclusive, by name and place. */
function topFunctions(profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }, n = 15) {
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const parent = new Map<number, number>();
  for (const x of profile.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const label = (x: ProfileNode) =>
    `${x.callFrame.functionName || "(anonymous)"} ${path.basename(x.callFrame.url) || "(native)"}:${x.callFrame.lineNumber + 1}`;
  const selfBy = new Map<string, number>();
  const inclusiveBy = new Map<string, number>();
  for (const [id, ms] of self) {
    const x = byId.get(id)!;
    selfBy.set(label(x), (selfBy.get(label(x)) ?? 0) + ms);
    // Every distinct function on the stack of this sample gets its time once (recursion counted once).
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const l = label(byId.get(at)!);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusiveBy.set(l, (inclusiveBy.get(l) ?? 0) + ms);
    }
  }
  const top = (m: Map<string, number>) =>
    [...m.entries()]
      .filter(([l]) => !/^\((root|program|idle)\)/.test(l))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([l, ms]) => `    ${ms.toFixed(0).padStart(7)} ms  ${l}`)
      .join("\n");
  return `  self time:\n${top(selfBy)}\n  inclusive time:\n${top(inclusiveBy)}`;
}

async function sample(
  profile: boolean,
  browser: Browser,
  url: string,
  chain: ExplorerChain,
  count: number,
  open: [bigint, bigint],
) {
  const s = {} as Sample;
  {
    const { context, page, errors } = await newPage(browser);
    await context.addInitScript((count) => {
      (window as unknown as { __watch: Record<string, string> }).__watch = {
        ready: 'body[data-ready="1"]',
        firstRow: "[data-testid=tasks-table] tr[data-task-id]",
        allListed: `[data-testid=task-count][data-count="${count}"]`,
      };
    }, count);
    const cdp = profile ? await context.newCDPSession(page) : undefined;
    if (cdp) {
      await cdp.send("Profiler.enable");
      await cdp.send("Profiler.setSamplingInterval", { interval: 500 });
      await cdp.send("Profiler.start");
    }
    await page.goto(`${url}#/tasks`);
    await mark(page, "ready");
    s.firstRow = await mark(page, "firstRow");
    s.allListed = await mark(page, "allListed");
    if (cdp) {
      const { profile } = await cdp.send("Profiler.stop");
      say(`CPU profile of the first render (${count} tasks), navigation to every task listed:`);
      console.log(topFunctions(profile as unknown as Parameters<typeof topFunctions>[0]));
      await cdp.detach();
    }
    // Long tasks that began before everything was listed, or within half a second after.
    await sleep(500);
    const longTasks = await page.evaluate(
      () => (window as unknown as { __longTasks: { start: number; duration: number }[] }).__longTasks,
    );
    const during = longTasks.filter((l) => l.start <= s.allListed + 500);
    s.longTasks = during.length;
    s.longTaskTotal = during.reduce((a, l) => a + l.duration, 0);
    s.longTaskMax = during.reduce((a, l) => Math.max(a, l.duration), 0);

    // The pager, while the page polls and blocks keep coming (an empty block every 300 ms).
    let mining = true;
    const miner = (async () => {
      while (mining) {
        await chain.net.provider.send("evm_mine", []).catch(() => undefined);
        await sleep(300);
      }
    })();
    const pagerTimes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const dt = await page.evaluate(
        async (forward) => {
          const table = document.querySelector("[data-testid=tasks-table]")!;
          const first = () => table.querySelector("tr[data-task-id]")?.getAttribute("data-task-id");
          const before = first();
          const buttons: { textContent: string | null }[] = Array.from(
            document.querySelectorAll("[data-testid=tasks-view] button"),
          );
          const button =
            document.querySelector(`[data-testid=pager-${forward ? "next" : "prev"}]`) ??
            buttons.find((b) => (forward ? /older|next/i : /newer|prev/i).test(b.textContent ?? ""));
          if (!button || button.disabled) return -1;
          const t = performance.now();
          button.click();
          return new Promise<number>((resolve) => {
            const done = () => {
              if (first() === before) return false;
              // The next frame: the update painted.
              requestAnimationFrame(() => resolve(performance.now() - t));
              return true;
            };
            if (done()) return;
            const mo = new MutationObserver(() => done() && mo.disconnect());
            mo.observe(table, { subtree: true, childList: true, attributes: true });
          });
        },
        i % 2 === 0,
      );
      if (dt >= 0) pagerTimes.push(dt);
      await sleep(200);
    }
    mining = false;
    await miner;
    s.pager = pagerTimes.length ? median(pagerTimes) : NaN;

    const cold = await openTask(page, open[0]);
    s.openView = cold.view;
    s.openVerified = cold.verified;
    const warm = await openTask(page, open[1]);
    s.warmView = warm.view;
    s.warmVerified = warm.verified;
    if (errors.length) say(`page errors: ${errors.join("; ")}`);
    await context.close();
  }
  {
    const { context, page } = await newPage(browser);
    await context.addInitScript(() => {
      (window as unknown as { __watch: Record<string, string> }).__watch = {
        plot: "[data-testid=plot-tasks-over-time] svg",
      };
    });
    await page.goto(url);
    s.overviewPlot = await mark(page, "plot");
    await context.close();
  }
  return s;
}

function median(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function measure(browser: Browser, chain: ExplorerChain, count: number): Promise<Sample[]> {
  // Two ZK tasks of the same model on the table's first page (newest first): the second opens warm.
  const zk = chain.tasks.filter((t) => t.mode === "zk" && t.modelId === chain.models.mlp).slice(-8);
  const open: [bigint, bigint] = [zk[zk.length - 1].taskId, zk[zk.length - 3].taskId];
  const samples: Sample[] = [];
  for (let r = 0; r < REPS; r++) {
    const s = await sample(
      PROFILE && r === 0 && count === TASKS,
      browser,
      chain.explorerUrl!,
      chain,
      count,
      open,
    );
    say(
      `  ${count} tasks, run ${r + 1}: first row ${s.firstRow.toFixed(0)} ms, all listed ${s.allListed.toFixed(0)} ms, ` +
        `open ${s.openView.toFixed(0)}/${s.openVerified.toFixed(0)} ms, warm ${s.warmView.toFixed(0)}/${s.warmVerified.toFixed(0)} ms, ` +
        `plot ${s.overviewPlot.toFixed(0)} ms, pager ${s.pager.toFixed(0)} ms, load ${load()}`,
    );
    samples.push(s);
  }
  return samples;
}

function bundleSizes(pageDir: string) {
  const dir = path.join(pageDir, "assets");
  return fs
    .readdirSync(dir)
    .filter((f) => /\.(js|css|wasm)$/.test(f))
    .map((f) => {
      const bytes = fs.readFileSync(path.join(dir, f));
      return { file: f, size: bytes.length, gzip: zlib.gzipSync(bytes).length };
    })
    .sort((a, b) => b.size - a.size);
}

const ROWS: { key: keyof Sample; label: string; unit?: string }[] = [
  { key: "firstRow", label: "first render: first task row (navigation start)" },
  { key: "allListed", label: "first render: every task counted" },
  { key: "longTasks", label: "long tasks until listed (count)", unit: "" },
  { key: "longTaskTotal", label: "long tasks until listed (total)" },
  { key: "longTaskMax", label: "long tasks until listed (longest)" },
  { key: "openView", label: "open a task, cold: view shown (from click)" },
  { key: "openVerified", label: "open a task, cold: proof verified in the page" },
  { key: "warmView", label: "open another task, warm: view shown" },
  { key: "warmVerified", label: "open another task, warm: proof verified" },
  { key: "overviewPlot", label: "overview: tasks-over-time plot drawn" },
  { key: "pager", label: "pager click to table updated (live polling)" },
];

function stats(samples: Sample[], key: keyof Sample) {
  const xs = samples.map((s) => s[key]).filter((x) => Number.isFinite(x));
  if (xs.length === 0) return { med: NaN, min: NaN, max: NaN };
  return { med: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/**
 * The page's first read, without the page: one eth_getLogs of every protocol contract's logs from block 0,
 * straight to the RPC (median of 3): how much of the first render is the node's answer.
 */
async function rpcLogs(chain: ExplorerChain) {
  const d = JSON.parse(fs.readFileSync(chain.net.deploymentFile, "utf8")) as Record<string, unknown>;
  const address = ["token", "staking", "models", "tasks", "enclaves", "disputes"]
    .map((k) => d[k])
    .filter((a): a is string => typeof a === "string");
  const runs: { ms: number; logs: number; bytes: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const res = await fetch(chain.net.chain.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "eth_getLogs",
        params: [{ address, fromBlock: "0x0", toBlock: "latest" }],
      }),
    });
    const text = await res.text();
    runs.push({
      ms: performance.now() - t,
      logs: (JSON.parse(text).result as unknown[]).length,
      bytes: text.length,
    });
  }
  runs.sort((a, b) => a.ms - b.ms);
  return runs[1];
}

async function main() {
  if (!Number.isInteger(TASKS) || TASKS <= BASE)
    throw new Error("BENCH_TASKS must be an integer above BENCH_BASE_TASKS");
  say(`load average ${load()} (${os.cpus().length} cores)`);
  let chain: ExplorerChain | undefined;
  let browser: Browser | undefined;
  try {
    const b0 = Date.now();
    chain = await buildExplorerChain({ tasks: BASE, minify: !PROFILE, log: (m) => say(m) });
    const baseBuild = (Date.now() - b0) / 1000;
    say(`explorer at ${chain.explorerUrl} (${BASE} tasks, chain built in ${baseBuild.toFixed(0)} s)`);
    browser = await launchChromium();
    say(`Chromium ${browser.version()}`);
    const loadBase = load();
    const logsBase = await rpcLogs(chain);
    const base = await measure(browser, chain, BASE);

    const g0 = Date.now();
    say(`growing the chain to ${TASKS} tasks`);
    await chain.grow(TASKS - BASE);
    const growSeconds = (Date.now() - g0) / 1000;
    const blocks = await chain.net.provider.getBlockNumber();
    say(`${TASKS} tasks settled: ${growSeconds.toFixed(0)} s for ${TASKS - BASE} more (${blocks} blocks)`);
    const loadFull = load();
    const logsFull = await rpcLogs(chain);
    const full = await measure(browser, chain, TASKS);

    const optimistic = chain.tasks.filter((t) => t.mode === "optimistic").length;
    console.log("");
    console.log(
      `bench:explorer — ${TASKS} tasks (${TASKS - optimistic} ZK with Groth16 proofs verified on chain, ${optimistic} optimistic), ` +
        `2 inference nodes, 1 verification node; Chromium ${browser.version()} headless; ${REPS} runs each, fresh context per run`,
    );
    console.log(
      `chain build: ${BASE} tasks in ${baseBuild.toFixed(0)} s (hardhat node, deploy, data node, models, nodes), ` +
        `then ${TASKS - BASE} more in ${growSeconds.toFixed(0)} s (${((TASKS - BASE) / growSeconds).toFixed(1)} tasks/s); ${blocks} blocks`,
    );
    console.log(
      `load average (1, 5, 15 min): ${loadBase} at the ${BASE}-task runs, ${loadFull} at the ${TASKS}-task runs; ${os.cpus().length} cores`,
    );
    const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
    console.log(
      `the RPC alone, eth_getLogs of every protocol log (the page's first read): ${BASE} tasks ${logsBase.ms.toFixed(0)} ms ` +
        `(${logsBase.logs} logs, ${kib(logsBase.bytes)}), ${TASKS} tasks ${logsFull.ms.toFixed(0)} ms (${logsFull.logs} logs, ${kib(logsFull.bytes)})`,
    );
    console.log("");
    console.log(`| measure | ${BASE} tasks: median (min–max) | ${TASKS} tasks: median (min–max) | ratio |`);
    console.log("|---|---|---|---|");
    for (const row of ROWS) {
      const a = stats(base, row.key);
      const b = stats(full, row.key);
      const unit = row.unit ?? " ms";
      const f = (x: { med: number; min: number; max: number }) =>
        Number.isNaN(x.med) ? "–" : `${x.med.toFixed(0)}${unit} (${x.min.toFixed(0)}–${x.max.toFixed(0)})`;
      const ratio = a.med > 0 && Number.isFinite(b.med) ? `${(b.med / a.med).toFixed(1)}x` : "–";
      console.log(`| ${row.label} | ${f(a)} | ${f(b)} | ${ratio} |`);
    }
    const sizes = bundleSizes(chain.pageDir!);
    const js = sizes.filter((s) => s.file.endsWith(".js"));
    console.log("");
    console.log(
      `bundle: ${sizes.map((s) => `${s.file} ${(s.size / 1024).toFixed(0)} KiB (${(s.gzip / 1024).toFixed(0)} KiB gzip)`).join(", ")}; ` +
        `JS total ${(js.reduce((a, s) => a + s.size, 0) / 1024).toFixed(0)} KiB (${(js.reduce((a, s) => a + s.gzip, 0) / 1024).toFixed(0)} KiB gzip)`,
    );
    const fr = stats(full, "allListed").med;
    const frBase = stats(base, "allListed").med;
    console.log(
      `${TASKS.toLocaleString("en-US")} tasks: first render ${fr.toFixed(0)} ms (${(fr / frBase).toFixed(1)}x the ${BASE}-task page), ` +
        `open a task and verify its proof ${stats(full, "openVerified").med.toFixed(0)} ms cold, ` +
        `${stats(full, "warmVerified").med.toFixed(0)} ms warm`,
    );
  } finally {
    await browser?.close().catch(() => undefined);
    await chain?.stop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
