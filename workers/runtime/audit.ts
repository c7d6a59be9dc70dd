import { ethers, toBeHex, type Log, type Provider } from "ethers";
import { DisputeManager__factory, EnclaveRegistry__factory } from "../../typechain-types";
import { dequantizeOutput, executeProgram, packValues } from "../../zkml";
import { groth16Verify } from "../../zkml/prover/groth16";
import { ExecutionRefusedError } from "./execution-errors";
import { snarkjsKeyFromWords, snarkjsProof } from "../../zkml/verification-key";
import { checkEnclaveKey, type KeyCheck } from "../../tee/check-key";
import { DEV_ENCLAVE_MEASUREMENT } from "../../tee/measurement";
import { KEY_STANDINGS, type KeyStandingName } from "../../tee/standings";
import { bytes32ToBundleId } from "../data/bundle-archive";
import type { DataClient } from "../data/client";
import type { AuditSetup, SetupChecks } from "./audit-setup";
import { BundleRejectedError, type BundleCache, type LoadedBundle } from "./bundles";
import type { Chain } from "./chain";
import { decodeTaskInput, InputRejectedError } from "./task-input";
import { parseSubmitted, taskRegistryInterface, TOPICS, type SubmittedTask } from "./tasks";

/** The verification modes of a task (`Task.mode`, one bit of the model's `verificationModes`). */
export const MODE_BITS = { zk: 1, optimistic: 2, tee: 4 } as const;
export type VerificationModeName = keyof typeof MODE_BITS;

/** The name of mode bit `bits`; undefined for anything but exactly one known bit. */
export function modeName(bits: bigint | number | string): VerificationModeName | undefined {
  const n = Number(bits);
  return (Object.keys(MODE_BITS) as VerificationModeName[]).find((m) => MODE_BITS[m] === n);
}

/** The names of the modes in a model's `verificationModes` mask, strongest first (zk, tee, optimistic). */
export function modeNames(mask: bigint | number | string): VerificationModeName[] {
  const n = Number(mask);
  return (["zk", "tee", "optimistic"] as const).filter((m) => (n & MODE_BITS[m]) !== 0);
}

export const disputeManagerInterface = DisputeManager__factory.createInterface();
export const enclaveRegistryInterface = EnclaveRegistry__factory.createInterface();

const topic = (iface: ethers.Interface, name: string) => iface.getEvent(name)!.topicHash;

/** Topics of the optimistic and TEE modes' events (the registry's, the dispute manager's, the enclave registry's). */
export const MODE_TOPICS = {
  resultPosted: topic(taskRegistryInterface, "TaskResultPosted"),
  attested: topic(taskRegistryInterface, "TaskAttested"),
  disputed: topic(taskRegistryInterface, "TaskDisputed"),
  rejected: topic(taskRegistryInterface, "TaskRejected"),
  attestersPaid: topic(taskRegistryInterface, "AttestersPaid"),
  attesterSlashed: topic(disputeManagerInterface, "AttesterSlashed"),
  enclaveSigned: topic(taskRegistryInterface, "TaskEnclaveSigned"),
  disputeOpened: topic(disputeManagerInterface, "DisputeOpened"),
  reopened: topic(taskRegistryInterface, "TaskReopened"),
  claimAbandoned: topic(taskRegistryInterface, "TaskClaimAbandoned"),
  disputeVoted: topic(disputeManagerInterface, "DisputeVoted"),
  disputeResolved: topic(disputeManagerInterface, "DisputeResolved"),
  ballotSettled: topic(disputeManagerInterface, "BallotSettled"),
  keyRegistered: topic(enclaveRegistryInterface, "EnclaveKeyRegistered"),
  keyRevoked: topic(enclaveRegistryInterface, "EnclaveKeyRevoked"),
  keyChallenged: topic(enclaveRegistryInterface, "EnclaveKeyChallenged"),
  keyChallengeResolved: topic(enclaveRegistryInterface, "EnclaveKeyChallengeResolved"),
};

/** `ITaskRegistry.DisputeOutcome` by index. */
export const DISPUTE_OUTCOMES = ["NodeRight", "NodeWrong", "Undecided"] as const;
export type DisputeOutcomeName = (typeof DISPUTE_OUTCOMES)[number];

/** `IEnclaveRegistry.KeyStanding` by index (tee/standings.ts). */
export { KEY_STANDINGS, type KeyStandingName };

/** What the audit found about the enclave key that signed a TEE task's result. */
export interface TeeAudit {
  /** The key the registry recorded (TaskEnclaveSigned). */
  key: string;
  /** The signer recovered here from the submitResultTee calldata's signature over `teeResultDigest`. */
  recovered: string | null;
  /** `recovered` is `key`. */
  signatureMatches: boolean;
  /** The key's EnclaveKeyRegistered event; absent when not found. */
  registration?: {
    node: string;
    measurement: string;
    /** keccak256 of the published attestation document. */
    documentHash: string;
    /** The document hash stored by the registry is the published document's. */
    documentHashMatches: boolean;
    activeFrom: number;
    expiresAt: number;
    block: number;
    tx: string;
  };
  /** The key's standing at the end of the settlement block (null: this RPC serves no state that old). */
  standingAtSettlement: KeyStandingName | null;
  /** The key's standing now. */
  standingNow: KeyStandingName;
  /** The key's measurement is approved now. */
  measurementApprovedNow: boolean;
  /** The measurement is the development enclave's (tee/measurement.ts): no hardware stands behind it. */
  developmentEnclave: boolean;
  /** Governance judged a challenge of the key: `documentValid` false means it found the document forged. */
  challengeResolutions: { block: number; documentValid: boolean }[];
  /**
   * The published attestation document re-checked here (tee/check-key.ts: for a Nitro document its
   * certificate chain to the pinned AWS root at its own time, the PCRs against the measurement, the key it
   * binds, the hash, freshness at registration): `valid`, `development` (evidence of nothing) or `invalid`
   * with the problems. Absent when the registration was not found.
   */
  document?: Pick<KeyCheck, "verdict" | "kind" | "problems" | "notes">;
}

/** What the audit found about an optimistic task's window, attesters and dispute. */
export interface OptimisticAudit {
  /** The node that posted the outputs, and when its challenge window ended (unix seconds). */
  postedBy: string;
  postedBlock: number | null;
  windowEnd: number | null;
  /** Attestations the task needed (frozen at submission). */
  quorum: number;
  /**
   * The attesters the settlement named (and, when verified, paid: AttestersPaid), in order: the set fixed
   * when the outputs were posted (the TaskAttested logs of the posting transaction).
   */
  attesters: string[];
  /** Each attester's share of the fee, when paid. */
  attesterShare?: string;
  /** The dispute, when the outputs were challenged. */
  dispute?: {
    challenger: string;
    bond: string;
    /**
     * Decided by a proof (a model with a circuit: the challenger proved other outputs, `challengeWithProof`)
     * or by a stake-weighted vote.
     */
    circuit: boolean;
    outcome: DisputeOutcomeName | null;
    /**
     * Each ballot cast (DisputeVoted), all counted: the challenger's own ballot against the node comes first
     * (cast by its challenge). Weights in OPG wei.
     */
    votes: { voter: string; nodeRight: boolean; weight: string }[];
    /** The tallies re-added here from the ballots (OPG wei). */
    weightFor?: string;
    weightAgainst?: string;
    /** Ballots settled so far (BallotSettled, summed per voter): stake slashed from losers, rewards paid. */
    ballots?: { voter: string; slashed: string; paid: string }[];
    /** A disproof: the output words the challenger proved (other than the posted ones). */
    provedOutputs?: string[];
    /** The attesters slashed for attesting outputs the dispute found wrong (AttesterSlashed). */
    slashedAttesters?: string[];
  };
}

