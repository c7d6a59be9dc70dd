import { solidityPackedKeccak256 } from "ethers";
import type { NodeStaking } from "../../typechain-types";

/** NodeStaking.Role.Inference. */
const INFERENCE_ROLE = 0;
/** Addresses read per nodesByRole page. */
const PAGE = 200;

/** A node ahead in a task's order that keeps settling tasks is waited for at most this many slots per rank. */
export const BUSY_SLOTS = 6;

export interface AssignmentOptions {
  /**
   * How long a node ahead of this one in a task's order may stay silent (no result of its own settled) before
   * this node takes the task on (0: every node starts at once, the old race).
   */
  slotMs: number;
  /** How often the roster of eligible inference nodes is read again from NodeStaking. */
  refreshMs: number;
}

/**
 * The order in which nodes serve `taskId`: every node sorted by keccak256(taskId, node), the same order on
 * every machine that reads the same roster. Independent per task, so the first place falls to each node in
 * turn about equally often (fairness), and nobody can choose its place without choosing its address before
 * the task exists.
 */
export function serviceOrder(taskId: bigint, nodes: readonly string[]): string[] {
  const keyed = nodes.map((node) => ({
    node,
    key: solidityPackedKeccak256(["uint256", "address"], [taskId, node]),
  }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((k) => k.node);
}

/**
 * Claimless assignment of ZK and TEE tasks (issue 21): no claim transaction and no race. A task's proof or
 * enclave signature binds the node that made it, so the registry takes the first valid result from any
 * eligible node; the nodes agree among themselves who works first. Each node ranks the eligible inference
 * nodes by `serviceOrder`. The first node starts at once. A later node starts when every node ahead of it
 * has been silent for a slot: neither the task is younger than a slot, nor has that node settled any task
 * (its `TaskVerified`) in the last slot. A node ahead that is busy with a queue of its own first-place tasks
 * keeps settling, so it is waited for (no duplicated work in a burst), but at most BUSY_SLOTS slots per
 * rank (a node that is alive yet skips this task, by its policy, cannot hold it up for long). With a shared
 * roster and live nodes exactly one node runs each task; a node that is down costs a slot of latency, never
 * the task. The rule is not enforced on chain: a node that jumps the queue only spends its own work (the
 * first valid result wins, and a batch skips tasks already settled rather than reverting).
 */
export class Assignment {
  private roster: string[] = [];
  private readAt = 0;
  private readonly firstSeen = new Map<string, number>();
  /** Each task's order over the current roster: computed once per roster, not at every poll. */
  private readonly orders = new Map<string, string[]>();
  /** When each node (lower-case address) was last seen settling a task. */
  private readonly lastActive = new Map<string, number>();

  constructor(
    private readonly staking: Pick<NodeStaking, "nodesByRole" | "nodeCount" | "isEligible">,
    private readonly self: string,
    private readonly opts: AssignmentOptions,
  ) {}

  /** The eligible inference nodes as last read (this node always among them). */
  get nodes(): readonly string[] {
    return this.roster.length > 0 ? this.roster : [this.self];
  }

  /** Read the roster again when it is older than `refreshMs` (or `force`). */
  async refresh(force = false): Promise<void> {
    if (this.opts.slotMs === 0) return;
    if (!force && Date.now() - this.readAt < this.opts.refreshMs) return;
    const count = Number(await this.staking.nodeCount(INFERENCE_ROLE));
    const all: string[] = [];
    for (let offset = 0; offset < count; offset += PAGE) {
      all.push(...(await this.staking.nodesByRole(INFERENCE_ROLE, offset, PAGE)));
    }
    const eligible = await Promise.all(all.map((n) => this.staking.isEligible(n, INFERENCE_ROLE)));
    const roster = all.filter((_, i) => eligible[i]);
    if (!roster.some((n) => n.toLowerCase() === this.self.toLowerCase())) roster.push(this.self);
    this.roster = roster;
    this.orders.clear();
    this.readAt = Date.now();
  }

  /** This node's place in `taskId`'s order (0 = first). */
  rank(taskId: bigint): number {
    const order = this.orderOf(taskId);
    return order.findIndex((n) => n.toLowerCase() === this.self.toLowerCase());
  }

  /** `node` settled a task (its TaskVerified) at `at`: it is alive, and busy with its own queue. */
  sawActivity(node: string, at = Date.now()) {
    const key = node.toLowerCase();
    this.lastActive.set(key, Math.max(at, this.lastActive.get(key) ?? 0));
  }

  /**
   * When (ms since the epoch) this node may start `taskId`: at once when first in its order; else once every
   * node ahead has been silent for a slot since the task appeared, and at the latest BUSY_SLOTS slots per
   * rank after it appeared.
   */
  turnAt(taskId: bigint, now = Date.now()): number {
    const key = taskId.toString();
    let seen = this.firstSeen.get(key);
    if (seen === undefined) {
      seen = now;
      this.firstSeen.set(key, seen);
    }
    const order = this.orderOf(taskId);
    const rank = order.findIndex((n) => n.toLowerCase() === this.self.toLowerCase());
    if (rank <= 0) return seen;
    let start = seen;
    for (const ahead of order.slice(0, rank)) {
      const active = this.lastActive.get(ahead.toLowerCase()) ?? 0;
      start = Math.max(start, Math.max(seen, active) + this.opts.slotMs);
    }
    return Math.min(start, seen + rank * BUSY_SLOTS * this.opts.slotMs);
  }

  /** Whether this node's turn at `taskId` has come. */
  isMyTurn(taskId: bigint, now = Date.now()): boolean {
    return this.opts.slotMs === 0 || now >= this.turnAt(taskId, now);
  }

  /** Drop what is kept for a task that left the queue (settled, expired, refused). */
  forget(taskId: bigint) {
    this.firstSeen.delete(taskId.toString());
    this.orders.delete(taskId.toString());
  }

  private orderOf(taskId: bigint): string[] {
    const key = taskId.toString();
    let order = this.orders.get(key);
    if (!order) {
      order = serviceOrder(taskId, this.nodes);
      this.orders.set(key, order);
    }
    return order;
  }
}
