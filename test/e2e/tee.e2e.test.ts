import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import Database from "better-sqlite3";
import { ethers, solidityPackedKeccak256, type Interface, type Wallet } from "ethers";
import { packValues } from "../../zkml";
import { loadPlainManifest, quantizePlainInput, runPlainBundle } from "../../zkml/plain-bundle";
import { DEV_ENCLAVE_MEASUREMENT, DevEnclave, listKeyRecords } from "../../tee";
import { parseSubmitted, readVerifiedResult, TOPICS } from "../../workers/runtime/tasks";
import {
  account,
  stakeNode,
  startInferenceNode,
  startNetwork,
  stopAllSpawned,
  waitFor,
  waitForLog,
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
const Status = { Open: 1n, Verified: 3n };
/** IEnclaveRegistry.KeyStanding.Challenged. */
const CHALLENGED = 3;
/** What an inference node with `--enclave dev` logs once its enclave key is registered and Active. */
const ENCLAVE_READY =
  "TEE mode: signing with the DEVELOPMENT enclave key (no hardware isolation; local chains only)";
const VERIFICATION_MODE_TEE = 4;
const samples = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "digits_transformer_test.json"), "utf8"),
) as { scale: number; inputs: number[][]; predictions: number[] };

const NODE = 5;
const MODEL_OWNER = 3;

/**
 * The order in which the inference nodes serve a TEE task (issue 21: no claim): sorted by
 * keccak256(taskId, node), written here from the rule rather than imported from the node.
 */
function orderOf(taskId: bigint, nodes: readonly string[]): string[] {
  const key = (n: string) => solidityPackedKeccak256(["uint256", "address"], [taskId, n]);
  return [...nodes].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}

/** A node's journal rows and the transactions it sent (journal.db, read only). */
function readJournal(dir: string) {
  const db = new Database(path.join(dir, "journal.db"), { readonly: true, fileMustExist: true });
  try {
    const tasks = db.prepare("SELECT taskId, state, reason FROM tasks").all() as {
      taskId: string;
      state: string;
      reason: string | null;
    }[];
    const txs = db.prepare("SELECT hash, kind, taskId, status FROM txs").all() as {
      hash: string;
      kind: string;
      taskId: string | null;
      status: string;
    }[];
    return { tasks, txs, task: (id: bigint) => tasks.find((t) => t.taskId === id.toString()) };
  } finally {
    db.close();
  }
}

