/**
 * What the verification modes' modules (zk.ts, tee.ts, optimistic.ts) get from the inference node: the one
 * interface they reach the chain, the journal, the submitter and the node's shared state through, so a mode
 * never touches the node's privates. Also the types and the stop they share with the node's state machine.
 */
import type client from "prom-client";
import type { Log } from "ethers";
import type { AnyBundle } from "../../runtime/bundles";
import type { Chain, Deployment } from "../../runtime/chain";
import type { Journal } from "../../runtime/journal";
import type { Logger } from "../../runtime/logger";
import type { TxSubmitter } from "../../runtime/submitter";
import type { Assignment } from "../assignment";
import type { InferenceConfig } from "../node";

/**
 * What `prepare` found: the model bundle (a plain bundle only for TEE and optimistic tasks), the quantized
 * input, and the output values (the fixed-point executor's, or onnxruntime's quantized for a plain bundle).
 */
export interface Prepared {
  bundle: AnyBundle;
  input: bigint[];
  outputs: bigint[];
}

/** Ends a task's pipeline quietly: dry run after the first transaction it would send, or a task given up. */
export class PipelineStop extends Error {}

/** The node's metrics a mode records into. */
export interface ModeMetrics {
  /** Seconds per pipeline stage (execute, prove, attest, chain). */
  seconds: client.Histogram<"stage">;
  /** Results settled or posted, by mode and outcome. */
  results: client.Counter<"mode" | "outcome">;
}

/** The inference node as its verification modes see it. */
export interface ModeContext {
  readonly chain: Chain;
  readonly deployment: Deployment;
  readonly journal: Journal;
  readonly submitter: TxSubmitter;
  readonly config: InferenceConfig;
  readonly log: Logger;
  readonly metrics: ModeMetrics;
  /** The node's address (its wallet). */
  readonly address: string;
  /** Who serves a ZK or TEE task first (no claim): this node waits its turn in each task's order. */
  readonly assignment: Assignment;
  /**
   * Claimed optimistic tasks short of their quorum of attestations: when to ask again, the wait before that,
   * and the outputs already computed. Shared with the node, which schedules by it and drops given-up tasks.
   */
  readonly attestRetry: Map<string, { at: number; delayMs: number; prepared: Prepared }>;
  /** A result of ours settled as verified by `receipt`: earnings, journal, collateral, metric. */
  settled(
    taskId: bigint,
    receipt: { logs: readonly Log[]; blockNumber: number },
    reason: string | null,
    labels: { mode: string; outcome: string },
  ): void;
  /** Bring a task's journal state in line with the chain, after a reorg or a revert. */
  reconcile(taskId: bigint, why: string): Promise<void>;
  /** Read the node's registration and stake again at the next poll (its free stake changed). */
  recheckEligibility(): void;
}

/**
 * Dry run: everything up to the settling transaction was done and simulated; park the task (`skipped`)
 * instead of running and simulating it again at every poll.
 */
export function parkDryRun(journal: Journal, taskId: bigint, what: string): never {
  journal.setState(taskId, "skipped", { reason: `dry run: ${what}` });
  throw new PipelineStop();
}
