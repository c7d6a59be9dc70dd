pragma circom 2.1.0;

include "circomlib/circuits/poseidon.circom";

// Poseidon commitment to a list of field elements (the packed input words), a chain over chunks of 15:
//   h_0 = nValues (domain separation: the count of packed values, fixed per circuit)
//   h_{c+1} = Poseidon16(h_c, words[15c], ..., words[15c + 14])   (missing words are 0)
//   out = h_last
// The same construction is implemented in TypeScript (zkml/commitment.ts) for requesters and workers.
template InputCommitment(nWords, nValues) {
    assert(nWords >= 1);
    var nChunks = (nWords + 14) \ 15;
    signal input words[nWords];
    signal output out;
    component h[nChunks];
    for (var c = 0; c < nChunks; c++) {
        h[c] = Poseidon(16);
        if (c == 0) {
            h[c].inputs[0] <== nValues;
        } else {
            h[c].inputs[0] <== h[c - 1].out;
        }
        for (var j = 0; j < 15; j++) {
            if (c * 15 + j < nWords) {
                h[c].inputs[j + 1] <== words[c * 15 + j];
            } else {
                h[c].inputs[j + 1] <== 0;
            }
        }
    }
    out <== h[nChunks - 1].out;
}
