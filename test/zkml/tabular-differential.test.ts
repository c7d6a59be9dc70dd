import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { executeQuantized, namedOutputs, parseOnnx, quantizeGraph, referenceOutputs } from "../../zkml";
import { ZkmlError } from "../../zkml/errors";
import { Attr, ModelSpec, buildOnnx, seededRandom } from "../../zkml/onnx/builder";
import { tmpDir } from "./helpers";

/**
 * Random ONNX-ML models against onnxruntime, the arbiter of what an export means: tree ensembles over every
 * branch mode (thresholds and inputs on one grid, so inputs land exactly on thresholds often), every
 * aggregate, 1-3 targets or classes, single-column binary classifiers with all-positive and mixed weights,
 * base values, every post transform; linear classifiers and regressors; Scaler in front. Each model is
 * either refused by the compiler with a named reason, or agrees with onnxruntime on every input: labels
 * exactly, scores within 1e-3 (weights and inputs are exact at scale 2^16, so the gap is float32 rounding).
 */
const SCALE = { scaleBits: 16, inputBits: 24, activationBits: 40 };
const MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"];
const TRANSFORMS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"];

type Rand = () => number;
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
const grid = (rand: Rand, lo: number, hi: number, step: number): number =>
  lo + step * Math.floor(rand() * ((hi - lo) / step + 1));

interface Trees {
  attrs: Record<string, Attr>;
  leaves: { tree: number; node: number }[];
}

/** Random trees over `features` inputs; thresholds on the 1/4 grid in [-1.5, 1.5]. */
function randomTrees(rand: Rand, count: number, features: number, maxDepth: number): Trees {
  const cols = {
    treeids: [] as number[],
    nodeids: [] as number[],
    featureids: [] as number[],
    modes: [] as string[],
    values: [] as number[],
    truenodeids: [] as number[],
    falsenodeids: [] as number[],
  };
  const leaves: Trees["leaves"] = [];
  for (let t = 0; t < count; t++) {
    let next = 0;
    const build = (depth: number): number => {
      const id = next++;
      const at = cols.treeids.length;
      cols.treeids.push(t);
      cols.nodeids.push(id);
      const leaf = depth === maxDepth || (depth > 0 && rand() < 0.3);
      if (leaf) {
        cols.featureids.push(0);
        cols.modes.push("LEAF");
        cols.values.push(0);
        cols.truenodeids.push(0);
        cols.falsenodeids.push(0);
        leaves.push({ tree: t, node: id });
        return id;
      }
      cols.featureids.push(Math.floor(rand() * features));
      cols.modes.push(pick(rand, MODES));
      cols.values.push(grid(rand, -1.5, 1.5, 0.25));
      cols.truenodeids.push(0);
      cols.falsenodeids.push(0);
      cols.truenodeids[at] = build(depth + 1);
      cols.falsenodeids[at] = build(depth + 1);
      return id;
    };
    build(0);
  }
  return {
    attrs: {
      nodes_treeids: cols.treeids,
      nodes_nodeids: cols.nodeids,
      nodes_featureids: cols.featureids,
      nodes_modes: { strings: cols.modes },
      nodes_values: { floats: cols.values },
      nodes_truenodeids: cols.truenodeids,
      nodes_falsenodeids: cols.falsenodeids,
    },
    leaves,
  };
}

/** Leaf weights: every leaf weighs each of `ids` (weights on the 1/256 grid, >= 0 when `positive`). */
function leafWeights(
  rand: Rand,
  trees: Trees,
  prefix: string,
  ids: number[],
  positive: boolean,
): Record<string, Attr> {
  const t: number[] = [];
  const n: number[] = [];
  const id: number[] = [];
  const w: number[] = [];
  for (const lf of trees.leaves)
    for (const c of ids) {
      t.push(lf.tree);
      n.push(lf.node);
      id.push(c);
      w.push(grid(rand, positive ? 0 : -1, 1, 1 / 256));
    }
  return {
    [`${prefix}_treeids`]: t,
    [`${prefix}_nodeids`]: n,
    [`${prefix}_ids`]: id,
    [`${prefix}_weights`]: { floats: w },
  };
}

interface Case {
  spec: ModelSpec;
  features: number;
  /** Outputs compared exactly (labels). */
  exact: string[];
}

