import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { HDNodeWallet, JsonRpcProvider, NonceManager, type Signer } from "ethers";
import { DEFAULT_ECONOMY_PARAMS, deployProtocol, deploymentAddresses } from "./deploy";
import { LOCAL_TEE_SETTINGS } from "./deploy-settings";
import { bundleKeyWords, bundleModelSpec, registerBundle } from "./register-model";
import { compileModel, loadManifest, type BundleManifest } from "../zkml";
import { bundleKind, loadPlainManifest } from "../zkml/plain-bundle";
import { packBundle, bundleArchiveId } from "../workers/data/bundle-archive";
import { DataClient } from "../workers/data/client";

/**
 * A local network for end-to-end tests, benchmarks and demos: a real `hardhat node` child process, the protocol deployed on it, a data node child
 * process, fixture models compiled into bundles (cached by ONNX hash and options), and worker nodes as real
 * `opg node ...` child processes with their own state directories.
 */
export const ROOT = projectRoot(__dirname);
const CLI = path.join(ROOT, "bin", "opg.js");

/**
 * The repository root: the first folder above `from` with both package.json and hardhat.config.ts, so
 * that this module finds bin/opg.js and the hardhat config whether it runs from network/ (ts-node) or
 * from its compiled copy under dist/.
 */
function projectRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "package.json")) && fs.existsSync(path.join(dir, "hardhat.config.ts")))
      return dir;
    if (path.dirname(dir) === dir)
      throw new Error(`no project root (package.json + hardhat.config.ts) above ${from}`);
  }
}
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

/** Bounds of the readiness waits: minutes, not seconds, since a loaded 2-core machine starts things slowly. */
export const READY_TIMEOUT_MS = 300_000;

/**
 * Poll `fn` until it returns a value (not undefined or false), at most `timeoutMs`. The error on timeout
 * says what was waited for, for how long, the last error `fn` threw and, when `proc` is given, how that
 * process ended (a process that exits while waited for fails the wait at once) and its last output lines.
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = READY_TIMEOUT_MS,
  everyMs = 200,
  proc?: Proc,
): Promise<T> {
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      lastError = e;
    }
    const exited = proc?.hasExited();
    if (exited || Date.now() - started > timeoutMs) {
      const why = exited
        ? `${proc!.name} exited (${proc!.exitDescription()}) while waiting for ${what}`
        : `timed out after ${((Date.now() - started) / 1000).toFixed(0)} s waiting for ${what}`;
      const last = lastError ? ` (last error: ${(lastError as Error).message})` : "";
      const tail = proc ? `\n${proc.name}'s last output:\n  ${proc.output.slice(-15).join("\n  ")}` : "";
      throw new Error(`${why}${last}${tail}`);
    }
    await sleep(everyMs);
  }
}

/**
 * Every process spawned here that may still be running. Each is the leader of its own process group
 * (spawned detached), so a kill reaches what it spawned too (an inference node's provers).
 */
const live = new Set<Proc>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** SIGKILL every process group spawned here that is still running (synchronous: safe in an 'exit' handler). */
export function killAllSpawned() {
  for (const p of live) killGroup(p.child, "SIGKILL");
  live.clear();
}

let exitHooksInstalled = false;
let exitOnSignal = true;

/**
 * Leave SIGINT/SIGTERM/SIGHUP to the caller (a long-running `opg dev` stops its children gently and exits
 * 0); the harness still SIGKILLs whatever is left when the process exits.
 */
export function leaveSignalsToCaller() {
  exitOnSignal = false;
}

/**
 * When this process ends (normally, by an uncaught error, or by SIGINT/SIGTERM/SIGHUP), take every spawned
 * process group with it: a failed test or an interrupted demo must not leave a hardhat node or a data node
 * running. Children also watch for their parent on their own (exit-with-parent.js), for a parent that is
 * SIGKILLed.
 */
function installExitHooks() {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", killAllSpawned);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      if (!exitOnSignal) return;
      killAllSpawned();
      process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
    });
  }
}

/** What a spawned process's output lines are kept for. */
export interface OutputOptions {
  /** Keep only the last `keepLines` lines in `output` (a long-running process; default: all). */
  keepLines?: number;
  /** Called with every output line (a log file, a terminal). */
  onLine?: (line: string) => void;
}

