// Re-checking an enclave key's attestation document off chain: what anyone watching the EnclaveRegistry does
// with each EnclaveKeyRegistered event before challenging a key (IEnclaveRegistry.challengeKey). The registry
// stores only keccak256(document) and the measurement the node claimed; this module decides whether the
// published document really binds the key to that measurement, and was made for this chain, this registry and
// this node (its nonce holds enclaveDocumentBinding, tee/binding.ts).

import { ethers } from "ethers";
import type { EnclaveRegistry } from "../typechain-types/contracts/tee/EnclaveRegistry";
import { enclaveDocumentBinding } from "./binding";
import { CborError, CborValue, decodeCbor } from "./cbor";
import { DEV_ATTESTATION_FORMAT, standingName, type KeyStandingName } from "./dev-enclave";
import { DEV_ENCLAVE_MEASUREMENT, nitroMeasurement } from "./measurement";
import { NitroAttestationError, decodeNitroAttestation, verifyNitroAttestation } from "./nitro";

/** How old a document may be when its key is registered, by default: one hour. */
export const DEFAULT_MAX_DOCUMENT_AGE_SECONDS = 3600;
/** A document may be stamped this far after the block that registered it (clock skew). */
const MAX_FUTURE_SKEW_SECONDS = 300;

/**
 * The verdict on a key's document:
 *  - "valid": a genuine AWS Nitro document, verified to the pinned root at its own timestamp, that binds the key
 *    to the registered measurement, whose nonce binds the chain, the registry, the node and the key
 *    (enclaveDocumentBinding), and that hashes to the registered documentHash, fresh at registration;
 *  - "development": a development attestation (tee/dev-enclave.ts), consistent with the registration but
 *    evidence of nothing: not hardware-backed, acceptable only on a local chain;
 *  - "invalid": anything else; `problems` says what.
 */
export type KeyVerdict = "valid" | "development" | "invalid";

/** What the registry recorded about a key (its keyInfo and the EnclaveKeyRegistered event). */
export interface RegisteredKey {
  key: string;
  node: string;
  measurement: string;
  documentHash: string;
  /** The published document (the event's `document`). */
  document: Uint8Array;
  /** Time of the block that registered the key. */
  registeredAt: Date;
  /**
   * The chain and the EnclaveRegistry the key was registered in: the document's nonce must bind them (with the
   * node and the key). readKeyRecord and listKeyRecords fill them in. A caller that leaves them out gets the
   * binding unchecked, said in `notes`; give them wherever they are known.
   */
  chainId?: bigint;
  registry?: string;
}

export interface CheckKeyOptions {
  /** Refuse a document older than this at registration (seconds, default DEFAULT_MAX_DOCUMENT_AGE_SECONDS). */
  maxDocumentAgeSeconds?: number;
  /** Trust anchor for Nitro documents (default: the AWS Nitro root G1). */
  root?: string | Uint8Array;
}

export interface KeyCheck {
  key: string;
  verdict: KeyVerdict;
  /** "nitro", "development", or "unknown" when the document is neither. */
  kind: "nitro" | "development" | "unknown";
  /** One line per failed check (empty unless the verdict is "invalid"). */
  problems: string[];
  /** Notes that do not invalidate the document (a development attestation says so here). */
  notes: string[];
  /** What the document says, as far as it could be read. */
  document: {
    moduleId?: string;
    timestamp?: string;
    /** The measurement the document's PCR0-2 give. */
    measurement?: string;
    pcrs?: Record<number, string>;
    /** Addresses the document's public_key and user_data name. */
    publicKeyAddress?: string;
    userDataAddress?: string;
    nonce?: string;
    /** The nonce the document must carry (enclaveDocumentBinding), when the chain and registry are known. */
    binding?: string;
  };
}

const lower = (a: string) => a.toLowerCase();

