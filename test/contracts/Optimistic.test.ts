import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";
import { expect } from "chai";
import { ethers, network } from "hardhat";
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
  type SubmittedTask,
} from "../helpers/market-fixture";
import { tinyOutputWord } from "../helpers/tiny-circuit";

const Status = {
  None: 0n,
  Open: 1n,
  Claimed: 2n,
  Verified: 3n,
  Expired: 4n,
  Pending: 5n,
  Disputed: 6n,
  Rejected: 7n,
};
const Outcome = { NodeRight: 0n, NodeWrong: 1n, Undecided: 2n };
const BPS = 10_000n;
const PROTOCOL_BPS = 1000n;
const ROYALTY_BPS = 1000n;
const ATTESTER_BPS = 1000n;
const CHALLENGE_BOND = ethers.parseEther("100");
const ATTESTER_SLASH = ethers.parseEther("100");
const VOTER_SLASH = ethers.parseEther("100");
/** NodeStaking's default slashBeneficiaryShareBps: half of a slash goes to the beneficiary. */
const BENEFICIARY_BPS = 5000n;
const VALUES = [1n, 2n, 3n, 4n];

type Fixture = Awaited<ReturnType<typeof modesFixture>>;

interface Posted {
  s: SubmittedTask;
  node: HardhatEthersSigner;
  outputs: bigint[];
  outputsHash: string;
}

/** Submit in optimistic mode on `modelId` (default: the model with a circuit), claim, post `outputs`. */
async function posted(
  f: Fixture,
  opts: { modelId?: bigint; node?: HardhatEthersSigner; outputs?: bigint[]; values?: bigint[] } = {},
): Promise<Posted> {
  const node = opts.node ?? f.nodes[0];
  const values = opts.values ?? VALUES;
  const s = await f.submit(values, {
    modelId: opts.modelId ?? f.optimisticModelId,
    mode: VERIFICATION_MODE_OPTIMISTIC,
  });
  await f.tasks.connect(node).claimTask(s.taskId, s.task);
  const outputs = opts.outputs ?? [tinyOutputWord(values)];
  await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
  return { s, node, outputs, outputsHash: hashWords(outputs) };
}

/** Each of `by` attests in turn; returns the attester list the task's pending word commits to. */
async function attested(f: Fixture, p: Posted, by: HardhatEthersSigner[]): Promise<string[]> {
  const list: string[] = [];
  for (const v of by) {
    await f.tasks.connect(v).attest(p.s.taskId, p.s.task, p.outputsHash, list);
    list.push(v.address);
  }
  return list;
}

async function afterWindow(f: Fixture, taskId: bigint) {
  const [, windowEnd] = await f.tasks.pendingOf(taskId);
  await time.increaseTo(windowEnd + 1n);
}

async function afterDispute(f: Fixture, taskId: bigint) {
  const d = await f.disputes.disputeOf(taskId);
  await time.increaseTo(d.deadline + 1n);
}

async function bonded(f: Fixture, account: string) {
  return (await f.staking.nodeInfo(account)).bonded;
}

async function tokens(f: Fixture, account: string) {
  return f.token.balanceOf(account);
}

/** `n` new verification nodes (Verification role only) staking `stake` each, with gas money. */
async function freshVerifiers(f: Fixture, n: number, stake: bigint) {
  const stakingAddress = await f.staking.getAddress();
  const out = [];
  for (let i = 0; i < n; i++) {
    const w = ethers.Wallet.createRandom().connect(ethers.provider);
    await network.provider.send("hardhat_setBalance", [w.address, "0x56BC75E2D63100000"]);
    await f.token.connect(f.treasury).transfer(w.address, stake);
    await f.token.connect(w).approve(stakingAddress, stake);
    await f.staking.connect(w).register(2, "http://swarm.example:8080");
    await f.staking.connect(w).stake(stake);
    out.push(w);
  }
  return out;
}

/** `signer`'s off-chain attestation of `outputs` that `node` is about to post for `s`. */
async function signAttestation(
  f: Fixture,
  signer: { signMessage(message: Uint8Array): Promise<string> },
  s: SubmittedTask,
  node: string,
  outputs: bigint[],
) {
  const digest = await f.tasks.attestationDigest(s.taskId, node, hashWords(outputs));
  return signer.signMessage(ethers.getBytes(digest));
}