/** What an independent re-check concluded about one verified task, in any verification mode. */
export interface AuditReport {
  taskId: string;
  modelId: string;
  /** The node whose result was settled (verified), or whose posted outputs were rejected. */
  node: string;
  /** Block and transaction of the settling log (TaskVerified, or TaskRejected). */
  block: number;
  tx: string;
  /**
   * What the audit re-checked: a verified result, or the rejection of posted outputs after a dispute (an
   * optimistic task: its evidence, a proof of other outputs or a vote, is re-checked the same way).
   */
  status: "Verified" | "Rejected";
  /** The task's verification mode ("unknown" when the settling calldata could not be read). */
  mode: VerificationModeName | "unknown";
  /**
   * How the result became final: a proof (ZK), an enclave signature (TEE), attestations after the window,
   * or a dispute settled by vote (optimistic). A rejection: a challenger's proof of other outputs
   * ("dispute-proof"), or a vote.
   */
  settledBy: "proof" | "enclave-signature" | "attestations" | "dispute-proof" | "dispute-vote" | "unknown";
  /**
   * A Groth16 proof verifies against the model's registered key, with public signals rebuilt from chain data;
   * null when the settlement carried no proof (TEE, optimistic unless a challenger's proof of other outputs
   * rejected them: that proof is bound to the challenger).
   */
  proofValid: boolean | null;
  /** The model's public bundle is the one registered: its verification key, ONNX and signal layout agree. */
  bundleMatches: boolean;
  /**
   * The output recomputed from the bundle's quantized program equals the verified output words; null when it
   * could not be recomputed outside ZK mode (no usable bundle), which is then listed in `notChecked`. For a
   * rejection: the recomputed output supports it (it equals the outputs the challenger proved; for a vote
   * that found the node wrong, it differs from the posted outputs); null when not recomputed or undecided.
   */
  outputMatches: boolean | null;
  /**
   * Everything this mode's settlement rests on re-checked and found consistent. ZK: proof, bundle and
   * output. TEE: the enclave signature recovers to the key the registry recorded, which is registered to
   * the settling node with the published document, and the output recomputed where a bundle allows it.
   * Optimistic: the outputs posted are the outputs settled, the quorum attested after the window or a
   * vote went the node's way, and the output recomputed where a bundle allows it. A rejection: the
   * challenger's proof of other outputs verifies (bound to the challenger) and the bundle recomputes them,
   * or the vote's ballots add up to its outcome.
   */
  agree: boolean;
  detail: string;
  /** What the audit established, one statement each. */
  checked: string[];
  /** What the result rests on that the audit could not establish, one statement each. */
  notChecked: string[];
  /** Facts found later that bear on the result (a key revoked since, a measurement withdrawn). */
  warnings: string[];
  /**
   * The registered key's trusted setup is established secure here: the bundle matches the registry and
   * its setup check found a published phase-1 ceremony and a secret phase-2 contribution (needs the ptau).
   * Independent of `agree`: a proof under a development setup verifies, but whoever ran compile could
   * have forged it. Meaningful only where a proof was verified (`proofValid` not null).
   */
  setupSecure: boolean;
  /** Who could forge proofs for the model's bundle; absent when the bundle could not be read. */
  setup?: AuditSetup;
  /** The verified output, dequantized (softmax applied where the model ends in one); absent when unreadable. */
  output?: number[];
  /** TEE mode: the enclave key, its registration and standing. */
  tee?: TeeAudit;
  /** Optimistic mode: the window, the attesters and any dispute. */
  optimistic?: OptimisticAudit;
  checkedAt: string;
}

/** What an audit needs: read access to the registries, and the bundle cache and data node for artifacts. */
export interface AuditDeps {
  provider: Provider;
  models: Chain["models"];
  tasks: Chain["tasks"];
  bundles: BundleCache;
  data: DataClient;
  /** Setup checks of the bundles, one per bundle (kept across audits: every task of a model shares it). */
  setups: SetupChecks;
  /**
   * How the fixed-point program is run (its output values). A long-lived node passes its sandboxed executor
   * (runtime/execution-policy.ts), so a stranger's heavy program cannot stall it; an ExecutionRefusedError
   * leaves the output unchecked, said so in the report. Default: in this process (a one-shot `opg audit`).
   */
  execute?: (bundle: LoadedBundle, input: bigint[]) => Promise<bigint[]>;
}

interface Submission {
  task: SubmittedTask["task"];
  input: bigint[];
  outputs: bigint[];
  proof: bigint[];
}

/** The proof, outputs, input and task of `taskId` from the calldata of the transaction that settled it. */
export async function readSubmission(provider: Provider, txHash: string, taskId: bigint) {
  const s = await readSettlement(provider, txHash, taskId);
  return s?.via === "submitResult" ? s : undefined;
}

/**
 * How a task was settled, from the settling transaction's calldata: `submitResult(s)` (ZK: input and proof),
 * `submitResultTee` (the enclave's signature), `finalizeResult` (optimistic, the attesters), or the dispute
 * manager's `resolveVote` (a vote either way) or `challengeWithProof` (a rejection: `outputs` are the words
 * the challenger proved, other than the posted ones whose hash is `outputsHash`, and `proof` is bound to the
 * challenger). Undefined when the transaction is none of these (a contract that called the registry).
 */
export type Settlement =
  | ({ via: "submitResult" } & Submission)
  | { via: "submitResultTee"; task: Submission["task"]; outputs: bigint[]; signature: string }
  | {
      via: "finalizeResult" | "resolveVote";
      task: Submission["task"];
      outputs: bigint[];
      attesters: string[];
    }
  | ({ via: "challengeWithProof"; outputsHash: string; attesters: string[] } & Submission);

export async function readSettlement(
  provider: Provider,
  txHash: string,
  taskId: bigint,
): Promise<Settlement | undefined> {
  const tx = await provider.getTransaction(txHash);
  if (!tx) throw new Error(`transaction ${txHash} not found`);
  const call =
    taskRegistryInterface.parseTransaction({ data: tx.data }) ??
    disputeManagerInterface.parseTransaction({ data: tx.data });
  if (!call) return undefined;
  const a = call.args;
  const words = (v: unknown) => [...(v as bigint[])];
  const addresses = (v: unknown) => [...(v as string[])];
  if (call.name === "submitResults") {
    const s = (a.submissions as (Submission & { taskId: bigint })[]).find((x) => x.taskId === taskId);
    if (!s) return undefined;
    return {
      via: "submitResult",
      task: s.task,
      input: words(s.input),
      outputs: words(s.outputs),
      proof: words(s.proof),
    };
  }
  if (a.taskId !== taskId) return undefined;
  const task = a.task as Submission["task"];
  switch (call.name) {
    case "submitResult":
      return {
        via: "submitResult",
        task,
        input: words(a.input),
        outputs: words(a.outputs),
        proof: words(a.proof),
      };
    case "submitResultTee":
      return { via: "submitResultTee", task, outputs: words(a.outputs), signature: a.signature as string };
    case "finalizeResult":
    case "resolveVote":
      return { via: call.name, task, outputs: words(a.outputs), attesters: addresses(a.attesters) };
    case "challengeWithProof":
      return {
        via: "challengeWithProof",
        task,
        outputsHash: a.outputsHash as string,
        attesters: addresses(a.attesters),
        input: words(a.input),
        outputs: words(a.outputs),
        proof: words(a.proof),
      };
    default:
      return undefined;
  }
}

/**
 * The verified result of `taskId` and its TaskVerified log: the chain keeps one word per verified task (a hash
 * of node, block and outputs), so the log is found by the task id (`findLogs`, which also works against RPC
 * providers that limit log ranges) and its result checked against that word (`isVerifiedResult`): a log
 * that does not match it is not the result. Undefined while the task is not verified.
 */
