// Execution process entry: strangers' models run here, under the node's time and memory limits
// (workers/runtime/sandbox.ts), so the node's event loop keeps serving while they run.
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS shim that loads the TypeScript sources */
const path = require("node:path");
require("ts-node").register({
  transpileOnly: true,
  project: path.join(__dirname, "..", "..", "tsconfig.json"),
});
require("./exec-worker-impl.ts");
