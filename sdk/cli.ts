import fs from "node:fs";
import type { Command } from "commander";
import type { AuditReport, OpgClient } from "./client";
import {
  CliError,
  idArg,
  json,
  keyFromEnv,
  rpc,
  run,
  settings,
  signerFrom,
  withConnection,
  type Conn,
} from "./cli-common";
import { registerModelCommands } from "./model-cli";
import { registerOperatorCommands } from "./operator-cli";

// Loaded by `opg --help`: the client, ethers and the bindings are imported by the actions that use them.

/** The setup flags of the audit commands. */
interface SetupFlags {
  ptau?: string;
  requireSecureSetup?: boolean;
}

async function clientFor(o: Conn & SetupFlags, signed: boolean) {
  const s = settings(o);
  if (o.ptau !== undefined && !fs.existsSync(o.ptau)) throw new CliError(`ptau file ${o.ptau} not found`);
  if (signed) await keyFromEnv(); // a missing key is said before the endpoint is asked anything
  const { OpgClient } = await import("./client");
  const provider = await rpc(s.rpcUrl);
  const runner = signed ? await signerFrom(provider) : provider;
  const client = new OpgClient({
    runner,
    deployment: s.deployment,
    dataUrl: s.dataUrl,
    ptau: o.ptau,
    log: (m) => process.stderr.write(`${m}\n`),
  });
  return { client, provider, s };
}

/** A task id that names a submitted task: otherwise a CliError saying how many tasks there are. */
async function existingTask(client: OpgClient, raw: string): Promise<bigint> {
  const id = idArg("task id", raw);
  const count = await client.tasks.taskCount();
  if (id === 0n || id > count) {
    throw new CliError(
      `task ${id} does not exist; the registry has ${count} task${count === 1n ? "" : "s"}` +
        (count > 0n ? ` (ids 1 to ${count})` : ""),
    );
  }
  return id;
}

function withSetupFlags(cmd: Command): Command {
  return cmd
    .option(
      "--ptau <file>",
      "the phase-1 (powers of tau) file the model was set up with: checked, and the zkey verified against " +
        "it (a setup is found secure only with it)",
    )
    .option(
      "--require-secure-setup",
      "exit 3 also when the model's trusted setup is not established secure (needs --ptau)",
    );
}

/** The verification modes `--mode` takes. */
const MODES = ["zk", "optimistic", "tee"] as const;

/** `--mode`'s value, refused by name when it is not a mode. */
function modeArg(raw: string | undefined): (typeof MODES)[number] | undefined {
  if (raw === undefined) return undefined;
  if (!(MODES as readonly string[]).includes(raw)) {
    throw new CliError(`--mode ${raw}: use zk, optimistic or tee`);
  }
  return raw as (typeof MODES)[number];
}

/**
 * What an audit prints on stderr (stdout stays JSON): the setup verdict where the result rests on a proof,
 * then what it could not check.
 */
function auditLines(r: AuditReport): string {
  const lines = r.proofValid === null ? [`${r.mode}: ${r.detail}`] : [setupLine(r)];
  // a rejection says what rejected the outputs first (a challenger's proof of other outputs, or a vote)
  if (r.status === "Rejected" && r.proofValid !== null) lines.unshift(`rejected: ${r.detail}`);
  for (const w of r.warnings) lines.push(`WARNING: ${w}`);
  for (const n of r.notChecked) lines.push(`not checked: ${n}`);
  return lines.join("\n");
}

/** Exit code of an audit: 0 agree, 3 not (or, with --require-secure-setup, a proof under an unsecure setup). */
function auditExit(r: AuditReport, requireSecureSetup?: boolean): number {
  if (!r.agree) return 3;
  return r.proofValid === null || r.setupSecure || !requireSecureSetup ? 0 : 3;
}

/** The audit's setup verdict as printed on stderr (stdout stays JSON). */
function setupLine(r: AuditReport): string {
  if (!r.setup) return "setup: NOT CHECKED (the model's bundle could not be read)";
  return r.bundleMatches
    ? r.setup.summary
    : `${r.setup.summary} [this is the published bundle's setup; the registered key is not that bundle's]`;
}

/** What `task submit --wait` prints on stderr while it waits: each change of situation, with elapsed seconds. */
export function waitReporter(write: (line: string) => void = (l) => process.stderr.write(l)) {
  const started = Date.now();
  let last = "";
  return (s: { status: string; message: string; claimedBy?: string }) => {
    if (s.message === last) return;
    last = s.message;
    write(`[${((Date.now() - started) / 1000).toFixed(0)}s] ${s.message}\n`);
  };
}