/** A child process whose output is kept (and printed when OPG_E2E_VERBOSE is set). */
export class Proc {
  readonly output: string[] = [];
  exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    opts: OutputOptions = {},
  ) {
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        this.output.push(line);
        if (opts.keepLines !== undefined && this.output.length > opts.keepLines) this.output.shift();
        opts.onLine?.(line);
        if (process.env.OPG_E2E_VERBOSE) console.log(`[${name}] ${line}`);
      }
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    live.add(this);
    this.exited = new Promise((resolve) =>
      child.on("exit", (code) => {
        // The leader is gone; anything it left in its group goes with it.
        if (child.pid !== undefined) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {
            // Nothing left in the group.
          }
        }
        live.delete(this);
        resolve(code);
      }),
    );
  }

  hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  exitDescription(): string {
    return this.child.signalCode ? `signal ${this.child.signalCode}` : `exit code ${this.child.exitCode}`;
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

  /**
   * Send `signal` to the process group and wait for the process to exit; after `timeoutMs` SIGKILL the
   * group and fail, naming the process.
   */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 30_000): Promise<number | null> {
    if (this.hasExited()) return this.child.exitCode;
    killGroup(this.child, signal);
    const code = await Promise.race([this.exited, sleep(timeoutMs).then(() => "timeout" as const)]);
    if (code === "timeout") {
      killGroup(this.child, "SIGKILL");
      await this.exited;
      throw new Error(`${this.name} did not stop within ${timeoutMs} ms of ${signal}`);
    }
    return code;
  }
}

// A plain JavaScript file next to this module: in the sources, and in dist/network, where cli/copy-assets.js
// copies it (tsc does not emit it).
const EXIT_WITH_PARENT = path.join(__dirname, "exit-with-parent.js");

export function spawnProc(
  name: string,
  args: string[],
  env: Record<string, string> = {},
  output: OutputOptions = {},
): Proc {
  installExitHooks();
  const child = spawn(process.execPath, ["-r", EXIT_WITH_PARENT, ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      OPG_LOG_LEVEL: process.env.OPG_LOG_LEVEL ?? "info",
      ...env,
      OPG_EXIT_WITH_PARENT: String(process.pid),
    },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so that stopping it stops what it spawned.
    detached: true,
  });
  return new Proc(name, child, output);
}

/** Stop every process this harness spawned that is still running: SIGTERM, then SIGKILL after a grace period. */
export async function stopAllSpawned(graceMs = 10_000) {
  await Promise.all([...live].map((p) => p.stop("SIGTERM", graceMs).catch(() => undefined)));
}

/**
 * Run a Node script to its end (in the repo root, in its own process group); resolves with its exit code
 * and both streams. Past `timeoutMs` the whole group is killed (what the script spawned included) and the
 * code is 124, as timeout(1) reports it.
 */
export function runToEnd(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = READY_TIMEOUT_MS,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = args.find((a) => /\.[jt]s$/.test(a) && !a.includes("node_modules")) ?? args[0];
  const proc = spawnProc(path.basename(script), args, env);
  let stdout = "";
  let stderr = "";
  proc.child.stdout!.on("data", (c: Buffer) => (stdout += c.toString()));
  proc.child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(proc.child, "SIGTERM");
    setTimeout(() => killGroup(proc.child, "SIGKILL"), 10_000).unref();
  }, timeoutMs);
  return proc.exited.then((code) => {
    clearTimeout(timer);
    if (timedOut) return { code: 124, stdout, stderr: `${stderr}\n(killed after ${timeoutMs} ms)` };
    // A process killed by a signal has no numeric exit code: count it as a failure.
    return { code: code ?? 1, stdout, stderr };
  });
}

/** Where and how a harness process listens: a fixed port (default: a free one) and its output handling. */
export interface ListenOptions {
  port?: number;
  output?: OutputOptions;
}

/** Resolves when `url` answers eth_chainId; fails early when `proc` exits first. */
export async function waitForRpc(url: string, proc?: Proc, timeoutMs = READY_TIMEOUT_MS) {
  await waitFor(
    `the JSON-RPC endpoint ${url} to answer eth_chainId`,
    async () => {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      });
      return res.ok;
    },
    timeoutMs,
    250,
    proc,
  );
}

export async function startHardhatNode(opts: ListenOptions = {}): Promise<{ proc: Proc; url: string }> {
  const port = opts.port ?? (await freePort());
  const proc = spawnProc(
    "hardhat",
    [HARDHAT_CLI, "node", "--port", String(port), "--hostname", "127.0.0.1"],
    {},
    opts.output,
  );
  const url = `http://127.0.0.1:${port}`;
  await waitForRpc(url, proc);
  return { proc, url };
}

