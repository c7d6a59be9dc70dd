import { getAddress, getBytes, id, isAddress } from "ethers";
import type { JsonReply } from "../runtime/service";
import { outputsHash, type TaskStatusName } from "../runtime/optimistic";
import { failureClass } from "../runtime/sandbox";
import { modeName, type SubmittedTask } from "../runtime/tasks";

/**
 * The verification node's `POST /attest`: an inference node about to post an optimistic result asks for an
 * attestation signed off chain, which rides with the posted result (`submitResultOptimistic(..., attestations)`)
 * and counts exactly like an on-chain `attest`. The node re-executes the task exactly as it would check a
 * posted result and signs only outputs equal bit for bit to its own.
 *
 * Request: `{ "taskId": "<decimal>", "node": "0x<claimer>", "outputs": ["<decimal word>", ...] }`.
 * Replies: 200 `{ attester, signature }` (EIP-191 signature of `attestationDigest(taskId, node, outputsHash)`);
 * 400 malformed; 404 unknown task, or a model this node does not watch; 409 `outputs differ`, or a task that is
 * not an optimistic task claimed by `node`; 422 a task whose bundle or input this node refuses; 503 this node
 * cannot attest now (not an eligible verification node, or the optimistic mode is off).
 *
 * Work is bounded: a task is re-executed at most once (its words are kept), and only for a task claimed on
 * chain by the asking node, with exactly the model's number of output words; replies are cached per
 * (task content, node, outputs hash). The reply to outputs that differ does not say what the right outputs
 * are, so asking is no way to get a result computed for free.
 *
 * A flood costs no more than one request: the task's claim is read from the chain at most once per task
 * every CHANGING_REFUSAL_MS (and never again once the task is Verified, Expired or Rejected, states it
 * cannot leave), so requests varying the node or the outputs of one task cost no chain call; a refused
 * re-execution (a bundle, input or model this node will not run) is remembered for REFUSED_EXECUTION_MS, a
 * failed one for CHANGING_REFUSAL_MS. The node's own words and its signed replies are keyed by the task's
 * content (its committed Task, model and input), not its id alone: after a reorg that gives the id other
 * content, nothing computed for the old content is reused.
 */

/** Most output words a request may carry before the task is even looked up (the registry's own cap is far lower). */
export const MAX_REQUEST_OUTPUT_WORDS = 1024;
/** Replies and re-executions kept (oldest dropped first). */
const CACHE_ENTRIES = 4096;
/**
 * How long an answer that can change is remembered: a task's claim status (a task not claimed yet, or
 * claimed by another node whose claim may lapse), a re-execution that failed for a reason that may pass.
 */
export const CHANGING_REFUSAL_MS = 2_000;
/** How long a re-execution this node refuses (bundle, input, compiler, execution policy) is remembered. */
export const REFUSED_EXECUTION_MS = 60_000;
/** Task states a task never leaves: a refusal because of them is final. */
const FINAL_STATUSES: ReadonlySet<TaskStatusName> = new Set(["Verified", "Expired", "Rejected"]);
/** The largest uint256. */
const UINT256_MAX = (1n << 256n) - 1n;

export interface AttestRequest {
  taskId: bigint;
  node: string;
  outputs: bigint[];
}

/** An error reply of the endpoint: its HTTP status and message (and fields that explain it). */
export class AttestRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "AttestRefusal";
  }
}

const DECIMAL = /^(0|[1-9][0-9]{0,77})$/;

function uint(value: unknown, what: string): bigint {
  if (typeof value !== "string" || !DECIMAL.test(value)) {
    throw new AttestRefusal(400, `${what} must be a decimal string`);
  }
  const n = BigInt(value);
  if (n > UINT256_MAX) throw new AttestRefusal(400, `${what} does not fit in uint256`);
  return n;
}

/** The request in `body`, or an AttestRefusal(400) saying what is wrong with it. */
export function parseAttestRequest(body: unknown): AttestRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new AttestRefusal(400, 'body must be a JSON object { "taskId", "node", "outputs" }');
  }
  const { taskId, node, outputs } = body as Record<string, unknown>;
  if (typeof node !== "string" || !isAddress(node)) throw new AttestRefusal(400, "node must be an address");
  if (!Array.isArray(outputs) || outputs.length === 0) {
    throw new AttestRefusal(400, "outputs must be a non-empty array of decimal strings");
  }
  if (outputs.length > MAX_REQUEST_OUTPUT_WORDS) {
    throw new AttestRefusal(400, `outputs: at most ${MAX_REQUEST_OUTPUT_WORDS} words`);
  }
  return {
    taskId: uint(taskId, "taskId"),
    node: getAddress(node),
    outputs: outputs.map((w, i) => uint(w, `outputs[${i}]`)),
  };
}

