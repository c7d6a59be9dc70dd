import type { Command } from "commander";
import { addSchemaOptions } from "../runtime/config";
import { verificationSchema } from "../verification/config";
import { inferenceSchema } from "./config";

// Command definitions only: the node implementations (ethers, snarkjs, onnxruntime, SQLite, prom-client)
// are loaded inside the actions, so `opg --help` stays fast.

const HELP_AFTER =
  "\nPrecedence: flag > environment variable > config file (--config, keys by their camelCase names) > default.\n" +
  "Logs: readable on a terminal, JSON lines when piped (--log-format). /healthz answers 503 while the node is\n" +
  "not ready. Exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot run (RPC endpoint or data node unreachable,\n" +
  "port in use), 2 bad configuration (invalid option, deployment file missing or for another chain).";

function withConfigFile(cmd: Command): Command {
  return cmd.option("--config <file>", "JSON config file with any of the options below");
}

export function registerInferenceCommands(node: Command) {
  addSchemaOptions(withConfigFile(node.command("inference")), inferenceSchema)
    .description(
      "run an inference node: claim tasks, execute, and settle them by proof (ZK), by posting for the " +
        "challenge window (optimistic) or with an enclave signature (TEE, --enclave dev)",
    )
    .addHelpText("after", HELP_AFTER)
    .action(async (opts: Record<string, unknown>) => {
      const { runNode } = await import("../runtime/run-node");
      await runNode("inference", inferenceSchema, opts, async (config, log) => {
        const { InferenceNode } = await import("./node");
        return new InferenceNode(config, log);
      });
    });

  addSchemaOptions(withConfigFile(node.command("verification")), verificationSchema)
    .description(
      "run a verification node: re-verify every settled task and report disagreements; sign attestations " +
        "of matching optimistic results off chain, challenge wrong ones (by proof, or by bond and vote) and " +
        "vote on disputes",
    )
    .addHelpText("after", HELP_AFTER)
    .action(async (opts: Record<string, unknown>) => {
      const { runNode } = await import("../runtime/run-node");
      await runNode("verification", verificationSchema, opts, async (config, log) => {
        const { VerificationNode } = await import("../verification/node");
        return new VerificationNode(config, log);
      });
    });
}
