import { DeploymentFileError } from "./chain";
import { ConfigError, loadConfig, redact, schemaOverrides, type ConfigOf, type Schema } from "./config";
import { createLogger, type LogFormat, type Logger } from "./logger";
import { onShutdown } from "./service";
import { EXIT, StartupError } from "./startup";

/** What `opg node inference|verification` runs: a worker with start() and stop(). */
export interface NodeWorker {
  start(): Promise<number>;
  stop(): Promise<void>;
}

/** Load and validate a node's config; on bad fields print each one and exit 2 before starting anything. */
export function configOrExit<S extends Schema>(schema: S, opts: Record<string, unknown>): ConfigOf<S> {
  try {
    return loadConfig(schema, {
      file: opts.config as string | undefined,
      overrides: schemaOverrides(schema, opts),
    });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(EXIT.config);
    }
    throw e;
  }
}

/** The exit code for an error that stops a node from starting: its own, 2 for a bad deployment file, else 1. */
function exitCodeOf(e: unknown): number {
  if (e instanceof StartupError) return e.exitCode;
  if (e instanceof DeploymentFileError || e instanceof ConfigError) return EXIT.config;
  return EXIT.failure;
}

/** A bind failure said plainly: which address, and what to change. */
function describe(e: unknown, config: { metricsHost?: string; metricsPort?: number }): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "EADDRINUSE" || err.code === "EACCES") {
    return (
      `cannot serve /metrics on ${config.metricsHost}:${config.metricsPort} (${err.code}): another process ` +
      "(another node on this machine?) holds the port; choose another with --metrics-port"
    );
  }
  return err.message;
}

/**
 * The last resort: an exception nothing caught, or a rejection nothing handled, is logged as one fatal line
 * with its stack and the process exits 1, for its supervisor to restart it.
 *
 * Why exit rather than log and run on: no request can get here. Every request's failure is turned into a
 * response by ServiceHttp (a client gone mid-body, a timeout, a malformed head, a handler that throws), and
 * every stage's by the node's own retry and refusal logic, so what reaches this point is a bug of the node's
 * own code, after which its state (a journal row half written, a claim half made) is unknown. A crash with
 * its reason in the log is what lets such a bug be found; running on would hide it and act on that state.
 */
function exitOnBug(log: Logger) {
  const crash = (what: string) => (err: unknown) => {
    log.fatal({ err, exitCode: EXIT.failure }, `crashed: ${what} (a bug of the node; please report it)`);
    process.exit(EXIT.failure);
  };
  process.on("uncaughtException", crash("uncaught exception"));
  process.on("unhandledRejection", crash("unhandled rejection"));
}

/**
 * Run a chain node from parsed flags: validate the config (exit 2), log it without secrets, start the
 * worker (one fatal log line and exit 1 or 2 when it cannot start) and stop it cleanly on SIGTERM/SIGINT
 * (exit 0).
 */
export async function runNode<S extends Schema>(
  role: string,
  schema: S,
  opts: Record<string, unknown>,
  build: (config: ConfigOf<S>, log: Logger) => Promise<NodeWorker>,
): Promise<void> {
  const config = configOrExit(schema, opts);
  const c = config as Record<string, unknown>;
  const log = createLogger(role, c.logLevel as string | undefined, c.logFormat as LogFormat | undefined);
  exitOnBug(log);
  log.info({ config: redact(schema, config) }, "configuration");
  let worker: NodeWorker | undefined;
  onShutdown(log, async () => worker?.stop());
  try {
    worker = await build(config, log);
    await worker.start();
  } catch (e) {
    const exitCode = exitCodeOf(e);
    log.fatal({ exitCode }, `cannot start: ${describe(e, c as never)}`);
    await worker?.stop().catch(() => undefined);
    process.exit(exitCode);
  }
}
