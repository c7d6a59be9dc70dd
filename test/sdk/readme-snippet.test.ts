import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "ethers";
import {
  account,
  fixtureBundle,
  publishModel,
  ROOT,
  stakeNode,
  startInferenceNode,
  startNetwork,
  stopAllSpawned,
  type Network,
  type Proc,
} from "../../network/local-network";
import { ensureCliBuilt } from "../helpers/cli";
import { executeQuantized, loadProgram } from "../../zkml";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
/** The compile command the README gives for the snippet (checked to be there, then run as written). */
const TSC_FLAGS = ["--module", "nodenext", "--target", "es2022", "--strict", "--skipLibCheck"];
const FILE = "opg-example.ts";

/** The ```ts block after the `<!-- sdk-snippet -->` marker in README.md, exactly as written there. */
function readmeSnippet(): string {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const marker = readme.indexOf("<!-- sdk-snippet -->");
  expect(marker, "README.md has the <!-- sdk-snippet --> marker").to.be.greaterThan(-1);
  const block = /```ts\n([\s\S]*?)\n```/.exec(readme.slice(marker));
  expect(block, "a ```ts block follows the marker").to.not.equal(null);
  expect(readme).to.include(`npx tsc ${TSC_FLAGS.join(" ")} ${FILE}`);
  return block![1] + "\n";
}

/** Run `cmd` to its end in `cwd`; the bound only fails a process that never ends (it is then killed). */
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, boundMs = 300_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const bound = setTimeout(() => {
      stderr += `\n(still running after ${boundMs} ms: killed)`;
      child.kill("SIGKILL");
    }, boundMs);
    child.on("exit", (code) => {
      clearTimeout(bound);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A throwaway project in the OS temp directory, as a dapp developer sets one up: `"type": "module"`, the
 * package as `npm pack` ships it in node_modules/opg-network, and its dependencies (ethers, the peer, and
 * @types/node for the compile) linked from this repository's node_modules so that nothing is downloaded.
 */
function userProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-readme-snippet-"));
  // What `npm pack` runs around packing (prepack/postpack in package.json), without its prepare step (the
  // build, which ensureCliBuilt has done): the packed manifest declares the `opg` command.
  const manifest = (step: string) =>
    expect(spawnSync(process.execPath, ["cli/pack-manifest.js", step], { cwd: ROOT }).status).to.equal(0);
  manifest("add");
  let packed;
  try {
    packed = spawnSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
      cwd: ROOT,
      encoding: "utf8",
    });
  } finally {
    manifest("remove");
  }
  expect(packed.status, packed.stderr).to.equal(0);
  const [{ filename }] = JSON.parse(packed.stdout) as { filename: string }[];
  const pkgDir = path.join(dir, "node_modules", "opg-network");
  fs.mkdirSync(pkgDir, { recursive: true });
  const untar = spawnSync("tar", ["-xzf", path.join(dir, filename), "-C", pkgDir, "--strip-components=1"]);
  expect(untar.status, String(untar.stderr)).to.equal(0);
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
  const links = [
    ...Object.keys(pkg.dependencies ?? {}),
    ...Object.keys(pkg.peerDependencies ?? {}),
    "@types/node",
  ];
  for (const name of new Set(links)) {
    const link = path.join(dir, "node_modules", name);
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.symlinkSync(path.join(ROOT, "node_modules", name), link, "dir");
  }
  fs.writeFileSync(
    path.join(dir, "package.json"),
    JSON.stringify({ name: "my-dapp", private: true, type: "module" }, null, 2),
  );
  return dir;
}

