// attn_lists.h: key lists for the attention tests (test_attn_blocks on the
// CPU, tests/cuda/test_cuda_transformer on the GPU): ops.h's attention has
// query q attend keys[off[q] .. off[q+1]) (ascending). The lists come from a
// predicate allow(q, k): the prior's masks exactly as prior/model.c builds
// them (k <= q and prior_mask), dense causal, a sliding window, random.
#pragma once
#include <stdint.h>
#include <stdlib.h>

#include "dalle/prior.h"
#include "testfill.h"

typedef struct {
    int T;
    int64_t nnz;
    int32_t *off;  // (T+1)
    int32_t *keys; // (nnz)
    void (*free)(void *);
} key_lists;

typedef int (*lists_allow)(const void *ctx, int q, int k);

// The lists of allow over T positions, in memory from alloc (freed by dealloc).
static inline key_lists lists_build(int T, lists_allow allow, const void *ctx, void *(*alloc)(size_t),
                                    void (*dealloc)(void *)) {
    key_lists kl = {.T = T, .free = dealloc};
    for (int q = 0; q < T; q++)
        for (int k = 0; k < T; k++) kl.nnz += allow(ctx, q, k);
    kl.off = alloc(sizeof(int32_t) * (size_t)(T + 1));
    kl.keys = alloc(sizeof(int32_t) * (size_t)(kl.nnz + 1));
    if (!kl.off || !kl.keys) abort();
    int64_t n = 0;
    for (int q = 0; q < T; q++) {
        kl.off[q] = (int32_t)n;
        for (int k = 0; k < T; k++)
            if (allow(ctx, q, k)) kl.keys[n++] = k;
    }
    kl.off[T] = (int32_t)n;
    return kl;
}

static inline void lists_free(key_lists *kl) {
    kl->free(kl->off);
    kl->free(kl->keys);
}

typedef struct {
    prior_config cfg;
    prior_layer_type type;
} lists_prior_ctx;

static inline int allow_prior(const void *ctx, int q, int k) {
    const lists_prior_ctx *c = ctx;
    return k <= q && prior_mask(&c->cfg, c->type, q, k);
}
static inline int allow_causal(const void *ctx, int q, int k) {
    (void)ctx;
    return k <= q;
}
// Every key, past and future (the reranker's image tower).
static inline int allow_all(const void *ctx, int q, int k) {
    (void)ctx, (void)q, (void)k;
    return 1;
}
// ctx: the window's length n: q attends q-n+1 .. q.
static inline int allow_window(const void *ctx, int q, int k) { return k <= q && k > q - *(const int *)ctx; }
// ctx: a seed. Any key, not only k <= q (the plan must not assume
// causality); each list has its own density, a tenth of them empty.
static inline int allow_random(const void *ctx, int q, int k) {
    const uint64_t seed = *(const uint64_t *)ctx;
    const double density = fill_u(seed, (uint64_t)q) < 0.1 ? 0 : fill_u(seed + 1, (uint64_t)q);
    return fill_u(seed + 2, (uint64_t)q * 65536 + (uint64_t)k) < density;
}

// The lists of a layer of type TYPE in a prior of config CFG (T = L + G*G).
static inline key_lists lists_prior(const prior_config *cfg, prior_layer_type type, void *(*alloc)(size_t),
                                    void (*dealloc)(void *)) {
    lists_prior_ctx c = {*cfg, type};
    return lists_build(cfg->text_len + cfg->grid * cfg->grid, allow_prior, &c, alloc, dealloc);
}
