import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { expect } from "chai";
import { ethers } from "hardhat";
import { Wallet, getBytes, solidityPackedKeccak256, verifyMessage, type Provider } from "ethers";
import { CLAIM_COLLATERAL, modesFixture } from "../helpers/market-fixture";
import { TINY_PACK_BITS, tinyInputValues, tinyOutputWord, type TinyCircuit } from "../helpers/tiny-circuit";
import pino from "pino";
import { BUNDLE_FORMAT } from "../../zkml";
import { ProofOutputsMismatchError, ProverPool } from "../../workers/inference/prover-pool";
import { attestersOf, outputsHash, TASK_STATUS } from "../../workers/runtime/optimistic";
import { MAX_JSON_BODY_BYTES, ServiceHttp } from "../../workers/runtime/service";
import {
  Attestor,
  CHANGING_REFUSAL_MS,
  parseAttestRequest,
  REFUSED_EXECUTION_MS,
  taskContentKey,
  type AttestDeps,
} from "../../workers/verification/attest";
import { attestUrl, gatherAttestations, MAX_REPLY_BYTES } from "../../workers/inference/attestations";
import { ExecutionRefusedError } from "../../workers/runtime/execution-errors";
import type { TaskStatusName } from "../../workers/runtime/optimistic";
import { readVerifiedResult, type SubmittedTask } from "../../workers/runtime/tasks";

const VERIFICATION_MODE_OPTIMISTIC = 2;
const VALUES = [1n, 2n, 3n, 4n];
const quiet = pino({ level: "silent" });
/** DisputeManager's default attester slash. */
const ATTESTER_SLASH = ethers.parseEther("100");

/**
 * The tiny circuit as the smallest bundle the workers' prover pool proves with: its wasm and zkey beside a
 * manifest with the layout witnessInput reads (24 inline inputs packed at 40 bits).
 */
function tinyBundleDir(circuit: TinyCircuit): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-tiny-bundle-"));
  fs.copyFileSync(circuit.wasm, path.join(dir, "circuit.wasm"));
  fs.copyFileSync(circuit.zkey, path.join(dir, "circuit.zkey"));
  const manifest = {
    format: BUNDLE_FORMAT,
    artifacts: { wasm: { file: "circuit.wasm" }, zkey: { file: "circuit.zkey" } },
    publicSignals: { inputMode: "inline", packBits: TINY_PACK_BITS },
    quantization: { commitmentPackBits: TINY_PACK_BITS },
  };
  fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest));
  return dir;
}

/** A verification node's `/attest` on a free port with `deps`; returns its base URL and the server. */
async function serve(deps: AttestDeps) {
  const http = new ServiceHttp(quiet);
  const attestor = new Attestor(deps);
  http.postJson("/attest", (body) => attestor.handle(body));
  const port = await http.listen(0);
  return { url: `http://127.0.0.1:${port}`, http, attestor };
}

