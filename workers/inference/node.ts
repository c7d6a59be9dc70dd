import fs from "node:fs";
import path from "node:path";
import type { Log } from "ethers";
import client from "prom-client";
import { expectedPublicSignals } from "../../zkml";
import { DataClient } from "../data/client";
import { BundleCache, isPlainBundle } from "../runtime/bundles";
import { ExecutionRefusedError } from "../runtime/execution-errors";
import { ModelExecutor } from "../runtime/execution-policy";
import { ExecutionSandbox, failureClass } from "../runtime/sandbox";
import { connect, readDeployment, type Chain, type Deployment } from "../runtime/chain";
import type { ConfigOf } from "../runtime/config";
import { Journal, type TaskRow } from "../runtime/journal";
import type { Logger } from "../runtime/logger";
import { PollLoop, ServiceHttp } from "../runtime/service";
import { preflight } from "../runtime/startup";
import { RevertedError, TxSubmitter } from "../runtime/submitter";
import { decodeTaskInput } from "../runtime/task-input";
import {
  modeName,
  parseSubmitted,
  readVerifiedResult,
  taskFromJson,
  taskRegistryInterface,
  taskToJson,
  TOPICS,
  type SubmittedTask,
} from "../runtime/tasks";
import { ChainWatcher } from "../runtime/watcher";
import { submittedTaskOf, TASK_STATUS } from "../runtime/optimistic";
import type { inferenceSchema } from "./config";
import { eligibilityProblem, type Eligibility } from "./eligibility";
import { Assignment } from "./assignment";
import { ProverPool } from "./prover-pool";
import { ServedKeyChecks } from "./served-key";
import { PipelineStop, type ModeContext, type Prepared } from "./modes/context";
import { OptimisticMode } from "./modes/optimistic";
import { TeeMode } from "./modes/tee";
import { ZkMode } from "./modes/zk";

export { nextQuorumAttempt } from "./modes/optimistic";

export type InferenceConfig = ConfigOf<typeof inferenceSchema>;

/**
 * Failures of a task's stage that are neither a refusal nor the transport (sandbox.ts failureClass) before
 * the task is given up (`failed`): what failed three times the same way is not going to pass.
 */
const MAX_UNKNOWN_FAILURES = 3;

/**
 * Journal states of a task, in pipeline order. `watching` waits for another node's claim to lapse (then the
 * task goes back to `seen` and is taken over). Optimistic mode: a task stays `claimed` while the node
 * gathers its quorum of attestations; `posted` waits for the challenge window to end (then the node
 * finalises its result); `disputed` is a result of ours under a vote of verification nodes (a model without
 * a circuit): nothing for the node to do, the vote's resolution settles it. A task of a model with a circuit
 * is never `disputed` for long: a challenge proves it wrong and rejects it in one transaction. Every state
 * after `disputed` is terminal.
 */
export const STATES = [
  "seen",
  "claimed",
  "proved",
  "posted",
  "disputed",
  "watching",
  "verified",
  "lost",
  "expired",
  "rejected",
  "skipped",
  "refused",
  "failed",
] as const;
const WORKING = ["seen", "claimed", "proved", "posted"];

/**
 * Why the claim policy skips a task (the fee, the time left before its deadline at chain time `now`, the
 * callback gas the node's submitResult would pay for), or undefined when the task is worth taking.
 */
export function policySkipReason(
  task: Pick<SubmittedTask["task"], "fee" | "deadline" | "callbackGasLimit">,
  now: number,
  policy: Pick<InferenceConfig, "minFee" | "deadlineMarginSeconds" | "maxCallbackGas">,
): string | undefined {
  const { fee, deadline, callbackGasLimit } = task;
  if (BigInt(fee) < policy.minFee) return `fee ${fee} below the node's minimum ${policy.minFee}`;
  if (BigInt(deadline) - BigInt(now) < BigInt(policy.deadlineMarginSeconds)) {
    return `deadline too close (${deadline}, now ${now})`;
  }
  if (BigInt(callbackGasLimit) > BigInt(policy.maxCallbackGas)) {
    return `callback gas limit ${callbackGasLimit} above the node's maxCallbackGas ${policy.maxCallbackGas}`;
  }
  return undefined;
}

/**
 * Why a node cannot serve a task's verification mode, or undefined when it can: TEE needs an enclave with a
 * registered key (`--enclave`), the optimistic mode a deployment with a dispute manager (whose disputes over
 * the node's results it follows); an unknown mode is never served.
 */
