/**
 * What an op's lowering sees of the quantizer, and the shape of an op family's table.
 *
 * A lowering reads its node and input values, asks the context for constants and tensors, and emits
 * program steps through it; it never touches the quantizer's environment. The dispatcher (quantize.ts)
 * resolves inputs, picks the kernel from the registry (ops/index.ts) and binds the outputs.
 */
import { ConstTensor, OnnxNode } from "../../onnx/graph";
import { LinTerm, OutputPart, QOp, QProgram, QTensor } from "../program";

/** How a graph output reads, as a kernel describes it (see OutputPart). */
export type OutputMeta = Pick<OutputPart, "postprocess" | "normalize" | "labels" | "zipmap">;

/** An ONNX value during lowering: a constant known at compile time, or a program tensor with its shape. */
export type Value = { kind: "const"; t: ConstTensor } | { kind: "dyn"; id: number; shape: number[] };

/** A program tensor as a lowering holds it. */
export interface DynValue {
  id: number;
  shape: number[];
}

export interface LoweringContext {
  /** The model's default-domain opset. */
  readonly opset: number;
  /** Fixed-point scale s: a real x at scale 1 is round(x * 2^s). */
  readonly scaleBits: number;
  /** 2^s: the real 1 at scale 1. */
  readonly one: bigint;

  // ---- constants and tensors ----
  /** Quantizes a model constant at `scale` (in multiples of s); a non-finite one is a BAD_INPUT error. */
  q(x: number, scale?: number): bigint;
  /** Input i, which must be a constant (UNSUPPORTED_OP otherwise); `what` names it in the message. */
  constInput(node: OnnxNode, i: number, what: string): ConstTensor;
  /** Like constInput, undefined where the input is absent. */
  optConst(node: OnnxNode, i: number, what: string): ConstTensor | undefined;
  /** The value as a program tensor; a constant is materialised as a (free) gather of constants. */
  dyn(v: Value): DynValue;
  tensor(id: number): QTensor;

  // ---- emitting program steps (each returns the id of the tensor it writes) ----
  /** A new tensor with its scale and static bound; a bound beyond 2^240 is an OUT_OF_RANGE error. */
  newTensor(shape: number[], scale: 0 | 1 | 2, maxAbs: bigint): QTensor;
  /** Appends an op the lowering built itself (its dst from newTensor). */
  emit(op: QOp): void;
  /** Brings a scale-2 accumulator back to scale 1 with a range check (no-op at scale 1). */
  rescale(node: string, src: number, relu?: boolean): number;
  relu(node: string, src: number): number;
  /** sum of terms + bias; `approxError`, where given, is the op's stated approximation error. */
  lincomb(
    node: string,
    shape: number[],
    terms: LinTerm[],
    bias: bigint[],
    scale: 0 | 1 | 2,
    approxError?: number,
  ): number;
  gather(node: string, shape: number[], parts: { src: number; index: number[] }[], consts?: bigint[]): number;

  // ---- outputs ----
  /**
   * Says how the value named `name` reads if it is a graph output (a classifier's label and its classes, a
   * post transform applied off-circuit); ignored for an intermediate value.
   */
  describeOutput(name: string, meta: OutputMeta): void;
  /** What describeOutput recorded for `name`, if anything. */
  outputMeta(name: string): OutputMeta | undefined;
}

/** What a lowering binds to the node's outputs: one value (output 0), or one per output index. */
export type Outputs = Value | (Value | undefined)[];

/**
 * One op's kernel. The dispatcher tries, in order: `always` (whatever the inputs); `fold` when every input
 * is constant (shape subgraphs); `lower` when some input is computed. A missing `fold` or `lower` is an
 * UNSUPPORTED_OP error naming why.
 */
export interface OpKernel {
  /** Lowers the node whatever its inputs are (constants, pass-through ops). */
  always?: (ctx: LoweringContext, node: OnnxNode, ins: (Value | undefined)[]) => Outputs;
  /** Evaluates the node on constant inputs. */
  fold?: (ctx: LoweringContext, node: OnnxNode, ins: (ConstTensor | undefined)[]) => ConstTensor;
  /** Lowers the node when at least one input is computed. */
  lower?: (ctx: LoweringContext, node: OnnxNode, ins: (Value | undefined)[]) => Value;
  /**
   * As the node producing the graph's output: a monotone normalisation applied off-circuit to the proven
   * value (its input), so the node itself emits nothing.
   */
  asOutput?: (
    node: OnnxNode,
    input: Value,
    opset: number,
  ) => Pick<QProgram["output"], "postprocess" | "normalize">;
}

/** An op family's kernels by ONNX op type. */
export type OpTable = Readonly<Record<string, OpKernel>>;
