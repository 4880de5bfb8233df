// conv16.h: the scratch layout of the 16-bit convolutions (ops.h conv2d16_*),
// shared by the CPU's (backend/cpu/conv16.c), the GPU's
// (backend/cuda/conv16_ops.cu) and conv2d16_scratch_floats: the backend's own
// convolution scratch (conv_floats: its conv2d_scratch_floats), the weight
// decoded (Co*Ci*k*k), a second weight-sized part, then (B, Co, H, W) and
// (B, Ci, H, W). Plain C, inline, so that the CUDA library needs no libdalle.
#pragma once
#include <stdint.h>

typedef struct {
    float *conv, *w, *w2, *o, *i;
} conv16_parts;

// Floats of the whole scratch.
static inline int64_t conv16_scratch(int64_t conv_floats, int B, int Ci, int Co, int H, int W, int k) {
    return conv_floats + 2 * (int64_t)Co * Ci * k * k + (int64_t)B * (Ci + Co) * H * W;
}

// The parts of `scratch` (conv16_scratch floats).
static inline conv16_parts conv16_split(float *scratch, int64_t conv_floats, int B, int Ci, int Co, int H, int W,
                                        int k) {
    const int64_t nw = (int64_t)Co * Ci * k * k;
    conv16_parts p;
    p.conv = scratch;
    p.w = scratch + conv_floats;
    p.w2 = p.w + nw;
    p.o = p.w2 + nw;
    p.i = p.o + (int64_t)B * Co * H * W;
    return p;
}
