import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { JsonRpcProvider, type Wallet } from "ethers";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { OpgClient } from "../../sdk";
import { TaskRegistry__factory } from "../../typechain-types";
import { readVerifiedResult } from "../../workers/runtime/tasks";
import { bundleArchiveId, packBundle } from "../../workers/data/bundle-archive";
import { lyingDataNodeHandler, swapVerificationKey } from "../../scripts/lib/forged-bundle";
import { ROOT, account, fixtureBundle, spawnProc, waitFor, type Proc } from "../../network/local-network";
import { packValues, unpackWords } from "../../zkml/packing";
import { launchChromium, PageErrors } from "../helpers/browser";

/**
 * The explorer page in real headless Chromium against the demo's network (scripts/demo.ts as a child
 * process, left running with OPG_DEMO_STAY=1): a real chain, data node and inference node; nothing in the
 * proof or settlement path is mocked. Two liars sit between the page and that network, each a small HTTP
 * server of this file: a data node that serves a bundle whose verification key was swapped, and a
 * JSON-RPC endpoint that rewrites task 1's output (and, in a second variant, the settling calldata too).
 *
 * Waits have no deadline of their own: the suite's mocha timeout bounds them, and each wait for a check
 * waits for its final status (not for the expected one), so a wrong result fails at once, with the
 * page's checks in the message.
 */
const MODEL = "test/fixtures/models/digits_mlp.onnx";
const DEMO = [require.resolve("ts-node/dist/bin.js"), "--transpile-only", path.join("scripts", "demo.ts")];
const FINAL = ["pass", "fail", "trust", "skip"];
const TASKS = TaskRegistry__factory.createInterface();
const VERIFIED_TOPIC = TASKS.getEvent("TaskVerified")!.topicHash;

// The callbacks given to page.waitForFunction and page.evaluate run in the page, where these are the DOM's;
// this project compiles without the DOM library, so they are declared here as far as those callbacks use them.
declare const document: {
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
  querySelectorAll(selector: string): { length: number };
};
declare const location: { hash: string };
declare const window: Record<string, unknown>;

type RpcRequest = { id?: unknown; method: string; params?: unknown[] };

interface Network {
  explorer: string;
  rpc: string;
  data: string;
  tasks: string;
  deploymentFile: string;
}

