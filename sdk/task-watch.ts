import { ethers, SocketProvider, type Filter, type Provider } from "ethers";
import type { NodeStaking, TaskRegistry } from "../typechain-types";
import { DisputeManager__factory } from "../typechain-types";
import {
  DISPUTE_OUTCOMES,
  MODE_TOPICS,
  type DisputeOutcomeName,
  type VerificationModeName,
} from "../workers/runtime/audit";
import { taskRegistryInterface, TOPICS } from "../workers/runtime/tasks";
import { OpgClientError, TaskRejectedError } from "./errors";
import { freshBlock, freshCall } from "./transactions";

/** The registry's task statuses (`ITaskRegistry.TaskStatus`), by index. */
export const TASK_STATUSES = [
  "None",
  "Open",
  "Claimed",
  "Verified",
  "Expired",
  "Pending",
  "Disputed",
  "Rejected",
] as const;
export type TaskStatusName = (typeof TASK_STATUSES)[number];

/** What a wait is waiting for, and why: `onStatus` gets one each time it changes. */
export interface TaskWaitStatus {
  /** The task's status on chain. */
  status: TaskStatusName;
  /**
   * One line for a person: "open, waiting for the first node in its service order to settle it with a proof
   * (2 eligible inference nodes staked); ...".
   */
  message: string;
  /** The task's verification mode, when known (tasks submitted by this client, or found by their event). */
  mode?: VerificationModeName;
  /** Optimistic mode: the node holding the claim, while the task is claimed (ZK and TEE tasks are not claimed). */
  claimedBy?: string;
  /** When that claim's window ends (unix seconds, chain time). */
  claimExpiresAt?: number;
  /** The task's deadline (unix seconds, chain time), when known. */
  deadline?: number;
  /**
   * Inference nodes eligible to serve it now (counted while the task is open): any of them may settle a ZK or
   * TEE task, or claim an optimistic one.
   */
  eligibleNodes?: number;
  /** Optimistic mode, while pending or disputed: the node that posted the outputs. */
  postedBy?: string;
  /** Optimistic mode: when the challenge window ends (unix seconds, chain time). */
  windowEnd?: number;
  /** Optimistic mode: attestations so far, and the quorum the task needs. */
  attestations?: number;
  quorum?: number;
  /**
   * Optimistic mode, while disputed or once rejected: who challenged and how it is decided: `byProof` (a
   * model with a circuit: the challenger proved other outputs, which rejected the posted ones at once) or a
   * stake vote open until `deadline`, with the stake weighed so far for and against the node (OPG wei).
   */
  dispute?: {
    challenger: string;
    deadline: number;
    byProof: boolean;
    weightFor?: bigint;
    weightAgainst?: bigint;
  };
  /**
   * Optimistic mode: the task was reopened (TaskReopened) after the outputs `previousNode` posted met no
   * quorum of attestations (its collateral slashed): it is open to claims again until its deadline.
   */
  reopened?: { previousNode: string; block: number };
  /** Rejected: how the dispute ended, and the fee refunded to the requester (wei). */
  outcome?: DisputeOutcomeName;
  refund?: bigint;
}

export interface WaitForResultOptions {
  /** Give up after this long (default 300,000 ms); the error names the last status. */
  timeoutMs?: number;
  /** The polling fallback's interval (default 1,000 ms); events usually come first. */
  pollMs?: number;
  /** Called with the situation whenever it changes. */
  onStatus?: (s: TaskWaitStatus) => void;
  /**
   * A block at or before the task's submission, to find its deadline (a task this client submitted is
   * known already; otherwise the last 10,000 blocks are searched).
   */
  fromBlock?: number;
}

/**
 * One look at a task: finished with a value, failed for good (with `error` when a more specific error than
 * an OpgClientError of `fail` says it), or still waiting (and why).
 */
export type TaskStep<T> =
  | { done: T }
  | { fail: string; error?: OpgClientError; status?: TaskWaitStatus }
  | { status: TaskWaitStatus };

const when = (seconds: number) => new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
const opg = (wei: bigint) => `${ethers.formatEther(wei)} OPG`;

