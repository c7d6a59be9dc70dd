import "./overview.css";
import type { Ctx, View } from "../app";
import { clear, h } from "../dom";
import { ago, opg, short } from "../format";
import {
  fetchMetrics,
  histogramQuantile,
  histogramSeries,
  mergeHistograms,
  metricsUrls,
  type HistogramSeries,
  type MetricsRead,
} from "../metrics";
import {
  barPlot,
  bucketOf,
  duration,
  fmt,
  histogramPlot,
  timeBuckets,
  timePlot,
  type TimeBuckets,
} from "../plots";
import type { Snapshot, TaskRow, TaskState } from "../types";
import { addrLink, modelLink, stateBadge, taskLink } from "./lists";

const STATES: TaskState[] = ["Verified", "Pending", "Claimed", "Open", "Disputed", "Rejected", "Expired"];
/** At most one redraw per this many ms, however fast blocks and block times arrive. */
const REDRAW_MS = 500;
/** Nodes' /metrics are read at most this often. */
const METRICS_MS = 15_000;
/** The histogram the inference node exports (workers/inference/node.ts): seconds per pipeline stage. */
const STAGE_METRIC = "opg_stage_seconds";
/** The verification node's re-checks by result (workers/verification/node.ts). */
const VERIFICATIONS_METRIC = "opg_verifications_total";
const STAGE_ORDER = ["execute", "reference", "prove", "attest", "chain"];
const MAX_BUCKETS = 60;
const TOP_NODES = 15;

const toOpg = (wei: bigint) => Number(wei) / 1e18;

function card(testid: string, k: string, v: string, sub?: string, title?: string) {
  return h(
    "div",
    { class: "card", "data-testid": `card-${testid}`, title },
    h("div", { class: "k" }, k),
    h("div", { class: "v", "data-testid": `card-${testid}-value` }, v),
    sub ? h("div", { class: "sub" }, sub) : null,
  );
}

function panel(name: string, title: string, ...children: (Node | string)[]) {
  return h(
    "div",
    { class: "panel plot-panel", "data-testid": `plot-${name}` },
    h("h2", {}, title),
    ...children,
  );
}

/** The q-quantile of sorted values (nearest rank). */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** The stat cards: tasks, verified share, fees, models, nodes, stake, slashes. */
function cards(snap: Snapshot): HTMLElement {
  const byState = new Map<TaskState, number>();
  let escrowed = 0n;
  let nodeFees = 0n;
  let royalties = 0n;
  let protocolFees = 0n;
  let refunds = 0n;
  let held = 0n;
  for (const t of snap.tasks.values()) {
    byState.set(t.state, (byState.get(t.state) ?? 0) + 1);
    escrowed += t.fee;
    if (t.settledBlock === undefined) held += t.fee;
    if (t.state === "Verified") {
      nodeFees += t.nodeFee ?? 0n;
      royalties += t.royalty ?? 0n;
      protocolFees += t.protocolFee ?? 0n;
    }
    refunds += t.refund ?? 0n;
  }
  const total = snap.tasks.size;
  const verified = byState.get("Verified") ?? 0;
  const settled = verified + (byState.get("Rejected") ?? 0) + (byState.get("Expired") ?? 0);
  const nodes = [...snap.nodes.values()];
  const registered = nodes.filter((n) => n.roles !== 0);
  const inference = registered.filter((n) => n.roles & 1).length;
  const verification = registered.filter((n) => n.roles & 2).length;
  const stake = nodes.reduce((a, n) => a + n.bonded, 0n);
  const locked = nodes.reduce((a, n) => a + n.locked, 0n);
  const slashes = nodes.reduce((a, n) => a + n.slashes.length, 0);
  const slashed = nodes.reduce((a, n) => a + n.slashed, 0n);
  const models = [...snap.models.values()];
  const states = STATES.filter((s) => byState.get(s)).map((s) => `${byState.get(s)} ${s.toLowerCase()}`);
  return h(
    "div",
    { class: "cards", "data-testid": "overview-cards" },
    card("tasks", "Tasks", String(total), states.join(" · ") || "none yet"),
    card(
      "verified",
      "Verified share",
      total ? `${((100 * verified) / total).toFixed(total >= 1000 ? 1 : 0)}%` : "–",
      `${verified} of ${total}${settled > verified ? ` · ${settled - verified} refunded` : ""}`,
      "verified tasks over all tasks submitted",
    ),
    card(
      "fees-escrowed",
      "Fees escrowed",
      opg(escrowed),
      `${opg(held)} held for unsettled tasks`,
      "the fees requesters put in escrow with every task submitted",
    ),
    card(
      "fees-paid",
      "Fees paid",
      opg(nodeFees + royalties + protocolFees),
      `nodes ${opg(nodeFees)} · royalties ${opg(royalties)} · protocol ${opg(protocolFees)}`,
      refunds ? `refunded: ${opg(refunds)}` : undefined,
    ),
    card("models", "Models", String(models.length), `${models.filter((m) => m.active).length} active`),
    card(
      "nodes",
      "Nodes",
      String(registered.length),
      `${inference} inference · ${verification} verification`,
    ),
    card("stake", "Total stake", opg(stake), `collateral locked ${opg(locked)}`),
    card("slashes", "Slashes", String(slashes), slashes ? `${opg(slashed)} slashed` : "none"),
  );
}

