import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers, type Wallet } from "ethers";
import { executeQuantized, inputWords, loadManifest, loadProgram, packValues } from "../../zkml";
import {
  packagePlainModel,
  plainOutputWords,
  quantizePlainInput,
  runPlainBundle,
} from "../../zkml/plain-bundle";
import { parseSubmitted, TOPICS, MODES } from "../../workers/runtime/tasks";
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
} from "../../scripts/lib/local-network";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const FEE = ethers.parseEther("1");
const STAKE = ethers.parseEther("5000");
/** OPG the verification node holds in its wallet for challenge bonds. */
const BOND_FUNDS = ethers.parseEther("1000");
const TASKS = 6;
/** The inference node lies (fault injection) on tasks whose id is a multiple of this. */
const LIE_EVERY = 3;
const Status = { Verified: 3n, Expired: 4n, Pending: 5n, Disputed: 6n, Rejected: 7n };
const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;

/**
 * The optimistic mode with real processes on a hardhat node: an inference node that posts results without
 * proof and lies on every third task (the test-only faultLieEvery), and one honest verification node that
 * re-executes every posted result. Before posting, the inference node asks the verification node (at the
 * endpoint it registered in NodeStaking: its service port) for an attestation signed off chain: every honest
 * result is posted with it (the TaskAttested is in the posting transaction) and, after the challenge window,
 * finalised by the node: two transactions, no separate attest. Every lie is refused (409), posted without
 * attestation, challenged, the node cannot prove it, and after the response window the challenger's timeout
 * rejects it: node slashed, requester refunded, challenger paid its share of the slash. Every OPG amount is
 * checked exactly.
 */
