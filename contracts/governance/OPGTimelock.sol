// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @notice The one call the timelock makes on NodeStaking.
interface IUnbondingDelay {
    function unbondingDelay() external view returns (uint64);
}

/// @title OPG timelock: a TimelockController that is always slower than a staker's exit.
/// @notice Every passed proposal waits `getMinDelay()` before it executes, and that delay must exceed the
/// staking contract's unbonding delay, so a staker who sees a proposal it disagrees with (say, one that
/// authorises a new slasher) can unbond and withdraw before it takes effect. Enforced here when the delay
/// changes, and in NodeStaking when the unbonding delay changes or ownership moves.
contract OPGTimelock is TimelockController {
    /// @notice The staking contract whose unbonding delay bounds this timelock's delay from below.
    IUnbondingDelay public immutable staking;

    /// @notice The delay would not exceed the unbonding delay.
    error OPGTimelockFasterThanExit(uint256 delay, uint256 unbondingDelay);
    /// @notice The staking address is zero.
    error OPGTimelockZeroStaking();

    constructor(
        uint256 minDelay,
        address[] memory proposers,
        address[] memory executors,
        address admin,
        IUnbondingDelay staking_
    ) TimelockController(minDelay, proposers, executors, admin) {
        if (address(staking_) == address(0)) revert OPGTimelockZeroStaking();
        staking = staking_;
        _checkSlowerThanExit(minDelay);
    }

    /// @notice Change the delay (through a proposal, as TimelockController requires); it must stay above the
    /// unbonding delay.
    function updateDelay(uint256 newDelay) public override {
        _checkSlowerThanExit(newDelay);
        super.updateDelay(newDelay);
    }

    function _checkSlowerThanExit(uint256 delay) private view {
        uint256 unbonding = staking.unbondingDelay();
        if (delay <= unbonding) revert OPGTimelockFasterThanExit(delay, unbonding);
    }
}
