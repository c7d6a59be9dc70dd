// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ITaskRegistry, ITaskRegistryTypes} from "../interfaces/ITaskRegistry.sol";
import {IModelRegistry} from "../interfaces/IModelRegistry.sol";
import {IInferenceCallback} from "../interfaces/IInferenceCallback.sol";
import {PublicSignals} from "../libraries/PublicSignals.sol";

/// @title Base contract for dapps that request inference and act on verified results.
/// @notice Inherit, fund the contract's prepaid credits (`fundCredits`), call `_requestInference` with the
/// model's fixed-point input values, implement `_onInferenceResult` (decoded signed outputs and their scale)
/// and, optionally, `_onInferenceFailed` (the task expired unanswered; its fee came back to this contract).
/// The registry calls back only with outputs whose proof it verified; this base rejects any other caller
/// and any task this contract did not request. Packing the input words and decoding the output words
/// happen here, with the model's layout read once from the model registry (a model's layout never changes).
abstract contract InferenceConsumer is IInferenceCallback {
    using SafeERC20 for IERC20;

    /// @notice A model's word layout, cached at its first request: two storage words for the life of the
    /// contract instead of a registry read per request.
    struct ModelFormat {
        /// @dev Width of one packed value (input and output words).
        uint8 packBits;
        /// @dev Signed width every input value must fit in.
        uint8 inputBits;
        /// @dev Values are fixed point: divide by 2^scaleBits for the real number.
        uint8 scaleBits;
        /// @dev Number of input values (product of the input shape).
        uint24 inputValues;
        /// @dev Number of output values (product of the output shape).
        uint32 outputValues;
        /// @dev Whether the layout was read (model ids start at 1, but a zero format is never valid).
        bool known;
    }

    /// @notice The task registry results come from.
    ITaskRegistry public immutable taskRegistry;
    /// @notice The model registry the task registry prices and checks tasks against.
    IModelRegistry public immutable modelRegistry;
    /// @notice The OPG token fees are paid in.
    IERC20 public immutable feeToken;

    /// @dev The model of each task awaiting its result (model ids start at 1, so 0 means none).
    mapping(uint256 taskId => uint256 modelId) private _pendingModel;
    mapping(uint256 modelId => ModelFormat) private _formats;

    /// @notice Thrown when someone other than the task registry calls the callback.
    error InferenceConsumerNotRegistry(address caller);
    /// @notice Thrown when the callback names a task this contract is not waiting for.
    error InferenceConsumerUnknownTask(uint256 taskId);
    /// @notice `deliverResult` was given something other than the task's verified result (or the task is not
    /// verified).
    error InferenceConsumerNotVerified(uint256 taskId);
    /// @notice Thrown when the input does not have the model's number of values.
    error InferenceConsumerInputLength(uint256 modelId, uint256 given, uint256 expected);
    /// @notice Thrown when input value `index` is outside the model's signed `inputBits` range.
    error InferenceConsumerInputOutOfRange(uint256 index, int256 value, uint8 inputBits);
    /// @notice Thrown when the model takes its input by commitment (data node), which this base does not send.
    error InferenceConsumerCommitmentInput(uint256 modelId);
    /// @notice Thrown when neither the prepaid credits nor the contract's OPG balance cover the fee.
    error InferenceConsumerInsufficientFunds(uint256 fee, uint256 credits, uint256 balance);

    /// @notice The task `taskId` expired unanswered; its fee was refunded to this contract.
    event InferenceFailed(uint256 indexed taskId, uint256 indexed modelId);

    constructor(ITaskRegistry registry_, IERC20 feeToken_) {
        taskRegistry = registry_;
        modelRegistry = registry_.models();
        feeToken = feeToken_;
    }

    // ---------------------------------------------------------------- called by the registry or anyone

    /// @inheritdoc IInferenceCallback
    function onInferenceResult(uint256 taskId, uint256 modelId, uint256[] calldata outputs) external {
        if (msg.sender != address(taskRegistry)) revert InferenceConsumerNotRegistry(msg.sender);
        if (_pendingModel[taskId] == 0) revert InferenceConsumerUnknownTask(taskId);
        delete _pendingModel[taskId];
        _deliver(taskId, modelId, outputs);
    }

    /// @notice Deliver the verified result of a task whose callback failed (it reverted, or the gas the
    /// requester set was not enough): anyone may call, with the result as the task's `TaskVerified` event
    /// gives it (node, block, outputs); the registry checks it against the hash it keeps
    /// (`isVerifiedResult`), so only the verified outputs are ever delivered.
    function deliverResult(uint256 taskId, ITaskRegistryTypes.Result calldata result) external {
        uint256 modelId = _pendingModel[taskId];
        if (modelId == 0) revert InferenceConsumerUnknownTask(taskId);
        if (!taskRegistry.isVerifiedResult(taskId, result)) revert InferenceConsumerNotVerified(taskId);
        delete _pendingModel[taskId];
        _deliver(taskId, modelId, result.outputs);
    }

    /// @notice Close a task of this contract that passed its deadline unanswered: expires it in the registry
    /// (which refunds the fee to this contract and slashes an abandoned claim) unless someone already did,
    /// then runs `_onInferenceFailed`. Anyone may call (a keeper, the dapp's front end, `opg task refund`
    /// followed by this): it only does what the deadline already decided. `task` is the task as emitted in
    /// `TaskSubmitted`; it is not read when the task is already expired or rejected (an optimistic result a
    /// dispute threw out: the registry refunded the fee when it rejected it). Reverts with the registry's errors
    /// before the deadline (`TaskRegistryDeadlineNotReached`) or once verified (`TaskRegistryWrongStatus`).
    function expireTask(uint256 taskId, ITaskRegistryTypes.Task calldata task) external {
        uint256 modelId = _pendingModel[taskId];
        if (modelId == 0) revert InferenceConsumerUnknownTask(taskId);
        // Effects before the registry call: a re-entrant call finds nothing pending.
        delete _pendingModel[taskId];
        // Expired (by anyone, or unattested) and Rejected (an optimistic result a dispute threw out) were
        // refunded already; anything else must be expirable now.
        ITaskRegistryTypes.TaskStatus status = taskRegistry.taskStatus(taskId);
        if (
            status != ITaskRegistryTypes.TaskStatus.Expired &&
            status != ITaskRegistryTypes.TaskStatus.Rejected
        ) taskRegistry.expire(taskId, task);
        emit InferenceFailed(taskId, modelId);
        _onInferenceFailed(taskId, modelId);
    }

    /// @notice Add `amount` OPG from the caller to this contract's prepaid credits in the registry: requests
    /// are then paid from credits (one storage write) instead of an approval and a transfer each. Anyone may
    /// fund a dapp; credits only ever pay this contract's tasks (or go where the dapp's own withdrawal says).
    function fundCredits(uint256 amount) external {
        feeToken.safeTransferFrom(msg.sender, address(this), amount);
        _depositCredits(amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice Whether `taskId` was requested by this contract and has not been answered yet.
    function isPending(uint256 taskId) public view returns (bool) {
        return _pendingModel[taskId] != 0;
    }

    /// @notice The cached layout of `modelId` (all zero before this contract's first request for it).
    function modelFormat(uint256 modelId) external view returns (ModelFormat memory) {
        return _formats[modelId];
    }

    // ---------------------------------------------------------------- for the dapp

    /// @dev Request an inference of `modelId` on `values`, the model's input in fixed point (real value times
    /// 2^scaleBits, row-major over the input shape), with this contract as the callback. Packs the values
    /// into the model's input words (each checked against the model's `inputBits`), and pays `fee` from the
    /// prepaid credits when they cover it, else from this contract's OPG balance.
    function _requestInference(
        uint256 modelId,
        int256[] memory values,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit
    ) internal returns (uint256 taskId) {
        ModelFormat memory format = _formatOf(modelId);
        if (values.length != format.inputValues) {
            revert InferenceConsumerInputLength(modelId, values.length, format.inputValues);
        }
        taskId = _submit(modelId, _pack(values, format), fee, deadline, callbackGasLimit, 0);
    }

    /// @dev `_requestInference` in a chosen verification mode (`VerificationModes.ZK`, `OPTIMISTIC` or `TEE`),
    /// one the model allows; the others take the strongest the model allows. An optimistic result reaches
    /// `_onInferenceResult` only once final (after its challenge window); a rejected one ends in
    /// `_onInferenceFailed` through `expireTask`.
    function _requestInferenceInMode(
        uint256 modelId,
        int256[] memory values,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit,
        uint8 mode
    ) internal returns (uint256 taskId) {
        ModelFormat memory format = _formatOf(modelId);
        if (values.length != format.inputValues) {
            revert InferenceConsumerInputLength(modelId, values.length, format.inputValues);
        }
        taskId = _submit(modelId, _pack(values, format), fee, deadline, callbackGasLimit, mode);
    }

    /// @dev The same with input words the dapp packed itself (`PublicSignals` layout).
    function _requestInferenceWords(
        uint256 modelId,
        uint256[] memory words,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit
    ) internal returns (uint256 taskId) {
        _formatOf(modelId);
        taskId = _submit(modelId, words, fee, deadline, callbackGasLimit, 0);
    }

    /// @dev Move `amount` of this contract's own OPG into its prepaid credits.
    function _depositCredits(uint256 amount) internal {
        feeToken.forceApprove(address(taskRegistry), amount);
        taskRegistry.deposit(amount);
    }

    /// @dev Withdraw every prepaid credit of this contract to `to` (expose it behind the dapp's access control).
    function _withdrawCredits(address to) internal returns (uint256) {
        return taskRegistry.withdrawCredits(to);
    }

    /// @dev Called with the verified output of a task this contract requested: `values` are signed fixed-point
    /// integers (row-major over the model's output shape); the real value is `values[i] / 2^scaleBits`.
    function _onInferenceResult(
        uint256 taskId,
        uint256 modelId,
        int256[] memory values,
        uint8 scaleBits
    ) internal virtual;

    /// @dev Called once when a task this contract requested expired unanswered (see `expireTask`); the fee is
    /// back in this contract's OPG balance. Override to release whatever the request held.
    function _onInferenceFailed(uint256 taskId, uint256 modelId) internal virtual {}

    // ---------------------------------------------------------------- internals

    function _submit(
        uint256 modelId,
        uint256[] memory words,
        uint256 fee,
        uint256 deadline,
        uint32 callbackGasLimit,
        uint8 mode
    ) private returns (uint256 taskId) {
        uint256 credits = taskRegistry.creditsOf(address(this));
        if (credits < fee) {
            uint256 balance = feeToken.balanceOf(address(this));
            if (balance < fee) revert InferenceConsumerInsufficientFunds(fee, credits, balance);
            feeToken.forceApprove(address(taskRegistry), fee);
        }
        ITaskRegistryTypes.TaskRequest memory request = ITaskRegistryTypes.TaskRequest({
            modelId: modelId,
            input: words,
            inputDataHash: bytes32(0),
            fee: fee,
            deadline: deadline,
            callback: address(this),
            callbackGasLimit: callbackGasLimit
        });
        taskId = mode == 0 ? taskRegistry.submitTask(request) : taskRegistry.submitTaskInMode(request, mode);
        _pendingModel[taskId] = modelId;
    }

    function _deliver(uint256 taskId, uint256 modelId, uint256[] memory words) private {
        ModelFormat memory format = _formats[modelId];
        _onInferenceResult(taskId, modelId, _unpack(words, format), format.scaleBits);
    }

    function _formatOf(uint256 modelId) private returns (ModelFormat memory format) {
        format = _formats[modelId];
        if (format.known) return format;
        // Reverts with ModelRegistryUnknownModel for an unknown id.
        IModelRegistry.Model memory model = modelRegistry.getModel(modelId);
        if (model.terms.inputMode != IModelRegistry.InputMode.Inline) {
            revert InferenceConsumerCommitmentInput(modelId);
        }
        uint256 outputValues = 1;
        for (uint256 i = 0; i < model.outputShape.length; ++i) outputValues *= model.outputShape[i];
        format = ModelFormat({
            packBits: model.packBits,
            inputBits: model.inputBits,
            scaleBits: model.scaleBits,
            inputValues: model.terms.inputValues,
            // Safe cast: the registry bounds outputWords to uint16, so values < 2^16 * 126 < 2^32.
            outputValues: uint32(outputValues),
            known: true
        });
        _formats[modelId] = format;
    }

    /// @dev Pack signed values into words: value j of a word in bits [j*B, (j+1)*B), offset by 2^(B-1).
    function _pack(
        int256[] memory values,
        ModelFormat memory format
    ) private pure returns (uint256[] memory) {
        uint256 bits = format.packBits;
        uint256 perWord = PublicSignals.WORD_PAYLOAD_BITS / bits;
        uint256 count = values.length;
        uint256[] memory words = new uint256[]((count + perWord - 1) / perWord);
        // v is in range exactly when v + 2^(I-1), as unsigned, is below 2^I; v + 2^(B-1) is then its lane.
        uint256 half = uint256(1) << (format.inputBits - 1);
        uint256 offset = uint256(1) << (bits - 1);
        unchecked {
            uint256 i;
            for (uint256 w = 0; w < words.length; ++w) {
                uint256 word;
                for (uint256 shift = 0; shift < perWord * bits && i < count; shift += bits) {
                    int256 v = values[i];
                    // Wraps for out-of-range values, which then fail the comparison.
                    if (uint256(v) + half >= half << 1) {
                        revert InferenceConsumerInputOutOfRange(i, v, format.inputBits);
                    }
                    word |= (uint256(v) + offset) << shift;
                    ++i;
                }
                words[w] = word;
            }
        }
        return words;
    }

    function _unpack(
        uint256[] memory words,
        ModelFormat memory format
    ) private pure returns (int256[] memory) {
        uint256 bits = format.packBits;
        uint256 perWord = PublicSignals.WORD_PAYLOAD_BITS / bits;
        uint256 mask = (uint256(1) << bits) - 1;
        int256 offset = int256(1) << (bits - 1);
        int256[] memory values = new int256[](format.outputValues);
        // The registry stored exactly outputWords words whose every lane the circuit range-checked.
        for (uint256 i = 0; i < values.length; ++i) {
            uint256 raw = (words[i / perWord] >> ((i % perWord) * bits)) & mask;
            values[i] = int256(raw) - offset;
        }
        return values;
    }
}
