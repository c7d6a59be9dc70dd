import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "ethers";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { OpgClient } from "../../sdk";
import { startExplorer, type RunningExplorer } from "../../sdk/explorer-server";
import {
  account,
  fixtureBundle,
  publishModel,
  ROOT,
  stakeNode,
  startNetwork,
  stopAllSpawned,
  type Network,
} from "../../network/local-network";
import { DisputeManager__factory } from "../../typechain-types";
import { readDeployment } from "../../workers/runtime/chain";
import { parseSubmitted, proofWords, TOPICS } from "../../workers/runtime/tasks";
import {
  executeProgram,
  inputWords,
  loadManifest,
  loadProgram,
  packValues,
  quantizeInput,
  releaseProver,
  witnessInput,
} from "../../zkml";
import { fullProve } from "../../zkml/prover/groth16";
import { launchChromium, PageErrors } from "../helpers/browser";

/**
 * The explorer page in headless Chromium against a `hardhat node` where the optimistic games were played by
 * hand (no workers): posted outputs proved wrong by a challenger's proof, outputs rejected by a stake vote
 * whose ballots were then settled, and outputs that met no quorum of attestations, reopened; and ZK tasks,
 * which are not claimed: two settled in one `submitResults` batch that lists one of them twice (the second
 * listing skipped), and one left open. The page reads that chain itself; the test reads what it rendered.
 */
const IRIS = "test/fixtures/models/iris_mlp.onnx";
const INPUT = [[5.1, 3.5, 1.4, 0.2]];
const FEE = ethers.parseEther("1");
const NODE = 5;
const VERIFIERS = [6, 8, 9];
const REQUESTER = 7;
const FINAL = ["pass", "fail", "trust", "skip"];

// The callbacks given to page.waitForFunction run in the page, where `document` is the DOM's; this project
// compiles without the DOM library, so it is declared as far as those callbacks use it.
declare const document: {
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
};

