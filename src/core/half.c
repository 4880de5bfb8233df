// half.c: see half.h. The scalar functions (inline, in half.h) are the
// reference; the bulk ones here run eight values at a time with F16C (fp16) and AVX2 integer
// arithmetic (bf16) when the compiler targets them, the tail and other
// builds through the scalar functions.
#include "core/half.h"

#include <math.h>
#include <string.h>

#if defined(__F16C__) && defined(__AVX2__)
#include <immintrin.h>
#define HALF_SIMD 1
#endif

// Bulk loops split across threads from this many values on.
#define HALF_PAR_MIN 65536

// ---------------------------------------------------------------- bulk

#ifdef HALF_SIMD
// Eight floats in fmt, as eight 16-bit codes; the bf16 rounding is
// f32_to_bf16's, lane by lane (the NaN lanes take the quieted pattern).
static inline __m128i to16x8(__m256 x, half_fmt f) {
    if (f == HALF_F16) return _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i u = _mm256_castps_si256(x);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd));
    __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
    r = _mm256_blendv_epi8(r, quiet, _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    r = _mm256_srli_epi32(r, 16);
    // pack within each 128-bit lane, then bring the two low halves together
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    return _mm256_castsi256_si128(p);
}

static inline __m256 from16x8(__m128i h, half_fmt f) {
    if (f == HALF_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

// dst (n) = src (n) in fmt; back (n, may be src or NULL) = the stored values.
static void store(uint16_t *dst, const float *src, float *back, int64_t n, half_fmt fmt) {
    int64_t n8 = 0;
#ifdef HALF_SIMD
    n8 = n & ~(int64_t)7;
#pragma omp parallel for schedule(static) if (n >= HALF_PAR_MIN)
    for (int64_t i = 0; i < n8; i += 8) {
        __m128i h = to16x8(_mm256_loadu_ps(src + i), fmt);
        _mm_storeu_si128((__m128i *)(dst + i), h);
        if (back) _mm256_storeu_ps(back + i, from16x8(h, fmt));
    }
#endif
    for (int64_t i = n8; i < n; i++) {
        dst[i] = half_encode(src[i], fmt);
        if (back) back[i] = half_decode(dst[i], fmt);
    }
}

void half_from_f32(uint16_t *dst, const float *src, int64_t n, half_fmt fmt) { store(dst, src, NULL, n, fmt); }

void half_store(uint16_t *dst, float *x, int64_t n, half_fmt fmt) { store(dst, x, x, n, fmt); }

void half_to_f32(float *dst, const uint16_t *src, int64_t n, half_fmt fmt) {
    int64_t n8 = 0;
#ifdef HALF_SIMD
    n8 = n & ~(int64_t)7;
#pragma omp parallel for schedule(static) if (n >= HALF_PAR_MIN)
    for (int64_t i = 0; i < n8; i += 8)
        _mm256_storeu_ps(dst + i, from16x8(_mm_loadu_si128((const __m128i *)(src + i)), fmt));
#endif
    for (int64_t i = n8; i < n; i++) dst[i] = half_decode(src[i], fmt);
}

int64_t half_round(float *x, int64_t n, half_fmt fmt, int filter) {
    int64_t n8 = 0, bad = 0;
#ifdef HALF_SIMD
    n8 = n & ~(int64_t)7;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n >= HALF_PAR_MIN)
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 r = from16x8(to16x8(_mm256_loadu_ps(x + i), fmt), fmt);
        __m256 mag = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), r);
        __m256 fin = _mm256_cmp_ps(mag, _mm256_set1_ps(INFINITY), _CMP_LT_OQ); // false for inf and NaN
        int mask = _mm256_movemask_ps(fin);
        if (mask != 0xff) {
            bad += 8 - __builtin_popcount((unsigned)mask);
            if (filter) r = _mm256_and_ps(r, fin);
        }
        _mm256_storeu_ps(x + i, r);
    }
#endif
    for (int64_t i = n8; i < n; i++) {
        float r = half_decode(half_encode(x[i], fmt), fmt);
        if (!isfinite(r)) {
            bad++;
            if (filter) r = 0.0f;
        }
        x[i] = r;
    }
    return bad;
}
