import fs from "node:fs";
import path from "node:path";
import type { Log } from "ethers";
import client from "prom-client";
import { executeProgram, packValues } from "../../zkml";
import { groth16Verify } from "../../zkml/prover/groth16";
import { DataClient } from "../data/client";
import { BundleCache } from "../runtime/bundles";
import { connect, readDeployment, type Chain } from "../runtime/chain";
import type { ConfigOf } from "../runtime/config";
import { Journal } from "../runtime/journal";
import type { Logger } from "../runtime/logger";
import { PollLoop, ServiceHttp } from "../runtime/service";
import { decodeTaskInput } from "../runtime/task-input";
import { taskRegistryInterface, TOPICS, type SubmittedTask } from "../runtime/tasks";
import { ChainWatcher } from "../runtime/watcher";
import type { chainNodeSchema } from "../inference/config";

export type VerificationConfig = ConfigOf<typeof chainNodeSchema>;

/** What a verification node concluded about one verified task. */
export interface VerificationReport {
  taskId: string;
  modelId: string;
  node: string;
  block: number;
  tx: string;
  proofValid: boolean;
  outputMatches: boolean;
  agree: boolean;
  detail: string;
  checkedAt: string;
}

/**
 * The verification node: for every TaskVerified of the models it watches, it takes the proof, outputs and
 * input from the settling transaction's calldata, fetches the model bundle (hash-checked against the
 * registry, verification key included), re-verifies the proof off-chain against that key with the public
 * signals rebuilt from chain data, and recomputes the quantized output with the fixed-point executor.
 * Every conclusion goes to the log, a metric and a JSON-lines report; a disagreement is logged as an error.
 */
export class VerificationNode {
  private readonly chain: Chain;
  private readonly journal: Journal;
  private readonly http: ServiceHttp;
  private readonly bundles: BundleCache;
  private readonly data: DataClient;
  private readonly watcher: ChainWatcher;
  private readonly reportFile: string;
  private readonly loop: PollLoop;
  private chainId = 0n;
  private registryAddress = "";
  private readonly checked;

  constructor(
    private readonly config: VerificationConfig,
    private readonly log: Logger,
  ) {
    const deployment = readDeployment(config.deployment);
    this.registryAddress = deployment.tasks;
    this.chain = connect(config.rpcUrl, config.privateKey, deployment);
    fs.mkdirSync(config.stateDir, { recursive: true });
    this.journal = new Journal(path.join(config.stateDir, "journal.db"));
    this.reportFile = path.join(config.stateDir, "reports.jsonl");
    this.http = new ServiceHttp(log);
    this.loop = new PollLoop(config.pollIntervalMs, () => this.watcher.poll(), log);
    this.data = new DataClient(config.dataUrl);
    this.bundles = new BundleCache(path.join(config.stateDir, "bundles"), this.data);
    this.watcher = new ChainWatcher(
      this.chain.provider,
      this.journal,
      {
        addresses: [deployment.tasks],
        topics: [TOPICS.verified],
        confirmations: config.confirmations,
        startBlock: config.startBlock,
      },
      { onLogs: (logs) => this.onLogs(logs), onReorg: async (ancestor) => this.onReorg(ancestor) },
      log,
    );
    this.checked = new client.Counter({
      name: "opg_verifications_total",
      help: "verified tasks re-checked, by result",
      labelNames: ["result"],
      registers: [this.http.registry],
    });
  }

  async start(): Promise<number> {
    this.chainId = (await this.chain.provider.getNetwork()).chainId;
    const port = await this.http.listen(this.config.metricsPort);
    this.http.setHealth(() => ({
      ok: this.loop.isRunning,
      lag: this.watcher.lag,
      tasks: this.journal.countByState(),
    }));
    this.loop.start();
    this.log.info({ chainId: this.chainId.toString() }, "verification node started");
    return port;
  }

  async stop() {
    await this.loop.stop();
    await this.http.close();
    this.journal.close();
    this.chain.provider.destroy();
  }

