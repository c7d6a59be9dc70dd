import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { OID_ECDSA_SHA256, makeDoc, makePki, p384, pem } from "./self-made-pki";
import {
  AWS_NITRO_ROOT_G1_PEM,
  AWS_NITRO_ROOT_G1_SHA256,
  CborError,
  CborKey,
  CborTag,
  CborValue,
  NitroAttestationError,
  NitroCheck,
  NitroVerifyOptions,
  awsNitroRootG1,
  decodeCbor,
  decodeCborPrefix,
  decodeNitroAttestation,
  encodeCbor,
  readCborHead,
  verifyNitroAttestation,
} from "../../tee";
import { ethers } from "ethers";

const FIXTURES = path.join(__dirname, "..", "fixtures", "tee");
const YEAR_MS = 365 * 24 * 3600 * 1000;

/** The real documents (test/fixtures/tee/SOURCES.md says where each comes from). */
const REAL = {
  blocky: "blocky-nitrite-2024-09-07.cbor",
  blockyDebug: "blocky-nitrite-debug-2024-09-07.cbor",
  cape: "cape-js-2022-09-15.cbor",
  capeKey: "cape-js-key-2022-09-28.cbor",
  capeDebug: "cape-js-debug-2022-07-14.cbor",
  // Production documents of November 2025 and January 2026, whose payload map has indefinite length (0xbf).
  registrar2025: "base-registrar-2025-11-16.cbor",
  validator2026: "base-nitro-validator-2026-01-03.cbor",
};
const load = (name: string): Uint8Array => new Uint8Array(fs.readFileSync(path.join(FIXTURES, name)));

function expectRefused(fn: () => unknown, check: NitroCheck, pattern?: RegExp): NitroAttestationError {
  try {
    fn();
  } catch (e) {
    expect(e, (e as Error).stack).to.be.instanceOf(NitroAttestationError);
    const err = e as NitroAttestationError;
    expect(err.check, err.message).to.equal(check);
    expect(err.message).to.match(new RegExp(`^Nitro attestation check ${check} failed: `));
    if (pattern) expect(err.message).to.match(pattern);
    return err;
  }
  return expect.fail(`expected a NitroAttestationError (${check})`);
}

/** Verifies at the document's own timestamp. */
function verifyAtOwnTime(doc: Uint8Array, extra: Partial<NitroVerifyOptions> = {}) {
  return verifyNitroAttestation(doc, { at: decodeNitroAttestation(doc).timestamp, ...extra });
}

// ---- Rebuilding documents (for tampered copies) --------------------------------------------------------------

interface CoseParts {
  protected: Uint8Array;
  unprotected: Map<CborKey, CborValue>;
  payload: Map<CborKey, CborValue>;
  signature: Uint8Array;
}

function splitCose(doc: Uint8Array): CoseParts {
  const [prot, unprot, payload, signature] = decodeCbor(doc) as CborValue[];
  return {
    protected: prot as Uint8Array,
    unprotected: unprot as Map<CborKey, CborValue>,
    payload: decodeCbor(payload as Uint8Array) as Map<CborKey, CborValue>,
    signature: signature as Uint8Array,
  };
}

function joinCose(p: CoseParts): Uint8Array {
  return encodeCbor([p.protected, p.unprotected, encodeCbor(p.payload), p.signature]);
}

/** Flips one bit of the first occurrence of `needle` in `doc` (lengths and CBOR structure unchanged). */
function flipInside(doc: Uint8Array, needle: Uint8Array): Uint8Array {
  const at = Buffer.from(doc).indexOf(Buffer.from(needle));
  expect(at, "needle found").to.be.greaterThan(0);
  const out = Uint8Array.from(doc);
  out[at + Math.floor(needle.length / 2)] ^= 0x01;
  return out;
}

// ---- Other byte strings for the same attestation (the outer COSE_Sign1 form) -------------------------------

/** The order of the P-384 group: (r, s) and (r, n - s) are both valid ECDSA signatures. */
const P384_N = BigInt(
  "0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
);

/** `doc` with bytes [from, to) replaced by `insert`. */
function splice(doc: Uint8Array, from: number, to: number, insert: ArrayLike<number>): Uint8Array {
  return Uint8Array.from([...doc.subarray(0, from), ...Array.from(insert), ...doc.subarray(to)]);
}

/** A head of `major` carrying `value` in an argument of `bytes` bytes (1, 2, 4 or 8): longer than needed. */
function longHead(major: number, value: number, bytes: 1 | 2 | 4 | 8): number[] {
  const info = { 1: 24, 2: 25, 4: 26, 8: 27 }[bytes];
  const out = [(major << 5) | info];
  for (let i = bytes - 1; i >= 0; i--) out.push(Math.floor(value / 256 ** i) % 256);
  return out;
}

/** The heads of the outer COSE_Sign1 members of a canonical document. */
function outerHeads(doc: Uint8Array) {
  const array = readCborHead(doc, 0);
  const prot = readCborHead(doc, array.end);
  const unprot = readCborHead(doc, prot.end + Number(prot.argument));
  const payload = readCborHead(doc, unprot.end);
  const signature = readCborHead(doc, payload.end + Number(payload.argument));
  return { array, prot, unprot, payload, signature };
}

/** A map encoded with indefinite length: 0xbf, each key and value as encodeCbor writes it, 0xff. */
function indefiniteMap(entries: [CborKey, Uint8Array][]): Uint8Array {
  return Uint8Array.from([0xbf, ...entries.flatMap(([k, v]) => [...encodeCbor(k), ...v]), 0xff]);
}

// ---- Tests ------------------------------------------------------------------------------------------------------

