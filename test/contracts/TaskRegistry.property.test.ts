import { expect } from "chai";
import { ethers } from "hardhat";
import fc from "fast-check";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import type { ContractTransactionReceipt, ContractTransactionResponse } from "ethers";
import {
  CLAIM_COLLATERAL,
  CLAIM_WINDOW,
  MODEL_FEE,
  marketFixture,
  type SubmittedTask,
} from "../helpers/market-fixture";
import { tinyInputWords, tinyOutputWord } from "../helpers/tiny-circuit";

/**
 * Random sequences of submit (paid from the wallet or from deposited credits) / claim (take-overs included) /
 * submitResult (real Groth16 proofs, some tampered) / expire / withdrawCredits / releaseCollateral /
 * withdrawProtocolFees, with time jumps, run against a model of the registry. Every call's outcome, revert
 * and arguments included, is the one the model predicts. After every step:
 * - the registry's OPG balance == fees of Open and Claimed tasks + credits of every account involved
 *   + the protocol fees held in the nodes' accounts (and each of those equals the model's);
 * - every task's status equals the model's and only moved forward; a settled task never changes again, and
 *   submitResult or expire on it reverts with TaskRegistryWrongStatus;
 * - every TaskVerified split adds up to the task's fee and follows the governed shares;
 * - the requester's wallet moved exactly by what it paid, deposited and got refunded: a slash never pays
 *   it (slashed collateral goes to the treasury), so it never ends above where it started.
 */

/** 20 sequences of 8 to 14 steps, about 3 real proofs each: about 15 s. */
const NUM_RUNS = 20;
const GWEI = 10n ** 9n;
const BPS = 10_000n;
const SNARK_SCALAR_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;

enum Status {
  None,
  Open,
  Claimed,
  Verified,
  Expired,
}

type Tamper = "none" | "output" | "proofWord" | "otherNodeBinding";
type Action =
  | {
      kind: "submit";
      values: bigint[];
      extraFee: bigint;
      prepaid: boolean;
      prepaidExtra: bigint;
      deadlineIn: number;
    }
  | { kind: "claim"; task: TaskPick; node: number }
  | { kind: "result"; task: TaskPick; byClaimer: boolean; node: number; tamper: Tamper }
  | { kind: "expire"; task: TaskPick }
  | { kind: "resettle"; task: TaskPick }
  | { kind: "wait"; seconds: number }
  | { kind: "withdrawCredits"; account: number }
  | { kind: "releaseCollateral"; node: number }
  | { kind: "withdrawProtocolFees" };

/**
 * Which task a step acts on: an offset back from the newest task, among the tasks on which the step would
 * succeed now (`live`), or, one time in five or when there is none, among all tasks, to reach the reverts.
 */
type TaskPick = { offset: number; live: boolean };
const taskPick: fc.Arbitrary<TaskPick> = fc.record({
  offset: fc.nat({ max: 4 }),
  live: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
});
const nodePick = fc.nat({ max: 2 });

const submitAction = fc.record({
  kind: fc.constant("submit" as const),
  // Inside the tiny circuit's 16-bit signed input range.
  values: fc.array(fc.bigInt({ min: -32768n, max: 32767n }), { minLength: 4, maxLength: 4 }),
  // Odd wei amounts make the basis-point split round.
  extraFee: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 10n ** 19n })),
  prepaid: fc.boolean(),
  prepaidExtra: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 10n ** 19n })),
  // Around the 600 s claim window, so a claim is sometimes cut short by the deadline.
  deadlineIn: fc.constantFrom(300, 900, 2_400, 5_000),
});

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: submitAction },
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant("claim" as const), task: taskPick, node: nodePick }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("result" as const),
      task: taskPick,
      byClaimer: fc.oneof(
        { weight: 4, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      node: nodePick,
      tamper: fc.oneof(
        { weight: 4, arbitrary: fc.constant("none" as const) },
        {
          weight: 1,
          arbitrary: fc.constantFrom("output" as const, "proofWord" as const, "otherNodeBinding" as const),
        },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("expire" as const), task: taskPick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("resettle" as const), task: taskPick }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("wait" as const),
      seconds: fc.constantFrom(30, 400, 700, 2_600, 6_000),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("withdrawCredits" as const), account: fc.nat({ max: 4 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("releaseCollateral" as const), node: nodePick }) },
  { weight: 1, arbitrary: fc.constant({ kind: "withdrawProtocolFees" as const }) },
);

