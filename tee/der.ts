// The few fields of an X.509 certificate (RFC 5280) that Node's X509Certificate does not expose on Node 20
// and that attestation checks need: the signature algorithm (outer and inside the TBS part), the validity
// window as exact instants, and the basicConstraints and keyUsage extensions with their critical flags.
// A minimal DER reader: definite lengths only, every length checked against its enclosing element.
// Node's X509Certificate (OpenSSL) still parses each certificate and verifies its signature; this module only
// reads what it needs and throws DerError on anything it cannot read.

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DerError";
  }
}

interface Tlv {
  tag: number;
  /** The whole element: header and content. */
  der: Uint8Array;
  content: Uint8Array;
}

const TAG_BOOLEAN = 0x01;
const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OCTET_STRING = 0x04;
const TAG_OID = 0x06;
const TAG_UTC_TIME = 0x17;
const TAG_GENERALIZED_TIME = 0x18;
const TAG_SEQUENCE = 0x30;
const TAG_CONTEXT_0 = 0xa0;
const TAG_CONTEXT_3 = 0xa3;

/** ecdsa-with-SHA384, 1.2.840.10045.4.3.3, as DER content bytes. */
export const OID_ECDSA_WITH_SHA384 = "2a8648ce3d040303";
const OID_BASIC_CONSTRAINTS = "551d13"; // 2.5.29.19
const OID_KEY_USAGE = "551d0f"; // 2.5.29.15

function readTlv(buf: Uint8Array, pos: number, what: string): Tlv {
  if (pos + 2 > buf.length) throw new DerError(`${what}: truncated`);
  const tag = buf[pos];
  if ((tag & 0x1f) === 0x1f) throw new DerError(`${what}: multi-byte tags are not supported`);
  let len = buf[pos + 1];
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError(`${what}: unsupported length encoding`);
    if (pos + 2 + n > buf.length) throw new DerError(`${what}: truncated length`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + 2 + i];
    hdr += n;
  }
  const end = pos + hdr + len;
  if (end > buf.length) throw new DerError(`${what}: length ${len} overruns its container`);
  return { tag, der: buf.subarray(pos, end), content: buf.subarray(pos + hdr, end) };
}

function children(content: Uint8Array, what: string): Tlv[] {
  const out: Tlv[] = [];
  let pos = 0;
  while (pos < content.length) {
    const t = readTlv(content, pos, what);
    out.push(t);
    pos += t.der.length;
  }
  return out;
}

