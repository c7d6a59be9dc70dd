import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { pinNextBlockTime } from "../helpers/chain-time";
import { ethers } from "hardhat";
import { impersonateAccount, loadFixture, setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import type { BaseContract, ContractTransactionReceipt } from "ethers";
import {
  GasBurningCallback__factory,
  RecordingCallback__factory,
  ReturnBombCallback__factory,
  RevertingCallback__factory,
  RiskGatedLender__factory,
  ToggleConsumer__factory,
} from "../../typechain-types";
import { recordGas } from "../helpers/gas-snapshot";
import { readVerifiedResult, type VerifiedResult } from "../../workers/runtime/tasks";
import { MODEL_FEE, marketFixture, type SubmittedTask } from "../helpers/market-fixture";
import {
  TINY_INPUT_BITS,
  TINY_INPUTS,
  TINY_OUTPUT_OFFSET,
  tinyInputValues,
  tinyInputWords,
  tinyOutputWord,
} from "../helpers/tiny-circuit";

// solc ships no TypeScript types; this is the one call used.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const solc = require("solc") as { compile(input: string): string };

const MAX_RISK_SCORE = 100n;
const CREDIT_PER_UNIT = ethers.parseEther("1");
const LENDER_CALLBACK_GAS = 200_000n;
/** The cap the market fixture sets on callback gas. */
const MAX_CALLBACK_GAS = 500_000;
/** What the registry itself spends around a callback: the call, the encoding, the CallbackExecuted event. */
const CALLBACK_OVERHEAD_GAS = 15_000n;
const ATTACKS_SOURCE = path.join(__dirname, "..", "fixtures", "contracts", "CallbackAttacks.sol");

/** The tiny model's score for `values`, as PublicSignals.valueAt decodes its output word. */
function tinyScore(values: bigint[]) {
  return tinyOutputWord(values) - TINY_OUTPUT_OFFSET;
}

function expectedCreditLine(score: bigint) {
  return score < MAX_RISK_SCORE ? (MAX_RISK_SCORE - score) * CREDIT_PER_UNIT : 0n;
}

let attackArtifacts: Record<string, { abi: unknown[]; bytecode: string }> | undefined;

/** Compile test/fixtures/contracts/CallbackAttacks.sol once, with the solc-js the project builds with. */
function attackArtifact(name: "ReentrantCallback" | "LargeRevertCallback") {
  if (!attackArtifacts) {
    const output = JSON.parse(
      solc.compile(
        JSON.stringify({
          language: "Solidity",
          sources: { "CallbackAttacks.sol": { content: fs.readFileSync(ATTACKS_SOURCE, "utf8") } },
          settings: {
            optimizer: { enabled: true, runs: 200 },
            evmVersion: "cancun",
            outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
          },
        }),
      ),
    );
    const errors = (output.errors ?? []).filter((e: { severity: string }) => e.severity === "error");
    if (errors.length > 0) throw new Error(`CallbackAttacks.sol did not compile: ${JSON.stringify(errors)}`);
    const contracts = output.contracts["CallbackAttacks.sol"];
    attackArtifacts = Object.fromEntries(
      Object.entries(contracts).map(([contractName, c]) => {
        const compiled = c as { abi: unknown[]; evm: { bytecode: { object: string } } };
        return [contractName, { abi: compiled.abi, bytecode: "0x" + compiled.evm.bytecode.object }];
      }),
    );
  }
  return attackArtifacts[name];
}

async function deployAttack(name: "ReentrantCallback" | "LargeRevertCallback", args: unknown[]) {
  const { abi, bytecode } = attackArtifact(name);
  const [deployer] = await ethers.getSigners();
  const contract = await new ethers.ContractFactory(abi as never, bytecode, deployer).deploy(...args);
  await contract.waitForDeployment();
  // The ABI is only known at run time: calls go through getFunction.
  return contract as BaseContract & { getFunction(name: string): (...a: unknown[]) => Promise<never> };
}

/** The market plus a RiskGatedLender on model 1, owned by `lenderOwner`, with 10 fees of prepaid credits. */
async function lenderFixture() {
  const f = await marketFixture();
  const [, , , , , , , , , lenderOwner, borrower, otherBorrower] = await ethers.getSigners();
  const lender = await new RiskGatedLender__factory(f.deployer).deploy(
    f.tasksAddress,
    await f.token.getAddress(),
    lenderOwner.address,
    f.modelId,
    MAX_RISK_SCORE,
    CREDIT_PER_UNIT,
  );
  const lenderAddress = await lender.getAddress();
  await f.token.connect(f.treasury).approve(lenderAddress, MODEL_FEE * 10n);
  await lender.connect(f.treasury).fundCredits(MODEL_FEE * 10n);
  return { ...f, lender, lenderAddress, lenderOwner, borrower, otherBorrower };
}

type Fixture = Awaited<ReturnType<typeof lenderFixture>>;

/** A deadline counted from the (pinned) time of the next block: robust to slow machines. */
async function deadline(secondsFromNow = 3600) {
  return Number(await pinNextBlockTime()) + secondsFromNow;
}

/** The lender asks for `borrower`'s score on `values`; returns the task as the node sees it. */
async function requestScore(f: Fixture, borrower: HardhatEthersSigner, values: bigint[]) {
  const tx = await f.lender
    .connect(f.lenderOwner)
    .requestRiskScore(borrower.address, tinyInputValues(values), MODEL_FEE, await deadline());
  const receipt = await tx.wait();
  return f.submittedFrom(receipt!.logs);
}

/** `node` proves `submitted` for real and submits (no claim: the proof binds the node); returns the receipt. */
async function proveAndSettle(
  f: Fixture,
  submitted: SubmittedTask,
  node: HardhatEthersSigner = f.nodes[0],
): Promise<ContractTransactionReceipt> {
  const { proof, outputs } = await f.prove(submitted, node);
  const tx = await f.tasks
    .connect(node)
    .submitResult(submitted.taskId, submitted.task, submitted.input, outputs, proof);
  return (await tx.wait())!;
}

/** The task's verified result as `deliverResult` takes it (`readVerifiedResult` less its transaction hash). */
function asResult(r: VerifiedResult) {
  return { node: r.node, settledBlock: r.settledBlock, outputs: r.outputs };
}

/** The verified result of `taskId`, read from its TaskVerified event and checked by the registry. */
async function verifiedResult(f: Fixture, taskId: bigint) {
  const r = await readVerifiedResult(f.tasks, taskId);
  if (!r) throw new Error(`task ${taskId} has no verified result`);
  return asResult(r);
}

function registryEvents(f: Fixture, receipt: ContractTransactionReceipt, name: string) {
  return receipt.logs
    .filter((log) => log.address === f.tasksAddress)
    .map((log) => f.tasks.interface.parseLog(log))
    .filter((parsed) => parsed?.name === name)
    .map((parsed) => parsed!.args);
}

describe("InferenceConsumer", function () {
  describe("RiskGatedLender", function () {
    it("requests a score as a task paid from its prepaid credits, input packed on chain, itself as the callback", async function () {
      const f = await loadFixture(lenderFixture);
      const credits = await f.tasks.creditsOf(f.lenderAddress);
      expect(credits).to.equal(MODEL_FEE * 10n);
      const values = [1n, -2n, 3n, 4n];
      const tx = f.lender
        .connect(f.lenderOwner)
        .requestRiskScore(f.borrower.address, tinyInputValues(values), MODEL_FEE, await deadline());
      await expect(tx).to.emit(f.lender, "RiskScoreRequested").withArgs(f.borrower.address, 1n);
      const submitted = f.submittedFrom((await (await tx).wait())!.logs);

      expect(submitted.task.requester).to.equal(f.lenderAddress);
      expect(submitted.task.callback).to.equal(f.lenderAddress);
      expect(submitted.task.callbackGasLimit).to.equal(LENDER_CALLBACK_GAS);
      expect(submitted.task.fee).to.equal(MODEL_FEE);
      // The words the contract packed are exactly the circuit's canonical packing.
      expect(submitted.input).to.deep.equal(tinyInputWords(values));
      expect(await f.lender.isPending(submitted.taskId)).to.equal(true);
      expect(await f.tasks.creditsOf(f.lenderAddress)).to.equal(credits - MODEL_FEE);
      expect(await f.token.balanceOf(f.lenderAddress)).to.equal(0n);
      expect(await f.token.allowance(f.lenderAddress, f.tasksAddress)).to.equal(0n);
      // The model's layout was read once and cached.
      const format = await f.lender.modelFormat(f.modelId);
      expect([
        format.packBits,
        format.inputBits,
        format.inputValues,
        format.outputValues,
        format.known,
      ]).to.deep.equal([40n, BigInt(TINY_INPUT_BITS), BigInt(TINY_INPUTS), 1n, true]);
    });

    it("measures one request: prepaid credits vs a per-task approval and transfer", async function () {
      const f = await loadFixture(lenderFixture);
      const request = async () =>
        f.lender
          .connect(f.lenderOwner)
          .requestRiskScore(
            f.borrower.address,
            tinyInputValues([1n, 2n, 3n, 4n]),
            MODEL_FEE,
            await deadline(),
          );
      await request(); // the first request caches the model's layout
      const fromCredits = await recordGas(
        "RiskGatedLender.requestRiskScore (prepaid credits, steady state)",
        request(),
      );
      // Without credits the same request pulls the fee from the contract's own OPG.
      await f.lender.connect(f.lenderOwner).withdrawCredits(f.lenderAddress);
      expect(await f.tasks.creditsOf(f.lenderAddress)).to.equal(0n);
      const fromWallet = await recordGas(
        "RiskGatedLender.requestRiskScore (approve + transfer, steady state)",
        request(),
      );
      expect(fromCredits).to.be.lessThan(fromWallet);
      expect(await f.token.balanceOf(f.lenderAddress)).to.equal(MODEL_FEE * 7n);

      // A dapp that packs its words off chain (`_requestInferenceWords`) saves the on-chain packing.
      const consumer = await new ToggleConsumer__factory(f.deployer).deploy(
        f.tasksAddress,
        await f.token.getAddress(),
      );
      await f.token.connect(f.treasury).approve(await consumer.getAddress(), MODEL_FEE * 2n);
      await consumer.connect(f.treasury).fundCredits(MODEL_FEE * 2n);
      const words = tinyInputWords([1n, 2n, 3n, 4n]);
      await consumer.requestWords(f.modelId, words, MODEL_FEE, await deadline(), 100_000);
      await recordGas(
        "InferenceConsumer._requestInferenceWords (prepaid credits, steady state)",
        consumer.requestWords(f.modelId, words, MODEL_FEE, await deadline(), 100_000),
      );
      expect(await f.token.allowance(f.lenderAddress, f.tasksAddress)).to.equal(0n);
    });

    it("reverts with InferenceConsumerInsufficientFunds when neither credits nor OPG cover the fee", async function () {
      const f = await loadFixture(lenderFixture);
      await f.lender.connect(f.lenderOwner).withdrawCredits(f.lenderOwner.address);
      await expect(
        f.lender
          .connect(f.lenderOwner)
          .requestRiskScore(f.borrower.address, tinyInputValues([1n]), MODEL_FEE, await deadline()),
      )
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerInsufficientFunds")
        .withArgs(MODEL_FEE, 0n, 0n);
    });

    it("refuses input of the wrong length or outside the model's input range before anything is sent", async function () {
      const f = await loadFixture(lenderFixture);
      const request = async (values: bigint[]) =>
        f.lender
          .connect(f.lenderOwner)
          .requestRiskScore(f.borrower.address, values, MODEL_FEE, await deadline());
      await expect(request([1n, 2n]))
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerInputLength")
        .withArgs(f.modelId, 2n, BigInt(TINY_INPUTS));
      const limit = 1n << BigInt(TINY_INPUT_BITS - 1);
      for (const [index, bad] of [
        [3, limit],
        [23, -limit - 1n],
      ] as const) {
        const values = tinyInputValues([]);
        values[index] = bad;
        await expect(request(values))
          .to.be.revertedWithCustomError(f.lender, "InferenceConsumerInputOutOfRange")
          .withArgs(index, bad, TINY_INPUT_BITS);
      }
      // The extremes of the range are fine.
      const edge = tinyInputValues([limit - 1n, -limit]);
      await expect(request(edge)).to.emit(f.lender, "RiskScoreRequested");
      expect(await f.tasks.creditsOf(f.lenderAddress)).to.equal(MODEL_FEE * 9n);
    });

    it("closes an expired request with expireTask: fee back to the contract, failure hook run, once", async function () {
      const f = await loadFixture(lenderFixture);
      const submitted = await requestScore(f, f.borrower, [1n, 2n, 3n, 4n]);
      await expect(
        f.lender.connect(f.stranger).expireTask(submitted.taskId, submitted.task),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryDeadlineNotReached");
      await time.increaseTo(BigInt(submitted.task.deadline) + 1n);
      const before = await f.token.balanceOf(f.lenderAddress);
      const tx = f.lender.connect(f.stranger).expireTask(submitted.taskId, submitted.task);
      await expect(tx).to.emit(f.lender, "RiskScoreFailed").withArgs(f.borrower.address, submitted.taskId);
      await expect(tx).to.emit(f.lender, "InferenceFailed").withArgs(submitted.taskId, f.modelId);
      await expect(tx).to.emit(f.tasks, "TaskExpired");
      expect(await f.token.balanceOf(f.lenderAddress)).to.equal(before + MODEL_FEE);
      expect(await f.lender.isPending(submitted.taskId)).to.equal(false);
      await expect(f.lender.expireTask(submitted.taskId, submitted.task))
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerUnknownTask")
        .withArgs(submitted.taskId);
    });

    it("nobody but the owner moves the dapp's credits, and whoever closes an expired request gains nothing", async function () {
      const f = await loadFixture(lenderFixture);
      await expect(f.lender.connect(f.stranger).withdrawCredits(f.stranger.address))
        .to.be.revertedWithCustomError(f.lender, "OwnableUnauthorizedAccount")
        .withArgs(f.stranger.address);
      const submitted = await requestScore(f, f.borrower, [1n, 2n, 3n, 4n]);
      await time.increaseTo(BigInt(submitted.task.deadline) + 1n);
      const strangerBefore = await f.token.balanceOf(f.stranger.address);
      const strangerCredits = await f.tasks.creditsOf(f.stranger.address);
      const lenderBefore = await f.token.balanceOf(f.lenderAddress);
      await f.lender.connect(f.stranger).expireTask(submitted.taskId, submitted.task);
      // The whole fee goes back to the requester (the dapp); the caller gets neither OPG nor credits.
      expect(await f.token.balanceOf(f.stranger.address)).to.equal(strangerBefore);
      expect(await f.tasks.creditsOf(f.stranger.address)).to.equal(strangerCredits);
      expect(await f.token.balanceOf(f.lenderAddress)).to.equal(lenderBefore + MODEL_FEE);
      expect(await f.tasks.creditsOf(f.lenderAddress)).to.equal(MODEL_FEE * 9n);
    });

    it("expireTask also closes a task someone already expired in the registry (e.g. opg task refund)", async function () {
      const f = await loadFixture(lenderFixture);
      const submitted = await requestScore(f, f.borrower, [1n, 2n, 3n, 4n]);
      await time.increaseTo(BigInt(submitted.task.deadline) + 1n);
      await f.tasks.connect(f.stranger).expire(submitted.taskId, submitted.task);
      await expect(f.lender.connect(f.stranger).expireTask(submitted.taskId, submitted.task))
        .to.emit(f.lender, "RiskScoreFailed")
        .withArgs(f.borrower.address, submitted.taskId);
      expect(await f.lender.isPending(submitted.taskId)).to.equal(false);
    });

    it("expireTask refuses a verified task: its result is delivered, not a failure", async function () {
      const f = await loadFixture(lenderFixture);
      const submitted = await requestScore(f, f.borrower, [1n, 2n, 3n, 4n]);
      await proveAndSettle(f, submitted);
      await expect(f.lender.expireTask(submitted.taskId, submitted.task))
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerUnknownTask")
        .withArgs(submitted.taskId);
    });

    it("sets the credit line from the verified score of a real proof", async function () {
      const f = await loadFixture(lenderFixture);
      const values = [10n, 20n, -5n, 3n]; // y = 30 - 40 - 25 + 3 + 7 = -25: low risk
      const score = tinyScore(values);
      expect(score).to.equal(-25n);
      const submitted = await requestScore(f, f.borrower, values);

      const node = f.nodes[1];
      const { proof, outputs } = await f.prove(submitted, node);
      const settle = f.tasks
        .connect(node)
        .submitResult(submitted.taskId, submitted.task, submitted.input, outputs, proof);
      await expect(settle)
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(submitted.taskId, node.address, [tinyOutputWord(values)], anyValue, anyValue, anyValue);
      await expect(settle)
        .to.emit(f.tasks, "CallbackExecuted")
        .withArgs(submitted.taskId, f.lenderAddress, true);
      await expect(settle)
        .to.emit(f.lender, "CreditLineSet")
        .withArgs(f.borrower.address, submitted.taskId, score, expectedCreditLine(score));

      expect(await f.lender.lastRiskScore(f.borrower.address)).to.equal(score);
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(125n * CREDIT_PER_UNIT);
      expect(await f.lender.isPending(submitted.taskId)).to.equal(false);
      expect(await f.lender.creditLine(f.otherBorrower.address)).to.equal(0n);
    });

    it("applies scores in request order: an older request settled late never overwrites a newer score", async function () {
      const f = await loadFixture(lenderFixture);
      const older = await requestScore(f, f.borrower, [0n, 0n, 0n, 0n]); // y = 7
      const newer = await requestScore(f, f.borrower, [10n, 20n, -5n, 3n]); // y = -25
      await proveAndSettle(f, newer, f.nodes[0]);
      expect(await f.lender.lastRiskScore(f.borrower.address)).to.equal(-25n);
      const late = f.tasks.connect(f.nodes[1]);
      const { proof, outputs } = await f.prove(older, f.nodes[1]);
      await expect(late.submitResult(older.taskId, older.task, older.input, outputs, proof))
        .to.emit(f.lender, "StaleRiskScoreIgnored")
        .withArgs(f.borrower.address, older.taskId, newer.taskId);
      expect(await f.lender.lastRiskScore(f.borrower.address)).to.equal(-25n);
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(expectedCreditLine(-25n));
      expect(await f.lender.scoreTaskOf(f.borrower.address)).to.equal(newer.taskId);
    });

    it("grants no credit at or above the maximum risk score", async function () {
      const f = await loadFixture(lenderFixture);
      const values = [100n, 0n, 10n, 0n]; // y = 300 + 50 + 7 = 357
      const first = await requestScore(f, f.borrower, [0n, 0n, 0n, 0n]); // y = 7
      const second = await requestScore(f, f.otherBorrower, values);
      await proveAndSettle(f, first, f.nodes[0]);
      await proveAndSettle(f, second, f.nodes[2]);

      expect(await f.lender.lastRiskScore(f.borrower.address)).to.equal(7n);
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(93n * CREDIT_PER_UNIT);
      expect(await f.lender.lastRiskScore(f.otherBorrower.address)).to.equal(357n);
      expect(await f.lender.creditLine(f.otherBorrower.address)).to.equal(0n);
    });

    it("updates a borrower's line on a later score", async function () {
      const f = await loadFixture(lenderFixture);
      await proveAndSettle(f, await requestScore(f, f.borrower, [0n, 0n, 0n, 0n]));
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(93n * CREDIT_PER_UNIT);
      await proveAndSettle(f, await requestScore(f, f.borrower, [40n, 0n, 0n, 0n])); // y = 127
      expect(await f.lender.lastRiskScore(f.borrower.address)).to.equal(127n);
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(0n);
    });

    it("reverts with OwnableUnauthorizedAccount when anyone but the owner requests a score", async function () {
      const f = await loadFixture(lenderFixture);
      await expect(
        f.lender
          .connect(f.stranger)
          .requestRiskScore(
            f.borrower.address,
            tinyInputValues([1n, 2n, 3n, 4n]),
            MODEL_FEE,
            await deadline(),
          ),
      )
        .to.be.revertedWithCustomError(f.lender, "OwnableUnauthorizedAccount")
        .withArgs(f.stranger.address);
    });
  });

  describe("onInferenceResult", function () {
    it("reverts with InferenceConsumerNotRegistry for any caller but the registry", async function () {
      const f = await loadFixture(lenderFixture);
      const submitted = await requestScore(f, f.borrower, [1n, 2n, 3n, 4n]);
      // Even with the right task id and a well-formed output word, a direct call is refused.
      for (const caller of [f.stranger, f.lenderOwner, f.nodes[0]]) {
        await expect(
          f.lender
            .connect(caller)
            .onInferenceResult(submitted.taskId, f.modelId, [tinyOutputWord([-100n, 0n, 0n, 0n])]),
        )
          .to.be.revertedWithCustomError(f.lender, "InferenceConsumerNotRegistry")
          .withArgs(caller.address);
      }
      expect(await f.lender.isPending(submitted.taskId)).to.equal(true);
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(0n);
    });

    it("reverts with InferenceConsumerUnknownTask for a task it did not request, or one already answered", async function () {
      const f = await loadFixture(lenderFixture);
      const submitted = await requestScore(f, f.borrower, [0n, 0n, 0n, 0n]);
      await proveAndSettle(f, submitted);

      await impersonateAccount(f.tasksAddress);
      await setBalance(f.tasksAddress, ethers.parseEther("1"));
      const registry = await ethers.getSigner(f.tasksAddress);
      const output = [tinyOutputWord([-100n, 0n, 0n, 0n])];
      for (const taskId of [999n, submitted.taskId]) {
        await expect(f.lender.connect(registry).onInferenceResult(taskId, f.modelId, output))
          .to.be.revertedWithCustomError(f.lender, "InferenceConsumerUnknownTask")
          .withArgs(taskId);
      }
      expect(await f.lender.lastRiskScore(f.borrower.address)).to.equal(7n);
    });

    it("ignores a task someone else submitted naming it as callback: settled, callback recorded as failed", async function () {
      const f = await loadFixture(lenderFixture);
      const submitted = await f.submit([-100n, 0n, 0n, 0n], {
        callback: f.lenderAddress,
        callbackGasLimit: Number(LENDER_CALLBACK_GAS),
      });
      const receipt = await proveAndSettle(f, submitted);
      expect(registryEvents(f, receipt, "TaskVerified")).to.have.length(1);
      expect(registryEvents(f, receipt, "CallbackExecuted").map((e) => e.success)).to.deep.equal([false]);
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(0n);
    });
  });

  describe("deliverResult", function () {
    /** A ToggleConsumer whose hook fails, with one task on `values` settled by node 0 (its callback failed). */
    async function failedCallback(f: Fixture, values: bigint[]) {
      const consumer = await new ToggleConsumer__factory(f.deployer).deploy(
        f.tasksAddress,
        await f.token.getAddress(),
      );
      const consumerAddress = await consumer.getAddress();
      await f.token.connect(f.treasury).transfer(consumerAddress, MODEL_FEE * 2n);
      await consumer.setFailing(true);
      const receipt = await (
        await consumer.request(f.modelId, tinyInputValues(values), MODEL_FEE, await deadline(), 100_000)
      ).wait();
      const submitted = f.submittedFrom(receipt!.logs);
      const settled = await proveAndSettle(f, submitted);
      expect(registryEvents(f, settled, "CallbackExecuted")[0].success).to.equal(false);
      expect(await f.tasks.taskStatus(submitted.taskId)).to.equal(3n); // settled all the same
      expect(await consumer.isPending(submitted.taskId)).to.equal(true);
      return { consumer, submitted, settled };
    }

    it("delivers a result whose callback failed, on anyone's call, with the result of its TaskVerified event", async function () {
      const f = await loadFixture(lenderFixture);
      const values = [3n, -1n, 4n, 1n];
      const { consumer, submitted, settled } = await failedCallback(f, values);
      // The result as the registry's TaskVerified event gives it, confirmed against the hash it keeps.
      const read = (await readVerifiedResult(f.tasks, submitted.taskId))!;
      expect(read.transactionHash).to.equal(settled.hash);
      const result = asResult(read);
      expect(result).to.deep.equal({
        node: f.nodes[0].address,
        settledBlock: BigInt(settled.blockNumber),
        outputs: [tinyOutputWord(values)],
      });
      expect(await f.tasks.isVerifiedResult(submitted.taskId, result)).to.equal(true);

      // Still failing: the hook's error comes through and the task stays pending.
      await expect(
        consumer.connect(f.stranger).deliverResult(submitted.taskId, result),
      ).to.be.revertedWithCustomError(consumer, "ToggleConsumerFailing");
      expect(await consumer.isPending(submitted.taskId)).to.equal(true);
      await consumer.setFailing(false);
      await consumer.connect(f.stranger).deliverResult(submitted.taskId, result);
      expect(await consumer.lastTaskId()).to.equal(submitted.taskId);
      // Decoded from the verified words: signed fixed-point values and the model's scale.
      expect(await consumer.lastValues()).to.deep.equal([tinyOutputWord(values) - TINY_OUTPUT_OFFSET]);
      expect(await consumer.lastScaleBits()).to.equal(0n);
      expect(await consumer.isPending(submitted.taskId)).to.equal(false);
      await expect(consumer.deliverResult(submitted.taskId, result))
        .to.be.revertedWithCustomError(consumer, "InferenceConsumerUnknownTask")
        .withArgs(submitted.taskId);
    });

    it("reverts with InferenceConsumerNotVerified for any result but the verified one, and delivers that one exactly once", async function () {
      const f = await loadFixture(lenderFixture);
      const values = [3n, -1n, 4n, 1n];
      const { consumer, submitted } = await failedCallback(f, values);
      await consumer.setFailing(false);
      const result = await verifiedResult(f, submitted.taskId);
      const word = result.outputs[0];
      const forged = [
        // Altered outputs: another value in the same lane, a flipped high bit, one word too many or too few.
        { ...result, outputs: [word + 1n] },
        { ...result, outputs: [word ^ (1n << 200n)] },
        { ...result, outputs: [word, 0n] },
        { ...result, outputs: [] },
        // The right outputs credited to another node, or dated to another block.
        { ...result, node: f.nodes[1].address },
        { ...result, settledBlock: result.settledBlock + 1n },
        { ...result, settledBlock: result.settledBlock - 1n },
      ];
      for (const wrong of forged) {
        expect(await f.tasks.isVerifiedResult(submitted.taskId, wrong)).to.equal(false);
        await expect(consumer.connect(f.stranger).deliverResult(submitted.taskId, wrong))
          .to.be.revertedWithCustomError(consumer, "InferenceConsumerNotVerified")
          .withArgs(submitted.taskId);
      }
      // Nothing reached the dapp, and the task still waits for its one true result.
      expect(await consumer.lastTaskId()).to.equal(0n);
      expect(await consumer.lastValues()).to.deep.equal([]);
      expect(await consumer.isPending(submitted.taskId)).to.equal(true);

      const delivered = await (
        await consumer.connect(f.stranger).deliverResult(submitted.taskId, result)
      ).wait();
      expect(await consumer.lastTaskId()).to.equal(submitted.taskId);
      expect(await consumer.lastValues()).to.deep.equal([word - TINY_OUTPUT_OFFSET]);
      expect(await consumer.isPending(submitted.taskId)).to.equal(false);
      // Delivering touches nothing in the registry: the result stays verified, for anyone to check again.
      expect(delivered!.logs.filter((log) => log.address === f.tasksAddress)).to.have.length(0);
      expect(await f.tasks.isVerifiedResult(submitted.taskId, result)).to.equal(true);

      // Once delivered, neither the same result nor a forged one is taken again (the hook never runs twice).
      await consumer.setFailing(true);
      for (const again of [result, forged[0]]) {
        await expect(consumer.deliverResult(submitted.taskId, again))
          .to.be.revertedWithCustomError(consumer, "InferenceConsumerUnknownTask")
          .withArgs(submitted.taskId);
      }
      expect(await consumer.lastTaskId()).to.equal(submitted.taskId);
    });

    it("refuses a task it did not request, and one the registry has not verified (open, then expired)", async function () {
      const f = await loadFixture(lenderFixture);
      const values = [1n, 2n, 3n, 4n];
      // A well-formed result: the output the task would have, credited to a staked node at the current block.
      const plausible = async () => ({
        node: f.nodes[0].address,
        settledBlock: BigInt(await ethers.provider.getBlockNumber()),
        outputs: [tinyOutputWord(values)],
      });
      await expect(f.lender.deliverResult(999n, await plausible()))
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerUnknownTask")
        .withArgs(999n);
      const submitted = await requestScore(f, f.borrower, values);
      expect(await f.tasks.taskStatus(submitted.taskId)).to.equal(1n); // Open
      expect(await readVerifiedResult(f.tasks, submitted.taskId)).to.equal(null);
      expect(await f.tasks.isVerifiedResult(submitted.taskId, await plausible())).to.equal(false);
      await expect(f.lender.connect(f.stranger).deliverResult(submitted.taskId, await plausible()))
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerNotVerified")
        .withArgs(submitted.taskId);
      expect(await f.lender.isPending(submitted.taskId)).to.equal(true);

      // Expired in the registry (but not yet closed in the dapp): still no verified result to deliver.
      await time.increaseTo(BigInt(submitted.task.deadline) + 1n);
      await f.tasks.connect(f.stranger).expire(submitted.taskId, submitted.task);
      expect(await readVerifiedResult(f.tasks, submitted.taskId)).to.equal(null);
      await expect(f.lender.connect(f.stranger).deliverResult(submitted.taskId, await plausible()))
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerNotVerified")
        .withArgs(submitted.taskId);
      expect(await f.lender.isPending(submitted.taskId)).to.equal(true);
      expect(await f.lender.creditLine(f.borrower.address)).to.equal(0n);
      // The dapp closes it as a failure instead.
      await expect(f.lender.expireTask(submitted.taskId, submitted.task))
        .to.emit(f.lender, "RiskScoreFailed")
        .withArgs(f.borrower.address, submitted.taskId);
    });

    it("refuses another task's verified result", async function () {
      const f = await loadFixture(lenderFixture);
      const first = await requestScore(f, f.borrower, [1n, 2n, 3n, 4n]);
      const second = await requestScore(f, f.otherBorrower, [4n, 3n, 2n, 1n]);
      await proveAndSettle(f, first);
      const firstResult = await verifiedResult(f, first.taskId);
      expect(await f.lender.isPending(first.taskId)).to.equal(false); // delivered by its callback
      // The second is still open: the first's result is no result of it.
      await expect(f.lender.deliverResult(second.taskId, firstResult))
        .to.be.revertedWithCustomError(f.lender, "InferenceConsumerNotVerified")
        .withArgs(second.taskId);
      await proveAndSettle(f, second);
      expect(await f.lender.isPending(second.taskId)).to.equal(false);
      expect(await f.lender.lastRiskScore(f.otherBorrower.address)).to.equal(tinyScore([4n, 3n, 2n, 1n]));
    });
  });

  describe("callback faults never block settlement", function () {
    /** Settle one task with `callback` and `gasLimit` by node 0; check the settlement itself is complete. */
    async function settleWithCallback(f: Fixture, callback: string, gasLimit: number) {
      const node = f.nodes[0];
      const values = [3n, 1n, 4n, 1n];
      const creditsBefore = await f.tasks.creditsOf(node.address);
      const submitted = await f.submit(values, { callback, callbackGasLimit: gasLimit });
      const receipt = await proveAndSettle(f, submitted, node);

      const [verified] = registryEvents(f, receipt, "TaskVerified");
      expect(verified.taskId).to.equal(submitted.taskId);
      expect(verified.nodeFee + verified.royalty + verified.protocolFee).to.equal(MODEL_FEE);
      expect(await f.tasks.taskStatus(submitted.taskId)).to.equal(3n); // Verified
      expect((await verifiedResult(f, submitted.taskId)).outputs).to.deep.equal([tinyOutputWord(values)]);
      expect(await f.tasks.creditsOf(node.address)).to.equal(creditsBefore + verified.nodeFee);
      return { receipt, submitted, callbacks: registryEvents(f, receipt, "CallbackExecuted") };
    }

    /** Gas of a settlement without callback, after a first one warmed the node's and receivers' accounts. */
    async function baselineGas(f: Fixture) {
      await settleWithCallback(f, ethers.ZeroAddress, 0);
      const { receipt } = await settleWithCallback(f, ethers.ZeroAddress, 0);
      return receipt.gasUsed;
    }

    const faults: [string, (f: Fixture) => Promise<string>][] = [
      [
        "a callback that reverts",
        async (f) => (await new RevertingCallback__factory(f.deployer).deploy()).getAddress(),
      ],
      [
        "a callback that burns all its gas",
        async (f) => (await new GasBurningCallback__factory(f.deployer).deploy()).getAddress(),
      ],
      [
        "a callback that reverts with 1 MB (runs out of gas building it)",
        async (f) => (await new ReturnBombCallback__factory(f.deployer).deploy()).getAddress(),
      ],
      [
        "a callback that returns a real 416 KB return bomb",
        async () => (await deployAttack("LargeRevertCallback", [416_000])).getAddress(),
      ],
    ];
    for (const [what, deploy] of faults) {
      it(`settles, credits the node and records the failure of ${what}`, async function () {
        const f = await loadFixture(lenderFixture);
        const baseline = await baselineGas(f);
        const callback = await deploy(f);
        const gasLimit = 450_000;
        const { receipt, submitted, callbacks } = await settleWithCallback(f, callback, gasLimit);
        expect(callbacks.map((e) => [e.taskId, e.callback, e.success])).to.deep.equal([
          [submitted.taskId, callback, false],
        ]);
        // Whatever the callback does costs the node at most the gas limit the requester chose: the
        // registry copies no return data.
        expect(receipt.gasUsed - baseline).to.be.lte(BigInt(gasLimit) + CALLBACK_OVERHEAD_GAS);
      });
    }

    it("the 416 KB return bomb is real: called directly within the gas limit it reverts with all its data", async function () {
      await loadFixture(lenderFixture);
      const bomb = await deployAttack("LargeRevertCallback", [416_000]);
      const data = bomb.interface.encodeFunctionData("onInferenceResult", [1n, 1n, [1n]]);
      const error = await ethers.provider
        .call({ to: await bomb.getAddress(), data, gasLimit: 450_000 })
        .then(() => undefined)
        .catch((e: { data?: string }) => e);
      expect(error?.data).to.have.length(2 + 2 * 416_000);
    });

    it("records a successful callback with the registry's outputs (RecordingCallback)", async function () {
      const f = await loadFixture(lenderFixture);
      const recorder = await new RecordingCallback__factory(f.deployer).deploy();
      const recorderAddress = await recorder.getAddress();
      const { submitted, callbacks } = await settleWithCallback(f, recorderAddress, 100_000);
      expect(callbacks.map((e) => e.success)).to.deep.equal([true]);
      expect(await recorder.lastTaskId()).to.equal(submitted.taskId);
      expect(await recorder.lastModelId()).to.equal(f.modelId);
      expect(await recorder.lastOutputs()).to.deep.equal([tinyOutputWord([3n, 1n, 4n, 1n])]);
    });

    it("reverts with TaskRegistryInsufficientCallbackGas when the node sends too little gas for the callback", async function () {
      const f = await loadFixture(lenderFixture);
      const baseline = await baselineGas(f);
      const node = f.nodes[0];
      const callback = await (await new RecordingCallback__factory(f.deployer).deploy()).getAddress();
      const submitted = await f.submit([1n, 2n, 3n, 4n], { callback, callbackGasLimit: MAX_CALLBACK_GAS });
      const { proof, outputs } = await f.prove(submitted, node);
      const needed = BigInt(MAX_CALLBACK_GAS) + BigInt(MAX_CALLBACK_GAS) / 63n + 10_000n;
      await expect(
        f.tasks
          .connect(node)
          .submitResult(submitted.taskId, submitted.task, submitted.input, outputs, proof, {
            gasLimit: baseline + 100_000n,
          }),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInsufficientCallbackGas")
        .withArgs(submitted.taskId, anyValue, needed);
      expect(await f.tasks.taskStatus(submitted.taskId)).to.equal(1n); // still Open: the node can retry
      expect(await readVerifiedResult(f.tasks, submitted.taskId)).to.equal(null);
      // With enough gas the same proof settles, callback included.
      await expect(
        f.tasks.connect(node).submitResult(submitted.taskId, submitted.task, submitted.input, outputs, proof),
      )
        .to.emit(f.tasks, "CallbackExecuted")
        .withArgs(submitted.taskId, callback, true);
    });
  });

  describe("re-entrancy", function () {
    it("records a callback that re-enters the registry as failed, and settlement stands", async function () {
      const f = await loadFixture(lenderFixture);
      const node = f.nodes[0];
      // The re-entry sweeps the protocol's share of the node's fees to the treasury: anyone may call it, and
      // the settlement in progress has already credited that share when the callback runs.
      const data = f.tasks.interface.encodeFunctionData("withdrawProtocolFees", [[node.address]]);
      const attacker = await deployAttack("ReentrantCallback", [f.tasksAddress, data, true]);
      const attackerAddress = await attacker.getAddress();

      const submitted = await f.submit([1n, 2n, 3n, 4n], {
        callback: attackerAddress,
        callbackGasLimit: 200_000,
      });
      const receipt = await proveAndSettle(f, submitted, node);
      expect(registryEvents(f, receipt, "TaskVerified")).to.have.length(1);
      expect(
        registryEvents(f, receipt, "CallbackExecuted").map((e) => [e.callback, e.success]),
      ).to.deep.equal([[attackerAddress, false]]);
      expect(registryEvents(f, receipt, "ProtocolFeesWithdrawn")).to.have.length(0);
      const [verified] = registryEvents(f, receipt, "TaskVerified");
      expect(verified.protocolFee).to.be.gt(0n);
      expect(await f.tasks.protocolFeesOf(node.address)).to.equal(verified.protocolFee);
      const treasuryBefore = await f.token.balanceOf(f.treasury.address);

      // The same call outside a callback goes through: the refusal came from the settlement in progress.
      await attacker.getFunction("reenter")();
      expect(await attacker.getFunction("successfulCalls")()).to.equal(1n);
      expect(await f.tasks.protocolFeesOf(node.address)).to.equal(0n);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryBefore + verified.protocolFee);
    });

    it("refuses the re-entrant call with ReentrancyGuardReentrantCall", async function () {
      const f = await loadFixture(lenderFixture);
      const node = f.nodes[0];
      const data = f.tasks.interface.encodeFunctionData("withdrawProtocolFees", [[node.address]]);
      // This one catches the refusal, so the callback succeeds and keeps the reason.
      const attacker = await deployAttack("ReentrantCallback", [f.tasksAddress, data, false]);
      const attackerAddress = await attacker.getAddress();

      const submitted = await f.submit([1n, 2n, 3n, 4n], {
        callback: attackerAddress,
        callbackGasLimit: 200_000,
      });
      const receipt = await proveAndSettle(f, submitted, node);
      expect(registryEvents(f, receipt, "CallbackExecuted").map((e) => e.success)).to.deep.equal([true]);
      expect(await attacker.getFunction("lastError")()).to.equal(
        f.tasks.interface.getError("ReentrancyGuardReentrantCall")!.selector,
      );
      expect(await attacker.getFunction("successfulCalls")()).to.equal(0n);
    });
  });
});
