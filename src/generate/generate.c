// generate.c: the model directory and caption -> images (dalle/generate.h):
// tokenizer -> text layout -> prior sampling (KV cache) -> dVAE decode.
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/image.h"
#include "dalle/dalle.h"
#include "dalle/generate.h"
#include "prior/sample.h"

struct dalle_model {
    char *dir;
    bpe_tokenizer *tok;
    dvae_model *dvae;
    prior_model *prior;
    int L, S, G;
};

dalle_gen_params dalle_gen_default_params(void) { return (dalle_gen_params){1, 0, 1.0f, 0, 1.0f, 0, NULL, NULL}; }

void dalle_model_free(dalle_model *m) {
    if (!m) return;
    bpe_free(m->tok);
    dvae_free(m->dvae);
    prior_free(m->prior);
    dalle_free(m->dir);
    dalle_free(m);
}

// Reads DIR/config.json: the format and version.
static int read_config(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t n;
    char *text = dalle_read_file(path, &n);
    if (!text) return DALLE_ERR;
    cJSON *j = cJSON_ParseWithLength(text, n);
    dalle_free(text);
    const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "format") : NULL;
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "version") : NULL;
    int rc = DALLE_OK;
    if (!cJSON_IsObject(j)) rc = dalle_seterr("%s: not a JSON object", path);
    else if (!cJSON_IsString(f) || strcmp(f->valuestring, "dalle.c model"))
        rc = dalle_seterr("%s: \"format\" must be \"dalle.c model\"", path);
    else if (!cJSON_IsNumber(v) || v->valuedouble != 1)
        rc = dalle_seterr("%s: \"version\" %g is not one this build reads (1)", path, cJSON_IsNumber(v) ? v->valuedouble : -1);
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
    if (read_config(dir)) goto fail;
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
    m->L = pc->text_len;
    m->G = pc->grid;
    m->S = dc->image_size;
    return m;
fail:
    dalle_model_free(m);
    return NULL;
}

int dalle_model_image_size(const dalle_model *m) { return m->S; }

int dalle_generate(dalle_model *m, const char *caption, const dalle_gen_params *p, uint8_t *pixels) {
    dalle_gen_params gp = p ? *p : dalle_gen_default_params();
    if (gp.n < 1 || gp.n > 4096) return dalle_seterr("generate: n = %d is outside [1, 4096]", gp.n);
    int L = m->L, N = m->G * m->G, S = m->S, rc = DALLE_ERR;
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)L), *codes = dalle_malloc(sizeof(int32_t) * (size_t)gp.n * N);
    float *x = dalle_malloc(sizeof(float) * 3 * (size_t)S * S);
    if (!text || !codes || !x) goto done;
    size_t len = strlen(caption);
    int64_t total = bpe_encode(m->tok, caption, len, NULL, NULL, 0);
    if (total < 0 || bpe_layout(m->tok, caption, len, NULL, L, text) < 0) goto done;
    if (total > L)
        fprintf(stderr, "dalle: note: the caption has %lld tokens; the model reads the first %d\n", (long long)total, L);
    prior_sample_opts so = prior_sample_default_opts();
    so.temperature = gp.temperature, so.top_k = gp.top_k, so.top_p = gp.top_p, so.seed = gp.seed;
    so.progress = gp.progress;
    so.on_step = gp.on_progress;
    so.user = gp.user;
    if (prior_sample(m->prior, text, gp.n, &so, codes)) goto done;
    for (int k = 0; k < gp.n; k++) {
        if (dvae_decode(m->dvae, codes + (size_t)k * N, 1, x)) goto done;
        image_t img = {S, S, pixels + (size_t)k * S * S * 3};
        image_from_chw(&img, x);
    }
    rc = DALLE_OK;
done:
    dalle_free(text);
    dalle_free(codes);
    dalle_free(x);
    return rc;
}
