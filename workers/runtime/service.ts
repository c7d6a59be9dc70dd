import http from "node:http";
import type { Duplex } from "node:stream";
import client from "prom-client";
import { httpConfigOf, type HttpConfig } from "./http-config";
import type { Logger } from "./logger";

/** What a JSON route answers: an HTTP status and a JSON body. */
export interface JsonReply {
  status: number;
  body: Record<string, unknown>;
}

/** A JSON POST route's handler: the parsed body (undefined when it was not JSON) to a reply. */
export type JsonHandler = (body: unknown) => Promise<JsonReply>;

/** Largest request body a JSON route reads; a longer one is answered 413 unread. */
export const MAX_JSON_BODY_BYTES = 64 * 1024;
/** How long one rendering of /metrics is served: a flood of scrapes renders it at most once a second. */
export const METRICS_CACHE_MS = 1_000;
/** Largest request head (request line and headers): /metrics, /healthz and /attest need a few hundred bytes. */
const MAX_HEADER_BYTES = 8 * 1024;
/** Client addresses whose POST rate is remembered (least recently seen forgotten first). */
const MAX_RATE_BUCKETS = 10_000;
/** How often the server looks for requests past their headers or request timeout. */
const TIMEOUT_CHECK_MS = 500;
/**
 * A connection with no traffic either way for this long is cut: a client that never reads its answer holds
 * no socket for good. Longer than any answer takes to compute (a re-execution runs under the sandbox's limit).
 */
const IDLE_SOCKET_MS = 60_000;
/** How long a connection answered and closed by the server (FIN sent) may linger before it is cut. */
const CLOSE_AFTER_ANSWER_MS = 1_000;
/** Time connections are given to finish at shutdown before they are cut. */
const CLOSE_GRACE_MS = 2_000;

/** Why a request was refused or cut, as counted in `opg_http_refused_total{reason}`. */
export type RefusalReason =
  | "aborted"
  | "timeout"
  | "bad_request"
  | "headers_too_large"
  | "too_large"
  | "content_type"
  | "method"
  | "rate_limited"
  | "connections_per_ip"
  | "internal";

/** The client closed the connection (or it was cut) before its request body was read. */
class ClientGoneError extends Error {
  constructor() {
    super("the client went away before sending its whole request");
    this.name = "ClientGoneError";
  }
}

/** A client address as a key: an IPv4 address mapped into IPv6 counts as the IPv4 address. */
function addressOf(socket: { remoteAddress?: string } | undefined): string {
  const ip = socket?.remoteAddress ?? "unknown";
  return ip.startsWith("::ffff:") ? ip.slice(7) : ip;
}

