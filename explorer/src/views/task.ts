import "./task.css";
import type { Ctx, View } from "../app";
import type { ManifestView } from "../checks/archive";
import { loadBundle } from "../checks/bundle";
import {
  hasPageChecks,
  rejectedByProof,
  staticChecks,
  verifiedChecks,
  waitingFor,
  type CheckRun,
} from "../checks/run";
import { verdictOf, type Check, type VerdictStatus } from "../checks/types";
import { DISPUTE_OUTCOMES } from "../checks/optimistic";
import { batchText } from "../checks/settlement";
import { append, clear, h, type Child } from "../dom";
import { ago, argmax, decodeOutputs, fmtNum, opg, short, time } from "../format";
import type { ChainEvent, ModelRow, Snapshot, TaskRow } from "../types";

const ZERO = "0x0000000000000000000000000000000000000000";

const addr = (a: unknown, label?: string) => {
  const s = String(a ?? "");
  return s && s !== ZERO
    ? h("a", { href: `#/address/${s}`, class: "mono", title: s }, label ?? short(s, 4))
    : "–";
};
const modelLink = (ctx: Ctx, id: bigint) => {
  const m = ctx.snap.models.get(id.toString());
  return h("a", { href: `#/model/${id}` }, m ? `${m.name} (#${id})` : `#${id}`);
};
const secs = (s: number) =>
  s < 120 ? `${s} s` : s < 7200 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${(s / 3600).toFixed(1)} h`;

/** The task page: header, outputs, checks (re-verified in this page) and the timeline of its logs. */
export function taskView(ctx: Ctx, id: string): View {
  const header = h("div", { class: "task-head" });
  const outputs = h("section", { class: "panel", "data-testid": "outputs" });
  const checks = h("section", { class: "panel", "data-testid": "checks" });
  const timeline = h("section", { class: "panel task-timeline" });
  const el = h(
    "section",
    { class: "task-view", "data-testid": "task-view", "data-task": id },
    header,
    outputs,
    checks,
    timeline,
  );

  let run: CheckRun | undefined;
  let onRun: (() => void) | undefined;
  let headerKey = "";
  let timelineKey = "";
  let outputsKey = "";
  let checksKey = "";
  /** The model bundle's manifest (names the outputs), once the data node served the registered bundle. */
  let manifest: ManifestView | undefined;
  let manifestFor = "";
  const requested = new Set<number>();

  const detach = () => {
    if (run && onRun) run.listeners.delete(onRun);
    run = undefined;
    onRun = undefined;
  };

  const safe = (target: HTMLElement, f: () => void) => {
    try {
      f();
    } catch (e) {
      clear(target);
      target.append(h("p", { class: "error" }, `This part of the page failed: ${(e as Error).message}`));
      console.error(e);
    }
  };

  // Nothing throws out of the view: a part that fails shows its error in place (see safe).
  const render = (snap: Snapshot) => {
    try {
      renderAll(snap);
    } catch (e) {
      console.error(e);
      clear(header);
      header.append(h("p", { class: "error" }, `The task page failed: ${(e as Error).message}`));
    }
  };

  const renderAll = (snap: Snapshot) => {
    const raw = snap.tasks.get(id);
    const row = raw && settledState(raw);
    if (!row) {
      detach();
      clear(header);
      header.append(
        h("h1", {}, `Task ${id}`),
        h(
          "p",
          { class: "empty", "data-testid": "not-found" },
          `No task ${id} in the logs read up to block ${snap.head}.`,
        ),
      );
      for (const x of [outputs, checks, timeline]) clear(x);
      headerKey = timelineKey = outputsKey = checksKey = "";
      return;
    }
    const model = snap.models.get(row.modelId.toString());
    // Block times of everything shown, once each (the store emits an update when they arrive).
    const blocks = [...row.events.map((e) => e.block), snap.head].filter((b) => b >= 0 && !requested.has(b));
    if (blocks.length) {
      for (const b of blocks) requested.add(b);
      void ctx.store.ensureTimes(blocks).catch(() => undefined);
    }
    // The chain's time: the head block's, or the clock when no block came for a while.
    const nowTime = Math.max(snap.blockTimes.get(snap.head) ?? 0, Math.floor(Date.now() / 1000));
    const live = !FINAL.has(row.state);
    // A coarse clock for what counts down (window, deadline) while the task is not final.
    const tick = live ? Math.floor(nowTime / 5) : 0;

    if (model && row.outputs?.length && manifestFor !== model.bundleHash) {
      manifestFor = model.bundleHash;
      loadBundle(ctx.config.data, model)
        .then((b) => {
          // only the registered bundle names outputs (a different one fails the bundle check)
          if (b.archive && "0x" + b.id === model.bundleHash.toLowerCase()) {
            manifest = b.archive.manifest;
            render(ctx.snap);
          }
        })
        .catch(() => undefined);
    }

    // checks: the run of a verified task (or of a rejection by proof) starts once per settling transaction;
    // others are derived from logs
    let list: Check[];
    if (hasPageChecks(row)) {
      const r = verifiedChecks(ctx, row);
      if (r !== run) {
        detach();
        run = r;
        onRun = () => {
          checksKey = "";
          safe(checks, () => renderChecks(checks, row, r.checks, nowTime, r));
        };
        r.listeners.add(onRun);
      }
      list = r.checks;
    } else {
      detach();
      list = staticChecks(row, nowTime);
    }

    const hk = `${row.state}:${row.events.length}:${snap.blockTimes.size}:${tick}`;
    if (hk !== headerKey) {
      headerKey = hk;
      safe(header, () => renderHeader(ctx, header, row, snap, nowTime));
    }
    const ok = `${row.state}:${(row.outputs ?? []).join(",")}:${manifest ? "m" : ""}`;
    if (ok !== outputsKey) {
      outputsKey = ok;
      safe(outputs, () => renderOutputs(outputs, row, model, manifest));
    }
    // Re-rendered only when a check or the clock shown in them changed (never while someone reads it).
    const ck = `${run?.key ?? ""}:${run?.done}:${tick}:${list.map((c) => `${c.id}=${c.status}:${c.message ?? ""}`).join("|")}`;
    if (ck !== checksKey) {
      checksKey = ck;
      safe(checks, () => renderChecks(checks, row, list, nowTime, run));
    }
    const tk = `${row.events.length}:${row.events.filter((e) => snap.blockTimes.has(e.block)).length}:${tick}`;
    if (tk !== timelineKey) {
      timelineKey = tk;
      safe(timeline, () => renderTimeline(timeline, row, snap, nowTime));
    }
  };

  render(ctx.snap);
  // Countdowns (challenge window, deadline, claim) move with the clock even when no block arrives.
  const timer = setInterval(() => {
    const row = ctx.snap.tasks.get(id);
    if (row && !FINAL.has(settledState(row).state)) render(ctx.snap);
  }, 5000);
  return {
    el,
    update: (snap) => render(snap),
    dispose: () => {
      clearInterval(timer);
      detach();
    },
  };
}

const FINAL = new Set(["Verified", "Expired", "Rejected"]);

/** ITaskRegistry.TaskStatus by index (TaskResultSkipped names the status a skipped task had). */
const TASK_STATUS_NAMES = [
  "None",
  "Open",
  "Claimed",
  "Verified",
  "Expired",
  "Pending",
  "Disputed",
  "Rejected",
];

/**
 * The task with the state its settling log gives, whatever came after it in the same transaction (a
 * rejection also slashes the claim, whose TaskClaimAbandoned log follows TaskRejected).
 */
function settledState(row: TaskRow): TaskRow {
  const end = [...row.events]
    .reverse()
    .find((e) => e.name === "TaskVerified" || e.name === "TaskRejected" || e.name === "TaskExpired");
  if (!end) return row;
  const state =
    end.name === "TaskVerified" ? "Verified" : end.name === "TaskRejected" ? "Rejected" : "Expired";
  return state === row.state ? row : { ...row, state };
}

// ------------------------------------------------------------------------------------------------ header

function renderHeader(ctx: Ctx, el: HTMLElement, row: TaskRow, snap: Snapshot, now: number) {
  clear(el);
  const t = row.task;
  const kv: [string, Child][] = [
    ["Model", modelLink(ctx, row.modelId)],
    ["Mode", row.mode],
    ["Requester", addr(row.requester, row.requester)],
    ["Node", row.node ? addr(row.node, row.node) : h("span", { class: "muted" }, "none yet")],
    ["Fee", opg(row.fee)],
  ];
  if (row.nodeFee !== undefined) {
    kv.push([
      "Fee split",
      h(
        "span",
        { "data-testid": "fee-split" },
        `node ${opg(row.nodeFee)} · royalty ${opg(row.royalty)} · protocol ${opg(row.protocolFee)}`,
        attesterShare(row),
      ),
    ]);
  }
  if (row.refund !== undefined)
    kv.push(["Refund", h("span", { "data-testid": "refund" }, `${opg(row.refund)} to the requester`)]);
  const deadline = Number(t.deadline);
  kv.push([
    "Deadline",
    `${time(deadline)}${FINAL.has(row.state) ? "" : deadline > now ? ` (in ${secs(Math.round(deadline - now))})` : " (passed)"}`,
  ]);
  kv.push([
    "Callback",
    t.callback && t.callback !== ZERO
      ? h("span", {}, addr(t.callback, t.callback), ` · gas limit ${t.callbackGasLimit}`)
      : h("span", { class: "muted" }, "none"),
  ]);
  kv.push([
    "Input",
    h(
      "span",
      {},
      `${row.input.length} word(s)${Number(t.inputDataHash) ? `, data ${short(t.inputDataHash, 8)}` : ""} · inputHash `,
      h("span", { class: "mono", title: t.inputHash }, short(t.inputHash, 8)),
    ),
  ]);
  if (Number(t.mode) === 2) kv.push(["Attestation quorum", String(t.attestationQuorum)]);
  kv.push([
    "Submitted",
    h(
      "span",
      {},
      `block ${row.submittedBlock} · `,
      txLink(row.submittedTx),
      " ",
      h("span", { class: "muted" }, ago(snap.blockTimes.get(row.submittedBlock), now)),
    ),
  ]);
  if (row.state === "Verified" && row.settledTx && row.settledBlock !== undefined) {
    kv.push([
      "Settled",
      h(
        "span",
        { "data-testid": "settled" },
        `block ${row.settledBlock} · `,
        txLink(row.settledTx),
        batchNote(row.settledTx, snap),
        " ",
        h("span", { class: "muted" }, ago(snap.blockTimes.get(row.settledBlock), now)),
      ),
    ]);
  }
  el.append(
    h(
      "h1",
      {},
      `Task #${row.id} `,
      h("span", { class: `badge state-${row.state}`, "data-testid": "task-state" }, row.state),
      " ",
      h("span", { class: "badge", "data-testid": "task-mode" }, row.mode),
    ),
    h(
      "div",
      { class: "panel" },
      h("dl", { class: "kv" }, ...kv.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    ),
  );
}

