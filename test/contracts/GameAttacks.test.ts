import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { expect } from "chai";
import { ethers, network } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  CLAIM_COLLATERAL,
  MODEL_FEE,
  NODE_STAKE,
  VERIFICATION_MODE_OPTIMISTIC,
  VERIFICATION_MODE_TEE,
  VERIFIER_STAKE,
  modesFixture,
  registerEnclaveKey,
  signTeeResult,
} from "../helpers/market-fixture";
import {
  ATTESTER_BPS,
  BENEFICIARY_BPS,
  BPS,
  CHALLENGE_BOND,
  Outcome,
  Status,
  VALUES,
  VOTER_SLASH_BPS,
  afterDispute,
  afterWindow,
  bonded,
  disprove,
  freshVerifiers,
  posted,
  tokens,
  wealth,
  type Fixture,
} from "../helpers/optimistic";
import { tinyOutputWord } from "../helpers/tiny-circuit";

/**
 * The attacks of the outside review of the optimistic and TEE games (issue 19), each played with the real
 * contracts, every balance asserted: an honest party never loses, and nobody profits from a failure it can
 * cause. Attack 3 (a model whose bundle lies) is refused off chain, before a node serves or attests:
 * test/workers/bundle-consistency.test.ts.
 */

/** The wealth of each of `accounts`, by address. */
async function wealthOf(f: Fixture, accounts: { address: string }[]) {
  const out = new Map<string, bigint>();
  for (const a of accounts) out.set(a.address, await wealth(f, a.address));
  return out;
}

/** A correct result the node cannot be made to lose: every way to challenge it reverts. */
async function expectUnchallengeable(
  f: Fixture,
  p: Awaited<ReturnType<typeof posted>>,
  by: HardhatEthersSigner,
) {
  const { proof, outputs } = await f.prove(p.s, by);
  const c = f.disputes.connect(by);
  await expect(
    c.challengeWithProof(p.s.taskId, p.s.task, p.outputsHash, p.attesters, p.s.input, outputs, proof),
  ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerSameOutputs");
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
  ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerInvalidProof");
  await expect(c.challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters)).to.be.revertedWithCustomError(
    f.disputes,
    "DisputeManagerWrongKind",
  );
}

