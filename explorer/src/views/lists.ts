import { getAddress, isAddress } from "ethers";
import type { Ctx, View } from "../app";
import { clear, h } from "../dom";
import { ago, argmax, decodeOutputs, fmtNum, opg, short } from "../format";
import type { ModelRow, NodeRow, Snapshot, TaskRow, TaskState } from "../types";
import { loadBundle } from "../checks/bundle";

const PAGE = 50;
const STATES: TaskState[] = ["Open", "Claimed", "Pending", "Disputed", "Verified", "Rejected", "Expired"];

export const taskLink = (id: bigint | string) => h("a", { href: `#/task/${id}` }, `#${id}`);
export const addrLink = (a: string | undefined, label?: string) =>
  a ? h("a", { href: `#/address/${a}`, class: "mono", title: a }, label ?? short(a, 4)) : "–";
export const modelLink = (snap: Snapshot, id: bigint | string) => {
  const m = snap.models.get(String(id));
  return h("a", { href: `#/model/${id}` }, m ? `${m.name} (#${id})` : `#${id}`);
};
export const stateBadge = (s: TaskState) => h("span", { class: `badge state-${s}`, "data-state": s }, s);

/** A task's output in one cell: the decoded values (argmax for a vector), with the model's scale. */
export function outputSummary(snap: Snapshot, t: TaskRow): string {
  if (!t.outputs) return "";
  const m = snap.models.get(String(t.modelId));
  if (!m) return `${t.outputs.length} words`;
  const count = m.outputShape.reduce((a, b) => a * b, 1);
  const d = decodeOutputs(t.outputs, count, m.packBits, m.scaleBits);
  if ("error" in d) return `undecodable: ${d.error}`;
  if (d.values.length === 1) return fmtNum(d.values[0]);
  const shown = d.values
    .slice(0, 4)
    .map((v) => fmtNum(v, 3))
    .join(", ");
  return `argmax ${argmax(d.values)} [${shown}${d.values.length > 4 ? ", …" : ""}]`;
}

function timeOf(snap: Snapshot, block: number | undefined) {
  return block === undefined ? undefined : snap.blockTimes.get(block);
}

/** A paged task table; `filter` picks the rows. Rows newest first. */
function taskTable(ctx: Ctx, rows: () => TaskRow[], opts: { testid?: string } = {}) {
  let page = 0;
  const body = h("tbody");
  const info = h("span", { class: "muted", "data-testid": "task-count" });
  const prev = h("button", { type: "button" }, "← newer");
  const next = h("button", { type: "button" }, "older →");
  const table = h(
    "table",
    { "data-testid": opts.testid ?? "tasks-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Task"),
        h("th", {}, "State"),
        h("th", {}, "Mode"),
        h("th", {}, "Model"),
        h("th", {}, "Requester"),
        h("th", {}, "Node"),
        h("th", { class: "num" }, "Fee"),
        h("th", {}, "Output"),
        h("th", {}, "Submitted"),
      ),
    ),
    body,
  );
  const render = () => {
    const all = rows();
    const pages = Math.max(1, Math.ceil(all.length / PAGE));
    page = Math.min(page, pages - 1);
    const shown = all.slice(page * PAGE, page * PAGE + PAGE);
    clear(body);
    for (const t of shown) {
      body.append(
        h(
          "tr",
          { "data-task-id": String(t.id) },
          h("td", {}, taskLink(t.id)),
          h("td", {}, stateBadge(t.state)),
          h("td", {}, t.mode),
          h("td", {}, modelLink(ctx.snap, t.modelId)),
          h("td", {}, addrLink(t.requester)),
          h("td", {}, addrLink(t.node)),
          h("td", { class: "num" }, opg(t.fee)),
          h("td", { class: "mono" }, outputSummary(ctx.snap, t)),
          h(
            "td",
            { class: "muted", title: `block ${t.submittedBlock}` },
            ago(timeOf(ctx.snap, t.submittedBlock)) || `block ${t.submittedBlock}`,
          ),
        ),
      );
    }
    if (shown.length === 0) body.append(h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No tasks.")));
    info.textContent = `${all.length} task${all.length === 1 ? "" : "s"} · page ${page + 1} of ${pages}`;
    info.dataset.count = String(all.length);
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    void ctx.store.ensureTimes(shown.map((t) => t.submittedBlock));
  };
  prev.addEventListener("click", () => ((page = Math.max(0, page - 1)), render()));
  next.addEventListener("click", () => ((page += 1), render()));
  render();
  return { el: h("div", {}, table, h("div", { class: "pager" }, prev, next, info)), render };
}

const newestFirst = (rows: Iterable<TaskRow>) =>
  [...rows].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));

