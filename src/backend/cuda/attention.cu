// attention.cu: the prior's attention on the GPU (ops.h contracts): a
// block-sparse attention in the style of FlashAttention, forward and
// backward, and the one-position decode over the sampling's KV cache.
//
// Forward: one thread block per (query block of 64, b*NH + h) walks the key
// blocks its queries attend (the plan of attn_blocks.h, cached per key list
// and uploaded once), with the online softmax in registers: no T x T matrix.
// It saves the log-sum-exp of every query in p (attn_blocks.h: split in three
// bf16-exact floats where there is room). Backward: D = rowsum(dO * O) from
// the forward's output O that the caller passes (a warp per row), then one
// thread block per (key block, b*NH + h) walks the query blocks that attend
// it, recomputes the probabilities from the saved lse, accumulates dk, dv in
// registers and adds dq with atomics.
//
// Tiles: 64 queries x 64 keys, 256 threads as 16 x 16 (ty, tx); thread
// (ty, tx) owns rows ty + 16i (i < 4) and columns tx + 16j of a score tile,
// and channels tx + 16j of the rows it owns. Head channels are padded with
// zeros to D = 32, 64 or 128 (a template parameter): HS <= 128.
//
// Two variants of the forward and backward, same plan, tiles, online
// softmax, lse and atomics: SIMT (fp32 FMAs from shared memory, the fp32
// contract) and tensor cores (TF32 wmma m16n16k8, fp32 accumulation: the
// products S = Q K^T, P V, dO V^T, P^T dO, dS^T Q, dS K; their operands
// rounded to TF32 as they enter shared memory). 8 warps share a 64 x 64
// product, each 16 rows x 32 columns (2 fragments; the D-wide ones 16 x D/2);
// the fragments go through shared memory to the per-thread code above. The
// tensor cores run when TF32 is allowed (DALLE_CUDA_TF32=1, read once, as for
// the products and convolutions), unless DALLE_CUDA_ATTN=simt; and
// DALLE_CUDA_ATTN=tc forces them (read at each call, so that a test can run
// both variants in one process). The decode has one variant (SIMT).
#include <math.h>
#include <mma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/attn_blocks.h"
#include "backend/cuda/cuda.h"

#define ATT_THREADS 256
#define BQ ATTN_BQ
#define BK ATTN_BK
static_assert(BQ == 64 && BK == 64, "the thread mapping assumes 64 x 64 tiles");

// The plan's arrays in device memory (attn_plan's fields of the same names).
typedef struct {
    const uint64_t *masks;
    const int32_t *q_off, *pair_qb, *pair_kb, *pair_mask, *k_off, *k_pairs;
} dev_plan;

// The allowed columns of row r of pair p's tile, one bit each.
__device__ __forceinline__ uint64_t row_bits(const dev_plan &pl, int p, int r) {
    int m = pl.pair_mask[p];
    return m < 0 ? ~0ull : pl.masks[(int64_t)m * BQ + r];
}

// The sum and the max over the 16 threads (same ty) that share a row.
__device__ __forceinline__ float row_sum16(float v) {
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float row_max16(float v) {
    for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// One step of the online softmax for a row of a score tile, in the 16
// threads that share it: e (4) = this thread's scores (scaled, -inf where
// masked) on entry, exp(score - new max) on return; m, l the row's running
// max and sum, o its output channels, rescaled. A row with nothing allowed
// so far keeps m = -inf, l = 0 (exp(-inf - -inf) is NaN).
template <int D>
__device__ __forceinline__ void online_softmax_row(float (&e)[4], float &m, float &l, float (&o)[D / 16]) {
    float mx = m;
    #pragma unroll
    for (int j = 0; j < 4; j++) mx = fmaxf(mx, e[j]);
    mx = row_max16(mx);
    const float alpha = mx == -INFINITY ? 1.0f : expf(m - mx);
    float sum = 0.0f;
    #pragma unroll
    for (int j = 0; j < 4; j++) {
        e[j] = mx == -INFINITY ? 0.0f : expf(e[j] - mx);
        sum += e[j];
    }
    l = l * alpha + row_sum16(sum);
    m = mx;
    #pragma unroll
    for (int j = 0; j < D / 16; j++) o[j] *= alpha;
}

// tile (64, ld) = rows t0 .. t0+63 of src (row stride `stride` floats), HS
// channels each, zero beyond T and HS.
template <int D>
__device__ __forceinline__ void load_tile(float *tile, int ld, const float *src, int64_t stride, int t0, int T,
                                          int HS) {
    for (int i = threadIdx.x; i < 64 * D; i += ATT_THREADS) {
        int r = i / D, c = i % D, t = t0 + r;
        tile[r * ld + c] = t < T && c < HS ? src[(int64_t)t * stride + c] : 0.0f;
    }
}

// The online softmax's start: no key seen (m = -inf, l = 0, o = 0).
template <int D>
__device__ __forceinline__ void forward_init(float (&o)[4][D / 16], float (&m)[4], float (&l)[4]) {
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        #pragma unroll
        for (int j = 0; j < D / 16; j++) o[i][j] = 0.0f;
    }
}

// The forward's end: the rows ty + 16i (i < 4) of query block q0 of (b, h)
// = bh, out = o / l in (B, T, C), and the lse m + log l into p (B, NH, nnz).
template <int D>
__device__ __forceinline__ void forward_store(float *out, float *p, const float (&o)[4][D / 16], const float (&m)[4],
                                              const float (&l)[4], int q0, int bh, int64_t nnz, int T, int NH,
                                              int HS) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, b = bh / NH, h = bh % NH, C = NH * HS;
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = q0 + ty + 16 * i;
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        const int64_t row = ((int64_t)b * T + t) * C + h * HS;
        if (t < T) {
            #pragma unroll
            for (int j = 0; j < D / 16; j++)
                if (tx + 16 * j < HS) out[row + tx + 16 * j] = o[i][j] * inv;
            if (tx == 0)
                attn_lse_store(p + (int64_t)bh * nnz, attn_lse_split(nnz, T), t,
                               l[i] > 0.0f ? m[i] + logf(l[i]) : -INFINITY);
        }
    }
}