/** What the endpoint needs from the node: chain reads, the node's re-execution and its key. */
export interface AttestDeps {
  /** The node's key: signs EIP-191 personal messages. */
  signer: { address: string; signMessage(message: Uint8Array): Promise<string> };
  /** Why this node cannot attest now (503), or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** The task's status, and the node holding its claim while it is Claimed. */
  claim(taskId: bigint): Promise<{ status: TaskStatusName; node?: string }>;
  /** The task's TaskSubmitted (its committed Task and input), or undefined when there is none. */
  lookup(taskId: bigint): Promise<SubmittedTask | undefined>;
  /** Whether this node watches the model. */
  wanted(modelId: bigint): boolean;
  /**
   * The model's output words on the task's input by this node's own execution (a BundleRejectedError,
   * InputRejectedError or ZkmlError when the task cannot be checked).
   */
  reexecute(submitted: SubmittedTask): Promise<bigint[]>;
  /** The registry's attestationDigest(taskId, node, outputsHash). */
  digest(taskId: bigint, node: string, outputsHash: string): Promise<string>;
}

/** What the endpoint concluded about a request it answered (for the node's log and metrics). */
export interface AttestOutcome {
  taskId: bigint;
  node: string;
  outputsHash: string;
  signed: boolean;
}

/**
 * Whether `err` says this node will not re-execute the task (422: its bundle, input or compiler refused, or the
 * model over the node's execution policy or limits), rather than that it failed this time: the nodes' one
 * classification of failures (sandbox.ts).
 */
export function isExecutionRefusal(err: unknown): err is Error {
  return failureClass(err) === "refuse";
}