describe("README: Use it from a dapp (the snippet, run as a user runs it)", function () {
  this.timeout(900_000);
  let project: string;
  let net: Network;
  let node: Proc;
  let modelId: bigint;
  let bundleDir: string;

  before(async function () {
    ensureCliBuilt(); // dist/ as `npm run build` makes it (rebuilt when a source is newer)
    project = userProject();
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    ({ modelId } = await publishModel(net, bundleDir, ethers.parseEther("1")));
    await stakeNode(net, 5);
    await (
      await net.deployment.token.connect(net.deployer).transfer(account(3).address, ethers.parseEther("10"))
    ).wait();
    node = startInferenceNode(net, 5, path.join(net.tmp, "inference"));
  });

  after(async function () {
    await node?.stop().catch(() => undefined);
    await stopAllSpawned();
    await net?.stop();
    if (project) fs.rmSync(project, { recursive: true, force: true });
  });

  it("the package ships the SDK's build and types, and no sources or tests", function () {
    const pkgDir = path.join(project, "node_modules", "opg-network");
    const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
    expect(pkg.exports["."]).to.deep.equal({
      types: "./dist/sdk/index.d.ts",
      default: "./dist/sdk/index.js",
    });
    expect(pkg.peerDependencies).to.have.property("ethers");
    for (const f of ["dist/sdk/index.js", "dist/sdk/index.d.ts", "dist/sdk/client.d.ts"]) {
      expect(fs.existsSync(path.join(pkgDir, f)), f).to.equal(true);
    }
    expect(fs.existsSync(path.join(pkgDir, "sdk", "client.ts"))).to.equal(false);
    expect(fs.existsSync(path.join(pkgDir, "test"))).to.equal(false);
    // The packed package has the `opg` command and it runs from the package alone; the checkout's own
    // manifest does not declare it (npx would install the checkout into its cache on every call).
    expect(pkg.bin).to.deep.equal({ opg: "bin/opg.js" });
    const version = spawnSync(process.execPath, [path.join(pkgDir, "bin", "opg.js"), "--version"], {
      cwd: project,
      encoding: "utf8",
    });
    expect(version.status, version.stderr).to.equal(0);
    expect(version.stdout.trim()).to.equal(pkg.version);
    expect(JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).bin).to.equal(undefined);
  });

  it("compiles against the package's declarations and runs to a verified, audited task, then exits", async function () {
    fs.writeFileSync(path.join(project, FILE), readmeSnippet());
    const tsc = require.resolve("typescript/bin/tsc");
    const compiled = await run(process.execPath, [tsc, ...TSC_FLAGS, FILE], project, process.env);
    expect(compiled.code, `tsc:\n${compiled.stdout}${compiled.stderr}`).to.equal(0);

    const input = JSON.parse(
      fs.readFileSync(path.join(ROOT, IRIS.replace("_mlp.onnx", "_input.json")), "utf8"),
    ).input as number[][];
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      OPG_RPC_URL: net.chain.url,
      OPG_PRIVATE_KEY: account(3).privateKey,
      OPG_DEPLOYMENT: net.deploymentFile,
      OPG_DATA_URL: net.data.url,
      OPG_MODEL: String(modelId),
      OPG_INPUT: JSON.stringify(input),
    };
    // Awaited on its own exit: the script must end by itself (close() stops what the audit started).
    const ran = await run(process.execPath, [FILE.replace(/\.ts$/, ".js")], project, env);
    const shown = `exit ${ran.code}\nstdout:\n${ran.stdout}\nstderr:\n${ran.stderr}`;
    expect(ran.code, shown).to.equal(0);
    const expected = executeQuantized(loadProgram(bundleDir), input.flat());
    const argmax = expected.output.indexOf(Math.max(...expected.output));
    const lines = ran.stdout.trim().split("\n");
    expect(lines, shown).to.deep.equal([
      `task 1: class ${argmax}, output ${expected.output.map((v) => v.toFixed(3)).join(" ")}`,
      "audit agrees",
    ]);
    // onStatus said what it waited for before the result came: a ZK task is not claimed, it waits for the
    // first node in its service order (node 5, the only one staked)
    expect(ran.stderr, shown).to.match(
      /^task 1: open, waiting for the first node in its service order to settle it with a proof \(1 eligible inference node staked\)/m,
    );
    expect(ran.stderr, shown).to.not.match(/claimed/);
    expect(await net.deployment.tasks.taskStatus(1)).to.equal(3n);
  });
});
