// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {InferenceConsumer} from "../consumer/InferenceConsumer.sol";
import {ITaskRegistry} from "../interfaces/ITaskRegistry.sol";

/// @title Example dapp: a lender that opens a credit line only when a verified model says the risk is low.
/// @notice The owner asks for a borrower's risk score on the borrower's features (fixed point, packed on
/// chain); the verified score (the model's first output, a fixed-point number) decides the credit line: the
/// lower the risk, the larger it is. Requests are paid from prepaid credits (`fundCredits`); a request that
/// expires unanswered is closed with `expireTask` and the borrower can be asked for again.
contract RiskGatedLender is InferenceConsumer, Ownable {
    /// @notice The risk model.
    uint256 public immutable modelId;
    /// @notice Scores at or above this fixed-point value get no credit.
    int256 public immutable maxRiskScore;
    /// @notice Credit granted per fixed-point unit of score below `maxRiskScore`.
    uint256 public immutable creditPerUnit;

    mapping(uint256 taskId => address borrower) private _borrowerOf;
    mapping(address borrower => uint256 amount) public creditLine;
    mapping(address borrower => int256 score) public lastRiskScore;
    /// @notice The task whose score set the borrower's credit line: results apply in request order, so an
    /// older request settled late never overwrites a newer score.
    mapping(address borrower => uint256 taskId) public scoreTaskOf;

    /// @notice A risk score was requested for `borrower` as task `taskId`.
    event RiskScoreRequested(address indexed borrower, uint256 indexed taskId);
    /// @notice The request `taskId` for `borrower` expired unanswered; its fee came back to this contract.
    event RiskScoreFailed(address indexed borrower, uint256 indexed taskId);
    /// @notice The verified score of an older request arrived after a newer one had been applied: ignored.
    event StaleRiskScoreIgnored(address indexed borrower, uint256 indexed taskId, uint256 appliedTaskId);
    /// @notice The verified score of `borrower` set its credit line to `creditLine`.
    event CreditLineSet(
        address indexed borrower,
        uint256 indexed taskId,
        int256 riskScore,
        uint256 creditLine
    );

    constructor(
        ITaskRegistry registry_,
        IERC20 feeToken_,
        address owner_,
        uint256 modelId_,
        int256 maxRiskScore_,
        uint256 creditPerUnit_
    ) InferenceConsumer(registry_, feeToken_) Ownable(owner_) {
        modelId = modelId_;
        maxRiskScore = maxRiskScore_;
        creditPerUnit = creditPerUnit_;
    }

    /// @notice Request a risk score for `borrower` on its features (the model's input in fixed point), paying
    /// `fee` from this contract's prepaid credits (or, when they are short, its OPG balance).
    function requestRiskScore(
        address borrower,
        int256[] calldata features,
        uint256 fee,
        uint256 deadline
    ) external onlyOwner returns (uint256 taskId) {
        taskId = _requestInference(modelId, features, fee, deadline, 200_000);
        _borrowerOf[taskId] = borrower;
        emit RiskScoreRequested(borrower, taskId);
    }

    /// @notice Withdraw this contract's unused prepaid credits to `to`.
    function withdrawCredits(address to) external onlyOwner returns (uint256) {
        return _withdrawCredits(to);
    }

    function _onInferenceResult(uint256 taskId, uint256, int256[] memory values, uint8) internal override {
        address borrower = _borrowerOf[taskId];
        delete _borrowerOf[taskId];
        // Task ids grow with every submission, so a lower id is an older request.
        uint256 applied = scoreTaskOf[borrower];
        if (taskId < applied) {
            emit StaleRiskScoreIgnored(borrower, taskId, applied);
            return;
        }
        scoreTaskOf[borrower] = taskId;
        int256 score = values[0];
        uint256 line = score < maxRiskScore ? uint256(maxRiskScore - score) * creditPerUnit : 0;
        lastRiskScore[borrower] = score;
        creditLine[borrower] = line;
        emit CreditLineSet(borrower, taskId, score, line);
    }

    function _onInferenceFailed(uint256 taskId, uint256) internal override {
        address borrower = _borrowerOf[taskId];
        delete _borrowerOf[taskId];
        emit RiskScoreFailed(borrower, taskId);
    }
}
