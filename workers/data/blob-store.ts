import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";

/**
 * Content-addressed blob store on local disk. A blob's id is the lowercase hex sha256 of its bytes (64
 * characters, no 0x); the blob lives at `<dir>/<id[0..2]>/<id>`. Writes go to `<dir>/tmp/` first, are
 * fsynced, and are then linked into place, so a crash never leaves a partial blob under its id and two
 * concurrent writers of the same blob agree on who created it. Every read re-hashes the bytes and refuses
 * a blob whose content no longer matches its id.
 */

export const BLOB_ID_PATTERN = /^[0-9a-f]{64}$/;

/** Hard ceiling for `maxBlobBytes`: reads hold a whole blob in memory to check it before serving it. */
export const MAX_BLOB_BYTES_LIMIT = 2 ** 31 - 1;

export type BlobErrorCode = "BAD_ID" | "NOT_FOUND" | "TOO_LARGE" | "CORRUPT" | "EXPECT_MISMATCH";

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
}

export class BlobStore {
  readonly dir: string;
  readonly maxBlobBytes: number;
  private readonly tmpDir: string;
  private readonly onCorrupt?: (id: string, actual: string) => void;
  private count = 0;
  private total = 0;

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
    this.onCorrupt = opts.onCorrupt;
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
        store.count += 1;
        store.total += st.size;
      }
    }
    return store;
  }

  /** Blobs and bytes held (as counted at open plus what this instance added since). */
  stats(): BlobStats {
    return { blobs: this.count, bytes: this.total };
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
   * through `onCorrupt`) when the bytes on disk no longer hash to the id.
   */
  async get(id: string): Promise<Buffer> {
    const file = this.pathOf(id);
    let bytes: Buffer;
    try {
      bytes = await fs.promises.readFile(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "EISDIR")
        throw new BlobError("NOT_FOUND", `blob ${id} not found`, id);
      throw e;
    }
    const actual = sha256Hex(bytes);
    if (actual !== id) {
      this.onCorrupt?.(id, actual);
      throw new BlobError(
        "CORRUPT",
        `blob ${id} is corrupt on disk: its ${bytes.length} bytes hash to ${actual}; refusing to serve it`,
        id,
      );
    }
    return bytes;
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
  private async commit(tmp: string, id: string, size: number): Promise<PutResult> {
    const final = this.pathOf(id);
    await fs.promises.mkdir(path.dirname(final), { recursive: true });
    try {
      await fs.promises.link(tmp, final);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      try {
        await this.get(id);
        return { id, size, created: false, repaired: false };
      } catch (err) {
        if (!(err instanceof BlobError && err.code === "CORRUPT")) throw err;
      }
      // The copy on disk is corrupt and these bytes are right: replace it atomically.
      const old = await this.size(id);
      await fs.promises.rename(tmp, final);
      await this.syncDir(path.dirname(final));
      this.total += size - (old ?? 0);
      return { id, size, created: false, repaired: true };
    }
    await this.syncDir(path.dirname(final));
    this.count += 1;
    this.total += size;
    return { id, size, created: true, repaired: false };
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
