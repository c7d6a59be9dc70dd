/**
 * ZKML benchmark: `npm run bench:zkml`. Timings in a plain Node process; gas on an in-process Hardhat chain
 * loaded at the end, where the protocol is deployed and each model registered with its verification key.
 *
 * Per model: constraints, the baseline with weights as private signals (one more constraint per weight
 * multiply), their ratio, compile / setup / prove (cold and warm) / verify times, proving key size, proof
 * size, the gas of `TaskRegistry.submitResult` (the protocol's Groth16 verifier against the registered key,
 * plus settlement; a node's and a royalty receiver's first settlement excluded), peak memory, and where the
 * model has held-out data the quantized-vs-onnxruntime argmax agreement.
 *
 * Compiling and proving each run in a child process of their own, so that each one's peak resident set size
 * (getrusage's maxRSS) is that stage's alone: "setup" is the compile process's peak (quantization, code
 * generation and the trusted setup; circom runs as a process of its own and is not counted), "prove" the
 * prover's (the proving key and witness generator in memory, snarkjs's worker threads, one cold proof, the
 * warm ones and a verification).
 *
 * A row is one entry in MODELS: an ONNX file (or a function that writes one), compile options, the input
 * proved, and optionally an agreement function. BENCH_MODELS=iris_mlp,digits_mlp limits the run (names are
 * matched by prefix); results also go to build/bench-zkml.json.
 */
import { fork } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ethers as ethersLib, type Signer } from "ethers";
import { DEFAULT_ECONOMY_PARAMS, deployProtocol } from "../network/deploy";
import { registerBundle } from "../network/register-model";
import { bundleArchiveId, packBundle } from "../workers/data/bundle-archive";
import { parseSubmitted, proofWords, TOPICS } from "../workers/runtime/tasks";
import {
  type BundleManifest,
  type CompileOptions,
  type ProofResult,
  compileModel,
  executeQuantized,
  inputWords,
  loadManifest,
  loadProgram,
  namedOutputs,
  proveBundle,
  referenceOutputs,
  referenceSession,
  releaseProver,
  taskBinding,
  verifyBundle,
} from "../zkml";
import { buildOnnx, mlpSpec } from "../zkml/onnx/builder";
import {
  TABULAR_FIXTURES,
  type TabularFixture,
  tabularFile,
  tabularShape,
  tabularTestData,
} from "./lib/tabular-fixtures";

const ROOT = path.join(__dirname, "..");
const FIXTURES = path.join(ROOT, "test", "fixtures", "models");
const OUT = path.join(ROOT, "build", "bench-zkml");
const WARM_RUNS = 5;

/** A quantized-vs-reference comparison for the table, e.g. "98/100 (98.0%)". */
type Agreement = (bundle: { dir: string; onnx: string }) => Promise<string>;

interface BenchModel {
  name: string;
  /** The ONNX file, or a function that writes one (a generated model) and returns its path. */
  onnx: string | (() => string);
  /** Compile options (the bench adds its log and, for prove: false, skipSetup). */
  options?: CompileOptions;
  /** The input proved: real values, flat, in the model's input order. */
  sample: () => number[];
  /** Quantized-vs-reference agreement on held-out data; "-" in the table when absent. */
  agreement?: Agreement;
  /** false: constraints only (no setup, no proof). */
  prove?: boolean;
}

/** A held-out split as the fixture generators write it: each model input is a stored row times `scale`. */
interface HeldOut {
  scale: number;
  inputs: number[][];
  labels: number[];
}

function heldOut(file: string): HeldOut & { row: (i: number) => number[] } {
  const data = JSON.parse(fs.readFileSync(path.join(FIXTURES, file), "utf8")) as HeldOut;
  return { ...data, row: (i) => data.inputs[i].map((v) => v * data.scale) };
}

const argmax = (v: readonly number[]): number => v.indexOf(Math.max(...v));

/**
 * The fraction of a held-out split whose quantized argmax (the fixed-point executor, which equals the circuit
 * bit for bit) is onnxruntime's argmax on the float model.
 */
function argmaxAgreement(data: ReturnType<typeof heldOut>): Agreement {
  return async ({ dir, onnx }) => {
    const program = loadProgram(dir);
    const shape = loadManifest(dir).input.shape;
    const ref = await referenceSession(onnx);
    let agree = 0;
    for (let i = 0; i < data.inputs.length; i++) {
      const x = data.row(i);
      if (argmax(executeQuantized(program, x).output) === argmax(await ref(x, shape))) agree++;
    }
    const n = data.inputs.length;
    return `${agree}/${n} (${((100 * agree) / n).toFixed(1)}%)`;
  };
}

const digits = heldOut("digits_test.json");
const digits28 = heldOut("large_digits28_test.json");

