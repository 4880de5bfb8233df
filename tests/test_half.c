// test_half.c: the 16-bit formats of core/half.h.
//   - fp16 and bf16: the bulk conversions (F16C / AVX2 in this build) give
//     exactly the scalar ones for every 16-bit code, for the rounding cases
//     (each midpoint and its neighbours) and for random bit patterns, at
//     lengths that exercise the tails; half_store and half_round agree with
//     them, and half_round counts (and filters) the non-finite results;
//   - the Adam moment formats e6m9 and ue6m10: every code decodes and
//     encodes back to itself, decoding is monotonic, the range ends are the
//     documented ones, rounding is to the nearest code with ties to even
//     (against a search over all codes), and saturation, underflow, NaN and
//     negative values go where half.h says;
//   - adamw_update16 is adamw_update on the decoded moments.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/half.h"
#include "test.h"
#include "testfill.h"
#include "train/optim.h"

// The bits of a float, and the float of some bits.
typedef union {
    float f;
    uint32_t u;
} fbits_t;
#define fbits(x) ((fbits_t){.f = (x)}.u)
#define bitsf(x) ((fbits_t){.u = (x)}.f)

static uint16_t to16(float x, half_fmt f) { return f == HALF_F16 ? f32_to_f16(x) : f32_to_bf16(x); }
static float from16(uint16_t h, half_fmt f) { return f == HALF_F16 ? f16_to_f32(h) : bf16_to_f32(h); }

// Test inputs for f32 -> 16 bits: every 16-bit value, the midpoints between
// neighbours and the floats next to them, specials, random bit patterns.
static float *conversion_inputs(half_fmt f, int64_t *n) {
    int64_t cap = 65536 * 4 + 16 + 200003, k = 0;
    float *x = malloc(sizeof(float) * (size_t)cap);
    for (uint32_t h = 0; h < 65536; h++) {
        float a = from16((uint16_t)h, f), b = from16((uint16_t)(h + 1), f);
        x[k++] = a;
        if (isfinite(a) && isfinite(b) && (h & 0x7fff) != 0x7fff) {
            float mid = (float)(((double)a + (double)b) / 2); // exact: one more bit than the format
            x[k++] = mid;
            x[k++] = nextafterf(mid, 0);
            x[k++] = nextafterf(mid, INFINITY);
        }
    }
    const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX, FLT_MIN, FLT_TRUE_MIN,
                        65504.0f, 65520.0f, 1e-8f, bitsf(0x7f800001), bitsf(0xff800001), bitsf(0x7fc00001), 3.0f};
    for (size_t i = 0; i < sizeof sp / sizeof *sp; i++) x[k++] = sp[i];
    for (uint64_t i = 0; k < cap; i++) x[k++] = bitsf((uint32_t)splitmix64(i + 99));
    *n = k;
    return x;
}

