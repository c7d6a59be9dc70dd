import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ZkmlError, packValues } from "../../zkml";
import {
  PLAIN_BUNDLE_FORMAT,
  bundleKind,
  dequantizePlainInput,
  loadPlainManifest,
  packagePlainModel,
  plainInputValues,
  plainOutputWords,
  quantizePlainInput,
  quantizePlainOutput,
  runPlainBundle,
} from "../../zkml/plain-bundle";
import { bundleArchiveId, packBundle, readBundleArchive } from "../../workers/data/bundle-archive";
import { ethers } from "hardhat";
import { DEFAULT_ECONOMY_PARAMS, deployEconomy, deployMarket } from "../../network/deploy";
import { modeNames, parseModes, registerBundleInModes } from "../../network/register-plain-model";

const FIXTURES = path.join(__dirname, "..", "fixtures", "models");
const MODEL = path.join(FIXTURES, "digits_transformer.onnx");
const samples = JSON.parse(fs.readFileSync(path.join(FIXTURES, "digits_transformer_test.json"), "utf8")) as {
  shape: number[];
  scale: number;
  inputs: number[][];
  predictions: number[];
  logits: number[][];
};

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "opg-plain-"));
const argmax = (v: readonly bigint[]) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

describe("zkml plain bundles (models without a circuit)", function () {
  let dir: string;
  before(async function () {
    dir = path.join(tmp(), "bundle");
    await packagePlainModel(MODEL, dir);
  });

  it("packages digits_transformer.onnx as model.onnx + manifest.json with the on-chain layout", function () {
    expect(fs.readdirSync(dir).sort()).to.deep.equal(["manifest.json", "model.onnx"]);
    const m = loadPlainManifest(dir);
    expect(m.format).to.equal(PLAIN_BUNDLE_FORMAT);
    expect(m.kind).to.equal("plain");
    expect(m.name).to.equal("digits_transformer");
    expect(m.input).to.deep.include({ shape: [1, 8, 8], dtype: "float32" });
    expect(m.output).to.deep.include({ shape: [1, 10], dtype: "float32", scaleBits: 8 });
    expect(m.quantization).to.deep.equal({ scaleBits: 8, inputBits: 16, commitmentPackBits: 16 });
    // 64 inputs and 10 outputs of 16 bits, 15 per 252-bit word
    expect(m.publicSignals).to.deep.include({
      inputMode: "inline",
      packBits: 16,
      inputWords: 5,
      outputWords: 1,
    });
    expect(m.artifacts).to.deep.equal({});
    expect(bundleKind(dir)).to.equal("plain");
  });

  it("packs into a data-node archive holding exactly its two files", function () {
    const archive = readBundleArchive(packBundle(dir));
    expect([...archive.files.keys()]).to.deep.equal(["manifest.json", "model.onnx"]);
  });

  it("runs like onnxruntime on the recorded samples: same argmax, logits within 0.05", async function () {
    const m = loadPlainManifest(dir);
    for (let i = 0; i < 5; i++) {
      const q = quantizePlainInput(
        m,
        samples.inputs[i].map((v) => v * samples.scale),
      );
      // inline words round-trip
      expect(plainInputValues(m, packValues(q, 16))).to.deep.equal(q);
      const out = await runPlainBundle(dir, q);
      expect(out).to.have.length(10);
      expect(argmax(out), `sample ${i}`).to.equal(samples.predictions[i]);
      out.forEach((o, j) => expect(Math.abs(Number(o) / 256 - samples.logits[i][j])).to.be.below(0.05));
      expect(plainOutputWords(m, out)).to.have.length(1);
    }
  });

  it("quantizes half away from zero and refuses values out of range", function () {
    const m = loadPlainManifest(dir);
    expect(
      quantizePlainOutput(m, [0.5 / 256, -0.5 / 256, 1.49 / 256, 0, 0, 0, 0, 0, 0, 0]).slice(0, 3),
    ).to.deep.equal([1n, -1n, 1n]);
    expect(() => quantizePlainOutput(m, [200, 0, 0, 0, 0, 0, 0, 0, 0, 0])).to.throw(
      ZkmlError,
      /does not fit 16 signed bits/,
    );
    expect(() => quantizePlainOutput(m, [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0])).to.throw(ZkmlError);
    expect(() => dequantizePlainInput(m, new Array(64).fill(1n << 15n))).to.throw(
      ZkmlError,
      /16 signed bits/,
    );
  });

  it("refuses a tampered model and a directory that is not empty", async function () {
    const copy = path.join(tmp(), "b");
    fs.cpSync(dir, copy, { recursive: true });
    fs.appendFileSync(path.join(copy, "model.onnx"), "x");
    expect(() => loadPlainManifest(copy)).to.throw(ZkmlError, /does not match its sha256/);
    fs.writeFileSync(path.join(copy, "circuit.circom"), "");
    let err: unknown;
    try {
      await packagePlainModel(MODEL, copy);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.match(/holds circuit.circom/);
  });

  describe("registration (network/register-plain-model.ts)", function () {
    it("parses mode lists and names the accepted words", function () {
      expect(parseModes("tee,optimistic")).to.equal(6);
      expect(parseModes(" TEE ")).to.equal(4);
      expect(parseModes("zk,tee")).to.equal(5);
      expect(modeNames(7)).to.deep.equal(["zk", "optimistic", "tee"]);
      expect(() => parseModes("tee,fast")).to.throw(
        'unknown verification mode "fast": use zk, tee, optimistic',
      );
      expect(() => parseModes("")).to.throw(/unknown verification mode ""/);
    });

    it("registers a plain bundle for TEE and optimistic mode with no key, and refuses ZK mode", async function () {
      const [deployer, treasury, governance, owner] = await ethers.getSigners();
      const economy = await deployEconomy(deployer, {
        ...DEFAULT_ECONOMY_PARAMS,
        treasury: treasury.address,
        parameterOwner: governance.address,
      });
      const { models } = await deployMarket(
        deployer,
        economy,
        { treasury: treasury.address, parameterOwner: governance.address },
        governance,
      );
      const bundleId = bundleArchiveId(packBundle(dir));
      const fee = ethers.parseEther("1");
      const r = await registerBundleInModes(owner, models, dir, { bundleId, fee, modes: 6, plain: true });
      const model = await models.getModel(r.modelId);
      const m = loadPlainManifest(dir);
      expect(model.owner).to.equal(owner.address);
      expect(model.terms.verificationModes).to.equal(6n);
      expect(model.terms.verificationKey).to.equal(ethers.ZeroAddress);
      expect(model.onnxHash).to.equal("0x" + m.onnx.sha256);
      expect(model.bundleHash).to.equal("0x" + bundleId);
      expect(model.terms.inputWords).to.equal(5n);
      expect(model.terms.outputWords).to.equal(1n);
      expect(await models.verificationKeyOf(r.modelId)).to.deep.equal([]);
      let err: unknown;
      try {
        await registerBundleInModes(owner, models, dir, { bundleId, fee, modes: 5, plain: true });
      } catch (e) {
        err = e;
      }
      expect((err as Error).message).to.match(
        /is a plain bundle \(no circuit\): it cannot be registered in zk mode/,
      );
    });
  });
});
