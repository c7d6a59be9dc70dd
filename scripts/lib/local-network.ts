import { execFile, spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { HDNodeWallet, JsonRpcProvider, NonceManager, type Signer } from "ethers";
import { DEFAULT_ECONOMY_PARAMS, deployProtocol, deploymentAddresses } from "./deploy";
import { registerBundle } from "./register-model";
import { compileModel } from "../../zkml";
import { packBundle, bundleArchiveId } from "../../workers/data/bundle-archive";
import { DataClient } from "../../workers/data/client";

/**
 * A local network for end-to-end tests, benchmarks and demos: a real `hardhat node` child process, the protocol deployed on it, a data node child
 * process, fixture models compiled into bundles (cached by ONNX hash and options), and worker nodes as real
 * `opg node ...` child processes with their own state directories.
 */
export const ROOT = path.join(__dirname, "..", "..");
const CLI = path.join(ROOT, "bin", "opg.js");
const HARDHAT_CLI = require.resolve("hardhat/internal/cli/cli.js");
const MNEMONIC = "test test test test test test test test test test test junk";

export function account(index: number): HDNodeWallet {
  return HDNodeWallet.fromPhrase(MNEMONIC, undefined, `m/44'/60'/0'/0/${index}`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 120_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      lastError = e;
    }
    await sleep(everyMs);
  }
  throw new Error(
    `timed out waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ""}`,
  );
}

/** A child process whose output is kept (and printed when OPG_E2E_VERBOSE is set). */
export class Proc {
  readonly output: string[] = [];
  exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        this.output.push(line);
        if (process.env.OPG_E2E_VERBOSE) console.log(`[${name}] ${line}`);
      }
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }

  /** JSON log lines (pino) emitted so far. */
  logs(): Record<string, unknown>[] {
    return this.output.flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
  }

  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 20_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const code = await Promise.race([this.exited, sleep(timeoutMs).then(() => "timeout" as const)]);
    if (code === "timeout") {
      this.child.kill("SIGKILL");
      throw new Error(`${this.name} did not stop within ${timeoutMs} ms of ${signal}`);
    }
    return code;
  }
}

export function spawnProc(name: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, OPG_LOG_LEVEL: process.env.OPG_LOG_LEVEL ?? "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Proc(name, child);
}

/** Run a Node script to its end (in the repo root); resolves with its exit code and both streams. */
export function runToEnd(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        // A process killed by the timeout has no numeric exit code: count it as a failure.
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export async function startHardhatNode(): Promise<{ proc: Proc; url: string }> {
  const port = await freePort();
  const proc = spawnProc("hardhat", [HARDHAT_CLI, "node", "--port", String(port), "--hostname", "127.0.0.1"]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    "hardhat node",
    async () => {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      });
      return res.ok;
    },
    60_000,
    250,
  );
  return { proc, url };
}