export async function findVerifiedLog(deps: AuditDeps, taskId: bigint) {
  if ((await deps.tasks.taskStatus(taskId)) !== 3n) return undefined;
  const head = await deps.provider.getBlockNumber();
  const logs = await findLogs(
    deps.provider,
    await deps.tasks.getAddress(),
    [TOPICS.verified, toBeHex(taskId, 32)],
    0,
    head,
  );
  for (const log of logs) {
    const parsed = taskRegistryInterface.parseLog(log)!;
    const result = {
      node: parsed.args.node as string,
      settledBlock: BigInt(log.blockNumber),
      outputs: [...(parsed.args.outputs as bigint[])].map((w) => BigInt(w)),
    };
    if (await deps.tasks.isVerifiedResult(taskId, result)) return { log, result };
  }
  return undefined;
}

/**
 * Logs of `address` matching `topics` in [fromBlock, toBlock]: one request, or, when the RPC refuses the
 * range, windows of 10,000 blocks (at most 200 of them, newest first).
 */
export async function findLogs(
  provider: Provider,
  address: string,
  topics: (string | null)[],
  fromBlock: number,
  toBlock: number,
): Promise<Log[]> {
  try {
    return await provider.getLogs({ address, topics, fromBlock, toBlock });
  } catch {
    const found: Log[] = [];
    let windows = 0;
    for (let end = toBlock; end >= fromBlock && windows < 200; end -= 10_000, windows++) {
      const start = Math.max(fromBlock, end - 9_999);
      found.unshift(...(await provider.getLogs({ address, topics, fromBlock: start, toBlock: end })));
    }
    return found;
  }
}

/** The task's TaskSubmitted event (for its input words), searched up to `toBlock`. */
export async function findSubmitted(
  deps: Pick<AuditDeps, "provider" | "tasks">,
  taskId: bigint,
  toBlock: number,
): Promise<SubmittedTask | undefined> {
  const logs = await findLogs(
    deps.provider,
    await deps.tasks.getAddress(),
    [TOPICS.submitted, toBeHex(taskId, 32)],
    0,
    toBlock,
  );
  return logs[0] ? parseSubmitted(logs[0]) : undefined;
}

/** zkml/verification-key.ts snarkjsKeyFromWords, re-exported for the callers that import it from here. */
export { snarkjsKeyFromWords };

/**
 * The proof verified off-chain against the model's registered key, with signals rebuilt from chain data: the
 * outputs, the input, and the binding of chain, registry, task and `prover` (the node that settled, or the
 * challenger whose disproof rejected the posted outputs).
 */
async function verifyTaskProof(
  deps: AuditDeps,
  modelId: bigint,
  taskId: bigint,
  prover: string,
  s: { outputs: bigint[]; input: bigint[]; proof: bigint[] },
): Promise<boolean> {
  const registeredKey = [...(await deps.models.verificationKeyOf(modelId))];
  const binding = BigInt(await deps.tasks.taskBinding(taskId, prover));
  const signals = [...s.outputs, ...s.input, binding].map(String);
  const proof = snarkjsProof(s.proof);
  return (
    registeredKey.length > 0 &&
    (await groth16Verify(snarkjsKeyFromWords(registeredKey), signals, proof as never))
  );
}

/** The model's bundle as an audit sees it: refused, or loaded with where it differs from the registry. */
type Inspected =
  | { refused: string }
  | { bundle: LoadedBundle; bundleMatches: boolean; bundleDetail: string; setup?: AuditSetup };

async function inspectBundle(deps: AuditDeps, modelId: bigint, withSetup: boolean): Promise<Inspected> {
  const model = await deps.models.getModel(modelId);
  let inspected: Awaited<ReturnType<BundleCache["inspect"]>>;
  try {
    inspected = await deps.bundles.inspect(model);
  } catch (e) {
    if (!(e instanceof BundleRejectedError)) throw e;
    return { refused: e.message };
  }
  const { bundle, problems } = inspected;
  const setup = withSetup ? await deps.setups.of(bytes32ToBundleId(model.bundleHash), bundle.dir) : undefined;
  const bundleMatches = problems.length === 0;
  const bundleDetail = bundleMatches
    ? "bundle matches the registry"
    : `BUNDLE DIFFERS FROM THE REGISTRY: ${problems.join("; ")}`;
  return { bundle, bundleMatches, bundleDetail, setup };
}

/** The output recomputed with the bundle's fixed-point executor, against `outputs`. */
async function recompute(
  deps: AuditDeps,
  bundle: LoadedBundle,
  submitted: SubmittedTask,
  outputs: bigint[],
): Promise<{ unchecked: string } | { outputMatches: boolean; output: number[] }> {
  let input: bigint[];
  try {
    input = await decodeTaskInput(bundle.manifest, submitted, deps.data);
  } catch (e) {
    if (!(e instanceof InputRejectedError)) throw e;
    return { unchecked: `INPUT NOT RECOVERABLE: ${e.message}` };
  }
  let recomputed: bigint[];
  try {
    recomputed = deps.execute
      ? await deps.execute(bundle, input)
      : executeProgram(bundle.program, input)[bundle.program.output.tensor];
  } catch (e) {
    if (!(e instanceof ExecutionRefusedError)) throw e;
    return { unchecked: `OUTPUT NOT RECOMPUTED (over this node's execution policy): ${e.message}` };
  }
  let words: bigint[] = [];
  try {
    words = packValues(recomputed, bundle.manifest.publicSignals.packBits);
  } catch {
    // A recomputed output that does not fit the packing cannot equal any verified output.
  }
  const outputMatches = words.length === outputs.length && words.every((w, i) => w === outputs[i]);
  return { outputMatches, output: dequantizeOutput(bundle.program, recomputed) };
}

const ZK_NOT_CHECKED_SETUP =
  "the model's trusted setup: whoever knows its toxic waste could forge a proof of any output (see setup)";
const QUANTIZED =
  "that the fixed-point program's output is the float ONNX model's: it is the quantized program's, by design";

/** The parts of a report every mode shares. */
interface Context {
  deps: AuditDeps;
  log: Log;
  taskId: bigint;
  modelId: bigint;
  node: string;
  eventOutputs: bigint[];
  base: {
    taskId: string;
    modelId: string;
    node: string;
    block: number;
    tx: string;
    status: AuditReport["status"];
  };
}

/** The report of a settlement whose calldata this audit cannot read (sent through another contract). */
function unreadable(ctx: Context): AuditReport {
  return {
    ...ctx.base,
    mode: "unknown",
    settledBy: "unknown",
    proofValid: false,
    bundleMatches: false,
    outputMatches: false,
    agree: false,
    detail: "the settling transaction's calldata does not carry this task",
    checked: [],
    notChecked: ["anything: the settlement was made by a contract whose calldata this audit cannot read"],
    warnings: [],
    setupSecure: false,
    checkedAt: new Date().toISOString(),
  };
}

/**
 * Re-check a TaskVerified log from public data only, in the task's verification mode (read from the
 * settling transaction's calldata):
 *
 * - ZK: the proof verified off-chain against the model's registered verification key (`verificationKeyOf`)
 *   with public signals rebuilt from chain data (outputs, input, the binding of chain, registry, task and
 *   node); the model bundle (fetched by the registry's bundle hash, every file hash checked) compared with
 *   the registered model, so that the registered key is the published circuit's, and the ONNX and layout
 *   agree; the output recomputed with the bundle's fixed-point executor; and the bundle's trusted setup
 *   (`setup`, `setupSecure`: who could forge proofs), which does not change `agree`.
 * - TEE: the signer recovered from the submitResultTee signature over `teeResultDigest` against the key the
 *   registry recorded (TaskEnclaveSigned), the key's registration (node, measurement, document hash) and
 *   standing at settlement and now, the measurement's approval now; the output recomputed where the model's
 *   bundle has a program. What it rests on beyond that (the attestation document, the hardware) is listed
 *   in `notChecked`.
 * - Optimistic: the outputs posted against those settled, the window and the attester set fixed at posting,
 *   any dispute (a vote: its ballots re-tallied), and the output recomputed where the bundle allows.
 *
 * `models` limits the audit to those model ids (undefined when another model). Throws only for what may
 * pass (an RPC or data node outage).
 */
