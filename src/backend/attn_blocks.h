// attn_blocks.h: the tiling plan of the block-sparse attention kernels
// (backend/cuda/attention.cu). Attention over key lists (ops.h: query t
// attends keys[off[t] .. off[t+1])) is cut into tiles of BQ queries x BK
// keys; a kernel visits, for each query block, only the key blocks that hold
// at least one of its keys. A visited (query block, key block) pair is full
// (every query of the block attends every key of the block) or partial, with
// a bitmask of the allowed (query, key) pairs. Plain C17 on the host: the
// same file is compiled into libdalle (tests) and into libdalle-cuda.so, so it
// calls nothing of libdalle (malloc, messages into the caller's buffer).
//
// Sizes: T positions, BQ/BK query/key block sides (BK <= 64: one uint64 of
// mask bits per query row), n_qb = ceil(T/BQ), n_kb = ceil(T/BK).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __CUDACC__
#define ATTN_HD __host__ __device__
#else
#define ATTN_HD
#endif

// The tile sides of the CUDA kernels.
enum { ATTN_BQ = 64, ATTN_BK = 64 };

// Every array is carved from one block (blob, bytes long), masks first, so
// that a device copy is one memcpy and a device pointer is the device block
// plus the host pointer's offset into blob.
typedef struct {
    int T, BQ, BK;
    int n_qb, n_kb;      // query and key blocks
    int n_pairs;         // visited (query block, key block) pairs
    int n_partial;       // of them partial (with a mask)
    int64_t nnz;         // the allowed (query, key) pairs: off[T]
    uint64_t *masks;     // (n_partial, BQ) row r of mask m: bit c set when query q0 + r may attend key k0 + c
    int32_t *q_off;      // (n_qb + 1) the pairs of query block i are [q_off[i], q_off[i+1]), key blocks ascending
    int32_t *pair_qb;    // (n_pairs) query block of each pair
    int32_t *pair_kb;    // (n_pairs) key block of each pair
    int32_t *pair_mask;  // (n_pairs) -1: full; else the index of the pair's mask in masks
    int32_t *k_off;      // (n_kb + 1) the pairs that touch key block j are k_pairs[k_off[j] .. k_off[j+1])
    int32_t *k_pairs;    // (n_pairs) pair indices, query blocks ascending (the backward's walk)
    void *blob;          // the one allocation
    size_t bytes;        // its size
} attn_plan;

// Builds the plan of the key lists off (T+1), keys (nnz) for tiles BQ x BK
// (1 <= BQ, 1 <= BK <= 64). The lists must be well formed: off[0] = 0,
// off nondecreasing, off[T] = nnz, each list strictly ascending with keys in
// [0, T). Returns 0, or -1 with the reason in err (a bad list, named by its
// query; out of memory) and *plan zeroed.
int attn_plan_build(attn_plan *plan, const int32_t *off, const int32_t *keys, int64_t nnz, int T, int BQ, int BK,
                    char *err, size_t err_len);
// Frees the plan's block and zeroes it; a zeroed plan is a no-op.
void attn_plan_free(attn_plan *plan);

// Whether pair p lets row r (query q0 + r) of its query block attend column c
// (key k0 + c) of its key block. Out-of-range positions are never allowed:
// a tile that crosses T is always partial.
static inline int attn_plan_allows(const attn_plan *plan, int p, int r, int c) {
    int m = plan->pair_mask[p];
    if (m < 0) return 1;
    return (int)((plan->masks[(int64_t)m * plan->BQ + r] >> c) & 1u);
}

// The (query, key) pairs the plan's tiles cover, BQ*BK per pair: the work a
// kernel does, against nnz that it must do.
static inline int64_t attn_plan_visited(const attn_plan *plan) {
    return (int64_t)plan->n_pairs * plan->BQ * plan->BK;
}

// ---- The backward state in attention_forward's p (B, NH, nnz): the
// log-sum-exp of each query's scores, lse = m + ln(sum exp(s - m)), from
// which the backward recomputes every probability as exp(s - lse). A 16-bit
// model rounds p to bf16 or fp16 like any activation (prior/forward.c), and
// an lse of 8 rounded to bf16 would move every probability by up to 3%; so,
// where nnz >= 3T (the prior's masks: always but in toy configs), lse is
// kept as three floats, each exactly a bf16 value (and an fp16 value to
// ~3e-8), whose sum is lse: rounding to 16 bits leaves it unchanged. Else one
// float per query, at p[t].

// x rounded to bf16 (to nearest, ties to even), as a float; x finite.
ATTN_HD static inline float attn_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}

// Whether lse is split in three (where p of one (b, h) has room for 3T floats).
ATTN_HD static inline int attn_lse_split(int64_t nnz, int T) { return nnz >= 3 * (int64_t)T; }

// Stores lse of query t into p_bh, the (nnz) floats of one (b, h).
ATTN_HD static inline void attn_lse_store(float *p_bh, int split, int t, float lse) {
    if (!split) {
        p_bh[t] = lse;
        return;
    }
    float hi = lse, mid = 0, lo = 0;
    if (lse - lse == 0) { // finite: each difference below is exact (Sterbenz)
        hi = attn_round_bf16(lse);
        mid = attn_round_bf16(lse - hi);
        lo = attn_round_bf16((lse - hi) - mid);
    }
    p_bh[3 * t] = hi;
    p_bh[3 * t + 1] = mid;
    p_bh[3 * t + 2] = lo;
}

// The lse of query t stored by attn_lse_store.
ATTN_HD static inline float attn_lse_load(const float *p_bh, int split, int t) {
    return split ? (p_bh[3 * t + 2] + p_bh[3 * t + 1]) + p_bh[3 * t] : p_bh[t];
}

#ifdef __cplusplus
}
#endif
