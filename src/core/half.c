// half.c: see half.h. The scalar functions are the reference; the bulk
// ones run eight values at a time with F16C (fp16) and AVX2 integer
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

// ---------------------------------------------------------------- fp16, bf16

uint16_t f32_to_f16(float x) {
    uint32_t u = half_bits_(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    // NaN: keep the top payload bits and set the quiet bit, so that a
    // payload living only in the low bits cannot turn into Inf.
    if (a > 0x7f800000) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff);
    // 65520 is halfway between 65504 (odd mantissa) and 65536: ties to even
    // go up, so it and everything above (Inf included) becomes Inf.
    if (a >= 0x477ff000) return sign | 0x7c00;
    if (a >= 0x38800000) {
        // Normal in f16: rebias the exponent (127 -> 15) and round away the
        // 13 low mantissa bits; a carry rolls into the exponent correctly.
        uint32_t odd = (a >> 13) & 1;
        return sign | (uint16_t)((a - 0x38000000 + 0xfff + odd) >> 13);
    }
    // 2^-25 is halfway between 0 and the smallest subnormal 2^-24; even is 0.
    if (a <= 0x33000000) return sign;
    // Subnormal in f16: the result counts units of 2^-24.
    uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; // 14..24
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++; // may reach 0x400, the smallest normal
    return sign | (uint16_t)h;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        // zero or subnormal: m * 2^-24 is exact in float32
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    // infinity, or NaN made quiet (as F16C's conversion does)
    if (e == 31) return half_float_(sign | 0x7f800000 | (m << 13) | (m ? 0x400000u : 0));
    return half_float_(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t f32_to_bf16(float x) {
    uint32_t u = half_bits_(x);
    // NaN: truncation could clear every payload bit (giving Inf); force quiet.
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    // Same exponent range as float32, so rounding the low half to even is all
    // there is; overflow carries into Inf by itself.
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h) { return half_float_((uint32_t)h << 16); }

static inline uint16_t to16(float x, half_fmt f) { return f == HALF_F16 ? f32_to_f16(x) : f32_to_bf16(x); }
static inline float from16(uint16_t h, half_fmt f) { return f == HALF_F16 ? f16_to_f32(h) : bf16_to_f32(h); }

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
        dst[i] = to16(src[i], fmt);
        if (back) back[i] = from16(dst[i], fmt);
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
    for (int64_t i = n8; i < n; i++) dst[i] = from16(src[i], fmt);
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
        float r = from16(to16(x[i], fmt), fmt);
        if (!isfinite(r)) {
            bad++;
            if (filter) r = 0.0f;
        }
        x[i] = r;
    }
    return bad;
}
