// test_shard.c: the training shard (src/data/shard.h): write -> open -> read
// round trips at both id widths; every kind of damaged file refused, from a
// file and from memory, with a message naming the file and what is wrong;
// the writer refusing bad ids without leaving a file; shard_check_config.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "data/shard.h"
#include "test.h"

static char path[256]; // a scratch file in /tmp

// Fills text (n, L) and image (n, N) with ids in range, record- and
// position-dependent, reaching the largest allowed id.
static void fill(const shard_info *in, int64_t n, int32_t *text, int32_t *image) {
    int L = in->text_len, N = in->n_image;
    for (int64_t r = 0; r < n; r++) {
        for (int k = 0; k < L; k++) text[r * L + k] = (int32_t)((r * 7 + k * 3) % (in->text_vocab + L));
        for (int k = 0; k < N; k++) image[r * N + k] = (int32_t)((r * 5 + k * 11) % in->image_vocab);
    }
    text[(n - 1) * L] = in->text_vocab + L - 1;
    image[n * N - 1] = in->image_vocab - 1;
}

static uint8_t *slurp(const char *p, size_t *len) { return (uint8_t *)dalle_read_file(p, len); }

static int put(const char *p, const uint8_t *b, size_t len) {
    FILE *f = fopen(p, "wb");
    if (!f) return 0;
    int ok = fwrite(b, 1, len, f) == len;
    return (fclose(f) == 0) && ok;
}

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

// Writes n records with these sizes, reopens them, compares every id.
static void round_trip(int L, int G, int Vt, int Vi, int64_t n, int want_bytes) {
    shard_info in = {.text_len = L, .n_image = G * G, .grid = G, .text_vocab = Vt, .image_vocab = Vi};
    int N = G * G;
    int32_t *text = malloc(sizeof(int32_t) * (size_t)(n * L)), *image = malloc(sizeof(int32_t) * (size_t)(n * N));
    int32_t *t1 = malloc(sizeof(int32_t) * (size_t)L), *i1 = malloc(sizeof(int32_t) * (size_t)N);
    fill(&in, n, text, image);
    size_t mem0 = dalle_mem_current();
    CHECK(shard_write(path, &in, text, image, n) == DALLE_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 64 + n * (L + N) * want_bytes);
    shard *s = shard_open(path);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "  %s\n", dalle_last_error());
    } else {
        const shard_info *got = shard_get_info(s);
        CHECK(got->text_len == L && got->n_image == N && got->grid == G && got->text_vocab == Vt &&
              got->image_vocab == Vi && got->n_records == n);
        CHECK(shard_id_bytes(s) == want_bytes);
        CHECK(!strcmp(shard_path(s), path));
        int same = 1;
        for (int64_t r = 0; r < n; r++) {
            shard_read(s, r, t1, i1);
            same &= !memcmp(t1, text + r * L, sizeof(int32_t) * (size_t)L);
            same &= !memcmp(i1, image + r * N, sizeof(int32_t) * (size_t)N);
        }
        CHECK(same);
        CHECK(shard_check_config(s, L, G, Vt, Vi) == DALLE_OK);
        shard_close(s);
    }
    // the same bytes through shard_open_mem
    size_t len;
    uint8_t *b = slurp(path, &len);
    s = b ? shard_open_mem(b, len, "mem") : NULL;
    CHECK(s != NULL);
    if (s) {
        shard_read(s, n - 1, t1, i1);
        CHECK(!memcmp(t1, text + (n - 1) * L, sizeof(int32_t) * (size_t)L));
        CHECK(!memcmp(i1, image + (n - 1) * N, sizeof(int32_t) * (size_t)N));
        shard_close(s);
    }
    dalle_free(b);
    CHECK(dalle_mem_current() == mem0);
    remove(path);
    free(text), free(image), free(t1), free(i1);
}

static void test_round_trip(void) {
    round_trip(3, 2, 5, 6, 3, 2);          // tiny
    round_trip(256, 4, 16384, 8192, 7, 2); // DALL-E's text and codebook, a small grid
    round_trip(4, 3, 70000, 10, 5, 4);     // a text vocabulary past 16 bits
    round_trip(5, 2, 100, 70000, 4, 4);    // a codebook past 16 bits
    round_trip(35, 1, 65500, 65535, 2, 2); // Vt + L = 65535 and Vi = 65535: still 2 bytes
    round_trip(36, 1, 65500, 3, 2, 4);     // Vt + L = 65536: 4 bytes
    round_trip(1, 1, 1, 65536, 2, 4);      // Vi = 65536: 4 bytes
    round_trip(16, 8, 1000, 512, 300, 2);  // more records
}

// Recomputes the records' checksum in the header (bytes 48..55), so that a
// test can reach the checks that come after it.
static void resign(uint8_t *b, size_t len) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 64; i < len; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    wr64(b + 48, h);
}

// The base shard of the corruption tests: L 3, G 2 (N 4), Vt 5, Vi 6, three
// records of 14 bytes: 106 bytes.
static uint8_t *base_shard(size_t *len) {
    shard_info in = {.text_len = 3, .n_image = 4, .grid = 2, .text_vocab = 5, .image_vocab = 6};
    int32_t text[9], image[12];
    fill(&in, 3, text, image);
    if (shard_write(path, &in, text, image, 3) != DALLE_OK) return NULL;
    uint8_t *b = slurp(path, len);
    remove(path);
    return b;
}

