/**
 * npm run bench:hostile — the soak of issue 20: what strangers can send the network's services, beside a normal
 * task load, against real processes.
 *
 * Network: a `hardhat node`, the protocol, a data node (`opg node data`), an inference node (`opg node
 * inference`, account 5) and a verification node (`opg node verification`, account 10, its `/attest` at its
 * registered endpoint), all as child processes.
 *
 * Normal load: the digits MLP (64-32-16-10) registered for ZK and optimistic tasks; each phase submits the same
 * sequence of ZK tasks one at a time (submit-to-verified latency) and optimistic tasks (posted with the
 * verification node's off-chain attestation, which travels through its `POST /attest`).
 *
 * Phases: (1) baseline, no hostile load; (2) the same load while the hostile load runs; the report compares
 * the two. Hostile load, from other loopback addresses than the nodes' own traffic (127.0.0.2 to 127.0.0.9,
 * as strangers come from other hosts), each kind in its own loop for the whole phase:
 *   - every node's HTTP service (inference and verification `/metrics`, `/healthz`, `/attest`; the data node):
 *     requests cut mid-body, slowloris headers and bodies, oversized bodies, malformed JSON, wrong content
 *     types, bytes that are not HTTP, hundreds of idle connections, floods of the same refused `/attest`;
 *   - the data node: trickled uploads, distinct 1 MiB blobs as fast as it takes them, slow readers of a
 *     32 MiB blob that never read, aborted uploads, bad ids;
 *   - a hostile model: a plain model whose cost the task's input chooses (an n x n MatMul chain), registered
 *     by a stranger at fee 0, tasks with n up to 8001 submitted through the phase.
 * The report (markdown on stdout): requests by kind and answer, restarts (a node process that exited: target
 * 0), peak RSS of every node's process group, `/healthz` worst latency, and the normal tasks' latency with and
 * without the hostile load. Exit 1 when a node exited, a normal task failed, or a `/healthz` poll failed.
 *
 * OPG_HOSTILE_SECONDS (length of the hostile phase, default 180), OPG_HOSTILE_TASKS (normal ZK tasks per
 * phase, default 20), OPG_HOSTILE_REPORT (also write the report to this file), OPG_E2E_VERBOSE.
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { ethers, type Wallet } from "ethers";
import { packValues } from "../zkml";
import { loadPlainManifest, packagePlainModel, quantizePlainInput } from "../zkml/plain-bundle";
import { MODES, TOPICS } from "../workers/runtime/tasks";
import { ensureCliBuilt } from "../test/helpers/cli";
import {
  account,
  freePort,
  publishModel,
  sleep,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  waitForLog,
  type Proc,
} from "../network/local-network";
import { digitsWorkload, fundedRequester, submitOne } from "./lib/digits-workload";

const HOSTILE_SECONDS = Number(process.env.OPG_HOSTILE_SECONDS ?? 180);
const NORMAL_TASKS = Number(process.env.OPG_HOSTILE_TASKS ?? 20);
const REPORT_FILE = process.env.OPG_HOSTILE_REPORT;
/** The hostile model: its input's first value is n, the side of the square matrices it multiplies. */
const HOSTILE_MODEL = "test/fixtures/models/hostile_matmul.onnx";
const FEE = ethers.parseEther("1");
const STAKE = ethers.parseEther("5000");
const ATTACKER_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);

// ---------------------------------------------------------------------------------------------------------
// Measurements

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Resident set of every process in `pid`'s process group (the node and its sandbox or prover children), KiB. */
function groupRssKiB(pgid: number): number {
  let total = 0;
  for (const name of fs.readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8");
      // pgrp is the 5th field, after the parenthesised command (which may contain spaces).
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) !== pgid) continue;
      const status = fs.readFileSync(`/proc/${name}/status`, "utf8");
      total += Number(/VmRSS:\s+([0-9]+)/.exec(status)?.[1] ?? 0);
    } catch {
      // The process ended while it was read.
    }
  }
  return total;
}

