// Verification of AWS Nitro Enclaves attestation documents, off chain.
//
// A document is a COSE_Sign1 structure (RFC 9052) encoded in CBOR: [protected, unprotected, payload,
// signature], untagged, as the Nitro Security Module writes it. The payload is a CBOR map (module_id, digest,
// timestamp, pcrs, certificate, cabundle, public_key, user_data, nonce) signed with ES384 (ECDSA P-384 over
// SHA-384) by the key of `certificate`, which chains through `cabundle` (root first) to the AWS Nitro
// Enclaves root certificate G1. The checks follow AWS's "attestation_process.md"
// (aws/aws-nitro-enclaves-nsm-api) and "Verifying the root of trust"
// (docs.aws.amazon.com/enclaves/latest/user/verify-root.html); where real documents differ from that text it
// is said below. docs/tee.md explains what is and is not checked.
//
// What the signature covers (the protected header and the payload, byte for byte) may use any CBOR encoding
// the NSM chooses: definite or indefinite lengths, as the NSM has written the payload map since 2025. What it
// does not cover, the outer COSE_Sign1 wrapper, must be in its one canonical form (checkOuterForm): otherwise
// one attestation would have many byte strings, and many keccak256 documentHash values on chain.

import crypto, { X509Certificate } from "node:crypto";
import {
  CborError,
  CborHead,
  CborKey,
  CborValue,
  decodeCbor,
  decodeCborPrefix,
  describeCbor,
  encodeCbor,
  readCborHead,
} from "./cbor";
import { CertificateFields, DerError, OID_ECDSA_WITH_SHA384, readCertificateFields } from "./der";

/** The check that failed; each NitroAttestationError carries one. */
export type NitroCheck =
  | "CBOR" // not well-formed CBOR in the supported subset
  | "COSE_FORM" // the unsigned outer wrapper is not in its one canonical form (tag, lengths, unprotected header)
  | "COSE_STRUCTURE" // not a COSE_Sign1 array of 4 with the right member types
  | "COSE_ALGORITHM" // protected header alg is not ES384 (-35), or an unsupported critical header
  | "PAYLOAD" // a payload field is missing, of the wrong type or out of range
  | "CERTIFICATE" // a certificate cannot be parsed or breaks a profile rule (algorithm, key, extensions)
  | "ROOT" // cabundle[0] is not the pinned root
  | "CHAIN" // a certificate is not issued and signed by the one before it
  | "VALIDITY" // `at` (or the document's timestamp) is outside a certificate's validity window
  | "SIGNATURE" // the ES384 signature over the COSE Sig_structure does not verify
  | "DEBUG" // a debug-mode enclave (PCR0-2 all zero) and allowDebug is not set
  | "PCR" // a PCR differs from the expected value
  | "NONCE" // the nonce differs from the expected one
  | "FRESHNESS"; // the document is older than maxAgeMs, or from the future

export class NitroAttestationError extends Error {
  constructor(
    readonly check: NitroCheck,
    message: string,
  ) {
    super(`Nitro attestation check ${check} failed: ${message}`);
    this.name = "NitroAttestationError";
  }
}

function fail(check: NitroCheck, message: string): never {
  throw new NitroAttestationError(check, message);
}

/** SHA-256 of the DER of the AWS Nitro Enclaves root certificate G1 (CN=aws.nitro-enclaves, valid to 2049). */
export const AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/**
 * The AWS Nitro Enclaves root certificate G1, as tee/roots/aws-nitro-root.pem holds it (see tee/roots/README.md
 * for its source). Embedded so that the code works wherever it is installed; a test checks the two agree.
 */
export const AWS_NITRO_ROOT_G1_PEM = [
  "-----BEGIN CERTIFICATE-----",
  "MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL",
  "MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD",
  "VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4",
  "MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL",
  "DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG",
  "BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb",
  "48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE",
  "h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF",
  "R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC",
  "MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW",
  "rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N",
  "IwLz3/Y=",
  "-----END CERTIFICATE-----",
].join("\n");

