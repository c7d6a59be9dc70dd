import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers, type Interface, type Wallet } from "ethers";
import {
  executeQuantized,
  inputWords,
  loadManifest,
  loadProgram,
  packValues,
  releaseProver,
  witnessInput,
} from "../../zkml";
import { sha256File, writeManifest } from "../../zkml/bundle";
import { fullProve } from "../../zkml/prover/groth16";
import { programFromJson, programToJson } from "../../zkml/program-io";
import { bundleArchiveId, packBundle } from "../../workers/data/bundle-archive";
import { DataClient } from "../../workers/data/client";
import { outputsHash } from "../../workers/runtime/optimistic";
import { MODES, parseSubmitted, proofWords, readVerifiedResult, TOPICS } from "../../workers/runtime/tasks";
import { bundleKeyWords, bundleModelSpec } from "../../network/register-model";
import {
  account,
  fixtureBundle,
  freePort,
  stakeNode,
  startInferenceNode,
  startNetwork,
  startVerificationNode,
  stopAllSpawned,
  waitFor,
  waitForLog,
  type Network,
  type Proc,
} from "../../network/local-network";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const FEE = ethers.parseEther("1");
const STAKE = ethers.parseEther("5000");
/** The owner's challenger: staked for the verification role (minimum 500 OPG). */
const CHALLENGER_STAKE = ethers.parseEther("1000");
/** The claim collateral (TaskRegistry default): what a lapsed claim loses to the treasury. */
const COLLATERAL = ethers.parseEther("100");
/** Tasks the model owner submits on its lying model. */
const LYING_TASKS = 3;
/** Seconds to a task's deadline. */
const DEADLINE_IN = 3 * 3600;
const Status = { Open: 1n, Claimed: 2n, Verified: 3n, Expired: 4n, Pending: 5n };
const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;

/**
 * The custom error a call reverts with, decoded with `iface` (the registry's errors reach the caller through
 * the dispute manager, whose ABI does not declare them), as "Name(arg, ...)"; undefined when it succeeds.
 */
async function revertOf(call: Promise<unknown>, iface: Interface): Promise<string | undefined> {
  try {
    await call;
    return undefined;
  } catch (e) {
    const data = (e as { data?: string }).data;
    const parsed = data ? iface.parseError(data) : null;
    if (!parsed) return (e as Error).message;
    return `${parsed.name}(${parsed.args.map(String).join(", ")})`;
  }
}

/**
 * A copy of bundle `from` in `dir` whose program.json has the last dense layer's first bias raised by 1.0
 * (2^(2s) at the accumulator's scale: the first output moves by 2^s on every input), re-serialised, with
 * the manifest's hashes updated: a well-formed bundle whose program computes what its circuit never proves.
 */
function lyingCopy(from: string, dir: string): string {
  fs.cpSync(from, dir, { recursive: true });
  const file = path.join(dir, "program.json");
  const program = programFromJson(fs.readFileSync(file, "utf8"));
  const last = [...program.ops].reverse().find((op) => op.op === "dense");
  if (!last || last.op !== "dense") throw new Error("no dense op in the iris program");
  last.bias[0] += 1n << BigInt(2 * program.scaleBits);
  fs.writeFileSync(file, programToJson(program));
  const manifest = loadManifest(dir);
  for (const a of Object.values(manifest.artifacts)) a!.sha256 = sha256File(path.join(dir, a!.file));
  writeManifest(dir, manifest);
  return dir;
}

/**
 * Issue 19, attack 3 (a model whose bundle lies), played with real worker processes on a hardhat node. A
 * model owner publishes iris with a program.json that disagrees with its circuit (one bias changed, the
 * bundle otherwise well-formed: hashes, layout and the circuit's real verification key all match the
 * registration), submits optimistic tasks on it itself, and holds a staked verification key ready to prove
 * the circuit's true output against whatever a node would post. A real inference node and a real honest
 * verification node check the bundle (workers/runtime/bundle-consistency.ts, via BundleCache) and refuse
 * it: nothing is claimed, posted or attested, the tasks expire and the owner is refunded, and nobody's OPG
 * moves. The same iris bundle, unaltered, registered by another owner as another model, is served by the
 * same nodes meanwhile (posted with the verifier's attestation, finalised after the window): the refusal is
 * the lie's, not the model's.
 */
