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
  VERIFICATION_MODE_OPTIMISTIC,
  VERIFICATION_MODE_TEE,
  VERIFICATION_MODE_ZK,
  defaultModelSpec,
  marketFixture,
  modesFixture,
  type SubmittedTask,
} from "../helpers/market-fixture";
import { afterWindow, signAttestation, VALUES } from "../helpers/optimistic";
import { pinNextBlockTime } from "../helpers/chain-time";
import { tinyInputWords, tinyOutputWord } from "../helpers/tiny-circuit";
import { readVerifiedResult } from "../../workers/runtime/tasks";

const FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const Status = { None: 0n, Open: 1n, Claimed: 2n, Verified: 3n, Expired: 4n, Pending: 5n };
const BPS = 10_000n;
const PROTOCOL_BPS = 1000n;
const ROYALTY_BPS = 1000n;

type Fixture = Awaited<ReturnType<typeof marketFixture>>;
/** The market plus model 2 (every mode, optimistic included) and staked verification nodes. */
type ModesFixture = Awaited<ReturnType<typeof modesFixture>>;

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

/** Settle a ZK task: any eligible node proves it (bound to itself) and submits; no claim comes first. */
async function settle(f: Fixture, s: SubmittedTask, node: HardhatEthersSigner) {
  const { proof, outputs } = await f.prove(s, node);
  return f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof);
}

/** An OPTIMISTIC-mode task on model 2: the only mode that is still claimed (collateral, claim window). */
async function optimisticTask(
  f: ModesFixture,
  opts: { deadlineIn?: number; fee?: bigint; from?: HardhatEthersSigner; values?: bigint[] } = {},
) {
  return f.submit(opts.values ?? VALUES, {
    modelId: f.optimisticModelId,
    mode: VERIFICATION_MODE_OPTIMISTIC,
    deadlineIn: opts.deadlineIn,
    fee: opts.fee,
    from: opts.from,
  });
}

/** An optimistic task claimed by `node`. */
async function claimed(
  f: ModesFixture,
  node: HardhatEthersSigner = f.nodes[0],
  opts: Parameters<typeof optimisticTask>[1] = {},
) {
  const s = await optimisticTask(f, opts);
  await f.tasks.connect(node).claimTask(s.taskId, s.task);
  return s;
}

/**
 * The claimer settles an optimistic task: posts the true outputs with one verification node's attestation,
 * waits out the challenge window and finalizes (returns the finalizing transaction).
 */
