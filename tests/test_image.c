// test_image.c: src/core/image.c against PIL and torchvision. The images and
// reference pixels in tests/data/img/ come from tests/ref/gen_image_ref.py:
// PNG decoding must match exactly, JPEG within 2 levels (in practice it is the
// same libjpeg-turbo code as PIL's), the notebook's resize + centre crop and
// the plain resizes within 1 level. Bad files must fail with a message that
// names them, without leaks. Run from the repository root.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/image.h"
#include "test.h"

#define DATA "tests/data/img/"

static char tmpdir[64];

// Reads a binary PPM (P6, maxval 255) as written by the reference script.
static int read_ppm(const char *path, image_t *img) {
    size_t len;
    char *buf = dalle_read_file(path, &len);
    int w, h, off = 0, rc = DALLE_ERR;
    *img = (image_t){0};
    if (!buf) return DALLE_ERR;
    if (sscanf(buf, "P6 %d %d 255%n", &w, &h, &off) == 2 && off > 0 &&
        len - (size_t)off - 1 == (size_t)w * h * 3 && image_alloc(img, w, h) == DALLE_OK) {
        memcpy(img->data, buf + off + 1, (size_t)w * h * 3);
        rc = DALLE_OK;
    }
    dalle_free(buf);
    return rc;
}

// Largest per-sample difference, or 999 when the sizes differ.
static int max_diff(const image_t *a, const image_t *b) {
    if (a->w != b->w || a->h != b->h || !a->data || !b->data) return 999;
    int m = 0;
    for (size_t i = 0; i < (size_t)a->w * a->h * 3; i++) m = DALLE_MAX(m, abs(a->data[i] - b->data[i]));
    return m;
}

// Compares `img` with the reference NAME.ppm; returns the max difference.
static int vs_ref(const char *what, const image_t *img, const char *ref_name, int tol) {
    char path[256];
    image_t ref;
    snprintf(path, sizeof path, DATA "%s.ppm", ref_name);
    CHECK(read_ppm(path, &ref) == DALLE_OK);
    int d = max_diff(img, &ref);
    printf("    %-34s %dx%d  max|d| = %d%s\n", what, img->w, img->h, d, d > tol ? "  <-- MISMATCH" : "");
    CHECK(d <= tol);
    image_free(&ref);
    return d;
}

static void load_vs_ref(const char *name, const char *ext, int tol) {
    char path[256];
    image_t img;
    snprintf(path, sizeof path, DATA "%s.%s", name, ext);
    int rc = image_load(path, &img);
    if (rc != DALLE_OK) printf("    %s: %s\n", name, dalle_last_error());
    CHECK(rc == DALLE_OK);
    vs_ref(name, &img, name, tol);
    image_free(&img);
}

static void test_png_variants(void) {
    const char *names[] = {"png_rgb",      "png_gray",     "png_gray2",     "png_graya",
                           "png_gray16_trns", "png_pal_trns", "png_pal4",   "png_rgb16",
                           "png_rgba",     "png_rgba16",   "png_rgba_interlaced",
                           "png_rgb_interlaced", "png_tall"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) load_vs_ref(names[i], "png", 0);
}

static void test_jpeg_variants(void) {
    const char *names[] = {"jpg_baseline", "jpg_progressive", "jpg_gray", "jpg_cmyk"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) load_vs_ref(names[i], "jpg", 2);
}

static void test_exif_orientations(void) {
    for (int o = 1; o <= 8; o++) {
        char name[32];
        snprintf(name, sizeof name, "jpg_exif%d", o);
        load_vs_ref(name, "jpg", 2);
    }
}

// A copy of the JPEG `base` with an APP1 segment holding `payload` inserted
// right after SOI, so that it is the first Exif block the loader sees.
static uint8_t *with_app1(const uint8_t *base, size_t blen, const void *payload, size_t plen,
                          size_t *len) {
    *len = blen + 4 + plen;
    uint8_t *b = dalle_malloc(*len);
    memcpy(b, base, 2);
    b[2] = 0xff;
    b[3] = 0xe1;
    b[4] = (uint8_t)((plen + 2) >> 8);
    b[5] = (uint8_t)(plen + 2);
    memcpy(b + 6, payload, plen);
    memcpy(b + 6 + plen, base + 2, blen - 2);
    return b;
}

