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

// The interval of `in` among the ascending cut points c[0] < ... < c[k-1], one-hot: out[m] = 1 exactly
// when lo_m <= in < hi_m, with lo_0 = lo, lo_m = c[m-1], hi_m = c[m], hi_k = hi; `in` is known to lie in
// [lo, hi) and every interval is narrower than 2^bits. The selection is a hint (`<--`) bound by the
// constraints: each out[m] is 0 or 1, they sum to 1, and in - lo_sel and hi_sel - 1 - in are both in
// [0, 2^bits) (2^bits << p, so nothing wraps): the selected interval contains `in`, and intervals are
// disjoint, so it is the only one. Every "in < c[i]" test is then the free sum out[0] + ... + out[i].
// Cost: k + 1 constraints (booleanity; the sum is linear) + 2 * bits.
template IntervalOneHot(k, bits, lo, hi, c) {
    assert(bits >= 1 && bits <= 252);
    signal input in;
    signal output out[k + 1];
    var low = 0;
    var high = 0;
    var total = 0;
    for (var m = 0; m <= k; m++) {
        var a = m == 0 ? lo : c[m - 1];
        var b = m == k ? hi : c[m];
        out[m] <-- (in >= a && in < b) ? 1 : 0;
        out[m] * (out[m] - 1) === 0;
        low += out[m] * a;
        high += out[m] * b;
        total += out[m];
    }
    total === 1;
    component lower = Num2Bits(bits);
    lower.in <== in - low;
    component upper = Num2Bits(bits);
    upper.in <== high - 1 - in;
}
