import { expect } from "chai";
import {
  executeQuantized,
  expectedPublicSignals,
  loadOnnx,
  quantizeGraph,
  referenceOutputs,
} from "../../zkml";
import { expectedConstraints, planCircuit } from "../../zkml/circuit/codegen";
import { ZkmlError } from "../../zkml/errors";
import { ModelSpec, NodeSpec, seededRandom } from "../../zkml/onnx/builder";
import { executeWithErrorBound } from "../../zkml/quant/error-bound";
import type { DivideOp, QProgram } from "../../zkml/quant/program";
import {
  TemplateCircuit,
  compileNoSetup,
  compileTemplate,
  publicOf,
  templateWitness,
  witnessFor,
  witnessSatisfies,
  writeModel,
} from "./helpers";

const P = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const field = (v: bigint): bigint => ((v % P) + P) % P;
const NORMS = ["MAX", "L1", "L2"] as const;
type Norm = (typeof NORMS)[number];

/**
 * The largest |executor - onnxruntime| measured on grid inputs (multiples of 2^-8, so the input is exact at
 * s = 8): the quotient's rounding, half a unit (2^-9), plus float32 noise; L2 adds under a unit of 2^-16 of
 * the norm from the root's floor.
 */
const GRID_TOLERANCE = 2 ** -9 + 1e-6;

function normalizerNode(norm: Norm, input = "input", output = "output"): NodeSpec {
  return { op: "Normalizer", domain: "ai.onnx.ml", inputs: [input], outputs: [output], attrs: { norm } };
}

function normalizerModel(norm: Norm, dims: number[]): ModelSpec {
  return {
    input: { name: "input", dims },
    output: { name: "output", dims },
    nodes: [normalizerNode(norm)],
  };
}

/** Rows of `cols` values: random ones, an all-zero row, an all-negative row, and a row whose max is 0. */
function testRows(rand: () => number, cols: number, grid: boolean, count: number): number[][] {
  const value = (lo: number, hi: number): number => {
    const v = lo + rand() * (hi - lo);
    return grid ? Math.round(v * 256) / 256 : v;
  };
  const rows: number[][] = [
    new Array<number>(cols).fill(0),
    Array.from({ length: cols }, () => value(-3, -0.25)),
    Array.from({ length: cols }, (_, j) => (j === 1 ? 0 : value(-3, -0.25))),
  ];
  while (rows.length < count) rows.push(Array.from({ length: cols }, () => value(-3, 3)));
  return rows;
}

function program(spec: ModelSpec): QProgram {
  return quantizeGraph(loadOnnx(writeModel(spec)), { scaleBits: 8, inputBits: 16 });
}

