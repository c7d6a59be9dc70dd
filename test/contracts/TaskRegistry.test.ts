import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";
import { expect } from "chai";
import { ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { expectGasAtMost, recordGas } from "../helpers/gas-snapshot";
import {
  CLAIM_COLLATERAL,
  CLAIM_WINDOW,
  MODEL_FEE,
  NODE_STAKE,
  defaultModelSpec,
  marketFixture,
  type SubmittedTask,
} from "../helpers/market-fixture";
import { pinNextBlockTime } from "../helpers/chain-time";
import { tinyInputWords, tinyOutputWord } from "../helpers/tiny-circuit";

const FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const Status = { None: 0n, Open: 1n, Claimed: 2n, Verified: 3n, Expired: 4n };
const BPS = 10_000n;
const PROTOCOL_BPS = 1000n;
const ROYALTY_BPS = 1000n;

type Fixture = Awaited<ReturnType<typeof marketFixture>>;

/** A deadline `seconds` after the (pinned) time of the next block: robust to slow machines. */
async function deadlineIn(seconds: number) {
  return Number(await pinNextBlockTime()) + seconds;
}

function request(f: Fixture, overrides: Partial<Record<string, unknown>> = {}, deadline = 0) {
  return {
    modelId: f.modelId,
    input: tinyInputWords([1n, 2n, 3n, 4n]),
    inputDataHash: ethers.ZeroHash,
    fee: MODEL_FEE,
    deadline,
    callback: ethers.ZeroAddress,
    callbackGasLimit: 0,
    ...overrides,
  };
}

async function claimed(f: Fixture, node: HardhatEthersSigner = f.nodes[0], values?: bigint[]) {
  const s = await f.submit(values);
  await f.tasks.connect(node).claimTask(s.taskId, s.task);
  return s;
}

async function settle(f: Fixture, s: SubmittedTask, node: HardhatEthersSigner) {
  const { proof, outputs } = await f.prove(s, node);
  return f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof);
}

