import type { Command } from "commander";
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

// Loaded by `opg --help`: ethers, the bindings and the SDK are imported when an action runs.

const ROLE_BITS: Record<string, number> = { inference: 1, verification: 2 };

function roleMask(raw: string): number {
  let mask = 0;
  for (const name of raw.split(",").map((r) => r.trim().toLowerCase())) {
    const bit = ROLE_BITS[name];
    if (!bit) throw new CliError(`unknown role "${name}": use inference, verification or both`);
    mask |= bit;
  }
  return mask;
}

/** ethers, the SDK's transaction helpers and the amount parser: what every operator action needs. */
async function libs() {
  const [{ ethers }, client, { parse }] = await Promise.all([
    import("ethers"),
    import("./client"),
    import("../workers/runtime/config"),
  ]);
  return { ethers, sendTx: client.sendTx, approveFromWallet: client.approveFromWallet, parse };
}

async function connectAll(o: Conn, withKey: boolean) {
  const s = settings(o);
  const [{ NodeStaking__factory, OPGToken__factory, TaskRegistry__factory }, { readDeployment }] =
    await Promise.all([import("../typechain-types"), import("../workers/runtime/chain")]);
  if (withKey) await keyFromEnv(); // a missing key is said before the endpoint is asked anything
  const provider = await rpc(s.rpcUrl);
  const deployment = readDeployment(s.deployment);
  const signer = withKey ? await signerFrom(provider) : undefined;
  const runner = signer ?? provider;
  return {
    provider,
    signer,
    staking: NodeStaking__factory.connect(deployment.staking, runner),
    tasks: TaskRegistry__factory.connect(deployment.tasks, runner),
    token: OPGToken__factory.connect(deployment.token, runner),
  };
}

/** The contracts with the operator's key (OPG_PRIVATE_KEY) as the runner. */
async function contracts(o: Conn) {
  const c = await connectAll(o, true);
  return { ...c, signer: c.signer!, me: c.signer!.address };
}

