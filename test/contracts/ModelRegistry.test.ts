import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { Groth16Harness__factory, ModelRegistry__factory } from "../../typechain-types";
import type { IModelRegistry, ModelRegistry } from "../../typechain-types";
import { MODEL_FEE, TINY_PACK_BITS, defaultModelSpec, marketFixture } from "../helpers/market-fixture";
import { TINY_INPUT_BITS, tinyInputWords, tinyOutputWord } from "../helpers/tiny-circuit";
import { readVerifiedResult } from "../../workers/runtime/tasks";

type ModelSpec = IModelRegistry.ModelSpecStruct;

const SNARK_SCALAR_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const BASE_FIELD = 21888242871839275222246405745257275088696311157297823662689037894645226208583n;
const INLINE = 0;
const COMMITMENT = 1;
const MODES = { zk: 1, optimistic: 2, tee: 4, all: 7 };
const TINY_SIGNALS = 6;

/** Words of a key for `signals` public signals: 14 fixed + 2 per IC point. */
const keyWords = (signals: number) => 14 + 2 * (signals + 1);

/** The market, plus an empty ModelRegistry to register into from id 1. */
async function modelRegistryFixture() {
  const market = await marketFixture();
  const registry = await new ModelRegistry__factory(market.deployer).deploy();
  const spec = (overrides: Partial<ModelSpec> = {}): ModelSpec => ({
    ...defaultModelSpec(market.modelOwner.address),
    ...overrides,
  });
  /** A valid key for `signals` public signals: the tiny circuit's, with IC points added (the G1
   * generator) or dropped. Valid points, so only the layout decides whether it fits. */
  const keyFor = (signals: number): bigint[] => {
    const key = market.verificationKey.slice(0, keyWords(Math.min(signals, TINY_SIGNALS)));
    while (key.length < keyWords(signals)) key.push(1n, 2n);
    return key;
  };
  return { ...market, registry, spec, keyFor };
}

type Fixture = Awaited<ReturnType<typeof modelRegistryFixture>>;

