import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { expect } from "chai";
import { ethers } from "hardhat";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  DEV_MEASUREMENT,
  ENCLAVE_ACTIVATION_DELAY,
  MODEL_FEE,
  NODE_STAKE,
  VERIFICATION_MODE_OPTIMISTIC,
  VERIFICATION_MODE_TEE,
  modesFixture,
  registerEnclaveKey,
  signTeeResult,
  type EnclaveKeyWallet,
} from "../helpers/market-fixture";
import { tinyOutputWord } from "../helpers/tiny-circuit";
import { readVerifiedResult } from "../../workers/runtime/tasks";

const Standing = {
  Unknown: 0n,
  Pending: 1n,
  Active: 2n,
  Challenged: 3n,
  Revoked: 4n,
  Expired: 5n,
  MeasurementWithdrawn: 6n,
};
const Status = { Open: 1n, Claimed: 2n, Verified: 3n, Expired: 4n };
const VALUES = [1n, 2n, 3n, 4n];
const BPS = 10_000n;

type Fixture = Awaited<ReturnType<typeof modesFixture>>;

/**
 * A TEE task on the model without a circuit (its strongest mode is TEE). Nobody claims it: it stays Open until
 * an eligible inference node settles it with its enclave's signature.
 */
async function openTee(f: Fixture, opts: { deadlineIn?: number } = {}) {
  const s = await f.submit(VALUES, { modelId: f.voteModelId, deadlineIn: opts.deadlineIn });
  expect(s.task.mode).to.equal(BigInt(VERIFICATION_MODE_TEE));
  return s;
}

/** An open TEE task and `node`'s submission of its outputs signed by `key` (the transaction, not awaited). */
async function submitSigned(f: Fixture, node: HardhatEthersSigner, key: EnclaveKeyWallet) {
  const s = await openTee(f);
  const outputs = [tinyOutputWord(VALUES)];
  const signature = await signTeeResult(f, key, s, node.address, outputs);
  return { s, outputs, tx: f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature) };
}

