import type { Snapshot } from "./types";

export type { Ctx } from "./ctx";

/**
 * A mounted view. `update` is called on every snapshot change (new blocks, block times arriving) while the
 * view is shown; it should patch its DOM cheaply (never redo expensive checks). `dispose` when left.
 */
export interface View {
  el: HTMLElement;
  update?(snap: Snapshot): void;
  dispose?(): void;
}