export async function startDataNode(dir: string): Promise<{ proc: Proc; url: string }> {
  const port = await freePort();
  const proc = spawnProc("data", [CLI, "node", "data", "--port", String(port), "--dir", dir]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor("data node", async () => (await fetch(`${url}/healthz`)).ok, 30_000);
  return { proc, url };
}

/** Compile a fixture model once per (file, options), cached under .opg/cache/e2e-bundles. */
export async function fixtureBundle(
  onnxRel: string,
  opts: { inputMode?: "inline" | "commitment"; inputBits?: number } = {},
): Promise<string> {
  const onnx = path.join(ROOT, onnxRel);
  const key = crypto
    .createHash("sha256")
    .update(fs.readFileSync(onnx))
    .update(JSON.stringify(opts))
    .digest("hex")
    .slice(0, 16);
  const dir = path.join(ROOT, ".opg", "cache", "e2e-bundles", `${path.basename(onnx, ".onnx")}-${key}`);
  if (!fs.existsSync(path.join(dir, "manifest.json"))) {
    fs.rmSync(dir, { recursive: true, force: true });
    await compileModel(onnx, dir, {
      inputMode: opts.inputMode ?? "inline",
      inputBits: opts.inputBits,
      log: () => undefined,
    });
  }
  return dir;
}

export interface Network {
  chain: { proc: Proc; url: string };
  data: { proc: Proc; url: string; dir: string };
  provider: JsonRpcProvider;
  deployer: Signer;
  deployment: Awaited<ReturnType<typeof deployProtocol>>;
  deploymentFile: string;
  tmp: string;
  stop(): Promise<void>;
}

/** Chain + protocol + data node. Every node operator key gets OPG, registers for `roles` and stakes. */
export async function startNetwork(): Promise<Network> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "opg-e2e-"));
  const chain = await startHardhatNode();
  // No response cache: consecutive transactions from one key must see fresh nonces.
  const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
  const deployer = new NonceManager(account(0).connect(provider));
  const deployment = await deployProtocol(deployer, {
    ...DEFAULT_ECONOMY_PARAMS,
    treasury: await deployer.getAddress(),
  });
  const deploymentFile = path.join(tmp, "deployment.json");
  const { chainId } = await provider.getNetwork();
  fs.writeFileSync(
    deploymentFile,
    JSON.stringify({ chainId: Number(chainId), ...(await deploymentAddresses(deployment)) }),
  );
  const dataDir = path.join(tmp, "data");
  const data = await startDataNode(dataDir);
  return {
    chain,
    data: { ...data, dir: dataDir },
    provider,
    deployer,
    deployment,
    deploymentFile,
    tmp,
    async stop() {
      await data.proc.stop().catch(() => undefined);
      await chain.proc.stop().catch(() => undefined);
      provider.destroy();
    },
  };
}

/** Upload a bundle to the data node and register it on chain; returns the model id and the bundle id. */
export async function publishModel(net: Network, bundleDir: string, fee: bigint) {
  const archive = packBundle(bundleDir);
  const bundleId = bundleArchiveId(archive);
  const stored = await new DataClient(net.data.url).put(archive);
  if (stored !== bundleId) throw new Error(`data node stored ${stored}, expected ${bundleId}`);
  const { modelId } = await registerBundle(net.deployer, net.deployment.models, bundleDir, { bundleId, fee });
  return { modelId, bundleId };
}

/** Fund, register and stake node operator `index` for the inference role (1) and/or verification (2). */
export async function stakeNode(net: Network, index: number, roles = 1, amount = 5_000n * 10n ** 18n) {
  const wallet = account(index).connect(net.provider);
  const { token, staking } = net.deployment;
  await (await token.connect(net.deployer).transfer(wallet.address, amount)).wait();
  await (await token.connect(wallet).approve(await staking.getAddress(), amount)).wait();
  await (await staking.connect(wallet).register(roles, `http://node-${index}.local`)).wait();
  await (await staking.connect(wallet).stake(amount)).wait();
  return wallet;
}

export function startInferenceNode(
  net: Network,
  index: number,
  stateDir: string,
  opts: { extra?: string[]; rpcUrl?: string; env?: Record<string, string> } = {},
): Proc {
  return spawnProc(
    `inference-${index}`,
    [
      CLI,
      "node",
      "inference",
      "--rpc-url",
      opts.rpcUrl ?? net.chain.url,
      "--deployment",
      net.deploymentFile,
      "--data-url",
      net.data.url,
      "--state-dir",
      stateDir,
      "--metrics-port",
      "0",
      "--confirmations",
      "0",
      "--poll-interval-ms",
      "150",
      ...(opts.extra ?? []),
    ],
    { OPG_PRIVATE_KEY: account(index).privateKey, ...(opts.env ?? {}) },
  );
}

export function startVerificationNode(net: Network, index: number, stateDir: string): Proc {
  return spawnProc(
    `verification-${index}`,
    [
      CLI,
      "node",
      "verification",
      "--rpc-url",
      net.chain.url,
      "--deployment",
      net.deploymentFile,
      "--data-url",
      net.data.url,
      "--state-dir",
      stateDir,
      "--metrics-port",
      "0",
      "--confirmations",
      "0",
      "--poll-interval-ms",
      "150",
    ],
    { OPG_PRIVATE_KEY: account(index).privateKey },
  );
}
