/**
 * npm run explorer:screenshots — the explorer's main views as PNGs in docs/explorer/, from a local chain with
 * real tasks (scripts/lib/explorer-chain.ts: two inference nodes, a verification node, two models, ZK tasks
 * with Groth16 proofs and a few optimistic ones), in Debian's headless Chromium at 1400x900:
 *
 *   overview.png  plots (tasks and fees over time, latency, tasks per node, proof times from nodes' metrics)
 *   tasks.png     the task list
 *   task.png      a verified ZK task: its timeline and every check passed (proof re-verified in the page)
 *   nodes.png     the nodes
 *   models.png    the models
 *   tamper.png    the same task read through a data node that swapped the bundle's verification key: the
 *                 hash checks fail
 *
 * SCREENSHOT_TASKS sets the number of tasks (default 60).
 */
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import zlib from "node:zlib";
import type { Page } from "playwright-core";
import { packBundle, bundleArchiveId } from "../workers/data/bundle-archive";
import { buildExplorerChain, launchChromium, type ExplorerChain } from "./lib/explorer-chain";
import { lyingDataNodeHandler, swapVerificationKey } from "./lib/forged-bundle";
import { fixtureBundle, ROOT, sleep } from "../network/local-network";

const TASKS = Number(process.env.SCREENSHOT_TASKS ?? 60);
const OUT = path.join(ROOT, "docs", "explorer");
const VIEWPORT = { width: 1400, height: 900 };
const TIMEOUT_MS = 120_000;

// Runs in the page (page.evaluate): the browser's global, declared in this module only.
declare const document: {
  documentElement: { scrollHeight: number };
  querySelector(s: string): { getBoundingClientRect(): { bottom: number } } | null;
};
declare const window: { scrollY: number };
declare const location: { hash: string };

