import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import {
  executeQuantized,
  expectedPublicSignals,
  loadOnnx,
  quantizeGraph,
  referenceSession,
} from "../../zkml";
import { expectedConstraints, planCircuit } from "../../zkml/circuit/codegen";
import { mlpSpec } from "../../zkml/onnx/builder";
import { FIXTURES, argmax, compileNoSetup, publicOf, witnessFor, writeModel } from "./helpers";

/** The options the digits fixtures are compiled with (bench:zkml uses the same). */
export const DIGITS_OPTIONS = { scaleBits: 8, inputBits: 10 };

const digits = JSON.parse(fs.readFileSync(path.join(FIXTURES, "digits_test.json"), "utf8")) as {
  scale: number;
  inputs: number[][];
  labels: number[];
};

// Pinned constraint counts; their op-by-op breakdown is expectedConstraints().
const MODELS = [
  { file: "digits_mlp.onnx", shape: [1, 64], constraints: 2375 },
  { file: "digits_cnn.onnx", shape: [1, 1, 8, 8], constraints: 5009 },
];

describe("zkml exporter fixtures on held-out sklearn digits", function () {
  for (const m of MODELS) {
    describe(m.file, function () {
      const file = path.join(FIXTURES, m.file);

      it("quantized argmax equals onnxruntime's on at least 99% of the held-out split", async function () {
        const program = quantizeGraph(loadOnnx(file), DIGITS_OPTIONS);
        const ref = await referenceSession(file);
        let agree = 0;
        let correct = 0;
        for (let i = 0; i < digits.inputs.length; i++) {
          const x = digits.inputs[i].map((v) => v * digits.scale);
          const q = argmax(executeQuantized(program, x).output);
          if (q === argmax(await ref(x, m.shape))) agree++;
          if (q === digits.labels[i]) correct++;
        }
        expect(digits.inputs.length).to.equal(360);
        expect(agree / digits.inputs.length).to.be.at.least(0.99);
        expect(correct / digits.inputs.length).to.be.at.least(0.85);
      });

      it("compiles to the pinned constraint count; the witness equals the executor bit for bit", async function () {
        const c = await compileNoSetup(file, DIGITS_OPTIONS);
        expect(c.manifest.constraints).to.equal(m.constraints);
        expect(c.manifest.constraints).to.equal(
          expectedConstraints(c.program, planCircuit(c.program, c.manifest.publicSignals)).total,
        );
        for (const i of [0, 1]) {
          const q = executeQuantized(
            c.program,
            digits.inputs[i].map((v) => v * digits.scale),
          );
          const w = await witnessFor(c, q.input, 99n);
          expect(publicOf(c, w)).to.deep.equal(expectedPublicSignals(c.manifest, q.input, q.quantized, 99n));
        }
      });
    });
  }

  it("widening a layer's fan-in changes the constraint count only through input range checks", async function () {
    // activation width capped at 12 bits for both models, so the hidden and output rescales cost the same
    const opts = {
      scaleBits: 6,
      inputBits: 8,
      activationBits: 12,
      inputMode: "inline" as const,
      maxInlineWords: 100,
    };
    const narrow = await compileNoSetup(writeModel(mlpSpec([16, 4, 2], 5)), opts);
    const wide = await compileNoSetup(writeModel(mlpSpec([32, 4, 2], 5)), opts);
    expect(wide.manifest.weightMultiplies - narrow.manifest.weightMultiplies).to.equal(16 * 4);
    expect(wide.manifest.constraints - narrow.manifest.constraints).to.equal(16 * 8);
  });
});
