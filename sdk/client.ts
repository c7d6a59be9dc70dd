import os from "node:os";
import path from "node:path";
import {
  ethers,
  type ContractTransactionReceipt,
  type ContractTransactionResponse,
  type Interface,
  type Provider,
  type Signer,
} from "ethers";
import {
  ModelRegistry__factory,
  OPGToken__factory,
  TaskRegistry__factory,
  type ModelRegistry,
  type OPGToken,
  type TaskRegistry,
} from "../typechain-types";
import {
  dequantizeOutput,
  flattenInput,
  inputWords,
  quantizeInput,
  unpackWords,
  type BundleManifest,
  type QProgram,
} from "../zkml";
import { DataClient } from "../workers/data/client";
import {
  auditVerifiedLog,
  findVerifiedLog,
  readSubmission,
  type AuditDeps,
  type AuditReport,
} from "../workers/runtime/audit";
import { SetupChecks } from "../workers/runtime/audit-setup";
import { BundleCache, BundleRejectedError } from "../workers/runtime/bundles";
import { readDeployment, type Deployment } from "../workers/runtime/chain";
import { parseSubmitted, TOPICS, type SubmittedTask } from "../workers/runtime/tasks";

export type { AuditReport } from "../workers/runtime/audit";
export type { AuditSetup } from "../workers/runtime/audit-setup";
export type { Deployment } from "../workers/runtime/chain";

export const TASK_STATUSES = ["None", "Open", "Claimed", "Verified", "Expired"] as const;
export type TaskStatusName = (typeof TASK_STATUSES)[number];

/** A client-side failure with a message that names the problem (bad input, unknown model, expired task). */
export class OpgClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OpgClientError";
  }
}

/**
 * Send a contract transaction and wait for it; a revert becomes an OpgClientError naming the contract's
 * custom error and its arguments, decoded with `iface` (ethers leaves errors of another ABI undecoded).
 */
export async function sendTx(what: string, iface: Interface, tx: () => Promise<ContractTransactionResponse>) {
  try {
    return (await (await tx()).wait()) as ContractTransactionReceipt;
  } catch (e) {
    const data = (e as { data?: unknown }).data;
    const decoded = typeof data === "string" && data.length >= 10 ? iface.parseError(data) : null;
    if (decoded) {
      throw new OpgClientError(`${what} reverted: ${decoded.name}(${decoded.args.map(String).join(", ")})`);
    }
    throw e;
  }
}

/**
 * Make sure `signer` holds `amount` OPG and that `spender` may pull it, approving exactly `amount` when the
 * allowance is short (never an unlimited approval). `need` ends the error when the balance is short.
 */
export async function approveFromWallet(
  token: OPGToken,
  signer: Signer,
  spender: string,
  amount: bigint,
  need: string,
) {
  const account = await signer.getAddress();
  const balance = await token.balanceOf(account);
  if (balance < amount)
    throw new OpgClientError(`${account} holds ${ethers.formatEther(balance)} OPG, ${need}`);
  if ((await token.allowance(account, spender)) < amount) {
    await sendTx("approve", token.interface, () => token.connect(signer).approve(spender, amount));
  }
}

export interface OpgClientOptions {
  /** A signer submits tasks (its provider serves reads); a bare provider is enough for results and audits. */
  runner: Signer | Provider;
  /** Contract addresses, or the deployment file scripts/deploy.ts wrote. */
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
}

/** A registered model with its bundle, fetched from the data node and checked against the registry. */
export interface ModelInfo {
  modelId: bigint;
  fee: bigint;
  active: boolean;
  manifest: BundleManifest;
  program: QProgram;
}

export interface SubmitOptions {
  /** OPG fee in wei; defaults to the model's fee. */
  fee?: bigint;
  /** Seconds from the latest block to the deadline (default 600). */
  deadlineSeconds?: number;
  /** Contract to call back with the verified output, and the gas it may use. */
  callback?: string;
  callbackGasLimit?: number;
}

export interface SubmittedRequest {
  taskId: bigint;
  txHash: string;
  /** Gas the submission used (about 78k from prepaid credits, 98k pulling the fee from the wallet). */
  gasUsed: bigint;
  /** The input as the circuit sees it (fixed point). */
  quantizedInput: bigint[];
  /** The task as committed on chain, and its input words: what claimTask and submitResult take. */
  task: SubmittedTask["task"];
  input: bigint[];
}

