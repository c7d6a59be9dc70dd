/**
 * The explorer's data model: what the page derives from the chain's logs and views. Everything here is read
 * from the RPC the page talks to (never from the server that served it, beyond the RPC and data node URLs
 * and the contract addresses in /config.json, which the page shows as taken on trust).
 */

/** What `opg explorer` serves as /config.json; `?rpc=`, `?data=` and `?metrics=` in the page URL override it. */
export interface ExplorerConfig {
  rpc: string;
  /** Data node base URL (bundles by content hash). */
  data: string;
  /** Chain id the deployment file names; the page checks the RPC's against it. */
  chainId?: number;
  contracts: {
    token: string;
    staking: string;
    models: string;
    tasks: string;
    /** Read from the task registry's modeParameters() when absent. */
    enclaves?: string;
    disputes?: string;
  };
  /** Extra /metrics URLs to read proof times from (besides the nodes' registered endpoints). */
  metrics?: string[];
  /**
   * Whether to read /metrics from every node's registered endpoint (default true): those requests go from
   * the viewer's browser to whatever address an operator registered, private ones included.
   */
  nodeMetrics?: boolean;
  /** Block-poll interval for live updates (ms); default 1000. */
  pollMs?: number;
  /** The first block to read logs from (the deployment's block on a long chain); default 0. */
  fromBlock?: number;
}

export type ModeName = "zk" | "optimistic" | "tee";
export type TaskState = "Open" | "Claimed" | "Verified" | "Expired" | "Pending" | "Disputed" | "Rejected";

/** One decoded log of a protocol contract. */
export interface ChainEvent {
  /** Contract the log came from. */
  source: "tasks" | "models" | "staking" | "disputes" | "enclaves";
  name: string;
  block: number;
  tx: string;
  logIndex: number;
  /** Decoded arguments by name (bigint, string, boolean, arrays, nested objects for structs). */
  args: Record<string, unknown>;
}

/** The committed `ITaskRegistry.Task` (from TaskSubmitted). */
export interface CommittedTask {
  requester: string;
  modelId: bigint;
  fee: bigint;
  deadline: bigint;
  verificationKey: string;
  royaltyReceiver: string;
  callback: string;
  callbackGasLimit: bigint;
  outputWords: bigint;
  protocolFeeBps: bigint;
  royaltyBps: bigint;
  inputHash: string;
  inputDataHash: string;
  mode: bigint;
  attestationQuorum: bigint;
  attesterFeeBps: bigint;
}

export interface TaskRow {
  id: bigint;
  modelId: bigint;
  requester: string;
  fee: bigint;
  mode: ModeName | "unknown";
  task: CommittedTask;
  /** Input words as submitted (inline: packed values; commitment: one word). */
  input: bigint[];
  state: TaskState;
  /**
   * The node holding the claim, that posted the outputs, or that was paid (latest; cleared when the task is
   * reopened).
   */
  node?: string;
  /** Verified output words (or the posted ones, while pending or once rejected; cleared by a reopening). */
  outputs?: bigint[];
  /** Fee split at settlement (TaskVerified). */
  nodeFee?: bigint;
  royalty?: bigint;
  protocolFee?: bigint;
  /** Refund paid at expiry or rejection. */
  refund?: bigint;
  submittedBlock: number;
  submittedTx: string;
  /**
   * Block and transaction of the TaskVerified (or TaskExpired / TaskRejected) log: for a ZK task, often a
   * `submitResults` batch that settled other tasks too (see `Snapshot.settlements`).
   */
  settledBlock?: number;
  settledTx?: string;
  /** Every log about this task (registry and dispute manager), in chain order. */
  events: ChainEvent[];
}

export interface ModelRow {
  id: bigint;
  name: string;
  owner: string;
  onnxHash: string;
  bundleHash: string;
  verificationKey: string;
  verificationKeyHash: string;
  /** Verification modes the model allows, strongest first. */
  modes: ModeName[];
  fee: bigint;
  active: boolean;
  inputMode: "inline" | "commitment";
  inputWords: number;
  outputWords: number;
  scaleBits: number;
  packBits: number;
  inputBits: number;
  inputShape: number[];
  outputShape: number[];
  attestationQuorum?: number;
  registeredBlock: number;
  registeredTx: string;
  /** Tasks submitted for it (in the loaded range). */
  tasks: number;
}

export interface SlashRow {
  amount: bigint;
  reason: string;
  slasher: string;
  beneficiary: string;
  block: number;
  tx: string;
}

export interface NodeRow {
  address: string;
  /** Role bitmask: 1 inference, 2 verification. */
  roles: number;
  endpoint: string;
  /** From nodeInfo() at the latest block read. */
  bonded: bigint;
  locked: bigint;
  unbonding: bigint;
  slashes: SlashRow[];
  slashed: bigint;
  /** Node fees from TaskVerified plus attester shares from AttestersPaid. */
  earnings: bigint;
  /** Tasks it settled (TaskVerified with it as node). */
  served: number;
  /** Tasks it claimed. */
  claimed: number;
  /** Attestations it made (optimistic mode). */
  attestations: number;
  registeredBlock: number;
}

/** Everything the page has read; `version` changes on every update so views can tell. */
export interface Snapshot {
  chainId: number;
  head: number;
  /** The first block read (the oldest protocol log's block). */
  fromBlock: number;
  models: Map<string, ModelRow>;
  nodes: Map<string, NodeRow>;
  tasks: Map<string, TaskRow>;
  /** Unix seconds of the blocks the page has read timestamps of. */
  blockTimes: Map<number, number>;
  /** The enclave registry's logs (key registrations, revocations, challenges), in chain order. */
  enclaveEvents: ChainEvent[];
  /**
   * What each settling transaction did, by transaction hash: the tasks it verified (TaskVerified) and those a
   * `submitResults` batch skipped (TaskResultSkipped: already settled, listed twice, or past the deadline).
   * A batch settles several ZK tasks in one transaction; a lone settlement verifies one.
   */
  settlements: Map<string, { verified: number; skipped: number }>;
  version: number;
}
