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

#ifdef __cplusplus
extern "C" {
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

#ifdef __cplusplus
}
#endif
