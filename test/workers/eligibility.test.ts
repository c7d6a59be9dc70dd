import { expect } from "chai";
import { parseEther } from "ethers";
import { eligibilityProblem, type StakingReads } from "../../workers/inference/eligibility";

const NODE = "0x" + "ab".repeat(20);
const MIN = parseEther("1000");

const nothingReleasable = { releasableCollateralOf: async () => 0n };

function staking(info: Partial<Awaited<ReturnType<StakingReads["nodeInfo"]>>>): StakingReads {
  return {
    nodeInfo: async () => ({ bonded: 0n, locked: 0n, unbonding: 0n, roles: 0n, registered: false, ...info }),
    minStake: async (role) => (role === 0 ? MIN : parseEther("500")),
  };
}

describe("inference node eligibility (NodeStaking.isEligible spelled out)", function () {
  it("not registered: says so and gives the register command", async function () {
    const e = await eligibilityProblem(staking({}), nothingReleasable, NODE);
    expect(e).to.include({ ready: false, reason: `${NODE} is not registered as a node` });
    expect(e.fix).to.match(/^npx opg operator register --roles inference/);
  });

  it("registered for verification only: names the missing role", async function () {
    const e = await eligibilityProblem(
      staking({ registered: true, roles: 2n, bonded: MIN }),
      nothingReleasable,
      NODE,
    );
    expect(e).to.include({ ready: false, reason: `${NODE} is registered without the inference role` });
    expect(e.fix).to.match(/^npx opg operator register --roles inference/);
  });

  it("unstaked: the minimum and the stake command for what is missing", async function () {
    const e = await eligibilityProblem(staking({ registered: true, roles: 1n }), nothingReleasable, NODE);
    expect(e).to.include({
      ready: false,
      reason: "free stake 0.0 OPG is below the inference minimum 1000.0 OPG",
      fix: "npx opg operator stake 1000.0",
    });
  });

  it("unbonding and collateral locked: both named, the top-up is the shortfall", async function () {
    const e = await eligibilityProblem(
      staking({
        registered: true,
        roles: 3n,
        bonded: parseEther("1000"),
        locked: parseEther("100"),
        unbonding: parseEther("400"),
      }),
      nothingReleasable,
      NODE,
    );
    expect(e.reason).to.equal(
      "free stake 900.0 OPG is below the inference minimum 1000.0 OPG " +
        "(100.0 OPG locked as collateral for claimed tasks, 400.0 OPG unbonding)",
    );
    expect(e.fix).to.equal("npx opg operator stake 100.0");
  });

  it("collateral of settled claims counts as free: claimTask releases it before judging eligibility", async function () {
    const info = { registered: true, roles: 1n, bonded: parseEther("1050"), locked: parseEther("100") };
    const before = await eligibilityProblem(staking(info), nothingReleasable, NODE);
    expect(before.ready).to.equal(false);
    const settled = { releasableCollateralOf: async () => parseEther("100") };
    const e = await eligibilityProblem(staking(info), settled, NODE);
    expect(e.ready).to.equal(true);
    expect(e.stake).to.include({ freeStake: "1050.0", locked: "0.0" });
  });

  it("registered with enough free stake: ready", async function () {
    const e = await eligibilityProblem(
      staking({ registered: true, roles: 1n, bonded: MIN }),
      nothingReleasable,
      NODE,
    );
    expect(e.ready).to.equal(true);
    expect(e.stake).to.include({ freeStake: "1000.0", minStake: "1000.0" });
  });
});
