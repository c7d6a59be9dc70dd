// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title What a dapp implements to receive verified inference results.
interface IInferenceCallback {
    /// @notice Called by the task registry once task `taskId` of model `modelId` is verified, with the packed
    /// output words (see `PublicSignals.valueAt`). Runs with the gas limit the requester chose; a revert is
    /// recorded by the registry and does not undo settlement. The registry cannot be re-entered from here.
    function onInferenceResult(uint256 taskId, uint256 modelId, uint256[] calldata outputs) external;
}
