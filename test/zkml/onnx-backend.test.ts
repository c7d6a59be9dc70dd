import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ZkmlError } from "../../zkml/errors";
import { OnnxGraph } from "../../zkml/onnx/graph";
import { parseOnnx, parseTensor } from "../../zkml/onnx/parse";
import { executeWithErrorBound } from "../../zkml/quant/error-bound";
import { DEFAULT_QUANTIZE, SUPPORTED_OPS, quantizeGraph } from "../../zkml/quant/quantize";

/**
 * Conformance against ONNX's own backend test data (Debian's libonnx-testdata: node, pytorch-converted,
 * pytorch-operator and simple cases, each a model.onnx with test_data_set_N/input_i.pb and output_i.pb).
 *
 * Every case goes through the quantizer and the fixed-point executor, which computes exactly what the
 * circuit computes: a check of the compiler without proving. A case whose ops the compiler claims to
 * support must either match the expected output within its error bound (zkml/quant/error-bound.ts) or be
 * refused with a ZkmlError; a case with other ops must be refused. A silent mismatch fails the suite.
 *
 * How a case is run: the first graph input is the model's input, quantized at the default options
 * (scale 2^-8, 16-bit inputs, 24-bit activations) from the test's own float values; a value outside the
 * input range is an OUT_OF_RANGE refusal. The other graph inputs are weights here: they become
 * initializers holding the test's own data. Pass: every output element within
 * bound + 2^-20 (1 + |expected|) (the float32 reference's own rounding), and the output shape equal; a model
 * with several outputs is checked output by output (each a part of the one proven output).
 */
const DATA_DIRS = [
  process.env.OPG_ONNX_TESTDATA,
  "/usr/share/libonnx-testdata/data",
  "/usr/lib/python3/dist-packages/onnx/backend/test/data",
].filter((d): d is string => !!d);
const CATEGORIES = ["node", "pytorch-converted", "pytorch-operator", "simple"];
const OPTIONS = DEFAULT_QUANTIZE;
const FLOAT_SLACK = 2 ** -20;

type Outcome = "pass" | "refused" | "mismatch" | "crash";

interface CaseResult {
  category: string;
  name: string;
  supported: boolean;
  outcome: Outcome;
  /** the refusal (code: message), the mismatch or the crash */
  detail?: string;
  /** largest |output - expected| / allowed over the case's outputs */
  ratio?: number;
}

function dataDir(): string | undefined {
  return DATA_DIRS.find((d) => fs.existsSync(path.join(d, "node")));
}

function readTensor(file: string): ReturnType<typeof parseTensor> {
  return parseTensor(fs.readFileSync(file), path.basename(path.dirname(file)) + "/" + path.basename(file));
}

function dataFiles(dir: string, prefix: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(prefix) && f.endsWith(".pb"))
    .sort((a, b) => parseInt(a.slice(prefix.length), 10) - parseInt(b.slice(prefix.length), 10))
    .map((f) => path.join(dir, f));
}

/** The graph with every input but the first turned into an initializer holding the test's data. */
function withWeights(graph: OnnxGraph, inputs: string[]): OnnxGraph {
  const initializers = new Map(graph.initializers);
  graph.inputs.slice(1).forEach((v, i) => initializers.set(v.name, readTensor(inputs[i + 1]).tensor));
  return { ...graph, inputs: graph.inputs.slice(0, 1), initializers };
}

