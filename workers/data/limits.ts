/**
 * Per-client accounting of the data node, all in memory and keyed by a string (a client IP, or an uploader's
 * address): a token bucket of requests, a count of requests in flight, and a byte quota per fixed window.
 * Entries that have gone idle are dropped by `prune`, so a stream of distinct clients cannot grow them
 * without bound for longer than an idle period.
 */

/** Requests per second with a burst: `take` answers how many seconds to wait when the bucket is empty. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** `perSecond` 0 turns the limit off. */
  constructor(
    readonly perSecond: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token for `key`: 0 when allowed, else the seconds until a token is available. */
  take(key: string): number {
    if (this.perSecond <= 0) return 0;
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: t };
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.perSecond);
    b.at = t;
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }

  /** Drops buckets that have refilled completely (they hold nothing a new bucket would not). */
  prune(): void {
    const t = this.now();
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((t - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}

/** Requests in flight per key, up to `max` each (0: no limit). */
export class ConcurrencyLimiter {
  private readonly counts = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Counts one more for `key` and returns its release, or null when the key is at its limit. */
  acquire(key: string): (() => void) | null {
    const n = this.counts.get(key) ?? 0;
    if (this.max > 0 && n >= this.max) return null;
    this.counts.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(key) ?? 1) - 1;
      if (left <= 0) this.counts.delete(key);
      else this.counts.set(key, left);
    };
  }

  inFlight(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/**
 * Bytes per key per fixed window of `windowSeconds` (`maxBytes` 0: no quota). Uploads reserve their size
 * before the body is read and give back what was not stored (a failed or aborted upload costs nothing).
 */
export class ByteQuota {
  private readonly used = new Map<string, { start: number; bytes: number }>();

  constructor(
    readonly maxBytes: number,
    readonly windowSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  private entry(key: string): { start: number; bytes: number } {
    const t = this.now();
    let e = this.used.get(key);
    if (!e || t - e.start >= this.windowSeconds * 1000) {
      e = { start: t, bytes: 0 };
      this.used.set(key, e);
    }
    return e;
  }

  /**
   * Reserves `bytes` for `key`: null when within the quota (the caller must `release` what it does not use),
   * else the seconds until the window ends. A key with nothing used yet may always reserve one blob, so a
   * quota smaller than the largest blob does not lock an uploader out forever.
   */
  reserve(key: string, bytes: number): { retryAfter: number; used: number } | null {
    if (this.maxBytes <= 0) return null;
    const e = this.entry(key);
    if (e.bytes > 0 && e.bytes + bytes > this.maxBytes) {
      const retryAfter = Math.max(1, Math.ceil((e.start + this.windowSeconds * 1000 - this.now()) / 1000));
      return { retryAfter, used: e.bytes };
    }
    e.bytes += bytes;
    return null;
  }

  /** Gives back `bytes` of a reservation (in the same window; an expired window has already forgotten it). */
  release(key: string, bytes: number): void {
    const e = this.used.get(key);
    if (e) e.bytes = Math.max(0, e.bytes - bytes);
  }

  /** Charges `bytes` without a check (an upload that turned out larger than it declared). */
  charge(key: string, bytes: number): void {
    if (this.maxBytes > 0) this.entry(key).bytes += bytes;
  }

  prune(): void {
    const t = this.now();
    for (const [key, e] of this.used) {
      if (t - e.start >= this.windowSeconds * 1000) this.used.delete(key);
    }
  }
}
