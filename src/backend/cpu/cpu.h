// cpu.h: the CPU backend (backend.h): its implementation of every op of
// ops.h, named cpu_OP with the contract of OP, which backend.c puts in the
// CPU table; its memory functions; and what its files share beyond that,
// private to src/backend/cpu/ and its tests: the chunking of the im2col
// convolution, exposed so that a small test can force several chunks, and
// the arithmetic of one AdamW step (also optim.c's 16-bit-moment variant).
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/half.h"

// ---- memory and the device (backend.h's table entries): dalle_malloc'ed
// (counted, 64-byte aligned) host memory; sync is a no-op.
void *cpu_alloc(size_t bytes);
void cpu_free(void *p);
void cpu_sync(void);
void cpu_memset0(void *p, size_t bytes);
void cpu_copy(void *dst, const void *src, size_t bytes);
int cpu_mem_info(size_t *free_bytes, size_t *total_bytes);
const char *cpu_device_name(void);
const char *cpu_last_error(void);

// ---- the ops (contracts in ops.h)
void cpu_conv2d_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci, int Co, int H,
                        int W, int k, float alpha, float beta, float *scratch);
void cpu_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int B,
                         int Ci, int Co, int H, int W, int k, float alpha, float *scratch);
int64_t cpu_conv2d_scratch_floats(int Ci, int Co, int H, int W, int k);
void cpu_onehot_conv_forward(float *out, const int32_t *codes, const float *w, const float *bias, int B, int V, int Co,
                             int HW);
void cpu_relu_forward(float *out, const float *in, int64_t n);
void cpu_relu_backward(float *din, const float *dout, const float *in, int64_t n);
void cpu_maxpool2_forward(float *out, const float *in, int B, int C, int H, int W);
void cpu_maxpool2_backward(float *din, const float *dout, const float *in, int B, int C, int H, int W);
void cpu_upsample2_forward(float *out, const float *in, int B, int C, int H, int W);
void cpu_upsample2_backward(float *din, const float *dout, int B, int C, int H, int W);
void cpu_axpy(float *y, float a, const float *x, int64_t n);
void cpu_copy2d(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows, int64_t cols);
void cpu_gumbel_softmax_forward(float *z, const float *logits, const float *g, float tau, int B, int V, int P);
void cpu_gumbel_softmax_backward(float *dlogits, const float *dz, const float *z, float tau, int B, int V, int P);
void cpu_gumbel_noise(float *g, uint64_t key, uint64_t counter, int64_t first, int64_t n);
double cpu_kl_uniform_forward_backward(float *dlogits, const float *logits, float scale, int B, int V, int P);
double cpu_logit_laplace_nll(float *dstats, const float *stats, const float *x, float scale, int B, int N);
void cpu_linear_forward(float *out, const float *in, const float *w, const float *b, int64_t M, int n_in, int n_out,
                        float beta);
void cpu_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                         int64_t M, int n_in, int n_out);
void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                           int64_t M, int C);
void cpu_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const float *mean, const float *rstd, int64_t M, int C);
void cpu_gelu_forward(float *out, const float *in, int64_t n);
void cpu_gelu_backward(float *din, const float *dout, const float *in, int64_t n);
void cpu_attention_forward(float *out, float *p, const float *qkv, const int32_t *off, const int32_t *keys,
                           int64_t nnz, int B, int T, int NH, int HS);
void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *p,
                            const int32_t *off, const int32_t *keys, int64_t nnz, int B, int T, int NH, int HS,
                            float *scratch);
void cpu_attention_decode(float *out, const float *qkv, const float *kt, const float *vt, const float *ki,
                          const float *vi, const int32_t *img_keys, int n_img, int L, int W, int K, int NH, int HS,
                          float *scratch);