export async function startDataNode(
  dir: string,
  opts: ListenOptions = {},
): Promise<{ proc: Proc; url: string }> {
  const port = opts.port ?? (await freePort());
  const proc = spawnProc(
    "data",
    [CLI, "node", "data", "--port", String(port), "--dir", dir],
    {},
    opts.output,
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `the data node to answer ${url}/healthz`,
    async () => (await fetch(`${url}/healthz`)).ok,
    READY_TIMEOUT_MS,
    250,
    proc,
  );
  return { proc, url };
}

/** Wait until a node process logs `message` (its start line, say), failing early if it exits. */
export async function waitForLog(proc: Proc, message: string, timeoutMs = READY_TIMEOUT_MS) {
  await waitFor(
    `${proc.name} to log "${message}"`,
    async () => proc.logs().some((l) => l.msg === message),
    timeoutMs,
    200,
    proc,
  );
}

/**
 * Compile a model (a path relative to the repository root, or absolute) once per (file, options), cached
 * under e2e-bundles in the cache folder (OPG_CACHE_DIR, else .opg/cache, as the development ptau). `log` is
 * told the compiler's progress.
 */
export async function fixtureBundle(
  onnxRel: string,
  opts: {
    inputMode?: "inline" | "commitment";
    inputBits?: number;
    scaleBits?: number;
    packBits?: number;
    activationBits?: number;
  } = {},
  log: (message: string) => void = () => undefined,
): Promise<string> {
  const onnx = path.resolve(ROOT, onnxRel);
  const key = crypto
    .createHash("sha256")
    .update(fs.readFileSync(onnx))
    .update(JSON.stringify(opts))
    .digest("hex")
    .slice(0, 16);
  const cache = process.env.OPG_CACHE_DIR ?? path.join(ROOT, ".opg", "cache");
  const dir = path.join(cache, "e2e-bundles", `${path.basename(onnx, ".onnx")}-${key}`);
  if (!fs.existsSync(path.join(dir, "manifest.json"))) {
    fs.rmSync(dir, { recursive: true, force: true });
    await compileModel(onnx, dir, {
      inputMode: opts.inputMode ?? "inline",
      inputBits: opts.inputBits,
      scaleBits: opts.scaleBits,
      packBits: opts.packBits,
      activationBits: opts.activationBits,
      log,
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

/** Where `startNetwork` puts things; each defaults to a fresh temporary folder or a free port. */
export interface NetworkOptions {
  /** Working folder (deployment file, data node store, node state); default: a new temporary folder. */
  dir?: string;
  /** Where the deployment file is written (default: `<dir>/deployment.json`). */
  deploymentFile?: string;
  chain?: ListenOptions;
  data?: ListenOptions;
  /** Told each stage as it starts (a progress line). */
  onStage?: (stage: string) => void;
}

/** Chain + protocol + data node. Every node operator key gets OPG, registers for `roles` and stakes. */
export async function startNetwork(opts: NetworkOptions = {}): Promise<Network> {
  const tmp = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "opg-e2e-"));
  fs.mkdirSync(tmp, { recursive: true });
  opts.onStage?.("starting the hardhat node");
  const chain = await startHardhatNode(opts.chain);
  // No response cache: consecutive transactions from one key must see fresh nonces.
  const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
  let data: { proc: Proc; url: string } | undefined;
  try {
    const deployer = new NonceManager(account(0).connect(provider));
    opts.onStage?.(`deploying the protocol on ${chain.url}`);
    const deployment = await deployProtocol(deployer, {
      ...DEFAULT_ECONOMY_PARAMS,
      ...LOCAL_TEE_SETTINGS,
      treasury: await deployer.getAddress(),
    });
    const deploymentFile = opts.deploymentFile ?? path.join(tmp, "deployment.json");
    const { chainId } = await provider.getNetwork();
    fs.mkdirSync(path.dirname(deploymentFile), { recursive: true });
    fs.writeFileSync(
      deploymentFile,
      JSON.stringify({ chainId: Number(chainId), ...(await deploymentAddresses(deployment)) }, null, 2) +
        "\n",
    );
    const dataDir = path.join(tmp, "data");
    opts.onStage?.("starting the data node");
    data = await startDataNode(dataDir, opts.data);
    const dataNode = data;
    return {
      chain,
      data: { ...dataNode, dir: dataDir },
      provider,
      deployer,
      deployment,
      deploymentFile,
      tmp,
      async stop() {
        await dataNode.proc.stop().catch(() => dataNode.proc.stop("SIGKILL"));
        await chain.proc.stop().catch(() => chain.proc.stop("SIGKILL"));
        provider.destroy();
      },
    };
  } catch (e) {
    // Half a network is no use to anyone: stop what did start before reporting the failure.
    await data?.proc.stop("SIGKILL").catch(() => undefined);
    await chain.proc.stop("SIGKILL").catch(() => undefined);
    provider.destroy();
    throw e;
  }
}

/**
 * Upload a bundle to the data node and register it on chain; returns the model id and the bundle id.
 * `opts.verificationKey` registers other key words than the bundle's (tests playing a dishonest owner).
 * `opts.verificationModes` registers the model for other verification modes than ZK alone (a bitmask of
 * VerificationModes: 1 ZK, 2 optimistic, 4 TEE; the bundle's key is registered when ZK is among them). A
 * plain bundle (zkml/plain-bundle.ts, no circuit) needs it, without ZK.
 */
export async function publishModel(
  net: Network,
  bundleDir: string,
  fee: bigint,
  opts: { verificationKey?: bigint[]; verificationModes?: number } = {},
) {
  const archive = packBundle(bundleDir);
  const bundleId = bundleArchiveId(archive);
  const stored = await new DataClient(net.data.url).put(archive);
  if (stored !== bundleId) throw new Error(`data node stored ${stored}, expected ${bundleId}`);
  if (opts.verificationModes !== undefined) {
    const manifest =
      bundleKind(bundleDir) === "plain"
        ? (loadPlainManifest(bundleDir) as unknown as BundleManifest)
        : loadManifest(bundleDir, { checkHashes: true });
    const spec = {
      ...bundleModelSpec(manifest, { bundleId, fee, royaltyReceiver: await net.deployer.getAddress() }),
      verificationModes: opts.verificationModes,
    };
    const words =
      opts.verificationModes & 1 ? (opts.verificationKey ?? bundleKeyWords(bundleDir, manifest)) : [];
    const models = net.deployment.models.connect(net.deployer);
    const receipt = await (await models.registerModel(spec, words)).wait();
    const event = receipt!.logs
      .map((l) => models.interface.parseLog(l))
      .find((e) => e?.name === "ModelRegistered");
    if (!event) throw new Error(`registerModel transaction ${receipt!.hash} emitted no ModelRegistered`);
    return {
      modelId: event.args.modelId as bigint,
      verificationKey: event.args.verificationKey as string,
      verificationKeyHash: event.args.verificationKeyHash as string,
      bundleId,
    };
  }
  const registered = await registerBundle(net.deployer, net.deployment.models, bundleDir, {
    bundleId,
    fee,
    verificationKey: opts.verificationKey,
  });
  return { ...registered, bundleId };
}

/** Fund, register and stake node operator `index` for the inference role (1) and/or verification (2). */
export async function stakeNode(
  net: Network,
  index: number,
  roles = 1,
  amount = 5_000n * 10n ** 18n,
  endpoint = `http://node-${index}.local`,
) {
  const wallet = account(index).connect(net.provider);
  const { token, staking } = net.deployment;
  await (await token.connect(net.deployer).transfer(wallet.address, amount)).wait();
  await (await token.connect(wallet).approve(await staking.getAddress(), amount)).wait();
  await (await staking.connect(wallet).register(roles, endpoint)).wait();
  await (await staking.connect(wallet).stake(amount)).wait();
  return wallet;
}

/** How a worker node is started: by default a free metrics port, no confirmations, a 150 ms poll. */
export interface NodeOptions {
  extra?: string[];
  rpcUrl?: string;
  env?: Record<string, string>;
  /** Port of /metrics and /healthz (default 0: any free port). */
  metricsPort?: number;
  pollIntervalMs?: number;
  output?: OutputOptions;
}

export function startInferenceNode(
  net: Network,
  index: number,
  stateDir: string,
  opts: NodeOptions = {},
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
      String(opts.metricsPort ?? 0),
      "--confirmations",
      "0",
      "--poll-interval-ms",
      String(opts.pollIntervalMs ?? 150),
      ...(opts.extra ?? []),
    ],
    { OPG_PRIVATE_KEY: account(index).privateKey, ...(opts.env ?? {}) },
    opts.output,
  );
}

export function startVerificationNode(
  net: Network,
  index: number,
  stateDir: string,
  opts: NodeOptions = {},
): Proc {
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
      String(opts.metricsPort ?? 0),
      "--confirmations",
      "0",
      "--poll-interval-ms",
      String(opts.pollIntervalMs ?? 150),
      ...(opts.extra ?? []),
    ],
    { OPG_PRIVATE_KEY: account(index).privateKey, ...(opts.env ?? {}) },
    opts.output,
  );
}