/** A whole HTTP/1.1 response written straight to a socket (no request object exists yet). */
function rawResponse(status: number, body: Record<string, unknown>, extra = ""): string {
  const text = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(text)}\r\n${extra}connection: close\r\n\r\n${text}`
  );
}

/**
 * The HTTP face every node process has: `/metrics` (Prometheus) and `/healthz`, plus graceful shutdown on
 * SIGTERM/SIGINT: stop taking new work, let work in flight finish or park it, then exit 0. A node may add
 * JSON POST routes (`postJson`), e.g. the verification node's `/attest`.
 *
 * Strangers reach this port, so no request may take the process down or hold it: every failure of a request
 * (a thrown error, a client gone mid-body, a socket error, a malformed head) becomes a response when the
 * socket can still take one and is counted in `opg_http_refused_total{reason}`, never an exit; heads and
 * bodies have timeouts (a slow one is answered 408 and cut), bodies a size limit, connections a total and a
 * per-address cap, and POST routes a per-address token bucket (429 with `retry-after`). Failures that are
 * the client's doing are logged at debug (a flood of them must not flood the log); a failure of the
 * node's own code is logged at error, with its stack, and answered 500.
 */
export class ServiceHttp {
  readonly registry = new client.Registry();
  private server?: http.Server;
  private healthy: () => Record<string, unknown> = () => ({ ok: true });
  private readonly posts = new Map<string, JsonHandler>();
  private readonly limits: HttpConfig;
  /** Open connections per client address. */
  private readonly open = new Map<string, number>();
  /** POST tokens per client address (least recently used first). */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Sockets refused or cut by the server itself: their requests' later failures are not counted again. */
  private readonly cut = new WeakSet<Duplex>();
  private metricsCache?: { at: number; text: Promise<string> };
  private readonly refusals: client.Counter<"reason">;

  constructor(
    private readonly log: Logger,
    /** The limits (a node's whole config will do: only the `httpSchema` keys are read). */
    limits: Partial<HttpConfig> = {},
  ) {
    this.limits = httpConfigOf(limits);
    client.collectDefaultMetrics({ register: this.registry });
    this.refusals = new client.Counter({
      name: "opg_http_refused_total",
      help:
        "requests to this port refused or cut, by reason: aborted (client gone mid-request), timeout (head " +
        "or body too slow), bad_request (not HTTP), headers_too_large, too_large (body), content_type, " +
        "method, rate_limited (POST rate), connections_per_ip, internal (a failure of the node, answered 500)",
      labelNames: ["reason"],
      registers: [this.registry],
    });
  }

  setHealth(fn: () => Record<string, unknown>) {
    this.healthy = fn;
  }

  /** Serve `POST <path>` with a JSON body (content-type application/json) of at most MAX_JSON_BODY_BYTES. */
  postJson(path: string, handler: JsonHandler) {
    this.posts.set(path, handler);
  }

  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    const server = http.createServer(
      {
        maxHeaderSize: MAX_HEADER_BYTES,
        requestTimeout: this.limits.httpRequestTimeoutMs,
        // Node checks the timeouts on this period: without it a slow client gets up to 30 s more.
        connectionsCheckingInterval: TIMEOUT_CHECK_MS,
      },
      (req, res) => this.onRequest(req, res),
    );
    server.headersTimeout = Math.min(this.limits.httpHeadersTimeoutMs, this.limits.httpRequestTimeoutMs);
    server.keepAliveTimeout = this.limits.httpKeepAliveTimeoutMs;
    server.maxConnections = this.limits.httpMaxConnections;
    server.maxHeadersCount = 64;
    server.timeout = IDLE_SOCKET_MS;
    server.on("connection", (socket: Duplex & { remoteAddress?: string }) => this.onConnection(socket));
    server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    // A failure of the listening socket itself after start (rare: the interface went away) is logged, not thrown.
    server.on("error", (err) => this.log.error({ err }, "service port failed"));
    const address = server.address();
    const bound = typeof address === "object" && address ? address.port : port;
    this.log.info({ port: bound }, "metrics and health listening");
    return bound;
  }

  /** Count a connection against its address; one over the per-address cap is answered 429 and closed. */
  private onConnection(socket: Duplex & { remoteAddress?: string }) {
    const ip = addressOf(socket);
    const count = (this.open.get(ip) ?? 0) + 1;
    this.open.set(ip, count);
    socket.once("close", () => {
      const left = (this.open.get(ip) ?? 1) - 1;
      if (left <= 0) this.open.delete(ip);
      else this.open.set(ip, left);
    });
    if (count > this.limits.httpMaxConnectionsPerIp) {
      this.cut.add(socket);
      this.refuse("connections_per_ip", { ip });
      const body = {
        error: `too many connections from one address (at most ${this.limits.httpMaxConnectionsPerIp})`,
      };
      answerAndClose(socket, rawResponse(429, body, "retry-after: 1\r\n"));
    }
  }

  /** A head that is not HTTP, too large or too slow (or a body too slow): 400/431/408 when writable, then cut. */
  private onClientError(err: NodeJS.ErrnoException, socket: Duplex) {
    const code = err.code ?? "";
    const [reason, status]: [RefusalReason, number] =
      code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? ["timeout", 408]
        : code === "HPE_HEADER_OVERFLOW"
          ? ["headers_too_large", 431]
          : // the connection ended mid-request (a body cut short) or broke
            code === "HPE_INVALID_EOF_STATE" || code === "ECONNRESET" || code === "EPIPE"
            ? ["aborted", 0]
            : ["bad_request", 400];
    // Node reports each later parse error of the same connection again: it was answered the first time.
    if (this.cut.has(socket)) return;
    this.cut.add(socket);
    this.refuse(reason, { ip: addressOf(socket as Duplex & { remoteAddress?: string }), code });
    const inFlight = (socket as Duplex & { _httpMessage?: http.ServerResponse })._httpMessage;
    if (status === 0 || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const message =
      status === 408
        ? "request too slow: send it whole within the server's timeout"
        : status === 431
          ? `request head larger than ${MAX_HEADER_BYTES} bytes`
          : "malformed HTTP request";
    answerAndClose(socket, rawResponse(status, { error: message }));
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse) {
    res.on("error", (err) => this.log.debug({ err: err.message }, "response not delivered"));
    if (this.cut.has(req.socket)) {
      res.destroy();
      return;
    }
    this.route(req, res).catch((err) => this.fail(req, res, err));
  }

  /** Any failure of a request: counted, logged and answered when the client can still take an answer. */
  private fail(req: http.IncomingMessage, res: http.ServerResponse, err: unknown) {
    try {
      const gone = err instanceof ClientGoneError || req.socket.destroyed;
      if (gone) {
        if (!this.cut.has(req.socket)) {
          this.cut.add(req.socket);
          this.refuse("aborted", { ip: addressOf(req.socket), url: req.url });
        }
        res.destroy();
        return;
      }
      this.refusals.inc({ reason: "internal" });
      this.log.error({ err, method: req.method, url: req.url }, "request failed");
      if (!res.headersSent && res.writable) {
        res.writeHead(500, { "content-type": "application/json", connection: "close" });
        res.end(JSON.stringify({ error: "internal error" }));
      } else res.destroy();
    } catch (e) {
      // Answering failed too (the socket broke meanwhile): the connection goes, the process stays.
      this.log.debug({ err: (e as Error).message }, "could not answer a failed request");
      res.destroy();
    }
  }

  private refuse(reason: RefusalReason, ctx: Record<string, unknown>) {
    this.refusals.inc({ reason });
    this.log.debug({ reason, ...ctx }, "request refused");
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse) {
    const post = this.posts.get(req.url ?? "");
    if (post) return this.routePost(req, res, post);
    // Public read-only views: the explorer page reads nodes' proof times from /metrics cross-origin.
    res.setHeader("access-control-allow-origin", "*");
    if (req.url === "/metrics") {
      const text = await this.metricsText();
      res.writeHead(200, { "content-type": this.registry.contentType });
      res.end(req.method === "HEAD" ? undefined : text);
    } else if (req.url === "/healthz") {
      const body = this.healthy();
      res.writeHead(body.ok === false ? 503 : 200, { "content-type": "application/json" });
      res.end(req.method === "HEAD" ? undefined : JSON.stringify(body));
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "not found" }));
    }
  }

  /** The registry's text, rendered at most once per METRICS_CACHE_MS whoever asks. */
  private metricsText(): Promise<string> {
    const now = Date.now();
    if (!this.metricsCache || now - this.metricsCache.at >= METRICS_CACHE_MS) {
      const text = this.registry.metrics();
      const entry = { at: now, text };
      this.metricsCache = entry;
      text.catch(() => {
        if (this.metricsCache === entry) this.metricsCache = undefined;
      });
    }
    return this.metricsCache.text;
  }

  /** 0 when `ip` may POST now (a token taken), else the seconds until it may. */
  private postWait(ip: string): number {
    const now = Date.now();
    const rate = this.limits.httpPostRatePerIp;
    const burst = this.limits.httpPostBurstPerIp;
    let bucket = this.buckets.get(ip);
    if (bucket) {
      this.buckets.delete(ip);
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) * rate) / 1000);
      bucket.at = now;
    } else {
      bucket = { tokens: burst, at: now };
      if (this.buckets.size >= MAX_RATE_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(ip, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / rate));
  }

  private async routePost(req: http.IncomingMessage, res: http.ServerResponse, handler: JsonHandler) {
    const reply = (status: number, body: Record<string, unknown>, headers: Record<string, string> = {}) => {
      // A connection the server already answered and is closing (a body too slow) takes no second answer.
      if (res.headersSent || !res.writable || this.cut.has(req.socket)) return;
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    // Refusals that need no body close the connection: the body left unread is not worth reading.
    const refuse = (reason: RefusalReason, status: number, error: string, headers = {}) => {
      this.refuse(reason, { ip: addressOf(req.socket), url: req.url });
      reply(status, { error }, { connection: "close", ...headers });
    };
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      return refuse("method", 405, "method not allowed: POST a JSON body");
    }
    // A JSON content type is what a web page cannot send cross-origin without a CORS preflight, which this
    // port never grants: no page a node's operator visits can post here in the operator's name.
    const type = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/json") {
      return refuse("content_type", 415, "content-type must be application/json");
    }
    const wait = this.postWait(addressOf(req.socket));
    if (wait > 0) {
      return refuse("rate_limited", 429, "too many requests from this address: slow down", {
        "retry-after": String(wait),
      });
    }
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > MAX_JSON_BODY_BYTES) {
      return refuse("too_large", 413, `body larger than ${MAX_JSON_BODY_BYTES} bytes`);
    }
    const text = await readBody(req, MAX_JSON_BODY_BYTES);
    if (text === undefined) return refuse("too_large", 413, `body larger than ${MAX_JSON_BODY_BYTES} bytes`);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const { status, body: out } = await handler(body);
    reply(status, out);
  }

  /** Stop listening; connections still open after a short grace (slow or idle clients) are cut. */
  async close() {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const timer = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    await closed;
    clearTimeout(timer);
  }
}

/**
 * Send `response` and close the connection the way that lets the client read it: a FIN after the response
 * (closing at once, with the client's bytes still unread, would send a reset that can discard the answer in
 * the client's buffers), then the socket cut after a short grace whether or not the client closed its side.
 */
function answerAndClose(socket: Duplex, response: string) {
  try {
    socket.end(response);
  } catch {
    socket.destroy();
    return;
  }
  setTimeout(() => socket.destroy(), CLOSE_AFTER_ANSWER_MS).unref();
}

/**
 * The request body as text, or undefined (the rest left unread) once it passes `maxBytes`; a
 * ClientGoneError when the connection ends (the client left, or the server cut a body too slow) first.
 */
function readBody(req: http.IncomingMessage, maxBytes: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      f();
    };
    req.on("data", (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > maxBytes) {
        req.pause();
        settle(() => resolve(undefined));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => settle(() => resolve(Buffer.concat(chunks).toString("utf8"))));
    req.on("error", () => settle(() => reject(new ClientGoneError())));
    req.on("close", () => settle(() => reject(new ClientGoneError())));
  });
}

/** Run `stop` once on SIGTERM or SIGINT, then exit with 0 (or 1 if stopping failed). */
export function onShutdown(log: Logger, stop: () => Promise<void>) {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    stop().then(
      () => {
        log.info("stopped");
        process.exit(0);
      },
      (err) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => handler("SIGTERM"));
  process.on("SIGINT", () => handler("SIGINT"));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `tick` every `intervalMs` until stopped. While ticks fail it backs off exponentially (up to 30 s);
 * `stop()` cuts any wait short, so shutdown never waits out a backoff.
 */
export class PollLoop {
  private running = false;
  private wake?: () => void;
  private done?: Promise<void>;

  constructor(
    private readonly intervalMs: number,
    private readonly tick: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  get isRunning() {
    return this.running;
  }

  start() {
    this.running = true;
    this.done = this.run();
  }

  async stop() {
    this.running = false;
    this.wake?.();
    await this.done;
  }

  private async run() {
    let failures = 0;
    while (this.running) {
      try {
        await this.tick();
        failures = 0;
      } catch (err) {
        failures++;
        this.log.warn({ err: (err as Error).message, failures }, "poll failed; backing off");
        await this.pause(Math.min(30_000, this.intervalMs * 2 ** Math.min(failures, 5)));
      }
      await this.pause(this.intervalMs);
    }
  }

  private pause(ms: number) {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
