// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ITaskRegistry} from "../interfaces/ITaskRegistry.sol";
import {IInferenceCallback} from "../interfaces/IInferenceCallback.sol";

/// @title Base contract for dapps that request inference and act on verified results.
/// @notice Inherit, fund the contract with OPG, call `_requestInference`, implement `_onInferenceResult`.
/// The registry calls back only with outputs whose proof it verified; this base rejects any other caller
/// and any task this contract did not request.
abstract contract InferenceConsumer is IInferenceCallback {
    using SafeERC20 for IERC20;

    /// @notice The task registry results come from.
    ITaskRegistry public immutable taskRegistry;
    /// @notice The OPG token fees are paid in.
    IERC20 public immutable feeToken;

    /// @dev The model of each task awaiting its result (model ids start at 1, so 0 means none).
    mapping(uint256 taskId => uint256 modelId) private _pendingModel;

    /// @notice Thrown when someone other than the task registry calls the callback.
    error InferenceConsumerNotRegistry(address caller);
    /// @notice Thrown when the callback names a task this contract is not waiting for.
    error InferenceConsumerUnknownTask(uint256 taskId);

    constructor(ITaskRegistry registry_, IERC20 feeToken_) {
        taskRegistry = registry_;
        feeToken = feeToken_;
    }

    /// @inheritdoc IInferenceCallback
    function onInferenceResult(uint256 taskId, uint256 modelId, uint256[] calldata outputs) external {
        if (msg.sender != address(taskRegistry)) revert InferenceConsumerNotRegistry(msg.sender);
        if (_pendingModel[taskId] == 0) revert InferenceConsumerUnknownTask(taskId);
        delete _pendingModel[taskId];
        _onInferenceResult(taskId, modelId, outputs);
    }

    /// @notice Deliver the verified result of a task whose callback failed (it reverted, or the gas the
    /// requester set was not enough): anyone may call. The outputs are the registry's stored, verified ones;
    /// reverts with the registry's `TaskRegistryWrongStatus` while the task is not verified.
    function deliverResult(uint256 taskId) external {
        uint256 modelId = _pendingModel[taskId];
        if (modelId == 0) revert InferenceConsumerUnknownTask(taskId);
        ITaskRegistry.Result memory result = taskRegistry.resultOf(taskId);
        delete _pendingModel[taskId];
        _onInferenceResult(taskId, modelId, result.outputs);
    }

    /// @notice Whether `taskId` was requested by this contract and has not been answered yet.
    function isPending(uint256 taskId) public view returns (bool) {
        return _pendingModel[taskId] != 0;
    }

    /// @dev Submit a task paid from this contract's OPG balance, with this contract as the callback.
    function _requestInference(
        uint256 modelId,
        uint256[] memory input,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit
    ) internal returns (uint256 taskId) {
        feeToken.forceApprove(address(taskRegistry), fee);
        taskId = taskRegistry.submitTask(
            ITaskRegistry.TaskRequest({
                modelId: modelId,
                input: input,
                inputDataHash: bytes32(0),
                fee: fee,
                deadline: deadline,
                callback: address(this),
                callbackGasLimit: callbackGasLimit
            })
        );
        _pendingModel[taskId] = modelId;
    }

    /// @dev Called with the verified, packed output words of a task this contract requested.
    function _onInferenceResult(uint256 taskId, uint256 modelId, uint256[] memory outputs) internal virtual;
}
