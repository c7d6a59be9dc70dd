// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IModelRegistry} from "./IModelRegistry.sol";

/// @title The task market's types, events and errors, shared by the registry and its settlement modules.
interface ITaskRegistryTypes {
    /// @notice Lifecycle of a task.
    enum TaskStatus {
        None,
        Open,
        Claimed,
        Verified,
        Expired,
        /// Optimistic mode: outputs posted without proof, challenge window running.
        Pending,
        /// Optimistic mode: a verification node challenged the posted outputs; the dispute is open.
        Disputed,
        /// Optimistic mode: the dispute went against the node (or could not be decided): requester refunded.
        Rejected
    }

    /// @notice How a dispute over an optimistic result ended.
    enum DisputeOutcome {
        NodeRight,
        NodeWrong,
        Undecided
    }

    /// @notice What a dapp asks for.
    /// @param modelId The model to run.
    /// @param input Inline mode: the packed input words. Commitment mode: one word, the input commitment.
    /// @param inputDataHash Commitment mode: data-layer id (sha256) of the full input; zero for inline.
    /// @param fee OPG escrowed for the task; at least the model's fee.
    /// @param deadline Timestamp after which the task can be expired and refunded.
    /// @param callback Contract to call with the verified result, or zero.
    /// @param callbackGasLimit Gas the callback gets (at most `maxCallbackGasLimit`).
    struct TaskRequest {
        uint256 modelId;
        uint256[] input;
        bytes32 inputDataHash;
        uint256 fee;
        uint256 deadline;
        address callback;
        uint32 callbackGasLimit;
    }

    /// @notice A task as committed at submission: the terms of the model and the fee shares at that time are
    /// part of it, so neither a model owner nor governance changes what a submitted task pays or how it is
    /// verified.
    /// @param verificationKey The data contract holding the model's Groth16 verification key.
    /// @param protocolFeeBps Protocol share of the fee, frozen at submission.
    /// @param royaltyBps Model owner's share of the fee, frozen at submission.
    /// @param inputHash keccak256 of the packed input words (abi.encodePacked).
    /// @param mode The verification mode of this task (one bit of `VerificationModes`).
    /// @param attestationQuorum Optimistic mode: attestations needed for finality (the model's, frozen).
    /// @param attesterFeeBps Optimistic mode: the attesters' share of the fee, frozen at submission.
    struct Task {
        address requester;
        uint256 modelId;
        uint256 fee;
        uint256 deadline;
        address verificationKey;
        address royaltyReceiver;
        address callback;
        uint32 callbackGasLimit;
        uint16 outputWords;
        uint16 protocolFeeBps;
        uint16 royaltyBps;
        bytes32 inputHash;
        bytes32 inputDataHash;
        uint8 mode;
        uint8 attestationQuorum;
        uint16 attesterFeeBps;
    }

    /// @notice One result in a `submitResults` batch.
    struct ResultSubmission {
        uint256 taskId;
        Task task;
        uint256[] input;
        uint256[] outputs;
        uint256[8] proof;
    }

    /// @notice A verified result.
    struct Result {
        address node;
        uint256 settledBlock;
        uint256[] outputs;
    }

