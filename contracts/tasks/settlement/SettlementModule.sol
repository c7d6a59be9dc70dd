// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IModelRegistry} from "../../interfaces/IModelRegistry.sol";
import {INodeStaking} from "../../interfaces/INodeStaking.sol";
import {TaskRegistryCore} from "../TaskRegistryCore.sol";

/// @title SettlementModule
/// @notice What every verification mode's settlement module is: code the task registry runs by
/// `delegatecall` on its own storage (the layout of `TaskRegistryCore`), for the registry's entry points of
/// that mode. The registry creates its modules in its constructor, with its own token, model registry and
/// staking, and routes each mode's calls to its module; a module has no storage or funds of its own and
/// refuses to be called directly.
abstract contract SettlementModule is TaskRegistryCore {
    /// @notice Called directly rather than through the task registry.
    error SettlementModuleNotDelegated();

    address private immutable _self;

    constructor(
        IERC20 token_,
        IModelRegistry models_,
        INodeStaking staking_
    ) TaskRegistryCore(token_, models_, staking_, msg.sender) {
        _self = address(this);
    }

    modifier onlyDelegated() {
        if (address(this) == _self) revert SettlementModuleNotDelegated();
        _;
    }
}
