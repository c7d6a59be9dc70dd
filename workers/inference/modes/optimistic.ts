/**
 * The optimistic mode's steps of the inference node: claiming a task (`claim`), posting its result with the
 * quorum of attestations signed off chain by verification nodes (`postOptimistic`, `awaitQuorum`,
 * `gatherAttestations`, `attestationUrls`; `recoverPosted` reads a posted result back from the chain), and
 * finalising it after the challenge window (`finalizeIfDue`). Also the take-over of other nodes' lapsed claims
 * (`stateForClaimNotHeld`, `onForeignClaim`, `takeOverLapsedClaims`): only optimistic tasks are claimed.
 */
import { toBeHex } from "ethers";
import { packValues } from "../../../zkml";
import type { TaskRow } from "../../runtime/journal";
import { RevertedError } from "../../runtime/submitter";
import { taskFromJson, taskRegistryInterface, TOPICS, type SubmittedTask } from "../../runtime/tasks";
import { attestersOf, corruptOutputWords, outputsHash } from "../../runtime/optimistic";
import { gatherAttestations, isHttpEndpoint, type Attestation } from "../attestations";
import { PipelineStop, type ModeContext, type Prepared } from "./context";

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

/** First wait before asking again for the attestations an optimistic result lacks; doubled up to the max. */
const ATTEST_RETRY_MS = 2_000;
const ATTEST_RETRY_MAX_MS = 30_000;
/** Seconds kept between the last try at posting an optimistic result and its claim's expiry (mining time). */
const POST_MARGIN_SECONDS = 30;

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

/** The optimistic mode: claims, attestations, posted results and their finalisation, claim take-over. */
export class OptimisticMode {
  /** attestUrls auto: eligible verification nodes' registered endpoints, and when they were read. */
  private verifiers?: { urls: string[]; at: number };
  /** Verification nodes' URLs that did not answer (refused connection, timed out), and when: asked last. */
  private readonly unanswered = new Map<string, number>();

  constructor(private readonly ctx: ModeContext) {}

  // ---------------------------------------------------------------- claim take-over

  /**
   * The state of a task whose claim this node does not hold (another node's, or our own that lapsed) and
   * that lapses at `expiresAt`: watched when the task can be taken over after it (take-over is on and
   * enough time would be left before the deadline), else given up.
   */
  stateForClaimNotHeld(row: TaskRow, expiresAt: number): ["watching", number] | ["lost", undefined] {
    const deadline = Number(taskFromJson(row.data).task.deadline);
    if (this.ctx.config.takeOverClaims && expiresAt + this.ctx.config.deadlineMarginSeconds < deadline) {
      return ["watching", expiresAt];
    }
    return ["lost", undefined];
  }

