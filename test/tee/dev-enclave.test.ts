import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { DEFAULT_ECONOMY_PARAMS, deployEconomy, deployMarket } from "../../network/deploy";
import { LOCAL_TEE_SETTINGS } from "../../network/deploy-settings";
import {
  DEV_ATTESTATION_FORMAT,
  DEV_ENCLAVE_MEASUREMENT,
  DEV_ENCLAVE_PCRS,
  DevEnclave,
  checkEnclaveKey,
  decodeCbor,
  enclaveDocumentBinding,
  ensureEnclaveKeyRegistered,
  listKeyRecords,
  nitroMeasurement,
  readKeyRecord,
  standingName,
} from "../../tee";

const NODE_STAKE = ethers.parseEther("5000");
/** The error `p` rejects with (a test failure if it resolves). */
async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => expect.fail("expected a rejection"),
    (e: Error) => e,
  );
}

const stateDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "opg-enclave-"));

/** The market on the in-process chain as a local deployment has it: the development measurement approved,
 * activation delay 0; an EOA `governance` owns the setters. `node` is a staked inference node. */
async function teeFixture() {
  const [deployer, treasury, governance, node, stranger, challenger] = await ethers.getSigners();
  const economy = await deployEconomy(deployer, {
    ...DEFAULT_ECONOMY_PARAMS,
    treasury: treasury.address,
    parameterOwner: governance.address,
  });
  const market = await deployMarket(
    deployer,
    economy,
    { treasury: treasury.address, parameterOwner: governance.address, ...LOCAL_TEE_SETTINGS },
    governance,
  );
  const { token, staking } = economy;
  await token.connect(treasury).transfer(node.address, NODE_STAKE);
  await token.connect(node).approve(await staking.getAddress(), ethers.MaxUint256);
  await staking.connect(node).register(1, "http://node.example:8080");
  await staking.connect(node).stake(NODE_STAKE);
  await token.connect(treasury).transfer(challenger.address, ethers.parseEther("1000"));
  return { ...economy, ...market, deployer, governance, node, stranger, challenger };
}

