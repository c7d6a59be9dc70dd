import { getAddress, id, toBeHex, type Log, type TransactionReceipt } from "ethers";
import client from "prom-client";
import type { DataClient } from "../data/client";
import { ProofOutputsMismatchError, ProverPool } from "../inference/prover-pool";
import { ServedKeyChecks } from "../inference/served-key";
import type { BundleCache } from "../runtime/bundles";
import type { ModelExecutor } from "../runtime/execution-policy";
import type { Chain } from "../runtime/chain";
import type { Journal, TaskRow } from "../runtime/journal";
import type { Logger } from "../runtime/logger";
import {
  attestersOf,
  DISPUTE_OUTCOME,
  outputsHash,
  submittedTaskOf,
  TASK_STATUS,
} from "../runtime/optimistic";
import type { JsonReply } from "../runtime/service";
import { failureClass } from "../runtime/sandbox";
import { RevertedError, type TxSubmitter } from "../runtime/submitter";
import { decodeTaskInput } from "../runtime/task-input";
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
/** DisputeManager.DisputeState. */
const DISPUTE_OPEN = 1;
const DISPUTE_RESOLVED = 2;
/** DisputeManager ballot sides. */
const SIDE_NODE_RIGHT = 1;
/**
 * Most losing ballots a winning voter settles itself per dispute (the heaviest first): settling a loser
 * slashes it and pays the winners, so a winner has reason to; the cap bounds the gas one dispute can cost.
 */
const MAX_LOSER_SETTLEMENTS = 16;
/** DisputeManager.SLASH_REASON_WRONG_ATTESTATION: the slash of an attester of outputs proved wrong. */
const SLASH_REASON_WRONG_ATTESTATION = id("opg.task.wrong-attestation");

/** The topics the optimistic part of a verification node watches. */
export const OPTIMISTIC_TOPICS = [
  TOPICS.submitted,
  TOPICS.posted,
  TOPICS.attested,
  TOPICS.verified,
  TOPICS.rejected,
  TOPICS.expired,
  TOPICS.reopened,
  TOPICS.attestersPaid,
  TOPICS.disputeOpened,
  TOPICS.disputeResolved,
  TOPICS.ballotSettled,
  TOPICS.attesterSlashed,
];

/**
 * Journal states of an optimistic task on a verification node.
 * - `seen`: submitted, no result posted yet (a task reopened after an unattested result comes back here);
 * - `posted`: a result to re-execute before its window ends;
 * - `attested`: it matched and our off-chain signature is among its attesters (fixed at posting): our stake
 *   backs it until it is final (finalised by us if nobody else does);
 * - `matched`: it matched and we are not an attester: nothing of ours at stake, we wait for it to settle;
 * - `challenged`: it did not match, the model has no circuit, and our challenge (bond paid) opened a vote
 *   (a model with a circuit is never here: our proof settles the challenge in its transaction, `won`);
 * - `disputed`: someone else's vote dispute: we vote by our own re-execution while it is open;
 * - `voted`: our ballot is cast: after the deadline we resolve the vote (anyone may);
 * - `settling`: the vote is resolved and our ballot won: we settle the losing ballots and then ours
 *   (back here whenever more losers are settled and our reward grew).
 * Terminal: `final` (verified), `won` (our challenge or ballot won: paid), `lost` (our challenge or ballot
 * lost: bond kept, ballot slashed), `slashed` (we attested a result proved wrong), `undecided` (a vote we
 * took part in decided nothing: bond back, nobody slashed), `rejected` (rejected, nothing of ours at
 * stake), `expired`, `missed` (the window ended before we checked), `skipped` (our own result, or a
 * challenge the registry refused), `refused` (a bundle or input we cannot check, or a circuit bundle that
 * fails its checks). Amounts won, lost and slashed are kept in the journal's amounts (`amountsByKind`).
 */
export const OPTIMISTIC_STATES = [
  "seen",
  "posted",
  "attested",
  "matched",
  "challenged",
  "disputed",
  "voted",
  "settling",
  "final",
  "won",
  "lost",
  "slashed",
  "undecided",
  "rejected",
  "expired",
  "missed",
  "skipped",
  "refused",
] as const;

/** States a result can leave only through a settlement we take part in (no event moves them back). */
const DECIDED = ["final", "won", "lost", "slashed", "undecided", "rejected", "expired", "settling"];

/**
 * Failures of a posted result's check that are neither a refusal nor the transport (sandbox.ts failureClass)
 * before the task is refused: the check is never retried forever.
 */
const MAX_UNKNOWN_FAILURES = 3;