describe("optimistic mode end to end (hardhat node + worker processes)", function () {
  this.timeout(900_000);
  let net: Network;
  let bundleDir: string;
  let modelId: bigint;
  let requester: Wallet;
  const procs: Proc[] = [];
  /** The service ports of verification nodes 7 and 8: the endpoints they register, where /attest is served. */
  const servicePort: Record<number, number> = {};
  /** How long the inference node waits for attestations (generous: a loaded 2-core machine). */
  const attestTimeout = ["--attest-timeout-ms", "30000"];

  before(async function () {
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    ({ modelId } = await publishModel(net, bundleDir, FEE, {
      verificationModes: MODES.zk | MODES.optimistic,
    }));
    for (const i of [7, 8]) servicePort[i] = await freePort();
    await stakeNode(net, 5, 1, STAKE);
    await stakeNode(net, 7, 2, STAKE, `http://127.0.0.1:${servicePort[7]}`);
    const { token, tasks } = net.deployment;
    await (await token.connect(net.deployer).transfer(account(7).address, BOND_FUNDS)).wait();
    requester = account(1).connect(net.provider) as unknown as Wallet;
    await (await token.connect(net.deployer).transfer(requester.address, ethers.parseEther("100"))).wait();
    await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
  });

  after(async function () {
    for (const p of procs) await p.stop("SIGKILL").catch(() => undefined);
    await stopAllSpawned();
    await net?.stop();
  });

  async function submitOptimistic(i: number, plain?: { dir: string; modelId: bigint }) {
    let input: bigint[];
    let expected: bigint[];
    if (plain) {
      const manifest = loadPlainManifest(plain.dir);
      const q = quantizePlainInput(manifest, irisInputs[i % irisInputs.length]);
      input = packValues(q, manifest.publicSignals.packBits);
      expected = plainOutputWords(manifest, await runPlainBundle(plain.dir, q));
    } else {
      const manifest = loadManifest(bundleDir);
      const q = executeQuantized(loadProgram(bundleDir), irisInputs[i % irisInputs.length]);
      input = inputWords(manifest, q.input);
      expected = packValues(q.quantized, manifest.publicSignals.packBits);
    }
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await net.deployment.tasks.connect(requester).submitTaskInMode(
        {
          modelId: plain?.modelId ?? modelId,
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
    return { taskId: parseSubmitted(log).taskId, expected };
  }

  it("attests and finalises every honest result, catches every lie, and pays exactly", async function () {
    const { token, tasks, staking, disputes } = net.deployment;
    const node = account(5).address;
    const verifier = account(7).address;
    const treasury = await net.deployer.getAddress();
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference"), {
      extra: ["--fault-lie-every", String(LIE_EVERY), ...attestTimeout],
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
    const submitted = [];
    for (let i = 0; i < TASKS; i++) submitted.push(await submitOptimistic(i));
    const lies = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) === 0n);
    const honest = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) !== 0n);
    expect(lies.length, "some tasks are lied on").to.be.greaterThan(0);
    expect(await token.balanceOf(requester.address)).to.equal(requesterBefore - FEE * BigInt(TASKS));

    // Within the challenge window: every honest result attested by the verification node, every lie
    // challenged (the dispute is open), and the inference node has tried to answer each challenge.
    await waitFor(
      "every honest result attested and every lie disputed",
      async () => {
        for (const s of honest) {
          if ((await tasks.taskStatus(s.taskId)) !== Status.Pending) return false;
          if ((await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId))).length !== 1) return false;
        }
        for (const s of lies) if ((await tasks.taskStatus(s.taskId)) !== Status.Disputed) return false;
        return true;
      },
      600_000,
      500,
    );
    await waitFor(
      "the inference node to find every lie indefensible",
      async () =>
        inference.logs().filter((l) => /cannot answer the dispute/.test(String(l.msg))).length ===
        lies.length,
      600_000,
      500,
      inference,
    );
    for (const s of lies) {
      const posted = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
      expect(posted[0].args.outputs, `task ${s.taskId} was lied on`).not.to.deep.equal(s.expected);
      const dispute = await disputes.disputeOf(s.taskId);
      expect(dispute.challenger).to.equal(verifier);
      expect(dispute.node).to.equal(node);
    }
    for (const s of honest) {
      const posted = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
      expect(posted[0].args.outputs).to.deep.equal(s.expected);
      // Attested off chain: the attestation rode in the posting transaction, after the TaskResultPosted.
      const [attested] = await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId));
      expect(attested.args.attester).to.equal(verifier);
      expect(attested.transactionHash, `task ${s.taskId} attested in its posting tx`).to.equal(
        posted[0].transactionHash,
      );
      expect(attested.index).to.be.greaterThan(posted[0].index);
      const tx = await net.provider.getTransaction(posted[0].transactionHash);
      expect(tx!.from).to.equal(node);
    }
    for (const s of lies) {
      expect(await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId)), "a lie is not attested").to.be
        .empty;
    }
    // The verification node signed every honest result and refused every lie, and sent no attest itself.
    const signedLogs = verification.logs().filter((l) => /attestation signed off chain/.test(String(l.msg)));
    const refusedLogs = verification.logs().filter((l) => /refused to sign/.test(String(l.msg)));
    expect(signedLogs.length).to.equal(honest.length);
    expect(refusedLogs.length).to.be.greaterThanOrEqual(lies.length);
    expect(
      verification.logs().filter((l) => /outputs match, attested/.test(String(l.msg))),
      "no attest transaction",
    ).to.be.empty;

    // Past the challenge window and the dispute response window.
    const [, , challengeWindow] = await tasks.modeParameters();
    const responseWindow = await disputes.responseWindow();
    const verifierBefore = await token.balanceOf(verifier);
    const treasuryBefore = await token.balanceOf(treasury);
    const jump = Math.max(Number(challengeWindow), Number(responseWindow)) + 5;
    await net.provider.send("evm_increaseTime", [jump]);
    await net.provider.send("evm_mine", []);

    await waitFor(
      "every honest result final and every lie rejected",
      async () => {
        for (const s of honest) if ((await tasks.taskStatus(s.taskId)) !== Status.Verified) return false;
        for (const s of lies) if ((await tasks.taskStatus(s.taskId)) !== Status.Rejected) return false;
        return true;
      },
      600_000,
      500,
    );

    // Honest: the posted outputs are the result, finalised by the inference node itself. From the claim on,
    // the task took two transactions: the post (with its attestation) and the finalisation.
    const gas: bigint[] = [];
    for (const s of honest) {
      const result = await tasks.resultOf(s.taskId);
      expect(result.node).to.equal(node);
      expect(result.outputs).to.deep.equal(s.expected);
      const verified = await tasks.queryFilter(tasks.filters.TaskVerified(s.taskId));
      const tx = await net.provider.getTransaction(verified[0].transactionHash);
      expect(tx!.from, `task ${s.taskId} finalised by the inference node`).to.equal(node);
      const [claimed] = await tasks.queryFilter(tasks.filters.TaskClaimed(s.taskId));
      const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
      const after = (
        await net.provider.getLogs({
          address: await tasks.getAddress(),
          topics: [null, ethers.toBeHex(s.taskId, 32)],
          fromBlock: claimed.blockNumber,
        })
      ).filter((l) => l.transactionHash !== claimed.transactionHash);
      const txs = [...new Set(after.map((l) => l.transactionHash))];
      expect(txs, `task ${s.taskId}: post + finalise`).to.deep.equal([
        posted.transactionHash,
        verified[0].transactionHash,
      ]);
      for (const hash of txs) gas.push((await net.provider.getTransactionReceipt(hash))!.gasUsed);
    }
    // Lies: rejected as NodeWrong after the verification node's timeout; requester refunded.
    for (const s of lies) {
      const rejected = await tasks.queryFilter(tasks.filters.TaskRejected(s.taskId));
      expect(rejected).to.have.length(1);
      expect(rejected[0].args.outcome).to.equal(1n); // NodeWrong
      expect(rejected[0].args.refund).to.equal(FEE);
      const tx = await net.provider.getTransaction(rejected[0].transactionHash);
      expect(tx!.from, `task ${s.taskId} timed out by the challenger`).to.equal(verifier);
    }

    // Exact OPG: each honest fee splits 10% protocol, 10% royalty (the deployer owns the model), 10% the
    // attester, 70% the node; each lie costs the node its 100 OPG claim collateral, half to the challenger
    // (the slash beneficiary share), half to the treasury; the bond comes back to the challenger.
    const h = BigInt(honest.length);
    const l = BigInt(lies.length);
    const collateral = ethers.parseEther("100");
    expect(await tasks.creditsOf(node)).to.equal(((FEE * 7n) / 10n) * h);
    expect(await tasks.protocolFeesOf(node)).to.equal((FEE / 10n) * h);
    expect(await tasks.creditsOf(verifier)).to.equal((FEE / 10n) * h);
    expect(await tasks.creditsOf(treasury)).to.equal((FEE / 10n) * h);
    expect(await token.balanceOf(requester.address)).to.equal(requesterBefore - FEE * h);
    const info = await staking.nodeInfo(node);
    expect(info.bonded).to.equal(STAKE - collateral * l);
    expect(info.locked - (await tasks.releasableCollateralOf(node)), "no collateral left locked").to.equal(
      0n,
    );
    const bond = await disputes.challengeBond();
    expect(await token.balanceOf(verifier)).to.equal(verifierBefore + (bond + collateral / 2n) * l);
    expect(await token.balanceOf(verifier)).to.equal(BOND_FUNDS + (collateral / 2n) * l);
    expect(await token.balanceOf(treasury)).to.equal(treasuryBefore + (collateral / 2n) * l);
    expect(
      await token.balanceOf(await disputes.getAddress()),
      "no bond left in the dispute manager",
    ).to.equal(0n);
    expect((await staking.nodeInfo(verifier)).bonded, "the honest verifier lost nothing").to.equal(STAKE);
    const postGas = gas.filter((_, i) => i % 2 === 0);
    const finalizeGas = gas.filter((_, i) => i % 2 === 1);
    console.log(
      `      optimistic e2e: post with 1 off-chain attestation ${postGas.join("/")} gas, finalise ` +
        `${finalizeGas.join("/")} gas (no attest transaction)`,
    );
    console.log(
      `      optimistic e2e: ${TASKS} tasks, ${h} honest attested+finalised, ${l} lies challenged+rejected; ` +
        `node credits ${ethers.formatEther(await tasks.creditsOf(node))} OPG, attester credits ` +
        `${ethers.formatEther(await tasks.creditsOf(verifier))} OPG, node slashed ${ethers.formatEther(collateral * l)} OPG, ` +
        `challenger +${ethers.formatEther((collateral / 2n) * l)} OPG, requester refunded ${ethers.formatEther(FEE * l)} OPG`,
    );

    // The verification node also audits each finalised result the way it was settled, and agrees.
    const reportsFile = path.join(net.tmp, "verification", "reports.jsonl");
    const reports = await waitFor(
      "the verification node's audit of every finalised result",
      async () => {
        if (!fs.existsSync(reportsFile)) return undefined;
        const lines = fs.readFileSync(reportsFile, "utf8").split("\n").filter(Boolean);
        const parsed = lines.map((l) => JSON.parse(l) as { taskId: string; agree: boolean; detail?: string });
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

  it("answers a challenge of an honest result with a proof: the result stands and the node takes the bond", async function () {
    const { token, tasks, disputes } = net.deployment;
    const node = account(5).address;
    const challenger = await stakeNode(net, 8, 2, STAKE, `http://127.0.0.1:${servicePort[8]}`);
    await (await token.connect(net.deployer).transfer(challenger.address, BOND_FUNDS)).wait();
    const bond = await disputes.challengeBond();
    await (await token.connect(challenger).approve(await disputes.getAddress(), bond)).wait();
    const startBlock = await net.provider.getBlockNumber();
    // No verification node runs: the registered endpoints do not answer and the result is posted unattested.
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference-answer"), {
      extra: ["--start-block", String(startBlock)],
    });
    procs.push(inference);
    await waitForLog(inference, "inference node started");

    const creditsBefore = await tasks.creditsOf(node);
    const walletBefore = await token.balanceOf(node);
    const { taskId, expected } = await submitOptimistic(1);
    await waitFor(
      "the result posted",
      async () => (await tasks.taskStatus(taskId)) === Status.Pending,
      600_000,
      250,
    );
    const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(taskId));
    const [submittedLog] = await tasks.queryFilter(tasks.filters.TaskSubmitted(taskId));
    const task = parseSubmitted(submittedLog).task;
    const hash = ethers.keccak256(ethers.solidityPacked(["uint256[]"], [posted.args.outputs]));
    // A wrong challenge: the challenger pays the bond and the node answers with a proof in its window.
    await (await disputes.connect(challenger).challenge(taskId, task, hash, [])).wait();
    await waitFor(
      "the dispute answered",
      async () => (await tasks.taskStatus(taskId)) === Status.Verified,
      600_000,
      250,
      inference,
    );

    const [resolved] = await disputes.queryFilter(disputes.filters.DisputeResolved(taskId));
    expect(resolved.args.outcome).to.equal(0n); // NodeRight
    expect(resolved.args.bondTo).to.equal(node);
    const tx = await net.provider.getTransaction(resolved.transactionHash);
    expect(tx!.from, "the node sent the proof").to.equal(node);
    expect((await tasks.resultOf(taskId)).outputs).to.deep.equal(expected);
    // No attesters: the node keeps the attesters' share (80% of the fee), and the bond is its.
    expect(await tasks.creditsOf(node)).to.equal(creditsBefore + (FEE * 8n) / 10n);
    expect(await token.balanceOf(node)).to.equal(walletBefore + bond);
    expect(await token.balanceOf(challenger.address)).to.equal(BOND_FUNDS - bond);
    expect(await inference.stop()).to.equal(0);
  });

  it("a node killed after posting finalises its results from its journal when restarted", async function () {
    const { tasks } = net.deployment;
    const node = account(5).address;
    const from = ["--start-block", String(await net.provider.getBlockNumber())];
    const stateDir = path.join(net.tmp, "inference-restart");
    let inference = startInferenceNode(net, 5, stateDir, { extra: [...from, ...attestTimeout] });
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
    const [, , challengeWindow] = await tasks.modeParameters();
    await net.provider.send("evm_increaseTime", [Number(challengeWindow) + 5]);
    await net.provider.send("evm_mine", []);
    inference = startInferenceNode(net, 5, stateDir, { extra: from });
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
      expect((await tasks.resultOf(s.taskId)).outputs).to.deep.equal(s.expected);
      const [verified] = await tasks.queryFilter(tasks.filters.TaskVerified(s.taskId));
      expect((await net.provider.getTransaction(verified.transactionHash))!.from).to.equal(node);
    }
    expect(await inference.stop()).to.equal(0);
    expect(await verification.stop()).to.equal(0);
  });

  it("a result nobody attested is expired by its node after the window: refund, collateral released", async function () {
    const { token, tasks, staking } = net.deployment;
    const node = account(5).address;
    const from = ["--start-block", String(await net.provider.getBlockNumber())];
    const inference = startInferenceNode(net, 5, path.join(net.tmp, "inference-unattested"), { extra: from });
    procs.push(inference);
    await waitForLog(inference, "inference node started");
    const stakeBefore = (await staking.nodeInfo(node)).bonded;
    const creditsBefore = await tasks.creditsOf(node);
    const requesterBefore = await token.balanceOf(requester.address);
    const { taskId } = await submitOptimistic(0);
    await waitFor(
      "the result posted",
      async () => (await tasks.taskStatus(taskId)) === Status.Pending,
      600_000,
      250,
    );
    const [, , challengeWindow] = await tasks.modeParameters();
    await net.provider.send("evm_increaseTime", [Number(challengeWindow) + 5]);
    await net.provider.send("evm_mine", []);
    await waitFor(
      "the unattested result expired",
      async () => (await tasks.taskStatus(taskId)) === Status.Expired,
      600_000,
      250,
      inference,
    );
    const [expired] = await tasks.queryFilter(tasks.filters.TaskExpired(taskId));
    expect((await net.provider.getTransaction(expired.transactionHash))!.from).to.equal(node);
    expect(await token.balanceOf(requester.address)).to.equal(requesterBefore);
    expect(await tasks.creditsOf(node)).to.equal(creditsBefore);
    const info = await staking.nodeInfo(node);
    expect(info.bonded, "nothing slashed").to.equal(stakeBefore);
    expect(info.locked - (await tasks.releasableCollateralOf(node)), "collateral released").to.equal(0n);
    expect(await inference.stop()).to.equal(0);
  });

  it("a model without a circuit (plain bundle): lies are settled by a vote of verification nodes", async function () {
    const { token, tasks, staking, disputes } = net.deployment;
    const node = account(5).address;
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
      extra: [...from, "--fault-lie-every", String(LIE_EVERY), ...attestTimeout],
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
    const attesterCreditsBefore = await Promise.all(wallets.map((a) => tasks.creditsOf(a)));
    const requesterBefore = await token.balanceOf(requester.address);
    const submitted = [];
    for (let i = 0; i < LIE_EVERY; i++) submitted.push(await submitOptimistic(i, plain));
    const lies = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) === 0n);
    const honest = submitted.filter((s) => s.taskId % BigInt(LIE_EVERY) !== 0n);
    expect(lies).to.have.length(1);

    await waitFor(
      "honest results attested by both verification nodes, the lie challenged by one and voted on by the other",
      async () => {
        for (const s of honest)
          if ((await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId))).length !== 2) return false;
        for (const s of lies)
          if ((await disputes.queryFilter(disputes.filters.DisputeVoted(s.taskId))).length !== 1)
            return false;
        return true;
      },
      600_000,
      500,
    );
    // The quorum (1) was signed off chain and rode in the post; the other verification node attested on chain.
    for (const s of honest) {
      const [posted] = await tasks.queryFilter(tasks.filters.TaskResultPosted(s.taskId));
      const attested = await tasks.queryFilter(tasks.filters.TaskAttested(s.taskId));
      expect(attested[0].transactionHash, "the first attestation in the post").to.equal(
        posted.transactionHash,
      );
      expect(attested[1].transactionHash).not.to.equal(posted.transactionHash);
    }
    const lie = lies[0].taskId;
    const dispute = await disputes.disputeOf(lie);
    expect(dispute.circuit).to.equal(false);
    const challenger = dispute.challenger;
    const voter = wallets.find((a) => a !== challenger)!;
    const [voted] = await disputes.queryFilter(disputes.filters.DisputeVoted(lie));
    expect(voted.args.voter).to.equal(voter);
    expect(voted.args.nodeRight).to.equal(false);

    const jump = Math.max(Number((await tasks.modeParameters())[2]), Number(await disputes.voteWindow())) + 5;
    await net.provider.send("evm_increaseTime", [jump]);
    await net.provider.send("evm_mine", []);
    await waitFor(
      "honest results final and the lie rejected by the vote",
      async () => {
        for (const s of honest) if ((await tasks.taskStatus(s.taskId)) !== Status.Verified) return false;
        return (await tasks.taskStatus(lie)) === Status.Rejected;
      },
      600_000,
      500,
    );
    for (const s of honest) expect((await tasks.resultOf(s.taskId)).outputs).to.deep.equal(s.expected);
    const [resolved] = await disputes.queryFilter(disputes.filters.DisputeResolved(lie));
    expect(resolved.args.outcome).to.equal(1n); // NodeWrong
    expect(resolved.args.bondTo).to.equal(challenger);

    // Honest fees: 70% node, 10% attesters (two: 5% each), 10% royalty, 10% protocol. The lie: the node's
    // collateral slashed (half to the challenger), the bond back, the requester refunded, no voter slashed.
    const h = BigInt(honest.length);
    const collateral = ethers.parseEther("100");
    expect(await tasks.creditsOf(node)).to.equal(creditsBefore + ((FEE * 7n) / 10n) * h);
    for (let i = 0; i < wallets.length; i++) {
      expect(await tasks.creditsOf(wallets[i])).to.equal(attesterCreditsBefore[i] + (FEE / 20n) * h);
      const gain = wallets[i] === challenger ? collateral / 2n : 0n;
      expect(await token.balanceOf(wallets[i])).to.equal(walletsBefore[i] + gain);
      expect((await staking.nodeInfo(wallets[i])).bonded).to.equal(STAKE);
    }
    expect((await staking.nodeInfo(node)).bonded).to.equal(stakeBefore - collateral);
    expect(await token.balanceOf(requester.address)).to.equal(requesterBefore - FEE * h);
    expect(await token.balanceOf(await disputes.getAddress())).to.equal(0n);
    console.log(
      `      plain-model e2e: ${submitted.length} tasks, ${h} honest attested twice+finalised, 1 lie challenged ` +
        `and rejected by a vote (challenger +${ethers.formatEther(collateral / 2n)} OPG, node -${ethers.formatEther(collateral)} OPG)`,
    );
    for (const p of [inference, ...verifiers]) expect(await p.stop()).to.equal(0);
  });
});
