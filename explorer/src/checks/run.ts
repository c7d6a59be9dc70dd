import type { Ctx } from "../ctx";
import { opg, short, time } from "../format";
import type { TaskRow } from "../types";
import { loadBundle, type LoadedBundle } from "./bundle";
import { attestersCheck, challengeWindowCheck, disputeCheck } from "./optimistic";
import { readSettlement, type BatchPlace, type Settlement } from "./settlement";
import { enclaveSignatureCheck, keyStandingCheck } from "./tee";
import { errorText, type Check } from "./types";
import {
  bundleHashCheck,
  bundleKey,
  disproofOutputsCheck,
  groth16Check,
  onChainKeyWords,
  outputMatchCheck,
  publicSignalsCheck,
  setupCheck,
  snarkjsKeyFromWords,
  vkHashCheck,
} from "./zk";

/** One task's checks: filled in as they finish; `listeners` hear each change. */
export interface CheckRun {
  key: string;
  checks: Check[];
  /** The model's bundle, once loaded (the outputs section names outputs from its manifest). */
  bundle?: LoadedBundle;
  /** How the task was settled (the calldata's method), once read. */
  settledBy?: string;
  /** A `submitResults` settlement: the batch's size and this task's place in it, once read. */
  batch?: BatchPlace;
  done: boolean;
  listeners: Set<() => void>;
}

/** Checks by task id and settling transaction: computed once per page load, whatever the live updates. */
const runs = new Map<string, CheckRun>();

export const runKey = (row: TaskRow) => `${row.id}:${row.settledTx ?? ""}`;

const ZK_CHECKS: [string, string][] = [
  ["bundle-hash", "Model bundle is the registered one"],
  ["vk-hash", "Verification key is the registered one"],
  ["public-signals", "Public signals rebuilt from chain data"],
  ["groth16", "Groth16 proof verifies in this page"],
  ["output-match", "Outputs shown are the settled ones"],
  ["setup", "Trusted setup (who could forge proofs)"],
];
const TEE_CHECKS: [string, string][] = [
  ["bundle-hash", "Model bundle is the registered one"],
  ["enclave-signature", "Enclave signature recovers to the recorded key"],
  ["key-standing", "Enclave key registration and standing"],
  ["output-match", "Outputs shown are the settled ones"],
];
const OPTIMISTIC_CHECKS: [string, string][] = [
  ["bundle-hash", "Model bundle is the registered one"],
  ["challenge-window", "Challenge window"],
  ["attesters", "Attesters (quorum)"],
  ["output-match", "Outputs shown are the settled ones"],
];

/** An optimistic task's posted outputs rejected by a challenger's proof of other outputs (`challengeWithProof`). */
const DISPROOF_CHECKS: [string, string][] = [
  ["challenge-window", "Challenge window"],
  ["attesters", "Attesters (quorum)"],
  ["dispute", "Dispute"],
  ["bundle-hash", "Model bundle is the registered one"],
  ["vk-hash", "Verification key is the registered one"],
  ["public-signals", "Public signals rebuilt from chain data"],
  ["groth16", "Groth16 proof verifies in this page"],
  ["disproof-outputs", "The proof is of other outputs than the posted ones"],
  ["setup", "Trusted setup (who could forge proofs)"],
];

/** The task's outputs were rejected by a challenger's proof (a dispute opened and resolved at once). */
export function rejectedByProof(row: TaskRow): boolean {
  const opened = row.events.filter((e) => e.name === "DisputeOpened").at(-1);
  return row.state === "Rejected" && opened?.args.circuit === true;
}

/** The page re-checks a settlement of this task itself: a verified result, or a rejection by proof. */
export function hasPageChecks(row: TaskRow): boolean {
  return (row.state === "Verified" || rejectedByProof(row)) && !!row.settledTx && !!row.node;
}

function planOf(row: TaskRow): [string, string][] {
  if (row.mode === "tee") return TEE_CHECKS;
  if (row.mode !== "optimistic") return ZK_CHECKS;
  if (rejectedByProof(row)) return DISPROOF_CHECKS;
  if (!row.events.some((e) => e.name === "DisputeOpened" || e.name === "TaskDisputed"))
    return OPTIMISTIC_CHECKS;
  // a disputed task: the dispute's check goes before the outputs'
  return [...OPTIMISTIC_CHECKS.slice(0, 3), ["dispute", "Dispute"], OPTIMISTIC_CHECKS[3]];
}

/** What settles an open task, by mode: ZK and TEE tasks are not claimed; optimistic ones are. */
const OPEN_WAIT: Record<string, string> = {
  zk: "open, waiting for the first node in its service order to settle it with a proof",
  tee: "open, waiting for the first node in its service order to settle it with an enclave-signed result",
  optimistic: "open, nobody holds a claim",
};

/**
 * Why nothing can be checked yet, for a task that is not settled. A ZK or TEE task is never claimed: any
 * eligible inference node may settle it (the nodes take it in their service order; the first valid result
 * wins). An optimistic task is claimed, then its outputs posted.
 */
