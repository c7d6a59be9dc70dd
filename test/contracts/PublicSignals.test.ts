import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { PublicSignalsHarness__factory } from "../../typechain-types";
import { packValues, taskBinding, valuesPerWord } from "../../zkml";

/** Deterministic pseudo-random signed values that fit `bits` signed bits, the extremes included. */
function values(bits: number, count: number, seed: number): bigint[] {
  const half = 1n << BigInt(bits - 1);
  const out = [-half, half - 1n, 0n];
  let x = BigInt(seed);
  while (out.length < count) {
    x = (x * 6364136223846793005n + 1442695040888963407n) % (1n << 64n);
    out.push((x % (2n * half)) - half);
  }
  return out.slice(0, count);
}

describe("PublicSignals (library, through a test harness)", function () {
  async function harness() {
    const [deployer] = await ethers.getSigners();
    return new PublicSignalsHarness__factory(deployer).deploy();
  }

  it("valueAt reads back every value the TypeScript packer packed, at every width", async function () {
    const h = await loadFixture(harness);
    for (const bits of [2, 8, 16, 40, 63, 126]) {
      const vs = values(bits, 2 * valuesPerWord(bits) + 1, bits);
      const words = packValues(vs, bits);
      for (let i = 0; i < vs.length; i++) {
        expect(await h.valueAt(words, i, bits), `value ${i} at ${bits} bits`).to.equal(vs[i]);
      }
    }
  });

  it("valueAt refuses a width of 0 or above 252 bits and an index beyond the words", async function () {
    const h = await loadFixture(harness);
    const words = packValues([1n, 2n, 3n], 126); // 2 values per word, 2 words
    for (const bits of [0, 253]) {
      await expect(h.valueAt(words, 0, bits))
        .to.be.revertedWithCustomError(h, "PublicSignalsIndexOutOfRange")
        .withArgs(0n, 2n, bits);
    }
    expect(await h.valueAt(words, 3, 126)).to.equal(-(1n << 125n)); // padding of the last word decodes as the minimum
    await expect(h.valueAt(words, 4, 126))
      .to.be.revertedWithCustomError(h, "PublicSignalsIndexOutOfRange")
      .withArgs(4n, 2n, 126);
  });

  it("taskBinding equals the TypeScript binding the provers use", async function () {
    const h = await loadFixture(harness);
    const [a, b] = await ethers.getSigners();
    for (const [chainId, taskId] of [
      [31337n, 1n],
      [1n, 2n ** 200n],
    ]) {
      expect(await h.taskBinding(chainId, a.address, taskId, b.address)).to.equal(
        taskBinding(chainId, a.address, taskId, b.address),
      );
    }
  });
});
