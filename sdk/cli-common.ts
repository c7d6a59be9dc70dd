import { Command } from "commander";
import { JsonRpcProvider, Wallet } from "ethers";
import { releaseProver } from "../zkml";
import { parse } from "../workers/runtime/config";
import { OpgClientError } from "./client";

/** Shared plumbing of the client and operator commands: connection flags, the key, output, exit codes. */
export interface Conn {
  rpcUrl?: string;
  deployment?: string;
  dataUrl?: string;
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
        "shell history and process lists).",
    );
}

export function settings(o: Conn) {
  return {
    rpcUrl: o.rpcUrl ?? process.env.OPG_RPC_URL ?? "http://127.0.0.1:8545",
    deployment: o.deployment ?? process.env.OPG_DEPLOYMENT ?? "deployments/localhost.json",
    dataUrl: o.dataUrl ?? process.env.OPG_DATA_URL ?? "http://127.0.0.1:8600",
  };
}

/** No response cache: an approval and the submission right after it must see fresh nonces. */
export const rpc = (url: string) =>
  new JsonRpcProvider(url, undefined, { staticNetwork: true, cacheTimeout: -1 });

export function signerFrom(provider: JsonRpcProvider): Wallet {
  const key = process.env.OPG_PRIVATE_KEY;
  if (!key) throw new OpgClientError("OPG_PRIVATE_KEY is not set: this command sends a transaction");
  try {
    return new Wallet(parse.privateKey(key), provider);
  } catch (e) {
    throw new OpgClientError(`OPG_PRIVATE_KEY: ${(e as Error).message}`);
  }
}

export const json = (v: unknown) =>
  JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2) + "\n";

/**
 * Run a command body; a failure prints its message (no stack trace) and exits 1. The body hands its
 * provider to `keep` so that it is closed at the end either way.
 */
export async function run(body: (keep: (p: JsonRpcProvider) => void) => Promise<number | void>) {
  let provider: JsonRpcProvider | undefined;
  try {
    process.exitCode = (await body((p) => (provider = p))) ?? 0;
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    provider?.destroy();
    await releaseProver(); // snarkjs's worker threads (audits) would keep the process alive
  }
}
