// The development enclave: what an inference node uses for TEE-mode tasks on a local chain, where there is no
// enclave hardware. It has the interface of a real enclave (a signing key that never leaves it, a measurement,
// an attestation document binding the key to the measurement), but the key lives in a file of the node's state
// directory and the document is signed by nobody. Only chains that approve DEV_ENCLAVE_MEASUREMENT (local
// chains, see network/deploy-settings.ts) accept its keys, and `opg tee check-key` reports its documents
// as "development attestation: not hardware-backed". docs/tee.md says what a real enclave plugs in instead.

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ethers } from "ethers";
import type { EnclaveRegistry } from "../typechain-types/contracts/tee/EnclaveRegistry";
import { INodeStaking__factory } from "../typechain-types";
import { enclaveDocumentBinding } from "./binding";
import { CborKey, CborValue, encodeCbor } from "./cbor";
import { DEV_ENCLAVE_MEASUREMENT, DEV_ENCLAVE_PCRS } from "./measurement";
import { KEY_STANDINGS, standingName, type KeyStandingName } from "./standings";

/** The `format` field that marks a development attestation document. */
export const DEV_ATTESTATION_FORMAT = "opg-dev-attestation/1";
/** The `module_id` of the development enclave's documents. */
export const DEV_ENCLAVE_MODULE_ID = "opg-dev-enclave";

const KEY_FILE = "enclave-key.json";

interface KeyFile {
  privateKey: string;
  address: string;
  createdAt: string;
}

function readKeyFile(file: string): KeyFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`cannot read the enclave key ${file}: ${(err as Error).message}`);
  }
  const pk = (parsed as Partial<KeyFile> | null)?.privateKey;
  if (typeof pk !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(pk)) {
    throw new Error(`${file} has no valid "privateKey" (0x + 64 hex digits)`);
  }
  const address = new ethers.Wallet(pk).address;
  return { privateKey: pk, address, createdAt: String((parsed as KeyFile).createdAt ?? "") };
}

function writeKeyFile(file: string): KeyFile {
  const wallet = ethers.Wallet.createRandom();
  const key: KeyFile = {
    privateKey: wallet.privateKey,
    address: wallet.address,
    createdAt: new Date().toISOString(),
  };
  // "wx": never overwrite a key; mode 0600: the key is the enclave's secret.
  fs.writeFileSync(file, JSON.stringify(key, null, 2) + "\n", { mode: 0o600, flag: "wx" });
  return key;
}

/** A development enclave: a secp256k1 key in `<stateDir>/enclave-key.json`, measurement DEV_ENCLAVE_MEASUREMENT. */
export class DevEnclave {
  readonly measurement: string = DEV_ENCLAVE_MEASUREMENT;
  #key: ethers.SigningKey;
  #address: string;

  private constructor(
    readonly stateDir: string,
    privateKey: string,
  ) {
    this.#key = new ethers.SigningKey(privateKey);
    this.#address = ethers.computeAddress(this.#key.publicKey);
  }

  /** The key's address: what EnclaveRegistry knows the key by. Changes when the enclave rotates. */
  get address(): string {
    return this.#address;
  }

  /** The enclave whose key is in `stateDir`, creating the directory and the key (mode 0600) if absent. */
  static loadOrCreate(stateDir: string): DevEnclave {
    fs.mkdirSync(stateDir, { recursive: true });
    const file = path.join(stateDir, KEY_FILE);
    const key = fs.existsSync(file) ? readKeyFile(file) : writeKeyFile(file);
    return new DevEnclave(stateDir, key.privateKey);
  }

  /**
   * Retire the current key and make a new one, in place: the old file is kept as `enclave-key.<n>.json`
   * (n = 1, 2, ...) so that what it signed can still be explained. Returns this enclave.
   */
  rotate(): DevEnclave {
    const file = path.join(this.stateDir, KEY_FILE);
    let n = 1;
    while (fs.existsSync(path.join(this.stateDir, `enclave-key.${n}.json`))) n++;
    if (fs.existsSync(file)) fs.renameSync(file, path.join(this.stateDir, `enclave-key.${n}.json`));
    const key = writeKeyFile(file);
    this.#key = new ethers.SigningKey(key.privateKey);
    this.#address = ethers.computeAddress(this.#key.publicKey);
    return this;
  }