    /// @notice Task `taskId` was submitted: `task` is the committed `Task` every later call passes back, and
    /// `input` the input words (their keccak256 is `task.inputHash`).
    event TaskSubmitted(
        uint256 indexed taskId,
        uint256 indexed modelId,
        address indexed requester,
        Task task,
        uint256[] input
    );
    /// @notice `node` claimed `taskId` until `claimExpiresAt`, locking `collateral` of its stake.
    event TaskClaimed(
        uint256 indexed taskId,
        address indexed node,
        uint256 claimExpiresAt,
        uint256 collateral
    );
    /// @notice A batch (`submitResults`) skipped a task that was no longer open when it ran (another node
    /// settled it first, it expired, or it came twice in the batch) or whose deadline had passed (`status`
    /// Open): nothing was paid for it and the batch's other tasks settled.
    event TaskResultSkipped(uint256 indexed taskId, TaskStatus status);
    /// @notice `previousNode` let its claim on `taskId` expire and lost `slashed` of its collateral.
    event TaskClaimAbandoned(uint256 indexed taskId, address indexed previousNode, uint256 slashed);
    /// @notice `node`'s proof for `taskId` verified; the fee was split as given.
    event TaskVerified(
        uint256 indexed taskId,
        address indexed node,
        uint256[] outputs,
        uint256 nodeFee,
        uint256 royalty,
        uint256 protocolFee
    );
    /// @notice Optimistic mode: `node` posted `outputs` for `taskId` without proof; verification nodes may
    /// attest or challenge until `windowEnd`.
    event TaskResultPosted(
        uint256 indexed taskId,
        address indexed node,
        uint256[] outputs,
        uint256 windowEnd
    );
    /// @notice `attester`, a staked verification node, attested the posted outputs of `taskId`: it is the
    /// `count`th attester.
    event TaskAttested(uint256 indexed taskId, address indexed attester, uint256 count);
    /// @notice The posted outputs of `taskId` are disputed (see the dispute manager's events).
    event TaskDisputed(uint256 indexed taskId, address indexed challenger);
    /// @notice The posted outputs of `taskId` met no quorum: the node's collateral was slashed and the task is
    /// open to claims again until its deadline.
    event TaskReopened(uint256 indexed taskId, address indexed previousNode);
    /// @notice The posted outputs of `taskId` were rejected (`outcome` NodeWrong or Undecided): the requester
    /// got `refund` back; `slashed` is the node's collateral taken (NodeWrong only).
    event TaskRejected(
        uint256 indexed taskId,
        address indexed requester,
        uint256 refund,
        DisputeOutcome outcome
    );
    /// @notice Each of `attesters` was paid `share` of the fee of `taskId` when it became final.
    event AttestersPaid(uint256 indexed taskId, address[] attesters, uint256 share);
    /// @notice TEE mode: the result of `taskId` was signed by enclave key `key`.
    event TaskEnclaveSigned(uint256 indexed taskId, address indexed key);
    /// @notice Governance set the contracts that judge TEE keys and optimistic disputes.
    event VerificationModulesSet(address enclaves, address disputes);
    /// @notice Governance set the optimistic mode's parameters.
    event OptimisticParametersSet(uint32 challengeWindow, uint16 attesterFeeBps);
    /// @notice `taskId` passed its deadline unverified: `refund` returned to the requester.
    event TaskExpired(uint256 indexed taskId, address indexed requester, uint256 refund);
    /// @notice A call to NodeStaking failed (the registry lost its collateral-manager or slasher role, e.g.
    /// while governance migrates registries): `amount` of `node`'s collateral was not unlocked or slashed.
    /// Refunds and payouts never wait for NodeStaking.
    event StakingCallFailed(uint256 indexed taskId, address indexed node, uint256 amount, bytes4 selector);
    /// @notice The callback of `taskId` ran; `success` false means it reverted or ran out of gas.
    event CallbackExecuted(uint256 indexed taskId, address indexed callback, bool success);
    /// @notice `account` withdrew `amount` of credits to `to`.
    event CreditsWithdrawn(address indexed account, address indexed to, uint256 amount);
    /// @notice `account` prepaid `amount` OPG into its credits, from which its task fees are taken.
    event Deposited(address indexed account, uint256 amount);
    /// @notice Collateral of `node`'s settled claims, `amount` in all, went back to its free stake.
    event CollateralReleased(address indexed node, uint256 amount);
    /// @notice Accrued protocol fees, `amount`, were paid to `treasury`.
    event ProtocolFeesWithdrawn(address indexed treasury, uint256 amount);
    /// @notice Governance set the fee shares (basis points of each task fee).
    event FeeSharesSet(uint16 protocolFeeBps, uint16 royaltyBps);
    /// @notice Governance set the treasury.
    event TreasurySet(address treasury);
    /// @notice Governance set the claim window, collateral per claim, callback gas cap and longest deadline.
    event TaskParametersSet(
        uint32 claimWindow,
        uint256 claimCollateral,
        uint32 maxCallbackGasLimit,
        uint32 maxTaskDuration
    );

