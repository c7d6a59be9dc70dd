import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers, type Log, type Provider } from "ethers";
import { packValues, unpackWords } from "../../zkml";
import { packagePlainModel, plainInputValues, runPlainBundle } from "../../zkml/plain-bundle";
import { ConfigError, loadConfig } from "../../workers/runtime/config";
import { inferenceSchema } from "../../workers/inference/config";
import { verificationSchema } from "../../workers/verification/config";
import { Journal } from "../../workers/runtime/journal";
import {
  attestersOf,
  bundleOutputWords,
  corruptOutputWords,
  outputsHash,
} from "../../workers/runtime/optimistic";
import { modeName, taskRegistryInterface } from "../../workers/runtime/tasks";
import { modeSkipReason, nextQuorumAttempt } from "../../workers/inference/node";
import type { LoadedPlainBundle } from "../../workers/runtime/bundles";

const KEY = "0x" + "11".repeat(32);
const IRIS = path.join(__dirname, "..", "fixtures", "models", "iris_mlp.onnx");

describe("optimistic and TEE mode helpers (workers/runtime/optimistic.ts)", function () {
  it("outputsHash is keccak256 of the words packed as abi.encodePacked(uint256[]) packs them", function () {
    const words = [1n, 2n ** 251n + 7n, 0n];
    const packed = ethers.concat(words.map((w) => ethers.zeroPadValue(ethers.toBeHex(w), 32)));
    expect(outputsHash(words)).to.equal(ethers.keccak256(packed));
  });

  it("the test-only lie changes one value by one and stays canonically packed", function () {
    const bits = 16;
    const values = [5n, -3n, 100n];
    const words = packValues(values, bits);
    const lied = corruptOutputWords(words, values.length, bits);
    expect(unpackWords(lied, values.length, bits)).to.deep.equal([6n, -3n, 100n]);
    expect(packValues(unpackWords(lied, values.length, bits), bits)).to.deep.equal(lied);
    // At the top of the signed range it goes down instead.
    const top = packValues([32767n], bits);
    expect(unpackWords(corruptOutputWords(top, 1, bits), 1, bits)).to.deep.equal([32766n]);
  });

  it("names the verification modes of a task (0, from before modes, is ZK)", function () {
    expect([0, 1, 2, 4].map((m) => modeName(m))).to.deep.equal(["zk", "zk", "optimistic", "tee"]);
    expect(modeName(3)).to.equal("unknown mode 3");
    expect(modeName("2")).to.equal("optimistic");
  });

  it("claims only tasks of a mode the node can serve", function () {
    const bare = { enclave: false, disputes: false };
    const full = { enclave: true, disputes: true };
    expect(modeSkipReason(1, bare)).to.equal(undefined);
    expect(modeSkipReason(2, bare)).to.match(/no "disputes" address/);
    expect(modeSkipReason(4, bare)).to.match(/no enclave \(--enclave none\)/);
    expect([1, 2, 4].map((m) => modeSkipReason(m, full))).to.deep.equal([undefined, undefined, undefined]);
    expect(modeSkipReason(8, full)).to.match(/unknown mode 8/);
  });

  it("short of its quorum, a node asks again with a growing wait, and gives up when a round would outlast its claim", function () {
    const at = { now: 1000, claimExpiresAt: 1600, attestTimeoutMs: 5000 };
    expect(nextQuorumAttempt(at)).to.equal(2000);
    expect(nextQuorumAttempt({ ...at, previousDelayMs: 2000 })).to.equal(4000);
    expect(nextQuorumAttempt({ ...at, previousDelayMs: 16000 })).to.equal(30000);
    expect(nextQuorumAttempt({ ...at, previousDelayMs: 30000 })).to.equal(30000);
    // A round: the 2 s wait, 5 s of asking, 30 s to mine the post; it must end before the claim expires.
    expect(nextQuorumAttempt({ ...at, now: 1600 - 38 })).to.equal(2000);
    expect(nextQuorumAttempt({ ...at, now: 1600 - 37 })).to.equal(undefined);
    expect(nextQuorumAttempt({ ...at, now: 1700 }), "a claim already lapsed").to.equal(undefined);
  });

  it("reads the attester list fixed at posting, in the registry's order, from the latest posting only", async function () {
    const tasks = "0x" + "ab".repeat(20);
    const a = "0x" + "01".repeat(20);
    const b = "0x" + "02".repeat(20);
    const c = "0x" + "03".repeat(20);
    const attested = (attester: string, count: number, blockNumber: number, index: number, tx: string) => {
      const encoded = taskRegistryInterface.encodeEventLog("TaskAttested", [7n, attester, count]);
      return { ...encoded, address: tasks, blockNumber, index, transactionHash: tx } as unknown as Log;
    };
    let asked: unknown;
    let logs: Log[] = [];
    const provider = {
      async getLogs(filter: unknown) {
        asked = filter;
        return logs;
      },
    } as unknown as Provider;
    // One posting: its attestations ride in its transaction, each log's count its place in the list.
    logs = [attested(b, 2, 12, 4, "0xpost"), attested(a, 1, 12, 3, "0xpost")];
    const list = await attestersOf({ provider, tasksAddress: tasks }, 7n, 10);
    expect(list.map((x) => x.toLowerCase())).to.deep.equal([a, b]);
    expect(asked).to.deep.include({ address: tasks, fromBlock: 10 });
    // Reopened and posted again (an unattested result expired): only the latest posting's set counts.
    logs = [
      attested(a, 1, 12, 3, "0xfirst"),
      attested(b, 2, 12, 4, "0xfirst"),
      attested(c, 1, 40, 0, "0xsecond"),
    ];
    expect(
      (await attestersOf({ provider, tasksAddress: tasks }, 7n, 10)).map((x) => x.toLowerCase()),
    ).to.deep.equal([c]);
    logs = [];
    expect(await attestersOf({ provider, tasksAddress: tasks }, 7n, 10)).to.deep.equal([]);
  });

  it("runs a plain bundle as every node must: onnxruntime, quantized and packed", async function () {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-plain-")), "iris");
    const manifest = await packagePlainModel(IRIS, dir);
    const bundle: LoadedPlainBundle = { kind: "plain", dir, manifest };
    const input = plainInputValues(
      manifest,
      packValues([1306n, 896n, 358n, 51n], manifest.publicSignals.packBits),
    );
    const { values, words } = await bundleOutputWords(bundle, input);
    expect(values).to.deep.equal(await runPlainBundle(dir, input));
    expect(words).to.deep.equal(packValues(values, manifest.publicSignals.packBits));
  });

  it("records each dispute amount once per log, and sums them by kind", function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-journal-"));
    const j = new Journal(path.join(dir, "j.db"));
    expect(j.recordAmount(1n, "won", "0xa:3", 50n, 10)).to.equal(true);
    expect(j.recordAmount(1n, "won", "0xa:3", 50n, 10), "a replayed log").to.equal(false);
    expect(j.recordAmount(1n, "lost", "0xa:3", 7n, 10), "another kind from the same log").to.equal(true);
    j.recordAmount(2n, "won", "0xb:1", 5n, 11);
    j.recordAmount(2n, "slashed", "0xb:2", 100n, 11);
    expect(j.amountsByKind()).to.deep.equal({ won: 55n, lost: 7n, slashed: 100n });
    expect(j.amountsByKind(1n)).to.deep.equal({ won: 50n, lost: 7n });
    j.close();
    // Durable: a restarted node reads the same totals.
    const again = new Journal(path.join(dir, "j.db"));
    expect(again.amountsByKind()).to.deep.equal({ won: 55n, lost: 7n, slashed: 100n });
    again.close();
  });

  it("keeps a window end in the journal while a task waits for it, and drops it once settled", function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-journal-"));
    const j = new Journal(path.join(dir, "j.db"));
    j.upsertTask(1n, 1n, 10, "{}");
    j.setState(1n, "posted", { until: 1234 });
    expect(j.task(1n)!.until).to.equal(1234);
    j.setState(1n, "disputed", { until: 5678 });
    expect(j.task(1n)!.until).to.equal(5678);
    j.setState(1n, "verified");
    expect(j.task(1n)!.until).to.equal(null);
    j.close();
  });

  describe("options", function () {
    it("inference: no enclave and no fault injection by default; enclave is none or dev", function () {
      const config = loadConfig(inferenceSchema, { env: { OPG_PRIVATE_KEY: KEY } });
      expect(config).to.include({ enclave: "none", faultLieEvery: 0 });
      expect(
        loadConfig(inferenceSchema, { env: { OPG_PRIVATE_KEY: KEY, OPG_ENCLAVE: "dev" } }).enclave,
      ).to.equal("dev");
      expect(() =>
        loadConfig(inferenceSchema, { env: { OPG_PRIVATE_KEY: KEY, OPG_ENCLAVE: "sgx" } }),
      ).to.throw(ConfigError, /enclave/);
    });

    it("verification: takes part in the optimistic mode by default, finalises late results after 300 s", function () {
      const config = loadConfig(verificationSchema, { env: { OPG_PRIVATE_KEY: KEY } });
      expect(config).to.include({ optimistic: true, finalizeAfterSeconds: 300, maxRetries: 5 });
    });

    it("inference: asks registered verification nodes for attestations by default, 5 s; none, or a URL list", function () {
      const load = (env: Record<string, string>) =>
        loadConfig(inferenceSchema, { env: { OPG_PRIVATE_KEY: KEY, ...env } });
      expect(load({})).to.include({ attestUrls: "auto", attestTimeoutMs: 5000 });
      expect(load({ OPG_ATTEST_URLS: "none" }).attestUrls).to.equal("none");
      expect(load({ OPG_ATTEST_URLS: "http://a:9465, https://b.example/opg" }).attestUrls).to.deep.equal([
        "http://a:9465",
        "https://b.example/opg",
      ]);
      expect(() => load({ OPG_ATTEST_URLS: "ws://a:9465" })).to.throw(ConfigError, /attestUrls/);
      expect(() => load({ OPG_ATTEST_URLS: "," })).to.throw(ConfigError, /attestUrls/);
      expect(() => load({ OPG_ATTEST_TIMEOUT_MS: "10" })).to.throw(ConfigError, /attestTimeoutMs/);
    });
  });
});
