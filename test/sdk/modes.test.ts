import { expect } from "chai";
import { ethers } from "hardhat";
import type { Wallet } from "ethers";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  chooseMode,
  OpgClientError,
  sendTx,
  TaskRejectedError,
  type SubmittedRequest,
  type TaskWaitStatus,
} from "../../sdk";
import path from "node:path";
import { proofWords } from "../../workers/runtime/tasks";
import { loadManifest, quantizeInput, loadProgram, releaseProver, witnessInput } from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";
import { tinyInputWords } from "../helpers/tiny-circuit";
import { DEV_MEASUREMENT, hashWords, TEST_DOCUMENT } from "../helpers/market-fixture";
import { IRIS_INPUT, sdkModesFixture } from "./modes-fixture";

/** Resolves once `cond` holds, looking every 20 ms (a wait's `onStatus` runs between polls). */
async function until(cond: () => boolean, ms = 20_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) expect.fail("the condition never held");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function expectClientError(p: Promise<unknown>, pattern: RegExp) {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(OpgClientError);
    expect((e as Error).message, (e as Error).message).to.match(pattern);
    return e as OpgClientError;
  }
  expect.fail(`expected an OpgClientError matching ${pattern}`);
}

describe("sdk: chooseMode", function () {
  it("picks the strongest mode the model allows, as submitTask does: zk, else tee, else optimistic", function () {
    expect(chooseMode(1n, ["zk", "tee", "optimistic"])).to.equal("zk");
    expect(chooseMode(1n, ["tee", "optimistic"])).to.equal("tee");
    expect(chooseMode(1n, ["optimistic"])).to.equal("optimistic");
    expect(chooseMode(1n, ["zk", "optimistic"], "optimistic")).to.equal("optimistic");
  });

  it("refuses a mode the model does not allow, naming the allowed ones, and an unknown mode", function () {
    expect(() => chooseMode(3n, ["tee", "optimistic"], "zk")).to.throw(
      OpgClientError,
      "model 3 does not allow zk mode: it allows tee, optimistic",
    );
    expect(() => chooseMode(3n, ["zk"], "fast")).to.throw(OpgClientError, /unknown verification mode "fast"/);
  });
});

/**
 * The SDK against the contracts of every mode on the in-process chain: nodes and verifiers are played by
 * hand (claim, post, attest, challenge, sign), so each situation a wait reports can be set up in turn; the
 * audits re-check what the chain settled.
 */