/** What the journal keeps of a posted result (the `proof` column). */
interface Posted {
  node: string;
  outputs: string[];
  block: number;
  windowEnd: number;
  /** Whether our re-execution matched (set once checked). */
  match?: boolean;
  /** Whether our attestation is among the attesters fixed at posting. */
  attested?: boolean;
  /** Set when a dispute opens: who challenged, and whether it is settled by proof (else by vote). */
  challenger?: string;
  circuit?: boolean;
  /** Our ballot's side once cast (true: the node was right). */
  nodeRight?: boolean;
  /** Why we cannot vote on this dispute (staked since it opened), once found. */
  cannotVote?: string;
  /** Whether we settled the losing ballots of this resolved vote already (once per dispute). */
  losersSettled?: boolean;
}

export interface OptimisticOptions {
  /** Model ids to watch; empty: all. */
  models: bigint[];
  /** Attested results still pending this many seconds after their window are finalised by this node. */
  finalizeAfterSeconds: number;
  /** The node's first block: a task posted later but submitted before it is looked up from there. */
  startBlock: number;
  /** Runs the models re-executed (the execution policy, then the sandbox): never in the node's process. */
  executor: ModelExecutor;
}

/**
 * The verification node's part in the optimistic mode. For every result posted without proof it re-executes
 * the model (the fixed-point executor of the bundle the registry names) and compares the output words bit
 * for bit. Equal: nothing to send (it signed its attestation off chain, `POST /attest`, if the node asked).
 * Different: for a model with a circuit it proves the true outputs itself, bound to its own address, and
 * sends `DisputeManager.challengeWithProof`, which rejects the result, slashes the node (the challenger gets
 * the beneficiary share) and the attesters in that one transaction; for a model without a circuit it
 * challenges with the governed bond, which opens a stake-weighted vote. It votes on every vote dispute it can
 * re-execute (on results it attested too), resolves votes when due, settles its ballots (and the losing ones,
 * which pay the winners), and finalises results it attested that nobody finalised. It never answers a
 * dispute: silence is never a verdict.
 */
