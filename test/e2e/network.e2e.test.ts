import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import Database from "better-sqlite3";
import { ethers, solidityPackedKeccak256, type Wallet } from "ethers";
import {
  executeQuantized,
  inputCommitment,
  inputWords,
  loadManifest,
  loadProgram,
  packValues,
} from "../../zkml";
import { sha256File } from "../../zkml/bundle";
import { RiskGatedLender__factory } from "../../typechain-types";
import { DataClient } from "../../workers/data/client";
import { parseSubmitted, readVerifiedResult, TOPICS } from "../../workers/runtime/tasks";
import {
  account,
  fixtureBundle,
  publishModel,
  stakeNode,
  startInferenceNode,
  startNetwork,
  spawnProc,
  startVerificationNode,
  stopAllSpawned,
  waitFor,
  type Network,
  type Proc,
} from "../../network/local-network";
import { RpcProxy } from "../../scripts/lib/rpc-proxy";
import { bundleKeyWords } from "../../network/register-model";
import { Journal } from "../../workers/runtime/journal";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const FEE = ethers.parseEther("1");
const Status = { Open: 1n, Claimed: 2n, Verified: 3n, Expired: 4n };
/** NodeStaking.Role.Inference. */
const INFERENCE_ROLE = 0;

/**
 * The order in which the inference nodes serve a ZK task (issue 21: no claim): sorted by
 * keccak256(taskId, node), written here from the rule rather than imported, so a node that ranked otherwise
 * would fail the tests that use it.
 */
function orderOf(taskId: bigint, nodes: readonly string[]): string[] {
  const key = (n: string) => solidityPackedKeccak256(["uint256", "address"], [taskId, n]);
  return [...nodes].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}

