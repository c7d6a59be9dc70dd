import { Command, InvalidArgumentError } from "commander";

/**
 * `opg dev`: the command definition only. The implementation (ethers, hardhat, the zkml compiler) is loaded
 * when the command runs, so that `opg --help` stays fast.
 */

const DEFAULT_MODEL = "test/fixtures/models/digits_mlp.onnx";

function port(what: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^[0-9]+$/.test(raw) || n < 1 || n > 65_535) {
      throw new InvalidArgumentError(`${what} must be a port number (1-65535), got "${raw}"`);
    }
    return n;
  };
}

export function registerDevCommands(program: Command): Command {
  return program
    .command("dev")
    .description(
      "run a local development network until Ctrl-C: hardhat node, deployed protocol, data node, an example " +
        "model, staked operators and a funded dapp account (keys printed), an inference and a verification node",
    )
    .option("--port <n>", "JSON-RPC port of the hardhat node", port("--port"), 8545)
    .option("--data-port <n>", "port of the data node", port("--data-port"), 8600)
    .option(
      "--metrics-port <n>",
      "/metrics and /healthz of the inference node; the verification node's is the next port",
      port("--metrics-port"),
      9464,
    )
    .option("--deployment <file>", "where the deployment file is written", "deployments/localhost.json")
    .option("--state-dir <dir>", "data node store, node state and logs (emptied at every start)", ".opg/dev")
    .option("--model-onnx <file>", "the ONNX model to compile and publish", DEFAULT_MODEL)
    .option("--model-input <file>", "an example input for the model, shown in the next commands")
    .option("--no-model", "publish no model")
    .option("--no-nodes", "start no inference or verification node")
    .option("--explorer-port <n>", "port of the explorer page", port("--explorer-port"), 8700)
    .option("--no-explorer", "serve no explorer page")
    .option("--verbose", "print the children's logs here too (they always go to <state-dir>/logs)")
    .addHelpText(
      "after",
      "\nThe accounts are Hardhat's public development keys (#0 deployer, #1 inference operator,\n" +
        "#2 verification operator, #3 dapp): never use them on a public network. Ctrl-C or SIGTERM stops\n" +
        "every process it started and exits 0; a process that dies on its own stops the rest, exit 1.\n",
    )
    .action(
      async (o: {
        port: number;
        dataPort: number;
        metricsPort: number;
        deployment: string;
        stateDir: string;
        modelOnnx: string;
        modelInput?: string;
        model: boolean;
        nodes: boolean;
        verbose?: boolean;
        explorer: boolean;
        explorerPort: number;
      }) => {
        const { runDevnet } = await import("./devnet");
        const code = await runDevnet({
          ...o,
          verbose: Boolean(o.verbose),
          explorerPort: o.explorer ? o.explorerPort : false,
        });
        // Providers, compiler threads and timers would otherwise keep the process alive.
        process.exit(code);
      },
    );
}
