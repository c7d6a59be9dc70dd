import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = path.dirname(fileURLToPath(import.meta.url));

// The explorer page: built into dist/explorer by `npm run build` (so `npm ci` and `npm test` build it) and
// served by `opg explorer`. Everything it runs is bundled here: no CDN, no request but to the RPC, the data
// node and the nodes' metrics endpoints the user points it at.
export default defineConfig({
  root: here,
  base: "./",
  logLevel: "warn",
  build: {
    outDir: path.join(here, "..", "dist", "explorer"),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
  },
});