/** The 10 newest tasks. */
function latest(snap: Snapshot): HTMLElement {
  const rows = [...snap.tasks.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).slice(0, 10);
  const body = rows.map((t) =>
    h(
      "tr",
      { "data-task-id": String(t.id) },
      h("td", {}, taskLink(t.id)),
      h("td", {}, stateBadge(t.state)),
      h("td", {}, t.mode),
      h("td", {}, modelLink(snap, t.modelId)),
      h("td", {}, addrLink(t.node)),
      h("td", { class: "num" }, opg(t.fee)),
      h(
        "td",
        { class: "muted", title: `block ${t.submittedBlock}` },
        ago(snap.blockTimes.get(t.submittedBlock)) || `block ${t.submittedBlock}`,
      ),
    ),
  );
  return h(
    "table",
    { "data-testid": "latest-tasks-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["Task", "State", "Mode", "Model", "Node"].map((x) => h("th", {}, x)),
        h("th", { class: "num" }, "Fee"),
        h("th", {}, "Submitted"),
      ),
    ),
    h(
      "tbody",
      {},
      ...(body.length ? body : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No tasks yet."))]),
    ),
  );
}

interface Timed {
  task: TaskRow;
  submitted: number;
  settled?: number;
}

/** A plot to put in a box: rebuilt only when its key (the data it shows) changed, so tooltips stay open. */
interface Part {
  key: string;
  build: () => Node[];
}

