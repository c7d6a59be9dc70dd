import type { Store } from "./store";
import type { ExplorerConfig, Snapshot } from "./types";

/**
 * What every view and check gets: the store (provider, contracts, snapshot) and navigation. Free of DOM
 * types, so that the checks run (and type-check) in Node as well as in the page.
 */
export interface Ctx {
  store: Store;
  config: ExplorerConfig;
  /** The latest snapshot (the same object as store.snap). */
  snap: Snapshot;
  /** Go to a hash route, e.g. go("#/task/3"). */
  go(hash: string): void;
}