class RssSampler {
  readonly peakKiB = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  constructor(private readonly procs: Record<string, Proc>) {}
  start() {
    this.timer = setInterval(() => {
      for (const [name, p] of Object.entries(this.procs)) {
        if (p.child.pid === undefined || p.hasExited()) continue;
        const kib = groupRssKiB(p.child.pid);
        this.peakKiB.set(name, Math.max(this.peakKiB.get(name) ?? 0, kib));
      }
    }, 250);
  }
  reset() {
    this.peakKiB.clear();
  }
  stop() {
    clearInterval(this.timer);
  }
}

/** Polls every node's /healthz each 200 ms and keeps the worst latency and the failures. */
class HealthProbe {
  readonly worstMs = new Map<string, number>();
  readonly failures = new Map<string, string[]>();
  private running = false;
  private loops: Promise<void>[] = [];
  constructor(private readonly urls: Record<string, string>) {}
  start() {
    this.running = true;
    this.loops = Object.entries(this.urls).map(async ([name, url]) => {
      while (this.running) {
        const t0 = Date.now();
        try {
          const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(60_000) });
          await res.arrayBuffer();
          if (res.status >= 500 && res.status !== 503) throw new Error(`status ${res.status}`);
        } catch (e) {
          const list = this.failures.get(name) ?? [];
          list.push((e as Error).message);
          this.failures.set(name, list);
        }
        this.worstMs.set(name, Math.max(this.worstMs.get(name) ?? 0, Date.now() - t0));
        await sleep(200);
      }
    });
  }
  reset() {
    this.worstMs.clear();
    this.failures.clear();
  }
  async stop() {
    this.running = false;
    await Promise.all(this.loops);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Hostile requests

/** Answers by kind: the HTTP status seen (or `reset`, `timeout`, `closed`: the server cut the connection). */
class Tally {
  readonly byKind = new Map<string, Map<string, number>>();
  add(kind: string, outcome: string) {
    const m = this.byKind.get(kind) ?? new Map<string, number>();
    m.set(outcome, (m.get(outcome) ?? 0) + 1);
    this.byKind.set(kind, m);
  }
  total(kind: string): number {
    return [...(this.byKind.get(kind)?.values() ?? [])].reduce((a, b) => a + b, 0);
  }
}

let attackerTurn = 0;
const attacker = () => ATTACKER_ADDRESSES[attackerTurn++ % ATTACKER_ADDRESSES.length];

/**
 * Writes `chunks` to a raw TCP connection to `port` (each after `gapMs`), then waits for the first bytes of
 * an answer for at most `waitMs`, and reports the status line's code or how the connection ended. With
 * `abortAfterMs` the connection is destroyed that long after the last chunk instead (the client goes away).
 */
function rawRequest(
  port: number,
  chunks: (string | Buffer)[],
  opts: {
    gapMs?: number;
    waitMs?: number;
    abortAfterMs?: number;
    keepOpenMs?: number;
    noRead?: boolean;
  } = {},
): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress: attacker() });
    let answer = "";
    let done = false;
    const finish = (outcome: string) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(outcome);
    };
    socket.on("error", (e: NodeJS.ErrnoException) =>
      finish(e.code === "ECONNRESET" ? "reset" : (e.code ?? "error")),
    );
    socket.on("data", (d) => {
      // Only the status line matters: a body (a 32 MiB blob) is not kept.
      if (answer.length < 64) answer += d.subarray(0, 64).toString("latin1");
      const m = /^HTTP\/1\.[01] ([0-9]{3})/.exec(answer);
      if (m && opts.keepOpenMs === undefined) finish(m[1]);
    });
    socket.on("close", () => {
      const m = /^HTTP\/1\.[01] ([0-9]{3})/.exec(answer);
      finish(m ? m[1] : "closed");
    });
    socket.on("connect", async () => {
      for (const c of chunks) {
        if (done) return;
        socket.write(c);
        if (opts.gapMs) await sleep(opts.gapMs);
      }
      if (opts.abortAfterMs !== undefined) {
        await sleep(opts.abortAfterMs);
        finish("aborted by client");
        return;
      }
      if (opts.keepOpenMs !== undefined) {
        // A reader that never reads: the answer stays in the kernel's buffers and the server's.
        if (opts.noRead) socket.pause();
        await sleep(opts.keepOpenMs);
        const m = /^HTTP\/1\.[01] ([0-9]{3})/.exec(answer);
        finish(m ? m[1] : "held open");
        return;
      }
      setTimeout(() => finish("timeout"), opts.waitMs ?? 30_000).unref();
    });
  });
}