// Forward over the key blocks of query block blockIdx.y (heaviest, the last,
// first) of (b, h) = blockIdx.x: out (B, T, C) and the lse into p (B, NH, nnz).
//   qkv (B, T, 3C), C = NH*HS.
template <int D>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_forward_kernel(float *out, float *p, const float *qkv, dev_plan pl, int64_t nnz, int T, int NH, int HS,
                        float scale) {
    extern __shared__ float smem[];
    float *Qs = smem;              // (BQ, D+1) padded: column reads hit 16 banks
    float *Ks = Qs + BQ * (D + 1); // (BK, D+1)
    float *Vs = Ks + BK * (D + 1); // (BK, D)
    float *Ps = Vs + BK * D;       // (BQ, BK+1) probabilities of the tile
    const int qb = gridDim.y - 1 - blockIdx.y, bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, C = NH * HS, q0 = qb * BQ;
    const float *base = qkv + (int64_t)b * T * 3 * C + h * HS;

    load_tile<D>(Qs, D + 1, base, 3 * C, q0, T, HS);
    float o[4][D / 16], m[4], l[4];
    forward_init<D>(o, m, l);
    for (int pi = pl.q_off[qb]; pi < pl.q_off[qb + 1]; pi++) {
        const int k0 = pl.pair_kb[pi] * BK;
        __syncthreads(); // the previous tile is no longer read
        load_tile<D>(Ks, D + 1, base + C, 3 * C, k0, T, HS);
        load_tile<D>(Vs, D, base + 2 * C, 3 * C, k0, T, HS);
        __syncthreads();
        float s[4][4] = {};
        #pragma unroll 8
        for (int d = 0; d < D; d++) {
            float qv[4], kv[4];
            #pragma unroll
            for (int i = 0; i < 4; i++) qv[i] = Qs[(ty + 16 * i) * (D + 1) + d];
            #pragma unroll
            for (int j = 0; j < 4; j++) kv[j] = Ks[(tx + 16 * j) * (D + 1) + d];
            #pragma unroll
            for (int i = 0; i < 4; i++)
                #pragma unroll
                for (int j = 0; j < 4; j++) s[i][j] += qv[i] * kv[j];
        }
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = ty + 16 * i;
            const uint64_t bits = row_bits(pl, pi, r);
            #pragma unroll
            for (int j = 0; j < 4; j++) s[i][j] = (bits >> (tx + 16 * j)) & 1 ? s[i][j] * scale : -INFINITY;
            online_softmax_row<D>(s[i], m[i], l[i], o[i]);
            #pragma unroll
            for (int j = 0; j < 4; j++) Ps[r * (BK + 1) + tx + 16 * j] = s[i][j];
        }
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            const float *pr = Ps + (ty + 16 * i) * (BK + 1);
            #pragma unroll
            for (int j = 0; j < D / 16; j++) {
                float acc = 0.0f;
                #pragma unroll 8
                for (int c = 0; c < BK; c++) acc += pr[c] * Vs[c * D + tx + 16 * j];
                o[i][j] += acc;
            }
        }
    }
    forward_store<D>(out, p, o, m, l, q0, bh, nnz, T, NH, HS);
}

// The backward's precompute: Dv (B, NH, T) = rowsum(dout * out) over the HS
// channels of each head, one warp per (b, t, h) row (lane-strided partial
// sums, then a fixed butterfly: the same bits on every run).
//   dout, out (B, T, C), C = NH*HS; rows = B*T*NH.
__global__ void attn_rowdot_kernel(float *Dv, const float *dout, const float *out, int64_t rows, int T, int NH,
                                   int HS) {
    const int lane = threadIdx.x % 32;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t w = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; w < rows; w += warps) {
        const int64_t bt = w / NH; // b*T + t
        const int h = (int)(w % NH), b = (int)(bt / T), t = (int)(bt % T);
        const int64_t row = bt * NH * HS + (int64_t)h * HS;
        float acc = 0.0f;
        for (int c = lane; c < HS; c += 32) acc += dout[row + c] * out[row + c];
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) Dv[((int64_t)b * NH + h) * T + t] = acc;
    }
}

// acc[i][j] += sum over the rows r of the tile of S[r, key] X[r, channel]
// for the keys ty + 16i and channels tx + 16j this thread owns (S^T X).
//   S (BQ, BK+1) in shared memory, X (BQ, D+1).
template <int D>
__device__ __forceinline__ void add_tile_tn(float (&acc)[4][D / 16], const float *S, const float *X) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    #pragma unroll
    for (int i = 0; i < 4; i++)
        #pragma unroll
        for (int j = 0; j < D / 16; j++) {
            float a = 0.0f;
            #pragma unroll 8
            for (int r = 0; r < BQ; r++) a += S[r * (BK + 1) + ty + 16 * i] * X[r * (D + 1) + tx + 16 * j];
            acc[i][j] += a;
        }
}

