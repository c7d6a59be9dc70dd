import fs from "node:fs";
import path from "node:path";
import type { OnnxGraph } from "../../zkml/onnx/graph";
import type { QProgram } from "../../zkml/quant/program";
import type { AnyBundle, LoadedPlainBundle } from "./bundles";
import { ExecutionRefusedError } from "./execution-errors";
import type { Logger } from "./logger";
import type { ExecutionSandbox, RunOutputs } from "./sandbox";

/**
 * What a node will run for strangers, decided before anything runs (issue 20). A model's cost must not be
 * the task's to choose: a plain bundle's input shape is fixed by its manifest, so its cost is fixed too
 * unless a tensor's *values* become a shape (an input value fed to ConstantOfShape, Expand, Reshape, Tile,
 * Range, Resize, Pad, Slice, TopK, OneHot...), the graph holds an op whose output size is data-dependent
 * (NonZero, Compress, Unique, NonMaxSuppression), or control flow (Loop, Scan, If). Such a model is refused
 * by name unless the operator opts in (allowDynamicShapes); then the sandbox's time and memory limits still
 * bound each run. A static-shape model costs the same on every input, so one probe run on zeros inside the
 * sandbox measures it: over the limits, it is refused once for every task. A ZK bundle's fixed-point
 * program is static by construction; its cost is counted from program.json.
 */

/** The inputs of an op that become a shape or a size (by position), for ops whose output size they set. */
export const SHAPE_INPUTS: Readonly<Record<string, readonly number[]>> = {
  ConstantOfShape: [0],
  Expand: [1],
  Reshape: [1],
  Tile: [1],
  Range: [0, 1, 2],
  Resize: [1, 2, 3],
  Upsample: [1],
  Pad: [1],
  Slice: [1, 2, 3, 4],
  TopK: [1],
  OneHot: [1],
  CenterCropPad: [1],
  Col2Im: [1, 2],
};

/** Ops whose output size depends on the values of their inputs, or that run subgraphs: never static. */
export const DATA_DEPENDENT_OPS: ReadonlySet<string> = new Set([
  "NonZero",
  "Compress",
  "Unique",
  "NonMaxSuppression",
  "StringSplit",
  "Loop",
  "Scan",
  "If",
]);

/** Ops whose output values depend only on their input's shape (static in a plain bundle), not its values. */
const SHAPE_READERS: ReadonlySet<string> = new Set(["Shape", "Size"]);

/**
 * The nodes of `graph` whose cost the task's input values can choose, each as "<op> node '<name>'" with why;
 * empty for a static-shape model. A tensor depends on the task when it is a graph input or computed from one
 * by anything but Shape or Size (the input's shape is fixed by the bundle's manifest, so every shape in a
 * graph without such nodes is static). Initializers and Constant nodes are static.
 */
export function dynamicShapeNodes(graph: Pick<OnnxGraph, "inputs" | "nodes" | "initializers">): string[] {
  const dependent = new Set(graph.inputs.map((i) => i.name));
  const found: string[] = [];
  for (const node of graph.nodes) {
    const label = `${node.opType} node '${node.name}'`;
    if (DATA_DEPENDENT_OPS.has(node.opType)) {
      found.push(`${label} (its output size or control flow depends on values)`);
    } else {
      const shapeInputs = SHAPE_INPUTS[node.opType] ?? [];
      const fromTask = shapeInputs.filter((i) => node.inputs[i] && dependent.has(node.inputs[i]));
      if (fromTask.length > 0)
        found.push(
          `${label} (input ${fromTask.join(", ")}, a shape or size, is computed from the task's input)`,
        );
    }
    const taints =
      node.opType !== "Constant" &&
      !SHAPE_READERS.has(node.opType) &&
      node.inputs.some((name) => name !== "" && dependent.has(name));
    if (taints || DATA_DEPENDENT_OPS.has(node.opType)) for (const out of node.outputs) dependent.add(out);
  }
  return found;
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * The arithmetic a ZK bundle's fixed-point program does per run: the multiply-accumulates of its dense and
 * conv layers, plus one per output value of every other op and per entry of a pool's or arg-max's windows.
 * Only dense and conv layers can cost more than program.json's size (a conv reuses its weights at every
 * position), so this with maxModelBytes bounds a run. Measured on the fixture models, the executor's BigInt
 * arithmetic runs 2·10^6 to 4·10^7 of them a second: the default limit, 10^8, is about the default 10 s.
 */
export function programCost(program: Pick<QProgram, "ops" | "tensors">): number {
  let cost = 0;
  for (const op of program.ops) {
    switch (op.op) {
      case "dense":
        cost += op.rows * op.n * op.k;
        break;
      case "conv":
        cost += op.batch * op.oc * op.oh * op.ow * Math.ceil(op.c / op.group) * op.kh * op.kw;
        break;
      case "maxpool":
      case "sumpool":
        cost += op.windows.reduce((n, w) => n + w.length, 0);
        break;
      case "argmax":
        cost += op.groups.reduce((n, g) => n + g.length, 0);
        break;
      case "lincomb":
        cost += op.size * Math.max(1, op.terms.length);
        break;
      default:
        cost += size(program.tensors[op.dst]?.shape ?? [1]);
    }
  }
  return cost;
}

