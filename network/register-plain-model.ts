import type { Signer } from "ethers";
import type { ModelRegistry } from "../typechain-types";
import { loadManifest, verificationKeyHash } from "../zkml";
import { loadPlainManifest, type PlainBundleManifest } from "../zkml/plain-bundle";
import { bundleKeyWords, bundleModelSpec, registerBundle, sendRegistration } from "./register-model";

/** Bits of a model's verification-mode mask (contracts/libraries/VerificationModes.sol). */
export const MODE_BITS = { zk: 1, optimistic: 2, tee: 4 } as const;
export type ModeName = keyof typeof MODE_BITS;

/** "tee,optimistic" -> 6; an unknown or empty list is an error naming the accepted words. */
export function parseModes(raw: string): number {
  let mask = 0;
  for (const word of raw.split(",").map((w) => w.trim().toLowerCase())) {
    const bit = MODE_BITS[word as ModeName];
    if (!bit)
      throw new Error(`unknown verification mode "${word}": use zk, tee, optimistic (comma-separated)`);
    mask |= bit;
  }
  return mask;
}

/** The mode names of a mask, in zk, optimistic, tee order. */
export function modeNames(mask: number): ModeName[] {
  return (Object.keys(MODE_BITS) as ModeName[]).filter((m) => (mask & MODE_BITS[m]) !== 0);
}

/** The ModelSpec of a plain bundle: what the registry needs to check inputs and pack results; no key. */
export function plainModelSpec(
  manifest: PlainBundleManifest,
  opts: { bundleId: string; fee: bigint; royaltyReceiver: string; modes: number },
) {
  const layout = manifest.publicSignals;
  return {
    name: manifest.name,
    onnxHash: "0x" + manifest.onnx.sha256,
    bundleHash: "0x" + opts.bundleId,
    royaltyReceiver: opts.royaltyReceiver,
    fee: opts.fee,
    verificationModes: opts.modes,
    inputMode: layout.inputMode === "inline" ? 0 : 1,
    inputWords: layout.inputWords,
    outputWords: layout.outputWords,
    scaleBits: manifest.quantization.scaleBits,
    packBits: layout.packBits,
    inputBits: manifest.quantization.inputBits,
    inputShape: manifest.input.shape,
    outputShape: manifest.output.shape,
  };
}

export interface Registered {
  modelId: bigint;
  verificationModes: number;
  /** The key's data contract, or the zero address without ZK mode. */
  verificationKey: string;
  verificationKeyHash: string;
}

async function registerSpec(
  models: ModelRegistry,
  spec: ReturnType<typeof plainModelSpec>,
  words: bigint[],
): Promise<Registered> {
  const event = await sendRegistration(models, spec, words);
  return {
    modelId: event.args.modelId,
    verificationModes: spec.verificationModes,
    verificationKey: event.args.verificationKey,
    verificationKeyHash: event.args.verificationKeyHash,
  };
}

/**
 * Register a packaged bundle in the given modes. A plain bundle (zkml/plain-bundle.ts) can be served in TEE
 * and optimistic mode only: it has no circuit, so no verification key (empty) and no ZK bit. A ZK bundle
 * registers its Groth16 key when the modes include zk (the mask zk alone is exactly `registerBundle`), none
 * otherwise.
 */
export async function registerBundleInModes(
  signer: Signer,
  models: ModelRegistry,
  bundleDir: string,
  opts: { bundleId: string; fee: bigint; royaltyReceiver?: string; modes: number; plain: boolean },
): Promise<Registered> {
  const royaltyReceiver = opts.royaltyReceiver ?? (await signer.getAddress());
  const registry = models.connect(signer);
  if (opts.plain) {
    if (opts.modes & MODE_BITS.zk) {
      throw new Error(
        `${bundleDir} is a plain bundle (no circuit): it cannot be registered in zk mode; use tee and/or optimistic`,
      );
    }
    const manifest = loadPlainManifest(bundleDir);
    return registerSpec(registry, plainModelSpec(manifest, { ...opts, royaltyReceiver }), []);
  }
  if (opts.modes === MODE_BITS.zk) {
    const r = await registerBundle(signer, models, bundleDir, { ...opts, royaltyReceiver });
    return { ...r, verificationModes: MODE_BITS.zk };
  }
  const manifest = loadManifest(bundleDir, { checkHashes: true });
  const words = opts.modes & MODE_BITS.zk ? bundleKeyWords(bundleDir, manifest) : [];
  const spec = { ...bundleModelSpec(manifest, { ...opts, royaltyReceiver }), verificationModes: opts.modes };
  const r = await registerSpec(registry, spec, words);
  if (words.length > 0 && r.verificationKeyHash !== verificationKeyHash(words)) {
    throw new Error(
      `the registry recorded key hash ${r.verificationKeyHash}, the key words hash to ${verificationKeyHash(words)}`,
    );
  }
  return r;
}