/** The custom error a call reverts with, as `Name(arg, ...)`, or undefined when it does not revert. */
async function revertOf(call: Promise<unknown>, iface: Interface): Promise<string | undefined> {
  try {
    await call;
    return undefined;
  } catch (e) {
    const data = (e as { data?: string }).data;
    const parsed = data ? iface.parseError(data) : null;
    if (!parsed) return (e as Error).message;
    return `${parsed.name}(${parsed.args.map(String).join(", ")})`;
  }
}

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
      const result = await readVerifiedResult(tasks, s.taskId);
      expect(result, `verified result of task ${s.taskId}`).to.not.equal(null);
      expect(result!.node).to.equal(node.address);
      expect(result!.outputs).to.deep.equal(s.expected);
      expect(await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId)), "no claim").to.have.length(0);
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

  it("a TEE task: a challenged key's signature is refused and the task stays open; its first node down, the next in its order serves it after one slot; nobody claims or loses collateral", async function () {
    expect(typeof modelId, "the model was registered by the test before").to.equal("bigint");
    const { tasks, enclaves, token, staking } = net.deployment;
    // The operator staked and registered a key in the test before: nodes 5 and 6 serve TEE tasks.
    const operator = account(6).connect(net.provider);
    const [a, b] = [account(NODE).address, operator.address];
    const nodes = [a, b];
    for (const n of nodes)
      expect(await staking.isEligible(n, 0), `${n} an eligible inference node`).to.equal(true);
    const startBlock = await net.provider.getBlockNumber();
    const manifest = loadPlainManifest(bundleDir);
    async function submit(sample: number) {
      const q = quantizePlainInput(
        manifest,
        samples.inputs[sample].map((v) => v * samples.scale),
      );
      const expected = packValues(await runPlainBundle(bundleDir, q), manifest.publicSignals.packBits);
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
      return { ...parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!), expected };
    }
    async function waitVerified(ids: bigint[], proc: Proc) {
      await waitFor(
        `tasks ${ids.join(", ")} verified`,
        async () => {
          for (const id of ids) if ((await tasks.taskStatus(id)) !== Status.Verified) return false;
          return true;
        },
        300_000,
        200,
        proc,
      );
    }
    const bonded = async () => Promise.all(nodes.map(async (n) => (await staking.nodeInfo(n)).bonded));
    const bondedBefore = await bonded();

    // The test's task must have node 6 (down) first in its order: ids before it go to tasks node 5 is first on.
    const fillers = [];
    while (orderOf((await tasks.taskCount()) + 1n, nodes)[0] !== b)
      fillers.push(await submit(10 + fillers.length));
    const s = await submit(0);
    expect(orderOf(s.taskId, nodes)).to.deep.equal([b, a]);

    // A key of the operator's is challenged (one registered with a document naming another key): its
    // signature over the true outputs is refused, and the task stays open for a node with an Active key.
    const held = DevEnclave.loadOrCreate(path.join(net.tmp, "operator-6-third"));
    const document = DevEnclave.loadOrCreate(path.join(net.tmp, "someone-else")).attestationDocument();
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const expiresAt = BigInt(now + 86_400);
    const registration = await enclaves.registrationDigest(
      operator.address,
      held.address,
      DEV_ENCLAVE_MEASUREMENT,
      ethers.keccak256(document),
      expiresAt,
    );
    await (
      await enclaves
        .connect(operator)
        .registerKey(
          held.address,
          DEV_ENCLAVE_MEASUREMENT,
          expiresAt,
          document,
          held.signDigest(registration),
        )
    ).wait();
    const watcher = account(8).connect(net.provider);
    const bond = await enclaves.challengeBond();
    await (await token.connect(net.deployer).transfer(watcher.address, bond)).wait();
    await (await token.connect(watcher).approve(await enclaves.getAddress(), bond)).wait();
    await (
      await enclaves.connect(watcher).challengeKey(held.address, "the document names another key")
    ).wait();
    const digest = await tasks.teeResultDigest(
      s.taskId,
      operator.address,
      s.task.inputHash,
      "0x" + manifest.onnx.sha256,
      s.expected,
    );
    const refused = await revertOf(
      tasks
        .connect(operator)
        .submitResultTee.staticCall(s.taskId, s.task, s.expected, held.signDigest(digest)),
      tasks.interface,
    );
    expect(refused).to.equal(`TaskRegistryEnclaveKeyRejected(${s.taskId}, ${held.address}, ${CHALLENGED})`);
    expect(await tasks.taskStatus(s.taskId)).to.equal(Status.Open);

    // Node 6 is down. Node 5, second in the order, waits one slot (1 s) for it, then serves the task.
    const dir = path.join(net.tmp, "inference-next");
    const inference = startInferenceNode(net, NODE, dir, {
      extra: ["--enclave", "dev", "--start-block", String(startBlock), "--assign-slot-ms", "1000"],
    });
    procs.push(inference);
    await waitVerified([s.taskId, ...fillers.map((f) => f.taskId)], inference);
    for (const t of [s, ...fillers]) {
      const verified = await tasks.queryFilter(tasks.filters.TaskVerified(t.taskId));
      expect(
        verified.map((v) => v.args.node),
        `task ${t.taskId}`,
      ).to.deep.equal([a]);
      expect((await readVerifiedResult(tasks, t.taskId))!.outputs).to.deep.equal(t.expected);
      const [signed] = await tasks.queryFilter(tasks.filters.TaskEnclaveSigned(t.taskId));
      expect((await enclaves.keyStatus(signed.args.key))[0], "signed by a key of node 5").to.equal(a);
      expect(await tasks.queryFilter(tasks.filters.TaskClaimed(t.taskId)), "no claim").to.have.length(0);
      expect(await tasks.claimOf(t.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
    }
    expect(
      await bonded(),
      "no collateral locked or slashed, the challenged operator's included",
    ).to.deep.equal(bondedBefore);
    expect(await inference.stop()).to.equal(0);
    const journal = readJournal(dir);
    expect(journal.task(s.taskId)).to.include({ state: "verified" });
    expect(
      journal.txs.filter((t) => t.status === "reverted"),
      "no reverted transaction",
    ).to.deep.equal([]);
  });

  it("two TEE nodes alive serve each task once, each by the first node in its order: no duplicated work", async function () {
    expect(typeof modelId, "the model was registered by the test before").to.equal("bigint");
    const { tasks, staking } = net.deployment;
    const [a, b] = [account(NODE).address, account(6).address];
    for (const n of [a, b]) expect(await staking.isEligible(n, 0)).to.equal(true);
    const startBlock = await net.provider.getBlockNumber();
    // A slot far longer than a TEE task takes, even on a loaded machine: served once by the order, not timing.
    const opts = (extra: string[] = []) => ({
      extra: ["--enclave", "dev", "--start-block", String(startBlock), "--assign-slot-ms", "15000", ...extra],
    });
    const dirs = { [a]: path.join(net.tmp, "inference-both-5"), [b]: path.join(net.tmp, "inference-both-6") };
    const procsByNode = {
      [a]: startInferenceNode(net, NODE, dirs[a], opts()),
      [b]: startInferenceNode(net, 6, dirs[b], opts()),
    };
    procs.push(...Object.values(procsByNode));
    // Both enclave keys registered and Active before any task: a node without one would skip TEE tasks.
    for (const proc of Object.values(procsByNode)) await waitForLog(proc, ENCLAVE_READY, 120_000);
    const manifest = loadPlainManifest(bundleDir);
    const submitted: { taskId: bigint; expected: bigint[] }[] = [];
    for (let i = 4; i < 8; i++) {
      const q = quantizePlainInput(
        manifest,
        samples.inputs[i].map((v) => v * samples.scale),
      );
      const expected = packValues(await runPlainBundle(bundleDir, q), manifest.publicSignals.packBits);
      const now = (await net.provider.getBlock("latest"))!.timestamp;
      const receipt = await (
        await tasks.connect(requester).submitTask({
          modelId,
          input: packValues(q, manifest.publicSignals.packBits),
          inputDataHash: ethers.ZeroHash,
          fee: FEE,
          deadline: now + 3600,
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        })
      ).wait();
      submitted.push({
        taskId: parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!).taskId,
        expected,
      });
    }
    await waitFor(
      `tasks ${submitted.map((s) => s.taskId).join(", ")} verified`,
      async () => {
        for (const s of submitted) if ((await tasks.taskStatus(s.taskId)) !== Status.Verified) return false;
        return true;
      },
      300_000,
      200,
    );
    const firsts = new Map<string, string>();
    for (const s of submitted) {
      const first = orderOf(s.taskId, [a, b])[0];
      firsts.set(s.taskId.toString(), first);
      const verified = await tasks.queryFilter(tasks.filters.TaskVerified(s.taskId));
      expect(
        verified.map((v) => v.args.node),
        `task ${s.taskId}: the first node in its order`,
      ).to.deep.equal([first]);
      expect(await tasks.queryFilter(tasks.filters.TaskEnclaveSigned(s.taskId))).to.have.length(1);
      expect((await readVerifiedResult(tasks, s.taskId))!.outputs).to.deep.equal(s.expected);
      expect(await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId)), "no claim").to.have.length(0);
    }
    // The model ran once per task, on the node that settled it: the other node never started it.
    const executions: Record<string, number> = {};
    for (const [node, proc] of Object.entries(procsByNode)) {
      const port = proc.logs().find((l) => l.msg === "metrics and health listening")!.port;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith('opg_stage_seconds_count{stage="execute"} '));
      executions[node] = line ? Number(line.split(" ")[1]) : 0;
    }
    const wins = (node: string) => [...firsts.values()].filter((f) => f === node).length;
    expect(executions, "model runs per node").to.deep.equal({ [a]: wins(a), [b]: wins(b) });
    for (const proc of Object.values(procsByNode)) expect(await proc.stop()).to.equal(0);
    for (const node of [a, b]) {
      const journal = readJournal(dirs[node]);
      const ids = submitted.map((s) => s.taskId.toString());
      const mine = ids.filter((id) => firsts.get(id) === node);
      for (const id of ids) {
        const row = journal.task(BigInt(id));
        expect(row, `${node}: task ${id}`).to.include({ state: mine.includes(id) ? "verified" : "lost" });
      }
      // A node sent a result only for its own tasks, once each, and nothing reverted.
      const sent = journal.txs.filter((t) => t.taskId !== null && ids.includes(t.taskId));
      expect(sent.map((t) => t.taskId).sort(), `${node}: results sent`).to.deep.equal([...mine].sort());
      expect(
        journal.txs.filter((t) => t.status === "reverted"),
        `${node}: reverted`,
      ).to.deep.equal([]);
    }
  });
});