// Loads `base` with the EXIF payload inserted and returns its orientation as
// seen from the result: 1 for the unrotated image, 6 for the clockwise turn,
// 0 for a failed load or anything else.
static int orientation_seen(const uint8_t *base, size_t blen, const void *payload, size_t plen,
                            const image_t *up, const image_t *cw) {
    size_t len;
    uint8_t *buf = with_app1(base, blen, payload, plen, &len);
    image_t img;
    int seen = 0;
    if (image_load_mem(buf, len, "exif.jpg", &img) == DALLE_OK)
        seen = max_diff(&img, up) == 0 ? 1 : max_diff(&img, cw) == 0 ? 6 : 0;
    image_free(&img);
    dalle_free(buf);
    return seen;
}

static void test_exif_malformed(void) {
    size_t blen;
    uint8_t *base = (uint8_t *)dalle_read_file(DATA "jpg_exif1.jpg", &blen);
    image_t up, cw;
    CHECK(base && image_load(DATA "jpg_exif1.jpg", &up) == DALLE_OK &&
          image_load(DATA "jpg_exif6.jpg", &cw) == DALLE_OK);
    if (!base || !up.data || !cw.data) return;
    // Big-endian TIFF, IFD0 at 8 with one entry: Orientation (SHORT, 1) = 6.
    uint8_t good[] = {'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
                      0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
    CHECK(orientation_seen(base, blen, good, sizeof good, &up, &cw) == 6);
    // Every truncation of it loads, rotated only when the whole entry is there.
    for (size_t n = 0; n < sizeof good; n++)
        CHECK(orientation_seen(base, blen, good, n, &up, &cw) == (n >= 28 ? 6 : 1));
    // Each single corruption: the EXIF is ignored, the image still loads.
    struct { size_t at; uint8_t v; } bad[] = {
        {6, 'X'},   // byte order
        {9, 43},    // TIFF magic
        {10, 0xff}, // IFD0 offset far past the end
        {13, 25},   // IFD0 offset with no room for its entry count
        {15, 0},    // no entries
        {19, 7},    // type UNDEFINED
        {23, 2},    // value count 2
        {25, 9},    // orientation 9
        {25, 0},    // orientation 0
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t p[sizeof good];
        memcpy(p, good, sizeof p);
        p[bad[i].at] = bad[i].v;
        CHECK(orientation_seen(base, blen, p, sizeof p, &up, &cw) == 1);
    }
    // 0xffff entries: the scan stops at the end of the segment. The one real
    // entry comes first, so it is still honoured.
    uint8_t many[sizeof good];
    memcpy(many, good, sizeof many);
    many[14] = many[15] = 0xff;
    CHECK(orientation_seen(base, blen, many, sizeof many, &up, &cw) == 6);
    // A LONG orientation in a little-endian TIFF.
    uint8_t lng[] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
                     0x12, 0x01, 4, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
    CHECK(orientation_seen(base, blen, lng, sizeof lng, &up, &cw) == 6);
    image_free(&up);
    image_free(&cw);
    dalle_free(base);
}

// ---------------------------------------------------------------- bad inputs

static void put_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len);
    if (f) fclose(f);
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & -(c & 1));
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// Writes `data` to tmpdir/NAME, loads it, and checks the failure message.
static void expect_fail(const char *name, const void *data, size_t len, const char *why) {
    char path[256];
    image_t img = {.w = 7};
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (data) put_file(path, data, len);
    size_t before = dalle_mem_current();
    int rc = image_load(path, &img);
    const char *msg = dalle_last_error();
    printf("    %-18s -> %s\n", name, msg);
    CHECK(rc == DALLE_ERR);
    CHECK(strstr(msg, path) != NULL);
    CHECK(strstr(msg, why) != NULL);
    CHECK(img.data == NULL && img.w == 0);
    CHECK(dalle_mem_current() == before);
}