// Backward over the query blocks that attend key block blockIdx.y (the
// first, the most attended, first) of (b, h) = blockIdx.x: dk, dv of its
// keys (this block alone writes them) and dq of those queries (atomics:
// several key blocks add to one query).
//   dqkv (B, T, 3C) +=; dout (B, T, C); p the forward's lse; Dv (B, NH, T).
template <int D>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_backward_kernel(float *dqkv, const float *dout, const float *qkv, const float *p, const float *Dv,
                         dev_plan pl, int64_t nnz, int T, int NH, int HS, float scale) {
    extern __shared__ float smem[];
    float *Ks = smem;               // (BK, D+1)
    float *Vs = Ks + BK * (D + 1);  // (BK, D+1)
    float *Qs = Vs + BK * (D + 1);  // (BQ, D+1)
    float *dOs = Qs + BQ * (D + 1); // (BQ, D+1)
    float *Ps = dOs + BQ * (D + 1); // (BQ, BK+1) P, then dS, of the tile
    float *lse_s = Ps + BQ * (BK + 1), *D_s = lse_s + BQ; // (BQ) each
    const int kb = blockIdx.y, bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, C = NH * HS, k0 = kb * BK;
    const int split = attn_lse_split(nnz, T);
    const float *base = qkv + (int64_t)b * T * 3 * C + h * HS;
    const float *dbase = dout + (int64_t)b * T * C + h * HS;
    float *dq_base = dqkv + (int64_t)b * T * 3 * C + h * HS;

    load_tile<D>(Ks, D + 1, base + C, 3 * C, k0, T, HS);
    load_tile<D>(Vs, D + 1, base + 2 * C, 3 * C, k0, T, HS);
    float dk[4][D / 16] = {}, dv[4][D / 16] = {};
    for (int ii = pl.k_off[kb]; ii < pl.k_off[kb + 1]; ii++) {
        const int pi = pl.k_pairs[ii], q0 = pl.pair_qb[pi] * BQ;
        __syncthreads(); // the previous tile is no longer read
        load_tile<D>(Qs, D + 1, base, 3 * C, q0, T, HS);
        load_tile<D>(dOs, D + 1, dbase, C, q0, T, HS);
        if (threadIdx.x < BQ) {
            const int t = q0 + threadIdx.x;
            lse_s[threadIdx.x] = t < T ? attn_lse_load(p + (int64_t)bh * nnz, split, t) : 0.0f;
            D_s[threadIdx.x] = t < T ? Dv[(int64_t)bh * T + t] : 0.0f;
        }
        __syncthreads();
        float s[4][4] = {}, dp[4][4] = {};
        #pragma unroll 8
        for (int d = 0; d < D; d++) {
            float qv[4], gv[4], kv[4], vv[4];
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                qv[i] = Qs[(ty + 16 * i) * (D + 1) + d];
                gv[i] = dOs[(ty + 16 * i) * (D + 1) + d];
            }
            #pragma unroll
            for (int j = 0; j < 4; j++) {
                kv[j] = Ks[(tx + 16 * j) * (D + 1) + d];
                vv[j] = Vs[(tx + 16 * j) * (D + 1) + d];
            }
            #pragma unroll
            for (int i = 0; i < 4; i++)
                #pragma unroll
                for (int j = 0; j < 4; j++) {
                    s[i][j] += qv[i] * kv[j];
                    dp[i][j] += gv[i] * vv[j];
                }
        }
        // P = exp(s - lse) where allowed (a select: lse may be -inf on an empty row), dS = P (dP - D) scale
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = ty + 16 * i;
            const uint64_t bits = row_bits(pl, pi, r);
            #pragma unroll
            for (int j = 0; j < 4; j++) {
                const float pr = (bits >> (tx + 16 * j)) & 1 ? expf(s[i][j] * scale - lse_s[r]) : 0.0f;
                Ps[r * (BK + 1) + tx + 16 * j] = pr;
                s[i][j] = pr * (dp[i][j] - D_s[r]) * scale; // s now holds dS
            }
        }
        __syncthreads();
        add_tile_tn<D>(dv, Ps, dOs); // dv[key] += sum over rows of P[row, key] dO[row]
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < 4; i++)
            #pragma unroll
            for (int j = 0; j < 4; j++) Ps[(ty + 16 * i) * (BK + 1) + tx + 16 * j] = s[i][j];
        __syncthreads();
        add_tile_tn<D>(dk, Ps, Qs); // dk[key] += sum over rows of dS[row, key] q[row]
        // dq[row] += sum over keys of dS[row, key] k[key]
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = ty + 16 * i, t = q0 + r;
            #pragma unroll
            for (int j = 0; j < D / 16; j++) {
                const int c = tx + 16 * j;
                float acc = 0.0f;
                #pragma unroll 8
                for (int kc = 0; kc < BK; kc++) acc += Ps[r * (BK + 1) + kc] * Ks[kc * (D + 1) + c];
                if (t < T && c < HS) atomicAdd(dq_base + (int64_t)t * 3 * C + c, acc);
            }
        }
    }
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        const int t = k0 + ty + 16 * i;
        if (t >= T) continue;
        float *row = dq_base + (int64_t)t * 3 * C;
        #pragma unroll
        for (int j = 0; j < D / 16; j++) {
            const int c = tx + 16 * j;
            if (c >= HS) continue;
            row[C + c] += dk[i][j];
            row[2 * C + c] += dv[i][j];
        }
    }
}

// ---------------------------------------------------------------- tensor cores

namespace wmma = nvcuda::wmma;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> frag_a_row;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> frag_a_col;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> frag_acc;

// Row strides of the tiles wmma reads or writes: multiples of 4 floats (its
// ldm rule) and not of 32 (bank conflicts). Every fragment starts at a
// multiple of 8 floats from the 128-byte aligned shared memory (256-bit
// pointers): rows 16r, columns 8c.
#define TC_LD(D) ((D) + 4)
#define TC_LS (BK + 4)

// tile (64, ld) = rows t0 .. t0+63 of src as TF32 values (the operands of
// the products), HS channels each, zero beyond T and HS.
template <int D>
__device__ __forceinline__ void load_tile_tf32(float *tile, int ld, const float *src, int64_t stride, int t0, int T,
                                               int HS) {
    for (int i = threadIdx.x; i < 64 * D; i += ATT_THREADS) {
        int r = i / D, c = i % D, t = t0 + r;
        tile[r * ld + c] = t < T && c < HS ? wmma::__float_to_tf32(src[(int64_t)t * stride + c]) : 0.0f;
    }
}

