import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/**
 * Content-addressed blob store on local disk. A blob's id is the lowercase hex sha256 of its bytes (64
 * characters, no 0x); the blob lives at `<dir>/<id[0..2]>/<id>`. Writes go to `<dir>/tmp/` first, are
 * fsynced, and are then linked into place, so a crash never leaves a partial blob under its id and two
 * concurrent writers of the same blob agree on who created it. Reads never hold a blob in memory: `openRead`
 * streams it through a hash that fails the stream at its end when the bytes no longer match the id, and
 * `verify` checks a blob in one streaming pass before its first serving (remembered per id, size and mtime).
 *
 * With `maxStoreBytes`, a blob that would not fit makes room by deleting the least recently used blobs that
 * are older than `minRetentionMs` and not in the `referenced` set; when that is not enough it is refused
 * (STORE_FULL) and nothing is deleted.
 */

export const BLOB_ID_PATTERN = /^[0-9a-f]{64}$/;

/**
 * Hard ceiling for `maxBlobBytes`: the data node streams every blob, but its clients (DataClient.get, the
 * bundle reader) hold a whole blob in one Buffer.
 */
export const MAX_BLOB_BYTES_LIMIT = 2 ** 31 - 1;

export type BlobErrorCode =
  "BAD_ID" | "NOT_FOUND" | "TOO_LARGE" | "CORRUPT" | "EXPECT_MISMATCH" | "STORE_FULL";

export class BlobError extends Error {
  constructor(
    readonly code: BlobErrorCode,
    message: string,
    readonly id?: string,
  ) {
    super(message);
    this.name = "BlobError";
  }
}

export function sha256Hex(bytes: Uint8Array): string {
  return crypto.createHash("sha256").update(bytes).digest("hex");
}

export function isBlobId(id: unknown): id is string {
  return typeof id === "string" && BLOB_ID_PATTERN.test(id);
}

