import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { fixtureBundle } from "../../network/local-network";
import { registerBundle } from "../../network/register-model";
import { parseSubmitted, proofWords, readVerifiedResult, TOPICS } from "../../workers/runtime/tasks";
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
import { expectGasAtMost, recordGas, recordGasFigure } from "../helpers/gas-snapshot";

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
  // Prepaid credits: each submitTask takes its fee from them (one storage write, no token transfer), the
  // cheapest way a dapp submits and the one the gas per task below counts.
  await protocol.tasks.connect(protocol.requester).deposit(ethers.parseEther("60"));
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

/** Submit digit `index` of the fixture set and prove it for real as the node (no claim: the proof binds it). */
async function proveDigit(f: Awaited<ReturnType<typeof digitsFixture>>, index: number) {
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
  const binding = await f.tasks.taskBinding(submitted.taskId, f.node.address);
  const { proof, publicSignals } = await proveBundle(f.bundleDir, image, binding, { reference: false });
  const outputs = publicSignals.slice(0, layout.outputWords).map(BigInt);
  return {
    submission: { taskId: submitted.taskId, task, input: request.input, outputs, proof: proofWords(proof) },
    submitGas: Number(receipt.gasUsed),
    taskId: submitted.taskId,
    outputs,
    label: digits.labels[index],
    quantized,
    signals: layout.inputWords + layout.outputWords + 1,
  };
}

/** Submit, prove and settle digit `index` alone with `submitResult`. */
async function settleDigit(f: Awaited<ReturnType<typeof digitsFixture>>, index: number) {
  const proved = await proveDigit(f, index);
  const s = proved.submission;
  const tx = f.tasks.connect(f.node).submitResult(s.taskId, s.task, s.input, s.outputs, s.proof);
  return { ...proved, tx };
}

describe("TaskRegistry with the digits MLP bundle", function () {
  it("settles a lone real proof of a handwritten digit within 400,000 gas per task, every transaction counted, and the output is the model's", async function () {
    const f = await loadFixture(digitsFixture);
    // The first settlement a node and a royalty receiver ever get pays for their first credit words;
    // the budget is for the steady state, measured on the second.
    const first = await settleDigit(f, 0);
    await expect(first.tx).to.emit(f.tasks, "TaskVerified");
    const second = await settleDigit(f, 1);
    expect(second.signals).to.equal(7);
    await expect(second.tx).to.emit(f.tasks, "TaskVerified");
    const gas = await recordGas("TaskRegistry.submitResult (digits MLP, 7 public signals)", second.tx);
    expectGasAtMost(gas, 320_000, "submitResult for the digits MLP");
    // Every transaction of a lone task counted: its submission and its settlement (no claim).
    const lone = second.submitGas + gas;
    recordGasFigure("ZK digits MLP per task, lone (submitTask + submitResult)", lone);
    expectGasAtMost(lone, 400_000, "a lone ZK digits task");
    for (const settled of [first, second]) {
      expect((await readVerifiedResult(f.tasks, settled.taskId))!.outputs).to.deep.equal(settled.outputs);
      const out = settled.quantized.output;
      expect(out.indexOf(Math.max(...out))).to.equal(settled.label);
    }
  });

  it("settles batches with one pairing product: per task at most 300,000 gas at 8 or more, every transaction counted", async function () {
    const f = await loadFixture(digitsFixture);
    // Warm the node's and the royalty receiver's credit words, as in the steady state.
    await (
      await settleDigit(f, 0)
    ).tx;
    let next = 1;
    const perTask: Record<number, number> = {};
    for (const size of [2, 4, 8, 16]) {
      const proved = [];
      for (let i = 0; i < size; i++) proved.push(await proveDigit(f, next++ % f.digits.inputs.length));
      const tx = f.tasks.connect(f.node).submitResults(proved.map((p) => p.submission));
      const settleGas = await recordGas(`TaskRegistry.submitResults (digits MLP, batch of ${size})`, tx);
      const submitGas = proved.reduce((sum, p) => sum + p.submitGas, 0);
      perTask[size] = Math.round((submitGas + settleGas) / size);
      recordGasFigure(
        `ZK digits MLP per task, batch of ${size} (submitTask each + submitResults / ${size})`,
        perTask[size],
      );
      for (const p of proved) {
        expect((await readVerifiedResult(f.tasks, p.taskId))!.outputs).to.deep.equal(p.submission.outputs);
      }
    }
    expectGasAtMost(perTask[8], 300_000, "a ZK digits task in a batch of 8");
    expectGasAtMost(perTask[16], 300_000, "a ZK digits task in a batch of 16");
    expect(perTask[16]).to.be.below(perTask[2]);
  });

  it("a batch skips a task another node settled first, and an invalid proof reverts the batch naming its task", async function () {
    const f = await loadFixture(digitsFixture);
    const a = await proveDigit(f, 2);
    const b = await proveDigit(f, 3);
    const c = await proveDigit(f, 4);
    // a settles alone first (as another batch would), then the batch of all three skips it.
    await f.tasks
      .connect(f.node)
      .submitResult(
        a.taskId,
        a.submission.task,
        a.submission.input,
        a.submission.outputs,
        a.submission.proof,
      );
    const bad = { ...c.submission, proof: [...c.submission.proof] };
    bad.proof[0] = b.submission.proof[0];
    bad.proof[1] = b.submission.proof[1];
    await expect(f.tasks.connect(f.node).submitResults([a.submission, b.submission, bad]))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
      .withArgs(c.taskId);
    await expect(f.tasks.connect(f.node).submitResults([a.submission, b.submission, c.submission]))
      .to.emit(f.tasks, "TaskResultSkipped")
      .withArgs(a.taskId, 3);
    expect(await f.tasks.taskStatus(b.taskId)).to.equal(3);
    expect(await f.tasks.taskStatus(c.taskId)).to.equal(3);
  });

  it("nobody can settle with another node's proof: the binding names the node (a front-runner's copy fails)", async function () {
    const f = await loadFixture(digitsFixture);
    const [, treasury, , , , , other] = await ethers.getSigners();
    await f.token.connect(treasury).transfer(other.address, ethers.parseEther("5000"));
    await f.token.connect(other).approve(await f.staking.getAddress(), ethers.MaxUint256);
    await f.staking.connect(other).register(1, "");
    await f.staking.connect(other).stake(ethers.parseEther("5000"));
    const a = await proveDigit(f, 5);
    const s = a.submission;
    await expect(f.tasks.connect(other).submitResult(s.taskId, s.task, s.input, s.outputs, s.proof))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
      .withArgs(s.taskId);
    await expect(f.tasks.connect(other).submitResults([s]))
      .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
      .withArgs(s.taskId);
    await expect(f.tasks.connect(f.node).submitResult(s.taskId, s.task, s.input, s.outputs, s.proof)).to.emit(
      f.tasks,
      "TaskVerified",
    );
  });
});
