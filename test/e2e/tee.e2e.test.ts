import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers, type Wallet } from "ethers";
import { packValues } from "../../zkml";
import { loadPlainManifest, quantizePlainInput, runPlainBundle } from "../../zkml/plain-bundle";
import { DEV_ENCLAVE_MEASUREMENT, DevEnclave, listKeyRecords } from "../../tee";
import { Journal } from "../../workers/runtime/journal";
import { parseSubmitted, TOPICS } from "../../workers/runtime/tasks";
import {
  account,
  stakeNode,
  startInferenceNode,
  startNetwork,
  stopAllSpawned,
  waitFor,
  type Network,
  type Proc,
} from "../../network/local-network";
import { runOpg } from "../helpers/cli";
import { OpgClient } from "../../sdk";

/**
 * TEE mode end to end with real processes: a model WITHOUT a circuit (digits_transformer.onnx, which the ZKML
 * compiler refuses) packaged as a plain bundle with `opg model package`, uploaded and registered for TEE mode
 * only with `opg model register --modes tee`, served by an inference node with its development enclave
 * (`--enclave dev`, which registers the enclave key at start), and settled on chain by the enclave's signature
 * (TaskEnclaveSigned). The outputs must equal onnxruntime's quantized outputs computed here.
 */

const MODEL = "test/fixtures/models/digits_transformer.onnx";
const FEE = ethers.parseEther("1");
const Status = { Verified: 3n };
const VERIFICATION_MODE_TEE = 4;
const samples = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "digits_transformer_test.json"), "utf8"),
) as { scale: number; inputs: number[][]; predictions: number[] };

const NODE = 5;
const MODEL_OWNER = 3;

