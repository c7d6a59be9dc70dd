import type { Command } from "commander";
import { ConfigError, describeSchema, loadConfig, redact } from "../runtime/config";
import { createLogger } from "../runtime/logger";
import { onShutdown } from "../runtime/service";
import { inferenceSchema } from "./config";
import { InferenceNode } from "./node";
import { verificationSchema } from "../verification/config";
import { VerificationNode } from "../verification/node";

/** Options every chain node takes on the command line; each overrides its OPG_* variable and the config file. */
function withChainOptions(cmd: Command) {
  return cmd
    .option("--config <file>", "JSON config file (keys as listed below)")
    .option("--rpc-url <url>", "JSON-RPC endpoint")
    .option("--deployment <file>", "deployment file with contract addresses")
    .option("--data-url <url>", "data node URL")
    .option("--models <ids>", "comma-separated model ids to serve")
    .option("--state-dir <dir>", "journal, bundle cache and reports")
    .option("--metrics-port <port>", "port of /metrics and /healthz")
    .option("--confirmations <n>", "blocks behind the head before acting")
    .option("--poll-interval-ms <ms>", "chain polling interval")
    .option("--dry-run", "do everything but send transactions");
}

function overrides(opts: Record<string, unknown>) {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(opts)) if (k !== "config" && v !== undefined) out[k] = v;
  return out;
}

/** Load and validate a node's config; on bad fields print each one and exit 2 before starting anything. */
function configOrExit<S extends Parameters<typeof loadConfig>[0]>(schema: S, opts: Record<string, unknown>) {
  try {
    return loadConfig(schema, { file: opts.config as string | undefined, overrides: overrides(opts) });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}

export function registerInferenceCommands(node: Command) {
  withChainOptions(node.command("inference"))
    .description("run an inference node: claim tasks, execute, prove and settle")
    .option("--min-fee <opg>", "smallest fee worth claiming, in OPG")
    .option("--concurrency <n>", "tasks in flight (proving threads)")
    .option("--max-callback-gas <gas>", "skip tasks whose callback gas limit is above this (default 500000)")
    .option("--take-over-claims <bool>", "claim tasks whose claimer let its claim lapse (default true)")
    .addHelpText("after", `\nConfiguration (flag, env or config file):\n${describeSchema(inferenceSchema)}`)
    .action(async (opts) => {
      const config = configOrExit(inferenceSchema, opts);
      const log = createLogger("inference");
      log.info({ config: redact(inferenceSchema, config) }, "configuration");
      const worker = new InferenceNode(config, log);
      onShutdown(log, () => worker.stop());
      await worker.start();
    });

  withChainOptions(node.command("verification"))
    .description("run a verification node: re-verify every settled task and report disagreements")
    .option("--setup-ptau <file>", "phase-1 file to check the models' trusted setup against")
    .addHelpText(
      "after",
      `\nConfiguration (flag, env or config file):\n${describeSchema(verificationSchema)}`,
    )
    .action(async (opts) => {
      const config = configOrExit(verificationSchema, opts);
      const log = createLogger("verification");
      log.info({ config: redact(verificationSchema, config) }, "configuration");
      const worker = new VerificationNode(config, log);
      onShutdown(log, () => worker.stop());
      await worker.start();
    });
}
