import http from "node:http";
import client from "prom-client";
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

/**
 * The HTTP face every node process has: `/metrics` (Prometheus) and `/healthz`, plus graceful shutdown on
 * SIGTERM/SIGINT: stop taking new work, let work in flight finish or park it, then exit 0. A node may add
 * JSON POST routes (`postJson`), e.g. the verification node's `/attest`.
 */
export class ServiceHttp {
  readonly registry = new client.Registry();
  private server?: http.Server;
  private healthy: () => Record<string, unknown> = () => ({ ok: true });
  private readonly posts = new Map<string, JsonHandler>();

  constructor(private readonly log: Logger) {
    client.collectDefaultMetrics({ register: this.registry });
  }

  setHealth(fn: () => Record<string, unknown>) {
    this.healthy = fn;
  }

  /** Serve `POST <path>` with a JSON body of at most MAX_JSON_BODY_BYTES. */
  postJson(path: string, handler: JsonHandler) {
    this.posts.set(path, handler);
  }

  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    this.server = http.createServer((req, res) => {
      void this.route(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(port, host, () => resolve());
    });
    const address = this.server.address();
    const bound = typeof address === "object" && address ? address.port : port;
    this.log.info({ port: bound }, "metrics and health listening");
    return bound;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse) {
    const post = this.posts.get(req.url ?? "");
    if (post) return this.routePost(req, res, post);
    // Public read-only views: the explorer page reads nodes' proof times from /metrics cross-origin.
    res.setHeader("access-control-allow-origin", "*");
    if (req.url === "/metrics") {
      res.writeHead(200, { "content-type": this.registry.contentType });
      res.end(await this.registry.metrics());
    } else if (req.url === "/healthz") {
      const body = this.healthy();
      res.writeHead(body.ok === false ? 503 : 200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "not found" }));
    }
  }

  private async routePost(req: http.IncomingMessage, res: http.ServerResponse, handler: JsonHandler) {
    const reply = (status: number, body: Record<string, unknown>) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      return reply(405, { error: "method not allowed: POST a JSON body" });
    }
    const text = await readBody(req, MAX_JSON_BODY_BYTES);
    if (text === undefined) {
      res.setHeader("connection", "close");
      return reply(413, { error: `body larger than ${MAX_JSON_BODY_BYTES} bytes` });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    try {
      const { status, body: out } = await handler(body);
      reply(status, out);
    } catch (err) {
      this.log.warn({ url: req.url, err: (err as Error).message }, "request failed");
      reply(500, { error: "internal error" });
    }
  }

  async close() {
    if (!this.server) return;
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}

/** The request body as text, or undefined (the rest left unread) once it passes `maxBytes`. */
function readBody(req: http.IncomingMessage, maxBytes: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
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