export interface TaskResult {
  taskId: bigint;
  node: string;
  settledBlock: number;
  /** Output words exactly as verified on chain. */
  words: bigint[];
  /** The fixed-point output values the proof attests. */
  quantized: bigint[];
  /** Dequantized output (softmax applied off-circuit where the model ends in one). */
  output: number[];
  /** Index of the largest output: the class of a classifier. */
  argmax: number;
}

/**
 * The dapp developer's and auditor's handle on a deployment: submit inference tasks with float inputs
 * (quantized and packed exactly as the model's circuit expects), wait for and decode verified results,
 * and audit any verified task from public data. Everything it trusts is checked against the registries.
 */
export class OpgClient {
  readonly provider: Provider;
  readonly signer?: Signer;
  readonly tasks: TaskRegistry;
  readonly models: ModelRegistry;
  readonly token: OPGToken;
  private readonly data: DataClient;
  private readonly bundles: BundleCache;
  private readonly setups: SetupChecks;

  constructor(opts: OpgClientOptions) {
    const deployment =
      typeof opts.deployment === "string" ? readDeployment(opts.deployment) : opts.deployment;
    const signer = "getAddress" in opts.runner ? (opts.runner as Signer) : undefined;
    const provider = signer ? signer.provider : (opts.runner as Provider);
    if (!provider) throw new OpgClientError("the signer has no provider: connect it to one");
    this.provider = provider;
    this.signer = signer;
    const runner = signer ?? provider;
    this.tasks = TaskRegistry__factory.connect(deployment.tasks, runner);
    this.models = ModelRegistry__factory.connect(deployment.models, runner);
    this.token = OPGToken__factory.connect(deployment.token, runner);
    this.data = new DataClient(opts.dataUrl);
    this.bundles = new BundleCache(opts.cacheDir ?? path.join(os.tmpdir(), "opg-sdk-bundles"), this.data);
    this.setups = new SetupChecks({ ptau: opts.ptau, log: opts.log });
  }

  /** The model's registered terms and its bundle (hash-checked against the registry). */
  async model(modelId: bigint): Promise<ModelInfo> {
    const count = await this.models.modelCount();
    if (modelId < 1n || modelId > count) throw new OpgClientError(`model ${modelId} is not registered`);
    const model = await this.models.getModel(modelId);
    let bundle;
    try {
      bundle = await this.bundles.get(model);
    } catch (e) {
      // A bundle that disagrees with its registration (hashes, verification key, layout) is never used.
      if (e instanceof BundleRejectedError) throw new OpgClientError(`model ${modelId}: ${e.message}`);
      throw e;
    }
    return {
      modelId,
      fee: model.terms.fee,
      active: model.terms.active,
      manifest: bundle.manifest,
      program: bundle.program,
    };
  }

  /** Quantize a float input (nested in the model's shape, or flat) the way the circuit takes it. */
  quantize(info: ModelInfo, input: unknown): bigint[] {
    try {
      return quantizeInput(info.program, flattenInput(input, info.manifest.input.shape));
    } catch (e) {
      throw new OpgClientError(`model ${info.modelId}: ${(e as Error).message}`);
    }
  }

  /**
   * Pay for an inference of `modelId` on `input` (floats). Inline models carry the packed input in the
   * task; commitment models get the input stored on the data node and its Poseidon commitment on chain.
   * The fee comes from prepaid credits when they cover it, else from the wallet (approved here if needed).
   */
  async submit(modelId: bigint, input: unknown, opts: SubmitOptions = {}): Promise<SubmittedRequest> {
    const signer = this.requireSigner();
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
    await this.ensureFunds(signer, fee);
    const now = (await this.provider.getBlock("latest"))!.timestamp;
    const receipt = await sendTx("submitTask", this.tasks.interface, () =>
      this.tasks.connect(signer).submitTask({
        modelId,
        input: inputWords(info.manifest, quantizedInput),
        inputDataHash,
        fee,
        deadline: now + seconds,
        callback: opts.callback ?? ethers.ZeroAddress,
        callbackGasLimit: opts.callbackGasLimit ?? 0,
      }),
    );
    const log = receipt.logs.find((l) => l.topics[0] === TOPICS.submitted);
    if (!log) throw new OpgClientError(`transaction ${receipt.hash} emitted no TaskSubmitted`);
    const submitted = parseSubmitted(log);
    return {
      taskId: submitted.taskId,
      txHash: receipt.hash,
      gasUsed: receipt.gasUsed,
      quantizedInput,
      task: submitted.task,
      input: submitted.input,
    };
  }