function mnistModel(): string {
  fs.mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, "mnist_mlp_784_32_10.onnx");
  fs.writeFileSync(file, buildOnnx(mlpSpec([784, 32, 10], 2024)));
  return file;
}

// Pixels in [0, 1] at scale 2^6 fit 8 signed bits; 784 inputs go behind a Poseidon commitment.
const PIXELS_8BIT: CompileOptions = { scaleBits: 6, inputBits: 8, inputMode: "commitment" };

/**
 * A tabular (ONNX-ML) or time-series fixture's agreement with onnxruntime on every held-out row it ships:
 * labels equal (argmax of the logits for the CNN) and the largest score difference.
 */
function tabularAgreement(f: TabularFixture): Agreement {
  return async ({ dir, onnx }) => {
    const program = loadProgram(dir);
    const data = tabularTestData(f);
    const ref = await referenceOutputs(onnx);
    let agree = 0;
    let worst = 0;
    for (const x of data.inputs) {
      const ours = namedOutputs(program, executeQuantized(program, x).output);
      const theirs = await ref(x, tabularShape(data));
      const a = ours[f.scores] as number[];
      const b = theirs[f.scores] as number[];
      a.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[i]))));
      if (f.label) agree += JSON.stringify(ours[f.label]) === JSON.stringify(theirs[f.label]) ? 1 : 0;
      else agree += argmax(a) === argmax(b) ? 1 : 0;
    }
    const kind = f.label ? "labels" : f.scores === "logits" ? "argmax" : "rows";
    return `${kind} ${agree}/${data.inputs.length}, max |d ${f.scores}| ${worst.toExponential(1)}`;
  };
}

/** The tree-ensemble, linear and 1-D CNN fixtures (scripts/lib/tabular-fixtures.ts), as they are served. */
const TABULAR_MODELS: BenchModel[] = TABULAR_FIXTURES.map((f) => ({
  name: `${f.name} (${f.kind})`,
  onnx: tabularFile(f),
  options: { ...f.options, inputMode: "inline" },
  sample: () => tabularTestData(f).inputs[0],
  agreement: tabularAgreement(f),
}));

const MODELS: BenchModel[] = [
  {
    name: "iris_mlp (4-8-3)",
    onnx: path.join(FIXTURES, "iris_mlp.onnx"),
    sample: () => [0.3, -1.2, 0.8, 0.5],
  },
  {
    name: "digits_mlp (64-32-16-10)",
    onnx: path.join(FIXTURES, "digits_mlp.onnx"),
    options: { scaleBits: 8, inputBits: 10 },
    sample: () => digits.row(0),
    agreement: argmaxAgreement(digits),
  },
  {
    name: "digits_cnn (conv-pool-gemm)",
    onnx: path.join(FIXTURES, "digits_cnn.onnx"),
    options: { scaleBits: 8, inputBits: 10 },
    sample: () => digits.row(0),
    agreement: argmaxAgreement(digits),
  },
  {
    name: "mnist_mlp (784-32-10, s=6, 8-bit inputs)",
    onnx: mnistModel,
    options: PIXELS_8BIT,
    sample: () => Array.from({ length: 784 }, (_, i) => ((i * 37) % 17) / 16),
  },
  {
    name: "mnist_mlp (784-32-10, s=8, 10-bit inputs)",
    onnx: mnistModel,
    options: { scaleBits: 8, inputBits: 10, inputMode: "commitment" },
    sample: () => Array.from({ length: 784 }, (_, i) => ((i * 37) % 17) / 16),
    prove: process.env.BENCH_FULL === "1",
  },
  {
    // trained on sklearn's digits upsampled to 28x28 (scripts/fixtures/make_large.py)
    name: "mnist_mlp_784_56_10 (trained, s=6, 8-bit inputs)",
    onnx: path.join(FIXTURES, "mnist_mlp_784_56_10.onnx"),
    options: PIXELS_8BIT,
    sample: () => digits28.row(0),
    agreement: argmaxAgreement(digits28),
  },
  {
    // 118k constraints: its setup needs a 2^17 ptau, which takes over an hour to generate on 2 cores
    name: "lenet5_28 (trained, s=6, 8-bit inputs)",
    onnx: path.join(FIXTURES, "lenet5_28.onnx"),
    options: PIXELS_8BIT,
    sample: () => digits28.row(0),
    agreement: argmaxAgreement(digits28),
    prove: process.env.BENCH_FULL === "1",
  },
  ...TABULAR_MODELS,
];

/** Work done in a child process: its peak RSS is the stage's own. */
type StageJob =
  | { stage: "compile"; onnx: string; dir: string; options: CompileOptions }
  | { stage: "prove"; dir: string; sample: number[]; binding: bigint };

