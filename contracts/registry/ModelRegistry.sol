// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IModelRegistry} from "../interfaces/IModelRegistry.sol";
import {VerificationModes} from "../libraries/VerificationModes.sol";
import {Groth16} from "../libraries/Groth16.sol";
import {PublicSignals} from "../libraries/PublicSignals.sol";

/// @title ModelRegistry
/// @notice Model id -> hashes, verification key, fee, royalty receiver, shapes and public-signal layout.
/// @dev Invariants, NEVER to be violated: a registered model's verification key, layout and hashes never
/// change; a ZK model's key is valid (`Groth16.isValidKey`) and has exactly one IC point per public signal
/// plus one; the word counts agree with the shapes and the pack width.
contract ModelRegistry is IModelRegistry {
    /// @notice Most dimensions a registered shape may have.
    uint256 public constant MAX_SHAPE_RANK = 8;
    /// @notice Most public signals (outputs + inputs + binding) a model may expose: bounds verifier gas.
    uint256 public constant MAX_PUBLIC_SIGNALS = 64;
    /// @notice Widest packed value the toolchain supports: two values per 252-bit word (zkml/packing.ts).
    uint8 public constant MAX_PACK_BITS = 126;
    /// @notice Narrowest packed value: a sign bit and one magnitude bit.
    uint8 public constant MIN_PACK_BITS = 2;
    /// @notice Most attestations a model may require before an optimistic result is final (the task
    /// registry accepts at most this many attesters per task).
    uint8 public constant MAX_ATTESTATION_QUORUM = 16;
    /// @notice Most values a shape may hold: inline input counts are stored in 24 bits.
    uint256 private constant _MAX_VALUES = type(uint24).max;

    struct StoredModel {
        TaskTerms terms; // two slots, read together by the task registry
        address owner;
        uint8 scaleBits;
        uint8 attestationQuorum; // zero means the default, 1
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
    function registerModel(
        ModelSpec calldata spec,
        uint256[] calldata verificationKey
    ) external returns (uint256 modelId) {
        uint256 inputValues = _validate(spec);
        address keyPointer;
        bytes32 keyHash;
        if (spec.verificationModes & VerificationModes.ZK != 0) {
            uint256 expected = Groth16.keyWords(uint256(spec.inputWords) + spec.outputWords + 1);
            if (verificationKey.length != expected) {
                revert ModelRegistryVerificationKeyLength(verificationKey.length, expected);
            }
            if (!Groth16.isValidKey(verificationKey)) revert ModelRegistryInvalidVerificationKey();
            keyPointer = Groth16.store(verificationKey);
            if (keyPointer == address(0)) revert ModelRegistryInvalidVerificationKey();
            keyHash = keccak256(abi.encodePacked(verificationKey));
        } else if (verificationKey.length != 0) {
            revert ModelRegistryVerificationKeyLength(verificationKey.length, 0);
        }
        modelId = ++_modelCount;
        StoredModel storage model = _models[modelId];
        model.terms = TaskTerms({
            verificationKey: keyPointer,
            fee: spec.fee,
            royaltyReceiver: spec.royaltyReceiver,
            active: true,
            verificationModes: spec.verificationModes,
            inputMode: spec.inputMode,
            inputWords: spec.inputWords,
            outputWords: spec.outputWords,
            packBits: spec.packBits,
            inputBits: spec.inputBits,
            // Safe cast: _validate bounds the input value count by _MAX_VALUES.
            inputValues: uint24(inputValues)
        });
        model.owner = msg.sender;
        model.scaleBits = spec.scaleBits;
        model.onnxHash = spec.onnxHash;
        model.verificationKeyHash = keyHash;
        model.bundleHash = spec.bundleHash;
        model.inputShape = spec.inputShape;
        model.outputShape = spec.outputShape;
        emit ModelRegistered(modelId, msg.sender, spec, keyPointer, keyHash);
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
    function setAttestationQuorum(uint256 modelId, uint8 quorum) external onlyModelOwner(modelId) {
        if (quorum == 0 || quorum > MAX_ATTESTATION_QUORUM) revert ModelRegistryInvalidQuorum(quorum);
        _models[modelId].attestationQuorum = quorum;
        emit ModelAttestationQuorumSet(modelId, quorum);
    }

    /// @inheritdoc IModelRegistry
    function attestationQuorum(uint256 modelId) external view returns (uint8) {
        uint8 quorum = _stored(modelId).attestationQuorum;
        return quorum == 0 ? 1 : quorum;
    }

    /// @inheritdoc IModelRegistry
    function onnxHashOf(uint256 modelId) external view returns (bytes32) {
        return _stored(modelId).onnxHash;
    }

    /// @inheritdoc IModelRegistry
    function taskTerms(uint256 modelId) external view returns (TaskTerms memory terms) {
        // On the submitTask path: a registered model always has a royalty receiver, so that slot doubles as
        // the existence check and the owner's slot is not read.
        terms = _models[modelId].terms;
        if (terms.royaltyReceiver == address(0)) revert ModelRegistryUnknownModel(modelId);
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
                packBits: model.terms.packBits,
                inputBits: model.terms.inputBits,
                inputShape: model.inputShape,
                outputShape: model.outputShape
            });
    }

    /// @inheritdoc IModelRegistry
    function verificationKeyOf(uint256 modelId) external view returns (uint256[] memory) {
        return Groth16.load(_stored(modelId).terms.verificationKey);
    }

    /// @inheritdoc IModelRegistry
    function modelCount() external view returns (uint256) {
        return _modelCount;
    }

    function _stored(uint256 modelId) private view returns (StoredModel storage model) {
        model = _models[modelId];
        if (model.owner == address(0)) revert ModelRegistryUnknownModel(modelId);
    }

    /// @dev Checks everything but the key; returns the number of input values.
    function _validate(ModelSpec calldata spec) private pure returns (uint256 inputValues) {
        if (spec.onnxHash == 0 || spec.bundleHash == 0) revert ModelRegistryZeroHash();
        if (spec.royaltyReceiver == address(0)) revert ModelRegistryInvalidAddress(spec.royaltyReceiver);
        uint8 modes = spec.verificationModes;
        if (modes == 0 || modes & ~VerificationModes.ALL != 0) revert ModelRegistryInvalidModes(modes);
        inputValues = _values(spec.inputShape);
        uint256 outputValues = _values(spec.outputShape);
        uint8 packBits = spec.packBits;
        bool widthsOk =
            packBits >= MIN_PACK_BITS &&
                packBits <= MAX_PACK_BITS &&
                spec.inputBits >= MIN_PACK_BITS &&
                spec.inputBits <= MAX_PACK_BITS &&
                (spec.inputMode == InputMode.Commitment || spec.inputBits <= packBits);
        if (!widthsOk) revert ModelRegistryInvalidLayout(spec.inputWords, spec.outputWords, packBits);
        uint256 perWord = PublicSignals.WORD_PAYLOAD_BITS / packBits;
        uint256 inputWords = spec.inputMode == InputMode.Inline ? _ceilDiv(inputValues, perWord) : 1;
        bool layoutOk =
            spec.inputWords == inputWords &&
                spec.outputWords == _ceilDiv(outputValues, perWord) &&
                uint256(spec.inputWords) + spec.outputWords + 1 <= MAX_PUBLIC_SIGNALS;
        if (!layoutOk) revert ModelRegistryInvalidLayout(spec.inputWords, spec.outputWords, packBits);
    }

    /// @dev The number of values a shape holds; reverts for an empty, too long, zero or too large shape.
    function _values(uint32[] calldata shape) private pure returns (uint256 count) {
        if (shape.length == 0 || shape.length > MAX_SHAPE_RANK) revert ModelRegistryInvalidShape();
        count = 1;
        for (uint256 i = 0; i < shape.length; ++i) {
            count *= shape[i];
            if (count == 0 || count > _MAX_VALUES) revert ModelRegistryInvalidShape();
        }
    }

    function _ceilDiv(uint256 a, uint256 b) private pure returns (uint256) {
        return (a + b - 1) / b;
    }
}
