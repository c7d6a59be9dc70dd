// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {IProofVerifier} from "../interfaces/IProofVerifier.sol";

/// @notice Test-only fault: a broken verifier that accepts any proof. Registering a model with it lets a
/// test settle a forged result on chain, to show that an independent audit catches what the chain let pass.
contract AcceptAllVerifier is IProofVerifier {
    uint256 public immutable publicSignalCount;

    constructor(uint256 signalCount) {
        publicSignalCount = signalCount;
    }

    function verify(uint256[8] calldata, uint256[] calldata publicSignals) external view returns (bool) {
        if (publicSignals.length != publicSignalCount)
            revert ProofVerifierSignalCount(publicSignals.length, publicSignalCount);
        return true;
    }
}
