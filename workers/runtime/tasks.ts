import type { Log, Result } from "ethers";
import type { ITaskRegistryTypes as ITaskRegistry } from "../../typechain-types/contracts/tasks/TaskRegistry";
import { DisputeManager__factory, TaskRegistry__factory, type TaskRegistry } from "../../typechain-types";

export const taskRegistryInterface = TaskRegistry__factory.createInterface();

/** A task as a node sees it: the committed `Task` from its TaskSubmitted event, and the input words. */
export interface SubmittedTask {
  taskId: bigint;
  modelId: bigint;
  task: ITaskRegistry.TaskStruct;
  input: bigint[];
}

export const disputeManagerInterface = DisputeManager__factory.createInterface();

/** Verification modes (VerificationModes.sol): one bit each; a task carries exactly one. */
export const MODES = { zk: 1, optimistic: 2, tee: 4 } as const;
export type ModeName = keyof typeof MODES;

/** The name of a task's mode (`task.mode`); tasks from before modes existed (0) are ZK. */
export function modeName(mode: bigint | number | string | undefined): ModeName | `unknown mode ${number}` {
  const m = Number(mode ?? 0);
  if (m === 0 || m === MODES.zk) return "zk";
  if (m === MODES.optimistic) return "optimistic";
  if (m === MODES.tee) return "tee";
  return `unknown mode ${m}`;
}

export const TOPICS = {
  submitted: taskRegistryInterface.getEvent("TaskSubmitted")!.topicHash,
  claimed: taskRegistryInterface.getEvent("TaskClaimed")!.topicHash,
  verified: taskRegistryInterface.getEvent("TaskVerified")!.topicHash,
  expired: taskRegistryInterface.getEvent("TaskExpired")!.topicHash,
  posted: taskRegistryInterface.getEvent("TaskResultPosted")!.topicHash,
  attested: taskRegistryInterface.getEvent("TaskAttested")!.topicHash,
  rejected: taskRegistryInterface.getEvent("TaskRejected")!.topicHash,
  attestersPaid: taskRegistryInterface.getEvent("AttestersPaid")!.topicHash,
  /** An unattested result expired before the deadline: the task is open to claims again. */
  reopened: taskRegistryInterface.getEvent("TaskReopened")!.topicHash,
  disputeOpened: disputeManagerInterface.getEvent("DisputeOpened")!.topicHash,
  disputeVoted: disputeManagerInterface.getEvent("DisputeVoted")!.topicHash,
  disputeResolved: disputeManagerInterface.getEvent("DisputeResolved")!.topicHash,
  ballotSettled: disputeManagerInterface.getEvent("BallotSettled")!.topicHash,
  attesterSlashed: disputeManagerInterface.getEvent("AttesterSlashed")!.topicHash,
};

export function parseSubmitted(log: Pick<Log, "topics" | "data">): SubmittedTask {
  const parsed = taskRegistryInterface.parseLog(log);
  if (!parsed || parsed.name !== "TaskSubmitted") throw new Error("not a TaskSubmitted log");
  const a = parsed.args;
  // The event carries the committed Task itself: what claimTask, submitResult and expire take back.
  const task = (a.task as Result).toObject() as ITaskRegistry.TaskStruct;
  return { taskId: a.taskId, modelId: a.modelId, task, input: [...(a.input as bigint[])] };
}

/** JSON-safe form of a submitted task for the journal, and back. */
export function taskToJson(t: SubmittedTask): string {
  return JSON.stringify(t, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
}

export function taskFromJson(s: string): SubmittedTask {
  return JSON.parse(s, (_k, v) =>
    typeof v === "string" && /^-?[0-9]+n$/.test(v) ? BigInt(v.slice(0, -1)) : v,
  );
}

/** The 8 proof words TaskRegistry.submitResult takes: a, b (each pair swapped, as the pairing expects), c. */
export function proofWords(proof: { pi_a: string[]; pi_b: string[][]; pi_c: string[] }): bigint[] {
  return [
    proof.pi_a[0],
    proof.pi_a[1],
    proof.pi_b[0][1],
    proof.pi_b[0][0],
    proof.pi_b[1][1],
    proof.pi_b[1][0],
    proof.pi_c[0],
    proof.pi_c[1],
  ].map(BigInt);
}

/** A verified result as its TaskVerified event gives it and the registry's stored hash confirms it. */
export interface VerifiedResult {
  node: string;
  settledBlock: bigint;
  outputs: bigint[];
  transactionHash: string;
}

/**
 * The verified result of `taskId`: read from its `TaskVerified` event (the chain keeps only a hash of each
 * result) and checked with `isVerifiedResult`, so a node that rewrote its logs or an RPC that served another
 * event is caught. Null when the task has no verified result (yet). `fromBlock` narrows the log search
 * (the task's submission block, when known).
 */
export async function readVerifiedResult(
  tasks: Pick<TaskRegistry, "queryFilter" | "filters" | "isVerifiedResult">,
  taskId: bigint,
  fromBlock: number = 0,
): Promise<VerifiedResult | null> {
  const logs = await tasks.queryFilter(tasks.filters.TaskVerified(taskId), fromBlock);
  for (const log of logs) {
    const result = {
      node: log.args.node as string,
      settledBlock: BigInt(log.blockNumber),
      outputs: [...(log.args.outputs as bigint[])].map((w) => BigInt(w)),
    };
    if (await tasks.isVerifiedResult(taskId, result))
      return { ...result, transactionHash: log.transactionHash };
  }
  return null;
}
