import fs from "node:fs";
import { ethers } from "ethers";
import { DEV_ENCLAVE_MEASUREMENT } from "../tee/measurement";
import { OPG_SUPPLY, type EconomyParams } from "./deploy";

/** Networks where a throw-away deployment may default everything to the deployer. */
const LOCAL_NETWORKS = new Set(["hardhat", "localhost"]);
const LOCAL_CHAIN_IDS = new Set([31337n, 1337n]);

export interface DeploySettings {
  treasury: string;
  distribution: { recipients: string[]; amounts: bigint[] };
  /** Local chains only: the development enclave's measurement, approved at deployment. */
  approvedMeasurements?: EconomyParams["approvedMeasurements"];
  /** Local chains only: enclave keys usable at once (no re-check window before first use). */
  enclaveActivationDelay?: number;
}

/**
 * The treasury and the OPG distribution of a deployment. On a local chain (hardhat, localhost, chain id
 * 31337 or 1337) both default to the deployer. Anywhere else they must be given explicitly: a deployer who
 * silently keeps the whole supply could out-vote everyone and, through governance, authorise a slasher.
 *   OPG_TREASURY=0x...        the treasury (protocol fees, slashed stake)
 *   OPG_DISTRIBUTION=file     JSON { "0xaddress": "amount in OPG", ... } adding up to 1,000,000,000 OPG
 */
export function deploySettings(args: {
  network: string;
  chainId: bigint;
  deployer: string;
  env: NodeJS.ProcessEnv;
}): DeploySettings {
  const local = LOCAL_NETWORKS.has(args.network) && LOCAL_CHAIN_IDS.has(args.chainId);
  const treasuryEnv = args.env.OPG_TREASURY?.trim();
  const distributionFile = args.env.OPG_DISTRIBUTION?.trim();
  if (!local && (!treasuryEnv || !distributionFile)) {
    throw new Error(
      `refusing to deploy to ${args.network} (chain ${args.chainId}) without an explicit treasury and ` +
        `token distribution: set OPG_TREASURY=0x... and OPG_DISTRIBUTION=<file.json> ` +
        `({"0xaddress": "OPG amount", ...} adding up to ${ethers.formatEther(OPG_SUPPLY)} OPG)`,
    );
  }
  const treasury = treasuryEnv ?? args.deployer;
  if (!ethers.isAddress(treasury) || BigInt(treasury) === 0n) {
    throw new Error(`OPG_TREASURY is not a non-zero address: ${treasury}`);
  }
  const distribution = distributionFile
    ? readDistribution(distributionFile)
    : { recipients: [treasury], amounts: [OPG_SUPPLY] };
  const dev = local ? LOCAL_TEE_SETTINGS : {};
  return { treasury: ethers.getAddress(treasury), distribution, ...dev };
}

/** TEE settings of a local chain: the development enclave approved, keys usable at once. */
export const LOCAL_TEE_SETTINGS = {
  approvedMeasurements: [
    {
      measurement: DEV_ENCLAVE_MEASUREMENT,
      description: "development enclave (no hardware; local chains only)",
    },
  ],
  enclaveActivationDelay: 0,
};

/** Reads and checks a distribution file: addresses, positive amounts, a total of exactly the supply. */
export function readDistribution(file: string): DeploySettings["distribution"] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`cannot read the token distribution ${file}: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(`${file} must be a JSON object {"0xaddress": "OPG amount", ...}`);
  }
  const recipients: string[] = [];
  const amounts: bigint[] = [];
  for (const [address, amount] of Object.entries(parsed as Record<string, unknown>)) {
    if (!ethers.isAddress(address) || BigInt(address) === 0n) {
      throw new Error(`${file}: ${address} is not a non-zero address`);
    }
    let wei: bigint;
    try {
      wei = ethers.parseEther(String(amount));
    } catch {
      throw new Error(`${file}: amount for ${address} is not a number of OPG: ${String(amount)}`);
    }
    if (wei <= 0n) throw new Error(`${file}: amount for ${address} must be positive`);
    recipients.push(ethers.getAddress(address));
    amounts.push(wei);
  }
  const total = amounts.reduce((a, b) => a + b, 0n);
  if (recipients.length === 0 || total !== OPG_SUPPLY) {
    throw new Error(
      `${file}: the distribution adds up to ${ethers.formatEther(total)} OPG, ` +
        `not the supply of ${ethers.formatEther(OPG_SUPPLY)} OPG`,
    );
  }
  return { recipients, amounts };
}
