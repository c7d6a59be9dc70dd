import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import * as snarkjs from "snarkjs";
import { fixtureBundle } from "../../network/local-network";
import type { IModelRegistry } from "../../typechain-types/contracts/registry/ModelRegistry";
import { bundleArchiveId, packBundle } from "../../workers/data/bundle-archive";
import type { DataClient } from "../../workers/data/client";
import {
  checkBundleConsistency,
  checkInChild,
  type ConsistencyReport,
} from "../../workers/runtime/bundle-consistency";
import {
  BundleCache,
  BundleRejectedError,
  type AnyBundle,
  type LoadedBundle,
} from "../../workers/runtime/bundles";
import {
  type BundleManifest,
  loadManifest,
  loadProgram,
  releaseProver,
  verificationKeyHash,
  verificationKeyWords,
} from "../../zkml";
import { sha256File, writeManifest } from "../../zkml/bundle";
import { buildOnnx, mlpSpec } from "../../zkml/onnx/builder";
import { packagePlainModel } from "../../zkml/plain-bundle";
import { programFromJson, programToJson } from "../../zkml/program-io";

const IRIS = "test/fixtures/models/iris_mlp.onnx";

/** A data node that serves the archives put in it (BundleCache only calls `get`). */
class Archives {
  private readonly byId = new Map<string, Buffer>();
  readonly client = { get: async (id: string) => this.byId.get(id)! } as unknown as DataClient;

  /** Packs `dir`, serves it, and returns its id. */
  put(dir: string): string {
    const archive = packBundle(dir);
    const id = bundleArchiveId(archive);
    this.byId.set(id, archive);
    return id;
  }
}

/** The registry's record of a model whose bundle is `dir` (id `id`): what BundleCache checks a bundle against. */
function registered(dir: string, id: string, verificationModes = 1 | 2): IModelRegistry.ModelStructOutput {
  // a plain bundle's manifest too: read as it is (loadManifest takes ZK bundles only)
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as BundleManifest;
  const vk = manifest.artifacts.verificationKey;
  const layout = manifest.publicSignals;
  return {
    bundleHash: `0x${id}`,
    onnxHash: `0x${manifest.onnx.sha256}`,
    verificationKeyHash: vk
      ? verificationKeyHash(
          verificationKeyWords(JSON.parse(fs.readFileSync(path.join(dir, vk.file), "utf8"))),
        )
      : `0x${"00".repeat(32)}`,
    packBits: BigInt(layout.packBits),
    inputBits: BigInt(manifest.quantization.inputBits),
    terms: {
      verificationModes: BigInt(verificationModes),
      inputMode: layout.inputMode === "inline" ? 0n : 1n,
      inputWords: BigInt(layout.inputWords),
      outputWords: BigInt(layout.outputWords),
    },
  } as unknown as IModelRegistry.ModelStructOutput;
}

/** A copy of bundle `from` with `edit` applied, its manifest's hashes updated (so only the check can tell). */
function tampered(from: string, edit: (dir: string) => void): string {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-lying-bundle-")), "bundle");
  fs.cpSync(from, dir, { recursive: true });
  edit(dir);
  const manifest = loadManifest(dir);
  for (const a of Object.values(manifest.artifacts)) a!.sha256 = sha256File(path.join(dir, a!.file));
  writeManifest(dir, manifest);
  return dir;
}

function loaded(dir: string): LoadedBundle {
  return { dir, manifest: loadManifest(dir), program: loadProgram(dir), verificationKeyHash: "" };
}

async function refusal(p: Promise<unknown>): Promise<BundleRejectedError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(BundleRejectedError);
    return e as BundleRejectedError;
  }
  expect.fail("the bundle was served");
}

