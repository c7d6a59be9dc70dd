import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as snarkjs from "snarkjs";
import { ZkmlError, fail } from "../errors";
import type { Log } from "../prover/groth16";
import { cacheDir } from "../prover/paths";
import { BinFile, readContributionParams } from "./binfile";
import published from "./published-ptau.json";

/** A phase-1 file a public ceremony published, identified by the blake2b-512 of the whole file. */
export interface PublishedPtau {
  power: number;
  file: string;
  blake2b: string;
  url?: string;
}

/**
 * The prepared Perpetual Powers of Tau files (Hermez selection, 54 contributions and a beacon) whose
 * blake2b-512 hashes the snarkjs README publishes (github.com/iden3/snarkjs, README.md); copied in
 * zkml/ceremony/published-ptau.json. A ptau is marked secure only when its hash is one of these.
 */
export const PUBLISHED_PTAU: readonly PublishedPtau[] = Object.freeze(published.files);

/** Where the list of published hashes comes from, for messages and reports. */
export const PUBLISHED_PTAU_SOURCE = `${published.source.repository} ${published.source.file} (${published.source.package})`;

export type PtauTrust = "development" | "published-ceremony" | "verified-unpublished";

export interface PtauContribution {
  name: string;
  type: "contribute" | "beacon";
}

export interface PtauInfo {
  /** log2 of the number of powers the file holds. */
  power: number;
  /** Whether the Lagrange sections phase 2 needs are present (`snarkjs powersoftau prepare phase2`). */
  preparedForPhase2: boolean;
  contributions: PtauContribution[];
}

/** Section numbers of the snarkjs ptau format. */
const PTAU_HEADER = 1;
const PTAU_CONTRIBUTIONS = 7;
const PTAU_LAGRANGE_TAU_G1 = 12;

/**
 * Reads a ptau file's header and contribution list without loading its points. Each contribution record
 * is fixed-size points (tau, alpha, beta in G1/G2: 5 points; the contributor's public key: 6 G1 + 3 G2),
 * a 216-byte partial hash, a 64-byte next challenge, a u32 type (1 = beacon), then tagged parameters.
 */
export function readPtauInfo(file: string): PtauInfo {
  const f = BinFile.open(file, "ptau");
  try {
    const h = f.section(PTAU_HEADER);
    if (!h) fail("CEREMONY", `${file} has no header section`);
    const n8 = f.read(h.offset, 4, "header").readUInt32LE(0);
    const power = f.read(h.offset + 4 + n8, 4, "header").readUInt32LE(0);
    const g1 = 2 * n8;
    const g2 = 4 * n8;
    const fixed = 3 * g1 + 2 * g2 + (6 * g1 + 3 * g2) + 216 + 64;
    const contributions: PtauContribution[] = [];
    const cs = f.section(PTAU_CONTRIBUTIONS);
    if (cs) {
      const n = f.read(cs.offset, 4, "contributions").readUInt32LE(0);
      let pos = cs.offset + 4;
      for (let i = 0; i < n; i++) {
        const type = f.read(pos + fixed, 4, "contributions").readUInt32LE(0);
        const p = readContributionParams(f, pos + fixed + 4);
        contributions.push({ name: p.name, type: type === 1 ? "beacon" : "contribute" });
        pos = p.next;
      }
    }
    return { power, preparedForPhase2: f.section(PTAU_LAGRANGE_TAU_G1) !== undefined, contributions };
  } finally {
    f.close();
  }
}

/** blake2b-512 and sha256 of a whole file, streamed (ceremony files reach gigabytes). */
export async function hashFile(file: string): Promise<{ blake2b: string; sha256: string }> {
  const b = crypto.createHash("blake2b512");
  const s = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 22 })) {
    b.update(chunk as Buffer);
    s.update(chunk as Buffer);
  }
  return { blake2b: b.digest("hex"), sha256: s.digest("hex") };
}

/** Whether `file` is one of the development ptau files this tool generates and caches (see devPtau). */
export function isDevelopmentPtau(file: string): boolean {
  return (
    path.dirname(path.resolve(file)) === path.resolve(cacheDir(), "ptau") &&
    /^dev-\d+\.ptau$/.test(path.basename(file))
  );
}

export interface PtauCheck {
  file: string;
  blake2b: string;
  sha256: string;
  power: number;
  contributions: PtauContribution[];
  trust: PtauTrust;
  /** True only for a byte-identical copy of a published ceremony file. */
  secure: boolean;
  /** The published file it is a copy of, when it is one. */
  published: string | null;
  /** "verified" now with snarkjs, "cached" from an earlier verification of the same bytes, or skipped. */
  verification: "verified" | "cached" | "skipped-development";
  /** Why the file is not secure, in one sentence (null when it is). */
  warning: string | null;
}

export interface CheckPtauOptions {
  /** Smallest power the circuit needs: a smaller file is refused. */
  requiredPower?: number;
  /** Published ceremony files to match against (default PUBLISHED_PTAU). */
  publishedPtau?: readonly PublishedPtau[];
  log?: Log;
}

function verifiedCacheFile(blake2b: string): string {
  return path.join(cacheDir(), "ptau-verified", `${blake2b}.json`);
}

