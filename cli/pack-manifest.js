// `npm pack` / `npm publish` steps (prepack: add, postpack: remove): the packed package.json declares the
// `opg` command, the checkout's does not. npm runs a command its own project declares by installing the
// project into npx's cache first (1.5 s and more per `npx opg`); without the declaration, `npx opg` in the
// checkout finds node_modules/.bin/opg (the cli/npx devDependency) and starts in a fraction of that.
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- a plain Node script */
const fs = require("node:fs");
const path = require("node:path");

const file = path.join(__dirname, "..", "package.json");
const BIN = { opg: "bin/opg.js" };
const mode = process.argv[2];
const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
if (mode === "add") {
  // Insert "bin" after "types" so the packed manifest reads naturally.
  const out = {};
  for (const [k, v] of Object.entries(pkg)) {
    if (k === "bin") continue;
    out[k] = v;
    if (k === "types") out.bin = BIN;
  }
  if (!out.bin) out.bin = BIN;
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
} else if (mode === "remove") {
  delete pkg.bin;
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
} else {
  process.stderr.write("usage: node cli/pack-manifest.js add|remove\n");
  process.exit(1);
}
