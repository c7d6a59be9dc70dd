/** Shape helpers shared by constant folding, lowering and tests. */

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** numpy-style broadcast of two shapes, or null when they do not broadcast. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(Math.max(da, db));
  }
  return out;
}

/** For each element of `outShape`, the flat index of the element of `inShape` it broadcasts from. */
export function broadcastIndex(outShape: readonly number[], inShape: readonly number[]): number[] {
  const n = outShape.length;
  const padded = [...new Array<number>(n - inShape.length).fill(1), ...inShape];
  const inStrides = strides(padded);
  const total = numel(outShape);
  const out = new Array<number>(total);
  const coord = new Array<number>(n).fill(0);
  for (let i = 0; i < total; i++) {
    let idx = 0;
    for (let d = 0; d < n; d++) if (padded[d] !== 1) idx += coord[d] * inStrides[d];
    out[i] = idx;
    for (let d = n - 1; d >= 0; d--) {
      if (++coord[d] < outShape[d]) break;
      coord[d] = 0;
    }
  }
  return out;
}

/** For each output element of a transpose by `perm`, the flat input index. */
export function transposeIndex(inShape: readonly number[], perm: readonly number[]): number[] {
  const outShape = perm.map((p) => inShape[p]);
  const inStrides = strides(inShape);
  const total = numel(inShape);
  const out = new Array<number>(total);
  const coord = new Array<number>(outShape.length).fill(0);
  for (let i = 0; i < total; i++) {
    let idx = 0;
    for (let d = 0; d < perm.length; d++) idx += coord[d] * inStrides[perm[d]];
    out[i] = idx;
    for (let d = outShape.length - 1; d >= 0; d--) {
      if (++coord[d] < outShape[d]) break;
      coord[d] = 0;
    }
  }
  return out;
}

/** Normalises a possibly negative axis against rank r. */
export function normAxis(axis: number, r: number): number {
  return axis < 0 ? axis + r : axis;
}
