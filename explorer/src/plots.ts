/**
 * Small hand-written SVG charts: values over time buckets (bars stacked, lines, areas), a histogram on a
 * linear axis with marker lines, and labelled bars (vertical or horizontal, optionally links). Each returns an
 * <svg> sized by its viewBox (CSS makes it fluid); tooltips are <title> elements; with nothing to show the
 * <svg> carries the empty-state text instead. Colours are CSS expressions (e.g. "var(--accent)").
 */
import { s } from "./dom";

const W = 640;
const H = 230;
const M = { l: 56, r: 16, t: 24, b: 40 };

export interface TimeBuckets {
  /** Unix seconds where the first bucket starts (a multiple of `width`). */
  start: number;
  /** Seconds per bucket. */
  width: number;
  n: number;
}

// Bucket widths (s) a time axis may use: seconds on a fresh local chain up to weeks.
const WIDTHS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
  2592000,
];

/** The narrowest nice bucket width that covers [min, max] in at most `maxBuckets` buckets. */
export function timeBuckets(min: number, max: number, maxBuckets = 100): TimeBuckets {
  const span = Math.max(0, max - min);
  const width =
    WIDTHS.find((w) => Math.floor(max / w) - Math.floor(min / w) + 1 <= maxBuckets) ??
    Math.ceil(span / maxBuckets) + 1;
  const start = Math.floor(min / width) * width;
  return { start, width, n: Math.floor(max / width) - Math.floor(min / width) + 1 };
}

/** The bucket index of `t` (unix s). */
export const bucketOf = (b: TimeBuckets, t: number) =>
  Math.min(b.n - 1, Math.max(0, Math.floor((t - b.start) / b.width)));

/** A span of seconds in words: "45 s", "2 min", "3 h", "2 d". */
export function duration(sec: number): string {
  if (sec < 60) return `${fmt(sec)} s`;
  if (sec < 3600) return `${fmt(sec / 60)} min`;
  if (sec < 86400) return `${fmt(sec / 3600)} h`;
  return `${fmt(sec / 86400)} d`;
}

/** A number in at most 3 significant digits, with k/M suffixes. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e4) return `${trim(v / 1e3)}k`;
  if (a === 0) return "0";
  return trim(v);
}
const trim = (v: number) => String(Number(v.toPrecision(3)));

/** About `count` round ticks covering [0, max] (1, 2, 2.5, 5 × 10^k steps); whole numbers when `integer`. */
export function niceTicks(max: number, count = 4, integer = false): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  let step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  if (integer) step = Math.max(1, Math.ceil(step));
  const ticks: number[] = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const pad2 = (n: number) => String(n).padStart(2, "0");

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** A UTC label for a time tick, as precise as the step between ticks needs; the date at midnight. */
function timeLabel(t: number, step: number): string {
  const d = new Date(t * 1000);
  if (t % 86400 === 0) return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
  const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
  return step < 60 ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
}

/** A bucket's span in words for a tooltip. */
function bucketLabel(t: number, width: number): string {
  const d = new Date(t * 1000).toISOString();
  const day = d.slice(0, 10);
  const clock = width < 60 ? d.slice(11, 19) : d.slice(11, 16);
  return `${width >= 86400 ? day : `${day} ${clock}`} UTC (+${duration(width)})`;
}

function frame(label: string): SVGSVGElement {
  return s("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": label });
}

/** The empty state: a short <svg> with the reason in words (the panel stays, and says why it is empty). */
function emptyText(svg: SVGSVGElement, text: string) {
  svg.classList.add("plot-empty");
  svg.setAttribute("viewBox", `0 0 ${W} 70`);
  svg.append(s("text", { x: W / 2, y: 40, "text-anchor": "middle", class: "plot-note" }, text));
  return svg;
}

