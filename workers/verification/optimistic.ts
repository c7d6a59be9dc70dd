import type { Log } from "ethers";
import client from "prom-client";
import { ZkmlError } from "../../zkml";
import type { DataClient } from "../data/client";
import { BundleRejectedError, type BundleCache } from "../runtime/bundles";
import type { Chain } from "../runtime/chain";
import type { Journal, TaskRow } from "../runtime/journal";
import type { Logger } from "../runtime/logger";
import {
  attestersOf,
  DISPUTE_OUTCOME,
  bundleOutputWords,
  isPendingMismatch,
  outputsHash,
  submittedTaskOf,
  TASK_STATUS,
} from "../runtime/optimistic";
import type { JsonReply } from "../runtime/service";
import { RevertedError, type TxSubmitter } from "../runtime/submitter";
import { decodeTaskInput, InputRejectedError } from "../runtime/task-input";
import {
  disputeManagerInterface,
  MODES,
  parseSubmitted,
  taskFromJson,
  taskRegistryInterface,
  taskToJson,
  TOPICS,
  type SubmittedTask,
} from "../runtime/tasks";
import { Attestor } from "./attest";

/** INodeStaking.Role.Verification. */
const VERIFICATION_ROLE = 1;
/** Attempts at an attestation whose attester list went stale (another attestation landed first). */
const MAX_ATTEST_ATTEMPTS = 4;

/** The topics the optimistic part of a verification node watches. */
export const OPTIMISTIC_TOPICS = [
  TOPICS.submitted,
  TOPICS.posted,
  TOPICS.attested,
  TOPICS.verified,
  TOPICS.rejected,
  TOPICS.expired,
  TOPICS.attestersPaid,
  TOPICS.disputeOpened,
  TOPICS.disputeResolved,
];

/**
 * Journal states of an optimistic task on a verification node. `seen` (submitted), `posted` (a result to
 * check), then `attested` (it matched: attested, waiting for the window to end), `challenged` (it did not:
 * challenged, waiting for the dispute's deadline), `disputed` (someone else's dispute: vote on it when it is
 * decided by vote, and settle it when due), `voted`; terminal: `final` (verified), `won` (our challenge
 * succeeded), `lost` (the node proved its result), `slashed` (we attested a result proved wrong), `rejected`,
 * `expired`, `missed` (the window ended before we checked), `skipped` (our own result, or not ours to check),
 * `refused` (bundle or input that cannot be checked).
 */
export const OPTIMISTIC_STATES = [
  "seen",
  "posted",
  "attested",
  "challenged",
  "disputed",
  "voted",
  "final",
  "won",
  "lost",
  "slashed",
  "rejected",
  "expired",
  "missed",
  "skipped",
  "refused",
] as const;

/** What the journal keeps of a posted result (the `proof` column). */
interface Posted {
  node: string;
  outputs: string[];
  block: number;
  windowEnd: number;
  /** Whether our re-execution matched (set once checked). */
  match?: boolean;
  /** Set when a dispute is open: its deadline and whether it is settled by proof (else by vote). */
  circuit?: boolean;
}

export interface OptimisticOptions {
  /** Model ids to watch; empty: all. */
  models: bigint[];
  /** Attested results still pending this many seconds after their window are finalised by this node. */
  finalizeAfterSeconds: number;
  /** The node's first block: a task posted later but submitted before it is looked up from there. */
  startBlock: number;
}

/**
 * The verification node's part in the optimistic mode: for every result posted without proof it re-executes
 * the model (the fixed-point executor of the bundle the registry names) and compares the output words bit
 * for bit: equal, it attests (within the window; paid a share of the fee at finality, slashed if the result
 * is later proved wrong); different, it challenges with the governed bond (DisputeManager), and settles the
 * dispute when due (`timeout` when the node sent no proof, `resolveVote` for a model without a circuit). It
 * votes on other verification nodes' disputes over models without a circuit by its own re-execution, and
 * finalises results it attested that nobody finalised.
 */
