// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IModelRegistry} from "../../interfaces/IModelRegistry.sol";
import {INodeStaking} from "../../interfaces/INodeStaking.sol";
import {VerificationModes} from "../../libraries/VerificationModes.sol";
import {SettlementModule} from "./SettlementModule.sol";

/// @title OptimisticSettlement
/// @notice The optimistic mode's settlement: the node that claimed a task posts its outputs with the
/// attestations of staked verification nodes; they stand unless the dispute manager upholds a challenge
/// within the window; a post short of its quorum is slashed and the task reopened (or refunded after its
/// deadline).
contract OptimisticSettlement is SettlementModule {
    using SafeERC20 for IERC20;

    constructor(
        IERC20 token_,
        IModelRegistry models_,
        INodeStaking staking_
    ) SettlementModule(token_, models_, staking_) {}

    modifier onlyDisputes() {
        if (msg.sender != _modeConfig.disputes || msg.sender == address(0)) {
            revert TaskRegistryNotDisputeManager(msg.sender);
        }
        _;
    }

    /// @dev See `ITaskRegistry`.
    function submitResultOptimistic(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes[] calldata attestations
    ) external onlyDelegated {
        TaskRecord storage record = _tasks[taskId];
        _checkClaimedResult(taskId, record, task, outputs, VerificationModes.OPTIMISTIC);
        bytes32 outputsHash = keccak256(abi.encodePacked(outputs));
        uint256 windowEnd = block.timestamp + _modeConfig.challengeWindow;
        emit TaskResultPosted(taskId, msg.sender, outputs, windowEnd);
        uint256 count = attestations.length;
        address[] memory attesters = new address[](count);
        if (count != 0) {
            // Signed as an EIP-191 personal message, so any wallet (or a node's key) can attest.
            bytes32 digest = keccak256(
                abi.encodePacked(
                    "\x19Ethereum Signed Message:\n32",
                    _attestationDigest(taskId, msg.sender, outputsHash)
                )
            );
            for (uint256 i = 0; i < count; ++i) {
                address attester = _recoverSigner(digest, attestations[i]);
                bool allowed = i < MAX_ATTESTERS && attester != address(0) && attester != msg.sender;
                for (uint256 j = 0; allowed && j < i; ++j) allowed = attesters[j] != attester;
                if (!allowed || !_staking.isEligible(attester, INodeStaking.Role.Verification)) {
                    revert TaskRegistryCannotAttest(taskId, attester);
                }
                attesters[i] = attester;
                emit TaskAttested(taskId, attester, i + 1);
            }
        }
        record.word = _pendingWord(record.word, outputsHash, attesters);
        // Safe cast: now + a 32-bit window stays far below 2^32 s for decades.
        record.time = uint32(windowEnd);
        record.status = TaskStatus.Pending;
    }

    /// @dev See `ITaskRegistry`.
    function finalizeResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external onlyDelegated {
        TaskRecord storage record = _tasks[taskId];
        _checkPending(
            taskId,
            record,
            task,
            keccak256(abi.encodePacked(outputs)),
            attesters,
            TaskStatus.Pending
        );
        if (block.timestamp <= record.time) revert TaskRegistryWindow(taskId, record.time, block.timestamp);
        uint256 quorum = task.attestationQuorum;
        if (attesters.length < quorum) revert TaskRegistryQuorumNotMet(taskId, attesters.length, quorum);
        _acceptPending(taskId, record, task, outputs, attesters);
    }

    /// @dev See `ITaskRegistry`.
    function expireUnattested(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) external onlyDelegated {
        TaskRecord storage record = _tasks[taskId];
        bytes32 commitment = _checkPending(taskId, record, task, outputsHash, attesters, TaskStatus.Pending);
        if (block.timestamp <= record.time) revert TaskRegistryWindow(taskId, record.time, block.timestamp);
        uint256 quorum = task.attestationQuorum;
        if (attesters.length >= quorum) revert TaskRegistryWrongStatus(taskId, TaskStatus.Pending);
        address node = record.node;
        uint256 collateral = uint256(record.aux) * COLLATERAL_UNIT;
        record.aux = 0;
        // Before the deadline the task goes back to the market (another node serves it); after it, the
        // requester is refunded in full. Either way the poster loses what abandoning the claim would cost.
        bool reopen = block.timestamp < task.deadline;
        if (reopen) {
            record.word = commitment;
            record.node = address(0);
            record.status = TaskStatus.Open;
            emit TaskReopened(taskId, node);
        } else {
            record.status = TaskStatus.Expired;
            emit TaskExpired(taskId, task.requester, task.fee);
        }
        _slashClaim(taskId, node, collateral, SLASH_REASON_UNATTESTED, address(0));
        if (!reopen) _token.safeTransfer(task.requester, task.fee);
    }

    /// @dev See `ITaskRegistry`.
    function openDispute(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        address challenger
    ) external onlyDelegated onlyDisputes returns (address node) {
        TaskRecord storage record = _tasks[taskId];
        _checkPending(taskId, record, task, outputsHash, attesters, TaskStatus.Pending);
        if (block.timestamp > record.time) revert TaskRegistryWindow(taskId, record.time, block.timestamp);
        // The dispute belongs to the manager that opened it (see `_checkDisputed`).
        record.word = keccak256(abi.encode(record.word, msg.sender));
        record.status = TaskStatus.Disputed;
        emit TaskDisputed(taskId, challenger);
        return record.node;
    }

    /// @dev See `ITaskRegistry`.
    function acceptDisputed(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external onlyDelegated {
        TaskRecord storage record = _tasks[taskId];
        _checkDisputed(taskId, record, task, keccak256(abi.encodePacked(outputs)), attesters);
        _acceptPending(taskId, record, task, outputs, attesters);
    }

    /// @dev See `ITaskRegistry`.
    function rejectDisputed(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        DisputeOutcome outcome,
        address challenger
    ) external onlyDelegated {
        TaskRecord storage record = _tasks[taskId];
        _checkDisputed(taskId, record, task, outputsHash, attesters);
        if (outcome == DisputeOutcome.NodeRight) revert TaskRegistryInvalidParameter();
        record.status = TaskStatus.Rejected;
        emit TaskRejected(taskId, task.requester, task.fee, outcome);
        if (outcome == DisputeOutcome.NodeWrong) {
            uint256 collateral = uint256(record.aux) * COLLATERAL_UNIT;
            record.aux = 0;
            _slashClaim(taskId, record.node, collateral, SLASH_REASON_WRONG_RESULT, challenger);
        } else {
            _releasePendingCollateral(record);
        }
        _token.safeTransfer(task.requester, task.fee);
    }

    /// @dev The signer of a 65-byte (r, s, v) signature over `digest`, zero if there is none. Malleable
    /// signatures are harmless here: an attester counts once by address.
    function _recoverSigner(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        return ecrecover(digest, uint8(signature[64]), bytes32(signature[0:32]), bytes32(signature[32:64]));
    }

    /// @dev Settles pending outputs as verified: stores them, pays the fee with the attesters' share, runs
    /// the callback.
    function _acceptPending(
        uint256 taskId,
        TaskRecord storage record,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) private {
        address node = record.node;
        uint256 collateralUnits = _recordResult(record, node, outputs);
        _splitFee(taskId, node, task, collateralUnits, outputs, attesters);
        _runCallback(taskId, task, outputs);
    }

    /// @dev The word a pending (optimistic) task holds: its commitment, its posted outputs and its attesters.
    function _pendingWord(
        bytes32 commitment,
        bytes32 outputsHash,
        address[] memory attesters
    ) private pure returns (bytes32) {
        return keccak256(abi.encode(commitment, outputsHash, keccak256(abi.encodePacked(attesters))));
    }

    function _checkPending(
        uint256 taskId,
        TaskRecord storage record,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        TaskStatus expected
    ) private view returns (bytes32 commitment) {
        TaskStatus status = _statusOf(record);
        if (status != expected) revert TaskRegistryWrongStatus(taskId, status);
        commitment = _commitment(task);
        if (record.word != _pendingWord(commitment, outputsHash, attesters)) {
            revert TaskRegistryPendingMismatch(taskId);
        }
    }

    /// @dev A disputed task's word binds its pending word to the manager that opened the dispute: only that
    /// manager may settle it, whatever `setVerificationModules` did since (a swap never strands a dispute).
    function _checkDisputed(
        uint256 taskId,
        TaskRecord storage record,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) private view {
        TaskStatus status = _statusOf(record);
        if (status != TaskStatus.Disputed) revert TaskRegistryWrongStatus(taskId, status);
        bytes32 pending = _pendingWord(_commitment(task), outputsHash, attesters);
        if (record.word != keccak256(abi.encode(pending, msg.sender)))
            revert TaskRegistryPendingMismatch(taskId);
    }
}
