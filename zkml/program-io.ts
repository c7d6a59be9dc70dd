import { QProgram } from "./quant/program";

const BIGINT_KEYS = new Set(["weights", "bias", "coef", "consts", "mult", "maxAbs"]);

/** Serialises a program to JSON; bigints become decimal strings. */
export function programToJson(program: QProgram): string {
  return JSON.stringify(program, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

export function programFromJson(text: string): QProgram {
  return JSON.parse(text, (k, v) => {
    if (!BIGINT_KEYS.has(k)) return v;
    if (Array.isArray(v)) return v.map((x) => BigInt(x));
    return BigInt(v);
  }) as QProgram;
}