/** The address of a secp256k1 public key in a document: 65 bytes uncompressed (0x04...), 64 raw, 33 compressed. */
export function publicKeyAddress(pk: Uint8Array | undefined): string | undefined {
  if (!pk) return undefined;
  try {
    if (pk.length === 64) return ethers.computeAddress(ethers.concat(["0x04", pk]));
    if (pk.length === 65 || pk.length === 33) return ethers.computeAddress(ethers.hexlify(pk));
  } catch {
    // not a point on secp256k1
  }
  return undefined;
}

/** The address `user_data` names: 20 raw bytes, or the text "0x" + 40 hex digits. */
export function userDataAddress(ud: Uint8Array | undefined): string | undefined {
  if (!ud) return undefined;
  if (ud.length === 20) return ethers.getAddress(ethers.hexlify(ud));
  if (ud.length === 42) {
    const text = Buffer.from(ud).toString("latin1");
    if (/^0x[0-9a-fA-F]{40}$/.test(text)) return ethers.getAddress(text.toLowerCase());
  }
  return undefined;
}

/** Whether `doc` is a development attestation (a CBOR map whose `format` is opg-dev-attestation/1). */
export function isDevAttestation(doc: Uint8Array): boolean {
  try {
    const m = decodeCbor(doc);
    return m instanceof Map && m.get("format") === DEV_ATTESTATION_FORMAT;
  } catch {
    return false;
  }
}

function checkCommon(
  reg: RegisteredKey,
  out: KeyCheck,
  measurement: string | undefined,
  timestamp: Date | undefined,
  opts: CheckKeyOptions,
) {
  const hash = ethers.keccak256(reg.document);
  if (lower(hash) !== lower(reg.documentHash)) {
    out.problems.push(`the document hashes to ${hash}, the registry recorded ${reg.documentHash}`);
  }
  if (measurement !== undefined && lower(measurement) !== lower(reg.measurement)) {
    out.problems.push(
      `the document's PCR0-2 give measurement ${measurement}, the key was registered for ${reg.measurement}`,
    );
  }
  const { publicKeyAddress: pkAddr, userDataAddress: udAddr } = out.document;
  const bound = [pkAddr, udAddr].some((a) => a !== undefined && lower(a) === lower(reg.key));
  if (!bound) {
    out.problems.push(
      `the document does not name key ${reg.key}: public_key gives ${pkAddr ?? "no secp256k1 key"}, ` +
        `user_data gives ${udAddr ?? "no address"}`,
    );
  }
  checkBinding(reg, out);
  if (timestamp) {
    const maxAge = opts.maxDocumentAgeSeconds ?? DEFAULT_MAX_DOCUMENT_AGE_SECONDS;
    const age = (reg.registeredAt.getTime() - timestamp.getTime()) / 1000;
    if (age > maxAge) {
      out.problems.push(
        `the document was ${Math.round(age)} s old when the key was registered (at most ${maxAge} s): ` +
          `made ${timestamp.toISOString()}, registered ${reg.registeredAt.toISOString()}`,
      );
    } else if (age < -MAX_FUTURE_SKEW_SECONDS) {
      out.problems.push(
        `the document is stamped ${timestamp.toISOString()}, after the key's registration at ` +
          `${reg.registeredAt.toISOString()}`,
      );
    }
  }
}

/** The document's nonce must be enclaveDocumentBinding(chain id, registry, node, key) of the registration. */
function checkBinding(reg: RegisteredKey, out: KeyCheck): void {
  if (reg.chainId === undefined || reg.registry === undefined) {
    out.notes.push(
      "the nonce's binding to the chain, registry and node was not checked: the registration's chainId and " +
        "registry were not given",
    );
    return;
  }
  const want = enclaveDocumentBinding({
    chainId: reg.chainId,
    registry: reg.registry,
    node: reg.node,
    key: reg.key,
  });
  out.document.binding = want;
  const got = out.document.nonce;
  if (got === undefined || lower(got) !== want) {
    out.problems.push(
      `the document's nonce (${got ?? "absent"}) does not bind chain ${reg.chainId}, registry ` +
        `${ethers.getAddress(reg.registry)}, node ${ethers.getAddress(reg.node)} and key ` +
        `${ethers.getAddress(reg.key)}: expected ${want} = keccak256(abi.encode(` +
        `keccak256("opg.enclave.document-binding"), chainId, registry, node, key))`,
    );
  }
}

