import { fail } from "./errors";

/** Bits of a field element used for packing: 252 < log2(r) ~ 253.6, so a packed word is always < r. */
export const WORD_BITS = 252;

/**
 * Layout of a bundle's public signals, in the order snarkjs and the verifier take them:
 * [ outputWords..., inputWords..., taskBinding ]. Written verbatim into manifest.json (`publicSignals`).
 */
export interface PublicSignalLayout {
  /** Number of words holding the packed outputs (the first signals). */
  outputWords: number;
  /** Number of input words: packed inputs (inline) or exactly 1, the Poseidon input commitment. */
  inputWords: number;
  inputMode: "inline" | "commitment";
  /** B: bits per packed value; value v is stored as v + 2^(B-1). */
  packBits: number;
  /** k = floor(252 / B) values per word. */
  valuesPerWord: number;
  /** Number of output values (row-major over the output shape). */
  outputCount: number;
  /** Number of input values (row-major over the input shape). */
  inputCount: number;
  /** Index of taskBinding: outputWords + inputWords, the last signal. */
  bindingIndex: number;
}

export function valuesPerWord(bits: number): number {
  return Math.floor(WORD_BITS / bits);
}

export function wordCount(count: number, bits: number): number {
  return Math.ceil(count / valuesPerWord(bits));
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 2 || bits > 126)
    fail("BAD_INPUT", `pack bits must be an integer in [2, 126], got ${bits}`);
}

/**
 * Packs signed fixed-point values into field elements: u = v + 2^(B-1) (must lie in [0, 2^B)),
 * k = floor(252 / B) values per word, word = sum_j u_j * 2^(B*j), row-major, the last word partially filled.
 */
export function packValues(values: readonly bigint[], bits: number): bigint[] {
  checkBits(bits);
  const k = valuesPerWord(bits);
  const offset = 1n << BigInt(bits - 1);
  const limit = 1n << BigInt(bits);
  const B = BigInt(bits);
  const words: bigint[] = [];
  for (let w = 0; w * k < values.length; w++) {
    let acc = 0n;
    for (let j = 0; j < k && w * k + j < values.length; j++) {
      const v = values[w * k + j];
      const u = v + offset;
      if (u < 0n || u >= limit)
        fail("OUT_OF_RANGE", `value #${w * k + j} = ${v} does not fit in ${bits} signed bits`);
      acc += u << (B * BigInt(j));
    }
    words.push(acc);
  }
  return words;
}

/** Inverse of packValues: the first `count` signed values held by `words`. */
export function unpackWords(words: readonly bigint[], count: number, bits: number): bigint[] {
  checkBits(bits);
  const k = valuesPerWord(bits);
  if (words.length !== Math.ceil(count / k)) {
    fail(
      "BAD_INPUT",
      `${words.length} words cannot hold exactly ${count} values of ${bits} bits (${k} per word)`,
    );
  }
  const B = BigInt(bits);
  const mask = (1n << B) - 1n;
  const offset = 1n << (B - 1n);
  const out: bigint[] = [];
  for (let i = 0; i < count; i++) {
    const w = words[Math.floor(i / k)];
    out.push(((w >> (B * BigInt(i % k))) & mask) - offset);
  }
  return out;
}

export function makeLayout(
  inputCount: number,
  outputCount: number,
  packBits: number,
  inputMode: "inline" | "commitment",
): PublicSignalLayout {
  checkBits(packBits);
  const outputWords = wordCount(outputCount, packBits);
  const inputWords = inputMode === "inline" ? wordCount(inputCount, packBits) : 1;
  return {
    outputWords,
    inputWords,
    inputMode,
    packBits,
    valuesPerWord: valuesPerWord(packBits),
    outputCount,
    inputCount,
    bindingIndex: outputWords + inputWords,
  };
}