/** The y axis: grid lines, tick labels and the axis label; returns the value → y mapping. */
function yAxis(
  svg: SVGSVGElement,
  max: number,
  label: string,
  integer: boolean,
  format: (v: number) => string,
) {
  const ticks = niceTicks(max, 4, integer);
  const top = ticks[ticks.length - 1];
  const y = (v: number) => H - M.b - (v / top) * (H - M.t - M.b);
  for (const t of ticks) {
    svg.append(
      s("line", { x1: M.l, x2: W - M.r, y1: y(t), y2: y(t), class: t === 0 ? "plot-axis" : "plot-grid" }),
    );
    svg.append(s("text", { x: M.l - 6, y: y(t) + 4, "text-anchor": "end", class: "plot-tick" }, format(t)));
  }
  svg.append(
    s(
      "text",
      {
        x: 12,
        y: (H - M.b + M.t) / 2,
        transform: `rotate(-90 12 ${(H - M.b + M.t) / 2})`,
        "text-anchor": "middle",
        class: "plot-label",
      },
      label,
    ),
  );
  return y;
}

export interface TimeSeries {
  name: string;
  /** One value per bucket; NaN for a bucket with no value (a gap in a line, nothing in a bar). */
  values: number[];
  /** Bars of one `stack` are stacked, stacks stand side by side in a bucket; lines and areas go over them. */
  kind: "bar" | "line" | "area";
  /** Which stack a bar series is in (default: one stack for all). */
  stack?: string;
  /** A CSS colour, e.g. "var(--accent)". */
  color: string;
}

export interface TimePlotOptions {
  buckets: TimeBuckets;
  series: TimeSeries[];
  yLabel: string;
  /** Formats values in ticks and tooltips. */
  format?: (v: number) => string;
  /** Whole-number ticks (counts). */
  integer?: boolean;
  empty?: string;
}

