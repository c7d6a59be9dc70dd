import type { JsonRpcProvider } from "ethers";
import { checkDeployment, DeploymentMismatchError, effectiveConfirmations, type Deployment } from "./chain";
import type { Logger } from "./logger";
import { sleep } from "./service";

/**
 * Exit codes of every node process: 0 a clean stop (SIGTERM/SIGINT), 1 a failure at run time (an endpoint
 * that does not answer, a port in use, a crash), 2 a configuration that is invalid or does not match the
 * chain (bad flag or variable, missing deployment file, deployment of another chain).
 */
export const EXIT = { ok: 0, failure: 1, config: 2 } as const;

/** Why a node cannot start, with the exit code it should leave with. */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "StartupError";
  }
}

/** Longest single request while probing an endpoint at start. */
const PROBE_TIMEOUT_MS = 5_000;

function reasonOf(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message;
}

/**
 * Call `attempt` until it succeeds, backing off from 250 ms to 2 s between tries, for at most `waitSeconds`
 * (at least one try). Then throw a StartupError (exit 1) naming `what` and the last failure.
 */
export async function retryAtStart<T>(
  what: string,
  attempt: () => Promise<T>,
  waitSeconds: number,
  log: Logger,
): Promise<T> {
  const started = Date.now();
  let delay = 250;
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (e) {
      const elapsed = Date.now() - started;
      if (elapsed + delay > waitSeconds * 1000) {
        throw new StartupError(
          `${what} is unreachable (${reasonOf(e)}) after ${tries} ${tries === 1 ? "try" : "tries"} in ` +
            `${(elapsed / 1000).toFixed(1)} s`,
          EXIT.failure,
        );
      }
      if (tries === 1) {
        log.warn({ reason: reasonOf(e), waitSeconds }, `${what} not answering yet; retrying`);
      }
      await sleep(delay);
      delay = Math.min(2_000, delay * 2);
    }
  }
}

/** eth_chainId over plain HTTP: an answer proves the endpoint is a JSON-RPC server, not just a port. */
export async function rpcChainId(rpcUrl: string): Promise<bigint> {
  const res = await fetch(rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
    signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const body = (await res.json()) as { result?: string; error?: { message?: string } };
  if (typeof body.result !== "string") throw new Error(body.error?.message ?? "no eth_chainId result");
  return BigInt(body.result);
}

/** GET <dataUrl>/healthz answers 200. */
export async function dataNodeHealthy(dataUrl: string): Promise<void> {
  const res = await fetch(new URL("/healthz", dataUrl), { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  await res.body?.cancel();
  if (!res.ok) throw new Error(`/healthz answered HTTP ${res.status}`);
}

export interface PreflightOptions {
  rpcUrl: string;
  dataUrl: string;
  provider: JsonRpcProvider;
  deployment: Deployment;
  deploymentFile: string;
  confirmations: number | "auto";
  startTimeoutSeconds: number;
  log: Logger;
}

/**
 * What every chain node checks before it starts work, in order, each failing with one clear reason: the RPC
 * endpoint answers (exit 1), the deployment file describes that chain (exit 2), the data node answers
 * (exit 1). Returns the chain id and the confirmations to use (`auto` resolved), both logged.
 */
export async function preflight(o: PreflightOptions): Promise<{ chainId: bigint; confirmations: number }> {
  const chainId = await retryAtStart(
    `the RPC endpoint ${o.rpcUrl}`,
    () => rpcChainId(o.rpcUrl),
    o.startTimeoutSeconds,
    o.log,
  );
  try {
    await checkDeployment(o.provider, o.deployment, { file: o.deploymentFile, rpcUrl: o.rpcUrl });
  } catch (e) {
    if (e instanceof DeploymentMismatchError) throw new StartupError(e.message, EXIT.config);
    throw new StartupError(`checking ${o.deploymentFile} against ${o.rpcUrl}: ${reasonOf(e)}`, EXIT.failure);
  }
  await retryAtStart(
    `the data node ${o.dataUrl}`,
    () => dataNodeHealthy(o.dataUrl),
    o.startTimeoutSeconds,
    o.log,
  );
  const confirmations = effectiveConfirmations(o.confirmations, chainId);
  o.log.info(
    {
      chainId: chainId.toString(),
      confirmations,
      ...(o.confirmations === "auto" ? { confirmationsSetting: "auto" } : {}),
    },
    o.confirmations === "auto"
      ? `confirmations: ${confirmations} (auto: ${confirmations === 0 ? "local automining chain" : "not a local chain"})`
      : `confirmations: ${confirmations}`,
  );
  return { chainId, confirmations };
}
