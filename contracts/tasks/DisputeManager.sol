// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ITaskRegistry} from "../interfaces/ITaskRegistry.sol";
import {INodeStaking} from "../interfaces/INodeStaking.sol";
import {Groth16} from "../libraries/Groth16.sol";

/// @title DisputeManager
/// @notice The dispute game of optimistic tasks. A staked verification node challenges a posted result
/// within its window, putting up `challengeBond`. A model with a circuit settles the dispute by proof: the
/// node has `responseWindow` to submit a Groth16 proof of exactly the outputs it posted (valid: the bond pays
/// the node, the result is verified; none in time: the node's collateral and the attesters' stake are
/// slashed, the requester refunded, the bond returned, and the challenger gets the governed beneficiary share
/// of the node's slash; the attesters' go to the treasury). Anyone may answer with the proof, so attesters of
/// a correct result need not depend on the node to answer. A model without a circuit settles it by a stake-weighted vote of verification nodes over
/// `voteWindow`: the majority side wins if at least `voteQuorumStake` voted, each voter on the losing side
/// loses `voterSlash`; a vote without quorum or tied is Undecided: the requester is refunded, nobody is
/// slashed, and the bond goes to the treasury (nobody profits from a dispute nobody could decide).
/// The owner is the governance timelock.
/// @dev Invariant, NEVER to be violated: the contract's OPG balance equals the bonds of open disputes.
contract DisputeManager is Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Most voters per dispute (bounds the loop that slashes the losing side). Once it is reached, a
    /// voter with more stake than the smallest counted voter takes that voter's place, so the MAX_VOTERS largest
    /// stakes that voted decide (a swarm of minimum-stake identities cannot fill the list first).
    uint256 public constant MAX_VOTERS = 32;
    bytes32 public constant SLASH_REASON_LOST_VOTE = keccak256("opg.dispute.lost-vote");
    bytes32 public constant SLASH_REASON_WRONG_ATTESTATION = keccak256("opg.task.wrong-attestation");

    enum DisputeState {
        None,
        Open,
        Resolved
    }

    /// @dev A voter's ballot: its side (1 node right, 2 node wrong, 3 displaced by a larger stake) and the
    /// weight it added to that side.
    struct Ballot {
        uint8 side;
        uint128 weight;
    }

    struct Dispute {
        address challenger;
        uint96 bond;
        address node;
        uint64 deadline;
        bool circuit;
        DisputeState state;
        uint128 weightFor;
        uint128 weightAgainst;
    }

    event DisputeOpened(
        uint256 indexed taskId,
        address indexed challenger,
        address indexed node,
        uint256 bond,
        uint256 deadline,
        bool circuit
    );
    event DisputeVoted(uint256 indexed taskId, address indexed voter, bool nodeRight, uint256 weight);
    /// @notice The voter list was full: `voter`, the smallest stake counted, made room for a larger one; its
    /// `weight` no longer counts, and it is neither slashed nor able to vote again on this dispute.
    event DisputeVoteDisplaced(uint256 indexed taskId, address indexed voter, uint256 weight);
    event DisputeResolved(uint256 indexed taskId, ITaskRegistry.DisputeOutcome outcome, address bondTo);
    event VoterSlashed(uint256 indexed taskId, address indexed voter, uint256 amount);
    /// @notice `attester` attested outputs of `taskId` that the dispute proved wrong and lost `amount`.
    event AttesterSlashed(uint256 indexed taskId, address indexed attester, uint256 amount);
    event AttesterSlashSet(uint96 amount);
    event DisputeParametersSet(
        uint32 responseWindow,
        uint32 voteWindow,
        uint96 challengeBond,
        uint96 voterSlash,
        uint128 voteQuorumStake
    );
    event TreasurySet(address treasury);

    error DisputeManagerNotVerifier(address caller);
    error DisputeManagerSelfChallenge(uint256 taskId);
    error DisputeManagerWrongState(uint256 taskId, DisputeState state);
    /// @notice The dispute is settled the other way (by proof for a model with a circuit, by vote without).
    error DisputeManagerWrongKind(uint256 taskId, bool circuit);
    /// @notice The response or vote window is still open (resolution) or has closed (response, vote).
    error DisputeManagerWindow(uint256 taskId, uint256 deadline, uint256 now_);
    error DisputeManagerInputMismatch(uint256 taskId);
    error DisputeManagerInvalidProof(uint256 taskId);
    error DisputeManagerCannotVote(uint256 taskId, address voter);
    error DisputeManagerInvalidParameter();

    ITaskRegistry public immutable tasks;
    IERC20 public immutable token;
    INodeStaking public immutable staking;

    uint32 public responseWindow;
    uint32 public voteWindow;
    uint96 public challengeBond;
    uint96 public voterSlash;
    uint128 public voteQuorumStake;
    address public treasury;
    /// @notice Stake each attester of outputs a dispute proved wrong loses (to the treasury whole: were the
    /// challenger paid a share of each attester's slash, a node that stays silent on a correct result and a
    /// challenger it colludes with would gain from two or more honest attesters).
    uint96 public attesterSlash;

    mapping(uint256 taskId => Dispute dispute) private _disputes;
    mapping(uint256 taskId => address[] voters) private _voters;
    mapping(uint256 taskId => mapping(address voter => Ballot ballot)) private _ballots;

    constructor(
        ITaskRegistry tasks_,
        IERC20 token_,
        INodeStaking staking_,
        address owner_,
        address treasury_
    ) Ownable(owner_) {
        tasks = tasks_;
        token = token_;
        staking = staking_;
        _setTreasury(treasury_);
        _setDisputeParameters(30 minutes, 30 minutes, 100 ether, 100 ether, 1 ether);
        _setAttesterSlash(100 ether);
    }

    // ---------------------------------------------------------------- challengers

    /// @notice Challenge the posted outputs of optimistic task `taskId` (their keccak256 `outputsHash`, with
    /// the attesters so far) as an eligible verification node, paying `challengeBond` (approval needed).
    function challenge(
        uint256 taskId,
        ITaskRegistry.Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) external nonReentrant {
        if (!staking.isEligible(msg.sender, INodeStaking.Role.Verification)) {
            revert DisputeManagerNotVerifier(msg.sender);
        }
        address node = tasks.openDispute(taskId, task, outputsHash, attesters, msg.sender);
        if (node == msg.sender) revert DisputeManagerSelfChallenge(taskId);
        bool circuit = task.verificationKey != address(0);
        uint256 deadline = block.timestamp + (circuit ? responseWindow : voteWindow);
        // At least the task's fee: an undecided dispute refunds the requester, so a requester challenging
        // with a bond below its fee would get the posted output and its fee back for less than the fee.
        // Safe cast: fees fit 96 bits (TaskRegistry).
        uint96 bond = task.fee > challengeBond ? uint96(task.fee) : challengeBond;
        _disputes[taskId] = Dispute({
            challenger: msg.sender,
            bond: bond,
            node: node,
            // Safe cast: timestamps fit 64 bits.
            deadline: uint64(deadline),
            circuit: circuit,
            state: DisputeState.Open,
            weightFor: 0,
            weightAgainst: 0
        });
        emit DisputeOpened(taskId, msg.sender, node, bond, deadline, circuit);
        token.safeTransferFrom(msg.sender, address(this), bond);
    }

    // ---------------------------------------------------------------- models with a circuit

    /// @notice Answer a dispute with a Groth16 proof that the posted `outputs` are the model's on the task's
    /// input, bound to the task and the node that posted them. Anyone may send the node's proof.
    function respond(
        uint256 taskId,
        ITaskRegistry.Task calldata task,
        uint256[] calldata input,
        uint256[] calldata outputs,
        address[] calldata attesters,
        uint256[8] calldata proof
    ) external nonReentrant {
        Dispute storage d = _open(taskId, true);
        if (block.timestamp > d.deadline) revert DisputeManagerWindow(taskId, d.deadline, block.timestamp);
        if (keccak256(abi.encodePacked(input)) != task.inputHash) revert DisputeManagerInputMismatch(taskId);
        uint256 outs = outputs.length;
        uint256[] memory signals = new uint256[](outs + input.length + 1);
        // Outputs were checked to be field elements when they were posted, inputs at submission.
        for (uint256 i = 0; i < outs; ++i) signals[i] = outputs[i];
        for (uint256 i = 0; i < input.length; ++i) signals[outs + i] = input[i];
        signals[signals.length - 1] = tasks.taskBinding(taskId, d.node);
        if (!Groth16.verify(task.verificationKey, proof, signals)) revert DisputeManagerInvalidProof(taskId);
        _finish(taskId, d, ITaskRegistry.DisputeOutcome.NodeRight, d.node);
        tasks.acceptDisputed(taskId, task, outputs, attesters);
        token.safeTransfer(d.node, d.bond);
    }

    /// @notice After the response window with no valid proof: the posted outputs are rejected, the node and
    /// the attesters slashed (see `ITaskRegistry.rejectDisputed`), the bond returned. Anyone may call.
    function timeout(
        uint256 taskId,
        ITaskRegistry.Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) external nonReentrant {
        Dispute storage d = _open(taskId, true);
        if (block.timestamp <= d.deadline) revert DisputeManagerWindow(taskId, d.deadline, block.timestamp);
        address challenger = d.challenger;
        _finish(taskId, d, ITaskRegistry.DisputeOutcome.NodeWrong, challenger);
        tasks.rejectDisputed(
            taskId,
            task,
            outputsHash,
            attesters,
            ITaskRegistry.DisputeOutcome.NodeWrong,
            challenger
        );
        _slashAttesters(taskId, attesters);
        token.safeTransfer(challenger, d.bond);
    }

    // ---------------------------------------------------------------- models without a circuit

    /// @notice Vote on a dispute over a model without a circuit, as an eligible verification node other than
    /// the node and the challenger, with the weight of your free stake.
    function vote(uint256 taskId, bool nodeRight) external nonReentrant {
        Dispute storage d = _open(taskId, false);
        if (block.timestamp > d.deadline) revert DisputeManagerWindow(taskId, d.deadline, block.timestamp);
        bool ok =
            msg.sender != d.node &&
                msg.sender != d.challenger &&
                _ballots[taskId][msg.sender].side == 0 &&
                staking.isEligible(msg.sender, INodeStaking.Role.Verification);
        if (!ok) revert DisputeManagerCannotVote(taskId, msg.sender);
        // Safe cast: a weight is bounded by the OPG supply (1e27 < 2^128).
        uint128 weight = uint128(staking.freeStakeOf(msg.sender));
        address[] storage voters = _voters[taskId];
        if (voters.length < MAX_VOTERS) {
            voters.push(msg.sender);
        } else {
            (uint256 index, address smallest, Ballot memory least) = _smallestBallot(taskId, voters);
            if (weight <= least.weight) revert DisputeManagerCannotVote(taskId, msg.sender);
            if (least.side == 1) d.weightFor -= least.weight;
            else d.weightAgainst -= least.weight;
            _ballots[taskId][smallest].side = 3;
            voters[index] = msg.sender;
            emit DisputeVoteDisplaced(taskId, smallest, least.weight);
        }
        _ballots[taskId][msg.sender] = Ballot({side: nodeRight ? 1 : 2, weight: weight});
        if (nodeRight) d.weightFor += weight;
        else d.weightAgainst += weight;
        emit DisputeVoted(taskId, msg.sender, nodeRight, weight);
    }

    /// @notice After the vote window: settle by the vote (see the contract's notice). Anyone may call.
    function resolveVote(
        uint256 taskId,
        ITaskRegistry.Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external nonReentrant {
        Dispute storage d = _open(taskId, false);
        if (block.timestamp <= d.deadline) revert DisputeManagerWindow(taskId, d.deadline, block.timestamp);
        uint256 weightFor = d.weightFor;
        uint256 weightAgainst = d.weightAgainst;
        ITaskRegistry.DisputeOutcome outcome = ITaskRegistry.DisputeOutcome.Undecided;
        if (weightFor + weightAgainst >= voteQuorumStake && weightFor != weightAgainst) {
            outcome =
                weightFor > weightAgainst
                    ? ITaskRegistry.DisputeOutcome.NodeRight
                    : ITaskRegistry.DisputeOutcome.NodeWrong;
        }
        address bondTo =
            outcome == ITaskRegistry.DisputeOutcome.NodeRight
                ? d.node
                : (outcome == ITaskRegistry.DisputeOutcome.NodeWrong ? d.challenger : treasury);
        address challenger = d.challenger;
        _finish(taskId, d, outcome, bondTo);
        if (outcome == ITaskRegistry.DisputeOutcome.NodeRight) {
            tasks.acceptDisputed(taskId, task, outputs, attesters);
        } else {
            bytes32 outputsHash = keccak256(abi.encodePacked(outputs));
            tasks.rejectDisputed(taskId, task, outputsHash, attesters, outcome, challenger);
            if (outcome == ITaskRegistry.DisputeOutcome.NodeWrong) _slashAttesters(taskId, attesters);
        }
        if (outcome != ITaskRegistry.DisputeOutcome.Undecided) {
            _slashLosers(taskId, outcome == ITaskRegistry.DisputeOutcome.NodeRight ? 2 : 1);
        }
        token.safeTransfer(bondTo, d.bond);
    }

    // ---------------------------------------------------------------- views

    /// @notice The dispute over `taskId`, if any.
    function disputeOf(uint256 taskId) external view returns (Dispute memory) {
        return _disputes[taskId];
    }

    /// @notice Who voted on the dispute over `taskId`, in order.
    function votersOf(uint256 taskId) external view returns (address[] memory) {
        return _voters[taskId];
    }

    // ---------------------------------------------------------------- governance

    /// @notice Set the response window (s), the vote window (s), the challenge bond, the stake each losing
    /// voter loses, and the least total stake that must vote for a vote to decide.
    function setDisputeParameters(
        uint32 responseWindow_,
        uint32 voteWindow_,
        uint96 challengeBond_,
        uint96 voterSlash_,
        uint128 voteQuorumStake_
    ) external onlyOwner {
        _setDisputeParameters(responseWindow_, voteWindow_, challengeBond_, voterSlash_, voteQuorumStake_);
    }

    /// @notice Set the stake each attester of outputs a dispute proved wrong loses.
    function setAttesterSlash(uint96 amount) external onlyOwner {
        _setAttesterSlash(amount);
    }

    /// @notice Set where the bond of an undecided dispute goes.
    function setTreasury(address treasury_) external onlyOwner {
        _setTreasury(treasury_);
    }

    // ---------------------------------------------------------------- internals

    function _open(uint256 taskId, bool circuit) private view returns (Dispute storage d) {
        d = _disputes[taskId];
        if (d.state != DisputeState.Open) revert DisputeManagerWrongState(taskId, d.state);
        if (d.circuit != circuit) revert DisputeManagerWrongKind(taskId, d.circuit);
    }

    function _finish(
        uint256 taskId,
        Dispute storage d,
        ITaskRegistry.DisputeOutcome outcome,
        address bondTo
    ) private {
        d.state = DisputeState.Resolved;
        emit DisputeResolved(taskId, outcome, bondTo);
    }

    /// @dev Slashes every voter on `losingSide` (to the treasury: no voter gains from another's loss, so a
    /// majority has no reason to vote against the truth to collect). At most MAX_VOTERS iterations.
    function _slashLosers(uint256 taskId, uint8 losingSide) private {
        uint256 amount = voterSlash;
        if (amount == 0) return;
        address[] storage voters = _voters[taskId];
        for (uint256 i = 0; i < voters.length; ++i) {
            address voter = voters[i];
            if (_ballots[taskId][voter].side != losingSide) continue;
            emit VoterSlashed(taskId, voter, amount);
            try staking.slash(voter, amount, SLASH_REASON_LOST_VOTE, address(0)) {} catch {}
        }
    }

    /// @dev The counted voter with the least weight (the first of equals) and its place in `voters`. At most
    /// MAX_VOTERS iterations.
    function _smallestBallot(
        uint256 taskId,
        address[] storage voters
    ) private view returns (uint256 index, address smallest, Ballot memory least) {
        least.weight = type(uint128).max;
        for (uint256 i = 0; i < voters.length; ++i) {
            Ballot memory b = _ballots[taskId][voters[i]];
            if (b.weight < least.weight) (index, smallest, least) = (i, voters[i], b);
        }
    }

    function _setDisputeParameters(
        uint32 responseWindow_,
        uint32 voteWindow_,
        uint96 challengeBond_,
        uint96 voterSlash_,
        uint128 voteQuorumStake_
    ) private {
        bool ok =
            responseWindow_ != 0 &&
                voteWindow_ != 0 &&
                responseWindow_ <= 30 days &&
                voteWindow_ <= 30 days &&
                challengeBond_ != 0 &&
                voteQuorumStake_ != 0;
        if (!ok) revert DisputeManagerInvalidParameter();
        responseWindow = responseWindow_;
        voteWindow = voteWindow_;
        challengeBond = challengeBond_;
        voterSlash = voterSlash_;
        voteQuorumStake = voteQuorumStake_;
        emit DisputeParametersSet(
            responseWindow_,
            voteWindow_,
            challengeBond_,
            voterSlash_,
            voteQuorumStake_
        );
    }

    /// @dev Slashes each attester of outputs proved wrong (`attesters` were checked against the task's
    /// pending word by the registry in the same call). At most TaskRegistry.MAX_ATTESTERS iterations; a
    /// failing slash is skipped, never blocking the refund.
    function _slashAttesters(uint256 taskId, address[] calldata attesters) private {
        uint256 amount = attesterSlash;
        if (amount == 0) return;
        for (uint256 i = 0; i < attesters.length; ++i) {
            emit AttesterSlashed(taskId, attesters[i], amount);
            try staking.slash(attesters[i], amount, SLASH_REASON_WRONG_ATTESTATION, address(0)) {} catch {}
        }
    }

    function _setAttesterSlash(uint96 amount) private {
        attesterSlash = amount;
        emit AttesterSlashSet(amount);
    }

    function _setTreasury(address treasury_) private {
        if (treasury_ == address(0)) revert DisputeManagerInvalidParameter();
        treasury = treasury_;
        emit TreasurySet(treasury_);
    }
}
