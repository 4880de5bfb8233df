// test_data.c: the data pipeline's pieces: the dataset file (round trip,
// duplicates, every kind of damage), the paper's caption filters, the
// caption file reader, and the loader (each epoch a permutation, ranks
// disjoint, a position's item independent of anything else).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "data/build.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "test.h"

static char path[128];

static void test_dataset_round_trip(void) {
    dset_writer *w = dset_writer_open(path, 4);
    CHECK(w != NULL);
    if (!w) return;
    uint8_t px[3][48];
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 48; k++) px[i][k] = (uint8_t)(i * 50 + k);
    const char *c0[] = {"a red circle", "a circle that is red"}, *c1[] = {"caf\xc3\xa9 \xf0\x9f\x90\xb1"};
    CHECK(dset_writer_add(w, px[0], c0, 2, DSET_TRAIN, "a.png") == DALLE_OK);
    CHECK(dset_writer_add(w, px[1], c1, 1, DSET_VAL, "b.png") == DALLE_OK);
    CHECK(dset_writer_has_image(w, px[0]) && dset_writer_has_image(w, px[1]) && !dset_writer_has_image(w, px[2]));
    const char *bad[] = {"bad \xff utf-8"}, *nl[] = {"two\nlines"}, *empty[] = {""};
    CHECK(dset_writer_add(w, px[2], bad, 1, DSET_TRAIN, "c.png") == DALLE_ERR && strstr(dalle_last_error(), "UTF-8"));
    CHECK(dset_writer_add(w, px[2], nl, 1, DSET_TRAIN, "c.png") == DALLE_ERR);
    CHECK(dset_writer_add(w, px[2], empty, 1, DSET_TRAIN, "c.png") == DALLE_ERR);
    CHECK(dset_writer_add(w, px[2], c0, 1, DSET_TEST, "c.png") == DALLE_OK);
    CHECK(access(path, F_OK) != 0); // nothing at the final name until finished
    CHECK(dset_writer_finish(w) == DALLE_OK);
    dset *d = dset_open(path);
    CHECK(d && dset_count(d) == 3 && dset_image_size(d) == 4);
    if (!d) return;
    CHECK(!memcmp(dset_image(d, 1), px[1], 48) && !memcmp(dset_image(d, 2), px[2], 48));
    CHECK(dset_split(d, 0) == DSET_TRAIN && dset_split(d, 1) == DSET_VAL && dset_split(d, 2) == DSET_TEST);
    size_t len;
    const char *c = dset_caption(d, 0, 1, &len);
    CHECK(dset_caption_count(d, 0) == 2 && len == strlen(c0[1]) && !memcmp(c, c0[1], len));
    c = dset_caption(d, 1, 0, &len);
    CHECK(len == strlen(c1[0]) && !memcmp(c, c1[0], len));
    dset_close(d);
}

static void test_dataset_damage(void) {
    size_t n;
    uint8_t *b = (uint8_t *)dalle_read_file(path, &n);
    CHECK(b != NULL);
    if (!b) return;
    struct {
        const char *what, *want;
        size_t at;
        uint8_t val;
        size_t len;
    } cases[] = {
        {"magic", "not a dalle.c dataset", 0, 'X', n},
        {"version", "version", 8, 9, n},
        {"a pixel", "checksum mismatch", 70, 0xee, n},
        {"a caption byte", "checksum mismatch", n - 3, 0xff, n},
        {"truncated", "truncated or corrupt", 0, 'D', n - 1},
        {"empty", "not a dalle.c dataset", 0, 'D', 0},
        {"reserved", "reserved", 60, 1, n},
        {"image size", "layout does not match", 12, 5, n},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t *c = malloc(n + 1);
        memcpy(c, b, n);
        c[cases[i].at] = cases[i].val;
        dset *d = dset_open_mem(c, cases[i].len, "bad.dset");
        int ok = !d && strstr(dalle_last_error(), "bad.dset") && strstr(dalle_last_error(), cases[i].want);
        if (!ok) fprintf(stderr, "  %s: %s\n", cases[i].what, d ? "opened" : dalle_last_error());
        CHECK(ok);
        dset_close(d);
        free(c);
    }
    CHECK(dset_open("/nonexistent.dset") == NULL && strstr(dalle_last_error(), "/nonexistent.dset"));
    dalle_free(b);
    unlink(path);
}

