import path from "node:path";
import { loadManifest, witnessInput } from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";

export interface ProveJob {
  id: number;
  bundleDir: string;
  quantizedInput: string[];
  binding: string;
}

process.on("message", async (job: ProveJob) => {
  try {
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
    process.send!({ id: job.id, proof, publicSignals, ms: Date.now() - started });
  } catch (e) {
    process.send!({ id: job.id, error: (e as Error).message });
  }
});

// The node stops its provers on shutdown; exit cleanly without waiting for snarkjs's threads.
process.on("SIGTERM", () => process.exit(0));
process.on("disconnect", () => process.exit(0));