async function post(url: string, body: unknown, raw?: string) {
  const res = await fetch(`${url}/attest`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: raw ?? JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("off-chain attestations (verification node POST /attest, inference node gathering)", function () {
  this.timeout(120_000);

  /**
   * The tiny model's optimistic task claimed by an inference node, on an in-process hardhat chain, with a
   * verification node's `/attest` serving from the chain (its re-execution is the tiny model's output word).
   */
  async function claimedFixture() {
    const f = await loadFixture(modesFixture);
    const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
    const node = f.nodes[0];
    await f.tasks.connect(node).claimTask(s.taskId, s.task);
    return { f, s, node, honest: [tinyOutputWord(VALUES)] };
  }

  function chainDeps(
    f: Awaited<ReturnType<typeof modesFixture>>,
    s: SubmittedTask,
    signer: AttestDeps["signer"],
    executions: { count: number },
  ): AttestDeps {
    return {
      signer,
      unavailable: async () =>
        (await f.staking.isEligible(signer.address, 1)) ? undefined : "not an eligible verification node",
      claim: async (taskId) => {
        const status = TASK_STATUS[Number(await f.tasks.taskStatus(taskId))];
        if (status !== "Claimed") return { status };
        const [node] = await f.tasks.claimOf(taskId);
        return { status, node };
      },
      lookup: async (taskId) => (taskId === s.taskId ? s : undefined),
      wanted: () => true,
      reexecute: async () => {
        executions.count++;
        return [tinyOutputWord(VALUES)];
      },
      digest: async (taskId, node, hash) => f.tasks.attestationDigest(taskId, node, hash),
    };
  }

  describe("POST /attest", function () {
    it("signs outputs equal to its own: the signature recovers to the verifier and the registry takes it", async function () {
      const { f, s, node, honest } = await claimedFixture();
      const verifier = f.verifiers[0];
      const executions = { count: 0 };
      const { url, http } = await serve(chainDeps(f, s, verifier, executions));
      try {
        const request = { taskId: s.taskId.toString(), node: node.address, outputs: honest.map(String) };
        const reply = await post(url, request);
        expect(reply.status).to.equal(200);
        expect(reply.body.attester).to.equal(verifier.address);
        const digest = await f.tasks.attestationDigest(s.taskId, node.address, outputsHash(honest));
        expect(verifyMessage(getBytes(digest), reply.body.signature as string)).to.equal(verifier.address);
        // Asked again: the same answer, no second execution.
        expect((await post(url, request)).body.signature).to.equal(reply.body.signature);
        expect(executions.count).to.equal(1);

        const tx = await f.tasks
          .connect(node)
          .submitResultOptimistic(s.taskId, s.task, honest, [reply.body.signature as string]);
        await expect(tx).to.emit(f.tasks, "TaskAttested").withArgs(s.taskId, verifier.address, 1);
        await expect(tx).to.emit(f.tasks, "TaskResultPosted");
      } finally {
        await http.close();
      }
    });

    it("answers 409 to outputs that differ, without saying the right ones, and remembers them", async function () {
      const { f, s, node, honest } = await claimedFixture();
      const { url, http, attestor } = await serve(chainDeps(f, s, f.verifiers[0], { count: 0 }));
      try {
        const wrong = [honest[0] + 1n];
        const reply = await post(url, {
          taskId: s.taskId.toString(),
          node: node.address,
          outputs: wrong.map(String),
        });
        expect(reply.status).to.equal(409);
        expect(reply.body.error).to.equal("outputs differ");
        expect(JSON.stringify(reply.body)).not.to.contain(honest[0].toString());
        expect(reply.body).not.to.have.property("signature");
        expect(attestor.refusedToSign(s.taskId, outputsHash(wrong))).to.equal(true);
        expect(attestor.refusedToSign(s.taskId, outputsHash(honest))).to.equal(false);
      } finally {
        await http.close();
      }
    });

    it("answers 400 to malformed requests, 404 to unknown tasks, 409 to a node that did not claim", async function () {
      const { f, s, node, honest } = await claimedFixture();
      const executions = { count: 0 };
      const { url, http } = await serve(chainDeps(f, s, f.verifiers[0], executions));
      const good = { taskId: s.taskId.toString(), node: node.address, outputs: honest.map(String) };
      try {
        for (const [body, error] of [
          [undefined, /JSON object/],
          [[1, 2], /JSON object/],
          [{ ...good, taskId: 7 }, /taskId must be a decimal string/],
          [{ ...good, taskId: "0x1" }, /taskId must be a decimal string/],
          [{ ...good, node: "0x1234" }, /node must be an address/],
          [{ ...good, outputs: [] }, /non-empty array/],
          [{ ...good, outputs: ["-1"] }, /outputs\[0\] must be a decimal string/],
          [{ ...good, outputs: [(1n << 256n).toString()] }, /does not fit in uint256/],
          [{ ...good, outputs: Array(1025).fill("1") }, /at most 1024 words/],
          [{ ...good, outputs: ["1", "2"] }, /1 output words, got 2/],
        ] as const) {
          const reply = await post(url, body);
          expect(reply.status, JSON.stringify(body)?.slice(0, 80)).to.equal(400);
          expect(reply.body.error).to.match(error);
        }
        expect((await post(url, undefined, "{not json")).status).to.equal(400);
        const big = await post(url, undefined, JSON.stringify({ pad: "x".repeat(MAX_JSON_BODY_BYTES) }));
        expect(big.status).to.equal(413);
        expect((await fetch(`${url}/attest`)).status).to.equal(405);

        const unknown = await post(url, { ...good, taskId: "999" });
        expect(unknown.status).to.equal(404);
        const notClaimer = await post(url, { ...good, node: f.nodes[1].address });
        expect(notClaimer.status).to.equal(409);
        expect(notClaimer.body.error).to.match(/not claimed by/);
        expect(notClaimer.body.claimer).to.equal(node.address);
        const own = await serve(chainDeps(f, s, node, { count: 0 }));
        try {
          expect((await post(own.url, good)).status).to.equal(503); // an inference node is no verifier
        } finally {
          await own.http.close();
        }
        expect(executions.count, "no execution for a refused request").to.equal(0);
      } finally {
        await http.close();
      }
    });

    it("parses a request's words as uint256 and its node as a checksummed address", function () {
      const node = Wallet.createRandom().address;
      const parsed = parseAttestRequest({ taskId: "12", node: node.toLowerCase(), outputs: ["0", "5"] });
      expect(parsed).to.deep.equal({ taskId: 12n, node, outputs: [0n, 5n] });
    });
  });

  describe("gatherAttestations", function () {
    it("gets the quorum from a verifier, skips one that does not answer, and the post carries them", async function () {
      const { f, s, node, honest } = await claimedFixture();
      const verifier = f.verifiers[1];
      const { url, http } = await serve(chainDeps(f, s, verifier, { count: 0 }));
      try {
        const digest = await f.tasks.attestationDigest(s.taskId, node.address, outputsHash(honest));
        const { attestations, refused } = await gatherAttestations(
          { taskId: s.taskId, node: node.address, outputs: honest },
          {
            urls: ["http://127.0.0.1:9", url],
            wanted: Number(s.task.attestationQuorum),
            timeoutMs: 10_000,
            digest,
            eligible: (a) => f.staking.isEligible(a, 1),
          },
        );
        expect(attestations.map((a) => a.attester)).to.deep.equal([verifier.address]);
        expect(refused).to.have.length(1);
        const receipt = await (
          await f.tasks.connect(node).submitResultOptimistic(
            s.taskId,
            s.task,
            honest,
            attestations.map((a) => a.signature),
          )
        ).wait();
        const names = receipt!.logs.map((l) => f.tasks.interface.parseLog(l)?.name);
        expect(names).to.deep.equal(["TaskResultPosted", "TaskAttested"]);
      } finally {
        await http.close();
      }
    });

    it("gets nothing for wrong outputs, and drops a signature by a key that is not an eligible verifier", async function () {
      const { f, s, node, honest } = await claimedFixture();
      const honestVerifier = await serve(chainDeps(f, s, f.verifiers[0], { count: 0 }));
      const stranger = Wallet.createRandom();
      const impostor = await serve(chainDeps(f, s, stranger, { count: 0 }));
      try {
        const wrong = [honest[0] + 1n];
        const lie = await gatherAttestations(
          { taskId: s.taskId, node: node.address, outputs: wrong },
          {
            urls: [honestVerifier.url],
            wanted: 1,
            timeoutMs: 10_000,
            digest: await f.tasks.attestationDigest(s.taskId, node.address, outputsHash(wrong)),
            eligible: (a) => f.staking.isEligible(a, 1),
          },
        );
        expect(lie.attestations).to.be.empty;
        expect(lie.refused[0]).to.include({ status: 409, error: "outputs differ" });

        // The stranger's endpoint would refuse (503, not eligible); one that signs anyway is dropped here.
        const forged = await gatherAttestations(
          { taskId: s.taskId, node: node.address, outputs: honest },
          {
            urls: ["http://forger.test"],
            wanted: 1,
            timeoutMs: 10_000,
            digest: await f.tasks.attestationDigest(s.taskId, node.address, outputsHash(honest)),
            eligible: (a) => f.staking.isEligible(a, 1),
            fetch: (async () => {
              const digest = await f.tasks.attestationDigest(s.taskId, node.address, outputsHash(honest));
              const signature = await stranger.signMessage(getBytes(digest));
              return new Response(JSON.stringify({ attester: stranger.address, signature }));
            }) as typeof fetch,
          },
        );
        expect(forged.attestations).to.be.empty;
        expect(forged.refused[0].error).to.match(/not an eligible verification node/);
        expect(
          (await post(impostor.url, { taskId: "1", node: node.address, outputs: ["1"] })).status,
        ).to.equal(503);
      } finally {
        await honestVerifier.http.close();
        await impostor.http.close();
      }
    });

    it("asks a registered endpoint at /attest, whether registered bare or as its /healthz", function () {
      expect(attestUrl("http://v.example:9465")).to.equal("http://v.example:9465/attest");
      expect(attestUrl("http://v.example:9465/")).to.equal("http://v.example:9465/attest");
      expect(attestUrl("http://v.example:9465/healthz")).to.equal("http://v.example:9465/attest");
      expect(attestUrl("https://v.example/opg/")).to.equal("https://v.example/opg/attest");
    });
  });

  describe("what a flood of requests costs (issue 20)", function () {
    const claimer = Wallet.createRandom().address;
    /** An optimistic task with one output word; `input` tells two contents of one task id apart. */
    const optimisticTask = (taskId: bigint, input: bigint[] = [1n]): SubmittedTask => ({
      taskId,
      modelId: 1n,
      input,
      task: {
        requester: claimer,
        modelId: 1n,
        fee: 0n,
        deadline: 0n,
        verificationKey: ethers.ZeroAddress,
        royaltyReceiver: ethers.ZeroAddress,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0n,
        outputWords: 1n,
        protocolFeeBps: 0n,
        royaltyBps: 0n,
        inputHash: ethers.ZeroHash,
        inputDataHash: ethers.ZeroHash,
        mode: 2n,
        attestationQuorum: 1n,
        attesterFeeBps: 0n,
      },
    });

    /**
     * An Attestor whose chain reads and executions are counted, on a clock the test moves: `claims` by task
     * id, `tasks` the TaskSubmitted content of each id, `run` the node's execution.
     */
    function counted(opts: {
      claims: Record<string, { status: TaskStatusName; node?: string }>;
      tasks?: Record<string, SubmittedTask>;
      run?: (s: SubmittedTask) => Promise<bigint[]>;
    }) {
      const calls = { claim: 0, lookup: 0, execute: 0 };
      const clock = { now: 1_000_000 };
      const signer = Wallet.createRandom();
      const attestor = new Attestor(
        {
          signer,
          unavailable: async () => undefined,
          claim: async (taskId) => {
            calls.claim++;
            return opts.claims[taskId.toString()] ?? { status: "None" };
          },
          lookup: async (taskId) => {
            calls.lookup++;
            return opts.tasks?.[taskId.toString()];
          },
          wanted: () => true,
          reexecute: async (s) => {
            calls.execute++;
            return (opts.run ?? (async (t) => [t.input[0] * 10n]))(s);
          },
          digest: async (taskId, node, hash) =>
            solidityPackedKeccak256(["uint256", "address", "bytes32"], [taskId, node, hash]),
        },
        () => undefined,
        () => clock.now,
      );
      const ask = (taskId: number, outputs: bigint[] = [10n], node = claimer) =>
        attestor.handle({ taskId: String(taskId), node, outputs: outputs.map(String) });
      return { attestor, calls, clock, ask, signer };
    }

    it("reads a task's claim once per window, and never again once the task is in a final state", async function () {
      const other = Wallet.createRandom().address;
      const { calls, clock, ask } = counted({
        claims: {
          "1": { status: "Verified" },
          "2": { status: "Open" },
          "3": { status: "Claimed", node: other },
        },
      });
      for (let i = 0; i < 100; i++) {
        // Varying the outputs and the asking node makes every request a new one: none costs a chain read.
        const reply = await ask(1, [BigInt(i)], i % 2 ? claimer : other);
        expect(reply.status).to.equal(409);
        expect(reply.body.error).to.equal("task 1 is Verified, not Claimed");
      }
      expect(calls.claim, "task 1 read once").to.equal(1);
      clock.now += 24 * 3600_000;
      expect((await ask(1)).status).to.equal(409);
      expect(calls.claim, "a final state is never read again").to.equal(1);

      for (let i = 0; i < 100; i++) expect((await ask(2, [BigInt(i)])).status).to.equal(409);
      for (let i = 0; i < 100; i++) {
        const reply = await ask(3, [BigInt(i)]);
        expect(reply.status).to.equal(409);
        expect(reply.body.claimer).to.equal(other);
      }
      for (let i = 0; i < 100; i++) expect((await ask(4, [BigInt(i)])).status).to.equal(404);
      expect(calls.claim, "tasks 2, 3 and 4 read once each").to.equal(4);
      clock.now += CHANGING_REFUSAL_MS - 1;
      for (const id of [2, 3, 4]) await ask(id);
      expect(calls.claim, "within the window").to.equal(4);
      clock.now += 2;
      for (const id of [2, 3, 4]) await ask(id);
      expect(calls.claim, "a state that can change is read again after the window").to.equal(7);
      expect(calls.lookup + calls.execute, "no refused request looked up or executed").to.equal(0);
    });

    it("runs a task the node refuses to execute once per REFUSED_EXECUTION_MS, answering 422 meanwhile", async function () {
      const refused = new ExecutionRefusedError(
        "cost",
        "model 1 costs 5.1e11 operations, over the policy's 1e10",
      );
      const { calls, clock, ask } = counted({
        claims: { "1": { status: "Claimed", node: claimer } },
        tasks: { "1": optimisticTask(1n) },
        run: async () => {
          throw refused;
        },
      });
      for (let i = 0; i < 50; i++) {
        const reply = await ask(1, [BigInt(i)]);
        expect(reply.status).to.equal(422);
        expect(reply.body.error).to.equal(`cannot re-execute the task: ${refused.message}`);
      }
      expect(calls.execute).to.equal(1);
      clock.now += REFUSED_EXECUTION_MS + 1;
      expect((await ask(1)).status).to.equal(422);
      expect(calls.execute).to.equal(2);
    });

    it("retries an execution that failed for another reason only after CHANGING_REFUSAL_MS", async function () {
      const { calls, clock, ask } = counted({
        claims: { "1": { status: "Claimed", node: claimer } },
        tasks: { "1": optimisticTask(1n) },
        run: async () => {
          throw new Error("data node unreachable");
        },
      });
      for (let i = 0; i < 20; i++) {
        await ask(1, [BigInt(i)]).then(
          () => expect.fail("a failure is no answer"),
          (e: Error) => expect(e.message).to.equal("data node unreachable"),
        );
      }
      expect(calls.execute).to.equal(1);
      clock.now += CHANGING_REFUSAL_MS + 1;
      await ask(1).catch(() => undefined);
      expect(calls.execute).to.equal(2);
    });

    it("keys the node's words and signatures by the task's content: a reorg that changes the task reuses neither", async function () {
      const before = optimisticTask(1n, [1n]);
      const after = optimisticTask(1n, [2n]);
      const tasks = { "1": before };
      const { calls, ask, signer } = counted({
        claims: { "1": { status: "Claimed", node: claimer } },
        tasks,
      });
      const signed = await ask(1, [10n]);
      expect(signed.status).to.equal(200);
      expect(await ask(1, [10n])).to.deep.equal(signed);
      expect(calls.execute).to.equal(1);

      // The chain reorganised: task 1 now carries another input (whose output word is 20).
      tasks["1"] = after;
      expect(taskContentKey(after)).to.not.equal(taskContentKey(before));
      const stale = await ask(1, [10n]);
      expect(stale.status, "the old signature is not handed out again").to.equal(409);
      expect(stale.body.error).to.equal("outputs differ");
      expect(calls.execute, "the new content executed").to.equal(2);
      const fresh = await ask(1, [20n]);
      expect(fresh.status).to.equal(200);
      const digest = solidityPackedKeccak256(
        ["uint256", "address", "bytes32"],
        [1n, claimer, outputsHash([20n])],
      );
      expect(verifyMessage(getBytes(digest), fresh.body.signature as string)).to.equal(signer.address);
    });

    it("a task's content key does not depend on how its numbers were typed (journal or event)", function () {
      const t = optimisticTask(7n, [3n, 4n]);
      const retyped = JSON.parse(JSON.stringify(t, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
      expect(taskContentKey(retyped)).to.equal(taskContentKey(t));
      expect(taskContentKey(optimisticTask(7n, [3n, 5n]))).to.not.equal(taskContentKey(t));
    });
  });

  describe("asking a registered endpoint (issue 20)", function () {
    /** A real HTTP server answering every request with `answer`; counts the requests it got. */
    async function server(answer: (res: http.ServerResponse) => void) {
      const seen = { requests: 0 };
      const s = http.createServer((req, res) => {
        seen.requests++;
        req.resume();
        answer(res);
      });
      await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
      const url = `http://127.0.0.1:${(s.address() as { port: number }).port}`;
      return { url, seen, close: () => new Promise<void>((r) => s.close(() => r())) };
    }

    const ask = (url: string) =>
      gatherAttestations(
        { taskId: 1n, node: Wallet.createRandom().address, outputs: [1n] },
        { urls: [url], wanted: 1, timeoutMs: 10_000, digest: ethers.ZeroHash, eligible: async () => true },
      );

    it("follows no redirect: a 3xx is a refusal, and the URL it names is never asked", async function () {
      const internal = await server((res) => res.end("{}"));
      const redirecting = await server((res) => {
        res.writeHead(307, { location: `${internal.url}/attest` });
        res.end();
      });
      try {
        const { attestations, refused } = await ask(redirecting.url);
        expect(attestations).to.be.empty;
        expect(refused).to.have.length(1);
        expect(refused[0].status).to.equal(307);
        expect(refused[0].error).to.match(/redirected \(HTTP 307\).*not followed/);
        expect(redirecting.seen.requests).to.equal(1);
        expect(internal.seen.requests, "the redirect's target was not asked").to.equal(0);
      } finally {
        await redirecting.close();
        await internal.close();
      }
    });

    it("reads at most MAX_REPLY_BYTES of a reply", async function () {
      const huge = await server((res) => {
        res.writeHead(200, { "content-type": "application/json" });
        // An endless reply: only the cap ends the read.
        const chunk = Buffer.alloc(64 * 1024, 32);
        const pump = () => {
          while (res.write(chunk));
        };
        res.on("drain", pump);
        res.on("close", () => res.off("drain", pump));
        pump();
      });
      try {
        const { refused } = await ask(huge.url);
        expect(refused).to.have.length(1);
        expect(refused[0].error).to.equal(`unreadable reply: reply larger than ${MAX_REPLY_BYTES} bytes`);
      } finally {
        await huge.close();
      }
    });
  });

  describe("the optimistic game after issue 19, with the workers' code (tiny circuit, in-process chain)", function () {
    let provers: ProverPool;
    before(function () {
      provers = new ProverPool(1);
    });
    after(async function () {
      await provers.close();
    });

    it("a lie is proved wrong by the honest verifier's own proof in one transaction: node and colluding attester slashed", async function () {
      const { f, s, node, honest } = await claimedFixture();
      const [verifier, colluder] = f.verifiers;
      const reader = { provider: ethers.provider as unknown as Provider, tasksAddress: f.tasksAddress };
      // The honest verifier refuses to sign the lie; a colluder signs it, and it is posted with that.
      const lie = [honest[0] + 1n];
      const { url, http } = await serve(chainDeps(f, s, verifier, { count: 0 }));
      let refused;
      try {
        refused = await post(url, {
          taskId: s.taskId.toString(),
          node: node.address,
          outputs: lie.map(String),
        });
      } finally {
        await http.close();
      }
      expect(refused.status).to.equal(409);
      const digest = await f.tasks.attestationDigest(s.taskId, node.address, outputsHash(lie));
      const signature = await colluder.signMessage(getBytes(digest));
      await f.tasks.connect(node).submitResultOptimistic(s.taskId, s.task, lie, [signature]);
      const attesters = await attestersOf(reader, s.taskId, 0);
      expect(attesters).to.deep.equal([colluder.address]);

      const stakes = async () =>
        Promise.all(
          [node, verifier, colluder].map(async (a) => (await f.staking.nodeInfo(a.address)).bonded),
        );
      const [nodeBefore, verifierBefore, colluderBefore] = await stakes();
      const walletBefore = await f.token.balanceOf(verifier.address);
      const started = Date.now();
      // What the verification node does: prove the true outputs bound to itself, check them, challenge.
      const binding = await f.tasks.taskBinding(s.taskId, verifier.address);
      const dir = tinyBundleDir(f.circuit);
      const proved = await provers.proveTask(dir, tinyInputValues(VALUES), binding, honest);
      const tx = await f.disputes
        .connect(verifier)
        .challengeWithProof(
          s.taskId,
          s.task,
          outputsHash(lie),
          attesters,
          s.input,
          proved.outputs,
          proved.proof,
        );
      const receipt = (await tx.wait())!;
      const totalMs = Date.now() - started;
      await expect(tx).to.emit(f.disputes, "DisputeResolved").withArgs(s.taskId, 1, verifier.address);
      await expect(tx).to.emit(f.tasks, "TaskRejected");
      await expect(tx)
        .to.emit(f.disputes, "AttesterSlashed")
        .withArgs(s.taskId, colluder.address, ATTESTER_SLASH);
      expect(TASK_STATUS[Number(await f.tasks.taskStatus(s.taskId))]).to.equal("Rejected");
      const [nodeAfter, verifierAfter, colluderAfter] = await stakes();
      expect(nodeAfter).to.equal(nodeBefore - CLAIM_COLLATERAL);
      expect(colluderAfter).to.equal(colluderBefore - ATTESTER_SLASH);
      expect(verifierAfter).to.equal(verifierBefore);
      expect(await f.token.balanceOf(verifier.address)).to.equal(walletBefore + CLAIM_COLLATERAL / 2n);
      console.log(
        `      tiny model: prove ${proved.ms} ms in the prover process; from a cold prover process to the ` +
          `challengeWithProof mined ${totalMs} ms; ${receipt.gasUsed} gas`,
      );
    });

    it("the pool refuses to hand out a proof whose outputs are not the executor's (a bundle that disagrees with itself)", async function () {
      const { f, s, honest } = await claimedFixture();
      const binding = await f.tasks.taskBinding(s.taskId, f.verifiers[0].address);
      const wrong = [honest[0] + 1n];
      const err = await provers
        .proveTask(tinyBundleDir(f.circuit), tinyInputValues(VALUES), binding, wrong)
        .then(
          () => undefined,
          (e: Error) => e,
        );
      expect(err).to.be.instanceOf(ProofOutputsMismatchError);
      expect(err!.message).to.include(honest[0].toString());
    });

    it("attack 1: a correct result with honest attestations cannot be challenged by a friendly verifier; the silent node finalises, no attester loses stake", async function () {
      const f = await loadFixture(modesFixture);
      await f.models.connect(f.modelOwner).setAttestationQuorum(f.optimisticModelId, 2);
      const s = await f.submit(VALUES, { modelId: f.optimisticModelId, mode: VERIFICATION_MODE_OPTIMISTIC });
      expect(s.task.attestationQuorum).to.equal(2n);
      const node = f.nodes[0];
      await f.tasks.connect(node).claimTask(s.taskId, s.task);
      const honest = [tinyOutputWord(VALUES)];
      const [a, b, friendly] = f.verifiers;
      const servers = await Promise.all([a, b].map((v) => serve(chainDeps(f, s, v, { count: 0 }))));
      let gathered;
      try {
        gathered = await gatherAttestations(
          { taskId: s.taskId, node: node.address, outputs: honest },
          {
            urls: servers.map((x) => x.url),
            wanted: Number(s.task.attestationQuorum),
            timeoutMs: 10_000,
            digest: await f.tasks.attestationDigest(s.taskId, node.address, outputsHash(honest)),
            eligible: (x) => f.staking.isEligible(x, 1),
          },
        );
      } finally {
        for (const x of servers) await x.http.close();
      }
      expect(gathered.attestations.map((x) => x.attester).sort()).to.deep.equal(
        [a.address, b.address].sort(),
      );
      await f.tasks.connect(node).submitResultOptimistic(
        s.taskId,
        s.task,
        honest,
        gathered.attestations.map((x) => x.signature),
      );
      const reader = { provider: ethers.provider as unknown as Provider, tasksAddress: f.tasksAddress };
      const attesters = await attestersOf(reader, s.taskId, 0);
      const stakes = async () =>
        Promise.all([a, b, friendly, node].map(async (v) => (await f.staking.nodeInfo(v.address)).bonded));
      const before = await stakes();

      // The friendly verifier proves the task bound to itself: the proof carries the posted outputs.
      const binding = await f.tasks.taskBinding(s.taskId, friendly.address);
      const proved = await provers.proveTask(
        tinyBundleDir(f.circuit),
        tinyInputValues(VALUES),
        binding,
        honest,
      );
      const hash = outputsHash(honest);
      const disputes = f.disputes.connect(friendly);
      await expect(
        disputes.challengeWithProof(s.taskId, s.task, hash, attesters, s.input, proved.outputs, proved.proof),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerSameOutputs");
      await expect(
        disputes.challengeWithProof(
          s.taskId,
          s.task,
          hash,
          attesters,
          s.input,
          [honest[0] + 1n],
          proved.proof,
        ),
      ).to.be.revertedWithCustomError(f.disputes, "DisputeManagerInvalidProof");
      await expect(disputes.challenge(s.taskId, s.task, hash, attesters)).to.be.revertedWithCustomError(
        f.disputes,
        "DisputeManagerWrongKind",
      );

      // The node sends nothing until the window is over; then the result is final and nobody lost stake.
      const [, , window] = await f.tasks.modeParameters();
      await time.increase(Number(window) + 1);
      await expect(f.tasks.connect(node).finalizeResult(s.taskId, s.task, honest, attesters)).to.emit(
        f.tasks,
        "TaskVerified",
      );
      expect(await stakes()).to.deep.equal(before);
      const result = await readVerifiedResult(f.tasks, s.taskId);
      expect(result, "verified for the node that posted it").to.include({ node: node.address });
      expect(result!.outputs).to.deep.equal(honest);
    });
  });
});