// acc[f] += A B for this warp's 16 rows and NF fragments of 16 columns:
// A (16, kdim), element (i, k) at a[i*lda + k] (row major, a_k = 1) or
// a[k*lda + i] (column major, a_k = lda); B (kdim, 16 NF), element (k, n) at
// b[k*b_k + n*b_n], ldb its wmma ldm. FA, FB: the fragments of those layouts.
template <typename FA, typename FB, int NF>
__device__ __forceinline__ void warp_mma(frag_acc (&acc)[NF], const float *a, int lda, int a_k, const float *b,
                                         int ldb, int b_k, int b_n, int kdim) {
    #pragma unroll 2 // full unrolling hoists every load: 255 registers, spills in the backward
    for (int k = 0; k < kdim; k += 8) {
        FA fa;
        wmma::load_matrix_sync(fa, a + k * a_k, lda);
        #pragma unroll
        for (int f = 0; f < NF; f++) {
            FB fb;
            wmma::load_matrix_sync(fb, b + k * b_k + 16 * f * b_n, ldb);
            wmma::mma_sync(acc[f], fa, fb, acc[f]);
        }
    }
}

template <int NF>
__device__ __forceinline__ void acc_zero(frag_acc (&acc)[NF]) {
    #pragma unroll
    for (int f = 0; f < NF; f++) wmma::fill_fragment(acc[f], 0.0f);
}

// dst (16, 16 NF) of this warp = acc, row stride ld.
template <int NF>
__device__ __forceinline__ void acc_store(float *dst, int ld, const frag_acc (&acc)[NF]) {
    #pragma unroll
    for (int f = 0; f < NF; f++) wmma::store_matrix_sync(dst + 16 * f, acc[f], ld, wmma::mem_row_major);
}

// out = A B^T for this warp's 16 rows and 32 columns of a score tile: A
// (16, D) and B (32, D) row major in shared memory with row stride ld (B read
// as a column-major operand), out (16, 32) with row stride ls.
template <int D>
__device__ __forceinline__ void warp_abt(float *out, int ls, const float *a, const float *b, int ld) {
    frag_acc acc[2];
    acc_zero(acc);
    warp_mma<frag_a_row, frag_b_col, 2>(acc, a, ld, 1, b, ld, 1, ld, D);
    acc_store(out, ls, acc);
}

// attn_forward_kernel with the products on the tensor cores (same arguments,
// grid and outputs). Warp w computes rows 16 (w/2) .. +15 of each product:
// score columns 32 (w%2) .. +31, output channels D/2 (w%2) .. +D/2-1.
template <int D>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_forward_tc_kernel(float *out, float *p, const float *qkv, dev_plan pl, int64_t nnz, int T, int NH, int HS,
                           float scale) {
    constexpr int LD = TC_LD(D), LS = TC_LS, NF = D / 32;
    extern __shared__ __align__(128) float smem[];
    float *Qs = smem;           // (BQ, LD) TF32
    float *Ks = Qs + BQ * LD;   // (BK, LD) TF32
    float *Vs = Ks + BK * LD;   // (BK, LD) TF32
    float *Ss = Vs + BK * LD;   // (BQ, LS) the scores, then P (TF32); then (BQ, LD) the tile's P V
    const int qb = gridDim.y - 1 - blockIdx.y, bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, C = NH * HS, q0 = qb * BQ;
    const int warp = threadIdx.x / 32, wr = 16 * (warp / 2), wc = warp % 2;
    const float *base = qkv + (int64_t)b * T * 3 * C + h * HS;

    load_tile_tf32<D>(Qs, LD, base, 3 * C, q0, T, HS);
    float o[4][D / 16], m[4], l[4];
    forward_init<D>(o, m, l);
    for (int pi = pl.q_off[qb]; pi < pl.q_off[qb + 1]; pi++) {
        const int k0 = pl.pair_kb[pi] * BK;
        __syncthreads(); // the previous tile is no longer read
        load_tile_tf32<D>(Ks, LD, base + C, 3 * C, k0, T, HS);
        load_tile_tf32<D>(Vs, LD, base + 2 * C, 3 * C, k0, T, HS);
        __syncthreads();
        warp_abt<D>(Ss + wr * LS + 32 * wc, LS, Qs + wr * LD, Ks + 32 * wc * LD, LD); // S = Q K^T
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = ty + 16 * i;
            const uint64_t bits = row_bits(pl, pi, r);
            float s[4];
            #pragma unroll
            for (int j = 0; j < 4; j++) s[j] = (bits >> (tx + 16 * j)) & 1 ? Ss[r * LS + tx + 16 * j] * scale : -INFINITY;
            online_softmax_row<D>(s, m[i], l[i], o[i]);
            #pragma unroll
            for (int j = 0; j < 4; j++) Ss[r * LS + tx + 16 * j] = wmma::__float_to_tf32(s[j]); // its own elements
        }
        __syncthreads();
        { // the tile's P V into Ss once every warp has read P
            frag_acc acc[NF];
            acc_zero(acc);
            warp_mma<frag_a_row, frag_b_row, NF>(acc, Ss + wr * LS, LS, 1, Vs + (D / 2) * wc, LD, LD, 1, BK);
            __syncthreads();
            acc_store(Ss + wr * LD + (D / 2) * wc, LD, acc);
        }
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < 4; i++)
            #pragma unroll
            for (int j = 0; j < D / 16; j++) o[i][j] += Ss[(ty + 16 * i) * LD + tx + 16 * j];
    }
    forward_store<D>(out, p, o, m, l, q0, bh, nnz, T, NH, HS);
}

