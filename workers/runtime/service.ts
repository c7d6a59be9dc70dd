import http from "node:http";
import client from "prom-client";
import type { Logger } from "./logger";

/**
 * The HTTP face every node process has: `/metrics` (Prometheus) and `/healthz`, plus graceful shutdown on
 * SIGTERM/SIGINT: stop taking new work, let work in flight finish or park it, then exit 0.
 */
export class ServiceHttp {
  readonly registry = new client.Registry();
  private server?: http.Server;
  private healthy: () => Record<string, unknown> = () => ({ ok: true });

  constructor(private readonly log: Logger) {
    client.collectDefaultMetrics({ register: this.registry });
  }

  setHealth(fn: () => Record<string, unknown>) {
    this.healthy = fn;
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

  async close() {
    if (!this.server) return;
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
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