  /** Another node claimed a task this node tracks: watch the claim for a lapse, or give the task up. */
  onForeignClaim(row: TaskRow, node: string, expiresAt: number) {
    const taskId = BigInt(row.taskId);
    const [next, until] = this.stateForClaimNotHeld(row, expiresAt);
    const reason = `claimed by ${node} until ${expiresAt}`;
    this.ctx.journal.setState(taskId, next, { reason, ...(until !== undefined ? { until } : {}) });
    if (next === "watching") {
      this.ctx.log.info(
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
  async takeOverLapsedClaims() {
    const watching = this.ctx.journal.tasksIn("watching");
    if (watching.length === 0) return;
    const now = (await this.ctx.chain.provider.getBlock("latest"))!.timestamp;
    for (const row of watching) {
      if (row.until === null || now <= row.until) continue;
      this.ctx.journal.setState(BigInt(row.taskId), "seen", { reason: `claim lapsed at ${row.until}` });
      this.ctx.log.info(
        { taskId: row.taskId, claimExpiredAt: row.until },
        "claim lapsed: taking the task over",
      );
    }
  }

  // ---------------------------------------------------------------- claim, post, finalise

  async claim(submitted: SubmittedTask) {
    const started = Date.now();
    const data = this.ctx.chain.tasks.interface.encodeFunctionData("claimTask", [
      submitted.taskId,
      submitted.task,
    ]);
    const receipt = await this.ctx.submitter.send(
      "claim",
      await this.ctx.chain.tasks.getAddress(),
      data,
      submitted.taskId,
    );
    this.ctx.metrics.seconds.observe({ stage: "chain" }, (Date.now() - started) / 1000);
    if (!receipt) {
      // Dry run: everything up to the claim was done; park the task instead of simulating it every poll.
      this.ctx.journal.setState(submitted.taskId, "skipped", { reason: "dry run: would claim" });
      throw new PipelineStop();
    }
    this.ctx.journal.setState(submitted.taskId, "claimed", { reason: null });
    this.ctx.log.info({ taskId: submitted.taskId.toString(), tx: receipt.hash }, "task claimed");
  }

  /**
   * Post the executor's outputs without a proof (submitResultOptimistic) with the task's quorum of
   * attestations signed off chain: the claim collateral stays locked as the node's bond until the result is
   * final, and the node never proves anything (a challenger proves a lie wrong itself). A result posted
   * short of its quorum could never be finalised (expireUnattested would slash the collateral and reopen the
   * task), so without the quorum the node does not post: it asks again, waiting longer each time
   * (`awaitQuorum`), until too little of its claim is left, then gives the task up.
   */
  async postOptimistic(submitted: SubmittedTask, prepared: Prepared) {
    const taskId = submitted.taskId;
    const layout = prepared.bundle.manifest.publicSignals;
    let outputs = packValues(prepared.outputs, layout.packBits);
    const every = BigInt(this.ctx.config.faultLieEvery);
    const lied = every > 0n && taskId % every === 0n;
    if (lied) {
      outputs = corruptOutputWords(outputs, prepared.outputs.length, layout.packBits);
      this.ctx.log.warn(
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
    const data = this.ctx.chain.tasks.interface.encodeFunctionData("submitResultOptimistic", [
      taskId,
      submitted.task,
      outputs,
      attestations.map((a) => a.signature),
    ]);
    let receipt;
    try {
      receipt = await this.ctx.submitter.send("post", await this.ctx.chain.tasks.getAddress(), data, taskId);
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
    this.ctx.attestRetry.delete(taskId.toString());
    this.ctx.metrics.seconds.observe({ stage: "chain" }, (Date.now() - started) / 1000);
    if (!receipt) return;
    let windowEnd = 0;
    for (const log of receipt.logs) {
      const parsed = taskRegistryInterface.parseLog(log);
      if (parsed?.name === "TaskResultPosted") windowEnd = Number(parsed.args.windowEnd);
    }
    const posted: PostedResult = { outputs: outputs.map(String), block: receipt.blockNumber, lied };
    this.ctx.journal.setState(taskId, "posted", {
      proof: JSON.stringify(posted),
      until: windowEnd,
      reason: null,
    });
    let attested = 0;
    for (const log of receipt.logs) if (log.topics[0] === TOPICS.attested) attested++;
    this.ctx.metrics.results.inc({ mode: "optimistic", outcome: "posted" });
    this.ctx.log.info(
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
    const [, expiresAt] = await this.ctx.chain.tasks.claimOf(taskId);
    const now = (await this.ctx.chain.provider.getBlock("latest"))!.timestamp;
    const delayMs = nextQuorumAttempt({
      previousDelayMs: this.ctx.attestRetry.get(key)?.delayMs,
      now,
      claimExpiresAt: Number(expiresAt),
      attestTimeoutMs: this.ctx.config.attestTimeoutMs,
    });
    const ctx = { taskId: key, claimExpiresAt: Number(expiresAt), why };
    if (delayMs === undefined) {
      this.ctx.attestRetry.delete(key);
      this.ctx.journal.setState(taskId, "failed", {
        reason: `not posted: ${why} before the claim expires at ${expiresAt}`,
      });
      this.ctx.metrics.results.inc({ mode: "optimistic", outcome: "unattested" });
      this.ctx.log.error(
        ctx,
        "optimistic result NOT posted: the task's quorum of attestations could not be gathered before the " +
          "claim expires (a result posted without it could only be expired, its collateral slashed); the " +
          "claim will lapse",
      );
      return;
    }
    this.ctx.attestRetry.set(key, { at: Date.now() + delayMs, delayMs, prepared });
    this.ctx.log.warn(
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
      const digest = await this.ctx.chain.tasks.attestationDigest(
        submitted.taskId,
        this.ctx.address,
        outputsHash(outputs),
      );
      const started = Date.now();
      const { attestations, refused } = await gatherAttestations(
        { taskId: submitted.taskId, node: this.ctx.address, outputs },
        {
          urls,
          wanted: Number(submitted.task.attestationQuorum),
          timeoutMs: this.ctx.config.attestTimeoutMs,
          digest,
          eligible: (address) => this.ctx.chain.staking.isEligible(address, VERIFICATION_ROLE),
        },
      );
      this.ctx.metrics.seconds.observe({ stage: "attest" }, (Date.now() - started) / 1000);
      for (const r of refused) if (r.status === undefined) this.unanswered.set(r.url, Date.now());
      const fields = { ...ctx, attesters: attestations.map((a) => a.attester), refused };
      if (refused.length > 0) this.ctx.log.warn(fields, "attestations gathered off chain (some refused)");
      else this.ctx.log.info(fields, "attestations gathered off chain");
      return attestations;
    } catch (err) {
      this.ctx.log.warn({ ...ctx, err: (err as Error).message }, "gathering attestations failed");
      return [];
    }
  }

  /** The base URLs to ask for attestations: `attestUrls`, or (auto) eligible verification nodes' endpoints. */
  private async attestationUrls(): Promise<string[]> {
    const setting = this.ctx.config.attestUrls;
    if (setting === "none") return [];
    // Those that did not answer lately are asked last, so a dead endpoint does not hold up every post.
    const answering = (urls: string[]) => {
      const late = (url: string) => Date.now() - (this.unanswered.get(url) ?? 0) < VERIFIERS_TTL_MS;
      return [...urls.filter((u) => !late(u)), ...urls.filter(late)];
    };
    if (setting !== "auto") return answering(setting);
    if (this.verifiers && Date.now() - this.verifiers.at < VERIFIERS_TTL_MS)
      return answering(shuffled(this.verifiers.urls));
    const staking = this.ctx.chain.staking;
    const nodes = await staking.nodesByRole(VERIFICATION_ROLE, 0, MAX_VERIFIERS_LISTED);
    const urls: string[] = [];
    for (const address of nodes) {
      if (address === this.ctx.address) continue;
      if (!(await staking.isEligible(address, VERIFICATION_ROLE))) continue;
      const { endpoint } = await staking.nodeInfo(address);
      if (isHttpEndpoint(endpoint)) urls.push(endpoint);
    }
    this.verifiers = { urls, at: Date.now() };
    return answering(shuffled(urls));
  }

  /** The posted result of `taskId` (its TaskResultPosted log, from `fromBlock` on) back into the journal. */
  async recoverPosted(taskId: bigint, fromBlock: number) {
    const logs = await this.ctx.chain.provider.getLogs({
      address: this.ctx.deployment.tasks,
      topics: [TOPICS.posted, toBeHex(taskId, 32)],
      fromBlock,
      toBlock: "latest",
    });
    const log = logs[logs.length - 1];
    if (!log) throw new Error(`task ${taskId} is pending but its TaskResultPosted log was not found`);
    const parsed = taskRegistryInterface.parseLog(log)!;
    const posted: PostedResult = { outputs: parsed.args.outputs.map(String), block: log.blockNumber };
    this.ctx.journal.setState(taskId, this.ctx.journal.task(taskId)!.state, {
      proof: JSON.stringify(posted),
    });
  }

  /**
   * After the challenge window: finalise the result with the attesters fixed at posting (the fee is split,
   * the collateral released). A result short of its quorum (posted before this node waited for one) can only
   * be expired: expireUnattested slashes the claim collateral to the treasury and gives the task back to the
   * market (TaskReopened, then it is claimable again, by this node too) or, past its deadline, refunds the
   * requester. Anyone may send it; the node does, so the task does not sit unsettled.
   */
  async finalizeIfDue(submitted: SubmittedTask, row: TaskRow) {
    const taskId = submitted.taskId;
    const posted = JSON.parse(row.proof!) as PostedResult;
    const outputs = posted.outputs.map(BigInt);
    const attesters = await attestersOf(
      { provider: this.ctx.chain.provider, tasksAddress: this.ctx.deployment.tasks },
      taskId,
      posted.block,
    );
    const quorum = Number(submitted.task.attestationQuorum);
    const registry = await this.ctx.chain.tasks.getAddress();
    if (attesters.length >= quorum) {
      const data = this.ctx.chain.tasks.interface.encodeFunctionData("finalizeResult", [
        taskId,
        submitted.task,
        outputs,
        attesters,
      ]);
      const receipt = await this.ctx.submitter.send("finalize", registry, data, taskId);
      if (!receipt) return;
      this.ctx.settled(taskId, receipt, null, { mode: "optimistic", outcome: "finalized" });
      this.ctx.log.info(
        { taskId: taskId.toString(), tx: receipt.hash, attesters: attesters.length },
        "optimistic result finalised",
      );
    } else {
      const data = this.ctx.chain.tasks.interface.encodeFunctionData("expireUnattested", [
        taskId,
        submitted.task,
        outputsHash(outputs),
        attesters,
      ]);
      const receipt = await this.ctx.submitter.send("expire-unattested", registry, data, taskId);
      if (!receipt) return;
      const reopened = receipt.logs.some((l) => l.topics[0] === TOPICS.reopened);
      this.ctx.journal.setState(taskId, "expired", {
        reason:
          `${attesters.length} of ${quorum} attestations when the window closed: collateral slashed, ` +
          (reopened ? "task reopened" : "requester refunded"),
      });
      // The collateral is gone, not released: the free stake is read again all the same.
      this.ctx.recheckEligibility();
      this.ctx.metrics.results.inc({ mode: "optimistic", outcome: "unattested" });
      this.ctx.log.error(
        { taskId: taskId.toString(), attesters: attesters.length, quorum, reopened },
        "optimistic result short of its quorum when its window closed: expired, claim collateral slashed",
      );
    }
  }
}
