import { expect } from "chai";
import { ethers } from "hardhat";
import fc from "fast-check";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  VERIFICATION_MODE_OPTIMISTIC,
  VERIFICATION_MODE_TEE,
  hashWords,
  modesFixture,
  registerEnclaveKey,
  signTeeResult,
  type EnclaveKeyWallet,
  type SubmittedTask,
} from "../helpers/market-fixture";
import { afterDispute, afterWindow, signAttestation, wealth, type Fixture } from "../helpers/optimistic";
import { tinyOutputWord } from "../helpers/tiny-circuit";

/**
 * Random sequences of optimistic and TEE tasks played by honest and dishonest parties, each task to its end:
 *
 * - honest inference nodes 0 and 1 post correct outputs with honest attestations, or sign them with an
 *   enclave key (TEE tasks are not claimed: an Open task goes to the first node with an Active key);
 *   dishonest node 2 lies, posts junk nobody attests, or claims and goes silent (optimistic), and in TEE
 *   mode, holding no approved key, signs a lie with a key of its own, copies an honest node's signature, or
 *   stays silent;
 * - honest verifiers 0 and 1 attest only what they re-executed, challenge every lie (a disproof for a model
 *   with a circuit, a vote otherwise) and vote truthfully on every dispute; dishonest verifiers 2 and 3
 *   attest the dishonest node's lies, challenge correct results, vote for the wrong side, challenge honest
 *   enclave keys without evidence (the other honest node then serves the task; no collateral is locked for
 *   a TEE task, so none is at stake), and add stake during a vote to weigh more;
 * - governance may swap the dispute manager while a vote is open; stakers request unstaking between tasks.
 *
 * After each sequence (ballots settled, key challenges judged): no honest party (honest nodes, honest
 * verifiers, the requester counting the fees of verified tasks) ends below its start, no dishonest party
 * ends above its start, and every contract's OPG balance equals what its books owe, exactly (dispute
 * managers: less than one wei of rounding per ballot).
 *
 * The honest verifiers hold the majority of verification stake: the assumption a stake vote rests on.
 */

const NUM_RUNS = 12;
const VALUES = [7n, -3n, 2n, 5n];

type Kind = "circuit" | "vote" | "tee";
type Fault = "lie" | "junk" | "silent";
interface Episode {
  kind: Kind;
  /** 0, 1: honest; 2: dishonest. */
  server: number;
  fault: Fault;
  /** Which honest verifiers the honest node asks (at least one is asked: quorum 1). */
  honestAttesters: number[];
  /** Which dishonest verifiers attest the dishonest node's outputs. */
  dishonestAttesters: number[];
  /** The dishonest verifier 3 challenges a correct result (or an honest enclave key). */
  griefs: boolean;
  /** Dishonest verifiers that vote (always for the wrong side). */
  dishonestVotes: number[];
  /** A dishonest verifier adds stake after the opening and tries to vote with it. */
  stakeIn: boolean;
  /** Governance swaps the dispute manager while the vote is open. */
  swap: boolean;
  /** An honest verifier requests unstaking of 10 OPG after the task. */
  unstake: number;
}

const episode: fc.Arbitrary<Episode> = fc.record({
  kind: fc.constantFrom<Kind>("circuit", "vote", "tee"),
  server: fc.nat({ max: 2 }),
  fault: fc.constantFrom<Fault>("lie", "junk", "silent"),
  honestAttesters: fc.subarray([0, 1], { minLength: 1 }),
  dishonestAttesters: fc.subarray([2, 3]),
  griefs: fc.boolean(),
  dishonestVotes: fc.subarray([2, 3]),
  stakeIn: fc.boolean(),
  swap: fc.boolean(),
  unstake: fc.constantFrom(-1, 0, 1),
});

/** Honest verifiers' extra stake: 3,000 OPG each against 1,000 for each dishonest one. */
const HONEST_TOP_UP = ethers.parseEther("2000");

