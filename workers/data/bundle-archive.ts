import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { BundleManifest } from "../../zkml/bundle";
import { sha256Hex } from "./blob-store";

/**
 * One deterministic blob per ZKML bundle, so a bundle has a single content id on the data layer and on
 * chain (`bundleHash` = 0x + that id).
 *
 * Layout: a 4-byte big-endian length N, N bytes of header JSON, then every file's bytes concatenated in
 * header order. The header is exactly
 *
 *   {"format":"opg-bundle-archive/1","files":[{"name":..,"size":..,"sha256":..}, ...]}
 *
 * (no whitespace, keys in this order, files sorted by name, no duplicates). It holds manifest.json, the
 * ONNX file and every artifact the manifest lists: what a node needs to prove and verify. No timestamps
 * or modes are recorded, so packing the same bundle twice gives the same bytes. Unpacking accepts only
 * this canonical form, so one bundle has exactly one archive and one id.
 */

export const BUNDLE_ARCHIVE_FORMAT = "opg-bundle-archive/1";
export const MANIFEST_FILE = "manifest.json";
/** Upper bound on the header, far above any real bundle's (a few hundred bytes per file). */
const MAX_HEADER_BYTES = 1 << 20;

export type BundleArchiveErrorCode =
  "BAD_ARCHIVE" | "BAD_NAME" | "HASH_MISMATCH" | "BAD_BUNDLE" | "EXISTS" | "BAD_ID";

export class BundleArchiveError extends Error {
  constructor(
    readonly code: BundleArchiveErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "BundleArchiveError";
  }
}

export interface ArchiveEntry {
  name: string;
  size: number;
  sha256: string;
}

export interface ArchiveHeader {
  format: typeof BUNDLE_ARCHIVE_FORMAT;
  files: ArchiveEntry[];
}

export interface ReadArchive {
  header: ArchiveHeader;
  manifest: BundleManifest;
  files: Map<string, Buffer>;
  /** sha256 of the archive bytes: its data-layer id. */
  id: string;
}

const fail = (code: BundleArchiveErrorCode, msg: string): never => {
  throw new BundleArchiveError(code, msg);
};

/**
 * Throws BAD_NAME unless `name` is a safe relative path: '/'-separated, no empty, '.' or '..' segments, no
 * leading '/', no backslash, drive letter or control characters.
 */
export function assertSafeName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 255) {
    return fail("BAD_NAME", `bad file name ${JSON.stringify(name)}: expected 1 to 255 characters`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\\\x00-\x1f\x7f]/.test(name) || name.startsWith("/") || /^[A-Za-z]:/.test(name)) {
    return fail("BAD_NAME", `bad file name ${JSON.stringify(name)}: absolute or with forbidden characters`);
  }
  if (name.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) {
    return fail("BAD_NAME", `bad file name ${JSON.stringify(name)}: empty, "." or ".." path segment`);
  }
  return name;
}

