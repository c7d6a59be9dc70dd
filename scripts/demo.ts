/**
 * npm run demo — the whole network on one machine, from a fresh checkout:
 *
 *   1. compile the digits classifier (ONNX, 64-32-16-10 MLP) into a Groth16 bundle (cached after the first run)
 *   2. start a local chain (`hardhat node`), deploy the protocol, start a data node
 *   3. publish the model: bundle to the data node, model registered with its verification key
 *   4. stake two operators and start an inference node and a verification node (real child processes)
 *   5. as a dapp, submit handwritten digits through the SDK, wait for the verified answers
 *   6. as an auditor, re-check every answer from public data; read the verification node's reports
 *
 * The explorer page (sdk/explorer-server.ts) is served from the start, so the tasks can be watched as they
 * arrive: port OPG_EXPLORER_PORT (default 8700; any free port when that one is taken, or when it is 0).
 *
 * Exits 0 only when every task settled, every audit agreed and the verification node agreed too.
 * OPG_DEMO_TASKS sets the number of digits (default 5). With OPG_DEMO_STAY=1 (the default when stdin and
 * stdout are both terminals; OPG_DEMO_STAY=0 turns it off) the chain, the nodes, the data node and the
 * explorer keep running after the checks, until SIGINT or SIGTERM, and the exit code is the checks' then.
 */
import fs from "node:fs";
import path from "node:path";
import { ethers, type Wallet } from "ethers";
import { runReference } from "../zkml";
import { OpgClient } from "../sdk";
import { startExplorer, type RunningExplorer } from "../sdk/explorer-server";
import {
  account,
  fixtureBundle,
  freePort,
  killAllSpawned,
  leaveSignalsToCaller,
  publishModel,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  waitFor,
  waitForLog,
  type Network,
  type Proc,
} from "../network/local-network";

const MODEL = "test/fixtures/models/digits_mlp.onnx";
const TASKS = Number(process.env.OPG_DEMO_TASKS ?? 5);
const FEE = ethers.parseEther("1");
const EXPLORER_PORT = Number(process.env.OPG_EXPLORER_PORT ?? 8700);
/** Keep the network up after the checks: OPG_DEMO_STAY=1, or unset in an interactive terminal. */
const STAY =
  process.env.OPG_DEMO_STAY !== undefined
    ? process.env.OPG_DEMO_STAY === "1"
    : Boolean(process.stdin.isTTY && process.stdout.isTTY);

const t0 = Date.now();
const say = (msg: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);

/**
 * The explorer against this network, in this process: on EXPLORER_PORT, or any free port when that one is
 * taken. Undefined (with the reason printed) when the page cannot be served: the demo goes on without it.
 */
