import { getAddress } from "ethers";
import { opg, time } from "../format";
import type { ChainEvent, TaskRow } from "../types";
import type { Settlement } from "./settlement";
import type { Check } from "./types";

/** `ITaskRegistry.DisputeOutcome` by index. */
export const DISPUTE_OUTCOMES = ["NodeRight", "NodeWrong", "Undecided"] as const;

const named = (row: TaskRow, name: string) => row.events.filter((e) => e.name === name);
const last = (row: TaskRow, name: string): ChainEvent | undefined => named(row, name).at(-1);
const secs = (s: number) =>
  s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${s} s`;

/** The posted outputs' challenge window: when it ends, and the attesters so far. */
export function windowOf(row: TaskRow) {
  const posted = last(row, "TaskResultPosted");
  const attesters = named(row, "TaskAttested")
    .filter(
      (e) => !posted || e.block > posted.block || (e.block === posted.block && e.logIndex > posted.logIndex),
    )
    .map((e) => getAddress(e.args.attester as string));
  return {
    posted,
    windowEnd: posted ? Number(posted.args.windowEnd) : undefined,
    attesters,
    quorum: Number(row.task.attestationQuorum),
  };
}

/**
 * `challenge-window`: the outputs were posted, and the result settled after the window ended (or was
 * challenged in it). `nowTime`: the head block's time (or the clock) for a window still open;
 * `settledTime`: the settling block's time.
 */
export function challengeWindowCheck(
  row: TaskRow,
  s: Settlement | undefined,
  nowTime: number,
  settledTime?: number,
): Check {
  const base = {
    id: "challenge-window",
    title: "Challenge window",
    trusted: "block timestamps as the RPC serves them",
  };
  const { posted, windowEnd } = windowOf(row);
  if (!posted || windowEnd === undefined) {
    if (row.state === "Open" || row.state === "Claimed") {
      return {
        ...base,
        status: "pending",
        message: "no outputs posted yet: the window opens when the node posts them",
      };
    }
    return {
      ...base,
      status: row.state === "Expired" ? "skip" : "fail",
      message: "no TaskResultPosted log for this task",
    };
  }
  const details: [string, string][] = [
    ["posted", `block ${posted.block} by ${posted.args.node as string}`],
    ["window ends", time(windowEnd)],
  ];
  const disputed = last(row, "TaskDisputed");
  if (disputed) {
    details.push(["challenged", `block ${disputed.block} by ${disputed.args.challenger as string}`]);
    return {
      ...base,
      status: row.state === "Disputed" ? "pending" : "pass",
      details,
      message:
        row.state === "Disputed"
          ? "challenged within the window: the dispute decides (see dispute)"
          : undefined,
      proved: "the outputs were challenged within the window, so a dispute decided them (see dispute)",
    };
  }
  if (row.state === "Pending") {
    const left = windowEnd - nowTime;
    return {
      ...base,
      status: "pending",
      details,
      message:
        left > 0
          ? `window open until ${time(windowEnd)} (${secs(left)} left): anyone may challenge the outputs`
          : `window ended at ${time(windowEnd)}: waiting for finalizeResult with the quorum of attesters`,
    };
  }
  if (row.state === "Expired") {
    return { ...base, status: "skip", details, message: "expired before it was finalized" };
  }
  if (s?.via === "finalizeResult" && settledTime !== undefined) {
    details.push(["settled", `${time(settledTime)} (block ${row.settledBlock})`]);
    if (settledTime <= windowEnd) {
      return { ...base, status: "fail", details, message: "settled BEFORE the challenge window ended" };
    }
    return {
      ...base,
      status: "pass",
      details,
      proved: `nobody challenged the outputs, and the result settled after the window ended (${time(windowEnd)})`,
    };
  }
  return { ...base, status: "pass", details, proved: "the outputs were posted and the window ran" };
}

/** `attesters`: the quorum of staked verification nodes that attested; the basis of an unchallenged result. */
export function attestersCheck(row: TaskRow, s: Settlement | undefined): Check {
  const base = {
    id: "attesters",
    title: "Attesters (quorum)",
    trusted:
      "the attesters' word: no proof of the outputs was made; they staked, and would be slashed if a dispute " +
      "proved the outputs wrong",
  };
  const { posted, attesters, quorum } = windowOf(row);
  const details: [string, string][] = [
    ["quorum", String(quorum)],
    ["attested", attesters.length ? attesters.join(", ") : "nobody yet"],
  ];
  const paid = last(row, "AttestersPaid");
  if (paid) {
    details.push(["paid", `${(paid.args.attesters as string[]).length} × ${opg(paid.args.share as bigint)}`]);
  }
  if (!posted) {
    return {
      ...base,
      status: row.state === "Expired" ? "skip" : "pending",
      message: "no outputs posted yet",
    };
  }
  if (row.state === "Pending" || row.state === "Disputed") {
    return {
      ...base,
      status: "pending",
      details,
      message: `${attesters.length} of ${quorum} attestation(s) so far`,
    };
  }
  if (row.state !== "Verified")
    return { ...base, status: "skip", details, message: `the task is ${row.state}` };
  if (!s || !("attesters" in s)) {
    return { ...base, status: "fail", details, message: "the settling calldata carries no attester list" };
  }
  const settled = s.attesters.map((a) => getAddress(a));
  const problems: string[] = [];
  if (settled.length !== attesters.length || settled.some((a, i) => a !== attesters[i])) {
    problems.push(
      `the attester list settled (${settled.join(", ") || "none"}) is not the TaskAttested sequence`,
    );
  }
  if (s.via === "finalizeResult" && settled.length < quorum) {
    problems.push(`${settled.length} attester(s), below the quorum of ${quorum}`);
  }
  if (problems.length > 0) return { ...base, status: "fail", details, message: problems.join("; ") };
  if (s.via !== "finalizeResult") {
    return {
      ...base,
      status: "pass",
      details,
      proved: `the attester list settled is the TaskAttested sequence (${settled.length}); a dispute decided the result`,
    };
  }
  return {
    ...base,
    status: "trust",
    details,
    proved: `the ${settled.length} attester(s) settled are the TaskAttested sequence, meeting the quorum of ${quorum}`,
    message:
      `final because ${settled.length} attester(s) staked on the outputs and nobody challenged within the ` +
      "window: no proof of the outputs was made",
  };
}

/** `dispute`: who challenged, how it was decided (a proof, a vote, a missed deadline). */
export function disputeCheck(
  row: TaskRow,
  s: Settlement | undefined,
  proofVerified?: boolean,
): Check | undefined {
  const opened = last(row, "DisputeOpened");
  const disputed = last(row, "TaskDisputed");
  if (!opened && !disputed) return undefined;
  const base = { id: "dispute", title: "Dispute" };
  const details: [string, string][] = [];
  if (opened) {
    details.push(
      ["challenger", String(opened.args.challenger)],
      ["bond", opg(opened.args.bond as bigint)],
      [
        "decided by",
        opened.args.circuit ? "a Groth16 proof (the model has a circuit)" : "a stake-weighted vote",
      ],
      ["deadline", time(Number(opened.args.deadline))],
    );
  }
  const votes = named(row, "DisputeVoted");
  const displaced = new Set(
    named(row, "DisputeVoteDisplaced").map((e) => getAddress(e.args.voter as string)),
  );
  if (votes.length) {
    let wFor = 0n;
    let wAgainst = 0n;
    for (const v of votes) {
      if (displaced.has(getAddress(v.args.voter as string))) continue;
      if (v.args.nodeRight) wFor += v.args.weight as bigint;
      else wAgainst += v.args.weight as bigint;
    }
    details.push(["votes", `${votes.length} (${opg(wFor)} for the node, ${opg(wAgainst)} against)`]);
  }
  const resolved = last(row, "DisputeResolved");
  const outcome = resolved ? DISPUTE_OUTCOMES[Number(resolved.args.outcome)] : undefined;
  if (outcome) details.push(["outcome", outcome]);
  if (!resolved && row.state === "Disputed") {
    const until = opened ? time(Number(opened.args.deadline)) : "its deadline";
    return {
      ...base,
      status: "pending",
      details,
      message: opened?.args.circuit
        ? `open: the node has until ${until} to answer with a Groth16 proof`
        : `open: verification nodes vote until ${until}`,
    };
  }
  if (s?.via === "respond") {
    const ok = proofVerified === true && outcome === "NodeRight";
    return {
      ...base,
      status: ok ? "pass" : proofVerified === undefined ? "pending" : "fail",
      details,
      trusted: "nothing but the checks above: the node's proof is re-verified in this page",
      proved: ok
        ? "the node answered the challenge with a Groth16 proof, which verifies here (see groth16)"
        : undefined,
      message: ok
        ? undefined
        : proofVerified === false
          ? "the dispute's proof does NOT verify here"
          : undefined,
    };
  }
  if (s?.via === "resolveVote") {
    return {
      ...base,
      status: outcome === "NodeRight" ? "trust" : "fail",
      details,
      trusted:
        "the stake-weighted majority of verification nodes: a vote shows what they said, not that it is right",
      message:
        outcome === "NodeRight"
          ? "the vote found the node right: the outputs stand on the voters' stake"
          : `the recorded outcome is ${outcome ?? "missing"}, yet the outputs were settled`,
    };
  }
  if (row.state === "Rejected") {
    return {
      ...base,
      status: "trust",
      details,
      trusted: opened?.args.circuit
        ? "that no valid proof was sent before the deadline (absence cannot be re-checked from a log)"
        : "the stake-weighted majority of verification nodes",
      message: `the challenger won (${outcome ?? "rejected"}): the outputs were rejected and the requester refunded ${opg(row.refund)}`,
    };
  }
  return {
    ...base,
    status: "trust",
    details,
    trusted: "the chain's dispute manager",
    message: `outcome ${outcome ?? "unknown"}`,
  };
}
