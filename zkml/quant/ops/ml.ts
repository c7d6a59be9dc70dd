/**
 * ONNX-ML (domain ai.onnx.ml): the tabular models scikit-learn, XGBoost and LightGBM export.
 *
 * - TreeEnsembleRegressor / TreeEnsembleClassifier. Every internal node's branch test is one comparison
 *   against its threshold (a `compare` op: Num2Bits of x - t, `bits` constraints; EQ/NEQ two). Which leaf
 *   a tree reaches is then a product of path bits, built top down one product per internal node below the
 *   root: reach(root) = 1, reach(true child) = reach(node) * bit(node), reach(false child) = reach(node) -
 *   reach(true child). The leaf reaches are 0/1 and exactly one per tree is 1, so the scores are a free
 *   linear combination (a dense op over the leaf-reach vector) and their bound is the sum over trees of the
 *   largest leaf weight. Cost per tree: (bits) per internal node + 1 per internal node below the root.
 * - LinearRegressor / LinearClassifier: a dense op (free) and a rescale, as Gemm.
 * - Scaler: (x - offset) * scale, free, one rescale.
 * - Normalizer (MAX, L1, L2): a proven rounded division per element by the row's norm (./normalizer.ts).
 * - ZipMap: off-circuit presentation of the probabilities (a map per row), nothing to prove.
 *
 * The outputs follow onnxruntime, not a literal reading of the spec: its binary-classifier conventions
 * (a single score column with 2 classes: logistic of [-s, s] under LOGISTIC, else [1 - s, s] for
 * all-positive weights and [-s, s] for mixed ones; label by s > 0.5 or s > 0 respectively), measured
 * against onnxruntime 1.30 by test/zkml/tabular-differential.test.ts, base values and post transforms. A post transform is applied
 * off-circuit to the proven scores (like Softmax at a model's output): the proof decides the scores and
 * the label, the transform is a public function of them.
 *
 * Inputs are finite numbers (the quantizer refuses NaN), so nodes_missing_value_tracks_true never fires:
 * a model that uses it for missing values compiles and behaves as onnxruntime does on finite inputs.
 */
import { fail } from "../../errors";
import { OnnxNode, nodeLabel } from "../../onnx/graph";
import { LinTerm, OutputTransform } from "../program";
import { numel } from "../shapes";
import { LoweringContext, OpTable, Value } from "./context";
import { denseBound } from "./linear";
import { normalizer } from "./normalizer";
import {
  absBig,
  attrInts,
  bitLength,
  attrNum,
  attrStr,
  attrStrings,
  isTensor,
  maxBig,
  signedBits,
} from "./util";

export const ML_DOMAIN = "ai.onnx.ml";

/** Op types of the ai.onnx.ml domain the compiler lowers (ML_OPS' keys). */
export const ML_OP_TYPES: ReadonlySet<string> = new Set([
  "TreeEnsembleClassifier",
  "TreeEnsembleRegressor",
  "LinearClassifier",
  "LinearRegressor",
  "Scaler",
  "Normalizer",
  "ZipMap",
]);

export const ML_OPS: OpTable = {
  TreeEnsembleRegressor: { lower: (ctx, node, ins) => treeRegressor(ctx, node, ins[0] as Value) },
  TreeEnsembleClassifier: { always: (ctx, node, ins) => treeClassifier(ctx, node, ins[0]) },
  LinearRegressor: { lower: (ctx, node, ins) => linearRegressor(ctx, node, ins[0] as Value) },
  LinearClassifier: { always: (ctx, node, ins) => linearClassifier(ctx, node, ins[0]) },
  Scaler: { lower: (ctx, node, ins) => scaler(ctx, node, ins[0] as Value) },
  Normalizer: { lower: (ctx, node, ins) => normalizer(ctx, node, ins[0] as Value) },
  ZipMap: { always: (ctx, node, ins) => zipMap(ctx, node, ins[0]) },
};

const TRANSFORMS: Record<string, OutputTransform> = {
  NONE: "none",
  LOGISTIC: "logistic",
  SOFTMAX: "softmax",
  SOFTMAX_ZERO: "softmax_zero",
  PROBIT: "probit",
};

