import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { account, startNetwork, stopAllSpawned, type Network } from "../../scripts/lib/local-network";
import { ensureCliBuilt, hasStackTrace, runOpg, type OpgRun } from "../helpers/cli";

/** `opg task result` and `opg token` against a hardhat node with a fresh deployment, as child processes. */
describe("opg on a local chain (hardhat node + deployment)", function () {
  this.timeout(600_000);
  let net: Network;
  let conn: string[];
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
});
