import { expect } from "chai";
import { ethers } from "ethers";
import { loadConfig } from "../../workers/runtime/config";
import { inferenceSchema } from "../../workers/inference/config";
import { policySkipReason } from "../../workers/inference/node";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { servedKeyProblem, ServedKeyChecks } from "../../workers/inference/served-key";
import { BundleRejectedError, type LoadedBundle } from "../../workers/runtime/bundles";
import { snarkjsKeyFromWords } from "../../workers/runtime/audit";
import { decodeTaskInput, inlineInputValues, InputRejectedError } from "../../workers/runtime/task-input";
import { parseSubmitted, taskRegistryInterface, type SubmittedTask } from "../../workers/runtime/tasks";
import type { DataClient } from "../../workers/data/client";
import {
  packValues,
  verificationKeyHash,
  verificationKeyWords,
  type BundleManifest,
  type SnarkjsVerificationKey,
} from "../../zkml";

/** The parts of an inline-input manifest the input checks read: 4 values of 16 bits, range-checked to 12. */
const manifest = {
  publicSignals: {
    inputMode: "inline",
    inputCount: 4,
    inputWords: 1,
    outputCount: 3,
    outputWords: 1,
    packBits: 16,
    bindingIndex: 2,
  },
  quantization: { scaleBits: 8, activationBits: 24, inputBits: 12, commitmentPackBits: 16 },
} as unknown as BundleManifest;

const noData = {} as DataClient;

function crafted(input: bigint[]): SubmittedTask {
  return {
    taskId: 1n,
    modelId: 1n,
    input,
    task: {
      requester: ethers.ZeroAddress,
      modelId: 1n,
      fee: 1n,
      deadline: 2_000_000_000n,
      verificationKey: ethers.ZeroAddress,
      royaltyReceiver: ethers.ZeroAddress,
      callback: ethers.ZeroAddress,
      callbackGasLimit: 0n,
      outputWords: 1n,
      protocolFeeBps: 1000n,
      royaltyBps: 1000n,
      inputHash: ethers.ZeroHash,
      inputDataHash: ethers.ZeroHash,
      mode: 1n,
      attestationQuorum: 0n,
      attesterFeeBps: 0n,
    },
  };
}

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(InputRejectedError);
    return (e as Error).message;
  }
  return expect.fail("expected the input to be refused");
}

/** A Groth16 key in snarkjs's form with distinct coordinates (not on the curve: only word order matters). */
function sampleKey(nPublic: number, seed = 1): SnarkjsVerificationKey {
  let n = seed * 1000;
  const next = () => String(n++);
  const g1 = () => [next(), next(), "1"];
  const g2 = () => [
    [next(), next()],
    [next(), next()],
    ["1", "0"],
  ];
  return {
    protocol: "groth16",
    curve: "bn128",
    nPublic,
    vk_alpha_1: g1(),
    vk_beta_2: g2(),
    vk_gamma_2: g2(),
    vk_delta_2: g2(),
    IC: Array.from({ length: nPublic + 1 }, g1),
  };
}

