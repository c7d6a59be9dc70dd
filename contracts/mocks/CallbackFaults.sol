// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IInferenceCallback} from "../interfaces/IInferenceCallback.sol";

/// @notice Test-only callbacks that fail on purpose, to show settlement never depends on the callback.
contract RevertingCallback is IInferenceCallback {
    error RevertingCallbackAlways();

    function onInferenceResult(uint256, uint256, uint256[] calldata) external pure {
        revert RevertingCallbackAlways();
    }
}

/// @notice Burns every unit of gas it is given.
contract GasBurningCallback is IInferenceCallback {
    uint256 public counter;

    function onInferenceResult(uint256, uint256, uint256[] calldata) external {
        while (true) ++counter;
    }
}

/// @notice Returns (via revert) 400 KB: copying it would cost the caller about 370,000 gas.
contract ReturnBombCallback is IInferenceCallback {
    function onInferenceResult(uint256, uint256, uint256[] calldata) external pure {
        assembly {
            revert(0, 400000)
        }
    }
}

/// @notice Records what it received, to check a successful callback.
contract RecordingCallback is IInferenceCallback {
    uint256 public lastTaskId;
    uint256 public lastModelId;
    uint256[] private _lastOutputs;

    function onInferenceResult(uint256 taskId, uint256 modelId, uint256[] calldata outputs) external {
        lastTaskId = taskId;
        lastModelId = modelId;
        _lastOutputs = outputs;
    }

    function lastOutputs() external view returns (uint256[] memory) {
        return _lastOutputs;
    }
}
