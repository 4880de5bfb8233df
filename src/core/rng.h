// rng.h: counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
// A stream is (key = seed, counter); the i-th draw depends only on the key and
// i, so work split over threads by index is reproducible for a given seed,
// whatever the thread count, and the state to checkpoint is two integers.
#pragma once
#include <stdint.h>

typedef struct {
    uint64_t seed;    // the key
    uint64_t counter; // how many 128-bit blocks were used
} rng_t;

// A stream for SEED starting at counter 0.
void rng_init(rng_t *r, uint64_t seed);

// The four 32-bit words of Philox4x32-10 at (key, ctr).
void philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4]);

// Fills out[0..n) with uniform floats in (0, 1) (never exactly 0 or 1), and
// advances the stream by ceil(n/4) blocks.
void rng_uniform(rng_t *r, float *out, int64_t n);
// Fills out[0..n) with N(mean, std) (Box-Muller), advances by ceil(n/4) blocks.
void rng_normal(rng_t *r, float *out, int64_t n, float mean, float std);
// Fills out[0..n) with standard Gumbel noise -ln(-ln U), advances by ceil(n/4).
void rng_gumbel(rng_t *r, float *out, int64_t n);
// out[0..n) = the draws first .. first+n-1 that rng_gumbel would give from
// r's state (out[first..first+n) of a larger request), without advancing r:
// a slice of a batch's noise, the same whichever process draws it.
void rng_gumbel_at(const rng_t *r, int64_t first, float *out, int64_t n);
// One uniform 32-bit integer.
uint32_t rng_u32(rng_t *r);
