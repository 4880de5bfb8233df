// ops.h: the op interface the models call. Each op is a forward/backward pair
// of plain functions: outputs first, then inputs, then weights, then sizes.
// Backward functions ACCUMULATE (+=) into every gradient they write, so a
// caller zeroes gradients once per step. Each function here calls the entry
// of the same name in the selected backend's table (backend.h, backend.c):
// the CPU's (backend/cpu/, cpu_OP, the reference) or the GPU's. Every pointer
// an op receives comes from backend_alloc (on the CPU any host memory does).
//
// Sizes: B batch, C/Ci/Co channels, H/W spatial, k kernel side, V vocabulary.
// Images and feature maps are NCHW float32: x[((b*C + c)*H + y)*W + x].
#pragma once
#include <stdint.h>

#include "core/half.h"

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
// A strided 2-D copy: dst[r*dst_stride + c] = src[r*src_stride + c] for
// r < rows, c < cols (strides in floats, >= cols); the regions must not overlap.
void copy2d(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows, int64_t cols);

// ---- Transformer ops. Sizes: M rows (tokens),
// C channels, B batch, T positions, NH heads, HS head size.
// Linear: out (M, n_out) = in (M, n_in) . w^T + b + beta * out;  w (n_out, n_in)
// (PyTorch's nn.Linear layout), b (n_out) or NULL; beta 0 overwrites.
void linear_forward(float *out, const float *in, const float *w, const float *b, int64_t M, int n_in, int n_out,
                    float beta);
// din (M, n_in) += dout . w;  dw (n_out, n_in) += dout^T . in;  db (n_out) += column
// sums of dout.
// Any of din, dw, db may be NULL.
void linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                     int64_t M, int n_in, int n_out);
// LayerNorm over the last dimension, eps 1e-5 (torch.nn.LayerNorm):
//   out (M, C), mean, rstd (M) saved for the backward; in (M, C), w, b (C).
void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                       int64_t M, int C);
// din (M, C) += ..., dw, db (C) += ...
void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int64_t M, int C);
// GELU, tanh form: out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void gelu_forward(float *out, const float *in, int64_t n);
// din (n) += dout * gelu'(in).
void gelu_backward(float *din, const float *dout, const float *in, int64_t n);
// Causal attention over key lists: position t of each sequence attends the
// positions keys[off[t] .. off[t+1]) (ascending; nnz = off[T] in all), one
// softmax over them, scores q.k / sqrt(HS).
//   qkv (B, T, 3C): q, k, v at channels [0, C), [C, 2C), [2C, 3C), head h at h*HS;
//   out (B, T, C); p (B, NH, nnz) the probabilities, kept for the backward.
void attention_forward(float *out, float *p, const float *qkv, const int32_t *off, const int32_t *keys,
                       int64_t nnz, int B, int T, int NH, int HS);
// dqkv (B, T, 3C) += gradients of q, k, v;  dout (B, T, C).  out (B, T, C) is
// the forward's output as the caller kept it (a 16-bit model: rounded, as
// the next op read it); a GPU takes rowsum(dout * out) from it, the CPU's
// reference ignores it.  scratch: B*NH*T floats.
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *p,
                        const int32_t *off, const int32_t *keys, int64_t nnz, int B, int T, int NH, int HS,
                        float *scratch);
// Softmax cross-entropy: logits (M, V) are replaced by their softmax; returns
// sum over rows of -log p[row, targets[row]] (targets (M) in [0, V)).
double softmax_xent_forward(float *logits, const int32_t *targets, int64_t M, int V);
// probs (M, V) (the forward's output) becomes scale * (probs - onehot(targets)).
void softmax_xent_backward(float *probs, const int32_t *targets, int64_t M, int V, float scale);

// ---- The dVAE's relaxation and likelihood (SPEC §2). Shapes: logits and z
// are (B, V, P) with P = G*G positions (NCHW, channel stride P); stats
// (B, 6, N) and x (B, 3, N) with N = S*S.
// z = softmax((logits + g) / tau) over V at each position; g (B, V, P) Gumbel noise.
void gumbel_softmax_forward(float *z, const float *logits, const float *g, float tau, int B, int V, int P);
// dlogits += d(sum dz*z)/dlogits, from the forward's output z.
void gumbel_softmax_backward(float *dlogits, const float *dz, const float *z, float tau, int B, int V, int P);
// Standard Gumbel noise: g (n) = the draws first .. first+n-1 of the Philox
// stream (key, counter) of core/rng.h, as rng_gumbel_at gives them: draw i
// is -ln(-ln u) of the uniform of word i%4 of block counter + i/4. A GPU
// draws the same uniforms, bit for bit; its two logarithms may round
// differently from the CPU's (an ulp or two of each).
void gumbel_noise(float *g, uint64_t key, uint64_t counter, int64_t first, int64_t n);
// Sum over positions of KL(softmax(logits) || uniform(V)) = sum_k q ln q + ln V.
// With dlogits non-NULL, adds scale * its gradient.
double kl_uniform_forward_backward(float *dlogits, const float *logits, float scale, int B, int V, int P);
// Sum of the logit-Laplace negative log-likelihood of x (mapped pixels in
// (0,1)) under mu = stats[:, 0:3], ln b = stats[:, 3:6]. With dstats non-NULL,
// writes (=) scale * its gradient into dstats (B, 6, N).
double logit_laplace_nll(float *dstats, const float *stats, const float *x, float scale, int B, int N);

