import fs from "node:fs";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createLogger, type Logger } from "../runtime/logger";
import { readDeployment } from "../runtime/chain";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { BLOB_ID_PATTERN, BlobError, BlobStore, isBlobId } from "./blob-store";
import { DataChainView } from "./chain-view";
import { effectiveUploadPolicy, withDefaults, type DataNodeConfig, type DataNodeSettings } from "./config";
import { ByteQuota, ConcurrencyLimiter, RateLimiter } from "./limits";
import { EXPECT_HEADER, SHA256_HEADER, UPLOAD_AUTH_SCHEME } from "./protocol";
import { UploadAuthError, UploadAuthorizer } from "./upload-auth";

/**
 * The data node's HTTP API (node:http, no framework):
 *
 *   PUT  /blobs            body = the bytes; 201 {"id","size","created":true} or 200 when already held;
 *                          `?expect=<id>` or `x-opg-expect-sha256: <id>` makes it 422 unless the content
 *                          hashes to that id; 413 over the size limit (checked while streaming). In signed
 *                          mode also `authorization: OPG-SIG <address>:<expiry>:<signature>` (401 without a
 *                          valid one, 403 when the signer may not upload). 429 over the uploader's quota,
 *                          507 when the store is full of what it may not evict, 408 when the body stalls
 *   GET  /blobs/<id>       200 bytes (application/octet-stream, x-opg-sha256), streamed; 400 malformed id,
 *                          404 unknown, 500 {"error":"corrupt"} when the bytes on disk no longer hash to id
 *                          (found before the answer starts; bytes that rot later cut the connection instead)
 *   HEAD /blobs/<id>       the same status and headers without the body (does not re-hash)
 *   GET  /healthz          {"ok":true,...}, 503 when the store directory is not writable
 *   GET  /metrics          Prometheus text
 *
 * Every route: 429 with retry-after over the per-client-IP request rate or requests in flight. Errors are
 * JSON: {"error": <code>, "message": <text>}; a message never carries a filesystem path (the log has the
 * full error). No request, however malformed, aborted or slow, can end the process: every failure of a
 * request becomes an answer (or a closed connection) and a log line.
 */

export { EXPECT_HEADER, SHA256_HEADER };

/** After an early answer (413) the rest of the body is drained, so the client reads it, for at most this long. */
const DRAIN_AFTER_REJECT_MS = 5_000;
/** How often idle per-client entries (rate buckets, quotas) are dropped. */
const PRUNE_INTERVAL_MS = 60_000;

export type ErrorCode =
  | "bad_id"
  | "not_found"
  | "too_large"
  | "corrupt"
  | "expect_mismatch"
  | "method_not_allowed"
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "rate_limited"
  | "quota_exceeded"
  | "too_slow"
  | "store_full"
  | "unavailable"
  | "insufficient_storage"
  | "internal";

export interface DataServerMetrics {
  registry: Registry;
  requests: Counter<"route" | "status">;
  duration: Histogram<"route">;
  corruptReads: Counter<string>;
  refusals: Counter<"reason">;
  evictions: Counter<string>;
  clientErrors: Counter<"code">;
}

function createMetrics(store: BlobStore): DataServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "opg_data_" });
  new Gauge({
    name: "opg_data_blobs_stored",
    help: "Blobs held by the store",
    registers: [registry],
    collect() {
      this.set(store.stats().blobs);
    },
  });
  new Gauge({
    name: "opg_data_bytes_stored",
    help: "Bytes held by the store",
    registers: [registry],
    collect() {
      this.set(store.stats().bytes);
    },
  });
  return {
    registry,
    requests: new Counter({
      name: "opg_data_requests_total",
      help: "HTTP requests by route and status",
      labelNames: ["route", "status"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: "opg_data_request_duration_seconds",
      help: "HTTP request duration by route",
      labelNames: ["route"],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60],
      registers: [registry],
    }),
    corruptReads: new Counter({
      name: "opg_data_corrupt_reads_total",
      help: "Reads refused because the stored bytes no longer hash to the blob id",
      registers: [registry],
    }),
    refusals: new Counter({
      name: "opg_data_refusals_total",
      help: "Requests refused by a limit or a policy, by reason (the error code answered)",
      labelNames: ["reason"],
      registers: [registry],
    }),
    evictions: new Counter({
      name: "opg_data_evictions_total",
      help: "Blobs deleted to make room under maxStoreBytes",
      registers: [registry],
    }),
    clientErrors: new Counter({
      name: "opg_data_client_errors_total",
      help: "Connections closed for a malformed request or a header timeout, by error code",
      labelNames: ["code"],
      registers: [registry],
    }),
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Close the connection after answering instead of draining the rest of the body. */
    readonly closeConnection = false,
  ) {
    super(message);
  }
}

