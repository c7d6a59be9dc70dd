import "./style.css";
import type { Ctx, View } from "./app";
import { clear, h } from "./dom";
import { Store } from "./store";
import type { ExplorerConfig } from "./types";
import { addressView, modelsView, modelView, nodesView, searchView, tasksView } from "./views/lists";
import { overviewView } from "./views/overview";
import { taskView } from "./views/task";

/**
 * /config.json from the server that served the page, overridden by ?rpc=, ?data=, ?metrics= (comma list),
 * ?nodemetrics=off (read no node's registered endpoint), ?poll= and ?from=.
 */
async function loadConfig(): Promise<ExplorerConfig> {
  const res = await fetch("./config.json", { cache: "no-store" });
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
  const config = (await res.json()) as ExplorerConfig;
  const q = new URLSearchParams(location.search);
  if (q.get("rpc")) config.rpc = q.get("rpc")!;
  if (q.get("data")) config.data = q.get("data")!.replace(/\/+$/, "");
  if (q.get("metrics")) config.metrics = q.get("metrics")!.split(",").filter(Boolean);
  if (q.has("nodemetrics")) config.nodeMetrics = !["off", "0", "false", "no"].includes(q.get("nodemetrics")!);
  if (q.get("poll")) config.pollMs = Number(q.get("poll"));
  if (q.get("from")) config.fromBlock = Number(q.get("from"));
  return config;
}

function route(ctx: Ctx, hash: string): View {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const q = new URLSearchParams(query);
  switch (parts[0]) {
    case undefined:
      return overviewView(ctx);
    case "tasks":
      return tasksView(ctx, q);
    case "task":
      return taskView(ctx, parts[1] ?? "");
    case "models":
      return modelsView(ctx);
    case "model":
      return modelView(ctx, parts[1] ?? "");
    case "nodes":
      return nodesView(ctx);
    case "node":
    case "address":
      return addressView(ctx, parts[1] ?? "");
    case "search":
      return searchView(ctx, decodeURIComponent(parts.slice(1).join("/")));
    default:
      return { el: h("p", { class: "empty" }, `No page ${hash}.`) };
  }
}

async function main() {
  const app = document.getElementById("app")!;
  let config: ExplorerConfig;
  try {
    config = await loadConfig();
  } catch (e) {
    clear(app);
    app.append(
      h(
        "p",
        { class: "error", "data-testid": "error" },
        `Cannot load the explorer's config: ${(e as Error).message}`,
      ),
    );
    return;
  }
  const store = new Store(config);
  const status = h("span", { class: "status", "data-testid": "chain-status" }, "connecting…");
  const search = h("input", {
    type: "search",
    placeholder: "Task id, address (requester, node), model id or name, hash",
    "data-testid": "search",
    "aria-label": "search",
  });
  const form = h("form", { class: "search", role: "search" }, search);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = search.value.trim();
    if (v) ctx.go(`#/search/${encodeURIComponent(v)}`);
  });
  const nav = h(
    "nav",
    {},
    h("a", { href: "#/", "data-nav": "overview" }, "Overview"),
    h("a", { href: "#/tasks", "data-nav": "tasks" }, "Tasks"),
    h("a", { href: "#/models", "data-nav": "models" }, "Models"),
    h("a", { href: "#/nodes", "data-nav": "nodes" }, "Nodes"),
  );
  const main = h("main", {});
  const trust = h(
    "details",
    { class: "trust", "data-testid": "trust" },
    h("summary", {}, "What this page takes on trust"),
    h(
      "p",
      {},
      "Everything shown is read by this page from the RPC below and checked where it can be: proofs are re-verified " +
        "here with snarkjs, hashes recomputed, signatures recovered. Taken on trust: that the RPC serves the chain " +
        "you mean (the chain id is checked against the deployment), and the contract addresses, which come from " +
        "the server that served this page.",
    ),
    h(
      "dl",
      {},
      ...Object.entries({ RPC: config.rpc, "Data node": config.data, ...config.contracts }).flatMap(
        ([k, v]) => (v ? [h("dt", {}, k), h("dd", { class: "mono" }, v)] : []),
      ),
    ),
  );
  clear(app);
  app.append(
    h("header", {}, h("a", { href: "#/", class: "brand" }, "OPG explorer"), nav, form, status),
    main,
    h("footer", {}, trust),
  );

  let view: View | undefined;
  const ctx: Ctx = {
    store,
    config,
    snap: store.snap,
    go: (hash) => {
      if (location.hash === hash) show();
      else location.hash = hash;
    },
  };
  const show = () => {
    view?.dispose?.();
    clear(main);
    for (const a of nav.querySelectorAll("a"))
      a.classList.toggle(
        "active",
        (location.hash.startsWith(a.getAttribute("href")!) && a.getAttribute("href") !== "#/") ||
          (a.getAttribute("href") === "#/" && (location.hash === "" || location.hash === "#/")),
      );
    try {
      view = route(ctx, location.hash || "#/");
    } catch (e) {
      view = { el: h("p", { class: "error" }, (e as Error).message) };
    }
    main.append(view.el);
    document.body.dataset.route = location.hash || "#/";
  };
  store.subscribe((snap) => {
    status.textContent = store.error
      ? store.error
      : `chain ${snap.chainId} · block ${snap.head} · ${snap.tasks.size} tasks · live`;
    status.classList.toggle("bad", store.error !== null);
    view?.update?.(snap);
    document.body.dataset.version = String(snap.version);
  });
  window.addEventListener("hashchange", show);
  try {
    await store.start();
  } catch (e) {
    status.textContent = "not connected";
    main.append(
      h(
        "p",
        { class: "error", "data-testid": "error" },
        `Cannot read the chain at ${config.rpc}: ${(e as Error).message}`,
      ),
    );
    return;
  }
  show();
  document.body.dataset.ready = "1";
  (window as unknown as { opgExplorer: unknown }).opgExplorer = { store, ctx };
}

void main();
