import { Command } from "commander";
import { registerDataClientCommands, registerDataCommands } from "./data/cli";
import { registerInferenceCommands } from "./inference/cli";

/**
 * The `opg node` group: one subcommand per long-running node role. Register further roles (inference,
 * verification) here next to `data`.
 */
export function registerNodeCommands(program: Command): Command {
  const node = program
    .command("node")
    .description("run a network node as a long-running service (JSON logs, /metrics, /healthz, SIGTERM)");
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
