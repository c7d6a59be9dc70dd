import { parse, type OptionSpec } from "./config";

const opt = <T>(spec: OptionSpec<T>) => spec as OptionSpec<unknown> & OptionSpec<T>;

/**
 * The limits of a node's HTTP service (`/metrics`, `/healthz`, and the verification node's `POST /attest`),
 * shared by both chain nodes' schemas. The defaults let one honest client (an inference node asking for
 * attestations, a Prometheus scraper, explorer pages) work unhindered and make a stranger's slow, aborted,
 * oversized or flooding requests cheap to refuse; docs/operators.md says how to run behind a proxy.
 */
export const httpSchema = {
  httpHeadersTimeoutMs: opt({
    env: "OPG_HTTP_HEADERS_TIMEOUT_MS",
    description: "time a client has to send a request's headers; a slower one is answered 408 and cut off",
    default: 5_000,
    parse: parse.int(500, 120_000),
  }),
  httpRequestTimeoutMs: opt({
    env: "OPG_HTTP_REQUEST_TIMEOUT_MS",
    description:
      "time a client has to send a whole request, body included (bodies are at most 64 KiB); a slower one is " +
      "answered 408 and cut off",
    default: 10_000,
    parse: parse.int(500, 600_000),
  }),
  httpKeepAliveTimeoutMs: opt({
    env: "OPG_HTTP_KEEP_ALIVE_TIMEOUT_MS",
    description: "how long an idle keep-alive connection is kept open between requests",
    default: 5_000,
    parse: parse.int(0, 600_000),
  }),
  httpMaxConnections: opt({
    env: "OPG_HTTP_MAX_CONNECTIONS",
    description: "open connections to the service port, all clients together; more are closed at once",
    default: 512,
    parse: parse.int(1, 65_535),
  }),
  httpMaxConnectionsPerIp: opt({
    env: "OPG_HTTP_MAX_CONNECTIONS_PER_IP",
    description:
      "open connections (so requests in flight) from one client address; more are answered 429 and closed " +
      "(behind a reverse proxy every client has the proxy's address: raise it, and limit at the proxy)",
    default: 32,
    parse: parse.int(1, 65_535),
  }),
  httpPostRatePerIp: opt({
    env: "OPG_HTTP_POST_RATE_PER_IP",
    description:
      "POST requests (POST /attest) per second from one client address, on average; more are answered 429 " +
      "with retry-after",
    default: 20,
    parse: parse.int(1, 100_000),
  }),
  httpPostBurstPerIp: opt({
    env: "OPG_HTTP_POST_BURST_PER_IP",
    description: "POST requests one client address may send at once before its rate applies",
    default: 40,
    parse: parse.int(1, 100_000),
  }),
};

/** The values of `httpSchema` in a node's config. */
export interface HttpConfig {
  httpHeadersTimeoutMs: number;
  httpRequestTimeoutMs: number;
  httpKeepAliveTimeoutMs: number;
  httpMaxConnections: number;
  httpMaxConnectionsPerIp: number;
  httpPostRatePerIp: number;
  httpPostBurstPerIp: number;
}

/** The HTTP limits `httpSchema` gives when nothing is set. */
export const DEFAULT_HTTP_CONFIG: HttpConfig = Object.fromEntries(
  Object.entries(httpSchema).map(([key, spec]) => [key, spec.default]),
) as unknown as HttpConfig;

/** The HTTP limits in `config` (a node's whole config), defaults for any it lacks. */
export function httpConfigOf(config: Partial<HttpConfig>): HttpConfig {
  const out = { ...DEFAULT_HTTP_CONFIG };
  for (const key of Object.keys(DEFAULT_HTTP_CONFIG) as (keyof HttpConfig)[]) {
    if (typeof config[key] === "number") out[key] = config[key];
  }
  return out;
}
