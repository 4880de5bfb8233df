// cmd_generate.c: `dalle generate`: captions -> a PNG grid (one row per
// caption, one column per candidate) and, with --each, one PNG per image.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/common.h"
#include "core/image.h"
#include "dalle/dalle.h"
#include "opts.h"

enum { GAP = 2, MAX_PROMPTS = 4096 };

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *each = NULL, *prompts = NULL;
    dalle_gen_params p = dalle_gen_default_params();
    int64_t seed = 0;
    double temperature = 1, top_p = 1, guidance = NAN; // NaN: the model's
    p.n = 4;
    opt_t opts[] = {
        {"--model,-m", OPT_STR, &model, "model directory (config.json, tokenizer.json, dvae.safetensors, prior.safetensors)"},
        {"-n", OPT_INT, &p.n, "images per caption"},
        {"--candidates", OPT_INT, &p.candidates, "draw this many, keep the n best by the reranker's score, best "
                                                 "first (needs the model's clip.safetensors; 0: no reranking)"},
        {"--seed", OPT_I64, &seed, "candidate c of every caption draws from (seed, c, position)"},
        {"--temperature", OPT_DOUBLE, &temperature, "divide the logits by this"},
        {"--top-k", OPT_INT, &p.top_k, "keep the k most likely codes (0: all)"},
        {"--top-p", OPT_DOUBLE, &top_p, "keep the most likely codes up to this mass (1: all)"},
        {"--guidance", OPT_DOUBLE, &guidance, "classifier-free guidance scale against the empty caption (not in "
                                              "the paper; 1: off, costs twice the sampling; default: the model's "
                                              "config.json \"sampling\", else 1)"},
        {"--prompts", OPT_STR, &prompts, "captions from a file, one per line (besides those on the command line)"},
        {"--out,-o", OPT_STR, &out, "the grid PNG: a row per caption, a column per image"},
        {"--each", OPT_STR, &each, "also write every image as DIR/P-C.png (caption P, image C, from 0: with "
                                   "--candidates, C is the rank)"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle generate --model DIR [options] -o grid.png \"caption\" ...", opts, pos,
                         &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!model || (!out && !each) || (npos == 0 && !prompts)) {
        fprintf(stderr, "dalle: generate: needs --model, -o or --each, and a caption (or --prompts FILE)\n");
        return 2;
    }
    if (p.n < 1 || p.n > 4096 || p.candidates < 0 || p.candidates > 4096) {
        fprintf(stderr, "dalle: generate: -n %d or --candidates %d is outside [1, 4096] / [0, 4096]\n", p.n,
                p.candidates);
        return 2;
    }
    p.seed = (uint64_t)seed, p.temperature = (float)temperature, p.top_p = (float)top_p, p.progress = 1;
    // The captions: the command line's, then the file's lines.
    const char *caps[MAX_PROMPTS];
    int nc = 0;
    for (int i = 0; i < npos && nc < MAX_PROMPTS; i++) caps[nc++] = pos[i];
    char *file = NULL;
    if (prompts) {
        size_t len;
        if (!(file = dalle_read_file(prompts, &len))) return cli_fail();
        for (char *s = file; *s && nc < MAX_PROMPTS;) {
            char *e = strchr(s, '\n');
            if (e) *e = 0;
            if (*s) caps[nc++] = s;
            if (!e) break;
            s = e + 1;
        }
    }
    dalle_model *m = dalle_model_load(model);
    if (!m || (p.candidates > p.n && !dalle_model_can_rerank(m))) {
        if (m) dalle_seterr("--candidates %d: %s has no reranker (clip.safetensors; dalle clip train makes one)",
                            p.candidates, model);
        dalle_model_free(m);
        dalle_free(file);
        return cli_fail();
    }
    p.guidance = isnan(guidance) ? dalle_model_guidance(m) : (float)guidance;
    int S = dalle_model_image_size(m), rc = 1;
    size_t per = (size_t)S * S * 3;
    uint8_t *px = dalle_malloc(per * (size_t)p.n);
    image_t grid = {0};
    if (!px) goto fail;
    if (out && image_alloc(&grid, p.n * S + (p.n - 1) * GAP, nc * S + (nc - 1) * GAP)) goto fail;
    if (grid.data) memset(grid.data, 255, (size_t)grid.w * grid.h * 3);
    if (each) mkdir(each, 0755);
    for (int c = 0; c < nc; c++) {
        fprintf(stderr, "dalle: generate: [%d/%d] %s\n", c + 1, nc, caps[c]);
        if (dalle_generate(m, caps[c], &p, px)) goto fail;
        for (int k = 0; k < p.n; k++) {
            const uint8_t *src = px + per * (size_t)k;
            if (grid.data)
                for (int y = 0; y < S; y++)
                    memcpy(grid.data + ((size_t)(c * (S + GAP) + y) * grid.w + (size_t)k * (S + GAP)) * 3,
                           src + (size_t)y * S * 3, (size_t)S * 3);
            if (each) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%d-%d.png", each, c, k);
                image_t one = {S, S, (uint8_t *)src};
                if (image_save_png(path, &one)) goto fail;
            }
        }
    }
    if (out && image_save_png(out, &grid)) goto fail;
    if (out) fprintf(stderr, "dalle: generate: wrote %s (%d x %d images of %dx%d)\n", out, nc, p.n, S, S);
    rc = 0;
    goto done;
fail:
    rc = cli_fail();
done:
    image_free(&grid);
    dalle_free(px);
    dalle_free(file);
    dalle_model_free(m);
    return rc;
}
