import { JsonRpcProvider, type Provider } from "ethers";
import {
  ModelRegistry__factory,
  NodeStaking__factory,
  OPGToken__factory,
  TaskRegistry__factory,
} from "../../typechain-types";
import type { Deployment } from "../runtime/chain";
import { parseSubmitted, TOPICS } from "../runtime/tasks";

/** TaskStatus values (ITaskRegistry) of a task that can still be executed, attested or disputed. */
const UNFINISHED_STATUSES = new Set([1n, 2n, 5n, 6n]); // Open, Claimed, Pending, Disputed
const ZERO_HASH = `0x${"0".repeat(64)}`;
/** Largest eth_getLogs range asked for at once (public RPC endpoints refuse more). */
const MAX_LOG_RANGE = 5_000;

/** Why the chain lets an address upload: it is staked, owns a registered model, or holds enough OPG. */
export type UploaderStanding = "staked" | "model owner" | "balance";

export interface DataChainViewOptions {
  /** First block scanned for TaskSubmitted events. */
  fromBlock: number;
  /** OPG wei an address must hold to upload on that ground alone; 0 turns that ground off. */
  minUploaderBalance: bigint;
  /** How long an address's standing and the referenced set are reused, in ms. */
  cacheMs: number;
  now?: () => number;
}

/**
 * What the data node reads from the chain, read only (no key): whether an address may upload, and which
 * blobs something on chain still needs (bundles of registered models, inputs of unfinished tasks). Answers
 * are cached for `cacheMs`; a failed chain call is thrown, never cached.
 */
export class DataChainView {
  private readonly provider: Provider;
  private readonly ownProvider?: JsonRpcProvider;
  private readonly staking;
  private readonly models;
  private readonly tasks;
  private readonly token;
  private readonly now: () => number;
  private readonly standing = new Map<string, { at: number; value: UploaderStanding | null }>();
  /** modelId -> owner and bundle id, refreshed every cacheMs. */
  private modelsSeen: Array<{ owner: string; bundleId: string }> = [];
  private modelsAt = -Infinity;
  /** Unfinished tasks seen in TaskSubmitted logs: taskId -> input blob id. */
  private readonly openTasks = new Map<bigint, string>();
  private scannedTo: number;
  private referencedAt = -Infinity;
  private referencedCache = new Set<string>();

  /** `chain`: a JSON-RPC URL (the view owns that provider) or a provider to share. */
  constructor(
    chain: string | Provider,
    deployment: Deployment,
    private readonly opts: DataChainViewOptions,
  ) {
    if (typeof chain === "string") {
      this.ownProvider = new JsonRpcProvider(chain, undefined, {
        staticNetwork: true,
        batchMaxCount: 1,
        cacheTimeout: -1,
      });
      this.provider = this.ownProvider;
    } else {
      this.provider = chain;
    }
    this.staking = NodeStaking__factory.connect(deployment.staking, this.provider);
    this.models = ModelRegistry__factory.connect(deployment.models, this.provider);
    this.tasks = TaskRegistry__factory.connect(deployment.tasks, this.provider);
    this.token = OPGToken__factory.connect(deployment.token, this.provider);
    this.now = opts.now ?? Date.now;
    this.scannedTo = opts.fromBlock - 1;
  }

  /** Why `address` may upload, or null when the chain gives it no standing. */
  async uploaderStanding(address: string): Promise<UploaderStanding | null> {
    const key = address.toLowerCase();
    const hit = this.standing.get(key);
    if (hit && this.now() - hit.at < this.opts.cacheMs) return hit.value;
    const value = await this.lookUpStanding(address);
    if (this.standing.size > 100_000) this.standing.clear();
    this.standing.set(key, { at: this.now(), value });
    return value;
  }

  private async lookUpStanding(address: string): Promise<UploaderStanding | null> {
    const info = await this.staking.nodeInfo(address);
    if (info.bonded > 0n) return "staked";
    const models = await this.registeredModels();
    if (models.some((m) => m.owner.toLowerCase() === address.toLowerCase())) return "model owner";
    if (this.opts.minUploaderBalance > 0n) {
      if ((await this.token.balanceOf(address)) >= this.opts.minUploaderBalance) return "balance";
    }
    return null;
  }

  private async registeredModels(): Promise<Array<{ owner: string; bundleId: string }>> {
    if (this.now() - this.modelsAt < this.opts.cacheMs) return this.modelsSeen;
    const count = Number(await this.models.modelCount());
    const out: Array<{ owner: string; bundleId: string }> = [];
    for (let id = 1; id <= count; id++) {
      const m = await this.models.getModel(id);
      out.push({ owner: m.owner, bundleId: String(m.bundleHash).slice(2).toLowerCase() });
    }
    this.modelsSeen = out;
    this.modelsAt = this.now();
    return out;
  }

  /**
   * Blob ids something on chain still needs: every registered model's bundle (active or not: it can be
   * reactivated) and the input blob of every task not yet final. Reorgs only ever make the set larger than
   * needed until the next refresh (a task whose submission was undone reads as status None and is dropped).
   */
  async referencedIds(): Promise<Set<string>> {
    if (this.now() - this.referencedAt < this.opts.cacheMs) return this.referencedCache;
    const ids = new Set<string>();
    for (const m of await this.registeredModels()) ids.add(m.bundleId);
    const head = await this.provider.getBlockNumber();
    for (let from = this.scannedTo + 1; from <= head; from += MAX_LOG_RANGE) {
      const to = Math.min(head, from + MAX_LOG_RANGE - 1);
      const logs = await this.provider.getLogs({
        address: await this.tasks.getAddress(),
        topics: [TOPICS.submitted],
        fromBlock: from,
        toBlock: to,
      });
      for (const log of logs) {
        const t = parseSubmitted(log);
        const hash = String(t.task.inputDataHash).toLowerCase();
        if (hash !== ZERO_HASH) this.openTasks.set(t.taskId, hash.slice(2));
      }
      this.scannedTo = to;
    }
    for (const [taskId, blobId] of this.openTasks) {
      if (UNFINISHED_STATUSES.has(await this.tasks.taskStatus(taskId))) ids.add(blobId);
      else this.openTasks.delete(taskId);
    }
    this.referencedCache = ids;
    this.referencedAt = this.now();
    return ids;
  }

  destroy(): void {
    this.ownProvider?.destroy();
  }
}
