#!/usr/bin/env node
// `npx opg` inside this checkout: node_modules/.bin/opg points here (see cli/npx/package.json).
"use strict";
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS shim */
require("../../bin/opg.js");
