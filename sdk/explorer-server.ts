import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { pipeline, type Duplex } from "node:stream";
import type { Deployment } from "../workers/runtime/chain";
import { packageRoot } from "../zkml/prover/paths";

/**
 * `opg explorer`: serves the built explorer page (dist/explorer, built by `npm run build` with Vite) and
 * /config.json, which tells the page where the RPC and the data node are and the deployment's addresses.
 * The server holds no data and proxies nothing: the page reads the chain and the data node itself and
 * checks what it reads (hashes, proofs, signatures), so a lying server can only point it elsewhere, which
 * the page shows (chain id, addresses, URLs) as what it took on trust.
 */
export interface ExplorerOptions {
  rpc: string;
  data: string;
  deployment: Deployment;
  /** Extra /metrics URLs (nodes' registered endpoints are read as well, unless `nodeMetrics` is false). */
  metrics?: string[];
  /**
   * Whether the page reads /metrics from every node's registered endpoint (default true). Those reads go
   * from each viewer's browser to whatever address an operator registered, private ones included; false
   * keeps the page to the `metrics` URLs.
   */
  nodeMetrics?: boolean;
  pollMs?: number;
  /** First block the page reads logs from (default 0). */
  fromBlock?: number;
  port?: number;
  host?: string;
  /** Folder of the built page (default: dist/explorer in the package). */
  root?: string;
}

export interface RunningExplorer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Time a client has for a request's head, and for the whole request (the server takes no bodies). */
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
/** Idle keep-alive connections are closed after this long. */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Open connections, all clients together. */
const MAX_CONNECTIONS = 512;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".wasm": "application/wasm",
  ".ico": "image/x-icon",
};

/** The page's files: an error naming the build command when they are missing. */
export function explorerRoot(root?: string): string {
  const dir = root ?? path.join(packageRoot(), "dist", "explorer");
  if (!fs.existsSync(path.join(dir, "index.html"))) {
    throw new Error(`the explorer page is not built (${dir}/index.html missing): run npm run build`);
  }
  return dir;
}

export async function startExplorer(opts: ExplorerOptions): Promise<RunningExplorer> {
  const root = explorerRoot(opts.root);
  const config = JSON.stringify({
    rpc: opts.rpc,
    data: opts.data.replace(/\/+$/, ""),
    chainId: opts.deployment.chainId,
    contracts: {
      token: opts.deployment.token,
      staking: opts.deployment.staking,
      models: opts.deployment.models,
      tasks: opts.deployment.tasks,
      enclaves: opts.deployment.enclaves,
      disputes: opts.deployment.disputes,
    },
    metrics: opts.metrics ?? [],
    nodeMetrics: opts.nodeMetrics ?? true,
    pollMs: opts.pollMs,
    fromBlock: opts.fromBlock,
  });
  const headers = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    // No other site may frame the page (clickjacking): frame-ancestors for browsers that read CSP,
    // X-Frame-Options for those that do not.
    "x-frame-options": "DENY",
    // Scripts only from this server (snarkjs's WebAssembly and its worker blobs allowed); data from anywhere
    // the user points the page at.
    "content-security-policy":
      "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' blob:; worker-src 'self' blob:; " +
      "connect-src *; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; " +
      "base-uri 'none'; frame-ancestors 'none'",
  };
  const serve = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, {
        ...headers,
        allow: "GET, HEAD",
        "content-type": "text/plain",
        connection: "close",
      });
      res.end("method not allowed\n");
      return;
    }
    if (url.pathname === "/config.json") {
      res.writeHead(200, { ...headers, "content-type": "application/json", "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : config);
      return;
    }
    if (url.pathname === "/healthz") {
      res.writeHead(200, { ...headers, "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true }));
      return;
    }
    let rel: string;
    try {
      rel = decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname);
    } catch {
      res.writeHead(400, { ...headers, "content-type": "text/plain" });
      res.end("malformed path\n");
      return;
    }
    const file = path.resolve(root, "." + rel);
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { ...headers, "content-type": "text/plain" });
      res.end("not found\n");
      return;
    }
    res.writeHead(200, {
      ...headers,
      "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
      // hashed asset names never change; index.html must be re-read
      "cache-control": rel.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
    });
    if (req.method === "HEAD") res.end();
    // A file that cannot be read (removed by a rebuild meanwhile) ends this response, not the server.
    else pipeline(fs.createReadStream(file), res, () => undefined);
  };
  // Any failure of a request is answered 500 (or the connection cut when an answer was under way), never an
  // exit; the message names no file.
  const server = http.createServer(
    { requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1_000, maxHeaderSize: 8 * 1024 },
    (req, res) => {
      res.on("error", () => undefined);
      try {
        serve(req, res);
      } catch {
        if (res.headersSent || !res.writable) res.destroy();
        else {
          res.writeHead(500, { ...headers, "content-type": "text/plain", connection: "close" });
          res.end("internal error\n");
        }
      }
    },
  );
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.maxConnections = MAX_CONNECTIONS;
  // A head that is not HTTP, too large or too slow: answered when the socket can take it, then cut.
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    const status =
      err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : err.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
    if (!socket.writable || err.code === "ECONNRESET" || err.code === "HPE_INVALID_EOF_STATE") {
      socket.destroy();
      return;
    }
    // A FIN after the answer (a reset could discard it in the client's buffers), then cut after a grace.
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
    );
    setTimeout(() => socket.destroy(), 1_000).unref();
  });
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8700, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // The listening socket failing later is no reason to take the page down with an unhandled error.
  server.on("error", () => undefined);
  const port = (server.address() as { port: number }).port;
  const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  return {
    url: `http://${shown}:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