function headerBytes(files: ArchiveEntry[]): Buffer {
  const header = {
    format: BUNDLE_ARCHIVE_FORMAT,
    files: files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
  };
  return Buffer.from(JSON.stringify(header), "utf8");
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The files an archive of this manifest must hold, sorted: manifest.json, the ONNX file, the artifacts. */
export function bundleFileRefs(manifest: BundleManifest): Map<string, string | null> {
  if (typeof manifest !== "object" || manifest === null) fail("BAD_BUNDLE", "manifest.json is not an object");
  const refs = new Map<string, string | null>([[MANIFEST_FILE, null]]);
  const add = (what: string, ref: unknown): void => {
    const r = ref as { file?: unknown; sha256?: unknown } | undefined;
    if (
      !r ||
      typeof r.file !== "string" ||
      typeof r.sha256 !== "string" ||
      !/^[0-9a-f]{64}$/.test(r.sha256)
    ) {
      fail("BAD_BUNDLE", `manifest.json: ${what} needs {file, sha256 (64 lowercase hex)}`);
    }
    const file = assertSafeName(r!.file);
    const sha = r!.sha256 as string;
    if (file === MANIFEST_FILE) fail("BAD_BUNDLE", `manifest.json: ${what} cannot be manifest.json itself`);
    const prior = refs.get(file);
    if (prior !== undefined && prior !== sha) {
      fail("BAD_BUNDLE", `manifest.json: ${file} is listed twice with different sha256`);
    }
    refs.set(file, sha);
  };
  add("onnx", manifest.onnx);
  const artifacts = manifest.artifacts as unknown;
  if (typeof artifacts !== "object" || artifacts === null || Array.isArray(artifacts)) {
    fail("BAD_BUNDLE", "manifest.json: artifacts must be an object of {file, sha256}");
  }
  for (const key of Object.keys(artifacts as object).sort(byName)) {
    add(`artifacts.${key}`, (artifacts as Record<string, unknown>)[key]);
  }
  return new Map([...refs.entries()].sort(([a], [b]) => byName(a, b)));
}

function parseManifest(bytes: Buffer): BundleManifest {
  try {
    return JSON.parse(bytes.toString("utf8")) as BundleManifest;
  } catch (e) {
    return fail("BAD_BUNDLE", `manifest.json is not JSON: ${(e as Error).message}`);
  }
}

/** Packs a bundle directory into one deterministic archive; refuses files that disagree with manifest.json. */
export function packBundle(dir: string): Buffer {
  const root = path.resolve(dir);
  const read = (name: string): Buffer => {
    try {
      return fs.readFileSync(path.join(root, ...name.split("/")));
    } catch (e) {
      return fail("BAD_BUNDLE", `cannot read ${name} in ${root}: ${(e as Error).message}`);
    }
  };
  const manifestBytes = read(MANIFEST_FILE);
  const refs = bundleFileRefs(parseManifest(manifestBytes));
  const entries: ArchiveEntry[] = [];
  const blobs: Buffer[] = [];
  for (const [name, want] of refs) {
    const bytes = name === MANIFEST_FILE ? manifestBytes : read(name);
    const sha256 = sha256Hex(bytes);
    if (want !== null && want !== sha256) {
      fail("HASH_MISMATCH", `${name} in ${root} hashes to ${sha256} but manifest.json says ${want}`);
    }
    entries.push({ name, size: bytes.length, sha256 });
    blobs.push(bytes);
  }
  const header = headerBytes(entries);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  return Buffer.concat([len, header, ...blobs]);
}

/**
 * Parses and checks an archive in memory: canonical header, safe names, sizes that add up exactly, every
 * file's sha256 against the header, and the files against manifest.json (each one it lists present with
 * its sha256, nothing else).
 */
export function readBundleArchive(bytes: Uint8Array): ReadArchive {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 4) fail("BAD_ARCHIVE", "archive too short for its header length");
  const n = buf.readUInt32BE(0);
  if (n === 0 || n > MAX_HEADER_BYTES || 4 + n > buf.length) {
    fail("BAD_ARCHIVE", `archive header length ${n} is out of range for a ${buf.length}-byte archive`);
  }
  const rawHeader = buf.subarray(4, 4 + n);
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawHeader.toString("utf8"));
  } catch (e) {
    return fail("BAD_ARCHIVE", `archive header is not JSON: ${(e as Error).message}`);
  }
  const h = parsed as Partial<ArchiveHeader>;
  if (typeof h !== "object" || h === null || h.format !== BUNDLE_ARCHIVE_FORMAT) {
    fail("BAD_ARCHIVE", `not a ${BUNDLE_ARCHIVE_FORMAT} archive (format ${JSON.stringify(h?.format)})`);
  }
  if (!Array.isArray(h.files) || h.files.length === 0) fail("BAD_ARCHIVE", "archive header lists no files");
  const entries = h.files as ArchiveEntry[];
  let offset = 4 + n;
  const files = new Map<string, Buffer>();
  let prev: string | null = null;
  for (const e of entries) {
    if (typeof e !== "object" || e === null)
      fail("BAD_ARCHIVE", "archive header has a non-object file entry");
    const name = assertSafeName(e.name);
    if (prev !== null && byName(prev, name) >= 0) {
      fail("BAD_ARCHIVE", `archive files out of order or duplicated at ${JSON.stringify(name)}`);
    }
    prev = name;
    if (!Number.isSafeInteger(e.size) || e.size < 0)
      fail("BAD_ARCHIVE", `${name}: bad size ${JSON.stringify(e.size)}`);
    if (typeof e.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(e.sha256)) {
      fail("BAD_ARCHIVE", `${name}: bad sha256 ${JSON.stringify(e.sha256)}`);
    }
    if (offset + e.size > buf.length)
      fail("BAD_ARCHIVE", `${name}: archive truncated (needs ${e.size} bytes)`);
    const data = buf.subarray(offset, offset + e.size);
    offset += e.size;
    const actual = sha256Hex(data);
    if (actual !== e.sha256) {
      fail("HASH_MISMATCH", `${name}: content hashes to ${actual} but the archive header says ${e.sha256}`);
    }
    files.set(name, data);
  }
  for (const name of files.keys()) {
    const segs = name.split("/");
    for (let i = 1; i < segs.length; i++) {
      const dir = segs.slice(0, i).join("/");
      if (files.has(dir)) fail("BAD_NAME", `${dir} is both a file and the directory of ${name}`);
    }
  }
  if (offset !== buf.length) fail("BAD_ARCHIVE", `${buf.length - offset} trailing bytes after the last file`);
  if (!headerBytes(entries).equals(rawHeader)) fail("BAD_ARCHIVE", "archive header is not in canonical form");

  const manifestBytes = files.get(MANIFEST_FILE);
  if (!manifestBytes) return fail("BAD_BUNDLE", "archive holds no manifest.json");
  const manifest = parseManifest(manifestBytes);
  const refs = bundleFileRefs(manifest);
  for (const [name, want] of refs) {
    const data = files.get(name);
    if (!data) fail("BAD_BUNDLE", `manifest.json lists ${name} but the archive does not hold it`);
    const got = entries.find((x) => x.name === name)!.sha256;
    if (want !== null && got !== want) {
      fail("HASH_MISMATCH", `${name}: content hashes to ${got} but manifest.json says ${want}`);
    }
  }
  for (const name of files.keys()) {
    if (!refs.has(name)) fail("BAD_BUNDLE", `archive holds ${name}, which manifest.json does not list`);
  }
  return { header: { format: BUNDLE_ARCHIVE_FORMAT, files: entries }, manifest, files, id: sha256Hex(buf) };
}