/** Register `spec` on the fresh registry as the model owner (with a key that fits it) and return the id. */
async function register(f: Fixture, spec: ModelSpec, key?: bigint[]) {
  const words = key ?? f.keyFor(Number(spec.inputWords) + Number(spec.outputWords) + 1);
  const id = await f.registry.connect(f.modelOwner).registerModel.staticCall(spec, words);
  await f.registry.connect(f.modelOwner).registerModel(spec, words);
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
    bundleHash: event.bundleHash,
    royaltyReceiver: event.royaltyReceiver,
    fee: event.fee,
    verificationModes: Number(event.verificationModes),
    inputMode: Number(event.inputMode),
    inputWords: Number(event.inputWords),
    outputWords: Number(event.outputWords),
    scaleBits: Number(event.scaleBits),
    packBits: Number(event.packBits),
    inputBits: Number(event.inputBits),
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

    it("emits ModelRegistered with the owner, the full spec and where the key is stored", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const spec = f.spec({
        royaltyReceiver: f.stranger.address,
        verificationModes: MODES.zk | MODES.tee,
        scaleBits: 8,
        inputShape: [1, 4, 6],
        outputShape: [1],
      });
      const tx = f.registry.connect(f.modelOwner).registerModel(spec, f.verificationKey);
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
      expect(event.args.verificationKey).to.equal((await f.registry.taskTerms(1)).verificationKey);
      expect(event.args.verificationKeyHash).to.equal(f.circuit.verificationKeyHash);
    });

    it("stores what getModel, taskTerms and verificationKeyOf return", async function () {
      const f = await loadFixture(modelRegistryFixture);
      const spec = f.spec({ verificationModes: MODES.all, scaleBits: 12, outputShape: [1, 1] });
      await register(f, spec, f.verificationKey);

      const model = await f.registry.getModel(1);
      expect(model.owner).to.equal(f.modelOwner.address);
      expect(model.onnxHash).to.equal(spec.onnxHash);
      expect(model.verificationKeyHash).to.equal(f.circuit.verificationKeyHash);
      expect(model.bundleHash).to.equal(spec.bundleHash);
      expect(model.scaleBits).to.equal(12n);
      expect(model.packBits).to.equal(BigInt(TINY_PACK_BITS));
      expect(model.inputBits).to.equal(BigInt(TINY_INPUT_BITS));
      expect(model.inputShape).to.deep.equal([1n, 24n]);
      expect(model.outputShape).to.deep.equal([1n, 1n]);

      const terms = await f.registry.taskTerms(1);
      expect(model.terms).to.deep.equal(terms);
      expect(await ethers.provider.getCode(terms.verificationKey)).to.not.equal("0x");
      expect(await f.registry.verificationKeyOf(1)).to.deep.equal(f.verificationKey);
      expect(terms.fee).to.equal(MODEL_FEE);
      expect(terms.royaltyReceiver).to.equal(f.modelOwner.address);
      expect(terms.active).to.equal(true);
      expect(terms.verificationModes).to.equal(BigInt(MODES.all));
      expect(terms.inputMode).to.equal(BigInt(INLINE));
      expect(terms.inputWords).to.equal(4n);
      expect(terms.outputWords).to.equal(1n);
      expect(terms.packBits).to.equal(BigInt(TINY_PACK_BITS));
      expect(terms.inputBits).to.equal(BigInt(TINY_INPUT_BITS));
      expect(terms.inputValues).to.equal(24n);
    });

    it("registers a model without ZK mode with no key", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await register(f, f.spec({ verificationModes: MODES.tee }), []);
      expect((await f.registry.taskTerms(1)).verificationKey).to.equal(ethers.ZeroAddress);
      expect(await f.registry.verificationKeyOf(1)).to.deep.equal([]);
      expect((await f.registry.getModel(1)).verificationKeyHash).to.equal(ethers.ZeroHash);
    });

    it("accepts the extreme layouts: 126-bit and 2-bit packing, 64 public signals, commitment mode", async function () {
      const f = await loadFixture(modelRegistryFixture);
      // 126 bits: 2 values per word; 2 bits: 126 values per word.
      await register(f, f.spec({ packBits: 126, inputWords: 12, outputWords: 1 }));
      await register(f, f.spec({ packBits: 2, inputBits: 2, inputWords: 1, outputWords: 1 }));
      // 31 + 32 + 1 = 64 signals: 186 inputs and 192 outputs at 6 per word.
      await register(
        f,
        f.spec({ inputWords: 31, outputWords: 32, inputShape: [1, 186], outputShape: [2, 96] }),
      );
      await register(
        f,
        f.spec({ inputMode: COMMITMENT, inputWords: 1, inputBits: 100, inputShape: [1, 784] }),
      );
      await register(f, f.spec({ inputShape: [1, 1, 1, 1, 1, 1, 4, 6], fee: 0 }));
      expect(await f.registry.modelCount()).to.equal(5n);
      expect((await f.registry.taskTerms(4)).inputMode).to.equal(BigInt(COMMITMENT));
      expect((await f.registry.taskTerms(5)).fee).to.equal(0n);
    });

    it("reverts with ModelRegistryZeroHash when any hash is zero", async function () {
      const f = await loadFixture(modelRegistryFixture);
      for (const field of ["onnxHash", "bundleHash"] as const) {
        await expectNoModelAdded(f.registry, () =>
          expect(
            f.registry
              .connect(f.modelOwner)
              .registerModel(f.spec({ [field]: ethers.ZeroHash }), f.verificationKey),
          )
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryZeroHash")
            .withArgs(),
        );
      }
    });

    it("reverts with ModelRegistryInvalidAddress for a zero royalty receiver", async function () {
      const f = await loadFixture(modelRegistryFixture);
      await expectNoModelAdded(f.registry, () =>
        expect(
          f.registry
            .connect(f.modelOwner)
            .registerModel(f.spec({ royaltyReceiver: ethers.ZeroAddress }), f.verificationKey),
        )
          .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidAddress")
          .withArgs(ethers.ZeroAddress),
      );
    });

    it("reverts with ModelRegistryInvalidModes for an empty mask or an unknown bit", async function () {
      const f = await loadFixture(modelRegistryFixture);
      for (const verificationModes of [0, 8, MODES.all | 8, 255]) {
        await expectNoModelAdded(f.registry, () =>
          expect(
            f.registry.connect(f.modelOwner).registerModel(f.spec({ verificationModes }), f.verificationKey),
          )
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidModes")
            .withArgs(verificationModes),
        );
      }
    });

    const invalidLayouts: [string, Partial<ModelSpec>][] = [
      ["zero input words", { inputWords: 0 }],
      ["zero output words", { outputWords: 0 }],
      ["input words that do not match the input shape", { inputWords: 5 }],
      ["output words that do not match the output shape", { outputWords: 2 }],
      ["packBits 0", { packBits: 0 }],
      ["packBits 1", { packBits: 1, inputBits: 1 }],
      ["packBits 127 (above what the toolchain packs)", { packBits: 127, inputWords: 12 }],
      ["packBits 253", { packBits: 253 }],
      ["inline inputBits above packBits", { inputBits: TINY_PACK_BITS + 1 }],
      ["inputBits 1", { inputBits: 1 }],
      ["commitment mode with 2 input words", { inputMode: COMMITMENT, inputWords: 2 }],
      ["65 public signals", { inputWords: 32, outputWords: 32, inputShape: [1, 192], outputShape: [1, 192] }],
      ["65,535 input words", { inputWords: 65535, outputWords: 1 }],
    ];
    for (const [what, overrides] of invalidLayouts) {
      it(`reverts with ModelRegistryInvalidLayout for ${what}`, async function () {
        const f = await loadFixture(modelRegistryFixture);
        const spec = f.spec(overrides);
        await expectNoModelAdded(f.registry, () =>
          expect(f.registry.connect(f.modelOwner).registerModel(spec, f.verificationKey))
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidLayout")
            .withArgs(spec.inputWords, spec.outputWords, spec.packBits),
        );
      });
    }

    const invalidShapes: [string, number[]][] = [
      ["empty", []],
      ["rank 9", [1, 1, 1, 1, 1, 1, 1, 1, 1]],
      ["a zero dimension", [1, 0, 4]],
      ["more than 2^24 values", [4096, 4096, 2]],
    ];
    for (const [what, shape] of invalidShapes) {
      for (const field of ["inputShape", "outputShape"] as const) {
        it(`reverts with ModelRegistryInvalidShape for an ${field} that is ${what}`, async function () {
          const f = await loadFixture(modelRegistryFixture);
          await expectNoModelAdded(f.registry, () =>
            expect(
              f.registry.connect(f.modelOwner).registerModel(f.spec({ [field]: shape }), f.verificationKey),
            )
              .to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidShape")
              .withArgs(),
          );
        });
      }
    }

    describe("the verification key", function () {
      it("reverts with ModelRegistryVerificationKeyLength for a key that does not fit the signal layout", async function () {
        const f = await loadFixture(modelRegistryFixture);
        // A key for 5 or 7 signals, for a model whose layout has 6; and a key given without ZK mode.
        for (const key of [f.keyFor(5), f.keyFor(7), []]) {
          await expectNoModelAdded(f.registry, () =>
            expect(f.registry.connect(f.modelOwner).registerModel(f.spec(), key))
              .to.be.revertedWithCustomError(f.registry, "ModelRegistryVerificationKeyLength")
              .withArgs(key.length, keyWords(TINY_SIGNALS)),
          );
        }
        await expectNoModelAdded(f.registry, () =>
          expect(
            f.registry
              .connect(f.modelOwner)
              .registerModel(f.spec({ verificationModes: MODES.tee }), f.verificationKey),
          )
            .to.be.revertedWithCustomError(f.registry, "ModelRegistryVerificationKeyLength")
            .withArgs(f.verificationKey.length, 0),
        );
      });

      it("reverts with ModelRegistryInvalidVerificationKey for a coordinate out of the field, a point off the curve, a point at infinity or gamma = delta", async function () {
        const f = await loadFixture(modelRegistryFixture);
        const k = f.verificationKey;
        const broken: [string, bigint[]][] = [
          ["alpha.x at the field modulus", [BASE_FIELD, ...k.slice(1)]],
          ["alpha off the curve", [k[0], k[1] + 1n, ...k.slice(2)]],
          ["alpha at infinity", [0n, 0n, ...k.slice(2)]],
          ["beta off the curve", [...k.slice(0, 2), k[2] + 1n, ...k.slice(3)]],
          ["gamma off the curve", [...k.slice(0, 6), k[6] + 1n, ...k.slice(7)]],
          ["delta off the curve", [...k.slice(0, 13), k[13] + 1n, ...k.slice(14)]],
          ["delta at infinity", [...k.slice(0, 10), 0n, 0n, 0n, 0n, ...k.slice(14)]],
          ["delta equal to gamma", [...k.slice(0, 10), ...k.slice(6, 10), ...k.slice(14)]],
          ["an IC point off the curve", [...k.slice(0, 16), k[16] + 1n, ...k.slice(17)]],
        ];
        for (const [what, key] of broken) {
          expect(key.length, what).to.equal(k.length);
          await expectNoModelAdded(f.registry, () =>
            expect(
              f.registry.connect(f.modelOwner).registerModel(f.spec(), key),
              what,
            ).to.be.revertedWithCustomError(f.registry, "ModelRegistryInvalidVerificationKey"),
          );
        }
      });
    });
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

      // No claim: the proof binds the node that submits it.
      const { proof, outputs } = await f.prove(submitted, node);
      await expect(
        f.tasks.connect(node).submitResult(submitted.taskId, submitted.task, submitted.input, outputs, proof),
      ).to.emit(f.tasks, "TaskVerified");
      const result = await readVerifiedResult(f.tasks, submitted.taskId);
      expect(result!.outputs).to.deep.equal([tinyOutputWord(values)]);
      expect(result!.node).to.equal(node.address);
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
      await f.models.connect(f.stranger).registerModel(f.spec({ name: "other" }), f.verificationKey);
      expect(await f.models.modelCount()).to.equal(2n);
      expect((await f.models.getModel(2n)).owner).to.equal(f.stranger.address);
    });
  });

  describe("immutability", function () {
    it("has no function that changes hashes, key, shapes or layout of a registered model", async function () {
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
        "setAttestationQuorum",
        "setFee",
        "setRoyaltyReceiver",
        "transferModelOwnership",
      ]);
    });

    it("keeps hashes, key and layout through every owner update", async function () {
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
      expect(after.terms.verificationKey).to.equal(before.terms.verificationKey);
      expect(await f.models.verificationKeyOf(f.modelId)).to.deep.equal(f.verificationKey);
      expect([after.terms.inputMode, after.terms.inputWords, after.terms.outputWords]).to.deep.equal([
        before.terms.inputMode,
        before.terms.inputWords,
        before.terms.outputWords,
      ]);
      expect([after.scaleBits, after.packBits, after.inputBits]).to.deep.equal([
        before.scaleBits,
        before.packBits,
        before.inputBits,
      ]);
      expect(after.inputShape).to.deep.equal(before.inputShape);
      expect(after.outputShape).to.deep.equal(before.outputShape);
    });
  });
});

