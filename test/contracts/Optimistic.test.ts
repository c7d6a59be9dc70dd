import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { expect } from "chai";
import { ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  CLAIM_COLLATERAL,
  MODEL_FEE,
  NODE_STAKE,
  VERIFICATION_MODE_OPTIMISTIC,
  VERIFICATION_MODE_TEE,
  VERIFICATION_MODE_ZK,
  VERIFIER_STAKE,
  hashWords,
  modesFixture,
} from "../helpers/market-fixture";
import {
  ATTESTER_BPS,
  ATTESTER_SLASH,
  BENEFICIARY_BPS,
  BPS,
  CHALLENGE_BOND,
  Outcome,
  PROTOCOL_BPS,
  ROYALTY_BPS,
  Status,
  VALUES,
  VOTER_SLASH_BPS,
  afterDispute,
  afterWindow,
  bonded,
  claimedOptimistic,
  disprove,
  posted,
  signAttestation,
  tokens,
  type Posted,
} from "../helpers/optimistic";
import { tinyOutputWord } from "../helpers/tiny-circuit";
import { readVerifiedResult } from "../../workers/runtime/tasks";

describe("Optimistic mode", function () {
  describe("submitTask", function () {
    it("picks the strongest mode the model allows and freezes the optimistic terms", async function () {
      const f = await loadFixture(modesFixture);
      expect((await f.submit(VALUES, { modelId: f.optimisticModelId })).task.mode).to.equal(
        BigInt(VERIFICATION_MODE_ZK),
      );
      expect((await f.submit(VALUES, { modelId: f.voteModelId })).task.mode).to.equal(
        BigInt(VERIFICATION_MODE_TEE),
      );
      const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
      expect(s.task.mode).to.equal(BigInt(VERIFICATION_MODE_OPTIMISTIC));
      expect(s.task.attestationQuorum).to.equal(1n);
      expect(s.task.attesterFeeBps).to.equal(ATTESTER_BPS);
    });

    it("reverts for a mode the model does not allow, or more than one mode", async function () {
      const f = await loadFixture(modesFixture);
      for (const [modelId, mode] of [
        [f.modelId, VERIFICATION_MODE_OPTIMISTIC],
        [f.voteModelId, VERIFICATION_MODE_ZK],
        [f.optimisticModelId, VERIFICATION_MODE_ZK | VERIFICATION_MODE_OPTIMISTIC],
      ] as const) {
        await expect(f.submit(VALUES, { modelId, mode }))
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryModeUnavailable")
          .withArgs(modelId, mode);
      }
    });
  });

  describe("submitResultOptimistic", function () {
    it("posts the outputs with a challenge window and keeps the collateral locked", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const { s, outputs } = await claimedOptimistic(f, node);
      const tx = f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      await expect(tx).to.emit(f.tasks, "TaskResultPosted");
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Pending);
      const [pendingNode, windowEnd] = await f.tasks.pendingOf(s.taskId);
      expect(pendingNode).to.equal(node.address);
      expect(windowEnd).to.equal(BigInt(await time.latest()) + 600n);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
    });

    it("reverts for a ZK task (never claimed), a stranger, or a second post", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const zk = await f.submit(VALUES, { modelId: f.optimisticModelId });
      // A ZK task is served without a claim, so it is never in the Claimed state an optimistic post needs.
      await expect(f.tasks.connect(node).claimTask(zk.taskId, zk.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(zk.taskId, VERIFICATION_MODE_ZK);
      const outputs = [tinyOutputWord(VALUES)];
      await expect(f.tasks.connect(node).submitResultOptimistic(zk.taskId, zk.task, outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(zk.taskId, Status.Open);
      const { s } = await claimedOptimistic(f, node);
      await expect(f.tasks.connect(f.nodes[1]).submitResultOptimistic(s.taskId, s.task, outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotClaimer")
        .withArgs(s.taskId, f.nodes[1].address, node.address);
      const p = await posted(f);
      await expect(f.tasks.connect(f.nodes[1]).submitResultOptimistic(p.s.taskId, p.s.task, outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Pending);
    });

    it("has no on-chain attest: the attester set is fixed by the post", async function () {
      const f = await loadFixture(modesFixture);
      expect(
        f.tasks.interface.fragments.some(
          (x) => x.type === "function" && (x as { name?: string }).name === "attest",
        ),
      ).to.equal(false);
    });
  });

  describe("honest path: finalize", function () {
    it("finalizes after the window and splits the fee exactly: protocol, royalty, attesters, node", async function () {
      const f = await loadFixture(modesFixture);
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f, { attesters: [f.verifiers[0], f.verifiers[1]] });
      await afterWindow(f, p.s.taskId);

      const protocolFee = (MODEL_FEE * PROTOCOL_BPS) / BPS; // 1 OPG
      const royalty = (MODEL_FEE * ROYALTY_BPS) / BPS; // 1 OPG
      const share = (MODEL_FEE * ATTESTER_BPS) / BPS / 2n; // 0.5 OPG each
      const nodeFee = MODEL_FEE - protocolFee - royalty - 2n * share; // 7 OPG
      expect(nodeFee).to.equal(ethers.parseEther("7"));
      const tx = f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, p.attesters);
      await expect(tx)
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(p.s.taskId, p.node.address, p.outputs, nodeFee, royalty, protocolFee);
      await expect(tx).to.emit(f.tasks, "AttestersPaid").withArgs(p.s.taskId, p.attesters, share);

      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
      const result = await readVerifiedResult(f.tasks, p.s.taskId);
      expect(result!.outputs).to.deep.equal(p.outputs);
      expect(result!.node).to.equal(p.node.address);
      const { node, settledBlock } = result!;
      expect(await f.tasks.isVerifiedResult(p.s.taskId, { node, settledBlock, outputs: p.outputs })).to.equal(
        true,
      );
      const forged = { node, settledBlock, outputs: [p.outputs[0] + 1n] };
      expect(await f.tasks.isVerifiedResult(p.s.taskId, forged)).to.equal(false);
      expect(await f.tasks.creditsOf(p.node.address)).to.equal(nodeFee);
      expect(await f.tasks.creditsOf(f.modelOwner.address)).to.equal(royalty);
      expect(await f.tasks.creditsOf(f.verifiers[0].address)).to.equal(share);
      expect(await f.tasks.creditsOf(f.verifiers[1].address)).to.equal(share);
      expect(await f.tasks.protocolFeesOf(p.node.address)).to.equal(protocolFee);
      expect(await f.tasks.releasableCollateralOf(p.node.address)).to.equal(CLAIM_COLLATERAL);
      expect(await tokens(f, f.tasksAddress)).to.equal(MODEL_FEE);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore - MODEL_FEE);

      const before = await tokens(f, f.verifiers[0].address);
      await f.tasks.connect(f.verifiers[0]).withdrawCredits(f.verifiers[0].address);
      expect(await tokens(f, f.verifiers[0].address)).to.equal(before + share);
      await f.tasks.releaseCollateral(p.node.address);
      expect((await f.staking.nodeInfo(p.node.address)).locked).to.equal(0n);
    });

    it("refuses to finalize before the window ends, without quorum, or with another attester list", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f, { attesters: [f.verifiers[0]] });
      const [, windowEnd] = await f.tasks.pendingOf(p.s.taskId);
      await expect(f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, p.attesters))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWindow")
        .withArgs(p.s.taskId, windowEnd, anyTime());
      await afterWindow(f, p.s.taskId);
      await expect(
        f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, [f.verifiers[1].address]),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");
      await expect(
        f.tasks.finalizeResult(p.s.taskId, p.s.task, [p.outputs[0] + 1n], p.attesters),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");

      const q = await posted(f, { node: f.nodes[1] });
      await afterWindow(f, q.s.taskId);
      await expect(f.tasks.finalizeResult(q.s.taskId, q.s.task, q.outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryQuorumNotMet")
        .withArgs(q.s.taskId, 0, 1);
    });

    it("refuses to expire a result that met its quorum", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f, { attesters: [f.verifiers[0]] });
      await afterWindow(f, p.s.taskId);
      await expect(f.tasks.expireUnattested(p.s.taskId, p.s.task, p.outputsHash, p.attesters))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Pending);
    });
  });

  describe("attestations signed off chain, carried by the post", function () {
    it("count as attestations: TaskAttested in the post's transaction, final after the window, paid", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const [a, b] = f.verifiers;
      const { s, outputs } = await claimedOptimistic(f, node);
      const sigs = [
        await signAttestation(f, a, s, node.address, outputs),
        await signAttestation(f, b, s, node.address, outputs),
      ];
      const tx = f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, sigs);
      await expect(tx).to.emit(f.tasks, "TaskAttested").withArgs(s.taskId, a.address, 1n);
      await expect(tx).to.emit(f.tasks, "TaskAttested").withArgs(s.taskId, b.address, 2n);
      await afterWindow(f, s.taskId);
      const before = await f.tasks.creditsOf(a.address);
      await f.tasks.finalizeResult(s.taskId, s.task, outputs, [a.address, b.address]);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
      const share = (MODEL_FEE * ATTESTER_BPS) / BPS / 2n;
      expect(await f.tasks.creditsOf(a.address)).to.equal(before + share);
    });

    it("refuses a signature by a non-verifier, the node itself, a signer twice, or over other outputs or another task", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const [a] = f.verifiers;
      await f.staking.connect(node).updateNode(3, "http://both.example:8080");
      const { s, outputs } = await claimedOptimistic(f, node);
      const other = await claimedOptimistic(f, node);
      const post = (sigs: string[]) =>
        f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, sigs);
      const refused = async (sigs: string[], who: string) =>
        expect(post(sigs))
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest")
          .withArgs(s.taskId, who);

      // Not a verification node (an inference node), and the posting node itself (even with both roles).
      await refused([await signAttestation(f, f.nodes[1], s, node.address, outputs)], f.nodes[1].address);
      await refused([await signAttestation(f, node, s, node.address, outputs)], node.address);
      const good = await signAttestation(f, a, s, node.address, outputs);
      await refused([good, good], a.address);
      const wrong = await signAttestation(f, a, s, node.address, [outputs[0] + 1n]);
      const wrongSigner = ethers.verifyMessage(
        ethers.getBytes(await f.tasks.attestationDigest(s.taskId, node.address, hashWords(outputs))),
        wrong,
      );
      await refused([wrong], wrongSigner);
      const replayed = await signAttestation(f, a, other.s, node.address, outputs);
      await expect(post([replayed])).to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest");
      const otherNode = await signAttestation(f, a, s, f.nodes[1].address, outputs);
      await expect(post([otherNode])).to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest");
      await refused(["0x1234"], ethers.ZeroAddress);
      await expect(post([good]))
        .to.emit(f.tasks, "TaskAttested")
        .withArgs(s.taskId, a.address, 1n);
    });
  });

  describe("dispute entry points", function () {
    it("only a dispute manager opens a dispute, and only the one that opened it settles it", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f, { modelId: f.voteModelId });
      const t = f.tasks.connect(f.stranger);
      await expect(t.openDispute(p.s.taskId, p.s.task, p.outputsHash, [], f.stranger.address))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotDisputeManager")
        .withArgs(f.stranger.address);
      await f.disputes.connect(f.verifiers[1]).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      await expect(t.acceptDisputed(p.s.taskId, p.s.task, p.outputs, [])).to.be.revertedWithCustomError(
        f.tasks,
        "TaskRegistryPendingMismatch",
      );
      await expect(
        t.rejectDisputed(p.s.taskId, p.s.task, p.outputsHash, [], Outcome.NodeWrong, f.stranger.address),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");
      // Not even governance.
      await expect(
        f.tasks.connect(f.governance).acceptDisputed(p.s.taskId, p.s.task, p.outputs, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");
    });

    it("refuses a challenge after the window, by a non-verifier, by the node itself, or of the other kind", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      await f.staking.connect(node).updateNode(3, "http://both.example:8080");
      const p = await posted(f, { node, modelId: f.voteModelId });
      await expect(f.disputes.connect(f.stranger).challenge(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerNotVerifier")
        .withArgs(f.stranger.address);
      await f.token.connect(node).approve(await f.disputes.getAddress(), ethers.MaxUint256);
      await expect(f.disputes.connect(node).challenge(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerSelfChallenge")
        .withArgs(p.s.taskId);
      // A model with a circuit takes a proof, not a vote; a model without one takes a vote, not a proof.
      const q = await posted(f, { node: f.nodes[1], outputs: [1n] });
      await expect(f.disputes.connect(f.verifiers[0]).challenge(q.s.taskId, q.s.task, q.outputsHash, []))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerWrongKind")
        .withArgs(q.s.taskId, true);
      const { proof, outputs } = await f.prove(q.s, f.verifiers[0]);
      await expect(
        f.disputes
          .connect(f.verifiers[0])
          .challengeWithProof(p.s.taskId, p.s.task, p.outputsHash, [], p.s.input, outputs, proof),
      )
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerWrongKind")
        .withArgs(p.s.taskId, false);
      await afterWindow(f, p.s.taskId);
      await expect(
        f.disputes.connect(f.verifiers[0]).challenge(p.s.taskId, p.s.task, p.outputsHash, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryWindow");
      await afterWindow(f, q.s.taskId);
      await expect(disprove(f, q, f.verifiers[0])).to.be.revertedWithCustomError(
        f.tasks,
        "TaskRegistryWindow",
      );
    });

    it("blocks finalize and a second challenge while a vote is open", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f, { modelId: f.voteModelId, attesters: [f.verifiers[0]] });
      await expect(
        f.disputes.connect(f.verifiers[1]).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters),
      )
        .to.emit(f.tasks, "TaskDisputed")
        .withArgs(p.s.taskId, f.verifiers[1].address);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Disputed);
      await expect(
        f.disputes.connect(f.verifiers[2]).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Disputed);
      await afterWindow(f, p.s.taskId);
      await expect(f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, p.attesters))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Disputed);
    });
  });

  describe("disputes settled by proof (model with a circuit)", function () {
    it("catches a lying node in one transaction: node and attester slashed, challenger paid, exact refund", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger] = f.verifiers;
      const requesterBefore = await tokens(f, f.requester.address);
      const wrong = [tinyOutputWord(VALUES) + 1n];
      const p = await posted(f, { outputs: wrong, attesters: [attester] });
      const challengerBefore = await tokens(f, challenger.address);
      const treasuryBefore = await tokens(f, f.treasury.address);
      const tx = disprove(f, p, challenger);
      await expect(tx)
        .to.emit(f.tasks, "TaskRejected")
        .withArgs(p.s.taskId, f.requester.address, MODEL_FEE, Outcome.NodeWrong);
      await expect(tx)
        .to.emit(f.disputes, "AttesterSlashed")
        .withArgs(p.s.taskId, attester.address, ATTESTER_SLASH);
      await expect(tx)
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeWrong, challenger.address);
      await expect(tx)
        .to.emit(f.staking, "NodeSlashed")
        .withArgs(
          p.node.address,
          f.tasksAddress,
          await f.tasks.SLASH_REASON_WRONG_RESULT(),
          CLAIM_COLLATERAL,
          challenger.address,
          (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS,
        );

      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Rejected);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE - CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(p.node.address)).locked).to.equal(0n);
      expect(await bonded(f, attester.address)).to.equal(VERIFIER_STAKE - ATTESTER_SLASH);
      const toChallenger = (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS;
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore + toChallenger);
      expect(await tokens(f, f.treasury.address)).to.equal(
        treasuryBefore + CLAIM_COLLATERAL + ATTESTER_SLASH - toChallenger,
      );
      expect(await tokens(f, f.tasksAddress)).to.equal(0n);
      expect(await tokens(f, await f.disputes.getAddress())).to.equal(0n);
      expect(await f.tasks.creditsOf(p.node.address)).to.equal(0n);
      expect(await f.tasks.creditsOf(attester.address)).to.equal(0n);
      // Settled once.
      await expect(disprove(f, p, f.verifiers[2]))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Rejected);
    });

    it("refuses a challenge of correct outputs: a proof of them, forged outputs, or a proof bound to someone else", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger] = f.verifiers;
      const p = await posted(f, { attesters: [attester] });
      const { proof, outputs } = await f.prove(p.s, challenger);
      expect(outputs).to.deep.equal(p.outputs);
      const c = f.disputes.connect(challenger);
      await expect(
        c.challengeWithProof(p.s.taskId, p.s.task, p.outputsHash, p.attesters, p.s.input, outputs, proof),
      )
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerSameOutputs")
        .withArgs(p.s.taskId);
      await expect(
        c.challengeWithProof(
          p.s.taskId,
          p.s.task,
          p.outputsHash,
          p.attesters,
          p.s.input,
          [outputs[0] + 1n],
          proof,
        ),
      )
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerInvalidProof")
        .withArgs(p.s.taskId);
      // A real disproof copied from another challenger's transaction is bound to that challenger.
      const lie = await posted(f, { node: f.nodes[1], outputs: [1n] });
      const { proof: theirs, outputs: truth } = await f.prove(lie.s, f.verifiers[2]);
      await expect(
        c.challengeWithProof(lie.s.taskId, lie.s.task, lie.outputsHash, [], lie.s.input, truth, theirs),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerInvalidProof");
      // Another task's input.
      await expect(
        c.challengeWithProof(
          lie.s.taskId,
          lie.s.task,
          lie.outputsHash,
          [],
          [...lie.s.input.slice(1), 0n],
          truth,
          theirs,
        ),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerInputMismatch");
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Pending);
    });

    it("delivers nothing to a callback and refunds: a consumer's failure path", async function () {
      const f = await loadFixture(modesFixture);
      const recorder = await (await ethers.getContractFactory("RecordingCallback")).deploy();
      const node = f.nodes[0];
      const s = await f.submit(VALUES, {
        modelId: f.optimisticModelId,
        mode: VERIFICATION_MODE_OPTIMISTIC,
        callback: await recorder.getAddress(),
        callbackGasLimit: 200_000,
      });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, [1n], []);
      const p: Posted = { s, node, outputs: [1n], outputsHash: hashWords([1n]), attesters: [] };
      await disprove(f, p, f.verifiers[1]);
      expect(await recorder.lastTaskId()).to.equal(0n);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Rejected);
    });

    it("still refunds, pays the challenger and slashes the attesters when the registry lost its slasher role", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger] = f.verifiers;
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f, { outputs: [1n], attesters: [attester] });
      await f.staking.connect(f.governance).setSlasher(f.tasksAddress, false);
      const tx = disprove(f, p, challenger);
      const slashSelector = f.staking.interface.getFunction("slash").selector;
      await expect(tx)
        .to.emit(f.tasks, "StakingCallFailed")
        .withArgs(p.s.taskId, p.node.address, CLAIM_COLLATERAL, slashSelector);
      await expect(tx)
        .to.emit(f.disputes, "AttesterSlashed")
        .withArgs(p.s.taskId, attester.address, ATTESTER_SLASH);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Rejected);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect((await f.staking.nodeInfo(p.node.address)).locked).to.equal(0n);
    });
  });

  describe("disputes settled by vote (model without a circuit)", function () {
    it("node right: the result is verified, the challenger's bond and the losers' slashes pay the winners by weight", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger, v2, v3] = f.verifiers;
      const p = await posted(f, { modelId: f.voteModelId, attesters: [attester] });
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters);
      await f.disputes.connect(attester).vote(p.s.taskId, true);
      await f.disputes.connect(v2).vote(p.s.taskId, true);
      // v3 sides with the challenger: 2,000 against 2,000 + ... no: 1,000 + 1,000 for, 1,000 + 1,000 against.
      await f.staking.connect(p.node).updateNode(3, "http://both.example:8080");
      await f.disputes.connect(p.node).vote(p.s.taskId, true); // the node's own stake may vote too
      await f.disputes.connect(v3).vote(p.s.taskId, false);
      await expect(
        f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, p.attesters),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerWindow");
      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, p.attesters);
      await expect(tx)
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeRight, anyAddress());
      await expect(tx).to.emit(f.tasks, "TaskVerified");
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);

      // Losers: the challenger and v3 each lose 10% of their weight (1,000): half to the winners, half to
      // the treasury. Winners: attester (1,000), v2 (1,000), node (5,000 free minus... its locked claim was
      // released at finality, so its weight was its free stake when it voted).
      const d = await f.disputes.disputeOf(p.s.taskId);
      const winWeight = d.weightFor;
      const loserSlash = (VERIFIER_STAKE * VOTER_SLASH_BPS) / BPS;
      for (const loser of [challenger, v3]) {
        await expect(f.disputes.settleBallot(p.s.taskId, loser.address))
          .to.emit(f.disputes, "BallotSettled")
          .withArgs(p.s.taskId, loser.address, loserSlash, 0n);
        expect(await bonded(f, loser.address)).to.equal(VERIFIER_STAKE - loserSlash);
      }
      // The reward per unit of weight grows with the bond, then with each loser's beneficiary share.
      const perWeight = (x: bigint) => (x * 10n ** 27n) / winWeight;
      const share = (loserSlash * BENEFICIARY_BPS) / BPS;
      const acc = perWeight(CHALLENGE_BOND) + 2n * perWeight(share);
      expect((await f.disputes.disputeOf(p.s.taskId)).rewardPerWeight).to.equal(acc);
      const before = await tokens(f, v2.address);
      await f.disputes.settleBallot(p.s.taskId, v2.address);
      const v2Weight = (await f.disputes.ballotOf(p.s.taskId, v2.address)).weight;
      const expected = (v2Weight * acc) / 10n ** 27n;
      expect(await tokens(f, v2.address)).to.equal(before + expected);
      // Settling again pays nothing more; a loser cannot be slashed twice.
      await expect(f.disputes.settleBallot(p.s.taskId, v2.address))
        .to.emit(f.disputes, "BallotSettled")
        .withArgs(p.s.taskId, v2.address, 0n, 0n);
      await expect(f.disputes.settleBallot(p.s.taskId, v3.address))
        .to.emit(f.disputes, "BallotSettled")
        .withArgs(p.s.taskId, v3.address, 0n, 0n);
      await f.disputes.settleBallot(p.s.taskId, attester.address);
      await f.disputes.settleBallot(p.s.taskId, p.node.address);
      // Everything paid out but rounding dust (below one wei per ballot).
      expect(await tokens(f, await f.disputes.getAddress())).to.be.lessThan(8n);
    });

    it("node wrong: refund, node (challenger's share) and attester slashed, losing voters slashed, bond back", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger, v2] = f.verifiers;
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f, { modelId: f.voteModelId, outputs: [1n], attesters: [attester] });
      const challengerBefore = await tokens(f, challenger.address);
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters);
      await f.disputes.connect(attester).vote(p.s.taskId, true);
      await f.disputes.connect(v2).vote(p.s.taskId, false);
      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, p.attesters);
      await expect(tx)
        .to.emit(f.tasks, "TaskRejected")
        .withArgs(p.s.taskId, f.requester.address, MODEL_FEE, Outcome.NodeWrong);
      await expect(tx)
        .to.emit(f.disputes, "AttesterSlashed")
        .withArgs(p.s.taskId, attester.address, ATTESTER_SLASH);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE - CLAIM_COLLATERAL);
      const toChallenger = (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS;
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore + toChallenger);
      // The attester also voted for the lie: its ballot loses 10% of its weight at settlement.
      const weight = (await f.disputes.ballotOf(p.s.taskId, attester.address)).weight;
      await f.disputes.settleBallot(p.s.taskId, attester.address);
      expect(await bonded(f, attester.address)).to.equal(
        VERIFIER_STAKE - ATTESTER_SLASH - (weight * VOTER_SLASH_BPS) / BPS,
      );
      // The winners (challenger and v2) share the beneficiary half of that, by weight.
      const rewardC = await f.disputes.rewardOf(p.s.taskId, challenger.address);
      const rewardV = await f.disputes.rewardOf(p.s.taskId, v2.address);
      expect(rewardC + rewardV).to.be.closeTo(
        (((weight * VOTER_SLASH_BPS) / BPS) * BENEFICIARY_BPS) / BPS,
        2n,
      );
    });

    it("a tie is the node's: the challenger carries the burden, so a requester cannot tie its way to a refund", async function () {
      const f = await loadFixture(modesFixture);
      const [, challenger, v2] = f.verifiers;
      const p = await posted(f, { modelId: f.voteModelId });
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      await f.disputes.connect(v2).vote(p.s.taskId, true); // 1,000 against 1,000
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, []))
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeRight, await f.disputes.getAddress());
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
    });

    it("undecided without quorum: exact refund, nobody slashed, nobody paid, the bond returns to the challenger", async function () {
      const f = await loadFixture(modesFixture);
      await f.disputes
        .connect(f.governance)
        .setDisputeParameters(1800, CHALLENGE_BOND, 1000, ethers.parseEther("5000"));
      const [, challenger, v2] = f.verifiers;
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f, { modelId: f.voteModelId });
      const challengerBefore = await tokens(f, challenger.address);
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      // Governance raising the quorum now changes nothing for this dispute: it keeps the one it opened with.
      await f.disputes.connect(f.governance).setDisputeParameters(1800, CHALLENGE_BOND, 1000, 1n);
      await f.disputes.connect(v2).vote(p.s.taskId, true); // 2,000 of 5,000
      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, []);
      await expect(tx)
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.Undecided, challenger.address);
      await expect(tx).to.not.emit(f.staking, "NodeSlashed");
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE);
      expect(await f.tasks.releasableCollateralOf(p.node.address)).to.equal(CLAIM_COLLATERAL);
      for (const v of [challenger, v2]) {
        await expect(f.disputes.settleBallot(p.s.taskId, v.address))
          .to.emit(f.disputes, "BallotSettled")
          .withArgs(p.s.taskId, v.address, 0n, 0n);
        expect(await bonded(f, v.address)).to.equal(VERIFIER_STAKE);
      }
      expect(await tokens(f, await f.disputes.getAddress())).to.equal(0n);
    });

    it("a requester cannot get an output for less than its fee by challenging: the bond is at least the fee", async function () {
      const f = await loadFixture(modesFixture);
      const fee = ethers.parseEther("500");
      const p = await posted(f, { modelId: f.voteModelId, fee });
      const requester = f.verifiers[3];
      const before = await tokens(f, requester.address);
      await expect(f.disputes.connect(requester).challenge(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.emit(f.disputes, "DisputeOpened")
        .withArgs(p.s.taskId, requester.address, p.node.address, fee, anyTime(), false);
      expect(await tokens(f, requester.address)).to.equal(before - fee);
    });

    it("refuses votes by the challenger, twice, after the window, by a non-verifier, or with stake added since the opening", async function () {
      const f = await loadFixture(modesFixture);
      const [v0, challenger, v2, v3] = f.verifiers;
      const p = await posted(f, { modelId: f.voteModelId });
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      const refuse = (who: HardhatEthersSigner) =>
        expect(f.disputes.connect(who).vote(p.s.taskId, true))
          .to.be.revertedWithCustomError(f.disputes, "DisputeManagerCannotVote")
          .withArgs(p.s.taskId, who.address);
      await refuse(challenger);
      await f.disputes.connect(v0).vote(p.s.taskId, true);
      await refuse(v0);
      await refuse(f.nodes[1]); // inference role only
      await f.staking.connect(v3).stake(1n);
      await refuse(v3);
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.connect(v2).vote(p.s.taskId, true)).to.be.revertedWithCustomError(
        f.disputes,
        "DisputeManagerWindow",
      );
      await expect(f.disputes.settleBallot(p.s.taskId, v0.address)).to.be.revertedWithCustomError(
        f.disputes,
        "DisputeManagerWrongState",
      );
      await f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, []);
      await expect(f.disputes.settleBallot(p.s.taskId, v2.address))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerNoBallot")
        .withArgs(p.s.taskId, v2.address);
    });
  });

  describe("lifecycle guards", function () {
    it("a requester cannot pull its escrow back while a result is pending or disputed", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      await time.increaseTo(BigInt(p.s.task.deadline) + 1n);
      await expect(f.tasks.connect(f.requester).expire(p.s.taskId, p.s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Pending);
      const q = await posted(f, { node: f.nodes[1], modelId: f.voteModelId });
      await f.disputes.connect(f.verifiers[1]).challenge(q.s.taskId, q.s.task, q.outputsHash, []);
      await time.increaseTo(BigInt(q.s.task.deadline) + 1n);
      await expect(f.tasks.connect(f.requester).expire(q.s.taskId, q.s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(q.s.taskId, Status.Disputed);
    });

    it("refuses the ZK path for an optimistic task, open or claimed, and a post after the claim window", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
      const { proof, outputs } = await f.prove(s, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(s.taskId, VERIFICATION_MODE_OPTIMISTIC);
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Claimed);
      const [, claimExpiresAt] = await f.tasks.claimOf(s.taskId);
      await time.increaseTo(claimExpiresAt + 1n);
      await expect(
        f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryClaimExpired");
    });

    it("finalize settles and pays even when the requester's callback reverts", async function () {
      const f = await loadFixture(modesFixture);
      const callback = await (await ethers.getContractFactory("RevertingCallback")).deploy();
      const node = f.nodes[0];
      const s = await f.submit(VALUES, {
        modelId: f.optimisticModelId,
        mode: VERIFICATION_MODE_OPTIMISTIC,
        callback: await callback.getAddress(),
        callbackGasLimit: 100_000,
      });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const outputs = [tinyOutputWord(VALUES)];
      const sig = await signAttestation(f, f.verifiers[0], s, node.address, outputs);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, [sig]);
      await afterWindow(f, s.taskId);
      await expect(f.tasks.finalizeResult(s.taskId, s.task, outputs, [f.verifiers[0].address]))
        .to.emit(f.tasks, "CallbackExecuted")
        .withArgs(s.taskId, await callback.getAddress(), false);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
      expect(await f.tasks.creditsOf(node.address)).to.equal(ethers.parseEther("7"));
    });
  });
});

