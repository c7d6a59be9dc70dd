import { verificationKeyHash } from "../../zkml";

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
