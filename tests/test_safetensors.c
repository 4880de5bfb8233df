// test_safetensors.c: the safetensors reader, writer and float conversions.
// Conversions are checked against a brute-force nearest-value reference;
// files against the writer (round trip), the official Python package
// (tests/data/st_python.safetensors, from tests/ref/gen_safetensors_ref.py)
// and a table of malformed headers, each of which must be refused with a
// message naming the file and the tensor.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/safetensors.h"
#include "test.h"

static uint32_t fbits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }

// ---------------------------------------------------------------- conversions

// f16 value of pattern h (sign ignored), from the definition, in double.
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) return ldexp(m, -24);
    if (e == 31) return m ? NAN : INFINITY;
    return ldexp(1024 + m, e - 25);
}

// Nearest f16 to x, ties to even, by search over every finite f16 value;
// above the largest finite value, the next step (65536) stands for Inf, as
// IEEE 754 rounding with an unbounded exponent does.
static uint16_t ref_f32_to_f16(float x) {
    static double pos[0x7c01];
    static int init = 0;
    if (!init) {
        for (int h = 0; h < 0x7c00; h++) pos[h] = f16_value((uint16_t)h);
        pos[0x7c00] = 65536.0;
        init = 1;
    }
    uint16_t sign = (fbits(x) >> 16) & 0x8000;
    double a = fabs((double)x);
    if (a >= 65536.0) return sign | 0x7c00;
    int lo = 0, hi = 0x7c00; // pos[lo] <= a < pos[hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (pos[mid] <= a) lo = mid;
        else hi = mid;
    }
    double d1 = a - pos[lo], d2 = pos[hi] - a; // exact: nearby values
    int h = d1 < d2 ? lo : d2 < d1 ? hi : (lo & 1 ? hi : lo);
    return sign | (uint16_t)h;
}

// Nearest bf16 to x, ties to even, from the two bf16 neighbours in double.
static uint16_t ref_f32_to_bf16(float x) {
    uint32_t u = fbits(x);
    uint16_t sign = (u >> 16) & 0x8000;
    if (isinf(x)) return sign | 0x7f80;
    uint32_t lo = (u & 0x7fffffff) >> 16, hi = lo + 1;
    double a = fabs((double)x), vlo = fabs((double)bitsf(lo << 16));
    double vhi = hi == 0x7f80 ? ldexp(1, 128) : (double)bitsf(hi << 16);
    double d1 = a - vlo, d2 = vhi - a;
    uint32_t h = d1 < d2 ? lo : d2 < d1 ? hi : (lo & 1 ? hi : lo);
    return sign | (uint16_t)h;
}

static void test_dtypes(void) {
    CHECK(st_dtype_size(ST_F32) == 4 && st_dtype_size(ST_F16) == 2 && st_dtype_size(ST_BF16) == 2);
    CHECK(!strcmp(st_dtype_name(ST_F32), "F32") && !strcmp(st_dtype_name(ST_F16), "F16") &&
          !strcmp(st_dtype_name(ST_BF16), "BF16"));
}

// Every f16 pattern decodes to its defined value and encodes back to itself.
static void test_f16_all_patterns(void) {
    int bad_dec = 0, bad_rt = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = f16_to_f32(h);
        if (f16_is_nan(h)) {
            bad_dec += !isnan(f);
            uint16_t back = f32_to_f16(f);
            bad_rt += !f16_is_nan(back) || (back & 0x8000) != (h & 0x8000);
            continue;
        }
        double want = (h & 0x8000) ? -f16_value(h) : f16_value(h);
        bad_dec += (double)f != want || !!signbit(f) != !!(h & 0x8000);
        bad_rt += f32_to_f16(f) != h;
    }
    CHECK(bad_dec == 0);
    CHECK(bad_rt == 0);
}

static void test_bf16_all_patterns(void) {
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = bf16_to_f32(h);
        bad += fbits(f) != (uint32_t)h << 16;
        uint16_t back = f32_to_bf16(f);
        if (isnan(f)) bad += !isnan(bf16_to_f32(back)) || (back & 0x8000) != (h & 0x8000);
        else bad += back != h;
    }
    CHECK(bad == 0);
}