const BLOB_ERROR_STATUS: Record<BlobError["code"], [number, ErrorCode]> = {
  BAD_ID: [400, "bad_id"],
  NOT_FOUND: [404, "not_found"],
  TOO_LARGE: [413, "too_large"],
  CORRUPT: [500, "corrupt"],
  EXPECT_MISMATCH: [422, "expect_mismatch"],
  STORE_FULL: [507, "store_full"],
};

/**
 * System errors a request can meet, answered with a generic message: the error's own text names paths of
 * the server and goes to the log only.
 */
const SYSTEM_ERRORS: Record<string, [number, ErrorCode, string, Record<string, string>]> = {
  EMFILE: [
    503,
    "unavailable",
    "the data node is out of file handles; try again later",
    { "retry-after": "5" },
  ],
  ENFILE: [
    503,
    "unavailable",
    "the data node is out of file handles; try again later",
    { "retry-after": "5" },
  ],
  ENOSPC: [507, "insufficient_storage", "the data node's disk is full", {}],
  EDQUOT: [507, "insufficient_storage", "the data node's disk quota is exhausted", {}],
  EACCES: [503, "unavailable", "the data node's storage is not accessible", {}],
  EPERM: [503, "unavailable", "the data node's storage is not accessible", {}],
  EROFS: [503, "unavailable", "the data node's storage is read-only", {}],
  EIO: [503, "unavailable", "the data node's storage failed to read or write", {}],
};

/** The limits a DataServer enforces (DataNodeConfig's, see config.ts for each one's meaning). */
export type DataServerLimits = Pick<
  DataNodeConfig,
  | "maxBlobBytes"
  | "uploaderQuotaBytes"
  | "quotaWindowSeconds"
  | "requestsPerSecond"
  | "requestBurst"
  | "maxConnections"
  | "maxRequestsPerClient"
  | "headersTimeoutMs"
  | "keepAliveTimeoutMs"
  | "idleTimeoutMs"
  | "minUploadBytesPerSecond"
  | "uploadProgressWindowMs"
>;

export interface DataServerOptions {
  store: BlobStore;
  logger: Logger;
  /** Defaults: those of the schema. */
  limits?: Partial<DataServerLimits>;
  /** Checks signed uploads; absent: the node is open (anyone may upload). */
  authorizer?: UploadAuthorizer;
}