/** What a node's journal (journal.db) holds: every task row and every transaction it sent. */
function readJournal(dir: string) {
  const db = new Database(path.join(dir, "journal.db"), { readonly: true, fileMustExist: true });
  try {
    const tasks = db.prepare("SELECT taskId, state, proof, reason FROM tasks").all() as {
      taskId: string;
      state: string;
      proof: string | null;
      reason: string | null;
    }[];
    const txs = db.prepare("SELECT hash, kind, taskId, status FROM txs ORDER BY sentAt").all() as {
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
const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;

describe("network end to end (hardhat node + worker processes)", function () {
  this.timeout(600_000);
  let net: Network;
  let bundleDir: string;
  let modelId: bigint;
  let requester: Wallet;
  const procs: Proc[] = [];

  function track(p: Proc) {
    procs.push(p);
    return p;
  }

  afterEach(async function () {
    // Whatever a test started and did not stop (it failed half way): kill it with its process group, so
    // the next test starts from a quiet chain and nothing outlives the suite.
    for (const p of procs.splice(0)) await p.stop("SIGKILL").catch(() => undefined);
  });

  before(async function () {
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    ({ modelId } = await publishModel(net, bundleDir, FEE));
    await stakeNode(net, 5);
    await stakeNode(net, 6);
    await stakeNode(net, 7, 2);
    requester = account(1).connect(net.provider) as unknown as Wallet;
    const { token, tasks } = net.deployment;
    await (await token.connect(net.deployer).transfer(requester.address, ethers.parseEther("10000"))).wait();
    await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
  });

  after(async function () {
    await stopAllSpawned();
    await net?.stop();
  });

  /** Submit a task on `model` with the i-th held-out iris sample; returns its id and expected output words. */
  async function submit(
    i: number,
    opts: {
      deadlineIn?: number;
      model?: bigint;
      dir?: string;
      mineByHand?: boolean;
      callback?: string;
      callbackGasLimit?: number;
    } = {},
  ) {
    const dir = opts.dir ?? bundleDir;
    const manifest = loadManifest(dir);
    const q = executeQuantized(loadProgram(dir), irisInputs[i % irisInputs.length]);
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const tx = await net.deployment.tasks.connect(requester).submitTask({
      modelId: opts.model ?? modelId,
      input: inputWords(manifest, q.input),
      inputDataHash: ethers.ZeroHash,
      fee: FEE,
      deadline: now + (opts.deadlineIn ?? 3600),
      callback: opts.callback ?? ethers.ZeroAddress,
      callbackGasLimit: opts.callbackGasLimit ?? 0,
    });
    // With automine off the test mines exactly one block for the submission, and nothing else.
    if (opts.mineByHand) await net.provider.send("evm_mine", []);
    const receipt = opts.mineByHand ? await net.provider.getTransactionReceipt(tx.hash) : await tx.wait();
    const log = receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!;
    return {
      taskId: parseSubmitted(log).taskId,
      expected: packValues(q.quantized, manifest.publicSignals.packBits),
    };
  }

  async function verifiedEvents(taskId: bigint) {
    const tasks = net.deployment.tasks;
    return tasks.queryFilter(tasks.filters.TaskVerified(taskId), 0, "latest");
  }

  async function waitVerified(taskIds: bigint[], timeoutMs = 300_000) {
    await waitFor(
      `tasks ${taskIds.join(", ")} verified`,
      async () => {
        for (const id of taskIds)
          if ((await net.deployment.tasks.taskStatus(id)) !== Status.Verified) return false;
        return true;
      },
      timeoutMs,
    );
  }

  function stateDir(name: string) {
    return path.join(net.tmp, name);
  }

  /** The eligible inference nodes, read from NodeStaking as the nodes read them for a task's order. */
  async function inferenceRoster(): Promise<string[]> {
    const { staking } = net.deployment;
    const all = await staking.nodesByRole(INFERENCE_ROLE, 0, Number(await staking.nodeCount(INFERENCE_ROLE)));
    const eligible = await Promise.all(all.map((n) => staking.isEligible(n, INFERENCE_ROLE)));
    return all.filter((_, i) => eligible[i]);
  }

  /** The value of `sample` (a metric line's name and labels) on a node's /metrics, 0 when absent. */
  async function metric(proc: Proc, sample: string): Promise<number> {
    const port = proc.logs().find((l) => l.msg === "metrics and health listening")?.port;
    if (port === undefined) return 0;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(sample + " "));
    return line ? Number(line.slice(sample.length + 1)) : 0;
  }

  /** Transactions a node's journal records as reverted, and its log lines about a reverted transaction. */
  function reverts(proc: Proc, dir: string) {
    return [
      ...readJournal(dir)
        .txs.filter((t) => t.status === "reverted")
        .map((t) => `${t.kind} ${t.hash} reverted`),
      ...proc
        .logs()
        .filter((l) => l.msg === "transaction reverted; reconciling with the chain")
        .map((l) => `task ${l.taskId}: ${l.reason}`),
    ];
  }

  it("settles every task a dapp submits, pays the node, and the verification node agrees", async function () {
    const inference = track(startInferenceNode(net, 5, stateDir("a-inference")));
    const verifier = track(startVerificationNode(net, 7, stateDir("a-verification")));
    const submitted = [];
    for (let i = 0; i < 4; i++) submitted.push(await submit(i));
    await waitVerified(submitted.map((s) => s.taskId));
    for (const s of submitted) {
      const result = await readVerifiedResult(net.deployment.tasks, s.taskId);
      expect(result, `verified result of task ${s.taskId}`).to.not.equal(null);
      expect(result!.node).to.equal(account(5).address);
      expect(result!.outputs).to.deep.equal(s.expected);
      expect(await verifiedEvents(s.taskId)).to.have.length(1);
    }
    expect(await net.deployment.tasks.creditsOf(account(5).address)).to.equal((FEE * 8n * 4n) / 10n);
    const reportsFile = path.join(stateDir("a-verification"), "reports.jsonl");
    const reports = await waitFor("verification reports", async () => {
      if (!fs.existsSync(reportsFile)) return undefined;
      const lines = fs
        .readFileSync(reportsFile, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
      return lines.length >= submitted.length ? lines : undefined;
    });
    for (const s of submitted) {
      const r = reports.find((x: { taskId: string }) => x.taskId === s.taskId.toString());
      expect(r, `report for task ${s.taskId}`).to.include({
        proofValid: true,
        outputMatches: true,
        agree: true,
      });
    }
    expect(await inference.stop()).to.equal(0);
    expect(await verifier.stop()).to.equal(0);
  });

  it("an on-chain dapp (RiskGatedLender) gets its verified output in a callback settled by a worker node", async function () {
    const borrower = account(8).address;
    const lender = await new RiskGatedLender__factory(requester).deploy(
      await net.deployment.tasks.getAddress(),
      await net.deployment.token.getAddress(),
      requester.address,
      modelId,
      1n << 40n, // every score is below the cap: the line is (cap - score) * 1 wei
      1n,
    );
    await lender.waitForDeployment();
    // Prepaid credits: the dapp's requests then cost no approval and no transfer each.
    await (await net.deployment.token.connect(requester).approve(await lender.getAddress(), FEE)).wait();
    await (await lender.fundCredits(FEE)).wait();
    const node = track(startInferenceNode(net, 5, stateDir("a2-inference")));
    const q = executeQuantized(loadProgram(bundleDir), irisInputs[5]);
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    // The contract packs the fixed-point features itself.
    const receipt = await (await lender.requestRiskScore(borrower, q.input, FEE, now + 3600)).wait();
    const taskId = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!).taskId;
    await waitVerified([taskId]);
    const tasks = net.deployment.tasks;
    const callbacks = await tasks.queryFilter(tasks.filters.CallbackExecuted(taskId), 0, "latest");
    expect(callbacks).to.have.length(1);
    expect(callbacks[0].args.callback).to.equal(await lender.getAddress());
    expect(callbacks[0].args.success, "the callback ran with the gas the node sent").to.equal(true);
    expect(await lender.lastRiskScore(borrower)).to.equal(q.quantized[0]);
    expect(await lender.creditLine(borrower)).to.equal((1n << 40n) - q.quantized[0]);
    expect(await node.stop()).to.equal(0);
  });

  it("two inference nodes share the tasks by their order: each task is proved and settled once, by the first node in its order", async function () {
    // No claim for a ZK task (issue 21): each node ranks the eligible inference nodes by keccak256(task, node)
    // and starts a task only when the nodes ahead of it have had their slot. A slot far longer than a proof
    // (even on a loaded machine) makes "served exactly once" a property of the order, not of the timing.
    const slot = ["--assign-slot-ms", "15000"];
    const dirs = { a: stateDir("b-inference-5"), b: stateDir("b-inference-6") };
    const a = track(startInferenceNode(net, 5, dirs.a, { extra: slot }));
    const b = track(startInferenceNode(net, 6, dirs.b, { extra: slot }));
    const nodes = await inferenceRoster();
    expect([...nodes].sort()).to.deep.equal([account(5).address, account(6).address].sort());
    const submitted: Awaited<ReturnType<typeof submit>>[] = [];
    for (let i = 0; i < 6; i++) submitted.push(await submit(i));
    await waitVerified(submitted.map((s) => s.taskId));
    const tasks = net.deployment.tasks;
    const firsts = new Map<bigint, string>();
    for (const s of submitted) {
      const first = orderOf(s.taskId, nodes)[0];
      firsts.set(s.taskId, first);
      const events = await verifiedEvents(s.taskId);
      expect(events, `TaskVerified events of task ${s.taskId}`).to.have.length(1);
      expect(events[0].args.node, `task ${s.taskId} settled by the first node in its order`).to.equal(first);
      expect((await readVerifiedResult(tasks, s.taskId))!.outputs).to.deep.equal(s.expected);
      expect(await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId)), "no claim").to.have.length(0);
      expect(
        await tasks.queryFilter(tasks.filters.TaskResultSkipped(s.taskId)),
        "no late result",
      ).to.have.length(0);
      expect(await tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
    }
    expect(await a.stop()).to.equal(0);
    expect(await b.stop()).to.equal(0);
    // No duplicated work: a node proved and sent a result only for the tasks it was first on; the other
    // node's journal says lost without a proof, and nothing reverted.
    for (const [proc, dir, address] of [
      [a, dirs.a, account(5).address],
      [b, dirs.b, account(6).address],
    ] as const) {
      const journal = readJournal(dir);
      const proved = proc
        .logs()
        .filter((l) => l.msg === "task proved")
        .map((l) => l.taskId);
      const mine = submitted.filter((s) => firsts.get(s.taskId) === address).map((s) => s.taskId.toString());
      expect(proved.sort(), `${proc.name} proved its own tasks, once each`).to.deep.equal([...mine].sort());
      for (const s of submitted) {
        const row = journal.task(s.taskId);
        if (firsts.get(s.taskId) === address) {
          expect(row, `${proc.name}: task ${s.taskId}`).to.include({ state: "verified" });
        } else {
          expect(row, `${proc.name}: task ${s.taskId}`).to.include({ state: "lost", proof: null });
        }
      }
      const sent = journal.txs.filter(
        (t) => t.taskId !== null && submitted.some((s) => s.taskId.toString() === t.taskId),
      );
      expect(
        sent.every((t) => mine.includes(t.taskId!)),
        `${proc.name} sent transactions for its own tasks only: ${JSON.stringify(sent)}`,
      ).to.equal(true);
      expect(reverts(proc, dir), `${proc.name}: reverted transactions`).to.deep.equal([]);
    }
  });

  it("a node killed with SIGKILL mid-proof proves its open task again after a restart (no claim to resume)", async function () {
    const dir = stateDir("c-inference");
    const tasks = net.deployment.tasks;
    // Proofs held back 20 s by the fault hook, so the kill lands mid-proof.
    const first = track(startInferenceNode(net, 5, dir, { env: { OPG_FAULT_PROVE_DELAY_MS: "20000" } }));
    const s = await submit(7);
    // The model run (the stage before the proof) is over: the node is proving.
    await waitFor(
      "proving to start",
      async () => (await metric(first, 'opg_stage_seconds_count{stage="execute"}')) >= 1,
      300_000,
      200,
      first,
    );
    first.child.kill("SIGKILL");
    await first.exited;
    expect(await tasks.taskStatus(s.taskId), "nothing settled, nothing claimed").to.equal(Status.Open);
    expect(readJournal(dir).task(s.taskId)).to.include({ state: "seen" });
    const restarted = track(startInferenceNode(net, 5, dir));
    await waitVerified([s.taskId]);
    const verified = await verifiedEvents(s.taskId);
    expect(verified).to.have.length(1);
    expect(verified[0].args.node).to.equal(account(5).address);
    expect(
      await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId), 0, "latest"),
      "no claim",
    ).to.have.length(0);
    expect((await readVerifiedResult(tasks, s.taskId))!.outputs).to.deep.equal(s.expected);
    expect(await restarted.stop()).to.equal(0);
    expect(readJournal(dir).task(s.taskId)).to.include({ state: "verified" });
    expect(reverts(restarted, dir)).to.deep.equal([]);
  });

  it("the next node in a task's order serves it one slot after the first node went down; nothing is claimed or slashed", async function () {
    const [a, b] = [account(5).address, account(6).address];
    const { tasks, staking } = net.deployment;
    const nodes = await inferenceRoster();
    expect([...nodes].sort()).to.deep.equal([a, b].sort());
    // The test's task must have node 5 first in its order: ids before it go to tasks node 6 is first on.
    const fillers = [];
    while (orderOf((await tasks.taskCount()) + 1n, nodes)[0] !== a)
      fillers.push(await submit(20 + fillers.length));
    const stakeBefore = (await staking.nodeInfo(a)).bonded;
    // Node 5 holds its proofs back 20 s, and waits so long for the nodes ahead of it that it only works on
    // tasks it is first on.
    const gone = track(
      startInferenceNode(net, 5, stateDir("c2-inference-5"), {
        env: { OPG_FAULT_PROVE_DELAY_MS: "20000" },
        extra: ["--assign-slot-ms", "600000"],
      }),
    );
    const s = await submit(9);
    expect(orderOf(s.taskId, nodes)).to.deep.equal([a, b]);
    await waitFor(
      "node 5 to start proving",
      async () => (await metric(gone, 'opg_stage_seconds_count{stage="execute"}')) >= 1,
      300_000,
      200,
      gone,
    );
    gone.child.kill("SIGKILL");
    await gone.exited;
    expect(await tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    // Node 6, second in the order, waits one slot (1 s) for node 5, which is down, then serves the task.
    const takerDir = stateDir("c2-inference-6");
    const taker = track(startInferenceNode(net, 6, takerDir, { extra: ["--assign-slot-ms", "1000"] }));
    await waitVerified([s.taskId, ...fillers.map((f) => f.taskId)]);
    const verified = await verifiedEvents(s.taskId);
    expect(verified).to.have.length(1);
    expect(verified[0].args.node).to.equal(b);
    expect((await readVerifiedResult(tasks, s.taskId))!.outputs).to.deep.equal(s.expected);
    for (const f of fillers) {
      expect((await verifiedEvents(f.taskId)).map((e) => e.args.node)).to.deep.equal([b]);
      expect((await readVerifiedResult(tasks, f.taskId))!.outputs).to.deep.equal(f.expected);
    }
    // No claim was taken, so none lapsed and nobody's collateral was slashed.
    for (const filter of [tasks.filters.TaskClaimed(s.taskId), tasks.filters.TaskClaimAbandoned(s.taskId)])
      expect(await tasks.queryFilter(filter, 0, "latest")).to.have.length(0);
    expect(await tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
    expect((await staking.nodeInfo(a)).bonded, "node 5 lost no stake").to.equal(stakeBefore);
    expect(
      taker.logs().some((l) => l.msg === "task proved" && l.taskId === s.taskId.toString()),
      "node 6 proved the task",
    ).to.equal(true);
    expect(await taker.stop()).to.equal(0);
    expect(readJournal(takerDir).task(s.taskId)).to.include({ state: "verified" });
    expect(reverts(taker, takerDir)).to.deep.equal([]);
  });

  it("rides out an RPC connection cut of several seconds", async function () {
    const proxy = new RpcProxy(Number(new URL(net.chain.url).port));
    const proxyUrl = await proxy.listen();
    try {
      const node = track(startInferenceNode(net, 5, stateDir("d-inference"), { rpcUrl: proxyUrl }));
      const before = await submit(8);
      await waitVerified([before.taskId]);
      const cut = proxy.cut(5000);
      const during = [await submit(9), await submit(10)];
      await cut;
      await waitVerified(during.map((s) => s.taskId));
      for (const s of [before, ...during]) expect(await verifiedEvents(s.taskId)).to.have.length(1);
      expect(
        node.logs().some((l) => l.msg === "poll failed; backing off"),
        "the node saw the cut",
      ).to.equal(true);
      expect(await node.stop()).to.equal(0);
    } finally {
      await proxy.close();
    }
  });

  it("redoes the work a reorg (evm_snapshot / evm_revert) took away", async function () {
    const node = track(startInferenceNode(net, 5, stateDir("e-inference")));
    const snapshot = await net.provider.send("evm_snapshot", []);
    const orphaned = await submit(11);
    await waitVerified([orphaned.taskId]);
    await net.provider.send("evm_revert", [snapshot]);
    // The task, the claim and the result are gone; a different task now has the same id.
    const replacement = await submit(12);
    expect(replacement.taskId).to.equal(orphaned.taskId);
    expect(replacement.expected).to.not.deep.equal(orphaned.expected);
    await net.provider.send("evm_mine", []);
    await waitVerified([replacement.taskId]);
    const result = await readVerifiedResult(net.deployment.tasks, replacement.taskId);
    expect(result!.outputs).to.deep.equal(replacement.expected);
    expect(await verifiedEvents(replacement.taskId)).to.have.length(1);
    expect(node.logs().some((l) => l.msg === "reorg detected: rescanning from the common ancestor")).to.equal(
      true,
    );
    expect(await node.stop()).to.equal(0);
  });

  it("refuses bad task inputs with a logged reason and keeps serving", async function () {
    // Inputs range-checked to 12 bits but packed with 16: a committed value can lie outside the range.
    const commitDir = await fixtureBundle(IRIS, { inputMode: "commitment", inputBits: 12 });
    const { modelId: commitModel } = await publishModel(net, commitDir, FEE);
    const manifest = loadManifest(commitDir);
    const program = loadProgram(commitDir);
    const data = new DataClient(net.data.url);
    const packBits = manifest.quantization.commitmentPackBits;
    async function submitBlob(values: unknown[], commitTo: bigint[], blobOverride?: string) {
      const id = blobOverride ?? (await data.put(Buffer.from(JSON.stringify({ quantized: values }))));
      const now = (await net.provider.getBlock("latest"))!.timestamp;
      const receipt = await (
        await net.deployment.tasks.connect(requester).submitTask({
          modelId: commitModel,
          input: [inputCommitment(commitTo, packBits)],
          inputDataHash: "0x" + id,
          fee: FEE,
          deadline: now + 3600,
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        })
      ).wait();
      return parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!).taskId;
    }
    const node = track(startInferenceNode(net, 5, stateDir("f-inference")));
    const good = executeQuantized(program, irisInputs[3]).input;
    const short = good.slice(0, 3);
    const wide = [4_000n, 0n, 0n, 0n];
    const bad = {
      wrongLength: await submitBlob(short.map(String), short),
      outOfRange: await submitBlob(wide.map(String), good),
      nan: await submitBlob(["NaN", "1", "2", "3"], good),
      noBlob: await submitBlob([], good, "ab".repeat(32)),
    };
    const goodTask = await submitBlob(good.map(String), good);
    await waitVerified([goodTask]);
    const refused = await waitFor("every bad task refused", async () => {
      const lines = node.logs().filter((l) => l.msg === "task refused");
      const ids = new Set(lines.map((l) => l.taskId));
      return Object.values(bad).every((id) => ids.has(id.toString())) ? lines : undefined;
    });
    const reasonOf = (id: bigint) => String(refused.find((l) => l.taskId === id.toString())!.reason);
    expect(reasonOf(bad.wrongLength)).to.match(/3 values, the model takes 4/);
    expect(reasonOf(bad.outOfRange)).to.match(/outside the quantization range/);
    expect(reasonOf(bad.nan)).to.match(/not an integer/);
    expect(reasonOf(bad.noBlob)).to.match(/input blob/);
    for (const id of Object.values(bad))
      expect(await net.deployment.tasks.taskStatus(id)).to.equal(Status.Open);
    expect(node.child.exitCode, "the node is still running").to.equal(null);
    expect(await node.stop()).to.equal(0);
  });

  it("refuses a corrupted bundle by hash, leaves the task open, and the requester gets a refund", async function () {
    // Same bundle registered as another model, then corrupted on the data node's disk.
    const { modelId: corruptModel, bundleId } = await publishModel(net, bundleDir, FEE);
    const blobFile = path.join(net.data.dir, bundleId.slice(0, 2), bundleId);
    const bytes = fs.readFileSync(blobFile);
    bytes[bytes.length - 10] ^= 0xff;
    fs.writeFileSync(blobFile, bytes);
    try {
      const node = track(startInferenceNode(net, 6, stateDir("g-inference")));
      const s = await submit(13, { model: corruptModel });
      const refusal = await waitFor("the refusal", async () =>
        node.logs().find((l) => l.msg === "task refused" && l.taskId === s.taskId.toString()),
      );
      expect(String(refusal.reason)).to.match(/bundle .* refused/);
      expect(await net.deployment.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
      const submittedTask = (
        await net.deployment.tasks.queryFilter(net.deployment.tasks.filters.TaskSubmitted(s.taskId))
      )[0];
      // Past the deadline by chain time, however long the refusal took on a loaded machine.
      const now = (await net.provider.getBlock("latest"))!.timestamp;
      const deadline = Number(parseSubmitted(submittedTask).task.deadline);
      await net.provider.send("evm_increaseTime", [deadline - now + 1]);
      await net.provider.send("evm_mine", []);
      const before = await net.deployment.token.balanceOf(requester.address);
      await (
        await net.deployment.tasks.connect(requester).expire(s.taskId, parseSubmitted(submittedTask).task)
      ).wait();
      expect(await net.deployment.token.balanceOf(requester.address)).to.equal(before + FEE);
      expect(
        await net.deployment.tasks.queryFilter(net.deployment.tasks.filters.TaskClaimed(s.taskId)),
      ).to.have.length(0);
      expect(await node.stop()).to.equal(0);
    } finally {
      bytes[bytes.length - 10] ^= 0xff;
      fs.writeFileSync(blobFile, bytes);
    }
  });

  it("refuses before claiming: a registered key that is not the bundle's, a zkey that is not its key, a callback gas above its cap", async function () {
    // Another circuit with the same signal layout: iris quantized at 2^6 instead of 2^8.
    const otherDir = await fixtureBundle(IRIS, { scaleBits: 6 });
    expect(loadManifest(otherDir).publicSignals).to.deep.equal(loadManifest(bundleDir).publicSignals);
    // 1. The honest bundle registered with the other circuit's key: proofs made with the bundle's zkey
    //    would fail on chain, so claiming would only lose collateral.
    const { modelId: wrongKey } = await publishModel(net, bundleDir, FEE, {
      verificationKey: bundleKeyWords(otherDir),
    });
    // 2. A bundle whose verification_key.json is the registered key but whose zkey is the other circuit's
    //    (its manifest hashes updated, so every file hash checks out).
    const swapped = path.join(net.tmp, "zkey-swapped-bundle");
    fs.cpSync(bundleDir, swapped, { recursive: true });
    const manifest = loadManifest(swapped);
    fs.copyFileSync(path.join(otherDir, "circuit.zkey"), path.join(swapped, manifest.artifacts.zkey!.file));
    manifest.artifacts.zkey!.sha256 = sha256File(path.join(swapped, manifest.artifacts.zkey!.file));
    fs.writeFileSync(path.join(swapped, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    const { modelId: wrongZkey } = await publishModel(net, swapped, FEE);

    const dir = stateDir("i-inference");
    const node = track(startInferenceNode(net, 5, dir, { extra: ["--max-callback-gas", "100000"] }));
    const keyTask = await submit(15, { model: wrongKey });
    const zkeyTask = await submit(16, { model: wrongZkey });
    // 3. A task whose callback may burn more gas than this node pays for (a contract, so the registry takes it).
    const callbackTask = await submit(17, {
      callback: await net.deployment.token.getAddress(),
      callbackGasLimit: 200_000,
    });
    const good = await submit(18);
    await waitVerified([good.taskId]);
    const outcome = await waitFor("the three tasks refused or skipped", async () => {
      const lines = node.logs().filter((l) => l.msg === "task refused" || l.msg === "task skipped by policy");
      const of = (id: bigint) => lines.find((l) => l.taskId === id.toString());
      const all = [of(keyTask.taskId), of(zkeyTask.taskId), of(callbackTask.taskId)];
      return all.every(Boolean) ? all.map((l) => ({ msg: l!.msg, reason: String(l!.reason) })) : undefined;
    });
    expect(outcome[0].msg).to.equal("task refused");
    expect(outcome[0].reason).to.match(
      /^bundle [0-9a-f]{64}: verification key hash 0x[0-9a-f]{64} differs from the registry's 0x[0-9a-f]{64}$/,
    );
    expect(outcome[1].msg).to.equal("task refused");
    // The bundle's consistency check (BundleCache, once per bundle: a proof made with its zkey must verify
    // against its verification key) refuses it first; the served-key check (the zkey's key against the
    // registry's) would refuse it next.
    expect(outcome[1].reason).to.match(
      /^bundle [0-9a-f]{64}: inconsistent bundle, its program and its circuit disagree .*(made with circuit\.zkey does not verify|the zkey cannot prove|the proof made with the zkey)|^model \d+: verification key mismatch: the key of the bundle's zkey \(hash 0x[0-9a-f]{64}\) is not the registered key/,
    );
    expect(outcome[2]).to.deep.equal({
      msg: "task skipped by policy",
      reason: "callback gas limit 200000 above the node's maxCallbackGas 100000",
    });
    const tasks = net.deployment.tasks;
    for (const s of [keyTask, zkeyTask, callbackTask]) {
      expect(await tasks.taskStatus(s.taskId), `task ${s.taskId}`).to.equal(Status.Open);
      expect(
        await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId)),
        `claims of ${s.taskId}`,
      ).to.have.length(0);
    }
    expect(await node.stop()).to.equal(0);
    const journal = new Journal(path.join(dir, "journal.db"));
    try {
      expect(journal.task(keyTask.taskId)).to.include({ state: "refused" });
      expect(journal.task(zkeyTask.taskId)).to.include({ state: "refused" });
      expect(journal.task(callbackTask.taskId)).to.include({ state: "skipped" });
      expect(journal.task(good.taskId)).to.include({ state: "verified" });
    } finally {
      journal.close();
    }
    // Past their deadlines (by chain time) the requester gets every fee back, and no open task is left for
    // the nodes of later tests (one with the default maxCallbackGas would take the callback task).
    const refused = [];
    for (const s of [keyTask, zkeyTask, callbackTask]) {
      refused.push(parseSubmitted((await tasks.queryFilter(tasks.filters.TaskSubmitted(s.taskId)))[0]));
    }
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const last = Math.max(...refused.map((r) => Number(r.task.deadline)));
    await net.provider.send("evm_increaseTime", [last - now + 1]);
    await net.provider.send("evm_mine", []);
    const before = await net.deployment.token.balanceOf(requester.address);
    for (const r of refused) await (await tasks.connect(requester).expire(r.taskId, r.task)).wait();
    expect(await net.deployment.token.balanceOf(requester.address)).to.equal(before + FEE * 3n);
  });

  it("replaces a stuck transaction with higher fees, serves /metrics and /healthz, and sends nothing in dry-run", async function () {
    // The dry-run node alone first, so that it sees the task open whatever the timing of the other node.
    const dryNonce = await net.provider.getTransactionCount(account(6).address);
    const dry = track(startInferenceNode(net, 6, stateDir("h-dry"), { extra: ["--dry-run"] }));
    const s = await submit(14);
    await waitFor("the dry run's simulated result", async () =>
      dry.logs().some((l) => l.msg === "dry run: not sending" && l.taskId === s.taskId.toString()),
    );
    // Automine off before the real node starts: its result sits in the mempool until it has been replaced.
    await net.provider.send("evm_setAutomine", [false]);
    let node: Proc;
    try {
      node = track(
        startInferenceNode(net, 5, stateDir("h-inference"), { env: { OPG_REPLACE_AFTER_SECONDS: "2" } }),
      );
      await waitFor("a replacement", async () =>
        node
          .logs()
          .some(
            (l) =>
              l.msg === "transaction stuck; replacing with higher fees" && l.taskId === s.taskId.toString(),
          ),
      );
      await net.provider.send("evm_setAutomine", [true]);
      await net.provider.send("evm_mine", []);
      await waitVerified([s.taskId]);
      expect(await verifiedEvents(s.taskId)).to.have.length(1);
      expect((await verifiedEvents(s.taskId))[0].args.node).to.equal(account(5).address);
      expect(
        await net.provider.getTransactionCount(account(6).address),
        "a dry-run node sends no transaction",
      ).to.equal(dryNonce);
    } finally {
      await net.provider.send("evm_setAutomine", [true]);
    }
    const port = node.logs().find((l) => l.msg === "metrics and health listening")!.port;
    // The only transaction is the result itself (no claim before it), and the node may journal the task
    // verified from the TaskVerified log before the submitter has its receipt (and counts its gas): the
    // metrics (rendered at most once per METRICS_CACHE_MS) catch up within a few polls.
    const metrics = await waitFor(
      "the node's metrics to count the settled task's gas",
      async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return /^opg_gas_spent_wei [1-9]/m.test(text) ? text : undefined;
      },
      30_000,
      250,
      node,
    );
    expect(metrics).to.match(/^opg_tasks\{state="verified"\} [1-9]/m);
    expect(metrics).to.match(/^opg_stage_seconds_count\{stage="prove"\} [1-9]/m);
    expect(metrics).to.match(/^opg_gas_spent_wei [1-9]/m);
    const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    expect(health).to.include({ ok: true, address: account(5).address });
    expect(await node.stop()).to.equal(0);
    const simulated = dry
      .logs()
      .filter((l) => l.msg === "dry run: not sending" && l.taskId === s.taskId.toString()).length;
    // Simulated once, then parked (`skipped`), not run and simulated again at every poll.
    expect(simulated, "simulations of the dry run's one task").to.equal(1);
    expect(await dry.stop()).to.equal(0);
    expect(readJournal(stateDir("h-dry")).txs, "nothing sent by the dry-run node").to.deep.equal([]);
  });

  it("refuses to start on a bad configuration, naming each bad field", async function () {
    const bad = track(
      spawnProc(
        "inference-bad",
        ["bin/opg.js", "node", "inference", "--rpc-url", "ftp://nowhere", "--concurrency", "0"],
        { OPG_PRIVATE_KEY: "0x1234" },
      ),
    );
    expect(await bad.exited).to.equal(2);
    const text = bad.output.join("\n");
    expect(text)
      .to.match(/rpcUrl/)
      .and.match(/concurrency/)
      .and.match(/privateKey/);
    expect(text).to.not.include("0x1234");
  });
});
