// testfill.h: the deterministic fill that tests and tests/ref/*.py share
// (docs/CONVENTIONS.md), so that C and PyTorch see the same weights and inputs
// without committing them.
#pragma once
#include <math.h>
#include <stdint.h>

static inline uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// Uniform in (0, 1), the i-th value of stream `seed`.
static inline double fill_u(uint64_t seed, uint64_t i) {
    return ((double)(splitmix64((seed << 32) + i) >> 40) + 0.5) * (1.0 / 16777216.0);
}
// x[i] = lo + (hi - lo) * u
static inline void fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * fill_u(seed, (uint64_t)i));
}
