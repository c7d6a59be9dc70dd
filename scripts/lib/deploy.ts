import type { Signer } from "ethers";
import { ethers } from "ethers";
import {
  ModelRegistry__factory,
  NodeStaking__factory,
  OPGGovernor__factory,
  OPGToken__factory,
  TaskRegistry__factory,
  TimelockController__factory,
} from "../../typechain-types";

/** Protocol parameters at deployment; every one of them is later changed only through governance. */
export interface EconomyParams {
  /** Receives the whole OPG supply and the protocol's share of slashes and fees. */
  treasury: string;
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
  /** Seconds a passed proposal waits in the timelock. */
  timelockDelay: bigint;
  /**
   * Owner of the parameter setters. Production: undefined, which gives them to the timelock. Unit tests may
   * name an EOA to exercise setters without a full governance round.
   */
  parameterOwner?: string;
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
  timelockDelay: 3600n,
};

/** Deploy OPG, governance (timelock + governor) and node staking, wired as in production. */
export async function deployEconomy(deployer: Signer, params: EconomyParams) {
  const deployerAddress = await deployer.getAddress();
  const token = await new OPGToken__factory(deployer).deploy(params.treasury);
  // The deployer administers the timelock only long enough to hand the proposer role to the governor.
  const timelock = await new TimelockController__factory(deployer).deploy(
    params.timelockDelay,
    [],
    [ethers.ZeroAddress],
    deployerAddress,
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

  const staking = await new NodeStaking__factory(deployer).deploy(
    await token.getAddress(),
    params.parameterOwner ?? (await timelock.getAddress()),
    params.treasury,
    params.minInferenceStake,
    params.minVerificationStake,
    params.unbondingDelay,
    params.slashBeneficiaryShareBps,
  );
  await staking.waitForDeployment();
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
  params: { treasury: string; parameterOwner: string },
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
  await (await economy.staking.connect(governance).setCollateralManager(tasksAddress, true)).wait();
  await (await economy.staking.connect(governance).setSlasher(tasksAddress, true)).wait();
  return { models, tasks, tasksAddress };
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
    { treasury: params.treasury, parameterOwner: deployerAddress },
    deployer,
  );
  const timelockAddress = await economy.timelock.getAddress();
  await (await economy.staking.transferOwnership(timelockAddress)).wait();
  await (await market.tasks.transferOwnership(timelockAddress)).wait();
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
  };
}
