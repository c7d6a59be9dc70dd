import { formatEther } from "ethers";
import { fromField } from "../../zkml/field";
import { unpackWords } from "../../zkml/packing";

export const short = (hex: string, n = 6) =>
  hex.length > 2 * n + 4 ? `${hex.slice(0, n + 2)}…${hex.slice(-n)}` : hex;

/** OPG amounts (18 decimals), trimmed to 4 decimals. */
export function opg(wei: bigint | undefined): string {
  if (wei === undefined) return "–";
  const s = formatEther(wei);
  const [i, f = ""] = s.split(".");
  const t = f.slice(0, 4).replace(/0+$/, "");
  return `${i}${t ? "." + t : ""} OPG`;
}

export function ago(unix: number | undefined, now = Date.now() / 1000): string {
  if (unix === undefined) return "";
  const d = Math.max(0, Math.round(now - unix));
  if (d < 60) return `${d} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return `${Math.floor(d / 86400)} d ago`;
}

export function time(unix: number | undefined): string {
  return unix === undefined
    ? ""
    : new Date(unix * 1000)
        .toISOString()
        .replace("T", " ")
        .replace(/\.\d+Z$/, " UTC");
}

/**
 * Output words decoded with the model's registered pack width and scale: the signed fixed-point values over
 * 2^scaleBits. `count` is the number of values (the product of the output shape); when the words cannot
 * hold exactly that many, the error is returned instead.
 */
export function decodeOutputs(
  words: readonly bigint[],
  count: number,
  packBits: number,
  scaleBits: number,
): { values: number[] } | { error: string } {
  try {
    const values = unpackWords(words.map(fromFieldSafe), count, packBits);
    return { values: values.map((v) => Number(v) / 2 ** scaleBits) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

// Packed words are non-negative; fromField is a no-op on them, kept for words a lying RPC made negative.
const fromFieldSafe = (w: bigint) => (w < 0n ? fromField(w) : w);

export function fmtNum(v: number, digits = 4): string {
  if (!Number.isFinite(v)) return String(v);
  return Number(v.toFixed(digits)).toString();
}

export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
