// generate.c: the model directory and caption -> images (dalle/generate.h):
// tokenizer -> text layout -> prior sampling (KV cache) -> [reranking of the
// candidates' codes by the contrastive model] -> dVAE decode.
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clip/clip.h"
#include "core/common.h"
#include "core/image.h"
#include "dalle/dalle.h"
#include "dalle/generate.h"
#include "prior/sample.h"

enum { MAX_IMAGES = 4096, RERANK_CHUNK = 32 }; // images embedded by the reranker at once

struct dalle_model {
    char *dir;
    bpe_tokenizer *tok;
    dvae_model *dvae;
    prior_model *prior;
    clip_model *clip; // the reranker, or NULL
    int L, S, G;
    float guidance; // the recommended guidance scale (config.json "sampling"), 1 if none
};

dalle_gen_params dalle_gen_default_params(void) {
    return (dalle_gen_params){.n = 1, .candidates = 0, .seed = 0, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f,
                              .guidance = 1.0f};
}

void dalle_model_free(dalle_model *m) {
    if (!m) return;
    bpe_free(m->tok);
    dvae_free(m->dvae);
    prior_free(m->prior);
    clip_free(m->clip);
    dalle_free(m->dir);
    dalle_free(m);
}

// Reads DIR/config.json: the format and version, and the recommended
// sampling settings ("sampling": {"guidance": S}, optional) into m.
static int read_config(dalle_model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t n;
    char *text = dalle_read_file(path, &n);
    if (!text) return DALLE_ERR;
    cJSON *j = cJSON_ParseWithLength(text, n);
    dalle_free(text);
    const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "format") : NULL;
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "version") : NULL;
    const cJSON *smp = j ? cJSON_GetObjectItemCaseSensitive(j, "sampling") : NULL;
    const cJSON *g = cJSON_IsObject(smp) ? cJSON_GetObjectItemCaseSensitive(smp, "guidance") : NULL;
    int rc = DALLE_OK;
    m->guidance = 1.0f;
    if (!cJSON_IsObject(j)) rc = dalle_seterr("%s: not a JSON object", path);
    else if (!cJSON_IsString(f) || strcmp(f->valuestring, "dalle.c model"))
        rc = dalle_seterr("%s: \"format\" must be \"dalle.c model\"", path);
    else if (!cJSON_IsNumber(v) || v->valuedouble != 1)
        rc = dalle_seterr("%s: \"version\" %g is not one this build reads (1)", path, cJSON_IsNumber(v) ? v->valuedouble : -1);
    else if (smp && (!cJSON_IsObject(smp) || (g && (!cJSON_IsNumber(g) || !(g->valuedouble >= 0 && g->valuedouble <= 100)))))
        rc = dalle_seterr("%s: \"sampling\" must be an object whose \"guidance\" is a number in [0, 100]", path);
    else if (g)
        m->guidance = (float)g->valuedouble;
    cJSON_Delete(j);
    return rc;
}

