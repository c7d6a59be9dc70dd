import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "ethers";
import {
  CborKey,
  CborValue,
  DEV_ENCLAVE_MEASUREMENT,
  DevEnclave,
  checkEnclaveKey,
  decodeNitroAttestation,
  enclaveDocumentBinding,
  measurementFromHex,
  nitroMeasurement,
  publicKeyAddress,
  userDataAddress,
  type RegisteredKey,
} from "../../tee";
import { makeDoc, makePki, pem } from "./self-made-pki";

const FIXTURES = path.join(__dirname, "..", "fixtures", "tee");
const load = (name: string): Uint8Array => new Uint8Array(fs.readFileSync(path.join(FIXTURES, name)));

/** The registration a watcher would read for `doc`, consistent unless overridden. */
function registration(doc: Uint8Array, key: string, over: Partial<RegisteredKey> = {}): RegisteredKey {
  const d = decodeNitroAttestation(doc);
  const pcr = (i: number) => ethers.getBytes(d.pcrs[i]);
  return {
    key,
    node: ethers.Wallet.createRandom().address,
    measurement: nitroMeasurement({ 0: pcr(0), 1: pcr(1), 2: pcr(2) }),
    documentHash: ethers.keccak256(doc),
    document: doc,
    registeredAt: new Date(d.timestamp.getTime() + 60_000),
    ...over,
  };
}

