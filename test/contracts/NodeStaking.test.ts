import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { ContractTransactionResponse } from "ethers";
import { NodeStaking__factory } from "../../typechain-types";
import type { NodeStaking } from "../../typechain-types";
import {
  MIN_INFERENCE,
  MIN_VERIFICATION,
  Role,
  ROLES,
  SLASH_SHARE_BPS,
  UNBONDING_DELAY,
  economyFixture,
  signPermit,
  stakedNodeFixture,
} from "../helpers/economy-fixture";
import { recordGas } from "../helpers/gas-snapshot";

const opg = (amount: string) => ethers.parseEther(amount);
const REASON = ethers.id("wrong-output");
const MAX_UNBONDING_DELAY = 90n * 24n * 3600n;

type Fixture = Awaited<ReturnType<typeof economyFixture>>;

/** Every balance and every node record the tests can observe. */
async function observableState(f: Fixture) {
  const accounts = [
    f.stakingAddress,
    f.treasury.address,
    f.beneficiary.address,
    f.stranger.address,
    f.manager.address,
    f.slasher.address,
    ...f.nodes.map((node) => node.address),
  ];
  const balances = await Promise.all(accounts.map((account) => f.token.balanceOf(account)));
  const infos = await Promise.all(
    f.nodes.map(async (node) => Array.from(await f.staking.nodeInfo(node.address))),
  );
  const counts = [await f.staking.nodeCount(Role.Inference), await f.staking.nodeCount(Role.Verification)];
  return { balances, infos, counts };
}

/** Run a failing call (already wrapped in its revert assertion) and check that nothing moved. */
async function expectNothingMoved(f: Fixture, failingCall: () => Promise<unknown>) {
  const before = await observableState(f);
  await failingCall();
  expect(await observableState(f)).to.deep.equal(before);
}

/** Roles named by the NodeJailed events of a transaction. */
async function jailedRoles(staking: NodeStaking, tx: ContractTransactionResponse) {
  const receipt = await tx.wait();
  const roles: bigint[] = [];
  for (const log of receipt!.logs) {
    const parsed = staking.interface.parseLog(log);
    if (parsed?.name === "NodeJailed") roles.push(parsed.args.role);
  }
  return roles;
}