  /**
   * Prepay `amount` OPG of credits (approving exactly the amount when needed). Later submissions take their
   * fee from the credits: no token transfer per task, about 20,000 gas less each.
   */
  async deposit(amount: bigint): Promise<string> {
    const signer = this.requireSigner();
    if (amount <= 0n) throw new OpgClientError("a deposit must be more than 0 OPG");
    const registry = await this.tasks.getAddress();
    await approveFromWallet(
      this.token,
      signer,
      registry,
      amount,
      `asked to deposit ${ethers.formatEther(amount)}`,
    );
    const receipt = await sendTx("deposit", this.tasks.interface, () =>
      this.tasks.connect(signer).deposit(amount),
    );
    return receipt.hash;
  }

  /** Prepaid credits of `account` (default: the signer's), in OPG wei. */
  async credits(account?: string): Promise<bigint> {
    return this.tasks.creditsOf(account ?? (await this.requireSigner().getAddress()));
  }

  async status(taskId: bigint): Promise<TaskStatusName> {
    return TASK_STATUSES[Number(await this.tasks.taskStatus(taskId))];
  }

  /** The verified result of `taskId`, decoded; undefined while it is not verified. */
  async result(taskId: bigint): Promise<TaskResult | undefined> {
    const found = await findVerifiedLog(this.auditDeps(), taskId);
    if (!found) return undefined;
    const { log, result } = found;
    const submission = await readSubmission(this.provider, log.transactionHash, taskId);
    if (!submission) throw new OpgClientError(`task ${taskId}: settlement not found`);
    const info = await this.model(BigInt(submission.task.modelId));
    const words = [...result.outputs];
    const layout = info.manifest.publicSignals;
    const quantized = unpackWords(words, layout.outputCount, layout.packBits);
    const output = dequantizeOutput(info.program, quantized);
    return {
      taskId,
      node: result.node,
      settledBlock: Number(result.settledBlock),
      words,
      quantized,
      output,
      argmax: output.indexOf(Math.max(...output)),
    };
  }

