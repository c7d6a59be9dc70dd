#!/usr/bin/env node
// The `opg` command line. Commands are written in TypeScript and loaded through ts-node (transpile only,
// no type check at run time). Each area registers its own subcommands on the commander program below.
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS shim that loads the TypeScript sources */
const path = require("node:path");

require("ts-node").register({
  transpileOnly: true,
  project: path.join(__dirname, "..", "tsconfig.json"),
});

const { Command } = require("commander");

const program = new Command();
program.name("opg").description("OPG verifiable inference network tools").showHelpAfterError();

require("../zkml/cli").registerZkmlCommands(program);
require("../workers/cli").registerWorkerCommands(program);
require("../sdk/cli").registerClientCommands(program);

program.parseAsync(process.argv).catch((e) => {
  process.stderr.write(`error: ${e.message}\n`);
  process.exitCode = 1;
});
