import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ethers, NonceManager, type Signer } from "ethers";
import { executeQuantized, inputWords, loadManifest, loadProgram } from "../../zkml";
import { MODES, parseSubmitted, TOPICS } from "../../workers/runtime/tasks";
import { startExplorer, type RunningExplorer } from "../../sdk/explorer-server";
import {
  account,
  fixtureBundle,
  ROOT,
  freePort,
  publishModel,
  sleep,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  waitFor,
  waitForLog,
  type Network,
  type Proc,
} from "../../network/local-network";
import { TABULAR_FIXTURES, tabularTestData } from "./tabular-fixtures";

/**
 * A local chain full of real tasks for the explorer's benchmark and screenshots: a hardhat node, the protocol,
 * a data node, two small models (the iris MLP, ZK or optimistic, and the iris random forest, ZK), two inference
 * nodes and a verification node as real `opg node` processes, and requesters submitting tasks in batches from
 * prepaid credits. Every ZK task settles with a real Groth16 proof checked on chain; optimistic tasks are
 * posted with an off-chain attestation and left in their challenge window. Only local processes: nothing
 * outside this machine is reached.
 */

/** Chromium is launched by scripts/lib/chromium.ts; re-exported for the scripts that import it from here. */
export { CHROMIUM, CHROMIUM_ARGS, launchChromium } from "./chromium";

/** The iris MLP (427 constraints, proves in well under a second): most tasks, ZK or optimistic. */
const MLP = "test/fixtures/models/iris_mlp.onnx";
const FOREST = TABULAR_FIXTURES.find((f) => f.name === "iris_forest")!;
const MLP_INPUTS: number[][] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "..", "test", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;
const MODEL_FEE = ethers.parseEther("0.1");
/** Fees paid above the model's: a task's fee varies, so the fee plot shows something. */
const TIPS = [0n, 0n, 0n, ethers.parseEther("0.05"), ethers.parseEther("0.1"), ethers.parseEther("0.4")];
/** Requester accounts (operators are 5, 6: inference; 7: verification) and their shares of the tasks. */
const REQUESTERS = [
  { index: 1, weight: 5 },
  { index: 2, weight: 3 },
  { index: 3, weight: 2 },
  { index: 4, weight: 1 },
  { index: 8, weight: 1 },
  { index: 9, weight: 1 },
];
const INFERENCE = [5, 6];
const VERIFIER = 7;

export interface ExplorerChainOptions {
  /** Tasks submitted (and settled) before the function returns; `grow` adds more later. */
  tasks: number;
  /** Share of the tasks submitted in optimistic mode, on the iris MLP (default 0.02; 0 for none). */
  optimisticShare?: number;
  /** Start the explorer server on a free port (default true); its page polls every `pollMs` (default 1000). */
  explorer?: boolean;
  /** The built page it serves (default: a private build made now, see `buildExplorerPage`). */
  explorerRoot?: string;
  /** That private build unminified (function names kept, for a profile). */
  minify?: boolean;
  pollMs?: number;
  /** At most this many submitted tasks not yet settled (default 48): submissions are spread over the build. */
  backlog?: number;
  /**
   * Mine a block every this many ms once the protocol is set up, instead of one per transaction: block times
   * then follow the clock (with automine, every block is at least a second after the previous one, so a
   * busy chain runs ahead of the clock). Default: automine.
   */
  blockIntervalMs?: number;
  /** Proving threads per inference node (default 2). */
  concurrency?: number;
  /** Told each stage and the progress. */
  log?: (message: string) => void;
}

export interface SettledTask {
  taskId: bigint;
  modelId: bigint;
  mode: "zk" | "optimistic";
  requester: string;
}