static void test_bad_inputs(void) {
    size_t plen, jlen;
    uint8_t *png = (uint8_t *)dalle_read_file(DATA "png_rgb.png", &plen);
    uint8_t *jpg = (uint8_t *)dalle_read_file(DATA "jpg_baseline.jpg", &jlen);
    size_t prlen;
    uint8_t *prog = (uint8_t *)dalle_read_file(DATA "jpg_progressive.jpg", &prlen);
    CHECK(png && jpg && prog);
    if (!png || !jpg || !prog) return;
    expect_fail("missing.png", NULL, 0, "No such file");
    expect_fail("empty.png", "", 0, "empty file");
    expect_fail("text.png", "hello, world\n", 13, "not a PNG or JPEG file");
    expect_fail("sig.png", png, 5, "truncated PNG data");
    expect_fail("soi.jpg", jpg, 2, "truncated JPEG data");
    expect_fail("trunc.png", png, plen / 2, "truncated PNG data");
    expect_fail("trunc.jpg", jpg, jlen / 2, "truncated JPEG data");
    expect_fail("header.jpg", jpg, 30, "truncated JPEG data");
    expect_fail("trunc_prog.jpg", prog, prlen * 2 / 3, "truncated JPEG data");
    // A progressive 16000 x 16000 frame: its coefficients would need ~2 GiB.
    for (size_t i = 2; i + 9 < prlen; i++) {
        if (prog[i] == 0xff && prog[i + 1] == 0xc2) {
            prog[i + 5] = prog[i + 7] = 16000 >> 8;
            prog[i + 6] = prog[i + 8] = 16000 & 0xff;
            break;
        }
    }
    expect_fail("huge_prog.jpg", prog, prlen, "JPEG needs more than 512 MiB");
    dalle_free(prog);

    uint8_t *p = dalle_malloc(plen);
    memcpy(p, png, plen);
    p[29] ^= 0x55; // IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
    expect_fail("crc.png", p, plen, "CRC error");
    memcpy(p, png, plen);
    p[plen / 2] ^= 0xff; // inside the compressed pixels: IDAT's CRC no longer matches
    expect_fail("idat.png", p, plen, "cannot decode PNG");
    // 20000 x 3, with a valid CRC so that it is the size that is refused
    memcpy(p, png, plen);
    put_be32(p + 16, 20000);
    put_be32(p + 20, 3);
    put_be32(p + 29, crc32_png(p + 12, 17));
    expect_fail("wide.png", p, plen, "image 20000x3 is larger than 16384 per side");
    dalle_free(p);

    // JPEG frame header (SOF0: FF C0, length, precision, height, width) made 3 x 20000
    uint8_t *j = dalle_malloc(jlen);
    memcpy(j, jpg, jlen);
    for (size_t i = 2; i + 9 < jlen; i++) {
        if (j[i] == 0xff && j[i + 1] == 0xc0) {
            j[i + 5] = 0;
            j[i + 6] = 3;
            j[i + 7] = 20000 >> 8;
            j[i + 8] = 20000 & 0xff;
            break;
        }
    }
    expect_fail("tall.jpg", j, jlen, "image 20000x3 is larger than 16384 per side");
    memcpy(j, jpg, jlen);
    j[3] = 0xc8; // APP0 becomes the reserved JPG marker
    expect_fail("marker.jpg", j, jlen, "cannot decode JPEG");
    dalle_free(j);
    dalle_free(png);
    dalle_free(jpg);

    image_t img;
    CHECK(image_load_mem("\x89", 1, "mem.png", &img) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "mem.png: truncated PNG data") != NULL);
    CHECK(image_load_mem("", 0, "mem.png", &img) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "mem.png: empty file") != NULL);
}

// ---------------------------------------------------------------- saving