/** COSE algorithm identifier of ES384 (RFC 9053, table 1). */
export const COSE_ALG_ES384 = -35;
const COSE_HEADER_ALG = 1;
const COSE_HEADER_CRIT = 2;
/** CBOR tag of a tagged COSE_Sign1 (RFC 9052, table 1): refused, the NSM writes the untagged form. */
const COSE_SIGN1_TAG = 18;
const CBOR_MAJOR_BYTES = 2;
const CBOR_MAJOR_ARRAY = 4;
const CBOR_MAJOR_MAP = 5;
const CBOR_MAJOR_TAG = 6;
/** An ES384 signature in COSE is r || s, each 48 bytes (RFC 9053 section 2.1). */
const ES384_SIGNATURE_BYTES = 96;

// Size limits from the CDDL in attestation_process.md section 2.1. Its section 3.2.2.2 says 512 bytes for
// user_data and nonce, but real documents carry 1024 (the blocky/nitrite fixtures), so the CDDL's 1024 holds.
const MAX_PAYLOAD_BYTES = 16384;
const MAX_CERT_BYTES = 1024;
const MAX_USER_DATA_BYTES = 1024;
const PCR_COUNT = 32;
/** A PCR is a SHA-384 digest: the document's `digest` is "SHA384", so 32- or 64-byte registers are refused. */
const PCR_BYTES = 48;
const MEASUREMENT_PCRS = [0, 1, 2];
/** Clock skew tolerated between the enclave host and the verifier when maxAgeMs is set. */
const MAX_CLOCK_SKEW_MS = 60_000;

export interface NitroVerifyOptions {
  /** The instant at which every certificate must be valid: the document's own timestamp for an old document. */
  at: Date;
  /** Trust anchor (PEM or DER) that cabundle[0] must equal byte for byte; defaults to the AWS Nitro root G1. */
  root?: string | Uint8Array;
  /** Expected PCR values by index, hex with or without 0x (PCR0 image, PCR1 kernel, PCR2 application). */
  expectedPcrs?: Record<number, string>;
  /** Accept a debug-mode enclave (PCR0-2 all zero: its memory is readable by the host). Default false. */
  allowDebug?: boolean;
  /** Expected nonce (bytes or hex); the document must carry exactly this nonce. */
  expectedNonce?: Uint8Array | string;
  /** When set, refuse a document whose timestamp is more than this before `at` or 60 s after it. */
  maxAgeMs?: number;
}

export interface NitroCertificateInfo {
  der: Uint8Array;
  subject: string;
  /** SHA-256 of the DER, lowercase hex without separators. */
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
}

/** The fields of a document, decoded and type-checked but not verified. */
export interface NitroDocument {
  moduleId: string;
  digest: "SHA384";
  timestamp: Date;
  /** PCR values by index, 0x-prefixed lowercase hex. */
  pcrs: Record<number, string>;
  certificate: Uint8Array;
  cabundle: Uint8Array[];
  publicKey?: Uint8Array;
  userData?: Uint8Array;
  nonce?: Uint8Array;
  /** PCR0, PCR1 and PCR2 all zero: the enclave was started in debug mode. */
  debug: boolean;
  /** The COSE parts, as received: the signature covers the protected header and the payload. */
  cose: { protected: Uint8Array; payload: Uint8Array; signature: Uint8Array };
}

/** A verified document: the decoded fields plus what the chain check established. */
export interface NitroAttestation extends Omit<NitroDocument, "certificate" | "cabundle" | "cose"> {
  /** The leaf certificate whose key signed the document. */
  certificate: NitroCertificateInfo;
  /** cabundle, root first, as verified. */
  chain: NitroCertificateInfo[];
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function bytesFromHex(s: string, what: string): Uint8Array {
  const h = s.startsWith("0x") || s.startsWith("0X") ? s.slice(2) : s;
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h))
    throw new TypeError(`${what} is not a hex string: ${s}`);
  return Buffer.from(h, "hex");
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** A decoded value for an error message: text quoted, integers as they are, anything else by its type. */
function show(v: CborValue): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  return describeCbor(v);
}

