// A self-made P-384 PKI shaped like AWS's attestation PKI, and documents signed the way the Nitro Security
// Module signs them: for tests that need a document the pinned AWS root does not vouch for (verified against
// this PKI's own root), or one that carries a chosen public_key / user_data.
import crypto from "node:crypto";
import { CborKey, CborTag, CborValue, coseSign1SigStructure, encodeCbor } from "../../tee";

function derLength(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return [0x80 | bytes.length, ...bytes];
}
const tlv = (tag: number, ...content: Uint8Array[]): Uint8Array => {
  const body = Buffer.concat(content);
  return Uint8Array.from([tag, ...derLength(body.length), ...body]);
};
const seq = (...c: Uint8Array[]) => tlv(0x30, ...c);
const oid = (hexContent: string) => tlv(0x06, Buffer.from(hexContent, "hex"));
const OID_CN = "550403";
const OID_ECDSA_SHA384 = "2a8648ce3d040303";
export const OID_ECDSA_SHA256 = "2a8648ce3d040302";
const OID_BASIC_CONSTRAINTS = "551d13";
const OID_KEY_USAGE = "551d0f";
const name = (cn: string) => seq(tlv(0x31, seq(oid(OID_CN), tlv(0x0c, Buffer.from(cn)))));
const time = (d: Date) => tlv(0x18, Buffer.from(d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z"));
const extension = (id: string, critical: boolean, value: Uint8Array) =>
  seq(oid(id), ...(critical ? [tlv(0x01, Uint8Array.of(0xff))] : []), tlv(0x04, value));

export interface CertSpec {
  subject: string;
  issuer: string;
  issuerKey: crypto.KeyObject;
  publicKey: crypto.KeyObject;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  pathLen?: number;
  /** keyUsage first byte: 0x80 digitalSignature, 0x06 keyCertSign|cRLSign. */
  keyUsage: number;
  sigOid?: string;
}

export function makeCert(s: CertSpec): Uint8Array {
  const alg = seq(oid(s.sigOid ?? OID_ECDSA_SHA384));
  const bc = seq(
    ...(s.ca ? [tlv(0x01, Uint8Array.of(0xff))] : []),
    ...(s.pathLen !== undefined ? [tlv(0x02, Uint8Array.of(s.pathLen))] : []),
  );
  const ku = tlv(0x03, Uint8Array.of(0x01, s.keyUsage));
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Uint8Array.of(2))),
    tlv(0x02, Uint8Array.of(0x01, ...crypto.randomBytes(8))),
    alg,
    name(s.issuer),
    seq(time(s.notBefore), time(s.notAfter)),
    name(s.subject),
    new Uint8Array(s.publicKey.export({ format: "der", type: "spki" })),
    tlv(0xa3, seq(extension(OID_BASIC_CONSTRAINTS, true, bc), extension(OID_KEY_USAGE, true, ku))),
  );
  const hash = s.sigOid === OID_ECDSA_SHA256 ? "sha256" : "sha384";
  const sig = crypto.sign(hash, tbs, { key: s.issuerKey, dsaEncoding: "der" });
  return seq(tbs, alg, tlv(0x03, Uint8Array.of(0), sig));
}

export const p384 = () => crypto.generateKeyPairSync("ec", { namedCurve: "secp384r1" });
export const pem = (der: Uint8Array) => new crypto.X509Certificate(Buffer.from(der)).toString();

export interface SelfMadePki {
  rootDer: Uint8Array;
  cabundle: Uint8Array[];
  leaf: Uint8Array;
  leafKey: crypto.KeyObject;
}

/** A root, two intermediates and a leaf shaped like AWS's (pathLen 2, 1, 0), valid around `now`. */
export function makePki(
  now: Date,
  overrides: { leaf?: Partial<CertSpec>; interm1?: Partial<CertSpec>; interm2?: Partial<CertSpec> } = {},
): SelfMadePki {
  const [root, i1, i2, leaf] = [p384(), p384(), p384(), p384()];
  const from = new Date(now.getTime() - 3600_000);
  const to = new Date(now.getTime() + 3600_000);
  const base = { notBefore: from, notAfter: to, ca: true, keyUsage: 0x06 };
  const rootDer = makeCert({
    ...base,
    subject: "test root",
    issuer: "test root",
    issuerKey: root.privateKey,
    publicKey: root.publicKey,
  });
  const i1Der = makeCert({
    ...base,
    subject: "interm 1",
    issuer: "test root",
    issuerKey: root.privateKey,
    publicKey: i1.publicKey,
    pathLen: 1,
    ...overrides.interm1,
  });
  const i2Der = makeCert({
    ...base,
    subject: "interm 2",
    issuer: "interm 1",
    issuerKey: i1.privateKey,
    publicKey: i2.publicKey,
    pathLen: 0,
    ...overrides.interm2,
  });
  const leafDer = makeCert({
    ...base,
    ca: false,
    keyUsage: 0x80,
    subject: "test enclave",
    issuer: "interm 2",
    issuerKey: i2.privateKey,
    publicKey: leaf.publicKey,
    ...overrides.leaf,
  });
  return { rootDer, cabundle: [rootDer, i1Der, i2Der], leaf: leafDer, leafKey: leaf.privateKey };
}

export interface DocSpec {
  timestamp: Date;
  pcrs?: Map<CborKey, CborValue>;
  publicKey?: Uint8Array | null;
  userData?: Uint8Array | null;
  nonce?: Uint8Array | null;
  tagged?: boolean;
  protectedHeader?: Map<CborKey, CborValue>;
}

/** Signs a document the way the Nitro Security Module does. */
export function makeDoc(pki: SelfMadePki, spec: DocSpec): Uint8Array {
  const pcrs =
    spec.pcrs ?? new Map<CborKey, CborValue>([0, 1, 2, 3, 4].map((i) => [i, crypto.randomBytes(48)]));
  const payload = encodeCbor(
    new Map<CborKey, CborValue>([
      ["module_id", "i-0123456789abcdef0-enc0123456789abcdef"],
      ["digest", "SHA384"],
      ["timestamp", spec.timestamp.getTime()],
      ["pcrs", pcrs],
      ["certificate", pki.leaf],
      ["cabundle", pki.cabundle],
      ["public_key", spec.publicKey ?? null],
      ["user_data", spec.userData ?? null],
      ["nonce", spec.nonce ?? null],
    ]),
  );
  const prot = encodeCbor(spec.protectedHeader ?? new Map<CborKey, CborValue>([[1, -35]]));
  const sig = crypto.sign("sha384", coseSign1SigStructure(prot, payload), {
    key: pki.leafKey,
    dsaEncoding: "ieee-p1363",
  });
  const cose: CborValue = [prot, new Map(), payload, new Uint8Array(sig)];
  return encodeCbor(spec.tagged ? new CborTag(18, cose) : cose);
}