/**
 * How many inference nodes are eligible to serve a task now (settle a ZK or TEE task, claim an optimistic
 * one), read from NodeStaking (registered for the inference role with free stake at least its minimum:
 * NodeStaking.isEligible). The registry keeps no
 * count of eligible nodes, so the registered ones are read a page at a time (at most `maxScan`), and the
 * answer is kept for `ttlMs`.
 */
export class EligibleNodes {
  private cached?: { at: number; value: Promise<{ eligible: number; scanned: number; registered: number }> };

  constructor(
    private readonly provider: Provider,
    private readonly staking: NodeStaking,
    private readonly ttlMs = 15_000,
    private readonly maxScan = 500,
  ) {}

  count(): Promise<{ eligible: number; scanned: number; registered: number }> {
    if (!this.cached || Date.now() - this.cached.at > this.ttlMs) {
      const value = this.read();
      value.catch(() => (this.cached = undefined));
      this.cached = { at: Date.now(), value };
    }
    return this.cached.value;
  }

  private async read() {
    const INFERENCE = 0;
    const registered = Number((await freshCall(this.provider, this.staking, "nodeCount", [INFERENCE]))[0]);
    let eligible = 0;
    let scanned = 0;
    for (let offset = 0; offset < Math.min(registered, this.maxScan); offset += 100) {
      const page = (await freshCall(this.provider, this.staking, "nodesByRole", [INFERENCE, offset, 100]))[0];
      const flags = await Promise.all(
        [...(page as string[])].map(
          async (node) => (await freshCall(this.provider, this.staking, "isEligible", [node, INFERENCE]))[0],
        ),
      );
      eligible += flags.filter(Boolean).length;
      scanned += flags.length;
    }
    return { eligible, scanned, registered };
  }
}

/** What the waiting side knows of a task: its deadline, mode and quorum (from its TaskSubmitted event). */
export interface KnownTask {
  deadline?: number;
  mode?: VerificationModeName;
  quorum?: number;
}

/**
 * What settles an open task in each mode: a ZK or TEE task is not claimed; the eligible inference nodes take
 * it in their service order (keccak256 of task and node: the first node at once, the next one slot later if
 * it is still open), and the first valid result from any of them settles it. An optimistic task is claimed.
 */
const OPEN_WAIT: Record<VerificationModeName, string> = {
  zk: "open, waiting for the first node in its service order to settle it with a proof",
  tee: "open, waiting for the first node in its service order to settle it with an enclave-signed result",
  optimistic: "open, nobody has claimed it yet",
};

