import fs from "node:fs";
import path from "node:path";
import type { IModelRegistry } from "../../typechain-types/contracts/registry/ModelRegistry";
import {
  loadManifest,
  loadProgram,
  verificationKeyHash,
  verificationKeyWords,
  type BundleManifest,
  type QProgram,
} from "../../zkml";
import { bundleKind, loadPlainManifest, type PlainBundleManifest } from "../../zkml/plain-bundle";
import { DataClient, DataClientError } from "../data/client";
import { BundleConsistencyCache, type ConsistencyCacheOptions } from "./bundle-consistency";
import { bytes32ToBundleId, unpackBundle } from "../data/bundle-archive";
import { ExecutionRefusedError } from "./execution-errors";

export interface LoadedBundle {
  kind?: "zk";
  dir: string;
  manifest: BundleManifest;
  program: QProgram;
  /** keccak256 of the words of the bundle's verification_key.json: what the registry records for its key. */
  verificationKeyHash: string;
}

/**
 * A plain bundle (zkml/plain-bundle.ts): an ONNX model and its manifest, no circuit. Served in TEE and
 * optimistic mode only; executed with onnxruntime.
 */
export interface LoadedPlainBundle {
  kind: "plain";
  dir: string;
  manifest: PlainBundleManifest;
}

/** A bundle of either kind. */
export type AnyBundle = LoadedBundle | LoadedPlainBundle;

