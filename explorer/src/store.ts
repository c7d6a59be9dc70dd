import { AbiCoder, getAddress, JsonRpcProvider, toBeHex, type EventFragment, type ParamType } from "ethers";
import { contractsAt, ifaces, type Contracts, type Source } from "./contracts";
import type {
  ChainEvent,
  CommittedTask,
  ExplorerConfig,
  ModeName,
  ModelRow,
  NodeRow,
  Snapshot,
  TaskRow,
  TaskState,
} from "./types";

const MODE_OF: Record<number, ModeName> = { 0: "zk", 1: "zk", 2: "optimistic", 4: "tee" };
const ZERO = "0x0000000000000000000000000000000000000000";

/** Plain JS values from a decoded ABI value, by its type: tuples become objects, arrays arrays. */
function plain(v: unknown, type: ParamType): unknown {
  if (type.isArray()) return [...(v as unknown[])].map((x) => plain(x, type.arrayChildren!));
  if (type.isTuple()) {
    const r = v as unknown[];
    return Object.fromEntries(type.components!.map((c, i) => [c.name, plain(r[i], c)]));
  }
  return v;
}

/** A raw log as eth_getLogs returns it. */
interface RawLog {
  address: string;
  topics: string[];
  data: string;
  blockNumber: string;
  transactionHash: string;
  logIndex: string;
}

interface EventDecoder {
  fragment: EventFragment;
  indexed: ParamType[];
  unindexed: ParamType[];
}

/**
 * Each contract's events by topic, hashed once: ethers' Interface.parseLog hashes every event signature
 * again for each log, which was most of the page's first render on a chain of 1,000 tasks.
 */
const DECODERS = new Map<string, EventDecoder>();
for (const source of Object.keys(ifaces) as Source[]) {
  ifaces[source].forEachEvent((fragment) => {
    DECODERS.set(`${source}:${fragment.topicHash}`, {
      fragment,
      indexed: fragment.inputs.filter((i) => i.indexed),
      unindexed: fragment.inputs.filter((i) => !i.indexed),
    });
  });
}
const coder = AbiCoder.defaultAbiCoder();

/** A log's arguments by name; undefined when the log is not one of the contract's events or is malformed. */
function decodeLog(source: Source, log: RawLog): { name: string; args: Record<string, unknown> } | undefined {
  const d = DECODERS.get(`${source}:${log.topics[0]}`);
  if (!d || log.topics.length !== d.indexed.length + 1) return undefined;
  try {
    const values = new Map<ParamType, unknown>();
    d.indexed.forEach((input, k) => {
      const topic = log.topics[k + 1];
      // an indexed dynamic value (string, bytes, array, struct) is only its hash
      const dynamic = input.isArray() || input.isTuple() || input.type === "string" || input.type === "bytes";
      values.set(input, dynamic ? topic : coder.decode([input], topic)[0]);
    });
    const data = coder.decode(d.unindexed, log.data);
    d.unindexed.forEach((input, k) => values.set(input, data[k]));
    const args: Record<string, unknown> = {};
    for (const input of d.fragment.inputs) args[input.name] = plain(values.get(input), input);
    return { name: d.fragment.name, args };
  } catch {
    return undefined;
  }
}

/** Checksummed addresses, memoised (a checksum is a keccak256; a chain has few distinct addresses). */
const checksums = new Map<string, string>();
export function checksum(a: string): string {
  const key = a.toLowerCase();
  let c = checksums.get(key);
  if (!c) checksums.set(key, (c = getAddress(key)));
  return c;
}

/**
 * Reads the protocol's logs from the RPC into a Snapshot, then follows new blocks. Nothing is cached across
 * page loads and nothing comes from the server that served the page but the addresses and URLs in its config.
 */
export class Store {
  readonly provider: JsonRpcProvider;
  contracts!: Contracts;
  addresses!: Partial<Record<Source, string>>;
  snap: Snapshot = {
    chainId: 0,
    head: -1,
    fromBlock: 0,
    models: new Map(),
    nodes: new Map(),
    tasks: new Map(),
    blockTimes: new Map(),
    enclaveEvents: [],
    settlements: new Map(),
    version: 0,
  };
  /** Set when the last read failed (the RPC is down): shown in the header, cleared by the next good read. */
  error: string | null = null;
  private bySource = new Map<string, Source>();
  private listeners = new Set<(s: Snapshot) => void>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private polling = false;
  private pendingTimes = new Set<number>();
  private headHash: string | undefined;

  constructor(readonly config: ExplorerConfig) {
    // staticNetwork: no eth_chainId before every call; batches of up to 100 calls per HTTP request.
    this.provider = new JsonRpcProvider(config.rpc, undefined, { staticNetwork: true, batchMaxCount: 100 });
  }

