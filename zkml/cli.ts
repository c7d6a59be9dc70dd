import fs from "node:fs";
import path from "node:path";
import { Command, InvalidArgumentError } from "commander";
import type { SetupTrustReport } from "./ceremony/trust";
import { ZkmlError } from "./errors";
import { SNARK_SCALAR_FIELD } from "./field";

// Loaded by `opg --help`: the compiler, snarkjs and onnxruntime are imported by the actions that use them.

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

const progress = (m: string): void => {
  process.stderr.write(`[opg zkml] ${m}\n`);
};

/**
 * Runs a command body; a failure prints its message alone (the stack too with OPG_DEBUG=1) and sets exit
 * code 1. The prover's worker threads are freed when the body loaded the prover.
 */
async function guarded(body: () => Promise<number | void>): Promise<void> {
  let code = 0;
  try {
    code = (await body()) ?? 0;
  } catch (e) {
    const debug = process.env.OPG_DEBUG && e instanceof Error && e.stack;
    if (debug) process.stderr.write(`${e.stack}\n`);
    else if (e instanceof ZkmlError) process.stderr.write(`error: ${e.message}\n`);
    else process.stderr.write(`error: ${(e as Error)?.message ?? e} (unexpected: OPG_DEBUG=1 shows where)\n`);
    code = 1;
  } finally {
    if (require.cache[require.resolve("./prover/groth16")]) {
      await (await import("./prover/groth16")).releaseProver();
    }
  }
  process.exitCode = code;
}

