import fs from "node:fs";
import { Option, type Command } from "commander";

/**
 * Typed, validated configuration for every node process. Each option has a description, a default and an
 * `OPG_*` environment name; values come from (lowest to highest precedence) defaults, a JSON config file,
 * the environment, and explicit overrides (CLI flags). Validation runs at start and reports every bad field
 * at once, each with a message naming it. Secret options are never printed.
 */
export interface OptionSpec<T> {
  description: string;
  /** Environment variable, e.g. OPG_RPC_URL. */
  env: string;
  default?: T;
  secret?: boolean;
  parse(raw: unknown): T;
}

export type Schema = Record<string, OptionSpec<unknown>>;
export type ConfigOf<S extends Schema> = { [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

export function loadConfig<S extends Schema>(
  schema: S,
  sources: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {},
): ConfigOf<S> {
  const env = sources.env ?? process.env;
  const problems: string[] = [];
  let fromFile: Record<string, unknown> = {};
  if (sources.file) {
    try {
      fromFile = JSON.parse(fs.readFileSync(sources.file, "utf8"));
      if (typeof fromFile !== "object" || fromFile === null || Array.isArray(fromFile)) {
        throw new Error("the file must hold a JSON object");
      }
    } catch (e) {
      problems.push(`config file ${sources.file}: ${(e as Error).message}`);
      fromFile = {};
    }
    for (const key of Object.keys(fromFile)) {
      if (!(key in schema)) problems.push(`config file ${sources.file}: unknown option "${key}"`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) {
    const override = sources.overrides?.[key];
    const raw =
      override !== undefined ? override : env[spec.env] !== undefined ? env[spec.env] : fromFile[key];
    const origin = override !== undefined ? "flag" : env[spec.env] !== undefined ? spec.env : "config file";
    if (raw === undefined) {
      if (spec.default === undefined) problems.push(`${key} (${spec.env}) is required: ${spec.description}`);
      else out[key] = spec.default;
      continue;
    }
    try {
      out[key] = spec.parse(raw);
    } catch (e) {
      problems.push(`${key} (from ${origin}): ${(e as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as ConfigOf<S>;
}

/** The config with secrets replaced, fit for a log line. */
export function redact<S extends Schema>(schema: S, config: ConfigOf<S>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) {
    out[key] = spec.secret ? "<redacted>" : (config as Record<string, unknown>)[key];
  }
  return out;
}

/** `opg <cmd> --help` text for a schema: every option with its env name, default and description. */
export function describeSchema(schema: Schema): string {
  return Object.entries(schema)
    .map(([key, s]) => {
      const shown = JSON.stringify(s.default, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
      const def = s.default === undefined ? "required" : s.secret ? "secret" : `default ${shown}`;
      return `  ${key} (${s.env}, ${def})\n      ${s.description}`;
    })
    .join("\n");
}

// ---------------------------------------------------------------- command-line flags

/** The flag of a config key: `rpcUrl` -> `rpc-url` (commander maps `--rpc-url` back to `rpcUrl`). */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function shownDefault(spec: OptionSpec<unknown>): string {
  if (spec.default === undefined) return "required";
  if (spec.secret) return "secret";
  const v = spec.default;
  if (Array.isArray(v)) return v.length === 0 ? "none" : v.join(",");
  if (typeof v === "string") return v === "" ? "none" : v;
  return String(v);
}

/**
 * One flag per schema key, generated so that no key lacks one: `--kebab-case <value>` with the key's
 * description, its environment variable and its default. Boolean keys take an optional value (`--dry-run`
 * alone means true). A secret key's flag says that the environment is the better place for it.
 */
export function addSchemaOptions(cmd: Command, schema: Schema): Command {
  for (const [key, spec] of Object.entries(schema)) {
    const boolean = typeof spec.default === "boolean";
    const value = boolean ? "[bool]" : spec.secret ? "<secret>" : "<value>";
    const note = spec.secret ? "; prefer the environment: a flag shows in the process list" : "";
    cmd.addOption(
      new Option(
        `--${flagName(key)} ${value}`,
        `${spec.description} (${spec.env}, ${shownDefault(spec)}${note})`,
      ),
    );
  }
  return cmd;
}

/** The flags commander parsed that belong to `schema`, as loadConfig overrides (unset flags left out). */
export function schemaOverrides(schema: Schema, opts: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(schema)) if (opts[key] !== undefined) out[key] = opts[key];
  return out;
}

// ---------------------------------------------------------------- parsers

export const parse = {
  string(raw: unknown): string {
    if (typeof raw !== "string" || raw.length === 0) throw new Error("expected a non-empty string");
    return raw;
  },
  url(raw: unknown): string {
    const s = parse.string(raw);
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new Error(`"${s}" is not a URL`);
    }
    if (!["http:", "https:", "ws:", "wss:"].includes(u.protocol))
      throw new Error(`unsupported URL scheme ${u.protocol}`);
    return s;
  },
  int(min: number, max: number) {
    return (raw: unknown): number => {
      const n =
        typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
      if (!Number.isInteger(n)) throw new Error(`expected an integer, got ${JSON.stringify(raw)}`);
      if (n < min || n > max) throw new Error(`${n} is outside [${min}, ${max}]`);
      return n;
    };
  },
  bool(raw: unknown): boolean {
    if (typeof raw === "boolean") return raw;
    if (raw === "true" || raw === "1") return true;
    if (raw === "false" || raw === "0") return false;
    throw new Error(`expected true or false, got ${JSON.stringify(raw)}`);
  },
  address(raw: unknown): string {
    const s = parse.string(raw);
    if (!/^0x[0-9a-fA-F]{40}$/.test(s)) throw new Error(`"${s}" is not a 20-byte hex address`);
    return s;
  },
  privateKey(raw: unknown): string {
    const s = parse.string(raw);
    if (!/^0x[0-9a-fA-F]{64}$/.test(s))
      throw new Error("expected a 32-byte hex private key (value not shown)");
    return s;
  },
  /** A comma-separated list (or JSON array) of positive integers, e.g. model ids. */
  idList(raw: unknown): bigint[] {
    const items = Array.isArray(raw)
      ? raw
      : String(raw)
          .split(",")
          .filter((x) => x.trim() !== "");
    return items.map((x) => {
      const s = String(x).trim();
      if (!/^[0-9]+$/.test(s) || BigInt(s) === 0n) throw new Error(`"${s}" is not a positive integer id`);
      return BigInt(s);
    });
  },
  /** An OPG amount in whole or decimal OPG ("10", "0.5"), returned in wei. */
  opgAmount(raw: unknown): bigint {
    const s = String(raw).trim();
    if (!/^[0-9]+(\.[0-9]{1,18})?$/.test(s)) throw new Error(`"${s}" is not an OPG amount`);
    const [whole, frac = ""] = s.split(".");
    return BigInt(whole) * 10n ** 18n + BigInt(frac.padEnd(18, "0"));
  },
  path(raw: unknown): string {
    return parse.string(raw);
  },
  /** One of a fixed list of words. */
  oneOf<T extends string>(words: readonly T[]) {
    return (raw: unknown): T => {
      const s = parse.string(raw);
      if (!(words as readonly string[]).includes(s))
        throw new Error(`"${s}" is not one of ${words.join(", ")}`);
      return s as T;
    };
  },
  /** `auto` (decided at start from the chain) or a block count in [0, 1000]. */
  confirmations(raw: unknown): number | "auto" {
    if (raw === "auto") return "auto";
    try {
      return parse.int(0, 1000)(raw);
    } catch {
      throw new Error(`expected "auto" or a block count in [0, 1000], got ${JSON.stringify(raw)}`);
    }
  },
};

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["auto", "json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Log options every node process takes. */
export const logSchema = {
  logLevel: {
    description: `log level (${LOG_LEVELS.join(", ")})`,
    env: "OPG_LOG_LEVEL",
    default: "info" as LogLevel,
    parse: parse.oneOf(LOG_LEVELS),
  } satisfies OptionSpec<LogLevel>,
  logFormat: {
    description:
      "json (one object a line), pretty (for people), or auto: pretty on a terminal, json when piped",
    env: "OPG_LOG_FORMAT",
    default: "auto" as LogFormat,
    parse: parse.oneOf(LOG_FORMATS),
  } satisfies OptionSpec<LogFormat>,
};
