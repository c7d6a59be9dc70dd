/**
 * bench:gas's probe of this checkout (run by `npx hardhat run scripts/lib/gas-probe.ts --network hardhat`):
 * gas per digits-MLP task on the settlement path after issue 21's redesign, every transaction counted, in
 * the steady state (the node's second task of a mode, not its first). ZK and TEE tasks are settled without a
 * claim; optimistic ones are claimed. Prints one JSON line (scripts/lib/gas-probe-common.ts's ProbeResult).
 */
import {
  advanceTo,
  digitsProtocol,
  gasOf,
  headCommit,
  progress,
  row,
  runMain,
  type ProbeRow,
} from "./gas-probe-common";

const BATCHES = [2, 4, 8, 16];

async function main() {
  const p = await digitsProtocol();
  const tasks = p.tasks.connect(p.node);
  const rows: Record<string, ProbeRow> = {};

  /** submitTask + submitResult. */
  async function zkLone() {
    const t = await p.submit();
    const { outputs, proof } = await p.prove(t.s, t.image);
    const settle = await gasOf(tasks.submitResult(t.s.taskId, t.s.task, t.s.input, outputs, proof));
    await p.expectVerified([t.s.taskId]);
    return row(1, [
      { name: "submitTask", gas: t.gas },
      { name: "submitResult", gas: settle },
    ]);
  }

  /** submitTask each + one submitResults (one pairing product for the batch). */
  async function zkBatch(size: number) {
    const submitted = [];
    for (let i = 0; i < size; i++) submitted.push(await p.submit());
    const submissions = [];
    for (const t of submitted) {
      const { outputs, proof } = await p.prove(t.s, t.image);
      submissions.push({ taskId: t.s.taskId, task: t.s.task, input: t.s.input, outputs, proof });
    }
    const settle = await gasOf(tasks.submitResults(submissions));
    await p.expectVerified(submitted.map((t) => t.s.taskId));
    return row(size, [
      ...submitted.map((t) => ({ name: "submitTask", gas: t.gas })),
      { name: "submitResults", gas: settle },
    ]);
  }

  /** submitTaskInMode + submitResultTee. */
  async function teeLone() {
    const t = await p.submit(p.modes.tee);
    const signature = await p.teeSignature(t.s, t.outputs);
    const settle = await gasOf(tasks.submitResultTee(t.s.taskId, t.s.task, t.outputs, signature));
    await p.expectVerified([t.s.taskId]);
    return row(1, [
      { name: "submitTaskInMode", gas: t.gas },
      { name: "submitResultTee", gas: settle },
    ]);
  }

  /** submitTaskInMode + claimTask + submitResultOptimistic (1 attestation) + finalizeResult after the window. */
  async function optimisticLone() {
    const t = await p.submit(p.modes.optimistic);
    const claim = await gasOf(tasks.claimTask(t.s.taskId, t.s.task));
    const signature = await p.attestation(t.s, t.outputs);
    const post = await gasOf(tasks.submitResultOptimistic(t.s.taskId, t.s.task, t.outputs, [signature]));
    const [, windowEnd] = await p.tasks.pendingOf(t.s.taskId);
    await advanceTo(windowEnd + 1n);
    const finalize = await gasOf(tasks.finalizeResult(t.s.taskId, t.s.task, t.outputs, [p.attester.address]));
    await p.expectVerified([t.s.taskId]);
    return row(1, [
      { name: "submitTaskInMode", gas: t.gas },
      { name: "claimTask", gas: claim },
      { name: "submitResultOptimistic", gas: post },
      { name: "finalizeResult", gas: finalize },
    ]);
  }

  progress("ZK lone (a first task, then the measured one)");
  await zkLone();
  rows["zk-lone"] = await zkLone();
  for (const size of BATCHES) {
    progress(`ZK batch of ${size}`);
    rows[`zk-batch-${size}`] = await zkBatch(size);
  }
  progress("TEE lone");
  await teeLone();
  rows["tee-lone"] = await teeLone();
  progress("optimistic lone");
  await optimisticLone();
  rows["optimistic-lone"] = await optimisticLone();
  return { probe: "new", commit: headCommit(), rows };
}

runMain(main);