  /** The uncompressed secp256k1 public key (0x04 || x || y), as a Nitro document's `public_key` carries it. */
  get publicKey(): string {
    return this.#key.publicKey;
  }

  /** A raw ECDSA signature (65 bytes, r || s || v) over the 32-byte `digest`; no message prefix. */
  signDigest(digest: string): string {
    return this.#key.sign(digest).serialized;
  }

  /**
   * A development attestation document: a CBOR map with the fields of a Nitro document's payload (module_id,
   * digest, timestamp, pcrs 0-2 = DEV_ENCLAVE_PCRS, public_key, user_data = the key's address, nonce) plus
   * `format: "opg-dev-attestation/1"`, and no COSE envelope or signature. It is evidence of nothing.
   * `nonce` is what the registration binds (enclaveDocumentBinding of the chain id, registry, node and key, which
   * `check-key` requires; ensureEnclaveKeyRegistered passes it); the default, 32 random bytes, binds nothing.
   * `timestampMs` is when it was made (a real enclave's NSM uses its own clock; registration stamps it with
   * the chain's time, so that a local chain whose clock tests moved ahead still finds it fresh).
   */
  attestationDocument(
    nonce: Uint8Array = crypto.randomBytes(32),
    timestampMs: number = Date.now(),
  ): Uint8Array {
    const pcrs = new Map<CborKey, CborValue>([
      [0, new Uint8Array(DEV_ENCLAVE_PCRS[0])],
      [1, new Uint8Array(DEV_ENCLAVE_PCRS[1])],
      [2, new Uint8Array(DEV_ENCLAVE_PCRS[2])],
    ]);
    const doc = new Map<CborKey, CborValue>([
      ["format", DEV_ATTESTATION_FORMAT],
      ["module_id", DEV_ENCLAVE_MODULE_ID],
      ["digest", "SHA384"],
      ["timestamp", timestampMs],
      ["pcrs", pcrs],
      ["public_key", ethers.getBytes(this.#key.publicKey)],
      ["user_data", ethers.getBytes(this.address)],
      ["nonce", new Uint8Array(nonce)],
    ]);
    return encodeCbor(doc);
  }
}

/** Key standings as IEnclaveRegistry.KeyStanding numbers them (tee/standings.ts). */
export { KEY_STANDINGS, standingName, type KeyStandingName };

const DEFAULT_LIFETIME_SECONDS = 7 * 24 * 3600;

export interface EnsureEnclaveKeyOptions {
  /** The EnclaveRegistry, connected to the node's signer. */
  enclaves: EnclaveRegistry;
  enclave: DevEnclave;
  /** How long a new key lives (capped at the registry's maxKeyLifetime). Default 7 days. */
  lifetimeSeconds?: number;
  log?: (msg: string) => void;
}

/**
 * Make sure the node's enclave key is registered and usable: nothing to do when it is Active or Pending with at
 * least a quarter of the lifetime it was registered with (and more than the activation delay) left; a key that expired, was revoked,
 * challenged or outlived its measurement, or that runs out soon, is retired: the enclave rotates to a new key,
 * which is registered. The enclave rotates in place, so `opts.enclave` holds the registered key afterwards.
 */
export async function ensureEnclaveKeyRegistered(opts: EnsureEnclaveKeyOptions): Promise<void> {
  const { enclaves } = opts;
  const log = opts.log ?? (() => {});
  const runner = enclaves.runner as ethers.Signer | null;
  if (!runner || typeof runner.getAddress !== "function") {
    throw new Error("ensureEnclaveKeyRegistered: the EnclaveRegistry must be connected to the node's signer");
  }
  const provider = runner.provider;
  if (!provider) throw new Error("ensureEnclaveKeyRegistered: the node's signer has no provider");
  const node = await runner.getAddress();
  const registryAddress = await enclaves.getAddress();
  const { chainId } = await provider.getNetwork();

  const enclave = opts.enclave;
  const measurement = enclave.measurement;
  if (!(await enclaves.isMeasurementApproved(measurement))) {
    throw new Error(
      `enclave measurement ${measurement} is not approved on this chain (chain id ${chainId}, EnclaveRegistry ` +
        `${registryAddress}); the development enclave is approved only on local chains, and governance approves ` +
        "real enclave images (approveMeasurement)",
    );
  }
  const staking = INodeStaking__factory.connect(await enclaves.staking(), provider);
  if (!(await staking.nodeInfo(node)).registered) {
    throw new Error(
      `node ${node} is not registered in NodeStaking: register it (opg node register) before its enclave key`,
    );
  }

  const [activationDelay, maxKeyLifetime] = await Promise.all([
    enclaves.activationDelay(),
    enclaves.maxKeyLifetime(),
  ]);
  const lifetime = Math.min(opts.lifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS, Number(maxKeyLifetime));
  if (lifetime <= Number(activationDelay)) {
    throw new Error(
      `an enclave key lifetime of ${lifetime} s is not longer than the activation delay (${activationDelay} s)`,
    );
  }
  const latest = await provider.getBlock("latest");
  if (!latest) throw new Error("the chain has no latest block");
  const now = BigInt(latest.timestamp);

  const [keyNode, standingRaw] = await enclaves.keyStatus(enclave.address);
  const standing = standingName(standingRaw);
  if (standing !== "Unknown") {
    if (keyNode.toLowerCase() !== node.toLowerCase()) {
      // Cannot happen for a key generated here, unless the state directory was copied from another node.
      log(`enclave key ${enclave.address} is registered to node ${keyNode}, not ${node}: rotating`);
      enclave.rotate();
    } else {
      const info = await enclaves.keyInfo(enclave.address);
      const left = info.expiresAt - now;
      // A quarter of the key's own lifetime (from activation; whatever lifetime it was registered with).
      const keyLifetime = info.expiresAt - info.activeFrom;
      const floor = activationDelay + 60n;
      const enough = keyLifetime / 4n > floor ? keyLifetime / 4n : floor;
      if ((standing === "Active" || standing === "Pending") && left >= enough) {
        log(`enclave key ${enclave.address} is ${standing}, expires at ${info.expiresAt} (in ${left} s)`);
        return;
      }
      const why = standing === "Active" || standing === "Pending" ? `expires in ${left} s` : `is ${standing}`;
      log(`enclave key ${enclave.address} ${why}: rotating to a new key`);
      enclave.rotate();
    }
  }

  // The nonce binds the document to this chain, this registry, this node and this key (check-key requires it).
  const binding = enclaveDocumentBinding({ chainId, registry: registryAddress, node, key: enclave.address });
  const document = enclave.attestationDocument(ethers.getBytes(binding), Number(now) * 1000);
  const documentHash = ethers.keccak256(document);
  const expiresAt = now + BigInt(lifetime);
  const digest = await enclaves.registrationDigest(
    node,
    enclave.address,
    measurement,
    documentHash,
    expiresAt,
  );
  const keySignature = enclave.signDigest(digest);
  try {
    const tx = await enclaves.registerKey(enclave.address, measurement, expiresAt, document, keySignature);
    await tx.wait();
  } catch (err) {
    throw new Error(
      `registering enclave key ${enclave.address} failed: ${describeRegistryError(enclaves, err)}`,
    );
  }
  log(`registered enclave key ${enclave.address} (measurement ${measurement}, expires at ${expiresAt})`);
}

/** A revert of the EnclaveRegistry in words; other errors as their message. */
export function describeRegistryError(enclaves: EnclaveRegistry, err: unknown): string {
  const data = findRevertData(err);
  if (data) {
    try {
      const parsed = enclaves.interface.parseError(data);
      if (parsed) {
        const args = parsed.args.map((a) => String(a)).join(", ");
        return `${parsed.name}(${args})`;
      }
    } catch {
      // not one of the registry's errors
    }
  }
  return (err as Error)?.message ?? String(err);
}

function findRevertData(err: unknown, depth = 0): string | undefined {
  if (!err || typeof err !== "object" || depth > 5) return undefined;
  const e = err as { data?: unknown; error?: unknown; info?: { error?: unknown } };
  if (typeof e.data === "string" && e.data.startsWith("0x") && e.data.length >= 10) return e.data;
  return findRevertData(e.error, depth + 1) ?? findRevertData(e.info?.error, depth + 1);
}