interface ProveRuns {
  cold: ProofResult;
  warm: ProofResult["timings"][];
  last: ProofResult;
  /** Verifying the last proof in the warm process. */
  verifyMs: number;
}

interface StageResult<T> {
  result: T;
  /** Peak resident set size of the child, MiB. */
  maxRssMiB: number;
}

async function runStage(job: StageJob): Promise<BundleManifest | ProveRuns> {
  if (job.stage === "compile") {
    const log = (x: string) => console.error(`  ${x}`);
    return compileModel(job.onnx, job.dir, { ...job.options, log });
  }
  const opts = { reference: false, checkHashes: false };
  const cold = await proveBundle(job.dir, job.sample, job.binding, opts);
  const warm: ProofResult["timings"][] = [];
  let last = cold;
  for (let i = 0; i < WARM_RUNS; i++) {
    last = await proveBundle(job.dir, job.sample, job.binding, opts);
    warm.push(last.timings);
  }
  const tv = Date.now();
  const v = await verifyBundle(job.dir, last);
  const verifyMs = Date.now() - tv;
  if (!v.ok) throw new Error(`${job.dir}: proof did not verify: ${v.reason}`);
  return { cold, warm, last, verifyMs };
}

/** Runs one stage in a child process (this script, under ts-node) and returns its result and peak RSS. */
function inChild<T>(job: StageJob): Promise<StageResult<T>> {
  const child = fork(__filename, [], {
    execArgv: ["-r", require.resolve("ts-node/register/transpile-only")],
    env: { ...process.env, BENCH_ZKML_STAGE: "1" },
    serialization: "advanced",
  });
  return new Promise((resolve, reject) => {
    let reply: { ok: true; value: StageResult<T> } | { ok: false; error: string } | undefined;
    child.on("message", (m) => (reply = m as typeof reply));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (reply?.ok) resolve(reply.value);
      else reject(new Error(reply?.error ?? `${job.stage} child exited with code ${code}`));
    });
    child.send(job);
  });
}

function stageChild(): void {
  process.once("message", (job: StageJob) => {
    runStage(job)
      .then(async (result) => {
        await releaseProver();
        // maxRSS is in kilobytes
        const maxRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
        process.send!({ ok: true, value: { result, maxRssMiB } }, () => process.exit(0));
      })
      .catch((e: Error) => process.send!({ ok: false, error: e.stack ?? String(e) }, () => process.exit(1)));
  });
}

const s = (ms: number | null): string => (ms === null ? "-" : `${(ms / 1000).toFixed(2)} s`);
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const only = process.env.BENCH_MODELS?.split(",");
  const rows: Record<string, string | number>[] = [];
  const gasJobs: { row: number; dir: string; sample: number[] }[] = [];
  const binding = taskBinding(
    31337n,
    "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    1n,
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  );
  const load = (): string =>
    os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ");
  const loadAtStart = load();
  for (const m of MODELS) {
    if (only && !only.some((o) => m.name.startsWith(o))) continue;
    const onnx = typeof m.onnx === "string" ? m.onnx : m.onnx();
    const dir = path.join(OUT, m.name.replace(/[^A-Za-z0-9]+/g, "_"));
    console.error(`\n== ${m.name} (load average ${load()})`);
    const setup = await inChild<BundleManifest>({
      stage: "compile",
      onnx,
      dir,
      options: { ...m.options, skipSetup: m.prove === false },
    });
    const manifest = setup.result;
    const agreement = m.agreement ? await m.agreement({ dir, onnx }) : "-";
    const row: Record<string, string | number> = {
      model: m.name,
      constraints: manifest.constraints,
      baseline: manifest.baselineConstraints,
      ratio: (manifest.constraints / manifest.baselineConstraints).toFixed(3),
      publicSignals: manifest.publicSignals.bindingIndex + 1,
      compile: s(manifest.buildTimings.circomMs),
    };
    if (m.prove === false) {
      rows.push({ ...row, setup: "not run (BENCH_FULL=1)", argmaxAgreement: agreement });
      console.error(JSON.stringify(rows[rows.length - 1]));
      continue;
    }
    const x = m.sample();
    const proved = await inChild<ProveRuns>({ stage: "prove", dir, sample: x, binding });
    const { cold, warm, last, verifyMs } = proved.result;
    const median = (k: "witnessMs" | "proveMs"): number =>
      warm.map((r) => r[k]).sort((p, q) => p - q)[Math.floor(WARM_RUNS / 2)];

    // Gas is measured after every timing, so the timings come from a plain Node process (see below).
    gasJobs.push({ row: rows.length, dir, sample: x });
    const ptauMs = manifest.buildTimings.ptauMs;
    rows.push({
      ...row,
      publicSignals: last.publicSignals.length,
      setup: s(manifest.buildTimings.setupMs),
      zkey: mib(fs.statSync(path.join(dir, manifest.artifacts.zkey!.file)).size),
      ptau: `2^${manifest.ptau?.power}${ptauMs && ptauMs > 1000 ? ` (generated ${s(ptauMs)})` : ""}`,
      proveCold: s(cold.timings.witnessAndProveMs),
      witnessWarm: s(median("witnessMs")),
      proveWarm: s(median("proveMs")),
      verify: s(verifyMs),
      proofSize: `${JSON.stringify(last.proof).length} B json, 256 B raw`,
      submitResultGas: "-",
      argmaxAgreement: agreement,
      peakRss: `setup ${setup.maxRssMiB} MiB, prove ${proved.maxRssMiB} MiB`,
    });
    console.error(JSON.stringify(rows[rows.length - 1]));
  }
  await releaseProver();
  // Hardhat's in-process chain is loaded only now: with it running, proving on 2 cores is ~60% slower, and
  // the proving times above are meant to be those of a worker process.
  const { ethers } = await import("hardhat");
  const [deployer, node] = await ethers.getSigners();
  if (gasJobs.length > 0) {
    const gas = await submitResultGas(deployer, node, gasJobs);
    for (const [i, job] of gasJobs.entries()) rows[job.row].submitResultGas = gas[i];
    await releaseProver();
  }
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const table = [
    `| ${cols.join(" | ")} |`,
    `| ${cols.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${cols.map((c) => r[c] ?? "-").join(" | ")} |`),
  ].join("\n");
  console.log(
    `\nZKML benchmark (${process.platform}, ${os.cpus().length} cores, ${mib(os.totalmem())} memory, ` +
      `node ${process.version}; load average ${loadAtStart} at start, ${load()} at end)\n`,
  );
  console.log(table);
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(ROOT, "build", "bench-zkml.json"), JSON.stringify(rows, null, 2));
}