/** The limits a node runs strangers' models under (its execution flags). */
export interface ExecutionLimits {
  /** Wall-clock limit of one run, in ms: the run's process is killed past it. */
  execTimeoutMs: number;
  /** Resident memory limit of an execution process, in MiB: killed past it. */
  execMemoryMb: number;
  /** Execution processes (runs at once; more queue). */
  execWorkers: number;
  /** Run models whose shapes the task's input chooses (still under the time and memory limits). */
  allowDynamicShapes: boolean;
  /** Largest model file (model.onnx, program.json) the node parses, in bytes. */
  maxModelBytes: number;
  /** Largest fixed-point program cost (programCost) a ZK bundle may have. */
  maxProgramOps: number;
}

const MiB = 1024 * 1024;
/** Bundles whose verdict is kept (a refusal included), the oldest forgotten first. */
const VERDICTS_KEPT = 1024;

/**
 * How a long-lived node runs a stranger's model: the policy first, once per bundle (its verdict kept, a
 * refusal included, so a refused model costs nothing on its next task), then the run in the sandbox. A
 * plain bundle is refused when its model file is over maxModelBytes, when its cost is chosen by the task's
 * input (unless allowDynamicShapes), or when its probe run on zeros is over the time or memory limit; a ZK
 * bundle when its program's cost is over maxProgramOps. Every refusal is an ExecutionRefusedError naming
 * the model's problem and the flag that sets the limit.
 */
export class ModelExecutor {
  private readonly verdicts = new Map<string, Promise<void>>();

  constructor(
    readonly sandbox: ExecutionSandbox,
    readonly limits: ExecutionLimits,
    private readonly log?: Logger,
  ) {}

  /** The bundle's outputs on the quantized `input`, bit for bit what runtime/optimistic.ts's in-process execution gives. */
  async outputs(bundle: AnyBundle, input: bigint[]): Promise<RunOutputs> {
    await this.admit(bundle);
    return bundle.kind === "plain"
      ? this.sandbox.plainOutputs(bundle, input)
      : this.sandbox.programOutputs(bundle, input);
  }

  /** Refuses (ExecutionRefusedError) a bundle the policy will not run; checked once per bundle. */
  admit(bundle: AnyBundle): Promise<void> {
    let verdict = this.verdicts.get(bundle.dir);
    if (!verdict) {
      verdict = bundle.kind === "plain" ? this.admitPlain(bundle) : this.admitProgram(bundle.program);
      this.verdicts.set(bundle.dir, verdict);
      if (this.verdicts.size > VERDICTS_KEPT)
        this.verdicts.delete(this.verdicts.keys().next().value as string);
      // Only a refusal is final: a crashed inspection is tried again with the next task.
      verdict.catch((e) => {
        if (!(e instanceof ExecutionRefusedError)) this.verdicts.delete(bundle.dir);
      });
    }
    return verdict;
  }

  private async admitPlain(bundle: LoadedPlainBundle): Promise<void> {
    const id = path.basename(bundle.dir);
    const bytes = fs.statSync(path.join(bundle.dir, bundle.manifest.onnx.file)).size;
    if (bytes > this.limits.maxModelBytes) {
      throw new ExecutionRefusedError(
        "cost",
        `model of bundle ${id} is ${(bytes / MiB).toFixed(1)} MiB, over this node's maxModelBytes ` +
          `(${(this.limits.maxModelBytes / MiB).toFixed(1)} MiB)`,
      );
    }
    let inspection;
    try {
      inspection = await this.sandbox.inspectPlain(bundle, this.limits.allowDynamicShapes);
    } catch (e) {
      if (!(e instanceof ExecutionRefusedError)) throw e;
      throw new ExecutionRefusedError(
        e.kind === "runtime" ? "runtime" : "cost",
        `model of bundle ${id} refused by its probe run on zeros: ${e.message}`,
      );
    }
    const { dynamic, probe } = inspection;
    if (dynamic.length > 0 && !this.limits.allowDynamicShapes) {
      const shown =
        dynamic.slice(0, 3).join("; ") + (dynamic.length > 3 ? `; and ${dynamic.length - 3} more` : "");
      throw new ExecutionRefusedError(
        "dynamic-shape",
        `model of bundle ${id} has shapes the task's input chooses, so its cost is the task's to choose: ` +
          `${shown}; this node runs static-shape models only (allowDynamicShapes)`,
      );
    }
    this.log?.info(
      { bundle: id, probeMs: probe?.ms, probeRssMb: probe?.peakRssMb, dynamicShapes: dynamic.length },
      dynamic.length > 0
        ? "model admitted with shapes the task chooses (allowDynamicShapes): each run bound by the sandbox"
        : "model admitted: static shapes, probe run within the limits",
    );
  }

  private async admitProgram(program: Pick<QProgram, "ops" | "tensors">): Promise<void> {
    const cost = programCost(program);
    if (cost > this.limits.maxProgramOps) {
      throw new ExecutionRefusedError(
        "program",
        `fixed-point program costs ${cost} operations a run, over this node's maxProgramOps (${this.limits.maxProgramOps})`,
      );
    }
  }
}
