// Prover process entry: proving runs here so the node's event loop stays free for the chain and HTTP.
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS shim that loads the TypeScript sources */
const path = require("node:path");
require("ts-node").register({
  transpileOnly: true,
  project: path.join(__dirname, "..", "..", "tsconfig.json"),
});
require("./prove-worker-impl.ts");
