import { inputCommitment, packValues, unpackWords, type BundleManifest } from "../../zkml";
import { DataClientError, type DataClient } from "../data/client";
import { bytes32ToBundleId } from "../data/bundle-archive";
import type { SubmittedTask } from "./tasks";

/** A task whose input the model cannot take: refused with this reason, never claimed. */
export class InputRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InputRejectedError";
  }
}

/** What decoding a task's input needs of a bundle's manifest (a ZK or a plain bundle's). */
export type InputManifest = Pick<BundleManifest, "publicSignals"> & {
  quantization: Pick<BundleManifest["quantization"], "inputBits" | "commitmentPackBits">;
};

/**
 * The quantized input of a task, as the circuit will see it. Inline: the packed words from the event,
 * unpacked, range-checked and checked to be their canonical packing (inlineInputValues). Commitment: the
 * blob named by `inputDataHash` on the data node, a JSON `{"quantized": ["<int>", ...]}`, whose Poseidon
 * commitment must equal the task's input word.
 */
export async function decodeTaskInput(
  manifest: InputManifest,
  submitted: SubmittedTask,
  data: DataClient,
): Promise<bigint[]> {
  const layout = manifest.publicSignals;
  const words = submitted.input;
  if (words.length !== layout.inputWords) {
    throw new InputRejectedError(`input has ${words.length} words, the model takes ${layout.inputWords}`);
  }
  let values: bigint[];
  if (layout.inputMode === "inline") {
    values = inlineInputValues(manifest, words);
  } else {
    const id = bytes32ToBundleId(String(submitted.task.inputDataHash));
    let blob: Buffer;
    try {
      blob = await data.get(id, { maxBytes: quantizedBlobMaxBytes(layout.inputCount) });
    } catch (e) {
      if (e instanceof DataClientError && e.retryable) throw e;
      throw new InputRejectedError(`input blob ${id}: ${(e as Error).message}`);
    }
    values = parseQuantizedBlob(blob, layout.inputCount);
    checkRange(manifest, values);
    const commitment = inputCommitment(values, manifest.quantization.commitmentPackBits);
    if (commitment !== words[0])
      throw new InputRejectedError(`input blob ${id} does not match the input commitment`);
  }
  return values;
}

/**
 * The values of inline input words, refused (InputRejectedError) unless the words are exactly the canonical
 * packing of values the circuit accepts: unpacked, every value within the bundle's `inputBits` signed range,
 * and packed again with zkml's packValues to the very same words. Unpacking alone would ignore bits set above
 * a word's last value, and the circuit's packing constraint would then fail: no proof could exist.
 */
export function inlineInputValues(manifest: InputManifest, words: readonly bigint[]): bigint[] {
  const layout = manifest.publicSignals;
  let values: bigint[];
  try {
    values = unpackWords(words, layout.inputCount, layout.packBits);
  } catch (e) {
    throw new InputRejectedError(`input words do not decode: ${(e as Error).message}`);
  }
  checkRange(manifest, values);
  const canonical = packValues(values, layout.packBits);
  const bad = canonical.findIndex((w, i) => w !== words[i]);
  if (bad >= 0) {
    throw new InputRejectedError(
      `input word #${bad} = ${words[bad]} is not a canonical packing of ${layout.packBits}-bit values ` +
        `(bits set outside its values; canonical ${canonical[bad]}): no proof can exist`,
    );
  }
  return values;
}

function checkRange(manifest: InputManifest, values: bigint[]) {
  const limit = 1n << BigInt(manifest.quantization.inputBits - 1);
  const bad = values.findIndex((v) => v < -limit || v >= limit);
  if (bad >= 0) {
    throw new InputRejectedError(
      `input value #${bad} = ${values[bad]} is outside the quantization range of ${manifest.quantization.inputBits} signed bits`,
    );
  }
}

/**
 * Bytes a well-formed `{"quantized": [...]}` blob of `count` values can take: each value a quoted decimal
 * of at most 40 characters (a 128-bit signed integer has 40 with its sign) with its comma and some
 * whitespace, plus the object around them. A larger blob cannot decode to the model's input, so it is
 * refused before it is downloaded or parsed.
 */
export function quantizedBlobMaxBytes(count: number): number {
  return 1024 + count * 48;
}

function parseQuantizedBlob(blob: Buffer, count: number): bigint[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(blob.toString("utf8"));
  } catch {
    throw new InputRejectedError("input blob is not JSON");
  }
  const list = (parsed as { quantized?: unknown })?.quantized;
  if (!Array.isArray(list)) throw new InputRejectedError('input blob has no "quantized" array');
  if (list.length !== count)
    throw new InputRejectedError(`input blob has ${list.length} values, the model takes ${count}`);
  return list.map((v, i) => {
    if ((typeof v !== "string" && typeof v !== "number") || !/^-?[0-9]+$/.test(String(v))) {
      throw new InputRejectedError(`input value #${i} is ${JSON.stringify(v)}, not an integer`);
    }
    return BigInt(v);
  });
}
