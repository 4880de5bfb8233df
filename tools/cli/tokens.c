// tokens.c: reading the tokens that several subcommands take on the command
// line or from a file: a caption's text ids (cli_caption_ids) and grids of
// image codes (cli_parse_grids); see cli.h.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/common.h"
#include "dalle/dalle.h"

int cli_caption_ids(const char *cmd, const char *tok, const char *caption, const char *ids, const char *model, int Vt,
                    int L, int32_t *text) {
    if (caption) {
        bpe_tokenizer *t = bpe_load(tok);
        if (!t) return DALLE_ERR;
        if (bpe_vocab_size(t) != Vt) {
            dalle_seterr("%s has %d tokens, the model %s expects %d", tok, bpe_vocab_size(t), model, Vt);
            bpe_free(t);
            return DALLE_ERR;
        }
        int64_t total = bpe_encode(t, caption, strlen(caption), NULL, NULL, 0);
        int k = bpe_layout(t, caption, strlen(caption), NULL, L, text);
        bpe_free(t);
        if (k < 0) return DALLE_ERR;
        if (total > L)
            fprintf(stderr, "dalle: %s: note: the caption has %lld tokens; the first %d are used\n", cmd,
                    (long long)total, L);
        return DALLE_OK;
    }
    int k = 0;
    char *p = (char *)ids, *end;
    for (;;) {
        while (*p == ' ') p++;
        if (!*p) break;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= (long)Vt + L)
            return dalle_seterr("--ids: '%.20s' is not a text id in [0, %d)", p, Vt + L);
        if (k < L) text[k] = (int32_t)v;
        k++;
        p = end;
    }
    if (k > L) fprintf(stderr, "dalle: %s: note: %d ids given; the first %d are used\n", cmd, k, L);
    for (int i = k; i < L; i++) text[i] = Vt + i;
    return DALLE_OK;
}

int cli_parse_grids(const char *path, const char *text, int G, int V, int32_t **codes, int *n_grids) {
    size_t cap = 16, n = 0; // grids
    int32_t *buf = dalle_malloc(sizeof(int32_t) * cap * G * G);
    int row = 0, line_no = 0;
    if (!buf) return DALLE_ERR;
    const char *p = text;
    while (*p) {
        line_no++;
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == eol) { // blank line: ends a grid
            if (row != 0) goto short_grid;
        } else {
            if (row == 0 && n == cap) {
                cap *= 2;
                int32_t *nb = dalle_realloc(buf, sizeof(int32_t) * cap * G * G);
                if (!nb) goto fail;
                buf = nb;
            }
            int col = 0;
            while (q < eol) {
                char *end;
                errno = 0;
                long v = strtol(q, &end, 10);
                if (end == q || errno || (end < eol && *end != ' ' && *end != '\t' && *end != '\r')) {
                    dalle_seterr("%s:%d: not an integer: '%.*s'", path, line_no, (int)DALLE_MIN(eol - q, 20), q);
                    goto fail;
                }
                if (v < 0 || v >= V) {
                    dalle_seterr("%s:%d: code %ld is outside the codebook [0, %d)", path, line_no, v, V);
                    goto fail;
                }
                if (col == G) {
                    dalle_seterr("%s:%d: more than %d codes on a row (the model's grid is %dx%d)", path, line_no, G, G, G);
                    goto fail;
                }
                buf[n * G * G + (size_t)row * G + col++] = (int32_t)v;
                q = end;
                while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
            }
            if (col != G) {
                dalle_seterr("%s:%d: %d codes on a row, expected %d (the model's grid is %dx%d)", path, line_no, col, G, G, G);
                goto fail;
            }
            if (++row == G) { row = 0; n++; }
        }
        p = *eol ? eol + 1 : eol;
    }
    if (row != 0) goto short_grid;
    if (n == 0) {
        dalle_seterr("%s: no token grid in the file", path);
        goto fail;
    }
    *codes = buf;
    *n_grids = (int)n;
    return DALLE_OK;
short_grid:
    dalle_seterr("%s:%d: grid %zu has %d rows, expected %d", path, line_no, n + 1, row, G);
fail:
    dalle_free(buf);
    return DALLE_ERR;
}
