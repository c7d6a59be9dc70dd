// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IProofVerifier} from "../interfaces/IProofVerifier.sol";

/// @title Adapter from `IProofVerifier` to a snarkjs-generated Groth16 verifier.
/// @notice snarkjs verifiers expose `verifyProof(uint[2],uint[2][2],uint[2],uint[N])`, whose selector depends
/// on N. The adapter computes it once and forwards the proof and the signals as one static-array call.
contract Groth16VerifierAdapter is IProofVerifier {
    /// @notice The snarkjs verifier contract.
    address public immutable groth16Verifier;
    uint256 private immutable _signalCount;
    bytes4 private immutable _selector;

    /// @notice Thrown when the wrapped verifier is not a contract or the circuit has no public signal.
    error Groth16VerifierAdapterInvalidConfig(address verifier, uint256 signalCount);

    constructor(address verifier, uint256 signalCount) {
        if (verifier.code.length == 0 || signalCount == 0) {
            revert Groth16VerifierAdapterInvalidConfig(verifier, signalCount);
        }
        groth16Verifier = verifier;
        _signalCount = signalCount;
        _selector = bytes4(
            keccak256(
                abi.encodePacked(
                    "verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[",
                    _toDecimal(signalCount),
                    "])"
                )
            )
        );
    }

    /// @inheritdoc IProofVerifier
    function publicSignalCount() external view returns (uint256) {
        return _signalCount;
    }

    /// @inheritdoc IProofVerifier
    function verify(uint256[8] calldata proof, uint256[] calldata publicSignals) external view returns (bool) {
        if (publicSignals.length != _signalCount) {
            revert ProofVerifierSignalCount(publicSignals.length, _signalCount);
        }
        // Static arrays are encoded inline, so the call data is the selector, the 8 proof words, then the
        // signals: exactly the ABI encoding of verifyProof(a, b, c, signals).
        bytes memory callData = abi.encodePacked(_selector, proof, publicSignals);
        (bool ok, bytes memory ret) = groth16Verifier.staticcall(callData);
        return ok && ret.length == 32 && abi.decode(ret, (bool));
    }

    function _toDecimal(uint256 value) private pure returns (bytes memory out) {
        if (value == 0) return "0";
        uint256 digits;
        for (uint256 v = value; v != 0; v /= 10) ++digits;
        out = new bytes(digits);
        for (; value != 0; value /= 10) out[--digits] = bytes1(uint8(48 + (value % 10)));
    }
}
