// transformer.c: the CPU ops of the transformer prior (ops.h): linear layers
// over OpenBLAS sgemm (a 16-bit model's weights decoded first), LayerNorm, GELU, sparse attention over precomputed key
// lists (and its one-position form over the sampling's KV cache), softmax
// cross-entropy, and the embeddings as sums of table rows. Rows (tokens) are
// split across threads with OpenMP; column sums (bias, LayerNorm gains) are
// split by columns so that no two threads add into the same gradient.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/common.h"

#define PAR_MIN 32768

// Few rows (sampling: one row per candidate): stream each weight row once
// and take its dot products with all M inputs, which stay in L1. sgemm would
// repack the whole weight matrix on every call.
enum { SMALL_M = 8 };
static void linear_forward_small(float *out, const float *in, const float *w, const float *b, int M, int n_in,
                                 int n_out, float beta) {
#pragma omp parallel for schedule(static) if ((int64_t)n_in * n_out >= PAR_MIN)
    for (int o = 0; o < n_out; o++) {
        const float *w_o = w + (int64_t)o * n_in;
        for (int r = 0; r < M; r++) {
            const float *x = in + (int64_t)r * n_in;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int i = 0; i < n_in; i++) acc += x[i] * w_o[i];
            float *y = out + (int64_t)r * n_out + o;
            *y = acc + (b ? b[o] : 0.0f) + (beta != 0.0f ? beta * *y : 0.0f);
        }
    }
}

void cpu_linear_forward(float *out, const float *in, const float *w, const float *b, int64_t M, int n_in, int n_out,
                        float beta) {
    if (M <= SMALL_M) {
        linear_forward_small(out, in, w, b, (int)M, n_in, n_out, beta);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, n_out, n_in, 1.0f, in, n_in, w, n_in, beta, out,
                n_out);
    if (!b) return;
#pragma omp parallel for schedule(static) if (M * n_out >= PAR_MIN)
    for (int64_t r = 0; r < M; r++) {
        float *o = out + r * n_out;
        for (int j = 0; j < n_out; j++) o[j] += b[j];
    }
}

// db (n) += column sums of x (M, n), split by columns.
static void colsum_add(float *db, const float *x, int64_t M, int n) {
    enum { CB = 64 };
#pragma omp parallel for schedule(static) if (M * n >= PAR_MIN)
    for (int c0 = 0; c0 < n; c0 += CB) {
        int c1 = c0 + CB < n ? c0 + CB : n;
        float acc[CB] = {0};
        for (int64_t r = 0; r < M; r++) {
            const float *x_r = x + r * n;
            for (int c = c0; c < c1; c++) acc[c - c0] += x_r[c];
        }
        for (int c = c0; c < c1; c++) db[c] += acc[c - c0];
    }
}

void cpu_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                         int64_t M, int n_in, int n_out) {
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, n_in, n_out, 1.0f, dout, n_out, w, n_in, 1.0f,
                    din, n_in);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, (int)M, 1.0f, dout, n_out, in, n_in, 1.0f,
                    dw, n_in);
    if (db) colsum_add(db, dout, M, n_out);
}

// The 16-bit weight decoded into scratch, then the fp32 product.
void cpu_linear16_forward(float *out, const float *in, const uint16_t *w, const float *b, int64_t M, int n_in,
                          int n_out, float beta, half_fmt fmt, float *scratch) {
    half_to_f32(scratch, w, (int64_t)n_out * n_in, fmt);
    cpu_linear_forward(out, in, scratch, b, M, n_in, n_out, beta);
}

void cpu_linear16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                           int64_t M, int n_in, int n_out, half_fmt fmt, float *scratch) {
    half_to_f32(scratch, w, (int64_t)n_out * n_in, fmt);
    cpu_linear_backward(din, dw, db, dout, in, scratch, M, n_in, n_out);
}