export async function auditVerifiedLog(
  deps: AuditDeps,
  log: Log,
  opts: { models?: bigint[] } = {},
): Promise<AuditReport | undefined> {
  const parsed = taskRegistryInterface.parseLog(log);
  if (!parsed || parsed.name !== "TaskVerified") throw new Error("not a TaskVerified log");
  const taskId: bigint = parsed.args.taskId;
  const node: string = parsed.args.node;
  const eventOutputs: bigint[] = [...parsed.args.outputs];
  const settlement = await readSettlement(deps.provider, log.transactionHash, taskId);
  const modelId = settlement ? BigInt(settlement.task.modelId) : 0n;
  if (opts.models && opts.models.length > 0 && !opts.models.includes(modelId)) return undefined;
  const ctx: Context = {
    deps,
    log,
    taskId,
    modelId,
    node,
    eventOutputs,
    base: {
      taskId: taskId.toString(),
      modelId: modelId.toString(),
      node,
      block: log.blockNumber,
      tx: log.transactionHash,
      status: "Verified",
    },
  };
  // a disproof never verifies a task: a TaskVerified log in its transaction is not this task's settlement
  if (!settlement || settlement.via === "challengeWithProof") return unreadable(ctx);
  switch (settlement.via) {
    case "submitResult":
      return auditZk(ctx, settlement);
    case "submitResultTee":
      return auditTee(ctx, settlement);
    default:
      return auditOptimistic(ctx, settlement);
  }
}

/**
 * Re-check a TaskRejected log (an optimistic task whose posted outputs a dispute rejected) from public data
 * only:
 *
 * - a disproof (`challengeWithProof`, a model with a circuit): the outputs it names are the ones the node
 *   posted, the words it proves differ from them, its input is the task's, and its Groth16 proof verifies
 *   off-chain against the model's registered key with public signals rebuilt from chain data, bound to the
 *   CHALLENGER (chain, registry, task, challenger); the bundle recomputes the proved words from the input; the
 *   attesters named are the set fixed at posting, each slashed; the bundle's trusted setup beside (`setup`).
 * - a vote (`resolveVote`): the ballots (DisputeVoted) re-tallied against the outcome, the bond and ballot
 *   settlements; where the bundle allows, whether it recomputes the rejected outputs.
 *
 * `models` as for auditVerifiedLog. Throws only for what may pass (an RPC or data node outage).
 */
