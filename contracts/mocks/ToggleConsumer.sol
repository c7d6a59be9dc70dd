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
    uint256[] private _lastOutputs;

    error ToggleConsumerFailing();

    constructor(ITaskRegistry registry_, IERC20 feeToken_) InferenceConsumer(registry_, feeToken_) {}

    function setFailing(bool failing_) external {
        failing = failing_;
    }

    function request(
        uint256 modelId,
        uint256[] calldata input,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit
    ) external returns (uint256) {
        return _requestInference(modelId, input, fee, deadline, callbackGasLimit);
    }

    function lastOutputs() external view returns (uint256[] memory) {
        return _lastOutputs;
    }

    function _onInferenceResult(uint256 taskId, uint256, uint256[] memory outputs) internal override {
        if (failing) revert ToggleConsumerFailing();
        lastTaskId = taskId;
        _lastOutputs = outputs;
    }
}