describe("tee/dev-enclave", function () {
  describe("DevEnclave", function () {
    it("keeps its key in <stateDir>/enclave-key.json, mode 0600, and loads the same key again", function () {
      const dir = stateDir();
      const a = DevEnclave.loadOrCreate(dir);
      const file = path.join(dir, "enclave-key.json");
      expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
      expect(DevEnclave.loadOrCreate(dir).address).to.equal(a.address);
      expect(a.measurement).to.equal(DEV_ENCLAVE_MEASUREMENT);
      expect(JSON.parse(fs.readFileSync(file, "utf8")).address).to.equal(a.address);
    });

    it("signs raw digests that recover to its address", function () {
      const e = DevEnclave.loadOrCreate(stateDir());
      const digest = ethers.keccak256("0x1234");
      expect(ethers.recoverAddress(digest, e.signDigest(digest))).to.equal(e.address);
    });

    it("writes a development attestation document with the fields of a Nitro payload and no signature", function () {
      const e = DevEnclave.loadOrCreate(stateDir());
      const nonce = Uint8Array.of(1, 2, 3);
      const doc = decodeCbor(e.attestationDocument(nonce)) as Map<string, unknown>;
      expect(doc.get("format")).to.equal(DEV_ATTESTATION_FORMAT);
      expect([...doc.keys()]).to.deep.equal([
        "format",
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "public_key",
        "user_data",
        "nonce",
      ]);
      const pcrs = doc.get("pcrs") as Map<number, Uint8Array>;
      expect(nitroMeasurement({ 0: pcrs.get(0)!, 1: pcrs.get(1)!, 2: pcrs.get(2)! })).to.equal(
        DEV_ENCLAVE_MEASUREMENT,
      );
      expect(Buffer.from(pcrs.get(0)!)).to.deep.equal(DEV_ENCLAVE_PCRS[0]);
      expect(ethers.computeAddress(ethers.hexlify(doc.get("public_key") as Uint8Array))).to.equal(e.address);
      expect(ethers.getAddress(ethers.hexlify(doc.get("user_data") as Uint8Array))).to.equal(e.address);
      expect(doc.get("nonce")).to.deep.equal(nonce);
      expect(Math.abs((doc.get("timestamp") as number) - Date.now())).to.be.below(60_000);
    });

    it("refuses a key file without a valid private key, naming the file", function () {
      const dir = stateDir();
      fs.writeFileSync(path.join(dir, "enclave-key.json"), '{"privateKey":"0x12"}');
      expect(() => DevEnclave.loadOrCreate(dir)).to.throw(/enclave-key.json has no valid "privateKey"/);
    });
  });

  describe("ensureEnclaveKeyRegistered", function () {
    it("registers the key (Active at once on a local chain), then leaves a registered key alone", async function () {
      const { enclaves, node } = await loadFixture(teeFixture);
      const enclave = DevEnclave.loadOrCreate(stateDir());
      const lines: string[] = [];
      await ensureEnclaveKeyRegistered({
        enclaves: enclaves.connect(node),
        enclave,
        log: (m) => lines.push(m),
      });
      const [owner, standing] = await enclaves.keyStatus(enclave.address);
      expect(owner).to.equal(node.address);
      expect(standingName(standing)).to.equal("Active");
      const info = await enclaves.keyInfo(enclave.address);
      expect(info.measurement).to.equal(DEV_ENCLAVE_MEASUREMENT);
      expect(info.expiresAt - BigInt(await time.latest())).to.be.closeTo(7n * 24n * 3600n, 5n);

      const before = await ethers.provider.getBlockNumber();
      await ensureEnclaveKeyRegistered({
        enclaves: enclaves.connect(node),
        enclave,
        log: (m) => lines.push(m),
      });
      expect(await ethers.provider.getBlockNumber()).to.equal(before);
      expect(lines[1]).to.match(/is Active, expires at/);
    });

    it("rotates to a new key, keeping the old file, when the key was revoked or runs out", async function () {
      const { enclaves, node } = await loadFixture(teeFixture);
      const dir = stateDir();
      const enclave = DevEnclave.loadOrCreate(dir);
      const e = enclaves.connect(node);
      await ensureEnclaveKeyRegistered({ enclaves: e, enclave, lifetimeSeconds: 4000 });
      const first = enclave.address;
      await e.revokeKey(first);
      await ensureEnclaveKeyRegistered({ enclaves: e, enclave, lifetimeSeconds: 4000 });
      const second = enclave.address;
      expect(second).to.not.equal(first);
      expect(JSON.parse(fs.readFileSync(path.join(dir, "enclave-key.1.json"), "utf8")).address).to.equal(
        first,
      );
      expect(DevEnclave.loadOrCreate(dir).address).to.equal(second);
      expect(standingName((await enclaves.keyStatus(second))[1])).to.equal("Active");

      // less than a quarter of its lifetime left: replaced before it expires
      await time.increase(3500);
      await ensureEnclaveKeyRegistered({ enclaves: e, enclave, lifetimeSeconds: 4000 });
      expect(enclave.address).to.not.equal(second);
      expect(fs.existsSync(path.join(dir, "enclave-key.2.json"))).to.equal(true);
      expect((await listKeyRecords(enclaves, { node: node.address })).map((k) => k.key)).to.deep.equal([
        first,
        second,
        enclave.address,
      ]);
    });

    it("says when the node is not registered, or the measurement is not approved on this chain", async function () {
      const { enclaves, stranger, governance, node } = await loadFixture(teeFixture);
      const enclave = DevEnclave.loadOrCreate(stateDir());
      let err = await failure(ensureEnclaveKeyRegistered({ enclaves: enclaves.connect(stranger), enclave }));
      expect(err.message).to.match(new RegExp(`node ${stranger.address} is not registered in NodeStaking`));

      await enclaves.connect(governance).withdrawMeasurement(DEV_ENCLAVE_MEASUREMENT);
      err = await failure(ensureEnclaveKeyRegistered({ enclaves: enclaves.connect(node), enclave }));
      expect(err.message).to.match(
        new RegExp(
          `enclave measurement ${DEV_ENCLAVE_MEASUREMENT} is not approved on this chain \\(chain id 31337`,
        ),
      );
    });
  });

  describe("checkEnclaveKey on registered keys", function () {
    it("reports a development key as a consistent development attestation, not hardware-backed", async function () {
      const { enclaves, node } = await loadFixture(teeFixture);
      const enclave = DevEnclave.loadOrCreate(stateDir());
      await ensureEnclaveKeyRegistered({ enclaves: enclaves.connect(node), enclave });
      const record = await readKeyRecord(enclaves, enclave.address);
      expect(record.node).to.equal(node.address);
      expect(record.standing).to.equal("Active");
      const check = checkEnclaveKey(record);
      expect(check.verdict, check.problems.join("; ")).to.equal("development");
      expect(check.kind).to.equal("development");
      expect(check.notes[0]).to.match(/^development attestation: not hardware-backed/);
      expect(check.document.measurement).to.equal(DEV_ENCLAVE_MEASUREMENT);
      expect(check.document.publicKeyAddress).to.equal(enclave.address);
      // The nonce binds the chain, the registry, the node and the key.
      expect(check.document.nonce).to.equal(
        enclaveDocumentBinding({
          chainId: 31337n,
          registry: await enclaves.getAddress(),
          node: node.address,
          key: enclave.address,
        }),
      );
      expect(check.document.binding).to.equal(check.document.nonce);
      expect([record.chainId, record.registry]).to.deep.equal([31337n, await enclaves.getAddress()]);
    });

    it("finds a document that names another key, and governance revokes the key on challenge", async function () {
      const { enclaves, token, node, challenger, governance, staking } = await loadFixture(teeFixture);
      const enclave = DevEnclave.loadOrCreate(stateDir());
      const other = DevEnclave.loadOrCreate(stateDir());
      // The node holds `enclave`'s key but publishes `other`'s document: the registry cannot tell.
      const document = other.attestationDocument(undefined, (await time.latest()) * 1000);
      const expiresAt = BigInt(await time.latest()) + 3600n;
      const digest = await enclaves.registrationDigest(
        node.address,
        enclave.address,
        DEV_ENCLAVE_MEASUREMENT,
        ethers.keccak256(document),
        expiresAt,
      );
      await enclaves
        .connect(node)
        .registerKey(
          enclave.address,
          DEV_ENCLAVE_MEASUREMENT,
          expiresAt,
          document,
          enclave.signDigest(digest),
        );
      const check = checkEnclaveKey(await readKeyRecord(enclaves, enclave.address));
      expect(check.verdict).to.equal("invalid");
      expect(check.problems).to.have.length(2);
      expect(check.problems[0]).to.equal(
        `the document does not name key ${enclave.address}: public_key gives ${other.address}, ` +
          `user_data gives ${other.address}`,
      );
      expect(check.problems[1]).to.match(
        /^the document's nonce \(0x[0-9a-f]{64}\) does not bind chain 31337/,
      );

      await token.connect(challenger).approve(await enclaves.getAddress(), await enclaves.challengeBond());
      await enclaves.connect(challenger).challengeKey(enclave.address, check.problems[0]);
      expect((await readKeyRecord(enclaves, enclave.address)).standing).to.equal("Challenged");
      const bonded = (await staking.nodeInfo(node.address)).bonded;
      await enclaves.connect(governance).resolveChallenge(enclave.address, false);
      expect((await readKeyRecord(enclaves, enclave.address)).standing).to.equal("Revoked");
      expect((await staking.nodeInfo(node.address)).bonded).to.be.below(bonded);
    });

    it("finds a tampered document hash and a stale document", async function () {
      const { enclaves, node } = await loadFixture(teeFixture);
      const enclave = DevEnclave.loadOrCreate(stateDir());
      await ensureEnclaveKeyRegistered({ enclaves: enclaves.connect(node), enclave });
      const record = await readKeyRecord(enclaves, enclave.address);
      // Two hours after the document was made (stamped with the chain's clock at registration).
      const late = { ...record, registeredAt: new Date(record.registeredAt.getTime() + 2 * 3600_000) };
      expect(checkEnclaveKey(late).problems[0]).to.match(
        /old when the key was registered \(at most 3600 s\)/,
      );
      expect(checkEnclaveKey(late, { maxDocumentAgeSeconds: 3 * 3600 }).verdict).to.equal("development");
      const tampered = { ...record, documentHash: ethers.ZeroHash };
      expect(checkEnclaveKey(tampered).problems[0]).to.match(
        /^the document hashes to 0x[0-9a-f]{64}, the registry/,
      );
    });

    it("names an unknown key", async function () {
      const { enclaves, stranger } = await loadFixture(teeFixture);
      const err = await failure(readKeyRecord(enclaves, stranger.address));
      expect(err.message).to.match(
        new RegExp(`key ${stranger.address} is not registered in the EnclaveRegistry`),
      );
    });
  });
});
