import { ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import type { OPGToken } from "../../typechain-types";
import { DEFAULT_ECONOMY_PARAMS, deployEconomy, renounceTimelockAdmin } from "../../network/deploy";

/** NodeStaking's roles, as the contract numbers them (`enum Role`). */
export const Role = { Inference: 0, Verification: 1 } as const;
/** Registration bitmasks: `1 << role`. */
export const ROLES = { inference: 1, verification: 2, both: 3 } as const;

export const MIN_INFERENCE = DEFAULT_ECONOMY_PARAMS.minInferenceStake;
export const MIN_VERIFICATION = DEFAULT_ECONOMY_PARAMS.minVerificationStake;
export const UNBONDING_DELAY = DEFAULT_ECONOMY_PARAMS.unbondingDelay;
export const SLASH_SHARE_BPS = BigInt(DEFAULT_ECONOMY_PARAMS.slashBeneficiaryShareBps);
/** OPG the treasury hands each node operator in the fixtures. */
export const NODE_FUNDS = ethers.parseEther("100000");

/**
 * The economy with an EOA (`governance`) owning NodeStaking's setters, so unit tests call them directly.
 * `manager` is authorised to lock collateral and `slasher` to slash; `nodes` hold OPG and have approved the
 * staking contract for all of it, but are not registered.
 */
export async function economyFixture() {
  const [deployer, treasury, governance, manager, slasher, stranger, beneficiary, ...rest] =
    await ethers.getSigners();
  const nodes = rest.slice(0, 4);
  const economy = await deployEconomy(deployer, {
    ...DEFAULT_ECONOMY_PARAMS,
    treasury: treasury.address,
    parameterOwner: governance.address,
  });
  const { token, staking } = economy;
  const stakingAddress = await staking.getAddress();
  await staking.connect(governance).setCollateralManager(manager.address, true);
  await staking.connect(governance).setSlasher(slasher.address, true);
  for (const node of nodes) {
    await token.connect(treasury).transfer(node.address, NODE_FUNDS);
    await token.connect(node).approve(stakingAddress, ethers.MaxUint256);
  }
  return {
    ...economy,
    stakingAddress,
    deployer,
    treasury,
    governance,
    manager,
    slasher,
    stranger,
    beneficiary,
    nodes,
  };
}

/** `economyFixture` plus nodes[0] registered for both roles with 2,000 OPG bonded. */
export async function stakedNodeFixture() {
  const f = await economyFixture();
  const [node] = f.nodes;
  await f.staking.connect(node).register(ROLES.both, "https://node0.example");
  await f.staking.connect(node).stake(ethers.parseEther("2000"));
  return { ...f, node };
}

/** The economy wired as in production: the timelock owns NodeStaking and the deployer renounced its admin. */
export async function productionEconomyFixture() {
  const [deployer, treasury, voter, other] = await ethers.getSigners();
  const economy = await deployEconomy(deployer, { ...DEFAULT_ECONOMY_PARAMS, treasury: treasury.address });
  await renounceTimelockAdmin(economy.timelock, deployer.address);
  return { ...economy, deployer, treasury, voter, other };
}

/** Sign an EIP-2612 permit from `owner` for `spender`, with the token's own EIP-712 domain and next nonce. */
export async function signPermit(
  token: OPGToken,
  owner: HardhatEthersSigner,
  spender: string,
  value: bigint,
  deadline: bigint,
) {
  const domain = await token.eip712Domain();
  const nonce = await token.nonces(owner.address);
  const signature = await owner.signTypedData(
    {
      name: domain.name,
      version: domain.version,
      chainId: domain.chainId,
      verifyingContract: domain.verifyingContract,
    },
    {
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    { owner: owner.address, spender, value, nonce, deadline },
  );
  const { v, r, s } = ethers.Signature.from(signature);
  return { deadline, v, r, s };
}
