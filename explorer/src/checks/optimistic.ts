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

/**
 * The posted outputs' challenge window: when it ends, and their attesters: the set fixed when they were
 * posted (the TaskAttested logs of the posting transaction; nobody attests on chain afterwards).
 */
export function windowOf(row: TaskRow) {
  const posted = last(row, "TaskResultPosted");
  const attesters = named(row, "TaskAttested")
    .filter((e) => posted !== undefined && e.tx === posted.tx)
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
      message: `${attesters.length} of ${quorum} attestation(s), fixed when the outputs were posted`,
    };
  }
  const slashed = named(row, "AttesterSlashed").map((e) => getAddress(e.args.attester as string));
  if (slashed.length) details.push(["slashed", slashed.join(", ")]);
  if (row.state === "Rejected") {
    const unslashed = attesters.filter((a) => !slashed.includes(a));
    const outcome = last(row, "DisputeResolved");
    const nodeWrong = outcome !== undefined && DISPUTE_OUTCOMES[Number(outcome.args.outcome)] === "NodeWrong";
    if (s?.via === "challengeWithProof") {
      const challenged = s.attesters.map((a) => getAddress(a));
      if (challenged.length !== attesters.length || challenged.some((a, i) => a !== attesters[i])) {
        return {
          ...base,
          status: "fail",
          details,
          message: `the challenge names attesters (${challenged.join(", ") || "none"}) other than the set fixed at posting`,
        };
      }
    }
    if (nodeWrong && unslashed.length > 0) {
      return { ...base, status: "fail", details, message: `attesters not slashed: ${unslashed.join(", ")}` };
    }
    return {
      ...base,
      status: "skip",
      details,
      trusted: undefined,
      message:
        nodeWrong && attesters.length
          ? `the outputs were rejected: each of their ${attesters.length} attester(s) was slashed`
          : "the outputs were rejected: nothing rests on their attesters",
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
      `the attester list settled (${settled.join(", ") || "none"}) is not the set fixed at posting (TaskAttested)`,
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
      proved: `the attester list settled is the set fixed at posting (${settled.length}); a vote decided the result`,
    };
  }
  return {
    ...base,
    status: "trust",
    details,
    proved: `the ${settled.length} attester(s) settled are the set fixed at posting, meeting the quorum of ${quorum}`,
    message:
      `final because ${settled.length} attester(s) staked on the outputs and nobody challenged within the ` +
      "window: no proof of the outputs was made",
  };
}

/** The ballots of a vote (DisputeVoted, each counted: no cap displaces any) and their tallies. */
export function ballotsOf(row: TaskRow) {
  const votes = named(row, "DisputeVoted");
  let weightFor = 0n;
  let weightAgainst = 0n;
  for (const v of votes) {
    if (v.args.nodeRight) weightFor += v.args.weight as bigint;
    else weightAgainst += v.args.weight as bigint;
  }
  return { votes, weightFor, weightAgainst };
}

/**
 * `dispute`: who challenged and how it was decided. A model with a circuit: the challenger proved other
 * outputs (`challengeWithProof`), which rejected the posted ones in that transaction; `proofVerified` says
 * whether its proof verified in this page. A model without one: a stake vote, its ballots re-tallied here.
 */
export function disputeCheck(
  row: TaskRow,
  s: Settlement | undefined,
  proofVerified?: boolean,
): Check | undefined {
  const opened = last(row, "DisputeOpened");
  const disputed = last(row, "TaskDisputed");
  if (!opened && !disputed) return undefined;
  const base = { id: "dispute", title: "Dispute" };
  const challenger = String(opened?.args.challenger ?? disputed?.args.challenger ?? "");
  const circuit = Boolean(opened?.args.circuit);
  const details: [string, string][] = [["challenger", challenger]];
  if (opened) {
    details.push([
      "decided by",
      circuit
        ? "the challenger's proof of other outputs (the model has a circuit)"
        : "a stake-weighted vote of verification nodes",
    ]);
    if (!circuit) {
      details.push(
        ["bond", opg(opened.args.bond as bigint)],
        ["vote until", time(Number(opened.args.deadline))],
      );
    }
  }
  const { votes, weightFor, weightAgainst } = ballotsOf(row);
  if (votes.length) {
    details.push([
      "ballots",
      `${votes.length}, the challenger's own included (${opg(weightFor)} for the node, ${opg(weightAgainst)} against)`,
    ]);
  }
  const resolved = last(row, "DisputeResolved");
  const outcome = resolved ? DISPUTE_OUTCOMES[Number(resolved.args.outcome)] : undefined;
  if (outcome) details.push(["outcome", outcome]);
  const settledBallots = named(row, "BallotSettled");
  if (settledBallots.length) {
    let slashed = 0n;
    let paid = 0n;
    for (const b of settledBallots) {
      slashed += b.args.slashed as bigint;
      paid += b.args.paid as bigint;
    }
    details.push(["ballots settled", `${settledBallots.length}: ${opg(slashed)} slashed, ${opg(paid)} paid`]);
  }
  if (!resolved && row.state === "Disputed") {
    const until = opened ? time(Number(opened.args.deadline)) : "its deadline";
    return {
      ...base,
      status: "pending",
      details,
      message: `vote open until ${until}: staked verification nodes vote on the posted outputs`,
    };
  }
  if (s?.via === "challengeWithProof") {
    const ok = proofVerified === true && outcome === "NodeWrong";
    return {
      ...base,
      status: ok ? "pass" : proofVerified === undefined ? "pending" : "fail",
      details,
      trusted: "nothing but the checks below: the challenger's proof is re-verified in this page",
      proved: ok
        ? `posted outputs proved wrong by ${challenger}: its Groth16 proof of other outputs on the task's input, ` +
          "bound to the challenger, verifies here (see groth16)"
        : undefined,
      message: ok
        ? undefined
        : proofVerified === false
          ? "the challenger's proof does NOT verify here: the rejection rests on nothing this page can check"
          : proofVerified === undefined
            ? "running…"
            : `the recorded outcome is ${outcome ?? "missing"}`,
    };
  }
  const tallied =
    outcome === "NodeRight"
      ? weightFor >= weightAgainst
      : outcome === "NodeWrong"
        ? weightAgainst > weightFor
        : outcome === "Undecided";
  if (s?.via === "resolveVote" || (row.state === "Rejected" && !circuit)) {
    const settledFor = row.state === "Verified";
    if (!tallied || (settledFor && outcome !== "NodeRight")) {
      return {
        ...base,
        status: "fail",
        details,
        message: `the ballots (${opg(weightFor)} for, ${opg(weightAgainst)} against) do not add up to the recorded outcome ${outcome ?? "(missing)"}`,
      };
    }
    return {
      ...base,
      status: "trust",
      details,
      trusted:
        "the stake-weighted majority of verification nodes: a vote shows what they said, not that it is right",
      proved: "the ballots re-added here from the DisputeVoted logs give the recorded outcome",
      message:
        outcome === "NodeRight"
          ? "the vote found the node right: the outputs stand on the voters' stake"
          : outcome === "NodeWrong"
            ? `the vote found the node wrong: the outputs were rejected and the requester refunded ${opg(row.refund)}`
            : `the vote was undecided (less stake voted than the quorum): the outputs were rejected, the requester refunded ${opg(row.refund)}, nobody slashed`,
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
