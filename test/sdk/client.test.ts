import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import {
  TABULAR_FIXTURES,
  TabularFixture,
  tabularFile,
  tabularTestData,
} from "../../scripts/lib/tabular-fixtures";
import { referenceOutputs } from "../../zkml";
import { expect } from "chai";
import { ethers, JsonRpcProvider, Wallet } from "ethers";
import {
  account,
  fixtureBundle,
  freePort,
  publishModel,
  ROOT,
  runToEnd,
  spawnProc,
  stakeNode,
  startNetwork,
  stopAllSpawned,
  waitFor,
  type Network,
} from "../../network/local-network";
import { OpgClient, OpgClientError, sendTx, type TaskWaitStatus } from "../../sdk";
import { proofWords, type SubmittedTask } from "../../workers/runtime/tasks";
import { executeQuantized, loadManifest, loadProgram, releaseProver, witnessInput } from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";

const IRIS = "test/fixtures/models/iris_mlp.onnx";
const FEE = ethers.parseEther("1");
const irisInputs: number[][] = JSON.parse(
  fs.readFileSync(path.join(ROOT, "test", "fixtures", "models", "iris_test.json"), "utf8"),
).inputs;

async function expectClientError(p: Promise<unknown>, pattern: RegExp) {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(OpgClientError);
    expect((e as Error).message, (e as Error).message).to.match(pattern);
    return;
  }
  expect.fail(`expected an OpgClientError matching ${pattern}`);
}

/**
 * The SDK as a dapp uses it, over a plain `new JsonRpcProvider(url)` (ethers' defaults: request batching,
 * a 250 ms response cache, network detection) against a real `hardhat node`. Node 5 plays the inference
 * node by hand (prove, submit: a ZK task is not claimed), so each situation a wait reports can be set up in
 * turn.
 */