export class OptimisticVerifier {
  readonly address: string;
  private eligible: { ok: boolean; checkedAt: number } = { ok: false, checkedAt: 0 };
  /** Tasks whose challenge is held back by too small a wallet, logged once each. */
  private readonly shortOfBond = new Set<string>();
  private readonly actions;
  private readonly earned;
  /** `POST /attest`: attestations signed off chain, and the one re-execution per task it shares with `check`. */
  private readonly attestor: Attestor;
  /** TaskSubmitted of tasks looked up for `/attest` (not in the journal yet). */
  private readonly looked = new Map<string, SubmittedTask>();

  constructor(
    private readonly chain: Chain,
    private readonly journal: Journal,
    private readonly submitter: TxSubmitter,
    private readonly bundles: BundleCache,
    private readonly data: DataClient,
    private readonly opts: OptimisticOptions,
    private readonly log: Logger,
    registry: client.Registry,
  ) {
    this.address = chain.wallet.address;
    this.actions = new client.Counter({
      name: "opg_optimistic_actions_total",
      help:
        "optimistic-mode actions and outcomes: signed and refused_to_sign (POST /attest), attested, challenged, " +
        "voted, finalized, won, lost, slashed, missed",
      labelNames: ["action"],
      registers: [registry],
    });
    this.earned = new client.Gauge({
      name: "opg_attester_earned_wei",
      help: "attester fee shares earned (journal total)",
      registers: [registry],
    });
    this.attestor = new Attestor(
      {
        signer: chain.wallet,
        unavailable: async () =>
          (await this.isEligible())
            ? undefined
            : "not an eligible verification node (registered with the verification role and staked)",
        claim: async (taskId) => {
          const status = TASK_STATUS[Number(await chain.tasks.taskStatus(taskId))] ?? "None";
          if (status !== "Claimed") return { status };
          const [node] = await chain.tasks.claimOf(taskId);
          return { status, node };
        },
        lookup: (taskId) => this.lookup(taskId),
        wanted: (modelId) => this.wanted(modelId),
        reexecute: (submitted) => this.execute(submitted),
        digest: async (taskId, node, hash) => chain.tasks.attestationDigest(taskId, node, hash),
      },
      (outcome) => {
        const ctx = {
          taskId: outcome.taskId.toString(),
          node: outcome.node,
          outputsHash: outcome.outputsHash,
        };
        this.actions.inc({ action: outcome.signed ? "signed" : "refused_to_sign" });
        if (outcome.signed) this.log.info(ctx, "attestation signed off chain: outputs match");
        else this.log.warn(ctx, "refused to sign an attestation: outputs differ (challenged if posted)");
      },
    );
  }

  /** `POST /attest` (see attest.ts): the parsed JSON body to the reply. */
  attestRequest(body: unknown): Promise<JsonReply> {
    return this.attestor.handle(body);
  }

  /** A task's TaskSubmitted: from the journal, else from the chain (from the node's start block). */
  private async lookup(taskId: bigint): Promise<SubmittedTask | undefined> {
    const row = this.journal.task(taskId);
    if (row) return taskFromJson(row.data);
    const key = taskId.toString();
    const known = this.looked.get(key);
    if (known) return known;
    const submitted = await submittedTaskOf(this.reader, taskId, this.opts.startBlock);
    if (submitted) {
      if (this.looked.size >= 1024) this.looked.delete(this.looked.keys().next().value as string);
      this.looked.set(key, submitted);
    }
    return submitted;
  }

  /** The model's output words on the task's input, by this node's own execution. */
  private async execute(submitted: SubmittedTask): Promise<bigint[]> {
    const model = await this.chain.models.getModel(submitted.modelId);
    const bundle = await this.bundles.getAny(model);
    const input = await decodeTaskInput(bundle.manifest, submitted, this.data);
    return (await bundleOutputWords(bundle, input)).words;
  }

  private get reader() {
    return { provider: this.chain.provider, tasksAddress: this.chain.tasks.target as string };
  }

  private wanted(modelId: bigint) {
    return this.opts.models.length === 0 || this.opts.models.includes(modelId);
  }

  // ---------------------------------------------------------------- events

