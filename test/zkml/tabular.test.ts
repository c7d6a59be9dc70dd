import { expect } from "chai";
import {
  executeQuantized,
  expectedPublicSignals,
  loadOnnx,
  namedOutputs,
  quantizeGraph,
  referenceOutputs,
} from "../../zkml";
import { expectedConstraints, planCircuit } from "../../zkml/circuit/codegen";
import { makeLayout } from "../../zkml/packing";
import { numel } from "../../zkml/quant/shapes";
import { ZkmlError } from "../../zkml/errors";
import type { OnnxGraph } from "../../zkml/onnx/graph";
import { executeWithErrorBound } from "../../zkml/quant/error-bound";
import type { QProgram } from "../../zkml/quant/program";
import {
  TABULAR_FIXTURES,
  TabularFixture,
  tabularFile,
  tabularShape,
  tabularTestData,
} from "../../scripts/lib/tabular-fixtures";
import { argmax, compileNoSetup, publicOf, witnessFor } from "./helpers";

const fixture = (name: string): TabularFixture =>
  TABULAR_FIXTURES.find((f) => f.name === name) as TabularFixture;

function compileProgram(f: TabularFixture, graph?: OnnxGraph): QProgram {
  const { scaleBits, inputBits, activationBits } = f.options;
  return quantizeGraph(graph ?? loadOnnx(tabularFile(f)), {
    scaleBits,
    inputBits,
    ...(activationBits ? { activationBits } : {}),
  });
}

function refusal(f: TabularFixture, edit: (g: OnnxGraph) => void): ZkmlError {
  const g = loadOnnx(tabularFile(f));
  edit(g);
  try {
    compileProgram(f, g);
  } catch (e) {
    return e as ZkmlError;
  }
  throw new Error("expected the compiler to refuse the model");
}

/** Internal nodes, leaves and trees of a tree-ensemble fixture's one ONNX-ML node. */
function treeShape(f: TabularFixture): { internal: number; leaves: number; trees: number } {
  const node = loadOnnx(tabularFile(f)).nodes.find((n) => n.opType.startsWith("TreeEnsemble"));
  const modes = node?.attrs.get("nodes_modes") as string[];
  const trees = new Set(node?.attrs.get("nodes_treeids") as number[]).size;
  const leaves = modes.filter((m) => m === "LEAF").length;
  return { internal: modes.length - leaves, leaves, trees };
}

