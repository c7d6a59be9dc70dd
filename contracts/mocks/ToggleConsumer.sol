// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {InferenceConsumer} from "../consumer/InferenceConsumer.sol";
import {ITaskRegistry} from "../interfaces/ITaskRegistry.sol";

/// @notice Test-only consumer whose result hook fails while `failing` is set: shows that a result whose
/// callback failed can still be delivered later with `deliverResult`.
contract ToggleConsumer is InferenceConsumer {
    bool public failing;
    uint256 public lastTaskId;
    int256[] private _lastValues;
    uint8 public lastScaleBits;
    uint256 public lastFailedTaskId;

    error ToggleConsumerFailing();

    constructor(ITaskRegistry registry_, IERC20 feeToken_) InferenceConsumer(registry_, feeToken_) {}

    function setFailing(bool failing_) external {
        failing = failing_;
    }

    function request(
        uint256 modelId,
        int256[] calldata values,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit
    ) external returns (uint256) {
        return _requestInference(modelId, values, fee, deadline, callbackGasLimit);
    }

    function requestInMode(
        uint256 modelId,
        int256[] calldata values,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit,
        uint8 mode
    ) external returns (uint256) {
        return _requestInferenceInMode(modelId, values, fee, deadline, callbackGasLimit, mode);
    }

    function requestWords(
        uint256 modelId,
        uint256[] calldata words,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit
    ) external returns (uint256) {
        return _requestInferenceWords(modelId, words, fee, deadline, callbackGasLimit);
    }

    function lastValues() external view returns (int256[] memory) {
        return _lastValues;
    }

    function _onInferenceResult(
        uint256 taskId,
        uint256,
        int256[] memory values,
        uint8 scaleBits
    ) internal override {
        if (failing) revert ToggleConsumerFailing();
        lastTaskId = taskId;
        _lastValues = values;
        lastScaleBits = scaleBits;
    }

    function _onInferenceFailed(uint256 taskId, uint256) internal override {
        if (failing) revert ToggleConsumerFailing();
        lastFailedTaskId = taskId;
    }
}
