import { Command } from "commander";
import { registerDataClientCommands, registerDataCommands } from "./data/cli";
import { registerInferenceCommands } from "./inference/cli";

/**
 * The `opg node` group: one subcommand per long-running node role (data, inference, verification). The
 * modules imported here only define commands (commander and the config schemas); each action loads its
 * implementation when it runs, so `opg --help` does not pay for ethers, snarkjs or onnxruntime.
 */
export function registerNodeCommands(program: Command): Command {
  const node = program
    .command("node")
    .description(
      "run a network node as a long-running service (logs on stdout, /metrics, /healthz, clean stop on SIGTERM)",
    );
  registerDataCommands(node);
  registerInferenceCommands(node);
  return node;
}

/** Everything the workers add to `opg`: the `node` group and the `data` client commands. */
export function registerWorkerCommands(program: Command): { node: Command; data: Command } {
  const node = registerNodeCommands(program);
  const data = registerDataClientCommands(program);
  return { node, data };
}
