import {
  JsonRpcSigner,
  toQuantity,
  NonceManager,
  type BaseContract,
  type ContractTransactionReceipt,
  type ContractTransactionResponse,
  type Interface,
  type Provider,
  type Result,
  type Signer,
} from "ethers";
import { OpgClientError } from "./errors";

/** Verification modes by their bit (VerificationModes.sol). */
const MODE_NAMES: Record<number, string> = { 1: "ZK", 2: "optimistic", 4: "TEE" };
/** IEnclaveRegistry.KeyStanding, by index. */
const KEY_STANDINGS = [
  "Unknown",
  "Pending",
  "Active",
  "Challenged",
  "Revoked",
  "Expired",
  "MeasurementWithdrawn",
];

/**
 * What a custom error means for whoever sent the transaction, where its name and arguments alone do not say
 * (appended to the decoded error).
 */
const REVERT_HINTS: Record<string, (args: Result) => string> = {
  TaskRegistryWrongMode: (a) =>
    `task ${a[0]} is a ${MODE_NAMES[Number(a[1])] ?? `mode ${a[1]}`} task, which this call does not take: ZK ` +
    "tasks are settled with submitResult or submitResults and TEE tasks with submitResultTee, directly by any " +
    "eligible inference node (no claim: the first valid result wins); only optimistic tasks are claimed " +
    "(claimTask, then submitResultOptimistic)",
  TaskRegistryEnclaveKeyRejected: (a) => {
    const standing = KEY_STANDINGS[Number(a[2])] ?? `standing ${a[2]}`;
    return (
      `the enclave key ${a[1]} that signed task ${a[0]}'s result is ${standing}, not Active: its signatures ` +
      "are refused (a challenged key's included); the task stays open for any node with an Active key"
    );
  },
  TaskRegistryPendingMismatch: (a) =>
    `the outputs or attester list named for task ${a[0]} are not the ones posted (the attester set is fixed ` +
    "by the posting transaction's TaskAttested logs), or the dispute belongs to another dispute manager",
  DisputeManagerSameOutputs: (a) =>
    `the proof is of task ${a[0]}'s posted outputs themselves: it shows them right, so there is nothing to ` +
    "challenge",
  DisputeManagerInvalidProof: (a) =>
    `the proof does not verify for task ${a[0]}: a challenge by proof must prove the model's true outputs ` +
    "on the task's input, bound to the challenger's own address (taskBinding(taskId, challenger))",
  DisputeManagerCannotVote: (a) =>
    `${a[1]} may not vote on task ${a[0]}'s dispute: not an eligible verification node, already voted (the ` +
    "challenger's challenge is its ballot), or it staked after the dispute opened",
};

/**
 * Send a contract transaction and wait for it; a revert becomes an OpgClientError naming the contract's
 * custom error and its arguments, decoded with `iface` (ethers leaves errors of another ABI undecoded),
 * and what it means where its name does not say.
 */
export async function sendTx(what: string, iface: Interface, tx: () => Promise<ContractTransactionResponse>) {
  try {
    return (await (await tx()).wait()) as ContractTransactionReceipt;
  } catch (e) {
    const data = (e as { data?: unknown }).data;
    const decoded = typeof data === "string" && data.length >= 10 ? iface.parseError(data) : null;
    if (decoded) {
      const hint = REVERT_HINTS[decoded.name];
      throw new OpgClientError(
        `${what} reverted: ${decoded.name}(${decoded.args.map(String).join(", ")})` +
          (hint ? `: ${hint(decoded.args)}` : ""),
      );
    }
    throw e;
  }
}

/** A provider that takes raw JSON-RPC requests (JsonRpcProvider, BrowserProvider, hardhat's). */
type RawProvider = Provider & { send(method: string, params: unknown[]): Promise<unknown> };

function rawProvider(provider: Provider): RawProvider | undefined {
  const send = (provider as Partial<RawProvider>).send;
  return typeof send === "function" ? (provider as RawProvider) : undefined;
}

