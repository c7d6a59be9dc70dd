// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ITaskRegistry, ITaskRegistryTypes} from "../interfaces/ITaskRegistry.sol";
import {INodeStaking} from "../interfaces/INodeStaking.sol";
import {Groth16} from "../libraries/Groth16.sol";

/// @title DisputeManager
/// @notice The dispute game of optimistic tasks. Whoever says posted outputs are wrong carries the burden of
/// showing it; nobody's silence is ever a verdict.
///
/// A model with a circuit: a staked verification node challenges with evidence, a Groth16 proof of the
/// model's outputs on the task's input bound to the task and to itself (`challengeWithProof`), which must
/// differ from the posted outputs. The circuit is a function of its input, so the posted outputs are proved
/// wrong in that one transaction: the node's collateral is slashed (the challenger gets the governed
/// beneficiary share), each attester loses `attesterSlash` to the treasury, the requester is refunded. A
/// challenge of correct outputs cannot be made at all (no proof of other outputs exists), so no burst of
/// challenges, no silent node and no prover's capacity can cost an honest node or attester anything, and
/// there is no open dispute for a module swap to strand.
///
/// A model without a circuit: a challenge (`challenge`, with a bond of `challengeBond` or the task's fee if
/// higher) opens a stake-weighted vote of verification nodes over `voteWindow`. Every eligible staker may
/// vote (no ballot cap: tallies, not lists), with the weight of its free stake, provided it added no stake
/// since the dispute opened (weights are as staked at the opening). The challenger's own stake counts
/// against the node. After the window, if at least `voteQuorumStake` voted, the posted outputs are rejected
/// when more weight says so and stand otherwise: the challenger carries the burden, so a tie is the node's
/// (a challenger who is also the requester cannot engineer a tie to get the output and its fee back).
/// Each ballot is settled lazily (`settleBallot`): a losing ballot loses `voterSlashBps` of its weight (the
/// governed beneficiary share comes here and is paid to the winning side, the rest goes to the treasury); a
/// winning ballot is paid, pro rata to its weight, the losers' slashes and, when the node was right, the
/// challenger's bond. Slash and reward are linear in weight, so splitting a stake across identities gains
/// nothing. An undecided vote (less weight than the quorum) refunds the requester, releases the node's
/// collateral, returns the bond and slashes nobody.
///
/// Every dispute keeps the parameters it opened with, and the task registry lets only the manager that
/// opened a dispute settle it. The owner is the governance timelock.
/// @dev Invariant, NEVER to be violated: the contract's OPG balance equals the bonds of open disputes plus
/// the rewards owed to winning ballots not yet paid, plus rounding dust (below one wei per ballot and per
/// addition to a dispute's reward).
contract DisputeManager is Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 private constant _BPS = 10_000;
    /// @dev Fixed-point scale of `rewardPerWeight`. Weights are OPG wei (at most the supply, 1e27), so each
    /// addition to the reward per weight loses less than totalWeight / 1e27 < 1 wei to rounding; products are
    /// taken with Math.mulDiv (512-bit intermediate), so nothing overflows.
    uint256 private constant _ACC = 1e27;
    uint8 private constant _NODE_RIGHT = 1;
    uint8 private constant _NODE_WRONG = 2;
    bytes32 public constant SLASH_REASON_LOST_VOTE = keccak256("opg.dispute.lost-vote");
    bytes32 public constant SLASH_REASON_WRONG_ATTESTATION = keccak256("opg.task.wrong-attestation");

    enum DisputeState {
        None,
        Open,
        Resolved
    }

    /// @dev A ballot: its side (1 node right, 2 node wrong), whether it was settled, its weight (free stake
    /// when cast), and the reward paid to it so far.
    struct Ballot {
        uint8 side;
        bool settled;
        uint128 weight;
        uint96 paid;
    }

    /// @dev One dispute, with the parameters it opened with.
    struct Dispute {
        address challenger;
        uint64 deadline;
        DisputeState state;
        ITaskRegistryTypes.DisputeOutcome outcome;
        bool circuit;
        address node;
        uint96 bond;
        uint64 openedAt;
        uint16 voterSlashBps;
        uint96 attesterSlash;
        uint128 weightFor;
        uint128 weightAgainst;
        /// @dev The least total weight for a decision, as governed when the dispute opened.
        uint128 quorum;
        /// @dev Reward per unit of winning weight, scaled by 1e27; grows as losing ballots are slashed.
        uint256 rewardPerWeight;
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
    event DisputeResolved(uint256 indexed taskId, ITaskRegistryTypes.DisputeOutcome outcome, address bondTo);
    /// @notice `voter`'s ballot on `taskId` was settled: `slashed` taken from its stake (losing side), `paid`
    /// to it now (winning side; a winning ballot may be settled again as more losers are slashed).
    event BallotSettled(uint256 indexed taskId, address indexed voter, uint256 slashed, uint256 paid);
    /// @notice `attester` attested outputs of `taskId` that the dispute proved wrong and lost `amount`.
    event AttesterSlashed(uint256 indexed taskId, address indexed attester, uint256 amount);
    event AttesterSlashSet(uint96 amount);
    event DisputeParametersSet(
        uint32 voteWindow,
        uint96 challengeBond,
        uint16 voterSlashBps,
        uint128 voteQuorumStake
    );

    error DisputeManagerNotVerifier(address caller);
    error DisputeManagerSelfChallenge(uint256 taskId);
    error DisputeManagerWrongState(uint256 taskId, DisputeState state);
    /// @notice The dispute is settled the other way (by proof for a model with a circuit, by vote without).
    error DisputeManagerWrongKind(uint256 taskId, bool circuit);
    /// @notice The vote window is still open (resolution) or has closed (vote).
    error DisputeManagerWindow(uint256 taskId, uint256 deadline, uint256 now_);
    error DisputeManagerInputMismatch(uint256 taskId);
    error DisputeManagerInvalidProof(uint256 taskId);
    /// @notice The proof is of the posted outputs themselves: it shows them right, not wrong.
    error DisputeManagerSameOutputs(uint256 taskId);
    /// @notice Not an eligible verification node, the challenger, already voted, or staked since the opening.
    error DisputeManagerCannotVote(uint256 taskId, address voter);
    error DisputeManagerNoBallot(uint256 taskId, address voter);
    error DisputeManagerInvalidParameter();

    ITaskRegistry public immutable tasks;
    IERC20 public immutable token;
    INodeStaking public immutable staking;

    uint32 public voteWindow;
    uint96 public challengeBond;
    /// @notice Share of its weight a losing ballot loses, in bps.
    uint16 public voterSlashBps;
    uint128 public voteQuorumStake;
    /// @notice Stake each attester of outputs a dispute proved wrong loses (to the treasury whole).
    uint96 public attesterSlash;

    mapping(uint256 taskId => Dispute dispute) private _disputes;
    mapping(uint256 taskId => mapping(address voter => Ballot ballot)) private _ballots;

    constructor(ITaskRegistry tasks_, IERC20 token_, INodeStaking staking_, address owner_) Ownable(owner_) {
        tasks = tasks_;
        token = token_;
        staking = staking_;
        _setDisputeParameters(30 minutes, 100 ether, 1000, 1 ether);
        _setAttesterSlash(100 ether);
    }

    // ---------------------------------------------------------------- models with a circuit

    /// @notice Prove the posted outputs of optimistic task `taskId` (keccak256 of their packed words:
    /// `outputsHash`; `attesters` as posted) wrong: `outputs` are the model's outputs on the task's `input`,
    /// proved by `proof` bound to the task and to the caller, an eligible verification node. Settles the
    /// dispute at once (see the contract's notice). No bond: the proof is the evidence.
    function challengeWithProof(
        uint256 taskId,
        ITaskRegistryTypes.Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters,
        uint256[] calldata input,
        uint256[] calldata outputs,
        uint256[8] calldata proof
    ) external nonReentrant {
        _checkChallenger();
        _checkDisproof(taskId, task, outputsHash, input, outputs, proof);
        address node = tasks.openDispute(taskId, task, outputsHash, attesters, msg.sender);
        if (node == msg.sender) revert DisputeManagerSelfChallenge(taskId);
        Dispute storage d = _disputes[taskId];
        d.challenger = msg.sender;
        // Safe casts: timestamps fit 64 bits.
        d.deadline = uint64(block.timestamp);
        d.openedAt = uint64(block.timestamp);
        d.state = DisputeState.Resolved;
        d.outcome = ITaskRegistryTypes.DisputeOutcome.NodeWrong;
        d.circuit = true;
        d.node = node;
        uint96 slash = attesterSlash;
        d.attesterSlash = slash;
        emit DisputeOpened(taskId, msg.sender, node, 0, block.timestamp, true);
        emit DisputeResolved(taskId, ITaskRegistryTypes.DisputeOutcome.NodeWrong, msg.sender);
        tasks.rejectDisputed(
            taskId,
            task,
            outputsHash,
            attesters,
            ITaskRegistryTypes.DisputeOutcome.NodeWrong,
            msg.sender
        );
        _slashAttesters(taskId, attesters, slash);
    }

    /// @dev Reverts unless `proof` shows `outputs`, other than the posted ones, to be the model's outputs on the
    /// task's `input`, bound to the task and the caller.
    function _checkDisproof(
        uint256 taskId,
        ITaskRegistryTypes.Task calldata task,
        bytes32 outputsHash,
        uint256[] calldata input,
        uint256[] calldata outputs,
        uint256[8] calldata proof
    ) private view {
        if (task.verificationKey == address(0)) revert DisputeManagerWrongKind(taskId, false);
        if (keccak256(abi.encodePacked(outputs)) == outputsHash) revert DisputeManagerSameOutputs(taskId);
        if (keccak256(abi.encodePacked(input)) != task.inputHash) revert DisputeManagerInputMismatch(taskId);
        uint256 outs = outputs.length;
        uint256[] memory signals = new uint256[](outs + input.length + 1);
        for (uint256 i = 0; i < outs; ++i) signals[i] = outputs[i];
        for (uint256 i = 0; i < input.length; ++i) signals[outs + i] = input[i];
        signals[signals.length - 1] = tasks.taskBinding(taskId, msg.sender);
        // Groth16.verify range-checks every signal and the key's length against the signal count.
        if (!Groth16.verify(task.verificationKey, proof, signals)) revert DisputeManagerInvalidProof(taskId);
    }

    // ---------------------------------------------------------------- models without a circuit

    /// @notice Challenge the posted outputs of optimistic task `taskId` of a model without a circuit (their
    /// keccak256 `outputsHash`, with the attesters as posted) as an eligible verification node, paying the
    /// bond (approval needed). Opens the vote; the caller's free stake is its ballot against the node.
    function challenge(
        uint256 taskId,
        ITaskRegistryTypes.Task calldata task,
        bytes32 outputsHash,
        address[] calldata attesters
    ) external nonReentrant {
        _checkChallenger();
        if (task.verificationKey != address(0)) revert DisputeManagerWrongKind(taskId, true);
        address node = tasks.openDispute(taskId, task, outputsHash, attesters, msg.sender);
        if (node == msg.sender) revert DisputeManagerSelfChallenge(taskId);
        uint256 deadline = block.timestamp + voteWindow;
        // At least the task's fee: an undecided dispute refunds the requester, so the bond must not be
        // cheaper than the fee for a requester who would challenge to see the output for free.
        // Safe cast: fees fit 96 bits (TaskRegistry).
        uint96 bond = task.fee > challengeBond ? uint96(task.fee) : challengeBond;
        // Safe cast: a weight is bounded by the OPG supply (1e27 < 2^128).
        uint128 weight = uint128(staking.freeStakeOf(msg.sender));
        _disputes[taskId] = Dispute({
            challenger: msg.sender,
            // Safe casts: timestamps fit 64 bits.
            deadline: uint64(deadline),
            state: DisputeState.Open,
            outcome: ITaskRegistryTypes.DisputeOutcome.Undecided,
            circuit: false,
            node: node,
            bond: bond,
            openedAt: uint64(block.timestamp),
            voterSlashBps: voterSlashBps,
            attesterSlash: attesterSlash,
            weightFor: 0,
            weightAgainst: weight,
            quorum: voteQuorumStake,
            rewardPerWeight: 0
        });
        _ballots[taskId][msg.sender] = Ballot({side: _NODE_WRONG, settled: false, weight: weight, paid: 0});
        emit DisputeOpened(taskId, msg.sender, node, bond, deadline, false);
        emit DisputeVoted(taskId, msg.sender, false, weight);
        token.safeTransferFrom(msg.sender, address(this), bond);
    }

    /// @notice Vote on a dispute over a model without a circuit, as an eligible verification node that has
    /// not voted on it and added no stake since it opened, with the weight of your free stake.
    function vote(uint256 taskId, bool nodeRight) external nonReentrant {
        Dispute storage d = _open(taskId);
        if (block.timestamp > d.deadline) revert DisputeManagerWindow(taskId, d.deadline, block.timestamp);
        Ballot storage b = _ballots[taskId][msg.sender];
        bool ok =
            b.side == 0 &&
                staking.isEligible(msg.sender, INodeStaking.Role.Verification) &&
                staking.lastStakedAt(msg.sender) < d.openedAt;
        if (!ok) revert DisputeManagerCannotVote(taskId, msg.sender);
        // Safe cast: a weight is bounded by the OPG supply (1e27 < 2^128).
        uint128 weight = uint128(staking.freeStakeOf(msg.sender));
        b.side = nodeRight ? _NODE_RIGHT : _NODE_WRONG;
        b.weight = weight;
        if (nodeRight) d.weightFor += weight;
        else d.weightAgainst += weight;
        emit DisputeVoted(taskId, msg.sender, nodeRight, weight);
    }

    /// @notice After the vote window: settle the task by the vote (see the contract's notice). Anyone may call.
    function resolveVote(
        uint256 taskId,
        ITaskRegistryTypes.Task calldata task,
        uint256[] calldata outputs,
        address[] calldata attesters
    ) external nonReentrant {
        Dispute storage d = _open(taskId);
        if (block.timestamp <= d.deadline) revert DisputeManagerWindow(taskId, d.deadline, block.timestamp);
        uint256 weightFor = d.weightFor;
        uint256 weightAgainst = d.weightAgainst;
        ITaskRegistryTypes.DisputeOutcome outcome = ITaskRegistryTypes.DisputeOutcome.Undecided;
        if (weightFor + weightAgainst >= d.quorum) {
            outcome =
                weightAgainst > weightFor
                    ? ITaskRegistryTypes.DisputeOutcome.NodeWrong
                    : ITaskRegistryTypes.DisputeOutcome.NodeRight;
        }
        d.state = DisputeState.Resolved;
        d.outcome = outcome;
        address challenger = d.challenger;
        uint256 bond = d.bond;
        if (outcome == ITaskRegistryTypes.DisputeOutcome.NodeRight) {
            // The bond is the winning ballots' reward (weightFor >= weightAgainst, and the challenger's weight
            // is non-zero, so weightFor > 0).
            d.rewardPerWeight = Math.mulDiv(bond, _ACC, weightFor);
            emit DisputeResolved(taskId, outcome, address(this));
            tasks.acceptDisputed(taskId, task, outputs, attesters);
        } else {
            emit DisputeResolved(taskId, outcome, challenger);
            tasks.rejectDisputed(
                taskId,
                task,
                keccak256(abi.encodePacked(outputs)),
                attesters,
                outcome,
                challenger
            );
            if (outcome == ITaskRegistryTypes.DisputeOutcome.NodeWrong)
                _slashAttesters(taskId, attesters, d.attesterSlash);
            token.safeTransfer(challenger, bond);
        }
    }

    /// @notice Settle `voter`'s ballot on a resolved vote: a losing ballot is slashed `voterSlashBps` of its
    /// weight (once); a winning ballot is paid its share of what the losers and the bond have brought so far
    /// (call again after more losers are settled). An undecided vote settles every ballot with nothing
    /// moved. Anyone may call; the reward always goes to the voter.
    function settleBallot(
        uint256 taskId,
        address voter
    ) external nonReentrant returns (uint256 slashed, uint256 paid) {
        Dispute storage d = _disputes[taskId];
        if (d.state != DisputeState.Resolved || d.circuit) revert DisputeManagerWrongState(taskId, d.state);
        Ballot storage b = _ballots[taskId][voter];
        if (b.side == 0) revert DisputeManagerNoBallot(taskId, voter);
        ITaskRegistryTypes.DisputeOutcome outcome = d.outcome;
        if (outcome == ITaskRegistryTypes.DisputeOutcome.Undecided) {
            b.settled = true;
            emit BallotSettled(taskId, voter, 0, 0);
            return (0, 0);
        }
        uint8 winning = outcome == ITaskRegistryTypes.DisputeOutcome.NodeRight ? _NODE_RIGHT : _NODE_WRONG;
        if (b.side != winning) {
            if (!b.settled) {
                b.settled = true;
                slashed = _slashBallot(d, voter, b.weight, winning);
            }
        } else {
            b.settled = true;
            uint256 owed = Math.mulDiv(b.weight, d.rewardPerWeight, _ACC);
            paid = owed - b.paid;
            // Safe cast: owed is bounded by the OPG supply (1e27 < 2^96).
            b.paid = uint96(owed);
        }
        emit BallotSettled(taskId, voter, slashed, paid);
        if (paid != 0) token.safeTransfer(voter, paid);
    }

    // ---------------------------------------------------------------- views

    /// @notice The dispute over `taskId`, if any.
    function disputeOf(uint256 taskId) external view returns (Dispute memory) {
        return _disputes[taskId];
    }

    /// @notice `voter`'s ballot on the dispute over `taskId` (side 0: none).
    function ballotOf(uint256 taskId, address voter) external view returns (Ballot memory) {
        return _ballots[taskId][voter];
    }

    /// @notice What settling `voter`'s ballot would pay it now (winning side of a resolved vote).
    function rewardOf(uint256 taskId, address voter) external view returns (uint256) {
        Dispute storage d = _disputes[taskId];
        Ballot storage b = _ballots[taskId][voter];
        if (d.state != DisputeState.Resolved || d.outcome == ITaskRegistryTypes.DisputeOutcome.Undecided)
            return 0;
        uint8 winning = d.outcome == ITaskRegistryTypes.DisputeOutcome.NodeRight ? _NODE_RIGHT : _NODE_WRONG;
        if (b.side != winning) return 0;
        return Math.mulDiv(b.weight, d.rewardPerWeight, _ACC) - b.paid;
    }

    // ---------------------------------------------------------------- governance

    /// @notice Set the vote window (s), the challenge bond, the share of its weight a losing ballot loses
    /// (bps), and the least total weight that must vote for a vote to decide. Disputes already open keep
    /// the values they opened with.
    function setDisputeParameters(
        uint32 voteWindow_,
        uint96 challengeBond_,
        uint16 voterSlashBps_,
        uint128 voteQuorumStake_
    ) external onlyOwner {
        _setDisputeParameters(voteWindow_, challengeBond_, voterSlashBps_, voteQuorumStake_);
    }

    /// @notice Set the stake each attester of outputs a dispute proved wrong loses.
    function setAttesterSlash(uint96 amount) external onlyOwner {
        _setAttesterSlash(amount);
    }

    // ---------------------------------------------------------------- internals

    function _checkChallenger() private view {
        if (!staking.isEligible(msg.sender, INodeStaking.Role.Verification)) {
            revert DisputeManagerNotVerifier(msg.sender);
        }
    }

    function _open(uint256 taskId) private view returns (Dispute storage d) {
        d = _disputes[taskId];
        if (d.state != DisputeState.Open) revert DisputeManagerWrongState(taskId, d.state);
    }

    /// @dev Slashes a losing ballot its share of its weight. NodeStaking pays the governed beneficiary share to
    /// this contract (the rest to the treasury); what arrives is added to the winners' reward per weight.
    function _slashBallot(
        Dispute storage d,
        address voter,
        uint256 weight,
        uint8 winning
    ) private returns (uint256 slashed) {
        uint256 amount = (weight * d.voterSlashBps) / _BPS;
        if (amount == 0) return 0;
        uint256 before = token.balanceOf(address(this));
        try staking.slash(voter, amount, SLASH_REASON_LOST_VOTE, address(this)) returns (uint256 s) {
            slashed = s;
        } catch {}
        uint256 received = token.balanceOf(address(this)) - before;
        uint256 winningWeight = winning == _NODE_RIGHT ? d.weightFor : d.weightAgainst;
        if (received != 0) d.rewardPerWeight += Math.mulDiv(received, _ACC, winningWeight);
    }

    function _setDisputeParameters(
        uint32 voteWindow_,
        uint96 challengeBond_,
        uint16 voterSlashBps_,
        uint128 voteQuorumStake_
    ) private {
        bool ok =
            voteWindow_ != 0 &&
                voteWindow_ <= 30 days &&
                challengeBond_ != 0 &&
                voterSlashBps_ <= _BPS &&
                voteQuorumStake_ != 0;
        if (!ok) revert DisputeManagerInvalidParameter();
        voteWindow = voteWindow_;
        challengeBond = challengeBond_;
        voterSlashBps = voterSlashBps_;
        voteQuorumStake = voteQuorumStake_;
        emit DisputeParametersSet(voteWindow_, challengeBond_, voterSlashBps_, voteQuorumStake_);
    }

    /// @dev Slashes each attester of outputs proved wrong (`attesters` were checked against the task's
    /// pending word by the registry in the same call). At most 16 iterations (the registry's cap); a failing
    /// slash is skipped, never blocking the refund.
    function _slashAttesters(uint256 taskId, address[] calldata attesters, uint256 amount) private {
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
}
