// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title The on-chain part of the data layer: what a model is, how it is verified, what it costs.
/// @notice A registered version is immutable in what it is (ONNX, verification key, verifier, bundle,
/// shapes, signal layout); its owner can change only the fee, the royalty receiver and whether it is active.
/// A new version is a new model id.
interface IModelRegistry {
    /// @notice How a task's input reaches the circuit.
    /// @dev Inline: the packed input words are public signals. Commitment: one public signal, a Poseidon
    /// commitment to the input, whose full data lives on the data node under `inputDataHash`.
    enum InputMode {
        Inline,
        Commitment
    }

    /// @notice Everything a model owner registers. Shapes and the fixed-point scale are for workers and
    /// dapps; the word counts are what the task registry needs to rebuild public signals.
    struct ModelSpec {
        string name;
        bytes32 onnxHash;
        bytes32 verificationKeyHash;
        bytes32 bundleHash;
        address verifier;
        address royaltyReceiver;
        uint96 fee;
        uint8 verificationModes;
        InputMode inputMode;
        uint16 inputWords;
        uint16 outputWords;
        uint8 scaleBits;
        uint8 packBits;
        uint32[] inputShape;
        uint32[] outputShape;
    }

    /// @notice What the task registry reads at submission, in two storage slots.
    struct TaskTerms {
        address verifier;
        uint96 fee;
        address royaltyReceiver;
        bool active;
        uint8 verificationModes;
        InputMode inputMode;
        uint16 inputWords;
        uint16 outputWords;
    }

    /// @notice A full view of a registered model.
    struct Model {
        address owner;
        TaskTerms terms;
        bytes32 onnxHash;
        bytes32 verificationKeyHash;
        bytes32 bundleHash;
        uint8 scaleBits;
        uint8 packBits;
        uint32[] inputShape;
        uint32[] outputShape;
    }

    /// @notice Model `modelId` was registered by `owner`.
    event ModelRegistered(uint256 indexed modelId, address indexed owner, ModelSpec spec);
    /// @notice The fee of `modelId` changed.
    event ModelFeeUpdated(uint256 indexed modelId, uint96 fee);
    /// @notice The royalty receiver of `modelId` changed.
    event ModelRoyaltyReceiverUpdated(uint256 indexed modelId, address royaltyReceiver);
    /// @notice `modelId` was activated or deactivated.
    event ModelActiveSet(uint256 indexed modelId, bool active);
    /// @notice Ownership of `modelId` moved to `newOwner`.
    event ModelOwnershipTransferred(
        uint256 indexed modelId,
        address indexed previousOwner,
        address indexed newOwner
    );

    /// @notice No model has this id.
    error ModelRegistryUnknownModel(uint256 modelId);
    /// @notice The caller does not own the model.
    error ModelRegistryNotModelOwner(uint256 modelId, address caller);
    /// @notice A required hash is zero.
    error ModelRegistryZeroHash();
    /// @notice A required address is zero, or the verifier has no code.
    error ModelRegistryInvalidAddress(address account);
    /// @notice The verification-mode bitmask is empty or has unknown bits.
    error ModelRegistryInvalidModes(uint8 modes);
    /// @notice The public-signal layout is inconsistent (word counts, pack width, input mode).
    error ModelRegistryInvalidLayout(uint16 inputWords, uint16 outputWords, uint8 packBits);
    /// @notice A shape is empty, too long, or has a zero dimension.
    error ModelRegistryInvalidShape();

    /// @notice Register a new model (version); the caller becomes its owner.
    /// @return modelId The new model's id (ids start at 1).
    function registerModel(ModelSpec calldata spec) external returns (uint256 modelId);

    /// @notice Set the fee per inference of `modelId`.
    function setFee(uint256 modelId, uint96 fee) external;

    /// @notice Set who receives the royalty share of `modelId`'s fees.
    function setRoyaltyReceiver(uint256 modelId, address royaltyReceiver) external;

    /// @notice Activate or deactivate `modelId` for new tasks (tasks already submitted still settle).
    function setActive(uint256 modelId, bool active) external;

    /// @notice Hand `modelId` to `newOwner`.
    function transferModelOwnership(uint256 modelId, address newOwner) external;

    /// @notice The terms the task registry needs; reverts for an unknown model.
    function taskTerms(uint256 modelId) external view returns (TaskTerms memory);

    /// @notice Everything about `modelId`; reverts for an unknown model.
    function getModel(uint256 modelId) external view returns (Model memory);

    /// @notice Number of models registered so far (the last id).
    function modelCount() external view returns (uint256);
}
