import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { Writable } from "node:stream";
import { expect } from "chai";
import { ethers, getBytes, verifyMessage } from "ethers";
import pino from "pino";
import client from "prom-client";
import {
  account,
  publishModel,
  stakeNode,
  startNetwork,
  startVerificationNode,
  stopAllSpawned,
  waitFor,
  waitForLog,
  type Network,
  type Proc,
} from "../../network/local-network";
import { outputsHash } from "../../workers/runtime/optimistic";
import { MAX_JSON_BODY_BYTES, METRICS_CACHE_MS, ServiceHttp } from "../../workers/runtime/service";
import { MODES, parseSubmitted, TOPICS } from "../../workers/runtime/tasks";
import {
  loadPlainManifest,
  packagePlainModel,
  plainOutputWords,
  quantizePlainInput,
  runPlainBundle,
} from "../../zkml/plain-bundle";
import { packValues } from "../../zkml";
import { ensureCliBuilt } from "../helpers/cli";

/**
 * Issue 20, point 1: a verification node (`opg node verification`, a real process on a hardhat chain, staked
 * so that `/attest` does real work) under what strangers send its service port: aborted POST /attest bodies,
 * slow heads and bodies, oversized bodies and heads, malformed JSON, wrong content types, hundreds of
 * connections, bytes that are not HTTP and a POST flood. Throughout, the process stays up, `/healthz`
 * answers (asked from another client address, as an operator's monitor would) and an inference node's real
 * `/attest` for a claimed optimistic task is signed; its memory stays under RSS_BOUND_MB.
 *
 * Each kind of hostile client speaks from its own loopback address (127.0.0.x), so that the per-address caps
 * are exercised (the attacker is capped) without capping the honest clients.
 */

const IRIS = path.resolve(__dirname, "..", "fixtures", "models", "iris_mlp.onnx");
const FEE = ethers.parseEther("1");
const STAKE = ethers.parseEther("5000");
/** The node's HTTP limits in this test: the defaults, with timeouts short enough for a quick test. */
const HEADERS_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;
const PER_IP = 32;
const BURST = 40;
/**
 * The verification node's resident memory never passes this during the test (measured on Node 20, three
 * runs: 102 to 116 MB at start, a peak of 116 to 123 MB under every attack here).
 */
const RSS_BOUND_MB = 250;
const HONEST = "127.0.0.3";
const MONITOR = "127.0.0.2";

