import fs from "node:fs";
import { JsonRpcProvider, Wallet } from "ethers";
import {
  ModelRegistry__factory,
  NodeStaking__factory,
  OPGToken__factory,
  TaskRegistry__factory,
} from "../../typechain-types";

/** Addresses of a deployment, as scripts/deploy.ts writes them. */
export interface Deployment {
  chainId: number;
  token: string;
  staking: string;
  models: string;
  tasks: string;
}

export function readDeployment(file: string): Deployment {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`deployment file ${file}: ${(e as Error).message}`);
  }
  for (const key of ["token", "staking", "models", "tasks"]) {
    if (typeof parsed[key] !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(parsed[key] as string)) {
      throw new Error(`deployment file ${file}: "${key}" is missing or not an address`);
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
  };
}

export type Chain = ReturnType<typeof connect>;