async function verifyWithSnarkjs(file: string, info: PtauInfo, log: Log): Promise<void> {
  log(
    `ptau: verifying ${file} (2^${info.power}, ${info.contributions.length} contribution(s)); ` +
      `this reads every point and takes minutes for a large file; the result is cached by file hash`,
  );
  const errors: string[] = [];
  let last = 0;
  const progress = (m: string): void => {
    const now = Date.now();
    if (/^(Verifying|Validating)/.test(m) || now - last > 5000) {
      last = now;
      log(`  ptau verify: ${m.trim()}`);
    }
  };
  let ok: boolean;
  try {
    ok = await snarkjs.powersOfTau.verify(file, {
      debug: progress,
      info: () => {},
      warn: (m) => log(`  ptau verify: ${m}`),
      error: (m) => errors.push(m),
    });
  } catch (e) {
    throw new ZkmlError("CEREMONY", `ptau ${file} is corrupt or unreadable: ${(e as Error).message ?? e}`);
  }
  if (!ok) {
    fail(
      "CEREMONY",
      `ptau ${file} does not verify (snarkjs powersoftau verify): ${errors.join("; ") || "no reason given"}`,
    );
  }
}

/**
 * Checks a phase-1 (powers-of-tau) file before a trusted setup uses it:
 * - the cached development ptau is recognised and not verified (it was generated here): trust
 *   "development", secure false;
 * - any other file is verified with snarkjs (`powersoftau verify`; the result is cached under
 *   .opg/cache/ptau-verified keyed by the file's blake2b, so a file is verified once per machine) and
 *   refused with a CEREMONY error when it does not verify, lacks the phase-2 Lagrange sections, or has
 *   fewer powers than required;
 * - a verified file is secure only when its blake2b-512 is one of the published ceremony files
 *   (PUBLISHED_PTAU): trust "published-ceremony"; otherwise "verified-unpublished", secure false.
 */
export async function checkPtau(file: string, opts: CheckPtauOptions = {}): Promise<PtauCheck> {
  const log = opts.log ?? (() => {});
  if (!fs.existsSync(file)) fail("BAD_INPUT", `ptau file ${file} does not exist`);
  const info = readPtauInfo(file);
  if (opts.requiredPower !== undefined && info.power < opts.requiredPower) {
    fail(
      "CEREMONY",
      `ptau ${file} holds 2^${info.power} powers; this circuit needs at least 2^${opts.requiredPower}`,
    );
  }
  if (!info.preparedForPhase2) {
    fail(
      "CEREMONY",
      `ptau ${file} is not prepared for phase 2 (no Lagrange sections): ` +
        `run \`snarkjs powersoftau prepare phase2\` on it first`,
    );
  }
  const { blake2b, sha256 } = await hashFile(file);
  const base = {
    file: path.resolve(file),
    blake2b,
    sha256,
    power: info.power,
    contributions: info.contributions,
  };
  if (isDevelopmentPtau(file)) {
    return {
      ...base,
      trust: "development",
      secure: false,
      published: null,
      verification: "skipped-development",
      warning:
        "development ptau generated on this machine: whoever generated it can forge proofs; " +
        "use --ptau with a published ceremony file for production",
    };
  }
  const cached = verifiedCacheFile(blake2b);
  let verification: PtauCheck["verification"] = "cached";
  if (fs.existsSync(cached)) {
    log(
      `ptau: ${path.basename(file)} was verified before (blake2b ${blake2b.slice(0, 16)}...), not re-verifying`,
    );
  } else {
    const t0 = Date.now();
    await verifyWithSnarkjs(file, info, log);
    log(`ptau: verifies (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    fs.mkdirSync(path.dirname(cached), { recursive: true });
    fs.writeFileSync(
      cached,
      JSON.stringify(
        { blake2b, power: info.power, file: base.file, verifiedAt: new Date().toISOString() },
        null,
        1,
      ),
    );
    verification = "verified";
  }
  const match = (opts.publishedPtau ?? PUBLISHED_PTAU).find((p) => p.blake2b === blake2b);
  if (match) {
    log(`ptau: ${path.basename(file)} is the published ceremony file ${match.file}`);
    return {
      ...base,
      trust: "published-ceremony",
      secure: true,
      published: match.file,
      verification,
      warning: null,
    };
  }
  const beaconOnly = info.contributions.length > 0 && info.contributions.every((c) => c.type === "beacon");
  const warning = beaconOnly
    ? `ptau ${path.basename(file)} verifies but its only contributions are public random beacons: ` +
      `anyone can recompute its toxic waste and forge proofs`
    : `ptau ${path.basename(file)} verifies but is not a published ceremony file (its blake2b is not ` +
      `listed in zkml/ceremony/published-ptau.json): its ${info.contributions.length} contributor(s) ` +
      `(${info.contributions.map((c) => c.name || "unnamed").join(", ")}) could forge proofs together`;
  log(`ptau: WARNING ${warning}; recorded as "verified, not a published ceremony" (secure: false)`);
  return { ...base, trust: "verified-unpublished", secure: false, published: null, verification, warning };
}