function bstr(v: CborValue, what: string, check: NitroCheck, min: number, max: number): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(check, `${what} must be a byte string, found ${describeCbor(v)}`);
  if (v.length < min || v.length > max) {
    fail(check, `${what} must be ${min}..${max} bytes, found ${v.length}`);
  }
  return v;
}

/** An optional field: absent or CBOR null (which the NSM library writes for an unset Option) mean "not set". */
function optionalBstr(m: Map<CborKey, CborValue>, key: string, min: number): Uint8Array | undefined {
  const v = m.get(key);
  return v === undefined || v === null ? undefined : bstr(v, key, "PAYLOAD", min, MAX_USER_DATA_BYTES);
}

const MANDATORY = ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"];
const OPTIONAL = ["public_key", "user_data", "nonce"];

function decodePayload(payload: Uint8Array): Omit<NitroDocument, "cose"> {
  let m: CborValue;
  try {
    m = decodeCbor(payload);
  } catch (e) {
    if (e instanceof CborError) fail("PAYLOAD", `payload is not valid CBOR: ${e.message}`);
    throw e;
  }
  if (!(m instanceof Map)) fail("PAYLOAD", `payload must be a map, found ${describeCbor(m)}`);
  for (const key of m.keys()) {
    if (typeof key !== "string" || (!MANDATORY.includes(key) && !OPTIONAL.includes(key))) {
      fail("PAYLOAD", `unknown field ${JSON.stringify(String(key))}`);
    }
  }
  for (const key of MANDATORY) {
    const v = m.get(key);
    if (v === undefined || v === null) fail("PAYLOAD", `mandatory field ${key} is missing or null`);
  }

  const moduleId = m.get("module_id");
  if (typeof moduleId !== "string" || moduleId.length === 0) {
    fail("PAYLOAD", `module_id must be a non-empty text string, found ${describeCbor(moduleId)}`);
  }
  const digest = m.get("digest");
  if (digest !== "SHA384") fail("PAYLOAD", `digest must be "SHA384", found ${show(digest)}`);
  const timestamp = m.get("timestamp");
  if (typeof timestamp !== "number" || !Number.isSafeInteger(timestamp) || timestamp <= 0) {
    fail("PAYLOAD", `timestamp must be a positive integer (ms since the epoch), found ${show(timestamp)}`);
  }

  const pcrMap = m.get("pcrs");
  if (!(pcrMap instanceof Map)) fail("PAYLOAD", `pcrs must be a map, found ${describeCbor(pcrMap)}`);
  if (pcrMap.size < 1 || pcrMap.size > PCR_COUNT)
    fail("PAYLOAD", `pcrs must hold 1..32 entries, found ${pcrMap.size}`);
  const pcrs: Record<number, string> = {};
  for (const [index, value] of pcrMap) {
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= PCR_COUNT) {
      fail("PAYLOAD", `PCR index must be an integer in 0..31, found ${show(index)}`);
    }
    if (!(value instanceof Uint8Array)) {
      fail(
        "PAYLOAD",
        `PCR${index} must be a byte string of ${PCR_BYTES} bytes, found ${describeCbor(value)}`,
      );
    }
    if (value.length !== PCR_BYTES) {
      fail("PAYLOAD", `PCR${index} is ${value.length} bytes; SHA384 PCRs are ${PCR_BYTES}`);
    }
    pcrs[index] = "0x" + hex(value);
  }

  const certificate = bstr(m.get("certificate"), "certificate", "PAYLOAD", 1, MAX_CERT_BYTES);
  const bundle = m.get("cabundle");
  if (!Array.isArray(bundle) || bundle.length === 0) {
    fail("PAYLOAD", `cabundle must be a non-empty array, found ${describeCbor(bundle)}`);
  }
  const cabundle = bundle.map((c, i) => bstr(c, `cabundle[${i}]`, "PAYLOAD", 1, MAX_CERT_BYTES));

  const isZero = (i: number): boolean => pcrs[i] !== undefined && /^0x0*$/.test(pcrs[i]);
  return {
    moduleId,
    digest: "SHA384",
    timestamp: new Date(timestamp),
    pcrs,
    certificate,
    cabundle,
    publicKey: optionalBstr(m, "public_key", 1),
    userData: optionalBstr(m, "user_data", 0),
    nonce: optionalBstr(m, "nonce", 0),
    debug: MEASUREMENT_PCRS.every(isZero),
  };
}