export function modeSkipReason(
  mode: bigint | number | string,
  node: { enclave: boolean; disputes: boolean },
): string | undefined {
  const name = modeName(mode);
  if (name === "zk") return undefined;
  if (name === "optimistic") {
    return node.disputes ? undefined : 'optimistic task, but the deployment has no "disputes" address';
  }
  if (name === "tee") {
    return node.enclave ? undefined : "TEE task, and this node has no enclave (--enclave none)";
  }
  return `${name}: not served by this node`;
}

/**
 * The inference node: watches TaskSubmitted for the models it serves, decides by policy whether to take a
 * task, checks the model bundle and the input before claiming, executes the quantized model (and the float
 * model with onnxruntime as a reference), claims, proves in a worker thread, submits the result, and
 * records what it earned. Every stage is a journal state, so a restart resumes and never repeats a
 * completed stage; before each transaction the chain is asked what is true now. The node holds the task
 * state machine; each verification mode's steps are in modes/ (zk.ts, tee.ts, optimistic.ts), reached
 * through one ModeContext (modes/context.ts).
 */
export class InferenceNode {
  private readonly chain: Chain;
  private readonly journal: Journal;
  private readonly http: ServiceHttp;
  private readonly submitter: TxSubmitter;
  private readonly bundles: BundleCache;
  private readonly data: DataClient;
  private readonly prover: ProverPool;
  /** Strangers' models run here (child processes under the execution limits), after the policy admits them. */
  private readonly sandbox: ExecutionSandbox;
  private readonly executor: ModelExecutor;
  /** Per task: failures of an unknown kind so far (given up at MAX_UNKNOWN_FAILURES). */
  private readonly unknownFailures = new Map<string, number>();
  private watcher!: ChainWatcher;
  private readonly deployment: Deployment;
  /** Whether the node may claim (registered for inference, enough free stake), and when that was read. */
  private eligibility: Eligibility & { checkedAt: number } = {
    ready: false,
    reason: "not checked yet",
    checkedAt: 0,
  };
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Tasks in flight that only wait for their settlement batch (no CPU): not counted against concurrency. */
  private readonly settling = new Set<string>();
  /** Who serves a ZK or TEE task first (no claim): this node waits its turn in each task's order. */
  private readonly assignment: Assignment;
  /** Per model: whether the registered key is the key of the zkey this node proves with. */
  private readonly servedKeys: ServedKeyChecks;
  /**
   * Claimed optimistic tasks short of their quorum of attestations: when to ask again, the wait before that,
   * and the outputs already computed.
   */
  private readonly attestRetry = new Map<string, { at: number; delayMs: number; prepared: Prepared }>();
  private readonly loop: PollLoop;
  private chainId = 0n;
  /** The latest block's timestamp, read every poll: when posted results are due to be finalised. */
  private chainNow = 0;
  private readonly metrics;
  /** Each verification mode's steps (modes/): the state machine below calls into them. */
  private readonly zk: ZkMode;
  private readonly tee: TeeMode;
  private readonly optimistic: OptimisticMode;
  readonly address: string;