describe("a model whose bundle lies: refused end to end (hardhat node + worker processes)", function () {
  this.timeout(600_000);
  let net: Network;
  let honestDir: string;
  let lyingDir: string;
  let lyingBundleId: string;
  let lyingModel: bigint;
  let honestModel: bigint;
  /** Model owner and requester of the lying model. */
  let owner: Wallet;
  /** The owner's challenger: a staked verification key, played by the test. */
  let challenger: Wallet;
  /** Owner and requester of the honest model. */
  let honestOwner: Wallet;
  let inference: Proc;
  let verification: Proc;
  let attestUrl: string;
  let treasury: string;
  const node = account(5).address;
  const verifier = account(7).address;

  before(async function () {
    honestDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    treasury = await net.deployer.getAddress();
    lyingDir = lyingCopy(honestDir, path.join(net.tmp, "iris-lying"));
    const { token, tasks } = net.deployment;
    owner = account(3).connect(net.provider) as unknown as Wallet;
    honestOwner = account(4).connect(net.provider) as unknown as Wallet;
    for (const w of [owner, honestOwner]) {
      await (await token.connect(net.deployer).transfer(w.address, ethers.parseEther("100"))).wait();
      await (await token.connect(w).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
    }
    // Each owner publishes its bundle and registers it (ZK + optimistic) with the circuit's real key, the
    // royalty to itself. The lying bundle differs from the honest one in program.json alone.
    ({ bundleId: lyingBundleId, modelId: lyingModel } = await publish(owner, lyingDir));
    honestModel = (await publish(honestOwner, honestDir)).modelId;
    expect(lyingBundleId).to.not.equal(bundleArchiveId(packBundle(honestDir)));
    const registered = await net.deployment.models.getModel(lyingModel);
    const honest = await net.deployment.models.getModel(honestModel);
    expect(registered.verificationKeyHash, "the lying model carries the circuit's real key").to.equal(
      honest.verificationKeyHash,
    );
    expect(registered.onnxHash).to.equal(honest.onnxHash);

    const servicePort = await freePort();
    attestUrl = `http://127.0.0.1:${servicePort}`;
    await stakeNode(net, 5, 1, STAKE);
    await stakeNode(net, 7, 2, STAKE, attestUrl);
    challenger = (await stakeNode(net, 9, 2, CHALLENGER_STAKE)) as unknown as Wallet;

    inference = startInferenceNode(net, 5, path.join(net.tmp, "inference"), {
      extra: ["--attest-urls", attestUrl, "--attest-timeout-ms", "30000"],
    });
    // The verification node leaves finalising to the inference node (it would step in a day late).
    verification = startVerificationNode(net, 7, path.join(net.tmp, "verification"), {
      extra: ["--finalize-after-seconds", "86400"],
      metricsPort: servicePort,
    });
    await waitForLog(inference, "inference node started");
    await waitForLog(verification, "verification node started");
  });

  after(async function () {
    for (const p of [inference, verification]) await p?.stop("SIGKILL").catch(() => undefined);
    await stopAllSpawned();
    await net?.stop();
    await releaseProver();
  });

  /** Upload `dir` to the data node (idempotent) and register it from `from` (ZK + optimistic, royalty to `from`). */
  async function publish(from: Wallet, dir: string) {
    const archive = packBundle(dir);
    const bundleId = bundleArchiveId(archive);
    expect(await new DataClient(net.data.url).put(archive)).to.equal(bundleId);
    const spec = {
      ...bundleModelSpec(loadManifest(dir, { checkHashes: true }), {
        bundleId,
        fee: FEE,
        royaltyReceiver: from.address,
      }),
      verificationModes: MODES.zk | MODES.optimistic,
    };
    const models = net.deployment.models.connect(from);
    const receipt = await (await models.registerModel(spec, bundleKeyWords(dir))).wait();
    const event = receipt!.logs
      .map((l) => models.interface.parseLog(l))
      .find((e) => e?.name === "ModelRegistered")!;
    return { bundleId, modelId: event.args.modelId as bigint };
  }

  /**
   * An optimistic task on iris input `i`, submitted by `requester` on `modelId`, with what each program
   * computes on it: `honest` (what the circuit proves) and `lie` (what the lying program.json gives).
   */
  async function submit(requester: Wallet, modelId: bigint, i: number) {
    const manifest = loadManifest(honestDir);
    const floats = irisInputs[i % irisInputs.length];
    const q = executeQuantized(loadProgram(honestDir), floats);
    const lie = executeQuantized(loadProgram(lyingDir), floats);
    expect(lie.input, "same input quantisation").to.deep.equal(q.input);
    const input = inputWords(manifest, q.input);
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await net.deployment.tasks.connect(requester).submitTaskInMode(
        {
          modelId,
          input,
          inputDataHash: ethers.ZeroHash,
          fee: FEE,
          deadline: now + DEADLINE_IN,
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        },
        MODES.optimistic,
      )
    ).wait();
    const submitted = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
    return {
      taskId: submitted.taskId,
      task: submitted.task,
      input,
      quantized: q.input,
      honest: packValues(q.quantized, manifest.publicSignals.packBits),
      lie: packValues(lie.quantized, manifest.publicSignals.packBits),
    };
  }

  /** Every OPG position of `who` (wallet, stake, credits) and of the contracts holding OPG. */
  async function ledger(who: Record<string, string>) {
    const { token, tasks, staking, disputes } = net.deployment;
    const rows: Record<string, Record<string, bigint>> = {};
    for (const [name, a] of Object.entries(who)) {
      const info = await staking.nodeInfo(a);
      rows[name] = {
        wallet: await token.balanceOf(a),
        bonded: info.bonded,
        // collateral still locked by claims not settled (settled claims' collateral is released lazily)
        lockedUnsettled: info.locked - (await tasks.releasableCollateralOf(a)),
        credits: await tasks.creditsOf(a),
        protocolFees: await tasks.protocolFeesOf(a),
      };
    }
    for (const [name, c] of Object.entries({ taskRegistry: tasks, staking, disputes: disputes! }))
      rows[name] = { wallet: await token.balanceOf(await c.getAddress()) };
    return rows;
  }

  /** `before` with `deltas` added (each named position of each named party). */
  function moved(
    before: Record<string, Record<string, bigint>>,
    deltas: Record<string, Record<string, bigint>>,
  ) {
    const after = structuredClone(before);
    for (const [name, d] of Object.entries(deltas))
      for (const [k, v] of Object.entries(d)) after[name][k] += v;
    return after;
  }

  /** Transactions `from` sent in blocks `fromBlock` on: [to, selector name, first argument]. */
  async function txsFrom(from: string, fromBlock: number) {
    const { tasks } = net.deployment;
    const sent: { to: string; fn: string; taskId?: bigint }[] = [];
    const head = await net.provider.getBlockNumber();
    for (let n = fromBlock; n <= head; n++) {
      const block = await net.provider.getBlock(n, true);
      for (const tx of block!.prefetchedTransactions) {
        if (tx.from !== from) continue;
        const parsed = tasks.interface.parseTransaction(tx);
        sent.push({
          to: tx.to!,
          fn: parsed?.name ?? tx.data.slice(0, 10),
          taskId: parsed?.args[0] as bigint,
        });
      }
    }
    return sent;
  }

  async function passTime(seconds: number) {
    await net.provider.send("evm_increaseTime", [seconds]);
    await net.provider.send("evm_mine", []);
  }

  async function attest(taskId: bigint, claimer: string, outputs: bigint[]) {
    const res = await fetch(`${attestUrl}/attest`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ taskId: taskId.toString(), node: claimer, outputs: outputs.map(String) }),
    });
    return { status: res.status, body: (await res.json()) as { error?: string; signature?: string } };
  }

  it("nodes refuse the lying model (nothing claimed, posted or attested), its tasks expire refunded, every balance exact; the honest bundle is served", async function () {
    const { tasks, disputes } = net.deployment;
    const startBlock = await net.provider.getBlockNumber();
    const parties = {
      node,
      verifier,
      owner: owner.address,
      challenger: challenger.address,
      honestOwner: honestOwner.address,
      treasury,
    };
    const before = await ledger(parties);

    const lying: Awaited<ReturnType<typeof submit>>[] = [];
    for (let i = 0; i < LYING_TASKS; i++) lying.push(await submit(owner, lyingModel, i));
    const control = await submit(honestOwner, honestModel, LYING_TASKS);
    const lyingIds = lying.map((s) => s.taskId.toString());
    // The lie is real: on every task the program's output is not the circuit's.
    for (const s of lying) expect(s.lie, `task ${s.taskId}: program != circuit`).to.not.deep.equal(s.honest);

    // The honest model's task is posted with the verification node's attestation; every task on the lying
    // model is refused by the inference node before it is claimed (BundleCache's consistency check).
    await waitFor(
      "the control posted and every lying task refused",
      async () => {
        // A lying task claimed (the check bypassed) ends the wait at once: the assertions below say what.
        for (const s of lying) if ((await tasks.taskStatus(s.taskId)) !== Status.Open) return true;
        if ((await tasks.taskStatus(control.taskId)) !== Status.Pending) return false;
        const refused = inference.logs().filter((l) => l.msg === "task refused");
        return lyingIds.every((id) => refused.some((l) => l.taskId === id));
      },
      300_000,
      250,
      inference,
    );
    for (const s of lying)
      expect(await tasks.taskStatus(s.taskId), `task ${s.taskId} never claimed`).to.equal(Status.Open);
    const refusals = inference.logs().filter((l) => l.msg === "task refused");
    expect(refusals.map((l) => l.taskId).sort(), "refused: the lying tasks only, once each").to.deep.equal(
      [...lyingIds].sort(),
    );
    for (const r of refusals) {
      expect(r.modelId).to.equal(lyingModel.toString());
      const reason = String(r.reason);
      expect(reason).to.contain(
        `bundle ${lyingBundleId}: inconsistent bundle, its program and its circuit disagree`,
      );
      expect(reason).to.match(
        /program\.json is not the program model\.onnx compiles to with the manifest's options/,
      );
      expect(reason).to.match(
        /the circuit \(circuit\.wasm\) and program\.json disagree on \d+ of \d+ sampled inputs/,
      );
    }
    expect(
      inference
        .logs()
        .filter((l) => /inconsistent bundle/.test(JSON.stringify(l)) && l.msg !== "task refused"),
      "the refusal is logged as a task refusal and nothing else",
    ).to.deep.equal([]);

    // The owner's challenger is ready: a proof of the circuit's true output on the first task, bound to
    // itself. Had a node posted the program's output, this proof would have rejected it (+50 OPG to the
    // owner, -100 to the node, -100 per attester). Nothing was posted: there is nothing to challenge.
    const s0 = lying[0];
    const manifest = loadManifest(lyingDir);
    const binding = await tasks.taskBinding(s0.taskId, challenger.address);
    const { proof, publicSignals } = await fullProve(
      witnessInput(manifest, s0.quantized, BigInt(binding)),
      path.join(lyingDir, manifest.artifacts.wasm.file),
      path.join(lyingDir, manifest.artifacts.zkey!.file),
    );
    const proved = publicSignals.slice(0, s0.honest.length).map(BigInt);
    expect(proved, "the lying bundle's own circuit proves the honest output").to.deep.equal(s0.honest);
    // The proof is checked first (the registered key verifies it: the disproof is sound), then the dispute
    // opened: the registry refuses it, the task is still Open.
    const challengeError = await revertOf(
      disputes!
        .connect(challenger)
        .challengeWithProof.staticCall(
          s0.taskId,
          s0.task,
          outputsHash(s0.lie),
          [],
          s0.input,
          proved,
          proofWords(proof),
        ),
      tasks.interface,
    );
    expect(challengeError, "the proof holds; nothing was posted to challenge").to.equal(
      `TaskRegistryWrongStatus(${s0.taskId}, ${Status.Open})`,
    );

    // Within the challenge window: the control is attested and posted; nothing else happened on chain.
    const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(control.taskId));
    expect(posted.args.outputs).to.deep.equal(control.honest);
    const attested = await tasks.queryFilter(tasks.filters.TaskAttested(control.taskId));
    expect(attested.map((a) => a.args.attester)).to.deep.equal([verifier]);
    for (const s of lying) {
      expect(await tasks.taskStatus(s.taskId), `task ${s.taskId} never claimed`).to.equal(Status.Open);
      for (const filter of [
        tasks.filters.TaskClaimed(s.taskId),
        tasks.filters.TaskResultPosted(s.taskId),
        tasks.filters.TaskAttested(s.taskId),
      ])
        expect(await tasks.queryFilter(filter), `task ${s.taskId}`).to.deep.equal([]);
    }

    // The window passes: the inference node finalises the control.
    await passTime(Number((await tasks.modeParameters())[2]) + 5);
    await waitFor(
      "the control finalised",
      async () => (await tasks.taskStatus(control.taskId)) === Status.Verified,
      300_000,
      250,
      inference,
    );
    expect((await readVerifiedResult(tasks, control.taskId))!.outputs).to.deep.equal(control.honest);

    // Past the deadline: the lying tasks expire, still unclaimed, and the owner (requester) gets each fee back.
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const lastDeadline = Math.max(...lying.map((s) => Number(s.task.deadline)));
    await passTime(lastDeadline - now + 5);
    expect(await tasks.taskStatus(lying[0].taskId), "still open at its deadline").to.equal(Status.Open);
    for (const s of lying) {
      const receipt = await (await tasks.connect(owner).expire(s.taskId, s.task)).wait();
      const [expired] = receipt!.logs
        .map((l) => tasks.interface.parseLog(l))
        .filter((e) => e?.name === "TaskExpired");
      expect([expired!.args.requester, expired!.args.refund]).to.deep.equal([owner.address, FEE]);
      expect(await tasks.taskStatus(s.taskId)).to.equal(Status.Expired);
    }

    // What each node sent: the inference node only the control's claim, post and finalisation; the
    // verification node nothing (it attests off chain); the challenger nothing.
    const nodeTxs = await txsFrom(node, startBlock + 1);
    expect(nodeTxs.map((t) => [t.fn, t.taskId])).to.deep.equal([
      ["claimTask", control.taskId],
      ["submitResultOptimistic", control.taskId],
      ["finalizeResult", control.taskId],
    ]);
    expect(await txsFrom(verifier, startBlock + 1), "the verification node sent nothing").to.deep.equal([]);
    expect(await txsFrom(challenger.address, startBlock + 1)).to.deep.equal([]);
    // The verification node signed the control and nothing else.
    const signed = verification.logs().filter((l) => /attestation signed off chain/.test(String(l.msg)));
    expect(signed.map((l) => l.taskId)).to.deep.equal([control.taskId.toString()]);

    // Exact OPG. The control's fee: 70% the node, 10% the attester, 10% royalty to the honest owner, 10%
    // protocol (accrued on the node, to the treasury later). The lying model: every fee back to the owner,
    // no royalty, nothing slashed, nothing to the treasury, nothing held by the dispute manager.
    const after = await ledger(parties);
    expect(after).to.deep.equal(
      moved(before, {
        node: { credits: (FEE * 7n) / 10n, protocolFees: FEE / 10n },
        verifier: { credits: FEE / 10n },
        honestOwner: { wallet: -FEE, credits: FEE / 10n },
        taskRegistry: { wallet: FEE },
      }),
    );
    for (const p of ["owner", "challenger", "treasury"]) expect(after[p], p).to.deep.equal(before[p]);
    console.log(
      `      lying-bundle e2e: ${LYING_TASKS} tasks on the lying model refused unclaimed and expired ` +
        `(owner refunded ${ethers.formatEther(FEE * BigInt(LYING_TASKS))} OPG, net 0; node, verifier, ` +
        `treasury unchanged; the owner's challenge reverts ${challengeError}); control served: node credits ` +
        `+${ethers.formatEther((FEE * 7n) / 10n)} OPG, attester +${ethers.formatEther(FEE / 10n)} OPG`,
    );
  });

  it("a node that claims the lying model anyway gets no attestation: POST /attest is refused naming the inconsistent bundle", async function () {
    const { tasks } = net.deployment;
    const startBlock = await net.provider.getBlockNumber();
    // A careless inference node, played by the test: it runs the lying program without the check.
    const careless = (await stakeNode(net, 6, 1, STAKE)) as unknown as Wallet;
    const parties = {
      node,
      verifier,
      owner: owner.address,
      challenger: challenger.address,
      careless: careless.address,
      treasury,
    };
    const before = await ledger(parties);
    const s = await submit(owner, lyingModel, 0);
    await waitFor(
      "the inference node to refuse the task",
      async () =>
        (await tasks.taskStatus(s.taskId)) !== Status.Open ||
        inference.logs().some((l) => l.msg === "task refused" && l.taskId === s.taskId.toString()),
      300_000,
      250,
      inference,
    );
    expect(await tasks.taskStatus(s.taskId), "not claimed by the inference node").to.equal(Status.Open);
    await (await tasks.connect(careless).claimTask(s.taskId, s.task)).wait();

    // The verification node refuses to sign the program's output, and the circuit's too: it will not
    // attest anything for a model whose bundle it refuses.
    for (const outputs of [s.lie, s.honest]) {
      const reply = await attest(s.taskId, careless.address, outputs);
      expect(reply.status).to.equal(422);
      expect(reply.body.signature).to.equal(undefined);
      expect(reply.body.error).to.contain(
        `cannot re-execute the task: bundle ${lyingBundleId}: inconsistent bundle, its program and its circuit disagree`,
      );
      expect(reply.body.error).to.match(/disagree on \d+ of \d+ sampled inputs/);
    }
    expect(
      verification.logs().filter((l) => /attestation signed off chain/.test(String(l.msg))).length,
    ).to.equal(1);

    // Without a quorum the careless node posts nothing (posting unattested would only put its collateral
    // under the owner's proof); the honest inference node, which refused the model, does not take the lapsed
    // claim over; at the deadline the task expires: the owner refunded, the careless claim's collateral
    // slashed to the treasury (the registry's rule for a lapsed claim: no beneficiary, so not the owner).
    const [, claimExpiresAt] = await tasks.claimOf(s.taskId);
    let now = (await net.provider.getBlock("latest"))!.timestamp;
    await passTime(Number(claimExpiresAt) - now + 5);
    // Long enough for the inference node to see the lapse and decide (at a 150 ms poll).
    await new Promise((r) => setTimeout(r, 3000));
    expect(await tasks.taskStatus(s.taskId)).to.equal(Status.Claimed);
    expect((await tasks.claimOf(s.taskId))[0], "not taken over").to.equal(careless.address);
    now = (await net.provider.getBlock("latest"))!.timestamp;
    await passTime(Number(s.task.deadline) - now + 5);
    await (await tasks.connect(owner).expire(s.taskId, s.task)).wait();
    expect(await tasks.taskStatus(s.taskId)).to.equal(Status.Expired);
    expect(await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId))).to.deep.equal([]);
    expect(await txsFrom(node, startBlock + 1), "the inference node sent nothing").to.deep.equal([]);
    expect(await txsFrom(verifier, startBlock + 1), "the verification node sent nothing").to.deep.equal([]);

    expect(await ledger(parties)).to.deep.equal(
      moved(before, {
        careless: { bonded: -COLLATERAL },
        treasury: { wallet: COLLATERAL },
        staking: { wallet: -COLLATERAL },
      }),
    );
    for (const p of [inference, verification]) expect(await p.stop()).to.equal(0);
  });
});