export function waitingFor(row: TaskRow, nowTime: number): string {
  const claim = row.events.filter((e) => e.name === "TaskClaimed").at(-1);
  const reopened = row.events.filter((e) => e.name === "TaskReopened").at(-1);
  if (row.state === "Open") {
    const again = reopened
      ? `reopened at block ${reopened.block} (the outputs ${short(String(reopened.args.previousNode), 4)} posted ` +
        "met no quorum of attestations), "
      : "";
    const open = OPEN_WAIT[row.mode] ?? "open";
    return `Not settled yet: ${again}${open} (deadline ${time(Number(row.task.deadline))})`;
  }
  if (row.state === "Claimed" && claim) {
    const until = Number(claim.args.claimExpiresAt);
    const lapsed = until < nowTime;
    return (
      `Not settled yet: claimed by ${short(row.node ?? "", 4)} until ${time(until)}` +
      `${lapsed ? " (claim lapsed: another eligible node may take it over)" : ""}, waiting for its outputs`
    );
  }
  return `Not settled yet (${row.state})`;
}

/**
 * The checks of a task the page does not re-check a settlement of (see hasPageChecks): computed from its
 * logs alone on every render (cheap). Open, claimed: everything pending; optimistic pending or disputed: the
 * window and attesters; rejected by vote: the window, attesters and the ballots; expired: nothing to check.
 */
export function staticChecks(row: TaskRow, nowTime: number): Check[] {
  if (row.state === "Expired") {
    return planOf(row).map(([id, title]) => ({
      id,
      title,
      status: "skip",
      message: `no result to check: the task expired and the requester was refunded ${opg(row.refund)}`,
    }));
  }
  if (
    row.mode === "optimistic" &&
    (row.state === "Pending" || row.state === "Disputed" || row.state === "Rejected")
  ) {
    const checks: Check[] = [challengeWindowCheck(row, undefined, nowTime), attestersCheck(row, undefined)];
    const d = disputeCheck(row, undefined);
    if (d) checks.push(d);
    if (row.state === "Rejected") {
      checks.push({
        id: "output-match",
        title: "Outputs shown are the settled ones",
        status: "skip",
        message: "the outputs were rejected: nothing settled",
      });
    } else {
      checks.push({
        id: "output-match",
        title: "Outputs shown are the settled ones",
        status: "pending",
        message: "the posted outputs are not final yet",
      });
    }
    return checks;
  }
  if (row.state === "Rejected") {
    return [
      {
        id: "settlement",
        title: "Settlement",
        status: "skip",
        message: `the task was rejected; the requester was refunded ${opg(row.refund)}`,
      },
    ];
  }
  return planOf(row).map(([id, title]) => ({
    id,
    title,
    status: "pending",
    message: "runs once the task is verified",
  }));
}

/** Never throws: a check that throws becomes a failed check with the error. */
async function guard(id: string, title: string, f: () => Promise<Check> | Check): Promise<Check> {
  try {
    return await f();
  } catch (e) {
    return { id, title, status: "fail", message: `the check could not run: ${errorText(e)}` };
  }
}

/**
 * The checks of a verified task, or of one whose outputs a challenger's proof rejected, started once per task
 * and settling transaction and kept for the page's life. Returns at once; the run fills `checks` in and
 * tells `listeners`.
 */
export function verifiedChecks(ctx: Ctx, row: TaskRow): CheckRun {
  const key = runKey(row);
  const existing = runs.get(key);
  if (existing) return existing;
  const run: CheckRun = {
    key,
    checks: planOf(row).map(([id, title]) => ({ id, title, status: "pending", message: "running…" })),
    done: false,
    listeners: new Set(),
  };
  runs.set(key, run);
  const notify = () => {
    for (const f of run.listeners) {
      try {
        f();
      } catch (e) {
        console.error(e);
      }
    }
  };
  const put = (c: Check) => {
    const i = run.checks.findIndex((x) => x.id === c.id);
    if (i >= 0) run.checks[i] = c;
    else run.checks.push(c);
    notify();
  };
  void execute(ctx, row, run, put)
    .catch((e) =>
      put({ id: "checks", title: "Checks", status: "fail", message: `the checks failed: ${errorText(e)}` }),
    )
    .finally(() => {
      // anything still pending could not be decided
      for (const c of run.checks) {
        if (c.status === "pending") put({ ...c, status: "fail", message: "the check did not finish" });
      }
      run.done = true;
      notify();
    });
  return run;
}

