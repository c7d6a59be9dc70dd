import fs from "node:fs";
import path from "node:path";
import { ethers, network } from "hardhat";
import { DEFAULT_ECONOMY_PARAMS, deployProtocol, deploymentAddresses } from "../network/deploy";
import { deploySettings } from "../network/deploy-settings";

/**
 * Deploy the protocol to the selected network and write the addresses to deployments/<network>.json.
 *   npx hardhat node                                   # a local chain, in another terminal
 *   npx hardhat run scripts/deploy.ts --network localhost
 * OPG_TREASURY sets the treasury and OPG_DISTRIBUTION a JSON file { "0xaddress": "OPG amount", ... } that
 * splits the supply. On a local chain both default to the deployer; on any other chain both are required.
 */
async function main() {
  const [deployer] = await ethers.getSigners();
  const { chainId } = await ethers.provider.getNetwork();
  const settings = deploySettings({
    network: network.name,
    chainId,
    deployer: deployer.address,
    env: process.env,
  });
  const deployed = await deployProtocol(deployer, { ...DEFAULT_ECONOMY_PARAMS, ...settings });
  const addresses = await deploymentAddresses(deployed);
  const out = path.join(__dirname, "..", "deployments", `${network.name}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ chainId: Number(chainId), ...addresses }, null, 2) + "\n");
  console.log(JSON.stringify({ network: network.name, chainId: Number(chainId), ...addresses }, null, 2));
}

main().catch((error) => {
  const message = error instanceof Error ? error.message : String(error);
  console.error(message);
  // Hardhat's HH108 ("Cannot connect to the network ...") does not say where it looked or how to change it.
  if (/Cannot connect to the network/.test(message) && "url" in network.config) {
    console.error(
      `No JSON-RPC endpoint answers at ${network.config.url}. Start one (npx hardhat node, or npx opg dev), or ` +
        `point the localhost network elsewhere with OPG_RPC_URL, e.g. OPG_RPC_URL=http://127.0.0.1:8546.`,
    );
  }
  process.exitCode = 1;
});
