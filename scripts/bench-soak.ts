/**
 * npm run bench:soak — the end-to-end soak of issue 19 (item 11): the optimistic and TEE games played by real
 * worker processes, under faults, on a real `hardhat node`, with every OPG accounted for.
 *
 * Network: a `hardhat node`, the protocol deployed on it, a data node, and worker processes (`opg node ...`)
 * reaching the chain through TCP proxies that the soak cuts (scripts/lib/rpc-proxy.ts).
 *
 * Parties (mnemonic account index in brackets):
 * - A [5]  honest inference node, development enclave (serves optimistic and TEE tasks);
 * - B [6]  inference node that lies (`--fault-lie-every 2`: a wrong output on every even optimistic task id);
 * - C [7]  honest inference node with a development enclave, killed with SIGKILL right after it posts a round's
 *          results and left silent until the next round;
 * - J [8]  inference node played by this script: posts junk (wrong outputs, no attestation), posts a correct
 *          result nobody attested, and abandons a claim (one of each per round);
 * - V1 [10], V2 [11]  honest verification nodes (real processes): attest off chain, prove lies wrong on the
 *          circuit model, challenge lies on the model without a circuit by bond and vote, vote, resolve, settle;
 * - D1 [12] verification node played by this script: challenges correct results (a bonded vote on the model
 *          without a circuit, which it loses; on the circuit model its challenges revert);
 * - D2 [13] verification node played by this script: its `POST /attest` signs any outputs (lies included), and
 *          it votes for the lies it signed;
 * - requester [1], model owner [2], keeper [3] (holds no OPG: sends what anyone may send, when workers did
 *   not), treasury [0] (the deployer).
 *
 * Load: rounds of 28 tasks (12 optimistic on a circuit model, iris MLP; 8 optimistic on a model without a
 * circuit, the same MLP as a plain bundle, whose disputes are votes; 8 TEE on a plain transformer bundle), 4
 * rounds by default (OPG_SOAK_ROUNDS), and 2 tasks with a deadline too close to serve (refunded). Each round
 * injects faults (RPC cuts, SIGKILL of inference and verification nodes while disputes are open, a silent
 * node), then the chain's clock is moved past challenge and vote windows (evm_increaseTime) until every task
 * is final. The clock moves only once no worker has anything left that a window would have let it do: no
 * honest claim unposted, every result in its window checked by every running verification node, every vote
 * cast by them (a wait past 4 minutes moves it anyway and is reported). The report (markdown on stdout): tasks by mode and final state, faults injected and how each
 * ended, every party's wealth (wallet + bonded + unbonding + registry credits + unpaid dispute rewards; the
 * treasury's protocol fees held by the registry too) at start and end, and the checks; exit 1 if one fails.
 *
 * The workers run the compiled CLI (dist/), rebuilt first when a source is newer (test/helpers/cli.ts).
 * OPG_SOAK_ROUNDS (default 4), OPG_SOAK_SEED (default 19), OPG_SOAK_REPORT (also write the report to this
 * file), OPG_E2E_VERBOSE (print every worker log line). Worker logs go to <tmp>/soak.log.
 */
import fs from "node:fs";
import path from "node:path";
import pino from "pino";
import { ethers, getBytes, type Log, type Wallet } from "ethers";
import { executeQuantized, inputWords, loadManifest, loadProgram, packValues } from "../zkml";
import {
  loadPlainManifest,
  packagePlainModel,
  plainOutputWords,
  quantizePlainInput,
  runPlainBundle,
  type PlainBundleManifest,
} from "../zkml/plain-bundle";
import { bundleArchiveId, packBundle } from "../workers/data/bundle-archive";
import { DataClient } from "../workers/data/client";
import { attestersOf, corruptOutputWords, outputsHash } from "../workers/runtime/optimistic";
import { ServiceHttp } from "../workers/runtime/service";
import {
  MODES,
  parseSubmitted,
  readVerifiedResult,
  TOPICS,
  type SubmittedTask,
} from "../workers/runtime/tasks";
import { parseAttestRequest } from "../workers/verification/attest";
import { ensureCliBuilt } from "../test/helpers/cli";
import { bundleKeyWords, bundleModelSpec, sendRegistration } from "../network/register-model";
import { RpcProxy } from "./lib/rpc-proxy";
import {
  account,
  fixtureBundle,
  freePort,
  sleep,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  waitForLog,
  type Proc,
} from "../network/local-network";

const ROUNDS = Number(process.env.OPG_SOAK_ROUNDS ?? 4);
const SEED = Number(process.env.OPG_SOAK_SEED ?? 19);
const REPORT_FILE = process.env.OPG_SOAK_REPORT;

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const TRANSFORMER = "test/fixtures/models/digits_transformer.onnx";
const OPG = (n: number | string) => ethers.parseEther(String(n));
const FEE = OPG(1);
const TASK_LIFETIME = 4 * 3600;
/** Verification nodes finalise results they attested this long after the window (their default, explicit). */
const FINALIZE_AFTER = 300;
/** How long a wait for the workers to react may last before the soak moves on (and reports stragglers). */
const QUIET_TIMEOUT_MS = 240_000;
const PER_ROUND = { circuit: 12, plain: 8, tee: 8 };

const IDX = {
  treasury: 0,
  requester: 1,
  owner: 2,
  keeper: 3,
  A: 5,
  B: 6,
  C: 7,
  J: 8,
  V1: 10,
  V2: 11,
  D1: 12,
  D2: 13,
} as const;
type PartyName = keyof typeof IDX;
const INFERENCE_WORKERS = ["A", "B", "C"] as const;
const VERIFIERS = ["V1", "V2"] as const;
type WorkerName = (typeof INFERENCE_WORKERS)[number] | (typeof VERIFIERS)[number];

const STAKE: Record<"A" | "B" | "C" | "J" | "V1" | "V2" | "D1" | "D2", bigint> = {
  A: OPG(5000),
  B: OPG(5000),
  C: OPG(5000),
  J: OPG(3000),
  V1: OPG(8000),
  V2: OPG(8000),
  D1: OPG(2000),
  D2: OPG(4000),
};
/** OPG in the wallet besides the stake (challenge bonds). */
const WALLET: Partial<Record<PartyName, bigint>> = { V1: OPG(1000), V2: OPG(1000), D1: OPG(1500) };

const HONEST: Record<PartyName, boolean> = {
  treasury: true,
  requester: true,
  owner: true,
  keeper: true,
  A: true,
  B: false,
  C: true,
  J: false,
  V1: true,
  V2: true,
  D1: false,
  D2: false,
};
const ROLE: Record<PartyName, string> = {
  treasury: "treasury (deployer)",
  requester: "requester",
  owner: "model owner",
  keeper: "keeper (no OPG)",
  A: "inference, honest, TEE",
  B: "inference, lies",
  C: "inference, honest, TEE, silent after posting",
  J: "inference (script): junk, unattested, abandons",
  V1: "verification, honest",
  V2: "verification, honest",
  D1: "verification (script): challenges correct results",
  D2: "verification (script): attests anything",
};

const Status = {
  None: 0,
  Open: 1,
  Claimed: 2,
  Verified: 3,
  Expired: 4,
  Pending: 5,
  Disputed: 6,
  Rejected: 7,
};
const STATUS_NAME = ["None", "Open", "Claimed", "Verified", "Expired", "Pending", "Disputed", "Rejected"];
const DISPUTE_OPEN = 1n;
const DISPUTE_RESOLVED = 2n;

type Mode = "circuit" | "plain" | "tee";
/** What a task is for: an ordinary request, or a part J (or the clock) plays in it. */
type TaskRole = "normal" | "junk" | "unattested" | "abandon" | "expire";

interface TaskRec {
  taskId: bigint;
  round: number;
  mode: Mode;
  role: TaskRole;
  submitted: SubmittedTask;
  expected: bigint[];
  values: bigint[];
  packBits: number;
}

interface Fault {
  round: number;
  kind: string;
  detail: string;
  /** Filled in at the end: how it ended. */
  outcome?: string;
  ok?: boolean;
  check?: () => Promise<{ ok: boolean; outcome: string }>;
}

// ---------------------------------------------------------------- small helpers

function mulberry32(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const fmt = (wei: bigint) => {
  const neg = wei < 0n;
  const s = ethers.formatEther(neg ? -wei : wei);
  const [w, f = ""] = s.split(".");
  const frac = f.replace(/0+$/, "");
  return `${neg ? "-" : ""}${w}${frac ? "." + frac : ""}`;
};
const signed = (wei: bigint) => (wei > 0n ? `+${fmt(wei)}` : fmt(wei));

const started = Date.now();
function progress(msg: string) {
  const t = ((Date.now() - started) / 1000).toFixed(0).padStart(5);
  process.stderr.write(`[soak ${t}s] ${msg}\n`);
}

/** The custom error a failed call carries (ethers decodes it from the ABI), or its message. */
function revertName(e: unknown): string {
  const err = e as { revert?: { name?: string }; shortMessage?: string; message?: string };
  return err.revert?.name ?? err.shortMessage ?? err.message ?? String(e);
}

/** Serialises the transactions of one key (fresh nonces from the node each time). */
class Actor {
  private queue: Promise<unknown> = Promise.resolve();
  constructor(
    readonly name: PartyName,
    readonly wallet: Wallet,
  ) {}
  get address() {
    return this.wallet.address;
  }
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }
}

// ---------------------------------------------------------------- the soak