double cpu_softmax_xent_forward(float *logits, const int32_t *targets, int64_t M, int V);
void cpu_softmax_xent_backward(float *probs, const int32_t *targets, int64_t M, int V, float scale);
void cpu_embed_sum_forward(float *out, const float *table, const int64_t *rows, int64_t M, int K, int C);
void cpu_embed_sum_backward(float *dtable, const float *dout, const int64_t *rows, int64_t M, int K, int C);
void cpu_adamw_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1, float beta2,
                      float eps, float weight_decay, int64_t t);
void cpu_ema_update(float *ema, const float *p, int64_t n, float decay);
double cpu_grad_sumsq(const float *g, int64_t n);
void cpu_adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, float lr, float beta1,
                        float beta2, float eps, float weight_decay, int64_t t);
void cpu_to_half(uint16_t *dst, const float *src, int64_t n, half_fmt fmt);
void cpu_from_half(float *dst, const uint16_t *src, int64_t n, half_fmt fmt);
void cpu_store_half(uint16_t *dst, float *x, int64_t n, half_fmt fmt);
int64_t cpu_round_half(float *x, int64_t n, half_fmt fmt, int filter);
void cpu_linear16_forward(float *out, const float *in, const uint16_t *w, const float *b, int64_t M, int n_in,
                          int n_out, float beta, half_fmt fmt, float *scratch);
void cpu_linear16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                           int64_t M, int n_in, int n_out, half_fmt fmt, float *scratch);
// conv16.c: a 16-bit dVAE's convolutions (ops.h conv2d16_*): rounding + cpu_conv2d_*.
void cpu_conv2d16_forward(float *out, const float *in, const uint16_t *w, const float *b, int B, int Ci, int Co,
                          int H, int W, int k, float alpha, float beta, half_fmt fmt, float *scratch);
void cpu_conv2d16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                           int B, int Ci, int Co, int H, int W, int k, float alpha, half_fmt fmt, float *scratch);

// ---- AdamW's arithmetic (optim.c: cpu_adamw_update, and
// cpu_adamw_update16 with 16-bit moments). The scalars of step t, in double as
// torch computes them in Python; shrink is 1 - lr*wd (exactly 1 for wd 0).
typedef struct {
    float b1, b2, step_size, bc2_sqrt, shrink, eps;
} cpu_adam_consts;

static inline cpu_adam_consts cpu_adam_consts_at(float lr, float beta1, float beta2, float eps, float weight_decay,
                                                 int64_t t) {
    cpu_adam_consts c = {beta1, beta2, 0, 0, 1.0f - lr * weight_decay, eps};
    c.step_size = (float)((double)lr / (1.0 - pow((double)beta1, (double)t)));
    c.bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)t));
    return c;
}

// One parameter's step (torch's lerp for m).
static inline void cpu_adam_step(float *p, float *m, float *v, float g, const cpu_adam_consts *c) {
    *m += (1.0f - c->b1) * (g - *m);
    *v = c->b2 * *v + (1.0f - c->b2) * g * g;
    float denom = sqrtf(*v) / c->bc2_sqrt + c->eps;
    *p = *p * c->shrink - c->step_size * *m / denom;
}

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
// Ci + Co up to which a 3x3 convolution runs fused: each thread takes
// blocks of tiles through all the steps within its core's cache (winograd.c).
#define WG_FUSED_MAX 96
// Rows of m x m output tiles per chunk of its transforms.
int winograd_chunk_tile_rows(int Ci, int Co, int H, int W, int m);
// The tile size conv2d_forward and conv2d_backward use for a 3x3
// convolution of B images of H x W: 4 from 128 tiles of 4x4 in the batch
// on, 2 from 64 tiles of 2x2 on, 0 (im2col) below, where the a^2 GEMMs
// would be too narrow and the weight transform would not pay off (measured
// with bench/bench_conv.c and bench/bench_dvae.c). The transforms' chunks
// run across the images of a batch, so small images batch up.
int conv3x3_winograd_m(int B, int H, int W);
