import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { ethers } from "hardhat";
import { Wallet } from "ethers";
import pino from "pino";
import { BlobError, BlobStore, sha256Hex } from "../../workers/data/blob-store";
import { DataChainView } from "../../workers/data/chain-view";
import { DataClient, DataClientError } from "../../workers/data/client";
import { EXPECT_HEADER, uploadAuthorization, uploadMessage } from "../../workers/data/protocol";
import { startDataNode, type RunningDataNode } from "../../workers/data/server";
import { decodeTaskInput, InputRejectedError, quantizedBlobMaxBytes } from "../../workers/runtime/task-input";
import type { SubmittedTask } from "../../workers/runtime/tasks";
import { ensureCliBuilt, runOpg } from "../helpers/cli";
import { marketFixture } from "../helpers/market-fixture";

/**
 * The data node against what strangers send it (issue 20, points 4 and 5): real `opg node data` processes
 * on loopback. Hostile clients connect from other loopback addresses (127.0.0.2 ...) than the well-behaved
 * one (127.0.0.1), as they would from other hosts, so per-client limits can be told apart.
 */

const ROOT = path.join(__dirname, "..", "..");
const OPG = path.join(ROOT, "bin", "opg.js");
const MiB = 1024 * 1024;
/** Bound on the node's resident memory while 30 clients hold a 48 MiB blob unread (the old node: ~1.4 GiB). */
const RSS_BOUND_MIB = 300;

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "opg-data-hostile-"));
  tmpDirs.push(d);
  return d;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a value other than undefined; fails after a generous limit, saying what it waited for. */
async function until<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  ms = 120_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(50);
  }
}

// ------------------------------------------------------------------ the node as a child process

interface NodeProc {
  proc: ChildProcess;
  url: string;
  dir: string;
  logs(): Array<Record<string, unknown>>;
  alive(): boolean;
  stop(): Promise<void>;
}

const running: NodeProc[] = [];

async function startNode(args: string[], opts: { fileLimit?: number } = {}): Promise<NodeProc> {
  const dir = path.join(tmpDir(), "store");
  const argv = [OPG, "node", "data", "--port", "0", "--dir", dir, "--log-format", "json", ...args];
  const proc = opts.fileLimit
    ? spawn("bash", ["-c", `ulimit -n ${opts.fileLimit}; exec "$0" "$@"`, process.execPath, ...argv], {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      })
    : spawn(process.execPath, argv, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) => proc.on("exit", () => ((exited = true), resolve())));
  const logs = () =>
    out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const url = await until("the data node's listening line", () => {
    if (exited) throw new Error(`the data node exited at start:\n${out}\n${err}`);
    return logs().find((l) => l.msg === "data node listening")?.url as string | undefined;
  });
  const node: NodeProc = {
    proc,
    url,
    dir,
    logs,
    alive: () => !exited,
    stop: async () => {
      if (!exited) proc.kill("SIGKILL");
      await exit;
    },
  };
  running.push(node);
  return node;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) / 1024;
}

function tempFiles(node: NodeProc): string[] {
  return fs.readdirSync(path.join(node.dir, "tmp"));
}

// ------------------------------------------------------------------ raw HTTP

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on its own connection from `from` (a loopback address), no client-side checks. */
function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer; from?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method ?? "GET", headers: opts.headers, localAddress: opts.from, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

function json(a: Answer): { error?: string; message?: string; ok?: boolean; id?: string } {
  return JSON.parse(a.body.toString("utf8"));
}

/** A PUT of a fresh random blob of `size` bytes from `from`. */
function putRandom(url: string, size: number, from?: string, headers: Record<string, string> = {}) {
  const body = crypto.randomBytes(size);
  return request(`${url}/blobs`, {
    method: "PUT",
    body,
    from,
    headers: { [EXPECT_HEADER]: sha256Hex(body), ...headers },
  });
}

/** The node keeps serving a well-behaved client: health, and a fresh blob stored and read back. */
async function expectServing(node: NodeProc): Promise<void> {
  const health = await request(`${node.url}/healthz`);
  expect(health.status, health.body.toString()).to.equal(200);
  const bytes = crypto.randomBytes(2048);
  const client = new DataClient(node.url, { retries: 0 });
  const id = await client.put(bytes);
  expect(await client.get(id)).to.deep.equal(bytes);
}