// b[0..len) must be refused, from a file and from memory, with a message
// that starts with the file's name and contains `want`.
static void expect_bad(const char *what, const uint8_t *b, size_t len, const char *want) {
    size_t mem0 = dalle_mem_current();
    int ok = put(path, b, len);
    shard *s = ok ? shard_open(path) : NULL;
    const char *e = dalle_last_error();
    int good = ok && !s && !strncmp(e, path, strlen(path)) && strstr(e, want);
    printf("    %-22s %s\n", what, e);
    if (!good)
        fprintf(stderr, "  FAIL %s: %s: %s '%s', wanted '%s'\n", test_cur_name_, what, s ? "opened; last error" : "got",
                e, want);
    CHECK(good);
    shard_close(s);
    remove(path);
    s = shard_open_mem(b, len, "corrupt.dshard");
    e = dalle_last_error();
    CHECK(!s && !strncmp(e, "corrupt.dshard: ", 16) && strstr(e, want));
    shard_close(s);
    CHECK(dalle_mem_current() == mem0);
}

static void test_corruption(void) {
    size_t len;
    uint8_t *base = base_shard(&len);
    CHECK(base && len == 106);
    if (!base || len != 106) return;
    uint8_t b[128];
#define MUTATE(stmt)                                                                                   \
    do {                                                                                               \
        memcpy(b, base, len);                                                                          \
        stmt;                                                                                          \
    } while (0)
    MUTATE(b[0] = 'X');
    expect_bad("bad magic", b, len, "header: magic is not \"DALLESHD\"");
    MUTATE(wr32(b + 8, 1));
    expect_bad("version 1", b, len, "header: version 1, this build reads only version 2");
    MUTATE(b[70] ^= 1);
    expect_bad("a flipped bit", b, len, "checksum mismatch");
    memcpy(b, base, len);
    expect_bad("1 byte short", b, len - 1, "truncated: the file has 105 bytes, 1 fewer than the 106");
    MUTATE(b[106] = 0);
    expect_bad("1 extra byte", b, len + 1, "trailing bytes: the file has 107 bytes, 1 more than the 106");
    // record 1 starts at 64 + 14; its text id 2 at +4
    MUTATE((wr32(b + 78 + 4, 8) /* also clears the next id: still in range */, resign(b, len)));
    expect_bad("text id = Vt + L", b, len,
               "record 1: text id at position 2 is 8, not in [0, 8) (text_vocab + text_len)");
    // record 2's image code 3: 64 + 28 + 6 + 6
    MUTATE((b[104] = 6, b[105] = 0, resign(b, len)));
    expect_bad("image code = Vi", b, len, "record 2: image code at position 3 is 6, not in [0, 6) (image_vocab)");
    MUTATE((b[92] = 0xff, b[93] = 0xff, resign(b, len)));
    expect_bad("text id 65535", b, len, "record 2: text id at position 0 is 65535");
    MUTATE(b[58] = 1);
    expect_bad("reserved byte", b, len, "header: reserved byte 58 is 0x01, must be 0");
    MUTATE(b[63] = 0x80);
    expect_bad("last reserved byte", b, len, "header: reserved byte 63 is 0x80");
    MUTATE(wr32(b + 36, 7));
    expect_bad("reserved u32", b, len, "header: the reserved u32 at byte 36 is 7, must be 0");
    MUTATE(wr32(b + 20, 3));
    expect_bad("G*G != N", b, len, "header: n_image is 4, but grid^2 = 3^2 = 9");
    MUTATE(wr32(b + 32, 3));
    expect_bad("id_bytes 3", b, len, "header: id_bytes is 3, must be 2 or 4");
    MUTATE(wr32(b + 32, 4));
    expect_bad("id_bytes 4 for 2", b, len,
               "header: id_bytes is 4, but text_vocab + text_len = 8 and image_vocab = 6 make it 2");
    MUTATE(wr64(b + 40, UINT64_MAX / 7));
    expect_bad("n_records overflows", b, len, "the size overflows 64 bits");
    MUTATE(wr64(b + 40, (UINT64_MAX - 64) / 14 + 1));
    expect_bad("n_records just over", b, len, "the size overflows 64 bits");
    MUTATE(wr64(b + 40, 4));
    expect_bad("n_records + 1", b, len, "truncated: the file has 106 bytes, 14 fewer than the 120");
    MUTATE(wr64(b + 40, 0));
    expect_bad("n_records 0", b, len, "header: n_records is 0");
    MUTATE(wr32(b + 12, 0));
    expect_bad("text_len 0", b, len, "header: text_len is 0 (must be positive)");
    MUTATE(wr32(b + 28, 0x80000000u));
    expect_bad("image_vocab 2^31", b, len, "header: image_vocab is 2147483648, more than 2^31 - 1");
    MUTATE((wr32(b + 24, 0x7fffffffu), wr32(b + 32, 4)));
    expect_bad("Vt + L past int32", b, len, "text_vocab + text_len = 2147483650 is more than 2^31 - 1");
    memcpy(b, base, len);
    expect_bad("header cut", b, 10, "10 bytes, too short for the 64-byte shard header");
    expect_bad("empty file", b, 0, "0 bytes, too short");
#undef MUTATE
    dalle_free(base);

    CHECK(shard_open("/nonexistent-dir/x.dshard") == NULL);
    CHECK(strstr(dalle_last_error(), "/nonexistent-dir/x.dshard: cannot open") != NULL);
    CHECK(shard_open("/tmp") == NULL);
    CHECK(strstr(dalle_last_error(), "/tmp: cannot open: not a regular file") != NULL);
}

