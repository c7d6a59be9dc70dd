import type { Command } from "commander";
import type { JsonRpcProvider } from "ethers";
import {
  CliError,
  json,
  keyFromEnv,
  rpc,
  run,
  settings,
  signerFrom,
  withConnection,
  type Conn,
} from "./cli-common";

// Loaded by `opg --help`: ethers and the contract bindings are imported when an action runs.

/** Chain ids where `opg token fund` may mint ETH and hand out the deployer's OPG (hardhat node, anvil). */
export const LOCAL_CHAIN_IDS: readonly bigint[] = [31337n, 1337n];

/**
 * The first account of Hardhat's and anvil's default mnemonic ("test test ... junk"): the deployer of a
 * local deployment, which holds the whole OPG supply there (network/deploy-settings.ts). Public
 * knowledge, worthless anywhere but a local chain, and used only after the chain id check below.
 */
export const LOCAL_DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/** Refuse anything but a local development chain, naming the chain. */
export function assertLocalChain(chainId: bigint, rpcUrl: string): void {
  if (!LOCAL_CHAIN_IDS.includes(chainId)) {
    throw new CliError(
      `refusing to fund accounts on chain ${chainId} (${rpcUrl}): \`opg token fund\` works only on a local ` +
        `development chain (chain id ${LOCAL_CHAIN_IDS.join(" or ")}); use \`opg token transfer\` elsewhere`,
    );
  }
}

async function connect(o: Conn, provider: JsonRpcProvider) {
  const s = settings(o);
  const [{ OPGToken__factory, TaskRegistry__factory, NodeStaking__factory }, { readDeployment }, { ethers }] =
    await Promise.all([import("../typechain-types"), import("../workers/runtime/chain"), import("ethers")]);
  const deployment = readDeployment(s.deployment);
  const chainId = (await provider.getNetwork()).chainId;
  if (deployment.chainId !== undefined && BigInt(deployment.chainId) !== chainId) {
    throw new CliError(
      `deployment file ${s.deployment} is for chain ${deployment.chainId} but ${s.rpcUrl} serves chain ` +
        `${chainId}: point --rpc-url or --deployment at the same chain`,
    );
  }
  if ((await provider.getCode(deployment.token)) === "0x")
    throw new CliError(
      `no OPG token at ${deployment.token} on ${s.rpcUrl} (deployment file ${s.deployment})`,
    );
  return {
    ethers,
    chainId,
    token: OPGToken__factory.connect(deployment.token, provider),
    tasks: TaskRegistry__factory.connect(deployment.tasks, provider),
    staking: NodeStaking__factory.connect(deployment.staking, provider),
  };
}

async function address(raw: string, what: string): Promise<string> {
  const { ethers } = await import("ethers");
  if (!ethers.isAddress(raw)) throw new CliError(`${what} "${raw}" is not an address`);
  return ethers.getAddress(raw);
}

async function opgAmount(raw: string, what: string): Promise<bigint> {
  const { parse } = await import("../workers/runtime/config");
  try {
    return parse.opgAmount(raw);
  } catch {
    throw new CliError(`${what} "${raw}" is not an amount (a decimal number such as 10 or 0.5)`);
  }
}

