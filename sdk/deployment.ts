import type { Provider } from "ethers";
import type { Deployment } from "../workers/runtime/chain";
import { OpgClientError } from "./errors";

const CONTRACTS = ["token", "staking", "models", "tasks"] as const;

/**
 * Check that `deployment` is a deployment on the chain `provider` serves: the chain id it names (when it
 * names one) is the provider's, and each of its four addresses holds code. Without it, a deployment file
 * written for another chain fails at the first read with ethers' "could not decode result data".
 */
export async function checkDeploymentOnChain(
  provider: Provider,
  deployment: Deployment,
  source: string,
): Promise<void> {
  let chainId: bigint;
  try {
    ({ chainId } = await provider.getNetwork());
  } catch (e) {
    throw new OpgClientError(`cannot reach the RPC to check ${source}: ${(e as Error).message}`);
  }
  if (deployment.chainId !== undefined && BigInt(deployment.chainId) !== chainId) {
    throw new OpgClientError(
      `${source} is for chain ${deployment.chainId}, but the RPC serves chain ${chainId}: ` +
        `use that chain's deployment file or its RPC URL`,
    );
  }
  const codes = await Promise.all(CONTRACTS.map((name) => provider.getCode(deployment[name])));
  const missing = CONTRACTS.filter((_, i) => codes[i] === "0x");
  if (missing.length > 0) {
    throw new OpgClientError(
      `${source}: no contract at ${missing.map((n) => `${n} ${deployment[n]}`).join(", ")} on chain ` +
        `${chainId}: the file is for another deployment (or the chain was restarted since it was written)`,
    );
  }
}