  async onLogs(logs: Log[]) {
    for (const log of logs) {
      const topic = log.topics[0];
      if (topic === TOPICS.submitted) {
        const submitted = parseSubmitted(log);
        if (Number(submitted.task.mode) !== MODES.optimistic || !this.wanted(submitted.modelId)) continue;
        this.journal.upsertTask(submitted.taskId, submitted.modelId, log.blockNumber, taskToJson(submitted));
        continue;
      }
      if (topic === TOPICS.disputeOpened || topic === TOPICS.disputeResolved) {
        this.onDisputeLog(log);
        continue;
      }
      const parsed = taskRegistryInterface.parseLog(log);
      if (!parsed) continue;
      const taskId: bigint = parsed.args.taskId;
      if (parsed.name === "TaskResultPosted") {
        await this.onPosted(
          log,
          taskId,
          parsed.args.node,
          [...parsed.args.outputs],
          Number(parsed.args.windowEnd),
        );
        continue;
      }
      const row = this.journal.task(taskId);
      if (!row) continue;
      if (parsed.name === "TaskAttested") {
        // Our attestation landed (signed off chain and posted with the result, or sent by `attest`): the
        // task waits for its window like any attested one, and is not attested again.
        if (parsed.args.attester === this.address && row.state === "posted") this.markAttested(row);
        continue;
      }
      if (parsed.name === "AttestersPaid") {
        if ((parsed.args.attesters as string[]).includes(this.address)) {
          this.journal.recordEarning(taskId, parsed.args.share, log.blockNumber);
          this.earned.set(Number(this.journal.totalEarned()));
        }
      } else if (parsed.name === "TaskVerified") {
        if (row.state === "challenged") this.finish(row, "lost", "the node proved its result: bond lost");
        else if (!["final", "lost"].includes(row.state)) this.finish(row, "final", "verified");
      } else if (parsed.name === "TaskRejected") {
        const outcome = DISPUTE_OUTCOME[Number(parsed.args.outcome)];
        if (row.state === "challenged") this.finish(row, "won", `rejected (${outcome})`);
        else if (row.state === "attested" && outcome === "NodeWrong")
          this.finish(row, "slashed", "we attested a result proved wrong");
        else if (!["won", "slashed", "rejected"].includes(row.state)) this.finish(row, "rejected", outcome);
      } else if (parsed.name === "TaskExpired") {
        this.finish(row, "expired", "expired");
      }
    }
  }

  private finish(row: TaskRow, state: string, reason: string) {
    this.journal.setState(BigInt(row.taskId), state, { reason });
    if (["won", "lost", "slashed"].includes(state)) {
      this.actions.inc({ action: state });
      const level = state === "won" ? "info" : "warn";
      this.log[level]({ taskId: row.taskId, reason }, `optimistic dispute ${state}`);
    }
  }

  private async onPosted(log: Log, taskId: bigint, node: string, outputs: bigint[], windowEnd: number) {
    let row = this.journal.task(taskId);
    if (!row) {
      // Submitted before this node's start block: look the task up.
      const submitted = await submittedTaskOf(this.reader, taskId, this.opts.startBlock, log.blockNumber);
      if (!submitted || !this.wanted(submitted.modelId)) return;
      this.journal.upsertTask(taskId, submitted.modelId, log.blockNumber, taskToJson(submitted));
      row = this.journal.task(taskId)!;
    }
    if (row.state !== "seen") return; // replayed range
    const posted: Posted = { node, outputs: outputs.map(String), block: log.blockNumber, windowEnd };
    if (node === this.address) {
      this.journal.setState(taskId, "skipped", { proof: JSON.stringify(posted), reason: "our own result" });
      return;
    }
    this.journal.setState(taskId, "posted", { proof: JSON.stringify(posted), until: windowEnd });
  }

  private markAttested(row: TaskRow) {
    const posted = JSON.parse(row.proof!) as Posted;
    posted.match = true;
    this.journal.setState(BigInt(row.taskId), "attested", {
      proof: JSON.stringify(posted),
      until: posted.windowEnd,
      reason: null,
    });
    this.actions.inc({ action: "attested" });
    this.log.info(
      { taskId: row.taskId, node: posted.node, block: posted.block },
      "our attestation is on chain (posted with the result): outputs matched",
    );
  }

