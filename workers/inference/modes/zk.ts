/**
 * The ZK mode's steps of the inference node: proving a task's outputs in the prover pool (`prove`) and
 * settling the proved result through the batch settler (`submit`, zk-settler.ts). The node's state machine
 * (node.ts) calls them for a `seen` and a `proved` ZK task.
 */
import type { Log } from "ethers";
import { packValues } from "../../../zkml";
import { isPlainBundle } from "../../runtime/bundles";
import { taskRegistryInterface, type SubmittedTask } from "../../runtime/tasks";
import type { ProverPool } from "../prover-pool";
import { ZkSettler } from "../zk-settler";
import { parkDryRun, PipelineStop, type ModeContext, type Prepared } from "./context";

const MAX_PROVE_ATTEMPTS = 3;

/** The ZK mode: proves in the node's prover pool, settles in batches. */
export class ZkMode {
  /** ZK results go to the registry in batches (submitResults). */
  private readonly zkSettler: ZkSettler;

  constructor(
    private readonly ctx: ModeContext,
    private readonly prover: ProverPool,
  ) {
    this.zkSettler = new ZkSettler(
      async (data, taskIds) =>
        ctx.submitter.send(
          taskIds.length > 1 ? `results x${taskIds.length}` : "result",
          await ctx.chain.tasks.getAddress(),
          data,
          taskIds[0],
        ),
      ctx.config.settleBatch,
    );
  }

  /**
   * A Groth16 proof of the task's outputs on its input, bound to this node (the public signals submitResult
   * rebuilds), made and checked by the prover pool (proveTask). After MAX_PROVE_ATTEMPTS failures the task
   * is given up (`failed`).
   */
  async prove(submitted: SubmittedTask, prepared: Prepared) {
    if (isPlainBundle(prepared.bundle)) throw new Error("a plain bundle has no circuit to prove with");
    const binding = BigInt(await this.ctx.chain.tasks.taskBinding(submitted.taskId, this.ctx.address));
    const outputWords = packValues(prepared.outputs, prepared.bundle.manifest.publicSignals.packBits);
    let proved: Awaited<ReturnType<ProverPool["proveTask"]>>;
    try {
      proved = await this.prover.proveTask(prepared.bundle.dir, prepared.input, binding, outputWords);
    } catch (err) {
      // Proving is deterministic: after a few failures it will not succeed. Give the task up (it expires and
      // the requester is refunded) instead of retrying forever.
      if (this.ctx.journal.task(submitted.taskId)!.attempts + 1 >= MAX_PROVE_ATTEMPTS) {
        this.ctx.journal.setState(submitted.taskId, "failed", {
          reason: `proving failed: ${(err as Error).message}`,
        });
        this.ctx.log.error(
          { taskId: submitted.taskId.toString(), err: (err as Error).message },
          "proving failed; task given up",
        );
        throw new PipelineStop();
      }
      throw err;
    }
    this.ctx.metrics.seconds.observe({ stage: "prove" }, proved.ms / 1000);
    this.ctx.journal.setState(submitted.taskId, "proved", {
      proof: JSON.stringify({ proof: proved.proof.map(String), outputs: proved.outputs.map(String) }),
    });
    this.ctx.log.info({ taskId: submitted.taskId.toString(), proveMs: proved.ms }, "task proved");
  }

  /** Settle a proved ZK task through the batch settler (submitResults with the results proved meanwhile). */
  async submit(submitted: SubmittedTask) {
    const row = this.ctx.journal.task(submitted.taskId)!;
    const { proof, outputs } = JSON.parse(row.proof!) as { proof: string[]; outputs: string[] };
    const started = Date.now();
    const outcome = await this.zkSettler.settle({ submitted, proof, outputs });
    this.ctx.metrics.seconds.observe({ stage: "chain" }, (Date.now() - started) / 1000);
    if (!outcome) return parkDryRun(this.ctx.journal, submitted.taskId, "would submit the result");
    const taskId = submitted.taskId;
    if (outcome.kind === "skipped") {
      // Another node settled it first (or it expired) while the batch was mining: nothing paid, no revert.
      this.ctx.assignment.forget(taskId);
      await this.ctx.reconcile(taskId, "skipped by its batch: no longer open");
      return;
    }
    this.ctx.settled(taskId, outcome.receipt, null, { mode: "zk", outcome: "verified" });
    this.ctx.log.info(
      {
        taskId: taskId.toString(),
        tx: outcome.receipt.hash,
        gasUsed: outcome.receipt.gasUsed.toString(),
        batch: batchSize(outcome.receipt),
      },
      "task verified",
    );
  }
}

/** Tasks settled by the transaction of `receipt` (its TaskVerified logs). */
function batchSize(receipt: { logs: readonly Log[] }): number {
  return receipt.logs.filter((log) => taskRegistryInterface.parseLog(log)?.name === "TaskVerified").length;
}
