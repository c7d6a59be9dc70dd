import fs from "node:fs";
import pino from "pino";

export type Logger = pino.Logger;

/** json: one JSON object a line; pretty: one readable line per entry; auto: pretty on a terminal, else json. */
export type LogFormat = "auto" | "json" | "pretty";

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO ",
  40: "WARN ",
  50: "ERROR",
  60: "FATAL",
};
const LEVEL_COLOURS: Record<number, string> = { 40: "\x1b[33m", 50: "\x1b[31m", 60: "\x1b[1;31m" };
/** Fields every line carries or the pretty line shows in its own place. */
const HIDDEN = new Set(["level", "time", "msg", "pid", "role", "hostname"]);

function showValue(v: unknown): string {
  if (typeof v === "string") return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v);
}

/**
 * One pino JSON line as `12:00:01.234 INFO  inference  task claimed taskId=3 tx=0x...`: the time of day,
 * the level, the role, the message, then the other fields as key=value (objects as JSON). An `err` object
 * shows its message, and its stack on the following lines.
 */
export function prettyLine(json: string, colour = false): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json);
  } catch {
    return json.endsWith("\n") ? json : `${json}\n`;
  }
  const level = Number(entry.level);
  const time = typeof entry.time === "string" ? entry.time.slice(11, 23) : "";
  const fields: string[] = [];
  let stack = "";
  for (const [k, v] of Object.entries(entry)) {
    if (HIDDEN.has(k) || v === undefined) continue;
    if (k === "err" && v && typeof v === "object") {
      const err = v as { message?: string; stack?: string };
      fields.push(`err=${showValue(err.message ?? "")}`);
      if (err.stack) stack = `\n    ${err.stack.split("\n").slice(1).join("\n    ").trim()}`;
      continue;
    }
    fields.push(`${k}=${showValue(v)}`);
  }
  const name = LEVEL_NAMES[level] ?? String(level);
  const shown = colour && LEVEL_COLOURS[level] ? `${LEVEL_COLOURS[level]}${name}\x1b[0m` : name;
  const role = typeof entry.role === "string" ? ` ${entry.role}` : "";
  const rest = fields.length > 0 ? `  ${fields.join(" ")}` : "";
  return `${time} ${shown}${role}  ${entry.msg ?? ""}${rest}${stack}\n`;
}

/** A pino destination that writes each line as `prettyLine` to `fd`, synchronously (no line lost at exit). */
export function prettyDestination(fd = 1, colour = false): pino.DestinationStream {
  return { write: (line: string) => void fs.writeSync(fd, prettyLine(line, colour)) };
}

/** `auto` resolved: pretty when stdout is a terminal. */
export function resolveLogFormat(format: LogFormat | undefined = undefined): "json" | "pretty" {
  const f = format ?? (process.env.OPG_LOG_FORMAT as LogFormat | undefined) ?? "auto";
  if (f === "json" || f === "pretty") return f;
  return process.stdout.isTTY ? "pretty" : "json";
}

/**
 * Logs on stdout with the same field names in every process: `role`, `taskId`, `modelId`, `tx`, `err`.
 * JSON lines when piped (for log collectors), readable lines on a terminal; `format` (OPG_LOG_FORMAT)
 * forces either. Keys that could hold secrets are redacted wherever they appear.
 */
export function createLogger(
  role: string,
  level = process.env.OPG_LOG_LEVEL ?? "info",
  format?: LogFormat,
): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { role, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ["privateKey", "*.privateKey", "config.privateKey"], censor: "<redacted>" },
  };
  if (resolveLogFormat(format) === "pretty") {
    return pino(options, prettyDestination(1, Boolean(process.stdout.isTTY)));
  }
  // Synchronous writes: the last lines before an exit (a fatal config error, SIGTERM) are never lost.
  return pino(options, pino.destination({ dest: 1, sync: true }));
}
