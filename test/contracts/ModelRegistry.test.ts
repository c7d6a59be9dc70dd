import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { Groth16VerifierAdapter__factory, ModelRegistry__factory } from "../../typechain-types";
import type { IModelRegistry, ModelRegistry } from "../../typechain-types";
import { MODEL_FEE, TINY_PACK_BITS, defaultModelSpec, marketFixture } from "../helpers/market-fixture";
import { tinyInputWords, tinyOutputWord } from "../helpers/tiny-circuit";

type ModelSpec = IModelRegistry.ModelSpecStruct;

const SNARK_SCALAR_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const INLINE = 0;
const COMMITMENT = 1;
const MODES = { zk: 1, optimistic: 2, tee: 4, all: 7 };
const TINY_SIGNALS = 6;

/** The market, plus an empty ModelRegistry to register into from id 1. */
async function modelRegistryFixture() {
  const market = await marketFixture();
  const registry = await new ModelRegistry__factory(market.deployer).deploy();
  const adapterAddress = await market.adapter.getAddress();
  const spec = (overrides: Partial<ModelSpec> = {}): ModelSpec => ({
    ...defaultModelSpec(adapterAddress, market.modelOwner.address),
    ...overrides,
  });
  return { ...market, registry, adapterAddress, spec };
}

type Fixture = Awaited<ReturnType<typeof modelRegistryFixture>>;

/** Register `spec` on the fresh registry as the model owner and return the new id. */
async function register(f: Fixture, spec: ModelSpec) {
  const id = await f.registry.connect(f.modelOwner).registerModel.staticCall(spec);
  await f.registry.connect(f.modelOwner).registerModel(spec);
  return id;
}

/** Check a failing registration leaves the registry as it was. */
async function expectNoModelAdded(registry: ModelRegistry, failingCall: () => Promise<unknown>) {
  const before = await registry.modelCount();
  await failingCall();
  expect(await registry.modelCount()).to.equal(before);
}

/** The ModelSpec fields a `ModelRegistered` event carried, as plain values. */
function specOf(event: IModelRegistry.ModelSpecStructOutput) {
  return {
    name: event.name,
    onnxHash: event.onnxHash,
    verificationKeyHash: event.verificationKeyHash,
    bundleHash: event.bundleHash,
    verifier: event.verifier,
    royaltyReceiver: event.royaltyReceiver,
    fee: event.fee,
    verificationModes: Number(event.verificationModes),
    inputMode: Number(event.inputMode),
    inputWords: Number(event.inputWords),
    outputWords: Number(event.outputWords),
    scaleBits: Number(event.scaleBits),
    packBits: Number(event.packBits),
    inputShape: event.inputShape.map(Number),
    outputShape: event.outputShape.map(Number),
  };
}

