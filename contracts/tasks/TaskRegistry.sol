// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ITaskRegistry} from "../interfaces/ITaskRegistry.sol";
import {IModelRegistry} from "../interfaces/IModelRegistry.sol";
import {INodeStaking} from "../interfaces/INodeStaking.sol";
import {IInferenceCallback} from "../interfaces/IInferenceCallback.sol";
import {IEnclaveRegistry} from "../interfaces/IEnclaveRegistry.sol";
import {PublicSignals} from "../libraries/PublicSignals.sol";
import {Groth16} from "../libraries/Groth16.sol";
import {VerificationModes} from "../libraries/VerificationModes.sol";

/// @title TaskRegistry
/// @notice Escrows inference fees, hands tasks to staked nodes, verifies their Groth16 proofs against the
/// model's registered verification key with the protocol's own verifier, and settles. The owner is the
/// governance timelock (fee shares, windows, caps).
/// @dev Invariants, NEVER to be violated: `token.balanceOf(this) == open escrow + sum(credits) +
/// sum(protocol fees held)`; a task
/// settles at most once (status moves Open -> Claimed -> Verified | Expired, never back); for every
/// verified task `nodeFee + royalty + protocolFee == fee`; no slash ever pays the requester or the model
/// owner (both can influence whether a task is provable), and no refund or payout depends on a
/// NodeStaking call succeeding.
contract TaskRegistry is ITaskRegistry, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 private constant _BPS = 10_000;
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

    /// @dev Per task, two words. `word` is the commitment `hashTask(task)` while the task is open or claimed,
    /// and the first output word once it is verified. `aux` is the claim collateral (in COLLATERAL_UNIT)
    /// while claimed, and the number of output words once verified. `time` is the claim expiry while
    /// claimed, and the settlement block once verified.
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

    IERC20 public immutable token;
    IModelRegistry public immutable models;
    INodeStaking public immutable staking;

    /// @dev The optimistic and TEE modes' governed parameters and modules: one word each.
    struct ModeConfig {
        address disputes;
        uint32 challengeWindow;
        uint16 attesterFeeBps;
    }

    struct TeeConfig {
        IEnclaveRegistry enclaves;
    }

    SubmitConfig private _submitConfig;
    ModeConfig private _modeConfig;
    TeeConfig private _teeConfig;
    address private _treasury;
    mapping(uint256 taskId => TaskRecord record) private _tasks;
    mapping(uint256 taskId => mapping(uint256 index => uint256 word)) private _extraOutputs;
    mapping(address account => Account balances) private _accounts;

    constructor(
        IERC20 token_,
        IModelRegistry models_,
        INodeStaking staking_,
        address owner_,
        address treasury_
    ) Ownable(owner_) {
        token = token_;
        models = models_;
        staking = staking_;
        _setTreasury(treasury_);
        _setFeeShares(1000, 1000);
        _setTaskParameters(10 minutes, 100 ether, 500_000, 7 days);
        _setOptimisticParameters(10 minutes, 1000);
    }

    modifier onlyDisputes() {
        if (msg.sender != _modeConfig.disputes || msg.sender == address(0)) {
            revert TaskRegistryNotDisputeManager(msg.sender);
        }
        _;
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
            IERC20Permit(address(token)).permit(
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
        token.safeTransferFrom(msg.sender, address(this), amount);
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
        if (status == TaskStatus.Claimed && _claimChallenged(task, record)) {
            // Lapsed through a key challenge, not through the node: released, not slashed.
            _releasePendingCollateral(record);
        } else {
            record.aux = 0;
            if (status == TaskStatus.Claimed) {
                _slashClaim(taskId, node, collateral, SLASH_REASON_TASK_EXPIRED, address(0));
            }
        }
        token.safeTransfer(task.requester, task.fee);
    }

    // ---------------------------------------------------------------- nodes

    /// @inheritdoc ITaskRegistry
    function claimTask(uint256 taskId, Task calldata task) external nonReentrant {
        TaskRecord storage record = _tasks[taskId];
        TaskStatus status = _statusOf(record);
        if (status != TaskStatus.Open && status != TaskStatus.Claimed)
            revert TaskRegistryWrongStatus(taskId, status);
        _checkCommitment(taskId, record, task);
        if (block.timestamp >= task.deadline)
            revert TaskRegistryDeadlinePassed(taskId, task.deadline, block.timestamp);
        if (status == TaskStatus.Claimed && block.timestamp <= record.time) {
            revert TaskRegistryAlreadyClaimed(taskId, record.node, record.time);
        }
        // Settled claims' collateral counts as free stake again before eligibility is judged.
        _releaseCollateral(msg.sender);
        if (!staking.isEligible(msg.sender, INodeStaking.Role.Inference))
            revert TaskRegistryNodeNotEligible(msg.sender);

        if (status == TaskStatus.Claimed) {
            if (_claimChallenged(task, record)) revert TaskRegistryClaimUnderChallenge(taskId, record.node);
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
        if (collateral != 0) staking.lockCollateral(msg.sender, collateral);
    }

    /// @inheritdoc ITaskRegistry
    function submitResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata input,
        uint256[] calldata outputs,
        uint256[8] calldata proof
    ) external nonReentrant {
        _settle(taskId, task, input, outputs, proof);
        _runCallback(taskId, task, outputs);
    }

    /// @inheritdoc ITaskRegistry
    function submitResults(ResultSubmission[] calldata submissions) external nonReentrant {
        if (submissions.length == 0 || submissions.length > MAX_BATCH) {
            revert TaskRegistryInvalidBatch(submissions.length);
        }
        for (uint256 i = 0; i < submissions.length; ++i) {
            ResultSubmission calldata s = submissions[i];
            _settle(s.taskId, s.task, s.input, s.outputs, s.proof);
        }
        // Callbacks run after every settlement of the batch, so no callback observes a half-settled batch.
        for (uint256 i = 0; i < submissions.length; ++i) {
            _runCallback(submissions[i].taskId, submissions[i].task, submissions[i].outputs);
        }
    }

    /// @inheritdoc ITaskRegistry
    function withdrawCredits(address to) external nonReentrant returns (uint256 amount) {
        Account storage account = _accounts[msg.sender];
        amount = account.credits;
        if (amount == 0) revert TaskRegistryNoCredits(msg.sender);
        account.credits = 0;
        emit CreditsWithdrawn(msg.sender, to, amount);
        token.safeTransfer(to, amount);
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
        token.safeTransfer(_treasury, amount);
    }

    // ---------------------------------------------------------------- TEE mode

    /// @inheritdoc ITaskRegistry
    function submitResultTee(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes calldata signature
    ) external nonReentrant {
        TaskRecord storage record = _tasks[taskId];
        _checkClaimedResult(taskId, record, task, outputs, VerificationModes.TEE);
        address node = record.node;
        _checkEnclaveSignature(taskId, node, task, outputs, signature);
        uint256 collateralUnits = _recordResult(taskId, record, outputs);
        _splitFee(taskId, node, task, collateralUnits, outputs, new address[](0));
        _runCallback(taskId, task, outputs);
    }

    // ---------------------------------------------------------------- optimistic mode

    /// @inheritdoc ITaskRegistry
    function submitResultOptimistic(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes[] calldata attestations
    ) external nonReentrant {
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
                    attestationDigest(taskId, msg.sender, outputsHash)
                )
            );
            for (uint256 i = 0; i < count; ++i) {
                address attester = _recoverSigner(digest, attestations[i]);
                bool allowed = i < MAX_ATTESTERS && attester != address(0) && attester != msg.sender;
                for (uint256 j = 0; allowed && j < i; ++j) allowed = attesters[j] != attester;
                if (!allowed || !staking.isEligible(attester, INodeStaking.Role.Verification)) {
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

    /// @inheritdoc ITaskRegistry
    function finalizeResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external nonReentrant {
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

    /// @inheritdoc ITaskRegistry
    function expireUnattested(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) external nonReentrant {
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
        if (!reopen) token.safeTransfer(task.requester, task.fee);
    }

    /// @inheritdoc ITaskRegistry
    function openDispute(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        address challenger
    ) external onlyDisputes nonReentrant returns (address node) {
        TaskRecord storage record = _tasks[taskId];
        _checkPending(taskId, record, task, outputsHash, attesters, TaskStatus.Pending);
        if (block.timestamp > record.time) revert TaskRegistryWindow(taskId, record.time, block.timestamp);
        // The dispute belongs to the manager that opened it (see `_checkDisputed`).
        record.word = keccak256(abi.encode(record.word, msg.sender));
        record.status = TaskStatus.Disputed;
        emit TaskDisputed(taskId, challenger);
        return record.node;
    }

    /// @inheritdoc ITaskRegistry
    function acceptDisputed(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external nonReentrant {
        TaskRecord storage record = _tasks[taskId];
        _checkDisputed(taskId, record, task, keccak256(abi.encodePacked(outputs)), attesters);
        _acceptPending(taskId, record, task, outputs, attesters);
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
        token.safeTransfer(task.requester, task.fee);
    }

    // ---------------------------------------------------------------- views

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
    function resultOf(uint256 taskId) external view returns (Result memory result) {
        TaskRecord storage record = _tasks[taskId];
        if (record.status != TaskStatus.Verified) revert TaskRegistryWrongStatus(taskId, _statusOf(record));
        result.node = record.node;
        result.settledBlock = record.time;
        result.outputs = new uint256[](record.aux);
        result.outputs[0] = uint256(record.word);
        for (uint256 i = 1; i < result.outputs.length; ++i) result.outputs[i] = _extraOutputs[taskId][i];
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
    function taskBinding(uint256 taskId, address node) public view returns (uint256) {
        return PublicSignals.taskBinding(block.chainid, address(this), taskId, node);
    }

    /// @inheritdoc ITaskRegistry
    function teeResultDigest(
        uint256 taskId,
        address node,
        bytes32 inputHash,
        bytes32 onnxHash,
        uint256[] calldata outputs
    ) public view returns (bytes32) {
        return
            keccak256(
                abi.encode(
                    TEE_RESULT_TYPEHASH,
                    taskBinding(taskId, node),
                    inputHash,
                    onnxHash,
                    keccak256(abi.encodePacked(outputs))
                )
            );
    }

    /// @inheritdoc ITaskRegistry
    function attestationDigest(
        uint256 taskId,
        address node,
        bytes32 outputsHash
    ) public view returns (bytes32) {
        return keccak256(abi.encode(ATTESTATION_TYPEHASH, taskBinding(taskId, node), outputsHash));
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
    function hashTask(Task calldata task) public pure returns (bytes32) {
        return keccak256(abi.encode(task));
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
        bytes32 digest = teeResultDigest(
            taskId,
            node,
            task.inputHash,
            models.onnxHashOf(task.modelId),
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

    /// @dev Whether a TEE claim lapsed through a challenge of its node's enclave key: a key of the node was
    /// challenged after the claim was made (its expiry less the claim window) or later. Such a claim is
    /// neither slashed nor taken over (`TaskRegistryClaimUnderChallenge`): a challenge without evidence must
    /// not cost the node its collateral, nor earn a competitor the task.
    function _claimChallenged(Task calldata task, TaskRecord storage record) private view returns (bool) {
        IEnclaveRegistry enclaves = _teeConfig.enclaves;
        if (task.mode != VerificationModes.TEE || address(enclaves) == address(0)) return false;
        return uint256(enclaves.lastChallengeOf(record.node)) + _submitConfig.claimWindow >= record.time;
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
        uint256 collateralUnits = _recordResult(taskId, record, outputs);
        _splitFee(taskId, node, task, collateralUnits, outputs, attesters);
        _runCallback(taskId, task, outputs);
    }

    /// @dev The node's claim collateral goes back to its free stake with its next claim or
    /// `releaseCollateral`, as after a verified result.
    function _releasePendingCollateral(TaskRecord storage record) private {
        Account storage account = _accounts[record.node];
        account.releasableCollateralUnits += uint64(record.aux);
        account.touched = true;
        record.aux = 0;
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
        IModelRegistry.TaskTerms memory terms = models.taskTerms(request.modelId);
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
            task.attestationQuorum = models.attestationQuorum(request.modelId);
            task.attesterFeeBps = _modeConfig.attesterFeeBps;
        }
        taskId = ++_submitConfig.taskCount;
        _tasks[taskId].word = keccak256(abi.encode(task));
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

    function _settle(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata input,
        uint256[] calldata outputs,
        uint256[8] calldata proof
    ) private {
        TaskRecord storage record = _tasks[taskId];
        _checkClaimedResult(taskId, record, task, outputs, VerificationModes.ZK);
        address node = record.node;
        if (keccak256(abi.encodePacked(input)) != task.inputHash) revert TaskRegistryTaskMismatch(taskId);
        if (!Groth16.verify(task.verificationKey, proof, _publicSignals(taskId, node, input, outputs))) {
            revert TaskRegistryInvalidProof(taskId);
        }

        uint256 collateralUnits = _recordResult(taskId, record, outputs);
        _splitFee(taskId, node, task, collateralUnits, outputs, new address[](0));
    }

    /// @dev Checks shared by the non-ZK result paths: the caller holds a live claim on the task in `mode`,
    /// and the outputs have the model's word count, each a field element (so a ZK-backed dispute can prove
    /// them, and every word decodes one way).
    function _checkClaimedResult(
        uint256 taskId,
        TaskRecord storage record,
        Task calldata task,
        uint256[] calldata outputs,
        uint8 mode
    ) private view {
        TaskStatus status = _statusOf(record);
        if (status != TaskStatus.Claimed) revert TaskRegistryWrongStatus(taskId, status);
        _checkCommitment(taskId, record, task);
        if (task.mode != mode) revert TaskRegistryWrongMode(taskId, task.mode);
        if (msg.sender != record.node) revert TaskRegistryNotClaimer(taskId, msg.sender, record.node);
        if (block.timestamp > record.time)
            revert TaskRegistryClaimExpired(taskId, record.time, block.timestamp);
        if (outputs.length != task.outputWords) {
            revert TaskRegistryInvalidOutputs(taskId, outputs.length, task.outputWords);
        }
        for (uint256 i = 0; i < outputs.length; ++i) {
            if (outputs[i] >= PublicSignals.SNARK_SCALAR_FIELD)
                revert TaskRegistrySignalOutOfField(i, outputs[i]);
        }
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
        commitment = keccak256(abi.encode(task));
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
        bytes32 pending = _pendingWord(keccak256(abi.encode(task)), outputsHash, attesters);
        if (record.word != keccak256(abi.encode(pending, msg.sender)))
            revert TaskRegistryPendingMismatch(taskId);
    }

    /// @dev Stores the verified outputs over the task's two words; returns the claim collateral to release,
    /// in COLLATERAL_UNIT.
    function _recordResult(
        uint256 taskId,
        TaskRecord storage record,
        uint256[] calldata outputs
    ) private returns (uint256 collateralUnits) {
        collateralUnits = record.aux;
        record.word = bytes32(outputs[0]);
        // Safe cast: block numbers stay below 2^32 for centuries at any realistic block time.
        record.time = uint32(block.number);
        record.status = TaskStatus.Verified;
        record.aux = uint56(outputs.length);
        for (uint256 i = 1; i < outputs.length; ++i) _extraOutputs[taskId][i] = outputs[i];
    }

    function _splitFee(
        uint256 taskId,
        address node,
        Task calldata task,
        uint256 collateralUnits,
        uint256[] calldata outputs,
        address[] memory attesters
    ) private {
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

    /// @dev Public signals in the circuit's order: outputs, inputs, binding. Every word is a field element:
    /// outputs were checked by `_checkClaimedResult` (the verifier would otherwise reduce them, letting two
    /// encodings pass for one value), inputs at submission.
    function _publicSignals(
        uint256 taskId,
        address node,
        uint256[] calldata input,
        uint256[] calldata outputs
    ) private view returns (uint256[] memory signals) {
        uint256 outs = outputs.length;
        signals = new uint256[](outs + input.length + 1);
        for (uint256 i = 0; i < outs; ++i) signals[i] = outputs[i];
        // Inputs were checked at submission, and the commitment pins them since: copied as they are.
        uint256 ins = input.length;
        // Copies `ins` words into the array allocated above, right after the outputs.
        assembly ("memory-safe") {
            calldatacopy(add(add(signals, 0x20), mul(outs, 0x20)), input.offset, mul(ins, 0x20))
        }
        signals[outs + ins] = taskBinding(taskId, node);
    }

    function _runCallback(uint256 taskId, Task calldata task, uint256[] calldata outputs) private {
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

    /// @dev Escrow `fee` from the caller: from its prepaid credits when they cover it (one storage write),
    /// else pulled from its wallet (an OPG transfer with vote checkpoints: about 23,000 gas).
    function _collectFee(uint256 fee) private {
        Account storage account = _accounts[msg.sender];
        uint256 credits = account.credits;
        if (credits >= fee) {
            // Safe: fee <= credits < 2^96.
            account.credits = uint96(credits - fee);
        } else {
            token.safeTransferFrom(msg.sender, address(this), fee);
        }
    }

    /// @dev One read and one write of the node's word (field by field, each update reads and writes it again).
    function _payNode(address node, uint256 nodeFee, uint256 protocolUnits, uint256 collateralUnits) private {
        Account memory a = _accounts[node];
        // Safe casts: every amount is bounded by the OPG supply (1e27 wei < 2^96; 1e18 gwei < 2^64) held by
        // this contract.
        a.credits += uint96(nodeFee);
        a.protocolFeeUnits += uint64(protocolUnits);
        a.releasableCollateralUnits += uint64(collateralUnits);
        a.touched = true;
        _accounts[node] = a;
    }

    function _credit(address account, uint256 amount) private {
        Account storage a = _accounts[account];
        // Safe cast: credits are bounded by the OPG supply (1e27 < 2^96) held by this contract.
        a.credits += uint96(amount);
        a.touched = true;
    }

    function _releaseCollateral(address node) private returns (uint256 amount) {
        Account storage account = _accounts[node];
        amount = uint256(account.releasableCollateralUnits) * COLLATERAL_UNIT;
        if (amount == 0) return 0;
        account.releasableCollateralUnits = 0;
        emit CollateralReleased(node, amount);
        staking.unlockCollateral(node, amount);
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
    ) private {
        if (collateral == 0) return;
        // A caller must not be able to make the calls below fail by sending too little gas (each would get
        // only 63/64 of what is left and the catch would swallow the out-of-gas): with this much left, both
        // calls get more than they use.
        if (gasleft() < SLASH_GAS_FLOOR) revert TaskRegistryInsufficientSlashGas(gasleft(), SLASH_GAS_FLOOR);
        emit TaskClaimAbandoned(taskId, node, collateral);
        try staking.unlockCollateral(node, collateral) {} catch {
            emit StakingCallFailed(taskId, node, collateral, INodeStaking.unlockCollateral.selector);
        }
        try staking.slash(node, collateral, reason, beneficiary) {} catch {
            emit StakingCallFailed(taskId, node, collateral, INodeStaking.slash.selector);
        }
    }

    function _checkCommitment(uint256 taskId, TaskRecord storage record, Task calldata task) private view {
        if (record.word != keccak256(abi.encode(task))) revert TaskRegistryTaskMismatch(taskId);
    }

    function _statusOf(TaskRecord storage record) private view returns (TaskStatus) {
        TaskStatus status = record.status;
        if (status != TaskStatus.None) return status;
        return record.word != 0 ? TaskStatus.Open : TaskStatus.None;
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
