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
