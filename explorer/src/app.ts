import type { Store } from "./store";
import type { ExplorerConfig, Snapshot } from "./types";

/** What every view gets: the store (provider, contracts, snapshot) and navigation. */
export interface Ctx {
  store: Store;
  config: ExplorerConfig;
  /** The latest snapshot (the same object as store.snap). */
  snap: Snapshot;
  /** Go to a hash route, e.g. go("#/task/3"). */
  go(hash: string): void;
}

/**
 * A mounted view. `update` is called on every snapshot change (new blocks, block times arriving) while the
 * view is shown; it should patch its DOM cheaply (never redo expensive checks). `dispose` when left.
 */
export interface View {
  el: HTMLElement;
  update?(snap: Snapshot): void;
  dispose?(): void;
}