async function main() {
  progress("building the CLI the workers run (dist/) if any source is newer");
  ensureCliBuilt();
  const circuitDir = await fixtureBundle(IRIS, {}, (m) => progress(`compiling ${IRIS}: ${m}`));
  const net = await startNetwork({ onStage: (s) => progress(s) });
  const logFile = fs.createWriteStream(path.join(net.tmp, "soak.log"));
  progress(`working folder ${net.tmp} (worker logs: soak.log)`);
  const provider = net.provider;
  const { token, tasks, staking, disputes, enclaves } = net.deployment;
  const addr = {
    tasks: await tasks.getAddress(),
    staking: await staking.getAddress(),
    disputes: await disputes.getAddress(),
    enclaves: await enclaves.getAddress(),
    token: await token.getAddress(),
  };
  const wallet = (name: PartyName) => account(IDX[name]).connect(provider) as unknown as Wallet;
  const actors = Object.fromEntries(
    (Object.keys(IDX) as PartyName[]).map((n) => [n, new Actor(n, wallet(n))]),
  ) as Record<PartyName, Actor>;
  const nameOf = new Map<string, PartyName>(
    (Object.keys(IDX) as PartyName[]).map((n) => [actors[n].address, n]),
  );
  const who = (a: string) => nameOf.get(ethers.getAddress(a)) ?? a.slice(0, 10);
  const scriptErrors: string[] = [];
  const background = new Set<Promise<unknown>>();
  const inBackground = (what: string, fn: () => Promise<unknown>) => {
    const p = fn()
      .catch((e) => {
        scriptErrors.push(`${what}: ${(e as Error).message}`);
        progress(`ERROR in ${what}: ${(e as Error).message}`);
      })
      .finally(() => background.delete(p));
    background.add(p);
  };

  // ------------------------------------------------------------ models (owned by the model owner)
  progress("packaging and registering the models");
  const plainDir = path.join(net.tmp, "iris-plain");
  await packagePlainModel(path.resolve(IRIS), plainDir);
  const teeDir = path.join(net.tmp, "transformer-plain");
  await packagePlainModel(path.resolve(TRANSFORMER), teeDir);
  const owner = actors.owner.wallet;
  async function register(dir: string, modes: number, kind: "zk" | "plain") {
    const archive = packBundle(dir);
    const bundleId = bundleArchiveId(archive);
    const stored = await new DataClient(net.data.url).put(archive);
    if (stored !== bundleId) throw new Error(`data node stored ${stored}, expected ${bundleId}`);
    const manifest =
      kind === "plain"
        ? (loadPlainManifest(dir) as unknown as ReturnType<typeof loadManifest>)
        : loadManifest(dir, { checkHashes: true });
    const spec = {
      ...bundleModelSpec(manifest, { bundleId, fee: FEE, royaltyReceiver: owner.address }),
      verificationModes: modes,
    };
    const words = modes & MODES.zk ? bundleKeyWords(dir, manifest) : [];
    const event = await sendRegistration(net.deployment.models.connect(owner), spec, words);
    return event.args.modelId as bigint;
  }
  const modelOf: Record<Mode, bigint> = {
    circuit: await register(circuitDir, MODES.zk | MODES.optimistic, "zk"),
    plain: await register(plainDir, MODES.optimistic, "plain"),
    tee: await register(teeDir, MODES.tee, "plain"),
  };

  // Inputs and their true outputs, computed here once.
  const irisInputs: number[][] = JSON.parse(
    fs.readFileSync("test/fixtures/models/iris_test.json", "utf8"),
  ).inputs;
  const digits = JSON.parse(fs.readFileSync("test/fixtures/models/digits_transformer_test.json", "utf8")) as {
    scale: number;
    inputs: number[][];
  };
  const circuitManifest = loadManifest(circuitDir);
  const program = loadProgram(circuitDir);
  const plainManifest: PlainBundleManifest = loadPlainManifest(plainDir);
  const teeManifest: PlainBundleManifest = loadPlainManifest(teeDir);
  interface Sample {
    input: bigint[];
    values: bigint[];
    expected: bigint[];
    packBits: number;
  }
  const samples: Record<Mode, Sample[]> = { circuit: [], plain: [], tee: [] };
  for (const x of irisInputs) {
    const q = executeQuantized(program, x);
    const pb = circuitManifest.publicSignals.packBits;
    samples.circuit.push({
      input: inputWords(circuitManifest, q.input),
      values: q.quantized,
      expected: packValues(q.quantized, pb),
      packBits: pb,
    });
    const pq = quantizePlainInput(plainManifest, x);
    const pv = await runPlainBundle(plainDir, pq);
    samples.plain.push({
      input: packValues(pq, plainManifest.publicSignals.packBits),
      values: pv,
      expected: plainOutputWords(plainManifest, pv),
      packBits: plainManifest.publicSignals.packBits,
    });
  }
  for (const x of digits.inputs) {
    const tq = quantizePlainInput(
      teeManifest,
      x.map((v) => v * digits.scale),
    );
    const tv = await runPlainBundle(teeDir, tq);
    samples.tee.push({
      input: packValues(tq, teeManifest.publicSignals.packBits),
      values: tv,
      expected: plainOutputWords(teeManifest, tv),
      packBits: teeManifest.publicSignals.packBits,
    });
  }

  // ------------------------------------------------------------ parties: stake and funds
  progress("funding and staking the parties");
  const ports: Record<"V1" | "V2" | "D2", number> = {
    V1: await freePort(),
    V2: await freePort(),
    D2: await freePort(),
  };
  const endpoint = (n: "V1" | "V2" | "D2") => `http://127.0.0.1:${ports[n]}`;
  for (const n of ["A", "B", "C", "J"] as const) await stakeNode(net, IDX[n], 1, STAKE[n]);
  for (const n of ["V1", "V2", "D2"] as const) await stakeNode(net, IDX[n], 2, STAKE[n], endpoint(n));
  // D1 registers no endpoint: nobody asks it to attest.
  await stakeNode(net, IDX.D1, 2, STAKE.D1, "");
  for (const [n, amount] of Object.entries(WALLET) as [PartyName, bigint][])
    await (await token.connect(net.deployer).transfer(actors[n].address, amount)).wait();
  await (await token.connect(actors.D1.wallet).approve(addr.disputes, ethers.MaxUint256)).wait();
  const requester = actors.requester.wallet;
  await (await token.connect(net.deployer).transfer(requester.address, OPG(400))).wait();
  await (await token.connect(requester).approve(addr.tasks, ethers.MaxUint256)).wait();
  await (await tasks.connect(requester).deposit(OPG(200))).wait();

  const [, , challengeWindowRaw] = await tasks.modeParameters();
  const challengeWindow = Number(challengeWindowRaw);
  const voteWindow = Number(await disputes.voteWindow());
  const STEP = challengeWindow + 60;
  progress(`challenge window ${challengeWindow} s, vote window ${voteWindow} s: clock steps of ${STEP} s`);

  // ------------------------------------------------------------ D2: signs any outputs
  const d2Signed = { honest: 0, lies: 0, unknown: 0 };
  const d2Http = new ServiceHttp(pino({ level: "silent" }));
  const recs = new Map<string, TaskRec>();
  d2Http.postJson("/attest", async (body) => {
    const { taskId, node, outputs } = parseAttestRequest(body);
    const digest = await tasks.attestationDigest(taskId, node, outputsHash(outputs));
    const rec = recs.get(taskId.toString());
    if (!rec) d2Signed.unknown++;
    else if (outputsHash(outputs) === outputsHash(rec.expected)) d2Signed.honest++;
    else d2Signed.lies++;
    const signature = await actors.D2.wallet.signMessage(getBytes(digest));
    return { status: 200, body: { attester: actors.D2.address, signature } };
  });
  await d2Http.listen(ports.D2);

  // ------------------------------------------------------------ RPC proxies and worker processes
  const chainPort = Number(new URL(net.chain.url).port);
  const proxies = { inference: new RpcProxy(chainPort), verification: new RpcProxy(chainPort) };
  const proxyUrl = {
    inference: await proxies.inference.listen(),
    verification: await proxies.verification.listen(),
  };
  const warnings: Record<string, { warn: number; error: number; samples: string[] }> = {};
  /** Worker log lines that show a fault being ridden out (retries, reconnections), counted. */
  const RETRY_LINES = [
    "poll failed; backing off",
    "transient error; retrying",
    "request failed",
    "optimistic step failed; will retry",
    "stage failed; will retry",
  ];
  const retries = new Map<string, number>();
  /**
   * What each verification node has checked: `taskId:poster` of every posted result it re-executed (and
   * signed, matched or challenged). The clock is moved past a challenge window only once every running
   * verification node has checked the results posted in it, as the window's 10 minutes would let it.
   */
  const CHECK_LINES = [
    "posted result re-executed: outputs match",
    "our attestation is on chain (posted with the result): outputs matched",
    "posted result is WRONG: proved the true outputs and challenged: result rejected, node slashed",
    "posted result is WRONG: challenged (bond paid); verification nodes vote until the deadline",
    "posted result is WRONG but cannot be proved so",
    "posted result is WRONG but the wallet holds less OPG than the challenge bond: cannot challenge " +
      "(retried until the window ends)",
  ];
  const checked: Record<string, Set<string>> = { V1: new Set(), V2: new Set() };
  /** Called with every worker log line (name, message): faults that wait for a moment in a worker's work. */
  const lineHooks: ((name: string, msg: string) => void)[] = [];
  const procs: Partial<Record<WorkerName, Proc>> = {};
  const output = (name: string) => ({
    keepLines: 3000,
    onLine: (line: string) => {
      logFile.write(`[${name}] ${line}\n`);
      let level = 0;
      let msg = "";
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string };
        level = j.level ?? 0;
        msg = j.msg ?? "";
      } catch {
        return;
      }
      const w = (warnings[name] ??= { warn: 0, error: 0, samples: [] });
      if (level >= 50) {
        w.error++;
        if (w.samples.length < 40 && !w.samples.includes(msg)) w.samples.push(msg);
      } else if (level >= 40) w.warn++;
      if (RETRY_LINES.includes(msg)) retries.set(msg, (retries.get(msg) ?? 0) + 1);
      for (const hook of lineHooks) hook(name, msg);
      if (checked[name] && CHECK_LINES.includes(msg)) {
        const j = JSON.parse(line) as { taskId?: string; node?: string };
        if (j.taskId && j.node) checked[name].add(`${j.taskId}:${ethers.getAddress(j.node)}`);
      }
    },
  });
  function startWorker(name: WorkerName): Proc {
    const state = path.join(net.tmp, `state-${name}`);
    let proc: Proc;
    if (name === "V1" || name === "V2") {
      proc = startVerificationNode(net, IDX[name], state, {
        metricsPort: ports[name],
        pollIntervalMs: 400,
        // The last --rpc-url wins: the verification nodes reach the chain through their proxy.
        extra: ["--rpc-url", proxyUrl.verification, "--finalize-after-seconds", String(FINALIZE_AFTER)],
        output: output(name),
      });
    } else {
      proc = startInferenceNode(net, IDX[name], state, {
        rpcUrl: proxyUrl.inference,
        pollIntervalMs: 400,
        extra: [
          "--attest-timeout-ms",
          "20000",
          ...(name === "B" ? ["--fault-lie-every", "2"] : ["--enclave", "dev"]),
        ],
        output: output(name),
      });
    }
    procs[name] = proc;
    return proc;
  }
  const alive = (name: PartyName) => {
    const p = procs[name as WorkerName];
    return p !== undefined && !p.hasExited();
  };
  async function startAndWait(name: WorkerName) {
    const p = startWorker(name);
    await waitForLog(
      p,
      name.startsWith("V") ? "verification node started" : "inference node started",
      180_000,
    );
  }
  progress("starting inference nodes A, B, C and verification nodes V1, V2");
  for (const n of [...INFERENCE_WORKERS, ...VERIFIERS]) startWorker(n);
  for (const n of [...INFERENCE_WORKERS, ...VERIFIERS])
    await waitForLog(
      procs[n]!,
      n.startsWith("V") ? "verification node started" : "inference node started",
      180_000,
    );
  // TEE keys of A and C registered and active before the first TEE task.
  for (const n of ["A", "C"] as const) {
    await waitForLog(procs[n]!, "node eligible: claiming tasks", 120_000);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const logs = await enclaves.queryFilter(enclaves.filters.EnclaveKeyRegistered(), 0, "latest");
      if (logs.some((l) => (l.args as unknown as { node: string }).node === actors[n].address)) break;
      if (Date.now() > deadline) throw new Error(`${n} registered no enclave key`);
      await sleep(500);
    }
  }

  // ------------------------------------------------------------ start of the books
  const parties = Object.keys(IDX) as PartyName[];
  const inferenceNodes = [actors.A, actors.B, actors.C, actors.J].map((a) => a.address);
  const ballots = new Map<string, { taskId: bigint; voter: string }>();
  async function wealth(name: PartyName) {
    const a = actors[name].address;
    const info = await staking.nodeInfo(a);
    const walletBal = await token.balanceOf(a);
    const credits = await tasks.creditsOf(a);
    let rewards = 0n;
    for (const b of ballots.values())
      if (b.voter === a) rewards += await disputes.rewardOf(b.taskId, b.voter);
    let protocolFees = 0n;
    if (name === "treasury") for (const n of inferenceNodes) protocolFees += await tasks.protocolFeesOf(n);
    return walletBal + info.bonded + info.unbonding + credits + rewards + protocolFees;
  }
  const soakStartBlock = (await provider.getBlockNumber()) + 1;
  const start = new Map<PartyName, bigint>();
  for (const p of parties) start.set(p, await wealth(p));

  // ------------------------------------------------------------ what happens on chain, as it happens
  interface Posted {
    node: string;
    outputs: bigint[];
    windowEnd: number;
    block: number;
  }
  const posts = new Map<string, Posted[]>();
  const voteDisputes = new Map<
    string,
    { taskId: bigint; challenger: string; node: string; deadline: number }
  >();
  const counters = {
    junkPosted: 0,
    unattestedPosted: 0,
    abandonedClaims: 0,
    jLostRace: 0,
    d1VoteChallenges: 0,
    d1VoteChallengeFailed: [] as string[],
    d1CircuitAttempts: 0,
    d1CircuitReverts: new Map<string, number>(),
    d2Votes: 0,
    keeper: new Map<string, number>(),
    jumps: 0,
    jumpedSeconds: 0,
    forcedJumps: 0,
    rpcCuts: 0,
    rpcCutSeconds: 0,
    kills: new Map<string, number>(),
  };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  const faults: Fault[] = [];
  let round = 0;
  const d1Quota = { plain: 0, circuit: 0 };
  const voteDisputeHooks: ((d: { taskId: bigint; node: string; challenger: string }) => void)[] = [];

  async function d1Circuit(rec: TaskRec, p: Posted) {
    const attesters = await attestersOf({ provider, tasksAddress: addr.tasks }, rec.taskId, p.block);
    const d = disputes.connect(actors.D1.wallet);
    const hash = outputsHash(p.outputs);
    counters.d1CircuitAttempts++;
    // Either "prove" other outputs with a proof that is not one, or ask for a vote the model does not allow.
    const byProof = counters.d1CircuitAttempts % 2 === 1;
    const fake = [...rec.expected];
    fake[0] = fake[0] + 1n;
    const zero = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n] as const;
    const call = () =>
      byProof
        ? d.challengeWithProof.staticCall(
            rec.taskId,
            rec.submitted.task,
            hash,
            attesters,
            rec.submitted.input,
            fake,
            [...zero],
          )
        : d.challenge.staticCall(rec.taskId, rec.submitted.task, hash, attesters);
    let reason = "did not revert";
    try {
      await call();
    } catch (e) {
      reason = revertName(e);
    }
    // Sent as well (a fixed gas limit skips the estimate): mined, reverted, no OPG moved.
    try {
      const tx = byProof
        ? await d.challengeWithProof(
            rec.taskId,
            rec.submitted.task,
            hash,
            attesters,
            rec.submitted.input,
            fake,
            [...zero],
            { gasLimit: 1_500_000 },
          )
        : await d.challenge(rec.taskId, rec.submitted.task, hash, attesters, { gasLimit: 1_500_000 });
      await tx.wait();
      reason = `MINED WITHOUT REVERT (${reason})`;
    } catch {
      // Reverted on chain, as expected.
    }
    bump(counters.d1CircuitReverts, reason);
  }

  async function d1Vote(rec: TaskRec, p: Posted) {
    const attesters = await attestersOf({ provider, tasksAddress: addr.tasks }, rec.taskId, p.block);
    try {
      await (
        await disputes
          .connect(actors.D1.wallet)
          .challenge(rec.taskId, rec.submitted.task, outputsHash(p.outputs), attesters)
      ).wait();
      counters.d1VoteChallenges++;
    } catch (e) {
      counters.d1VoteChallengeFailed.push(`task ${rec.taskId}: ${revertName(e)}`);
    }
  }

  async function onPosted(log: Log) {
    const parsed = tasks.interface.parseLog(log)!;
    const taskId = parsed.args.taskId as bigint;
    const p: Posted = {
      node: parsed.args.node,
      outputs: [...(parsed.args.outputs as bigint[])],
      windowEnd: Number(parsed.args.windowEnd),
      block: log.blockNumber,
    };
    const key = taskId.toString();
    posts.set(key, [...(posts.get(key) ?? []), p]);
    const rec = recs.get(key);
    if (!rec) return;
    const correct = outputsHash(p.outputs) === outputsHash(rec.expected);
    if (!correct || p.node === actors.J.address) return;
    // D1 goes after correct results: a bonded vote on the model without a circuit, a doomed try on the other.
    if (rec.mode === "plain" && d1Quota.plain > 0) {
      d1Quota.plain--;
      inBackground(`D1 challenge of task ${key}`, () => actors.D1.run(() => d1Vote(rec, p)));
    } else if (rec.mode === "circuit" && d1Quota.circuit > 0) {
      d1Quota.circuit--;
      inBackground(`D1 circuit challenge of task ${key}`, () => actors.D1.run(() => d1Circuit(rec, p)));
    }
  }

  async function onDisputeOpened(log: Log) {
    const parsed = disputes.interface.parseLog(log)!;
    const taskId = parsed.args.taskId as bigint;
    const key = taskId.toString();
    if (parsed.args.circuit) return;
    const d = {
      taskId,
      challenger: parsed.args.challenger as string,
      node: parsed.args.node as string,
      deadline: Number(parsed.args.deadline),
    };
    voteDisputes.set(key, d);
    for (const hook of voteDisputeHooks) hook(d);
    // D2 votes for the lies it signed.
    const rec = recs.get(key);
    const p = posts.get(key)?.at(-1);
    if (!rec || !p || outputsHash(p.outputs) === outputsHash(rec.expected)) return;
    const attesters = await attestersOf({ provider, tasksAddress: addr.tasks }, taskId, p.block);
    if (!attesters.includes(actors.D2.address)) return;
    inBackground(`D2 vote on task ${key}`, () =>
      actors.D2.run(async () => {
        try {
          await (await disputes.connect(actors.D2.wallet).vote(taskId, true)).wait();
          counters.d2Votes++;
        } catch (e) {
          scriptErrors.push(`D2 vote on task ${key}: ${revertName(e)}`);
        }
      }),
    );
  }

  let scanFrom = soakStartBlock;
  let scanning = true;
  const scanner = (async () => {
    while (scanning) {
      try {
        const head = await provider.getBlockNumber();
        if (head >= scanFrom) {
          const logs = await provider.getLogs({
            address: [addr.tasks, addr.disputes],
            fromBlock: scanFrom,
            toBlock: head,
          });
          for (const log of logs) {
            if (log.topics[0] === TOPICS.posted) await onPosted(log);
            else if (log.topics[0] === TOPICS.disputeOpened) await onDisputeOpened(log);
            else if (log.topics[0] === TOPICS.disputeVoted) {
              const v = disputes.interface.parseLog(log)!;
              ballots.set(`${v.args.taskId}:${v.args.voter}`, { taskId: v.args.taskId, voter: v.args.voter });
            }
          }
          scanFrom = head + 1;
        }
      } catch (e) {
        scriptErrors.push(`event scanner: ${(e as Error).message}`);
      }
      await sleep(300);
    }
  })();

  // ------------------------------------------------------------ faults
  async function kill(name: WorkerName, why: string) {
    const p = procs[name];
    if (!p || p.hasExited()) return false;
    await p.stop("SIGKILL");
    bump(counters.kills, name);
    progress(`kill -9 ${name}: ${why}`);
    return true;
  }
  /** Whether `name` (killed: it casts nothing more) had cast its ballot on `taskId` (said in the fault's line). */
  async function ballotNote(name: "V1" | "V2", taskId: bigint) {
    const b = await disputes.ballotOf(taskId, actors[name].address);
    return Number(b.side) === 0
      ? " (killed before casting its ballot)"
      : " (killed after casting its ballot)";
  }
  function killAndRestart(
    name: WorkerName,
    why: string,
    downMs: number,
    fault: Fault,
    /** What the killed process left behind, read from the chain once it is dead (added to the fault's line). */
    leftBehind?: () => Promise<string>,
  ) {
    inBackground(`kill and restart ${name}`, async () => {
      if (!(await kill(name, why))) return;
      fault.detail += leftBehind ? await leftBehind() : "";
      faults.push(fault);
      await sleep(downMs);
      await startAndWait(name);
      progress(`${name} restarted on its state folder`);
    });
  }
  function cut(which: "inference" | "verification" | "both", ms: number) {
    const targets = which === "both" ? [proxies.inference, proxies.verification] : [proxies[which]];
    counters.rpcCuts++;
    counters.rpcCutSeconds += ms / 1000;
    faults.push({
      round,
      kind: "RPC cut",
      detail: `${which === "both" ? "every worker" : `${which} nodes`}' RPC connections dropped and refused for ${ms / 1000} s`,
    });
    progress(`RPC cut: ${which} for ${ms / 1000} s`);
    for (const t of targets) inBackground(`RPC cut ${which}`, () => t.cut(ms));
  }
  /** A verification node killed while the vote on `taskId` is open must have voted and be settled at the end. */
  function verifierDisputeCheck(name: "V1" | "V2", taskId: bigint) {
    return async () => {
      const b = await disputes.ballotOf(taskId, actors[name].address);
      const d = await disputes.disputeOf(taskId);
      const owed = await disputes.rewardOf(taskId, actors[name].address);
      const ok = Number(b.side) !== 0 && d.state === DISPUTE_RESOLVED && owed === 0n;
      return {
        ok,
        outcome:
          `task ${taskId}: ${name}'s ballot ${Number(b.side) === 0 ? "never cast" : Number(b.side) === 1 ? "node right" : "node wrong"}, ` +
          `vote ${d.state === DISPUTE_RESOLVED ? "resolved" : "NOT resolved"}, ${b.settled ? "ballot settled" : "ballot unsettled"}, reward owed ${fmt(owed)}`,
      };
    };
  }
  function taskEndCheck(taskId: bigint) {
    return async () => {
      const s = Number(await tasks.taskStatus(taskId));
      return { ok: [3, 4, 7].includes(s), outcome: `task ${taskId} ended ${STATUS_NAME[s]}` };
    };
  }

  /** Fault schedule of a round: hooks after the n-th submission, on vote disputes, and around the clock. */
  interface RoundFaults {
    afterSubmit?: Record<number, () => void>;
    onVoteDispute?: (d: { taskId: bigint; node: string; challenger: string }) => void;
    afterPosted?: () => Promise<void>;
    afterFirstJump?: () => Promise<void>;
  }
  function faultsOf(r: number): RoundFaults {
    if (r === 0)
      return {
        afterSubmit: {
          6: () => cut("inference", 6000),
          14: () => cut("verification", 6000),
          22: () => cut("both", 8000),
        },
      };
    if (r === 1) {
      let seen = 0;
      return {
        afterSubmit: {
          10: () => {
            const inFlight: bigint[] = [];
            const f: Fault = {
              round: r,
              kind: "kill -9 inference node",
              detail: "A killed mid-round",
              check: async () => {
                const ends: string[] = [];
                let ok = true;
                for (const id of inFlight) {
                  const s = Number(await tasks.taskStatus(id));
                  const by = s === Status.Verified ? who((await readVerifiedResult(tasks, id))!.node) : "";
                  ok &&= s === Status.Verified && by === "A";
                  ends.push(`${id} ${STATUS_NAME[s]}${by ? ` by ${by}` : ""}`);
                }
                return {
                  ok,
                  outcome: inFlight.length
                    ? `claims it held unposted when killed: ${ends.join(", ")}`
                    : "it held no unposted claim when killed",
                };
              },
            };
            // Killed right after its next claim is mined (or in 20 s if it claims nothing by then).
            let armed = true;
            const fire = () => {
              if (!armed) return;
              armed = false;
              killAndRestart("A", "right after a claim", 8000, f, async () => {
                // Its claims not posted yet: it must finish them from its journal after the restart.
                for (const x of recs.values()) {
                  if (x.round !== r || Number(await tasks.taskStatus(x.taskId)) !== Status.Claimed) continue;
                  if ((await tasks.claimOf(x.taskId))[0] === actors.A.address) inFlight.push(x.taskId);
                }
                return ` right after a claim was mined, holding ${inFlight.length} claimed task(s) not yet posted (${inFlight.join(", ") || "none"}), restarted 8 s later`;
              });
            };
            lineHooks.push((name, msg) => {
              if (name === "A" && msg === "task claimed") fire();
            });
            setTimeout(fire, 20_000);
          },
        },
        onVoteDispute: (d) => {
          seen++;
          if (seen === 1) {
            const f: Fault = {
              round: r,
              kind: "kill -9 verification node, dispute open",
              detail: `V1 killed while the vote on task ${d.taskId} was open (challenger ${who(d.challenger)}), restarted 12 s later`,
              check: verifierDisputeCheck("V1", d.taskId),
            };
            killAndRestart("V1", `vote on task ${d.taskId} open`, 12_000, f, () =>
              ballotNote("V1", d.taskId),
            );
          } else if (seen === 2) {
            const n = who(d.node) as WorkerName;
            if (!["A", "B", "C"].includes(n)) return;
            const f: Fault = {
              round: r,
              kind: "kill -9 inference node, dispute open",
              detail: `${n} killed while the vote on its result of task ${d.taskId} was open, restarted 8 s later`,
              check: taskEndCheck(d.taskId),
            };
            killAndRestart(n, `its result of task ${d.taskId} under a vote`, 8000, f);
          }
        },
      };
    }
    if (r === 2)
      return {
        afterSubmit: {
          8: () => cut("verification", 6000),
          18: () => cut("inference", 6000),
        },
        afterPosted: async () => {
          const mine = [...recs.values()].filter(
            (x) => x.round === r && posts.get(x.taskId.toString())?.some((p) => p.node === actors.C.address),
          );
          if (await kill("C", "silent after posting its results of the round")) {
            faults.push({
              round: r,
              kind: "silent node (kill -9 after posting)",
              detail: `C killed right after posting ${mine.length} results, down until the next round`,
              check: async () => {
                let verified = 0;
                const by = new Map<string, number>();
                for (const x of mine) {
                  if (Number(await tasks.taskStatus(x.taskId)) !== Status.Verified) continue;
                  verified++;
                  const [v] = await tasks.queryFilter(tasks.filters.TaskVerified(x.taskId));
                  const from = (await provider.getTransaction(v.transactionHash))!.from;
                  bump(by, who(from));
                }
                const byText = [...by].map(([k, v]) => `${k} ${v}`).join(", ");
                return {
                  ok: verified === mine.length,
                  outcome: `${verified} of ${mine.length} of C's results verified while it was down (finalised by ${byText || "nobody"})`,
                };
              },
            });
          }
        },
      };
    if (r === 3) {
      let v2Killed = false;
      let bKilled = false;
      return {
        afterSubmit: {
          5: () => cut("inference", 5000),
          15: () => cut("inference", 5000),
          24: () => cut("verification", 5000),
        },
        onVoteDispute: (d) => {
          if (!v2Killed) {
            v2Killed = true;
            inBackground("kill V2", async () => {
              if (!(await kill("V2", `vote on task ${d.taskId} open`))) return;
              const note = await ballotNote("V2", d.taskId);
              faults.push({
                round: r,
                kind: "kill -9 verification node, dispute open",
                detail: `V2 killed while the vote on task ${d.taskId} was open${note}, down across a clock step (${STEP} s), restarted after it`,
                check: verifierDisputeCheck("V2", d.taskId),
              });
            });
          } else if (!bKilled && d.node === actors.B.address) {
            bKilled = true;
            killAndRestart("B", `its lie on task ${d.taskId} under a vote`, 10_000, {
              round: r,
              kind: "kill -9 inference node, dispute open",
              detail: `B killed while the vote on its lie on task ${d.taskId} was open, restarted 10 s later`,
              check: taskEndCheck(d.taskId),
            });
          }
        },
        afterFirstJump: async () => {
          if (!alive("V2")) {
            await startAndWait("V2");
            progress("V2 restarted on its state folder");
          }
        },
      };
    }
    return { afterSubmit: { 9: () => cut("both", 5000) } };
  }

  // ------------------------------------------------------------ tasks
  const rng = mulberry32(SEED);
  let sampleNo = 0;
  const j = actors.J;
  async function submit(r: number, mode: Mode, role: TaskRole): Promise<TaskRec> {
    const sample = samples[mode][sampleNo++ % samples[mode].length];
    const rec = await actors.requester.run(async () => {
      // A fresh block: a deadline 20 s ahead of it is 20 s ahead of the submission's block.
      if (role === "expire") await provider.send("evm_mine", []);
      const now = (await provider.getBlock("latest"))!.timestamp;
      const receipt = await (
        await tasks.connect(requester).submitTaskInMode(
          {
            modelId: modelOf[mode],
            input: sample.input,
            inputDataHash: ethers.ZeroHash,
            fee: FEE,
            deadline: now + (role === "expire" ? 20 : TASK_LIFETIME),
            callback: ethers.ZeroAddress,
            callbackGasLimit: 0,
          },
          mode === "tee" ? MODES.tee : MODES.optimistic,
        )
      ).wait();
      const submitted = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
      const out: TaskRec = {
        taskId: submitted.taskId,
        round: r,
        mode,
        role,
        submitted,
        expected: sample.expected,
        values: sample.values,
        packBits: sample.packBits,
      };
      recs.set(submitted.taskId.toString(), out);
      return out;
    });
    if (role === "junk" || role === "unattested" || role === "abandon") await playJ(rec);
    return rec;
  }

  /** J claims the task at once and posts junk, posts a correct result without attestations, or goes silent. */
  async function playJ(rec: TaskRec) {
    await j.run(async () => {
      const t = tasks.connect(j.wallet);
      try {
        await (await t.claimTask(rec.taskId, rec.submitted.task)).wait();
      } catch {
        counters.jLostRace++;
        rec.role = "normal";
        return;
      }
      if (rec.role === "abandon") {
        counters.abandonedClaims++;
        return;
      }
      const outputs =
        rec.role === "junk"
          ? corruptOutputWords(rec.expected, rec.values.length, rec.packBits)
          : rec.expected;
      await (await t.submitResultOptimistic(rec.taskId, rec.submitted.task, outputs, [])).wait();
      if (rec.role === "junk") counters.junkPosted++;
      else counters.unattestedPosted++;
    });
  }

  function plan(): { mode: Mode; role: TaskRole }[] {
    const out: { mode: Mode; role: TaskRole }[] = [];
    for (const mode of ["circuit", "plain", "tee"] as Mode[])
      for (let i = 0; i < PER_ROUND[mode]; i++) out.push({ mode, role: "normal" });
    for (let i = out.length - 1; i > 0; i--) {
      const k = Math.floor(rng() * (i + 1));
      [out[i], out[k]] = [out[k], out[i]];
    }
    // J's three parts, away from the first few tasks (the nodes warm up on those).
    const pick = (mode: Mode, role: TaskRole) => {
      const i = out.findIndex((x, n) => n >= 3 && x.mode === mode && x.role === "normal");
      out[i].role = role;
    };
    pick("circuit", "junk");
    pick("plain", "unattested");
    // TEE tasks take no claim any more (the enclave signature binds the node): J abandons an optimistic one.
    pick("plain", "abandon");
    return out;
  }

  // ------------------------------------------------------------ driving tasks to their end
  const chainNow = async () => (await provider.getBlock("latest"))!.timestamp;
  async function jump(seconds: number, why: string) {
    await provider.send("evm_increaseTime", [seconds]);
    await provider.send("evm_mine", []);
    counters.jumps++;
    counters.jumpedSeconds += seconds;
    progress(`clock +${seconds} s (${why})`);
  }
  const keeperDid = (what: string) => bump(counters.keeper, what);
  /** A keeper transaction; one that a worker beat to it (the status moved on meanwhile) is counted, not an error. */
  async function keeperSend(what: string, taskId: bigint, send: () => Promise<{ wait(): Promise<unknown> }>) {
    await actors.keeper.run(async () => {
      try {
        await (await send()).wait();
        keeperDid(what);
        progress(`keeper: ${what}, task ${taskId}`);
      } catch (e) {
        const reason = revertName(e);
        if (/WrongStatus|WrongState/.test(reason))
          keeperDid(`${what.split(" ")[0]} raced by a worker (reverted)`);
        else scriptErrors.push(`keeper ${what} on task ${taskId}: ${reason}`);
      }
    });
  }
  const dishonestNode = (a: string) => a === actors.B.address || a === actors.J.address;

  /** What still waits for a worker (not for the clock) among `list`; the keeper does J's and dead nodes' chores. */
  async function pendingWork(list: TaskRec[]): Promise<string[]> {
    const now = await chainNow();
    const out: string[] = [];
    for (const rec of list) {
      const id = rec.taskId;
      const status = Number(await tasks.taskStatus(id));
      const deadline = Number(rec.submitted.task.deadline);
      if (status === Status.Open) {
        if (now + 30 >= deadline) {
          if (now > deadline)
            await keeperSend("expire (deadline passed, unserved)", id, () =>
              tasks.connect(actors.keeper.wallet).expire(id, rec.submitted.task),
            );
          continue;
        }
        out.push(`task ${id} open`);
      } else if (status === Status.Claimed) {
        const [node, expiresAt] = await tasks.claimOf(id);
        if (dishonestNode(node) || now > Number(expiresAt) || !alive(who(node) as PartyName)) continue;
        out.push(`task ${id} claimed by ${who(node)}`);
      } else if (status === Status.Pending) {
        const [node, windowEnd] = await tasks.pendingOf(id);
        // Settled since its status was read (pendingOf is empty then): nothing to do.
        if (node === ethers.ZeroAddress) continue;
        if (now <= Number(windowEnd)) {
          for (const v of VERIFIERS)
            if (alive(v) && !checked[v].has(`${id}:${node}`))
              out.push(`task ${id}: ${v} has not checked the result posted by ${who(node)}`);
          continue;
        }
        const p = posts.get(id.toString())?.at(-1);
        if (!p) {
          out.push(`task ${id}: posting not seen yet`);
          continue;
        }
        const attesters = await attestersOf({ provider, tasksAddress: addr.tasks }, id, p.block);
        if (attesters.length < Number(rec.submitted.task.attestationQuorum)) {
          // Posted without attestations (J): anyone expires it; before the deadline the task reopens.
          await keeperSend("expireUnattested (J's unattested post)", id, () =>
            tasks
              .connect(actors.keeper.wallet)
              .expireUnattested(id, rec.submitted.task, outputsHash(p.outputs), attesters),
          );
          out.push(`task ${id} reopened`);
          continue;
        }
        const posterAlive = alive(who(node) as PartyName);
        const attesterAlive = attesters.some((a) => alive(who(a) as PartyName));
        if (!posterAlive && now <= Number(windowEnd) + FINALIZE_AFTER + 30 && attesterAlive) continue;
        if (!posterAlive && !attesterAlive) {
          // Nobody running has a stake in it: the keeper finalises (anyone may).
          await keeperSend("finalizeResult (poster down, attested by D2 only)", id, () =>
            tasks.connect(actors.keeper.wallet).finalizeResult(id, rec.submitted.task, p.outputs, attesters),
          );
          continue;
        }
        out.push(`task ${id} pending past its window (posted by ${who(node)})`);
      } else if (status === Status.Disputed) {
        const d = await disputes.disputeOf(id);
        if (now > Number(d.deadline)) {
          out.push(`task ${id}: vote due for resolution`);
          continue;
        }
        for (const v of VERIFIERS) {
          if (!alive(v)) continue;
          const b = await disputes.ballotOf(id, actors[v].address);
          if (Number(b.side) === 0) out.push(`task ${id}: ${v} has not voted`);
        }
      }
      // Resolved votes: live verification nodes settle the losers and collect their own reward.
      const vd = voteDisputes.get(id.toString());
      if (vd && [Status.Verified, Status.Rejected].includes(status)) {
        const d = await disputes.disputeOf(id);
        if (d.state !== DISPUTE_RESOLVED) continue;
        for (const v of VERIFIERS) {
          if (!alive(v)) continue;
          if ((await disputes.rewardOf(id, actors[v].address)) > 0n)
            out.push(`task ${id}: ${v} owed a reward`);
        }
        if (Number(d.outcome) !== 2) {
          const winning = Number(d.outcome) === 0 ? 1 : 2;
          for (const b of ballots.values()) {
            if (b.taskId !== id) continue;
            const ballot = await disputes.ballotOf(id, b.voter);
            if (Number(ballot.side) !== winning && !ballot.settled && [...VERIFIERS].some(alive))
              out.push(`task ${id}: losing ballot of ${who(b.voter)} unsettled`);
          }
        }
      }
    }
    return out;
  }

  const isFinal = async (rec: TaskRec) =>
    [Status.Verified, Status.Expired, Status.Rejected].includes(Number(await tasks.taskStatus(rec.taskId)));

  /** Wait until nothing among `list` waits for a worker; returns what still did at the timeout. */
  async function waitQuiet(list: TaskRec[], what: string): Promise<string[]> {
    const until = Date.now() + QUIET_TIMEOUT_MS;
    let last: string[] = [];
    for (;;) {
      await Promise.allSettled([...background]);
      last = await pendingWork(list);
      if (last.length === 0) return [];
      if (Date.now() > until) {
        progress(
          `still waiting after ${QUIET_TIMEOUT_MS / 1000} s (${what}): ${last.slice(0, 6).join("; ")}`,
        );
        return last;
      }
      await sleep(1500);
    }
  }

  const stragglers: string[] = [];
  /** Step the clock until every task of `list` is final (and its votes settled), at most `maxSteps` times. */
  async function drive(list: TaskRec[], label: string, hooks: RoundFaults = {}) {
    for (let step = 0; step < 12; step++) {
      const left = await waitQuiet(list, `${label}, step ${step}`);
      const open = [];
      for (const r of list) if (!(await isFinal(r))) open.push(r);
      if (open.length === 0 && left.length === 0) return;
      if (left.length > 0) {
        counters.forcedJumps++;
        stragglers.push(`${label}, step ${step}: ${left.join("; ")}`);
      }
      await jump(STEP, `${label}: ${open.length} task(s) not final`);
      if (step === 0) await hooks.afterFirstJump?.();
    }
    const open = [];
    for (const r of list) if (!(await isFinal(r))) open.push(r.taskId);
    if (open.length > 0)
      stragglers.push(`${label}: still not final after 12 clock steps: ${open.join(", ")}`);
  }

  // ------------------------------------------------------------ the rounds
  const all: TaskRec[] = [];
  for (round = 0; round < ROUNDS; round++) {
    const f = faultsOf(round);
    if (round === 3 && !alive("C")) {
      await startAndWait("C");
      progress("C restarted on its state folder (silent since round 2)");
    }
    d1Quota.plain = 2;
    d1Quota.circuit = 2;
    voteDisputeHooks.length = 0;
    if (f.onVoteDispute) voteDisputeHooks.push(f.onVoteDispute);
    const list: TaskRec[] = [];
    const p = plan();
    if (round === ROUNDS - 1) p.push({ mode: "plain", role: "expire" }, { mode: "plain", role: "expire" });
    progress(`round ${round + 1}/${ROUNDS}: submitting ${p.length} tasks`);
    for (let i = 0; i < p.length; i++) {
      list.push(await submit(round, p[i].mode, p[i].role));
      f.afterSubmit?.[i + 1]?.();
      await sleep(600 + Math.floor(rng() * 600));
    }
    all.push(...list);
    progress(`round ${round + 1}: waiting for every result to be posted and every vote cast`);
    const left = await waitQuiet(list, `round ${round + 1} posting`);
    if (left.length > 0) stragglers.push(`round ${round + 1} posting: ${left.join("; ")}`);
    await f.afterPosted?.();
    await drive(list, `round ${round + 1}`, f);
    voteDisputeHooks.length = 0;
    const states = new Map<string, number>();
    for (const r of list) bump(states, STATUS_NAME[Number(await tasks.taskStatus(r.taskId))]);
    progress(`round ${round + 1} done: ${[...states].map(([k, v]) => `${v} ${k}`).join(", ")}`);
  }

  // ------------------------------------------------------------ the end: every worker back, every task final
  for (const n of [...INFERENCE_WORKERS, ...VERIFIERS])
    if (!alive(n)) {
      await startAndWait(n);
      progress(`${n} restarted for the end`);
    }
  await drive(all, "final");
  // Keeper: whatever is still not final, by the rules anyone may use.
  for (let pass = 0; pass < 6; pass++) {
    const open = [];
    for (const r of all) if (!(await isFinal(r))) open.push(r);
    if (open.length === 0) break;
    const now = await chainNow();
    let maxDeadline = now;
    for (const rec of open) {
      const id = rec.taskId;
      const t = rec.submitted.task;
      const status = Number(await tasks.taskStatus(id));
      const k = tasks.connect(actors.keeper.wallet);
      try {
        if ((status === Status.Open || status === Status.Claimed) && now > Number(t.deadline)) {
          await (await k.expire(id, t)).wait();
          keeperDid("expire (final sweep)");
        } else if (status === Status.Pending) {
          const p = posts.get(id.toString())!.at(-1)!;
          const attesters = await attestersOf({ provider, tasksAddress: addr.tasks }, id, p.block);
          if (attesters.length >= Number(t.attestationQuorum)) {
            await (await k.finalizeResult(id, t, p.outputs, attesters)).wait();
            keeperDid("finalizeResult (final sweep)");
          } else {
            await (await k.expireUnattested(id, t, outputsHash(p.outputs), attesters)).wait();
            keeperDid("expireUnattested (final sweep)");
          }
        } else if (status === Status.Disputed) {
          const p = posts.get(id.toString())!.at(-1)!;
          const attesters = await attestersOf({ provider, tasksAddress: addr.tasks }, id, p.block);
          await (
            await disputes.connect(actors.keeper.wallet).resolveVote(id, t, p.outputs, attesters)
          ).wait();
          keeperDid("resolveVote (final sweep)");
        }
      } catch (e) {
        scriptErrors.push(`keeper on task ${id} (${STATUS_NAME[status]}): ${revertName(e)}`);
      }
      maxDeadline = Math.max(maxDeadline, Number(t.deadline));
    }
    await jump(Math.max(STEP, maxDeadline - now + 5), "final sweep: past every deadline");
  }
  await Promise.allSettled([...background]);
  // Every ballot settled (twice: winners collect what losers settled later brought).
  for (let pass = 0; pass < 2; pass++) {
    for (const b of ballots.values()) {
      const d = await disputes.disputeOf(b.taskId);
      if (d.state !== DISPUTE_RESOLVED) continue;
      const ballot = await disputes.ballotOf(b.taskId, b.voter);
      const owed = await disputes.rewardOf(b.taskId, b.voter);
      if (ballot.settled && owed === 0n) continue;
      try {
        await (await disputes.connect(actors.keeper.wallet).settleBallot(b.taskId, b.voter)).wait();
        keeperDid(owed > 0n ? "settleBallot (winner's reward)" : "settleBallot (loser or undecided)");
      } catch (e) {
        scriptErrors.push(`keeper settleBallot ${b.taskId} ${who(b.voter)}: ${revertName(e)}`);
      }
    }
  }

  // Stop the workers gently: each must exit 0.
  progress("stopping the workers");
  scanning = false;
  await scanner;
  const exitCodes: Record<string, number | null> = {};
  for (const n of [...INFERENCE_WORKERS, ...VERIFIERS]) {
    const p = procs[n]!;
    exitCodes[n] = await p.stop("SIGTERM", 60_000).catch(() => -1);
  }
  await d2Http.close();
  await proxies.inference.close();
  await proxies.verification.close();

  // ------------------------------------------------------------ the books
  progress("reading the books");
  const endBlock = await provider.getBlockNumber();
  const logs = await provider.getLogs({
    address: [addr.tasks, addr.disputes, addr.staking, addr.enclaves],
    fromBlock: soakStartBlock,
    toBlock: endBlock,
  });
  for (const l of logs) {
    if (l.topics[0] !== TOPICS.disputeVoted) continue;
    const v = disputes.interface.parseLog(l)!;
    ballots.set(`${v.args.taskId}:${v.args.voter}`, { taskId: v.args.taskId, voter: v.args.voter });
  }
  const end = new Map<PartyName, bigint>();
  for (const p of parties) end.set(p, await wealth(p));
  const ifaces = [tasks.interface, disputes.interface, staking.interface, enclaves.interface];
  const parse = (l: Log) => {
    for (const i of ifaces) {
      try {
        const p = i.parseLog(l);
        if (p) return p;
      } catch {
        // not this contract's event
      }
    }
    return null;
  };
  type Flow = { fees: bigint; won: bigint; refunds: bigint; lost: bigint; paid: bigint };
  const flows = new Map<PartyName, Flow>(
    parties.map((p) => [p, { fees: 0n, won: 0n, refunds: 0n, lost: 0n, paid: 0n }]),
  );
  const flow = (a: string) => flows.get(nameOf.get(ethers.getAddress(a)) as PartyName);
  const settledEvents = new Map<string, string[]>();
  const disputeBond = new Map<string, { challenger: string; bond: bigint }>();
  const feeSplitErrors: string[] = [];
  const verifiedOutputs = new Map<string, bigint[]>();
  const verifiedSplit = new Map<string, bigint>();
  const attesterShares = new Map<string, bigint>();
  for (const l of logs) {
    const e = parse(l);
    if (!e) continue;
    const a = e.args;
    const key = a.taskId !== undefined ? String(a.taskId) : "";
    switch (e.name) {
      case "TaskSubmitted":
        flow(a.requester)!.paid += a.task.fee;
        break;
      case "TaskVerified": {
        const rec = recs.get(key)!;
        flow(a.node)!.fees += a.nodeFee;
        flow(rec.submitted.task.royaltyReceiver as string)!.fees += a.royalty;
        flows.get("treasury")!.fees += a.protocolFee;
        settledEvents.set(key, [...(settledEvents.get(key) ?? []), "TaskVerified"]);
        verifiedOutputs.set(key, [...a.outputs]);
        verifiedSplit.set(key, a.nodeFee + a.royalty + a.protocolFee);
        break;
      }
      case "AttestersPaid":
        for (const x of a.attesters as string[]) flow(x)!.fees += a.share;
        attesterShares.set(key, (a.share as bigint) * BigInt((a.attesters as string[]).length));
        break;
      case "TaskExpired":
      case "TaskRejected":
        flow(a.requester)!.refunds += a.refund;
        settledEvents.set(key, [...(settledEvents.get(key) ?? []), e.name]);
        break;
      case "NodeSlashed": {
        flow(a.node)!.lost += a.amount;
        const ben = a.beneficiary as string;
        if (ben !== ethers.ZeroAddress && nameOf.has(ethers.getAddress(ben)))
          flow(ben)!.won += a.toBeneficiary;
        flows.get("treasury")!.won += (a.amount as bigint) - (a.toBeneficiary as bigint);
        break;
      }
      case "DisputeOpened":
        if (a.bond > 0n) {
          flow(a.challenger)!.lost += a.bond;
          disputeBond.set(key, { challenger: a.challenger, bond: a.bond });
        }
        break;
      case "DisputeResolved": {
        const b = disputeBond.get(key);
        // Back to the challenger (node wrong, or undecided); node right: the winners' reward.
        if (b && ethers.getAddress(a.bondTo) === ethers.getAddress(b.challenger))
          flow(b.challenger)!.lost -= b.bond;
        break;
      }
      case "BallotSettled":
        flow(a.voter)!.won += a.paid;
        break;
      default:
        break;
    }
  }
  for (const b of ballots.values()) {
    const owed = await disputes.rewardOf(b.taskId, b.voter);
    if (owed > 0n) flow(b.voter)!.won += owed;
  }
  // Slashes by reason and party.
  const reasonName = new Map<string, string>([
    [ethers.id("opg.task.claim-abandoned"), "claim abandoned (taken over)"],
    [ethers.id("opg.task.expired"), "claim expired unserved"],
    [ethers.id("opg.task.wrong-result"), "wrong result (node)"],
    [ethers.id("opg.task.unattested"), "result nobody attested"],
    [ethers.id("opg.task.wrong-attestation"), "attested a wrong result"],
    [ethers.id("opg.dispute.lost-vote"), "losing ballot"],
    [ethers.id("opg.enclave.forged-attestation"), "forged enclave document"],
  ]);
  const slashes = new Map<string, Map<string, { n: number; amount: bigint }>>();
  for (const l of logs) {
    const e = parse(l);
    if (e?.name !== "NodeSlashed") continue;
    const reason = reasonName.get(e.args.reason) ?? e.args.reason;
    const row = slashes.get(reason) ?? new Map<string, { n: number; amount: bigint }>();
    const cell = row.get(who(e.args.node)) ?? { n: 0, amount: 0n };
    cell.n++;
    cell.amount += e.args.amount as bigint;
    row.set(who(e.args.node), cell);
    slashes.set(reason, row);
  }
  // Every wrong result posted (B's lies, J's junk) and how its task ended.
  const wrongPosts: { key: string; node: string; mode: Mode; how: string }[] = [];
  for (const [key, list] of posts) {
    const rec = recs.get(key);
    if (!rec) continue;
    for (const p of list) {
      if (outputsHash(p.outputs) === outputsHash(rec.expected)) continue;
      const d = await disputes.disputeOf(BigInt(key));
      const s = Number(await tasks.taskStatus(BigInt(key)));
      const how =
        s !== Status.Rejected
          ? `NOT REJECTED (${STATUS_NAME[s]})`
          : d.circuit
            ? "rejected by a proof"
            : "rejected by a vote";
      wrongPosts.push({ key, node: who(p.node), mode: rec.mode, how });
    }
  }
  const griefs: { key: string; outcome: string }[] = [];
  for (const [key, d] of voteDisputes) {
    if (d.challenger !== actors.D1.address) continue;
    const outcome = ["NodeRight", "NodeWrong", "Undecided"][
      Number((await disputes.disputeOf(BigInt(key))).outcome)
    ];
    griefs.push({ key, outcome });
  }
  for (const [key, split] of verifiedSplit) {
    const total = split + (attesterShares.get(key) ?? 0n);
    const fee = BigInt(recs.get(key)!.submitted.task.fee);
    if (total !== fee) feeSplitErrors.push(`task ${key}: split ${total} != fee ${fee}`);
  }

  // ------------------------------------------------------------ checks
  const checks: { name: string; ok: boolean; detail: string }[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  const byMode = new Map<string, Map<string, number>>();
  const statusOf = new Map<string, number>();
  for (const r of all) {
    const s = Number(await tasks.taskStatus(r.taskId));
    statusOf.set(r.taskId.toString(), s);
    const m = byMode.get(r.mode) ?? new Map<string, number>();
    bump(m, STATUS_NAME[s]);
    byMode.set(r.mode, m);
  }
  const notFinal = all.filter((r) => ![3, 4, 7].includes(statusOf.get(r.taskId.toString())!));
  check(
    "at least 100 optimistic and TEE tasks, every one final",
    all.length >= 100 && notFinal.length === 0,
    `${all.length} tasks; not final: ${notFinal.map((r) => r.taskId).join(", ") || "none"}`,
  );
  const onceErrors: string[] = [];
  for (const r of all) {
    const key = r.taskId.toString();
    const ev = settledEvents.get(key) ?? [];
    const s = statusOf.get(key)!;
    const want = s === 3 ? "TaskVerified" : s === 4 ? "TaskExpired" : s === 7 ? "TaskRejected" : "?";
    if (ev.length !== 1 || ev[0] !== want) onceErrors.push(`task ${key}: ${STATUS_NAME[s]}, events [${ev}]`);
  }
  check(
    "every task settled exactly once (one TaskVerified, or one refund: TaskExpired / TaskRejected)",
    onceErrors.length === 0,
    onceErrors.slice(0, 8).join("; ") || `${all.length} tasks, one settlement event each`,
  );
  const wrongVerified = [...verifiedOutputs].filter(
    ([key, outs]) => outputsHash(outs) !== outputsHash(recs.get(key)!.expected),
  );
  check(
    "no wrong output verified (every TaskVerified carries the true outputs)",
    wrongVerified.length === 0,
    wrongVerified.map(([k]) => `task ${k}`).join(", ") ||
      `${verifiedOutputs.size} verified, all true outputs`,
  );
  check(
    "every fee split adds up to the fee",
    feeSplitErrors.length === 0,
    feeSplitErrors.join("; ") || "node + royalty + protocol + attesters = fee",
  );
  let verifiedFees = 0n;
  for (const r of all)
    if (statusOf.get(r.taskId.toString()) === 3) verifiedFees += BigInt(r.submitted.task.fee);
  const reqDelta = end.get("requester")! - start.get("requester")!;
  check(
    "the requester paid exactly its verified tasks (every other task refunded in full)",
    reqDelta === -verifiedFees,
    `wealth ${signed(reqDelta)} OPG, verified fees ${fmt(verifiedFees)} OPG`,
  );

  // Conservation: every holder's balance adds up to the supply, and every contract holds what its books owe.
  const transfers = await token.queryFilter(token.filters.Transfer(), 0, endBlock);
  const holders = new Set<string>();
  for (const t of transfers) {
    holders.add(t.args.from);
    holders.add(t.args.to);
  }
  holders.delete(ethers.ZeroAddress);
  let sum = 0n;
  for (const h of holders) sum += await token.balanceOf(h);
  const supply = await token.totalSupply();
  check(
    "token conservation: the balances of all holders add up to the total supply",
    sum === supply,
    `${holders.size} holders, ${fmt(sum)} of ${fmt(supply)} OPG`,
  );
  const accounts = new Set<string>([...holders, ...parties.map((p) => actors[p].address)]);
  let owedByRegistry = 0n;
  for (const a of accounts) owedByRegistry += await tasks.creditsOf(a);
  for (const n of inferenceNodes) owedByRegistry += await tasks.protocolFeesOf(n);
  const taskCount = await tasks.taskCount();
  for (let id = 1n; id <= taskCount; id++) {
    const s = Number(await tasks.taskStatus(id));
    if ([1, 2, 5, 6].includes(s)) owedByRegistry += BigInt(recs.get(id.toString())?.submitted.task.fee ?? 0n);
  }
  const registryBalance = await token.balanceOf(addr.tasks);
  check(
    "TaskRegistry holds exactly credits + protocol fees + open escrow",
    registryBalance === owedByRegistry,
    `balance ${fmt(registryBalance)}, books ${fmt(owedByRegistry)} OPG`,
  );
  let staked = 0n;
  const stakers = new Set<string>([
    ...(await staking.nodesByRole(0, 0, 256)),
    ...(await staking.nodesByRole(1, 0, 256)),
  ]);
  for (const s of stakers) {
    const i = await staking.nodeInfo(s);
    staked += i.bonded + i.unbonding;
  }
  const stakingBalance = await token.balanceOf(addr.staking);
  check(
    "NodeStaking holds exactly bonded + unbonding stake",
    stakingBalance === staked,
    `balance ${fmt(stakingBalance)}, books ${fmt(staked)} OPG (${stakers.size} nodes)`,
  );
  let openBonds = 0n;
  const disputed = new Set<string>();
  for (const l of logs)
    if (l.topics[0] === TOPICS.disputeOpened) disputed.add(BigInt(l.topics[1]).toString());
  for (const key of disputed) {
    const d = await disputes.disputeOf(BigInt(key));
    if (d.state === DISPUTE_OPEN) openBonds += d.bond;
  }
  let unpaid = 0n;
  for (const b of ballots.values()) unpaid += await disputes.rewardOf(b.taskId, b.voter);
  const dmBalance = await token.balanceOf(addr.disputes);
  const dust = dmBalance - openBonds - unpaid;
  check(
    "DisputeManager holds exactly open bonds + unpaid rewards (+ dust below one wei per ballot)",
    dust >= 0n && dust <= BigInt(ballots.size + disputed.size),
    `balance ${dmBalance} wei, open bonds ${openBonds}, unpaid rewards ${unpaid}, dust ${dust} wei (${ballots.size} ballots)`,
  );
  let keyBonds = 0n;
  const challenged = await enclaves.queryFilter(enclaves.filters.EnclaveKeyChallenged(), 0, endBlock);
  const resolvedKeys = await enclaves.queryFilter(
    enclaves.filters.EnclaveKeyChallengeResolved(),
    0,
    endBlock,
  );
  for (const c of challenged)
    if (!resolvedKeys.some((r) => r.args.key === c.args.key)) keyBonds += c.args.bond as bigint;
  const enclaveBalance = await token.balanceOf(addr.enclaves);
  check(
    "EnclaveRegistry holds exactly the bonds of open key challenges",
    enclaveBalance === keyBonds,
    `balance ${fmt(enclaveBalance)}, open challenge bonds ${fmt(keyBonds)} OPG`,
  );

  // Every party: its wealth moved by exactly what the events say, honest ones lost nothing, dishonest ones lost.
  const partyRows: string[] = [];
  const ledgerErrors: string[] = [];
  const verdictErrors: string[] = [];
  for (const p of parties) {
    const s = start.get(p)!;
    const e = end.get(p)!;
    const f = flows.get(p)!;
    const ledger = f.fees + f.won + f.refunds - f.lost - f.paid;
    if (ledger !== e - s) ledgerErrors.push(`${p}: wealth ${signed(e - s)}, events ${signed(ledger)}`);
    let verdict: string;
    let ok: boolean;
    if (p === "requester") {
      ok = e - s === -verifiedFees;
      verdict = ok ? "whole: paid only verified tasks" : "WRONG";
    } else if (HONEST[p]) {
      ok = f.lost === 0n && e >= s + f.fees;
      verdict = ok ? (e > s ? "honest: gained" : "honest: even") : "HONEST PARTY LOST";
    } else {
      ok = e < s;
      verdict = ok ? "dishonest: lost" : "DISHONEST PARTY DID NOT LOSE";
    }
    if (!ok) verdictErrors.push(`${p}: ${verdict} (${fmt(s)} -> ${fmt(e)})`);
    partyRows.push(
      `| ${p} | ${ROLE[p]} | ${fmt(s)} | ${fmt(e)} | ${p === "requester" ? `-${fmt(f.paid)} paid, +${fmt(f.refunds)} refunded` : fmt(f.fees)} | ${fmt(f.won)} | ${fmt(f.lost)} | ${signed(e - s)} | ${ok ? "" : "FAIL: "}${verdict} |`,
    );
  }
  check(
    "every party's wealth moved by exactly what the chain's events say (fees, slashes, bonds, rewards, refunds)",
    ledgerErrors.length === 0,
    ledgerErrors.join("; ") || `${parties.length} parties, exact to the wei`,
  );
  check(
    "every honest party ends with at least its start plus its fee earnings (lost nothing); every dishonest one below its start",
    verdictErrors.length === 0,
    verdictErrors.join("; ") || "all verdicts hold",
  );
  for (const fault of faults) {
    if (!fault.check) continue;
    const r = await fault.check();
    fault.ok = r.ok;
    fault.outcome = r.outcome;
  }
  const faultFails = faults.filter((f) => f.ok === false);
  check(
    "every kill ended as it should: killed nodes resumed from their journals (claims finished, ballots cast, votes resolved, rewards collected); the silent node's results were finalised without it",
    faultFails.length === 0,
    faultFails.map((f) => `${f.detail}: ${f.outcome}`).join("; ") ||
      `${faults.filter((f) => f.check).length} checked`,
  );
  const unrejected = wrongPosts.filter((w) => !w.how.startsWith("rejected"));
  check(
    "every wrong result posted (lies, junk) was rejected and its requester refunded",
    unrejected.length === 0 && wrongPosts.length > 0,
    unrejected.map((w) => `task ${w.key} by ${w.node}: ${w.how}`).join("; ") ||
      `${wrongPosts.length} wrong results, all rejected`,
  );
  const griefWon = griefs.filter((g) => g.outcome !== "NodeRight");
  check(
    "every challenge of a correct result lost (vote: node right; circuit model: reverted)",
    griefWon.length === 0 &&
      ![...counters.d1CircuitReverts.keys()].some((k) => k.startsWith("MINED WITHOUT REVERT")),
    griefWon.map((g) => `task ${g.key}: ${g.outcome}`).join("; ") ||
      `${griefs.length} votes node right, ${counters.d1CircuitAttempts} circuit attempts reverted`,
  );
  const badExits = Object.entries(exitCodes).filter(([, c]) => c !== 0);
  check(
    "every worker still running at the end stops cleanly (exit 0 on SIGTERM)",
    badExits.length === 0,
    badExits.map(([n, c]) => `${n}: ${c}`).join(", ") || Object.keys(exitCodes).join(", "),
  );
  check(
    "the script's own actions all went as planned",
    scriptErrors.length === 0,
    scriptErrors.slice(0, 6).join("; ") || "no errors",
  );

  // ------------------------------------------------------------ the report
  const wall = (Date.now() - started) / 1000;
  const lines: string[] = [];
  const L = (s = "") => lines.push(s);
  L(`## Soak: optimistic and TEE games under faults (\`npm run bench:soak\`)`);
  L();
  L(
    `${all.length} tasks in ${ROUNDS} rounds on a hardhat node (chain clock moved ${counters.jumps} times, ` +
      `${(counters.jumpedSeconds / 3600).toFixed(1)} h in all), 3 inference and 2 verification worker processes, ` +
      `4 parties played by the script; wall time ${(wall / 60).toFixed(1)} min. Seed ${SEED}.`,
  );
  L();
  L("### Tasks by mode and final state");
  L();
  L("| mode | model | tasks | Verified | Rejected (refunded) | Expired (refunded) |");
  L("|---|---|---|---|---|---|");
  const modeLabel: Record<Mode, string> = {
    circuit: "optimistic, circuit model (iris MLP): disputes by proof",
    plain: "optimistic, no circuit (iris MLP, plain bundle): disputes by vote",
    tee: "TEE, development enclave (digits transformer, plain bundle)",
  };
  for (const m of ["circuit", "plain", "tee"] as Mode[]) {
    const c = byMode.get(m) ?? new Map();
    const n = all.filter((r) => r.mode === m).length;
    L(
      `| ${modeLabel[m].split(",")[0]} | ${modeLabel[m].slice(modeLabel[m].indexOf(",") + 2)} | ${n} | ${c.get("Verified") ?? 0} | ${c.get("Rejected") ?? 0} | ${c.get("Expired") ?? 0} |`,
    );
  }
  const total = (k: string) => [...byMode.values()].reduce((s, m) => s + (m.get(k) ?? 0), 0);
  L(`| all | | ${all.length} | ${total("Verified")} | ${total("Rejected")} | ${total("Expired")} |`);
  L();
  const reopened = logs.filter((l) => l.topics[0] === TOPICS.reopened).length;
  const abandonedSlashes = [...(slashes.get("claim abandoned (taken over)")?.values() ?? [])].reduce(
    (n, c) => n + c.n,
    0,
  );
  const lies = wrongPosts.filter((w) => w.node === "B");
  const liesBy = (m: Mode, how: string) => lies.filter((w) => w.mode === m && w.how === how).length;
  L("### Faults injected");
  L();
  L("| fault | count | what happened |");
  L("|---|---|---|");
  L(
    `| lies (B, \`--fault-lie-every 2\`) | ${lies.length} posted | each signed by D2 only (honest verifiers refused to sign); circuit model: ${liesBy("circuit", "rejected by a proof")} proved wrong by a verifier's proof in one transaction; vote model: ${liesBy("plain", "rejected by a vote")} challenged by a verifier's bond and rejected by vote; not rejected: ${lies.filter((w) => !w.how.startsWith("rejected")).length} |`,
  );
  L(
    `| junk (J: wrong outputs, no attestation) | ${counters.junkPosted} | proved wrong and rejected; J's collateral slashed |`,
  );
  L(
    `| unattested correct result (J) | ${counters.unattestedPosted} | expired unattested after the window (J slashed), ${reopened} task(s) reopened and served again |`,
  );
  L(
    `| abandoned claim (J, optimistic) | ${counters.abandonedClaims} | claim lapsed, taken over by an honest node (${abandonedSlashes} take-over slashes) |`,
  );
  L(
    `| griefing challenge of a correct result (D1, vote model) | ${counters.d1VoteChallenges} | votes: ${griefs.filter((g) => g.outcome === "NodeRight").length} node right (D1's bond to the winning ballots, its ballot slashed), ${griefs.filter((g) => g.outcome !== "NodeRight").length} other; challenges refused: ${counters.d1VoteChallengeFailed.length} |`,
  );
  L(
    `| griefing challenge of a correct result (D1, circuit model) | ${counters.d1CircuitAttempts} | all reverted on chain: ${[...counters.d1CircuitReverts].map(([k, v]) => `${v} ${k}`).join(", ") || "none"} |`,
  );
  L(
    `| attestation of anything (D2) | ${d2Signed.lies} lies + ${d2Signed.honest} correct signed | ${counters.d2Votes} votes for lies it signed, all lost |`,
  );
  L(
    `| RPC cuts | ${counters.rpcCuts} (${counters.rpcCutSeconds} s) | workers rode them out (log lines: ${[...retries].map(([k, v]) => `${v} "${k}"`).join(", ")}) |`,
  );
  const killsText = [...counters.kills].map(([k, v]) => `${k} ${v}`).join(", ");
  L(`| kill -9 | ${[...counters.kills.values()].reduce((a, b) => a + b, 0)} (${killsText}) | see below |`);
  for (const fault of faults.filter((x) => x.kind !== "RPC cut"))
    L(
      `| round ${fault.round + 1}: ${fault.kind} | 1 | ${fault.detail}${fault.outcome ? `: ${fault.outcome}` : ""}${fault.ok === false ? " **FAILED**" : ""} |`,
    );
  L();
  L("### Slashes (OPG) by reason and party");
  L();
  L("| reason | slashed |");
  L("|---|---|");
  for (const [reason, row] of slashes)
    L(`| ${reason} | ${[...row].map(([p, c]) => `${p} ${c.n} x = ${fmt(c.amount)}`).join("; ")} |`);
  L();
  L("### Parties (OPG; wealth = wallet + bonded + unbonding + registry credits + unpaid dispute rewards)");
  L();
  L("| party | role | start | end | fees earned | dispute gains | slashed / bonds lost | net | verdict |");
  L("|---|---|---|---|---|---|---|---|---|");
  for (const r of partyRows) L(r);
  L();
  L(
    "The treasury's wealth includes the protocol fees the registry holds for it; dispute gains are the challenger's share of a slash, " +
      "ballot rewards and, for the treasury, the rest of every slash.",
  );
  L();
  L("### Checks");
  L();
  L("| check | result | detail |");
  L("|---|---|---|");
  for (const c of checks)
    L(`| ${c.name} | ${c.ok ? "PASS" : "**FAIL**"} | ${c.detail.replace(/\|/g, "/")} |`);
  L();
  const keeperText = [...counters.keeper].map(([k, v]) => `${v} ${k}`).join(", ");
  L(
    `Keeper transactions (anyone may send them): ${keeperText || "none"}. Clock steps forced while workers still had work: ${counters.forcedJumps}.`,
  );
  if (stragglers.length > 0) {
    L();
    L("Waits that timed out (the soak moved the clock on regardless):");
    for (const s of stragglers.slice(0, 20)) L(`- ${s}`);
  }
  const workerErrors = Object.entries(warnings).filter(([, w]) => w.error > 0);
  if (workerErrors.length > 0) {
    L();
    L("Worker error lines (level error or fatal), by process:");
    for (const [n, w] of workerErrors) L(`- ${n}: ${w.error} (${w.samples.slice(0, 8).join(" / ")})`);
  }
  L();
  L(`Worker logs: ${path.join(net.tmp, "soak.log")}`);
  const report = lines.join("\n");
  console.log(report);
  if (REPORT_FILE) fs.writeFileSync(REPORT_FILE, report + "\n");
  logFile.end();
  await net.stop();
  return checks.every((c) => c.ok);
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