/** Any address (a value the test does not pin). */
function anyAddress() {
  return (v: string) => ethers.isAddress(v);
}

/** Any timestamp (the block's, which the test does not pin). */
function anyTime() {
  return (v: bigint) => v > 0n;
}

describe("Optimistic mode: a consumer contract", function () {
  it("requests in a chosen mode and gets the result once it is final", async function () {
    const f = await loadFixture(modesFixture);
    const consumer = await (
      await ethers.getContractFactory("ToggleConsumer")
    ).deploy(await f.tasks.getAddress(), await f.token.getAddress());
    await f.token.connect(f.requester).transfer(await consumer.getAddress(), MODEL_FEE);
    const model = await f.models.getModel(f.optimisticModelId);
    const values = Array.from({ length: Number(model.inputShape[1]) }, (_, i) => BigInt((i % 7) - 3));
    const deadline = BigInt(await time.latest()) + 3600n;
    const receipt = await (
      await consumer.requestInMode(
        f.optimisticModelId,
        values,
        MODEL_FEE,
        deadline,
        300_000,
        VERIFICATION_MODE_OPTIMISTIC,
      )
    ).wait();
    const log = receipt!.logs.find(
      (l) => l.topics[0] === f.tasks.interface.getEvent("TaskSubmitted")!.topicHash,
    )!;
    const parsed = f.tasks.interface.parseLog(log)!;
    const taskId: bigint = parsed.args.taskId;
    const task = parsed.args.task.toObject(true);
    const input = [...parsed.args.input] as bigint[];
    expect(task.mode).to.equal(BigInt(VERIFICATION_MODE_OPTIMISTIC));

    const node = f.nodes[0];
    await f.tasks.connect(node).claimTask(taskId, task);
    const { outputs } = await f.prove({ taskId, modelId: f.optimisticModelId, task, input }, node);
    const [attester] = f.verifiers;
    const digest = await f.tasks.attestationDigest(taskId, node.address, hashWords(outputs));
    const signature = await attester.signMessage(ethers.getBytes(digest));
    await f.tasks.connect(node).submitResultOptimistic(taskId, task, outputs, [signature]);
    expect(await consumer.lastTaskId()).to.equal(0n);
    await afterWindow(f, taskId);
    await f.tasks.finalizeResult(taskId, task, outputs, [attester.address]);
    expect(await consumer.lastTaskId()).to.equal(taskId);
    expect(await consumer.isPending(taskId)).to.equal(false);
  });

  it("closes a request whose optimistic result a dispute rejected: refund already received, failure hook run", async function () {
    const f = await loadFixture(modesFixture);
    // A model allowing only the optimistic mode (no circuit: a dispute goes to a vote), so a consumer's
    // submitTask takes it in that mode.
    const spec = await f.models.getModel(f.voteModelId);
    const registered = await f.models.connect(f.modelOwner).registerModel(
      {
        name: "optimistic-only",
        onnxHash: spec.onnxHash,
        bundleHash: spec.bundleHash,
        royaltyReceiver: f.modelOwner.address,
        fee: MODEL_FEE,
        verificationModes: VERIFICATION_MODE_OPTIMISTIC,
        inputMode: 0,
        inputWords: spec.terms.inputWords,
        outputWords: spec.terms.outputWords,
        scaleBits: spec.scaleBits,
        packBits: spec.packBits,
        inputBits: spec.inputBits,
        inputShape: [...spec.inputShape],
        outputShape: [...spec.outputShape],
      },
      [],
    );
    await registered.wait();
    const modelId = await f.models.modelCount();
    const consumer = await (
      await ethers.getContractFactory("ToggleConsumer")
    ).deploy(await f.tasks.getAddress(), await f.token.getAddress());
    await f.token.connect(f.requester).transfer(await consumer.getAddress(), MODEL_FEE);
    const deadline = BigInt(await time.latest()) + 3600n;
    const values = Array.from({ length: Number(spec.inputShape[1]) }, (_, i) => BigInt(i % 5));
    const receipt = await (await consumer.request(modelId, values, MODEL_FEE, deadline, 200_000)).wait();
    const log = receipt!.logs.find(
      (l) => l.topics[0] === f.tasks.interface.getEvent("TaskSubmitted")!.topicHash,
    )!;
    const parsed = f.tasks.interface.parseLog(log)!;
    const taskId: bigint = parsed.args.taskId;
    const task = parsed.args.task.toObject(true);
    expect(task.mode).to.equal(BigInt(VERIFICATION_MODE_OPTIMISTIC));

    const node = f.nodes[0];
    await f.tasks.connect(node).claimTask(taskId, task);
    const wrong = [1n];
    await f.tasks.connect(node).submitResultOptimistic(taskId, task, wrong, []);
    const [challenger, voter] = f.verifiers;
    await f.disputes.connect(challenger).challenge(taskId, task, hashWords(wrong), []);
    await f.disputes.connect(voter).vote(taskId, false);
    const d = await f.disputes.disputeOf(taskId);
    await time.increaseTo(d.deadline + 1n);
    await f.disputes.resolveVote(taskId, task, wrong, []);
    expect(await f.tasks.taskStatus(taskId)).to.equal(Status.Rejected);
    expect(await f.token.balanceOf(await consumer.getAddress())).to.equal(MODEL_FEE);

    await expect(consumer.connect(f.stranger).expireTask(taskId, task))
      .to.emit(consumer, "InferenceFailed")
      .withArgs(taskId, modelId);
    expect(await consumer.lastFailedTaskId()).to.equal(taskId);
    expect(await consumer.isPending(taskId)).to.equal(false);
  });
});
