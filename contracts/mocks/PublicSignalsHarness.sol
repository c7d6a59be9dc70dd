// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {PublicSignals} from "../libraries/PublicSignals.sol";

/// @notice Test-only: exposes the PublicSignals library so that tests can hold it to the TypeScript packer.
contract PublicSignalsHarness {
    function valueAt(uint256[] calldata words, uint256 index, uint8 packBits) external pure returns (int256) {
        return PublicSignals.valueAt(words, index, packBits);
    }

    function taskBinding(
        uint256 chainId,
        address registry,
        uint256 taskId,
        address node
    ) external pure returns (uint256) {
        return PublicSignals.taskBinding(chainId, registry, taskId, node);
    }
}
