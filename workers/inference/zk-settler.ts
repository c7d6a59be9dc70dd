import type { Log, TransactionReceipt } from "ethers";
import { RevertedError } from "../runtime/submitter";
import { taskRegistryInterface, type SubmittedTask } from "../runtime/tasks";

/** A proved ZK task ready to settle: the journal's proof words and packed outputs. */
export interface ProvedTask {
  submitted: SubmittedTask;
  proof: string[];
  outputs: string[];
}

/** How one task of a batch ended: verified in `receipt`, or skipped (no longer open when it was mined). */
export type SettleOutcome =
  | { kind: "verified"; receipt: TransactionReceipt; nodeFee: bigint }
  | { kind: "skipped"; receipt: TransactionReceipt; status: number };

interface Waiting {
  task: ProvedTask;
  resolve: (outcome: SettleOutcome | null) => void;
  reject: (err: unknown) => void;
}

/**
 * The ZK mode's settlement step: proved tasks wait here and go to the registry's `submitResults` together,
 * whose proofs it checks with one pairing product (about 216,000 gas per digits task at 8 per batch, every
 * transaction counted, against 441,000 with the old claim and per-proof checks; see the README's gas table).
 * No proof waits for a batch to fill: a task proved while nothing is being sent goes at once (a lone task
 * keeps its latency); tasks proved while a batch is mining go in the next one, up to `maxBatch`. A batch that
 * reverts is sent again one task at a time, so one bad task cannot hold the others back.
 */
export class ZkSettler {
  private readonly queue: Waiting[] = [];
  private sending = false;

  constructor(
    private readonly send: (data: string, taskIds: bigint[]) => Promise<TransactionReceipt | null>,
    private readonly maxBatch: number,
  ) {}

  /** Tasks waiting or being sent. */
  get pending(): number {
    return this.queue.length;
  }

  /** Settle `task`: resolves when its batch is mined (null in a dry run), rejects with the batch's error. */
  settle(task: ProvedTask): Promise<SettleOutcome | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject });
      void this.pump();
    });
  }

  private async pump() {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          await this.sendBatch(batch);
        } catch (err) {
          if (batch.length > 1 && err instanceof RevertedError) {
            for (const one of batch) await this.sendBatch([one]).catch((e) => one.reject(e));
          } else for (const one of batch) one.reject(err);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  private async sendBatch(batch: Waiting[]) {
    const data = taskRegistryInterface.encodeFunctionData("submitResults", [
      batch.map(({ task }) => ({
        taskId: task.submitted.taskId,
        task: task.submitted.task,
        input: task.submitted.input,
        outputs: task.outputs,
        proof: task.proof,
      })),
    ]);
    const receipt = await this.send(
      data,
      batch.map(({ task }) => task.submitted.taskId),
    );
    if (!receipt) {
      for (const one of batch) one.resolve(null);
      return;
    }
    const outcomes = outcomesOf(receipt.logs);
    for (const one of batch) {
      const outcome = outcomes.get(one.task.submitted.taskId);
      if (outcome?.kind === "verified") one.resolve({ kind: "verified", receipt, nodeFee: outcome.value });
      else if (outcome?.kind === "skipped")
        one.resolve({ kind: "skipped", receipt, status: Number(outcome.value) });
      else
        one.reject(new Error(`submitResults mined without a verdict for task ${one.task.submitted.taskId}`));
    }
  }
}

/** Per task id: TaskVerified (with the node fee) or TaskResultSkipped (with the status it had). */
function outcomesOf(logs: readonly Log[]) {
  const out = new Map<bigint, { kind: "verified" | "skipped"; value: bigint }>();
  for (const log of logs) {
    const parsed = taskRegistryInterface.parseLog(log);
    if (parsed?.name === "TaskVerified")
      out.set(parsed.args.taskId, { kind: "verified", value: parsed.args.nodeFee });
    if (parsed?.name === "TaskResultSkipped")
      out.set(parsed.args.taskId, { kind: "skipped", value: BigInt(parsed.args.status) });
  }
  return out;
}