  /** All reports written so far. */
  reports(): VerificationReport[] {
    if (!fs.existsSync(this.reportFile)) return [];
    return fs
      .readFileSync(this.reportFile, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  }

  private onReorg(ancestor: number) {
    // Reports above the ancestor described blocks that are gone: forget them so the rescan checks anew.
    for (const row of this.journal.tasksAbove(ancestor)) this.journal.deleteTask(BigInt(row.taskId));
  }

  private async onLogs(logs: Log[]) {
    for (const log of logs) {
      const parsed = taskRegistryInterface.parseLog(log);
      if (!parsed || parsed.name !== "TaskVerified") continue;
      const taskId: bigint = parsed.args.taskId;
      const existing = this.journal.task(taskId);
      if (existing && existing.block === log.blockNumber) continue; // already checked (replayed range)
      const report = await this.check(log, taskId, parsed.args.node, [...parsed.args.outputs]);
      if (!report) continue;
      this.journal.upsertTask(taskId, BigInt(report.modelId), log.blockNumber, JSON.stringify(report));
      this.journal.setState(taskId, report.agree ? "agreed" : "disagreed", { reason: report.detail });
      fs.appendFileSync(this.reportFile, JSON.stringify(report) + "\n");
      this.checked.inc({ result: report.agree ? "agree" : "disagree" });
      if (report.agree)
        this.log.info({ taskId: report.taskId, node: report.node }, "verified task re-checked: agree");
      else this.log.error({ ...report }, "DISAGREEMENT: a verified task does not re-check");
    }
  }

  private async check(
    log: Log,
    taskId: bigint,
    node: string,
    eventOutputs: bigint[],
  ): Promise<VerificationReport | undefined> {
    const tx = await this.chain.provider.getTransaction(log.transactionHash);
    if (!tx) throw new Error(`transaction ${log.transactionHash} not found`);
    const call = taskRegistryInterface.parseTransaction({ data: tx.data });
    let submission:
      { task: SubmittedTask["task"]; input: bigint[]; outputs: bigint[]; proof: bigint[] } | undefined;
    if (call?.name === "submitResult") {
      submission = {
        task: call.args.task,
        input: [...call.args.input],
        outputs: [...call.args.outputs],
        proof: [...call.args.proof],
      };
    } else if (call?.name === "submitResults") {
      const s = (call.args.submissions as { taskId: bigint }[]).find((x) => x.taskId === taskId) as
        { task: SubmittedTask["task"]; input: bigint[]; outputs: bigint[]; proof: bigint[] } | undefined;
      if (s) submission = { task: s.task, input: [...s.input], outputs: [...s.outputs], proof: [...s.proof] };
    }
    const modelId = submission ? BigInt(submission.task.modelId) : 0n;
    if (this.config.models.length > 0 && !this.config.models.includes(modelId)) return undefined;
    const base = {
      taskId: taskId.toString(),
      modelId: modelId.toString(),
      node,
      block: log.blockNumber,
      tx: log.transactionHash,
    };
    const report = (proofValid: boolean, outputMatches: boolean, detail: string): VerificationReport => ({
      ...base,
      proofValid,
      outputMatches,
      agree: proofValid && outputMatches,
      detail,
      checkedAt: new Date().toISOString(),
    });
    if (!submission)
      return report(false, false, "the settling transaction's calldata does not carry this task");
    if (submission.outputs.some((w, i) => w !== eventOutputs[i])) {
      return report(false, false, "calldata outputs differ from the TaskVerified event");
    }
    const model = await this.chain.models.getModel(modelId);
    const bundle = await this.bundles.get(model);
    const vk = JSON.parse(
      fs.readFileSync(path.join(bundle.dir, bundle.manifest.artifacts.verificationKey!.file), "utf8"),
    );
    const binding = BigInt(await this.chain.tasks.taskBinding(taskId, node));
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
    const input = await decodeTaskInput(bundle.manifest, submitted, this.data);
    const recomputed = executeProgram(bundle.program, input)[bundle.program.output.tensor];
    const words = packValues(recomputed, bundle.manifest.publicSignals.packBits);
    const outputMatches =
      words.length === submission.outputs.length && words.every((w, i) => w === submission.outputs[i]);
    const detail = [
      proofValid ? "proof valid" : "PROOF INVALID",
      outputMatches ? "output recomputed equal" : "OUTPUT DIFFERS",
    ].join("; ");
    return report(proofValid, outputMatches, detail);
  }
}