describe("TEE mode end to end (hardhat node + inference node with the development enclave)", function () {
  this.timeout(600_000);
  let net: Network;
  let bundleDir: string;
  let modelId: bigint;
  let requester: Wallet;
  const procs: Proc[] = [];

  const conn = () => [
    "--rpc-url",
    net.chain.url,
    "--deployment",
    net.deploymentFile,
    "--data-url",
    net.data.url,
  ];

  before(async function () {
    net = await startNetwork();
    await stakeNode(net, NODE);
    requester = account(1).connect(net.provider) as unknown as Wallet;
    const { token, tasks } = net.deployment;
    await (await token.connect(net.deployer).transfer(requester.address, ethers.parseEther("10000"))).wait();
    await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
  });

  afterEach(async function () {
    for (const p of procs.splice(0)) await p.stop("SIGKILL").catch(() => undefined);
  });

  after(async function () {
    await stopAllSpawned();
    await net?.stop();
  });

  it("packages the model without a circuit and registers it for TEE mode only", async function () {
    bundleDir = path.join(net.tmp, "digits-transformer");
    const packaged = await runOpg(["model", "package", MODEL, "--out", bundleDir]);
    expect(packaged.code, packaged.stderr).to.equal(0);
    expect(JSON.parse(packaged.stdout)).to.deep.include({ kind: "plain", scaleBits: 8, packBits: 16 });
    expect(fs.readdirSync(bundleDir).sort()).to.deep.equal(["manifest.json", "model.onnx"]);

    const registered = await runOpg(
      ["model", "register", bundleDir, "--fee", "1", "--modes", "tee", ...conn()],
      {
        env: { OPG_PRIVATE_KEY: account(MODEL_OWNER).privateKey },
      },
    );
    expect(registered.code, registered.stderr).to.equal(0);
    const out = JSON.parse(registered.stdout);
    expect(out).to.deep.include({ kind: "plain", verificationModes: ["tee"], verificationKey: null });
    modelId = BigInt(out.modelId);
    const model = await net.deployment.models.getModel(modelId);
    expect(model.terms.verificationModes).to.equal(BigInt(VERIFICATION_MODE_TEE));
    expect(model.onnxHash).to.equal("0x" + loadPlainManifest(bundleDir).onnx.sha256);
    expect(model.bundleHash).to.equal("0x" + out.bundleId);
  });

  it("settles tasks with the enclave's signature; outputs equal onnxruntime's quantized outputs", async function () {
    expect(typeof modelId, "the model was registered by the test before").to.equal("bigint");
    const node = account(NODE);
    const inference = startInferenceNode(net, NODE, path.join(net.tmp, "inference"), {
      extra: ["--enclave", "dev"],
    });
    procs.push(inference);

    // The node registers its development enclave key at start; a local chain makes it Active at once.
    const key = await waitFor(
      "the node's enclave key to be registered and active",
      async () => {
        const keys = await listKeyRecords(net.deployment.enclaves, { node: node.address });
        return keys.find((k) => k.standing === "Active");
      },
      120_000,
      200,
      inference,
    );
    expect(key.measurement).to.equal(DEV_ENCLAVE_MEASUREMENT);

    const manifest = loadPlainManifest(bundleDir);
    const submitted: { taskId: bigint; expected: bigint[]; prediction: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const q = quantizePlainInput(
        manifest,
        samples.inputs[i].map((v) => v * samples.scale),
      );
      const outputs = await runPlainBundle(bundleDir, q);
      const now = (await net.provider.getBlock("latest"))!.timestamp;
      // submitTask picks the strongest mode the model allows: TEE, its only one.
      const receipt = await (
        await net.deployment.tasks.connect(requester).submitTask({
          modelId,
          input: packValues(q, manifest.publicSignals.packBits),
          inputDataHash: ethers.ZeroHash,
          fee: FEE,
          deadline: now + 3600,
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        })
      ).wait();
      const log = receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!;
      const argmax = outputs.reduce((best, x, j) => (x > outputs[best] ? j : best), 0);
      submitted.push({
        taskId: parseSubmitted(log).taskId,
        expected: packValues(outputs, manifest.publicSignals.packBits),
        prediction: argmax,
      });
      expect(argmax, `sample ${i}`).to.equal(samples.predictions[i]);
    }

    const tasks = net.deployment.tasks;
    await waitFor(
      `tasks ${submitted.map((s) => s.taskId).join(", ")} verified`,
      async () => {
        for (const s of submitted) if ((await tasks.taskStatus(s.taskId)) !== Status.Verified) return false;
        return true;
      },
      300_000,
      200,
      inference,
    );
    for (const s of submitted) {
      const result = await tasks.resultOf(s.taskId);
      expect(result.node).to.equal(node.address);
      expect(result.outputs).to.deep.equal(s.expected);
      const signed = await tasks.queryFilter(tasks.filters.TaskEnclaveSigned(s.taskId), 0, "latest");
      expect(signed, `TaskEnclaveSigned for task ${s.taskId}`).to.have.length(1);
      expect(signed[0].args.key).to.equal(key.key);
    }

    // A dapp does the same through the SDK with float inputs: it quantizes with the plain bundle's manifest,
    // waits, decodes the signed outputs, and an audit says what the enclave signature does and does not show.
    const client = new OpgClient({
      runner: requester,
      deployment: net.deploymentFile,
      dataUrl: net.data.url,
      cacheDir: path.join(net.tmp, "sdk"),
    });
    try {
      const sample = 3;
      const viaSdk = await client.submit(
        modelId,
        samples.inputs[sample].map((v) => v * samples.scale),
        { mode: "tee", fee: FEE },
      );
      expect(viaSdk.mode).to.equal("tee");
      const result = await client.waitForResult(viaSdk.taskId, { timeoutMs: 300_000 });
      expect(result.mode).to.equal("tee");
      expect(result.settledBy).to.equal("enclave-signature");
      expect(result.enclaveKey).to.equal(key.key);
      const q = quantizePlainInput(
        manifest,
        samples.inputs[sample].map((v) => v * samples.scale),
      );
      const expected = await runPlainBundle(bundleDir, q);
      expect(result.quantized).to.deep.equal(expected);
      expect(result.argmax).to.equal(samples.predictions[sample]);
      const report = await client.audit(viaSdk.taskId);
      expect(
        report.agree,
        JSON.stringify(report, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
      ).to.equal(true);
      expect(report.mode).to.equal("tee");
      expect(report.notChecked.join(" ")).to.match(/enclave ran the model/);
      // Asking for a mode the model does not allow is refused before anything is sent.
      let refusal = "";
      try {
        await client.submit(modelId, samples.inputs[0], { mode: "zk" });
      } catch (e) {
        refusal = (e as Error).message;
      }
      expect(refusal).to.match(/does not allow zk mode: it allows tee/);
    } finally {
      await client.close();
    }

    // Anyone can re-check the key's published document: a development attestation, accepted on a local chain.
    const checked = await runOpg(["tee", "check-key", key.key, ...conn()]);
    expect(checked.code, checked.stderr).to.equal(0);
    expect(JSON.parse(checked.stdout)).to.deep.include({
      verdict: "development",
      kind: "development",
      standing: "Active",
    });
    expect(checked.stderr).to.match(/development attestation: not hardware-backed/);
    const listed = await runOpg(["tee", "keys", "--check", ...conn()]);
    expect(listed.code, listed.stderr).to.equal(0);
    expect(JSON.parse(listed.stdout)).to.deep.equal([
      {
        key: key.key,
        node: node.address,
        standing: "Active",
        measurement: DEV_ENCLAVE_MEASUREMENT,
        activeFrom: key.activeFrom.toString(),
        expiresAt: key.expiresAt.toString(),
        kind: "development",
        verdict: "development",
      },
    ]);

    expect(await inference.stop()).to.equal(0);
  });
  it("opg tee: an operator registers a development key; a watcher finds a forged document and challenges it", async function () {
    const operator = await stakeNode(net, 6);
    const stateDir = path.join(net.tmp, "operator-6-enclave");
    const env = { OPG_PRIVATE_KEY: operator.privateKey };
    const reg = await runOpg(
      ["tee", "register-key", "--state-dir", stateDir, "--lifetime", "86400", ...conn()],
      { env },
    );
    expect(reg.code, reg.stderr).to.equal(0);
    const honest = JSON.parse(reg.stdout);
    expect(honest).to.deep.include({
      node: operator.address,
      standing: "Active",
      measurement: DEV_ENCLAVE_MEASUREMENT,
    });
    expect(fs.statSync(path.join(stateDir, "enclave-key.json")).mode & 0o777).to.equal(0o600);
    // Run again: the key is registered and has its lifetime ahead, so nothing is sent.
    const again = await runOpg(["tee", "register-key", "--state-dir", stateDir, ...conn()], { env });
    expect(again.code, again.stderr).to.equal(0);
    expect(JSON.parse(again.stdout).key).to.equal(honest.key);

    // The operator registers a second key with a document that names another key: the registry cannot tell.
    const enclaves = net.deployment.enclaves.connect(operator);
    const held = DevEnclave.loadOrCreate(path.join(net.tmp, "operator-6-second"));
    const other = DevEnclave.loadOrCreate(path.join(net.tmp, "someone-else"));
    const document = other.attestationDocument();
    const expiresAt = BigInt((await net.provider.getBlock("latest"))!.timestamp + 86_400);
    const digest = await enclaves.registrationDigest(
      operator.address,
      held.address,
      DEV_ENCLAVE_MEASUREMENT,
      ethers.keccak256(document),
      expiresAt,
    );
    await (
      await enclaves.registerKey(
        held.address,
        DEV_ENCLAVE_MEASUREMENT,
        expiresAt,
        document,
        held.signDigest(digest),
      )
    ).wait();

    const forged = await runOpg(["tee", "check-key", held.address, ...conn()]);
    expect(forged.code, forged.stderr).to.equal(3);
    expect(JSON.parse(forged.stdout)).to.deep.include({ verdict: "invalid", standing: "Active" });
    expect(forged.stderr).to.include(`problem: the document does not name key ${held.address}`);

    const watcher = account(8);
    await (
      await net.deployment.token.connect(net.deployer).transfer(watcher.address, ethers.parseEther("1000"))
    ).wait();
    const watcherEnv = { OPG_PRIVATE_KEY: watcher.privateKey };
    const refused = await runOpg(["tee", "challenge-key", honest.key, "--reason", "no reason", ...conn()], {
      env: watcherEnv,
    });
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(/document checks out \(development\): a challenge would lose its bond/);

    const challenged = await runOpg(
      ["tee", "challenge-key", held.address, "--reason", "the document names another key", ...conn()],
      { env: watcherEnv },
    );
    expect(challenged.code, challenged.stderr).to.equal(0);
    expect(JSON.parse(challenged.stdout)).to.deep.include({
      key: held.address,
      challenger: watcher.address,
      standing: "Challenged",
    });
    const bond = await net.deployment.enclaves.challengeBond();
    expect(await net.deployment.token.balanceOf(watcher.address)).to.equal(ethers.parseEther("1000") - bond);
  });

  it("a TEE claim that lapsed under a key challenge is refused by the inference node, not taken over", async function () {
    expect(typeof modelId, "the model was registered by the test before").to.equal("bigint");
    const { tasks, enclaves, token } = net.deployment;
    // The operator staked and registered a key in the test before.
    const operator = account(6).connect(net.provider);
    const startBlock = await net.provider.getBlockNumber();
    const manifest = loadPlainManifest(bundleDir);
    const q = quantizePlainInput(
      manifest,
      samples.inputs[0].map((v) => v * samples.scale),
    );
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await tasks.connect(requester).submitTask({
        modelId,
        input: packValues(q, manifest.publicSignals.packBits),
        inputDataHash: ethers.ZeroHash,
        fee: FEE,
        deadline: now + 3 * 3600,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0,
      })
    ).wait();
    const s = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
    await (await tasks.connect(operator).claimTask(s.taskId, s.task)).wait();

    // While the claim runs, a key of the operator's is challenged (one registered with a document naming
    // another key), and the claim lapses.
    const held = DevEnclave.loadOrCreate(path.join(net.tmp, "operator-6-third"));
    const document = DevEnclave.loadOrCreate(path.join(net.tmp, "someone-else")).attestationDocument();
    const expiresAt = BigInt(now + 86_400);
    const digest = await enclaves.registrationDigest(
      operator.address,
      held.address,
      DEV_ENCLAVE_MEASUREMENT,
      ethers.keccak256(document),
      expiresAt,
    );
    await (
      await enclaves
        .connect(operator)
        .registerKey(held.address, DEV_ENCLAVE_MEASUREMENT, expiresAt, document, held.signDigest(digest))
    ).wait();
    const watcher = account(8).connect(net.provider);
    const bond = await enclaves.challengeBond();
    await (await token.connect(net.deployer).transfer(watcher.address, bond)).wait();
    await (await token.connect(watcher).approve(await enclaves.getAddress(), bond)).wait();
    await (
      await enclaves.connect(watcher).challengeKey(held.address, "the document names another key")
    ).wait();
    const [, claimExpiresAt] = await tasks.claimOf(s.taskId);
    const later = (await net.provider.getBlock("latest"))!.timestamp;
    await net.provider.send("evm_increaseTime", [Number(claimExpiresAt) - later + 5]);
    await net.provider.send("evm_mine", []);

    // The inference node watches the claim, sees it lapse, and would take the task over: the registry
    // refuses (nobody earns a task lapsed through a challenge), and the node gives the task up at once.
    const dir = path.join(net.tmp, "inference-lapsed");
    const inference = startInferenceNode(net, NODE, dir, {
      extra: ["--enclave", "dev", "--start-block", String(startBlock)],
    });
    procs.push(inference);
    const refusals = () =>
      inference
        .logs()
        .filter(
          (l) =>
            l.msg === "task refused: its lapsed claim is under challenge" && l.taskId === s.taskId.toString(),
        );
    await waitFor("the take-over refused", async () => refusals().length > 0, 120_000, 200, inference);
    expect(String(refusals()[0].reason)).to.match(/TaskRegistryClaimUnderChallenge/);
    // Not retried: a few polls later it is still the one refusal, and the task is still the operator's lapsed claim.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(refusals()).to.have.length(1);
    expect(await tasks.taskStatus(s.taskId)).to.equal(2n); // Claimed (lapsed)
    const claims = await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId));
    expect(claims.map((c) => c.args.node)).to.deep.equal([operator.address]);
    expect(await inference.stop()).to.equal(0);
    const journal = new Journal(path.join(dir, "journal.db"));
    try {
      expect(journal.task(s.taskId)).to.include({ state: "refused" });
    } finally {
      journal.close();
    }
  });
});