/**
 * Decodes a document and checks its structure and field types, without checking any signature or
 * certificate: for tools that need to look inside (e.g. to find the timestamp). Never trust its output;
 * use verifyNitroAttestation.
 */
export function decodeNitroAttestation(doc: Uint8Array): NitroDocument {
  let top: CborValue;
  let end: number;
  try {
    ({ value: top, end } = decodeCborPrefix(doc));
  } catch (e) {
    if (e instanceof CborError) fail("CBOR", `document is not valid CBOR: ${e.message}`);
    throw e;
  }
  checkOuterForm(doc, end);
  if (!Array.isArray(top) || top.length !== 4) {
    fail("COSE_STRUCTURE", `COSE_Sign1 must be an array of 4, found ${describeCbor(top)}`);
  }
  const [prot, unprot, payload, signature] = top;
  if (!(prot instanceof Uint8Array)) fail("COSE_STRUCTURE", `protected header must be a byte string`);
  if (!(unprot instanceof Map)) fail("COSE_STRUCTURE", `unprotected header must be a map`);
  if (!(payload instanceof Uint8Array))
    fail("COSE_STRUCTURE", `payload must be a byte string (detached payloads are not supported)`);
  if (!(signature instanceof Uint8Array)) fail("COSE_STRUCTURE", `signature must be a byte string`);
  if (payload.length < 1 || payload.length > MAX_PAYLOAD_BYTES) {
    fail("COSE_STRUCTURE", `payload must be 1..${MAX_PAYLOAD_BYTES} bytes, found ${payload.length}`);
  }

  let headers: CborValue;
  try {
    headers = prot.length === 0 ? new Map() : decodeCbor(prot);
  } catch (e) {
    if (e instanceof CborError) fail("COSE_STRUCTURE", `protected header is not valid CBOR: ${e.message}`);
    throw e;
  }
  if (!(headers instanceof Map)) fail("COSE_STRUCTURE", `protected header must encode a map`);
  const alg = headers.get(COSE_HEADER_ALG);
  if (alg !== COSE_ALG_ES384) {
    fail(
      "COSE_ALGORITHM",
      `protected header alg must be ES384 (-35), found ${alg === undefined ? "none" : show(alg)}`,
    );
  }
  if (headers.has(COSE_HEADER_CRIT)) fail("COSE_ALGORITHM", `critical headers are not supported`);
  if (signature.length !== ES384_SIGNATURE_BYTES) {
    fail(
      "COSE_STRUCTURE",
      `an ES384 signature is ${ES384_SIGNATURE_BYTES} bytes (r || s), found ${signature.length}`,
    );
  }

  return { ...decodePayload(payload), cose: { protected: prot, payload, signature } };
}

/** Bytes of the shortest head for argument `v`: the initial byte, plus 0, 1, 2, 4 or 8 argument bytes. */
function shortestHeadBytes(v: number | bigint): number {
  const b = BigInt(v);
  return b < 24n ? 1 : b <= 0xffn ? 2 : b <= 0xffffn ? 3 : b <= 0xffffffffn ? 5 : 9;
}

/** "non-canonical length" for a head whose argument takes more bytes than it needs, naming where it is. */
function nonCanonical(h: CborHead, what: string, doc: Uint8Array): never {
  const written = Buffer.from(doc.subarray(h.start, h.end)).toString("hex");
  fail(
    "COSE_FORM",
    `non-canonical length: ${what} ${h.argument} is written in ${h.end - h.start} bytes (0x${written}) at byte ` +
      `${h.start}, its shortest form takes ${shortestHeadBytes(h.argument!)}`,
  );
}

