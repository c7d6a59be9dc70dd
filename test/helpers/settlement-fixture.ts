import { ethers } from "hardhat";
import { DEFAULT_ECONOMY_PARAMS, deployEconomy, deployMarket } from "../../network/deploy";

/**
 * The protocol deployed with the real settlement path (economy and market), one inference node staked with
 * 5,000 OPG and a requester holding 100 OPG with the registry approved: what the settlement tests with real
 * bundles (DigitsSettlement, TabularSettlement) start from. Signers: deployer, treasury, governance,
 * modelOwner, requester, node.
 */
export async function protocolWithStakedNode() {
  const [deployer, treasury, governance, modelOwner, requester, node] = await ethers.getSigners();
  const economy = await deployEconomy(deployer, {
    ...DEFAULT_ECONOMY_PARAMS,
    treasury: treasury.address,
    parameterOwner: governance.address,
  });
  const market = await deployMarket(
    deployer,
    economy,
    { treasury: treasury.address, parameterOwner: governance.address },
    governance,
  );
  const { token, staking } = economy;
  await token.connect(treasury).transfer(node.address, ethers.parseEther("5000"));
  await token.connect(node).approve(await staking.getAddress(), ethers.MaxUint256);
  await staking.connect(node).register(1, "");
  await staking.connect(node).stake(ethers.parseEther("5000"));
  await token.connect(treasury).transfer(requester.address, ethers.parseEther("100"));
  await token.connect(requester).approve(market.tasksAddress, ethers.MaxUint256);
  return { ...economy, ...market, modelOwner, requester, node };
}
