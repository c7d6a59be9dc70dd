import pino from "pino";

export type Logger = pino.Logger;

/**
 * Structured JSON logs on stdout with the same field names in every process: `role`, `taskId`, `modelId`,
 * `tx`, `err`. Keys that could hold secrets are redacted wherever they appear.
 */
export function createLogger(role: string, level = process.env.OPG_LOG_LEVEL ?? "info"): Logger {
  return pino(
    {
      level,
      base: { role, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ["privateKey", "*.privateKey", "config.privateKey"], censor: "<redacted>" },
    },
    // Synchronous writes: the last lines before an exit (a fatal config error, SIGTERM) are never lost.
    pino.destination({ dest: 1, sync: true }),
  );
}
