import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { freePort, ROOT, runToEnd, spawnProc, waitFor, type Proc } from "../../network/local-network";
import { ensureCliBuilt, ensureExplorerBuilt } from "../helpers/cli";

const CLI = path.join(ROOT, "bin", "opg.js");

/** Whether `port` can be bound on 127.0.0.1 (nothing listens there). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A free port whose next port is free too (the verification node's /metrics). */
async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port < 65_535 && (await portFree(port + 1))) return port;
  }
}

/** The value printed after `label` in the summary (`  RPC URL      http://...`). */
function field(out: string, label: string): string {
  const m = out.match(new RegExp(`^\\s+${label}\\s+(\\S+)`, "m"));
  if (!m) throw new Error(`no "${label}" line in the summary:\n${out}`);
  return m[1];
}

describe("opg dev (a persistent local development network, as a child process)", function () {
  this.timeout(900_000);
  let dev: Proc | undefined;
  let tmp: string;

  before(() => {
    ensureCliBuilt();
    ensureExplorerBuilt();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "opg-dev-"));
  });

  after(async () => {
    await dev?.stop("SIGKILL").catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("refuses to start, exit 1 with the reason, on a busy port or a state folder it did not make", async function () {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", () => resolve()));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r = await runToEnd([CLI, "dev", "--port", String(port), "--state-dir", path.join(tmp, "busy")]);
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.include(`port ${port} (the JSON-RPC port) is in use`);
      expect(r.stderr).to.include("--port");
    } finally {
      busy.close();
    }
    const mine = path.join(tmp, "not-opg-dev");
    fs.mkdirSync(mine);
    fs.writeFileSync(path.join(mine, "notes.txt"), "keep me");
    const r = await runToEnd([CLI, "dev", "--port", String(await freePort()), "--state-dir", mine]);
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stderr).to.include("was not made by `opg dev`");
    expect(fs.readFileSync(path.join(mine, "notes.txt"), "utf8")).to.equal("keep me");
  });

  it("stops everything, exit 1, when a child dies on its own", async function () {
    const ports = { rpc: await freePort(), data: await freePort() };
    const stateDir = path.join(tmp, "crash");
    const proc = spawnProc("opg-dev-crash", [
      CLI,
      "dev",
      "--port",
      String(ports.rpc),
      "--data-port",
      String(ports.data),
      "--deployment",
      path.join(tmp, "crash.json"),
      "--state-dir",
      stateDir,
      "--no-model",
      "--no-nodes",
    ]);
    await waitFor(
      "opg dev to be ready",
      async () => proc.output.some((l) => l.startsWith("ready:")),
      600_000,
      500,
      proc,
    );
    const { processes } = JSON.parse(fs.readFileSync(path.join(stateDir, "network.json"), "utf8"));
    expect(processes).to.have.keys("hardhat", "data");
    process.kill(processes.data, "SIGKILL");
    const code = await proc.exited;
    expect(code, proc.output.join("\n")).to.equal(1);
    expect(proc.output.join("\n")).to.match(/error: data exited \(signal SIGKILL\)/);
    expect(await portFree(ports.rpc), "the chain is stopped too").to.equal(true);
  });

  it("comes up, serves a task submitted with the printed dapp key, and stops cleanly on SIGINT", async function () {
    const ports = {
      rpc: await freePort(),
      data: await freePort(),
      metrics: await freePortPair(),
      explorer: await freePort(),
    };
    const deployment = path.join(tmp, "localhost.json");
    dev = spawnProc("opg-dev", [
      CLI,
      "dev",
      "--port",
      String(ports.rpc),
      "--data-port",
      String(ports.data),
      "--metrics-port",
      String(ports.metrics),
      "--deployment",
      deployment,
      "--state-dir",
      path.join(tmp, "state"),
      "--explorer-port",
      String(ports.explorer),
      // The iris MLP compiles in about a second: the test is about the network, not the compiler.
      "--model-onnx",
      "test/fixtures/models/iris_mlp.onnx",
    ]);
    const proc = dev;
    await waitFor(
      "opg dev to print its ready line",
      async () => proc.output.some((l) => l.startsWith("ready:")),
      600_000,
      500,
      proc,
    );
    const out = proc.output.join("\n");

    const rpcUrl = field(out, "RPC URL");
    expect(rpcUrl).to.equal(`http://127.0.0.1:${ports.rpc}`);
    // The explorer page, pointed at this network.
    const explorer = field(out, "explorer").split(" ")[0];
    expect(explorer).to.equal(`http://127.0.0.1:${ports.explorer}/`);
    const explorerConfig = await (await fetch(`${explorer}config.json`)).json();
    expect(explorerConfig).to.deep.include({
      rpc: rpcUrl,
      data: `http://127.0.0.1:${ports.data}`,
      chainId: 31337,
    });
    expect(out).to.match(/chain id 31337/);
    expect(field(out, "data node")).to.equal(`http://127.0.0.1:${ports.data}`);
    expect(JSON.parse(fs.readFileSync(deployment, "utf8"))).to.include.keys("chainId", "token", "tasks");
    expect(out).to.include("public development keys");
    expect(out).to.match(/#1 inference operator/);
    expect(out).to.match(/#2 verification operator/);

    // The printed next commands, each run as printed (npx opg -> node bin/opg.js), in order.
    const next = proc.output.slice(proc.output.indexOf("Next:") + 1);
    const commands = next
      .slice(
        0,
        next.findIndex((l) => l.trim() === ""),
      )
      .map((l) => l.trim());
    expect(commands[0], out).to.match(/^OPG_PRIVATE_KEY=0x[0-9a-f]{64} npx opg task submit /);
    const dappKey = out.match(/#3 dapp[^\n]*\n[^\n]*\n\s+private key (0x[0-9a-f]{64})/)![1];
    expect(commands[0]).to.include(dappKey);
    const summary = JSON.parse(fs.readFileSync(path.join(tmp, "state", "network.json"), "utf8"));
    expect(summary).to.deep.include({ rpcUrl, chainId: 31337, deployment });
    expect(summary.accounts[3]).to.deep.include({ index: 3, privateKey: dappKey });
    expect(summary.model.id).to.equal("1");
    const ran: { command: string; stdout: string }[] = [];
    for (const command of commands) {
      const [, key, args] = command.match(/^(?:OPG_PRIVATE_KEY=(0x[0-9a-f]{64}) )?npx opg (.*)$/)!;
      const r = await runToEnd([CLI, ...args.split(/\s+/)], key ? { OPG_PRIVATE_KEY: key } : {}, 400_000);
      expect(r.code, `${command}\n${r.stdout}\n${r.stderr}`).to.equal(0);
      ran.push({ command, stdout: r.stdout });
    }
    const result = JSON.parse(ran[0].stdout) as { taskId: string; argmax: number; output: number[] };
    expect(result.output).to.have.length(3);
    expect(ran.find((r) => / task audit /.test(r.command))?.stdout).to.match(/"agree": true/);

    const conn = [
      "--rpc-url",
      rpcUrl,
      "--deployment",
      deployment,
      "--data-url",
      `http://127.0.0.1:${ports.data}`,
    ];
    const status = await runToEnd([CLI, "task", "result", result.taskId, ...conn]);
    expect(status.code, status.stderr).to.equal(0);
    expect(JSON.parse(status.stdout).status).to.equal("Verified");

    // Ctrl-C: every child stopped, exit 0, every port free again.
    const code = await proc.stop("SIGINT", 120_000);
    expect(code, proc.output.slice(-20).join("\n")).to.equal(0);
    expect(proc.output.at(-1)).to.equal("stopped");
    for (const port of [ports.rpc, ports.data, ports.metrics, ports.metrics + 1, ports.explorer]) {
      expect(await portFree(port), `port ${port} still in use`).to.equal(true);
    }
  });
});
