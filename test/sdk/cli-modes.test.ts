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
} from "../../scripts/lib/local-network";
import { parseSubmitted, TOPICS } from "../../workers/runtime/tasks";
import { executeProgram, loadManifest, loadProgram, packValues, quantizeInput } from "../../zkml";
import { ensureCliBuilt, hasStackTrace, runOpg } from "../helpers/cli";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const INPUT = [[5.1, 3.5, 1.4, 0.2]];
const FEE = ethers.parseEther("1");
const NODE = 5;
const VERIFIER = 6;

/**
 * `opg task submit --mode`, `status`, `result` and `audit` against a `hardhat node` with the iris model
 * registered twice: ZK only, and for every mode. The inference node and the verification node are played by
 * hand (claim, post, attest, finalise).
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

    // the inference node: claim, post the honest outputs without proof
    const provider = net.provider;
    const receipt = await provider.getTransactionReceipt(tx);
    const s = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
    const node = account(NODE).connect(provider);
    const tasks = net.deployment.tasks;
    await (await tasks.connect(node).claimTask(s.taskId, s.task)).wait();
    const program = loadProgram(bundleDir);
    const values = executeProgram(program, quantizeInput(program, INPUT.flat()))[program.output.tensor];
    const outputs = packValues(values, loadManifest(bundleDir).publicSignals.packBits);
    await (await tasks.connect(node).submitResultOptimistic(s.taskId, s.task, outputs, [])).wait();

    const pending = await opg("task", "status", taskId);
    const facts = JSON.parse(pending.stdout);
    expect(facts).to.include({ status: "Pending", mode: "optimistic", attestations: 0, quorum: 1 });
    expect(facts.windowEnd).to.be.a("number");
    expect(pending.stderr).to.match(
      /^outputs posted by 0x[0-9a-fA-F]{40} without proof: challenge window open/,
    );

    // a verification node attests; after the window anyone finalises
    const verifier = account(VERIFIER).connect(provider);
    const outputsHash = ethers.solidityPackedKeccak256(["uint256[]"], [outputs]);
    await (await tasks.connect(verifier).attest(s.taskId, s.task, outputsHash, [])).wait();
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
});
