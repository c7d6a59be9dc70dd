// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title The on-chain part of the data layer: what a model is, how it is verified, what it costs.
/// @notice A registered version is immutable in what it is (ONNX, verification key, bundle, shapes, signal
/// layout); its owner can change only the fee, the royalty receiver and whether it is active. A new version
/// is a new model id. No model-supplied code takes part in settlement: a ZK model registers its Groth16
/// verification key, which the registry validates against the model's signal layout and stores immutably;
/// the task registry verifies proofs against it with the protocol's own verifier (`Groth16`).
interface IModelRegistry {
    /// @notice How a task's input reaches the circuit.
    /// @dev Inline: the packed input words are public signals. Commitment: one public signal, a Poseidon
    /// commitment to the input, whose full data lives on the data node under `inputDataHash`.
    enum InputMode {
        Inline,
        Commitment
    }

    /// @notice Everything a model owner registers besides its verification key. Shapes and the fixed-point
    /// scale are for workers and dapps; the word counts, pack width and input width are what the task
    /// registry needs to check inputs and rebuild public signals, and must agree with the shapes.
    /// @param packBits Bits per packed value in a public word (2..126): `252 / packBits` values per word.
    /// @param inputBits Signed bits of each quantized input value, as the circuit range-checks it
    /// (2..packBits): an inline input value outside this range could not be proved.
    struct ModelSpec {
        string name;
        bytes32 onnxHash;
        bytes32 bundleHash;
        address royaltyReceiver;
        uint96 fee;
        uint8 verificationModes;
        InputMode inputMode;
        uint16 inputWords;
        uint16 outputWords;
        uint8 scaleBits;
        uint8 packBits;
        uint8 inputBits;
        uint32[] inputShape;
        uint32[] outputShape;
    }

    /// @notice What the task registry reads at submission, in two storage slots.
    /// @param verificationKey The data contract holding the model's verification key (zero without ZK mode).
    /// @param inputValues Number of input values (the product of the input shape).
    struct TaskTerms {
        address verificationKey;
        uint96 fee;
        address royaltyReceiver;
        bool active;
        uint8 verificationModes;
        InputMode inputMode;
        uint16 inputWords;
        uint16 outputWords;
        uint8 packBits;
        uint8 inputBits;
        uint24 inputValues;
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
        uint8 inputBits;
        uint32[] inputShape;
        uint32[] outputShape;
    }

    /// @notice Model `modelId` was registered by `owner`; its verification key (keccak256 of its words:
    /// `verificationKeyHash`) is stored at `verificationKey`.
    event ModelRegistered(
        uint256 indexed modelId,
        address indexed owner,
        ModelSpec spec,
        address verificationKey,
        bytes32 verificationKeyHash
    );
    /// @notice The fee of `modelId` changed.
    event ModelFeeUpdated(uint256 indexed modelId, uint96 fee);
    /// @notice The royalty receiver of `modelId` changed.
    event ModelRoyaltyReceiverUpdated(uint256 indexed modelId, address royaltyReceiver);
    /// @notice `modelId` was activated or deactivated.
    event ModelActiveSet(uint256 indexed modelId, bool active);
    /// @notice Optimistic tasks of `modelId` submitted from now on need `quorum` attestations to become final.
    event ModelAttestationQuorumSet(uint256 indexed modelId, uint8 quorum);
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
    /// @notice A required address is zero.
    error ModelRegistryInvalidAddress(address account);
    /// @notice The verification key has the wrong number of words for the layout's public signals, or is
    /// given for a model without ZK mode.
    error ModelRegistryVerificationKeyLength(uint256 words, uint256 expectedWords);
    /// @notice The verification key has a coordinate out of the field, a point off the curve or outside its
    /// subgroup, a point at infinity, or gamma equal to delta.
    error ModelRegistryInvalidVerificationKey();
    /// @notice The verification-mode bitmask is empty or has unknown bits.
    error ModelRegistryInvalidModes(uint8 modes);
    /// @notice The public-signal layout is inconsistent (word counts against the shapes, pack width, input
    /// width, input mode, too many signals).
    error ModelRegistryInvalidLayout(uint16 inputWords, uint16 outputWords, uint8 packBits);
    /// @notice A shape is empty, too long, or has a zero dimension.
    error ModelRegistryInvalidShape();
    /// @notice An attestation quorum must be between 1 and `MAX_ATTESTATION_QUORUM`.
    error ModelRegistryInvalidQuorum(uint8 quorum);

    /// @notice Register a new model (version); the caller becomes its owner.
    /// @param verificationKey With ZK mode: the Groth16 key in `Groth16`'s word order, for exactly
    /// `outputWords + inputWords + 1` public signals; validated, then stored immutably. Without ZK mode:
    /// empty.
    /// @return modelId The new model's id (ids start at 1).
    function registerModel(
        ModelSpec calldata spec,
        uint256[] calldata verificationKey
    ) external returns (uint256 modelId);

    /// @notice Set the fee per inference of `modelId`.
    function setFee(uint256 modelId, uint96 fee) external;

    /// @notice Set who receives the royalty share of `modelId`'s fees.
    function setRoyaltyReceiver(uint256 modelId, address royaltyReceiver) external;

    /// @notice Activate or deactivate `modelId` for new tasks (tasks already submitted still settle).
    function setActive(uint256 modelId, bool active) external;

    /// @notice Set how many staked verification nodes must attest to an optimistic result of `modelId`
    /// before it is final (1 to 16; 1 by default). Frozen into each task at submission.
    function setAttestationQuorum(uint256 modelId, uint8 quorum) external;

    /// @notice The attestation quorum of `modelId` (1 unless its owner set another); reverts for an unknown
    /// model.
    function attestationQuorum(uint256 modelId) external view returns (uint8);

    /// @notice Hand `modelId` to `newOwner`.
    function transferModelOwnership(uint256 modelId, address newOwner) external;

    /// @notice The terms the task registry needs; reverts for an unknown model.
    function taskTerms(uint256 modelId) external view returns (TaskTerms memory);

    /// @notice Everything about `modelId`; reverts for an unknown model.
    function getModel(uint256 modelId) external view returns (Model memory);

    /// @notice The verification key words of `modelId` (empty without ZK mode); reverts for an unknown model.
    function verificationKeyOf(uint256 modelId) external view returns (uint256[] memory);

    /// @notice The registered ONNX hash of `modelId` (what a TEE enclave signs it ran); reverts for an
    /// unknown model.
    function onnxHashOf(uint256 modelId) external view returns (bytes32);

    /// @notice Number of models registered so far (the last id).
    function modelCount() external view returns (uint256);
}