export interface UnpackOptions {
  /** Replace `destDir` if it exists (default: refuse with EXISTS). */
  replace?: boolean;
}

export interface UnpackResult {
  dir: string;
  id: string;
  manifest: BundleManifest;
  files: ArchiveEntry[];
}

/**
 * Checks an archive (see readBundleArchive) and writes its files under `destDir` atomically: into a temp
 * directory beside it, fsynced, then renamed into place. Nothing is written if any check fails.
 */
export function unpackBundle(bytes: Uint8Array, destDir: string, opts: UnpackOptions = {}): UnpackResult {
  const archive = readBundleArchive(bytes);
  const dest = path.resolve(destDir);
  const parent = path.dirname(dest);
  fs.mkdirSync(parent, { recursive: true });
  if (fs.existsSync(dest) && !opts.replace) fail("EXISTS", `${dest} already exists`);
  const tmp = path.join(
    parent,
    `.${path.basename(dest)}.tmp-${process.pid}-${crypto.randomBytes(6).toString("hex")}`,
  );
  let old: string | null = null;
  try {
    fs.mkdirSync(tmp);
    for (const [name, data] of archive.files) {
      const file = path.join(tmp, ...name.split("/"));
      if (!file.startsWith(tmp + path.sep))
        fail("BAD_NAME", `file name ${name} escapes the bundle directory`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const fd = fs.openSync(file, "wx");
      try {
        fs.writeSync(fd, data);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    if (opts.replace && fs.existsSync(dest)) {
      old = `${tmp}.old`;
      fs.renameSync(dest, old);
    }
    try {
      fs.renameSync(tmp, dest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (old) fs.renameSync(old, dest);
      old = null;
      if (code === "ENOTEMPTY" || code === "EEXIST") fail("EXISTS", `${dest} appeared while unpacking`);
      throw e;
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (old) fs.rmSync(old, { recursive: true, force: true });
  }
  return { dir: dest, id: archive.id, manifest: archive.manifest, files: archive.header.files };
}

/** On-chain `bundleHash` (bytes32, 0x + 64 lowercase hex) of a data-layer bundle id. */
export function bundleIdToBytes32(id: string): string {
  if (typeof id !== "string" || !/^[0-9a-f]{64}$/.test(id)) {
    throw new BundleArchiveError("BAD_ID", `bad bundle id ${JSON.stringify(id)}: expected 64 lowercase hex`);
  }
  return `0x${id}`;
}

/** Data-layer id (64 lowercase hex, no 0x) of an on-chain `bundleHash`. */
export function bytes32ToBundleId(h: string): string {
  if (typeof h !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(h)) {
    throw new BundleArchiveError("BAD_ID", `bad bytes32 ${JSON.stringify(h)}: expected 0x + 64 hex`);
  }
  return h.slice(2).toLowerCase();
}

/** Data-layer id of an archive: sha256 of its bytes. */
export function bundleArchiveId(bytes: Uint8Array): string {
  return sha256Hex(bytes);
}
