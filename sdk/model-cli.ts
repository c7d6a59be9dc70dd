import fs from "node:fs";
import { InvalidArgumentError, type Command } from "commander";
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

// Loaded by `opg --help`: the bundle code, ethers and the bindings are imported by the actions that use them.

function intOption(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

/** Collects repeated `--dim name=N` into a record; N is a positive integer. */
function parseDim(v: string, acc: Record<string, number> = {}): Record<string, number> {
  const m = /^([^=]+)=(.*)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`expected name=N (e.g. batch=1), got '${v}'`);
  const n = Number(m[2]);
  if (!/^\d+$/.test(m[2].trim()) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError(`symbolic dimension '${m[1]}' must be a positive integer, got '${m[2]}'`);
  if (Object.prototype.hasOwnProperty.call(acc, m[1]))
    throw new InvalidArgumentError(`symbolic dimension '${m[1]}' is set twice`);
  return { ...acc, [m[1]]: n };
}

interface PackageFlags {
  out: string;
  scaleBits: number;
  packBits: number;
  inputBits?: number;
  inputMode: string;
  dim?: Record<string, number>;
}

interface RegisterFlags extends Conn {
  fee: string;
  royaltyReceiver?: string;
  modes?: string;
}

/** `opg model package` and `opg model register`: publishing models, with or without a circuit. */
export function registerModelCommands(program: Command): Command {
  const model = program.command("model").description("publish models to a deployment");

  withConnection(model.command("register <bundleDir>"))
    .description(
      "upload a bundle to the data node and register the model: a compiled ZK bundle (opg zkml compile) with " +
        "its Groth16 verification key, or a plain bundle (opg model package) for TEE and optimistic mode " +
        "(prints the model id, the key's data contract and its hash)",
    )
    .requiredOption("--fee <opg>", "fee per inference, in OPG")
    .option("--royalty-receiver <address>", "who receives the model royalty (default: the signer)")
    .option(
      "--modes <list>",
      "verification modes, comma-separated: zk, tee, optimistic (default: zk for a ZK bundle, tee,optimistic " +
        "for a plain bundle, which cannot be zk)",
    )
    .action(async (bundleDir: string, o: RegisterFlags) => {
      await run(async (keep) => {
        const s = settings(o);
        if (!fs.existsSync(bundleDir)) throw new CliError(`bundle directory ${bundleDir} not found`);
        const [{ ModelRegistry__factory }, lib, archives, { DataClient }, { parse }, chain, plain] =
          await Promise.all([
            import("../typechain-types"),
            import("../network/register-plain-model"),
            import("../workers/data/bundle-archive"),
            import("../workers/data/client"),
            import("../workers/runtime/config"),
            import("../workers/runtime/chain"),
            import("../zkml/plain-bundle"),
          ]);
        const fee = parse.opgAmount(o.fee);
        const isPlain = plain.bundleKind(bundleDir) === "plain";
        let modes: number;
        try {
          modes = lib.parseModes(o.modes ?? (isPlain ? "tee,optimistic" : "zk"));
        } catch (e) {
          throw new CliError((e as Error).message);
        }
        if (isPlain && modes & lib.MODE_BITS.zk) {
          throw new CliError(
            `${bundleDir} is a plain bundle (no circuit): it cannot be registered in zk mode; use --modes tee and/or optimistic`,
          );
        }
        if (isPlain) plain.loadPlainManifest(bundleDir); // a broken bundle is said before anything is sent
        await keyFromEnv();
        const provider = await rpc(s.rpcUrl);
        keep(provider);
        const signer = await signerFrom(provider);
        const archive = archives.packBundle(bundleDir);
        const bundleId = archives.bundleArchiveId(archive);
        const stored = await new DataClient(s.dataUrl, { uploader: signer }).put(archive);
        if (stored !== bundleId) throw new CliError(`data node stored ${stored}, expected ${bundleId}`);
        const models = ModelRegistry__factory.connect(chain.readDeployment(s.deployment).models, signer);
        const registered = await lib.registerBundleInModes(signer, models, bundleDir, {
          bundleId,
          fee,
          royaltyReceiver: o.royaltyReceiver,
          modes,
          plain: isPlain,
        });
        const zk = (modes & lib.MODE_BITS.zk) !== 0;
        process.stdout.write(
          json({
            modelId: registered.modelId,
            bundleId,
            // the output of a plain `register <zk bundle>` is unchanged; the kind and modes when they matter
            ...(o.modes !== undefined || isPlain
              ? { kind: isPlain ? "plain" : "zk", verificationModes: lib.modeNames(modes) }
              : {}),
            verificationKey: zk ? registered.verificationKey : null,
            verificationKeyHash: zk ? registered.verificationKeyHash : null,
          }),
        );
      });
    });

  model
    .command("package <onnx>")
    .description(
      "package an ONNX model without a circuit as a plain bundle (model.onnx + manifest.json) for TEE and " +
        "optimistic mode: input and output layout, fixed-point scale, packing; for models `opg zkml compile` " +
        "cannot prove",
    )
    .requiredOption("--out <dir>", "the bundle directory (created; must be empty)")
    .option(
      "--scale-bits <n>",
      "fixed-point scale bits of inputs and outputs",
      intOption("scale bits", 0, 32),
      8,
    )
    .option(
      "--pack-bits <n>",
      "bits per packed value in a result or input word",
      intOption("pack bits", 2, 126),
      16,
    )
    .option(
      "--input-bits <n>",
      "signed bits of each input value (default: pack bits)",
      intOption("input bits", 2, 126),
    )
    .option("--input-mode <mode>", "inline, commitment or auto (inline when it fits in 8 words)", "auto")
    .option(
      "--dim <name=N>",
      "bind the input's symbolic dimension <name> (e.g. a dynamic batch axis) to N; repeatable; each one not " +
        "given is bound to 1",
      parseDim,
    )
    .action(async (onnx: string, o: PackageFlags) => {
      await run(async () => {
        if (!["inline", "commitment", "auto"].includes(o.inputMode)) {
          throw new CliError(`--input-mode must be inline, commitment or auto, got '${o.inputMode}'`);
        }
        const [{ packagePlainModel }, { packBundle, bundleArchiveId }] = await Promise.all([
          import("../zkml/plain-bundle"),
          import("../workers/data/bundle-archive"),
        ]);
        let m;
        try {
          m = await packagePlainModel(onnx, o.out, {
            scaleBits: o.scaleBits,
            packBits: o.packBits,
            inputBits: o.inputBits,
            inputMode: o.inputMode as "inline" | "commitment" | "auto",
            dims: o.dim,
            log: (line) => process.stderr.write(`${line}\n`),
          });
        } catch (e) {
          if ((e as Error).name === "ZkmlError") throw new CliError((e as Error).message);
          throw e;
        }
        const l = m.publicSignals;
        process.stdout.write(
          json({
            bundle: o.out,
            kind: m.kind,
            bundleId: bundleArchiveId(packBundle(o.out)),
            onnxSha256: m.onnx.sha256,
            input: { shape: m.input.shape, words: l.inputWords, mode: l.inputMode },
            output: { shape: m.output.shape, words: l.outputWords },
            scaleBits: m.quantization.scaleBits,
            packBits: l.packBits,
            inputBits: m.quantization.inputBits,
          }),
        );
      });
    });

  return model;
}
