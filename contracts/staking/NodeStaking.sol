// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {INodeStaking} from "../interfaces/INodeStaking.sol";

/// @notice The one call NodeStaking makes on a timelock owner.
interface ITimelockDelay {
    function getMinDelay() external view returns (uint256);
}

/// @title NodeStaking
/// @notice Stake, collateral and slashing for inference and verification nodes. The owner is the governance
/// timelock: it sets minimum stakes, the unbonding delay, the slash share and the authorised contracts.
/// @dev Invariants, NEVER to be violated: `token.balanceOf(this) == sum(bonded + unbonding)` over all nodes,
/// and `locked <= bonded` for every node; a manager unlocks at most what it locked; governance (the owner,
/// when it is a timelock) is slower than a staker's exit: `owner.getMinDelay() > unbondingDelay`.
contract NodeStaking is INodeStaking, Ownable, ReentrancyGuard {
    using SafeERC20 for IERC20;
    using EnumerableSet for EnumerableSet.AddressSet;

    uint256 private constant _BPS = 10_000;
    uint256 private constant _ROLE_COUNT = 2;
    /// @dev Bits of every defined role: (1 << _ROLE_COUNT) - 1.
    uint8 private constant _ALL_ROLES = 0x03;
    /// @notice Longest endpoint string a node may publish (keeps storage and events bounded).
    uint256 public constant MAX_ENDPOINT_LENGTH = 256;
    /// @notice Upper bound governance may set for the unbonding delay.
    uint64 public constant MAX_UNBONDING_DELAY = 90 days;

    /// @notice The staked token (OPG).
    IERC20 public immutable token;

    /// @notice Receives the protocol's share of slashed stake.
    address public treasury;
    /// @notice Delay between `requestUnstake` and `withdraw`.
    uint64 public unbondingDelay;
    /// @notice Share of a slash paid to its beneficiary (the wronged requester or the challenger), in bps.
    uint16 public slashBeneficiaryShareBps;

    mapping(Role role => uint256 amount) private _minStake;
    mapping(address node => NodeInfo info) private _nodes;
    mapping(Role role => EnumerableSet.AddressSet nodes) private _roleMembers;
    mapping(address account => bool authorised) private _collateralManagers;
    mapping(address account => bool authorised) private _slashers;
    /// @dev Collateral each manager locked per node, plus one once touched (so later writes cost 2,900 gas,
    /// not 20,000). Lets a node take back collateral a revoked manager can no longer unlock.
    mapping(address node => mapping(address manager => uint256 lockedPlusOne)) private _lockedBy;
    /// @dev When each node last added stake (see `lastStakedAt`).
    mapping(address node => uint64 stakedAt) private _lastStakedAt;

    modifier onlyCollateralManager() {
        if (!_collateralManagers[msg.sender]) revert NodeStakingNotCollateralManager(msg.sender);
        _;
    }

    modifier onlySlasher() {
        if (!_slashers[msg.sender]) revert NodeStakingNotSlasher(msg.sender);
        _;
    }

    constructor(
        IERC20 token_,
        address owner_,
        address treasury_,
        uint256 minInferenceStake,
        uint256 minVerificationStake,
        uint64 unbondingDelay_,
        uint16 slashBeneficiaryShareBps_
    ) Ownable(owner_) {
        if (address(token_) == address(0) || treasury_ == address(0)) revert NodeStakingZeroAddress();
        token = token_;
        _setTreasury(treasury_);
        _setMinStake(Role.Inference, minInferenceStake);
        _setMinStake(Role.Verification, minVerificationStake);
        _setUnbondingDelay(unbondingDelay_);
        _setSlashBeneficiaryShare(slashBeneficiaryShareBps_);
    }

    // ---------------------------------------------------------------- node operators

    /// @inheritdoc INodeStaking
    function register(uint8 roles, string calldata endpoint) external {
        NodeInfo storage info = _nodes[msg.sender];
        if (info.registered) revert NodeStakingAlreadyRegistered(msg.sender);
        _checkRolesAndEndpoint(roles, endpoint);
        info.registered = true;
        info.roles = roles;
        info.endpoint = endpoint;
        _syncRoleSets(msg.sender, 0, roles);
        emit NodeRegistered(msg.sender, roles, endpoint);
    }

    /// @inheritdoc INodeStaking
    function updateNode(uint8 roles, string calldata endpoint) external {
        NodeInfo storage info = _registered(msg.sender);
        _checkRolesAndEndpoint(roles, endpoint);
        uint8 previous = info.roles;
        info.roles = roles;
        info.endpoint = endpoint;
        _syncRoleSets(msg.sender, previous, roles);
        emit NodeUpdated(msg.sender, roles, endpoint);
    }

    /// @inheritdoc INodeStaking
    function stake(uint256 amount) external nonReentrant {
        _stake(amount);
    }

    /// @inheritdoc INodeStaking
    function stakeWithPermit(
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant {
        // A permit that was front-run (already used) must not block the stake: the allowance is what counts,
        // and transferFrom below fails cleanly if there is none.
        try
            IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s)
        {} catch {}
        _stake(amount);
    }

    /// @inheritdoc INodeStaking
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert NodeStakingZeroAmount();
        NodeInfo storage info = _registered(msg.sender);
        uint256 free = info.bonded - info.locked;
        if (amount > free) revert NodeStakingInsufficientFreeStake(msg.sender, amount, free);
        // Safe casts: amount <= free <= bonded < 2**128, and unbonding + amount <= total OPG supply.
        info.bonded -= uint128(amount);
        info.unbonding += uint128(amount);
        uint64 releaseAt = uint64(block.timestamp) + unbondingDelay;
        info.unbondingReleaseAt = releaseAt;
        emit UnstakeRequested(msg.sender, amount, releaseAt);
    }

    /// @inheritdoc INodeStaking
    function withdraw() external nonReentrant {
        NodeInfo storage info = _nodes[msg.sender];
        uint256 amount = info.unbonding;
        if (amount == 0) revert NodeStakingNothingToWithdraw(msg.sender);
        if (block.timestamp < info.unbondingReleaseAt) {
            revert NodeStakingUnbondingNotElapsed(msg.sender, info.unbondingReleaseAt, block.timestamp);
        }
        info.unbonding = 0;
        info.unbondingReleaseAt = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- protocol contracts

    /// @inheritdoc INodeStaking
    function lockCollateral(address node, uint256 amount) external onlyCollateralManager {
        if (amount == 0) revert NodeStakingZeroAmount();
        NodeInfo storage info = _registered(node);
        uint256 free = info.bonded - info.locked;
        if (amount > free) revert NodeStakingInsufficientFreeStake(node, amount, free);
        // Safe cast: amount <= free < 2**128.
        info.locked += uint128(amount);
        _lockedBy[node][msg.sender] = _lockedByOf(node, msg.sender) + amount + 1;
        emit CollateralLocked(node, msg.sender, amount);
    }

    /// @inheritdoc INodeStaking
    function unlockCollateral(address node, uint256 amount) external onlyCollateralManager {
        if (amount == 0) revert NodeStakingZeroAmount();
        NodeInfo storage info = _nodes[node];
        // A slash may already have consumed part of this collateral, and a manager unlocks only what it
        // locked itself: release what is left of both.
        uint256 mine = _lockedByOf(node, msg.sender);
        uint256 released = _min(_min(amount, mine), info.locked);
        // Safe cast: released <= locked < 2**128.
        info.locked -= uint128(released);
        _lockedBy[node][msg.sender] = mine - _min(amount, mine) + 1;
        emit CollateralUnlocked(node, msg.sender, released);
    }

    /// @inheritdoc INodeStaking
    function releaseRevokedCollateral(address manager) external returns (uint256 released) {
        if (_collateralManagers[manager]) revert NodeStakingManagerStillAuthorised(manager);
        NodeInfo storage info = _registered(msg.sender);
        released = _min(_lockedByOf(msg.sender, manager), info.locked);
        // Safe cast: released <= locked < 2**128.
        info.locked -= uint128(released);
        _lockedBy[msg.sender][manager] = 1;
        emit CollateralUnlocked(msg.sender, manager, released);
    }

    /// @inheritdoc INodeStaking
    function slash(
        address node,
        uint256 amount,
        bytes32 reason,
        address beneficiary
    ) external onlySlasher nonReentrant returns (uint256 slashed) {
        if (amount == 0) revert NodeStakingZeroAmount();
        NodeInfo storage info = _nodes[node];
        uint256 bonded = info.bonded;
        uint256 fromBonded = amount < bonded ? amount : bonded;
        uint256 fromUnbonding = amount - fromBonded;
        if (fromUnbonding > info.unbonding) fromUnbonding = info.unbonding;
        slashed = fromBonded + fromUnbonding;
        if (slashed == 0) return 0;

        // Safe casts: both parts are bounded by the stored 128-bit values they are taken from.
        info.bonded = uint128(bonded - fromBonded);
        info.unbonding -= uint128(fromUnbonding);
        if (info.locked > info.bonded) info.locked = info.bonded;

        uint256 toBeneficiary = beneficiary == address(0) ? 0 : (slashed * slashBeneficiaryShareBps) / _BPS;
        emit NodeSlashed(node, msg.sender, reason, slashed, beneficiary, toBeneficiary);
        _emitJailings(node, info);

        if (toBeneficiary != 0) token.safeTransfer(beneficiary, toBeneficiary);
        if (slashed != toBeneficiary) token.safeTransfer(treasury, slashed - toBeneficiary);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc INodeStaking
    function isEligible(address node, Role role) public view returns (bool) {
        NodeInfo storage info = _nodes[node];
        if (!info.registered || info.roles & _roleBit(role) == 0) return false;
        uint256 free = info.bonded - info.locked;
        return free != 0 && free >= _minStake[role];
    }

    /// @inheritdoc INodeStaking
    function freeStakeOf(address node) external view returns (uint256) {
        NodeInfo storage info = _nodes[node];
        return info.bonded - info.locked;
    }

    /// @inheritdoc INodeStaking
    function lastStakedAt(address node) external view returns (uint64) {
        return _lastStakedAt[node];
    }

    /// @inheritdoc INodeStaking
    function nodeInfo(address node) external view returns (NodeInfo memory) {
        return _nodes[node];
    }

    /// @inheritdoc INodeStaking
    function nodeCount(Role role) external view returns (uint256) {
        return _roleMembers[role].length();
    }

    /// @inheritdoc INodeStaking
    function nodesByRole(
        Role role,
        uint256 offset,
        uint256 limit
    ) external view returns (address[] memory page) {
        EnumerableSet.AddressSet storage members = _roleMembers[role];
        uint256 length = members.length();
        if (offset >= length) return new address[](0);
        uint256 end = length - offset < limit ? length : offset + limit;
        page = new address[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            page[i - offset] = members.at(i);
        }
    }

    /// @inheritdoc INodeStaking
    function minStake(Role role) external view returns (uint256) {
        return _minStake[role];
    }

    /// @notice Collateral `manager` has locked on `node` and not unlocked.
    function collateralLockedBy(address node, address manager) external view returns (uint256) {
        return _lockedByOf(node, manager);
    }

    /// @notice Whether `account` may lock and unlock collateral.
    function isCollateralManager(address account) external view returns (bool) {
        return _collateralManagers[account];
    }

    /// @notice Whether `account` may slash.
    function isSlasher(address account) external view returns (bool) {
        return _slashers[account];
    }

    // ---------------------------------------------------------------- governance (timelock)

    /// @notice Set the minimum free stake for `role`.
    function setMinStake(Role role, uint256 amount) external onlyOwner {
        _setMinStake(role, amount);
    }

    /// @notice Set the delay between `requestUnstake` and `withdraw` (at most `MAX_UNBONDING_DELAY`, and
    /// below the owning timelock's delay).
    function setUnbondingDelay(uint64 delay) external onlyOwner {
        _setUnbondingDelay(delay);
    }

    /// @notice Set the beneficiary's share of slashed stake, in basis points.
    function setSlashBeneficiaryShare(uint16 bps) external onlyOwner {
        _setSlashBeneficiaryShare(bps);
    }

    /// @notice Set the treasury receiving the protocol share of slashes.
    function setTreasury(address treasury_) external onlyOwner {
        _setTreasury(treasury_);
    }

    /// @notice Authorise or revoke a contract (the task registry) that locks collateral.
    function setCollateralManager(address manager, bool authorised) external onlyOwner {
        if (manager == address(0)) revert NodeStakingZeroAddress();
        _collateralManagers[manager] = authorised;
        emit CollateralManagerSet(manager, authorised);
    }

    /// @notice Authorise or revoke a slasher (the task registry, the dispute contract).
    function setSlasher(address slasher, bool authorised) external onlyOwner {
        if (slasher == address(0)) revert NodeStakingZeroAddress();
        _slashers[slasher] = authorised;
        emit SlasherSet(slasher, authorised);
    }

    // ---------------------------------------------------------------- internals

    function _stake(uint256 amount) private {
        if (amount == 0) revert NodeStakingZeroAmount();
        NodeInfo storage info = _registered(msg.sender);
        uint256 bonded = uint256(info.bonded) + amount;
        if (bonded > type(uint128).max) revert NodeStakingAmountTooLarge(amount);
        info.bonded = uint128(bonded);
        // Safe cast: timestamps fit 64 bits.
        _lastStakedAt[msg.sender] = uint64(block.timestamp);
        emit Staked(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _registered(address node) private view returns (NodeInfo storage info) {
        info = _nodes[node];
        if (!info.registered) revert NodeStakingNotRegistered(node);
    }

    function _checkRolesAndEndpoint(uint8 roles, string calldata endpoint) private pure {
        if (roles == 0 || roles & ~_ALL_ROLES != 0) revert NodeStakingUnknownRoles(roles);
        if (bytes(endpoint).length > MAX_ENDPOINT_LENGTH) {
            revert NodeStakingEndpointTooLong(bytes(endpoint).length, MAX_ENDPOINT_LENGTH);
        }
    }

    function _syncRoleSets(address node, uint8 previous, uint8 next) private {
        for (uint256 i = 0; i < _ROLE_COUNT; ++i) {
            Role role = Role(i);
            uint8 bit = _roleBit(role);
            if (next & bit != 0 && previous & bit == 0) _roleMembers[role].add(node);
            else if (next & bit == 0 && previous & bit != 0) _roleMembers[role].remove(node);
        }
    }

    function _emitJailings(address node, NodeInfo storage info) private {
        uint256 free = info.bonded - info.locked;
        for (uint256 i = 0; i < _ROLE_COUNT; ++i) {
            Role role = Role(i);
            if (info.roles & _roleBit(role) != 0 && (free == 0 || free < _minStake[role])) {
                emit NodeJailed(node, role, free, _minStake[role]);
            }
        }
    }

    function _setMinStake(Role role, uint256 amount) private {
        _minStake[role] = amount;
        emit MinStakeSet(role, amount);
    }

    /// @dev Ownership moves only to an owner slower than a staker's exit.
    function _transferOwnership(address newOwner) internal override {
        _checkSlowerThanExit(newOwner, unbondingDelay);
        super._transferOwnership(newOwner);
    }

    /// @dev Governance must not be able to act (e.g. authorise a new slasher) before a staker who saw the
    /// proposal can leave: an owner exposing a timelock delay (`getMinDelay`) must exceed the unbonding delay.
    /// An account without code (a deployer, a test's governance) has no delay to compare.
    function _checkSlowerThanExit(address owner_, uint256 delay) private view {
        if (owner_.code.length == 0) return;
        try ITimelockDelay(owner_).getMinDelay() returns (uint256 minDelay) {
            if (minDelay <= delay) revert NodeStakingGovernanceFasterThanExit(minDelay, delay);
        } catch {}
    }

    function _lockedByOf(address node, address manager) private view returns (uint256) {
        uint256 stored = _lockedBy[node][manager];
        return stored == 0 ? 0 : stored - 1;
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    function _setUnbondingDelay(uint64 delay) private {
        if (delay > MAX_UNBONDING_DELAY) revert NodeStakingInvalidUnbondingDelay(delay, MAX_UNBONDING_DELAY);
        _checkSlowerThanExit(owner(), delay);
        unbondingDelay = delay;
        emit UnbondingDelaySet(delay);
    }

    function _setSlashBeneficiaryShare(uint16 bps) private {
        if (bps > _BPS) revert NodeStakingInvalidBps(bps);
        slashBeneficiaryShareBps = bps;
        emit SlashBeneficiaryShareSet(bps);
    }

    function _setTreasury(address treasury_) private {
        if (treasury_ == address(0)) revert NodeStakingZeroAddress();
        treasury = treasury_;
        emit TreasurySet(treasury_);
    }

    function _roleBit(Role role) private pure returns (uint8) {
        return uint8(1) << uint8(role);
    }
}
