import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { ethers } from "ethers";
import {
  account,
  fixtureBundle,
  killAllSpawned,
  leaveSignalsToCaller,
  publishModel,
  ROOT,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  stopAllSpawned,
  waitForLog,
  type Network,
  type OutputOptions,
  type Proc,
} from "./local-network";

/**
 * `opg dev`: a persistent local development network, the way `npx hardhat node` or Foundry's anvil give
 * one for contracts. One command starts a hardhat node, deploys the protocol (deployment file written),
 * starts a data node, publishes an example model, funds and stakes two operators (Hardhat accounts #1 and
 * #2), funds a dapp (#3), starts an inference node and a verification node, prints everything a developer
 * needs (URLs, addresses, the accounts' keys, the next commands) and stays up until SIGINT or SIGTERM, when
 * it stops every child and exits 0. A child that dies on its own takes the network down with exit 1.
 */

/** The model `opg dev` publishes unless told otherwise: the digits MLP the demo uses. */
export const DEFAULT_MODEL = "test/fixtures/models/digits_mlp.onnx";
const MODEL_FEE = ethers.parseEther("1");
const OPERATOR_STAKE = ethers.parseEther("5000");
const DAPP_OPG = ethers.parseEther("10000");
/** The file that marks a state folder as this command's own (so it may empty it). */
const STATE_MARKER = ".opg-dev";
const ROLE_INFERENCE = 1;
const ROLE_VERIFICATION = 2;
/** Defaults of the client commands (sdk/cli-common.ts): flags equal to them are left out of the hints. */
const CLIENT_DEFAULTS = {
  rpcUrl: "http://127.0.0.1:8545",
  deployment: "deployments/localhost.json",
  dataUrl: "http://127.0.0.1:8600",
};

export interface DevnetOptions {
  /** JSON-RPC port of the hardhat node. */
  port: number;
  /** Port of the data node. */
  dataPort: number;
  /** /metrics and /healthz of the inference node; the verification node's is the next port. */
  metricsPort: number;
  /** Where the deployment file is written. */
  deployment: string;
  /** Working folder: the data node's store, the nodes' state, the logs. Emptied at every start. */
  stateDir: string;
  /** Publish an example model. */
  model: boolean;
  /** The ONNX model to publish (compiled once, cached under .opg/cache). */
  modelOnnx: string;
  /** An input file for the model, shown in the next commands (default: the fixture's, else zeros). */
  modelInput?: string;
  /** Start an inference node and a verification node. */
  nodes: boolean;
  /** Print the children's output on the terminal too (it always goes to <stateDir>/logs). */
  verbose: boolean;
  /** Serve the explorer page on this port (0: any free port); undefined or false: no explorer. */
  explorerPort?: number | false;
  /** Where progress and the summary go (default: stdout). */
  print?: (line: string) => void;
}

export class DevnetError extends Error {}

/** An account the network set up, with its role. Keys are the public Hardhat development keys. */
export interface DevAccount {
  index: number;
  role: string;
  address: string;
  privateKey: string;
}

export interface DevnetInfo {
  rpcUrl: string;
  chainId: number;
  deployment: string;
  dataUrl: string;
  contracts: Record<string, string>;
  accounts: DevAccount[];
  model?: { id: bigint; name: string; constraints: number; bundleDir: string; input: string };
  nodes: { role: string; account: number; health: string }[];
  /** The explorer page's URL, when it was started. */
  explorer?: string;
  /** Process id of each child (hardhat, data, inference, verification), each the leader of its own group. */
  processes: Record<string, number>;
  logs: string;
  /** Where this summary is written as JSON, for scripts. */
  summary: string;
}

/** Resolves when `port` can be bound on 127.0.0.1; else fails saying what to do. */
async function assertPortFree(port: number, what: string, flag: string) {
  await new Promise<void>((resolve, reject) => {
    const server = net.createServer();
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        new DevnetError(
          e.code === "EADDRINUSE"
            ? `port ${port} (${what}) is in use: stop what holds it (another \`opg dev\` or \`hardhat node\`?) ` +
                `or choose another with ${flag}`
            : `cannot listen on 127.0.0.1:${port} (${what}): ${e.message}`,
        ),
      ),
    );
    server.listen(port, "127.0.0.1", () => server.close(() => resolve()));
  });
}

/** The fixture's example input (digits_mlp.onnx -> digits_input.json), if there is one. */
function fixtureInput(onnx: string): string | undefined {
  const base = path.basename(onnx, ".onnx").replace(/_[^_]+$/, "");
  const candidate = path.join(path.dirname(onnx), `${base}_input.json`);
  return fs.existsSync(candidate) ? candidate : undefined;
}

function zeros(shape: number[]): unknown {
  return shape.length === 0 ? 0 : Array.from({ length: shape[0] }, () => zeros(shape.slice(1)));
}

