import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { expect } from "chai";
import { startExplorer, type RunningExplorer } from "../../sdk/explorer-server";
import { ensureCliBuilt, ensureExplorerBuilt, hasStackTrace, OPG_BIN, ROOT, runOpg } from "../helpers/cli";

const DEPLOYMENT = {
  chainId: 31337,
  token: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  staking: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
  models: "0x0165878A594ca255338adfa4d48449f69242Eb8F",
  tasks: "0xa513E6E4b8f2a923D98304ec87F64353C4D5C853",
};

/** A JSON-RPC endpoint that answers eth_chainId only: enough for the CLI's start-up check. */
function chainIdServer(chainId: number): Promise<{ url: string; close(): void }> {
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const { id } = JSON.parse(body) as { id: number };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id, result: `0x${chainId.toString(16)}` }));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        close: () => server.close(),
      }),
    ),
  );
}

describe("opg explorer: the page's server", function () {
  this.timeout(300_000);
  let running: RunningExplorer;

  before(async function () {
    ensureExplorerBuilt();
    running = await startExplorer({
      rpc: "http://127.0.0.1:8545",
      data: "http://127.0.0.1:8600/",
      deployment: DEPLOYMENT,
      metrics: ["http://127.0.0.1:9464/metrics"],
      port: 0,
    });
  });
  after(async () => running?.close());

  it("serves the built page, its hashed assets and a config naming the RPC, data node and contracts", async function () {
    const index = await fetch(running.url);
    expect(index.status).to.equal(200);
    expect(index.headers.get("content-type")).to.match(/^text\/html/);
    const html = await index.text();
    const assets = [...html.matchAll(/(?:src|href)="\.\/(assets\/[^"]+)"/g)].map((m) => m[1]);
    expect(assets.some((a) => a.endsWith(".js"))).to.equal(true);
    // nothing from elsewhere: every script and stylesheet is served by this server
    expect(html).to.not.match(/(?:src|href)="https?:/);
    for (const a of assets) {
      const r = await fetch(running.url + a);
      expect(r.status, a).to.equal(200);
      expect(r.headers.get("cache-control")).to.include("immutable");
    }
    const config = (await (await fetch(running.url + "config.json")).json()) as {
      contracts: { tasks: string };
      metrics: string[];
    };
    expect(config).to.deep.include({
      rpc: "http://127.0.0.1:8545",
      data: "http://127.0.0.1:8600",
      chainId: 31337,
    });
    expect(config.contracts.tasks).to.equal(DEPLOYMENT.tasks);
    expect(config.metrics).to.deep.equal(["http://127.0.0.1:9464/metrics"]);
  });

  it("allows scripts from itself only (CSP), answers reads only, and serves nothing outside the page's folder", async function () {
    const index = await fetch(running.url);
    const csp = index.headers.get("content-security-policy")!;
    expect(csp).to.include("script-src 'self'");
    expect(csp).to.include("object-src 'none'");
    expect((await fetch(running.url, { method: "POST", body: "x" })).status).to.equal(405);
    expect((await fetch(running.url, { method: "HEAD" })).status).to.equal(200);
    expect((await fetch(running.url + "nope.js")).status).to.equal(404);
    // a path that climbs out of dist/explorer (raw, not normalised by fetch)
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port: running.port, path: "/../../package.json" },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(status).to.equal(404);
    const encoded = await fetch(`${running.url}%2e%2e/%2e%2e/package.json`);
    expect(encoded.status).to.equal(404);
    // a malformed escape is a 400, and the server goes on serving
    expect((await fetch(`${running.url}%E0%A4%A`)).status).to.equal(400);
    expect((await fetch(running.url)).status).to.equal(200);
  });

  it("may not be framed by another site: frame-ancestors 'none' and X-Frame-Options DENY, errors included", async function () {
    for (const url of [running.url, running.url + "config.json", running.url + "nope.js"]) {
      const res = await fetch(url);
      await res.body?.cancel();
      expect(res.headers.get("content-security-policy"), url).to.include("frame-ancestors 'none'");
      expect(res.headers.get("x-frame-options"), url).to.equal("DENY");
    }
  });

  it("tells the page to read nodes' registered endpoints unless turned off", async function () {
    const config = (await (await fetch(running.url + "config.json")).json()) as { nodeMetrics: boolean };
    expect(config.nodeMetrics).to.equal(true);
    const off = await startExplorer({
      rpc: "http://127.0.0.1:8545",
      data: "http://127.0.0.1:8600",
      deployment: DEPLOYMENT,
      nodeMetrics: false,
      port: 0,
    });
    try {
      expect(
        ((await (await fetch(off.url + "config.json")).json()) as { nodeMetrics: boolean }).nodeMetrics,
      ).to.equal(false);
    } finally {
      await off.close();
    }
  });

  describe("the opg explorer command", function () {
    let tmp: string;
    before(function () {
      ensureCliBuilt();
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), "opg-explorer-"));
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it("serves until SIGINT, printing its URL, after checking the RPC's chain id", async function () {
      const rpc = await chainIdServer(31337);
      const file = path.join(tmp, "deployment.json");
      fs.writeFileSync(file, JSON.stringify(DEPLOYMENT));
      const child = spawn(
        process.execPath,
        [
          OPG_BIN,
          "explorer",
          "--rpc-url",
          rpc.url,
          "--deployment",
          file,
          "--data-url",
          "http://127.0.0.1:1",
          "--port",
          "0",
        ],
        { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
      try {
        while (!/explorer: (http\S+)/.test(out)) {
          if (child.exitCode !== null) throw new Error(`opg explorer exited: ${out}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        const url = /explorer: (http\S+)/.exec(out)![1];
        expect(out).to.include("chain 31337");
        const config = (await (await fetch(url + "config.json")).json()) as { rpc: string };
        expect(config.rpc).to.equal(rpc.url);
        expect((await fetch(url)).status).to.equal(200);
      } finally {
        child.kill("SIGINT");
        rpc.close();
      }
      expect(await exited).to.equal(0);
    });

    it("survives aborted, cut-off, slow and non-HTTP requests: answered or closed, never an exit", async function () {
      const rpc = await chainIdServer(31337);
      const file = path.join(tmp, "deployment.json");
      fs.writeFileSync(file, JSON.stringify(DEPLOYMENT));
      const child = spawn(
        process.execPath,
        [OPG_BIN, "explorer", "--rpc-url", rpc.url, "--deployment", file, "--port", "0", "--no-node-metrics"],
        { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
      /** A raw connection to the server: what it received, and a promise of its closing. */
      const raw = (port: number) => {
        const socket = net.connect(port, "127.0.0.1");
        let received = "";
        socket.on("data", (d) => (received += d));
        socket.on("error", () => undefined);
        const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
        const connected = new Promise<void>((resolve) => socket.on("connect", () => resolve()));
        return { socket, closed, connected, received: () => received };
      };
      try {
        while (!/explorer: (http\S+)/.test(out)) {
          if (child.exitCode !== null) throw new Error(`opg explorer exited: ${out}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        const url = /explorer: (http\S+)/.exec(out)![1];
        const port = Number(new URL(url).port);
        const config = (await (await fetch(url + "config.json")).json()) as { nodeMetrics: boolean };
        expect(config.nodeMetrics, "--no-node-metrics").to.equal(false);
        const html = await (await fetch(url)).text();
        const asset = /src="\.\/(assets\/[^"]+\.js)"/.exec(html)![1];
        // Heads cut off halfway, and downloads of the page's script dropped after their first bytes.
        for (let i = 0; i < 50; i++) {
          const half = raw(port);
          await half.connected;
          half.socket.write("GET /index.html HTTP/1.1\r\nHost: x\r\n");
          const dropped = raw(port);
          await dropped.connected;
          dropped.socket.write(`GET /${asset} HTTP/1.1\r\nHost: x\r\n\r\n`);
          await new Promise<void>((resolve) => dropped.socket.once("data", () => resolve()));
          half.socket.destroy();
          dropped.socket.destroy();
        }
        const garbage = raw(port);
        await garbage.connected;
        garbage.socket.write(Buffer.from([0, 1, 2, 3, 255, 13, 10, 13, 10]));
        await garbage.closed;
        expect(garbage.received()).to.match(/^HTTP\/1\.1 400 /);
        // A head never finished: answered 408 and closed at the server's headers timeout.
        const slow = raw(port);
        await slow.connected;
        slow.socket.write("GET / HTTP/1.1\r\n");
        await slow.closed;
        expect(slow.received()).to.match(/^HTTP\/1\.1 408 /);
        expect(child.exitCode, out).to.equal(null);
        expect((await fetch(url)).status).to.equal(200);
        expect((await fetch(url + "healthz")).status).to.equal(200);
      } finally {
        child.kill("SIGINT");
        rpc.close();
      }
      expect(await exited, out).to.equal(0);
    });

    it("refuses an RPC that serves another chain than the deployment's, in one line", async function () {
      const rpc = await chainIdServer(1);
      const file = path.join(tmp, "deployment.json");
      fs.writeFileSync(file, JSON.stringify(DEPLOYMENT));
      try {
        const r = await runOpg(["explorer", "--rpc-url", rpc.url, "--deployment", file, "--port", "0"]);
        expect(r.code).to.equal(1);
        expect(r.stderr.trim()).to.match(/serves chain 1, the deployment file .* is for chain 31337$/);
        expect(hasStackTrace(r.stderr)).to.equal(false);
      } finally {
        rpc.close();
      }
    });

    it("names a port in use", async function () {
      const rpc = await chainIdServer(31337);
      const file = path.join(tmp, "deployment.json");
      fs.writeFileSync(file, JSON.stringify(DEPLOYMENT));
      try {
        const r = await runOpg([
          "explorer",
          "--rpc-url",
          rpc.url,
          "--deployment",
          file,
          "--port",
          String(running.port),
        ]);
        expect(r.code).to.equal(1);
        expect(r.stderr.trim()).to.equal(
          `error: port ${running.port} on 127.0.0.1 is in use: choose another with --port (0: any free port)`,
        );
      } finally {
        rpc.close();
      }
    });

    it("names a bad port and a missing deployment file", async function () {
      const bad = await runOpg(["explorer", "--port", "99999"]);
      expect(bad.code).to.equal(1);
      expect(bad.stderr).to.match(/--port 99999 is not a port/);
      const missing = await runOpg(["explorer", "--deployment", path.join(tmp, "none.json"), "--port", "0"]);
      expect(missing.code).to.equal(1);
      expect(missing.stderr).to.match(/deployment file .*none\.json/);
      expect(hasStackTrace(missing.stderr)).to.equal(false);
    });
  });
});