void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                           int64_t M, int C) {
#pragma omp parallel for schedule(static) if (M * C >= PAR_MIN)
    for (int64_t r = 0; r < M; r++) {
        const float *x = in + r * C;
        double s = 0, s2 = 0;
        for (int c = 0; c < C; c++) s += x[c];
        float m = (float)(s / C);
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            s2 += (double)d * d;
        }
        float rs = 1.0f / sqrtf((float)(s2 / C) + 1e-5f);
        float *o = out + r * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * rs * w[c] + b[c];
        mean[r] = m;
        rstd[r] = rs;
    }
}

void cpu_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const float *mean, const float *rstd, int64_t M, int C) {
#pragma omp parallel for schedule(static) if (M * C >= PAR_MIN)
    for (int64_t r = 0; r < M; r++) {
        const float *x = in + r * C, *g = dout + r * C;
        float m = mean[r], rs = rstd[r];
        float a = 0, bb = 0; // mean(dnorm), mean(dnorm * norm)
        for (int c = 0; c < C; c++) {
            float n = (x[c] - m) * rs, dn = g[c] * w[c];
            a += dn;
            bb += dn * n;
        }
        a /= C;
        bb /= C;
        float *d = din + r * C;
        for (int c = 0; c < C; c++) {
            float n = (x[c] - m) * rs;
            d[c] += rs * (g[c] * w[c] - a - n * bb);
        }
    }
    enum { CB = 64 };
#pragma omp parallel for schedule(static) if (M * C >= PAR_MIN)
    for (int c0 = 0; c0 < C; c0 += CB) {
        int c1 = c0 + CB < C ? c0 + CB : C;
        float aw[CB] = {0}, ab[CB] = {0};
        for (int64_t r = 0; r < M; r++) {
            const float *x = in + r * C, *g = dout + r * C;
            float m = mean[r], rs = rstd[r];
            for (int c = c0; c < c1; c++) {
                aw[c - c0] += g[c] * (x[c] - m) * rs;
                ab[c - c0] += g[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            dw[c] += aw[c - c0];
            db[c] += ab[c - c0];
        }
    }
}

#define GELU_K 0.7978845608028654f // sqrt(2/pi)

// exp(x) for x in about [-87, 88] (NaN gives NaN), relative error ~1e-7: Cody-Waite reduction
// x = n ln2 + r and Cephes' polynomial for e^r. Branch-free, so the GELU
// loops vectorise (libm's tanhf is a third of a training step otherwise).
static inline float exp_fast(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; // round to nearest: 1.5 * 2^23
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    // A NaN x stays NaN through p; its exponent part must not convert a NaN.
    int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) << 23;
    float scale;
    __builtin_memcpy(&scale, &bits, 4);
    return p * scale;
}

// tanh(u) = 1 - 2 / (e^(2u) + 1).
static inline float tanh_fast(float u) { return 1.0f - 2.0f / (exp_fast(2.0f * u) + 1.0f); }

void cpu_gelu_forward(float *out, const float *in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + tanh_fast(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

void cpu_gelu_backward(float *din, const float *dout, const float *in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float x = in[i], u = GELU_K * (x + 0.044715f * x * x * x), t = tanh_fast(u);
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        din[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
}

// ---------------------------------------------------------------------------
// Attention over key lists: query t of every (b, h) attends keys[off[t] ..
// off[t+1]) (ascending positions, self included). P is stored packed in the
// same order: p[(b*NH + h)*nnz + off[t] + i].
//
// A full list (every query attends all T keys: the reranker's image tower)
// packs P as the (T, T) matrix of each (b, h), so that the scores, P V and
// the backward's four products are sgemm calls. The (b, h) pairs are split
// across threads as in the sparse loops; inside a parallel region the
// OpenMP build of OpenBLAS runs each call on its calling thread (one
// parallel region per op: finer ones stall whenever another process holds
// a core). Sparse lists (the prior's masks) take the per-query loops.

// 1 if the lists give every query all T keys: since a query's keys are
// distinct and ascending, T*T of them in all can only be every key in order.
static int keys_full(int64_t nnz, int T) { return nnz == (int64_t)T * T; }

// Full lists: for each (b, h), S = scale Q K^T into P (T, T), softmax by
// rows, out = P V.
static void attention_forward_full(float *out, float *p, const float *qkv, int B, int T, int NH, int HS) {
    const int C = NH * HS, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (int64_t)b * T * ld + h * HS;
            float *P = p + ((int64_t)b * NH + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, q, ld, q + C, ld, 0.0f, P, T);
            for (int t = 0; t < T; t++) {
                float *r = P + (int64_t)t * T, mx = -INFINITY, sum = 0;
                for (int i = 0; i < T; i++) mx = r[i] > mx ? r[i] : mx;
                for (int i = 0; i < T; i++) sum += (r[i] = expf(r[i] - mx));
                float inv = 1.0f / sum;
                for (int i = 0; i < T; i++) r[i] *= inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, P, T, q + 2 * C, ld, 0.0f,
                        out + (int64_t)b * T * C + h * HS, C);
        }
}

// Full lists: for each (b, h), in blocks of R query rows: dV += P^T dO,
// dP = dO V^T, dS = scale P (dP - rowsum(P dP)), dQ += dS K, dK += dS^T Q.
// Each thread keeps its block of dS in its own R*T floats of scratch
// (B*NH*T floats: at most B*NH threads, so R >= 1).
enum { FULL_ROWS = 64 };
static void attention_backward_full(float *dqkv, const float *dout, const float *qkv, const float *p, int B, int T,
                                    int NH, int HS, float *scratch) {
    if (B * NH == 0) return;
    const int C = NH * HS, ld = 3 * C;
    const int nth = DALLE_MIN(omp_get_max_threads(), B * NH);
    const int R = DALLE_MIN(DALLE_MIN(T, FULL_ROWS), B * NH / nth);
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for schedule(dynamic, 1) collapse(2) num_threads(nth)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (int64_t)b * T * ld + h * HS, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (int64_t)b * T * ld + h * HS, *dk = dq + C, *dv = dq + 2 * C;
            const float *g = dout + (int64_t)b * T * C + h * HS;
            const float *P = p + ((int64_t)b * NH + h) * T * T;
            float *dS = scratch + (int64_t)omp_get_thread_num() * R * T;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, P, T, g, C, 1.0f, dv, ld);
            for (int t0 = 0; t0 < T; t0 += R) {
                const int n = T - t0 < R ? T - t0 : R;
                const float *Pb = P + (int64_t)t0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, T, HS, 1.0f, g + (int64_t)t0 * C, C, v, ld,
                            0.0f, dS, T);
                for (int t = 0; t < n; t++) {
                    const float *pr = Pb + (int64_t)t * T;
                    float *dr = dS + (int64_t)t * T, dot = 0;
                    for (int i = 0; i < T; i++) dot += pr[i] * dr[i];
                    for (int i = 0; i < T; i++) dr[i] = pr[i] * (dr[i] - dot) * scale;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, T, 1.0f, dS, T, k, ld, 1.0f,
                            dq + (int64_t)t0 * ld, ld);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, n, 1.0f, dS, T, q + (int64_t)t0 * ld, ld,
                            1.0f, dk, ld);
            }
        }
}

