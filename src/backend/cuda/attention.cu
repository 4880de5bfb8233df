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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        #pragma unroll
        for (int j = 0; j < D / 16; j++) o[i][j] = 0.0f;
    }
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
            float mx = m[i];
            #pragma unroll
            for (int j = 0; j < 4; j++) {
                s[i][j] = (bits >> (tx + 16 * j)) & 1 ? s[i][j] * scale : -INFINITY;
                mx = fmaxf(mx, s[i][j]);
            }
            mx = row_max16(mx);
            // a row with nothing allowed so far keeps m = -inf, l = 0 (exp(-inf - -inf) is NaN)
            const float alpha = mx == -INFINITY ? 1.0f : expf(m[i] - mx);
            float sum = 0.0f;
            #pragma unroll
            for (int j = 0; j < 4; j++) {
                const float e = mx == -INFINITY ? 0.0f : expf(s[i][j] - mx);
                Ps[r * (BK + 1) + tx + 16 * j] = e;
                sum += e;
            }
            l[i] = l[i] * alpha + row_sum16(sum);
            m[i] = mx;
            #pragma unroll
            for (int j = 0; j < D / 16; j++) o[i][j] *= alpha;
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

// Lets KERNEL use `bytes` of dynamic shared memory (over the default 48 KiB).
static void allow_smem(const void *kernel, size_t bytes, const char *name) {
    if (bytes > cuda_prop.sharedMemPerBlockOptin) {
        fprintf(stderr, "dalle: CUDA attention: %s needs %zu bytes of shared memory, the device has %zu\n", name,
                bytes, (size_t)cuda_prop.sharedMemPerBlockOptin);
        abort();
    }
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int D>
static void launch_forward(float *out, float *p, const float *qkv, const plan_entry *e, int B, int NH, int HS) {
    static int ready = 0;
    const size_t smem = fwd_smem(D);
    if (!ready) {
        allow_smem((const void *)attn_forward_kernel<D>, smem, "attn_forward_kernel");
        ready = 1;
    }
    dim3 grid((unsigned)(B * NH), (unsigned)e->host.n_qb);
    attn_forward_kernel<D><<<grid, ATT_THREADS, smem, cuda_stream>>>(out, p, qkv, e->d, e->nnz, e->T, NH, HS,
                                                                       1.0f / sqrtf((float)HS));
    CUDA_LAUNCHED("attn_forward_kernel");
}

template <int D>
static void launch_backward(float *dqkv, const float *dout, const float *qkv, const float *p, const float *Dv,
                            const plan_entry *e, int B, int NH, int HS) {
    static int ready = 0;
    const size_t smem = bwd_smem(D);
    if (!ready) {
        allow_smem((const void *)attn_backward_kernel<D>, smem, "attn_backward_kernel");
        ready = 1;
    }
    dim3 grid((unsigned)(B * NH), (unsigned)e->host.n_kb);
    attn_backward_kernel<D><<<grid, ATT_THREADS, smem, cuda_stream>>>(dqkv, dout, qkv, p, Dv, e->d, e->nnz, e->T,
                                                                        NH, HS, 1.0f / sqrtf((float)HS));
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
    ops->attention_forward = cuda_attention_forward;
    ops->attention_backward = cuda_attention_backward;
    ops->attention_decode = cuda_attention_decode;
}
