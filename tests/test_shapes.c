// test_shapes.c: the shapes dataset (src/data/shapes.c): scenes reproducible
// from (seed, index), held-out pairs only in the test split, relations
// consistent with the cells, objects inside the canvas and apart, captions
// parsed back to their scenes, and the checker reading fresh renders (>= 99%
// exact at S = 64 and 32) and blurred, noisy ones (>= 95%).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/shapes.h"
#include "test.h"

static int same_object(const shapes_object *a, const shapes_object *b) {
    return a->color == b->color && a->shape == b->shape && a->size == b->size && a->cell == b->cell;
}

static void test_generate_reproducible(void) {
    shapes_gen_opts o = shapes_default_gen_opts();
    int differ = 0;
    for (uint64_t i = 0; i < 500; i++) {
        shapes_scene a, b, c;
        int sa = shapes_generate(&a, 7, i, &o), sb = shapes_generate(&b, 7, i, &o);
        shapes_generate(&c, 8, i, &o);
        CHECK(sa == sb && sa >= DSET_TRAIN && sa <= DSET_TEST);
        CHECK(a.n == b.n && a.rel == b.rel && same_object(&a.obj[0], &b.obj[0]));
        CHECK(a.n == 1 || same_object(&a.obj[1], &b.obj[1]));
        differ += a.n != c.n || !same_object(&a.obj[0], &c.obj[0]);
    }
    CHECK(differ > 400); // another seed, other scenes
    // scene i does not depend on the scenes drawn before it, nor on S
    shapes_scene a, b;
    shapes_generate(&a, 7, 123, &o);
    for (uint64_t i = 0; i < 10; i++) shapes_generate(&b, 7, i, &o);
    shapes_generate(&b, 7, 123, &o);
    CHECK(a.n == b.n && same_object(&a.obj[0], &b.obj[0]));
}

static void test_render_deterministic(void) {
    uint8_t *p = dalle_malloc(64 * 64 * 3), *q = dalle_malloc(64 * 64 * 3);
    shapes_scene sc = {1, {{SHAPES_RED, SHAPES_SQUARE, SHAPES_LARGE, 4}}, SHAPES_ANY};
    shapes_render(p, 64, &sc);
    shapes_render(q, 64, &sc);
    CHECK(!memcmp(p, q, 64 * 64 * 3));
    // a large square in the center: the box [S/3, 2S/3]^2, red inside, white outside
    CHECK(p[(32 * 64 + 32) * 3] == 220 && p[(32 * 64 + 32) * 3 + 1] == 40 && p[(32 * 64 + 32) * 3 + 2] == 40);
    CHECK(p[(22 * 64 + 22) * 3 + 1] == 40 && p[(20 * 64 + 32) * 3 + 1] == 255 && p[(32 * 64 + 43) * 3 + 1] == 255);
    CHECK(p[0] == 255 && p[(64 * 64 - 1) * 3] == 255);
    // a pixel the edge x = 64/3 cuts: a blend (2x2 samples: half covered)
    CHECK(p[(32 * 64 + 21) * 3 + 1] > 40 && p[(32 * 64 + 21) * 3 + 1] < 255);
    dalle_free(p);
    dalle_free(q);
}

