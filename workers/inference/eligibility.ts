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

/** Whether a node may claim tasks; when not, why, and the command that fixes it. */
export type Eligibility =
  | { ready: true; reason?: undefined; fix?: undefined; stake?: Record<string, string> }
  | { ready: false; reason: string; fix?: string; stake?: Record<string, string> };

const opg = (wei: bigint) => `${formatEther(wei)} OPG`;

/**
 * NodeStaking.isEligible(node, Inference) spelled out so the node can say what is missing: registered,
 * with the inference role, and free stake (bonded minus locked collateral) non-zero and at least the role's
 * minimum. TaskRegistry.claimTask reverts with TaskRegistryNodeNotEligible otherwise.
 */
export async function eligibilityProblem(staking: StakingReads, address: string): Promise<Eligibility> {
  const [info, minimum] = await Promise.all([staking.nodeInfo(address), staking.minStake(INFERENCE_ROLE)]);
  const register = "npx opg operator register --roles inference --endpoint <this node's URL>";
  if (!info.registered) {
    return { ready: false, reason: `${address} is not registered as a node`, fix: register };
  }
  if ((Number(info.roles) & INFERENCE_BIT) === 0) {
    return { ready: false, reason: `${address} is registered without the inference role`, fix: register };
  }
  const free = BigInt(info.bonded) - BigInt(info.locked);
  const stake = {
    freeStake: formatEther(free),
    minStake: formatEther(minimum),
    locked: formatEther(info.locked),
    unbonding: formatEther(info.unbonding),
  };
  if (free === 0n || free < minimum) {
    const notes = [
      info.locked > 0n ? `${opg(info.locked)} locked as collateral for claimed tasks` : "",
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