  constructor(
    private readonly config: InferenceConfig,
    private readonly log: Logger,
  ) {
    const deployment = readDeployment(config.deployment);
    this.deployment = deployment;
    this.chain = connect(config.rpcUrl, config.privateKey, deployment);
    this.address = this.chain.wallet.address;
    fs.mkdirSync(config.stateDir, { recursive: true });
    this.journal = new Journal(path.join(config.stateDir, "journal.db"));
    this.http = new ServiceHttp(log, config);
    this.assignment = new Assignment(this.chain.staking, this.address, {
      slotMs: config.assignSlotMs,
      refreshMs: 30_000,
    });
    this.loop = new PollLoop(
      config.pollIntervalMs,
      async () => {
        try {
          await this.refreshEligibility();
          await this.assignment.refresh();
          await this.watcher.poll();
          this.chainNow = (await this.chain.provider.getBlock("latest"))!.timestamp;
          await this.optimistic.takeOverLapsedClaims();
          this.schedule();
        } finally {
          this.updateMetrics();
        }
      },
      log,
    );
    this.data = new DataClient(config.dataUrl);
    this.bundles = new BundleCache(path.join(config.stateDir, "bundles"), this.data, {
      maxModelBytes: config.maxModelBytes,
    });
    this.prover = new ProverPool(config.concurrency);
    this.sandbox = new ExecutionSandbox(config, log);
    this.executor = new ModelExecutor(this.sandbox, config, log);
    this.servedKeys = new ServedKeyChecks({
      registeredKey: async (modelId) => [...(await this.chain.models.verificationKeyOf(modelId))],
      provingKey: (dir) => this.prover.zkeyVerificationKey(dir),
      onKeysMatch: (modelId) =>
        this.log.info(
          { modelId: modelId.toString() },
          "model verification key matches the zkey and the registry",
        ),
    });
    this.submitter = new TxSubmitter(
      this.chain.wallet,
      this.chain.provider,
      this.journal,
      [
        taskRegistryInterface,
        this.chain.staking.interface,
        this.chain.models.interface,
        ...(this.chain.disputes ? [this.chain.disputes.interface] : []),
        ...(this.chain.enclaves ? [this.chain.enclaves.interface] : []),
      ],
      {
        replaceAfterSeconds: config.replaceAfterSeconds,
        maxReplacements: 3,
        maxRetries: config.maxRetries,
        dryRun: config.dryRun,
      },
      log,
    );
    const registers = [this.http.registry];
    this.metrics = {
      tasks: new client.Gauge({
        name: "opg_tasks",
        help: "tasks in the journal by state",
        labelNames: ["state"],
        registers,
      }),
      seconds: new client.Histogram({
        name: "opg_stage_seconds",
        help: "seconds per pipeline stage (execute, prove, attest, chain)",
        labelNames: ["stage"],
        buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
        registers,
      }),
      gas: new client.Gauge({ name: "opg_gas_spent_wei", help: "wei spent on gas since start", registers }),
      lag: new client.Gauge({
        name: "opg_chain_lag_blocks",
        help: "blocks between the head and the checkpoint",
        registers,
      }),
      earned: new client.Gauge({
        name: "opg_earned_wei",
        help: "node fees earned (journal total)",
        registers,
      }),
      executions: new client.Gauge({
        name: "opg_executions",
        help: "model runs in the execution sandbox since start, by how they ended: ok, refused (the model failed), time and memory (killed over a limit), crashed",
        labelNames: ["outcome"],
        registers,
      }),
      results: new client.Counter({
        name: "opg_results_total",
        help: "results settled or posted, by mode and outcome (verified, posted, finalized, unattested, disputed, rejected)",
        labelNames: ["mode", "outcome"],
        registers,
      }),
    };
    const context: ModeContext = {
      chain: this.chain,
      deployment,
      journal: this.journal,
      submitter: this.submitter,
      config,
      log,
      metrics: this.metrics,
      address: this.address,
      assignment: this.assignment,
      attestRetry: this.attestRetry,
      settled: (taskId, receipt, reason, labels) => this.settled(taskId, receipt, reason, labels),
      reconcile: (taskId, why) => this.reconcile(taskId, why),
      recheckEligibility: () => {
        this.eligibility.checkedAt = 0;
      },
    };
    this.zk = new ZkMode(context, this.prover);
    this.tee = new TeeMode(context);
    this.optimistic = new OptimisticMode(context);
  }

  /**
   * Check the RPC endpoint, the deployment and the data node (a StartupError when one fails), serve
   * /metrics and /healthz, read the node's eligibility, and start polling. Returns the metrics port.
   */
  async start(): Promise<number> {
    const { chainId, confirmations } = await preflight({
      rpcUrl: this.config.rpcUrl,
      dataUrl: this.config.dataUrl,
      provider: this.chain.provider,
      deployment: this.deployment,
      deploymentFile: this.config.deployment,
      confirmations: this.config.confirmations,
      startTimeoutSeconds: this.config.startTimeoutSeconds,
      log: this.log,
    });
    this.chainId = chainId;
    this.watcher = new ChainWatcher(
      this.chain.provider,
      this.journal,
      {
        addresses: [this.deployment.tasks, ...(this.deployment.disputes ? [this.deployment.disputes] : [])],
        topics: [
          TOPICS.submitted,
          TOPICS.claimed,
          TOPICS.verified,
          TOPICS.expired,
          TOPICS.rejected,
          TOPICS.reopened,
          TOPICS.disputeOpened,
        ],
        confirmations,
        startBlock: this.config.startBlock,
      },
      { onLogs: (logs) => this.onLogs(logs), onReorg: (ancestor) => this.onReorg(ancestor) },
      this.log,
    );
    const port = await this.http.listen(this.config.metricsPort, this.config.metricsHost);
    // ok: the node does its job (polling, and eligible to claim); ready: eligible; reason: why not.
    this.http.setHealth(() => ({
      ok: this.loop.isRunning && this.eligibility.ready,
      ready: this.eligibility.ready,
      ...(this.eligibility.ready ? {} : { reason: this.eligibility.reason }),
      address: this.address,
      ...(this.tee.enclave ? { enclaveKey: this.tee.enclave.address } : {}),
      lag: this.watcher.lag,
      tasks: this.journal.countByState(),
    }));
    await this.refreshEligibility(true);
    await this.tee.startEnclave();
    this.loop.start();
    this.log.info(
      { address: this.address, chainId: this.chainId.toString(), dryRun: this.config.dryRun },
      "inference node started",
    );
    return port;
  }

