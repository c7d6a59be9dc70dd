pragma circom 2.1.0;

include "circomlib/circuits/bitify.circom";
include "circomlib/circuits/comparators.circom";

// Division and square roots by computed values (ONNX-ML Normalizer). Each quotient or root is a hint
// (`<--`) bound right after by a product and range checks of known width; every width keeps the values far
// below p, so each constraint holds over the integers and fixes the hint uniquely.

// floor(a / m) for m >= 1 and a field element a read as a signed integer (circom's `<` is signed).
function floorDivSigned(a, m) {
    if (a < 0) {
        return -((-a + m - 1) \ m);
    }
    return a \ m;
}

// floor(sqrt(v)) for 0 <= v < 2^(2 bits), bit by bit from the top.
function isqrtBits(v, bits) {
    var r = 0;
    for (var j = bits - 1; j >= 0; j--) {
        var c = r + (1 << j);
        if (c * c <= v) {
            r = c;
        }
    }
    return r;
}

// One row of a division by a computed divisor den, rounded to nearest (half up):
// out[i] = floor((2 N 2^shift + D) / 2D), N = num[i] * sign(den), D = |den| + [den == 0] >= 1. With
// signed = 0 the divisor is known (statically) to be >= 0 and N = num[i]; with signed = 1 its sign is the
// top bit of den + 2^(denBits-1), and a zero divisor passes the row through (out[i] = num[i]).
// The quotient q is a hint bound by: q in quotBits signed bits; rem = 2 N 2^shift + D - 2 q D in
// [0, 2^remBits) and 2D - 1 - rem in [0, 2^remBits), so 0 <= rem < 2D (2^remBits > 2 max D). The caller
// keeps |2 N 2^shift|, D and |q D| below 2^240, so the identity holds over the integers and q is the
// rounded quotient, the only one.
// Cost: 2 (IsZero) + n * (1 + quotBits + 2 remBits), and with signed = 1: + denBits + 1 + 2n.
template RowDivide(n, shift, signed, denBits, remBits, quotBits) {
    assert(n >= 1 && shift >= 0 && signed * (1 - signed) == 0);
    assert(denBits >= 2 && remBits >= 1 && quotBits >= 2 && shift + quotBits + 2 * remBits <= 240);
    signal input num[n];
    signal input den;
    signal output out[n];
    signal mag;
    signal numSigned[n];
    component sign;
    if (signed == 1) {
        sign = Num2Bits(denBits);
        sign.in <== den + (1 << (denBits - 1));
        // the top bit is 1 exactly when den >= 0: the factor is +1 or -1
        mag <== den * (2 * sign.out[denBits - 1] - 1);
        for (var i = 0; i < n; i++) {
            numSigned[i] <== num[i] * (2 * sign.out[denBits - 1] - 1);
        }
    } else {
        mag <== den;
        numSigned <== num;
    }
    component zero = IsZero();
    zero.in <== den;
    signal d <== mag + zero.out;

    signal q[n];
    signal qd[n];
    component quot[n];
    component low[n];
    component high[n];
    for (var i = 0; i < n; i++) {
        q[i] <-- floorDivSigned(2 * numSigned[i] * (1 << shift) + d, 2 * d);
        quot[i] = Num2Bits(quotBits);
        quot[i].in <== q[i] + (1 << (quotBits - 1));
        qd[i] <== q[i] * d;
        low[i] = Num2Bits(remBits);
        low[i].in <== 2 * numSigned[i] * (1 << shift) + d - 2 * qd[i];
        high[i] = Num2Bits(remBits);
        high[i].in <== 2 * d - 1 - low[i].in;
        if (signed == 1) {
            out[i] <== q[i] + zero.out * (num[i] - q[i]);
        } else {
            out[i] <== q[i];
        }
    }
}

// out[i] = floor(sqrt(in[i] * 2^shift)) for inputs known (statically) to be >= 0 with roots below 2^bits.
// The root r is a hint bound by: r in [0, 2^bits); v - r^2 and r^2 + 2r - v in [0, 2^(bits+1)) for
// v = in 2^shift, i.e. r^2 <= v < (r+1)^2 (all below 2^(2 bits + 2) << p). Cost: n * (3 bits + 3).
template Isqrt(n, shift, bits) {
    assert(n >= 1 && shift >= 0 && bits >= 1 && 2 * bits + 2 <= 240);
    signal input in[n];
    signal output out[n];
    signal sq[n];
    component root[n];
    component low[n];
    component high[n];
    for (var i = 0; i < n; i++) {
        out[i] <-- isqrtBits(in[i] * (1 << shift), bits);
        root[i] = Num2Bits(bits);
        root[i].in <== out[i];
        sq[i] <== out[i] * out[i];
        low[i] = Num2Bits(bits + 1);
        low[i].in <== in[i] * (1 << shift) - sq[i];
        high[i] = Num2Bits(bits + 1);
        high[i].in <== sq[i] + 2 * out[i] - in[i] * (1 << shift);
    }
}