/**
 * The outer COSE_Sign1 wrapper, which the signature does not cover, must be the one form the Nitro Security
 * Module writes: an untagged array of 4 with definite, shortest-form lengths (the array's count, the protected
 * header byte string, the payload byte string, the signature byte string), an empty unprotected header map
 * (0xa0), and nothing after it. Anything else is the same attestation in other bytes (a COSE_FORM error
 * naming what differs). Types and sizes are checked afterwards (COSE_STRUCTURE); this only looks at the heads.
 */
function checkOuterForm(doc: Uint8Array, end: number): void {
  if (end !== doc.length) {
    fail("COSE_FORM", `${doc.length - end} trailing bytes after the COSE_Sign1 (at byte ${end})`);
  }
  const top = readCborHead(doc, 0);
  if (top.major === CBOR_MAJOR_TAG) {
    fail(
      "COSE_FORM",
      top.argument === COSE_SIGN1_TAG
        ? "tag 18 wrapper refused: the Nitro Security Module writes an untagged COSE_Sign1, the one form " +
            "accepted"
        : `tag ${top.argument} wrapper refused: a Nitro document is an untagged COSE_Sign1 (and tag ` +
            `${top.argument} is not even COSE_Sign1's 18)`,
    );
  }
  if (top.major !== CBOR_MAJOR_ARRAY) return;
  if (top.argument === undefined) fail("COSE_FORM", `indefinite-length COSE_Sign1 array refused (at byte 0)`);
  if (!top.shortest) nonCanonical(top, "the COSE_Sign1 array's count", doc);
  if (top.argument !== 4) return;
  const members = ["protected header", "unprotected header", "payload", "signature"];
  let pos = top.end;
  for (const [i, name] of members.entries()) {
    const h = readCborHead(doc, pos);
    if (i === 1) {
      if (h.major !== CBOR_MAJOR_MAP) return;
      if (h.argument === undefined) {
        fail("COSE_FORM", `indefinite-length unprotected header map refused (at byte ${h.start})`);
      }
      if (!h.shortest) nonCanonical(h, "the unprotected header map's count", doc);
      if (h.argument !== 0) {
        fail(
          "COSE_FORM",
          `unprotected header must be empty (the Nitro Security Module writes an empty map), found ${h.argument} ` +
            `entries`,
        );
      }
      pos = h.end;
      continue;
    }
    if (h.major !== CBOR_MAJOR_BYTES) return;
    if (h.argument === undefined) {
      fail("COSE_FORM", `indefinite-length ${name} byte string refused (at byte ${h.start})`);
    }
    if (!h.shortest) nonCanonical(h, `the ${name} byte string's length`, doc);
    pos = h.end + Number(h.argument);
  }
}

/** The bytes an ES384 COSE_Sign1 signature covers: ["Signature1", protected, external_aad = h'', payload]. */
export function coseSign1SigStructure(protectedHeader: Uint8Array, payload: Uint8Array): Uint8Array {
  return encodeCbor(["Signature1", protectedHeader, new Uint8Array(0), payload]);
}

let defaultRoot: Uint8Array | undefined;

/** The AWS Nitro Enclaves root G1 (DER), checked against its pinned fingerprint on first use. */
export function awsNitroRootG1(): Uint8Array {
  if (!defaultRoot) {
    const der = new Uint8Array(new X509Certificate(AWS_NITRO_ROOT_G1_PEM).raw);
    const fp = crypto.createHash("sha256").update(der).digest("hex");
    if (fp !== AWS_NITRO_ROOT_G1_SHA256) {
      throw new Error(`AWS_NITRO_ROOT_G1_PEM has SHA-256 ${fp}, expected ${AWS_NITRO_ROOT_G1_SHA256}`);
    }
    defaultRoot = der;
  }
  return defaultRoot;
}

function rootDer(root: string | Uint8Array | undefined): Uint8Array {
  if (root === undefined) return awsNitroRootG1();
  try {
    return new Uint8Array(new X509Certificate(typeof root === "string" ? root : Buffer.from(root)).raw);
  } catch (e) {
    throw new TypeError(`the root option is not a PEM or DER certificate: ${(e as Error).message}`);
  }
}