static void test_bulk_equals_scalar(void) {
    for (int fi = 0; fi < 2; fi++) {
        half_fmt f = fi ? HALF_BF16 : HALF_F16;
        // 16 bits -> f32: every code
        uint16_t *codes = malloc(sizeof(uint16_t) * 65536);
        float *got = malloc(sizeof(float) * 65536);
        for (int i = 0; i < 65536; i++) codes[i] = (uint16_t)i;
        half_to_f32(got, codes, 65536, f);
        int bad = 0;
        for (int i = 0; i < 65536; i++) bad += fbits(got[i]) != fbits(from16((uint16_t)i, f));
        CHECK(bad == 0);
        // f32 -> 16 bits, at a length that leaves a tail
        int64_t n;
        float *x = conversion_inputs(f, &n);
        n -= 3;
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n), *hs = malloc(sizeof(uint16_t) * (size_t)n);
        float *y = malloc(sizeof(float) * (size_t)n), *z = malloc(sizeof(float) * (size_t)n);
        half_from_f32(h, x, n, f);
        int64_t bad16 = 0, badstore = 0, badround = 0, nonfinite = 0;
        for (int64_t i = 0; i < n; i++) bad16 += h[i] != to16(x[i], f);
        memcpy(y, x, sizeof(float) * (size_t)n);
        half_store(hs, y, n, f);
        memcpy(z, x, sizeof(float) * (size_t)n);
        int64_t cnt = half_round(z, n, f, 0);
        for (int64_t i = 0; i < n; i++) {
            float r = from16(to16(x[i], f), f);
            badstore += hs[i] != h[i] || fbits(y[i]) != fbits(r);
            badround += fbits(z[i]) != fbits(r);
            nonfinite += !isfinite(r);
        }
        printf("    %s: %lld values: bulk vs scalar mismatches %lld, store %lld, round %lld; %lld not finite\n",
               fi ? "bf16" : "fp16", (long long)n, (long long)bad16, (long long)badstore, (long long)badround,
               (long long)nonfinite);
        CHECK(bad16 == 0 && badstore == 0 && badround == 0 && cnt == nonfinite);
        memcpy(z, x, sizeof(float) * (size_t)n);
        CHECK(half_round(z, n, f, 1) == nonfinite);
        int64_t left = 0;
        for (int64_t i = 0; i < n; i++) left += !isfinite(z[i]) || (!isfinite(from16(to16(x[i], f), f)) && z[i] != 0);
        CHECK(left == 0);
        free(codes), free(got), free(x), free(h), free(hs), free(y), free(z);
    }
    // fp16 overflows where bf16 does not
    float v[9] = {1, 2, 70000, -1e5f, 3, 4, 5, 6, 1e-9f};
    CHECK(half_round(v, 9, HALF_F16, 1) == 2 && v[2] == 0 && v[3] == 0 && v[8] == 0);
    float w[9] = {1, 2, 70000, -1e5f, 3, 4, 5, 6, 7};
    CHECK(half_round(w, 9, HALF_BF16, 1) == 0 && w[2] == 70144.0f);
}

// ---------------------------------------------------------------- Adam formats

typedef struct {
    const char *name;
    uint16_t (*enc)(float);
    float (*dec)(uint16_t);
    int n_codes; // codes of the non-negative values: 2^15 (e6m9), 2^16 (ue6m10)
    float max, min_normal, min_sub;
} afmt;

static const afmt AF[2] = {
    {"e6m9", f32_to_e6m9, e6m9_to_f32, 1 << 15, 255.75f, 0x1p-55f, 0x1p-64f},
    {"ue6m10", f32_to_ue6m10, ue6m10_to_f32, 1 << 16, 65504.0f, 0x1p-47f, 0x1p-57f},
};

// The code of the nearest non-negative value to x >= 0 (ties: the even
// code), by binary search over the decoded codes; saturating at the largest.
static uint16_t ref_encode(const afmt *a, const float *val, float x) {
    int lo = 0, hi = a->n_codes - 1;
    if (x >= val[hi]) return (uint16_t)hi;
    while (hi - lo > 1) { // val[lo] <= x < val[hi]
        int mid = (lo + hi) / 2;
        if (val[mid] <= x) lo = mid;
        else hi = mid;
    }
    double dl = (double)x - val[lo], dh = (double)val[hi] - x;
    if (dl < dh) return (uint16_t)lo;
    if (dh < dl) return (uint16_t)hi;
    return (uint16_t)(lo % 2 == 0 ? lo : hi);
}

