/** HTTP names shared by the data node and its client, and the text an uploader signs. */

/** Request header of PUT /blobs: refuse (422) unless the content hashes to this id. */
export const EXPECT_HEADER = "x-opg-expect-sha256";
/** Response header of GET/HEAD /blobs/<id>: the id (sha256) of the bytes served. */
export const SHA256_HEADER = "x-opg-sha256";
/** Scheme of the `authorization` header of a signed upload: `OPG-SIG <address>:<expiry>:<0x signature>`. */
export const UPLOAD_AUTH_SCHEME = "OPG-SIG";

/** What an uploader's signature covers: one blob (its sha256 and size) until an expiry. */
export interface UploadGrant {
  /** The blob's id: lowercase hex sha256, 64 characters. */
  sha256: string;
  /** The blob's size in bytes (the request's content-length). */
  bytes: number;
  /** Unix seconds after which the signature is refused. */
  expiry: number;
}

/**
 * The text an uploader signs with EIP-191 `personal_sign` (ethers `signMessage`). It names the purpose, so a
 * signature made for this can never pass as consent to anything else, and the content, size and expiry, so
 * it cannot be replayed for other bytes or after it expires.
 */
export function uploadMessage(g: UploadGrant): string {
  return `OpenGradient data node upload\nsha256: ${g.sha256}\nbytes: ${g.bytes}\nexpiry: ${g.expiry}`;
}

/** The `authorization` header value of a signed upload. */
export function uploadAuthorization(address: string, expiry: number, signature: string): string {
  return `${UPLOAD_AUTH_SCHEME} ${address}:${expiry}:${signature}`;
}

/** The parts of an `authorization: OPG-SIG ...` header, or null when it is not one (any other scheme). */
export function parseUploadAuthorization(
  header: string,
): { address: string; expiry: number; signature: string } | null {
  const m = /^OPG-SIG\s+(0x[0-9a-fA-F]{40}):([0-9]{1,12}):(0x[0-9a-fA-F]{130})$/.exec(header.trim());
  if (!m) return null;
  return { address: m[1], expiry: Number(m[2]), signature: m[3] };
}
