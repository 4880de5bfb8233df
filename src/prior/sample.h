// sample.h: sampling image codes from the prior with a KV cache (sample.c).
#pragma once
#include <stdint.h>

#include "dalle/prior.h"

typedef struct {
    float temperature; // logits / temperature (1)
    int top_k;         // keep the k most likely codes (0: all)
    float top_p;       // keep the smallest set of codes whose mass reaches p (1: all)
    uint64_t seed;     // Philox key: candidate c, position j draws from (seed, c, j)
    // Classifier-free guidance (not in the DALL-E paper): with guidance s != 1
    // each draw uses u + s (l - u), l the logits under the caption and u under
    // the empty caption (padding at every text position) for the same image
    // prefix. 1: off. Costs a second pass per image position.
    float guidance;
    int progress;      // show a progress line
    double *step_seconds; // if not NULL, (N): the seconds each image position took (benchmarks)
    void (*on_step)(void *user, int done, int total); // if not NULL: called after each image position
    void *user;
} prior_sample_opts;

// temperature 1, top_k 0, top_p 1, seed 0, guidance 1 (off), no progress line.
prior_sample_opts prior_sample_default_opts(void);
// Samples n_cand grids of image codes for one caption: text (L) ids in
// [0, Vt) -> codes (n_cand, N). All candidates share the caption's cached
// prefix (and, with guidance, the empty caption's). DALLE_ERR (message set)
// on a bad id, a guidance outside [0, 100], or OOM.
int prior_sample(prior_model *m, const int32_t *text, int n_cand, const prior_sample_opts *o, int32_t *codes);
// One draw from logits (V) under o (temperature, top-k, top-p) with the
// uniform of Philox (o->seed, stream, counter). work: room for V (float, int) pairs.
int prior_sample_logits(const float *logits, int V, const prior_sample_opts *o, uint64_t stream, uint64_t counter,
                        void *work);
// Image positions the KV cache keeps for a layer of type TYPE.
int prior_cache_window(const prior_config *c, prior_layer_type type);