/** What a task waits for, read fresh from the registry (and NodeStaking while it is open). */
export async function describeTask(deps: {
  provider: Provider;
  tasks: TaskRegistry;
  nodes: EligibleNodes;
  taskId: bigint;
  /** The task's deadline, when known. */
  deadline?: number;
  /** The task's mode and attestation quorum, when known. */
  mode?: VerificationModeName;
  quorum?: number;
  /** Submitted by this client: a None status means the RPC has not seen it yet, not a wrong id. */
  known: boolean;
  /** A block at or before the task's submission, to search its events from (default: 10,000 blocks back). */
  fromBlock?: number;
}): Promise<TaskStep<TaskStatusName>> {
  const { provider, tasks, taskId, deadline, mode } = deps;
  // Every read at one block, so that the status and the claim agree.
  const block = await freshBlock(provider);
  const read = async (fn: string) => await freshCall(provider, tasks, fn, [taskId], block.number);
  const status = TASK_STATUSES[Number((await read("taskStatus"))[0])];
  const base = {
    ...(deadline === undefined ? {} : { deadline }),
    ...(mode === undefined ? {} : { mode }),
  };
  const id = ethers.toBeHex(taskId, 32);
  const registry = await tasks.getAddress();
  const from = deps.fromBlock ?? Math.max(0, block.number - 10_000);
  const lastLog = async (topic: string) => {
    const logs = await provider.getLogs({
      address: registry,
      topics: [topic, id],
      fromBlock: from,
      toBlock: block.number,
    });
    const log = logs.at(-1);
    const parsed = log ? taskRegistryInterface.parseLog(log) : null;
    return log && parsed ? { args: parsed.args, blockNumber: log.blockNumber } : null;
  };
  switch (status) {
    case "Verified":
      return { done: status };
    case "Expired":
      return {
        fail: `task ${taskId} expired without a verified result: its fee went back to the requester`,
        status: { status, message: "expired without a verified result; the fee was refunded", ...base },
      };
    case "Rejected": {
      const rejected = await lastLog(MODE_TOPICS.rejected);
      const outcome = rejected ? DISPUTE_OUTCOMES[Number(rejected.args.outcome)] : undefined;
      const refund: bigint | undefined = rejected ? rejected.args.refund : undefined;
      const d = await disputeOf(deps, block.number, from);
      const dispute = d && { challenger: d.challenger, deadline: d.deadline, byProof: d.byProof };
      const why = dispute?.byProof
        ? `challenged with a proof: ${dispute.challenger} proved the posted outputs wrong (a Groth16 proof of ` +
          "other outputs on the task's input; outcome NodeWrong: the node and its attesters were slashed)"
        : outcome === "NodeWrong"
          ? "the vote found the posted outputs wrong (outcome NodeWrong: the node and its attesters were slashed)"
          : outcome === "Undecided"
            ? "the vote could not decide (outcome Undecided: less stake voted than the quorum; nobody slashed)"
            : "its posted outputs were rejected after a dispute";
      const paid = refund === undefined ? "its fee" : `its fee of ${ethers.formatEther(refund)} OPG`;
      const message = `rejected: ${why}; ${paid} went back to the requester`;
      return {
        fail: `task ${taskId} was ${message}`,
        error: new TaskRejectedError(`task ${taskId} was ${message}`, taskId, outcome, refund),
        status: {
          status,
          message,
          ...base,
          mode: "optimistic",
          ...(dispute ? { dispute } : {}),
          ...(outcome ? { outcome } : {}),
          ...(refund !== undefined ? { refund } : {}),
        },
      };
    }
    case "None": {
      if (!deps.known) return { fail: `task ${taskId} does not exist` };
      if (deadline !== undefined && block.timestamp > deadline) {
        // The submission was mined once, yet this chain's latest block, past the deadline, does not hold it.
        const message =
          `this RPC node's chain does not hold the task, and its latest block (${when(block.timestamp)}) is ` +
          `past the task's deadline ${when(deadline)}: the submission is not on this chain (a reorganisation, ` +
          "or another chain behind the same URL), so nothing can settle it here";
        return { fail: `task ${taskId}: ${message}`, status: { status, message, ...base } };
      }
      return { status: { status, message: "submitted, not yet visible on this RPC node", ...base } };
    }
  }
  // Chain time: the latest block's timestamp, read at this look (never the wall clock), so a deadline passed
  // while the wait was already polling is seen at the next look.
  const now = block.timestamp;
  if (status === "Pending" || status === "Disputed") {
    // A posted result no longer depends on the deadline: the window (and any dispute) decides.
    const [postedBy, end] = await read("pendingOf");
    const windowEnd = Number(end);
    const attested = await lastLog(MODE_TOPICS.attested);
    const attestations = attested ? Number(attested.args.count) : 0;
    // The quorum is frozen in the task: known when this client submitted it, else read from its event.
    let quorum = deps.quorum;
    if (quorum === undefined) {
      const submitted = await lastLog(TOPICS.submitted);
      if (submitted)
        quorum = Number((submitted.args.task as { attestationQuorum: bigint }).attestationQuorum);
    }
    const facts = {
      ...base,
      mode: "optimistic" as const,
      postedBy,
      windowEnd,
      attestations,
      ...(quorum === undefined ? {} : { quorum }),
    };
    const tally =
      quorum === undefined
        ? `${attestations} attestation${attestations === 1 ? "" : "s"} (quorum unknown: task event not found)`
        : `${attestations} of ${quorum} attestation${quorum === 1 ? "" : "s"}`;
    if (status === "Disputed") {
      // Only a vote stays open: a challenge by proof rejects the posted outputs in its own transaction.
      const dispute = (await disputeOf(deps, block.number, from)) ?? {
        challenger: ethers.ZeroAddress,
        deadline: 0,
        byProof: false,
      };
      const tally =
        dispute.weightFor === undefined
          ? ""
          : ` (so far ${opg(dispute.weightFor)} of stake for the node, ${opg(dispute.weightAgainst!)} against)`;
      const message =
        now > dispute.deadline
          ? `disputed by ${dispute.challenger}: the vote ended at ${when(dispute.deadline)}${tally}; ` +
            "anyone may now settle it by the vote (resolveVote)"
          : `disputed by ${dispute.challenger}: vote open until ${when(dispute.deadline)}: staked verification ` +
            `nodes vote on the posted outputs, the challenger's stake against them${tally}`;
      return { status: { status, message, ...facts, dispute } };
    }
    if (now <= windowEnd) {
      const message =
        `outputs posted by ${postedBy} without proof: challenge window open until ${when(windowEnd)}, ` +
        `${tally} so far; final after the window with the quorum, unless a verification node challenges`;
      return { status: { status, message, ...facts } };
    }
    if (quorum === undefined || attestations >= quorum) {
      const message =
        `outputs posted by ${postedBy}: challenge window ended at ${when(windowEnd)} unchallenged with ${tally}: ` +
        "final as soon as anyone calls finalizeResult (the node or a verification node normally does)";
      return { status: { status, message, ...facts } };
    }
    const short = `outputs posted by ${postedBy}: the challenge window ended at ${when(windowEnd)} with only ${tally}`;
    // expireUnattested reopens the task before its deadline, refunds it after.
    if (deadline === undefined || now < deadline) {
      const message =
        `${short}: they cannot become final; once anyone calls expireUnattested (opg task reopen ${taskId}) ` +
        "the node's collateral is slashed and the task reopens for another node" +
        (deadline === undefined ? "" : ` until its deadline ${when(deadline)}`);
      return { status: { status, message, ...facts } };
    }
    const message =
      `${short}, and its deadline ${when(deadline)} has passed: the result cannot become final; refundable to ` +
      `the requester (expireUnattested, or opg task refund ${taskId})`;
    return { fail: `task ${taskId}: ${message}`, status: { status, message, ...facts } };
  }
  if (deadline !== undefined && now > deadline) {
    const message =
      `its deadline ${when(deadline)} passed without a verified result (still ${status}): no node can ` +
      `settle it now; refundable to the requester (refund(${taskId}) or opg task refund ${taskId})`;
    return { fail: `task ${taskId}: ${message}`, status: { status, message, ...base } };
  }
  const until = deadline === undefined ? "" : `; deadline ${when(deadline)}`;
  if (status === "Claimed") {
    // Only optimistic tasks are claimed: the claimer owes its posted outputs.
    const [node, expires] = await read("claimOf");
    const claimExpiresAt = Number(expires);
    const claim = { claimedBy: node as string, claimExpiresAt, ...base, mode: "optimistic" as const };
    if (now <= claimExpiresAt) {
      const message = `claimed by ${node} until ${when(claimExpiresAt)}: waiting for it to post its outputs${until}`;
      return { status: { status, message, ...claim } };
    }
    const message =
      `claimed by ${node}, whose claim window ended at ${when(claimExpiresAt)} without posted outputs: ` +
      `another eligible node may take it over${until}`;
    return { status: { status, message, ...claim } };
  }
  // Only an optimistic task is reopened (posted outputs that met no quorum of attestations).
  const reopenedLog = mode === "zk" || mode === "tee" ? null : await lastLog(MODE_TOPICS.reopened);
  const reopened = reopenedLog
    ? { previousNode: reopenedLog.args.previousNode as string, block: reopenedLog.blockNumber }
    : undefined;
  const again = reopened
    ? `reopened at block ${reopened.block}: the outputs ${reopened.previousNode} posted met no quorum of ` +
      "attestations (its collateral was slashed), so the task is being served again: "
    : "";
  const { eligible, scanned, registered } = await deps.nodes.count();
  const counted = scanned < registered ? `${eligible} of the first ${scanned}` : `${eligible}`;
  const waiting = mode === undefined ? "open, no result yet" : OPEN_WAIT[mode];
  const message =
    again +
    (eligible === 0
      ? `open, but no eligible node is staked: no inference node has the minimum free stake ` +
        `(${registered} registered), so nobody can ${mode === "optimistic" ? "claim" : "serve"} it${until}`
      : `${waiting} (${counted} eligible inference node${eligible === 1 ? "" : "s"} staked)${until}`);
  return {
    status: { status, message, eligibleNodes: eligible, ...base, ...(reopened ? { reopened } : {}) },
  };
}

