import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers, type Wallet } from "ethers";
import { bundleKeyWords } from "../../network/register-model";
import {
  account,
  fixtureBundle,
  publishModel,
  ROOT,
  runToEnd,
  stakeNode,
  startInferenceNode,
  startNetwork,
  stopAllSpawned,
  type Network,
  type Proc,
} from "../../network/local-network";
import { OpgClient, OpgClientError } from "../../sdk";
import { DataClient } from "../../workers/data/client";
import { parseSubmitted, proofWords, TOPICS } from "../../workers/runtime/tasks";
import {
  executeQuantized,
  inputWords,
  loadManifest,
  loadProgram,
  packValues,
  releaseProver,
  verificationKeyHash,
  witnessInput,
} from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const FEE = ethers.parseEther("1");
const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;

/** Run `opg ...` as a child process; resolves with its exit code and both streams. */
function opg(args: string[], env: Record<string, string> = {}) {
  return runToEnd([path.join(ROOT, "bin", "opg.js"), ...args], env);
}

async function expectClientError(p: Promise<unknown>, pattern: RegExp) {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(OpgClientError);
    expect((e as Error).message).to.match(pattern);
    return;
  }
  expect.fail(`expected an OpgClientError matching ${pattern}`);
}

describe("SDK and client CLI (hardhat node + worker processes)", function () {
  this.timeout(600_000);
  let net: Network;
  let bundleDir: string;
  let modelId: bigint;
  let dapp: Wallet;
  let client: OpgClient;
  let node: Proc;
  let conn: string[];

  before(async function () {
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    ({ modelId } = await publishModel(net, bundleDir, FEE));
    await stakeNode(net, 5);
    await stakeNode(net, 6);
    dapp = account(1).connect(net.provider) as unknown as Wallet;
    // OPG but no approval: the SDK approves what a task needs.
    await (await net.deployment.token.connect(net.deployer).transfer(dapp.address, FEE * 20n)).wait();
    client = new OpgClient({
      runner: dapp,
      deployment: net.deploymentFile,
      dataUrl: net.data.url,
      cacheDir: path.join(net.tmp, "sdk"),
    });
    node = startInferenceNode(net, 5, path.join(net.tmp, "inference"), {
      extra: ["--models", String(modelId)],
    });
    conn = ["--rpc-url", net.chain.url, "--deployment", net.deploymentFile, "--data-url", net.data.url];
  });

  after(async function () {
    await client?.close();
    await node?.stop().catch(() => undefined);
    await stopAllSpawned();
    await net?.stop();
    await releaseProver(); // the proofs and audits made in this process started snarkjs's threads
  });

  it("submits float inputs, returns the decoded verified output, and the audit agrees", async function () {
    const request = await client.submit(modelId, irisInputs[0]);
    const result = await client.waitForResult(request.taskId, { timeoutMs: 300_000, pollMs: 200 });
    const expected = executeQuantized(loadProgram(bundleDir), irisInputs[0]);
    expect(request.quantizedInput).to.deep.equal(expected.input);
    expect(result.quantized).to.deep.equal(expected.quantized);
    expect(result.output).to.deep.equal(expected.output);
    expect(result.argmax).to.equal(expected.output.indexOf(Math.max(...expected.output)));
    expect(result.node).to.equal(account(5).address);
    expect(result.words).to.deep.equal(
      packValues(expected.quantized, loadManifest(bundleDir).publicSignals.packBits),
    );

    const report = await client.audit(request.taskId);
    expect(report).to.include({
      agree: true,
      proofValid: true,
      outputMatches: true,
      node: account(5).address,
    });
    expect(report.output).to.deep.equal(expected.output);
    // the demo's bundle is compiled with the development ptau: the proof holds, the setup is not secure
    expect(report).to.include({ setupSecure: false });
    expect(report.setup).to.include({ trust: "development", secure: false });
    expect(report.setup!.phase2.contributors).to.deep.equal(["opg zkml compile"]);

    const shown = await opg(["task", "result", String(request.taskId), ...conn]);
    expect(shown.code, shown.stderr).to.equal(0);
    expect(JSON.parse(shown.stdout)).to.include({ status: "Verified", argmax: result.argmax });
    const audited = await opg(["task", "audit", String(request.taskId), ...conn]);
    expect(audited.code, audited.stderr).to.equal(0);
    expect(JSON.parse(audited.stdout)).to.include({ agree: true, setupSecure: false });
    expect(JSON.parse(audited.stdout).setup).to.include({ trust: "development" });
    expect(audited.stderr).to.include(
      "setup: DEVELOPMENT (single-machine trusted setup): whoever ran compile could forge proofs for this " +
        "model; phase 2: 1 contribution(s) ('opg zkml compile')",
    );
    const strict = await opg(["task", "audit", String(request.taskId), "--require-secure-setup", ...conn]);
    expect(strict.code, strict.stderr).to.equal(3);
    expect(JSON.parse(strict.stdout)).to.include({ agree: true, setupSecure: false });
  });

  it("opg task submit --wait pays, waits and prints the verified output", async function () {
    const input = path.join(net.tmp, "input.json");
    fs.writeFileSync(input, JSON.stringify({ input: [irisInputs[1]] }));
    const run = await opg(
      ["task", "submit", "--model", String(modelId), "--input", input, "--wait", ...conn],
      {
        OPG_PRIVATE_KEY: account(2).privateKey,
      },
    );
    // account 2 holds no OPG yet: a clear refusal, nothing sent.
    expect(run.code).to.equal(1);
    expect(run.stderr).to.match(/holds 0\.0 OPG, the fee is 1\.0/);
    await (await net.deployment.token.connect(net.deployer).transfer(account(2).address, FEE)).wait();
    const paid = await opg(
      ["task", "submit", "--model", String(modelId), "--input", input, "--wait", ...conn],
      {
        OPG_PRIVATE_KEY: account(2).privateKey,
      },
    );
    expect(paid.code, paid.stderr).to.equal(0);
    const printed = JSON.parse(paid.stdout);
    const expected = executeQuantized(loadProgram(bundleDir), irisInputs[1]);
    expect(printed.output).to.deep.equal(expected.output);
    expect(await net.deployment.token.balanceOf(account(2).address)).to.equal(0n);
  });

  it("a commitment-mode model: the SDK stores the input on the data node and commits to it", async function () {
    const commitDir = await fixtureBundle(IRIS, { inputMode: "commitment", inputBits: 12 });
    const { modelId: committed } = await publishModel(net, commitDir, FEE);
    const other = startInferenceNode(net, 6, path.join(net.tmp, "inference-commit"), {
      extra: ["--models", String(committed)],
    });
    try {
      const request = await client.submit(committed, irisInputs[3]);
      expect(request.input).to.have.length(1); // the Poseidon commitment alone
      expect(request.task.inputDataHash).to.not.equal(ethers.ZeroHash);
      const blob = JSON.parse(
        (await new DataClient(net.data.url).get(String(request.task.inputDataHash).slice(2))).toString(
          "utf8",
        ),
      );
      expect(blob.quantized).to.deep.equal(request.quantizedInput.map(String));
      const result = await client.waitForResult(request.taskId, { timeoutMs: 300_000, pollMs: 200 });
      expect(result.quantized).to.deep.equal(
        executeQuantized(loadProgram(commitDir), irisInputs[3]).quantized,
      );
      expect(result.node).to.equal(account(6).address);
      expect(await client.audit(request.taskId)).to.include({ agree: true });
    } finally {
      expect(await other.stop()).to.equal(0);
    }
  });

  it("names the problem with bad input and misuse, and sends nothing", async function () {
    const before = await net.deployment.tasks.taskCount();
    await expectClientError(client.submit(modelId, [1, 2, 3]), /model \d+: input has shape \[3\]/);
    await expectClientError(client.submit(modelId, [1, Number.NaN, 3, 4]), /not a number/);
    await expectClientError(client.submit(99n, irisInputs[0]), /model 99 is not registered/);
    await expectClientError(client.audit(12345n), /task 12345 is None: only a verified task/);
    const readOnly = new OpgClient({
      runner: net.provider,
      deployment: net.deploymentFile,
      dataUrl: net.data.url,
    });
    await expectClientError(readOnly.submit(modelId, irisInputs[0]), /needs a signer/);
    const allowance = await net.deployment.token.allowance(
      dapp.address,
      await net.deployment.tasks.getAddress(),
    );
    await expectClientError(
      client.submit(modelId, irisInputs[0], { deadlineSeconds: 30 * 86_400 }),
      /a deadline 2592000 s away: the registry takes 1 to \d+ s/,
    );
    await expectClientError(client.submit(modelId, irisInputs[0], { fee: 1n }), /is below model \d+'s 1\.0/);
    expect(
      await net.deployment.token.allowance(dapp.address, await net.deployment.tasks.getAddress()),
    ).to.equal(allowance);
    expect(await net.deployment.tasks.taskCount()).to.equal(before);
    expect(await client.result(12345n)).to.equal(undefined);

    const inputFile = path.join(net.tmp, "no-key-input.json");
    fs.writeFileSync(inputFile, JSON.stringify({ input: [irisInputs[0]] }));
    const noKey = await opg(["task", "submit", "--model", String(modelId), "--input", inputFile, ...conn], {
      OPG_PRIVATE_KEY: "",
    });
    expect(noKey.code).to.equal(1);
    expect(noKey.stderr).to.match(/OPG_PRIVATE_KEY is not set/);
    expect(noKey.stderr).to.not.match(/\n\s+at /); // a message, not a stack trace
    const badId = await opg(["task", "audit", "abc", ...conn]);
    expect(badId.code).to.equal(1);
    expect(badId.stderr).to.match(/task id "abc" is not a non-negative integer/);
  });

  it("an audit catches a result settled under a registered key that is not the published bundle's", async function () {
    // A dishonest model owner publishes the honest iris bundle but registers the key of another circuit with
    // the same layout (iris quantized at 2^6 instead of 2^8): the chain verifies proofs of that circuit.
    const otherDir = await fixtureBundle(IRIS, { scaleBits: 6 });
    const other = loadManifest(otherDir);
    const honest = loadManifest(bundleDir);
    expect(other.publicSignals).to.deep.equal(honest.publicSignals);
    const { modelId: dishonest, verificationKeyHash: registeredHash } = await publishModel(
      net,
      bundleDir,
      FEE,
      {
        verificationKey: bundleKeyWords(otherDir),
      },
    );
    expect(registeredHash).to.equal(verificationKeyHash(bundleKeyWords(otherDir)));
    // The SDK checks the registration against the bundle before anything is sent.
    await expectClientError(
      client.submit(dishonest, irisInputs[2]),
      /model \d+: bundle [0-9a-f]{64}: verification key hash 0x[0-9a-f]{64} differs from the registry's/,
    );
    // A dapp that submits without the SDK: the input quantized as the published bundle says.
    const q = executeQuantized(loadProgram(bundleDir), irisInputs[2]);
    const registry = await net.deployment.tasks.getAddress();
    await (await net.deployment.token.connect(dapp).approve(registry, FEE)).wait();
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await net.deployment.tasks.connect(dapp).submitTask({
        modelId: dishonest,
        input: inputWords(honest, q.input),
        inputDataHash: ethers.ZeroHash,
        fee: FEE,
        deadline: now + 3600,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0,
      })
    ).wait();
    const request = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
    // The owner's own node (an eligible inference node: no claim for a ZK task) settles it with a proof of
    // the other circuit on the same input words.
    const cheat = account(6).connect(net.provider);
    const tasks = net.deployment.tasks.connect(cheat);
    const binding = BigInt(await tasks.taskBinding(request.taskId, cheat.address));
    const { proof, publicSignals } = await fullProve(
      witnessInput(other, q.input, binding),
      path.join(otherDir, other.artifacts.wasm.file),
      path.join(otherDir, other.artifacts.zkey!.file),
    );
    const forged = publicSignals.slice(0, other.publicSignals.outputWords).map(BigInt);
    expect(forged).to.not.deep.equal(packValues(q.quantized, honest.publicSignals.packBits));
    await (
      await tasks.submitResult(request.taskId, request.task, request.input, forged, proofWords(proof))
    ).wait();
    expect(await client.status(request.taskId)).to.equal("Verified");

    const report = await client.audit(request.taskId);
    expect(report).to.include({
      agree: false,
      proofValid: true,
      bundleMatches: false,
      outputMatches: false,
      node: cheat.address,
    });
    expect(report.detail).to.match(
      /^proof valid against the registered key; BUNDLE DIFFERS FROM THE REGISTRY: verification key hash 0x[0-9a-f]{64} differs from the registry's 0x[0-9a-f]{64}; OUTPUT DIFFERS$/,
    );
    expect(report.detail).to.include(registeredHash);
    const audited = await opg(["task", "audit", String(request.taskId), ...conn]);
    expect(audited.code, audited.stderr).to.equal(3);
    expect(JSON.parse(audited.stdout)).to.include({ agree: false, bundleMatches: false });

    // A sweep over every verified task so far: the honest ones agree, the forged one is named.
    const sweep = await opg(["task", "audit-range", "--from-block", "0", ...conn]);
    expect(sweep.code, sweep.stderr).to.equal(3);
    const lines = sweep.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const { summary } = lines[lines.length - 1];
    expect(summary.disagreed).to.deep.equal([String(request.taskId)]);
    expect(summary.setupNotSecure).to.include(String(modelId));
    expect(sweep.stderr).to.match(new RegExp(`^model ${modelId}: setup: DEVELOPMENT`, "m"));
    expect(summary.audited).to.equal(lines.length - 1);
    expect(summary.agreed).to.equal(summary.audited - 1);
    expect(summary.audited).to.be.at.least(3);
    const firstOnly = await client.auditRange(0, { toBlock: (await client.result(1n))!.settledBlock });
    expect(firstOnly).to.include({ audited: 1, agreed: 1 });
    await expectClientError(client.auditRange(10, { toBlock: 5 }), /block range 10\.\.5 is empty or invalid/);
  });

  it("opg operator: register, stake, status, unstake, refusals by custom error, claim earnings", async function () {
    const key = { OPG_PRIVATE_KEY: account(4).privateKey };
    const { token, tasks } = net.deployment;
    await (await token.connect(net.deployer).transfer(account(4).address, ethers.parseEther("6000"))).wait();
    const status = async (env = key, ...args: string[]) => {
      const r = await opg(["operator", "status", ...args, ...conn], env);
      expect(r.code, r.stderr).to.equal(0);
      return JSON.parse(r.stdout);
    };
    expect(await status()).to.deep.include({
      registered: false,
      eligible: { inference: false, verification: false },
    });

    const badRole = await opg(
      ["operator", "register", "--roles", "gpu", "--endpoint", "http://x", ...conn],
      key,
    );
    expect(badRole.code).to.equal(1);
    expect(badRole.stderr).to.match(/unknown role "gpu"/);
    const reg = await opg(
      ["operator", "register", "--roles", "inference", "--endpoint", "http://op4.local:9464", ...conn],
      key,
    );
    expect(reg.code, reg.stderr).to.equal(0);
    const staked = await opg(["operator", "stake", "5000", ...conn], key);
    expect(staked.code, staked.stderr).to.equal(0);
    expect(await status()).to.deep.include({
      registered: true,
      roles: ["inference"],
      endpoint: "http://op4.local:9464",
      bonded: "5000.0",
      eligible: { inference: true, verification: false },
    });

    const unstaked = await opg(["operator", "unstake", "1000", ...conn], key);
    expect(unstaked.code, unstaked.stderr).to.equal(0);
    expect(await status()).to.include({ bonded: "4000.0", unbonding: "1000.0" });
    const early = await opg(["operator", "withdraw", ...conn], key);
    expect(early.code).to.equal(1);
    expect(early.stderr).to.match(/withdraw reverted: NodeStakingUnbondingNotElapsed\(0x/);
    const tooMuch = await opg(["operator", "unstake", "999999", ...conn], key);
    expect(tooMuch.code).to.equal(1);
    expect(tooMuch.stderr).to.match(/requestUnstake reverted: NodeStakingInsufficientFreeStake\(/);

    // Node 5 earned fees settling the earlier tasks.
    const node5 = account(5).address;
    const earned = await tasks.creditsOf(node5);
    expect(earned > 0n).to.equal(true);
    const before = await token.balanceOf(node5);
    const claimed = await opg(["operator", "claim-earnings", ...conn], {
      OPG_PRIVATE_KEY: account(5).privateKey,
    });
    expect(claimed.code, claimed.stderr).to.equal(0);
    expect(JSON.parse(claimed.stdout)).to.include({ to: node5, amount: ethers.formatEther(earned) });
    expect(await token.balanceOf(node5)).to.equal(before + earned);
    expect(await status({ OPG_PRIVATE_KEY: "" }, node5)).to.include({ node: node5, earnings: "0.0" });
  });

  it("refunds a task nobody settled once its deadline passed, and not before", async function () {
    // A model no running node serves.
    const { modelId: unserved } = await publishModel(net, bundleDir, FEE);
    const request = await client.submit(unserved, irisInputs[4], { deadlineSeconds: 600 });
    await expectClientError(client.refund(request.taskId), /its deadline .* has not passed yet/);
    // Past the deadline by chain time, however long the steps above took on a loaded machine.
    const now = (await net.provider.getBlock("latest"))!.timestamp;
    await net.provider.send("evm_increaseTime", [Number(request.task.deadline) - now + 1]);
    await net.provider.send("evm_mine", []);
    const before = await net.deployment.token.balanceOf(dapp.address);
    // Anyone may send it (here a key with no stake and no task); the fee goes back to the requester.
    const run = await opg(["task", "refund", String(request.taskId), ...conn], {
      OPG_PRIVATE_KEY: account(9).privateKey,
    });
    expect(run.code, run.stderr).to.equal(0);
    expect(await net.deployment.token.balanceOf(dapp.address)).to.equal(before + FEE);
    expect(await client.status(request.taskId)).to.equal("Expired");
    await expectClientError(client.refund(request.taskId), /is Expired: only an open or claimed task/);
  });

  it("opg model register uploads a bundle and registers the model with its verification key", async function () {
    const run = await opg(["model", "register", bundleDir, "--fee", "2.5", ...conn], {
      OPG_PRIVATE_KEY: account(3).privateKey,
    });
    expect(run.code, run.stderr).to.equal(0);
    const printed = JSON.parse(run.stdout);
    const modelId = BigInt(printed.modelId);
    const model = await net.deployment.models.getModel(modelId);
    expect(model.owner).to.equal(account(3).address);
    expect(model.terms.fee).to.equal(ethers.parseEther("2.5"));
    expect(model.bundleHash).to.equal("0x" + printed.bundleId);
    expect(model.inputBits).to.equal(BigInt(loadManifest(bundleDir).quantization.inputBits));
    // The key is stored on chain as it is in the bundle's verification_key.json, nothing deployed for it.
    const words = bundleKeyWords(bundleDir);
    expect(model.terms.verificationKey).to.equal(printed.verificationKey);
    expect(model.verificationKeyHash).to.equal(printed.verificationKeyHash);
    expect(printed.verificationKeyHash).to.equal(verificationKeyHash(words));
    expect(await net.deployment.models.verificationKeyOf(modelId)).to.deep.equal(words);
    const info = await client.model(BigInt(printed.modelId));
    expect(info.manifest.onnx.sha256).to.equal(loadManifest(bundleDir).onnx.sha256);

    const missing = await opg(["model", "register", "no-such-dir", "--fee", "1", ...conn], {
      OPG_PRIVATE_KEY: account(3).privateKey,
    });
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/bundle directory no-such-dir not found/);
  });
});