const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request on its own connection from loopback address `from`. */
function call(
  port: number,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: string; from?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: opts.method ?? "GET",
        path: opts.path,
        headers: opts.headers,
        localAddress: opts.from ?? HONEST,
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** A raw TCP connection from `from`: what it received and when the server closed it. */
function rawConnection(port: number, from: string) {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (d) => (received += d));
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  const connected = new Promise<void>((resolve) => socket.on("connect", () => resolve()));
  return { socket, connected, closed, received: () => received };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** VmRSS of `pid` in MB. */
function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A sample's value in Prometheus text (0 when absent). */
function sample(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

describe("node HTTP service under hostile requests (a real verification node)", function () {
  this.timeout(900_000);
  let network: Network;
  let node: Proc;
  let pid: number;
  let port: number;
  let plainDir: string;
  let modelId: bigint;
  let inputIndex = 0;
  let peakRss = 0;
  let restRss = 0;
  const health = { asked: 0, failures: [] as string[] };
  let monitoring = true;
  let monitor: Promise<void>;

  before(async function () {
    ensureCliBuilt();
    network = await startNetwork();
    plainDir = path.join(network.tmp, "iris-plain");
    await packagePlainModel(IRIS, plainDir);
    ({ modelId } = await publishModel(network, plainDir, FEE, { verificationModes: MODES.optimistic }));
    await stakeNode(network, 5, 1, STAKE);
    await stakeNode(network, 7, 2, STAKE);
    const { token, tasks } = network.deployment;
    const requester = account(1).connect(network.provider);
    await (
      await token.connect(network.deployer).transfer(requester.address, ethers.parseEther("100"))
    ).wait();
    await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
    node = startVerificationNode(network, 7, path.join(network.tmp, "verification"), {
      extra: [
        "--http-headers-timeout-ms",
        String(HEADERS_TIMEOUT_MS),
        "--http-request-timeout-ms",
        String(REQUEST_TIMEOUT_MS),
      ],
    });
    await waitForLog(node, "verification node started");
    port = node.logs().find((l) => l.msg === "metrics and health listening")!.port as number;
    pid = node.child.pid!;
    restRss = rssMb(pid);
    // The operator's monitor: /healthz from its own address, every 100 ms, for the whole test.
    monitor = (async () => {
      while (monitoring) {
        health.asked++;
        try {
          const r = await call(port, { path: "/healthz", from: MONITOR });
          if (r.status !== 200) health.failures.push(`HTTP ${r.status}: ${r.body}`);
        } catch (e) {
          health.failures.push((e as Error).message);
        }
        if (alive(pid)) peakRss = Math.max(peakRss, rssMb(pid));
        await sleep(100);
      }
    })();
  });

  after(async function () {
    monitoring = false;
    await monitor;
    await stopAllSpawned();
    await network?.stop();
  });

  /** An optimistic task submitted by a requester and claimed by inference node 5; its true output words. */
  async function claimedTask() {
    const { tasks } = network.deployment;
    const manifest = loadPlainManifest(plainDir);
    const q = quantizePlainInput(manifest, irisInputs[inputIndex++ % irisInputs.length]);
    const input = packValues(q, manifest.publicSignals.packBits);
    const expected = plainOutputWords(manifest, await runPlainBundle(plainDir, q));
    const now = (await network.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await tasks.connect(account(1).connect(network.provider)).submitTaskInMode(
        {
          modelId,
          input,
          inputDataHash: ethers.ZeroHash,
          fee: FEE,
          deadline: now + 3 * 3600,
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        },
        MODES.optimistic,
      )
    ).wait();
    const submitted = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
    await (
      await tasks.connect(account(5).connect(network.provider)).claimTask(submitted.taskId, submitted.task)
    ).wait();
    return { taskId: submitted.taskId, expected };
  }

  /** The inference node's own request: a signature by verification node 7 over the task's true outputs. */
  async function honestAttestation(task: { taskId: bigint; expected: bigint[] }) {
    const nodeAddress = account(5).address;
    const reply = await call(port, {
      method: "POST",
      path: "/attest",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        taskId: task.taskId.toString(),
        node: nodeAddress,
        outputs: task.expected.map(String),
      }),
    });
    expect(reply.status, reply.body).to.equal(200);
    const { signature } = JSON.parse(reply.body) as { signature: string };
    const digest = await network.deployment.tasks.attestationDigest(
      task.taskId,
      nodeAddress,
      outputsHash(task.expected),
    );
    expect(verifyMessage(getBytes(digest), signature)).to.equal(account(7).address);
  }

  async function metrics(): Promise<string> {
    return (await call(port, { path: "/metrics", from: MONITOR })).body;
  }

  /** The node is up, its health answered every time so far, and it still signs a real task's attestation. */
  async function stillServing() {
    expect(alive(pid), "the node process is alive").to.equal(true);
    expect(node.hasExited()).to.equal(false);
    expect(health.failures, "every /healthz answered 200").to.deep.equal([]);
    await honestAttestation(await claimedTask());
  }

  it("200 aborted POST /attest bodies (headers and half a body, then the socket destroyed): no exit", async function () {
    const task = await claimedTask();
    const attested = honestAttestation(task);
    const head =
      "POST /attest HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n";
    for (let batch = 0; batch < 20; batch++) {
      // Ten at a time, each batch from its own address (the rate limit is not what is tested here).
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          const c = rawConnection(port, `127.0.0.${20 + batch}`);
          await c.connected;
          await new Promise<void>((resolve) =>
            c.socket.write(head + '{"taskId":"1","node":', () => resolve()),
          );
          await sleep(20);
          c.socket.destroy();
        }),
      );
    }
    await attested;
    await waitFor("the node to count 200 aborted requests", async () => {
      return sample(await metrics(), "opg_http_refused_total", 'reason="aborted"') >= 200;
    });
    await stillServing();
  });

  it("slow heads and slow bodies are answered 408 and cut at the node's timeouts", async function () {
    const from = "127.0.0.50";
    const slowHeads = Array.from({ length: 10 }, () => rawConnection(port, from));
    const slowBodies = Array.from({ length: 10 }, () => rawConnection(port, from));
    await Promise.all([...slowHeads, ...slowBodies].map((c) => c.connected));
    for (const c of slowBodies) {
      c.socket.write(
        "POST /attest HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
      );
    }
    for (const c of slowHeads) c.socket.write("GET /healthz HTTP/1.1\r\n");
    // A byte every 100 ms on each: always something coming, never the whole request.
    let trickling = true;
    const trickle = (async () => {
      while (trickling) {
        for (const c of slowHeads) if (c.socket.writable) c.socket.write("x");
        for (const c of slowBodies) if (c.socket.writable) c.socket.write(" ");
        await sleep(100);
      }
    })();
    const attested = honestAttestation(await claimedTask());
    await Promise.all([...slowHeads, ...slowBodies].map((c) => c.closed));
    trickling = false;
    await trickle;
    await attested;
    for (const c of [...slowHeads, ...slowBodies]) {
      expect(c.received()).to.match(/^HTTP\/1\.1 408 /);
    }
    expect(sample(await metrics(), "opg_http_refused_total", 'reason="timeout"')).to.be.at.least(20);
    await stillServing();
  });

  it("oversized bodies (413, unread) and heads (431)", async function () {
    const from = "127.0.0.51";
    const declared = await call(port, {
      method: "POST",
      path: "/attest",
      headers: { "content-type": "application/json", "content-length": String(64 << 20) },
      from,
    }).catch((e: Error) => e);
    // Answered before any body is sent (or the connection closed on the unread body).
    if (!(declared instanceof Error)) expect(declared.status).to.equal(413);

    const chunked = rawConnection(port, from);
    await chunked.connected;
    chunked.socket.write(
      "POST /attest HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    const chunk = "x".repeat(16 * 1024);
    for (let i = 0; i < 64 && chunked.socket.writable; i++) {
      chunked.socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      await sleep(5);
    }
    await chunked.closed;
    expect(chunked.received()).to.match(/^HTTP\/1\.1 413 /);

    const body = JSON.stringify({ pad: "x".repeat(MAX_JSON_BODY_BYTES) });
    const big = await call(port, {
      method: "POST",
      path: "/attest",
      headers: { "content-type": "application/json" },
      body,
      from,
    });
    expect(big.status).to.equal(413);

    const head = rawConnection(port, from);
    await head.connected;
    head.socket.write(`GET /healthz HTTP/1.1\r\nHost: node\r\nX-Pad: ${"y".repeat(64 * 1024)}\r\n\r\n`);
    await head.closed;
    expect(head.received()).to.match(/^HTTP\/1\.1 431 /);
    await stillServing();
  });

  it("malformed JSON is a 400, another content type a 415, another method a 405 (no CORS preflight granted)", async function () {
    const from = "127.0.0.52";
    const post = (headers: Record<string, string>, body: string) =>
      call(port, { method: "POST", path: "/attest", headers, body, from });
    const notJson = await post({ "content-type": "application/json" }, "{not json");
    expect(notJson.status).to.equal(400);
    expect(JSON.parse(notJson.body).error).to.match(/JSON object/);
    const charset = await post({ "content-type": "application/json; charset=utf-8" }, "[]");
    expect(charset.status, "a JSON type with a charset is JSON").to.equal(400);
    for (const type of [
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]) {
      const r = await post({ "content-type": type }, '{"taskId":"1"}');
      expect(r.status, type).to.equal(415);
      expect(JSON.parse(r.body).error).to.equal("content-type must be application/json");
    }
    expect((await post({}, "{}")).status, "no content type").to.equal(415);
    const preflight = await call(port, {
      method: "OPTIONS",
      path: "/attest",
      headers: {
        origin: "https://evil.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
      from,
    });
    expect(preflight.status).to.equal(405);
    expect(preflight.headers).to.not.have.property("access-control-allow-origin");
    expect((await call(port, { path: "/attest", from })).status).to.equal(405);
    await stillServing();
  });

  it("300 connections from one address: at most the per-address cap held, the rest answered 429 and closed", async function () {
    const from = "127.0.0.53";
    const conns = Array.from({ length: 300 }, () => rawConnection(port, from));
    await Promise.all(conns.map((c) => c.connected.catch(() => undefined)));
    // Meanwhile the honest clients (other addresses) are served.
    await honestAttestation(await claimedTask());
    await Promise.all(conns.map((c) => c.closed));
    const refused = conns.filter((c) => /^HTTP\/1\.1 429 /.test(c.received()));
    const held = conns.length - refused.length;
    console.log(`      ${held} held, ${refused.length} answered 429`);
    expect(held, "connections held at once").to.be.at.most(PER_IP);
    expect(held).to.be.greaterThan(0);
    expect(refused[0].received()).to.match(/retry-after: 1/i);
    // The ones held were idle: cut at the headers timeout.
    for (const c of conns.filter((c) => !refused.includes(c)))
      expect(c.received()).to.match(/^HTTP\/1\.1 408 /);
    await stillServing();
  });

  it("bytes that are not HTTP are answered 400 and the connection closed", async function () {
    const from = "127.0.0.54";
    const garbage = Array.from({ length: 100 }, (_, i) => {
      const c = rawConnection(port, from);
      const bytes = Buffer.alloc(256, (i * 37 + 1) % 256);
      bytes.write("\u0000\u0001\r\n\r\n", i % 200);
      void c.connected.then(() => c.socket.write(bytes));
      return c;
    });
    // 100 from one address: the first 32 at once, then as earlier ones close.
    await Promise.all(garbage.map((c) => c.closed));
    const answered = garbage.filter((c) => /^HTTP\/1\.1 (400|429) /.test(c.received()));
    expect(answered.length, "each answered 400 (or 429 past the per-address cap)").to.equal(garbage.length);
    expect(sample(await metrics(), "opg_http_refused_total", 'reason="bad_request"')).to.be.at.least(32);
    await stillServing();
  });

  it("a POST flood from one address is answered 429 with retry-after past its burst", async function () {
    const from = "127.0.0.55";
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8, localAddress: from });
    const one = () =>
      new Promise<Reply>((resolve, reject) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            method: "POST",
            path: "/attest",
            headers: { "content-type": "application/json" },
            agent,
          },
          (res) => {
            let body = "";
            res.on("data", (d) => (body += d));
            res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
          },
        );
        req.on("error", reject);
        req.end("{}");
      });
    const replies = await Promise.all(Array.from({ length: 300 }, one));
    agent.destroy();
    const limited = replies.filter((r) => r.status === 429);
    expect(limited.length, "some refused").to.be.greaterThan(0);
    expect(Number(limited[0].headers["retry-after"])).to.be.at.least(1);
    expect(replies.filter((r) => r.status === 400).length, "the burst and refill served").to.be.at.least(
      BURST,
    );
    await stillServing();
  });

  it("stayed up throughout, under its memory bound, and stops cleanly", async function () {
    const text = await metrics();
    for (const reason of ["aborted", "timeout", "too_large", "headers_too_large", "content_type"]) {
      expect(sample(text, "opg_http_refused_total", `reason="${reason}"`), reason).to.be.greaterThan(0);
    }
    expect(
      sample(text, "opg_http_refused_total", 'reason="internal"'),
      "no failure of the node's own",
    ).to.equal(0);
    expect(health.failures).to.deep.equal([]);
    expect(health.asked).to.be.greaterThan(10);
    console.log(
      `      RSS ${restRss.toFixed(0)} MB at start, peak ${peakRss.toFixed(0)} MB over ${health.asked} health checks`,
    );
    expect(peakRss, "peak RSS (MB)").to.be.below(RSS_BOUND_MB);
    expect(node.logs().filter((l) => (l.level as number) >= 50)).to.deep.equal([]);
    monitoring = false;
    await monitor;
    expect(await node.stop()).to.equal(0);
  });
});

