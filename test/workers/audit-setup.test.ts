import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers, type Log, type Provider } from "ethers";
import pino from "pino";
import { fixtureBundle } from "../../network/local-network";
import type { DataClient } from "../../workers/data/client";
import { auditVerifiedLog, type AuditDeps } from "../../workers/runtime/audit";
import { checkBundleSetup, SetupChecks } from "../../workers/runtime/audit-setup";
import type { BundleCache, LoadedBundle } from "../../workers/runtime/bundles";
import type { Chain } from "../../workers/runtime/chain";
import { loadConfig } from "../../workers/runtime/config";
import { proofWords, taskRegistryInterface } from "../../workers/runtime/tasks";
import { verificationSchema } from "../../workers/verification/config";
import { VerificationNode } from "../../workers/verification/node";
import {
  contributeToBundle,
  loadManifest,
  loadProgram,
  proveBundle,
  releaseProver,
  verificationKeyWords,
} from "../../zkml";
import { cacheDir } from "../../zkml/prover/paths";

/** The sdk e2e's iris bundle (inline input), compiled with the development ptau and cached across runs. */
const IRIS = "test/fixtures/models/iris_mlp.onnx";
const IRIS_INPUT = [-0.052506, -0.592373, 0.762758, 1.580464];
const DEV_LINE =
  "setup: DEVELOPMENT (single-machine trusted setup): whoever ran compile could forge proofs for this model";
const BUNDLE_HASH = "0x" + "ab".repeat(32);
const NODE = "0x" + "22".repeat(20);

/**
 * A verified task of the iris model as the chain would show it (the TaskVerified log, the submitResult
 * calldata with a real proof) and audit dependencies that serve it without a chain.
 */
async function verifiedTask(dir: string) {
  const binding = 12345n;
  const proved = await proveBundle(dir, [IRIS_INPUT], binding, { reference: false });
  const layout = loadManifest(dir).publicSignals;
  const signals = proved.publicSignals.map(BigInt);
  const outputs = signals.slice(0, layout.outputWords);
  const input = signals.slice(layout.outputWords, layout.outputWords + layout.inputWords);
  const task = {
    requester: ethers.ZeroAddress,
    modelId: 1n,
    fee: 1n,
    deadline: 2_000_000_000n,
    verificationKey: ethers.ZeroAddress,
    royaltyReceiver: ethers.ZeroAddress,
    callback: ethers.ZeroAddress,
    callbackGasLimit: 0n,
    outputWords: BigInt(layout.outputWords),
    protocolFeeBps: 1000n,
    royaltyBps: 1000n,
    inputHash: ethers.ZeroHash,
    inputDataHash: ethers.ZeroHash,
    mode: 1n,
    attestationQuorum: 0n,
    attesterFeeBps: 0n,
  };
  // One settling transaction per task (its hash is the task id), each submitting that task's result: the
  // audit reads the submission of the log's own task from the calldata.
  const calldataOf = (taskId: bigint) =>
    taskRegistryInterface.encodeFunctionData("submitResult", [
      taskId,
      task,
      input,
      outputs,
      proofWords(proved.proof),
    ]);
  const logOf = (taskId: bigint, block: number) => {
    const event = taskRegistryInterface.encodeEventLog("TaskVerified", [taskId, NODE, outputs, 0n, 0n, 0n]);
    return { ...event, blockNumber: block, transactionHash: ethers.toBeHex(taskId, 32) } as unknown as Log;
  };
  const vk = JSON.parse(fs.readFileSync(path.join(dir, "verification_key.json"), "utf8"));
  const bundle: LoadedBundle = {
    dir,
    manifest: loadManifest(dir),
    program: loadProgram(dir),
    verificationKeyHash: "",
  };
  const deps = (setups: SetupChecks): AuditDeps => ({
    provider: {
      getTransaction: async (hash: string) => ({ data: calldataOf(BigInt(hash)) }),
    } as unknown as Provider,
    models: {
      verificationKeyOf: async () => verificationKeyWords(vk),
      getModel: async () => ({ bundleHash: BUNDLE_HASH }),
    } as unknown as Chain["models"],
    tasks: { taskBinding: async () => binding } as unknown as Chain["tasks"],
    bundles: { inspect: async () => ({ bundle, problems: [] }) } as unknown as BundleCache,
    data: {} as DataClient,
    setups,
  });
  return { logOf, deps };
}