    /// @notice The model is deactivated or does not allow the requested verification mode.
    error TaskRegistryModelUnavailable(uint256 modelId);
    /// @notice The mode is not exactly one known verification mode, or not one the model allows.
    error TaskRegistryModeUnavailable(uint256 modelId, uint8 mode);
    /// @notice The task was submitted in another verification mode than this call settles.
    error TaskRegistryWrongMode(uint256 taskId, uint8 mode);
    /// @notice The enclave signature does not recover to a key of the node in good standing.
    error TaskRegistryEnclaveKeyRejected(uint256 taskId, address key, uint8 standing);
    /// @notice The posted outputs or attester list given do not match what the task holds (or, for a disputed
    /// task, the caller is not the dispute manager that opened the dispute).
    error TaskRegistryPendingMismatch(uint256 taskId);
    /// @notice The challenge window of `taskId` is still open (finality) or has closed (attest, challenge).
    error TaskRegistryWindow(uint256 taskId, uint256 windowEnd, uint256 now_);
    /// @notice An attestation does not count (not an eligible verification node, the task's own node, a
    /// repeated attester, or more than 16).
    error TaskRegistryCannotAttest(uint256 taskId, address attester);
    /// @notice Fewer attestations than the task's quorum.
    error TaskRegistryQuorumNotMet(uint256 taskId, uint256 attestations, uint256 quorum);
    /// @notice Only the governed dispute manager may call this.
    error TaskRegistryNotDisputeManager(address caller);
    /// @notice This verification mode's module is not set.
    error TaskRegistryModuleNotSet(uint8 mode);
    /// @notice The fee is below the model's fee, or above 2^96.
    error TaskRegistryInvalidFee(uint256 fee, uint256 modelFee);
    /// @notice The deadline is in the past or further than `maxTaskDuration` ahead.
    error TaskRegistryInvalidDeadline(uint256 deadline, uint256 now_, uint256 maxDeadline);
    /// @notice The input does not fit the model's layout (word count, mode, data hash).
    error TaskRegistryInvalidInput(uint256 modelId, uint256 words, uint256 expectedWords);
    /// @notice Inline input word `index` is not a canonical packing of values the circuit accepts: bits set
    /// above its values, or a value outside the model's `inputBits` signed range. No proof could exist.
    error TaskRegistryUnprovableInput(uint256 index, uint256 word);
    /// @notice A public signal (input or output word) is not below the field modulus.
    error TaskRegistrySignalOutOfField(uint256 index, uint256 value);
    /// @notice The callback is not a contract, or has no gas to run with.
    error TaskRegistryInvalidCallback(address callback, uint32 gasLimit);
    /// @notice The callback gas limit is above the governed cap.
    error TaskRegistryCallbackGasTooHigh(uint32 requested, uint32 cap);
    /// @notice The `Task` given does not match the commitment stored for `taskId`.
    error TaskRegistryTaskMismatch(uint256 taskId);
    /// @notice The task is not in a status that allows this call.
    error TaskRegistryWrongStatus(uint256 taskId, TaskStatus status);
    /// @notice The caller is not an eligible inference node.
    error TaskRegistryNodeNotEligible(address node);
    /// @notice The task is claimed and its claim window is still running.
    error TaskRegistryAlreadyClaimed(uint256 taskId, address node, uint256 claimExpiresAt);
    /// @notice The caller is not the node that claimed the task.
    error TaskRegistryNotClaimer(uint256 taskId, address caller, address claimer);
    /// @notice The claim window (or the deadline) passed before the result arrived.
    error TaskRegistryClaimExpired(uint256 taskId, uint256 claimExpiresAt, uint256 now_);
    /// @notice The deadline has passed: the task can only be expired.
    error TaskRegistryDeadlinePassed(uint256 taskId, uint256 deadline, uint256 now_);
    /// @notice The deadline has not passed yet.
    error TaskRegistryDeadlineNotReached(uint256 taskId, uint256 deadline, uint256 now_);
    /// @notice The output word count does not match the model's layout.
    error TaskRegistryInvalidOutputs(uint256 taskId, uint256 words, uint256 expectedWords);
    /// @notice The proof does not verify against the model's registered verification key.
    error TaskRegistryInvalidProof(uint256 taskId);
    /// @notice Not enough gas left to give the callback its full gas limit.
    error TaskRegistryInsufficientCallbackGas(uint256 taskId, uint256 gasLeft, uint256 needed);
    /// @notice Too little gas left to slash a lapsed claim: the NodeStaking calls must not fail for lack of
    /// gas, since a failure there is tolerated (and the refund goes on).
    error TaskRegistryInsufficientSlashGas(uint256 gasLeft, uint256 needed);
    /// @notice A batch is empty or larger than `MAX_BATCH`.
    error TaskRegistryInvalidBatch(uint256 size);
    /// @notice The account has no credits to withdraw.
    error TaskRegistryNoCredits(address account);
    /// @notice A governed parameter is out of range.
    error TaskRegistryInvalidParameter();
}