// attn_backward_kernel with the products on the tensor cores (same
// arguments, grid and outputs). Warp w: rows 16 (w/2) .. +15 of each product
// (queries of S, dP and dq; keys of dk, dv), columns 32 (w%2) .. +31 of S and
// dP, channels D/2 (w%2) .. +D/2-1 of dq, dk, dv. dk, dv stay in fragments
// across the query blocks.
template <int D>
__global__ void __launch_bounds__(ATT_THREADS, D <= 64 ? 2 : 1) // D 64: two blocks an SM, no spills (128 registers)
    attn_backward_tc_kernel(float *dqkv, const float *dout, const float *qkv, const float *p, const float *Dv,
                            dev_plan pl, int64_t nnz, int T, int NH, int HS, float scale) {
    constexpr int LD = TC_LD(D), LS = TC_LS, NF = D / 32;
    static_assert(BQ * LD <= 2 * BQ * LS, "the dq tile overlays Ss and dPs");
    extern __shared__ __align__(128) float smem[];
    float *Ks = smem;              // (BK, LD) TF32
    float *Vs = Ks + BK * LD;      // (BK, LD) TF32
    float *Qs = Vs + BK * LD;      // (BQ, LD) TF32; at the end dk (BK, LD)
    float *dOs = Qs + BQ * LD;     // (BQ, LD) TF32; at the end dv (BK, LD)
    float *Ss = dOs + BQ * LD;     // (BQ, LS) the scores, then P (TF32); with dPs: (BQ, LD) the tile's dq
    float *dPs = Ss + BQ * LS;     // (BQ, LS) dO V^T, then dS (TF32)
    float *lse_s = dPs + BQ * LS, *D_s = lse_s + BQ; // (BQ) each
    const int kb = blockIdx.y, bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, C = NH * HS, k0 = kb * BK;
    const int warp = threadIdx.x / 32, wr = 16 * (warp / 2), wc = warp % 2;
    const int split = attn_lse_split(nnz, T);
    const float *base = qkv + (int64_t)b * T * 3 * C + h * HS;
    const float *dbase = dout + (int64_t)b * T * C + h * HS;
    float *dq_base = dqkv + (int64_t)b * T * 3 * C + h * HS;

    load_tile_tf32<D>(Ks, LD, base + C, 3 * C, k0, T, HS);
    load_tile_tf32<D>(Vs, LD, base + 2 * C, 3 * C, k0, T, HS);
    frag_acc dk[NF], dv[NF];
    acc_zero(dk);
    acc_zero(dv);
    for (int ii = pl.k_off[kb]; ii < pl.k_off[kb + 1]; ii++) {
        const int pi = pl.k_pairs[ii], q0 = pl.pair_qb[pi] * BQ;
        __syncthreads(); // the previous tile is no longer read
        load_tile_tf32<D>(Qs, LD, base, 3 * C, q0, T, HS);
        load_tile_tf32<D>(dOs, LD, dbase, C, q0, T, HS);
        if (threadIdx.x < BQ) {
            const int t = q0 + threadIdx.x;
            lse_s[threadIdx.x] = t < T ? attn_lse_load(p + (int64_t)bh * nnz, split, t) : 0.0f;
            D_s[threadIdx.x] = t < T ? Dv[(int64_t)bh * T + t] : 0.0f;
        }
        __syncthreads();
        warp_abt<D>(Ss + wr * LS + 32 * wc, LS, Qs + wr * LD, Ks + 32 * wc * LD, LD);   // S = Q K^T
        warp_abt<D>(dPs + wr * LS + 32 * wc, LS, dOs + wr * LD, Vs + 32 * wc * LD, LD); // dP = dO V^T
        __syncthreads();
        // P = exp(s - lse) where allowed (a select: lse may be -inf on an empty row), dS = P (dP - D) scale;
        // each thread rewrites its own elements
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = ty + 16 * i;
            const uint64_t bits = row_bits(pl, pi, r);
            #pragma unroll
            for (int j = 0; j < 4; j++) {
                const int e = r * LS + tx + 16 * j;
                const float pr = (bits >> (tx + 16 * j)) & 1 ? expf(Ss[e] * scale - lse_s[r]) : 0.0f;
                const float ds = pr * (dPs[e] - D_s[r]) * scale;
                Ss[e] = wmma::__float_to_tf32(pr);
                dPs[e] = wmma::__float_to_tf32(ds);
            }
        }
        __syncthreads();
        // dv += P^T dO, dk += dS^T Q (P, dS as column-major As), the tile's dq = dS K
        warp_mma<frag_a_col, frag_b_row, NF>(dv, Ss + wr, LS, LS, dOs + (D / 2) * wc, LD, LD, 1, BQ);
        warp_mma<frag_a_col, frag_b_row, NF>(dk, dPs + wr, LS, LS, Qs + (D / 2) * wc, LD, LD, 1, BQ);
        {
            frag_acc acc[NF];
            acc_zero(acc);
            warp_mma<frag_a_row, frag_b_row, NF>(acc, dPs + wr * LS, LS, 1, Ks + (D / 2) * wc, LD, LD, 1, BK);
            __syncthreads(); // every warp has read P and dS
            acc_store(Ss + wr * LD + (D / 2) * wc, LD, acc);
        }
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = ty + 16 * i, t = q0 + r;
            #pragma unroll
            for (int j = 0; j < D / 16; j++) {
                const int c = tx + 16 * j;
                if (t < T && c < HS) atomicAdd(dq_base + (int64_t)t * 3 * C + c, Ss[r * LD + c]);
            }
        }
    }
    __syncthreads(); // Qs, dOs are no longer read
    acc_store(Qs + wr * LD + (D / 2) * wc, LD, dk);
    acc_store(dOs + wr * LD + (D / 2) * wc, LD, dv);
    __syncthreads();
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        const int r = ty + 16 * i, t = k0 + r;
        if (t >= T) continue;
        float *row = dq_base + (int64_t)t * 3 * C;
        #pragma unroll
        for (int j = 0; j < D / 16; j++) {
            const int c = tx + 16 * j;
            if (c >= HS) continue;
            row[C + c] += Qs[r * LD + c];
            row[2 * C + c] += dOs[r * LD + c];
        }
    }
}