function attesterShare(row: TaskRow): Child {
  const paid = row.events.find((e) => e.name === "AttestersPaid");
  if (!paid) return null;
  const n = (paid.args.attesters as string[]).length;
  return ` · attesters ${n} × ${opg(paid.args.share as bigint)}`;
}

const txLink = (tx: string) => h("span", { class: "mono", title: tx }, short(tx, 6));

/**
 * " · settled in a batch of 3 (2 verified, 1 skipped)" when the settling transaction settled other tasks too
 * (a `submitResults` batch), from its logs; nothing for a transaction that settled this task alone.
 */
function batchNote(tx: string, snap: Snapshot): string {
  const tally = snap.settlements.get(tx);
  const size = tally ? tally.verified + tally.skipped : 0;
  if (size < 2) return "";
  return (
    ` · settled in a batch of ${size} (${tally!.verified} verified` +
    `${tally!.skipped ? `, ${tally!.skipped} skipped` : ""})`
  );
}

// ----------------------------------------------------------------------------------------------- outputs

function softmax(xs: number[]): number[] {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

/** A slice of the output values as a table: index (or label), value, and its probability where softmaxed. */
function valuesTable(
  values: number[],
  postprocess: string | undefined,
  keys?: (number | string)[],
): HTMLElement {
  const probs =
    postprocess === "softmax"
      ? softmax(values)
      : postprocess === "logistic"
        ? values.map((v) => 1 / (1 + Math.exp(-v)))
        : undefined;
  const best = argmax(probs ?? values);
  return h(
    "table",
    { class: "outputs" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, keys ? "class" : "index"),
        h("th", { class: "num" }, "value"),
        probs ? h("th", { class: "num" }, postprocess === "softmax" ? "probability" : "logistic") : null,
        h("th", {}, ""),
      ),
    ),
    h(
      "tbody",
      {},
      ...values.map((v, i) =>
        h(
          "tr",
          { class: i === best ? "best" : undefined, "data-index": i },
          h("td", { class: "mono" }, String(keys ? (keys[i] ?? i) : i)),
          h("td", { class: "num mono" }, fmtNum(v)),
          probs ? h("td", { class: "num mono" }, fmtNum(probs[i], 6)) : null,
          h(
            "td",
            {},
            probs
              ? h("span", { class: "bar", style: `width:${Math.max(1, Math.round(probs[i] * 120))}px` })
              : i === best
                ? "max"
                : "",
          ),
        ),
      ),
    ),
  );
}

