// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title Node registration, staking, collateral and slashing.
/// @notice A node registers for one or both roles, stakes OPG, and is eligible for a role while its free stake
/// (bonded stake minus collateral locked for claimed tasks) is at least that role's minimum. A node whose
/// free stake falls below a role's minimum (a slash, a lock, an unstake) is out of that role ("jailed") until
/// it tops up.
/// @dev Invariant, NEVER to be violated: the contract's OPG balance equals the sum over all nodes of
/// `bonded + unbonding` (bonded includes locked). Every path that moves OPG keeps it (see the property test).
interface INodeStaking {
    /// @notice Node roles. A registration carries a bitmask of `1 << uint8(role)`.
    enum Role {
        Inference,
        Verification
    }

    /// @notice Everything the contract knows of a node.
    /// @param bonded Stake that counts for eligibility and collateral, locked collateral included.
    /// @param locked Part of `bonded` held as collateral for claimed tasks.
    /// @param unbonding Stake on its way out, withdrawable at `unbondingReleaseAt`, still slashable.
    /// @param unbondingReleaseAt Timestamp from which `withdraw` pays out `unbonding`.
    /// @param roles Bitmask of roles (`1 << uint8(Role.X)`).
    /// @param registered Whether the node has registered.
    /// @param endpoint Operator-supplied endpoint (URL) where the node can be reached.
    struct NodeInfo {
        uint128 bonded;
        uint128 locked;
        uint128 unbonding;
        uint64 unbondingReleaseAt;
        uint8 roles;
        bool registered;
        string endpoint;
    }

    /// @notice A node registered with `roles` and `endpoint`.
    event NodeRegistered(address indexed node, uint8 roles, string endpoint);
    /// @notice A node changed its roles or endpoint.
    event NodeUpdated(address indexed node, uint8 roles, string endpoint);
    /// @notice `amount` OPG was added to `node`'s bonded stake.
    event Staked(address indexed node, uint256 amount);
    /// @notice `amount` moved from bonded stake to unbonding, withdrawable from `releaseAt`.
    event UnstakeRequested(address indexed node, uint256 amount, uint64 releaseAt);
    /// @notice `amount` of unbonded stake was paid out to the node.
    event Withdrawn(address indexed node, uint256 amount);
    /// @notice `locker` locked `amount` of `node`'s free stake as collateral.
    event CollateralLocked(address indexed node, address indexed locker, uint256 amount);
    /// @notice `locker` released `amount` of `node`'s collateral back to free stake.
    event CollateralUnlocked(address indexed node, address indexed locker, uint256 amount);
    /// @notice `node` was slashed `amount` for `reason`: `toBeneficiary` to `beneficiary`, the rest to the treasury.
    event NodeSlashed(
        address indexed node,
        address indexed slasher,
        bytes32 indexed reason,
        uint256 amount,
        address beneficiary,
        uint256 toBeneficiary
    );
    /// @notice `node` fell below the minimum stake of `role` by a slash and lost eligibility for it.
    event NodeJailed(address indexed node, Role indexed role, uint256 freeStake, uint256 minimum);
    /// @notice Governance set the minimum free stake for `role`.
    event MinStakeSet(Role indexed role, uint256 amount);
    /// @notice Governance set the unbonding delay.
    event UnbondingDelaySet(uint64 delay);
    /// @notice Governance set the beneficiary's share of slashed stake, in basis points.
    event SlashBeneficiaryShareSet(uint16 bps);
    /// @notice Governance set the treasury that receives the protocol share of slashes.
    event TreasurySet(address treasury);
    /// @notice Governance authorised or revoked a contract that locks collateral.
    event CollateralManagerSet(address indexed manager, bool authorised);
    /// @notice Governance authorised or revoked a slasher.
    event SlasherSet(address indexed slasher, bool authorised);

