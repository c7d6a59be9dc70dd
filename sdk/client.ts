import os from "node:os";
import path from "node:path";
import { ethers, type Provider, type Signer } from "ethers";
import {
  ModelRegistry__factory,
  NodeStaking__factory,
  OPGToken__factory,
  TaskRegistry__factory,
  type ModelRegistry,
  type NodeStaking,
  type OPGToken,
  type TaskRegistry,
} from "../typechain-types";
import {
  dequantizeOutput,
  namedOutputs,
  type NamedOutput,
  flattenInput,
  inputWords,
  quantizeInput,
  releaseProver,
  unpackWords,
  type BundleManifest,
  type QProgram,
} from "../zkml";
import { quantizePlainInput, type PlainBundleManifest } from "../zkml/plain-bundle";
import { DataClient } from "../workers/data/client";
import {
  auditRejectedLog,
  auditVerifiedLog,
  findLogs,
  findSubmitted,
  findVerifiedLog,
  MODE_BITS,
  MODE_TOPICS,
  modeName,
  modeNames,
  readSettlement,
  type AuditDeps,
  type AuditReport,
  type VerificationModeName,
} from "../workers/runtime/audit";
import { SetupChecks } from "../workers/runtime/audit-setup";
import { BundleCache, BundleRejectedError, isPlainBundle } from "../workers/runtime/bundles";
import {
  checkDeployment,
  DeploymentMismatchError,
  readDeployment,
  type Deployment,
} from "../workers/runtime/chain";
import { parseSubmitted, TOPICS, type SubmittedTask } from "../workers/runtime/tasks";
import { OpgClientError, toId, type Id } from "./errors";
import {
  describeTask,
  type KnownTask,
  type TaskWaitStatus,
  EligibleNodes,
  subscribeTaskEvents,
  TASK_STATUSES,
  waitForStep,
  type TaskStatusName,
  type TaskStep,
  type WaitForResultOptions,
} from "./task-watch";
import { freshCall, TxQueue } from "./transactions";

export type { AuditReport, OptimisticAudit, TeeAudit, VerificationModeName } from "../workers/runtime/audit";
export type { AuditSetup } from "../workers/runtime/audit-setup";
export type { Deployment } from "../workers/runtime/chain";
export { OpgClientError, TaskRejectedError, toId, type Id } from "./errors";
export {
  TASK_STATUSES,
  type TaskStatusName,
  type TaskWaitStatus,
  type WaitForResultOptions,
} from "./task-watch";
export { freshCall, sendTx, TxQueue } from "./transactions";

/**
 * Make sure `signer` holds `amount` OPG and that `spender` may pull it, approving exactly `amount` when the
 * allowance is short (never an unlimited approval). `need` ends the error when the balance is short. The
 * balance and allowance are read fresh (not from a provider's response cache); `queue` sends the approval
 * in order with the signer's other transactions.
 */
export async function approveFromWallet(
  token: OPGToken,
  signer: Signer,
  spender: string,
  amount: bigint,
  need: string,
  queue: TxQueue = new TxQueue(signer),
) {
  const account = await signer.getAddress();
  const provider = signer.provider ?? token.runner?.provider;
  const read = async (fn: string, args: unknown[]) =>
    (provider
      ? (await freshCall(provider, token, fn, args))[0]
      : await token.getFunction(fn)(...args)) as bigint;
  const balance = await read("balanceOf", [account]);
  if (balance < amount)
    throw new OpgClientError(`${account} holds ${ethers.formatEther(balance)} OPG, ${need}`);
  if ((await read("allowance", [account, spender])) < amount) {
    await queue.send("approve", token.interface, (overrides) =>
      token.connect(signer).approve(spender, amount, overrides),
    );
  }
}

/**
 * An ethers v6 Signer or Provider, from either of ethers' builds. This package is CommonJS, and TypeScript
 * keeps the classes of ethers' ES-module build (what a dapp written as an ES module imports) apart from its
 * CommonJS ones, so a `Wallet` of the one is not a `Signer` of the other; the shapes below take both. At
 * run time the client only calls their methods.
 */
export type Runner =
  | Signer
  | Provider
  | {
      getAddress(): Promise<string>;
      signTransaction(...args: never[]): Promise<string>;
      sendTransaction(...args: never[]): Promise<unknown>;
      readonly provider: object | null;
    }
  | {
      getNetwork(): Promise<{ chainId: bigint }>;
      getBlockNumber(): Promise<number>;
      call(...args: never[]): Promise<string>;
      getLogs(...args: never[]): Promise<unknown[]>;
    };

export interface OpgClientOptions {
  /**
   * A signer submits tasks (its provider serves reads); a bare provider is enough for results and audits.
   * A plain `new JsonRpcProvider(url)` does: the client reads what it decides on past ethers' response
   * cache and gives its own transactions their nonces.
   */
  runner: Runner;
  /**
   * Contract addresses, or the deployment file scripts/deploy.ts wrote. Checked at first use: its chain id
   * must be the provider's, and each address must hold code.
   */
  deployment: Deployment | string;
  /** Data node that serves model bundles (and stores large inputs). */
  dataUrl: string;
  /** Where verified bundles are unpacked; defaults to a folder under the OS temp directory. */
  cacheDir?: string;
  /**
   * A phase-1 (powers of tau) file to check the models' trusted setup against in audits: only with it is
   * a bundle's zkey verified and a setup found secure (`setupSecure`). A large file not seen before on this
   * machine takes minutes to verify, once.
   */
  ptau?: string;
  /** Progress of the setup checks (the ptau verification). */
  log?: (message: string) => void;
  /**
   * How long the first call waits for the RPC to answer the deployment check (default 30,000 ms): a
   * JsonRpcProvider whose URL nobody answers retries forever, so without a bound the call would hang.
   */
  connectTimeoutMs?: number;
}

