import fs from "node:fs";
import type { Browser, Page } from "playwright-core";
import { CHROMIUM, launchChromium as launch } from "../../scripts/lib/chromium";

/**
 * Headless Chromium for the explorer's browser tests: Debian's `chromium` package driven by playwright-core
 * (no browser download). Where it is not installed, CI fails naming the package; elsewhere the suite is
 * skipped with the same message, as the ONNX conformance suite does for its Debian data.
 */
export { CHROMIUM };

/** Launch Chromium, or skip the calling suite (fail on CI) when it is missing. Call from a `before` hook. */
export async function launchChromium(ctx: Mocha.Context): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    const message =
      `Chromium is not installed (${CHROMIUM} missing; OPG_CHROMIUM names another binary).\n` +
      "  Install it with: apt-get install -y chromium (CI does).";
    if (process.env.CI) throw new Error(message);
    console.warn(`\n  SKIPPED: ${message}\n`);
    ctx.skip();
  }
  return launch();
}

/**
 * Console errors and uncaught exceptions of a page, kept so that a test can fail on those it did not
 * expect. `allow` patterns are errors the test provokes on purpose (a lying data node's failed fetch).
 */
export class PageErrors {
  readonly errors: string[] = [];

  constructor(page: Page) {
    page.on("console", (m) => {
      if (m.type() === "error") {
        const at = m.location().url;
        this.errors.push(`console: ${m.text()}${at ? ` (${at})` : ""}`);
      }
    });
    page.on("pageerror", (e) => this.errors.push(`uncaught: ${e.message}`));
  }

  /** The errors that match none of `allow`. */
  unexpected(allow: RegExp[] = []): string[] {
    return this.errors.filter((e) => !allow.some((a) => a.test(e)));
  }
}
