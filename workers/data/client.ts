import { assertBlobId, sha256Hex } from "./blob-store";
import { EXPECT_HEADER } from "./protocol";

/**
 * HTTP client of the data node. `get` re-hashes what it receives and refuses bytes that do not match the
 * id asked for, whatever the server said. Requests time out; connection failures, timeouts and answers
 * that can succeed later (429, 500 other than corruption, 502, 503, 504) are retried a bounded number of
 * times with exponential backoff and jitter. A 4xx, a corrupt blob or a hash mismatch is never retried.
 */

export type DataClientErrorCode =
  | "BAD_ID"
  | "NOT_FOUND"
  | "TOO_LARGE"
  | "EXPECT_MISMATCH"
  | "CORRUPT"
  | "HASH_MISMATCH"
  | "HTTP"
  | "NETWORK"
  | "TIMEOUT";

export class DataClientError extends Error {
  constructor(
    readonly code: DataClientErrorCode,
    message: string,
    readonly opts: { id?: string; status?: number; retryable?: boolean; attempts?: number } = {},
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
}

const SERVER_CODES: Record<string, DataClientErrorCode> = {
  bad_id: "BAD_ID",
  not_found: "NOT_FOUND",
  too_large: "TOO_LARGE",
  expect_mismatch: "EXPECT_MISMATCH",
  corrupt: "CORRUPT",
};

export class DataClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly onRetry?: DataClientOptions["onRetry"];

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
  }

  /** Uploads bytes and returns their id; the server must agree with the locally computed sha256. */
  async put(bytes: Uint8Array): Promise<string> {
    const id = sha256Hex(bytes);
    const res = await this.request("PUT", "/blobs", id, bytes);
    const body = (await res.json()) as { id?: string };
    if (body.id !== id) {
      throw new DataClientError("HASH_MISMATCH", `server stored the upload as ${body.id}, expected ${id}`, {
        id,
      });
    }
    return id;
  }

  /** Downloads a blob and checks that its sha256 is `id`. */
  async get(id: string): Promise<Buffer> {
    this.checkId(id);
    return this.withRetry(async () => {
      const res = await this.once("GET", `/blobs/${id}`, id);
      let bytes: Buffer;
      try {
        bytes = Buffer.from(await res.arrayBuffer());
      } catch (e) {
        throw this.networkError(e, id);
      }
      const actual = sha256Hex(bytes);
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

  private async once(method: string, path: string, id: string, body?: Uint8Array): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        body,
        headers: body ? { "content-type": "application/octet-stream", [EXPECT_HEADER]: id } : undefined,
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
    throw new DataClientError(mapped ?? "HTTP", message, { id, status: res.status, retryable });
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
        const delayMs = Math.round(base / 2 + (Math.random() * base) / 2);
        this.onRetry?.({ attempt, delayMs, error: e });
        await new Promise((r) => setTimeout(r, delayMs));
      }
    }
  }
}