/** Values per time bucket: bars (stacked or side by side), lines/areas, a legend, and a tooltip per bucket. */
export function timePlot(o: TimePlotOptions): SVGSVGElement {
  const svg = frame(o.yLabel);
  const format = o.format ?? fmt;
  const { start, width, n } = o.buckets;
  const val = (x: TimeSeries, i: number) => (Number.isFinite(x.values[i]) ? x.values[i] : 0);
  const any = o.series.some((x) => x.values.some((v) => Number.isFinite(v) && v !== 0));
  if (n <= 0 || !any) return emptyText(svg, o.empty ?? "Nothing to plot yet.");
  const bars = o.series.filter((x) => x.kind === "bar");
  const overlays = o.series.filter((x) => x.kind !== "bar");
  const stacks = [...new Set(bars.map((x) => x.stack ?? ""))].map((k) =>
    bars.filter((x) => (x.stack ?? "") === k),
  );
  let max = 0;
  for (let i = 0; i < n; i++) {
    for (const st of stacks)
      max = Math.max(
        max,
        st.reduce((a, x) => a + val(x, i), 0),
      );
    for (const x of overlays) max = Math.max(max, val(x, i));
  }
  const y = yAxis(svg, max, o.yLabel, o.integer ?? false, format);
  const slot = (W - M.l - M.r) / n;
  const xAt = (t: number) => M.l + ((t - start) / (n * width)) * (W - M.l - M.r);
  const cx = (i: number) => M.l + (i + 0.5) * slot;

  // time ticks: about 6, at round times
  const span = n * width;
  const step = WIDTHS.find((st) => st >= width && span / st <= 6) ?? Math.ceil(span / 6);
  for (let t = Math.ceil(start / step) * step; t <= start + span; t += step) {
    const x = xAt(t);
    svg.append(s("line", { x1: x, x2: x, y1: H - M.b, y2: H - M.b + 4, class: "plot-axis" }));
    svg.append(
      s("text", { x, y: H - M.b + 16, "text-anchor": "middle", class: "plot-tick" }, timeLabel(t, step)),
    );
  }
  svg.append(
    s(
      "text",
      { x: W - M.r, y: H - 4, "text-anchor": "end", class: "plot-label" },
      `UTC · ${duration(width)} buckets`,
    ),
  );

  // bars: each stack a column of its own within the bucket
  const bw = Math.max(0.5, (slot * 0.8) / Math.max(1, stacks.length));
  for (let i = 0; i < n; i++) {
    stacks.forEach((st, k) => {
      const x0 = cx(i) - (bw * stacks.length) / 2 + k * bw;
      let base = 0;
      for (const x of st) {
        const v = val(x, i);
        if (v <= 0) continue;
        svg.append(
          s("rect", {
            x: x0,
            width: bw,
            y: y(base + v),
            height: Math.max(0.5, y(base) - y(base + v)),
            style: `fill:${x.color}`,
            class: "plot-bar",
          }),
        );
        base += v;
      }
    });
  }
  // lines and areas, through bucket centres; a line breaks where a bucket has no value
  for (const x of overlays) {
    const pts = x.values.map((_, i) => `${cx(i).toFixed(1)},${y(val(x, i)).toFixed(1)}`);
    let line = "";
    x.values.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      line += `${line && Number.isFinite(x.values[i - 1]) ? "L" : "M"}${pts[i]}`;
    });
    if (x.kind === "area") {
      svg.append(
        s("path", {
          d: `M${cx(0)},${y(0)}L${pts.join("L")}L${cx(n - 1)},${y(0)}Z`,
          style: `fill:${x.color}`,
          class: "plot-area",
        }),
      );
    }
    if (line) svg.append(s("path", { d: line, style: `stroke:${x.color}`, class: "plot-line" }));
    // dots where there are few points, and always on a point with no neighbour (else it would not show)
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(x.values[i])) continue;
      const alone = !Number.isFinite(x.values[i - 1]) && !Number.isFinite(x.values[i + 1]);
      if (n <= 40 || alone)
        svg.append(s("circle", { cx: cx(i), cy: y(x.values[i]), r: 2.5, style: `fill:${x.color}` }));
    }
  }
  // one hover target per bucket, with every series' value
  for (let i = 0; i < n; i++) {
    const lines = o.series.map(
      (x) => `${x.name}: ${Number.isFinite(x.values[i]) ? format(x.values[i]) : "–"}`,
    );
    svg.append(
      s(
        "rect",
        {
          x: M.l + i * slot,
          width: slot,
          y: M.t,
          height: H - M.t - M.b,
          class: "plot-hover",
          "data-bucket": start + i * width,
        },
        s("title", {}, `${bucketLabel(start + i * width, width)}\n${lines.join("\n")}`),
      ),
    );
  }
  legend(svg, o.series);
  return svg;
}

function legend(svg: SVGSVGElement, items: { name: string; color: string }[]) {
  let x = W - M.r;
  for (const it of [...items].reverse()) {
    const text = s("text", { x, y: M.t - 4, "text-anchor": "end", class: "plot-legend" }, it.name);
    x -= it.name.length * 6.6 + 5; // about the width of 11px text
    svg.append(
      s("rect", { x: x - 10, y: M.t - 12, width: 9, height: 9, rx: 2, style: `fill:${it.color}` }),
      text,
    );
    x -= 22;
  }
}

export interface HistogramOptions {
  values: number[];
  xLabel: string;
  /** What is counted (the y axis); default "count". */
  yLabel?: string;
  /** Formats x values (bin edges, markers). */
  format?: (v: number) => string;
  color?: string;
  /** Vertical lines with a label, e.g. the median and p95. */
  markers?: { at: number; label: string; color: string }[];
  maxBins?: number;
  /** The values are whole numbers (e.g. seconds between block timestamps): bins at least 1 wide. */
  integer?: boolean;
  /** Values from about here up go to one overflow bar at the right (so a few outliers don't squash the rest). */
  clip?: number;
  empty?: string;
}

