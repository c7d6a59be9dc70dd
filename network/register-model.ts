import fs from "node:fs";
import path from "node:path";
import type { Signer } from "ethers";
import type { ModelRegistry } from "../typechain-types";
import { loadManifest, verificationKeyHash, verificationKeyWords, type BundleManifest } from "../zkml";

const VERIFICATION_MODE_ZK = 1;

/** The Groth16 key of a bundle as the ModelRegistry stores it: words read from its verification_key.json. */
export function bundleKeyWords(
  bundleDir: string,
  manifest: BundleManifest = loadManifest(bundleDir),
): bigint[] {
  const vkRef = manifest.artifacts.verificationKey;
  if (!vkRef || !manifest.artifacts.zkey) {
    throw new Error(`bundle ${bundleDir} has no verification key: compile it with trusted setup`);
  }
  return verificationKeyWords(JSON.parse(fs.readFileSync(path.join(bundleDir, vkRef.file), "utf8")));
}

/** The ModelSpec of a bundle: hashes, shapes, signal layout and input width, all from its manifest. */
export function bundleModelSpec(
  manifest: BundleManifest,
  opts: { bundleId: string; fee: bigint; royaltyReceiver: string },
) {
  const layout = manifest.publicSignals;
  return {
    name: manifest.name,
    onnxHash: "0x" + manifest.onnx.sha256,
    bundleHash: "0x" + opts.bundleId,
    royaltyReceiver: opts.royaltyReceiver,
    fee: opts.fee,
    verificationModes: VERIFICATION_MODE_ZK,
    inputMode: layout.inputMode === "inline" ? 0 : 1,
    inputWords: layout.inputWords,
    outputWords: layout.outputWords,
    scaleBits: manifest.quantization.scaleBits,
    packBits: layout.packBits,
    // The signed range the circuit checks each input value to (the quantizer's inputBits).
    inputBits: manifest.quantization.inputBits,
    inputShape: manifest.input.shape,
    outputShape: manifest.output.shape,
  };
}

/** Send `registerModel(spec, words)` and return its ModelRegistered event (an error if there is none). */
export async function sendRegistration(
  registry: ModelRegistry,
  spec: Parameters<ModelRegistry["registerModel"]>[0],
  words: bigint[],
) {
  const receipt = await (await registry.registerModel(spec, words)).wait();
  const event = receipt!.logs
    .map((l) => {
      try {
        return registry.interface.parseLog(l);
      } catch {
        return null;
      }
    })
    .find((e) => e?.name === "ModelRegistered");
  if (!event) throw new Error(`registerModel transaction ${receipt!.hash} emitted no ModelRegistered`);
  return event;
}

/**
 * Put a compiled ZKML bundle on chain: register the model with its Groth16 verification key (the words of
 * the bundle's verification_key.json, which the registry validates and stores immutably; no contract is
 * deployed) and the hashes workers check bundles against: the ONNX sha256 and `bundleHash` = the data-layer
 * id of the packed bundle (sha256 of the archive the data node stores). `opts.verificationKey` registers
 * other key words instead: only tests use it, to play a model owner whose key is not the bundle's.
 */
export async function registerBundle(
  signer: Signer,
  models: ModelRegistry,
  bundleDir: string,
  opts: { bundleId: string; fee: bigint; royaltyReceiver?: string; verificationKey?: bigint[] },
): Promise<{ modelId: bigint; verificationKey: string; verificationKeyHash: string }> {
  const manifest = loadManifest(bundleDir, { checkHashes: true });
  const words = opts.verificationKey ?? bundleKeyWords(bundleDir, manifest);
  const spec = bundleModelSpec(manifest, {
    bundleId: opts.bundleId,
    fee: opts.fee,
    royaltyReceiver: opts.royaltyReceiver ?? (await signer.getAddress()),
  });
  const event = await sendRegistration(models.connect(signer), spec, words);
  const hash: string = event.args.verificationKeyHash;
  if (hash !== verificationKeyHash(words)) {
    throw new Error(
      `the registry recorded key hash ${hash}, the key words hash to ${verificationKeyHash(words)}`,
    );
  }
  return {
    modelId: event.args.modelId,
    verificationKey: event.args.verificationKey,
    verificationKeyHash: hash,
  };
}
