// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IModelRegistry} from "../interfaces/IModelRegistry.sol";
import {VerificationModes} from "../libraries/VerificationModes.sol";

/// @title ModelRegistry
/// @notice Model id -> hashes, verifier, fee, royalty receiver, shapes and public-signal layout.
contract ModelRegistry is IModelRegistry {
    /// @notice Most dimensions a registered shape may have.
    uint256 public constant MAX_SHAPE_RANK = 8;
    /// @notice Most public signals (outputs + inputs + binding) a model may expose: bounds verifier gas.
    uint256 public constant MAX_PUBLIC_SIGNALS = 64;
    /// @notice Widest packed value: one value per word still leaves the word below the BN254 modulus.
    uint8 public constant MAX_PACK_BITS = 252;

    struct StoredModel {
        TaskTerms terms; // two slots, read together by the task registry
        address owner;
        uint8 scaleBits;
        uint8 packBits;
        bytes32 onnxHash;
        bytes32 verificationKeyHash;
        bytes32 bundleHash;
        uint32[] inputShape;
        uint32[] outputShape;
    }

    uint256 private _modelCount;
    mapping(uint256 modelId => StoredModel model) private _models;

    modifier onlyModelOwner(uint256 modelId) {
        address owner = _stored(modelId).owner;
        if (msg.sender != owner) revert ModelRegistryNotModelOwner(modelId, msg.sender);
        _;
    }

    /// @inheritdoc IModelRegistry
    function registerModel(ModelSpec calldata spec) external returns (uint256 modelId) {
        _validate(spec);
        modelId = ++_modelCount;
        StoredModel storage model = _models[modelId];
        model.terms = TaskTerms({
            verifier: spec.verifier,
            fee: spec.fee,
            royaltyReceiver: spec.royaltyReceiver,
            active: true,
            verificationModes: spec.verificationModes,
            inputMode: spec.inputMode,
            inputWords: spec.inputWords,
            outputWords: spec.outputWords
        });
        model.owner = msg.sender;
        model.scaleBits = spec.scaleBits;
        model.packBits = spec.packBits;
        model.onnxHash = spec.onnxHash;
        model.verificationKeyHash = spec.verificationKeyHash;
        model.bundleHash = spec.bundleHash;
        model.inputShape = spec.inputShape;
        model.outputShape = spec.outputShape;
        emit ModelRegistered(modelId, msg.sender, spec);
    }

    /// @inheritdoc IModelRegistry
    function setFee(uint256 modelId, uint96 fee) external onlyModelOwner(modelId) {
        _models[modelId].terms.fee = fee;
        emit ModelFeeUpdated(modelId, fee);
    }

    /// @inheritdoc IModelRegistry
    function setRoyaltyReceiver(uint256 modelId, address royaltyReceiver) external onlyModelOwner(modelId) {
        if (royaltyReceiver == address(0)) revert ModelRegistryInvalidAddress(royaltyReceiver);
        _models[modelId].terms.royaltyReceiver = royaltyReceiver;
        emit ModelRoyaltyReceiverUpdated(modelId, royaltyReceiver);
    }

    /// @inheritdoc IModelRegistry
    function setActive(uint256 modelId, bool active) external onlyModelOwner(modelId) {
        _models[modelId].terms.active = active;
        emit ModelActiveSet(modelId, active);
    }

    /// @inheritdoc IModelRegistry
    function transferModelOwnership(uint256 modelId, address newOwner) external onlyModelOwner(modelId) {
        if (newOwner == address(0)) revert ModelRegistryInvalidAddress(newOwner);
        _models[modelId].owner = newOwner;
        emit ModelOwnershipTransferred(modelId, msg.sender, newOwner);
    }

    /// @inheritdoc IModelRegistry
    function taskTerms(uint256 modelId) external view returns (TaskTerms memory terms) {
        // On the submitTask path: a registered model always has a verifier, so that slot doubles as the
        // existence check and the owner's slot is not read.
        terms = _models[modelId].terms;
        if (terms.verifier == address(0)) revert ModelRegistryUnknownModel(modelId);
    }

    /// @inheritdoc IModelRegistry
    function getModel(uint256 modelId) external view returns (Model memory) {
        StoredModel storage model = _stored(modelId);
        return
            Model({
                owner: model.owner,
                terms: model.terms,
                onnxHash: model.onnxHash,
                verificationKeyHash: model.verificationKeyHash,
                bundleHash: model.bundleHash,
                scaleBits: model.scaleBits,
                packBits: model.packBits,
                inputShape: model.inputShape,
                outputShape: model.outputShape
            });
    }

    /// @inheritdoc IModelRegistry
    function modelCount() external view returns (uint256) {
        return _modelCount;
    }

    function _stored(uint256 modelId) private view returns (StoredModel storage model) {
        model = _models[modelId];
        if (model.owner == address(0)) revert ModelRegistryUnknownModel(modelId);
    }

    function _validate(ModelSpec calldata spec) private view {
        if (spec.onnxHash == 0 || spec.verificationKeyHash == 0 || spec.bundleHash == 0) {
            revert ModelRegistryZeroHash();
        }
        if (spec.verifier.code.length == 0) revert ModelRegistryInvalidAddress(spec.verifier);
        if (spec.royaltyReceiver == address(0)) revert ModelRegistryInvalidAddress(spec.royaltyReceiver);
        uint8 modes = spec.verificationModes;
        if (modes == 0 || modes & ~VerificationModes.ALL != 0) revert ModelRegistryInvalidModes(modes);
        bool layoutOk =
            spec.inputWords != 0 &&
                spec.outputWords != 0 &&
                spec.packBits != 0 &&
                spec.packBits <= MAX_PACK_BITS &&
                uint256(spec.inputWords) + spec.outputWords + 1 <= MAX_PUBLIC_SIGNALS &&
                (spec.inputMode == InputMode.Inline || spec.inputWords == 1);
        if (!layoutOk) revert ModelRegistryInvalidLayout(spec.inputWords, spec.outputWords, spec.packBits);
        _validateShape(spec.inputShape);
        _validateShape(spec.outputShape);
    }

    function _validateShape(uint32[] calldata shape) private pure {
        if (shape.length == 0 || shape.length > MAX_SHAPE_RANK) revert ModelRegistryInvalidShape();
        for (uint256 i = 0; i < shape.length; ++i) {
            if (shape[i] == 0) revert ModelRegistryInvalidShape();
        }
    }
}