function runDataSet(graph: OnnxGraph, dir: string): { outcome: Outcome; detail?: string; ratio?: number } {
  const inputs = dataFiles(dir, "input_");
  const outputs = dataFiles(dir, "output_");
  const program = quantizeGraph(withWeights(graph, inputs), OPTIONS);
  const x = readTensor(inputs[0]).tensor;
  const r = executeWithErrorBound(program, [...x.data]);
  // Each graph output (a model with several proves their concatenation: one part each, in graph order)
  // against its output_k.pb.
  const parts = program.output.parts ?? [
    { name: program.output.name, shape: program.output.shape, offset: 0, labels: undefined },
  ];
  let ratio = 0;
  for (const p of parts) {
    const k = graph.outputs.findIndex((o) => o.name === p.name);
    if (k < 0 || !outputs[k])
      return { outcome: "mismatch", detail: `no expected data for output '${p.name}'` };
    const expected = readTensor(outputs[k]).tensor;
    const shape = p.shape;
    if (shape.length !== expected.dims.length || shape.some((d, i) => d !== expected.dims[i])) {
      return {
        outcome: "mismatch",
        detail: `output '${p.name}' shape [${shape}], expected [${expected.dims}]`,
      };
    }
    for (let i = 0; i < expected.data.length; i++) {
      const want = expected.data[i];
      const v = r.output[p.offset + i];
      // A label output reads its class index as the class (exact).
      const got = p.labels ? Number(p.labels[Math.round(v)]) : v;
      const allowed = p.labels ? 0 : r.bound[p.offset + i] + FLOAT_SLACK * (1 + Math.abs(want));
      const err = Math.abs(got - want);
      if (!(err <= allowed)) {
        return {
          outcome: "mismatch",
          detail: `output '${p.name}' #${i} = ${got}, expected ${want}: error ${err} > bound ${allowed}`,
        };
      }
      ratio = Math.max(ratio, allowed > 0 ? err / allowed : 0);
    }
  }
  return { outcome: "pass", ratio };
}

function runCase(category: string, dir: string): CaseResult {
  const name = path.basename(dir);
  let graph: OnnxGraph;
  try {
    graph = parseOnnx(fs.readFileSync(path.join(dir, "model.onnx")), name);
  } catch (e) {
    if (!(e instanceof ZkmlError))
      return { category, name, supported: false, outcome: "crash", detail: String(e) };
    return { category, name, supported: false, outcome: "refused", detail: `${e.code}: ${e.message}` };
  }
  const supported = graph.nodes.every(
    (n) => SUPPORTED_OPS.includes(n.opType) && (!n.domain || n.domain === "ai.onnx"),
  );
  const result: CaseResult = { category, name, supported, outcome: "pass", ratio: 0 };
  const sets = fs.readdirSync(dir).filter((d) => d.startsWith("test_data_set_"));
  for (const set of sets.sort()) {
    let r: { outcome: Outcome; detail?: string; ratio?: number };
    try {
      r = runDataSet(graph, path.join(dir, set));
    } catch (e) {
      r =
        e instanceof ZkmlError
          ? { outcome: "refused", detail: `${e.code}: ${e.message}` }
          : { outcome: "crash", detail: (e as Error).stack ?? String(e) };
    }
    if (r.outcome !== "pass") return { ...result, outcome: r.outcome, detail: `${set}: ${r.detail}` };
    result.ratio = Math.max(result.ratio ?? 0, r.ratio ?? 0);
  }
  return result;
}

/** A refusal reason with the case-specific parts (node names, shapes, numbers) masked, for grouping. */
function reasonOf(detail: string): string {
  return detail
    .replace(/^test_data_set_\d+: /, "")
    .replace(/ Supported ops: .*$/, "")
    .replace(/\b(node|input|output) '[^']*'/g, "$1 '…'")
    .replace(/\[[^\]]*\]/g, "[…]")
    .replace(/\b\w+\/input_\d+\.pb/g, "input_i.pb")
    .replace(/(?<![\w./-])-?\d+(\.\d+)?(e[+-]?\d+)?(?![\w-])/g, "N")
    .replace(/ \(input bits[^)]*\)/g, "")
    .trim();
}

function conformanceTable(results: CaseResult[]): string {
  const rows = [
    "| category | cases | supported (all ops claimed) | pass | refused | mismatches |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  const line = (label: string, rs: CaseResult[]): string => {
    const sup = rs.filter((r) => r.supported);
    const count = (o: Outcome): number => sup.filter((r) => r.outcome === o).length;
    const mismatches = count("mismatch") + count("crash");
    return `| ${label} | ${rs.length} | ${sup.length} | ${count("pass")} | ${count("refused")} | ${mismatches} |`;
  };
  for (const c of CATEGORIES)
    rows.push(
      line(
        c,
        results.filter((r) => r.category === c),
      ),
    );
  rows.push(line("**total**", results));
  return rows.join("\n");
}

function refusalTable(results: CaseResult[]): string {
  const groups = new Map<string, string[]>();
  for (const r of results.filter((x) => x.supported && x.outcome === "refused")) {
    const key = reasonOf(r.detail ?? "");
    groups.set(key, [...(groups.get(key) ?? []), `${r.category}/${r.name}`]);
  }
  const rows = ["| refused (supported ops) | cases | e.g. |", "| --- | ---: | --- |"];
  for (const [reason, cases] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
    rows.push(`| ${reason.replace(/\|/g, "\\|")} | ${cases.length} | ${cases[0]} |`);
  }
  return rows.join("\n");
}

