import { getAddress, getBytes, isAddress } from "ethers";
import { ZkmlError } from "../../zkml";
import { BundleRejectedError } from "../runtime/bundles";
import type { JsonReply } from "../runtime/service";
import { outputsHash, type TaskStatusName } from "../runtime/optimistic";
import { InputRejectedError } from "../runtime/task-input";
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
 * (task, node, outputs hash). The reply to outputs that differ does not say what the right outputs are, so
 * asking is no way to get a result computed for free.
 */

/** Most output words a request may carry before the task is even looked up (the registry's own cap is far lower). */
export const MAX_REQUEST_OUTPUT_WORDS = 1024;
/** Replies and re-executions kept (oldest dropped first). */
const CACHE_ENTRIES = 4096;
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
  /** Per task id: this node's output words (one execution per task, shared with the on-chain check). */
  private readonly words = new Bounded<Promise<bigint[]>>(CACHE_ENTRIES);
  /** Per (task, node, outputs hash): the reply given. */
  private readonly replies = new Bounded<Promise<JsonReply>>(CACHE_ENTRIES);
  /** Per task id: the outputs hashes this node refused to sign (it challenges them if they are posted). */
  private readonly refused = new Bounded<Set<string>>(CACHE_ENTRIES);
  /** Per task id: the outputs hashes this node signed. */
  private readonly signed = new Bounded<Set<string>>(CACHE_ENTRIES);

  constructor(
    private readonly deps: AttestDeps,
    private readonly onOutcome: (outcome: AttestOutcome) => void = () => undefined,
  ) {}

  /** This node's output words for `submitted`, executed once per task whoever asks (the endpoint or the watcher). */
  wordsOf(submitted: SubmittedTask): Promise<bigint[]> {
    const key = submitted.taskId.toString();
    let words = this.words.get(key);
    if (!words) {
      words = this.deps.reexecute(submitted);
      this.words.set(key, words);
      // A failure is not kept: the next request or check tries again.
      words.catch(() => this.words.delete(key));
    }
    return words;
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
    const hash = outputsHash(request.outputs);
    const key = `${request.taskId}:${request.node}:${hash}`;
    const cached = this.replies.get(key);
    if (cached) return cached;
    const reply = this.answer(request, hash).catch(refusalReply);
    this.replies.set(key, reply);
    // Only final answers are kept: a refusal that can change (a task not claimed yet, a bundle not
    // fetched) or a failure is asked again next time.
    reply.then(
      (r) => {
        if (r.status !== 200 && !(r.status === 409 && r.body.error === "outputs differ"))
          this.replies.delete(key);
      },
      () => this.replies.delete(key),
    );
    return reply;
  }

  private async answer({ taskId, node, outputs }: AttestRequest, hash: string): Promise<JsonReply> {
    if (node === getAddress(this.deps.signer.address)) {
      throw new AttestRefusal(409, "a node cannot attest its own result");
    }
    // The status first (one call): only a claimed task is looked up and executed.
    const claim = await this.deps.claim(taskId);
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
    const submitted = await this.deps.lookup(taskId);
    if (!submitted) throw new AttestRefusal(404, `unknown task ${taskId}`);
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
      if (
        err instanceof BundleRejectedError ||
        err instanceof InputRejectedError ||
        err instanceof ZkmlError
      ) {
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
