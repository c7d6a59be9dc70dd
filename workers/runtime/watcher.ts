import type { JsonRpcProvider, Log } from "ethers";
import type { Journal } from "./journal";
import type { Logger } from "./logger";

export interface WatcherOptions {
  /** Contract addresses whose logs are wanted. */
  addresses: string[];
  /** Topic0 values to fetch (event selectors). */
  topics: string[];
  /** Blocks to wait behind the head before acting on a block. */
  confirmations: number;
  /** First block to scan on a fresh journal. */
  startBlock: number;
  /** Largest eth_getLogs range. */
  maxRange?: number;
}

export interface WatcherHandlers {
  /** Logs of one range, in chain order. Must be idempotent: a range can be delivered again after a crash. */
  onLogs(logs: Log[]): Promise<void>;
  /** A reorg replaced blocks above `ancestor`: undo what those blocks caused, then they are scanned again. */
  onReorg(ancestor: number): Promise<void>;
}

/**
 * Log polling with confirmations and a persisted checkpoint. After a restart it backfills from the
 * checkpoint. Before every poll it checks the checkpoint block's hash against the chain; on a mismatch it
 * walks back through the recorded hashes to the last common block, lets the handler undo, and rescans.
 */
export class ChainWatcher {
  /** Block distance between the head and the checkpoint, for the lag metric. */
  lag = 0;

  constructor(
    private readonly provider: JsonRpcProvider,
    private readonly journal: Journal,
    private readonly opts: WatcherOptions,
    private readonly handlers: WatcherHandlers,
    private readonly log: Logger,
  ) {}

  /** One poll: detect reorgs, then deliver confirmed logs up to head - confirmations. */
  async poll(): Promise<void> {
    const head = await this.provider.getBlockNumber();
    const target = head - this.opts.confirmations;
    let checkpoint = this.journal.checkpoint();
    if (checkpoint) {
      const ancestor = await this.findCommonAncestor();
      if (ancestor !== checkpoint.number) {
        this.log.warn(
          { from: checkpoint.number, ancestor },
          "reorg detected: rescanning from the common ancestor",
        );
        this.journal.rewindTo(ancestor);
        await this.handlers.onReorg(ancestor);
        checkpoint = this.journal.checkpoint();
      }
    }
    let from = checkpoint ? checkpoint.number + 1 : this.opts.startBlock;
    this.lag = Math.max(0, head - (from - 1));
    const maxRange = this.opts.maxRange ?? 2000;
    while (from <= target) {
      const to = Math.min(target, from + maxRange - 1);
      const logs = await this.provider.getLogs({
        address: this.opts.addresses,
        topics: [this.opts.topics],
        fromBlock: from,
        toBlock: to,
      });
      const block = await this.provider.getBlock(to);
      if (!block?.hash) throw new Error(`block ${to} not available`);
      // A log from a block that is no longer canonical means a reorg raced this range: retry next poll.
      if (logs.some((l) => l.blockNumber === to && l.blockHash !== block.hash)) return;
      await this.handlers.onLogs(logs);
      this.journal.advance(to, block.hash);
      from = to + 1;
      this.lag = Math.max(0, head - to);
    }
  }

  private async findCommonAncestor(): Promise<number> {
    for (const known of this.journal.knownBlocksDescending()) {
      const block = await this.provider.getBlock(known.number);
      if (block?.hash === known.hash) return known.number;
    }
    // Deeper than the hashes kept: rescan from the start block.
    return this.opts.startBlock - 1;
  }
}