describe("Optimistic and TEE games under attack (issue 19)", function () {
  it("1. a silent node and a friendly challenger cannot touch 16 honest attesters, over six rounds", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const friend = f.verifiers[3];
    const attesters = await freshVerifiers(f, 16, VERIFIER_STAKE);
    const before = await wealthOf(f, [node, friend, ...attesters]);
    const share = (MODEL_FEE * ATTESTER_BPS) / BPS / 16n;
    for (let round = 0; round < 6; round++) {
      const p = await posted(f, { node, attesters });
      await expectUnchallengeable(f, p, friend);
      // The node stays silent: its silence is no verdict; the result becomes final after the window.
      await afterWindow(f, p.s.taskId);
      await f.tasks.connect(f.stranger).finalizeResult(p.s.taskId, p.s.task, p.outputs, p.attesters);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
    }
    for (const a of attesters) {
      expect(await bonded(f, a.address)).to.equal(VERIFIER_STAKE);
      expect(await wealth(f, a.address)).to.equal(before.get(a.address)! + 6n * share);
      expect(await f.staking.isEligible(a.address, 1)).to.equal(true);
    }
    // The pair gained nothing from the attempt: the friend's wealth is unchanged, the node earned its fees.
    expect(await wealth(f, friend.address)).to.equal(before.get(friend.address)!);
    const nodeFee = MODEL_FEE - (MODEL_FEE * 2000n) / BPS - share * 16n;
    expect(await wealth(f, node.address)).to.equal(before.get(node.address)! + 6n * nodeFee);
    // And the honest verifiers are all still there to catch a lie.
    const lie = await posted(f, { node, outputs: [1n] });
    await disprove(f, lie, attesters[0]);
    expect(await f.tasks.taskStatus(lie.s.taskId)).to.equal(Status.Rejected);
  });

  describe("2. burst challenges against a prover's capacity", function () {
    it("circuit models: a burst of challenges of correct results cannot be made at all; nobody proves anything", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const [attester, , , challenger] = f.verifiers;
      const results = [];
      for (let i = 0; i < 8; i++) {
        results.push(await posted(f, { node, attesters: [attester], values: [BigInt(i), 2n, 3n, 4n] }));
      }
      const before = await wealthOf(f, [node, attester, challenger]);
      for (const p of results) await expectUnchallengeable(f, p, challenger);
      for (const p of results) {
        await afterWindow(f, p.s.taskId);
        await f.tasks.finalizeResult(p.s.taskId, p.s.task, p.outputs, p.attesters);
      }
      expect(await wealth(f, challenger.address)).to.equal(before.get(challenger.address)!);
      expect(await wealth(f, attester.address)).to.equal(
        before.get(attester.address)! + 8n * ((MODEL_FEE * ATTESTER_BPS) / BPS),
      );
      expect(await bonded(f, node.address)).to.equal(NODE_STAKE);
    });

    it("vote models: a challenger of N correct results loses N bonds and its ballots' slashes", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const [v0, v1, v2, challenger] = f.verifiers;
      const N = 4;
      const results = [];
      for (let i = 0; i < N; i++)
        results.push(await posted(f, { node, modelId: f.voteModelId, attesters: [v0] }));
      const before = await wealthOf(f, [node, v0, v1, v2, challenger]);
      for (const p of results) {
        await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters);
      }
      // Honest verifiers vote by re-execution on every dispute at once: their stake is not locked by a vote.
      for (const p of results)
        for (const v of [v0, v1, v2]) await f.disputes.connect(v).vote(p.s.taskId, true);
      for (const p of results) {
        await afterDispute(f, p.s.taskId);
        await f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, p.attesters);
        for (const v of [challenger, v0, v1, v2]) await f.disputes.settleBallot(p.s.taskId, v.address);
      }
      // The challenger: N bonds, and 10% of its weight (1,000 OPG at each opening) per lost ballot.
      const ballotSlash = (VERIFIER_STAKE * VOTER_SLASH_BPS) / BPS;
      expect(await bonded(f, challenger.address)).to.equal(VERIFIER_STAKE - BigInt(N) * ballotSlash);
      expect(await wealth(f, challenger.address)).to.equal(
        before.get(challenger.address)! - BigInt(N) * (CHALLENGE_BOND + ballotSlash),
      );
      // Each honest voter ends above its start; the node was paid every fee.
      for (const v of [v0, v1, v2])
        expect((await wealth(f, v.address)) > before.get(v.address)!).to.equal(true);
      for (const p of results) expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
      expect(await bonded(f, node.address)).to.equal(NODE_STAKE);
      expect(await tokens(f, await f.disputes.getAddress())).to.be.lessThan(16n);
    });
  });

  describe("4. voting that honest stake cannot be locked out of", function () {
    it("(a, b) 32 sybils voting first, and 32 with 1 wei more voting last, cannot outweigh 40 honest voters", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const [attester, challenger] = f.verifiers;
      const honest = await freshVerifiers(f, 40, VERIFIER_STAKE);
      const early = await freshVerifiers(f, 16, VERIFIER_STAKE);
      const late = await freshVerifiers(f, 16, VERIFIER_STAKE + 1n);
      const sybils = [...early, ...late];
      const p = await posted(f, { node, modelId: f.voteModelId, attesters: [attester] });
      const attack = [challenger, ...sybils];
      const before = await wealthOf(f, [node, attester, f.requester, ...honest, ...attack]);
      // The requester's accomplice challenges a correct result.
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters);
      for (const s of early) await f.disputes.connect(s).vote(p.s.taskId, false);
      for (const h of honest) await f.disputes.connect(h).vote(p.s.taskId, true);
      await f.disputes.connect(attester).vote(p.s.taskId, true);
      for (const s of late) await f.disputes.connect(s).vote(p.s.taskId, false);
      const d = await f.disputes.disputeOf(p.s.taskId);
      expect(d.weightFor).to.equal(41n * VERIFIER_STAKE);
      expect(d.weightAgainst).to.equal(33n * VERIFIER_STAKE + 16n);
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, p.attesters))
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeRight, await f.disputes.getAddress());
      for (const v of [...attack, ...honest, attester]) await f.disputes.settleBallot(p.s.taskId, v.address);
      // Every attacker lost 10% of its weight; the challenger its bond too.
      for (const s of attack) {
        const w = (await f.disputes.ballotOf(p.s.taskId, s.address)).weight;
        const bondLoss = s === challenger ? CHALLENGE_BOND : 0n;
        expect(await wealth(f, s.address)).to.equal(
          before.get(s.address)! - (w * VOTER_SLASH_BPS) / BPS - bondLoss,
        );
      }
      // Every honest voter and the attester gained; the node was paid; the requester paid its fee only once.
      for (const h of [...honest, attester])
        expect((await wealth(f, h.address)) > before.get(h.address)!).to.equal(true);
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Verified);
      expect(await wealth(f, node.address)).to.equal(before.get(node.address)! + ethers.parseEther("7"));
      expect(await wealth(f, f.requester.address)).to.equal(before.get(f.requester.address)!);
    });

    it("(c) a liar's 500 OPG sybil cannot outvote an honest challenger staking 10,000", async function () {
      const f = await loadFixture(modesFixture);
      const liar = f.nodes[0];
      const [sybil] = await freshVerifiers(f, 1, ethers.parseEther("500"));
      const [challenger] = await freshVerifiers(f, 1, ethers.parseEther("10000"));
      const before = await wealthOf(f, [liar, sybil, challenger, f.requester]);
      const p = await posted(f, { node: liar, modelId: f.voteModelId, outputs: [1n], attesters: [sybil] });
      await f.disputes.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters);
      await f.disputes.connect(sybil).vote(p.s.taskId, true);
      await afterDispute(f, p.s.taskId);
      await expect(f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, p.attesters))
        .to.emit(f.disputes, "DisputeResolved")
        .withArgs(p.s.taskId, Outcome.NodeWrong, challenger.address);
      await f.disputes.settleBallot(p.s.taskId, sybil.address);
      await f.disputes.settleBallot(p.s.taskId, challenger.address);
      // The sybil voted with its 500 OPG before the attester slash took 100 of them: it loses both.
      const sybilWeight = (await f.disputes.ballotOf(p.s.taskId, sybil.address)).weight;
      expect(sybilWeight).to.equal(ethers.parseEther("500"));
      const sybilLoss = ethers.parseEther("100") + (sybilWeight * VOTER_SLASH_BPS) / BPS;
      expect(await wealth(f, sybil.address)).to.equal(before.get(sybil.address)! - sybilLoss);
      expect(await wealth(f, liar.address)).to.equal(before.get(liar.address)! - CLAIM_COLLATERAL);
      // The challenger: bond back, half the liar's collateral, half the sybil's vote slash.
      const toChallenger =
        (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS +
        (((sybilWeight * VOTER_SLASH_BPS) / BPS) * BENEFICIARY_BPS) / BPS;
      expect(await wealth(f, challenger.address)).to.be.closeTo(
        before.get(challenger.address)! + toChallenger,
        2n,
      );
      expect(await wealth(f, f.requester.address)).to.equal(before.get(f.requester.address)!);
    });

    it("splitting a stake across identities gains nothing: the same slash and reward per OPG", async function () {
      const f = await loadFixture(modesFixture);
      const [whole] = await freshVerifiers(f, 1, ethers.parseEther("2000"));
      const halves = await freshVerifiers(f, 2, ethers.parseEther("1000"));
      const [, challenger] = f.verifiers;
      // Two identical correct results; the whole stake votes on one, the two halves on the other.
      const a = await posted(f, { modelId: f.voteModelId });
      const b = await posted(f, { modelId: f.voteModelId, node: f.nodes[1] });
      await f.disputes.connect(challenger).challenge(a.s.taskId, a.s.task, a.outputsHash, []);
      await f.disputes.connect(challenger).challenge(b.s.taskId, b.s.task, b.outputsHash, []);
      await f.disputes.connect(whole).vote(a.s.taskId, true);
      for (const h of halves) await f.disputes.connect(h).vote(b.s.taskId, true);
      await afterDispute(f, b.s.taskId);
      const w0 = await wealth(f, whole.address);
      const h0 = (await wealth(f, halves[0].address)) + (await wealth(f, halves[1].address));
      for (const p of [a, b]) await f.disputes.resolveVote(p.s.taskId, p.s.task, p.outputs, []);
      await f.disputes.settleBallot(a.s.taskId, challenger.address);
      await f.disputes.settleBallot(b.s.taskId, challenger.address);
      await f.disputes.settleBallot(a.s.taskId, whole.address);
      for (const h of halves) await f.disputes.settleBallot(b.s.taskId, h.address);
      const wholeGain = (await wealth(f, whole.address)) - w0;
      const halvesGain = (await wealth(f, halves[0].address)) + (await wealth(f, halves[1].address)) - h0;
      expect(wholeGain).to.be.greaterThan(0n);
      expect(halvesGain).to.be.closeTo(wholeGain, 2n);
    });
  });

  describe("5. an enclave-key challenge is no weapon", function () {
    /** `n` TEE tasks on the circuit model, Open: nobody claims a TEE task, any node with an Active key serves it. */
    async function openTee(f: Fixture, n: number) {
      const out = [];
      for (let i = 0; i < n; i++) {
        const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_TEE });
        expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
        out.push(s);
      }
      return out;
    }

    async function stakeOf(f: Fixture, node: string) {
      const info = await f.staking.nodeInfo(node);
      return { bonded: info.bonded, locked: info.locked };
    }

    it("a challenged key costs its node no collateral and only stops its signatures: the tasks stay Open, another node's Active key serves them, the challenger gains nothing", async function () {
      const f = await loadFixture(modesFixture);
      const [victim, other] = f.nodes;
      const attacker = f.verifiers[3];
      const key = await registerEnclaveKey(f, victim);
      const otherKey = await registerEnclaveKey(f, other);
      const tasks = await openTee(f, 5);
      const before = await wealthOf(f, [victim, other, attacker, f.requester]);
      const victimStake = await stakeOf(f, victim.address);
      // No TEE task locks anything: there is nothing a challenge could make the victim lose.
      expect(victimStake).to.deep.equal({ bonded: NODE_STAKE, locked: 0n });
      await f.enclaves.connect(attacker).challengeKey(key.address, "no evidence");
      expect(await stakeOf(f, victim.address)).to.deep.equal(victimStake);
      // The victim's signature is refused while its key is challenged; each task stays Open.
      const outputs = [tinyOutputWord(VALUES)];
      for (const s of tasks) {
        const sig = await signTeeResult(f, key, s, victim.address, outputs);
        await expect(f.tasks.connect(victim).submitResultTee(s.taskId, s.task, outputs, sig))
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
          .withArgs(s.taskId, key.address, 3n);
        expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
      }
      expect(await stakeOf(f, victim.address)).to.deep.equal(victimStake);
      // The attacker cannot serve them itself (a verifier is no inference node) nor claim them away.
      const [first] = tasks;
      await expect(
        f.tasks.connect(attacker).submitResultTee(first.taskId, first.task, outputs, "0x"),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryNodeNotEligible");
      await expect(f.tasks.connect(attacker).claimTask(first.taskId, first.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(first.taskId, VERIFICATION_MODE_TEE);
      // Another node with an Active key serves every task before the deadline.
      for (const s of tasks) {
        const sig = await signTeeResult(f, otherKey, s, other.address, outputs);
        await expect(f.tasks.connect(other).submitResultTee(s.taskId, s.task, outputs, sig))
          .to.emit(f.tasks, "TaskVerified")
          .withArgs(
            s.taskId,
            other.address,
            outputs,
            ethers.parseEther("8"),
            ethers.parseEther("1"),
            ethers.parseEther("1"),
          );
        expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
      }
      // Governance finds the document valid: the bond goes to the victim, whose stake was never touched.
      await f.enclaves.connect(f.governance).resolveChallenge(key.address, true);
      expect(await stakeOf(f, victim.address)).to.deep.equal(victimStake);
      expect(await wealth(f, victim.address)).to.equal(before.get(victim.address)! + CHALLENGE_BOND);
      // The challenger gains nothing from the tasks: it only lost its bond.
      expect(await wealth(f, attacker.address)).to.equal(before.get(attacker.address)! - CHALLENGE_BOND);
      expect(await f.tasks.creditsOf(attacker.address)).to.equal(0n);
      expect(await wealth(f, other.address)).to.equal(
        before.get(other.address)! + 5n * ethers.parseEther("8"),
      );
      // The requester paid each fee once (at submission) and got every result.
      expect(await wealth(f, f.requester.address)).to.equal(before.get(f.requester.address)!);
      // The reinstated key signs again.
      const [next] = await openTee(f, 1);
      const sig = await signTeeResult(f, key, next, victim.address, outputs);
      await expect(f.tasks.connect(victim).submitResultTee(next.taskId, next.task, outputs, sig)).to.emit(
        f.tasks,
        "TaskVerified",
      );
    });

    it("a node keeps serving on another registered key", async function () {
      const f = await loadFixture(modesFixture);
      const victim = f.nodes[0];
      const first = await registerEnclaveKey(f, victim, { activate: false });
      const second = await registerEnclaveKey(f, victim);
      const [s] = await openTee(f, 1);
      await f.enclaves.connect(f.verifiers[3]).challengeKey(first.address, "no evidence");
      const outputs = [tinyOutputWord(VALUES)];
      const refused = await signTeeResult(f, first, s, victim.address, outputs);
      await expect(
        f.tasks.connect(victim).submitResultTee(s.taskId, s.task, outputs, refused),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
      const sig = await signTeeResult(f, second, s, victim.address, outputs);
      await expect(f.tasks.connect(victim).submitResultTee(s.taskId, s.task, outputs, sig)).to.emit(
        f.tasks,
        "TaskVerified",
      );
    });

    it("a task no Active key serves waits Open and at its deadline is refunded in full, nobody slashed", async function () {
      const f = await loadFixture(modesFixture);
      const [victim, other] = f.nodes;
      const key = await registerEnclaveKey(f, victim);
      await f.enclaves.connect(f.verifiers[3]).challengeKey(key.address, "no evidence");
      await time.increase(3600);
      const [s] = await openTee(f, 1);
      const before = await wealthOf(f, [victim, other, f.requester]);
      const outputs = [tinyOutputWord(VALUES)];
      const sig = await signTeeResult(f, key, s, victim.address, outputs);
      await expect(
        f.tasks.connect(victim).submitResultTee(s.taskId, s.task, outputs, sig),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
      // The other node has no key at all: it cannot sign either.
      await expect(
        f.tasks.connect(other).submitResultTee(s.taskId, s.task, outputs, sig),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      const tx = f.tasks.connect(f.stranger).expire(s.taskId, s.task);
      await expect(tx).to.emit(f.tasks, "TaskExpired").withArgs(s.taskId, f.requester.address, MODEL_FEE);
      await expect(tx).to.not.emit(f.staking, "NodeSlashed");
      await expect(tx).to.not.emit(f.tasks, "TaskClaimAbandoned");
      expect(await wealth(f, f.requester.address)).to.equal(before.get(f.requester.address)! + MODEL_FEE);
      expect(await wealth(f, victim.address)).to.equal(before.get(victim.address)!);
      expect(await wealth(f, other.address)).to.equal(before.get(other.address)!);
      expect(await bonded(f, victim.address)).to.equal(NODE_STAKE);
      expect((await f.staking.nodeInfo(victim.address)).locked).to.equal(0n);
    });
  });

  it("6. swapping the dispute manager strands no dispute: it finishes under the manager it opened with", async function () {
    const f = await loadFixture(modesFixture);
    const [attester, challenger, v2] = f.verifiers;
    const p = await posted(f, { modelId: f.voteModelId, outputs: [1n], attesters: [attester] });
    const oldManager = f.disputes;
    await oldManager.connect(challenger).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters);
    const before = await wealthOf(f, [p.node, attester, challenger, f.requester]);
    const replacement = await (
      await ethers.getContractFactory("DisputeManager")
    ).deploy(f.tasksAddress, await f.token.getAddress(), await f.staking.getAddress(), f.governance.address);
    await f.tasks
      .connect(f.governance)
      .setVerificationModules(await f.enclaves.getAddress(), await replacement.getAddress());
    await f.staking.connect(f.governance).setSlasher(await replacement.getAddress(), true);
    // The new manager cannot take the dispute over; the old one goes on with its vote.
    await f.token.connect(v2).approve(await replacement.getAddress(), ethers.MaxUint256);
    await expect(replacement.connect(v2).challenge(p.s.taskId, p.s.task, p.outputsHash, p.attesters))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
      .withArgs(p.s.taskId, Status.Disputed);
    await oldManager.connect(v2).vote(p.s.taskId, false);
    await afterDispute(f, p.s.taskId);
    await expect(oldManager.resolveVote(p.s.taskId, p.s.task, p.outputs, p.attesters))
      .to.emit(f.tasks, "TaskRejected")
      .withArgs(p.s.taskId, f.requester.address, MODEL_FEE, Outcome.NodeWrong);
    expect(await wealth(f, f.requester.address)).to.equal(before.get(f.requester.address)! + MODEL_FEE);
    expect(await wealth(f, challenger.address)).to.equal(
      before.get(challenger.address)! + CHALLENGE_BOND + (CLAIM_COLLATERAL * BENEFICIARY_BPS) / BPS,
    );
    expect(await wealth(f, p.node.address)).to.equal(before.get(p.node.address)! - CLAIM_COLLATERAL);
    expect(await tokens(f, await oldManager.getAddress())).to.equal(0n);
  });

  it("7. nothing can front-run a challenge sent in the window's last second", async function () {
    const f = await loadFixture(modesFixture);
    const [friend, challenger, v2] = f.verifiers;
    const p = await posted(f, { outputs: [1n], attesters: [friend] });
    const [, windowEnd] = await f.tasks.pendingOf(p.s.taskId);
    const { proof, outputs } = await f.prove(p.s, challenger);
    await network.provider.send("evm_setAutomine", [false]);
    try {
      // The liar's friends send what they can in the same block, ahead of the challenge: an early
      // finalisation, an expiry, a copy of a disproof bound to someone else, and the challenge of another.
      const sent = [
        await f.tasks
          .connect(friend)
          .finalizeResult(p.s.taskId, p.s.task, p.outputs, p.attesters, { gasLimit: 500_000 }),
        await f.tasks
          .connect(v2)
          .expireUnattested(p.s.taskId, p.s.task, p.outputsHash, p.attesters, { gasLimit: 500_000 }),
        await f.disputes
          .connect(v2)
          .challengeWithProof(p.s.taskId, p.s.task, p.outputsHash, p.attesters, p.s.input, outputs, proof, {
            gasLimit: 1_000_000,
          }),
        await f.disputes
          .connect(challenger)
          .challengeWithProof(p.s.taskId, p.s.task, p.outputsHash, p.attesters, p.s.input, outputs, proof, {
            gasLimit: 1_000_000,
          }),
      ];
      await network.provider.send("evm_mine", [Number(windowEnd)]);
      const receipts = await Promise.all(sent.map((t) => ethers.provider.getTransactionReceipt(t.hash)));
      expect(receipts.map((r) => r!.status)).to.deep.equal([0, 0, 0, 1]);
    } finally {
      await network.provider.send("evm_setAutomine", [true]);
    }
    expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Rejected);
  });

  describe("8. posting junk is no cheaper than abandoning", function () {
    it("an unattested result costs its poster the claim collateral and the task goes back to the market", async function () {
      const f = await loadFixture(modesFixture);
      const [junk, honest] = f.nodes;
      const [attester] = f.verifiers;
      const before = await wealthOf(f, [junk, honest, f.requester, f.treasury]);
      const p = await posted(f, { node: junk, outputs: [12345n] });
      await afterWindow(f, p.s.taskId);
      const tx = f.tasks.connect(f.stranger).expireUnattested(p.s.taskId, p.s.task, p.outputsHash, []);
      await expect(tx).to.emit(f.tasks, "TaskReopened").withArgs(p.s.taskId, junk.address);
      await expect(tx)
        .to.emit(f.staking, "NodeSlashed")
        .withArgs(
          junk.address,
          f.tasksAddress,
          await f.tasks.SLASH_REASON_UNATTESTED(),
          CLAIM_COLLATERAL,
          ethers.ZeroAddress,
          0n,
        );
      expect(await f.tasks.taskStatus(p.s.taskId)).to.equal(Status.Open);
      // Another node serves it.
      await f.tasks.connect(honest).claimTask(p.s.taskId, p.s.task);
      const outputs = [tinyOutputWord(VALUES)];
      const digest = await f.tasks.attestationDigest(
        p.s.taskId,
        honest.address,
        ethers.solidityPackedKeccak256(["uint256"], outputs),
      );
      const sig = await attester.signMessage(ethers.getBytes(digest));
      await f.tasks.connect(honest).submitResultOptimistic(p.s.taskId, p.s.task, outputs, [sig]);
      await afterWindow(f, p.s.taskId);
      await f.tasks.finalizeResult(p.s.taskId, p.s.task, outputs, [attester.address]);
      expect(await wealth(f, junk.address)).to.equal(before.get(junk.address)! - CLAIM_COLLATERAL);
      expect(await wealth(f, honest.address)).to.equal(before.get(honest.address)! + ethers.parseEther("7"));
      expect(await wealth(f, f.requester.address)).to.equal(before.get(f.requester.address)! - MODEL_FEE);
      expect((await f.staking.nodeInfo(junk.address)).locked).to.equal(0n);
    });

    it("after the deadline the requester is refunded in full, and the poster still pays", async function () {
      const f = await loadFixture(modesFixture);
      const junk = f.nodes[0];
      const before = await wealthOf(f, [junk, f.requester]);
      const s = await f.submit(VALUES, {
        modelId: f.optimisticModelId,
        mode: VERIFICATION_MODE_OPTIMISTIC,
        deadlineIn: 700,
      });
      await f.tasks.connect(junk).claimTask(s.taskId, s.task);
      await f.tasks.connect(junk).submitResultOptimistic(s.taskId, s.task, [5n], []);
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      await afterWindow(f, s.taskId);
      await expect(
        f.tasks.expireUnattested(s.taskId, s.task, ethers.solidityPackedKeccak256(["uint256"], [5n]), []),
      )
        .to.emit(f.tasks, "TaskExpired")
        .withArgs(s.taskId, f.requester.address, MODEL_FEE);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Expired);
      expect(await wealth(f, f.requester.address)).to.equal(before.get(f.requester.address)!);
      expect(await wealth(f, junk.address)).to.equal(before.get(junk.address)! - CLAIM_COLLATERAL);
      expect(await tokens(f, f.tasksAddress)).to.equal(0n);
    });
  });
});