function classifierCase(rand: Rand, k: number): Case {
  const features = 2 + Math.floor(rand() * 3);
  const classes = pick(rand, [2, 2, 3]);
  const trees = randomTrees(rand, 1 + Math.floor(rand() * 3), features, 1 + Math.floor(rand() * 3));
  const single = classes === 2 && rand() < 0.6;
  const positive = rand() < 0.4;
  const strings = rand() < 0.3;
  const base = single
    ? pick(rand, [[], [grid(rand, -1, 1, 1 / 64)]])
    : pick(rand, [[], [], [0.25, -0.5, 0.125].slice(0, classes)]);
  const labels: Record<string, Attr> = strings
    ? { classlabels_strings: { strings: ["no", "yes", "maybe"].slice(0, classes) } }
    : { classlabels_int64s: [0, 1, 2].slice(0, classes) };
  const scaler = rand() < 0.3;
  const attrs: Record<string, Attr> = {
    ...trees.attrs,
    ...leafWeights(rand, trees, "class", single ? [0] : [...Array(classes).keys()], positive),
    ...labels,
    post_transform: pick(rand, TRANSFORMS),
    ...(base.length ? { base_values: { floats: base } } : {}),
  };
  return {
    features,
    exact: ["label"],
    spec: {
      input: { name: "input", dims: [1, features] },
      output: { name: "label", dims: [1], elemType: strings ? 8 : 7 },
      moreOutputs: [{ name: "probabilities", dims: [1, classes] }],
      nodes: [
        ...(scaler
          ? [
              {
                op: "Scaler",
                domain: "ai.onnx.ml",
                inputs: ["input"],
                outputs: ["scaled"],
                attrs: { offset: { floats: [0.5] }, scale: { floats: [2] } },
              },
            ]
          : []),
        {
          op: "TreeEnsembleClassifier",
          domain: "ai.onnx.ml",
          name: `forest${k}`,
          inputs: [scaler ? "scaled" : "input"],
          outputs: ["label", "probabilities"],
          attrs,
        },
      ],
    },
  };
}

function regressorCase(rand: Rand, k: number): Case {
  const features = 2 + Math.floor(rand() * 3);
  const targets = pick(rand, [1, 1, 2, 3]);
  const trees = randomTrees(rand, 1 + Math.floor(rand() * 3), features, 1 + Math.floor(rand() * 3));
  const transform =
    targets === 1
      ? pick(rand, ["NONE", "NONE", "PROBIT", "LOGISTIC"])
      : pick(
          rand,
          TRANSFORMS.filter((t) => t !== "PROBIT"),
        );
  const attrs: Record<string, Attr> = {
    ...trees.attrs,
    ...leafWeights(rand, trees, "target", [...Array(targets).keys()], transform === "PROBIT"),
    n_targets: targets,
    aggregate_function: pick(rand, ["SUM", "AVERAGE", "MIN", "MAX"]),
    post_transform: transform,
    ...(rand() < 0.5
      ? { base_values: { floats: Array.from({ length: targets }, () => grid(rand, -1, 1, 1 / 64)) } }
      : {}),
  };
  if (transform === "PROBIT")
    (attrs.base_values as { floats: number[] } | undefined) && delete attrs.base_values;
  return {
    features,
    exact: [],
    spec: {
      input: { name: "input", dims: [1, features] },
      output: { name: "variable", dims: [1, targets] },
      nodes: [
        {
          op: "TreeEnsembleRegressor",
          domain: "ai.onnx.ml",
          name: `boost${k}`,
          inputs: ["input"],
          outputs: ["variable"],
          attrs,
        },
      ],
    },
  };
}