describe("OpgClient (hardhat node, plain JsonRpcProvider)", function () {
  this.timeout(600_000);
  let net: Network;
  let bundleDir: string;
  let modelId: bigint;
  let provider: JsonRpcProvider;
  let dapp: Wallet;
  let client: OpgClient;
  let verifiedTaskId: bigint | undefined;

  before(async function () {
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    ({ modelId } = await publishModel(net, bundleDir, FEE));
    // A fresh key with OPG and ETH, nothing approved: what a new dapp holds.
    provider = new JsonRpcProvider(net.chain.url);
    dapp = new Wallet(ethers.hexlify(ethers.randomBytes(32)), provider);
    await (await net.deployer.sendTransaction({ to: dapp.address, value: ethers.parseEther("10") })).wait();
    await (await net.deployment.token.connect(net.deployer).transfer(dapp.address, FEE * 50n)).wait();
    client = new OpgClient({
      runner: dapp,
      deployment: net.deploymentFile,
      dataUrl: net.data.url,
      cacheDir: path.join(net.tmp, "sdk"),
    });
  });

  after(async function () {
    await client?.close();
    provider?.destroy();
    await stopAllSpawned();
    await net?.stop();
    await releaseProver(); // the proofs made in this process started snarkjs's threads
  });

  /**
   * Mine a block past `deadline`. Its timestamp is set, not left to the node's clock plus an offset, so the
   * block cannot land at or before the deadline; the test checks that it did not.
   */
  async function minePast(deadline: ethers.BigNumberish) {
    const latest = (await net.provider.getBlock("latest"))!.timestamp;
    await net.provider.send("evm_setNextBlockTimestamp", [Math.max(latest, Number(deadline)) + 1]);
    await net.provider.send("evm_mine", []);
    const mined = (await net.provider.getBlock("latest"))!.timestamp;
    expect(mined > Number(deadline), `block at ${mined}, deadline ${deadline}`).to.equal(true);
  }

  /**
   * Node `index` settles `request`'s task with an honest proof bound to it, as an inference node does: no
   * claim (ZK tasks are not claimed), a `submitResults` batch (`batch`, what the node's settler sends) or a
   * lone `submitResult`.
   */
  async function settle(
    index: number,
    request: { taskId: bigint; task: SubmittedTask["task"]; input: bigint[] },
    quantizedInput: bigint[],
    opts: { dir?: string; batch?: boolean } = {},
  ) {
    const dir = opts.dir ?? bundleDir;
    const node = account(index).connect(net.provider);
    const tasks = net.deployment.tasks.connect(node);
    const manifest = loadManifest(dir);
    const binding = BigInt(await tasks.taskBinding(request.taskId, node.address));
    const { proof, publicSignals } = await fullProve(
      witnessInput(manifest, quantizedInput, binding),
      path.join(dir, manifest.artifacts.wasm.file),
      path.join(dir, manifest.artifacts.zkey!.file),
    );
    const outputs = publicSignals.slice(0, manifest.publicSignals.outputWords).map(BigInt);
    const { taskId, task, input } = request;
    const tx = opts.batch
      ? await tasks.submitResults([{ taskId, task, input, outputs, proof: proofWords(proof) }])
      : await tasks.submitResult(taskId, task, input, outputs, proofWords(proof));
    await tx.wait();
  }

  describe("deployment check", function () {
    it("names a deployment file written for another chain instead of failing to decode", async function () {
      const other = path.join(net.tmp, "mainnet.json");
      const written = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
      fs.writeFileSync(other, JSON.stringify({ ...written, chainId: 1 }));
      const wrong = new OpgClient({ runner: provider, deployment: other, dataUrl: net.data.url });
      await expectClientError(
        wrong.status(1),
        new RegExp(`deployment file ${other} is for chain 1 but the RPC endpoint \\S+ serves chain 31337`),
      );
      await expectClientError(wrong.model(1), /is for chain 1/);
      await wrong.close();
    });

    it("names the addresses that hold no contract (a restarted chain, another deployment)", async function () {
      const empty = ethers.Wallet.createRandom().address;
      const written = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
      const stale = new OpgClient({
        runner: provider,
        deployment: { ...written, tasks: empty },
        dataUrl: net.data.url,
      });
      await expectClientError(
        stale.waitForResult(1),
        new RegExp(
          `^the deployment names ${empty} as the tasks contract but there is no contract code there`,
        ),
      );
      await stale.close();
    });
    it("fails the first call, naming the URL, when nothing listens at the RPC URL", async function () {
      const url = `http://127.0.0.1:${await freePort()}`;
      const nowhere = new JsonRpcProvider(url);
      const lost = new OpgClient({
        runner: nowhere,
        deployment: net.deploymentFile,
        dataUrl: net.data.url,
        connectTimeoutMs: 1_000,
      });
      try {
        await expectClientError(
          lost.status(1),
          new RegExp(
            `^(cannot reach the RPC endpoint ${url} to check deployment file .*: .*ECONNREFUSED|` +
              `the RPC endpoint ${url} did not answer within 1000 ms)`,
          ),
        );
      } finally {
        nowhere.destroy(); // ethers retries an unreachable JsonRpcProvider until it is destroyed
        await lost.close();
      }
    });
  });

  describe("ids", function () {
    it("takes model and task ids as numbers or bigints, and refuses what is not an id", async function () {
      expect((await client.model(Number(modelId))).modelId).to.equal(modelId);
      expect(await client.status(999)).to.equal("None");
      expect(await client.status(999n)).to.equal("None");
      await expectClientError(client.status(1.5), /task id 1\.5 is not a whole number/);
      await expectClientError(client.submit(-1, irisInputs[0]), /model id -1 is not a whole number/);
      await expectClientError(client.waitForResult(12345), /task 12345 does not exist/);
    });
  });

  describe("back-to-back transactions", function () {
    it("deposit (approve + deposit), then submit after submit, and submits made at once", async function () {
      const nonceBefore = await provider.getTransactionCount(dapp.address);
      // approve and deposit back to back (the README's deposit with a plain provider)
      await client.deposit(FEE * 2n);
      expect(await client.credits()).to.equal(FEE * 2n);
      // two submissions from credits, then one that approves the fee from the wallet, with no pause
      const first = await client.submit(modelId, irisInputs[0]);
      const second = await client.submit(Number(modelId), irisInputs[1]);
      const third = await client.submit(modelId, irisInputs[2]);
      expect(second.taskId).to.equal(first.taskId + 1n);
      expect(third.taskId).to.equal(second.taskId + 1n);
      // three at once: each approves and pays in turn
      const together = await Promise.all([0, 1, 2].map((i) => client.submit(modelId, irisInputs[i])));
      expect(together.map((r) => r.taskId - first.taskId).sort()).to.deep.equal([3n, 4n, 5n]);
      // deposit right after a submit
      await client.deposit(FEE);
      const fourth = await client.submit(modelId, irisInputs[3]);
      expect(fourth.gasUsed < third.gasUsed, "the last one paid from credits").to.equal(true);
      // approve+deposit, 2 credit submits, 4 x (approve + submit), approve+deposit, 1 credit submit
      expect(await provider.getTransactionCount(dapp.address)).to.equal(nonceBefore + 15);
      expect(await client.credits()).to.equal(0n);
    });
  });

  describe("waitForResult", function () {
    it("says what it waits for: no eligible node, then the first node in its service order; then the result", async function () {
      const seen: TaskWaitStatus[] = [];
      const request = await client.submit(modelId, irisInputs[4], { deadlineSeconds: 3_600 });
      // No node is staked yet: the timeout names the situation.
      await expectClientError(
        client.waitForResult(request.taskId, { timeoutMs: 2_000, onStatus: (s) => seen.push(s) }),
        new RegExp(
          `^task ${request.taskId}: no result after 2000 ms, still Open: open, but no eligible node is staked: ` +
            "no inference node has the minimum free stake \\(\\d+ registered\\), so nobody can serve it",
        ),
      );
      expect(seen).to.have.length(1);
      expect(seen[0]).to.deep.include({ status: "Open", eligibleNodes: 0 });
      expect(seen[0].deadline).to.equal(Number(request.task.deadline));

      seen.length = 0;
      const waiting = client.waitForResult(request.taskId, { onStatus: (s) => seen.push(s), pollMs: 250 });
      await waitFor("the no-node status", async () => seen.length > 0, 60_000);
      await stakeNode(net, 5);
      // Eligibility is re-read every 15 s while the task is open.
      await waitFor("the open status", async () => seen.some((s) => s.eligibleNodes === 1), 60_000);
      const open = seen.find((s) => s.eligibleNodes === 1)!;
      // a ZK task is not claimed: the eligible nodes take it in their service order, the first proof settles it
      expect(open.message).to.match(
        /^open, waiting for the first node in its service order to settle it with a proof \(1 eligible inference node staked\); deadline \d{4}-\d\d-\d\dT/,
      );
      expect(open).to.not.have.property("claimedBy");
      await expectClientError(
        sendTx("claimTask", net.deployment.tasks.interface, () =>
          net.deployment.tasks
            .connect(account(5).connect(net.provider))
            .claimTask(request.taskId, request.task),
        ),
        new RegExp(
          `^claimTask reverted: TaskRegistryWrongMode\\(${request.taskId}, 1\\): task ${request.taskId} is a ZK ` +
            "task, which this call does not take: ZK tasks are settled with submitResult or submitResults and " +
            "TEE tasks with submitResultTee, directly by any eligible inference node \\(no claim",
        ),
      );
      // settled in a submitResults batch, as the node's settler sends it
      await settle(5, request, request.quantizedInput, { batch: true });
      const result = await waiting;
      const expected = executeQuantized(loadProgram(bundleDir), irisInputs[4]);
      expect(result.quantized).to.deep.equal(expected.quantized);
      expect(result.node).to.equal(account(5).address);
      // read from its own submission in the batch's calldata
      expect(result).to.include({ mode: "zk", settledBy: "proof" });
      expect(
        seen.map((s) => s.status),
        JSON.stringify(seen, null, 1),
      ).to.deep.equal(["Open", "Open"]);
      verifiedTaskId = request.taskId;
      // A task already verified resolves at once, by number too.
      expect((await client.waitForResult(Number(request.taskId))).argmax).to.equal(result.argmax);
    });

    it("fails at once, saying it is refundable, when the deadline passed unsettled", async function () {
      const request = await client.submit(modelId, irisInputs[5], { deadlineSeconds: 60 });
      await minePast(request.task.deadline);
      const seen: TaskWaitStatus[] = [];
      // Bounded below the test's own timeout, so that a wait that missed the deadline fails here, by name.
      await expectClientError(
        client.waitForResult(request.taskId, { onStatus: (s) => seen.push(s), timeoutMs: 120_000 }),
        new RegExp(
          `^task ${request.taskId}: its deadline .* passed without a verified result \\(still Open\\).*refundable`,
        ),
      );
      expect(seen.at(-1)!.message).to.match(/refundable to the requester/);
      // A waiter that did not submit it finds the deadline from the TaskSubmitted event.
      const reader = new OpgClient({
        runner: provider,
        deployment: net.deploymentFile,
        dataUrl: net.data.url,
      });
      await expectClientError(
        reader.waitForResult(request.taskId, { timeoutMs: 120_000 }),
        /its deadline .* passed/,
      );
      await expectClientError(reader.refund(request.taskId), /needs a signer/);
      await client.refund(request.taskId);
      await expectClientError(client.waitForResult(request.taskId), /expired without a verified result/);
      await reader.close();
    });

    it("notices a deadline that passes while it is already polling, from the chain's latest block", async function () {
      await client.deposit(FEE);
      const request = await client.submit(modelId, irisInputs[7], { deadlineSeconds: 60 });
      const seen: TaskWaitStatus[] = [];
      let settled = false;
      const waiting = client.waitForResult(request.taskId, {
        onStatus: (s) => seen.push(s),
        pollMs: 100,
        timeoutMs: 120_000,
      });
      waiting.catch(() => (settled = true));
      await waitFor("the open status", async () => seen.some((s) => s.status === "Open"), 60_000);
      // Chain time moves past the deadline, but no block carries it yet: the latest block is what counts.
      const now = (await net.provider.getBlock("latest"))!.timestamp;
      await net.provider.send("evm_increaseTime", [Number(request.task.deadline) - now + 1]);
      const polls = seen.length;
      await new Promise((r) => setTimeout(r, 500));
      expect(settled, "no block past the deadline yet").to.equal(false);
      expect(seen.length, JSON.stringify(seen)).to.equal(polls);
      await net.provider.send("evm_mine", []);
      const mined = (await net.provider.getBlock("latest"))!.timestamp;
      expect(mined > Number(request.task.deadline), `block at ${mined}`).to.equal(true);
      await expectClientError(
        waiting,
        new RegExp(
          `^task ${request.taskId}: its deadline .* passed without a verified result \\(still Open\\)`,
        ),
      );
      expect(seen.at(-1)!.message).to.match(/refundable to the requester/);
    });

    it("fails, instead of waiting for its timeout, when the chain no longer holds a task it submitted", async function () {
      // A key of its own, so that the transactions the revert undoes leave the shared client's nonces alone.
      const wallet = new Wallet(ethers.hexlify(ethers.randomBytes(32)), provider);
      await (
        await net.deployer.sendTransaction({ to: wallet.address, value: ethers.parseEther("1") })
      ).wait();
      await (await net.deployment.token.connect(net.deployer).transfer(wallet.address, FEE)).wait();
      const own = new OpgClient({ runner: wallet, deployment: net.deploymentFile, dataUrl: net.data.url });
      const snapshot = await net.provider.send("evm_snapshot", []);
      const request = await own.submit(modelId, irisInputs[8], { deadlineSeconds: 60 });
      // The chain goes back to before the submission (a reorganisation), then past the task's deadline.
      await net.provider.send("evm_revert", [snapshot]);
      await minePast(request.task.deadline);
      await expectClientError(
        own.waitForResult(request.taskId, { timeoutMs: 120_000 }),
        new RegExp(
          `^task ${request.taskId}: this RPC node's chain does not hold the task, .* past the task's deadline`,
        ),
      );
      await own.close();
    });

    it("a request the RPC never answers holds the wait for one bounded look, not until its timeout", async function () {
      // A JSON-RPC proxy in front of the hardhat node that leaves one request unanswered (the fault injected
      // here): the first that reads the latest block, i.e. the wait's first look.
      let holdNext = false;
      const held: http.ServerResponse[] = [];
      const proxy = http.createServer(async (req, res) => {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const body = Buffer.concat(chunks).toString();
        if (holdNext && body.includes("eth_getBlockByNumber")) {
          holdNext = false;
          held.push(res);
          return;
        }
        const answer = await fetch(net.chain.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
        res.writeHead(answer.status, { "content-type": "application/json" });
        res.end(await answer.text());
      });
      await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
      const viaProxy = new JsonRpcProvider(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`);
      const reader = new OpgClient({
        runner: viaProxy,
        deployment: net.deploymentFile,
        dataUrl: net.data.url,
      });
      try {
        const request = await client.submit(modelId, irisInputs[9], { deadlineSeconds: 60 });
        await minePast(request.task.deadline);
        expect(await reader.status(request.taskId)).to.equal("Open"); // deployment checked through the proxy
        holdNext = true;
        await expectClientError(
          reader.waitForResult(request.taskId, { timeoutMs: 120_000 }),
          new RegExp(`^task ${request.taskId}: its deadline .* passed without a verified result`),
        );
        expect(held, "the proxy held the first look's request").to.have.length(1);
      } finally {
        await reader.close();
        viaProxy.destroy();
        for (const res of held) res.destroy();
        proxy.closeAllConnections();
        await new Promise((r) => proxy.close(r));
      }
    });

    it("close() ends a wait in progress, and the client refuses calls after it", async function () {
      const other = new OpgClient({
        runner: provider,
        deployment: net.deploymentFile,
        dataUrl: net.data.url,
      });
      const request = await client.submit(modelId, irisInputs[6]);
      let ended = false;
      let looked = false;
      const waiting = other.waitForResult(request.taskId, {
        timeoutMs: 120_000,
        onStatus: () => (looked = true),
      });
      waiting.catch(() => (ended = true));
      await waitFor("the wait's first look", async () => looked, 60_000);
      await other.close();
      expect(ended, "the wait ended before close() returned").to.equal(true);
      await expectClientError(waiting, /the OpgClient was closed while waiting/);
      await expectClientError(other.status(request.taskId), /this OpgClient is closed/);
      await other.close(); // twice is harmless
    });

    it("close() ends a wait still in its first reads (the deployment check), and returns once it has ended", async function () {
      const fresh = new OpgClient({
        runner: provider,
        deployment: net.deploymentFile,
        dataUrl: net.data.url,
      });
      const request = await client.submit(modelId, irisInputs[6]);
      let ended = false;
      // Nothing has been read yet when close() comes: the wait is still checking the deployment.
      const waiting = fresh.waitForResult(request.taskId, { timeoutMs: 120_000 });
      waiting.catch(() => (ended = true));
      await fresh.close();
      expect(ended, "the wait ended before close() returned").to.equal(true);
      await expectClientError(waiting, /^the OpgClient was closed while waiting$/);
    });
  });

  describe("close()", function () {
    const script = (close: boolean) => `
      require(${JSON.stringify(require.resolve("ts-node"))}).register({ transpileOnly: true });
      const { JsonRpcProvider } = require(${JSON.stringify(require.resolve("ethers"))});
      const { OpgClient } = require(${JSON.stringify(path.join(ROOT, "sdk"))});
      (async () => {
        const provider = new JsonRpcProvider(process.env.RPC_URL);
        const client = new OpgClient({ runner: provider, deployment: process.env.DEPLOYMENT, dataUrl: process.env.DATA_URL });
        const report = await client.audit(Number(process.env.TASK_ID));
        console.log(JSON.stringify({ agree: report.agree }));
        ${close ? "await client.close();" : ""}
      })().catch((e) => { console.error(e); process.exit(1); });
    `;

    it("a script that audits and closes exits by itself (snarkjs threads, listeners, timers freed)", async function () {
      expect(verifiedTaskId !== undefined, "the waitForResult test verified a task").to.equal(true);
      const file = path.join(net.tmp, "audit-and-close.js");
      fs.writeFileSync(file, script(true));
      const env = {
        RPC_URL: net.chain.url,
        DEPLOYMENT: net.deploymentFile,
        DATA_URL: net.data.url,
        TASK_ID: String(verifiedTaskId),
      };
      // runToEnd resolves when the process exits (its bound only fails a hung one, with code 124).
      const run = await runToEnd([file], env, 180_000);
      expect(run.code, run.stderr).to.equal(0);
      expect(JSON.parse(run.stdout)).to.deep.equal({ agree: true });

      // Without close(), snarkjs's worker threads keep the same script alive after its last line.
      const hung = path.join(net.tmp, "audit-no-close.js");
      fs.writeFileSync(hung, script(false));
      const proc = spawnProc("audit-no-close", [hung], env);
      await waitFor(
        "its report",
        async () => proc.output.some((l) => l.includes('"agree":true')),
        180_000,
        200,
        proc,
      );
      await new Promise((r) => setTimeout(r, 3_000));
      expect(proc.hasExited(), "still running without close()").to.equal(false);
      await proc.stop("SIGKILL");
    });
  });
  describe("a classifier export with two outputs (label, probabilities)", function () {
    it("result() gives each output by name: the label as the model's class, the probabilities as onnxruntime's", async function () {
      const forest = TABULAR_FIXTURES.find((f) => f.name === "iris_forest") as TabularFixture;
      const dir = await fixtureBundle(`test/fixtures/models/${forest.name}.onnx`, forest.options);
      const { modelId: forestId } = await publishModel(net, dir, FEE);
      await stakeNode(net, 6);
      const x = tabularTestData(forest).inputs[3];
      await client.deposit(FEE);
      const request = await client.submit(forestId, x);
      await settle(6, request, request.quantizedInput, { dir });
      const result = await client.waitForResult(request.taskId);
      const theirs = await (await referenceOutputs(tabularFile(forest)))(x, [1, 4]);
      expect(result.outputs.label).to.deep.equal(theirs.label);
      (result.outputs.probabilities as number[]).forEach((p, k) =>
        expect(Math.abs(p - (theirs.probabilities[k] as number))).to.be.at.most(forest.tolerance),
      );
      expect(Object.keys(result.outputs)).to.deep.equal(["label", "probabilities"]);
    });
  });
});