// ---- Sampling: one new position per candidate over a KV cache. Candidate k,
// head h attends the L caption keys kt, vt (L, C) (shared by the candidates)
// and n_img image keys of its own: rows (img_keys[e] - L) % W of ki, vi
// (K, W, C), for e < n_img (img_keys: stream positions >= L, ascending), one
// softmax over the L + n_img scores q.k / sqrt(HS), C = NH*HS.
//   out (K, C); qkv (K, 3C), q at [0, C); scratch (K*NH*(L + n_img)).
void attention_decode(float *out, const float *qkv, const float *kt, const float *vt, const float *ki,
                      const float *vi, const int32_t *img_keys, int n_img, int L, int W, int K, int NH, int HS,
                      float *scratch);

// ---- Mixed precision: core/half.h's bulk conversions between float32 and a
// 16-bit format (fp16 or bf16: round to nearest even, NaN kept quiet), as
// ops, so that a 16-bit model's data stays where the ops run. Bit for bit
// the functions named.
// dst (n) = src (n) in fmt (half_from_f32).
void to_half(uint16_t *dst, const float *src, int64_t n, half_fmt fmt);
// dst (n) = the values of src (n), exactly (half_to_f32).
void from_half(float *dst, const uint16_t *src, int64_t n, half_fmt fmt);
// dst (n) = x (n) in fmt, and x becomes exactly the stored values (half_store).
void store_half(uint16_t *dst, float *x, int64_t n, half_fmt fmt);
// x (n) rounded to fmt in place; returns how many results are not finite,
// set to 0 with `filter` (half_round). On a GPU the count is reduced there
// and copied back (the call waits for the op, as the losses do).
int64_t round_half(float *x, int64_t n, half_fmt fmt, int filter);
// A 16-bit model's products: linear_forward / linear_backward with the
// weight w (n_out, n_in) given as its 16-bit codes in fmt (the model's
// matrices), and activations (in, dout) whose fp32 values the caller has
// already rounded to fmt. Every product of two such values is exact in fp32,
// so this is linear_forward / linear_backward over the decoded weight, the
// sums in fp32 in the device's order. scratch: n_out*n_in floats (the CPU,
// and a GPU for fp16, decode w there; a GPU for bf16 gives the codes to its
// tensor cores and converts the activations to bf16, exactly, on the side).
void linear16_forward(float *out, const float *in, const uint16_t *w, const float *b, int64_t M, int n_in,
                      int n_out, float beta, half_fmt fmt, float *scratch);
void linear16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                       int64_t M, int n_in, int n_out, half_fmt fmt, float *scratch);

// A 16-bit dVAE's convolutions (dvae train --precision bf16): conv2d_forward /
// conv2d_backward with the weight w (Co, Ci, k, k) given as its 16-bit codes
// in fmt (made from the fp32 master each step) and every other operand fp32.
// The op rounds its inputs to fmt (in, and dout in the backward), so every
// product is exact in fp32 and the sums are fp32; each convolution's result
// (conv(in, w), and the backward's din and dw parts) is rounded to fmt, as a
// GPU's bf16 convolution writes it; then the bias, alpha, beta and the
// accumulation into din/dw are fp32:
//   out = alpha * (r(conv(r(in), w)) + b) + beta * out,  r = rounding to fmt
//   din += alpha * r(dconv_in(r(dout), w)),  dw += alpha * r(dconv_w(r(in), r(dout))),
//   db += alpha * sum of dout (fp32, not rounded).
// The CPU: the rounding plus the fp32 convolution of conv2d_forward/backward
// (bit for bit reproducible); a GPU: the same composition on its own
// convolution. scratch: conv2d16_scratch_floats(B, Ci, Co, H, W, k) floats.
void conv2d16_forward(float *out, const float *in, const uint16_t *w, const float *b, int B, int Ci, int Co, int H,
                      int W, int k, float alpha, float beta, half_fmt fmt, float *scratch);
void conv2d16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                       int B, int Ci, int Co, int H, int W, int k, float alpha, half_fmt fmt, float *scratch);
// conv2d_scratch_floats of the selected backend + 2 Co*Ci*k*k + B*(Ci + Co)*H*W.
int64_t conv2d16_scratch_floats(int B, int Ci, int Co, int H, int W, int k);

// ---- Embeddings as sums of table rows: out (M, C) row r = sum over k < K of
// table[rows[r*K + k] .. + C) (rows: offsets in floats into table; -1 adds
// nothing). rows (M, K).
void embed_sum_forward(float *out, const float *table, const int64_t *rows, int64_t M, int K, int C);
// dtable[rows[r*K + k] .. + C) += dout (M, C) row r, for every r, k (ids repeat).
void embed_sum_backward(float *dtable, const float *dout, const int64_t *rows, int64_t M, int K, int C);

// ---- The optimizer (SPEC §2-3). One AdamW step at step t (1-based), exactly
// torch.optim.AdamW's arithmetic: p *= 1 - lr*wd, m = b1 m + (1-b1) g,
// v = b2 v + (1-b2) g^2, p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
//   p, m, v, g (n); weight_decay 0 for the tensors that are not decayed.
void adamw_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t t);
// The same step with the moments in the paper's 16-bit formats (core/half.h):
// m (n) e6m9, v (n) ue6m10, each decoded, updated exactly as adamw_update
// updates it, and rounded back; p (n) the fp32 master weights.
void adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, float lr, float beta1,
                    float beta2, float eps, float weight_decay, int64_t t);
// ema (n) = decay * ema + (1 - decay) * p
void ema_update(float *ema, const float *p, int64_t n, float decay);
// The squared L2 norm of g (n), accumulated in double (in index order on the CPU).
double grad_sumsq(const float *g, int64_t n);
