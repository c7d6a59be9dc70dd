import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * The package's layout: what `opg`, the SDK, the nodes and the TEE code load lives in the folders that
 * tsconfig.build.json compiles into dist/. scripts/ holds the deploy entry, benchmarks, the demo and helpers
 * for them and for tests; no product module imports from it (network/ is where deploying the protocol,
 * registering models and running a local network live).
 */
const ROOT = path.join(__dirname, "..", "..");
const PRODUCT = ["cli", "sdk", "workers", "zkml", "tee", "network"];
const SOURCE = /\.(ts|js|mjs|cjs)$/;

/**
 * The module specifiers a source file names: `import ... from "x"`, `export ... from "x"`, `import "x"`,
 * `import("x")`, `require("x")`, `require.resolve("x")` and `import x = require("x")`.
 */
export function moduleSpecifiers(text: string): string[] {
  const patterns = [
    /\b(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire(?:\.resolve)?\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  const found: string[] = [];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1]);
  return found;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.endsWith("_js")) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(full));
    else if (entry.isFile() && SOURCE.test(entry.name) && !entry.name.endsWith(".d.ts")) out.push(full);
  }
  return out;
}

/** The files under `folders` of `root` with an import that resolves into its scripts/, as "file: specifier". */
function importsFromScripts(root: string, folders: string[]): string[] {
  const scripts = path.join(root, "scripts");
  const offenders: string[] = [];
  for (const folder of folders) {
    for (const file of sourceFiles(path.join(root, folder))) {
      for (const spec of moduleSpecifiers(fs.readFileSync(file, "utf8"))) {
        if (!spec.startsWith(".")) continue;
        const target = path.resolve(path.dirname(file), spec);
        if (target === scripts || target.startsWith(scripts + path.sep))
          offenders.push(`${path.relative(root, file)}: ${spec}`);
      }
    }
  }
  return offenders;
}

describe("package layout", function () {
  it("finds every form of import the scan looks for", function () {
    const text = [
      'import { a } from "../scripts/lib/one";',
      'import type {\n  B,\n  C,\n} from "../scripts/lib/two";',
      'export { d } from "./three";',
      'import "./four";',
      'const e = await import("../five");',
      'const f = require("six");',
      'const g = require.resolve("seven/cli.js");',
      'import h = require("../eight");',
    ].join("\n");
    expect(moduleSpecifiers(text)).to.have.members([
      "../scripts/lib/one",
      "../scripts/lib/two",
      "./three",
      "./four",
      "../five",
      "six",
      "seven/cli.js",
      "../eight",
    ]);
    // The scan reads the real tree: the CLI's `opg dev` group comes from network/.
    const main = moduleSpecifiers(fs.readFileSync(path.join(ROOT, "cli", "main.ts"), "utf8"));
    expect(main).to.include("../network/devnet-cli");
  });

  it("no module under cli, sdk, workers, zkml, tee or network imports from scripts/", function () {
    const offenders = importsFromScripts(ROOT, PRODUCT);
    expect(
      offenders,
      `these import from scripts/ (move what they need into network/):\n${offenders.join("\n")}`,
    ).to.be.empty;
  });

  it("flags a file that does import from scripts/", function () {
    // A copy of the layout in a temporary folder, so that no build of the real tree sees the bad file.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-layout-"));
    try {
      fs.mkdirSync(path.join(dir, "network", "deep"), { recursive: true });
      fs.writeFileSync(path.join(dir, "network", "good.ts"), 'import { x } from "../zkml";\n');
      fs.writeFileSync(
        path.join(dir, "network", "deep", "bad.ts"),
        'import { RpcProxy } from "../../scripts/lib/rpc-proxy";\n',
      );
      fs.writeFileSync(
        path.join(dir, "network", "worse.js"),
        'const { sleep } = require("../scripts/util");\n',
      );
      expect(importsFromScripts(dir, ["network"])).to.have.members([
        `${path.join("network", "deep", "bad.ts")}: ../../scripts/lib/rpc-proxy`,
        `${path.join("network", "worse.js")}: ../scripts/util`,
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the compiled build takes network/ and nothing from scripts/", function () {
    const build = JSON.parse(fs.readFileSync(path.join(ROOT, "tsconfig.build.json"), "utf8")) as {
      include: string[];
    };
    expect(build.include).to.include("network");
    expect(build.include.filter((p) => p === "scripts" || p.startsWith("scripts/"))).to.be.empty;
  });
});