  private modeSkipReason(mode: bigint | number | string): string | undefined {
    return modeSkipReason(mode, {
      enclave: Boolean(this.tee.enclave),
      disputes: Boolean(this.chain.disputes),
    });
  }

  /** A task of ours settled: its collateral counts as free again, so a node short of stake looks now. */
  private collateralReleased() {
    if (!this.eligibility.ready) this.eligibility.checkedAt = 0;
  }

  /**
   * Re-read the node's registration and stake every eligibilityCheckSeconds (at once when `force`). A
   * change is logged once: what is missing and the command that fixes it, or that the node now claims.
   */
  private async refreshEligibility(force = false) {
    const due = this.eligibility.checkedAt + this.config.eligibilityCheckSeconds * 1000;
    if (!force && Date.now() < due) return;
    const next = await eligibilityProblem(this.chain.staking, this.chain.tasks, this.address);
    // The enclave key is checked with the stake: registered once the node can, renewed before it expires.
    if (next.ready && this.config.enclave !== "none" && this.loop.isRunning) await this.tee.startEnclave();
    const before = this.eligibility;
    this.eligibility = { ...next, checkedAt: Date.now() };
    if (next.ready && (!before.ready || force)) {
      this.log.info({ address: this.address, ...next.stake }, "node eligible: claiming tasks");
    } else if (!next.ready && (before.ready || before.reason !== next.reason)) {
      this.log.warn(
        { address: this.address, reason: next.reason, fix: next.fix, ...next.stake },
        `node not eligible to claim tasks: ${next.reason}; fix: ${next.fix}`,
      );
    }
  }

  /** Stop polling, let tasks in flight reach their next durable state, close everything. */
  async stop() {
    await this.loop.stop();
    await Promise.allSettled(this.inFlight.values());
    await this.prover.close();
    await this.sandbox.close();
    await this.http.close();
    this.journal.close();
    this.chain.provider.destroy();
  }

  private updateMetrics() {
    const counts = this.journal.countByState();
    for (const state of STATES) this.metrics.tasks.set({ state }, counts[state] ?? 0);
    this.metrics.gas.set(Number(this.submitter.gasSpent));
    this.metrics.lag.set(this.watcher.lag);
    this.metrics.earned.set(Number(this.journal.totalEarned()));
    for (const [outcome, n] of Object.entries(this.sandbox.counts))
      this.metrics.executions.set({ outcome }, n);
  }

  // ---------------------------------------------------------------- events

