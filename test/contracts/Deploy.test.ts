import { expect } from "chai";
import { ethers } from "hardhat";
import { DEFAULT_ECONOMY_PARAMS, deployProtocol } from "../../scripts/lib/deploy";

describe("deployProtocol", function () {
  it("wires the market and leaves every setter with the timelock", async function () {
    const [deployer, treasury] = await ethers.getSigners();
    const d = await deployProtocol(deployer, { ...DEFAULT_ECONOMY_PARAMS, treasury: treasury.address });
    const timelock = await d.timelock.getAddress();
    expect(await d.staking.owner()).to.equal(timelock);
    expect(await d.tasks.owner()).to.equal(timelock);
    expect(await d.staking.isCollateralManager(d.tasksAddress)).to.equal(true);
    expect(await d.staking.isSlasher(d.tasksAddress)).to.equal(true);
    expect(await d.timelock.hasRole(await d.timelock.DEFAULT_ADMIN_ROLE(), deployer.address)).to.equal(false);
    expect(
      await d.timelock.hasRole(await d.timelock.PROPOSER_ROLE(), await d.governor.getAddress()),
    ).to.equal(true);
    await expect(d.tasks.setFeeShares(0, 0))
      .to.be.revertedWithCustomError(d.tasks, "OwnableUnauthorizedAccount")
      .withArgs(deployer.address);
  });
});
