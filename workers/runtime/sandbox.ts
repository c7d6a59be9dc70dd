import fs from "node:fs";
import path from "node:path";
import { fork, type ChildProcess } from "node:child_process";
import { ZkmlError, type ZkmlErrorCode } from "../../zkml/errors";
import { DataClientError } from "../data/client";
import { BundleRejectedError, type LoadedBundle, type LoadedPlainBundle } from "./bundles";
import type { ExecJob, ExecReply } from "./exec-worker-impl";
import { ExecutionRefusedError } from "./execution-errors";
import type { ExecutionLimits } from "./execution-policy";
import type { Logger } from "./logger";
import { isNonceError, isTransient } from "./submitter";
import { InputRejectedError } from "./task-input";

/** What a run of a bundle's model gives: its quantized output values and their packed words. */
export interface RunOutputs {
  values: bigint[];
  words: bigint[];
  /** Time the run took in its process, in ms. */
  ms: number;
  /** The execution process's largest resident memory seen while it ran, in MiB (0 when not measured). */
  peakRssMb: number;
}

/** What a plain bundle's inspection found (execution-policy.ts decides on it). */
export interface Inspection {
  /** Nodes whose cost the task's input values choose (dynamicShapeNodes). */
  dynamic: string[];
  /** The probe run on zeros, when it ran: its time and the process's peak memory. */
  probe?: { ms: number; peakRssMb: number };
}

/**
 * The execution process's run died for no reason the sandbox gave it (a crash in the native runtime, the
 * system's OOM killer): it may not happen again, so it is retried a bounded number of times, not refused.
 */
export class ExecutionCrashError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExecutionCrashError";
  }
}

/**
 * What a node does with a task whose stage failed with `err`:
 * - "refuse": the task cannot be served as the registry names it (its bundle refused, its input refused, the
 *   model over the node's execution policy or limits, or failing deterministically): refused once, by name,
 *   never retried (the same model on the same input fails the same way);
 * - "transient": the transport (RPC, data node) or a nonce, which can succeed later: retried with back-off;
 * - "unknown": anything else, retried a bounded number of times, then the task is given up (failed).
 */
export function failureClass(err: unknown): "refuse" | "transient" | "unknown" {
  if (
    err instanceof ExecutionRefusedError ||
    err instanceof BundleRejectedError ||
    err instanceof InputRejectedError ||
    err instanceof ZkmlError
  )
    return "refuse";
  if (err instanceof DataClientError) return err.retryable ? "transient" : "unknown";
  if (isTransient(err) || isNonceError(err)) return "transient";
  return "unknown";
}

/** How often a running job's process memory is read (/proc/<pid>/status). */
const MEMORY_POLL_MS = 50;
/** Most bytes of an execution process's stderr kept to tell a V8 heap exhaustion from other deaths. */
const STDERR_TAIL = 4096;

