/** A client-side failure with a message that names the problem (bad input, unknown model, expired task). */
export class OpgClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OpgClientError";
  }
}

/** A model or task id as a caller writes it: `1`, `1n`. */
export type Id = number | bigint;

/** `id` as the bigint the contracts take; a negative, fractional or unsafe number is refused by name. */
export function toId(id: Id, what: "model" | "task"): bigint {
  if (typeof id === "bigint") {
    if (id < 0n) throw new OpgClientError(`${what} id ${id} is negative`);
    return id;
  }
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
    throw new OpgClientError(
      `${what} id ${String(id)} is not a whole number from 0 to 2^53 - 1 (pass a bigint)`,
    );
  }
  return BigInt(id);
}