/** A histogram of `values` on a linear axis from 0 with round bin widths, and marker lines. */
export function histogramPlot(o: HistogramOptions): SVGSVGElement {
  const svg = frame(o.xLabel);
  const format = o.format ?? fmt;
  if (o.values.length === 0) return emptyText(svg, o.empty ?? "Nothing to plot yet.");
  let max = 0;
  for (const v of o.values) max = Math.max(max, v);
  const clip = o.clip !== undefined && o.clip > 0 && o.clip < max ? o.clip : undefined;
  const hi = clip ?? max;
  // about 2·sqrt(n) bins, 6 to 30, of a round width
  const target = Math.min(o.maxBins ?? 30, Math.max(6, Math.ceil(2 * Math.sqrt(o.values.length))));
  const edges = niceTicks(hi > 0 ? hi : 1, target, o.integer ?? false);
  const binW = edges[1] - edges[0];
  const nb = Math.max(1, clip === undefined ? Math.floor(hi / binW) + 1 : Math.ceil(hi / binW));
  const end = nb * binW; // where the regular bins end; the overflow bar (if any) is one more slot
  const counts = new Array<number>(nb + 1).fill(0);
  for (const v of o.values) counts[Math.min(nb, Math.max(0, Math.floor(v / binW)))]++;
  const over = counts[nb];
  const slots = over > 0 ? nb + 1 : nb;
  const top = slots * binW;
  const y = yAxis(svg, Math.max(...counts), o.yLabel ?? "count", true, fmt);
  const x = (v: number) => M.l + (v / top) * (W - M.l - M.r);
  const color = o.color ?? "var(--accent)";
  for (let i = 0; i < slots; i++) {
    const x0 = x(i * binW);
    const x1 = x((i + 1) * binW);
    const overflow = i === nb;
    if (counts[i] > 0)
      svg.append(
        s("rect", {
          x: x0 + 0.5,
          width: Math.max(0.5, x1 - x0 - 1),
          y: y(counts[i]),
          height: y(0) - y(counts[i]),
          style: `fill:${overflow ? "var(--muted)" : color}`,
          class: "plot-bar",
        }),
      );
    svg.append(
      s(
        "rect",
        { x: x0, width: x1 - x0, y: M.t, height: H - M.t - M.b, class: "plot-hover" },
        s(
          "title",
          {},
          overflow
            ? `${format(end)} or more (up to ${format(max)}): ${counts[i]}`
            : `${format(i * binW)} – ${format((i + 1) * binW)}: ${counts[i]}`,
        ),
      ),
    );
  }
  if (over > 0)
    svg.append(
      s(
        "text",
        { x: x(end + binW / 2), y: H - M.b + 16, "text-anchor": "middle", class: "plot-tick" },
        "more",
      ),
    );
  for (const t of niceTicks(end, 6)) {
    if (t > end) break;
    svg.append(s("line", { x1: x(t), x2: x(t), y1: H - M.b, y2: H - M.b + 4, class: "plot-axis" }));
    svg.append(
      s("text", { x: x(t), y: H - M.b + 16, "text-anchor": "middle", class: "plot-tick" }, format(t)),
    );
  }
  svg.append(s("text", { x: W - M.r, y: H - 4, "text-anchor": "end", class: "plot-label" }, o.xLabel));
  (o.markers ?? []).forEach((m, k) => {
    const mx = x(Math.min(m.at, end));
    const right = mx > W - M.r - 90; // label on the left of a line near the right edge
    svg.append(
      s(
        "line",
        { x1: mx, x2: mx, y1: M.t, y2: H - M.b, style: `stroke:${m.color}`, class: "plot-marker" },
        s("title", {}, `${m.label}: ${format(m.at)}`),
      ),
      s(
        "text",
        {
          x: right ? mx - 4 : mx + 4,
          y: M.t + 10 + 13 * k,
          "text-anchor": right ? "end" : "start",
          class: "plot-legend",
          style: `fill:${m.color}`,
        },
        `${m.label} ${format(m.at)}`,
      ),
    );
  });
  return svg;
}