describe("explorer page in headless Chromium against the demo's network", function () {
  this.timeout(900_000);

  let browser: Browser | undefined;
  let demo: Proc | undefined;
  let net: Network;
  const servers: http.Server[] = [];
  const contexts: BrowserContext[] = [];
  /** What the suite waits for now: said every minute it lasts, and when a test fails. */
  let waiting = "";
  let waitingSince = Date.now();
  let heartbeat: NodeJS.Timeout | undefined;
  const step = (what: string) => {
    waiting = what;
    waitingSince = Date.now();
    if (process.env.OPG_E2E_VERBOSE && what) console.log(`    waiting for ${what}`);
  };

  before(async function () {
    browser = await launchChromium(this);
    heartbeat = setInterval(() => {
      const s = (Date.now() - waitingSince) / 1000;
      if (waiting && s >= 60) console.log(`    ... still waiting for ${waiting} (${s.toFixed(0)} s)`);
    }, 60_000).unref();
    if (!fs.existsSync(path.join(ROOT, "dist", "explorer", "index.html"))) {
      throw new Error("the explorer page is not built (dist/explorer): run npm run build:explorer");
    }
    demo = spawnProc("demo", DEMO, { OPG_DEMO_TASKS: "2", OPG_DEMO_STAY: "1", OPG_EXPLORER_PORT: "0" });
    const line = (what: string, re: RegExp) => {
      step(what);
      const found = async () => demo!.output.map((l) => l.match(re)).find((m) => m) ?? undefined;
      return waitFor(what, found, Infinity, 250, demo);
    };
    const [, explorer] = await line("the demo's explorer URL", /explorer: (http\S+) \(live/);
    const [, deploymentFile] = await line("the demo's deployment file", /deployment (\S+), data node/);
    await line("the demo to keep its network running", /keep running at/);
    expect(demo.output.join("\n")).to.include("all 2 tasks verified on chain, audited and agreed");
    const config = (await (await fetch(new URL("config.json", explorer))).json()) as {
      rpc: string;
      data: string;
      contracts: { tasks: string };
    };
    net = { explorer, rpc: config.rpc, data: config.data, tasks: config.contracts.tasks, deploymentFile };
  });

  afterEach(async function () {
    if (this.currentTest?.state === "failed" && waiting) console.log(`    (was waiting for ${waiting})`);
    step("");
    await Promise.all(contexts.splice(0).map((c) => c.close()));
  });

  after(async function () {
    clearInterval(heartbeat);
    await Promise.all(servers.map((s) => new Promise((r) => (s.closeAllConnections(), s.close(r)))));
    await browser?.close();
    // SIGTERM to the demo's process group: it stops its nodes, data node, chain and explorer itself.
    await demo?.stop("SIGTERM", 60_000).catch(() => demo?.stop("SIGKILL"));
  });

  /** A fresh page (its own context: no cache shared with other tests) with its errors collected. */
  async function newPage(): Promise<{ page: Page; errors: PageErrors }> {
    const context = await browser!.newContext();
    contexts.push(context);
    context.setDefaultTimeout(0);
    const page = await context.newPage();
    return { page, errors: new PageErrors(page) };
  }

  async function open(page: Page, query: Record<string, string>, hash: string) {
    const q = new URLSearchParams(query).toString();
    step(`the page ${hash} to render (body[data-ready])`);
    await page.goto(`${net.explorer}${q ? `?${q}` : ""}${hash}`);
    await page.waitForSelector('body[data-ready="1"]');
  }

  /** Every check on the task page: id, status and text, for assertions and failure messages. */
  async function checks(page: Page) {
    return page.$$eval("[data-testid=checks] [data-check]", (els) =>
      els.map((e) => ({
        id: e.getAttribute("data-check")!,
        status: e.getAttribute("data-status")!,
        text: (e.textContent ?? "").replace(/\s+/g, " ").trim(),
      })),
    );
  }

  /** Wait for the verdict and the named checks to reach a final status; returns every check. */
  async function settled(page: Page, ids: string[]) {
    for (const sel of [
      "[data-testid=verdict]",
      ...ids.map((id) => `[data-testid=checks] [data-check="${id}"]`),
    ]) {
      step(`${sel} to reach a final status (${FINAL.join(", ")})`);
      await page.waitForFunction(
        ([s, final]) => final.includes(document.querySelector(s)?.getAttribute("data-status") ?? ""),
        [sel, FINAL] as const,
      );
    }
    step("");
    const all = await checks(page);
    const verdict = await page.getAttribute("[data-testid=verdict]", "data-status");
    const summary = `verdict ${verdict}; checks:\n  ${all.map((c) => `${c.id} ${c.status}: ${c.text}`).join("\n  ")}`;
    if (process.env.OPG_E2E_VERBOSE) console.log(`    ${summary.replace(/\n/g, "\n    ")}`);
    return { all, verdict, summary, get: (id: string) => all.find((c) => c.id === id) };
  }

  async function taskCount(page: Page, n: number) {
    step(`the tasks table to list ${n} tasks`);
    await page.waitForFunction(
      (count) =>
        document.querySelectorAll("[data-testid=tasks-table] tr[data-task-id]").length === count &&
        document.querySelector("[data-testid=task-count]")?.getAttribute("data-count") === String(count),
      n,
    );
  }

  it("the demo's chain is loaded, a task is opened, its proof verifies in the page; no wallet, search, live updates", async function () {
    const { page, errors } = await newPage();
    await open(page, {}, "#/tasks");
    expect(await page.evaluate(() => "ethereum" in window), "a wallet in the page").to.equal(false);
    await taskCount(page, 2);
    expect(await page.textContent("[data-testid=chain-status]")).to.match(/chain 31337/);

    // Navigation without a wallet: the lists render from the chain alone.
    await page.click('nav a[data-nav="models"]');
    step("the models table to list model 1");
    await page.waitForSelector('[data-testid=models-table] tr[data-model-id="1"]');
    await page.click('nav a[data-nav="nodes"]');
    step("the nodes table to list both nodes");
    await page.waitForFunction(
      () => document.querySelectorAll("[data-testid=nodes-table] tbody tr").length === 2,
    );
    await page.click('nav a[data-nav="overview"]');
    step("the overview");
    await page.waitForSelector("[data-testid=overview]");

    // Search by task id, Enter: the task page (by way of the hits when the number is a model id as well).
    await page.fill("[data-testid=search]", "1");
    await page.press("[data-testid=search]", "Enter");
    step("the search to open task 1 or list it");
    await page.waitForSelector('[data-testid=task-view], [data-testid=search-hits] a[href="#/task/1"]');
    if (await page.$("[data-testid=search-hits]"))
      await page.click('[data-testid=search-hits] a[href="#/task/1"]');
    await page.waitForFunction(() => location.hash === "#/task/1");
    await page.waitForSelector("[data-testid=task-view]");

    const c = await settled(page, ["groth16", "vk-hash", "bundle-hash", "public-signals", "output-match"]);
    for (const id of ["groth16", "vk-hash", "bundle-hash", "public-signals", "output-match"]) {
      expect(c.get(id)?.status, `${id}; ${c.summary}`).to.equal("pass");
    }
    expect(c.verdict, c.summary).to.equal("pass");
    for (const event of ["TaskSubmitted", "TaskVerified"]) {
      expect(
        await page.$(`[data-testid=timeline] li[data-event=${event}]`),
        `timeline ${event}`,
      ).to.not.equal(null);
    }
    // a ZK task is not claimed: the node settles it directly, through its settler's submitResults batch
    expect(await page.$("[data-testid=timeline] li[data-event=TaskClaimed]"), "a claim").to.equal(null);
    expect(await page.textContent("[data-testid=settled-by]")).to.match(
      /^ · settled in a batch of (\d+) \(submitResults; this task's submission is [12] of \1\)$/,
    );
    expect(await page.textContent("[data-testid=settled]")).to.match(/^block \d+ · 0x/);
    expect((await page.textContent("[data-testid=outputs]"))?.trim()).to.not.equal("");

    // Live: a task submitted now appears, then settles, without a reload.
    await page.click('nav a[data-nav="tasks"]');
    await taskCount(page, 2);
    await page.evaluate(() => (window.sameLoad = true));
    const taskId = await submitTask(2);
    expect(taskId).to.equal(3n);
    await taskCount(page, 3);
    step("task 3 to show Verified");
    await page.waitForSelector('[data-testid=tasks-table] tr[data-task-id="3"] [data-state="Verified"]');
    expect(await page.evaluate(() => window.sameLoad)).to.equal(true);

    expect(errors.unexpected(), "console errors").to.deep.equal([]);
  });

  it("a swapped verification key on the data node shows a failed check naming the hash mismatch", async function () {
    const bundleDir = await fixtureBundle(MODEL);
    const archive = packBundle(bundleDir);
    const bundleId = bundleArchiveId(archive);
    const forged = swapVerificationKey(archive);
    const liar = await listen(lyingDataNodeHandler(net.data, bundleId, forged));

    const { page, errors } = await newPage();
    await open(page, { data: liar }, "#/task/1");
    const c = await settled(page, ["vk-hash", "bundle-hash"]);
    expect(c.get("vk-hash")?.status, c.summary).to.equal("fail");
    expect(c.get("vk-hash")?.text, c.summary).to.match(/verification key hash mismatch/i);
    expect(c.get("bundle-hash")?.status, c.summary).to.equal("fail");
    expect(c.get("bundle-hash")?.text, c.summary).to.match(/bundle hash mismatch/i);
    expect(c.verdict, c.summary).to.equal("fail");
    expect(errors.unexpected(), "console errors").to.deep.equal([]);
  });

  describe("a tampered output is caught (a lying RPC endpoint rewrites task 1's output)", function () {
    it("in its TaskVerified log: the page shows it, and the output check fails against the registry's stored hash", async function () {
      const { tampered, argmax } = await outputTamper();
      const rpc = await lyingRpc(tampered, false);
      const { page, errors } = await newPage();
      await open(page, { rpc }, "#/tasks");
      step("task 1 in the tasks table");
      await page.waitForSelector('[data-testid=tasks-table] tr[data-task-id="1"]');
      const row = await page.textContent('[data-testid=tasks-table] tr[data-task-id="1"]');
      expect(row, "the tasks table shows what the RPC said").to.include(`argmax ${argmax}`);

      await page.click('[data-testid=tasks-table] tr[data-task-id="1"] a[href="#/task/1"]');
      await page.waitForSelector("[data-testid=task-view]");
      const c = await settled(page, ["output-match", "groth16"]);
      expect(c.get("output-match")?.status, c.summary).to.equal("fail");
      expect(c.get("output-match")?.text, c.summary).to.include(
        "the registry's stored hash (isVerifiedResult) does not match the result shown",
      );
      // The proof, from the untouched calldata, still verifies: what fails is the claim about what it proved.
      expect(c.get("groth16")?.status, c.summary).to.equal("pass");
      expect(c.verdict, c.summary).to.equal("fail");
      expect(errors.unexpected(), "console errors").to.deep.equal([]);
    });

    it("in the settling calldata as well: the Groth16 check fails", async function () {
      const { tampered } = await outputTamper();
      const rpc = await lyingRpc(tampered, true);
      const { page, errors } = await newPage();
      await open(page, { rpc }, "#/task/1");
      const c = await settled(page, ["groth16", "output-match"]);
      // Every source of the outputs agrees (the lie is consistent, down to the registry's answer to
      // isVerifiedResult): only the proof can tell.
      expect(c.get("output-match")?.status, c.summary).to.equal("pass");
      expect(c.get("groth16")?.status, c.summary).to.equal("fail");
      expect(c.verdict, c.summary).to.equal("fail");
      expect(errors.unexpected(), "console errors").to.deep.equal([]);
    });
  });

  // ------------------------------------------------------------------ helpers: the network's parts

  /** Submit test digit `index` as a new task through the SDK (a funded hardhat account); its task id. */
  async function submitTask(index: number): Promise<bigint> {
    const provider = new JsonRpcProvider(net.rpc, undefined, { staticNetwork: true, cacheTimeout: -1 });
    try {
      const digits = JSON.parse(
        fs.readFileSync(path.join(ROOT, "test/fixtures/models/digits_test.json"), "utf8"),
      ) as {
        scale: number;
        inputs: number[][];
      };
      const client = new OpgClient({
        runner: account(1).connect(provider) as unknown as Wallet,
        deployment: net.deploymentFile,
        dataUrl: net.data,
        cacheDir: fs.mkdtempSync(path.join(os.tmpdir(), "opg-explorer-test-")),
      });
      const request = await client.submit(
        1n,
        digits.inputs[index].map((v) => v * digits.scale),
      );
      return request.taskId;
    } finally {
      provider.destroy();
    }
  }

  /**
   * Task 1's outputs as settled, and the same words with another value made the largest (one unit above
   * the true maximum): an answer the table shows differently (`argmax`), which no proof backs.
   */
  async function outputTamper() {
    const manifest = JSON.parse(
      fs.readFileSync(path.join(await fixtureBundle(MODEL), "manifest.json"), "utf8"),
    );
    const { packBits, outputCount } = manifest.publicSignals as { packBits: number; outputCount: number };
    const scale = 1n << BigInt(manifest.output.scaleBits);
    const provider = new JsonRpcProvider(net.rpc, undefined, { staticNetwork: true });
    try {
      const result = await readVerifiedResult(TaskRegistry__factory.connect(net.tasks, provider), 1n);
      expect(result, "task 1's verified result").to.not.equal(null);
      const words = result!.outputs;
      const values = unpackWords(words, outputCount, packBits);
      const top = values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
      const argmax = (top + 1) % outputCount;
      values[argmax] = values[top] + scale;
      const tampered = packValues(values, packBits);
      expect(tampered).to.not.deep.equal(words);
      return { tampered, argmax };
    } finally {
      provider.destroy();
    }
  }

  /**
   * A JSON-RPC endpoint in front of the demo's chain that says task 1's outputs are `outputs`: in its
   * TaskVerified log (eth_getLogs, receipts); with `calldata`, also in the settling transaction's input
   * (eth_getTransactionByHash) and in the registry's answer to isVerifiedResult(1, ...) (true for them), so
   * that every source the page reads agrees.
   */
  async function lyingRpc(outputs: bigint[], calldata: boolean): Promise<string> {
    const isTask1 = (id: unknown) => BigInt(id as bigint) === 1n;
    const rewriteLog = (log: { address: string; topics: string[]; data: string }) => {
      if (log.address.toLowerCase() !== net.tasks.toLowerCase() || log.topics[0] !== VERIFIED_TOPIC) return;
      const parsed = TASKS.parseLog(log)!;
      if (!isTask1(parsed.args.taskId)) return;
      const values = parsed.fragment.inputs.map((input, i) =>
        input.name === "outputs" ? outputs : parsed.args[i],
      );
      Object.assign(log, TASKS.encodeEventLog(parsed.fragment, values));
    };
    const rewrite = (req: RpcRequest, res: { result?: unknown }) => {
      if (res.result === null || res.result === undefined) return;
      switch (req.method) {
        case "eth_getLogs":
          for (const log of res.result as Parameters<typeof rewriteLog>[0][]) rewriteLog(log);
          break;
        case "eth_getTransactionReceipt":
          for (const log of (res.result as { logs: Parameters<typeof rewriteLog>[0][] }).logs)
            rewriteLog(log);
          break;
        case "eth_call": {
          if (!calldata) break;
          const call = req.params?.[0] as { to?: string; data?: string; input?: string };
          const data = call.data ?? call.input ?? "";
          if (call.to?.toLowerCase() !== net.tasks.toLowerCase()) break;
          if (!data.startsWith(TASKS.getFunction("isVerifiedResult")!.selector)) break;
          const [taskId, result] = TASKS.decodeFunctionData("isVerifiedResult", data);
          if (!isTask1(taskId)) break;
          const claimed = [...(result.outputs as bigint[])];
          const same = claimed.length === outputs.length && claimed.every((w, i) => w === outputs[i]);
          res.result = TASKS.encodeFunctionResult("isVerifiedResult", [same]);
          break;
        }
        case "eth_getTransactionByHash": {
          if (!calldata) break;
          const tx = res.result as { to?: string; input?: string; data?: string };
          if (tx.to?.toLowerCase() !== net.tasks.toLowerCase()) break;
          const input = tx.input ?? tx.data ?? "0x";
          const call = TASKS.parseTransaction({ data: input });
          let forged: string | undefined;
          if (call?.name === "submitResult" && isTask1(call.args.taskId)) {
            const a = call.args;
            forged = TASKS.encodeFunctionData("submitResult", [a.taskId, a.task, a.input, outputs, a.proof]);
          } else if (call?.name === "submitResults") {
            const subs = (call.args.submissions as { taskId: bigint }[]).map((s) => {
              const r = s as unknown as {
                taskId: bigint;
                task: unknown;
                input: unknown;
                outputs: unknown;
                proof: unknown;
              };
              return [r.taskId, r.task, r.input, isTask1(r.taskId) ? outputs : r.outputs, r.proof];
            });
            forged = TASKS.encodeFunctionData("submitResults", [subs as never]);
          }
          if (forged !== undefined) {
            if (tx.input !== undefined) tx.input = forged;
            if (tx.data !== undefined) tx.data = forged;
          }
          break;
        }
      }
    };

    return listen(async (req, res) => {
      const cors = {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-headers": req.headers["access-control-request-headers"] ?? "content-type",
      };
      if (req.method === "OPTIONS") {
        res.writeHead(204, cors);
        res.end();
        return;
      }
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks).toString("utf8");
      const upstream = await fetch(net.rpc, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      const text = await upstream.text();
      let out = text;
      try {
        const request = JSON.parse(body);
        const response = JSON.parse(text);
        if (Array.isArray(request) && Array.isArray(response)) {
          const byId = new Map((request as RpcRequest[]).map((r) => [JSON.stringify(r.id), r]));
          for (const r of response) {
            const q = byId.get(JSON.stringify(r.id));
            if (q) rewrite(q, r);
          }
        } else if (!Array.isArray(request) && !Array.isArray(response)) {
          rewrite(request, response);
        }
        out = JSON.stringify(response);
      } catch (e) {
        console.log(`    lying RPC: ${(e as Error).message}`);
      }
      res.writeHead(upstream.status, { ...cors, "content-type": "application/json" });
      res.end(out);
    });
  }

  /** An HTTP server on a free port of 127.0.0.1, closed after the suite; its URL. */
  async function listen(handler: http.RequestListener): Promise<string> {
    const server = http.createServer((req, res) => {
      Promise.resolve(handler(req, res)).catch((e) => {
        if (!res.headersSent) res.writeHead(502, { "access-control-allow-origin": "*" });
        res.end(String(e));
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }
});
