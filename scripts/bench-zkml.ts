/**
 * ZKML benchmark: `npm run bench:zkml`. Timings in a plain Node process; gas on an in-process Hardhat chain
 * loaded at the end, where the protocol is deployed and each model registered with its verification key.
 *
 * Per model: constraints, the baseline with weights as private signals (one more constraint per weight
 * multiply), their ratio, compile / setup / prove (cold and warm) / verify times, proof size, the gas of
 * `TaskRegistry.submitResult` (the protocol's Groth16 verifier against the registered key, plus settlement;
 * a node's and a royalty receiver's first settlement excluded), and for the digits fixtures the
 * quantized-vs-onnxruntime argmax agreement on the held-out split.
 * BENCH_MODELS=iris_mlp,digits_mlp limits the run; results also go to build/bench-zkml.json.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ethers as ethersLib, type Signer } from "ethers";
import { DEFAULT_ECONOMY_PARAMS, deployProtocol } from "./lib/deploy";
import { registerBundle } from "./lib/register-model";
import { bundleArchiveId, packBundle } from "../workers/data/bundle-archive";
import { parseSubmitted, proofWords, TOPICS } from "../workers/runtime/tasks";
import {
  CompileOptions,
  compileModel,
  executeQuantized,
  inputWords,
  loadManifest,
  loadProgram,
  proveBundle,
  referenceSession,
  releaseProver,
  taskBinding,
  verifyBundle,
} from "../zkml";
import { buildOnnx, mlpSpec } from "../zkml/onnx/builder";

const ROOT = path.join(__dirname, "..");
const FIXTURES = path.join(ROOT, "test", "fixtures", "models");
const OUT = path.join(ROOT, "build", "bench-zkml");

interface BenchModel {
  name: string;
  file: string;
  shape: number[];
  options: CompileOptions;
  sample: () => number[];
  agreement?: boolean;
  /** false: report constraints only (no setup, no proof) */
  prove?: boolean;
}

const digits = JSON.parse(fs.readFileSync(path.join(FIXTURES, "digits_test.json"), "utf8")) as {
  scale: number;
  inputs: number[][];
};
const digit = (i: number): number[] => digits.inputs[i].map((v) => v * digits.scale);

function mnistModel(): string {
  fs.mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, "mnist_mlp_784_32_10.onnx");
  fs.writeFileSync(file, buildOnnx(mlpSpec([784, 32, 10], 2024)));
  return file;
}

const MODELS: BenchModel[] = [
  {
    name: "iris_mlp (4-8-3)",
    file: path.join(FIXTURES, "iris_mlp.onnx"),
    shape: [1, 4],
    options: {},
    sample: () => [0.3, -1.2, 0.8, 0.5],
  },
  {
    name: "digits_mlp (64-32-16-10)",
    file: path.join(FIXTURES, "digits_mlp.onnx"),
    shape: [1, 64],
    options: { scaleBits: 8, inputBits: 10 },
    sample: () => digit(0),
    agreement: true,
  },
  {
    name: "digits_cnn (conv-pool-gemm)",
    file: path.join(FIXTURES, "digits_cnn.onnx"),
    shape: [1, 1, 8, 8],
    options: { scaleBits: 8, inputBits: 10 },
    sample: () => digit(0),
    agreement: true,
  },
  {
    // pixels in [0, 1] at scale 2^6 fit 8 signed bits; inputs behind a Poseidon commitment
    name: "mnist_mlp (784-32-10, s=6, 8-bit inputs)",
    file: "",
    shape: [1, 784],
    options: { scaleBits: 6, inputBits: 8, inputMode: "commitment" },
    sample: () => Array.from({ length: 784 }, (_, i) => ((i * 37) % 17) / 16),
  },
  {
    name: "mnist_mlp (784-32-10, s=8, 10-bit inputs)",
    file: "",
    shape: [1, 784],
    options: { scaleBits: 8, inputBits: 10, inputMode: "commitment" },
    sample: () => Array.from({ length: 784 }, (_, i) => ((i * 37) % 17) / 16),
    prove: process.env.BENCH_FULL === "1",
  },
];