// Held-out pairs never in train or val, always in test; the shares; relations
// consistent with the cells; two objects never touching, all inside the canvas.
static void test_splits_and_layout(void) {
    shapes_gen_opts o = shapes_default_gen_opts();
    int count[3] = {0}, two = 0, bad_rel = 0, bad_hold = 0, touching = 0;
    const int S = 48, N = 20000;
    uint8_t *p = dalle_malloc(S * S * 3), *q = dalle_malloc(S * S * 3);
    for (int i = 0; i < N; i++) {
        shapes_scene sc;
        int split = shapes_generate(&sc, 11, (uint64_t)i, &o);
        count[split]++;
        bad_hold += (split == DSET_TEST) != shapes_scene_uses(&sc, o.holdout);
        if (sc.n == 1) continue;
        two++;
        int a = sc.obj[0].cell, b = sc.obj[1].cell, dc = b % 3 - a % 3, dr = b / 3 - a / 3;
        int ok = sc.rel == SHAPES_LEFT_OF    ? dc > 0 && abs(dr) < dc
                 : sc.rel == SHAPES_RIGHT_OF ? dc < 0 && abs(dr) < -dc
                 : sc.rel == SHAPES_ABOVE    ? dr > 0 && abs(dc) < dr
                                             : dr < 0 && abs(dc) < -dr;
        bad_rel += !ok;
        if (i % 10) continue;
        // objects drawn alone: their non-white pixels are disjoint and 8-apart
        shapes_scene s0 = {1, {sc.obj[0]}, SHAPES_ANY}, s1 = {1, {sc.obj[1]}, SHAPES_ANY};
        shapes_render(p, S, &s0);
        shapes_render(q, S, &s1);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                if (p[(y * S + x) * 3] == 255 && p[(y * S + x) * 3 + 2] == 255 && p[(y * S + x) * 3 + 1] == 255)
                    continue;
                for (int yy = DALLE_MAX(0, y - 1); yy <= DALLE_MIN(S - 1, y + 1); yy++)
                    for (int xx = DALLE_MAX(0, x - 1); xx <= DALLE_MIN(S - 1, x + 1); xx++) {
                        const uint8_t *r = q + (yy * S + xx) * 3;
                        touching += r[0] != 255 || r[1] != 255 || r[2] != 255;
                    }
            }
    }
    printf("    %d scenes: train %d, val %d, test %d; two objects %d\n", N, count[0], count[1], count[2], two);
    CHECK(bad_hold == 0 && bad_rel == 0 && touching == 0);
    CHECK(abs(count[2] - N / 20) < N / 100);              // test 5%
    CHECK(abs(count[1] - (N - count[2]) / 20) < N / 100); // val 5% of the rest
    CHECK(abs(two - N / 2) < N / 25);
    // the val split is a function of the scene: equal scenes, equal splits
    shapes_scene sc;
    for (int i = 0; i < 200; i++) {
        int split = shapes_generate(&sc, 99, (uint64_t)i, &o);
        char name[128];
        shapes_scene_name(&sc, name, sizeof name);
        if (split != DSET_TEST) CHECK(split == dset_split_of(name, 50));
    }
    // no holdout: no test scenes; a holdout of every pair is refused
    shapes_gen_opts none = o;
    CHECK(shapes_parse_holdout("", &none.holdout) == DALLE_OK && none.holdout == 0);
    int tests = 0;
    for (int i = 0; i < 2000; i++) tests += shapes_generate(&sc, 3, (uint64_t)i, &none) == DSET_TEST;
    CHECK(tests == 0);
    none.holdout = (1u << 28) - 1;
    CHECK(shapes_generate(&sc, 3, 0, &none) == DALLE_ERR);
    dalle_free(p);
    dalle_free(q);
}

static void test_holdout_list(void) {
    uint32_t m;
    CHECK(shapes_parse_holdout(SHAPES_DEFAULT_HOLDOUT, &m) == DALLE_OK);
    CHECK(m == (1u << (SHAPES_RED * 4 + SHAPES_TRIANGLE) | 1u << (SHAPES_BLUE * 4 + SHAPES_CIRCLE) |
                1u << (SHAPES_GREEN * 4 + SHAPES_SQUARE) | 1u << (SHAPES_YELLOW * 4 + SHAPES_DIAMOND) |
                1u << (SHAPES_PURPLE * 4 + SHAPES_CIRCLE)));
    CHECK(shapes_parse_holdout(" red triangle ,  blue   circle", &m) == DALLE_OK && __builtin_popcount(m) == 2);
    CHECK(shapes_parse_holdout("red dog", &m) == DALLE_ERR && strstr(dalle_last_error(), "red dog"));
    CHECK(shapes_parse_holdout("red triangle,", &m) == DALLE_ERR);
    CHECK(shapes_parse_holdout("circle", &m) == DALLE_ERR);
}