/// @title The task market: escrowed inference requests, served by staked nodes, settled by proof, enclave
/// signature or unchallenged attestation.
/// @notice Storage per task is one commitment word (the hash of `Task`) plus one status word. Every later call
/// passes the `Task` back (nodes take it from `TaskSubmitted`) and the registry checks it against the
/// commitment, as Chainlink Functions does.
/// @dev Invariants, NEVER to be violated: the registry's OPG balance equals the fees of open (unsettled,
/// unexpired) tasks plus all unwithdrawn credits plus the protocol fees held; a task settles (verified or expired) at most once; the
/// parts of a fee split add up to the fee.
interface ITaskRegistry is ITaskRegistryTypes {
    /// @notice Submit a task and escrow `request.fee` OPG: taken from the caller's credits (prepaid with
    /// `deposit`, or earned) when they cover it, else pulled from the caller's wallet (approval needed).
    function submitTask(TaskRequest calldata request) external returns (uint256 taskId);

    /// @notice `submitTask` in a chosen verification mode (`VerificationModes.ZK`, `OPTIMISTIC` or `TEE`), one
    /// the model allows. `submitTask` picks the strongest the model allows: ZK, else TEE, else optimistic.
    function submitTaskInMode(TaskRequest calldata request, uint8 mode) external returns (uint256 taskId);

    /// @notice `submitTask` with an EIP-2612 permit for the fee instead of a prior approval.
    function submitTaskWithPermit(
        TaskRequest calldata request,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (uint256 taskId);

    /// @notice Submit several tasks, pulling their total fee in one transfer. All or nothing.
    function submitTasks(TaskRequest[] calldata requests) external returns (uint256[] memory taskIds);

    /// @notice Optimistic mode: claim `taskId` as an eligible inference node, locking `claimCollateral` of stake
    /// until the claim window ends (ZK and TEE tasks take no claim: `TaskRegistryWrongMode`). A claim whose window passed can be taken over; its node's collateral is slashed to the
    /// treasury (never to the requester or the model owner, who can influence whether a task is provable).
    function claimTask(uint256 taskId, Task calldata task) external;

    /// @notice Submit an open ZK task's outputs with a proof, as an eligible inference node; no claim comes
    /// first (the proof is bound to the caller, so nobody can take the work of another). The registry builds
    /// the public signals from
    /// the committed input, the task binding of (chain, registry, task, caller) and `outputs`, verifies them
    /// with the protocol's Groth16 verifier against the model's registered key, and settles: fee split into
    /// credits by the shares frozen in the task, collateral released, result stored, then the capped callback.
    function submitResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata input,
        uint256[] calldata outputs,
        uint256[8] calldata proof
    ) external;

    /// @notice TEE mode: submit an open task's outputs, as an eligible inference node (no claim: the signed
    /// digest binds the caller), with the enclave's signature over
    /// `teeResultDigest(taskId, node, inputHash, onnxHash, outputs)`. Settles at once if the key is the caller's and
    /// `Active` in the enclave registry.
    function submitResultTee(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes calldata signature
    ) external;

    /// @notice Optimistic mode: post the claimed task's outputs without proof. The claim collateral stays
    /// locked as the node's bond; the challenge window opens.
    /// `attestations` are verification nodes' EIP-191 signatures (`signMessage` of the 32 bytes) of
    /// `attestationDigest(taskId, node, outputsHash)`
    /// gathered before posting: each must recover to a distinct eligible verification node other than the
    /// node, at most 16. The attester set is fixed here: nothing anyone sends during the window changes what a
    /// challenge, a finalisation or an expiry must name, so no transaction can front-run a challenge.
    function submitResultOptimistic(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        bytes[] calldata attestations
    ) external;