describe("tee/nitro", function () {
  describe("the pinned AWS Nitro Enclaves root G1", function () {
    it("has the SHA-256 fingerprint AWS publishes and is the self-signed aws.nitro-enclaves P-384 root", function () {
      const file = fs.readFileSync(
        path.join(__dirname, "..", "..", "tee", "roots", "aws-nitro-root.pem"),
        "latin1",
      );
      expect(AWS_NITRO_ROOT_G1_PEM).to.equal(file);
      const cert = new crypto.X509Certificate(file);
      expect(cert.fingerprint256.replace(/:/g, "").toLowerCase()).to.equal(AWS_NITRO_ROOT_G1_SHA256);
      expect(AWS_NITRO_ROOT_G1_SHA256).to.equal(
        "641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B".toLowerCase(),
      );
      expect(cert.subject).to.equal("C=US\nO=Amazon\nOU=AWS\nCN=aws.nitro-enclaves");
      expect(cert.issuer).to.equal(cert.subject);
      expect(cert.verify(cert.publicKey)).to.equal(true);
      expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).to.equal("secp384r1");
      expect(Buffer.from(awsNitroRootG1()).equals(cert.raw)).to.equal(true);
    });

    it("is cabundle[0] of every real document", function () {
      for (const f of Object.values(REAL)) {
        expect(Buffer.from(decodeNitroAttestation(load(f)).cabundle[0]).equals(awsNitroRootG1()), f).to.equal(
          true,
        );
      }
    });
  });

  describe("verifyNitroAttestation on real documents", function () {
    it("accepts each production document at its own timestamp and returns its fields", function () {
      const r = verifyAtOwnTime(load(REAL.blocky));
      expect(r.moduleId).to.equal("i-0a22e5c5f24d22174-enc0191cceb4289903f");
      expect(r.digest).to.equal("SHA384");
      expect(r.timestamp.toISOString()).to.equal("2024-09-07T14:37:39.545Z");
      expect(r.debug).to.equal(false);
      expect(Object.keys(r.pcrs)).to.have.length(16);
      expect(r.pcrs[0]).to.match(/^0xe72a46ca80a260fb[0-9a-f]{80}$/);
      // blocky's enclave fills each optional field to its 1024-byte maximum with 0x01.
      for (const v of [r.publicKey, r.userData, r.nonce]) {
        expect(v).to.have.length(1024);
        expect(v!.every((b) => b === 1)).to.equal(true);
      }
      expect(r.chain).to.have.length(4);
      expect(r.chain[0].fingerprint256).to.equal(AWS_NITRO_ROOT_G1_SHA256);
      expect(r.certificate.subject).to.match(/CN=i-0a22e5c5f24d22174-enc0191cceb4289903f\.us-east-1\.aws$/);
      expect(r.certificate.fingerprint256).to.match(/^[0-9a-f]{64}$/);

      const cape = verifyAtOwnTime(load(REAL.cape));
      expect(cape.timestamp.toISOString()).to.equal("2022-09-15T17:43:28.848Z");
      expect(cape.publicKey).to.have.length(32);
      expect(Buffer.from(cape.nonce!).toString("hex")).to.equal("47b5fba6979cbf7e567e2629");
      expect(JSON.parse(Buffer.from(cape.userData!).toString())).to.have.keys(
        "func_checksum",
        "func_hash",
        "key_checksum",
        "key_policy_hash",
      );

      const key = verifyAtOwnTime(load(REAL.capeKey));
      expect(JSON.parse(Buffer.from(key.userData!).toString()).key).to.match(
        /^MIICIjANBgkqhkiG9w0BAQEFAAOCAg8A/,
      );
    });

    it("accepts the same enclave image's PCRs when they are expected, in either hex form", function () {
      const doc = load(REAL.capeKey);
      const { pcrs } = decodeNitroAttestation(doc);
      const r = verifyAtOwnTime(doc, {
        expectedPcrs: { 0: pcrs[0], 1: pcrs[1].slice(2).toUpperCase(), 2: pcrs[2] },
      });
      expect(r.pcrs[1]).to.equal(pcrs[1]);
      // Two documents of the same Cape deployment share the kernel measurement (PCR1) but not the image.
      expect(decodeNitroAttestation(load(REAL.cape)).pcrs[1]).to.equal(pcrs[1]);
      expect(decodeNitroAttestation(load(REAL.cape)).pcrs[0]).to.not.equal(pcrs[0]);
    });

    it("accepts a Buffer and returns fields that do not alias it", function () {
      const buf = fs.readFileSync(path.join(FIXTURES, REAL.cape));
      const r = verifyAtOwnTime(buf);
      const nonce = Buffer.from(r.nonce!).toString("hex");
      buf.fill(0);
      expect(Buffer.from(r.nonce!).toString("hex")).to.equal(nonce);
    });

    it("refuses debug-mode documents (PCR0-2 all zero) unless allowDebug", function () {
      for (const f of [REAL.blockyDebug, REAL.capeDebug]) {
        expectRefused(() => verifyAtOwnTime(load(f)), "DEBUG", /debug-mode enclave/);
        const r = verifyAtOwnTime(load(f), { allowDebug: true });
        expect(r.debug).to.equal(true);
        expect(r.pcrs[0]).to.equal("0x" + "00".repeat(48));
      }
      // cape-js's debug document carries user_data as CBOR null: read as "not set".
      expect(verifyAtOwnTime(load(REAL.capeDebug), { allowDebug: true }).userData).to.equal(undefined);
    });

    it("refuses every document a year after its timestamp, and before its certificates were issued", function () {
      for (const f of Object.values(REAL)) {
        const doc = load(f);
        const ts = decodeNitroAttestation(doc).timestamp.getTime();
        expectRefused(
          () => verifyNitroAttestation(doc, { at: new Date(ts + YEAR_MS), allowDebug: true }),
          "VALIDITY",
          /is outside/,
        );
        expectRefused(
          () => verifyNitroAttestation(doc, { at: new Date(ts - 30 * 24 * 3600_000), allowDebug: true }),
          "VALIDITY",
        );
      }
    });

    it("refuses a flipped payload byte, a flipped signature byte and PCRs swapped inside the document", function () {
      const doc = load(REAL.blocky);
      const d = decodeNitroAttestation(doc);
      const pcr0 = Buffer.from(d.pcrs[0].slice(2), "hex");
      expectRefused(() => verifyAtOwnTime(flipInside(doc, pcr0)), "SIGNATURE", /does not verify/);
      expectRefused(() => verifyAtOwnTime(flipInside(doc, Buffer.from(d.moduleId))), "SIGNATURE");
      expectRefused(() => verifyAtOwnTime(flipInside(doc, d.cose.signature)), "SIGNATURE");

      const parts = splitCose(doc);
      const pcrs = parts.payload.get("pcrs") as Map<CborKey, CborValue>;
      const [p0, p1] = [pcrs.get(0), pcrs.get(1)];
      pcrs.set(0, p1!).set(1, p0!);
      const swapped = joinCose(parts);
      expect(decodeNitroAttestation(swapped).pcrs[0]).to.equal(d.pcrs[1]);
      expectRefused(() => verifyAtOwnTime(swapped), "SIGNATURE");
    });

    it("refuses a document whose PCRs differ from the expected ones, naming the register", function () {
      const doc = load(REAL.cape);
      const { pcrs } = decodeNitroAttestation(doc);
      expectRefused(
        () => verifyAtOwnTime(doc, { expectedPcrs: { 0: pcrs[1] } }),
        "PCR",
        /^.*PCR0 is 0x[0-9a-f]{96}, expected/,
      );
      expectRefused(() => verifyAtOwnTime(doc, { expectedPcrs: { 0: pcrs[0], 2: pcrs[1] } }), "PCR", /PCR2/);
      expectRefused(
        () => verifyAtOwnTime(doc, { expectedPcrs: { 20: pcrs[0] } }),
        "PCR",
        /PCR20 is not in the document/,
      );
      expect(() => verifyAtOwnTime(doc, { expectedPcrs: { 0: "xyz" } })).to.throw(
        TypeError,
        /not a hex string/,
      );
    });

    it("checks the nonce and the age when asked", function () {
      const doc = load(REAL.cape);
      const ts = decodeNitroAttestation(doc).timestamp.getTime();
      verifyAtOwnTime(doc, { expectedNonce: "0x47b5fba6979cbf7e567e2629" });
      verifyAtOwnTime(doc, { expectedNonce: Buffer.from("47b5fba6979cbf7e567e2629", "hex") });
      expectRefused(
        () => verifyAtOwnTime(doc, { expectedNonce: "47b5fba6979cbf7e567e2628" }),
        "NONCE",
        /expected 0x47b5/,
      );
      expectRefused(
        () => verifyAtOwnTime(load(REAL.capeDebug), { allowDebug: true, expectedNonce: "00" }),
        "NONCE",
      );
      verifyNitroAttestation(doc, { at: new Date(ts + 60_000), maxAgeMs: 5 * 60_000 });
      expectRefused(
        () => verifyNitroAttestation(doc, { at: new Date(ts + 600_000), maxAgeMs: 5 * 60_000 }),
        "FRESHNESS",
        /ms old/,
      );
    });

    it("refuses a chain that does not start at the pinned root", function () {
      const doc = load(REAL.blocky);
      const other = makePki(new Date());
      expectRefused(
        () => verifyAtOwnTime(doc, { root: pem(other.rootDer) }),
        "ROOT",
        /cabundle\[0\] has SHA-256 641a0321/,
      );
      expectRefused(() => verifyAtOwnTime(doc, { root: other.rootDer }), "ROOT");

      // cabundle without its root: cabundle[0] is then the first intermediate.
      const parts = splitCose(doc);
      const bundle = parts.payload.get("cabundle") as Uint8Array[];
      parts.payload.set("cabundle", bundle.slice(1));
      expectRefused(() => verifyAtOwnTime(joinCose(parts)), "ROOT");

      // cabundle with an intermediate left out: the next certificate is not issued by the one before it.
      parts.payload.set("cabundle", [bundle[0], bundle[2], bundle[3]]);
      expectRefused(
        () => verifyAtOwnTime(joinCose(parts)),
        "CHAIN",
        /cabundle\[1\] .* is not signed by cabundle\[0\]/,
      );

      // Intermediates in the wrong order.
      parts.payload.set("cabundle", [bundle[0], bundle[2], bundle[1], bundle[3]]);
      expectRefused(() => verifyAtOwnTime(joinCose(parts)), "CHAIN");

      // Another document's leaf certificate (same AWS chain, valid at that time, wrong key): the signature
      // check catches it.
      const debugDoc = splitCose(load(REAL.blockyDebug));
      debugDoc.payload.set("certificate", splitCose(doc).payload.get("certificate")!);
      expectRefused(() => verifyAtOwnTime(joinCose(debugDoc), { allowDebug: true }), "SIGNATURE");
    });

    it("refuses any algorithm but ES384 in the protected header", function () {
      const doc = load(REAL.blocky);
      for (const [header, pattern] of [
        [new Map<CborKey, CborValue>([[1, -7]]), /alg must be ES384 \(-35\), found -7/],
        [new Map<CborKey, CborValue>([[1, -36]]), /found -36/],
        [new Map<CborKey, CborValue>([[1, "ES384"]]), /found "ES384"/],
        [new Map<CborKey, CborValue>([[1, [-35]]]), /found array of 1/],
        [new Map<CborKey, CborValue>(), /found none/],
        [
          new Map<CborKey, CborValue>([
            [1, -35],
            [2, [1]],
          ]),
          /critical headers/,
        ],
      ] as const) {
        const parts = splitCose(doc);
        parts.protected = encodeCbor(header);
        expectRefused(() => verifyAtOwnTime(joinCose(parts)), "COSE_ALGORITHM", pattern);
      }
      const parts = splitCose(doc);
      parts.unprotected.set(1, -35);
      expectRefused(() => verifyAtOwnTime(joinCose(parts)), "COSE_FORM", /unprotected header must be empty/);
    });

    it("refuses malformed CBOR and COSE with a clear message, never a crash", function () {
      const doc = load(REAL.blocky);
      const cases: [Uint8Array, NitroCheck, RegExp][] = [
        [new Uint8Array(), "CBOR", /empty input/],
        [doc.subarray(0, 100), "CBOR", /truncated|exceeds/],
        [doc.subarray(0, doc.length - 1), "CBOR", /truncated|exceeds/],
        [Buffer.concat([doc, Uint8Array.of(0)]), "COSE_FORM", /1 trailing bytes after the COSE_Sign1/],
        [
          Buffer.from("definitely not CBOR"),
          "COSE_FORM",
          /14 trailing bytes after the COSE_Sign1 \(at byte 5\)/,
        ],
        [Uint8Array.of(0x9f, 0x01, 0xff), "COSE_FORM", /indefinite-length COSE_Sign1 array refused/],
        [
          Uint8Array.of(0x9f, 0x01),
          "CBOR",
          /indefinite-length array that starts at byte 0 has no break code/,
        ],
        [Uint8Array.of(0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "CBOR", /exceeds/],
        [Uint8Array.of(0xfb, 0, 0, 0, 0, 0, 0, 0, 0), "CBOR", /floating-point/],
        [Uint8Array.from([...Array(100).fill(0x81), 0x01]), "CBOR", /nesting deeper than 16/],
        [Uint8Array.of(0xa2, 0x01, 0x01, 0x01, 0x02), "CBOR", /duplicate map key/],
        [Uint8Array.of(0x62, 0xc3, 0x28), "CBOR", /not valid UTF-8/],
        [encodeCbor([1, 2, 3]), "COSE_STRUCTURE", /array of 4, found array of 3/],
        [encodeCbor(new CborTag(98, [])), "COSE_FORM", /tag 98 wrapper refused/],
        [encodeCbor(new Map()), "COSE_STRUCTURE", /found map of 0/],
        [encodeCbor([new Uint8Array(), new Map(), null, new Uint8Array(96)]), "COSE_STRUCTURE", /detached/],
        [
          encodeCbor([Uint8Array.of(0xff), new Map(), Uint8Array.of(1), new Uint8Array(96)]),
          "COSE_STRUCTURE",
          /protected header is not valid CBOR/,
        ],
      ];
      for (const [bytes, check, pattern] of cases) {
        expectRefused(() => decodeNitroAttestation(bytes), check, pattern);
        expectRefused(() => verifyNitroAttestation(bytes, { at: new Date() }), check, pattern);
      }
      const parts = splitCose(doc);
      parts.signature = parts.signature.subarray(0, 64);
      expectRefused(
        () => decodeNitroAttestation(joinCose(parts)),
        "COSE_STRUCTURE",
        /96 bytes \(r \|\| s\), found 64/,
      );
      // A DER signature (what crypto.sign returns by default) instead of r || s.
      parts.signature = Uint8Array.from([0x30, 0x64, ...new Uint8Array(100)]);
      expectRefused(() => decodeNitroAttestation(joinCose(parts)), "COSE_STRUCTURE", /found 102/);
    });

    it("refuses payload fields that are missing, null or of the wrong type or size", function () {
      const doc = load(REAL.cape);
      const edits: [(m: Map<CborKey, CborValue>) => void, RegExp][] = [
        [(m) => m.delete("module_id"), /mandatory field module_id is missing/],
        [(m) => m.set("certificate", null), /mandatory field certificate is missing or null/],
        [(m) => m.set("module_id", ""), /module_id must be a non-empty text string/],
        [(m) => m.set("digest", "SHA256"), /digest must be "SHA384", found "SHA256"/],
        [(m) => m.set("timestamp", -5), /timestamp must be a positive integer/],
        [
          (m) => m.set("timestamp", "2022-09-15"),
          /timestamp must be a positive integer .*found "2022-09-15"/,
        ],
        [(m) => m.set("timestamp", 2n ** 64n - 1n), /found 18446744073709551615/],
        [(m) => m.set("digest", 2n ** 64n - 1n), /digest must be "SHA384", found 18446744073709551615/],
        [(m) => m.set("digest", new Map()), /digest must be "SHA384", found map of 0/],
        [(m) => m.set("pcrs", new Map()), /pcrs must hold 1\.\.32 entries, found 0/],
        [
          (m) => m.set("pcrs", new Map([[40, new Uint8Array(48)]])),
          /PCR index must be an integer in 0\.\.31, found 40/,
        ],
        [(m) => m.set("pcrs", new Map([["0", new Uint8Array(48)]])), /PCR index/],
        [(m) => m.set("pcrs", new Map([[0, new Uint8Array(20)]])), /PCR0 is 20 bytes; SHA384 PCRs are 48$/],
        [
          (m) => m.set("pcrs", new Map([[0, "00"]])),
          /PCR0 must be a byte string of 48 bytes, found text string/,
        ],
        [(m) => m.set("cabundle", []), /cabundle must be a non-empty array/],
        [
          (m) => m.set("cabundle", [new Uint8Array(2000)]),
          /cabundle\[0\] must be 1\.\.1024 bytes, found 2000/,
        ],
        [(m) => m.set("user_data", new Uint8Array(1025)), /user_data must be 0\.\.1024 bytes, found 1025/],
        [(m) => m.set("public_key", new Uint8Array(0)), /public_key must be 1\.\.1024 bytes, found 0/],
        [(m) => m.set("nonce", "abc"), /nonce must be a byte string, found text string/],
        [(m) => m.set("extra", 1), /unknown field "extra"/],
        [(m) => m.set(7, 1), /unknown field "7"/],
      ];
      for (const [edit, pattern] of edits) {
        const parts = splitCose(doc);
        edit(parts.payload);
        expectRefused(() => verifyAtOwnTime(joinCose(parts)), "PAYLOAD", pattern);
      }
      const parts = splitCose(doc);
      const bad = encodeCbor([parts.protected, parts.unprotected, Uint8Array.of(0x01), parts.signature]);
      expectRefused(
        () => decodeNitroAttestation(bad),
        "PAYLOAD",
        /payload must be a map, found unsigned integer/,
      );
      const bad2 = encodeCbor([parts.protected, parts.unprotected, Uint8Array.of(0xa1), parts.signature]);
      expectRefused(
        () => decodeNitroAttestation(bad2),
        "PAYLOAD",
        /payload is not valid CBOR: map of length 1 exceeds the 0 bytes left/,
      );
    });
  });

  describe("verifyNitroAttestation on 2025-2026 production documents (indefinite-length payload)", function () {
    const current = [REAL.registrar2025, REAL.validator2026];

    it("accepts each at its own timestamp: payload map written 0xbf ... 0xff, chained to the AWS root", function () {
      const expected = {
        [REAL.registrar2025]: {
          timestamp: "2025-11-16T02:56:57.253Z",
          moduleId: "i-0aad4dae3a2024fc0-enc019a8985ab51e0b9",
          userData: "4537e876b9d20749a51d1042660feac0fdce8a69",
        },
        [REAL.validator2026]: {
          timestamp: "2026-01-03T20:41:07.402Z",
          moduleId: "i-0368fa67e156d6d23-enc019b8596b1a9dad6",
          userData: "69553adc61d6e9fcdecbe1ea49bb2b52a60238e0",
        },
      };
      for (const f of current) {
        const doc = load(f);
        const d = decodeNitroAttestation(doc);
        expect(d.cose.payload[0], f).to.equal(0xbf); // an indefinite-length map
        expect(d.cose.payload[d.cose.payload.length - 1], f).to.equal(0xff); // its break code
        const r = verifyAtOwnTime(doc);
        expect(r.timestamp.toISOString(), f).to.equal(expected[f].timestamp);
        expect(r.moduleId).to.equal(expected[f].moduleId);
        expect(r.debug).to.equal(false);
        expect(Object.keys(r.pcrs)).to.have.length(16);
        for (const v of Object.values(r.pcrs)) expect(v).to.match(/^0x[0-9a-f]{96}$/);
        expect(Buffer.from(r.userData!).toString("hex")).to.equal(expected[f].userData);
        expect([r.publicKey, r.nonce]).to.deep.equal([undefined, undefined]); // written as CBOR null
        expect(r.chain).to.have.length(4);
        expect(r.chain[0].fingerprint256).to.equal(AWS_NITRO_ROOT_G1_SHA256);
        expect(r.certificate.subject).to.match(new RegExp(`CN=${expected[f].moduleId}\\.us-east-1\\.aws$`));
      }
    });

    it("reads the same fields when the payload is re-encoded with definite length, which then fails the signature", function () {
      for (const f of current) {
        const doc = load(f);
        const definite = joinCose(splitCose(doc));
        expect(decodeNitroAttestation(definite).cose.payload[0]).to.equal(0xa9); // a map of 9
        const { cose: _a, ...fromIndefinite } = decodeNitroAttestation(doc);
        const { cose: _b, ...fromDefinite } = decodeNitroAttestation(definite);
        expect(fromDefinite).to.deep.equal(fromIndefinite);
        // The payload's encoding is signed: another encoding of the same map is another (unsigned) payload.
        expectRefused(() => verifyAtOwnTime(definite), "SIGNATURE", /does not verify/);
      }
    });

    it("refuses a flipped payload byte (SIGNATURE) and an expired certificate at a later time (VALIDITY)", function () {
      for (const f of current) {
        const doc = load(f);
        const d = decodeNitroAttestation(doc);
        expectRefused(
          () => verifyAtOwnTime(flipInside(doc, Buffer.from(d.pcrs[0].slice(2), "hex"))),
          "SIGNATURE",
          /the ES384 signature does not verify with the key of the signing certificate/,
        );
        expectRefused(() => verifyAtOwnTime(flipInside(doc, Buffer.from(d.moduleId))), "SIGNATURE");
        // The signing certificate lives about three hours from just before the timestamp.
        const later = new Date(d.timestamp.getTime() + 4 * 3600_000);
        expectRefused(
          () => verifyNitroAttestation(doc, { at: later }),
          "VALIDITY",
          /^.*: certificate \(.*\) is valid .* to .*, the verification time .* is outside$/,
        );
      }
    });

    it("refuses PCRs of 32 or 64 bytes: the digest is SHA384", function () {
      for (const length of [32, 64]) {
        const parts = splitCose(load(REAL.validator2026));
        (parts.payload.get("pcrs") as Map<CborKey, CborValue>).set(3, new Uint8Array(length));
        expectRefused(
          () => decodeNitroAttestation(joinCose(parts)),
          "PAYLOAD",
          new RegExp(`PCR3 is ${length} bytes; SHA384 PCRs are 48$`),
        );
      }
    });

    it("refuses every other byte string of the same attestation, naming what is not canonical", function () {
      const doc = load(REAL.validator2026);
      const h = outerHeads(doc);
      expect([h.array.start, h.prot.start, h.unprot.start, h.payload.start].map((x) => doc[x])).to.deep.equal(
        [0x84, 0x44, 0xa0, 0x59],
      );
      const payloadEnd = h.payload.end + Number(h.payload.argument);
      const forms: [string, Uint8Array, RegExp][] = [
        [
          "tag 18 wrapper",
          Uint8Array.from([0xd2, ...doc]),
          /tag 18 wrapper refused: the Nitro Security Module writes an untagged COSE_Sign1, the one form accepted$/,
        ],
        [
          "unprotected header entry (kid)",
          splice(doc, h.unprot.start, h.unprot.end, [0xa1, 0x04, 0x41, 0x01]),
          /unprotected header must be empty \(the Nitro Security Module writes an empty map\), found 1 entries$/,
        ],
        [
          "indefinite-length empty unprotected header",
          splice(doc, h.unprot.start, h.unprot.end, [0xbf, 0xff]),
          /indefinite-length unprotected header map refused \(at byte 6\)$/,
        ],
        [
          "outer array count in 1 extra byte",
          splice(doc, 0, 1, longHead(4, 4, 1)),
          /non-canonical length: the COSE_Sign1 array's count 4 is written in 2 bytes \(0x9804\) at byte 0, its shortest form takes 1$/,
        ],
        [
          "protected header length in 1 extra byte",
          splice(doc, h.prot.start, h.prot.end, longHead(2, 4, 1)),
          /non-canonical length: the protected header byte string's length 4 is written in 2 bytes \(0x5804\) at byte 1, its shortest form takes 1$/,
        ],
        [
          "unprotected header count in 1 extra byte",
          splice(doc, h.unprot.start, h.unprot.end, longHead(5, 0, 1)),
          /non-canonical length: the unprotected header map's count 0 is written in 2 bytes \(0xb800\) at byte 6/,
        ],
        [
          "payload length in 4 bytes",
          splice(doc, h.payload.start, h.payload.end, longHead(2, Number(h.payload.argument), 4)),
          /non-canonical length: the payload byte string's length 4374 is written in 5 bytes \(0x5a00001116\) at byte 7, its shortest form takes 3$/,
        ],
        [
          "payload length in 8 bytes",
          splice(doc, h.payload.start, h.payload.end, longHead(2, Number(h.payload.argument), 8)),
          /non-canonical length: the payload byte string's length 4374 is written in 9 bytes/,
        ],
        [
          "signature length in 2 bytes",
          splice(doc, h.signature.start, h.signature.end, longHead(2, 96, 2)),
          /non-canonical length: the signature byte string's length 96 is written in 3 bytes \(0x590060\) at byte 4384, its shortest form takes 2$/,
        ],
        [
          "payload as an indefinite-length byte string of one chunk",
          Uint8Array.from([
            ...doc.subarray(0, h.payload.start),
            0x5f,
            ...doc.subarray(h.payload.start, payloadEnd),
            0xff,
            ...doc.subarray(payloadEnd),
          ]),
          /indefinite-length payload byte string refused \(at byte 7\)$/,
        ],
        [
          "indefinite-length outer array",
          Uint8Array.from([0x9f, ...doc.subarray(1), 0xff]),
          /indefinite-length COSE_Sign1 array refused \(at byte 0\)$/,
        ],
        [
          "a trailing byte",
          Uint8Array.from([...doc, 0x00]),
          /1 trailing bytes after the COSE_Sign1 \(at byte 4482\)$/,
        ],
        ["a trailing CBOR null", Uint8Array.from([...doc, 0xf6]), /1 trailing bytes after the COSE_Sign1/],
      ];
      const hashes = new Set([ethers.keccak256(doc)]);
      for (const [name, form, pattern] of forms) {
        // Each is well-formed CBOR holding the very same protected header, payload and signature, so a lenient
        // verifier would accept it; its keccak256 (the registry's documentHash) differs.
        const { value } = decodeCborPrefix(form);
        const inner = (value instanceof CborTag ? value.value : value) as Uint8Array[];
        expect(
          Buffer.from(inner[2]).equals(Buffer.from(decodeNitroAttestation(doc).cose.payload)),
          name,
        ).to.equal(true);
        hashes.add(ethers.keccak256(form));
        expectRefused(() => decodeNitroAttestation(form), "COSE_FORM", pattern);
        const at = decodeNitroAttestation(doc).timestamp;
        expectRefused(() => verifyNitroAttestation(form, { at }), "COSE_FORM", pattern);
      }
      expect(hashes.size).to.equal(forms.length + 1);
    });

    it("still accepts the (r, n - s) twin of a signature: ECDSA malleability, which no outer-form rule removes", function () {
      // The NSM does not normalise s (both real documents here carry s > n/2), so a low-s rule would refuse
      // genuine documents; docs/tee.md ("Open") says what this means for documentHash.
      const doc = load(REAL.validator2026);
      const sig = decodeNitroAttestation(doc).cose.signature;
      const s = BigInt("0x" + Buffer.from(sig.subarray(48)).toString("hex"));
      expect(s > P384_N / 2n).to.equal(true);
      const twinS = Buffer.from((P384_N - s).toString(16).padStart(96, "0"), "hex");
      const twin = splice(doc, doc.length - 48, doc.length, twinS);
      expect(verifyAtOwnTime(twin).timestamp.toISOString()).to.equal("2026-01-03T20:41:07.402Z");
      expect(ethers.keccak256(twin)).to.not.equal(ethers.keccak256(doc));
    });
  });

  describe("verifyNitroAttestation on self-made documents (own P-384 PKI)", function () {
    const now = new Date("2026-01-01T00:00:00Z");

    it("returns public_key, user_data and nonce exactly; refuses the tag-18 form of the same document", function () {
      const pki = makePki(now);
      // What a node would bind: a secp256k1 public key (uncompressed, 65 bytes) and a task-registry address.
      const ecdh = crypto.createECDH("secp256k1");
      ecdh.generateKeys();
      const publicKey = new Uint8Array(ecdh.getPublicKey());
      const userData = Uint8Array.from(Buffer.from("0x5FbDB2315678afecb367f032d93F642f64180aa3"));
      const nonce = new Uint8Array(crypto.randomBytes(32));
      expectRefused(
        () =>
          decodeNitroAttestation(makeDoc(pki, { timestamp: now, publicKey, userData, nonce, tagged: true })),
        "COSE_FORM",
        /^.*: tag 18 wrapper refused: the Nitro Security Module writes an untagged COSE_Sign1/,
      );
      {
        const doc = makeDoc(pki, { timestamp: now, publicKey, userData, nonce });
        const r = verifyNitroAttestation(doc, { at: now, root: pem(pki.rootDer), expectedNonce: nonce });
        expect(Buffer.from(r.publicKey!).equals(publicKey)).to.equal(true);
        expect(r.publicKey![0]).to.equal(0x04);
        expect(Buffer.from(r.userData!).toString()).to.equal("0x5FbDB2315678afecb367f032d93F642f64180aa3");
        expect(Buffer.from(r.nonce!).equals(nonce)).to.equal(true);
        expect(r.chain.map((c) => c.subject)).to.deep.equal(["CN=test root", "CN=interm 1", "CN=interm 2"]);
        expect(r.certificate.fingerprint256).to.equal(
          crypto.createHash("sha256").update(pki.leaf).digest("hex"),
        );
        // Self-made documents are not AWS's: refused against the default root.
        expectRefused(() => verifyNitroAttestation(doc, { at: now }), "ROOT");
      }
      const bare = verifyNitroAttestation(makeDoc(pki, { timestamp: now }), { at: now, root: pki.rootDer });
      expect([bare.publicKey, bare.userData, bare.nonce]).to.deep.equal([undefined, undefined, undefined]);
    });

    it("refuses a signature by a key other than the leaf's, and an altered payload", function () {
      const pki = makePki(now);
      const doc = makeDoc({ ...pki, leafKey: p384().privateKey }, { timestamp: now });
      expectRefused(() => verifyNitroAttestation(doc, { at: now, root: pki.rootDer }), "SIGNATURE");
      const good = makeDoc(pki, { timestamp: now, userData: Buffer.from("output hash 1") });
      const forged = flipInside(good, Buffer.from("output hash 1"));
      expectRefused(() => verifyNitroAttestation(forged, { at: now, root: pki.rootDer }), "SIGNATURE");
    });

    it("refuses certificates that break the profile: CA flags, key usage, path length, algorithm, key", function () {
      const at = { at: now };
      const cases: [Parameters<typeof makePki>[1], RegExp][] = [
        [{ leaf: { ca: true } }, /certificate \(the signing certificate\) must not be a CA/],
        [{ leaf: { keyUsage: 0x06 } }, /certificate lacks the digitalSignature key usage/],
        [{ interm2: { ca: false } }, /cabundle\[2\] is not a CA/],
        [{ interm2: { keyUsage: 0x80 } }, /cabundle\[2\] lacks the keyCertSign key usage/],
        [{ leaf: { sigOid: OID_ECDSA_SHA256 } }, /certificate is not signed with ecdsa-with-SHA384/],
        [
          { leaf: { publicKey: crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey } },
          /certificate does not hold a P-384 key/,
        ],
        [{ interm1: { pathLen: 0 } }, /cabundle\[1\] allows 0 CA certificates below it, the chain has 1/],
      ];
      for (const [overrides, pattern] of cases) {
        const pki = makePki(now, overrides);
        expectRefused(
          () => verifyNitroAttestation(makeDoc(pki, { timestamp: now }), { ...at, root: pki.rootDer }),
          "CERTIFICATE",
          pattern,
        );
      }
      // Signed by the right key but naming another issuer.
      const renamed = makePki(now, { leaf: { issuer: "someone else" } });
      expectRefused(
        () => verifyNitroAttestation(makeDoc(renamed, { timestamp: now }), { ...at, root: renamed.rootDer }),
        "CHAIN",
        /certificate \(CN=test enclave\) does not name cabundle\[2\] as its issuer/,
      );
      // A cabundle entry that is not a certificate at all.
      const pki = makePki(now);
      const parts = splitCose(makeDoc(pki, { timestamp: now }));
      parts.payload.set("cabundle", [pki.cabundle[0], new Uint8Array(200)]);
      expectRefused(
        () => verifyNitroAttestation(joinCose(parts), { ...at, root: pki.rootDer }),
        "CERTIFICATE",
        /cabundle\[1\] is not a DER X\.509 certificate/,
      );
    });

    it("refuses a document from the future when maxAgeMs is set", function () {
      const pki = makePki(now);
      const doc = makeDoc(pki, { timestamp: new Date(now.getTime() + 90_000) });
      verifyNitroAttestation(doc, { at: now, root: pki.rootDer });
      expectRefused(
        () => verifyNitroAttestation(doc, { at: now, root: pki.rootDer, maxAgeMs: 300_000 }),
        "FRESHNESS",
        /timestamp is 90000 ms in the future/,
      );
    });

    it("refuses a leaf whose validity window does not contain the document's timestamp", function () {
      const pki = makePki(now);
      const doc = makeDoc(pki, { timestamp: new Date(now.getTime() - 2 * 3600_000) });
      expectRefused(
        () => verifyNitroAttestation(doc, { at: now, root: pki.rootDer }),
        "VALIDITY",
        /the document timestamp/,
      );
    });
  });

  describe("tee/cbor", function () {
    it("round-trips integers at every argument width and both signs", function () {
      const values: (number | bigint)[] = [
        0,
        1,
        23,
        24,
        255,
        256,
        65535,
        65536,
        2 ** 32 - 1,
        2 ** 32,
        Number.MAX_SAFE_INTEGER,
      ];
      const all = [...values, ...values.map((v) => -BigInt(v) - 1n), 2n ** 64n - 1n, -(2n ** 64n)];
      for (const v of all) {
        const back = decodeCbor(encodeCbor(v));
        expect(BigInt(back as number | bigint), String(v)).to.equal(BigInt(v));
      }
      expect(encodeCbor(23)).to.deep.equal(Uint8Array.of(0x17));
      expect(encodeCbor(24)).to.deep.equal(Uint8Array.of(0x18, 0x18));
      expect(encodeCbor(-35)).to.deep.equal(Uint8Array.of(0x38, 0x22));
      expect(decodeCbor(encodeCbor(2n ** 64n - 1n))).to.equal(2n ** 64n - 1n);
    });

    it("decodes the structures a Nitro document uses and reports offsets", function () {
      const value = new Map<CborKey, CborValue>([
        ["a", [Uint8Array.of(1, 2), "ü", null, true, false, undefined]],
        [-1, new CborTag(18, new Map())],
      ]);
      expect(decodeCbor(encodeCbor(value))).to.deep.equal(value);
      try {
        decodeCbor(Uint8Array.of(0x82, 0x01, 0xf9, 0, 0));
        expect.fail("expected a CborError");
      } catch (e) {
        expect(e).to.be.instanceOf(CborError);
        expect((e as CborError).offset).to.equal(2);
        expect((e as Error).message).to.equal("floating-point values are not supported (at byte 2)");
      }
      expect(() => decodeCbor(Uint8Array.of(0xa1, 0x40, 0x01))).to.throw(
        CborError,
        /map key of type byte string/,
      );
    });

    /** The CborError message (without the offset) and offset of decoding `hex`. */
    function refusal(hex: string): { message: string; offset: number } {
      try {
        decodeCbor(Buffer.from(hex, "hex"));
      } catch (e) {
        expect(e, hex).to.be.instanceOf(CborError);
        return {
          message: (e as Error).message.replace(/ \(at byte \d+\)$/, ""),
          offset: (e as CborError).offset,
        };
      }
      return expect.fail(`expected ${hex} to be refused`);
    }

    it("decodes indefinite-length maps, arrays, byte strings and text strings, alone and nested", function () {
      const cases: [string, CborValue][] = [
        ["9fff", []],
        ["bfff", new Map()],
        ["9f0102ff", [1, 2]],
        ["9f018202039f0405ffff", [1, [2, 3], [4, 5]]],
        [
          "bf616101616282029f0304ffff",
          new Map<CborKey, CborValue>([
            ["a", 1],
            ["b", [2, [3, 4]]],
          ]),
        ],
        ["a1616bbf0102ff", new Map<CborKey, CborValue>([["k", new Map<CborKey, CborValue>([[1, 2]])]])],
        ["5fff", new Uint8Array(0)],
        ["5f420102410340ff", Uint8Array.of(1, 2, 3)],
        ["5f410140ff", Uint8Array.of(1)],
        ["7fff", ""],
        ["7f62c3bc6161ff", "üa"],
        ["7f657374726561646d696e67ff", "streaming"],
      ];
      for (const [hex, want] of cases) expect(decodeCbor(Buffer.from(hex, "hex")), hex).to.deep.equal(want);
    });

    it("decodes a real payload map re-encoded with indefinite lengths to the same value", function () {
      const payload = decodeNitroAttestation(load(REAL.cape)).cose.payload;
      const definite = decodeCbor(payload) as Map<CborKey, CborValue>;
      const entries: [CborKey, Uint8Array][] = [...definite].map(([k, v]) => {
        if (k === "pcrs") {
          return [k, indefiniteMap([...(v as Map<CborKey, CborValue>)].map(([i, p]) => [i, encodeCbor(p)]))];
        }
        if (k === "cabundle") {
          return [k, Uint8Array.from([0x9f, ...(v as CborValue[]).flatMap((c) => [...encodeCbor(c)]), 0xff])];
        }
        if (k === "module_id") {
          // A text string in chunks of 5 bytes (module ids are ASCII, so no character is split).
          const text = Buffer.from(v as string);
          const chunks = [];
          for (let i = 0; i < text.length; i += 5)
            chunks.push(...encodeCbor(text.subarray(i, i + 5).toString()));
          return [k, Uint8Array.from([0x7f, ...chunks, 0xff])];
        }
        if (k === "certificate") {
          const der = v as Uint8Array;
          const half = der.length >> 1;
          const chunks = [...encodeCbor(der.subarray(0, half)), ...encodeCbor(der.subarray(half))];
          return [k, Uint8Array.from([0x5f, ...chunks, 0xff])];
        }
        return [k, encodeCbor(v)];
      });
      const indefinite = indefiniteMap(entries);
      expect(indefinite[0]).to.equal(0xbf);
      expect(indefinite.length).to.be.greaterThan(payload.length);
      expect(decodeCbor(indefinite)).to.deep.equal(definite);
    });

    it("keeps the depth, size and duplicate-key limits for indefinite-length items", function () {
      expect(refusal("9f".repeat(100) + "ff".repeat(100)).message).to.equal("nesting deeper than 16");
      expect(refusal("bf01".repeat(40) + "00" + "ff".repeat(40)).message).to.equal("nesting deeper than 16");
      // 16 levels of indefinite arrays are fine; a string chunk one level below is the 17th.
      expect(decodeCbor(Buffer.from("9f".repeat(16) + "ff".repeat(16), "hex"))).to.be.an("array");
      expect(refusal("9f".repeat(16) + "5f4101ff" + "ff".repeat(16)).message).to.equal(
        "nesting deeper than 16",
      );
      expect(refusal("bf01020103ff")).to.deep.equal({ message: 'duplicate map key "1"', offset: 3 });
      expect(refusal("bf616b01616b02ff").message).to.equal('duplicate map key "k"');
      // Claimed lengths inside indefinite items are checked against the bytes left before anything is allocated.
      for (const hex of [
        "9f5bffffffffffffffffff",
        "5f5b001fffffffffffffff",
        "bf615b7b7fffffffffffffff00ff",
      ]) {
        const t = process.hrtime.bigint();
        expect(refusal(hex).message, hex).to.match(/of length \d+ exceeds the \d+ bytes left$/);
        expect(Number(process.hrtime.bigint() - t) / 1e6, "ms").to.be.below(50);
      }
      expect(refusal("5f5a00010000ff").message).to.equal(
        "byte string chunk of length 65536 exceeds the 1 bytes left",
      );
    });

    it("refuses an unterminated indefinite-length item, naming where it starts", function () {
      expect(refusal("9f0102")).to.deep.equal({
        message: "truncated input: the indefinite-length array that starts at byte 0 has no break code",
        offset: 3,
      });
      expect(refusal("82019f").message).to.equal(
        "truncated input: the indefinite-length array that starts at byte 2 has no break code",
      );
      expect(refusal("bf0102").message).to.match(
        /indefinite-length map that starts at byte 0 has no break code$/,
      );
      expect(refusal("5f4101").message).to.match(
        /indefinite-length byte string that starts at byte 0 has no break/,
      );
      expect(refusal("7f").message).to.match(
        /indefinite-length text string that starts at byte 0 has no break/,
      );
      expect(refusal("9f9fff").message).to.match(/array that starts at byte 0 has no break code$/);
    });

    it("refuses a break code outside an indefinite-length item, and where a map value belongs", function () {
      expect(refusal("ff")).to.deep.equal({
        message: "unexpected break code: no indefinite-length item is open here",
        offset: 0,
      });
      expect(refusal("8201ff").message).to.equal(
        "unexpected break code: no indefinite-length item is open here",
      );
      expect(refusal("a101ff")).to.deep.equal({
        message: 'break code where the value of map key "1" belongs',
        offset: 2,
      });
      expect(refusal("bf01ff").message).to.equal('break code where the value of map key "1" belongs');
      expect(refusal("9f01ffff")).to.deep.equal({ message: "1 trailing bytes after the item", offset: 3 });
      // Indefinite length has no meaning for integers and tags (RFC 8949 section 3.2.4).
      expect(refusal("1f").message).to.equal("a unsigned integer cannot have an indefinite length");
      expect(refusal("3f").message).to.equal("a negative integer cannot have an indefinite length");
      expect(refusal("df01").message).to.equal("a tag cannot have an indefinite length");
    });

    it("refuses nested indefinite-length strings and chunks of another type (RFC 8949 section 3.2.3)", function () {
      expect(refusal("5f5f4101ffff")).to.deep.equal({
        message:
          "an indefinite-length byte string cannot be a chunk of an indefinite-length byte string (RFC 8949 section 3.2.3)",
        offset: 1,
      });
      expect(refusal("7f7f6161ffff").message).to.match(/^an indefinite-length text string cannot be a chunk/);
      expect(refusal("5f6161ff").message).to.equal(
        "a chunk of an indefinite-length byte string must be a byte string, found a text string",
      );
      expect(refusal("7f4161ff").message).to.equal(
        "a chunk of an indefinite-length text string must be a text string, found a byte string",
      );
      expect(refusal("5f01ff").message).to.match(/must be a byte string, found a unsigned integer$/);
      expect(refusal("5f4101f6ff").message).to.match(/found a simple value or float$/);
      expect(refusal("5f42010241034000ff").message).to.match(/found a unsigned integer$/);
      // A UTF-8 character split across two chunks: each chunk must itself be valid UTF-8.
      expect(refusal("7f61c361bcff")).to.deep.equal({ message: "text string is not valid UTF-8", offset: 1 });
    });

    it("reads heads and says whether each is in its shortest form", function () {
      const head = (hex: string) => readCborHead(Buffer.from(hex, "hex"), 0);
      expect(head("17")).to.include({ major: 0, argument: 23, end: 1, shortest: true });
      expect(head("1817")).to.include({ argument: 23, end: 2, shortest: false });
      expect(head("1818")).to.include({ argument: 24, shortest: true });
      expect(head("5805")).to.include({ major: 2, argument: 5, shortest: false });
      expect(head("590100")).to.include({ argument: 256, end: 3, shortest: true });
      expect(head("5900ff")).to.include({ argument: 255, shortest: false });
      expect(head("5a00010000")).to.include({ argument: 65536, end: 5, shortest: true });
      expect(head("5a0000ffff")).to.include({ shortest: false });
      expect(head("5b0000000100000000")).to.include({ argument: 2 ** 32, end: 9, shortest: true });
      expect(head("5b00000000ffffffff")).to.include({ shortest: false });
      expect(head("bf")).to.include({ major: 5, argument: undefined, end: 1, shortest: true });
      expect(head("a0")).to.include({ major: 5, argument: 0, shortest: true });
      expect(head("d2")).to.include({ major: 6, argument: 18 });
      expect(() => head("1c")).to.throw(CborError, /reserved additional information value 28/);
      expect(() => head("59")).to.throw(CborError, /truncated input/);
    });
  });
});
