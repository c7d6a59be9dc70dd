import fs from "node:fs";
import path from "node:path";
import { Command, CommanderError } from "commander";
import { packageRoot } from "../zkml/prover/paths";
import { registerZkmlCommands } from "../zkml/cli";
import { registerWorkerCommands } from "../workers/cli";
import { registerClientCommands } from "../sdk/cli";
import { registerTokenCommands } from "../sdk/token-cli";
import { registerTeeCommands } from "../sdk/tee-cli";
import { registerDevCommands } from "../network/devnet-cli";
import { registerExplorerCommands } from "../sdk/explorer-cli";

/**
 * The `opg` program. Only commander and the command definition modules are loaded here; every action loads
 * its implementation (ethers, snarkjs, onnxruntime, the contract bindings, sqlite) with `await import()` when
 * it runs, so that `opg --help` starts in a fraction of a second.
 */

export const EXIT_CODES =
  "Exit codes: 0 success; 1 error (a bad argument, a failed call, a missing file); 2 bad configuration\n" +
  "(a node's config does not validate); 3 disagreement (an audit or a proof does not verify).\n" +
  "Set OPG_DEBUG=1 to see stack traces of unexpected errors.";

export function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** The message of an error, with its stack only when OPG_DEBUG is set. */
export function describeError(e: unknown): string {
  if (process.env.OPG_DEBUG && e instanceof Error && e.stack) return e.stack;
  return e instanceof Error ? e.message : String(e);
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("opg")
    .description("OPG verifiable inference network tools")
    .version(packageVersion(), "-V, --version", "print the opg version")
    .showSuggestionAfterError()
    .addHelpText("after", `\n${EXIT_CODES}`);
  registerZkmlCommands(program);
  registerWorkerCommands(program);
  registerClientCommands(program);
  registerTokenCommands(program);
  registerTeeCommands(program);
  registerDevCommands(program);
  registerExplorerCommands(program);
  return program;
}

function fatal(e: unknown): void {
  process.stderr.write(`error: ${describeError(e)}\n`);
  process.exitCode = 1;
}

/** Entry point of bin/opg.js. */
export async function main(argv: string[]): Promise<void> {
  process.on("uncaughtException", (e) => {
    fatal(e);
    process.exit(1);
  });
  process.on("unhandledRejection", (e) => {
    fatal(e);
    process.exit(1);
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    // commander has printed its own one-line message for usage errors (exitOverride is not used: it exits)
    if (e instanceof CommanderError) process.exitCode = e.exitCode;
    else fatal(e);
  }
}