/** The verification modes, strongest first: what a task gets when it names none (as `submitTask` picks). */
export const VERIFICATION_MODES: readonly VerificationModeName[] = ["zk", "tee", "optimistic"];

/**
 * The mode a task of a model allowing `allowed` runs in: `requested` when the model allows it, else the
 * strongest it allows (ZK, else TEE, else optimistic), as the registry's `submitTask` picks. Refuses with an
 * OpgClientError naming the allowed modes when `requested` is not one of them.
 */
export function chooseMode(
  modelId: bigint,
  allowed: readonly VerificationModeName[],
  requested?: string,
): VerificationModeName {
  if (requested !== undefined && !VERIFICATION_MODES.includes(requested as VerificationModeName)) {
    throw new OpgClientError(`unknown verification mode "${requested}": use zk, optimistic or tee`);
  }
  if (allowed.length === 0) throw new OpgClientError(`model ${modelId} allows no verification mode`);
  if (requested === undefined) return VERIFICATION_MODES.find((m) => allowed.includes(m))!;
  if (!allowed.includes(requested as VerificationModeName)) {
    throw new OpgClientError(
      `model ${modelId} does not allow ${requested} mode: it allows ${allowed.join(", ")}`,
    );
  }
  return requested as VerificationModeName;
}

/** A registered model with its bundle, fetched from the data node and checked against the registry. */
export interface ModelInfo {
  modelId: bigint;
  fee: bigint;
  active: boolean;
  /** The verification modes the model allows, strongest first; `submit` uses the first unless told. */
  verificationModes: VerificationModeName[];
  /** Optimistic mode: attestations a task needs before it can become final. */
  attestationQuorum: number;
  /**
   * `zk`: a compiled bundle (circuit, fixed-point program); `plain`: a model without a circuit
   * (zkml/plain-bundle.ts), served in TEE and optimistic mode and executed with onnxruntime.
   */
  kind: "zk" | "plain";
  manifest: BundleManifest | PlainBundleManifest;
  /** The fixed-point program (zk bundles only). */
  program?: QProgram;
}

export interface SubmitOptions {
  /** OPG fee in wei; defaults to the model's fee. */
  fee?: bigint;
  /** Seconds from the latest block to the deadline (default 600). */
  deadlineSeconds?: number;
  /** Contract to call back with the verified output, and the gas it may use. */
  callback?: string;
  callbackGasLimit?: number;
  /**
   * How the result is verified: `zk` (a Groth16 proof checked on chain), `tee` (signed by an enclave key
   * registered for an approved measurement) or `optimistic` (posted without proof, final after a challenge
   * window with a quorum of staked verifiers' attestations; wrong outputs are rejected by a challenger's
   * proof of other outputs, or by a stake vote where the model has no circuit). Default: the
   * strongest the model allows. A mode the model does not allow is refused before anything is sent.
   */
  mode?: VerificationModeName;
}

export interface SubmittedRequest {
  taskId: bigint;
  txHash: string;
  /** Gas the submission used (about 78k from prepaid credits, 98k pulling the fee from the wallet). */
  gasUsed: bigint;
  /** The input as the circuit sees it (fixed point). */
  quantizedInput: bigint[];
  /** The task as committed on chain, and its input words: what submitResult (and an optimistic claimTask) take. */
  task: SubmittedTask["task"];
  input: bigint[];
  /** The verification mode the task was committed with. */
  mode: VerificationModeName;
}

export interface TaskResult {
  taskId: bigint;
  node: string;
  settledBlock: number;
  /** The mode that verified it. */
  mode: VerificationModeName;
  /**
   * How it became final: a proof (zk), an enclave signature (tee), attestations after the challenge window
   * or a dispute the vote decided for the node (optimistic; a challenge by proof only ever rejects).
   */
  settledBy: AuditReport["settledBy"];
  /** TEE: the enclave key that signed the outputs (TaskEnclaveSigned); check its registration with an audit. */
  enclaveKey?: string;
  /** Optimistic: the staked verification nodes that attested the outputs (and were paid for it). */
  attesters?: string[];
  /** Output words exactly as verified on chain. */
  words: bigint[];
  /** The fixed-point output values the proof attests. */
  quantized: bigint[];
  /** Dequantized output (softmax applied off-circuit where the model ends in one). */
  output: number[];
  /** Index of the largest output: the class of a single-output classifier. */
  argmax: number;
  /**
   * Every output by its ONNX name: a classifier export's label (as the model's classes, ints or strings)
   * and probabilities, a ZipMap output as one {class: probability} map per row; a single-output model
   * gives { [its output name]: output }.
   */
  outputs: Record<string, NamedOutput>;
}

/**
 * The dapp developer's and auditor's handle on a deployment: submit inference tasks with float inputs
 * (quantized and packed exactly as the model's circuit expects), wait for and decode verified results,
 * and audit any verified task from public data. Everything it trusts is checked against the registries.
 */
