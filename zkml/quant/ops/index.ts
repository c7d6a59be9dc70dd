/**
 * The op registry: every op the compiler lowers, merged from one table per op family (onnxruntime's
 * kernel registry). Adding an op touches its family's file and its conformance cases, nothing else: the
 * dispatcher (quantize.ts) is a lookup, and SUPPORTED_OPS is derived from here.
 */
import { ACTIVATION_OPS } from "./activations";
import { OpKernel, OpTable } from "./context";
import { CONV_OPS } from "./conv";
import { LINEAR_OPS } from "./linear";
import { ML_OPS } from "./ml";
import { REDUCE_OPS } from "./reduce";
import { WIRING_OPS } from "./wiring";

export type { LoweringContext, OpKernel, OpTable, OutputMeta, Outputs, Value, DynValue } from "./context";

/** The op families, each one table of op type -> kernel. */
export const OP_FAMILIES: Readonly<Record<string, OpTable>> = {
  linear: LINEAR_OPS,
  conv: CONV_OPS,
  activations: ACTIVATION_OPS,
  reduce: REDUCE_OPS,
  wiring: WIRING_OPS,
  ml: ML_OPS,
};

function merge(families: Readonly<Record<string, OpTable>>): ReadonlyMap<string, OpKernel> {
  const all = new Map<string, OpKernel>();
  const owner = new Map<string, string>();
  for (const [family, table] of Object.entries(families)) {
    for (const [op, kernel] of Object.entries(table)) {
      // A programming error, caught by any test that loads the compiler: two families claim one op.
      if (all.has(op)) throw new Error(`op ${op} is registered by both ${owner.get(op)} and ${family}`);
      all.set(op, kernel);
      owner.set(op, family);
    }
  }
  return all;
}

/** Every supported op type -> its kernel. */
export const OP_REGISTRY: ReadonlyMap<string, OpKernel> = merge(OP_FAMILIES);

/** The kernel for an op type, undefined where the op is not supported. */
export function kernelFor(opType: string): OpKernel | undefined {
  return OP_REGISTRY.get(opType);
}

/** Ops the compiler lowers, sorted; any other op is an UNSUPPORTED_OP error naming the op and node. */
export const SUPPORTED_OPS: string[] = [...OP_REGISTRY.keys()].sort();
