import type { Interface, JsonRpcProvider, TransactionReceipt, Wallet } from "ethers";
import type { Journal } from "./journal";
import type { Logger } from "./logger";
import { sleep } from "./service";

/** A transaction the chain rejects (a revert): recorded, never retried blindly. */
export class RevertedError extends Error {
  constructor(
    readonly reason: string,
    readonly errorName?: string,
  ) {
    super(`reverted: ${reason}`);
    this.name = "RevertedError";
  }
}

export interface SubmitterOptions {
  /** Seconds to wait for a receipt before replacing the transaction with higher fees. */
  replaceAfterSeconds: number;
  /** Most fee bumps per transaction. */
  maxReplacements: number;
  /** Most attempts for errors that can succeed later (connection lost, timeouts, rate limits). */
  maxRetries: number;
  /** Build and simulate, but never send. */
  dryRun: boolean;
}

/**
 * Sends one key's transactions: its own nonce counter (serialised, re-synced from the chain after errors),
 * EIP-1559 fees from the node's fee data, a replacement with bumped fees when a transaction is stuck,
 * bounded retries with exponential backoff for transient errors, and a simulation before sending so a
 * revert is caught, decoded and recorded instead of paid for.
 */
export class TxSubmitter {
  private nextNonce?: number;
  private queue: Promise<unknown> = Promise.resolve();
  gasSpent = 0n;

  constructor(
    private readonly wallet: Wallet,
    private readonly provider: JsonRpcProvider,
    private readonly journal: Journal,
    private readonly errors: Interface[],
    private readonly opts: SubmitterOptions,
    private readonly log: Logger,
  ) {}

