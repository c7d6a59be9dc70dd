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
 * Exits 0 only when every task settled, every audit agreed and the verification node agreed too.
 * OPG_DEMO_TASKS sets the number of digits (default 5).
 */
import fs from "node:fs";
import path from "node:path";
import { ethers, type Wallet } from "ethers";
import { runReference } from "../zkml";
import { OpgClient } from "../sdk";
import {
  account,
  fixtureBundle,
  publishModel,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  waitFor,
  waitForLog,
  type Network,
  type Proc,
} from "./lib/local-network";

const MODEL = "test/fixtures/models/digits_mlp.onnx";
const TASKS = Number(process.env.OPG_DEMO_TASKS ?? 5);
const FEE = ethers.parseEther("1");

const t0 = Date.now();
const say = (msg: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);

async function main(): Promise<number> {
  if (!Number.isInteger(TASKS) || TASKS < 1 || TASKS > 100) throw new Error("OPG_DEMO_TASKS must be 1..100");
  say(`compiling ${MODEL} into a circuit, trusted setup (development ptau) and verification key`);
  const bundleDir = await fixtureBundle(MODEL);
  const manifest = JSON.parse(fs.readFileSync(path.join(bundleDir, "manifest.json"), "utf8"));
  say(`bundle ready: ${manifest.constraints} constraints, ${bundleDir}`);

  say("starting hardhat node, deploying OPG token, staking, registries, governor; starting the data node");
  const net: Network = await startNetwork();
  const procs: Proc[] = [];
  try {
    const { modelId, bundleId, verificationKeyHash } = await publishModel(net, bundleDir, FEE);
    say(
      `model ${modelId} registered (bundle ${bundleId.slice(0, 16)}..., ` +
        `verification key ${verificationKeyHash.slice(0, 18)}..., fee 1 OPG)`,
    );

    await stakeNode(net, 5, 1);
    await stakeNode(net, 7, 2);
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference"));
    const verification = startVerificationNode(net, 7, path.join(net.tmp, "verification"));
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

    await Promise.all(procs.map((p) => p.stop()));
    procs.length = 0;
    say(ok ? `all ${TASKS} tasks verified on chain, audited and agreed` : "DISAGREEMENT: see above");
    return ok ? 0 : 1;
  } finally {
    for (const p of procs) await p.stop("SIGKILL").catch(() => undefined);
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