// ---------------------------------------------------------------- plans

// Plans of the key lists seen so far, keyed by the lists' pointers, T, nnz
// and a hash of off (and of a sample of keys), so that lists freed and
// others allocated at the same address are not mistaken for them.
enum { N_PLANS = 16 };
typedef struct {
    const int32_t *off, *keys;
    int T;
    int64_t nnz;
    uint64_t hash;
    uint64_t last_use;
    attn_plan host;
    void *dev;  // the device copy of host.blob
    dev_plan d; // its arrays
} plan_entry;
static plan_entry g_plans[N_PLANS];
static uint64_t g_plan_clock = 0;

static uint64_t lists_hash(const int32_t *off, const int32_t *keys, int64_t nnz, int T) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (int t = 0; t <= T; t++) h = (h ^ (uint32_t)off[t]) * 0x100000001B3ull;
    for (int i = 0; i < 64 && nnz > 0; i++) h = (h ^ (uint32_t)keys[nnz * i / 64]) * 0x100000001B3ull;
    return h;
}

template <typename P>
static P *dev_ptr(const plan_entry *e, const void *host_ptr) {
    return (P *)((char *)e->dev + ((const char *)host_ptr - (const char *)e->host.blob));
}

// The plan of (off, keys), built and uploaded on first use. Bad lists are a
// bug of the caller: the message names the query, and the process aborts.
static const plan_entry *plan_get(const int32_t *off, const int32_t *keys, int64_t nnz, int T) {
    const uint64_t hash = lists_hash(off, keys, nnz, T);
    plan_entry *e = NULL;
    for (int i = 0; i < N_PLANS && !e; i++)
        if (g_plans[i].dev && g_plans[i].off == off && g_plans[i].keys == keys && g_plans[i].T == T &&
            g_plans[i].nnz == nnz && g_plans[i].hash == hash)
            e = &g_plans[i];
    if (!e) {
        e = &g_plans[0];
        for (int i = 1; i < N_PLANS; i++) // a free slot, else the least recently used
            if (!g_plans[i].dev ? e->dev != NULL : (e->dev && g_plans[i].last_use < e->last_use)) e = &g_plans[i];
        if (e->dev) {
            CUDA_CHECK(cudaStreamSynchronize(cuda_stream)); // kernels in flight may read it
            CUDA_CHECK(cudaFree(e->dev));
            attn_plan_free(&e->host);
            e->dev = NULL;
        }
        char err[256];
        if (attn_plan_build(&e->host, off, keys, nnz, T, BQ, BK, err, sizeof err) != 0) {
            fprintf(stderr, "dalle: CUDA attention: %s\n", err);
            abort();
        }
        CUDA_CHECK(cudaMalloc(&e->dev, e->host.bytes));
        CUDA_CHECK(cudaMemcpyAsync(e->dev, e->host.blob, e->host.bytes, cudaMemcpyHostToDevice, cuda_stream));
        e->off = off;
        e->keys = keys;
        e->T = T;
        e->nnz = nnz;
        e->hash = hash;
        e->d.masks = dev_ptr<const uint64_t>(e, e->host.masks);
        e->d.q_off = dev_ptr<const int32_t>(e, e->host.q_off);
        e->d.pair_qb = dev_ptr<const int32_t>(e, e->host.pair_qb);
        e->d.pair_kb = dev_ptr<const int32_t>(e, e->host.pair_kb);
        e->d.pair_mask = dev_ptr<const int32_t>(e, e->host.pair_mask);
        e->d.k_off = dev_ptr<const int32_t>(e, e->host.k_off);
        e->d.k_pairs = dev_ptr<const int32_t>(e, e->host.k_pairs);
    }
    e->last_use = ++g_plan_clock;
    return e;
}

// ---------------------------------------------------------------- launches

static size_t fwd_smem(int D) { return sizeof(float) * (size_t)(BQ * (D + 1) + BK * (D + 1) + BK * D + BQ * (BK + 1)); }
static size_t bwd_smem(int D) {
    return sizeof(float) * (size_t)(2 * BK * (D + 1) + 2 * BQ * (D + 1) + BQ * (BK + 1) + 2 * BQ);
}
// The tensor-core kernels': the score tile is also the (BQ, LD) output tile.
static size_t fwd_tc_smem(int D) {
    const int LD = TC_LD(D), LT = LD > TC_LS ? LD : TC_LS;
    return sizeof(float) * (size_t)(BQ * LD + 2 * BK * LD + BQ * LT);
}
static size_t bwd_tc_smem(int D) {
    return sizeof(float) * (size_t)(2 * BK * TC_LD(D) + 2 * BQ * TC_LD(D) + 2 * BQ * TC_LS + 2 * BQ);
}

