import crypto from "node:crypto";
import * as snarkjs from "snarkjs";
import { BinFile, readContributionParams } from "./binfile";

/** One phase-2 contribution as a zkey records it. */
export interface ZkeyContribution {
  type: "contribute" | "beacon";
  name: string;
  /** The contribution hash snarkjs prints (`zkey contribute`, `zkey verify`): blake2b-512, hex. */
  hash: string;
  /** For a beacon: the public beacon value and its iteration exponent, so anyone can recompute it. */
  beacon?: { hash: string; iterationsExp: number };
}

/** Section of the snarkjs zkey format holding the phase-2 MPC transcript. */
const ZKEY_MPC_PARAMS = 10;

/**
 * Reads the phase-2 contributions recorded in a Groth16 zkey (section 10: a 64-byte circuit hash, a u32
 * count, then per contribution deltaAfter, the contributor's public key (2 G1 + 1 G2), a 64-byte
 * transcript, a u32 type and tagged parameters). The hashes are computed as snarkjs does: blake2b-512
 * of the points in uncompressed form followed by the transcript, so they match what `zkey contribute`
 * printed to the contributor. The zkey itself is the record: a manifest can only repeat it.
 */
export async function readZkeyContributions(zkey: string): Promise<ZkeyContribution[]> {
  const curve = await snarkjs.curves.getCurveFromName("bn128");
  const g1 = curve.G1.F.n8 * 2;
  const g2 = curve.G2.F.n8 * 2;
  const f = BinFile.open(zkey, "zkey");
  try {
    const s = f.section(ZKEY_MPC_PARAMS);
    if (!s) return [];
    const n = f.read(s.offset + 64, 4, "phase-2 contributions").readUInt32LE(0);
    const out: ZkeyContribution[] = [];
    let pos = s.offset + 68;
    for (let i = 0; i < n; i++) {
      const pointsLen = 3 * g1 + g2;
      const raw = f.read(pos, pointsLen + 64 + 4, "phase-2 contributions");
      const hasher = crypto.createHash("blake2b512");
      let o = 0;
      for (const [group, len] of [
        [curve.G1, g1],
        [curve.G1, g1],
        [curve.G1, g1],
        [curve.G2, g2],
      ] as const) {
        const u = new Uint8Array(len);
        group.toRprUncompressed(u, 0, new Uint8Array(raw.subarray(o, o + len)));
        hasher.update(u);
        o += len;
      }
      hasher.update(raw.subarray(o, o + 64));
      const type = raw.readUInt32LE(o + 64) === 1 ? "beacon" : "contribute";
      const p = readContributionParams(f, pos + raw.length);
      const c: ZkeyContribution = { type, name: p.name, hash: hasher.digest("hex") };
      if (type === "beacon" && p.beaconHash !== undefined && p.iterationsExp !== undefined) {
        c.beacon = { hash: p.beaconHash, iterationsExp: p.iterationsExp };
      }
      out.push(c);
      pos = p.next;
    }
    return out;
  } finally {
    f.close();
  }
}

/** What snarkjs's `zkey verify` failures mean, in the words of someone holding a bundle. */
const EXPLAIN: [RegExp, string][] = [
  [/Circuit does not match/, "the zkey was made for a different circuit (its circuit hash differs)"],
  [
    /Different circuit parameters/,
    "the zkey was made for a different circuit (its wire count, public signal count or domain size differ)",
  ],
  [
    /Invalid (alpha1|beta1|beta2|gamma2)/,
    "the zkey was not made from this ptau (its phase-1 elements differ)",
  ],
  [/Invalid delta[12]/, "the zkey's delta does not follow its recorded contributions (tampered proving key)"],
  [
    /section is not identical|Invalid [LH] section/,
    "the zkey's proving key sections do not follow from r1cs and ptau",
  ],
  [/circuit too big/, "the ptau has too few powers for this circuit"],
  [/not prepared/, "the ptau is not prepared for phase 2"],
];

/**
 * Verifies a zkey against the circuit's r1cs and the phase-1 ptau it was set up with (snarkjs
 * `zkey verify`, i.e. zKey.verifyFromR1cs): the circuit matches, every phase-2 contribution follows
 * from the previous one, and the proving key is the one those imply. Never throws for a bad zkey:
 * `problem` names what is wrong.
 */
export async function verifyZkey(
  r1cs: string,
  ptau: string,
  zkey: string,
): Promise<{ ok: boolean; problem: string | null }> {
  const errors: string[] = [];
  const logger = { debug: () => {}, info: () => {}, warn: () => {}, error: (m: string) => errors.push(m) };
  let ok = false;
  try {
    ok = await snarkjs.zKey.verifyFromR1cs(r1cs, ptau, zkey, logger);
  } catch (e) {
    errors.push((e as Error).message ?? String(e));
  }
  if (ok) return { ok: true, problem: null };
  const raw = errors.map((m) => m.replace(/^INVALID:\s*/, "").trim()).join("; ");
  const meaning = EXPLAIN.find(([re]) => re.test(raw))?.[1];
  const problem = meaning
    ? `${meaning} (snarkjs: ${raw})`
    : raw || "the zkey's contribution transcript is inconsistent (snarkjs gave no reason)";
  return { ok: false, problem };
}
