import { expect } from "chai";
import { ethers } from "hardhat";
import type { Wallet } from "ethers";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  chooseMode,
  OpgClientError,
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

  describe("optimistic: window, attestations, finality, audit", function () {
    let s: SubmittedRequest;
    let outputs: bigint[];

    it("reports the claim, then the window and the attestations against the quorum", async function () {
      s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      expect((await look(s.taskId)).message).to.match(
        new RegExp(`^claimed by ${node.address} until \\S+: waiting for it to post its outputs; deadline`),
      );
      outputs = f.honestOutputs();
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      const pending = await look(s.taskId);
      expect(pending).to.include({
        status: "Pending",
        mode: "optimistic",
        postedBy: node.address,
        attestations: 0,
        quorum: 1,
      });
      expect(pending.message).to.match(
        new RegExp(
          `^outputs posted by ${node.address} without proof: challenge window open until \\S+Z, ` +
            "0 of 1 attestation so far; final after the window with the quorum",
        ),
      );
      await f.tasks.connect(verifier).attest(s.taskId, s.task, hashWords(outputs), []);
      expect((await look(s.taskId)).message).to.match(/1 of 1 attestation so far/);
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

    it("audits it: window, attesters, output recomputed; says what rests on the attesters", async function () {
      const report = await f.client.audit(s.taskId);
      expect(report).to.include({
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
      expect(report.checked.join("\n")).to.match(/1 staked verification node\(s\) attested \(quorum 1\)/);
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
      await f.tasks.connect(node).submitResultOptimistic(lie.taskId, lie.task, wrong, []);
      await f.tasks.connect(verifier).attest(lie.taskId, lie.task, hashWords(wrong), []);
      await time.increase(601);
      await f.tasks.connect(node).finalizeResult(lie.taskId, lie.task, wrong, [verifier.address]);
      const report = await f.client.audit(lie.taskId);
      expect(report).to.include({ mode: "optimistic", outputMatches: false, agree: false });
      expect(report.detail).to.match(/OUTPUT DIFFERS/);
    });
  });

  describe("optimistic: a window that closes short of the quorum", function () {
    it("fails the wait as refundable, and refund() expires it unattested", async function () {
      const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, f.honestOutputs(), []);
      await expectClientError(f.client.refund(s.taskId), /its challenge window is open until/);
      await time.increase(601);
      await expectClientError(
        f.client.waitForResult(s.taskId, { pollMs: 50, timeoutMs: 20_000 }),
        new RegExp(
          `^task ${s.taskId}: outputs posted by ${node.address}: the challenge window ended at \\S+ with only ` +
            "0 of 1 attestation: the result cannot become final; refundable to the requester",
        ),
      );
      await f.client.refund(s.taskId);
      expect(await f.client.status(s.taskId)).to.equal("Expired");
    });
  });

  describe("optimistic: a dispute the node loses", function () {
    it("reports the dispute, then fails the wait with a TaskRejectedError naming the outcome and refund", async function () {
      const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const wrong = f.honestOutputs().map((w, i) => (i === 0 ? w + 1n : w));
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, wrong, []);
      const challenger = f.verifiers[1];
      await f.disputes.connect(challenger).challenge(s.taskId, s.task, hashWords(wrong), []);
      const disputed = await look(s.taskId);
      expect(disputed).to.deep.include({ status: "Disputed", mode: "optimistic" });
      expect(disputed.dispute).to.include({ challenger: challenger.address, byProof: true });
      expect(disputed.message).to.match(
        new RegExp(
          `^disputed by ${challenger.address}: the node that posted the outputs \\(${node.address}\\) must ` +
            "answer with a proof by \\S+, or they are rejected and the fee refunded$",
        ),
      );
      await time.increase(Number(await f.disputes.responseWindow()) + 1);
      expect((await look(s.taskId)).message).to.match(
        /anyone may now settle the dispute against it \(timeout\)/,
      );
      await f.disputes.connect(f.stranger).timeout(s.taskId, s.task, hashWords(wrong), []);
      const error = await expectClientError(
        f.client.waitForResult(s.taskId, { pollMs: 50, timeoutMs: 20_000 }),
        new RegExp(
          `^task ${s.taskId} was rejected: the dispute found the posted outputs wrong \\(outcome NodeWrong: ` +
            "the node and its attesters were slashed\\); its fee of 10.0 OPG went back to the requester$",
        ),
      );
      expect(error).to.be.instanceOf(TaskRejectedError);
      expect(error).to.include({ outcome: "NodeWrong", refund: s.task.fee });
      expect(await look(s.taskId)).to.include({ status: "Rejected", outcome: "NodeWrong" });
      await expectClientError(f.client.audit(s.taskId), /is Rejected, not verified/);
    });
  });

  describe("optimistic: disputes the node wins", function () {
    it("audits a dispute answered by a proof: the proof re-verified, the setup reported", async function () {
      const s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "optimistic" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const outputs = f.honestOutputs();
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      await f.disputes.connect(f.verifiers[1]).challenge(s.taskId, s.task, hashWords(outputs), []);
      const manifest = loadManifest(f.bundleDir);
      const binding = BigInt(await f.tasks.taskBinding(s.taskId, node.address));
      const quantized = quantizeInput(loadProgram(f.bundleDir), IRIS_INPUT.flat());
      const { proof } = await fullProve(
        witnessInput(manifest, quantized, binding),
        path.join(f.bundleDir, manifest.artifacts.wasm.file),
        path.join(f.bundleDir, manifest.artifacts.zkey!.file),
      );
      await f.disputes.connect(node).respond(s.taskId, s.task, s.input, outputs, [], proofWords(proof));
      const result = await f.client.waitForResult(s.taskId, { pollMs: 50, timeoutMs: 20_000 });
      expect(result).to.include({ mode: "optimistic", settledBy: "dispute-proof" });
      const report = await f.client.audit(s.taskId);
      expect(report).to.include({
        settledBy: "dispute-proof",
        proofValid: true,
        outputMatches: true,
        agree: true,
        setupSecure: false,
      });
      expect(report.optimistic!.dispute).to.include({
        challenger: f.verifiers[1].address,
        circuit: true,
        outcome: "NodeRight",
      });
      expect(report.setup).to.include({ trust: "development" });
      expect(report.notChecked.join("\n")).to.match(/trusted setup/);
    });

    it("audits a dispute settled by vote on a model without a circuit: the output not recomputed, said so", async function () {
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
      const outputs = [7n];
      await f.tasks.connect(node).submitResultOptimistic(submitted.taskId, submitted.task, outputs, []);
      await f.disputes
        .connect(f.verifiers[1])
        .challenge(submitted.taskId, submitted.task, hashWords(outputs), []);
      const seen = await look(submitted.taskId);
      expect(seen.dispute).to.include({ byProof: false });
      expect(seen.message).to.match(/verification nodes vote on the posted outputs until/);
      await f.disputes.connect(f.verifiers[2]).vote(submitted.taskId, true);
      await time.increase(Number(await f.disputes.voteWindow()) + 1);
      await f.disputes.connect(f.stranger).resolveVote(submitted.taskId, submitted.task, outputs, []);
      const report = await f.client.audit(submitted.taskId);
      expect(report).to.include({
        mode: "optimistic",
        settledBy: "dispute-vote",
        proofValid: null,
        outputMatches: null,
        agree: true,
      });
      expect(report.optimistic!.dispute!.votes).to.have.length(1);
      const notChecked = report.notChecked.join("\n");
      expect(notChecked).to.match(/a dispute settled by vote shows only what the staked majority said/);
      expect(notChecked).to.match(/the model's bundle could not be used to recompute it/);
    });
  });

  describe("tee: signed result, audit of the key", function () {
    let key: Wallet;
    let s: SubmittedRequest;

    it("reports the claim, resolves with the enclave key that signed", async function () {
      key = await f.registerKey(node);
      s = await f.client.submit(f.irisModelId, IRIS_INPUT, { mode: "tee" });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      expect((await look(s.taskId)).message).to.match(/: waiting for its enclave-signed result; deadline/);
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
      await f.tasks.connect(node).claimTask(t.taskId, t.task);
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
  });

  describe("auditRange", function () {
    it("audits every verified task in its mode; only proofs count toward setupNotSecure", async function () {
      const summary = await f.client.auditRange(0);
      expect(summary.byMode).to.deep.equal({ zk: 0, tee: 2, optimistic: 4, unknown: 0 });
      expect(summary.audited).to.equal(6);
      expect(summary.disagreed).to.have.length(2);
      // the dispute answered by a proof under the development setup; the vote and the TEE results rest on none
      expect(summary.setupNotSecure).to.deep.equal([String(f.irisModelId)]);
    });
  });
});