describe("zkml conformance: ONNX backend test data (libonnx-testdata)", function () {
  const root = dataDir();
  const results: CaseResult[] = [];

  before(function () {
    if (!root) {
      console.warn(
        "\n  SKIPPED: ONNX's backend test data is not installed (looked in " +
          DATA_DIRS.join(", ") +
          ").\n  Install it with: apt-get install -y libonnx-testdata (CI does).\n",
      );
      this.skip();
    }
    const t0 = Date.now();
    for (const c of CATEGORIES) {
      const dir = path.join(root as string, c);
      if (!fs.existsSync(dir)) continue;
      for (const name of fs.readdirSync(dir).sort()) {
        if (fs.existsSync(path.join(dir, name, "model.onnx"))) results.push(runCase(c, path.join(dir, name)));
      }
    }
    const tightest = results
      .filter((r) => r.outcome === "pass")
      .reduce((a, b) => ((b.ratio ?? 0) > (a.ratio ?? 0) ? b : a));
    console.log(`\n${conformanceTable(results)}\n\n${refusalTable(results)}\n`);
    console.log(
      `  ${results.length} cases from ${root} in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
        `largest error / bound among passes: ${(tightest.ratio ?? 0).toFixed(3)} ` +
        `(${tightest.category}/${tightest.name})\n`,
    );
    if (process.env.OPG_CONFORMANCE_OUT) {
      fs.writeFileSync(
        process.env.OPG_CONFORMANCE_OUT,
        `${conformanceTable(results)}\n\n${refusalTable(results)}\n`,
      );
    }
  });

  it("no case whose ops are all supported gives a wrong answer: it matches within its bound or is refused", function () {
    const bad = results.filter((r) => r.supported && (r.outcome === "mismatch" || r.outcome === "crash"));
    expect(bad.map((r) => `${r.category}/${r.name}: ${r.detail}`)).to.deep.equal([]);
  });

  it("a case with an unsupported op is refused with a ZkmlError, never run", function () {
    const bad = results.filter((r) => !r.supported && r.outcome !== "refused");
    expect(bad.map((r) => `${r.category}/${r.name}: ${r.outcome} ${r.detail ?? ""}`)).to.deep.equal([]);
  });

  it("PyTorch's exports of ConvTranspose, GLU (Split + Sigmoid + Mul), chunk (Split), Softmin (Neg) and repeat (Tile) pass", function () {
    const want = [
      "pytorch-converted/test_ConvTranspose2d",
      "pytorch-converted/test_ConvTranspose2d_no_bias",
      "pytorch-operator/test_operator_convtranspose",
      "pytorch-converted/test_GLU",
      "pytorch-converted/test_GLU_dim",
      "pytorch-operator/test_operator_chunk",
      "pytorch-converted/test_Softmin",
      "pytorch-operator/test_operator_basic",
      "pytorch-operator/test_operator_repeat",
      "pytorch-operator/test_operator_repeat_dim_overflow",
    ];
    const byName = new Map(results.map((r) => [`${r.category}/${r.name}`, r]));
    const missing = want.filter((n) => byName.has(n) && byName.get(n)?.outcome !== "pass");
    expect(missing.map((n) => `${n}: ${byName.get(n)?.detail}`)).to.deep.equal([]);
    // Measured with libonnx-testdata 1.12: 103 of the 117 pytorch-converted and pytorch-operator cases.
    const pytorch = results.filter((r) => r.category.startsWith("pytorch"));
    if (pytorch.length === 117)
      expect(pytorch.filter((r) => r.outcome === "pass").length).to.be.at.least(103);
  });

  it("the supported cases mostly pass (the suite is not refusing its way to zero mismatches)", function () {
    // Measured with libonnx-testdata 1.12: 204 of 314 (node 156/230, pytorch-converted 38/66).
    const sup = results.filter((r) => r.supported);
    const pass = sup.filter((r) => r.outcome === "pass").length;
    expect(pass, `${pass} of ${sup.length} supported cases pass`).to.be.at.least(0.6 * sup.length);
  });
});
