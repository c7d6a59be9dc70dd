import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers, getBytes, type Wallet } from "ethers";
import pino from "pino";
import {
  executeQuantized,
  inputWords,
  loadManifest,
  loadProgram,
  packValues,
  witnessInput,
} from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";
import {
  packagePlainModel,
  plainOutputWords,
  quantizePlainInput,
  runPlainBundle,
} from "../../zkml/plain-bundle";
import { parseSubmitted, proofWords, readVerifiedResult, TOPICS, MODES } from "../../workers/runtime/tasks";
import { outputsHash } from "../../workers/runtime/optimistic";
import { ServiceHttp } from "../../workers/runtime/service";
import { parseAttestRequest } from "../../workers/verification/attest";
import { loadPlainManifest } from "../../zkml/plain-bundle";
import {
  account,
  fixtureBundle,
  freePort,
  publishModel,
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
/** OPG verification node 7 holds in its wallet (bonds of challenges by vote). */
const BOND_FUNDS = ethers.parseEther("1000");
/** The node's claim collateral, slashed for a lie (TaskRegistry default). */
const COLLATERAL = ethers.parseEther("100");
/** What each attester of a result proved wrong loses (DisputeManager default). */
const ATTESTER_SLASH = ethers.parseEther("100");
const TASKS = 6;
/** The inference node lies (fault injection) on tasks whose id is a multiple of this. */
const LIE_EVERY = 3;
const Status = { Open: 1n, Claimed: 2n, Verified: 3n, Expired: 4n, Pending: 5n, Disputed: 6n, Rejected: 7n };
const NODE_WRONG = 1n;
/** DisputeManager's fixed-point scale of a dispute's reward per unit of winning weight. */
const REWARD_SCALE = 10n ** 27n;
const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;

/** The custom error a call reverts with (ethers decodes it from the contract's ABI), or undefined. */
async function revertName(call: Promise<unknown>): Promise<string | undefined> {
  try {
    await call;
    return undefined;
  } catch (e) {
    return (e as { revert?: { name?: string } }).revert?.name ?? (e as Error).message;
  }
}

/** A prometheus sample's value from a node's /metrics (0 when absent). */
async function metric(port: number, name: string, labels: string): Promise<bigint> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? BigInt(Number(line.split(" ").pop()).toLocaleString("fullwide", { useGrouping: false })) : 0n;
}

/**
 * The optimistic mode with real processes on a hardhat node, as issue 19's review left it: an inference node
 * that posts results without proof (and lies on every third task: the test-only faultLieEvery) only with
 * its task's quorum of attestations signed off chain, and honest verification nodes that re-execute every
 * posted result. The inference node asks the honest verification node first: it signs every honest result
 * and refuses every lie, which a colluding verifier (a key of this test, staked for the verification role,
 * that signs whatever it is asked) then signs. Each lie is caught by the honest verification node, which
 * proves the true outputs bound to itself and challenges in one transaction: the node loses its collateral
 * (half to the challenger), the colluder its attester slash, the requester is refunded; the inference node
 * never answers anything. Every OPG amount is checked exactly.
 */