function postTransform(node: OnnxNode): OutputTransform {
  const name = attrStr(node, "post_transform", "NONE");
  const t = TRANSFORMS[name];
  if (!t)
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: post_transform '${name}' is not an ONNX-ML transform`);
  return t;
}

/** A list-of-floats attribute, or its `<name>_as_tensor` form (ai.onnx.ml opset 3). */
function floatsAttr(node: OnnxNode, name: string): number[] {
  const t = node.attrs.get(`${name}_as_tensor`);
  if (isTensor(t)) return [...t.data];
  const v = node.attrs.get(name);
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "number"))
    fail("UNSUPPORTED_ATTRIBUTE", `${nodeLabel(node)}: attribute '${name}' should be a list of numbers`);
  return v as number[];
}

/** The input as [rows, features]: a 2-D [N, F] tensor, or a 1-D [F] one (one row). */
function tabular(
  ctx: LoweringContext,
  node: OnnxNode,
  xv: Value | undefined,
): { id: number; rows: number; f: number } {
  if (!xv) fail("MALFORMED_MODEL", `${nodeLabel(node)} has no input`);
  const x = ctx.dyn(xv);
  if (x.shape.length === 2) return { id: x.id, rows: x.shape[0], f: x.shape[1] };
  if (x.shape.length === 1) return { id: x.id, rows: 1, f: x.shape[0] };
  return fail(
    "UNSUPPORTED_OP",
    `${nodeLabel(node)}: the input must be [N, features] or [features], got [${x.shape}]`,
  );
}

/** The class labels of a classifier: int64 or string, exactly one kind. */
function classLabels(node: OnnxNode, intsName: string): (number | string)[] {
  const ints = attrInts(node, intsName, []);
  const strings = attrStrings(node, "classlabels_strings", []);
  if (ints.length && strings.length)
    fail("MALFORMED_MODEL", `${nodeLabel(node)} has both ${intsName} and classlabels_strings`);
  const labels = ints.length ? ints : strings;
  if (labels.length < 2)
    fail("MALFORMED_MODEL", `${nodeLabel(node)} needs at least 2 class labels, got ${labels.length}`);
  return labels;
}

// ---- linear forms ---------------------------------------------------------------------------------------

/** A linear form over program tensor elements: bias + sum coef * t[src][index]. */
interface Form {
  bias: bigint;
  terms: { src: number; index: number; coef: bigint }[];
}

const constForm = (bias: bigint): Form => ({ bias, terms: [] });
const elemForm = (src: number, index: number, coef = 1n): Form => ({
  bias: 0n,
  terms: [{ src, index, coef }],
});

/**
 * One lincomb op computing each form (free in R1CS). `maxAbs`, where given, is a bound the caller proves
 * (e.g. a 0/1 indicator); otherwise the usual sum of |coef| * bound.
 */
function materialize(
  ctx: LoweringContext,
  label: string,
  shape: number[],
  forms: Form[],
  scale: 0 | 1 | 2,
  maxAbs?: bigint,
): number {
  const n = forms.length;
  // One LinTerm per (source tensor, k-th occurrence in an element): every element sees each term once.
  const slots = new Map<number, number>();
  for (const f of forms) {
    const count = new Map<number, number>();
    for (const t of f.terms) count.set(t.src, (count.get(t.src) ?? 0) + 1);
    for (const [src, c] of count) slots.set(src, Math.max(slots.get(src) ?? 0, c));
  }
  const terms: LinTerm[] = [];
  const slotOf = new Map<number, number>();
  for (const [src, c] of slots) {
    slotOf.set(src, terms.length);
    for (let k = 0; k < c; k++)
      terms.push({ src, coef: new Array<bigint>(n).fill(0n), index: new Array<number>(n).fill(0) });
  }
  forms.forEach((f, i) => {
    const used = new Map<number, number>();
    for (const t of f.terms) {
      const k = used.get(t.src) ?? 0;
      used.set(t.src, k + 1);
      const term = terms[(slotOf.get(t.src) as number) + k];
      term.coef[i] = t.coef;
      (term.index as number[])[i] = t.index;
    }
  });
  const bias = forms.map((f) => f.bias);
  if (maxAbs === undefined) return ctx.lincomb(label, shape, terms, bias, scale);
  const out = ctx.newTensor(shape, scale, maxAbs);
  ctx.emit({ op: "lincomb", node: label, dst: out.id, size: n, terms, bias });
  return out.id;
}

/** acc[r][j] = bias[j] + sum_i w[j*k + i] * src[r][i] at `scale`, with a bound the caller gives. */
function denseAt(
  ctx: LoweringContext,
  label: string,
  src: number,
  rows: number,
  k: number,
  n: number,
  weights: bigint[],
  bias: bigint[],
  scale: 0 | 1 | 2,
  maxAbs?: bigint,
): number {
  const bound = maxAbs ?? denseBound(ctx.tensor(src).maxAbs, k, n, weights, bias);
  const out = ctx.newTensor([rows, n], scale, bound);
  ctx.emit({ op: "dense", node: label, src, dst: out.id, rows, k, n, weights, bias });
  return out.id;
}

// ---- trees ----------------------------------------------------------------------------------------------

const BRANCH_MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"];

interface TreeNode {
  key: string;
  tree: number;
  feature: number;
  mode: string;
  value: number;
  trueKey: string;
  falseKey: string;
  /** For a leaf: (target or class id, weight) pairs. */
  weights: { id: number; w: number }[];
}

interface Ensemble {
  /** Root key per tree, in tree-id order. */
  roots: string[];
  nodes: Map<string, TreeNode>;
  /** Distinct target/class ids that carry weights. */
  ids: Set<number>;
}

/** Reads and checks the tree structure: one root per tree, no cycle, every weight on a leaf. */
function readEnsemble(node: OnnxNode, prefix: "class" | "target", features: number): Ensemble {
  const label = nodeLabel(node);
  const treeIds = attrInts(node, "nodes_treeids", []);
  const nodeIds = attrInts(node, "nodes_nodeids", []);
  const featureIds = attrInts(node, "nodes_featureids", []);
  const modes = attrStrings(node, "nodes_modes", []);
  const values = floatsAttr(node, "nodes_values");
  const trueIds = attrInts(node, "nodes_truenodeids", []);
  const falseIds = attrInts(node, "nodes_falsenodeids", []);
  const n = treeIds.length;
  if (n === 0) fail("MALFORMED_MODEL", `${label} has no tree nodes`);
  for (const [name, arr] of [
    ["nodes_nodeids", nodeIds],
    ["nodes_featureids", featureIds],
    ["nodes_modes", modes],
    ["nodes_values", values],
    ["nodes_truenodeids", trueIds],
    ["nodes_falsenodeids", falseIds],
  ] as const) {
    if (arr.length !== n)
      fail("MALFORMED_MODEL", `${label}: ${name} has ${arr.length} entries, nodes_treeids has ${n}`);
  }
  const nodes = new Map<string, TreeNode>();
  const key = (t: number, i: number): string => `${t}:${i}`;
  for (let i = 0; i < n; i++) {
    const k = key(treeIds[i], nodeIds[i]);
    if (nodes.has(k)) fail("MALFORMED_MODEL", `${label}: tree ${treeIds[i]} has node ${nodeIds[i]} twice`);
    const mode = modes[i];
    if (mode !== "LEAF" && !BRANCH_MODES.includes(mode))
      fail(
        "UNSUPPORTED_ATTRIBUTE",
        `${label}: node mode '${mode}' (supported: LEAF, ${BRANCH_MODES.join(", ")})`,
      );
    if (mode !== "LEAF" && (featureIds[i] < 0 || featureIds[i] >= features))
      fail(
        "MALFORMED_MODEL",
        `${label}: node ${k} tests feature ${featureIds[i]}; the input has ${features}`,
      );
    if (!Number.isFinite(values[i]) && mode !== "LEAF")
      fail("BAD_INPUT", `${label}: node ${k} has threshold ${values[i]}`);
    nodes.set(k, {
      key: k,
      tree: treeIds[i],
      feature: featureIds[i],
      mode,
      value: values[i],
      trueKey: key(treeIds[i], trueIds[i]),
      falseKey: key(treeIds[i], falseIds[i]),
      weights: [],
    });
  }
  const wTrees = attrInts(node, `${prefix}_treeids`, []);
  const wNodes = attrInts(node, `${prefix}_nodeids`, []);
  const wIds = attrInts(node, `${prefix}_ids`, []);
  const ws = floatsAttr(node, `${prefix}_weights`);
  if (wNodes.length !== wTrees.length || wIds.length !== wTrees.length || ws.length !== wTrees.length)
    fail("MALFORMED_MODEL", `${label}: the ${prefix}_* weight attributes differ in length`);
  const ids = new Set<number>();
  for (let i = 0; i < wTrees.length; i++) {
    const leaf = nodes.get(key(wTrees[i], wNodes[i]));
    if (!leaf)
      fail(
        "MALFORMED_MODEL",
        `${label}: a weight names node ${wTrees[i]}:${wNodes[i]}, which does not exist`,
      );
    if (leaf.mode !== "LEAF")
      fail("MALFORMED_MODEL", `${label}: a weight is on node ${leaf.key}, which is not a leaf`);
    if (!Number.isFinite(ws[i])) fail("BAD_INPUT", `${label}: leaf ${leaf.key} has weight ${ws[i]}`);
    leaf.weights.push({ id: wIds[i], w: ws[i] });
    ids.add(wIds[i]);
  }
  // Roots: the nodes of each tree that no node of it points to.
  const children = new Set<string>();
  for (const nd of nodes.values())
    if (nd.mode !== "LEAF") {
      for (const c of [nd.trueKey, nd.falseKey]) {
        if (!nodes.has(c))
          fail("MALFORMED_MODEL", `${label}: node ${nd.key} branches to ${c}, which does not exist`);
        children.add(c);
      }
    }
  const byTree = new Map<number, string[]>();
  for (const nd of nodes.values())
    if (!children.has(nd.key)) byTree.set(nd.tree, [...(byTree.get(nd.tree) ?? []), nd.key]);
  const trees = [...new Set(treeIds)].sort((a, b) => a - b);
  const roots = trees.map((t) => {
    const r = byTree.get(t) ?? [];
    if (r.length !== 1)
      fail(
        "MALFORMED_MODEL",
        `${label}: tree ${t} has ${r.length} roots (a tree needs exactly one; a cycle has none)`,
      );
    return r[0];
  });
  return { roots, nodes, ids };
}

/**
 * The integer comparison on the quantized value x_q = round(x 2^s) that decides the branch: against the
 * threshold quantized the same way, R = round(t 2^s) (LEQ: x_q <= R, LT: x_q < R, GTE: x_q >= R, GT:
 * x_q > R, EQ/NEQ: x_q == R or not). An input equal to a threshold (common in tabular data: thresholds
 * are stored as float32 and inputs repeat them) therefore decides as onnxruntime does; only an input
 * within 2^-s of a threshold, but not equal to it, can decide differently (the error bound flags it).
 * Thresholds beyond the value's static range are clamped: the outcome is the same.
 */
function branchTest(
  mode: string,
  t: number,
  scaleBits: number,
  bound: bigint,
): { kind: "lt" | "ge" | "eq" | "ne"; c: bigint } {
  const clamp = (c: bigint): bigint => (c > bound + 1n ? bound + 1n : c < -bound - 1n ? -bound - 1n : c);
  const r = BigInt(Math.round(t * 2 ** scaleBits));
  switch (mode) {
    case "BRANCH_LEQ":
      return { kind: "lt", c: clamp(r + 1n) };
    case "BRANCH_LT":
      return { kind: "lt", c: clamp(r) };
    case "BRANCH_GTE":
      return { kind: "ge", c: clamp(r) };
    case "BRANCH_GT":
      return { kind: "ge", c: clamp(r + 1n) };
    case "BRANCH_EQ":
      return { kind: "eq", c: clamp(r) };
    default:
      return { kind: "ne", c: clamp(r) };
  }
}

/**
 * Lowers the trees to the leaf-reach indicators: a [rows, leaves] tensor of 0/1 values at scale 0 with
 * exactly one 1 per tree per row. Returns it with the leaves in order (tree by tree, top down).
 */
function leafReaches(
  ctx: LoweringContext,
  label: string,
  x: { id: number; rows: number; f: number },
  ens: Ensemble,
): { reach: number; leaves: TreeNode[] } {
  const { rows } = x;
  const bound = ctx.tensor(x.id).maxAbs;
  // Walk each tree top down, level by level, collecting internal nodes per level and leaves.
  const internals: TreeNode[] = [];
  const leaves: TreeNode[] = [];
  const levels: TreeNode[][] = [];
  for (const root of ens.roots) {
    let frontier = [root];
    let depth = 0;
    const seen = new Set<string>();
    while (frontier.length) {
      const next: string[] = [];
      for (const k of frontier) {
        if (seen.has(k))
          fail(
            "MALFORMED_MODEL",
            `${label}: node ${k} is reached twice (the tree has a cycle or a shared node)`,
          );
        seen.add(k);
        const nd = ens.nodes.get(k) as TreeNode;
        if (nd.mode === "LEAF") {
          leaves.push(nd);
          continue;
        }
        (levels[depth] ??= []).push(nd);
        internals.push(nd);
        next.push(nd.trueKey, nd.falseKey);
      }
      frontier = next;
      depth++;
    }
    const tree = (ens.nodes.get(root) as TreeNode).tree;
    const size = [...ens.nodes.values()].filter((nd) => nd.tree === tree).length;
    if (seen.size !== size)
      fail(
        "MALFORMED_MODEL",
        `${label}: tree ${tree} has ${size - seen.size} node(s) its root ${root} does not reach (a cycle or a detached node)`,
      );
  }
  if (leaves.length === 0) fail("MALFORMED_MODEL", `${label} has no leaves`);
  // Leaf-only trees (a constant) have reach 1; internal nodes get one comparison each, per row.
  const forms = new Map<string, Form[]>(); // node key -> its reach form per row
  for (const root of ens.roots)
    forms.set(
      root,
      Array.from({ length: rows }, () => constForm(1n)),
    );
  if (internals.length) {
    const tests = internals.map((nd) => branchTest(nd.mode, nd.value, ctx.scaleBits, bound));
    const cmp = { id: branchBits(ctx, label, x, internals, tests) };
    const pos = new Map(internals.map((nd, i) => [nd.key, i]));
    const bit = (r: number, nd: TreeNode): number => r * internals.length + (pos.get(nd.key) as number);
    for (const level of levels) {
      // Nodes reached with certainty (roots): the children's reaches are the bit and 1 - bit, free.
      const roots = level.filter((nd) => forms.get(nd.key)?.[0].terms.length === 0);
      for (const nd of roots) {
        forms.set(
          nd.trueKey,
          Array.from({ length: rows }, (_, r) => elemForm(cmp.id, bit(r, nd))),
        );
        forms.set(
          nd.falseKey,
          Array.from({ length: rows }, (_, r) => ({
            bias: 1n,
            terms: [{ src: cmp.id, index: bit(r, nd), coef: -1n }],
          })),
        );
      }
      const inner = level.filter((nd) => (forms.get(nd.key)?.[0].terms.length ?? 0) > 0);
      if (!inner.length) continue;
      // The reaches of this level's nodes as one tensor (free), then one product per node: reach * bit.
      const reachForms = Array.from({ length: rows }, (_, r) =>
        inner.map((nd) => (forms.get(nd.key) as Form[])[r]),
      ).flat();
      const reach = materialize(ctx, label, [rows, inner.length], reachForms, 0, 1n);
      const prod = ctx.newTensor([rows, inner.length], 0, 1n);
      const ia: number[] = [];
      const ib: number[] = [];
      for (let r = 0; r < rows; r++)
        inner.forEach((nd, j) => {
          ia.push(r * inner.length + j);
          ib.push(bit(r, nd));
        });
      ctx.emit({ op: "mul", node: label, a: reach, b: cmp.id, ia, ib, dst: prod.id });
      inner.forEach((nd, j) => {
        forms.set(
          nd.trueKey,
          Array.from({ length: rows }, (_, r) => elemForm(prod.id, r * inner.length + j)),
        );
        forms.set(
          nd.falseKey,
          Array.from({ length: rows }, (_, r) => ({
            bias: 0n,
            terms: [
              { src: reach, index: r * inner.length + j, coef: 1n },
              { src: prod.id, index: r * inner.length + j, coef: -1n },
            ],
          })),
        );
      });
    }
  }
  const leafForms = Array.from({ length: rows }, (_, r) =>
    leaves.map((lf) => (forms.get(lf.key) as Form[])[r]),
  ).flat();
  const reach = materialize(ctx, label, [rows, leaves.length], leafForms, 0, 1n);
  return { reach, leaves };
}

/**
 * The branch bits, [rows, internal nodes] of 0/1 at scale 0: 1 where the node's test holds. Per feature,
 * the cheaper in constraints of: one comparison per node (`bits` each), or one interval decomposition over
 * the feature's distinct cut points (k + 1 booleans and two range checks of the value's width), from which
 * every node's bit is a free sum of one-hot entries. A forest tests each feature against many thresholds,
 * so the decomposition usually wins (iris forest: 4 features, 51 nodes). EQ/NEQ always compare; a test
 * whose outcome the value's static range decides is a constant.
 */
function branchBits(
  ctx: LoweringContext,
  label: string,
  x: { id: number; rows: number; f: number },
  internals: TreeNode[],
  tests: { kind: "lt" | "ge" | "eq" | "ne"; c: bigint }[],
): number {
  const { rows, f } = x;
  const bound = ctx.tensor(x.id).maxAbs;
  const maxC = tests.reduce((m, t) => maxBig(m, absBig(t.c)), 0n);
  const cmpBits = signedBits(bound + maxC);
  // x lies in [-bound, bound + 1): an interval is at most 2 bound + 1 wide
  const ivBits = bitLength(2n * bound + 1n);
  type Bit =
    | { kind: "const"; v: bigint }
    | { kind: "direct"; j: number }
    | { kind: "interval"; g: number; below: number };
  const how: Bit[] = new Array(internals.length);
  const direct: number[] = [];
  const byFeature = new Map<number, number[]>();
  tests.forEach((t, i) => {
    if (t.kind === "eq" || t.kind === "ne") direct.push(i);
    else if (t.c <= -bound || t.c > bound) {
      // x < c is false for every x >= -bound when c <= -bound, true for every x <= bound when c > bound
      const lt = t.c > bound ? 1n : 0n;
      how[i] = { kind: "const", v: t.kind === "lt" ? lt : 1n - lt };
    } else byFeature.set(internals[i].feature, [...(byFeature.get(internals[i].feature) ?? []), i]);
  });
  const groups: { feature: number; cuts: bigint[] }[] = [];
  for (const [feature, nodes] of byFeature) {
    const cuts = [...new Set(nodes.map((i) => tests[i].c))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (cuts.length + 1 + 2 * ivBits < nodes.length * cmpBits) {
      const g = groups.length;
      groups.push({ feature, cuts });
      for (const i of nodes) how[i] = { kind: "interval", g, below: cuts.indexOf(tests[i].c) };
    } else direct.push(...nodes);
  }
  direct.sort((a, b) => a - b);
  direct.forEach((i, j) => (how[i] = { kind: "direct", j }));
  let cmp = -1;
  if (direct.length) {
    const t = ctx.newTensor([rows, direct.length], 0, 1n);
    ctx.emit({
      op: "compare",
      node: label,
      src: x.id,
      dst: t.id,
      index: Array.from({ length: rows }, (_, r) => direct.map((i) => r * f + internals[i].feature)).flat(),
      consts: Array.from({ length: rows }, () => direct.map((i) => tests[i].c)).flat(),
      kinds: Array.from({ length: rows }, () => direct.map((i) => tests[i].kind)).flat(),
      bits: cmpBits,
    });
    cmp = t.id;
    if (direct.length === internals.length) return cmp;
  }
  let onehot = -1;
  const offsets: number[] = [];
  let width = 0;
  for (const g of groups) {
    offsets.push(width);
    width += g.cuts.length + 1;
  }
  if (groups.length) {
    const t = ctx.newTensor([rows, width], 0, 1n);
    ctx.emit({
      op: "interval",
      node: label,
      src: x.id,
      dst: t.id,
      index: Array.from({ length: rows }, (_, r) => groups.map((g) => r * f + g.feature)).flat(),
      cuts: Array.from({ length: rows }, () => groups.map((g) => g.cuts)).flat(),
      lo: -bound,
      hi: bound + 1n,
      bits: ivBits,
    });
    onehot = t.id;
  }
  const forms: Form[] = [];
  for (let r = 0; r < rows; r++)
    internals.forEach((_, i) => {
      const h = how[i];
      if (h.kind === "const") forms.push(constForm(h.v));
      else if (h.kind === "direct") forms.push(elemForm(cmp, r * direct.length + h.j));
      else {
        // x < cut[below] <=> the interval index is at most `below`: the sum of those entries
        const base = r * width + offsets[h.g];
        const terms = Array.from({ length: h.below + 1 }, (_, m) => ({
          src: onehot,
          index: base + m,
          coef: 1n,
        }));
        const lt: Form = { bias: 0n, terms };
        const ge: Form = { bias: 1n, terms: terms.map((t) => ({ ...t, coef: -1n })) };
        forms.push(tests[i].kind === "lt" ? lt : ge);
      }
    });
  return materialize(ctx, label, [rows, internals.length], forms, 0, 1n);
}

/**
 * Per (row, id): sum over trees of the reached leaf's weight for `id`, times `mult`, plus bias[id], at
 * scale 1; `ids` is the output width. Its bound: bias + the sum over trees of the largest |weight|.
 */
function leafSums(
  ctx: LoweringContext,
  label: string,
  rows: number,
  reach: { reach: number; leaves: TreeNode[] },
  ens: Ensemble,
  width: number,
  bias: number[],
  mult = 1,
): number {
  const k = reach.leaves.length;
  const weights = new Array<bigint>(width * k).fill(0n);
  const perTreeMax = new Map<string, bigint[]>();
  reach.leaves.forEach((lf, i) => {
    for (const { id, w } of lf.weights) {
      if (id < 0 || id >= width)
        fail(
          "MALFORMED_MODEL",
          `${label}: leaf ${lf.key} has a weight for id ${id}; the output has ${width}`,
        );
      const q = ctx.q(w * mult);
      weights[id * k + i] += q;
    }
  });
  reach.leaves.forEach((lf, i) => {
    const tree = String(lf.tree);
    const m = perTreeMax.get(tree) ?? new Array<bigint>(width).fill(0n);
    for (let id = 0; id < width; id++) m[id] = maxBig(m[id], absBig(weights[id * k + i]));
    perTreeMax.set(tree, m);
  });
  const b = Array.from({ length: width }, (_, id) => ctx.q(bias[id] ?? 0));
  let bound = 0n;
  for (let id = 0; id < width; id++) {
    let m = absBig(b[id]);
    for (const t of perTreeMax.values()) m += t[id];
    bound = maxBig(bound, m);
  }
  return denseAt(ctx, label, reach.reach, rows, k, width, weights, b, 1, bound);
}

function treeRegressor(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = tabular(ctx, node, xv);
  const ens = readEnsemble(node, "target", x.f);
  const nTargets = attrNum(node, "n_targets", Math.max(...ens.ids) + 1);
  const base = floatsAttr(node, "base_values");
  const agg = attrStr(node, "aggregate_function", "SUM");
  const transform = postTransform(node);
  if (base.length && base.length !== nTargets && !(nTargets === 1 && base.length === 1))
    fail("MALFORMED_MODEL", `${label}: ${base.length} base_values for ${nTargets} targets`);
  const reach = leafReaches(ctx, label, x, ens);
  const trees = ens.roots.length;
  let out: number;
  if (agg === "SUM" || agg === "AVERAGE") {
    out = leafSums(ctx, label, x.rows, reach, ens, nTargets, base, agg === "AVERAGE" ? 1 / trees : 1);
  } else if (agg === "MIN" || agg === "MAX") {
    out = minMaxOverTrees(ctx, label, x.rows, reach, ens, nTargets, base, agg === "MIN");
  } else {
    return fail("UNSUPPORTED_ATTRIBUTE", `${label}: aggregate_function '${agg}'`);
  }
  // onnxruntime applies only PROBIT to a single target; with several, every transform.
  const applied = nTargets === 1 ? (transform === "probit" ? "probit" : "none") : transform;
  if (applied !== "none") {
    for (const name of node.outputs) if (name) ctx.describeOutput(name, { postprocess: applied });
  }
  return { kind: "dyn", id: out, shape: [x.rows, nTargets] };
}

/** MIN/MAX aggregation: each tree's value per target, then a max (of negatives, for MIN) over trees. */
function minMaxOverTrees(
  ctx: LoweringContext,
  label: string,
  rows: number,
  reach: { reach: number; leaves: TreeNode[] },
  ens: Ensemble,
  nTargets: number,
  base: number[],
  min: boolean,
): number {
  const trees = ens.roots.map((r) => (ens.nodes.get(r) as TreeNode).tree);
  const k = reach.leaves.length;
  const width = trees.length * nTargets;
  const sign = min ? -1 : 1;
  const weights = new Array<bigint>(width * k).fill(0n);
  const has = new Set<number>();
  reach.leaves.forEach((lf, i) => {
    const t = trees.indexOf(lf.tree);
    for (const { id, w } of lf.weights) {
      const col = id * trees.length + t;
      weights[col * k + i] += ctx.q(sign * w);
      has.add(col);
    }
  });
  let maxW = 0n;
  for (const w of weights) maxW = maxBig(maxW, absBig(w));
  const perTree = denseAt(
    ctx,
    label,
    reach.reach,
    rows,
    k,
    width,
    weights,
    new Array<bigint>(width).fill(0n),
    1,
    maxW,
  );
  const windows: number[][] = [];
  for (let r = 0; r < rows; r++)
    for (let id = 0; id < nTargets; id++) {
      const win = trees
        .map((_, t) => id * trees.length + t)
        .filter((c) => has.has(c))
        .map((c) => r * width + c);
      if (!win.length) fail("UNSUPPORTED_OP", `${label}: target ${id} has no weight in any tree`);
      windows.push(win);
    }
  const m = ctx.newTensor([rows, nTargets], 1, maxW);
  ctx.emit({ op: "maxpool", node: label, src: perTree, dst: m.id, windows, bits: signedBits(2n * maxW) });
  const b = Array.from({ length: rows * nTargets }, (_, i) =>
    ctx.q(base.length === nTargets ? base[i % nTargets] : (base[0] ?? 0)),
  );
  return ctx.lincomb(label, [rows, nTargets], [{ src: m.id, coef: [BigInt(sign)], index: null }], b, 1);
}

// ---- classifiers: scores to onnxruntime's outputs -------------------------------------------------------

/**
 * The label and scores outputs from per-class score forms (scale 1), as onnxruntime's classifiers write
 * them. `single`: the binary convention with one score column (class 0) for two classes, where
 * `threshold` is what the score must exceed for the second label (0.5 for all-positive tree weights, else
 * 0) and `pair` says how the two written scores read from s.
 */
function classifierOutputs(
  ctx: LoweringContext,
  node: OnnxNode,
  rows: number,
  labels: (number | string)[],
  scores: number,
  width: number,
  present: number[],
  transform: OutputTransform,
  single?: { threshold: number; pair: "one-minus" | "negate" | "logistic" },
): (Value | undefined)[] {
  const label = nodeLabel(node);
  const [labelName, scoresName] = node.outputs;
  if (single) {
    // Label: s > threshold. Scores: [1 - s, s] or [-s, s] (logistic of them, when asked), from the proven s.
    const idx = thresholdIndex(ctx, label, scores, width, 0, single.threshold, rows);
    const forms: Form[] = [];
    for (let r = 0; r < rows; r++) {
      const s = r * width;
      if (single.pair === "one-minus")
        forms.push({ bias: ctx.one, terms: [{ src: scores, index: s, coef: -1n }] }, elemForm(scores, s));
      else forms.push(elemForm(scores, s, -1n), elemForm(scores, s));
    }
    const pair = materialize(ctx, label, [rows, 2], forms, 1);
    if (labelName) ctx.describeOutput(labelName, { postprocess: "none", labels });
    if (scoresName)
      ctx.describeOutput(scoresName, { postprocess: single.pair === "logistic" ? "logistic" : "none" });
    return [
      { kind: "dyn", id: idx, shape: [rows] },
      { kind: "dyn", id: pair, shape: [rows, 2] },
    ];
  }
  // Label: the first maximum over the classes that have a score.
  const groups = Array.from({ length: rows }, (_, r) => present.map((c) => r * width + c));
  const idx = ctx.newTensor([rows], 0, BigInt(present.length));
  ctx.emit({
    op: "argmax",
    node: label,
    src: scores,
    dst: idx.id,
    groups,
    bits: signedBits(2n * ctx.tensor(scores).maxAbs + 1n),
  });
  if (labelName)
    ctx.describeOutput(labelName, { postprocess: "none", labels: present.map((c) => labels[c]) });
  if (scoresName) ctx.describeOutput(scoresName, { postprocess: transform });
  return [
    { kind: "dyn", id: idx.id, shape: [rows] },
    { kind: "dyn", id: scores, shape: [rows, width] },
  ];
}

function treeClassifier(ctx: LoweringContext, node: OnnxNode, xv: Value | undefined): (Value | undefined)[] {
  const label = nodeLabel(node);
  const x = tabular(ctx, node, xv);
  const labels = classLabels(node, "classlabels_int64s");
  const n = labels.length;
  const ens = readEnsemble(node, "class", x.f);
  const base = floatsAttr(node, "base_values");
  const transform = postTransform(node);
  const reach = leafReaches(ctx, label, x, ens);
  const allPositive = [...ens.nodes.values()].every((nd) => nd.weights.every((w) => w.w >= 0));
  // Every leaf must carry a weight for every class its tree scores (what exporters write), so which
  // classes have a score does not depend on the path taken.
  for (const root of ens.roots) {
    const tree = (ens.nodes.get(root) as TreeNode).tree;
    const leaves = [...ens.nodes.values()].filter((nd) => nd.tree === tree && nd.mode === "LEAF");
    const ids = new Set(leaves.flatMap((lf) => lf.weights.map((w) => w.id)));
    for (const lf of leaves)
      if (
        lf.weights.length &&
        !(lf.weights.length >= ids.size && [...ids].every((id) => lf.weights.some((w) => w.id === id)))
      )
        fail(
          "UNSUPPORTED_OP",
          `${label}: leaf ${lf.key} weighs fewer classes than the other leaves of its tree`,
        );
  }
  if (n > 2) {
    const bias = Array.from({ length: n }, (_, c) => base[c] ?? 0);
    const scores = leafSums(ctx, label, x.rows, reach, ens, n, bias);
    const present = [...Array(n).keys()].filter((c) => ens.ids.has(c) || c < base.length);
    return classifierOutputs(ctx, node, x.rows, labels, scores, n, present, transform);
  }
  // Two classes: onnxruntime's binary conventions.
  if (ens.ids.size === 1 && ens.ids.has(0)) {
    if (base.length <= 1) {
      if (transform === "probit")
        fail(
          "UNSUPPORTED_ATTRIBUTE",
          `${label}: PROBIT with a single score column writes one score for two classes`,
        );
      const scores = leafSums(ctx, label, x.rows, reach, ens, 1, base);
      return classifierOutputs(ctx, node, x.rows, labels, scores, 1, [0], transform, {
        threshold: allPositive ? 0.5 : 0,
        pair: transform === "logistic" ? "logistic" : allPositive ? "one-minus" : "negate",
      });
    }
    if (base.length === 2) {
      // "binary as multiclass": scores [s + b0, b1], transformed as they are; the label by s + b0 alone.
      const s0 = leafSums(ctx, label, x.rows, reach, ens, 1, [base[0]]);
      const idx = thresholdIndex(ctx, label, s0, 1, 0, allPositive ? 0.5 : 0, x.rows);
      const forms = Array.from({ length: x.rows }, (_, r) => [
        elemForm(s0, r),
        constForm(ctx.q(base[1])),
      ]).flat();
      const vec = materialize(ctx, label, [x.rows, 2], forms, 1);
      return twoClassOutputs(ctx, node, x.rows, labels, idx, vec, transform);
    }
  }
  if (ens.ids.size === 2 && base.length <= 2) {
    // Both columns scored. Base values: one adds to class 0; two replace the pair by [-(b1 + s0), b1 + s0]
    // (onnxruntime's reading, which drops class 1's own sum). The label is index 1 when the second
    // score is > 0: the literal 1 or 0 for int labels, as onnxruntime writes it.
    let vec: number;
    if (base.length < 2) vec = leafSums(ctx, label, x.rows, reach, ens, 2, [base[0] ?? 0, 0]);
    else {
      const s = leafSums(ctx, label, x.rows, reach, ens, 2, [0, 0]);
      const b1 = ctx.q(base[1]);
      const forms = Array.from({ length: x.rows }, (_, r) => [
        { bias: -b1, terms: [{ src: s, index: r * 2, coef: -1n }] },
        { bias: b1, terms: [{ src: s, index: r * 2, coef: 1n }] },
      ]).flat();
      vec = materialize(ctx, label, [x.rows, 2], forms, 1);
    }
    const idx = thresholdIndex(ctx, label, vec, 2, 1, 0, x.rows);
    const shown = typeof labels[0] === "number" ? [0, 1] : labels;
    return twoClassOutputs(ctx, node, x.rows, shown, idx, vec, transform);
  }
  return fail(
    "UNSUPPORTED_OP",
    `${label}: a two-class tree ensemble with class ids {${[...ens.ids].join(", ")}} and ${base.length} base values ` +
      `(supported: class ids {0} or {0, 1} with at most two base values)`,
  );
}

/** [src[r * width + col] > threshold] per row: a class index 0/1 (one comparison each). */
function thresholdIndex(
  ctx: LoweringContext,
  label: string,
  src: number,
  width: number,
  col: number,
  threshold: number,
  rows: number,
): number {
  const c = BigInt(Math.floor(threshold * 2 ** ctx.scaleBits)) + 1n;
  const idx = ctx.newTensor([rows], 0, 1n);
  ctx.emit({
    op: "compare",
    node: label,
    src,
    dst: idx.id,
    index: Array.from({ length: rows }, (_, r) => r * width + col),
    consts: new Array<bigint>(rows).fill(c),
    kinds: new Array<"ge">(rows).fill("ge"),
    bits: signedBits(ctx.tensor(src).maxAbs + absBig(c)),
  });
  return idx.id;
}

/** The label (a class index into `labels`) and the two scores, transformed off-circuit as they are. */
function twoClassOutputs(
  ctx: LoweringContext,
  node: OnnxNode,
  rows: number,
  labels: (number | string)[],
  idx: number,
  scores: number,
  transform: OutputTransform,
): (Value | undefined)[] {
  const [labelName, scoresName] = node.outputs;
  if (labelName) ctx.describeOutput(labelName, { postprocess: "none", labels });
  if (scoresName) ctx.describeOutput(scoresName, { postprocess: transform });
  return [
    { kind: "dyn", id: idx, shape: [rows] },
    { kind: "dyn", id: scores, shape: [rows, 2] },
  ];
}

// ---- linear models, Scaler, ZipMap ----------------------------------------------------------------------

/** X W^T + b at scale 2, rescaled to 1: [rows, targets]. */
function linearScores(
  ctx: LoweringContext,
  label: string,
  x: { id: number; rows: number; f: number },
  coefficients: number[],
  intercepts: number[],
  targets: number,
): number {
  if (coefficients.length !== targets * x.f)
    fail(
      "MALFORMED_MODEL",
      `${label}: ${coefficients.length} coefficients for ${targets} targets of ${x.f} features (need ${targets * x.f})`,
    );
  const weights = coefficients.map((c) => ctx.q(c));
  const bias = Array.from({ length: targets }, (_, j) => ctx.q(intercepts[j] ?? 0, 2));
  const acc = denseAt(ctx, label, x.id, x.rows, x.f, targets, weights, bias, 2);
  return ctx.rescale(label, acc);
}

function linearRegressor(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = tabular(ctx, node, xv);
  const targets = attrNum(node, "targets", 1);
  const transform = postTransform(node);
  const out = linearScores(
    ctx,
    label,
    x,
    floatsAttr(node, "coefficients"),
    floatsAttr(node, "intercepts"),
    targets,
  );
  if (transform !== "none")
    for (const name of node.outputs) if (name) ctx.describeOutput(name, { postprocess: transform });
  return { kind: "dyn", id: out, shape: [x.rows, targets] };
}

function linearClassifier(
  ctx: LoweringContext,
  node: OnnxNode,
  xv: Value | undefined,
): (Value | undefined)[] {
  const label = nodeLabel(node);
  const x = tabular(ctx, node, xv);
  const labels = classLabels(node, "classlabels_ints");
  const intercepts = floatsAttr(node, "intercepts");
  const coefficients = floatsAttr(node, "coefficients");
  const targets = intercepts.length || coefficients.length / x.f;
  const transform = postTransform(node);
  const scores = linearScores(ctx, label, x, coefficients, intercepts, targets);
  if (targets === 1) {
    if (labels.length !== 2)
      fail("UNSUPPORTED_OP", `${label}: one score column needs exactly 2 class labels`);
    if (transform !== "none" && transform !== "logistic")
      fail("UNSUPPORTED_ATTRIBUTE", `${label}: ${transform} with one score column`);
    // onnxruntime: label = labels[1] when s > 0; scores [1 - s, s], or [1 - sigmoid(s), sigmoid(s)].
    return classifierOutputs(ctx, node, x.rows, labels, scores, 1, [0], transform, {
      threshold: 0,
      pair: transform === "logistic" ? "logistic" : "one-minus",
    });
  }
  if (labels.length !== targets)
    fail("MALFORMED_MODEL", `${label}: ${targets} score columns for ${labels.length} class labels`);
  return classifierOutputs(ctx, node, x.rows, labels, scores, targets, [...Array(targets).keys()], transform);
}

function scaler(ctx: LoweringContext, node: OnnxNode, xv: Value): Value {
  const label = nodeLabel(node);
  const x = ctx.dyn(xv);
  const offset = floatsAttr(node, "offset");
  const scale = floatsAttr(node, "scale");
  const f = x.shape[x.shape.length - 1] ?? 1;
  for (const [name, v] of [
    ["offset", offset],
    ["scale", scale],
  ] as const)
    if (v.length !== 1 && v.length !== f && v.length !== 0)
      fail("MALFORMED_MODEL", `${label}: ${name} has ${v.length} values for ${f} features`);
  const at = (v: number[], i: number, dflt: number): number =>
    v.length === 0 ? dflt : v.length === 1 ? v[0] : v[i % f];
  const size = numel(x.shape);
  // y = x * scale - offset * scale: scale 2, then one rescale
  const coef = Array.from({ length: size }, (_, i) => ctx.q(at(scale, i, 1)));
  const bias = Array.from({ length: size }, (_, i) => ctx.q(-at(offset, i, 0) * at(scale, i, 1), 2));
  const acc = ctx.lincomb(label, x.shape, [{ src: x.id, coef, index: null }], bias, 2);
  return { kind: "dyn", id: ctx.rescale(label, acc), shape: x.shape };
}

function zipMap(ctx: LoweringContext, node: OnnxNode, xv: Value | undefined): Value {
  const label = nodeLabel(node);
  if (!xv || xv.kind !== "dyn") fail("UNSUPPORTED_OP", `${label}: the input must be a computed tensor`);
  const keys = classLabels(node, "classlabels_int64s");
  const cols = xv.shape[xv.shape.length - 1];
  if (cols !== keys.length) fail("MALFORMED_MODEL", `${label}: ${keys.length} keys for ${cols} columns`);
  const meta = ctx.outputMeta(node.inputs[0]);
  ctx.describeOutput(node.outputs[0], { postprocess: meta?.postprocess ?? "none", zipmap: keys });
  return xv;
}
