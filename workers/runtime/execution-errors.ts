/**
 * Why a node will not run a model on a task: its cost (from the graph and the input's shape, or measured by a
 * probe run) is over the node's execution policy, or the sandboxed run hit its time or memory limit, or the
 * runtime failed deterministically (an onnxruntime error, a RangeError from huge dimensions). The same model on
 * the same input fails the same way again, so the task is refused once, by name, and never retried.
 */
export class ExecutionRefusedError extends Error {
  constructor(
    /** What was exceeded or failed: "time", "memory", "cost", "dynamic-shape", "program", "runtime". */
    readonly kind: "time" | "memory" | "cost" | "dynamic-shape" | "program" | "runtime",
    message: string,
  ) {
    super(message);
    this.name = "ExecutionRefusedError";
  }
}