describe("ONNX-ML tabular models and the 1-D CNN time-series model", function () {
  describe("agree with onnxruntime on every test row (labels exactly, scores within the stated tolerance)", function () {
    for (const f of TABULAR_FIXTURES) {
      it(`${f.name}: ${f.kind}`, async function () {
        const program = compileProgram(f);
        const data = tabularTestData(f);
        const shape = tabularShape(data);
        const ref = await referenceOutputs(tabularFile(f));
        let worst = 0;
        for (const x of data.inputs) {
          const ours = namedOutputs(program, executeQuantized(program, x).output);
          const theirs = await ref(x, shape);
          if (f.label) expect(ours[f.label], `row ${JSON.stringify(x)}`).to.deep.equal(theirs[f.label]);
          else if (f.scores === "logits")
            expect(argmax(ours.logits as number[])).to.equal(argmax(theirs.logits as number[]));
          const a = ours[f.scores] as number[];
          const b = theirs[f.scores] as number[];
          expect(a).to.have.length(b.length);
          a.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[i]))));
        }
        expect(data.inputs.length).to.be.at.least(30);
        expect(worst).to.be.at.most(f.tolerance);
        // and onnxruntime itself agrees with the library the fixture was trained with
        if (f.label) {
          const lib = data.expected[f.label] as (number | string)[];
          const got = await Promise.all(
            data.inputs.map(async (x) => (await ref(x, shape))[f.label as string][0]),
          );
          expect(got).to.deep.equal(lib);
        }
      });
    }
  });

  describe("tree circuits", function () {
    it("compile to the op-by-op constraint count; the witness equals the executor bit for bit (forest, XGBoost)", async function () {
      // pinned: a change in the tree lowering's cost shows here
      const pinned: Record<string, number> = { iris_forest: 357, cancer_xgb: 1701 };
      for (const name of ["iris_forest", "cancer_xgb"]) {
        const f = fixture(name);
        const c = await compileNoSetup(tabularFile(f), f.options);
        expect(c.manifest.constraints, name).to.equal(pinned[name]);
        expect(c.manifest.constraints).to.equal(
          expectedConstraints(c.program, planCircuit(c.program, c.manifest.publicSignals)).total,
        );
        // the label and probabilities come out as two parts of the one proven output
        expect(c.manifest.output.parts?.map((p) => p.name)).to.deep.equal(["label", "probabilities"]);
        const data = tabularTestData(f);
        for (const x of data.inputs.slice(0, 3)) {
          const q = executeQuantized(c.program, x);
          const w = await witnessFor(c, q.input, 11n);
          expect(publicOf(c, w)).to.deep.equal(expectedPublicSignals(c.manifest, q.input, q.quantized, 11n));
        }
      }
    });

    it("cost: branch tests by interval decomposition, one product per non-root internal node (vs the GEMM form)", function () {
      const rows: string[] = [];
      for (const name of ["iris_forest", "diabetes_gbr", "cancer_xgb"]) {
        const f = fixture(name);
        const program = compileProgram(f);
        const { internal, leaves, trees } = treeShape(f);
        const layout = makeLayout(
          numel(program.input.shape),
          numel(program.output.shape),
          f.options.packBits ?? 16,
          "inline",
        );
        const b = expectedConstraints(program, planCircuit(program, layout)).breakdown;
        const branch = b.compare + b.interval;
        // one comparison per node would cost `bits` each, bits = the value's signed width (+ the cut's)
        const perNode = internal * (f.options.inputBits as number);
        expect(branch, name).to.be.below(perNode);
        const products = program.ops.reduce((s, o) => s + (o.op === "mul" ? o.ia.length : 0), 0);
        expect(products).to.equal(internal - trees);
        // The tensorised (Hummingbird GEMM) form tests every node the same way, then checks each leaf's
        // path count with an equality (2 constraints per leaf): ours selects leaves with fewer.
        expect(products).to.be.below(2 * leaves);
        rows.push(
          `${name}: ${internal} nodes, branch tests ${branch} (per-node compare >= ${perNode}), leaf selection ${products} (GEMM form ${2 * leaves})`,
        );
      }
      console.log(rows.map((r) => `      ${r}`).join("\n"));
    });

    it("an input exactly on a threshold decides as onnxruntime does; the error bound widens there", async function () {
      const f = fixture("iris_forest");
      const program = compileProgram(f);
      const node = loadOnnx(tabularFile(f)).nodes[0];
      const values = node.attrs.get("nodes_values") as number[];
      const features = node.attrs.get("nodes_featureids") as number[];
      const modes = node.attrs.get("nodes_modes") as string[];
      const k = modes.findIndex((m) => m !== "LEAF");
      const ref = await referenceOutputs(tabularFile(f));
      const x = [5.8, 3.0, 4.35, 1.3];
      x[features[k]] = Math.fround(values[k]);
      const ours = namedOutputs(program, executeQuantized(program, x).output);
      expect(ours.label).to.deep.equal((await ref(x, [1, 4])).label);
      const bounded = executeWithErrorBound(program, [5.8, 3.0, 4.35, 1.3]);
      expect(bounded.bound.every((b) => Number.isFinite(b))).to.equal(true);
      // the tie is flagged: the branch may differ from the exact model's, so the probabilities' bound grows
      const tie = executeWithErrorBound(program, x);
      const total = (b: number[]) => b.slice(1).reduce((a, v) => a + v, 0);
      expect(total(tie.bound)).to.be.above(total(bounded.bound));
    });
  });

  describe("several outputs and ZipMap", function () {
    it("the ZipMap export compiles: labels as classes, probabilities as one {class: p} map per row", function () {
      const zip = quantizeGraph(
        loadOnnx(tabularFile(fixture("iris_forest")).replace("iris_forest", "iris_forest_zipmap")),
        {
          scaleBits: 12,
          inputBits: 20,
        },
      );
      const plain = compileProgram(fixture("iris_forest"));
      const x = [6.3, 2.8, 5.1, 1.5];
      const a = namedOutputs(zip, executeQuantized(zip, x).output);
      const b = namedOutputs(plain, executeQuantized(plain, x).output);
      expect(a.label).to.deep.equal(b.label);
      const probs = b.probabilities as number[];
      expect(a.output_probability).to.deep.equal([{ 0: probs[0], 1: probs[1], 2: probs[2] }]);
    });

    it("string class labels come out as the model's strings", function () {
      const f = fixture("wine_logreg");
      const program = compileProgram(f);
      const data = tabularTestData(f);
      const out = namedOutputs(program, executeQuantized(program, data.inputs[0]).output);
      expect(out.label).to.deep.equal([(data.expected.label as string[])[0]]);
    });
  });

  describe("refusals name the problem", function () {
    const f = fixture("iris_forest");
    const tree = (g: OnnxGraph) => g.nodes[0];
    it("an unknown branch mode", function () {
      const e = refusal(f, (g) => {
        const modes = [...(tree(g).attrs.get("nodes_modes") as string[])];
        modes[0] = "BRANCH_SOMETIMES";
        tree(g).attrs.set("nodes_modes", modes);
      });
      expect(e.code).to.equal("UNSUPPORTED_ATTRIBUTE");
      expect(e.message).to.match(/BRANCH_SOMETIMES.*supported: LEAF, BRANCH_LEQ/);
    });
    it("a node testing a feature the input does not have", function () {
      const e = refusal(f, (g) => {
        const ids = [...(tree(g).attrs.get("nodes_featureids") as number[])];
        ids[0] = 9;
        tree(g).attrs.set("nodes_featureids", ids);
      });
      expect(e.message).to.match(/tests feature 9; the input has 4/);
    });
    it("a cycle", function () {
      const e = refusal(f, (g) => {
        const trues = [...(tree(g).attrs.get("nodes_truenodeids") as number[])];
        const modes = tree(g).attrs.get("nodes_modes") as string[];
        const i = modes.findIndex((m, k) => k > 0 && m !== "LEAF"); // an inner node of tree 0 ...
        trues[i] = 0; // ... branches back to the root
        tree(g).attrs.set("nodes_truenodeids", trues);
      });
      expect(e.code).to.equal("MALFORMED_MODEL");
      expect(e.message).to.match(/roots|reached twice|does not reach/);
    });
    it("a weight on an internal node", function () {
      const e = refusal(f, (g) => {
        const nodes = [...(tree(g).attrs.get("class_nodeids") as number[])];
        nodes[0] = 0;
        tree(g).attrs.set("class_nodeids", nodes);
      });
      expect(e.message).to.match(/not a leaf/);
    });
    it("an unknown post transform, and an op outside its domain", function () {
      expect(refusal(f, (g) => tree(g).attrs.set("post_transform", "CUBE")).message).to.match(
        /post_transform 'CUBE'/,
      );
      const e = refusal(f, (g) => (tree(g).domain = ""));
      expect(e.message).to.match(/domain ''.*ai\.onnx\.ml/);
    });
    it("PROBIT on a single score column (onnxruntime writes one score for two classes)", function () {
      const e = refusal(fixture("cancer_xgb"), (g) => tree(g).attrs.set("post_transform", "PROBIT"));
      expect(e.message).to.match(/PROBIT with a single score column/);
    });
  });
});