export class OpgClient {
  readonly provider: Provider;
  readonly signer?: Signer;
  readonly deployment: Deployment;
  readonly tasks: TaskRegistry;
  readonly models: ModelRegistry;
  readonly token: OPGToken;
  readonly staking: NodeStaking;
  private readonly data: DataClient;
  private readonly bundles: BundleCache;
  private readonly setups: SetupChecks;
  private readonly queue?: TxQueue;
  private readonly nodes: EligibleNodes;
  private readonly deploymentFile?: string;
  private deploymentChecked?: Promise<void>;
  private readonly connectTimeoutMs: number;
  /** Deadline, mode and quorum of the tasks submitted here (what waitForResult reports without a log search). */
  private readonly known = new Map<bigint, KnownTask>();
  private readonly waits = new Set<{ result: Promise<unknown>; cancel: (e: Error) => void }>();
  private closed = false;
  /** The end of the last payment made here: one approve-and-pay sequence at a time (see `serially`). */
  private paying: Promise<unknown> = Promise.resolve();

  constructor(opts: OpgClientOptions) {
    const deployment =
      typeof opts.deployment === "string" ? readDeployment(opts.deployment) : opts.deployment;
    const signer = "getAddress" in opts.runner ? (opts.runner as unknown as Signer) : undefined;
    const provider = signer ? signer.provider : (opts.runner as unknown as Provider);
    if (!provider) throw new OpgClientError("the signer has no provider: connect it to one");
    this.provider = provider;
    this.signer = signer;
    this.queue = signer && new TxQueue(signer);
    this.deployment = deployment;
    this.deploymentFile = typeof opts.deployment === "string" ? opts.deployment : undefined;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
    const runner = signer ?? provider;
    this.tasks = TaskRegistry__factory.connect(deployment.tasks, runner);
    this.models = ModelRegistry__factory.connect(deployment.models, runner);
    this.token = OPGToken__factory.connect(deployment.token, runner);
    this.staking = NodeStaking__factory.connect(deployment.staking, runner);
    this.nodes = new EligibleNodes(provider, this.staking);
    // Uploads are signed only when the data node asks (signed mode), so an open node never prompts a wallet.
    this.data = new DataClient(opts.dataUrl, { uploader: signer, signUploads: "on-request" });
    // The client only reads and audits: the program/circuit consistency check (a proof per circuit model) is
    // for nodes about to post or attest outputs.
    this.bundles = new BundleCache(opts.cacheDir ?? path.join(os.tmpdir(), "opg-sdk-bundles"), this.data, {
      consistency: false,
    });
    this.setups = new SetupChecks({ ptau: opts.ptau, log: opts.log });
  }