/** A JSON value with object keys sorted and every number as a decimal string: one text per content. */
function canonical(value: unknown): unknown {
  if (typeof value === "bigint" || typeof value === "number") return value.toString();
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/**
 * A key for what a task is: keccak256 of its id, model, committed Task and input words. Two tasks with one
 * id (the same id before and after a reorg) have different keys unless their content is the same.
 */
export function taskContentKey(submitted: SubmittedTask): string {
  const { taskId, modelId, task, input } = submitted;
  return id(JSON.stringify(canonical({ taskId, modelId, task, input })));
}

/** A cached promise and until when it holds (ms since the epoch). */
interface Timed<T> {
  value: Promise<T>;
  until: number;
}

/** A Map that forgets its oldest entries past `max`. */
class Bounded<V> extends Map<string, V> {
  constructor(private readonly max: number) {
    super();
  }
  override set(key: string, value: V) {
    super.set(key, value);
    if (this.size > this.max) this.delete(this.keys().next().value as string);
    return this;
  }
}

export class Attestor {
  /**
   * Per task content: this node's output words (one execution per task, shared with the on-chain check),
   * or the refusal or failure of that execution while it is remembered.
   */
  private readonly words = new Bounded<Timed<bigint[]>>(CACHE_ENTRIES);
  /** Per task id: its claim status as last read, until it may have changed. */
  private readonly claims = new Bounded<Timed<{ status: TaskStatusName; node?: string }>>(CACHE_ENTRIES);
  /** Per (task content, node, outputs hash): the reply given. */
  private readonly replies = new Bounded<Promise<JsonReply>>(CACHE_ENTRIES);
  /** Per task id: the outputs hashes this node refused to sign (it challenges them if they are posted). */
  private readonly refused = new Bounded<Set<string>>(CACHE_ENTRIES);
  /** Per task id: the outputs hashes this node signed. */
  private readonly signed = new Bounded<Set<string>>(CACHE_ENTRIES);

  constructor(
    private readonly deps: AttestDeps,
    private readonly onOutcome: (outcome: AttestOutcome) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * This node's output words for `submitted`, executed once per task content whoever asks (the endpoint or
   * the watcher). A refusal is remembered for REFUSED_EXECUTION_MS, another failure for CHANGING_REFUSAL_MS:
   * a flood of requests for a task that cannot be run does not run (or download) it again each time.
   */
  wordsOf(submitted: SubmittedTask): Promise<bigint[]> {
    const key = taskContentKey(submitted);
    const known = this.words.get(key);
    if (known && known.until > this.now()) return known.value;
    const entry: Timed<bigint[]> = { value: this.deps.reexecute(submitted), until: Infinity };
    this.words.set(key, entry);
    entry.value.catch((err) => {
      entry.until = this.now() + (isExecutionRefusal(err) ? REFUSED_EXECUTION_MS : CHANGING_REFUSAL_MS);
    });
    return entry.value;
  }

  /**
   * The task's claim status, read from the chain at most once per CHANGING_REFUSAL_MS per task, and never
   * again once it is in a state it cannot leave. A failed read is not kept (the request is answered 503).
   */
  private claimOf(taskId: bigint): Promise<{ status: TaskStatusName; node?: string }> {
    const key = taskId.toString();
    const known = this.claims.get(key);
    if (known && known.until > this.now()) return known.value;
    const entry: Timed<{ status: TaskStatusName; node?: string }> = {
      value: this.deps.claim(taskId),
      until: this.now() + CHANGING_REFUSAL_MS,
    };
    this.claims.set(key, entry);
    entry.value.then(
      (claim) => {
        if (FINAL_STATUSES.has(claim.status)) entry.until = Infinity;
      },
      () => {
        if (this.claims.get(key) === entry) this.claims.delete(key);
      },
    );
    return entry.value;
  }

  /** Whether this node refused to sign `hash` as the outputs of `taskId`. */
  refusedToSign(taskId: bigint, hash: string): boolean {
    return this.refused.get(taskId.toString())?.has(hash) ?? false;
  }

  /** Whether this node signed `hash` as the outputs of `taskId`. */
  hasSigned(taskId: bigint, hash: string): boolean {
    return this.signed.get(taskId.toString())?.has(hash) ?? false;
  }

  /** The endpoint: a parsed JSON body (undefined when it was not JSON) to a reply. */
  async handle(body: unknown): Promise<JsonReply> {
    let request: AttestRequest;
    try {
      request = parseAttestRequest(body);
    } catch (err) {
      return refusalReply(err);
    }
    const why = await this.deps.unavailable();
    if (why) return { status: 503, body: { error: why } };
    let submitted: SubmittedTask;
    try {
      submitted = await this.claimedTask(request);
    } catch (err) {
      return refusalReply(err);
    }
    const hash = outputsHash(request.outputs);
    const key = `${taskContentKey(submitted)}:${request.node}:${hash}`;
    const cached = this.replies.get(key);
    if (cached) return cached;
    const reply = this.answer(request, submitted, hash).catch(refusalReply);
    this.replies.set(key, reply);
    // Only final answers are kept here (a signature, outputs that differ): the refusals that can change are
    // remembered, for as long as they hold, by the caches of claims and executions they come from.
    reply.then(
      (r) => {
        if (r.status !== 200 && !(r.status === 409 && r.body.error === "outputs differ"))
          this.replies.delete(key);
      },
      () => this.replies.delete(key),
    );
    return reply;
  }

  /** The task `request` names, claimed by the asking node; an AttestRefusal when it is not. */
  private async claimedTask({ taskId, node }: AttestRequest): Promise<SubmittedTask> {
    if (node === getAddress(this.deps.signer.address)) {
      throw new AttestRefusal(409, "a node cannot attest its own result");
    }
    // The status first (one call, cached): only a claimed task is looked up and executed.
    const unreadable = () =>
      new AttestRefusal(503, "cannot read the task from the chain now; ask again later");
    const claim = await this.claimOf(taskId).catch(() => {
      throw unreadable();
    });
    if (claim.status === "None") throw new AttestRefusal(404, `unknown task ${taskId}`);
    if (claim.status !== "Claimed") {
      throw new AttestRefusal(409, `task ${taskId} is ${claim.status}, not Claimed`, {
        status: claim.status,
      });
    }
    if (!claim.node || getAddress(claim.node) !== node) {
      throw new AttestRefusal(409, `task ${taskId} is not claimed by ${node}`, {
        claimer: claim.node ?? null,
      });
    }
    const submitted = await this.deps.lookup(taskId).catch(() => {
      throw unreadable();
    });
    if (!submitted) throw new AttestRefusal(404, `unknown task ${taskId}`);
    return submitted;
  }

  private async answer(
    { taskId, node, outputs }: AttestRequest,
    submitted: SubmittedTask,
    hash: string,
  ): Promise<JsonReply> {
    if (!this.deps.wanted(submitted.modelId)) {
      throw new AttestRefusal(404, `model ${submitted.modelId} is not watched by this node`);
    }
    const mode = modeName(submitted.task.mode);
    if (mode !== "optimistic") throw new AttestRefusal(409, `task ${taskId} is a ${mode} task`);
    const expected = Number(submitted.task.outputWords);
    if (outputs.length !== expected) {
      throw new AttestRefusal(400, `the model has ${expected} output words, got ${outputs.length}`);
    }
    let mine: bigint[];
    try {
      mine = await this.wordsOf(submitted);
    } catch (err) {
      if (isExecutionRefusal(err)) {
        throw new AttestRefusal(422, `cannot re-execute the task: ${err.message}`);
      }
      throw err;
    }
    const match = mine.length === outputs.length && mine.every((w, i) => w === outputs[i]);
    const id = taskId.toString();
    const detail = { taskId: id, node, outputsHash: hash };
    if (!match) {
      this.refused.set(id, (this.refused.get(id) ?? new Set()).add(hash));
      this.onOutcome({ taskId, node, outputsHash: hash, signed: false });
      // The right outputs are not given away: a node must compute its results itself.
      return { status: 409, body: { error: "outputs differ", ...detail } };
    }
    const digest = await this.deps.digest(taskId, node, hash);
    const signature = await this.deps.signer.signMessage(getBytes(digest));
    this.signed.set(id, (this.signed.get(id) ?? new Set()).add(hash));
    this.onOutcome({ taskId, node, outputsHash: hash, signed: true });
    return { status: 200, body: { attester: getAddress(this.deps.signer.address), signature, ...detail } };
  }
}

function refusalReply(err: unknown): JsonReply {
  if (err instanceof AttestRefusal)
    return { status: err.status, body: { error: err.message, ...err.detail } };
  throw err;
}
