import path from "node:path";
import * as snarkjs from "snarkjs";
import { loadManifest, verificationKeyWords, witnessInput, type SnarkjsVerificationKey } from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";

/** A proof of a quantized input bound to a task, with the bundle's proving key. */
export interface ProveJob {
  id: number;
  kind: "prove";
  bundleDir: string;
  quantizedInput: string[];
  binding: string;
}

/** The verification key held by the bundle's proving key (zkey), as registry words. */
export interface KeyJob {
  id: number;
  kind: "key";
  bundleDir: string;
}

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

async function prove(job: ProveJob) {
  const manifest = loadManifest(job.bundleDir);
  if (!manifest.artifacts.zkey) throw new Error(`bundle ${job.bundleDir} has no zkey`);
  const started = Date.now();
  // Fault injection for tests only: hold the proof back so a test can kill the node mid-proof.
  const delay = Number(process.env.OPG_FAULT_PROVE_DELAY_MS ?? 0);
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
  const { proof, publicSignals } = await fullProve(
    witnessInput(manifest, job.quantizedInput.map(BigInt), BigInt(job.binding)),
    path.join(job.bundleDir, manifest.artifacts.wasm.file),
    path.join(job.bundleDir, manifest.artifacts.zkey.file),
  );
  return { proof, publicSignals, ms: Date.now() - started };
}

async function zkeyKey(job: KeyJob) {
  const manifest = loadManifest(job.bundleDir);
  if (!manifest.artifacts.zkey) throw new Error(`bundle ${job.bundleDir} has no zkey`);
  const vk = await snarkjs.zKey.exportVerificationKey(
    path.join(job.bundleDir, manifest.artifacts.zkey.file),
    quiet,
  );
  return { words: verificationKeyWords(vk as SnarkjsVerificationKey).map(String) };
}

process.on("message", async (job: ProveJob | KeyJob) => {
  try {
    process.send!({ id: job.id, ...(job.kind === "key" ? await zkeyKey(job) : await prove(job)) });
  } catch (e) {
    process.send!({ id: job.id, error: (e as Error).message });
  }
});

// The node stops its provers on shutdown; exit cleanly without waiting for snarkjs's threads.
process.on("SIGTERM", () => process.exit(0));
process.on("disconnect", () => process.exit(0));