function bytesOf(m: Map<unknown, CborValue>, k: string): Uint8Array | undefined {
  const v = m.get(k);
  return v instanceof Uint8Array ? v : undefined;
}

function checkDevDocument(reg: RegisteredKey, out: KeyCheck, opts: CheckKeyOptions): void {
  out.kind = "development";
  const m = decodeCbor(reg.document) as Map<unknown, CborValue>;
  const pcrs = m.get("pcrs");
  let measurement: string | undefined;
  if (pcrs instanceof Map) {
    const p = [0, 1, 2].map((i) => pcrs.get(i));
    if (p.every((x) => x instanceof Uint8Array && x.length === 48)) {
      measurement = nitroMeasurement({ 0: p[0] as Uint8Array, 1: p[1] as Uint8Array, 2: p[2] as Uint8Array });
      out.document.pcrs = Object.fromEntries(p.map((x, i) => [i, ethers.hexlify(x as Uint8Array)]));
    }
  }
  if (measurement === undefined) out.problems.push("the development document has no PCR0-2 of 48 bytes");
  else if (measurement !== DEV_ENCLAVE_MEASUREMENT) {
    out.problems.push(
      `a development document must carry the development PCRs (measurement ${DEV_ENCLAVE_MEASUREMENT})`,
    );
  }
  out.document.measurement = measurement;
  const ts = m.get("timestamp");
  const timestamp = typeof ts === "number" && Number.isSafeInteger(ts) && ts > 0 ? new Date(ts) : undefined;
  if (!timestamp) out.problems.push("the development document has no timestamp");
  const mod = m.get("module_id");
  out.document.moduleId = typeof mod === "string" ? mod : undefined;
  out.document.timestamp = timestamp?.toISOString();
  out.document.publicKeyAddress = publicKeyAddress(bytesOf(m, "public_key"));
  out.document.userDataAddress = userDataAddress(bytesOf(m, "user_data"));
  const nonce = bytesOf(m, "nonce");
  out.document.nonce = nonce ? ethers.hexlify(nonce) : undefined;
  out.notes.push(
    "development attestation: not hardware-backed (valid only as a development enclave on a local chain)",
  );
  checkCommon(reg, out, measurement, timestamp, opts);
}

function checkNitroDocument(reg: RegisteredKey, out: KeyCheck, opts: CheckKeyOptions): void {
  let decoded;
  try {
    decoded = decodeNitroAttestation(reg.document);
  } catch (e) {
    out.problems.push(`not an AWS Nitro attestation document: ${(e as Error).message}`);
    return;
  }
  out.kind = "nitro";
  out.document.moduleId = decoded.moduleId;
  out.document.timestamp = decoded.timestamp.toISOString();
  out.document.pcrs = Object.fromEntries([0, 1, 2].map((i) => [i, decoded.pcrs[i]]));
  out.document.publicKeyAddress = publicKeyAddress(decoded.publicKey);
  out.document.userDataAddress = userDataAddress(decoded.userData);
  out.document.nonce = decoded.nonce ? ethers.hexlify(decoded.nonce) : undefined;
  let measurement: string | undefined;
  try {
    const p = [0, 1, 2].map((i) => decoded.pcrs[i]);
    if (p.some((x) => x === undefined)) throw new Error("the document lacks PCR0, PCR1 or PCR2");
    measurement = nitroMeasurement({
      0: ethers.getBytes(p[0]),
      1: ethers.getBytes(p[1]),
      2: ethers.getBytes(p[2]),
    });
    out.document.measurement = measurement;
  } catch (e) {
    out.problems.push(`no measurement: ${(e as Error).message}`);
  }
  try {
    // At the document's own time: its leaf certificate lives a few hours, the key for up to a year.
    verifyNitroAttestation(reg.document, { at: decoded.timestamp, root: opts.root });
  } catch (e) {
    if (!(e instanceof NitroAttestationError)) throw e;
    out.problems.push(e.message);
  }
  checkCommon(reg, out, measurement, decoded.timestamp, opts);
}

