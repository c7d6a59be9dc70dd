import path from "node:path";
import { parentPort } from "node:worker_threads";
import { loadManifest, witnessInput } from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";

export interface ProveJob {
  id: number;
  bundleDir: string;
  quantizedInput: string[];
  binding: string;
}

parentPort!.on("message", async (job: ProveJob) => {
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
    parentPort!.postMessage({ id: job.id, proof, publicSignals, ms: Date.now() - started });
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
