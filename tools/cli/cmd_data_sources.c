// cmd_data_sources.c: `dalle data emoji` and `dalle data clipart`, the
// built-in datasets made offline from Debian packages (src/data/sources.h).
//   dalle data emoji   [--size S] (--out FILE.dset | --png DIR) [--limit N] [--match TEXT] [...]
//   dalle data clipart [--size S] (--out FILE.dset | --png DIR) [--limit N] [--match TEXT] [--root DIR]
// Both print a progress line and a final report (items, captions, skipped by
// reason); --verbose adds a line per skipped item.
#include <stdio.h>

#include "cli.h"
#include "core/common.h"
#include "data/sources.h"
#include "opts.h"

static void print_report(const char *what, const source_report *r) {
    int64_t skipped = 0;
    for (int k = 1; k < SOURCE_SKIP_N; k++) skipped += r->skipped[k];
    dalle_log("%s: %lld items (%lld validation), %lld captions (%.2f per item) from %lld inputs in %.1f s",
              what, (long long)r->items, (long long)r->val, (long long)r->captions,
              r->items ? (double)r->captions / (double)r->items : 0.0, (long long)r->inputs, r->seconds);
    char line[512];
    int n = snprintf(line, sizeof line, "%s: skipped %lld", what, (long long)skipped);
    for (int k = 1, first = 1; k < SOURCE_SKIP_N; k++)
        if (r->skipped[k] && n < (int)sizeof line) {
            n += snprintf(line + n, sizeof line - (size_t)n, "%s%s %lld", first ? " (" : ", ", source_skip_name(k),
                          (long long)r->skipped[k]);
            first = 0;
        }
    dalle_log("%s%s", line, skipped ? ")" : "");
}

static int check_out(const char *cmd, const char *out, const char *png, int size, int64_t limit) {
    if (!out && !png) {
        fprintf(stderr, "dalle: data %s: needs --out FILE.dset and/or --png DIR\n", cmd);
        return 2;
    }
    if (size < 1 || size > 4096 || limit < 0) {
        fprintf(stderr, "dalle: data %s: --size must be in 1..4096 and --limit >= 0\n", cmd);
        return 2;
    }
    return 0;
}

int data_cmd_emoji(int argc, char **argv) {
    emoji_opts o = emoji_default_opts();
    opt_t opts[] = {
        {"--size", OPT_INT, &o.size, "image side S in pixels"},
        {"--out,-o", OPT_STR, &o.out, "write a dataset file (.dset)"},
        {"--png", OPT_STR, &o.png_dir, "write into this folder NNNNN.png and captions.tsv (file<TAB>caption rows)"},
        {"--limit", OPT_I64, &o.limit, "only the first N emoji (0: all, about 3,600)"},
        {"--match", OPT_STR, &o.match, "only emoji whose name contains this (any case), e.g. \"flag: \""},
        {"--font", OPT_STR, &o.font, "the colour bitmap font (package fonts-noto-color-emoji)"},
        {"--emoji-test", OPT_STR, &o.emoji_test, "emoji-test.txt (package unicode-data)"},
        {"--cldr", OPT_STR, &o.cldr, "CLDR common/ folder with annotations/en.xml (package unicode-cldr-core)"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle data emoji (--out FILE.dset | --png DIR) [options]", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos) {
        fprintf(stderr, "dalle: data emoji: unexpected argument '%s'\n", pos[0]);
        return 2;
    }
    int rc = check_out("emoji", o.out, o.png_dir, o.size, o.limit);
    if (rc) return rc;
    source_report rep;
    if (emoji_build(&o, &rep)) return cli_fail();
    print_report("emoji", &rep);
    return 0;
}

int data_cmd_clipart(int argc, char **argv) {
    clipart_opts o = clipart_default_opts();
    opt_t opts[] = {
        {"--size", OPT_INT, &o.size, "image side S in pixels"},
        {"--out,-o", OPT_STR, &o.out, "write a dataset file (.dset)"},
        {"--png", OPT_STR, &o.png_dir, "write into this folder NNNNN.png and captions.tsv (file<TAB>caption rows)"},
        {"--limit", OPT_I64, &o.limit, "only the first N files in path order (0: all, about 8,100)"},
        {"--match", OPT_STR, &o.match, "only files whose path under --root contains this, e.g. \"animals/\""},
        {"--root", OPT_STR, &o.root, "folder of .svg files, read recursively (package openclipart-svg)"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle data clipart (--out FILE.dset | --png DIR) [options]", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos) {
        fprintf(stderr, "dalle: data clipart: unexpected argument '%s'\n", pos[0]);
        return 2;
    }
    int rc = check_out("clipart", o.out, o.png_dir, o.size, o.limit);
    if (rc) return rc;
    source_report rep;
    if (clipart_build(&o, &rep)) return cli_fail();
    print_report("clipart", &rep);
    return 0;
}
