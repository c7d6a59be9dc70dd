import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { expect } from "chai";
import { ethers } from "hardhat";
import type { ContractTransactionResponse } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { expectGasAtMost, recordGas } from "../helpers/gas-snapshot";
import {
  VERIFICATION_MODE_OPTIMISTIC,
  VERIFICATION_MODE_TEE,
  VERIFICATION_MODE_ZK,
  hashWords,
  modesFixture,
  registerEnclaveKey,
  signTeeResult,
  type EnclaveKeyWallet,
} from "../helpers/market-fixture";

type Fixture = Awaited<ReturnType<typeof modesFixture>>;

/** Gas of `tx`, recorded for the snapshot under `name` when `record`. */
async function measure(name: string, tx: Promise<ContractTransactionResponse>, record: boolean) {
  if (record) return recordGas(name, tx);
  const receipt = await (await tx).wait();
  return Number(receipt!.gasUsed);
}

/**
 * Gas of each verification mode on one task shape: the tiny model (4 input words, 1 output word) with its
 * circuit, model 2 of the fixture, in the steady state of the ZK row "TaskRegistry.submitResult (Groth16, 6
 * public signals)": the node, the model owner and the attester were paid once before, so no figure includes
 * a first write to an account word.
 */
describe("Verification modes: gas", function () {
  async function claimed(f: Fixture, node: HardhatEthersSigner, mode: number) {
    const s = await f.submit(undefined, { modelId: f.optimisticModelId, mode });
    await f.tasks.connect(node).claimTask(s.taskId, s.task);
    return s;
  }

  async function zk(f: Fixture, node: HardhatEthersSigner) {
    const s = await claimed(f, node, VERIFICATION_MODE_ZK);
    const { proof, outputs } = await f.prove(s, node);
    return f.tasks.connect(node).submitResult(s.taskId, s.task, s.input, outputs, proof);
  }

  /** The optimistic happy path: post, one attestation, finalize after the window; returns each figure. */
  async function optimistic(
    f: Fixture,
    node: HardhatEthersSigner,
    attester: HardhatEthersSigner,
    record: boolean,
  ) {
    const s = await claimed(f, node, VERIFICATION_MODE_OPTIMISTIC);
    const { outputs } = await f.prove(s, node);
    const gas = (name: string, tx: Promise<ContractTransactionResponse>) => measure(name, tx, record);
    const post = await gas(
      "TaskRegistry.submitResultOptimistic (tiny model, 1 output word)",
      f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, []),
    );
    const attest = await gas(
      "TaskRegistry.attest (first attester)",
      f.tasks.connect(attester).attest(s.taskId, s.task, hashWords(outputs), []),
    );
    const [, windowEnd] = await f.tasks.pendingOf(s.taskId);
    await time.increaseTo(windowEnd + 1n);
    const finalize = await gas(
      "TaskRegistry.finalizeResult (1 attester)",
      f.tasks.connect(node).finalizeResult(s.taskId, s.task, outputs, [attester.address]),
    );
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(3n);
    return { post, attest, finalize };
  }

  /**
   * The optimistic happy path as the workers run it: the verifier's attestation signed off chain rides with the
   * post (two transactions), then finalize after the window.
   */
  async function optimisticSigned(
    f: Fixture,
    node: HardhatEthersSigner,
    attester: HardhatEthersSigner,
    record: boolean,
  ) {
    const s = await claimed(f, node, VERIFICATION_MODE_OPTIMISTIC);
    const { outputs } = await f.prove(s, node);
    const digest = await f.tasks.attestationDigest(s.taskId, node.address, hashWords(outputs));
    const signature = await attester.signMessage(ethers.getBytes(digest));
    const gas = (name: string, tx: Promise<ContractTransactionResponse>) => measure(name, tx, record);
    const post = await gas(
      "TaskRegistry.submitResultOptimistic (tiny model, 1 attestation signed off chain)",
      f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, [signature]),
    );
    const [, windowEnd] = await f.tasks.pendingOf(s.taskId);
    await time.increaseTo(windowEnd + 1n);
    const finalize = await gas(
      "TaskRegistry.finalizeResult (1 attester, signed off chain)",
      f.tasks.connect(node).finalizeResult(s.taskId, s.task, outputs, [attester.address]),
    );
    expect(await f.tasks.taskStatus(s.taskId)).to.equal(3n);
    return { post, finalize };
  }

  async function tee(f: Fixture, node: HardhatEthersSigner, key: EnclaveKeyWallet) {
    const s = await claimed(f, node, VERIFICATION_MODE_TEE);
    const { outputs } = await f.prove(s, node);
    const signature = await signTeeResult(f, key, s, node.address, outputs);
    return f.tasks.connect(node).submitResultTee(s.taskId, s.task, outputs, signature);
  }

  // The optimistic happy path is three transactions: 63,000 gas of intrinsic cost and about 13,000 of calldata
  // (each passes the 16-word Task back) before any work, plus the attester's eligibility check on NodeStaking
  // (about 10,000) and seven cold storage words written (record twice, node, royalty receiver, attester). It
  // comes to about 57% of a ZK settlement of the same task; half would need fewer transactions (attestations
  // signed off chain and checked at finalize) or less calldata per call (attest taking the task's commitment
  // instead of the Task): both change the ABI.
  it("the optimistic happy path costs well under a ZK settlement of the same task (at most 60%)", async function () {
    const f = await loadFixture(modesFixture);
    const [node] = f.nodes;
    const [attester] = f.verifiers;
    // Steady state: every account word the figures write was written before.
    await (await zk(f, node)).wait();
    await optimistic(f, node, attester, false);

    const zkGas = Number((await (await zk(f, node)).wait())!.gasUsed);
    const o = await optimistic(f, node, attester, true);
    const sum = o.post + o.attest + o.finalize;
    console.log(
      `      ZK submitResult: ${zkGas} gas; optimistic: post ${o.post} + attest ${o.attest} + finalize ` +
        `${o.finalize} = ${sum} gas (${((100 * sum) / zkGas).toFixed(1)}% of ZK)`,
    );
    expectGasAtMost(sum, Math.floor((zkGas * 6) / 10), "optimistic happy path (post + attest + finalize)");
    expectGasAtMost(o.post, 50_000, "submitResultOptimistic");
    expectGasAtMost(o.attest, 55_000, "attest (first attester)");
    expectGasAtMost(o.finalize, 72_000, "finalizeResult (1 attester)");
  });

  it("the optimistic happy path as the workers run it (attestation signed off chain) costs at most half a ZK settlement", async function () {
    const f = await loadFixture(modesFixture);
    const [node] = f.nodes;
    const [attester] = f.verifiers;
    await (await zk(f, node)).wait();
    await optimisticSigned(f, node, attester, false);

    const zkGas = Number((await (await zk(f, node)).wait())!.gasUsed);
    const o = await optimisticSigned(f, node, attester, true);
    const sum = o.post + o.finalize;
    console.log(
      `      ZK submitResult: ${zkGas} gas; optimistic with an off-chain attestation: post ${o.post} + ` +
        `finalize ${o.finalize} = ${sum} gas (${((100 * sum) / zkGas).toFixed(1)}% of ZK)`,
    );
    expectGasAtMost(sum, Math.floor(zkGas / 2), "optimistic happy path (post with attestation + finalize)");
  });

  it("TEE settlement costs under a third of a ZK settlement of the same task", async function () {
    const f = await loadFixture(modesFixture);
    const [node] = f.nodes;
    const key = await registerEnclaveKey(f, node);
    await (await tee(f, node, key)).wait();
    const gas = await recordGas(
      "TaskRegistry.submitResultTee (tiny model, 1 output word)",
      tee(f, node, key),
    );
    console.log(`      TEE submitResultTee: ${gas} gas`);
    expectGasAtMost(gas, 150_000, "submitResultTee");
  });
});
