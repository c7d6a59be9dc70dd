pragma circom 2.1.0;

// Linear layers with the weights as circuit constants (template parameters). Every output is a linear
// combination of the inputs, so these templates add no constraint once `--O2` substitutes them away:
// multiplying by a weight is free. Products are accumulated in a `var` and assigned once (a single long
// inline expression crashes the WebAssembly build of circom).

// out[r][j] = B[j] + sum_i W[j*k + i] * in[r][i], flat row-major.
template Dense(rows, k, n, W, B) {
    signal input in[rows * k];
    signal output out[rows * n];
    for (var r = 0; r < rows; r++) {
        for (var j = 0; j < n; j++) {
            var acc = B[j];
            for (var i = 0; i < k; i++) {
                acc += W[j * k + i] * in[r * k + i];
            }
            out[r * n + j] <== acc;
        }
    }
}

// 2-D convolution, NCHW, zero padding (taps that fall in the padding are skipped), with groups.
// G = [batch, c, h, w, oc, oh, ow, kh, kw, strideH, strideW, padTop, padLeft, dilH, dilW, group].
template Conv2d(G, W, B) {
    var batch = G[0]; var c = G[1]; var h = G[2]; var w = G[3];
    var oc = G[4]; var oh = G[5]; var ow = G[6]; var kh = G[7]; var kw = G[8];
    var cg = c \ G[15];
    var ocg = oc \ G[15];
    signal input in[batch * c * h * w];
    signal output out[batch * oc * oh * ow];
    for (var b = 0; b < batch; b++) {
        for (var o = 0; o < oc; o++) {
            var g = o \ ocg;
            for (var oy = 0; oy < oh; oy++) {
                for (var ox = 0; ox < ow; ox++) {
                    var acc = B[o];
                    for (var ic = 0; ic < cg; ic++) {
                        for (var ky = 0; ky < kh; ky++) {
                            var iy = oy * G[9] - G[11] + ky * G[13];
                            for (var kx = 0; kx < kw; kx++) {
                                var ix = ox * G[10] - G[12] + kx * G[14];
                                if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
                                    acc += W[((o * cg + ic) * kh + ky) * kw + kx] * in[((b * c + g * cg + ic) * h + iy) * w + ix];
                                }
                            }
                        }
                    }
                    out[((b * oc + o) * oh + oy) * ow + ox] <== acc;
                }
            }
        }
    }
}