  /** Wait until `taskId` is verified and return its result; fails if it expires or the timeout passes. */
  async waitForResult(
    taskId: bigint,
    opts: { timeoutMs?: number; pollMs?: number } = {},
  ): Promise<TaskResult> {
    const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
    for (;;) {
      const status = await this.status(taskId);
      if (status === "Verified") return (await this.result(taskId))!;
      if (status === "Expired") throw new OpgClientError(`task ${taskId} expired without a verified result`);
      if (status === "None") throw new OpgClientError(`task ${taskId} does not exist`);
      if (Date.now() > deadline) throw new OpgClientError(`task ${taskId} still ${status} after the timeout`);
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 1000));
    }
  }

  /**
   * The task as committed at submission, from its TaskSubmitted event (searched from `fromBlock` in windows
   * of `chunk` blocks: pass the submission block, or a block before it, on chains with long histories).
   */
  async submittedTask(
    taskId: bigint,
    opts: { fromBlock?: number; chunk?: number } = {},
  ): Promise<SubmittedTask> {
    const latest = await this.provider.getBlockNumber();
    const topics = [TOPICS.submitted, ethers.toBeHex(taskId, 32)];
    for await (const logs of this.registryLogs(topics, opts.fromBlock ?? 0, latest, opts.chunk ?? 5_000)) {
      if (logs.length > 0) return parseSubmitted(logs[0]);
    }
    throw new OpgClientError(`task ${taskId}: no TaskSubmitted event from block ${opts.fromBlock ?? 0} on`);
  }

  /**
   * Get the fee of a task nobody settled back once its deadline has passed (anyone may call; the refund goes
   * to the requester, and a claimer that let it lapse loses its collateral). Returns the transaction hash.
   */
  async refund(taskId: bigint, opts: { fromBlock?: number } = {}): Promise<string> {
    const signer = this.requireSigner();
    const status = await this.status(taskId);
    if (status !== "Open" && status !== "Claimed") {
      throw new OpgClientError(`task ${taskId} is ${status}: only an open or claimed task can be refunded`);
    }
    const { task } = await this.submittedTask(taskId, opts);
    const now = (await this.provider.getBlock("latest"))!.timestamp;
    if (BigInt(now) <= BigInt(task.deadline)) {
      throw new OpgClientError(
        `task ${taskId}: its deadline ${new Date(Number(task.deadline) * 1000).toISOString()} has not passed yet`,
      );
    }
    const receipt = await sendTx("expire", this.tasks.interface, () =>
      this.tasks.connect(signer).expire(taskId, task),
    );
    return receipt.hash;
  }

  /**
   * Re-check a verified task from public data: proof against the registered key, the bundle against the
   * registration (its verification key included), output recomputed; and the bundle's trusted setup
   * (`setup`: who could forge proofs; `setupSecure`), which does not change `agree`.
   */
  async audit(taskId: bigint): Promise<AuditReport> {
    const found = await findVerifiedLog(this.auditDeps(), taskId);
    if (!found) throw new OpgClientError(`task ${taskId} is ${await this.status(taskId)}, not verified`);
    return (await auditVerifiedLog(this.auditDeps(), found.log))!;
  }

  /**
   * Audit every task verified in blocks [fromBlock, toBlock] (default: up to the latest), reading logs in
   * windows of `chunk` blocks so that RPC providers with log-range limits serve it. `onReport` sees each
   * report as it is made; the summary counts them and names the models whose setup is not secure.
   */
  async auditRange(
    fromBlock: number,
    opts: { toBlock?: number; chunk?: number; onReport?: (r: AuditReport) => void } = {},
  ): Promise<{
    fromBlock: number;
    toBlock: number;
    audited: number;
    agreed: number;
    disagreed: string[];
    /** Model ids (of the audited tasks) whose setup is not established secure here. */
    setupNotSecure: string[];
  }> {
    const toBlock = opts.toBlock ?? (await this.provider.getBlockNumber());
    const chunk = opts.chunk ?? 5_000;
    if (!Number.isInteger(fromBlock) || fromBlock < 0 || fromBlock > toBlock) {
      throw new OpgClientError(`block range ${fromBlock}..${toBlock} is empty or invalid`);
    }
    const summary = {
      fromBlock,
      toBlock,
      audited: 0,
      agreed: 0,
      disagreed: [] as string[],
      setupNotSecure: [] as string[],
    };
    for await (const logs of this.registryLogs([TOPICS.verified], fromBlock, toBlock, chunk)) {
      for (const log of logs) {
        const report = (await auditVerifiedLog(this.auditDeps(), log))!;
        summary.audited++;
        if (report.agree) summary.agreed++;
        else summary.disagreed.push(report.taskId);
        if (!report.setupSecure && !summary.setupNotSecure.includes(report.modelId)) {
          summary.setupNotSecure.push(report.modelId);
        }
        opts.onReport?.(report);
      }
    }
    return summary;
  }

  /** The registry's logs matching `topics` in [fromBlock, toBlock], one window of `chunk` blocks at a time. */
  private async *registryLogs(topics: string[], fromBlock: number, toBlock: number, chunk: number) {
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

  private requireSigner(): Signer {
    if (!this.signer) throw new OpgClientError("submitting a task needs a signer, not a bare provider");
    return this.signer;
  }

  /** Unless prepaid credits cover `fee`, make sure the registry may pull it from the wallet. */
  private async ensureFunds(signer: Signer, fee: bigint) {
    const account = await signer.getAddress();
    if ((await this.tasks.creditsOf(account)) >= fee) return;
    const registry = await this.tasks.getAddress();
    await approveFromWallet(this.token, signer, registry, fee, `the fee is ${ethers.formatEther(fee)}`);
  }
}
