/**
 * Nodes' Prometheus metrics, read by the page: a parser for the text exposition format (version 0.0.4, what
 * prom-client serves) and a fetch with a timeout. What the page plots from them is the inference node's
 * `opg_stage_seconds` histogram (workers/inference/node.ts): seconds per pipeline stage, `stage` label one of
 * execute, reference, prove, attest, chain.
 */

export interface Sample {
  /** The sample's own name (`x_bucket`, `x_sum`, `x_count` for a histogram named `x`). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  /** counter, gauge, histogram, summary or untyped. */
  type: string;
  samples: Sample[];
}

export interface HistogramBucket {
  /** Upper bound (inclusive); Infinity for the +Inf bucket. */
  le: number;
  /** Cumulative count of observations <= le. */
  count: number;
}

/** One labelled series of a histogram family. */
export interface HistogramSeries {
  /** The series' labels, `le` excluded. */
  labels: Record<string, string>;
  /** Sorted by `le`, cumulative, as exported. */
  buckets: HistogramBucket[];
  sum: number;
  count: number;
}

const SUFFIXES: Record<string, string[]> = {
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["_sum", "_count"],
};

function parseValue(v: string): number {
  if (v === "+Inf" || v === "Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  return Number(v);
}

/** `{a="x",b="y\"z"}` from position `i` (at the `{`); returns the labels and the index after the `}`. */
function parseLabels(line: string, i: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++; // past "{"
  while (i < line.length) {
    while (line[i] === " " || line[i] === ",") i++;
    if (line[i] === "}") return [labels, i + 1];
    const eq = line.indexOf("=", i);
    if (eq < 0) throw new Error("label without a value");
    const key = line.slice(i, eq).trim();
    i = eq + 1;
    if (line[i] !== '"') throw new Error(`label ${key}: value not quoted`);
    i++;
    let value = "";
    for (; i < line.length && line[i] !== '"'; i++) {
      if (line[i] === "\\" && i + 1 < line.length) {
        i++;
        value += line[i] === "n" ? "\n" : line[i];
      } else value += line[i];
    }
    if (line[i] !== '"') throw new Error(`label ${key}: unterminated value`);
    labels[key] = value;
    i++;
  }
  throw new Error("unterminated label set");
}

/**
 * Parses Prometheus text into its metric families, by family name. Samples of a histogram or summary
 * (`_bucket`, `_sum`, `_count`) go to their family; a sample without a `# TYPE` line gets an untyped family
 * of its own. Malformed lines are skipped (a node's metrics are a hint, not evidence).
 */
export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, help: "", type: "untyped", samples: [] }));
    return f;
  };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith("#")) {
      const m = /^#\s*(HELP|TYPE)\s+(\S+)\s*(.*)$/.exec(line);
      if (!m) continue;
      if (m[1] === "HELP") family(m[2]).help = m[3].replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      else family(m[2]).type = m[3].trim() || "untyped";
      continue;
    }
    try {
      const nameEnd = line.search(/[{\s]/);
      if (nameEnd <= 0) continue;
      const name = line.slice(0, nameEnd);
      let labels: Record<string, string> = {};
      let rest = nameEnd;
      if (line[nameEnd] === "{") [labels, rest] = parseLabels(line, nameEnd);
      const fields = line.slice(rest).trim().split(/\s+/);
      if (!fields[0]) continue;
      const value = parseValue(fields[0]);
      if (Number.isNaN(value) && fields[0] !== "NaN") continue;
      let owner = families.get(name);
      if (!owner || owner.type === "untyped") {
        for (const [type, suffixes] of Object.entries(SUFFIXES)) {
          const suffix = suffixes.find((s) => name.endsWith(s));
          const base = suffix && families.get(name.slice(0, -suffix.length));
          if (base && base.type === type) owner = base;
        }
      }
      (owner ?? family(name)).samples.push({ name, labels, value });
    } catch {
      // a malformed sample line: skipped
    }
  }
  return families;
}

const seriesKey = (labels: Record<string, string>) =>
  JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** The series of a histogram family, one per label set (without `le`). */
