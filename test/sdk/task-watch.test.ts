import { expect } from "chai";
import { OpgClientError, toId } from "../../sdk/errors";
import { waitForStep, type TaskStep, type TaskWaitStatus } from "../../sdk/task-watch";

const open = (message: string): TaskStep<string> => ({ status: { status: "Open", message } });

/** A subscription whose events the test fires by hand, and which records that it was stopped. */
function fakeSubscription() {
  const sub = { fire: () => undefined as void, stopped: false };
  const subscribe = (onEvent: () => void) => {
    sub.fire = onEvent;
    return async () => {
      sub.stopped = true;
    };
  };
  return { sub, subscribe };
}

describe("sdk/task-watch: waitForStep", function () {
  it("reports each new situation once, and resolves with the step's value", async function () {
    const steps = [open("a"), open("a"), open("b"), open("b"), { done: "result" }];
    const seen: TaskWaitStatus[] = [];
    const { sub, subscribe } = fakeSubscription();
    const wait = waitForStep({
      what: "task 1",
      step: async () => steps.shift()!,
      subscribe,
      timeoutMs: 10_000,
      pollMs: 5,
      onStatus: (s) => seen.push(s),
    });
    expect(await wait.result).to.equal("result");
    expect(seen.map((s) => s.message)).to.deep.equal(["a", "b"]);
    expect(sub.stopped).to.equal(true);
  });

  it("looks again on an event, without waiting for the poll", async function () {
    const steps = [open("waiting"), { done: "verified" }];
    const { sub, subscribe } = fakeSubscription();
    const wait = waitForStep({
      what: "task 1",
      step: async () => steps.shift()!,
      subscribe,
      timeoutMs: 60_000,
      pollMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 20));
    sub.fire();
    expect(await wait.result).to.equal("verified");
  });

  it("retries an RPC failure, and names it and the last situation on timeout", async function () {
    let calls = 0;
    const { sub, subscribe } = fakeSubscription();
    const wait = waitForStep<string>({
      what: "task 7",
      step: async () => {
        if (++calls === 1) return open("open, nobody has claimed it yet");
        throw new Error("connect ECONNREFUSED");
      },
      subscribe,
      timeoutMs: 100,
      pollMs: 10,
    });
    try {
      await wait.result;
      expect.fail("the wait should time out");
    } catch (e) {
      expect(e).to.be.instanceOf(OpgClientError);
      expect((e as Error).message).to.equal(
        "task 7: no result after 100 ms, still Open: open, nobody has claimed it yet " +
          "(last error: connect ECONNREFUSED)",
      );
    }
    expect(calls).to.be.greaterThan(2);
    expect(sub.stopped).to.equal(true);
  });

  it("fails at once on a final situation, after reporting it", async function () {
    const seen: TaskWaitStatus[] = [];
    const wait = waitForStep<string>({
      what: "task 3",
      step: async () => ({
        fail: "task 3: its deadline passed; refundable",
        status: { status: "Open", message: "deadline passed; refundable" },
      }),
      subscribe: fakeSubscription().subscribe,
      timeoutMs: 60_000,
      pollMs: 60_000,
      onStatus: (s) => seen.push(s),
    });
    try {
      await wait.result;
      expect.fail("the wait should fail");
    } catch (e) {
      expect((e as Error).message).to.equal("task 3: its deadline passed; refundable");
    }
    expect(seen.map((s) => s.message)).to.deep.equal(["deadline passed; refundable"]);
  });

  it("cancel ends the wait with the given error and stops the subscription and timers", async function () {
    const { sub, subscribe } = fakeSubscription();
    const wait = waitForStep<string>({
      what: "task 4",
      step: async () => open("waiting"),
      subscribe,
      timeoutMs: 60_000,
      pollMs: 10,
    });
    wait.cancel(new OpgClientError("closed"));
    try {
      await wait.result;
      expect.fail("the wait should fail");
    } catch (e) {
      expect((e as Error).message).to.equal("closed");
    }
    expect(sub.stopped).to.equal(true);
  });
});