describe("ModelRegistry", function () {
  describe("registerModel", function () {
    it("assigns ids from 1 and counts them", async function () {
      const f = await loadFixture(modelRegistryFixture);
      expect(await f.registry.modelCount()).to.equal(0n);
      expect(await register(f, f.spec())).to.equal(1n);
      expect(await register(f, f.spec({ name: "tiny-linear v2" }))).to.equal(2n);
      expect(await f.registry.modelCount()).to.equal(2n);
    });

    it("emits ModelRegistered with the owner and the full spec", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const spec = f.spec({
        royaltyReceiver: f.stranger.address,
        verificationModes: MODES.zk | MODES.tee,
        scaleBits: 8,
        inputShape: [1, 2, 2],
        outputShape: [1],
      });
      const tx = f.registry.connect(f.modelOwner).registerModel(spec);
      await expect(tx).to.emit(f.registry, "ModelRegistered");
      const receipt = await (await tx).wait();
      const [event] = await f.registry.queryFilter(
        f.registry.filters.ModelRegistered(),
        receipt!.blockNumber,
        receipt!.blockNumber,
      );
      expect(event.args.modelId).to.equal(1n);
      expect(event.args.owner).to.equal(f.modelOwner.address);
      expect(specOf(event.args.spec)).to.deep.equal(spec);
    });

    it("stores what getModel and taskTerms return", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const spec = f.spec({ verificationModes: MODES.all, scaleBits: 12, outputShape: [1, 1] });
      await register(f, spec);

      const model = await f.registry.getModel(1);
      expect(model.owner).to.equal(f.modelOwner.address);
      expect(model.onnxHash).to.equal(spec.onnxHash);
      expect(model.verificationKeyHash).to.equal(spec.verificationKeyHash);
      expect(model.bundleHash).to.equal(spec.bundleHash);
      expect(model.scaleBits).to.equal(12n);
      expect(model.packBits).to.equal(BigInt(TINY_PACK_BITS));
      expect(model.inputShape).to.deep.equal([1n, 4n]);
      expect(model.outputShape).to.deep.equal([1n, 1n]);

      const terms = await f.registry.taskTerms(1);
      expect(model.terms).to.deep.equal(terms);
      expect(terms.verifier).to.equal(f.adapterAddress);
      expect(terms.fee).to.equal(MODEL_FEE);
      expect(terms.royaltyReceiver).to.equal(f.modelOwner.address);
      expect(terms.active).to.equal(true);
      expect(terms.verificationModes).to.equal(BigInt(MODES.all));
      expect(terms.inputMode).to.equal(BigInt(INLINE));
      expect(terms.inputWords).to.equal(4n);
      expect(terms.outputWords).to.equal(1n);
    });

    it("accepts the widest layout: 252-bit packing and exactly 64 public signals", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await register(f, f.spec({ packBits: 252 }));
      await register(f, f.spec({ inputWords: 31, outputWords: 32 }));
      await register(f, f.spec({ inputMode: COMMITMENT, inputWords: 1 }));
      await register(f, f.spec({ inputShape: [1, 2, 3, 4, 5, 6, 7, 8], fee: 0 }));
      expect(await f.registry.modelCount()).to.equal(4n);
      expect((await f.registry.taskTerms(3)).inputMode).to.equal(BigInt(COMMITMENT));
      expect((await f.registry.taskTerms(4)).fee).to.equal(0n);
    });

    it("reverts with ModelRegistryZeroHash when any hash is zero", async function () {
      const f = await loadFixture(modelRegistryFixture);
      for (const field of ["onnxHash", "verificationKeyHash", "bundleHash"] as const) {
        await expectNoModelAdded(f.registry, () =>
          expect(f.registry.connect(f.modelOwner).registerModel(f.spec({ [field]: ethers.ZeroHash })))
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryZeroHash")
            .withArgs(),
        );
      }
    });

    it("reverts with ModelRegistryInvalidAddress for a verifier without code", async function () {
      const f = await loadFixture(modelRegistryFixture);
      for (const verifier of [ethers.ZeroAddress, f.stranger.address]) {
        await expectNoModelAdded(f.registry, () =>
          expect(f.registry.connect(f.modelOwner).registerModel(f.spec({ verifier })))
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidAddress")
            .withArgs(verifier),
        );
      }
    });

    it("reverts with ModelRegistryInvalidAddress for a zero royalty receiver", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expectNoModelAdded(f.registry, () =>
        expect(
          f.registry.connect(f.modelOwner).registerModel(f.spec({ royaltyReceiver: ethers.ZeroAddress })),
        )
          .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidAddress")
          .withArgs(ethers.ZeroAddress),
      );
    });

    it("reverts with ModelRegistryInvalidModes for an empty mask or an unknown bit", async function () {
      const f = await loadFixture(modelRegistryFixture);
      for (const verificationModes of [0, 8, MODES.all | 8, 255]) {
        await expectNoModelAdded(f.registry, () =>
          expect(f.registry.connect(f.modelOwner).registerModel(f.spec({ verificationModes })))
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidModes")
            .withArgs(verificationModes),
        );
      }
    });

    const invalidLayouts: [string, Partial<ModelSpec>][] = [
      ["zero input words", { inputWords: 0 }],
      ["zero output words", { outputWords: 0 }],
      ["packBits 0", { packBits: 0 }],
      ["packBits 253", { packBits: 253 }],
      ["commitment mode with 2 input words", { inputMode: COMMITMENT, inputWords: 2 }],
      ["65 public signals", { inputWords: 32, outputWords: 32 }],
      ["65,535 input words", { inputWords: 65535, outputWords: 1 }],
    ];
    for (const [what, overrides] of invalidLayouts) {
      it(`reverts with ModelRegistryInvalidLayout for ${what}`, async function () {
        const f = await loadFixture(modelRegistryFixture);
        const spec = f.spec(overrides);
        await expectNoModelAdded(f.registry, () =>
          expect(f.registry.connect(f.modelOwner).registerModel(spec))
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidLayout")
            .withArgs(spec.inputWords, spec.outputWords, spec.packBits),
        );
      });
    }

    const invalidShapes: [string, number[]][] = [
      ["empty", []],
      ["rank 9", [1, 1, 1, 1, 1, 1, 1, 1, 1]],
      ["a zero dimension", [1, 0, 4]],
    ];
    for (const [what, shape] of invalidShapes) {
      for (const field of ["inputShape", "outputShape"] as const) {
        it(`reverts with ModelRegistryInvalidShape for an ${field} that is ${what}`, async function () {
          const f = await loadFixture(modelRegistryFixture);
          await expectNoModelAdded(f.registry, () =>
            expect(f.registry.connect(f.modelOwner).registerModel(f.spec({ [field]: shape })))
              .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidShape")
              .withArgs(),
          );
        });
      }
    }
  });

  describe("setFee", function () {
    it("lets the owner change the fee and emits ModelFeeUpdated", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const fee = ethers.parseEther("12.5");
      await expect(f.models.connect(f.modelOwner).setFee(f.modelId, fee))
        .to.emit(f.models, "ModelFeeUpdated")
        .withArgs(f.modelId, fee);
      expect((await f.models.taskTerms(f.modelId)).fee).to.equal(fee);
      expect((await f.models.getModel(f.modelId)).terms.fee).to.equal(fee);
    });

    it("applies to new tasks only: a submitted task keeps its fee and the new minimum is enforced", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const before = await f.submit([1n, 2n, 3n, 4n]);
      const fee = MODEL_FEE * 2n;
      await f.models.connect(f.modelOwner).setFee(f.modelId, fee);
      expect(before.task.fee).to.equal(MODEL_FEE);
      await expect(f.submit([1n, 2n, 3n, 4n], { fee: MODEL_FEE }))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryInvalidFee")
        .withArgs(MODEL_FEE, fee);
      expect((await f.submit([1n, 2n, 3n, 4n], { fee })).task.fee).to.equal(fee);
    });

    it("reverts with ModelRegistryNotModelOwner for anyone else", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.stranger).setFee(f.modelId, 1n))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryNotModelOwner")
        .withArgs(f.modelId, f.stranger.address);
      expect((await f.models.taskTerms(f.modelId)).fee).to.equal(MODEL_FEE);
    });

    it("reverts with ModelRegistryUnknownModel for an unregistered id", async function () {
      const f = await loadFixture(modelRegistryFixture);
      for (const id of [0n, 2n]) {
        await expect(f.models.connect(f.modelOwner).setFee(id, 1n))
          .to.be.revertedWithCustomError(f.models, "ModelRegistryUnknownModel")
          .withArgs(id);
      }
    });
  });

  describe("setRoyaltyReceiver", function () {
    it("lets the owner change the receiver and emits ModelRoyaltyReceiverUpdated", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).setRoyaltyReceiver(f.modelId, f.stranger.address))
        .to.emit(f.models, "ModelRoyaltyReceiverUpdated")
        .withArgs(f.modelId, f.stranger.address);
      expect((await f.models.taskTerms(f.modelId)).royaltyReceiver).to.equal(f.stranger.address);
      expect((await f.submit()).task.royaltyReceiver).to.equal(f.stranger.address);
    });

    it("reverts with ModelRegistryInvalidAddress for the zero address", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).setRoyaltyReceiver(f.modelId, ethers.ZeroAddress))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryInvalidAddress")
        .withArgs(ethers.ZeroAddress);
      expect((await f.models.taskTerms(f.modelId)).royaltyReceiver).to.equal(f.modelOwner.address);
    });

    it("reverts with ModelRegistryNotModelOwner for anyone else", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.stranger).setRoyaltyReceiver(f.modelId, f.stranger.address))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryNotModelOwner")
        .withArgs(f.modelId, f.stranger.address);
    });

    it("reverts with ModelRegistryUnknownModel for an unregistered id", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).setRoyaltyReceiver(7n, f.stranger.address))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryUnknownModel")
        .withArgs(7n);
    });
  });

  describe("setActive", function () {
    it("deactivates and reactivates, emitting ModelActiveSet each time", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).setActive(f.modelId, false))
        .to.emit(f.models, "ModelActiveSet")
        .withArgs(f.modelId, false);
      expect((await f.models.taskTerms(f.modelId)).active).to.equal(false);
      await expect(f.models.connect(f.modelOwner).setActive(f.modelId, true))
        .to.emit(f.models, "ModelActiveSet")
        .withArgs(f.modelId, true);
      expect((await f.models.taskTerms(f.modelId)).active).to.equal(true);
    });

    it("stops new tasks while a task already submitted still settles with a real proof", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const node = f.nodes[0];
      const values = [4n, -3n, 2n, 1n];
      const submitted = await f.submit(values);
      await f.models.connect(f.modelOwner).setActive(f.modelId, false);

      await expect(f.submit(values))
        .to.be.revertedWithCustomError(f.tasks, "TaskRegistryModelUnavailable")
        .withArgs(f.modelId);

      await f.tasks.connect(node).claimTask(submitted.taskId, submitted.task);
      const { proof, outputs } = await f.prove(submitted, node);
      await expect(
        f.tasks.connect(node).submitResult(submitted.taskId, submitted.task, submitted.input, outputs, proof),
      ).to.emit(f.tasks, "TaskVerified");
      expect((await f.tasks.resultOf(submitted.taskId)).outputs).to.deep.equal([tinyOutputWord(values)]);
    });

    it("reverts with ModelRegistryNotModelOwner for anyone else", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.stranger).setActive(f.modelId, false))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryNotModelOwner")
        .withArgs(f.modelId, f.stranger.address);
      expect((await f.models.taskTerms(f.modelId)).active).to.equal(true);
    });

    it("reverts with ModelRegistryUnknownModel for an unregistered id", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).setActive(0n, false))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryUnknownModel")
        .withArgs(0n);
    });
  });

  describe("transferModelOwnership", function () {
    it("hands the model over: the new owner governs it, the old one no longer does", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).transferModelOwnership(f.modelId, f.stranger.address))
        .to.emit(f.models, "ModelOwnershipTransferred")
        .withArgs(f.modelId, f.modelOwner.address, f.stranger.address);
      expect((await f.models.getModel(f.modelId)).owner).to.equal(f.stranger.address);

      await expect(f.models.connect(f.stranger).setFee(f.modelId, 1n))
        .to.emit(f.models, "ModelFeeUpdated")
        .withArgs(f.modelId, 1n);
      await expect(f.models.connect(f.modelOwner).setFee(f.modelId, 2n))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryNotModelOwner")
        .withArgs(f.modelId, f.modelOwner.address);
      // The royalty receiver is separate from ownership and stays until the new owner changes it.
      expect((await f.models.taskTerms(f.modelId)).royaltyReceiver).to.equal(f.modelOwner.address);
    });

    it("reverts with ModelRegistryInvalidAddress for the zero address", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).transferModelOwnership(f.modelId, ethers.ZeroAddress))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryInvalidAddress")
        .withArgs(ethers.ZeroAddress);
      expect((await f.models.getModel(f.modelId)).owner).to.equal(f.modelOwner.address);
    });

    it("reverts with ModelRegistryNotModelOwner for anyone else", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.stranger).transferModelOwnership(f.modelId, f.stranger.address))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryNotModelOwner")
        .withArgs(f.modelId, f.stranger.address);
    });

    it("reverts with ModelRegistryUnknownModel for an unregistered id", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expect(f.models.connect(f.modelOwner).transferModelOwnership(3n, f.stranger.address))
        .to.be.revertedWithCustomError(f.models, "ModelRegistryUnknownModel")
        .withArgs(3n);
    });
  });

  describe("views", function () {
    it("taskTerms and getModel revert with ModelRegistryUnknownModel for ids 0 and count + 1", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const next = (await f.models.modelCount()) + 1n;
      for (const id of [0n, next, ethers.MaxUint256]) {
        await expect(f.models.taskTerms(id))
          .to.be.revertedWithCustomError(f.models, "ModelRegistryUnknownModel")
          .withArgs(id);
        await expect(f.models.getModel(id))
          .to.be.revertedWithCustomError(f.models, "ModelRegistryUnknownModel")
          .withArgs(id);
      }
    });

    it("modelCount is the last id", async function () {
      const f = await loadFixture(modelRegistryFixture);
      expect(await f.models.modelCount()).to.equal(1n);
      await f.models.connect(f.stranger).registerModel(f.spec({ name: "other" }));
      expect(await f.models.modelCount()).to.equal(2n);
      expect((await f.models.getModel(2n)).owner).to.equal(f.stranger.address);
    });
  });

  describe("immutability", function () {
    it("has no function that changes hashes, verifier, shapes or layout of a registered model", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const mutating = f.models.interface.fragments
        .filter((fragment) => fragment.type === "function")
        .map((fragment) => fragment as unknown as { name: string; stateMutability: string })
        .filter((fn) => fn.stateMutability !== "view" && fn.stateMutability !== "pure")
        .map((fn) => fn.name)
        .sort();
      expect(mutating).to.deep.equal([
        "registerModel",
        "setActive",
        "setFee",
        "setRoyaltyReceiver",
        "transferModelOwnership",
      ]);
    });

    it("keeps hashes, verifier and layout through every owner update", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const before = await f.models.getModel(f.modelId);
      await f.models.connect(f.modelOwner).setFee(f.modelId, 1n);
      await f.models.connect(f.modelOwner).setRoyaltyReceiver(f.modelId, f.stranger.address);
      await f.models.connect(f.modelOwner).setActive(f.modelId, false);
      await f.models.connect(f.modelOwner).transferModelOwnership(f.modelId, f.stranger.address);
      const after = await f.models.getModel(f.modelId);
      expect([after.onnxHash, after.verificationKeyHash, after.bundleHash]).to.deep.equal([
        before.onnxHash,
        before.verificationKeyHash,
        before.bundleHash,
      ]);
      expect(after.terms.verifier).to.equal(before.terms.verifier);
      expect([after.terms.inputMode, after.terms.inputWords, after.terms.outputWords]).to.deep.equal([
        before.terms.inputMode,
        before.terms.inputWords,
        before.terms.outputWords,
      ]);
      expect([after.scaleBits, after.packBits]).to.deep.equal([before.scaleBits, before.packBits]);
      expect(after.inputShape).to.deep.equal(before.inputShape);
      expect(after.outputShape).to.deep.equal(before.outputShape);
    });
  });
});

