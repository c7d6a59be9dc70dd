// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IEnclaveRegistry} from "../interfaces/IEnclaveRegistry.sol";
import {INodeStaking} from "../interfaces/INodeStaking.sol";

/// @title EnclaveRegistry
/// @notice Governance-approved enclave measurements and the enclave keys of inference nodes (see
/// `IEnclaveRegistry`). The owner is the governance timelock.
/// @dev Invariants, NEVER to be violated: the contract's OPG balance equals the sum of open challenge bonds;
/// a key belongs to one node forever; a revoked key never becomes usable again.
contract EnclaveRegistry is IEnclaveRegistry, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant REGISTRATION_TYPEHASH = keccak256("opg.enclave.key-registration");
    bytes32 public constant SLASH_REASON_FORGED_ATTESTATION = keccak256("opg.enclave.forged-attestation");

    IERC20 public immutable token;
    INodeStaking public immutable staking;

    /// @notice Time between a key's registration and its first use: the window in which watchers re-check
    /// the published document before the key signs anything.
    uint32 public activationDelay;
    /// @notice Longest a key may live: registration time + this bounds `expiresAt`.
    uint32 public maxKeyLifetime;
    /// @notice OPG a challenger puts up.
    uint96 public challengeBond;
    /// @notice OPG slashed from a node whose key's document was judged invalid.
    uint96 public fraudSlash;

    mapping(bytes32 measurement => bool approved) private _approved;
    mapping(address key => EnclaveKey info) private _keys;
    mapping(address key => KeyChallenge challenge) private _challenges;
    /// @dev Keys governance judged forged: never challenged (and their node slashed) again.
    mapping(address key => bool forged) private _forged;
    /// @dev When a key of each node was last challenged (see `lastChallengeOf`).
    mapping(address node => uint64 challengedAt) private _lastChallengeAt;

    constructor(IERC20 token_, INodeStaking staking_, address owner_) Ownable(owner_) {
        token = token_;
        staking = staking_;
        _setKeyParameters(1 hours, 30 days, 100 ether, 1_000 ether);
    }

    // ---------------------------------------------------------------- governance

    /// @inheritdoc IEnclaveRegistry
    function approveMeasurement(bytes32 measurement, string calldata description) external onlyOwner {
        if (measurement == 0) revert EnclaveRegistryInvalidParameter();
        _approved[measurement] = true;
        emit MeasurementApproved(measurement, description);
    }

    /// @inheritdoc IEnclaveRegistry
    function withdrawMeasurement(bytes32 measurement) external onlyOwner {
        if (!_approved[measurement]) revert EnclaveRegistryMeasurementNotApproved(measurement);
        _approved[measurement] = false;
        emit MeasurementWithdrawn(measurement);
    }

    /// @notice Set the activation delay, the longest key lifetime, the challenge bond and the fraud slash.
    function setKeyParameters(
        uint32 activationDelay_,
        uint32 maxKeyLifetime_,
        uint96 challengeBond_,
        uint96 fraudSlash_
    ) external onlyOwner {
        _setKeyParameters(activationDelay_, maxKeyLifetime_, challengeBond_, fraudSlash_);
    }

    /// @inheritdoc IEnclaveRegistry
    function resolveChallenge(address key, bool documentValid) external onlyOwner nonReentrant {
        KeyChallenge memory challenge = _challenges[key];
        if (challenge.challenger == address(0)) revert EnclaveRegistryNoChallenge(key);
        EnclaveKey storage info = _keys[key];
        delete _challenges[key];
        info.challenged = false;
        uint256 slashed;
        if (documentValid) {
            emit EnclaveKeyChallengeResolved(key, true, 0);
            // The node was suspended for nothing: the bond compensates it.
            token.safeTransfer(info.node, challenge.bond);
        } else {
            info.revoked = true;
            _forged[key] = true;
            emit EnclaveKeyRevoked(key, msg.sender);
            if (fraudSlash != 0) {
                // The beneficiary share is below 100% (NodeStaking), so a challenger colluding with the node
                // gets back less than the node loses.
                try
                    staking.slash(
                        info.node,
                        fraudSlash,
                        SLASH_REASON_FORGED_ATTESTATION,
                        challenge.challenger
                    )
                returns (uint256 amount) {
                    slashed = amount;
                } catch {}
            }
            emit EnclaveKeyChallengeResolved(key, false, slashed);
            token.safeTransfer(challenge.challenger, challenge.bond);
        }
    }

    // ---------------------------------------------------------------- nodes

    /// @inheritdoc IEnclaveRegistry
    function registerKey(
        address key,
        bytes32 measurement,
        uint64 expiresAt,
        bytes calldata document,
        bytes calldata keySignature
    ) external {
        if (!_approved[measurement]) revert EnclaveRegistryMeasurementNotApproved(measurement);
        if (_keys[key].node != address(0) || key == address(0)) revert EnclaveRegistryKeyExists(key);
        if (!staking.nodeInfo(msg.sender).registered) revert EnclaveRegistryNotInferenceNode(msg.sender);
        uint256 maxExpiry = block.timestamp + maxKeyLifetime;
        if (expiresAt <= block.timestamp + activationDelay || expiresAt > maxExpiry) {
            revert EnclaveRegistryInvalidExpiry(expiresAt, block.timestamp, maxExpiry);
        }
        if (document.length == 0) revert EnclaveRegistryEmptyDocument();
        bytes32 documentHash = keccak256(document);
        bytes32 digest = registrationDigest(msg.sender, key, measurement, documentHash, expiresAt);
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecover(digest, keySignature);
        if (err != ECDSA.RecoverError.NoError || recovered != key) {
            revert EnclaveRegistryBadKeySignature(key, recovered);
        }
        // Safe cast: timestamps fit 64 bits for billions of years.
        uint64 activeFrom = uint64(block.timestamp) + activationDelay;
        _keys[key] = EnclaveKey({
            node: msg.sender,
            activeFrom: activeFrom,
            expiresAt: expiresAt,
            revoked: false,
            challenged: false,
            measurement: measurement,
            documentHash: documentHash
        });
        emit EnclaveKeyRegistered(key, msg.sender, measurement, activeFrom, expiresAt, document);
    }

    /// @inheritdoc IEnclaveRegistry
    function revokeKey(address key) external {
        EnclaveKey storage info = _keys[key];
        if (info.node == address(0)) revert EnclaveRegistryUnknownKey(key);
        if (msg.sender != info.node && msg.sender != owner())
            revert EnclaveRegistryNotKeyOwner(key, msg.sender);
        info.revoked = true;
        emit EnclaveKeyRevoked(key, msg.sender);
    }

    /// @inheritdoc IEnclaveRegistry
    function challengeKey(address key, string calldata reason) external nonReentrant {
        (, KeyStanding standing) = keyStatus(key);
        EnclaveKey storage info = _keys[key];
        // Revoked, expired and withdrawn keys stay challengeable: a node that sees a challenge coming must not
        // escape the fraud slash by revoking its key first. `challenged` is read directly, since a revoked
        // key under challenge reads Revoked.
        if (info.node == address(0) || info.challenged || _forged[key]) {
            revert EnclaveRegistryWrongStanding(key, standing);
        }
        uint96 bond = challengeBond;
        info.challenged = true;
        _challenges[key] = KeyChallenge({challenger: msg.sender, bond: bond});
        // Safe cast: timestamps fit 64 bits.
        _lastChallengeAt[info.node] = uint64(block.timestamp);
        emit EnclaveKeyChallenged(key, msg.sender, bond, reason);
        token.safeTransferFrom(msg.sender, address(this), bond);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IEnclaveRegistry
    function keyStatus(address key) public view returns (address node, KeyStanding standing) {
        EnclaveKey storage info = _keys[key];
        node = info.node;
        if (node == address(0)) return (node, KeyStanding.Unknown);
        if (info.revoked) return (node, KeyStanding.Revoked);
        if (info.challenged) return (node, KeyStanding.Challenged);
        if (!_approved[info.measurement]) return (node, KeyStanding.MeasurementWithdrawn);
        if (block.timestamp >= info.expiresAt) return (node, KeyStanding.Expired);
        if (block.timestamp < info.activeFrom) return (node, KeyStanding.Pending);
        return (node, KeyStanding.Active);
    }

    /// @inheritdoc IEnclaveRegistry
    function signerStatus(
        bytes32 digest,
        bytes calldata signature
    ) external view returns (address key, address node, KeyStanding standing) {
        (key, , ) = ECDSA.tryRecover(digest, signature);
        (node, standing) = keyStatus(key);
    }

    /// @inheritdoc IEnclaveRegistry
    function lastChallengeOf(address node) external view returns (uint64) {
        return _lastChallengeAt[node];
    }

    /// @inheritdoc IEnclaveRegistry
    function keyInfo(address key) external view returns (EnclaveKey memory) {
        return _keys[key];
    }

    /// @inheritdoc IEnclaveRegistry
    function challengeOf(address key) external view returns (KeyChallenge memory) {
        return _challenges[key];
    }

    /// @inheritdoc IEnclaveRegistry
    function registrationDigest(
        address node,
        address key,
        bytes32 measurement,
        bytes32 documentHash,
        uint64 expiresAt
    ) public view returns (bytes32) {
        return
            keccak256(
                abi.encode(
                    REGISTRATION_TYPEHASH,
                    block.chainid,
                    address(this),
                    node,
                    key,
                    measurement,
                    documentHash,
                    expiresAt
                )
            );
    }

    /// @inheritdoc IEnclaveRegistry
    function isMeasurementApproved(bytes32 measurement) external view returns (bool) {
        return _approved[measurement];
    }

    // ---------------------------------------------------------------- internals

    function _setKeyParameters(
        uint32 activationDelay_,
        uint32 maxKeyLifetime_,
        uint96 challengeBond_,
        uint96 fraudSlash_
    ) private {
        if (maxKeyLifetime_ <= activationDelay_ || maxKeyLifetime_ > 365 days || challengeBond_ == 0) {
            revert EnclaveRegistryInvalidParameter();
        }
        activationDelay = activationDelay_;
        maxKeyLifetime = maxKeyLifetime_;
        challengeBond = challengeBond_;
        fraudSlash = fraudSlash_;
        emit KeyParametersSet(activationDelay_, maxKeyLifetime_, challengeBond_, fraudSlash_);
    }
}
