// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {Groth16} from "./Groth16.sol";

/// @title Public-signal layout shared by the compiler, the task registry, workers and dapps.
/// @notice A model circuit's public signals are `[outputWords..., inputWords..., taskBinding]`. Each word packs
/// `valuesPerWord = 252 / packBits` fixed-point values, value j of a word in bits [j*packBits, (j+1)*packBits),
/// each stored with an offset of 2^(packBits-1) so that signed values pack as unsigned ones. The circuit
/// range-checks every packed value, so a word decodes one way only.
library PublicSignals {
    /// @notice The BN254 scalar field modulus: every public signal must be below it.
    uint256 internal constant SNARK_SCALAR_FIELD = Groth16.SCALAR_FIELD;
    /// @notice Payload bits of a packed word: the largest multiple of a value width that stays below the
    /// 254-bit modulus with room to spare.
    uint256 internal constant WORD_PAYLOAD_BITS = 252;

    /// @notice Thrown by `valueAt` when `index` is beyond the packed words or `packBits` is out of range.
    error PublicSignalsIndexOutOfRange(uint256 index, uint256 words, uint8 packBits);

    /// @notice The value that ties a proof to one task and one node: keccak(chain id, registry, task id,
    /// node) reduced into the field.
    function taskBinding(
        uint256 chainId,
        address registry,
        uint256 taskId,
        address node
    ) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(chainId, registry, taskId, node))) % SNARK_SCALAR_FIELD;
    }

    /// @notice Value `index` (row-major over the model's output tensor) of packed `words`, as a signed
    /// fixed-point integer (divide by 2^scaleBits for the real number).
    function valueAt(uint256[] memory words, uint256 index, uint8 packBits) internal pure returns (int256) {
        if (packBits == 0 || packBits > WORD_PAYLOAD_BITS)
            revert PublicSignalsIndexOutOfRange(index, words.length, packBits);
        uint256 perWord = WORD_PAYLOAD_BITS / packBits;
        uint256 wordIndex = index / perWord;
        if (wordIndex >= words.length) revert PublicSignalsIndexOutOfRange(index, words.length, packBits);
        uint256 shift = (index % perWord) * packBits;
        uint256 raw = (words[wordIndex] >> shift) & ((uint256(1) << packBits) - 1);
        // raw < 2^252 and the offset < 2^251, so both fit in int256.
        return int256(raw) - int256(uint256(1) << (packBits - 1));
    }
}