function renderOutputs(
  el: HTMLElement,
  row: TaskRow,
  model: ModelRow | undefined,
  manifest: ManifestView | undefined,
) {
  clear(el);
  el.append(h("h2", {}, "Outputs"));
  if (!row.outputs || row.outputs.length === 0) {
    el.append(
      h(
        "p",
        { class: "empty" },
        row.state === "Expired" || row.state === "Rejected"
          ? "No outputs: the task did not settle."
          : "No outputs yet.",
      ),
    );
    return;
  }
  if (row.state === "Pending" || row.state === "Disputed") {
    el.append(
      h(
        "p",
        { class: "trust-c" },
        "Posted outputs, not final: they settle after the challenge window (or a dispute).",
      ),
    );
  } else if (row.state === "Rejected") {
    el.append(
      h(
        "p",
        { class: "fail" },
        rejectedByProof(row)
          ? "Posted outputs that a challenger PROVED WRONG (a proof of other outputs): they never settled."
          : "Posted outputs that a dispute REJECTED: they never settled.",
      ),
    );
  }
  const words = row.outputs.map((w) => BigInt(w));
  if (!model) {
    el.append(
      h("p", { class: "error" }, `Model ${row.modelId} is not in the logs: the words cannot be decoded.`),
    );
  } else {
    const count = model.outputShape.reduce((a, b) => a * b, 1);
    const scaleBits = manifest?.output?.scaleBits ?? model.scaleBits;
    const decoded = decodeOutputs(words, count, model.packBits, scaleBits);
    if ("error" in decoded) {
      el.append(
        h(
          "p",
          { class: "error", "data-testid": "outputs-error" },
          `The output words do not decode with the model's layout: ${decoded.error}`,
        ),
      );
    } else {
      const parts = manifest?.output?.parts;
      const source = manifest
        ? "named by the bundle manifest"
        : "manifest not loaded: by the registry's layout";
      el.append(
        h(
          "p",
          { class: "muted" },
          `${count} value(s) of shape [${model.outputShape.join(", ")}], ${model.packBits}-bit packed, scale 2^${scaleBits} (${source})`,
        ),
      );
      if (parts && parts.length) {
        for (const p of parts) {
          const slice = decoded.values.slice(p.offset, p.offset + p.size);
          el.append(h("h3", {}, p.name, h("span", { class: "muted" }, ` [${p.shape.join(", ")}]`)));
          if (p.labels) {
            const labels = slice.map((v) => {
              const k = Math.round(v);
              return k >= 0 && k < p.labels!.length ? String(p.labels![k]) : `?${v}`;
            });
            el.append(
              h("p", { "data-testid": "output-labels" }, "label: ", h("strong", {}, labels.join(", "))),
            );
          } else if (p.zipmap) {
            const keys = p.zipmap;
            for (let r = 0; r < slice.length; r += keys.length)
              el.append(valuesTable(slice.slice(r, r + keys.length), undefined, keys));
          } else {
            el.append(valuesTable(slice, p.postprocess));
          }
        }
      } else {
        const post = manifest?.output?.postprocess;
        const best = argmax(decoded.values);
        el.append(
          h(
            "p",
            { "data-testid": "argmax" },
            `${manifest?.output?.name ? `${manifest.output.name}: ` : ""}argmax `,
            h("strong", {}, String(best)),
            post && post !== "none" ? h("span", { class: "muted" }, ` (${post} applied off circuit)`) : null,
          ),
          valuesTable(decoded.values, post),
        );
      }
    }
  }
  el.append(
    h(
      "details",
      {},
      h(
        "summary",
        {},
        `${words.length} output word(s) as ${row.state === "Verified" ? "settled" : "posted"}`,
      ),
      h("ol", { class: "mono words", start: 0 }, ...words.map((w) => h("li", {}, "0x" + w.toString(16)))),
    ),
  );
}