/** `path` relative to the working directory when it is inside it (shorter hints). */
function shown(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
}

const opg = (n: bigint) => `${Number(ethers.formatEther(n)).toLocaleString("en-US")} OPG`;

export class Devnet {
  private readonly t0 = Date.now();
  private readonly print: (line: string) => void;
  private closeExplorer?: () => Promise<void>;
  private network?: Network;
  private readonly procs: Proc[] = [];
  private logStreams: fs.WriteStream[] = [];
  private stopping = false;

  constructor(private readonly opts: DevnetOptions) {
    this.print = opts.print ?? ((line) => process.stdout.write(`${line}\n`));
  }

  private stage(msg: string) {
    this.print(`[${((Date.now() - this.t0) / 1000).toFixed(1).padStart(6)} s] ${msg}`);
  }

  /** Output handling of a child: the last lines in memory, every line in its log file (and the terminal). */
  private output(name: string): OutputOptions {
    const file = fs.createWriteStream(path.join(this.opts.stateDir, "logs", `${name}.log`), { flags: "a" });
    this.logStreams.push(file);
    return {
      keepLines: 2000,
      onLine: (line) => {
        file.write(`${line}\n`);
        if (this.opts.verbose) this.print(`[${name}] ${line}`);
      },
    };
  }

  /** Start everything; resolves with what the summary shows. */
  async start(): Promise<DevnetInfo> {
    const o = this.opts;
    const stateDir = path.resolve(o.stateDir);
    const deployment = path.resolve(o.deployment);
    // A path from the working directory, else from the repository (the default fixture from anywhere).
    const onnx = fs.existsSync(path.resolve(o.modelOnnx))
      ? path.resolve(o.modelOnnx)
      : path.resolve(ROOT, o.modelOnnx);
    if (o.model && !fs.existsSync(onnx)) throw new DevnetError(`model ${o.modelOnnx} not found`);
    if (o.modelInput && !fs.existsSync(o.modelInput))
      throw new DevnetError(`model input ${o.modelInput} not found`);
    // Only a folder this command made (it holds the marker) is emptied, never one a user named by mistake.
    const marker = path.join(stateDir, STATE_MARKER);
    if (fs.existsSync(stateDir) && fs.readdirSync(stateDir).length > 0 && !fs.existsSync(marker)) {
      throw new DevnetError(
        `--state-dir ${o.stateDir} exists and was not made by \`opg dev\` (no ${STATE_MARKER} in it): ` +
          `it would be emptied; choose another folder or remove it yourself`,
      );
    }
    await assertPortFree(o.port, "the JSON-RPC port", "--port");
    await assertPortFree(o.dataPort, "the data node", "--data-port");
    if (o.nodes) {
      await assertPortFree(o.metricsPort, "the inference node's /metrics", "--metrics-port");
      await assertPortFree(o.metricsPort + 1, "the verification node's /metrics", "--metrics-port");
    }
    // A fresh chain every time: state from an earlier run (journals, stored blobs) would not match it.
    fs.rmSync(stateDir, { recursive: true, force: true });
    fs.mkdirSync(path.join(stateDir, "logs"), { recursive: true });
    fs.writeFileSync(marker, "made by `opg dev`, which empties this folder at every start\n");
    leaveSignalsToCaller();

    this.network = await startNetwork({
      dir: stateDir,
      deploymentFile: deployment,
      chain: { port: o.port, output: this.output("hardhat") },
      data: { port: o.dataPort, output: this.output("data") },
      onStage: (s) => this.stage(s),
    });
    const net = this.network;
    const { chainId } = await net.provider.getNetwork();
    const contracts = JSON.parse(fs.readFileSync(deployment, "utf8")) as Record<string, string>;
    delete contracts.chainId;

    let model: DevnetInfo["model"];
    if (o.model) {
      const cache = process.env.OPG_CACHE_DIR ?? ".opg/cache";
      this.stage(
        `compiling ${shown(onnx)} into a Groth16 bundle (once; cached under ${cache}: the first run ` +
          `generates a development ptau and can take minutes)`,
      );
      const bundleDir = await fixtureBundle(onnx, {}, (m) => this.stage(`  ${m}`));
      const manifest = JSON.parse(fs.readFileSync(path.join(bundleDir, "manifest.json"), "utf8")) as {
        name: string;
        constraints: number;
        input: { shape: number[] };
      };
      this.stage(`publishing the model: bundle to the data node, registration with its verification key`);
      const { modelId } = await publishModel(net, bundleDir, MODEL_FEE);
      let input = o.modelInput ?? fixtureInput(onnx);
      if (!input) {
        input = path.join(stateDir, "example-input.json");
        fs.writeFileSync(input, JSON.stringify({ input: zeros(manifest.input.shape) }) + "\n");
      }
      model = {
        id: modelId,
        name: manifest.name,
        constraints: manifest.constraints,
        bundleDir,
        input: path.resolve(input),
      };
    }

    this.stage("funding and staking operators #1 (inference) and #2 (verification), funding dapp #3");
    const health = (port: number) => `http://127.0.0.1:${port}/healthz`;
    await stakeNode(net, 1, ROLE_INFERENCE, OPERATOR_STAKE, health(o.metricsPort));
    await stakeNode(net, 2, ROLE_VERIFICATION, OPERATOR_STAKE, health(o.metricsPort + 1));
    await (await net.deployment.token.connect(net.deployer).transfer(account(3).address, DAPP_OPG)).wait();

    const nodes: DevnetInfo["nodes"] = [];
    if (o.nodes) {
      this.stage("starting the inference node (#1) and the verification node (#2)");
      const common = { pollIntervalMs: 250 };
      const inference = startInferenceNode(net, 1, path.join(stateDir, "inference"), {
        ...common,
        metricsPort: o.metricsPort,
        output: this.output("inference"),
      });
      this.procs.push(inference);
      const verification = startVerificationNode(net, 2, path.join(stateDir, "verification"), {
        ...common,
        metricsPort: o.metricsPort + 1,
        output: this.output("verification"),
      });
      this.procs.push(verification);
      await waitForLog(inference, "inference node started");
      await waitForLog(verification, "verification node started");
      nodes.push(
        { role: "inference", account: 1, health: health(o.metricsPort) },
        { role: "verification", account: 2, health: health(o.metricsPort + 1) },
      );
    }

    const explorer = await this.startExplorer(net.chain.url, net.data.url, deployment);

    const roles = [
      "deployer, treasury, model owner (holds the rest of the OPG supply)",
      `inference operator (staked ${opg(OPERATOR_STAKE)})`,
      `verification operator (staked ${opg(OPERATOR_STAKE)})`,
      `dapp (${opg(DAPP_OPG)})`,
    ];
    return {
      rpcUrl: net.chain.url,
      chainId: Number(chainId),
      deployment,
      dataUrl: net.data.url,
      contracts,
      accounts: roles.map((role, index) => ({
        index,
        role,
        address: account(index).address,
        privateKey: account(index).privateKey,
      })),
      model,
      nodes,
      explorer,
      processes: Object.fromEntries(
        [net.chain.proc, net.data.proc, ...this.procs].map((p) => [
          p.name.replace(/-\d+$/, ""),
          p.child.pid!,
        ]),
      ),
      logs: path.join(stateDir, "logs"),
      summary: path.join(stateDir, "network.json"),
    };
  }