// shapes_build's .dset holds scene i as item i: its pixels, captions and split.
static void test_build_dset(void) {
    char dir[] = "/tmp/test_shapes_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/s.dset", dir);
    shapes_build_opts o = {.count = 60, .size = 24, .seed = 9, .gen = shapes_default_gen_opts(), .out = path};
    shapes_report r;
    int level = dalle_log_level;
    dalle_log_level = 0; // no progress line
    CHECK(shapes_build(&o, &r) == DALLE_OK && r.items == 60 && r.captions == 240);
    dalle_log_level = level;
    dset *d = dset_open(path);
    CHECK(d != NULL);
    if (d) {
        CHECK(dset_count(d) == 60 && dset_image_size(d) == 24);
        uint8_t pix[24 * 24 * 3];
        for (int64_t i = 0; i < dset_count(d); i++) {
            shapes_scene sc;
            char caps[SHAPES_MAX_CAPTIONS][SHAPES_CAPTION_MAX];
            int split = shapes_generate(&sc, 9, (uint64_t)i, &o.gen), nc = shapes_captions(&sc, caps);
            shapes_render(pix, 24, &sc);
            CHECK(dset_split(d, i) == split && dset_caption_count(d, i) == nc);
            CHECK(!memcmp(dset_image(d, i), pix, sizeof pix));
            size_t len;
            const char *c = dset_caption(d, i, 0, &len);
            CHECK(len == strlen(caps[0]) && !memcmp(c, caps[0], len));
        }
        dset_close(d);
    }
    remove(path);
    rmdir(dir);
    o.size = 8;
    CHECK(shapes_build(&o, &r) == DALLE_ERR && strstr(dalle_last_error(), "size 8"));
}

// Every caption of every scene parses back to the scene (sizes absent from
// the short two-object phrasings), the converse phrasings with the objects swapped.
static void test_caption_round_trip(void) {
    shapes_gen_opts o = shapes_default_gen_opts();
    int bad = 0;
    for (int i = 0; i < 3000; i++) {
        shapes_scene sc, back;
        char caps[SHAPES_MAX_CAPTIONS][SHAPES_CAPTION_MAX];
        shapes_generate(&sc, 5, (uint64_t)i, &o);
        int nc = shapes_captions(&sc, caps);
        CHECK(nc >= 3 && nc <= SHAPES_MAX_CAPTIONS);
        for (int k = 0; k < nc; k++) {
            if (shapes_parse_caption(caps[k], &back) != DALLE_OK) {
                bad++;
                continue;
            }
            shapes_scene want = sc;
            if (sc.n == 2) {
                static const int conv[4] = {SHAPES_RIGHT_OF, SHAPES_LEFT_OF, SHAPES_BELOW, SHAPES_ABOVE};
                if (k % 2) want.obj[0] = sc.obj[1], want.obj[1] = sc.obj[0], want.rel = conv[sc.rel];
                for (int j = 0; j < 2; j++) {
                    want.obj[j].cell = SHAPES_ANY;
                    if (k < 2) want.obj[j].size = SHAPES_ANY;
                }
            }
            int ok = back.n == want.n && back.rel == want.rel;
            for (int j = 0; j < want.n && ok; j++) ok = same_object(&back.obj[j], &want.obj[j]);
            if (!ok && bad < 5) printf("    round trip failed: '%s'\n", caps[k]);
            bad += !ok;
        }
    }
    CHECK(bad == 0);
    shapes_scene one = {1, {{SHAPES_ORANGE, SHAPES_DIAMOND, SHAPES_SMALL, 7}}, SHAPES_ANY};
    char caps[SHAPES_MAX_CAPTIONS][SHAPES_CAPTION_MAX];
    shapes_captions(&one, caps);
    CHECK(!strcmp(caps[0], "a small orange diamond at the bottom"));
    shapes_scene two = {
        2,
        {{SHAPES_BLUE, SHAPES_SQUARE, SHAPES_SMALL, 3}, {SHAPES_ORANGE, SHAPES_TRIANGLE, SHAPES_LARGE, 5}},
        SHAPES_LEFT_OF};
    shapes_captions(&two, caps);
    CHECK(!strcmp(caps[0], "a blue square to the left of an orange triangle"));
    CHECK(!strcmp(caps[1], "an orange triangle to the right of a blue square"));
    for (int k = 0; k < 4; k++) printf("    %s\n", caps[k]);
}

