import type { ModelRow } from "../types";
import { readArchive, sha256Hex, type Archive } from "./archive";

/** What the data node served for a bundle hash: the bytes' sha256, and the archive or why it is unreadable. */
export interface LoadedBundle {
  url: string;
  /** sha256 of the bytes served (hex, no 0x). */
  id: string;
  size: number;
  archive?: Archive;
  error?: string;
}

/** Bundles by on-chain bundle hash: every task of a model shares one download and one parse. */
const bundles = new Map<string, Promise<LoadedBundle>>();

/** Where the data node serves the bundle of `model` (by its content id, the bundle hash without 0x). */
export function bundleUrl(dataUrl: string, model: ModelRow): string {
  return `${dataUrl.replace(/\/+$/, "")}/blobs/${model.bundleHash.replace(/^0x/, "").toLowerCase()}`;
}

/**
 * The model's bundle archive fetched from the data node, hashed and parsed (each file's sha256 checked
 * against the archive header). Comparing `id` with the registry's bundle hash is the caller's check. A
 * failed download is not kept: the next task page tries again.
 */
export function loadBundle(dataUrl: string, model: ModelRow): Promise<LoadedBundle> {
  const url = bundleUrl(dataUrl, model);
  let p = bundles.get(url);
  if (!p) {
    p = (async () => {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const id = await sha256Hex(bytes);
      try {
        return { url, id, size: bytes.length, archive: await readArchive(bytes) };
      } catch (e) {
        return { url, id, size: bytes.length, error: (e as Error).message };
      }
    })();
    bundles.set(url, p);
    p.catch(() => bundles.delete(url));
  }
  return p;
}
