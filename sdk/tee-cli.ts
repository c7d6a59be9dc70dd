import type { Command } from "commander";
import {
  CliError,
  json,
  keyFromEnv,
  rpc,
  run,
  settings,
  signerFrom,
  withConnection,
  type Conn,
} from "./cli-common";

// Loaded by `opg --help`: ethers, the bindings and the attestation code are imported when an action runs.

/** Chains whose deployment approves the development enclave (network/deploy-settings.ts). */
const LOCAL_CHAIN_IDS = [31337n, 1337n];

interface CheckFlags {
  maxAge?: string;
  fromBlock?: string;
  allowDev?: boolean;
}

function intFlag(what: string, raw: string | undefined, min = 0): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < min)
    throw new CliError(`${what} "${raw}" is not an integer >= ${min}`);
  return Number(raw);
}

/** The EnclaveRegistry of the deployment, read-only or with the key of OPG_PRIVATE_KEY. */
async function registry(o: Conn, withKey: boolean) {
  const s = settings(o);
  const [{ EnclaveRegistry__factory, OPGToken__factory }, { readDeployment }] = await Promise.all([
    import("../typechain-types"),
    import("../workers/runtime/chain"),
  ]);
  if (withKey) await keyFromEnv(); // a missing key is said before the endpoint is asked anything
  const deployment = readDeployment(s.deployment);
  if (!deployment.enclaves) {
    throw new CliError(`deployment file ${s.deployment} has no "enclaves" (EnclaveRegistry) address`);
  }
  const provider = await rpc(s.rpcUrl);
  const signer = withKey ? await signerFrom(provider) : undefined;
  const runner = signer ?? provider;
  const { chainId } = await provider.getNetwork();
  return {
    provider,
    signer,
    chainId,
    enclaves: EnclaveRegistry__factory.connect(deployment.enclaves, runner),
    token: OPGToken__factory.connect(deployment.token, runner),
  };
}

/** A key's record and the verdict on its document, as check-key prints it. */
async function checkKey(o: Conn & CheckFlags, key: string) {
  const [{ ethers }, tee] = await Promise.all([import("ethers"), import("../tee")]);
  if (!ethers.isAddress(key)) throw new CliError(`"${key}" is not an address`);
  const maxAge = intFlag("--max-age", o.maxAge, 1);
  const fromBlock = intFlag("--from-block", o.fromBlock);
  const c = await registry(o, false);
  const record = await tee.readKeyRecord(c.enclaves, ethers.getAddress(key), { fromBlock });
  const check = tee.checkEnclaveKey(record, { maxDocumentAgeSeconds: maxAge });
  const devAccepted = o.allowDev === true || LOCAL_CHAIN_IDS.includes(c.chainId);
  const ok = check.verdict === "valid" || (check.verdict === "development" && devAccepted);
  const report = {
    key: record.key,
    node: record.node,
    standing: record.standing,
    measurement: record.measurement,
    activeFrom: record.activeFrom,
    expiresAt: record.expiresAt,
    registeredAt: record.registeredAt.toISOString(),
    registeredIn: record.transactionHash,
    verdict: check.verdict,
    kind: check.kind,
    problems:
      check.verdict === "development" && !devAccepted
        ? [
            `a development attestation on chain ${c.chainId}, which is not a local chain (--allow-dev to accept)`,
          ]
        : check.problems,
    notes: check.notes,
    document: check.document,
  };
  return { c, record, check, ok, report };
}

function withCheckFlags(cmd: Command): Command {
  return cmd
    .option("--max-age <seconds>", "oldest a document may be when its key is registered (default 3600)")
    .option("--from-block <n>", "first block to search for the registration event (default 0)")
    .option(
      "--allow-dev",
      "accept a development attestation (accepted anyway on local chains 31337 and 1337): it proves nothing",
    );
}

