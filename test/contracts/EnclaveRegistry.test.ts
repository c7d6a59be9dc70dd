import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { expect } from "chai";
import { ethers } from "hardhat";
import {
  DEV_MEASUREMENT,
  ENCLAVE_ACTIVATION_DELAY,
  NODE_STAKE,
  modesFixture,
  registerEnclaveKey,
  signKeyRegistration,
} from "../helpers/market-fixture";

const Standing = {
  Unknown: 0n,
  Pending: 1n,
  Active: 2n,
  Challenged: 3n,
  Revoked: 4n,
  Expired: 5n,
  MeasurementWithdrawn: 6n,
};
const BOND = ethers.parseEther("100");
const FRAUD_SLASH = ethers.parseEther("1000");
const BPS = 10_000n;
const BENEFICIARY_BPS = 5000n;
const MAX_KEY_LIFETIME = 30 * 24 * 3600;

describe("EnclaveRegistry", function () {
  describe("measurements", function () {
    it("only governance approves and withdraws a measurement", async function () {
      const f = await loadFixture(modesFixture);
      const m = ethers.id("another measurement");
      await expect(f.enclaves.connect(f.stranger).approveMeasurement(m, "x"))
        .to.be.revertedWithCustomError(f.enclaves, "OwnableUnauthorizedAccount")
        .withArgs(f.stranger.address);
      await expect(f.enclaves.connect(f.governance).approveMeasurement(m, "x"))
        .to.emit(f.enclaves, "MeasurementApproved")
        .withArgs(m, "x");
      expect(await f.enclaves.isMeasurementApproved(m)).to.equal(true);
      await expect(f.enclaves.connect(f.stranger).withdrawMeasurement(m)).to.be.revertedWithCustomError(
        f.enclaves,
        "OwnableUnauthorizedAccount",
      );
      await f.enclaves.connect(f.governance).withdrawMeasurement(m);
      expect(await f.enclaves.isMeasurementApproved(m)).to.equal(false);
      await expect(f.enclaves.connect(f.governance).withdrawMeasurement(m))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryMeasurementNotApproved")
        .withArgs(m);
    });
  });

  describe("registerKey", function () {
    it("registers a key that proves possession, pending until the activation delay has passed", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const { key, args } = await signKeyRegistration(f, node.address);
      await expect(f.enclaves.connect(node).registerKey(...args)).to.emit(f.enclaves, "EnclaveKeyRegistered");
      const info = await f.enclaves.keyInfo(key.address);
      expect(info.node).to.equal(node.address);
      expect(info.measurement).to.equal(DEV_MEASUREMENT);
      expect(info.documentHash).to.equal(ethers.keccak256(args[3]));
      expect(info.activeFrom).to.equal(BigInt(await time.latest()) + BigInt(ENCLAVE_ACTIVATION_DELAY));
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Pending);
      await time.increase(ENCLAVE_ACTIVATION_DELAY);
      const [owner, standing] = await f.enclaves.keyStatus(key.address);
      expect(owner).to.equal(node.address);
      expect(standing).to.equal(Standing.Active);
    });

    it("reverts for a measurement governance has not approved", async function () {
      const f = await loadFixture(modesFixture);
      const m = ethers.id("unapproved");
      const { args } = await signKeyRegistration(f, f.nodes[0].address, { measurement: m });
      await expect(f.enclaves.connect(f.nodes[0]).registerKey(...args))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryMeasurementNotApproved")
        .withArgs(m);
    });

    it("reverts for a bad proof of possession (signed by another key)", async function () {
      const f = await loadFixture(modesFixture);
      const other = ethers.Wallet.createRandom();
      const { key, args } = await signKeyRegistration(f, f.nodes[0].address, { signer: other });
      await expect(f.enclaves.connect(f.nodes[0]).registerKey(...args))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryBadKeySignature")
        .withArgs(key.address, other.address);
      const garbage = [...args] as unknown as Parameters<typeof f.enclaves.registerKey>;
      garbage[4] = "0x1234";
      await expect(f.enclaves.connect(f.nodes[0]).registerKey(...garbage))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryBadKeySignature")
        .withArgs(key.address, ethers.ZeroAddress);
    });

    it("reverts when a node registers another node's key (its proof names the other node), or a taken key", async function () {
      const f = await loadFixture(modesFixture);
      const [owner, thief] = f.nodes;
      const { key, args } = await signKeyRegistration(f, owner.address);
      await expect(f.enclaves.connect(thief).registerKey(...args)).to.be.revertedWithCustomError(
        f.enclaves,
        "EnclaveRegistryBadKeySignature",
      );
      await f.enclaves.connect(owner).registerKey(...args);
      // Even with a proof made out to the thief, a key belongs to one node forever.
      const { args: again } = await signKeyRegistration(f, thief.address, { key });
      await expect(f.enclaves.connect(thief).registerKey(...again))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryKeyExists")
        .withArgs(key.address);
    });

    it("reverts for an expiry beyond the longest lifetime or within the activation delay", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      for (const expiresIn of [MAX_KEY_LIFETIME + 1, ENCLAVE_ACTIVATION_DELAY]) {
        const { args } = await signKeyRegistration(f, node.address, { expiresIn });
        await expect(f.enclaves.connect(node).registerKey(...args)).to.be.revertedWithCustomError(
          f.enclaves,
          "EnclaveRegistryInvalidExpiry",
        );
      }
      const { args } = await signKeyRegistration(f, node.address, { expiresIn: MAX_KEY_LIFETIME });
      await expect(f.enclaves.connect(node).registerKey(...args)).to.emit(f.enclaves, "EnclaveKeyRegistered");
    });

    it("reverts for an unregistered caller and an empty document", async function () {
      const f = await loadFixture(modesFixture);
      const { args } = await signKeyRegistration(f, f.stranger.address);
      await expect(f.enclaves.connect(f.stranger).registerKey(...args))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryNotInferenceNode")
        .withArgs(f.stranger.address);
      const { args: empty } = await signKeyRegistration(f, f.nodes[0].address, {
        document: new Uint8Array(),
      });
      await expect(f.enclaves.connect(f.nodes[0]).registerKey(...empty)).to.be.revertedWithCustomError(
        f.enclaves,
        "EnclaveRegistryEmptyDocument",
      );
    });
  });

  describe("keyStatus", function () {
    it("follows expiry, measurement withdrawal and revocation", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const key = await registerEnclaveKey(f, node, { expiresIn: 2 * ENCLAVE_ACTIVATION_DELAY });
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Active);
      await f.enclaves.connect(f.governance).withdrawMeasurement(DEV_MEASUREMENT);
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.MeasurementWithdrawn);
      await f.enclaves.connect(f.governance).approveMeasurement(DEV_MEASUREMENT, "again");
      await time.increase(ENCLAVE_ACTIVATION_DELAY);
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Expired);
      expect((await f.enclaves.keyStatus(ethers.Wallet.createRandom().address)).standing).to.equal(
        Standing.Unknown,
      );
    });

    it("revokes for the node or governance only, for good", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const key = await registerEnclaveKey(f, node);
      await expect(f.enclaves.connect(f.nodes[1]).revokeKey(key.address))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryNotKeyOwner")
        .withArgs(key.address, f.nodes[1].address);
      await expect(f.enclaves.connect(f.governance).revokeKey(key.address))
        .to.emit(f.enclaves, "EnclaveKeyRevoked")
        .withArgs(key.address, f.governance.address);
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Revoked);
      await expect(f.enclaves.connect(node).revokeKey(ethers.ZeroAddress))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryUnknownKey")
        .withArgs(ethers.ZeroAddress);
    });
  });

  describe("challenges", function () {
    it("a valid document: the key is reinstated and the bond compensates the node", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const challenger = f.verifiers[0];
      const key = await registerEnclaveKey(f, node);
      const challengerBefore = await f.token.balanceOf(challenger.address);
      await expect(f.enclaves.connect(challenger).challengeKey(key.address, "PCR0 mismatch"))
        .to.emit(f.enclaves, "EnclaveKeyChallenged")
        .withArgs(key.address, challenger.address, BOND, "PCR0 mismatch");
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Challenged);
      await expect(f.enclaves.connect(f.verifiers[1]).challengeKey(key.address, "again"))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryWrongStanding")
        .withArgs(key.address, Standing.Challenged);
      await expect(
        f.enclaves.connect(f.stranger).resolveChallenge(key.address, true),
      ).to.be.revertedWithCustomError(f.enclaves, "OwnableUnauthorizedAccount");
      const nodeBefore = await f.token.balanceOf(node.address);
      await expect(f.enclaves.connect(f.governance).resolveChallenge(key.address, true))
        .to.emit(f.enclaves, "EnclaveKeyChallengeResolved")
        .withArgs(key.address, true, 0);
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Active);
      expect(await f.token.balanceOf(node.address)).to.equal(nodeBefore + BOND);
      expect(await f.token.balanceOf(challenger.address)).to.equal(challengerBefore - BOND);
      expect((await f.staking.nodeInfo(node.address)).bonded).to.equal(NODE_STAKE);
      expect(await f.token.balanceOf(await f.enclaves.getAddress())).to.equal(0n);
      await expect(f.enclaves.connect(f.governance).resolveChallenge(key.address, true))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryNoChallenge")
        .withArgs(key.address);
    });

    it("a forged document: key revoked, node slashed, challenger gets its bond back and the beneficiary share", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const challenger = f.verifiers[0];
      const key = await registerEnclaveKey(f, node);
      const challengerBefore = await f.token.balanceOf(challenger.address);
      const treasuryBefore = await f.token.balanceOf(f.treasury.address);
      await f.enclaves.connect(challenger).challengeKey(key.address, "forged");
      const share = (FRAUD_SLASH * BENEFICIARY_BPS) / BPS;
      await expect(f.enclaves.connect(f.governance).resolveChallenge(key.address, false))
        .to.emit(f.enclaves, "EnclaveKeyChallengeResolved")
        .withArgs(key.address, false, FRAUD_SLASH);
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Revoked);
      expect((await f.staking.nodeInfo(node.address)).bonded).to.equal(NODE_STAKE - FRAUD_SLASH);
      expect(await f.token.balanceOf(challenger.address)).to.equal(challengerBefore + share);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryBefore + FRAUD_SLASH - share);
      // A challenger colluding with the node gets back less than the node loses.
      expect(share < FRAUD_SLASH).to.equal(true);
      // Judged once: the revoked key cannot be challenged (and its node slashed) again.
      await expect(f.enclaves.connect(f.verifiers[1]).challengeKey(key.address, "again"))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryWrongStanding")
        .withArgs(key.address, Standing.Revoked);
    });

    it("a node cannot escape the fraud slash by revoking its key (or letting it expire) first", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const key = await registerEnclaveKey(f, node);
      await f.enclaves.connect(node).revokeKey(key.address);
      await f.enclaves.connect(f.verifiers[0]).challengeKey(key.address, "forged, revoked to dodge");
      expect((await f.enclaves.keyStatus(key.address)).standing).to.equal(Standing.Revoked);
      await f.enclaves.connect(f.governance).resolveChallenge(key.address, false);
      expect((await f.staking.nodeInfo(node.address)).bonded).to.equal(NODE_STAKE - FRAUD_SLASH);

      const expiring = await registerEnclaveKey(f, f.nodes[1], { expiresIn: 2 * ENCLAVE_ACTIVATION_DELAY });
      await time.increase(ENCLAVE_ACTIVATION_DELAY);
      expect((await f.enclaves.keyStatus(expiring.address)).standing).to.equal(Standing.Expired);
      await f.enclaves.connect(f.verifiers[0]).challengeKey(expiring.address, "forged, expired");
      await f.enclaves.connect(f.governance).resolveChallenge(expiring.address, false);
      expect((await f.staking.nodeInfo(f.nodes[1].address)).bonded).to.equal(NODE_STAKE - FRAUD_SLASH);
    });

    it("refuses a challenge of an unknown key", async function () {
      const f = await loadFixture(modesFixture);
      const unknown = ethers.Wallet.createRandom().address;
      await expect(f.enclaves.connect(f.verifiers[0]).challengeKey(unknown, "?"))
        .to.be.revertedWithCustomError(f.enclaves, "EnclaveRegistryWrongStanding")
        .withArgs(unknown, Standing.Unknown);
    });
  });
});
