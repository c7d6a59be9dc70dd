import type { Signer } from "ethers";
import { ethers } from "ethers";
import {
  DisputeManager__factory,
  EnclaveRegistry__factory,
  ModelRegistry__factory,
  NodeStaking__factory,
  OPGGovernor__factory,
  OPGTimelock__factory,
  OPGToken__factory,
  TaskRegistry__factory,
} from "../typechain-types";

/** The whole OPG supply (OPGToken.INITIAL_SUPPLY). */
export const OPG_SUPPLY = ethers.parseEther("1000000000");

/** Protocol parameters at deployment; every one of them is later changed only through governance. */
export interface EconomyParams {
  /** Receives the protocol fees and slashed stake, and the whole OPG supply unless `distribution` is set. */
  treasury: string;
  /** Who gets the OPG supply at deployment (amounts in wei, adding up to OPG_SUPPLY). Default: the treasury. */
  distribution?: { recipients: string[]; amounts: bigint[] };
  minInferenceStake: bigint;
  minVerificationStake: bigint;
  /** Seconds between requestUnstake and withdraw. */
  unbondingDelay: bigint;
  /** Share of a slash paid to the wronged party, in basis points. */
  slashBeneficiaryShareBps: number;
  /** Governor settings, in blocks (the token's clock is the block number). */
  votingDelay: number;
  votingPeriod: number;
  proposalThreshold: bigint;
  quorumPercent: number;
  /** Seconds a passed proposal waits in the timelock: must exceed `unbondingDelay` (enforced on chain). */
  timelockDelay: bigint;
  /**
   * Owner of the parameter setters. Production: undefined, which gives them to the timelock. Unit tests may
   * name an EOA to exercise setters without a full governance round.
   */
  parameterOwner?: string;
  /**
   * Enclave measurements approved at deployment (before governance takes over). Local chains approve the
   * development enclave's (tee/measurement.ts) so that TEE mode runs without hardware; production approves
   * none and lets governance vote on each.
   */
  approvedMeasurements?: { measurement: string; description: string }[];
  /** Seconds between an enclave key's registration and its first use (EnclaveRegistry; default 1 hour). */
  enclaveActivationDelay?: number;
}

export const DEFAULT_ECONOMY_PARAMS: Omit<EconomyParams, "treasury"> = {
  minInferenceStake: ethers.parseEther("1000"),
  minVerificationStake: ethers.parseEther("500"),
  unbondingDelay: 7n * 24n * 3600n,
  slashBeneficiaryShareBps: 5000,
  votingDelay: 1,
  votingPeriod: 50,
  proposalThreshold: 0n,
  quorumPercent: 4,
  // Longer than the unbonding delay, so stakers can leave before a proposal they oppose takes effect.
  timelockDelay: 8n * 24n * 3600n,
};

/**
 * Deploy OPG, node staking and governance (timelock + governor), wired as in production. Staking comes first
 * because the timelock checks its delay against the unbonding delay; staking is handed to the timelock (or
 * to `parameterOwner`) once the timelock exists.
 */
export async function deployEconomy(deployer: Signer, params: EconomyParams) {
  const deployerAddress = await deployer.getAddress();
  const distribution = params.distribution ?? { recipients: [params.treasury], amounts: [OPG_SUPPLY] };
  const token = await new OPGToken__factory(deployer).deploy(distribution.recipients, distribution.amounts);
  const staking = await new NodeStaking__factory(deployer).deploy(
    await token.getAddress(),
    deployerAddress,
    params.treasury,
    params.minInferenceStake,
    params.minVerificationStake,
    params.unbondingDelay,
    params.slashBeneficiaryShareBps,
  );
  await staking.waitForDeployment();
  // The deployer administers the timelock only long enough to hand the proposer role to the governor.
  const timelock = await new OPGTimelock__factory(deployer).deploy(
    params.timelockDelay,
    [],
    [ethers.ZeroAddress],
    deployerAddress,
    await staking.getAddress(),
  );
  const governor = await new OPGGovernor__factory(deployer).deploy(
    await token.getAddress(),
    await timelock.getAddress(),
    params.votingDelay,
    params.votingPeriod,
    params.proposalThreshold,
    params.quorumPercent,
  );
  const governorAddress = await governor.getAddress();
  await (await timelock.grantRole(await timelock.PROPOSER_ROLE(), governorAddress)).wait();
  await (await timelock.grantRole(await timelock.CANCELLER_ROLE(), governorAddress)).wait();
  const stakingOwner = params.parameterOwner ?? (await timelock.getAddress());
  if (stakingOwner !== deployerAddress) await (await staking.transferOwnership(stakingOwner)).wait();
  return { token, timelock, governor, staking, deployerAddress };
}