// ------------------------------------------------------------------------------------------------ checks

const STATUS_LABEL: Record<string, string> = {
  pass: "PASS",
  fail: "FAIL",
  trust: "TRUST",
  pending: "PENDING",
  skip: "SKIP",
};

function verdictSentence(
  status: VerdictStatus,
  checks: Check[],
  row: TaskRow,
  nowTime: number,
  run?: CheckRun,
): string {
  const failed = checks.filter((c) => c.status === "fail");
  const trusted = checks.filter((c) => c.status === "trust");
  switch (status) {
    case "fail":
      return `Does not check out: ${failed.length} check(s) failed (${failed.map((c) => c.title).join("; ")}).`;
    case "pending":
      return run
        ? "Checking in this page…"
        : row.state === "Open" || row.state === "Claimed"
          ? `${waitingFor(row, nowTime)}.`
          : `Not final yet (${row.state}): checks run once the result settles.`;
    case "skip":
      return row.state === "Expired"
        ? "Nothing to verify: the task expired and its fee was refunded."
        : "Nothing to verify: the outputs were rejected and the fee refunded.";
    default:
      if (row.state === "Rejected") {
        const opened = row.events.filter((e) => e.name === "DisputeOpened").at(-1);
        return (
          `Rejection verified in this page: the posted outputs were proved wrong by ` +
          `${short(String(opened?.args.challenger ?? ""), 4)} with a proof of other outputs ` +
          `(${checks.filter((c) => c.status === "pass").length} check(s) pass); the requester was refunded ` +
          `${opg(row.refund)}.`
        );
      }
      return (
        `Verified in this page: ${checks.filter((c) => c.status === "pass").length} check(s) pass` +
        (trusted.length ? `; taken on trust: ${trusted.map((c) => c.title.toLowerCase()).join("; ")}.` : ".")
      );
  }
}