  private onDisputeLog(log: Log) {
    const parsed = disputeManagerInterface.parseLog(log);
    if (!parsed) return;
    const row = this.journal.task(parsed.args.taskId);
    if (!row || !row.proof) return;
    const posted = JSON.parse(row.proof) as Posted;
    if (parsed.name === "DisputeOpened") {
      posted.circuit = parsed.args.circuit;
      if (posted.node === this.address) return;
      const until = Number(parsed.args.deadline);
      const proof = JSON.stringify(posted);
      if (parsed.args.challenger === this.address) {
        this.journal.setState(BigInt(row.taskId), "challenged", { proof, until });
      } else if (row.state !== "challenged") {
        this.journal.setState(BigInt(row.taskId), "disputed", {
          proof,
          until,
          reason: `challenged by ${parsed.args.challenger}`,
        });
      }
    } else if (parsed.name === "DisputeResolved") {
      const outcome = DISPUTE_OUTCOME[Number(parsed.args.outcome)];
      if (row.state === "challenged" && outcome === "NodeRight")
        this.finish(row, "lost", "the node's result stood: bond lost");
    }
  }

  // ---------------------------------------------------------------- work

  /** One round over the tasks that wait for something this node does. */
  async work() {
    const now = (await this.chain.provider.getBlock("latest"))!.timestamp;
    for (const row of this.journal.tasksIn("posted", "attested", "challenged", "disputed", "voted")) {
      const submitted = taskFromJson(row.data);
      const ctx = { taskId: row.taskId, modelId: row.modelId };
      try {
        if (row.state === "posted") await this.check(row, submitted, now);
        else if (row.state === "attested") await this.finalizeIfStale(row, submitted, now);
        else await this.settleDispute(row, submitted, now);
      } catch (err) {
        if (err instanceof RevertedError) {
          this.log.warn({ ...ctx, reason: err.reason }, "transaction reverted; reading the task's status");
          await this.reconcile(row).catch((e) =>
            this.log.warn({ ...ctx, err: e.message }, "reconcile failed"),
          );
          // A revert is not retried: an attestation or challenge the registry refuses (the attester list is
          // full, another node challenged first) is given up; another node's challenge still brings the task
          // back through DisputeOpened, to vote on it.
          if (this.journal.task(BigInt(row.taskId))?.state === "posted")
            this.journal.setState(BigInt(row.taskId), "skipped", { reason: err.reason });
        } else {
          this.log.warn({ ...ctx, err: (err as Error).message }, "optimistic step failed; will retry");
        }
      }
    }
  }

  /** After a revert: move a task whose status moved on (settled by someone else) to the matching state. */
  private async reconcile(row: TaskRow) {
    const status = TASK_STATUS[Number(await this.chain.tasks.taskStatus(BigInt(row.taskId)))];
    if (status === "Verified") this.finish(row, row.state === "challenged" ? "lost" : "final", "verified");
    else if (status === "Rejected")
      this.finish(row, row.state === "challenged" ? "won" : "rejected", "rejected");
    else if (status === "Expired") this.finish(row, "expired", "expired");
  }

  private async isEligible(): Promise<boolean> {
    if (Date.now() - this.eligible.checkedAt < 15_000) return this.eligible.ok;
    const ok = await this.chain.staking.isEligible(this.address, VERIFICATION_ROLE);
    if (!ok && (this.eligible.ok || this.eligible.checkedAt === 0)) {
      this.log.warn(
        { address: this.address },
        "not eligible as a verification node (registered with the verification role and staked at least " +
          "its minimum): attesting and challenging nothing; fix: npx opg operator register --roles verification, npx opg operator stake <amount>",
      );
    }
    this.eligible = { ok, checkedAt: Date.now() };
    return ok;
  }

  /** The model's output words on the task's input, by this node's own execution; undefined when refused. */
  private async reexecute(row: TaskRow, submitted: SubmittedTask): Promise<bigint[] | undefined> {
    try {
      return await this.attestor.wordsOf(submitted);
    } catch (err) {
      if (
        err instanceof BundleRejectedError ||
        err instanceof InputRejectedError ||
        err instanceof ZkmlError
      ) {
        this.journal.setState(BigInt(row.taskId), "refused", { reason: (err as Error).message });
        this.log.warn(
          { taskId: row.taskId, reason: (err as Error).message },
          "cannot re-execute: task refused",
        );
        return undefined;
      }
      throw err;
    }
  }

