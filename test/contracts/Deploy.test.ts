import { expect } from "chai";
import { ethers } from "hardhat";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { DEFAULT_ECONOMY_PARAMS, OPG_SUPPLY, deployProtocol } from "../../network/deploy";
import { deploySettings } from "../../network/deploy-settings";

describe("deployProtocol", function () {
  it("wires the market and leaves every setter with the timelock", async function () {
    const [deployer, treasury] = await ethers.getSigners();
    const d = await deployProtocol(deployer, { ...DEFAULT_ECONOMY_PARAMS, treasury: treasury.address });
    const timelock = await d.timelock.getAddress();
    expect(await d.staking.owner()).to.equal(timelock);
    expect(await d.tasks.owner()).to.equal(timelock);
    expect(await d.staking.isCollateralManager(d.tasksAddress)).to.equal(true);
    expect(await d.staking.isSlasher(d.tasksAddress)).to.equal(true);
    expect(await d.timelock.hasRole(await d.timelock.DEFAULT_ADMIN_ROLE(), deployer.address)).to.equal(false);
    expect(
      await d.timelock.hasRole(await d.timelock.PROPOSER_ROLE(), await d.governor.getAddress()),
    ).to.equal(true);
    await expect(d.tasks.setFeeShares(0, 0))
      .to.be.revertedWithCustomError(d.tasks, "OwnableUnauthorizedAccount")
      .withArgs(deployer.address);
  });
});

describe("scripts/deploy.ts", function () {
  it("names the endpoint and OPG_RPC_URL when no chain answers (exit 1)", async function () {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (server.address() as net.AddressInfo).port;
        server.close(() => resolve(p));
      });
    });
    const root = path.join(__dirname, "..", "..");
    const child = spawn(
      process.execPath,
      [
        path.join(root, "node_modules", "hardhat", "internal", "cli", "bootstrap.js"),
        "run",
        "scripts/deploy.ts",
      ].concat(["--network", "localhost"]),
      { cwd: root, env: { ...process.env, OPG_RPC_URL: `http://127.0.0.1:${port}` } },
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, stderr).to.equal(1);
    expect(stderr).to.include(`No JSON-RPC endpoint answers at http://127.0.0.1:${port}`);
    expect(stderr).to.include("OPG_RPC_URL");
  });
});

describe("deploySettings", function () {
  const deployer = "0x00000000000000000000000000000000000000d1";
  const treasury = "0x00000000000000000000000000000000000000aa";
  const operator = "0x00000000000000000000000000000000000000bb";

  function distributionFile(content: unknown): string {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "opg-dist-")), "distribution.json");
    fs.writeFileSync(file, JSON.stringify(content));
    return file;
  }

  it("defaults treasury and supply to the deployer on a local chain", function () {
    const settings = deploySettings({ network: "localhost", chainId: 31337n, deployer, env: {} });
    expect(settings.treasury).to.equal(ethers.getAddress(deployer));
    expect(settings.distribution).to.deep.equal({ recipients: [deployer], amounts: [OPG_SUPPLY] });
  });

  it("refuses a non-local network without an explicit treasury and distribution", function () {
    for (const env of [{}, { OPG_TREASURY: treasury }, { OPG_DISTRIBUTION: distributionFile({}) }]) {
      expect(() => deploySettings({ network: "testnet", chainId: 11155111n, deployer, env })).to.throw(
        /refusing to deploy to testnet .* without an explicit treasury and token distribution/,
      );
    }
    // A "localhost" that is really another chain is not local either.
    expect(() => deploySettings({ network: "localhost", chainId: 1n, deployer, env: {} })).to.throw(
      /refusing/,
    );
  });

  it("reads a distribution that adds up to the supply, and names what is wrong with one that does not", function () {
    const good = distributionFile({ [treasury]: "600000000", [operator]: "400000000" });
    const settings = deploySettings({
      network: "testnet",
      chainId: 11155111n,
      deployer,
      env: { OPG_TREASURY: treasury, OPG_DISTRIBUTION: good },
    });
    expect(settings.treasury).to.equal(ethers.getAddress(treasury));
    expect(settings.distribution.amounts.reduce((a, b) => a + b, 0n)).to.equal(OPG_SUPPLY);
    const cases: [unknown, RegExp][] = [
      [{ [treasury]: "1" }, /adds up to 1\.0 OPG, not the supply/],
      [{ nope: "1000000000" }, /nope is not a non-zero address/],
      [{ [treasury]: "lots" }, /not a number of OPG/],
      [[treasury], /must be a JSON object/],
    ];
    for (const [content, message] of cases) {
      const env = { OPG_TREASURY: treasury, OPG_DISTRIBUTION: distributionFile(content) };
      expect(() => deploySettings({ network: "testnet", chainId: 11155111n, deployer, env })).to.throw(
        message,
      );
    }
  });
});