  private async onLogs(logs: Log[]) {
    for (const log of logs) {
      const topic = log.topics[0];
      if (topic === TOPICS.submitted) {
        const submitted = parseSubmitted(log);
        if (this.config.models.length > 0 && !this.config.models.includes(submitted.modelId)) continue;
        if (
          this.journal.upsertTask(submitted.taskId, submitted.modelId, log.blockNumber, taskToJson(submitted))
        ) {
          this.log.info(
            { taskId: submitted.taskId.toString(), modelId: submitted.modelId.toString() },
            "task seen",
          );
        }
        continue;
      }
      if (topic === TOPICS.disputeOpened) {
        this.onDisputeOpened(log);
        continue;
      }
      if (topic === TOPICS.reopened) {
        await this.onReopened(log);
        continue;
      }
      const parsed = taskRegistryInterface.parseLog(log);
      if (!parsed) continue;
      // Who is alive and busy, for the order of claimless tasks (Assignment).
      if (parsed.name === "TaskVerified") this.assignment.sawActivity(parsed.args.node);
      const taskId: bigint = parsed.args.taskId;
      const row = this.journal.task(taskId);
      if (!row) continue;
      if (parsed.name === "TaskRejected") {
        if (row.state !== "rejected") {
          const ours = ["posted", "disputed"].includes(row.state);
          this.journal.setState(taskId, "rejected", { reason: `rejected (${parsed.args.outcome})` });
          if (ours) {
            this.metrics.results.inc({ mode: "optimistic", outcome: "rejected" });
            this.log.error({ taskId: taskId.toString() }, "posted result rejected: collateral slashed");
          }
        }
        continue;
      }
      if (parsed.name === "TaskVerified") {
        if (parsed.args.node === this.address) {
          this.collateralReleased();
          this.journal.recordEarning(taskId, parsed.args.nodeFee, log.blockNumber);
          if (row.state !== "verified") this.journal.setState(taskId, "verified");
        } else if (row.state !== "lost")
          this.journal.setState(taskId, "lost", { reason: `verified for ${parsed.args.node}` });
      } else if (parsed.name === "TaskExpired") {
        if (row.state !== "expired") this.journal.setState(taskId, "expired");
      } else if (
        parsed.name === "TaskClaimed" &&
        parsed.args.node !== this.address &&
        (row.state === "seen" || row.state === "watching")
      ) {
        this.optimistic.onForeignClaim(row, parsed.args.node, Number(parsed.args.claimExpiresAt));
      }
    }
  }

  /**
   * A verification node disputed a result of ours. Nothing is sent in reply: a challenge of a model with a
   * circuit carries the challenger's proof and rejects the result in the same transaction (TaskRejected
   * follows in the same logs), and one of a model without a circuit is settled by the verification nodes'
   * vote. The task waits in `disputed` for the outcome.
   */
  private onDisputeOpened(log: Log) {
    const opened = this.chain.disputes!.interface.parseLog(log)!;
    const row = this.journal.task(opened.args.taskId);
    if (!row || opened.args.node !== this.address || row.state !== "posted") return;
    const circuit: boolean = opened.args.circuit;
    const deadline = Number(opened.args.deadline);
    this.journal.setState(BigInt(row.taskId), "disputed", {
      until: deadline,
      reason: `challenged by ${opened.args.challenger}${circuit ? " with a proof" : ", decided by vote"}`,
    });
    this.metrics.results.inc({ mode: "optimistic", outcome: "disputed" });
    const ctx = { taskId: row.taskId, challenger: opened.args.challenger };
    if (circuit) this.log.warn(ctx, "posted result proved wrong by a challenger's proof");
    else
      this.log.warn(
        { ...ctx, deadline },
        "posted result challenged: verification nodes vote until the deadline",
      );
  }

  /**
   * An unattested result expired before the task's deadline and the task is open to claims again: it goes
   * back to `seen` like a new TaskSubmitted (looked up on chain when it is not in the journal), unless the
   * chain has moved on since (a replayed log), which `reconcile` sorts out.
   */
  private async onReopened(log: Log) {
    const parsed = taskRegistryInterface.parseLog(log)!;
    const taskId: bigint = parsed.args.taskId;
    const ctx = { taskId: taskId.toString(), previousNode: parsed.args.previousNode };
    if (!this.journal.task(taskId)) {
      const reader = { provider: this.chain.provider, tasksAddress: this.deployment.tasks };
      const submitted = await submittedTaskOf(reader, taskId, this.config.startBlock, log.blockNumber);
      if (!submitted) return;
      if (this.config.models.length > 0 && !this.config.models.includes(submitted.modelId)) return;
      this.journal.upsertTask(taskId, submitted.modelId, log.blockNumber, taskToJson(submitted));
    }
    this.log.info(ctx, "task reopened (an unattested result expired): claimable again");
    await this.reconcile(taskId, "reopened");
  }

  /**
   * Blocks above `ancestor` were replaced. Tasks submitted in them are forgotten: the rescan that follows
   * brings back the ones the new chain holds, as they are there now. Every other task in the journal is
   * re-read from the chain, since claims and results in the replaced blocks are gone too.
   */
  private async onReorg(ancestor: number) {
    await Promise.allSettled(this.inFlight.values());
    // A replaced block may have held a model registration: check keys again.
    this.servedKeys.clear();
    for (const row of this.journal.tasksAbove(ancestor)) this.journal.deleteTask(BigInt(row.taskId));
    for (const row of this.journal.tasksIn(
      ...WORKING,
      "disputed",
      "watching",
      "verified",
      "lost",
      "expired",
      "rejected",
      "failed",
    )) {
      await this.reconcile(BigInt(row.taskId), "reorg");
    }
  }