describe("ServiceHttp in process: failures of the node's own code", function () {
  /** A ServiceHttp whose log lines are kept. */
  async function serve() {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const service = new ServiceHttp(pino({ level: "info" }, sink));
    const port = await service.listen(0);
    return { service, port, lines };
  }

  it("a handler that throws is a 500 without detail and one error line with the stack; the port serves on", async function () {
    const { service, port, lines } = await serve();
    try {
      service.postJson("/boom", async () => {
        throw new Error("bug in /tmp/secret/path.ts");
      });
      service.setHealth(() => {
        throw new TypeError("health broke");
      });
      const post = await call(port, {
        method: "POST",
        path: "/boom",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      expect(post.status).to.equal(500);
      expect(JSON.parse(post.body)).to.deep.equal({ error: "internal error" });
      const healthz = await call(port, { path: "/healthz" });
      expect(healthz.status).to.equal(500);
      expect(healthz.body).to.not.contain("health broke");
      const errors = lines.filter((l) => l.msg === "request failed");
      expect(errors).to.have.length(2);
      expect((errors[0].err as { stack: string }).stack).to.contain("bug in /tmp/secret/path.ts");
      const metrics = await call(port, { path: "/metrics" });
      expect(sample(metrics.body, "opg_http_refused_total", 'reason="internal"')).to.equal(2);
    } finally {
      await service.close();
    }
  });

  it("renders /metrics at most once per METRICS_CACHE_MS, however many ask", async function () {
    const { service, port } = await serve();
    let collected = 0;
    new client.Gauge({
      name: "test_collections",
      help: "how often the registry was collected",
      registers: [service.registry],
      collect() {
        collected++;
        this.set(collected);
      },
    });
    try {
      const started = Date.now();
      const replies = await Promise.all(Array.from({ length: 50 }, () => call(port, { path: "/metrics" })));
      const elapsed = Date.now() - started;
      expect(replies.every((r) => r.status === 200)).to.equal(true);
      // However long the 50 took, they were served from at most one rendering per window.
      expect(collected).to.be.at.most(1 + Math.floor(elapsed / METRICS_CACHE_MS));
      expect(collected).to.be.at.least(1);
    } finally {
      await service.close();
    }
  });
});