export class OptimisticVerifier {
  readonly address: string;
  private eligible: { ok: boolean; checkedAt: number } = { ok: false, checkedAt: 0 };
  /** Tasks whose challenge is held back by too small a wallet, logged once each. */
  private readonly shortOfBond = new Set<string>();
  private readonly actions;
  private readonly earned;
  private readonly amounts;
  private readonly seconds;
  /** `POST /attest`: attestations signed off chain, and the one re-execution per task it shares with `check`. */
  private readonly attestor: Attestor;
  /** TaskSubmitted of tasks looked up for `/attest` (not in the journal yet). */
  private readonly looked = new Map<string, SubmittedTask>();
  /** Proving processes, started the first time a lie is proved wrong. */
  private provers?: ProverPool;
  private readonly servedKeys: ServedKeyChecks;
  /** The dispute manager's address, checksummed (its logs are told apart by it). */
  private readonly disputesAddress?: string;
  /** Per task: unexpected failures of its check so far (refused at MAX_UNKNOWN_FAILURES). */
  private readonly unknownFailures = new Map<string, number>();

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
    if (chain.disputes) this.disputesAddress = getAddress(chain.disputes.target as string);
    this.actions = new client.Counter({
      name: "opg_optimistic_actions_total",
      help:
        "optimistic-mode actions and outcomes: signed and refused_to_sign (POST /attest), attested, matched, " +
        "challenged, voted, resolved, settled, finalized, won, lost, slashed, undecided, missed",
      labelNames: ["action"],
      registers: [registry],
    });
    this.earned = new client.Gauge({
      name: "opg_attester_earned_wei",
      help: "attester fee shares earned (journal total)",
      registers: [registry],
    });
    this.amounts = new client.Gauge({
      name: "opg_dispute_amount_wei",
      help:
        "OPG moved by disputes this node took part in (journal totals): won (challenge rewards, ballot pay), " +
        "lost (bonds kept, losing ballots slashed), slashed (attestations of results proved wrong)",
      labelNames: ["kind"],
      registers: [registry],
    });
    this.seconds = new client.Histogram({
      name: "opg_challenge_seconds",
      help: "seconds to prove a posted result wrong (prove) and from the check to the mined challenge (total)",
      labelNames: ["stage"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers: [registry],
    });
    this.updateAmounts();
    this.servedKeys = new ServedKeyChecks({
      registeredKey: async (modelId) => [...(await chain.models.verificationKeyOf(modelId))],
      provingKey: (dir) => this.prover().zkeyVerificationKey(dir),
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

  /** Stop the proving processes, if any were started. */
  async close() {
    await this.provers?.close();
  }

  private prover(): ProverPool {
    // One process: lies are rare, and each is proved well within its window (measured in the e2e test).
    this.provers ??= new ProverPool(1);
    return this.provers;
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

  /**
   * The model's output words on the task's input, by this node's own execution. BundleCache refuses
   * (BundleRejectedError) a circuit bundle whose program disagrees with its circuit (bundle-consistency.ts:
   * its program is what is executed here, its circuit what a challenge proves), so the node neither attests
   * nor challenges with one: the task is `refused` (422 to `/attest`).
   */
  private async execute(submitted: SubmittedTask): Promise<bigint[]> {
    const model = await this.chain.models.getModel(submitted.modelId);
    const bundle = await this.bundles.getAny(model);
    const input = await decodeTaskInput(bundle.manifest, submitted, this.data);
    return (await this.opts.executor.outputs(bundle, input)).words;
  }

  private get reader() {
    return { provider: this.chain.provider, tasksAddress: this.chain.tasks.target as string };
  }

  private wanted(modelId: bigint) {
    return this.opts.models.length === 0 || this.opts.models.includes(modelId);
  }

  private posted(row: TaskRow): Posted {
    return JSON.parse(row.proof!) as Posted;
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
      if (this.disputesAddress && getAddress(log.address) === this.disputesAddress) {
        await this.onDisputeLog(log);
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
        // Our signature rode with the posted result (only a match is ever signed): our stake backs it now.
        if (parsed.args.attester === this.address && row.state === "posted") this.markAttested(row);
      } else if (parsed.name === "TaskReopened") {
        // The result expired unattested before the deadline: another posting will come, checked afresh.
        if (!["seen", "expired"].includes(row.state))
          this.journal.setState(taskId, "seen", {
            proof: null,
            reason: `reopened (the unattested result of ${parsed.args.previousNode} expired)`,
          });
      } else if (parsed.name === "AttestersPaid") {
        if ((parsed.args.attesters as string[]).includes(this.address)) {
          this.journal.recordEarning(taskId, parsed.args.share, log.blockNumber);
          this.earned.set(Number(this.journal.totalEarned()));
        }
      } else if (parsed.name === "TaskVerified") {
        this.onSettled(row, "NodeRight");
      } else if (parsed.name === "TaskRejected") {
        this.onSettled(row, DISPUTE_OUTCOME[Number(parsed.args.outcome)]);
      } else if (parsed.name === "TaskExpired") {
        if (row.state !== "expired") this.finish(row, "expired", "expired");
      }
    }
  }

  /**
   * The task settled (TaskVerified: NodeRight; TaskRejected: its outcome). After a vote we took part in,
   * the ballots are settled first (`settling`, by `work`); otherwise the state follows from what we had at
   * stake.
   */
  private onSettled(row: TaskRow, outcome: (typeof DISPUTE_OUTCOME)[number]) {
    if (DECIDED.includes(row.state)) return;
    const posted = row.proof ? this.posted(row) : undefined;
    if (posted?.circuit === false && ["challenged", "disputed", "voted"].includes(row.state)) {
      this.journal.setState(BigInt(row.taskId), "settling", { reason: `vote resolved: ${outcome}` });
      return;
    }
    const [state, reason] = this.outcomeState(row, posted, outcome);
    this.finish(row, state, reason);
  }

  /** Our terminal state for a settled task on which we hold no ballot. */
  private outcomeState(
    row: TaskRow,
    posted: Posted | undefined,
    outcome: (typeof DISPUTE_OUTCOME)[number],
  ): [string, string] {
    if (outcome === "NodeRight") return ["final", "verified"];
    if (outcome === "NodeWrong" && (posted?.attested || row.state === "attested"))
      return ["slashed", "we attested a result proved wrong"];
    if (outcome === "NodeWrong" && posted?.challenger === this.address)
      return ["won", "our challenge proved the result wrong"];
    return ["rejected", outcome];
  }

  private finish(row: TaskRow, state: string, reason: string) {
    this.journal.setState(BigInt(row.taskId), state, { reason });
    if (["won", "lost", "slashed", "undecided"].includes(state)) {
      this.actions.inc({ action: state });
      const level = state === "won" || state === "undecided" ? "info" : "warn";
      this.log[level](
        { taskId: row.taskId, reason, amounts: this.amountsOf(BigInt(row.taskId)) },
        `optimistic dispute ${state}`,
      );
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
    const posted = this.posted(row);
    posted.match = true;
    posted.attested = true;
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

  private async onDisputeLog(log: Log) {
    const parsed = disputeManagerInterface.parseLog(log);
    if (!parsed) return;
    const taskId: bigint = parsed.args.taskId;
    const row = this.journal.task(taskId);
    if (!row || !row.proof) return;
    const posted = this.posted(row);
    if (parsed.name === "DisputeOpened") {
      if (row.state === "attested") posted.attested = true;
      posted.circuit = parsed.args.circuit;
      posted.challenger = parsed.args.challenger;
      const proof = JSON.stringify(posted);
      if (DECIDED.includes(row.state)) return this.journal.setState(taskId, row.state, { proof });
      const until = Number(parsed.args.deadline);
      if (posted.challenger === this.address) {
        this.journal.setState(taskId, "challenged", { proof, until });
      } else {
        // A circuit dispute is settled in this same transaction (TaskRejected follows); a vote is ours too.
        this.journal.setState(taskId, "disputed", {
          proof,
          until,
          reason: `challenged by ${posted.challenger}${posted.circuit ? " with a proof" : ""}`,
        });
      }
    } else if (parsed.name === "DisputeResolved") {
      if (posted.challenger !== this.address) return;
      const outcome = DISPUTE_OUTCOME[Number(parsed.args.outcome)];
      if (outcome === "NodeWrong") await this.recordReceipt(taskId, log.transactionHash);
      if (outcome === "NodeRight") {
        // Our bond stays with the dispute manager as the winning ballots' reward.
        const bond = (await this.chain.disputes!.disputeOf(taskId)).bond;
        this.record(taskId, "lost", `${log.transactionHash}:${log.index}`, bond, log.blockNumber);
      }
    } else if (parsed.name === "BallotSettled") {
      if (parsed.args.voter === this.address) {
        const ref = `${log.transactionHash}:${log.index}`;
        this.record(taskId, "won", ref, parsed.args.paid, log.blockNumber);
        this.record(taskId, "lost", ref, parsed.args.slashed, log.blockNumber);
      } else if (parsed.args.slashed > 0n && row.state === "won" && posted.nodeRight !== undefined) {
        // Another losing ballot was slashed: our winning ballot is owed its share of it.
        this.journal.setState(taskId, "settling", { reason: "a losing ballot was settled: reward grew" });
      }
    } else if (parsed.name === "AttesterSlashed") {
      if (parsed.args.attester === this.address) await this.recordReceipt(taskId, log.transactionHash);
    }
  }

  /**
   * Record what a dispute's transaction moved to or from us, from its receipt's NodeSlashed logs: the
   * beneficiary share of a node's slash paid to us (won), and our own slash as an attester (slashed). Each
   * once, by log (a replayed or repeated read records nothing new).
   */
  private async recordReceipt(taskId: bigint, txHash: string, known?: TransactionReceipt) {
    const receipt = known ?? (await this.chain.provider.getTransactionReceipt(txHash));
    if (!receipt) return;
    const staking = this.chain.staking;
    for (const log of receipt.logs) {
      if (getAddress(log.address) !== getAddress(staking.target as string)) continue;
      const parsed = staking.interface.parseLog(log);
      if (parsed?.name !== "NodeSlashed") continue;
      const ref = `${receipt.hash}:${log.index}`;
      if (parsed.args.beneficiary === this.address && parsed.args.toBeneficiary > 0n)
        this.record(taskId, "won", ref, parsed.args.toBeneficiary, receipt.blockNumber);
      if (parsed.args.node === this.address && parsed.args.reason === SLASH_REASON_WRONG_ATTESTATION)
        this.record(taskId, "slashed", ref, parsed.args.amount, receipt.blockNumber);
    }
  }

  private record(
    taskId: bigint,
    kind: "won" | "lost" | "slashed",
    ref: string,
    amount: bigint,
    block: number,
  ) {
    if (amount === 0n) return;
    if (this.journal.recordAmount(taskId, kind, ref, amount, block)) this.updateAmounts();
  }

  private updateAmounts() {
    const totals = this.journal.amountsByKind();
    for (const kind of ["won", "lost", "slashed"]) this.amounts.set({ kind }, Number(totals[kind] ?? 0n));
  }

  private amountsOf(taskId: bigint): Record<string, string> {
    const totals = this.journal.amountsByKind(taskId);
    return Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, v.toString()]));
  }

  // ---------------------------------------------------------------- work

  /** One round over the tasks that wait for something this node does. */
  async work() {
    const now = (await this.chain.provider.getBlock("latest"))!.timestamp;
    const waiting = this.journal.tasksIn(
      "posted",
      "attested",
      "matched",
      "challenged",
      "disputed",
      "voted",
      "settling",
    );
    for (const row of waiting) {
      const submitted = taskFromJson(row.data);
      const ctx = { taskId: row.taskId, modelId: row.modelId };
      try {
        if (row.state === "posted") await this.check(row, submitted, now);
        else if (row.state === "attested" || row.state === "matched")
          await this.finalizeIfStale(row, submitted, now);
        else if (row.state === "settling") await this.settleBallots(row);
        else await this.followDispute(row, submitted, now);
      } catch (err) {
        if (err instanceof RevertedError) {
          this.log.warn({ ...ctx, reason: err.reason }, "transaction reverted; reading the task's status");
          await this.reconcile(row).catch((e) =>
            this.log.warn({ ...ctx, err: e.message }, "reconcile failed"),
          );
          // A revert is not retried: a challenge the registry refuses (another node challenged first, the
          // window closed) is given up; another node's dispute still brings the task back through
          // DisputeOpened, to vote on it.
          if (this.journal.task(BigInt(row.taskId))?.state === "posted")
            this.journal.setState(BigInt(row.taskId), "skipped", { reason: err.reason });
        } else if (!(row.state === "posted" && this.giveUpCheck(row, err as Error))) {
          this.log.warn({ ...ctx, err: (err as Error).message }, "optimistic step failed; will retry");
        }
      }
    }
  }

  /** After a revert: move a task whose status moved on (settled by someone else) to the matching state. */
  private async reconcile(row: TaskRow) {
    const status = TASK_STATUS[Number(await this.chain.tasks.taskStatus(BigInt(row.taskId)))];
    const current = this.journal.task(BigInt(row.taskId))!;
    if (status === "Verified") this.onSettled(current, "NodeRight");
    else if (status === "Rejected") {
      const posted = current.proof ? this.posted(current) : undefined;
      const disputes = this.chain.disputes;
      const outcome =
        posted?.challenger && disputes
          ? DISPUTE_OUTCOME[Number((await disputes.disputeOf(BigInt(row.taskId))).outcome)]
          : "NodeWrong";
      this.onSettled(current, outcome);
    } else if (status === "Expired") this.finish(current, "expired", "expired");
  }

  private async isEligible(): Promise<boolean> {
    if (Date.now() - this.eligible.checkedAt < 15_000) return this.eligible.ok;
    const ok = await this.chain.staking.isEligible(this.address, VERIFICATION_ROLE);
    if (!ok && (this.eligible.ok || this.eligible.checkedAt === 0)) {
      this.log.warn(
        { address: this.address },
        "not eligible as a verification node (registered with the verification role and staked at least " +
          "its minimum): attesting, challenging and voting on nothing; fix: npx opg operator register --roles verification, npx opg operator stake <amount>",
      );
    }
    this.eligible = { ok, checkedAt: Date.now() };
    return ok;
  }

  /**
   * Whether an error says the task cannot be checked (or proved) with what the registry names: its bundle or
   * input refused, its model over this node's execution policy or limits (sandbox.ts failureClass), or a
   * proof that does not carry what the executor computed.
   */
  private static isRefusal(err: unknown): boolean {
    return failureClass(err) === "refuse" || err instanceof ProofOutputsMismatchError;
  }

  /**
   * A posted result's check failed with `err`, neither a revert nor a refusal: the transport is retried as
   * long as it takes, anything else until it failed MAX_UNKNOWN_FAILURES times, then the task is refused.
   * Returns whether it was.
   */
  private giveUpCheck(row: TaskRow, err: Error): boolean {
    if (failureClass(err) !== "unknown") return false;
    const failures = (this.unknownFailures.get(row.taskId) ?? 0) + 1;
    if (failures < MAX_UNKNOWN_FAILURES) {
      this.unknownFailures.set(row.taskId, failures);
      return false;
    }
    this.unknownFailures.delete(row.taskId);
    this.refuse(row, new Error(`${err.message} (failed ${failures} times)`), "check failed again");
    return true;
  }

  private refuse(row: TaskRow | bigint, err: Error, what: string) {
    const taskId = typeof row === "bigint" ? row : BigInt(row.taskId);
    this.journal.setState(taskId, "refused", { reason: err.message });
    this.log.warn({ taskId: taskId.toString(), reason: err.message }, `${what}: task refused`);
  }

  /** The model's output words on the task's input, by this node's own execution; undefined when refused. */
  private async reexecute(row: TaskRow, submitted: SubmittedTask): Promise<bigint[] | undefined> {
    try {
      return await this.attestor.wordsOf(submitted);
    } catch (err) {
      if (OptimisticVerifier.isRefusal(err)) {
        this.refuse(row, err as Error, "cannot re-execute");
        return undefined;
      }
      throw err;
    }
  }

  /**
   * Re-execute a posted result within its window: a match needs nothing sent (`attested` when our signature
   * rode with it, else `matched`); a mismatch is challenged, by proof for a model with a circuit, by bond
   * and vote without one.
   */
  private async check(row: TaskRow, submitted: SubmittedTask, now: number) {
    const taskId = submitted.taskId;
    const posted = this.posted(row);
    if (now > posted.windowEnd) {
      this.journal.setState(taskId, "missed", { reason: "challenge window ended before the check" });
      this.actions.inc({ action: "missed" });
      return;
    }
    if (!(await this.isEligible())) return;
    const started = Date.now();
    const mine = await this.reexecute(row, submitted);
    if (!mine) return;
    const match =
      mine.length === posted.outputs.length && mine.every((w, i) => w.toString() === posted.outputs[i]);
    posted.match = match;
    if (match) {
      const attesters = await attestersOf(this.reader, taskId, posted.block);
      if (attesters.includes(this.address))
        return this.markAttested({ ...row, proof: JSON.stringify(posted) });
      // Kept until the window ends: a result whose node went silent is finalised by whoever re-executed it
      // (finalizeIfStale), not only by its attesters.
      this.journal.setState(taskId, "matched", {
        proof: JSON.stringify(posted),
        until: posted.windowEnd,
        reason: null,
      });
      this.actions.inc({ action: "matched" });
      this.log.info(
        { taskId: taskId.toString(), node: posted.node, attesters: attesters.length },
        "posted result re-executed: outputs match",
      );
      return;
    }
    if (BigInt(submitted.task.verificationKey as string) !== 0n)
      await this.challengeWithProof(row, submitted, posted, mine, started);
    else await this.challenge(submitted, posted, mine);
  }

  /** What a challenge log line says about a wrong result. */
  private wrongResultContext(taskId: bigint, posted: Posted, mine: bigint[]) {
    return {
      taskId: taskId.toString(),
      node: posted.node,
      posted: posted.outputs,
      reexecuted: mine.map(String),
      // posted although this node refused to sign them off chain
      refusedToSign: this.attestor.refusedToSign(taskId, outputsHash(posted.outputs.map(BigInt))),
    };
  }

  /**
   * A model with a circuit: prove the true outputs (`mine`) on the task's input, bound to this node
   * (`taskBinding(taskId, us)`), with the bundle's zkey, and send them with the proof to
   * `DisputeManager.challengeWithProof`. The result is rejected, the node and the attesters slashed, and we
   * are paid the beneficiary share of the node's collateral, all in that transaction: no bond, no wait. A
   * bundle whose key is not the registered one, or whose proof does not carry what the executor computed, is
   * refused (the challenge could not succeed, or our re-execution is not what the circuit proves).
   */
  private async challengeWithProof(
    row: TaskRow,
    submitted: SubmittedTask,
    posted: Posted,
    mine: bigint[],
    started: number,
  ) {
    const taskId = submitted.taskId;
    const disputes = this.chain.disputes;
    const ctx = this.wrongResultContext(taskId, posted, mine);
    if (!disputes) return this.noDisputeManager(taskId, ctx);
    let proved;
    try {
      const model = await this.chain.models.getModel(submitted.modelId);
      const bundle = await this.bundles.get(model);
      await this.servedKeys.check(submitted.modelId, bundle);
      const input = await decodeTaskInput(bundle.manifest, submitted, this.data);
      const binding = BigInt(await this.chain.tasks.taskBinding(taskId, this.address));
      proved = await this.prover().proveTask(bundle.dir, input, binding, mine);
    } catch (err) {
      if (!OptimisticVerifier.isRefusal(err)) throw err;
      this.log.error(
        { ...ctx, reason: (err as Error).message },
        "posted result is WRONG but cannot be proved so",
      );
      return this.refuse(row, err as Error, "cannot prove the true outputs");
    }
    this.seconds.observe({ stage: "prove" }, proved.ms / 1000);
    const attesters = await attestersOf(this.reader, taskId, posted.block);
    const data = disputes.interface.encodeFunctionData("challengeWithProof", [
      taskId,
      submitted.task,
      outputsHash(posted.outputs.map(BigInt)),
      attesters,
      submitted.input,
      mine,
      proved.proof,
    ]);
    const receipt = await this.submitter.send("challenge-proof", await disputes.getAddress(), data, taskId);
    if (!receipt) return;
    const totalMs = Date.now() - started;
    this.seconds.observe({ stage: "total" }, totalMs / 1000);
    posted.challenger = this.address;
    posted.circuit = true;
    this.journal.setState(taskId, "won", {
      proof: JSON.stringify(posted),
      reason: "proved the posted result wrong",
    });
    await this.recordReceipt(taskId, receipt.hash, receipt);
    this.actions.inc({ action: "challenged" });
    this.actions.inc({ action: "won" });
    this.log.warn(
      {
        ...ctx,
        tx: receipt.hash,
        attesters,
        proveMs: proved.ms,
        totalMs,
        gasUsed: receipt.gasUsed.toString(),
        amounts: this.amountsOf(taskId),
      },
      "posted result is WRONG: proved the true outputs and challenged: result rejected, node slashed",
    );
  }

  private noDisputeManager(taskId: bigint, ctx: object) {
    this.log.error(
      ctx,
      'posted result is WRONG but the deployment has no "disputes" address: cannot challenge',
    );
    this.journal.setState(taskId, "missed", { reason: "no dispute manager to challenge with" });
  }

  /** A model without a circuit: challenge with the bond (max(challengeBond, fee)); a vote decides. */
  private async challenge(submitted: SubmittedTask, posted: Posted, mine: bigint[]) {
    const taskId = submitted.taskId;
    const disputes = this.chain.disputes;
    const ctx = this.wrongResultContext(taskId, posted, mine);
    if (!disputes) return this.noDisputeManager(taskId, ctx);
    const disputesAddress = await disputes.getAddress();
    const governed = await disputes.challengeBond();
    const fee = BigInt(submitted.task.fee);
    const bond = fee > governed ? fee : governed;
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
      if (parsed?.name === "DisputeOpened") deadline = Number(parsed.args.deadline);
    }
    Object.assign(posted, { challenger: this.address, circuit: false, nodeRight: false });
    this.journal.setState(taskId, "challenged", { proof: JSON.stringify(posted), until: deadline });
    this.actions.inc({ action: "challenged" });
    this.log.warn(
      { ...ctx, tx: receipt.hash, bond: bond.toString(), deadline },
      "posted result is WRONG: challenged (bond paid); verification nodes vote until the deadline",
    );
  }

  /**
   * A result we attested or re-executed to the same outputs, still pending `finalizeAfterSeconds` after its
   * window: finalise it ourselves (its node may be down; anyone may finalise).
   */
  private async finalizeIfStale(row: TaskRow, submitted: SubmittedTask, now: number) {
    if (row.until === null || now <= row.until + this.opts.finalizeAfterSeconds) return;
    const taskId = submitted.taskId;
    const posted = this.posted(row);
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
    this.log.info({ taskId: taskId.toString(), tx: receipt.hash }, "checked result finalised");
  }

  /**
   * A dispute decided by vote (`challenged`: ours; `disputed`/`voted`: someone else's): vote while it is open
   * (once, by our re-execution), and once its deadline has passed resolve it (anyone may) and settle.
   */
  private async followDispute(row: TaskRow, submitted: SubmittedTask, now: number) {
    const disputes = this.chain.disputes!;
    const taskId = submitted.taskId;
    const posted = this.posted(row);
    if (row.until === null) return;
    if (now <= row.until) {
      if (row.state === "disputed" && posted.circuit === false) await this.vote(row, submitted, posted);
      return;
    }
    const dispute = await disputes.disputeOf(taskId);
    if (Number(dispute.state) === DISPUTE_OPEN) {
      const attesters = await attestersOf(this.reader, taskId, posted.block);
      const data = disputes.interface.encodeFunctionData("resolveVote", [
        taskId,
        submitted.task,
        posted.outputs.map(BigInt),
        attesters,
      ]);
      const receipt = await this.submitter.send("resolve", await disputes.getAddress(), data, taskId);
      if (!receipt) return;
      this.actions.inc({ action: "resolved" });
      this.log.info({ taskId: taskId.toString(), tx: receipt.hash }, "vote resolved after its deadline");
    }
    this.journal.setState(taskId, "settling", { reason: "vote resolved" });
    await this.settleBallots(this.journal.task(taskId)!);
  }

  /**
   * Vote on someone else's dispute over a model without a circuit by our own re-execution: node right
   * exactly when its posted words are ours (so a result we attested and re-executed correctly gets our
   * vote). Not possible when we staked since the dispute opened (weights are as staked at the opening).
   */
  private async vote(row: TaskRow, submitted: SubmittedTask, posted: Posted) {
    const taskId = submitted.taskId;
    const disputes = this.chain.disputes!;
    if (posted.cannotVote || !(await this.isEligible())) return;
    if (posted.match === undefined) {
      const mine = await this.reexecute(row, submitted);
      if (!mine) return;
      posted.match =
        mine.length === posted.outputs.length && mine.every((w, i) => w.toString() === posted.outputs[i]);
    }
    const ballot = await disputes.ballotOf(taskId, this.address);
    if (Number(ballot.side) !== 0) {
      // Cast before a restart: the chain remembers it.
      posted.nodeRight = Number(ballot.side) === SIDE_NODE_RIGHT;
      return this.journal.setState(taskId, "voted", { proof: JSON.stringify(posted) });
    }
    const dispute = await disputes.disputeOf(taskId);
    const stakedAt = await this.chain.staking.lastStakedAt(this.address);
    if (stakedAt >= dispute.openedAt) {
      posted.cannotVote = `staked at ${stakedAt}, since the dispute opened at ${dispute.openedAt}`;
      this.journal.setState(taskId, "disputed", { proof: JSON.stringify(posted), reason: posted.cannotVote });
      this.log.warn({ taskId: taskId.toString(), reason: posted.cannotVote }, "cannot vote on this dispute");
      return;
    }
    const data = disputes.interface.encodeFunctionData("vote", [taskId, posted.match]);
    const receipt = await this.submitter.send("vote", await disputes.getAddress(), data, taskId);
    if (!receipt) return;
    posted.nodeRight = posted.match;
    this.journal.setState(taskId, "voted", { proof: JSON.stringify(posted) });
    this.actions.inc({ action: "voted" });
    this.log.info(
      { taskId: taskId.toString(), nodeRight: posted.match, tx: receipt.hash },
      "voted on a dispute",
    );
  }

  /**
   * A resolved vote: settle what our ballot is owed and end in the matching state. A winning ballot first
   * settles the losing ballots not yet settled (the heaviest MAX_LOSER_SETTLEMENTS: their slashes are the
   * winners' pay), then itself while it is owed anything (`won`); a losing ballot is left to whoever settles it
   * (`lost`; the slash is recorded when it happens); an undecided vote moves nothing (`undecided`). Without a
   * ballot of ours the task ends by its outcome.
   */
  private async settleBallots(row: TaskRow) {
    const disputes = this.chain.disputes!;
    const taskId = BigInt(row.taskId);
    const posted = this.posted(row);
    const dispute = await disputes.disputeOf(taskId);
    if (Number(dispute.state) !== DISPUTE_RESOLVED) return;
    const outcome = DISPUTE_OUTCOME[Number(dispute.outcome)];
    const ballot = dispute.circuit ? undefined : await disputes.ballotOf(taskId, this.address);
    if (!ballot || Number(ballot.side) === 0) {
      const [state, reason] = this.outcomeState(row, posted, outcome);
      return this.finish(row, state, reason);
    }
    posted.nodeRight = Number(ballot.side) === SIDE_NODE_RIGHT;
    if (outcome === "Undecided") {
      this.journal.setState(taskId, row.state, { proof: JSON.stringify(posted) });
      return this.finish(row, "undecided", "the vote decided nothing: bond back, nobody slashed");
    }
    const won = posted.nodeRight === (outcome === "NodeRight");
    if (!won) {
      this.journal.setState(taskId, row.state, { proof: JSON.stringify(posted) });
      const attestedWrong = outcome === "NodeWrong" && posted.attested;
      return this.finish(
        row,
        attestedWrong ? "slashed" : "lost",
        attestedWrong ? "we attested a result the vote found wrong" : `our ballot lost (${outcome})`,
      );
    }
    // Back here after a later loser's settlement: only collect what it brought.
    const topUp = posted.losersSettled === true;
    if (!topUp) {
      await this.settleLosers(taskId, posted, !posted.nodeRight);
      posted.losersSettled = true;
      this.journal.setState(taskId, "settling", { proof: JSON.stringify(posted) });
    }
    if ((await disputes.rewardOf(taskId, this.address)) > 0n) {
      const data = disputes.interface.encodeFunctionData("settleBallot", [taskId, this.address]);
      const receipt = await this.submitter.send("settle", await disputes.getAddress(), data, taskId);
      if (!receipt) return;
      this.actions.inc({ action: "settled" });
    }
    const reason = `our ballot won (${outcome})`;
    if (topUp) this.journal.setState(taskId, "won", { reason });
    else this.finish(this.journal.task(taskId)!, "won", reason);
  }

  /** Settle the losing ballots (`loserSaidNodeRight`'s side) of a resolved vote not settled yet, heaviest first. */
  private async settleLosers(taskId: bigint, posted: Posted, loserSaidNodeRight: boolean) {
    const disputes = this.chain.disputes!;
    const logs = await this.chain.provider.getLogs({
      address: await disputes.getAddress(),
      topics: [TOPICS.disputeVoted, toBeHex(taskId, 32)],
      fromBlock: posted.block,
      toBlock: "latest",
    });
    const losers = logs
      .map((l) => disputes.interface.parseLog(l)!)
      .filter((p) => p.args.nodeRight === loserSaidNodeRight && p.args.weight > 0n)
      .sort((a, b) => (b.args.weight > a.args.weight ? 1 : b.args.weight < a.args.weight ? -1 : 0))
      .slice(0, MAX_LOSER_SETTLEMENTS);
    for (const loser of losers) {
      const voter: string = loser.args.voter;
      if ((await disputes.ballotOf(taskId, voter)).settled) continue;
      const data = disputes.interface.encodeFunctionData("settleBallot", [taskId, voter]);
      try {
        const receipt = await this.submitter.send("settle-loser", await disputes.getAddress(), data, taskId);
        if (!receipt) return;
        this.log.info({ taskId: taskId.toString(), voter, tx: receipt.hash }, "losing ballot settled");
      } catch (err) {
        // Settled by someone else meanwhile: nothing lost, go on with the next.
        if (!(err instanceof RevertedError)) throw err;
      }
    }
  }
}