/** Tasks and fees per time bucket, submit-to-verified latency, tasks per node. */
function chainPlots(snap: Snapshot, timed: Timed[], headTime: number | undefined, missing: number) {
  let min = Infinity;
  let max = -Infinity;
  for (const x of timed) {
    min = Math.min(min, x.submitted);
    max = Math.max(max, x.settled ?? x.submitted);
  }
  if (headTime !== undefined && headTime > max) max = headTime;
  const b: TimeBuckets = timed.length ? timeBuckets(min, max, MAX_BUCKETS) : { start: 0, width: 1, n: 0 };
  const zeros = () => new Array<number>(b.n).fill(0);
  const submitted = zeros();
  const verified = zeros();
  const failed = zeros();
  const escrowed = zeros();
  const nodeFee = zeros();
  const royalty = zeros();
  const protocol = zeros();
  const latencies: number[] = [];
  const latencyIn: number[][] = Array.from({ length: b.n }, () => []); // by the bucket of TaskVerified
  for (const { task: t, submitted: ts, settled } of timed) {
    const i = bucketOf(b, ts);
    submitted[i]++;
    escrowed[i] += toOpg(t.fee);
    if (settled === undefined) continue;
    const j = bucketOf(b, settled);
    if (t.state === "Verified") {
      verified[j]++;
      nodeFee[j] += toOpg(t.nodeFee ?? 0n);
      royalty[j] += toOpg(t.royalty ?? 0n);
      protocol[j] += toOpg(t.protocolFee ?? 0n);
      latencies.push(settled - ts);
      latencyIn[j].push(settled - ts);
    } else failed[j]++;
  }
  const pending = missing ? ` (reading the times of ${missing} blocks…)` : "";
  const tasks = (): Node[] => [
    timePlot({
      buckets: b,
      yLabel: "tasks",
      integer: true,
      series: [
        { name: "submitted", values: submitted, kind: "bar", stack: "submitted", color: "var(--accent)" },
        { name: "verified", values: verified, kind: "bar", stack: "settled", color: "var(--pass)" },
        ...(failed.some((v) => v > 0)
          ? [
              {
                name: "expired/rejected",
                values: failed,
                kind: "bar" as const,
                stack: "settled",
                color: "var(--fail)",
              },
            ]
          : []),
      ],
      empty: `No tasks yet${pending}.`,
    }),
  ];
  const fees = (): Node[] => [
    timePlot({
      buckets: b,
      yLabel: "OPG",
      series: [
        { name: "escrowed", values: escrowed, kind: "bar", stack: "in", color: "var(--accent)" },
        { name: "node fees", values: nodeFee, kind: "bar", stack: "out", color: "var(--pass)" },
        { name: "royalties", values: royalty, kind: "bar", stack: "out", color: "var(--trust)" },
        { name: "protocol", values: protocol, kind: "bar", stack: "out", color: "var(--muted)" },
      ],
      empty: `No fees yet${pending}.`,
    }),
  ];
  latencies.sort((x, y) => x - y);
  const median = latencies.length ? quantile(latencies, 0.5) : undefined;
  const p95 = latencies.length ? quantile(latencies, 0.95) : undefined;
  const slowest = latencies.length ? latencies[latencies.length - 1] : 0;
  // a few slow tasks (a dispute, a take-over) go to an overflow bar rather than squash the rest
  const clip = p95 !== undefined && slowest > 3 * p95 && p95 > 0 ? 1.5 * p95 : undefined;
  const shown = clip ?? slowest;
  const unit =
    shown < 180
      ? { div: 1, name: "s", long: "seconds" }
      : shown < 3 * 3600
        ? { div: 60, name: "min", long: "minutes" }
        : { div: 3600, name: "h", long: "hours" };
  const latency = (): Node[] => [
    histogramPlot({
      values: unit.div === 1 ? latencies : latencies.map((v) => v / unit.div),
      xLabel: `${unit.long} from TaskSubmitted to TaskVerified (block times)`,
      yLabel: "tasks",
      format: (v) => `${fmt(v)} ${unit.name}`,
      color: "var(--pass)",
      integer: unit.div === 1,
      clip: clip === undefined ? undefined : clip / unit.div,
      markers:
        median === undefined
          ? []
          : [
              { at: median / unit.div, label: "median", color: "var(--text)" },
              { at: p95! / unit.div, label: "p95", color: "var(--trust)" },
            ],
      empty: `No verified tasks yet${pending}.`,
    }),
    latencyText(),
    h("h3", { class: "plot-sub" }, "Latency over time (by the time of TaskVerified)"),
    h(
      "div",
      { "data-testid": "latency-over-time" },
      timePlot({
        buckets: b,
        yLabel: `latency (${unit.name})`,
        format: (v) => `${fmt(v)} ${unit.name}`,
        series: [
          { name: "median", values: perBucket(0.5), kind: "line", color: "var(--text)" },
          { name: "p95", values: perBucket(0.95), kind: "line", color: "var(--trust)" },
        ],
        empty: `No verified tasks yet${pending}.`,
      }),
    ),
  ];
  const perBucket = (q: number) =>
    latencyIn.map((xs) =>
      xs.length
        ? quantile(
            [...xs].sort((x, y) => x - y),
            q,
          ) / unit.div
        : NaN,
    );
  const latencyText = () =>
    h(
      "p",
      { class: "plot-stats", "data-testid": "latency-stats" },
      latencies.length
        ? [
            h("span", { "data-testid": "latency-median" }, `median ${duration(median!)}`),
            " · ",
            h("span", { "data-testid": "latency-p95" }, `p95 ${duration(p95!)}`),
            ` · max ${duration(latencies[latencies.length - 1])} · ${latencies.length} verified task${latencies.length === 1 ? "" : "s"}`,
          ]
        : "median – · p95 –",
    );
  const serving = [...snap.nodes.values()]
    .filter((n) => n.served > 0 || n.claimed > 0 || n.roles & 1)
    .sort((x, y) => y.served - x.served || y.claimed - x.claimed);
  const nodes = serving.slice(0, TOP_NODES);
  const perNode = (): Node[] => [
    barPlot({
      horizontal: true,
      integer: true,
      valueLabel: "tasks served (verified)",
      bars: nodes.map((n) => ({
        label: short(n.address, 4),
        value: n.served,
        href: `#/address/${n.address}`,
        title: `${n.address}\nserved ${n.served} · claimed ${n.claimed} · earned ${opg(n.earnings)}`,
      })),
      empty: "No node has served a task yet.",
    }),
  ];
  const span = b.n ? `${duration(b.n * b.width)} in ${b.n} buckets of ${duration(b.width)}` : "";
  const key = (...x: unknown[]) =>
    JSON.stringify(x, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v));
  return {
    tasks: { key: key(b, submitted, verified, failed, pending), build: tasks } as Part,
    fees: { key: key(b, escrowed, nodeFee, royalty, protocol, pending), build: fees } as Part,
    latency: { key: key(b, latencyIn, pending), build: latency } as Part,
    perNode: {
      key: key(nodes.map((n) => [n.address, n.served, n.claimed, n.earnings])),
      build: perNode,
    } as Part,
    span,
    more: serving.length - nodes.length,
  };
}