  /** Bring a task's journal state in line with the chain, after a reorg or a revert. */
  private async reconcile(taskId: bigint, why: string) {
    const status = TASK_STATUS[Number(await this.chain.tasks.taskStatus(taskId))];
    const row = this.journal.task(taskId);
    if (!row) return;
    let next: string;
    let until: number | undefined;
    if (status === "None") {
      // The submission itself is gone; if it is mined again the watcher brings the task back.
      this.journal.deleteTask(taskId);
      this.log.warn(
        { taskId: taskId.toString(), why },
        "task no longer on chain: forgotten until it reappears",
      );
      return;
    } else if (status === "Open") {
      // A proof bound to this node stays good while the task is open (no claim to lose).
      next = row.state === "proved" ? "proved" : "seen";
    } else if (status === "Expired") next = "expired";
    else if (status === "Rejected") next = "rejected";
    else if (status === "Pending" || status === "Disputed") {
      const [node, windowEnd] = await this.chain.tasks.pendingOf(taskId);
      // Posted, but the node stopped before it journaled what: read it back from the chain.
      if (node === this.address && !(row.proof && "block" in JSON.parse(row.proof)))
        await this.optimistic.recoverPosted(taskId, row.block);
      if (node !== this.address) next = "lost";
      else if (status === "Pending") {
        next = "posted";
        until = Number(windowEnd);
      } else {
        next = "disputed";
        until = Number((await this.chain.disputes!.disputeOf(taskId)).deadline);
      }
    } else if (status === "Verified") {
      const result = await readVerifiedResult(this.chain.tasks, taskId, row.block);
      next = result?.node === this.address ? "verified" : "lost";
    } else {
      const [node, expiresAt] = await this.chain.tasks.claimOf(taskId);
      const now = (await this.chain.provider.getBlock("latest"))!.timestamp;
      if (node === this.address && BigInt(now) <= expiresAt) {
        next = row.state === "proved" ? "proved" : "claimed";
      } else {
        // Another node's claim, or our own that lapsed while we were away: wait for it to lapse, then take
        // the task over (our own lapsed claim is re-claimed the same way; its collateral is lost either way).
        [next, until] = this.optimistic.stateForClaimNotHeld(row, Number(expiresAt));
      }
    }
    if (next !== row.state || (until !== undefined && until !== row.until)) {
      this.log.info(
        { taskId: taskId.toString(), from: row.state, to: next, status, why },
        "task reconciled with the chain",
      );
      this.journal.setState(
        taskId,
        next,
        next === "seen" || next === "claimed" ? { proof: null } : until !== undefined ? { until } : {},
      );
    }
  }

  // ---------------------------------------------------------------- pipeline

  private schedule() {
    for (const row of this.journal.tasksIn(...WORKING)) {
      if (!this.loop.isRunning) return;
      if (this.inFlight.has(row.taskId)) continue;
      // A proved ZK result only waits for its settlement batch: it takes no concurrency slot.
      const waitsForChain = row.state === "proved";
      if (!waitsForChain && this.inFlight.size - this.settling.size >= this.config.concurrency) continue;
      // A node that may not serve leaves new tasks alone; tasks it already holds go on.
      if (row.state === "seen" && !this.eligibility.ready) continue;
      // ZK and TEE tasks (no claim): wait for this node's turn in the task's order.
      if (row.state === "seen" && !this.myTurn(row)) continue;
      // A posted result waits for its challenge window to end.
      if (row.state === "posted" && (row.until === null || this.chainNow <= row.until)) continue;
      // A claimed optimistic task short of attestations waits before asking again.
      if (row.state === "claimed" && Date.now() < (this.attestRetry.get(row.taskId)?.at ?? 0)) continue;
      if (waitsForChain) this.settling.add(row.taskId);
      const work = this.advance(row).finally(() => {
        this.inFlight.delete(row.taskId);
        this.settling.delete(row.taskId);
      });
      this.inFlight.set(row.taskId, work);
    }
  }

