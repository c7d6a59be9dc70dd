import { expect } from "chai";
import { Wallet } from "ethers";
import { Assignment, BUSY_SLOTS, serviceOrder } from "../../workers/inference/assignment";

const NODES = Array.from({ length: 8 }, (_, i) => new Wallet("0x" + String(i + 1).padStart(64, "0")).address);

/** An Assignment whose roster is `nodes` (as NodeStaking would list them, all eligible). */
async function assignment(self: string, nodes = NODES, slotMs = 1000) {
  const staking = {
    nodeCount: async () => BigInt(nodes.length),
    nodesByRole: async (_role: number, offset: number, limit: number) => nodes.slice(offset, offset + limit),
    isEligible: async () => true,
  };
  const a = new Assignment(staking as never, self, { slotMs, refreshMs: 60_000 });
  await a.refresh(true);
  return a;
}

describe("Claimless assignment (who serves a ZK or TEE task first)", function () {
  it("orders the nodes the same way on every machine, a permutation per task, each node first about 1/N of the time", function () {
    const firsts = new Map<string, number>();
    for (let t = 1n; t <= 800n; t++) {
      const order = serviceOrder(t, NODES);
      expect(order).to.have.members(NODES);
      expect(serviceOrder(t, [...NODES].reverse())).to.deep.equal(order);
      firsts.set(order[0], (firsts.get(order[0]) ?? 0) + 1);
    }
    for (const node of NODES) {
      // 800 tasks over 8 nodes: 100 each expected; a fair draw stays well within 55..145.
      expect(firsts.get(node) ?? 0).to.be.within(55, 145);
    }
  });

  it("the first node starts at once; the next waits a slot of silence from those ahead, longer while they keep settling, never past the cap", async function () {
    const task = 42n;
    const order = serviceOrder(task, NODES);
    const first = await assignment(order[0]);
    const second = await assignment(order[1]);
    const third = await assignment(order[2]);
    const t0 = 1_000_000;
    expect(first.isMyTurn(task, t0)).to.equal(true);
    expect(second.isMyTurn(task, t0)).to.equal(false);
    expect(second.turnAt(task, t0)).to.equal(t0 + 1000);
    expect(second.isMyTurn(task, t0 + 1000)).to.equal(true);
    // The first node keeps settling other tasks (busy, alive): the second keeps waiting.
    first.forget(task);
    const busy = await assignment(order[1]);
    busy.turnAt(task, t0);
    busy.sawActivity(order[0], t0 + 900);
    expect(busy.isMyTurn(task, t0 + 1000)).to.equal(false);
    busy.sawActivity(order[0], t0 + 1800);
    expect(busy.turnAt(task, t0 + 1900)).to.equal(t0 + 2800);
    // ... but never more than BUSY_SLOTS slots per rank.
    busy.sawActivity(order[0], t0 + 100_000);
    expect(busy.turnAt(task, t0 + 1900)).to.equal(t0 + BUSY_SLOTS * 1000);
    // The third waits for both ahead of it.
    third.turnAt(task, t0);
    third.sawActivity(order[1], t0 + 2500);
    expect(third.turnAt(task, t0)).to.equal(t0 + 3500);
  });

  it("a lone node, or a slot of 0, always has its turn", async function () {
    const lone = await assignment(NODES[3], [NODES[3]]);
    expect(lone.rank(7n)).to.equal(0);
    expect(lone.isMyTurn(7n, 0)).to.equal(true);
    const race = await assignment(NODES[0], NODES, 0);
    for (let t = 1n; t < 20n; t++) expect(race.isMyTurn(t, 0)).to.equal(true);
  });
});