  /**
   * Free what the client holds: waits in progress end with an OpgClientError (those still checking the
   * deployment or searching for their task's event too, and close() returns only once each has settled, so
   * none rejects or reports later), their event subscriptions and timers stop, and snarkjs's prover
   * threads (started by audits) are terminated, so a script ends by itself. The provider is the caller's
   * and stays usable (`provider.destroy()` ends its own resources). Calls made after close fail; closing
   * twice is harmless. snarkjs's threads are shared by the process: close a client while another one in the
   * same process audits, and that audit starts them again.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const waits = [...this.waits];
    this.waits.clear();
    for (const wait of waits) wait.cancel(new OpgClientError("the OpgClient was closed while waiting"));
    // Each wait settles once its subscription is off the provider.
    await Promise.allSettled(waits.map((w) => w.result));
    await releaseProver();
  }

  /**
   * Check the deployment once, before the first call reaches the chain (a failed check is tried again by
   * the next call).
   */
  private async ready(): Promise<void> {
    if (this.closed) throw new OpgClientError("this OpgClient is closed");
    if (!this.deploymentChecked) {
      const url = (this.provider as { _getConnection?: () => { url: string } })._getConnection?.().url;
      const rpc = url ? `the RPC endpoint ${url}` : "the RPC endpoint";
      const check = checkDeployment(this.provider, this.deployment, {
        file: this.deploymentFile,
        rpcUrl: url,
      });
      const what = this.deploymentFile ? `deployment file ${this.deploymentFile}` : "the deployment";
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(
            new OpgClientError(
              `${rpc} did not answer within ${this.connectTimeoutMs} ms while checking ${what}: ` +
                "is the node running and the URL right?",
            ),
          );
        }, this.connectTimeoutMs);
        timer.unref();
      });
      this.deploymentChecked = Promise.race([check, bound])
        .catch((e) => {
          // A file for another chain, or addresses without code: say so, instead of a failed decode later.
          if (e instanceof DeploymentMismatchError) throw new OpgClientError(e.message);
          if (e instanceof OpgClientError) throw e;
          throw new OpgClientError(`cannot reach ${rpc} to check ${what}: ${(e as Error).message}`);
        })
        .finally(() => clearTimeout(timer));
      this.deploymentChecked.catch(() => (this.deploymentChecked = undefined));
    }
    await this.deploymentChecked;
  }

  /** The model's registered terms and its bundle (hash-checked against the registry). */
  async model(id: Id): Promise<ModelInfo> {
    const modelId = toId(id, "model");
    const model = await this.registered(modelId);
    let bundle;
    try {
      bundle = await this.bundles.getAny(model);
    } catch (e) {
      // A bundle that disagrees with its registration (hashes, verification key, layout) is never used.
      if (e instanceof BundleRejectedError) throw new OpgClientError(`model ${modelId}: ${e.message}`);
      throw e;
    }
    return {
      modelId,
      fee: model.terms.fee,
      active: model.terms.active,
      verificationModes: modeNames(model.terms.verificationModes),
      attestationQuorum: Number(await this.models.attestationQuorum(modelId)),
      kind: isPlainBundle(bundle) ? "plain" : "zk",
      manifest: bundle.manifest,
      program: isPlainBundle(bundle) ? undefined : bundle.program,
    };
  }

  /** The registered model `modelId` (no bundle); an OpgClientError when there is none. */
  private async registered(modelId: bigint) {
    await this.ready();
    const count = await this.models.modelCount();
    if (modelId < 1n || modelId > count) throw new OpgClientError(`model ${modelId} is not registered`);
    return this.models.getModel(modelId);
  }

  /** Quantize a float input (nested in the model's shape, or flat) the way the circuit takes it. */
  quantize(info: ModelInfo, input: unknown): bigint[] {
    try {
      const values = flattenInput(input, info.manifest.input.shape);
      if (!info.program) return quantizePlainInput(info.manifest as PlainBundleManifest, values);
      return quantizeInput(info.program, values);
    } catch (e) {
      throw new OpgClientError(`model ${info.modelId}: ${(e as Error).message}`);
    }
  }

  /**
   * Pay for an inference of `modelId` on `input` (floats). Inline models carry the packed input in the
   * task; commitment models get the input stored on the data node and its Poseidon commitment on chain.
   * The fee comes from prepaid credits when they cover it, else from the wallet (approved here if needed).
   * `opts.mode` picks the verification mode (default: the strongest the model allows); one the model does not
   * allow is refused, naming those it does, before the bundle is fetched or anything is sent.
   */
  async submit(id: Id, input: unknown, opts: SubmitOptions = {}): Promise<SubmittedRequest> {
    const modelId = toId(id, "model");
    const signer = this.requireSigner();
    const registered = await this.registered(modelId);
    const mode = chooseMode(modelId, modeNames(registered.terms.verificationModes), opts.mode);
    const info = await this.model(modelId);
    if (!info.active) throw new OpgClientError(`model ${modelId} is deactivated`);
    const quantizedInput = this.quantize(info, input);
    const fee = opts.fee ?? info.fee;
    const seconds = opts.deadlineSeconds ?? 600;
    const params = await this.tasks.parameters();
    if (fee < info.fee) {
      throw new OpgClientError(
        `fee ${ethers.formatEther(fee)} OPG is below model ${modelId}'s ${ethers.formatEther(info.fee)}`,
      );
    }
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > Number(params.maxTaskDuration)) {
      throw new OpgClientError(
        `a deadline ${seconds} s away: the registry takes 1 to ${params.maxTaskDuration} s`,
      );
    }
    if ((opts.callbackGasLimit ?? 0) > Number(params.maxCallbackGasLimit)) {
      throw new OpgClientError(
        `callback gas ${opts.callbackGasLimit} is above the registry's cap of ${params.maxCallbackGasLimit}`,
      );
    }
    let inputDataHash = ethers.ZeroHash;
    if (info.manifest.publicSignals.inputMode === "commitment") {
      const blob = Buffer.from(JSON.stringify({ quantized: quantizedInput.map(String) }));
      inputDataHash = "0x" + (await this.data.put(blob));
    }
    const receipt = await this.serially(async () => {
      await this.ensureFunds(signer, fee);
      const now = (await this.provider.getBlock("latest"))!.timestamp;
      const request = {
        modelId,
        input: inputWords(info.manifest, quantizedInput),
        inputDataHash,
        fee,
        deadline: now + seconds,
        callback: opts.callback ?? ethers.ZeroAddress,
        callbackGasLimit: opts.callbackGasLimit ?? 0,
      };
      const registry = this.tasks.connect(signer);
      // Without a mode asked for, submitTask picks the same default (and costs no mode argument).
      if (opts.mode === undefined) {
        return this.queue!.send("submitTask", this.tasks.interface, (overrides) =>
          registry.submitTask(request, overrides),
        );
      }
      return this.queue!.send("submitTaskInMode", this.tasks.interface, (overrides) =>
        registry.submitTaskInMode(request, MODE_BITS[mode], overrides),
      );
    });
    const log = receipt.logs.find((l) => l.topics[0] === TOPICS.submitted);
    if (!log) throw new OpgClientError(`transaction ${receipt.hash} emitted no TaskSubmitted`);
    const submitted = parseSubmitted(log);
    const known = knownFrom(submitted);
    this.remember(submitted.taskId, known);
    return {
      taskId: submitted.taskId,
      txHash: receipt.hash,
      gasUsed: receipt.gasUsed,
      quantizedInput,
      task: submitted.task,
      input: submitted.input,
      mode: known.mode ?? mode,
    };
  }

  /**
   * Prepay `amount` OPG of credits (approving exactly the amount when needed). Later submissions take their
   * fee from the credits: no token transfer per task, about 20,000 gas less each.
   */
  async deposit(amount: bigint): Promise<string> {
    const signer = this.requireSigner("a deposit");
    if (amount <= 0n) throw new OpgClientError("a deposit must be more than 0 OPG");
    await this.ready();
    const registry = await this.tasks.getAddress();
    const receipt = await this.serially(async () => {
      await approveFromWallet(
        this.token,
        signer,
        registry,
        amount,
        `asked to deposit ${ethers.formatEther(amount)}`,
        this.queue,
      );
      return this.queue!.send("deposit", this.tasks.interface, (overrides) =>
        this.tasks.connect(signer).deposit(amount, overrides),
      );
    });
    return receipt.hash;
  }

  /** Prepaid credits of `account` (default: the signer's), in OPG wei. */
  async credits(account?: string): Promise<bigint> {
    const owner = account ?? (await this.requireSigner().getAddress());
    await this.ready();
    return (await freshCall(this.provider, this.tasks, "creditsOf", [owner]))[0] as bigint;
  }

  async status(id: Id): Promise<TaskStatusName> {
    const taskId = toId(id, "task");
    await this.ready();
    return TASK_STATUSES[Number((await freshCall(this.provider, this.tasks, "taskStatus", [taskId]))[0])];
  }

  /**
   * The verified result of `taskId`, decoded; undefined while it is not verified. Says which mode verified
   * it and how (`settledBy`), with the enclave key (TEE) or the attesters (optimistic).
   */
  async result(id: Id): Promise<TaskResult | undefined> {
    const taskId = toId(id, "task");
    await this.ready();
    const found = await findVerifiedLog(this.auditDeps(), taskId);
    if (!found) return undefined;
    const { log, result } = found;
    const settlement = await readSettlement(this.provider, log.transactionHash, taskId);
    // A settlement sent through another contract carries no readable calldata: the event has the task.
    const task = settlement?.task ?? (await findSubmitted(this.auditDeps(), taskId, log.blockNumber))?.task;
    if (!task) throw new OpgClientError(`task ${taskId}: settlement not found`);
    const info = await this.model(BigInt(task.modelId));
    const words = [...result.outputs];
    const layout = info.manifest.publicSignals;
    const quantized = unpackWords(words, layout.outputCount, layout.packBits);
    // A plain bundle's outputs are the model's first output at the bundle's scale (no off-circuit softmax).
    const output = info.program
      ? dequantizeOutput(info.program, quantized)
      : quantized.map((q) => Number(q) / 2 ** (info.manifest as PlainBundleManifest).output.scaleBits);
    const mode = modeName(task.mode) ?? "zk";
    const inBlock = async (topic: string) => {
      const logs = await this.provider.getLogs({
        address: await this.tasks.getAddress(),
        topics: [topic, ethers.toBeHex(taskId, 32)],
        fromBlock: log.blockNumber,
        toBlock: log.blockNumber,
      });
      return logs[0] ? this.tasks.interface.parseLog(logs[0]) : null;
    };
    const extra: Partial<TaskResult> = {};
    let settledBy: TaskResult["settledBy"] = "proof";
    if (mode === "tee") {
      settledBy = "enclave-signature";
      const signed = await inBlock(MODE_TOPICS.enclaveSigned);
      if (signed) extra.enclaveKey = signed.args.key as string;
    } else if (mode === "optimistic") {
      // A dispute by proof never verifies a task (the proof rejects the posted outputs): attestations or a vote.
      settledBy = settlement?.via === "resolveVote" ? "dispute-vote" : "attestations";
      const paid = await inBlock(MODE_TOPICS.attestersPaid);
      extra.attesters = paid
        ? [...(paid.args.attesters as string[])]
        : settlement && "attesters" in settlement
          ? settlement.attesters
          : [];
    }
    return {
      taskId,
      node: result.node,
      settledBlock: Number(result.settledBlock),
      mode,
      settledBy,
      ...extra,
      words,
      quantized,
      output,
      argmax: output.indexOf(Math.max(...output)),
      outputs: info.program
        ? namedOutputs(info.program, output)
        : { [(info.manifest as PlainBundleManifest).output.name]: output },
    };
  }

  /**
   * One look at `taskId`: its status, mode and what it waits for, as `waitForResult`'s `onStatus` reports it
   * (an eligible node, an optimistic claim, challenge window and attestations, dispute, refund); for a
   * verified task, the mode and how it became final. `fromBlock`: a block at or before the submission, to find the task's event (default: the
   * last 10,000 blocks).
   */
  async describe(id: Id, opts: { fromBlock?: number } = {}): Promise<TaskWaitStatus> {
    const taskId = toId(id, "task");
    await this.ready();
    const known = this.known.get(taskId) ?? (await this.findKnown(taskId, opts.fromBlock));
    const seen = await describeTask({
      provider: this.provider,
      tasks: this.tasks,
      nodes: this.nodes,
      taskId,
      ...known,
      known: this.known.has(taskId),
      fromBlock: opts.fromBlock,
    });
    if ("status" in seen && seen.status) return seen.status;
    if ("fail" in seen) return { status: "None", message: seen.fail };
    const result = await this.result(taskId);
    if (!result)
      return { status: "Verified", message: "verified; the settled result is not readable yet", ...known };
    const how: Record<TaskResult["settledBy"], string> = {
      proof: "by a Groth16 proof checked on chain",
      "enclave-signature": `by enclave key ${result.enclaveKey} (signature checked on chain)`,
      attestations: `by ${result.attesters?.length ?? 0} attestation(s) after an unchallenged window`,
      "dispute-proof": "after a dispute, by proof",
      "dispute-vote": "after a dispute, by the verification nodes' vote",
      unknown: "",
    };
    return {
      status: "Verified",
      message: `verified in ${result.mode} mode ${how[result.settledBy]}: node ${result.node}, block ${result.settledBlock}`,
      ...known,
      mode: result.mode,
    };
  }

  /**
   * Wait until `taskId` is verified and return its result. Listens for the registry's events on the task
   * (verified, expired; in optimistic mode claimed, claim abandoned, outputs posted, disputed, rejected,
   * reopened) and polls every `pollMs` as a fallback. `onStatus` hears what it waits for whenever that
   * changes: no eligible node staked, open and waiting for the first node in its service order (ZK and TEE
   * tasks are not claimed: any eligible node settles them, the first valid result wins), in optimistic mode
   * open and unclaimed (or reopened: served again after posted outputs met no quorum), claimed by a node
   * until a time, outputs posted with the challenge window's end and the attestations against the quorum,
   * a vote open until when with the stake so far. Fails with an OpgClientError when the task
   * expired or its deadline passed unsettled (it is then refundable), with a TaskRejectedError (`outcome`,
   * `refund`) when its optimistic outputs were rejected (a challenger proved other outputs, or a vote),
   * when it does not exist, when the client is closed, or after `timeoutMs` (the message names the last
   * status).
   */
  waitForResult(id: Id, opts: WaitForResultOptions = {}): Promise<TaskResult> {
    let taskId: bigint;
    try {
      taskId = toId(id, "task");
    } catch (e) {
      return Promise.reject(e);
    }
    // The wait is registered before its first read: close() during the deployment check or the search for
    // the task's event ends it too, instead of leaving it to run to its timeout unseen; and close() returns
    // only once the very promise returned here has settled.
    let cancelled: Error | undefined;
    let stepping: { cancel: (e: Error) => void } | undefined;
    let stopFirstReads!: (e: Error) => void;
    const firstReadsStopped = new Promise<never>((_, reject) => (stopFirstReads = reject));
    firstReadsStopped.catch(() => undefined);
    const cancel = (e: Error) => {
      cancelled ??= e;
      stopFirstReads(e);
      stepping?.cancel(e);
    };
    const guard = <T>(p: Promise<T>) => Promise.race([p, firstReadsStopped]);
    const run = async (): Promise<TaskResult> => {
      await guard(this.ready());
      const isKnown = this.known.has(taskId);
      const known = isKnown ? this.known.get(taskId)! : await guard(this.findKnown(taskId, opts.fromBlock));
      const registry = await guard(this.tasks.getAddress());
      if (cancelled) throw cancelled;
      return this.waitSteps(taskId, registry, known, isKnown, opts, (w) => (stepping = w));
    };
    const wait = { result: Promise.resolve() as Promise<unknown>, cancel };
    this.waits.add(wait);
    const result = run().finally(() => this.waits.delete(wait));
    wait.result = result;
    return result;
  }

  /** The polling and event-driven part of `waitForResult`, once the task's deadline and mode are known. */
  private async waitSteps(
    taskId: bigint,
    registry: string,
    known: KnownTask,
    isKnown: boolean,
    opts: WaitForResultOptions,
    started: (wait: { cancel: (e: Error) => void }) => void,
  ): Promise<TaskResult> {
    const step = async (): Promise<TaskStep<TaskResult>> => {
      const seen = await describeTask({
        provider: this.provider,
        tasks: this.tasks,
        nodes: this.nodes,
        taskId,
        ...known,
        known: isKnown,
        fromBlock: opts.fromBlock,
      });
      if (!("done" in seen)) return seen;
      const result = await this.result(taskId);
      if (result) return { done: result };
      // Verified, but this RPC node does not serve the settlement's log yet: the next look reads it.
      return { status: { status: "Verified", message: "verified; reading the settled result", ...known } };
    };
    const wait = waitForStep({
      what: `task ${taskId}`,
      step,
      subscribe: (onEvent) => subscribeTaskEvents(this.provider, registry, taskId, onEvent),
      timeoutMs: opts.timeoutMs ?? 300_000,
      pollMs: opts.pollMs ?? 1_000,
      onStatus: opts.onStatus,
    });
    started(wait);
    return wait.result;
  }

  /**
   * Run `fn` after every payment started before it has finished: an allowance read and the approval and
   * payment that depend on it are one step, so calls made at once (Promise.all of submits) neither approve
   * over each other nor spend each other's allowance.
   */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.paying.then(fn);
    this.paying = run.catch(() => undefined);
    return run;
  }

  /** Keep the deadline, mode and quorum of a task submitted here (the latest 1,000). */
  private remember(taskId: bigint, known: KnownTask) {
    this.known.set(taskId, known);
    if (this.known.size > 1_000) this.known.delete(this.known.keys().next().value!);
  }

  /** Deadline, mode and quorum of a task submitted elsewhere, from its TaskSubmitted event; {} when not found. */
  private async findKnown(taskId: bigint, fromBlock?: number): Promise<KnownTask> {
    try {
      const from = fromBlock ?? Math.max(0, (await this.provider.getBlockNumber()) - 10_000);
      return knownFrom(await this.submittedTask(taskId, { fromBlock: from }));
    } catch {
      return {};
    }
  }

  /**
   * The task as committed at submission, from its TaskSubmitted event (searched from `fromBlock` in windows
   * of `chunk` blocks: pass the submission block, or a block before it, on chains with long histories).
   */
  async submittedTask(id: Id, opts: { fromBlock?: number; chunk?: number } = {}): Promise<SubmittedTask> {
    const taskId = toId(id, "task");
    await this.ready();
    const latest = await this.provider.getBlockNumber();
    const topics = [TOPICS.submitted, ethers.toBeHex(taskId, 32)];
    for await (const logs of this.registryLogs(topics, opts.fromBlock ?? 0, latest, opts.chunk ?? 5_000)) {
      if (logs.length > 0) return parseSubmitted(logs[0]);
    }
    throw new OpgClientError(`task ${taskId}: no TaskSubmitted event from block ${opts.fromBlock ?? 0} on`);
  }

  /**
   * Get the fee of a task nobody settled back once its deadline has passed (anyone may call; the refund goes
   * to the requester; an optimistic task's claimer that let its claim lapse loses its collateral; ZK and TEE
   * tasks are never claimed, so nobody is slashed for them). An optimistic task whose challenge
   * window closed without its quorum of attestations is refunded too once its deadline has passed
   * (`expireUnattested`: the node's collateral is slashed); before it, see `reopen`. Returns the transaction
   * hash.
   */
  async refund(id: Id, opts: { fromBlock?: number } = {}): Promise<string> {
    const taskId = toId(id, "task");
    const signer = this.requireSigner("a refund");
    const status = await this.status(taskId);
    if (status === "Pending") return this.expireUnattested(taskId, signer, "refund", opts.fromBlock);
    if (status !== "Open" && status !== "Claimed") {
      throw new OpgClientError(
        `task ${taskId} is ${status}: only an open or claimed task, or a pending one whose window closed ` +
          "without its quorum, can be refunded",
      );
    }
    const { task } = await this.submittedTask(taskId, opts);
    const now = (await this.provider.getBlock("latest"))!.timestamp;
    if (BigInt(now) <= BigInt(task.deadline)) {
      throw new OpgClientError(
        `task ${taskId}: its deadline ${new Date(Number(task.deadline) * 1000).toISOString()} has not passed yet`,
      );
    }
    const receipt = await this.queue!.send("expire", this.tasks.interface, (overrides) =>
      this.tasks.connect(signer).expire(taskId, task, overrides),
    );
    return receipt.hash;
  }

  /**
   * Put an optimistic task back on the market before its deadline when the outputs its node posted met no
   * quorum of attestations by the window's end (`expireUnattested`, anyone may call): the node's collateral
   * is slashed and the task is open to claims again (TaskReopened), so another node serves it. After the
   * deadline the same call refunds instead (`refund`). Returns the transaction hash.
   */
  async reopen(id: Id, opts: { fromBlock?: number } = {}): Promise<string> {
    const taskId = toId(id, "task");
    const signer = this.requireSigner("reopening a task");
    const status = await this.status(taskId);
    if (status !== "Pending") {
      throw new OpgClientError(
        `task ${taskId} is ${status}: only an optimistic task whose posted outputs wait in their window ` +
          "(Pending) can be reopened",
      );
    }
    return this.expireUnattested(taskId, signer, "reopen", opts.fromBlock);
  }

  /**
   * `expireUnattested` for an optimistic task whose window closed short of its quorum: it reopens the task
   * before its deadline and refunds it after; `want` says which the caller asked for, and the other is refused.
   */
  private async expireUnattested(
    taskId: bigint,
    signer: Signer,
    want: "refund" | "reopen",
    fromBlock?: number,
  ): Promise<string> {
    const submitted = await this.submittedTask(taskId, { fromBlock });
    const { task } = submitted;
    const [, windowEnd] = await this.tasks.pendingOf(taskId);
    const latest = await this.provider.getBlock("latest");
    const when = new Date(Number(windowEnd) * 1000).toISOString();
    if (BigInt(latest!.timestamp) <= windowEnd) {
      throw new OpgClientError(`task ${taskId}: its challenge window is open until ${when}`);
    }
    const registry = await this.tasks.getAddress();
    const id = ethers.toBeHex(taskId, 32);
    const from = fromBlock ?? 0;
    const posted = (
      await findLogs(this.provider, registry, [MODE_TOPICS.resultPosted, id], from, latest!.number)
    ).at(-1);
    if (!posted) throw new OpgClientError(`task ${taskId}: its TaskResultPosted event was not found`);
    const outputs = [...(this.tasks.interface.parseLog(posted)!.args.outputs as bigint[])];
    // The attester set was fixed when the outputs were posted: the TaskAttested logs of that transaction.
    const attested = await this.provider.getLogs({
      address: registry,
      topics: [MODE_TOPICS.attested, id],
      fromBlock: posted.blockNumber,
      toBlock: posted.blockNumber,
    });
    const attesters = attested
      .filter((l) => l.transactionHash === posted.transactionHash)
      .map((l) => this.tasks.interface.parseLog(l)!.args.attester as string);
    if (attesters.length >= Number(task.attestationQuorum)) {
      throw new OpgClientError(
        `task ${taskId}: its window closed at ${when} with ${attesters.length} of ${task.attestationQuorum} ` +
          "attestations: it becomes verified (finalizeResult), not refunded or reopened",
      );
    }
    // The registry reopens while block.timestamp < deadline: judged on the next block, about a second on.
    const beforeDeadline = BigInt(latest!.timestamp) + 1n < BigInt(task.deadline);
    const deadline = new Date(Number(task.deadline) * 1000).toISOString();
    if (want === "refund" && beforeDeadline) {
      throw new OpgClientError(
        `task ${taskId}: its window closed short of its quorum before its deadline ${deadline}: the task is ` +
          `reopened for another node now (reopen(${taskId}), opg task reopen ${taskId}), and refundable only ` +
          "after the deadline",
      );
    }
    if (want === "reopen" && !beforeDeadline) {
      throw new OpgClientError(
        `task ${taskId}: its deadline ${deadline} has passed: it can no longer be reopened, only refunded ` +
          `(refund(${taskId}), opg task refund ${taskId})`,
      );
    }
    const outputsHash = ethers.solidityPackedKeccak256(["uint256[]"], [outputs]);
    const receipt = await this.queue!.send("expireUnattested", this.tasks.interface, (overrides) =>
      this.tasks.connect(signer).expireUnattested(taskId, task, outputsHash, attesters, overrides),
    );
    return receipt.hash;
  }

  /**
   * Re-check a verified task from public data, in its mode. ZK: proof against the registered key, the
   * bundle against the registration (its verification key included), output recomputed; and the bundle's
   * trusted setup (`setup`: who could forge proofs; `setupSecure`), which does not change `agree`. TEE: the
   * enclave signature, the key's registration and standing then and now. Optimistic: the window, the
   * attester set fixed at posting, any vote (its ballots re-tallied), the output recomputed where the bundle
   * allows. A rejected optimistic task (`status` "Rejected"): the evidence of the rejection, a challenger's
   * proof of other outputs (re-verified, bound to the challenger, and recomputed from the bundle) or a vote.
   * Every report lists what it `checked` and what it could not (`notChecked`), and `warnings` found since.
   * `fromBlock`: a block at or before a rejection, to find its log (default 0).
   */
  async audit(id: Id, opts: { fromBlock?: number } = {}): Promise<AuditReport> {
    const taskId = toId(id, "task");
    await this.ready();
    const found = await findVerifiedLog(this.auditDeps(), taskId);
    if (found) return (await auditVerifiedLog(this.auditDeps(), found.log))!;
    const status = await this.status(taskId);
    if (status !== "Rejected") {
      throw new OpgClientError(
        `task ${taskId} is ${status}: only a verified task, or an optimistic one rejected after a dispute, ` +
          "has a settlement to audit",
      );
    }
    const latest = await this.provider.getBlockNumber();
    const logs = await findLogs(
      this.provider,
      await this.tasks.getAddress(),
      [MODE_TOPICS.rejected, ethers.toBeHex(taskId, 32)],
      opts.fromBlock ?? 0,
      latest,
    );
    if (!logs[0]) throw new OpgClientError(`task ${taskId}: its TaskRejected event was not found`);
    return (await auditRejectedLog(this.auditDeps(), logs[0]))!;
  }

  /**
   * Audit every task verified, or rejected after a dispute, in blocks [fromBlock, toBlock] (default: up to the
   * latest), reading logs in windows of `chunk` blocks so that RPC providers with log-range limits serve it.
   * `onReport` sees each report as it is made; the summary counts them (`rejected`: the rejections among
   * them) and names the models whose setup is not secure.
   */
  async auditRange(
    fromBlock: number,
    opts: { toBlock?: number; chunk?: number; onReport?: (r: AuditReport) => void } = {},
  ): Promise<{
    fromBlock: number;
    toBlock: number;
    audited: number;
    /** Reports of rejections (status "Rejected"): their evidence re-checked, a proof or a vote. */
    rejected: number;
    agreed: number;
    disagreed: string[];
    /** Model ids (of the audited tasks settled by a proof) whose setup is not established secure here. */
    setupNotSecure: string[];
    /** Audited tasks by verification mode. */
    byMode: Record<AuditReport["mode"], number>;
  }> {
    await this.ready();
    const toBlock = opts.toBlock ?? (await this.provider.getBlockNumber());
    const chunk = opts.chunk ?? 5_000;
    if (!Number.isInteger(fromBlock) || fromBlock < 0 || fromBlock > toBlock) {
      throw new OpgClientError(`block range ${fromBlock}..${toBlock} is empty or invalid`);
    }
    const summary = {
      fromBlock,
      toBlock,
      audited: 0,
      rejected: 0,
      agreed: 0,
      disagreed: [] as string[],
      setupNotSecure: [] as string[],
      byMode: { zk: 0, tee: 0, optimistic: 0, unknown: 0 } as Record<AuditReport["mode"], number>,
    };
    const topics = [[TOPICS.verified, MODE_TOPICS.rejected]];
    for await (const logs of this.registryLogs(topics, fromBlock, toBlock, chunk)) {
      for (const log of logs) {
        const report =
          log.topics[0] === TOPICS.verified
            ? (await auditVerifiedLog(this.auditDeps(), log))!
            : (await auditRejectedLog(this.auditDeps(), log))!;
        summary.audited++;
        if (report.status === "Rejected") summary.rejected++;
        summary.byMode[report.mode]++;
        if (report.agree) summary.agreed++;
        else summary.disagreed.push(report.taskId);
        // only a result that rests on a proof depends on the setup
        const proved = report.proofValid !== null;
        if (proved && !report.setupSecure && !summary.setupNotSecure.includes(report.modelId)) {
          summary.setupNotSecure.push(report.modelId);
        }
        opts.onReport?.(report);
      }
    }
    return summary;
  }

  /** The registry's logs matching `topics` in [fromBlock, toBlock], one window of `chunk` blocks at a time. */
  private async *registryLogs(
    topics: (string | string[])[],
    fromBlock: number,
    toBlock: number,
    chunk: number,
  ) {
    const address = await this.tasks.getAddress();
    for (let start = fromBlock; start <= toBlock; start += chunk) {
      yield await this.provider.getLogs({
        address,
        topics,
        fromBlock: start,
        toBlock: Math.min(toBlock, start + chunk - 1),
      });
    }
  }

  private auditDeps(): AuditDeps {
    return {
      provider: this.provider,
      models: this.models,
      tasks: this.tasks,
      bundles: this.bundles,
      data: this.data,
      setups: this.setups,
    };
  }

  private requireSigner(what = "submitting a task"): Signer {
    if (!this.signer) throw new OpgClientError(`${what} needs a signer, not a bare provider`);
    return this.signer;
  }

  /** Unless prepaid credits cover `fee`, make sure the registry may pull it from the wallet. */
  private async ensureFunds(signer: Signer, fee: bigint) {
    if ((await this.credits()) >= fee) return;
    const registry = await this.tasks.getAddress();
    await approveFromWallet(
      this.token,
      signer,
      registry,
      fee,
      `the fee is ${ethers.formatEther(fee)}`,
      this.queue,
    );
  }
}

/** What a wait needs to know of a submitted task: deadline, mode and quorum. */
function knownFrom(submitted: SubmittedTask): KnownTask {
  const mode = modeName(submitted.task.mode);
  return {
    deadline: Number(submitted.task.deadline),
    ...(mode ? { mode } : {}),
    ...(mode === "optimistic" ? { quorum: Number(submitted.task.attestationQuorum) } : {}),
  };
}