/** The client's IP as the limits key it: IPv4-mapped IPv6 addresses as plain IPv4. */
function clientIp(req: http.IncomingMessage): string {
  const a = req.socket.remoteAddress ?? "unknown";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

export class DataServer {
  readonly http: http.Server;
  readonly metrics: DataServerMetrics;
  private readonly store: BlobStore;
  private readonly log: Logger;
  readonly limits: DataServerLimits;
  private readonly authorizer?: UploadAuthorizer;
  private readonly rate: RateLimiter;
  private readonly perClient: ConcurrencyLimiter;
  private readonly quota: ByteQuota;
  private readonly pruneTimer: NodeJS.Timeout;
  private closing = false;
  private inFlight = 0;

  constructor(opts: DataServerOptions) {
    this.store = opts.store;
    this.log = opts.logger;
    this.authorizer = opts.authorizer;
    const defaults = withDefaults({
      host: "127.0.0.1",
      port: 0,
      dir: ".",
      maxBlobBytes: opts.store.maxBlobBytes,
      shutdownTimeoutMs: 0,
      logLevel: "info",
      logFormat: "json",
    });
    const limits: DataServerLimits = { ...defaults, ...stripUndefined(opts.limits ?? {}) };
    this.limits = limits;
    this.metrics = createMetrics(opts.store);
    this.rate = new RateLimiter(limits.requestsPerSecond, limits.requestBurst);
    this.perClient = new ConcurrencyLimiter(limits.maxRequestsPerClient);
    this.quota = new ByteQuota(limits.uploaderQuotaBytes, limits.quotaWindowSeconds);
    // The whole request (a PUT of the largest blob) at the lowest rate accepted, plus the headers' time; a
    // stalled body is cut sooner by the progress check in putBlob, and a connection that goes silent either
    // way by the idle timeout.
    const requestTimeout =
      Math.ceil(limits.maxBlobBytes / limits.minUploadBytesPerSecond) * 1000 + limits.headersTimeoutMs;
    this.http = http.createServer(
      {
        headersTimeout: limits.headersTimeoutMs,
        requestTimeout,
        keepAliveTimeout: limits.keepAliveTimeoutMs,
        // How often the two timeouts above are checked (Node's default, 30 s, would let them overrun).
        connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      },
      (req, res) => {
        this.handle(req, res).catch((e: unknown) => {
          // handle() answers every failure itself; this is the last net, so nothing can become an unhandled rejection.
          this.log.error({ err: e }, "request handler failed");
          res.destroy();
        });
      },
    );
    this.http.timeout = limits.idleTimeoutMs;
    this.http.maxConnections = limits.maxConnections;
    this.http.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) =>
      this.clientError(err, socket),
    );
    // An accept() that fails (EMFILE under a low file limit) is emitted here: log it, never exit.
    this.http.on("error", (e: NodeJS.ErrnoException) => {
      if (this.http.listening)
        this.log.error({ code: e.code, syscall: e.syscall }, "server error (kept running)");
    });
    this.pruneTimer = setInterval(() => {
      this.rate.prune();
      this.quota.prune();
    }, PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
  }

  /** A request Node could not parse, or whose headers (or whole request) took too long. */
  private clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const code = err.code ?? "unknown";
    this.metrics.clientErrors.inc({ code });
    this.log.debug({ code, remote: socket.remoteAddress }, "client error: connection closed");
    const busy = (socket as Socket & { _httpMessage?: unknown })._httpMessage;
    if (code !== "ECONNRESET" && socket.writable && !busy) {
      const status =
        code === "HPE_HEADER_OVERFLOW"
          ? "431 Request Header Fields Too Large"
          : code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? "408 Request Timeout"
            : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      // The answer is flushed before the socket goes; a client that does not read it loses it soon anyway.
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    socket.destroy();
  }

  /** Listens and resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host = "127.0.0.1"): Promise<{ host: string; port: number; url: string }> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      this.http.once("error", onError);
      this.http.listen(port, host, () => {
        this.http.off("error", onError);
        const addr = this.http.address() as AddressInfo;
        const shownHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
        resolve({ host: addr.address, port: addr.port, url: `http://${shownHost}:${addr.port}` });
      });
    });
  }

  /**
   * Stops accepting connections, lets requests in flight finish (idle keep-alive connections are closed
   * at once), and cuts whatever is still open after `timeoutMs`.
   */
  async shutdown(timeoutMs = 10_000): Promise<{ cut: boolean }> {
    this.closing = true;
    clearInterval(this.pruneTimer);
    closingServers.add(this.http);
    let cut = false;
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeIdleConnections();
    const timer = setTimeout(() => {
      cut = true;
      this.log.warn({ inFlight: this.inFlight }, "shutdown timeout: cutting open connections");
      this.http.closeAllConnections();
    }, timeoutMs);
    await closed;
    clearTimeout(timer);
    return { cut };
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    this.inFlight += 1;
    let route = "other";
    const ip = clientIp(req);
    const fields: Record<string, unknown> = { client: ip };
    let release: (() => void) | null = null;
    try {
      const wait = this.rate.take(ip);
      if (wait > 0) {
        throw new HttpError(
          429,
          "rate_limited",
          `too many requests from ${ip}: over ${this.limits.requestsPerSecond} per second; retry after ${wait} s`,
          { "retry-after": String(wait) },
        );
      }
      release = this.perClient.acquire(ip);
      if (!release) {
        throw new HttpError(
          429,
          "rate_limited",
          `too many requests in flight from ${ip} (at most ${this.limits.maxRequestsPerClient})`,
          { "retry-after": "1" },
        );
      }
      let url: URL;
      try {
        url = new URL(req.url ?? "/", "http://localhost");
      } catch {
        throw new HttpError(400, "bad_request", "malformed request target");
      }
      const method = req.method ?? "GET";
      const p = url.pathname;
      if (p === "/blobs" || p === "/blobs/") {
        route = "/blobs";
        if (method !== "PUT") throw methodNotAllowed(method, "PUT");
        await this.putBlob(req, res, url, fields);
      } else if (p.startsWith("/blobs/")) {
        route = "/blobs/:id";
        if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, "GET, HEAD");
        await this.getBlob(p.slice("/blobs/".length), method === "HEAD", res, fields);
      } else if (p === "/healthz") {
        route = "/healthz";
        if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, "GET, HEAD");
        await this.healthz(res);
      } else if (p === "/metrics") {
        route = "/metrics";
        if (method !== "GET") throw methodNotAllowed(method, "GET");
        const text = await this.metrics.registry.metrics();
        send(res, 200, { "content-type": this.metrics.registry.contentType }, text);
      } else {
        throw new HttpError(404, "not_found", `no route ${method} ${p}`);
      }
    } catch (e) {
      this.fail(req, res, e, fields);
    } finally {
      release?.();
      this.inFlight -= 1;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const status = res.headersSent ? res.statusCode : 0;
      const label = `${req.method} ${route}`;
      this.metrics.requests.inc({ route: label, status: String(status) });
      this.metrics.duration.observe({ route: label }, seconds);
      const line = { method: req.method, route, status, ms: Math.round(seconds * 1e4) / 10, ...fields };
      // Refusals and clients that went away are what strangers cause: counted, logged at debug so a flood
      // of them does not flood the log. A 5xx is the node's own trouble.
      if (status === 0) this.log.debug(line, "client went away");
      else if (status === 429 || status === 408) this.log.debug(line, "request refused");
      else if (status >= 500) this.log.error(line, "request failed");
      else if (route === "/healthz" || route === "/metrics") this.log.debug(line, "request");
      else this.log.info(line, "request");
    }
  }

  private async putBlob(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    fields: Record<string, unknown>,
  ): Promise<void> {
    const fromQuery = url.searchParams.get("expect") ?? undefined;
    const fromHeader = headerValue(req.headers[EXPECT_HEADER]);
    if (fromQuery !== undefined && fromHeader !== undefined && fromQuery !== fromHeader) {
      throw new HttpError(
        400,
        "bad_request",
        `?expect=${fromQuery} and ${EXPECT_HEADER}: ${fromHeader} disagree`,
      );
    }
    const expect = fromQuery ?? fromHeader;
    if (expect !== undefined && !isBlobId(expect)) {
      throw new HttpError(400, "bad_id", `malformed expected id ${JSON.stringify(expect)}: 64 lowercase hex`);
    }
    const declared =
      req.headers["content-length"] !== undefined ? Number(req.headers["content-length"]) : null;
    if (declared !== null && declared > this.store.maxBlobBytes) {
      throw new HttpError(
        413,
        "too_large",
        `blob of ${declared} bytes exceeds the limit of ${this.store.maxBlobBytes} bytes`,
      );
    }
    let uploader = `ip:${clientIp(req)}`;
    if (this.authorizer) {
      const who = await this.authorizer.check(headerValue(req.headers.authorization), expect, declared);
      uploader = who.address;
      Object.assign(fields, { uploader: who.address, standing: who.standing });
    }
    // A body of unknown length (chunked) may be as large as any blob: it reserves that much until it ends.
    const reserved = declared ?? this.store.maxBlobBytes;
    const over = this.quota.reserve(uploader, reserved);
    if (over) {
      throw new HttpError(
        429,
        "quota_exceeded",
        `upload quota exceeded: ${over.used} of ${this.limits.uploaderQuotaBytes} bytes used in this ` +
          `${this.limits.quotaWindowSeconds} s window; retry after ${over.retryAfter} s`,
        { "retry-after": String(over.retryAfter) },
      );
    }
    let stored = false;
    try {
      if (declared !== null && !(await this.store.couldFit(declared))) {
        throw new BlobError("STORE_FULL", this.storeFullMessage(declared));
      }
      const r = await this.receive(req, expect);
      stored = true;
      this.quota.release(uploader, reserved);
      if (r.created) this.quota.charge(uploader, r.size);
      Object.assign(fields, { id: r.id, bytes: r.size, created: r.created });
      if (r.repaired)
        this.log.warn({ id: r.id }, "replaced a corrupt copy of the blob with the uploaded bytes");
      sendJson(
        res,
        r.created ? 201 : 200,
        { id: r.id, size: r.size, created: r.created },
        {
          location: `/blobs/${r.id}`,
        },
      );
    } finally {
      if (!stored) this.quota.release(uploader, reserved);
    }
  }

  private storeFullMessage(size: number): string {
    const { bytes } = this.store.stats();
    return (
      `the store is full: ${bytes} of ${this.store.maxStoreBytes} bytes held, and not enough of it may be ` +
      `evicted to fit ${size} more; try again later`
    );
  }

  /**
   * Streams the body into the store. The body reaches the store through a PassThrough so that a rejection
   * (size limit, hash mismatch) leaves the request itself open: the answer can still be sent before the
   * connection closes. A body that delivers less than minUploadBytesPerSecond over a progress window is cut
   * (408, connection closed); the store removes the temp file of every upload that does not complete.
   */
  private async receive(req: http.IncomingMessage, expect: string | undefined) {
    const body = new PassThrough();
    // The body may be destroyed (client gone, too slow) before the store starts reading it (it opens its temp
    // file first): without a listener that 'error' would be uncaught and take the process down. The store's
    // read still sees the error, from the destroyed stream.
    body.on("error", () => undefined);
    const abort = (): void => {
      if (!req.complete) body.destroy(new Error("client closed the connection before the body ended"));
    };
    const { minUploadBytesPerSecond: rate, uploadProgressWindowMs: windowMs } = this.limits;
    const minPerWindow = Math.ceil((rate * windowMs) / 1000);
    let received = 0;
    let mark = 0;
    const count = (c: Buffer): void => {
      received += c.length;
    };
    const watchdog = setInterval(() => {
      if (req.complete) return;
      if (received - mark < minPerWindow) {
        body.destroy(
          new HttpError(
            408,
            "too_slow",
            `upload too slow: ${received - mark} bytes in the last ${windowMs} ms, at least ${minPerWindow} ` +
              `(${rate} bytes/s) required`,
            {},
            true,
          ),
        );
      }
      mark = received;
    }, windowMs);
    req.on("data", count);
    req.once("error", abort);
    req.once("close", abort);
    req.pipe(body);
    try {
      return await this.store.putStream(body, expect);
    } finally {
      clearInterval(watchdog);
      req.off("data", count);
      req.off("error", abort);
      req.off("close", abort);
      req.unpipe(body);
    }
  }

  private async getBlob(
    id: string,
    head: boolean,
    res: http.ServerResponse,
    fields: Record<string, unknown>,
  ): Promise<void> {
    if (!BLOB_ID_PATTERN.test(id)) {
      const shown = id.length > 80 ? `${id.slice(0, 80)}...` : id;
      throw new HttpError(
        400,
        "bad_id",
        `malformed blob id ${JSON.stringify(shown)}: expected 64 lowercase hex`,
      );
    }
    fields.id = id;
    if (head) {
      const size = await this.store.size(id);
      if (size === null) throw new HttpError(404, "not_found", `blob ${id} not found`);
      send(res, 200, {
        "content-type": "application/octet-stream",
        "content-length": String(size),
        [SHA256_HEADER]: id,
      });
      return;
    }
    try {
      // A full streaming pass the first time this (id, size, mtime) is served, so corruption found on disk
      // is a clean 500 rather than a cut connection.
      await this.store.verify(id);
    } catch (e) {
      if (e instanceof BlobError && e.code === "CORRUPT") this.metrics.corruptReads.inc();
      throw e;
    }
    const blob = await this.store.openRead(id);
    fields.bytes = blob.size;
    setCommonHeaders(res);
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": String(blob.size),
      [SHA256_HEADER]: id,
      "cache-control": "public, max-age=31536000, immutable",
    });
    try {
      // Back-pressure: a slow reader holds one read buffer, not the blob; one that stops reading is cut by
      // the idle timeout.
      await pipeline(blob.stream, res);
    } catch (e) {
      if (e instanceof BlobError && e.code === "CORRUPT") {
        // Found after the answer started: the connection is cut before the last bytes, so no client
        // receives a complete corrupt blob.
        this.metrics.corruptReads.inc();
        fields.error = e.message;
        return;
      }
      fields.error = `reader went away: ${(e as Error).message}`;
      fields.aborted = true;
    }
  }

  private async healthz(res: http.ServerResponse): Promise<void> {
    const stats = this.store.stats();
    try {
      await fs.promises.access(this.store.dir, fs.constants.W_OK);
    } catch (e) {
      this.log.error({ err: e }, "store directory not writable");
      sendJson(res, 503, { ok: false, error: "store directory not writable", ...stats });
      return;
    }
    sendJson(res, 200, {
      ok: true,
      closing: this.closing,
      ...stats,
      maxStoreBytes: this.store.maxStoreBytes,
      uploadPolicy: this.authorizer ? "signed" : "open",
    });
  }

  private fail(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    e: unknown,
    fields: Record<string, unknown>,
  ): void {
    let err: HttpError;
    if (e instanceof HttpError) err = e;
    else if (e instanceof BlobError) {
      const [status, code] = BLOB_ERROR_STATUS[e.code];
      err = new HttpError(status, code, e.message);
    } else if (e instanceof UploadAuthError) {
      const code = e.status === 401 ? "unauthorized" : e.status === 403 ? "forbidden" : "unavailable";
      const headers: Record<string, string> =
        e.status === 401
          ? { "www-authenticate": UPLOAD_AUTH_SCHEME }
          : e.status === 503
            ? { "retry-after": "10" }
            : {};
      err = new HttpError(e.status, code, e.message, headers);
    } else {
      const errno = (e as NodeJS.ErrnoException)?.code;
      const system = errno !== undefined ? SYSTEM_ERRORS[errno] : undefined;
      // The full error (with any path in it) goes to the log only.
      fields.error = (e as Error)?.message ?? String(e);
      if (errno) fields.errno = errno;
      if (req.destroyed || res.destroyed) return; // the client went away; nobody to answer
      err = system
        ? new HttpError(system[0], system[1], system[2], system[3])
        : new HttpError(500, "internal", "internal error; the data node's log has the details");
    }
    if (fields.error === undefined) fields.error = err.message;
    if (
      err.status === 429 ||
      err.status === 401 ||
      err.status === 403 ||
      err.status === 408 ||
      err.status === 507
    ) {
      this.metrics.refusals.inc({ reason: err.code });
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const unreadBody = req.method === "PUT" && !req.complete;
    if (unreadBody && err.closeConnection) {
      res.setHeader("connection", "close");
      res.once("finish", () => req.socket.destroy());
    } else if (unreadBody) {
      // Answer now and discard what the client still sends, keeping the connection open meanwhile: closing
      // it with unread data would reset it, and the client could lose the answer. A body that does not end
      // within the drain time gets its connection cut.
      req.resume();
      const timer = setTimeout(() => req.socket.destroy(), DRAIN_AFTER_REJECT_MS);
      timer.unref();
      req.once("end", () => clearTimeout(timer));
    }
    sendJson(res, err.status, { error: err.code, message: err.message }, err.headers);
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function methodNotAllowed(method: string, allow: string): HttpError {
  return new HttpError(405, "method_not_allowed", `method ${method} not allowed here (allowed: ${allow})`, {
    allow,
  });
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Servers shutting down: their answers close the connection, so clients do not reuse it. */
const closingServers = new WeakSet<http.Server>();

function setCommonHeaders(res: http.ServerResponse): void {
  const server = (res.socket as (typeof res.socket & { server?: http.Server }) | null)?.server;
  if (server && closingServers.has(server)) res.setHeader("connection", "close");
  // Reads are public and content-addressed: any page may fetch them (the explorer checks every hash itself).
  // Writes get no CORS headers, so a browser never sends a cross-origin upload.
  const method = res.req.method ?? "GET";
  if (method === "GET" || method === "HEAD") {
    res.setHeader("access-control-allow-origin", "*");
    res.setHeader("access-control-expose-headers", "x-opg-sha256");
  }
}

function send(
  res: http.ServerResponse,
  status: number,
  headers: Record<string, string>,
  body?: string | Buffer,
): void {
  setCommonHeaders(res);
  res.writeHead(status, headers);
  res.end(res.req.method === "HEAD" ? undefined : body);
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`;
  send(
    res,
    status,
    { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers },
    text,
  );
}

export interface RunningDataNode {
  server: DataServer;
  store: BlobStore;
  url: string;
  port: number;
  logger: Logger;
  /** The chain the node reads uploaders and references from, when configured. */
  chain?: DataChainView;
  /** Graceful stop (see DataServer.shutdown). */
  stop(): Promise<void>;
}

/**
 * Opens the store under `config.dir` and serves it; used by `opg node data` and by tests in-process. Options
 * not given take the schema's defaults.
 */
export async function startDataNode(
  settings: DataNodeSettings,
  opts: { logger?: Logger; referenced?: () => Promise<Set<string>> } = {},
): Promise<RunningDataNode> {
  const config = withDefaults(settings);
  const logger = opts.logger ?? createLogger("data", config.logLevel, config.logFormat);
  let chain: DataChainView | undefined;
  if (config.rpcUrl !== "" && config.deployment !== "") {
    chain = new DataChainView(config.rpcUrl, readDeployment(config.deployment), {
      fromBlock: config.chainFromBlock,
      minUploaderBalance: config.minUploaderBalance,
      cacheMs: 60_000,
    });
  } else if (config.rpcUrl !== "" || config.deployment !== "") {
    logger.warn(
      { rpcUrl: config.rpcUrl !== "", deployment: config.deployment !== "" },
      "the chain is read only with both --rpc-url and --deployment: ignoring the one given",
    );
  }
  const referenced = opts.referenced ?? (chain ? () => chain.referencedIds() : undefined);
  // The store is opened before the server that counts its evictions exists.
  const late: { server?: DataServer } = {};
  const store = await BlobStore.open({
    dir: config.dir,
    maxBlobBytes: config.maxBlobBytes,
    maxStoreBytes: config.maxStoreBytes,
    minRetentionMs: config.minRetentionSeconds * 1000,
    referenced,
    onCorrupt: (id, actual) =>
      logger.error({ id, actual }, "corrupt blob on disk: bytes no longer hash to the id"),
    onEvict: (id, size) => {
      late.server?.metrics.evictions.inc();
      logger.info({ id, bytes: size }, "evicted to make room");
    },
    onReferenceError: (e) =>
      logger.warn({ err: e.message }, "cannot read what the chain references: evicting nothing this time"),
  });
  const policy = effectiveUploadPolicy(config);
  const authorizer =
    policy === "signed"
      ? new UploadAuthorizer({
          allowed: config.allowedUploaders,
          chain,
          maxLifetimeSeconds: config.maxSignatureLifetimeSeconds,
        })
      : undefined;
  if (policy === "signed" && config.allowedUploaders.length === 0 && !chain) {
    logger.warn(
      "signed uploads with no --allowed-uploaders and no chain (--rpc-url, --deployment): nobody can upload",
    );
  }
  const server = new DataServer({ store, logger, limits: config, authorizer });
  late.server = server;
  const addr = await server.listen(config.port, config.host);
  logger.info(
    {
      url: addr.url,
      port: addr.port,
      dir: store.dir,
      maxBlobBytes: store.maxBlobBytes,
      maxStoreBytes: store.maxStoreBytes,
      uploadPolicy: policy,
      allowedUploaders: config.allowedUploaders.length,
      chain: chain !== undefined,
      ...store.stats(),
    },
    "data node listening",
  );
  return {
    server,
    store,
    url: addr.url,
    port: addr.port,
    logger,
    chain,
    stop: async () => {
      await server.shutdown(config.shutdownTimeoutMs);
      chain?.destroy();
    },
  };
}
