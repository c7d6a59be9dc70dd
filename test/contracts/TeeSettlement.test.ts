import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { expect } from "chai";
import { ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  CLAIM_COLLATERAL,
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

const Standing = {
  Unknown: 0n,
  Pending: 1n,
  Active: 2n,
  Challenged: 3n,
  Revoked: 4n,
  Expired: 5n,
  MeasurementWithdrawn: 6n,
};
const VALUES = [1n, 2n, 3n, 4n];
const BPS = 10_000n;

type Fixture = Awaited<ReturnType<typeof modesFixture>>;

/** A TEE task on the model without a circuit (its strongest mode is TEE), claimed by `node`. */
async function claimedTee(f: Fixture, node: HardhatEthersSigner) {
  const s = await f.submit(VALUES, { modelId: f.voteModelId });
  expect(s.task.mode).to.equal(BigInt(VERIFICATION_MODE_TEE));
  await f.tasks.connect(node).claimTask(s.taskId, s.task);
  return s;
}

async function submitSigned(f: Fixture, node: HardhatEthersSigner, key: EnclaveKeyWallet) {
  const s = await claimedTee(f, node);
  const outputs = [tinyOutputWord(VALUES)];
  const signature = await signTeeResult(f, key, s, node.address, outputs);
  return { s, outputs, tx: f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature) };
}

describe("TEE settlement", function () {
  it("settles at once with an Active key of the claiming node, and splits the fee", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const { s, outputs, tx } = await submitSigned(f, node, key);
    const protocolFee = (MODEL_FEE * 1000n) / BPS;
    const royalty = (MODEL_FEE * 1000n) / BPS;
    const nodeFee = MODEL_FEE - protocolFee - royalty;
    await expect(tx).to.emit(f.tasks, "TaskEnclaveSigned").withArgs(s.taskId, key.address);
    await expect(tx)
      .to.emit(f.tasks, "TaskVerified")
      .withArgs(s.taskId, node.address, outputs, nodeFee, royalty, protocolFee);
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(3n);
    expect((await f.tasks.resultOf(s.taskId)).outputs).to.deep.equal(outputs);
    expect(await f.tasks.creditsOf(node.address)).to.equal(nodeFee);
    expect(await f.tasks.creditsOf(f.modelOwner.address)).to.equal(royalty);
    expect(await f.tasks.protocolFeesOf(node.address)).to.equal(protocolFee);
    expect(await f.tasks.releasableCollateralOf(node.address)).to.equal(CLAIM_COLLATERAL);
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
    const s = await claimedTee(f, node);
    const outputs = [tinyOutputWord(VALUES)];
    const signature = await signTeeResult(f, key, s, node.address, outputs);
    // Tampered outputs recover another (unknown) signer.
    await expect(
      f.tasks.connect(node).submitResultTee(s.taskId, s.task, [outputs[0] + 1n], signature),
    ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
    const t = await claimedTee(f, node);
    await expect(
      f.tasks.connect(node).submitResultTee(t.taskId, t.task, outputs, signature),
    ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryEnclaveKeyRejected");
    await expect(f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature)).to.emit(
      f.tasks,
      "TaskVerified",
    );
  });

  it("rejects the TEE path for an optimistic task, and for a caller that did not claim", async function () {
    const f = await loadFixture(modesFixture);
    const node = f.nodes[0];
    const key = await registerEnclaveKey(f, node);
    const o = await f.submit(VALUES, { modelId: f.voteModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
    await f.tasks.connect(node).claimTask(o.taskId, o.task);
    const outputs = [tinyOutputWord(VALUES)];
    const sig = await signTeeResult(f, key, o, node.address, outputs);
    await expect(f.tasks.connect(node).submitResultTee(o.taskId, o.task, outputs, sig))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
      .withArgs(o.taskId, VERIFICATION_MODE_OPTIMISTIC);
    const s = await claimedTee(f, node);
    const sig2 = await signTeeResult(f, key, s, node.address, outputs);
    await expect(f.tasks.connect(f.nodes[1]).submitResultTee(s.taskId, s.task, outputs, sig2))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotClaimer")
      .withArgs(s.taskId, f.nodes[1].address, node.address);
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