// A bad id is found in the last position of the last of many records (the
// scan's fast path must not skip anything).
static void test_late_bad_id(void) {
    shard_info in = {.text_len = 16, .n_image = 64, .grid = 8, .text_vocab = 1000, .image_vocab = 512};
    int64_t n = 500;
    int32_t *text = malloc(sizeof(int32_t) * 16 * 500), *image = malloc(sizeof(int32_t) * 64 * 500);
    fill(&in, n, text, image);
    CHECK(shard_write(path, &in, text, image, n) == DALLE_OK);
    size_t len;
    uint8_t *b = slurp(path, &len);
    remove(path);
    CHECK(b && len == 64 + 500 * 80 * 2);
    if (b) {
        b[len - 2] = 0x00, b[len - 1] = 0x02; // 512
        resign(b, len);
        expect_bad("last code = Vi", b, len, "record 499: image code at position 63 is 512, not in [0, 512)");
        b[len - 1] = 0;
        b[64 + 499 * 160 + 30] = 0xf8, b[64 + 499 * 160 + 31] = 0x03; // text position 15 = 1016
        resign(b, len);
        expect_bad("last text id", b, len, "record 499: text id at position 15 is 1016, not in [0, 1016)");
    }
    dalle_free(b);
    free(text), free(image);
}

static void test_writer_refuses(void) {
    shard_info in = {.text_len = 3, .n_image = 4, .grid = 2, .text_vocab = 5, .image_vocab = 6};
    int32_t text[9], image[12];
    fill(&in, 3, text, image);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    remove(path);

    text[4] = 8;
    CHECK(shard_write(path, &in, text, image, 3) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), path));
    CHECK(strstr(dalle_last_error(), "record 1: text id at position 1 is 8, not in [0, 8)"));
    text[4] = -1;
    CHECK(shard_write(path, &in, text, image, 3) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "record 1: text id at position 1 is -1"));
    text[4] = 0;
    image[11] = 6;
    CHECK(shard_write(path, &in, text, image, 3) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "record 2: image code at position 3 is 6, not in [0, 6)"));
    image[11] = 0;
    CHECK(shard_write(path, &in, text, image, 0) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "0 records to write"));
    shard_info bad = in;
    bad.grid = 3;
    CHECK(shard_write(path, &bad, text, image, 3) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "n_image is 4, but grid^2 = 3^2 = 9"));
    bad = in;
    bad.text_vocab = -2;
    CHECK(shard_write(path, &bad, text, image, 3) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "text_vocab is -2 (must be positive)"));
    CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0); // nothing written

    CHECK(shard_write("/nonexistent-dir/x.dshard", &in, text, image, 3) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "/nonexistent-dir/x.dshard: cannot create"));
}

static void test_check_config(void) {
    shard_info in = {.text_len = 3, .n_image = 4, .grid = 2, .text_vocab = 5, .image_vocab = 6};
    int32_t text[9], image[12];
    fill(&in, 3, text, image);
    CHECK(shard_write(path, &in, text, image, 3) == DALLE_OK);
    shard *s = shard_open(path);
    CHECK(s != NULL);
    if (!s) return;
    char want[512];
    CHECK(shard_check_config(s, 3, 2, 5, 6) == DALLE_OK);
    CHECK(shard_check_config(s, 256, 2, 5, 6) == DALLE_ERR);
    snprintf(want, sizeof want, "%s: made for another model: the shard's text_len is 3, the model's 256", path);
    CHECK(!strcmp(dalle_last_error(), want));
    CHECK(shard_check_config(s, 3, 32, 5, 6) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "grid is 2, the model's 32"));
    CHECK(shard_check_config(s, 3, 2, 16384, 6) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "text_vocab is 5, the model's 16384"));
    CHECK(shard_check_config(s, 3, 2, 5, 8192) == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "image_vocab is 6, the model's 8192"));
    CHECK(shard_check_config(s, 4, 3, 5, 6) == DALLE_ERR); // the first mismatch is named
    CHECK(strstr(dalle_last_error(), "text_len is 3"));
    shard_close(s);
    remove(path);
}

int main(void) {
    snprintf(path, sizeof path, "/tmp/dalle_test_shard_%ld.dshard", (long)getpid());
    RUN(test_round_trip);
    RUN(test_corruption);
    RUN(test_late_bad_id);
    RUN(test_writer_refuses);
    RUN(test_check_config);
    return test_summary();
}