/**
 * Gas of `TaskRegistry.submitResult` per bundle on a fresh protocol deployment: each model registered with its
 * verification key, two tasks submitted and claimed by `node`; the first settled (so that no first-credit
 * storage costs land in the figure), the second's settlement estimated.
 */
async function submitResultGas(deployer: Signer, node: Signer, jobs: { dir: string; sample: number[] }[]) {
  const treasury = await deployer.getAddress();
  const { token, staking, models, tasks } = await deployProtocol(deployer, {
    ...DEFAULT_ECONOMY_PARAMS,
    treasury,
  });
  const stake = ethersLib.parseEther("5000");
  await (await token.transfer(await node.getAddress(), stake)).wait();
  await (await token.connect(node).approve(await staking.getAddress(), stake)).wait();
  await (await staking.connect(node).register(1, "http://bench.local")).wait();
  await (await staking.connect(node).stake(stake)).wait();
  await (await token.approve(await tasks.getAddress(), ethersLib.MaxUint256)).wait();
  const fee = ethersLib.parseEther("1");
  const out: number[] = [];
  for (const job of jobs) {
    const manifest = loadManifest(job.dir);
    const bundleId = bundleArchiveId(packBundle(job.dir));
    const { modelId } = await registerBundle(deployer, models, job.dir, { bundleId, fee });
    const q = executeQuantized(loadProgram(job.dir), job.sample);
    const commitment = manifest.publicSignals.inputMode === "commitment";
    const settle = async (send: boolean) => {
      const now = (await deployer.provider!.getBlock("latest"))!.timestamp;
      const receipt = await (
        await tasks.submitTask({
          modelId,
          input: inputWords(manifest, q.input),
          inputDataHash: commitment ? ethersLib.id(JSON.stringify(q.input.map(String))) : ethersLib.ZeroHash,
          fee,
          deadline: now + 3600,
          callback: ethersLib.ZeroAddress,
          callbackGasLimit: 0,
        })
      ).wait();
      const t = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
      const binding = BigInt(await tasks.taskBinding(t.taskId, await node.getAddress()));
      const proved = await proveBundle(job.dir, job.sample, binding, {
        reference: false,
        checkHashes: false,
      });
      const outputs = proved.publicSignals.slice(0, manifest.publicSignals.outputWords);
      const args = [t.taskId, t.task, t.input, outputs, proofWords(proved.proof)] as const;
      if (send) await (await tasks.connect(node).submitResult(...args)).wait();
      else out.push(Number(await tasks.connect(node).submitResult.estimateGas(...args)));
    };
    await settle(true);
    await settle(false);
  }
  return out;
}

if (process.env.BENCH_ZKML_STAGE === "1") {
  stageChild();
} else {
  main().catch(async (e) => {
    console.error(e);
    await releaseProver();
    process.exitCode = 1;
  });
}
