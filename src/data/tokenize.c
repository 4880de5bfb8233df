// tokenize.c: dataset -> shards (tokenize.h). Records come in dataset order,
// item by item, caption by caption; record r's augmentation and BPE dropout
// draw from Philox (seed, r), so a rebuild gives the same bytes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "data/dataset.h"
#include "data/shard.h"
#include "data/tokenize.h"

data_tokenize_opts data_tokenize_defaults(void) {
    return (data_tokenize_opts){NULL, NULL, NULL, NULL, 256, DSET_TRAIN, 0, 0, 0.0f, 0, 16};
}

// The dVAE's input for record r from a D x D dataset image: with augment
// (and D > S), the paper's Listing 2 at this scale: resize to t uniform in
// [S, min(D, 9S/8)] (area), then a uniform random S x S crop; otherwise a
// plain resize to S (area down, Lanczos up). out (3, S, S) in [0, 1].
static int prepare(const uint8_t *pixels, int D, int S, int augment, uint64_t seed, int64_t r, float *out) {
    image_t src = {D, D, (uint8_t *)pixels}, a = {0}, b = {0};
    int rc = DALLE_ERR;
    if (D == S) {
        image_to_chw(&src, out);
        return DALLE_OK;
    }
    if (augment && D > S) {
        uint32_t w[4];
        philox4x32(seed, 1, (uint64_t)r, w);
        int tmax = DALLE_MIN(D, S + S / 8), t = S + (int)(w[0] % (uint32_t)(tmax - S + 1));
        if (image_resize(&src, t, t, IMAGE_AREA, &a)) goto done;
        int x = (int)(w[1] % (uint32_t)(t - S + 1)), y = (int)(w[2] % (uint32_t)(t - S + 1));
        if (image_crop(&a, x, y, S, S, &b)) goto done;
    } else if (image_resize(&src, S, S, D > S ? IMAGE_AREA : IMAGE_LANCZOS, &b)) {
        goto done;
    }
    image_to_chw(&b, out);
    rc = DALLE_OK;
done:
    image_free(&a);
    image_free(&b);
    return rc;
}

// Writes records [a, b) as shard number k (or the single shard).
static int write_shard(const data_tokenize_opts *o, const shard_info *info, const int32_t *text,
                       const int32_t *codes, int64_t a, int64_t b, int k, int many) {
    char path[4096];
    if (many) {
        const char *dot = strrchr(o->out, '.');
        int stem = dot && !strcmp(dot, ".dshard") ? (int)(dot - o->out) : (int)strlen(o->out);
        snprintf(path, sizeof path, "%.*s-%05d.dshard", stem, o->out, k);
    } else {
        snprintf(path, sizeof path, "%s", o->out);
    }
    shard_info in = *info;
    in.n_records = b - a;
    return shard_write(path, &in, text + a * info->text_len, codes + a * info->n_image, b - a);
}

int64_t data_tokenize(const data_tokenize_opts *o) {
    dset *d = NULL;
    dvae_model *m = NULL;
    bpe_tokenizer *t = NULL;
    int32_t *text = NULL, *codes = NULL, *bcodes = NULL;
    float *x = NULL;
    int64_t n_rec = 0, result = -1;
    if (!(d = dset_open(o->dataset)) || !(m = dvae_load(o->dvae, 1)) || !(t = bpe_load(o->tokenizer))) goto done;
    const dvae_config *c = dvae_get_config(m);
    int S = c->image_size, G = dvae_grid(c), N = G * G, L = o->text_len, D = dset_image_size(d);
    int B = o->batch > 0 ? o->batch : 16;
    int64_t total = 0;
    for (int64_t i = 0; i < dset_count(d); i++)
        if (o->split < 0 || dset_split(d, i) == o->split) total += dset_caption_count(d, i);
    if (total == 0) {
        dalle_seterr("%s: no items in the chosen split", o->dataset);
        goto done;
    }
    text = dalle_malloc(sizeof(int32_t) * (size_t)total * L);
    codes = dalle_malloc(sizeof(int32_t) * (size_t)total * N);
    bcodes = dalle_malloc(sizeof(int32_t) * (size_t)B * N);
    x = dalle_malloc(sizeof(float) * (size_t)B * 3 * S * S);
    if (!text || !codes || !bcodes || !x) goto done;
    progress_t pr;
    progress_start(&pr, "tokenize", 0, total, 0);
    int nb = 0;
    for (int64_t i = 0; i < dset_count(d); i++) {
        if (o->split >= 0 && dset_split(d, i) != o->split) continue;
        for (int k = 0; k < dset_caption_count(d, i); k++) {
            size_t len;
            const char *cap = dset_caption(d, i, k, &len);
            bpe_dropout dr = {o->dropout, o->seed, (uint64_t)n_rec};
            if (bpe_layout(t, cap, len, &dr, L, text + n_rec * L) < 0) goto done;
            if (prepare(dset_image(d, i), D, S, o->augment, o->seed, n_rec, x + (size_t)nb * 3 * S * S)) goto done;
            nb++;
            n_rec++;
            if (nb == B || n_rec == total) {
                if (dvae_encode(m, x, nb, bcodes)) goto done;
                memcpy(codes + (n_rec - nb) * N, bcodes, sizeof(int32_t) * (size_t)nb * N);
                nb = 0;
                progress_update(&pr, n_rec, n_rec, NULL);
            }
        }
    }
    progress_end(&pr);
    shard_info info = {L, N, G, bpe_vocab_size(t), c->vocab_size, n_rec};
    int64_t per = o->records_per_shard > 0 ? o->records_per_shard : n_rec;
    int many = o->records_per_shard > 0;
    for (int64_t a = 0, k = 0; a < n_rec; a += per, k++)
        if (write_shard(o, &info, text, codes, a, DALLE_MIN(n_rec, a + per), (int)k, many)) goto done;
    result = n_rec;
done:
    dset_close(d);
    dvae_free(m);
    bpe_free(t);
    dalle_free(text);
    dalle_free(codes);
    dalle_free(bcodes);
    dalle_free(x);
    return result;
}