static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_save_roundtrip(void) {
    image_t img, back;
    char path[256], bad[256];
    CHECK(image_load(DATA "png_rgba_interlaced.png", &img) == DALLE_OK);
    snprintf(path, sizeof path, "%s/saved.png", tmpdir);
    CHECK(image_save_png(path, &img) == DALLE_OK);
    CHECK(image_load(path, &back) == DALLE_OK);
    CHECK(max_diff(&img, &back) == 0);
    image_free(&back);
    remove(path);

    int before = count_dir_entries(tmpdir);
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.png", tmpdir);
    CHECK(image_save_png(bad, &img) == DALLE_ERR);
    printf("    save into a missing directory -> %s\n", dalle_last_error());
    CHECK(strstr(dalle_last_error(), "no/such/dir/x.png") != NULL);
    CHECK(access(bad, F_OK) != 0);
    CHECK(count_dir_entries(tmpdir) == before);
    image_free(&img);
}

// ---------------------------------------------------------------- resizing

static void test_notebook_preprocess(void) {
    struct { const char *src; int size; } cases[] = {
        {"png_rgb", 16}, {"png_rgb", 24}, {"png_rgb", 29}, {"png_rgb", 30},
        {"png_rgb", 48}, {"png_tall", 11}, {"png_tall", 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256], ref[64];
        image_t img, out;
        snprintf(path, sizeof path, DATA "%s.png", cases[i].src);
        snprintf(ref, sizeof ref, "nb_%s_%d", cases[i].src + 4, cases[i].size);
        CHECK(image_load(path, &img) == DALLE_OK);
        CHECK(image_resize_crop(&img, cases[i].size, &out) == DALLE_OK);
        vs_ref(ref, &out, ref, 1);
        image_free(&img);
        image_free(&out);
    }
}