/** `opg operator ...`: what a node operator does on chain besides running the nodes. */
export function registerOperatorCommands(program: Command): Command {
  const op = program
    .command("operator")
    .description(
      "register, stake, unstake and collect earnings as a node operator (key from OPG_PRIVATE_KEY)",
    );

  withConnection(op.command("register"))
    .description("register this key as a node (or update its roles and endpoint)")
    .requiredOption("--roles <list>", "inference, verification or inference,verification")
    .requiredOption("--endpoint <url>", "where the node can be reached (its /healthz), published on chain")
    .action(async (o: Conn & { roles: string; endpoint: string }) => {
      await run(async (keep) => {
        const c = await contracts(o);
        const { sendTx } = await libs();
        keep(c.provider);
        const roles = roleMask(o.roles);
        const address = c.me;
        const registered = (await c.staking.nodeInfo(address)).registered;
        const receipt = await sendTx(registered ? "updateNode" : "register", c.staking.interface, () =>
          registered ? c.staking.updateNode(roles, o.endpoint) : c.staking.register(roles, o.endpoint),
        );
        process.stdout.write(json({ node: address, roles: o.roles, endpoint: o.endpoint, tx: receipt.hash }));
      });
    });

  withConnection(op.command("stake <amount>"))
    .description("bond OPG (approves exactly the amount first when needed)")
    .action(async (amount: string, o: Conn) => {
      await run(async (keep) => {
        const c = await contracts(o);
        const { ethers, sendTx, approveFromWallet, parse } = await libs();
        keep(c.provider);
        const wei = parse.opgAmount(amount);
        await approveFromWallet(
          c.token,
          c.signer,
          await c.staking.getAddress(),
          wei,
          `asked to stake ${amount}`,
        );
        const receipt = await sendTx("stake", c.staking.interface, () => c.staking.stake(wei));
        process.stdout.write(json({ node: c.me, staked: ethers.formatEther(wei), tx: receipt.hash }));
      });
    });

  withConnection(op.command("unstake <amount>"))
    .description("start unbonding free stake; `withdraw` pays it out after the unbonding delay")
    .action(async (amount: string, o: Conn) => {
      await run(async (keep) => {
        const c = await contracts(o);
        const { ethers, sendTx, parse } = await libs();
        keep(c.provider);
        const receipt = await sendTx("requestUnstake", c.staking.interface, () =>
          c.staking.requestUnstake(parse.opgAmount(amount)),
        );
        const info = await c.staking.nodeInfo(c.me);
        process.stdout.write(
          json({
            unbonding: ethers.formatEther(info.unbonding),
            releaseAt: new Date(Number(info.unbondingReleaseAt) * 1000).toISOString(),
            tx: receipt.hash,
          }),
        );
      });
    });

  withConnection(op.command("withdraw"))
    .description("pay out stake whose unbonding delay has passed")
    .action(async (o: Conn) => {
      await run(async (keep) => {
        const c = await contracts(o);
        const { sendTx } = await libs();
        keep(c.provider);
        const receipt = await sendTx("withdraw", c.staking.interface, () => c.staking.withdraw());
        process.stdout.write(json({ tx: receipt.hash }));
      });
    });

  withConnection(op.command("claim-earnings"))
    .description("withdraw the fees earned from verified tasks, and release the collateral of settled claims")
    .option("--to <address>", "where to send the OPG (default: the node's own address)")
    .action(async (o: Conn & { to?: string }) => {
      await run(async (keep) => {
        const c = await contracts(o);
        const { ethers, sendTx } = await libs();
        keep(c.provider);
        const to = o.to ?? c.me;
        if (!ethers.isAddress(to)) throw new CliError(`--to ${to} is not an address`);
        const credits = await c.tasks.creditsOf(c.me);
        const releasable = await c.tasks.releasableCollateralOf(c.me);
        // withdrawCredits touches only the registry's books; collateral is released by its own call.
        // With nothing at all to claim, withdrawCredits is still sent so that its revert says so.
        let tx: string | undefined;
        if (credits > 0n || releasable === 0n) {
          tx = (await sendTx("withdrawCredits", c.tasks.interface, () => c.tasks.withdrawCredits(to))).hash;
        }
        let releaseTx: string | undefined;
        if (releasable > 0n) {
          releaseTx = (
            await sendTx("releaseCollateral", c.tasks.interface, () => c.tasks.releaseCollateral(c.me))
          ).hash;
        }
        process.stdout.write(
          json({
            to,
            amount: ethers.formatEther(credits),
            tx,
            collateralReleased: ethers.formatEther(releasable),
            releaseTx,
          }),
        );
      });
    });

  withConnection(op.command("status [address]"))
    .description("stake, collateral, unbonding, eligibility per role and earnings of a node (read only)")
    .action(async (address: string | undefined, o: Conn) => {
      await run(async (keep) => {
        const c = await connectAll(o, address === undefined);
        const { ethers } = await libs();
        keep(c.provider);
        const node = address ?? c.signer!.address;
        if (!ethers.isAddress(node)) throw new CliError(`${node} is not an address`);
        const info = await c.staking.nodeInfo(node);
        const eth = (v: bigint) => ethers.formatEther(v);
        process.stdout.write(
          json({
            node,
            registered: info.registered,
            roles: Object.keys(ROLE_BITS).filter((r) => Number(info.roles) & ROLE_BITS[r]),
            endpoint: info.endpoint,
            bonded: eth(info.bonded),
            locked: eth(info.locked),
            free: eth(await c.staking.freeStakeOf(node)),
            unbonding: eth(info.unbonding),
            unbondingReleaseAt:
              info.unbonding > 0n ? new Date(Number(info.unbondingReleaseAt) * 1000).toISOString() : null,
            eligible: {
              inference: await c.staking.isEligible(node, 0),
              verification: await c.staking.isEligible(node, 1),
            },
            minStake: {
              inference: eth(await c.staking.minStake(0)),
              verification: eth(await c.staking.minStake(1)),
            },
            earnings: eth(await c.tasks.creditsOf(node)),
            releasableCollateral: eth(await c.tasks.releasableCollateralOf(node)),
          }),
        );
      });
    });
  return op;
}