// Lets KERNEL use `bytes` of dynamic shared memory (over the default 48 KiB).
static void allow_smem(const void *kernel, size_t bytes, const char *name) {
    if (bytes > cuda_prop.sharedMemPerBlockOptin) {
        fprintf(stderr, "dalle: CUDA attention: %s needs %zu bytes of shared memory, the device has %zu\n", name,
                bytes, (size_t)cuda_prop.sharedMemPerBlockOptin);
        abort();
    }
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// Whether the forward and backward run on the tensor cores: DALLE_CUDA_ATTN
// (tc or simt, read at each call), else DALLE_CUDA_TF32 (read once by
// cuda_register_attention_ops); never before sm_80 (no TF32 wmma).
static int g_tf32 = 0;
static int attn_tc(void) {
    const char *s = getenv("DALLE_CUDA_ATTN");
    int tc = g_tf32;
    if (s && !strcmp(s, "tc")) tc = 1;
    else if (s && !strcmp(s, "simt")) tc = 0;
    else if (s && *s) {
        static int warned = 0;
        if (!warned) fprintf(stderr, "dalle: DALLE_CUDA_ATTN=%s: not tc or simt, ignored\n", s);
        warned = 1;
    }
    return tc && cuda_prop.major >= 8;
}

template <int D>
static void launch_forward(float *out, float *p, const float *qkv, const plan_entry *e, int B, int NH, int HS) {
    static int ready = 0, ready_tc = 0;
    const float scale = 1.0f / sqrtf((float)HS);
    dim3 grid((unsigned)(B * NH), (unsigned)e->host.n_qb);
    if (attn_tc()) {
        const size_t smem = fwd_tc_smem(D);
        if (!ready_tc) {
            allow_smem((const void *)attn_forward_tc_kernel<D>, smem, "attn_forward_tc_kernel");
            ready_tc = 1;
        }
        attn_forward_tc_kernel<D><<<grid, ATT_THREADS, smem, cuda_stream>>>(out, p, qkv, e->d, e->nnz, e->T, NH, HS,
                                                                              scale);
        CUDA_LAUNCHED("attn_forward_tc_kernel");
        return;
    }
    const size_t smem = fwd_smem(D);
    if (!ready) {
        allow_smem((const void *)attn_forward_kernel<D>, smem, "attn_forward_kernel");
        ready = 1;
    }
    attn_forward_kernel<D><<<grid, ATT_THREADS, smem, cuda_stream>>>(out, p, qkv, e->d, e->nnz, e->T, NH, HS, scale);
    CUDA_LAUNCHED("attn_forward_kernel");
}

template <int D>
static void launch_backward(float *dqkv, const float *dout, const float *qkv, const float *p, const float *Dv,
                            const plan_entry *e, int B, int NH, int HS) {
    static int ready = 0, ready_tc = 0;
    const float scale = 1.0f / sqrtf((float)HS);
    dim3 grid((unsigned)(B * NH), (unsigned)e->host.n_kb);
    if (attn_tc()) {
        const size_t smem = bwd_tc_smem(D);
        if (!ready_tc) {
            allow_smem((const void *)attn_backward_tc_kernel<D>, smem, "attn_backward_tc_kernel");
            ready_tc = 1;
        }
        attn_backward_tc_kernel<D><<<grid, ATT_THREADS, smem, cuda_stream>>>(dqkv, dout, qkv, p, Dv, e->d, e->nnz,
                                                                               e->T, NH, HS, scale);
        CUDA_LAUNCHED("attn_backward_tc_kernel");
        return;
    }
    const size_t smem = bwd_smem(D);
    if (!ready) {
        allow_smem((const void *)attn_backward_kernel<D>, smem, "attn_backward_kernel");
        ready = 1;
    }
    attn_backward_kernel<D><<<grid, ATT_THREADS, smem, cuda_stream>>>(dqkv, dout, qkv, p, Dv, e->d, e->nnz, e->T, NH,
                                                                        HS, scale);
    CUDA_LAUNCHED("attn_backward_kernel");
}

// The padded head size of HS: 32, 64 or 128 (HS above 128 is refused).
static int padded_hs(int HS) {
    if (HS < 1 || HS > 128) {
        fprintf(stderr, "dalle: CUDA attention: head size %d is not supported (1 .. 128)\n", HS);
        abort();
    }
    return HS <= 32 ? 32 : HS <= 64 ? 64 : 128;
}

// The lse of each query lives in p (nnz floats per (b, h)): lists with fewer
// keys than queries in all (never the prior's: every query sees itself)
// leave no room for it.
static void check_room(int64_t nnz, int T) {
    if (nnz < T) {
        fprintf(stderr, "dalle: CUDA attention: %lld keys for %d queries: p has no room for the backward's state\n",
                (long long)nnz, T);
        abort();
    }
}

static void cuda_attention_forward(float *out, float *p, const float *qkv, const int32_t *off, const int32_t *keys,
                                   int64_t nnz, int B, int T, int NH, int HS) {
    if (B <= 0 || T <= 0 || NH <= 0) return;
    check_room(nnz, T);
    const plan_entry *e = plan_get(off, keys, nnz, T);
    switch (padded_hs(HS)) {
    case 32: launch_forward<32>(out, p, qkv, e, B, NH, HS); break;
    case 64: launch_forward<64>(out, p, qkv, e, B, NH, HS); break;
    default: launch_forward<128>(out, p, qkv, e, B, NH, HS); break;
    }
}

// scratch (B*NH*T floats) holds D = rowsum(dout * out), from the forward's
// output out as the caller kept it.
static void cuda_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                                    const float *p, const int32_t *off, const int32_t *keys, int64_t nnz, int B,
                                    int T, int NH, int HS, float *scratch) {
    if (B <= 0 || T <= 0 || NH <= 0) return;
    check_room(nnz, T);
    const plan_entry *e = plan_get(off, keys, nnz, T);
    const int D = padded_hs(HS);
    const int64_t rows = (int64_t)B * T * NH, blocks = (rows + ATT_THREADS / 32 - 1) / (ATT_THREADS / 32);
    const unsigned grid = (unsigned)(blocks < 65536 ? blocks : 65536); // a warp per row, grid-stride beyond
    attn_rowdot_kernel<<<grid, ATT_THREADS, 0, cuda_stream>>>(scratch, dout, out, rows, T, NH, HS);
    CUDA_LAUNCHED("attn_rowdot_kernel");
    switch (D) {
    case 32: launch_backward<32>(dqkv, dout, qkv, p, scratch, e, B, NH, HS); break;
    case 64: launch_backward<64>(dqkv, dout, qkv, p, scratch, e, B, NH, HS); break;
    default: launch_backward<128>(dqkv, dout, qkv, p, scratch, e, B, NH, HS); break;
    }
}

