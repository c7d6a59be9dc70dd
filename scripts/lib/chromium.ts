import fs from "node:fs";
import { chromium, type Browser } from "playwright-core";

/**
 * Headless Chromium for the explorer's benchmark, screenshots and browser tests: Debian's `chromium` package
 * driven by playwright-core (no browser download). OPG_CHROMIUM names another binary.
 */
export const CHROMIUM = process.env.OPG_CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Launch Chromium; throws, naming the package, where it is not installed. */
export function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set OPG_CHROMIUM)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}
