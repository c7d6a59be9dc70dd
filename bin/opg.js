#!/usr/bin/env node
// The `opg` command line: a shim over the compiled program in dist/ (built by `npm run build`, which
// `npm ci` and `npm install` run through the `prepare` script).
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS shim */
const fs = require("node:fs");
const path = require("node:path");

const main = path.join(__dirname, "..", "dist", "cli", "main.js");
if (!fs.existsSync(main)) {
  process.stderr.write(
    `opg: the command line is not built (${path.relative(process.cwd(), main) || main} is missing): ` +
      `run \`npm run build\` in ${path.join(__dirname, "..")}\n`,
  );
  process.exit(1);
}
let program;
try {
  program = require(main);
} catch (e) {
  // A partial or stale build (a module missing from dist/): one line, the stack only on request.
  process.stderr.write(
    process.env.OPG_DEBUG
      ? `${e.stack}\n`
      : `opg: cannot load the compiled command line (${e.message.split("\n")[0]}): run \`npm run build\`\n`,
  );
  process.exit(1);
}
program.main(process.argv);
