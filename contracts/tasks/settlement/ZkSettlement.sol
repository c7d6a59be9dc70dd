// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IModelRegistry} from "../../interfaces/IModelRegistry.sol";
import {INodeStaking} from "../../interfaces/INodeStaking.sol";
import {ITaskRegistryTypes} from "../../interfaces/ITaskRegistry.sol";
import {VerificationModes} from "../../libraries/VerificationModes.sol";
import {SettlementModule} from "./SettlementModule.sol";
import {Groth16} from "../../libraries/Groth16.sol";

/// @title ZkSettlement
/// @notice The ZK mode's settlement: any eligible inference node settles an open task with a Groth16 proof
/// bound to itself (the public signals end with the binding of chain, registry, task and caller), so no
/// claim comes first and nobody can take another node's work. A batch's proofs under one key are checked
/// with one pairing product (`Groth16.verifyBatch`).
contract ZkSettlement is SettlementModule {
    constructor(
        IERC20 token_,
        IModelRegistry models_,
        INodeStaking staking_
    ) SettlementModule(token_, models_, staking_) {}

    /// @dev See `ITaskRegistry.submitResult`.
    function submitResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata input,
        uint256[] calldata outputs,
        uint256[8] calldata proof
    ) external onlyDelegated {
        _checkServer();
        TaskRecord storage record = _tasks[taskId];
        _checkOpenResult(taskId, record, task, outputs, VerificationModes.ZK);
        if (!Groth16.verify(task.verificationKey, proof, _publicSignals(taskId, task, input, outputs))) {
            revert TaskRegistryInvalidProof(taskId);
        }
        _recordResult(record, msg.sender, outputs);
        _splitFee(taskId, msg.sender, task, 0, outputs, new address[](0));
        _runCallback(taskId, task, outputs);
    }

    /// @dev See `ITaskRegistry.submitResults`. Tasks another node settled (or that expired) since the batch
    /// was sent are skipped, not reverted: one lost task must not waste the batch's other proofs.
    function submitResults(
        ITaskRegistryTypes.ResultSubmission[] calldata submissions
    ) external onlyDelegated {
        uint256 count = submissions.length;
        if (count == 0 || count > MAX_BATCH) revert TaskRegistryInvalidBatch(count);
        _checkServer();
        bool[] memory live = new bool[](count);
        uint256[][] memory signals = new uint256[][](count);
        uint256 liveCount;
        address key;
        bool oneKey = true;
        for (uint256 i = 0; i < count; ++i) {
            ITaskRegistryTypes.ResultSubmission calldata s = submissions[i];
            TaskRecord storage record = _tasks[s.taskId];
            TaskStatus status = _statusOf(record);
            // Not open any more, or (the task being the committed one) past its deadline while the batch waited
            // to be mined: skipped.
            if (status != TaskStatus.Open) {
                emit TaskResultSkipped(s.taskId, status);
                continue;
            }
            _checkCommitment(s.taskId, record, s.task);
            if (block.timestamp >= s.task.deadline) {
                emit TaskResultSkipped(s.taskId, status);
                continue;
            }
            // What `_checkOpenResult` checks beyond the status, commitment and deadline checked above.
            if (s.task.mode != VerificationModes.ZK) revert TaskRegistryWrongMode(s.taskId, s.task.mode);
            _checkOutputs(s.taskId, s.outputs, s.task);
            signals[i] = _publicSignals(s.taskId, s.task, s.input, s.outputs);
            if (liveCount == 0) key = s.task.verificationKey;
            oneKey = oneKey && key == s.task.verificationKey;
            live[i] = true;
            ++liveCount;
        }
        _verify(submissions, live, signals, liveCount, oneKey ? key : address(0));
        for (uint256 i = 0; i < count; ++i) {
            if (!live[i]) continue;
            ITaskRegistryTypes.ResultSubmission calldata s = submissions[i];
            TaskRecord storage record = _tasks[s.taskId];
            // The same task twice in one batch: the first settles it, the others are skipped (never paid twice).
            if (_statusOf(record) != TaskStatus.Open) {
                live[i] = false;
                emit TaskResultSkipped(s.taskId, TaskStatus.Verified);
                continue;
            }
            _recordResult(record, msg.sender, s.outputs);
            _splitFee(s.taskId, msg.sender, s.task, 0, s.outputs, new address[](0));
        }
        // Callbacks run after every settlement of the batch, so no callback observes a half-settled batch.
        for (uint256 i = 0; i < count; ++i) {
            if (live[i]) _runCallback(submissions[i].taskId, submissions[i].task, submissions[i].outputs);
        }
    }

    /// @dev Verifies the live submissions' proofs: as one batch when there are several under one key (one
    /// key means one circuit, so one signal count), else one by one. A failing batch is checked proof by
    /// proof, so the revert names the task whose proof is invalid.
    function _verify(
        ITaskRegistryTypes.ResultSubmission[] calldata submissions,
        bool[] memory live,
        uint256[][] memory signals,
        uint256 liveCount,
        address key
    ) private view {
        if (liveCount > 1 && key != address(0)) {
            uint256[8][] memory proofs = new uint256[8][](liveCount);
            uint256 perProof;
            for (uint256 i = 0; i < submissions.length; ++i) if (live[i]) perProof = signals[i].length;
            uint256[] memory flat = new uint256[](liveCount * perProof);
            uint256 next;
            for (uint256 i = 0; i < submissions.length; ++i) {
                if (!live[i]) continue;
                proofs[next] = submissions[i].proof;
                for (uint256 j = 0; j < perProof; ++j) flat[next * perProof + j] = signals[i][j];
                ++next;
            }
            if (Groth16.verifyBatch(key, proofs, flat)) return;
        }
        for (uint256 i = 0; i < submissions.length; ++i) {
            if (!live[i]) continue;
            ITaskRegistryTypes.ResultSubmission calldata s = submissions[i];
            if (!Groth16.verify(s.task.verificationKey, s.proof, signals[i]))
                revert TaskRegistryInvalidProof(s.taskId);
        }
    }

    /// @dev Public signals in the circuit's order: outputs, inputs, binding. Every word is a field element:
    /// outputs were checked by `_checkOpenResult` (the verifier would otherwise reduce them, letting two
    /// encodings pass for one value), inputs at submission.
    function _publicSignals(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata input,
        uint256[] calldata outputs
    ) private view returns (uint256[] memory signals) {
        if (keccak256(abi.encodePacked(input)) != task.inputHash) revert TaskRegistryTaskMismatch(taskId);
        uint256 outs = outputs.length;
        signals = new uint256[](outs + input.length + 1);
        for (uint256 i = 0; i < outs; ++i) signals[i] = outputs[i];
        // Inputs were checked at submission, and the commitment pins them since: copied as they are.
        uint256 ins = input.length;
        // Copies `ins` words into the array allocated above, right after the outputs.
        assembly ("memory-safe") {
            calldatacopy(add(add(signals, 0x20), mul(outs, 0x20)), input.offset, mul(ins, 0x20))
        }
        signals[outs + ins] = _taskBinding(taskId, msg.sender);
    }
}