    /// @notice Optimistic mode: after the window, with the task's quorum of attesters, settle the posted
    /// outputs as verified (fee split with the attesters' share, collateral released, callback). Anyone.
    function finalizeResult(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external;

    /// @notice Optimistic mode: the window closed without the quorum. The node's claim collateral is slashed
    /// to the treasury, as for an abandoned claim (posting what nobody attests must not be cheaper than
    /// abandoning), and the task reopens for another node before its deadline (`TaskReopened`), or the
    /// requester is refunded in full after it. Anyone.
    function expireUnattested(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) external;

    /// @notice Dispute manager only: freeze the posted outputs of `taskId` under a challenge (within the window).
    /// The task records the calling manager: only it settles the dispute (`acceptDisputed`, `rejectDisputed`),
    /// so a later `setVerificationModules` never strands a dispute in progress.
    function openDispute(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        address challenger
    ) external returns (address node);

    /// @notice The dispute manager that opened the dispute only: the disputed outputs were right: settle them
    /// as verified.
    function acceptDisputed(
        uint256 taskId,
        Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external;

    /// @notice The dispute manager that opened the dispute only: reject the disputed outputs and refund the
    /// requester. NodeWrong slashes the
    /// node's collateral (the governed beneficiary share to `challenger`; the dispute manager slashes the
    /// attesters); Undecided slashes nobody and releases the node's collateral.
    function rejectDisputed(
        uint256 taskId,
        Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        DisputeOutcome outcome,
        address challenger
    ) external;

    /// @notice Several `submitResult`s in one transaction, their proofs checked as one batch when they share a
    /// key (N + 3 pairings instead of 4N). A task no longer open is skipped (`TaskResultSkipped`); an invalid
    /// proof reverts the whole batch.
    function submitResults(ResultSubmission[] calldata submissions) external;

    /// @notice Prepay `amount` OPG into the caller's credits: later `submitTask`s take their fee from there,
    /// which saves the token transfer per task. Withdraw the rest any time with `withdrawCredits`.
    function deposit(uint256 amount) external;

    /// @notice After the deadline, with no verified result: refund the requester in full and slash the
    /// claimer's collateral (if any) to the treasury. The refund never depends on the slash succeeding.
    /// Anyone may call.
    function expire(uint256 taskId, Task calldata task) external;

    /// @notice Pay the caller's credits (node fees, royalties, prepaid fees) to `to`. Touches only the
    /// registry's own books, so it works whatever roles the registry holds on NodeStaking.
    function withdrawCredits(address to) external returns (uint256 amount);

    /// @notice Release the collateral of `node`'s verified claims to its free stake. Settlement records the
    /// release and leaves the staking call to this function or the node's next claim, which keeps
    /// `submitResult` within its gas budget. Anyone may call.
    function releaseCollateral(address node) external returns (uint256 amount);

    /// @notice Pay the protocol's share of the fees that `nodes` settled (held in each node's account) to the
    /// treasury. Anyone may call, with up to `MAX_BATCH` nodes.
    function withdrawProtocolFees(address[] calldata nodes) external returns (uint256 amount);

    /// @notice The status of `taskId`.
    function taskStatus(uint256 taskId) external view returns (TaskStatus);

    /// @notice The claimer of `taskId` and when its claim window ends (zero if unclaimed).
    function claimOf(uint256 taskId) external view returns (address node, uint256 claimExpiresAt);

    /// @notice Whether `result` is the verified result of `taskId`: the node that settled it, the block it
    /// settled in and its outputs, as its `TaskVerified` event says. The chain keeps one word per verified
    /// task (their hash), so results are read from the event and checked here.
    function isVerifiedResult(uint256 taskId, Result calldata result) external view returns (bool);

    /// @notice Credits `account` can withdraw.
    function creditsOf(address account) external view returns (uint256);

    /// @notice Collateral of `node`'s verified claims not yet released to its free stake.
    function releasableCollateralOf(address node) external view returns (uint256);

    /// @notice The protocol's share of the fees `node` settled, not yet paid to the treasury.
    function protocolFeesOf(address node) external view returns (uint256);

    /// @notice The binding public signal a proof for `taskId` by `node` must carry.
    function taskBinding(uint256 taskId, address node) external view returns (uint256);

    /// @notice What a TEE enclave signs for `taskId` settled by `node`.
    /// `onnxHash` is the model's registered ONNX hash: the enclave signs the hash of the model bytes it ran,
    /// so a host cannot feed it another model's bytes for this task.
    function teeResultDigest(
        uint256 taskId,
        address node,
        bytes32 inputHash,
        bytes32 onnxHash,
        uint256[] calldata outputs
    ) external view returns (bytes32);

    /// @notice What a verification node signs to attest, off chain, the outputs (keccak256 of their packed
    /// words: `outputsHash`) that `node` is about to post for `taskId`.
    function attestationDigest(
        uint256 taskId,
        address node,
        bytes32 outputsHash
    ) external view returns (bytes32);

    /// @notice Optimistic mode: the node that posted outputs for `taskId` and when its challenge window ends
    /// (or, while disputed, when it ended).
    function pendingOf(uint256 taskId) external view returns (address node, uint256 windowEnd);

    /// @notice The commitment of `task` as stored at submission.
    function hashTask(Task calldata task) external pure returns (bytes32);

    /// @notice Number of tasks submitted so far (the last id).
    function taskCount() external view returns (uint256);

    /// @notice The model registry tasks are priced and checked against.
    function models() external view returns (IModelRegistry);
}
