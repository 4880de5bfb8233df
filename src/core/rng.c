// rng.c: Philox4x32-10, the counter-based generator of Salmon et al. (2011),
// as used by cuRAND and JAX. Each 128-bit counter value gives four 32-bit
// words; a stream only stores its key (the seed) and how many blocks it used.
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (uint32_t)p1;
        c2 = n2;
        c3 = (uint32_t)p0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void rng_init(rng_t *r, uint64_t seed) {
    r->seed = seed;
    r->counter = 0;
}

// 23 random bits to a float strictly inside (0, 1): (k + 1/2) / 2^23 is exact
// in float32 for every k < 2^23 (24 bits would round the largest to 1.0, and
// -ln(-ln 1) is infinite).
static inline float u01(uint32_t w) { return ((float)(w >> 9) + 0.5f) * (1.0f / 8388608.0f); }

// The whole of an n-draw request comes from blocks counter .. counter+ceil(n/4)-1;
// block j fills out[4j..4j+3], so any split of the loop gives the same numbers.
void rng_uniform(rng_t *r, float *out, int64_t n) {
    int64_t nblk = (n + 3) / 4;
#pragma omp parallel for if (n > 65536)
    for (int64_t j = 0; j < nblk; j++) {
        uint32_t w[4];
        philox4x32(r->seed, 0, r->counter + (uint64_t)j, w);
        for (int q = 0; q < 4 && 4 * j + q < n; q++) out[4 * j + q] = u01(w[q]);
    }
    r->counter += (uint64_t)nblk;
}

void rng_normal(rng_t *r, float *out, int64_t n, float mean, float std) {
    int64_t nblk = (n + 3) / 4;
#pragma omp parallel for if (n > 65536)
    for (int64_t j = 0; j < nblk; j++) {
        uint32_t w[4];
        philox4x32(r->seed, 0, r->counter + (uint64_t)j, w);
        for (int q = 0; q < 4; q += 2) {
            double rad = sqrt(-2.0 * log((double)u01(w[q])));
            double ang = 6.283185307179586 * (double)u01(w[q + 1]);
            if (4 * j + q < n) out[4 * j + q] = mean + std * (float)(rad * cos(ang));
            if (4 * j + q + 1 < n) out[4 * j + q + 1] = mean + std * (float)(rad * sin(ang));
        }
    }
    r->counter += (uint64_t)nblk;
}

void rng_gumbel(rng_t *r, float *out, int64_t n) {
    rng_uniform(r, out, n);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = -logf(-logf(out[i]));
}

void rng_gumbel_at(const rng_t *r, int64_t first, float *out, int64_t n) {
    int64_t b0 = first / 4, b1 = (first + n + 3) / 4;
#pragma omp parallel for if (n > 65536)
    for (int64_t j = b0; j < b1; j++) {
        uint32_t w[4];
        philox4x32(r->seed, 0, r->counter + (uint64_t)j, w);
        for (int q = 0; q < 4; q++) {
            int64_t i = 4 * j + q - first;
            if (i >= 0 && i < n) out[i] = -logf(-logf(u01(w[q])));
        }
    }
}

uint32_t rng_u32(rng_t *r) {
    uint32_t w[4];
    philox4x32(r->seed, 0, r->counter++, w);
    return w[0];
}