  /** Whether a `seen` task may start here now: always for optimistic ones (claimed first), else its turn. */
  private myTurn(row: TaskRow): boolean {
    const mode = modeName(taskFromJson(row.data).task.mode);
    return mode === "optimistic" || this.assignment.isMyTurn(BigInt(row.taskId));
  }

  /** Move one task through its remaining stages. Errors that can pass leave the state for the next round. */
  private async advance(row: TaskRow) {
    const submitted = taskFromJson(row.data);
    const taskId = submitted.taskId;
    const ctx = { taskId: taskId.toString(), modelId: submitted.modelId.toString() };
    const mode = modeName(submitted.task.mode);
    try {
      let state = row.state;
      if (state === "posted") return await this.optimistic.finalizeIfDue(submitted, row);
      // ZK and TEE tasks take no claim: the proof or the enclave signature binds this node.
      const claimless = mode !== "optimistic";
      if (claimless && state === "claimed") state = "seen";
      let prepared: Prepared | undefined =
        state === "claimed" ? this.attestRetry.get(taskId.toString())?.prepared : undefined;
      if (!prepared && (state === "seen" || state === "claimed")) {
        // A node later in the task's order starts only if the ones before it have not settled it.
        if (claimless && !(await this.stillOpen(taskId))) return;
        prepared = await this.prepare(submitted, state === "seen");
        if (!prepared) return;
      }
      if (state === "seen" && !claimless) {
        await this.optimistic.claim(submitted);
        state = "claimed";
      }
      if (state === "claimed" && mode === "optimistic")
        return await this.optimistic.postOptimistic(submitted, prepared!);
      if (state === "seen" && mode === "tee") return await this.tee.submitTee(submitted, prepared!);
      if (state === "seen") {
        await this.zk.prove(submitted, prepared!);
        state = "proved";
      }
      if (state === "proved") await this.zk.submit(submitted);
    } catch (err) {
      if (err instanceof PipelineStop) return;
      if (err instanceof RevertedError) {
        // Eligibility changed since it was last read (a slash, an unstake): read it again next round.
        if (/NodeNotEligible/.test(err.reason)) this.eligibility.checkedAt = 0;
        this.log.warn({ ...ctx, reason: err.reason }, "transaction reverted; reconciling with the chain");
        this.journal.setState(taskId, this.journal.task(taskId)!.state, { reason: err.reason });
        await this.reconcile(taskId, err.reason).catch((e) =>
          this.log.warn({ ...ctx, err: e.message }, "reconcile failed"),
        );
      } else {
        this.stageFailed(taskId, ctx, err as Error);
      }
    }
  }

  /**
   * A stage failed with an error that is not a revert (sandbox.ts failureClass): a refusal refuses the task
   * once, by name; the transport is retried at the next round, as long as it takes; anything else, while the
   * task is being prepared, claimed or posted (`seen`, `claimed`: the stages that run the model), is retried
   * until it failed MAX_UNKNOWN_FAILURES times, then the task is given up. Once a result is proved or posted,
   * collateral rides on sending it: those transactions keep being retried.
   */
  private stageFailed(taskId: bigint, ctx: { taskId: string }, err: Error) {
    const key = taskId.toString();
    const current = this.journal.task(taskId);
    if (!current) return;
    const kind = failureClass(err);
    if (kind === "refuse") {
      this.unknownFailures.delete(key);
      return this.refuse(taskId, ctx, err);
    }
    if (kind === "transient" || !["seen", "claimed"].includes(current.state)) {
      this.log.warn({ ...ctx, err: err.message }, "stage failed; will retry");
      this.journal.setState(taskId, current.state, { reason: err.message });
      return;
    }
    const failures = (this.unknownFailures.get(key) ?? 0) + 1;
    if (failures >= MAX_UNKNOWN_FAILURES) {
      this.unknownFailures.delete(key);
      this.attestRetry.delete(key);
      this.journal.setState(taskId, "failed", {
        reason: `${err.name}: ${err.message} (failed ${failures} times)`,
      });
      this.log.error(
        { ...ctx, err: err.message, failures },
        "stage failed again with the same unexpected error; task given up",
      );
      return;
    }
    this.unknownFailures.set(key, failures);
    this.log.warn(
      { ...ctx, err: err.message, failures, giveUpAfter: MAX_UNKNOWN_FAILURES },
      "stage failed; will retry",
    );
    this.journal.setState(taskId, current.state, { reason: err.message });
  }

