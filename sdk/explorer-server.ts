import fs from "node:fs";
import http from "node:http";
import path from "node:path";
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
  /** Extra /metrics URLs (nodes' registered endpoints are read as well). */
  metrics?: string[];
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
    pollMs: opts.pollMs,
    fromBlock: opts.fromBlock,
  });
  const headers = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    // Scripts only from this server (snarkjs's WebAssembly and its worker blobs allowed); data from anywhere
    // the user points the page at.
    "content-security-policy":
      "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' blob:; worker-src 'self' blob:; " +
      "connect-src *; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'",
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" });
      res.end("method not allowed\n");
      return;
    }
    if (url.pathname === "/config.json") {
      res.writeHead(200, { ...headers, "content-type": "application/json", "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : config);
      return;
    }
    if (url.pathname === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true }));
      return;
    }
    let rel: string;
    try {
      rel = decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname);
    } catch {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("malformed path\n");
      return;
    }
    const file = path.resolve(root, "." + rel);
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { "content-type": "text/plain" });
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
    else fs.createReadStream(file).pipe(res);
  });
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8700, host, () => resolve());
  });
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