export function isPlainBundle(bundle: AnyBundle): bundle is LoadedPlainBundle {
  return bundle.kind === "plain";
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
 * Where a bundle disagrees with the model it is registered for: the ONNX hash, the verification key (the
 * keccak256 of the bundle's key words against the registry's `verificationKeyHash`), and the signal layout
 * (input mode, word counts, pack width, input width). Empty when it agrees.
 */
export function bundleModelProblems(bundle: AnyBundle, model: IModelRegistry.ModelStructOutput): string[] {
  const { manifest } = bundle;
  const problems: string[] = [];
  if (isPlainBundle(bundle)) {
    // No circuit, no key: a model registered with ZK mode needs a bundle it can be proved with.
    if ((Number(model.terms.verificationModes) & 1) !== 0)
      problems.push("plain bundle (no circuit) for a model registered with ZK mode");
  } else if (hex(bundle.verificationKeyHash) !== hex(model.verificationKeyHash)) {
    problems.push(
      `verification key hash ${bundle.verificationKeyHash} differs from the registry's ${model.verificationKeyHash}`,
    );
  }
  if (hex(manifest.onnx.sha256) !== hex(model.onnxHash))
    problems.push("ONNX hash differs from the registry's");
  const layout = manifest.publicSignals;
  const registered = {
    inputMode: Number(model.terms.inputMode) === 0 ? "inline" : "commitment",
    inputWords: Number(model.terms.inputWords),
    outputWords: Number(model.terms.outputWords),
    packBits: Number(model.packBits),
    inputBits: Number(model.inputBits),
  };
  const bundled = {
    inputMode: layout.inputMode,
    inputWords: layout.inputWords,
    outputWords: layout.outputWords,
    packBits: layout.packBits,
    inputBits: manifest.quantization.inputBits,
  };
  const differ = (Object.keys(registered) as (keyof typeof registered)[]).filter(
    (k) => registered[k] !== bundled[k],
  );
  if (differ.length > 0) {
    problems.push(
      `public-signal layout differs from the registry's: ${differ
        .map((k) => `${k} ${bundled[k]} (registered ${registered[k]})`)
        .join(", ")}`,
    );
  }
  return problems;
}

export interface BundleCacheOptions {
  /**
   * The check that a ZK bundle's program.json is what its circuit proves (bundle-consistency.ts), run once
   * per bundle before `get` or `getAny` first returns it; a passing verdict is recorded under
   * `<cacheDir>/consistency`. Default: on, in a child process. `false` turns it off, for a reader that
   * neither posts nor attests outputs (nothing it does is slashed).
   */
  consistency?: ConsistencyCacheOptions | false;
  /**
   * Largest program.json the cache parses, in bytes (the node's maxModelBytes): a larger one is refused
   * (ExecutionRefusedError "program") before it is read. Default: no limit (one-shot commands).
   */
  maxModelBytes?: number;
}

/** Bundles whose load failed for good, remembered so that each task or /attest does not fetch them again. */
const FAILURES_KEPT = 1024;
/**
 * How long such a failure is kept: a bundle id is the hash of its bytes, so what was corrupt stays corrupt,
 * but one missing from the data node may be uploaded later.
 */
const FAILURE_TTL_MS = 10 * 60_000;

/**
 * Model bundles fetched from the data node by the bundle hash the model registry holds, checked, unpacked
 * into a local cache and kept in memory. Nothing is used before every hash matches: the archive hash
 * (data-layer id) and each file against the manifest when the bundle is loaded (once per bundle), then on
 * every `get` the bundle against the model it is asked for (bundleModelProblems: a bundle may be registered
 * by several models, each with its own key and layout). A ZK bundle is then checked once to be consistent
 * with itself (its program.json computes what its circuit proves under the registered key:
 * BundleConsistencyCache) before `get` or `getAny` returns it: what a node posts or attests from a bundle
 * that fails is unprovable, so its model is refused.
 */
export class BundleCache {
  private readonly loaded = new Map<string, Promise<AnyBundle>>();
  /** Bundle ids whose load was refused (not a retryable fetch error): the error, and when. */
  private readonly failed = new Map<string, { err: Error; at: number }>();
  private readonly maxModelBytes: number;
  /** The consistency verdicts of the ZK bundles served (undefined when the check is off). */
  readonly consistency?: BundleConsistencyCache;

  constructor(
    private readonly cacheDir: string,
    private readonly data: DataClient,
    opts: BundleCacheOptions = {},
  ) {
    this.maxModelBytes = opts.maxModelBytes ?? Number.POSITIVE_INFINITY;
    if (opts.consistency !== false) {
      this.consistency = new BundleConsistencyCache({
        dir: path.join(cacheDir, "consistency"),
        ...opts.consistency,
      });
    }
  }

  /**
   * The ZK bundle of `model`, refused (BundleRejectedError) unless it agrees with the registered model. A
   * plain bundle is refused too: what asks for this proves, or executes the circuit's fixed-point program.
   */
  async get(model: IModelRegistry.ModelStructOutput): Promise<LoadedBundle> {
    const { bundle, problems } = await this.inspect(model);
    if (problems.length > 0) {
      throw new BundleRejectedError(`bundle ${bytes32ToBundleId(model.bundleHash)}: ${problems.join("; ")}`);
    }
    await this.checkConsistent(bytes32ToBundleId(model.bundleHash), bundle);
    return bundle;
  }

  /** The bundle of `model`, ZK or plain, refused (BundleRejectedError) unless it agrees with the model. */
  async getAny(model: IModelRegistry.ModelStructOutput): Promise<AnyBundle> {
    const bundle = await this.entry(bytes32ToBundleId(model.bundleHash));
    const problems = bundleModelProblems(bundle, model);
    if (problems.length > 0) {
      throw new BundleRejectedError(`bundle ${bytes32ToBundleId(model.bundleHash)}: ${problems.join("; ")}`);
    }
    await this.checkConsistent(bytes32ToBundleId(model.bundleHash), bundle);
    return bundle;
  }

  /**
   * Refuses (BundleRejectedError) a ZK bundle whose program.json disagrees with its circuit or key, checked
   * once per bundle id after the bundle matched the registry (so the key it is checked against is the
   * registered one). A plain bundle has no circuit and passes.
   */
  private async checkConsistent(id: string, bundle: AnyBundle): Promise<void> {
    if (!this.consistency || isPlainBundle(bundle)) return;
    const problems = await this.consistency.problems(id, bundle);
    if (problems.length > 0) {
      throw new BundleRejectedError(
        `bundle ${id}: inconsistent bundle, its program and its circuit disagree (what a node posts for ` +
          `this model could not be proved): ${problems.join("; ")}`,
      );
    }
  }

  private entry(id: string): Promise<AnyBundle> {
    const failed = this.failed.get(id);
    if (failed && Date.now() - failed.at < FAILURE_TTL_MS) return Promise.reject(failed.err);
    if (failed) this.failed.delete(id);
    let entry = this.loaded.get(id);
    if (!entry) {
      entry = this.load(id);
      this.loaded.set(id, entry);
      entry.catch((err: Error) => {
        this.loaded.delete(id);
        // A refused bundle is refused again without a download; a failed fetch is not kept: the next task
        // may find the data node repaired.
        if (err instanceof BundleRejectedError || err instanceof ExecutionRefusedError) {
          this.failed.set(id, { err, at: Date.now() });
          if (this.failed.size > FAILURES_KEPT) this.failed.delete(this.failed.keys().next().value as string);
        }
      });
    }
    return entry;
  }

  /**
   * The bundle of `model` (its archive and file hashes checked) and where it disagrees with the registered
   * model, for callers that report a disagreement rather than refuse (an audit).
   */
  async inspect(
    model: IModelRegistry.ModelStructOutput,
  ): Promise<{ bundle: LoadedBundle; problems: string[] }> {
    const id = bytes32ToBundleId(model.bundleHash);
    const bundle = await this.entry(id);
    if (isPlainBundle(bundle)) {
      throw new BundleRejectedError(
        `bundle ${id} is a plain bundle (no circuit): its model can be served in TEE or optimistic mode only`,
      );
    }
    return { bundle, problems: bundleModelProblems(bundle, model) };
  }

  private async load(id: string): Promise<AnyBundle> {
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
    let keyHash: string;
    try {
      if (bundleKind(dir) === "plain") {
        return { kind: "plain", dir, manifest: loadPlainManifest(dir, { checkHashes: true }) };
      }
      manifest = loadManifest(dir, { checkHashes: true });
      const vk = manifest.artifacts.verificationKey;
      if (!vk) throw new Error("no verification key (compiled without trusted setup)");
      keyHash = verificationKeyHash(
        verificationKeyWords(JSON.parse(fs.readFileSync(path.join(dir, vk.file), "utf8"))),
      );
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new BundleRejectedError(`bundle ${id}: ${(e as Error).message}`);
    }
    // program.json is parsed in this process (the consistency check and the audit read it): its size is
    // checked first. Running it happens in the sandbox (execution-policy.ts).
    const programBytes = fs.statSync(path.join(dir, "program.json"), { throwIfNoEntry: false })?.size ?? 0;
    if (programBytes > this.maxModelBytes) {
      throw new ExecutionRefusedError(
        "program",
        `bundle ${id}: program.json is ${(programBytes / 2 ** 20).toFixed(1)} MiB, over this node's ` +
          `maxModelBytes (${(this.maxModelBytes / 2 ** 20).toFixed(1)} MiB)`,
      );
    }
    let program: QProgram;
    try {
      program = loadProgram(dir);
    } catch (e) {
      throw new BundleRejectedError(`bundle ${id}: program.json: ${(e as Error).message}`);
    }
    return { dir, manifest, program, verificationKeyHash: keyHash };
  }
}
