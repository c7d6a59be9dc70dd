import fs from "node:fs";
import { JsonRpcProvider, Wallet, type Provider } from "ethers";
import {
  DisputeManager__factory,
  EnclaveRegistry__factory,
  ModelRegistry__factory,
  NodeStaking__factory,
  OPGToken__factory,
  TaskRegistry__factory,
} from "../../typechain-types";

/** Addresses of a deployment, as scripts/deploy.ts writes them (chainId: the chain it was deployed on). */
export interface Deployment {
  chainId?: number;
  token: string;
  staking: string;
  models: string;
  tasks: string;
  /** EnclaveRegistry (TEE mode); absent in deployments from before it existed. */
  enclaves?: string;
  /** DisputeManager (optimistic mode); absent in deployments from before it existed. */
  disputes?: string;
}

/** A deployment file that is missing, not JSON, or lacks a contract address. */
export class DeploymentFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeploymentFileError";
  }
}

export function readDeployment(file: string): Deployment {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new DeploymentFileError(`deployment file ${file}: ${(e as Error).message}`);
  }
  for (const key of ["token", "staking", "models", "tasks"]) {
    if (typeof parsed[key] !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(parsed[key] as string)) {
      throw new DeploymentFileError(`deployment file ${file}: "${key}" is missing or not an address`);
    }
  }
  return parsed as unknown as Deployment;
}

/** Provider, the node's wallet and typed handles on the protocol contracts. */
export function connect(rpcUrl: string, privateKey: string, deployment: Deployment) {
  // Polling only (no filters kept on the node), no batching so one failed call fails alone, and no response
  // cache so every nonce and status read is fresh.
  const provider = new JsonRpcProvider(rpcUrl, undefined, {
    staticNetwork: true,
    batchMaxCount: 1,
    polling: true,
    cacheTimeout: -1,
  });
  const wallet = new Wallet(privateKey, provider);
  return {
    provider,
    wallet,
    token: OPGToken__factory.connect(deployment.token, wallet),
    staking: NodeStaking__factory.connect(deployment.staking, wallet),
    models: ModelRegistry__factory.connect(deployment.models, wallet),
    tasks: TaskRegistry__factory.connect(deployment.tasks, wallet),
    /** EnclaveRegistry (TEE mode); undefined when the deployment predates it. */
    enclaves: deployment.enclaves ? EnclaveRegistry__factory.connect(deployment.enclaves, wallet) : undefined,
    /** DisputeManager (optimistic mode); undefined when the deployment predates it. */
    disputes: deployment.disputes ? DisputeManager__factory.connect(deployment.disputes, wallet) : undefined,
  };
}

export type Chain = ReturnType<typeof connect>;

/** Chain ids of local development chains (hardhat node, anvil, ganache): they mine a block per transaction. */
export const LOCAL_CHAIN_IDS: readonly bigint[] = [31337n, 1337n];

/**
 * The confirmations a node waits for: an explicit number as given; `auto` is 0 on a local automining chain
 * (no further block may ever come after a submission) and 2 elsewhere.
 */
export function effectiveConfirmations(configured: number | "auto", chainId: bigint): number {
  if (configured !== "auto") return configured;
  return LOCAL_CHAIN_IDS.includes(chainId) ? 0 : 2;
}

/** A deployment file that does not describe the chain the RPC endpoint serves. */
export class DeploymentMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeploymentMismatchError";
  }
}

const CONTRACTS = ["token", "staking", "models", "tasks"] as const;

/**
 * Check that `deployment` describes the chain behind `provider`: its chain id (when the file records one)
 * is the provider's, and each protocol contract has code at its address. Throws a DeploymentMismatchError
 * naming both chains, or the contract without code, instead of the `could not decode result data` the
 * first contract call would give. `where` names the file and the endpoint in the message.
 */
export async function checkDeployment(
  provider: Provider,
  deployment: Pick<Deployment, "chainId" | (typeof CONTRACTS)[number]>,
  where: { file?: string; rpcUrl?: string } = {},
): Promise<void> {
  const file = where.file ? `deployment file ${where.file}` : "the deployment";
  const rpc = where.rpcUrl ? `the RPC endpoint ${where.rpcUrl}` : "the RPC endpoint";
  const chainId = (await provider.getNetwork()).chainId;
  if (deployment.chainId !== undefined && BigInt(deployment.chainId) !== chainId) {
    throw new DeploymentMismatchError(
      `${file} is for chain ${deployment.chainId} but ${rpc} serves chain ${chainId}: ` +
        `point --rpc-url at chain ${deployment.chainId} or --deployment at a deployment on chain ${chainId}`,
    );
  }
  for (const name of CONTRACTS) {
    const address = deployment[name];
    if ((await provider.getCode(address)) === "0x") {
      throw new DeploymentMismatchError(
        `${file} names ${address} as the ${name} contract but there is no contract code there on chain ` +
          `${chainId} (${rpc}): the chain was restarted or the file is from another deployment; ` +
          "deploy again (npx hardhat run scripts/deploy.ts --network <network>) or point --deployment at the right file",
      );
    }
  }
}