describe("tee/check-key", function () {
  describe("measurements", function () {
    it("computes the on-chain measurement of a real document's PCR0-2, from bytes or hex", function () {
      const d = decodeNitroAttestation(load("cape-js-2022-09-15.cbor"));
      const fromHex = measurementFromHex(
        d.pcrs[0],
        d.pcrs[1].slice(2),
        d.pcrs[2].toUpperCase().replace("0X", "0x"),
      );
      expect(fromHex).to.equal(ethers.keccak256(ethers.concat([d.pcrs[0], d.pcrs[1], d.pcrs[2]])));
      // the key document of the same deployment shares PCR1 (kernel) but not the image
      const k = decodeNitroAttestation(load("cape-js-key-2022-09-28.cbor"));
      expect(k.pcrs[1]).to.equal(d.pcrs[1]);
      expect(measurementFromHex(k.pcrs[0], k.pcrs[1], k.pcrs[2])).to.not.equal(fromHex);
      expect(() => measurementFromHex("0x00", d.pcrs[1], d.pcrs[2])).to.throw(/PCR0 must be 48 bytes/);
    });
  });

  describe("the key in a document", function () {
    it("reads an uncompressed, raw or compressed secp256k1 public_key, and a 20-byte or text user_data", function () {
      const w = ethers.Wallet.createRandom();
      const pub = ethers.getBytes(w.signingKey.publicKey);
      expect(publicKeyAddress(pub)).to.equal(w.address);
      expect(publicKeyAddress(pub.slice(1))).to.equal(w.address);
      expect(publicKeyAddress(ethers.getBytes(w.signingKey.compressedPublicKey))).to.equal(w.address);
      expect(userDataAddress(ethers.getBytes(w.address))).to.equal(w.address);
      expect(userDataAddress(Buffer.from(w.address.toLowerCase()))).to.equal(w.address);
    });

    it("finds no secp256k1 key in the real documents (their keys are 32-byte or 1024-byte test values)", function () {
      for (const f of ["blocky-nitrite-2024-09-07.cbor", "cape-js-2022-09-15.cbor"]) {
        const d = decodeNitroAttestation(load(f));
        expect(publicKeyAddress(d.publicKey), f).to.equal(undefined);
        expect(userDataAddress(d.userData), f).to.equal(undefined);
      }
    });
  });

  describe("checkEnclaveKey on real AWS documents", function () {
    const real = [
      "blocky-nitrite-2024-09-07.cbor",
      "cape-js-2022-09-15.cbor",
      "base-registrar-2025-11-16.cbor",
      "base-nitro-validator-2026-01-03.cbor",
    ];
    for (const f of real) {
      it(`${f}: the chain and measurement check out, but the document binds no secp256k1 key`, function () {
        const doc = load(f);
        const key = ethers.Wallet.createRandom().address;
        const c = checkEnclaveKey(registration(doc, key));
        expect(c.kind).to.equal("nitro");
        expect(c.verdict).to.equal("invalid");
        expect(c.problems).to.have.length(1);
        expect(c.problems[0]).to.match(
          new RegExp(`^the document does not name key ${key}: public_key gives no secp256k1 key`),
        );
        expect(c.document.measurement).to.equal(registration(doc, key).measurement);
      });
    }

    it("names the missing binding of a real 2026 document to the chain, registry and node", function () {
      const doc = load("base-nitro-validator-2026-01-03.cbor");
      const key = ethers.Wallet.createRandom().address;
      const registry = ethers.Wallet.createRandom().address;
      const reg = registration(doc, key, { chainId: 8453n, registry });
      const c = checkEnclaveKey(reg);
      expect(c.verdict).to.equal("invalid");
      expect(c.problems).to.have.length(2);
      expect(c.problems[1]).to.equal(
        `the document's nonce (absent) does not bind chain 8453, registry ${registry}, node ${reg.node} and key ` +
          `${key}: expected ${enclaveDocumentBinding({ chainId: 8453n, registry, node: reg.node, key })} = ` +
          `keccak256(abi.encode(keccak256("opg.enclave.document-binding"), chainId, registry, node, key))`,
      );
    });

    it("refuses a registration for another measurement, a debug enclave, and a stale document", function () {
      const doc = load("cape-js-2022-09-15.cbor");
      const key = ethers.Wallet.createRandom().address;
      const other = checkEnclaveKey(registration(doc, key, { measurement: DEV_ENCLAVE_MEASUREMENT }));
      expect(other.problems).to.include(
        `the document's PCR0-2 give measurement ${other.document.measurement}, the key was registered for ` +
          DEV_ENCLAVE_MEASUREMENT,
      );
      const debug = checkEnclaveKey(registration(load("blocky-nitrite-debug-2024-09-07.cbor"), key));
      expect(debug.problems.some((p) => p.startsWith("Nitro attestation check DEBUG failed"))).to.equal(true);
      const d = decodeNitroAttestation(doc);
      const stale = checkEnclaveKey(
        registration(doc, key, { registeredAt: new Date(d.timestamp.getTime() + 2 * 3600_000) }),
      );
      expect(stale.problems.some((p) => /7200 s old when the key was registered/.test(p))).to.equal(true);
    });
  });

  describe("checkEnclaveKey on self-made Nitro-shaped documents (own root)", function () {
    const now = new Date();
    const pki = makePki(now);
    const pcrs = new Map<CborKey, CborValue>([0, 1, 2].map((i) => [i, new Uint8Array(48).fill(i + 1)]));
    const measurement = nitroMeasurement({
      0: pcrs.get(0) as Uint8Array,
      1: pcrs.get(1) as Uint8Array,
      2: pcrs.get(2) as Uint8Array,
    });
    const wallet = ethers.Wallet.createRandom();

    // Where the key is registered: the document's nonce must bind these.
    const where = {
      chainId: 31337n,
      registry: ethers.Wallet.createRandom().address,
      node: ethers.Wallet.createRandom().address,
    };
    const binding = enclaveDocumentBinding({ ...where, key: wallet.address });

    it("is valid when the document names the key in public_key or user_data and its nonce binds the registration", function () {
      const nonce = ethers.getBytes(binding);
      const byKey = makeDoc(pki, {
        timestamp: now,
        pcrs,
        publicKey: ethers.getBytes(wallet.signingKey.publicKey),
        nonce,
      });
      const byData = makeDoc(pki, { timestamp: now, pcrs, userData: ethers.getBytes(wallet.address), nonce });
      for (const doc of [byKey, byData]) {
        const c = checkEnclaveKey(registration(doc, wallet.address, { measurement, ...where }), {
          root: pem(pki.rootDer),
        });
        expect(c.verdict, c.problems.join("; ")).to.equal("valid");
        expect(c.kind).to.equal("nitro");
        expect(c.document.binding).to.equal(binding);
        expect(c.document.nonce).to.equal(binding);
        expect(c.notes).to.deep.equal([]);
      }
    });

    it("refuses a document whose nonce does not bind the chain id, the registry, the node and the key", function () {
      const publicKey = ethers.getBytes(wallet.signingKey.publicKey);
      const other = ethers.Wallet.createRandom().address;
      const nonces: [string, Uint8Array | null][] = [
        ["no nonce", null],
        ["random nonce", ethers.randomBytes(32)],
        [
          "another chain",
          ethers.getBytes(enclaveDocumentBinding({ ...where, chainId: 1n, key: wallet.address })),
        ],
        [
          "another registry",
          ethers.getBytes(enclaveDocumentBinding({ ...where, registry: other, key: wallet.address })),
        ],
        [
          "another node",
          ethers.getBytes(enclaveDocumentBinding({ ...where, node: other, key: wallet.address })),
        ],
        ["another key", ethers.getBytes(enclaveDocumentBinding({ ...where, key: other }))],
        [
          "the binding's preimage hash without the type hash",
          ethers.getBytes(
            ethers.keccak256(
              ethers.AbiCoder.defaultAbiCoder().encode(
                ["uint256", "address", "address", "address"],
                [where.chainId, where.registry, where.node, wallet.address],
              ),
            ),
          ),
        ],
      ];
      for (const [name, nonce] of nonces) {
        const doc = makeDoc(pki, { timestamp: now, pcrs, publicKey, nonce });
        const c = checkEnclaveKey(registration(doc, wallet.address, { measurement, ...where }), {
          root: pki.rootDer,
        });
        expect(c.verdict, name).to.equal("invalid");
        expect(c.problems, name).to.deep.equal([
          `the document's nonce (${nonce ? ethers.hexlify(nonce) : "absent"}) does not bind chain 31337, registry ` +
            `${where.registry}, node ${where.node} and key ${wallet.address}: expected ${binding} = ` +
            `keccak256(abi.encode(keccak256("opg.enclave.document-binding"), chainId, registry, node, key))`,
        ]);
      }
      // The same document registered by another node, or on another chain: its binding no longer matches.
      const doc = makeDoc(pki, { timestamp: now, pcrs, publicKey, nonce: ethers.getBytes(binding) });
      for (const over of [{ node: other }, { chainId: 8453n }, { registry: other }]) {
        const c = checkEnclaveKey(registration(doc, wallet.address, { measurement, ...where, ...over }), {
          root: pki.rootDer,
        });
        expect(
          c.problems.join("; "),
          JSON.stringify(over, (_k, v) => String(v)),
        ).to.match(/^the document's nonce \(0x[0-9a-f]{64}\) does not bind chain/);
      }
      // A caller that does not say where the key was registered gets the binding unchecked, and told so.
      const unplaced = checkEnclaveKey(registration(doc, wallet.address, { measurement, node: where.node }), {
        root: pki.rootDer,
      });
      expect(unplaced.verdict).to.equal("valid");
      expect(unplaced.notes).to.deep.equal([
        "the nonce's binding to the chain, registry and node was not checked: the registration's chainId and " +
          "registry were not given",
      ]);
    });

    it("is invalid against the AWS root, and when the document names another key", function () {
      const doc = makeDoc(pki, {
        timestamp: now,
        pcrs,
        publicKey: ethers.getBytes(wallet.signingKey.publicKey),
      });
      const aws = checkEnclaveKey(registration(doc, wallet.address, { measurement }));
      expect(aws.problems.some((p) => p.startsWith("Nitro attestation check ROOT failed"))).to.equal(true);
      const stranger = ethers.Wallet.createRandom().address;
      const wrong = checkEnclaveKey(registration(doc, stranger, { measurement }), { root: pki.rootDer });
      expect(wrong.problems).to.deep.equal([
        `the document does not name key ${stranger}: public_key gives ${wallet.address}, user_data gives no address`,
      ]);
    });

    it("tells a development document from a Nitro one", function () {
      const dev = DevEnclave.loadOrCreate(fs.mkdtempSync(path.join(os.tmpdir(), "opg-dev-")));
      const doc = dev.attestationDocument();
      const c = checkEnclaveKey({
        key: dev.address,
        node: wallet.address,
        measurement: DEV_ENCLAVE_MEASUREMENT,
        documentHash: ethers.keccak256(doc),
        document: doc,
        registeredAt: new Date(),
      });
      expect(c.verdict, c.problems.join("; ")).to.equal("development");
      const garbage = checkEnclaveKey({
        ...registration(makeDoc(pki, { timestamp: now }), wallet.address),
        document: Uint8Array.of(0xff),
      });
      expect(garbage.verdict).to.equal("invalid");
      expect(garbage.kind).to.equal("unknown");
    });
  });
});
