import fs from "node:fs";
import path from "node:path";
import type { Log } from "ethers";
import client from "prom-client";
import { DataClient } from "../data/client";
import { BundleCache } from "../runtime/bundles";
import { ModelExecutor } from "../runtime/execution-policy";
import { connect, readDeployment, type Chain, type Deployment } from "../runtime/chain";
import type { ConfigOf } from "../runtime/config";
import { Journal } from "../runtime/journal";
import type { Logger } from "../runtime/logger";
import { ExecutionSandbox } from "../runtime/sandbox";
import { PollLoop, ServiceHttp } from "../runtime/service";
import { preflight } from "../runtime/startup";
import { auditVerifiedLog, type AuditDeps, type AuditReport } from "../runtime/audit";
import { SetupChecks } from "../runtime/audit-setup";
import { TxSubmitter } from "../runtime/submitter";
import { taskRegistryInterface, TOPICS } from "../runtime/tasks";
import { ChainWatcher } from "../runtime/watcher";
import type { verificationSchema } from "./config";
import { OPTIMISTIC_TOPICS, OptimisticVerifier } from "./optimistic";

export type VerificationConfig = ConfigOf<typeof verificationSchema>;

/** What a verification node concluded about one verified task. */
export type VerificationReport = AuditReport;

/**
 * The verification node: for every TaskVerified of the models it watches, it takes the proof, outputs and
 * input from the settling transaction's calldata, fetches the model bundle (hash-checked against the
 * registry, verification key included), re-verifies the proof off-chain against that key with the public
 * signals rebuilt from chain data, and recomputes the quantized output with the fixed-point executor.
 * Every conclusion goes to the log, a metric and a JSON-lines report; a disagreement is logged as an error.
 * Each model's trusted setup (who could forge its proofs) is logged once, at warn level when its phase 1
 * is a development or unpublished one, and kept in the `opg_model_setup_secure{model}` gauge.
 * In the optimistic mode (`optimistic`, on by default) it also signs attestations off chain for inference
 * nodes about to post (`POST /attest` on its service port), re-executes every result posted without proof
 * and challenges a wrong one (by proof for a model with a circuit, by bond and vote without), votes on
 * vote disputes and settles its ballots (OptimisticVerifier; its tasks in `optimistic.db`).
 */
export class VerificationNode {
  private readonly chain: Chain;
  private readonly journal: Journal;
  private readonly http: ServiceHttp;
  private readonly bundles: BundleCache;
  private readonly data: DataClient;
  private watcher!: ChainWatcher;
  private readonly deployment: Deployment;
  private readonly reportFile: string;
  private readonly loop: PollLoop;
  private readonly auditDeps: AuditDeps;
  /** Optimistic-mode tasks (kept apart from the audit reports' rows, which share task ids). */
  private readonly optimisticJournal: Journal;
  private readonly optimistic?: OptimisticVerifier;
  /** Where the models it re-executes run: child processes under the execution limits. */
  private readonly sandbox: ExecutionSandbox;
  private chainId = 0n;
  private readonly checked;
  private readonly setupSecure;
  /** Models whose setup has been logged. */
  private readonly setupLogged = new Set<string>();

  constructor(
    private readonly config: VerificationConfig,
    private readonly log: Logger,
  ) {
    const deployment = readDeployment(config.deployment);
    this.deployment = deployment;
    this.chain = connect(config.rpcUrl, config.privateKey, deployment);
    fs.mkdirSync(config.stateDir, { recursive: true });
    this.journal = new Journal(path.join(config.stateDir, "journal.db"));
    this.reportFile = path.join(config.stateDir, "reports.jsonl");
    this.http = new ServiceHttp(log, config);
    this.loop = new PollLoop(
      config.pollIntervalMs,
      async () => {
        await this.watcher.poll();
        await this.optimistic?.work();
      },
      log,
    );
    this.data = new DataClient(config.dataUrl);
    this.bundles = new BundleCache(path.join(config.stateDir, "bundles"), this.data, {
      maxModelBytes: config.maxModelBytes,
    });
    this.sandbox = new ExecutionSandbox(config, log);
    const sandbox = this.sandbox;
    new client.Gauge({
      name: "opg_executions",
      help: "model runs in the execution sandbox since start, by how they ended: ok, refused (the model failed), time and memory (killed over a limit), crashed",
      labelNames: ["outcome"],
      registers: [this.http.registry],
      collect() {
        for (const [outcome, n] of Object.entries(sandbox.counts)) this.set({ outcome }, n);
      },
    });
    this.optimisticJournal = new Journal(path.join(config.stateDir, "optimistic.db"));
    if (config.optimistic) {
      const submitter = new TxSubmitter(
        this.chain.wallet,
        this.chain.provider,
        this.optimisticJournal,
        [
          taskRegistryInterface,
          this.chain.token.interface,
          ...(this.chain.disputes ? [this.chain.disputes.interface] : []),
        ],
        {
          replaceAfterSeconds: config.replaceAfterSeconds,
          maxReplacements: 3,
          maxRetries: config.maxRetries,
          dryRun: config.dryRun,
        },
        log,
      );
      this.optimistic = new OptimisticVerifier(
        this.chain,
        this.optimisticJournal,
        submitter,
        this.bundles,
        this.data,
        {
          models: config.models,
          finalizeAfterSeconds: config.finalizeAfterSeconds,
          startBlock: config.startBlock,
          executor: new ModelExecutor(this.sandbox, config, log),
        },
        log,
        this.http.registry,
      );
    }
    const { provider, models, tasks } = this.chain;
    const setups = new SetupChecks({
      ptau: config.setupPtau || undefined,
      log: (message) => log.info(message),
    });
    // Audits of verified ZK tasks run the model's program in the sandbox, under the same policy as re-execution.
    const auditExecutor = new ModelExecutor(this.sandbox, config, log);
    this.auditDeps = {
      provider,
      models,
      tasks,
      bundles: this.bundles,
      data: this.data,
      setups,
      execute: async (bundle, input) => (await auditExecutor.outputs(bundle, input)).values,
    };
    this.checked = new client.Counter({
      name: "opg_verifications_total",
      help: "verified tasks re-checked, by result",
      labelNames: ["result"],
      registers: [this.http.registry],
    });
    this.setupSecure = new client.Gauge({
      name: "opg_model_setup_secure",
      help: "1 when the model's trusted setup is established secure (published phase 1, checked here), else 0",
      labelNames: ["model"],
      registers: [this.http.registry],
    });
  }

