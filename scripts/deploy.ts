import fs from "node:fs";
import path from "node:path";
import { ethers, network } from "hardhat";
import { DEFAULT_ECONOMY_PARAMS, deployProtocol, deploymentAddresses } from "./lib/deploy";

/**
 * Deploy the protocol to the selected network and write the addresses to deployments/<network>.json.
 *   npx hardhat node                                   # a local chain, in another terminal
 *   npx hardhat run scripts/deploy.ts --network localhost
 * OPG_TREASURY sets the treasury (default: the deployer).
 */
async function main() {
  const [deployer] = await ethers.getSigners();
  const treasury = process.env.OPG_TREASURY ?? deployer.address;
  const deployed = await deployProtocol(deployer, { ...DEFAULT_ECONOMY_PARAMS, treasury });
  const addresses = await deploymentAddresses(deployed);
  const { chainId } = await ethers.provider.getNetwork();
  const out = path.join(__dirname, "..", "deployments", `${network.name}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ chainId: Number(chainId), ...addresses }, null, 2) + "\n");
  console.log(JSON.stringify({ network: network.name, chainId: Number(chainId), ...addresses }, null, 2));
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