async function settleClaimed(f: ModesFixture, s: SubmittedTask, node: HardhatEthersSigner, values = VALUES) {
  const outputs = [tinyOutputWord(values)];
  const attester = f.verifiers[0];
  const signature = await signAttestation(f, attester, s, node.address, outputs);
  await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, [signature]);
  await afterWindow(f, s.taskId);
  return f.tasks.connect(node).finalizeResult(s.taskId, s.task, outputs, [attester.address]);
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
      // hashTask is keccak256(abi.encode(task)) with the top bit cleared (a verified word carries it).
      const taskType = f.tasks.interface.getFunction("hashTask")!.inputs[0];
      const encoded = ethers.AbiCoder.defaultAbiCoder().encode([taskType], [s.task]);
      const expected = BigInt(ethers.keccak256(encoded)) & ((1n << 255n) - 1n);
      expect(BigInt(await f.tasks.hashTask(s.task))).to.equal(expected);
      // The task as read off the event is exactly what the registry committed: a result for it settles,
      // and any other field value does not match.
      await expect(
        f.tasks.expire(s.taskId, { ...s.task, deadline: BigInt(s.task.deadline) - 1n }),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryTaskMismatch");
      await expect(settle(f, s, f.nodes[0])).to.emit(f.tasks, "TaskVerified");
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

  // Only OPTIMISTIC tasks are claimed: the claim locks collateral for a window in which only the claimer may
  // post. ZK and TEE results carry a proof or an enclave signature bound to the node, so they take no claim.
  describe("claimTask", function () {
    it("locks collateral from the node's stake for the claim window (optimistic task)", async function () {
      const f = await loadFixture(modesFixture);
      const s = await optimisticTask(f);
      const node = f.nodes[0];
      // The claim's block time is pinned: on a loaded machine the wall clock runs ahead of latest + 1.
      const expectedExpiry = Number(await pinNextBlockTime()) + CLAIM_WINDOW;
      const tx = f.tasks.connect(node).claimTask(s.taskId, s.task);
      await expect(tx)
        .to.emit(f.tasks, "TaskClaimed")
        .withArgs(s.taskId, node.address, expectedExpiry, CLAIM_COLLATERAL)
        .and.to.emit(f.staking, "CollateralLocked")
        .withArgs(node.address, f.tasksAddress, CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
      expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([node.address, BigInt(expectedExpiry)]);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Claimed);
      const s2 = await optimisticTask(f);
      await recordGas("TaskRegistry.claimTask", f.tasks.connect(node).claimTask(s2.taskId, s2.task));
    });

    it("reverts for a ZK or TEE task, locking nothing: their results need no claim", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const zk = await f.submit();
      expect(zk.task.mode).to.equal(BigInt(VERIFICATION_MODE_ZK));
      await expect(f.tasks.connect(node).claimTask(zk.taskId, zk.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(zk.taskId, 1n);
      // Model 3 allows OPTIMISTIC | TEE: its strongest mode is TEE.
      const tee = await f.submit(VALUES, { modelId: f.voteModelId });
      expect(tee.task.mode).to.equal(BigInt(VERIFICATION_MODE_TEE));
      await expect(f.tasks.connect(node).claimTask(tee.taskId, tee.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(tee.taskId, 4n);
      for (const s of [zk, tee]) {
        expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
        expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
      }
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
      // The ZK task is still served, by the node that tried to claim it or any other.
      await expect(settle(f, zk, f.nodes[1])).to.emit(f.tasks, "TaskVerified");
    });

    it("ends the claim window at the deadline when that comes first", async function () {
      const f = await loadFixture(modesFixture);
      const s = await optimisticTask(f, { deadlineIn: 120 });
      await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task))
        .to.emit(f.tasks, "TaskClaimed")
        .withArgs(s.taskId, f.nodes[0].address, s.task.deadline, CLAIM_COLLATERAL);
    });

    it("reverts for a node that is not eligible", async function () {
      const f = await loadFixture(modesFixture);
      const s = await optimisticTask(f);
      // Neither an unregistered account nor a verification-only node may serve inference.
      for (const account of [f.stranger, f.verifiers[0]]) {
        await expect(f.tasks.connect(account).claimTask(s.taskId, s.task))
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNodeNotEligible")
          .withArgs(account.address);
      }
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    });

    it("reverts for a task that does not match the commitment", async function () {
      const f = await loadFixture(modesFixture);
      const s = await optimisticTask(f);
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
      const f = await loadFixture(modesFixture);
      const s = await claimed(f);
      const [, expiry] = await f.tasks.claimOf(s.taskId);
      await expect(f.tasks.connect(f.nodes[1]).claimTask(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryAlreadyClaimed")
        .withArgs(s.taskId, f.nodes[0].address, expiry);
    });

    it("reverts once the deadline has passed", async function () {
      const f = await loadFixture(modesFixture);
      const s = await optimisticTask(f, { deadlineIn: 100 });
      await time.increaseTo(s.task.deadline);
      await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryDeadlinePassed")
        .withArgs(s.taskId, s.task.deadline, anyValue);
    });

    it("lets another node take over an expired claim and slashes the first claimer's collateral to the treasury", async function () {
      const f = await loadFixture(modesFixture);
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
      // The new claimer settles; the first cannot post.
      const outputs = [tinyOutputWord(VALUES)];
      await expect(f.tasks.connect(first).submitResultOptimistic(s.taskId, s.task, outputs, []))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNotClaimer")
        .withArgs(s.taskId, first.address, second.address);
      await expect(settleClaimed(f, s, second))
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(s.taskId, second.address, outputs, anyValue, anyValue, anyValue);
    });

    it("refuses the claimer's post once its claim window has passed", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      const [, expiry] = await f.tasks.claimOf(s.taskId);
      await time.setNextBlockTimestamp(expiry + 1n);
      await expect(
        f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, [tinyOutputWord(VALUES)], []),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryClaimExpired")
        .withArgs(s.taskId, expiry, expiry + 1n);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Claimed);
    });

    it("does not let a ZK result bypass an optimistic task's claim", async function () {
      const f = await loadFixture(modesFixture);
      const s = await optimisticTask(f);
      const { proof, outputs } = await f.prove(s, f.nodes[1]);
      // Open or claimed, an optimistic task is never settled by a proof through submitResult.
      await expect(f.tasks.connect(f.nodes[1]).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(s.taskId, VERIFICATION_MODE_OPTIMISTIC);
      await f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task);
      await expect(f.tasks.connect(f.nodes[1]).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Claimed);
    });
  });

  // ZK tasks take no claim: any eligible inference node serves an Open task with a proof bound to itself.
  describe("submitResult", function () {
    it("verifies a real proof, records the result's hash and splits the fee, with no claim and no collateral", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const values = [5n, -3n, 2n, 10n];
      const s = await f.submit(values);
      const { proof, outputs } = await f.prove(s, node);
      expect(outputs).to.deep.equal([tinyOutputWord(values)]);
      const protocolFee = (MODEL_FEE * PROTOCOL_BPS) / BPS;
      const royalty = (MODEL_FEE * ROYALTY_BPS) / BPS;
      const nodeFee = MODEL_FEE - protocolFee - royalty;
      const tx = f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof);
      await expect(tx)
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(s.taskId, node.address, outputs, nodeFee, royalty, protocolFee)
        .and.not.to.emit(f.tasks, "TaskClaimed")
        .and.not.to.emit(f.staking, "CollateralLocked");
      const block = await ethers.provider.getBlockNumber();
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Verified);
      const result = await readVerifiedResult(f.tasks, s.taskId);
      expect(result).to.not.equal(null);
      expect(result!.node).to.equal(node.address);
      expect(result!.settledBlock).to.equal(BigInt(block));
      expect(result!.outputs).to.deep.equal(outputs);
      expect(result!.transactionHash).to.equal((await (await tx).wait())!.hash);
      expect(await f.tasks.creditsOf(node.address)).to.equal(nodeFee);
      expect(await f.tasks.creditsOf(f.modelOwner.address)).to.equal(royalty);
      expect(await f.tasks.protocolFeesOf(node.address)).to.equal(protocolFee);
      // No claim: nothing was locked, nothing is to release, and no claimer is recorded.
      expect(await f.tasks.releasableCollateralOf(node.address)).to.equal(0n);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
      expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
      // Nothing left in escrow: the registry holds exactly the credits and the protocol fees.
      expect(await f.token.balanceOf(f.tasksAddress)).to.equal(nodeFee + royalty + protocolFee);
      await expect(f.tasks.releaseCollateral(node.address)).not.to.emit(f.tasks, "CollateralReleased");
    });

    // The node's eligibility check (a NodeStaking read) moved here from claimTask, and the registry now
    // delegates to its ZK module: about 12,000 gas more than the claimed path's submitResult alone, and
    // about 70,000 less per task than that path's claimTask + submitResult.
    it("costs at most 310,000 gas with 6 public signals, steady state", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      await settle(f, await f.submit(), node); // first settlement touches the credit words
      const s = await f.submit();
      const gas = await recordGas(
        "TaskRegistry.submitResult (Groth16, 6 public signals)",
        settle(f, s, node),
      );
      expectGasAtMost(gas, 310_000, "submitResult (6 public signals)");
    });

    it("lets any eligible node serve an open task: the first valid proof settles it", async function () {
      const f = await loadFixture(marketFixture);
      const [a, b] = f.nodes;
      const s = await f.submit();
      // Both nodes ran the model; each proof is bound to its own node.
      const pa = await f.prove(s, a);
      const pb = await f.prove(s, b);
      await expect(f.tasks.connect(b).submitResult(s.taskId, s.task, s.input, pb.outputs, pb.proof))
        .to.emit(f.tasks, "TaskVerified")
        .withArgs(s.taskId, b.address, pb.outputs, anyValue, anyValue, anyValue);
      await expect(f.tasks.connect(a).submitResult(s.taskId, s.task, s.input, pa.outputs, pa.proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Verified);
      expect(await f.tasks.creditsOf(a.address)).to.equal(0n);
      expect((await readVerifiedResult(f.tasks, s.taskId))!.node).to.equal(b.address);
    });

    it("reverts for an account that is not an eligible inference node", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      // A stranger (never staked) and a node that asked to unstake all of its stake: neither may serve.
      const quitter = f.nodes[2];
      await f.staking.connect(quitter).requestUnstake(NODE_STAKE);
      for (const account of [f.stranger, quitter]) {
        const { proof, outputs } = await f.prove(s, account); // a valid proof, bound to the caller
        await expect(f.tasks.connect(account).submitResult(s.taskId, s.task, s.input, outputs, proof))
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNodeNotEligible")
          .withArgs(account.address);
        await expect(
          f.tasks
            .connect(account)
            .submitResults([{ taskId: s.taskId, task: s.task, input: s.input, outputs, proof }]),
        )
          .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNodeNotEligible")
          .withArgs(account.address);
      }
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
      await expect(settle(f, s, f.nodes[0])).to.emit(f.tasks, "TaskVerified");
    });

    it("rejects a proof replayed from another task", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const first = await f.submit();
      const second = await f.submit(); // same model, same input
      const replay = await f.prove(first, node);
      await expect(
        f.tasks
          .connect(node)
          .submitResult(second.taskId, second.task, second.input, replay.outputs, replay.proof),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(second.taskId);
    });

    it("rejects a proof bound to another node (a copied proof earns nothing)", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      const stolen = await f.prove(s, f.nodes[0]);
      await expect(
        f.tasks.connect(f.nodes[1]).submitResult(s.taskId, s.task, s.input, stolen.outputs, stolen.proof),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(s.taskId);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    });

    it("rejects an output word at or above the field modulus", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await f.submit();
      const { proof, outputs } = await f.prove(s, node);
      // outputs[0] + FIELD is the same field element: without the check the verifier would accept it.
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, [outputs[0] + FIELD], proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistrySignalOutOfField")
        .withArgs(0n, outputs[0] + FIELD);
    });

    it("rejects a tampered output", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await f.submit();
      const { proof, outputs } = await f.prove(s, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, [outputs[0] + 1n], proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(s.taskId);
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    });

    it("rejects an input other than the committed one", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await f.submit();
      const other = tinyInputWords([9n, 9n, 9n, 9n]);
      const forged = await f.prove({ ...s, input: other }, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, other, forged.outputs, forged.proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryTaskMismatch")
        .withArgs(s.taskId);
    });

    it("rejects the wrong number of output words", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await f.submit();
      const { proof, outputs } = await f.prove(s, node);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, [...outputs, 1n], proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidOutputs")
        .withArgs(s.taskId, 2n, 1n);
    });

    it("rejects a result at or after the deadline, however valid its proof", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const early = await f.submit(undefined, { deadlineIn: 100 });
      const late = await f.submit(undefined, { deadlineIn: 100 });
      const pe = await f.prove(early, node);
      const pl = await f.prove(late, node);
      // One second before its deadline a task still settles...
      await time.setNextBlockTimestamp(BigInt(early.task.deadline) - 1n);
      await expect(
        f.tasks.connect(node).submitResult(early.taskId, early.task, early.input, pe.outputs, pe.proof),
      ).to.emit(f.tasks, "TaskVerified");
      // ...at its deadline it does not (block.timestamp >= deadline).
      const deadline = BigInt(late.task.deadline);
      await time.setNextBlockTimestamp(deadline);
      await expect(
        f.tasks.connect(node).submitResult(late.taskId, late.task, late.input, pl.outputs, pl.proof),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryDeadlinePassed")
        .withArgs(late.taskId, deadline, deadline);
      expect(await f.tasks.taskStatus(late.taskId)).to.equal(Status.Open);
      // The requester gets the fee back once the deadline is behind.
      await time.increaseTo(deadline + 1n);
      await expect(f.tasks.expire(late.taskId, late.task))
        .to.emit(f.tasks, "TaskExpired")
        .withArgs(late.taskId, f.requester.address, MODEL_FEE);
    });

    it("rejects a second settlement, by the same node or another", async function () {
      const f = await loadFixture(marketFixture);
      const [node, other] = f.nodes;
      const s = await f.submit();
      const { proof, outputs } = await f.prove(s, node);
      await f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof);
      const credits = await f.tasks.creditsOf(node.address);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, 3n);
      const theirs = await f.prove(s, other);
      await expect(
        f.tasks.connect(other).submitResult(s.taskId, s.task, s.input, theirs.outputs, theirs.proof),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, 3n);
      await expect(f.tasks.expire(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Verified);
      expect(await f.tasks.creditsOf(node.address)).to.equal(credits);
      expect(await f.tasks.creditsOf(other.address)).to.equal(0n);
    });

    it("rejects a ZK result for a task in another mode", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      // Model 2 allows ZK too, so the proof itself would verify: the mode committed with the task decides.
      const tee = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_TEE });
      const { proof, outputs } = await f.prove(tee, node);
      await expect(f.tasks.connect(node).submitResult(tee.taskId, tee.task, tee.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongMode")
        .withArgs(tee.taskId, VERIFICATION_MODE_TEE);
    });

    it("calls the callback with the verified outputs", async function () {
      const f = await loadFixture(marketFixture);
      const recorder = await (await ethers.getContractFactory("RecordingCallback")).deploy();
      const callback = await recorder.getAddress();
      const s = await f.submit([1n, 1n, 1n, 1n], { callback, callbackGasLimit: 200_000 });
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
      const { proof, outputs } = await f.prove(s, f.nodes[0]);
      await expect(
        f.tasks
          .connect(f.nodes[0])
          .submitResult(s.taskId, s.task, s.input, outputs, proof, { gasLimit: 600_000 }),
      ).to.be.revertedWithCustomError(f.tasks, "TaskRegistryInsufficientCallbackGas");
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    });
  });

  describe("submitResults", function () {
    it("settles several tasks in one transaction", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const a = await f.submit([1n, 2n, 3n, 4n]);
      const b = await f.submit([4n, 3n, 2n, 1n]);
      const submissions = [];
      for (const s of [a, b]) {
        const { proof, outputs } = await f.prove(s, node);
        submissions.push({ taskId: s.taskId, task: s.task, input: s.input, outputs, proof });
      }
      await f.tasks.connect(node).submitResults(submissions);
      expect(await f.tasks.taskStatus(a.taskId)).to.equal(Status.Verified);
      expect(await f.tasks.taskStatus(b.taskId)).to.equal(Status.Verified);
      expect((await readVerifiedResult(f.tasks, a.taskId))!.outputs).to.deep.equal([
        tinyOutputWord([1n, 2n, 3n, 4n]),
      ]);
      expect((await readVerifiedResult(f.tasks, b.taskId))!.outputs).to.deep.equal([
        tinyOutputWord([4n, 3n, 2n, 1n]),
      ]);
      const nodeFee = MODEL_FEE - (MODEL_FEE * (PROTOCOL_BPS + ROYALTY_BPS)) / BPS;
      expect(await f.tasks.creditsOf(node.address)).to.equal(2n * nodeFee);
    });

    it("reverts as a whole when one proof is bad, naming its task", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const a = await f.submit();
      const b = await f.submit();
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
      expect(await f.tasks.taskStatus(a.taskId)).to.equal(Status.Open);
    });

    it("skips a task another node settled first, and settles the rest", async function () {
      const f = await loadFixture(marketFixture);
      const [node, rival] = f.nodes;
      const a = await f.submit([1n, 2n, 3n, 4n]);
      const b = await f.submit([4n, 3n, 2n, 1n]);
      const pa = await f.prove(a, node);
      const pb = await f.prove(b, node);
      await settle(f, a, rival); // lands before the batch
      const tx = f.tasks.connect(node).submitResults([
        { taskId: a.taskId, task: a.task, input: a.input, outputs: pa.outputs, proof: pa.proof },
        { taskId: b.taskId, task: b.task, input: b.input, outputs: pb.outputs, proof: pb.proof },
      ]);
      await expect(tx)
        .to.emit(f.tasks, "TaskResultSkipped")
        .withArgs(a.taskId, Status.Verified)
        .and.to.emit(f.tasks, "TaskVerified")
        .withArgs(b.taskId, node.address, pb.outputs, anyValue, anyValue, anyValue);
      const receipt = (await (await tx).wait())!;
      const verified = receipt.logs
        .map((l) => f.tasks.interface.parseLog(l))
        .filter((e) => e?.name === "TaskVerified");
      expect(verified).to.have.length(1);
      // The skipped task still belongs to the node that settled it; the batch's node is paid for one task.
      expect((await readVerifiedResult(f.tasks, a.taskId))!.node).to.equal(rival.address);
      const nodeFee = MODEL_FEE - (MODEL_FEE * (PROTOCOL_BPS + ROYALTY_BPS)) / BPS;
      expect(await f.tasks.creditsOf(node.address)).to.equal(nodeFee);
      expect(await f.tasks.creditsOf(rival.address)).to.equal(nodeFee);
    });

    it("pays a task listed twice in one batch once, skipping the repeat", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const a = await f.submit();
      const other = await f.submit([4n, 3n, 2n, 1n]); // its fee stays in escrow
      const pa = await f.prove(a, node);
      const entry = { taskId: a.taskId, task: a.task, input: a.input, outputs: pa.outputs, proof: pa.proof };
      const tx = f.tasks.connect(node).submitResults([entry, entry]);
      await expect(tx).to.emit(f.tasks, "TaskResultSkipped").withArgs(a.taskId, Status.Verified);
      const receipt = (await (await tx).wait())!;
      const names = receipt.logs.map((l) => f.tasks.interface.parseLog(l)?.name).filter((n) => n);
      expect(names.filter((n) => n === "TaskVerified")).to.have.length(1);
      const nodeFee = MODEL_FEE - (MODEL_FEE * (PROTOCOL_BPS + ROYALTY_BPS)) / BPS;
      expect(await f.tasks.creditsOf(node.address)).to.equal(nodeFee);
      // The registry still holds the other task's escrow in full, beside what the settled one paid out.
      expect(await f.token.balanceOf(f.tasksAddress)).to.equal(MODEL_FEE + BigInt(other.task.fee));
      expect(await f.tasks.taskStatus(other.taskId)).to.equal(Status.Open);
    });

    it("skips a task whose deadline passed while the batch waited, and settles the rest", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const late = await f.submit([1n, 2n, 3n, 4n], { deadlineIn: 100 });
      const onTime = await f.submit([4n, 3n, 2n, 1n], { deadlineIn: 3600 });
      const pl = await f.prove(late, node);
      const po = await f.prove(onTime, node);
      await time.setNextBlockTimestamp(BigInt(late.task.deadline));
      const tx = f.tasks.connect(node).submitResults([
        { taskId: late.taskId, task: late.task, input: late.input, outputs: pl.outputs, proof: pl.proof },
        {
          taskId: onTime.taskId,
          task: onTime.task,
          input: onTime.input,
          outputs: po.outputs,
          proof: po.proof,
        },
      ]);
      await expect(tx)
        .to.emit(f.tasks, "TaskResultSkipped")
        .withArgs(late.taskId, Status.Open)
        .and.to.emit(f.tasks, "TaskVerified")
        .withArgs(onTime.taskId, node.address, po.outputs, anyValue, anyValue, anyValue);
      expect(await f.tasks.taskStatus(late.taskId)).to.equal(Status.Open);
      // Nothing was paid for it: the requester gets its fee back once the deadline is behind.
      await time.increase(1);
      await expect(f.tasks.expire(late.taskId, late.task))
        .to.emit(f.tasks, "TaskExpired")
        .withArgs(late.taskId, f.requester.address, MODEL_FEE);
    });

    // A proof coordinate below the base field but off the curve makes the batch's ecMul precompile call fail;
    // each precompile call gets a fixed allowance, so the one-by-one check that follows still has the gas to
    // name the task.
    it("names the task of an off-curve proof in a batch", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const a = await f.submit([1n, 2n, 3n, 4n]);
      const b = await f.submit([4n, 3n, 2n, 1n]);
      const pa = await f.prove(a, node);
      const pb = await f.prove(b, node);
      const offCurve = [...pa.proof.slice(0, 7), pa.proof[7] + 1n]; // C.y + 1: still below the base field
      await expect(f.tasks.connect(node).submitResult(a.taskId, a.task, a.input, pa.outputs, offCurve))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(a.taskId);
      await expect(
        f.tasks.connect(node).submitResults([
          { taskId: a.taskId, task: a.task, input: a.input, outputs: pa.outputs, proof: offCurve },
          { taskId: b.taskId, task: b.task, input: b.input, outputs: pb.outputs, proof: pb.proof },
        ]),
      )
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidProof")
        .withArgs(a.taskId);
    });

    it("reverts on an empty batch", async function () {
      const f = await loadFixture(marketFixture);
      await expect(f.tasks.connect(f.nodes[0]).submitResults([]))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidBatch")
        .withArgs(0n);
    });

    it("reverts on a batch above MAX_BATCH before looking at any entry", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
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
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    });
  });

  describe("settlement modules", function () {
    it("refuse to be called directly: their code only runs on the registry's storage", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const addresses = [
        await f.tasks.zkSettlement(),
        await f.tasks.teeSettlement(),
        await f.tasks.optimisticSettlement(),
      ];
      expect(new Set(addresses).size).to.equal(3);
      for (const a of addresses) expect(await ethers.provider.getCode(a)).to.not.equal("0x");
      const zkModule = await ethers.getContractAt("ZkSettlement", addresses[0]);
      const teeModule = await ethers.getContractAt("TeeSettlement", addresses[1]);
      const optimisticModule = await ethers.getContractAt("OptimisticSettlement", addresses[2]);

      // A valid proof for an open task, sent to the module instead of the registry.
      const s = await f.submit();
      const { proof, outputs } = await f.prove(s, node);
      await expect(
        zkModule.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof),
      ).to.be.revertedWithCustomError(zkModule, "SettlementModuleNotDelegated");
      await expect(
        zkModule
          .connect(node)
          .submitResults([{ taskId: s.taskId, task: s.task, input: s.input, outputs, proof }]),
      ).to.be.revertedWithCustomError(zkModule, "SettlementModuleNotDelegated");
      await expect(
        teeModule.connect(node).submitResultTee(s.taskId, s.task, outputs, "0x"),
      ).to.be.revertedWithCustomError(teeModule, "SettlementModuleNotDelegated");
      const o = await claimed(f, node);
      await expect(
        optimisticModule.connect(node).submitResultOptimistic(o.taskId, o.task, outputs, []),
      ).to.be.revertedWithCustomError(optimisticModule, "SettlementModuleNotDelegated");
      await expect(
        optimisticModule.connect(node).finalizeResult(o.taskId, o.task, outputs, []),
      ).to.be.revertedWithCustomError(optimisticModule, "SettlementModuleNotDelegated");

      // Through the registry the same calls go on as usual.
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Open);
      expect(await f.tasks.taskStatus(o.taskId)).to.equal(Status.Claimed);
      await expect(f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof)).to.emit(
        f.tasks,
        "TaskVerified",
      );
    });
  });

  describe("views", function () {
    it("claimOf gives no claimer or expiry for a ZK task; no verified result until one settles", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit();
      expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
      expect(await readVerifiedResult(f.tasks, s.taskId)).to.equal(null);
      const { proof, outputs } = await f.prove(s, f.nodes[0]);
      const guess = { node: f.nodes[0].address, settledBlock: 0n, outputs };
      expect(await f.tasks.isVerifiedResult(s.taskId, guess)).to.equal(false);
      const receipt = (await (
        await f.tasks.connect(f.nodes[0]).submitResult(s.taskId, s.task, s.input, outputs, proof)
      ).wait())!;
      expect(await f.tasks.claimOf(s.taskId)).to.deep.equal([ethers.ZeroAddress, 0n]);
      expect(
        await f.tasks.isVerifiedResult(s.taskId, { ...guess, settledBlock: BigInt(receipt.blockNumber) }),
      ).to.equal(true);
      expect(await readVerifiedResult(f.tasks, 99n)).to.equal(null);
      expect(await f.tasks.taskStatus(99n)).to.equal(Status.None);
    });

    it("isVerifiedResult holds for the TaskVerified event's result only", async function () {
      const f = await loadFixture(marketFixture);
      const [node, other] = f.nodes;
      const s = await f.submit();
      const next = await f.submit([4n, 3n, 2n, 1n]);
      const receipt = (await (await settle(f, s, node)).wait())!;
      await settle(f, next, node);
      const event = receipt.logs
        .map((l) => f.tasks.interface.parseLog(l))
        .find((e) => e?.name === "TaskVerified")!;
      const result = {
        node: event.args.node as string,
        settledBlock: BigInt(receipt.blockNumber),
        outputs: [...(event.args.outputs as bigint[])],
      };
      expect(result.node).to.equal(node.address);
      expect(await f.tasks.isVerifiedResult(s.taskId, result)).to.equal(true);
      const read = await readVerifiedResult(f.tasks, s.taskId);
      expect({ node: read!.node, settledBlock: read!.settledBlock, outputs: read!.outputs }).to.deep.equal(
        result,
      );
      for (const altered of [
        { ...result, outputs: [result.outputs[0] + 1n] },
        { ...result, outputs: [...result.outputs, 0n] },
        { ...result, outputs: [] },
        { ...result, node: other.address },
        { ...result, node: ethers.ZeroAddress },
        { ...result, settledBlock: result.settledBlock + 1n },
        { ...result, settledBlock: result.settledBlock - 1n },
      ]) {
        expect(await f.tasks.isVerifiedResult(s.taskId, altered)).to.equal(false);
      }
      // The same result is not the verified result of another task, settled or not.
      expect(await f.tasks.isVerifiedResult(next.taskId, result)).to.equal(false);
      expect(await f.tasks.isVerifiedResult(99n, result)).to.equal(false);
    });
  });

  describe("without claim collateral (governance set it to 0)", function () {
    it("optimistic claims lock nothing, a take-over and an expiry slash nothing, and settlement still pays", async function () {
      const f = await loadFixture(modesFixture);
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
      await expect(settleClaimed(f, s, second)).to.emit(f.tasks, "TaskVerified");

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

    it("refunds an open ZK task in full and slashes nobody", async function () {
      const f = await loadFixture(marketFixture);
      const s = await f.submit(undefined, { deadlineIn: 100 });
      // A node tried to claim it (refused: ZK takes no claim) and none served it.
      await expect(f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task)).to.be.revertedWithCustomError(
        f.tasks,
        "TaskRegistryWrongMode",
      );
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      const before = await f.token.balanceOf(f.requester.address);
      const treasuryBefore = await f.token.balanceOf(f.treasury.address);
      await expect(f.tasks.connect(f.stranger).expire(s.taskId, s.task))
        .to.emit(f.tasks, "TaskExpired")
        .withArgs(s.taskId, f.requester.address, MODEL_FEE)
        .and.not.to.emit(f.tasks, "TaskClaimAbandoned")
        .and.not.to.emit(f.staking, "NodeSlashed")
        .and.not.to.emit(f.tasks, "StakingCallFailed");
      expect(await f.token.balanceOf(f.requester.address)).to.equal(before + MODEL_FEE);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryBefore);
      expect(await f.token.balanceOf(f.tasksAddress)).to.equal(0n);
      for (const node of f.nodes) {
        const info = await f.staking.nodeInfo(node.address);
        expect([info.bonded, info.locked]).to.deep.equal([NODE_STAKE, 0n]);
      }
      expect(await f.tasks.taskStatus(s.taskId)).to.equal(Status.Expired);
      await expect(f.tasks.expire(s.taskId, s.task))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Expired);
      const { proof, outputs } = await f.prove(s, f.nodes[0]);
      await expect(f.tasks.connect(f.nodes[0]).submitResult(s.taskId, s.task, s.input, outputs, proof))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryWrongStatus")
        .withArgs(s.taskId, Status.Expired);
    });

    it("refunds a claimed (optimistic) task in full and slashes the claimer's collateral to the treasury", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node, { deadlineIn: 300 });
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
      await expect(
        f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, [tinyOutputWord(VALUES)], []),
      )
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
    it("pays node credits out; a ZK settlement leaves no collateral to release", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      await settle(f, await f.submit(), node);
      const credits = await f.tasks.creditsOf(node.address);
      expect(credits).to.be.greaterThan(0n);
      await expect(f.tasks.connect(node).withdrawCredits(node.address))
        .to.emit(f.tasks, "CreditsWithdrawn")
        .withArgs(node.address, node.address, credits)
        .and.not.to.emit(f.tasks, "CollateralReleased");
      expect(await f.token.balanceOf(node.address)).to.equal(credits);
      expect(await f.tasks.releaseCollateral.staticCall(node.address)).to.equal(0n);
      await expect(f.tasks.connect(f.stranger).releaseCollateral(node.address)).not.to.emit(
        f.tasks,
        "CollateralReleased",
      );
      await expect(f.tasks.connect(node).withdrawCredits(node.address))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryNoCredits")
        .withArgs(node.address);
    });

    it("releases a settled optimistic claim's collateral on request", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      const s = await claimed(f, node);
      await settleClaimed(f, s, node);
      expect(await f.tasks.releasableCollateralOf(node.address)).to.equal(CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
      await expect(f.tasks.connect(f.stranger).releaseCollateral(node.address))
        .to.emit(f.tasks, "CollateralReleased")
        .withArgs(node.address, CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
      expect(await f.tasks.releasableCollateralOf(node.address)).to.equal(0n);
    });

    it("releases settled collateral at the node's next claim, or its next ZK result", async function () {
      const f = await loadFixture(modesFixture);
      const node = f.nodes[0];
      await settleClaimed(f, await claimed(f, node), node);
      const next = await optimisticTask(f);
      await expect(f.tasks.connect(node).claimTask(next.taskId, next.task))
        .to.emit(f.tasks, "CollateralReleased")
        .withArgs(node.address, CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(CLAIM_COLLATERAL);
      await settleClaimed(f, next, node);
      // A ZK result counts the settled collateral as free stake first, as a claim does.
      await expect(settle(f, await f.submit(), node))
        .to.emit(f.tasks, "CollateralReleased")
        .withArgs(node.address, CLAIM_COLLATERAL);
      expect((await f.staking.nodeInfo(node.address)).locked).to.equal(0n);
    });

    it("pays the protocol fees held in nodes' accounts to the treasury", async function () {
      const f = await loadFixture(marketFixture);
      const [a, b, c] = f.nodes;
      await settle(f, await f.submit(), a);
      await settle(f, await f.submit(), b);
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
      const f = await loadFixture(modesFixture);
      const attacker = f.modelOwner;
      // The attack needed a verifier the model owner controls. Registration takes a key, not code: the
      // registry stores it immutably and the protocol verifier reads it, so there is nothing to switch.
      const fragment = f.models.interface.getFunction("registerModel");
      expect(fragment.inputs.map((i) => i.name)).to.deep.equal(["spec", "verificationKey"]);
      const key = (await f.models.taskTerms(f.modelId)).verificationKey;
      const keyCode = await ethers.provider.getCode(key);
      expect(keyCode.slice(0, 4)).to.equal("0x00"); // a STOP byte: the key is data, never run

      await f.token.connect(f.treasury).transfer(attacker.address, MODEL_FEE);
      await f.token.connect(f.modelOwner).approve(f.tasksAddress, ethers.MaxUint256);
      const attackerStart = await f.token.balanceOf(attacker.address);
      const treasuryStart = await f.token.balanceOf(f.treasury.address);
      // Only optimistic tasks are claimed: the attacker submits one on its own model.
      const s = await optimisticTask(f, { values: [5n, 6n], from: attacker, deadlineIn: 3 * CLAIM_WINDOW });
      // Two honest nodes claim in turn; each lapses (say the attacker kept them from posting in time).
      await f.tasks.connect(f.nodes[0]).claimTask(s.taskId, s.task);
      await time.increase(CLAIM_WINDOW + 1);
      await f.tasks.connect(f.nodes[1]).claimTask(s.taskId, s.task);
      await time.increaseTo(BigInt(s.task.deadline) + 1n);
      await f.tasks.connect(attacker).expire(s.taskId, s.task);
      // The attacker is made whole and no more; both collaterals went to the treasury.
      expect(await f.token.balanceOf(attacker.address)).to.equal(attackerStart);
      expect(await f.tasks.creditsOf(attacker.address)).to.equal(0n);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryStart + 2n * CLAIM_COLLATERAL);
      // A ZK task offers nothing to lapse: it expires unserved with no one slashed.
      const zk = await f.submit([5n, 6n], { from: attacker, deadlineIn: 100 });
      await time.increaseTo(BigInt(zk.task.deadline) + 1n);
      await expect(f.tasks.connect(attacker).expire(zk.taskId, zk.task)).not.to.emit(
        f.staking,
        "NodeSlashed",
      );
      expect(await f.token.balanceOf(attacker.address)).to.equal(attackerStart);
      expect(await f.token.balanceOf(f.treasury.address)).to.equal(treasuryStart + 2n * CLAIM_COLLATERAL);
      // And the key still verifies honest proofs: a fresh task settles.
      const next = await f.submit([5n, 6n]);
      await expect(settle(f, next, f.nodes[2])).to.emit(f.tasks, "TaskVerified");
    });

    it("settles with the fee shares frozen at submission, whatever governance sets later", async function () {
      const f = await loadFixture(marketFixture);
      const node = f.nodes[0];
      const s = await f.submit();
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
      // Nobody can settle an earlier task's commitment with other shares.
      const other = await f.submit();
      await f.tasks.connect(f.governance).setFeeShares(PROTOCOL_BPS, ROYALTY_BPS);
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
        const f = await modesFixture();
        const [node, other] = f.nodes;
        // Credits from a ZK task; releasable collateral from a settled optimistic claim (after the ZK
        // result, which would have released it); a live optimistic claim; and a prepaid requester.
        await settle(f, await f.submit(), node);
        await settleClaimed(f, await claimed(f, node), node);
        const pending = await claimed(f, other, { deadlineIn: 300 });
        const open = await f.submit(undefined, { deadlineIn: 300 });
        await f.tasks.connect(f.requester).deposit(MODEL_FEE);
        await f.staking.connect(f.governance).setCollateralManager(f.tasksAddress, false);
        await f.staking.connect(f.governance).setSlasher(f.tasksAddress, false);
        return { ...f, node, other, pending, open };
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

      it("still serves and refunds ZK tasks, which make no staking call", async function () {
        const f = await loadFixture(revokedFixture);
        // A node with nothing left to release settles a ZK task as before.
        await expect(settle(f, await f.submit(), f.nodes[2])).to.emit(f.tasks, "TaskVerified");
        await time.increaseTo(BigInt(f.open.task.deadline) + 1n);
        const before = await f.token.balanceOf(f.requester.address);
        await expect(f.tasks.expire(f.open.taskId, f.open.task))
          .to.emit(f.tasks, "TaskExpired")
          .and.not.to.emit(f.tasks, "StakingCallFailed");
        expect(await f.token.balanceOf(f.requester.address)).to.equal(before + MODEL_FEE);
      });

      it("cannot be faked by a caller starving the staking calls of gas (the slash fails only for lack of role)", async function () {
        const f = await loadFixture(modesFixture);
        const node = f.nodes[0];
        const s = await claimed(f, node, { deadlineIn: 300 });
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
