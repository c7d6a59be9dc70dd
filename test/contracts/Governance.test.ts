import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, mine, time } from "@nomicfoundation/hardhat-network-helpers";
import { DEFAULT_ECONOMY_PARAMS } from "../../network/deploy";
import { OPGTimelock__factory, TimelockController__factory } from "../../typechain-types";
import { ROLES, Role, economyFixture, productionEconomyFixture } from "../helpers/economy-fixture";

/** OpenZeppelin Governor's `ProposalState`. */
const ProposalState = {
  Pending: 0n,
  Active: 1n,
  Canceled: 2n,
  Defeated: 3n,
  Succeeded: 4n,
  Queued: 5n,
  Executed: 7n,
} as const;
const VoteType = { Against: 0, For: 1, Abstain: 2 } as const;

describe("Governance", function () {
  /** Production wiring, the treasury's supply delegated to itself, and a two-call parameter proposal. */
  async function proposalFixture() {
    const f = await productionEconomyFixture();
    const { token, staking, treasury, other } = f;
    await token.connect(treasury).delegate(treasury.address);
    await mine();
    const stakingAddress = await staking.getAddress();
    const newMinStake = ethers.parseEther("4242");
    const targets = [stakingAddress, stakingAddress];
    const values = [0n, 0n];
    const calldatas = [
      staking.interface.encodeFunctionData("setMinStake", [Role.Inference, newMinStake]),
      staking.interface.encodeFunctionData("setCollateralManager", [other.address, true]),
    ];
    const description = "Raise the inference minimum stake and authorise the task registry";
    const descriptionHash = ethers.id(description);
    const proposal = { targets, values, calldatas, description, descriptionHash };
    return { ...f, newMinStake, proposal };
  }

  it("is wired for production: the timelock owns NodeStaking and the deployer holds no role", async function () {
    const { staking, timelock, governor, token, deployer } = await loadFixture(productionEconomyFixture);
    const timelockAddress = await timelock.getAddress();
    const governorAddress = await governor.getAddress();
    expect(await staking.owner()).to.equal(timelockAddress);
    expect(await governor.timelock()).to.equal(timelockAddress);
    expect(await governor.token()).to.equal(await token.getAddress());
    expect(await governor.votingDelay()).to.equal(BigInt(DEFAULT_ECONOMY_PARAMS.votingDelay));
    expect(await governor.votingPeriod()).to.equal(BigInt(DEFAULT_ECONOMY_PARAMS.votingPeriod));
    expect(await governor["quorumNumerator()"]()).to.equal(BigInt(DEFAULT_ECONOMY_PARAMS.quorumPercent));
    expect(await timelock.getMinDelay()).to.equal(DEFAULT_ECONOMY_PARAMS.timelockDelay);

    const [admin, proposer, canceller, executor] = await Promise.all([
      timelock.DEFAULT_ADMIN_ROLE(),
      timelock.PROPOSER_ROLE(),
      timelock.CANCELLER_ROLE(),
      timelock.EXECUTOR_ROLE(),
    ]);
    expect(await timelock.hasRole(proposer, governorAddress)).to.equal(true);
    expect(await timelock.hasRole(canceller, governorAddress)).to.equal(true);
    // Anyone may execute a proposal whose delay has passed.
    expect(await timelock.hasRole(executor, ethers.ZeroAddress)).to.equal(true);
    for (const role of [admin, proposer, canceller]) {
      expect(await timelock.hasRole(role, deployer.address)).to.equal(false);
    }
    await expect(timelock.connect(deployer).grantRole(proposer, deployer.address))
      .to.be.revertedWithCustomError(timelock, "AccessControlUnauthorizedAccount")
      .withArgs(deployer.address, admin);
  });

  it("takes a parameter change from proposal through vote, queue and timelock to execution", async function () {
    const { staking, governor, timelock, treasury, other, deployer, newMinStake, proposal } =
      await loadFixture(proposalFixture);
    const { targets, values, calldatas, description, descriptionHash } = proposal;
    expect(await staking.minStake(Role.Inference)).to.not.equal(newMinStake);
    expect(await staking.isCollateralManager(other.address)).to.equal(false);

    await expect(governor.connect(treasury).propose(targets, values, calldatas, description)).to.emit(
      governor,
      "ProposalCreated",
    );
    const proposalId = await governor.hashProposal(targets, values, calldatas, descriptionHash);
    expect(await governor.state(proposalId)).to.equal(ProposalState.Pending);

    await mine(DEFAULT_ECONOMY_PARAMS.votingDelay + 1);
    expect(await governor.state(proposalId)).to.equal(ProposalState.Active);
    const snapshot = await governor.proposalSnapshot(proposalId);
    const weight = await governor.getVotes(treasury.address, snapshot);
    await expect(governor.connect(treasury).castVote(proposalId, VoteType.For))
      .to.emit(governor, "VoteCast")
      .withArgs(treasury.address, proposalId, VoteType.For, weight, "");
    expect(weight).to.be.greaterThan(await governor.quorum(snapshot));

    await mine(DEFAULT_ECONOMY_PARAMS.votingPeriod);
    expect(await governor.state(proposalId)).to.equal(ProposalState.Succeeded);

    const queued = await governor.queue(targets, values, calldatas, descriptionHash);
    expect(await governor.state(proposalId)).to.equal(ProposalState.Queued);
    const receipt = await queued.wait();
    const scheduled = receipt!.logs
      .map((log) => timelock.interface.parseLog(log))
      .find((event) => event?.name === "CallScheduled");
    const operationId: string = scheduled!.args.id;
    expect(await timelock.isOperationPending(operationId)).to.equal(true);

    // Before the delay, the timelock refuses to run it.
    const readyState = ethers.toBeHex(1n << 2n, 32); // bit of OperationState.Ready
    await expect(governor.execute(targets, values, calldatas, descriptionHash))
      .to.be.revertedWithCustomError(timelock, "TimelockUnexpectedOperationState")
      .withArgs(operationId, readyState);
    expect(await staking.minStake(Role.Inference)).to.not.equal(newMinStake);

    await time.increase(DEFAULT_ECONOMY_PARAMS.timelockDelay);
    // Execution is open to anyone once the delay has passed.
    await expect(governor.connect(deployer).execute(targets, values, calldatas, descriptionHash))
      .to.emit(staking, "MinStakeSet")
      .withArgs(Role.Inference, newMinStake);
    expect(await governor.state(proposalId)).to.equal(ProposalState.Executed);
    expect(await timelock.isOperationDone(operationId)).to.equal(true);
    expect(await staking.minStake(Role.Inference)).to.equal(newMinStake);
    expect(await staking.isCollateralManager(other.address)).to.equal(true);
  });

  it("rejects a direct parameter change by the former deployer or the largest holder", async function () {
    const { staking, timelock, deployer, treasury } = await loadFixture(proposalFixture);
    const before = await staking.minStake(Role.Inference);
    for (const caller of [deployer, treasury]) {
      await expect(staking.connect(caller).setMinStake(Role.Inference, 1n))
        .to.be.revertedWithCustomError(staking, "OwnableUnauthorizedAccount")
        .withArgs(caller.address);
      await expect(staking.connect(caller).setSlasher(caller.address, true))
        .to.be.revertedWithCustomError(staking, "OwnableUnauthorizedAccount")
        .withArgs(caller.address);
    }
    // Nor can they bypass the governor by scheduling on the timelock themselves.
    const proposerRole = await timelock.PROPOSER_ROLE();
    const call = staking.interface.encodeFunctionData("setMinStake", [Role.Inference, 1n]);
    await expect(
      timelock
        .connect(deployer)
        .schedule(await staking.getAddress(), 0, call, ethers.ZeroHash, ethers.ZeroHash, 3600),
    )
      .to.be.revertedWithCustomError(timelock, "AccessControlUnauthorizedAccount")
      .withArgs(deployer.address, proposerRole);
    expect(await staking.minStake(Role.Inference)).to.equal(before);
  });

  it("a defeated proposal can't be queued and changes nothing", async function () {
    const { staking, governor, treasury, newMinStake, proposal } = await loadFixture(proposalFixture);
    const { targets, values, calldatas, description, descriptionHash } = proposal;
    await governor.connect(treasury).propose(targets, values, calldatas, description);
    const proposalId = await governor.hashProposal(targets, values, calldatas, descriptionHash);
    await mine(DEFAULT_ECONOMY_PARAMS.votingDelay + 1);
    await governor.connect(treasury).castVote(proposalId, VoteType.Against);
    await mine(DEFAULT_ECONOMY_PARAMS.votingPeriod);
    expect(await governor.state(proposalId)).to.equal(ProposalState.Defeated);
    const succeededBit = ethers.toBeHex(1n << ProposalState.Succeeded, 32);
    await expect(governor.queue(targets, values, calldatas, descriptionHash))
      .to.be.revertedWithCustomError(governor, "GovernorUnexpectedProposalState")
      .withArgs(proposalId, ProposalState.Defeated, succeededBit);
    expect(await staking.minStake(Role.Inference)).to.not.equal(newMinStake);
  });

  it("the proposer can cancel a pending proposal; others can't, and a canceled one never runs", async function () {
    const { staking, governor, treasury, other, newMinStake, proposal } = await loadFixture(proposalFixture);
    const { targets, values, calldatas, description, descriptionHash } = proposal;
    await governor.connect(treasury).propose(targets, values, calldatas, description);
    const proposalId = await governor.hashProposal(targets, values, calldatas, descriptionHash);
    // A call, not a transaction: a mined block would end the pending phase (voting delay: 1 block).
    await expect(governor.connect(other).cancel.staticCall(targets, values, calldatas, descriptionHash))
      .to.be.revertedWithCustomError(governor, "GovernorUnableToCancel")
      .withArgs(proposalId, other.address);
    await expect(governor.connect(treasury).cancel(targets, values, calldatas, descriptionHash))
      .to.emit(governor, "ProposalCanceled")
      .withArgs(proposalId);
    expect(await governor.state(proposalId)).to.equal(ProposalState.Canceled);
    await mine(DEFAULT_ECONOMY_PARAMS.votingDelay + 1);
    await expect(governor.connect(treasury).castVote(proposalId, VoteType.For)).to.be.revertedWithCustomError(
      governor,
      "GovernorUnexpectedProposalState",
    );
    expect(await staking.minStake(Role.Inference)).to.not.equal(newMinStake);
  });

  describe("is slower than a staker's exit", function () {
    /** Propose `calls` on NodeStaking or the timelock as the treasury (all the votes), vote and queue. */
    async function passAndQueue(
      f: Awaited<ReturnType<typeof productionEconomyFixture>>,
      calls: { target: string; data: string }[],
      description: string,
    ) {
      const targets = calls.map((c) => c.target);
      const values = calls.map(() => 0n);
      const calldatas = calls.map((c) => c.data);
      const descriptionHash = ethers.id(description);
      await f.governor.connect(f.treasury).propose(targets, values, calldatas, description);
      await mine(DEFAULT_ECONOMY_PARAMS.votingDelay + 1);
      const proposalId = await f.governor.hashProposal(targets, values, calldatas, descriptionHash);
      await f.governor.connect(f.treasury).castVote(proposalId, VoteType.For);
      await mine(DEFAULT_ECONOMY_PARAMS.votingPeriod);
      await f.governor.queue(targets, values, calldatas, descriptionHash);
      return () => f.governor.execute(targets, values, calldatas, descriptionHash);
    }

    async function capturedFixture() {
      const f = await productionEconomyFixture();
      await f.token.connect(f.treasury).delegate(f.treasury.address);
      await mine();
      return f;
    }

    it("the default deploy's timelock delay exceeds the unbonding delay", async function () {
      const { staking, timelock } = await loadFixture(productionEconomyFixture);
      expect(await timelock.getMinDelay()).to.be.greaterThan(await staking.unbondingDelay());
      expect(
        await (await ethers.getContractAt("OPGTimelock", await timelock.getAddress())).staking(),
      ).to.equal(await staking.getAddress());
    });

    it("the holder of the supply cannot authorise a slasher before a staker who saw the proposal has left", async function () {
      const f = await loadFixture(capturedFixture);
      const { staking, token, treasury, voter: staker, other: attacker } = f;
      const stake = ethers.parseEther("5000");
      await token.connect(treasury).transfer(staker.address, stake);
      await token.connect(staker).approve(await staking.getAddress(), stake);
      await staking.connect(staker).register(ROLES.inference, "");
      await staking.connect(staker).stake(stake);

      const execute = await passAndQueue(
        f,
        [
          {
            target: await staking.getAddress(),
            data: staking.interface.encodeFunctionData("setSlasher", [attacker.address, true]),
          },
        ],
        "Authorise a new slasher",
      );
      // The staker saw the proposal and asked to leave; the unbonding delay passes before the timelock's.
      await staking.connect(staker).requestUnstake(stake);
      await time.increase(DEFAULT_ECONOMY_PARAMS.unbondingDelay);
      await expect(execute()).to.be.revertedWithCustomError(f.timelock, "TimelockUnexpectedOperationState");
      await staking.connect(staker).withdraw();
      expect(await token.balanceOf(staker.address)).to.equal(stake);

      await time.increase(DEFAULT_ECONOMY_PARAMS.timelockDelay - DEFAULT_ECONOMY_PARAMS.unbondingDelay);
      await expect(execute()).to.emit(staking, "SlasherSet").withArgs(attacker.address, true);
      // The new slasher finds nothing left to take.
      expect(
        await staking
          .connect(attacker)
          .slash.staticCall(staker.address, stake, ethers.ZeroHash, attacker.address),
      ).to.equal(0n);
    });

    it("refuses a timelock delay at or below the unbonding delay, in the constructor and through a proposal", async function () {
      const f = await loadFixture(capturedFixture);
      const unbonding = DEFAULT_ECONOMY_PARAMS.unbondingDelay;
      const factory = new OPGTimelock__factory(f.deployer);
      await expect(factory.deploy(unbonding, [], [], f.deployer.address, await f.staking.getAddress()))
        .to.be.revertedWithCustomError(factory, "OPGTimelockFasterThanExit")
        .withArgs(unbonding, unbonding);
      const timelockAddress = await f.timelock.getAddress();
      const execute = await passAndQueue(
        f,
        [
          {
            target: timelockAddress,
            data: f.timelock.interface.encodeFunctionData("updateDelay", [unbonding]),
          },
        ],
        "Shorten the timelock to the unbonding delay",
      );
      await time.increase(DEFAULT_ECONOMY_PARAMS.timelockDelay);
      await expect(execute())
        .to.be.revertedWithCustomError(factory, "OPGTimelockFasterThanExit")
        .withArgs(unbonding, unbonding);
      expect(await f.timelock.getMinDelay()).to.equal(DEFAULT_ECONOMY_PARAMS.timelockDelay);
    });

    it("refuses an unbonding delay at or above the timelock delay through a proposal", async function () {
      const f = await loadFixture(capturedFixture);
      const delay = DEFAULT_ECONOMY_PARAMS.timelockDelay;
      const execute = await passAndQueue(
        f,
        [
          {
            target: await f.staking.getAddress(),
            data: f.staking.interface.encodeFunctionData("setUnbondingDelay", [delay]),
          },
        ],
        "Lengthen unbonding to the timelock delay",
      );
      await time.increase(delay);
      await expect(execute())
        .to.be.revertedWithCustomError(f.staking, "NodeStakingGovernanceFasterThanExit")
        .withArgs(delay, delay);
      expect(await f.staking.unbondingDelay()).to.equal(DEFAULT_ECONOMY_PARAMS.unbondingDelay);
    });

    it("NodeStaking refuses to move to a timelock that is not slower than unbonding", async function () {
      const { staking, governance, deployer } = await loadFixture(economyFixture);
      const fast = await new TimelockController__factory(deployer).deploy(3600, [], [], deployer.address);
      await expect(staking.connect(governance).transferOwnership(await fast.getAddress()))
        .to.be.revertedWithCustomError(staking, "NodeStakingGovernanceFasterThanExit")
        .withArgs(3600, DEFAULT_ECONOMY_PARAMS.unbondingDelay);
      expect(await staking.owner()).to.equal(governance.address);
    });
  });
});