describe("bundle consistency: a node refuses a model whose program.json is not what its circuit proves", function () {
  let iris: string;
  /** Another model with iris's layout (4 inputs, 3 outputs, one word each): its circuit is not iris's. */
  let other: string;
  const archives = new Archives();
  const cacheDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "opg-bundle-cache-"));

  before(async function () {
    // Both compiled once and cached under .opg/cache/e2e-bundles (the e2e tests share iris).
    iris = await fixtureBundle(IRIS);
    const onnx = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-other-")), "other_mlp4x3.onnx");
    fs.writeFileSync(onnx, buildOnnx(mlpSpec([4, 6, 3], 11)));
    other = await fixtureBundle(onnx, { inputMode: "inline" });
  });

  after(async () => {
    await releaseProver();
  });

  // The check runs in a child process as BundleCache runs it (checkInChild): its witness calculator prints each
  // failed assert (the extremes of the input range overflow), which the child keeps out of the test's output.
  describe("the check (checkBundleConsistency, in a child process)", function () {
    let report: ConsistencyReport;

    before(async function () {
      report = await checkInChild(loaded(iris));
    });

    it("passes an honest bundle: regenerated program equal, every sample agreeing or refused by both, one proof verified", function () {
      expect(report.problems).to.deep.equal([]);
      expect(report.regenerated).to.equal(true);
      expect(report.proved).to.equal(true);
      expect(report.samples.map((s) => s.name).slice(0, 4)).to.deep.equal([
        "zeros",
        "every value at the maximum",
        "every value at the minimum",
        "alternating extremes",
      ]);
      expect(report.samples.length).to.be.at.least(10);
      expect(report.samples.filter((s) => s.result === "disagree")).to.deep.equal([]);
      expect(report.samples.filter((s) => s.name.startsWith("random") && s.result === "agree")).to.not.be
        .empty;
    });

    it("catches a changed output bias with the circuit's witness alone (no regeneration)", async function () {
      const lying = tampered(iris, (dir) => {
        const program = programFromJson(fs.readFileSync(path.join(dir, "program.json"), "utf8"));
        const last = [...program.ops].reverse().find((op) => op.op === "dense")!;
        if (last.op !== "dense") throw new Error("no dense op");
        // +1.0 on the first output's pre-activation (bias at scale 2^(2s)): every output moves by 2^s
        last.bias[0] += 1n << BigInt(2 * program.scaleBits);
        fs.writeFileSync(path.join(dir, "program.json"), programToJson(program));
      });
      const r = await checkInChild(loaded(lying), { regenerate: false });
      expect(r.problems.join("; ")).to.match(
        /the circuit \(circuit\.wasm\) and program\.json disagree on \d+ of/,
      );
      expect(r.problems.join("; ")).to.match(
        /output value #0 is -?\d+ in the circuit, -?\d+ in program\.json/,
      );
    });

    it("skips a plain bundle: it has no circuit to agree with", async function () {
      const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-plain-")), "iris");
      const manifest = await packagePlainModel(IRIS, dir);
      const r = await checkBundleConsistency({ kind: "plain", dir, manifest });
      expect(r.skipped).to.match(/plain bundle/);
      expect(r.problems).to.deep.equal([]);
    });
  });

  describe("BundleCache", function () {
    it("checks an honest bundle once, then serves it from memory, and after a restart from the recorded verdict", async function () {
      const id = archives.put(iris);
      const model = registered(iris, id);
      const dir = cacheDir();
      const bundles = new BundleCache(dir, archives.client);
      const [a, b] = await Promise.all([bundles.get(model), bundles.getAny(model)]);
      expect(a).to.equal(b);
      expect(bundles.consistency!.checksRun).to.equal(1);
      await bundles.get(model);
      await bundles.getAny(model);
      expect(bundles.consistency!.checksRun).to.equal(1);
      const verdict = JSON.parse(fs.readFileSync(path.join(dir, "consistency", `${id}.json`), "utf8"));
      expect(verdict).to.include({ bundle: id, consistent: true });
      expect(verdict.report.proved).to.equal(true);

      const restarted = new BundleCache(dir, archives.client);
      await restarted.getAny(model);
      expect(restarted.consistency!.checksRun).to.equal(0);
    });

    it("refuses a bundle whose program.json has one bias changed, naming where it differs", async function () {
      const lying = tampered(iris, (dir) => {
        const program = programFromJson(fs.readFileSync(path.join(dir, "program.json"), "utf8"));
        const first = program.ops.find((op) => op.op === "dense")!;
        if (first.op !== "dense") throw new Error("no dense op");
        first.bias[1] += 1n;
        fs.writeFileSync(path.join(dir, "program.json"), programToJson(program));
      });
      const id = archives.put(lying);
      const bundles = new BundleCache(cacheDir(), archives.client);
      const err = await refusal(bundles.getAny(registered(lying, id)));
      expect(err.message).to.match(/inconsistent bundle, its program and its circuit disagree/);
      expect(err.message).to.match(
        /program\.json is not the program model\.onnx compiles to with the manifest's options: ops\[0\]\.bias\[1\] is "-?\d+" in program\.json, "-?\d+" regenerated/,
      );
      // refused for every mode, and not checked again
      await refusal(bundles.get(registered(lying, id)));
      expect(bundles.consistency!.checksRun).to.equal(1);
    });

    it("refuses a bundle whose witness calculator is another model's", async function () {
      const lying = tampered(iris, (dir) =>
        fs.copyFileSync(path.join(other, "circuit.wasm"), path.join(dir, "circuit.wasm")),
      );
      const id = archives.put(lying);
      const err = await refusal(new BundleCache(cacheDir(), archives.client).getAny(registered(lying, id)));
      expect(err.message).to.match(
        /the circuit \(circuit\.wasm\) and program\.json disagree on \d+ of \d+ sampled inputs/,
      );
    });

    it("refuses a bundle whose zkey is another circuit's", async function () {
      const lying = tampered(iris, (dir) =>
        fs.copyFileSync(path.join(other, "circuit.zkey"), path.join(dir, "circuit.zkey")),
      );
      const id = archives.put(lying);
      const err = await refusal(new BundleCache(cacheDir(), archives.client).get(registered(lying, id)));
      expect(err.message).to.match(/the zkey cannot prove the circuit's witness \(random input #\d+/);
      expect(err.message).to.not.match(/disagree on/);
    });

    it("refuses a bundle whose zkey is the same circuit's under another key: its proofs do not verify against the registered one", async function () {
      const zkey = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-zkey-")), "other-key.zkey");
      await snarkjs.zKey.contribute(path.join(iris, "circuit.zkey"), zkey, "another key", "entropy");
      const lying = tampered(iris, (dir) => fs.copyFileSync(zkey, path.join(dir, "circuit.zkey")));
      const id = archives.put(lying);
      const err = await refusal(new BundleCache(cacheDir(), archives.client).get(registered(lying, id)));
      expect(err.message).to.match(
        /made with circuit\.zkey does not verify against verification_key\.json \(the registered key\)/,
      );
    });

    it("does not check a plain bundle", async function () {
      const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-plain-")), "iris");
      await packagePlainModel(IRIS, dir);
      const id = archives.put(dir);
      const bundles = new BundleCache(cacheDir(), archives.client);
      const bundle: AnyBundle = await bundles.getAny(registered(dir, id, 2));
      expect(bundle.kind).to.equal("plain");
      expect(bundles.consistency!.checksRun).to.equal(0);
    });

    it("can be turned off for a reader that neither posts nor attests", async function () {
      const id = archives.put(iris);
      const bundles = new BundleCache(cacheDir(), archives.client, { consistency: false });
      await bundles.get(registered(iris, id));
      expect(bundles.consistency).to.equal(undefined);
    });
  });
});
