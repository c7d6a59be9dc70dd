import { toBeHex, type Log, type Provider } from "ethers";
import { dequantizeOutput, executeProgram, packValues } from "../../zkml";
import { groth16Verify } from "../../zkml/prover/groth16";
import { bytes32ToBundleId } from "../data/bundle-archive";
import type { DataClient } from "../data/client";
import type { AuditSetup, SetupChecks } from "./audit-setup";
import { BundleRejectedError, type BundleCache } from "./bundles";
import type { Chain } from "./chain";
import { decodeTaskInput, InputRejectedError } from "./task-input";
import { taskRegistryInterface, TOPICS, type SubmittedTask } from "./tasks";

/** What an independent re-check concluded about one verified task. */
export interface AuditReport {
  taskId: string;
  modelId: string;
  node: string;
  block: number;
  tx: string;
  /** The proof verifies against the model's registered key, with public signals rebuilt from chain data. */
  proofValid: boolean;
  /** The model's public bundle is the one registered: its verification key, ONNX and signal layout agree. */
  bundleMatches: boolean;
  /** The output recomputed from the bundle's quantized program equals the verified output words. */
  outputMatches: boolean;
  /** All three: the result is re-verified from public data. */
  agree: boolean;
  detail: string;
  /**
   * The registered key's trusted setup is established secure here: the bundle matches the registry and
   * its setup check found a published phase-1 ceremony and a secret phase-2 contribution (needs the ptau).
   * Independent of `agree`: a proof under a development setup verifies, but whoever ran compile could
   * have forged it.
   */
  setupSecure: boolean;
  /** Who could forge proofs for the model's bundle; absent when the bundle could not be read. */
  setup?: AuditSetup;
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
  /** Setup checks of the bundles, one per bundle (kept across audits: every task of a model shares it). */
  setups: SetupChecks;
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
 * The snarkjs form of a key in the registry's word order (the inverse of zkml's verificationKeyWords): G2
 * coordinates are stored imaginary part first, snarkjs writes them real part first.
 */
export function snarkjsKeyFromWords(words: readonly bigint[]) {
  const w = words.map(String);
  const g1 = (i: number) => [w[i], w[i + 1], "1"];
  const g2 = (i: number) => [
    [w[i + 1], w[i]],
    [w[i + 3], w[i + 2]],
    ["1", "0"],
  ];
  const ic: string[][] = [];
  for (let i = 14; i + 1 < w.length; i += 2) ic.push(g1(i));
  return {
    protocol: "groth16",
    curve: "bn128",
    nPublic: ic.length - 1,
    vk_alpha_1: g1(0),
    vk_beta_2: g2(2),
    vk_gamma_2: g2(6),
    vk_delta_2: g2(10),
    IC: ic,
  };
}

/**
 * Re-check a TaskVerified log from public data only: the settling transaction's calldata (proof, outputs,
 * input, task); the proof verified off-chain against the model's registered verification key
 * (`verificationKeyOf`) with public signals rebuilt from chain data (outputs, input, the binding of chain,
 * registry, task and node); the model bundle (fetched by the registry's bundle hash, every file hash
 * checked) compared with the registered model, so that the registered key is the published circuit's
 * (keccak256 of the bundle's key words against `verificationKeyHash`), and the ONNX and layout agree; and the
 * output recomputed with the bundle's fixed-point executor. The bundle's trusted setup is checked too
 * (`setup`, `setupSecure`: who could forge proofs), which does not change `agree`. `models` limits the
 * audit to those model ids (undefined when another model). Throws only for what may pass (an RPC or data
 * node outage).
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
  const report = (
    checks: { proofValid: boolean; bundleMatches: boolean; outputMatches: boolean },
    detail: string,
    { setup, output }: { setup?: AuditSetup; output?: number[] } = {},
  ): AuditReport => ({
    ...base,
    ...checks,
    agree: checks.proofValid && checks.bundleMatches && checks.outputMatches,
    detail,
    // the setup checked is the published bundle's: it says nothing of a registered key that differs
    setupSecure: checks.bundleMatches && setup?.secure === true,
    ...(setup ? { setup } : {}),
    ...(output ? { output } : {}),
    checkedAt: new Date().toISOString(),
  });
  const none = { proofValid: false, bundleMatches: false, outputMatches: false };
  if (!submission) return report(none, "the settling transaction's calldata does not carry this task");
  if (submission.outputs.some((w, i) => w !== eventOutputs[i])) {
    return report(none, "calldata outputs differ from the TaskVerified event");
  }

  const registeredKey = [...(await deps.models.verificationKeyOf(modelId))];
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
  const proofValid =
    registeredKey.length > 0 &&
    (await groth16Verify(snarkjsKeyFromWords(registeredKey), signals, proof as never));
  const proofDetail = proofValid ? "proof valid against the registered key" : "PROOF INVALID";

  const model = await deps.models.getModel(modelId);
  let inspected: Awaited<ReturnType<BundleCache["inspect"]>>;
  try {
    inspected = await deps.bundles.inspect(model);
  } catch (e) {
    if (!(e instanceof BundleRejectedError)) throw e;
    return report({ ...none, proofValid }, `${proofDetail}; BUNDLE REFUSED: ${e.message}`);
  }
  const { bundle, problems } = inspected;
  const setup = await deps.setups.of(bytes32ToBundleId(model.bundleHash), bundle.dir);
  const bundleMatches = problems.length === 0;
  const bundleDetail = bundleMatches
    ? "bundle matches the registry"
    : `BUNDLE DIFFERS FROM THE REGISTRY: ${problems.join("; ")}`;
  const submitted: SubmittedTask = { taskId, modelId, task: submission.task, input: submission.input };
  let input: bigint[];
  try {
    input = await decodeTaskInput(bundle.manifest, submitted, deps.data);
  } catch (e) {
    if (!(e instanceof InputRejectedError)) throw e;
    return report(
      { proofValid, bundleMatches, outputMatches: false },
      `${proofDetail}; ${bundleDetail}; INPUT NOT RECOVERABLE: ${e.message}`,
      { setup },
    );
  }
  const recomputed = executeProgram(bundle.program, input)[bundle.program.output.tensor];
  let words: bigint[] = [];
  try {
    words = packValues(recomputed, bundle.manifest.publicSignals.packBits);
  } catch {
    // A recomputed output that does not fit the packing cannot equal any verified output.
  }
  const outputMatches =
    words.length === submission.outputs.length && words.every((w, i) => w === submission.outputs[i]);
  const detail = [
    proofDetail,
    bundleDetail,
    outputMatches ? "output recomputed equal" : "OUTPUT DIFFERS",
  ].join("; ");
  return report({ proofValid, bundleMatches, outputMatches }, detail, {
    setup,
    output: dequantizeOutput(bundle.program, recomputed),
  });
}