  /** Re-execute a posted result and attest it (equal) or challenge it (different), within its window. */
  private async check(row: TaskRow, submitted: SubmittedTask, now: number) {
    const taskId = submitted.taskId;
    const posted = JSON.parse(row.proof!) as Posted;
    if (now > posted.windowEnd) {
      this.journal.setState(taskId, "missed", { reason: "challenge window ended before the check" });
      this.actions.inc({ action: "missed" });
      return;
    }
    if (!(await this.isEligible())) return;
    const mine = await this.reexecute(row, submitted);
    if (!mine) return;
    const match =
      mine.length === posted.outputs.length && mine.every((w, i) => w.toString() === posted.outputs[i]);
    posted.match = match;
    if (match) await this.attest(submitted, posted);
    else await this.challenge(submitted, posted, mine);
  }

  private async attest(submitted: SubmittedTask, posted: Posted) {
    const taskId = submitted.taskId;
    const hash = outputsHash(posted.outputs.map(BigInt));
    const registry = await this.chain.tasks.getAddress();
    for (let attempt = 1; ; attempt++) {
      const attesters = await attestersOf(this.reader, taskId, posted.block);
      if (attesters.includes(this.address)) {
        // Signed off chain and posted with the result: nothing to send.
        this.markAttested({ ...this.journal.task(taskId)!, proof: JSON.stringify(posted) });
        return;
      }
      const data = taskRegistryInterface.encodeFunctionData("attest", [
        taskId,
        submitted.task,
        hash,
        attesters,
      ]);
      try {
        const receipt = await this.submitter.send("attest", registry, data, taskId);
        if (!receipt) return;
        this.journal.setState(taskId, "attested", { proof: JSON.stringify(posted), until: posted.windowEnd });
        this.actions.inc({ action: "attested" });
        this.log.info(
          { taskId: taskId.toString(), node: posted.node, tx: receipt.hash, attesters: attesters.length + 1 },
          "posted result re-executed: outputs match, attested",
        );
        return;
      } catch (err) {
        // Another attestation landed between reading the list and sending: read it again.
        if (err instanceof RevertedError && isPendingMismatch(err.reason) && attempt < MAX_ATTEST_ATTEMPTS)
          continue;
        throw err;
      }
    }
  }

  private async challenge(submitted: SubmittedTask, posted: Posted, mine: bigint[]) {
    const taskId = submitted.taskId;
    const disputes = this.chain.disputes;
    const ctx = {
      taskId: taskId.toString(),
      node: posted.node,
      posted: posted.outputs,
      reexecuted: mine.map(String),
      // posted although this node refused to sign them off chain
      refusedToSign: this.attestor.refusedToSign(taskId, outputsHash(posted.outputs.map(BigInt))),
    };
    if (!disputes) {
      this.log.error(
        ctx,
        'posted result is WRONG but the deployment has no "disputes" address: cannot challenge',
      );
      this.journal.setState(taskId, "missed", { reason: "no dispute manager to challenge with" });
      return;
    }
    const disputesAddress = await disputes.getAddress();
    const bond = await disputes.challengeBond();
    const balance = await this.chain.token.balanceOf(this.address);
    if (balance < bond) {
      if (!this.shortOfBond.has(ctx.taskId)) {
        this.shortOfBond.add(ctx.taskId);
        this.log.error(
          { ...ctx, balance: balance.toString(), bond: bond.toString() },
          "posted result is WRONG but the wallet holds less OPG than the challenge bond: cannot challenge " +
            "(retried until the window ends)",
        );
      }
      return;
    }
    if ((await this.chain.token.allowance(this.address, disputesAddress)) < bond) {
      const approve = this.chain.token.interface.encodeFunctionData("approve", [disputesAddress, bond]);
      await this.submitter.send("approve-bond", await this.chain.token.getAddress(), approve, taskId);
    }
    const attesters = await attestersOf(this.reader, taskId, posted.block);
    const data = disputes.interface.encodeFunctionData("challenge", [
      taskId,
      submitted.task,
      outputsHash(posted.outputs.map(BigInt)),
      attesters,
    ]);
    const receipt = await this.submitter.send("challenge", disputesAddress, data, taskId);
    if (!receipt) return;
    let deadline = posted.windowEnd;
    for (const log of receipt.logs) {
      const parsed = log.address === disputesAddress ? disputes.interface.parseLog(log) : null;
      if (parsed?.name === "DisputeOpened") {
        deadline = Number(parsed.args.deadline);
        posted.circuit = parsed.args.circuit;
      }
    }
    this.journal.setState(taskId, "challenged", { proof: JSON.stringify(posted), until: deadline });
    this.actions.inc({ action: "challenged" });
    this.log.warn(
      { ...ctx, tx: receipt.hash, bond: bond.toString(), deadline },
      "posted result is WRONG: challenged",
    );
  }