const t0 = Date.now();
const say = (msg: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}`);

/** A data node that lies about one bundle (scripts/lib/forged-bundle.ts), on a port of its own. */
async function lyingDataNode(upstream: string, bundleId: string, forged: Buffer) {
  const server = http.createServer(lyingDataNodeHandler(upstream, bundleId, forged));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Re-encode a PNG (8-bit RGB or RGBA, not interlaced, as Chromium writes them) with a palette of the 256
 * most frequent colours, every other colour mapped to its nearest: the page's flat panels and anti-aliased
 * text lose nothing visible, and the file is a fraction of the size (no image tool needed).
 */
export function palettePng(png: Buffer): Buffer {
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  const [depth, type, interlace] = [png[24], png[25], png[28]];
  if (depth !== 8 || (type !== 2 && type !== 6) || interlace !== 0) return png;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    if (png.toString("latin1", at + 4, at + 8) === "IDAT") idat.push(png.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const bpp = type === 6 ? 4 : 3;
  const stride = width * bpp;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : Buffer.alloc(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? row[i - bpp] : 0;
      const b = up[i];
      const c = i >= bpp ? up[i - bpp] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) {
        const pa = Math.abs(b - c);
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[i] = (src[i] + p) & 0xff;
    }
  }
  // Colours by frequency (alpha dropped: the page is opaque).
  const counts = new Map<number, number>();
  for (let i = 0; i < pixels.length; i += bpp) {
    const rgb = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
    counts.set(rgb, (counts.get(rgb) ?? 0) + 1);
  }
  const palette = [...counts.entries()]
    .sort((x, y) => y[1] - x[1])
    .slice(0, 256)
    .map(([rgb]) => rgb);
  const index = new Map<number, number>(palette.map((rgb, k) => [rgb, k]));
  const nearest = (rgb: number) => {
    let best = 0;
    let bestD = Infinity;
    for (let k = 0; k < palette.length; k++) {
      const p = palette[k];
      const dr = ((p >> 16) & 0xff) - ((rgb >> 16) & 0xff);
      const dg = ((p >> 8) & 0xff) - ((rgb >> 8) & 0xff);
      const db = (p & 0xff) - (rgb & 0xff);
      const d = 3 * dr * dr + 4 * dg * dg + 2 * db * db;
      if (d < bestD) [best, bestD] = [k, d];
    }
    return best;
  };
  const out = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * stride + x * bpp;
      const rgb = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
      let k = index.get(rgb);
      if (k === undefined) index.set(rgb, (k = nearest(rgb)));
      out[y * (width + 1) + 1 + x] = k;
    }
  }
  const chunk = (name: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(name, 4, "latin1");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 3, 0, 0, 0], 8);
  const plte = Buffer.alloc(palette.length * 3);
  palette.forEach((rgb, k) => plte.set([(rgb >> 16) & 0xff, (rgb >> 8) & 0xff, rgb & 0xff], k * 3));
  return Buffer.concat([
    png.subarray(0, 8),
    chunk("IHDR", ihdr),
    chunk("PLTE", plte),
    chunk("IDAT", zlib.deflateSync(out, { level: 9 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/**
 * Write `name`.png: the page from the top down to the end of its content (the footer), at most the viewport's
 * height, or with `fullPage` at most `maxHeight` (default 1800) px.
 */
async function shoot(page: Page, name: string, opts: { fullPage?: boolean; maxHeight?: number } = {}) {
  // Let the layout settle (fonts, a last poll), then write the PNG.
  await sleep(800);
  const file = path.join(OUT, `${name}.png`);
  const content: number = await page.evaluate(() => {
    const footer = document.querySelector("footer");
    return footer
      ? Math.ceil(footer.getBoundingClientRect().bottom + window.scrollY) + 8
      : document.documentElement.scrollHeight;
  });
  const height = Math.min(content, opts.fullPage ? (opts.maxHeight ?? 1800) : VIEWPORT.height);
  const png = await page.screenshot({
    type: "png",
    fullPage: opts.fullPage,
    clip: { x: 0, y: 0, width: VIEWPORT.width, height },
  });
  fs.writeFileSync(file, palettePng(png));
  say(`${path.relative(ROOT, file)}: ${(fs.statSync(file).size / 1024).toFixed(0)} KiB`);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  let chain: ExplorerChain | undefined;
  let liar: Awaited<ReturnType<typeof lyingDataNode>> | undefined;
  const browser = await launchChromium();
  try {
    // Blocks every second and a short queue: block times follow the clock, latencies are a few seconds.
    chain = await buildExplorerChain({
      tasks: TASKS,
      optimisticShare: 0.05,
      backlog: 8,
      blockIntervalMs: 1000,
      log: say,
    });
    // The set-up's blocks (one per transaction) ran ahead of the clock: back to automine, and wait for the
    // clock to pass the head's time, so that "x s ago" reads right.
    await chain.net.provider.send("evm_setIntervalMining", [0]);
    await chain.net.provider.send("evm_setAutomine", [true]);
    const head = (await chain.net.provider.getBlock("latest"))!.timestamp;
    const ahead = head + 2 - Date.now() / 1000;
    if (ahead > 0) {
      say(`waiting ${ahead.toFixed(0)} s for the clock to pass the head block's time`);
      await sleep(Math.min(ahead, 180) * 1000);
    }
    const url = chain.explorerUrl!;
    const optimistic = chain.tasks.filter((t) => t.mode === "optimistic").map((t) => `#${t.taskId}`);
    say(`optimistic tasks (attested, in their challenge window): ${optimistic.join(", ") || "none"}`);
    say(`explorer at ${url}`);
    const context = await browser.newContext({ viewport: VIEWPORT, colorScheme: "light" });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const go = async (hash: string, selector: string) => {
      await page.evaluate((h) => (location.hash = h), hash);
      await page.waitForSelector(selector, { timeout: TIMEOUT_MS });
    };

    await page.goto(`${url}#/`);
    await page.waitForSelector('body[data-ready="1"]', { timeout: TIMEOUT_MS });
    for (const plot of ["tasks-over-time", "fees-over-time", "latency", "tasks-per-node", "proof-times"])
      await page.waitForSelector(`[data-testid=plot-${plot}] svg`, { timeout: TIMEOUT_MS });
    await shoot(page, "overview", { fullPage: true });

    await go("#/tasks", `[data-testid=task-count][data-count="${TASKS}"]`);
    await shoot(page, "tasks");

    // A ZK task of the MLP near the end, verified on chain: every check passes in the page.
    const task = chain.tasks.filter((t) => t.mode === "zk" && t.modelId === chain!.models.mlp).at(-3)!;
    await go(`#/task/${task.taskId}`, "[data-testid=verdict][data-status=pass]");
    await shoot(page, "task", { fullPage: true });

    await go("#/nodes", "[data-testid=nodes-table] tbody tr");
    await shoot(page, "nodes");
    await go("#/models", "[data-testid=models-table] tbody tr");
    await shoot(page, "models");
    if (errors.length) say(`page errors: ${errors.join("; ")}`);
    await context.close();

    // The same task read through a data node that swapped the MLP bundle's verification key.
    const bundleDir = await fixtureBundle("test/fixtures/models/iris_mlp.onnx");
    const archive = packBundle(bundleDir);
    liar = await lyingDataNode(chain.net.data.url, bundleArchiveId(archive), swapVerificationKey(archive));
    const tamperContext = await browser.newContext({ viewport: VIEWPORT, colorScheme: "light" });
    const tamperPage = await tamperContext.newPage();
    await tamperPage.goto(`${url}?data=${encodeURIComponent(liar.url)}#/task/${task.taskId}`);
    await tamperPage.waitForSelector("[data-testid=verdict][data-status=fail]", { timeout: TIMEOUT_MS });
    await shoot(tamperPage, "tamper", { fullPage: true });
    await tamperContext.close();
  } finally {
    await browser.close().catch(() => undefined);
    await liar?.close();
    await chain?.stop();
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