function renderChecks(el: HTMLElement, row: TaskRow, checks: Check[], nowTime: number, run?: CheckRun) {
  clear(el);
  // a rejection by proof has its evidence to check; other rejections and expiries have nothing
  const noResult = row.state === "Expired" || (row.state === "Rejected" && !rejectedByProof(row));
  // While the page's checks run, the verdict waits for all of them (a failure shown early could change).
  const status = run && !run.done ? "pending" : verdictOf(checks, noResult);
  el.append(
    h(
      "h2",
      {},
      "Checks",
      run?.settledBy
        ? h(
            "span",
            { class: "muted", "data-testid": "settled-by" },
            run.batch ? ` · ${batchText(run.batch)}` : ` · settled by ${run.settledBy}`,
          )
        : null,
    ),
    h(
      "div",
      { class: `verdict verdict-${status}`, "data-testid": "verdict", "data-status": status },
      h("span", { class: "badge" }, status === "pass" ? "VERIFIED" : status.toUpperCase()),
      " ",
      verdictSentence(status, checks, row, nowTime, run),
    ),
    h(
      "div",
      { class: "checks" },
      ...checks.map((c) =>
        h(
          "div",
          { class: `check check-${c.status}`, "data-check": c.id, "data-status": c.status },
          h(
            "div",
            { class: "check-title" },
            h("span", { class: "badge" }, STATUS_LABEL[c.status] ?? c.status),
            " ",
            c.title,
          ),
          c.proved && c.status !== "fail"
            ? h("p", { class: "proved" }, h("span", { class: "muted" }, "Proved here: "), c.proved)
            : null,
          c.message
            ? h(
                "p",
                { class: c.status === "fail" ? "message fail" : "message", "data-testid": "check-message" },
                c.message,
              )
            : null,
          c.trusted
            ? h("p", { class: "trusted" }, h("span", { class: "muted" }, "Taken on trust: "), c.trusted)
            : null,
          c.details?.length
            ? h(
                "dl",
                { class: "kv details" },
                ...c.details.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)]),
              )
            : null,
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------- timeline

function sentence(e: ChainEvent, row: TaskRow): Child[] {
  const a = e.args;
  switch (e.name) {
    case "TaskSubmitted":
      return [
        `Submitted by `,
        addr(a.requester),
        ` in ${row.mode} mode, fee ${opg(row.fee)}, ${row.input.length} input word(s)`,
      ];
    case "TaskClaimed":
      return [
        `Claimed by `,
        addr(a.node),
        ` until ${time(Number(a.claimExpiresAt))}, collateral ${opg(a.collateral as bigint)}`,
      ];
    case "TaskClaimAbandoned": {
      // Emitted wherever a claim's collateral is slashed: a take-over, an expiry, a rejected result.
      const sameTx = row.events.filter((x) => x.tx === e.tx).map((x) => x.name);
      // expireUnattested after the deadline: posted outputs (after the last claim) that met no quorum
      const before = row.events.slice(0, row.events.indexOf(e));
      const lastOf = (name: string) => before.map((x) => x.name).lastIndexOf(name);
      const postedLast = lastOf("TaskResultPosted") > lastOf("TaskClaimed");
      const why = sameTx.includes("TaskRejected")
        ? "its posted outputs were rejected"
        : sameTx.includes("TaskReopened")
          ? "its posted outputs met no quorum of attestations; the task was reopened"
          : sameTx.includes("TaskExpired")
            ? postedLast
              ? "its posted outputs met no quorum of attestations and the task expired"
              : "the claim lapsed and the task expired"
            : sameTx.includes("TaskClaimed")
              ? "the claim lapsed and another node took the task over"
              : "the claim lapsed";
      return [`Collateral of `, addr(a.previousNode), ` slashed (${opg(a.slashed as bigint)}): ${why}`];
    }
    case "TaskResultPosted":
      return [
        `Outputs posted by `,
        addr(a.node),
        ` (${(a.outputs as unknown[]).length} word(s)); challenge window until ${time(Number(a.windowEnd))}`,
      ];
    case "TaskAttested":
      return [
        `Attested by `,
        addr(a.attester),
        ` with the posted outputs (${a.count}, quorum ${row.task.attestationQuorum})`,
      ];
    case "TaskReopened":
      return [
        `Reopened: the outputs `,
        addr(a.previousNode),
        ` posted met no quorum of attestations by the window's end; the task is open to claims again`,
      ];
    case "TaskDisputed":
      return [`Outputs challenged by `, addr(a.challenger)];
    case "DisputeOpened":
      return a.circuit
        ? [
            `Outputs of `,
            addr(a.node),
            ` proved wrong by `,
            addr(a.challenger),
            `: a proof of other outputs (challengeWithProof), decided at once`,
          ]
        : [
            `Dispute opened by `,
            addr(a.challenger),
            ` against `,
            addr(a.node),
            `: bond ${opg(a.bond as bigint)}, stake vote until ${time(Number(a.deadline))}`,
          ];
    case "DisputeVoted":
      return [
        `Ballot of `,
        addr(a.voter),
        `: node ${a.nodeRight ? "right" : "wrong"} (weight ${opg(a.weight as bigint)})`,
      ];
    case "DisputeResolved":
      return [
        `Dispute resolved: ${DISPUTE_OUTCOMES[Number(a.outcome)] ?? a.outcome}; bond to `,
        addr(a.bondTo),
      ];
    case "BallotSettled": {
      const slashed = a.slashed as bigint;
      const paid = a.paid as bigint;
      return [
        `Ballot of `,
        addr(a.voter),
        ` settled: ${
          slashed > 0n
            ? `slashed ${opg(slashed)} (losing side)`
            : paid > 0n
              ? `paid ${opg(paid)} (winning side)`
              : "nothing moved"
        }`,
      ];
    }
    case "AttesterSlashed":
      return [`Attester `, addr(a.attester), ` slashed ${opg(a.amount as bigint)}`];
    case "TaskEnclaveSigned":
      return [`Signed by enclave key `, addr(a.key)];
    case "TaskVerified":
      return [
        `Verified: node `,
        addr(a.node),
        ` paid ${opg(a.nodeFee as bigint)}, royalty ${opg(a.royalty as bigint)}, protocol ${opg(a.protocolFee as bigint)}`,
      ];
    case "AttestersPaid":
      return [`Attesters paid: ${(a.attesters as string[]).length} × ${opg(a.share as bigint)}`];
    case "CallbackExecuted":
      return [
        `Callback `,
        addr(a.callback),
        a.success
          ? " succeeded"
          : h(
              "span",
              { class: "fail" },
              " FAILED (the result stands; the callback reverted or ran out of gas)",
            ),
      ];
    case "TaskRejected":
      return [
        `Rejected (${DISPUTE_OUTCOMES[Number(a.outcome)] ?? a.outcome}): ${opg(a.refund as bigint)} refunded to `,
        addr(a.requester),
      ];
    case "TaskExpired":
      return [`Expired: ${opg(a.refund as bigint)} refunded to `, addr(a.requester)];
    case "TaskResultSkipped": {
      // A batch (submitResults) that carried this task after it stopped being open, or past its deadline.
      const status = Number(a.status);
      const why =
        status === 1
          ? "its deadline had passed"
          : status === 3
            ? "it was already verified (another result came first, or the batch listed it twice)"
            : `it was ${TASK_STATUS_NAMES[status] ?? `in status ${status}`}`;
      return [`A submitResults batch skipped its result for this task: ${why}; nothing was paid for it`];
    }
    case "StakingCallFailed":
      return [
        h("span", { class: "fail" }, `A staking call (${a.selector}) for `),
        addr(a.node),
        h("span", { class: "fail" }, ` failed (amount ${opg(a.amount as bigint)})`),
      ];
    default:
      return [e.name];
  }
}

function renderTimeline(el: HTMLElement, row: TaskRow, snap: Snapshot, nowTime: number) {
  clear(el);
  const t = (b: number | undefined) => (b === undefined ? undefined : snap.blockTimes.get(b));
  const submitted = t(row.submittedBlock);
  const verified = row.events.find((e) => e.name === "TaskVerified");
  const claimed = row.events.filter((e) => e.name === "TaskClaimed").at(-1);
  const latency: Child[] = [];
  if (verified && submitted !== undefined && t(verified.block) !== undefined) {
    latency.push(`submitted → verified in ${secs(t(verified.block)! - submitted)}`);
    if (claimed && t(claimed.block) !== undefined)
      latency.push(` (claim → verified ${secs(t(verified.block)! - t(claimed.block)!)})`);
  } else if (!verified && submitted !== undefined && row.state !== "Expired" && row.state !== "Rejected") {
    latency.push(`${secs(Math.max(0, Math.round(nowTime - submitted)))} since submission, not verified yet`);
  }
  append(el, [
    h("h2", {}, "Timeline"),
    latency.length ? h("p", { "data-testid": "latency" }, ...latency) : null,
    h(
      "ol",
      { class: "timeline", "data-testid": "timeline" },
      ...row.events.map((e) => {
        const when = t(e.block);
        return h(
          "li",
          {
            "data-event": e.name,
            "data-block": e.block,
            "data-tx": e.tx,
            "data-success": e.name === "CallbackExecuted" ? String(Boolean(e.args.success)) : undefined,
            class: `ev ev-${e.source}`,
          },
          h("div", { class: "ev-name" }, e.name),
          h("div", { class: "ev-text" }, ...sentence(e, row)),
          h(
            "div",
            { class: "ev-meta muted" },
            `block ${e.block}`,
            when !== undefined ? ` · ${time(when)}` : "",
            " · tx ",
            txLink(e.tx),
          ),
        );
      }),
    ),
  ]);
}