// Non-NaN float32 inputs compared with the references: a sweep of all bit
// patterns at a prime stride, and for every pair of neighbouring f16 values
// the midpoint and the floats just either side of it (both signs).
static void test_f32_to_f16_reference(void) {
    int bad = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += 4099) {
        float x = bitsf((uint32_t)u);
        if (isnan(x)) continue;
        bad += f32_to_f16(x) != ref_f32_to_f16(x);
    }
    CHECK(bad == 0);
    bad = 0;
    for (int h = 0; h < 0x7c00; h++) {
        double hi = h == 0x7bff ? 65536.0 : f16_value((uint16_t)(h + 1));
        float mid = (float)((f16_value((uint16_t)h) + hi) / 2); // 12 bits: exact
        float xs[3] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 3; k++)
            for (int s = 0; s < 2; s++) {
                float x = s ? -xs[k] : xs[k];
                bad += f32_to_f16(x) != ref_f32_to_f16(x);
            }
    }
    CHECK(bad == 0);
}

static void test_f32_to_bf16_reference(void) {
    int bad = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += 4099) {
        float x = bitsf((uint32_t)u);
        if (isnan(x)) continue;
        bad += f32_to_bf16(x) != ref_f32_to_bf16(x);
    }
    // ties and their neighbours: low half exactly 0x8000, 0x7fff, 0x8001
    for (uint32_t top = 0; top < 0x7f80; top += 7)
        for (uint32_t low = 0x7fff; low <= 0x8001; low++) {
            float x = bitsf(top << 16 | low);
            bad += f32_to_bf16(x) != ref_f32_to_bf16(x);
            bad += f32_to_bf16(-x) != ref_f32_to_bf16(-x);
        }
    CHECK(bad == 0);
}

static void test_known_values(void) {
    CHECK(f32_to_f16(0.0f) == 0x0000);
    CHECK(f32_to_f16(-0.0f) == 0x8000);
    CHECK(f32_to_f16(1.0f) == 0x3c00);
    CHECK(f32_to_f16(-2.0f) == 0xc000);
    CHECK(f32_to_f16(65504.0f) == 0x7bff);
    CHECK(f32_to_f16(nextafterf(65520.0f, 0)) == 0x7bff);
    CHECK(f32_to_f16(65520.0f) == 0x7c00);  // tie with an odd mantissa: up, to Inf
    CHECK(f32_to_f16(1e6f) == 0x7c00);
    CHECK(f32_to_f16(-FLT_MAX) == 0xfc00);
    CHECK(f32_to_f16(INFINITY) == 0x7c00);
    CHECK(f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(f32_to_f16(0x1p-14f) == 0x0400);  // smallest normal
    CHECK(f32_to_f16(0x1p-24f) == 0x0001);  // smallest subnormal
    CHECK(f32_to_f16(1e-8f) == 0x0000);     // below half the smallest subnormal
    CHECK(f32_to_f16(0x1p-25f) == 0x0000);  // exactly half: ties to even (0)
    CHECK(f32_to_f16(nextafterf(0x1p-25f, 1)) == 0x0001);
    CHECK(f32_to_f16(3e-8f) == 0x0001);
    CHECK(f32_to_f16(0x3p-25f) == 0x0002);  // 1.5 units: ties to even (2)
    CHECK(f32_to_f16(0x5p-25f) == 0x0002);  // 2.5 units: ties to even (2)
    CHECK(f32_to_f16(0x1.ffcp-15f) == 0x0400); // 1023.5 units: rounds into the normals
    CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);      // tie, even stays
    CHECK(f32_to_f16(1.0f + 0x3p-11f) == 0x3c02);      // tie, odd goes up
    CHECK(f32_to_f16(FLT_MIN) == 0x0000);
    CHECK(f32_to_f16(-FLT_TRUE_MIN) == 0x8000);
    CHECK(f16_is_nan(f32_to_f16(NAN)));
    CHECK(f16_is_nan(f32_to_f16(bitsf(0x7f800001)))); // payload only in low bits
    CHECK(f32_to_f16(bitsf(0xff800001)) & 0x8000);
    CHECK(f16_to_f32(0x7c00) == INFINITY && f16_to_f32(0xfc00) == -INFINITY);
    CHECK(f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isnan(f16_to_f32(0x7e00)));

    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);  // tie, even stays
    CHECK(f32_to_bf16(1.0f + 0x3p-8f) == 0x3f82);  // tie, odd goes up
    CHECK(f32_to_bf16(FLT_MAX) == 0x7f80);         // rounds past the largest bf16
    CHECK(f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(f32_to_bf16(FLT_TRUE_MIN) == 0x0000);
    CHECK(f32_to_bf16(bitsf(0x00008000)) == 0x0000);  // subnormal tie, even
    CHECK(f32_to_bf16(bitsf(0x00018000)) == 0x0002);  // subnormal tie, odd up
    CHECK(isnan(bf16_to_f32(f32_to_bf16(bitsf(0x7f800001)))));
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    CHECK(bf16_to_f32(0x4049) == 3.140625f);
}