describe("Optimistic and TEE games (property)", function () {
  it("an honest party never ends below its start, a dishonest one never above, and the books stay exact", async function () {
    await fc.assert(
      fc.asyncProperty(fc.array(episode, { minLength: 2, maxLength: 4 }), async (episodes) => {
        const f = await loadFixture(modesFixture);
        const [h0, h1, liar] = f.nodes;
        const [v0, v1, d2, d3] = f.verifiers;
        for (const v of [v0, v1]) {
          await f.token.connect(f.treasury).transfer(v.address, HONEST_TOP_UP);
          await f.staking.connect(v).stake(HONEST_TOP_UP);
        }
        const keys = new Map<string, EnclaveKeyWallet[]>();
        for (const n of [h0, h1]) keys.set(n.address, [await registerEnclaveKey(f, n)]);
        await f.token.connect(f.treasury).transfer(d3.address, ethers.parseEther("2000"));

        const honest = [h0, h1, v0, v1];
        const dishonest = [liar, d2, d3];
        const start = new Map<string, bigint>();
        for (const a of [...honest, ...dishonest, f.requester])
          start.set(a.address, await wealth(f, a.address));
        let feesPaid = 0n;
        const managers = [f.disputes];
        const ballots: { manager: typeof f.disputes; taskId: bigint; voter: string }[] = [];
        const challengedKeys: string[] = [];

        for (const ep of episodes) {
          let disputes = managers[managers.length - 1];
          const node = [h0, h1, liar][ep.server];
          const cheating = ep.server === 2;
          const modelId = ep.kind === "vote" ? f.voteModelId : f.optimisticModelId;
          const mode = ep.kind === "tee" ? VERIFICATION_MODE_TEE : VERIFICATION_MODE_OPTIMISTIC;
          const s = await f.submit(VALUES, { modelId, mode });
          const truth = [tinyOutputWord(VALUES)];

          if (ep.kind === "tee") {
            // TEE tasks are never claimed: any eligible inference node with an Active enclave key settles an
            // Open task, so nothing is locked and nothing can be taken hostage.
            // Settled optimistic claims' collateral first goes back to free stake (serving does that too).
            for (const n of f.nodes) await f.tasks.releaseCollateral(n.address);
            const lockedBefore = await lockedOf(f);
            await expect(f.tasks.connect(node).claimTask(s.taskId, s.task))
              .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
              .withArgs(s.taskId, VERIFICATION_MODE_TEE);
            if (cheating) {
              // The dishonest node has no approved enclave key: a lie signed by a key of its own, or a copy of
              // an honest node's signature sent first, is refused; the task stays Open and an honest node
              // serves it (a silent dishonest node blocks nothing at all).
              if (ep.fault === "lie") {
                const own = ethers.Wallet.createRandom();
                const sig = await signTeeResult(f, own, s, liar.address, [truth[0] + 1n]);
                await expect(
                  f.tasks.connect(liar).submitResultTee(s.taskId, s.task, [truth[0] + 1n], sig),
                ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
              } else if (ep.fault === "junk") {
                const honestSig = await signTeeResult(f, keys.get(h0.address)![0], s, h0.address, truth);
                await expect(
                  f.tasks.connect(liar).submitResultTee(s.taskId, s.task, truth, honestSig),
                ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
              }
              expect(await f.tasks.taskStatus(s.taskId)).to.equal(1n);
              await serve(f, s, h0, keys);
              feesPaid += BigInt(s.task.fee);
            } else {
              let nodeKeys = keys.get(node.address)!;
              if (ep.griefs) {
                // A dishonest verifier challenges the node's key without evidence: the node's signatures are
                // refused while it is challenged, it loses no collateral (none is locked), and the task stays
                // Open for the other honest node's Active key. The challenged node registers a new key for later.
                const stakeBefore = await f.staking.nodeInfo(node.address);
                await f.enclaves.connect(d3).challengeKey(nodeKeys[0].address, "griefing");
                challengedKeys.push(nodeKeys[0].address);
                const sig = await signTeeResult(f, nodeKeys[0], s, node.address, truth);
                await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, truth, sig))
                  .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
                  .withArgs(s.taskId, nodeKeys[0].address, 3n);
                const stakeAfter = await f.staking.nodeInfo(node.address);
                expect([stakeAfter.bonded, stakeAfter.locked]).to.deep.equal([
                  stakeBefore.bonded,
                  stakeBefore.locked,
                ]);
                expect(await f.tasks.taskStatus(s.taskId)).to.equal(1n);
                await serve(f, s, node === h0 ? h1 : h0, keys);
                feesPaid += BigInt(s.task.fee);
                nodeKeys = [await registerEnclaveKey(f, node)];
                keys.set(node.address, nodeKeys);
              } else {
                await serve(f, s, node, keys);
                feesPaid += BigInt(s.task.fee);
              }
            }
            expect(await lockedOf(f)).to.deep.equal(lockedBefore);
            continue;
          }

          await f.tasks.connect(node).claimTask(s.taskId, s.task);
          if (cheating && ep.fault === "silent") {
            await takeOver(f, s, h1, [v0]);
            feesPaid += BigInt(s.task.fee);
            continue;
          }
          const outputs = cheating ? [ep.fault === "junk" ? 999n : truth[0] + 1n] : truth;
          const signers: HardhatEthersSigner[] = [];
          const asked = cheating ? (ep.fault === "junk" ? [] : ep.dishonestAttesters) : ep.honestAttesters;
          for (const i of asked) {
            // A dishonest verifier slashed below the minimum stake can no longer attest.
            if (await f.staking.isEligible(f.verifiers[i].address, 1)) signers.push(f.verifiers[i]);
          }
          const sigs = [];
          for (const a of signers) sigs.push(await signAttestation(f, a, s, node.address, outputs));
          await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, sigs);
          const attesters = signers.map((a) => a.address);
          const outputsHash = hashWords(outputs);

          if (cheating && ep.fault === "lie") {
            // An honest verifier catches the lie.
            if (ep.kind === "circuit") {
              const { proof, outputs: proved } = await f.prove(s, v0);
              await disputes
                .connect(v0)
                .challengeWithProof(s.taskId, s.task, outputsHash, attesters, s.input, proved, proof);
            } else {
              await disputes.connect(v0).challenge(s.taskId, s.task, outputsHash, attesters);
              disputes = await vote(f, disputes, s.taskId, ep, false, ballots, managers);
              await afterDispute({ ...f, disputes }, s.taskId);
              await disputes.resolveVote(s.taskId, s.task, outputs, attesters);
            }
            expect(await f.tasks.taskStatus(s.taskId)).to.equal(7n);
          } else if (!cheating && ep.griefs) {
            // A dishonest verifier disputes a correct result: a disproof cannot exist; a vote it loses.
            if (ep.kind === "circuit") {
              const { proof, outputs: proved } = await f.prove(s, d3);
              await expect(
                disputes
                  .connect(d3)
                  .challengeWithProof(s.taskId, s.task, outputsHash, attesters, s.input, proved, proof),
              ).to.be.reverted;
              await afterWindow(f, s.taskId);
              await f.tasks.finalizeResult(s.taskId, s.task, outputs, attesters);
            } else {
              await disputes.connect(d3).challenge(s.taskId, s.task, outputsHash, attesters);
              disputes = await vote(f, disputes, s.taskId, ep, true, ballots, managers);
              await afterDispute({ ...f, disputes }, s.taskId);
              await disputes.resolveVote(s.taskId, s.task, outputs, attesters);
            }
            expect(await f.tasks.taskStatus(s.taskId)).to.equal(3n);
            feesPaid += BigInt(s.task.fee);
          } else {
            await afterWindow(f, s.taskId);
            if (attesters.length >= 1) {
              await f.tasks.finalizeResult(s.taskId, s.task, outputs, attesters);
              feesPaid += BigInt(s.task.fee);
            } else {
              // Junk nobody attests: the poster is slashed, the task reopens and an honest node serves it.
              await f.tasks.expireUnattested(s.taskId, s.task, outputsHash, attesters);
              expect(await f.tasks.taskStatus(s.taskId)).to.equal(1n);
              await takeOver(f, s, h0, [v1], false);
              feesPaid += BigInt(s.task.fee);
            }
          }
          await f.tasks.releaseCollateral(node.address);
          if (ep.unstake >= 0)
            await f.staking.connect([v0, v1][ep.unstake]).requestUnstake(ethers.parseEther("10"));
        }

        // Settle every ballot (twice: winners collect what later losers brought), judge every key challenge.
        for (let round = 0; round < 2; round++) {
          for (const b of ballots) await b.manager.settleBallot(b.taskId, b.voter);
        }
        for (const key of challengedKeys) await f.enclaves.connect(f.governance).resolveChallenge(key, true);

        for (const a of honest) {
          const now = await wealth(f, a.address);
          expect(
            now >= start.get(a.address)!,
            `honest ${a.address}: ${start.get(a.address)} -> ${now}`,
          ).to.equal(true);
        }
        for (const a of dishonest) {
          const now = await wealth(f, a.address);
          expect(
            now <= start.get(a.address)!,
            `dishonest ${a.address}: ${start.get(a.address)} -> ${now}`,
          ).to.equal(true);
        }
        expect(await wealth(f, f.requester.address)).to.equal(start.get(f.requester.address)! - feesPaid);

        // Books: every contract holds exactly what it owes.
        const everyone = [...honest, ...dishonest, f.requester, f.modelOwner, f.treasury, f.stranger];
        let owed = 0n;
        for (const a of everyone) owed += await f.tasks.creditsOf(a.address);
        for (const n of f.nodes) owed += await f.tasks.protocolFeesOf(n.address);
        expect(await f.token.balanceOf(f.tasksAddress)).to.equal(owed);
        let staked = 0n;
        for (const a of everyone) {
          const info = await f.staking.nodeInfo(a.address);
          staked += info.bonded + info.unbonding;
          expect(info.locked <= info.bonded).to.equal(true);
        }
        expect(await f.token.balanceOf(await f.staking.getAddress())).to.equal(staked);
        expect(await f.token.balanceOf(await f.enclaves.getAddress())).to.equal(0n);
        for (const m of managers) {
          const held = await f.token.balanceOf(await m.getAddress());
          expect(held <= BigInt(ballots.length + 1)).to.equal(true);
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

/** Every inference node's stake locked on NodeStaking, in node order. */
async function lockedOf(f: Fixture) {
  const out = [];
  for (const n of f.nodes) out.push((await f.staking.nodeInfo(n.address)).locked);
  return out;
}

/** `by` settles the Open TEE task `s` with its first enclave key: no claim, one transaction. */
async function serve(
  f: Fixture,
  s: SubmittedTask,
  by: HardhatEthersSigner,
  keys: Map<string, EnclaveKeyWallet[]>,
) {
  const truth = [tinyOutputWord(VALUES)];
  const sig = await signTeeResult(f, keys.get(by.address)![0], s, by.address, truth);
  await expect(f.tasks.connect(by).submitResultTee(s.taskId, s.task, truth, sig))
    .to.emit(f.tasks, "TaskVerified")
    .withArgs(s.taskId, by.address, truth, anyValue, anyValue, anyValue);
}

/**
 * `s`'s optimistic claim lapses (its node went silent) unless `lapse` is false (the task was reopened); `by`
 * claims it and settles it with `attesters`' signatures.
 */
async function takeOver(
  f: Fixture,
  s: SubmittedTask,
  by: HardhatEthersSigner,
  attesters: HardhatEthersSigner[] = [],
  lapse = true,
) {
  if (lapse) {
    const [, expiry] = await f.tasks.claimOf(s.taskId);
    await time.increaseTo(expiry + 1n);
  }
  await f.tasks.connect(by).claimTask(s.taskId, s.task);
  const truth = [tinyOutputWord(VALUES)];
  const sigs = [];
  for (const a of attesters) sigs.push(await signAttestation(f, a, s, by.address, truth));
  await f.tasks.connect(by).submitResultOptimistic(s.taskId, s.task, truth, sigs);
  await afterWindow(f, s.taskId);
  await f.tasks.finalizeResult(
    s.taskId,
    s.task,
    truth,
    attesters.map((a) => a.address),
  );
}

/**
 * The vote on an open dispute: both honest verifiers vote truthfully (`nodeRight`) unless one is the
 * challenger; the chosen dishonest ones vote the other way; a dishonest one that adds stake first is
 * refused. Governance may swap the dispute manager meanwhile: the vote goes on under the old one, which is
 * returned. Every ballot is recorded for settlement.
 */
async function vote(
  f: Fixture,
  disputes: Fixture["disputes"],
  taskId: bigint,
  ep: Episode,
  nodeRight: boolean,
  ballots: { manager: Fixture["disputes"]; taskId: bigint; voter: string }[],
  managers: Fixture["disputes"][],
) {
  const d = await disputes.disputeOf(taskId);
  ballots.push({ manager: disputes, taskId, voter: d.challenger });
  if (ep.swap) {
    const next = await (
      await ethers.getContractFactory("DisputeManager")
    ).deploy(f.tasksAddress, await f.token.getAddress(), await f.staking.getAddress(), f.governance.address);
    await f.tasks
      .connect(f.governance)
      .setVerificationModules(await f.enclaves.getAddress(), await next.getAddress());
    await f.staking.connect(f.governance).setSlasher(await next.getAddress(), true);
    for (const v of f.verifiers) await f.token.connect(v).approve(await next.getAddress(), ethers.MaxUint256);
    managers.push(next as unknown as Fixture["disputes"]);
  }
  if (ep.stakeIn) {
    await f.staking.connect(f.verifiers[2]).stake(ethers.parseEther("1"));
    await expect(disputes.connect(f.verifiers[2]).vote(taskId, !nodeRight)).to.be.revertedWithCustomError(
      disputes,
      "DisputeManagerCannotVote",
    );
  }
  for (const v of [f.verifiers[0], f.verifiers[1]]) {
    if (v.address === d.challenger) continue;
    await disputes.connect(v).vote(taskId, nodeRight);
    ballots.push({ manager: disputes, taskId, voter: v.address });
  }
  for (const i of ep.dishonestVotes) {
    const v = f.verifiers[i];
    if (v.address === d.challenger || (ep.stakeIn && i === 2)) continue;
    if (!(await f.staking.isEligible(v.address, 1))) continue;
    await disputes.connect(v).vote(taskId, !nodeRight);
    ballots.push({ manager: disputes, taskId, voter: v.address });
  }
  return disputes;
}