/** Mean and quantiles of one stage's histogram, for tooltips and text. */
function stageSummary(hs: HistogramSeries): string {
  const mean = hs.count ? hs.sum / hs.count : 0;
  const p50 = histogramQuantile(0.5, hs);
  const p95 = histogramQuantile(0.95, hs);
  return `${hs.count} × mean ${fmt(mean)} s · p50 ≈ ${p50 === undefined ? "–" : fmt(p50)} s · p95 ≈ ${p95 === undefined ? "–" : fmt(p95)} s`;
}

/** Proof times from the nodes' /metrics: mean seconds per stage, and the prove-time distribution. */
function proofPlots(reads: MetricsRead[], urls: string[]) {
  const byStage = new Map<string, HistogramSeries[]>();
  const sources = h("ul", { class: "metrics-sources", "data-testid": "metrics-sources" });
  for (const url of urls) {
    const r = reads.find((x) => x.url === url);
    let text: string;
    let cls = "muted";
    if (!r) text = "reading…";
    else if (!r.ok) {
      text = `unreachable (${r.error})`;
      cls = "fail";
    } else {
      const series = histogramSeries(r.families.get(STAGE_METRIC));
      for (const hs of series) {
        const stage = hs.labels.stage ?? "";
        byStage.set(stage, [...(byStage.get(stage) ?? []), hs]);
      }
      const prove = series.filter((hs) => hs.labels.stage === "prove");
      const checks = r.families.get(VERIFICATIONS_METRIC)?.samples ?? [];
      const byResult = checks.map((x) => `${x.labels.result ?? "?"} ${fmt(x.value)}`).join(", ");
      text = series.length
        ? `read: ${prove.length ? `prove ${stageSummary(mergeHistograms(prove))}` : "no proofs yet"}`
        : checks.length
          ? `read: a verification node (${VERIFICATIONS_METRIC}: ${byResult}), no proof times`
          : `read, no ${STAGE_METRIC} (not an inference node?)`;
      cls = "pass";
    }
    sources.append(
      h(
        "li",
        { "data-url": url, "data-state": !r ? "pending" : r.ok ? "read" : "unreachable" },
        h("span", { class: "mono" }, url),
        " ",
        h("span", { class: cls }, text),
      ),
    );
  }
  if (urls.length === 0)
    sources.append(
      h("li", { class: "muted" }, "No node registered an http(s) endpoint and no --metrics URL was given."),
    );
  const stages = [...byStage.keys()].sort((a, b) => {
    const ia = STAGE_ORDER.indexOf(a);
    const ib = STAGE_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : 1);
  });
  const merged = new Map(stages.map((st) => [st, mergeHistograms(byStage.get(st)!, { stage: st })]));
  const reached = reads.some((r) => r.ok);
  const unread =
    reads.length === 0 && urls.length > 0
      ? "Reading the nodes' /metrics…"
      : "No node's /metrics was reachable.";
  const none = reached ? `No ${STAGE_METRIC} observations yet.` : unread;
  const means = barPlot({
    valueLabel: "mean seconds per stage",
    format: (v) => `${fmt(v)} s`,
    bars: stages
      .map((st) => merged.get(st)!)
      .filter((hs) => hs.count > 0)
      .map((hs) => ({
        label: hs.labels.stage,
        value: hs.sum / hs.count,
        color: hs.labels.stage === "prove" ? "var(--accent)" : "var(--muted)",
        title: `${hs.labels.stage}: ${stageSummary(hs)}`,
      })),
    empty: none,
  });
  const prove = merged.get("prove");
  const dist: { label: string; value: number; title: string }[] = [];
  if (prove && prove.count > 0) {
    let below = 0;
    let prev = 0;
    for (const bk of prove.buckets) {
      const n = bk.count - below;
      const label = Number.isFinite(bk.le) ? `≤${fmt(bk.le)}` : `>${fmt(prev)}`;
      dist.push({
        label,
        value: n,
        title: `${fmt(prev)}–${Number.isFinite(bk.le) ? fmt(bk.le) : "∞"} s: ${n} proof${n === 1 ? "" : "s"}`,
      });
      below = bk.count;
      if (Number.isFinite(bk.le)) prev = bk.le;
    }
  }
  const distribution = barPlot({
    valueLabel: "proofs per duration bucket (s)",
    integer: true,
    bars: dist,
    empty: reached ? "No proofs observed yet." : unread,
  });
  return {
    means,
    distribution,
    sources,
    proveText: prove && prove.count ? `all nodes: prove ${stageSummary(prove)}` : "",
  };
}

