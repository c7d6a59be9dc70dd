import crypto from "node:crypto";
import { assertBlobId, sha256Hex } from "./blob-store";
import { EXPECT_HEADER, uploadAuthorization, uploadMessage } from "./protocol";

/**
 * HTTP client of the data node. `get` re-hashes what it receives and refuses bytes that do not match the
 * id asked for, whatever the server said, and refuses a blob larger than its cap before reading it (from
 * content-length) or as soon as more arrives. With an `uploader`, `put` signs each upload (see
 * protocol.ts uploadMessage), which a data node in signed mode requires. Requests time out; connection failures, timeouts and answers
 * that can succeed later (429, 500 other than corruption, 502, 503, 504) are retried a bounded number of
 * times with exponential backoff and jitter. A 4xx, a corrupt blob or a hash mismatch is never retried.
 */

export type DataClientErrorCode =
  | "BAD_ID"
  | "NOT_FOUND"
  | "TOO_LARGE"
  | "EXPECT_MISMATCH"
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "QUOTA_EXCEEDED"
  | "STORE_FULL"
  | "CORRUPT"
  | "HASH_MISMATCH"
  | "HTTP"
  | "NETWORK"
  | "TIMEOUT";

export class DataClientError extends Error {
  constructor(
    readonly code: DataClientErrorCode,
    message: string,
    readonly opts: {
      id?: string;
      status?: number;
      retryable?: boolean;
      attempts?: number;
      /** The server's retry-after, in ms. */
      retryAfterMs?: number;
    } = {},
  ) {
    super(message);
    this.name = "DataClientError";
  }
  get id(): string | undefined {
    return this.opts.id;
  }
  get status(): number | undefined {
    return this.opts.status;
  }
  get retryable(): boolean {
    return this.opts.retryable ?? false;
  }
}

export interface DataClientOptions {
  /** Per-attempt timeout in ms (default 30 000). */
  timeoutMs?: number;
  /** Retries after the first attempt for errors that can succeed later (default 3). */
  retries?: number;
  /** First backoff delay in ms, doubled each retry (default 200). */
  backoffMs?: number;
  /** Cap on one backoff delay in ms (default 5 000). */
  maxBackoffMs?: number;
  /** Called before each retry, e.g. for logging. */
  onRetry?: (info: { attempt: number; delayMs: number; error: DataClientError }) => void;
  /** Signs uploads (an ethers Signer or Wallet); without one, uploads are unsigned (open data nodes only). */
  uploader?: UploadSigner;
  /**
   * always (default): every upload is signed. on-request: uploads go unsigned and are signed only when the
   * node answers 401 (signed mode), so an open node never makes the uploader sign (a wallet prompt).
   */
  signUploads?: "always" | "on-request";
  /** How long an upload signature stays valid, in seconds (default 600; data nodes refuse more than an hour by default). */
  signatureLifetimeSeconds?: number;
  /** Largest blob `get` accepts, in bytes, unless a call says otherwise (default 256 MiB). */
  maxBytes?: number;
}

/** What signing an upload needs of a signer: ethers' Signer and Wallet have both. */
export interface UploadSigner {
  getAddress(): Promise<string>;
  signMessage(message: string): Promise<string>;
}

/** The default cap of `get`: the data node's default largest blob. */
export const DEFAULT_MAX_GET_BYTES = 256 * 1024 * 1024;

const SERVER_CODES: Record<string, DataClientErrorCode> = {
  bad_id: "BAD_ID",
  not_found: "NOT_FOUND",
  too_large: "TOO_LARGE",
  expect_mismatch: "EXPECT_MISMATCH",
  corrupt: "CORRUPT",
  unauthorized: "UNAUTHORIZED",
  forbidden: "FORBIDDEN",
  quota_exceeded: "QUOTA_EXCEEDED",
  store_full: "STORE_FULL",
};