  /** An attested result still pending `finalizeAfterSeconds` after its window: finalise it ourselves. */
  private async finalizeIfStale(row: TaskRow, submitted: SubmittedTask, now: number) {
    if (row.until === null || now <= row.until + this.opts.finalizeAfterSeconds) return;
    const taskId = submitted.taskId;
    const posted = JSON.parse(row.proof!) as Posted;
    const status = TASK_STATUS[Number(await this.chain.tasks.taskStatus(taskId))];
    if (status !== "Pending") return this.reconcile(row);
    const attesters = await attestersOf(this.reader, taskId, posted.block);
    if (attesters.length < Number(submitted.task.attestationQuorum)) return;
    const data = taskRegistryInterface.encodeFunctionData("finalizeResult", [
      taskId,
      submitted.task,
      posted.outputs.map(BigInt),
      attesters,
    ]);
    const receipt = await this.submitter.send("finalize", await this.chain.tasks.getAddress(), data, taskId);
    if (!receipt) return;
    this.journal.setState(taskId, "final", { reason: "finalised by this node" });
    this.actions.inc({ action: "finalized" });
    this.log.info({ taskId: taskId.toString(), tx: receipt.hash }, "attested result finalised");
  }

  /**
   * An open dispute: vote on it (a model without a circuit, not our own challenge) while its vote is open;
   * once its deadline has passed, settle it (`timeout` when decided by proof, `resolveVote` otherwise).
   */
  private async settleDispute(row: TaskRow, submitted: SubmittedTask, now: number) {
    const disputes = this.chain.disputes!;
    const taskId = submitted.taskId;
    const posted = JSON.parse(row.proof!) as Posted;
    const outputs = posted.outputs.map(BigInt);
    if (row.until === null) return;
    if (now <= row.until) {
      if (row.state !== "disputed" || posted.circuit !== false || !(await this.isEligible())) return;
      if (posted.node === this.address) return;
      if (posted.match === undefined) {
        const mine = await this.reexecute(row, submitted);
        if (!mine) return;
        posted.match = mine.length === outputs.length && mine.every((w, i) => w === outputs[i]);
      }
      const data = disputes.interface.encodeFunctionData("vote", [taskId, posted.match]);
      const receipt = await this.submitter.send("vote", await disputes.getAddress(), data, taskId);
      if (!receipt) return;
      this.journal.setState(taskId, "voted", { proof: JSON.stringify(posted) });
      this.actions.inc({ action: "voted" });
      this.log.info({ taskId: taskId.toString(), nodeRight: posted.match }, "voted on a dispute");
      return;
    }
    const status = TASK_STATUS[Number(await this.chain.tasks.taskStatus(taskId))];
    if (status !== "Disputed") return this.reconcile(row);
    const attesters = await attestersOf(this.reader, taskId, posted.block);
    const data =
      posted.circuit === false
        ? disputes.interface.encodeFunctionData("resolveVote", [taskId, submitted.task, outputs, attesters])
        : disputes.interface.encodeFunctionData("timeout", [
            taskId,
            submitted.task,
            outputsHash(outputs),
            attesters,
          ]);
    const receipt = await this.submitter.send("resolve", await disputes.getAddress(), data, taskId);
    if (!receipt) return;
    this.log.info({ taskId: taskId.toString(), tx: receipt.hash }, "dispute settled after its deadline");
    // The TaskRejected / TaskVerified of the receipt set the final state when the watcher reaches them.
    await this.reconcile(row);
  }
}
