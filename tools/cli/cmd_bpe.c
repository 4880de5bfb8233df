// cmd_bpe.c: `dalle bpe ...`, the text tokenizer.
//   dalle bpe train  --vocab N -o tokenizer.json CORPUS...
//   dalle bpe encode --tokenizer FILE [--special] [--layout L] [--dropout P --seed S] [FILE...]
//   dalle bpe decode --tokenizer FILE [FILE...]
//   dalle bpe info   --tokenizer FILE
// encode reads lines (files, or standard input) and writes one line of
// space-separated ids per input line; decode is its inverse.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/common.h"
#include "dalle/dalle.h"
#include "opts.h"

// Growable output text.
typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_reserve(sbuf *b, size_t more) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->n + more) cap *= 2;
    char *p = dalle_realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

// Reads every input (files, or stdin when there are none) into one buffer.
static char *read_inputs(char **paths, int n, size_t *len) {
    if (n == 0) {
        sbuf b = {0};
        for (;;) {
            if (sb_reserve(&b, 1 << 16)) return NULL;
            size_t got = fread(b.p + b.n, 1, b.cap - b.n - 1, stdin);
            b.n += got;
            if (got == 0) break;
        }
        b.p[b.n] = 0;
        *len = b.n;
        return b.p;
    }
    sbuf b = {0};
    for (int i = 0; i < n; i++) {
        size_t k;
        char *d = dalle_read_file(paths[i], &k);
        if (!d || sb_reserve(&b, k + 2)) {
            dalle_free(d);
            dalle_free(b.p);
            return NULL;
        }
        memcpy(b.p + b.n, d, k);
        b.n += k;
        if (k && d[k - 1] != '\n') b.p[b.n++] = '\n'; // files do not run into each other
        dalle_free(d);
    }
    if (sb_reserve(&b, 1)) return NULL;
    b.p[b.n] = 0;
    *len = b.n;
    return b.p;
}

// Writes the output to PATH atomically, or to stdout when PATH is NULL.
static int write_out(const char *path, const sbuf *b) {
    if (path) return dalle_write_file_atomic(path, b->p, b->n) == DALLE_OK ? 0 : cli_fail();
    if (fwrite(b->p, 1, b->n, stdout) != b->n || fflush(stdout)) {
        fprintf(stderr, "dalle: cannot write to standard output\n");
        return 1;
    }
    return 0;
}

