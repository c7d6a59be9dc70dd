import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, mine, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";
import { OPGToken__factory } from "../../typechain-types";
import { economyFixture, signPermit } from "../helpers/economy-fixture";

describe("OPGToken", function () {
  describe("deployment", function () {
    it("is OpenGradient / OPG with 18 decimals", async function () {
      const { token } = await loadFixture(economyFixture);
      expect(await token.name()).to.equal("OpenGradient");
      expect(await token.symbol()).to.equal("OPG");
      expect(await token.decimals()).to.equal(18n);
    });

    it("mints the whole fixed supply to the named recipients and nothing else", async function () {
      const [deployer, treasury, operator] = await ethers.getSigners();
      const supply = ethers.parseEther("1000000000");
      const toOperator = ethers.parseEther("250000000");
      const token = await new OPGToken__factory(deployer).deploy(
        [treasury.address, operator.address],
        [supply - toOperator, toOperator],
      );
      expect(await token.INITIAL_SUPPLY()).to.equal(supply);
      expect(await token.totalSupply()).to.equal(supply);
      expect(await token.balanceOf(treasury.address)).to.equal(supply - toOperator);
      expect(await token.balanceOf(operator.address)).to.equal(toOperator);
      expect(await token.balanceOf(deployer.address)).to.equal(0n);
    });

    it("reverts for a distribution that is empty, uneven, names the zero address or misses the supply", async function () {
      const [deployer, treasury] = await ethers.getSigners();
      const factory = new OPGToken__factory(deployer);
      const supply = ethers.parseEther("1000000000");
      await expect(factory.deploy([], [])).to.be.revertedWithCustomError(
        factory,
        "OPGTokenInvalidDistribution",
      );
      await expect(factory.deploy([treasury.address], [])).to.be.revertedWithCustomError(
        factory,
        "OPGTokenInvalidDistribution",
      );
      await expect(factory.deploy([ethers.ZeroAddress], [supply])).to.be.revertedWithCustomError(
        factory,
        "OPGTokenInvalidDistribution",
      );
      await expect(factory.deploy([treasury.address], [supply - 1n]))
        .to.be.revertedWithCustomError(factory, "OPGTokenDistributionTotal")
        .withArgs(supply - 1n, supply);
    });

    it("has no mint function and no owner in its ABI", async function () {
      const { token } = await loadFixture(economyFixture);
      const names: string[] = [];
      token.interface.forEachFunction((fn) => names.push(fn.name));
      expect(names).to.include("transfer");
      for (const name of names) expect(name.toLowerCase()).not.to.match(/mint|owner/);
      expect(names).not.to.include("mint");
    });
  });

  describe("permit", function () {
    it("sets an allowance from an EIP-2612 signature and consumes the nonce", async function () {
      const { token, nodes, stranger } = await loadFixture(economyFixture);
      const [owner] = nodes;
      const value = ethers.parseEther("12");
      const deadline = BigInt(await time.latest()) + 3600n;
      const nonce = await token.nonces(owner.address);
      const signature = await signPermit(token, owner, stranger.address, value, deadline);
      // Anyone may submit the permit; the signature is what authorises.
      await token
        .connect(stranger)
        .permit(owner.address, stranger.address, value, deadline, signature.v, signature.r, signature.s);
      expect(await token.allowance(owner.address, stranger.address)).to.equal(value);
      expect(await token.nonces(owner.address)).to.equal(nonce + 1n);

      await expect(
        token
          .connect(stranger)
          .permit(owner.address, stranger.address, value, deadline, signature.v, signature.r, signature.s),
      )
        .to.be.revertedWithCustomError(token, "ERC2612InvalidSigner")
        .withArgs(anyValue, owner.address);
    });

    it("reverts with ERC2612ExpiredSignature after the deadline", async function () {
      const { token, nodes, stranger } = await loadFixture(economyFixture);
      const [owner] = nodes;
      const deadline = BigInt(await time.latest()) - 1n;
      const { v, r, s } = await signPermit(token, owner, stranger.address, 1n, deadline);
      await expect(token.permit(owner.address, stranger.address, 1n, deadline, v, r, s))
        .to.be.revertedWithCustomError(token, "ERC2612ExpiredSignature")
        .withArgs(deadline);
      expect(await token.allowance(owner.address, stranger.address)).to.equal(0n);
    });
  });

  describe("votes", function () {
    it("counts nothing until the holder delegates, then follows transfers", async function () {
      const { token, treasury, nodes } = await loadFixture(economyFixture);
      const [holder, delegatee] = nodes;
      const balance = await token.balanceOf(holder.address);
      expect(await token.getVotes(holder.address)).to.equal(0n);

      await expect(token.connect(holder).delegate(delegatee.address))
        .to.emit(token, "DelegateChanged")
        .withArgs(holder.address, ethers.ZeroAddress, delegatee.address);
      expect(await token.delegates(holder.address)).to.equal(delegatee.address);
      expect(await token.getVotes(delegatee.address)).to.equal(balance);

      const block = await ethers.provider.getBlockNumber();
      await token.connect(treasury).transfer(holder.address, 5n);
      expect(await token.getVotes(delegatee.address)).to.equal(balance + 5n);
      await mine();
      expect(await token.getPastVotes(delegatee.address, block)).to.equal(balance);
    });

    it("self-delegation gives the holder its own weight", async function () {
      const { token, treasury } = await loadFixture(economyFixture);
      await token.connect(treasury).delegate(treasury.address);
      expect(await token.getVotes(treasury.address)).to.equal(await token.balanceOf(treasury.address));
    });
  });
});