interface ParsedCert {
  name: string;
  x509: X509Certificate;
  fields: CertificateFields;
  info: NitroCertificateInfo;
}

function parseCert(der: Uint8Array, name: string): ParsedCert {
  let x509: X509Certificate;
  let fields: CertificateFields;
  try {
    x509 = new X509Certificate(Buffer.from(der));
    fields = readCertificateFields(der);
  } catch (e) {
    if (e instanceof DerError || (e as { code?: string }).code?.startsWith("ERR_OSSL")) {
      fail("CERTIFICATE", `${name} is not a DER X.509 certificate: ${(e as Error).message}`);
    }
    throw e;
  }
  if (fields.signatureAlgorithmOid !== OID_ECDSA_WITH_SHA384 || !fields.signatureAlgorithmsMatch) {
    fail("CERTIFICATE", `${name} is not signed with ecdsa-with-SHA384`);
  }
  const key = x509.publicKey;
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "secp384r1") {
    fail("CERTIFICATE", `${name} does not hold a P-384 key`);
  }
  if (fields.otherCriticalExtensions.length > 0) {
    fail(
      "CERTIFICATE",
      `${name} has unsupported critical extensions ${fields.otherCriticalExtensions.join(", ")}`,
    );
  }
  const info: NitroCertificateInfo = {
    der,
    subject: x509.subject.replace(/\n/g, ", "),
    fingerprint256: crypto.createHash("sha256").update(der).digest("hex"),
    notBefore: fields.notBefore,
    notAfter: fields.notAfter,
  };
  return { name, x509, fields, info };
}

/** RFC 5280 basic constraints and key usage, as attestation_process.md 3.2.3.2-3.2.3.3 asks. */
function checkProfile(c: ParsedCert, caCertsBelow: number | undefined): void {
  const bc = c.fields.basicConstraints;
  const ku = c.fields.keyUsage;
  if (caCertsBelow === undefined) {
    // The leaf (target) certificate.
    if (bc?.ca) fail("CERTIFICATE", `${c.name} (the signing certificate) must not be a CA`);
    if (!ku?.digitalSignature) fail("CERTIFICATE", `${c.name} lacks the digitalSignature key usage`);
    return;
  }
  if (!bc?.ca || !bc.critical)
    fail("CERTIFICATE", `${c.name} is not a CA (critical basicConstraints cA=TRUE)`);
  if (!ku?.keyCertSign) fail("CERTIFICATE", `${c.name} lacks the keyCertSign key usage`);
  if (bc.pathLen !== undefined && bc.pathLen < caCertsBelow) {
    fail(
      "CERTIFICATE",
      `${c.name} allows ${bc.pathLen} CA certificates below it, the chain has ${caCertsBelow}`,
    );
  }
}

function checkValidity(c: ParsedCert, at: Date, what: string): void {
  const { notBefore, notAfter } = c.info;
  if (at.getTime() < notBefore.getTime() || at.getTime() > notAfter.getTime()) {
    fail(
      "VALIDITY",
      `${c.name} (${c.info.subject}) is valid ${notBefore.toISOString()} to ${notAfter.toISOString()}, ` +
        `${what} ${at.toISOString()} is outside`,
    );
  }
}

function normaliseHex(s: string, what: string): string {
  return "0x" + hex(bytesFromHex(s, what));
}

/**
 * Verifies an AWS Nitro Enclaves attestation document: COSE_Sign1 structure and ES384 algorithm, payload
 * fields and types, the certificate chain cabundle[0] (which must equal the pinned root) -> ... -> certificate
 * (signatures, names, basic constraints, key usage, validity at `opts.at`), the ES384 signature over the COSE
 * Sig_structure with the leaf key, then the optional policy checks: debug mode, expected PCRs, nonce, age.
 * Returns the decoded fields; throws NitroAttestationError naming the failed check.
 */