void cpu_attention_forward(float *out, float *p, const float *qkv, const int32_t *off, const int32_t *keys,
                           int64_t nnz, int B, int T, int NH, int HS) {
    if (keys_full(nnz, T)) {
        attention_forward_full(out, p, qkv, B, T, NH, HS);
        return;
    }
    int C = NH * HS;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (int64_t)b * T * 3 * C;
            float *pbh = p + ((int64_t)b * NH + h) * nnz;
            for (int t = 0; t < T; t++) {
                const float *q = base + (int64_t)t * 3 * C + h * HS;
                const int32_t *ks = keys + off[t];
                int n = off[t + 1] - off[t];
                float *pt = pbh + off[t];
                float mx = -INFINITY;
                for (int i = 0; i < n; i++) {
                    const float *k = base + (int64_t)ks[i] * 3 * C + C + h * HS;
                    float s = 0;
#pragma omp simd reduction(+ : s)
                    for (int c = 0; c < HS; c++) s += q[c] * k[c];
                    s *= scale;
                    pt[i] = s;
                    if (s > mx) mx = s;
                }
                float sum = 0;
                for (int i = 0; i < n; i++) {
                    pt[i] = expf(pt[i] - mx);
                    sum += pt[i];
                }
                float inv = 1.0f / sum;
                float *o = out + ((int64_t)b * T + t) * C + h * HS;
                for (int c = 0; c < HS; c++) o[c] = 0;
                for (int i = 0; i < n; i++) {
                    pt[i] *= inv;
                    const float *v = base + (int64_t)ks[i] * 3 * C + 2 * C + h * HS;
                    for (int c = 0; c < HS; c++) o[c] += pt[i] * v[c];
                }
            }
        }
}

