import { expect } from "chai";
import { ethers } from "hardhat";
import fc from "fast-check";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import {
  CLAIM_COLLATERAL,
  MODEL_FEE,
  VERIFICATION_MODE_OPTIMISTIC,
  hashWords,
  modesFixture,
} from "../helpers/market-fixture";
import { tinyOutputWord } from "../helpers/tiny-circuit";

/**
 * Random sequences of optimistic tasks, each played to the end: the model with a circuit (disputes settled by
 * proof) or without (by vote); an honest or lying node; any subset of three verifiers attesting; a challenge
 * or none; the node answering with a real proof or not; each verifier voting either way or not at all. A
 * model predicts every settlement from the chain's stakes before it. After every task:
 * - the registry holds exactly the credits and protocol fees it owes (no task is open), the dispute manager
 *   nothing;
 * - the requester's wallet moved by exactly the fees of verified tasks: a failed task refunds exactly, and
 *   no slash ever pays it;
 * - every stake and wallet of node, attesters, challenger, voters and treasury moved exactly as predicted;
 * - a node and a challenger together never gain from a task the node lost.
 */

/** 10 sequences of 2 or 3 tasks, a real proof for some of them: about 8 s. */
const NUM_RUNS = 10;
const BPS = 10_000n;
const SHARE_BPS = 5000n; // NodeStaking's slashBeneficiaryShareBps
const BOND = ethers.parseEther("100");
const ATTESTER_SLASH = ethers.parseEther("100");
const VOTER_SLASH = ethers.parseEther("100");
const VALUES = [7n, -3n, 2n, 5n];

type Vote = "none" | "right" | "wrong";
interface Scenario {
  circuit: boolean;
  lying: boolean;
  node: number;
  attesters: number[];
  challenge: boolean;
  responds: boolean;
  votes: Vote[];
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  circuit: fc.boolean(),
  lying: fc.boolean(),
  node: fc.nat({ max: 2 }),
  attesters: fc.subarray([0, 1, 2]),
  challenge: fc.boolean(),
  responds: fc.boolean(),
  votes: fc.array(fc.constantFrom<Vote>("none", "right", "wrong"), { minLength: 3, maxLength: 3 }),
});