export function tasksView(ctx: Ctx, q: URLSearchParams): View {
  const state = h(
    "select",
    { "data-testid": "filter-state", "aria-label": "state" },
    h("option", { value: "" }, "any state"),
    ...STATES.map((s) => h("option", { value: s }, s)),
  );
  const mode = h(
    "select",
    { "data-testid": "filter-mode", "aria-label": "mode" },
    ...["", "zk", "optimistic", "tee"].map((m) => h("option", { value: m }, m || "any mode")),
  );
  const model = h(
    "select",
    { "data-testid": "filter-model", "aria-label": "model" },
    h("option", { value: "" }, "any model"),
  );
  for (const m of ctx.snap.models.values())
    model.append(h("option", { value: String(m.id) }, `${m.name} (#${m.id})`));
  state.value = q.get("state") ?? "";
  mode.value = q.get("mode") ?? "";
  model.value = q.get("model") ?? "";
  const rows = () =>
    newestFirst(ctx.snap.tasks.values()).filter(
      (t) =>
        (!state.value || t.state === state.value) &&
        (!mode.value || t.mode === mode.value) &&
        (!model.value || String(t.modelId) === model.value),
    );
  const table = taskTable(ctx, rows);
  for (const s of [state, mode, model]) s.addEventListener("change", table.render);
  return {
    el: h(
      "section",
      { "data-testid": "tasks-view" },
      h("h1", {}, "Tasks"),
      h("div", { class: "filters" }, state, mode, model),
      table.el,
    ),
    update: table.render,
  };
}

/**
 * A cell saying who could forge the model's proofs, filled in once its bundle arrives from the data node:
 * "development" (whoever compiled it), "ceremony" (a published phase 1 plus phase-2 contributions), as the
 * manifest claims; "bundle hash mismatch" when the data node's bytes are not the registered bundle.
 */
function setupCell(ctx: Ctx, m: ModelRow): HTMLElement {
  const cell = h("td", { "data-setup": "pending" }, m.modes.includes("zk") ? "…" : "no circuit");
  if (!m.modes.includes("zk") || /^0x0+$/.test(m.bundleHash)) {
    cell.dataset.setup = "none";
    return cell;
  }
  loadBundle(ctx.config.data, m).then(
    (b) => {
      const manifest = b.archive?.manifest;
      if (`0x${b.id}` !== m.bundleHash.toLowerCase()) {
        cell.dataset.setup = "mismatch";
        cell.className = "fail";
        cell.textContent = "bundle hash mismatch";
        return;
      }
      const trust = manifest?.ptau?.trust ?? (manifest?.ptau?.source === "dev" ? "development" : "unknown");
      const contributions = manifest?.phase2?.contributions?.length ?? 0;
      cell.dataset.setup = trust;
      cell.className = trust === "development" ? "trust-c" : "";
      cell.textContent =
        trust === "development"
          ? "development (compiler could forge)"
          : trust === "published-ceremony"
            ? `ceremony, ${contributions} phase-2 contribution${contributions === 1 ? "" : "s"}`
            : trust;
      cell.title = "as the bundle manifest says (the ptau itself is re-checked by opg task audit --ptau)";
    },
    (e: Error) => {
      cell.dataset.setup = "unreachable";
      cell.className = "muted";
      cell.textContent = "bundle unreachable";
      cell.title = e.message;
    },
  );
  return cell;
}

function modelTable(ctx: Ctx, models: ModelRow[]) {
  return h(
    "table",
    { "data-testid": "models-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...[
          "Model",
          "Modes",
          "Fee",
          "Input",
          "Output",
          "Scale",
          "Tasks",
          "Owner",
          "Bundle",
          "Setup",
          "Active",
        ].map((c) => h("th", {}, c)),
      ),
    ),
    h(
      "tbody",
      {},
      ...models.map((m) =>
        h(
          "tr",
          { "data-model-id": String(m.id) },
          h("td", {}, modelLink(ctx.snap, m.id)),
          h("td", {}, m.modes.join(", ")),
          h("td", {}, opg(m.fee)),
          h("td", {}, `${m.inputShape.join("×")} (${m.inputMode})`),
          h("td", {}, m.outputShape.join("×")),
          h("td", {}, `2^${m.scaleBits}`),
          h("td", { class: "num" }, String(m.tasks)),
          h("td", {}, addrLink(m.owner)),
          h("td", { class: "mono", title: m.bundleHash }, short(m.bundleHash)),
          setupCell(ctx, m),
          h("td", {}, m.active ? "yes" : "no"),
        ),
      ),
    ),
  );
}

export function modelsView(ctx: Ctx): View {
  const el = h("section", { "data-testid": "models-view" });
  const render = () => {
    clear(el);
    el.append(h("h1", {}, "Models"), modelTable(ctx, [...ctx.snap.models.values()]));
  };
  render();
  return { el, update: render };
}