dalle_model *dalle_model_load(const char *dir) {
    dalle_model *m = dalle_calloc(1, sizeof *m);
    if (!m || !(m->dir = dalle_strdup(dir))) {
        dalle_free(m);
        return NULL;
    }
    char path[4096];
    if (read_config(m, dir)) goto fail;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (!(m->tok = bpe_load(path))) goto fail;
    snprintf(path, sizeof path, "%s/dvae.safetensors", dir);
    if (!(m->dvae = dvae_load(path, 1))) goto fail;
    snprintf(path, sizeof path, "%s/prior.safetensors", dir);
    if (!(m->prior = prior_load(path, 1))) goto fail;
    const prior_config *pc = prior_get_config(m->prior);
    const dvae_config *dc = dvae_get_config(m->dvae);
    if (pc->text_vocab != bpe_vocab_size(m->tok)) {
        dalle_seterr("%s: the prior was trained on a text vocabulary of %d, tokenizer.json has %d", dir, pc->text_vocab,
                     bpe_vocab_size(m->tok));
        goto fail;
    }
    if (pc->grid != dvae_grid(dc) || pc->image_vocab != dc->vocab_size) {
        dalle_seterr("%s: the prior expects %dx%d image codes from a codebook of %d; the dVAE makes %dx%d of %d", dir,
                     pc->grid, pc->grid, pc->image_vocab, dvae_grid(dc), dvae_grid(dc), dc->vocab_size);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/clip.safetensors", dir);
    if (access(path, F_OK) == 0) {
        if (!(m->clip = clip_load(path))) goto fail;
        const clip_config *cc = clip_get_config(m->clip);
        if (cc->text_len != pc->text_len || cc->text_vocab != pc->text_vocab || cc->grid != pc->grid ||
            cc->image_vocab != pc->image_vocab) {
            dalle_seterr("%s: the reranker reads %d text ids of a vocabulary of %d and %dx%d image codes of %d; the "
                         "prior's are %d of %d and %dx%d of %d", path, cc->text_len, cc->text_vocab, cc->grid,
                         cc->grid, cc->image_vocab, pc->text_len, pc->text_vocab, pc->grid, pc->grid, pc->image_vocab);
            goto fail;
        }
    }
    m->L = pc->text_len;
    m->G = pc->grid;
    m->S = dc->image_size;
    return m;
fail:
    dalle_model_free(m);
    return NULL;
}

int dalle_model_image_size(const dalle_model *m) { return m->S; }

int dalle_model_can_rerank(const dalle_model *m) { return m->clip != NULL; }

float dalle_model_guidance(const dalle_model *m) { return m->guidance; }

typedef struct {
    float score;
    int index;
} ranked;

static int by_score(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

// The K candidates' codes (K, N) ranked by their cosine with the caption text
// (L) under the reranker, best first, into order (K).
static int rerank(clip_model *c, const int32_t *text, const int32_t *codes, int K, int N, ranked *order) {
    const int E = clip_get_config(c)->embed;
    float *emb = dalle_malloc(sizeof(float) * (size_t)(1 + RERANK_CHUNK) * E); // the caption's, then a chunk's
    if (!emb || clip_embed_text(c, text, 1, emb)) {
        dalle_free(emb);
        return DALLE_ERR;
    }
    for (int k0 = 0; k0 < K; k0 += RERANK_CHUNK) {
        int b = DALLE_MIN(RERANK_CHUNK, K - k0);
        if (clip_embed_image(c, codes + (size_t)k0 * N, b, emb + E)) {
            dalle_free(emb);
            return DALLE_ERR;
        }
        for (int i = 0; i < b; i++) {
            double dot = 0;
            for (int e = 0; e < E; e++) dot += (double)emb[e] * emb[(size_t)(1 + i) * E + e];
            order[k0 + i] = (ranked){(float)dot, k0 + i};
        }
    }
    dalle_free(emb);
    qsort(order, (size_t)K, sizeof *order, by_score);
    return DALLE_OK;
}

int dalle_generate(dalle_model *m, const char *caption, const dalle_gen_params *p, uint8_t *pixels) {
    dalle_gen_params gp = p ? *p : dalle_gen_default_params();
    if (gp.n < 1 || gp.n > MAX_IMAGES) return dalle_seterr("generate: n = %d is outside [1, %d]", gp.n, MAX_IMAGES);
    if (gp.candidates < 0 || gp.candidates > MAX_IMAGES)
        return dalle_seterr("generate: candidates = %d is outside [0, %d]", gp.candidates, MAX_IMAGES);
    const int K = DALLE_MAX(gp.n, gp.candidates); // images sampled
    if (K > gp.n && !m->clip)
        return dalle_seterr("generate: %d candidates for %d images need a reranker, and %s has no clip.safetensors "
                            "(dalle clip train makes one)", K, gp.n, m->dir);
    int L = m->L, N = m->G * m->G, S = m->S, rc = DALLE_ERR;
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)L), *codes = dalle_malloc(sizeof(int32_t) * (size_t)K * N);
    float *x = dalle_malloc(sizeof(float) * 3 * (size_t)S * S);
    ranked *order = dalle_malloc(sizeof(ranked) * (size_t)K);
    if (!text || !codes || !x || !order) goto done;
    size_t len = strlen(caption);
    int64_t total = bpe_encode(m->tok, caption, len, NULL, NULL, 0);
    if (total < 0 || bpe_layout(m->tok, caption, len, NULL, L, text) < 0) goto done;
    if (total > L)
        fprintf(stderr, "dalle: note: the caption has %lld tokens; the model reads the first %d\n", (long long)total, L);
    prior_sample_opts so = prior_sample_default_opts();
    so.temperature = gp.temperature, so.top_k = gp.top_k, so.top_p = gp.top_p, so.seed = gp.seed;
    so.guidance = gp.guidance;
    dalle_logv("sample: %d candidates, temperature %g, top-k %d, top-p %g, guidance %g, seed %llu", K, so.temperature,
               so.top_k, so.top_p, so.guidance, (unsigned long long)so.seed);
    so.progress = gp.progress;
    so.on_step = gp.on_progress;
    so.user = gp.user;
    if (prior_sample(m->prior, text, K, &so, codes)) goto done;
    for (int k = 0; k < K; k++) order[k] = (ranked){0, k};
    if (K > gp.n) {
        if (rerank(m->clip, text, codes, K, N, order)) goto done;
        char kept[160];
        size_t at = 0;
        for (int k = 0; k < gp.n && at < 120; k++)
            at += (size_t)snprintf(kept + at, sizeof kept - at, " %d (%.4f)", order[k].index, order[k].score);
        dalle_logv("rerank: kept%s%s of %d candidates", kept, at >= 120 ? " ..." : "", K);
    }
    for (int k = 0; k < gp.n; k++) {
        if (dvae_decode(m->dvae, codes + (size_t)order[k].index * N, 1, x)) goto done;
        image_t img = {S, S, pixels + (size_t)k * S * S * 3};
        image_from_chw(&img, x);
    }
    rc = DALLE_OK;
done:
    dalle_free(text);
    dalle_free(codes);
    dalle_free(x);
    dalle_free(order);
    return rc;
}
