import type { Command } from "commander";
import type { JsonRpcProvider, Wallet } from "ethers";

/**
 * Shared plumbing of the client, operator and token commands: connection flags, the key, output, exit codes.
 * This module is loaded by `opg --help`: it imports nothing heavy at top level (ethers, the contract
 * bindings and the prover are loaded by the functions that need them).
 */
export interface Conn {
  rpcUrl?: string;
  deployment?: string;
  dataUrl?: string;
}

/** A user's mistake or a refused operation: printed as one line, exit 1. */
export class CliError extends Error {
  override name = "CliError";
}

/** Connection flags shared by the client commands; each falls back to its OPG_* variable, then a default. */
export function withConnection(cmd: Command): Command {
  return cmd
    .option("--rpc-url <url>", "JSON-RPC endpoint (OPG_RPC_URL, default http://127.0.0.1:8545)")
    .option("--deployment <file>", "deployment file (OPG_DEPLOYMENT, default deployments/localhost.json)")
    .option("--data-url <url>", "data node (OPG_DATA_URL, default http://127.0.0.1:8600)")
    .addHelpText(
      "after",
      "\nThe signing key, where one is needed, is read from OPG_PRIVATE_KEY only (never a flag: flags end up in\n" +
        "shell history and process lists).\n" +
        "Exit codes: 0 success, 1 error, 2 bad configuration, 3 disagreement (an audit that does not agree).",
    );
}

export function settings(o: Conn) {
  return {
    rpcUrl: o.rpcUrl ?? process.env.OPG_RPC_URL ?? "http://127.0.0.1:8545",
    deployment: o.deployment ?? process.env.OPG_DEPLOYMENT ?? "deployments/localhost.json",
    dataUrl: o.dataUrl ?? process.env.OPG_DATA_URL ?? "http://127.0.0.1:8600",
  };
}

/** The chain id the endpoint serves; a CliError naming the endpoint when it does not answer in time. */
export async function probeChainId(url: string, timeoutMs = 10_000): Promise<bigint> {
  const { FetchRequest } = await import("ethers");
  let reply: { result?: string; error?: { message?: string } };
  try {
    const req = new FetchRequest(url);
    req.setHeader("content-type", "application/json");
    req.body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] });
    req.timeout = timeoutMs;
    req.retryFunc = async () => false;
    const res = await req.send();
    if (!res.ok()) throw new Error(`HTTP ${res.statusCode} ${res.statusMessage}`);
    reply = res.bodyJson;
  } catch (e) {
    const err = e as Error & { code?: string; shortMessage?: string };
    const refused = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|EHOSTUNREACH/.exec(err.message)?.[0];
    const why =
      err.code === "TIMEOUT"
        ? `no answer in ${timeoutMs / 1000} s`
        : (refused ?? err.shortMessage ?? err.message);
    throw new CliError(
      `cannot reach the JSON-RPC endpoint ${url} (${why}): is the chain running? (--rpc-url)`,
    );
  }
  if (typeof reply?.result !== "string") {
    throw new CliError(`${url} is not a JSON-RPC endpoint: eth_chainId answered ${JSON.stringify(reply)}`);
  }
  return BigInt(reply.result);
}

/**
 * A provider for `url`, checked to answer first (one clear line instead of ethers' retry loop), pinned to
 * the chain it serves. No response cache: an approval and the submission right after it must see fresh
 * nonces.
 */
export async function rpc(url: string): Promise<JsonRpcProvider> {
  const chainId = await probeChainId(url);
  const { JsonRpcProvider, Network } = await import("ethers");
  return new JsonRpcProvider(url, undefined, { staticNetwork: Network.from(chainId), cacheTimeout: -1 });
}

/** OPG_PRIVATE_KEY, checked; a CliError when it is not set or not a key (before anything is sent or asked). */
export async function keyFromEnv(): Promise<string> {
  const key = process.env.OPG_PRIVATE_KEY;
  if (!key) throw new CliError("OPG_PRIVATE_KEY is not set: this command sends a transaction");
  const { parse } = await import("../workers/runtime/config");
  try {
    return parse.privateKey(key);
  } catch (e) {
    throw new CliError(`OPG_PRIVATE_KEY: ${(e as Error).message}`);
  }
}

/** The wallet of OPG_PRIVATE_KEY; a CliError when it is not set or not a key. */
export async function signerFrom(provider: JsonRpcProvider): Promise<Wallet> {
  const key = await keyFromEnv();
  const { Wallet } = await import("ethers");
  return new Wallet(key, provider);
}

/** A non-negative integer argument named `what` ("task id", "model id"). */
export function idArg(what: string, raw: string): bigint {
  if (!/^[0-9]+$/.test(raw)) throw new CliError(`${what} "${raw}" is not a non-negative integer`);
  return BigInt(raw);
}

export const json = (v: unknown) =>
  JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2) + "\n";

/** snarkjs's worker threads (audits) would keep the process alive; free them only when they were loaded. */
async function releaseProverIfLoaded(): Promise<void> {
  const id = require.resolve("../zkml/prover/groth16");
  if (!require.cache[id]) return;
  const { releaseProver } = await import("../zkml/prover/groth16");
  await releaseProver();
}

/** One line for an error: its message (ethers' long messages cut to their short reason), stack with OPG_DEBUG. */
export function errorLine(e: unknown): string {
  if (process.env.OPG_DEBUG && e instanceof Error && e.stack) return e.stack;
  const err = e as { shortMessage?: string; message?: string; code?: string };
  const refused = /ECONNREFUSED ([^\s)]+)/.exec(err?.message ?? "");
  if (refused) return `cannot connect to ${refused[1]} (connection refused): is the node running there?`;
  return err?.shortMessage ?? err?.message ?? String(e);
}

/**
 * Run a command body; a failure prints its message (no stack trace) and exits 1. The body hands its
 * provider to `keep` so that it is closed at the end either way.
 */
export async function run(body: (keep: (p: JsonRpcProvider) => void) => Promise<number | void>) {
  let provider: JsonRpcProvider | undefined;
  try {
    process.exitCode = (await body((p) => (provider = p))) ?? 0;
  } catch (e) {
    process.stderr.write(`error: ${errorLine(e)}\n`);
    process.exitCode = 1;
  } finally {
    provider?.destroy();
    await releaseProverIfLoaded();
  }
}
