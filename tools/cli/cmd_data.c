// cmd_data.c: `dalle data ...`: datasets of captioned images.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/common.h"
#include "data/build.h"
#include "data/dataset.h"
#include "data/tokenize.h"
#include "opts.h"

static int data_cmd_build(int argc, char **argv) {
    data_build_opts o = data_build_defaults(64);
    int min_side = -1;
    opt_t opts[] = {
        {"--images", OPT_STR, &o.images, "folder the caption file's names are relative to (required)"},
        {"--captions", OPT_STR, &o.captions, "file<TAB>caption rows, or JSON Lines {\"file\", \"caption\"} (required)"},
        {"--out,-o", OPT_STR, &o.out, "dataset file to write (required)"},
        {"--size", OPT_INT, &o.size, "image side S: resized (area down, Lanczos up), centre-cropped"},
        {"--val-permille", OPT_INT, &o.val_permille, "validation share per 1000 sources (by hash of the file name)"},
        {"--min-words", OPT_INT, &o.min_words, "drop captions with fewer words (0: off)"},
        {"--english", OPT_DOUBLE, &o.english, "drop captions under this share of ASCII letters or with no English "
                                             "function word (longer than 3 words) (0: off)"},
        {"--drop-dates", OPT_INT, &o.drop_dates, "drop boilerplate date captions (\"photographed on <date>\") (0: off)"},
        {"--max-aspect", OPT_DOUBLE, &o.max_aspect, "drop images with aspect ratio outside [1/x, x] (0: off)"},
        {"--min-side", OPT_INT, &min_side, "drop images whose shorter side is smaller (-1: the size S; 0: off)"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle data build --images DIR --captions FILE --size S -o DATASET", opts,
                         pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!o.images || !o.captions || !o.out || npos) {
        fprintf(stderr, "dalle: data build: needs --images, --captions and -o\n");
        return 2;
    }
    o.min_side = min_side < 0 ? o.size : min_side;
    data_build_report r;
    if (data_build(&o, &r)) return cli_fail();
    printf("data build: %s: %lld images from %lld caption rows naming %lld images\n", o.out, (long long)r.written,
           (long long)r.rows, (long long)r.images_named);
    printf("  captions kept %lld; dropped: too short %lld, not English %lld, date boilerplate %lld, bad UTF-8 %lld\n",
           (long long)r.captions_kept, (long long)r.cap_short, (long long)r.cap_english, (long long)r.cap_date,
           (long long)r.cap_utf8);
    printf("  images skipped: missing %lld, unreadable %lld, too small %lld, aspect ratio %lld, duplicate %lld, "
           "no caption left %lld\n",
           (long long)r.missing, (long long)r.unreadable, (long long)r.too_small, (long long)r.aspect,
           (long long)r.duplicate, (long long)r.no_caption_left);
    return 0;
}

static int data_cmd_tokenize(int argc, char **argv) {
    data_tokenize_opts o = data_tokenize_defaults();
    const char *split = "train";
    double dropout = 0;
    int64_t seed = 0;
    opt_t opts[] = {
        {"--dvae", OPT_STR, &o.dvae, "dVAE model (required)"},
        {"--tokenizer,-t", OPT_STR, &o.tokenizer, "tokenizer (required)"},
        {"--out,-o", OPT_STR, &o.out, "shard file; with --records-per-shard, NAME-00000.dshard, ... (required)"},
        {"--text-len", OPT_INT, &o.text_len, "text positions L of the prior"},
        {"--split", OPT_STR, &split, "train, val, test or all"},
        {"--records-per-shard", OPT_I64, &o.records_per_shard, "split the output (0: one shard)"},
        {"--augment", OPT_FLAG, &o.augment, "the paper's Listing 2 (random near-centre crop and rescale, no flip)"},
        {"--dropout", OPT_DOUBLE, &dropout, "BPE dropout probability (0: off)"},
        {"--seed", OPT_I64, &seed, "augmentation and dropout: record r draws from (seed, r)"},
        {"--batch", OPT_INT, &o.batch, "images per dVAE call"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle data tokenize --dvae M -t TOKENIZER DATASET -o SHARD", opts, pos,
                         &npos);
    if (prc) return prc == 1 ? 0 : 2;
    static const char *splits[] = {"train", "val", "test", "all"};
    o.split = -2;
    for (int i = 0; i < 4; i++)
        if (!strcmp(split, splits[i])) o.split = i == 3 ? -1 : i;
    if (!o.dvae || !o.tokenizer || !o.out || npos != 1 || o.split == -2 || o.text_len < 1) {
        fprintf(stderr, "dalle: data tokenize: needs --dvae, --tokenizer, -o, one dataset and a valid --split\n");
        return 2;
    }
    o.dataset = pos[0];
    o.dropout = (float)dropout;
    o.seed = (uint64_t)seed;
    double t0 = dalle_time();
    int64_t n = data_tokenize(&o);
    if (n < 0) return cli_fail();
    double dt = dalle_time() - t0;
    printf("data tokenize: %lld records (%s split) -> %s in %.1f s (%.0f records/s)\n", (long long)n, split, o.out,
           dt, (double)n / dt);
    return 0;
}

static int data_cmd_captions(int argc, char **argv) {
    const char *split = "all";
    opt_t opts[] = {{"--split", OPT_STR, &split, "train, val, test or all"}, {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle data captions [--split S] DATASET...\n"
                                     "Prints every caption, one per line (e.g. to train a tokenizer on).",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    int want = !strcmp(split, "train") ? DSET_TRAIN : !strcmp(split, "val") ? DSET_VAL : !strcmp(split, "test") ? DSET_TEST
             : !strcmp(split, "all") ? -1 : -2;
    if (npos < 1 || want == -2) {
        fprintf(stderr, "dalle: data captions: needs datasets and a valid --split\n");
        return 2;
    }
    for (int f = 0; f < npos; f++) {
        dset *d = dset_open(pos[f]);
        if (!d) return cli_fail();
        for (int64_t i = 0; i < dset_count(d); i++) {
            if (want >= 0 && dset_split(d, i) != want) continue;
            for (int k = 0; k < dset_caption_count(d, i); k++) {
                size_t len;
                const char *c = dset_caption(d, i, k, &len);
                fwrite(c, 1, len, stdout);
                putchar('\n');
            }
        }
        dset_close(d);
    }
    return fflush(stdout) ? 1 : 0;
}

static int data_cmd_info(int argc, char **argv) {
    int show = 3;
    opt_t opts[] = {{"--show", OPT_INT, &show, "print the captions of this many items"}, {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle data info DATASET", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos != 1) {
        fprintf(stderr, "dalle: data info: needs one dataset file\n");
        return 2;
    }
    dset *d = dset_open(pos[0]);
    if (!d) return cli_fail();
    int64_t n = dset_count(d), split[3] = {0, 0, 0}, caps = 0;
    for (int64_t i = 0; i < n; i++) {
        split[dset_split(d, i)]++;
        caps += dset_caption_count(d, i);
    }
    printf("dataset %s: %lld images of %dx%d, %lld captions (%.2f per image)\n", pos[0], (long long)n,
           dset_image_size(d), dset_image_size(d), (long long)caps, n ? (double)caps / (double)n : 0.0);
    printf("  splits: train %lld, val %lld, test %lld\n", (long long)split[0], (long long)split[1],
           (long long)split[2]);
    for (int64_t i = 0; i < n && i < show; i++)
        for (int k = 0; k < dset_caption_count(d, i); k++) {
            size_t len;
            const char *c = dset_caption(d, i, k, &len);
            printf("  [%lld] %.*s\n", (long long)i, (int)len, c);
        }
    dset_close(d);
    return 0;
}

int cmd_data(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        const char *help;
    } SUB[] = {
        {"build", data_cmd_build, "image folder + caption file -> dataset, with the paper's filters"},
        {"info", data_cmd_info, "counts, splits and captions of a dataset file"},
        {"captions", data_cmd_captions, "every caption of datasets, one per line"},
        {"tokenize", data_cmd_tokenize, "dataset -> shards for the prior: captions by BPE, images by the dVAE"},
        {"shapes", data_cmd_shapes, "synthetic scenes of coloured shapes with captions (compositional test set)"},
        {"shapes-check", data_cmd_shapes_check, "parse images of shapes back and score them against captions"},
        {"emoji", data_cmd_emoji, "every emoji of emoji-test.txt rendered from Noto Color Emoji, CLDR captions"},
        {"clipart", data_cmd_clipart, "openclipart-svg rendered with librsvg, captions from titles and categories"},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: dalle data SUBCOMMAND [options]   (dalle data SUBCOMMAND --help for its options)\n\n");
        for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++) printf("  %-13s %s\n", SUB[i].name, SUB[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++)
        if (!strcmp(argv[1], SUB[i].name)) return SUB[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dalle: data: unknown subcommand '%s' (see dalle data --help)\n", argv[1]);
    return 2;
}
