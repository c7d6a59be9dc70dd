/**
 * bench:gas's probe of the baseline revision ("today's path" before issue 21's redesign, BASELINE_REV in
 * scripts/bench-gas.ts): scripts/bench-gas.ts copies this file and gas-probe-common.ts into that revision's
 * worktree and runs it there with `npx hardhat run scripts/lib/gas-probe-baseline.ts --network hardhat`, so it
 * runs against that revision's contracts, deploy code and typechain types. It imports only modules that exist
 * at that revision.
 *
 * That path claims every task before settling it (claimTask locks collateral; submitResult and
 * submitResultTee take only the claimer's result), and its submitResults settles a batch proof by proof (no
 * batched verification). Gas per digits-MLP task, every transaction counted, in the steady state (the node's
 * second task of a mode). Prints one JSON line (gas-probe-common.ts's ProbeResult).
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

const BATCHES = [8];

async function main() {
  const p = await digitsProtocol();
  const tasks = p.tasks.connect(p.node);
  const rows: Record<string, ProbeRow> = {};

  /** submitTask + claimTask + submitResult. */
  async function zkLone() {
    const t = await p.submit();
    const claim = await gasOf(tasks.claimTask(t.s.taskId, t.s.task));
    const { outputs, proof } = await p.prove(t.s, t.image);
    const settle = await gasOf(tasks.submitResult(t.s.taskId, t.s.task, t.s.input, outputs, proof));
    await p.expectVerified([t.s.taskId]);
    return row(1, [
      { name: "submitTask", gas: t.gas },
      { name: "claimTask", gas: claim },
      { name: "submitResult", gas: settle },
    ]);
  }

  /** submitTask and claimTask each + one submitResults (each proof verified on its own). */
  async function zkBatch(size: number) {
    const submitted = [];
    const claims = [];
    for (let i = 0; i < size; i++) {
      const t = await p.submit();
      submitted.push(t);
      claims.push(await gasOf(tasks.claimTask(t.s.taskId, t.s.task)));
    }
    const submissions = [];
    for (const t of submitted) {
      const { outputs, proof } = await p.prove(t.s, t.image);
      submissions.push({ taskId: t.s.taskId, task: t.s.task, input: t.s.input, outputs, proof });
    }
    const settle = await gasOf(tasks.submitResults(submissions));
    await p.expectVerified(submitted.map((t) => t.s.taskId));
    return row(size, [
      ...submitted.map((t) => ({ name: "submitTask", gas: t.gas })),
      ...claims.map((gas) => ({ name: "claimTask", gas })),
      { name: "submitResults", gas: settle },
    ]);
  }

  /** submitTaskInMode + claimTask + submitResultTee. */
  async function teeLone() {
    const t = await p.submit(p.modes.tee);
    const claim = await gasOf(tasks.claimTask(t.s.taskId, t.s.task));
    const signature = await p.teeSignature(t.s, t.outputs);
    const settle = await gasOf(tasks.submitResultTee(t.s.taskId, t.s.task, t.outputs, signature));
    await p.expectVerified([t.s.taskId]);
    return row(1, [
      { name: "submitTaskInMode", gas: t.gas },
      { name: "claimTask", gas: claim },
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

  progress("baseline: ZK lone (a first task, then the measured one)");
  await zkLone();
  rows["zk-lone"] = await zkLone();
  for (const size of BATCHES) {
    progress(`baseline: ZK batch of ${size}`);
    rows[`zk-batch-${size}`] = await zkBatch(size);
  }
  progress("baseline: TEE lone");
  await teeLone();
  rows["tee-lone"] = await teeLone();
  progress("baseline: optimistic lone");
  await optimisticLone();
  rows["optimistic-lone"] = await optimisticLone();
  return { probe: "baseline", commit: headCommit(), rows };
}

runMain(main);
