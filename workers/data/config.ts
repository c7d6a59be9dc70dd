import { logSchema, parse, type ConfigOf, type OptionSpec } from "../runtime/config";
import { MAX_BLOB_BYTES_LIMIT } from "./blob-store";

export { LOG_LEVELS, type LogLevel } from "../runtime/config";

/** Configuration of `opg node data`. */
export const dataNodeSchema = {
  host: {
    description: "interface to listen on (0.0.0.0 for all)",
    env: "OPG_DATA_HOST",
    default: "127.0.0.1",
    parse: parse.string,
  } satisfies OptionSpec<string>,
  port: {
    description: "TCP port of the HTTP API (0 picks a free port, logged at start)",
    env: "OPG_DATA_PORT",
    default: 8600,
    parse: parse.int(0, 65535),
  } satisfies OptionSpec<number>,
  dir: {
    description: "directory the blobs are stored in (created if missing)",
    env: "OPG_DATA_DIR",
    default: ".opg/data",
    parse: parse.path,
  } satisfies OptionSpec<string>,
  maxBlobBytes: {
    description: "largest blob accepted by PUT /blobs, in bytes",
    env: "OPG_DATA_MAX_BLOB_BYTES",
    default: 256 * 1024 * 1024,
    parse: parse.int(1, MAX_BLOB_BYTES_LIMIT),
  } satisfies OptionSpec<number>,
  shutdownTimeoutMs: {
    description: "on SIGTERM, how long requests in flight may take to finish before connections are cut",
    env: "OPG_DATA_SHUTDOWN_TIMEOUT_MS",
    default: 10_000,
    parse: parse.int(0, 600_000),
  } satisfies OptionSpec<number>,
  ...logSchema,
};

export type DataNodeConfig = ConfigOf<typeof dataNodeSchema>;
