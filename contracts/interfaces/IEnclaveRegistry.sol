// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title Enclave signing keys for TEE-attested tasks.
/// @notice Governance approves enclave measurements (for AWS Nitro Enclaves: keccak256 of PCR0 || PCR1 ||
/// PCR2; see docs/tee.md for Intel TDX and AMD SEV-SNP). An inference node registers a secp256k1 key
/// generated inside an enclave together with the enclave's attestation document, which binds the key to a
/// measurement. The document is not parsed on chain (its P-384 signature chain would cost far more than a
/// block holds): it is published in full in `EnclaveKeyRegistered`, and anyone who re-checks it off chain
/// (`opg tee check-key`) can challenge the key with a bond. Governance, the same party that approves
/// measurements, resolves challenges. A key is usable once its activation delay has passed, until it
/// expires, is revoked, is challenged, or its measurement is withdrawn.
interface IEnclaveRegistry {
    /// @notice Where a key stands; only `Active` keys sign settlements.
    enum KeyStanding {
        Unknown,
        Pending,
        Active,
        Challenged,
        Revoked,
        Expired,
        MeasurementWithdrawn
    }

    /// @notice A registered key. `documentHash` is keccak256 of the attestation document.
    struct EnclaveKey {
        address node;
        uint64 activeFrom;
        uint64 expiresAt;
        bool revoked;
        bool challenged;
        bytes32 measurement;
        bytes32 documentHash;
    }

    /// @notice An open challenge against a key: who posted it and the bond at stake.
    struct KeyChallenge {
        address challenger;
        uint96 bond;
    }

    event MeasurementApproved(bytes32 indexed measurement, string description);
    event MeasurementWithdrawn(bytes32 indexed measurement);
    /// @notice `node` registered enclave `key` for `measurement`; `document` is the full attestation
    /// document (its keccak256 is stored), published so that anyone can re-check it.
    event EnclaveKeyRegistered(
        address indexed key,
        address indexed node,
        bytes32 indexed measurement,
        uint64 activeFrom,
        uint64 expiresAt,
        bytes document
    );
    event EnclaveKeyRevoked(address indexed key, address indexed by);
    event EnclaveKeyChallenged(address indexed key, address indexed challenger, uint256 bond, string reason);
    /// @notice Governance judged the challenge of `key`: `documentValid` false revoked it and slashed its node.
    event EnclaveKeyChallengeResolved(address indexed key, bool documentValid, uint256 slashed);
    event KeyParametersSet(
        uint32 activationDelay,
        uint32 maxKeyLifetime,
        uint96 challengeBond,
        uint96 fraudSlash
    );

    error EnclaveRegistryMeasurementNotApproved(bytes32 measurement);
    error EnclaveRegistryKeyExists(address key);
    error EnclaveRegistryNotInferenceNode(address node);
    error EnclaveRegistryInvalidExpiry(uint64 expiresAt, uint256 now_, uint256 maxExpiry);
    error EnclaveRegistryEmptyDocument();
    /// @notice The key's proof of possession does not recover to the key.
    error EnclaveRegistryBadKeySignature(address key, address recovered);
    error EnclaveRegistryUnknownKey(address key);
    error EnclaveRegistryNotKeyOwner(address key, address caller);
    /// @notice The key cannot be challenged or judged in its standing.
    error EnclaveRegistryWrongStanding(address key, KeyStanding standing);
    error EnclaveRegistryNoChallenge(address key);
    error EnclaveRegistryInvalidParameter();

    /// @notice Governance: allow keys attested for `measurement`.
    function approveMeasurement(bytes32 measurement, string calldata description) external;

    /// @notice Governance: stop accepting keys of `measurement`, at once, for every key registered with it.
    function withdrawMeasurement(bytes32 measurement) external;

    /// @notice Register enclave `key` for the calling inference node. `keySignature` is the key's signature
    /// over `registrationDigest(msg.sender, key, measurement, keccak256(document), expiresAt)`: proof that the
    /// node holds the key (no node can register another's key).
    function registerKey(
        address key,
        bytes32 measurement,
        uint64 expiresAt,
        bytes calldata document,
        bytes calldata keySignature
    ) external;

    /// @notice Revoke `key`: its node may revoke its own keys, governance any key. Final.
    function revokeKey(address key) external;

    /// @notice Challenge `key`'s attestation document with `challengeBond` OPG (approval needed): the key is
    /// suspended until governance judges. A valid document pays the bond to the key's node. A revoked,
    /// expired or withdrawn key can still be challenged (its node must not dodge the fraud slash by revoking
    /// it when it sees a challenge coming); a key under challenge, or already judged forged, cannot.
    function challengeKey(address key, string calldata reason) external;

    /// @notice Governance: judge the open challenge of `key`. `documentValid` false revokes the key, slashes
    /// its node `fraudSlash` (the governed beneficiary share to the challenger) and returns the bond.
    function resolveChallenge(address key, bool documentValid) external;

    /// @notice When a key of `node` was last challenged (zero if never). The task registry releases, without
    /// slash, a TEE claim of `node` that lapsed after such a challenge, and lets nobody take it over.
    function lastChallengeOf(address node) external view returns (uint64);

    /// @notice The node `key` belongs to and its standing now.
    function keyStatus(address key) external view returns (address node, KeyStanding standing);

    /// @notice The open challenge of `key` (zero challenger if none).
    function challengeOf(address key) external view returns (KeyChallenge memory);

    /// @notice The key that signed `digest` (zero for a malformed signature), its node and its standing.
    function signerStatus(
        bytes32 digest,
        bytes calldata signature
    ) external view returns (address key, address node, KeyStanding standing);

    /// @notice Everything stored about `key`.
    function keyInfo(address key) external view returns (EnclaveKey memory);

    /// @notice What the key signs at registration.
    function registrationDigest(
        address node,
        address key,
        bytes32 measurement,
        bytes32 documentHash,
        uint64 expiresAt
    ) external view returns (bytes32);

    /// @notice Whether keys of `measurement` are accepted.
    function isMeasurementApproved(bytes32 measurement) external view returns (bool);
}
