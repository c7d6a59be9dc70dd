import path from "node:path";
import { expect } from "chai";
import { ethers, network } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { JsonRpcServer } from "hardhat/internal/hardhat-network/jsonrpc/server";
import { loadBundle } from "../../explorer/src/checks/bundle";
import type { Ctx } from "../../explorer/src/ctx";
import {
  hasPageChecks,
  rejectedByProof,
  staticChecks,
  verifiedChecks,
  waitingFor,
  type CheckRun,
} from "../../explorer/src/checks/run";
import { readSettlement } from "../../explorer/src/checks/settlement";
import { verdictOf, type Check } from "../../explorer/src/checks/types";
import { bundleKey, groth16Check, outputMatchCheck, publicSignalsCheck } from "../../explorer/src/checks/zk";
import { Store } from "../../explorer/src/store";
import type { SubmittedRequest } from "../../sdk";
import { proofWords } from "../../workers/runtime/tasks";
import { loadManifest, loadProgram, quantizeInput, releaseProver, witnessInput } from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";
import { hashWords } from "../helpers/market-fixture";
import { tinyInputWords } from "../helpers/tiny-circuit";
import { IRIS_INPUT, sdkModesFixture } from "../sdk/modes-fixture";

/**
 * The explorer page's own store and checks (explorer/src, run here in Node) against the in-process hardhat
 * chain served over HTTP, as the page reads a chain: a rejection by a challenger's proof re-verified with the
 * challenger's binding, a stake vote re-tallied from its ballots, a task reopened after posted outputs met
 * no quorum, a ZK batch (submitResults) that settles several tasks in one transaction and skips one already
 * settled, and a TEE task that stays open after its node's key was challenged. Nodes and verifiers are played
 * by hand.
 */