describe("TEE settlement", function () {
  it("settles an open task at once with an Active key of the node that serves it, and splits the fee", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const stakeBefore = await f.staking.nodeInfo(node.address);
    const { s, outputs, tx } = await submitSigned(f, node, key);
    // No claim comes first: the task is Open, with nobody holding it.
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
    const protocolFee = (MODEL_FEE * 1000n) / BPS;
    const royalty = (MODEL_FEE * 1000n) / BPS;
    const nodeFee = MODEL_FEE - protocolFee - royalty;
    await expect(tx).to.emit(f.tasks, "TaskEnclaveSigned").withArgs(s.taskId, key.address);
    await expect(tx)
      .to.emit(f.tasks, "TaskVerified")
      .withArgs(s.taskId, node.address, outputs, nodeFee, royalty, protocolFee);
    await expect(tx).to.not.emit(f.tasks, "TaskClaimed");
    await expect(tx).to.not.emit(f.staking, "CollateralLocked");
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
    const result = await readVerifiedResult(f.tasks, s.taskId);
    expect(result!.outputs).to.deep.equal(outputs);
    expect(result!.node).to.equal(node.address);
    expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
    expect(await f.tasks.creditsOf(node.address)).to.equal(nodeFee);
    expect(await f.tasks.creditsOf(f.modelOwner.address)).to.equal(royalty);
    expect(await f.tasks.protocolFeesOf(node.address)).to.equal(protocolFee);
    // No collateral was locked for the task, so none is left to release.
    expect(await f.tasks.releasableCollateralOf(node.address)).to.equal(0n);
    const stakeAfter = await f.staking.nodeInfo(node.address);
    expect(stakeAfter.locked).to.equal(stakeBefore.locked);
    expect(stakeAfter.bonded).to.equal(stakeBefore.bonded);
  });

  it("has no claim: claimTask of a TEE task reverts TaskRegistryWrongMode", async function () {
    const f = await loadFixture(modesFixture);
    const s = await openTee(f);
    await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
      .withArgs(s.taskId, VERIFICATION_MODE_TEE);
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
  });

  it("the first valid signature settles: a second node's result for the same task reverts TaskRegistryWrongStatus", async function () {
    const f = await loadFixture(modesFixture);
    const [a, b] = f.nodes;
    const keyA = await registerEnclaveKey(f, a);
    const keyB = await registerEnclaveKey(f, b);
    const s = await openTee(f);
    const outputs = [tinyOutputWord(VALUES)];
    const sigA = await signTeeResult(f, keyA, s, a.address, outputs);
    const sigB = await signTeeResult(f, keyB, s, b.address, outputs);
    await expect(f.tasks.connect(b).submitResultTee(s.taskId, s.task, outputs, sigB))
      .to.emit(f.tasks, "TaskVerified")
      .withArgs(s.taskId, b.address, outputs, anyValue, anyValue, anyValue);
    await expect(f.tasks.connect(a).submitResultTee(s.taskId, s.task, outputs, sigA))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
      .withArgs(s.taskId, Status.Verified);
    expect((await readVerifiedResult(f.tasks, s.taskId))!.node).to.equal(b.address);
  });

  it("refuses a caller that is not an eligible inference node", async function () {
    const f = await loadFixture(modesFixture);
    const s = await openTee(f);
    const outputs = [tinyOutputWord(VALUES)];
    for (const caller of [f.stranger, f.verifiers[0]]) {
      await expect(f.tasks.connect(caller).submitResultTee(s.taskId, s.task, outputs, "0x"))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNodeNotEligible")
        .withArgs(caller.address);
    }
  });

  it("refuses a result at or after the deadline, and the requester is refunded without any slash", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const s = await openTee(f, { deadlineIn: 600 });
    const outputs = [tinyOutputWord(VALUES)];
    const signature = await signTeeResult(f, key, s, node.address, outputs);
    await time.setNextBlockTimestamp(BigInt(s.task.deadline));
    await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryDeadlinePassed")
      .withArgs(s.taskId, s.task.deadline, s.task.deadline);
    await time.increaseTo(BigInt(s.task.deadline) + 1n);
    const requesterBefore = await f.token.balanceOf(f.requester.address);
    const tx = f.tasks.connect(f.stranger).expire(s.taskId, s.task);
    await expect(tx).to.emit(f.tasks, "TaskExpired").withArgs(s.taskId, f.requester.address, MODEL_FEE);
    await expect(tx).to.not.emit(f.staking, "NodeSlashed");
    expect(await f.token.balanceOf(f.requester.address)).to.equal(requesterBefore + MODEL_FEE);
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Expired);
    expect((await f.staking.nodeInfo(node.address)).bonded).to.equal(NODE_STAKE);
  });

  it("refuses a wrong task struct, malformed outputs and outputs outside the field", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const s = await openTee(f);
    const outputs = [tinyOutputWord(VALUES)];
    const signature = await signTeeResult(f, key, s, node.address, outputs);
    await expect(
      f.tasks
        .connect(node)
        .submitResultTee(s.taskId, { ...s.task, fee: BigInt(s.task.fee) + 1n }, outputs, signature),
    )
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryTaskMismatch")
      .withArgs(s.taskId);
    await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, [...outputs, 1n], signature))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidOutputs")
      .withArgs(s.taskId, 2n, 1n);
    const field = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
    await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, [field], signature))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistrySignalOutOfField")
      .withArgs(0n, field);
    await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature)).to.emit(
      f.tasks,
      "TaskVerified",
    );
  });

  it("the settlement module refuses to be called directly", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const s = await openTee(f);
    const outputs = [tinyOutputWord(VALUES)];
    const signature = await signTeeResult(f, key, s, node.address, outputs);
    const module = await ethers.getContractAt("TeeSettlement", await f.tasks.teeSettlement());
    await expect(
      module.connect(node).submitResultTee(s.taskId, s.task, outputs, signature),
    ).to.be.revertedWithCustomError(module, "SettlementModuleNotDelegated");
  });

  describe("rejects with TaskRegistryEnclaveKeyRejected", function () {
    it("a revoked key", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const key = await registerEnclaveKey(f, node);
      await f.enclaves.connect(node).revokeKey(key.address);
      const { s, tx } = await submitSigned(f, node, key);
      await expect(tx)
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
        .withArgs(s.taskId, key.address, Standing.Revoked);
    });

    it("an expired key", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const key = await registerEnclaveKey(f, node, { expiresIn: 2 * ENCLAVE_ACTIVATION_DELAY });
      await time.increase(ENCLAVE_ACTIVATION_DELAY);
      const { s, tx } = await submitSigned(f, node, key);
      await expect(tx)
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
        .withArgs(s.taskId, key.address, Standing.Expired);
    });

    it("an unknown key", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const key = ethers.Wallet.createRandom();
      const { s, tx } = await submitSigned(f, node, key);
      await expect(tx)
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
        .withArgs(s.taskId, key.address, Standing.Unknown);
    });

    it("another node's Active key", async function () {
      const f = await loadFixture(modesFixture);
      const [node, other] = f.nodes;
      const key = await registerEnclaveKey(f, other);
      const { s, tx } = await submitSigned(f, node, key);
      await expect(tx)
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
        .withArgs(s.taskId, key.address, Standing.Active);
    });

    it("a key whose measurement governance withdrew", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const key = await registerEnclaveKey(f, node);
      await f.enclaves.connect(f.governance).withdrawMeasurement(DEV_MEASUREMENT);
      const { s, tx } = await submitSigned(f, node, key);
      await expect(tx)
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
        .withArgs(s.taskId, key.address, Standing.MeasurementWithdrawn);
    });

    it("a key still in its activation delay, and a key under challenge", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const pending = await registerEnclaveKey(f, node, { activate: false });
      const first = await submitSigned(f, node, pending);
      await expect(first.tx)
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
        .withArgs(first.s.taskId, pending.address, Standing.Pending);
      await time.increase(ENCLAVE_ACTIVATION_DELAY);
      await f.enclaves.connect(f.verifiers[0]).challengeKey(pending.address, "suspicious");
      const second = await submitSigned(f, f.nodes[0], pending);
      await expect(second.tx)
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
        .withArgs(second.s.taskId, pending.address, Standing.Challenged);
    });
  });

  it("rejects a signature over other outputs, and a valid signature replayed on another task", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const s = await openTee(f);
    const outputs = [tinyOutputWord(VALUES)];
    const signature = await signTeeResult(f, key, s, node.address, outputs);
    // Tampered outputs recover another (unknown) signer.
    await expect(
      f.tasks.connect(node).submitResultTee(s.taskId, s.task, [outputs[0] + 1n], signature),
    ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
    const t = await openTee(f);
    await expect(
      f.tasks.connect(node).submitResultTee(t.taskId, t.task, outputs, signature),
    ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
    await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature)).to.emit(
      f.tasks,
      "TaskVerified",
    );
  });

  it("rejects the TEE path for an optimistic task, open or claimed", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const o = await f.submit(VALUES, { modelId: f.voteModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
    const outputs = [tinyOutputWord(VALUES)];
    const sig = await signTeeResult(f, key, o, node.address, outputs);
    await expect(f.tasks.connect(node).submitResultTee(o.taskId, o.task, outputs, sig))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
      .withArgs(o.taskId, VERIFICATION_MODE_OPTIMISTIC);
    await f.tasks.connect(node).claimTask(o.taskId, o.task);
    await expect(f.tasks.connect(node).submitResultTee(o.taskId, o.task, outputs, sig))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
      .withArgs(o.taskId, Status.Claimed);
  });

  it("a copy of another node's enclave signature is refused: the signature binds the node that signed", async function () {
    const f = await loadFixture(modesFixture);
    const [node, copier] = f.nodes;
    const key = await registerEnclaveKey(f, node);
    await registerEnclaveKey(f, copier);
    const s = await openTee(f);
    const outputs = [tinyOutputWord(VALUES)];
    const sig = await signTeeResult(f, key, s, node.address, outputs);
    // Over the copier's digest the signature recovers some unknown address, not the node's key.
    await expect(f.tasks.connect(copier).submitResultTee(s.taskId, s.task, outputs, sig))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
      .withArgs(s.taskId, anyValue, Standing.Unknown);
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, sig))
      .to.emit(f.tasks, "TaskVerified")
      .withArgs(s.taskId, node.address, outputs, anyValue, anyValue, anyValue);
  });

  it("a forged enclave caught by challenge: the node is slashed, the challenger nets less than the node loses", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const challenger = f.verifiers[0];
    const key = await registerEnclaveKey(f, node);
    await (
      await submitSigned(f, node, key)
    ).tx;
    const wealth = async (a: string) => (await f.token.balanceOf(a)) + (await f.staking.nodeInfo(a)).bonded;
    const nodeBefore = await wealth(node.address);
    const challengerBefore = await wealth(challenger.address);
    await f.enclaves.connect(challenger).challengeKey(key.address, "forged document");
    await f.enclaves.connect(f.governance).resolveChallenge(key.address, false);
    const fraudSlash = await f.enclaves.fraudSlash();
    expect(await wealth(node.address)).to.equal(nodeBefore - fraudSlash);
    expect((await f.staking.nodeInfo(node.address)).bonded).to.equal(NODE_STAKE - fraudSlash);
    const gain = (await wealth(challenger.address)) - challengerBefore;
    expect(gain).to.equal(fraudSlash / 2n);
    expect(gain < fraudSlash).to.equal(true);
    // The revoked key signs nothing more.
    const { s, tx } = await submitSigned(f, node, key);
    await expect(tx)
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected")
      .withArgs(s.taskId, key.address, Standing.Revoked);
  });
});