// The looser grammar, and captions that must be refused.
static void test_caption_grammar(void) {
    shapes_scene s;
    CHECK(shapes_parse_caption("Small RED circle, top-left.", &s) == DALLE_OK && s.n == 1 &&
          s.obj[0].size == SHAPES_SMALL && s.obj[0].color == SHAPES_RED && s.obj[0].cell == 0);
    CHECK(shapes_parse_caption("a circle", &s) == DALLE_OK && s.n == 1 && s.obj[0].color == SHAPES_ANY &&
          s.obj[0].size == SHAPES_ANY && s.obj[0].cell == SHAPES_ANY);
    const char *two = "a red circle on the left and a big blue square in the lower right corner";
    CHECK(shapes_parse_caption(two, &s) == DALLE_OK && s.n == 2 && s.rel == SHAPES_ANY && s.obj[0].cell == 3 &&
          s.obj[1].cell == 8 && s.obj[1].size == SHAPES_LARGE);
    CHECK(shapes_parse_caption("a black diamond on top of a tiny yellow square", &s) == DALLE_OK &&
          s.rel == SHAPES_ABOVE && s.obj[1].size == SHAPES_SMALL);
    CHECK(shapes_parse_caption("a green triangle under a purple circle", &s) == DALLE_OK && s.rel == SHAPES_BELOW);
    CHECK(shapes_parse_caption("a red circle on the right of the picture", &s) == DALLE_OK && s.rel == SHAPES_ANY &&
          s.obj[0].cell == 5);
    CHECK(shapes_parse_caption("a red circle in the middle", &s) == DALLE_OK && s.obj[0].cell == 4);
    CHECK(shapes_parse_caption("at the top, a blue diamond", &s) == DALLE_OK && s.obj[0].cell == 1);
    const char *bad[] = {
        "a dog in a park", "a red", "in the top left", "a red circle above", "above a red circle", "a red blue circle",
        "a circle, a square and a triangle", "", "a red circle left of a blue square right of a green diamond",
        "a r\xc3\xa9" "d circle", "a small red circle in the top left in the bottom"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = shapes_parse_caption(bad[i], &s);
        CHECK(rc == DALLE_ERR && strstr(dalle_last_error(), "caption"));
        if (rc == DALLE_ERR) printf("    refused: %s\n", dalle_last_error());
    }
}

// 3 x 3 box blur (edges replicated), then uniform noise in [-20, 20] per channel.
static void degrade(uint8_t *pix, int S, uint64_t seed) {
    uint8_t *src = dalle_malloc((size_t)S * S * 3);
    memcpy(src, pix, (size_t)S * S * 3);
    rng_t r;
    rng_init(&r, seed);
    float *u = dalle_malloc(sizeof(float) * (size_t)S * S * 3);
    rng_uniform(&r, u, (int64_t)S * S * 3);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int yy = DALLE_MIN(S - 1, DALLE_MAX(0, y + dy)), xx = DALLE_MIN(S - 1, DALLE_MAX(0, x + dx));
                        sum += src[(yy * S + xx) * 3 + c];
                    }
                int i = (y * S + x) * 3 + c;
                float v = sum / 9.0f + (u[i] * 2 - 1) * 20;
                pix[i] = (uint8_t)DALLE_MIN(255, DALLE_MAX(0, lrintf(v)));
            }
    dalle_free(src);
    dalle_free(u);
}

// Renders N scenes at S (degraded or not), checks each against its captions;
// returns the exact-match share and prints the per-attribute accuracies.
static double checker_accuracy(int S, int N, int noisy) {
    shapes_gen_opts o = shapes_default_gen_opts();
    uint8_t *pix = dalle_malloc((size_t)S * S * 3);
    int64_t ment[SHAPES_NATTR] = {0}, corr[SHAPES_NATTR] = {0}, exact = 0, rows = 0, shown = 0;
    for (int i = 0; i < N; i++) {
        shapes_scene sc, want;
        shapes_object got[SHAPES_MAX_FOUND];
        char caps[SHAPES_MAX_CAPTIONS][SHAPES_CAPTION_MAX];
        shapes_generate(&sc, 1000 + (uint64_t)S, (uint64_t)i, &o);
        shapes_render(pix, S, &sc);
        if (noisy) degrade(pix, S, (uint64_t)i);
        int ng = shapes_parse_image(pix, S, S, got, SHAPES_MAX_FOUND);
        CHECK(ng >= 0);
        int nc = shapes_captions(&sc, caps);
        for (int k = 0; k < nc; k++) {
            shapes_score s;
            CHECK(shapes_parse_caption(caps[k], &want) == DALLE_OK);
            shapes_compare(&want, got, DALLE_MIN(ng, SHAPES_MAX_FOUND), &s);
            for (int a = 0; a < SHAPES_NATTR; a++) ment[a] += s.mentioned[a], corr[a] += s.correct[a];
            exact += s.exact, rows++;
            if (!s.exact && k == 2 && shown++ < 3) {
                printf("      missed '%s': found %d:", caps[k], ng);
                for (int j = 0; j < DALLE_MIN(ng, 4); j++) {
                    char d[96];
                    shapes_object_str(&got[j], d, sizeof d);
                    printf(" [%s]", d);
                }
                printf("\n");
            }
        }
    }
    double acc = (double)exact / (double)rows;
    printf("    S=%-3d %s %d scenes: colour %.2f%% shape %.2f%% size %.2f%% position %.2f%%  exact %.2f%%\n", S,
           noisy ? "blur+noise" : "fresh     ", N, 100.0 * corr[0] / ment[0], 100.0 * corr[1] / ment[1],
           100.0 * corr[2] / ment[2], 100.0 * corr[3] / ment[3], 100 * acc);
    dalle_free(pix);
    return acc;
}