describe("Groth16 (the protocol verifier)", function () {
  async function harnessFixture() {
    const f = await modelRegistryFixture();
    const harness = await new Groth16Harness__factory(f.deployer).deploy();
    const pointer = (await f.models.taskTerms(f.modelId)).verificationKey;
    const snarkjsVerifier = await new ethers.ContractFactory(
      f.circuit.verifierAbi as never,
      f.circuit.verifierBytecode,
      f.deployer,
    ).deploy();
    return { ...f, harness, pointer, snarkjsVerifier };
  }

  /** verify() arguments for a real proof of `values` by node 0 on a fresh task. */
  async function provedSignals(f: Awaited<ReturnType<typeof harnessFixture>>, values: bigint[]) {
    const node = f.nodes[0];
    const submitted = await f.submit(values);
    const { proof, outputs } = await f.prove(submitted, node);
    const binding = await f.tasks.taskBinding(submitted.taskId, node.address);
    return { proof, signals: [...outputs, ...submitted.input, binding] };
  }

  it("stores a key as code and loads it back word for word", async function () {
    const f = await loadFixture(harnessFixture);
    expect(await f.harness.load(f.pointer)).to.deep.equal(f.verificationKey);
    expect(await f.harness.load(f.stranger.address)).to.deep.equal([]);
    expect(await f.harness.isValidKey(f.verificationKey)).to.equal(true);
  });

  // The protocol verifier reads the key from code (a cold account access, 2,600 gas, plus the copy) where
  // snarkjs's has it inline; in settlement it saves the two external calls the old adapter path made.
  it("accepts a real proof, within 3% of the gas of snarkjs's generated verifier for the same key", async function () {
    const f = await loadFixture(harnessFixture);
    const values = [1n, 2n, 3n, 4n];
    const { proof, signals } = await provedSignals(f, values);
    expect(signals[0]).to.equal(tinyOutputWord(values));
    expect(signals.slice(1, 5)).to.deep.equal(tinyInputWords(values));
    expect(await f.harness.verify(f.pointer, proof, signals)).to.equal(true);
    const a = [proof[0], proof[1]];
    const b = [
      [proof[2], proof[3]],
      [proof[4], proof[5]],
    ];
    const c = [proof[6], proof[7]];
    const verifyProof = f.snarkjsVerifier.getFunction("verifyProof");
    expect(await verifyProof(a, b, c, signals)).to.equal(true);
    const ours = await f.harness.verify.estimateGas(f.pointer, proof, signals);
    const theirs = await verifyProof.estimateGas(a, b, c, signals);
    console.log(
      `      Groth16 with 6 signals: protocol verifier ${ours} gas, snarkjs verifier ${theirs} gas ` +
        `(ratio ${(Number(ours) / Number(theirs)).toFixed(3)}, both via estimateGas with intrinsic gas)`,
    );
    expect(ours).to.be.at.most((theirs * 103n) / 100n);
  });

  it("rejects a tampered output, input, binding or proof word", async function () {
    const f = await loadFixture(harnessFixture);
    const { proof, signals } = await provedSignals(f, [-7n, 11n, 0n, 300n]);
    for (const index of [0, 1, 4, 5]) {
      const tampered = [...signals];
      tampered[index] += 1n;
      expect(await f.harness.verify(f.pointer, proof, tampered), `signal ${index}`).to.equal(false);
    }
    for (const index of [0, 1, 3, 7]) {
      const tampered = [...proof];
      tampered[index] = (tampered[index] + 1n) % BASE_FIELD;
      expect(await f.harness.verify(f.pointer, tampered, signals), `proof word ${index}`).to.equal(false);
    }
  });

  it("rejects a signal at or above the scalar field and a proof word at or above the base field (no silent reduction)", async function () {
    const f = await loadFixture(harnessFixture);
    const { proof, signals } = await provedSignals(f, [1n, 1n, 1n, 1n]);
    const aliased = [signals[0] + SNARK_SCALAR_FIELD, ...signals.slice(1)];
    expect(await f.harness.verify(f.pointer, proof, aliased)).to.equal(false);
    // -A is computed mod q: a y coordinate given as y + q would otherwise pass for y.
    const malleable = [...proof];
    malleable[1] += BASE_FIELD;
    expect(await f.harness.verify(f.pointer, malleable, signals)).to.equal(false);
  });

  it("rejects a key whose size does not fit the signals, and an address with no key", async function () {
    const f = await loadFixture(harnessFixture);
    const { proof, signals } = await provedSignals(f, [1n, 2n, 3n, 4n]);
    expect(await f.harness.verify(f.pointer, proof, signals.slice(0, 5))).to.equal(false);
    expect(await f.harness.verify(f.pointer, proof, [...signals, 0n])).to.equal(false);
    expect(await f.harness.verify(f.stranger.address, proof, signals)).to.equal(false);
  });
});
