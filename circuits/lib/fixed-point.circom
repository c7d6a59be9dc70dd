pragma circom 2.1.0;

include "circomlib/circuits/bitify.circom";

// Fixed-point building blocks. A value v is a field element holding a signed integer; "fits in b signed
// bits" means v + 2^(b-1) lies in [0, 2^b). None of these templates uses `<--`: every hint lives inside
// circomlib's Num2Bits, which constrains each bit to {0,1} and their weighted sum to its input, and
// 2^n < p for every n used here, so the decomposition is unique.

// Proves that each in[i] fits in `bits` signed bits.
template SignedRangeCheck(n, bits) {
    assert(bits >= 1 && bits <= 252);
    signal input in[n];
    component n2b[n];
    for (var i = 0; i < n; i++) {
        n2b[i] = Num2Bits(bits);
        n2b[i].in <== in[i] + (1 << (bits - 1));
    }
}

// out[i] = floor((in[i] + 2^(shift-1)) / 2^shift), proven to fit in `bits` signed bits; with relu = 1,
// out[i] = max(that, 0). One decomposition of shift + bits bits: the low `shift` bits are the remainder
// (so it is range-checked to [0, 2^shift)), the high `bits` bits are out + 2^(bits-1), and the top bit is
// 1 exactly when out >= 0. Cost: shift + bits constraints, + 1 for the ReLU product.
template Rescale(n, shift, bits, relu) {
    assert(shift >= 1 && bits >= 2 && shift + bits <= 252);
    assert(relu == 0 || relu == 1);
    signal input in[n];
    signal output out[n];
    component n2b[n];
    for (var i = 0; i < n; i++) {
        n2b[i] = Num2Bits(shift + bits);
        n2b[i].in <== in[i] + (1 << (shift - 1)) + (1 << (shift + bits - 1));
        var q = 0;
        for (var j = 0; j < bits; j++) {
            q += n2b[i].out[shift + j] * (1 << j);
        }
        if (relu == 1) {
            out[i] <== (q - (1 << (bits - 1))) * n2b[i].out[shift + bits - 1];
        } else {
            out[i] <== q - (1 << (bits - 1));
        }
    }
}

// out[i] = max(in[i], 0) for inputs known (statically) to fit in `bits` signed bits. The sign bit is the
// top bit of in + 2^(bits-1). Cost: bits + 1 constraints.
template Relu(n, bits) {
    assert(bits >= 2 && bits <= 252);
    signal input in[n];
    signal output out[n];
    component n2b[n];
    for (var i = 0; i < n; i++) {
        n2b[i] = Num2Bits(bits);
        n2b[i].in <== in[i] + (1 << (bits - 1));
        out[i] <== in[i] * n2b[i].out[bits - 1];
    }
}

// out = max(in[0..n-1]) where every difference in[i] - in[j] fits in `bits` signed bits.
// Cost: (n - 1) * (bits + 1) constraints.
template MaxN(n, bits) {
    assert(n >= 1 && bits >= 2 && bits <= 252);
    signal input in[n];
    signal output out;
    signal m[n];
    component n2b[n];
    m[0] <== in[0];
    for (var i = 1; i < n; i++) {
        n2b[i] = Num2Bits(bits);
        n2b[i].in <== in[i] - m[i - 1] + (1 << (bits - 1));
        // the top bit is 1 exactly when in[i] >= m[i-1]
        m[i] <== m[i - 1] + (in[i] - m[i - 1]) * n2b[i].out[bits - 1];
    }
    out <== m[n - 1];
}

// out = the first index of the maximum of in[0..n-1] (ONNX ArgMax, select_last_index = 0), where every
// difference minus one fits in `bits` signed bits. Cost: (n - 1) * (bits + 2) constraints.
template ArgMaxN(n, bits) {
    assert(n >= 1 && bits >= 2 && bits <= 252);
    signal input in[n];
    signal output out;
    signal m[n];
    signal idx[n];
    component n2b[n];
    m[0] <== in[0];
    idx[0] <== 0;
    for (var i = 1; i < n; i++) {
        n2b[i] = Num2Bits(bits);
        // the top bit is 1 exactly when in[i] - m[i-1] - 1 >= 0, i.e. in[i] is strictly greater
        n2b[i].in <== in[i] - m[i - 1] - 1 + (1 << (bits - 1));
        m[i] <== m[i - 1] + (in[i] - m[i - 1]) * n2b[i].out[bits - 1];
        idx[i] <== idx[i - 1] + (i - idx[i - 1]) * n2b[i].out[bits - 1];
    }
    out <== idx[n - 1];
}