static void test_filters(void) {
    CHECK(caption_long_enough("a cat", 2) && !caption_long_enough("cat", 2) && caption_long_enough("cat", 0));
    CHECK(caption_is_english("a small red circle in the top left", 0.9));
    CHECK(caption_is_english("grinning face", 0.9)); // short: no function word needed
    CHECK(!caption_is_english("une photo d'un chat sur la table", 0.9));
    CHECK(!caption_is_english("\xe7\x8c\xab\xe3\x81\xae\xe5\x86\x99\xe7\x9c\x9f", 0.9)); // Japanese
    CHECK(!caption_is_english("\xd0\xba\xd0\xbe\xd1\x82 \xd0\xbd\xd0\xb0 \xd1\x81\xd1\x82\xd0\xbe\xd0\xbb\xd0\xb5", 0.9));
    CHECK(caption_is_date_boilerplate("photographed on 2012-05-03"));
    CHECK(caption_is_date_boilerplate("Photo taken on May 3rd, 2012 at 10:42"));
    CHECK(caption_is_date_boilerplate("2012/05/03"));
    CHECK(caption_is_date_boilerplate("IMG_1234"));
    CHECK(caption_is_date_boilerplate("Monday, June 4"));
    CHECK(!caption_is_date_boilerplate("a dog on the beach on may 3rd"));
    CHECK(!caption_is_date_boilerplate("photographed on the beach"));
    CHECK(!caption_is_date_boilerplate("two cats"));
}

static void test_caption_files(void) {
    int64_t im, ca;
    const char *tsv = "a.png\ta red circle\na.png\ta circle\nb.jpg\tdog\r\n";
    CHECK(data_captions_check("c.tsv", tsv, strlen(tsv), &im, &ca) == DALLE_OK && im == 2 && ca == 3);
    const char *jl = "{\"file\": \"a.png\", \"caption\": \"x y\"}\n{\"file\": \"b.png\", \"captions\": [\"p\", \"q\"]}\n";
    CHECK(data_captions_check("c.jsonl", jl, strlen(jl), &im, &ca) == DALLE_OK && im == 2 && ca == 3);
    const char *bad = "a.png red circle\n";
    CHECK(data_captions_check("c.tsv", bad, strlen(bad), &im, &ca) == DALLE_ERR &&
          strstr(dalle_last_error(), "c.tsv: line 1"));
    const char *badj = "{\"file\": 3}\n";
    CHECK(data_captions_check("c.jsonl", badj, strlen(badj), &im, &ca) == DALLE_ERR &&
          strstr(dalle_last_error(), "c.jsonl: line 1"));
}

static void test_loader(void) {
    enum { N = 37, W = 3 };
    loader l[W];
    for (int r = 0; r < W; r++) CHECK(loader_init(&l[r], N, 9, r, W) == DALLE_OK);
    // per epoch, the ranks together visit every item exactly once
    int seen[N] = {0}, per = 0;
    for (int64_t pos = 0; (pos + 1) * W <= N; pos++, per++)
        for (int r = 0; r < W; r++) seen[loader_item(&l[r], pos)]++;
    int dup = 0;
    for (int i = 0; i < N; i++) dup += seen[i] > 1;
    CHECK(dup == 0 && per == N / W);
    // a position's item does not depend on what was asked before
    loader a, b;
    CHECK(loader_init(&a, N, 9, 1, W) == DALLE_OK && loader_init(&b, N, 9, 1, W) == DALLE_OK);
    int same = 1;
    for (int64_t pos = 0; pos < 100; pos++) (void)loader_item(&a, pos);
    for (int64_t pos = 99; pos >= 0; pos--) same &= loader_item(&a, pos) == loader_item(&b, pos);
    CHECK(same);
    // another seed, another order; another epoch, another order
    loader c;
    CHECK(loader_init(&c, N, 10, 0, 1) == DALLE_OK);
    int diff_seed = 0, diff_epoch = 0;
    for (int64_t pos = 0; pos < N; pos++) {
        diff_seed |= loader_item(&c, pos) != loader_item(&l[0], pos);
        diff_epoch |= loader_item(&c, pos) != loader_item(&c, pos + N);
    }
    CHECK(diff_seed && diff_epoch);
    loader_free(&c);
    CHECK(loader_init(&c, 0, 1, 0, 1) == DALLE_ERR);
    for (int r = 0; r < W; r++) loader_free(&l[r]);
    loader_free(&a), loader_free(&b), loader_free(&c);
}

int main(void) {
    snprintf(path, sizeof path, "/tmp/dalle-test-data-%d.dset", (int)getpid());
    RUN(test_dataset_round_trip);
    RUN(test_dataset_damage);
    RUN(test_filters);
    RUN(test_caption_files);
    RUN(test_loader);
    return test_summary();
}
