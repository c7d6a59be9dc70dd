import fs from "node:fs";
import path from "node:path";
import { verificationKeyHash, verificationKeyWords } from "../../zkml";
import { BundleRejectedError, type LoadedBundle } from "../runtime/bundles";

/** The keys a node compares before serving a model, each as registry words (zkml verificationKeyWords). */
export interface ServedKeys {
  /** What the registry verifies proofs against: `ModelRegistry.verificationKeyOf(modelId)`. */
  registered: readonly bigint[];
  /** The bundle's verification_key.json. */
  bundled: readonly bigint[];
  /** Exported from the zkey the node proves with: the key its proofs will verify under. */
  proving: readonly bigint[];
}

function differs(a: readonly bigint[], b: readonly bigint[]): boolean {
  return a.length !== b.length || a.some((w, i) => w !== b[i]);
}

/**
 * Why a node must not serve a model, or undefined when it may: proofs made with the bundle's zkey verify on
 * chain only if the key exported from that zkey is the registered key, word for word. The bundle's
 * verification_key.json is compared too, so that the reason says which file is off. A node that claimed
 * a task of a model failing this check could never settle it and would lose its collateral.
 */
export function servedKeyProblem(keys: ServedKeys): string | undefined {
  const hash = (w: readonly bigint[]) => verificationKeyHash([...w]);
  const problems: string[] = [];
  if (keys.registered.length === 0) return "the model has no registered verification key (no ZK mode)";
  if (differs(keys.bundled, keys.registered)) {
    problems.push(
      `the bundle's verification_key.json (hash ${hash(keys.bundled)}) is not the registered key ` +
        `(hash ${hash(keys.registered)})`,
    );
  }
  if (differs(keys.proving, keys.registered)) {
    problems.push(
      `the key of the bundle's zkey (hash ${hash(keys.proving)}) is not the registered key ` +
        `(hash ${hash(keys.registered)}): its proofs would not verify on chain`,
    );
  }
  return problems.length > 0 ? `verification key mismatch: ${problems.join("; ")}` : undefined;
}

/** What ServedKeyChecks reads: the registered key, and the key of a bundle's zkey (exported off thread). */
export interface ServedKeyCheckDeps {
  registeredKey(modelId: bigint): Promise<readonly bigint[]>;
  provingKey(bundleDir: string): Promise<readonly bigint[]>;
  /** Called once per model whose keys match. */
  onKeysMatch?(modelId: bigint): void;
}

/**
 * servedKeyProblem as both nodes run it before they prove with a bundle: an inference node before it claims
 * (its proofs must settle), a verification node before it proves a posted result wrong (its proof must
 * verify under the registered key). Checked once per model (a model's key and bundle never change) and the
 * verdict kept; a failure to check (an RPC error) is not kept, so the next task checks again. A mismatch is a
 * refusal (BundleRejectedError), never a retry. (That a bundle's program agrees with its circuit is checked
 * by BundleCache itself, once per bundle, before `get` or `getAny` returns it: bundle-consistency.ts.)
 */
export class ServedKeyChecks {
  /** Per model id: why its keys rule it out (servedKeyProblem), or undefined. */
  private readonly verdicts = new Map<string, Promise<string | undefined>>();

  constructor(private readonly deps: ServedKeyCheckDeps) {}

  /**
   * Refuse a model whose registered verification key is not the key of the zkey this node proves with, or
   * not the bundle's verification_key.json: its proofs could not verify on chain.
   */
  async check(modelId: bigint, bundle: LoadedBundle): Promise<void> {
    const id = modelId.toString();
    let verdict = this.verdicts.get(id);
    if (!verdict) {
      verdict = (async () => {
        const vkFile = path.join(bundle.dir, bundle.manifest.artifacts.verificationKey!.file);
        const found = servedKeyProblem({
          registered: await this.deps.registeredKey(modelId),
          bundled: verificationKeyWords(JSON.parse(fs.readFileSync(vkFile, "utf8"))),
          proving: await this.deps.provingKey(bundle.dir),
        });
        if (!found) this.deps.onKeysMatch?.(modelId);
        return found;
      })();
      this.verdicts.set(id, verdict);
      verdict.catch(() => this.verdicts.delete(id));
    }
    const problem = await verdict;
    if (problem) throw new BundleRejectedError(`model ${id}: ${problem}`);
  }

  /** Forget every verdict (a reorg may have replaced a model's registration). */
  clear() {
    this.verdicts.clear();
  }
}