/** Give up the deployer's admin role on the timelock: from then on only governance changes parameters. */
export async function renounceTimelockAdmin(
  timelock: Awaited<ReturnType<typeof deployEconomy>>["timelock"],
  admin: string,
) {
  await (await timelock.renounceRole(await timelock.DEFAULT_ADMIN_ROLE(), admin)).wait();
}

/** Deploy the model registry and the task registry on top of an economy, and authorise the task registry
 * to lock collateral and slash on NodeStaking. `governance` must be able to call NodeStaking's setters
 * (the timelock in production: then use a proposal instead, see docs/deploy.md). */
export async function deployMarket(
  deployer: Signer,
  economy: Awaited<ReturnType<typeof deployEconomy>>,
  params: {
    treasury: string;
    parameterOwner: string;
    approvedMeasurements?: EconomyParams["approvedMeasurements"];
    enclaveActivationDelay?: number;
  },
  governance: Signer,
) {
  const models = await new ModelRegistry__factory(deployer).deploy();
  const tasks = await new TaskRegistry__factory(deployer).deploy(
    await economy.token.getAddress(),
    await models.getAddress(),
    await economy.staking.getAddress(),
    params.parameterOwner,
    params.treasury,
  );
  const tasksAddress = await tasks.getAddress();
  const tokenAddress = await economy.token.getAddress();
  const stakingAddress = await economy.staking.getAddress();
  const enclaves = await new EnclaveRegistry__factory(deployer).deploy(
    tokenAddress,
    stakingAddress,
    params.parameterOwner,
  );
  const disputes = await new DisputeManager__factory(deployer).deploy(
    tasksAddress,
    tokenAddress,
    stakingAddress,
    params.parameterOwner,
  );
  const enclavesAddress = await enclaves.getAddress();
  const disputesAddress = await disputes.getAddress();
  const owner = await ethersSignerFor(governance, params.parameterOwner, deployer);
  await (await tasks.connect(owner).setVerificationModules(enclavesAddress, disputesAddress)).wait();
  if (params.enclaveActivationDelay !== undefined) {
    const e = enclaves.connect(owner);
    await (
      await e.setKeyParameters(
        params.enclaveActivationDelay,
        await e.maxKeyLifetime(),
        await e.challengeBond(),
        await e.fraudSlash(),
      )
    ).wait();
  }
  for (const m of params.approvedMeasurements ?? []) {
    await (await enclaves.connect(owner).approveMeasurement(m.measurement, m.description)).wait();
  }
  const staking = economy.staking.connect(governance);
  await (await staking.setCollateralManager(tasksAddress, true)).wait();
  await (await staking.setSlasher(tasksAddress, true)).wait();
  // The dispute manager slashes the losing voters of a dispute, the enclave registry a node whose key's
  // attestation document governance judged forged.
  await (await staking.setSlasher(disputesAddress, true)).wait();
  await (await staking.setSlasher(enclavesAddress, true)).wait();
  return { models, tasks, tasksAddress, enclaves, enclavesAddress, disputes, disputesAddress };
}

/** The signer that owns the market's parameter setters right after deployment. */
async function ethersSignerFor(governance: Signer, parameterOwner: string, deployer: Signer) {
  return (await governance.getAddress()) === parameterOwner ? governance : deployer;
}

/**
 * The whole protocol as production runs it: the deployer wires every contract, then hands every parameter
 * setter to the timelock and gives up its timelock admin role, so from then on only governance changes
 * anything.
 */
export async function deployProtocol(deployer: Signer, params: EconomyParams) {
  const deployerAddress = await deployer.getAddress();
  const economy = await deployEconomy(deployer, { ...params, parameterOwner: deployerAddress });
  const market = await deployMarket(
    deployer,
    economy,
    {
      treasury: params.treasury,
      parameterOwner: deployerAddress,
      approvedMeasurements: params.approvedMeasurements,
      enclaveActivationDelay: params.enclaveActivationDelay,
    },
    deployer,
  );
  const timelockAddress = await economy.timelock.getAddress();
  await (await economy.staking.transferOwnership(timelockAddress)).wait();
  await (await market.tasks.transferOwnership(timelockAddress)).wait();
  await (await market.enclaves.transferOwnership(timelockAddress)).wait();
  await (await market.disputes.transferOwnership(timelockAddress)).wait();
  await renounceTimelockAdmin(economy.timelock, deployerAddress);
  return { ...economy, ...market };
}

/** Addresses of a deployment, as written to deployments/<network>.json for workers, SDK and dapps. */
export async function deploymentAddresses(d: Awaited<ReturnType<typeof deployProtocol>>) {
  return {
    token: await d.token.getAddress(),
    timelock: await d.timelock.getAddress(),
    governor: await d.governor.getAddress(),
    staking: await d.staking.getAddress(),
    models: await d.models.getAddress(),
    tasks: d.tasksAddress,
    enclaves: d.enclavesAddress,
    disputes: d.disputesAddress,
  };
}
