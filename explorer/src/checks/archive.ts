/**
 * The data node's bundle archive, read in the browser (the Node reader is workers/data/bundle-archive.ts,
 * which needs Buffer and node:crypto). Layout: a 4-byte big-endian header length N, N bytes of header JSON
 * {"format":"opg-bundle-archive/1","files":[{"name","size","sha256"}...]}, then the files' bytes
 * concatenated in header order.
 */

export const BUNDLE_ARCHIVE_FORMAT = "opg-bundle-archive/1";
const MAX_HEADER_BYTES = 1 << 20;

export interface ArchiveEntry {
  name: string;
  size: number;
  sha256: string;
}

/** The parts of a bundle manifest (zkml/bundle.ts BundleManifest, or a plain bundle's) the page reads. */
export interface ManifestView {
  format?: string;
  name?: string;
  onnx?: { file: string; sha256: string };
  output?: {
    name?: string;
    shape?: number[];
    scaleBits?: number;
    postprocess?: string;
    parts?: {
      name: string;
      shape: number[];
      offset: number;
      size: number;
      postprocess?: string;
      labels?: (number | string)[];
      zipmap?: (number | string)[];
    }[];
  };
  publicSignals?: { outputWords: number; inputWords: number; packBits: number; bindingIndex: number };
  ptau?: {
    source?: string;
    power?: number;
    trust?: string;
    secure?: boolean;
    published?: string | null;
  } | null;
  phase2?: { contributions: { name?: string; type?: string }[] };
  artifacts?: Record<string, { file: string; sha256: string } | undefined>;
}

export interface Archive {
  /** sha256 of the whole archive (hex, no 0x): its data-layer id. */
  id: string;
  entries: ArchiveEntry[];
  files: Map<string, Uint8Array>;
  manifest: ManifestView;
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Parses an archive and checks every file's sha256 against its header entry; throws with the first
 * problem. `id` is recomputed here from the bytes.
 */
export async function readArchive(bytes: Uint8Array): Promise<Archive> {
  if (bytes.length < 4) throw new Error("archive too short for its header length");
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, false);
  if (n === 0 || n > MAX_HEADER_BYTES || 4 + n > bytes.length) {
    throw new Error(`archive header length ${n} is out of range for a ${bytes.length}-byte archive`);
  }
  let header: { format?: unknown; files?: unknown };
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(4, 4 + n)));
  } catch (e) {
    throw new Error(`archive header is not JSON: ${(e as Error).message}`);
  }
  if (!header || header.format !== BUNDLE_ARCHIVE_FORMAT) {
    throw new Error(`not a ${BUNDLE_ARCHIVE_FORMAT} archive (format ${JSON.stringify(header?.format)})`);
  }
  if (!Array.isArray(header.files) || header.files.length === 0)
    throw new Error("archive header lists no files");
  const entries = header.files as ArchiveEntry[];
  const files = new Map<string, Uint8Array>();
  let offset = 4 + n;
  for (const e of entries) {
    if (typeof e?.name !== "string" || !Number.isSafeInteger(e.size) || e.size < 0) {
      throw new Error(`archive header has a bad file entry ${JSON.stringify(e)}`);
    }
    if (typeof e.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(e.sha256)) {
      throw new Error(`${e.name}: bad sha256 ${JSON.stringify(e.sha256)} in the archive header`);
    }
    if (files.has(e.name)) throw new Error(`${e.name} is listed twice in the archive header`);
    if (offset + e.size > bytes.length)
      throw new Error(`${e.name}: archive truncated (needs ${e.size} bytes)`);
    const data = bytes.subarray(offset, offset + e.size);
    offset += e.size;
    const actual = await sha256Hex(data);
    if (actual !== e.sha256) {
      throw new Error(`${e.name}: content hashes to ${actual} but the archive header says ${e.sha256}`);
    }
    files.set(e.name, data);
  }
  if (offset !== bytes.length) throw new Error(`${bytes.length - offset} trailing bytes after the last file`);
  const manifest = jsonFile(files, "manifest.json") as ManifestView;
  if (typeof manifest !== "object" || manifest === null) throw new Error("manifest.json is not an object");
  // Every file the manifest lists must be in the archive with the sha256 the manifest gives.
  const refs = [manifest.onnx, ...Object.values(manifest.artifacts ?? {})];
  for (const ref of refs) {
    if (!ref) continue;
    const entry = entries.find((x) => x.name === ref.file);
    if (!entry) throw new Error(`manifest.json lists ${ref.file} but the archive does not hold it`);
    if (entry.sha256 !== ref.sha256) {
      throw new Error(`${ref.file}: content hashes to ${entry.sha256} but manifest.json says ${ref.sha256}`);
    }
  }
  return { id: await sha256Hex(bytes), entries, files, manifest };
}

/** A JSON file of the archive, parsed; throws naming the file. */
export function jsonFile(files: Map<string, Uint8Array>, name: string): unknown {
  const data = files.get(name);
  if (!data) throw new Error(`the archive holds no ${name}`);
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch (e) {
    throw new Error(`${name} is not JSON: ${(e as Error).message}`);
  }
}