  /**
   * The explorer page, served from this process; a line saying why when it cannot be (the page not built, the
   * port taken): the network is useful without it.
   */
  private async startExplorer(
    rpc: string,
    data: string,
    deploymentFile: string,
  ): Promise<string | undefined> {
    const port = this.opts.explorerPort;
    if (port === undefined || port === false) return undefined;
    try {
      const [{ startExplorer }, { readDeployment }] = await Promise.all([
        import("../sdk/explorer-server"),
        import("../workers/runtime/chain"),
      ]);
      const running = await startExplorer({ rpc, data, deployment: readDeployment(deploymentFile), port });
      this.closeExplorer = running.close;
      return running.url;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why =
        err.code === "EADDRINUSE"
          ? `port ${port} is in use (choose another with --explorer-port)`
          : err.message;
      this.stage(`explorer not started: ${why}`);
      return undefined;
    }
  }

  /** The summary printed once everything is up. */
  describe(info: DevnetInfo): string[] {
    const flags = [
      info.rpcUrl !== CLIENT_DEFAULTS.rpcUrl ? `--rpc-url ${info.rpcUrl}` : "",
      path.resolve(CLIENT_DEFAULTS.deployment) !== info.deployment
        ? `--deployment ${shown(info.deployment)}`
        : "",
      info.dataUrl !== CLIENT_DEFAULTS.dataUrl ? `--data-url ${info.dataUrl}` : "",
    ]
      .filter(Boolean)
      .map((f) => ` ${f}`)
      .join("");
    const dapp = info.accounts[3];
    const lines = [
      "",
      "OPG local development network",
      `  RPC URL      ${info.rpcUrl} (chain id ${info.chainId})`,
      `  deployment   ${shown(info.deployment)}`,
      `  data node    ${info.dataUrl}`,
      ...(info.explorer
        ? [`  explorer     ${info.explorer} (models, nodes, tasks; proofs re-verified in the browser)`]
        : []),
      ...Object.entries(info.contracts).map(([k, v]) => `  ${k.padEnd(12)} ${v}`),
    ];
    if (info.model) {
      lines.push(
        `  model        ${info.model.id}: ${info.model.name} (${info.model.constraints.toLocaleString("en-US")} ` +
          `constraints, fee ${opg(MODEL_FEE)}, bundle ${shown(info.model.bundleDir)})`,
      );
    } else lines.push("  model        none (--no-model): publish one with `npx opg model register`");
    for (const n of info.nodes)
      lines.push(`  ${n.role.padEnd(12)} node of account #${n.account}, ${n.health}`);
    if (info.nodes.length === 0)
      lines.push("  nodes        none (--no-nodes): start them with `npx opg node ...`");
    lines.push(
      `  logs         ${shown(info.logs)}/`,
      `  summary      ${shown(info.summary)} (this, as JSON)`,
      "",
      'Accounts: Hardhat\'s public development keys (mnemonic "test test ... junk"). Anyone knows them:',
      "never use them, or send real funds to them, on a public network. Each also holds 10,000 ETH.",
    );
    for (const a of info.accounts) {
      lines.push(
        `  #${a.index} ${a.role}`,
        `     address     ${a.address}`,
        `     private key ${a.privateKey}`,
      );
    }
    lines.push("", "Next:");
    if (info.model) {
      lines.push(
        `  OPG_PRIVATE_KEY=${dapp.privateKey} npx opg task submit --model ${info.model.id} ` +
          `--input ${shown(info.model.input)} --wait${flags}`,
        `  npx opg task audit 1${flags}`,
      );
    }
    lines.push(
      `  npx opg token balance ${dapp.address}${flags.replace(/ --data-url \S+/, "")}`,
      `  OPG_PRIVATE_KEY=${info.accounts[1].privateKey} npx opg operator status${flags.replace(/ --data-url \S+/, "")}`,
      "",
    );
    return lines;
  }

