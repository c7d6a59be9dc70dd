import fs from "node:fs";
import path from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { compileModel, loadManifest, proveBundle, verifyBundle } from "./bundle";
import { ZkmlError } from "./errors";
import { SNARK_SCALAR_FIELD } from "./field";
import { releaseProver } from "./prover/groth16";

function intOption(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

function parseBinding(v: string): bigint {
  let b: bigint;
  try {
    b = BigInt(v);
  } catch {
    throw new InvalidArgumentError("the binding must be a decimal or 0x-prefixed integer");
  }
  if (b < 0n || b >= SNARK_SCALAR_FIELD)
    throw new InvalidArgumentError("the binding must be below the BN254 field modulus");
  return b;
}

const progress = (m: string): void => {
  process.stderr.write(`[opg zkml] ${m}\n`);
};

/** Runs a command body; a ZkmlError prints its message alone and sets exit code 1. */
async function guarded(body: () => Promise<number | void>): Promise<void> {
  let code = 0;
  try {
    code = (await body()) ?? 0;
  } catch (e) {
    if (e instanceof ZkmlError) {
      process.stderr.write(`error: ${e.message}\n`);
      code = 1;
    } else {
      process.stderr.write(`internal error: ${(e as Error).stack ?? e}\n`);
      code = 2;
    }
  } finally {
    await releaseProver();
  }
  process.exitCode = code;
}

/** Adds `zkml compile|prove|verify` to the opg command line. */
export function registerZkmlCommands(program: Command): void {
  const zkml = program
    .command("zkml")
    .description("compile ONNX models into Groth16 circuits, prove and verify inference");

  zkml
    .command("compile")
    .description(
      "compile an ONNX model into a proving bundle (circuit, wasm, zkey, verification key, Solidity verifier)",
    )
    .argument("<model.onnx>", "the ONNX model (static shapes, one input, one output)")
    .requiredOption("--out <dir>", "output bundle directory")
    .option(
      "--scale-bits <n>",
      "fixed-point scale: x is held as round(x * 2^n)",
      intOption("scale bits", 1, 32),
      8,
    )
    .option(
      "--activation-bits <n>",
      "cap on the signed width of a rescaled activation",
      intOption("activation bits", 4, 120),
      24,
    )
    .option("--pack-bits <n>", "bits per packed public value", intOption("pack bits", 2, 126), 16)
    .option(
      "--input-bits <n>",
      "signed bits each input value is range-checked to (default: pack bits)",
      intOption("input bits", 2, 64),
    )
    .option(
      "--input-mode <mode>",
      "inline | commitment | auto (inline up to --max-inline-words words)",
      "auto",
    )
    .option(
      "--max-inline-words <n>",
      "largest inline input in words for --input-mode auto",
      intOption("max inline words", 1, 1000),
      8,
    )
    .option("--ptau <file>", "powers-of-tau ceremony file (default: a cached development ptau, NOT secure)")
    .option("--contract-name <name>", "Solidity verifier contract name")
    .option("--no-setup", "stop after compiling the circuit (no zkey, no verifier)")
    .action(async (model: string, o) => {
      await guarded(async () => {
        if (!["inline", "commitment", "auto"].includes(o.inputMode)) {
          throw new ZkmlError(
            "BAD_INPUT",
            `--input-mode must be inline, commitment or auto, got '${o.inputMode}'`,
          );
        }
        const m = await compileModel(model, o.out, {
          scaleBits: o.scaleBits,
          activationBits: o.activationBits,
          packBits: o.packBits,
          inputBits: o.inputBits,
          inputMode: o.inputMode,
          maxInlineWords: o.maxInlineWords,
          ptau: o.ptau,
          contractName: o.contractName,
          skipSetup: !o.setup,
          log: progress,
        });
        const l = m.publicSignals;
        process.stdout.write(
          `bundle written to ${o.out}: ${m.constraints} constraints (baseline with private weights: ` +
            `${m.baselineConstraints}), public signals ${l.bindingIndex + 1} ` +
            `[outputWords ${l.outputWords}, inputWords ${l.inputWords} (${l.inputMode}), taskBinding]\n`,
        );
      });
    });

  zkml
    .command("prove")
    .description("prove one inference: writes proof.json, public.json and output.json")
    .argument("<dir>", "the bundle directory")
    .requiredOption("--input <file>", 'JSON file {"input": <nested array in the model input shape>}')
    .requiredOption("--out <dir>", "directory for proof.json, public.json, output.json")
    .option("--binding <value>", "task binding public signal, see taskBinding() (default: 0)", parseBinding)
    .option("--no-reference", "skip the onnxruntime float reference")
    .action(async (dir: string, o) => {
      await guarded(async () => {
        let input: unknown;
        try {
          input = JSON.parse(fs.readFileSync(o.input, "utf8")).input;
        } catch (e) {
          throw new ZkmlError("BAD_INPUT", `cannot read ${o.input}: ${(e as Error).message}`);
        }
        if (input === undefined) throw new ZkmlError("BAD_INPUT", `${o.input} has no "input" field`);
        loadManifest(dir);
        progress("quantized execution, witness and Groth16 proof ...");
        const r = await proveBundle(dir, input, o.binding ?? 0n, { reference: o.reference });
        fs.mkdirSync(o.out, { recursive: true });
        fs.writeFileSync(path.join(o.out, "proof.json"), JSON.stringify(r.proof, null, 1));
        fs.writeFileSync(path.join(o.out, "public.json"), JSON.stringify(r.publicSignals, null, 1));
        fs.writeFileSync(path.join(o.out, "output.json"), JSON.stringify(r.output, null, 1));
        progress(`proved in ${r.timings.witnessAndProveMs} ms`);
        process.stdout.write(`proof written to ${o.out}; output ${JSON.stringify(r.output.output)}\n`);
      });
    });

  zkml
    .command("verify")
    .description("verify a proof against a bundle; exit 0 when it verifies")
    .argument("<dir>", "the bundle directory")
    .requiredOption("--proof <dir>", "directory with proof.json and public.json (and optionally output.json)")
    .action(async (dir: string, o) => {
      await guarded(async () => {
        const r = await verifyBundle(dir, o.proof);
        if (!r.ok) {
          process.stderr.write(`verification FAILED: ${r.reason}\n`);
          return 3;
        }
        process.stdout.write(`proof verifies; output ${JSON.stringify(r.output)}\n`);
      });
    });
}