// ---------------------------------------------------------------- files

static char tmp_path[256];

// Writes F32/F16/BF16 tensors (a scalar and an empty one among them) and
// metadata needing JSON escapes, reads them back and compares every value
// with what the conversion of the input gives.
static void test_round_trip(void) {
    size_t mem0 = dalle_mem_current();
    float a[2 * 3 * 4];
    for (int i = 0; i < 24; i++) a[i] = (float)sin(i * 0.37) * 1e3f;
    const float b[5] = {1.0f, 1e-6f, 70000.0f, -0.0f, 3.14159265f};
    const float c[7] = {1.0f, 1e-30f, 3e38f, -2.7182818f, INFINITY, 1e-40f, 0.1f};
    const float s = -1.25f;
    const int64_t sa[3] = {2, 3, 4}, sb[1] = {5}, sc[2] = {7, 1}, se[2] = {0, 3};

    st_writer *w = st_writer_new();
    CHECK(w != NULL);
    CHECK(st_writer_add(w, "a.f32", ST_F32, a, 3, sa) == DALLE_OK);
    CHECK(st_writer_add(w, "b.f16", ST_F16, b, 1, sb) == DALLE_OK);
    CHECK(st_writer_add(w, "c.bf16", ST_BF16, c, 2, sc) == DALLE_OK);
    CHECK(st_writer_add(w, "scalar", ST_F32, &s, 0, NULL) == DALLE_OK);
    CHECK(st_writer_add(w, "empty", ST_BF16, NULL, 2, se) == DALLE_OK);
    CHECK(st_writer_add(w, "we\"ird\\name", ST_F16, b, 1, sb) == DALLE_OK);
    CHECK(st_writer_meta(w, "format", "pt") == DALLE_OK);
    CHECK(st_writer_meta(w, "quote\"", "line\nbreak\\ tab\t \xc3\xbc") == DALLE_OK);
    // refusals leave the writer as it was
    CHECK(st_writer_add(w, "a.f32", ST_F32, a, 3, sa) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "'a.f32'") != NULL);
    CHECK(st_writer_add(w, "", ST_F32, a, 3, sa) == DALLE_ERR);
    CHECK(st_writer_add(w, "__metadata__", ST_F32, a, 3, sa) == DALLE_ERR);
    const int64_t neg[2] = {2, -1}, huge[3] = {1 << 30, 1 << 30, 1 << 30};
    CHECK(st_writer_add(w, "neg", ST_F32, a, 2, neg) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "'neg'") != NULL);
    CHECK(st_writer_add(w, "huge", ST_F32, a, 3, huge) == DALLE_ERR);
    CHECK(st_writer_add(w, "bad\xff", ST_F32, a, 3, sa) == DALLE_ERR);
    CHECK(st_writer_meta(w, "format", "again") == DALLE_ERR);
    CHECK(st_writer_save(w, tmp_path) == DALLE_OK);
    CHECK(st_writer_save(w, "/nonexistent-dir/x.safetensors") == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "/nonexistent-dir/x.safetensors") != NULL);
    // a failed rename (onto a directory) leaves no temporary file behind
    char dir[300], tmp[320];
    snprintf(dir, sizeof dir, "%s.dir", tmp_path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(st_writer_save(w, dir) == DALLE_ERR);
    CHECK(access(tmp, F_OK) != 0);
    rmdir(dir);
    st_writer_free(w);

    st_file *f = st_open(tmp_path);
    CHECK(f != NULL);
    if (!f) {
        fprintf(stderr, "  %s\n", dalle_last_error());
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->buf[i];
    CHECK((8 + hlen) % 8 == 0);
    const char *start = "{\"__metadata__\":{\"format\":\"pt\",";
    CHECK(!memcmp(f->buf + 8, start, strlen(start)));
    CHECK(f->n_tensors == 6 && f->n_meta == 2);
    CHECK(!strcmp(f->tensors[0].name, "a.f32") && !strcmp(f->tensors[5].name, "we\"ird\\name"));
    CHECK(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"));
    CHECK(st_meta(f, "quote\"") && !strcmp(st_meta(f, "quote\""), "line\nbreak\\ tab\t \xc3\xbc"));
    CHECK(st_meta(f, "nope") == NULL);
    CHECK(st_find(f, "nope") == NULL);

    float got[24], want[24];
    CHECK(st_read_f32(f, "a.f32", got, 3, sa) == DALLE_OK);
    CHECK(memcmp(got, a, sizeof a) == 0);
    CHECK(st_read_f32(f, "b.f16", got, 1, sb) == DALLE_OK);
    for (int i = 0; i < 5; i++) want[i] = f16_to_f32(f32_to_f16(b[i]));
    CHECK(memcmp(got, want, 5 * sizeof(float)) == 0);
    CHECK(got[2] == INFINITY && got[1] != 0); // 70000 overflows, 1e-6 is a subnormal
    CHECK(st_read_f32(f, "we\"ird\\name", got, 1, sb) == DALLE_OK);
    CHECK(memcmp(got, want, 5 * sizeof(float)) == 0);
    CHECK(st_read_f32(f, "c.bf16", got, 2, sc) == DALLE_OK);
    for (int i = 0; i < 7; i++) want[i] = bf16_to_f32(f32_to_bf16(c[i]));
    CHECK(memcmp(got, want, 7 * sizeof(float)) == 0);
    CHECK(st_read_f32(f, "scalar", got, 0, NULL) == DALLE_OK && got[0] == -1.25f);
    CHECK(st_read_f32(f, "empty", got, 2, se) == DALLE_OK);
    CHECK(st_find(f, "empty")->numel == 0 && st_find(f, "empty")->dtype == ST_BF16);

    // shape and name errors name the file, the tensor and both shapes
    const int64_t wrong[3] = {2, 4, 3};
    char msg[512];
    CHECK(st_read_f32(f, "a.f32", got, 3, wrong) == DALLE_ERR);
    snprintf(msg, sizeof msg, "%s: tensor 'a.f32': shape (2, 3, 4), expected (2, 4, 3)", tmp_path);
    CHECK(!strcmp(dalle_last_error(), msg));
    CHECK(st_read_f32(f, "a.f32", got, 2, sa) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "expected (2, 3)") != NULL);
    CHECK(st_read_f32(f, "missing.w", got, 1, sb) == DALLE_ERR);
    snprintf(msg, sizeof msg, "%s: missing tensor 'missing.w'", tmp_path);
    CHECK(!strcmp(dalle_last_error(), msg));
    st_close(f);
    st_close(NULL);
    remove(tmp_path);

    // a writer with nothing in it gives a valid, empty file
    w = st_writer_new();
    CHECK(st_writer_save(w, tmp_path) == DALLE_OK);
    st_writer_free(w);
    f = st_open(tmp_path);
    CHECK(f && f->n_tensors == 0 && f->n_meta == 0 && f->len == 16);
    st_close(f);
    remove(tmp_path);
    CHECK(dalle_mem_current() == mem0);
}

// The file written by the official Python package loads, value for value.
static void test_python_file(void) {
    char path[512];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof path, "%.*sdata/st_python.safetensors",
             slash ? (int)(slash - __FILE__ + 1) : 0, __FILE__);
    st_file *f = st_open(path);
    CHECK(f != NULL);
    if (!f) {
        fprintf(stderr, "  %s\n", dalle_last_error());
        return;
    }
    CHECK(f->n_tensors == 5);
    CHECK(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"));
    CHECK(st_meta(f, "note") && !strcmp(st_meta(f, "note"), "dalle.c test \xc3\xbc"));

    float got[8];
    const int64_t s_w[2] = {2, 3}, s_h[1] = {6}, s_b[3] = {1, 2, 2}, s_e[2] = {0, 4};
    const float w[6] = {0.0f, 1.0f, -2.5f, 3.140625f, 1e-40f, -65504.0f};
    CHECK(st_read_f32(f, "enc.w", got, 2, s_w) == DALLE_OK);
    CHECK(memcmp(got, w, sizeof w) == 0);
    const float h[6] = {1.0f, -0.5f, 65504.0f, 0x1p-24f, -0.0f, 0.333251953125f};
    CHECK(st_read_f32(f, "enc.h", got, 1, s_h) == DALLE_OK);
    CHECK(memcmp(got, h, sizeof h) == 0);
    const float b[4] = {1.0f, -3.0f, 0x1p100f, 0x1p-100f};
    CHECK(st_read_f32(f, "dec.b", got, 3, s_b) == DALLE_OK);
    CHECK(memcmp(got, b, sizeof b) == 0);
    CHECK(st_read_f32(f, "scalar", got, 0, NULL) == DALLE_OK && got[0] == 42.0f);
    CHECK(st_read_f32(f, "empty", got, 2, s_e) == DALLE_OK);
    CHECK(st_find(f, "dec.b")->dtype == ST_BF16 && st_find(f, "enc.h")->dtype == ST_F16);
    st_close(f);
}

// Builds u64 length + header + data into out; data NULL: byte i is i.
static size_t mkfile(uint8_t *out, const char *hdr, const void *data, size_t data_len) {
    size_t n = strlen(hdr);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(out + 8, hdr, n);
    for (size_t i = 0; i < data_len; i++)
        out[8 + n + i] = data ? ((const uint8_t *)data)[i] : (uint8_t)i;
    return 8 + n + data_len;
}

// Data at odd addresses (an odd header length) reads correctly; UBSan would
// flag a misaligned access.
static void test_unaligned(void) {
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"y\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]},"
                      "\"z\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[14,16]}}";
    char padded[256];
    snprintf(padded, sizeof padded, "%s%s", hdr, strlen(hdr) % 2 ? "" : " ");
    uint8_t data[16], buf[512];
    const float x[2] = {1.5f, -2.0f};
    const uint16_t yz[4] = {0x3f80, 0x4000, 0x4040, 0x3c00}; // bf16 1, 2, 3; f16 1
    memcpy(data, x, 8);
    for (int i = 0; i < 4; i++) {
        data[8 + 2 * i] = (uint8_t)yz[i];
        data[9 + 2 * i] = (uint8_t)(yz[i] >> 8);
    }
    size_t n = mkfile(buf, padded, data, sizeof data);
    st_file *f = st_open_mem(buf, n, "odd.safetensors");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(((uintptr_t)st_find(f, "x")->data & 3) != 0);
    float got[3];
    const int64_t s2[1] = {2}, s3[1] = {3}, s1[1] = {1};
    CHECK(st_read_f32(f, "x", got, 1, s2) == DALLE_OK && got[0] == 1.5f && got[1] == -2.0f);
    CHECK(st_read_f32(f, "y", got, 1, s3) == DALLE_OK && got[0] == 1 && got[1] == 2 && got[2] == 3);
    CHECK(st_read_f32(f, "z", got, 1, s1) == DALLE_OK && got[0] == 1);
    st_close(f);
}

// One malformed file: the header text (or raw bytes), the data length, and
// what the message must contain besides the file name.
typedef struct {
    const char *what;
    const char *hdr;    // NULL: use raw/raw_len
    size_t data_len;
    const char *expect; // e.g. "tensor 'x'" or "header:"
    const char *expect2;
    const uint8_t *raw;
    size_t raw_len;
} bad_case;

#define T(dtype, shape, offs) "{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" offs "}"
#define F32_4 T("\"F32\"", "[1]", "[0,4]")

static const uint8_t raw_empty[1] = {0};
static const uint8_t raw_short[5] = {2, 0, 0, 0, 0};
static const uint8_t raw_past_eof[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
static const uint8_t raw_huge[10] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};
static const uint8_t raw_max[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
static const uint8_t raw_zero[8] = {0};

static const bad_case bad_cases[] = {
    {"empty file", NULL, 0, "header:", "too short", raw_empty, 0},
    {"truncated length", NULL, 0, "header:", "too short", raw_short, sizeof raw_short},
    {"length past EOF", NULL, 0, "header:", "past the end", raw_past_eof, sizeof raw_past_eof},
    {"length over 100 MB", NULL, 0, "header:", "limit", raw_huge, sizeof raw_huge},
    {"length 2^64-1", NULL, 0, "header:", "limit", raw_max, sizeof raw_max},
    {"zero length", NULL, 0, "header:", "'{'", raw_zero, sizeof raw_zero},
    {"not JSON", "{not json}", 0, "header:", "not valid JSON", NULL, 0},
    {"unterminated", "{\"x\":", 0, "header:", "not valid JSON", NULL, 0},
    {"array", "[1, 2]", 0, "header:", "'{'", NULL, 0},
    {"text after", "{} x", 0, "header:", "after the JSON", NULL, 0},
    {"two objects", "{}{}", 0, "header:", "after the JSON", NULL, 0},
    {"bad UTF-8", "{\"x\xff\":1}", 0, "header:", "UTF-8", NULL, 0},
    {"overlong UTF-8", "{\"x\xc0\xaf\":1}", 0, "header:", "UTF-8", NULL, 0},
    {"control byte", "{\"x\x01\":1}", 0, "header:", "control", NULL, 0},
    {"dtype F64", "{\"x\":" T("\"F64\"", "[1]", "[0,8]") "}", 8, "tensor 'x'", "'F64'", NULL, 0},
    {"dtype I8", "{\"x\":" T("\"I8\"", "[4]", "[0,4]") "}", 4, "tensor 'x'", "'I8'", NULL, 0},
    {"dtype number", "{\"x\":" T("32", "[1]", "[0,4]") "}", 4, "tensor 'x'", "dtype", NULL, 0},
    {"no dtype", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'x'", "dtype", NULL, 0},
    {"no shape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'x'", "shape", NULL, 0},
    {"no offsets", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'x'", "data_offsets", NULL, 0},
    {"unknown field", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"y\":1}}", 4,
     "tensor 'x'", "'y'", NULL, 0},
    {"field twice", "{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     4, "tensor 'x'", "twice", NULL, 0},
    {"entry not object", "{\"x\":[1]}", 0, "tensor 'x'", "object", NULL, 0},
    {"negative shape", "{\"x\":" T("\"F32\"", "[-1,2]", "[0,4]") "}", 4, "tensor 'x'", "shape[0]", NULL, 0},
    {"fractional shape", "{\"x\":" T("\"F32\"", "[1.5]", "[0,4]") "}", 4, "tensor 'x'", "shape[0]", NULL, 0},
    {"shape 2^60", "{\"x\":" T("\"F32\"", "[0,1152921504606846976]", "[0,0]") "}", 0, "tensor 'x'",
     "shape[1]", NULL, 0},
    {"shape string", "{\"x\":" T("\"F32\"", "[\"1\"]", "[0,4]") "}", 4, "tensor 'x'", "shape[0]", NULL, 0},
    {"shape not array", "{\"x\":" T("\"F32\"", "4", "[0,16]") "}", 16, "tensor 'x'", "shape", NULL, 0},
    {"9 dims", "{\"x\":" T("\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "tensor 'x'", "dimensions",
     NULL, 0},
    {"product overflow", "{\"x\":" T("\"F32\"", "[4294967296,4294967296,4294967296,0]", "[0,0]") "}", 0,
     "tensor 'x'", "overflow", NULL, 0},
    {"offsets past end", "{\"x\":" T("\"F32\"", "[4]", "[0,16]") "}", 8, "tensor 'x'", "data_offsets",
     NULL, 0},
    {"offsets reversed", "{\"x\":" T("\"F32\"", "[0]", "[4,0]") "}", 4, "tensor 'x'", "data_offsets",
     NULL, 0},
    {"offsets negative", "{\"x\":" T("\"F32\"", "[1]", "[-4,0]") "}", 4, "tensor 'x'", "data_offsets",
     NULL, 0},
    {"offsets one", "{\"x\":" T("\"F32\"", "[1]", "[4]") "}", 4, "tensor 'x'", "data_offsets", NULL, 0},
    {"offsets three", "{\"x\":" T("\"F32\"", "[1]", "[0,4,8]") "}", 8, "tensor 'x'", "data_offsets",
     NULL, 0},
    {"size mismatch", "{\"x\":" T("\"F32\"", "[3]", "[0,8]") "}", 8, "tensor 'x'", "needs", NULL, 0},
    {"odd bytes", "{\"x\":" T("\"F16\"", "[1]", "[0,3]") "}", 3, "tensor 'x'", "needs", NULL, 0},
    {"gap", "{\"x\":" F32_4 ",\"y\":" T("\"F32\"", "[1]", "[8,12]") "}", 12, "tensor 'y'", "gap", NULL, 0},
    {"gap at start", "{\"x\":" T("\"F32\"", "[1]", "[4,8]") "}", 8, "tensor 'x'", "gap", NULL, 0},
    {"overlap", "{\"x\":" T("\"F32\"", "[2]", "[0,8]") ",\"y\":" T("\"F32\"", "[2]", "[4,12]") "}", 12,
     "tensor 'y'", "overlaps tensor 'x'", NULL, 0},
    {"same span", "{\"x\":" F32_4 ",\"y\":" F32_4 "}", 4, "tensor 'y'", "overlaps", NULL, 0},
    {"data left over", "{\"x\":" F32_4 "}", 8, "header:", "cover 4 of the 8", NULL, 0},
    {"data but no tensors", "{}", 4, "header:", "cover 0 of the 4", NULL, 0},
    {"duplicate name", "{\"x\":" F32_4 ",\"x\":" T("\"F32\"", "[1]", "[4,8]") "}", 8, "tensor 'x'",
     "twice", NULL, 0},
    {"empty name", "{\"\":" F32_4 "}", 4, "header:", "empty name", NULL, 0},
    {"metadata number", "{\"__metadata__\":{\"k\":1}," "\"x\":" F32_4 "}", 4, "header:", "'k'", NULL, 0},
    {"metadata null", "{\"__metadata__\":{\"k\":null}}", 0, "header:", "'k'", NULL, 0},
    {"metadata array", "{\"__metadata__\":[\"a\"]}", 0, "header:", "__metadata__", NULL, 0},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "header:", "'k'", NULL, 0},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "header:", "twice", NULL, 0},
};

static void test_malformed(void) {
    size_t mem0 = dalle_mem_current();
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        size_t n = c->raw_len;
        const uint8_t *p = c->raw;
        if (c->hdr) {
            n = mkfile(buf, c->hdr, NULL, c->data_len);
            p = buf;
        }
        dalle_seterr("(none)");
        st_file *f = st_open_mem(p, n, "bad.safetensors");
        const char *e = dalle_last_error();
        int ok = !f && !strncmp(e, "bad.safetensors: ", 17) && strstr(e, c->expect) &&
                 strstr(e, c->expect2);
        if (!ok) fprintf(stderr, "  case '%s': %s\n", c->what, f ? "accepted" : e);
        CHECK(ok);
        st_close(f);
    }
    CHECK(dalle_mem_current() == mem0);
}

// st_open names the path for a missing file and for a bad one on disk.
static void test_open_errors(void) {
    CHECK(st_open("/nonexistent/m.safetensors") == NULL);
    CHECK(strstr(dalle_last_error(), "/nonexistent/m.safetensors") != NULL);
    uint8_t buf[256];
    size_t n = mkfile(buf, "{\"enc.w\":" T("\"F64\"", "[1]", "[0,8]") "}", NULL, 8);
    FILE *fp = fopen(tmp_path, "wb");
    CHECK(fp && fwrite(buf, 1, n, fp) == n);
    if (fp) fclose(fp);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor 'enc.w': ", tmp_path);
    CHECK(st_open(tmp_path) == NULL);
    CHECK(!strncmp(dalle_last_error(), want, strlen(want)));
    remove(tmp_path);
}

int main(void) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/dalle_test_st_%ld.safetensors", (long)getpid());
    RUN(test_dtypes);
    RUN(test_f16_all_patterns);
    RUN(test_bf16_all_patterns);
    RUN(test_f32_to_f16_reference);
    RUN(test_f32_to_bf16_reference);
    RUN(test_known_values);
    RUN(test_round_trip);
    RUN(test_python_file);
    RUN(test_unaligned);
    RUN(test_malformed);
    RUN(test_open_errors);
    return test_summary();
}
