import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "ethers";
import {
  account,
  fixtureBundle,
  publishModel,
  stakeNode,
  startNetwork,
  stopAllSpawned,
  type Network,
} from "../../network/local-network";
import { DisputeManager__factory } from "../../typechain-types";
import { parseSubmitted, proofWords, TOPICS } from "../../workers/runtime/tasks";
import {
  executeProgram,
  loadManifest,
  loadProgram,
  packValues,
  quantizeInput,
  releaseProver,
  witnessInput,
} from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";
import { ensureCliBuilt, hasStackTrace, runOpg } from "../helpers/cli";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const INPUT = [[5.1, 3.5, 1.4, 0.2]];
const FEE = ethers.parseEther("1");
const NODE = 5;
const VERIFIER = 6;

/** keccak256 of the packed output words, as the registry keeps posted outputs. */
const outputsHash = (words: bigint[]) => ethers.solidityPackedKeccak256(["uint256[]"], [words]);

/**
 * `opg task submit --mode`, `status`, `result` and `audit` against a `hardhat node` with the iris model
 * registered twice: ZK only, and for every mode. The inference node and the verification node are played by
 * hand (claim, post with off-chain attestations, finalise; prove other outputs and challenge with them).
 */
describe("opg task: verification modes", function () {
  this.timeout(900_000);
  let net: Network;
  let bundleDir: string;
  let zkOnly: bigint;
  let everyMode: bigint;
  let env: Record<string, string>;
  let inputFile: string;

  before(async function () {
    ensureCliBuilt();
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    zkOnly = (await publishModel(net, bundleDir, FEE)).modelId;
    everyMode = (await publishModel(net, bundleDir, FEE, { verificationModes: 1 | 2 | 4 })).modelId;
    await stakeNode(net, NODE, 1);
    await stakeNode(net, VERIFIER, 2, 1_000n * 10n ** 18n);
    const requester = account(7).connect(net.provider);
    await (
      await net.deployer.sendTransaction({ to: requester.address, value: ethers.parseEther("10") })
    ).wait();
    await (await net.deployment.token.connect(net.deployer).transfer(requester.address, FEE * 20n)).wait();
    env = {
      OPG_RPC_URL: net.chain.url,
      OPG_DEPLOYMENT: net.deploymentFile,
      OPG_DATA_URL: net.data.url,
      OPG_PRIVATE_KEY: requester.privateKey,
    };
    inputFile = path.join(net.tmp, "input.json");
    fs.writeFileSync(inputFile, JSON.stringify({ input: INPUT }));
  });

  after(async function () {
    await stopAllSpawned();
    await net?.stop();
    await releaseProver();
  });

  const opg = (...args: string[]) => runOpg(args, { env });

  it("refuses a mode the model does not allow, and a word that is no mode, in one line", async function () {
    const refused = await opg(
      "task",
      "submit",
      "--model",
      `${zkOnly}`,
      "--input",
      inputFile,
      "--mode",
      "tee",
    );
    expect(refused.code).to.equal(1);
    expect(refused.stderr.trim()).to.equal(`error: model ${zkOnly} does not allow tee mode: it allows zk`);
    const bogus = await opg(
      "task",
      "submit",
      "--model",
      `${everyMode}`,
      "--input",
      inputFile,
      "--mode",
      "fast",
    );
    expect(bogus.code).to.equal(1);
    expect(bogus.stderr.trim()).to.equal("error: --mode fast: use zk, optimistic or tee");
    expect(hasStackTrace(refused.stderr + bogus.stderr)).to.equal(false);
  });

  it("submits in the mode asked for; status, result and audit say the mode and its facts", async function () {
    const submitted = await opg(
      "task",
      "submit",
      "--model",
      `${everyMode}`,
      "--input",
      inputFile,
      "--mode",
      "optimistic",
    );
    expect(submitted.code, submitted.stderr).to.equal(0);
    const { taskId, tx, mode } = JSON.parse(submitted.stdout);
    expect(mode).to.equal("optimistic");
    expect(submitted.stderr).to.match(new RegExp(`task ${taskId} submitted in optimistic mode in 0x`));

    const open = await opg("task", "status", taskId);
    expect(open.code, open.stderr).to.equal(0);
    expect(JSON.parse(open.stdout)).to.include({ taskId, status: "Open", mode: "optimistic" });

    // the inference node: claim, then post the honest outputs without proof
    const provider = net.provider;
    const receipt = await provider.getTransactionReceipt(tx);
    const s = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
    const node = account(NODE).connect(provider);
    const tasks = net.deployment.tasks;
    await (await tasks.connect(node).claimTask(s.taskId, s.task)).wait();
    const program = loadProgram(bundleDir);
    const values = executeProgram(program, quantizeInput(program, INPUT.flat()))[program.output.tensor];
    const outputs = packValues(values, loadManifest(bundleDir).publicSignals.packBits);
    const claimed = await opg("task", "status", taskId);
    expect(JSON.parse(claimed.stdout)).to.include({ status: "Claimed", claimedBy: node.address });

    // a verification node signs its attestation off chain; the node posts with it; after the window anyone
    // finalises
    const verifier = account(VERIFIER).connect(provider);
    const attestation = await verifier.signMessage(
      ethers.getBytes(await tasks.attestationDigest(s.taskId, node.address, outputsHash(outputs))),
    );
    await (await tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, [attestation])).wait();
    const pending = await opg("task", "status", taskId);
    const facts = JSON.parse(pending.stdout);
    expect(facts).to.include({ status: "Pending", mode: "optimistic", attestations: 1, quorum: 1 });
    expect(facts.windowEnd).to.be.a("number");
    expect(pending.stderr).to.match(
      /^outputs posted by 0x[0-9a-fA-F]{40} without proof: challenge window open until \S+, 1 of 1 attestation so far/,
    );
    await provider.send("evm_increaseTime", [601]);
    await provider.send("evm_mine", []);
    await (
      await tasks.connect(verifier).finalizeResult(s.taskId, s.task, outputs, [verifier.address])
    ).wait();

    const result = await opg("task", "result", taskId);
    expect(result.code, result.stderr).to.equal(0);
    const shown = JSON.parse(result.stdout);
    expect(shown).to.include({ status: "Verified", mode: "optimistic", settledBy: "attestations" });
    expect(shown.attesters).to.deep.equal([verifier.address]);

    const audit = await opg("task", "audit", taskId);
    expect(audit.code, audit.stderr).to.equal(0);
    const report = JSON.parse(audit.stdout);
    expect(report).to.include({ mode: "optimistic", agree: true, outputMatches: true, proofValid: null });
    expect(audit.stderr).to.match(/^optimistic: 1 of 1 attestation\(s\), window over, unchallenged/);
    expect(audit.stderr).to.match(/^not checked: that the fixed-point program's output/m);
    // no proof rests on a setup: --require-secure-setup does not fail it
    const strict = await opg("task", "audit", taskId, "--require-secure-setup");
    expect(strict.code, strict.stderr).to.equal(0);
  });

  /** Submit in optimistic mode with the CLI; the task as committed, from its submission receipt. */
  async function submitOptimistic(...extra: string[]) {
    const r = await opg(
      "task",
      "submit",
      "--model",
      `${everyMode}`,
      "--input",
      inputFile,
      "--mode",
      "optimistic",
      ...extra,
    );
    expect(r.code, r.stderr).to.equal(0);
    const { taskId, tx } = JSON.parse(r.stdout);
    const receipt = await net.provider.getTransactionReceipt(tx);
    return {
      taskId: taskId as string,
      s: parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!),
    };
  }

  /** The iris model's true output words on INPUT. */
  function honestOutputs() {
    const program = loadProgram(bundleDir);
    const values = executeProgram(program, quantizeInput(program, INPUT.flat()))[program.output.tensor];
    return packValues(values, loadManifest(bundleDir).publicSignals.packBits);
  }

  it("a wrong output proved wrong by a challenger: status says rejected by proof, audit re-verifies the disproof", async function () {
    const { taskId, s } = await submitOptimistic();
    const provider = net.provider;
    const tasks = net.deployment.tasks;
    const node = account(NODE).connect(provider);
    await (await tasks.connect(node).claimTask(s.taskId, s.task)).wait();
    const honest = honestOutputs();
    const wrong = honest.map((w, i) => (i === 0 ? w + 1n : w));
    await (await tasks.connect(node).submitResultOptimistic(s.taskId, s.task, wrong, [])).wait();

    // the verification node proves the true outputs, bound to itself, and challenges with them
    const challenger = account(VERIFIER).connect(provider);
    const manifest = loadManifest(bundleDir);
    const binding = BigInt(await tasks.taskBinding(s.taskId, challenger.address));
    const { proof } = await fullProve(
      witnessInput(manifest, quantizeInput(loadProgram(bundleDir), INPUT.flat()), binding),
      path.join(bundleDir, manifest.artifacts.wasm.file),
      path.join(bundleDir, manifest.artifacts.zkey!.file),
    );
    const disputes = DisputeManager__factory.connect((await tasks.modeParameters())[0], challenger);
    await (
      await disputes.challengeWithProof(
        s.taskId,
        s.task,
        outputsHash(wrong),
        [],
        s.input,
        honest,
        proofWords(proof),
      )
    ).wait();

    const status = await opg("task", "status", taskId);
    expect(status.code, status.stderr).to.equal(0);
    expect(JSON.parse(status.stdout)).to.deep.include({ status: "Rejected", outcome: "NodeWrong" });
    expect(status.stderr).to.match(
      new RegExp(`^rejected: challenged with a proof: ${challenger.address} proved the posted outputs wrong`),
    );
    const audit = await opg("task", "audit", taskId);
    expect(audit.code, audit.stderr).to.equal(0);
    const report = JSON.parse(audit.stdout);
    expect(report).to.include({
      status: "Rejected",
      settledBy: "dispute-proof",
      proofValid: true,
      agree: true,
    });
    expect(audit.stderr).to.match(
      new RegExp(
        `^rejected: posted outputs proved wrong by ${challenger.address}: proof of other outputs valid`,
      ),
    );
    // the disproof rests on the model's development setup: --require-secure-setup says so
    const strict = await opg("task", "audit", taskId, "--require-secure-setup");
    expect(strict.code, strict.stderr).to.equal(3);
  });

  it("outputs that met no quorum: refund refuses before the deadline, reopen puts the task back on the market", async function () {
    const { taskId, s } = await submitOptimistic("--deadline-seconds", "3600");
    const provider = net.provider;
    const tasks = net.deployment.tasks;
    const node = account(NODE).connect(provider);
    await (await tasks.connect(node).claimTask(s.taskId, s.task)).wait();
    await (await tasks.connect(node).submitResultOptimistic(s.taskId, s.task, honestOutputs(), [])).wait();
    await provider.send("evm_increaseTime", [601]);
    await provider.send("evm_mine", []);
    const stuck = await opg("task", "status", taskId);
    expect(stuck.stderr).to.match(
      new RegExp(
        `they cannot become final; once anyone calls expireUnattested \\(opg task reopen ${taskId}\\)`,
      ),
    );
    const refund = await opg("task", "refund", taskId);
    expect(refund.code).to.equal(1);
    expect(refund.stderr).to.match(
      /the task is reopened for another node now \(reopen\(\d+\), opg task reopen \d+\)/,
    );
    expect(hasStackTrace(refund.stderr)).to.equal(false);
    const reopen = await opg("task", "reopen", taskId);
    expect(reopen.code, reopen.stderr).to.equal(0);
    expect(JSON.parse(reopen.stdout)).to.include({ taskId, reopened: true });
    const open = await opg("task", "status", taskId);
    expect(JSON.parse(open.stdout)).to.deep.include({ status: "Open", mode: "optimistic" });
    expect(JSON.parse(open.stdout).reopened).to.include({ previousNode: node.address });
    expect(open.stderr).to.match(
      new RegExp(`^reopened at block \\d+: the outputs ${node.address} posted met no quorum of attestations`),
    );
  });
});
