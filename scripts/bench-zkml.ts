/**
 * ZKML benchmark: `npm run bench:zkml`. Timings in a plain Node process; verifier gas on an in-process
 * Hardhat chain loaded at the end.
 *
 * Per model: constraints, the baseline with weights as private signals (one more constraint per weight
 * multiply), their ratio, compile / setup / prove (cold and warm) / verify times, proof size, verifier gas,
 * and for the digits fixtures the quantized-vs-onnxruntime argmax agreement on the held-out split.
 * BENCH_MODELS=iris_mlp,digits_mlp limits the run; results also go to build/bench-zkml.json.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { InterfaceAbi } from "ethers";
import { compileSolidity } from "./lib/solidity";
import {
  CompileOptions,
  compileModel,
  executeQuantized,
  loadProgram,
  proveBundle,
  referenceSession,
  releaseProver,
  taskBinding,
  verifierCalldata,
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
  const gasJobs: {
    row: number;
    verifier: { abi: unknown[]; bytecode: string };
    calldata: ReturnType<typeof verifierCalldata>;
  }[] = [];
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
    gasJobs.push({
      row: rows.length,
      verifier: compileSolidity(
        fs.readFileSync(path.join(dir, "Verifier.sol"), "utf8"),
        manifest.verifierContract!,
      ),
      calldata: verifierCalldata(last.proof, last.publicSignals),
    });

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
      verifierGas: "-",
      argmaxAgreement: agreement,
    });
    console.error(JSON.stringify(rows[rows.length - 1]));
  }
  await releaseProver();
  // Hardhat's in-process chain is loaded only now: with it running, proving on 2 cores is ~60% slower, and
  // the proving times above are meant to be those of a worker process.
  const { ethers } = await import("hardhat");
  const [signer] = await ethers.getSigners();
  for (const job of gasJobs) {
    const verifier = await new ethers.ContractFactory(
      job.verifier.abi as InterfaceAbi,
      job.verifier.bytecode,
      signer,
    ).deploy();
    const { a, b, c, pubSignals } = job.calldata;
    rows[job.row].verifierGas = Number(
      await verifier.getFunction("verifyProof").estimateGas(a, b, c, pubSignals),
    );
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

main().catch(async (e) => {
  console.error(e);
  await releaseProver();
  process.exitCode = 1;
});
