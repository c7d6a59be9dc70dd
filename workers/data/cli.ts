import fs from "node:fs";
import path from "node:path";
import { Option, type Command } from "commander";
import { addSchemaOptions, ConfigError, loadConfig, schemaOverrides } from "../runtime/config";
import { dataNodeSchema } from "./config";

// Command definitions only: the server, the client and the archive code are loaded inside the actions, so
// `opg --help` stays fast.

const DEFAULT_URL = "http://127.0.0.1:8600";

/** Adds `data` (the data node service) to the `opg node` group. */
export function registerDataCommands(node: Command): Command {
  const cmd = node
    .command("data")
    .description("run the data node: a content-addressed blob store over HTTP (PUT /blobs, GET /blobs/<id>)")
    .option("--config <file>", "JSON config file with any of the options below (by their camelCase names)");
  return addSchemaOptions(cmd, dataNodeSchema)
    .addHelpText(
      "after",
      "\nPrecedence: flag > environment variable > config file > default. /metrics and /healthz are served on\n" +
        "--host and --port beside the API. Logs: readable on a terminal, JSON lines when piped (--log-format).\n" +
        "SIGTERM/SIGINT stop accepting connections, finish requests in flight and exit 0. Exit code 2: invalid\n" +
        "configuration; 1: the node could not start (port in use, directory not writable).",
    )
    .action(async (o: Record<string, unknown>) => {
      const { startDataNode } = await import("./server");
      let config;
      try {
        config = loadConfig(dataNodeSchema, {
          file: o.config as string | undefined,
          overrides: schemaOverrides(dataNodeSchema, o),
        });
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        process.stderr.write(`opg node data: ${e.message}\n`);
        process.exitCode = 2;
        return;
      }
      let running;
      try {
        running = await startDataNode(config);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        const where =
          err.code === "EADDRINUSE" || err.code === "EACCES" ? ` on ${config.host}:${config.port}` : "";
        process.stderr.write(`opg node data: cannot start${where}: ${err.message}\n`);
        process.exitCode = 1;
        return;
      }
      const node = running;
      let stopping = false;
      const stop = (signal: NodeJS.Signals): void => {
        if (stopping) {
          node.logger.warn({ signal }, "second signal: exiting now");
          process.exit(1);
        }
        stopping = true;
        node.logger.info({ signal, inFlight: node.server.requestsInFlight }, "shutting down");
        node.stop().then(
          () => {
            node.logger.info("stopped");
            process.exit(0);
          },
          (e: Error) => {
            node.logger.error({ err: e }, "shutdown failed");
            process.exit(1);
          },
        );
      };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
    });
}

/** The options every client command takes: the data node's URL, `--url` kept as a hidden deprecated alias. */
interface UrlOptions {
  dataUrl?: string;
  url?: string;
}

/**
 * The data node client of a command. With OPG_PRIVATE_KEY set, uploads are signed with that key (a data
 * node in signed mode takes nothing else); the key is read from the environment only, never a flag.
 */
async function client(o: UrlOptions) {
  const { DataClient } = await import("./client");
  if (o.url !== undefined && o.dataUrl === undefined) {
    process.stderr.write("warning: --url is deprecated, use --data-url\n");
  }
  let uploader;
  const key = process.env.OPG_PRIVATE_KEY;
  if (key !== undefined && key !== "") {
    const [{ Wallet }, { parse }] = await Promise.all([import("ethers"), import("../runtime/config")]);
    try {
      uploader = new Wallet(parse.privateKey(key));
    } catch (e) {
      throw new ConfigError([`OPG_PRIVATE_KEY: ${(e as Error).message}`]);
    }
  }
  return new DataClient(o.dataUrl ?? o.url ?? process.env.OPG_DATA_URL ?? DEFAULT_URL, { uploader });
}

/** Runs a client command body; known errors print one line and exit 1. */
async function guarded(body: () => Promise<void>): Promise<void> {
  const [{ DataClientError }, { BundleArchiveError }, { BlobError }] = await Promise.all([
    import("./client"),
    import("./bundle-archive"),
    import("./blob-store"),
  ]);
  try {
    await body();
  } catch (e) {
    if (
      e instanceof DataClientError ||
      e instanceof BundleArchiveError ||
      e instanceof BlobError ||
      e instanceof ConfigError
    ) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}

function writeAtomic(file: string, bytes: Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, file);
}

/** Adds `data put|get|pack-bundle|fetch-bundle`: client commands of a data node. */
export function registerDataClientCommands(program: Command): Command {
  const data = program.command("data").description("store and fetch blobs and model bundles on a data node");
  const urlHelp = `data node URL (OPG_DATA_URL, default ${DEFAULT_URL})`;
  const withUrl = (cmd: Command) =>
    cmd
      .option("--data-url <url>", urlHelp)
      .addOption(new Option("--url <url>", "deprecated: --data-url").hideHelp());

  withUrl(data.command("put <file>"))
    .description("upload a file; prints its id (sha256). Signed with OPG_PRIVATE_KEY when it is set")
    .action((file: string, o: UrlOptions) =>
      guarded(async () => {
        const id = await (await client(o)).put(fs.readFileSync(file));
        process.stdout.write(`${id}\n`);
      }),
    );

  withUrl(data.command("get <id>"))
    .description("download a blob (its sha256 is checked) to --out, or to stdout")
    .option("--out <file>", "write here instead of stdout")
    .action((id: string, o: UrlOptions & { out?: string }) =>
      guarded(async () => {
        const { bytes32ToBundleId } = await import("./bundle-archive");
        const bytes = await (await client(o)).get(id.startsWith("0x") ? bytes32ToBundleId(id) : id);
        if (o.out) writeAtomic(o.out, bytes);
        else process.stdout.write(bytes);
      }),
    );

  withUrl(data.command("pack-bundle <dir>"))
    .description(
      "pack a ZKML bundle directory into one archive and upload it; prints its id and bytes32 hash",
    )
    .option("--out <file>", "also write the archive here")
    .option("--no-upload", "only pack (with --out), do not upload")
    .action((dir: string, o: UrlOptions & { out?: string; upload: boolean }) =>
      guarded(async () => {
        const [{ bundleIdToBytes32, packBundle, readBundleArchive }, { sha256Hex }] = await Promise.all([
          import("./bundle-archive"),
          import("./blob-store"),
        ]);
        const bytes = packBundle(dir);
        const id = sha256Hex(bytes);
        if (o.out) writeAtomic(o.out, bytes);
        if (o.upload) {
          const stored = await (await client(o)).put(bytes);
          if (stored !== id) throw new Error(`uploaded id ${stored} differs from ${id}`);
        }
        const files = readBundleArchive(bytes).header.files.length;
        const out = { id, bundleHash: bundleIdToBytes32(id), bytes: bytes.length, files, uploaded: o.upload };
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      }),
    );

  withUrl(data.command("fetch-bundle <id> <destDir>"))
    .description("download a bundle archive by id (or 0x bytes32 bundleHash), check it and unpack it")
    .option("--replace", "replace destDir if it exists")
    .action((id: string, destDir: string, o: UrlOptions & { replace?: boolean }) =>
      guarded(async () => {
        const { bytes32ToBundleId, unpackBundle } = await import("./bundle-archive");
        const bid = id.startsWith("0x") ? bytes32ToBundleId(id) : id;
        const bytes = await (await client(o)).get(bid);
        const r = unpackBundle(bytes, destDir, { replace: o.replace });
        process.stdout.write(
          `${JSON.stringify({ id: r.id, dir: path.relative(process.cwd(), r.dir) || "." })}\n`,
        );
      }),
    );
  return data;
}
