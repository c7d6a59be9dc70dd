import { spawnSync } from "node:child_process";
import path from "node:path";
import { fail } from "../errors";
import { packageRoot } from "./paths";

export interface CircomCompiler {
  kind: "native" | "circom2";
  version: string;
  command: string[];
}

let found: CircomCompiler | undefined;

/** A native `circom` on PATH when present (faster), else the circom2 WebAssembly build from npm. */
export function findCircom(): CircomCompiler {
  if (found) return found;
  if (process.env.OPG_CIRCOM !== "circom2") {
    const native = spawnSync("circom", ["--version"], { encoding: "utf8" });
    if (native.status === 0) {
      found = { kind: "native", version: native.stdout.trim(), command: ["circom"] };
      return found;
    }
  }
  const cli = require.resolve("circom2/cli.js");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const version = `circom2 ${require("circom2/package.json").version} (circom 2.2.x, WebAssembly)`;
  found = { kind: "circom2", version, command: [process.execPath, cli] };
  return found;
}

/**
 * Compiles `circuitFile` to R1CS and witness wasm in `outDir` with --O2 (linear constraints substituted
 * away, which is what makes weight multiplies free). circom2 runs under WASI and only sees paths relative
 * to its working directory, so it runs from the package root with relative include paths.
 */
export function compileCircom(
  circuitFile: string,
  outDir: string,
  log: (m: string) => void,
  opts: { sym?: boolean } = {},
): { stdout: string } {
  const root = packageRoot();
  const compiler = findCircom();
  const circomlibRoot = path.dirname(path.dirname(require.resolve("circomlib/package.json")));
  const rel = (p: string): string => path.relative(root, p) || ".";
  const args = [
    rel(circuitFile),
    "--r1cs",
    "--wasm",
    "--O2",
    ...(opts.sym ? ["--sym"] : []),
    "-l",
    rel(circomlibRoot),
    "-l",
    rel(path.join(root, "circuits", "lib")),
    "-o",
    rel(outDir),
  ];
  log(`compiling circuit with ${compiler.version}`);
  const res = spawnSync(compiler.command[0], [...compiler.command.slice(1), ...args], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  const output = `${res.stdout ?? ""}${res.stderr ?? ""}`;
  if (res.status !== 0) {
    // eslint-disable-next-line no-control-regex
    const clean = output.replace(/\x1b\[[0-9;]*m/g, "").trim();
    fail("TOOLCHAIN", `circom failed (exit ${res.status}):\n${clean.split("\n").slice(-30).join("\n")}`);
  }
  return { stdout: output };
}