function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(name));
  return line ? Number(line.split(" ").pop()) : 0;
}

/**
 * A PUT that sends its headers (declaring `declared` bytes) and then `chunk` bytes every `everyMs`, until
 * the server answers or closes. Resolves with the status, or "closed" when the connection ended unanswered.
 */
function tricklePut(
  url: string,
  from: string,
  declared: number,
  chunk: number,
  everyMs: number,
): { settled: Promise<number | "closed"> } {
  const settled = new Promise<number | "closed">((resolve) => {
    const req = http.request(`${url}/blobs`, {
      method: "PUT",
      localAddress: from,
      agent: false,
      headers: { "content-length": String(declared) },
    });
    const timer = setInterval(() => {
      if (!req.destroyed) req.write(crypto.randomBytes(chunk));
    }, everyMs);
    const done = (v: number | "closed") => {
      clearInterval(timer);
      resolve(v);
    };
    req.on("response", (res) => {
      res.resume();
      done(res.statusCode!);
    });
    req.on("error", () => done("closed"));
    req.on("close", () => done("closed"));
    req.flushHeaders();
  });
  return { settled };
}

// ------------------------------------------------------------------ tests

describe("data node under hostile clients (real processes)", function () {
  this.timeout(300_000);

  before(function () {
    ensureCliBuilt();
  });

  afterEach(async function () {
    while (running.length > 0) await running.pop()!.stop();
  });

  after(function () {
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it("cuts trickling uploads after the progress window, removes their temp files, and keeps serving meanwhile", async function () {
    const node = await startNode([
      "--min-upload-bytes-per-second",
      "1000",
      "--upload-progress-window-ms",
      "1000",
    ]);
    // 40 uploads at 50 bytes/s from one stranger: 32 (its cap of requests in flight) are taken and cut, 8
    // are refused at once.
    const trickles = Array.from({ length: 40 }, () => tricklePut(node.url, "127.0.0.2", 100_000, 10, 200));
    await until("the stranger's uploads to be in flight", () =>
      tempFiles(node).length >= 32 ? true : undefined,
    );
    await expectServing(node);
    const outcomes = await Promise.all(trickles.map((t) => t.settled));
    expect(outcomes.filter((o) => o === 429)).to.have.length(8);
    expect(outcomes.filter((o) => o === 408 || o === "closed")).to.have.length(32);
    await until("every temp file to be removed", () => (tempFiles(node).length === 0 ? true : undefined));
    const metrics = (await request(`${node.url}/metrics`)).body.toString();
    expect(metric(metrics, 'opg_data_refusals_total{reason="too_slow"}')).to.equal(32);
    expect(metric(metrics, 'opg_data_refusals_total{reason="rate_limited"}')).to.equal(8);
    expect(node.alive()).to.equal(true);
    await expectServing(node);
  });

  it("answers malformed, oversized and unfinished request heads (400, 431, 408) and closes them", async function () {
    const node = await startNode(["--headers-timeout-ms", "1000"]);
    const port = Number(new URL(node.url).port);
    const send = (what: string | Buffer, from: string) =>
      new Promise<string>((resolve) => {
        const s = net.connect({ host: "127.0.0.1", port, localAddress: from });
        let text = "";
        s.on("data", (c: Buffer) => (text += c.toString()));
        s.on("error", () => undefined);
        s.on("close", () => resolve(text));
        s.write(what);
      });
    const [garbage, huge, unfinished] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, () => send("\x00\x01 not http\r\n\r\n", "127.0.0.12"))),
      send(`GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ${"a".repeat(64 * 1024)}\r\n\r\n`, "127.0.0.13"),
      Promise.all(
        Array.from({ length: 10 }, () => send("GET /healthz HTTP/1.1\r\nhost: x\r\n", "127.0.0.14")),
      ),
    ]);
    for (const t of garbage) expect(t).to.match(/^HTTP\/1\.1 400 /);
    const badTarget = await send("GET //[ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", "127.0.0.15");
    expect(badTarget).to.match(/^HTTP\/1\.1 400 /);
    expect(badTarget).to.contain("malformed request target");
    expect(huge).to.match(/^HTTP\/1\.1 431 /);
    for (const t of unfinished) expect(t).to.match(/^HTTP\/1\.1 408 /);
    const metrics = (await request(`${node.url}/metrics`)).body.toString();
    expect(metric(metrics, "opg_data_client_errors_total")).to.be.above(0);
    expect(node.alive()).to.equal(true);
    await expectServing(node);
  });

  it("leaves no temp file behind an aborted upload, and stays up", async function () {
    const node = await startNode([]);
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = net.connect({
        host: "127.0.0.1",
        port: Number(new URL(node.url).port),
        localAddress: "127.0.0.3",
      });
      s.on("error", () => undefined);
      s.write(`PUT /blobs HTTP/1.1\r\nhost: x\r\ncontent-length: 200000\r\n\r\n`);
      s.write(crypto.randomBytes(50_000));
      sockets.push(s);
    }
    await until("the uploads to reach the store", () => (tempFiles(node).length === 20 ? true : undefined));
    for (const s of sockets) s.destroy();
    await until("the aborted uploads' temp files to be removed", () =>
      tempFiles(node).length === 0 ? true : undefined,
    );
    expect(node.alive()).to.equal(true);
    expect(json(await request(`${node.url}/healthz`))).to.include({ ok: true, blobs: 0, bytes: 0 });
    await expectServing(node);
  });

  it("stays up when uploads are cut before the store starts reading them (bench:hostile found this)", async function () {
    // The body is cut within a few ms of the head: before the store has opened its temp file. The body's
    // error then had no listener yet and took the process down ("client closed the connection before the
    // body ended", exit 1).
    const node = await startNode([]);
    const port = Number(new URL(node.url).port);
    const closed: Promise<void>[] = [];
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 20; i++) {
        const s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.5" });
        s.on("error", () => undefined);
        closed.push(new Promise((resolve) => s.on("close", () => resolve())));
        s.write(`PUT /blobs HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n`);
        s.write(crypto.randomBytes(5000), () => s.destroy());
      }
      await sleep(20);
    }
    await Promise.all(closed);
    await until("the cut uploads' temp files to be removed", () => {
      if (!node.alive()) throw new Error("the data node exited");
      return tempFiles(node).length === 0 ? true : undefined;
    });
    expect(node.alive()).to.equal(true);
    await expectServing(node);
  });

  it(`streams a 48 MiB blob to 30 readers that do not read: RSS stays under ${RSS_BOUND_MIB} MiB, idle readers are cut`, async function () {
    const node = await startNode(["--max-blob-bytes", String(64 * MiB), "--idle-timeout-ms", "4000"]);
    const blob = crypto.randomBytes(48 * MiB);
    const client = new DataClient(node.url, { maxBytes: 64 * MiB });
    const id = await client.put(blob);
    const before = rssMiB(node.proc.pid!);
    const port = Number(new URL(node.url).port);
    const readers = Array.from({ length: 30 }, () => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.4" });
      s.on("error", () => undefined);
      let received = 0;
      s.on("data", (c: Buffer) => (received += c.length));
      const closed = new Promise<number>((resolve) => s.on("close", () => resolve(received)));
      s.write(`GET /blobs/${id} HTTP/1.1\r\nhost: x\r\n\r\n`);
      // Read the first bytes, then stop reading: the server's writes back up.
      const started = new Promise<void>((resolve) =>
        s.once("data", () => {
          s.pause();
          resolve();
        }),
      );
      return { s, started, closed };
    });
    await Promise.all(readers.map((r) => r.started));
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      peak = Math.max(peak, rssMiB(node.proc.pid!));
      await sleep(100);
    }
    await expectServing(node);
    // A well-behaved reader gets the whole blob meanwhile.
    expect(sha256Hex(await client.get(id))).to.equal(id);
    await until("the node to cut the 30 idle readers", () =>
      node.logs().filter((l) => l.aborted === true).length === 30 ? true : undefined,
    );
    // Read what was already sent: each connection ends well short of the blob.
    for (const r of readers) r.s.resume();
    for (const got of await Promise.all(readers.map((r) => r.closed))) expect(got).to.be.below(blob.length);
    const after = rssMiB(node.proc.pid!);
    console.log(
      `      RSS: ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB with 30 stalled readers, ${after.toFixed(0)} MiB after`,
    );
    expect(peak).to.be.below(RSS_BOUND_MIB);
    expect(after).to.be.below(RSS_BOUND_MIB);
    expect(node.alive()).to.equal(true);
  });

  describe("signed uploads", function () {
    const allowed = new Wallet(Wallet.createRandom().privateKey);
    const stranger = new Wallet(Wallet.createRandom().privateKey);

    async function signedHeaders(w: Wallet, body: Buffer, expiry: number): Promise<Record<string, string>> {
      const sha256 = sha256Hex(body);
      const sig = await w.signMessage(uploadMessage({ sha256, bytes: body.length, expiry }));
      return { [EXPECT_HEADER]: sha256, authorization: uploadAuthorization(w.address, expiry, sig) };
    }

    it("refuses unsigned (401), forbidden (403), replayed and expired uploads; takes an allowed account's", async function () {
      const node = await startNode(["--upload-policy", "signed", "--allowed-uploaders", allowed.address]);
      expect(json(await request(`${node.url}/healthz`))).to.include({ ok: true });
      const now = Math.floor(Date.now() / 1000);
      const body = crypto.randomBytes(1000);

      const unsigned = await putRandom(node.url, 1000);
      expect(unsigned.status).to.equal(401);
      expect(unsigned.headers["www-authenticate"]).to.equal("OPG-SIG");
      expect(json(unsigned).message).to.match(/signed uploads only/);

      const ok = await request(`${node.url}/blobs`, {
        method: "PUT",
        body,
        headers: await signedHeaders(allowed, body, now + 300),
      });
      expect(ok.status, ok.body.toString()).to.equal(201);

      const other = crypto.randomBytes(1000);
      const replayed = await request(`${node.url}/blobs`, {
        method: "PUT",
        body: other,
        headers: { ...(await signedHeaders(allowed, body, now + 300)), [EXPECT_HEADER]: sha256Hex(other) },
      });
      expect(replayed.status).to.equal(401);
      expect(json(replayed).message).to.match(/not .*'s for this content/);

      const expired = await request(`${node.url}/blobs`, {
        method: "PUT",
        body,
        headers: await signedHeaders(allowed, body, now - 5),
      });
      expect(expired.status).to.equal(401);
      expect(json(expired).message).to.match(/expired/);

      const tooLong = await request(`${node.url}/blobs`, {
        method: "PUT",
        body,
        headers: await signedHeaders(allowed, body, now + 30 * 86_400),
      });
      expect(tooLong.status).to.equal(401);
      expect(json(tooLong).message).to.match(/ahead/);

      const forbidden = await request(`${node.url}/blobs`, {
        method: "PUT",
        body: other,
        headers: await signedHeaders(stranger, other, now + 300),
      });
      expect(forbidden.status).to.equal(403);
      expect(json(forbidden).message).to.contain(stranger.address);

      // The client and the CLI sign with the uploader's key.
      const bytes = crypto.randomBytes(3000);
      const id = await new DataClient(node.url, { uploader: allowed }).put(bytes);
      expect(await new DataClient(node.url).get(id)).to.deep.equal(bytes);
      // The SDK's way: unsigned first, signed when the node answers 401.
      let signed = 0;
      const lazy = {
        getAddress: () => allowed.getAddress(),
        signMessage: (m: string) => ((signed += 1), allowed.signMessage(m)),
      };
      const lazyBytes = crypto.randomBytes(700);
      expect(
        await new DataClient(node.url, { uploader: lazy, signUploads: "on-request" }).put(lazyBytes),
      ).to.equal(sha256Hex(lazyBytes));
      expect(signed).to.equal(1);
      const e = await new DataClient(node.url, { uploader: stranger }).put(bytes).catch((x: unknown) => x);
      expect(e).to.be.instanceOf(DataClientError);
      expect((e as DataClientError).code).to.equal("FORBIDDEN");
      const file = path.join(tmpDir(), "blob.bin");
      fs.writeFileSync(file, crypto.randomBytes(500));
      const put = await runOpg(["data", "put", file, "--data-url", node.url], {
        env: { OPG_PRIVATE_KEY: allowed.privateKey },
      });
      expect(put.code, put.stderr).to.equal(0);
      expect(put.stdout.trim()).to.equal(sha256Hex(fs.readFileSync(file)));
      const refused = await runOpg(["data", "put", file, "--data-url", node.url], {
        env: { OPG_PRIVATE_KEY: undefined },
      });
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.match(/signed uploads only/);
      expect(refused.stderr).not.to.contain(node.dir);
    });
  });

  it("answers 429 over the upload quota and the request rate, and 507 when the store is full", async function () {
    const node = await startNode([
      "--uploader-quota-bytes",
      "3000",
      "--requests-per-second",
      "5",
      "--request-burst",
      "5",
      "--max-store-bytes",
      "10000",
      "--min-retention-seconds",
      "3600",
    ]);
    expect((await putRandom(node.url, 2000, "127.0.0.5")).status).to.equal(201);
    const overQuota = await putRandom(node.url, 2000, "127.0.0.5");
    expect(overQuota.status).to.equal(429);
    expect(json(overQuota)).to.include({ error: "quota_exceeded" });
    expect(json(overQuota).message).to.match(/upload quota exceeded: 2000 of 3000 bytes/);
    expect(Number(overQuota.headers["retry-after"])).to.be.within(1, 3600);

    const answers = await Promise.all(
      Array.from({ length: 12 }, () => request(`${node.url}/healthz`, { from: "127.0.0.6" })),
    );
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).to.be.at.least(5);
    expect(json(limited[0])).to.include({ error: "rate_limited" });
    expect(Number(limited[0].headers["retry-after"])).to.be.at.least(1);
    // Another client is not held back by the first one's rate.
    expect((await request(`${node.url}/healthz`, { from: "127.0.0.7" })).status).to.equal(200);

    // 2000 held; 2900 and 2900 more fit in 10000; the next does not, and nothing is old enough to evict.
    expect((await putRandom(node.url, 2900, "127.0.0.8")).status).to.equal(201);
    expect((await putRandom(node.url, 2900, "127.0.0.9")).status).to.equal(201);
    const full = await putRandom(node.url, 2900, "127.0.0.10");
    expect(full.status).to.equal(507);
    expect(json(full)).to.include({ error: "store_full" });
    expect(json(full).message).to.match(/the store is full: 7800 of 10000 bytes/);
    expect(json(await request(`${node.url}/healthz`))).to.include({ blobs: 3, bytes: 7800 });
    expect(tempFiles(node)).to.deep.equal([]);
  });

  it("under a low file limit answers 503 without naming any path, and recovers", async function () {
    const node = await startNode(["--max-requests-per-client", "0"], { fileLimit: 40 });
    const port = Number(new URL(node.url).port);
    // 40 uploads held open at once: sockets and temp files exhaust the 40 descriptors. Connections the
    // node cannot accept are closed at once; uploads it cannot open a temp file for are answered 503.
    const received: string[] = Array.from({ length: 40 }, () => "");
    const sockets = received.map((_, i) => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.11" });
      s.on("data", (c: Buffer) => (received[i] += c.toString()));
      s.on("error", () => undefined);
      s.write(`PUT /blobs HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n`);
      s.write(crypto.randomBytes(10_000));
      return s;
    });
    const refusal = await until("a 503 for lack of file handles", () =>
      received.find((t) => t.startsWith("HTTP/1.1 503 ")),
    );
    for (const s of sockets) s.destroy();
    expect(refusal).to.contain('"error":"unavailable"');
    expect(refusal).to.contain("the data node is out of file handles; try again later");
    expect(refusal).to.match(/retry-after: 5/i);
    const all = received.join("\n");
    expect(all).not.to.contain(node.dir);
    expect(all).not.to.contain(os.tmpdir());
    expect(node.alive()).to.equal(true);
    await until("temp files to be removed", () => (tempFiles(node).length === 0 ? true : undefined));
    await expectServing(node);
    // The log has the full error for the operator.
    expect(node.logs().some((l) => l.errno === "EMFILE")).to.equal(true);
  });

  describe("eviction", function () {
    const silentIds = (n: number) => Array.from({ length: n }, (_, i) => Buffer.alloc(1000, i + 1));

    it("evicts the least recently used unreferenced blobs past retention; refuses (STORE_FULL) when that is not enough", async function () {
      let t = 0;
      let referenced = new Set<string>();
      let chainDown = false;
      const evicted: string[] = [];
      const store = await BlobStore.open({
        dir: tmpDir(),
        maxBlobBytes: 10_000,
        maxStoreBytes: 3000,
        minRetentionMs: 1000,
        referenced: async () => {
          if (chainDown) throw new Error("chain unreachable");
          return referenced;
        },
        onEvict: (id) => evicted.push(id),
        now: () => t,
      });
      const [a, b, c, d, e] = silentIds(5);
      const [ida, idb, idc] = [a, b, c].map(sha256Hex);
      t = 0;
      await store.put(a);
      t = 1;
      await store.put(b);
      t = 2;
      await store.put(c);
      t = 3;
      await store.get(ida); // a is now used more recently than c
      referenced = new Set([idb]);
      t = 5000;
      await store.put(d);
      expect(evicted).to.deep.equal([idc]);
      expect(await store.has(ida)).to.equal(true);
      expect(await store.has(idb)).to.equal(true);
      expect(await store.has(idc)).to.equal(false);
      expect(store.stats()).to.deep.equal({ blobs: 3, bytes: 3000, evicted: 1 });

      // Room for 1000 more: only a may go (b is referenced, d too young); that is not room for 1500.
      t = 5001;
      const big = Buffer.alloc(1500, 9);
      const err = await store.put(big).catch((x: unknown) => x);
      expect(err).to.be.instanceOf(BlobError);
      expect((err as BlobError).code).to.equal("STORE_FULL");
      expect((err as BlobError).message).to.match(/3000 of 3000 bytes held/);
      expect(await store.has(ida)).to.equal(true);

      // With the chain unreadable, nothing is known to be unreferenced: nothing is evicted.
      chainDown = true;
      t = 10_000;
      expect(((await store.put(e).catch((x: unknown) => x)) as BlobError).code).to.equal("STORE_FULL");
      expect(store.stats()).to.deep.equal({ blobs: 3, bytes: 3000, evicted: 1 });
      expect(fs.readdirSync(path.join(store.dir, "tmp"))).to.deep.equal([]);
    });

    it("keeps what the chain references (a registered model's bundle, an open task's input) and evicts the rest", async function () {
      const f = await marketFixture();
      const input = Buffer.from(JSON.stringify({ quantized: ["1", "2", "3", "4"] }));
      const inputId = sha256Hex(input);
      const bundle = Buffer.from("a bundle archive");
      const spec = {
        name: "commitment",
        onnxHash: ethers.id("onnx:commitment"),
        bundleHash: `0x${sha256Hex(bundle)}`,
        royaltyReceiver: f.modelOwner.address,
        fee: 0n,
        verificationModes: 1,
        inputMode: 1,
        inputWords: 1,
        outputWords: 1,
        scaleBits: 0,
        packBits: 8,
        inputBits: 8,
        inputShape: [1, 4],
        outputShape: [1, 1],
      };
      await f.models.connect(f.modelOwner).registerModel(spec, f.verificationKey.slice(0, 14 + 2 * 4));
      const modelId = await f.models.modelCount();
      const deadline = (await ethers.provider.getBlock("latest"))!.timestamp + 3600;
      await f.tasks.connect(f.requester).submitTask({
        modelId,
        input: [123n],
        inputDataHash: `0x${inputId}`,
        fee: 0n,
        deadline,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0,
      });
      const deployment = {
        token: await f.token.getAddress(),
        staking: await f.staking.getAddress(),
        models: await f.models.getAddress(),
        tasks: await f.tasks.getAddress(),
      };
      const view = new DataChainView(ethers.provider, deployment, {
        fromBlock: 0,
        minUploaderBalance: ethers.parseEther("1000"),
        cacheMs: 60_000,
      });
      const refs = await view.referencedIds();
      expect(refs.has(inputId)).to.equal(true);
      expect(refs.has(sha256Hex(bundle))).to.equal(true);
      expect(await view.uploaderStanding(f.nodes[0].address)).to.equal("staked");
      expect(await view.uploaderStanding(f.modelOwner.address)).to.equal("model owner");
      expect(await view.uploaderStanding(f.requester.address)).to.equal("balance");
      expect(await view.uploaderStanding(f.stranger.address)).to.equal(null);

      let t = 0;
      const store = await BlobStore.open({
        dir: tmpDir(),
        maxBlobBytes: 10_000,
        maxStoreBytes: input.length + bundle.length + 100,
        minRetentionMs: 1000,
        referenced: () => view.referencedIds(),
        now: () => t,
      });
      const junk = Buffer.alloc(100, 7);
      await store.put(input);
      await store.put(bundle);
      await store.put(junk);
      t = 2000;
      await store.put(Buffer.alloc(100, 8));
      expect(await store.has(inputId)).to.equal(true);
      expect(await store.has(sha256Hex(bundle))).to.equal(true);
      expect(await store.has(sha256Hex(junk))).to.equal(false);
    });
  });

  describe("reads with a size cap", function () {
    let node: RunningDataNode;
    before(async function () {
      node = await startDataNode(
        {
          host: "127.0.0.1",
          port: 0,
          dir: path.join(tmpDir(), "store"),
          maxBlobBytes: 16 * MiB,
          shutdownTimeoutMs: 1000,
          logLevel: "silent",
          logFormat: "json",
        },
        { logger: pino({ level: "silent" }) },
      );
    });
    after(async function () {
      await node.stop();
    });

    it("DataClient.get refuses a blob over its cap, before reading it or while streaming, without retrying", async function () {
      const bytes = crypto.randomBytes(100_000);
      const client = new DataClient(node.url);
      const id = await client.put(bytes);
      let retries = 0;
      const e = await new DataClient(node.url, { onRetry: () => retries++ })
        .get(id, { maxBytes: 1000 })
        .catch((x: unknown) => x);
      expect((e as DataClientError).code).to.equal("TOO_LARGE");
      expect((e as Error).message).to.match(/100000 bytes, over the cap of 1000/);
      expect(retries).to.equal(0);
      // A server that sends no content-length: refused as soon as the cap is passed.
      const chunked = http.createServer((_req, res) => {
        res.writeHead(200, { "transfer-encoding": "chunked" });
        res.write(bytes);
        setTimeout(() => res.end(bytes), 50);
      });
      await new Promise<void>((r) => chunked.listen(0, "127.0.0.1", r));
      try {
        const port = (chunked.address() as net.AddressInfo).port;
        const e2 = await new DataClient(`http://127.0.0.1:${port}`)
          .get(id, { maxBytes: 1000 })
          .catch((x: unknown) => x);
        expect((e2 as DataClientError).code).to.equal("TOO_LARGE");
        expect((e2 as Error).message).to.match(/more than 1000 bytes/);
      } finally {
        chunked.closeAllConnections();
        chunked.close();
      }
      expect(await client.get(id)).to.deep.equal(bytes);
    });

    it("a commitment-mode input larger than its layout allows is refused before it is downloaded or parsed", async function () {
      const count = 4;
      const manifest = {
        publicSignals: {
          inputMode: "commitment" as const,
          inputWords: 1,
          outputWords: 1,
          packBits: 8,
          valuesPerWord: 31,
          outputCount: 1,
          inputCount: count,
          bindingIndex: 2,
        },
        quantization: { inputBits: 8, commitmentPackBits: 8 },
      };
      // 8 MiB of whitespace before a valid object: JSON would parse it, the cap refuses it from its size.
      const huge = Buffer.concat([
        Buffer.alloc(8 * MiB, 0x20),
        Buffer.from('{"quantized":["1","2","3","4"]}'),
      ]);
      const id = await new DataClient(node.url).put(huge);
      const submitted = {
        taskId: 1n,
        modelId: 1n,
        input: [1n],
        task: { inputDataHash: `0x${id}` },
      } as unknown as SubmittedTask;
      const e = await decodeTaskInput(manifest, submitted, new DataClient(node.url)).catch((x: unknown) => x);
      expect(e).to.be.instanceOf(InputRejectedError);
      expect((e as Error).message).to.contain(`over the cap of ${quantizedBlobMaxBytes(count)} bytes`);
    });
  });
});