describe("ONNX-ML Normalizer", function () {
  describe("agrees with onnxruntime 1.30 (MAX, L1, L2; zero rows, negative maxima)", function () {
    for (const norm of NORMS) {
      it(`${norm}: within 2^-9 on exact inputs, within the propagated error bound on any input`, async function () {
        const rand = seededRandom(norm.length * 7919 + norm.charCodeAt(0));
        const cols = 5;
        for (const dims of [[4, cols], [cols]]) {
          const spec = normalizerModel(norm, dims);
          const file = writeModel(spec);
          const prog = program(spec);
          const ref = await referenceOutputs(file);
          let worst = 0;
          for (const grid of [true, false]) {
            const rows = testRows(rand, cols, grid, 40);
            const batch = dims.length === 2 ? dims[0] : 1;
            for (let k = 0; k + batch <= rows.length; k += batch) {
              const x = rows.slice(k, k + batch).flat();
              const ours = executeWithErrorBound(prog, x);
              const theirs = (await ref(x, dims)).output as number[];
              theirs.forEach((t, i) => {
                const diff = Math.abs(ours.output[i] - t);
                if (grid) worst = Math.max(worst, diff);
                expect(diff, `${norm} x=${JSON.stringify(x)} #${i}`).to.be.at.most(ours.bound[i] + 1e-5);
              });
            }
          }
          expect(worst, `${norm} [${dims}]`).to.be.at.most(GRID_TOLERANCE);
        }
      });
    }

    it("passes a zero row through, and divides by a negative max (onnxruntime's rule)", async function () {
      const x = [0, 0, 0, -1, 0, -2, -1, -0.5, -2, 1, -3, 0.5];
      const expected: Record<Norm, number[]> = {
        MAX: [0, 0, 0, -1, 0, -2, 2, 1, 4, 1, -3, 0.5],
        L1: [0, 0, 0, -1 / 3, 0, -2 / 3, -1 / 3.5, -0.5 / 3.5, -2 / 3.5, 1 / 4.5, -3 / 4.5, 0.5 / 4.5],
        L2: [0, 0, 0, -1 / Math.sqrt(5), 0, -2 / Math.sqrt(5)].concat(
          [-1, -0.5, -2].map((v) => v / Math.sqrt(5.25)),
          [1, -3, 0.5].map((v) => v / Math.sqrt(10.25)),
        ),
      };
      for (const norm of NORMS) {
        const spec = normalizerModel(norm, [4, 3]);
        const theirs = (await (await referenceOutputs(writeModel(spec)))(x, [4, 3])).output as number[];
        const ours = executeQuantized(program(spec), x).output;
        theirs.forEach((t, i) => expect(t).to.be.closeTo(expected[norm][i], 1e-6));
        ours.forEach((v, i) => expect(v, `${norm} #${i}`).to.be.closeTo(expected[norm][i], GRID_TOLERANCE));
      }
    });

    it("Scaler -> Normalizer -> LinearClassifier agrees with onnxruntime (labels exactly)", async function () {
      const rand = seededRandom(4242);
      for (const norm of NORMS) {
        const spec: ModelSpec = {
          input: { name: "input", dims: [1, 4] },
          output: { name: "label", dims: [1], elemType: 7 },
          moreOutputs: [{ name: "probabilities", dims: [1, 3] }],
          nodes: [
            {
              op: "Scaler",
              domain: "ai.onnx.ml",
              inputs: ["input"],
              outputs: ["scaled"],
              // exact at s = 8 on grid inputs: the Normalizer's input carries no rounding
              attrs: { offset: { floats: [0.5, -0.25, 0, 1] }, scale: { floats: [2, 1, 4, 1] } },
            },
            normalizerNode(norm, "scaled", "normalized"),
            {
              op: "LinearClassifier",
              domain: "ai.onnx.ml",
              inputs: ["normalized"],
              outputs: ["label", "probabilities"],
              attrs: {
                classlabels_ints: [0, 1, 2],
                coefficients: { floats: [1.5, -2, 0.5, 1, -1, 0.25, 2, -0.5, 0.75, 1, -1.25, 0.5] },
                intercepts: { floats: [0.1, -0.2, 0.05] },
                post_transform: "NONE",
              },
            },
          ],
        };
        const file = writeModel(spec);
        const prog = program(spec);
        const ref = await referenceOutputs(file);
        let worst = 0;
        for (let k = 0; k < 40; k++) {
          const x = Array.from({ length: 4 }, () => Math.round((rand() * 6 - 3) * 256) / 256);
          const ours = executeWithErrorBound(prog, x);
          const theirs = await ref(x, [1, 4]);
          const probs = ours.output.slice(1);
          (theirs.probabilities as number[]).forEach((t, i) => {
            const diff = Math.abs(probs[i] - t);
            worst = Math.max(worst, diff);
            expect(diff).to.be.at.most(ours.bound[i + 1] + 1e-5);
          });
          // the label is decided by the proven scores: exact wherever the top two are apart by more than 0.02
          const sorted = [...(theirs.probabilities as number[])].sort((a, b) => b - a);
          if (sorted[0] - sorted[1] > 0.02) expect(ours.output[0]).to.equal(Number(theirs.label[0]));
        }
        expect(worst, norm).to.be.at.most(0.02);
      }
    });

    it("refuses an unknown norm and an input of rank 3", function () {
      const refusal = (spec: ModelSpec): ZkmlError => {
        try {
          program(spec);
        } catch (e) {
          return e as ZkmlError;
        }
        throw new Error("expected a refusal");
      };
      const bad = normalizerModel("L1", [2, 3]);
      (bad.nodes[0].attrs as Record<string, string>).norm = "L3";
      expect(refusal(bad).code).to.equal("UNSUPPORTED_ATTRIBUTE");
      expect(refusal(normalizerModel("L1", [2, 2, 3])).code).to.equal("UNSUPPORTED_OP");
    });
  });

  describe("circuit", function () {
    // pinned ([3, 3], s = 8, 16 input bits): a change in the lowering's cost shows here
    const pinned: Record<Norm, number> = { MAX: 1021, L1: 880, L2: 1078 };
    for (const norm of NORMS) {
      it(`${norm}: the op-by-op constraint count; the witness equals the executor bit for bit`, async function () {
        const c = await compileNoSetup(writeModel(normalizerModel(norm, [3, 3])), { scaleBits: 8 });
        const plan = planCircuit(c.program, c.manifest.publicSignals);
        expect(c.manifest.constraints).to.equal(expectedConstraints(c.program, plan).total);
        expect(c.manifest.constraints).to.equal(pinned[norm]);
        const rand = seededRandom(17);
        const inputs = [
          [0, 0, 0, -1, 0, -2, -1, -0.5, -2], // a zero row, a zero max, a negative max
          [0.5, -0.25, 2, 1, 1, 1, -3, 2.5, 0.01],
          Array.from({ length: 9 }, () => rand() * 4 - 2),
        ];
        for (const x of inputs) {
          const q = executeQuantized(c.program, x);
          const w = await witnessFor(c, q.input, 5n);
          expect(publicOf(c, w), `${norm} ${JSON.stringify(x)}`).to.deep.equal(
            expectedPublicSignals(c.manifest, q.input, q.quantized, 5n),
          );
        }
      });
    }

    it("widths: an (s + 2)-bit quotient for L1/L2 (|y| <= 1), |x| 2^s for MAX; shift s, 2s after L2's root", function () {
      for (const norm of NORMS) {
        const prog = program(normalizerModel(norm, [2, 4]));
        const div = prog.ops.find((o) => o.op === "divide") as DivideOp;
        expect(div.signed).to.equal(norm === "MAX");
        expect(div.quotBits).to.equal(norm === "MAX" ? 25 : 10);
        expect(div.shift).to.equal(norm === "L2" ? 16 : 8);
      }
    });
  });

  describe("RowDivide and Isqrt templates", function () {
    const header = `pragma circom 2.1.0;\ninclude "division.circom";\n`;
    let div: TemplateCircuit;
    let root: TemplateCircuit;
    // RowDivide(n = 2, shift = 4, signed, denBits = 7, remBits = 7, quotBits = 12)
    before(async function () {
      div = await compileTemplate(
        `${header}template T() { signal input num[2]; signal input den; signal output out[2]; component d = RowDivide(2, 4, 1, 7, 7, 12); d.num <== num; d.den <== den; out <== d.out; }\ncomponent main = T();`,
      );
      root = await compileTemplate(
        `${header}template T() { signal input in; signal output out; component r = Isqrt(1, 4, 8); r.in[0] <== in; out <== r.out[0]; }\ncomponent main = T();`,
      );
    });

    const wire = (t: TemplateCircuit, name: string): number | undefined => t.wires.get(name);
    const set = (t: TemplateCircuit, w: bigint[], name: string, v: bigint): void => {
      const i = wire(t, name);
      if (i !== undefined) w[i] = field(v);
    };
    const setBits = (t: TemplateCircuit, w: bigint[], prefix: string, n: number, v: bigint): void => {
      for (let j = 0; j < n; j++) set(t, w, `${prefix}.out[${j}]`, (field(v) >> BigInt(j)) & 1n);
    };

    it("costs what expectedConstraints counts", function () {
      // signed, per row: denBits + 1 + 2; per element: 1 + quotBits + 2 remBits + 2
      expect(div.constraints).to.equal(7 + 1 + 2 + 2 * (1 + 12 + 14 + 2));
      expect(root.constraints).to.equal(3 * 8 + 3);
    });

    it("rounds to nearest, divides by a negative divisor, passes a zero divisor through", async function () {
      for (const [num, den, out] of [
        [[7n, -7n], 3n, [37n, -37n]], // 7 * 16 / 3 = 37.33
        [[5n, 1n], 2n, [40n, 8n]],
        [[3n, -9n], -2n, [-24n, 72n]],
        [[3n, -9n], 0n, [3n, -9n]],
        [[1n, 0n], 32n, [1n, 0n]], // 0.5 rounds half up
      ] as [bigint[], bigint, bigint[]][]) {
        const w = await templateWitness(div, { num: num.map(String), den: field(den).toString() });
        const got = [0, 1].map((i) => w[wire(div, `main.out[${i}]`) as number]);
        expect(got).to.deep.equal(out.map(field));
        expect(await witnessSatisfies(div.r1cs, w)).to.equal(true);
      }
    });

    it("rejects a quotient off by one, however the prover fills in the remainder", async function () {
      // num 7, den 3: q = 37, D = 3, rem = 2 * 7 * 16 + 3 - 2 * 37 * 3 = 5 in [0, 6)
      const honest = await templateWitness(div, { num: ["7", "7"], den: "3" });
      const forge = (q: bigint): bigint[] => {
        const w = [...honest];
        const rem = 2n * 7n * 16n + 3n - 2n * q * 3n;
        set(div, w, "main.d.q[0]", q);
        set(div, w, "main.d.qd[0]", q * 3n);
        set(div, w, "main.out[0]", q);
        setBits(div, w, "main.d.quot[0]", 12, q + 2048n);
        setBits(div, w, "main.d.low[0]", 7, rem);
        setBits(div, w, "main.d.high[0]", 7, 2n * 3n - 1n - rem);
        return w;
      };
      expect(await witnessSatisfies(div.r1cs, forge(37n))).to.equal(true);
      expect(await witnessSatisfies(div.r1cs, forge(36n))).to.equal(false);
      expect(await witnessSatisfies(div.r1cs, forge(38n))).to.equal(false);
    });

    it("Isqrt: floor(sqrt(in 2^shift)); a root off by one fails", async function () {
      for (const [input, out] of [
        [0n, 0n],
        [1n, 4n],
        [2n, 5n],
        [100n, 40n],
        [15n, 15n],
      ]) {
        const w = await templateWitness(root, { in: input.toString() });
        expect(w[wire(root, "main.out") as number]).to.equal(out, `in ${input}`);
        expect(await witnessSatisfies(root.r1cs, w)).to.equal(true);
      }
      const honest = await templateWitness(root, { in: "2" });
      const forge = (r: bigint): bigint[] => {
        const w = [...honest];
        set(root, w, "main.out", r);
        set(root, w, "main.r.out[0]", r);
        set(root, w, "main.r.sq[0]", r * r);
        setBits(root, w, "main.r.root[0]", 8, r);
        setBits(root, w, "main.r.low[0]", 9, 32n - r * r);
        setBits(root, w, "main.r.high[0]", 9, r * r + 2n * r - 32n);
        return w;
      };
      expect(await witnessSatisfies(root.r1cs, forge(5n))).to.equal(true);
      expect(await witnessSatisfies(root.r1cs, forge(4n))).to.equal(false);
      expect(await witnessSatisfies(root.r1cs, forge(6n))).to.equal(false);
    });
  });
});
