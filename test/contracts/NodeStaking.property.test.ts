import { expect } from "chai";
import { ethers } from "hardhat";
import fc from "fast-check";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { Role, ROLES, SLASH_SHARE_BPS, economyFixture } from "../helpers/economy-fixture";

/**
 * Random sequences of register / stake / requestUnstake / withdraw / lock / unlock / slash over four nodes,
 * with time jumps, checked against a model. After every step:
 * - the staking contract's OPG balance equals the sum over nodes of bonded + unbonding (bonded includes locked);
 * - locked <= bonded for every node, and every node's record equals the model's;
 * - every revert is the one the model predicts, with its arguments, and moves nothing;
 * - everything slashed arrived at the treasury or the beneficiary, and nothing else moved.
 */

const NODE_COUNT = 4;
const REASON = ethers.id("property");
/** Shorter than the default so that random time jumps often reach the end of unbonding. */
const UNBONDING_DELAY = 24 * 3600;

/** An amount either absolute or as basis points of a quantity of the node's state (free, locked, ...). */
type Amount = { abs: bigint } | { bps: bigint };
type Action =
  | { kind: "register"; node: number; roles: number }
  | { kind: "stake"; node: number; amount: Amount }
  | { kind: "requestUnstake"; node: number; amount: Amount }
  | { kind: "withdraw"; node: number }
  | { kind: "lock"; node: number; amount: Amount; byStranger: boolean }
  | { kind: "unlock"; node: number; amount: Amount; byStranger: boolean }
  | { kind: "slash"; node: number; amount: Amount; withBeneficiary: boolean; byStranger: boolean }
  | { kind: "warp"; seconds: number };

interface NodeModel {
  registered: boolean;
  roles: number;
  bonded: bigint;
  locked: bigint;
  unbonding: bigint;
  releaseAt: bigint;
  wallet: bigint;
}

const node = fc.integer({ min: 0, max: NODE_COUNT - 1 });
const amount: fc.Arbitrary<Amount> = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 1n, max: 10_000n }).map((bps) => ({ bps })) },
  { weight: 1, arbitrary: fc.constantFrom(10_000n, 10_001n, 15_000n).map((bps) => ({ bps })) },
  { weight: 1, arbitrary: fc.constantFrom(0n, 1n).map((abs) => ({ abs })) },
  { weight: 2, arbitrary: fc.bigInt({ min: 1n, max: ethers.parseEther("2000") }).map((abs) => ({ abs })) },
);
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("register" as const),
      node,
      roles: fc.constantFrom(ROLES.inference, ROLES.verification, ROLES.both, ROLES.both, 0, 4, 0xff),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("stake" as const), node, amount }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("requestUnstake" as const), node, amount }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("withdraw" as const), node }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("lock" as const),
      node,
      amount,
      byStranger: fc.constantFrom(false, false, false, true),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("unlock" as const),
      node,
      amount,
      byStranger: fc.constantFrom(false, false, false, true),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("slash" as const),
      node,
      amount,
      withBeneficiary: fc.boolean(),
      byStranger: fc.constantFrom(false, false, false, true),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("warp" as const),
      seconds: fc.constantFrom(
        3600,
        UNBONDING_DELAY - 2,
        UNBONDING_DELAY,
        2 * UNBONDING_DELAY,
        2 * UNBONDING_DELAY,
      ),
    }),
  },
);

/**
 * The economy with one EOA (`protocol`) authorised both to lock collateral and to slash. Three nodes start
 * registered and staked so most random steps reach the interesting paths; the fourth starts unregistered.
 */
async function propertyFixture() {
  const f = await economyFixture();
  const protocol = f.manager;
  await f.staking.connect(f.governance).setSlasher(protocol.address, true);
  await f.staking.connect(f.governance).setUnbondingDelay(UNBONDING_DELAY);
  const initialRoles = [ROLES.both, ROLES.inference, ROLES.verification];
  for (const [i, roles] of initialRoles.entries()) {
    await f.staking.connect(f.nodes[i]).register(roles, `https://node${i}.example`);
    await f.staking.connect(f.nodes[i]).stake(ethers.parseEther("3000"));
  }
  return { ...f, protocol };
}

function resolve(value: Amount, reference: bigint) {
  return "abs" in value ? value.abs : (reference * value.bps) / 10_000n;
}

