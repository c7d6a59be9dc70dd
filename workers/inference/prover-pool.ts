import path from "node:path";
import { fork, type ChildProcess } from "node:child_process";
import type { Groth16Proof } from "snarkjs";
import { proofWords } from "../runtime/tasks";

interface Proved {
  proof: Groth16Proof;
  publicSignals: string[];
  ms: number;
}

/**
 * A Groth16 proof of a task's outputs, bound to one address: the public signals `[outputs..., input...,
 * binding]` that TaskRegistry.submitResult (bound to the claiming node) and DisputeManager.challengeWithProof
 * (bound to the challenger) rebuild from their own data.
 */
export interface TaskProof {
  /** The 8 words the contracts take (proofWords). */
  proof: bigint[];
  /** The output words the proof carries: the first public signals. */
  outputs: bigint[];
  ms: number;
}

/**
 * The proof's output signals are not the output words the fixed-point executor computed: the bundle's
 * program and its circuit disagree, so what the node would post or claim is not what the circuit proves.
 */
export class ProofOutputsMismatchError extends Error {
  constructor(
    readonly expected: readonly bigint[],
    readonly proved: readonly string[],
  ) {
    super(
      `the proof's outputs [${proved.join(", ")}] differ from the executor's [${expected.join(", ")}]: ` +
        "the bundle's program and circuit disagree",
    );
    this.name = "ProofOutputsMismatchError";
  }
}

interface Pending {
  resolve(r: unknown): void;
  reject(e: Error): void;
}

/**
 * A fixed pool of proving processes; jobs queue when all are busy. Proving runs outside the node's process
 * so its event loop keeps polling the chain and serving /metrics. They are child processes rather than
 * worker threads because snarkjs's own thread pool (ffjavascript's web-worker shim) only starts from a main
 * thread; inside each child it uses every core as usual.
 */
export class ProverPool {
  private readonly idle: ChildProcess[] = [];
  private readonly all: ChildProcess[] = [];
  private readonly waiting: (() => void)[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closing = false;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = fork(path.join(__dirname, "prove-worker.js"), [], {
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      });
      worker.on("message", (m: { id: number; error?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.release(worker);
        if (!p) return;
        if (m.error) p.reject(new Error(m.error));
        else p.resolve(m);
      });
      const failAll = (err: Error) => {
        for (const [id, p] of this.pending) {
          p.reject(err);
          this.pending.delete(id);
        }
      };
      worker.on("error", failAll);
      worker.on("exit", (code, signal) => {
        if (!this.closing) failAll(new Error(`prover process exited (${signal ?? code})`));
      });
      this.all.push(worker);
      this.idle.push(worker);
    }
  }

  async prove(bundleDir: string, quantizedInput: bigint[], binding: bigint): Promise<Proved> {
    return this.run({
      kind: "prove",
      bundleDir,
      quantizedInput: quantizedInput.map(String),
      binding: binding.toString(),
    });
  }

  /**
   * Prove the task whose quantized input is `quantizedInput` with the bundle in `bundleDir`, bound by
   * `binding` (`taskBinding(taskId, prover)` of whoever sends the proof), and check that the proof carries
   * `outputWords`, the executor's packed outputs (a ProofOutputsMismatchError when it does not). Shared by
   * the inference node (its result) and the verification node (the true outputs it challenges a lie with).
   */
  async proveTask(
    bundleDir: string,
    quantizedInput: bigint[],
    binding: bigint,
    outputWords: readonly bigint[],
  ): Promise<TaskProof> {
    const { proof, publicSignals, ms } = await this.prove(bundleDir, quantizedInput, binding);
    const proved = publicSignals.slice(0, outputWords.length);
    if (outputWords.some((w, i) => w.toString() !== proved[i])) {
      throw new ProofOutputsMismatchError(outputWords, proved);
    }
    return { proof: proofWords(proof), outputs: [...outputWords], ms };
  }

  /** The verification key of the bundle's proving key (its zkey), in the registry's word order. */
  async zkeyVerificationKey(bundleDir: string): Promise<bigint[]> {
    const { words } = await this.run<{ words: string[] }>({ kind: "key", bundleDir });
    return words.map(BigInt);
  }

  private async run<T>(job: Record<string, unknown>): Promise<T> {
    const worker = await this.acquire();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject });
      worker.send({ id, ...job });
    });
  }

  private acquire(): Promise<ChildProcess> {
    const w = this.idle.pop();
    if (w) return Promise.resolve(w);
    return new Promise((resolve) => this.waiting.push(() => resolve(this.idle.pop()!)));
  }

  private release(worker: ChildProcess) {
    this.idle.push(worker);
    this.waiting.shift()?.();
  }

  async close() {
    this.closing = true;
    await Promise.all(
      this.all.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exitCode !== null || w.signalCode !== null) return resolve();
            w.once("exit", () => resolve());
            w.kill("SIGTERM");
          }),
      ),
    );
  }
}
