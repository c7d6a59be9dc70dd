// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title Bits of a model's allowed-verification-modes mask.
library VerificationModes {
    /// @notice The result is proved with the model's Groth16 circuit and checked on-chain at submission.
    uint8 internal constant ZK = 1;
    /// @notice Verification nodes re-execute and attest; disputes are settled later (see docs).
    uint8 internal constant OPTIMISTIC = 2;
    /// @notice The result is signed by a governance-approved enclave key.
    uint8 internal constant TEE = 4;
    /// @notice Every defined bit.
    uint8 internal constant ALL = ZK | OPTIMISTIC | TEE;
}