describe("sdk/task-watch: a wait that cannot hang", function () {
  it("a look the RPC never answers does not freeze the wait: the next poll looks again and sees the deadline", async function () {
    let calls = 0;
    const seen: TaskWaitStatus[] = [];
    const wait = waitForStep<string>({
      what: "task 9",
      step: () => {
        // The first look's request is lost (the fault injected here); the next one finds the deadline passed.
        if (++calls === 1) return new Promise<TaskStep<string>>(() => undefined);
        return Promise.resolve({
          fail: "task 9: its deadline passed without a verified result (still Open)",
          status: { status: "Open", message: "its deadline passed; refundable" },
        });
      },
      subscribe: fakeSubscription().subscribe,
      timeoutMs: 120_000,
      pollMs: 10,
      stepTimeoutMs: 50,
      onStatus: (s) => seen.push(s),
    });
    try {
      await wait.result;
      expect.fail("the wait should fail");
    } catch (e) {
      expect(e).to.be.instanceOf(OpgClientError);
      expect((e as Error).message).to.equal(
        "task 9: its deadline passed without a verified result (still Open)",
      );
    }
    expect(calls).to.equal(2);
    expect(seen.map((s) => s.message)).to.deep.equal(["its deadline passed; refundable"]);
  });

  it("names a look that got no answer in the timeout's message", async function () {
    const wait = waitForStep<string>({
      what: "task 5",
      step: () => new Promise<TaskStep<string>>(() => undefined),
      subscribe: fakeSubscription().subscribe,
      timeoutMs: 300,
      pollMs: 10,
      stepTimeoutMs: 20,
    });
    try {
      await wait.result;
      expect.fail("the wait should time out");
    } catch (e) {
      expect((e as Error).message).to.equal(
        "task 5: no result after 300 ms, its status was never read " +
          "(last error: the look at the chain got no answer within 20 ms)",
      );
    }
  });

  it("reports nothing once cancelled, even when a look in flight answers later", async function () {
    const seen: TaskWaitStatus[] = [];
    let answer!: (s: TaskStep<string>) => void;
    const wait = waitForStep<string>({
      what: "task 6",
      step: () => new Promise<TaskStep<string>>((resolve) => (answer = resolve)),
      subscribe: fakeSubscription().subscribe,
      timeoutMs: 120_000,
      pollMs: 60_000,
      onStatus: (s) => seen.push(s),
    });
    wait.cancel(new OpgClientError("closed"));
    answer(open("late"));
    try {
      await wait.result;
      expect.fail("the wait should fail");
    } catch (e) {
      expect((e as Error).message).to.equal("closed");
    }
    await new Promise((r) => setImmediate(r));
    expect(seen).to.deep.equal([]);
  });

  it("settles when its subscription never finishes stopping (an RPC that does not answer the unsubscription)", async function () {
    this.timeout(120_000);
    const wait = waitForStep<string>({
      what: "task 8",
      step: async () => ({ done: "verified" }),
      subscribe: () => () => new Promise<void>(() => undefined),
      timeoutMs: 120_000,
      pollMs: 60_000,
    });
    expect(await wait.result).to.equal("verified");
  });
});

describe("sdk/errors: toId", function () {
  it("takes numbers and bigints", function () {
    expect(toId(1, "model")).to.equal(1n);
    expect(toId(0n, "task")).to.equal(0n);
    expect(toId(2n ** 200n, "task")).to.equal(2n ** 200n);
  });

  it("refuses what is not an id, by name", function () {
    expect(() => toId(1.5, "task")).to.throw(OpgClientError, /^task id 1\.5 is not a whole number/);
    expect(() => toId(-1, "model")).to.throw(OpgClientError, /^model id -1 is not a whole number/);
    expect(() => toId(-1n, "model")).to.throw(OpgClientError, /^model id -1 is negative/);
    expect(() => toId(2 ** 53, "task")).to.throw(OpgClientError, /pass a bigint/);
    expect(() => toId(Number.NaN, "task")).to.throw(OpgClientError, /task id NaN/);
  });
});