describe("NodeStaking (property)", function () {
  it("keeps its books balanced over random stake/unstake/withdraw/lock/slash sequences", async function () {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 10, maxLength: 24 }), async (actions) => {
        const f = await loadFixture(propertyFixture);
        const { staking, stakingAddress, token, protocol, stranger, beneficiary, treasury, nodes } = f;
        const bps = SLASH_SHARE_BPS;
        const model: NodeModel[] = await Promise.all(
          nodes.map(async (signer) => {
            const info = await staking.nodeInfo(signer.address);
            return {
              registered: info.registered,
              roles: Number(info.roles),
              bonded: info.bonded,
              locked: info.locked,
              unbonding: info.unbonding,
              releaseAt: info.unbondingReleaseAt,
              wallet: await token.balanceOf(signer.address),
            };
          }),
        );
        const treasuryStart = await token.balanceOf(treasury.address);
        const beneficiaryStart = await token.balanceOf(beneficiary.address);
        let totalSlashed = 0n;
        let toTreasury = 0n;
        let toBeneficiary = 0n;

        async function checkInvariants() {
          let staked = 0n;
          for (let i = 0; i < NODE_COUNT; i++) {
            const m = model[i];
            for (const value of [m.bonded, m.locked, m.unbonding, m.wallet])
              expect(value >= 0n).to.equal(true);
            expect(m.locked <= m.bonded).to.equal(true);
            const info = await staking.nodeInfo(nodes[i].address);
            expect([
              info.registered,
              Number(info.roles),
              info.bonded,
              info.locked,
              info.unbonding,
            ]).to.deep.equal([m.registered, m.roles, m.bonded, m.locked, m.unbonding], `node ${i}`);
            if (m.unbonding > 0n) expect(info.unbondingReleaseAt).to.equal(m.releaseAt);
            expect(info.locked <= info.bonded).to.equal(true);
            expect(await staking.freeStakeOf(nodes[i].address)).to.equal(m.bonded - m.locked);
            expect(await token.balanceOf(nodes[i].address)).to.equal(m.wallet);
            staked += info.bonded + info.unbonding;
          }
          expect(await token.balanceOf(stakingAddress)).to.equal(staked);
          const treasuryGain = (await token.balanceOf(treasury.address)) - treasuryStart;
          const beneficiaryGain = (await token.balanceOf(beneficiary.address)) - beneficiaryStart;
          expect(treasuryGain).to.equal(toTreasury);
          expect(beneficiaryGain).to.equal(toBeneficiary);
          expect(treasuryGain + beneficiaryGain).to.equal(totalSlashed);
          for (const [role, bit] of [
            [Role.Inference, ROLES.inference],
            [Role.Verification, ROLES.verification],
          ] as const) {
            const expected = model.filter((m) => m.registered && (m.roles & bit) !== 0).length;
            expect(await staking.nodeCount(role)).to.equal(BigInt(expected));
          }
        }

        for (const step of actions) {
          // Every transaction lands one second after the last block, so the model knows `block.timestamp`.
          const now = BigInt(await time.latest()) + 1n;
          if (step.kind === "warp") {
            await time.increase(step.seconds);
            await checkInvariants();
            continue;
          }
          await time.setNextBlockTimestamp(now);
          // A withdrawal goes to the first node from the drawn one on that has stake unbonding, so that most
          // are not no-ops; with nothing unbonding anywhere it checks NodeStakingNothingToWithdraw.
          let index = step.node;
          if (step.kind === "withdraw") {
            const offset = [...Array(NODE_COUNT).keys()].find(
              (k) => model[(step.node + k) % NODE_COUNT].unbonding > 0n,
            );
            index = (step.node + (offset ?? 0)) % NODE_COUNT;
          }
          const signer = nodes[index];
          const m = model[index];
          const free = m.bonded - m.locked;

          switch (step.kind) {
            case "register": {
              const tx = staking.connect(signer).register(step.roles, "");
              if (m.registered) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingAlreadyRegistered")
                  .withArgs(signer.address);
              } else if (step.roles === 0 || (step.roles & ~ROLES.both) !== 0) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingUnknownRoles")
                  .withArgs(step.roles);
              } else {
                await expect(tx).to.emit(staking, "NodeRegistered");
                m.registered = true;
                m.roles = step.roles;
              }
              break;
            }
            case "stake": {
              const value = resolve(step.amount, m.wallet);
              const tx = staking.connect(signer).stake(value);
              if (value === 0n) {
                await expect(tx).to.be.revertedWithCustomError(staking, "NodeStakingZeroAmount").withArgs();
              } else if (!m.registered) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingNotRegistered")
                  .withArgs(signer.address);
              } else if (value > m.wallet) {
                await expect(tx)
                  .to.be.revertedWithCustomError(token, "ERC20InsufficientBalance")
                  .withArgs(signer.address, m.wallet, value);
              } else {
                await expect(tx).to.emit(staking, "Staked").withArgs(signer.address, value);
                m.bonded += value;
                m.wallet -= value;
              }
              break;
            }
            case "requestUnstake": {
              const value = resolve(step.amount, free);
              const tx = staking.connect(signer).requestUnstake(value);
              if (value === 0n) {
                await expect(tx).to.be.revertedWithCustomError(staking, "NodeStakingZeroAmount").withArgs();
              } else if (!m.registered) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingNotRegistered")
                  .withArgs(signer.address);
              } else if (value > free) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingInsufficientFreeStake")
                  .withArgs(signer.address, value, free);
              } else {
                await expect(tx)
                  .to.emit(staking, "UnstakeRequested")
                  .withArgs(signer.address, value, now + BigInt(UNBONDING_DELAY));
                m.bonded -= value;
                m.unbonding += value;
                m.releaseAt = now + BigInt(UNBONDING_DELAY);
              }
              break;
            }
            case "withdraw": {
              const tx = staking.connect(signer).withdraw();
              if (m.unbonding === 0n) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingNothingToWithdraw")
                  .withArgs(signer.address);
              } else if (now < m.releaseAt) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingUnbondingNotElapsed")
                  .withArgs(signer.address, m.releaseAt, now);
              } else {
                await expect(tx).to.emit(staking, "Withdrawn").withArgs(signer.address, m.unbonding);
                m.wallet += m.unbonding;
                m.unbonding = 0n;
              }
              break;
            }
            case "lock": {
              const value = resolve(step.amount, free);
              const caller = step.byStranger ? stranger : protocol;
              const tx = staking.connect(caller).lockCollateral(signer.address, value);
              if (step.byStranger) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingNotCollateralManager")
                  .withArgs(stranger.address);
              } else if (value === 0n) {
                await expect(tx).to.be.revertedWithCustomError(staking, "NodeStakingZeroAmount").withArgs();
              } else if (!m.registered) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingNotRegistered")
                  .withArgs(signer.address);
              } else if (value > free) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingInsufficientFreeStake")
                  .withArgs(signer.address, value, free);
              } else {
                await expect(tx)
                  .to.emit(staking, "CollateralLocked")
                  .withArgs(signer.address, protocol.address, value);
                m.locked += value;
              }
              break;
            }
            case "unlock": {
              const value = resolve(step.amount, m.locked);
              const caller = step.byStranger ? stranger : protocol;
              const tx = staking.connect(caller).unlockCollateral(signer.address, value);
              if (step.byStranger) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingNotCollateralManager")
                  .withArgs(stranger.address);
              } else if (value === 0n) {
                await expect(tx).to.be.revertedWithCustomError(staking, "NodeStakingZeroAmount").withArgs();
              } else {
                const released = value < m.locked ? value : m.locked;
                await expect(tx)
                  .to.emit(staking, "CollateralUnlocked")
                  .withArgs(signer.address, protocol.address, released);
                m.locked -= released;
              }
              break;
            }
            case "slash": {
              const value = resolve(step.amount, m.bonded + m.unbonding);
              const caller = step.byStranger ? stranger : protocol;
              const to = step.withBeneficiary ? beneficiary.address : ethers.ZeroAddress;
              const tx = staking.connect(caller).slash(signer.address, value, REASON, to);
              if (step.byStranger) {
                await expect(tx)
                  .to.be.revertedWithCustomError(staking, "NodeStakingNotSlasher")
                  .withArgs(stranger.address);
              } else if (value === 0n) {
                await expect(tx).to.be.revertedWithCustomError(staking, "NodeStakingZeroAmount").withArgs();
              } else {
                const fromBonded = value < m.bonded ? value : m.bonded;
                const rest = value - fromBonded;
                const fromUnbonding = rest < m.unbonding ? rest : m.unbonding;
                const slashed = fromBonded + fromUnbonding;
                const share = step.withBeneficiary ? (slashed * bps) / 10_000n : 0n;
                if (slashed === 0n) {
                  await expect(tx).not.to.emit(staking, "NodeSlashed");
                } else {
                  await expect(tx)
                    .to.emit(staking, "NodeSlashed")
                    .withArgs(signer.address, protocol.address, REASON, slashed, to, share);
                }
                m.bonded -= fromBonded;
                m.unbonding -= fromUnbonding;
                if (m.locked > m.bonded) m.locked = m.bonded;
                totalSlashed += slashed;
                toBeneficiary += share;
                toTreasury += slashed - share;
              }
              break;
            }
          }
          await checkInvariants();
        }
      }),
      { numRuns: 30 },
    );
  });
});
