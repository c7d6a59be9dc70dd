import { expect } from "chai";
import client from "prom-client";
import {
  histogramQuantile,
  histogramSeries,
  mergeHistograms,
  metricsUrls,
  parsePrometheus,
} from "../../explorer/src/metrics";

/**
 * The explorer's reading of nodes' /metrics (explorer/src/metrics.ts), against what prom-client itself
 * serves for the inference node's stage histogram (same name, labels and buckets as workers/inference/node.ts).
 */
describe("explorer: nodes' Prometheus metrics", function () {
  async function nodeMetrics(observations: Record<string, number[]>): Promise<string> {
    const registry = new client.Registry();
    const seconds = new client.Histogram({
      name: "opg_stage_seconds",
      help: "seconds per pipeline stage (execute, prove, attest, chain)",
      labelNames: ["stage"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    });
    new client.Counter({
      name: "opg_tasks_total",
      help: 'tasks by "result"\\ with a backslash',
      labelNames: ["result"],
      registers: [registry],
    }).inc({ result: 'we"ird\\label' }, 3);
    for (const [stage, values] of Object.entries(observations))
      for (const v of values) seconds.observe({ stage }, v);
    return registry.metrics();
  }

  it("reads the stage histogram prom-client serves: counts, sums and buckets per stage", async function () {
    const prove = [0.3, 0.4, 1.5, 1.7, 4.2];
    const text = await nodeMetrics({ prove, execute: [0.004, 0.02] });
    const families = parsePrometheus(text);
    const series = histogramSeries(families.get("opg_stage_seconds"));
    const byStage = new Map(series.map((s) => [s.labels.stage, s]));
    expect([...byStage.keys()].sort()).to.deep.equal(["execute", "prove"]);
    const p = byStage.get("prove")!;
    expect(p.count).to.equal(5);
    expect(p.sum).to.be.closeTo(
      prove.reduce((a, b) => a + b, 0),
      1e-9,
    );
    expect(p.buckets.at(-1)).to.deep.equal({ le: Infinity, count: 5 });
    expect(p.buckets.find((b) => b.le === 0.5)!.count).to.equal(2);
    expect(p.buckets.find((b) => b.le === 2)!.count).to.equal(4);
    // the median lies in the (1, 2] bucket, the p95 in (2, 5]
    const p50 = histogramQuantile(0.5, p)!;
    const p95 = histogramQuantile(0.95, p)!;
    expect(p50).to.be.greaterThan(1).and.at.most(2);
    expect(p95).to.be.greaterThan(2).and.at.most(5);
    // a counter's escaped label value is read back as it was set
    const tasks = families.get("opg_tasks_total")!;
    expect(tasks.type).to.equal("counter");
    expect(tasks.samples[0].labels.result).to.equal('we"ird\\label');
    expect(tasks.samples[0].value).to.equal(3);
  });

  it("adds up the same stage across nodes", async function () {
    const a = histogramSeries(
      parsePrometheus(await nodeMetrics({ prove: [0.3, 1.5] })).get("opg_stage_seconds"),
    );
    const b = histogramSeries(parsePrometheus(await nodeMetrics({ prove: [4.2] })).get("opg_stage_seconds"));
    const merged = mergeHistograms([...a, ...b], { stage: "prove" });
    expect(merged).to.not.equal(undefined);
    expect(merged!.count).to.equal(3);
    expect(merged!.sum).to.be.closeTo(6, 1e-9);
  });

  it("skips malformed lines instead of failing", function () {
    const families = parsePrometheus(
      [
        "# TYPE ok gauge",
        "ok 1",
        'broken{a="unterminated 1',
        "novalue",
        "# a comment that is no HELP or TYPE",
        'ok{b="2"} 2 1700000000000',
      ].join("\n"),
    );
    expect(families.get("ok")!.samples.map((s) => s.value)).to.deep.equal([1, 2]);
    expect(families.has("broken")).to.equal(false);
  });

  it("asks a registered endpoint for /metrics only: no query, fragment or credentials, http(s) only", function () {
    expect(
      metricsUrls(
        [
          "http://127.0.0.1:9464/healthz",
          "https://node.example/base?x=1#f",
          "http://user:secret@10.0.0.1/reboot?now=1",
          "javascript:alert(1)",
          "not a url",
          "http://node-1.local",
        ],
        ["http://127.0.0.1:9464/metrics", "http://127.0.0.1:9999/metrics"],
      ),
    ).to.deep.equal([
      "http://127.0.0.1:9464/metrics",
      "https://node.example/base/metrics",
      "http://10.0.0.1/reboot/metrics",
      "http://node-1.local/metrics",
      "http://127.0.0.1:9999/metrics",
    ]);
  });
});

describe("explorer: constants the page copies from Node-only modules", function () {
  it("knows the development enclave's measurement (tee/measurement.ts computes it with node:crypto)", async function () {
    // by a computed path: the page's modules are type-checked under explorer/tsconfig.json (DOM), not here
    const pageModule: string = "../../explorer/src/checks/tee";
    const page = (await import(pageModule)) as { DEV_ENCLAVE_MEASUREMENT: string };
    const { DEV_ENCLAVE_MEASUREMENT } = await import("../../tee/measurement");
    expect(page.DEV_ENCLAVE_MEASUREMENT).to.equal(DEV_ENCLAVE_MEASUREMENT);
  });
});
