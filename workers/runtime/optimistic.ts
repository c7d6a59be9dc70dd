import path from "node:path";
import { keccak256, solidityPacked, toBeHex, type Provider } from "ethers";
import type { InferenceSession } from "onnxruntime-node";
import { executeProgram, packValues, unpackWords } from "../../zkml";
import { dequantizePlainInput, quantizePlainOutput } from "../../zkml/plain-bundle";
import { isPlainBundle, type AnyBundle, type LoadedBundle, type LoadedPlainBundle } from "./bundles";
import { parseSubmitted, taskRegistryInterface, TOPICS, type SubmittedTask } from "./tasks";

/**
 * What the optimistic and TEE modes share between the inference and the verification node: the words a
 * node posts for a task (the model's quantized outputs, packed as the circuit packs them), the hash the
 * registry keeps of them, and the attester list the registry's pending word commits to (fixed when the
 * result is posted: the attestations ride in the posting transaction).
 */

/** TaskRegistry.TaskStatus by number. */
export const TASK_STATUS = [
  "None",
  "Open",
  "Claimed",
  "Verified",
  "Expired",
  "Pending",
  "Disputed",
  "Rejected",
] as const;
export type TaskStatusName = (typeof TASK_STATUS)[number];

/** ITaskRegistry.DisputeOutcome by number. */
export const DISPUTE_OUTCOME = ["NodeRight", "NodeWrong", "Undecided"] as const;

/**
 * keccak256 of the packed output words: what `challengeWithProof`, `challenge` and `expireUnattested` take
 * (and what an attestation signs, through `attestationDigest`).
 */
export function outputsHash(outputs: readonly bigint[]): string {
  return keccak256(solidityPacked(["uint256[]"], [outputs]));
}

/**
 * The output words of `bundle`'s model on the quantized `input`: the fixed-point executor's outputs packed
 * with the model's pack width, bit for bit what a proof of the task would carry as its output signals.
 * Also returns the unpacked values. Runs in this process: for one-shot commands and tests. A long-lived node
 * runs strangers' models through execution-policy.ts's ModelExecutor (the sandbox's processes, under its
 * limits), which gives the same words.
 */
export function modelOutputWords(
  bundle: LoadedBundle,
  input: bigint[],
): { values: bigint[]; words: bigint[] } {
  const values = executeProgram(bundle.program, input)[bundle.program.output.tensor];
  return { values, words: packValues(values, bundle.manifest.publicSignals.packBits) };
}

/** One onnxruntime session per plain bundle directory, created on first use. */
const sessions = new Map<string, Promise<InferenceSession>>();

function plainSession(bundle: LoadedPlainBundle): Promise<InferenceSession> {
  let session = sessions.get(bundle.dir);
  if (!session) {
    // Loaded on use: the native module is only needed by nodes that serve plain bundles.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ort = require("onnxruntime-node") as typeof import("onnxruntime-node");
    session = ort.InferenceSession.create(path.join(bundle.dir, bundle.manifest.onnx.file));
    sessions.set(bundle.dir, session);
    session.catch(() => sessions.delete(bundle.dir));
  }
  return session;
}

/**
 * The output values and words of a bundle of either kind on the quantized `input`: a ZK bundle's
 * fixed-point executor (modelOutputWords), or, for a plain bundle, the execution every node follows
 * (zkml/plain-bundle.ts): onnxruntime on q / 2^s in float32, outputs rounded half away from zero at 2^s and
 * packed. Bit for bit the same on every node with the same onnxruntime build. In this process, with no
 * limit: the reference the sandbox (sandbox.ts, exec-worker-impl.ts) is tested against, and what one-shot
 * commands use; nodes use ModelExecutor.
 */
export async function bundleOutputWords(
  bundle: AnyBundle,
  input: bigint[],
): Promise<{ values: bigint[]; words: bigint[] }> {
  if (!isPlainBundle(bundle)) return modelOutputWords(bundle, input);
  const m = bundle.manifest;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ort = require("onnxruntime-node") as typeof import("onnxruntime-node");
  const session = await plainSession(bundle);
  const x = new ort.Tensor("float32", dequantizePlainInput(m, input), m.input.shape);
  const out = (await session.run({ [m.input.name]: x }))[m.output.name];
  const values = quantizePlainOutput(m, out.data as Float32Array);
  return { values, words: packValues(values, m.publicSignals.packBits) };
}

/**
 * FAULT INJECTION, FOR TESTS ONLY: `words` with the first output value changed by one (+1, or -1 where +1
 * would leave its signed range), re-packed canonically, so the registry accepts the words and only a
 * re-execution shows them wrong.
 */
export function corruptOutputWords(words: readonly bigint[], count: number, packBits: number): bigint[] {
  const values = unpackWords(words, count, packBits);
  const max = (1n << BigInt(packBits - 1)) - 1n;
  values[0] = values[0] < max ? values[0] + 1n : values[0] - 1n;
  return packValues(values, packBits);
}

/** The reads `attestersOf` and `submittedTaskOf` need. */
export interface LogReader {
  provider: Provider;
  tasksAddress: string;
}

/**
 * The attesters of the posted result of `taskId`, in the registry's order: the TaskAttested logs of the
 * posting transaction (searched from `fromBlock`, the block the result was posted in, on). The set is fixed
 * at posting; a task reopened after an unattested result is posted again, and only the latest posting
 * counts, so only the logs of the latest transaction that has any are read.
 */
export async function attestersOf(reader: LogReader, taskId: bigint, fromBlock: number): Promise<string[]> {
  const logs = await reader.provider.getLogs({
    address: reader.tasksAddress,
    topics: [TOPICS.attested, toBeHex(taskId, 32)],
    fromBlock,
    toBlock: "latest",
  });
  const sorted = [...logs].sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
  const latest = sorted[sorted.length - 1]?.transactionHash;
  const attesters: string[] = [];
  for (const log of sorted.filter((l) => l.transactionHash === latest)) {
    const parsed = taskRegistryInterface.parseLog(log)!;
    // `count` is the attester's place in the list: a replayed or reordered log cannot shuffle it.
    attesters[Number(parsed.args.count) - 1] = parsed.args.attester;
  }
  return attesters.filter(Boolean);
}

/** The TaskSubmitted of `taskId` (its committed Task and input), searched from `fromBlock` to `toBlock`. */
export async function submittedTaskOf(
  reader: LogReader,
  taskId: bigint,
  fromBlock: number,
  toBlock: number | "latest" = "latest",
): Promise<SubmittedTask | undefined> {
  const logs = await reader.provider.getLogs({
    address: reader.tasksAddress,
    topics: [TOPICS.submitted, toBeHex(taskId, 32)],
    fromBlock,
    toBlock,
  });
  return logs[0] ? parseSubmitted(logs[0]) : undefined;
}