const s = (ms: number | null): string => (ms === null ? "-" : `${(ms / 1000).toFixed(2)} s`);

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
  for (const m of MODELS) {
    if (only && !only.some((o) => m.name.startsWith(o))) continue;
    const file = m.file || mnistModel();
    const dir = path.join(OUT, m.name.replace(/[^A-Za-z0-9]+/g, "_"));
    console.error(`\n== ${m.name}`);
    const manifest = await compileModel(file, dir, {
      ...m.options,
      skipSetup: m.prove === false,
      log: (x) => console.error(`  ${x}`),
    });
    if (m.prove === false) {
      rows.push({
        model: m.name,
        constraints: manifest.constraints,
        baseline: manifest.baselineConstraints,
        ratio: (manifest.constraints / manifest.baselineConstraints).toFixed(3),
        publicSignals: manifest.publicSignals.bindingIndex + 1,
        compile: s(manifest.buildTimings.circomMs),
        setup: "not run (BENCH_FULL=1)",
      });
      continue;
    }
    const x = m.sample();
    const cold = await proveBundle(dir, x, binding, { reference: false, checkHashes: false });
    const warmRuns: { witnessMs: number; proveMs: number }[] = [];
    let last = cold;
    for (let i = 0; i < 5; i++) {
      last = await proveBundle(dir, x, binding, { reference: false, checkHashes: false });
      warmRuns.push(last.timings);
    }
    const median = (k: "witnessMs" | "proveMs"): number => warmRuns.map((r) => r[k]).sort((p, q) => p - q)[2];
    const tv = Date.now();
    const v = await verifyBundle(dir, last);
    const verifyMs = Date.now() - tv;
    if (!v.ok) throw new Error(`${m.name}: proof did not verify: ${v.reason}`);

    // Gas is measured after every timing, so the timings come from a plain Node process (see below).
    gasJobs.push({ row: rows.length, dir, sample: x });

    let agreement = "-";
    if (m.agreement) {
      const program = loadProgram(dir);
      const ref = await referenceSession(file);
      let agree = 0;
      for (let i = 0; i < digits.inputs.length; i++) {
        const q = executeQuantized(program, digit(i)).output;
        const r = await ref(digit(i), m.shape);
        if (q.indexOf(Math.max(...q)) === r.indexOf(Math.max(...r))) agree++;
      }
      agreement = `${agree}/${digits.inputs.length} (${((100 * agree) / digits.inputs.length).toFixed(1)}%)`;
    }
    const nPub = last.publicSignals.length;
    rows.push({
      model: m.name,
      constraints: manifest.constraints,
      baseline: manifest.baselineConstraints,
      ratio: (manifest.constraints / manifest.baselineConstraints).toFixed(3),
      publicSignals: nPub,
      compile: s(manifest.buildTimings.circomMs),
      setup: s(manifest.buildTimings.setupMs),
      ptau: `2^${manifest.ptau?.power}${manifest.buildTimings.ptauMs && manifest.buildTimings.ptauMs > 1000 ? ` (generated ${s(manifest.buildTimings.ptauMs)})` : ""}`,
      proveCold: s(cold.timings.witnessAndProveMs),
      witnessWarm: s(median("witnessMs")),
      proveWarm: s(median("proveMs")),
      verify: s(verifyMs),
      proofSize: `${JSON.stringify(last.proof).length} B json, 256 B raw`,
      submitResultGas: "-",
      argmaxAgreement: agreement,
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
  const cols = Object.keys(rows[0] ?? {});
  const table = [
    `| ${cols.join(" | ")} |`,
    `| ${cols.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${cols.map((c) => r[c] ?? "-").join(" | ")} |`),
  ].join("\n");
  console.log(`\nZKML benchmark (${process.platform}, ${os.cpus().length} cores, node ${process.version})\n`);
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
      await (await tasks.connect(node).claimTask(t.taskId, t.task)).wait();
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

main().catch(async (e) => {
  console.error(e);
  await releaseProver();
  process.exitCode = 1;
});