function post(pathName: string, body: string | Buffer, contentType = "application/json", declared?: number) {
  const length = declared ?? Buffer.byteLength(body);
  return [
    `POST ${pathName} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${contentType}\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`,
    body,
  ];
}

const get = (pathName: string) => `GET ${pathName} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;

/** Runs `once` in `parallel` loops until `stop()` says so. */
function loop(parallel: number, stopped: () => boolean, once: () => Promise<void>): Promise<void>[] {
  return Array.from({ length: parallel }, async () => {
    while (!stopped()) {
      await once().catch(() => undefined);
    }
  });
}

interface Targets {
  inferencePort: number;
  verificationPort: number;
  dataPort: number;
  /** A blob of 32 MiB on the data node, for slow readers. */
  bigBlob: string;
  /** A task id claimed by the inference node (an `/attest` for it by anyone else is refused). */
  someTaskId: () => bigint;
}

function hostileLoad(t: Targets, tally: Tally, stopped: () => boolean): Promise<void>[] {
  const services: [string, number][] = [
    ["inference", t.inferencePort],
    ["verification", t.verificationPort],
  ];
  const loops: Promise<void>[] = [];
  const kind = (name: string, parallel: number, once: () => Promise<string>) =>
    loops.push(
      ...loop(parallel, stopped, async () => {
        const outcome = await once();
        tally.add(name, outcome);
        // A service that is down refuses at once: wait before trying again rather than spin this process.
        if (outcome === "ECONNREFUSED") await sleep(200);
      }),
    );
  const attestBody = (taskId: bigint) =>
    JSON.stringify({ taskId: taskId.toString(), node: ethers.Wallet.createRandom().address, outputs: ["1"] });
  for (const [svc, port] of services) {
    kind(`${svc}: POST /attest cut mid-body`, 2, () =>
      rawRequest(
        port,
        [post("/attest", '{"taskId":"1","node":', "application/json", 4096)[0], '{"taskId":"1",'],
        {
          abortAfterMs: 5,
        },
      ),
    );
    kind(`${svc}: slowloris headers`, 8, () =>
      rawRequest(
        port,
        [
          "GET /healthz HTTP/1.1\r\n",
          ..."X-A: b\r\n"
            .repeat(40)
            .split("\r\n")
            .map((l) => `${l}\r\n`),
        ],
        {
          gapMs: 500,
          waitMs: 5_000,
        },
      ),
    );
    kind(`${svc}: slow POST body`, 4, () =>
      rawRequest(
        port,
        [
          post("/attest", "", "application/json", 60_000)[0],
          ...Array.from({ length: 60 }, () => "x".repeat(10)),
        ],
        { gapMs: 1000, waitMs: 5_000 },
      ),
    );
    kind(`${svc}: 1 MiB POST body`, 1, () => rawRequest(port, post("/attest", Buffer.alloc(1 << 20, 0x41))));
    kind(`${svc}: malformed JSON`, 1, () => rawRequest(port, post("/attest", '{"taskId": [1,2,')));
    kind(`${svc}: text/plain`, 1, () => rawRequest(port, post("/attest", attestBody(1n), "text/plain")));
    kind(`${svc}: not HTTP`, 1, () =>
      rawRequest(port, [Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 37) % 256))]),
    );
    kind(`${svc}: same refused /attest`, 2, () =>
      rawRequest(port, post("/attest", attestBody(t.someTaskId()))),
    );
    kind(`${svc}: /metrics flood`, 1, () => rawRequest(port, [get("/metrics")]));
    kind(`${svc}: idle connections`, 100, () => rawRequest(port, [], { keepOpenMs: 20_000 }));
  }
  const dp = t.dataPort;
  kind("data: trickled PUT", 20, () =>
    rawRequest(
      dp,
      [
        "PUT /blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n",
        ...Array.from({ length: 120 }, () => "y".repeat(16)),
      ],
      { gapMs: 1000, waitMs: 5_000 },
    ),
  );
  kind("data: distinct 1 MiB blobs", 2, () => {
    const bytes = Buffer.alloc(1 << 20);
    bytes.writeDoubleLE(Math.random(), 0);
    bytes.writeDoubleLE(Date.now(), 8);
    return rawRequest(dp, [
      `PUT /blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`,
      bytes,
    ]);
  });
  kind("data: slow reader of a 32 MiB blob", 30, () =>
    rawRequest(dp, [get(`/blobs/${t.bigBlob}`)], { keepOpenMs: 30_000, noRead: true }),
  );
  kind("data: upload cut mid-body", 2, () =>
    rawRequest(
      dp,
      [
        "PUT /blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n",
        Buffer.alloc(5000, 1),
      ],
      { abortAfterMs: 5 },
    ),
  );
  kind("data: bad ids and paths", 1, () =>
    rawRequest(dp, [
      get(
        ["/blobs/../../etc/passwd", "/blobs/%2e%2e%2fx", "/blobs/ZZ", "/blobs/" + "a".repeat(5000)][
          Math.floor(Math.random() * 4)
        ],
      ),
    ]),
  );
  kind("data: idle connections", 100, () => rawRequest(dp, [], { keepOpenMs: 20_000 }));
  return loops;
}

// ---------------------------------------------------------------------------------------------------------
// The network and the normal load

async function main() {
  ensureCliBuilt();
  const digits = await digitsWorkload();
  const network = await startNetwork();
  const procs: Record<string, Proc> = {};
  const report: string[] = [];
  const out = (line = "") => {
    report.push(line);
    console.log(line);
  };
  try {
    const { modelId } = await publishModel(network, digits.bundleDir, FEE, {
      verificationModes: MODES.zk | MODES.optimistic,
    });
    const verificationPort = await freePort();
    const inferencePort = await freePort();
    await stakeNode(network, 5, 1, STAKE);
    await stakeNode(network, 10, 2, STAKE, `http://127.0.0.1:${verificationPort}`);
    const requester = await fundedRequester(network, FEE * BigInt(4 * NORMAL_TASKS + 20));
    const { tasks } = network.deployment;

    // The stranger's model: a plain bundle whose cost its input picks, fee 0, registered by a fresh account.
    let hostileModel: { modelId: bigint; dir: string } | undefined;
    if (fs.existsSync(HOSTILE_MODEL)) {
      const dir = path.join(network.tmp, "hostile-plain");
      await packagePlainModel(path.resolve(HOSTILE_MODEL), dir);
      const { modelId: id } = await publishModel(network, dir, 0n, { verificationModes: MODES.optimistic });
      hostileModel = { modelId: id, dir };
    }

    procs.data = network.data.proc;
    procs.inference = startInferenceNode(network, 5, path.join(network.tmp, "inference"), {
      metricsPort: inferencePort,
      extra: ["--attest-timeout-ms", "30000"],
      output: { keepLines: 2000 },
    });
    procs.verification = startVerificationNode(network, 10, path.join(network.tmp, "verification"), {
      metricsPort: verificationPort,
      output: { keepLines: 2000 },
    });
    await waitForLog(procs.inference, "inference node started");
    await waitForLog(procs.verification, "verification node started");
    const pids = Object.fromEntries(Object.entries(procs).map(([n, p]) => [n, p.child.pid]));

    // A 32 MiB blob for the slow readers.
    const big = Buffer.alloc(32 << 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    const put = await fetch(`${network.data.url}/blobs`, { method: "PUT", body: big });
    const bigBlob = ((await put.json()) as { id: string }).id;

    // Normal load.
    const verifiedAt = new Map<bigint, number>();
    const postedAttested = new Set<bigint>();
    let polling = true;
    let fromBlock = 0;
    const poller = (async () => {
      while (polling) {
        const head = await network.provider.getBlockNumber();
        for (const log of await network.provider.getLogs({
          address: await tasks.getAddress(),
          topics: [[TOPICS.verified, TOPICS.attested]],
          fromBlock,
          toBlock: head,
        })) {
          const id = BigInt(log.topics[1]);
          if (log.topics[0] === TOPICS.verified && !verifiedAt.has(id)) verifiedAt.set(id, Date.now());
          if (log.topics[0] === TOPICS.attested) postedAttested.add(id);
        }
        fromBlock = head + 1;
        await sleep(50);
      }
    })();
    /** A stranger (account 15, no OPG): submits the hostile model's fee-0 tasks from its own nonce sequence. */
    const stranger = account(15).connect(network.provider) as unknown as Wallet;
    const submit = async (i: number, mode: number, model = modelId, input?: bigint[]) => {
      const fromStranger = model !== modelId;
      const task = { modelId: model, input: input ?? digits.words(i), fee: fromStranger ? 0n : FEE, mode };
      return (await submitOne(network, fromStranger ? stranger : requester, task)).taskId;
    };
    let claimedId = 1n;
    /** Polls `fn` until true; fails at once, naming it, when a node process has exited. */
    const until = async (what: string, fn: () => boolean) => {
      const t0 = Date.now();
      while (!fn()) {
        const dead = Object.values(procs).find((p) => p.hasExited());
        if (dead)
          throw new Error(`${dead.name} exited (${dead.exitDescription()}) while waiting for ${what}`);
        if (Date.now() - t0 > 600_000) throw new Error(`timed out after 600 s waiting for ${what}`);
        await sleep(20);
      }
    };
    interface PhaseResult {
      latencies: number[];
      optimistic: number;
      failed?: string;
    }
    const normalPhase = async (label: string): Promise<PhaseResult> => {
      const result: PhaseResult = { latencies: [], optimistic: 0 };
      try {
        const optimistic: bigint[] = [];
        for (let i = 0; i < NORMAL_TASKS; i++) {
          const t0 = Date.now();
          const id = await submit(i, MODES.zk);
          claimedId = id;
          await until(`${label}: task ${id} verified`, () => verifiedAt.has(id));
          result.latencies.push((verifiedAt.get(id)! - t0) / 1000);
          if (i % 4 === 0) optimistic.push(await submit(i, MODES.optimistic));
        }
        await until(`${label}: optimistic tasks posted with an attestation`, () =>
          optimistic.every((id) => postedAttested.has(id)),
        );
        result.optimistic = optimistic.length;
      } catch (e) {
        result.failed = (e as Error).message;
      }
      return result;
    };

    // Warm-up (bundle fetched, prover started), not counted.
    const warm = await normalPhase("warm-up");
    if (warm.failed) throw new Error(`warm-up failed: ${warm.failed}`);
    const sampler = new RssSampler(procs);
    const health = new HealthProbe({
      inference: `http://127.0.0.1:${inferencePort}`,
      verification: `http://127.0.0.1:${verificationPort}`,
      data: network.data.url,
    });
    sampler.start();
    health.start();
    const baseline = await normalPhase("baseline");
    const basePeak = new Map(sampler.peakKiB);
    const baseWorst = new Map(health.worstMs);
    sampler.reset();
    health.reset();

    // Hostile phase: the same normal load while every kind of hostile request runs.
    const tally = new Tally();
    let stopped = false;
    const started = Date.now();
    const attacks = hostileLoad(
      {
        inferencePort,
        verificationPort,
        dataPort: Number(new URL(network.data.url).port),
        bigBlob,
        someTaskId: () => claimedId,
      },
      tally,
      () => stopped,
    );
    const hostileTasks: bigint[] = [];
    const hostileModelLoop = (async () => {
      if (!hostileModel) return;
      const sizes = [8001, 4000, 2048, 8001];
      const m = loadPlainManifest(hostileModel.dir);
      for (let i = 0; !stopped; i++) {
        const x = new Array<number>(m.publicSignals.inputCount).fill(0);
        // The model's n is floor(|x| * 64) + 1 (scripts/fixtures/make_hostile.ts).
        x[0] = (sizes[i % sizes.length] - 1) / 64;
        const words = packValues(quantizePlainInput(m, x), m.publicSignals.packBits);
        hostileTasks.push(await submit(i, MODES.optimistic, hostileModel.modelId, words).catch(() => -1n));
        await sleep(10_000);
      }
    })();
    const underAttack = await normalPhase("hostile");
    const remaining = HOSTILE_SECONDS * 1000 - (Date.now() - started);
    if (remaining > 0) await sleep(remaining);
    stopped = true;
    await Promise.all(attacks);
    await hostileModelLoop;
    const elapsed = (Date.now() - started) / 1000;
    // After the load: every node still up and healthy, and serves one more task.
    const afterPhase = await normalPhase("after");
    const after = afterPhase.failed ? `FAILED: ${afterPhase.failed}` : "served";
    await health.stop();
    sampler.stop();
    polling = false;
    await poller;

    const restarts = Object.entries(procs).filter(([n, p]) => p.hasExited() || p.child.pid !== pids[n]);
    const refusedOnce = hostileModel
      ? procs.inference.logs().filter((l) => String(l.msg).includes("refused")).length
      : 0;
    out(
      `\n## bench:hostile — ${elapsed.toFixed(0)} s of hostile load beside ${NORMAL_TASKS} ZK + ${underAttack.optimistic} optimistic digits tasks\n`,
    );
    out("| hostile request | sent | answers |");
    out("|---|---|---|");
    let sent = 0;
    for (const [k, m] of [...tally.byKind].sort()) {
      sent += tally.total(k);
      out(
        `| ${k} | ${tally.total(k)} | ${[...m]
          .sort((a, b) => b[1] - a[1])
          .map(([o, c]) => `${o} x${c}`)
          .join(", ")} |`,
      );
    }
    out(
      `| hostile model tasks (n up to 8001) | ${hostileTasks.length} | ${hostileModel ? `refusal log lines on the inference node: ${refusedOnce}` : "fixture missing: not run"} |`,
    );
    out(`\nTotal hostile requests: ${sent}.\n`);
    out(
      "| process | restarts | peak RSS baseline | peak RSS hostile | worst /healthz baseline | worst /healthz hostile | failed /healthz polls |",
    );
    out("|---|---|---|---|---|---|---|");
    for (const name of ["data", "inference", "verification"]) {
      const mib = (k?: number) => (k === undefined ? "-" : `${(k / 1024).toFixed(0)} MiB`);
      out(
        `| ${name} | ${restarts.some(([n]) => n === name) ? 1 : 0} | ${mib(basePeak.get(name))} | ${mib(sampler.peakKiB.get(name))} | ${baseWorst.get(name) ?? "-"} ms | ${health.worstMs.get(name) ?? "-"} ms | ${health.failures.get(name)?.length ?? 0} |`,
      );
    }
    const p = (l: number[], q: number) => percentile(l, q).toFixed(2);
    out("\n| normal ZK tasks (submit to verified) | p50 | p95 | max |");
    out("|---|---|---|---|");
    out(
      `| baseline | ${p(baseline.latencies, 50)} s | ${p(baseline.latencies, 95)} s | ${p(baseline.latencies, 100)} s |`,
    );
    out(
      `| under hostile load | ${p(underAttack.latencies, 50)} s | ${p(underAttack.latencies, 95)} s | ${p(underAttack.latencies, 100)} s |`,
    );
    out(
      `\nRatio of p50 under hostile load to baseline: ${(percentile(underAttack.latencies, 50) / percentile(baseline.latencies, 50)).toFixed(2)}x. Optimistic tasks posted with the verification node's attestation: ${baseline.optimistic} baseline, ${underAttack.optimistic} under load. After the load: ${after}.`,
    );
    for (const [name, p] of restarts) {
      out(
        `\n${name} exited (${p.exitDescription()}); its last output:\n\n\`\`\`\n${p.output.slice(-25).join("\n")}\n\`\`\``,
      );
    }
    const failures = [
      ...restarts.map(([n]) => `${n} exited or restarted`),
      ...[...health.failures].map(([n, l]) => `${n}: ${l.length} /healthz polls failed (${l[0]})`),
      ...(baseline.failed ? [`baseline: ${baseline.failed}`] : []),
      ...(underAttack.failed ? [`normal load under hostile load: ${underAttack.failed}`] : []),
      ...(after === "served" ? [] : [`after the load: ${after}`]),
    ];
    out(
      failures.length
        ? `\nFAILED: ${failures.join("; ")}`
        : "\nAll checks passed: no restart, every /healthz poll answered, every normal task served.",
    );
    if (REPORT_FILE) fs.writeFileSync(REPORT_FILE, report.join("\n") + "\n");
    if (failures.length) process.exitCode = 1;
  } finally {
    for (const p of [procs.inference, procs.verification]) await p?.stop().catch(() => p.stop("SIGKILL"));
    await network.stop();
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
