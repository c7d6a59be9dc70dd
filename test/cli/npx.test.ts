import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ROOT } from "../helpers/cli";

/**
 * `npx opg` in the checkout, as the README has a new user type it: it runs the local build through
 * node_modules/.bin (no install into npx's cache: the checkout's package.json declares no bin) and npm adds
 * nothing to its output (no "Unknown project config" warning from a stray .npmrc key).
 */
describe("npx opg in the checkout", function () {
  it("prints the version, and npm prints no warning", function () {
    const r = spawnSync("npx", ["opg", "--version"], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).to.equal(0);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
    expect(r.stdout.trim()).to.equal(pkg.version);
    expect(r.stderr).to.not.match(/npm warn/i);
  });

  it("resolves through node_modules/.bin/opg, not a bin of the checkout's own package.json", function () {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
    expect(pkg.bin, "a bin here makes npx install the checkout into its cache on every call").to.equal(
      undefined,
    );
    expect(pkg.devDependencies["opg-local-bin"]).to.equal("file:cli/npx");
    const link = path.join(ROOT, "node_modules", ".bin", "opg");
    expect(fs.realpathSync(link)).to.equal(path.join(ROOT, "cli", "npx", "opg.js"));
  });
});
