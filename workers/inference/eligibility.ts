import { formatEther } from "ethers";

/** INodeStaking.Role.Inference. */
const INFERENCE_ROLE = 0;
const INFERENCE_BIT = 1 << INFERENCE_ROLE;

/** The staking reads the check needs (a typechain NodeStaking satisfies it). */
export interface StakingReads {
  nodeInfo(node: string): Promise<{
    bonded: bigint;
    locked: bigint;
    unbonding: bigint;
    roles: bigint;
    registered: boolean;
  }>;
  minStake(role: number): Promise<bigint>;
}

/** The task registry read the check needs (a typechain TaskRegistry satisfies it). */
export interface CollateralReads {
  releasableCollateralOf(node: string): Promise<bigint>;
}

/** Whether a node may claim tasks; when not, why, and the command that fixes it. */
export type Eligibility =
  | { ready: true; reason?: undefined; fix?: undefined; stake?: Record<string, string> }
  | { ready: false; reason: string; fix?: string; stake?: Record<string, string> };

const opg = (wei: bigint) => `${formatEther(wei)} OPG`;

/**
 * What TaskRegistry.claimTask requires of its caller, spelled out so the node can say what is missing:
 * registered, with the inference role, and free stake non-zero and at least the role's minimum
 * (NodeStaking.isEligible). The free stake counted is what the claim would see: bonded minus locked, plus
 * the collateral of settled claims that claimTask releases before it judges eligibility
 * (releasableCollateralOf); without that a node whose settled collateral pushed it under the minimum would
 * never claim again, and so never release it.
 */
export async function eligibilityProblem(
  staking: StakingReads,
  tasks: CollateralReads,
  address: string,
): Promise<Eligibility> {
  const [info, minimum, releasable] = await Promise.all([
    staking.nodeInfo(address),
    staking.minStake(INFERENCE_ROLE),
    tasks.releasableCollateralOf(address),
  ]);
  const register = "npx opg operator register --roles inference --endpoint <this node's URL>";
  if (!info.registered) {
    return { ready: false, reason: `${address} is not registered as a node`, fix: register };
  }
  if ((Number(info.roles) & INFERENCE_BIT) === 0) {
    return { ready: false, reason: `${address} is registered without the inference role`, fix: register };
  }
  const locked = BigInt(info.locked) - BigInt(releasable);
  const free = BigInt(info.bonded) - locked;
  const stake = {
    freeStake: formatEther(free),
    minStake: formatEther(minimum),
    locked: formatEther(locked),
    unbonding: formatEther(info.unbonding),
  };
  if (free === 0n || free < minimum) {
    const notes = [
      locked > 0n ? `${opg(locked)} locked as collateral for claimed tasks` : "",
      info.unbonding > 0n ? `${opg(info.unbonding)} unbonding` : "",
    ].filter(Boolean);
    return {
      ready: false,
      reason:
        `free stake ${opg(free)} is below the inference minimum ${opg(minimum)}` +
        (notes.length > 0 ? ` (${notes.join(", ")})` : ""),
      fix: `npx opg operator stake ${minimum > free ? formatEther(minimum - free) : "<amount>"}`,
      stake,
    };
  }
  return { ready: true, stake };
}