describe("inference node: checks before claiming", function () {
  describe("inline input (issue 8 item 2: canonical packing)", function () {
    const values = [1n, -2n, 300n, -2048n];
    const words = packValues(values, 16);

    it("takes the canonical packing of in-range values", async function () {
      expect(await decodeTaskInput(manifest, crafted(words), noData)).to.deep.equal(values);
    });

    it("refuses a word with a bit set above its last value, which unpacking alone would ignore", async function () {
      // 4 values of 16 bits use bits 0..63 of the word; bit 64 is outside the payload of any value.
      const forged = [words[0] | (1n << 64n)];
      const reason = await rejection(decodeTaskInput(manifest, crafted(forged), noData));
      expect(reason).to.match(/input word #0 = \d+ is not a canonical packing of 16-bit values/);
      expect(reason).to.match(/no proof can exist/);
      // The top payload bit of the word (251) too.
      const top = [words[0] | (1n << 251n)];
      expect(() => inlineInputValues(manifest, top)).to.throw(InputRejectedError, /not a canonical packing/);
    });

    it("refuses a value outside the circuit's input range (inputBits 12), though it fits the 16-bit packing", async function () {
      const wide = packValues([1n, 2n, 2048n, 0n], 16);
      const reason = await rejection(decodeTaskInput(manifest, crafted(wide), noData));
      expect(reason).to.equal("input value #2 = 2048 is outside the quantization range of 12 signed bits");
    });

    it("refuses the wrong number of words", async function () {
      const reason = await rejection(decodeTaskInput(manifest, crafted([...words, 0n]), noData));
      expect(reason).to.equal("input has 2 words, the model takes 1");
    });
  });

  describe("served key (issue 8 item 1: the node proves only what the registry verifies)", function () {
    const registered = verificationKeyWords(sampleKey(3));
    const other = verificationKeyWords(sampleKey(3, 7));

    it("accepts a model whose zkey and verification_key.json both hold the registered key", function () {
      expect(servedKeyProblem({ registered, bundled: [...registered], proving: [...registered] })).to.equal(
        undefined,
      );
    });

    it("refuses a bundle whose verification key is not the registered one, naming both hashes", function () {
      const problem = servedKeyProblem({ registered, bundled: other, proving: other })!;
      expect(problem).to.include(
        `the bundle's verification_key.json (hash ${verificationKeyHash(other)}) is not the registered key ` +
          `(hash ${verificationKeyHash(registered)})`,
      );
      expect(problem).to.include("the key of the bundle's zkey");
    });

    it("refuses a zkey whose key differs even when verification_key.json matches the registry", function () {
      const problem = servedKeyProblem({ registered, bundled: registered, proving: other })!;
      expect(problem).to.match(
        /^verification key mismatch: the key of the bundle's zkey \(hash 0x[0-9a-f]{64}\)/,
      );
      expect(problem).to.include("its proofs would not verify on chain");
      expect(problem).to.not.include("verification_key.json");
    });

    it("refuses a model without a registered key, and a key one word short", function () {
      expect(servedKeyProblem({ registered: [], bundled: other, proving: other })).to.match(
        /no registered verification key/,
      );
      expect(
        servedKeyProblem({ registered, bundled: registered, proving: registered.slice(0, -1) }),
      ).to.match(/zkey/);
    });

    it("both nodes check a model's keys once, refuse a mismatch, and check again after a failure to read", async function () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-served-key-"));
      fs.writeFileSync(path.join(dir, "verification_key.json"), JSON.stringify(sampleKey(3)));
      const bundle = {
        dir,
        manifest: { artifacts: { verificationKey: { file: "verification_key.json" } } },
      } as unknown as LoadedBundle;
      const reads = { registered: 0, proving: 0 };
      let failing = true;
      const matched: bigint[] = [];
      const checks = new ServedKeyChecks({
        registeredKey: async (modelId) => {
          reads.registered++;
          if (failing) throw new Error("rpc down");
          return modelId === 1n ? registered : other;
        },
        provingKey: async () => {
          reads.proving++;
          return registered;
        },
        onKeysMatch: (modelId) => matched.push(modelId),
      });
      const refusal = async (p: Promise<unknown>) =>
        p.then(
          () => undefined,
          (e: Error) => e,
        );
      expect((await refusal(checks.check(1n, bundle)))?.message).to.equal("rpc down");
      failing = false;
      await checks.check(1n, bundle);
      await checks.check(1n, bundle);
      expect(reads, "read again after the failure, then once").to.deep.equal({ registered: 2, proving: 1 });
      expect(matched).to.deep.equal([1n]);
      const refused = await refusal(checks.check(2n, bundle));
      expect(refused).to.be.instanceOf(BundleRejectedError);
      expect(refused!.message).to.match(/^model 2: verification key mismatch/);
      // The verdict is kept: a refused model is not read again (until a reorg clears the checks).
      await refusal(checks.check(2n, bundle));
      expect(reads.registered).to.equal(3);
      checks.clear();
      await refusal(checks.check(2n, bundle));
      expect(reads.registered).to.equal(4);
    });

    it("the audit rebuilds snarkjs's key from the registry's words exactly (G2 real part first again)", function () {
      const vk = sampleKey(4);
      const rebuilt = snarkjsKeyFromWords(verificationKeyWords(vk));
      expect(rebuilt).to.deep.equal({ ...vk });
    });
  });

  describe("claim policy (issue 8 item 6: the requester's callback gas)", function () {
    const config = loadConfig(inferenceSchema, {
      env: { OPG_PRIVATE_KEY: "0x" + "11".repeat(32), OPG_MAX_CALLBACK_GAS: "250000" },
    });
    const task = { fee: 10n ** 18n, deadline: 10_000n, callbackGasLimit: 0n };

    it("reads maxCallbackGas from flag, env or file (default 500000)", function () {
      expect(config.maxCallbackGas).to.equal(250_000);
      const defaults = loadConfig(inferenceSchema, { env: { OPG_PRIVATE_KEY: "0x" + "11".repeat(32) } });
      expect(defaults.maxCallbackGas).to.equal(500_000);
      const flag = loadConfig(inferenceSchema, {
        env: { OPG_PRIVATE_KEY: "0x" + "11".repeat(32) },
        overrides: { maxCallbackGas: "0" },
      });
      expect(flag.maxCallbackGas).to.equal(0);
    });

    it("skips a task whose callback gas limit is above the node's cap, and takes one at the cap", function () {
      expect(policySkipReason({ ...task, callbackGasLimit: 250_001n }, 1_000, config)).to.equal(
        "callback gas limit 250001 above the node's maxCallbackGas 250000",
      );
      expect(policySkipReason({ ...task, callbackGasLimit: 250_000n }, 1_000, config)).to.equal(undefined);
      expect(policySkipReason(task, 10_000 - 29, config)).to.match(/deadline too close/);
    });
  });

  describe("TaskSubmitted", function () {
    it("hands the node the committed Task from the event, every field of it", function () {
      const task = {
        ...crafted([5n]).task,
        requester: "0x" + "12".repeat(20),
        verificationKey: "0x" + "34".repeat(20),
        royaltyReceiver: "0x" + "56".repeat(20),
        callback: "0x" + "78".repeat(20),
        callbackGasLimit: 123_456n,
        protocolFeeBps: 700n,
        royaltyBps: 300n,
        inputHash: ethers.solidityPackedKeccak256(["uint256"], [5n]),
      };
      const event = taskRegistryInterface.getEvent("TaskSubmitted")!;
      const log = taskRegistryInterface.encodeEventLog(event, [9n, 1n, task.requester, task, [5n]]);
      const parsed = parseSubmitted(log);
      expect(parsed.taskId).to.equal(9n);
      expect(parsed.input).to.deep.equal([5n]);
      const checksummed = (a: string) => ethers.getAddress(a);
      expect(parsed.task).to.deep.equal({
        ...task,
        requester: checksummed(task.requester),
        verificationKey: checksummed(task.verificationKey),
        royaltyReceiver: checksummed(task.royaltyReceiver),
        callback: checksummed(task.callback),
      });
    });
  });
});
