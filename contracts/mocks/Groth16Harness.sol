// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {Groth16} from "../libraries/Groth16.sol";

/// @notice Test-only: exposes the protocol's Groth16 library so tests can call it directly and compare its
/// gas with snarkjs's generated verifier for the same key.
contract Groth16Harness {
    function store(uint256[] calldata key) external returns (address) {
        return Groth16.store(key);
    }

    function load(address pointer) external view returns (uint256[] memory) {
        return Groth16.load(pointer);
    }

    function isValidKey(uint256[] calldata key) external view returns (bool) {
        return Groth16.isValidKey(key);
    }

    function verify(
        address pointer,
        uint256[8] calldata proof,
        uint256[] calldata signals
    ) external view returns (bool) {
        return Groth16.verify(pointer, proof, signals);
    }
}
