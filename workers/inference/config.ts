import { logSchema, parse, type OptionSpec } from "../runtime/config";
import { httpSchema } from "../runtime/http-config";

const opt = <T>(spec: OptionSpec<T>) => spec as OptionSpec<unknown> & OptionSpec<T>;

/**
 * Options shared by every node that talks to the chain. The defaults of `stateDir` and `metricsPort` are the
 * inference node's; the verification node has its own, so both run on one machine with no flags.
 */
export const chainNodeSchema = {
  rpcUrl: opt({
    env: "OPG_RPC_URL",
    description: "JSON-RPC endpoint of the chain",
    default: "http://127.0.0.1:8545",
    parse: parse.url,
  }),
  privateKey: opt({
    env: "OPG_PRIVATE_KEY",
    description: "the node operator's key (0x + 64 hex)",
    secret: true,
    parse: parse.privateKey,
  }),
  deployment: opt({
    env: "OPG_DEPLOYMENT",
    description: "deployment file with the contract addresses (scripts/deploy.ts writes it)",
    default: "deployments/localhost.json",
    parse: parse.path,
  }),
  dataUrl: opt({
    env: "OPG_DATA_URL",
    description: "data node serving model bundles and large inputs",
    default: "http://127.0.0.1:8600",
    parse: parse.url,
  }),
  models: opt({
    env: "OPG_MODELS",
    description: "model ids to serve, comma-separated; empty serves every model",
    default: [] as bigint[],
    parse: parse.idList,
  }),
  confirmations: opt({
    env: "OPG_CONFIRMATIONS",
    description:
      "blocks behind the head before acting on an event; auto: 0 on a local automining chain (chain id 31337 or 1337), 2 elsewhere",
    default: "auto" as number | "auto",
    parse: parse.confirmations,
  }),
  startBlock: opt({
    env: "OPG_START_BLOCK",
    description: "first block to scan on a fresh journal",
    default: 0,
    parse: parse.int(0, Number.MAX_SAFE_INTEGER),
  }),
  pollIntervalMs: opt({
    env: "OPG_POLL_INTERVAL_MS",
    description: "how often to poll the chain",
    default: 1000,
    parse: parse.int(50, 600_000),
  }),
  stateDir: opt({
    env: "OPG_STATE_DIR",
    description: "journal (SQLite), bundle cache and reports",
    default: ".opg/inference",
    parse: parse.path,
  }),
  metricsPort: opt({
    env: "OPG_METRICS_PORT",
    description: "port of /metrics and /healthz (0 picks a free one)",
    default: 9464,
    parse: parse.int(0, 65535),
  }),
  metricsHost: opt({
    env: "OPG_METRICS_HOST",
    description: "interface of /metrics and /healthz (0.0.0.0 for all, e.g. in a container)",
    default: "127.0.0.1",
    parse: parse.string,
  }),
  ...httpSchema,
  startTimeoutSeconds: opt({
    env: "OPG_START_TIMEOUT_SECONDS",
    description: "how long to keep trying the RPC endpoint and the data node at start before exiting 1",
    default: 20,
    parse: parse.int(0, 3600),
  }),
  ...logSchema,
  dryRun: opt({
    env: "OPG_DRY_RUN",
    description: "do everything but send transactions",
    default: false,
    parse: parse.bool,
  }),
};

/**
 * How a node runs strangers' models (workers/runtime/execution-policy.ts and sandbox.ts): shared by the
 * inference and the verification node, which both execute every model they serve.
 */
export const executionSchema = {
  execTimeoutMs: opt({
    env: "OPG_EXEC_TIMEOUT_MS",
    description:
      "wall-clock limit of one model run (and of a model's probe run on zeros before its first task), in ms: " +
      "its execution process is killed past it and the task refused, never retried",
    default: 10_000,
    parse: parse.int(100, 600_000),
  }),
  execMemoryMb: opt({
    env: "OPG_EXEC_MEMORY_MB",
    description:
      "resident memory limit of an execution process, in MiB (read every 50 ms; V8's heap is capped at it " +
      "too): killed past it and the task refused, never retried",
    default: 1024,
    parse: parse.int(128, 1_048_576),
  }),
  execWorkers: opt({
    env: "OPG_EXEC_WORKERS",
    description: "execution processes: model runs at once, further runs queue",
    default: 1,
    parse: parse.int(1, 64),
  }),
  allowDynamicShapes: opt({
    env: "OPG_ALLOW_DYNAMIC_SHAPES",
    description:
      "run models whose shapes the task's input values choose (an input fed to ConstantOfShape, Expand, " +
      "Reshape, Range...; Loop, If, NonZero): their cost is the task's to choose, bounded only by the time " +
      "and memory limits. Off: such models are refused by name",
    default: false,
    parse: parse.bool,
  }),
  maxModelBytes: opt({
    env: "OPG_MAX_MODEL_BYTES",
    description: "largest model file (model.onnx, program.json) the node parses or runs, in bytes",
    default: 128 * 1024 * 1024,
    parse: parse.int(1024, 4 * 1024 * 1024 * 1024),
  }),
  maxProgramOps: opt({
    env: "OPG_MAX_PROGRAM_OPS",
    description:
      "largest cost of a ZK bundle's fixed-point program, in multiply-accumulates a run (counted from " +
      "program.json before it runs); a costlier model is refused",
    default: 100_000_000,
    parse: parse.int(1, Number.MAX_SAFE_INTEGER),
  }),
};

