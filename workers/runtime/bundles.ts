import fs from "node:fs";
import path from "node:path";
import type { IModelRegistry } from "../../typechain-types/contracts/registry/ModelRegistry";
import { loadManifest, loadProgram, type BundleManifest, type QProgram } from "../../zkml";
import { DataClient, DataClientError } from "../data/client";
import { bytes32ToBundleId, unpackBundle } from "../data/bundle-archive";

export interface LoadedBundle {
  dir: string;
  manifest: BundleManifest;
  program: QProgram;
}

/** Thrown when a bundle cannot be trusted: a hash or layout that disagrees with the model registry. */
export class BundleRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BundleRejectedError";
  }
}

const hex = (h: string) => h.toLowerCase().replace(/^0x/, "");

/**
 * Model bundles fetched from the data node by the bundle hash the model registry holds, checked, unpacked
 * into a local cache and kept in memory. Nothing is used before every hash matches the registry: the archive
 * hash (data-layer id), each file against the manifest, the verification key and ONNX hashes against the
 * registered model, and the public-signal layout against the registered word counts.
 */
export class BundleCache {
  private readonly loaded = new Map<string, Promise<LoadedBundle>>();

  constructor(
    private readonly cacheDir: string,
    private readonly data: DataClient,
  ) {}

  get(model: IModelRegistry.ModelStructOutput): Promise<LoadedBundle> {
    const id = bytes32ToBundleId(model.bundleHash);
    let entry = this.loaded.get(id);
    if (!entry) {
      entry = this.load(id, model);
      this.loaded.set(id, entry);
      // A failed fetch is not cached: the next task may find the data node repaired.
      entry.catch(() => this.loaded.delete(id));
    }
    return entry;
  }

  private async load(id: string, model: IModelRegistry.ModelStructOutput): Promise<LoadedBundle> {
    const dir = path.join(this.cacheDir, id);
    if (!fs.existsSync(path.join(dir, "manifest.json"))) {
      let bytes: Buffer;
      try {
        bytes = await this.data.get(id);
      } catch (e) {
        // A data node that is down may come back: retry later. A corrupt or missing bundle is refused.
        if (e instanceof DataClientError && e.retryable) throw e;
        throw new BundleRejectedError(`bundle ${id} refused: ${(e as Error).message}`);
      }
      try {
        unpackBundle(bytes, dir);
      } catch (e) {
        throw new BundleRejectedError(`bundle ${id} refused: ${(e as Error).message}`);
      }
    }
    let manifest: BundleManifest;
    try {
      manifest = loadManifest(dir, { checkHashes: true });
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new BundleRejectedError(`bundle ${id}: ${(e as Error).message}`);
    }
    const vk = manifest.artifacts.verificationKey?.sha256;
    const problems: string[] = [];
    if (!vk || hex(vk) !== hex(model.verificationKeyHash))
      problems.push("verification key hash differs from the registry's");
    if (hex(manifest.onnx.sha256) !== hex(model.onnxHash))
      problems.push("ONNX hash differs from the registry's");
    const layout = manifest.publicSignals;
    if (
      BigInt(layout.inputWords) !== model.terms.inputWords ||
      BigInt(layout.outputWords) !== model.terms.outputWords
    ) {
      problems.push("public-signal layout differs from the registry's word counts");
    }
    if (problems.length > 0) throw new BundleRejectedError(`bundle ${id}: ${problems.join("; ")}`);
    return { dir, manifest, program: loadProgram(dir) };
  }
}