async function execute(ctx: Ctx, row: TaskRow, run: CheckRun, put: (c: Check) => void): Promise<void> {
  const model = ctx.snap.models.get(row.modelId.toString());
  const node = row.node!;
  const txHash = row.settledTx!;
  const bundleP = model
    ? loadBundle(ctx.config.data, model).then(
        (b) => ({ b }),
        (e: unknown) => ({ error: errorText(e) }),
      )
    : Promise.resolve({ error: `model ${row.modelId} is not in the registry's logs` });
  let settlement: Settlement | undefined;
  let method = "";
  let readError: string | undefined;
  try {
    let batch: BatchPlace | undefined;
    ({ settlement, method, batch } = await readSettlement(ctx.store.provider, txHash, row.id));
    run.batch = batch;
  } catch (e) {
    readError = errorText(e);
  }
  run.settledBy = method || settlement?.via;
  const calldataName = run.batch
    ? `calldata of submitResults (this task's submission, ${run.batch.index + 1} of ${run.batch.size})`
    : `calldata of ${settlement?.via ?? method ?? "the settling transaction"}`;
  const outputMatch = () =>
    guard("output-match", "Outputs shown are the settled ones", () =>
      outputMatchCheck(ctx, row, settlement?.outputs, calldataName),
    );

  // The bundle: for ZK its key; for every mode the manifest names the outputs.
  const loaded = await bundleP;
  const bundle = "b" in loaded ? loaded.b : undefined;
  run.bundle = bundle;
  const bundleCheck = model
    ? bundleHashCheck(model, bundle, "error" in loaded ? loaded.error : undefined)
    : {
        id: "bundle-hash",
        title: "Model bundle is the registered one",
        status: "fail" as const,
        message: `model ${row.modelId} unknown`,
      };
  if (!settlement) {
    const why = readError
      ? `the settling transaction ${txHash} could not be read: ${readError}`
      : `the settling transaction calls ${method}, whose calldata does not carry this task ` +
        "(sent through another contract?): the page cannot re-check it";
    put(bundleCheck);
    put({ id: "settlement", title: "Settlement calldata", status: "fail", message: why });
    for (const c of run.checks) if (c.status === "pending") put({ ...c, status: "skip", message: why });
    put(await outputMatch());
    return;
  }

  if (settlement.via === "submitResult" || settlement.via === "challengeWithProof") {
    const s = settlement;
    const disproof = s.via === "challengeWithProof";
    // A disproof is bound to the challenger (DisputeOpened, emitted in the same transaction).
    const opened = row.events.filter((e) => e.name === "DisputeOpened" && e.tx === txHash).at(-1);
    const prover = disproof ? String(opened?.args.challenger ?? "") : node;
    if (disproof) {
      put(challengeWindowCheck(row, s, 0));
      put(attestersCheck(row, s));
      put(disputeCheck(row, s, undefined)!);
    }
    put(bundleCheck);
    const vkCheck = model
      ? await guard("vk-hash", "Verification key is the registered one", () =>
          vkHashCheck(ctx, model, bundle),
        )
      : {
          id: "vk-hash",
          title: "Verification key is the registered one",
          status: "fail" as const,
          message: "model unknown",
        };
    put(vkCheck);
    // The data node's key; when it has none, the registry's on-chain words (and the check says so).
    let { vk } = bundleKey(bundle);
    let keySource = "the data node's verification_key.json";
    if (!vk) {
      try {
        vk = snarkjsKeyFromWords(await onChainKeyWords(ctx, row.modelId));
        keySource =
          "the registry's on-chain key words (verificationKeyOf): the data node's key was not available";
      } catch {
        // no key at all: groth16 fails below
      }
    }
    let signals: bigint[] | undefined;
    put(
      await guard("public-signals", "Public signals rebuilt from chain data", async () => {
        if (disproof && !opened) throw new Error("no DisputeOpened log in the challenge's transaction");
        const r = await publicSignalsCheck(ctx, row, prover, s, txHash, vk, run.batch);
        signals = r.signals;
        return r.check;
      }),
    );
    const proof = await guard("groth16", "Groth16 proof verifies in this page", () =>
      groth16Check(
        vk,
        keySource,
        signals,
        s.proof,
        vkCheck.status === "pass",
        disproof ? "challenger" : "node",
      ),
    );
    put(proof);
    if (disproof) {
      put(disproofOutputsCheck(row, s));
      put(setupCheck(bundle, model?.bundleHash));
      put(disputeCheck(row, s, proof.status === "pass")!);
      return;
    }
    put(await outputMatch());
    put(setupCheck(bundle, model?.bundleHash));
    return;
  }

  if (settlement.via === "submitResultTee") {
    const s = settlement;
    put(bundleCheck);
    put(
      await guard("enclave-signature", "Enclave signature recovers to the recorded key", () =>
        enclaveSignatureCheck(ctx, row, model, node, s.outputs, s.signature),
      ),
    );
    put(
      await guard("key-standing", "Enclave key registration and standing", () =>
        keyStandingCheck(ctx, row, node),
      ),
    );
    put(await outputMatch());
    return;
  }

  // Optimistic: finalized after the window, or a dispute settled by vote.
  const s = settlement;
  put(bundleCheck);
  let settledTime: number | undefined;
  try {
    settledTime = (await ctx.store.provider.getBlock(row.settledBlock!))?.timestamp;
  } catch {
    // the window check says it could not compare
  }
  put(challengeWindowCheck(row, s, settledTime ?? 0, settledTime));
  put(attestersCheck(row, s));
  const d = disputeCheck(row, s);
  if (d) put(d);
  put(await outputMatch());
}
