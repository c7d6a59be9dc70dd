import { logSchema, parse, type ConfigOf, type OptionSpec } from "../runtime/config";
import { MAX_BLOB_BYTES_LIMIT } from "./blob-store";

export { LOG_LEVELS, type LogLevel } from "../runtime/config";

/** Who may PUT blobs: anyone, or signed uploads by allowed accounts; auto picks by the listening host. */
export const UPLOAD_POLICIES = ["auto", "open", "signed"] as const;
export type UploadPolicy = (typeof UPLOAD_POLICIES)[number];

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A comma-separated list (or JSON array) of 20-byte hex addresses. */
function addressList(raw: unknown): string[] {
  const items = Array.isArray(raw)
    ? raw
    : String(raw)
        .split(",")
        .filter((x) => x.trim() !== "");
  return items.map((x) => parse.address(String(x).trim()));
}

/** An optional string: "" (the default) means unset. */
function optionalString(raw: unknown): string {
  return raw === "" ? "" : parse.string(raw);
}

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
    default: 256 * MiB,
    parse: parse.int(1, MAX_BLOB_BYTES_LIMIT),
  } satisfies OptionSpec<number>,
  maxStoreBytes: {
    description:
      "total bytes the store may hold (0: no limit); beyond it, old unreferenced blobs are evicted, least recently used first",
    env: "OPG_DATA_MAX_STORE_BYTES",
    default: 10 * GiB,
    parse: parse.int(0, Number.MAX_SAFE_INTEGER),
  } satisfies OptionSpec<number>,
  minRetentionSeconds: {
    description: "a blob is never evicted sooner than this after it was stored",
    env: "OPG_DATA_MIN_RETENTION_SECONDS",
    default: 86_400,
    parse: parse.int(0, 10 * 365 * 86_400),
  } satisfies OptionSpec<number>,
  uploadPolicy: {
    description:
      "who may upload: open (anyone), signed (an allowed account's OPG-SIG signature), or auto: open when listening on loopback, else signed",
    env: "OPG_DATA_UPLOAD_POLICY",
    default: "auto" as UploadPolicy,
    parse: parse.oneOf(UPLOAD_POLICIES),
  } satisfies OptionSpec<UploadPolicy>,
  allowedUploaders: {
    description: "accounts allowed to upload in signed mode, comma-separated addresses",
    env: "OPG_DATA_ALLOWED_UPLOADERS",
    default: [] as string[],
    parse: addressList,
  } satisfies OptionSpec<string[]>,
  rpcUrl: {
    description:
      "JSON-RPC endpoint (with --deployment): staked accounts and model owners may upload, and what the chain references is never evicted",
    env: "OPG_RPC_URL",
    default: "",
    parse: (raw: unknown) => (raw === "" ? "" : parse.url(raw)),
  } satisfies OptionSpec<string>,
  deployment: {
    description: "deployment file with the contract addresses (with --rpc-url)",
    env: "OPG_DEPLOYMENT",
    default: "",
    parse: optionalString,
  } satisfies OptionSpec<string>,
  chainFromBlock: {
    description: "first block scanned for submitted tasks whose inputs must be kept",
    env: "OPG_DATA_CHAIN_FROM_BLOCK",
    default: 0,
    parse: parse.int(0, Number.MAX_SAFE_INTEGER),
  } satisfies OptionSpec<number>,
  minUploaderBalance: {
    description: "OPG an account must hold to upload on that ground alone (0: balance is no ground)",
    env: "OPG_DATA_MIN_UPLOADER_BALANCE",
    default: 0n,
    parse: parse.opgAmount,
  } satisfies OptionSpec<bigint>,
  maxSignatureLifetimeSeconds: {
    description: "an upload signature whose expiry is further ahead than this is refused",
    env: "OPG_DATA_MAX_SIGNATURE_LIFETIME_SECONDS",
    default: 3600,
    parse: parse.int(1, 7 * 86_400),
  } satisfies OptionSpec<number>,
  uploaderQuotaBytes: {
    description:
      "bytes each uploader (account when signed, client IP when open) may upload per window (0: no quota)",
    env: "OPG_DATA_UPLOADER_QUOTA_BYTES",
    default: 1 * GiB,
    parse: parse.int(0, Number.MAX_SAFE_INTEGER),
  } satisfies OptionSpec<number>,
  quotaWindowSeconds: {
    description: "length of the upload quota's window",
    env: "OPG_DATA_QUOTA_WINDOW_SECONDS",
    default: 3600,
    parse: parse.int(1, 30 * 86_400),
  } satisfies OptionSpec<number>,
  requestsPerSecond: {
    description:
      "requests per second per client IP, every route (0: no limit); over it: 429 with retry-after",
    env: "OPG_DATA_REQUESTS_PER_SECOND",
    default: 50,
    parse: parse.int(0, 1_000_000),
  } satisfies OptionSpec<number>,
  requestBurst: {
    description: "requests a client IP may make at once above its per-second rate",
    env: "OPG_DATA_REQUEST_BURST",
    default: 200,
    parse: parse.int(1, 1_000_000),
  } satisfies OptionSpec<number>,
  maxConnections: {
    description: "open TCP connections in all; more are closed on arrival",
    env: "OPG_DATA_MAX_CONNECTIONS",
    default: 1024,
    parse: parse.int(1, 1_000_000),
  } satisfies OptionSpec<number>,
  maxRequestsPerClient: {
    description: "requests in flight per client IP (0: no limit); over it: 429",
    env: "OPG_DATA_MAX_REQUESTS_PER_CLIENT",
    default: 32,
    parse: parse.int(0, 1_000_000),
  } satisfies OptionSpec<number>,
  headersTimeoutMs: {
    description: "time a client has to send a request's headers",
    env: "OPG_DATA_HEADERS_TIMEOUT_MS",
    default: 10_000,
    parse: parse.int(1_000, 600_000),
  } satisfies OptionSpec<number>,
  keepAliveTimeoutMs: {
    description: "how long an idle keep-alive connection is kept open",
    env: "OPG_DATA_KEEP_ALIVE_TIMEOUT_MS",
    default: 5_000,
    parse: parse.int(0, 600_000),
  } satisfies OptionSpec<number>,
  idleTimeoutMs: {
    description:
      "a connection on which nothing moves either way for this long is closed (a reader that stops reading)",
    env: "OPG_DATA_IDLE_TIMEOUT_MS",
    default: 60_000,
    parse: parse.int(1_000, 3_600_000),
  } satisfies OptionSpec<number>,
  minUploadBytesPerSecond: {
    description:
      "an upload slower than this over a progress window is cut (408); also sizes the whole-request timeout: largest blob at this rate",
    env: "OPG_DATA_MIN_UPLOAD_BYTES_PER_SECOND",
    default: 64 * 1024,
    parse: parse.int(1, 1 << 30),
  } satisfies OptionSpec<number>,
  uploadProgressWindowMs: {
    description: "the window over which an upload's rate is measured",
    env: "OPG_DATA_UPLOAD_PROGRESS_WINDOW_MS",
    default: 10_000,
    parse: parse.int(100, 600_000),
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

/** The options every caller must give; the rest default as in the schema. */
export type DataNodeSettings = Pick<
  DataNodeConfig,
  "host" | "port" | "dir" | "maxBlobBytes" | "shutdownTimeoutMs" | "logLevel" | "logFormat"
> &
  Partial<DataNodeConfig>;

/** The schema's defaults under `settings`. */
export function withDefaults(settings: DataNodeSettings): DataNodeConfig {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(dataNodeSchema)) {
    const given = (settings as Record<string, unknown>)[key];
    out[key] = given !== undefined ? given : spec.default;
  }
  return out as DataNodeConfig;
}

/** Whether `host` is a loopback address or name, so only this machine can reach the node. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** The policy in force: auto resolves to open on loopback, signed anywhere else. */
export function effectiveUploadPolicy(
  config: Pick<DataNodeConfig, "uploadPolicy" | "host">,
): "open" | "signed" {
  if (config.uploadPolicy !== "auto") return config.uploadPolicy;
  return isLoopbackHost(config.host) ? "open" : "signed";
}