export async function auditRejectedLog(
  deps: AuditDeps,
  log: Log,
  opts: { models?: bigint[] } = {},
): Promise<AuditReport | undefined> {
  const parsed = taskRegistryInterface.parseLog(log);
  if (!parsed || parsed.name !== "TaskRejected") throw new Error("not a TaskRejected log");
  const taskId: bigint = parsed.args.taskId;
  const rejectedOutcome = DISPUTE_OUTCOMES[Number(parsed.args.outcome)] ?? null;
  const settlement = await readSettlement(deps.provider, log.transactionHash, taskId);
  const modelId = settlement ? BigInt(settlement.task.modelId) : 0n;
  if (opts.models && opts.models.length > 0 && !opts.models.includes(modelId)) return undefined;
  const registry = await deps.tasks.getAddress();
  const id = toBeHex(taskId, 32);
  const postedLogs = await findLogs(
    deps.provider,
    registry,
    [MODE_TOPICS.resultPosted, id],
    0,
    log.blockNumber,
  );
  const postedLog = postedLogs.at(-1);
  const posted = postedLog ? taskRegistryInterface.parseLog(postedLog) : null;
  const postedOutputs: bigint[] = posted ? [...(posted.args.outputs as bigint[])] : [];
  const node: string = posted ? posted.args.node : ethers.ZeroAddress;
  const ctx: Context = {
    deps,
    log,
    taskId,
    modelId,
    node,
    eventOutputs: postedOutputs,
    base: {
      taskId: taskId.toString(),
      modelId: modelId.toString(),
      node,
      block: log.blockNumber,
      tx: log.transactionHash,
      status: "Rejected",
    },
  };
  if (!settlement || (settlement.via !== "challengeWithProof" && settlement.via !== "resolveVote")) {
    return unreadable(ctx);
  }
  const checked: string[] = [];
  const notChecked: string[] = [];
  const warnings: string[] = [];
  const problems: string[] = [];
  const quorum = Number(settlement.task.attestationQuorum);
  if (!posted || !postedLog) problems.push("NO TaskResultPosted EVENT FOUND");
  const postedHash = ethers.solidityPackedKeccak256(["uint256[]"], [postedOutputs]);
  const named = settlement.via === "challengeWithProof" ? settlement.outputsHash : undefined;
  const voteOutputs = settlement.via === "resolveVote" ? settlement.outputs : undefined;
  const namesPosted =
    posted !== null &&
    (named !== undefined
      ? named === postedHash
      : voteOutputs!.length === postedOutputs.length && voteOutputs!.every((w, i) => w === postedOutputs[i]));
  if (posted && !namesPosted) problems.push("THE DISPUTE NAMES OTHER OUTPUTS THAN THE ONES POSTED");
  const attesters = settlement.attesters;
  const set = await attesterSet(deps, registry, id, postedLog);
  const listMatches = set.length === attesters.length && set.every((a, i) => a === attesters[i]);
  if (!listMatches) problems.push("THE ATTESTER LIST NAMED IS NOT THE SET FIXED AT POSTING (TaskAttested)");
  const receipt = await deps.provider.getTransactionReceipt(log.transactionHash);
  const found = await disputeLogs(deps, taskId, receipt?.logs ?? []);
  const { d, opened, resolvedOutcome, slashedAttesters } = found;
  const challenger: string = opened?.challenger ?? d?.challenger ?? ethers.ZeroAddress;
  if (resolvedOutcome !== rejectedOutcome) {
    problems.push(
      `THE DISPUTE'S RECORDED OUTCOME (${resolvedOutcome ?? "MISSING"}) IS NOT THE REJECTION'S (${rejectedOutcome})`,
    );
  }
  if (rejectedOutcome === "NodeWrong") {
    const unslashed = attesters.filter((a) => !slashedAttesters.includes(a));
    if (unslashed.length > 0) problems.push(`ATTESTERS NOT SLASHED: ${unslashed.join(", ")}`);
    else if (attesters.length > 0)
      checked.push(`each of the ${attesters.length} attester(s) of the rejected outputs was slashed`);
  }
  let settledBy: AuditReport["settledBy"];
  let proofValid: boolean | null = null;
  let setup: AuditSetup | undefined;
  let settleOk: boolean;
  let outputMatches: boolean | null = null;
  let bundleMatches = false;
  let output: number[] | undefined;
  let dispute: OptimisticAudit["dispute"];
  let how: string;
  let outDetail: string;
  if (settlement.via === "challengeWithProof") {
    settledBy = "dispute-proof";
    const s = settlement;
    const differs =
      s.outputs.length !== postedOutputs.length || s.outputs.some((w, i) => w !== postedOutputs[i]);
    if (!differs) problems.push("THE PROVED OUTPUTS ARE THE POSTED ONES");
    const inputOk = ethers.solidityPackedKeccak256(["uint256[]"], [s.input]) === s.task.inputHash;
    if (!inputOk) problems.push("THE DISPROOF'S INPUT IS NOT THE TASK'S (inputHash)");
    proofValid = await verifyTaskProof(deps, modelId, taskId, challenger, s);
    if (!proofValid) problems.push("THE DISPROOF'S PROOF IS INVALID");
    settleOk = proofValid && differs && inputOk && rejectedOutcome === "NodeWrong";
    if (settleOk && namesPosted) {
      checked.push(
        `${challenger} proved the posted outputs wrong: its Groth16 proof of other outputs on the task's input ` +
          "verifies here against the model's registered key, with public signals rebuilt from chain data " +
          "(the proved outputs, the input, and the binding of chain, registry, task and challenger)",
      );
    }
    notChecked.push(ZK_NOT_CHECKED_SETUP);
    const out = await recomputeWithoutProof(ctx, s.task, s.outputs, s.input);
    bundleMatches = out.bundleMatches;
    outputMatches = out.outputMatches;
    output = out.output;
    outDetail = out.detail.replace("output recomputed equal", "the bundle recomputes the proved outputs");
    if (out.notChecked) notChecked.push(out.notChecked);
    else if (out.outputMatches) {
      checked.push(
        "the model's bundle (its fixed-point program) recomputes the proved outputs from the input",
      );
      notChecked.push(QUANTIZED);
    } else problems.push("the output recomputed from the bundle DIFFERS from the proved outputs");
    const inspected = await inspectBundle(deps, modelId, true);
    if (!("refused" in inspected)) setup = inspected.setup;
    dispute = {
      challenger,
      bond: String(d?.bond ?? 0n),
      circuit: true,
      outcome: resolvedOutcome,
      votes: [],
      provedOutputs: s.outputs.map(String),
      slashedAttesters,
    };
    how = `posted outputs proved wrong by ${challenger}: proof of other outputs ${proofValid ? "valid" : "INVALID"}`;
  } else {
    settledBy = "dispute-vote";
    const v = await voteOf(deps, found.manager, taskId, postedLog?.blockNumber ?? 0, log.blockNumber);
    const { weightFor, weightAgainst } = v;
    const total = weightFor + weightAgainst;
    let quorumStake: bigint | undefined;
    if (found.manager) {
      const disputes = DisputeManager__factory.connect(found.manager, deps.provider);
      // The quorum the dispute opened with (its own record), not the governed value now.
      quorumStake = await disputes
        .disputeOf(taskId)
        .then((d) => d.quorum)
        .catch(() => undefined);
    }
    const tally = `${ethers.formatEther(weightFor)} OPG of stake for the node, ${ethers.formatEther(weightAgainst)} against, ${v.votes.length} ballot(s)`;
    if (rejectedOutcome === "NodeWrong") {
      settleOk = weightAgainst > weightFor;
      if (!settleOk) problems.push(`THE BALLOTS DO NOT ADD UP TO NodeWrong (${tally})`);
    } else {
      // Undecided only below the quorum: a tie is the node's (the challenger carries the burden).
      settleOk = quorumStake !== undefined && total < quorumStake;
      if (!settleOk) problems.push(`THE BALLOTS DO NOT ADD UP TO Undecided (${tally})`);
    }
    if (settleOk) {
      checked.push(
        `${challenger} challenged the outputs; the stake-weighted vote ${
          rejectedOutcome === "NodeWrong" ? "found the node wrong" : "was undecided"
        } (${tally}${quorumStake !== undefined ? `; quorum ${ethers.formatEther(quorumStake)} OPG` : ""})`,
      );
    }
    notChecked.push(
      "that the outputs are wrong: a dispute settled by vote shows only what the staked majority said",
    );
    const out = await recomputeWithoutProof(ctx, settlement.task, postedOutputs);
    bundleMatches = out.bundleMatches;
    output = out.output;
    outDetail = out.notChecked
      ? out.detail
      : out.detail.replace(
          /output recomputed equal|OUTPUT DIFFERS/,
          out.outputMatches
            ? "the bundle recomputes the REJECTED outputs"
            : "the bundle recomputes other outputs",
        );
    if (out.notChecked) notChecked.push(out.notChecked);
    else if (rejectedOutcome === "NodeWrong" && out.outputMatches !== null) {
      outputMatches = !out.outputMatches;
      if (outputMatches) checked.push("the model's bundle recomputes other outputs than the rejected ones");
      else
        warnings.push("the model's bundle recomputes the rejected outputs: the vote rejected what it gives");
    }
    dispute = {
      challenger,
      bond: String(d?.bond ?? 0n),
      circuit: false,
      outcome: resolvedOutcome,
      votes: v.votes,
      weightFor: String(weightFor),
      weightAgainst: String(weightAgainst),
      ballots: v.ballots,
      slashedAttesters,
    };
    how = `posted outputs rejected by vote (${rejectedOutcome ?? "no outcome"})`;
  }
  const optimistic: OptimisticAudit = {
    postedBy: node,
    postedBlock: postedLog?.blockNumber ?? null,
    windowEnd: posted ? Number(posted.args.windowEnd) : null,
    quorum,
    attesters,
    dispute,
  };
  const agree = namesPosted && listMatches && settleOk && outputMatches !== false;
  const detail = [how, ...problems, outDetail, ...warnings.map((w) => `WARNING: ${w}`)].join("; ");
  return {
    ...ctx.base,
    mode: "optimistic",
    settledBy,
    proofValid,
    bundleMatches,
    outputMatches,
    agree,
    detail,
    checked,
    notChecked,
    warnings,
    setupSecure: settledBy === "dispute-proof" && bundleMatches && setup?.secure === true,
    ...(setup ? { setup } : {}),
    ...(output ? { output } : {}),
    optimistic,
    checkedAt: new Date().toISOString(),
  };
}

/** The attester set fixed at posting: the TaskAttested logs of the posting transaction, in order. */
async function attesterSet(deps: AuditDeps, registry: string, id: string, postedLog: Log | undefined) {
  if (!postedLog) return [];
  const logs = await deps.provider.getLogs({
    address: registry,
    topics: [MODE_TOPICS.attested, id],
    fromBlock: postedLog.blockNumber,
    toBlock: postedLog.blockNumber,
  });
  return logs
    .filter((l) => l.transactionHash === postedLog.transactionHash)
    .map((l) => taskRegistryInterface.parseLog(l)!.args.attester as string);
}

/**
 * The dispute over `taskId` as its settling transaction's logs show it: the manager that resolved it (the
 * address of its DisputeResolved log, whatever the registry's dispute manager is now), the opening (a
 * disproof opens and resolves in one transaction), the outcome, the attesters slashed, and its stored record.
 */
async function disputeLogs(deps: AuditDeps, taskId: bigint, logs: readonly Log[]) {
  let manager: string | undefined;
  let opened: { challenger: string; bond: bigint } | undefined;
  let resolvedOutcome: DisputeOutcomeName | null = null;
  const slashedAttesters: string[] = [];
  for (const l of logs) {
    if (l.topics[1] !== toBeHex(taskId, 32)) continue;
    if (l.topics[0] === MODE_TOPICS.disputeResolved) {
      manager = l.address;
      resolvedOutcome = DISPUTE_OUTCOMES[Number(disputeManagerInterface.parseLog(l)!.args.outcome)] ?? null;
    } else if (l.topics[0] === MODE_TOPICS.disputeOpened) {
      const a = disputeManagerInterface.parseLog(l)!.args;
      opened = { challenger: a.challenger as string, bond: a.bond as bigint };
    } else if (l.topics[0] === MODE_TOPICS.attesterSlashed) {
      slashedAttesters.push(disputeManagerInterface.parseLog(l)!.args.attester as string);
    }
  }
  if (!manager) [manager] = await deps.tasks.modeParameters();
  const d = await DisputeManager__factory.connect(manager, deps.provider)
    .disputeOf(taskId)
    .catch(() => undefined);
  return { manager, opened, resolvedOutcome, slashedAttesters, d };
}

/**
 * The ballots of a vote over `taskId` (DisputeVoted, every one counted: no cap displaces any), re-tallied
 * here, and the ballot settlements (BallotSettled) made so far, summed per voter.
 */