/** `opg tee ...`: enclave measurements, keys and their attestation documents. */
export function registerTeeCommands(program: Command): Command {
  const tee = program
    .command("tee")
    .description(
      "TEE mode: enclave measurements, enclave keys, re-checking and challenging their attestations",
    );

  tee
    .command("measurement")
    .description(
      "the on-chain measurement of an AWS Nitro enclave image: keccak256(PCR0 || PCR1 || PCR2), from the PCRs " +
        "`nitro-cli build-enclave` prints or from an attestation document",
    )
    .option("--pcr0 <hex>", "PCR0 (enclave image file), 48 bytes hex")
    .option("--pcr1 <hex>", "PCR1 (kernel and boot ramdisk), 48 bytes hex")
    .option("--pcr2 <hex>", "PCR2 (application), 48 bytes hex")
    .option("--document <file>", "read PCR0-2 from this attestation document (CBOR) instead")
    .option("--dev", "the development enclave's measurement (local chains only)")
    .action(async (o: { pcr0?: string; pcr1?: string; pcr2?: string; document?: string; dev?: boolean }) => {
      await run(async () => {
        const tee = await import("../tee");
        let pcrs: string[];
        if (o.dev) {
          pcrs = [0, 1, 2].map((i) => "0x" + tee.DEV_ENCLAVE_PCRS[i as 0 | 1 | 2].toString("hex"));
        } else if (o.document) {
          const fs = await import("node:fs");
          if (!fs.existsSync(o.document)) throw new CliError(`document ${o.document} not found`);
          const d = tee.decodeNitroAttestation(new Uint8Array(fs.readFileSync(o.document)));
          pcrs = [0, 1, 2].map((i) => d.pcrs[i]);
          if (pcrs.some((p) => p === undefined)) throw new CliError(`${o.document} lacks PCR0, PCR1 or PCR2`);
        } else {
          if (!o.pcr0 || !o.pcr1 || !o.pcr2)
            throw new CliError("give --pcr0, --pcr1 and --pcr2, or --document, or --dev");
          pcrs = [o.pcr0, o.pcr1, o.pcr2];
        }
        let measurement: string;
        try {
          measurement = tee.measurementFromHex(pcrs[0], pcrs[1], pcrs[2]);
        } catch (e) {
          throw new CliError((e as Error).message);
        }
        process.stdout.write(json({ measurement, pcr0: pcrs[0], pcr1: pcrs[1], pcr2: pcrs[2] }));
      });
    });

  withCheckFlags(withConnection(tee.command("check-key <key>")))
    .description(
      "re-check a registered enclave key's published attestation document: a genuine Nitro document (signature " +
        "chain to the pinned AWS root at its own time) binding this key to the registered measurement, hashing " +
        "to the registered hash, fresh at registration. Exit 0 valid, 3 invalid (challenge it: opg tee challenge-key)",
    )
    .action(async (key: string, o: Conn & CheckFlags) => {
      await run(async (keep) => {
        const { c, ok, report } = await checkKey(o, key);
        keep(c.provider);
        process.stdout.write(json(report));
        for (const n of report.notes) process.stderr.write(`note: ${n}\n`);
        for (const p of report.problems) process.stderr.write(`problem: ${p}\n`);
        return ok ? 0 : 3;
      });
    });

  withCheckFlags(withConnection(tee.command("keys")))
    .description(
      "list registered enclave keys with their node, standing and expiry, and (--check) the verdict on each",
    )
    .option("--node <address>", "only this node's keys")
    .option("--check", "re-check each key's document (as check-key)")
    .action(async (o: Conn & CheckFlags & { node?: string; check?: boolean }) => {
      await run(async (keep) => {
        const [{ ethers }, tee] = await Promise.all([import("ethers"), import("../tee")]);
        if (o.node !== undefined && !ethers.isAddress(o.node))
          throw new CliError(`--node "${o.node}" is not an address`);
        const c = await registry(o, false);
        keep(c.provider);
        const records = await tee.listKeyRecords(c.enclaves, {
          node: o.node && ethers.getAddress(o.node),
          fromBlock: intFlag("--from-block", o.fromBlock),
        });
        const maxAge = intFlag("--max-age", o.maxAge, 1);
        const rows = records.map((r) => ({
          key: r.key,
          node: r.node,
          standing: r.standing,
          measurement: r.measurement,
          activeFrom: r.activeFrom,
          expiresAt: r.expiresAt,
          kind: tee.isDevAttestation(r.document) ? "development" : "nitro",
          ...(o.check ? { verdict: tee.checkEnclaveKey(r, { maxDocumentAgeSeconds: maxAge }).verdict } : {}),
        }));
        process.stdout.write(json(rows));
      });
    });

  withConnection(tee.command("register-key"))
    .description(
      "register this node's development enclave key (OPG_PRIVATE_KEY is the node): local chains only, the key " +
        "lives in <state-dir>/enclave-key.json and proves nothing; rotates a revoked or expiring key. The " +
        "inference node does the same at start with --enclave dev",
    )
    .option(
      "--state-dir <dir>",
      "the enclave's directory (default $OPG_STATE_DIR/enclave, else .opg/inference/enclave)",
    )
    .option(
      "--lifetime <seconds>",
      "how long a new key lives (default 7 days, at most the registry's maximum)",
    )
    .action(async (o: Conn & { stateDir?: string; lifetime?: string }) => {
      await run(async (keep) => {
        const path = await import("node:path");
        const tee = await import("../tee");
        const lifetimeSeconds = intFlag("--lifetime", o.lifetime, 1);
        const dir = o.stateDir ?? path.join(process.env.OPG_STATE_DIR ?? ".opg/inference", "enclave");
        const c = await registry(o, true);
        keep(c.provider);
        const enclave = tee.DevEnclave.loadOrCreate(dir);
        await tee.ensureEnclaveKeyRegistered({
          enclaves: c.enclaves,
          enclave,
          lifetimeSeconds,
          log: (m) => process.stderr.write(`${m}\n`),
        });
        const info = await c.enclaves.keyInfo(enclave.address);
        const [, standing] = await c.enclaves.keyStatus(enclave.address);
        process.stdout.write(
          json({
            key: enclave.address,
            node: info.node,
            measurement: info.measurement,
            standing: tee.standingName(standing),
            activeFrom: info.activeFrom,
            expiresAt: info.expiresAt,
            stateDir: dir,
          }),
        );
      });
    });

  withCheckFlags(withConnection(tee.command("challenge-key <key>")))
    .description(
      "challenge an enclave key whose attestation document does not hold up: puts up the registry's challenge " +
        "bond (approved from OPG_PRIVATE_KEY), suspends the key until governance judges; refuses a key whose " +
        "document checks out unless --force",
    )
    .requiredOption("--reason <text>", "why the document is invalid (published in the event)")
    .option("--force", "challenge even when check-key finds the document valid")
    .action(async (key: string, o: Conn & CheckFlags & { reason: string; force?: boolean }) => {
      await run(async (keep) => {
        await keyFromEnv();
        const { ok, report, c: readOnly } = await checkKey(o, key);
        readOnly.provider.destroy();
        if (ok && !o.force) {
          throw new CliError(
            `key ${report.key}'s document checks out (${report.verdict}): a challenge would lose its bond ` +
              "(--force to challenge anyway)",
          );
        }
        const [{ approveFromWallet }, { sendTx }] = await Promise.all([
          import("./client"),
          import("./transactions"),
        ]);
        const c = await registry(o, true);
        keep(c.provider);
        const bond = await c.enclaves.challengeBond();
        await approveFromWallet(
          c.token,
          c.signer!,
          await c.enclaves.getAddress(),
          bond,
          "the challenge bond",
        );
        const receipt = await sendTx("challengeKey", c.enclaves.interface, () =>
          c.enclaves.challengeKey(report.key, o.reason),
        );
        const [, standing] = await c.enclaves.keyStatus(report.key);
        const { standingName } = await import("../tee");
        process.stdout.write(
          json({
            key: report.key,
            challenger: c.signer!.address,
            bond,
            reason: o.reason,
            standing: standingName(standing),
            transactionHash: receipt.hash,
            problems: report.problems,
          }),
        );
      });
    });

  return tee;
}