async function serveExplorer(net: Network, metrics: string[]): Promise<RunningExplorer | undefined> {
  const deployment = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
  const serve = (port: number) =>
    startExplorer({ rpc: net.chain.url, data: net.data.url, deployment, metrics, port, host: "127.0.0.1" });
  try {
    try {
      return await serve(EXPLORER_PORT);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
      say(`port ${EXPLORER_PORT} is taken: the explorer takes any free port`);
      return await serve(0);
    }
  } catch (e) {
    say(`explorer not started: ${(e as Error).message}`);
    return undefined;
  }
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
type StopSignal = (typeof SIGNALS)[number];
let stopRequested: ((signal: StopSignal) => void) | undefined;

/**
 * Staying up, the demo stops its children itself at Ctrl-C, gently (they save their state): a signal
 * during the stay ends `untilStopped`. Before the stay (or a second signal while stopping), it does what the
 * harness does by default: kill every process group it spawned and exit 128 + the signal's number.
 */
function handleSignals() {
  leaveSignalsToCaller();
  for (const signal of SIGNALS) {
    process.on(signal, () => {
      const stop = stopRequested;
      stopRequested = undefined;
      if (stop) return stop(signal);
      killAllSpawned();
      process.exit(128 + { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }[signal]);
    });
  }
}

/** Resolves with the signal's name at the next SIGINT, SIGTERM or SIGHUP (handleSignals installed). */
const untilStopped = () => new Promise<StopSignal>((resolve) => (stopRequested = resolve));

async function main(): Promise<number> {
  if (!Number.isInteger(TASKS) || TASKS < 1 || TASKS > 100) throw new Error("OPG_DEMO_TASKS must be 1..100");
  if (!Number.isInteger(EXPLORER_PORT) || EXPLORER_PORT < 0 || EXPLORER_PORT > 65535) {
    throw new Error("OPG_EXPLORER_PORT must be a port (0: any free port)");
  }
  if (STAY) handleSignals();
  say(`compiling ${MODEL} into a circuit, trusted setup (development ptau) and verification key`);
  const bundleDir = await fixtureBundle(MODEL);
  const manifest = JSON.parse(fs.readFileSync(path.join(bundleDir, "manifest.json"), "utf8"));
  say(`bundle ready: ${manifest.constraints} constraints, ${bundleDir}`);

  say("starting hardhat node, deploying OPG token, staking, registries, governor; starting the data node");
  const net: Network = await startNetwork();
  const procs: Proc[] = [];
  let explorer: RunningExplorer | undefined;
  try {
    say(
      `chain ${net.chain.url}, deployment ${net.deploymentFile}, ` +
        `data node ${net.data.url} (store ${net.data.dir})`,
    );
    // The nodes' /metrics (proof times) on ports picked now, so that the page knows them from the start;
    // each node registers its /healthz beside them as its endpoint, where the page finds them too.
    const metricsPorts = { inference: await freePort(), verification: await freePort() };
    const endpoint = (port: number) => `http://127.0.0.1:${port}/healthz`;
    explorer = await serveExplorer(net, [`http://127.0.0.1:${metricsPorts.inference}/metrics`]);
    if (explorer) say(`explorer: ${explorer.url} (live: open it to watch the tasks arrive)`);

    const { modelId, bundleId, verificationKeyHash } = await publishModel(net, bundleDir, FEE);
    say(
      `model ${modelId} registered (bundle ${bundleId.slice(0, 16)}..., ` +
        `verification key ${verificationKeyHash.slice(0, 18)}..., fee 1 OPG)`,
    );

    await stakeNode(net, 5, 1, undefined, endpoint(metricsPorts.inference));
    await stakeNode(net, 7, 2, undefined, endpoint(metricsPorts.verification));
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference"), {
      metricsPort: metricsPorts.inference,
    });
    const verification = startVerificationNode(net, 7, path.join(net.tmp, "verification"), {
      metricsPort: metricsPorts.verification,
    });
    procs.push(inference, verification);
    await waitForLog(inference, "inference node started");
    await waitForLog(verification, "verification node started");
    say(`inference node ${account(5).address} and verification node ${account(7).address} started`);

    // The dapp: an account with OPG, talking to the network through the SDK.
    const dapp = account(1).connect(net.provider) as unknown as Wallet;
    await (await net.deployment.token.connect(net.deployer).transfer(dapp.address, FEE * 100n)).wait();
    const client = new OpgClient({
      runner: dapp,
      deployment: net.deploymentFile,
      dataUrl: net.data.url,
      cacheDir: path.join(net.tmp, "sdk-bundles"),
    });
    const digits = JSON.parse(fs.readFileSync("test/fixtures/models/digits_test.json", "utf8")) as {
      scale: number;
      inputs: number[][];
      labels: number[];
    };
    const samples = digits.inputs.slice(0, TASKS).map((x) => x.map((v) => v * digits.scale));

    await client.deposit(FEE * BigInt(TASKS));
    say(
      `dapp deposited ${TASKS} OPG of prepaid credits; submits ${TASKS} handwritten digits (8x8) via the SDK`,
    );
    const submitted = [];
    for (const [i, image] of samples.entries()) {
      const request = await client.submit(modelId, image);
      submitted.push({ i, image, request, submittedAt: Date.now(), verifiedAt: 0 });
      if (process.env.OPG_E2E_VERBOSE)
        console.log(`[demo] task ${request.taskId} submitted ${new Date().toISOString()}`);
    }
    const results = await Promise.all(
      submitted.map(async (s) => {
        const result = await client.waitForResult(s.request.taskId, { timeoutMs: 400_000, pollMs: 100 });
        s.verifiedAt = Date.now();
        return result;
      }),
    );
    console.log("");
    console.log("task  label  proven  onnxruntime  submit gas  submitted->verified  node");
    let ok = true;
    const onnx = path.join(bundleDir, manifest.onnx.file);
    for (const [k, s] of submitted.entries()) {
      const result = results[k];
      const reference = await runReference(onnx, s.image, manifest.input.shape);
      const refArgmax = reference.indexOf(Math.max(...reference));
      if (result.argmax !== refArgmax) ok = false;
      console.log(
        `${String(s.request.taskId).padEnd(6)}${String(digits.labels[s.i]).padEnd(7)}` +
          `${String(result.argmax).padEnd(8)}${String(refArgmax).padEnd(13)}` +
          `${s.request.gasUsed.toLocaleString("en-US").padEnd(12)}` +
          `${`${((s.verifiedAt - s.submittedAt) / 1000).toFixed(2)} s`.padEnd(21)}${result.node}`,
      );
    }
    console.log("");

    say(
      "auditor re-checks every task from public data (calldata, registry, bundle hashes, verification key)",
    );
    let setup = "";
    for (const s of submitted) {
      const report = await client.audit(s.request.taskId);
      say(`  task ${report.taskId}: ${report.detail}`);
      if (!report.agree) ok = false;
      setup = report.setup?.summary ?? setup;
    }
    // the same for every task of the model: who could forge its proofs (a development setup here)
    if (setup) say(`  ${setup}`);

    const reportFile = path.join(net.tmp, "verification", "reports.jsonl");
    const reports = await waitFor(
      "the verification node's reports",
      async () => {
        if (!fs.existsSync(reportFile)) return undefined;
        const lines = fs.readFileSync(reportFile, "utf8").split("\n").filter(Boolean);
        return lines.length >= TASKS ? lines.map((l) => JSON.parse(l) as { agree: boolean }) : undefined;
      },
      300_000,
      200,
      verification,
    );
    const agreed = reports.filter((r) => r.agree).length;
    say(`verification node re-checked ${reports.length} tasks: ${agreed} agree`);
    if (agreed !== reports.length) ok = false;

    const credits = await net.deployment.tasks.creditsOf(account(5).address);
    say(`inference node earned ${ethers.formatEther(credits)} OPG (withdrawable credits)`);

    if (!STAY) {
      await Promise.all(procs.map((p) => p.stop()));
      procs.length = 0;
    }
    say(ok ? `all ${TASKS} tasks verified on chain, audited and agreed` : "DISAGREEMENT: see above");
    if (STAY) {
      say(
        explorer
          ? `the network and the explorer keep running at ${explorer.url}; Ctrl-C to stop`
          : `the network keeps running (chain ${net.chain.url}); Ctrl-C to stop`,
      );
      // Until Ctrl-C, or until a part of the network ends on its own (then the rest is no use).
      const end = await Promise.race([
        untilStopped().then((signal) => `${signal}`),
        ...[net.chain.proc, net.data.proc, ...procs].map((p) =>
          p.exited.then(() => `${p.name} exited (${p.exitDescription()})`),
        ),
      ]);
      if (!/^SIG/.test(end)) {
        stopRequested = undefined;
        ok = false;
      }
      say(`${end}: stopping the nodes, the data node, the chain and the explorer`);
      await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
      procs.length = 0;
    }
    return ok ? 0 : 1;
  } finally {
    for (const p of procs) await p.stop("SIGKILL").catch(() => undefined);
    await explorer?.close();
    await net.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`demo failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
