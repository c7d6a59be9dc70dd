import type { Provider, Result } from "ethers";
import { ifaces } from "../contracts";

/**
 * How a task was settled, read from the settling transaction's calldata (the browser's copy of
 * workers/runtime/audit.ts readSettlement, which the page cannot import: it pulls Node modules). A
 * `challengeWithProof` rejected the posted outputs (whose hash is `outputsHash`): its `outputs` are the ones
 * the challenger proved, with a proof bound to the challenger.
 */
export type Settlement =
  | { via: "submitResult"; input: bigint[]; outputs: bigint[]; proof: bigint[] }
  | {
      via: "challengeWithProof";
      input: bigint[];
      outputs: bigint[];
      proof: bigint[];
      outputsHash: string;
      attesters: string[];
    }
  | { via: "submitResultTee"; outputs: bigint[]; signature: string }
  | { via: "finalizeResult" | "resolveVote"; outputs: bigint[]; attesters: string[] };

const words = (v: unknown) => [...(v as bigint[])].map((w) => BigInt(w));
const addresses = (v: unknown) => [...(v as string[])];

/** Where a task's submission sits in a `submitResults` batch: `index` (0-based) of `size` submissions. */
export interface BatchPlace {
  size: number;
  index: number;
}

/** "settled in a batch of 3 (submitResults; this task's submission is 2 of 3)": a `submitResults` settlement. */
export function batchText(batch: BatchPlace): string {
  return (
    `settled in a batch of ${batch.size} (submitResults; this task's submission is ${batch.index + 1} of ` +
    `${batch.size})`
  );
}

/**
 * The settlement of `taskId` in transaction `txHash`: undefined when the transaction is not a direct call
 * of the registry or dispute manager that carries this task (a contract that called them); throws when the
 * transaction cannot be read. A `submitResults` batch settles several ZK tasks in one transaction: the
 * task's own submission is the one carrying its id (the first, should a batch list it twice: the registry
 * skips the later ones), and `batch` says where it sits.
 */
export async function readSettlement(
  provider: Provider,
  txHash: string,
  taskId: bigint,
): Promise<{ settlement?: Settlement; method: string; batch?: BatchPlace }> {
  const tx = await provider.getTransaction(txHash);
  if (!tx) throw new Error(`transaction ${txHash} not found`);
  const call =
    ifaces.tasks.parseTransaction({ data: tx.data }) ?? ifaces.disputes.parseTransaction({ data: tx.data });
  if (!call)
    return { method: `an unknown method (selector ${tx.data.slice(0, 10)}) of ${tx.to ?? "no contract"}` };
  const a = call.args;
  const method = call.name;
  if (method === "submitResults") {
    const submissions = [...(a.submissions as Result[])];
    const index = submissions.findIndex((x) => BigInt(x.taskId) === taskId);
    if (index < 0) return { method };
    const s = submissions[index];
    const settlement: Settlement = {
      via: "submitResult",
      input: words(s.input),
      outputs: words(s.outputs),
      proof: words(s.proof),
    };
    return { settlement, method, batch: { size: submissions.length, index } };
  }
  if (a.taskId === undefined || BigInt(a.taskId) !== taskId) return { method };
  switch (method) {
    case "submitResult":
      return {
        method,
        settlement: { via: method, input: words(a.input), outputs: words(a.outputs), proof: words(a.proof) },
      };
    case "challengeWithProof":
      return {
        method,
        settlement: {
          via: method,
          input: words(a.input),
          outputs: words(a.outputs),
          proof: words(a.proof),
          outputsHash: a.outputsHash as string,
          attesters: addresses(a.attesters),
        },
      };
    case "submitResultTee":
      return {
        method,
        settlement: { via: method, outputs: words(a.outputs), signature: a.signature as string },
      };
    case "finalizeResult":
    case "resolveVote":
      return {
        method,
        settlement: { via: method, outputs: words(a.outputs), attesters: addresses(a.attesters) },
      };
    default:
      return { method };
  }
}
