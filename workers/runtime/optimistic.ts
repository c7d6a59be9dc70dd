import { keccak256, solidityPacked, toBeHex, type Provider } from "ethers";
import { executeProgram, packValues, unpackWords } from "../../zkml";
import type { LoadedBundle } from "./bundles";
import { parseSubmitted, taskRegistryInterface, TOPICS, type SubmittedTask } from "./tasks";

/**
 * What the optimistic and TEE modes share between the inference and the verification node: the words a
 * node posts for a task (the model's quantized outputs, packed as the circuit packs them), the hash the
 * registry keeps of them, and the attester list the registry's pending word commits to.
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

/** keccak256 of the packed output words: what `attest`, `challenge`, `timeout` and `expireUnattested` take. */
export function outputsHash(outputs: readonly bigint[]): string {
  return keccak256(solidityPacked(["uint256[]"], [outputs]));
}

/**
 * The output words of `bundle`'s model on the quantized `input`: the fixed-point executor's outputs packed
 * with the model's pack width, bit for bit what a proof of the task would carry as its output signals.
 * Also returns the unpacked values.
 */
export function modelOutputWords(bundle: LoadedBundle, input: bigint[]): { values: bigint[]; words: bigint[] } {
  const values = executeProgram(bundle.program, input)[bundle.program.output.tensor];
  return { values, words: packValues(values, bundle.manifest.publicSignals.packBits) };
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
 * The attesters of `taskId` so far, in the order the registry appended them (its TaskAttested logs from
 * `fromBlock`, the block the result was posted in, on). Only the latest posting counts: a task is posted once.
 */
export async function attestersOf(reader: LogReader, taskId: bigint, fromBlock: number): Promise<string[]> {
  const logs = await reader.provider.getLogs({
    address: reader.tasksAddress,
    topics: [TOPICS.attested, toBeHex(taskId, 32)],
    fromBlock,
    toBlock: "latest",
  });
  const ordered = [...logs].sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
  const attesters: string[] = [];
  for (const log of ordered) {
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

/** Whether `err` is a revert for a stale attester list (another attestation landed first). */
export function isPendingMismatch(reason: string): boolean {
  return /TaskRegistryPendingMismatch/.test(reason);
}