function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}`);
  return t;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function parseTime(t: Tlv, what: string): Date {
  const s = Buffer.from(t.content).toString("latin1");
  let m: RegExpMatchArray | null;
  let year: number;
  if (t.tag === TAG_UTC_TIME && (m = s.match(/^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/))) {
    // RFC 5280 4.1.2.5.1: YY >= 50 means 19YY, otherwise 20YY.
    year = Number(m[1]) >= 50 ? 1900 + Number(m[1]) : 2000 + Number(m[1]);
  } else if (
    t.tag === TAG_GENERALIZED_TIME &&
    (m = s.match(/^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/))
  ) {
    year = Number(m[1]);
  } else {
    throw new DerError(`${what}: not a UTCTime or GeneralizedTime in Zulu form: ${JSON.stringify(s)}`);
  }
  const [, , mo, d, h, mi, se] = m.map(Number);
  const ms = Date.UTC(year, mo - 1, d, h, mi, se);
  if (Number.isNaN(ms)) throw new DerError(`${what}: invalid date ${JSON.stringify(s)}`);
  return new Date(ms);
}

export interface CertificateFields {
  /** Hex of the outer signatureAlgorithm OID. */
  signatureAlgorithmOid: string;
  /** True when the algorithm inside the TBS part equals the outer one (RFC 5280 4.1.1.2). */
  signatureAlgorithmsMatch: boolean;
  notBefore: Date;
  notAfter: Date;
  /** Absent when the certificate has no basicConstraints extension. */
  basicConstraints?: { critical: boolean; ca: boolean; pathLen?: number };
  /** Bits of the keyUsage extension (bit 0 = digitalSignature, 5 = keyCertSign); absent when missing. */
  keyUsage?: { critical: boolean; digitalSignature: boolean; keyCertSign: boolean };
  /** OIDs (hex) of critical extensions other than basicConstraints and keyUsage. */
  otherCriticalExtensions: string[];
}

function parseBasicConstraints(value: Uint8Array): { ca: boolean; pathLen?: number } {
  const seq = expectTag(readTlv(value, 0, "basicConstraints"), TAG_SEQUENCE, "basicConstraints");
  let ca = false;
  let pathLen: number | undefined;
  for (const c of children(seq.content, "basicConstraints")) {
    if (c.tag === TAG_BOOLEAN) ca = c.content.length === 1 && c.content[0] !== 0;
    else if (c.tag === TAG_INTEGER) {
      if (c.content.length > 4 || c.content[0] & 0x80) throw new DerError("basicConstraints: bad pathLen");
      pathLen = c.content.reduce((a, b) => a * 256 + b, 0);
    }
  }
  return { ca, pathLen };
}

function parseKeyUsage(value: Uint8Array): { digitalSignature: boolean; keyCertSign: boolean } {
  const bits = expectTag(readTlv(value, 0, "keyUsage"), TAG_BIT_STRING, "keyUsage").content;
  // content[0] is the count of unused bits; named bit n is bit (7 - n % 8) of byte 1 + n / 8.
  const first = bits.length > 1 ? bits[1] : 0;
  return { digitalSignature: (first & 0x80) !== 0, keyCertSign: (first & 0x04) !== 0 };
}

/** Reads the fields above from a DER certificate; throws DerError when the structure is not a certificate. */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const cert = expectTag(readTlv(der, 0, "certificate"), TAG_SEQUENCE, "certificate");
  if (cert.der.length !== der.length) throw new DerError("certificate: trailing bytes");
  const [tbs, sigAlg] = children(cert.content, "certificate");
  expectTag(tbs, TAG_SEQUENCE, "tbsCertificate");
  const outerAlg = expectTag(
    children(expectTag(sigAlg, TAG_SEQUENCE, "signatureAlgorithm").content, "alg")[0],
    TAG_OID,
    "algorithm",
  );

  const fields = children(tbs.content, "tbsCertificate");
  let i = fields[0]?.tag === TAG_CONTEXT_0 ? 1 : 0; // optional explicit version
  expectTag(fields[i++], TAG_INTEGER, "serialNumber");
  const innerAlg = expectTag(fields[i++], TAG_SEQUENCE, "tbs signature");
  i++; // issuer
  const validity = children(expectTag(fields[i++], TAG_SEQUENCE, "validity").content, "validity");
  if (validity.length !== 2) throw new DerError("validity: expected notBefore and notAfter");

  const out: CertificateFields = {
    signatureAlgorithmOid: hex(outerAlg.content),
    signatureAlgorithmsMatch: hex(innerAlg.der) === hex(sigAlg.der),
    notBefore: parseTime(validity[0], "notBefore"),
    notAfter: parseTime(validity[1], "notAfter"),
    otherCriticalExtensions: [],
  };
  const extWrapper = fields.find((f) => f.tag === TAG_CONTEXT_3);
  if (!extWrapper) return out;
  const exts = expectTag(readTlv(extWrapper.content, 0, "extensions"), TAG_SEQUENCE, "extensions");
  for (const ext of children(exts.content, "extensions")) {
    const parts = children(expectTag(ext, TAG_SEQUENCE, "extension").content, "extension");
    const oid = hex(expectTag(parts[0], TAG_OID, "extension id").content);
    const critical = parts[1]?.tag === TAG_BOOLEAN && parts[1].content[0] !== 0;
    const value = expectTag(parts[parts.length - 1], TAG_OCTET_STRING, "extension value").content;
    if (oid === OID_BASIC_CONSTRAINTS) out.basicConstraints = { critical, ...parseBasicConstraints(value) };
    else if (oid === OID_KEY_USAGE) out.keyUsage = { critical, ...parseKeyUsage(value) };
    else if (critical) out.otherCriticalExtensions.push(oid);
  }
  return out;
}