// ---------------------------------------------------------------- decode

#define DEC_THREADS 128

// The sum or max of v over the block (DEC_THREADS threads), in every thread.
__device__ float dec_block_reduce(float v, float *red, int is_max) {
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    v = red[0];
    for (int i = 1; i < DEC_THREADS / 32; i++) v = is_max ? fmaxf(v, red[i]) : v + red[i];
    __syncthreads(); // red may be reused
    return v;
}

// One block per (candidate k, head h) = blockIdx.x / NH, % NH: scores of the
// L caption keys and the n_img image keys (ring rows (img_keys[e] - L) % W of
// candidate k), softmax, weighted values. scores: scratch (K, NH, L + n_img).
__global__ void __launch_bounds__(DEC_THREADS)
    attn_decode_kernel(float *out, const float *qkv, const float *kt, const float *vt, const float *ki,
                       const float *vi, const int32_t *img_keys, int n_img, int L, int W, int NH, int HS,
                       float scale, float *scratch) {
    __shared__ float red[DEC_THREADS / 32];
    __shared__ float part[DEC_THREADS]; // (groups, HS) partial outputs
    const int k = blockIdx.x / NH, h = blockIdx.x % NH, C = NH * HS, S = L + n_img;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float *q = qkv + (int64_t)k * 3 * C + h * HS;
    float *s = scratch + (int64_t)blockIdx.x * S;
    // key e's row: a caption key, or candidate k's ring row of image key e - L
#define DEC_ROW(tab_t, tab_i, e)                                                                                       \
    ((e) < L ? (tab_t) + (int64_t)(e) * C + h * HS                                                                     \
             : (tab_i) + ((int64_t)k * W + (img_keys[(e) - L] - L) % W) * C + h * HS)
    float mx = -INFINITY;
    for (int e = warp; e < S; e += DEC_THREADS / 32) { // one warp per key
        const float *kr = DEC_ROW(kt, ki, e);
        float a = 0.0f;
        for (int c = lane; c < HS; c += 32) a += q[c] * kr[c];
        for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
        a *= scale;
        if (lane == 0) s[e] = a;
        mx = fmaxf(mx, a);
    }
    mx = dec_block_reduce(mx, red, 1); // also orders the writes of s before the reads below
    float sum = 0.0f;
    for (int e = threadIdx.x; e < S; e += DEC_THREADS) {
        const float x = expf(s[e] - mx);
        s[e] = x;
        sum += x;
    }
    sum = dec_block_reduce(sum, red, 0);
    // groups of HS threads, each over every groups-th key; then the groups' sum in order
    const int groups = DEC_THREADS / HS, g = threadIdx.x / HS, c = threadIdx.x % HS;
    if (g < groups) {
        float acc = 0.0f;
        for (int e = g; e < S; e += groups) acc += s[e] * DEC_ROW(vt, vi, e)[c];
        part[g * HS + c] = acc;
    }
    __syncthreads();
    if (threadIdx.x < HS) {
        float o = 0.0f;
        for (int i = 0; i < groups; i++) o += part[i * HS + threadIdx.x];
        out[(int64_t)k * C + h * HS + threadIdx.x] = o / sum;
    }
#undef DEC_ROW
}

// img_keys in memory the GPU can read: device or managed memory as it is,
// host memory copied into a buffer of this file.
static const int32_t *device_ints(const int32_t *x, int n) {
    static int32_t *buf = NULL;
    static int cap = 0;
    cudaPointerAttributes a;
    if (n <= 0) return x;
    if (cudaPointerGetAttributes(&a, x) == cudaSuccess &&
        (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged))
        return x;
    cudaGetLastError(); // an unregistered pointer may leave an error on older runtimes
    if (n > cap) {
        CUDA_CHECK(cudaStreamSynchronize(cuda_stream)); // a decode in flight may read it
        CUDA_CHECK(cudaFree(buf));
        cap = n + n / 2 + 64;
        CUDA_CHECK(cudaMalloc(&buf, sizeof(int32_t) * (size_t)cap));
    }
    CUDA_CHECK(cudaMemcpyAsync(buf, x, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice, cuda_stream));
    return buf;
}

static void cuda_attention_decode(float *out, const float *qkv, const float *kt, const float *vt, const float *ki,
                                  const float *vi, const int32_t *img_keys, int n_img, int L, int W, int K, int NH,
                                  int HS, float *scratch) {
    if (K <= 0 || NH <= 0) return;
    if (HS < 1 || HS > DEC_THREADS) {
        fprintf(stderr, "dalle: CUDA attention_decode: head size %d is not supported (1 .. %d)\n", HS, DEC_THREADS);
        abort();
    }
    const int32_t *keys = device_ints(img_keys, n_img);
    attn_decode_kernel<<<(unsigned)(K * NH), DEC_THREADS, 0, cuda_stream>>>(out, qkv, kt, vt, ki, vi, keys, n_img, L,
                                                                             W, NH, HS, 1.0f / sqrtf((float)HS),
                                                                             scratch);
    CUDA_LAUNCHED("attn_decode_kernel");
}

void cuda_register_attention_ops(backend_ops *ops) {
    const char *s = getenv("DALLE_CUDA_TF32");
    g_tf32 = s && atoi(s) == 1;
    ops->attention_forward = cuda_attention_forward;
    ops->attention_backward = cuda_attention_backward;
    ops->attention_decode = cuda_attention_decode;
}