function printReport(r: SetupTrustReport): void {
  const p = r.ptau;
  const lines = [
    `phase 1: ${p.trust}${p.published ? ` (${p.published})` : ""}, secure: ${p.secure}` +
      `${p.file ? `, ${path.basename(p.file)}` : ""}${p.power !== null ? `, 2^${p.power}` : ""}` +
      ` [${p.checkedFrom === "file" ? "checked from the file" : "manifest's claim"}]`,
    `phase 2: ${r.phase2.count} contribution(s) [${r.phase2.checkedFrom === "zkey" ? "read from the zkey" : "manifest's list"}]`,
    ...r.phase2.contributions.map((c, i) => `  #${i + 1} ${c.type} '${c.name}' ${c.hash}`),
    `zkey: ${r.zkey.verified === false ? `DOES NOT VERIFY: ${r.zkey.reason}` : r.zkey.reason}`,
    `who could forge proofs: ${r.whoCanForge}`,
    `secure: ${r.secure}`,
    ...r.warnings.map((w) => `warning: ${w}`),
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

/** Adds `zkml compile|prove|verify|ceremony` to the opg command line. */
export function registerZkmlCommands(program: Command): void {
  const zkml = program
    .command("zkml")
    .description("compile ONNX models into Groth16 circuits, prove and verify inference");

  zkml
    .command("compile")
    .description(
      "compile an ONNX model into a proving bundle (circuit, wasm, zkey, verification key, Solidity verifier)",
    )
    .argument("<model.onnx>", "the ONNX model (one input, one output)")
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
    .option(
      "--ptau <file>",
      "powers-of-tau file, verified and marked secure only when it is a published ceremony file " +
        "(default: a cached development ptau, NOT secure)",
    )
    .option("--contract-name <name>", "Solidity verifier contract name")
    .option("--no-setup", "stop after compiling the circuit (no zkey, no verifier)")
    .option(
      "--dim <name=N>",
      "bind the input's symbolic dimension <name> (e.g. a dynamic batch axis) to N; repeatable; " +
        "each one not given is bound to 1",
      parseDim,
    )
    .action(async (model: string, o) => {
      await guarded(async () => {
        if (!["inline", "commitment", "auto"].includes(o.inputMode)) {
          throw new ZkmlError(
            "BAD_INPUT",
            `--input-mode must be inline, commitment or auto, got '${o.inputMode}'`,
          );
        }
        const { compileModel } = await import("./bundle");
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
          dims: o.dim,
          log: progress,
        });
        const l = m.publicSignals;
        process.stdout.write(
          `bundle written to ${o.out}: ${m.constraints} constraints (baseline with private weights: ` +
            `${m.baselineConstraints}), public signals ${l.bindingIndex + 1} ` +
            `[outputWords ${l.outputWords}, inputWords ${l.inputWords} (${l.inputMode}), taskBinding]\n`,
        );
        if (m.ptau) {
          process.stdout.write(
            `setup: phase 1 ${m.ptau.trust}${m.ptau.published ? ` (${m.ptau.published})` : ""}, secure: ` +
              `${m.ptau.secure}; phase 2 has one contribution, this machine's: add independent ones with ` +
              `\`opg zkml ceremony contribute ${o.out}\`\n`,
          );
        }
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
        const { loadManifest, proveBundle } = await import("./bundle");
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
        const shown = r.output.outputs ?? r.output.output;
        process.stdout.write(`proof written to ${o.out}; output ${JSON.stringify(shown)}\n`);
      });
    });

  zkml
    .command("verify")
    .description(
      "verify a proof against a bundle; exit 0 when it verifies, 3 when the proof is invalid, 1 when a file " +
        "is missing or unreadable",
    )
    .argument("<dir>", "the bundle directory")
    .requiredOption("--proof <dir>", "directory with proof.json and public.json (and optionally output.json)")
    .action(async (dir: string, o) => {
      await guarded(async () => {
        // A missing file is the user's mistake (exit 1); exit 3 is for a proof that was read and is invalid.
        for (const need of [o.proof, path.join(o.proof, "proof.json"), path.join(o.proof, "public.json")]) {
          if (!fs.existsSync(need)) throw new ZkmlError("BAD_INPUT", `${need} not found`);
        }
        const { verifyBundle } = await import("./bundle");
        const r = await verifyBundle(dir, o.proof);
        if (!r.ok) {
          process.stderr.write(`verification FAILED: ${r.reason}\n`);
          return 3;
        }
        process.stdout.write(`proof verifies; output ${JSON.stringify(r.outputs ?? r.output)}\n`);
      });
    });

  const ceremony = zkml
    .command("ceremony")
    .description("phase-2 trusted setup ceremony of a bundle: contribute, apply a beacon, verify");

  ceremony
    .command("contribute")
    .description(
      "add a secret phase-2 contribution to the bundle's zkey; re-exports the verification key and " +
        "Verifier.sol (a verifier deployed before no longer matches)",
    )
    .argument("<bundleDir>", "the bundle directory")
    .option(
      "--name <name>",
      "contributor name recorded in the zkey and manifest (max 64 characters)",
      "anonymous",
    )
    .option("--entropy <text>", "extra entropy (OS randomness is always mixed in; default: random)")
    .action(async (dir: string, o) => {
      await guarded(async () => {
        const { contributeToBundle } = await import("./ceremony/phase2");
        const { loadManifest } = await import("./bundle");
        const c = await contributeToBundle(dir, { name: o.name, entropy: o.entropy, log: progress });
        const n = loadManifest(dir).phase2?.contributions.length ?? 0;
        process.stdout.write(
          `contribution #${n} '${c.name}' added to ${dir}\ncontribution hash: ${c.hash}\n` +
            `keep this hash: \`opg zkml ceremony verify\` lists it when your contribution is in the zkey\n`,
        );
      });
    });

  ceremony
    .command("beacon")
    .description("apply a public random beacon to the bundle's zkey (normally to close a ceremony)")
    .argument("<bundleDir>", "the bundle directory")
    .argument("<hex>", "the beacon value in hex (e.g. a future block hash announced in advance)")
    .argument("<iterationsExp>", "hash the beacon 2^n times (10 to 63)", intOption("iterationsExp", 10, 63))
    .option("--name <name>", "name recorded for the beacon", "beacon")
    .action(async (dir: string, hex: string, exp: number, o) => {
      await guarded(async () => {
        const { beaconToBundle } = await import("./ceremony/phase2");
        const c = await beaconToBundle(dir, hex, exp, { name: o.name, log: progress });
        process.stdout.write(`beacon '${c.name}' applied to ${dir}\ncontribution hash: ${c.hash}\n`);
      });
    });

  ceremony
    .command("verify")
    .description(
      "verify the bundle's zkey against its r1cs and ptau, and report who could forge proofs; " +
        "exit 0 when the zkey verifies, 3 otherwise",
    )
    .argument("<bundleDir>", "the bundle directory")
    .option("--ptau <file>", "the phase-1 file (default: the one the manifest records, when on this machine)")
    .option("--json", "print the full report as JSON")
    .action(async (dir: string, o) => {
      await guarded(async () => {
        const { loadManifest } = await import("./bundle");
        const { checkSetup } = await import("./ceremony/trust");
        const m = loadManifest(dir);
        if (!m.artifacts.zkey) {
          throw new ZkmlError(
            "BUNDLE",
            `bundle ${dir} was compiled without setup (--no-setup): it has no zkey`,
          );
        }
        const r = await checkSetup(dir, { ptau: o.ptau, log: progress });
        if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
        else printReport(r);
        if (r.zkey.verified === null) {
          throw new ZkmlError("CEREMONY", `cannot verify the zkey: ${r.zkey.reason}; pass --ptau <file>`);
        }
        if (!r.zkey.verified || r.zkey.verificationKeyMatches === false || r.zkey.artifactProblems.length) {
          process.stderr.write(
            `setup verification FAILED: ${
              !r.zkey.verified
                ? r.zkey.reason
                : r.zkey.artifactProblems.length
                  ? `bundle artifacts differ from the manifest: ${r.zkey.artifactProblems.join("; ")}`
                  : "verification_key.json or Verifier.sol is not derived from the zkey"
            }\n`,
          );
          return 3;
        }
      });
    });
}