/** `opg model register` and `opg task submit|result|audit`: the model owner's, dapp's and auditor's CLI. */
export function registerClientCommands(program: Command) {
  const model = registerModelCommands(program);

  const task = program.command("task").description("submit inference tasks, read and audit their results");
  withConnection(task.command("submit"))
    .description("pay for an inference: quantizes the input as the model's circuit expects and submits it")
    .requiredOption("--model <id>", "model id")
    .requiredOption("--input <file>", 'JSON file {"input": <nested array in the model\'s input shape>}')
    .option("--fee <opg>", "fee in OPG (default: the model's)")
    .option("--deadline-seconds <n>", "seconds until the deadline (default 600)")
    .option(
      "--mode <mode>",
      "verification mode: zk (proof checked on chain), tee (signed by an approved enclave key) or optimistic " +
        "(final after a challenge window with attestations; wrong outputs rejected by a challenger's proof, or " +
        "by a stake vote where the model has no circuit); default: the " +
        "strongest the model allows; one it does not allow is refused before anything is sent",
    )
    .option(
      "--wait",
      "wait for the verified result and print it (says on stderr what it is waiting for: an eligible node, " +
        "the proof or enclave-signed result, an optimistic claim, the challenge window and attestations, a " +
        "vote, a reopening)",
    )
    .option("--timeout-seconds <n>", "with --wait: how long to wait (default 300)")
    .action(
      async (
        o: Conn & {
          model: string;
          input: string;
          fee?: string;
          deadlineSeconds?: string;
          mode?: string;
          wait?: boolean;
          timeoutSeconds?: string;
        },
      ) => {
        await run(async (keep) => {
          const modelId = idArg("model id", o.model);
          const mode = modeArg(o.mode);
          let input: unknown;
          try {
            input = JSON.parse(fs.readFileSync(o.input, "utf8")).input;
          } catch (e) {
            throw new CliError(`input file ${o.input}: ${(e as Error).message}`);
          }
          if (input === undefined) throw new CliError(`input file ${o.input} has no "input" key`);
          const { parse } = await import("../workers/runtime/config");
          const fee = o.fee ? parse.opgAmount(o.fee) : undefined;
          const deadlineSeconds = o.deadlineSeconds ? parse.int(1, 7 * 86_400)(o.deadlineSeconds) : undefined;
          const timeoutMs = 1000 * (o.timeoutSeconds ? parse.int(1, 86_400)(o.timeoutSeconds) : 300);
          const { client, provider } = await clientFor(o, true);
          keep(provider);
          const submitted = await client.submit(modelId, input, { fee, deadlineSeconds, mode });
          process.stderr.write(
            `task ${submitted.taskId} submitted in ${submitted.mode} mode in ${submitted.txHash}\n`,
          );
          if (!o.wait) {
            process.stdout.write(
              json({ taskId: submitted.taskId, tx: submitted.txHash, mode: submitted.mode }),
            );
            return;
          }
          // onStatus: what the task waits for, each time it changes (the SDK's waitForResult option)
          const waitOpts = { timeoutMs, onStatus: waitReporter() };
          const result = await client.waitForResult(submitted.taskId, waitOpts);
          process.stdout.write(json(result));
        });
      },
    );

  withConnection(task.command("status <taskId>"))
    .description(
      "print a task's status, verification mode and what it waits for: an eligible node (ZK and TEE tasks are " +
        "settled by the first node in their service order, unclaimed), the claim, the challenge window and " +
        "attestations so far against the quorum (optimistic), a dispute, the refund of a rejected task",
    )
    .option("--from-block <n>", "a block at or before the submission (default: the last 10,000 blocks)")
    .action(async (id: string, o: Conn & { fromBlock?: string }) => {
      await run(async (keep) => {
        idArg("task id", id);
        const { parse } = await import("../workers/runtime/config");
        const fromBlock =
          o.fromBlock === undefined ? undefined : parse.int(0, Number.MAX_SAFE_INTEGER)(o.fromBlock);
        const { client, provider } = await clientFor(o, false);
        keep(provider);
        const taskId = await existingTask(client, id);
        const seen = await client.describe(taskId, { fromBlock });
        process.stderr.write(`${seen.message}\n`);
        process.stdout.write(json({ taskId: id, ...seen }));
      });
    });

  withConnection(task.command("result <taskId>"))
    .description(
      "print a task's status and mode and, once verified, its decoded output with how it was verified " +
        "(proof, enclave key, attesters, dispute)",
    )
    .action(async (id: string, o: Conn) => {
      await run(async (keep) => {
        idArg("task id", id);
        const { client, provider } = await clientFor(o, false);
        keep(provider);
        const taskId = await existingTask(client, id);
        const status = await client.status(taskId);
        if (status === "Verified") {
          const result = await client.result(taskId);
          process.stdout.write(json({ taskId: id, status, ...(result ?? {}) }));
          return;
        }
        const { message, ...facts } = await client.describe(taskId);
        process.stdout.write(json({ taskId: id, ...facts, status, message }));
      });
    });

  withSetupFlags(withConnection(task.command("audit <taskId>")))
    .description(
      "re-check a verified task from public data in its mode (zk: proof against the registered key, bundle " +
        "against the registration, output recomputed, the trusted setup; tee: the enclave signature, the " +
        "key's registration and standing then and now; optimistic: window, attesters, vote, output " +
        "recomputed where the bundle allows), or an optimistic task rejected after a dispute (the " +
        "challenger's proof of other outputs re-verified and recomputed, or the vote re-tallied); prints on " +
        "stderr what it could not check (exit 0 when it agrees, 3 when it does not, or with " +
        "--require-secure-setup when a proof's setup is not secure)",
    )
    .action(async (id: string, o: Conn & SetupFlags) => {
      await run(async (keep) => {
        idArg("task id", id);
        const { client, provider } = await clientFor(o, false);
        keep(provider);
        const report = await client.audit(await existingTask(client, id));
        process.stderr.write(`${auditLines(report)}\n`);
        process.stdout.write(json(report));
        return auditExit(report, o.requireSecureSetup);
      });
    });
  /** `refund` and `reopen`: one transaction any key may send for a task, printed as {taskId, <done>: true, tx}. */
  const keeperCommand = (name: "refund" | "reopen", done: "refunded" | "reopened", description: string) =>
    withConnection(task.command(`${name} <taskId>`))
      .description(description)
      .option("--from-block <n>", "a block at or before the submission (default 0)")
      .action(async (id: string, o: Conn & { fromBlock?: string }) => {
        await run(async (keep) => {
          idArg("task id", id);
          const { parse } = await import("../workers/runtime/config");
          const fromBlock =
            o.fromBlock === undefined ? undefined : parse.int(0, Number.MAX_SAFE_INTEGER)(o.fromBlock);
          const { client, provider } = await clientFor(o, true);
          keep(provider);
          const tx = await client[name](await existingTask(client, id), { fromBlock });
          process.stdout.write(json({ taskId: id, [done]: true, tx }));
        });
      });
  keeperCommand(
    "refund",
    "refunded",
    "after its deadline, refund a task nobody settled to its requester, also an optimistic task whose " +
      "challenge window closed without its quorum of attestations (any key may send it)",
  );
  keeperCommand(
    "reopen",
    "reopened",
    "before its deadline, put an optimistic task whose posted outputs met no quorum of attestations by the " +
      "window's end back on the market (expireUnattested: the node's collateral is slashed, another node " +
      "may claim the task; any key may send it)",
  );

  withSetupFlags(withConnection(task.command("audit-range")))
    .description(
      "audit every task verified, or rejected after a dispute, in a block range: one JSON report per line, " +
        "then a summary; each model's " +
        "setup line on stderr (exit 0 when all agree, 3 when any does not, or with --require-secure-setup " +
        "when any model's setup is not secure)",
    )
    .requiredOption("--from-block <n>", "first block")
    .option("--to-block <n>", "last block (default: latest)")
    .action(async (o: Conn & SetupFlags & { fromBlock: string; toBlock?: string }) => {
      await run(async (keep) => {
        const { parse } = await import("../workers/runtime/config");
        const block = parse.int(0, Number.MAX_SAFE_INTEGER);
        const fromBlock = block(o.fromBlock);
        const toBlock = o.toBlock === undefined ? undefined : block(o.toBlock);
        const { client, provider } = await clientFor(o, false);
        keep(provider);
        const shown = new Set<string>();
        const summary = await client.auditRange(fromBlock, {
          toBlock,
          onReport: (r) => {
            // the setup line is a proof's: TEE and unchallenged optimistic results rest on no proof
            if (r.proofValid !== null && !shown.has(r.modelId)) {
              process.stderr.write(`model ${r.modelId}: ${setupLine(r)}\n`);
              shown.add(r.modelId);
            }
            if (!r.agree) process.stderr.write(`task ${r.taskId} (${r.mode}): ${r.detail}\n`);
            process.stdout.write(JSON.stringify(r) + "\n");
          },
        });
        process.stdout.write(JSON.stringify({ summary }) + "\n");
        const setupOk = !o.requireSecureSetup || summary.setupNotSecure.length === 0;
        return summary.disagreed.length === 0 && setupOk ? 0 : 3;
      });
    });

  const operator = registerOperatorCommands(program);
  return { model, task, operator };
}