  /**
   * Resolves when a child exits while the network is up (a crash: the name and its last output), never
   * when the network is being stopped.
   */
  childExited(): Promise<string> {
    const all = [...this.procs];
    if (this.network) all.push(this.network.chain.proc, this.network.data.proc);
    return Promise.race(
      all.map(
        (p) =>
          new Promise<string>((resolve) => {
            void p.exited.then(() => {
              if (!this.stopping)
                resolve(
                  `${p.name} exited (${p.exitDescription()}); its last output:\n  ${p.output.slice(-15).join("\n  ")}`,
                );
            });
          }),
      ),
    );
  }

  /** Stop the nodes, then the data node, then the chain: SIGTERM each, SIGKILL after a grace period. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.closeExplorer?.().catch(() => undefined);
    for (const p of this.procs) await p.stop("SIGTERM", 15_000).catch(() => undefined);
    if (this.network) await this.network.stop().catch(() => undefined);
    // Anything started before startNetwork returned (an interrupted start).
    await stopAllSpawned(10_000);
    for (const s of this.logStreams) s.end();
  }
}

/**
 * The `opg dev` command: start, print the summary and the ready line, stay up until SIGINT/SIGTERM/SIGHUP.
 * Resolves with the exit code: 0 after a requested stop, 1 when the start failed or a child died.
 */
export async function runDevnet(opts: DevnetOptions): Promise<number> {
  const print = opts.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const devnet = new Devnet({ ...opts, print });
  let signalled: (s: NodeJS.Signals) => void = () => undefined;
  const signal = new Promise<NodeJS.Signals>((resolve) => (signalled = resolve));
  let signals = 0;
  const onSignal = (s: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) return signalled(s);
    // A second Ctrl-C while stopping: do not wait for anyone.
    print(`${s} again: killing every process at once`);
    killAllSpawned();
    process.exit(130);
  };
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, onSignal);
  try {
    const started = devnet.start().then(
      (info) => ({ info }),
      (error: unknown) => ({ error }),
    );
    const first = await Promise.race([started, signal.then((s) => ({ signal: s }))]);
    if ("signal" in first) {
      print(`${first.signal}: stopping what has started`);
      await devnet.stop();
      return 0;
    }
    if ("error" in first) {
      process.stderr.write(`error: opg dev could not start: ${(first.error as Error).message}\n`);
      await devnet.stop();
      return 1;
    }
    const json = JSON.stringify(first.info, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2);
    fs.writeFileSync(first.info.summary, json + "\n");
    for (const line of devnet.describe(first.info)) print(line);
    print(`ready: OPG development network on ${first.info.rpcUrl} (Ctrl-C stops it)`);
    const end = await Promise.race([
      signal.then((s) => ({ signal: s })),
      devnet.childExited().then((crash) => ({ crash })),
    ]);
    if ("crash" in end) {
      process.stderr.write(`error: ${end.crash}\nstopping the network\n`);
      await devnet.stop();
      return 1;
    }
    print(`${end.signal}: stopping the nodes, the data node and the chain`);
    await devnet.stop();
    print("stopped");
    return 0;
  } finally {
    for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.off(s, onSignal);
  }
}