void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *p,
                            const int32_t *off, const int32_t *keys, int64_t nnz, int B, int T, int NH, int HS,
                            float *scratch) {
    (void)out; // rowsum(dout * out) is taken from the kept probabilities instead
    if (keys_full(nnz, T)) {
        attention_backward_full(dqkv, dout, qkv, p, B, T, NH, HS, scratch);
        return;
    }
    int C = NH * HS;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (int64_t)b * T * 3 * C;
            float *dbase = dqkv + (int64_t)b * T * 3 * C;
            const float *pbh = p + ((int64_t)b * NH + h) * nnz;
            // dp for one query: room for T keys per (b, h) task
            float *dp = scratch + ((int64_t)b * NH + h) * T;
            for (int t = 0; t < T; t++) {
                const float *q = base + (int64_t)t * 3 * C + h * HS;
                const float *g = dout + ((int64_t)b * T + t) * C + h * HS;
                float *dq = dbase + (int64_t)t * 3 * C + h * HS;
                const int32_t *ks = keys + off[t];
                const float *pt = pbh + off[t];
                int n = off[t + 1] - off[t];
                float dot = 0;
                for (int i = 0; i < n; i++) {
                    const float *v = base + (int64_t)ks[i] * 3 * C + 2 * C + h * HS;
                    float *dv = dbase + (int64_t)ks[i] * 3 * C + 2 * C + h * HS;
                    float s = 0;
#pragma omp simd reduction(+ : s)
                    for (int c = 0; c < HS; c++) {
                        s += g[c] * v[c];
                        dv[c] += pt[i] * g[c];
                    }
                    dp[i] = s;
                    dot += pt[i] * s;
                }
                for (int i = 0; i < n; i++) {
                    float ds = pt[i] * (dp[i] - dot) * scale;
                    const float *k = base + (int64_t)ks[i] * 3 * C + C + h * HS;
                    float *dk = dbase + (int64_t)ks[i] * 3 * C + C + h * HS;
                    for (int c = 0; c < HS; c++) {
                        dq[c] += ds * k[c];
                        dk[c] += ds * q[c];
                    }
                }
            }
        }
}