describe("Groth16VerifierAdapter", function () {
  /** The adapter's verify() arguments for a real proof of `values` by node 0 on a fresh task. */
  async function provedSignals(f: Fixture, values: bigint[]) {
    const node = f.nodes[0];
    const submitted = await f.submit(values);
    const { proof, outputs } = await f.prove(submitted, node);
    const binding = await f.tasks.taskBinding(submitted.taskId, node.address);
    return { proof, signals: [...outputs, ...submitted.input, binding] };
  }

  describe("constructor", function () {
    it("reverts with Groth16VerifierAdapterInvalidConfig for a verifier without code", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const factory = new Groth16VerifierAdapter__factory(f.deployer);
      for (const verifier of [ethers.ZeroAddress, f.stranger.address]) {
        await expect(factory.deploy(verifier, TINY_SIGNALS))
          .to.be.revertedWithCustomError(factory, "Groth16VerifierAdapterInvalidConfig")
          .withArgs(verifier, TINY_SIGNALS);
      }
    });

    it("reverts with Groth16VerifierAdapterInvalidConfig for zero public signals", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const factory = new Groth16VerifierAdapter__factory(f.deployer);
      const groth16 = await f.groth16.getAddress();
      await expect(factory.deploy(groth16, 0))
        .to.be.revertedWithCustomError(factory, "Groth16VerifierAdapterInvalidConfig")
        .withArgs(groth16, 0);
    });
  });

  describe("publicSignalCount", function () {
    it("returns the count it was built with, and wraps the snarkjs verifier", async function () {
      const f = await loadFixture(modelRegistryFixture);
      expect(await f.adapter.publicSignalCount()).to.equal(BigInt(TINY_SIGNALS));
      expect(await f.adapter.groth16Verifier()).to.equal(await f.groth16.getAddress());
    });
  });

  describe("verify", function () {
    it("returns true for a real proof of the tiny circuit", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const values = [1n, 2n, 3n, 4n];
      const { proof, signals } = await provedSignals(f, values);
      expect(signals[0]).to.equal(tinyOutputWord(values));
      expect(signals.slice(1, 5)).to.deep.equal(tinyInputWords(values));
      expect(await f.adapter.verify(proof, signals)).to.equal(true);
    });

    it("returns false for a tampered output, input, binding or proof word", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const { proof, signals } = await provedSignals(f, [-7n, 11n, 0n, 300n]);
      for (const index of [0, 1, 4, 5]) {
        const tampered = [...signals];
        tampered[index] += 1n;
        expect(await f.adapter.verify(proof, tampered), `signal ${index}`).to.equal(false);
      }
      for (const index of [0, 3, 7]) {
        const tampered = [...proof];
        tampered[index] = (tampered[index] + 1n) % SNARK_SCALAR_FIELD;
        expect(await f.adapter.verify(tampered, signals), `proof word ${index}`).to.equal(false);
      }
    });

    it("returns false for a signal at or above the field modulus (no silent reduction)", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const { proof, signals } = await provedSignals(f, [1n, 1n, 1n, 1n]);
      const aliased = [signals[0] + SNARK_SCALAR_FIELD, ...signals.slice(1)];
      expect(await f.adapter.verify(proof, aliased)).to.equal(false);
    });

    it("returns false when the adapter's count does not match the verifier's circuit", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const { proof, signals } = await provedSignals(f, [1n, 2n, 3n, 4n]);
      const mismatched = await new Groth16VerifierAdapter__factory(f.deployer).deploy(
        await f.groth16.getAddress(),
        5,
      );
      expect(await mismatched.verify(proof, signals.slice(0, 5))).to.equal(false);
    });

    it("reverts with ProofVerifierSignalCount for the wrong number of signals", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const { proof, signals } = await provedSignals(f, [1n, 2n, 3n, 4n]);
      for (const given of [signals.slice(0, 5), [...signals, 0n], []]) {
        await expect(f.adapter.verify(proof, given))
          .to.be.revertedWithCustomError(f.adapter, "ProofVerifierSignalCount")
          .withArgs(given.length, TINY_SIGNALS);
      }
    });
  });
});
