import fs from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { ConfigError, describeSchema, loadConfig } from "../runtime/config";
import { BlobError, sha256Hex } from "./blob-store";
import {
  BundleArchiveError,
  bundleIdToBytes32,
  bytes32ToBundleId,
  packBundle,
  readBundleArchive,
  unpackBundle,
} from "./bundle-archive";
import { DataClient, DataClientError } from "./client";
import { dataNodeSchema } from "./config";
import { startDataNode } from "./server";

const DEFAULT_URL = "http://127.0.0.1:8600";

/** Adds `data` (the data node service) to the `opg node` group. */
export function registerDataCommands(node: Command): Command {
  return node
    .command("data")
    .description("run the data node: a content-addressed blob store over HTTP (PUT /blobs, GET /blobs/<id>)")
    .option("--config <file>", "JSON config file with any of the options below (by their camelCase names)")
    .option("--host <host>", "interface to listen on (OPG_DATA_HOST, default 127.0.0.1)")
    .option("--port <n>", "TCP port, 0 for a free one (OPG_DATA_PORT, default 8600)")
    .option("--dir <path>", "blob directory, created if missing (OPG_DATA_DIR, default ./opg-data)")
    .option("--max-blob-bytes <n>", "largest blob accepted (OPG_DATA_MAX_BLOB_BYTES, default 268435456)")
    .option(
      "--shutdown-timeout-ms <n>",
      "grace for requests in flight on SIGTERM (OPG_DATA_SHUTDOWN_TIMEOUT_MS)",
    )
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace|silent (OPG_LOG_LEVEL, default info)")
    .addHelpText(
      "after",
      `\nConfiguration (precedence: flag > environment > config file > default):\n${describeSchema(dataNodeSchema)}\n\n` +
        "Logs are JSON lines on stdout. SIGTERM/SIGINT stop accepting connections, finish requests in flight and\n" +
        "exit 0. Exit code 2: invalid configuration; 1: the node could not start.",
    )
    .action(async (o: Record<string, string | undefined>) => {
      let config;
      try {
        config = loadConfig(dataNodeSchema, {
          file: o.config,
          overrides: {
            host: o.host,
            port: o.port,
            dir: o.dir,
            maxBlobBytes: o.maxBlobBytes,
            shutdownTimeoutMs: o.shutdownTimeoutMs,
            logLevel: o.logLevel,
          },
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

function client(url: string | undefined): DataClient {
  return new DataClient(url ?? process.env.OPG_DATA_URL ?? DEFAULT_URL);
}

/** Runs a client command body; known errors print one line and exit 1. */
async function guarded(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (e instanceof DataClientError || e instanceof BundleArchiveError || e instanceof BlobError) {
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
  const urlHelp = `data node URL (default $OPG_DATA_URL or ${DEFAULT_URL})`;

  data
    .command("put <file>")
    .description("upload a file; prints its id (sha256)")
    .option("--url <url>", urlHelp)
    .action((file: string, o: { url?: string }) =>
      guarded(async () => {
        const id = await client(o.url).put(fs.readFileSync(file));
        process.stdout.write(`${id}\n`);
      }),
    );

  data
    .command("get <id>")
    .description("download a blob (its sha256 is checked) to --out, or to stdout")
    .option("--url <url>", urlHelp)
    .option("--out <file>", "write here instead of stdout")
    .action((id: string, o: { url?: string; out?: string }) =>
      guarded(async () => {
        const bytes = await client(o.url).get(id.startsWith("0x") ? bytes32ToBundleId(id) : id);
        if (o.out) writeAtomic(o.out, bytes);
        else process.stdout.write(bytes);
      }),
    );

  data
    .command("pack-bundle <dir>")
    .description(
      "pack a ZKML bundle directory into one archive and upload it; prints its id and bytes32 hash",
    )
    .option("--url <url>", urlHelp)
    .option("--out <file>", "also write the archive here")
    .option("--no-upload", "only pack (with --out), do not upload")
    .action((dir: string, o: { url?: string; out?: string; upload: boolean }) =>
      guarded(async () => {
        const bytes = packBundle(dir);
        const id = sha256Hex(bytes);
        if (o.out) writeAtomic(o.out, bytes);
        if (o.upload) {
          const stored = await client(o.url).put(bytes);
          if (stored !== id) throw new Error(`uploaded id ${stored} differs from ${id}`);
        }
        const files = readBundleArchive(bytes).header.files.length;
        const out = { id, bundleHash: bundleIdToBytes32(id), bytes: bytes.length, files, uploaded: o.upload };
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      }),
    );

  data
    .command("fetch-bundle <id> <destDir>")
    .description("download a bundle archive by id (or 0x bytes32 bundleHash), check it and unpack it")
    .option("--url <url>", urlHelp)
    .option("--replace", "replace destDir if it exists")
    .action((id: string, destDir: string, o: { url?: string; replace?: boolean }) =>
      guarded(async () => {
        const bid = id.startsWith("0x") ? bytes32ToBundleId(id) : id;
        const bytes = await client(o.url).get(bid);
        const r = unpackBundle(bytes, destDir, { replace: o.replace });
        process.stdout.write(
          `${JSON.stringify({ id: r.id, dir: path.relative(process.cwd(), r.dir) || "." })}\n`,
        );
      }),
    );
  return data;
}
