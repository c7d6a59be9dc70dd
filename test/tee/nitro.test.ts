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
  decodeNitroAttestation,
  encodeCbor,
  verifyNitroAttestation,
} from "../../tee";

const FIXTURES = path.join(__dirname, "..", "fixtures", "tee");
const YEAR_MS = 365 * 24 * 3600 * 1000;

/** The real documents (test/fixtures/tee/SOURCES.md says where each comes from). */
const REAL = {
  blocky: "blocky-nitrite-2024-09-07.cbor",
  blockyDebug: "blocky-nitrite-debug-2024-09-07.cbor",
  cape: "cape-js-2022-09-15.cbor",
  capeKey: "cape-js-key-2022-09-28.cbor",
  capeDebug: "cape-js-debug-2022-07-14.cbor",
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
      expectRefused(() => verifyAtOwnTime(joinCose(parts)), "COSE_ALGORITHM", /unprotected/);
    });

    it("refuses malformed CBOR and COSE with a clear message, never a crash", function () {
      const doc = load(REAL.blocky);
      const cases: [Uint8Array, NitroCheck, RegExp][] = [
        [new Uint8Array(), "CBOR", /empty input/],
        [doc.subarray(0, 100), "CBOR", /truncated|exceeds/],
        [doc.subarray(0, doc.length - 1), "CBOR", /truncated|exceeds/],
        [Buffer.concat([doc, Uint8Array.of(0)]), "CBOR", /1 trailing bytes/],
        [Buffer.from("definitely not CBOR"), "CBOR", /trailing bytes|exceeds|not supported/],
        [Uint8Array.of(0x9f, 0x01, 0xff), "CBOR", /indefinite-length/],
        [Uint8Array.of(0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "CBOR", /exceeds/],
        [Uint8Array.of(0xfb, 0, 0, 0, 0, 0, 0, 0, 0), "CBOR", /floating-point/],
        [Uint8Array.from([...Array(100).fill(0x81), 0x01]), "CBOR", /nesting deeper than 16/],
        [Uint8Array.of(0xa2, 0x01, 0x01, 0x01, 0x02), "CBOR", /duplicate map key/],
        [Uint8Array.of(0x62, 0xc3, 0x28), "CBOR", /not valid UTF-8/],
        [encodeCbor([1, 2, 3]), "COSE_STRUCTURE", /array of 4, found array of 3/],
        [encodeCbor(new CborTag(98, [])), "COSE_STRUCTURE", /tag 98 is not COSE_Sign1/],
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
        [
          (m) => m.set("pcrs", new Map([[0, new Uint8Array(20)]])),
          /PCR0 must be a byte string of 32, 48 or 64 bytes/,
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

  describe("verifyNitroAttestation on self-made documents (own P-384 PKI)", function () {
    const now = new Date("2026-01-01T00:00:00Z");

    it("returns public_key, user_data and nonce exactly, tagged or untagged", function () {
      const pki = makePki(now);
      // What a node would bind: a secp256k1 public key (uncompressed, 65 bytes) and a task-registry address.
      const ecdh = crypto.createECDH("secp256k1");
      ecdh.generateKeys();
      const publicKey = new Uint8Array(ecdh.getPublicKey());
      const userData = Uint8Array.from(Buffer.from("0x5FbDB2315678afecb367f032d93F642f64180aa3"));
      const nonce = new Uint8Array(crypto.randomBytes(32));
      for (const tagged of [false, true]) {
        const doc = makeDoc(pki, { timestamp: now, publicKey, userData, nonce, tagged });
        expect(decodeNitroAttestation(doc).cose.tagged).to.equal(tagged);
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
  });
});