describe("TaskRegistry", function () {
  describe("submitTask", function () {
    it("escrows the fee and emits everything a node needs", async function () {
      const f = await loadFixture(marketFixture);
      const deadline = await deadlineIn(3600);
      const req = request(f, {}, deadline);
      const before = await f.token.balanceOf(f.requester.address);
      await expect(f.tasks.connect(f.requester).submitTask(req))
        .to.emit(f.tasks, "TaskSubmitted")
        .withArgs(
          1n,
          f.modelId,
          f.requester.address,
          [
            f.requester.address,
            f.modelId,
            MODEL_FEE,
            deadline,
            (await f.models.taskTerms(f.modelId)).verificationKey,
            f.modelOwner.address,
            ethers.ZeroAddress,
            0n,
            1n,
            PROTOCOL_BPS,
            ROYALTY_BPS,
            ethers.solidityPackedKeccak256(
              req.input.map(() => "uint256"),
              req.input,
            ),
            ethers.ZeroHash,
            1n, // mode: ZK
            0n,
            0n,
          ],
          req.input,
        );
      expect(await f.token.balanceOf(f.requester.address)).to.equal(before - MODEL_FEE);
      expect(await f.token.balanceOf(f.tasksAddress)).to.equal(MODEL_FEE);
      expect(await f.tasks.taskStatus(1n)).to.equal(Status.Open);
      expect(await f.tasks.taskCount()).to.equal(1n);
    });

    it("stores a commitment that the event's fields rebuild", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task)).to.emit(f.tasks, "TaskClaimed");
      expect(await f.tasks.hashTask(s.task)).to.not.equal(ethers.ZeroHash);
    });

    it("takes the fee from prepaid credits when they cover it, and from the wallet otherwise", async function () {
      const f = await loadFixture(marketFixture);
      await f.submit(); // first use of the registry's balance slot, so the gas figures are steady-state
      await recordGas(
        "TaskRegistry.submitTask (wallet transfer, 4 input words)",
        f.tasks.connect(f.requester).submitTask(request(f, {}, await deadlineIn(3600))),
      );
      await expect(f.tasks.connect(f.requester).deposit(MODEL_FEE * 3n))
        .to.emit(f.tasks, "Deposited")
        .withArgs(f.requester.address, MODEL_FEE * 3n);
      const wallet = await f.token.balanceOf(f.requester.address);
      const gas = await recordGas(
        "TaskRegistry.submitTask (prepaid, 4 input words)",
        f.tasks.connect(f.requester).submitTask(request(f, {}, await deadlineIn(3600))),
      );
      expectGasAtMost(gas, 90_000, "submitTask (prepaid, 4 input words)");
      expect(await f.token.balanceOf(f.requester.address)).to.equal(wallet);
      expect(await f.tasks.creditsOf(f.requester.address)).to.equal(MODEL_FEE * 2n);
      // A fee above the credits is pulled from the wallet in full; the credits stay.
      await f.tasks
        .connect(f.requester)
        .submitTask(request(f, { fee: MODEL_FEE * 5n }, await deadlineIn(3600)));
      expect(await f.token.balanceOf(f.requester.address)).to.equal(wallet - MODEL_FEE * 5n);
      expect(await f.tasks.creditsOf(f.requester.address)).to.equal(MODEL_FEE * 2n);
    });

    it("accepts an EIP-2612 permit instead of an approval", async function () {
      const f = await loadFixture(marketFixture);
      const payer = f.stranger;
      await f.token.connect(f.treasury).transfer(payer.address, MODEL_FEE);
      const permitDeadline = await deadlineIn(3600);
      const { chainId } = await ethers.provider.getNetwork();
      const signature = ethers.Signature.from(
        await payer.signTypedData(
          { name: "OpenGradient", version: "1", chainId, verifyingContract: await f.token.getAddress() },
          {
            Permit: [
              { name: "owner", type: "address" },
              { name: "spender", type: "address" },
              { name: "value", type: "uint256" },
              { name: "nonce", type: "uint256" },
              { name: "deadline", type: "uint256" },
            ],
          },
          {
            owner: payer.address,
            spender: f.tasksAddress,
            value: MODEL_FEE,
            nonce: 0n,
            deadline: permitDeadline,
          },
        ),
      );
      await expect(
        f.tasks
          .connect(payer)
          .submitTaskWithPermit(
            request(f, {}, await deadlineIn(3600)),
            permitDeadline,
            signature.v,
            signature.r,
            signature.s,
          ),
      ).to.emit(f.tasks, "TaskSubmitted");
      expect(await f.token.balanceOf(payer.address)).to.equal(0n);
    });

    describe("reverts, and takes nothing, when", function () {
      async function expectNothingTaken(f: Fixture, tx: Promise<unknown>, error: string, args?: unknown[]) {
        // The transaction is already on its way: mark its rejection handled before awaiting anything else,
        // or a fast revert surfaces as an uncaught error. It reverts, so the balance read is the same
        // whether it lands before or after it.
        tx.catch(() => undefined);
        const before = await f.token.balanceOf(f.requester.address);
        const assertion = expect(tx).to.be.revertedWithCustomError(f.tasks, error);
        if (args) await assertion.withArgs(...args);
        else await assertion;
        expect(await f.token.balanceOf(f.requester.address)).to.equal(before);
        expect(await f.tasks.taskCount()).to.equal(0n);
      }

      it("the model is unknown", async function () {
        const f = await loadFixture(marketFixture);
        await expect(
          f.tasks.connect(f.requester).submitTask(request(f, { modelId: 9n }, await deadlineIn(60))),
        )
          .to.be.revertedWithCustomError(f.models, "ModelRegistryUnknownModel")
          .withArgs(9n);
      });

      it("the model is deactivated", async function () {
        const f = await loadFixture(marketFixture);
        await f.models.connect(f.modelOwner).setActive(f.modelId, false);
        const tx = f.tasks.connect(f.requester).submitTask(request(f, {}, await deadlineIn(60)));
        await expectNothingTaken(f, tx, "TaskRegistryModelUnavailable", [f.modelId]);
      });

      it("the model does not offer the requested verification mode", async function () {
        const f = await loadFixture(marketFixture);
        const spec = { ...defaultModelSpec(f.modelOwner.address), verificationModes: 2 };
        await f.models.connect(f.modelOwner).registerModel(spec, []);
        const req = request(f, { modelId: 2n }, await deadlineIn(60));
        const tx = f.tasks.connect(f.requester).submitTaskInMode(req, 1);
        await expectNothingTaken(f, tx, "TaskRegistryModeUnavailable", [2n, 1n]);
        const both = f.tasks.connect(f.requester).submitTaskInMode(req, 3);
        await expectNothingTaken(f, both, "TaskRegistryModeUnavailable", [2n, 3n]);
      });

      it("the fee does not fit 96 bits", async function () {
        const f = await loadFixture(marketFixture);
        const fee = 1n << 96n;
        const tx = f.tasks.connect(f.requester).submitTask(request(f, { fee }, await deadlineIn(60)));
        await expectNothingTaken(f, tx, "TaskRegistryInvalidFee", [fee, MODEL_FEE]);
      });

      it("the fee is below the model's", async function () {
        const f = await loadFixture(marketFixture);
        const tx = f.tasks
          .connect(f.requester)
          .submitTask(request(f, { fee: MODEL_FEE - 1n }, await deadlineIn(60)));
        await expectNothingTaken(f, tx, "TaskRegistryInvalidFee", [MODEL_FEE - 1n, MODEL_FEE]);
      });

      it("the deadline is past or beyond the longest task duration", async function () {
        const f = await loadFixture(marketFixture);
        const now = await time.latest();
        await expectNothingTaken(
          f,
          f.tasks.connect(f.requester).submitTask(request(f, {}, now)),
          "TaskRegistryInvalidDeadline",
        );
        await expectNothingTaken(
          f,
          f.tasks.connect(f.requester).submitTask(request(f, {}, now + 8 * 24 * 3600)),
          "TaskRegistryInvalidDeadline",
        );
      });

      it("the input has the wrong number of words", async function () {
        const f = await loadFixture(marketFixture);
        const tx = f.tasks
          .connect(f.requester)
          .submitTask(request(f, { input: [1n, 2n, 3n] }, await deadlineIn(60)));
        await expectNothingTaken(f, tx, "TaskRegistryInvalidInput", [f.modelId, 3n, 4n]);
      });

      it("an inline input carries a data-layer hash", async function () {
        const f = await loadFixture(marketFixture);
        const tx = f.tasks
          .connect(f.requester)
          .submitTask(request(f, { inputDataHash: ethers.id("blob") }, await deadlineIn(60)));
        await expectNothingTaken(f, tx, "TaskRegistryInvalidInput", [f.modelId, 4n, 4n]);
      });

      it("an input word is not a field element", async function () {
        const f = await loadFixture(marketFixture);
        const input = tinyInputWords([1n, 2n]);
        input[1] = FIELD;
        const tx = f.tasks.connect(f.requester).submitTask(request(f, { input }, await deadlineIn(60)));
        await expectNothingTaken(f, tx, "TaskRegistryUnprovableInput", [1n, FIELD]);
      });

      // The attack: a requester sends words no proof can match, every claimer's proof fails, its collateral
      // is slashed. The registry refuses such words at submission, so no node can be made to claim them.
      it("an input word has a bit set above its packed values", async function () {
        const f = await loadFixture(marketFixture);
        const input = tinyInputWords([1n, 2n, 3n, 4n]);
        input[3] |= 1n << 240n; // 6 values of 40 bits fill bits 0..239
        const tx = f.tasks.connect(f.requester).submitTask(request(f, { input }, await deadlineIn(60)));
        await expectNothingTaken(f, tx, "TaskRegistryUnprovableInput", [3n, input[3]]);
      });

      it("an input value is outside the circuit's signed input range", async function () {
        const f = await loadFixture(marketFixture);
        for (const value of [1n << 15n, -(1n << 15n) - 1n, (1n << 39n) - 1n, -(1n << 39n)]) {
          // Canonical 40-bit packing, but beyond the circuit's 16-bit range check.
          const values = Array<bigint>(24).fill(0n);
          values[7] = value;
          const input = tinyInputWords(values);
          const tx = f.tasks.connect(f.requester).submitTask(request(f, { input }, await deadlineIn(60)));
          await expectNothingTaken(f, tx, "TaskRegistryUnprovableInput", [1n, input[1]]);
        }
      });

      it("the callback is not a contract or has no gas", async function () {
        const f = await loadFixture(marketFixture);
        const eoa = f.tasks
          .connect(f.requester)
          .submitTask(
            request(f, { callback: f.stranger.address, callbackGasLimit: 100_000 }, await deadlineIn(60)),
          );
        await expectNothingTaken(f, eoa, "TaskRegistryInvalidCallback", [f.stranger.address, 100_000n]);
        const noGas = f.tasks
          .connect(f.requester)
          .submitTask(request(f, { callback: f.tasksAddress, callbackGasLimit: 0 }, await deadlineIn(60)));
        await expectNothingTaken(f, noGas, "TaskRegistryInvalidCallback", [f.tasksAddress, 0n]);
      });

      it("the callback gas limit is above the cap", async function () {
        const f = await loadFixture(marketFixture);
        const tx = f.tasks
          .connect(f.requester)
          .submitTask(
            request(f, { callback: f.stranger.address, callbackGasLimit: 500_001 }, await deadlineIn(60)),
          );
        await expectNothingTaken(f, tx, "TaskRegistryCallbackGasTooHigh", [500_001n, 500_000n]);
      });
    });
  });

  describe("submitTasks", function () {
    it("submits a batch with one transfer of the total fee", async function () {
      const f = await loadFixture(marketFixture);
      const deadline = await deadlineIn(3600);
      const before = await f.token.balanceOf(f.requester.address);
      const batch = [
        request(f, {}, deadline),
        request(f, { fee: MODEL_FEE * 2n }, deadline),
        request(f, {}, deadline),
      ];
      const ids = await f.tasks.connect(f.requester).submitTasks.staticCall(batch);
      expect(ids).to.deep.equal([1n, 2n, 3n]);
      await f.tasks.connect(f.requester).submitTasks(batch);
      expect(await f.token.balanceOf(f.requester.address)).to.equal(before - MODEL_FEE * 4n);
      expect(await f.tasks.taskStatus(3n)).to.equal(Status.Open);
    });

    it("reverts on an empty or oversized batch", async function () {
      const f = await loadFixture(marketFixture);
      await expect(f.tasks.connect(f.requester).submitTasks([]))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidBatch")
        .withArgs(0n);
      const one = request(f, {}, await deadlineIn(3600));
      await expect(f.tasks.connect(f.requester).submitTasks(Array(33).fill(one)))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidBatch")
        .withArgs(33n);
    });
  });

  describe("claimTask", function () {
    it("locks collateral from the node's stake for the claim window", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      const node = f.nodes[0];
      // The claim's block time is pinned: on a loaded machine the wall clock runs ahead of latest + 1.
      const expectedExpiry = Number(await pinNextBlockTime()) + CLAIM_WINDOW;
      const tx = f.tasks.connect(node).claimTask(s.taskId, s.task);
      await expect(tx)
        .to.emit(f.tasks, "TaskClaimed")
        .withArgs(s.taskId, node.address, expectedExpiry, CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
      expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([node.address, BigInt(expectedExpiry)]);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Claimed);
      const s2 = await f.submit();
      await recordGas("TaskRegistry.claimTask", f.tasks.connect(node).claimTask(s2.taskId, s2.task));
    });

    it("ends the claim window at the deadline when that comes first", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit(undefined, { deadlineIn: 120 });
      await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task))
        .to.emit(f.tasks, "TaskClaimed")
        .withArgs(s.taskId, f.nodes[0].address, s.task.deadline, CLAIM_COLLATERAL);
    });

    it("reverts for a node that is not eligible", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      await expect(f.tasks.connect(f.stranger).claimTask(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNodeNotEligible")
        .withArgs(f.stranger.address);
    });

    it("reverts for a task that does not match the commitment", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, { ...s.task, fee: MODEL_FEE * 2n }))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryTaskMismatch")
        .withArgs(s.taskId);
    });

    it("reverts for an unknown task", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      await expect(f.tasks.connect(f.nodes[0]).claimTask(42n, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(42n, Status.None);
    });

    it("reverts while another node's claim is running", async function () {
      const f = await loadFixture(marketFixture);
      const s = await claimed(f);
      const [, expiry] = await f.tasks.claimOf(s.taskId);
      await expect(f.tasks.connect(f.nodes[1]).claimTask(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryAlreadyClaimed")
        .withArgs(s.taskId, f.nodes[0].address, expiry);
    });

    it("reverts once the deadline has passed", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit(undefined, { deadlineIn: 100 });
      await time.increaseTo(s.task.deadline);
      await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryDeadlinePassed")
        .withArgs(s.taskId, s.task.deadline, anyValue);
    });

    it("lets another node take over an expired claim and slashes the first claimer's collateral to the treasury", async function () {
      const f = await loadFixture(marketFixture);
      const [first, second] = f.nodes;
      const s = await claimed(f, first);
      await time.increase(CLAIM_WINDOW + 1);
      const requesterBefore = await f.token.balanceOf(f.requester.address);
      const treasuryBefore = await f.token.balanceOf(f.treasury.address);
      await expect(f.tasks.connect(second).claimTask(s.taskId, s.task))
        .to.emit(f.tasks, "TaskClaimAbandoned")
        .withArgs(s.taskId, first.address, CLAIM_COLLATERAL)
        .and.to.emit(f.staking, "NodeSlashed")
        .withArgs(
          first.address,
          f.tasksAddress,
          await f.tasks.SLASH_REASON_CLAIM_ABANDONED(),
          CLAIM_COLLATERAL,
          ethers.ZeroAddress,
          0n,
        )
        .and.to.emit(f.tasks, "TaskClaimed");
      const firstInfo = await f.staking.nodeInfo(first.address);
      expect(firstInfo.bonded).to.equal(NODE_STAKE - CLAIM_COLLATERAL);
      expect(firstInfo.locked).to.equal(0n);
      expect((await f.staking.nodeInfo(second.address)).locked).to.equal(CLAIM_COLLATERAL);
      // Neither the requester nor the model owner profits from a lapsed claim: all of it goes to the treasury.
      expect(await f.token.balanceOf(f.requester.address)).to.equal(requesterBefore);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryBefore + CLAIM_COLLATERAL);
      // The new claimer settles; the first cannot.
      const { proof, outputs } = await f.prove(s, first);
      await expect(f.tasks.connect(first).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotClaimer")
        .withArgs(s.taskId, first.address, second.address);
      await expect(settle(f, s, second)).to.emit(f.tasks, "TaskVerified");
    });
  });

  describe("submitResult", function () {
    it("verifies a real proof, stores the result, splits the fee and records the collateral release", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const values = [5n, -3n, 2n, 10n];
      const s = await claimed(f, node, values);
      const { proof, outputs } = await f.prove(s, node);
      expect(outputs).to.deep.equal([tinyOutputWord(values)]);
      const protocolFee = (MODEL_FEE * PROTOCOL_BPS) / BPS;
      const royalty = (MODEL_FEE * ROYALTY_BPS) / BPS;
      const nodeFee = MODEL_FEE - protocolFee - royalty;
      const tx = f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof);
      await expect(tx)
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(s.taskId, node.address, outputs, nodeFee, royalty, protocolFee);
      const block = await ethers.provider.getBlockNumber();
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
      const result = await f.tasks.resultOf(s.taskId);
      expect(result.node).to.equal(node.address);
      expect(result.settledBlock).to.equal(BigInt(block));
      expect(result.outputs).to.deep.equal(outputs);
      expect(await f.tasks.creditsOf(node.address)).to.equal(nodeFee);
      expect(await f.tasks.creditsOf(f.modelOwner.address)).to.equal(royalty);
      expect(await f.tasks.protocolFeesOf(node.address)).to.equal(protocolFee);
      expect(await f.tasks.releasableCollateralOf(node.address)).to.equal(CLAIM_COLLATERAL);
      // Nothing left in escrow: the registry holds exactly the credits and the protocol fees.
      expect(await f.token.balanceOf(f.tasksAddress)).to.equal(nodeFee + royalty + protocolFee);

      await expect(f.tasks.releaseCollateral(node.address))
        .to.emit(f.tasks, "CollateralReleased")
        .withArgs(node.address, CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
    });

    it("costs at most 300,000 gas with 6 public signals, steady state", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      await settle(f, await claimed(f, node), node); // first settlement touches the credit words
      const s = await claimed(f, node);
      const gas = await recordGas(
        "TaskRegistry.submitResult (Groth16, 6 public signals)",
        settle(f, s, node),
      );
      expectGasAtMost(gas, 300_000, "submitResult (6 public signals)");
    });

    it("reverts for a node that did not claim the task", async function () {
      const f = await loadFixture(marketFixture);
      const s = await claimed(f, f.nodes[0]);
      const { proof, outputs } = await f.prove(s, f.nodes[1]);
      await expect(f.tasks.connect(f.nodes[1]).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotClaimer")
        .withArgs(s.taskId, f.nodes[1].address, f.nodes[0].address);
    });

    it("rejects a proof replayed from another task", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const first = await claimed(f, node);
      const second = await claimed(f, node); // same model, same input
      const replay = await f.prove(first, node);
      await expect(
        f.tasks
          .connect(node)
          .submitResult(second.taskId, second.task, second.input, replay.outputs, replay.proof),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(second.taskId);
    });

    it("rejects a proof bound to another node", async function () {
      const f = await loadFixture(marketFixture);
      const s = await claimed(f, f.nodes[1]);
      const stolen = await f.prove(s, f.nodes[0]);
      await expect(
        f.tasks.connect(f.nodes[1]).submitResult(s.taskId, s.task, s.input, stolen.outputs, stolen.proof),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(s.taskId);
    });

    it("rejects an output word at or above the field modulus", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      const { proof, outputs } = await f.prove(s, node);
      // outputs[0] + FIELD is the same field element: without the check the verifier would accept it.
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, [outputs[0] + FIELD], proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistrySignalOutOfField")
        .withArgs(0n, outputs[0] + FIELD);
    });

    it("rejects a tampered output", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      const { proof, outputs } = await f.prove(s, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, [outputs[0] + 1n], proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(s.taskId);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Claimed);
    });

    it("rejects an input other than the committed one", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      const other = tinyInputWords([9n, 9n, 9n, 9n]);
      const forged = await f.prove({ ...s, input: other }, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, other, forged.outputs, forged.proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryTaskMismatch")
        .withArgs(s.taskId);
    });

    it("rejects the wrong number of output words", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      const { proof, outputs } = await f.prove(s, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, [...outputs, 1n], proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidOutputs")
        .withArgs(s.taskId, 2n, 1n);
    });

    it("rejects a result after the claim window", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      const { proof, outputs } = await f.prove(s, node);
      const [, expiry] = await f.tasks.claimOf(s.taskId);
      await time.increaseTo(expiry + 1n);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryClaimExpired")
        .withArgs(s.taskId, expiry, anyValue);
    });

    it("rejects a second settlement", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      const { proof, outputs } = await f.prove(s, node);
      await f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Verified);
      await expect(f.tasks.expire(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Verified);
    });

    it("rejects a result for a task nobody claimed", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      const { proof, outputs } = await f.prove(s, f.nodes[0]);
      await expect(f.tasks.connect(f.nodes[0]).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Open);
    });

    it("calls the callback with the verified outputs", async function () {
      const f = await loadFixture(marketFixture);
      const recorder = await (await ethers.getContractFactory("RecordingCallback")).deploy();
      const callback = await recorder.getAddress();
      const s = await f.submit([1n, 1n, 1n, 1n], { callback, callbackGasLimit: 200_000 });
      await f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task);
      await expect(settle(f, s, f.nodes[0]))
        .to.emit(f.tasks, "CallbackExecuted")
        .withArgs(s.taskId, callback, true);
      expect(await recorder.lastTaskId()).to.equal(s.taskId);
      expect(await recorder.lastModelId()).to.equal(f.modelId);
      expect(await recorder.lastOutputs()).to.deep.equal([tinyOutputWord([1n, 1n, 1n, 1n])]);
    });

    it("reverts rather than short-change the callback's gas", async function () {
      const f = await loadFixture(marketFixture);
      const recorder = await (await ethers.getContractFactory("RecordingCallback")).deploy();
      const s = await f.submit(undefined, {
        callback: await recorder.getAddress(),
        callbackGasLimit: 500_000,
      });
      await f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task);
      const { proof, outputs } = await f.prove(s, f.nodes[0]);
      await expect(
        f.tasks
          .connect(f.nodes[0])
          .submitResult(s.taskId, s.task, s.input, outputs, proof, { gasLimit: 600_000 }),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryInsufficientCallbackGas");
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Claimed);
    });
  });

  describe("submitResults", function () {
    it("settles several tasks in one transaction", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const a = await claimed(f, node, [1n, 2n, 3n, 4n]);
      const b = await claimed(f, node, [4n, 3n, 2n, 1n]);
      const submissions = [];
      for (const s of [a, b]) {
        const { proof, outputs } = await f.prove(s, node);
        submissions.push({ taskId: s.taskId, task: s.task, input: s.input, outputs, proof });
      }
      await f.tasks.connect(node).submitResults(submissions);
      expect(await f.tasks.taskStatus(a.taskId)).to.equal(Status.Verified);
      expect(await f.tasks.taskStatus(b.taskId)).to.equal(Status.Verified);
      expect((await f.tasks.resultOf(b.taskId)).outputs).to.deep.equal([tinyOutputWord([4n, 3n, 2n, 1n])]);
    });

    it("reverts as a whole when one proof is bad", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const a = await claimed(f, node);
      const b = await claimed(f, node);
      const pa = await f.prove(a, node);
      const pb = await f.prove(b, node);
      await expect(
        f.tasks.connect(node).submitResults([
          { taskId: a.taskId, task: a.task, input: a.input, outputs: pa.outputs, proof: pa.proof },
          { taskId: b.taskId, task: b.task, input: b.input, outputs: [pb.outputs[0] + 1n], proof: pb.proof },
        ]),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(b.taskId);
      expect(await f.tasks.taskStatus(a.taskId)).to.equal(Status.Claimed);
    });

    it("reverts on an empty batch", async function () {
      const f = await loadFixture(marketFixture);
      await expect(f.tasks.connect(f.nodes[0]).submitResults([]))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidBatch")
        .withArgs(0n);
    });

    it("reverts on a batch above MAX_BATCH before looking at any entry", async function () {
      const f = await loadFixture(marketFixture);
      const s = await claimed(f, f.nodes[0]);
      const max = Number(await f.tasks.MAX_BATCH());
      const entry = {
        taskId: s.taskId,
        task: s.task,
        input: s.input,
        outputs: [0n],
        proof: Array(8).fill(0n),
      };
      await expect(f.tasks.connect(f.nodes[0]).submitResults(Array(max + 1).fill(entry)))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidBatch")
        .withArgs(BigInt(max + 1));
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Claimed);
    });
  });

  describe("views", function () {
    it("claimOf gives no expiry outside a running claim; resultOf reverts until verified", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
      await expect(f.tasks.resultOf(s.taskId))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Open);
      await f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task);
      await expect(f.tasks.resultOf(s.taskId))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Claimed);
      await settle(f, s, f.nodes[0]);
      expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([f.nodes[0].address, 0n]);
      await expect(f.tasks.resultOf(99n))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(99n, Status.None);
    });
  });

  describe("without claim collateral (governance set it to 0)", function () {
    it("claims lock nothing, a take-over and an expiry slash nothing, and settlement still pays", async function () {
      const f = await loadFixture(marketFixture);
      await f.tasks.connect(f.governance).setTaskParameters(CLAIM_WINDOW, 0, 500_000, 7 * 24 * 3600);
      const [first, second] = f.nodes;
      const s = await claimed(f, first);
      expect((await f.staking.nodeInfo(first.address)).locked).to.equal(0n);
      await time.increase(CLAIM_WINDOW + 1);
      await expect(f.tasks.connect(second).claimTask(s.taskId, s.task))
        .to.emit(f.tasks, "TaskClaimed")
        .withArgs(s.taskId, second.address, anyValue, 0n)
        .and.not.to.emit(f.tasks, "TaskClaimAbandoned");
      expect((await f.staking.nodeInfo(first.address)).bonded).to.equal(NODE_STAKE);
      await expect(settle(f, s, second)).to.emit(f.tasks, "TaskVerified");

      const late = await claimed(f, first);
      await time.increaseTo(BigInt(late.task.deadline) + 1n);
      await expect(f.tasks.expire(late.taskId, late.task))
        .to.emit(f.tasks, "TaskExpired")
        .withArgs(late.taskId, f.requester.address, MODEL_FEE)
        .and.not.to.emit(f.staking, "NodeSlashed");
      expect((await f.staking.nodeInfo(first.address)).bonded).to.equal(NODE_STAKE);
    });
  });

  describe("expire", function () {
    it("reverts before the deadline", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      await expect(f.tasks.expire(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryDeadlineNotReached")
        .withArgs(s.taskId, s.task.deadline, anyValue);
    });

    it("refunds an unclaimed task in full", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit(undefined, { deadlineIn: 100 });
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      const before = await f.token.balanceOf(f.requester.address);
      await expect(f.tasks.connect(f.stranger).expire(s.taskId, s.task))
        .to.emit(f.tasks, "TaskExpired")
        .withArgs(s.taskId, f.requester.address, MODEL_FEE);
      expect(await f.token.balanceOf(f.requester.address)).to.equal(before + MODEL_FEE);
      expect(await f.token.balanceOf(f.tasksAddress)).to.equal(0n);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Expired);
      await expect(f.tasks.expire(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Expired);
    });

    it("refunds a claimed task in full and slashes the claimer's collateral to the treasury", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await f.submit(undefined, { deadlineIn: 300 });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      const before = await f.token.balanceOf(f.requester.address);
      const treasuryBefore = await f.token.balanceOf(f.treasury.address);
      const tx = f.tasks.connect(f.stranger).expire(s.taskId, s.task);
      await expect(tx)
        .to.emit(f.staking, "NodeSlashed")
        .withArgs(
          node.address,
          f.tasksAddress,
          await f.tasks.SLASH_REASON_TASK_EXPIRED(),
          CLAIM_COLLATERAL,
          ethers.ZeroAddress,
          0n,
        );
      await recordGas("TaskRegistry.expire (claimed, slashes collateral)", tx);
      expect(await f.token.balanceOf(f.requester.address)).to.equal(before + MODEL_FEE);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryBefore + CLAIM_COLLATERAL);
      const info = await f.staking.nodeInfo(node.address);
      expect(info.bonded).to.equal(NODE_STAKE - CLAIM_COLLATERAL);
      expect(info.locked).to.equal(0n);
      const { proof, outputs } = await f.prove(s, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Expired);
    });

    it("reverts for a task that does not match the commitment", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit(undefined, { deadlineIn: 100 });
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      await expect(f.tasks.expire(s.taskId, { ...s.task, requester: f.stranger.address }))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryTaskMismatch")
        .withArgs(s.taskId);
    });
  });

  describe("credits", function () {
    it("pays node credits out, and releases collateral on request", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      await settle(f, await claimed(f, node), node);
      const credits = await f.tasks.creditsOf(node.address);
      await expect(f.tasks.connect(node).withdrawCredits(node.address))
        .to.emit(f.tasks, "CreditsWithdrawn")
        .withArgs(node.address, node.address, credits)
        .and.not.to.emit(f.tasks, "CollateralReleased");
      expect(await f.token.balanceOf(node.address)).to.equal(credits);
      await expect(f.tasks.connect(f.stranger).releaseCollateral(node.address))
        .to.emit(f.tasks, "CollateralReleased")
        .withArgs(node.address, CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
      await expect(f.tasks.connect(node).withdrawCredits(node.address))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNoCredits")
        .withArgs(node.address);
    });

    it("releases settled collateral at the node's next claim", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      await settle(f, await claimed(f, node), node);
      const s = await f.submit();
      await expect(f.tasks.connect(node).claimTask(s.taskId, s.task)).to.emit(f.tasks, "CollateralReleased");
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
    });

    it("pays the protocol fees held in nodes' accounts to the treasury", async function () {
      const f = await loadFixture(marketFixture);
      const [a, b, c] = f.nodes;
      await settle(f, await claimed(f, a), a);
      await settle(f, await claimed(f, b), b);
      const fees = (await f.tasks.protocolFeesOf(a.address)) + (await f.tasks.protocolFeesOf(b.address));
      expect(fees).to.equal((2n * MODEL_FEE * PROTOCOL_BPS) / BPS);
      const before = await f.token.balanceOf(f.treasury.address);
      await expect(f.tasks.connect(f.stranger).withdrawProtocolFees([a.address, b.address, c.address]))
        .to.emit(f.tasks, "ProtocolFeesWithdrawn")
        .withArgs(f.treasury.address, fees);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(before + fees);
      expect(await f.tasks.protocolFeesOf(a.address)).to.equal(0n);
      await expect(f.tasks.withdrawProtocolFees([a.address]))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNoCredits")
        .withArgs(f.treasury.address);
      for (const batch of [[], Array(33).fill(a.address)]) {
        await expect(f.tasks.withdrawProtocolFees(batch))
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidBatch")
          .withArgs(batch.length);
      }
    });

    it("holds the protocol's share in whole gwei and gives the rounding dust to the node", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const fee = MODEL_FEE + 12_345n; // 10% of it is not a whole number of gwei
      const s = await f.submit(undefined, { fee });
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const protocolFee = ((fee * PROTOCOL_BPS) / BPS / 10n ** 9n) * 10n ** 9n;
      const royalty = (fee * ROYALTY_BPS) / BPS;
      await expect(settle(f, s, node))
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(s.taskId, node.address, anyValue, fee - protocolFee - royalty, royalty, protocolFee);
      expect(await f.tasks.protocolFeesOf(node.address)).to.equal(protocolFee);
    });

    it("rejects a zero deposit", async function () {
      const f = await loadFixture(marketFixture);
      await expect(f.tasks.connect(f.requester).deposit(0n)).to.be.revertedWithCustomError(
        f.tasks,
        "TaskRegistryInvalidParameter",
      );
    });
  });

  describe("governance", function () {
    it("lets only the owner set parameters", async function () {
      const f = await loadFixture(marketFixture);
      for (const call of [
        () => f.tasks.connect(f.stranger).setFeeShares(0, 0),
        () => f.tasks.connect(f.stranger).setTreasury(f.stranger.address),
        () => f.tasks.connect(f.stranger).setTaskParameters(60, 0, 0, 3600),
      ]) {
        await expect(call())
          .to.be.revertedWithCustomError(f.tasks, "OwnableUnauthorizedAccount")
          .withArgs(f.stranger.address);
      }
    });

    it("bounds every parameter", async function () {
      const f = await loadFixture(marketFixture);
      const gov = f.tasks.connect(f.governance);
      for (const call of [
        () => gov.setFeeShares(6000, 5000),
        () => gov.setTreasury(ethers.ZeroAddress),
        () => gov.setTaskParameters(0, 0, 0, 3600),
        () => gov.setTaskParameters(7200, 0, 0, 3600),
        () => gov.setTaskParameters(60, 1n, 0, 3600),
        () => gov.setTaskParameters(60, 0, 5_000_001, 3600),
      ]) {
        await expect(call()).to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidParameter");
      }
      await expect(gov.setFeeShares(500, 2500)).to.emit(f.tasks, "FeeSharesSet").withArgs(500, 2500);
      const params = await f.tasks.parameters();
      expect(params.protocolFeeBps).to.equal(500n);
      expect(params.royaltyBps).to.equal(2500n);
    });
  });

  // Each attack from the economic review, played against the real contracts: the attacker gains nothing.
  describe("economic attacks on honest nodes", function () {
    it("a model owner who is also the requester cannot make a claim fail for profit (no verifier to swap)", async function () {
      const f = await loadFixture(marketFixture);
      const attacker = f.modelOwner;
      // The attack needed a verifier the model owner controls. Registration takes a key, not code: the
      // registry stores it immutably and the protocol verifier reads it, so there is nothing to switch.
      const fragment = f.models.interface.getFunction("registerModel");
      expect(fragment.inputs.map((i) => i.name)).to.deep.equal(["spec", "verificationKey"]);
      const key = (await f.models.taskTerms(f.modelId)).verificationKey;
      const keyCode = await ethers.provider.getCode(key);
      expect(keyCode.slice(0, 4)).to.equal("0x00"); // a STOP byte: the key is data, never run

      await f.token.connect(f.treasury).transfer(attacker.address, MODEL_FEE);
      await f.token.connect(attacker).approve(f.tasksAddress, ethers.MaxUint256);
      const attackerStart = await f.token.balanceOf(attacker.address);
      const treasuryStart = await f.token.balanceOf(f.treasury.address);
      const s = await f.submit([5n, 6n], { from: attacker, deadlineIn: 3 * CLAIM_WINDOW });
      // Two honest nodes claim in turn; each lapses (say the attacker kept them from proving in time).
      await f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task);
      await time.increase(CLAIM_WINDOW + 1);
      await f.tasks.connect(f.nodes[1]).claimTask(s.taskId, s.task);
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      await f.tasks.connect(attacker).expire(s.taskId, s.task);
      // The attacker is made whole and no more; both collaterals went to the treasury.
      expect(await f.token.balanceOf(attacker.address)).to.equal(attackerStart);
      expect(await f.tasks.creditsOf(attacker.address)).to.equal(0n);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryStart + 2n * CLAIM_COLLATERAL);
      // And the key still verifies honest proofs: a fresh task settles.
      const next = await claimed(f, f.nodes[2], [5n, 6n]);
      await expect(settle(f, next, f.nodes[2])).to.emit(f.tasks, "TaskVerified");
    });

    it("settles with the fee shares frozen at submission, whatever governance sets later", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      expect([s.task.protocolFeeBps, s.task.royaltyBps]).to.deep.equal([PROTOCOL_BPS, ROYALTY_BPS]);
      await f.tasks.connect(f.governance).setFeeShares(0, 9000);
      const protocolFee = (MODEL_FEE * PROTOCOL_BPS) / BPS;
      const royalty = (MODEL_FEE * ROYALTY_BPS) / BPS;
      await expect(settle(f, s, node))
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(s.taskId, node.address, anyValue, MODEL_FEE - protocolFee - royalty, royalty, protocolFee);
      // A task submitted after the change carries the new shares.
      const later = await f.submit();
      expect([later.task.protocolFeeBps, later.task.royaltyBps]).to.deep.equal([0n, 9000n]);
      // Nobody can settle the earlier task's commitment with other shares.
      const other = await claimed(f, f.nodes[1]);
      const { proof, outputs } = await f.prove(other, f.nodes[1]);
      await expect(
        f.tasks
          .connect(f.nodes[1])
          .submitResult(other.taskId, { ...other.task, royaltyBps: 0n }, other.input, outputs, proof),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryTaskMismatch")
        .withArgs(other.taskId);
    });

    describe("when governance revokes the registry's roles on NodeStaking (e.g. migrating registries)", function () {
      async function revokedFixture() {
        const f = await marketFixture();
        const [node, other] = f.nodes;
        // A verified task (credits and releasable collateral), a claimed one and a prepaid requester.
        const done = await claimed(f, node);
        await settle(f, done, node);
        const pending = await f.submit(undefined, { deadlineIn: 300 });
        await f.tasks.connect(other).claimTask(pending.taskId, pending.task);
        await f.tasks.connect(f.requester).deposit(MODEL_FEE);
        await f.staking.connect(f.governance).setCollateralManager(f.tasksAddress, false);
        await f.staking.connect(f.governance).setSlasher(f.tasksAddress, false);
        return { ...f, node, other, pending };
      }

      it("still pays out credits and prepaid deposits", async function () {
        const f = await loadFixture(revokedFixture);
        for (const account of [f.node, f.modelOwner, f.requester]) {
          const owed = await f.tasks.creditsOf(account.address);
          expect(owed).to.be.greaterThan(0n);
          const before = await f.token.balanceOf(account.address);
          await f.tasks.connect(account).withdrawCredits(account.address);
          expect(await f.token.balanceOf(account.address)).to.equal(before + owed);
        }
        await expect(f.tasks.withdrawProtocolFees([f.node.address])).to.emit(
          f.tasks,
          "ProtocolFeesWithdrawn",
        );
      });

      it("still refunds an expired claimed task in full, reporting the staking calls it could not make", async function () {
        const f = await loadFixture(revokedFixture);
        await time.increaseTo(BigInt(f.pending.task.deadline) + 1n);
        const before = await f.token.balanceOf(f.requester.address);
        await expect(f.tasks.expire(f.pending.taskId, f.pending.task))
          .to.emit(f.tasks, "TaskExpired")
          .and.to.emit(f.tasks, "StakingCallFailed")
          .withArgs(
            f.pending.taskId,
            f.other.address,
            CLAIM_COLLATERAL,
            f.staking.interface.getFunction("slash").selector,
          );
        expect(await f.token.balanceOf(f.requester.address)).to.equal(before + MODEL_FEE);
        expect(await f.tasks.taskStatus(f.pending.taskId)).to.equal(Status.Expired);
      });

      it("cannot be faked by a caller starving the staking calls of gas (the slash fails only for lack of role)", async function () {
        const f = await loadFixture(marketFixture);
        const node = f.nodes[0];
        const s = await f.submit(undefined, { deadlineIn: 300 });
        await f.tasks.connect(node).claimTask(s.taskId, s.task);
        await time.increaseTo(BigInt(s.task.deadline) + 1n);
        // The lapsed node itself tries to expire with just enough gas for the refund but not the slash.
        for (const gasLimit of [120_000, 180_000]) {
          await expect(f.tasks.connect(node).expire(s.taskId, s.task, { gasLimit }))
            .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInsufficientSlashGas")
            .withArgs(anyValue, await f.tasks.SLASH_GAS_FLOOR());
        }
        await expect(f.tasks.connect(node).expire(s.taskId, s.task))
          .to.emit(f.staking, "NodeSlashed")
          .and.not.to.emit(f.tasks, "StakingCallFailed");
      });

      it("lets nodes take back the collateral the revoked registry had locked", async function () {
        const f = await loadFixture(revokedFixture);
        // Settled collateral (node) and the live claim's (other): both stuck under the revoked manager.
        await expect(f.tasks.releaseCollateral(f.node.address)).to.be.revertedWithCustomError(
          f.staking,
          "NodeStakingNotCollateralManager",
        );
        for (const node of [f.node, f.other]) {
          expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
          await expect(f.staking.connect(node).releaseRevokedCollateral(f.tasksAddress))
            .to.emit(f.staking, "CollateralUnlocked")
            .withArgs(node.address, f.tasksAddress, CLAIM_COLLATERAL);
          expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
        }
      });
    });
  });
});
