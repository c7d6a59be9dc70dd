import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import * as snarkjs from "snarkjs";
import {
  BundleManifest,
  PUBLISHED_PTAU,
  ZkmlError,
  beaconToBundle,
  checkPtau,
  checkSetup,
  compileModel,
  contributeToBundle,
  hashFile,
  loadManifest,
  proveBundle,
  readZkeyContributions,
  verifyBundle,
} from "../../zkml";
import { mlpSpec } from "../../zkml/onnx/builder";
import { cacheDir } from "../../zkml/prover/paths";
import { opgHere, tmpDir, writeModel } from "./helpers";

const ROOT = path.join(__dirname, "..", "..");
const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function opg(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "opg.js"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function rejection(p: Promise<unknown>): Promise<ZkmlError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(ZkmlError);
    return e as ZkmlError;
  }
  return expect.fail("expected a ZkmlError");
}

/** A 2^8 ptau whose only contribution is a public beacon: it verifies, and anyone can forge with it. */
async function beaconOnlyPtau(dir: string): Promise<string> {
  const curve = await snarkjs.curves.getCurveFromName("bn128");
  const p = (f: string): string => path.join(dir, f);
  await snarkjs.powersOfTau.newAccumulator(curve, 8, p("pot0.ptau"), quiet);
  // a fresh beacon each run, so the file is new and the verification cache is exercised from empty
  const beacon = crypto.randomBytes(32).toString("hex");
  await snarkjs.powersOfTau.beacon(p("pot0.ptau"), p("pot1.ptau"), "public beacon", beacon, 10, quiet);
  await snarkjs.powersOfTau.preparePhase2(p("pot1.ptau"), p("beacon-only.ptau"), quiet);
  return p("beacon-only.ptau");
}