/** Throws BAD_ID unless `id` is exactly 64 lowercase hex characters (which also rules out any path). */
export function assertBlobId(id: unknown): string {
  if (!isBlobId(id)) {
    const shown =
      typeof id === "string" ? JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}...` : id) : typeof id;
    throw new BlobError(
      "BAD_ID",
      `malformed blob id ${shown}: expected 64 lowercase hex characters (sha256)`,
    );
  }
  return id;
}

export interface BlobStoreOptions {
  /** Root directory; created if missing. */
  dir: string;
  /** Largest blob accepted, in bytes. */
  maxBlobBytes: number;
  /** Called whenever a read finds a blob whose bytes no longer hash to its id. */
  onCorrupt?: (id: string, actualSha256: string) => void;
  /** Total bytes the store may hold; 0: no limit. */
  maxStoreBytes?: number;
  /** Blobs stored more recently than this are never evicted, in ms (default one day). */
  minRetentionMs?: number;
  /** Ids that must not be evicted (what the chain still needs); a throw stops that eviction. */
  referenced?: () => Promise<Set<string>>;
  /** Called for each blob evicted to make room. */
  onEvict?: (id: string, size: number) => void;
  /** Called when `referenced` throws: that eviction is skipped (nothing is known to be unreferenced). */
  onReferenceError?: (e: Error) => void;
  now?: () => number;
}

/** What the store knows of one blob, for eviction. */
interface Entry {
  size: number;
  /** When it was stored (the file's mtime at open), ms. */
  storedAt: number;
  /** Last PUT or GET, ms. */
  usedAt: number;
}

/** An open blob: its size and a stream of its bytes that errors (CORRUPT) at the end if they do not hash to the id. */
export interface BlobReader {
  size: number;
  stream: Readable;
}

export interface PutResult {
  id: string;
  size: number;
  /** False when the store already held the blob. */
  created: boolean;
  /** True when the store held a corrupt copy under this id and the new bytes replaced it. */
  repaired: boolean;
}

export interface BlobStats {
  blobs: number;
  bytes: number;
  /** Blobs deleted to make room since the store was opened. */
  evicted: number;
}

/** Verified (id, size, mtime) triples remembered at most; beyond it the oldest are forgotten. */
const VERIFIED_CACHE_ENTRIES = 10_000;

export class BlobStore {
  readonly dir: string;
  readonly maxBlobBytes: number;
  private readonly tmpDir: string;
  readonly maxStoreBytes: number;
  private readonly minRetentionMs: number;
  private readonly referenced?: () => Promise<Set<string>>;
  private readonly onCorrupt?: (id: string, actual: string) => void;
  private readonly onEvict?: (id: string, size: number) => void;
  private readonly onReferenceError?: (e: Error) => void;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  /** `${id}:${size}:${mtimeMs}` of blobs a full streaming pass found intact. */
  private readonly verified = new Set<string>();
  /** Streaming verifications in progress, so concurrent first reads of a blob share one pass. */
  private readonly verifying = new Map<string, Promise<void>>();
  /** Commits (and the evictions they cause) run one at a time so the accounting stays exact. */
  private commitQueue: Promise<unknown> = Promise.resolve();
  private total = 0;
  private evicted = 0;

  private constructor(opts: BlobStoreOptions) {
    if (
      !Number.isInteger(opts.maxBlobBytes) ||
      opts.maxBlobBytes < 1 ||
      opts.maxBlobBytes > MAX_BLOB_BYTES_LIMIT
    ) {
      throw new Error(`maxBlobBytes must be an integer in [1, ${MAX_BLOB_BYTES_LIMIT}]`);
    }
    this.dir = path.resolve(opts.dir);
    this.tmpDir = path.join(this.dir, "tmp");
    this.maxBlobBytes = opts.maxBlobBytes;
    this.maxStoreBytes = opts.maxStoreBytes ?? 0;
    if (!Number.isSafeInteger(this.maxStoreBytes) || this.maxStoreBytes < 0) {
      throw new Error("maxStoreBytes must be a non-negative integer");
    }
    this.minRetentionMs = opts.minRetentionMs ?? 86_400_000;
    this.referenced = opts.referenced;
    this.onCorrupt = opts.onCorrupt;
    this.onEvict = opts.onEvict;
    this.onReferenceError = opts.onReferenceError;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Opens (creating if needed) a store: removes temp files a crash left behind and counts the blobs
   * already held, so the stats are right after a restart.
   */
  static async open(opts: BlobStoreOptions): Promise<BlobStore> {
    const store = new BlobStore(opts);
    await fs.promises.mkdir(store.tmpDir, { recursive: true });
    for (const name of await fs.promises.readdir(store.tmpDir)) {
      await fs.promises.rm(path.join(store.tmpDir, name), { force: true, recursive: true });
    }
    for (const shard of await fs.promises.readdir(store.dir)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      for (const name of await fs.promises.readdir(path.join(store.dir, shard))) {
        if (!isBlobId(name) || !name.startsWith(shard)) continue;
        const st = await fs.promises.stat(path.join(store.dir, shard, name));
        if (!st.isFile()) continue;
        store.entries.set(name, { size: st.size, storedAt: st.mtimeMs, usedAt: st.mtimeMs });
        store.total += st.size;
      }
    }
    return store;
  }

  /** Blobs and bytes held (as counted at open plus what this instance added since). */
  stats(): BlobStats {
    return { blobs: this.entries.size, bytes: this.total, evicted: this.evicted };
  }

  pathOf(id: string): string {
    assertBlobId(id);
    return path.join(this.dir, id.slice(0, 2), id);
  }

  async has(id: string): Promise<boolean> {
    return (await this.size(id)) !== null;
  }

  /** Stored size in bytes, or null when absent. Does not re-hash (see `get`). */
  async size(id: string): Promise<number | null> {
    try {
      const st = await fs.promises.stat(this.pathOf(id));
      return st.isFile() ? st.size : null;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  /**
   * The blob's bytes, re-hashed before they are returned. Throws NOT_FOUND, or CORRUPT (and reports it
   * through `onCorrupt`) when the bytes on disk no longer hash to the id. Holds the whole blob: for tests and
   * small blobs; the server streams with `openRead`.
   */
  async get(id: string): Promise<Buffer> {
    const r = await this.openRead(id);
    const chunks: Buffer[] = [];
    for await (const c of r.stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * Opens a blob for streaming. The stream hashes what it reads and holds back its last chunk until the
   * hash is known: when the bytes do not match the id it fails with CORRUPT instead of ending, so a reader
   * never sees a complete corrupt blob. Throws NOT_FOUND at once.
   */
  async openRead(id: string): Promise<BlobReader> {
    const file = this.pathOf(id);
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(file, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "EISDIR") throw this.notFound(id);
      throw e;
    }
    let st: fs.Stats;
    try {
      st = await fh.stat();
      if (!st.isFile()) throw this.notFound(id);
    } catch (e) {
      await fh.close();
      throw e;
    }
    this.touch(id);
    const source = fh.createReadStream({ highWaterMark: 64 * 1024 });
    const check = this.hashCheck(id, () => this.verified.delete(verifiedKey(id, st)));
    source.on("error", (e) => check.destroy(e));
    // Whoever consumes `check` may destroy it (a reader that went away): the file must close with it.
    check.once("close", () => source.destroy());
    return { size: st.size, stream: source.pipe(check) };
  }

  /**
   * Checks a blob in one streaming pass unless this (id, size, mtime) was already found intact; concurrent
   * calls share the pass. Throws NOT_FOUND or CORRUPT. Bytes that rot later without a new mtime are still
   * caught by `openRead`'s own hash, which also forgets the blob as verified.
   */
  async verify(id: string): Promise<void> {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(this.pathOf(id));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw this.notFound(id);
      throw e;
    }
    const key = verifiedKey(id, st);
    if (this.verified.has(key)) return;
    let pass = this.verifying.get(key);
    if (!pass) {
      pass = (async () => {
        const r = await this.openRead(id);
        await pipeline(r.stream, async (chunks: AsyncIterable<Buffer>) => {
          for await (const _ of chunks) void _;
        });
        if (this.verified.size >= VERIFIED_CACHE_ENTRIES) {
          this.verified.delete(this.verified.values().next().value as string);
        }
        this.verified.add(key);
      })().finally(() => this.verifying.delete(key));
      this.verifying.set(key, pass);
    }
    await pass;
  }

  /** Deletes a blob; false when it was not there. */
  async delete(id: string): Promise<boolean> {
    return this.locked(() => this.deleteUnlocked(id));
  }

  private async deleteUnlocked(id: string): Promise<boolean> {
    try {
      await fs.promises.unlink(this.pathOf(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw e;
    }
    const entry = this.entries.get(id);
    if (entry) {
      this.total -= entry.size;
      this.entries.delete(id);
    }
    return true;
  }

  private hashCheck(id: string, onMismatch: () => void): Transform {
    const hash = crypto.createHash("sha256");
    let held: Buffer | null = null;
    let size = 0;
    return new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        size += chunk.length;
        const out = held;
        held = chunk;
        done(null, out ?? undefined);
      },
      flush: (done) => {
        const actual = hash.digest("hex");
        if (actual !== id) {
          onMismatch();
          this.onCorrupt?.(id, actual);
          done(
            new BlobError(
              "CORRUPT",
              `blob ${id} is corrupt on disk: its ${size} bytes hash to ${actual}; refusing to serve it`,
              id,
            ),
          );
          return;
        }
        done(null, held ?? undefined);
      },
    });
  }

  private notFound(id: string): BlobError {
    return new BlobError("NOT_FOUND", `blob ${id} not found`, id);
  }

  private touch(id: string): void {
    const e = this.entries.get(id);
    if (e) e.usedAt = this.now();
  }

  /** Stores bytes and returns the id. */
  async put(bytes: Uint8Array): Promise<string> {
    return (await this.putBytes(bytes)).id;
  }

  async putBytes(bytes: Uint8Array, expect?: string): Promise<PutResult> {
    if (bytes.length > this.maxBlobBytes) throw this.tooLarge(bytes.length);
    return this.putStream(
      (async function* () {
        yield Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      })(),
      expect,
    );
  }

  /**
   * Streams a blob in, hashing as it goes. Throws TOO_LARGE as soon as more than `maxBlobBytes` arrive
   * (nothing is kept; the source is destroyed), and EXPECT_MISMATCH when `expect` is given and differs from the content's hash.
   */
  async putStream(
    source: Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    expect?: string,
  ): Promise<PutResult> {
    if (expect !== undefined) assertBlobId(expect);
    const tmp = path.join(this.tmpDir, `${process.pid}-${crypto.randomBytes(8).toString("hex")}`);
    const hash = crypto.createHash("sha256");
    let size = 0;
    try {
      const fh = await fs.promises.open(tmp, "wx");
      try {
        for await (const chunk of source as AsyncIterable<Uint8Array>) {
          size += chunk.length;
          if (size > this.maxBlobBytes) throw this.tooLarge(size, true);
          hash.update(chunk);
          for (let off = 0; off < chunk.length;) {
            off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
          }
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const id = hash.digest("hex");
      if (expect !== undefined && expect !== id) {
        throw new BlobError("EXPECT_MISMATCH", `content hashes to ${id}, expected ${expect}`, expect);
      }
      return await this.commit(tmp, id, size);
    } finally {
      await fs.promises.rm(tmp, { force: true });
    }
  }

  /** Links the temp file into place; exactly one of several concurrent writers reports `created`. */
  private commit(tmp: string, id: string, size: number): Promise<PutResult> {
    return this.locked(() => this.commitUnlocked(tmp, id, size));
  }

  private async commitUnlocked(tmp: string, id: string, size: number): Promise<PutResult> {
    const final = this.pathOf(id);
    if (!this.entries.has(id)) await this.makeRoom(size, id);
    await fs.promises.mkdir(path.dirname(final), { recursive: true });
    try {
      await fs.promises.link(tmp, final);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      try {
        await this.verify(id);
        this.touch(id);
        return { id, size, created: false, repaired: false };
      } catch (err) {
        if (!(err instanceof BlobError && err.code === "CORRUPT")) throw err;
      }
      // The copy on disk is corrupt and these bytes are right: replace it atomically.
      const old = await this.size(id);
      await fs.promises.rename(tmp, final);
      await this.syncDir(path.dirname(final));
      this.total += size - (old ?? 0);
      const t = this.now();
      this.entries.set(id, { size, storedAt: t, usedAt: t });
      return { id, size, created: false, repaired: true };
    }
    await this.syncDir(path.dirname(final));
    const t = this.now();
    this.entries.set(id, { size, storedAt: t, usedAt: t });
    this.total += size;
    return { id, size, created: true, repaired: false };
  }

  /**
   * Whether a blob of `size` bytes could be stored after evicting what may be evicted, without evicting
   * anything: for refusing an upload before its body is read.
   */
  async couldFit(size: number): Promise<boolean> {
    if (this.maxStoreBytes === 0) return true;
    if (size > this.maxStoreBytes) return false;
    if (this.total + size <= this.maxStoreBytes) return true;
    const candidates = await this.evictionCandidates();
    const free = candidates.reduce((n, [, e]) => n + e.size, 0);
    return this.total - free + size <= this.maxStoreBytes;
  }

  private async evictionCandidates(): Promise<Array<[string, Entry]>> {
    const cutoff = this.now() - this.minRetentionMs;
    const old = [...this.entries].filter(([, e]) => e.storedAt <= cutoff);
    if (old.length === 0) return [];
    let keep = new Set<string>();
    if (this.referenced) {
      try {
        keep = await this.referenced();
      } catch (e) {
        this.onReferenceError?.(e as Error);
        return [];
      }
    }
    return old.filter(([id]) => !keep.has(id)).sort((a, b) => a[1].usedAt - b[1].usedAt);
  }

  /** Evicts least recently used unreferenced blobs past retention until `size` more bytes fit, or throws STORE_FULL. */
  private async makeRoom(size: number, forId: string): Promise<void> {
    if (this.maxStoreBytes === 0 || this.total + size <= this.maxStoreBytes) return;
    const candidates = await this.evictionCandidates();
    const free = candidates.reduce((n, [, e]) => n + e.size, 0);
    if (this.total - free + size > this.maxStoreBytes) {
      throw new BlobError(
        "STORE_FULL",
        `the store is full: ${this.total} of ${this.maxStoreBytes} bytes held, and not enough of it may be ` +
          `evicted (blobs younger than ${Math.round(this.minRetentionMs / 1000)} s or still referenced on ` +
          `chain are kept) to fit ${size} more`,
        forId,
      );
    }
    for (const [id, e] of candidates) {
      if (this.total + size <= this.maxStoreBytes) break;
      if (await this.deleteUnlocked(id)) {
        this.evicted += 1;
        this.onEvict?.(id, e.size);
      }
    }
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.commitQueue.then(fn, fn);
    this.commitQueue = run.catch(() => undefined);
    return run;
  }

  private async syncDir(dir: string): Promise<void> {
    const fh = await fs.promises.open(dir, "r");
    try {
      await fh.sync();
    } catch {
      // Some filesystems refuse fsync on a directory; the rename is still atomic.
    } finally {
      await fh.close();
    }
  }

  private tooLarge(size: number, streaming = false): BlobError {
    const what = streaming ? "blob" : `blob of ${size} bytes`;
    return new BlobError("TOO_LARGE", `${what} exceeds the limit of ${this.maxBlobBytes} bytes`);
  }
}

function verifiedKey(id: string, st: fs.Stats): string {
  return `${id}:${st.size}:${st.mtimeMs}`;
}