interface Running {
  job: ExecJob;
  resolve(reply: ExecReply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  peakKb: number;
  /** Set when the sandbox killed the process for this job, and why. */
  killedFor?: "time" | "memory";
}

interface Slot {
  child: ChildProcess;
  ready: Promise<void>;
  running?: Running;
  /** Taken by a run (from before its process is ready until its reply). */
  busy: boolean;
  stderr: string;
}

/** Resident memory of process `pid` in KiB (VmRSS), or undefined where /proc does not say. */
function residentKb(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

const mib = (kb: number) => Math.round(kb / 1024);

/**
 * Strangers' models run here, never in the node's own process: a small pool of child processes (execWorkers)
 * that run a plain bundle with onnxruntime or a ZK bundle's fixed-point program, one job each at a time,
 * further jobs queued. Each run has a wall-clock limit (execTimeoutMs) and a resident-memory limit
 * (execMemoryMb, read from /proc every 50 ms; V8's heap is capped at the same size): past either, the process is killed
 * with SIGKILL and replaced, and the run fails with an ExecutionRefusedError ("time" or "memory"). A model
 * that fails to run (an onnxruntime error, a RangeError from huge dimensions) fails with
 * ExecutionRefusedError("runtime"), an input or output out of range with the ZkmlError the in-process
 * execution gives. The node's event loop never waits on a run, so /healthz, /metrics and its other tasks go
 * on meanwhile. Each process keeps one onnxruntime session per bundle.
 */
export class ExecutionSandbox {
  private readonly slots: (Slot | undefined)[];
  private readonly waiting: (() => void)[] = [];
  private poller?: NodeJS.Timeout;
  private nextId = 0;
  private closing = false;
  /** Runs by how they ended: ok, refused (failed in the runtime), time, memory, crashed. */
  readonly counts = { ok: 0, refused: 0, time: 0, memory: 0, crashed: 0 };

  constructor(
    private readonly limits: Pick<ExecutionLimits, "execTimeoutMs" | "execMemoryMb" | "execWorkers">,
    private readonly log?: Logger,
  ) {
    this.slots = new Array(limits.execWorkers).fill(undefined);
  }

  /** A plain bundle's quantized outputs on `input` (zkml/plain-bundle.ts steps 2-5), in a sandboxed process. */
  async plainOutputs(bundle: LoadedPlainBundle, input: bigint[]): Promise<RunOutputs> {
    return this.outputs({ id: 0, kind: "plain", dir: bundle.dir, input }, bundle.dir);
  }

  /** A ZK bundle's fixed-point outputs on `input`, packed as its circuit packs them, in a sandboxed process. */
  async programOutputs(bundle: LoadedBundle, input: bigint[]): Promise<RunOutputs> {
    const job = {
      id: 0,
      kind: "program" as const,
      dir: bundle.dir,
      packBits: bundle.manifest.publicSignals.packBits,
      input,
    };
    return this.outputs(job, bundle.dir);
  }

  /**
   * A plain bundle's nodes whose cost the task chooses and, unless there are some and they are not
   * allowed, a probe run on zeros under the same limits (an ExecutionRefusedError when it is over them).
   */
  async inspectPlain(bundle: LoadedPlainBundle, allowDynamicShapes: boolean): Promise<Inspection> {
    const { reply, peakKb } = await this.run(
      { id: 0, kind: "inspect", dir: bundle.dir, allowDynamicShapes },
      bundle.dir,
    );
    if (!("dynamic" in reply)) throw new Error("execution process answered an inspection with outputs");
    return {
      dynamic: reply.dynamic,
      ...(reply.probeMs !== undefined ? { probe: { ms: reply.probeMs, peakRssMb: mib(peakKb) } } : {}),
    };
  }

  /** Stop every execution process (a run in flight or queued fails). */
  async close() {
    this.closing = true;
    clearInterval(this.poller);
    for (const wake of this.waiting.splice(0)) wake();
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve) => {
            if (!slot || slot.child.exitCode !== null || slot.child.signalCode !== null) return resolve();
            slot.child.once("exit", () => resolve());
            slot.child.kill("SIGKILL");
          }),
      ),
    );
  }

  /** The pids of the execution processes now running (for tests and operators' checks). */
  pids(): number[] {
    return this.slots.flatMap((s) =>
      s?.child.pid !== undefined && s.child.exitCode === null ? [s.child.pid] : [],
    );
  }

  private async outputs(job: ExecJob, dir: string): Promise<RunOutputs> {
    const { reply, peakKb } = await this.run(job, dir);
    if (!("values" in reply)) throw new Error("execution process answered a run without outputs");
    return { values: reply.values, words: reply.words, ms: reply.ms, peakRssMb: mib(peakKb) };
  }

  /** Runs `job` in a free process (waiting for one), under the limits; errors as the class comment says. */
  private async run(job: ExecJob, dir: string): Promise<{ reply: ExecReply; peakKb: number }> {
    if (this.closing) throw new Error("the execution sandbox is closed");
    const slot = await this.acquire();
    try {
      await slot.ready;
      const id = this.nextId++;
      let peakKb = 0;
      const reply = await new Promise<ExecReply>((resolve, reject) => {
        const running: Running = {
          job: { ...job, id },
          resolve,
          reject,
          peakKb: 0,
          timer: setTimeout(() => this.kill(slot, "time"), this.limits.execTimeoutMs),
        };
        slot.running = running;
        this.startPolling();
        slot.child.send(running.job, (err) => {
          if (err) reject(new ExecutionCrashError(`cannot reach the execution process: ${err.message}`));
        });
      }).finally(() => {
        // A run shorter than the poll interval is never sampled: its process's memory after it counts.
        const after = slot.child.pid !== undefined ? (residentKb(slot.child.pid) ?? 0) : 0;
        peakKb = Math.max(slot.running?.peakKb ?? 0, after);
        if (slot.running) clearTimeout(slot.running.timer);
        slot.running = undefined;
      });
      if ("error" in reply) {
        this.counts.refused++;
        // A path of this server is nobody's business: the bundle's directory is named by its id instead.
        const message = reply.error.split(dir).join(`bundle ${path.basename(dir)}`);
        if (reply.name === "ZkmlError") throw new ZkmlError(reply.code as ZkmlErrorCode, message);
        throw new ExecutionRefusedError("runtime", `the model failed to run: ${message}`);
      }
      this.counts.ok++;
      return { reply, peakKb };
    } finally {
      this.release(slot);
    }
  }

  private acquire(): Promise<Slot> {
    const free = this.slots.findIndex((s) => !s?.running && !s?.busy);
    if (free >= 0) return Promise.resolve(this.claimSlot(free));
    return new Promise((resolve, reject) =>
      this.waiting.push(() => {
        if (this.closing) return reject(new Error("the execution sandbox is closed"));
        const i = this.slots.findIndex((s) => !s?.running && !s?.busy);
        resolve(this.claimSlot(i));
      }),
    );
  }

  private claimSlot(i: number): Slot {
    let slot = this.slots[i];
    if (!slot || slot.child.exitCode !== null || slot.child.signalCode !== null) slot = this.spawn(i);
    slot.busy = true;
    return slot;
  }

  private release(slot: Slot) {
    slot.busy = false;
    this.waiting.shift()?.();
  }

  private spawn(i: number): Slot {
    const child = fork(path.join(__dirname, "exec-worker.js"), [], {
      stdio: ["ignore", "inherit", "pipe", "ipc"],
      serialization: "advanced",
      // V8's own heap is capped too, so a JavaScript allocation fails in the process rather than growing.
      execArgv: [`--max-old-space-size=${this.limits.execMemoryMb}`],
    });
    let markReady!: () => void;
    const slot: Slot = {
      child,
      stderr: "",
      busy: false,
      ready: new Promise<void>((resolve) => (markReady = resolve)),
    };
    child.stderr!.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk);
      slot.stderr = (slot.stderr + chunk.toString("utf8")).slice(-STDERR_TAIL);
    });
    child.on("message", (m: ExecReply | { ready: true }) => {
      if ("ready" in m) return markReady();
      if (slot.running && m.id === slot.running.job.id) slot.running.resolve(m);
    });
    child.on("error", (err) => this.log?.warn({ err: err.message }, "execution process error"));
    child.on("exit", (code, signal) => {
      markReady();
      const running = slot.running;
      if (this.slots[i] === slot) this.slots[i] = undefined;
      if (!running) return;
      running.reject(this.deathError(slot, running, code, signal));
    });
    this.slots[i] = slot;
    return slot;
  }

  /** Why the process running `running` died: the limit it was killed for, its heap, or a crash. */
  private deathError(slot: Slot, running: Running, code: number | null, signal: string | null): Error {
    const what = running.job.kind === "inspect" ? "the probe run on zeros" : "the run";
    if (running.killedFor === "time") {
      this.counts.time++;
      return new ExecutionRefusedError(
        "time",
        `${what} took longer than this node's execTimeoutMs (${this.limits.execTimeoutMs} ms): stopped`,
      );
    }
    if (running.killedFor === "memory" || /heap limit|heap out of memory/i.test(slot.stderr)) {
      this.counts.memory++;
      return new ExecutionRefusedError(
        "memory",
        `${what} needed more than this node's execMemoryMb (${this.limits.execMemoryMb} MiB): stopped`,
      );
    }
    this.counts.crashed++;
    return new ExecutionCrashError(`the execution process died during ${what} (${signal ?? `exit ${code}`})`);
  }

  private kill(slot: Slot, why: "time" | "memory") {
    if (!slot.running || slot.running.killedFor) return;
    slot.running.killedFor = why;
    this.log?.warn(
      { pid: slot.child.pid, limit: why, job: slot.running.job.kind },
      "execution process over its limit: killed",
    );
    slot.child.kill("SIGKILL");
  }

  /** Reads the memory of every process with a run in flight, every MEMORY_POLL_MS, while there is one. */
  private startPolling() {
    if (this.poller) return;
    const limitKb = this.limits.execMemoryMb * 1024;
    this.poller = setInterval(() => {
      let busy = false;
      for (const slot of this.slots) {
        if (!slot?.running || slot.child.pid === undefined) continue;
        busy = true;
        const kb = residentKb(slot.child.pid);
        if (kb === undefined) continue;
        slot.running.peakKb = Math.max(slot.running.peakKb, kb);
        if (kb > limitKb) this.kill(slot, "memory");
      }
      if (!busy) {
        clearInterval(this.poller);
        this.poller = undefined;
      }
    }, MEMORY_POLL_MS);
    this.poller.unref();
  }
}
