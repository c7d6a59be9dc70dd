pragma circom 2.1.0;

// Packs signed values into field elements: value v is stored as u = v + 2^(B-1) in B bits, k = 252 \ B
// values per word, word = sum_j u_j * 2^(B*j), values in order, the last word partially filled.
// Linear, so free in R1CS. It decodes uniquely only when every u_j is in [0, 2^B): the caller range-checks
// the values (or knows them bounded) before packing.
template PackValues(n, B) {
    assert(B >= 2 && B <= 126);
    var k = 252 \ B;
    var nw = (n + k - 1) \ k;
    signal input in[n];
    signal output out[nw];
    for (var w = 0; w < nw; w++) {
        var acc = 0;
        for (var j = 0; j < k; j++) {
            if (w * k + j < n) {
                acc += (in[w * k + j] + (1 << (B - 1))) * (1 << (B * j));
            }
        }
        out[w] <== acc;
    }
}