  /** Send `data` to `to` and wait for it to be mined; resolves with the receipt, or null in dry-run. */
  send(kind: string, to: string, data: string, taskId?: bigint): Promise<TransactionReceipt | null> {
    // One transaction at a time per key keeps nonces in order; concurrency lives in proving, not here.
    const run = this.queue.then(() => this.sendNow(kind, to, data, taskId));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async sendNow(kind: string, to: string, data: string, taskId?: bigint) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.sendOnce(kind, to, data, taskId);
      } catch (err) {
        // Whatever went wrong, the next attempt asks the chain for the nonce: a reorg or a dropped
        // transaction leaves the local counter ahead of the chain.
        this.nextNonce = undefined;
        const retryable = isTransient(err) || isNonceError(err);
        if (err instanceof RevertedError || !retryable || attempt >= this.opts.maxRetries) throw err;
        const delay = Math.min(30_000, 250 * 2 ** attempt);
        this.log.warn(
          { kind, taskId: taskId?.toString(), attempt, delay, err: (err as Error).message },
          "transient error; retrying",
        );
        await sleep(delay);
      }
    }
  }

  private async sendOnce(kind: string, to: string, data: string, taskId?: bigint) {
    const from = this.wallet.address;
    let gasLimit: bigint;
    try {
      gasLimit = await this.provider.estimateGas({ from, to, data });
    } catch (err) {
      const decoded = this.decodeRevert(err);
      if (decoded) throw decoded;
      throw err;
    }
    gasLimit = (gasLimit * 12n) / 10n;
    if (this.opts.dryRun) {
      this.log.info(
        { kind, taskId: taskId?.toString(), gasLimit: gasLimit.toString() },
        "dry run: not sending",
      );
      return null;
    }
    this.nextNonce ??= await this.provider.getTransactionCount(from, "pending");
    const nonce = this.nextNonce;
    const fees = await this.provider.getFeeData();
    let maxPriorityFeePerGas = fees.maxPriorityFeePerGas ?? 1_000_000_000n;
    let maxFeePerGas = fees.maxFeePerGas ?? (fees.gasPrice ?? 1_000_000_000n) * 2n;
    const chainId = (await this.provider.getNetwork()).chainId;
    const hashes: string[] = [];
    for (let replacement = 0; ; replacement++) {
      const signed = await this.wallet.signTransaction({
        type: 2,
        chainId,
        nonce,
        to,
        data,
        gasLimit,
        maxFeePerGas,
        maxPriorityFeePerGas,
      });
      const hash = await this.provider.send("eth_sendRawTransaction", [signed]).catch((err) => {
        // A replacement racing the original's inclusion: the nonce is used, look for any of our receipts.
        if (/nonce too low|already known|replacement/i.test(String(err?.message)) && hashes.length > 0)
          return null;
        throw err;
      });
      if (hash) {
        hashes.push(hash);
        this.journal.recordTx({ hash, nonce, kind, taskId, status: "sent" });
        this.log.info({ kind, taskId: taskId?.toString(), tx: hash, nonce, replacement }, "transaction sent");
      }
      this.nextNonce = nonce + 1;
      const receipt = await this.waitForAny(hashes, this.opts.replaceAfterSeconds * 1000);
      if (receipt) {
        this.gasSpent += receipt.gasUsed * receipt.gasPrice;
        this.journal.setTxStatus(receipt.hash, receipt.status === 1 ? "mined" : "reverted");
        if (receipt.status !== 1) throw new RevertedError(`${kind} mined but reverted (tx ${receipt.hash})`);
        return receipt;
      }
      if (replacement >= this.opts.maxReplacements) {
        this.nextNonce = undefined;
        throw new Error(`${kind}: no receipt after ${replacement} fee bumps`);
      }
      // Stuck: same nonce, fees up by 12.5% (above the 10% most nodes require for a replacement).
      maxPriorityFeePerGas = (maxPriorityFeePerGas * 1125n) / 1000n + 1n;
      maxFeePerGas = (maxFeePerGas * 1125n) / 1000n + 1n;
      this.log.warn(
        { kind, taskId: taskId?.toString(), nonce },
        "transaction stuck; replacing with higher fees",
      );
    }
  }

  private async waitForAny(hashes: string[], timeoutMs: number): Promise<TransactionReceipt | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const hash of hashes) {
        const receipt = await this.provider.getTransactionReceipt(hash);
        if (receipt) return receipt;
      }
      await sleep(100);
    }
    return null;
  }

  /** The custom error a simulation reverted with, decoded by the registry's ABI, or undefined. */
  decodeRevert(err: unknown): RevertedError | undefined {
    const data = revertData(err);
    if (data === undefined) {
      const message = String((err as Error)?.message ?? err);
      return /revert/i.test(message) ? new RevertedError(message.slice(0, 300)) : undefined;
    }
    for (const iface of this.errors) {
      try {
        const parsed = iface.parseError(data);
        if (parsed) {
          const args = parsed.args.map((a) => String(a)).join(", ");
          return new RevertedError(`${parsed.name}(${args})`, parsed.name);
        }
      } catch {
        // not this interface's error
      }
    }
    return new RevertedError(`unknown revert data ${data.slice(0, 74)}`);
  }
}

function revertData(err: unknown): string | undefined {
  let e = err as { data?: unknown; error?: unknown; info?: { error?: { data?: unknown } } } | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    if (typeof e.data === "string" && e.data.startsWith("0x")) return e.data;
    if (typeof e.info?.error?.data === "string") return e.info.error.data as string;
    e = (e.error ?? (typeof e.data === "object" ? e.data : undefined)) as typeof e;
  }
  return undefined;
}

/** The chain's nonce moved under us (a reorg, a dropped or foreign transaction): resync and resend. */
export function isNonceError(err: unknown): boolean {
  return /nonce too (high|low)|NONCE_EXPIRED|nonce has already been used/i.test(
    `${(err as { code?: string })?.code ?? ""} ${(err as Error)?.message ?? ""}`,
  );
}

/** Errors that can succeed if tried again: the transport, not the transaction. */
export function isTransient(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  const text = `${e?.code ?? ""} ${e?.message ?? ""}`;
  return /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|socket hang up|NETWORK_ERROR|SERVER_ERROR|TIMEOUT|fetch failed|429|503|502|other side closed/i.test(
    text,
  );
}
