import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { createLogger, type Logger } from "../runtime/logger";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { BLOB_ID_PATTERN, BlobError, BlobStore, isBlobId } from "./blob-store";
import type { DataNodeConfig } from "./config";
import { EXPECT_HEADER, SHA256_HEADER } from "./protocol";

/**
 * The data node's HTTP API (node:http, no framework):
 *
 *   PUT  /blobs            body = the bytes; 201 {"id","size","created":true} or 200 when already held;
 *                          `?expect=<id>` or `x-opg-expect-sha256: <id>` makes it 422 unless the content
 *                          hashes to that id; 413 over the size limit (checked while streaming)
 *   GET  /blobs/<id>       200 bytes (application/octet-stream, x-opg-sha256), 400 malformed id,
 *                          404 unknown, 500 {"error":"corrupt"} when the bytes on disk no longer hash to id
 *   HEAD /blobs/<id>       the same status and headers without the body (does not re-hash)
 *   GET  /healthz          {"ok":true,...}, 503 when the store directory is not writable
 *   GET  /metrics          Prometheus text
 *
 * Errors are JSON: {"error": <code>, "message": <text>}.
 */

export { EXPECT_HEADER, SHA256_HEADER };

/** After an early answer (413) the rest of the body is drained, so the client reads it, for at most this long. */
const DRAIN_AFTER_REJECT_MS = 5_000;

export type ErrorCode =
  | "bad_id"
  | "not_found"
  | "too_large"
  | "corrupt"
  | "expect_mismatch"
  | "method_not_allowed"
  | "bad_request"
  | "internal";

export interface DataServerMetrics {
  registry: Registry;
  requests: Counter<"route" | "status">;
  duration: Histogram<"route">;
  corruptReads: Counter<string>;
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
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
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
};

export interface DataServerOptions {
  store: BlobStore;
  logger: Logger;
}

export class DataServer {
  readonly http: http.Server;
  readonly metrics: DataServerMetrics;
  private readonly store: BlobStore;
  private readonly log: Logger;
  private closing = false;
  private inFlight = 0;

  constructor(opts: DataServerOptions) {
    this.store = opts.store;
    this.log = opts.logger;
    this.metrics = createMetrics(opts.store);
    this.http = http.createServer((req, res) => void this.handle(req, res));
    // Uploads of large blobs may be slow; headers must still arrive promptly.
    this.http.requestTimeout = 0;
    this.http.headersTimeout = 30_000;
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
    const fields: Record<string, unknown> = {};
    try {
      const url = new URL(req.url ?? "/", "http://localhost");
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
      this.inFlight -= 1;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const status = res.headersSent ? res.statusCode : 0;
      const label = `${req.method} ${route}`;
      this.metrics.requests.inc({ route: label, status: String(status) });
      this.metrics.duration.observe({ route: label }, seconds);
      const line = { method: req.method, route, status, ms: Math.round(seconds * 1e4) / 10, ...fields };
      if (status >= 500 || status === 0) this.log.error(line, "request failed");
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
    // The body reaches the store through a PassThrough so that a rejection (size limit, hash mismatch)
    // leaves the request itself open: the answer can still be sent before the connection closes.
    const body = new PassThrough();
    const abort = (): void => {
      if (!req.complete) body.destroy(new Error("client closed the connection before the body ended"));
    };
    req.once("error", abort);
    req.once("close", abort);
    req.pipe(body);
    try {
      const r = await this.store.putStream(body, expect);
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
    let bytes: Buffer;
    try {
      bytes = await this.store.get(id);
    } catch (e) {
      if (e instanceof BlobError && e.code === "CORRUPT") this.metrics.corruptReads.inc();
      throw e;
    }
    fields.bytes = bytes.length;
    send(
      res,
      200,
      {
        "content-type": "application/octet-stream",
        "content-length": String(bytes.length),
        [SHA256_HEADER]: id,
        "cache-control": "public, max-age=31536000, immutable",
      },
      bytes,
    );
  }

  private async healthz(res: http.ServerResponse): Promise<void> {
    const stats = this.store.stats();
    try {
      await fs.promises.access(this.store.dir, fs.constants.W_OK);
    } catch (e) {
      sendJson(res, 503, {
        ok: false,
        error: `store directory not writable: ${(e as Error).message}`,
        ...stats,
      });
      return;
    }
    sendJson(res, 200, { ok: true, closing: this.closing, ...stats });
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
    } else {
      const msg = (e as Error)?.message ?? String(e);
      if (req.destroyed || res.destroyed) {
        fields.error = msg;
        return; // the client went away; nobody to answer
      }
      err = new HttpError(500, "internal", msg);
    }
    fields.error = err.message;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const unreadBody = req.method === "PUT" && !req.complete;
    if (unreadBody) {
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

function send(
  res: http.ServerResponse,
  status: number,
  headers: Record<string, string>,
  body?: string | Buffer,
): void {
  const server = (res.socket as (typeof res.socket & { server?: http.Server }) | null)?.server;
  if (server && closingServers.has(server)) res.setHeader("connection", "close");
  // Reads are public and content-addressed: any page may fetch them (the explorer checks every hash itself).
  // Writes get no CORS headers, so a browser never sends a cross-origin upload.
  const method = res.req.method ?? "GET";
  if (method === "GET" || method === "HEAD") {
    res.setHeader("access-control-allow-origin", "*");
    res.setHeader("access-control-expose-headers", "x-opg-sha256");
  }
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
  /** Graceful stop (see DataServer.shutdown). */
  stop(): Promise<void>;
}

/** Opens the store under `config.dir` and serves it; used by `opg node data` and by tests in-process. */
export async function startDataNode(
  config: DataNodeConfig,
  opts: { logger?: Logger } = {},
): Promise<RunningDataNode> {
  const logger = opts.logger ?? createLogger("data", config.logLevel, config.logFormat);
  const store = await BlobStore.open({
    dir: config.dir,
    maxBlobBytes: config.maxBlobBytes,
    onCorrupt: (id, actual) =>
      logger.error({ id, actual }, "corrupt blob on disk: bytes no longer hash to the id"),
  });
  const server = new DataServer({ store, logger });
  const addr = await server.listen(config.port, config.host);
  logger.info(
    { url: addr.url, port: addr.port, dir: store.dir, maxBlobBytes: store.maxBlobBytes, ...store.stats() },
    "data node listening",
  );
  return {
    server,
    store,
    url: addr.url,
    port: addr.port,
    logger,
    stop: async () => {
      await server.shutdown(config.shutdownTimeoutMs);
    },
  };
}
