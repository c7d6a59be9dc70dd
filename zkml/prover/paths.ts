import fs from "node:fs";
import path from "node:path";

/** The package root: the folder holding package.json, circuits/lib and node_modules. */
export function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("package root not found");
    dir = up;
  }
  return dir;
}

/** Where development ptau files are cached (OPG_CACHE_DIR, else .opg/cache under the package root). */
export function cacheDir(): string {
  return process.env.OPG_CACHE_DIR ?? path.join(packageRoot(), ".opg", "cache");
}
