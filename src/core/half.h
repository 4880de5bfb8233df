// half.h: the 16-bit number formats, every conversion in one place. IEEE
// binary16 (fp16) and bfloat16 (bf16) store the mixed-precision prior's
// weights and activations (src/prior/forward.c) and the F16/BF16 tensors of
// safetensors files; e6m9 and ue6m10 are the paper's formats of the 16-bit
// Adam moments (SPEC §3 "Optimisation": 1-6-9 for the mean, 0-6-10 for the
// variance). Every conversion from float32 rounds to nearest, ties to even.
// The bulk functions use F16C and AVX2 when the build has them
// (-march=native) and give exactly the scalar functions' results
// (tests/test_half.c checks every 16-bit code and the rounding cases). The
// scalar functions are inline, and host-and-device functions under nvcc: the
// CUDA backend's conversion and optimizer kernels run this very code.
#pragma once
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define HALF_FN static inline __host__ __device__
#else
#define HALF_FN static inline
#endif

// The two IEEE-style storage formats of mixed precision.
typedef enum { HALF_F16, HALF_BF16 } half_fmt;

// fp16: overflow gives infinity (65520 and up), tiny values the subnormals,
// then zero; NaN stays NaN (quiet, the top payload bits kept).
HALF_FN uint16_t f32_to_f16(float x);
HALF_FN float f16_to_f32(uint16_t h);
// bf16: float32's exponent range, 8 significant bits; NaN stays NaN (quiet).
HALF_FN uint16_t f32_to_bf16(float x);
HALF_FN float bf16_to_f32(uint16_t h);
// One value in fmt, and back.
HALF_FN uint16_t half_encode(float x, half_fmt fmt);
HALF_FN float half_decode(uint16_t h, half_fmt fmt);

// dst (n) = src (n) in fmt.
void half_from_f32(uint16_t *dst, const float *src, int64_t n, half_fmt fmt);
// dst (n) = the values of src (n), exactly.
void half_to_f32(float *dst, const uint16_t *src, int64_t n, half_fmt fmt);
// Storage of an activation: dst (n) = x (n) in fmt, and x becomes exactly
// what dst holds, so that the computation goes on with the stored values.
void half_store(uint16_t *dst, float *x, int64_t n, half_fmt fmt);
// x (n) rounded to fmt in place (the values a 16-bit buffer would hold; an
// fp16 value beyond 65504 becomes infinity). Returns how many results are
// not finite; with `filter` they are set to 0 (the paper's filter of
// non-finite activation gradients).
int64_t half_round(float *x, int64_t n, half_fmt fmt, int filter);

// The Adam moment formats. No infinity or NaN: exponent field 0 holds zero
// and the subnormals (gradual underflow), a value beyond the largest
// saturates to it, one below half the smallest subnormal becomes 0, and NaN
// becomes 0 (it cannot reach them: a step with a non-finite gradient is
// skipped before the update). The exponent biases centre the ranges on what
// Adam's moments hold (docs/training.md, "Mixed precision"):
//   e6m9 (m): sign, 6-bit exponent (bias 56), 9-bit mantissa. Normal values
//     2^-55 .. (2 - 2^-9) 2^7 = 255.75, subnormals down to 2^-64.
//   ue6m10 (v): no sign, 6-bit exponent (bias 48), 10-bit mantissa. Normal
//     values 2^-47 .. (2 - 2^-10) 2^15 = 65504, subnormals down to 2^-57;
//     a negative value becomes 0.
// Inline and branch-free, so that the optimizer's loop (backend/cpu/optim.c)
// vectorises with them.
#define E6M9_BIAS 56
#define UE6M10_BIAS 48
HALF_FN uint16_t f32_to_e6m9(float x);
HALF_FN float e6m9_to_f32(uint16_t h);
HALF_FN uint16_t f32_to_ue6m10(float x);
HALF_FN float ue6m10_to_f32(uint16_t h);

// ---- the implementation of the scalar functions, and the bits of a float

HALF_FN uint32_t half_bits_(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

HALF_FN float half_float_(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// The magnitude code of a (the bits of a non-negative float32, not NaN) in a
// format of a 6-bit exponent with BIAS and MB mantissa bits, saturating.
// Normal results: the exponent rebiased and the low 23 - MB bits rounded to
// nearest even (a carry rolls into the exponent). Subnormal ones: adding
// `magic`, whose last place is the smallest subnormal, makes the FPU round a
// to a whole number of those (to nearest even), left in magic's low bits.
HALF_FN uint32_t half_mag_encode_(uint32_t a, int mb, int bias) {
    const uint32_t sh = 23 - (uint32_t)mb, max = (1u << (6 + mb)) - 1;
    const uint32_t rebias = (uint32_t)(127 - bias) << 23, magic = (uint32_t)(127 - bias + (int)sh + 1) << 23;
    uint32_t normal = (a - rebias + ((1u << (sh - 1)) - 1) + ((a >> sh) & 1)) >> sh;
    uint32_t sub = half_bits_(half_float_(a) + half_float_(magic)) - magic;
    uint32_t c = a < rebias + (1u << 23) ? sub : normal; // below 2^(1 - bias): subnormal
    return c > max ? max : c;
}

HALF_FN float half_mag_decode_(uint32_t c, int mb, int bias) {
    const uint32_t sh = 23 - (uint32_t)mb, rebias = (uint32_t)(127 - bias) << 23;
    const float magic = half_float_((uint32_t)(127 - bias + (int)sh + 1) << 23);
    float sub = half_float_(half_bits_(magic) + c) - magic; // c units of the smallest subnormal, exactly
    float normal = half_float_((c << sh) + rebias);
    return c >> mb ? normal : sub;
}

HALF_FN uint16_t f32_to_e6m9(float x) {
    uint32_t u = half_bits_(x), a = u & 0x7fffffff;
    uint32_t c = ((u >> 16) & 0x8000) | half_mag_encode_(a, 9, E6M9_BIAS);
    return (uint16_t)(a > 0x7f800000 ? 0 : c);
}

HALF_FN float e6m9_to_f32(uint16_t h) {
    return half_float_(half_bits_(half_mag_decode_(h & 0x7fffu, 9, E6M9_BIAS)) | (uint32_t)(h & 0x8000) << 16);
}

HALF_FN uint16_t f32_to_ue6m10(float x) {
    uint32_t u = half_bits_(x);
    // NaN and every negative value (sign bit set) give 0
    return (uint16_t)(u > 0x7f800000 ? 0 : half_mag_encode_(u, 10, UE6M10_BIAS));
}

HALF_FN float ue6m10_to_f32(uint16_t h) { return half_mag_decode_(h, 10, UE6M10_BIAS); }

// ---- fp16 and bf16

HALF_FN uint16_t f32_to_f16(float x) {
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

HALF_FN float f16_to_f32(uint16_t h) {
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

HALF_FN uint16_t f32_to_bf16(float x) {
    uint32_t u = half_bits_(x);
    // NaN: truncation could clear every payload bit (giving Inf); force quiet.
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    // Same exponent range as float32, so rounding the low half to even is all
    // there is; overflow carries into Inf by itself.
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

HALF_FN float bf16_to_f32(uint16_t h) { return half_float_((uint32_t)h << 16); }

HALF_FN uint16_t half_encode(float x, half_fmt fmt) { return fmt == HALF_F16 ? f32_to_f16(x) : f32_to_bf16(x); }
HALF_FN float half_decode(uint16_t h, half_fmt fmt) { return fmt == HALF_F16 ? f16_to_f32(h) : bf16_to_f32(h); }