describe("audit: the model's trusted setup", function () {
  this.timeout(300_000);
  let bundleDir: string;
  let work: string;

  before(async function () {
    bundleDir = await fixtureBundle(IRIS);
    work = fs.mkdtempSync(path.join(os.tmpdir(), "opg-audit-setup-"));
  });

  after(async function () {
    fs.rmSync(work, { recursive: true, force: true });
    await releaseProver(); // the proofs and setup checks started snarkjs's threads
  });

  it("says DEVELOPMENT for a bundle compiled with the development ptau and names compile's contribution", async function () {
    const setup = await checkBundleSetup(bundleDir);
    expect(setup).to.include({ trust: "development", secure: false, zkeyVerified: null });
    expect(setup.phase2).to.deep.equal({ count: 1, contributors: ["opg zkml compile"] });
    expect(setup.whoCanForge).to.match(/development ptau's toxic waste/);
    expect(setup.summary).to.equal(`${DEV_LINE}; phase 2: 1 contribution(s) ('opg zkml compile')`);
  });

  it("verifies the zkey only against a ptau given to it", async function () {
    const ptau = path.join(cacheDir(), "ptau", loadManifest(bundleDir).ptau!.file);
    const setup = await checkBundleSetup(bundleDir, { ptau });
    expect(setup).to.include({
      trust: "development",
      checkedFrom: "file",
      zkeyVerified: true,
      secure: false,
    });
    const missing = await checkBundleSetup(bundleDir, { ptau: path.join(work, "none.ptau") });
    expect(missing).to.include({ trust: "unknown", secure: false });
    expect(missing.summary).to.match(
      /^setup: UNKNOWN: the setup could not be checked \(ptau file .* does not exist\)$/,
    );
  });

  it("counts and names a phase-2 contribution made after compile", async function () {
    const dir = path.join(work, "contributed");
    fs.cpSync(bundleDir, dir, { recursive: true });
    await contributeToBundle(dir, { name: "alice" });
    const setup = await checkBundleSetup(dir);
    expect(setup.phase2).to.deep.equal({ count: 2, contributors: ["opg zkml compile", "alice"] });
    // a phase-2 contribution does not help while phase 1 is the development ptau
    expect(setup).to.include({ trust: "development", secure: false });
    expect(setup.summary).to.equal(`${DEV_LINE}; phase 2: 2 contribution(s) ('opg zkml compile', 'alice')`);
  });

  it("checks each bundle once", async function () {
    const checks = new SetupChecks();
    const first = checks.of("a", bundleDir);
    expect(checks.of("a", bundleDir)).to.equal(first);
    expect(checks.of("b", bundleDir)).to.not.equal(first);
    expect((await first).trust).to.equal("development");
  });

  describe("in an audit and the verification node", function () {
    let task: Awaited<ReturnType<typeof verifiedTask>>;

    before(async function () {
      task = await verifiedTask(bundleDir);
    });

    it("reports the setup beside agree: a development setup leaves agree true, setupSecure false", async function () {
      const report = await auditVerifiedLog(task.deps(new SetupChecks()), task.logOf(1n, 10));
      expect(report).to.include({
        proofValid: true,
        bundleMatches: true,
        outputMatches: true,
        agree: true,
        setupSecure: false,
      });
      expect(report!.setup).to.include({ trust: "development", secure: false });
      expect(report!.setup!.phase2.contributors).to.deep.equal(["opg zkml compile"]);
      expect(report!.setup!.summary).to.match(new RegExp(`^${DEV_LINE.replace(/[()]/g, "\\$&")}`));
    });

    it("verification node: warns once per model and sets opg_model_setup_secure{model}", async function () {
      const state = path.join(work, "verification");
      const deploymentFile = path.join(work, "deployment.json");
      const address = "0x" + "44".repeat(20);
      fs.writeFileSync(
        deploymentFile,
        JSON.stringify({ token: address, staking: address, models: address, tasks: address }),
      );
      const config = loadConfig(verificationSchema, {
        env: {},
        overrides: {
          privateKey: "0x" + "11".repeat(32),
          rpcUrl: "http://127.0.0.1:1",
          deployment: deploymentFile,
          stateDir: state,
        },
      });
      const lines: { level: number; msg: string; trust?: string }[] = [];
      const log = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l)) });
      const node = new VerificationNode(config, log);
      // the node's chain reads replaced by the chain-free ones above; nothing is started
      const inner = node as unknown as {
        auditDeps: AuditDeps;
        onLogs(logs: Log[]): Promise<void>;
        http: { registry: { getSingleMetricAsString(name: string): Promise<string> } };
      };
      inner.auditDeps = task.deps(new SetupChecks());
      try {
        await inner.onLogs([task.logOf(1n, 10), task.logOf(2n, 11)]);
        expect(node.reports().map((r) => [r.taskId, r.agree, r.setupSecure])).to.deep.equal([
          ["1", true, false],
          ["2", true, false],
        ]);
        const setupLines = lines.filter((l) => /setup: /.test(l.msg));
        expect(setupLines).to.have.length(1);
        expect(setupLines[0]).to.include({ level: 40, trust: "development" });
        expect(setupLines[0].msg).to.match(/^model 1 setup: DEVELOPMENT/);
        const gauge = await inner.http.registry.getSingleMetricAsString("opg_model_setup_secure");
        expect(gauge).to.match(/^opg_model_setup_secure\{model="1"\} 0$/m);
      } finally {
        await node.stop();
      }
    });
  });
});
