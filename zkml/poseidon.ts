import fs from "node:fs";
import { SNARK_SCALAR_FIELD as P } from "./field";

/**
 * Poseidon over BN254 exactly as circomlib's circuits/poseidon.circom computes it (the optimised form with
 * the C, S, M, P constant sets), with the constants read from circomlib's poseidon_constants.circom so the
 * two can never drift apart.
 */
const N_ROUNDS_P = [56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68];
const N_ROUNDS_F = 8;

interface Constants {
  C: bigint[];
  S: bigint[];
  M: bigint[][];
  Pm: bigint[][];
}

const cache = new Map<number, Constants>();
let source: string | undefined;

function section(fn: string, t: number): bigint[] {
  if (!source)
    source = fs.readFileSync(require.resolve("circomlib/circuits/poseidon_constants.circom"), "utf8");
  const start = source.indexOf(`function ${fn}(t)`);
  const end = source.indexOf("function ", start + 10);
  const body = source.slice(start, end === -1 ? undefined : end);
  const re = new RegExp(`t\\s*==\\s*${t}\\s*\\)\\s*\\{([\\s\\S]*?)\\}\\s*else`);
  const m = re.exec(body);
  if (!m) throw new Error(`poseidon constants ${fn} for t=${t} not found`);
  return (m[1].match(/0x[0-9a-fA-F]+/g) ?? []).map((h) => BigInt(h));
}

function constants(t: number): Constants {
  let c = cache.get(t);
  if (!c) {
    const square = (flat: bigint[]): bigint[][] =>
      [...Array(t).keys()].map((i) => flat.slice(i * t, (i + 1) * t));
    c = {
      C: section("POSEIDON_C", t),
      S: section("POSEIDON_S", t),
      M: square(section("POSEIDON_M", t)),
      Pm: square(section("POSEIDON_P", t)),
    };
    cache.set(t, c);
  }
  return c;
}

const pow5 = (x: bigint): bigint => {
  const x2 = (x * x) % P;
  return (((x2 * x2) % P) * x) % P;
};

function mix(state: bigint[], m: bigint[][]): bigint[] {
  const t = state.length;
  const out = new Array<bigint>(t);
  for (let i = 0; i < t; i++) {
    let acc = 0n;
    for (let j = 0; j < t; j++) acc += m[j][i] * state[j];
    out[i] = acc % P;
  }
  return out;
}

/** circomlib Poseidon(n) of n field elements (1 <= n <= 16). */
export function poseidon(inputs: readonly bigint[]): bigint {
  const t = inputs.length + 1;
  if (t < 2 || t > 17) throw new Error(`poseidon takes 1 to 16 inputs, got ${inputs.length}`);
  const { C, S, M, Pm } = constants(t);
  const nP = N_ROUNDS_P[t - 2];
  let st = [0n, ...inputs.map((x) => ((x % P) + P) % P)];
  const ark = (r: number): void => {
    st = st.map((x, i) => (x + C[r + i]) % P);
  };
  ark(0);
  for (let r = 0; r < N_ROUNDS_F / 2 - 1; r++) {
    st = st.map(pow5);
    ark((r + 1) * t);
    st = mix(st, M);
  }
  st = st.map(pow5);
  ark((N_ROUNDS_F / 2) * t);
  st = mix(st, Pm);
  for (let r = 0; r < nP; r++) {
    st[0] = (pow5(st[0]) + C[(N_ROUNDS_F / 2 + 1) * t + r]) % P;
    const base = (t * 2 - 1) * r;
    let s0 = 0n;
    for (let i = 0; i < t; i++) s0 += S[base + i] * st[i];
    const next = [s0 % P];
    for (let i = 1; i < t; i++) next.push((st[i] + st[0] * S[base + t + i - 1]) % P);
    st = next;
  }
  for (let r = 0; r < N_ROUNDS_F / 2 - 1; r++) {
    st = st.map(pow5);
    ark((N_ROUNDS_F / 2 + 1) * t + nP + r * t);
    st = mix(st, M);
  }
  st = st.map(pow5);
  let out = 0n;
  for (let j = 0; j < t; j++) out += M[j][0] * st[j];
  return out % P;
}
