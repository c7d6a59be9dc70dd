import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as snarkjs from "snarkjs";
import { Phase2Contribution, loadManifest, writeManifest, writeVerificationArtifacts } from "../bundle";
import { fail } from "../errors";
import type { Log } from "../prover/groth16";
import { readZkeyContributions } from "./zkey";

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** snarkjs stores at most 64 characters of a contribution's name. */
const MAX_NAME = 64;

export interface ContributeOptions {
  /** Who contributes, as it will be recorded in the zkey and the manifest (default "anonymous"). */
  name?: string;
  /** Extra entropy text; snarkjs always mixes in 64 bytes from the OS as well (default: random). */
  entropy?: string;
  log?: Log;
}

export interface BeaconOptions {
  /** Name recorded for the beacon (default "beacon"). */
  name?: string;
  log?: Log;
}

function checkName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME) {
    fail("BAD_INPUT", `a contribution name must be 1 to ${MAX_NAME} characters, got ${name.length}`);
  }
  return name;
}

/**
 * Replaces the bundle's zkey with `make(oldZkey, newZkey)`'s output, re-exports the verification key and
 * the Solidity verifier, and appends the contribution to the manifest with the new artifact hashes.
 * The bundle's artifacts must match the manifest before anything is changed.
 */
async function extendPhase2(
  dir: string,
  entry: Omit<Phase2Contribution, "hash" | "at">,
  make: (oldZkey: string, newZkey: string) => Promise<Uint8Array>,
): Promise<Phase2Contribution> {
  const manifest = loadManifest(dir, { checkHashes: true });
  if (!manifest.artifacts.zkey) {
    fail("BUNDLE", `bundle ${dir} was compiled without setup (--no-setup): it has no zkey to contribute to`);
  }
  const zkey = path.join(dir, manifest.artifacts.zkey.file);
  // a bundle made before contributions were recorded: the zkey holds the list
  const previous = manifest.phase2?.contributions ?? (await readZkeyContributions(zkey));
  const next = `${zkey}.next`;
  let hash: Uint8Array;
  try {
    hash = await make(zkey, next);
    fs.renameSync(next, zkey);
  } finally {
    fs.rmSync(next, { force: true });
  }
  await writeVerificationArtifacts(dir, manifest);
  const c: Phase2Contribution = {
    ...entry,
    hash: Buffer.from(hash).toString("hex"),
    at: new Date().toISOString(),
  };
  manifest.phase2 = { contributions: [...previous, c] };
  writeManifest(dir, manifest);
  return c;
}

/**
 * Adds a secret phase-2 contribution to a bundle's zkey (snarkjs `zkey contribute`), then re-exports the
 * verification key and Solidity verifier and records the contribution (name, hash) in the manifest.
 * Forging proofs needs the secrets of every phase-2 contributor, so each independent contributor who
 * discards their entropy makes the bundle safer. A verifier contract deployed before the contribution
 * no longer matches: deploy the new Verifier.sol.
 */
export async function contributeToBundle(
  dir: string,
  opts: ContributeOptions = {},
): Promise<Phase2Contribution> {
  const log = opts.log ?? (() => {});
  const name = checkName(opts.name ?? "anonymous");
  const entropy = opts.entropy ?? crypto.randomBytes(32).toString("hex");
  log(`phase 2: contributing to ${dir} as '${name}'`);
  const c = await extendPhase2(dir, { type: "contribute", name }, (oldZkey, newZkey) =>
    snarkjs.zKey.contribute(oldZkey, newZkey, name, entropy, quiet),
  );
  log(`phase 2: contribution hash ${c.hash}`);
  return c;
}

/**
 * Applies a public random beacon to a bundle's zkey (snarkjs `zkey beacon`): `beaconHex` is a value
 * nobody could know in advance (e.g. a future block hash), hashed 2^iterationsExp times (10 to 63).
 * A beacon adds no secret, so it protects nobody by itself; it closes a ceremony so that the last
 * contributor cannot choose the final key. Recorded like a contribution, with the beacon's parameters.
 */
export async function beaconToBundle(
  dir: string,
  beaconHex: string,
  iterationsExp: number,
  opts: BeaconOptions = {},
): Promise<Phase2Contribution> {
  const log = opts.log ?? (() => {});
  const name = checkName(opts.name ?? "beacon");
  const hex = beaconHex.replace(/^0x/i, "");
  if (!/^([0-9a-fA-F]{2})+$/.test(hex) || hex.length > 510) {
    fail("BAD_INPUT", `the beacon must be 1 to 255 bytes of hexadecimal, got '${beaconHex}'`);
  }
  if (!Number.isInteger(iterationsExp) || iterationsExp < 10 || iterationsExp > 63) {
    fail("BAD_INPUT", `the beacon iteration exponent must be an integer in [10, 63], got ${iterationsExp}`);
  }
  log(`phase 2: applying beacon ${hex} (2^${iterationsExp} iterations) to ${dir}`);
  const c = await extendPhase2(
    dir,
    { type: "beacon", name, beacon: { hash: hex.toLowerCase(), iterationsExp } },
    async (oldZkey, newZkey) => {
      const r = await snarkjs.zKey.beacon(oldZkey, newZkey, name, hex, iterationsExp, quiet);
      if (r === false)
        fail("BAD_INPUT", `snarkjs refused the beacon '${hex}' with exponent ${iterationsExp}`);
      return r;
    },
  );
  log(`phase 2: beacon contribution hash ${c.hash}`);
  return c;
}