describe("NodeStaking", function () {
  describe("deployment", function () {
    it("stores the token, owner, treasury and parameters", async function () {
      const { staking, token, treasury, governance } = await loadFixture(economyFixture);
      expect(await staking.token()).to.equal(await token.getAddress());
      expect(await staking.owner()).to.equal(governance.address);
      expect(await staking.treasury()).to.equal(treasury.address);
      expect(await staking.minStake(Role.Inference)).to.equal(MIN_INFERENCE);
      expect(await staking.minStake(Role.Verification)).to.equal(MIN_VERIFICATION);
      expect(await staking.unbondingDelay()).to.equal(UNBONDING_DELAY);
      expect(await staking.slashBeneficiaryShareBps()).to.equal(SLASH_SHARE_BPS);
      expect(await staking.MAX_ENDPOINT_LENGTH()).to.equal(256n);
      expect(await staking.MAX_UNBONDING_DELAY()).to.equal(MAX_UNBONDING_DELAY);
    });

    it("reverts with NodeStakingZeroAddress for a zero token or treasury", async function () {
      const { deployer, treasury, token } = await loadFixture(economyFixture);
      const factory = new NodeStaking__factory(deployer);
      const tokenAddress = await token.getAddress();
      await expect(factory.deploy(ethers.ZeroAddress, deployer.address, treasury.address, 1n, 1n, 1n, 0))
        .to.be.revertedWithCustomError(factory, "NodeStakingZeroAddress")
        .withArgs();
      await expect(factory.deploy(tokenAddress, deployer.address, ethers.ZeroAddress, 1n, 1n, 1n, 0))
        .to.be.revertedWithCustomError(factory, "NodeStakingZeroAddress")
        .withArgs();
    });

    it("reverts for an out-of-bounds unbonding delay or slash share", async function () {
      const { deployer, treasury, token } = await loadFixture(economyFixture);
      const factory = new NodeStaking__factory(deployer);
      const tokenAddress = await token.getAddress();
      await expect(
        factory.deploy(tokenAddress, deployer.address, treasury.address, 1n, 1n, MAX_UNBONDING_DELAY + 1n, 0),
      )
        .to.be.revertedWithCustomError(factory, "NodeStakingInvalidUnbondingDelay")
        .withArgs(MAX_UNBONDING_DELAY + 1n, MAX_UNBONDING_DELAY);
      await expect(factory.deploy(tokenAddress, deployer.address, treasury.address, 1n, 1n, 1n, 10_001))
        .to.be.revertedWithCustomError(factory, "NodeStakingInvalidBps")
        .withArgs(10_001);
    });
  });

  describe("register", function () {
    it("records the node, its roles and endpoint, and lists it per role", async function () {
      const { staking, nodes } = await loadFixture(economyFixture);
      const [a, b] = nodes;
      await expect(staking.connect(a).register(ROLES.both, "https://a.example"))
        .to.emit(staking, "NodeRegistered")
        .withArgs(a.address, ROLES.both, "https://a.example");
      await staking.connect(b).register(ROLES.verification, "");

      const info = await staking.nodeInfo(a.address);
      expect(info.registered).to.equal(true);
      expect(info.roles).to.equal(BigInt(ROLES.both));
      expect(info.endpoint).to.equal("https://a.example");
      expect(info.bonded).to.equal(0n);
      expect(await staking.nodeCount(Role.Inference)).to.equal(1n);
      expect(await staking.nodeCount(Role.Verification)).to.equal(2n);
      expect(await staking.nodesByRole(Role.Inference, 0, 10)).to.deep.equal([a.address]);
      expect(await staking.nodesByRole(Role.Verification, 0, 10)).to.deep.equal([a.address, b.address]);
    });

    it("accepts an endpoint of exactly MAX_ENDPOINT_LENGTH bytes", async function () {
      const { staking, nodes } = await loadFixture(economyFixture);
      await staking.connect(nodes[0]).register(ROLES.inference, "x".repeat(256));
      expect((await staking.nodeInfo(nodes[0].address)).endpoint).to.have.length(256);
    });

    it("reverts with NodeStakingAlreadyRegistered on a second registration", async function () {
      const f = await loadFixture(economyFixture);
      const [node] = f.nodes;
      await f.staking.connect(node).register(ROLES.inference, "https://a.example");
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(node).register(ROLES.both, "https://b.example"))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingAlreadyRegistered")
          .withArgs(node.address),
      );
      expect((await f.staking.nodeInfo(node.address)).endpoint).to.equal("https://a.example");
    });

    for (const roles of [0, 4, 5, 0xff]) {
      it(`reverts with NodeStakingUnknownRoles for roles 0x${roles.toString(16)}`, async function () {
        const f = await loadFixture(economyFixture);
        await expectNothingMoved(f, () =>
          expect(f.staking.connect(f.nodes[0]).register(roles, "https://a.example"))
            .to.be.revertedWithCustomError(f.staking, "NodeStakingUnknownRoles")
            .withArgs(roles),
        );
        expect((await f.staking.nodeInfo(f.nodes[0].address)).registered).to.equal(false);
      });
    }

    it("reverts with NodeStakingEndpointTooLong above MAX_ENDPOINT_LENGTH bytes", async function () {
      const f = await loadFixture(economyFixture);
      // Multi-byte characters: the limit is in bytes, not characters (86 x 3 bytes = 258).
      for (const endpoint of ["x".repeat(257), "\u20ac".repeat(86)]) {
        const length = ethers.toUtf8Bytes(endpoint).length;
        await expectNothingMoved(f, () =>
          expect(f.staking.connect(f.nodes[0]).register(ROLES.both, endpoint))
            .to.be.revertedWithCustomError(f.staking, "NodeStakingEndpointTooLong")
            .withArgs(length, 256),
        );
      }
    });
  });

  describe("updateNode", function () {
    it("changes roles and endpoint and moves the node between role lists", async function () {
      const { staking, node } = await loadFixture(stakedNodeFixture);
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(true);
      await expect(staking.connect(node).updateNode(ROLES.verification, "https://new.example"))
        .to.emit(staking, "NodeUpdated")
        .withArgs(node.address, ROLES.verification, "https://new.example");
      expect(await staking.nodeCount(Role.Inference)).to.equal(0n);
      expect(await staking.nodesByRole(Role.Verification, 0, 10)).to.deep.equal([node.address]);
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(false);
      expect(await staking.isEligible(node.address, Role.Verification)).to.equal(true);

      await staking.connect(node).updateNode(ROLES.inference, "https://new.example");
      expect(await staking.nodesByRole(Role.Inference, 0, 10)).to.deep.equal([node.address]);
      expect(await staking.nodeCount(Role.Verification)).to.equal(0n);
      const info = await staking.nodeInfo(node.address);
      expect(info.roles).to.equal(BigInt(ROLES.inference));
      expect(info.bonded).to.equal(opg("2000"));
    });

    it("reverts with NodeStakingNotRegistered for an unregistered caller", async function () {
      const f = await loadFixture(economyFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.stranger).updateNode(ROLES.both, ""))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNotRegistered")
          .withArgs(f.stranger.address),
      );
    });

    it("reverts with NodeStakingUnknownRoles and NodeStakingEndpointTooLong", async function () {
      const f = await loadFixture(stakedNodeFixture);
      for (const roles of [0, 4, 0xff]) {
        await expectNothingMoved(f, () =>
          expect(f.staking.connect(f.node).updateNode(roles, ""))
            .to.be.revertedWithCustomError(f.staking, "NodeStakingUnknownRoles")
            .withArgs(roles),
        );
      }
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).updateNode(ROLES.both, "y".repeat(300)))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingEndpointTooLong")
          .withArgs(300, 256),
      );
    });
  });

  describe("stake", function () {
    it("pulls OPG into bonded stake and makes the node eligible at the minimum", async function () {
      const { staking, stakingAddress, token, nodes } = await loadFixture(economyFixture);
      const [node] = nodes;
      await staking.connect(node).register(ROLES.both, "");
      await expect(staking.connect(node).stake(MIN_VERIFICATION))
        .to.emit(staking, "Staked")
        .withArgs(node.address, MIN_VERIFICATION);
      expect(await staking.isEligible(node.address, Role.Verification)).to.equal(true);
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(false);

      const topUp = MIN_INFERENCE - MIN_VERIFICATION;
      await expect(staking.connect(node).stake(topUp)).to.changeTokenBalances(
        token,
        [node, stakingAddress],
        [-topUp, topUp],
      );
      expect((await staking.nodeInfo(node.address)).bonded).to.equal(MIN_INFERENCE);
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(true);
    });

    it("reverts with NodeStakingZeroAmount for zero", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).stake(0))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingZeroAmount")
          .withArgs(),
      );
    });

    it("reverts with NodeStakingNotRegistered for an unregistered caller", async function () {
      const f = await loadFixture(economyFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.nodes[1]).stake(opg("1")))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNotRegistered")
          .withArgs(f.nodes[1].address),
      );
    });

    it("reverts with the token's ERC20InsufficientAllowance without an approval", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await f.token.connect(f.node).approve(f.stakingAddress, 0);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).stake(opg("1")))
          .to.be.revertedWithCustomError(f.token, "ERC20InsufficientAllowance")
          .withArgs(f.stakingAddress, 0, opg("1")),
      );
    });

    it("reverts with the token's ERC20InsufficientBalance beyond the node's balance", async function () {
      const f = await loadFixture(stakedNodeFixture);
      const balance = await f.token.balanceOf(f.node.address);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).stake(balance + 1n))
          .to.be.revertedWithCustomError(f.token, "ERC20InsufficientBalance")
          .withArgs(f.node.address, balance, balance + 1n),
      );
    });
    // NodeStakingAmountTooLarge guards the 128-bit accounting; OPG's fixed supply (1e27 < 2**128) cannot reach it.
  });

  describe("stakeWithPermit", function () {
    async function permitFixture() {
      const f = await stakedNodeFixture();
      await f.token.connect(f.node).approve(f.stakingAddress, 0);
      const deadline = BigInt(await time.latest()) + 3600n;
      return { ...f, deadline };
    }

    it("stakes with a signed EIP-2612 permit and no prior approval", async function () {
      const { staking, stakingAddress, token, node, deadline } = await loadFixture(permitFixture);
      const amount = opg("300");
      const { v, r, s } = await signPermit(token, node, stakingAddress, amount, deadline);
      const tx = await staking.connect(node).stakeWithPermit(amount, deadline, v, r, s);
      await expect(tx).to.emit(staking, "Staked").withArgs(node.address, amount);
      await expect(tx).to.changeTokenBalances(token, [node, stakingAddress], [-amount, amount]);
      expect((await staking.nodeInfo(node.address)).bonded).to.equal(opg("2300"));
      expect(await token.allowance(node.address, stakingAddress)).to.equal(0n);
      expect(await token.nonces(node.address)).to.equal(1n);
    });

    it("still stakes when the permit was front-run and already used", async function () {
      const { staking, stakingAddress, token, node, stranger, deadline } = await loadFixture(permitFixture);
      const amount = opg("300");
      const { v, r, s } = await signPermit(token, node, stakingAddress, amount, deadline);
      // Someone watching the mempool submits the permit first: the allowance exists, the nonce is spent.
      await token.connect(stranger).permit(node.address, stakingAddress, amount, deadline, v, r, s);
      await expect(staking.connect(node).stakeWithPermit(amount, deadline, v, r, s))
        .to.emit(staking, "Staked")
        .withArgs(node.address, amount);
      expect((await staking.nodeInfo(node.address)).bonded).to.equal(opg("2300"));
    });

    it("reverts with ERC20InsufficientAllowance for an invalid permit and no allowance", async function () {
      const f = await loadFixture(permitFixture);
      const amount = opg("300");
      // Signed for a smaller value than the one staked: the permit fails and nothing else allows the pull.
      const { v, r, s } = await signPermit(f.token, f.node, f.stakingAddress, amount - 1n, f.deadline);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).stakeWithPermit(amount, f.deadline, v, r, s))
          .to.be.revertedWithCustomError(f.token, "ERC20InsufficientAllowance")
          .withArgs(f.stakingAddress, 0, amount),
      );
    });

    it("reverts with ERC20InsufficientAllowance for an expired permit", async function () {
      const f = await loadFixture(permitFixture);
      const amount = opg("300");
      const expired = BigInt(await time.latest()) - 1n;
      const { v, r, s } = await signPermit(f.token, f.node, f.stakingAddress, amount, expired);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).stakeWithPermit(amount, expired, v, r, s))
          .to.be.revertedWithCustomError(f.token, "ERC20InsufficientAllowance")
          .withArgs(f.stakingAddress, 0, amount),
      );
    });

    it("reverts with NodeStakingZeroAmount and NodeStakingNotRegistered, leaving no allowance", async function () {
      const f = await loadFixture(permitFixture);
      const zero = await signPermit(f.token, f.node, f.stakingAddress, 0n, f.deadline);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).stakeWithPermit(0, f.deadline, zero.v, zero.r, zero.s))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingZeroAmount")
          .withArgs(),
      );
      const outsider = f.nodes[1];
      const amount = opg("5");
      const { v, r, s } = await signPermit(f.token, outsider, f.stakingAddress, amount, f.deadline);
      await f.token.connect(outsider).approve(f.stakingAddress, 0);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(outsider).stakeWithPermit(amount, f.deadline, v, r, s))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNotRegistered")
          .withArgs(outsider.address),
      );
      // The permit was rolled back with the stake.
      expect(await f.token.allowance(outsider.address, f.stakingAddress)).to.equal(0n);
      expect(await f.token.nonces(outsider.address)).to.equal(0n);
    });
  });

  describe("requestUnstake", function () {
    it("moves free stake into unbonding and sets the release time", async function () {
      const { staking, stakingAddress, token, node } = await loadFixture(stakedNodeFixture);
      const at = BigInt(await time.latest()) + 10n;
      await time.setNextBlockTimestamp(at);
      const tx = await staking.connect(node).requestUnstake(opg("500"));
      await expect(tx)
        .to.emit(staking, "UnstakeRequested")
        .withArgs(node.address, opg("500"), at + UNBONDING_DELAY);
      await expect(tx).to.changeTokenBalance(token, stakingAddress, 0n);
      const info = await staking.nodeInfo(node.address);
      expect(info.bonded).to.equal(opg("1500"));
      expect(info.unbonding).to.equal(opg("500"));
      expect(info.unbondingReleaseAt).to.equal(at + UNBONDING_DELAY);
      expect(await staking.freeStakeOf(node.address)).to.equal(opg("1500"));
    });

    it("restarts the timer for the whole unbonding balance on a second request", async function () {
      const { staking, node } = await loadFixture(stakedNodeFixture);
      await staking.connect(node).requestUnstake(opg("100"));
      await time.increase(UNBONDING_DELAY - 10n);
      const at = BigInt(await time.latest()) + 1n;
      await time.setNextBlockTimestamp(at);
      await staking.connect(node).requestUnstake(opg("100"));
      const info = await staking.nodeInfo(node.address);
      expect(info.unbonding).to.equal(opg("200"));
      expect(info.unbondingReleaseAt).to.equal(at + UNBONDING_DELAY);
    });

    it("drops eligibility for a role when free stake falls below its minimum", async function () {
      const { staking, node } = await loadFixture(stakedNodeFixture);
      await staking.connect(node).requestUnstake(opg("1001"));
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(false);
      expect(await staking.isEligible(node.address, Role.Verification)).to.equal(true);
    });

    it("reverts with NodeStakingZeroAmount for zero", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).requestUnstake(0))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingZeroAmount")
          .withArgs(),
      );
    });

    it("reverts with NodeStakingNotRegistered for an unregistered caller", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.stranger).requestUnstake(1))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNotRegistered")
          .withArgs(f.stranger.address),
      );
    });

    it("reverts with NodeStakingInsufficientFreeStake beyond free stake, locked stake included", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).requestUnstake(opg("2000") + 1n))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingInsufficientFreeStake")
          .withArgs(f.node.address, opg("2000") + 1n, opg("2000")),
      );
      await f.staking.connect(f.manager).lockCollateral(f.node.address, opg("1500"));
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).requestUnstake(opg("501")))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingInsufficientFreeStake")
          .withArgs(f.node.address, opg("501"), opg("500")),
      );
    });
  });

  describe("withdraw", function () {
    it("pays out unbonding stake from the release time on", async function () {
      const { staking, stakingAddress, token, node } = await loadFixture(stakedNodeFixture);
      await staking.connect(node).requestUnstake(opg("700"));
      const { unbondingReleaseAt } = await staking.nodeInfo(node.address);
      await time.setNextBlockTimestamp(unbondingReleaseAt);
      const tx = await staking.connect(node).withdraw();
      await expect(tx).to.emit(staking, "Withdrawn").withArgs(node.address, opg("700"));
      await expect(tx).to.changeTokenBalances(token, [node, stakingAddress], [opg("700"), -opg("700")]);
      const info = await staking.nodeInfo(node.address);
      expect(info.unbonding).to.equal(0n);
      expect(info.unbondingReleaseAt).to.equal(0n);
      expect(info.bonded).to.equal(opg("1300"));
    });

    it("reverts with NodeStakingUnbondingNotElapsed one second early", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await f.staking.connect(f.node).requestUnstake(opg("700"));
      const { unbondingReleaseAt } = await f.staking.nodeInfo(f.node.address);
      await expectNothingMoved(f, async () => {
        await time.setNextBlockTimestamp(unbondingReleaseAt - 1n);
        await expect(f.staking.connect(f.node).withdraw())
          .to.be.revertedWithCustomError(f.staking, "NodeStakingUnbondingNotElapsed")
          .withArgs(f.node.address, unbondingReleaseAt, unbondingReleaseAt - 1n);
      });
    });

    it("reverts with NodeStakingNothingToWithdraw with nothing unbonding", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).withdraw())
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNothingToWithdraw")
          .withArgs(f.node.address),
      );
      // And a second withdraw after a successful one.
      await f.staking.connect(f.node).requestUnstake(opg("1"));
      await time.increase(UNBONDING_DELAY);
      await f.staking.connect(f.node).withdraw();
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.node).withdraw())
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNothingToWithdraw")
          .withArgs(f.node.address),
      );
    });
  });

  describe("lockCollateral", function () {
    it("locks free stake, which then can't be unstaked and doesn't count for eligibility", async function () {
      const { staking, stakingAddress, token, node, manager } = await loadFixture(stakedNodeFixture);
      const tx = await staking.connect(manager).lockCollateral(node.address, opg("1200"));
      await expect(tx)
        .to.emit(staking, "CollateralLocked")
        .withArgs(node.address, manager.address, opg("1200"));
      await expect(tx).to.changeTokenBalance(token, stakingAddress, 0n);
      const info = await staking.nodeInfo(node.address);
      expect(info.bonded).to.equal(opg("2000"));
      expect(info.locked).to.equal(opg("1200"));
      expect(await staking.freeStakeOf(node.address)).to.equal(opg("800"));
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(false);
      expect(await staking.isEligible(node.address, Role.Verification)).to.equal(true);
      // All of the free stake may be locked too.
      await staking.connect(manager).lockCollateral(node.address, opg("800"));
      expect(await staking.freeStakeOf(node.address)).to.equal(0n);
    });

    it("reverts with NodeStakingNotCollateralManager for a stranger, the slasher or the owner", async function () {
      const f = await loadFixture(stakedNodeFixture);
      for (const caller of [f.stranger, f.slasher, f.governance, f.node]) {
        await expectNothingMoved(f, () =>
          expect(f.staking.connect(caller).lockCollateral(f.node.address, opg("1")))
            .to.be.revertedWithCustomError(f.staking, "NodeStakingNotCollateralManager")
            .withArgs(caller.address),
        );
      }
    });

    it("reverts with NodeStakingZeroAmount for zero", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.manager).lockCollateral(f.node.address, 0))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingZeroAmount")
          .withArgs(),
      );
    });

    it("reverts with NodeStakingNotRegistered for an unregistered node", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.manager).lockCollateral(f.stranger.address, 1))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNotRegistered")
          .withArgs(f.stranger.address),
      );
    });

    it("reverts with NodeStakingInsufficientFreeStake when locking more than is free", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await f.staking.connect(f.manager).lockCollateral(f.node.address, opg("1500"));
      await f.staking.connect(f.node).requestUnstake(opg("400"));
      // Free is 2000 - 400 unbonding - 1500 locked = 100; unbonding stake is not lockable.
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.manager).lockCollateral(f.node.address, opg("100") + 1n))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingInsufficientFreeStake")
          .withArgs(f.node.address, opg("100") + 1n, opg("100")),
      );
    });
  });

  describe("unlockCollateral", function () {
    it("releases locked collateral back to free stake", async function () {
      const { staking, node, manager } = await loadFixture(stakedNodeFixture);
      await staking.connect(manager).lockCollateral(node.address, opg("1200"));
      await expect(staking.connect(manager).unlockCollateral(node.address, opg("1000")))
        .to.emit(staking, "CollateralUnlocked")
        .withArgs(node.address, manager.address, opg("1000"));
      expect((await staking.nodeInfo(node.address)).locked).to.equal(opg("200"));
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(true);
    });

    it("saturates at what a slash left locked, so the task can still settle", async function () {
      const { staking, stakingAddress, token, node, manager, slasher } = await loadFixture(stakedNodeFixture);
      await staking.connect(manager).lockCollateral(node.address, opg("1800"));
      await staking.connect(slasher).slash(node.address, opg("500"), REASON, ethers.ZeroAddress);
      // bonded 1500 < locked 1800: locked was clamped to 1500.
      expect((await staking.nodeInfo(node.address)).locked).to.equal(opg("1500"));
      const tx = await staking.connect(manager).unlockCollateral(node.address, opg("1800"));
      await expect(tx)
        .to.emit(staking, "CollateralUnlocked")
        .withArgs(node.address, manager.address, opg("1500"));
      await expect(tx).to.changeTokenBalance(token, stakingAddress, 0n);
      const info = await staking.nodeInfo(node.address);
      expect(info.locked).to.equal(0n);
      expect(info.bonded).to.equal(opg("1500"));
      // Nothing left locked: a further release is a no-op, not a revert.
      await expect(staking.connect(manager).unlockCollateral(node.address, 1))
        .to.emit(staking, "CollateralUnlocked")
        .withArgs(node.address, manager.address, 0);
    });

    it("reverts with NodeStakingNotCollateralManager for a stranger", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await f.staking.connect(f.manager).lockCollateral(f.node.address, opg("100"));
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.stranger).unlockCollateral(f.node.address, opg("100")))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingNotCollateralManager")
          .withArgs(f.stranger.address),
      );
      expect((await f.staking.nodeInfo(f.node.address)).locked).to.equal(opg("100"));
    });

    it("reverts with NodeStakingZeroAmount for zero", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await f.staking.connect(f.manager).lockCollateral(f.node.address, opg("100"));
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.manager).unlockCollateral(f.node.address, 0))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingZeroAmount")
          .withArgs(),
      );
    });

    it("unlocks only what the calling manager locked itself", async function () {
      const { staking, node, manager, governance, stranger } = await loadFixture(stakedNodeFixture);
      await staking.connect(governance).setCollateralManager(stranger.address, true);
      await staking.connect(manager).lockCollateral(node.address, opg("300"));
      await staking.connect(stranger).lockCollateral(node.address, opg("500"));
      expect(await staking.collateralLockedBy(node.address, stranger.address)).to.equal(opg("500"));
      // The second manager cannot release the first one's collateral.
      await expect(staking.connect(stranger).unlockCollateral(node.address, opg("800")))
        .to.emit(staking, "CollateralUnlocked")
        .withArgs(node.address, stranger.address, opg("500"));
      expect((await staking.nodeInfo(node.address)).locked).to.equal(opg("300"));
      expect(await staking.collateralLockedBy(node.address, manager.address)).to.equal(opg("300"));
    });
  });

  describe("releaseRevokedCollateral", function () {
    it("gives a node back what a manager governance revoked had locked, and nothing else", async function () {
      const { staking, node, manager, governance, stranger } = await loadFixture(stakedNodeFixture);
      await staking.connect(governance).setCollateralManager(stranger.address, true);
      await staking.connect(manager).lockCollateral(node.address, opg("300"));
      await staking.connect(stranger).lockCollateral(node.address, opg("500"));
      await expect(staking.connect(node).releaseRevokedCollateral(manager.address))
        .to.be.revertedWithCustomError(staking, "NodeStakingManagerStillAuthorised")
        .withArgs(manager.address);
      await staking.connect(governance).setCollateralManager(manager.address, false);
      await expect(staking.connect(node).releaseRevokedCollateral(manager.address))
        .to.emit(staking, "CollateralUnlocked")
        .withArgs(node.address, manager.address, opg("300"));
      expect((await staking.nodeInfo(node.address)).locked).to.equal(opg("500"));
      // Once released, re-authorising the manager does not let it unlock anything of the other's.
      await staking.connect(governance).setCollateralManager(manager.address, true);
      await expect(staking.connect(manager).unlockCollateral(node.address, opg("300")))
        .to.emit(staking, "CollateralUnlocked")
        .withArgs(node.address, manager.address, 0);
      expect((await staking.nodeInfo(node.address)).locked).to.equal(opg("500"));
    });
  });

  describe("slash", function () {
    it("splits the slash between beneficiary and treasury by the governed share", async function () {
      const { staking, stakingAddress, token, node, slasher, beneficiary, treasury } =
        await loadFixture(stakedNodeFixture);
      const amount = opg("100");
      const toBeneficiary = (amount * SLASH_SHARE_BPS) / 10_000n;
      expect(
        await staking.connect(slasher).slash.staticCall(node.address, amount, REASON, beneficiary.address),
      ).to.equal(amount);
      const tx = await staking.connect(slasher).slash(node.address, amount, REASON, beneficiary.address);
      await expect(tx)
        .to.emit(staking, "NodeSlashed")
        .withArgs(node.address, slasher.address, REASON, amount, beneficiary.address, toBeneficiary);
      await expect(tx).to.changeTokenBalances(
        token,
        [stakingAddress, beneficiary, treasury],
        [-amount, toBeneficiary, amount - toBeneficiary],
      );
      expect((await staking.nodeInfo(node.address)).bonded).to.equal(opg("1900"));
    });

    it("rounds the beneficiary's share down, the treasury gets the remainder", async function () {
      const { staking, stakingAddress, token, node, slasher, beneficiary, treasury } =
        await loadFixture(stakedNodeFixture);
      await expect(
        staking.connect(slasher).slash(node.address, 3n, REASON, beneficiary.address),
      ).to.changeTokenBalances(token, [stakingAddress, beneficiary, treasury], [-3n, 1n, 2n]);
    });

    it("sends everything to the treasury when the beneficiary is zero", async function () {
      const { staking, stakingAddress, token, node, slasher, treasury } =
        await loadFixture(stakedNodeFixture);
      const amount = opg("100");
      const tx = await staking.connect(slasher).slash(node.address, amount, REASON, ethers.ZeroAddress);
      await expect(tx)
        .to.emit(staking, "NodeSlashed")
        .withArgs(node.address, slasher.address, REASON, amount, ethers.ZeroAddress, 0);
      await expect(tx).to.changeTokenBalances(token, [stakingAddress, treasury], [-amount, amount]);
    });

    it("pays the whole slash to the beneficiary at a 100% share", async function () {
      const { staking, governance, token, node, slasher, beneficiary, treasury } =
        await loadFixture(stakedNodeFixture);
      await staking.connect(governance).setSlashBeneficiaryShare(10_000);
      await expect(
        staking.connect(slasher).slash(node.address, opg("10"), REASON, beneficiary.address),
      ).to.changeTokenBalances(token, [beneficiary, treasury], [opg("10"), 0n]);
    });

    it("takes bonded stake first, then unbonding stake", async function () {
      const { staking, node, slasher, treasury, token } = await loadFixture(stakedNodeFixture);
      await staking.connect(node).requestUnstake(opg("500"));
      await expect(
        staking.connect(slasher).slash(node.address, opg("1700"), REASON, ethers.ZeroAddress),
      ).to.changeTokenBalance(token, treasury, opg("1700"));
      const info = await staking.nodeInfo(node.address);
      expect(info.bonded).to.equal(0n);
      expect(info.unbonding).to.equal(opg("300"));
      // What is left unbonding is still withdrawable on time.
      await time.increaseTo(info.unbondingReleaseAt);
      await expect(staking.connect(node).withdraw()).to.changeTokenBalance(token, node, opg("300"));
    });

    it("never takes more than the node has", async function () {
      const { staking, stakingAddress, token, node, slasher, beneficiary, treasury } =
        await loadFixture(stakedNodeFixture);
      await staking.connect(node).requestUnstake(opg("500"));
      const huge = ethers.MaxUint256;
      expect(
        await staking.connect(slasher).slash.staticCall(node.address, huge, REASON, beneficiary.address),
      ).to.equal(opg("2000"));
      const tx = await staking.connect(slasher).slash(node.address, huge, REASON, beneficiary.address);
      await expect(tx)
        .to.emit(staking, "NodeSlashed")
        .withArgs(node.address, slasher.address, REASON, opg("2000"), beneficiary.address, opg("1000"));
      await expect(tx).to.changeTokenBalances(
        token,
        [stakingAddress, beneficiary, treasury],
        [-opg("2000"), opg("1000"), opg("1000")],
      );
      const info = await staking.nodeInfo(node.address);
      expect([info.bonded, info.locked, info.unbonding]).to.deep.equal([0n, 0n, 0n]);
    });

    it("returns zero and moves nothing for a node with no stake", async function () {
      const f = await loadFixture(stakedNodeFixture);
      const empty = f.nodes[1];
      await f.staking.connect(empty).register(ROLES.inference, "");
      for (const target of [empty.address, f.stranger.address]) {
        expect(
          await f.staking
            .connect(f.slasher)
            .slash.staticCall(target, opg("1"), REASON, f.beneficiary.address),
        ).to.equal(0n);
        await expectNothingMoved(f, () =>
          expect(
            f.staking.connect(f.slasher).slash(target, opg("1"), REASON, f.beneficiary.address),
          ).not.to.emit(f.staking, "NodeSlashed"),
        );
      }
    });

    it("clamps locked collateral to what remains bonded", async function () {
      const { staking, node, manager, slasher } = await loadFixture(stakedNodeFixture);
      await staking.connect(manager).lockCollateral(node.address, opg("1500"));
      await staking.connect(slasher).slash(node.address, opg("1000"), REASON, ethers.ZeroAddress);
      const info = await staking.nodeInfo(node.address);
      expect(info.bonded).to.equal(opg("1000"));
      expect(info.locked).to.equal(opg("1000"));
      expect(await staking.freeStakeOf(node.address)).to.equal(0n);
    });

    it("jails the node for the roles it fell out of, until it tops up", async function () {
      const { staking, node, slasher } = await loadFixture(stakedNodeFixture);
      const tx = await staking.connect(slasher).slash(node.address, opg("1200"), REASON, ethers.ZeroAddress);
      await expect(tx)
        .to.emit(staking, "NodeJailed")
        .withArgs(node.address, Role.Inference, opg("800"), MIN_INFERENCE);
      expect(await jailedRoles(staking, tx)).to.deep.equal([BigInt(Role.Inference)]);
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(false);
      expect(await staking.isEligible(node.address, Role.Verification)).to.equal(true);

      const second = await staking
        .connect(slasher)
        .slash(node.address, opg("400"), REASON, ethers.ZeroAddress);
      expect(await jailedRoles(staking, second)).to.deep.equal([
        BigInt(Role.Inference),
        BigInt(Role.Verification),
      ]);
      expect(await staking.isEligible(node.address, Role.Verification)).to.equal(false);

      await staking.connect(node).stake(opg("600"));
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(true);
      expect(await staking.isEligible(node.address, Role.Verification)).to.equal(true);
    });

    it("does not jail a node that stays above its minimums", async function () {
      const { staking, node, slasher } = await loadFixture(stakedNodeFixture);
      const tx = await staking.connect(slasher).slash(node.address, opg("1000"), REASON, ethers.ZeroAddress);
      expect(await jailedRoles(staking, tx)).to.deep.equal([]);
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(true);
    });

    it("reverts with NodeStakingNotSlasher for a stranger, the manager or the owner", async function () {
      const f = await loadFixture(stakedNodeFixture);
      for (const caller of [f.stranger, f.manager, f.governance, f.beneficiary]) {
        await expectNothingMoved(f, () =>
          expect(f.staking.connect(caller).slash(f.node.address, opg("1"), REASON, caller.address))
            .to.be.revertedWithCustomError(f.staking, "NodeStakingNotSlasher")
            .withArgs(caller.address),
        );
      }
    });

    it("reverts with NodeStakingZeroAmount for zero", async function () {
      const f = await loadFixture(stakedNodeFixture);
      await expectNothingMoved(f, () =>
        expect(f.staking.connect(f.slasher).slash(f.node.address, 0, REASON, f.beneficiary.address))
          .to.be.revertedWithCustomError(f.staking, "NodeStakingZeroAmount")
          .withArgs(),
      );
    });
  });

  describe("views", function () {
    it("isEligible: per role, registered nodes only, never on zero free stake", async function () {
      const { staking, governance, nodes } = await loadFixture(economyFixture);
      const [inferenceOnly, unregistered, unstaked] = nodes;
      await staking.connect(inferenceOnly).register(ROLES.inference, "");
      await staking.connect(inferenceOnly).stake(MIN_INFERENCE * 2n);
      expect(await staking.isEligible(inferenceOnly.address, Role.Inference)).to.equal(true);
      // Enough stake for verification, but not registered for it.
      expect(await staking.isEligible(inferenceOnly.address, Role.Verification)).to.equal(false);
      expect(await staking.isEligible(unregistered.address, Role.Inference)).to.equal(false);

      await staking.connect(governance).setMinStake(Role.Verification, 0);
      await staking.connect(unstaked).register(ROLES.verification, "");
      expect(await staking.isEligible(unstaked.address, Role.Verification)).to.equal(false);
      await staking.connect(unstaked).stake(1n);
      expect(await staking.isEligible(unstaked.address, Role.Verification)).to.equal(true);
    });

    it("freeStakeOf and nodeInfo report bonded, locked and unbonding", async function () {
      const { staking, node, manager } = await loadFixture(stakedNodeFixture);
      await staking.connect(manager).lockCollateral(node.address, opg("300"));
      await staking.connect(node).requestUnstake(opg("200"));
      expect(await staking.freeStakeOf(node.address)).to.equal(opg("1500"));
      const info = await staking.nodeInfo(node.address);
      expect(info.bonded).to.equal(opg("1800"));
      expect(info.locked).to.equal(opg("300"));
      expect(info.unbonding).to.equal(opg("200"));
      expect(info.endpoint).to.equal("https://node0.example");
      expect(await staking.freeStakeOf(ethers.ZeroAddress)).to.equal(0n);
      const nobody = await staking.nodeInfo(ethers.ZeroAddress);
      expect(nobody.registered).to.equal(false);
    });

    it("nodeCount and nodesByRole page through the registered nodes", async function () {
      const { staking, nodes } = await loadFixture(economyFixture);
      for (const node of nodes) await staking.connect(node).register(ROLES.inference, "");
      await staking.connect(nodes[2]).updateNode(ROLES.both, "");
      const all = nodes.map((node) => node.address);
      expect(await staking.nodeCount(Role.Inference)).to.equal(4n);
      expect(await staking.nodeCount(Role.Verification)).to.equal(1n);
      expect(await staking.nodesByRole(Role.Inference, 0, 4)).to.deep.equal(all);
      expect(await staking.nodesByRole(Role.Inference, 0, 2)).to.deep.equal(all.slice(0, 2));
      expect(await staking.nodesByRole(Role.Inference, 2, 2)).to.deep.equal(all.slice(2, 4));
      expect(await staking.nodesByRole(Role.Inference, 3, 10)).to.deep.equal(all.slice(3));
      expect(await staking.nodesByRole(Role.Inference, 1, ethers.MaxUint256)).to.deep.equal(all.slice(1));
      expect(await staking.nodesByRole(Role.Inference, 4, 10)).to.deep.equal([]);
      expect(await staking.nodesByRole(Role.Inference, ethers.MaxUint256, 10)).to.deep.equal([]);
      expect(await staking.nodesByRole(Role.Inference, 0, 0)).to.deep.equal([]);
      expect(await staking.nodesByRole(Role.Verification, 0, 10)).to.deep.equal([all[2]]);
    });

    it("reports authorised collateral managers and slashers", async function () {
      const { staking, manager, slasher, stranger } = await loadFixture(economyFixture);
      expect(await staking.isCollateralManager(manager.address)).to.equal(true);
      expect(await staking.isCollateralManager(slasher.address)).to.equal(false);
      expect(await staking.isSlasher(slasher.address)).to.equal(true);
      expect(await staking.isSlasher(stranger.address)).to.equal(false);
    });
  });

  describe("governance setters", function () {
    it("setMinStake changes the minimum and with it eligibility", async function () {
      const { staking, governance, node } = await loadFixture(stakedNodeFixture);
      await expect(staking.connect(governance).setMinStake(Role.Inference, opg("2001")))
        .to.emit(staking, "MinStakeSet")
        .withArgs(Role.Inference, opg("2001"));
      expect(await staking.minStake(Role.Inference)).to.equal(opg("2001"));
      expect(await staking.isEligible(node.address, Role.Inference)).to.equal(false);
    });

    it("setUnbondingDelay accepts up to MAX_UNBONDING_DELAY and rejects more", async function () {
      const { staking, governance } = await loadFixture(economyFixture);
      await expect(staking.connect(governance).setUnbondingDelay(MAX_UNBONDING_DELAY))
        .to.emit(staking, "UnbondingDelaySet")
        .withArgs(MAX_UNBONDING_DELAY);
      await staking.connect(governance).setUnbondingDelay(0);
      expect(await staking.unbondingDelay()).to.equal(0n);
      await expect(staking.connect(governance).setUnbondingDelay(MAX_UNBONDING_DELAY + 1n))
        .to.be.revertedWithCustomError(staking, "NodeStakingInvalidUnbondingDelay")
        .withArgs(MAX_UNBONDING_DELAY + 1n, MAX_UNBONDING_DELAY);
      expect(await staking.unbondingDelay()).to.equal(0n);
    });

    it("setSlashBeneficiaryShare accepts up to 10,000 bps and rejects more", async function () {
      const { staking, governance } = await loadFixture(economyFixture);
      await expect(staking.connect(governance).setSlashBeneficiaryShare(10_000))
        .to.emit(staking, "SlashBeneficiaryShareSet")
        .withArgs(10_000);
      await expect(staking.connect(governance).setSlashBeneficiaryShare(10_001))
        .to.be.revertedWithCustomError(staking, "NodeStakingInvalidBps")
        .withArgs(10_001);
      expect(await staking.slashBeneficiaryShareBps()).to.equal(10_000n);
    });

    it("setTreasury redirects the protocol share and rejects the zero address", async function () {
      const { staking, governance, token, node, slasher, stranger } = await loadFixture(stakedNodeFixture);
      await expect(staking.connect(governance).setTreasury(stranger.address))
        .to.emit(staking, "TreasurySet")
        .withArgs(stranger.address);
      await expect(
        staking.connect(slasher).slash(node.address, opg("1"), REASON, ethers.ZeroAddress),
      ).to.changeTokenBalance(token, stranger, opg("1"));
      await expect(staking.connect(governance).setTreasury(ethers.ZeroAddress))
        .to.be.revertedWithCustomError(staking, "NodeStakingZeroAddress")
        .withArgs();
      expect(await staking.treasury()).to.equal(stranger.address);
    });

    it("setCollateralManager authorises and revokes, and rejects the zero address", async function () {
      const { staking, governance, manager, node } = await loadFixture(stakedNodeFixture);
      await expect(staking.connect(governance).setCollateralManager(manager.address, false))
        .to.emit(staking, "CollateralManagerSet")
        .withArgs(manager.address, false);
      await expect(staking.connect(manager).lockCollateral(node.address, 1))
        .to.be.revertedWithCustomError(staking, "NodeStakingNotCollateralManager")
        .withArgs(manager.address);
      await expect(staking.connect(governance).setCollateralManager(ethers.ZeroAddress, true))
        .to.be.revertedWithCustomError(staking, "NodeStakingZeroAddress")
        .withArgs();
    });

    it("setSlasher authorises and revokes, and rejects the zero address", async function () {
      const { staking, governance, slasher, stranger, node } = await loadFixture(stakedNodeFixture);
      await expect(staking.connect(governance).setSlasher(stranger.address, true))
        .to.emit(staking, "SlasherSet")
        .withArgs(stranger.address, true);
      await staking.connect(stranger).slash(node.address, 1, REASON, ethers.ZeroAddress);
      await staking.connect(governance).setSlasher(slasher.address, false);
      await expect(staking.connect(slasher).slash(node.address, 1, REASON, ethers.ZeroAddress))
        .to.be.revertedWithCustomError(staking, "NodeStakingNotSlasher")
        .withArgs(slasher.address);
      await expect(staking.connect(governance).setSlasher(ethers.ZeroAddress, true))
        .to.be.revertedWithCustomError(staking, "NodeStakingZeroAddress")
        .withArgs();
    });

    it("every setter reverts with OwnableUnauthorizedAccount for anyone but the owner", async function () {
      const f = await loadFixture(stakedNodeFixture);
      const calls: [string, (s: NodeStaking) => Promise<unknown>][] = [
        ["setMinStake", (s) => s.setMinStake(Role.Inference, 0)],
        ["setUnbondingDelay", (s) => s.setUnbondingDelay(0)],
        ["setSlashBeneficiaryShare", (s) => s.setSlashBeneficiaryShare(0)],
        ["setTreasury", (s) => s.setTreasury(f.stranger.address)],
        ["setCollateralManager", (s) => s.setCollateralManager(f.stranger.address, true)],
        ["setSlasher", (s) => s.setSlasher(f.stranger.address, true)],
        ["transferOwnership", (s) => s.transferOwnership(f.stranger.address)],
        ["renounceOwnership", (s) => s.renounceOwnership()],
      ];
      for (const caller of [f.stranger, f.deployer, f.node, f.slasher]) {
        for (const [name, call] of calls) {
          await expectNothingMoved(f, () =>
            expect(call(f.staking.connect(caller)), name)
              .to.be.revertedWithCustomError(f.staking, "OwnableUnauthorizedAccount")
              .withArgs(caller.address),
          );
        }
      }
      expect(await f.staking.owner()).to.equal(f.governance.address);
      expect(await f.staking.minStake(Role.Inference)).to.equal(MIN_INFERENCE);
      expect(await f.staking.isSlasher(f.stranger.address)).to.equal(false);
    });

    it("transferOwnership hands the setters to a new owner", async function () {
      const { staking, governance, stranger } = await loadFixture(economyFixture);
      await staking.connect(governance).transferOwnership(stranger.address);
      await staking.connect(stranger).setMinStake(Role.Verification, 7);
      expect(await staking.minStake(Role.Verification)).to.equal(7n);
      await expect(staking.connect(governance).setMinStake(Role.Verification, 8))
        .to.be.revertedWithCustomError(staking, "OwnableUnauthorizedAccount")
        .withArgs(governance.address);
    });
  });

  describe("gas", function () {
    it("records a node's lifecycle: register, stake, lock, unlock, slash, unstake, withdraw", async function () {
      const { staking, nodes, manager, slasher, beneficiary } = await loadFixture(economyFixture);
      const [node] = nodes;
      await recordGas(
        "NodeStaking.register",
        staking.connect(node).register(ROLES.both, "https://node0.example"),
      );
      await recordGas("NodeStaking.stake", staking.connect(node).stake(opg("2000")));
      await recordGas(
        "NodeStaking.lockCollateral",
        staking.connect(manager).lockCollateral(node.address, opg("500")),
      );
      await recordGas(
        "NodeStaking.unlockCollateral",
        staking.connect(manager).unlockCollateral(node.address, opg("500")),
      );
      await recordGas(
        "NodeStaking.slash",
        staking.connect(slasher).slash(node.address, opg("100"), REASON, beneficiary.address),
      );
      await recordGas("NodeStaking.requestUnstake", staking.connect(node).requestUnstake(opg("400")));
      await time.increase(UNBONDING_DELAY);
      await recordGas("NodeStaking.withdraw", staking.connect(node).withdraw());
      expect((await staking.nodeInfo(node.address)).bonded).to.equal(opg("1500"));
      expect(await staking.freeStakeOf(node.address)).to.equal(opg("1500"));
    });
  });
});