/**
 * A view call read now, not from the provider's response cache: ethers' JsonRpcProvider answers a repeated
 * request from a 250 ms cache by default, so an allowance or a nonce read just after a transaction can be
 * the old one. Raw `send` requests bypass that cache (they still share its request batches).
 */
export async function freshCall(
  provider: Provider,
  contract: BaseContract,
  fn: string,
  args: readonly unknown[],
  blockTag: number | "latest" = "latest",
): Promise<Result> {
  const to = await contract.getAddress();
  const data = contract.interface.encodeFunctionData(fn, args);
  const raw = rawProvider(provider);
  const tag = blockTag === "latest" ? blockTag : toQuantity(blockTag);
  const result = raw
    ? ((await raw.send("eth_call", [{ to, data }, tag])) as string)
    : await provider.call({ to, data, blockTag });
  return contract.interface.decodeFunctionResult(fn, result);
}

/** The latest block's number and timestamp, read past the response cache. */
export async function freshBlock(provider: Provider): Promise<{ number: number; timestamp: number }> {
  const raw = rawProvider(provider);
  const block = raw
    ? ((await raw.send("eth_getBlockByNumber", ["latest", false])) as { number: string; timestamp: string })
    : await provider.getBlock("latest");
  if (!block) throw new Error("the RPC returned no latest block");
  return { number: Number(block.number), timestamp: Number(block.timestamp) };
}

/** The account's next nonce counting its pending transactions, read past the response cache. */
export async function freshPendingNonce(provider: Provider, account: string): Promise<number> {
  const raw = rawProvider(provider);
  if (raw) return Number(await raw.send("eth_getTransactionCount", [account, "pending"]));
  return provider.getTransactionCount(account, "pending");
}

/**
 * The transactions of one signer, sent one at a time: each waits for the receipt of the one before, and
 * carries an explicit nonce, the larger of the account's pending count (read fresh) and one past the last
 * nonce sent here. So back-to-back calls (approve then deposit, submit after submit, calls made at once
 * with Promise.all) work over a plain `JsonRpcProvider`, whose 250 ms response cache would otherwise hand
 * the second transaction the first one's nonce ("nonce has already been used"). A nonce is counted as used
 * only once its transaction was accepted, so a refused transaction (a revert found by gas estimation)
 * leaves no gap. Signers that assign nonces themselves (a `JsonRpcSigner`, whose node or wallet extension
 * does; an ethers `NonceManager`) get none from here, only the one-at-a-time order.
 */
export class TxQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private nextNonce = 0;
  private readonly assignsNonces: boolean;

  constructor(readonly signer: Signer) {
    // Duck-typed as well: a dapp that imports ethers as an ES module holds other class objects than ours.
    const s = signer as Partial<JsonRpcSigner & NonceManager>;
    const jsonRpcSigner = signer instanceof JsonRpcSigner || typeof s.sendUncheckedTransaction === "function";
    const nonceManager =
      signer instanceof NonceManager || (typeof s.increment === "function" && typeof s.reset === "function");
    this.assignsNonces = !jsonRpcSigner && !nonceManager;
  }

  /** Send with `tx(overrides)` (pass the overrides as the contract call's last argument) and wait for it. */
  send(
    what: string,
    iface: Interface,
    tx: (overrides: { nonce?: number }) => Promise<ContractTransactionResponse>,
  ): Promise<ContractTransactionReceipt> {
    const run = this.tail.then(() => this.sendNow(what, iface, tx));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async sendNow(
    what: string,
    iface: Interface,
    tx: (overrides: { nonce?: number }) => Promise<ContractTransactionResponse>,
  ) {
    if (!this.assignsNonces) return sendTx(what, iface, () => tx({}));
    const provider = this.signer.provider;
    if (!provider) throw new OpgClientError("the signer has no provider: connect it to one");
    const pending = await freshPendingNonce(provider, await this.signer.getAddress());
    const nonce = Math.max(pending, this.nextNonce);
    return sendTx(what, iface, async () => {
      const response = await tx({ nonce });
      this.nextNonce = nonce + 1;
      return response;
    });
  }
}