export interface ExplorerChain {
  net: Network;
  models: { mlp: bigint; forest: bigint };
  /** Every task submitted so far, in id order. */
  tasks: SettledTask[];
  /** The nodes' /metrics URLs (beside the endpoints they registered). */
  metrics: string[];
  explorer?: RunningExplorer;
  explorerUrl?: string;
  /** The built page the explorer serves. */
  pageDir?: string;
  /** Submit `n` more tasks and wait until every task is settled. */
  grow(n: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Build the explorer page into a folder of its own (a fresh temporary one by default), so that a measurement
 * is not disturbed by someone rebuilding dist/explorer meanwhile; returns the folder.
 */
export function buildExplorerPage(
  outDir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-explorer-page-")),
  opts: { minify?: boolean } = {},
): string {
  const vite = path.join(ROOT, "node_modules", "vite", "bin", "vite.js");
  const r = spawnSync(
    process.execPath,
    [
      vite,
      "build",
      "--config",
      "explorer/vite.config.mjs",
      "--outDir",
      outDir,
      "--emptyOutDir",
      // Unminified for a CPU profile that names the page's functions.
      ...(opts.minify === false ? ["--minify", "false"] : []),
    ],
    { cwd: ROOT, encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`vite build failed (${r.status}): ${r.stderr || r.stdout}`);
  return outDir;
}

/** A small deterministic generator (mulberry32): the same chain every run for a given N. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function buildExplorerChain(opts: ExplorerChainOptions): Promise<ExplorerChain> {
  const log = opts.log ?? (() => undefined);
  const random = rng(12);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
  const optimisticShare = opts.optimisticShare ?? 0.02;
  const backlog = opts.backlog ?? 48;

  log("compiling the iris MLP and the iris forest (cached after the first run)");
  const mlpDir = await fixtureBundle(MLP);
  const forestDir = await fixtureBundle(`test/fixtures/models/${FOREST.name}.onnx`, {
    ...FOREST.options,
    inputMode: "inline",
  });
  const forestInputs = tabularTestData(FOREST).inputs;
  const bundles = {
    mlp: { dir: mlpDir, manifest: loadManifest(mlpDir), program: loadProgram(mlpDir), inputs: MLP_INPUTS },
    forest: {
      dir: forestDir,
      manifest: loadManifest(forestDir),
      program: loadProgram(forestDir),
      inputs: forestInputs,
    },
  };

  const net = await startNetwork({ onStage: log });
  const procs: Proc[] = [];
  let explorer: RunningExplorer | undefined;
  let ownPage: string | undefined;
  const stop = async () => {
    await explorer?.close().catch(() => undefined);
    if (ownPage) fs.rmSync(ownPage, { recursive: true, force: true });
    await Promise.all(procs.map((p) => p.stop().catch(() => p.stop("SIGKILL").catch(() => undefined))));
    await net.stop();
  };
  try {
    log("publishing the models, staking the operators, starting two inference nodes and a verification node");
    const mlp = await publishModel(net, mlpDir, MODEL_FEE, {
      verificationModes: MODES.zk | MODES.optimistic,
    });
    const forest = await publishModel(net, forestDir, MODEL_FEE * 2n);
    const ports = new Map<number, number>();
    for (const i of [...INFERENCE, VERIFIER]) ports.set(i, await freePort());
    const endpoint = (i: number) => `http://127.0.0.1:${ports.get(i)}`;
    for (const i of INFERENCE) await stakeNode(net, i, 1, undefined, endpoint(i));
    await stakeNode(net, VERIFIER, 2, undefined, endpoint(VERIFIER));
    for (const i of INFERENCE) {
      procs.push(
        startInferenceNode(net, i, path.join(net.tmp, `inference-${i}`), {
          metricsPort: ports.get(i),
          extra: ["--concurrency", String(opts.concurrency ?? 2), "--attest-timeout-ms", "30000"],
          output: { keepLines: 200 },
        }),
      );
    }
    procs.push(
      startVerificationNode(net, VERIFIER, path.join(net.tmp, "verification"), {
        metricsPort: ports.get(VERIFIER),
        output: { keepLines: 200 },
      }),
    );
    for (const p of procs) await waitForLog(p, `${p.name.replace(/-\d+$/, "")} node started`);

    const { token, tasks: registry } = net.deployment;
    const requesters: { signer: Signer; address: string; weight: number }[] = [];
    const credit = ethers.parseEther("1000");
    for (const r of REQUESTERS) {
      const signer = new NonceManager(account(r.index).connect(net.provider));
      const address = await signer.getAddress();
      await (await token.connect(net.deployer).transfer(address, credit)).wait();
      await (await token.connect(signer).approve(await registry.getAddress(), credit)).wait();
      await (await registry.connect(signer).deposit(credit)).wait();
      requesters.push({ signer, address, weight: r.weight });
    }
    const totalWeight = requesters.reduce((s, r) => s + r.weight, 0);
    const pickRequester = () => {
      let x = random() * totalWeight;
      for (const r of requesters) if ((x -= r.weight) < 0) return r;
      return requesters[0];
    };

    const all: SettledTask[] = [];
    const settled = new Set<bigint>();
    const failed = new Map<bigint, string>();
    let scanned = 0;
    const scan = async () => {
      const head = await net.provider.getBlockNumber();
      if (head <= scanned) return;
      const logs = await net.provider.getLogs({
        address: await registry.getAddress(),
        fromBlock: scanned + 1,
        toBlock: head,
        topics: [[TOPICS.verified, TOPICS.attested, TOPICS.expired, TOPICS.rejected]],
      });
      for (const l of logs) {
        const id = BigInt(l.topics[1]);
        if (l.topics[0] === TOPICS.expired || l.topics[0] === TOPICS.rejected)
          failed.set(id, l.topics[0] === TOPICS.expired ? "expired" : "rejected");
        else settled.add(id);
      }
      scanned = head;
    };

    /** A request for one task: a held-out sample, jittered so that no two inputs repeat. */
    const request = (which: "mlp" | "forest", deadline: number) => {
      const b = bundles[which];
      const base = pick(b.inputs);
      const spread = which === "mlp" ? 0.15 : 0.2;
      const x = base.map((v) => Number((v + (random() - 0.5) * spread).toFixed(4)));
      const q = executeQuantized(b.program, x);
      return {
        modelId: which === "mlp" ? mlp.modelId : forest.modelId,
        input: inputWords(b.manifest, q.input),
        inputDataHash: ethers.ZeroHash,
        fee: (which === "mlp" ? MODEL_FEE : MODEL_FEE * 2n) + pick(TIPS),
        deadline,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0,
      };
    };

    const record = (receipt: ethers.TransactionReceipt, requester: string, mode: "zk" | "optimistic") => {
      for (const l of receipt.logs) {
        if (l.topics[0] !== TOPICS.submitted) continue;
        const s = parseSubmitted(l);
        all.push({ taskId: s.taskId, modelId: s.modelId, mode, requester });
      }
    };

    if (opts.blockIntervalMs) {
      await net.provider.send("evm_setAutomine", [false]);
      await net.provider.send("evm_setIntervalMining", [opts.blockIntervalMs]);
    }
    const started = Date.now();
    const grow = async (n: number) => {
      const target = all.length + n;
      let lastReport = 0;
      while (all.length < target) {
        await scan();
        const open = all.length - settled.size - failed.size;
        if (open < backlog) {
          const r = pickRequester();
          const deadline = (await net.provider.getBlock("latest"))!.timestamp + 3600;
          // Optimistic tasks keep to their share of the tasks submitted so far (the first one early on).
          const optimistic = all.filter((t) => t.mode === "optimistic").length;
          if (optimistic < optimisticShare * (all.length + 1) - 0.5) {
            const req = request("mlp", deadline);
            const tx = await registry.connect(r.signer).submitTaskInMode(req, MODES.optimistic);
            record((await tx.wait())!, r.address, "optimistic");
          } else {
            const size = Math.min(target - all.length, 1 + Math.floor(random() * 12), backlog - open);
            const reqs = Array.from({ length: size }, () =>
              request(random() < 0.7 ? "mlp" : "forest", deadline),
            );
            const tx = await registry.connect(r.signer).submitTasks(reqs);
            record((await tx.wait())!, r.address, "zk");
          }
        } else {
          await sleep(250);
        }
        if (Date.now() - lastReport > 15_000) {
          lastReport = Date.now();
          log(
            `  ${all.length} submitted, ${settled.size} settled (${((Date.now() - started) / 1000).toFixed(0)} s)`,
          );
        }
      }
      await waitFor(
        `all ${all.length} tasks settled`,
        async () => {
          await scan();
          if (failed.size > 0)
            throw new Error(
              `tasks not settled: ${[...failed].map(([id, why]) => `${id} ${why}`).join(", ")}`,
            );
          if (Date.now() - lastReport > 15_000) {
            lastReport = Date.now();
            log(`  ${settled.size} of ${all.length} settled`);
          }
          return settled.size >= all.length;
        },
        Math.max(300_000, all.length * 3_000),
        300,
      );
    };

    await grow(opts.tasks);
    log(`${all.length} tasks settled in ${((Date.now() - started) / 1000).toFixed(1)} s of submitting`);

    // The page finds the nodes' /metrics from the endpoints they registered: no extra URL to configure.
    const metrics = [...INFERENCE, VERIFIER].map((i) => `${endpoint(i)}/metrics`);
    let pageDir: string | undefined;
    if (opts.explorer ?? true) {
      pageDir = opts.explorerRoot ?? buildExplorerPage(undefined, { minify: opts.minify });
      if (!opts.explorerRoot) ownPage = pageDir;
      const deployment = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
      explorer = await startExplorer({
        rpc: net.chain.url,
        data: net.data.url,
        deployment,
        pollMs: opts.pollMs,
        port: 0,
        host: "127.0.0.1",
        root: pageDir,
      });
    }
    return {
      net,
      models: { mlp: mlp.modelId, forest: forest.modelId },
      tasks: all,
      metrics,
      explorer,
      explorerUrl: explorer?.url,
      pageDir,
      grow,
      stop,
    };
  } catch (e) {
    const tails = procs.map((p) => `${p.name}:\n  ${p.output.slice(-8).join("\n  ")}`).join("\n");
    await stop().catch(() => undefined);
    throw new Error(`${(e as Error).message}\n${tails}`);
  }
}
