import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import {
  account,
  fixtureBundle,
  publishModel,
  startNetwork,
  stopAllSpawned,
  type Network,
} from "../../network/local-network";
import { ensureCliBuilt, hasStackTrace, runOpg, type OpgRun } from "../helpers/cli";

/** `opg task result` and `opg token` against a hardhat node with a fresh deployment, as child processes. */
describe("opg on a local chain (hardhat node + deployment)", function () {
  this.timeout(600_000);
  let net: Network;
  let conn: string[];
  let modelId: bigint;
  const alice = account(7);
  const bob = account(8);

  const ok = (r: OpgRun) => {
    expect(r.code, r.stderr).to.equal(0);
    return JSON.parse(r.stdout);
  };
  const failsWith = (r: OpgRun, pattern: RegExp) => {
    expect(r.code, r.stderr + r.stdout).to.equal(1);
    expect(r.stderr.trim()).to.match(pattern);
    expect(r.stderr.trim().split("\n")).to.have.length(1);
    expect(hasStackTrace(r.stderr)).to.equal(false);
  };

  before(async function () {
    ensureCliBuilt();
    net = await startNetwork();
    conn = ["--rpc-url", net.chain.url, "--deployment", net.deploymentFile, "--data-url", net.data.url];
    // published first: `opg token fund` sends from the deployer too, behind its NonceManager's back
    ({ modelId } = await publishModel(
      net,
      await fixtureBundle("test/fixtures/models/iris_mlp.onnx"),
      10n ** 18n,
    ));
  });

  after(async function () {
    await net?.stop();
    await stopAllSpawned();
  });

  describe("opg task result", function () {
    it("names a task that does not exist and how many there are (exit 1)", async function () {
      failsWith(
        await runOpg(["task", "result", "999", ...conn]),
        /^error: task 999 does not exist; the registry has 0 tasks$/,
      );
      failsWith(await runOpg(["task", "audit", "0", ...conn]), /^error: task 0 does not exist/);
    });
  });

  describe("opg token", function () {
    it("fund gives an account OPG from the local deployer and sets its ETH", async function () {
      const r = ok(
        await runOpg(["token", "fund", alice.address, "--opg", "25", "--eth", "3", ...conn], {
          env: { OPG_PRIVATE_KEY: undefined },
        }),
      );
      expect(r).to.include({ address: alice.address, opgSent: "25.0", opg: "25.0", eth: "3.0" });
      expect(r.from).to.equal(account(0).address);
    });

    it("balance shows wallet OPG, credits and stake, for an address or OPG_PRIVATE_KEY's", async function () {
      const byAddress = ok(await runOpg(["token", "balance", alice.address, ...conn]));
      expect(byAddress).to.include({ address: alice.address, opg: "25.0", credits: "0.0", staked: "0.0" });
      const byKey = ok(
        await runOpg(["token", "balance", ...conn], { env: { OPG_PRIVATE_KEY: alice.privateKey } }),
      );
      expect(byKey).to.deep.equal(byAddress);
    });

    it("transfer sends OPG amounts such as 0.5", async function () {
      const env = { OPG_PRIVATE_KEY: alice.privateKey };
      const r = ok(await runOpg(["token", "transfer", bob.address, "0.5", ...conn], { env }));
      expect(r).to.include({ from: alice.address, to: bob.address, amount: "0.5" });
      expect(ok(await runOpg(["token", "balance", bob.address, ...conn])).opg).to.equal("0.5");
      expect(ok(await runOpg(["token", "balance", alice.address, ...conn])).opg).to.equal("24.5");
    });

    it("transfer refuses more than the wallet holds, naming both amounts", async function () {
      const env = { OPG_PRIVATE_KEY: bob.privateKey };
      failsWith(
        await runOpg(["token", "transfer", alice.address, "7", ...conn], { env }),
        new RegExp(`^error: ${bob.address} holds 0\\.5 OPG, cannot send 7$`),
      );
    });

    it("fund from OPG_PRIVATE_KEY says how to fund from the deployer when that key holds too little", async function () {
      failsWith(
        await runOpg(["token", "fund", alice.address, "--opg", "100", ...conn], {
          env: { OPG_PRIVATE_KEY: bob.privateKey },
        }),
        /holds 0\.5 OPG, cannot give 100 \(unset OPG_PRIVATE_KEY to fund from the local deployer\)$/,
      );
    });

    it("a deployment file of another chain is named, not a decoding error", async function () {
      const other = path.join(net.tmp, "other-chain.json");
      const d = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
      fs.writeFileSync(other, JSON.stringify({ ...d, chainId: 5 }));
      failsWith(
        await runOpg(["token", "balance", alice.address, "--rpc-url", net.chain.url, "--deployment", other]),
        /^error: deployment file .*other-chain\.json is for chain 5 but .* serves chain 31337/,
      );
    });
  });
  describe("opg task submit --wait", function () {
    it("says on stderr what it waits for and why, then names the last situation at the timeout", async function () {
      const dapp = account(9);
      ok(
        await runOpg(["token", "fund", dapp.address, "--opg", "10", ...conn], {
          env: { OPG_PRIVATE_KEY: undefined },
        }),
      );
      const input = path.join(net.tmp, "iris-input.json");
      fs.writeFileSync(input, JSON.stringify({ input: [[5.1, 3.5, 1.4, 0.2]] }));
      const r = await runOpg(
        [
          "task",
          "submit",
          "--model",
          String(modelId),
          "--input",
          input,
          "--wait",
          "--timeout-seconds",
          "3",
          ...conn,
        ],
        { env: { OPG_PRIVATE_KEY: dapp.privateKey } },
      );
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.match(/^task 1 submitted in zk mode in 0x[0-9a-f]{64}$/m);
      // no node is staked in this network: the wait says so, with the elapsed seconds (a ZK task is served,
      // not claimed)
      expect(r.stderr).to.match(/^\[\d+s\] open, but no eligible node is staked: .*nobody can serve it/m);
      expect(r.stderr.trim().split("\n").at(-1)).to.match(
        /^error: .*no result after 3000 ms, .*no eligible node/,
      );
      expect(hasStackTrace(r.stderr)).to.equal(false);
      const status = ok(await runOpg(["task", "result", "1", ...conn]));
      expect(status).to.include({ taskId: "1", status: "Open" });
      failsWith(
        await runOpg(["task", "result", "2", ...conn]),
        /^error: task 2 does not exist; the registry has 1 task \(ids 1 to 1\)$/,
      );
    });
  });
});
