// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ITaskRegistry} from "../interfaces/ITaskRegistry.sol";
import {IModelRegistry} from "../interfaces/IModelRegistry.sol";
import {INodeStaking} from "../interfaces/INodeStaking.sol";
import {PublicSignals} from "../libraries/PublicSignals.sol";
import {IEnclaveRegistry} from "../interfaces/IEnclaveRegistry.sol";
import {VerificationModes} from "../libraries/VerificationModes.sol";
import {TaskRegistryCore} from "./TaskRegistryCore.sol";
import {ZkSettlement} from "./settlement/ZkSettlement.sol";
import {TeeSettlement} from "./settlement/TeeSettlement.sol";
import {OptimisticSettlement} from "./settlement/OptimisticSettlement.sol";

/// @title TaskRegistry
/// @notice Escrows inference fees, hands tasks to staked nodes, verifies their Groth16 proofs against the
/// model's registered verification key with the protocol's own verifier, and settles. The owner is the
/// governance timelock (fee shares, windows, caps).
/// @dev Invariants, NEVER to be violated: `_token.balanceOf(this) == open escrow + sum(credits) +
/// sum(protocol fees held)`; a task
/// settles at most once (status moves Open -> Verified | Expired for ZK and TEE tasks, Open -> Claimed ->
/// Pending -> Verified | Rejected | Expired for optimistic ones, never back to a settled state); for every
/// verified task `nodeFee + royalty + protocolFee == fee`; no slash ever pays the requester or the model
/// owner (both can influence whether a task is provable), and no refund or payout depends on a
/// NodeStaking call succeeding.
contract TaskRegistry is ITaskRegistry, TaskRegistryCore {
    using SafeERC20 for IERC20;

    /// @notice The settlement module of each verification mode, created with the registry and fixed for its
    /// life: the registry runs a mode's entry points as the module's code on its own storage.
    address public immutable zkSettlement;
    address public immutable teeSettlement;
    address public immutable optimisticSettlement;

    constructor(
        IERC20 token_,
        IModelRegistry models_,
        INodeStaking staking_,
        address owner_,
        address treasury_
    ) TaskRegistryCore(token_, models_, staking_, owner_) {
        zkSettlement = address(new ZkSettlement(token_, models_, staking_));
        teeSettlement = address(new TeeSettlement(token_, models_, staking_));
        optimisticSettlement = address(new OptimisticSettlement(token_, models_, staking_));
        _setTreasury(treasury_);
        _setFeeShares(1000, 1000);
        _setTaskParameters(10 minutes, 100 ether, 500_000, 7 days);
        _setOptimisticParameters(10 minutes, 1000);
    }

    // ---------------------------------------------------------------- requesters

    /// @inheritdoc ITaskRegistry
    function submitTask(TaskRequest calldata request) external nonReentrant returns (uint256 taskId) {
        taskId = _submit(request, 0);
        _collectFee(request.fee);
    }

    /// @inheritdoc ITaskRegistry
    function submitTaskInMode(
        TaskRequest calldata request,
        uint8 mode
    ) external nonReentrant returns (uint256 taskId) {
        taskId = _submit(request, mode);
        _collectFee(request.fee);
    }

    /// @inheritdoc ITaskRegistry
    function submitTaskWithPermit(
        TaskRequest calldata request,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256 taskId) {
        // A front-run permit must not block the task: the allowance is what counts, and the transfer
        // below fails cleanly without it.
        try
            IERC20Permit(address(_token)).permit(
                msg.sender,
                address(this),
                request.fee,
                permitDeadline,
                v,
                r,
                s
            )
        {} catch {}
        taskId = _submit(request, 0);
        _collectFee(request.fee);
    }

    /// @inheritdoc ITaskRegistry
    function submitTasks(
        TaskRequest[] calldata requests
    ) external nonReentrant returns (uint256[] memory taskIds) {
        if (requests.length == 0 || requests.length > MAX_BATCH)
            revert TaskRegistryInvalidBatch(requests.length);
        taskIds = new uint256[](requests.length);
        uint256 total;
        for (uint256 i = 0; i < requests.length; ++i) {
            taskIds[i] = _submit(requests[i], 0);
            total += requests[i].fee;
        }
        _collectFee(total);
    }

    /// @inheritdoc ITaskRegistry
    function deposit(uint256 amount) external nonReentrant {
        if (amount == 0) revert TaskRegistryInvalidParameter();
        _credit(msg.sender, amount);
        emit Deposited(msg.sender, amount);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc ITaskRegistry
    function expire(uint256 taskId, Task calldata task) external nonReentrant {
        TaskRecord storage record = _tasks[taskId];
        TaskStatus status = _statusOf(record);
        if (status != TaskStatus.Open && status != TaskStatus.Claimed)
            revert TaskRegistryWrongStatus(taskId, status);
        _checkCommitment(taskId, record, task);
        if (block.timestamp <= task.deadline) {
            revert TaskRegistryDeadlineNotReached(taskId, task.deadline, block.timestamp);
        }
        address node = record.node;
        uint256 collateral = uint256(record.aux) * COLLATERAL_UNIT;
        record.status = TaskStatus.Expired;
        emit TaskExpired(taskId, task.requester, task.fee);
        record.aux = 0;
        if (status == TaskStatus.Claimed) {
            _slashClaim(taskId, node, collateral, SLASH_REASON_TASK_EXPIRED, address(0));
        }
        _token.safeTransfer(task.requester, task.fee);
    }

    // ---------------------------------------------------------------- nodes

    /// @inheritdoc ITaskRegistry
    function claimTask(uint256 taskId, Task calldata task) external nonReentrant {
        TaskRecord storage record = _tasks[taskId];
        TaskStatus status = _statusOf(record);
        if (status != TaskStatus.Open && status != TaskStatus.Claimed)
            revert TaskRegistryWrongStatus(taskId, status);
        _checkCommitment(taskId, record, task);
        // ZK and TEE results carry a proof or an enclave signature bound to the node that serves them: no
        // claim (see `submitResult`). Only an optimistic post needs collateral locked before the work.
        if (task.mode != VerificationModes.OPTIMISTIC) revert TaskRegistryWrongMode(taskId, task.mode);
        if (block.timestamp >= task.deadline)
            revert TaskRegistryDeadlinePassed(taskId, task.deadline, block.timestamp);
        if (status == TaskStatus.Claimed && block.timestamp <= record.time) {
            revert TaskRegistryAlreadyClaimed(taskId, record.node, record.time);
        }
        // Settled claims' collateral counts as free stake again before eligibility is judged.
        _releaseCollateral(msg.sender);
        if (!_staking.isEligible(msg.sender, INodeStaking.Role.Inference))
            revert TaskRegistryNodeNotEligible(msg.sender);

        if (status == TaskStatus.Claimed) {
            _slashClaim(
                taskId,
                record.node,
                uint256(record.aux) * COLLATERAL_UNIT,
                SLASH_REASON_CLAIM_ABANDONED,
                address(0)
            );
        }

        SubmitConfig memory config = _submitConfig;
        uint256 claimExpiresAt = block.timestamp + config.claimWindow;
        if (claimExpiresAt > task.deadline) claimExpiresAt = task.deadline;
        record.node = msg.sender;
        // Safe cast: claimExpiresAt <= deadline <= submission time + maxTaskDuration, far below 2^32 s.
        record.time = uint32(claimExpiresAt);
        record.status = TaskStatus.Claimed;
        record.aux = config.claimCollateralUnits;
        uint256 collateral = uint256(config.claimCollateralUnits) * COLLATERAL_UNIT;
        emit TaskClaimed(taskId, msg.sender, claimExpiresAt, collateral);
        if (collateral != 0) _staking.lockCollateral(msg.sender, collateral);
    }

    // The entry points below run their mode's settlement module on this registry's storage (`_delegate`
    // passes the calldata on as it is). Their parameters are named for the ABI, which tools decode
    // transactions with; the tuple statement of them marks them read on purpose and compiles to nothing.

    /// @inheritdoc ITaskRegistry
    function submitResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata input,
        uint256[] calldata outputs,
        uint256[8] calldata proof
    ) external nonReentrant {
        (taskId, task, input, outputs, proof);
        _delegate(zkSettlement);
    }

    /// @inheritdoc ITaskRegistry
    function submitResults(ResultSubmission[] calldata submissions) external nonReentrant {
        submissions;
        _delegate(zkSettlement);
    }

    /// @inheritdoc ITaskRegistry
    function withdrawCredits(address to) external nonReentrant returns (uint256 amount) {
        Account storage account = _accounts[msg.sender];
        amount = account.credits;
        if (amount == 0) revert TaskRegistryNoCredits(msg.sender);
        account.credits = 0;
        emit CreditsWithdrawn(msg.sender, to, amount);
        _token.safeTransfer(to, amount);
    }

    /// @inheritdoc ITaskRegistry
    function releaseCollateral(address node) external nonReentrant returns (uint256 amount) {
        return _releaseCollateral(node);
    }

    /// @inheritdoc ITaskRegistry
    function withdrawProtocolFees(address[] calldata nodes) external nonReentrant returns (uint256 amount) {
        if (nodes.length == 0 || nodes.length > MAX_BATCH) revert TaskRegistryInvalidBatch(nodes.length);
        uint256 units;
        for (uint256 i = 0; i < nodes.length; ++i) {
            Account storage account = _accounts[nodes[i]];
            units += account.protocolFeeUnits;
            account.protocolFeeUnits = 0;
        }
        amount = units * FEE_UNIT;
        if (amount == 0) revert TaskRegistryNoCredits(_treasury);
        emit ProtocolFeesWithdrawn(_treasury, amount);
        _token.safeTransfer(_treasury, amount);
    }

    // ---------------------------------------------------------------- TEE mode

    /// @inheritdoc ITaskRegistry
    function submitResultTee(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes calldata signature
    ) external nonReentrant {
        (taskId, task, outputs, signature);
        _delegate(teeSettlement);
    }

    // ---------------------------------------------------------------- optimistic mode

    /// @inheritdoc ITaskRegistry
    function submitResultOptimistic(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes[] calldata attestations
    ) external nonReentrant {
        (taskId, task, outputs, attestations);
        _delegate(optimisticSettlement);
    }

    /// @inheritdoc ITaskRegistry
    function finalizeResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external nonReentrant {
        (taskId, task, outputs, attesters);
        _delegate(optimisticSettlement);
    }

    /// @inheritdoc ITaskRegistry
    function expireUnattested(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) external nonReentrant {
        (taskId, task, outputsHash, attesters);
        _delegate(optimisticSettlement);
    }

    /// @inheritdoc ITaskRegistry
    function openDispute(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        address challenger
    ) external nonReentrant returns (address node) {
        (taskId, task, outputsHash, attesters, challenger);
        return abi.decode(_delegate(optimisticSettlement), (address));
    }

    /// @inheritdoc ITaskRegistry
    function acceptDisputed(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external nonReentrant {
        (taskId, task, outputs, attesters);
        _delegate(optimisticSettlement);
    }

    /// @inheritdoc ITaskRegistry
    function rejectDisputed(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        DisputeOutcome outcome,
        address challenger
    ) external nonReentrant {
        (taskId, task, outputsHash, attesters, outcome, challenger);
        _delegate(optimisticSettlement);
    }

    // ---------------------------------------------------------------- views

    /// @notice The OPG token fees are paid in.
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @inheritdoc ITaskRegistry
    function models() external view returns (IModelRegistry) {
        return _models;
    }

    /// @notice The staking contract nodes stake in, lock collateral in and are slashed by.
    function staking() external view returns (INodeStaking) {
        return _staking;
    }

    /// @inheritdoc ITaskRegistry
    function taskStatus(uint256 taskId) external view returns (TaskStatus) {
        return _statusOf(_tasks[taskId]);
    }

    /// @inheritdoc ITaskRegistry
    function claimOf(uint256 taskId) external view returns (address node, uint256 claimExpiresAt) {
        TaskRecord storage record = _tasks[taskId];
        if (record.status != TaskStatus.Claimed) return (record.node, 0);
        return (record.node, record.time);
    }

    /// @inheritdoc ITaskRegistry
    function isVerifiedResult(uint256 taskId, Result calldata result) external view returns (bool) {
        TaskRecord storage record = _tasks[taskId];
        return
            _statusOf(record) == TaskStatus.Verified &&
            record.word == _resultWord(result.node, result.settledBlock, result.outputs);
    }

    /// @inheritdoc ITaskRegistry
    function creditsOf(address account) external view returns (uint256) {
        return _accounts[account].credits;
    }

    /// @inheritdoc ITaskRegistry
    function releasableCollateralOf(address node) external view returns (uint256) {
        return uint256(_accounts[node].releasableCollateralUnits) * COLLATERAL_UNIT;
    }

    /// @inheritdoc ITaskRegistry
    function protocolFeesOf(address node) external view returns (uint256) {
        return uint256(_accounts[node].protocolFeeUnits) * FEE_UNIT;
    }

    /// @inheritdoc ITaskRegistry
    function taskBinding(uint256 taskId, address node) external view returns (uint256) {
        return _taskBinding(taskId, node);
    }

    /// @inheritdoc ITaskRegistry
    function teeResultDigest(
        uint256 taskId,
        address node,
        bytes32 inputHash,
        bytes32 onnxHash,
        uint256[] calldata outputs
    ) external view returns (bytes32) {
        return _teeResultDigest(taskId, node, inputHash, onnxHash, outputs);
    }

    /// @inheritdoc ITaskRegistry
    function attestationDigest(
        uint256 taskId,
        address node,
        bytes32 outputsHash
    ) external view returns (bytes32) {
        return _attestationDigest(taskId, node, outputsHash);
    }

    /// @inheritdoc ITaskRegistry
    function pendingOf(uint256 taskId) external view returns (address node, uint256 windowEnd) {
        TaskRecord storage record = _tasks[taskId];
        if (record.status != TaskStatus.Pending && record.status != TaskStatus.Disputed)
            return (address(0), 0);
        return (record.node, record.time);
    }

    /// @notice The optimistic and TEE modes' settings: dispute manager, enclave registry, challenge window
    /// (s), attesters' fee share (bps). The attesters' slash is the dispute manager's.
    function modeParameters()
        external
        view
        returns (address disputes, address enclaves, uint32 challengeWindow, uint16 attesterFeeBps)
    {
        ModeConfig memory m = _modeConfig;
        return (m.disputes, address(_teeConfig.enclaves), m.challengeWindow, m.attesterFeeBps);
    }

    /// @inheritdoc ITaskRegistry
    function hashTask(Task calldata task) external pure returns (bytes32) {
        return _commitment(task);
    }

    /// @inheritdoc ITaskRegistry
    function taskCount() external view returns (uint256) {
        return _submitConfig.taskCount;
    }

    /// @notice Governed parameters: fee shares (bps), treasury, claim window (s), callback gas cap, longest
    /// deadline (s), collateral per claim (OPG wei).
    function parameters()
        external
        view
        returns (
            uint16 protocolFeeBps,
            uint16 royaltyBps,
            address treasury,
            uint32 claimWindow,
            uint32 maxCallbackGasLimit,
            uint32 maxTaskDuration,
            uint256 claimCollateral
        )
    {
        SubmitConfig memory c = _submitConfig;
        return (
            c.protocolFeeBps,
            c.royaltyBps,
            _treasury,
            c.claimWindow,
            c.maxCallbackGasLimit,
            c.maxTaskDuration,
            uint256(c.claimCollateralUnits) * COLLATERAL_UNIT
        );
    }

    // ---------------------------------------------------------------- governance (timelock)

    /// @notice Set the protocol's and the model owner's share of each fee, in basis points; the node gets
    /// the rest.
    function setFeeShares(uint16 protocolFeeBps, uint16 royaltyBps) external onlyOwner {
        _setFeeShares(protocolFeeBps, royaltyBps);
    }

    /// @notice Set the treasury paid the protocol fees.
    function setTreasury(address treasury_) external onlyOwner {
        _setTreasury(treasury_);
    }

    /// @notice Set the claim window, the collateral a claim locks (a multiple of COLLATERAL_UNIT), the callback
    /// gas cap and the longest allowed deadline.
    function setTaskParameters(
        uint32 claimWindow,
        uint256 claimCollateral,
        uint32 maxCallbackGasLimit,
        uint32 maxTaskDuration
    ) external onlyOwner {
        _setTaskParameters(claimWindow, claimCollateral, maxCallbackGasLimit, maxTaskDuration);
    }

    /// @notice Set the contracts that judge enclave keys (TEE mode) and optimistic disputes. The dispute
    /// manager needs the slasher role on NodeStaking too (for voters it slashes).
    function setVerificationModules(address enclaves, address disputes) external onlyOwner {
        _teeConfig.enclaves = IEnclaveRegistry(enclaves);
        _modeConfig.disputes = disputes;
        emit VerificationModulesSet(enclaves, disputes);
    }

    /// @notice Set the optimistic mode's challenge window (s) and the attesters' share of each fee (bps; with
    /// the protocol's and the model owner's at most 100%).
    function setOptimisticParameters(uint32 challengeWindow, uint16 attesterFeeBps) external onlyOwner {
        _setOptimisticParameters(challengeWindow, attesterFeeBps);
    }

    // ---------------------------------------------------------------- internals

    /// @dev Runs the call's own calldata as `module`'s code on this registry's storage (see
    /// `SettlementModule`) and returns its return data; a revert is passed on as it is, custom error
    /// included. The caller's `nonReentrant` lock covers the module's code, and ends when the caller returns.
    function _delegate(address module) private returns (bytes memory result) {
        bool ok;
        // The module is this registry's own code, fixed at construction (see `SettlementModule`).
        // solhint-disable-next-line avoid-low-level-calls
        (ok, result) = module.delegatecall(msg.data);
        if (!ok) {
            // Re-throws the module's revert data unchanged.
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    function _setOptimisticParameters(uint32 challengeWindow, uint16 attesterFeeBps) private {
        SubmitConfig memory c = _submitConfig;
        bool ok =
            challengeWindow != 0 &&
                challengeWindow <= 30 days &&
                uint256(c.protocolFeeBps) + c.royaltyBps + attesterFeeBps <= _BPS;
        if (!ok) revert TaskRegistryInvalidParameter();
        _modeConfig.challengeWindow = challengeWindow;
        _modeConfig.attesterFeeBps = attesterFeeBps;
        emit OptimisticParametersSet(challengeWindow, attesterFeeBps);
    }

    function _submit(TaskRequest calldata request, uint8 mode) private returns (uint256 taskId) {
        IModelRegistry.TaskTerms memory terms = _models.taskTerms(request.modelId);
        if (!terms.active) revert TaskRegistryModelUnavailable(request.modelId);
        uint8 allowed = terms.verificationModes;
        if (mode == 0) {
            // The strongest mode the model allows: a proof, else an enclave signature, else attestations.
            mode =
                allowed & VerificationModes.ZK != 0
                    ? VerificationModes.ZK
                    : (
                        allowed & VerificationModes.TEE != 0
                            ? VerificationModes.TEE
                            : VerificationModes.OPTIMISTIC
                    );
        }
        if (mode & allowed == 0 || (mode & (mode - 1)) != 0) {
            revert TaskRegistryModeUnavailable(request.modelId, mode);
        }
        if (request.fee < terms.fee || request.fee > type(uint96).max) {
            revert TaskRegistryInvalidFee(request.fee, terms.fee);
        }
        SubmitConfig memory config = _submitConfig;
        uint256 maxDeadline = block.timestamp + config.maxTaskDuration;
        if (request.deadline <= block.timestamp || request.deadline > maxDeadline) {
            revert TaskRegistryInvalidDeadline(request.deadline, block.timestamp, maxDeadline);
        }
        _checkInput(request, terms);
        if (request.callbackGasLimit > config.maxCallbackGasLimit) {
            revert TaskRegistryCallbackGasTooHigh(request.callbackGasLimit, config.maxCallbackGasLimit);
        }
        if (
            request.callback != address(0) &&
            (request.callback.code.length == 0 || request.callbackGasLimit == 0)
        ) {
            revert TaskRegistryInvalidCallback(request.callback, request.callbackGasLimit);
        }

        Task memory task = Task({
            requester: msg.sender,
            modelId: request.modelId,
            fee: request.fee,
            deadline: request.deadline,
            verificationKey: terms.verificationKey,
            royaltyReceiver: terms.royaltyReceiver,
            callback: request.callback,
            callbackGasLimit: request.callbackGasLimit,
            outputWords: terms.outputWords,
            protocolFeeBps: config.protocolFeeBps,
            royaltyBps: config.royaltyBps,
            inputHash: keccak256(abi.encodePacked(request.input)),
            inputDataHash: request.inputDataHash,
            mode: mode,
            attestationQuorum: 0,
            attesterFeeBps: 0
        });
        if (mode == VerificationModes.OPTIMISTIC) {
            task.attestationQuorum = _models.attestationQuorum(request.modelId);
            task.attesterFeeBps = _modeConfig.attesterFeeBps;
        }
        taskId = ++_submitConfig.taskCount;
        _tasks[taskId].word = bytes32(uint256(keccak256(abi.encode(task))) & ~VERIFIED_FLAG);
        emit TaskSubmitted(taskId, request.modelId, msg.sender, task, request.input);
    }

    /// @dev A task must be provable by construction. Commitment mode: the word is a field element (the
    /// node checks the committed data before claiming). Inline mode: each word must be exactly what the
    /// circuit's packing produces: no bit set above its values (the last word holds fewer values), and
    /// every value, stored with the offset 2^(packBits-1), inside the circuit's signed `inputBits` range.
    function _checkInput(TaskRequest calldata request, IModelRegistry.TaskTerms memory terms) private pure {
        uint256 words = request.input.length;
        bool commitment = terms.inputMode == IModelRegistry.InputMode.Commitment;
        if (words != terms.inputWords || commitment != (request.inputDataHash != 0)) {
            revert TaskRegistryInvalidInput(request.modelId, words, terms.inputWords);
        }
        if (commitment) {
            if (request.input[0] >= PublicSignals.SNARK_SCALAR_FIELD) {
                revert TaskRegistrySignalOutOfField(0, request.input[0]);
            }
            return;
        }
        uint256 packBits = terms.packBits;
        uint256 perWord = PublicSignals.WORD_PAYLOAD_BITS / packBits;
        // Per value: u = v + 2^(B-1) with -2^(I-1) <= v < 2^(I-1), i.e. u - low in [0, 2^I) where
        // low = 2^(B-1) - 2^(I-1). Subtracting `low` from every lane at once leaves every lane in [0, 2^I),
        // high bits clear, exactly when every value is in range: a lane below `low` borrows and wraps to at
        // least 2^B - low >= 2^I, which sets its own high bits (a borrow only disturbs lanes above it).
        uint256 low = (uint256(1) << (packBits - 1)) - (uint256(1) << (terms.inputBits - 1));
        uint256 high = ((uint256(1) << packBits) - 1) ^ ((uint256(1) << terms.inputBits) - 1);
        uint256 remaining = terms.inputValues;
        for (uint256 i = 0; i < words; ++i) {
            uint256 lanes = remaining < perWord ? remaining : perWord;
            remaining -= lanes;
            uint256 word = request.input[i];
            uint256 payloadBits = lanes * packBits;
            // repeat = sum over lanes of 2^(j*B): (2^(lanes*B) - 1) / (2^B - 1), exact.
            uint256 repeat = ((uint256(1) << payloadBits) - 1) / ((uint256(1) << packBits) - 1);
            bool ok = word >> payloadBits == 0;
            // Wrapping is intended: a lane below `low` shows up in its own high bits (see above).
            unchecked {
                ok = ok && ((word - low * repeat) & (high * repeat)) == 0;
            }
            if (!ok) revert TaskRegistryUnprovableInput(i, word);
        }
    }

    /// @dev Escrow `fee` from the caller: from its prepaid credits when they cover it (one storage write),
    /// else pulled from its wallet (an OPG transfer with vote checkpoints: about 23,000 gas).
    function _collectFee(uint256 fee) private {
        Account storage account = _accounts[msg.sender];
        uint256 credits = account.credits;
        if (credits >= fee) {
            // Safe: fee <= credits < 2^96.
            account.credits = uint96(credits - fee);
        } else {
            _token.safeTransferFrom(msg.sender, address(this), fee);
        }
    }

    function _setFeeShares(uint16 protocolFeeBps, uint16 royaltyBps) private {
        if (uint256(protocolFeeBps) + royaltyBps + _modeConfig.attesterFeeBps > _BPS) {
            revert TaskRegistryInvalidParameter();
        }
        _submitConfig.protocolFeeBps = protocolFeeBps;
        _submitConfig.royaltyBps = royaltyBps;
        emit FeeSharesSet(protocolFeeBps, royaltyBps);
    }

    function _setTreasury(address treasury_) private {
        if (treasury_ == address(0)) revert TaskRegistryInvalidParameter();
        _treasury = treasury_;
        emit TreasurySet(treasury_);
    }

    function _setTaskParameters(
        uint32 claimWindow,
        uint256 claimCollateral,
        uint32 maxCallbackGasLimit,
        uint32 maxTaskDuration
    ) private {
        uint256 units = claimCollateral / COLLATERAL_UNIT;
        bool ok =
            claimWindow != 0 &&
                maxTaskDuration >= claimWindow &&
                maxTaskDuration <= 365 days &&
                claimCollateral % COLLATERAL_UNIT == 0 &&
                units <= type(uint56).max &&
                maxCallbackGasLimit <= 5_000_000;
        if (!ok) revert TaskRegistryInvalidParameter();
        SubmitConfig storage c = _submitConfig;
        c.claimWindow = claimWindow;
        c.maxCallbackGasLimit = maxCallbackGasLimit;
        c.maxTaskDuration = maxTaskDuration;
        c.claimCollateralUnits = uint56(units);
        emit TaskParametersSet(claimWindow, claimCollateral, maxCallbackGasLimit, maxTaskDuration);
    }
}