function linearCase(rand: Rand, k: number): Case {
  const features = 2 + Math.floor(rand() * 4);
  const w = (n: number) => Array.from({ length: n }, () => grid(rand, -1, 1, 1 / 256));
  if (rand() < 0.3) {
    const targets = pick(rand, [1, 2]);
    return {
      features,
      exact: [],
      spec: {
        input: { name: "input", dims: [1, features] },
        output: { name: "variable", dims: [1, targets] },
        nodes: [
          {
            op: "LinearRegressor",
            domain: "ai.onnx.ml",
            name: `lin${k}`,
            inputs: ["input"],
            outputs: ["variable"],
            attrs: {
              coefficients: { floats: w(targets * features) },
              intercepts: { floats: w(targets) },
              targets,
            },
          },
        ],
      },
    };
  }
  const targets = pick(rand, [1, 3]);
  const classes = targets === 1 ? 2 : 3;
  const strings = rand() < 0.4;
  return {
    features,
    exact: ["label"],
    spec: {
      input: { name: "input", dims: [1, features] },
      output: { name: "label", dims: [1], elemType: strings ? 8 : 7 },
      moreOutputs: [{ name: "probabilities", dims: [1, classes] }],
      nodes: [
        {
          op: "LinearClassifier",
          domain: "ai.onnx.ml",
          name: `logreg${k}`,
          inputs: ["input"],
          outputs: ["label", "probabilities"],
          attrs: {
            coefficients: { floats: w(targets * features) },
            intercepts: { floats: w(targets) },
            ...(strings
              ? { classlabels_strings: { strings: ["a", "b", "c"].slice(0, classes) } }
              : { classlabels_ints: [0, 1, 2].slice(0, classes) }),
            post_transform:
              targets === 1 ? pick(rand, ["NONE", "LOGISTIC"]) : pick(rand, ["NONE", "LOGISTIC", "SOFTMAX"]),
            ...(targets === 3 ? { multi_class: 1 } : {}),
          },
        },
      ],
    },
  };
}

describe("ONNX-ML differential test: random tree ensembles and linear models vs onnxruntime", function () {
  this.timeout(300_000);
  it("every random model is refused with a reason or agrees on every input (labels exactly, scores within 1e-3)", async function () {
    const rand = seededRandom(20261130);
    const dir = tmpDir("opg-ml-diff-");
    const tally = { agreed: 0, refused: 0, ortRejected: 0, rows: 0, withIntervals: 0 };
    const reasons = new Map<string, number>();
    const kinds = [classifierCase, regressorCase, linearCase];
    for (let k = 0; k < 240; k++) {
      const c = kinds[k % 3](rand, k);
      const bytes = buildOnnx(c.spec);
      const file = path.join(dir, `m${k}.onnx`);
      fs.writeFileSync(file, bytes);
      let ref: Awaited<ReturnType<typeof referenceOutputs>>;
      try {
        ref = await referenceOutputs(file);
        await ref(new Array(c.features).fill(0), [1, c.features]);
      } catch {
        tally.ortRejected++;
        continue;
      }
      let program;
      try {
        program = quantizeGraph(parseOnnx(bytes), SCALE);
      } catch (e) {
        if (!(e instanceof ZkmlError)) throw e;
        tally.refused++;
        const why = e.message.replace(/node '[^']*'/, "node").slice(0, 90);
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
        continue;
      }
      if (program.ops.some((o) => o.op === "interval")) tally.withIntervals++;
      for (let r = 0; r < 12; r++) {
        const x = Array.from({ length: c.features }, () => grid(rand, -2, 2, 0.25));
        const ours = namedOutputs(program, executeQuantized(program, x).output);
        const theirs = await ref(x, [1, c.features]);
        const where = `model ${k} (${JSON.stringify(c.spec.nodes.map((n) => n.attrs?.post_transform ?? n.op))}) input ${JSON.stringify(x)}`;
        for (const [name, values] of Object.entries(theirs)) {
          const mine = ours[name] as (number | string)[];
          if (c.exact.includes(name)) expect(mine, `${name}: ${where}`).to.deep.equal(values);
          else
            values.forEach((v, i) => {
              const a = mine[i] as number;
              const b = v as number;
              if (Number.isNaN(b)) expect(Number.isNaN(a), `${name}[${i}] NaN: ${where}`).to.equal(true);
              else
                expect(Math.abs(a - b), `${name}[${i}] ${a} vs ${b}: ${where}`).to.be.at.most(
                  1e-3 * Math.max(1, Math.abs(b)),
                );
            });
        }
        tally.rows++;
      }
      tally.agreed++;
    }
    console.log(`      ${JSON.stringify(tally)}; refusals: ${JSON.stringify([...reasons])}`);
    expect(tally.agreed).to.be.at.least(220);
    expect(tally.withIntervals, "the interval decomposition is exercised").to.be.at.least(20);
    expect(tally.agreed + tally.refused + tally.ortRejected).to.equal(240);
  });
});