export interface Bar {
  label: string;
  value: number;
  /** Tooltip (defaults to "label: value"). */
  title?: string;
  /** Makes the label and the bar a link. */
  href?: string;
  color?: string;
}

export interface BarOptions {
  bars: Bar[];
  /** What the values are (the value axis). */
  valueLabel: string;
  horizontal?: boolean;
  format?: (v: number) => string;
  integer?: boolean;
  color?: string;
  empty?: string;
}

/** Labelled bars, vertical (categories along x) or horizontal (one row per bar, the height grows). */
export function barPlot(o: BarOptions): SVGSVGElement {
  const format = o.format ?? fmt;
  const color = o.color ?? "var(--accent)";
  if (o.bars.length === 0 || o.bars.every((b) => !(b.value > 0)))
    return emptyText(frame(o.valueLabel), o.empty ?? "Nothing to plot yet.");
  const max = Math.max(...o.bars.map((b) => b.value));
  const wrap = (b: Bar, el: SVGElement) => (b.href ? s("a", { href: b.href }, el) : el);
  if (!o.horizontal) {
    const svg = frame(o.valueLabel);
    const y = yAxis(svg, max, o.valueLabel, o.integer ?? false, format);
    const slot = (W - M.l - M.r) / o.bars.length;
    const bw = Math.min(60, slot * 0.7);
    o.bars.forEach((b, i) => {
      const cx = M.l + (i + 0.5) * slot;
      const v = Math.max(0, b.value);
      const rect = s(
        "rect",
        {
          x: cx - bw / 2,
          width: bw,
          y: y(v),
          height: Math.max(v > 0 ? 0.5 : 0, y(0) - y(v)),
          style: `fill:${b.color ?? color}`,
          class: "plot-bar",
        },
        s("title", {}, b.title ?? `${b.label}: ${format(b.value)}`),
      );
      svg.append(
        wrap(b, rect),
        wrap(b, s("text", { x: cx, y: H - M.b + 16, "text-anchor": "middle", class: "plot-tick" }, b.label)),
      );
    });
    return svg;
  }
  const row = 22;
  const left = 130;
  const h = M.t + 8 + row * o.bars.length + 30;
  const svg = s("svg", { viewBox: `0 0 ${W} ${h}`, class: "plot", role: "img", "aria-label": o.valueLabel });
  const ticks = niceTicks(max, 4, o.integer ?? false);
  const top = ticks[ticks.length - 1];
  const x = (v: number) => left + (v / top) * (W - left - M.r - 40);
  const bottom = h - 30;
  for (const t of ticks) {
    svg.append(
      s("line", { x1: x(t), x2: x(t), y1: M.t, y2: bottom, class: t === 0 ? "plot-axis" : "plot-grid" }),
      s("text", { x: x(t), y: bottom + 14, "text-anchor": "middle", class: "plot-tick" }, format(t)),
    );
  }
  svg.append(s("text", { x: W - M.r, y: h - 4, "text-anchor": "end", class: "plot-label" }, o.valueLabel));
  o.bars.forEach((b, i) => {
    const top_ = M.t + 4 + i * row;
    const v = Math.max(0, b.value);
    svg.append(
      wrap(
        b,
        s(
          "text",
          {
            x: left - 8,
            y: top_ + row / 2 + 4,
            "text-anchor": "end",
            class: b.href ? "plot-tick plot-link" : "plot-tick",
          },
          b.label,
        ),
      ),
      wrap(
        b,
        s(
          "rect",
          {
            x: x(0),
            y: top_ + 3,
            width: Math.max(v > 0 ? 1 : 0, x(v) - x(0)),
            height: row - 6,
            rx: 2,
            style: `fill:${b.color ?? color}`,
            class: "plot-bar",
          },
          s("title", {}, b.title ?? `${b.label}: ${format(b.value)}`),
        ),
      ),
      s("text", { x: x(v) + 5, y: top_ + row / 2 + 4, class: "plot-tick" }, format(b.value)),
    );
  });
  return svg;
}
