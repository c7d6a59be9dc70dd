import { fail } from "./errors";

/**
 * Runs the float model with onnxruntime (CPU): the reference the quantized output is compared with.
 * The session is created per call; callers running many inputs should use referenceSession().
 */
type Ort = typeof import("onnxruntime-node");

/** onnxruntime and a session on `onnxPath`; a model it cannot load is a MALFORMED_MODEL error. */
async function openSession(
  onnxPath: string,
): Promise<{ ort: Ort; session: import("onnxruntime-node").InferenceSession }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ort = require("onnxruntime-node") as Ort;
  try {
    return { ort, session: await ort.InferenceSession.create(onnxPath) };
  } catch (e) {
    return fail("MALFORMED_MODEL", `onnxruntime cannot load ${onnxPath}: ${(e as Error).message}`);
  }
}

export async function referenceSession(
  onnxPath: string,
): Promise<(input: readonly number[], shape: readonly number[]) => Promise<number[]>> {
  const { ort, session } = await openSession(onnxPath);
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  return async (input, shape) => {
    const tensor = new ort.Tensor("float32", Float32Array.from(input), [...shape]);
    const result = await session.run({ [inputName]: tensor });
    const out = result[outputName];
    return Array.from(out.data as ArrayLike<number | bigint>, (v) => Number(v));
  };
}

export async function runReference(
  onnxPath: string,
  input: readonly number[],
  shape: readonly number[],
): Promise<number[]> {
  const run = await referenceSession(onnxPath);
  return run(input, shape);
}

/**
 * onnxruntime's outputs by name for a model with several (a classifier's label and probabilities): numbers,
 * or strings for a string label. Map outputs (ZipMap) are not fetched: onnxruntime-node cannot return them.
 */
export async function referenceOutputs(
  onnxPath: string,
): Promise<
  (input: readonly number[], shape: readonly number[]) => Promise<Record<string, (number | string)[]>>
> {
  const { ort, session } = await openSession(onnxPath);
  const inputName = session.inputNames[0];
  const meta = session.outputMetadata as unknown as { name: string; isTensor: boolean }[] | undefined;
  const names = session.outputNames.filter((n, i) => !meta || meta[i]?.isTensor !== false);
  return async (input, shape) => {
    const tensor = new ort.Tensor("float32", Float32Array.from(input), [...shape]);
    const result = await session.run({ [inputName]: tensor }, names);
    const out: Record<string, (number | string)[]> = {};
    for (const n of names)
      out[n] = Array.from(result[n].data as ArrayLike<number | bigint | string>, (v) =>
        typeof v === "string" ? v : Number(v),
      );
    return out;
  };
}