static void test_resize(void) {
    image_t img, out;
    CHECK(image_load(DATA "png_rgb.png", &img) == DALLE_OK);
    struct { int w, h, filter; const char *ref; } cases[] = {
        {17, 23, IMAGE_LANCZOS, "lanczos_17x23"}, {64, 11, IMAGE_LANCZOS, "lanczos_64x11"},
        {17, 23, IMAGE_AREA, "area_17x23"},       {13, 10, IMAGE_AREA, "area_13x10"},
        {80, 45, IMAGE_AREA, "area_80x45"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(image_resize(&img, cases[i].w, cases[i].h, cases[i].filter, &out) == DALLE_OK);
        vs_ref(cases[i].ref, &out, cases[i].ref, 1);
        image_free(&out);
    }
    // Exact halving by area: every output is the rounded mean of a 2x2 block.
    CHECK(image_resize(&img, 20, 15, IMAGE_AREA, &out) == DALLE_OK);
    int worst = 0;
    for (int y = 0; y < 15; y++)
        for (int x = 0; x < 20; x++)
            for (int c = 0; c < 3; c++) {
                int s = 0;
                for (int k = 0; k < 4; k++) s += img.data[((2 * y + k / 2) * 40 + 2 * x + k % 2) * 3 + c];
                worst = DALLE_MAX(worst, abs(out.data[(y * 20 + x) * 3 + c] - (s + 2) / 4));
            }
    CHECK(worst == 0);
    image_free(&out);
    // Same size: a copy, for both filters; bad arguments: errors.
    for (int f = IMAGE_LANCZOS; f <= IMAGE_AREA; f++) {
        CHECK(image_resize(&img, 40, 30, f, &out) == DALLE_OK);
        CHECK(max_diff(&img, &out) == 0 && out.data != img.data);
        image_free(&out);
    }
    CHECK(image_resize(&img, 0, 5, IMAGE_AREA, &out) == DALLE_ERR && out.data == NULL);
    CHECK(image_resize(&img, 5, 5, 7, &out) == DALLE_ERR);
    CHECK(image_resize_crop(&img, 0, &out) == DALLE_ERR);
    image_free(&img);
}

static void test_square_is_copied(void) {
    image_t img, sq, out;
    CHECK(image_load(DATA "png_rgb.png", &img) == DALLE_OK);
    CHECK(image_crop(&img, 3, 1, 24, 24, &sq) == DALLE_OK);
    CHECK(image_resize_crop(&sq, 24, &out) == DALLE_OK);
    CHECK(max_diff(&sq, &out) == 0);
    image_free(&out);
    image_free(&sq);
    image_free(&img);
}

static void test_crop(void) {
    image_t img, out;
    CHECK(image_load(DATA "png_rgb.png", &img) == DALLE_OK);
    CHECK(image_crop(&img, 39, 29, 1, 1, &out) == DALLE_OK);
    CHECK(out.w == 1 && out.h == 1 && memcmp(out.data, img.data + (29 * 40 + 39) * 3, 3) == 0);
    image_free(&out);
    CHECK(image_crop(&img, 5, 7, 10, 4, &out) == DALLE_OK);
    for (int y = 0; y < 4; y++)
        CHECK(memcmp(out.data + y * 30, img.data + ((7 + y) * 40 + 5) * 3, 30) == 0);
    image_free(&out);
    CHECK(image_crop(&img, 31, 0, 10, 4, &out) == DALLE_ERR && out.data == NULL);
    CHECK(strstr(dalle_last_error(), "40x30") != NULL);
    CHECK(image_crop(&img, -1, 0, 10, 4, &out) == DALLE_ERR);
    CHECK(image_crop(&img, 0, 0, 0, 4, &out) == DALLE_ERR);
    CHECK(image_crop(&img, 0, 27, 10, 4, &out) == DALLE_ERR);
    image_free(&img);
}

// ---------------------------------------------------------------- tensors

static void test_chw(void) {
    image_t img, back;
    CHECK(image_load(DATA "png_rgb.png", &img) == DALLE_OK);
    size_t n = (size_t)img.w * img.h;
    float *t = dalle_malloc(3 * n * sizeof *t);
    image_to_chw(&img, t);
    int exact = 1;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) exact &= t[c * n + i] == (float)img.data[i * 3 + c] / 255.0f;
    CHECK(exact);
    CHECK(t[n] == img.data[1] / 255.0f); // planar: G of pixel 0
    CHECK(image_alloc(&back, img.w, img.h) == DALLE_OK);
    image_from_chw(&back, t);
    CHECK(max_diff(&img, &back) == 0); // x/255*255 truncates back to x for every byte
    // ToPILImage: clamp, then truncate x*255 (0.5 -> 127, not 128).
    float v[] = {0.5f, 1.0f, -0.1f, 1.7f, NAN, 0.999f, 254.9f / 255.0f, 1e-9f};
    uint8_t want[] = {127, 255, 0, 255, 0, 254, 254, 0};
    image_t px;
    CHECK(image_alloc(&px, 8, 1) == DALLE_OK);
    float planes[24] = {0};
    memcpy(planes, v, sizeof v);
    memcpy(planes + 16, v, sizeof v);
    image_from_chw(&px, planes);
    for (int i = 0; i < 8; i++) {
        CHECK(px.data[i * 3] == want[i]);
        CHECK(px.data[i * 3 + 1] == 0);
        CHECK(px.data[i * 3 + 2] == want[i]);
    }
    image_free(&px);
    image_free(&back);
    image_free(&img);
    dalle_free(t);
}

static void test_no_leaks(void) { CHECK(dalle_mem_current() == 0); }

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dalle_test_image.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_png_variants);
    RUN(test_jpeg_variants);
    RUN(test_exif_orientations);
    RUN(test_exif_malformed);
    RUN(test_bad_inputs);
    RUN(test_save_roundtrip);
    RUN(test_notebook_preprocess);
    RUN(test_resize);
    RUN(test_square_is_copied);
    RUN(test_crop);
    RUN(test_chw);
    RUN(test_no_leaks);
    // tmpdir holds only what expect_fail wrote
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[512];
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        remove(path);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
    return test_summary();
}