/**
 * The record of the task's dispute, read at `blockTag` from the dispute manager that opened it: the one whose
 * `DisputeOpened` sits in the transaction of the registry's last `TaskDisputed` for the task (the registry
 * checked then that it was the manager in office), so a later `setVerificationModules` does not hide it.
 */
async function disputeOf(
  deps: { provider: Provider; tasks: TaskRegistry; taskId: bigint },
  blockTag: number,
  fromBlock: number,
): Promise<Required<TaskWaitStatus>["dispute"] | undefined> {
  const { provider, tasks, taskId } = deps;
  const id = ethers.toBeHex(taskId, 32);
  const disputed = (
    await provider.getLogs({
      address: await tasks.getAddress(),
      topics: [MODE_TOPICS.disputed, id],
      fromBlock,
      toBlock: blockTag,
    })
  ).at(-1);
  if (!disputed) return undefined;
  const receipt = await provider.getTransactionReceipt(disputed.transactionHash);
  const opened = receipt?.logs.find((l) => l.topics[0] === MODE_TOPICS.disputeOpened && l.topics[1] === id);
  if (!opened) return undefined;
  const disputes = DisputeManager__factory.connect(opened.address, provider);
  const d = (await freshCall(provider, disputes, "disputeOf", [taskId], blockTag))[0];
  if (d.challenger === ethers.ZeroAddress) return undefined;
  const byProof = Boolean(d.circuit);
  return {
    challenger: d.challenger as string,
    deadline: Number(d.deadline),
    byProof,
    ...(byProof ? {} : { weightFor: d.weightFor as bigint, weightAgainst: d.weightAgainst as bigint }),
  };
}

