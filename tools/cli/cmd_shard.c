// cmd_shard.c: `dalle shard ...`, the pre-tokenized training shards the prior
// trains on (format: src/data/shard.h, docs/data.md).
//   dalle shard pack --text-len L --grid G --text-vocab Vt --image-vocab Vi
//                    --text IDS.txt --image CODES.txt -o out.dshard
//   dalle shard info FILE
//   dalle shard dump FILE [--record i]
// pack reads text ids as `dalle bpe encode --layout L` writes them (one line
// of exactly L ids per record) and image codes as `dalle dvae encode` writes
// them (per record G lines of G codes, a blank line between records) or one
// line of all N = G*G codes per record; record k of one file goes with record
// k of the other.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/common.h"
#include "data/shard.h"
#include "opts.h"

// ---------------------------------------------------------------- parsing text

// A growable array of ids.
typedef struct {
    int32_t *p;
    int64_t n, cap;
} ivec;

static int iv_reserve(ivec *v, int64_t more) {
    if (v->n + more <= v->cap) return DALLE_OK;
    int64_t cap = v->cap ? v->cap : 1 << 12;
    while (cap < v->n + more) cap *= 2;
    int32_t *p = dalle_realloc(v->p, sizeof(int32_t) * (size_t)cap);
    if (!p) return DALLE_ERR;
    v->p = p;
    v->cap = cap;
    return DALLE_OK;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// The number of whitespace-separated tokens in [p, eol).
static int64_t count_tokens(const char *p, const char *eol) {
    int64_t n = 0;
    while (p < eol) {
        while (p < eol && is_space(*p)) p++;
        if (p == eol) break;
        n++;
        while (p < eol && !is_space(*p)) p++;
    }
    return n;
}

// Parses the tokens of [p, eol) into out[0..) as integers in [0, limit).
// Errors name PATH, the line, the position and the token.
static int parse_tokens(const char *path, int64_t line, const char *p, const char *eol, int32_t *out,
                        int64_t limit, const char *what) {
    for (int64_t k = 0;; k++) {
        while (p < eol && is_space(*p)) p++;
        if (p == eol) return DALLE_OK;
        const char *tok = p;
        int64_t v = 0;
        int ok = 1;
        for (; p < eol && !is_space(*p); p++) {
            if (*p < '0' || *p > '9' || p - tok >= 10) ok = 0;
            else v = v * 10 + (*p - '0');
        }
        if (!ok || v >= limit)
            return dalle_seterr("%s: line %" PRId64 ": \"%.*s\" (position %" PRId64 ") is not %s in [0, %" PRId64 ")",
                                path, line, (int)DALLE_MIN(p - tok, 24), tok, k, what, limit);
        out[k] = (int32_t)v;
    }
}

// Text ids: one line of exactly L ids in [0, Vt + L) per record.
static int read_text(const char *path, int L, int64_t limit, ivec *ids, int64_t *n_rec) {
    size_t len;
    char *s = dalle_read_file(path, &len);
    if (!s) return DALLE_ERR;
    int rc = DALLE_ERR;
    int64_t line = 1;
    for (size_t a = 0; a < len; line++) {
        const char *nl = memchr(s + a, '\n', len - a), *eol = nl ? nl : s + len;
        int64_t k = count_tokens(s + a, eol);
        if (k != L) {
            dalle_seterr("%s: line %" PRId64 ": %" PRId64 " ids, expected %d (--text-len)", path, line, k, L);
            goto done;
        }
        if (iv_reserve(ids, L) || parse_tokens(path, line, s + a, eol, ids->p + ids->n, limit, "a text id"))
            goto done;
        ids->n += L;
        a = (size_t)(eol - s) + 1;
    }
    if (ids->n == 0) {
        dalle_seterr("%s: no records (the file is empty)", path);
        goto done;
    }
    *n_rec = ids->n / L;
    rc = DALLE_OK;
done:
    dalle_free(s);
    return rc;
}

// Image codes in [0, Vi), per record either one line of N = G*G codes or G
// lines of G codes (a grid, as `dalle dvae encode` writes it); blank lines
// may stand between records, not inside a grid.
static int read_codes(const char *path, int G, int64_t Vi, ivec *codes, int64_t *n_rec) {
    size_t len;
    char *s = dalle_read_file(path, &len);
    if (!s) return DALLE_ERR;
    const int64_t N = (int64_t)G * G;
    int rc = DALLE_ERR, row = 0; // rows of the grid being read
    int64_t line = 1;
    for (size_t a = 0; a < len; line++) {
        const char *nl = memchr(s + a, '\n', len - a), *eol = nl ? nl : s + len;
        int64_t k = count_tokens(s + a, eol), rec = codes->n / N;
        if (k == 0 && row) {
            dalle_seterr("%s: line %" PRId64 ": blank line inside the grid of record %" PRId64
                         " (after %d of %d rows)",
                         path, line, rec, row, G);
            goto done;
        }
        if (k && !(row == 0 && k == N) && k != G) {
            dalle_seterr("%s: line %" PRId64 ": %" PRId64 " codes, expected %" PRId64
                         " (a record) or %d (a row of the %dx%d grid)",
                         path, line, k, N, G, G, G);
            goto done;
        }
        if (k) {
            if (iv_reserve(codes, k) ||
                parse_tokens(path, line, s + a, eol, codes->p + codes->n, Vi, "an image code"))
                goto done;
            codes->n += k;
            row = (int)(codes->n % N / G);
        }
        a = (size_t)(eol - s) + 1;
    }
    if (row) {
        dalle_seterr("%s: line %" PRId64 ": the file ends inside the grid of record %" PRId64 " (after %d of %d rows)",
                     path, line - 1, codes->n / N, row, G);
        goto done;
    }
    if (codes->n == 0) {
        dalle_seterr("%s: no records (the file holds no codes)", path);
        goto done;
    }
    *n_rec = codes->n / N;
    rc = DALLE_OK;
done:
    dalle_free(s);
    return rc;
}

// ---------------------------------------------------------------- subcommands

static int shard_cmd_pack(int argc, char **argv) {
    int L = 0, G = 0, Vt = 0, Vi = 0;
    const char *text = NULL, *image = NULL, *out = NULL;
    opt_t opts[] = {
        {"--text-len", OPT_INT, &L, "text positions L per record (required; DALL-E: 256)"},
        {"--grid", OPT_INT, &G, "image grid side G; N = G*G codes per record (required; DALL-E: 32)"},
        {"--text-vocab", OPT_INT, &Vt, "BPE vocabulary Vt; text ids are < Vt + L (required; DALL-E: 16384)"},
        {"--image-vocab", OPT_INT, &Vi, "dVAE codebook size Vi (required; DALL-E: 8192)"},
        {"--text", OPT_STR, &text, "text ids: one line of L ids per record (dalle bpe encode --layout L; required)"},
        {"--image", OPT_STR, &image,
         "image codes: G lines of G per record (dalle dvae encode) or one line of N (required)"},
        {"--out,-o", OPT_STR, &out, "output shard (required)"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv,
                         "usage: dalle shard pack --text-len L --grid G --text-vocab Vt --image-vocab Vi\n"
                         "                        --text IDS.txt --image CODES.txt -o out.dshard",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!text || !image || !out || npos) {
        fprintf(stderr, "dalle: shard pack: needs --text FILE, --image FILE and -o FILE (and nothing else)\n");
        return 2;
    }
    if (L <= 0 || G <= 0 || G > 46340 || Vt <= 0 || Vi <= 0 || (int64_t)Vt + L > INT32_MAX) {
        fprintf(stderr, "dalle: shard pack: --text-len, --grid (at most 46340), --text-vocab and --image-vocab must "
                        "be positive, and text-vocab + text-len at most 2^31 - 1\n");
        return 2;
    }
    ivec t = {0}, c = {0};
    int64_t nt = 0, nc = 0;
    int rc = 1;
    if (read_text(text, L, (int64_t)Vt + L, &t, &nt) || read_codes(image, G, Vi, &c, &nc)) goto fail;
    if (nt != nc) {
        dalle_seterr("%s has %" PRId64 " records but %s has %" PRId64 " (record k of one goes with record k of the "
                     "other)",
                     text, nt, image, nc);
        goto fail;
    }
    shard_info info = {.text_len = L, .n_image = G * G, .grid = G, .text_vocab = Vt, .image_vocab = Vi};
    if (shard_write(out, &info, t.p, c.p, nt)) goto fail;
    dalle_log("shard pack: wrote %s (%" PRId64 " records)", out, nt);
    rc = 0;
    goto done;
fail:
    rc = cli_fail();
done:
    dalle_free(t.p);
    dalle_free(c.p);
    return rc;
}

// Opens the one FILE argument of info and dump.
static shard *open_arg(const char *usage, const opt_t *opts, int argc, char **argv, int *rc) {
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, usage, opts, pos, &npos);
    if (prc) {
        *rc = prc == 1 ? 0 : 2;
        return NULL;
    }
    if (npos != 1) {
        fprintf(stderr, "dalle: shard %s: needs exactly one shard file\n", argv[0]);
        *rc = 2;
        return NULL;
    }
    shard *s = shard_open(pos[0]);
    if (!s) *rc = cli_fail();
    return s;
}

static int shard_cmd_info(int argc, char **argv) {
    opt_t opts[] = {{NULL, 0, NULL, NULL}};
    int rc = 0;
    shard *s = open_arg("usage: dalle shard info FILE", opts, argc, argv, &rc);
    if (!s) return rc;
    const shard_info *in = shard_get_info(s);
    int64_t bytes = SHARD_HEADER_BYTES + in->n_records * (in->text_len + in->n_image) * shard_id_bytes(s);
    printf("shard        %s\nversion      %d\ntext_len     %d\ngrid         %d (n_image %d)\n"
           "text_vocab   %d (text ids < %d)\nimage_vocab  %d\nid_bytes     %d\nrecords      %" PRId64 "\n"
           "size         %" PRId64 " bytes\n",
           shard_path(s), SHARD_VERSION, in->text_len, in->grid, in->n_image, in->text_vocab,
           in->text_vocab + in->text_len, in->image_vocab, shard_id_bytes(s), in->n_records, bytes);
    shard_close(s);
    return 0;
}

// Appends ids as one line of space-separated integers.
static void put_line(FILE *f, const int32_t *ids, int n) {
    for (int k = 0; k < n; k++) fprintf(f, k ? " %d" : "%d", ids[k]);
    fputc('\n', f);
}

static int shard_cmd_dump(int argc, char **argv) {
    int64_t rec = -1;
    opt_t opts[] = {{"--record", OPT_I64, &rec, "print only record i (from 0; -1: every record)"},
                    {NULL, 0, NULL, NULL}};
    int rc = 0;
    shard *s = open_arg("usage: dalle shard dump FILE [--record i]\n"
                        "Prints each record as two lines: its L text ids, then its N image codes (raster order).",
                        opts, argc, argv, &rc);
    if (!s) return rc;
    const shard_info *in = shard_get_info(s);
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)in->text_len);
    int32_t *image = dalle_malloc(sizeof(int32_t) * (size_t)in->n_image);
    if (!text || !image) {
        rc = cli_fail();
    } else if (rec < -1 || rec >= in->n_records) {
        dalle_seterr("%s: --record %" PRId64 " is not a record (the shard has %" PRId64 ", from 0)", shard_path(s),
                     rec, in->n_records);
        rc = cli_fail();
    } else {
        int64_t a = rec < 0 ? 0 : rec, b = rec < 0 ? in->n_records : rec + 1;
        for (int64_t i = a; i < b; i++) {
            shard_read(s, i, text, image);
            put_line(stdout, text, in->text_len);
            put_line(stdout, image, in->n_image);
        }
        if (fflush(stdout) || ferror(stdout)) {
            fprintf(stderr, "dalle: cannot write to standard output\n");
            rc = 1;
        }
    }
    dalle_free(text);
    dalle_free(image);
    shard_close(s);
    return rc;
}

int cmd_shard(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        const char *help;
    } SUB[] = {
        {"pack", shard_cmd_pack, "text ids + image codes (text files) -> one shard"},
        {"info", shard_cmd_info, "the header and record count of a shard (validates all of it)"},
        {"dump", shard_cmd_dump, "print records as text: a line of text ids, a line of image codes"},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: dalle shard SUBCOMMAND [options]   (dalle shard SUBCOMMAND --help for its options)\n\n");
        for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++) printf("  %-8s %s\n", SUB[i].name, SUB[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++)
        if (!strcmp(argv[1], SUB[i].name)) return SUB[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dalle: shard: unknown subcommand '%s' (see dalle shard --help)\n", argv[1]);
    return 2;
}
