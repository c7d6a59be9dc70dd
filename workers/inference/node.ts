import fs from "node:fs";
import path from "node:path";
import { toBeHex, type Log } from "ethers";
import client from "prom-client";
import { expectedPublicSignals, packValues } from "../../zkml";
import { DataClient } from "../data/client";
import { BundleCache, isPlainBundle, type AnyBundle } from "../runtime/bundles";
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
import {
  attestersOf,
  corruptOutputWords,
  outputsHash,
  submittedTaskOf,
  TASK_STATUS,
} from "../runtime/optimistic";
import { DevEnclave, ensureEnclaveKeyRegistered } from "../../tee/dev-enclave";
import type { inferenceSchema } from "./config";
import { gatherAttestations, isHttpEndpoint, type Attestation } from "./attestations";
import { eligibilityProblem, type Eligibility } from "./eligibility";
import { Assignment } from "./assignment";
import { ProverPool } from "./prover-pool";
import { ZkSettler } from "./zk-settler";
import { ServedKeyChecks } from "./served-key";

export type InferenceConfig = ConfigOf<typeof inferenceSchema>;

/**
 * What `prepare` found: the model bundle (a plain bundle only for TEE and optimistic tasks), the quantized
 * input, and the output values (the fixed-point executor's, or onnxruntime's quantized for a plain bundle).
 */
interface Prepared {
  bundle: AnyBundle;
  input: bigint[];
  outputs: bigint[];
}

/** What the journal keeps of a posted optimistic result (in the `proof` column). */
interface PostedResult {
  outputs: string[];
  /** Block the result was posted in: attestations are searched from there. */
  block: number;
  /** Fault injection: the posted outputs are deliberately wrong. */
  lied?: boolean;
}

/** INodeStaking.Role.Verification. */
const VERIFICATION_ROLE = 1;
/** How long the verification nodes read from NodeStaking (attestUrls auto) are used before being read again. */
const VERIFIERS_TTL_MS = 60_000;
/** Most verification nodes read from NodeStaking to ask for attestations. */
const MAX_VERIFIERS_LISTED = 256;

/** Ends a task's pipeline quietly: dry run after the first transaction it would send, or a task given up. */
class PipelineStop extends Error {}

const MAX_PROVE_ATTEMPTS = 3;
/**
 * Failures of a task's stage that are neither a refusal nor the transport (sandbox.ts failureClass) before
 * the task is given up (`failed`): what failed three times the same way is not going to pass.
 */
const MAX_UNKNOWN_FAILURES = 3;
/** First wait before asking again for the attestations an optimistic result lacks; doubled up to the max. */
const ATTEST_RETRY_MS = 2_000;
const ATTEST_RETRY_MAX_MS = 30_000;
/** Seconds kept between the last try at posting an optimistic result and its claim's expiry (mining time). */
const POST_MARGIN_SECONDS = 30;

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

/** `items` in random order (the load of attesting spread over verification nodes). */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

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
 * When a node short of an optimistic task's quorum of attestations asks again: the wait in ms (ATTEST_RETRY_MS
 * at first, then doubled up to ATTEST_RETRY_MAX_MS), or undefined when the round after that wait (the wait,
 * `attestTimeoutMs` of asking, POST_MARGIN_SECONDS to mine the post) could not end before the claim expires
 * at chain time `claimExpiresAt`: then the task is given up.
 */
