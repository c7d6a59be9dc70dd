/** A client-side failure with a message that names the problem (bad input, unknown model, expired task). */
export class OpgClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OpgClientError";
  }
}

/**
 * An optimistic task whose posted outputs were rejected after a dispute: its fee went back to the requester.
 * `outcome` is how the dispute ended: `NodeWrong` (a challenger proved other outputs on the task's input, or
 * the vote found them wrong: the node and its attesters were slashed) or `Undecided` (a vote without a
 * quorum of stake: nobody slashed).
 */
export class TaskRejectedError extends OpgClientError {
  constructor(
    message: string,
    readonly taskId: bigint,
    readonly outcome: "NodeRight" | "NodeWrong" | "Undecided" | undefined,
    readonly refund: bigint | undefined,
  ) {
    super(message);
    this.name = "TaskRejectedError";
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