/** The landing page: stat cards, plots over the whole chain read, proof times, the newest tasks. */
export function overviewView(ctx: Ctx): View {
  const cardsBox = h("div", {});
  const tasksBox = h("div", { class: "plot-box" });
  const feesBox = h("div", { class: "plot-box" });
  const latencyBox = h("div", { class: "plot-box" });
  const nodesBox = h("div", { class: "plot-box" });
  const proofBox = h("div", { class: "plot-box" });
  const latestBox = h("div", {});
  const spanNote = h("p", { class: "plot-stats", "data-testid": "time-span" });
  const feesNote = h(
    "p",
    { class: "plot-stats" },
    "escrowed at TaskSubmitted (left bar), paid out at TaskVerified (right bar: node fee, royalty, protocol fee)",
  );
  const nodesNote = h("p", { class: "plot-stats" });
  const proofPanel = panel("proof-times", "Proof times reported by nodes", proofBox);
  proofPanel.dataset.metrics = "reading";
  // For scripts and tests: data-times-pending on the section is the number of tasks whose block times are
  // still being read (0: every plot is complete); data-metrics on the proof panel turns "read" after a read.
  const el = h(
    "section",
    { "data-testid": "overview" },
    h("h1", {}, "Overview"),
    cardsBox,
    h(
      "div",
      { class: "plots" },
      panel("tasks-over-time", "Tasks over time", tasksBox, spanNote),
      panel("fees-over-time", "Fees over time", feesBox, feesNote),
      panel("latency", "Submit-to-verified latency", latencyBox),
      panel("tasks-per-node", "Tasks per node", nodesBox, nodesNote),
      proofPanel,
    ),
    h(
      "div",
      { class: "panel", "data-testid": "latest-tasks" },
      h("h2", {}, "Latest tasks ", h("a", { href: "#/tasks", class: "more" }, "all tasks →")),
      latestBox,
    ),
  );

  // Block times are asked for once each (a block the RPC has no timestamp for is not asked again and again),
  // until the store reads the chain again from scratch (a restarted node, a reorganisation): it forgets the
  // times it had, and so does this.
  const asked = new Set<number>();
  let timesKnown = 0;
  const askTimes = (blocks: number[]) => {
    if (ctx.snap.blockTimes.size < timesKnown) asked.clear();
    timesKnown = ctx.snap.blockTimes.size;
    const fresh = blocks.filter((x) => !asked.has(x) && !ctx.snap.blockTimes.has(x));
    if (!fresh.length) return;
    for (const x of fresh) asked.add(x);
    ctx.store.ensureTimes(fresh).catch(() => {
      for (const x of fresh) asked.delete(x); // asked again at the next redraw (the next block)
    });
  };

  const shown = new WeakMap<HTMLElement, string>();
  const put = (box: HTMLElement, part: Part) => {
    if (shown.get(box) === part.key) return;
    shown.set(box, part.key);
    clear(box);
    box.append(...part.build());
  };

  let lastKey = "";
  let lastDraw = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const keyOf = (snap: Snapshot) =>
    `${snap.tasks.size}|${snap.head}|${snap.blockTimes.size}|${snap.nodes.size}`;

  const draw = () => {
    const snap = ctx.snap;
    lastKey = keyOf(snap);
    lastDraw = performance.now();
    const need: number[] = [snap.head];
    const timed: Timed[] = [];
    let missing = 0;
    for (const t of snap.tasks.values()) {
      const ts = snap.blockTimes.get(t.submittedBlock);
      const settled = t.settledBlock === undefined ? undefined : snap.blockTimes.get(t.settledBlock);
      if (ts === undefined) need.push(t.submittedBlock);
      if (t.settledBlock !== undefined && settled === undefined) need.push(t.settledBlock);
      if (ts === undefined || (t.settledBlock !== undefined && settled === undefined)) {
        missing++;
        continue;
      }
      timed.push({ task: t, submitted: ts, settled });
    }
    askTimes(need);
    el.dataset.timesPending = String(missing);
    const p = chainPlots(snap, timed, snap.blockTimes.get(snap.head), missing);
    clear(cardsBox);
    cardsBox.append(cards(snap));
    put(tasksBox, p.tasks);
    put(feesBox, p.fees);
    put(latencyBox, p.latency);
    put(nodesBox, p.perNode);
    nodesNote.textContent =
      "verified tasks per node (TaskVerified); bars link to the node" +
      (p.more > 0 ? ` · ${p.more} more not shown` : "");
    spanNote.textContent =
      (p.span ? `${p.span} · ` : "") +
      (missing
        ? `${missing} task${missing === 1 ? "" : "s"} waiting for block times`
        : snap.tasks.size
          ? "by block timestamps"
          : "");
    clear(latestBox);
    latestBox.append(latest(snap));
  };

  // /metrics of the nodes' registered endpoints and of --metrics, every METRICS_MS while shown.
  let reads: MetricsRead[] = [];
  let urls: string[] = [];
  let reading = false;
  let disposed = false;
  const drawProofs = () => {
    const key = JSON.stringify([
      urls,
      reads.map((r) => (r.ok ? [r.url, histogramSeries(r.families.get(STAGE_METRIC))] : [r.url, r.error])),
    ]);
    put(proofBox, { key, build: () => proofParts(proofPlots(reads, urls)) });
  };
  const proofParts = (pp: ReturnType<typeof proofPlots>): Node[] => [
    h(
      "div",
      { class: "plot-pair" },
      h("div", { "data-testid": "proof-stage-means" }, pp.means),
      h("div", { "data-testid": "proof-distribution" }, pp.distribution),
    ),
    h(
      "p",
      { class: "plot-stats", "data-testid": "proof-stats" },
      pp.proveText || `from ${STAGE_METRIC}{stage} of each node's /metrics`,
    ),
    pp.sources,
  ];
  const readMetrics = async () => {
    if (reading || disposed) return;
    reading = true;
    try {
      // Each registered endpoint is fetched from the viewer's browser, whatever address it names, unless
      // the server (--no-node-metrics) or the viewer (?nodemetrics=off) turned that off.
      urls = metricsUrls(
        ctx.config.nodeMetrics === false ? [] : [...ctx.snap.nodes.values()].map((n) => n.endpoint),
        ctx.config.metrics ?? [],
      );
      drawProofs();
      const got = await Promise.all(urls.map((u) => fetchMetrics(u)));
      if (disposed) return;
      reads = got;
      proofPanel.dataset.metrics = "read";
      drawProofs();
    } finally {
      reading = false;
    }
  };
  const metricsTimer = setInterval(() => void readMetrics(), METRICS_MS);

  draw();
  void readMetrics();
  return {
    el,
    update(snap) {
      if (keyOf(snap) === lastKey || timer !== undefined) return;
      timer = setTimeout(
        () => {
          timer = undefined;
          if (!disposed) draw();
        },
        Math.max(0, lastDraw + REDRAW_MS - performance.now()),
      );
    },
    dispose() {
      disposed = true;
      clearTimeout(timer);
      clearInterval(metricsTimer);
    },
  };
}
