import { time } from "@nomicfoundation/hardhat-network-helpers";

/**
 * Pins the next block's timestamp to one second after the latest block and returns it. A deadline counted
 * from it cannot have passed when the next transaction mines, however slow the machine: the in-process chain
 * otherwise stamps the next block with the wall clock, which after a `loadFixture` revert to an old snapshot
 * (or on a loaded machine) can be minutes past the latest block's time.
 */
export async function pinNextBlockTime(): Promise<bigint> {
  const at = BigInt(await time.latest()) + 1n;
  await time.setNextBlockTimestamp(at);
  return at;
}