/**
 * Call `onEvent` when the registry logs a verification or an expiry of `taskId`, or in optimistic mode a
 * claim, an abandoned claim, its posted outputs, an attestation, a dispute, a rejection or a
 * reopening. A socket provider (WebSocketProvider) pushes the logs; over HTTP each new block (ethers' block
 * polling) is followed by one getLogs for the new range, which needs no server-side filter that could
 * expire. Returns the function that stops it. Failures are left to the caller's polling.
 */
export function subscribeTaskEvents(
  provider: Provider,
  registry: string,
  taskId: bigint,
  onEvent: () => void,
): () => Promise<void> {
  const filter: Filter = {
    address: registry,
    topics: [
      [
        TOPICS.claimed,
        MODE_TOPICS.claimAbandoned,
        MODE_TOPICS.reopened,
        TOPICS.verified,
        TOPICS.expired,
        MODE_TOPICS.resultPosted,
        MODE_TOPICS.attested,
        MODE_TOPICS.disputed,
        MODE_TOPICS.rejected,
      ],
      ethers.toBeHex(taskId, 32),
    ],
  };
  // Duck-typed as well (an ES-module ethers has other classes): a WebSocketProvider or IpcSocketProvider.
  if (provider instanceof SocketProvider || "websocket" in provider || "socket" in provider) {
    const listener = () => onEvent();
    const on = provider.on(filter, listener).catch(() => undefined);
    return async () => {
      await on;
      await provider.off(filter, listener).catch(() => undefined);
    };
  }
  let next: number | undefined;
  const onBlock = async (block: number) => {
    const from = next ?? block;
    if (from > block) return;
    next = block + 1;
    try {
      const logs = await provider.getLogs({ ...filter, fromBlock: from, toBlock: block });
      if (logs.length > 0) onEvent();
    } catch {
      next = Math.min(next, from); // read the range again with the next block
    }
  };
  const on = provider.on("block", onBlock).catch(() => undefined);
  return async () => {
    await on;
    await provider.off("block", onBlock).catch(() => undefined);
  };
}

