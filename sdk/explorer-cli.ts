import type { Command } from "commander";
import { CliError, errorLine, probeChainId, settings, withConnection, type Conn } from "./cli-common";

// Loaded by `opg --help`: the server module is imported when the command runs.

interface ExplorerFlags extends Conn {
  port: string;
  host: string;
  metrics?: string[];
  nodeMetrics: boolean;
  pollMs: string;
  fromBlock: string;
}

/** `opg explorer`: serve the explorer page against an RPC, a deployment and a data node, until Ctrl-C. */
export function registerExplorerCommands(program: Command): Command {
  withConnection(program.command("explorer"))
    .description(
      "serve the explorer page (models, nodes, tasks, timelines, proofs re-verified in the browser) until Ctrl-C",
    )
    .option("--port <port>", "port to serve on (0: any free port)", "8700")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--metrics <url...>", "extra node /metrics URLs to read proof times from")
    .option(
      "--no-node-metrics",
      "the page reads no node's registered endpoint (by default each viewer's browser fetches /metrics from " +
        "every registered endpoint, private addresses included); --metrics URLs are still read",
    )
    .option("--poll-ms <ms>", "how often the page asks the RPC for new blocks", "1000")
    .option("--from-block <n>", "first block to read the protocol's logs from (its deployment block)", "0")
    .action(async (o: ExplorerFlags) => {
      try {
        const s = settings(o);
        const port = Number(o.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new CliError(`--port ${o.port} is not a port`);
        const pollMs = Number(o.pollMs);
        if (!Number.isInteger(pollMs) || pollMs < 100)
          throw new CliError(`--poll-ms ${o.pollMs}: at least 100`);
        const fromBlock = Number(o.fromBlock);
        if (!Number.isInteger(fromBlock) || fromBlock < 0)
          throw new CliError(`--from-block ${o.fromBlock} is not a block number`);
        const [{ readDeployment }, { startExplorer }] = await Promise.all([
          import("../workers/runtime/chain"),
          import("./explorer-server"),
        ]);
        const deployment = readDeployment(s.deployment);
        const chainId = await probeChainId(s.rpcUrl);
        if (deployment.chainId !== undefined && BigInt(deployment.chainId) !== chainId) {
          throw new CliError(
            `${s.rpcUrl} serves chain ${chainId}, the deployment file ${s.deployment} is for chain ${deployment.chainId}`,
          );
        }
        const running = await startExplorer({
          rpc: s.rpcUrl,
          data: s.dataUrl,
          deployment: { ...deployment, chainId: Number(chainId) },
          metrics: o.metrics,
          nodeMetrics: o.nodeMetrics,
          pollMs,
          fromBlock,
          port,
          host: o.host,
        });
        process.stdout.write(
          `explorer: ${running.url} (chain ${chainId}, RPC ${s.rpcUrl}, data node ${s.dataUrl})\n`,
        );
        const stop = () => void running.close().then(() => process.exit(0));
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      } catch (e) {
        const inUse = (e as NodeJS.ErrnoException).code === "EADDRINUSE";
        const line = inUse
          ? `port ${o.port} on ${o.host} is in use: choose another with --port (0: any free port)`
          : errorLine(e);
        process.stderr.write(`error: ${line}\n`);
        process.exitCode = 1;
      }
    });
  return program;
}
