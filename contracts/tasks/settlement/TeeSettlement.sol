// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IModelRegistry} from "../../interfaces/IModelRegistry.sol";
import {INodeStaking} from "../../interfaces/INodeStaking.sol";
import {VerificationModes} from "../../libraries/VerificationModes.sol";
import {SettlementModule} from "./SettlementModule.sol";
import {IEnclaveRegistry} from "../../interfaces/IEnclaveRegistry.sol";

/// @title TeeSettlement
/// @notice The TEE mode's settlement: any eligible inference node settles an open task with its enclave's
/// signature over `teeResultDigest` (bound to the task and to the caller), made by a key of the caller that
/// the enclave registry holds Active. No claim comes first: the signature already binds the node.
contract TeeSettlement is SettlementModule {
    constructor(
        IERC20 token_,
        IModelRegistry models_,
        INodeStaking staking_
    ) SettlementModule(token_, models_, staking_) {}

    /// @dev See `ITaskRegistry.submitResultTee`.
    function submitResultTee(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes calldata signature
    ) external onlyDelegated {
        _checkServer();
        TaskRecord storage record = _tasks[taskId];
        _checkOpenResult(taskId, record, task, outputs, VerificationModes.TEE);
        _checkEnclaveSignature(taskId, msg.sender, task, outputs, signature);
        _recordResult(record, msg.sender, outputs);
        _splitFee(taskId, msg.sender, task, 0, outputs, new address[](0));
        _runCallback(taskId, task, outputs);
    }

    /// @dev Reverts unless `signature` over the task's TEE digest is by an Active enclave key of `node`.
    function _checkEnclaveSignature(
        uint256 taskId,
        address node,
        Task calldata task,
        uint256[] calldata outputs,
        bytes calldata signature
    ) private {
        IEnclaveRegistry enclaves = _teeConfig.enclaves;
        if (address(enclaves) == address(0)) revert TaskRegistryModuleNotSet(VerificationModes.TEE);
        bytes32 digest = _teeResultDigest(
            taskId,
            node,
            task.inputHash,
            _models.onnxHashOf(task.modelId),
            outputs
        );
        (address key, address keyNode, IEnclaveRegistry.KeyStanding standing) = enclaves.signerStatus(
            digest,
            signature
        );
        if (keyNode != node || standing != IEnclaveRegistry.KeyStanding.Active) {
            revert TaskRegistryEnclaveKeyRejected(taskId, key, uint8(standing));
        }
        emit TaskEnclaveSigned(taskId, key);
    }
}
