import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { packBundle, readBundleArchive } from "../../workers/data/bundle-archive";

/**
 * The same bundle with another valid verification key: the key's first two IC points swapped (both on the
 * curve, so the key parses and a verifier runs), and manifest.json's hash of the key updated to match, so
 * that the archive is self-consistent and only the registry's hashes can tell. For the explorer's browser
 * test and its tamper screenshot, served by a lying data node.
 */
export function swapVerificationKey(archive: Buffer): Buffer {
  const read = readBundleArchive(archive);
  const ref = read.manifest.artifacts.verificationKey as { file: string; sha256: string };
  const vk = JSON.parse(read.files.get(ref.file)!.toString("utf8")) as { IC: unknown[] };
  [vk.IC[0], vk.IC[1]] = [vk.IC[1], vk.IC[0]];
  const key = Buffer.from(JSON.stringify(vk));
  const manifest = {
    ...read.manifest,
    artifacts: {
      ...read.manifest.artifacts,
      verificationKey: { ...ref, sha256: crypto.createHash("sha256").update(key).digest("hex") },
    },
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-forged-bundle-"));
  try {
    for (const [name, bytes] of read.files) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), bytes);
    }
    fs.writeFileSync(path.join(dir, ref.file), key);
    fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
    return packBundle(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A data node that lies about one bundle, as a request handler: `/blobs/<bundleId>` answers the forged archive
 * (with the id asked for in its headers); everything else is passed on to the real data node at `upstream`.
 */
export function lyingDataNodeHandler(
  upstream: string,
  bundleId: string,
  forged: Buffer,
): http.RequestListener {
  return (req, res) => {
    if (new URL(req.url ?? "/", "http://x").pathname === `/blobs/${bundleId}` && req.method !== "OPTIONS") {
      // The archive asked for, as far as the headers say.
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": forged.length,
        "x-opg-sha256": bundleId,
        "access-control-allow-origin": "*",
        "access-control-expose-headers": "x-opg-sha256",
      });
      res.end(req.method === "HEAD" ? undefined : forged);
      return;
    }
    forwardRequest(req, res, upstream);
  };
}

/** Pass a request on to `upstream` unchanged, and its answer back (a lying data node's honest part). */
export function forwardRequest(req: http.IncomingMessage, res: http.ServerResponse, upstream: string) {
  const target = new URL(req.url ?? "/", upstream);
  const out = http.request(
    target,
    { method: req.method, headers: { ...req.headers, host: target.host } },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  out.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "access-control-allow-origin": "*" });
    res.end(String(e));
  });
  req.pipe(out);
}
