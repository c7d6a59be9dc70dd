import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { fixtureBundle } from "../../network/local-network";
import { assertLocalChain } from "../../sdk/token-cli";
import { OPG_BIN, ROOT, ensureCliBuilt, hasStackTrace, runOpg } from "../helpers/cli";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const NO_KEY = { OPG_PRIVATE_KEY: undefined };

/** A user's mistake: exit 1, one line on stderr naming it, nothing on stdout, no stack trace. */
function expectOneLineError(r: { code: number | null; stdout: string; stderr: string }, pattern: RegExp) {
  expect(r.code, r.stderr).to.equal(1);
  expect(r.stderr.trim()).to.match(pattern);
  expect(r.stderr.trim().split("\n"), r.stderr).to.have.length(1);
  expect(hasStackTrace(r.stderr), r.stderr).to.equal(false);
  expect(r.stdout).to.equal("");
}

describe("opg command line", function () {
  this.timeout(180_000);

  before(function () {
    ensureCliBuilt();
  });

  describe("start-up", function () {
    it("--version prints the package version", async function () {
      const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
      const r = await runOpg(["--version"]);
      expect(r.code).to.equal(0);
      expect(r.stdout.trim()).to.equal(version);
    });

    it("--help lists every command group and the exit codes", async function () {
      const r = await runOpg(["--help"]);
      expect(r.code).to.equal(0);
      for (const group of ["zkml", "node", "data", "model", "task", "operator", "token", "dev"]) {
        expect(r.stdout).to.match(new RegExp(`^  ${group} `, "m"));
      }
      expect(r.stdout).to.match(
        /Exit codes: 0 success; 1 error .* 2 bad configuration[\s\S]* 3 disagreement/,
      );
      expect(r.stderr).to.equal("");
    });

    it("every command's --help exits 0 without loading what the command runs", async function () {
      for (const args of [
        ["task", "--help"],
        ["task", "submit", "--help"],
        ["zkml", "verify", "--help"],
        ["token", "fund", "--help"],
      ]) {
        const r = await runOpg(args);
        expect(r.code, `${args.join(" ")}: ${r.stderr}`).to.equal(0);
        expect(r.stdout).to.match(/^Usage: opg /);
      }
      const verify = await runOpg(["zkml", "verify", "--help"]);
      expect(verify.stdout.replace(/\s+/g, " ")).to.match(
        /3 when the proof is invalid, 1 when a file is missing/,
      );
    });

    it("--help loads none of ethers, snarkjs, onnxruntime, sqlite or the contract bindings", async function () {
      // A preloaded hook lists every module loaded by the time the process exits.
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "opg-modules-"));
      const hook = path.join(tmp, "hook.js");
      const out = path.join(tmp, "loaded.json");
      fs.writeFileSync(
        hook,
        `const M = require("module"); const load = M._load; const seen = new Set();
         M._load = function (r, p, i) { try { seen.add(M._resolveFilename(r, p, i)); } catch {} return load.apply(this, arguments); };
         process.on("exit", () => require("fs").writeFileSync(${JSON.stringify(out)}, JSON.stringify([...seen])));`,
      );
      const { spawnSync } = await import("node:child_process");
      for (const args of [["--help"], ["task", "submit", "--help"], ["node", "inference", "--help"]]) {
        const r = spawnSync(process.execPath, ["-r", hook, OPG_BIN, ...args], {
          cwd: ROOT,
          encoding: "utf8",
        });
        expect(r.status, r.stderr).to.equal(0);
        const loaded: string[] = JSON.parse(fs.readFileSync(out, "utf8"));
        const heavy = loaded.filter((f) =>
          /node_modules\/(ethers|snarkjs|onnxruntime-node|better-sqlite3|ffjavascript|pino)\/|typechain-types/.test(
            f,
          ),
        );
        expect(heavy, `opg ${args.join(" ")}`).to.deep.equal([]);
      }
    });

    it("says to build when the compiled program is missing", async function () {
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "opg-nobuild-"));
      fs.mkdirSync(path.join(tmp, "bin"));
      fs.copyFileSync(OPG_BIN, path.join(tmp, "bin", "opg.js"));
      const { spawnSync } = await import("node:child_process");
      const r = spawnSync(process.execPath, [path.join(tmp, "bin", "opg.js"), "--help"], {
        encoding: "utf8",
      });
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(
        /the command line is not built .*dist\/cli\/main\.js is missing.*npm run build/,
      );
      expect(hasStackTrace(r.stderr)).to.equal(false);
    });
  });

  describe("user mistakes: one line, exit 1, no stack trace", function () {
    it("an unknown command", async function () {
      expectOneLineError(await runOpg(["frobnicate"]), /^error: unknown command 'frobnicate'/);
    });

    it("an unknown flag", async function () {
      expectOneLineError(
        await runOpg(["task", "result", "1", "--bogus"]),
        /^error: unknown option '--bogus'/,
      );
    });

    it("a model id that is not a number names the model id", async function () {
      const r = await runOpg(["task", "submit", "--model", "abc", "--input", "nowhere.json"]);
      expectOneLineError(r, /^error: model id "abc" is not a non-negative integer$/m);
    });

    it("a task id that is not a number names the task id", async function () {
      expectOneLineError(await runOpg(["task", "result", "x1"]), /^error: task id "x1" is not/);
    });

    it("a transaction without OPG_PRIVATE_KEY", async function () {
      const to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
      const r = await runOpg(["token", "transfer", to, "1"], { env: NO_KEY });
      expectOneLineError(r, /^error: OPG_PRIVATE_KEY is not set: this command sends a transaction$/);
    });

    it("an amount or an address that is not one", async function () {
      const to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
      expectOneLineError(await runOpg(["token", "transfer", to, "ten"]), /amount "ten" is not an amount/);
      expectOneLineError(
        await runOpg(["token", "transfer", "0x12", "1"]),
        /recipient "0x12" is not an address/,
      );
    });

    it("an RPC endpoint that does not answer", async function () {
      const r = await runOpg(["task", "result", "1", "--rpc-url", "http://127.0.0.1:9"], {
        env: { OPG_DEPLOYMENT: path.join(ROOT, "deployments", "hardhat.json") },
      });
      expectOneLineError(
        r,
        /^error: cannot reach the JSON-RPC endpoint http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\): is the chain running\?/,
      );
    });
  });

  describe("opg token fund", function () {
    it("is refused on a chain that is not a local development chain", function () {
      expect(() => assertLocalChain(1n, "https://rpc.example")).to.throw(
        /refusing to fund accounts on chain 1 \(https:\/\/rpc\.example\): .* local development chain \(chain id 31337 or 1337\)/,
      );
      expect(() => assertLocalChain(31337n, "http://127.0.0.1:8545")).not.to.throw();
      expect(() => assertLocalChain(1337n, "http://127.0.0.1:8545")).not.to.throw();
    });
  });

  describe("opg zkml verify", function () {
    let bundle: string;
    let proofDir: string;

    before(async function () {
      this.timeout(600_000);
      bundle = await fixtureBundle(IRIS);
      proofDir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-cli-proof-"));
      const input = path.join(proofDir, "input.json");
      fs.writeFileSync(input, JSON.stringify({ input: [[5.1, 3.5, 1.4, 0.2]] }));
      const r = await runOpg([
        "zkml",
        "prove",
        bundle,
        "--input",
        input,
        "--out",
        proofDir,
        "--no-reference",
      ]);
      expect(r.code, r.stderr).to.equal(0);
    });

    it("exits 0 for a valid proof", async function () {
      const r = await runOpg(["zkml", "verify", bundle, "--proof", proofDir]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/^proof verifies/);
    });

    it("exits 1 naming the missing proof folder or file", async function () {
      const missing = path.join(proofDir, "no-such-folder");
      expectOneLineError(
        await runOpg(["zkml", "verify", bundle, "--proof", missing]),
        new RegExp(`^error: ${missing.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} not found$`),
      );
      const partial = fs.mkdtempSync(path.join(os.tmpdir(), "opg-cli-partial-"));
      fs.copyFileSync(path.join(proofDir, "proof.json"), path.join(partial, "proof.json"));
      expectOneLineError(
        await runOpg(["zkml", "verify", bundle, "--proof", partial]),
        /^error: .*public\.json not found$/,
      );
    });

    it("exits 3 for a tampered proof", async function () {
      const tampered = fs.mkdtempSync(path.join(os.tmpdir(), "opg-cli-tampered-"));
      for (const f of ["proof.json", "public.json"]) {
        fs.copyFileSync(path.join(proofDir, f), path.join(tampered, f));
      }
      const publicSignals: string[] = JSON.parse(fs.readFileSync(path.join(tampered, "public.json"), "utf8"));
      publicSignals[publicSignals.length - 1] = String(BigInt(publicSignals[publicSignals.length - 1]) + 1n);
      fs.writeFileSync(path.join(tampered, "public.json"), JSON.stringify(publicSignals));
      const r = await runOpg(["zkml", "verify", bundle, "--proof", tampered]);
      expect(r.code, r.stderr).to.equal(3);
      expect(r.stderr).to.match(/^verification FAILED: /);
      expect(hasStackTrace(r.stderr)).to.equal(false);
    });
  });
});