/** Decide whether `reg.document` binds `reg.key` to `reg.measurement` (see KeyVerdict). Pure: no chain access. */
export function checkEnclaveKey(reg: RegisteredKey, opts: CheckKeyOptions = {}): KeyCheck {
  const out: KeyCheck = {
    key: ethers.getAddress(reg.key),
    verdict: "invalid",
    kind: "unknown",
    problems: [],
    notes: [],
    document: {},
  };
  if (reg.document.length === 0) {
    out.problems.push("the document is empty");
    return out;
  }
  try {
    if (isDevAttestation(reg.document)) checkDevDocument(reg, out, opts);
    else checkNitroDocument(reg, out, opts);
  } catch (e) {
    if (!(e instanceof CborError)) throw e;
    out.problems.push(`the document is not valid CBOR: ${e.message}`);
  }
  if (out.problems.length === 0) out.verdict = out.kind === "development" ? "development" : "valid";
  return out;
}

// ---------------------------------------------------------------- reading the registry

/** A key as the registry holds it, with its published document. */
export interface KeyRecord extends RegisteredKey {
  standing: KeyStandingName;
  activeFrom: bigint;
  expiresAt: bigint;
  revoked: boolean;
  challenged: boolean;
  /** The block and transaction that registered it. */
  blockNumber: number;
  transactionHash: string;
}

async function recordFrom(
  enclaves: EnclaveRegistry,
  event: { args: { key: string; document: string }; blockNumber: number; transactionHash: string },
): Promise<KeyRecord> {
  const key = event.args.key;
  const provider = enclaves.runner?.provider;
  if (!provider) throw new Error("the EnclaveRegistry handle has no provider");
  const [info, [, standing], block, network, registry] = await Promise.all([
    enclaves.keyInfo(key),
    enclaves.keyStatus(key),
    provider.getBlock(event.blockNumber),
    provider.getNetwork(),
    enclaves.getAddress(),
  ]);
  if (!block) throw new Error(`block ${event.blockNumber} of key ${key}'s registration is not available`);
  return {
    key: ethers.getAddress(key),
    node: info.node,
    measurement: info.measurement,
    documentHash: info.documentHash,
    document: ethers.getBytes(event.args.document),
    registeredAt: new Date(block.timestamp * 1000),
    chainId: network.chainId,
    registry: ethers.getAddress(registry),
    standing: standingName(standing),
    activeFrom: info.activeFrom,
    expiresAt: info.expiresAt,
    revoked: info.revoked,
    challenged: info.challenged,
    blockNumber: event.blockNumber,
    transactionHash: event.transactionHash,
  };
}

/** The registry's record of `key` and its published document; an error naming the key when it is unknown. */
export async function readKeyRecord(
  enclaves: EnclaveRegistry,
  key: string,
  opts: { fromBlock?: number } = {},
): Promise<KeyRecord> {
  const [node] = await enclaves.keyStatus(key);
  if (node === ethers.ZeroAddress) {
    throw new Error(`key ${key} is not registered in the EnclaveRegistry at ${await enclaves.getAddress()}`);
  }
  const events = await enclaves.queryFilter(enclaves.filters.EnclaveKeyRegistered(key), opts.fromBlock ?? 0);
  const event = events[events.length - 1];
  if (!event) {
    throw new Error(
      `key ${key} is registered but its EnclaveKeyRegistered event was not found from block ${opts.fromBlock ?? 0}`,
    );
  }
  return recordFrom(enclaves, event);
}

/** Every registered key (optionally of one node), in registration order. */
export async function listKeyRecords(
  enclaves: EnclaveRegistry,
  opts: { node?: string; fromBlock?: number } = {},
): Promise<KeyRecord[]> {
  const filter = enclaves.filters.EnclaveKeyRegistered(undefined, opts.node);
  const events = await enclaves.queryFilter(filter, opts.fromBlock ?? 0);
  const out: KeyRecord[] = [];
  for (const e of events) out.push(await recordFrom(enclaves, e));
  return out;
}
