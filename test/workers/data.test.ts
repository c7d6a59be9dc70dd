import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { BlobError, BlobStore, sha256Hex } from "../../workers/data/blob-store";
import {
  BUNDLE_ARCHIVE_FORMAT,
  BundleArchiveError,
  bundleIdToBytes32,
  bytes32ToBundleId,
  packBundle,
  readBundleArchive,
  unpackBundle,
} from "../../workers/data/bundle-archive";
import { DataClient, DataClientError } from "../../workers/data/client";
import type { DataNodeSettings } from "../../workers/data/config";
import { ensureCliBuilt } from "../helpers/cli";
import { type RunningDataNode, startDataNode } from "../../workers/data/server";

const ROOT = path.join(__dirname, "..", "..");
const OPG = path.join(ROOT, "bin", "opg.js");
const silent = pino({ level: "silent" });
const tmpDirs: string[] = [];

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "opg-data-test-"));
  tmpDirs.push(d);
  return d;
}

function blobPath(dir: string, id: string): string {
  return path.join(dir, id.slice(0, 2), id);
}

function flipByte(file: string, at = 0): void {
  const b = fs.readFileSync(file);
  b[at] ^= 0x01;
  fs.writeFileSync(file, b);
}

async function expectReject(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

function expectThrow(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a throw");
}

function config(dir: string, over: Partial<DataNodeSettings> = {}): DataNodeSettings {
  return {
    host: "127.0.0.1",
    port: 0,
    dir,
    maxBlobBytes: 64 * 1024,
    shutdownTimeoutMs: 2000,
    logLevel: "silent",
    logFormat: "json",
    ...over,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A raw HTTP request (no client-side checks), body written in chunks when given as an array. */
function rawRequest(
  url: string,
  opts: {
    method?: string;
    headers?: Record<string, string>;
    body?: Buffer | Buffer[];
    /** Chunked bodies: awaited after the first chunk is written, before the rest. */
    afterFirstChunk?: () => Promise<void>;
  } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? "GET", headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    if (Array.isArray(opts.body)) {
      let stopped = false;
      req.on("response", () => (stopped = true));
      const chunks = [...opts.body];
      let first = true;
      const next = (): void => {
        if (stopped || chunks.length === 0) return void req.end();
        req.write(chunks.shift(), () => {
          const gate = first && opts.afterFirstChunk ? opts.afterFirstChunk() : Promise.resolve();
          first = false;
          gate.then(() => setImmediate(next), reject);
        });
      };
      next();
    } else {
      req.end(opts.body);
    }
  });
}

function json(r: { body: Buffer }): { error?: string; message?: string; id?: string; created?: boolean } {
  return JSON.parse(r.body.toString("utf8"));
}

// ------------------------------------------------------------------ child processes

interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function runOpg(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(process.execPath, [OPG, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  return { proc, stdout: () => out, stderr: () => err, exited };
}

async function waitFor<T>(what: string, fn: () => T | undefined, child: Child, ms = 90_000): Promise<T> {
  const deadline = Date.now() + ms;
  let exited = false;
  void child.exited.then(() => (exited = true));
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (exited) throw new Error(`child exited before ${what}:\n${child.stdout()}\n${child.stderr()}`);
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}:\n${child.stdout()}\n${child.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function logLines(child: Child): Array<Record<string, unknown>> {
  return child
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
}

async function startChildNode(dir: string, port: number): Promise<{ child: Child; url: string }> {
  const child = runOpg(["node", "data", "--port", String(port), "--dir", dir, "--max-blob-bytes", "100000"]);
  const url = await waitFor(
    "the listening log line",
    () => logLines(child).find((l) => l.msg === "data node listening")?.url as string | undefined,
    child,
  );
  return { child, url };
}

async function runToEnd(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string; err: string }> {
  const c = runOpg(args, env);
  const code = await c.exited;
  return { code, out: c.stdout(), err: c.stderr() };
}

// ------------------------------------------------------------------ a synthetic ZKML bundle

function writeBundle(dir: string): Record<string, Buffer> {
  fs.mkdirSync(dir, { recursive: true });
  const files: Record<string, Buffer> = {
    "model.onnx": crypto.randomBytes(300),
    "program.json": Buffer.from(JSON.stringify({ ops: [1, 2, 3] })),
    "circuit.circom": Buffer.from("pragma circom 2.1.6;\n"),
    "circuit.r1cs": crypto.randomBytes(200),
    "circuit.wasm": crypto.randomBytes(150),
    "circuit.zkey": crypto.randomBytes(500),
    "verification_key.json": Buffer.from('{"protocol":"groth16"}'),
  };
  for (const [name, data] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), data);
  // Files a node does not need: not in the archive.
  fs.writeFileSync(path.join(dir, "circuit.sym"), "1,1,0,main.x\n");
  fs.writeFileSync(path.join(dir, "notes.txt"), "scratch\n");
  const ref = (file: string) => ({ file, sha256: sha256Hex(files[file]) });
  const manifest = {
    format: "opg-zkml-bundle/1",
    name: "synthetic",
    onnx: { ...ref("model.onnx"), producer: "test", opset: 13 },
    artifacts: {
      circuit: ref("circuit.circom"),
      program: ref("program.json"),
      r1cs: ref("circuit.r1cs"),
      wasm: ref("circuit.wasm"),
      zkey: ref("circuit.zkey"),
      verificationKey: ref("verification_key.json"),
    },
    createdAt: "2026-01-01T00:00:00.000Z",
  };
  files["manifest.json"] = Buffer.from(JSON.stringify(manifest, null, 2));
  fs.writeFileSync(path.join(dir, "manifest.json"), files["manifest.json"]);
  return files;
}

/** Builds an archive by hand (for tampering): entries as given, header canonical unless `rawHeader`. */
function craftArchive(
  entries: Array<{ name: string; data: Buffer; sha256?: string }>,
  rawHeader?: string,
): Buffer {
  const header =
    rawHeader ??
    JSON.stringify({
      format: BUNDLE_ARCHIVE_FORMAT,
      files: entries.map((e) => ({
        name: e.name,
        size: e.data.length,
        sha256: e.sha256 ?? sha256Hex(e.data),
      })),
    });
  const h = Buffer.from(header);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length);
  return Buffer.concat([len, h, ...entries.map((e) => e.data)]);
}

function entriesOf(archive: Buffer): Array<{ name: string; data: Buffer }> {
  const r = readBundleArchive(archive);
  return [...r.files.entries()].map(([name, data]) => ({ name, data: Buffer.from(data) }));
}

// ------------------------------------------------------------------ tests

describe("data node", function () {
  after(function () {
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  describe("BlobStore", function () {
    it("stores by sha256, gets, has, and counts", async function () {
      const dir = tmpDir();
      const store = await BlobStore.open({ dir, maxBlobBytes: 1000 });
      const bytes = Buffer.from("hello\n");
      const id = await store.put(bytes);
      expect(id)
        .to.equal(sha256Hex(bytes))
        .and.match(/^[0-9a-f]{64}$/);
      expect(fs.readFileSync(blobPath(dir, id))).to.deep.equal(bytes);
      expect(await store.has(id)).to.equal(true);
      expect(await store.has("0".repeat(64))).to.equal(false);
      expect(await store.get(id)).to.deep.equal(bytes);
      expect((await store.putBytes(bytes)).created).to.equal(false);
      expect(store.stats()).to.deep.equal({ blobs: 1, bytes: 6, evicted: 0 });
      const e = await expectReject(store.get("0".repeat(64)));
      expect(e).to.be.instanceOf(BlobError).with.property("code", "NOT_FOUND");
      expect(fs.readdirSync(path.join(dir, "tmp"))).to.deep.equal([]);
    });

    it("survives a restart: a new instance over the same directory serves and counts what was stored", async function () {
      const dir = tmpDir();
      const a = await BlobStore.open({ dir, maxBlobBytes: 1000 });
      const ids = [await a.put(Buffer.from("one")), await a.put(Buffer.from("two!"))];
      fs.writeFileSync(path.join(dir, "tmp", "leftover-from-a-crash"), "partial");
      const b = await BlobStore.open({ dir, maxBlobBytes: 1000 });
      expect(b.stats()).to.deep.equal({ blobs: 2, bytes: 7, evicted: 0 });
      expect((await b.get(ids[0])).toString()).to.equal("one");
      expect((await b.get(ids[1])).toString()).to.equal("two!");
      expect(fs.readdirSync(path.join(dir, "tmp"))).to.deep.equal([]);
    });

    it("refuses a blob whose bytes on disk no longer match its id, reports it, and repairs on a fresh put", async function () {
      const dir = tmpDir();
      const reported: string[] = [];
      const store = await BlobStore.open({ dir, maxBlobBytes: 1000, onCorrupt: (id) => reported.push(id) });
      const bytes = crypto.randomBytes(100);
      const id = await store.put(bytes);
      flipByte(blobPath(dir, id), 50);
      const e = await expectReject(store.get(id));
      expect(e).to.be.instanceOf(BlobError).with.property("code", "CORRUPT");
      expect(e.message).to.contain(id).and.contain("corrupt");
      expect(reported).to.deep.equal([id]);
      const r = await store.putBytes(bytes);
      expect(r).to.include({ id, created: false, repaired: true });
      expect(await store.get(id)).to.deep.equal(bytes);
    });

    it("enforces the size limit on buffers and streams, keeping nothing", async function () {
      const dir = tmpDir();
      const store = await BlobStore.open({ dir, maxBlobBytes: 10 });
      expect(await store.put(Buffer.alloc(10))).to.match(/^[0-9a-f]{64}$/);
      const e1 = await expectReject(store.put(Buffer.alloc(11)));
      expect(e1).to.be.instanceOf(BlobError).with.property("code", "TOO_LARGE");
      async function* chunks() {
        for (let i = 0; i < 5; i++) yield Buffer.alloc(4, i);
      }
      const e2 = await expectReject(store.putStream(chunks()));
      expect(e2).to.have.property("code", "TOO_LARGE");
      expect(store.stats().blobs).to.equal(1);
      expect(fs.readdirSync(path.join(dir, "tmp"))).to.deep.equal([]);
    });

    it("validates ids: exactly 64 lowercase hex characters, no paths", async function () {
      const store = await BlobStore.open({ dir: tmpDir(), maxBlobBytes: 10 });
      for (const bad of [
        "",
        "abc",
        "0".repeat(63),
        "0".repeat(65),
        "A".repeat(64),
        "../../etc/passwd",
        `../${"0".repeat(61)}`,
      ]) {
        for (const op of [() => store.get(bad), () => store.has(bad)]) {
          const e = await expectReject(op());
          expect(e, bad).to.be.instanceOf(BlobError).with.property("code", "BAD_ID");
        }
      }
      const e = await expectReject(store.putStream([Buffer.from("x")], "zz"));
      expect(e).to.have.property("code", "BAD_ID");
    });

    it("concurrent puts of the same blob: one creates it, all agree on the id, one file", async function () {
      const dir = tmpDir();
      const stores = await Promise.all([1, 2].map(() => BlobStore.open({ dir, maxBlobBytes: 1 << 20 })));
      const bytes = crypto.randomBytes(200_000);
      const results = await Promise.all(Array.from({ length: 24 }, (_, i) => stores[i % 2].putBytes(bytes)));
      expect(new Set(results.map((r) => r.id))).to.deep.equal(new Set([sha256Hex(bytes)]));
      expect(results.filter((r) => r.created)).to.have.length(1);
      expect(fs.readdirSync(path.join(dir, results[0].id.slice(0, 2)))).to.deep.equal([results[0].id]);
      expect(fs.readdirSync(path.join(dir, "tmp"))).to.deep.equal([]);
      expect(await stores[0].get(results[0].id)).to.deep.equal(bytes);
    });
  });

  describe("HTTP server and client (in process)", function () {
    let node: RunningDataNode;
    let dir: string;
    let url: string;

    beforeEach(async function () {
      dir = tmpDir();
      node = await startDataNode(config(dir), { logger: silent });
      url = node.url;
    });
    afterEach(async function () {
      await node.stop();
    });

    it("PUT returns 201 then 200 with the id; GET and HEAD serve the bytes with their sha256", async function () {
      const bytes = crypto.randomBytes(1000);
      const id = sha256Hex(bytes);
      const r1 = await rawRequest(`${url}/blobs`, { method: "PUT", body: bytes });
      expect(r1.status).to.equal(201);
      expect(json(r1)).to.include({ id, created: true });
      const r2 = await rawRequest(`${url}/blobs`, { method: "PUT", body: bytes });
      expect(r2.status).to.equal(200);
      expect(json(r2)).to.include({ id, created: false });
      const g = await rawRequest(`${url}/blobs/${id}`);
      expect(g.status).to.equal(200);
      expect(g.headers["content-type"]).to.equal("application/octet-stream");
      expect(g.headers["x-opg-sha256"]).to.equal(id);
      expect(g.body).to.deep.equal(bytes);
      const h = await rawRequest(`${url}/blobs/${id}`, { method: "HEAD" });
      expect(h.status).to.equal(200);
      expect(h.headers["content-length"]).to.equal("1000");
      expect(h.body.length).to.equal(0);
      expect((await rawRequest(`${url}/blobs/${"0".repeat(64)}`, { method: "HEAD" })).status).to.equal(404);
    });

    it("answers 404 for an unknown id and 400 for a malformed one", async function () {
      const unknown = await rawRequest(`${url}/blobs/${"ab".repeat(32)}`);
      expect(unknown.status).to.equal(404);
      expect(json(unknown).error).to.equal("not_found");
      for (const bad of [
        "xyz",
        "AB".repeat(32),
        "0".repeat(63),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        `${"0".repeat(64)}/x`,
      ]) {
        const r = await rawRequest(`${url}/blobs/${bad}`);
        expect(r.status, bad).to.equal(400);
        expect(json(r).error).to.equal("bad_id");
      }
      expect((await rawRequest(`${url}/nope`)).status).to.equal(404);
      const m = await rawRequest(`${url}/blobs`, { method: "POST", body: Buffer.from("x") });
      expect(m.status).to.equal(405);
      expect(m.headers.allow).to.equal("PUT");
    });

    it("answers 413 over the size limit, declared up front or found while streaming, and stores nothing", async function () {
      const big = crypto.randomBytes(64 * 1024 + 1);
      const r1 = await rawRequest(`${url}/blobs`, { method: "PUT", body: big });
      expect(r1.status).to.equal(413);
      expect(json(r1)).to.include({ error: "too_large" });
      const chunks = Array.from({ length: 40 }, () => crypto.randomBytes(16 * 1024));
      const r2 = await rawRequest(`${url}/blobs`, {
        method: "PUT",
        headers: { "transfer-encoding": "chunked" },
        body: chunks,
      });
      expect(r2.status).to.equal(413);
      expect(json(r2).message).to.contain("limit of 65536 bytes");
      const e = await expectReject(new DataClient(url, { retries: 0 }).put(crypto.randomBytes(3 << 20)));
      expect(e).to.be.instanceOf(DataClientError).with.property("code", "TOO_LARGE");
      expect(node.store.stats().blobs).to.equal(0);
      // The node still works after refusing.
      expect((await rawRequest(`${url}/blobs`, { method: "PUT", body: Buffer.from("ok") })).status).to.equal(
        201,
      );
    });

    it("checks ?expect= and x-opg-expect-sha256: 422 on mismatch, nothing stored", async function () {
      const bytes = Buffer.from("expected content");
      const id = sha256Hex(bytes);
      const wrong = "1".repeat(64);
      const q = await rawRequest(`${url}/blobs?expect=${wrong}`, { method: "PUT", body: bytes });
      expect(q.status).to.equal(422);
      expect(json(q).error).to.equal("expect_mismatch");
      expect(json(q).message).to.contain(id).and.contain(wrong);
      const h = await rawRequest(`${url}/blobs`, {
        method: "PUT",
        headers: { "x-opg-expect-sha256": wrong },
        body: bytes,
      });
      expect(h.status).to.equal(422);
      expect(await node.store.has(id)).to.equal(false);
      expect(
        (await rawRequest(`${url}/blobs?expect=nothex`, { method: "PUT", body: bytes })).status,
      ).to.equal(400);
      const ok = await rawRequest(`${url}/blobs?expect=${id}`, { method: "PUT", body: bytes });
      expect(ok.status).to.equal(201);
    });

    it("never serves corrupt bytes: 500 naming corruption, the client refuses without retrying, metric counted", async function () {
      const client = new DataClient(url);
      const bytes = crypto.randomBytes(5000);
      const id = await client.put(bytes);
      expect(await client.get(id)).to.deep.equal(bytes);
      expect(await client.has(id)).to.equal(true);
      flipByte(blobPath(dir, id), 4999);
      const r = await rawRequest(`${url}/blobs/${id}`);
      expect(r.status).to.equal(500);
      expect(json(r).error).to.equal("corrupt");
      expect(json(r).message).to.contain(id).and.contain("corrupt");
      let retries = 0;
      const e = await expectReject(new DataClient(url, { onRetry: () => retries++ }).get(id));
      expect(e).to.be.instanceOf(DataClientError).with.property("code", "CORRUPT");
      expect(e.message).to.contain(id);
      expect(retries).to.equal(0);
      const metrics = (await rawRequest(`${url}/metrics`)).body.toString();
      expect(metrics).to.match(/^opg_data_corrupt_reads_total 2$/m);
      expect(metrics).to.match(/^opg_data_blobs_stored 1$/m);
      expect(metrics).to.match(/^opg_data_bytes_stored 5000$/m);
      expect(metrics).to.contain('opg_data_requests_total{route="GET /blobs/:id",status="500"} 2');
    });

    it("serves /healthz", async function () {
      const r = await rawRequest(`${url}/healthz`);
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.body.toString())).to.include({ ok: true, blobs: 0 });
    });

    it("finishes a request in flight on shutdown and then refuses connections", async function () {
      const bytes = crypto.randomBytes(48 * 1024);
      // The rest of the body is held back until the server counts the request in flight and shutdown has
      // begun, so the shutdown always meets a request in flight.
      let stopped: Promise<void> | undefined;
      const pending = rawRequest(`${url}/blobs`, {
        method: "PUT",
        headers: { "transfer-encoding": "chunked" },
        body: [bytes.subarray(0, 16 * 1024), bytes.subarray(16 * 1024)],
        afterFirstChunk: async () => {
          while (node.server.requestsInFlight === 0) await new Promise((r) => setTimeout(r, 5));
          stopped = node.stop();
        },
      });
      const r = await pending;
      expect(r.status).to.equal(201);
      await stopped!;
      const e = await expectReject(rawRequest(`${url}/healthz`));
      expect((e as NodeJS.ErrnoException).code).to.equal("ECONNREFUSED");
      node = await startDataNode(config(dir), { logger: silent }); // for afterEach, over the same dir
      expect(await new DataClient(node.url).get(sha256Hex(bytes))).to.deep.equal(bytes);
    });
  });

  describe("DataClient against misbehaving servers", function () {
    let server: http.Server;
    let url: string;
    let handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
    let hits: number;

    beforeEach(async function () {
      hits = 0;
      server = http.createServer((req, res) => {
        hits++;
        handler(req, res);
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    });
    afterEach(async function () {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it("refuses bytes that do not hash to the id asked for, naming the id, without retrying", async function () {
      const id = sha256Hex(Buffer.from("the real content"));
      handler = (_req, res) => res.end("something else");
      const e = await expectReject(new DataClient(url, { backoffMs: 1 }).get(id));
      expect(e).to.be.instanceOf(DataClientError).with.property("code", "HASH_MISMATCH");
      expect(e.message).to.contain(id);
      expect(hits).to.equal(1);
    });

    it("retries 503 with backoff until it succeeds; does not retry 4xx", async function () {
      const bytes = Buffer.from("eventually");
      const id = sha256Hex(bytes);
      handler = (_req, res) => {
        if (hits <= 2) {
          res.statusCode = 503;
          res.end('{"error":"internal","message":"busy"}');
        } else res.end(bytes);
      };
      const delays: number[] = [];
      const got = await new DataClient(url, { backoffMs: 10, onRetry: (i) => delays.push(i.delayMs) }).get(
        id,
      );
      expect(got).to.deep.equal(bytes);
      expect(hits).to.equal(3);
      expect(delays).to.have.length(2);
      hits = 0;
      handler = (_req, res) => {
        res.statusCode = 404;
        res.end('{"error":"not_found","message":"nope"}');
      };
      const e = await expectReject(new DataClient(url, { backoffMs: 1 }).get(id));
      expect(e).to.have.property("code", "NOT_FOUND");
      expect(hits).to.equal(1);
    });

    it("gives up after bounded retries on connection errors and timeouts", async function () {
      const port = await freePort();
      let retries = 0;
      const e = await expectReject(
        new DataClient(`http://127.0.0.1:${port}`, {
          retries: 2,
          backoffMs: 1,
          onRetry: () => retries++,
        }).get("0".repeat(64)),
      );
      expect(e).to.be.instanceOf(DataClientError).with.property("code", "NETWORK");
      expect(retries).to.equal(2);
      handler = () => {}; // never answers
      const t = await expectReject(
        new DataClient(url, { timeoutMs: 100, retries: 1, backoffMs: 1 }).get("0".repeat(64)),
      );
      expect(t).to.have.property("code", "TIMEOUT");
      expect(hits).to.equal(2);
    });
  });

  describe("bundle archive", function () {
    it("packs deterministically only what a node needs, and unpacks to the same files", function () {
      const a = path.join(tmpDir(), "bundle");
      const files = writeBundle(a);
      const packed = packBundle(a);
      expect(packBundle(a)).to.deep.equal(packed);
      const b = path.join(tmpDir(), "copy");
      fs.cpSync(a, b, { recursive: true });
      fs.utimesSync(path.join(b, "model.onnx"), new Date(0), new Date(0));
      expect(packBundle(b)).to.deep.equal(packed, "same content elsewhere, other mtimes: same archive");

      const r = readBundleArchive(packed);
      expect(r.header.format).to.equal(BUNDLE_ARCHIVE_FORMAT);
      const names = r.header.files.map((f) => f.name);
      expect(names).to.deep.equal(Object.keys(files).sort());
      expect(names).to.not.include("circuit.sym").and.not.include("notes.txt");
      expect(r.id).to.equal(sha256Hex(packed));

      const dest = path.join(tmpDir(), "unpacked");
      const u = unpackBundle(packed, dest);
      expect(u.id).to.equal(sha256Hex(packed));
      expect(fs.readdirSync(dest).sort()).to.deep.equal(names);
      for (const [name, data] of Object.entries(files))
        expect(fs.readFileSync(path.join(dest, name))).to.deep.equal(data);
      expect(packBundle(dest)).to.deep.equal(packed, "re-packing the unpacked bundle gives the same id");

      const e = expectThrow(() => unpackBundle(packed, dest));
      expect(e).to.have.property("code", "EXISTS");
      expect(unpackBundle(packed, dest, { replace: true }).dir).to.equal(dest);
      expect(fs.readdirSync(path.dirname(dest))).to.deep.equal(["unpacked"], "no temp dirs left");
    });

    it("maps ids to bytes32 and back", function () {
      const id = sha256Hex(Buffer.from("bundle"));
      expect(bundleIdToBytes32(id)).to.equal(`0x${id}`);
      expect(bytes32ToBundleId(`0x${id.toUpperCase()}`)).to.equal(id);
      expect(() => bundleIdToBytes32(`0x${id}`)).to.throw(BundleArchiveError);
      expect(() => bytes32ToBundleId(id)).to.throw(BundleArchiveError);
    });

    it("refuses to pack a bundle whose files disagree with manifest.json", function () {
      const dir = path.join(tmpDir(), "bundle");
      writeBundle(dir);
      flipByte(path.join(dir, "circuit.zkey"));
      const e = expectThrow(() => packBundle(dir));
      expect(e).to.have.property("code", "HASH_MISMATCH");
      expect(e.message).to.contain("circuit.zkey");
      fs.rmSync(path.join(dir, "circuit.wasm"));
      expect(expectThrow(() => packBundle(dir))).to.have.property("code", "BAD_BUNDLE");
    });

    it("refuses tampered archives and writes nothing", function () {
      const src = path.join(tmpDir(), "bundle");
      writeBundle(src);
      const packed = packBundle(src);
      const parent = tmpDir();
      const dest = path.join(parent, "out");
      const refuse = (bytes: Buffer, code: string, msg?: string): void => {
        const e = expectThrow(() => unpackBundle(bytes, dest));
        expect(e, e.message).to.be.instanceOf(BundleArchiveError).with.property("code", code);
        if (msg) expect(e.message).to.contain(msg);
        expect(fs.readdirSync(parent)).to.deep.equal([]);
      };

      const flipped = Buffer.from(packed);
      flipped[flipped.length - 10] ^= 0xff; // inside the last file's bytes
      refuse(flipped, "HASH_MISMATCH");
      refuse(packed.subarray(0, packed.length - 1), "BAD_ARCHIVE", "truncated");
      refuse(Buffer.concat([packed, Buffer.from("x")]), "BAD_ARCHIVE", "trailing");
      refuse(Buffer.from("not an archive"), "BAD_ARCHIVE");

      const entries = entriesOf(packed);
      // A file swapped for other bytes, its header entry rewritten to match: the manifest still disagrees.
      const swapped = entries.map((e) =>
        e.name === "circuit.zkey" ? { ...e, data: crypto.randomBytes(500) } : e,
      );
      refuse(craftArchive(swapped), "HASH_MISMATCH", "manifest.json says");
      // A file the manifest does not list; a file missing.
      refuse(
        craftArchive([...entries, { name: "zz-extra.bin", data: Buffer.from("x") }]),
        "BAD_BUNDLE",
        "zz-extra.bin",
      );
      refuse(craftArchive(entries.filter((e) => e.name !== "circuit.wasm")), "BAD_BUNDLE", "circuit.wasm");
      // Out of order, and a non-canonical header (same content, other bytes, other id).
      refuse(craftArchive([...entries].reverse()), "BAD_ARCHIVE", "order");
      const pretty = JSON.stringify(
        {
          format: BUNDLE_ARCHIVE_FORMAT,
          files: entries.map((e) => ({ name: e.name, size: e.data.length, sha256: sha256Hex(e.data) })),
        },
        null,
        1,
      );
      refuse(craftArchive(entries, pretty), "BAD_ARCHIVE", "canonical");
    });

    it("refuses unsafe names in the archive and in the manifest", function () {
      const parent = tmpDir();
      const dest = path.join(parent, "out");
      for (const name of [
        "../evil",
        "/etc/passwd",
        "a/../../b",
        "a\\b",
        "./x",
        "a//b",
        "C:/x",
        "nul\u0000",
      ]) {
        const e = expectThrow(() => unpackBundle(craftArchive([{ name, data: Buffer.from("x") }]), dest));
        expect(e, name).to.be.instanceOf(BundleArchiveError).with.property("code", "BAD_NAME");
      }
      const evil = Buffer.from("payload");
      const manifest = Buffer.from(
        JSON.stringify({
          onnx: { file: "../model.onnx", sha256: sha256Hex(evil) },
          artifacts: {},
        }),
      );
      const e = expectThrow(() =>
        unpackBundle(
          craftArchive([
            { name: "manifest.json", data: manifest },
            { name: "model.onnx", data: evil },
          ]),
          dest,
        ),
      );
      expect(e).to.have.property("code", "BAD_NAME");
      expect(fs.readdirSync(parent)).to.deep.equal([]);
      expect(fs.existsSync(path.join(parent, "..", "model.onnx"))).to.equal(false);
    });
  });

  describe("opg CLI (real child processes)", function () {
    before(function () {
      ensureCliBuilt();
    });

    it("opg node data: serves PUT/GET on the given port, persists across restarts, drains on SIGTERM, exits 0", async function () {
      const dir = tmpDir();
      const port = await freePort();
      const { child, url } = await startChildNode(dir, port);
      expect(url).to.equal(`http://127.0.0.1:${port}`);
      const client = new DataClient(url);
      const bytes = crypto.randomBytes(20_000);
      const id = await client.put(bytes);
      expect(await client.get(id)).to.deep.equal(bytes);
      expect(
        (await rawRequest(`${url}/blobs`, { method: "PUT", body: crypto.randomBytes(100_001) })).status,
      ).to.equal(413);

      // An upload in flight when SIGTERM arrives still completes; then the process exits 0.
      const inflight = crypto.randomBytes(30_000);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const pending = new Promise<number>((resolve, reject) => {
        const req = http.request(
          `${url}/blobs`,
          { method: "PUT", headers: { "transfer-encoding": "chunked" } },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode!));
          },
        );
        req.on("error", reject);
        req.write(inflight.subarray(0, 10_000));
        void gate.then(() => req.end(inflight.subarray(10_000)));
      });
      await new Promise((r) => setTimeout(r, 300));
      child.proc.kill("SIGTERM");
      await waitFor(
        "the shutdown log line",
        () => logLines(child).find((l) => l.msg === "shutting down"),
        child,
      );
      release();
      expect(await pending).to.equal(201);
      expect(await child.exited).to.equal(0);
      const lines = logLines(child);
      expect(lines.find((l) => l.msg === "shutting down")).to.include({ inFlight: 1 });
      expect(lines.at(-1)).to.include({ msg: "stopped" });
      expect(lines.every((l) => typeof l.level === "number" && typeof l.time === "string")).to.equal(true);

      const again = await startChildNode(dir, port);
      const c2 = new DataClient(again.url);
      expect(await c2.get(id)).to.deep.equal(bytes);
      expect(await c2.get(sha256Hex(inflight))).to.deep.equal(inflight);
      again.child.proc.kill("SIGTERM");
      expect(await again.child.exited).to.equal(0);
    });

    it("opg node data: invalid configuration exits 2 naming every bad field", async function () {
      const cfg = path.join(tmpDir(), "data.json");
      fs.writeFileSync(cfg, JSON.stringify({ dir: "/tmp/x", colour: "blue" }));
      const r = await runToEnd(["node", "data", "--port", "99999", "--config", cfg], {
        OPG_DATA_MAX_BLOB_BYTES: "lots",
        OPG_LOG_LEVEL: "loud",
      });
      expect(r.code).to.equal(2);
      expect(r.err).to.contain("port (from flag)").and.contain("99999");
      expect(r.err).to.contain("maxBlobBytes (from OPG_DATA_MAX_BLOB_BYTES)");
      expect(r.err).to.contain("logLevel (from OPG_LOG_LEVEL)");
      expect(r.err).to.contain('unknown option "colour"');
      expect(r.out).to.equal("");
    });

    it("opg data put / get / pack-bundle / fetch-bundle against a node", async function () {
      const work = tmpDir();
      const node = await startDataNode(config(path.join(work, "store"), { maxBlobBytes: 1 << 20 }), {
        logger: silent,
      });
      try {
        const file = path.join(work, "input.bin");
        const bytes = crypto.randomBytes(4096);
        fs.writeFileSync(file, bytes);
        const put = await runToEnd(["data", "put", file, "--data-url", node.url]);
        expect(put.code, put.err).to.equal(0);
        expect(put.out.trim()).to.equal(sha256Hex(bytes));
        // --url is the deprecated spelling: still accepted, with a warning
        const old = await runToEnd(["data", "put", file, "--url", node.url]);
        expect(old.code, old.err).to.equal(0);
        expect(old.out.trim()).to.equal(sha256Hex(bytes));
        expect(old.err).to.contain("--url is deprecated, use --data-url");

        const out = path.join(work, "back.bin");
        const get = await runToEnd(["data", "get", sha256Hex(bytes), "--data-url", node.url, "--out", out]);
        expect(get.code, get.err).to.equal(0);
        expect(fs.readFileSync(out)).to.deep.equal(bytes);

        const bundle = path.join(work, "bundle");
        const files = writeBundle(bundle);
        const pack = await runToEnd(["data", "pack-bundle", bundle, "--data-url", node.url]);
        expect(pack.code, pack.err).to.equal(0);
        const info = JSON.parse(pack.out) as { id: string; bundleHash: string; files: number };
        const packed = packBundle(bundle);
        expect(info.id).to.equal(sha256Hex(packed));
        expect(info.bundleHash).to.equal(`0x${info.id}`);
        expect(info.files).to.equal(Object.keys(files).length);
        expect(await node.store.get(info.id)).to.deep.equal(packed);

        const dest = path.join(work, "fetched");
        const fetched = await runToEnd([
          "data",
          "fetch-bundle",
          info.bundleHash,
          dest,
          "--data-url",
          node.url,
        ]);
        expect(fetched.code, fetched.err).to.equal(0);
        expect(fs.readFileSync(path.join(dest, "circuit.zkey"))).to.deep.equal(files["circuit.zkey"]);

        const missing = await runToEnd(["data", "get", "0".repeat(64), "--data-url", node.url]);
        expect(missing.code).to.equal(1);
        expect(missing.err).to.contain("not found");
      } finally {
        await node.stop();
      }
    });
  });
});