describe("Optimistic mode (property)", function () {
  it("settles every random optimistic task as predicted and keeps the books exact", async function () {
    const f = await loadFixture(modesFixture);
    const tasksAddress = f.tasksAddress;
    const disputesAddress = await f.disputes.getAddress();
    const challenger = f.verifiers[3];
    const everyone = [...f.nodes, ...f.verifiers, f.modelOwner, f.requester];

    await fc.assert(
      fc.asyncProperty(fc.array(scenario, { minLength: 2, maxLength: 3 }), async (scenarios) => {
        await loadFixture(modesFixture);
        let paid = 0n; // fees of verified tasks
        const requesterStart = await f.token.balanceOf(f.requester.address);
        for (const sc of scenarios) {
          const node = f.nodes[sc.node];
          const eligible = async (a: string) => f.staking.isEligible(a, 1);
          // Stakes and wallets before the task.
          const bonded = new Map<string, bigint>();
          const wallet = new Map<string, bigint>();
          for (const a of [...everyone, f.treasury]) {
            bonded.set(a.address, (await f.staking.nodeInfo(a.address)).bonded);
            wallet.set(a.address, await f.token.balanceOf(a.address));
          }
          const credits = new Map<string, bigint>();
          for (const a of everyone) credits.set(a.address, await f.tasks.creditsOf(a.address));

          const s = await f.submit(VALUES, {
            modelId: sc.circuit ? f.optimisticModelId : f.voteModelId,
            mode: VERIFICATION_MODE_OPTIMISTIC,
          });
          await f.tasks.connect(node).claimTask(s.taskId, s.task);
          const correct = tinyOutputWord(VALUES);
          const outputs = [sc.lying ? correct + 1n : correct];
          await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []);
          const outputsHash = hashWords(outputs);
          const attesters: string[] = [];
          for (const i of sc.attesters) {
            const v = f.verifiers[i];
            if (!(await eligible(v.address))) continue;
            await f.tasks.connect(v).attest(s.taskId, s.task, outputsHash, attesters);
            attesters.push(v.address);
          }

          const expectBonded = new Map(bonded);
          const expectWallet = new Map(wallet);
          const expectCredits = new Map(credits);
          const add = (m: Map<string, bigint>, a: string, d: bigint) => m.set(a, m.get(a)! + d);
          add(expectWallet, f.requester.address, -MODEL_FEE); // escrowed at submission
          const share = (x: bigint) => (x * SHARE_BPS) / BPS;
          const refund = () => add(expectWallet, f.requester.address, MODEL_FEE);
          const verified = () => {
            paid += MODEL_FEE;
            const protocol = (MODEL_FEE * 1000n) / BPS;
            const royalty = (MODEL_FEE * 1000n) / BPS;
            const each = attesters.length === 0 ? 0n : (MODEL_FEE * 1000n) / BPS / BigInt(attesters.length);
            add(
              expectCredits,
              node.address,
              MODEL_FEE - protocol - royalty - each * BigInt(attesters.length),
            );
            add(expectCredits, f.modelOwner.address, royalty);
            for (const a of attesters) add(expectCredits, a, each);
          };
          /** The node lost: its collateral (half to the challenger) and each attester's slash (to the treasury). */
          const nodeWrong = () => {
            refund();
            add(expectBonded, node.address, -CLAIM_COLLATERAL);
            add(expectWallet, challenger.address, share(CLAIM_COLLATERAL));
            add(expectWallet, f.treasury.address, CLAIM_COLLATERAL - share(CLAIM_COLLATERAL));
            for (const a of attesters) {
              const taken = ATTESTER_SLASH < expectBonded.get(a)! ? ATTESTER_SLASH : expectBonded.get(a)!;
              add(expectBonded, a, -taken);
              add(expectWallet, f.treasury.address, taken);
            }
          };

          const challenged = sc.challenge && (await eligible(challenger.address));
          let outcome: "verified" | "expired" | "wrong" | "undecided";
          if (!challenged) {
            const [, windowEnd] = await f.tasks.pendingOf(s.taskId);
            await time.increaseTo(windowEnd + 1n);
            if (attesters.length >= 1) {
              await f.tasks.finalizeResult(s.taskId, s.task, outputs, attesters);
              verified();
              outcome = "verified";
            } else {
              await f.tasks.expireUnattested(s.taskId, s.task, outputsHash, attesters);
              refund();
              outcome = "expired";
            }
          } else {
            await f.disputes.connect(challenger).challenge(s.taskId, s.task, outputsHash, attesters);
            if (sc.circuit) {
              if (!sc.lying && sc.responds) {
                const { proof } = await f.prove(s, node);
                await f.disputes.respond(s.taskId, s.task, s.input, outputs, attesters, proof);
                verified();
                add(expectWallet, node.address, BOND);
                add(expectWallet, challenger.address, -BOND);
                outcome = "verified";
              } else {
                await time.increaseTo((await f.disputes.disputeOf(s.taskId)).deadline + 1n);
                await f.disputes.timeout(s.taskId, s.task, outputsHash, attesters);
                nodeWrong();
                outcome = "wrong";
              }
            } else {
              let right = 0n;
              let wrong = 0n;
              const ballots: [string, Vote][] = [];
              for (let i = 0; i < 3; i++) {
                const v = f.verifiers[i];
                if (sc.votes[i] === "none" || !(await eligible(v.address))) continue;
                const weight = await f.staking.freeStakeOf(v.address);
                await f.disputes.connect(v).vote(s.taskId, sc.votes[i] === "right");
                if (sc.votes[i] === "right") right += weight;
                else wrong += weight;
                ballots.push([v.address, sc.votes[i]]);
              }
              await time.increaseTo((await f.disputes.disputeOf(s.taskId)).deadline + 1n);
              await f.disputes.resolveVote(s.taskId, s.task, outputs, attesters);
              if (right === wrong) {
                refund();
                add(expectWallet, challenger.address, -BOND);
                add(expectWallet, f.treasury.address, BOND);
                outcome = "undecided";
              } else {
                const losing: Vote = right > wrong ? "wrong" : "right";
                if (right > wrong) {
                  verified();
                  add(expectWallet, node.address, BOND);
                  add(expectWallet, challenger.address, -BOND);
                  outcome = "verified";
                } else {
                  nodeWrong();
                  outcome = "wrong";
                }
                for (const [a, side] of ballots) {
                  if (side !== losing) continue;
                  const taken = VOTER_SLASH < expectBonded.get(a)! ? VOTER_SLASH : expectBonded.get(a)!;
                  add(expectBonded, a, -taken);
                  add(expectWallet, f.treasury.address, taken);
                }
              }
            }
          }

          const status = await f.tasks.taskStatus(s.taskId);
          expect(status).to.equal({ verified: 3n, expired: 4n, wrong: 7n, undecided: 7n }[outcome]);
          for (const a of [...everyone, f.treasury]) {
            expect((await f.staking.nodeInfo(a.address)).bonded, `stake of ${a.address}`).to.equal(
              expectBonded.get(a.address),
            );
            expect(await f.token.balanceOf(a.address), `wallet of ${a.address}`).to.equal(
              expectWallet.get(a.address),
            );
          }
          for (const a of everyone) {
            expect(await f.tasks.creditsOf(a.address), `credits of ${a.address}`).to.equal(
              expectCredits.get(a.address),
            );
          }
          // Books: the registry owes exactly what it holds; the dispute manager holds no bond.
          let owed = 0n;
          for (const a of everyone) owed += await f.tasks.creditsOf(a.address);
          for (const n of f.nodes) owed += await f.tasks.protocolFeesOf(n.address);
          expect(await f.token.balanceOf(tasksAddress)).to.equal(owed);
          expect(await f.token.balanceOf(disputesAddress)).to.equal(0n);
          // No collateral stays locked for a settled task (once released, which the next claim also does).
          await f.tasks.releaseCollateral(node.address);
          expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
          // A node and its challenger together never gain from a task the node lost.
          if (outcome === "wrong") {
            const pair = (w: Map<string, bigint>, b: Map<string, bigint>) =>
              w.get(node.address)! +
              b.get(node.address)! +
              w.get(challenger.address)! +
              b.get(challenger.address)!;
            expect(pair(expectWallet, expectBonded) < pair(wallet, bonded)).to.equal(true);
          }
        }
        expect(await f.token.balanceOf(f.requester.address)).to.equal(requesterStart - paid);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
