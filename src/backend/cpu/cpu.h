// cpu.h: what the CPU backend's files share beyond ops.h, private to
// src/backend/cpu/ and its tests: the chunking of the im2col convolution,
// exposed so that a small test can force several chunks.
#pragma once
#include <stdint.h>

// A k x k convolution (k > 1) unrolls its input (im2col) into a matrix of
// Ci*k*k rows by (rows*W) columns, `rows` output rows at a time. The public
// ops pick `rows` with conv2d_chunk_rows so that the matrix stays under
// CPU_CONV_CHUNK_FLOATS floats where one row allows. 2M floats (8 MB) measured
// best on the dVAE's layers with bench/bench_conv.c (1M to 4M within 5%,
// 8M up to 20% slower on the 256x256 layers: the chunk must stay in cache).
#define CPU_CONV_CHUNK_FLOATS (1 << 21)

// Output rows per im2col chunk for these sizes: in [1, H]. Meaningless for k = 1.
int conv2d_chunk_rows(int Ci, int H, int W, int k);

// conv2d_forward / conv2d_backward with an explicit chunk of `rows` output
// rows (1 <= rows <= H); `scratch` has at least Ci*k*k*rows*W floats when k > 1.
void conv2d_forward_rows(float *out, const float *in, const float *w, const float *b, int B,
                         int Ci, int Co, int H, int W, int k, float alpha, float beta, int rows,
                         float *scratch);
void conv2d_backward_rows(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int B, int Ci, int Co, int H, int W, int k, float alpha,
                          int rows, float *scratch);

// The 3x3 convolution by Winograd's F(m x m, 3x3), m = 2 or 4 (winograd.c):
// same contract as conv2d_forward, with `scratch` of
// winograd_scratch_floats(Ci, Co, H, W, m) floats.
void conv3x3_winograd_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci,
                              int Co, int H, int W, float alpha, float beta, int m, float *scratch);
// dw (Co, Ci, 3, 3) += alpha * the weight gradient of that convolution, by
// the same transforms; `scratch` as for the forward.
void conv3x3_winograd_backward_filter(float *dw, const float *dout, const float *in, int B, int Ci, int Co, int H,
                                      int W, float alpha, int m, float *scratch);
int64_t winograd_scratch_floats(int Ci, int Co, int H, int W, int m);
// Rows of m x m output tiles per chunk of its transforms.
int winograd_chunk_tile_rows(int Ci, int Co, int H, int W, int m);
// The tile size conv2d_forward (and conv2d_backward for din) use for a 3x3
// convolution of H x W: 4 from 256 tiles of 4x4 on (64x64 and up), 2 from 64
// tiles of 2x2 on, 0 (im2col) below, where the a^2 GEMMs would be too
// narrow and the weight transform would not pay off (measured with
// bench/bench_conv.c and bench/bench_dvae.c).
int conv3x3_winograd_m(int H, int W);