static int bpe_cmd_train(int argc, char **argv) {
    bpe_train_opts o = bpe_train_default_opts();
    const char *out = NULL;
    opt_t opts[] = {
        {"--vocab", OPT_INT, &o.vocab_size, "vocabulary size V, the 256 bytes included (DALL-E: 16384)"},
        {"--min-count", OPT_INT, &o.min_count, "never merge a pair seen fewer times"},
        {"--out,-o", OPT_STR, &out, "output tokenizer.json (required)"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle bpe train --vocab N -o tokenizer.json CORPUS...", opts,
                         pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!out || npos == 0) {
        fprintf(stderr, "dalle: bpe train: needs -o FILE and at least one corpus file\n");
        return 2;
    }
    bpe_tokenizer *t = bpe_train((const char *const *)pos, npos, &o);
    if (!t) return cli_fail();
    int rc = bpe_save(t, out) == DALLE_OK ? 0 : cli_fail();
    if (!rc) dalle_log("bpe train: wrote %s (vocab %d)", out, bpe_vocab_size(t));
    bpe_free(t);
    return rc;
}

static int bpe_cmd_encode(int argc, char **argv) {
    const char *tok = NULL, *out = NULL;
    int special = 0, layout = 0;
    double dropout = 0;
    int64_t seed = 0;
    opt_t opts[] = {
        {"--tokenizer,-t", OPT_STR, &tok, "tokenizer.json, or CLIP's bpe_simple_vocab_16e6.txt(.gz) (required)"},
        {"--special", OPT_FLAG, &special, "add <|startoftext|> and <|endoftext|> (CLIP vocabularies)"},
        {"--layout", OPT_INT, &layout, "write DALL-E's text layout: exactly L ids per line, padding V+i (0: off)"},
        {"--dropout", OPT_DOUBLE, &dropout, "BPE dropout probability (training; DALL-E 0.1)"},
        {"--seed", OPT_I64, &seed, "dropout seed; line k (from 0) draws from stream (seed, k)"},
        {"--out,-o", OPT_STR, &out, "output file (default: standard output)"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle bpe encode --tokenizer FILE [options] [FILE...] (stdin if none)",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!tok) {
        fprintf(stderr, "dalle: bpe encode: needs --tokenizer FILE\n");
        return 2;
    }
    if (layout < 0 || layout > 1 << 20 || dropout < 0 || dropout > 1 || (special && layout)) {
        fprintf(stderr, "dalle: bpe encode: --layout must be in [0, 2^20], --dropout in [0, 1], "
                        "and --special does not go with --layout\n");
        return 2;
    }
    bpe_tokenizer *t = bpe_load(tok);
    if (!t) return cli_fail();
    int sot = bpe_special_id(t, "<|startoftext|>"), eot = bpe_special_id(t, "<|endoftext|>");
    if (special && (sot < 0 || eot < 0)) {
        fprintf(stderr, "dalle: bpe encode: %s has no <|startoftext|>/<|endoftext|> tokens\n", tok);
        bpe_free(t);
        return 2;
    }
    size_t len;
    char *in = read_inputs(pos, npos, &len);
    sbuf ob = {0};
    int64_t cap = 1 << 16;
    int32_t *ids = dalle_malloc(sizeof(int32_t) * (size_t)DALLE_MAX(cap, layout));
    int rc = 1;
    if (!in || !ids) goto fail;
    uint64_t line = 0;
    for (size_t a = 0; a < len; line++) {
        char *nl = memchr(in + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - in) : len;
        bpe_dropout dr = {(float)dropout, (uint64_t)seed, line};
        int64_t k;
        if (layout) {
            if (bpe_layout(t, in + a, b - a, &dr, layout, ids) < 0) goto fail;
            k = layout;
        } else {
            k = bpe_encode(t, in + a, b - a, &dr, ids, cap);
            if (k > cap) { // a long line: room for all of it, then again
                int32_t *p = dalle_realloc(ids, sizeof(int32_t) * (size_t)k);
                if (!p) goto fail;
                ids = p;
                cap = k;
                k = bpe_encode(t, in + a, b - a, &dr, ids, cap);
            }
            if (k < 0) goto fail;
        }
        if (sb_reserve(&ob, (size_t)(k + 2) * 12)) goto fail;
        if (special) ob.n += (size_t)sprintf(ob.p + ob.n, "%d ", sot);
        for (int64_t i = 0; i < k; i++) ob.n += (size_t)sprintf(ob.p + ob.n, "%d ", ids[i]);
        if (special) ob.n += (size_t)sprintf(ob.p + ob.n, "%d ", eot);
        if (ob.n && ob.p[ob.n - 1] == ' ') ob.n--;
        ob.p[ob.n++] = '\n';
        a = b + 1;
    }
    rc = write_out(out, &ob);
    goto done;
fail:
    rc = cli_fail();
done:
    dalle_free(in);
    dalle_free(ids);
    dalle_free(ob.p);
    bpe_free(t);
    return rc;
}

static int bpe_cmd_decode(int argc, char **argv) {
    const char *tok = NULL, *out = NULL;
    int layout = 256;
    opt_t opts[] = {
        {"--tokenizer,-t", OPT_STR, &tok, "tokenizer.json, or CLIP's bpe_simple_vocab_16e6.txt(.gz) (required)"},
        {"--layout", OPT_INT, &layout, "ids V .. V+L-1 are DALL-E's padding and are dropped"},
        {"--out,-o", OPT_STR, &out, "output file (default: standard output)"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle bpe decode --tokenizer FILE [FILE...] (stdin if none)", opts,
                         pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!tok || layout < 0) {
        fprintf(stderr, "dalle: bpe decode: needs --tokenizer FILE (and --layout >= 0)\n");
        return 2;
    }
    bpe_tokenizer *t = bpe_load(tok);
    if (!t) return cli_fail();
    const char *name = npos ? pos[0] : "<stdin>";
    size_t len;
    char *in = read_inputs(pos, npos, &len);
    sbuf ob = {0};
    int32_t *ids = NULL;
    size_t idcap = 0;
    int rc = 1, V = bpe_vocab_size(t);
    if (!in) goto fail;
    uint64_t line = 1;
    for (size_t a = 0; a < len; line++) {
        char *nl = memchr(in + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - in) : len;
        size_t n = 0;
        for (size_t i = a; i < b;) {
            while (i < b && (in[i] == ' ' || in[i] == '\t' || in[i] == '\r')) i++;
            if (i == b) break;
            char *end;
            long v = strtol(in + i, &end, 10);
            if (end == in + i || (size_t)(end - in) > b || (end < in + b && *end != ' ' && *end != '\t' && *end != '\r') ||
                v < 0 || v >= (long)V + layout) {
                dalle_seterr("%s: line %llu: \"%.*s\" is not an id in [0, %d)", name, (unsigned long long)line,
                             (int)DALLE_MIN((size_t)(end > in + i ? end - (in + i) : 1), 20), in + i, V + layout);
                goto fail;
            }
            i = (size_t)(end - in);
            if (v >= V) continue; // padding
            if (n == idcap) {
                idcap = idcap ? 2 * idcap : 1024;
                int32_t *p = dalle_realloc(ids, idcap * sizeof(int32_t));
                if (!p) goto fail;
                ids = p;
            }
            ids[n++] = (int32_t)v;
        }
        int64_t k = bpe_decode(t, ids, (int64_t)n, NULL, 0);
        if (k < 0) {
            dalle_errprefix("%s: line %llu", name, (unsigned long long)line);
            goto fail;
        }
        if (sb_reserve(&ob, (size_t)k + 1)) goto fail;
        bpe_decode(t, ids, (int64_t)n, ob.p + ob.n, k);
        ob.n += (size_t)k;
        ob.p[ob.n++] = '\n';
        a = b + 1;
    }
    rc = write_out(out, &ob);
    goto done;
fail:
    rc = cli_fail();
done:
    dalle_free(in);
    dalle_free(ids);
    dalle_free(ob.p);
    bpe_free(t);
    return rc;
}

static int bpe_cmd_info(int argc, char **argv) {
    const char *tok = NULL;
    opt_t opts[] = {{"--tokenizer,-t", OPT_STR, &tok, "tokenizer file (required)"}, {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle bpe info --tokenizer FILE", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!tok) {
        fprintf(stderr, "dalle: bpe info: needs --tokenizer FILE\n");
        return 2;
    }
    bpe_tokenizer *t = bpe_load(tok);
    if (!t) return cli_fail();
    printf("tokenizer  %s\nkind       %s\nvocab      %d\nmerges     %d\n", tok, bpe_kind(t), bpe_vocab_size(t),
           bpe_merge_count(t));
    static const char *sp[] = {"<|startoftext|>", "<|endoftext|>"};
    for (int i = 0; i < 2; i++)
        if (bpe_special_id(t, sp[i]) >= 0) printf("special    %s = %d\n", sp[i], bpe_special_id(t, sp[i]));
    printf("layout     %d text positions -> padding ids %d .. %d\n", 256, bpe_vocab_size(t),
           bpe_vocab_size(t) + 255);
    bpe_free(t);
    return 0;
}

int cmd_bpe(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        const char *help;
    } SUB[] = {
        {"train", bpe_cmd_train, "learn a byte-level BPE vocabulary from text files (tokenizer.json)"},
        {"encode", bpe_cmd_encode, "text lines -> lines of ids (optionally DALL-E's 256-id layout)"},
        {"decode", bpe_cmd_decode, "lines of ids -> text lines"},
        {"info", bpe_cmd_info, "kind, vocabulary size and special tokens of a tokenizer"},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: dalle bpe SUBCOMMAND [options]   (dalle bpe SUBCOMMAND --help for its options)\n\n");
        for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++) printf("  %-8s %s\n", SUB[i].name, SUB[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++)
        if (!strcmp(argv[1], SUB[i].name)) return SUB[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dalle: bpe: unknown subcommand '%s' (see dalle bpe --help)\n", argv[1]);
    return 2;
}