async function voteOf(
  deps: AuditDeps,
  manager: string | undefined,
  taskId: bigint,
  fromBlock: number,
  toBlock: number,
) {
  const id = toBeHex(taskId, 32);
  if (!manager) return { votes: [], weightFor: 0n, weightAgainst: 0n, ballots: [] };
  const votes = (
    await findLogs(deps.provider, manager, [MODE_TOPICS.disputeVoted, id], fromBlock, toBlock)
  ).map((l) => {
    const a = disputeManagerInterface.parseLog(l)!.args;
    return { voter: a.voter as string, nodeRight: Boolean(a.nodeRight), weight: String(a.weight) };
  });
  const sum = (side: boolean) =>
    votes.filter((v) => v.nodeRight === side).reduce((t, v) => t + BigInt(v.weight), 0n);
  const settled = new Map<string, { slashed: bigint; paid: bigint }>();
  const latest = await deps.provider.getBlockNumber();
  for (const l of await findLogs(deps.provider, manager, [MODE_TOPICS.ballotSettled, id], toBlock, latest)) {
    const a = disputeManagerInterface.parseLog(l)!.args;
    const b = settled.get(a.voter as string) ?? { slashed: 0n, paid: 0n };
    b.slashed += a.slashed as bigint;
    b.paid += a.paid as bigint;
    settled.set(a.voter as string, b);
  }
  const ballots = [...settled].map(([voter, b]) => ({
    voter,
    slashed: String(b.slashed),
    paid: String(b.paid),
  }));
  return { votes, weightFor: sum(true), weightAgainst: sum(false), ballots };
}

/** ZK mode: proof, bundle, output; the setup beside. */
async function auditZk(ctx: Context, submission: Submission): Promise<AuditReport> {
  const { deps, taskId, modelId, node } = ctx;
  const report = (
    checks: { proofValid: boolean; bundleMatches: boolean; outputMatches: boolean },
    detail: string,
    { setup, output }: { setup?: AuditSetup; output?: number[] } = {},
  ): AuditReport => {
    const setupSecure = checks.bundleMatches && setup?.secure === true;
    const checked = [
      checks.proofValid &&
        "the proof verifies against the model's registered verification key, with public signals rebuilt " +
          "from chain data (outputs, input, and the binding of chain, registry, task and node)",
      checks.bundleMatches &&
        "the model's published bundle is the registered one (verification key, ONNX hash, signal layout)",
      checks.outputMatches &&
        "the bundle's fixed-point program recomputes the verified output from the input",
    ].filter((c): c is string => typeof c === "string");
    const notChecked = setupSecure
      ? [QUANTIZED]
      : [setup ? `${ZK_NOT_CHECKED_SETUP}: ${setup.summary}` : ZK_NOT_CHECKED_SETUP, QUANTIZED];
    return {
      ...ctx.base,
      mode: "zk",
      settledBy: "proof",
      ...checks,
      agree: checks.proofValid && checks.bundleMatches && checks.outputMatches,
      detail,
      checked,
      notChecked,
      warnings: [],
      // the setup checked is the published bundle's: it says nothing of a registered key that differs
      setupSecure,
      ...(setup ? { setup } : {}),
      ...(output ? { output } : {}),
      checkedAt: new Date().toISOString(),
    };
  };
  const none = { proofValid: false, bundleMatches: false, outputMatches: false };
  if (submission.outputs.some((w, i) => w !== ctx.eventOutputs[i])) {
    return report(none, "calldata outputs differ from the TaskVerified event");
  }
  const proofValid = await verifyTaskProof(deps, modelId, taskId, node, submission);
  const proofDetail = proofValid ? "proof valid against the registered key" : "PROOF INVALID";
  const inspected = await inspectBundle(deps, modelId, true);
  if ("refused" in inspected) {
    return report({ ...none, proofValid }, `${proofDetail}; BUNDLE REFUSED: ${inspected.refused}`);
  }
  const { bundle, bundleMatches, bundleDetail, setup } = inspected;
  const submitted: SubmittedTask = { taskId, modelId, task: submission.task, input: submission.input };
  const recomputed = await recompute(deps, bundle, submitted, submission.outputs);
  if ("unchecked" in recomputed) {
    return report(
      { proofValid, bundleMatches, outputMatches: false },
      `${proofDetail}; ${bundleDetail}; ${recomputed.unchecked}`,
      { setup },
    );
  }
  const { outputMatches, output } = recomputed;
  const detail = [
    proofDetail,
    bundleDetail,
    outputMatches ? "output recomputed equal" : "OUTPUT DIFFERS",
  ].join("; ");
  return report({ proofValid, bundleMatches, outputMatches }, detail, { setup, output });
}

/**
 * TEE and optimistic modes: the output recomputed with the model's bundle where it has a program, with the
 * input from the TaskSubmitted event (or `input` when the settlement carried it). A bundle that cannot be
 * used leaves the output unchecked (`outputMatches` null) rather than failing the audit: the settlement did
 * not rest on it.
 */
async function recomputeWithoutProof(
  ctx: Context,
  task: Submission["task"],
  outputs: bigint[],
  input?: bigint[],
): Promise<{
  bundleMatches: boolean;
  outputMatches: boolean | null;
  output?: number[];
  detail: string;
  notChecked?: string;
}> {
  const { deps, taskId, modelId } = ctx;
  const inspected = await inspectBundle(deps, modelId, false);
  if ("refused" in inspected) {
    return {
      bundleMatches: false,
      outputMatches: null,
      detail: `output not recomputed (bundle refused: ${inspected.refused})`,
      notChecked: `the output: the model's bundle could not be used to recompute it (${inspected.refused})`,
    };
  }
  const { bundle, bundleMatches, bundleDetail } = inspected;
  let words = input;
  if (!words) words = (await findSubmitted(deps, taskId, ctx.log.blockNumber))?.input;
  if (!words || ethers.solidityPackedKeccak256(["uint256[]"], [words]) !== task.inputHash) {
    return {
      bundleMatches,
      outputMatches: null,
      detail: `${bundleDetail}; output not recomputed (the task's input words were not found)`,
      notChecked: "the output: the task's input words (TaskSubmitted) were not found to recompute it",
    };
  }
  const recomputed = await recompute(deps, bundle, { taskId, modelId, task, input: words }, outputs);
  if ("unchecked" in recomputed) {
    return {
      bundleMatches,
      outputMatches: false,
      detail: `${bundleDetail}; ${recomputed.unchecked}`,
    };
  }
  return {
    bundleMatches,
    outputMatches: recomputed.outputMatches,
    output: recomputed.output,
    detail: `${bundleDetail}; ${recomputed.outputMatches ? "output recomputed equal" : "OUTPUT DIFFERS"}`,
  };
}

const short = (a: string) => `${a.slice(0, 6)}...${a.slice(-4)}`;
const recomputedStatement =
  "the model's bundle (its fixed-point program) recomputes the verified output from the task's input";