describe("explorer page in headless Chromium: disputes, reopenings and a ZK batch played on a hardhat node", function () {
  this.timeout(900_000);
  let browser: Browser | undefined;
  let net: Network;
  let explorer: RunningExplorer;
  let client: OpgClient;
  let bundleDir: string;
  const contexts: BrowserContext[] = [];
  const ids = { disproof: 0n, vote: 0n, reopened: 0n, batchedFirst: 0n, batchedTwice: 0n, openZk: 0n };
  let batchTx: string;
  let challenger: string;
  let nodeAddress: string;

  before(async function () {
    browser = await launchChromium(this);
    if (!fs.existsSync(path.join(ROOT, "dist", "explorer", "index.html"))) {
      throw new Error("the explorer page is not built (dist/explorer): run npm run build:explorer");
    }
    bundleDir = await fixtureBundle(IRIS);
    net = await startNetwork();
    const everyMode = (await publishModel(net, bundleDir, FEE, { verificationModes: 1 | 2 | 4 })).modelId;
    // the same bundle, optimistic only: registered without its key, so its disputes go to a vote
    const voteOnly = (await publishModel(net, bundleDir, FEE, { verificationModes: 2 })).modelId;
    const node = await stakeNode(net, NODE, 1);
    nodeAddress = node.address;
    const verifiers: Awaited<ReturnType<typeof stakeNode>>[] = [];
    for (const i of VERIFIERS) verifiers.push(await stakeNode(net, i, 2, 1_000n * 10n ** 18n));
    const { token, tasks } = net.deployment;
    const disputesAddress = (await tasks.modeParameters())[0];
    const disputes = DisputeManager__factory.connect(disputesAddress, net.provider);
    for (const v of verifiers) {
      await (await token.connect(net.deployer).transfer(v.address, ethers.parseEther("200"))).wait();
      await (await token.connect(v).approve(disputesAddress, ethers.MaxUint256)).wait();
    }
    const requester = account(REQUESTER).connect(net.provider);
    await (
      await net.deployer.sendTransaction({ to: requester.address, value: ethers.parseEther("10") })
    ).wait();
    await (await token.connect(net.deployer).transfer(requester.address, FEE * 10n)).wait();
    client = new OpgClient({
      runner: requester,
      deployment: net.deploymentFile,
      dataUrl: net.data.url,
      cacheDir: path.join(net.tmp, "sdk"),
    });
    const program = loadProgram(bundleDir);
    const manifest = loadManifest(bundleDir);
    const quantized = quantizeInput(program, INPUT.flat());
    const honest = packValues(
      executeProgram(program, quantized)[program.output.tensor],
      manifest.publicSignals.packBits,
    );
    const wrong = honest.map((w, i) => (i === 0 ? w + 1n : w));
    const quantizedWords = inputWords(manifest, quantized);
    const hash = (words: bigint[]) => ethers.solidityPackedKeccak256(["uint256[]"], [words]);
    const later = async (seconds: number) => {
      await net.provider.send("evm_increaseTime", [seconds]);
      await net.provider.send("evm_mine", []);
    };
    /** Submit in optimistic mode (raw: the client refuses the model registered without its key), claim, post. */
    const posted = async (modelId: bigint, outputs: bigint[], attesters: typeof verifiers = []) => {
      const input = quantizedWords;
      const deadline = (await net.provider.getBlock("latest"))!.timestamp + 3600;
      const request = {
        modelId,
        input,
        inputDataHash: ethers.ZeroHash,
        fee: FEE,
        deadline,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0,
      };
      await (await token.connect(requester).approve(await tasks.getAddress(), FEE)).wait();
      const receipt = await (await tasks.connect(requester).submitTaskInMode(request, 2)).wait();
      const t = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
      await (await tasks.connect(node).claimTask(t.taskId, t.task)).wait();
      const signatures = [];
      for (const a of attesters) {
        const digest = await tasks.attestationDigest(t.taskId, node.address, hash(outputs));
        signatures.push(await a.signMessage(ethers.getBytes(digest)));
      }
      await (await tasks.connect(node).submitResultOptimistic(t.taskId, t.task, outputs, signatures)).wait();
      return t;
    };

    // 1. wrong outputs, attested by verifier 0, proved wrong by verifier 1
    const lie = await posted(everyMode, wrong, [verifiers[0]]);
    challenger = verifiers[1].address;
    const binding = BigInt(await tasks.taskBinding(lie.taskId, challenger));
    const { proof } = await fullProve(
      witnessInput(manifest, quantized, binding),
      path.join(bundleDir, manifest.artifacts.wasm.file),
      path.join(bundleDir, manifest.artifacts.zkey!.file),
    );
    await (
      await disputes
        .connect(verifiers[1])
        .challengeWithProof(
          lie.taskId,
          lie.task,
          hash(wrong),
          [verifiers[0].address],
          lie.input,
          honest,
          proofWords(proof),
        )
    ).wait();
    ids.disproof = lie.taskId;

    // 2. outputs on the model without a key: challenged, voted on, rejected; both other ballots settled
    const voted = await posted(voteOnly, wrong);
    await (await disputes.connect(verifiers[1]).challenge(voted.taskId, voted.task, hash(wrong), [])).wait();
    await (await disputes.connect(verifiers[2]).vote(voted.taskId, true)).wait();
    await (await disputes.connect(verifiers[0]).vote(voted.taskId, false)).wait();
    await later(Number(await disputes.voteWindow()) + 1);
    await (await disputes.connect(verifiers[0]).resolveVote(voted.taskId, voted.task, wrong, [])).wait();
    await (await disputes.connect(verifiers[0]).settleBallot(voted.taskId, verifiers[2].address)).wait();
    await (await disputes.connect(verifiers[0]).settleBallot(voted.taskId, verifiers[0].address)).wait();
    ids.vote = voted.taskId;

    // 3. honest outputs nobody attested: after the window, reopened
    const unattested = await posted(everyMode, honest);
    await later(601);
    await client.reopen(unattested.taskId);
    ids.reopened = unattested.taskId;

    // 4. ZK: two tasks settled by the node in one batch that lists the second twice (skipped the second time),
    // with no claim; a third left open
    const zk = [await client.submit(everyMode, INPUT), await client.submit(everyMode, INPUT)];
    const submissions = [];
    for (const t of zk) {
      const bound = BigInt(await tasks.taskBinding(t.taskId, node.address));
      const proved = await fullProve(
        witnessInput(manifest, quantized, bound),
        path.join(bundleDir, manifest.artifacts.wasm.file),
        path.join(bundleDir, manifest.artifacts.zkey!.file),
      );
      submissions.push({
        taskId: t.taskId,
        task: t.task,
        input: t.input,
        outputs: honest,
        proof: proofWords(proved.proof),
      });
    }
    const batch = await (
      await tasks.connect(node).submitResults([submissions[0], submissions[1], submissions[1]])
    ).wait();
    batchTx = batch!.hash;
    [ids.batchedFirst, ids.batchedTwice] = zk.map((t) => t.taskId);
    ids.openZk = (await client.submit(everyMode, INPUT)).taskId;

    explorer = await startExplorer({
      rpc: net.chain.url,
      data: net.data.url,
      deployment: readDeployment(net.deploymentFile),
      port: 0,
      host: "127.0.0.1",
    });
  });

  afterEach(async function () {
    await Promise.all(contexts.splice(0).map((c) => c.close()));
  });

  after(async function () {
    await browser?.close();
    await explorer?.close();
    await client?.close();
    await stopAllSpawned();
    await net?.stop();
    await releaseProver();
  });

  async function taskPage(id: bigint): Promise<{ page: Page; errors: PageErrors }> {
    const context = await browser!.newContext();
    contexts.push(context);
    context.setDefaultTimeout(0);
    const page = await context.newPage();
    const errors = new PageErrors(page);
    await page.goto(`${explorer.url}#/task/${id}`);
    await page.waitForSelector('body[data-ready="1"]');
    await page.waitForSelector("[data-testid=task-view] [data-testid=task-state]");
    return { page, errors };
  }

  /** Wait for the verdict and the named checks to reach a final status; every check and the verdict. */
  async function settled(page: Page, checkIds: string[]) {
    for (const sel of [
      "[data-testid=verdict]",
      ...checkIds.map((id) => `[data-testid=checks] [data-check="${id}"]`),
    ]) {
      await page.waitForFunction(
        ([s, final]) => final.includes(document.querySelector(s)?.getAttribute("data-status") ?? ""),
        [sel, FINAL] as const,
      );
    }
    const all = await page.$$eval("[data-testid=checks] [data-check]", (els) =>
      els.map((e) => ({
        id: e.getAttribute("data-check")!,
        status: e.getAttribute("data-status")!,
        text: (e.textContent ?? "").replace(/\s+/g, " ").trim(),
      })),
    );
    const verdict = await page.getAttribute("[data-testid=verdict]", "data-status");
    const verdictText = ((await page.textContent("[data-testid=verdict]")) ?? "").replace(/\s+/g, " ");
    const summary = `verdict ${verdict}: ${verdictText}\n  ${all.map((c) => `${c.id} ${c.status}: ${c.text}`).join("\n  ")}`;
    return { all, verdict, verdictText, summary, get: (id: string) => all.find((c) => c.id === id) };
  }

  const timelineText = async (page: Page, event: string) =>
    ((await page.textContent(`[data-testid=timeline] li[data-event=${event}]`)) ?? "").replace(/\s+/g, " ");

  it("a rejection by proof: the challenger's proof verifies in the page, the verdict says who proved the outputs wrong", async function () {
    const { page, errors } = await taskPage(ids.disproof);
    expect(await page.textContent("[data-testid=task-state]")).to.equal("Rejected");
    const checkIds = ["dispute", "public-signals", "groth16", "disproof-outputs", "vk-hash", "bundle-hash"];
    const c = await settled(page, checkIds);
    for (const id of checkIds) expect(c.get(id)?.status, `${id}; ${c.summary}`).to.equal("pass");
    expect(c.verdict, c.summary).to.equal("pass");
    expect(c.verdictText).to.match(
      /Rejection verified in this page: the posted outputs were proved wrong by 0x\w{4}…\w{4} with a proof of other outputs/,
    );
    expect(c.get("public-signals")?.text).to.include("binding (chain, registry, task, challenger)");
    expect(await page.textContent("[data-testid=checks] h2")).to.include("settled by challengeWithProof");
    expect(await timelineText(page, "DisputeOpened")).to.match(/proved wrong by .*a proof of other outputs/);
    expect(await timelineText(page, "AttesterSlashed")).to.match(/slashed 100 OPG/);
    expect(await page.textContent("[data-testid=outputs]")).to.include("PROVED WRONG");
    expect(errors.unexpected(), "console errors").to.deep.equal([]);
  });

  it("a rejection by vote: the ballots re-tallied, their settlements in the timeline; nothing to verify", async function () {
    const { page, errors } = await taskPage(ids.vote);
    expect(await page.textContent("[data-testid=task-state]")).to.equal("Rejected");
    const c = await settled(page, ["dispute"]);
    expect(c.get("dispute")?.status, c.summary).to.equal("trust");
    expect(c.get("dispute")?.text).to.match(
      /the ballots re-added here from the DisputeVoted logs give the recorded outcome/,
    );
    expect(c.get("dispute")?.text).to.match(
      // verifier 0 weighs 900 OPG: it lost 100 OPG for attesting the outputs proved wrong above
      /3, the challenger's own included \(1000 OPG for the node, 1900 OPG against\)/,
    );
    expect(c.verdict, c.summary).to.equal("skip");
    const settledBallots = await page.$$eval("[data-testid=timeline] li[data-event=BallotSettled]", (els) =>
      els.map((e) => (e.textContent ?? "").replace(/\s+/g, " ")),
    );
    expect(settledBallots).to.have.length(2);
    expect(settledBallots.join("\n")).to.match(/settled: slashed 100 OPG \(losing side\)/);
    expect(settledBallots.join("\n")).to.match(/settled: paid [\d.]+ OPG \(winning side\)/);
    expect(await page.$$("[data-testid=timeline] li[data-event=DisputeVoted]")).to.have.length(3);
    expect(errors.unexpected(), "console errors").to.deep.equal([]);
  });

  it("a reopened task: open again, the reopening in the timeline and the waiting sentence", async function () {
    const { page, errors } = await taskPage(ids.reopened);
    expect(await page.textContent("[data-testid=task-state]")).to.equal("Open");
    expect(await timelineText(page, "TaskReopened")).to.match(
      /Reopened: the outputs .* posted met no quorum of attestations by the window's end/,
    );
    expect(await timelineText(page, "TaskClaimAbandoned")).to.match(
      /its posted outputs met no quorum of attestations; the task was reopened/,
    );
    const verdict = ((await page.textContent("[data-testid=verdict]")) ?? "").replace(/\s+/g, " ");
    expect(verdict).to.match(
      new RegExp(
        `Not settled yet: reopened at block \\d+ \\(the outputs ${nodeAddress.slice(0, 6)}…${nodeAddress.slice(-4)} ` +
          "posted met no quorum of attestations\\), open, nobody holds a claim",
      ),
    );
    expect(await page.textContent("[data-testid=outputs]")).to.include("No outputs yet.");
    expect(challenger).to.match(/^0x/);
    expect(errors.unexpected(), "console errors").to.deep.equal([]);
  });

  it("a ZK task settled in a batch: its own submission re-verified, the batch named, the skipped listing in the timeline", async function () {
    const { page, errors } = await taskPage(ids.batchedTwice);
    expect(await page.textContent("[data-testid=task-state]")).to.equal("Verified");
    const checkIds = ["bundle-hash", "vk-hash", "public-signals", "groth16", "output-match"];
    const c = await settled(page, checkIds);
    for (const id of checkIds) expect(c.get(id)?.status, `${id}; ${c.summary}`).to.equal("pass");
    expect(c.verdict, c.summary).to.equal("pass");
    // the checks read the task's first listing in the batch, the one that settled it
    expect(await page.textContent("[data-testid=settled-by]")).to.equal(
      " · settled in a batch of 3 (submitResults; this task's submission is 2 of 3)",
    );
    expect(c.get("public-signals")?.text).to.match(/a batch of 3, this task's submission 2 of 3/);
    expect(c.get("output-match")?.text).to.include("the registry's stored hash (isVerifiedResult)");
    // the header names the settling transaction and what else it did, from its logs
    const header = ((await page.textContent("[data-testid=settled]")) ?? "").replace(/\s+/g, " ");
    expect(header).to.match(
      new RegExp(
        `^block \\d+ · ${batchTx.slice(0, 8)}…${batchTx.slice(-6)} · settled in a batch of 3 \\(2 verified, 1 skipped\\)`,
      ),
    );
    expect(await timelineText(page, "TaskResultSkipped")).to.include(
      "A submitResults batch skipped its result for this task: it was already verified (another result came " +
        "first, or the batch listed it twice); nothing was paid for it",
    );
    expect(await page.$("[data-testid=timeline] li[data-event=TaskClaimed]"), "a claim").to.equal(null);
    expect(errors.unexpected(), "console errors").to.deep.equal([]);

    // the batch's first task: its own submission, 1 of 3
    const first = await taskPage(ids.batchedFirst);
    await settled(first.page, ["groth16", "output-match"]);
    expect(await first.page.textContent("[data-testid=settled-by]")).to.equal(
      " · settled in a batch of 3 (submitResults; this task's submission is 1 of 3)",
    );
    expect(await first.page.$("[data-testid=timeline] li[data-event=TaskResultSkipped]")).to.equal(null);
    expect(first.errors.unexpected(), "console errors").to.deep.equal([]);
  });

  it("an open ZK task: nobody claims it, it waits for the first node in its service order", async function () {
    const { page, errors } = await taskPage(ids.openZk);
    expect(await page.textContent("[data-testid=task-state]")).to.equal("Open");
    const verdict = ((await page.textContent("[data-testid=verdict]")) ?? "").replace(/\s+/g, " ");
    expect(verdict).to.match(
      /Not settled yet: open, waiting for the first node in its service order to settle it with a proof \(deadline .+\)\.$/,
    );
    expect(await page.$("[data-testid=settled]")).to.equal(null);
    expect(errors.unexpected(), "console errors").to.deep.equal([]);
  });
});
