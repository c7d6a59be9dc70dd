import { getAddress, verifyMessage } from "ethers";
import type { DataChainView, UploaderStanding } from "./chain-view";
import { parseUploadAuthorization, UPLOAD_AUTH_SCHEME, uploadMessage } from "./protocol";

/** Why a signed upload was refused: 401 when the request does not prove who sent it, 403 when it does but they may not. */
export class UploadAuthError extends Error {
  constructor(
    readonly status: 401 | 403 | 503,
    message: string,
  ) {
    super(message);
    this.name = "UploadAuthError";
  }
}

export interface UploadAuthOptions {
  /** Addresses allowed whatever the chain says. */
  allowed: readonly string[];
  /** Staked accounts, model owners and holders of enough OPG, when the node reads a chain. */
  chain?: Pick<DataChainView, "uploaderStanding">;
  /** Furthest a signature's expiry may lie ahead, in seconds (bounds how long a leaked one is good for). */
  maxLifetimeSeconds: number;
  now?: () => number;
}

/**
 * Checks the `authorization: OPG-SIG <address>:<expiry>:<signature>` header of a PUT against the blob it
 * announces (expected sha256 and content-length), and that the signer may upload. Returns the signer's
 * checksummed address and why it may upload.
 */
export class UploadAuthorizer {
  private readonly allowed: Set<string>;
  private readonly now: () => number;

  constructor(private readonly opts: UploadAuthOptions) {
    this.allowed = new Set(opts.allowed.map((a) => a.toLowerCase()));
    this.now = opts.now ?? Date.now;
  }

  async check(
    header: string | undefined,
    sha256: string | undefined,
    bytes: number | null,
  ): Promise<{ address: string; standing: UploaderStanding | "allowed" }> {
    if (header === undefined) {
      throw new UploadAuthError(
        401,
        `this data node takes signed uploads only: send authorization: ${UPLOAD_AUTH_SCHEME} <address>:<expiry>:<signature> (opg data put signs with OPG_PRIVATE_KEY)`,
      );
    }
    const auth = parseUploadAuthorization(header);
    if (!auth) {
      throw new UploadAuthError(
        401,
        `malformed authorization header: expected ${UPLOAD_AUTH_SCHEME} <0x address>:<expiry unix seconds>:<0x 65-byte signature>`,
      );
    }
    if (sha256 === undefined) {
      throw new UploadAuthError(401, "a signed upload must name its content: send x-opg-expect-sha256");
    }
    if (bytes === null) {
      throw new UploadAuthError(401, "a signed upload must declare its size: send content-length");
    }
    const nowSeconds = Math.floor(this.now() / 1000);
    if (auth.expiry <= nowSeconds) {
      throw new UploadAuthError(401, `the upload signature expired at ${auth.expiry} (now ${nowSeconds})`);
    }
    if (auth.expiry > nowSeconds + this.opts.maxLifetimeSeconds) {
      throw new UploadAuthError(
        401,
        `the upload signature expires at ${auth.expiry}, more than ${this.opts.maxLifetimeSeconds} s ahead`,
      );
    }
    let signer: string;
    try {
      signer = verifyMessage(uploadMessage({ sha256, bytes, expiry: auth.expiry }), auth.signature);
    } catch {
      throw new UploadAuthError(401, "the upload signature does not decode");
    }
    const address = getAddress(auth.address);
    if (signer !== address) {
      throw new UploadAuthError(
        401,
        `the upload signature is not ${address}'s for this content, size and expiry (was it made for another blob?)`,
      );
    }
    if (this.allowed.has(address.toLowerCase())) return { address, standing: "allowed" };
    if (this.opts.chain) {
      let standing: UploaderStanding | null;
      try {
        standing = await this.opts.chain.uploaderStanding(address);
      } catch {
        throw new UploadAuthError(503, "cannot check the uploader on chain right now; try again later");
      }
      if (standing) return { address, standing };
    }
    const grounds = this.opts.chain
      ? "not in the allowed list, not staked, owns no registered model and does not hold the minimum balance"
      : "not in the allowed list";
    throw new UploadAuthError(403, `${address} may not upload to this data node: ${grounds}`);
  }
}
