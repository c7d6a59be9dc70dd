import path from "node:path";
import { Worker } from "node:worker_threads";
import type { Groth16Proof } from "snarkjs";

interface Pending {
  resolve(r: { proof: Groth16Proof; publicSignals: string[]; ms: number }): void;
  reject(e: Error): void;
}

/** A fixed pool of proving threads; jobs queue when all are busy. */
export class ProverPool {
  private readonly idle: Worker[] = [];
  private readonly all: Worker[] = [];
  private readonly waiting: (() => void)[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(path.join(__dirname, "prove-worker.js"));
      worker.on("message", (m: { id: number; error?: string; proof: Groth16Proof; publicSignals: string[]; ms: number }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.release(worker);
        if (!p) return;
        if (m.error) p.reject(new Error(m.error));
        else p.resolve(m);
      });
      worker.on("error", (err) => {
        for (const [id, p] of this.pending) {
          p.reject(err);
          this.pending.delete(id);
        }
      });
      this.all.push(worker);
      this.idle.push(worker);
    }
  }

  async prove(bundleDir: string, quantizedInput: bigint[], binding: bigint) {
    const worker = await this.acquire();
    const id = this.nextId++;
    return new Promise<{ proof: Groth16Proof; publicSignals: string[]; ms: number }>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, bundleDir, quantizedInput: quantizedInput.map(String), binding: binding.toString() });
    });
  }

  private acquire(): Promise<Worker> {
    const w = this.idle.pop();
    if (w) return Promise.resolve(w);
    return new Promise((resolve) => this.waiting.push(() => resolve(this.idle.pop()!)));
  }

  private release(worker: Worker) {
    this.idle.push(worker);
    this.waiting.shift()?.();
  }

  async close() {
    await Promise.all(this.all.map((w) => w.terminate()));
  }
}
