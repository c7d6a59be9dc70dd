import { time } from "@nomicfoundation/hardhat-network-helpers";
import { ethers, network } from "hardhat";
import type { Signer as EthersSigner } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import {
  VERIFICATION_MODE_OPTIMISTIC,
  hashWords,
  type modesFixture,
  type SubmittedTask,
} from "./market-fixture";
import { tinyOutputWord } from "./tiny-circuit";

/** What the optimistic-mode tests share: task statuses, the governed defaults, and the moves of the game. */

export const Status = {
  None: 0n,
  Open: 1n,
  Claimed: 2n,
  Verified: 3n,
  Expired: 4n,
  Pending: 5n,
  Disputed: 6n,
  Rejected: 7n,
};
export const Outcome = { NodeRight: 0n, NodeWrong: 1n, Undecided: 2n };
export const BPS = 10_000n;
export const PROTOCOL_BPS = 1000n;
export const ROYALTY_BPS = 1000n;
export const ATTESTER_BPS = 1000n;
export const CHALLENGE_BOND = ethers.parseEther("100");
export const ATTESTER_SLASH = ethers.parseEther("100");
/** DisputeManager's default voterSlashBps: a losing ballot loses 10% of its weight. */
export const VOTER_SLASH_BPS = 1000n;
/** NodeStaking's default slashBeneficiaryShareBps: half of a slash goes to the beneficiary. */
export const BENEFICIARY_BPS = 5000n;
export const VALUES = [1n, 2n, 3n, 4n];

export type Fixture = Awaited<ReturnType<typeof modesFixture>>;
export type Signer = { address: string; signMessage(message: Uint8Array): Promise<string> };

export interface Posted {
  s: SubmittedTask;
  node: HardhatEthersSigner;
  outputs: bigint[];
  outputsHash: string;
  /** The attesters the post carried, in order: what every later call names. */
  attesters: string[];
}

/** `signer`'s off-chain attestation of `outputs` that `node` is about to post for `s`. */
export async function signAttestation(
  f: Fixture,
  signer: Signer,
  s: SubmittedTask,
  node: string,
  outputs: bigint[],
) {
  const digest = await f.tasks.attestationDigest(s.taskId, node, hashWords(outputs));
  return signer.signMessage(ethers.getBytes(digest));
}

/**
 * Submit in optimistic mode on `modelId` (default: the model with a circuit), claim, post `outputs` (default:
 * the true ones) carrying the off-chain attestations of `attesters`.
 */
export async function posted(
  f: Fixture,
  opts: {
    modelId?: bigint;
    node?: HardhatEthersSigner;
    outputs?: bigint[];
    values?: bigint[];
    attesters?: Signer[];
    fee?: bigint;
  } = {},
): Promise<Posted> {
  const node = opts.node ?? f.nodes[0];
  const values = opts.values ?? VALUES;
  const s = await f.submit(values, {
    modelId: opts.modelId ?? f.optimisticModelId,
    mode: VERIFICATION_MODE_OPTIMISTIC,
    fee: opts.fee,
  });
  await f.tasks.connect(node).claimTask(s.taskId, s.task);
  const outputs = opts.outputs ?? [tinyOutputWord(values)];
  const by = opts.attesters ?? [];
  const sigs = [];
  for (const a of by) sigs.push(await signAttestation(f, a, s, node.address, outputs));
  await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, sigs);
  return { s, node, outputs, outputsHash: hashWords(outputs), attesters: by.map((a) => a.address) };
}

export async function afterWindow(f: Fixture, taskId: bigint) {
  const [, windowEnd] = await f.tasks.pendingOf(taskId);
  await passTime(windowEnd + 1n);
}

export async function afterDispute(f: Fixture, taskId: bigint) {
  const d = await f.disputes.disputeOf(taskId);
  await passTime(d.deadline + 1n);
}

/** Moves the chain's clock to `at` unless it is already there. */
async function passTime(at: bigint) {
  if (BigInt(await time.latest()) < at) await time.increaseTo(at);
}

export async function bonded(f: Fixture, account: string) {
  return (await f.staking.nodeInfo(account)).bonded;
}

export async function tokens(f: Fixture, account: string) {
  return f.token.balanceOf(account);
}

/** Wallet + stake (bonded and unbonding) + registry credits + unpaid dispute rewards: all `account` owns. */
export async function wealth(f: Fixture, account: string) {
  const info = await f.staking.nodeInfo(account);
  return (await tokens(f, account)) + info.bonded + info.unbonding + (await f.tasks.creditsOf(account));
}

/** `n` new verification nodes (Verification role only) staking `stake` each, with gas money and a bond. */
export async function freshVerifiers(f: Fixture, n: number, stake: bigint) {
  const stakingAddress = await f.staking.getAddress();
  const disputesAddress = await f.disputes.getAddress();
  const out = [];
  for (let i = 0; i < n; i++) {
    const w = ethers.Wallet.createRandom().connect(ethers.provider);
    await network.provider.send("hardhat_setBalance", [w.address, "0x56BC75E2D63100000"]);
    await f.token.connect(f.treasury).transfer(w.address, stake + CHALLENGE_BOND);
    await f.token.connect(w).approve(stakingAddress, stake);
    await f.token.connect(w).approve(disputesAddress, ethers.MaxUint256);
    await f.staking.connect(w).register(2, "http://swarm.example:8080");
    await f.staking.connect(w).stake(stake);
    out.push(w);
  }
  return out;
}

/** Submit in optimistic mode on the circuit model and claim with `node`; returns the task and honest outputs. */
export async function claimedOptimistic(f: Fixture, node: HardhatEthersSigner) {
  const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
  await f.tasks.connect(node).claimTask(s.taskId, s.task);
  return { s, outputs: [tinyOutputWord(VALUES)] };
}

/** `challenger` proves the true outputs of `p` (a proof bound to itself) and challenges with them. */
export async function disprove(f: Fixture, p: Posted, challenger: EthersSigner & { address: string }) {
  const { proof, outputs } = await f.prove(p.s, challenger);
  return f.disputes
    .connect(challenger)
    .challengeWithProof(p.s.taskId, p.s.task, p.outputsHash, p.attesters, p.s.input, outputs, proof);
}