describe("optimistic mode end to end (hardhat node + worker processes)", function () {
  this.timeout(900_000);
  let net: Network;
  let bundleDir: string;
  let modelId: bigint;
  let requester: Wallet;
  let colluder: Wallet;
  let colluding: { http: ServiceHttp; signed: bigint[] };
  const procs: Proc[] = [];
  /** The service ports of verification nodes 7 and 8 and of the colluder: where /attest is served. */
  const servicePort: Record<number, number> = {};
  const url = (i: number) => `http://127.0.0.1:${servicePort[i]}`;
  /** How long the inference node waits for attestations (generous: a loaded 2-core machine). */
  const attestTimeout = ["--attest-timeout-ms", "30000"];

  before(async function () {
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    ({ modelId } = await publishModel(net, bundleDir, FEE, {
      verificationModes: MODES.zk | MODES.optimistic,
    }));
    for (const i of [7, 8, 9]) servicePort[i] = await freePort();
    await stakeNode(net, 5, 1, STAKE);
    await stakeNode(net, 7, 2, STAKE, url(7));
    await stakeNode(net, 8, 2, STAKE, url(8));
    colluder = (await stakeNode(net, 9, 2, STAKE, url(9))) as unknown as Wallet;
    const { token, tasks } = net.deployment;
    await (await token.connect(net.deployer).transfer(account(7).address, BOND_FUNDS)).wait();
    requester = account(1).connect(net.provider) as unknown as Wallet;
    await (await token.connect(net.deployer).transfer(requester.address, ethers.parseEther("100"))).wait();
    await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
    colluding = await startColluder();
  });

  after(async function () {
    for (const p of procs) await p.stop("SIGKILL").catch(() => undefined);
    await stopAllSpawned();
    await colluding?.http.close();
    await net?.stop();
  });

  /** The colluder's `/attest`: signs any outputs for any task, as no honest verification node would. */
  async function startColluder() {
    const http = new ServiceHttp(pino({ level: "silent" }));
    const signed: bigint[] = [];
    http.postJson("/attest", async (body) => {
      const { taskId, node, outputs } = parseAttestRequest(body);
      const digest = await net.deployment.tasks.attestationDigest(taskId, node, outputsHash(outputs));
      signed.push(taskId);
      const signature = await colluder.signMessage(getBytes(digest));
      return { status: 200, body: { attester: colluder.address, signature } };
    });
    await http.listen(servicePort[9]);
    return { http, signed };
  }

  async function submitOptimistic(
    i: number,
    opts: { plain?: { dir: string; modelId: bigint }; modelId?: bigint } = {},
  ) {
    const { plain } = opts;
    let input: bigint[];
    let expected: bigint[];
    let quantized: bigint[] = [];
    if (plain) {
      const manifest = loadPlainManifest(plain.dir);
      const q = quantizePlainInput(manifest, irisInputs[i % irisInputs.length]);
      input = packValues(q, manifest.publicSignals.packBits);
      expected = plainOutputWords(manifest, await runPlainBundle(plain.dir, q));
    } else {
      const manifest = loadManifest(bundleDir);
      const q = executeQuantized(loadProgram(bundleDir), irisInputs[i % irisInputs.length]);
      quantized = q.input;
      input = inputWords(manifest, q.input);
      expected = packValues(q.quantized, manifest.publicSignals.packBits);
    }
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await net.deployment.tasks.connect(requester).submitTaskInMode(
        {
          modelId: plain?.modelId ?? opts.modelId ?? modelId,
          input,
          inputDataHash: ethers.ZeroHash,
          fee: FEE,
          deadline: now + 3 * 3600,
          callback: ethers.ZeroAddress,
          callbackGasLimit: 0,
        },
        MODES.optimistic,
      )
    ).wait();
    const log = receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!;
    const submitted = parseSubmitted(log);
    return { taskId: submitted.taskId, task: submitted.task, input, expected, quantized };
  }

  /** The transactions that emitted a log about `taskId` (registry or dispute manager), in chain order. */
  async function txsOfTask(taskId: bigint, fromBlock: number): Promise<string[]> {
    const logs = await net.provider.getLogs({
      address: [await net.deployment.tasks.getAddress(), await net.deployment.disputes!.getAddress()],
      topics: [null, ethers.toBeHex(taskId, 32)],
      fromBlock,
    });
    return [...new Set(logs.map((l) => l.transactionHash))];
  }

  /** The transactions `from` sent to `to` in blocks `fromBlock` on. */
  async function txsSentTo(from: string, to: string, fromBlock: number): Promise<string[]> {
    const hashes: string[] = [];
    const head = await net.provider.getBlockNumber();
    for (let n = fromBlock; n <= head; n++) {
      const block = await net.provider.getBlock(n, true);
      for (const tx of block!.prefetchedTransactions)
        if (tx.from === from && tx.to?.toLowerCase() === to.toLowerCase()) hashes.push(tx.hash);
    }
    return hashes;
  }

  async function passWindow(seconds: number) {
    await net.provider.send("evm_increaseTime", [seconds]);
    await net.provider.send("evm_mine", []);
  }

  it("finalises every honest result, proves every lie wrong in one transaction, and pays exactly", async function () {
    const { token, tasks, staking, disputes } = net.deployment;
    const node = account(5).address;
    const verifier = account(7).address;
    const treasury = await net.deployer.getAddress();
    const startBlock = await net.provider.getBlockNumber();
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference"), {
      extra: [
        "--fault-lie-every",
        String(LIE_EVERY),
        "--attest-urls",
        `${url(7)},${url(9)}`,
        ...attestTimeout,
      ],
    });
    // The verification node leaves finalising to the inference node (it would step in a day late).
    const verification = startVerificationNode(net, 7, path.join(net.tmp, "verification"), {
      extra: ["--finalize-after-seconds", "86400"],
      metricsPort: servicePort[7],
    });
    procs.push(inference, verification);
    await waitForLog(inference, "inference node started");
    await waitForLog(verification, "verification node started");

    const requesterBefore = await token.balanceOf(requester.address);
    const verifierBefore = await token.balanceOf(verifier);
    const treasuryBefore = await token.balanceOf(treasury);
    const colluderStakeBefore = (await staking.nodeInfo(colluder.address)).bonded;
    const submitted = [];
    for (let i = 0; i < TASKS; i++) submitted.push(await submitOptimistic(i));
    const lies = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) === 0n);
    const honest = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) !== 0n);
    expect(lies.length, "some tasks are lied on").to.be.greaterThan(0);

    // Within the challenge window, with no time travel: every honest result posted with the verification
    // node's attestation, every lie posted with the colluder's and already rejected by the verification
    // node's proof.
    await waitFor(
      "every honest result attested and every lie proved wrong",
      async () => {
        for (const s of honest) if ((await tasks.taskStatus(s.taskId)) !== Status.Pending) return false;
        for (const s of lies) if ((await tasks.taskStatus(s.taskId)) !== Status.Rejected) return false;
        return true;
      },
      600_000,
      500,
      verification,
    );
    const [, , challengeWindow] = await tasks.modeParameters();
    for (const s of lies) {
      const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
      expect(posted.args.outputs, `task ${s.taskId} was lied on`).not.to.deep.equal(s.expected);
      const [attested] = await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId));
      expect(attested.args.attester, "the lie rode with the colluder's signature").to.equal(colluder.address);
      expect(attested.transactionHash).to.equal(posted.transactionHash);
      // One transaction from the verification node: dispute opened and resolved, result rejected, node and
      // attester slashed. Nothing before or after it, and nothing from the node.
      const [opened] = await disputes.queryFilter(disputes.filters.DisputeOpened(s.taskId));
      expect(opened.args.challenger).to.equal(verifier);
      expect(opened.args.node).to.equal(node);
      expect(opened.args.bond, "no bond: the proof is the evidence").to.equal(0n);
      expect(opened.args.circuit).to.equal(true);
      const [resolved] = await disputes.queryFilter(disputes.filters.DisputeResolved(s.taskId));
      expect([resolved.args.outcome, resolved.args.bondTo]).to.deep.equal([NODE_WRONG, verifier]);
      const [rejected] = await tasks.queryFilter(tasks.filters.TaskRejected(s.taskId));
      expect([rejected.args.outcome, rejected.args.refund]).to.deep.equal([NODE_WRONG, FEE]);
      const [slashed] = await disputes.queryFilter(disputes.filters.AttesterSlashed(s.taskId));
      expect([slashed.args.attester, slashed.args.amount]).to.deep.equal([colluder.address, ATTESTER_SLASH]);
      for (const e of [resolved, rejected, slashed])
        expect(e.transactionHash).to.equal(opened.transactionHash);
      const challengeTx = (await net.provider.getTransaction(opened.transactionHash))!;
      expect(challengeTx.from).to.equal(verifier);
      expect(challengeTx.data.slice(0, 10)).to.equal(
        disputes.interface.getFunction("challengeWithProof")!.selector,
      );
      const challengedAt = (await net.provider.getBlock(opened.blockNumber))!.timestamp;
      expect(challengedAt, "challenged within the window").to.be.at.most(Number(posted.args.windowEnd));
      const [claimed] = await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId));
      const txs = (await txsOfTask(s.taskId, claimed.blockNumber)).filter(
        (h) => h !== claimed.transactionHash,
      );
      expect(txs, `task ${s.taskId}: post, challenge`).to.deep.equal([
        posted.transactionHash,
        opened.transactionHash,
      ]);
    }
    for (const s of honest) {
      const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
      expect(posted.args.outputs).to.deep.equal(s.expected);
      const attested = await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId));
      expect(attested.map((a) => a.args.attester)).to.deep.equal([verifier]);
      expect(attested[0].transactionHash, `task ${s.taskId} attested in its posting tx`).to.equal(
        posted.transactionHash,
      );
      expect((await net.provider.getTransaction(posted.transactionHash))!.from).to.equal(node);
    }
    // The verification node signed every honest result and refused every lie (the colluder signed those).
    const signedLogs = verification.logs().filter((l) => /attestation signed off chain/.test(String(l.msg)));
    const refusedLogs = verification.logs().filter((l) => /refused to sign/.test(String(l.msg)));
    expect(signedLogs.length).to.equal(honest.length);
    expect(refusedLogs.length).to.be.greaterThanOrEqual(lies.length);
    expect([...new Set(colluding.signed)].sort()).to.deep.equal(lies.map((s) => s.taskId).sort());
    const challenges = verification
      .logs()
      .filter((l) => /proved the true outputs and challenged/.test(String(l.msg)));
    expect(challenges).to.have.length(lies.length);

    await passWindow(Number(challengeWindow) + 5);
    await waitFor(
      "every honest result final",
      async () => {
        for (const s of honest) if ((await tasks.taskStatus(s.taskId)) !== Status.Verified) return false;
        return true;
      },
      600_000,
      500,
      inference,
    );

    // Honest: finalised by the inference node itself: post (with its attestation) + finalise.
    const gas: bigint[] = [];
    for (const s of honest) {
      const result = await readVerifiedResult(tasks, s.taskId);
      expect(result!.node).to.equal(node);
      expect(result!.outputs).to.deep.equal(s.expected);
      const [verified] = await tasks.queryFilter(tasks.filters.TaskVerified(s.taskId));
      expect((await net.provider.getTransaction(verified.transactionHash))!.from).to.equal(node);
      const [claimed] = await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId));
      const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
      const txs = (await txsOfTask(s.taskId, claimed.blockNumber)).filter(
        (h) => h !== claimed.transactionHash,
      );
      expect(txs, `task ${s.taskId}: post + finalise`).to.deep.equal([
        posted.transactionHash,
        verified.transactionHash,
      ]);
      for (const hash of txs) gas.push((await net.provider.getTransactionReceipt(hash))!.gasUsed);
    }
    expect(
      await txsSentTo(node, await disputes.getAddress(), startBlock),
      "the inference node never sends the dispute manager anything",
    ).to.be.empty;

    // Exact OPG. Each honest fee: 70% the node, 10% the attester, 10% royalty (the deployer owns the model),
    // 10% protocol. Each lie: the node's 100 OPG collateral slashed, half to the challenger's wallet, half to
    // the treasury; the colluder's 100 OPG attester slash to the treasury; the requester refunded. The
    // verification node put no bond at risk: its wallet only gains.
    const h = BigInt(honest.length);
    const l = BigInt(lies.length);
    expect(await tasks.creditsOf(node)).to.equal(((FEE * 7n) / 10n) * h);
    expect(await tasks.protocolFeesOf(node)).to.equal((FEE / 10n) * h);
    expect(await tasks.creditsOf(verifier)).to.equal((FEE / 10n) * h);
    expect(await tasks.creditsOf(treasury)).to.equal((FEE / 10n) * h);
    expect(await tasks.creditsOf(colluder.address)).to.equal(0n);
    expect(await token.balanceOf(requester.address)).to.equal(requesterBefore - FEE * h);
    const info = await staking.nodeInfo(node);
    expect(info.bonded).to.equal(STAKE - COLLATERAL * l);
    expect(info.locked - (await tasks.releasableCollateralOf(node)), "no collateral left locked").to.equal(
      0n,
    );
    expect(await token.balanceOf(verifier)).to.equal(verifierBefore + (COLLATERAL / 2n) * l);
    expect(await token.balanceOf(verifier)).to.equal(BOND_FUNDS + (COLLATERAL / 2n) * l);
    expect((await staking.nodeInfo(verifier)).bonded, "the honest verifier lost nothing").to.equal(STAKE);
    expect((await staking.nodeInfo(colluder.address)).bonded).to.equal(
      colluderStakeBefore - ATTESTER_SLASH * l,
    );
    expect(await token.balanceOf(treasury)).to.equal(treasuryBefore + (COLLATERAL / 2n + ATTESTER_SLASH) * l);
    expect(
      await token.balanceOf(await disputes.getAddress()),
      "nothing held by the dispute manager",
    ).to.equal(0n);
    // The verification node's journal and metrics record what it won.
    expect(await metric(servicePort[7], "opg_dispute_amount_wei", 'kind="won"')).to.equal(
      (COLLATERAL / 2n) * l,
    );
    expect(await metric(servicePort[7], "opg_optimistic_actions_total", 'action="won"')).to.equal(l);

    const postGas = gas.filter((_, i) => i % 2 === 0);
    const finalizeGas = gas.filter((_, i) => i % 2 === 1);
    const challengeGas = [];
    for (const s of lies) {
      const [opened] = await disputes.queryFilter(disputes.filters.DisputeOpened(s.taskId));
      challengeGas.push((await net.provider.getTransactionReceipt(opened.transactionHash))!.gasUsed);
    }
    const timing = challenges.map((c) => `prove ${c.proveMs} ms, check to mined ${c.totalMs} ms`);
    console.log(
      `      optimistic e2e: post with 1 off-chain attestation ${postGas.join("/")} gas, finalise ` +
        `${finalizeGas.join("/")} gas; challengeWithProof ${challengeGas.join("/")} gas (${timing.join("; ")})`,
    );
    console.log(
      `      optimistic e2e: ${TASKS} tasks, ${h} honest attested+finalised, ${l} lies proved wrong in one tx; ` +
        `node credits ${ethers.formatEther(await tasks.creditsOf(node))} OPG, attester credits ` +
        `${ethers.formatEther(await tasks.creditsOf(verifier))} OPG, node slashed ${ethers.formatEther(COLLATERAL * l)} OPG, ` +
        `challenger wallet +${ethers.formatEther((COLLATERAL / 2n) * l)} OPG, colluding attester slashed ` +
        `${ethers.formatEther(ATTESTER_SLASH * l)} OPG, treasury +${ethers.formatEther((COLLATERAL / 2n + ATTESTER_SLASH) * l)} OPG, ` +
        `requester refunded ${ethers.formatEther(FEE * l)} OPG`,
    );

    // The verification node also audits each finalised result the way it was settled, and agrees.
    const reportsFile = path.join(net.tmp, "verification", "reports.jsonl");
    const reports = await waitFor(
      "the verification node's audit of every finalised result",
      async () => {
        if (!fs.existsSync(reportsFile)) return undefined;
        const lines = fs.readFileSync(reportsFile, "utf8").split("\n").filter(Boolean);
        const parsed = lines.map((x) => JSON.parse(x) as { taskId: string; agree: boolean; detail?: string });
        return honest.every((s) => parsed.some((r) => r.taskId === s.taskId.toString())) ? parsed : undefined;
      },
      300_000,
      500,
      verification,
    );
    for (const s of honest) {
      const r = reports.find((x) => x.taskId === s.taskId.toString())!;
      expect(r.agree, `audit of task ${s.taskId}: ${r.detail}`).to.equal(true);
    }

    expect(await inference.stop()).to.equal(0);
    expect(await verification.stop()).to.equal(0);
  });

  it("a friendly verifier cannot challenge a correct result, the node stays silent, and no attester loses anything", async function () {
    const { token, tasks, staking, disputes, models } = net.deployment;
    const node = account(5).address;
    const attesters = [account(7).address, account(8).address];
    // A model whose results need two attestations.
    const quorumTwo = (
      await publishModel(net, bundleDir, FEE, { verificationModes: MODES.zk | MODES.optimistic })
    ).modelId;
    await (await models.connect(net.deployer).setAttestationQuorum(quorumTwo, 2)).wait();
    const startBlock = await net.provider.getBlockNumber();
    const from = ["--start-block", String(startBlock)];
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference-attack1"), {
      extra: [...from, "--attest-urls", `${url(7)},${url(8)}`, ...attestTimeout],
    });
    const verifiers = [7, 8].map((i) =>
      startVerificationNode(net, i, path.join(net.tmp, `verification-attack1-${i}`), {
        extra: [...from, "--finalize-after-seconds", "86400"],
        metricsPort: servicePort[i],
      }),
    );
    procs.push(inference, ...verifiers);
    await waitForLog(inference, "inference node started");
    for (const v of verifiers) await waitForLog(v, "verification node started");

    const stakesBefore = await Promise.all(
      [...attesters, colluder.address].map(async (a) => (await staking.nodeInfo(a)).bonded),
    );
    const creditsBefore = await Promise.all([node, ...attesters].map((a) => tasks.creditsOf(a)));
    const colluderWallet = await token.balanceOf(colluder.address);
    const s = await submitOptimistic(4, { modelId: quorumTwo });
    expect(s.task.attestationQuorum).to.equal(2n);
    await waitFor(
      "the result posted",
      async () => (await tasks.taskStatus(s.taskId)) === Status.Pending,
      600_000,
      250,
      inference,
    );
    const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
    expect(posted.args.outputs).to.deep.equal(s.expected);
    const attested = await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId));
    expect(attested.map((a) => a.args.attester).sort()).to.deep.equal([...attesters].sort());
    for (const a of attested)
      expect(a.transactionHash, "both in the posting tx").to.equal(posted.transactionHash);

    // The friendly verifier (staked for verification, eager to see the node and its attesters slashed) has
    // every tool: a valid proof for the task bound to itself, and the bond. None of it works.
    const friendly = disputes.connect(colluder);
    const manifest = loadManifest(bundleDir);
    const binding = await tasks.taskBinding(s.taskId, colluder.address);
    const { proof, publicSignals } = await fullProve(
      witnessInput(manifest, s.quantized, BigInt(binding)),
      path.join(bundleDir, manifest.artifacts.wasm.file),
      path.join(bundleDir, manifest.artifacts.zkey!.file),
    );
    const words = proofWords(proof);
    const proved = publicSignals.slice(0, s.expected.length).map(BigInt);
    const list = attested.map((a) => a.args.attester);
    const hash = outputsHash(posted.args.outputs);
    expect(
      await revertName(
        friendly.challengeWithProof.staticCall(s.taskId, s.task, hash, list, s.input, proved, words),
      ),
      "a proof of the posted outputs shows them right",
    ).to.equal("DisputeManagerSameOutputs");
    const other = [proved[0] + 1n, ...proved.slice(1)];
    expect(
      await revertName(
        friendly.challengeWithProof.staticCall(s.taskId, s.task, hash, list, s.input, other, words),
      ),
      "no proof of other outputs exists",
    ).to.equal("DisputeManagerInvalidProof");
    await (await token.connect(colluder).approve(await disputes.getAddress(), ethers.MaxUint256)).wait();
    expect(
      await revertName(friendly.challenge.staticCall(s.taskId, s.task, hash, list)),
      "a model with a circuit is not put to a vote",
    ).to.equal("DisputeManagerWrongKind");

    // The node sends nothing more until the window is over, then finalises.
    await passWindow(Number((await tasks.modeParameters())[2]) + 5);
    await waitFor(
      "the result final",
      async () => (await tasks.taskStatus(s.taskId)) === Status.Verified,
      600_000,
      250,
      inference,
    );
    const [verified] = await tasks.queryFilter(tasks.filters.TaskVerified(s.taskId));
    const [claimed] = await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId));
    const txs = (await txsOfTask(s.taskId, claimed.blockNumber)).filter((x) => x !== claimed.transactionHash);
    expect(txs, "post + finalise, no dispute").to.deep.equal([
      posted.transactionHash,
      verified.transactionHash,
    ]);
    expect(await txsSentTo(node, await disputes.getAddress(), startBlock)).to.be.empty;
    expect((await readVerifiedResult(tasks, s.taskId))!.outputs).to.deep.equal(s.expected);

    const stakesAfter = await Promise.all(
      [...attesters, colluder.address].map(async (a) => (await staking.nodeInfo(a)).bonded),
    );
    expect(stakesAfter, "every attester's stake (and the friendly verifier's) unchanged").to.deep.equal(
      stakesBefore,
    );
    expect(await token.balanceOf(colluder.address)).to.equal(colluderWallet);
    // 70% the node, the 10% attester share split between the two attesters.
    expect(await tasks.creditsOf(node)).to.equal(creditsBefore[0] + (FEE * 7n) / 10n);
    for (let i = 0; i < attesters.length; i++)
      expect(await tasks.creditsOf(attesters[i])).to.equal(creditsBefore[i + 1] + FEE / 20n);
    for (const v of verifiers) {
      expect(
        v.logs().filter((x) => /challenged/.test(String(x.msg))),
        "no honest verifier challenged",
      ).to.be.empty;
    }
    for (const p of [inference, ...verifiers]) expect(await p.stop()).to.equal(0);
  });

  it("a node killed after posting finalises its results from its journal when restarted", async function () {
    const { tasks } = net.deployment;
    const node = account(5).address;
    const from = ["--start-block", String(await net.provider.getBlockNumber())];
    const stateDir = path.join(net.tmp, "inference-restart");
    const asks = ["--attest-urls", url(7), ...attestTimeout];
    let inference = startInferenceNode(net, 5, stateDir, { extra: [...from, ...asks] });
    const verification = startVerificationNode(net, 7, path.join(net.tmp, "verification-restart"), {
      extra: [...from, "--finalize-after-seconds", "86400"],
      metricsPort: servicePort[7],
    });
    procs.push(inference, verification);
    await waitForLog(inference, "inference node started");
    await waitForLog(verification, "verification node started");
    const submitted = [await submitOptimistic(2), await submitOptimistic(4)];
    await waitFor(
      "both results posted and attested",
      async () => {
        for (const s of submitted)
          if ((await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId))).length !== 1) return false;
        return true;
      },
      600_000,
      500,
    );
    await inference.stop("SIGKILL").catch(() => undefined);
    await passWindow(Number((await tasks.modeParameters())[2]) + 5);
    inference = startInferenceNode(net, 5, stateDir, { extra: [...from, ...asks] });
    procs.push(inference);
    await waitFor(
      "both results finalised after the restart",
      async () => {
        for (const s of submitted) if ((await tasks.taskStatus(s.taskId)) !== Status.Verified) return false;
        return true;
      },
      600_000,
      500,
      inference,
    );
    for (const s of submitted) {
      expect((await readVerifiedResult(tasks, s.taskId))!.outputs).to.deep.equal(s.expected);
      const [verified] = await tasks.queryFilter(tasks.filters.TaskVerified(s.taskId));
      expect((await net.provider.getTransaction(verified.transactionHash))!.from).to.equal(node);
    }
    expect(await inference.stop()).to.equal(0);
    expect(await verification.stop()).to.equal(0);
  });

  it("a node short of its quorum does not post: it asks again until its claim is about to run out, then gives up", async function () {
    const { tasks, staking } = net.deployment;
    const node = account(5).address;
    const from = ["--start-block", String(await net.provider.getBlockNumber())];
    // Nobody to ask: no attestation can be had.
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference-no-quorum"), {
      extra: [...from, "--attest-urls", "none"],
    });
    procs.push(inference);
    await waitForLog(inference, "inference node started");
    const stakeBefore = (await staking.nodeInfo(node)).bonded;
    const { taskId } = await submitOptimistic(0);
    await waitFor(
      "the node to wait for its quorum",
      async () => inference.logs().some((l) => /not posted yet/.test(String(l.msg))),
      600_000,
      250,
      inference,
    );
    expect(await tasks.taskStatus(taskId)).to.equal(Status.Claimed);
    const [, expiresAt] = await tasks.claimOf(taskId);
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    // Close to the claim's expiry: one more round could not post in time.
    await passWindow(Number(expiresAt) - now - 20);
    await waitFor(
      "the node to give the task up",
      async () => inference.logs().some((l) => /result NOT posted/.test(String(l.msg))),
      600_000,
      250,
      inference,
    );
    expect(await tasks.taskStatus(taskId)).to.equal(Status.Claimed);
    expect(await tasks.queryFilter(tasks.filters.TaskResultPosted(taskId)), "never posted").to.be.empty;
    expect((await staking.nodeInfo(node)).bonded, "nothing slashed yet").to.equal(stakeBefore);
    expect(await inference.stop()).to.equal(0);
  });

  it("an unattested result expires with its node's collateral slashed and the task reopens: the inference node serves it again", async function () {
    const { token, tasks, staking } = net.deployment;
    const node = account(5).address;
    const treasury = await net.deployer.getAddress();
    // Another inference node (a key of this test) posts the right outputs without any attestation.
    const other = (await stakeNode(net, 6, 1, STAKE)) as unknown as Wallet;
    const startBlock = await net.provider.getBlockNumber();
    const s = await submitOptimistic(5);
    await (await tasks.connect(other).claimTask(s.taskId, s.task)).wait();
    await (await tasks.connect(other).submitResultOptimistic(s.taskId, s.task, s.expected, [])).wait();
    await passWindow(Number((await tasks.modeParameters())[2]) + 5);
    const treasuryBefore = await token.balanceOf(treasury);
    const requesterBefore = await token.balanceOf(requester.address);
    const receipt = await (
      await tasks.connect(requester).expireUnattested(s.taskId, s.task, outputsHash(s.expected), [])
    ).wait();
    const names = receipt!.logs.map((l) => tasks.interface.parseLog(l)?.name).filter(Boolean);
    expect(names).to.include("TaskReopened");
    expect(await tasks.taskStatus(s.taskId)).to.equal(Status.Open);
    expect((await staking.nodeInfo(other.address)).bonded, "the poster's collateral slashed").to.equal(
      STAKE - COLLATERAL,
    );
    expect(await token.balanceOf(treasury)).to.equal(treasuryBefore + COLLATERAL);
    expect(await token.balanceOf(requester.address), "the fee stays escrowed").to.equal(requesterBefore);

    // The inference node, started from before the submission, sees the claim, the post and the reopening,
    // and claims the reopened task like a new one.
    const from = ["--start-block", String(startBlock)];
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference-reopened"), {
      extra: [...from, "--attest-urls", url(7), ...attestTimeout],
    });
    const verification = startVerificationNode(net, 7, path.join(net.tmp, "verification-reopened"), {
      extra: [...from, "--finalize-after-seconds", "86400"],
      metricsPort: servicePort[7],
    });
    procs.push(inference, verification);
    await waitForLog(inference, "inference node started");
    await waitFor(
      "the reopened task posted again",
      async () => (await tasks.taskStatus(s.taskId)) === Status.Pending,
      600_000,
      250,
      inference,
    );
    await passWindow(Number((await tasks.modeParameters())[2]) + 5);
    await waitFor(
      "the reopened task final",
      async () => (await tasks.taskStatus(s.taskId)) === Status.Verified,
      600_000,
      250,
      inference,
    );
    const result = await readVerifiedResult(tasks, s.taskId);
    expect([result!.node, result!.outputs]).to.deep.equal([node, s.expected]);
    expect(inference.logs().some((l) => /task reopened/.test(String(l.msg)))).to.equal(true);
    expect(await token.balanceOf(requester.address), "paid once").to.equal(requesterBefore);
    for (const p of [inference, verification]) expect(await p.stop()).to.equal(0);
  });

  it("a model without a circuit (plain bundle): a lie is settled by a vote, the losing ballot pays the winners", async function () {
    const { token, tasks, staking, disputes } = net.deployment;
    const node = account(5).address;
    const treasury = await net.deployer.getAddress();
    const plainDir = path.join(net.tmp, "iris-plain");
    await packagePlainModel(path.resolve(__dirname, "..", "..", IRIS), plainDir);
    const plain = {
      dir: plainDir,
      modelId: (await publishModel(net, plainDir, FEE, { verificationModes: MODES.optimistic })).modelId,
    };
    const startBlock = await net.provider.getBlockNumber();
    const from = ["--start-block", String(startBlock)];
    const late = ["--finalize-after-seconds", "86400"];
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference-plain"), {
      extra: [
        ...from,
        "--fault-lie-every",
        String(LIE_EVERY),
        "--attest-urls",
        `${url(7)},${url(8)},${url(9)}`,
        ...attestTimeout,
      ],
    });
    const verifiers = [7, 8].map((i) =>
      startVerificationNode(net, i, path.join(net.tmp, `verification-plain-${i}`), {
        extra: [...from, ...late],
        metricsPort: servicePort[i],
      }),
    );
    procs.push(inference, ...verifiers);
    await waitForLog(inference, "inference node started");
    for (const v of verifiers) await waitForLog(v, "verification node started");

    const stakeBefore = (await staking.nodeInfo(node)).bonded;
    const creditsBefore = await tasks.creditsOf(node);
    const wallets = [account(7).address, account(8).address];
    const walletsBefore = await Promise.all(wallets.map((a) => token.balanceOf(a)));
    const creditsOfVerifiers = await Promise.all(wallets.map((a) => tasks.creditsOf(a)));
    const colluderBefore = (await staking.nodeInfo(colluder.address)).bonded;
    const requesterBefore = await token.balanceOf(requester.address);
    const treasuryBefore = await token.balanceOf(treasury);
    const submitted = [];
    for (let i = 0; i < LIE_EVERY; i++) submitted.push(await submitOptimistic(i, { plain }));
    const lies = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) === 0n);
    const honest = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) !== 0n);
    expect(lies).to.have.length(1);
    const lie = lies[0].taskId;

    await waitFor(
      "honest results posted, the lie challenged by one verification node and voted on by the other",
      async () => {
        for (const s of honest) if ((await tasks.taskStatus(s.taskId)) !== Status.Pending) return false;
        return (await disputes.queryFilter(disputes.filters.DisputeVoted(lie))).length === 2;
      },
      600_000,
      500,
    );
    for (const s of honest) {
      const [attested] = await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId));
      expect(attested.args.attester, "asked first, the honest verification node signs").to.equal(wallets[0]);
    }
    const [liar] = await tasks.queryFilter(tasks.filters.TaskAttested(lie));
    expect(liar.args.attester).to.equal(colluder.address);
    const dispute = await disputes.disputeOf(lie);
    expect(dispute.circuit).to.equal(false);
    const challenger = dispute.challenger;
    expect(wallets).to.include(challenger);
    const voted = await disputes.queryFilter(disputes.filters.DisputeVoted(lie));
    expect(voted.map((v) => [v.args.voter, v.args.nodeRight]).sort()).to.deep.equal(
      wallets.map((w) => [w, false]).sort(),
    );
    // The colluder votes for the lie it signed: its ballot loses.
    await (await disputes.connect(colluder).vote(lie, true)).wait();
    const colluderWeight = (await disputes.ballotOf(lie, colluder.address)).weight;

    const jump = Math.max(Number((await tasks.modeParameters())[2]), Number(await disputes.voteWindow())) + 5;
    await passWindow(jump);
    await waitFor(
      "honest results final, the lie rejected by the vote and every ballot settled",
      async () => {
        for (const s of honest) if ((await tasks.taskStatus(s.taskId)) !== Status.Verified) return false;
        if ((await tasks.taskStatus(lie)) !== Status.Rejected) return false;
        for (const v of [...wallets, colluder.address])
          if (!(await disputes.ballotOf(lie, v)).settled) return false;
        return true;
      },
      600_000,
      500,
    );
    for (const s of honest)
      expect((await readVerifiedResult(tasks, s.taskId))!.outputs).to.deep.equal(s.expected);
    const [resolved] = await disputes.queryFilter(disputes.filters.DisputeResolved(lie));
    expect([resolved.args.outcome, resolved.args.bondTo]).to.deep.equal([NODE_WRONG, challenger]);

    // Honest fees: 70% node, 10% the one attester, 10% royalty, 10% protocol. The lie: the node's collateral
    // slashed (half to the challenger), the colluder's attester slash and its losing ballot's 10% (half of it
    // to the winners pro rata to weight, half to the treasury), the bond back, the requester refunded.
    const h = BigInt(honest.length);
    const ballotSlash = colluderWeight / 10n;
    const toWinners = ballotSlash / 2n;
    const weights = await Promise.all(wallets.map(async (w) => (await disputes.ballotOf(lie, w)).weight));
    const perWeight = (toWinners * REWARD_SCALE) / (weights[0] + weights[1]);
    expect((await disputes.disputeOf(lie)).rewardPerWeight).to.equal(perWeight);
    expect(await tasks.creditsOf(node)).to.equal(creditsBefore + ((FEE * 7n) / 10n) * h);
    for (let i = 0; i < wallets.length; i++) {
      expect(await tasks.creditsOf(wallets[i])).to.equal(
        creditsOfVerifiers[i] + (i === 0 ? (FEE / 10n) * h : 0n),
      );
      const paid = (weights[i] * perWeight) / REWARD_SCALE;
      const gain = (wallets[i] === challenger ? COLLATERAL / 2n : 0n) + paid;
      expect(await token.balanceOf(wallets[i]), `verifier ${wallets[i]}`).to.equal(walletsBefore[i] + gain);
      expect((await staking.nodeInfo(wallets[i])).bonded).to.equal(STAKE);
      const port = servicePort[i === 0 ? 7 : 8];
      expect(await metric(port, "opg_dispute_amount_wei", 'kind="won"'), "journal: won").to.equal(gain);
    }
    expect((await staking.nodeInfo(node)).bonded).to.equal(stakeBefore - COLLATERAL);
    expect((await staking.nodeInfo(colluder.address)).bonded).to.equal(
      colluderBefore - ATTESTER_SLASH - ballotSlash,
    );
    expect(await token.balanceOf(requester.address)).to.equal(requesterBefore - FEE * h);
    expect(await token.balanceOf(treasury)).to.equal(
      treasuryBefore + COLLATERAL / 2n + ATTESTER_SLASH + (ballotSlash - toWinners),
    );
    // Only rounding dust below one wei per ballot stays with the dispute manager.
    expect(await token.balanceOf(await disputes.getAddress())).to.be.lessThanOrEqual(2n);
    console.log(
      `      plain-model e2e: ${submitted.length} tasks, ${h} honest attested+finalised, 1 lie challenged and ` +
        `rejected by a vote (challenger +${ethers.formatEther(COLLATERAL / 2n)} OPG, node -${ethers.formatEther(COLLATERAL)} OPG, ` +
        `colluder -${ethers.formatEther(ATTESTER_SLASH + ballotSlash)} OPG, winning ballots paid ` +
        `${weights.map((w) => ethers.formatEther((w * perWeight) / REWARD_SCALE)).join(" + ")} OPG)`,
    );
    for (const p of [inference, ...verifiers]) expect(await p.stop()).to.equal(0);
  });
});
