import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { expect } from "chai";
import { ConfigError, loadConfig, redact } from "../../workers/runtime/config";
import { inferenceSchema } from "../../workers/inference/config";
import { dataNodeSchema } from "../../workers/data/config";
import { verificationSchema } from "../../workers/verification/config";
import { Journal } from "../../workers/runtime/journal";
import { isNonceError, isTransient } from "../../workers/runtime/submitter";

const KEY = "0x" + "11".repeat(32);

describe("worker runtime", function () {
  describe("config", function () {
    it("layers defaults, file, environment and flags, and redacts secrets", function () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-config-"));
      const file = path.join(dir, "node.json");
      fs.writeFileSync(file, JSON.stringify({ concurrency: 2, minFee: "1.5", models: [3, 4] }));
      const config = loadConfig(inferenceSchema, {
        file,
        env: { OPG_PRIVATE_KEY: KEY, OPG_CONCURRENCY: "3" },
        overrides: { confirmations: "0" },
      });
      expect(config.concurrency).to.equal(3); // env beats file
      expect(config.minFee).to.equal(1_500_000_000_000_000_000n);
      expect(config.models).to.deep.equal([3n, 4n]);
      expect(config.confirmations).to.equal(0);
      expect(config.rpcUrl).to.equal("http://127.0.0.1:8545");
      expect(redact(inferenceSchema, config).privateKey).to.equal("<redacted>");
    });

    it("accepts the example configuration files of docs/examples as they are", function () {
      const examples = path.join(__dirname, "..", "..", "docs", "examples");
      const env = { OPG_PRIVATE_KEY: KEY };
      const inference = loadConfig(inferenceSchema, {
        file: path.join(examples, "inference-node.json"),
        env,
      });
      expect(inference).to.include({
        concurrency: 1,
        takeOverClaims: true,
        maxCallbackGas: 300_000,
        minFee: 500_000_000_000_000_000n,
      });
      expect(inference.models).to.deep.equal([1n, 2n]);
      expect(inference).to.include({ enclave: "none", attestUrls: "auto", attestTimeoutMs: 5000 });
      const verification = loadConfig(verificationSchema, {
        file: path.join(examples, "verification-node.json"),
        env,
      });
      expect(verification).to.include({
        metricsPort: 9465,
        metricsHost: "0.0.0.0",
        optimistic: true,
        finalizeAfterSeconds: 300,
      });
      const data = loadConfig(dataNodeSchema, { file: path.join(examples, "data-node.json"), env: {} });
      expect(data).to.include({ port: 8600, host: "0.0.0.0" });
    });

    it("names every bad field at once and never echoes the key", function () {
      const secret = "0xnot-a-key-" + "ab".repeat(20);
      let error: unknown;
      try {
        loadConfig(inferenceSchema, {
          env: { OPG_PRIVATE_KEY: secret, OPG_RPC_URL: "ftp://x", OPG_CONCURRENCY: "0", OPG_MODELS: "1,x" },
        });
      } catch (e) {
        error = e;
      }
      expect(error).to.be.instanceOf(ConfigError);
      const problems = (error as ConfigError).problems.join("\n");
      expect(problems).to.match(/privateKey \(from OPG_PRIVATE_KEY\)/);
      expect(problems).to.match(/rpcUrl .*unsupported URL scheme ftp:/);
      expect(problems).to.match(/concurrency .*outside \[1, 64\]/);
      expect(problems).to.match(/models .*"x" is not a positive integer id/);
      expect(problems).to.not.include(secret);
    });

    it("reports a missing required option and unknown keys in the file", function () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-config-"));
      const file = path.join(dir, "node.json");
      fs.writeFileSync(file, JSON.stringify({ concurency: 2 }));
      expect(() => loadConfig(inferenceSchema, { file, env: {} }))
        .to.throw(ConfigError)
        .with.property("message")
        .that.matches(/privateKey \(OPG_PRIVATE_KEY\) is required/)
        .and.matches(/unknown option "concurency"/);
    });
  });

  describe("journal", function () {
    let dir: string;
    beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-journal-"))));

    it("keeps task state and the checkpoint across a reopen", function () {
      const file = path.join(dir, "j.db");
      const a = new Journal(file);
      expect(a.upsertTask(1n, 7n, 10, "task-1")).to.equal(true);
      a.setState(1n, "claimed");
      a.advance(10, "0xaa");
      a.advance(12, "0xbb");
      a.recordEarning(1n, 5n, 12);
      a.close();
      const b = new Journal(file);
      expect(b.task(1n)!.state).to.equal("claimed");
      expect(b.checkpoint()).to.deep.equal({ number: 12, hash: "0xbb" });
      expect(b.totalEarned()).to.equal(5n);
      b.close();
    });

    it("ignores a replayed event and resets a task a reorg replaced", function () {
      const j = new Journal(path.join(dir, "j.db"));
      j.upsertTask(1n, 7n, 10, "task-A");
      j.setState(1n, "proved", { proof: "p" });
      expect(j.upsertTask(1n, 7n, 10, "task-A")).to.equal(false);
      expect(j.task(1n)!.state).to.equal("proved");
      expect(j.upsertTask(1n, 7n, 11, "task-B")).to.equal(true);
      expect(j.task(1n)).to.include({ state: "seen", proof: null, data: "task-B", block: 11 });
      j.close();
    });

    it("keeps a watched claim's expiry only while the task is watching", function () {
      const j = new Journal(path.join(dir, "j.db"));
      j.upsertTask(3n, 1n, 8, "t");
      j.setState(3n, "watching", { until: 1_700_000_000, reason: "claimed by 0xabc" });
      expect(j.task(3n)).to.include({ state: "watching", until: 1_700_000_000 });
      j.setState(3n, "watching", { reason: "still" });
      expect(j.task(3n)!.until).to.equal(1_700_000_000);
      j.setState(3n, "seen", { until: 5 });
      expect(j.task(3n)!.until).to.equal(null);
      j.close();
    });

    it("adds the claim-expiry column to a journal written by an earlier version", function () {
      const file = path.join(dir, "old.db");
      const old = new Database(file);
      old.exec(`CREATE TABLE tasks (
        taskId TEXT PRIMARY KEY, modelId TEXT NOT NULL, state TEXT NOT NULL, block INTEGER NOT NULL,
        data TEXT NOT NULL, proof TEXT, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0, updatedAt INTEGER NOT NULL)`);
      old
        .prepare(
          "INSERT INTO tasks (taskId, modelId, state, block, data, updatedAt) VALUES ('4', '1', 'lost', 3, 't', 0)",
        )
        .run();
      old.close();
      const j = new Journal(file);
      expect(j.task(4n)).to.include({ state: "lost", until: null });
      j.setState(4n, "watching", { until: 99 });
      expect(j.task(4n)!.until).to.equal(99);
      j.close();
    });

    it("rewinds to a reorg's common ancestor", function () {
      const j = new Journal(path.join(dir, "j.db"));
      for (const n of [5, 6, 7, 8]) j.advance(n, `0x${n}`);
      j.upsertTask(2n, 1n, 8, "t");
      j.rewindTo(6);
      expect(j.checkpoint()).to.deep.equal({ number: 6, hash: "0x6" });
      expect(j.tasksAbove(6).map((t) => t.taskId)).to.deep.equal(["2"]);
      j.close();
    });
  });

  describe("submitter error classes", function () {
    it("retries transport errors and nonce drift, not reverts", function () {
      expect(isTransient(new Error("connect ECONNREFUSED 127.0.0.1:8545"))).to.equal(true);
      expect(isTransient({ code: "TIMEOUT", message: "request timeout" })).to.equal(true);
      expect(isTransient(new Error("execution reverted: TaskRegistryAlreadyClaimed"))).to.equal(false);
      expect(isNonceError(new Error("Nonce too high. Expected nonce to be 25 but got 27."))).to.equal(true);
      expect(isNonceError(new Error("insufficient funds"))).to.equal(false);
    });
  });
});