/** `opg token balance|transfer|fund`: OPG and, on local chains, ETH for development accounts. */
export function registerTokenCommands(program: Command): Command {
  const token = program
    .command("token")
    .description("OPG balances and transfers; funding of accounts on a local development chain");

  withConnection(token.command("balance [address]"))
    .description(
      "OPG in the wallet, prepaid task-registry credits and stake of an address (default: OPG_PRIVATE_KEY's)",
    )
    .action(async (raw: string | undefined, o: Conn) => {
      await run(async (keep) => {
        if (raw === undefined) await keyFromEnv();
        const provider = await rpc(settings(o).rpcUrl);
        keep(provider);
        const who = raw === undefined ? (await signerFrom(provider)).address : await address(raw, "address");
        const c = await connect(o, provider);
        const fmt = c.ethers.formatEther;
        const info = await c.staking.nodeInfo(who);
        process.stdout.write(
          json({
            address: who,
            opg: fmt(await c.token.balanceOf(who)),
            credits: fmt(await c.tasks.creditsOf(who)),
            staked: fmt(info.bonded),
            unbonding: fmt(info.unbonding),
            eth: fmt(await provider.getBalance(who)),
          }),
        );
      });
    });

  withConnection(token.command("transfer <to> <amount>"))
    .description("send OPG (an amount such as 10 or 0.5) from OPG_PRIVATE_KEY's wallet")
    .action(async (rawTo: string, rawAmount: string, o: Conn) => {
      await run(async (keep) => {
        const to = await address(rawTo, "recipient");
        const amount = await opgAmount(rawAmount, "amount");
        await keyFromEnv();
        const provider = await rpc(settings(o).rpcUrl);
        keep(provider);
        const signer = await signerFrom(provider);
        const c = await connect(o, provider);
        const held = await c.token.balanceOf(signer.address);
        if (held < amount) {
          throw new CliError(
            `${signer.address} holds ${c.ethers.formatEther(held)} OPG, cannot send ${rawAmount}`,
          );
        }
        const { sendTx } = await import("./client");
        const receipt = await sendTx("transfer", c.token.interface, () =>
          c.token.connect(signer).transfer(to, amount),
        );
        process.stdout.write(
          json({ from: signer.address, to, amount: c.ethers.formatEther(amount), tx: receipt.hash }),
        );
      });
    });

  withConnection(token.command("fund <address>"))
    .description(
      "local chains only (chain id 31337 or 1337): give an account ETH (hardhat_setBalance) and OPG (from " +
        "OPG_PRIVATE_KEY, else from the local deployer, the first Hardhat account)",
    )
    .option("--opg <amount>", "OPG to transfer", "1000")
    .option("--eth <amount>", "ETH balance to set (not added)", "100")
    .action(async (rawTo: string, o: Conn & { opg: string; eth: string }) => {
      await run(async (keep) => {
        const to = await address(rawTo, "address");
        const opg = await opgAmount(o.opg, "--opg");
        const eth = await opgAmount(o.eth, "--eth"); // same 18-decimal format
        const s = settings(o);
        if (process.env.OPG_PRIVATE_KEY) await keyFromEnv();
        const provider = await rpc(s.rpcUrl);
        keep(provider);
        assertLocalChain((await provider.getNetwork()).chainId, s.rpcUrl);
        const c = await connect(o, provider);
        const from = process.env.OPG_PRIVATE_KEY
          ? await signerFrom(provider)
          : new c.ethers.Wallet(LOCAL_DEPLOYER_KEY, provider);
        let tx: string | undefined;
        if (opg > 0n) {
          const held = await c.token.balanceOf(from.address);
          if (held < opg) {
            throw new CliError(
              `${from.address} holds ${c.ethers.formatEther(held)} OPG, cannot give ${o.opg}` +
                (process.env.OPG_PRIVATE_KEY
                  ? " (unset OPG_PRIVATE_KEY to fund from the local deployer)"
                  : ""),
            );
          }
          const { sendTx } = await import("./client");
          tx = (await sendTx("transfer", c.token.interface, () => c.token.connect(from).transfer(to, opg)))
            .hash;
        }
        try {
          await provider.send("hardhat_setBalance", [to, c.ethers.toQuantity(eth)]);
        } catch {
          await provider.send("anvil_setBalance", [to, c.ethers.toQuantity(eth)]);
        }
        process.stdout.write(
          json({
            address: to,
            from: from.address,
            opgSent: c.ethers.formatEther(opg),
            opg: c.ethers.formatEther(await c.token.balanceOf(to)),
            eth: c.ethers.formatEther(await provider.getBalance(to)),
            tx,
          }),
        );
      });
    });
  return token;
}
