pragma circom 2.1.0;

include "circomlib/circuits/bitify.circom";
include "circomlib/circuits/comparators.circom";

// Comparisons against constants, for tree ensembles' branch tests and thresholded labels. The generated
// circuit passes in - c, where c is the (constant) threshold.

// out = 1 when in >= 0, else 0, for an input known (statically) to fit in `bits` signed bits: the top bit
// of in + 2^(bits-1). Cost: bits constraints (circomlib's Num2Bits; 2^bits < p, so the decomposition is
// unique).
template IsNonNegative(bits) {
    assert(bits >= 2 && bits <= 252);
    signal input in;
    signal output out;
    component n2b = Num2Bits(bits);
    n2b.in <== in + (1 << (bits - 1));
    out <== n2b.out[bits - 1];
}

// out = 1 when in == 0, else 0: circomlib's IsZero (an inverse witness). Cost: 2 constraints.
template IsZeroValue() {
    signal input in;
    signal output out;
    component z = IsZero();
    z.in <== in;
    out <== z.out;
}