  /** Check the RPC endpoint, the deployment and the data node (a StartupError when one fails), then poll. */
  async start(): Promise<number> {
    const { chainId, confirmations } = await preflight({
      rpcUrl: this.config.rpcUrl,
      dataUrl: this.config.dataUrl,
      provider: this.chain.provider,
      deployment: this.deployment,
      deploymentFile: this.config.deployment,
      confirmations: this.config.confirmations,
      startTimeoutSeconds: this.config.startTimeoutSeconds,
      log: this.log,
    });
    this.chainId = chainId;
    this.watcher = new ChainWatcher(
      this.chain.provider,
      this.journal,
      {
        addresses: [this.deployment.tasks, ...(this.deployment.disputes ? [this.deployment.disputes] : [])],
        topics: this.optimistic ? [...new Set([TOPICS.verified, ...OPTIMISTIC_TOPICS])] : [TOPICS.verified],
        confirmations,
        startBlock: this.config.startBlock,
      },
      { onLogs: (logs) => this.onLogs(logs), onReorg: async (ancestor) => this.onReorg(ancestor) },
      this.log,
    );
    // Attestations signed off chain for inference nodes about to post (see attest.ts); 503 with the mode off.
    this.http.postJson("/attest", async (body) =>
      this.optimistic
        ? this.optimistic.attestRequest(body)
        : { status: 503, body: { error: "the optimistic mode is off on this node (--optimistic false)" } },
    );
    const port = await this.http.listen(this.config.metricsPort, this.config.metricsHost);
    this.http.setHealth(() => ({
      ok: this.loop.isRunning,
      ready: this.loop.isRunning,
      lag: this.watcher.lag,
      tasks: this.journal.countByState(),
      optimistic: this.optimisticJournal.countByState(),
    }));
    this.loop.start();
    this.log.info(
      {
        chainId: this.chainId.toString(),
        address: this.chain.wallet.address,
        optimistic: this.config.optimistic,
      },
      "verification node started",
    );
    return port;
  }

  async stop() {
    await this.loop.stop();
    await this.optimistic?.close();
    await this.sandbox.close();
    await this.http.close();
    this.journal.close();
    this.optimisticJournal.close();
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

  /** The model's setup: its gauge on every report, a log line the first time it is known. */
  private noteSetup(report: VerificationReport) {
    this.setupSecure.set({ model: report.modelId }, report.setupSecure ? 1 : 0);
    const setup = report.setup;
    if (!setup || this.setupLogged.has(report.modelId)) return;
    this.setupLogged.add(report.modelId);
    const fields = {
      modelId: report.modelId,
      trust: setup.trust,
      checkedFrom: setup.checkedFrom,
      secure: report.setupSecure,
      phase2Contributions: setup.phase2.count,
      contributors: setup.phase2.contributors,
      whoCanForge: setup.whoCanForge,
      warnings: setup.warnings,
    };
    // a development or unpublished phase 1 (or a zkey that does not verify): someone known could forge
    const weak = setup.trust !== "published-ceremony" || setup.zkeyVerified === false;
    if (weak) this.log.warn(fields, `model ${report.modelId} ${setup.summary}`);
    else this.log.info(fields, `model ${report.modelId} ${setup.summary}`);
  }

  private onReorg(ancestor: number) {
    // Reports above the ancestor described blocks that are gone: forget them so the rescan checks anew.
    for (const row of this.journal.tasksAbove(ancestor)) this.journal.deleteTask(BigInt(row.taskId));
    for (const row of this.optimisticJournal.tasksAbove(ancestor))
      this.optimisticJournal.deleteTask(BigInt(row.taskId));
  }

  private async onLogs(logs: Log[]) {
    await this.optimistic?.onLogs(logs);
    for (const log of logs) {
      if (log.topics[0] !== TOPICS.verified) continue;
      const parsed = taskRegistryInterface.parseLog(log);
      if (!parsed || parsed.name !== "TaskVerified") continue;
      const taskId: bigint = parsed.args.taskId;
      const existing = this.journal.task(taskId);
      if (existing && existing.block === log.blockNumber) continue; // already checked (replayed range)
      const report = await auditVerifiedLog(this.auditDeps, log, { models: this.config.models });
      if (!report) continue;
      this.journal.upsertTask(taskId, BigInt(report.modelId), log.blockNumber, JSON.stringify(report));
      this.journal.setState(taskId, report.agree ? "agreed" : "disagreed", { reason: report.detail });
      fs.appendFileSync(this.reportFile, JSON.stringify(report) + "\n");
      this.checked.inc({ result: report.agree ? "agree" : "disagree" });
      this.noteSetup(report);
      if (report.agree)
        this.log.info({ taskId: report.taskId, node: report.node }, "verified task re-checked: agree");
      else this.log.error({ ...report }, "DISAGREEMENT: a verified task does not re-check");
    }
  }
}
