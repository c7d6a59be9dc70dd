import fs from "node:fs";
import path from "node:path";
import { toBeHex, type Log, type Provider } from "ethers";
import { dequantizeOutput, executeProgram, packValues } from "../../zkml";
import { groth16Verify } from "../../zkml/prover/groth16";
import type { DataClient } from "../data/client";
import type { BundleCache } from "./bundles";
import type { Chain } from "./chain";
import { decodeTaskInput } from "./task-input";
import { taskRegistryInterface, TOPICS, type SubmittedTask } from "./tasks";

/** What an independent re-check concluded about one verified task. */
export interface AuditReport {
  taskId: string;
  modelId: string;
  node: string;
  block: number;
  tx: string;
  proofValid: boolean;
  outputMatches: boolean;
  agree: boolean;
  detail: string;
  /** The verified output, dequantized (softmax applied where the model ends in one); absent when unreadable. */
  output?: number[];
  checkedAt: string;
}

/** What an audit needs: read access to the registries, and the bundle cache and data node for artifacts. */
export interface AuditDeps {
  provider: Provider;
  models: Chain["models"];
  tasks: Chain["tasks"];
  bundles: BundleCache;
  data: DataClient;
}

interface Submission {
  task: SubmittedTask["task"];
  input: bigint[];
  outputs: bigint[];
  proof: bigint[];
}

/** The proof, outputs, input and task of `taskId` from the calldata of the transaction that settled it. */
export async function readSubmission(provider: Provider, txHash: string, taskId: bigint) {
  const tx = await provider.getTransaction(txHash);
  if (!tx) throw new Error(`transaction ${txHash} not found`);
  const call = taskRegistryInterface.parseTransaction({ data: tx.data });
  const copy = (s: Submission): Submission => ({
    task: s.task,
    input: [...s.input],
    outputs: [...s.outputs],
    proof: [...s.proof],
  });
  if (call?.name === "submitResult") return copy(call.args as unknown as Submission);
  if (call?.name === "submitResults") {
    const s = (call.args.submissions as (Submission & { taskId: bigint })[]).find((x) => x.taskId === taskId);
    return s ? copy(s) : undefined;
  }
  return undefined;
}

/**
 * The registry's stored result of `taskId` and its TaskVerified log, looked up in the one block the registry
 * says settled it (no scan from genesis, so it works against RPC providers that limit log ranges).
 * Undefined while the task is not verified.
 */
export async function findVerifiedLog(deps: AuditDeps, taskId: bigint) {
  if ((await deps.tasks.taskStatus(taskId)) !== 3n) return undefined;
  const result = await deps.tasks.resultOf(taskId);
  const logs = await deps.provider.getLogs({
    address: await deps.tasks.getAddress(),
    topics: [TOPICS.verified, toBeHex(taskId, 32)],
    fromBlock: Number(result.settledBlock),
    toBlock: Number(result.settledBlock),
  });
  return logs[0] ? { log: logs[0], result } : undefined;
}

/**
 * Re-check a TaskVerified log from public data only: the settling transaction's calldata (proof, outputs,
 * input, task), the model bundle (fetched by the registry's bundle hash, every hash checked), the proof
 * verified off-chain against the registered verification key with public signals rebuilt from chain data
 * (outputs, input, the binding of chain, registry, task and node), and the output recomputed with the
 * fixed-point executor. `models` limits the audit to those model ids (undefined when another model).
 */
export async function auditVerifiedLog(
  deps: AuditDeps,
  log: Log,
  opts: { models?: bigint[] } = {},
): Promise<AuditReport | undefined> {
  const parsed = taskRegistryInterface.parseLog(log);
  if (!parsed || parsed.name !== "TaskVerified") throw new Error("not a TaskVerified log");
  const taskId: bigint = parsed.args.taskId;
  const node: string = parsed.args.node;
  const eventOutputs: bigint[] = [...parsed.args.outputs];
  const submission = await readSubmission(deps.provider, log.transactionHash, taskId);
  const modelId = submission ? BigInt(submission.task.modelId) : 0n;
  if (opts.models && opts.models.length > 0 && !opts.models.includes(modelId)) return undefined;
  const base = {
    taskId: taskId.toString(),
    modelId: modelId.toString(),
    node,
    block: log.blockNumber,
    tx: log.transactionHash,
  };
  const report = (proofValid: boolean, outputMatches: boolean, detail: string, output?: number[]) => ({
    ...base,
    proofValid,
    outputMatches,
    agree: proofValid && outputMatches,
    detail,
    ...(output ? { output } : {}),
    checkedAt: new Date().toISOString(),
  });
  if (!submission)
    return report(false, false, "the settling transaction's calldata does not carry this task");
  if (submission.outputs.some((w, i) => w !== eventOutputs[i])) {
    return report(false, false, "calldata outputs differ from the TaskVerified event");
  }
  const model = await deps.models.getModel(modelId);
  const bundle = await deps.bundles.get(model);
  const vk = JSON.parse(
    fs.readFileSync(path.join(bundle.dir, bundle.manifest.artifacts.verificationKey!.file), "utf8"),
  );
  const binding = BigInt(await deps.tasks.taskBinding(taskId, node));
  const signals = [...submission.outputs, ...submission.input, binding].map(String);
  const p = submission.proof.map(String);
  const proof = {
    pi_a: [p[0], p[1], "1"],
    pi_b: [
      [p[3], p[2]],
      [p[5], p[4]],
      ["1", "0"],
    ],
    pi_c: [p[6], p[7], "1"],
    protocol: "groth16",
    curve: "bn128",
  };
  const proofValid = await groth16Verify(vk, signals, proof as never);
  const submitted: SubmittedTask = { taskId, modelId, task: submission.task, input: submission.input };
  const input = await decodeTaskInput(bundle.manifest, submitted, deps.data);
  const recomputed = executeProgram(bundle.program, input)[bundle.program.output.tensor];
  const words = packValues(recomputed, bundle.manifest.publicSignals.packBits);
  const outputMatches =
    words.length === submission.outputs.length && words.every((w, i) => w === submission.outputs[i]);
  const detail = [
    proofValid ? "proof valid" : "PROOF INVALID",
    outputMatches ? "output recomputed equal" : "OUTPUT DIFFERS",
  ].join("; ");
  return report(proofValid, outputMatches, detail, dequantizeOutput(bundle.program, recomputed));
}