  subscribe(fn: (s: Snapshot) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit() {
    this.snap.version++;
    for (const fn of this.listeners) fn(this.snap);
  }

  /** Connects, checks the chain id, reads every protocol log up to the head, then starts following blocks. */
  async start(): Promise<void> {
    const chainId = Number(await this.provider.send("eth_chainId", []));
    if (this.config.chainId !== undefined && chainId !== this.config.chainId) {
      throw new Error(
        `the RPC ${this.config.rpc} serves chain ${chainId}, the deployment is for chain ${this.config.chainId}`,
      );
    }
    this.snap.chainId = chainId;
    const c = this.config.contracts;
    this.addresses = { tasks: c.tasks, models: c.models, staking: c.staking };
    if (c.enclaves) this.addresses.enclaves = c.enclaves;
    if (c.disputes) this.addresses.disputes = c.disputes;
    if (!c.enclaves || !c.disputes) {
      try {
        const registry = contractsAt(this.provider, { tasks: c.tasks }).tasks;
        const m = await registry.modeParameters();
        if (!c.disputes && m.disputes !== ZERO) this.addresses.disputes = m.disputes;
        if (!c.enclaves && m.enclaves !== ZERO) this.addresses.enclaves = m.enclaves;
      } catch {
        // a registry from before the modes: ZK only
      }
    }
    for (const [s, a] of Object.entries(this.addresses)) this.bySource.set(a!.toLowerCase(), s as Source);
    this.contracts = contractsAt(this.provider, this.addresses);
    const head = Number(await this.provider.send("eth_blockNumber", []));
    await this.readRange(this.config.fromBlock ?? 0, head);
    await this.setHead(head);
    await this.refreshNodes();
    this.emit();
    this.schedule();
  }

  /** The head block and its hash (to notice a chain that changed under the page). */
  private async setHead(head: number) {
    this.snap.head = head;
    const block = (await this.provider.send("eth_getBlockByNumber", [toBeHex(head), false])) as {
      hash: string;
      timestamp: string;
    } | null;
    this.headHash = block?.hash;
    if (block) this.snap.blockTimes.set(head, Number(block.timestamp));
  }

  /** Forget everything read and read the chain again up to `head`. */
  private async reload(head: number) {
    const s = this.snap;
    s.models.clear();
    s.nodes.clear();
    s.tasks.clear();
    s.blockTimes.clear();
    s.enclaveEvents.length = 0;
    s.settlements.clear();
    s.fromBlock = 0;
    await this.readRange(this.config.fromBlock ?? 0, head);
    await this.setHead(head);
    await this.refreshNodes();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule() {
    this.timer = setTimeout(() => void this.poll(), this.config.pollMs ?? 1000);
  }

  /** One live-update step: read the logs of the blocks that arrived since the last step. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const [rawHead, last] = await Promise.all([
        this.provider.send("eth_blockNumber", []) as Promise<string>,
        this.provider.send("eth_getBlockByNumber", [toBeHex(this.snap.head), false]) as Promise<{
          hash: string;
        } | null>,
      ]);
      const head = Number(rawHead);
      if (head < this.snap.head || last?.hash !== this.headHash) {
        // A new chain behind the same URL (a restarted hardhat node) or a reorganisation below the head:
        // read everything again.
        await this.reload(head);
        this.error = null;
        this.emit();
      } else if (head > this.snap.head) {
        await this.readRange(this.snap.head + 1, head);
        await this.setHead(head);
        await this.refreshNodes();
        this.error = null;
        this.emit();
      } else if (this.error) {
        this.error = null;
        this.emit();
      }
    } catch (e) {
      this.error = `reading ${this.config.rpc} failed: ${(e as Error).message}`;
      this.emit();
    } finally {
      this.polling = false;
      if (this.timer !== undefined) this.schedule();
    }
  }

  /** The protocol contracts' logs in [from, to]: one request, or windows of 10,000 blocks if refused. */
  private async getLogs(from: number, to: number): Promise<RawLog[]> {
    const address = Object.values(this.addresses) as string[];
    const call = (a: number, b: number) =>
      this.rawRpc<RawLog[]>("eth_getLogs", [{ address, fromBlock: toBeHex(a), toBlock: toBeHex(b) }]);
    try {
      return await call(from, to);
    } catch {
      const raw: RawLog[] = [];
      for (let start = from; start <= to; start += 10_000)
        raw.push(...(await call(start, Math.min(to, start + 9_999))));
      return raw;
    }
  }

  /**
   * One JSON-RPC call with the browser's own fetch and JSON parser: for eth_getLogs, whose answer is megabytes
   * on a busy chain (ethers decodes response bodies with a JavaScript UTF-8 decoder, several times slower).
   */
  private async rawRpc<T>(method: string, params: unknown[]): Promise<T> {
    const res = await fetch(this.config.rpc, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    });
    if (!res.ok) throw new Error(`${method}: HTTP ${res.status}`);
    const reply = (await res.json()) as { result?: T; error?: { message?: string } };
    if (reply.error) throw new Error(`${method}: ${reply.error.message ?? "error"}`);
    return reply.result as T;
  }

  private async readRange(from: number, to: number) {
    const logs = await this.getLogs(from, to);
    for (const [i, log] of logs.entries()) {
      // let the page paint and take input while a long history is read
      if (i > 0 && i % 500 === 0) await new Promise((r) => setTimeout(r, 0));
      const source = this.bySource.get(log.address.toLowerCase());
      if (!source) continue;
      const decoded = decodeLog(source, log);
      if (!decoded) continue;
      const ev: ChainEvent = {
        source,
        name: decoded.name,
        block: Number(log.blockNumber),
        tx: log.transactionHash,
        logIndex: Number(log.logIndex),
        args: decoded.args,
      };
      if (this.snap.fromBlock === 0 || ev.block < this.snap.fromBlock) this.snap.fromBlock = ev.block;
      this.apply(ev);
    }
  }

  private node(address: string, block: number): NodeRow {
    const key = checksum(address);
    let n = this.snap.nodes.get(key);
    if (!n) {
      n = {
        address: key,
        roles: 0,
        endpoint: "",
        bonded: 0n,
        locked: 0n,
        unbonding: 0n,
        slashes: [],
        slashed: 0n,
        earnings: 0n,
        served: 0,
        claimed: 0,
        attestations: 0,
        registeredBlock: block,
      };
      this.snap.nodes.set(key, n);
    }
    return n;
  }

  private apply(ev: ChainEvent) {
    const a = ev.args;
    if (ev.source === "models") return this.applyModel(ev);
    if (ev.source === "enclaves") {
      this.snap.enclaveEvents.push(ev);
      return;
    }
    if (ev.source === "staking") {
      switch (ev.name) {
        case "NodeRegistered":
        case "NodeUpdated": {
          const n = this.node(a.node as string, ev.block);
          n.roles = Number(a.roles);
          n.endpoint = a.endpoint as string;
          break;
        }
        case "NodeSlashed": {
          const n = this.node(a.node as string, ev.block);
          n.slashes.push({
            amount: a.amount as bigint,
            reason: a.reason as string,
            slasher: a.slasher as string,
            beneficiary: a.beneficiary as string,
            block: ev.block,
            tx: ev.tx,
          });
          n.slashed += a.amount as bigint;
          break;
        }
      }
      return;
    }
    // task registry and dispute manager: every log with a taskId belongs to that task's timeline
    if (ev.name === "TaskSubmitted") {
      const task = a.task as CommittedTask;
      const row: TaskRow = {
        id: a.taskId as bigint,
        modelId: a.modelId as bigint,
        requester: checksum(a.requester as string),
        fee: task.fee,
        mode: MODE_OF[Number(task.mode)] ?? "unknown",
        task,
        input: a.input as bigint[],
        state: "Open",
        submittedBlock: ev.block,
        submittedTx: ev.tx,
        events: [ev],
      };
      this.snap.tasks.set(row.id.toString(), row);
      const m = this.snap.models.get(row.modelId.toString());
      if (m) m.tasks++;
      return;
    }
    if (ev.name === "AttestersPaid") {
      for (const at of a.attesters as string[]) this.node(at, ev.block).earnings += a.share as bigint;
    }
    if (ev.name === "TaskVerified" || ev.name === "TaskResultSkipped") {
      // counted for every task, also those submitted before the first block read
      let tally = this.snap.settlements.get(ev.tx);
      if (!tally) this.snap.settlements.set(ev.tx, (tally = { verified: 0, skipped: 0 }));
      if (ev.name === "TaskVerified") tally.verified++;
      else tally.skipped++;
    }
    if (a.taskId === undefined) return;
    const t = this.snap.tasks.get(String(a.taskId));
    if (!t) return;
    t.events.push(ev);
    const set = (state: TaskState) => (t.state = state);
    switch (ev.name) {
      case "TaskClaimed":
        set("Claimed");
        t.node = checksum(a.node as string);
        this.node(t.node, ev.block).claimed++;
        break;
      case "TaskClaimAbandoned":
        // Open again for a take-over; the registry also emits it after TaskExpired/TaskRejected in the same
        // transaction when it slashes a lapsed claim, which must not reopen a settled task.
        if (t.state === "Claimed") set("Open");
        break;
      case "TaskReopened":
        // Posted outputs that met no quorum of attestations by the window's end: the task is back on the
        // market before its deadline, as after an abandoned claim; what was posted never settles.
        set("Open");
        t.node = undefined;
        t.outputs = undefined;
        break;
      case "TaskResultPosted":
        set("Pending");
        t.node = checksum(a.node as string);
        t.outputs = a.outputs as bigint[];
        break;
      case "TaskAttested":
        this.node(a.attester as string, ev.block).attestations++;
        break;
      case "TaskDisputed":
        set("Disputed");
        break;
      case "TaskVerified": {
        set("Verified");
        t.node = checksum(a.node as string);
        t.outputs = a.outputs as bigint[];
        t.nodeFee = a.nodeFee as bigint;
        t.royalty = a.royalty as bigint;
        t.protocolFee = a.protocolFee as bigint;
        t.settledBlock = ev.block;
        t.settledTx = ev.tx;
        const n = this.node(t.node, ev.block);
        n.served++;
        n.earnings += t.nodeFee;
        break;
      }
      case "TaskResultSkipped":
        // A batch (submitResults) skipped its submission for this task, which was no longer open (another
        // node's result came first, or the batch listed it twice) or past its deadline: nothing changes.
        break;
      case "TaskRejected":
      case "TaskExpired":
        set(ev.name === "TaskRejected" ? "Rejected" : "Expired");
        t.refund = a.refund as bigint;
        t.settledBlock = ev.block;
        t.settledTx = ev.tx;
        break;
    }
  }

  private applyModel(ev: ChainEvent) {
    const a = ev.args;
    const id = String(a.modelId);
    if (ev.name === "ModelRegistered") {
      const spec = a.spec as Record<string, unknown>;
      const mask = Number(spec.verificationModes);
      const modes = (["zk", "tee", "optimistic"] as const).filter(
        (m) => mask & { zk: 1, optimistic: 2, tee: 4 }[m],
      );
      const row: ModelRow = {
        id: a.modelId as bigint,
        name: spec.name as string,
        owner: checksum(a.owner as string),
        onnxHash: spec.onnxHash as string,
        bundleHash: spec.bundleHash as string,
        verificationKey: a.verificationKey as string,
        verificationKeyHash: a.verificationKeyHash as string,
        modes,
        fee: spec.fee as bigint,
        active: true,
        inputMode: Number(spec.inputMode) === 1 ? "commitment" : "inline",
        inputWords: Number(spec.inputWords),
        outputWords: Number(spec.outputWords),
        scaleBits: Number(spec.scaleBits),
        packBits: Number(spec.packBits),
        inputBits: Number(spec.inputBits),
        inputShape: (spec.inputShape as bigint[]).map(Number),
        outputShape: (spec.outputShape as bigint[]).map(Number),
        registeredBlock: ev.block,
        registeredTx: ev.tx,
        tasks: 0,
      };
      this.snap.models.set(id, row);
      return;
    }
    const m = this.snap.models.get(id);
    if (!m) return;
    if (ev.name === "ModelFeeUpdated") m.fee = a.fee as bigint;
    else if (ev.name === "ModelActiveSet") m.active = a.active as boolean;
    else if (ev.name === "ModelAttestationQuorumSet") m.attestationQuorum = Number(a.quorum);
    else if (ev.name === "ModelOwnershipTransferred") m.owner = checksum(a.newOwner as string);
  }

  /** Stake, collateral and unbonding of every node, from nodeInfo() at the head (one batch of calls). */
  private async refreshNodes() {
    await Promise.all(
      [...this.snap.nodes.values()].map(async (n) => {
        try {
          const info = await this.contracts.staking.nodeInfo(n.address);
          n.bonded = info.bonded;
          n.locked = info.locked;
          n.unbonding = info.unbonding;
        } catch {
          // keep the last values; the header shows the RPC error if reads fail
        }
      }),
    );
  }

  /**
   * Timestamps of `blocks` (those not read yet), in batches of 100 eth_getBlockByNumber calls; emits an
   * update when done. Views call it for what they show; plots call it for every task's blocks.
   */
  async ensureTimes(blocks: Iterable<number>): Promise<void> {
    const missing = [...new Set(blocks)].filter(
      (b) => !this.snap.blockTimes.has(b) && !this.pendingTimes.has(b),
    );
    if (missing.length === 0) return;
    for (const b of missing) this.pendingTimes.add(b);
    try {
      for (let i = 0; i < missing.length; i += 400) {
        const chunk = missing.slice(i, i + 400);
        const blocks = await Promise.all(
          chunk.map(
            (b) =>
              this.provider.send("eth_getBlockByNumber", [toBeHex(b), false]) as Promise<{
                timestamp: string;
              } | null>,
          ),
        );
        chunk.forEach((b, k) => {
          if (blocks[k]) this.snap.blockTimes.set(b, Number(blocks[k]!.timestamp));
        });
      }
    } finally {
      for (const b of missing) this.pendingTimes.delete(b);
    }
    this.emit();
  }
}
