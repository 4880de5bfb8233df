// cmd_data_shapes.c: `dalle data shapes` and `dalle data shapes-check`, the
// synthetic scenes of coloured shapes (src/data/shapes.h) where text
// conditioning can be measured.
//   dalle data shapes (--out FILE.dset | --png DIR) [--count N] [--size S] [--seed K] [--holdout LIST]
//   dalle data shapes-check --image I --caption "..."     exit 0 match, 1 no match, 2 error
//   dalle data shapes-check --dir D [--min P]             scores D/captions.tsv
#include <stdio.h>

#include "cli.h"
#include "core/common.h"
#include "core/image.h"
#include "data/dataset.h"
#include "data/shapes.h"
#include "opts.h"

int data_cmd_shapes(int argc, char **argv) {
    shapes_gen_opts g = shapes_default_gen_opts();
    shapes_build_opts o = {.count = 10000, .size = 64};
    const char *holdout = SHAPES_DEFAULT_HOLDOUT;
    int64_t seed = 0;
    double two = g.two_share;
    opt_t opts[] = {
        {"--out,-o", OPT_STR, &o.out, "write a dataset file (.dset)"},
        {"--png", OPT_STR, &o.png_dir, "write DIR/NNNNN.png, DIR/captions.tsv (file<TAB>caption) and DIR/splits.tsv"},
        {"--count", OPT_I64, &o.count, "scenes to write (held-out ones included)"},
        {"--size", OPT_INT, &o.size, "canvas side S in pixels (12 .. 4096)"},
        {"--seed", OPT_I64, &seed, "scene i is a function of (seed, i) alone"},
        {"--holdout", OPT_STR, &holdout, "colour-shape pairs kept out of train and val (\"\": none)"},
        {"--val-permille", OPT_INT, &g.val_permille,
         "validation share per 1000 train+val scenes (by hash of the scene)"},
        {"--test-permille", OPT_INT, &g.test_permille, "test share per 1000 scenes, each using a held-out pair"},
        {"--two", OPT_DOUBLE, &two, "share of scenes with two objects"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc =
        opts_parse(argc, argv, "usage: dalle data shapes (--out FILE.dset | --png DIR) [options]", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos) {
        fprintf(stderr, "dalle: data shapes: unexpected argument '%s'\n", pos[0]);
        return 2;
    }
    if (!o.out && !o.png_dir) {
        fprintf(stderr, "dalle: data shapes: needs --out FILE.dset and/or --png DIR\n");
        return 2;
    }
    g.two_share = two;
    o.seed = (uint64_t)seed;
    if (shapes_parse_holdout(holdout, &g.holdout) || shapes_check_gen_opts(&g)) {
        fprintf(stderr, "dalle: %s\n", dalle_last_error());
        return 2;
    }
    o.gen = g;
    shapes_report r;
    if (shapes_build(&o, &r)) return cli_fail();
    dalle_log("shapes: %lld scenes (train %lld, val %lld, test %lld), %lld captions, %dx%d, in %.1f s",
              (long long)r.items, (long long)r.split[DSET_TRAIN], (long long)r.split[DSET_VAL],
              (long long)r.split[DSET_TEST], (long long)r.captions, o.size, o.size, r.seconds);
    return 0;
}

static const char *const ATTR_NAMES[SHAPES_NATTR] = {"colour", "shape", "size", "position/relation"};

static void print_attr(const char *name, int64_t correct, int64_t total) {
    if (total)
        printf("  %-18s %7.2f%%  (%lld/%lld)\n", name, 100.0 * (double)correct / (double)total, (long long)correct,
               (long long)total);
    else
        printf("  %-18s       -   (not mentioned)\n", name);
}

// One image against one caption: prints what was found and the scores.
static int check_one(const char *path, const char *caption) {
    shapes_scene want;
    if (shapes_parse_caption(caption, &want)) {
        fprintf(stderr, "dalle: %s\n", dalle_last_error());
        return 2;
    }
    image_t img = {0};
    shapes_object got[SHAPES_MAX_FOUND];
    int ng = -1;
    if (image_load(path, &img) == DALLE_OK) ng = shapes_parse_image(img.data, img.w, img.h, got, SHAPES_MAX_FOUND);
    image_free(&img);
    if (ng < 0) {
        fprintf(stderr, "dalle: %s\n", dalle_last_error());
        return 2;
    }
    char d[96];
    printf("found %d object%s\n", ng, ng == 1 ? "" : "s");
    for (int i = 0; i < DALLE_MIN(ng, SHAPES_MAX_FOUND); i++) {
        shapes_object_str(&got[i], d, sizeof d);
        printf("  %s (cell %d)\n", d, got[i].cell);
    }
    printf("caption asks for %d object%s", want.n, want.n == 1 ? "" : "s");
    if (want.rel >= 0) printf(", 1 %s 2", shapes_rel_names[want.rel]);
    printf("\n");
    for (int i = 0; i < want.n; i++) {
        shapes_object_str(&want.obj[i], d, sizeof d);
        printf("  %d: %s\n", i + 1, d);
    }
    shapes_score s;
    shapes_compare(&want, got, DALLE_MIN(ng, SHAPES_MAX_FOUND), &s);
    for (int a = 0; a < SHAPES_NATTR; a++) print_attr(ATTR_NAMES[a], s.correct[a], s.mentioned[a]);
    printf("%s\n", s.exact ? "match" : "no match");
    return s.exact ? 0 : 1;
}

int data_cmd_shapes_check(int argc, char **argv) {
    const char *image = NULL, *caption = NULL, *dir = NULL;
    double min = 0;
    opt_t opts[] = {
        {"--image", OPT_STR, &image, "an image (PNG or JPEG, square) to check against --caption"},
        {"--caption", OPT_STR, &caption, "what the image should show, e.g. \"a small red circle in the top left\""},
        {"--dir", OPT_STR, &dir, "score a folder: DIR/captions.tsv rows file<TAB>caption, images beside it"},
        {"--min", OPT_DOUBLE, &min, "with --dir: exit 1 when the exact-match percentage is below this"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv,
                         "usage: dalle data shapes-check --image I --caption TEXT | --dir D [--min P]\n"
                         "exit status: 0 match (or --dir scored), 1 no match (or below --min), 2 error",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos || !dir == !(image || caption) || (image && !caption) || (caption && !image)) {
        fprintf(stderr, "dalle: data shapes-check: needs either --image I --caption TEXT, or --dir D\n");
        return 2;
    }
    if (image) return check_one(image, caption);
    shapes_dir_score s;
    if (shapes_check_dir(dir, &s)) {
        fprintf(stderr, "dalle: %s\n", dalle_last_error());
        return 2;
    }
    printf("%s: %lld captions of %lld images\n", dir, (long long)s.rows, (long long)s.images);
    for (int a = 0; a < SHAPES_NATTR; a++) print_attr(ATTR_NAMES[a], s.correct[a], s.mentioned[a]);
    print_attr("exact match", s.exact, s.rows);
    return 100.0 * (double)s.exact / (double)s.rows < min ? 1 : 0;
}