export function nextQuorumAttempt(opts: {
  previousDelayMs?: number;
  now: number;
  claimExpiresAt: number;
  attestTimeoutMs: number;
}): number | undefined {
  const delayMs =
    opts.previousDelayMs === undefined
      ? ATTEST_RETRY_MS
      : Math.min(ATTEST_RETRY_MAX_MS, opts.previousDelayMs * 2);
  const postedBy = opts.now + Math.ceil((delayMs + opts.attestTimeoutMs) / 1000) + POST_MARGIN_SECONDS;
  return postedBy < opts.claimExpiresAt ? delayMs : undefined;
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
 * completed stage; before each transaction the chain is asked what is true now.
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
  /** ZK results go to the registry in batches (submitResults). */
  private readonly zkSettler: ZkSettler;
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
  /** attestUrls auto: eligible verification nodes' registered endpoints, and when they were read. */
  private verifiers?: { urls: string[]; at: number };
  /** Verification nodes' URLs that did not answer (refused connection, timed out), and when: asked last. */
  private readonly unanswered = new Map<string, number>();
  /** The enclave that signs TEE results (`--enclave dev`), or undefined: TEE tasks are not claimed. */
  private enclave?: DevEnclave;
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
          await this.takeOverLapsedClaims();
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
    this.zkSettler = new ZkSettler(
      async (data, taskIds) =>
        this.submitter.send(
          taskIds.length > 1 ? `results x${taskIds.length}` : "result",
          await this.chain.tasks.getAddress(),
          data,
          taskIds[0],
        ),
      config.settleBatch,
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
      ...(this.enclave ? { enclaveKey: this.enclave.address } : {}),
      lag: this.watcher.lag,
      tasks: this.journal.countByState(),
    }));
    await this.refreshEligibility(true);
    await this.startEnclave();
    this.loop.start();
    this.log.info(
      { address: this.address, chainId: this.chainId.toString(), dryRun: this.config.dryRun },
      "inference node started",
    );
    return port;
  }

  /**
   * `--enclave dev`: load (or create) the development enclave's key and make sure the EnclaveRegistry has
   * it registered and usable; only then are TEE tasks claimed. A deployment without an EnclaveRegistry
   * stops the start; a registration that fails (the node not registered or staked yet, an RPC error) is
   * logged and tried again at every eligibility check, and TEE tasks are left alone meanwhile.
   */
  private async startEnclave() {
    if (this.config.enclave === "none") return;
    if (!this.chain.enclaves) {
      throw new Error(
        `--enclave ${this.config.enclave}: the deployment file has no "enclaves" address (EnclaveRegistry)`,
      );
    }
    const first = !this.enclave;
    const enclave = this.enclave ?? DevEnclave.loadOrCreate(path.join(this.config.stateDir, "enclave"));
    try {
      await ensureEnclaveKeyRegistered({
        enclaves: this.chain.enclaves,
        enclave,
        log: (msg) => this.log.info({ key: enclave.address }, msg),
      });
    } catch (err) {
      this.log.warn(
        { key: enclave.address, err: (err as Error).message },
        "enclave key not registered yet: TEE tasks are left alone until it is (retried at each eligibility check)",
      );
      return;
    }
    this.enclave = enclave;
    if (!first) return;
    this.log.warn(
      { key: enclave.address, measurement: enclave.measurement },
      "TEE mode: signing with the DEVELOPMENT enclave key (no hardware isolation; local chains only)",
    );
  }

  private modeSkipReason(mode: bigint | number | string): string | undefined {
    return modeSkipReason(mode, { enclave: Boolean(this.enclave), disputes: Boolean(this.chain.disputes) });
  }

  /** For a TEE task: why the enclave key cannot sign it now (not Active in the EnclaveRegistry), or undefined. */
  private async enclaveSkipReason(mode: bigint | number | string): Promise<string | undefined> {
    if (modeName(mode) !== "tee" || !this.enclave) return undefined;
    const [node, standing] = await this.chain.enclaves!.keyStatus(this.enclave.address);
    const ACTIVE = 2n; // IEnclaveRegistry.KeyStanding.Active
    if (node === this.address && standing === ACTIVE) return undefined;
    return `enclave key ${this.enclave.address} is not Active in the EnclaveRegistry (standing ${standing})`;
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
    if (next.ready && this.config.enclave !== "none" && this.loop.isRunning) await this.startEnclave();
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
        this.onForeignClaim(row, parsed.args.node, Number(parsed.args.claimExpiresAt));
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
        await this.recoverPosted(taskId, row.block);
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
        [next, until] = this.stateForClaimNotHeld(row, Number(expiresAt));
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

  // ---------------------------------------------------------------- claim take-over

  /**
   * The state of a task whose claim this node does not hold (another node's, or our own that lapsed) and
   * that lapses at `expiresAt`: watched when the task can be taken over after it (take-over is on and
   * enough time would be left before the deadline), else given up.
   */
  private stateForClaimNotHeld(row: TaskRow, expiresAt: number): ["watching", number] | ["lost", undefined] {
    const deadline = Number(taskFromJson(row.data).task.deadline);
    if (this.config.takeOverClaims && expiresAt + this.config.deadlineMarginSeconds < deadline) {
      return ["watching", expiresAt];
    }
    return ["lost", undefined];
  }

  /** Another node claimed a task this node tracks: watch the claim for a lapse, or give the task up. */
  private onForeignClaim(row: TaskRow, node: string, expiresAt: number) {
    const taskId = BigInt(row.taskId);
    const [next, until] = this.stateForClaimNotHeld(row, expiresAt);
    const reason = `claimed by ${node} until ${expiresAt}`;
    this.journal.setState(taskId, next, { reason, ...(until !== undefined ? { until } : {}) });
    if (next === "watching") {
      this.log.info(
        { taskId: row.taskId, node, claimExpiresAt: expiresAt },
        "task claimed by another node: watching",
      );
    }
  }

  /**
   * Send watched tasks whose claim has lapsed back to `seen`: the pipeline then checks policy and claims
   * them, and the registry slashes the lapsed claimer's collateral to the treasury. A node that claims first
   * wins; the loser's claim reverts and the task is watched again under the new claim.
   */
  private async takeOverLapsedClaims() {
    const watching = this.journal.tasksIn("watching");
    if (watching.length === 0) return;
    const now = (await this.chain.provider.getBlock("latest"))!.timestamp;
    for (const row of watching) {
      if (row.until === null || now <= row.until) continue;
      this.journal.setState(BigInt(row.taskId), "seen", { reason: `claim lapsed at ${row.until}` });
      this.log.info({ taskId: row.taskId, claimExpiredAt: row.until }, "claim lapsed: taking the task over");
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
      if (state === "posted") return await this.finalizeIfDue(submitted, row);
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
        await this.claim(submitted);
        state = "claimed";
      }
      if (state === "claimed" && mode === "optimistic")
        return await this.postOptimistic(submitted, prepared!);
      if (state === "seen" && mode === "tee") return await this.submitTee(submitted, prepared!);
      if (state === "seen") {
        await this.prove(submitted, prepared!);
        state = "proved";
      }
      if (state === "proved") await this.submit(submitted);
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
      const skip = reason ?? (await this.enclaveSkipReason(submitted.task.mode));
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

  private async claim(submitted: SubmittedTask) {
    const started = Date.now();
    const data = this.chain.tasks.interface.encodeFunctionData("claimTask", [
      submitted.taskId,
      submitted.task,
    ]);
    const receipt = await this.submitter.send(
      "claim",
      await this.chain.tasks.getAddress(),
      data,
      submitted.taskId,
    );
    this.metrics.seconds.observe({ stage: "chain" }, (Date.now() - started) / 1000);
    if (!receipt) {
      // Dry run: everything up to the claim was done; park the task instead of simulating it every poll.
      this.journal.setState(submitted.taskId, "skipped", { reason: "dry run: would claim" });
      throw new PipelineStop();
    }
    this.journal.setState(submitted.taskId, "claimed", { reason: null });
    this.log.info({ taskId: submitted.taskId.toString(), tx: receipt.hash }, "task claimed");
  }

  /**
   * A Groth16 proof of the task's outputs on its input, bound to this node (the public signals submitResult
   * rebuilds), made and checked by the prover pool (proveTask). After MAX_PROVE_ATTEMPTS failures the task
   * is given up (`failed`).
   */
  private async prove(submitted: SubmittedTask, prepared: Prepared) {
    if (isPlainBundle(prepared.bundle)) throw new Error("a plain bundle has no circuit to prove with");
    const binding = BigInt(await this.chain.tasks.taskBinding(submitted.taskId, this.address));
    const outputWords = packValues(prepared.outputs, prepared.bundle.manifest.publicSignals.packBits);
    let proved: Awaited<ReturnType<ProverPool["proveTask"]>>;
    try {
      proved = await this.prover.proveTask(prepared.bundle.dir, prepared.input, binding, outputWords);
    } catch (err) {
      // Proving is deterministic: after a few failures it will not succeed. Give the task up (it expires and
      // the requester is refunded) instead of retrying forever.
      if (this.journal.task(submitted.taskId)!.attempts + 1 >= MAX_PROVE_ATTEMPTS) {
        this.journal.setState(submitted.taskId, "failed", {
          reason: `proving failed: ${(err as Error).message}`,
        });
        this.log.error(
          { taskId: submitted.taskId.toString(), err: (err as Error).message },
          "proving failed; task given up",
        );
        throw new PipelineStop();
      }
      throw err;
    }
    this.metrics.seconds.observe({ stage: "prove" }, proved.ms / 1000);
    this.journal.setState(submitted.taskId, "proved", {
      proof: JSON.stringify({ proof: proved.proof.map(String), outputs: proved.outputs.map(String) }),
    });
    this.log.info({ taskId: submitted.taskId.toString(), proveMs: proved.ms }, "task proved");
  }

  /**
   * Dry run: everything up to the settling transaction was done and simulated; park the task (`skipped`)
   * instead of running and simulating it again at every poll.
   */
  private parkDryRun(taskId: bigint, what: string): never {
    this.journal.setState(taskId, "skipped", { reason: `dry run: ${what}` });
    throw new PipelineStop();
  }

  /** Whether a task is still open on chain; if not, the journal is brought in line (another node won). */
  private async stillOpen(taskId: bigint): Promise<boolean> {
    const status = TASK_STATUS[Number(await this.chain.tasks.taskStatus(taskId))];
    if (status === "Open") return true;
    await this.reconcile(taskId, `already ${status.toLowerCase()} when this node's turn came`);
    return false;
  }

  /** Settle a proved ZK task through the batch settler (submitResults with the results proved meanwhile). */
  private async submit(submitted: SubmittedTask) {
    const row = this.journal.task(submitted.taskId)!;
    const { proof, outputs } = JSON.parse(row.proof!) as { proof: string[]; outputs: string[] };
    const started = Date.now();
    const outcome = await this.zkSettler.settle({ submitted, proof, outputs });
    this.metrics.seconds.observe({ stage: "chain" }, (Date.now() - started) / 1000);
    if (!outcome) return this.parkDryRun(submitted.taskId, "would submit the result");
    const taskId = submitted.taskId;
    if (outcome.kind === "skipped") {
      // Another node settled it first (or it expired) while the batch was mining: nothing paid, no revert.
      this.assignment.forget(taskId);
      await this.reconcile(taskId, "skipped by its batch: no longer open");
      return;
    }
    this.settled(taskId, outcome.receipt, null, { mode: "zk", outcome: "verified" });
    this.log.info(
      {
        taskId: taskId.toString(),
        tx: outcome.receipt.hash,
        gasUsed: outcome.receipt.gasUsed.toString(),
        batch: batchSize(outcome.receipt),
      },
      "task verified",
    );
  }

  // ---------------------------------------------------------------- optimistic mode

  /**
   * Post the executor's outputs without a proof (submitResultOptimistic) with the task's quorum of
   * attestations signed off chain: the claim collateral stays locked as the node's bond until the result is
   * final, and the node never proves anything (a challenger proves a lie wrong itself). A result posted
   * short of its quorum could never be finalised (expireUnattested would slash the collateral and reopen the
   * task), so without the quorum the node does not post: it asks again, waiting longer each time
   * (`awaitQuorum`), until too little of its claim is left, then gives the task up.
   */
  private async postOptimistic(submitted: SubmittedTask, prepared: Prepared) {
    const taskId = submitted.taskId;
    const layout = prepared.bundle.manifest.publicSignals;
    let outputs = packValues(prepared.outputs, layout.packBits);
    const every = BigInt(this.config.faultLieEvery);
    const lied = every > 0n && taskId % every === 0n;
    if (lied) {
      outputs = corruptOutputWords(outputs, prepared.outputs.length, layout.packBits);
      this.log.warn(
        { taskId: taskId.toString() },
        "FAULT INJECTION (faultLieEvery): posting a deliberately wrong output",
      );
    }
    const quorum = Number(submitted.task.attestationQuorum);
    const attestations = await this.gatherAttestations(submitted, outputs);
    if (attestations.length < quorum) {
      return this.awaitQuorum(submitted, prepared, `${attestations.length} of ${quorum} attestations`);
    }
    const started = Date.now();
    const data = this.chain.tasks.interface.encodeFunctionData("submitResultOptimistic", [
      taskId,
      submitted.task,
      outputs,
      attestations.map((a) => a.signature),
    ]);
    let receipt;
    try {
      receipt = await this.submitter.send("post", await this.chain.tasks.getAddress(), data, taskId);
    } catch (err) {
      // An attester that stopped being eligible since it signed makes the whole post revert (the simulation
      // catches it, nothing is paid): gather again rather than post short of the quorum.
      if (!(err instanceof RevertedError && /TaskRegistryCannotAttest/.test(err.reason))) throw err;
      return this.awaitQuorum(
        submitted,
        prepared,
        `an attestation was refused by the registry (${err.reason})`,
      );
    }
    this.attestRetry.delete(taskId.toString());
    this.metrics.seconds.observe({ stage: "chain" }, (Date.now() - started) / 1000);
    if (!receipt) return;
    let windowEnd = 0;
    for (const log of receipt.logs) {
      const parsed = taskRegistryInterface.parseLog(log);
      if (parsed?.name === "TaskResultPosted") windowEnd = Number(parsed.args.windowEnd);
    }
    const posted: PostedResult = { outputs: outputs.map(String), block: receipt.blockNumber, lied };
    this.journal.setState(taskId, "posted", {
      proof: JSON.stringify(posted),
      until: windowEnd,
      reason: null,
    });
    let attested = 0;
    for (const log of receipt.logs) if (log.topics[0] === TOPICS.attested) attested++;
    this.metrics.results.inc({ mode: "optimistic", outcome: "posted" });
    this.log.info(
      { taskId: taskId.toString(), tx: receipt.hash, windowEnd, attestations: attested, quorum },
      "result posted (optimistic)",
    );
  }

  /**
   * A claimed optimistic task whose quorum of attestations is not in hand (`why`): ask again after a wait
   * (ATTEST_RETRY_MS, doubled each time up to ATTEST_RETRY_MAX_MS; the outputs are kept, not recomputed), or,
   * when another round could not post before the claim expires, give the task up (`failed`): the claim lapses
   * and costs its collateral, as posting an unattested result would have.
   */
  private async awaitQuorum(submitted: SubmittedTask, prepared: Prepared, why: string) {
    const taskId = submitted.taskId;
    const key = taskId.toString();
    const [, expiresAt] = await this.chain.tasks.claimOf(taskId);
    const now = (await this.chain.provider.getBlock("latest"))!.timestamp;
    const delayMs = nextQuorumAttempt({
      previousDelayMs: this.attestRetry.get(key)?.delayMs,
      now,
      claimExpiresAt: Number(expiresAt),
      attestTimeoutMs: this.config.attestTimeoutMs,
    });
    const ctx = { taskId: key, claimExpiresAt: Number(expiresAt), why };
    if (delayMs === undefined) {
      this.attestRetry.delete(key);
      this.journal.setState(taskId, "failed", {
        reason: `not posted: ${why} before the claim expires at ${expiresAt}`,
      });
      this.metrics.results.inc({ mode: "optimistic", outcome: "unattested" });
      this.log.error(
        ctx,
        "optimistic result NOT posted: the task's quorum of attestations could not be gathered before the " +
          "claim expires (a result posted without it could only be expired, its collateral slashed); the " +
          "claim will lapse",
      );
      return;
    }
    this.attestRetry.set(key, { at: Date.now() + delayMs, delayMs, prepared });
    this.log.warn(
      { ...ctx, retryInMs: delayMs },
      "optimistic result not posted yet: fewer attestations than the task's quorum; asking again",
    );
  }

  /**
   * Attestations of `outputs` signed off chain by verification nodes (`attestUrls`), as many as the task's
   * quorum (at least one), each checked here; fewer or none when they refuse or do not answer in
   * `attestTimeoutMs`. Never throws: short of the quorum the result is not posted (postOptimistic).
   */
  private async gatherAttestations(submitted: SubmittedTask, outputs: bigint[]): Promise<Attestation[]> {
    const ctx = { taskId: submitted.taskId.toString() };
    try {
      const urls = await this.attestationUrls();
      if (urls.length === 0) return [];
      const digest = await this.chain.tasks.attestationDigest(
        submitted.taskId,
        this.address,
        outputsHash(outputs),
      );
      const started = Date.now();
      const { attestations, refused } = await gatherAttestations(
        { taskId: submitted.taskId, node: this.address, outputs },
        {
          urls,
          wanted: Number(submitted.task.attestationQuorum),
          timeoutMs: this.config.attestTimeoutMs,
          digest,
          eligible: (address) => this.chain.staking.isEligible(address, VERIFICATION_ROLE),
        },
      );
      this.metrics.seconds.observe({ stage: "attest" }, (Date.now() - started) / 1000);
      for (const r of refused) if (r.status === undefined) this.unanswered.set(r.url, Date.now());
      const fields = { ...ctx, attesters: attestations.map((a) => a.attester), refused };
      if (refused.length > 0) this.log.warn(fields, "attestations gathered off chain (some refused)");
      else this.log.info(fields, "attestations gathered off chain");
      return attestations;
    } catch (err) {
      this.log.warn({ ...ctx, err: (err as Error).message }, "gathering attestations failed");
      return [];
    }
  }

  /** The base URLs to ask for attestations: `attestUrls`, or (auto) eligible verification nodes' endpoints. */
  private async attestationUrls(): Promise<string[]> {
    const setting = this.config.attestUrls;
    if (setting === "none") return [];
    // Those that did not answer lately are asked last, so a dead endpoint does not hold up every post.
    const answering = (urls: string[]) => {
      const late = (url: string) => Date.now() - (this.unanswered.get(url) ?? 0) < VERIFIERS_TTL_MS;
      return [...urls.filter((u) => !late(u)), ...urls.filter(late)];
    };
    if (setting !== "auto") return answering(setting);
    if (this.verifiers && Date.now() - this.verifiers.at < VERIFIERS_TTL_MS)
      return answering(shuffled(this.verifiers.urls));
    const staking = this.chain.staking;
    const nodes = await staking.nodesByRole(VERIFICATION_ROLE, 0, MAX_VERIFIERS_LISTED);
    const urls: string[] = [];
    for (const address of nodes) {
      if (address === this.address) continue;
      if (!(await staking.isEligible(address, VERIFICATION_ROLE))) continue;
      const { endpoint } = await staking.nodeInfo(address);
      if (isHttpEndpoint(endpoint)) urls.push(endpoint);
    }
    this.verifiers = { urls, at: Date.now() };
    return answering(shuffled(urls));
  }

  /** The posted result of `taskId` (its TaskResultPosted log, from `fromBlock` on) back into the journal. */
  private async recoverPosted(taskId: bigint, fromBlock: number) {
    const logs = await this.chain.provider.getLogs({
      address: this.deployment.tasks,
      topics: [TOPICS.posted, toBeHex(taskId, 32)],
      fromBlock,
      toBlock: "latest",
    });
    const log = logs[logs.length - 1];
    if (!log) throw new Error(`task ${taskId} is pending but its TaskResultPosted log was not found`);
    const parsed = taskRegistryInterface.parseLog(log)!;
    const posted: PostedResult = { outputs: parsed.args.outputs.map(String), block: log.blockNumber };
    this.journal.setState(taskId, this.journal.task(taskId)!.state, { proof: JSON.stringify(posted) });
  }

  /**
   * After the challenge window: finalise the result with the attesters fixed at posting (the fee is split,
   * the collateral released). A result short of its quorum (posted before this node waited for one) can only
   * be expired: expireUnattested slashes the claim collateral to the treasury and gives the task back to the
   * market (TaskReopened, then it is claimable again, by this node too) or, past its deadline, refunds the
   * requester. Anyone may send it; the node does, so the task does not sit unsettled.
   */
  private async finalizeIfDue(submitted: SubmittedTask, row: TaskRow) {
    const taskId = submitted.taskId;
    const posted = JSON.parse(row.proof!) as PostedResult;
    const outputs = posted.outputs.map(BigInt);
    const attesters = await attestersOf(
      { provider: this.chain.provider, tasksAddress: this.deployment.tasks },
      taskId,
      posted.block,
    );
    const quorum = Number(submitted.task.attestationQuorum);
    const registry = await this.chain.tasks.getAddress();
    if (attesters.length >= quorum) {
      const data = this.chain.tasks.interface.encodeFunctionData("finalizeResult", [
        taskId,
        submitted.task,
        outputs,
        attesters,
      ]);
      const receipt = await this.submitter.send("finalize", registry, data, taskId);
      if (!receipt) return;
      this.settled(taskId, receipt, null, { mode: "optimistic", outcome: "finalized" });
      this.log.info(
        { taskId: taskId.toString(), tx: receipt.hash, attesters: attesters.length },
        "optimistic result finalised",
      );
    } else {
      const data = this.chain.tasks.interface.encodeFunctionData("expireUnattested", [
        taskId,
        submitted.task,
        outputsHash(outputs),
        attesters,
      ]);
      const receipt = await this.submitter.send("expire-unattested", registry, data, taskId);
      if (!receipt) return;
      const reopened = receipt.logs.some((l) => l.topics[0] === TOPICS.reopened);
      this.journal.setState(taskId, "expired", {
        reason:
          `${attesters.length} of ${quorum} attestations when the window closed: collateral slashed, ` +
          (reopened ? "task reopened" : "requester refunded"),
      });
      // The collateral is gone, not released: the free stake is read again all the same.
      this.eligibility.checkedAt = 0;
      this.metrics.results.inc({ mode: "optimistic", outcome: "unattested" });
      this.log.error(
        { taskId: taskId.toString(), attesters: attesters.length, quorum, reopened },
        "optimistic result short of its quorum when its window closed: expired, claim collateral slashed",
      );
    }
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

  // ---------------------------------------------------------------- TEE mode

  /**
   * Sign the executor's outputs with the enclave key (a raw ECDSA signature over the registry's
   * teeResultDigest) and submit them: the task settles at once.
   */
  private async submitTee(submitted: SubmittedTask, prepared: Prepared) {
    const taskId = submitted.taskId;
    const enclave = this.enclave!;
    const outputs = packValues(prepared.outputs, prepared.bundle.manifest.publicSignals.packBits);
    // The hash of the model bytes the enclave ran (the bundle cache checked them against the manifest and
    // the registry): a host feeding it another model's bytes gets a signature the registry refuses.
    const digest = await this.chain.tasks.teeResultDigest(
      taskId,
      this.address,
      submitted.task.inputHash,
      "0x" + prepared.bundle.manifest.onnx.sha256,
      outputs,
    );
    const signature = enclave.signDigest(digest);
    const data = this.chain.tasks.interface.encodeFunctionData("submitResultTee", [
      taskId,
      submitted.task,
      outputs,
      signature,
    ]);
    let receipt;
    try {
      receipt = await this.submitter.send("result-tee", await this.chain.tasks.getAddress(), data, taskId);
    } catch (err) {
      // The key may have expired or been revoked since start: register a fresh one, then retry the task.
      if (err instanceof RevertedError && /EnclaveKeyRejected/.test(err.reason)) {
        await ensureEnclaveKeyRegistered({
          enclaves: this.chain.enclaves!,
          enclave,
          log: (msg) => this.log.info({ key: enclave.address }, msg),
        });
        throw new Error(`enclave key rejected (${err.reason}); key checked, retrying`);
      }
      throw err;
    }
    if (!receipt) return this.parkDryRun(taskId, "would submit the TEE result");
    this.settled(taskId, receipt, null, { mode: "tee", outcome: "verified" });
    this.log.info(
      { taskId: taskId.toString(), tx: receipt.hash, key: enclave.address },
      "task verified (TEE)",
    );
  }
}

/** Tasks settled by the transaction of `receipt` (its TaskVerified logs). */
function batchSize(receipt: { logs: readonly Log[] }): number {
  return receipt.logs.filter((log) => taskRegistryInterface.parseLog(log)?.name === "TaskVerified").length;
}