interface TaskModel {
  submitted: SubmittedTask;
  values: bigint[];
  status: Status;
  claimer?: HardhatEthersSigner;
  claimExpiresAt: bigint;
}

type Proof = { proof: bigint[]; outputs: bigint[] };

describe("TaskRegistry (property)", function () {
  it("keeps escrow, credits and statuses consistent over random task sequences", async function () {
    await fc.assert(
      fc.asyncProperty(
        submitAction,
        fc.array(action, { minLength: 7, maxLength: 13 }),
        fc.nat({ max: 3_000 }),
        fc.nat({ max: 3_000 }),
        async (first, rest, protocolFeeBps, royaltyBps) => {
          await runSequence([first, ...rest], BigInt(protocolFeeBps), BigInt(royaltyBps));
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});

async function runSequence(actions: Action[], protocolFeeBps: bigint, royaltyBps: bigint) {
  const f = await loadFixture(marketFixture);
  const { tasks, tasksAddress, token, staking, requester, modelOwner, stranger, treasury, nodes } = f;
  await tasks.connect(f.governance).setFeeShares(protocolFeeBps, royaltyBps);

  const accounts = [requester, modelOwner, ...nodes];
  const requesterStart = await token.balanceOf(requester.address);
  const nodeAddresses = nodes.map((n) => n.address);
  const model = {
    tasks: [] as TaskModel[],
    credits: new Map<string, bigint>([...accounts, stranger].map((a) => [a.address, 0n])),
    releasable: new Map<string, bigint>(nodes.map((n) => [n.address, 0n])),
    protocolFees: 0n,
    requesterWallet: await token.balanceOf(requester.address),
  };
  const proofs = new Map<string, Proof>();
  let clock = BigInt(await time.latest());
  let previousStatuses: Status[] = [];

  /** Send a transaction in the next block, one second after the last: the model knows every timestamp. */
  async function inNextBlock(send: () => Promise<ContractTransactionResponse>) {
    clock += 1n;
    await time.setNextBlockTimestamp(clock);
    return send();
  }
  async function mined(
    send: () => Promise<ContractTransactionResponse>,
  ): Promise<ContractTransactionReceipt> {
    const receipt = await (await inNextBlock(send)).wait();
    return receipt!;
  }
  function events(receipt: ContractTransactionReceipt, name: string) {
    return receipt.logs
      .map((log) => (log.address === tasksAddress ? tasks.interface.parseLog(log) : null))
      .filter((parsed) => parsed?.name === name)
      .map((parsed) => parsed!.args);
  }
  const credit = (account: string, amount: bigint) =>
    model.credits.set(account, model.credits.get(account)! + amount);

  async function proofFor(t: TaskModel, node: HardhatEthersSigner): Promise<Proof> {
    const key = `${t.submitted.taskId}:${node.address}`;
    if (!proofs.has(key)) proofs.set(key, await f.prove(t.submitted, node));
    return proofs.get(key)!;
  }
  function pick({ offset, live }: TaskPick, isLive: (t: TaskModel, now: bigint) => boolean) {
    const now = clock + 1n;
    const liveTasks = model.tasks.filter((t) => isLive(t, now));
    const candidates = live && liveTasks.length > 0 ? liveTasks : model.tasks;
    return candidates.length === 0
      ? undefined
      : candidates[candidates.length - 1 - (offset % candidates.length)];
  }
  const unsettled = (t: TaskModel) => t.status === Status.Open || t.status === Status.Claimed;
  const settled = (t: TaskModel) => !unsettled(t);
  const claimable = (t: TaskModel, now: bigint) =>
    unsettled(t) &&
    now < BigInt(t.submitted.task.deadline) &&
    !(t.status === Status.Claimed && now <= t.claimExpiresAt);
  const provable = (t: TaskModel, now: bigint) => t.status === Status.Claimed && now <= t.claimExpiresAt;
  const expirable = (t: TaskModel, now: bigint) => unsettled(t) && now > BigInt(t.submitted.task.deadline);

  for (const step of actions) {
    const now = clock + 1n; // timestamp of the next transaction
    switch (step.kind) {
      case "submit": {
        const fee = MODEL_FEE + step.extraFee;
        if (step.prepaid) {
          const amount = fee + step.prepaidExtra;
          await mined(() => tasks.connect(requester).deposit(amount));
          credit(requester.address, amount);
          model.requesterWallet -= amount;
        }
        const request = {
          modelId: f.modelId,
          input: tinyInputWords(step.values),
          inputDataHash: ethers.ZeroHash,
          fee,
          deadline: now + (step.prepaid ? 1n : 0n) + BigInt(step.deadlineIn),
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        };
        const receipt = await mined(() => tasks.connect(requester).submitTask(request));
        const submitted = f.submittedFrom(receipt.logs);
        expect(submitted.taskId).to.equal(BigInt(model.tasks.length + 1));
        if (model.credits.get(requester.address)! >= fee) credit(requester.address, -fee);
        else model.requesterWallet -= fee;
        model.tasks.push({ submitted, values: step.values, status: Status.Open, claimExpiresAt: 0n });
        break;
      }

      case "claim": {
        const t = pick(step.task, claimable);
        if (!t) break;
        const node = nodes[step.node];
        const { taskId, task } = t.submitted;
        const deadline = BigInt(task.deadline);
        const claim = () => inNextBlock(() => tasks.connect(node).claimTask(taskId, task));
        if (t.status !== Status.Open && t.status !== Status.Claimed) {
          await expect(claim())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryWrongStatus")
            .withArgs(taskId, t.status);
        } else if (now >= deadline) {
          await expect(claim())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryDeadlinePassed")
            .withArgs(taskId, deadline, now);
        } else if (t.status === Status.Claimed && now <= t.claimExpiresAt) {
          await expect(claim())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryAlreadyClaimed")
            .withArgs(taskId, t.claimer!.address, t.claimExpiresAt);
        } else {
          const receipt = (await (await claim()).wait())!;
          const abandoned = events(receipt, "TaskClaimAbandoned");
          if (t.status === Status.Claimed) {
            expect(abandoned.map((a) => [a.taskId, a.previousNode, a.slashed])).to.deep.equal([
              [taskId, t.claimer!.address, CLAIM_COLLATERAL],
            ]);
          } else {
            expect(abandoned).to.have.length(0);
          }
          const expiresAt = now + BigInt(CLAIM_WINDOW) < deadline ? now + BigInt(CLAIM_WINDOW) : deadline;
          const [claimed] = events(receipt, "TaskClaimed");
          expect([claimed.node, claimed.claimExpiresAt, claimed.collateral]).to.deep.equal([
            node.address,
            expiresAt,
            CLAIM_COLLATERAL,
          ]);
          // A claim first releases the node's settled collateral.
          model.releasable.set(node.address, 0n);
          Object.assign(t, { status: Status.Claimed, claimer: node, claimExpiresAt: expiresAt });
        }
        break;
      }

      case "result": {
        const t = pick(step.task, provable);
        if (!t) break;
        const caller = step.byClaimer && t.claimer ? t.claimer : nodes[step.node];
        const { taskId, task, input } = t.submitted;
        const reachesVerifier =
          t.status === Status.Claimed && caller === t.claimer && now <= t.claimExpiresAt;
        // Only a call that reaches the verifier needs a real proof; the others reuse one when there is one.
        let { proof, outputs } = reachesVerifier
          ? await proofFor(
              t,
              step.tamper === "otherNodeBinding" ? nodes[(nodes.indexOf(caller) + 1) % 3] : caller,
            )
          : (proofs.get(`${taskId}:${caller.address}`) ?? { proof: new Array(8).fill(1n), outputs: [1n] });
        if (step.tamper === "output") outputs = [outputs[0] + 1n];
        if (step.tamper === "proofWord") proof = [...proof.slice(0, 7), (proof[7] + 1n) % SNARK_SCALAR_FIELD];
        const submit = () =>
          inNextBlock(() => tasks.connect(caller).submitResult(taskId, task, input, outputs, proof));

        if (t.status !== Status.Claimed) {
          await expect(submit())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryWrongStatus")
            .withArgs(taskId, t.status);
        } else if (caller !== t.claimer) {
          await expect(submit())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryNotClaimer")
            .withArgs(taskId, caller.address, t.claimer!.address);
        } else if (now > t.claimExpiresAt) {
          await expect(submit())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryClaimExpired")
            .withArgs(taskId, t.claimExpiresAt, now);
        } else if (step.tamper !== "none") {
          await expect(submit())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryInvalidProof")
            .withArgs(taskId);
        } else {
          expect(outputs).to.deep.equal([tinyOutputWord(t.values)]);
          const receipt = (await (await submit()).wait())!;
          const fee = BigInt(task.fee);
          // The protocol's share is held in whole gwei; the dust goes to the node.
          const protocolFee = ((fee * protocolFeeBps) / BPS / GWEI) * GWEI;
          const royalty = (fee * royaltyBps) / BPS;
          const verified = events(receipt, "TaskVerified");
          expect(verified).to.have.length(1);
          const v = verified[0];
          expect(v.nodeFee + v.royalty + v.protocolFee).to.equal(fee);
          expect([v.taskId, v.node, [...v.outputs], v.royalty, v.protocolFee]).to.deep.equal([
            taskId,
            caller.address,
            outputs,
            royalty,
            protocolFee,
          ]);
          credit(caller.address, v.nodeFee);
          credit(modelOwner.address, royalty);
          model.protocolFees += protocolFee;
          model.releasable.set(caller.address, model.releasable.get(caller.address)! + CLAIM_COLLATERAL);
          t.status = Status.Verified;
          const result = await tasks.resultOf(taskId);
          expect([result.node, result.settledBlock, [...result.outputs]]).to.deep.equal([
            caller.address,
            BigInt(receipt.blockNumber),
            outputs,
          ]);
        }
        break;
      }

      case "expire": {
        const t = pick(step.task, expirable);
        if (!t) break;
        const { taskId, task } = t.submitted;
        const deadline = BigInt(task.deadline);
        const expire = () => inNextBlock(() => tasks.connect(stranger).expire(taskId, task));
        if (t.status !== Status.Open && t.status !== Status.Claimed) {
          await expect(expire())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryWrongStatus")
            .withArgs(taskId, t.status);
        } else if (now <= deadline) {
          await expect(expire())
            .to.be.revertedWithCustomError(tasks, "TaskRegistryDeadlineNotReached")
            .withArgs(taskId, deadline, now);
        } else {
          const receipt = (await (await expire()).wait())!;
          const [expired] = events(receipt, "TaskExpired");
          expect([expired.taskId, expired.requester, expired.refund]).to.deep.equal([
            taskId,
            requester.address,
            BigInt(task.fee),
          ]);
          model.requesterWallet += BigInt(task.fee);
          const abandoned = events(receipt, "TaskClaimAbandoned");
          if (t.status === Status.Claimed) {
            expect(abandoned.map((a) => [a.previousNode, a.slashed])).to.deep.equal([
              [t.claimer!.address, CLAIM_COLLATERAL],
            ]);
          } else {
            expect(abandoned).to.have.length(0);
          }
          t.status = Status.Expired;
        }
        break;
      }

      case "resettle": {
        // A settled task, replayed with the proof that settled it where there is one: both calls refused.
        const t = pick({ ...step.task, live: true }, settled);
        if (!t || !settled(t)) break;
        const { taskId, task, input } = t.submitted;
        const node = t.claimer ?? nodes[0];
        const { proof, outputs } = proofs.get(`${taskId}:${node.address}`) ?? {
          proof: new Array(8).fill(1n),
          outputs: [1n],
        };
        await expect(inNextBlock(() => tasks.connect(node).submitResult(taskId, task, input, outputs, proof)))
          .to.be.revertedWithCustomError(tasks, "TaskRegistryWrongStatus")
          .withArgs(taskId, t.status);
        await expect(inNextBlock(() => tasks.connect(stranger).expire(taskId, task)))
          .to.be.revertedWithCustomError(tasks, "TaskRegistryWrongStatus")
          .withArgs(taskId, t.status);
        break;
      }

      case "wait":
        clock = BigInt(await time.increase(step.seconds));
        break;

      case "withdrawCredits": {
        const account = accounts[step.account];
        const owed = model.credits.get(account.address)!;
        if (owed === 0n) {
          await expect(inNextBlock(() => tasks.connect(account).withdrawCredits(account.address)))
            .to.be.revertedWithCustomError(tasks, "TaskRegistryNoCredits")
            .withArgs(account.address);
          break;
        }
        const receipt = await mined(() => tasks.connect(account).withdrawCredits(account.address));
        const [withdrawn] = events(receipt, "CreditsWithdrawn");
        expect([withdrawn.account, withdrawn.to, withdrawn.amount]).to.deep.equal([
          account.address,
          account.address,
          owed,
        ]);
        model.credits.set(account.address, 0n);
        if (account === requester) model.requesterWallet += owed;
        break;
      }

      case "releaseCollateral": {
        const node = nodes[step.node];
        const releasable = model.releasable.get(node.address)!;
        const lockedBefore = (await staking.nodeInfo(node.address)).locked;
        expect(await tasks.releaseCollateral.staticCall(node.address)).to.equal(releasable);
        const receipt = await mined(() => tasks.connect(stranger).releaseCollateral(node.address));
        expect(events(receipt, "CollateralReleased").map((e) => e.amount)).to.deep.equal(
          releasable === 0n ? [] : [releasable],
        );
        expect((await staking.nodeInfo(node.address)).locked).to.equal(lockedBefore - releasable);
        model.releasable.set(node.address, 0n);
        break;
      }

      case "withdrawProtocolFees": {
        if (model.protocolFees === 0n) {
          await expect(inNextBlock(() => tasks.connect(stranger).withdrawProtocolFees(nodeAddresses)))
            .to.be.revertedWithCustomError(tasks, "TaskRegistryNoCredits")
            .withArgs(treasury.address);
          break;
        }
        const receipt = await mined(() => tasks.connect(stranger).withdrawProtocolFees(nodeAddresses));
        const [paid] = events(receipt, "ProtocolFeesWithdrawn");
        expect([paid.treasury, paid.amount]).to.deep.equal([treasury.address, model.protocolFees]);
        model.protocolFees = 0n;
        break;
      }
    }

    // ---- invariants after every step
    const statuses = await Promise.all(
      model.tasks.map(async (t) => Number(await tasks.taskStatus(t.submitted.taskId)) as Status),
    );
    expect(statuses, `statuses after ${step.kind}`).to.deep.equal(model.tasks.map((t) => t.status));
    previousStatuses.forEach((before, i) => {
      const after = statuses[i];
      if (before === Status.Verified || before === Status.Expired) expect(after).to.equal(before);
      else expect(after).to.be.gte(before);
    });
    previousStatuses = statuses;

    const credits = await Promise.all([...model.credits.keys()].map((a) => tasks.creditsOf(a)));
    expect(credits, `credits after ${step.kind}`).to.deep.equal([...model.credits.values()]);
    const releasable = await Promise.all(nodes.map((n) => tasks.releasableCollateralOf(n.address)));
    expect(releasable).to.deep.equal(nodes.map((n) => model.releasable.get(n.address)));
    const held = await Promise.all(nodeAddresses.map((a) => tasks.protocolFeesOf(a)));
    const protocolFees = held.reduce((sum, v) => sum + v, 0n);
    expect(protocolFees).to.equal(model.protocolFees);

    const escrow = model.tasks
      .filter((t) => t.status === Status.Open || t.status === Status.Claimed)
      .reduce((sum, t) => sum + BigInt(t.submitted.task.fee), 0n);
    const creditTotal = credits.reduce((sum, c) => sum + c, 0n);
    expect(await token.balanceOf(tasksAddress), `registry balance after ${step.kind}`).to.equal(
      escrow + creditTotal + protocolFees,
    );
    expect(await token.balanceOf(requester.address)).to.equal(model.requesterWallet);
    // Wallet plus credits never exceed the requester's start: it cannot profit from any failure.
    expect(model.requesterWallet + model.credits.get(requester.address)!).to.be.at.most(requesterStart);
  }
}