describe("zkml trusted setup: ceremony files and phase-2 contributions", function () {
  this.timeout(120_000);
  const work = tmpDir("opg-ceremony-");
  const model = writeModel(mlpSpec([2, 3, 2], 3), fs.mkdtempSync(path.join(work, "m-")));
  const otherModel = writeModel(mlpSpec([3, 2], 4), fs.mkdtempSync(path.join(work, "o-")));
  let ptau: string;
  let ptauBlake2b: string;
  let published: { power: number; file: string; blake2b: string }[];
  let unpublishedDir: string;
  let unpublished: BundleManifest;
  let log: string[];
  let publishedDir: string;
  let devDir: string;

  before(async function () {
    ptau = await beaconOnlyPtau(work);
    ptauBlake2b = (await hashFile(ptau)).blake2b;
    // stands in for the published ceremony list: the real files are gigabytes and not downloadable here
    published = [{ power: 8, file: "test-ceremony_08.ptau", blake2b: ptauBlake2b }];
    log = [];
    unpublishedDir = path.join(work, "unpublished");
    unpublished = await compileModel(model, unpublishedDir, { ptau, log: (m) => log.push(m) });
    publishedDir = path.join(work, "published");
    await compileModel(model, publishedDir, { ptau, publishedPtau: published });
    devDir = path.join(work, "dev");
    await compileModel(otherModel, devDir, {});
  });

  after(function () {
    fs.rmSync(path.join(cacheDir(), "ptau-verified", `${ptauBlake2b}.json`), { force: true });
    fs.rmSync(work, { recursive: true, force: true });
  });

  describe("phase 1 (--ptau)", function () {
    it("keeps the published list from the snarkjs README: 2^8 to 2^28, blake2b-512", function () {
      expect(PUBLISHED_PTAU.map((p) => p.power)).to.deep.equal([...Array(21)].map((_, i) => i + 8));
      for (const p of PUBLISHED_PTAU) expect(p.blake2b).to.match(/^[0-9a-f]{128}$/);
      expect(PUBLISHED_PTAU.find((p) => p.power === 12)?.blake2b).to.equal(
        "ded2694169b7b08e898f736d5de95af87c3f1a64594013351b1a796dbee393bd825f88f9468c84505ddd11eb0b1465ac9b43b9064aa8ec97f2b73e04758b8a4a",
      );
    });

    it("verifies a beacon-only ptau but does not mark it secure", function () {
      expect(unpublished.ptau).to.include({
        source: "file",
        secure: false,
        trust: "verified-unpublished",
        published: null,
        blake2b: ptauBlake2b,
        power: 8,
      });
      expect(unpublished.ptau?.contributions).to.deep.equal([{ name: "public beacon", type: "beacon" }]);
      expect(log.join("\n")).to.match(/ptau: verifying .*beacon-only\.ptau/);
      expect(log.join("\n")).to.match(/WARNING .*only contributions are public random beacons/);
    });

    it("verifies a ptau once per machine: the result is cached by blake2b", async function () {
      const lines: string[] = [];
      const c = await checkPtau(ptau, { log: (m) => lines.push(m) });
      expect(c.verification).to.equal("cached");
      expect(c.trust).to.equal("verified-unpublished");
      expect(lines.join("\n")).to.match(/verified before/);
    });

    it("refuses a corrupted ptau", async function () {
      const bad = path.join(work, "corrupted.ptau");
      const bytes = fs.readFileSync(ptau);
      bytes[2000] ^= 0xff; // a byte of a tau*G1 point
      fs.writeFileSync(bad, bytes);
      const e = await rejection(checkPtau(bad));
      expect(e.code).to.equal("CEREMONY");
      expect(e.message).to.match(/corrupted\.ptau (does not verify|is corrupt)/);
      const refused = await rejection(compileModel(model, path.join(work, "refused"), { ptau: bad }));
      expect(refused.message).to.equal(e.message);
      fs.writeFileSync(bad, bytes.subarray(0, 5000));
      expect((await rejection(checkPtau(bad))).message).to.match(/truncated/);
    });

    it("marks a ptau secure when its blake2b is a published ceremony file's", function () {
      const m = loadManifest(publishedDir);
      expect(m.ptau).to.include({
        secure: true,
        trust: "published-ceremony",
        published: "test-ceremony_08.ptau",
      });
    });

    it("records compile's phase-2 contribution", async function () {
      const m = loadManifest(devDir);
      expect(m.ptau).to.include({ source: "dev", secure: false, trust: "development" });
      expect(m.phase2?.contributions).to.have.length(1);
      const [c] = m.phase2!.contributions;
      expect(c).to.include({ type: "contribute", name: "opg zkml compile" });
      // the hash snarkjs returned when contributing is the one the zkey yields
      expect(await readZkeyContributions(path.join(devDir, "circuit.zkey"))).to.deep.equal([
        { type: "contribute", name: "opg zkml compile", hash: c.hash },
      ]);
    });
  });

  describe("checkSetup", function () {
    it("development ptau: its generator could forge", async function () {
      const r = await checkSetup(devDir);
      expect(r.ptau).to.include({ trust: "development", secure: false, checkedFrom: "file" });
      expect(r.zkey.verified).to.equal(true);
      expect(r.zkey.verificationKeyMatches).to.equal(true);
      expect(r.phase2).to.include({ count: 1, checkedFrom: "zkey", manifestMatchesZkey: true });
      expect(r.whoCanForge).to.match(/^anyone holding the development ptau's toxic waste/);
      expect(r.secure).to.equal(false);
      expect(r.warnings.join("\n")).to.match(/phase 2 has one contributor, the machine that ran compile/);
    });

    it("beacon-only ptau: anyone could forge", async function () {
      const r = await checkSetup(unpublishedDir);
      expect(r.ptau.trust).to.equal("verified-unpublished");
      expect(r.zkey.verified).to.equal(true);
      expect(r.whoCanForge).to.match(/^anyone: phase 1 .* only public random beacons/);
      expect(r.secure).to.equal(false);
    });

    it("notices a manifest that labels an unpublished ptau secure", async function () {
      const dir = path.join(work, "lying");
      fs.cpSync(unpublishedDir, dir, { recursive: true });
      const m = loadManifest(dir);
      m.ptau = {
        ...m.ptau!,
        secure: true,
        trust: "published-ceremony",
        published: "powersOfTau28_hez_final_08.ptau",
      };
      fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(m));
      const r = await checkSetup(dir);
      expect(r.ptau).to.include({ trust: "verified-unpublished", secure: false });
      expect(r.secure).to.equal(false);
      expect(r.warnings.join("\n")).to.match(
        /manifest says the ptau is published-ceremony .* but the file is/,
      );
      const claimed = await checkSetup(m);
      expect(claimed.ptau).to.include({ trust: "published-ceremony", checkedFrom: "manifest" });
      expect(claimed.zkey.verified).to.equal(null);
      expect(claimed.secure).to.equal(false);
    });
  });

  describe("ceremony contribute / beacon / verify", function () {
    let before0: BundleManifest;
    let oldVk: object;

    it("records two contributions and a beacon, re-exporting the verification key", async function () {
      before0 = loadManifest(publishedDir);
      oldVk = JSON.parse(fs.readFileSync(path.join(publishedDir, "verification_key.json"), "utf8"));
      const single = await checkSetup(publishedDir, { publishedPtau: published });
      expect(single.whoCanForge).to.match(/^only whoever ran compile/);

      const alice = await contributeToBundle(publishedDir, { name: "alice" });
      const cli = await opgHere([
        "zkml",
        "ceremony",
        "contribute",
        publishedDir,
        "--name",
        "bob",
        "--entropy",
        "dice 3 5 1",
      ]);
      expect(cli.status, cli.stderr).to.equal(0);
      expect(cli.stdout).to.match(/contribution #3 'bob' added/);
      const beacon = await beaconToBundle(publishedDir, "0x" + "ab".repeat(32), 10);

      const m = loadManifest(publishedDir, { checkHashes: true });
      const added = m.phase2!.contributions.slice(1);
      expect(added.map((c) => [c.type, c.name])).to.deep.equal([
        ["contribute", "alice"],
        ["contribute", "bob"],
        ["beacon", "beacon"],
      ]);
      expect(added[0].hash).to.equal(alice.hash);
      expect(added[2].beacon).to.deep.equal({ hash: "ab".repeat(32), iterationsExp: 10 });
      expect(added[2].hash).to.equal(beacon.hash);
      // compile's own contribution stays first: 1 + the 3 new ones
      expect(m.phase2!.contributions).to.have.length(4);
      expect(m.artifacts.zkey!.sha256).to.not.equal(before0.artifacts.zkey!.sha256);
      expect(m.artifacts.verificationKey!.sha256).to.not.equal(before0.artifacts.verificationKey!.sha256);
      expect(m.artifacts.verifier!.sha256).to.not.equal(before0.artifacts.verifier!.sha256);
    });

    it("ceremony verify passes and checkSetup names every contributor", async function () {
      const cli = await opgHere(["zkml", "ceremony", "verify", publishedDir]);
      expect(cli.status, cli.stderr).to.equal(0);
      expect(cli.stdout).to.match(/phase 2: 4 contribution\(s\) \[read from the zkey\]/);
      expect(cli.stdout).to.match(/zkey: verifies/);

      const r = await checkSetup(publishedDir, { publishedPtau: published });
      expect(r.secure).to.equal(true);
      expect(r.phase2.contributors).to.deep.equal(["opg zkml compile", "alice", "bob"]);
      expect(r.phase2.manifestMatchesZkey).to.equal(true);
      expect(r.whoCanForge).to.equal(
        "only if every phase-2 contributor colluded (3: 'opg zkml compile', 'alice', 'bob'), " +
          "given the published phase-1 ceremony test-ceremony_08.ptau",
      );
    });

    it("a proof made with the new zkey verifies with the new key, not the old one", async function () {
      const r = await proveBundle(publishedDir, [[0.5, -0.25]], 42n, { reference: false });
      const v = await verifyBundle(publishedDir, r);
      expect(v.ok, v.reason).to.equal(true);
      expect(await snarkjs.groth16.verify(oldVk, r.publicSignals, r.proof, quiet)).to.equal(false);
    });

    it("a zkey swapped for another circuit's fails verify, naming the problem", async function () {
      const dir = path.join(work, "swapped");
      fs.cpSync(publishedDir, dir, { recursive: true });
      fs.copyFileSync(path.join(devDir, "circuit.zkey"), path.join(dir, "circuit.zkey"));

      // as found: the manifest's hash no longer matches
      let r = await checkSetup(dir);
      expect(r.zkey.artifactProblems).to.deep.equal(["zkey (circuit.zkey) does not match its sha256"]);

      // re-hashed, as someone covering their tracks would: the zkey itself gives it away
      const m = loadManifest(dir);
      m.artifacts.zkey!.sha256 = crypto
        .createHash("sha256")
        .update(fs.readFileSync(path.join(dir, "circuit.zkey")))
        .digest("hex");
      fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(m));
      r = await checkSetup(dir);
      expect(r.zkey.verified).to.equal(false);
      expect(r.zkey.reason).to.match(/the zkey was made for a different circuit/);
      expect(r.whoCanForge).to.match(/^unknown, possibly anyone: the zkey does not verify/);
      expect(r.secure).to.equal(false);

      // a real process: exit code 3, the reason on stderr, no stack trace
      const cli = opg(["zkml", "ceremony", "verify", dir]);
      expect(cli.status).to.equal(3);
      expect(cli.stderr).to.match(/setup verification FAILED: the zkey was made for a different circuit/);
      expect(cli.stderr).to.not.match(/\n\s+at /);
    });

    it("refuses a malformed beacon before touching the bundle", async function () {
      const sha = loadManifest(publishedDir).artifacts.zkey!.sha256;
      let e = await rejection(beaconToBundle(publishedDir, "xyz", 10));
      expect(e.message).to.equal("the beacon must be 1 to 255 bytes of hexadecimal, got 'xyz'");
      e = await rejection(beaconToBundle(publishedDir, "abcd", 9));
      expect(e.message).to.match(/iteration exponent must be an integer in \[10, 63\], got 9/);
      expect(loadManifest(publishedDir, { checkHashes: true }).artifacts.zkey!.sha256).to.equal(sha);
    });
  });
});