export const inferenceSchema = {
  ...chainNodeSchema,
  ...executionSchema,
  minFee: opt({
    env: "OPG_MIN_FEE",
    description: "smallest task fee worth serving, in OPG",
    default: 0n,
    parse: parse.opgAmount,
  }),
  concurrency: opt({
    env: "OPG_CONCURRENCY",
    description: "tasks worked on at once (proving threads)",
    default: 1,
    parse: parse.int(1, 64),
  }),
  deadlineMarginSeconds: opt({
    env: "OPG_DEADLINE_MARGIN_SECONDS",
    description: "skip tasks with less time than this before their deadline",
    default: 30,
    parse: parse.int(0, 86_400),
  }),
  maxCallbackGas: opt({
    env: "OPG_MAX_CALLBACK_GAS",
    description:
      "skip tasks whose callback gas limit is above this: the node's submitResult pays for the requester's callback",
    default: 500_000,
    parse: parse.int(0, 30_000_000),
  }),
  assignSlotMs: opt({
    env: "OPG_ASSIGN_SLOT_MS",
    description:
      "ZK and TEE tasks (no claim): each eligible node ahead of this one in a task's order (keccak of task and node) gets this long to settle it before this node starts; 0 starts every task at once (duplicated work)",
    default: 5000,
    parse: parse.int(0, 3_600_000),
  }),
  settleBatch: opt({
    env: "OPG_SETTLE_BATCH",
    description:
      "most ZK results settled in one submitResults transaction (proofs ready while one is mining go in the next; 1 sends each alone)",
    default: 16,
    parse: parse.int(1, 32),
  }),
  takeOverClaims: opt({
    env: "OPG_TAKE_OVER_CLAIMS",
    description:
      "optimistic mode: claim tasks whose claimer let its claim window lapse (the registry slashes the lapsed claim's collateral)",
    default: true,
    parse: parse.bool,
  }),
  eligibilityCheckSeconds: opt({
    env: "OPG_ELIGIBILITY_CHECK_SECONDS",
    description:
      "how often to re-read the node's registration and stake (it claims nothing while not eligible)",
    default: 15,
    parse: parse.int(1, 3600),
  }),
  replaceAfterSeconds: opt({
    env: "OPG_REPLACE_AFTER_SECONDS",
    description: "replace a transaction with higher fees after this long unmined",
    default: 30,
    parse: parse.int(1, 3600),
  }),
  maxRetries: opt({
    env: "OPG_MAX_RETRIES",
    description: "attempts for errors that can succeed later",
    default: 5,
    parse: parse.int(1, 100),
  }),
  enclave: opt({
    env: "OPG_ENCLAVE",
    description:
      "enclave that signs TEE-mode results: none (TEE tasks are left alone) or dev (a development key in " +
      "<stateDir>/enclave, registered at start; local chains only, it proves nothing)",
    default: "none" as "none" | "dev",
    parse: (raw) => {
      const v = String(raw);
      if (v !== "none" && v !== "dev") throw new Error(`must be none or dev, got ${v}`);
      return v;
    },
  }),
  attestUrls: opt({
    env: "OPG_ATTEST_URLS",
    description:
      "verification nodes asked for attestations signed off chain before an optimistic result is posted (they " +
      "ride in the posting transaction; a result is posted only with its task's quorum of them): auto " +
      "(default) the endpoints eligible verification nodes registered in NodeStaking; none: ask nobody (so " +
      "no optimistic result is ever posted); or comma-separated base URLs of their service ports " +
      "(http://host:9465), asked in that order",
    default: "auto" as "auto" | "none" | string[],
    parse: (raw) => {
      if (raw === "auto" || raw === "none") return raw;
      const urls = (Array.isArray(raw) ? raw.map(String) : String(raw).split(","))
        .map((u) => u.trim())
        .filter(Boolean);
      if (urls.length === 0) throw new Error("must be auto, none, or comma-separated http(s) URLs");
      return urls.map((u) => {
        if (!/^https?:$/.test(new URL(parse.url(u)).protocol)) throw new Error(`${u} is not an http(s) URL`);
        return u;
      });
    },
  }),
  attestTimeoutMs: opt({
    env: "OPG_ATTEST_TIMEOUT_MS",
    description:
      "how long one round of asking for off-chain attestations may take; short of the task's quorum the node " +
      "asks again (after 2 s, then twice as long each time, up to 30 s) until its claim is about to expire",
    default: 5000,
    parse: parse.int(100, 120_000),
  }),
  faultLieEvery: opt({
    env: "OPG_FAULT_LIE_EVERY",
    description:
      "FAULT INJECTION FOR TESTS ONLY: post a wrong output (first value +1) for optimistic tasks whose id is " +
      "a multiple of N, to exercise challenges (honest verifiers refuse to sign it, so it is posted only with " +
      "a colluding verifier's signature); the node gets slashed for each. 0 (default): never",
    default: 0,
    parse: parse.int(0, 1_000_000),
  }),
};