export function histogramSeries(f: Family | undefined): HistogramSeries[] {
  if (!f || f.type !== "histogram") return [];
  const out = new Map<string, HistogramSeries>();
  for (const s of f.samples) {
    const { le, ...labels } = s.labels;
    const key = seriesKey(labels);
    let h = out.get(key);
    if (!h) out.set(key, (h = { labels, buckets: [], sum: 0, count: 0 }));
    if (s.name === `${f.name}_bucket` && le !== undefined)
      h.buckets.push({ le: parseValue(le), count: s.value });
    else if (s.name === `${f.name}_sum`) h.sum = s.value;
    else if (s.name === `${f.name}_count`) h.count = s.value;
  }
  for (const h of out.values()) h.buckets.sort((a, b) => a.le - b.le);
  return [...out.values()];
}

/** Adds up histograms with the same bucket bounds (e.g. the same stage on several nodes). */
export function mergeHistograms(
  list: HistogramSeries[],
  labels: Record<string, string> = {},
): HistogramSeries {
  const byLe = new Map<number, number>();
  let sum = 0;
  let count = 0;
  for (const h of list) {
    sum += h.sum;
    count += h.count;
    for (const b of h.buckets) byLe.set(b.le, (byLe.get(b.le) ?? 0) + b.count);
  }
  const buckets = [...byLe.entries()].map(([le, c]) => ({ le, count: c })).sort((a, b) => a.le - b.le);
  return { labels, buckets, sum, count };
}

/**
 * The q-quantile estimated from cumulative buckets by linear interpolation inside the bucket it falls in
 * (Prometheus' histogram_quantile). Undefined without observations; the highest finite bound when it falls
 * in the +Inf bucket.
 */
export function histogramQuantile(q: number, h: HistogramSeries): number | undefined {
  const b = h.buckets;
  const total = b.length ? b[b.length - 1].count : 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  for (let i = 0; i < b.length; i++) {
    if (b[i].count < rank) continue;
    const upper = b[i].le;
    const lower = i === 0 ? 0 : b[i - 1].le;
    if (!Number.isFinite(upper)) return lower;
    const below = i === 0 ? 0 : b[i - 1].count;
    const inBucket = b[i].count - below;
    return inBucket > 0 ? lower + ((upper - lower) * (rank - below)) / inBucket : upper;
  }
  return b[b.length - 1].le;
}

export type MetricsRead =
  | { url: string; ok: true; families: Map<string, Family>; at: number }
  | { url: string; ok: false; error: string; at: number };

/** GETs a /metrics URL cross-origin with a timeout; never throws (an unreachable node is normal). */
export async function fetchMetrics(url: string, timeoutMs = 3000): Promise<MetricsRead> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const at = Date.now();
  try {
    // (typed as RequestInit so that this module also type-checks under Node's fetch types, for its tests)
    const init = { mode: "cors", signal: abort.signal, cache: "no-store" } as RequestInit;
    const res = await fetch(url, init);
    if (!res.ok) return { url, ok: false, error: `HTTP ${res.status}`, at };
    return { url, ok: true, families: parsePrometheus(await res.text()), at };
  } catch (e) {
    // A browser says only "Failed to fetch" for a refused connection, an unknown host or a missing CORS header.
    const error = abort.signal.aborted
      ? `no answer in ${timeoutMs / 1000} s`
      : e instanceof TypeError
        ? "no connection, or no CORS header"
        : (e as Error).message || "failed";
    return { url, ok: false, error, at };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The /metrics URLs to read: every registered node endpoint that is an http(s) URL (a /healthz path replaced
 * by /metrics, `/metrics` appended to any other path not ending so), then the configured extra URLs;
 * deduplicated, in that order.
 */
export function metricsUrls(endpoints: Iterable<string>, extra: readonly string[] = []): string[] {
  const urls: string[] = [];
  for (const e of endpoints) {
    let u: URL;
    try {
      u = new URL(e.trim());
    } catch {
      continue;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") continue;
    // An endpoint is whatever its operator registered: the page asks it for /metrics only, never with the
    // registered query, fragment or credentials.
    u.search = "";
    u.hash = "";
    u.username = "";
    u.password = "";
    // A node registers its base URL or its /healthz (the dev network does); its metrics are beside it.
    if (/\/(healthz?|readyz?)\/?$/.test(u.pathname))
      u.pathname = u.pathname.replace(/\/[^/]*\/?$/, "/metrics");
    else if (!/\/metrics\/?$/.test(u.pathname)) u.pathname = u.pathname.replace(/\/*$/, "") + "/metrics";
    urls.push(u.toString());
  }
  urls.push(...extra.map((x) => x.trim()).filter(Boolean));
  return [...new Set(urls)];
}
