import { getAddress, getBytes, verifyMessage } from "ethers";

/**
 * What an inference node does before posting an optimistic result: ask verification nodes (`POST /attest`
 * on their service port) for attestations signed off chain, so that the result and its attestations settle
 * in one transaction (`submitResultOptimistic(..., attestations)`) and the happy path is post + finalise.
 * Every signature is checked here before it is posted (one bad signature would revert the whole post).
 * An endpoint is whatever its operator registered, so it is asked as a stranger: no redirect is followed,
 * at most MAX_REPLY_BYTES of its reply are read, and the whole round has one timeout.
 */

/** Most attestations a posted result carries (TaskRegistry.MAX_ATTESTERS). */
export const MAX_ATTESTATIONS = 16;
/** Largest reply read from a verification node (a signature and a few fields need under 1 KiB). */
export const MAX_REPLY_BYTES = 16 * 1024;

/** The request a verification node's `/attest` takes. */
export interface AttestationRequest {
  taskId: bigint;
  /** The inference node that posts (the claimer). */
  node: string;
  outputs: readonly bigint[];
}

/** An attestation checked here: signed by `attester` over the task's digest. */
export interface Attestation {
  attester: string;
  signature: string;
  url: string;
}

/** What gathering got: attestations to post, and why the others gave none (by URL). */
export interface Gathered {
  attestations: Attestation[];
  refused: { url: string; status?: number; error: string }[];
}

export interface GatherOptions {
  /** Base URLs of verification nodes' service ports (`/attest` is appended), in the order to ask them. */
  urls: readonly string[];
  /** How many attestations to get (the task's quorum, at least 1); asked at once, a refusal is replaced. */
  wanted: number;
  /** Time for the whole round, from the first request. */
  timeoutMs: number;
  /** The registry's attestationDigest(taskId, node, outputsHash): what a signature must cover. */
  digest: string;
  /** Whether `address` may attest (an eligible verification node). */
  eligible(address: string): Promise<boolean>;
  fetch?: typeof fetch;
}

/** `base` + `/attest`: a registered endpoint is the node's service URL (its /healthz is also accepted). */
export function attestUrl(base: string): string {
  const url = new URL(base);
  url.pathname = url.pathname.replace(/\/(healthz|metrics|attest)?\/?$/, "") + "/attest";
  url.search = "";
  url.hash = "";
  return url.toString();
}

/** Whether `endpoint` (as registered on chain) is an http(s) URL a node could be asked at. */
export function isHttpEndpoint(endpoint: string): boolean {
  try {
    const url = new URL(endpoint);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

async function readCapped(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_REPLY_BYTES) {
      await reader.cancel();
      throw new Error(`reply larger than ${MAX_REPLY_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Ask the verification nodes at `opts.urls` for attestations of `request`, `opts.wanted` at a time, a
 * refusal or failure replaced by the next URL, until `wanted` are in hand, the URLs run out, or the time
 * is up. Each signature is recovered here: it must be over `opts.digest`, by the attester it names, an
 * eligible verification node that is not the posting node, and not one already counted.
 */
export async function gatherAttestations(
  request: AttestationRequest,
  opts: GatherOptions,
): Promise<Gathered> {
  const doFetch = opts.fetch ?? fetch;
  const wanted = Math.min(MAX_ATTESTATIONS, Math.max(1, opts.wanted));
  const node = getAddress(request.node);
  const body = JSON.stringify({
    taskId: request.taskId.toString(),
    node,
    outputs: request.outputs.map(String),
  });
  const attestations: Attestation[] = [];
  const refused: Gathered["refused"] = [];
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), opts.timeoutMs);
  const queue = [...opts.urls];

  async function ask(url: string): Promise<void> {
    let res: Response;
    try {
      res = await doFetch(attestUrl(url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal: abort.signal,
        // A registered endpoint is a stranger's URL: a redirect could point this node's request anywhere
        // it can reach (an internal address), so none is followed.
        redirect: "manual",
      });
    } catch (err) {
      refused.push({ url, error: abort.signal.aborted ? "timed out" : (err as Error).message });
      return;
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel().catch(() => undefined);
      refused.push({
        url,
        status: res.status,
        error: `redirected (HTTP ${res.status}): an attestation endpoint must answer itself, redirects are not followed`,
      });
      return;
    }
    let reply: Record<string, unknown>;
    try {
      reply = JSON.parse(await readCapped(res));
    } catch (err) {
      refused.push({ url, status: res.status, error: `unreadable reply: ${(err as Error).message}` });
      return;
    }
    if (res.status !== 200) {
      refused.push({ url, status: res.status, error: String(reply.error ?? "refused") });
      return;
    }
    const { attester, signature } = reply;
    if (typeof attester !== "string" || typeof signature !== "string") {
      refused.push({ url, status: 200, error: "reply without attester and signature" });
      return;
    }
    let signer: string;
    try {
      signer = verifyMessage(getBytes(opts.digest), signature);
    } catch (err) {
      refused.push({ url, status: 200, error: `bad signature: ${(err as Error).message}` });
      return;
    }
    const problem =
      signer !== getAddress(attester)
        ? `signature by ${signer}, not by the attester named ${attester}`
        : signer === node
          ? "signed by the posting node itself"
          : attestations.some((a) => a.attester === signer)
            ? `${signer} already attested`
            : !(await opts.eligible(signer))
              ? `${signer} is not an eligible verification node`
              : undefined;
    if (problem) {
      refused.push({ url, status: 200, error: problem });
      return;
    }
    // Checked again: another request may have counted the same signer while this one was checked.
    if (attestations.some((a) => a.attester === signer)) {
      refused.push({ url, status: 200, error: `${signer} already attested` });
    } else if (attestations.length < wanted) attestations.push({ attester: signer, signature, url });
  }

  async function worker(): Promise<void> {
    while (attestations.length < wanted && !abort.signal.aborted) {
      const url = queue.shift();
      if (url === undefined) return;
      await ask(url);
    }
  }

  try {
    await Promise.all(Array.from({ length: Math.min(wanted, queue.length) }, worker));
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return { attestations, refused };
}
