import { packValues } from "./packing";
import { poseidon } from "./poseidon";

/**
 * Poseidon commitment to a quantized input (commitment mode), as circuits/lib/input-commitment.circom
 * computes it: the values are packed with `packBits` bits each (packValues), then
 *   h_0 = number of values;  h_{c+1} = Poseidon16(h_c, words[15c .. 15c+14], zero-padded);  commitment = h_last.
 */
export function inputCommitment(values: readonly bigint[], packBits: number): bigint {
  return commitWords(packValues(values, packBits), values.length);
}

/** The Poseidon chain over already packed words (h_0 = nValues). */
export function commitWords(words: readonly bigint[], nValues: number): bigint {
  let h = BigInt(nValues);
  for (let c = 0; c * 15 < words.length; c++) {
    const chunk = words.slice(c * 15, c * 15 + 15);
    while (chunk.length < 15) chunk.push(0n);
    h = poseidon([h, ...chunk]);
  }
  return h;
}