// One new position per candidate over a KV cache (sampling): candidate k,
// head h, scores of the L caption keys then its n_img image keys (ring rows
// (img_keys[e] - L) % W), one softmax, the weighted values. One (k, h) per task.
void cpu_attention_decode(float *out, const float *qkv, const float *kt, const float *vt, const float *ki,
                          const float *vi, const int32_t *img_keys, int n_img, int L, int W, int K, int NH, int HS,
                          float *scratch) {
    const int d = NH * HS, S = L + n_img;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for schedule(static) collapse(2) if (K * NH >= 4)
    for (int k = 0; k < K; k++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (int64_t)k * 3 * d + h * HS;
            float *s = scratch + ((int64_t)k * NH + h) * S;
            float mx = -INFINITY;
            for (int t = 0; t < L; t++) {
                const float *kv = kt + (int64_t)t * d + h * HS;
                float a = 0;
#pragma omp simd reduction(+ : a)
                for (int i = 0; i < HS; i++) a += q[i] * kv[i];
                s[t] = a * scale;
                mx = fmaxf(mx, s[t]);
            }
            for (int e = 0; e < n_img; e++) {
                const float *kv = ki + ((int64_t)k * W + (img_keys[e] - L) % W) * d + h * HS;
                float a = 0;
#pragma omp simd reduction(+ : a)
                for (int i = 0; i < HS; i++) a += q[i] * kv[i];
                s[L + e] = a * scale;
                mx = fmaxf(mx, s[L + e]);
            }
            float sum = 0;
            for (int e = 0; e < S; e++) sum += s[e] = expf(s[e] - mx);
            float inv = 1.0f / sum, *o = out + (int64_t)k * d + h * HS;
            for (int i = 0; i < HS; i++) o[i] = 0;
            for (int t = 0; t < L; t++) {
                const float *vv = vt + (int64_t)t * d + h * HS;
                float pt = s[t] * inv;
                for (int i = 0; i < HS; i++) o[i] += pt * vv[i];
            }
            for (int e = 0; e < n_img; e++) {
                const float *vv = vi + ((int64_t)k * W + (img_keys[e] - L) % W) * d + h * HS;
                float pt = s[L + e] * inv;
                for (int i = 0; i < HS; i++) o[i] += pt * vv[i];
            }
        }
}

// ---------------------------------------------------------------------------
// Softmax cross-entropy: logits (M, V) become probabilities in place; returns
// the sum of -log p[target]. Backward turns them into dlogits = (p - onehot) * scale.

double cpu_softmax_xent_forward(float *logits, const int32_t *targets, int64_t M, int V) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (M * V >= PAR_MIN)
    for (int64_t r = 0; r < M; r++) {
        float *x = logits + r * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double xt = (double)x[targets[r]] - mx, sum = 0;
        for (int j = 0; j < V; j++) {
            x[j] = expf(x[j] - mx);
            sum += x[j];
        }
        float inv = (float)(1.0 / sum);
        total += log(sum) - xt;
        for (int j = 0; j < V; j++) x[j] *= inv;
    }
    return total;
}

void cpu_softmax_xent_backward(float *probs, const int32_t *targets, int64_t M, int V, float scale) {
#pragma omp parallel for schedule(static) if (M * V >= PAR_MIN)
    for (int64_t r = 0; r < M; r++) {
        float *x = probs + r * V;
        x[targets[r]] -= 1.0f;
        for (int j = 0; j < V; j++) x[j] *= scale;
    }
}

// ---------------------------------------------------------------------------
// Embeddings as sums of table rows. The forward starts from the first row an
// output row names and adds the others in order (no 0 + x: the sum of two
// rows is exactly e + p); the backward splits the channels in blocks of 16
// across threads and visits the rows in order, so every gradient entry
// receives its additions in the same order for any thread count.

void cpu_embed_sum_forward(float *out, const float *table, const int64_t *rows, int64_t M, int K, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++) {
        float *o = out + r * C;
        int first = 1;
        for (int k = 0; k < K; k++) {
            const int64_t at = rows[r * K + k];
            if (at < 0) continue;
            const float *e = table + at;
            if (first)
                for (int c = 0; c < C; c++) o[c] = e[c];
            else
                for (int c = 0; c < C; c++) o[c] += e[c];
            first = 0;
        }
        if (first) memset(o, 0, sizeof(float) * (size_t)C);
    }
}

void cpu_embed_sum_backward(float *dtable, const float *dout, const int64_t *rows, int64_t M, int K, int C) {
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        const int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int64_t r = 0; r < M; r++) {
            const float *g = dout + r * C;
            for (int k = 0; k < K; k++) {
                const int64_t at = rows[r * K + k];
                if (at < 0) continue;
                float *e = dtable + at;
                for (int c = c0; c < c1; c++) e[c] += g[c];
            }
        }
    }
}