/** TEE mode: the enclave key behind the signature, its registration and standing; the output recomputed. */
async function auditTee(
  ctx: Context,
  s: Extract<Settlement, { via: "submitResultTee" }>,
): Promise<AuditReport> {
  const { deps, taskId, node, log } = ctx;
  const registry = await deps.tasks.getAddress();
  const [, enclavesAddress] = await deps.tasks.modeParameters();
  const enclaves = EnclaveRegistry__factory.connect(enclavesAddress, deps.provider);
  const checked: string[] = [];
  const notChecked: string[] = [];
  const warnings: string[] = [];
  const problems: string[] = [];

  const outputsMatch =
    s.outputs.length === ctx.eventOutputs.length && s.outputs.every((w, i) => w === ctx.eventOutputs[i]);
  if (!outputsMatch) problems.push("CALLDATA OUTPUTS DIFFER FROM THE TaskVerified EVENT");

  const digest = await deps.tasks.teeResultDigest(
    taskId,
    node,
    s.task.inputHash,
    await deps.models.onnxHashOf(s.task.modelId),
    s.outputs,
  );
  let recovered: string | null = null;
  try {
    recovered = ethers.recoverAddress(digest, s.signature);
  } catch {
    problems.push("the calldata signature is malformed");
  }
  const signedLogs = await deps.provider.getLogs({
    address: registry,
    topics: [MODE_TOPICS.enclaveSigned, toBeHex(taskId, 32)],
    fromBlock: log.blockNumber,
    toBlock: log.blockNumber,
  });
  const signed = signedLogs[0] ? taskRegistryInterface.parseLog(signedLogs[0]) : null;
  const key: string = signed ? signed.args.key : (recovered ?? ethers.ZeroAddress);
  if (!signed) problems.push("NO TaskEnclaveSigned EVENT in the settlement block");
  const signatureMatches = signed !== null && recovered !== null && recovered === key;
  if (signed && !signatureMatches) problems.push(`SIGNER ${recovered} IS NOT THE RECORDED KEY ${key}`);
  if (signatureMatches) {
    checked.push(
      `the outputs, input hash and task binding (chain, registry, task, node) were signed by enclave key ${key} ` +
        "(recovered here from the submitResultTee calldata over teeResultDigest; the key the registry recorded)",
    );
  }

  const registered = await findLogs(
    deps.provider,
    enclavesAddress,
    [MODE_TOPICS.keyRegistered, ethers.zeroPadValue(key, 32)],
    0,
    log.blockNumber,
  );
  const info = await enclaves.keyInfo(key);
  let registration: TeeAudit["registration"];
  if (registered[0]) {
    const ev = enclaveRegistryInterface.parseLog(registered[0])!;
    const documentHash = ethers.keccak256(ev.args.document);
    registration = {
      node: ev.args.node,
      measurement: ev.args.measurement,
      documentHash,
      documentHashMatches: documentHash === info.documentHash,
      activeFrom: Number(ev.args.activeFrom),
      expiresAt: Number(ev.args.expiresAt),
      block: registered[0].blockNumber,
      tx: registered[0].transactionHash,
    };
    if (registration.node !== node) {
      problems.push(`THE KEY IS REGISTERED TO ${registration.node}, NOT TO THE SETTLING NODE ${node}`);
    } else if (!registration.documentHashMatches) {
      problems.push("THE PUBLISHED DOCUMENT'S HASH IS NOT THE ONE THE ENCLAVE REGISTRY STORES");
    } else {
      checked.push(
        `the key was registered by node ${node} for measurement ${registration.measurement} ` +
          `(block ${registration.block}) with an attestation document whose keccak256 ${documentHash} is the ` +
          "one the enclave registry stores",
      );
    }
  } else {
    problems.push(`NO EnclaveKeyRegistered EVENT FOUND for key ${key}`);
  }
  const measurement = registration?.measurement ?? info.measurement;
  let document: TeeAudit["document"];
  if (registered[0] && registration) {
    const at = await deps.provider.getBlock(registration.block);
    const ev = enclaveRegistryInterface.parseLog(registered[0])!;
    const check = checkEnclaveKey({
      key,
      node: registration.node,
      measurement: registration.measurement,
      documentHash: info.documentHash,
      document: ethers.getBytes(ev.args.document),
      registeredAt: new Date((at?.timestamp ?? 0) * 1000),
      // The nonce must bind this chain, the registry the key was registered with, the node and the key.
      chainId: (await deps.provider.getNetwork()).chainId,
      registry: registered[0].address,
    });
    document = { verdict: check.verdict, kind: check.kind, problems: check.problems, notes: check.notes };
    if (check.verdict === "valid") {
      checked.push(
        `the published attestation document verifies: a genuine ${check.kind} document, its certificate chain ` +
          `to the hardware vendor's pinned root, binding key ${key} to measurement ${registration.measurement}`,
      );
    } else if (check.verdict === "invalid") {
      problems.push(`THE ATTESTATION DOCUMENT DOES NOT CHECK: ${check.problems.join("; ")}`);
    }
  }

  let standingAtSettlement: KeyStandingName | null = null;
  try {
    const [, st] = await enclaves.keyStatus(key, { blockTag: log.blockNumber });
    standingAtSettlement = KEY_STANDINGS[Number(st)];
  } catch {
    notChecked.push("the key's standing at the settlement block: this RPC serves no state that old");
  }
  const [, now] = await enclaves.keyStatus(key);
  const standingNow = KEY_STANDINGS[Number(now)];
  const measurementApprovedNow = await enclaves.isMeasurementApproved(measurement);
  if (standingAtSettlement !== null) {
    checked.push(
      `the key's standing at the settlement block: ${standingAtSettlement}` +
        (standingAtSettlement === "Active" ? " (the registry accepts only Active keys)" : ""),
    );
  }
  checked.push(
    `the key's standing now: ${standingNow}; its measurement is ${measurementApprovedNow ? "still" : "NO LONGER"} approved`,
  );
  if (standingNow !== "Active" && standingNow !== "Expired") {
    warnings.push(`the enclave key is ${standingNow} now (it was accepted when the result settled)`);
  }
  if (!measurementApprovedNow)
    warnings.push(`measurement ${measurement} is no longer approved by governance`);
  const resolutions = (
    await findLogs(
      deps.provider,
      enclavesAddress,
      [MODE_TOPICS.keyChallengeResolved, ethers.zeroPadValue(key, 32)],
      registration?.block ?? 0,
      await deps.provider.getBlockNumber(),
    )
  ).map((l) => ({
    block: l.blockNumber,
    documentValid: Boolean(enclaveRegistryInterface.parseLog(l)!.args.documentValid),
  }));
  for (const r of resolutions.filter((x) => !x.documentValid)) {
    warnings.push(
      `governance judged the key's attestation document INVALID at block ${r.block}: the key was revoked ` +
        "and its node slashed; results it signed rest on a document found forged",
    );
  }
  const developmentEnclave = measurement === DEV_ENCLAVE_MEASUREMENT;
  if (developmentEnclave) {
    warnings.push(
      "the measurement is the DEVELOPMENT enclave's: its key lives in the node's process and its document " +
        "is signed by nobody; it proves nothing about how the output was computed",
    );
  }
  if (document?.verdict === "development") {
    notChecked.push(
      "the attestation document: it is a DEVELOPMENT attestation, signed by nobody; no hardware stands " +
        "behind the key",
    );
  } else if (!document) {
    notChecked.push("the attestation document: the key's registration (and so its document) was not found");
  }
  notChecked.push(
    "that the enclave ran the model on this input: that rests on the attestation document and on the " +
      "hardware vendor (a development attestation proves nothing), and on what the measured enclave image " +
      "does, which an audit of the signature cannot see",
  );

  const out = await recomputeWithoutProof(ctx, s.task, s.outputs);
  if (out.notChecked) notChecked.push(out.notChecked);
  else if (out.outputMatches) {
    checked.push(recomputedStatement);
    notChecked.push(QUANTIZED);
  } else problems.push("the output recomputed from the bundle DIFFERS (or its input is not recoverable)");

  const tee: TeeAudit = {
    key,
    recovered,
    signatureMatches,
    ...(registration ? { registration } : {}),
    standingAtSettlement,
    standingNow,
    measurementApprovedNow,
    developmentEnclave,
    challengeResolutions: resolutions,
    ...(document ? { document } : {}),
  };
  const keyOk =
    outputsMatch &&
    signatureMatches &&
    registration?.node === node &&
    registration.documentHashMatches === true &&
    document?.verdict !== "invalid";
  const agree = keyOk && out.outputMatches !== false;
  const detail = [
    signatureMatches
      ? `signed by enclave key ${short(key)}`
      : "SIGNATURE DOES NOT RECOVER TO THE RECORDED KEY",
    ...problems.filter((p) => !p.startsWith("SIGNER")),
    registration ? `measurement ${short(registration.measurement)}` : undefined,
    out.detail,
    ...warnings.map((w) => `WARNING: ${w}`),
  ]
    .filter(Boolean)
    .join("; ");
  return {
    ...ctx.base,
    mode: "tee",
    settledBy: "enclave-signature",
    proofValid: null,
    bundleMatches: out.bundleMatches,
    outputMatches: out.outputMatches,
    agree,
    detail,
    checked,
    notChecked,
    warnings,
    setupSecure: false,
    ...(out.output ? { output: out.output } : {}),
    tee,
    checkedAt: new Date().toISOString(),
  };
}