export function verifyNitroAttestation(doc: Uint8Array, opts: NitroVerifyOptions): NitroAttestation {
  if (!(opts.at instanceof Date) || Number.isNaN(opts.at.getTime()))
    throw new TypeError("opts.at must be a valid Date");
  const d = decodeNitroAttestation(doc);

  // The chain, root first: cabundle[0], ..., cabundle[n-1], then the signing certificate.
  const bundle = d.cabundle.map((der, i) => parseCert(der, `cabundle[${i}]`));
  const leaf = parseCert(d.certificate, "certificate");
  const pinned = rootDer(opts.root);
  if (!equalBytes(bundle[0].info.der, pinned)) {
    const want = crypto.createHash("sha256").update(pinned).digest("hex");
    fail("ROOT", `cabundle[0] has SHA-256 ${bundle[0].info.fingerprint256}, the pinned root is ${want}`);
  }
  // Each certificate is signed by the one before it (the root by itself), then each meets the profile for
  // its place, and OpenSSL's issuer check (issuer name = subject name, key identifiers, key usage) agrees.
  const chain = [...bundle, leaf];
  const issuerOf = (i: number): ParsedCert => chain[i === 0 ? 0 : i - 1];
  chain.forEach((c, i) => {
    if (!c.x509.verify(issuerOf(i).x509.publicKey)) {
      fail(
        "CHAIN",
        `${c.name} (${c.info.subject}) is not signed by ${issuerOf(i).name} (${issuerOf(i).info.subject})`,
      );
    }
  });
  chain.forEach((c, i) => checkProfile(c, c === leaf ? undefined : bundle.length - 1 - i));
  chain.forEach((c, i) => {
    if (!c.x509.checkIssued(issuerOf(i).x509)) {
      fail("CHAIN", `${c.name} (${c.info.subject}) does not name ${issuerOf(i).name} as its issuer`);
    }
  });
  for (const c of chain) checkValidity(c, opts.at, "the verification time");
  checkValidity(leaf, d.timestamp, "the document timestamp");

  const signed = coseSign1SigStructure(d.cose.protected, d.cose.payload);
  const ok = crypto.verify(
    "sha384",
    signed,
    { key: leaf.x509.publicKey, dsaEncoding: "ieee-p1363" },
    d.cose.signature,
  );
  if (!ok) fail("SIGNATURE", `the ES384 signature does not verify with the key of the signing certificate`);

  // Policy: what the caller asked for beyond authenticity.
  if (d.debug && !opts.allowDebug) {
    fail("DEBUG", `PCR0, PCR1 and PCR2 are all zero: a debug-mode enclave, whose memory the host can read`);
  }
  for (const [index, want] of Object.entries(opts.expectedPcrs ?? {})) {
    const got = d.pcrs[Number(index)];
    const expected = normaliseHex(want, `expectedPcrs[${index}]`);
    if (got === undefined) fail("PCR", `PCR${index} is not in the document`);
    if (got !== expected) fail("PCR", `PCR${index} is ${got}, expected ${expected}`);
  }
  if (opts.expectedNonce !== undefined) {
    const want =
      typeof opts.expectedNonce === "string"
        ? bytesFromHex(opts.expectedNonce, "expectedNonce")
        : opts.expectedNonce;
    if (!d.nonce || !equalBytes(d.nonce, want)) {
      fail("NONCE", `nonce is ${d.nonce ? "0x" + hex(d.nonce) : "absent"}, expected 0x${hex(want)}`);
    }
  }
  if (opts.maxAgeMs !== undefined) {
    const age = opts.at.getTime() - d.timestamp.getTime();
    if (age > opts.maxAgeMs) fail("FRESHNESS", `the document is ${age} ms old, more than ${opts.maxAgeMs}`);
    if (age < -MAX_CLOCK_SKEW_MS) fail("FRESHNESS", `the document's timestamp is ${-age} ms in the future`);
  }

  return {
    moduleId: d.moduleId,
    digest: d.digest,
    timestamp: d.timestamp,
    pcrs: d.pcrs,
    publicKey: d.publicKey,
    userData: d.userData,
    nonce: d.nonce,
    debug: d.debug,
    certificate: leaf.info,
    chain: bundle.map((c) => c.info),
  };
}