static void test_checker_fresh(void) {
    CHECK(checker_accuracy(64, 2000, 0) >= 0.99);
    CHECK(checker_accuracy(32, 2000, 0) >= 0.99);
}

static void test_checker_noisy(void) {
    CHECK(checker_accuracy(64, 2000, 1) >= 0.95);
    CHECK(checker_accuracy(32, 2000, 1) >= 0.95);
}

// A wrong caption does not match; the scores say which attribute is wrong.
static void test_checker_mismatch(void) {
    uint8_t *pix = dalle_malloc(64 * 64 * 3);
    shapes_scene sc = {
        2,
        {{SHAPES_BLUE, SHAPES_SQUARE, SHAPES_SMALL, 3}, {SHAPES_GREEN, SHAPES_TRIANGLE, SHAPES_LARGE, 5}},
        SHAPES_LEFT_OF};
    shapes_render(pix, 64, &sc);
    shapes_object got[SHAPES_MAX_FOUND];
    int ng = shapes_parse_image(pix, 64, 64, got, SHAPES_MAX_FOUND);
    CHECK(ng == 2);
    const struct {
        const char *cap;
        int exact, wrong_attr;
    } cases[] = {
        {"a blue square to the left of a green triangle", 1, -1},
        {"a green triangle to the right of a small blue square", 1, -1},
        {"a blue square to the right of a green triangle", 0, SHAPES_ATTR_POS},
        {"a red square to the left of a green triangle", 0, SHAPES_ATTR_COLOR},
        {"a blue circle to the left of a green triangle", 0, SHAPES_ATTR_SHAPE},
        {"a large blue square to the left of a green triangle", 0, SHAPES_ATTR_SIZE},
        {"a blue square", 0, -1}, // right attributes, but one object too few
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        shapes_scene want;
        shapes_score s;
        CHECK(shapes_parse_caption(cases[i].cap, &want) == DALLE_OK);
        shapes_compare(&want, got, ng, &s);
        CHECK(s.exact == cases[i].exact);
        for (int a = 0; a < SHAPES_NATTR; a++) CHECK(s.correct[a] == s.mentioned[a] - (a == cases[i].wrong_attr));
    }
    // an empty canvas has no objects; a caption's objects are then all wrong
    memset(pix, 255, 64 * 64 * 3);
    CHECK(shapes_parse_image(pix, 64, 64, got, SHAPES_MAX_FOUND) == 0);
    shapes_scene want;
    shapes_score s;
    shapes_parse_caption("a small red circle in the top left", &want);
    shapes_compare(&want, got, 0, &s);
    CHECK(!s.exact && s.mentioned[SHAPES_ATTR_COLOR] == 1 && s.correct[SHAPES_ATTR_COLOR] == 0);
    CHECK(shapes_parse_image(pix, 64, 32, got, SHAPES_MAX_FOUND) == DALLE_ERR && strstr(dalle_last_error(), "64 x 32"));
    dalle_free(pix);
}

int main(void) {
    RUN(test_generate_reproducible);
    RUN(test_render_deterministic);
    RUN(test_splits_and_layout);
    RUN(test_holdout_list);
    RUN(test_build_dset);
    RUN(test_caption_round_trip);
    RUN(test_caption_grammar);
    RUN(test_checker_mismatch);
    RUN(test_checker_fresh);
    RUN(test_checker_noisy);
    return test_summary();
}