describe("OpgClient: verification modes (in-process chain)", function () {
  this.timeout(600_000);
  let f: Awaited<ReturnType<typeof sdkModesFixture>>;
  let node: HardhatEthersSigner;
  let verifier: HardhatEthersSigner;

  before(async function () {
    f = await sdkModesFixture();
    node = f.nodes[0];
    verifier = f.verifiers[0];
  });

  after(async function () {
    await f?.stop();
    await releaseProver();
  });

  const look = (taskId: bigint) => f.client.describe(taskId);

  describe("submit", function () {
    it("refuses a mode the model does not allow before sending anything", async function () {
      const before = await f.tasks.taskCount();
      await expectClientError(
        f.client.submit(1, [[1, 2, 3, 4]], { mode: "optimistic" }),
        /^model 1 does not allow optimistic mode: it allows zk$/,
      );
      await expectClientError(
        f.client.submit(f.voteModelId, [[1, 2, 3, 4]], { mode: "zk" }),
        new RegExp(`^model ${f.voteModelId} does not allow zk mode: it allows tee, optimistic$`),
      );
      expect(await f.tasks.taskCount()).to.equal(before);
    });

    it("submits in the model's strongest mode by default, and in the mode asked for", async function () {
      const info = await f.client.model(f.irisModelId);
      expect(info.verificationModes).to.deep.equal(["zk", "tee", "optimistic"]);
      expect(info.attestationQuorum).to.equal(1);
      const byDefault = await f.client.submit(f.irisModelId, IRIS_INPUT);
      expect(byDefault.mode).to.equal("zk");
      expect(byDefault.task.mode).to.equal(1n);
      const tee = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "tee" });
      expect([tee.mode, tee.task.mode]).to.deep.equal(["tee", 4n]);
      const optimistic = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      expect([optimistic.mode, optimistic.task.mode, optimistic.task.attestationQuorum]).to.deep.equal([
        "optimistic",
        2n,
        1n,
      ]);
      expect(await look(optimistic.taskId)).to.include({ status: "Open", mode: "optimistic" });
    });
  });

  /** `signer`'s off-chain attestation of `outputs` that `by` posts for `taskId` (what POST /attest returns). */
  async function attestation(signer: HardhatEthersSigner, taskId: bigint, by: string, outputs: bigint[]) {
    const digest = await f.tasks.attestationDigest(taskId, by, hashWords(outputs));
    return signer.signMessage(ethers.getBytes(digest));
  }

  /** A Groth16 proof of the iris model's true outputs on `s`'s input, bound to `prover` (node or challenger). */
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

  describe("optimistic: window, attestations, finality, audit", function () {
    let s: SubmittedRequest;
    let outputs: bigint[];

    it("reports the claim, then the window and the attestations fixed at posting against the quorum", async function () {
      s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      expect((await look(s.taskId)).message).to.match(
        new RegExp(`^claimed by ${node.address} until \\S+: waiting for it to post its outputs; deadline`),
      );
      outputs = f.honestOutputs();
      const signed = await attestation(verifier, s.taskId, node.address, outputs);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, [signed]);
      const pending = await look(s.taskId);
      expect(pending).to.include({
        status: "Pending",
        mode: "optimistic",
        postedBy: node.address,
        attestations: 1,
        quorum: 1,
      });
      expect(pending.message).to.match(
        new RegExp(
          `^outputs posted by ${node.address} without proof: challenge window open until \\S+Z, ` +
            "1 of 1 attestation so far; final after the window with the quorum",
        ),
      );
      // a client that did not submit it reads the mode and the quorum from the task's event
      expect(await f.reader.describe(s.taskId)).to.include({
        status: "Pending",
        mode: "optimistic",
        attestations: 1,
        quorum: 1,
      });
      await time.increase(601);
      expect((await look(s.taskId)).message).to.match(
        /challenge window ended at \S+ unchallenged with 1 of 1 attestation: final as soon as anyone calls finalizeResult/,
      );
    });

    it("resolves the wait once finalised, saying the mode and the attesters", async function () {
      const seen: TaskWaitStatus[] = [];
      const waiting = f.client.waitForResult(s.taskId, {
        pollMs: 50,
        timeoutMs: 20_000,
        onStatus: (x) => seen.push(x),
      });
      await f.tasks.connect(f.stranger).finalizeResult(s.taskId, s.task, outputs, [verifier.address]);
      const result = await waiting;
      expect(result).to.include({ mode: "optimistic", settledBy: "attestations", node: node.address });
      expect(result.attesters).to.deep.equal([verifier.address]);
      expect(result.words).to.deep.equal(outputs);
      expect((await look(s.taskId)).message).to.match(/^verified in optimistic mode by 1 attestation\(s\)/);
    });

    it("audits it: window, attester set, output recomputed; says what rests on the attesters", async function () {
      const report = await f.client.audit(s.taskId);
      expect(report).to.include({
        status: "Verified",
        mode: "optimistic",
        settledBy: "attestations",
        proofValid: null,
        outputMatches: true,
        bundleMatches: true,
        agree: true,
      });
      expect(report.optimistic).to.deep.include({
        attesters: [verifier.address],
        quorum: 1,
        postedBy: node.address,
      });
      expect(report.checked.join("\n")).to.match(
        /1 staked verification node\(s\) attested \(quorum 1\) when the outputs were posted/,
      );
      expect(report.checked.join("\n")).to.match(/recomputes the verified output/);
      expect(report.notChecked.join("\n")).to.match(/fixed-point program's output is the float ONNX model's/);
      expect(report.notChecked.join("\n")).to.match(
        /final because 1 staked verifier\(s\) attested and nobody challenged within the window/,
      );
    });

    it("audits a wrong output that its attesters let through as a disagreement", async function () {
      const lie = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(lie.taskId, lie.task);
      const wrong = outputs.map((w, i) => (i === 0 ? w + 1n : w));
      const signed = await attestation(verifier, lie.taskId, node.address, wrong);
      await f.tasks.connect(node).submitResultOptimistic(lie.taskId, lie.task, wrong, [signed]);
      await time.increase(601);
      await f.tasks.connect(node).finalizeResult(lie.taskId, lie.task, wrong, [verifier.address]);
      const report = await f.client.audit(lie.taskId);
      expect(report).to.include({ mode: "optimistic", outputMatches: false, agree: false });
      expect(report.detail).to.match(/OUTPUT DIFFERS/);
    });
  });

  describe("optimistic: a window that closes short of the quorum", function () {
    it("before the deadline: the wait goes on, reopen() puts the task back on the market, another node serves it", async function () {
      const s = await f.client.submit(f.irisModelId, IRIS_INPUT, {
        mode: "optimistic",
        deadlineSeconds: 3600,
      });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, f.honestOutputs(), []);
      await expectClientError(f.client.refund(s.taskId), /its challenge window is open until/);
      const seen: TaskWaitStatus[] = [];
      const waiting = f.client.waitForResult(s.taskId, {
        pollMs: 50,
        timeoutMs: 60_000,
        onStatus: (x) => seen.push(x),
      });
      await time.increase(601);
      expect((await look(s.taskId)).message).to.match(
        new RegExp(
          `^outputs posted by ${node.address}: the challenge window ended at \\S+ with only 0 of 1 ` +
            `attestation: they cannot become final; once anyone calls expireUnattested \\(opg task reopen ` +
            `${s.taskId}\\) the node's collateral is slashed and the task reopens for another node until its ` +
            "deadline \\S+Z$",
        ),
      );
      await expectClientError(
        f.client.refund(s.taskId),
        /closed short of its quorum before its deadline \S+: the task is reopened for another node now/,
      );
      const bonded = (await f.staking.nodeInfo(node.address)).bonded;
      await f.client.reopen(s.taskId);
      // the node's claim collateral is slashed: posting what nobody attests costs what abandoning would
      expect((await f.staking.nodeInfo(node.address)).bonded).to.be.below(bonded);
      // the wait that went on sees the task served again
      await until(() => seen.some((x) => x.status === "Open" && x.reopened !== undefined));
      const reopened = await look(s.taskId);
      expect(reopened).to.deep.include({
        status: "Open",
        reopened: { previousNode: node.address, block: await ethers.provider.getBlockNumber() },
      });
      expect(reopened.message).to.match(
        new RegExp(
          `^reopened at block \\d+: the outputs ${node.address} posted met no quorum of attestations \\(its ` +
            "collateral was slashed\\), so the task is being served again: open, nobody has claimed it yet",
        ),
      );
      // another node serves it, with its attestation, and the wait that went on resolves
      const second = f.nodes[1];
      await f.tasks.connect(second).claimTask(s.taskId, s.task);
      const outputs = f.honestOutputs();
      const signed = await attestation(verifier, s.taskId, second.address, outputs);
      await f.tasks.connect(second).submitResultOptimistic(s.taskId, s.task, outputs, [signed]);
      await time.increase(601);
      await f.tasks.connect(f.stranger).finalizeResult(s.taskId, s.task, outputs, [verifier.address]);
      const result = await waiting;
      expect(result).to.include({ node: second.address, settledBy: "attestations" });
      expect(seen.find((x) => x.status === "Open")!.reopened).to.deep.include({ previousNode: node.address });
      // the audit takes the last posting, not the one that met no quorum
      const report = await f.client.audit(s.taskId);
      expect(report).to.include({ agree: true, node: second.address });
      expect(report.optimistic).to.include({ postedBy: second.address });
    });

    it("after the deadline: the wait fails as refundable, reopen() refuses, refund() expires it", async function () {
      const s = await f.client.submit(f.irisModelId, IRIS_INPUT, {
        mode: "optimistic",
        deadlineSeconds: 300,
      });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, f.honestOutputs(), []);
      await time.increase(601);
      await expectClientError(
        f.client.waitForResult(s.taskId, { pollMs: 50, timeoutMs: 20_000 }),
        new RegExp(
          `^task ${s.taskId}: outputs posted by ${node.address}: the challenge window ended at \\S+ with only ` +
            "0 of 1 attestation, and its deadline \\S+ has passed: the result cannot become final; refundable " +
            "to the requester",
        ),
      );
      await expectClientError(
        f.client.reopen(s.taskId),
        /its deadline \S+ has passed: it can no longer be reopened/,
      );
      await f.client.refund(s.taskId);
      expect(await f.client.status(s.taskId)).to.equal("Expired");
    });
  });

  describe("optimistic: outputs proved wrong by a challenger", function () {
    let rejectedId: bigint;

    it("fails the wait with a TaskRejectedError: challenged with a proof, rejected, the fee refunded", async function () {
      const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const honest = f.honestOutputs();
      const wrong = honest.map((w, i) => (i === 0 ? w + 1n : w));
      const signed = await attestation(verifier, s.taskId, node.address, wrong);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, wrong, [signed]);
      const seen: TaskWaitStatus[] = [];
      const waiting = f.client.waitForResult(s.taskId, {
        pollMs: 50,
        timeoutMs: 60_000,
        onStatus: (x) => seen.push(x),
      });
      // its rejection is awaited below; handled now, as the wait may end before the test gets there
      waiting.catch(() => undefined);
      const challenger = f.verifiers[1];
      const proof = await proveIris(s, challenger.address);
      await f.disputes
        .connect(challenger)
        .challengeWithProof(s.taskId, s.task, hashWords(wrong), [verifier.address], s.input, honest, proof);
      const message =
        `^task ${s.taskId} was rejected: challenged with a proof: ${challenger.address} proved the posted ` +
        "outputs wrong \\(a Groth16 proof of other outputs on the task's input; outcome NodeWrong: the node " +
        "and its attesters were slashed\\); its fee of 10.0 OPG went back to the requester$";
      rejectedId = s.taskId;
      const error = await expectClientError(waiting, new RegExp(message));
      expect(error).to.be.instanceOf(TaskRejectedError);
      expect(error).to.include({ outcome: "NodeWrong", refund: s.task.fee });
      // the wait saw the window, then the rejection: no dispute stays open in between
      expect(seen.map((x) => x.status)).to.deep.equal(["Pending", "Rejected"]);
      const rejected = await look(s.taskId);
      expect(rejected).to.deep.include({
        status: "Rejected",
        outcome: "NodeWrong",
        dispute: { challenger: challenger.address, deadline: rejected.dispute!.deadline, byProof: true },
      });
      expect(await f.client.result(s.taskId)).to.equal(undefined);
    });

    it("audits the rejection: the challenger's proof re-verified with its own binding, the proved outputs recomputed", async function () {
      const challenger = f.verifiers[1].address;
      const report = await f.client.audit(rejectedId);
      expect(report).to.include({
        status: "Rejected",
        mode: "optimistic",
        settledBy: "dispute-proof",
        proofValid: true,
        bundleMatches: true,
        outputMatches: true,
        agree: true,
        setupSecure: false,
        node: node.address,
      });
      expect(report.detail).to.match(
        new RegExp(`^posted outputs proved wrong by ${challenger}: proof of other outputs valid; `),
      );
      expect(report.optimistic!.dispute).to.deep.include({
        challenger,
        circuit: true,
        outcome: "NodeWrong",
        provedOutputs: f.honestOutputs().map(String),
        slashedAttesters: [verifier.address],
      });
      const checked = report.checked.join("\n");
      expect(checked).to.include(`${challenger} proved the posted outputs wrong`);
      expect(checked).to.match(/binding of chain, registry, task and challenger/);
      expect(checked).to.match(/recomputes the proved outputs/);
      expect(checked).to.match(/each of the 1 attester\(s\) of the rejected outputs was slashed/);
      expect(report.setup).to.include({ trust: "development" });
      expect(report.notChecked.join("\n")).to.match(/trusted setup/);
    });

    it("says the reason of a refused challenge: a proof of the posted outputs shows them right", async function () {
      const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const outputs = f.honestOutputs();
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      const challenger = f.verifiers[1];
      const proof = await proveIris(s, challenger.address);
      await expectClientError(
        sendTx("challengeWithProof", f.disputes.interface, () =>
          f.disputes
            .connect(challenger)
            .challengeWithProof(s.taskId, s.task, hashWords(outputs), [], s.input, outputs, proof),
        ),
        /^challengeWithProof reverted: DisputeManagerSameOutputs\(\d+\): the proof is of task \d+'s posted outputs themselves: it shows them right/,
      );
      expect(await f.client.status(s.taskId)).to.equal("Pending");
    });
  });

  describe("optimistic: disputes settled by a stake vote (a model without a circuit)", function () {
    /** Submit in optimistic mode on the vote model, claim, post `outputs` without attestations. */
    async function postedOnVoteModel(outputs: bigint[]) {
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
      const submitted = f.submittedFrom(
        (await (await f.tasks.connect(f.requester).submitTaskInMode(request, 2)).wait())!.logs,
      );
      await f.tasks.connect(node).claimTask(submitted.taskId, submitted.task);
      await f.tasks.connect(node).submitResultOptimistic(submitted.taskId, submitted.task, outputs, []);
      return submitted;
    }

    it("reports the open vote with its tally, then audits a vote the node won: every ballot re-tallied", async function () {
      const outputs = [7n];
      const t = await postedOnVoteModel(outputs);
      const challenger = f.verifiers[1];
      await f.disputes.connect(challenger).challenge(t.taskId, t.task, hashWords(outputs), []);
      const stake = (await f.staking.nodeInfo(challenger.address)).bonded;
      const seen = await look(t.taskId);
      expect(seen.dispute).to.include({ challenger: challenger.address, byProof: false });
      // the challenger's own stake is its ballot against the node
      expect(seen.dispute).to.include({ weightFor: 0n, weightAgainst: stake });
      expect(seen.message).to.match(
        new RegExp(
          `^disputed by ${challenger.address}: vote open until \\S+Z: staked verification nodes vote on the ` +
            "posted outputs, the challenger's stake against them \\(so far 0.0 OPG of stake for the node, " +
            `${ethers.formatEther(stake).replace(".", "\\.")} OPG against\\)$`,
        ),
      );
      await f.disputes.connect(f.verifiers[2]).vote(t.taskId, true);
      await f.disputes.connect(f.verifiers[3]).vote(t.taskId, true);
      await time.increase(Number(await f.disputes.voteWindow()) + 1);
      expect((await look(t.taskId)).message).to.match(
        /the vote ended at \S+ \(so far [\d.]+ OPG of stake for the node, [\d.]+ OPG against\); anyone may now settle it by the vote \(resolveVote\)$/,
      );
      await f.disputes.connect(f.stranger).resolveVote(t.taskId, t.task, outputs, []);
      // the losing challenger's ballot is settled lazily: it loses its share of its weight
      await f.disputes.connect(f.stranger).settleBallot(t.taskId, challenger.address);
      const report = await f.client.audit(t.taskId);
      expect(report).to.include({
        status: "Verified",
        mode: "optimistic",
        settledBy: "dispute-vote",
        proofValid: null,
        outputMatches: null,
        agree: true,
      });
      const dispute = report.optimistic!.dispute!;
      expect(dispute.votes.map((v) => [v.voter, v.nodeRight])).to.deep.equal([
        [challenger.address, false],
        [f.verifiers[2].address, true],
        [f.verifiers[3].address, true],
      ]);
      expect(dispute).to.include({ outcome: "NodeRight", weightAgainst: String(stake) });
      expect(dispute.ballots).to.have.length(1);
      expect(dispute.ballots![0]).to.include({ voter: challenger.address, paid: "0" });
      expect(BigInt(dispute.ballots![0].slashed)).to.equal(stake / 10n);
      const notChecked = report.notChecked.join("\n");
      expect(notChecked).to.match(/a dispute settled by vote shows only what the staked majority said/);
      expect(notChecked).to.match(/the model's bundle could not be used to recompute it/);
      expect(report.checked.join("\n")).to.match(/3 ballot\(s\), the challenger's own included/);
    });

    it("fails the wait when the vote rejects the outputs, and audits the rejection by its ballots", async function () {
      const t = await postedOnVoteModel([9n]);
      const challenger = f.verifiers[2];
      await f.disputes.connect(challenger).challenge(t.taskId, t.task, hashWords([9n]), []);
      await f.disputes.connect(f.verifiers[3]).vote(t.taskId, false);
      await time.increase(Number(await f.disputes.voteWindow()) + 1);
      await f.disputes.connect(f.stranger).resolveVote(t.taskId, t.task, [9n], []);
      const error = await expectClientError(
        f.client.waitForResult(t.taskId, { pollMs: 50, timeoutMs: 20_000 }),
        new RegExp(
          `^task ${t.taskId} was rejected: the vote found the posted outputs wrong \\(outcome NodeWrong: the ` +
            "node and its attesters were slashed\\); its fee of 10.0 OPG went back to the requester$",
        ),
      );
      expect(error).to.include({ outcome: "NodeWrong" });
      const report = await f.client.audit(t.taskId);
      expect(report).to.include({
        status: "Rejected",
        settledBy: "dispute-vote",
        proofValid: null,
        outputMatches: null,
        agree: true,
      });
      expect(report.detail).to.match(/^posted outputs rejected by vote \(NodeWrong\)/);
      expect(report.optimistic!.dispute!.votes).to.have.length(2);
      expect(report.checked.join("\n")).to.match(/the stake-weighted vote found the node wrong/);
    });

    it("reads an open vote from the manager that opened it, after governance swapped the dispute manager", async function () {
      const outputs = [9n];
      const t = await postedOnVoteModel(outputs);
      const challenger = f.verifiers[1];
      await f.disputes.connect(challenger).challenge(t.taskId, t.task, hashWords(outputs), []);
      const enclaves = await f.enclaves.getAddress();
      const replacement = await (
        await ethers.getContractFactory("DisputeManager")
      ).deploy(
        await f.tasks.getAddress(),
        await f.token.getAddress(),
        await f.staking.getAddress(),
        f.governance.address,
      );
      await f.tasks.connect(f.governance).setVerificationModules(enclaves, await replacement.getAddress());
      try {
        const seen = await look(t.taskId);
        expect(seen.dispute).to.include({ challenger: challenger.address, byProof: false });
        expect(seen.message).to.match(new RegExp(`^disputed by ${challenger.address}: vote open until `));
      } finally {
        await f.tasks.connect(f.governance).setVerificationModules(enclaves, await f.disputes.getAddress());
      }
      await time.increase(Number(await f.disputes.voteWindow()) + 1);
      await f.disputes.connect(f.stranger).resolveVote(t.taskId, t.task, outputs, []);
    });
  });

  describe("zk: no claim; results settled in a batch", function () {
    it("says an open task waits for the first node in its order; a batch settles two and skips one settled before", async function () {
      const [a, b, c] = [
        await f.client.submit(f.irisModelId, IRIS_INPUT),
        await f.client.submit(f.irisModelId, IRIS_INPUT),
        await f.client.submit(f.irisModelId, IRIS_INPUT),
      ];
      expect([a.mode, b.mode, c.mode]).to.deep.equal(["zk", "zk", "zk"]);
      const open = await look(a.taskId);
      expect(open).to.include({ status: "Open", mode: "zk" });
      expect(open).to.not.have.property("claimedBy");
      expect(open.message).to.match(
        /^open, waiting for the first node in its service order to settle it with a proof \(\d+ eligible inference nodes? staked\); deadline/,
      );
      const outputs = f.honestOutputs();
      // another node settles c alone first
      const other = f.nodes[1];
      await f.tasks
        .connect(other)
        .submitResult(c.taskId, c.task, c.input, outputs, await proveIris(c, other.address));
      // the node's batch of the three: a and b settle, c is skipped (already Verified), nothing reverts
      const batch = [];
      for (const t of [a, b, c]) {
        batch.push({
          taskId: t.taskId,
          task: t.task,
          input: t.input,
          outputs,
          proof: await proveIris(t, node.address),
        });
      }
      const receipt = (await (await f.tasks.connect(node).submitResults(batch)).wait())!;
      const events = receipt.logs
        .map((l) => f.tasks.interface.parseLog(l))
        .filter((e) => e && ["TaskVerified", "TaskResultSkipped"].includes(e.name))
        .map((e) => [e!.name, e!.args.taskId, ...(e!.name === "TaskResultSkipped" ? [e!.args.status] : [])]);
      expect(events).to.have.deep.members([
        ["TaskVerified", a.taskId],
        ["TaskVerified", b.taskId],
        ["TaskResultSkipped", c.taskId, 3n],
      ]);
      // each result is read from the task's own submission in the batch
      for (const t of [a, b]) {
        const result = await f.client.waitForResult(t.taskId, { pollMs: 50, timeoutMs: 20_000 });
        expect(result).to.include({ mode: "zk", settledBy: "proof", node: node.address });
        expect(result.words).to.deep.equal(outputs);
        const report = await f.client.audit(t.taskId);
        expect(report).to.include({ mode: "zk", proofValid: true, outputMatches: true, agree: true });
        expect((await look(t.taskId)).message).to.match(
          new RegExp(`^verified in zk mode by a Groth16 proof checked on chain: node ${node.address}`),
        );
      }
      // the skipped submission changed nothing: c keeps the lone result of the node that settled it first
      expect(await f.client.result(c.taskId)).to.include({ node: other.address, mode: "zk" });
      expect(await f.client.audit(c.taskId)).to.include({ node: other.address, agree: true });
    });
  });

  describe("tee: signed result, audit of the key", function () {
    let key: Wallet;
    let s: SubmittedRequest;

    it("reports the open task waiting for an enclave-signed result (no claim), resolves with the key that signed", async function () {
      key = await f.registerKey(node);
      s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "tee" });
      const open = await look(s.taskId);
      expect(open).to.include({ status: "Open", mode: "tee" });
      expect(open).to.not.have.property("claimedBy");
      expect(open.message).to.match(
        /^open, waiting for the first node in its service order to settle it with an enclave-signed result \(\d+ eligible inference nodes? staked\); deadline/,
      );
      // a TEE task is not claimed: the registry refuses, and the client says why
      await expectClientError(
        sendTx("claimTask", f.tasks.interface, () => f.tasks.connect(node).claimTask(s.taskId, s.task)),
        new RegExp(
          `^claimTask reverted: TaskRegistryWrongMode\\(${s.taskId}, 4\\): task ${s.taskId} is a TEE task, ` +
            "which this call does not take: .*; only optimistic tasks are claimed \\(claimTask, then " +
            "submitResultOptimistic\\)$",
        ),
      );
      const outputs = f.honestOutputs();
      const onnxHash = await f.models.onnxHashOf(s.task.modelId);
      const digest = await f.tasks.teeResultDigest(
        s.taskId,
        node.address,
        s.task.inputHash,
        onnxHash,
        outputs,
      );
      const signature = key.signingKey.sign(digest).serialized;
      await f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature);
      const result = await f.client.waitForResult(s.taskId, { pollMs: 50, timeoutMs: 20_000 });
      expect(result).to.include({ mode: "tee", settledBy: "enclave-signature", enclaveKey: key.address });
      expect(result.words).to.deep.equal(outputs);
    });

    it("audits it: signer recovered against the recorded key, registration, standing; says what it cannot check", async function () {
      const report = await f.client.audit(s.taskId);
      expect(report).to.include({
        mode: "tee",
        settledBy: "enclave-signature",
        proofValid: null,
        agree: true,
      });
      expect(report.outputMatches).to.equal(true);
      expect(report.tee).to.deep.include({
        key: key.address,
        recovered: key.address,
        signatureMatches: true,
        standingAtSettlement: "Active",
        standingNow: "Active",
        measurementApprovedNow: true,
        developmentEnclave: true,
      });
      expect(report.tee!.registration).to.include({ node: node.address, documentHashMatches: true });
      expect(report.tee!.document).to.include({ verdict: "development", kind: "development" });
      const checked = report.checked.join("\n");
      expect(checked).to.include(`were signed by enclave key ${key.address}`);
      expect(checked).to.match(
        new RegExp(`registered by node ${node.address} for measurement 0x[0-9a-f]{64}`),
      );
      const notChecked = report.notChecked.join("\n");
      expect(notChecked).to.match(
        /that the enclave ran the model on this input: that rests on the attestation/,
      );
      expect(notChecked).to.match(/DEVELOPMENT attestation/);
      expect(report.warnings.join("\n")).to.match(/DEVELOPMENT enclave's/);
    });

    it("reports a key revoked after the settlement beside the standing it had then", async function () {
      await f.enclaves.connect(node).revokeKey(key.address);
      const report = await f.client.audit(s.taskId);
      expect(report.tee).to.include({ standingAtSettlement: "Active", standingNow: "Revoked" });
      expect(report.warnings.join("\n")).to.match(/the enclave key is Revoked now/);
      expect(report.agree).to.equal(true);
    });

    it("disagrees when the key's published document does not check", async function () {
      const bad = await f.registerKey(node, { measurement: DEV_MEASUREMENT, document: TEST_DOCUMENT });
      const t = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "tee" });
      const outputs = f.honestOutputs();
      const onnxHash = await f.models.onnxHashOf(t.task.modelId);
      const digest = await f.tasks.teeResultDigest(
        t.taskId,
        node.address,
        t.task.inputHash,
        onnxHash,
        outputs,
      );
      await f.tasks
        .connect(node)
        .submitResultTee(t.taskId, t.task, outputs, bad.signingKey.sign(digest).serialized);
      const report = await f.client.audit(t.taskId);
      expect(report).to.include({ mode: "tee", agree: false });
      expect(report.tee!.document!.verdict).to.equal("invalid");
      expect(report.detail).to.match(/THE ATTESTATION DOCUMENT DOES NOT CHECK/);
    });

    it("a challenged key's signature is refused: the task stays open for any node with an Active key, nobody slashed", async function () {
      const holder = f.nodes[1];
      const other = f.nodes[2];
      const challenged = await f.registerKey(holder);
      const active = await f.registerKey(other);
      const t = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "tee", deadlineSeconds: 3600 });
      const before = await f.staking.nodeInfo(holder.address);
      await f.enclaves.connect(f.verifiers[0]).challengeKey(challenged.address, "the document looks forged");
      const outputs = f.honestOutputs();
      const onnxHash = await f.models.onnxHashOf(t.task.modelId);
      const signed = async (by: HardhatEthersSigner, key: Wallet) =>
        key.signingKey.sign(
          await f.tasks.teeResultDigest(t.taskId, by.address, t.task.inputHash, onnxHash, outputs),
        ).serialized;
      const refused = await signed(holder, challenged);
      await expectClientError(
        sendTx("submitResultTee", f.tasks.interface, () =>
          f.tasks.connect(holder).submitResultTee(t.taskId, t.task, outputs, refused),
        ),
        new RegExp(
          `^submitResultTee reverted: TaskRegistryEnclaveKeyRejected\\(${t.taskId}, ${challenged.address}, 3\\): ` +
            `the enclave key ${challenged.address} that signed task ${t.taskId}'s result is Challenged, not ` +
            "Active: its signatures are refused \\(a challenged key's included\\); the task stays open for any " +
            "node with an Active key$",
        ),
      );
      // the task is still open, for any eligible node, and the challenge cost the holder nothing
      const seen = await look(t.taskId);
      expect(seen).to.include({ status: "Open", mode: "tee" });
      expect(seen).to.not.have.property("claimedBy");
      expect(seen.message).to.match(
        /^open, waiting for the first node in its service order to settle it with an enclave-signed result/,
      );
      const after = await f.staking.nodeInfo(holder.address);
      expect([after.bonded, after.locked]).to.deep.equal([before.bonded, before.locked]);
      // another node with an Active key settles it
      const waiting = f.client.waitForResult(t.taskId, { pollMs: 50, timeoutMs: 20_000 });
      waiting.catch(() => undefined); // awaited below; handled now so that a failure is not reported early
      await f.tasks.connect(other).submitResultTee(t.taskId, t.task, outputs, await signed(other, active));
      const result = await waiting;
      expect(result).to.include({
        mode: "tee",
        settledBy: "enclave-signature",
        enclaveKey: active.address,
        node: other.address,
      });
      expect(result.words).to.deep.equal(outputs);
      expect(await f.client.status(t.taskId)).to.equal("Verified");
    });
  });

  describe("auditRange", function () {
    it("audits every verified or rejected task in its mode; only proofs count toward setupNotSecure", async function () {
      const summary = await f.client.auditRange(0);
      // optimistic: 4 verified (two by attestations, one served again after a reopening, one by vote) and
      // 3 rejected (by a challenger's proof, two by vote); tee: 3 verified (one after a challenged key's
      // signature was refused); zk: 3 (two settled in a batch, one alone before the batch skipped it)
      expect(summary.byMode).to.deep.equal({ zk: 3, tee: 3, optimistic: 7, unknown: 0 });
      expect(summary).to.include({ audited: 13, rejected: 3 });
      // the wrong output its attesters let through, and the key whose document does not check
      expect(summary.disagreed).to.have.length(2);
      // the ZK proofs and the challenger's proof under the development setup; the votes and the TEE results
      // rest on none
      expect(summary.setupNotSecure).to.deep.equal([String(f.irisModelId)]);
    });
  });
});
