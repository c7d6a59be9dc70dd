/**
 * What the task page's checks report. Each check says what it established on its own (`proved`), what it
 * took from somewhere else without re-checking it (`trusted`), and, when it failed, why (`message`).
 */

/**
 * pass: re-checked here and found right. fail: re-checked here and found wrong (or it could not be run).
 * trust: nothing to re-check here; the result rests on what `trusted` says. pending: not settled yet, or
 * still running. skip: does not apply to this task.
 */
export type CheckStatus = "pass" | "fail" | "trust" | "pending" | "skip";

export interface Check {
  /** Stable id, the element's data-check: bundle-hash, vk-hash, public-signals, groth16, ... */
  id: string;
  title: string;
  status: CheckStatus;
  /** What the check established (pass), or would establish. */
  proved?: string;
  /** What it rests on without re-checking it here. */
  trusted?: string;
  /** Why it failed, pending or was skipped. */
  message?: string;
  /** Values worth showing beside it (hashes, counts), label -> value. */
  details?: [string, string][];
}

/** The overall verdict: fail if any check failed, pending while any is, skip when there is no result. */
export type VerdictStatus = "pass" | "fail" | "pending" | "skip";

export function verdictOf(checks: readonly Check[], noResult: boolean): VerdictStatus {
  if (checks.some((c) => c.status === "fail")) return "fail";
  if (checks.some((c) => c.status === "pending")) return "pending";
  if (noResult) return "skip";
  return "pass";
}

/** A check's message from anything thrown (an RPC error, a failed fetch). */
export function errorText(e: unknown): string {
  if (e instanceof Error) {
    const short = (e as { shortMessage?: string }).shortMessage;
    return short ?? e.message;
  }
  return String(e);
}
