// ops.h: the op interface the models call. Each op is a forward/backward pair
// of plain functions: outputs first, then inputs, then weights, then sizes.
// Backward functions ACCUMULATE (+=) into every gradient they write, so a
// caller zeroes gradients once per step. The CPU implementation lives in
// backend/cpu/; a GPU one implements the same names behind the same contract.
//
// Sizes: B batch, C/Ci/Co channels, H/W spatial, k kernel side, V vocabulary.
// Images and feature maps are NCHW float32: x[((b*C + c)*H + y)*W + x].
#pragma once
#include <stdint.h>

// ---- 2-D convolution: stride 1, zero padding (k-1)/2 (k odd), no groups,
// exactly torch.nn.functional.conv2d(x, w, b, padding=(k-1)//2).
//   out (B, Co, H, W) = alpha * (conv(in, w) + b) + beta * out
//   in (B, Ci, H, W), w (Co, Ci, k, k), b (Co,) or NULL.
// beta = 0 overwrites out (its old contents may be garbage, even NaN).
// `scratch` has at least conv2d_scratch_floats(Ci, Co, H, W, k) floats (may be
// NULL when that is 0).
void conv2d_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci,
                    int Co, int H, int W, int k, float alpha, float beta, float *scratch);
// Gradients of the forward above w.r.t. in, w, b, scaled by alpha (the beta
// path's gradient, beta * dout, is the caller's). din, dw, db may each be NULL.
//   dout (B, Co, H, W), in (B, Ci, H, W) the forward's input.
void conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, int B, int Ci, int Co, int H, int W, int k, float alpha,
                     float *scratch);
// Scratch (in floats) that conv2d_forward/backward need for these sizes.
int64_t conv2d_scratch_floats(int Ci, int Co, int H, int W, int k);

// ---- 1x1 convolution of a one-hot input, as the embedding lookup it is:
//   out[b, c, p] = w[c, codes[b, p]] + bias[c]
//   out (B, Co, HW), codes (B, HW) in [0, V), w (Co, V, 1, 1), bias (Co,) or NULL
void onehot_conv_forward(float *out, const int32_t *codes, const float *w, const float *bias, int B,
                         int V, int Co, int HW);

// ---- ReLU: out (n) = max(in, 0). out may equal in.
void relu_forward(float *out, const float *in, int64_t n);
// din (n) += dout * (in > 0). `in` is the forward's input, or its output
// (same sign where it matters, so a caller may keep only one of them).
void relu_backward(float *din, const float *dout, const float *in, int64_t n);

// ---- Max-pool, kernel 2, stride 2 (torch MaxPool2d(2); H, W even; first max
// wins ties).  out (B, C, H/2, W/2), in (B, C, H, W).
void maxpool2_forward(float *out, const float *in, int B, int C, int H, int W);
// din (B, C, H, W) += dout routed to the max of each window (recomputed from in).
void maxpool2_backward(float *din, const float *dout, const float *in, int B, int C, int H, int W);

// ---- Nearest-neighbour upsampling x2.  out (B, C, 2H, 2W), in (B, C, H, W).
void upsample2_forward(float *out, const float *in, int B, int C, int H, int W);
// din (B, C, H, W) += sum of dout over each 2x2 block.
void upsample2_backward(float *din, const float *dout, int B, int C, int H, int W);

// ---- Elementwise helpers.
// y (n) += a * x
void axpy(float *y, float a, const float *x, int64_t n);