export function modelView(ctx: Ctx, id: string): View {
  const m = ctx.snap.models.get(id);
  if (!m) return { el: h("p", { class: "empty" }, `No model ${id} on this chain.`) };
  const table = taskTable(ctx, () =>
    newestFirst(ctx.snap.tasks.values()).filter((t) => String(t.modelId) === id),
  );
  const kv = (k: string, v: string | Node) => [h("dt", {}, k), h("dd", {}, v)];
  const el = h(
    "section",
    { "data-testid": "model-view" },
    h("h1", {}, `Model #${m.id}: ${m.name}`),
    h(
      "div",
      { class: "panel" },
      h(
        "dl",
        { class: "kv" },
        kv("Verification modes", m.modes.join(", ")),
        kv("Fee", opg(m.fee)),
        kv("Owner", addrLink(m.owner, m.owner)),
        kv("ONNX hash (sha256)", h("span", { class: "mono" }, m.onnxHash)),
        kv("Bundle (data node id)", h("span", { class: "mono" }, m.bundleHash)),
        kv("Verification key hash", h("span", { class: "mono" }, m.verificationKeyHash)),
        kv("Verification key contract", h("span", { class: "mono" }, m.verificationKey)),
        kv(
          "Input",
          `${m.inputShape.join("×")}, ${m.inputMode}, ${m.inputWords} words, ${m.inputBits}-bit values`,
        ),
        kv("Output", `${m.outputShape.join("×")}, ${m.outputWords} words`),
        kv("Fixed point", `scale 2^${m.scaleBits}, ${m.packBits} bits per packed value`),
        kv("Active", m.active ? "yes" : "no"),
        kv(
          "Registered",
          h(
            "span",
            {},
            `block ${m.registeredBlock}, tx `,
            h("span", { class: "mono" }, short(m.registeredTx)),
          ),
        ),
      ),
    ),
    h("h2", {}, "Tasks"),
    table.el,
  );
  return { el, update: table.render };
}

const ROLE_NAMES = (roles: number) =>
  [roles & 1 ? "inference" : "", roles & 2 ? "verification" : ""].filter(Boolean).join(", ") || "none";

function nodeTable(ctx: Ctx, nodes: NodeRow[]) {
  return h(
    "table",
    { "data-testid": "nodes-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...[
          "Node",
          "Roles",
          "Stake",
          "Collateral locked",
          "Unbonding",
          "Slashes",
          "Slashed",
          "Earnings",
          "Served",
          "Claimed",
          "Attested",
          "Endpoint",
        ].map((c) => h("th", {}, c)),
      ),
    ),
    h(
      "tbody",
      {},
      ...nodes.map((n) =>
        h(
          "tr",
          { "data-node": n.address },
          h("td", {}, addrLink(n.address)),
          h("td", {}, ROLE_NAMES(n.roles)),
          h("td", { class: "num" }, opg(n.bonded)),
          h("td", { class: "num" }, opg(n.locked)),
          h("td", { class: "num" }, opg(n.unbonding)),
          h("td", { class: "num" }, String(n.slashes.length)),
          h("td", { class: "num" }, opg(n.slashed)),
          h("td", { class: "num" }, opg(n.earnings)),
          h("td", { class: "num" }, String(n.served)),
          h("td", { class: "num" }, String(n.claimed)),
          h("td", { class: "num" }, String(n.attestations)),
          h("td", { class: "mono" }, n.endpoint),
        ),
      ),
    ),
  );
}

export function nodesView(ctx: Ctx): View {
  const el = h("section", { "data-testid": "nodes-view" });
  const render = () => {
    clear(el);
    el.append(h("h1", {}, "Nodes"), nodeTable(ctx, [...ctx.snap.nodes.values()]));
  };
  render();
  return { el, update: render };
}