describe("explorer: disputes, reopenings, batches and challenged TEE keys (store and checks, in-process chain)", function () {
  this.timeout(600_000);
  let f: Awaited<ReturnType<typeof sdkModesFixture>>;
  let server: JsonRpcServer;
  let store: Store;
  let ctx: Ctx;
  let node: HardhatEthersSigner;
  let verifier: HardhatEthersSigner;

  before(async function () {
    f = await sdkModesFixture();
    node = f.nodes[0];
    verifier = f.verifiers[0];
    server = new JsonRpcServer({ hostname: "127.0.0.1", port: 0, provider: network.provider });
    const { port } = await server.listen();
    const config = {
      rpc: `http://127.0.0.1:${port}`,
      data: f.dataUrl,
      contracts: f.deployment,
    };
    store = new Store(config);
    await store.start();
    store.stop(); // the test reads new blocks itself (poll), so nothing runs between its steps
    ctx = { store, config, snap: store.snap, go: () => undefined };
  });

  after(async function () {
    store?.stop();
    await server?.close();
    await f?.stop();
    await releaseProver();
  });

  /** The store's row of `taskId` after reading the blocks mined since the last look. */
  async function rowOf(taskId: bigint) {
    await store.poll();
    const row = store.snap.tasks.get(taskId.toString());
    expect(row, `task ${taskId} in the store`).to.not.equal(undefined);
    return row!;
  }

  /** The run's checks once every one finished, by id. */
  async function finished(run: CheckRun) {
    if (!run.done) await new Promise<void>((resolve) => run.listeners.add(() => run.done && resolve()));
    const byId = new Map(run.checks.map((c) => [c.id, c]));
    const summary = run.checks.map((c) => `${c.id} ${c.status}: ${c.message ?? c.proved ?? ""}`).join("\n  ");
    return { byId, summary, get: (id: string): Check => byId.get(id) ?? expect.fail(`no check ${id}`) };
  }

  /** `signer`'s off-chain attestation of `outputs` that `by` posts for `taskId`. */
  async function attestation(signer: HardhatEthersSigner, taskId: bigint, by: string, outputs: bigint[]) {
    const digest = await f.tasks.attestationDigest(taskId, by, hashWords(outputs));
    return signer.signMessage(ethers.getBytes(digest));
  }

  /** A proof of the iris model's true outputs on `s`'s input, bound to `prover`. */
  async function proveIris(s: SubmittedRequest, prover: string) {
    const manifest = loadManifest(f.bundleDir);
    const binding = BigInt(await f.tasks.taskBinding(s.taskId, prover));
    const quantized = quantizeInput(loadProgram(f.bundleDir), IRIS_INPUT.flat());
    const { proof } = await fullProve(
      witnessInput(manifest, quantized, binding),
      path.join(f.bundleDir, manifest.artifacts.wasm.file),
      path.join(f.bundleDir, manifest.artifacts.zkey!.file),
    );
    return proofWords(proof);
  }

  it("re-verifies a rejection by proof: the challenger's Groth16 proof of other outputs, bound to the challenger", async function () {
    const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
    await f.tasks.connect(node).claimTask(s.taskId, s.task);
    const honest = f.honestOutputs();
    const wrong = honest.map((w, i) => (i === 0 ? w + 1n : w));
    const signed = await attestation(verifier, s.taskId, node.address, wrong);
    await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, wrong, [signed]);
    const pending = await rowOf(s.taskId);
    expect(pending.state).to.equal("Pending");
    const attesters = staticChecks(pending, await time.latest()).find((c) => c.id === "attesters")!;
    expect(attesters.message).to.equal("1 of 1 attestation(s), fixed when the outputs were posted");

    const challenger = f.verifiers[1];
    const proof = await proveIris(s, challenger.address);
    await f.disputes
      .connect(challenger)
      .challengeWithProof(s.taskId, s.task, hashWords(wrong), [verifier.address], s.input, honest, proof);
    const row = await rowOf(s.taskId);
    expect(row.state).to.equal("Rejected");
    expect([rejectedByProof(row), hasPageChecks(row)]).to.deep.equal([true, true]);
    expect(row.events.map((e) => e.name)).to.include.members([
      "TaskDisputed",
      "DisputeOpened",
      "DisputeResolved",
      "TaskRejected",
      "AttesterSlashed",
    ]);

    const run = verifiedChecks(ctx, row);
    const c = await finished(run);
    expect(run.settledBy).to.equal("challengeWithProof");
    expect(run.checks.map((x) => x.id)).to.deep.equal([
      "challenge-window",
      "attesters",
      "dispute",
      "bundle-hash",
      "vk-hash",
      "public-signals",
      "groth16",
      "disproof-outputs",
      "setup",
    ]);
    for (const id of [
      "challenge-window",
      "dispute",
      "bundle-hash",
      "vk-hash",
      "public-signals",
      "groth16",
      "disproof-outputs",
    ]) {
      expect(c.get(id).status, `${id}:\n  ${c.summary}`).to.equal("pass");
    }
    expect(c.get("dispute").proved).to.match(
      new RegExp(`^posted outputs proved wrong by ${challenger.address}: its Groth16 proof of other outputs`),
    );
    expect(Object.fromEntries(c.get("public-signals").details!)).to.have.property(
      "binding (chain, registry, task, challenger)",
    );
    expect(c.get("groth16").proved).to.match(/for this task and challenger$/);
    expect(c.get("attesters")).to.include({
      status: "skip",
      message: "the outputs were rejected: each of their 1 attester(s) was slashed",
    });
    expect(c.get("setup").status).to.equal("trust");
    expect(verdictOf(run.checks, false)).to.equal("pass");

    // the same proof with the node's binding does not verify: the binding is the challenger's, as on chain
    const { settlement } = await readSettlement(store.provider, row.settledTx!, row.id);
    if (settlement?.via !== "challengeWithProof") throw new Error(`settled by ${settlement?.via}`);
    const { vk } = bundleKey(await loadBundle(f.dataUrl, store.snap.models.get(row.modelId.toString())!));
    const asNode = await publicSignalsCheck(ctx, row, node.address, settlement, row.settledTx!, vk);
    const check = await groth16Check(vk, "the bundle's key", asNode.signals, settlement.proof, true);
    expect(check.status).to.equal("fail");
  });

  it("re-tallies a stake vote from its ballots (the challenger's own first), with the ballots settled lazily", async function () {
    const now = await time.latest();
    const request = {
      modelId: f.voteModelId,
      input: tinyInputWords([1n, 2n, 3n, 4n]),
      inputDataHash: ethers.ZeroHash,
      fee: ethers.parseEther("10"),
      deadline: now + 3600,
      callback: ethers.ZeroAddress,
      callbackGasLimit: 0,
    };
    const t = f.submittedFrom(
      (await (await f.tasks.connect(f.requester).submitTaskInMode(request, 2)).wait())!.logs,
    );
    await f.tasks.connect(node).claimTask(t.taskId, t.task);
    await f.tasks.connect(node).submitResultOptimistic(t.taskId, t.task, [7n], []);
    await f.disputes.connect(f.verifiers[1]).challenge(t.taskId, t.task, hashWords([7n]), []);
    const disputed = await rowOf(t.taskId);
    expect(disputed.state).to.equal("Disputed");
    const open = staticChecks(disputed, await time.latest()).find((x) => x.id === "dispute")!;
    expect(open.status).to.equal("pending");
    expect(open.message).to.match(
      /^vote open until .+ UTC: staked verification nodes vote on the posted outputs$/,
    );

    await f.disputes.connect(f.verifiers[2]).vote(t.taskId, false);
    await f.disputes.connect(f.verifiers[3]).vote(t.taskId, true);
    await time.increase(Number(await f.disputes.voteWindow()) + 1);
    await f.disputes.connect(f.stranger).resolveVote(t.taskId, t.task, [7n], []);
    // the loser's ballot first (its slash feeds the winners' reward), then a winner's
    await f.disputes.connect(f.stranger).settleBallot(t.taskId, f.verifiers[3].address);
    await f.disputes.connect(f.stranger).settleBallot(t.taskId, f.verifiers[2].address);
    const row = await rowOf(t.taskId);
    expect(row.state).to.equal("Rejected");
    expect([rejectedByProof(row), hasPageChecks(row)]).to.deep.equal([false, false]);
    expect(row.events.filter((e) => e.name === "BallotSettled")).to.have.length(2);
    const d = staticChecks(row, await time.latest()).find((x) => x.id === "dispute")!;
    expect(d.status, JSON.stringify(d)).to.equal("trust");
    expect(d.proved).to.equal(
      "the ballots re-added here from the DisputeVoted logs give the recorded outcome",
    );
    expect(d.message).to.match(
      /^the vote found the node wrong: the outputs were rejected and the requester refunded 10 OPG$/,
    );
    const details = Object.fromEntries(d.details!);
    expect(details.ballots).to.equal(
      "3, the challenger's own included (1000 OPG for the node, 2000 OPG against)",
    );
    expect(details["ballots settled"]).to.match(/^2: 100 OPG slashed, [\d.]+ OPG paid$/);
  });

  it("reopens a task whose posted outputs met no quorum: open again, the posted outputs gone; then served and verified", async function () {
    const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic", deadlineSeconds: 3600 });
    await f.tasks.connect(node).claimTask(s.taskId, s.task);
    await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, f.honestOutputs(), []);
    await time.increase(601);
    await f.client.reopen(s.taskId);
    const row = await rowOf(s.taskId);
    expect(row.state).to.equal("Open");
    expect([row.node, row.outputs]).to.deep.equal([undefined, undefined]);
    const names = row.events.map((e) => e.name);
    // the slash of the poster's collateral follows the reopening in the same transaction: still open
    expect(names.slice(-2)).to.deep.equal(["TaskReopened", "TaskClaimAbandoned"]);
    expect(waitingFor(row, await time.latest())).to.match(
      new RegExp(
        `^Not settled yet: reopened at block \\d+ \\(the outputs ${node.address.slice(0, 6)}…${node.address.slice(-4)} ` +
          "posted met no quorum of attestations\\), open, nobody holds a claim",
      ),
    );

    const second = f.nodes[1];
    await f.tasks.connect(second).claimTask(s.taskId, s.task);
    expect((await rowOf(s.taskId)).state).to.equal("Claimed");
    const outputs = f.honestOutputs();
    const signed = await attestation(verifier, s.taskId, second.address, outputs);
    await f.tasks.connect(second).submitResultOptimistic(s.taskId, s.task, outputs, [signed]);
    await time.increase(601);
    await f.tasks.connect(f.stranger).finalizeResult(s.taskId, s.task, outputs, [verifier.address]);
    const verified = await rowOf(s.taskId);
    expect(verified.state).to.equal("Verified");
    const c = await finished(verifiedChecks(ctx, verified));
    expect(c.get("attesters").status, c.summary).to.equal("trust");
    expect(c.get("attesters").proved).to.equal(
      "the 1 attester(s) settled are the set fixed at posting, meeting the quorum of 1",
    );
    for (const id of ["bundle-hash", "challenge-window", "output-match"])
      expect(c.get(id).status, `${id}:\n  ${c.summary}`).to.equal("pass");
  });

  it("shows a ZK task settled inside a batch: its own submission found, the batch's size, a skipped one listed", async function () {
    const [a, b, c] = [
      await f.client.submit(f.irisModelId, IRIS_INPUT),
      await f.client.submit(f.irisModelId, IRIS_INPUT),
      await f.client.submit(f.irisModelId, IRIS_INPUT),
    ];
    const open = await rowOf(a.taskId);
    expect([open.mode, open.state]).to.deep.equal(["zk", "Open"]);
    expect(waitingFor(open, await time.latest())).to.match(
      /^Not settled yet: open, waiting for the first node in its service order to settle it with a proof \(deadline .+ UTC\)$/,
    );
    expect(staticChecks(open, await time.latest()).every((x) => x.status === "pending")).to.equal(true);
    // another node settles c alone; then the node's batch of a, b, c settles a and b and skips c
    const outputs = f.honestOutputs();
    const other = f.nodes[1];
    await f.tasks
      .connect(other)
      .submitResult(c.taskId, c.task, c.input, outputs, await proveIris(c, other.address));
    const batch = [];
    for (const t of [a, b, c])
      batch.push({
        taskId: t.taskId,
        task: t.task,
        input: t.input,
        outputs,
        proof: await proveIris(t, node.address),
      });
    const receipt = (await (await f.tasks.connect(node).submitResults(batch)).wait())!;

    const row = await rowOf(b.taskId);
    expect(row.state).to.equal("Verified");
    expect([row.node, row.settledTx]).to.deep.equal([node.address, receipt.hash]);
    expect(store.snap.settlements.get(receipt.hash)).to.deep.equal({ verified: 2, skipped: 1 });
    // the task settled first keeps its own settlement; the batch's skip is listed and changes nothing
    const skipped = await rowOf(c.taskId);
    expect(skipped.state).to.equal("Verified");
    expect([skipped.node, skipped.settledTx]).to.deep.equal([
      other.address,
      skipped.events.find((e) => e.name === "TaskVerified")!.tx,
    ]);
    expect(skipped.settledTx).to.not.equal(receipt.hash);
    const skip = skipped.events.find((e) => e.name === "TaskResultSkipped")!;
    expect([skip.tx, Number(skip.args.status)]).to.deep.equal([receipt.hash, 3]);
    expect(skipped.events.map((e) => e.name)).to.not.include("TaskClaimed");

    const run = verifiedChecks(ctx, row);
    const checked = await finished(run);
    expect(run.settledBy).to.equal("submitResults");
    expect(run.batch).to.deep.equal({ size: 3, index: 1 });
    for (const id of ["bundle-hash", "vk-hash", "public-signals", "groth16", "output-match"])
      expect(checked.get(id).status, `${id}:\n  ${checked.summary}`).to.equal("pass");
    expect(Object.fromEntries(checked.get("public-signals").details!)["settled by"]).to.match(
      /^submitResults in \S+: a batch of 3, this task's submission 2 of 3$/,
    );
    const match = checked.get("output-match");
    expect(match.proved).to.match(
      /equal the calldata of submitResults \(this task's submission, 2 of 3\), and with the node and block shown they match the registry's stored hash \(isVerifiedResult\)$/,
    );
    expect(verdictOf(run.checks, false)).to.equal("pass");

    // outputs the registry's hash does not hold fail the check, whatever the calldata says
    const forged = { ...row, outputs: row.outputs!.map((w, i) => (i === 0 ? BigInt(w) + 1n : BigInt(w))) };
    const lie = await outputMatchCheck(ctx, forged, forged.outputs, "calldata of submitResults");
    expect(lie.status).to.equal("fail");
    expect(lie.message).to.match(
      /the registry's stored hash \(isVerifiedResult\) does not match the result shown/,
    );
    // so does another node or block with the true outputs
    const elsewhere = await outputMatchCheck(
      ctx,
      { ...row, settledBlock: row.settledBlock! - 1 },
      outputs,
      "x",
    );
    expect(elsewhere.status).to.equal("fail");

    // the lone settlement of c: its own checks, no batch
    const lone = verifiedChecks(ctx, skipped);
    const loneChecked = await finished(lone);
    expect([lone.settledBy, lone.batch]).to.deep.equal(["submitResult", undefined]);
    expect(loneChecked.get("output-match").status, loneChecked.summary).to.equal("pass");
    expect(loneChecked.get("groth16").status, loneChecked.summary).to.equal("pass");
  });

  it("keeps a TEE task open after its node's key was challenged: that key's signature is refused, another key settles it", async function () {
    const holder = f.nodes[2];
    const other = f.nodes[1];
    const challenged = await f.registerKey(holder);
    const active = await f.registerKey(other);
    const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "tee", deadlineSeconds: 3600 });
    const open = await rowOf(s.taskId);
    expect(waitingFor(open, await time.latest())).to.match(
      /^Not settled yet: open, waiting for the first node in its service order to settle it with an enclave-signed result \(deadline .+ UTC\)$/,
    );
    await f.enclaves.connect(f.verifiers[0]).challengeKey(challenged.address, "the document looks forged");
    const outputs = f.honestOutputs();
    const onnxHash = await f.models.onnxHashOf(s.task.modelId);
    const sign = async (by: HardhatEthersSigner, key: typeof challenged) =>
      key.signingKey.sign(
        await f.tasks.teeResultDigest(s.taskId, by.address, s.task.inputHash, onnxHash, outputs),
      ).serialized;
    await expect(
      f.tasks.connect(holder).submitResultTee(s.taskId, s.task, outputs, await sign(holder, challenged)),
    ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
    const still = await rowOf(s.taskId);
    expect([still.state, still.node]).to.deep.equal(["Open", undefined]);
    expect(waitingFor(still, await time.latest())).to.match(
      /^Not settled yet: open, waiting for the first node/,
    );

    await f.tasks.connect(other).submitResultTee(s.taskId, s.task, outputs, await sign(other, active));
    const row = await rowOf(s.taskId);
    expect([row.state, row.node]).to.deep.equal(["Verified", other.address]);
    const c = await finished(verifiedChecks(ctx, row));
    for (const id of ["bundle-hash", "enclave-signature", "key-standing", "output-match"])
      expect(c.get(id).status, `${id}:\n  ${c.summary}`).to.be.oneOf(["pass", "trust"]);
    expect(c.get("output-match").status, c.summary).to.equal("pass");
  });
});