export class DataClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly onRetry?: DataClientOptions["onRetry"];
  private readonly uploader?: UploadSigner;
  private readonly signatureLifetimeSeconds: number;
  private readonly signUploads: "always" | "on-request";
  private readonly maxBytes: number;

  constructor(baseUrl: string, opts: DataClientOptions = {}) {
    const u = new URL(baseUrl);
    if (u.protocol !== "http:" && u.protocol !== "https:")
      throw new Error(`unsupported URL scheme ${u.protocol}`);
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 200;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5_000;
    this.onRetry = opts.onRetry;
    this.uploader = opts.uploader;
    this.signatureLifetimeSeconds = opts.signatureLifetimeSeconds ?? 600;
    this.signUploads = opts.signUploads ?? "always";
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_GET_BYTES;
  }

  /**
   * Uploads bytes and returns their id; the server must agree with the locally computed sha256. Signed
   * with the client's uploader when it has one.
   */
  async put(bytes: Uint8Array): Promise<string> {
    const id = sha256Hex(bytes);
    const signNow = this.uploader !== undefined && this.signUploads === "always";
    let res: Response;
    try {
      const headers = signNow ? await this.signedHeaders(id, bytes.length) : {};
      res = await this.withRetry(() => this.once("PUT", "/blobs", id, bytes, headers));
    } catch (e) {
      if (signNow || !this.uploader || !(e instanceof DataClientError) || e.code !== "UNAUTHORIZED") throw e;
      const headers = await this.signedHeaders(id, bytes.length);
      res = await this.withRetry(() => this.once("PUT", "/blobs", id, bytes, headers));
    }
    const body = (await res.json()) as { id?: string };
    if (body.id !== id) {
      throw new DataClientError("HASH_MISMATCH", `server stored the upload as ${body.id}, expected ${id}`, {
        id,
      });
    }
    return id;
  }

  /**
   * Downloads a blob and checks that its sha256 is `id`. Refuses (TOO_LARGE, not retried) a blob of more
   * than `maxBytes` (default: the client's cap): from its content-length before reading, or as soon as more
   * bytes arrive, so a huge blob is never held.
   */
  async get(id: string, opts: { maxBytes?: number } = {}): Promise<Buffer> {
    this.checkId(id);
    const maxBytes = opts.maxBytes ?? this.maxBytes;
    return this.withRetry(async () => {
      const res = await this.once("GET", `/blobs/${id}`, id);
      const tooLarge = (what: string) => {
        void res.body?.cancel().catch(() => undefined);
        return new DataClientError("TOO_LARGE", `blob ${id} is ${what}, over the cap of ${maxBytes} bytes`, {
          id,
        });
      };
      const declared = Number(res.headers.get("content-length") ?? NaN);
      if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(`${declared} bytes`);
      const hash = crypto.createHash("sha256");
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        if (res.body) {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            size += chunk.length;
            if (size > maxBytes) throw tooLarge(`more than ${maxBytes} bytes`);
            hash.update(chunk);
            chunks.push(Buffer.from(chunk));
          }
        }
      } catch (e) {
        if (e instanceof DataClientError) throw e;
        throw this.networkError(e, id);
      }
      const bytes = Buffer.concat(chunks, size);
      const actual = hash.digest("hex");
      if (actual !== id) {
        throw new DataClientError(
          "HASH_MISMATCH",
          `blob ${id}: received ${bytes.length} bytes that hash to ${actual}; refusing them`,
          { id },
        );
      }
      return bytes;
    });
  }

  private async signedHeaders(id: string, size: number): Promise<Record<string, string>> {
    const expiry = Math.floor(Date.now() / 1000) + this.signatureLifetimeSeconds;
    const signature = await this.uploader!.signMessage(uploadMessage({ sha256: id, bytes: size, expiry }));
    return { authorization: uploadAuthorization(await this.uploader!.getAddress(), expiry, signature) };
  }

  /** Whether the node holds the blob (HEAD; does not re-hash). */
  async has(id: string): Promise<boolean> {
    this.checkId(id);
    try {
      await this.request("HEAD", `/blobs/${id}`, id);
      return true;
    } catch (e) {
      if (e instanceof DataClientError && e.code === "NOT_FOUND") return false;
      throw e;
    }
  }

  private checkId(id: string): void {
    try {
      assertBlobId(id);
    } catch (e) {
      throw new DataClientError("BAD_ID", (e as Error).message, { id });
    }
  }

  private request(method: string, path: string, id: string, body?: Uint8Array): Promise<Response> {
    return this.withRetry(() => this.once(method, path, id, body));
  }

  private async once(
    method: string,
    path: string,
    id: string,
    body?: Uint8Array,
    extraHeaders: Record<string, string> = {},
  ): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        body,
        headers: body
          ? { "content-type": "application/octet-stream", [EXPECT_HEADER]: id, ...extraHeaders }
          : undefined,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw this.networkError(e, id);
    }
    if (res.ok) return res;
    let code: string | undefined;
    let message = `${method} ${path}: HTTP ${res.status}`;
    if (method !== "HEAD") {
      try {
        const text = await res.text();
        try {
          const j = JSON.parse(text) as { error?: string; message?: string };
          code = j.error;
          if (j.message) message = `${message}: ${j.message}`;
        } catch {
          if (text) message = `${message}: ${text.slice(0, 200)}`;
        }
      } catch {
        // body unreadable: keep the status line
      }
    } else if (res.status === 404) {
      code = "not_found";
    }
    const mapped = code !== undefined ? SERVER_CODES[code] : undefined;
    const retryable =
      mapped === undefined &&
      (res.status === 429 || res.status === 500 || (res.status >= 502 && res.status <= 504));
    const retryAfter = Number(res.headers.get("retry-after") ?? NaN);
    throw new DataClientError(mapped ?? "HTTP", message, {
      id,
      status: res.status,
      retryable,
      retryAfterMs: Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined,
    });
  }

  private networkError(e: unknown, id: string): DataClientError {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    if (err?.name === "TimeoutError" || err?.name === "AbortError") {
      return new DataClientError("TIMEOUT", `request for ${id} timed out after ${this.timeoutMs} ms`, {
        id,
        retryable: true,
      });
    }
    const detail = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
    return new DataClientError("NETWORK", `cannot reach data node ${this.baseUrl} (${detail})`, {
      id,
      retryable: true,
    });
  }

  private async withRetry<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!(e instanceof DataClientError) || !e.retryable || attempt > this.retries) {
          if (e instanceof DataClientError) e.opts.attempts = attempt;
          throw e;
        }
        const base = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
        const jittered = Math.round(base / 2 + (Math.random() * base) / 2);
        // The server's retry-after (429, 503) is honoured up to the backoff cap.
        const delayMs = Math.max(jittered, Math.min(this.maxBackoffMs, e.opts.retryAfterMs ?? 0));
        this.onRetry?.({ attempt, delayMs, error: e });
        await new Promise((r) => setTimeout(r, delayMs));
      }
    }
  }
}
