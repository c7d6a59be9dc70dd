import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { fixtureBundle } from "../../network/local-network";
import { registerBundle } from "../../network/register-model";
import { parseSubmitted, proofWords, TOPICS } from "../../workers/runtime/tasks";
import {
  executeQuantized,
  flattenInput,
  inputWords,
  loadManifest,
  loadProgram,
  proveBundle,
} from "../../zkml";
import { pinNextBlockTime } from "../helpers/chain-time";
import { protocolWithStakedNode } from "../helpers/settlement-fixture";
import { expectGasAtMost, recordGas } from "../helpers/gas-snapshot";

const DIGITS = "test/fixtures/models/digits_mlp.onnx";
const FEE = ethers.parseEther("1");
const ROOT = path.join(__dirname, "..", "..");

/**
 * The README's model end to end on the contracts alone: the digits MLP bundle (compiled once, cached under
 * .opg/cache and shared with the demo test) registered with its key, one handwritten digit submitted,
 * proved for real and settled. This is where the submitResult budget is held: 300,000 gas for the digits
 * MLP (5 input words, 1 output word, the binding: 7 public signals).
 */
async function digitsFixture() {
  const bundleDir = await fixtureBundle(DIGITS);
  const protocol = await protocolWithStakedNode();
  const { modelId } = await registerBundle(protocol.modelOwner, protocol.models, bundleDir, {
    bundleId: "11".repeat(32),
    fee: FEE,
  });
  const digits = JSON.parse(
    fs.readFileSync(path.join(ROOT, "test/fixtures/models/digits_test.json"), "utf8"),
  );
  return {
    ...protocol,
    bundleDir,
    manifest: loadManifest(bundleDir),
    program: loadProgram(bundleDir),
    digits: digits as { scale: number; inputs: number[][]; labels: number[] },
    modelId,
  };
}

/** Submit digit `index` of the fixture set, claim it as the node, prove it for real and settle it. */
async function settleDigit(f: Awaited<ReturnType<typeof digitsFixture>>, index: number) {
  const { manifest, digits } = f;
  const layout = manifest.publicSignals;
  const image = digits.inputs[index].map((v) => v * digits.scale);
  const quantized = executeQuantized(f.program, flattenInput(image, manifest.input.shape));
  const request = {
    modelId: f.modelId,
    input: inputWords(manifest, quantized.input),
    inputDataHash: ethers.ZeroHash,
    fee: FEE,
    deadline: (await pinNextBlockTime()) + 3600n,
    callback: ethers.ZeroAddress,
    callbackGasLimit: 0,
  };
  const receipt = (await (await f.tasks.connect(f.requester).submitTask(request)).wait())!;
  const submitted = parseSubmitted(receipt.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
  const task = submitted.task;
  await f.tasks.connect(f.node).claimTask(submitted.taskId, task);
  const binding = await f.tasks.taskBinding(submitted.taskId, f.node.address);
  const { proof, publicSignals } = await proveBundle(f.bundleDir, image, binding, { reference: false });
  const outputs = publicSignals.slice(0, layout.outputWords).map(BigInt);
  const tx = f.tasks
    .connect(f.node)
    .submitResult(submitted.taskId, task, request.input, outputs, proofWords(proof));
  return {
    tx,
    taskId: submitted.taskId,
    outputs,
    label: digits.labels[index],
    quantized,
    signals: layout.inputWords + layout.outputWords + 1,
  };
}

describe("TaskRegistry with the digits MLP bundle", function () {
  it("settles real proofs of handwritten digits within 300,000 gas, and the output is the model's", async function () {
    const f = await loadFixture(digitsFixture);
    // The first settlement a node and a royalty receiver ever get pays for their first credit words;
    // the budget is for the steady state, measured on the second.
    const first = await settleDigit(f, 0);
    await expect(first.tx).to.emit(f.tasks, "TaskVerified");
    const second = await settleDigit(f, 1);
    expect(second.signals).to.equal(7);
    await expect(second.tx).to.emit(f.tasks, "TaskVerified");
    const gas = await recordGas("TaskRegistry.submitResult (digits MLP, 7 public signals)", second.tx);
    expectGasAtMost(gas, 300_000, "submitResult for the digits MLP");
    for (const settled of [first, second]) {
      expect((await f.tasks.resultOf(settled.taskId)).outputs).to.deep.equal(settled.outputs);
      const out = settled.quantized.output;
      expect(out.indexOf(Math.max(...out))).to.equal(settled.label);
    }
  });
});