/** An address: its node record (if it is one), the tasks it served and the tasks it requested. */
export function addressView(ctx: Ctx, raw: string): View {
  if (!isAddress(raw)) return { el: h("p", { class: "error" }, `${raw} is not an address.`) };
  const a = getAddress(raw);
  const served = taskTable(ctx, () => newestFirst(ctx.snap.tasks.values()).filter((t) => t.node === a), {
    testid: "served-table",
  });
  const requested = taskTable(
    ctx,
    () => newestFirst(ctx.snap.tasks.values()).filter((t) => t.requester === a),
    { testid: "requested-table" },
  );
  const nodePart = h("div");
  const models = h("div");
  const render = () => {
    clear(nodePart);
    clear(models);
    const n = ctx.snap.nodes.get(a);
    if (n) {
      nodePart.append(h("h2", {}, "Node"), nodeTable(ctx, [n]));
      if (n.slashes.length) {
        nodePart.append(
          h("h2", {}, "Slashes"),
          h(
            "table",
            { "data-testid": "slashes-table" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ...["Block", "Amount", "Reason", "Slasher", "Beneficiary", "Tx"].map((c) => h("th", {}, c)),
              ),
            ),
            h(
              "tbody",
              {},
              ...n.slashes.map((s) =>
                h(
                  "tr",
                  {},
                  h("td", {}, String(s.block)),
                  h("td", {}, opg(s.amount)),
                  h("td", { class: "mono", title: s.reason }, reasonText(s.reason)),
                  h("td", {}, addrLink(s.slasher)),
                  h("td", {}, addrLink(s.beneficiary)),
                  h("td", { class: "mono" }, short(s.tx)),
                ),
              ),
            ),
          ),
        );
      }
    }
    const owned = [...ctx.snap.models.values()].filter((m) => m.owner === a);
    if (owned.length) models.append(h("h2", {}, "Models owned"), modelTable(ctx, owned));
    served.render();
    requested.render();
  };
  render();
  return {
    el: h(
      "section",
      { "data-testid": "address-view" },
      h("h1", { class: "mono" }, a),
      nodePart,
      models,
      h("h2", {}, "Tasks served"),
      served.el,
      h("h2", {}, "Tasks requested"),
      requested.el,
    ),
    update: render,
  };
}

/** A slash reason (bytes32): its text when it is a short ASCII tag, else the hex. */
function reasonText(reason: string): string {
  const bytes = reason.slice(2).match(/../g) ?? [];
  const chars = bytes.map((b) => parseInt(b, 16)).filter((c) => c !== 0);
  return chars.length && chars.every((c) => c >= 32 && c < 127)
    ? String.fromCharCode(...chars)
    : short(reason);
}

/**
 * Search by task id, address (requester, node, model owner), model id or name, transaction hash, or a
 * model's ONNX / bundle / verification-key hash. One exact hit goes straight to its page.
 */
export function searchView(ctx: Ctx, query: string): View {
  const q: string = query.trim();
  const el = h("section", { "data-testid": "search-view" }, h("h1", {}, `Search: ${q}`));
  const snap = ctx.snap;
  const hits: { label: string; href: string }[] = [];
  const idish = q.replace(/^#/, "");
  const modelQuery = /^(?:model|m)\s*#?\s*([0-9]+)$/i.exec(q);
  if (modelQuery) {
    const id = String(BigInt(modelQuery[1]));
    if (snap.models.has(id))
      hits.push({ label: `Model #${id} (${snap.models.get(id)!.name})`, href: `#/model/${id}` });
  } else if (/^[0-9]+$/.test(idish)) {
    if (snap.tasks.has(idish)) hits.push({ label: `Task #${idish}`, href: `#/task/${idish}` });
    if (snap.models.has(idish))
      hits.push({ label: `Model #${idish} (${snap.models.get(idish)!.name})`, href: `#/model/${idish}` });
  } else if (/^0x[0-9a-fA-F]{40}$/.test(q)) {
    hits.push({
      label: `Address ${getAddress(q.toLowerCase())}`,
      href: `#/address/${getAddress(q.toLowerCase())}`,
    });
  } else if (/^0x[0-9a-fA-F]{64}$/.test(q)) {
    const h64 = q.toLowerCase();
    for (const m of snap.models.values()) {
      if (
        [m.onnxHash, m.bundleHash, m.verificationKeyHash, m.registeredTx].some((x) => x.toLowerCase() === h64)
      )
        hits.push({ label: `Model #${m.id} (${m.name})`, href: `#/model/${m.id}` });
    }
    for (const t of snap.tasks.values()) {
      if (t.events.some((e) => e.tx.toLowerCase() === h64))
        hits.push({ label: `Task #${t.id}`, href: `#/task/${t.id}` });
    }
  } else {
    const lower = q.toLowerCase();
    for (const m of snap.models.values()) {
      if (m.name.toLowerCase().includes(lower))
        hits.push({ label: `Model #${m.id} (${m.name})`, href: `#/model/${m.id}` });
    }
  }
  // One hit opens its page; a plain number that is a task id opens the task (tasks are what people look
  // up by number; "model 3" finds the model), the hits below stay listed for the way back.
  const taskFirst = /^[0-9]+$/.test(idish) && hits[0]?.href.startsWith("#/task/");
  if (hits.length === 1 || taskFirst) {
    const target = hits[0].href;
    // replace, not push: Back from the task goes to where the search started, not into this redirect
    queueMicrotask(() => location.replace(target));
  }
  el.append(
    hits.length
      ? h(
          "ul",
          { "data-testid": "search-hits" },
          ...hits.map((x) => h("li", {}, h("a", { href: x.href }, x.label))),
        )
      : h("p", { class: "empty", "data-testid": "search-none" }, `Nothing on this chain matches "${q}".`),
  );
  return { el };
}