/** Submit in optimistic mode on the circuit model and claim with `node`; returns the task and honest outputs. */
async function claimedOptimistic(f: Fixture, node: HardhatEthersSigner) {
  const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
  await f.tasks.connect(node).claimTask(s.taskId, s.task);
  return { s, outputs: [tinyOutputWord(VALUES)] };
}

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
      const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const outputs = [tinyOutputWord(VALUES)];
      const tx = f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      await expect(tx).to.emit(f.tasks, "TaskResultPosted");
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Pending);
      const [pendingNode, windowEnd] = await f.tasks.pendingOf(s.taskId);
      expect(pendingNode).to.equal(node.address);
      expect(windowEnd).to.equal(BigInt(await time.latest()) + 600n);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
    });

    it("reverts for a ZK task, a stranger, or a second post", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const zk = await f.submit(VALUES, { modelId: f.optimisticModelId });
      await f.tasks.connect(node).claimTask(zk.taskId, zk.task);
      const outputs = [tinyOutputWord(VALUES)];
      await expect(f.tasks.connect(node).submitResultOptimistic(zk.taskId, zk.task, outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(zk.taskId, VERIFICATION_MODE_ZK);
      const p = await posted(f);
      await expect(f.tasks.connect(f.nodes[1]).submitResultOptimistic(p.s.taskId, p.s.task, outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Pending);
    });
  });

  describe("honest path: attest and finalize", function () {
    it("finalizes after the window and splits the fee exactly: protocol, royalty, attesters, node", async function () {
      const f = await loadFixture(modesFixture);
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f);
      const attesters = await attested(f, p, [f.verifiers[0], f.verifiers[1]]);
      await afterWindow(f, p.s.taskId);

      const protocolFee = (MODEL_FEE * PROTOCOL_BPS) / BPS; // 1 OPG
      const royalty = (MODEL_FEE * ROYALTY_BPS) / BPS; // 1 OPG
      const share = (MODEL_FEE * ATTESTER_BPS) / BPS / 2n; // 0.5 OPG each
      const nodeFee = MODEL_FEE - protocolFee - royalty - 2n * share; // 7 OPG
      expect(nodeFee).to.equal(ethers.parseEther("7"));
      const tx = f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, attesters);
      await expect(tx)
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(p.s.taskId, p.node.address, p.outputs, nodeFee, royalty, protocolFee);
      await expect(tx).to.emit(f.tasks, "AttestersPaid").withArgs(p.s.taskId, attesters, share);

      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
      expect((await f.tasks.resultOf(p.s.taskId)).outputs).to.deep.equal(p.outputs);
      expect(await f.tasks.creditsOf(p.node.address)).to.equal(nodeFee);
      expect(await f.tasks.creditsOf(f.modelOwner.address)).to.equal(royalty);
      expect(await f.tasks.creditsOf(f.verifiers[0].address)).to.equal(share);
      expect(await f.tasks.creditsOf(f.verifiers[1].address)).to.equal(share);
      expect(await f.tasks.protocolFeesOf(p.node.address)).to.equal(protocolFee);
      expect(await f.tasks.releasableCollateralOf(p.node.address)).to.equal(CLAIM_COLLATERAL);
      // The escrow is exactly the credits and the protocol fee: nothing created, nothing lost.
      expect(await tokens(f, f.tasksAddress)).to.equal(MODEL_FEE);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore - MODEL_FEE);

      // Real tokens out: the attester withdraws exactly its share; the node's collateral unlocks.
      const before = await tokens(f, f.verifiers[0].address);
      await f.tasks.connect(f.verifiers[0]).withdrawCredits(f.verifiers[0].address);
      expect(await tokens(f, f.verifiers[0].address)).to.equal(before + share);
      await f.tasks.releaseCollateral(p.node.address);
      expect((await f.staking.nodeInfo(p.node.address)).locked).to.equal(0n);
    });

    it("refuses to finalize before the window ends, without quorum, or with another attester list", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      const attesters = await attested(f, p, [f.verifiers[0]]);
      const [, windowEnd] = await f.tasks.pendingOf(p.s.taskId);
      await expect(f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, attesters))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWindow")
        .withArgs(p.s.taskId, windowEnd, anyTime());
      await afterWindow(f, p.s.taskId);
      await expect(
        f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, [f.verifiers[1].address]),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");
      await expect(
        f.tasks.finalizeResult(p.s.taskId, p.s.task, [p.outputs[0] + 1n], attesters),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");

      const q = await posted(f, { node: f.nodes[1] });
      await afterWindow(f, q.s.taskId);
      await expect(f.tasks.finalizeResult(q.s.taskId, q.s.task, q.outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryQuorumNotMet")
        .withArgs(q.s.taskId, 0, 1);
    });

    it("expires an unattested result after the window: exact refund, collateral released, no slash", async function () {
      const f = await loadFixture(modesFixture);
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f);
      await expect(
        f.tasks.expireUnattested(p.s.taskId, p.s.task, p.outputsHash, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryWindow");
      await afterWindow(f, p.s.taskId);
      await expect(f.tasks.connect(f.stranger).expireUnattested(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.emit(f.tasks, "TaskExpired")
        .withArgs(p.s.taskId, f.requester.address, MODEL_FEE);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Expired);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE);
      expect(await f.tasks.releasableCollateralOf(p.node.address)).to.equal(CLAIM_COLLATERAL);
      expect(await tokens(f, f.tasksAddress)).to.equal(0n);
    });

    it("refuses to expire a result that met its quorum", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      const attesters = await attested(f, p, [f.verifiers[0]]);
      await afterWindow(f, p.s.taskId);
      await expect(f.tasks.expireUnattested(p.s.taskId, p.s.task, p.outputsHash, attesters))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Pending);
    });
  });

  describe("attest", function () {
    it("rejects a second attestation by the same verifier", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      const attesters = await attested(f, p, [f.verifiers[0]]);
      await expect(f.tasks.connect(f.verifiers[0]).attest(p.s.taskId, p.s.task, p.outputsHash, attesters))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest")
        .withArgs(p.s.taskId, f.verifiers[0].address);
    });

    it("rejects the node attesting its own result, even with the verification role", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      await f.staking.connect(node).updateNode(3, "http://both.example:8080");
      expect(await f.staking.isEligible(node.address, 1)).to.equal(true);
      const p = await posted(f, { node });
      await expect(f.tasks.connect(node).attest(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest")
        .withArgs(p.s.taskId, node.address);
    });

    it("rejects an attestation after the window, and one by an account without the verification role", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      await expect(f.tasks.connect(f.nodes[1]).attest(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest")
        .withArgs(p.s.taskId, f.nodes[1].address);
      await afterWindow(f, p.s.taskId);
      await expect(
        f.tasks.connect(f.verifiers[0]).attest(p.s.taskId, p.s.task, p.outputsHash, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryWindow");
    });

    it("rejects an attestation to other outputs than the posted ones", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      await expect(
        f.tasks.connect(f.verifiers[0]).attest(p.s.taskId, p.s.task, hashWords([p.outputs[0] + 1n]), []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");
    });
  });

  describe("dispute entry points", function () {
    it("only the dispute manager opens, accepts or rejects a dispute", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      const t = f.tasks.connect(f.stranger);
      await expect(t.openDispute(p.s.taskId, p.s.task, p.outputsHash, [], f.stranger.address))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotDisputeManager")
        .withArgs(f.stranger.address);
      await expect(t.acceptDisputed(p.s.taskId, p.s.task, p.outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotDisputeManager")
        .withArgs(f.stranger.address);
      await expect(
        t.rejectDisputed(p.s.taskId, p.s.task, p.outputsHash, [], Outcome.NodeWrong, f.stranger.address),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotDisputeManager")
        .withArgs(f.stranger.address);
      // Not even governance.
      await expect(
        f.tasks.connect(f.governance).acceptDisputed(p.s.taskId, p.s.task, p.outputs, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotDisputeManager");
    });

    it("refuses a challenge after the window, by a non-verifier, or by the node itself", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      await f.staking.connect(node).updateNode(3, "http://both.example:8080");
      const p = await posted(f, { node });
      await expect(f.disputes.connect(f.stranger).challenge(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerNotVerifier")
        .withArgs(f.stranger.address);
      await f.token.connect(node).approve(await f.disputes.getAddress(), ethers.MaxUint256);
      await expect(f.disputes.connect(node).challenge(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerSelfChallenge")
        .withArgs(p.s.taskId);
      await afterWindow(f, p.s.taskId);
      await expect(
        f.disputes.connect(f.verifiers[0]).challenge(p.s.taskId, p.s.task, p.outputsHash, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryWindow");
    });

    it("blocks finalize and a second challenge while a dispute is open", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      const attesters = await attested(f, p, [f.verifiers[0]]);
      await expect(
        f.disputes.connect(f.verifiers[1]).challenge(p.s.taskId, p.s.task, p.outputsHash, attesters),
      )
        .to.emit(f.tasks, "TaskDisputed")
        .withArgs(p.s.taskId, f.verifiers[1].address);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Disputed);
      await expect(
        f.disputes.connect(f.verifiers[2]).challenge(p.s.taskId, p.s.task, p.outputsHash, attesters),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Disputed);
      await afterWindow(f, p.s.taskId);
      await expect(f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, attesters))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(p.s.taskId, Status.Disputed);
    });
  });

  describe("disputes settled by proof (model with a circuit)", function () {
    it("catches a lying node: no proof exists, the timeout slashes node and attester, refunds exactly", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger] = f.verifiers;
      const requesterBefore = await tokens(f, f.requester.address);
      const wrong = [tinyOutputWord(VALUES) + 1n];
      const p = await posted(f, { outputs: wrong });
      const attesters = await attested(f, p, [attester]);
      const challengerBefore = await tokens(f, challenger.address);
      const treasuryBefore = await tokens(f, f.treasury.address);
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, attesters);
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore - CHALLENGE_BOND);

      // The node's best effort: a real proof, but of the true outputs, not the posted ones.
      const { proof, outputs: truth } = await f.prove(p.s, p.node);
      expect(truth).to.not.deep.equal(wrong);
      await expect(
        f.disputes.respond(p.s.taskId, p.s.task, p.s.input, wrong, attesters, proof),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerInvalidProof");
      // And the true outputs are not what it posted: the registry refuses them.
      await expect(
        f.disputes.respond(p.s.taskId, p.s.task, p.s.input, truth, attesters, proof),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryPendingMismatch");
      await expect(
        f.disputes.timeout(p.s.taskId, p.s.task, p.outputsHash, attesters),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerWindow");

      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.connect(f.stranger).timeout(p.s.taskId, p.s.task, p.outputsHash, attesters);
      await expect(tx)
        .to.emit(f.tasks, "TaskRejected")
        .withArgs(p.s.taskId, f.requester.address, MODEL_FEE, Outcome.NodeWrong);
      await expect(tx)
        .to.emit(f.disputes, "AttesterSlashed")
        .withArgs(p.s.taskId, attester.address, ATTESTER_SLASH);
      await expect(tx)
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeWrong, challenger.address);

      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Rejected);
      // Requester: exactly its fee back.
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      // Node: its claim collateral slashed; attester: its attestation slash.
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE - CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(p.node.address)).locked).to.equal(0n);
      expect(await bonded(f, attester.address)).to.equal(VERIFIER_STAKE - ATTESTER_SLASH);
      // Challenger: bond back plus the beneficiary share of the node's slash; treasury: the rest, and the
      // attester's slash whole.
      const slashed = CLAIM_COLLATERAL + ATTESTER_SLASH;
      const toChallenger = (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS;
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore + toChallenger);
      expect(await tokens(f, f.treasury.address)).to.equal(treasuryBefore + slashed - toChallenger);
      // Nothing stays behind in either contract.
      expect(await tokens(f, f.tasksAddress)).to.equal(0n);
      expect(await tokens(f, await f.disputes.getAddress())).to.equal(0n);
      expect(await f.tasks.creditsOf(p.node.address)).to.equal(0n);
      expect(await f.tasks.creditsOf(attester.address)).to.equal(0n);
    });

    it("makes a griefing challenger lose its bond to the node, which answers with a real proof", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger] = f.verifiers;
      const p = await posted(f);
      const attesters = await attested(f, p, [attester]);
      const challengerBefore = await tokens(f, challenger.address);
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, attesters);
      const nodeTokens = await tokens(f, p.node.address);
      const { proof, outputs } = await f.prove(p.s, p.node);
      expect(outputs).to.deep.equal(p.outputs);
      // A proof bound to another node does not count.
      const { proof: foreign } = await f.prove(p.s, f.nodes[1]);
      await expect(
        f.disputes.respond(p.s.taskId, p.s.task, p.s.input, outputs, attesters, foreign),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerInvalidProof");

      const tx = f.disputes
        .connect(p.node)
        .respond(p.s.taskId, p.s.task, p.s.input, outputs, attesters, proof);
      await expect(tx)
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeRight, p.node.address);
      await expect(tx).to.emit(f.tasks, "TaskVerified");
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
      expect(await tokens(f, p.node.address)).to.equal(nodeTokens + CHALLENGE_BOND);
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore - CHALLENGE_BOND);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE);
      expect(await bonded(f, attester.address)).to.equal(VERIFIER_STAKE);
      // The fee is split as on the honest path (node 7, attester 1, royalty 1, protocol 1).
      expect(await f.tasks.creditsOf(p.node.address)).to.equal(ethers.parseEther("7"));
      expect(await f.tasks.creditsOf(attester.address)).to.equal(ethers.parseEther("1"));
      expect(await tokens(f, await f.disputes.getAddress())).to.equal(0n);
      // Settled once: the timeout cannot run afterwards.
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.timeout(p.s.taskId, p.s.task, p.outputsHash, attesters))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerWrongState")
        .withArgs(p.s.taskId, 2);
    });

    it("slashes a node that ignores a dispute, after the response window; a late proof is refused", async function () {
      const f = await loadFixture(modesFixture);
      const challenger = f.verifiers[1];
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f); // correct outputs, but the node never answers
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      await afterDispute(f, p.s.taskId);
      const { proof, outputs } = await f.prove(p.s, p.node);
      await expect(
        f.disputes.connect(p.node).respond(p.s.taskId, p.s.task, p.s.input, outputs, [], proof),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerWindow");
      const challengerBefore = await tokens(f, challenger.address);
      await expect(f.disputes.timeout(p.s.taskId, p.s.task, p.outputsHash, []))
        .to.emit(f.staking, "NodeSlashed")
        .withArgs(
          p.node.address,
          f.tasksAddress,
          await f.tasks.SLASH_REASON_WRONG_RESULT(),
          CLAIM_COLLATERAL,
          challenger.address,
          (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS,
        );
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE - CLAIM_COLLATERAL);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await tokens(f, challenger.address)).to.equal(
        challengerBefore + CHALLENGE_BOND + (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS,
      );
    });

    it("refuses a vote on a dispute settled by proof", async function () {
      const f = await loadFixture(modesFixture);
      const p = await posted(f);
      await f.disputes.connect(f.verifiers[1]).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      await expect(f.disputes.connect(f.verifiers[2]).vote(p.s.taskId, false))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerWrongKind")
        .withArgs(p.s.taskId, true);
    });
  });

  describe("disputes settled by vote (model without a circuit)", function () {
    async function disputedVote(f: Fixture, outputs?: bigint[]) {
      const [attester, challenger] = f.verifiers;
      const p = await posted(f, { modelId: f.voteModelId, outputs });
      const attesters = await attested(f, p, [attester]);
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, attesters);
      return { p, attesters, attester, challenger };
    }

    it("node right: the bond pays the node, the result is verified, the losing voter is slashed", async function () {
      const f = await loadFixture(modesFixture);
      const { p, attesters, attester, challenger } = await disputedVote(f);
      expect((await f.disputes.disputeOf(p.s.taskId)).circuit).to.equal(false);
      const [, , v2, v3] = f.verifiers;
      await f.disputes.connect(attester).vote(p.s.taskId, true);
      await f.disputes.connect(v2).vote(p.s.taskId, true);
      await f.disputes.connect(v3).vote(p.s.taskId, false);
      const nodeTokens = await tokens(f, p.node.address);
      const treasuryBefore = await tokens(f, f.treasury.address);
      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, attesters);
      await expect(tx)
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeRight, p.node.address);
      await expect(tx).to.emit(f.disputes, "VoterSlashed").withArgs(p.s.taskId, v3.address, VOTER_SLASH);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
      expect(await tokens(f, p.node.address)).to.equal(nodeTokens + CHALLENGE_BOND);
      expect(await bonded(f, v3.address)).to.equal(VERIFIER_STAKE - VOTER_SLASH);
      for (const v of [attester, challenger, v2]) expect(await bonded(f, v.address)).to.equal(VERIFIER_STAKE);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE);
      // A losing voter's stake goes to the treasury whole: no voter profits from another's loss.
      expect(await tokens(f, f.treasury.address)).to.equal(treasuryBefore + VOTER_SLASH);
    });

    it("node wrong: refund, node (challenger's share) and attester slashed, losing voters slashed", async function () {
      const f = await loadFixture(modesFixture);
      const requesterBefore = await tokens(f, f.requester.address);
      const { p, attesters, attester, challenger } = await disputedVote(f, [tinyOutputWord(VALUES) + 1n]);
      const [, , v2, v3] = f.verifiers;
      await f.disputes.connect(attester).vote(p.s.taskId, true); // stands by its attestation, and loses
      await f.disputes.connect(v2).vote(p.s.taskId, false);
      await f.disputes.connect(v3).vote(p.s.taskId, false);
      const challengerBefore = await tokens(f, challenger.address);
      const treasuryBefore = await tokens(f, f.treasury.address);
      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, attesters);
      await expect(tx)
        .to.emit(f.tasks, "TaskRejected")
        .withArgs(p.s.taskId, f.requester.address, MODEL_FEE, Outcome.NodeWrong);
      await expect(tx)
        .to.emit(f.disputes, "VoterSlashed")
        .withArgs(p.s.taskId, attester.address, VOTER_SLASH);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Rejected);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE - CLAIM_COLLATERAL);
      expect(await bonded(f, attester.address)).to.equal(VERIFIER_STAKE - ATTESTER_SLASH - VOTER_SLASH);
      for (const v of [challenger, v2, v3]) expect(await bonded(f, v.address)).to.equal(VERIFIER_STAKE);
      const toChallenger = (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS;
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore + CHALLENGE_BOND + toChallenger);
      expect(await tokens(f, f.treasury.address)).to.equal(
        treasuryBefore + CLAIM_COLLATERAL + ATTESTER_SLASH - toChallenger + VOTER_SLASH,
      );
    });

    it("undecided (tie): exact refund, nobody slashed, nobody profits, the bond goes to the treasury", async function () {
      const f = await loadFixture(modesFixture);
      const requesterBefore = await tokens(f, f.requester.address);
      const { p, attesters, attester, challenger } = await disputedVote(f);
      const [, , v2, v3] = f.verifiers;
      await f.disputes.connect(v2).vote(p.s.taskId, true);
      await f.disputes.connect(v3).vote(p.s.taskId, false);
      const treasuryBefore = await tokens(f, f.treasury.address);
      const nodeTokens = await tokens(f, p.node.address);
      const challengerTokens = await tokens(f, challenger.address);
      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, attesters);
      await expect(tx)
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.Undecided, f.treasury.address);
      await expect(tx).to.not.emit(f.staking, "NodeSlashed");
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Rejected);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await tokens(f, f.treasury.address)).to.equal(treasuryBefore + CHALLENGE_BOND);
      expect(await tokens(f, p.node.address)).to.equal(nodeTokens);
      expect(await tokens(f, challenger.address)).to.equal(challengerTokens);
      for (const v of [attester, challenger, v2, v3])
        expect(await bonded(f, v.address)).to.equal(VERIFIER_STAKE);
      expect(await bonded(f, p.node.address)).to.equal(NODE_STAKE);
      expect(await f.tasks.releasableCollateralOf(p.node.address)).to.equal(CLAIM_COLLATERAL);
      for (const a of [p.node, attester, challenger, v2, v3, f.modelOwner]) {
        expect(await f.tasks.creditsOf(a.address)).to.equal(0n);
      }
      expect(await tokens(f, f.tasksAddress)).to.equal(0n);
    });

    it("undecided without quorum: nobody voted", async function () {
      const f = await loadFixture(modesFixture);
      const { p, attesters } = await disputedVote(f);
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, attesters))
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.Undecided, f.treasury.address);
    });

    it("a requester cannot get an output for less than its fee by challenging it into an undecided vote", async function () {
      const f = await loadFixture(modesFixture);
      // The requester is a verification node too, and pays a fee above the 100 OPG challenge bond.
      const requester = f.verifiers[0];
      const fee = ethers.parseEther("500");
      await f.token.connect(requester).approve(f.tasksAddress, fee);
      const start = await tokens(f, requester.address);
      const s = await f.submit(VALUES, {
        modelId: f.voteModelId,
        mode: VERIFICATION_MODE_OPTIMISTIC,
        fee,
        from: requester,
      });
      const node = f.nodes[0];
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const outputs = [tinyOutputWord(VALUES)];
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      // It reads the posted output, then challenges: the bond is the fee, not the smaller default.
      await expect(f.disputes.connect(requester).challenge(s.taskId, s.task, hashWords(outputs), []))
        .to.emit(f.disputes, "DisputeOpened")
        .withArgs(s.taskId, requester.address, node.address, fee, anyValue, false);
      // Nobody votes: undecided, the fee comes back, the bond goes to the treasury.
      await afterDispute(f, s.taskId);
      await f.disputes.resolveVote(s.taskId, s.task, outputs, []);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Rejected);
      // The output cost it exactly what the fee would have: no profit from the failure it caused.
      expect(await tokens(f, requester.address)).to.equal(start - fee);
    });

    it("a swarm of minimum-stake voters cannot fill the list and lock out larger stakes", async function () {
      const f = await loadFixture(modesFixture);
      const maxVoters = Number(await f.disputes.MAX_VOTERS());
      const minStake = ethers.parseEther("500");
      // The lying node's swarm fills every place; then honest verifiers with twice the stake each vote.
      const swarm = await freshVerifiers(f, maxVoters, minStake);
      const honest = await freshVerifiers(f, 17, 2n * minStake);
      const late = (await freshVerifiers(f, 1, minStake))[0];
      const p = await posted(f, { modelId: f.voteModelId, outputs: [1n] });
      await f.disputes.connect(f.verifiers[1]).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      for (const v of swarm) await f.disputes.connect(v).vote(p.s.taskId, true);
      // Full, and no larger than the smallest counted stake: refused.
      await expect(f.disputes.connect(late).vote(p.s.taskId, false))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerCannotVote")
        .withArgs(p.s.taskId, late.address);
      const first = await f.disputes.connect(honest[0]).vote(p.s.taskId, false);
      await expect(first)
        .to.emit(f.disputes, "DisputeVoteDisplaced")
        .withArgs(p.s.taskId, swarm[0].address, minStake);
      const gas = (await first.wait())!.gasUsed;
      console.log(`      vote displacing the smallest of ${maxVoters} voters: ${gas} gas`);
      expect(gas < 300_000n).to.equal(true);
      for (const v of honest.slice(1)) await f.disputes.connect(v).vote(p.s.taskId, false);
      // A displaced voter cannot come back.
      await expect(f.disputes.connect(swarm[0]).vote(p.s.taskId, true)).to.be.revertedWithCustomError(
        f.disputes,
        "DisputeManagerCannotVote",
      );
      const d = await f.disputes.disputeOf(p.s.taskId);
      expect(d.weightFor).to.equal(BigInt(maxVoters - honest.length) * minStake);
      expect(d.weightAgainst).to.equal(BigInt(honest.length) * 2n * minStake);
      expect((await f.disputes.votersOf(p.s.taskId)).length).to.equal(maxVoters);
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, []))
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeWrong, f.verifiers[1].address);
      // The swarm members still counted lose their slash; the displaced ones are not counted either way.
      expect(await bonded(f, swarm[maxVoters - 1].address)).to.equal(minStake - VOTER_SLASH);
      expect(await bonded(f, swarm[0].address)).to.equal(minStake);
      for (const v of honest) expect(await bonded(f, v.address)).to.equal(2n * minStake);
    });

    it("refuses votes by the node, the challenger, twice, or after the window; and an early resolution", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      await f.staking.connect(node).updateNode(3, "http://both.example:8080");
      const { p, attesters, challenger } = await disputedVote(f);
      const [, , v2] = f.verifiers;
      for (const who of [node, challenger]) {
        await expect(f.disputes.connect(who).vote(p.s.taskId, true))
          .to.be.revertedWithCustomError(f.disputes, "DisputeManagerCannotVote")
          .withArgs(p.s.taskId, who.address);
      }
      await expect(f.disputes.connect(f.stranger).vote(p.s.taskId, true)).to.be.revertedWithCustomError(
        f.disputes,
        "DisputeManagerCannotVote",
      );
      await f.disputes.connect(v2).vote(p.s.taskId, true);
      await expect(f.disputes.connect(v2).vote(p.s.taskId, false))
        .to.be.revertedWithCustomError(f.disputes, "DisputeManagerCannotVote")
        .withArgs(p.s.taskId, v2.address);
      await expect(
        f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, attesters),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerWindow");
      await expect(
        f.disputes.timeout(p.s.taskId, p.s.task, p.outputsHash, attesters),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerWrongKind");
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.connect(f.verifiers[3]).vote(p.s.taskId, false)).to.be.revertedWithCustomError(
        f.disputes,
        "DisputeManagerWindow",
      );
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
      const q = await posted(f, { node: f.nodes[1] });
      await f.disputes.connect(f.verifiers[1]).challenge(q.s.taskId, q.s.task, q.outputsHash, []);
      await time.increaseTo(BigInt(q.s.task.deadline) + 1n);
      await expect(f.tasks.connect(f.requester).expire(q.s.taskId, q.s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(q.s.taskId, Status.Disputed);
    });

    it("refuses the ZK path for an optimistic task, and a post after the claim window", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const { proof, outputs } = await f.prove(s, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(s.taskId, VERIFICATION_MODE_OPTIMISTIC);
      const [, claimExpiresAt] = await f.tasks.claimOf(s.taskId);
      await time.increaseTo(claimExpiresAt + 1n);
      await expect(
        f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryClaimExpired");
    });
  });

  describe("injected faults", function () {
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
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      await f.tasks.connect(f.verifiers[0]).attest(s.taskId, s.task, hashWords(outputs), []);
      await afterWindow(f, s.taskId);
      await expect(f.tasks.finalizeResult(s.taskId, s.task, outputs, [f.verifiers[0].address]))
        .to.emit(f.tasks, "CallbackExecuted")
        .withArgs(s.taskId, await callback.getAddress(), false);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
      expect(await f.tasks.creditsOf(node.address)).to.equal(ethers.parseEther("7"));
    });

    it("a proof answering a dispute delivers the outputs to the requester's callback", async function () {
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
      const { proof, outputs } = await f.prove(s, node);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
      await f.disputes.connect(f.verifiers[1]).challenge(s.taskId, s.task, hashWords(outputs), []);
      await f.disputes.respond(s.taskId, s.task, s.input, outputs, [], proof);
      expect(await recorder.lastTaskId()).to.equal(s.taskId);
      expect(await recorder.lastOutputs()).to.deep.equal(outputs);
    });

    it("a timeout still refunds the requester, returns the bond and slashes the attesters when the registry lost its slasher role", async function () {
      const f = await loadFixture(modesFixture);
      const [attester, challenger] = f.verifiers;
      const requesterBefore = await tokens(f, f.requester.address);
      const p = await posted(f, { outputs: [1n] });
      const attesters = await attested(f, p, [attester]);
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, attesters);
      await f.staking.connect(f.governance).setSlasher(f.tasksAddress, false);
      const challengerBefore = await tokens(f, challenger.address);
      await afterDispute(f, p.s.taskId);
      const tx = f.disputes.timeout(p.s.taskId, p.s.task, p.outputsHash, attesters);
      const slashSelector = f.staking.interface.getFunction("slash").selector;
      await expect(tx)
        .to.emit(f.tasks, "StakingCallFailed")
        .withArgs(p.s.taskId, p.node.address, CLAIM_COLLATERAL, slashSelector);
      // The attesters are slashed by the dispute manager, which keeps its own slasher role.
      await expect(tx)
        .to.emit(f.disputes, "AttesterSlashed")
        .withArgs(p.s.taskId, attester.address, ATTESTER_SLASH);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Rejected);
      expect(await tokens(f, f.requester.address)).to.equal(requesterBefore);
      expect(await tokens(f, challenger.address)).to.equal(challengerBefore + CHALLENGE_BOND);
      // The collateral was still unlocked: the node is not left with stake locked for a settled task.
      expect((await f.staking.nodeInfo(p.node.address)).locked).to.equal(0n);
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
      // A third verifier can still attest on chain after them.
      const c = f.verifiers[2];
      await f.tasks.connect(c).attest(s.taskId, s.task, hashWords(outputs), [a.address, b.address]);
      // Neither signer can attest again on chain.
      await expect(
        f.tasks.connect(a).attest(s.taskId, s.task, hashWords(outputs), [a.address, b.address, c.address]),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest")
        .withArgs(s.taskId, a.address);
      await afterWindow(f, s.taskId);
      const before = await f.tasks.creditsOf(a.address);
      await f.tasks.finalizeResult(s.taskId, s.task, outputs, [a.address, b.address, c.address]);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
      const share = (MODEL_FEE * ATTESTER_BPS) / BPS / 3n;
      expect(await f.tasks.creditsOf(a.address)).to.equal(before + share);
    });

    it("refuses a signature by a non-verifier, the node itself, a signer twice, or over other outputs or another task", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const [a] = f.verifiers;
      const { s, outputs } = await claimedOptimistic(f, node);
      const other = await claimedOptimistic(f, node);
      const post = (sigs: string[]) =>
        f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, sigs);
      const refused = async (sigs: string[], who: string) =>
        expect(post(sigs))
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryCannotAttest")
          .withArgs(s.taskId, who);

      // Not a verification node (an inference node), and the posting node itself.
      await refused([await signAttestation(f, f.nodes[1], s, node.address, outputs)], f.nodes[1].address);
      await refused([await signAttestation(f, node, s, node.address, outputs)], node.address);
      // The same verifier twice.
      const good = await signAttestation(f, a, s, node.address, outputs);
      await refused([good, good], a.address);
      // Over other outputs, or for another task, or bound to another node: recovers to a stranger.
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
      // Malformed bytes.
      await refused(["0x1234"], ethers.ZeroAddress);
      // The honest one goes through.
      await expect(post([good]))
        .to.emit(f.tasks, "TaskAttested")
        .withArgs(s.taskId, a.address, 1n);
    });

    it("slashes an off-chain attester of outputs a dispute proved wrong", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const [a, challenger] = f.verifiers;
      const { s } = await claimedOptimistic(f, node);
      const wrong = [1n];
      const sig = await signAttestation(f, a, s, node.address, wrong);
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, wrong, [sig]);
      await f.disputes.connect(challenger).challenge(s.taskId, s.task, hashWords(wrong), [a.address]);
      await afterDispute(f, s.taskId);
      const stakeBefore = await bonded(f, a.address);
      await expect(f.disputes.timeout(s.taskId, s.task, hashWords(wrong), [a.address]))
        .to.emit(f.disputes, "AttesterSlashed")
        .withArgs(s.taskId, a.address, ATTESTER_SLASH);
      expect(await bonded(f, a.address)).to.equal(stakeBefore - ATTESTER_SLASH);
    });
  });

  describe("economic attacks", function () {
    it("a requester cannot profit from a failed task: each failure path returns exactly its fee", async function () {
      const f = await loadFixture(modesFixture);
      const start = await tokens(f, f.requester.address);
      // 1. Nobody attests.
      const a = await posted(f);
      await afterWindow(f, a.s.taskId);
      await f.tasks.expireUnattested(a.s.taskId, a.s.task, a.outputsHash, []);
      expect(await tokens(f, f.requester.address)).to.equal(start);
      // 2. The node lied and was caught.
      const b = await posted(f, { outputs: [1n] });
      await f.disputes.connect(f.verifiers[1]).challenge(b.s.taskId, b.s.task, b.outputsHash, []);
      await afterDispute(f, b.s.taskId);
      await f.disputes.timeout(b.s.taskId, b.s.task, b.outputsHash, []);
      expect(await tokens(f, f.requester.address)).to.equal(start);
      // 3. Nobody could decide.
      const c = await posted(f, { modelId: f.voteModelId });
      await f.disputes.connect(f.verifiers[1]).challenge(c.s.taskId, c.s.task, c.outputsHash, []);
      await afterDispute(f, c.s.taskId);
      await f.disputes.resolveVote(c.s.taskId, c.s.task, c.outputs, []);
      expect(await tokens(f, f.requester.address)).to.equal(start);
      expect(await f.tasks.creditsOf(f.requester.address)).to.equal(0n);
    });

    it("a challenger colluding with a lying node nets less than the node loses", async function () {
      const f = await loadFixture(modesFixture);
      const challenger = f.verifiers[1];
      const node = f.nodes[0];
      const wealth = async () =>
        (await tokens(f, node.address)) +
        (await bonded(f, node.address)) +
        (await tokens(f, challenger.address)) +
        (await bonded(f, challenger.address));
      const before = await wealth();
      const nodeBefore = (await tokens(f, node.address)) + (await bonded(f, node.address));
      const p = await posted(f, { node, outputs: [1n] });
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, []);
      await afterDispute(f, p.s.taskId);
      await f.disputes.connect(challenger).timeout(p.s.taskId, p.s.task, p.outputsHash, []);
      const nodeLoss = nodeBefore - ((await tokens(f, node.address)) + (await bonded(f, node.address)));
      const together = (await wealth()) - before;
      expect(nodeLoss).to.equal(CLAIM_COLLATERAL);
      // Together they lose the treasury's share of the slash: the pair can never mint from a staged lie.
      expect(together).to.equal(-(CLAIM_COLLATERAL * (BPS - BENEFICIARY_BPS)) / BPS);
      expect(together < 0n).to.equal(true);
    });

    it("a silent node and its challenger cannot profit from honest attesters; an attester can answer with the proof", async function () {
      const f = await loadFixture(modesFixture);
      const challenger = f.verifiers[3];
      const node = f.nodes[0];
      const wealth = async (a: string) => (await tokens(f, a)) + (await bonded(f, a));
      // The node posts the correct result, two honest attesters confirm it, its accomplice challenges, and
      // the node stays silent so that the timeout slashes the attesters.
      const p = await posted(f, { node });
      const attesters = await attested(f, p, [f.verifiers[0], f.verifiers[1]]);
      const before = (await wealth(node.address)) + (await wealth(challenger.address));
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, attesters);
      await afterDispute(f, p.s.taskId);
      await f.disputes.timeout(p.s.taskId, p.s.task, p.outputsHash, attesters);
      const after = (await wealth(node.address)) + (await wealth(challenger.address));
      // The pair loses the treasury's part of the node's slash; the attesters' slashes pay it nothing.
      expect(after - before).to.equal(-(CLAIM_COLLATERAL * (BPS - BENEFICIARY_BPS)) / BPS);

      // Next time an attester answers for the silent node: the proof is public to make.
      const q = await posted(f, { node });
      const qAttesters = await attested(f, q, [f.verifiers[0]]);
      await f.disputes.connect(challenger).challenge(q.s.taskId, q.s.task, q.outputsHash, qAttesters);
      const { proof, outputs } = await f.prove(q.s, node);
      await expect(
        f.disputes
          .connect(f.verifiers[0])
          .respond(q.s.taskId, q.s.task, q.s.input, outputs, qAttesters, proof),
      )
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(q.s.taskId, Outcome.NodeRight, node.address);
      expect(await bonded(f, f.verifiers[0].address)).to.equal(VERIFIER_STAKE - ATTESTER_SLASH);
    });
  });
});

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