/** Optimistic mode: the posted outputs, the window, the attesters, any vote; the output recomputed. */
async function auditOptimistic(
  ctx: Context,
  s: Extract<Settlement, { via: "finalizeResult" | "resolveVote" }>,
): Promise<AuditReport> {
  const { deps, taskId, node, log } = ctx;
  const registry = await deps.tasks.getAddress();
  const id = toBeHex(taskId, 32);
  const checked: string[] = [];
  const notChecked: string[] = [];
  const warnings: string[] = [];
  const problems: string[] = [];
  const quorum = Number(s.task.attestationQuorum);

  const outputsMatch =
    s.outputs.length === ctx.eventOutputs.length && s.outputs.every((w, i) => w === ctx.eventOutputs[i]);
  if (!outputsMatch) problems.push("CALLDATA OUTPUTS DIFFER FROM THE TaskVerified EVENT");

  // The last posting: an earlier one that met no quorum was followed by a reopening (TaskReopened).
  const postedLog = (
    await findLogs(deps.provider, registry, [MODE_TOPICS.resultPosted, id], 0, log.blockNumber)
  ).at(-1);
  const posted = postedLog ? taskRegistryInterface.parseLog(postedLog) : null;
  const postedBy: string = posted ? posted.args.node : node;
  const windowEnd = posted ? Number(posted.args.windowEnd) : null;
  let postedOk = false;
  if (!posted) problems.push("NO TaskResultPosted EVENT FOUND");
  else {
    const postedOutputs = [...(posted.args.outputs as bigint[])];
    const same =
      postedOutputs.length === s.outputs.length && postedOutputs.every((w, i) => w === s.outputs[i]);
    if (!same) problems.push("THE SETTLED OUTPUTS ARE NOT THE ONES POSTED");
    if (postedBy !== node) problems.push(`POSTED BY ${postedBy}, SETTLED FOR ${node}`);
    postedOk = same && postedBy === node;
    if (postedOk) {
      checked.push(
        `the outputs settled are the ones node ${node} posted at block ${postedLog!.blockNumber}, ` +
          `challenge window until ${new Date(windowEnd! * 1000).toISOString()}`,
      );
    }
  }
  const paidLogs = await deps.provider.getLogs({
    address: registry,
    topics: [MODE_TOPICS.attestersPaid, id],
    fromBlock: log.blockNumber,
    toBlock: log.blockNumber,
  });
  const paid = paidLogs[0] ? taskRegistryInterface.parseLog(paidLogs[0]) : null;
  const set = await attesterSet(deps, registry, id, postedLog);
  const attesters = s.attesters;
  const listMatches = set.length === attesters.length && set.every((a, i) => a === attesters[i]);
  if (!listMatches) problems.push("THE ATTESTER LIST SETTLED IS NOT THE SET FIXED AT POSTING (TaskAttested)");

  let settledBy: AuditReport["settledBy"] = "attestations";
  let dispute: OptimisticAudit["dispute"];
  let settleOk = false;
  const settleBlock = await deps.provider.getBlock(log.blockNumber);
  if (s.via === "finalizeResult") {
    const afterWindow = windowEnd !== null && settleBlock !== null && settleBlock.timestamp > windowEnd;
    if (!afterWindow) problems.push("SETTLED BEFORE THE WINDOW ENDED");
    if (attesters.length < quorum)
      problems.push(`${attesters.length} ATTESTERS, BELOW THE QUORUM OF ${quorum}`);
    settleOk = afterWindow && attesters.length >= quorum;
    if (settleOk && listMatches) {
      checked.push(
        `${attesters.length} staked verification node(s) attested (quorum ${quorum}) when the outputs were ` +
          `posted: ${attesters.join(", ")}; nobody challenged before the window ended`,
      );
    }
  } else {
    settledBy = "dispute-vote";
    const receipt = await deps.provider.getTransactionReceipt(log.transactionHash);
    const found = await disputeLogs(deps, taskId, receipt?.logs ?? []);
    const outcome = found.resolvedOutcome;
    const v = await voteOf(deps, found.manager, taskId, postedLog?.blockNumber ?? 0, log.blockNumber);
    dispute = {
      challenger: found.d?.challenger ?? ethers.ZeroAddress,
      bond: String(found.d?.bond ?? 0n),
      circuit: false,
      outcome,
      votes: v.votes,
      weightFor: String(v.weightFor),
      weightAgainst: String(v.weightAgainst),
      ballots: v.ballots,
    };
    if (outcome !== "NodeRight") problems.push(`THE DISPUTE'S RECORDED OUTCOME IS ${outcome ?? "MISSING"}`);
    settleOk = outcome === "NodeRight" && v.weightFor >= v.weightAgainst;
    if (outcome === "NodeRight" && !settleOk) problems.push("THE BALLOTS DO NOT ADD UP TO NodeRight");
    if (settleOk) {
      checked.push(
        `${dispute.challenger} challenged the outputs; the stake-weighted vote found the node right ` +
          `(${ethers.formatEther(v.weightFor)} OPG of stake for, ${ethers.formatEther(v.weightAgainst)} against, ` +
          `${v.votes.length} ballot(s), the challenger's own included)`,
      );
    }
    notChecked.push(
      "that the outputs are right: a dispute settled by vote shows only what the staked majority said",
    );
  }

  const out = await recomputeWithoutProof(ctx, s.task, s.outputs);
  if (s.via === "finalizeResult") {
    notChecked.push(
      "a proof of the outputs: none was made (none is, unless the result is disputed); the chain took them as " +
        `final because ${attesters.length} staked verifier(s) attested and nobody challenged within the window`,
    );
  }
  if (out.notChecked) {
    notChecked.push(out.notChecked);
  } else if (out.outputMatches) {
    checked.push(recomputedStatement);
    notChecked.push(QUANTIZED);
  } else {
    problems.push("the output recomputed from the bundle DIFFERS (or its input is not recoverable)");
  }
  if (out.outputMatches === null && s.via === "finalizeResult") {
    warnings.push("the result rests on its attesters alone: the output could not be recomputed here");
  }
  const optimistic: OptimisticAudit = {
    postedBy,
    postedBlock: postedLog?.blockNumber ?? null,
    windowEnd,
    quorum,
    attesters,
    ...(paid ? { attesterShare: String(paid.args.share) } : {}),
    ...(dispute ? { dispute } : {}),
  };
  const agree = outputsMatch && postedOk && listMatches && settleOk && out.outputMatches !== false;
  const how =
    settledBy === "attestations"
      ? `${attesters.length} of ${quorum} attestation(s), window over, unchallenged`
      : `disputed, settled by vote (${dispute?.outcome ?? "no outcome"})`;
  const detail = [how, ...problems, out.detail, ...warnings.map((w) => `WARNING: ${w}`)].join("; ");
  return {
    ...ctx.base,
    mode: "optimistic",
    settledBy,
    proofValid: null,
    bundleMatches: out.bundleMatches,
    outputMatches: out.outputMatches,
    agree,
    detail,
    checked,
    notChecked,
    warnings,
    setupSecure: false,
    ...(out.output ? { output: out.output } : {}),
    optimistic,
    checkedAt: new Date().toISOString(),
  };
}
