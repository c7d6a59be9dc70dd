// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title The one interface the task registry calls to check a model's proof.
/// @notice An implementation checks a proof against an ordered list of public signals. The registry builds
/// the signals itself (outputs, inputs, task binding) and has checked each is below the field modulus.
interface IProofVerifier {
    /// @notice Thrown when the number of public signals is not what the circuit has.
    error ProofVerifierSignalCount(uint256 given, uint256 expected);

    /// @notice Number of public signals the circuit exposes.
    function publicSignalCount() external view returns (uint256);

    /// @notice Whether `proof` proves the circuit's statement for `publicSignals`.
    /// @param proof Groth16 proof as 8 words in the order of the verifier call data that snarkjs exports
    /// (`exportSolidityCallData`): a[0], a[1], b[0][0], b[0][1], b[1][0], b[1][1], c[0], c[1].
    function verify(uint256[8] calldata proof, uint256[] calldata publicSignals) external view returns (bool);
}
