import fs from "node:fs";
import { Command } from "commander";
import { ModelRegistry__factory } from "../typechain-types";
import { registerBundle } from "../scripts/lib/register-model";
import { bundleArchiveId, packBundle } from "../workers/data/bundle-archive";
import { DataClient } from "../workers/data/client";
import { parse } from "../workers/runtime/config";
import { readDeployment } from "../workers/runtime/chain";
import { OpgClient, OpgClientError, type AuditReport } from "./client";
import { json, rpc, run, settings, signerFrom, withConnection, type Conn } from "./cli-common";
import { registerOperatorCommands } from "./operator-cli";

/** The setup flags of the audit commands. */
interface SetupFlags {
  ptau?: string;
  requireSecureSetup?: boolean;
}

function clientFor(o: Conn & SetupFlags, signed: boolean) {
  const s = settings(o);
  if (o.ptau !== undefined && !fs.existsSync(o.ptau))
    throw new OpgClientError(`ptau file ${o.ptau} not found`);
  const provider = rpc(s.rpcUrl);
  const runner = signed ? signerFrom(provider) : provider;
  const client = new OpgClient({
    runner,
    deployment: s.deployment,
    dataUrl: s.dataUrl,
    ptau: o.ptau,
    log: (m) => process.stderr.write(`${m}\n`),
  });
  return { client, provider, s };
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

/** The audit's setup verdict as printed on stderr (stdout stays JSON). */
function setupLine(r: AuditReport): string {
  if (!r.setup) return "setup: NOT CHECKED (the model's bundle could not be read)";
  return r.bundleMatches
    ? r.setup.summary
    : `${r.setup.summary} [this is the published bundle's setup; the registered key is not that bundle's]`;
}

function taskId(raw: string): bigint {
  if (!/^[0-9]+$/.test(raw)) throw new OpgClientError(`task id "${raw}" is not a number`);
  return BigInt(raw);
}

/** `opg model register` and `opg task submit|result|audit`: the model owner's, dapp's and auditor's CLI. */
export function registerClientCommands(program: Command) {
  const model = program.command("model").description("publish models to a deployment");
  withConnection(model.command("register <bundleDir>"))
    .description(
      "upload a compiled bundle to the data node and register the model with its Groth16 verification key " +
        "(prints the model id, the key's data contract and its hash)",
    )
    .requiredOption("--fee <opg>", "fee per inference, in OPG")
    .option("--royalty-receiver <address>", "who receives the model royalty (default: the signer)")
    .action(async (bundleDir: string, o: Conn & { fee: string; royaltyReceiver?: string }) => {
      await run(async (keep) => {
        const s = settings(o);
        if (!fs.existsSync(bundleDir)) throw new OpgClientError(`bundle directory ${bundleDir} not found`);
        const provider = rpc(s.rpcUrl);
        keep(provider);
        const signer = signerFrom(provider);
        const fee = parse.opgAmount(o.fee);
        const archive = packBundle(bundleDir);
        const bundleId = bundleArchiveId(archive);
        const stored = await new DataClient(s.dataUrl).put(archive);
        if (stored !== bundleId) throw new OpgClientError(`data node stored ${stored}, expected ${bundleId}`);
        const models = ModelRegistry__factory.connect(readDeployment(s.deployment).models, signer);
        const registered = await registerBundle(signer, models, bundleDir, {
          bundleId,
          fee,
          royaltyReceiver: o.royaltyReceiver,
        });
        process.stdout.write(
          json({
            modelId: registered.modelId,
            bundleId,
            verificationKey: registered.verificationKey,
            verificationKeyHash: registered.verificationKeyHash,
          }),
        );
      });
    });

  const task = program.command("task").description("submit inference tasks, read and audit their results");
  withConnection(task.command("submit"))
    .description("pay for an inference: quantizes the input as the model's circuit expects and submits it")
    .requiredOption("--model <id>", "model id")
    .requiredOption("--input <file>", 'JSON file {"input": <nested array in the model\'s input shape>}')
    .option("--fee <opg>", "fee in OPG (default: the model's)")
    .option("--deadline-seconds <n>", "seconds until the deadline (default 600)")
    .option("--wait", "wait for the verified result and print it")
    .option("--timeout-seconds <n>", "with --wait: how long to wait (default 300)")
    .action(
      async (
        o: Conn & {
          model: string;
          input: string;
          fee?: string;
          deadlineSeconds?: string;
          wait?: boolean;
          timeoutSeconds?: string;
        },
      ) => {
        await run(async (keep) => {
          const { client, provider } = clientFor(o, true);
          keep(provider);
          let input: unknown;
          try {
            input = JSON.parse(fs.readFileSync(o.input, "utf8")).input;
          } catch (e) {
            throw new OpgClientError(`input file ${o.input}: ${(e as Error).message}`);
          }
          if (input === undefined) throw new OpgClientError(`input file ${o.input} has no "input" key`);
          const submitted = await client.submit(taskId(o.model), input, {
            fee: o.fee ? parse.opgAmount(o.fee) : undefined,
            deadlineSeconds: o.deadlineSeconds ? parse.int(1, 7 * 86_400)(o.deadlineSeconds) : undefined,
          });
          process.stderr.write(`task ${submitted.taskId} submitted in ${submitted.txHash}\n`);
          if (!o.wait) {
            process.stdout.write(json({ taskId: submitted.taskId, tx: submitted.txHash }));
            return;
          }
          const timeoutMs = 1000 * (o.timeoutSeconds ? parse.int(1, 86_400)(o.timeoutSeconds) : 300);
          process.stdout.write(json(await client.waitForResult(submitted.taskId, { timeoutMs })));
        });
      },
    );

  withConnection(task.command("result <taskId>"))
    .description("print a task's status and, once verified, its decoded output")
    .action(async (id: string, o: Conn) => {
      await run(async (keep) => {
        const { client, provider } = clientFor(o, false);
        keep(provider);
        const status = await client.status(taskId(id));
        const result = status === "Verified" ? await client.result(taskId(id)) : undefined;
        process.stdout.write(json({ taskId: id, status, ...(result ?? {}) }));
      });
    });

  withSetupFlags(withConnection(task.command("audit <taskId>")))
    .description(
      "re-check a verified task from public data: proof against the registered key, bundle against the " +
        "registration, output recomputed; and the model's trusted setup (who could forge proofs, printed " +
        "on stderr) (exit 0 when it agrees, 3 when it does not, or with --require-secure-setup when the " +
        "setup is not secure)",
    )
    .action(async (id: string, o: Conn & SetupFlags) => {
      await run(async (keep) => {
        const { client, provider } = clientFor(o, false);
        keep(provider);
        const report = await client.audit(taskId(id));
        process.stderr.write(`${setupLine(report)}\n`);
        process.stdout.write(json(report));
        return report.agree && (report.setupSecure || !o.requireSecureSetup) ? 0 : 3;
      });
    });
  withConnection(task.command("refund <taskId>"))
    .description("after its deadline, refund a task nobody settled to its requester (any key may send it)")
    .option("--from-block <n>", "a block at or before the submission (default 0)")
    .action(async (id: string, o: Conn & { fromBlock?: string }) => {
      await run(async (keep) => {
        const { client, provider } = clientFor(o, true);
        keep(provider);
        const fromBlock =
          o.fromBlock === undefined ? undefined : parse.int(0, Number.MAX_SAFE_INTEGER)(o.fromBlock);
        const tx = await client.refund(taskId(id), { fromBlock });
        process.stdout.write(json({ taskId: id, refunded: true, tx }));
      });
    });

  withSetupFlags(withConnection(task.command("audit-range")))
    .description(
      "audit every task verified in a block range: one JSON report per line, then a summary; each model's " +
        "setup line on stderr (exit 0 when all agree, 3 when any does not, or with --require-secure-setup " +
        "when any model's setup is not secure)",
    )
    .requiredOption("--from-block <n>", "first block")
    .option("--to-block <n>", "last block (default: latest)")
    .action(async (o: Conn & SetupFlags & { fromBlock: string; toBlock?: string }) => {
      await run(async (keep) => {
        const { client, provider } = clientFor(o, false);
        keep(provider);
        const block = parse.int(0, Number.MAX_SAFE_INTEGER);
        const shown = new Set<string>();
        const summary = await client.auditRange(block(o.fromBlock), {
          toBlock: o.toBlock === undefined ? undefined : block(o.toBlock),
          onReport: (r) => {
            if (!shown.has(r.modelId)) process.stderr.write(`model ${r.modelId}: ${setupLine(r)}\n`);
            shown.add(r.modelId);
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
