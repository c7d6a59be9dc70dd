// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ITaskRegistryTypes} from "../interfaces/ITaskRegistry.sol";
import {IModelRegistry} from "../interfaces/IModelRegistry.sol";
import {INodeStaking} from "../interfaces/INodeStaking.sol";
import {IInferenceCallback} from "../interfaces/IInferenceCallback.sol";
import {IEnclaveRegistry} from "../interfaces/IEnclaveRegistry.sol";
import {PublicSignals} from "../libraries/PublicSignals.sol";

/// @title TaskRegistryCore
/// @notice The task registry's storage layout and the steps every verification mode shares: checking a
/// task against its commitment, recording a verified result, splitting the fee, running the callback,
/// releasing and slashing claim collateral. `TaskRegistry` (escrow, claims, the task lifecycle, governance)
/// and its settlement modules (`ZkSettlement`, `TeeSettlement`, `OptimisticSettlement`) all inherit it, so a
/// module that the registry runs by `delegatecall` reads and writes the registry's own storage with the
/// same layout: the layout lives here only.
abstract contract TaskRegistryCore is ITaskRegistryTypes, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 internal constant _BPS = 10_000;
    /// @notice Most tasks or results in one batch call.
    uint256 public constant MAX_BATCH = 32;
    /// @notice Collateral is stored in units of 1 gwei of OPG so that a claim fits one storage word.
    uint256 internal constant COLLATERAL_UNIT = 1 gwei;
    /// @notice The protocol's share of each fee is held in units of 1 gwei of OPG (the dust goes to the node),
    /// so it fits beside the node's credits in one storage word.
    uint256 internal constant FEE_UNIT = 1 gwei;
    /// @notice Gas kept back when calling a callback, for the registry's own work after the call returns.
    uint256 internal constant CALLBACK_GAS_RESERVE = 10_000;
    /// @notice Gas that must be left before a lapsed claim is slashed: unlockCollateral and slash on
    /// NodeStaking use about 90,000 together (their own transactions measure 37,604 and 95,826 gas, 21,000
    /// of each intrinsic); the floor leaves them a wide margin under the 63/64 rule.
    uint256 public constant SLASH_GAS_FLOOR = 200_000;
    bytes32 public constant SLASH_REASON_CLAIM_ABANDONED = keccak256("opg.task.claim-abandoned");
    bytes32 public constant SLASH_REASON_TASK_EXPIRED = keccak256("opg.task.expired");
    bytes32 public constant SLASH_REASON_WRONG_RESULT = keccak256("opg.task.wrong-result");
    bytes32 public constant SLASH_REASON_UNATTESTED = keccak256("opg.task.unattested");
    /// @notice Domain tag of what a TEE enclave signs (see `teeResultDigest`).
    bytes32 internal constant TEE_RESULT_TYPEHASH = keccak256("opg.task.tee-result");
    /// @notice Domain tag of what a verification node signs to attest posted outputs off chain (see
    /// `attestationDigest`).
    bytes32 internal constant ATTESTATION_TYPEHASH = keccak256("opg.task.attestation");
    /// @notice Most attesters an optimistic task takes (the model registry caps quorums at this).
    uint256 internal constant MAX_ATTESTERS = 16;

    /// @notice Marks a verified task's word (`_resultWord`); a commitment never has it (`_commitment`).
    uint256 internal constant VERIFIED_FLAG = 1 << 255;

    /// @dev Per task, two words. `word` is the commitment `hashTask(task)` while the task is open or claimed,
    /// and `_resultWord` once it is verified: the result itself lives in `TaskVerified`, the chain keeps its
    /// hash (one word per task, whatever the number of outputs). A ZK or TEE task is served without a claim
    /// and never writes the second word: its status is Open while `word` is a commitment and Verified once
    /// `word` carries `VERIFIED_FLAG`. For claimed (optimistic) tasks the second word holds the claim: `aux`
    /// is its collateral (in COLLATERAL_UNIT), `time` the claim expiry, then the challenge window's end.
    struct TaskRecord {
        bytes32 word;
        address node;
        uint32 time;
        TaskStatus status;
        uint56 aux;
    }

    /// @dev Governed parameters and the task counter read on the submission and claim paths: one word. The
    /// fee shares are read at submission and frozen into the task's commitment.
    struct SubmitConfig {
        uint64 taskCount;
        uint32 maxTaskDuration;
        uint32 maxCallbackGasLimit;
        uint32 claimWindow;
        uint56 claimCollateralUnits;
        uint16 protocolFeeBps;
        uint16 royaltyBps;
    }

    /// @dev What the registry owes an account: withdrawable OPG credits and, for nodes, the protocol's share
    /// of the fees they settled (held here until anyone sweeps it to the treasury) and the collateral of
    /// verified claims still locked on NodeStaking. One word, so settlement pays a node and the protocol
    /// with one write (a separate protocol-fee counter would cost another 5,000 gas per settlement).
    /// `touched` is set on first use and never cleared, so the word stays non-zero and later writes cost
    /// 2,900 gas instead of 20,000 even after everything was withdrawn. Widths: credits are bounded by the
    /// OPG supply (1e27 < 2^96); the other two count units of 1 gwei (1e18 units < 2^64).
    struct Account {
        uint96 credits;
        uint64 protocolFeeUnits;
        uint64 releasableCollateralUnits;
        bool touched;
    }

    IERC20 internal immutable _token;
    IModelRegistry internal immutable _models;
    INodeStaking internal immutable _staking;

    /// @dev The optimistic and TEE modes' governed parameters and modules: one word each.
    struct ModeConfig {
        address disputes;
        uint32 challengeWindow;
        uint16 attesterFeeBps;
    }

    struct TeeConfig {
        IEnclaveRegistry enclaves;
    }

    SubmitConfig internal _submitConfig;
    ModeConfig internal _modeConfig;
    TeeConfig internal _teeConfig;
    address internal _treasury;
    mapping(uint256 taskId => TaskRecord record) internal _tasks;
    mapping(address account => Account balances) internal _accounts;

    constructor(
        IERC20 token_,
        IModelRegistry models_,
        INodeStaking staking_,
        address owner_
    ) Ownable(owner_) {
        _token = token_;
        _models = models_;
        _staking = staking_;
    }

    // ---------------------------------------------------------------- shared steps

    /// @dev The value that ties a proof or a signature to one task and one node.
    function _taskBinding(uint256 taskId, address node) internal view returns (uint256) {
        return PublicSignals.taskBinding(block.chainid, address(this), taskId, node);
    }

    /// @dev What a TEE enclave signs for a result (see `ITaskRegistry.teeResultDigest`).
    function _teeResultDigest(
        uint256 taskId,
        address node,
        bytes32 inputHash,
        bytes32 onnxHash,
        uint256[] calldata outputs
    ) internal view returns (bytes32) {
        return
            keccak256(
                abi.encode(
                    TEE_RESULT_TYPEHASH,
                    _taskBinding(taskId, node),
                    inputHash,
                    onnxHash,
                    keccak256(abi.encodePacked(outputs))
                )
            );
    }

    /// @dev What a verification node signs to attest posted outputs (see `ITaskRegistry.attestationDigest`).
    function _attestationDigest(
        uint256 taskId,
        address node,
        bytes32 outputsHash
    ) internal view returns (bytes32) {
        return keccak256(abi.encode(ATTESTATION_TYPEHASH, _taskBinding(taskId, node), outputsHash));
    }

    /// @dev Reverts unless the caller may serve tasks: an eligible inference node (its settled claims'
    /// collateral counted as free stake first, when NodeStaking still lets the registry release it: a node
    /// must be able to serve ZK and TEE tasks, which lock nothing, even after governance revoked the
    /// registry's collateral role).
    function _checkServer() internal {
        Account storage account = _accounts[msg.sender];
        uint64 units = account.releasableCollateralUnits;
        if (units != 0) {
            account.releasableCollateralUnits = 0;
            uint256 amount = uint256(units) * COLLATERAL_UNIT;
            try _staking.unlockCollateral(msg.sender, amount) {
                emit CollateralReleased(msg.sender, amount);
            } catch {
                account.releasableCollateralUnits = units;
            }
        }
        if (!_staking.isEligible(msg.sender, INodeStaking.Role.Inference))
            revert TaskRegistryNodeNotEligible(msg.sender);
    }

    /// @dev Checks of a ZK or TEE result (no claim: the proof or signature binds the caller): the task is
    /// open and committed as `task` in `mode`, its deadline not passed, and the outputs well formed.
    function _checkOpenResult(
        uint256 taskId,
        TaskRecord storage record,
        Task calldata task,
        uint256[] calldata outputs,
        uint8 mode
    ) internal view {
        TaskStatus status = _statusOf(record);
        if (status != TaskStatus.Open) revert TaskRegistryWrongStatus(taskId, status);
        _checkCommitment(taskId, record, task);
        if (task.mode != mode) revert TaskRegistryWrongMode(taskId, task.mode);
        if (block.timestamp >= task.deadline)
            revert TaskRegistryDeadlinePassed(taskId, task.deadline, block.timestamp);
        _checkOutputs(taskId, outputs, task);
    }

    /// @dev The outputs have the model's word count, each a field element (so a proof or a ZK-backed dispute
    /// can cover them, and every word decodes one way).
    function _checkOutputs(uint256 taskId, uint256[] calldata outputs, Task calldata task) internal pure {
        if (outputs.length != task.outputWords) {
            revert TaskRegistryInvalidOutputs(taskId, outputs.length, task.outputWords);
        }
        for (uint256 i = 0; i < outputs.length; ++i) {
            if (outputs[i] >= PublicSignals.SNARK_SCALAR_FIELD)
                revert TaskRegistrySignalOutOfField(i, outputs[i]);
        }
    }

    /// @dev Checks of an optimistic post: the caller holds a live claim on the task in `mode`, and the
    /// outputs are well formed.
    function _checkClaimedResult(
        uint256 taskId,
        TaskRecord storage record,
        Task calldata task,
        uint256[] calldata outputs,
        uint8 mode
    ) internal view {
        TaskStatus status = _statusOf(record);
        if (status != TaskStatus.Claimed) revert TaskRegistryWrongStatus(taskId, status);
        _checkCommitment(taskId, record, task);
        if (task.mode != mode) revert TaskRegistryWrongMode(taskId, task.mode);
        if (msg.sender != record.node) revert TaskRegistryNotClaimer(taskId, msg.sender, record.node);
        if (block.timestamp > record.time)
            revert TaskRegistryClaimExpired(taskId, record.time, block.timestamp);
        _checkOutputs(taskId, outputs, task);
    }

    /// @dev The node's claim collateral goes back to its free stake with its next claim or
    /// `releaseCollateral`, as after a verified result.
    function _releasePendingCollateral(TaskRecord storage record) internal {
        Account storage account = _accounts[record.node];
        account.releasableCollateralUnits += uint64(record.aux);
        account.touched = true;
        record.aux = 0;
    }

    /// @dev Marks the task verified with the hash of its result (`_resultWord`); returns the claim collateral
    /// to release, in COLLATERAL_UNIT (none without a claim). A claimless task's second word stays empty.
    function _recordResult(
        TaskRecord storage record,
        address node,
        uint256[] calldata outputs
    ) internal returns (uint256 collateralUnits) {
        record.word = _resultWord(node, block.number, outputs);
        if (record.status == TaskStatus.None) return 0;
        collateralUnits = record.aux;
        record.status = TaskStatus.Verified;
        record.aux = 0;
    }

    /// @dev The word a verified task keeps: `VERIFIED_FLAG` and the hash of who settled it, when, and its
    /// outputs (all three are in its `TaskVerified` event; `isVerifiedResult` checks them against the word).
    function _resultWord(
        address node,
        uint256 settledBlock,
        uint256[] calldata outputs
    ) internal pure returns (bytes32) {
        return bytes32(VERIFIED_FLAG | (uint256(keccak256(abi.encode(node, settledBlock, outputs))) >> 1));
    }

    /// @dev What the registry stores for `task` while it is open: its hash with the top bit cleared, so no
    /// commitment is ever read as a verified result (`VERIFIED_FLAG`).
    function _commitment(Task calldata task) internal pure returns (bytes32) {
        return bytes32(uint256(keccak256(abi.encode(task))) & ~VERIFIED_FLAG);
    }

    function _splitFee(
        uint256 taskId,
        address node,
        Task calldata task,
        uint256 collateralUnits,
        uint256[] calldata outputs,
        address[] memory attesters
    ) internal {
        // The shares frozen at submission (their sum was checked <= _BPS when governance set them). The
        // protocol's share is held in whole FEE_UNITs; the rounding dust goes to the node.
        uint256 fee = task.fee;
        uint256 protocolUnits = (fee * task.protocolFeeBps) / _BPS / FEE_UNIT;
        uint256 protocolFee = protocolUnits * FEE_UNIT;
        uint256 royalty = (fee * task.royaltyBps) / _BPS;
        uint256 nodeFee = fee - protocolFee - royalty;
        uint256 attesterCount = attesters.length;
        if (attesterCount != 0) {
            // Equal shares of the attesters' part; the rounding dust stays with the node.
            uint256 share = (fee * task.attesterFeeBps) / _BPS / attesterCount;
            nodeFee -= share * attesterCount;
            for (uint256 i = 0; i < attesterCount; ++i) _credit(attesters[i], share);
            emit AttestersPaid(taskId, attesters, share);
        }
        address royaltyReceiver = task.royaltyReceiver;
        _payNode(node, nodeFee, protocolUnits, collateralUnits);
        _credit(royaltyReceiver, royalty);
        emit TaskVerified(taskId, node, outputs, nodeFee, royalty, protocolFee);
    }

    function _runCallback(uint256 taskId, Task calldata task, uint256[] calldata outputs) internal {
        address callback = task.callback;
        if (callback == address(0)) return;
        uint256 gasLimit = task.callbackGasLimit;
        // EIP-150 passes at most 63/64 of the remaining gas: a node must not be able to make the callback
        // fail by sending just too little gas, so the full limit has to be available.
        uint256 needed = gasLimit + gasLimit / 63 + CALLBACK_GAS_RESERVE;
        if (gasleft() < needed) revert TaskRegistryInsufficientCallbackGas(taskId, gasleft(), needed);
        bytes memory data = abi.encodeCall(
            IInferenceCallback.onInferenceResult,
            (taskId, task.modelId, outputs)
        );
        bool success;
        // Return data is never copied, so a callback returning huge data cannot make the registry pay for it.
        assembly ("memory-safe") {
            success := call(gasLimit, callback, 0, add(data, 32), mload(data), 0, 0)
        }
        emit CallbackExecuted(taskId, callback, success);
    }

    /// @dev One read and one write of the node's word (field by field, each update reads and writes it again).
    function _payNode(
        address node,
        uint256 nodeFee,
        uint256 protocolUnits,
        uint256 collateralUnits
    ) internal {
        Account memory a = _accounts[node];
        // Safe casts: every amount is bounded by the OPG supply (1e27 wei < 2^96; 1e18 gwei < 2^64) held by
        // this contract.
        a.credits += uint96(nodeFee);
        a.protocolFeeUnits += uint64(protocolUnits);
        a.releasableCollateralUnits += uint64(collateralUnits);
        a.touched = true;
        _accounts[node] = a;
    }

    function _credit(address account, uint256 amount) internal {
        Account storage a = _accounts[account];
        // Safe cast: credits are bounded by the OPG supply (1e27 < 2^96) held by this contract.
        a.credits += uint96(amount);
        a.touched = true;
    }

    function _releaseCollateral(address node) internal returns (uint256 amount) {
        Account storage account = _accounts[node];
        amount = uint256(account.releasableCollateralUnits) * COLLATERAL_UNIT;
        if (amount == 0) return 0;
        account.releasableCollateralUnits = 0;
        emit CollateralReleased(node, amount);
        _staking.unlockCollateral(node, amount);
    }

    /// @dev Slashes a lapsed claim's collateral to the treasury (no beneficiary: the requester and the model
    /// owner can influence whether a task is provable, so neither may profit from a failed claim). Each
    /// NodeStaking call may fail without reverting the caller: refunds and take-overs must not depend on the
    /// registry still holding its roles.
    function _slashClaim(
        uint256 taskId,
        address node,
        uint256 collateral,
        bytes32 reason,
        address beneficiary
    ) internal {
        if (collateral == 0) return;
        // A caller must not be able to make the calls below fail by sending too little gas (each would get
        // only 63/64 of what is left and the catch would swallow the out-of-gas): with this much left, both
        // calls get more than they use.
        if (gasleft() < SLASH_GAS_FLOOR) revert TaskRegistryInsufficientSlashGas(gasleft(), SLASH_GAS_FLOOR);
        emit TaskClaimAbandoned(taskId, node, collateral);
        try _staking.unlockCollateral(node, collateral) {} catch {
            emit StakingCallFailed(taskId, node, collateral, INodeStaking.unlockCollateral.selector);
        }
        try _staking.slash(node, collateral, reason, beneficiary) {} catch {
            emit StakingCallFailed(taskId, node, collateral, INodeStaking.slash.selector);
        }
    }

    function _checkCommitment(uint256 taskId, TaskRecord storage record, Task calldata task) internal view {
        if (record.word != _commitment(task)) revert TaskRegistryTaskMismatch(taskId);
    }

    function _statusOf(TaskRecord storage record) internal view returns (TaskStatus) {
        TaskStatus status = record.status;
        if (status != TaskStatus.None) return status;
        uint256 word = uint256(record.word);
        if (word == 0) return TaskStatus.None;
        return word & VERIFIED_FLAG != 0 ? TaskStatus.Verified : TaskStatus.Open;
    }
}
