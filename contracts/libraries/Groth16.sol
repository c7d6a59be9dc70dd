// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

/// @title The protocol's one Groth16 verifier over BN254, reading a model's verification key from chain.
/// @notice No model-supplied code decides settlement: a model registers its verification key, which the
/// model registry validates and stores immutably as the code of a data contract (SSTORE2 layout: a STOP
/// byte, then the words); the task registry verifies every proof with this library against that key.
/// @dev Key layout, in the word order the EIP-197 pairing precompile takes (G2 coordinates imaginary part
/// first, as snarkjs's `exportSolidityCallData` writes them): alpha1 (2 words), beta2 (4), gamma2 (4),
/// delta2 (4), then IC[0..n] (2 words each) for n public signals: `14 + 2 * (n + 1)` words.
library Groth16 {
    /// @notice The BN254 base field modulus: every coordinate is below it.
    uint256 internal constant BASE_FIELD =
        21888242871839275222246405745257275088696311157297823662689037894645226208583;
    /// @notice The BN254 scalar field modulus: every public signal is below it.
    uint256 internal constant SCALAR_FIELD =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    /// @notice Words before IC[0]: alpha1 (2) + beta2 (4) + gamma2 (4) + delta2 (4).
    uint256 internal constant FIXED_KEY_WORDS = 14;

    // Precompiles (EIP-196, EIP-197).
    uint256 private constant _EC_ADD = 0x06;
    uint256 private constant _EC_MUL = 0x07;
    uint256 private constant _EC_PAIRING = 0x08;
    /// @dev ecAdd costs 150 gas (EIP-1108); a failing precompile call consumes what it was given, so the
    /// batch path gives each call a fixed allowance (a bad proof must leave gas to check the batch one by one).
    uint256 private constant _EC_ADD_GAS = 1_000;
    /// @dev ecMul costs 6,000 gas (EIP-1108).
    uint256 private constant _EC_MUL_GAS = 10_000;
    /// @dev Pairing of three pairs: 45,000 + 3 * 34,000 (EIP-1108), with room to spare.
    uint256 private constant _PAIRING_3_GAS = 160_000;

    /// @notice Number of key words for a circuit with `signalCount` public signals.
    function keyWords(uint256 signalCount) internal pure returns (uint256) {
        return FIXED_KEY_WORDS + 2 * (signalCount + 1);
    }

    /// @notice Whether `key` is a usable verification key: every coordinate below the base field, every G1
    /// point on the curve, every G2 point on the curve and in the subgroup (the pairing precompile refuses
    /// anything else), none of alpha, beta, gamma, delta the point at infinity, and gamma != delta (equal
    /// gamma and delta let anyone forge proofs). The caller checks the length against the signal layout.
    function isValidKey(uint256[] calldata key) internal view returns (bool) {
        uint256 length = key.length;
        if (length < FIXED_KEY_WORDS + 2 || length % 2 != 0) return false;
        for (uint256 i = 0; i < length; ++i) {
            if (key[i] >= BASE_FIELD) return false;
        }
        if (_isZero(key, 0, 2) || _isZero(key, 2, 4) || _isZero(key, 6, 4) || _isZero(key, 10, 4))
            return false;
        if (key[6] == key[10] && key[7] == key[11] && key[8] == key[12] && key[9] == key[13]) return false;
        if (!_isG1(key[0], key[1])) return false;
        for (uint256 i = FIXED_KEY_WORDS; i < length; i += 2) {
            if (!_isG1(key[i], key[i + 1])) return false;
        }
        return _areG2(key);
    }

    /// @notice Stores `key` as the code of a new data contract and returns its address.
    /// @dev Creation code `61 <len> 80 60 0a 3d 39 3d f3` copies the runtime that follows it (10 bytes in)
    /// and returns it: PUSH2 len, DUP1, PUSH1 10, RETURNDATASIZE (0), CODECOPY, RETURNDATASIZE (0), RETURN.
    /// The runtime starts with a STOP byte so the data contract can never be executed.
    function store(uint256[] calldata key) internal returns (address pointer) {
        bytes memory runtime = abi.encodePacked(hex"00", key);
        bytes memory creation = abi.encodePacked(
            hex"61",
            uint16(runtime.length),
            hex"80600a3d393df3",
            runtime
        );
        // Deploys the data contract; memory is only read.
        assembly ("memory-safe") {
            pointer := create(0, add(creation, 0x20), mload(creation))
        }
    }

    /// @notice The words of the key stored at `pointer`.
    function load(address pointer) internal view returns (uint256[] memory key) {
        uint256 size = pointer.code.length;
        if (size == 0) return key;
        uint256 words = (size - 1) / 32;
        key = new uint256[](words);
        // Copies exactly `words` words into the array just allocated.
        assembly ("memory-safe") {
            extcodecopy(pointer, add(key, 0x20), 1, mul(words, 0x20))
        }
    }

    /// @notice Whether `proof` (a, b, c as 8 words in pairing-precompile order) proves the statement with
    /// `signals` under the key stored at `pointer`. False for a key of the wrong size, a proof coordinate
    /// at or above the base field, a signal at or above the scalar field, or a failing pairing.
    function verify(
        address pointer,
        uint256[8] calldata proof,
        uint256[] memory signals
    ) internal view returns (bool ok) {
        uint256 n = signals.length;
        uint256 keyBytes = keyWords(n) * 32;
        if (pointer.code.length != keyBytes + 1) return false;
        // Scratch memory past the free pointer, never kept: the pairing input (24 words at p), the key copy
        // (at k), and the ecMul/ecAdd operands (at s). vk_x accumulates in place inside the pairing input.
        assembly ("memory-safe") {
            // Range checks first: every proof coordinate below q, every signal below r (no reduction).
            ok := 1
            for {
                let i := 0
            } lt(i, 8) {
                i := add(i, 1)
            } {
                ok := and(ok, lt(calldataload(add(proof, mul(i, 0x20))), BASE_FIELD))
            }
            for {
                let i := 0
            } lt(i, n) {
                i := add(i, 1)
            } {
                ok := and(ok, lt(mload(add(add(signals, 0x20), mul(i, 0x20))), SCALAR_FIELD))
            }
            let p := mload(0x40)
            let k := add(p, 0x300)
            let s := add(k, keyBytes)
            extcodecopy(pointer, k, 1, keyBytes)

            // vk_x = IC[0] + sum_i signals[i] * IC[i + 1], at p + 0x180.
            let acc := add(p, 0x180)
            mstore(acc, mload(add(k, 0x1c0)))
            mstore(add(acc, 0x20), mload(add(k, 0x1e0)))
            let ic := add(k, 0x200)
            let sig := add(signals, 0x20)
            for {
                let i := 0
            } lt(i, n) {
                i := add(i, 1)
            } {
                mstore(s, mload(ic))
                mstore(add(s, 0x20), mload(add(ic, 0x20)))
                mstore(add(s, 0x40), mload(sig))
                ok := and(ok, staticcall(gas(), _EC_MUL, s, 0x60, s, 0x40))
                mstore(add(s, 0x40), mload(acc))
                mstore(add(s, 0x60), mload(add(acc, 0x20)))
                ok := and(ok, staticcall(gas(), _EC_ADD, s, 0x80, acc, 0x40))
                ic := add(ic, 0x40)
                sig := add(sig, 0x20)
            }

            // e(-A, B) * e(alpha, beta) * e(vk_x, gamma) * e(C, delta) == 1
            mstore(p, calldataload(proof))
            mstore(add(p, 0x20), mod(sub(BASE_FIELD, calldataload(add(proof, 0x20))), BASE_FIELD))
            calldatacopy(add(p, 0x40), add(proof, 0x40), 0x80)
            mcopy(add(p, 0xc0), k, 0xc0)
            mcopy(add(p, 0x1c0), add(k, 0xc0), 0x80)
            calldatacopy(add(p, 0x240), add(proof, 0xc0), 0x40)
            mcopy(add(p, 0x280), add(k, 0x140), 0x80)
            ok := and(ok, staticcall(gas(), _EC_PAIRING, p, 0x300, s, 0x20))
            ok := and(ok, eq(mload(s), 1))
        }
    }

    /// @notice Whether every proof of `proofs` proves its statement under the key stored at `pointer`, checked
    /// together: `signals` holds each proof's public signals one after the other (`signals.length` is a
    /// multiple of `proofs.length`). One pairing product of N + 3 pairs instead of N of 4 pairs each.
    /// @dev Batch verification by a random linear combination: with r_0 = 1 and 128-bit r_i derived by
    /// hashing the key, every proof and every signal (Fiat-Shamir: the prover fixes the proofs before the
    /// weights exist), prod e(-r_i A_i, B_i) * e(sum(r_i) alpha, beta) * e(sum_i r_i vk_x_i, gamma) *
    /// e(sum r_i C_i, delta) == 1 holds for a batch with an invalid proof with probability at most about
    /// 2^-128. sum_i r_i vk_x_i = sum(r_i) IC[0] + sum_j (sum_i r_i s_ij mod r) IC[j + 1], so the key's points
    /// are multiplied once per batch, not once per proof. The same range checks as `verify` apply to every
    /// proof coordinate and signal; ecMul refuses G1 points off the curve and the pairing refuses G2 points
    /// outside the subgroup.
    function verifyBatch(
        address pointer,
        uint256[8][] memory proofs,
        uint256[] memory signals
    ) internal view returns (bool ok) {
        uint256 count = proofs.length;
        if (count == 0 || signals.length % count != 0) return false;
        uint256 n = signals.length / count;
        uint256 keyBytes = keyWords(n) * 32;
        if (pointer.code.length != keyBytes + 1) return false;
        uint256[] memory key = load(pointer);
        ok = true;
        for (uint256 i = 0; i < signals.length; ++i) ok = ok && signals[i] < SCALAR_FIELD;
        bytes32 seed = keccak256(abi.encode(pointer, proofs, signals));
        // Pairing input: count + 3 pairs of (G1: 2 words, G2: 4 words).
        uint256[] memory pairs = new uint256[]((count + 3) * 6);
        uint256[] memory coefficients = new uint256[](n + 1);
        uint256[2] memory cSum;
        for (uint256 i = 0; ok && i < count; ++i) {
            uint256 weight = i == 0 ? 1 : (uint256(keccak256(abi.encode(seed, i))) >> 128) | 1;
            ok = _addProof(proofs[i], weight, pairs, i * 6, cSum);
            coefficients[0] += weight;
            for (uint256 j = 0; j < n; ++j) {
                coefficients[j + 1] = addmod(
                    coefficients[j + 1],
                    mulmod(weight, signals[i * n + j], SCALAR_FIELD),
                    SCALAR_FIELD
                );
            }
        }
        if (!ok) return false;
        // The weighted sum of the proofs' vk_x: sum_j coefficients[j] * IC[j].
        uint256[2] memory vkSum;
        for (uint256 j = 0; ok && j <= n; ++j) {
            uint256 ic = FIXED_KEY_WORDS + 2 * j;
            (uint256 x, uint256 y, bool okMul) = _ecMul(key[ic], key[ic + 1], coefficients[j]);
            bool okAdd;
            (vkSum[0], vkSum[1], okAdd) = _ecAdd(vkSum[0], vkSum[1], x, y);
            ok = okMul && okAdd;
        }
        (uint256 alphaX, uint256 alphaY, bool okAlpha) = _ecMul(key[0], key[1], coefficients[0]);
        if (!ok || !okAlpha) return false;
        uint256 tail = count * 6;
        // (sum r_i) alpha with beta; the weighted vk_x with gamma; the weighted C with delta.
        pairs[tail] = alphaX;
        pairs[tail + 1] = alphaY;
        pairs[tail + 6] = vkSum[0];
        pairs[tail + 7] = vkSum[1];
        pairs[tail + 12] = cSum[0];
        pairs[tail + 13] = cSum[1];
        for (uint256 w = 0; w < 4; ++w) {
            pairs[tail + 2 + w] = key[2 + w];
            pairs[tail + 8 + w] = key[6 + w];
            pairs[tail + 14 + w] = key[10 + w];
        }
        // The pairing reads the array's words in place; the result goes to scratch at the free pointer.
        assembly ("memory-safe") {
            let out := mload(0x40)
            // 45,000 + 34,000 per pair (EIP-1108), with room to spare: a failing call burns only this.
            ok := staticcall(
                add(50000, mul(div(mload(pairs), 6), 35000)),
                _EC_PAIRING,
                add(pairs, 0x20),
                mul(mload(pairs), 0x20),
                out,
                0x20
            )
            ok := and(ok, eq(mload(out), 1))
        }
    }

    /// @dev Writes -weight * A and B of `proof` as pair `at / 6` of `pairs`, adds weight * C to `cSum`; false
    /// for a coordinate at or above the base field or a G1 point off the curve.
    function _addProof(
        uint256[8] memory proof,
        uint256 weight,
        uint256[] memory pairs,
        uint256 at,
        uint256[2] memory cSum
    ) private view returns (bool ok) {
        ok = true;
        for (uint256 w = 0; w < 8; ++w) ok = ok && proof[w] < BASE_FIELD;
        (uint256 ax, uint256 ay, bool okA) = _ecMul(proof[0], proof[1], weight);
        (uint256 cx, uint256 cy, bool okC) = _ecMul(proof[6], proof[7], weight);
        bool okSum;
        (cSum[0], cSum[1], okSum) = _ecAdd(cSum[0], cSum[1], cx, cy);
        pairs[at] = ax;
        pairs[at + 1] = (BASE_FIELD - ay) % BASE_FIELD;
        for (uint256 w = 0; w < 4; ++w) pairs[at + 2 + w] = proof[2 + w];
        return ok && okA && okC && okSum;
    }

    /// @dev s * (x, y) on G1; false when the point is not on the curve.
    function _ecMul(uint256 x, uint256 y, uint256 s) private view returns (uint256 rx, uint256 ry, bool ok) {
        // Three words of scratch at the free pointer, never kept.
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, x)
            mstore(add(m, 0x20), y)
            mstore(add(m, 0x40), s)
            ok := staticcall(_EC_MUL_GAS, _EC_MUL, m, 0x60, m, 0x40)
            rx := mload(m)
            ry := mload(add(m, 0x20))
        }
    }

    /// @dev (x1, y1) + (x2, y2) on G1; false when a point is not on the curve.
    function _ecAdd(
        uint256 x1,
        uint256 y1,
        uint256 x2,
        uint256 y2
    ) private view returns (uint256 rx, uint256 ry, bool ok) {
        // Four words of scratch at the free pointer, never kept.
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, x1)
            mstore(add(m, 0x20), y1)
            mstore(add(m, 0x40), x2)
            mstore(add(m, 0x60), y2)
            ok := staticcall(_EC_ADD_GAS, _EC_ADD, m, 0x80, m, 0x40)
            rx := mload(m)
            ry := mload(add(m, 0x20))
        }
    }

    function _isZero(uint256[] calldata key, uint256 from, uint256 count) private pure returns (bool) {
        for (uint256 i = from; i < from + count; ++i) {
            if (key[i] != 0) return false;
        }
        return true;
    }

    /// @dev ecAdd(P, O) succeeds exactly when P is on the curve (G1 has cofactor 1).
    function _isG1(uint256 x, uint256 y) private view returns (bool ok) {
        // Four words of scratch at the free pointer, never kept.
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, x)
            mstore(add(m, 0x20), y)
            mstore(add(m, 0x40), 0)
            mstore(add(m, 0x60), 0)
            ok := staticcall(_EC_ADD_GAS, _EC_ADD, m, 0x80, m, 0x40)
        }
    }

    /// @dev The pairing precompile refuses G2 points off the curve or outside the subgroup, so a pairing of
    /// the G1 generator with beta, gamma and delta succeeds (whatever its result) exactly when all are valid.
    function _areG2(uint256[] calldata key) private view returns (bool ok) {
        // 18 words of scratch at the free pointer, never kept.
        assembly ("memory-safe") {
            let m := mload(0x40)
            for {
                let j := 0
            } lt(j, 3) {
                j := add(j, 1)
            } {
                let at := add(m, mul(j, 0xc0))
                mstore(at, 1)
                mstore(add(at, 0x20), 2)
                calldatacopy(add(at, 0x40), add(key.offset, mul(add(2, mul(j, 4)), 0x20)), 0x80)
            }
            ok := staticcall(_PAIRING_3_GAS, _EC_PAIRING, m, 0x240, m, 0x20)
        }
    }
}