    /// @notice An amount of zero was given where a positive amount is required.
    error NodeStakingZeroAmount();
    /// @notice The roles bitmask is empty or names a role that does not exist.
    error NodeStakingUnknownRoles(uint8 roles);
    /// @notice The endpoint string is longer than the limit.
    error NodeStakingEndpointTooLong(uint256 length, uint256 maxLength);
    /// @notice The node is already registered.
    error NodeStakingAlreadyRegistered(address node);
    /// @notice The node is not registered.
    error NodeStakingNotRegistered(address node);
    /// @notice The node asked to move more than its free stake.
    error NodeStakingInsufficientFreeStake(address node, uint256 requested, uint256 free);
    /// @notice The node has nothing in unbonding.
    error NodeStakingNothingToWithdraw(address node);
    /// @notice `withdraw` was called before the unbonding delay elapsed.
    error NodeStakingUnbondingNotElapsed(address node, uint64 releaseAt, uint256 now_);
    /// @notice The caller is not an authorised collateral manager.
    error NodeStakingNotCollateralManager(address caller);
    /// @notice The caller is not an authorised slasher.
    error NodeStakingNotSlasher(address caller);
    /// @notice A basis-point value above 10,000.
    error NodeStakingInvalidBps(uint256 bps);
    /// @notice The owner's timelock delay would not exceed the unbonding delay: governance could act before
    /// a staker who saw the proposal could leave.
    error NodeStakingGovernanceFasterThanExit(uint256 timelockDelay, uint256 unbondingDelay);
    /// @notice `manager` is still authorised: it unlocks its own collateral.
    error NodeStakingManagerStillAuthorised(address manager);
    /// @notice An unbonding delay above the maximum.
    error NodeStakingInvalidUnbondingDelay(uint64 delay, uint64 maxDelay);
    /// @notice The zero address where an address is required.
    error NodeStakingZeroAddress();
    /// @notice A stake that would overflow the 128-bit accounting.
    error NodeStakingAmountTooLarge(uint256 amount);

    /// @notice Register the caller as a node for `roles` (bitmask) reachable at `endpoint`.
    function register(uint8 roles, string calldata endpoint) external;

    /// @notice Change the caller's roles or endpoint.
    function updateNode(uint8 roles, string calldata endpoint) external;

    /// @notice Add `amount` OPG (pulled from the caller, who must have approved) to the caller's bonded stake.
    function stake(uint256 amount) external;

    /// @notice `stake` with an EIP-2612 permit instead of a prior approval.
    function stakeWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;

    /// @notice Move `amount` of free stake into unbonding; the unbonding timer restarts for the whole
    /// unbonding balance.
    function requestUnstake(uint256 amount) external;

    /// @notice Pay out the caller's unbonding stake once its delay has elapsed.
    function withdraw() external;

    /// @notice Lock `amount` of `node`'s free stake as collateral. Authorised collateral managers only.
    function lockCollateral(address node, uint256 amount) external;

    /// @notice Release up to `amount` of `node`'s locked collateral; releases what is left if a slash took
    /// part of it (never reverts for that, so a task can always settle). Authorised collateral managers only.
    function unlockCollateral(address node, uint256 amount) external;

    /// @notice Release the collateral `manager` locked on the caller's stake once governance has revoked
    /// `manager` (e.g. a retired task registry): what a revoked manager locked can no longer be unlocked by
    /// it, and must not stay locked forever. Returns the amount released.
    function releaseRevokedCollateral(address manager) external returns (uint256 released);

    /// @notice Slash up to `amount` of `node`'s stake (bonded first, then unbonding; never more than it has):
    /// the governed share to `beneficiary` (all to the treasury if it is zero), the rest to the treasury.
    /// Authorised slashers only.
    /// @return slashed The amount actually taken.
    function slash(
        address node,
        uint256 amount,
        bytes32 reason,
        address beneficiary
    ) external returns (uint256 slashed);

    /// @notice Whether `node` may act in `role` now.
    function isEligible(address node, Role role) external view returns (bool);

    /// @notice Bonded stake minus locked collateral.
    function freeStakeOf(address node) external view returns (uint256);

    /// @notice When `node` last added stake (zero if never). A dispute vote counts only stake that was there
    /// when the dispute opened: a voter who staked since may not vote in it.
    function lastStakedAt(address node) external view returns (uint64);

    /// @notice Everything about `node`.
    function nodeInfo(address node) external view returns (NodeInfo memory);

    /// @notice How many nodes registered for `role` (eligible or not).
    function nodeCount(Role role) external view returns (uint256);

    /// @notice A page of the nodes registered for `role`.
    function nodesByRole(Role role, uint256 offset, uint256 limit) external view returns (address[] memory);

    /// @notice Minimum free stake to be eligible for `role`.
    function minStake(Role role) external view returns (uint256);
}