  /** Refuse a task for good (a bundle, input or model the node cannot or will not run): one log line. */
  private refuse(taskId: bigint, ctx: { taskId: string }, err: Error) {
    this.attestRetry.delete(taskId.toString());
    this.journal.setState(taskId, "refused", { reason: err.message });
    const fields = err instanceof ExecutionRefusedError ? { ...ctx, limit: err.kind } : ctx;
    this.log.warn({ ...fields, reason: err.message }, "task refused");
  }

  /**
   * Everything that can be checked before committing collateral: policy, the bundle's hashes, the input,
   * and a run of the quantized model. Returns undefined when the task was skipped or refused.
   */
  private async prepare(submitted: SubmittedTask, beforeClaim: boolean): Promise<Prepared | undefined> {
    const taskId = submitted.taskId;
    const ctx = { taskId: taskId.toString(), modelId: submitted.modelId.toString() };
    if (beforeClaim) {
      const now = (await this.chain.provider.getBlock("latest"))!.timestamp;
      const reason =
        this.modeSkipReason(submitted.task.mode) ?? policySkipReason(submitted.task, now, this.config);
      const skip = reason ?? (await this.tee.enclaveSkipReason(submitted.task.mode));
      if (skip) {
        this.journal.setState(taskId, "skipped", { reason: skip });
        this.log.info({ ...ctx, reason: skip }, "task skipped by policy");
        return undefined;
      }
    }
    try {
      const model = await this.chain.models.getModel(submitted.modelId);
      // ZK tasks need a circuit; the other modes also run plain bundles (onnxruntime, no circuit).
      const anyBundle =
        modeName(submitted.task.mode) === "zk"
          ? await this.bundles.get(model)
          : await this.bundles.getAny(model);
      if (isPlainBundle(anyBundle)) {
        const input = await decodeTaskInput(anyBundle.manifest, submitted, this.data);
        const started = Date.now();
        const { values } = await this.executor.outputs(anyBundle, input);
        this.metrics.seconds.observe({ stage: "execute" }, (Date.now() - started) / 1000);
        return { bundle: anyBundle, input, outputs: values };
      }
      const bundle = anyBundle;
      // BundleCache has checked that the bundle's program agrees with its circuit (bundle-consistency.ts):
      // an inconsistent bundle is refused above, before anything is executed or claimed.
      await this.servedKeys.check(submitted.modelId, bundle);
      const input = await decodeTaskInput(bundle.manifest, submitted, this.data);
      const started = Date.now();
      // The fixed-point program runs in the sandbox too: its BigInt arithmetic would hold the event loop.
      // (The float model is not run beside it any more: that was a debug line, and a stranger's ONNX file
      // run in this process. `opg audit` still compares the two.)
      const { values: outputs } = await this.executor.outputs(bundle, input);
      // The circuit range-checks and packs the outputs: an output that does not fit cannot be proved, so it
      // must be refused now, before collateral is locked.
      expectedPublicSignals(bundle.manifest, input, outputs, 0n);
      this.metrics.seconds.observe({ stage: "execute" }, (Date.now() - started) / 1000);
      return { bundle, input, outputs };
    } catch (err) {
      if (failureClass(err) === "refuse") {
        this.unknownFailures.delete(taskId.toString());
        this.refuse(taskId, ctx, err as Error);
        return undefined;
      }
      throw err;
    }
  }

  /** Whether a task is still open on chain; if not, the journal is brought in line (another node won). */
  private async stillOpen(taskId: bigint): Promise<boolean> {
    const status = TASK_STATUS[Number(await this.chain.tasks.taskStatus(taskId))];
    if (status === "Open") return true;
    await this.reconcile(taskId, `already ${status.toLowerCase()} when this node's turn came`);
    return false;
  }

  /** A result of ours settled as verified by `receipt`: earnings, journal, collateral, metric. */
  private settled(
    taskId: bigint,
    receipt: { logs: readonly Log[]; blockNumber: number },
    reason: string | null,
    labels: { mode: string; outcome: string },
  ) {
    for (const log of receipt.logs) {
      const parsed = taskRegistryInterface.parseLog(log);
      if (parsed?.name === "TaskVerified" && parsed.args.taskId === taskId)
        this.journal.recordEarning(taskId, parsed.args.nodeFee, receipt.blockNumber);
    }
    this.assignment.forget(taskId);
    this.journal.setState(taskId, "verified", { reason });
    this.collateralReleased();
    this.metrics.results.inc(labels);
  }
}
