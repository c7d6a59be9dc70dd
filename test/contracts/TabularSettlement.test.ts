import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { fixtureBundle } from "../../network/local-network";
import { registerBundle } from "../../network/register-model";
import {
  TABULAR_FIXTURES,
  TabularFixture,
  tabularFile,
  tabularShape,
  tabularTestData,
} from "../../scripts/lib/tabular-fixtures";
import { parseSubmitted, proofWords, readVerifiedResult, TOPICS } from "../../workers/runtime/tasks";
import {
  dequantizeOutput,
  executeQuantized,
  inputWords,
  loadManifest,
  loadProgram,
  namedOutputs,
  proveBundle,
  referenceOutputs,
  unpackWords,
} from "../../zkml";
import { pinNextBlockTime } from "../helpers/chain-time";
import { protocolWithStakedNode } from "../helpers/settlement-fixture";
import { recordGas } from "../helpers/gas-snapshot";

const FEE = ethers.parseEther("1");
/** What the issue asks to see settled: a forest, a boosted regressor, XGBoost, Scaler + logistic regression, a 1-D CNN. */
const SETTLED = ["iris_forest", "diabetes_gbr", "cancer_xgb", "wine_logreg", "cancer_logreg", "series_cnn1d"];

type Market = Awaited<ReturnType<typeof protocolWithStakedNode>>;

/**
 * Compiles (cached), registers, submits row `row` of the fixture's test data, proves it for real and settles it
 * (no claim: the proof binds the node).
 */
async function settle(m: Market, f: TabularFixture, row: number, bundleId: string) {
  const bundleDir = await fixtureBundle(`test/fixtures/models/${f.name}.onnx`, {
    ...f.options,
    inputMode: "inline",
  });
  const manifest = loadManifest(bundleDir);
  const program = loadProgram(bundleDir);
  const { modelId } = await registerBundle(m.modelOwner, m.models, bundleDir, { bundleId, fee: FEE });
  const x = tabularTestData(f).inputs[row];
  const q = executeQuantized(program, x);
  const request = {
    modelId,
    input: inputWords(manifest, q.input),
    inputDataHash: ethers.ZeroHash,
    fee: FEE,
    deadline: (await pinNextBlockTime()) + 3600n,
    callback: ethers.ZeroAddress,
    callbackGasLimit: 0,
  };
  const receipt = (await (await m.tasks.connect(m.requester).submitTask(request)).wait())!;
  const submitted = parseSubmitted(receipt.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
  const binding = await m.tasks.taskBinding(submitted.taskId, m.node.address);
  const { proof, publicSignals } = await proveBundle(bundleDir, x, binding, { reference: false });
  const words = publicSignals.slice(0, manifest.publicSignals.outputWords).map(BigInt);
  const tx = m.tasks
    .connect(m.node)
    .submitResult(submitted.taskId, submitted.task, request.input, words, proofWords(proof));
  return { tx, taskId: submitted.taskId, manifest, program, x };
}

describe("TaskRegistry with tree-ensemble, linear and 1-D CNN bundles", function () {
  it("settles a real proof for each model; the registry's result decodes to onnxruntime's outputs", async function () {
    const m = await loadFixture(protocolWithStakedNode);
    // the node's and the royalty receiver's first settlement pays for their first credit words: warm up
    const warm = await settle(m, TABULAR_FIXTURES[0], 1, "10".repeat(32));
    await expect(warm.tx).to.emit(m.tasks, "TaskVerified");
    for (const [i, name] of SETTLED.entries()) {
      const f = TABULAR_FIXTURES.find((t) => t.name === name) as TabularFixture;
      const s = await settle(m, f, 0, (i + 0x11).toString(16).padStart(2, "0").repeat(32));
      await expect(s.tx).to.emit(m.tasks, "TaskVerified");
      await recordGas(`TaskRegistry.submitResult (${name})`, s.tx);
      // Read the verified result back (its TaskVerified event, checked against the registry's stored hash)
      // and decode it as a dapp would.
      const result = await readVerifiedResult(m.tasks, s.taskId);
      expect(result, name).to.not.equal(null);
      expect(result!.node).to.equal(m.node.address);
      const words = [...result!.outputs];
      const layout = s.manifest.publicSignals;
      const named = namedOutputs(
        s.program,
        dequantizeOutput(s.program, unpackWords(words, layout.outputCount, layout.packBits)),
      );
      const theirs = await (await referenceOutputs(tabularFile(f)))(s.x, tabularShape(tabularTestData(f)));
      if (f.label) expect(named[f.label], name).to.deep.equal(theirs[f.label]);
      (named[f.scores] as number[]).forEach((v, k) =>
        expect(Math.abs(v - (theirs[f.scores][k] as number)), `${name} ${f.scores}[${k}]`).to.be.at.most(
          f.tolerance,
        ),
      );
      // every output of a multi-output model is in the proven words
      if (s.manifest.output.parts)
        expect(Object.keys(named)).to.deep.equal(s.manifest.output.parts.map((p) => p.name));
    }
  });
});