static void test_adam_formats(void) {
    for (int k = 0; k < 2; k++) {
        const afmt *a = &AF[k];
        float *val = malloc(sizeof(float) * (size_t)a->n_codes);
        int bad_rt = 0, bad_mono = 0;
        for (int c = 0; c < a->n_codes; c++) {
            val[c] = a->dec((uint16_t)c);
            bad_rt += a->enc(val[c]) != c;
            if (c) bad_mono += !(val[c] > val[c - 1]);
            if (k == 0) { // the negative codes: sign and magnitude
                float neg = a->dec((uint16_t)(c | 0x8000));
                bad_rt += a->enc(neg) != (c | 0x8000) || neg != -val[c];
            }
        }
        CHECK(bad_rt == 0 && bad_mono == 0);
        CHECK(val[a->n_codes - 1] == a->max && val[1] == a->min_sub);
        CHECK(val[a->n_codes == 1 << 15 ? 1 << 9 : 1 << 10] == a->min_normal);
        // nearest, ties to even: the midpoints, their neighbours, random values
        int bad = 0, n = 0;
        for (int c = 0; c + 1 < a->n_codes; c++) {
            float mid = (float)(((double)val[c] + val[c + 1]) / 2); // exact
            float xs[3] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
            for (int i = 0; i < 3; i++, n++) bad += a->enc(xs[i]) != ref_encode(a, val, xs[i]);
        }
        for (uint64_t i = 0; i < 200000; i++, n++) {
            float x = (float)exp2(-70.0 + 90.0 * fill_u(7 + (uint64_t)k, i));
            bad += a->enc(x) != ref_encode(a, val, x);
        }
        printf("    %s: all %d codes round-trip; %d roundings against the nearest-code search, %d wrong; "
               "range %g .. %g (normal from %g)\n",
               a->name, a->n_codes, n, bad, (double)a->min_sub, (double)a->max, (double)a->min_normal);
        CHECK(bad == 0);
        // the ends
        CHECK(a->enc(1e6f) == a->n_codes - 1 && a->enc(INFINITY) == a->n_codes - 1 && a->enc(FLT_MAX) == a->n_codes - 1);
        CHECK(a->enc(a->min_sub / 2) == 0);                          // exactly half the smallest: even, 0
        CHECK(a->enc(nextafterf(a->min_sub / 2, 1)) == 1);           // just above: the smallest
        CHECK(a->enc(1e-30f) == 0 && a->enc(FLT_TRUE_MIN) == 0 && a->enc(0.0f) == 0);
        CHECK(a->enc(NAN) == 0);
        free(val);
    }
    CHECK(f32_to_ue6m10(-1.0f) == 0 && f32_to_ue6m10(-INFINITY) == 0);
    CHECK(e6m9_to_f32(f32_to_e6m9(-255.75f)) == -255.75f && e6m9_to_f32(f32_to_e6m9(-1e9f)) == -255.75f);
    CHECK(e6m9_to_f32(f32_to_e6m9(1.0f + 0x1p-10f)) == 1.0f);          // tie, even stays
    CHECK(e6m9_to_f32(f32_to_e6m9(1.0f + 0x3p-10f)) == 1.0f + 0x1p-8f); // tie, odd goes up
    CHECK(ue6m10_to_f32(f32_to_ue6m10(3.0f)) == 3.0f);
}

// adamw_update16 takes the step of adamw_update from the decoded moments and
// stores the rounded results.
static void test_adamw16(void) {
    enum { N = 1000 };
    float p[N], p16[N], m[N], v[N], g[N];
    uint16_t m16[N], v16[N];
    for (int i = 0; i < N; i++) {
        g[i] = (float)(fill_u(1, (uint64_t)i) - 0.5) * (i % 3 ? 1e-3f : 2.0f);
        p[i] = p16[i] = (float)(fill_u(2, (uint64_t)i) - 0.5);
        m16[i] = f32_to_e6m9((float)(fill_u(3, (uint64_t)i) - 0.5) * 1e-2f);
        v16[i] = f32_to_ue6m10((float)fill_u(4, (uint64_t)i) * 1e-4f);
        m[i] = e6m9_to_f32(m16[i]);
        v[i] = ue6m10_to_f32(v16[i]);
    }
    adamw_params h = {1e-3f, 0.9f, 0.96f, 1e-8f, 0.045f};
    adamw_update(p, m, v, g, N, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, 7);
    adamw_update16(p16, m16, v16, g, N, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, 7);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += fbits(p[i]) != fbits(p16[i]) || m16[i] != f32_to_e6m9(m[i]) || v16[i] != f32_to_ue6m10(v[i]);
    CHECK(bad == 0);
}

int main(void) {
    RUN(test_bulk_equals_scalar);
    RUN(test_adam_formats);
    RUN(test_adamw16);
    return test_summary();
}