/** How long one look may take before it counts as an RPC failure and the next poll looks again. */
export const STEP_TIMEOUT_MS = 30_000;

/** How long a finished wait waits for its subscription to stop before it settles anyway. */
const UNSUBSCRIBE_TIMEOUT_MS = 10_000;

/** `p`, or a plain Error naming `what` once `ms` have passed without an answer. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} got no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Wait until `step` finishes: it is run at once, on every event `subscribe` reports and every `pollMs`
 * (the fallback), never twice at a time. `onStatus` sees each new situation; a transient error (an RPC
 * failure) is retried; a look that gets no answer within `stepTimeoutMs` (default 30,000 ms: a request the
 * RPC lost) counts as one, so the next poll looks again instead of waiting on it; on timeout the error
 * names the last situation. `cancel` ends the wait with an error. The result settles once, after the
 * subscription has stopped (or `UNSUBSCRIBE_TIMEOUT_MS` later), and never after that.
 */
export function waitForStep<T>(opts: {
  what: string;
  step: () => Promise<TaskStep<T>>;
  subscribe: (onEvent: () => void) => () => Promise<void>;
  timeoutMs: number;
  pollMs: number;
  stepTimeoutMs?: number;
  onStatus?: (s: TaskWaitStatus) => void;
}): { result: Promise<T>; cancel: (e: Error) => void } {
  const stepTimeoutMs = opts.stepTimeoutMs ?? STEP_TIMEOUT_MS;
  let finish!: (outcome: { value: T } | { error: Error }) => void;
  const result = new Promise<T>((resolve, reject) => {
    let done = false;
    let running = false;
    let again = false;
    let last: TaskWaitStatus | undefined;
    let lastShown = "";
    let lastError: Error | undefined;
    const show = (s: TaskWaitStatus) => {
      last = s;
      const key = JSON.stringify(s, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
      if (key === lastShown) return;
      lastShown = key;
      try {
        opts.onStatus?.(s);
      } catch {
        // A failing status callback must not stop the wait.
      }
    };
    const check = async () => {
      if (done) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          try {
            const step = await bounded(opts.step(), stepTimeoutMs, "the look at the chain");
            if (done) return;
            lastError = undefined;
            if ("done" in step) return finish({ value: step.done });
            if (step.status) show(step.status);
            if ("fail" in step) return finish({ error: step.error ?? new OpgClientError(step.fail) });
          } catch (e) {
            if (e instanceof OpgClientError) return finish({ error: e });
            lastError = e as Error; // an RPC failure: the next poll tries again
          }
        } while (again && !done);
      } finally {
        running = false;
      }
    };
    const poll = setInterval(() => void check(), opts.pollMs);
    const timeout = setTimeout(() => {
      const situation = last ? `still ${last.status}: ${last.message}` : "its status was never read";
      const error = lastError ? ` (last error: ${lastError.message})` : "";
      finish({
        error: new OpgClientError(`${opts.what}: no result after ${opts.timeoutMs} ms, ${situation}${error}`),
      });
    }, opts.timeoutMs);
    const unsubscribe = opts.subscribe(() => void check());
    finish = (outcome) => {
      if (done) return;
      done = true;
      clearInterval(poll);
      clearTimeout(timeout);
      // Settle once the subscription is gone, so nothing of the wait outlives it (bounded: an RPC that does not
      // answer the unsubscription must not keep the wait, or close(), pending).
      void bounded(unsubscribe(), UNSUBSCRIBE_TIMEOUT_MS, "the unsubscription")
        .catch(() => undefined)
        .then(() => ("value" in outcome ? resolve(outcome.value) : reject(outcome.error)));
    };
    void check();
  });
  return { result, cancel: (e) => finish({ error: e }) };
}
