// train.c: the dVAE trainer (see train.h): one step is encoder forward,
// Gumbel-softmax relaxation, decoder forward on the relaxed codes, the ELB
// loss, and the backward pass through all of it; then AdamW and the EMA.
//
// Every random choice is a pure function of (seed, step, index): the data
// order (one permutation per epoch), the augmentation and the Gumbel noise.
// So a checkpoint only needs the step, and --resume continues the very same
// run; and a sample draws the same numbers whichever rank computes it.
#include "train.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/common.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "data/dataset.h"
#include "data/folder.h"
#include "data/loader.h"
#include "train/optim.h"

// Streams of the counter-based RNG (keys derived from the run's seed).
enum { STREAM_ORDER = 1, STREAM_AUGMENT = 2, STREAM_GUMBEL = 3 };
static uint64_t stream_key(uint64_t seed, int stream) { return seed * 0x9E3779B97F4A7C15ull + (uint64_t)stream; }

void dvae_train_defaults(dvae_train_opts *o, int64_t steps) {
    memset(o, 0, sizeof *o);
    dvae_config_preset("small", &o->cfg);
    o->batch = 8;
    o->steps = steps;
    o->seed = 1;
    o->lr = 1e-4;
    o->lr_end = 1.25e-6;
    o->lr_steps = -1;
    o->tau = 1.0;
    o->tau_end = 1.0 / 16;
    o->tau_steps = -1;
    o->kl = 0.0;
    o->kl_end = 6.6;
    o->kl_steps = -1;
    o->weight_decay = 1e-4;
    o->ema_decay = 0.999;
    o->augment = 1;
    o->log_every = 100;
}

// ---------------------------------------------------------------- one step

int dvae_trainer_init(dvae_trainer *t, dvae_model *m, int B) {
    memset(t, 0, sizeof *t);
    t->m = m;
    t->B = B;
    int V = m->cfg.vocab_size, G = dvae_grid(&m->cfg);
    size_t nz = (size_t)B * V * G * G;
    if (dvae_exec_init(&t->enc, &m->enc, B, 1, 0) || dvae_exec_init(&t->dec, &m->dec, B, 1, 1)) goto fail;
    t->g = backend_alloc(sizeof(float) * nz);
    t->z = backend_alloc(sizeof(float) * nz);
    t->dlogits = t->enc.grad[m->enc.out_slot];
    t->grads = backend_alloc(sizeof(float) * (size_t)m->n_params);
    if (!t->g || !t->z || !t->grads) goto fail;
    if (m->enc.half || m->dec.half) {
        if (!(t->w16 = backend_alloc(sizeof(uint16_t) * (size_t)m->n_params))) goto fail;
        t->enc.w16 = t->dec.w16 = t->w16;
    }
    t->dec.act[m->dec.in_slot] = t->z;
    return DALLE_OK;
fail:
    dvae_trainer_free(t);
    return DALLE_ERR;
}

void dvae_trainer_free(dvae_trainer *t) {
    dvae_exec_free(&t->enc);
    dvae_exec_free(&t->dec);
    backend_free(t->g);
    backend_free(t->z);
    backend_free(t->grads);
    backend_free(t->w16);
    memset(t, 0, sizeof *t);
}

dvae_loss dvae_trainer_step(dvae_trainer *t, const float *x, float tau, float beta) {
    dvae_model *m = t->m;
    const dvae_config *c = &m->cfg;
    int B = t->B, V = c->vocab_size, S = c->image_size, G = dvae_grid(c), P = G * G, N = S * S;
    // The paper divides the ELB by 256*256*3: per pixel value, so the KL
    // (summed over positions) weighs beta / (3*S*S / P), i.e. beta/192 at 256x256.
    const float norm = 1.0f / ((float)B * 3.0f * (float)N);

    if (t->w16) to_half(t->w16, m->params, m->n_params, m->enc.fmt); // this step's 16-bit weights
    t->enc.act[m->enc.in_slot] = (float *)x;
    const float *logits = dvae_forward(&t->enc, m->params); // (B, V, G, G)
    gumbel_softmax_forward(t->z, logits, t->g, tau, B, V, P);
    const float *stats = dvae_forward(&t->dec, m->params); // (B, 6, S, S)

    float *dstats = t->dec.grad[m->dec.out_slot];
    double rec = logit_laplace_nll(dstats, stats, x, norm, B, N);
    backend_memset0(t->grads, sizeof(float) * (size_t)m->n_params);
    dvae_backward(&t->dec, m->params, t->grads);

    backend_memset0(t->dlogits, sizeof(float) * (size_t)B * V * P);
    double kl = kl_uniform_forward_backward(t->dlogits, logits, beta * norm, B, V, P);
    gumbel_softmax_backward(t->dlogits, t->dec.grad[m->dec.in_slot], t->z, tau, B, V, P);
    dvae_backward(&t->enc, m->params, t->grads);

    dvae_loss L;
    L.rec = rec * norm;
    L.kl = kl / ((double)B * P);
    L.loss = L.rec + (double)beta * kl * norm;
    return L;
}

// ---------------------------------------------------------------- data

typedef struct {
    image_t *imgs; // (n,) each with shorter side >= S (upscaled if smaller)
    int n;
    int S;
    loader order;  // the visiting order (data/loader.h)
    uint64_t seed;
} dataset;

static void dataset_free(dataset *d) {
    for (int i = 0; d->imgs && i < d->n; i++) image_free(&d->imgs[i]);
    dalle_free(d->imgs);
    loader_free(&d->order);
    memset(d, 0, sizeof *d);
}

// Keeps img (taking ownership) as the dataset's next image, resized so its
// shorter side is at most 3S/2 (the largest the augmentation resizes to) and
// at least S.
static int dataset_keep(dataset *d, image_t img, const char *name) {
    int S = d->S, keep = (3 * S + 1) / 2;
    int s_min = DALLE_MIN(img.w, img.h);
    int target = s_min > keep ? keep : s_min < S ? S : 0;
    if (target) {
        int w = (int)((int64_t)img.w * target / s_min), h = (int)((int64_t)img.h * target / s_min);
        image_t r = {0};
        int rc = image_resize(&img, DALLE_MAX(w, target), DALLE_MAX(h, target), target < s_min ? IMAGE_AREA : IMAGE_LANCZOS, &r);
        image_free(&img);
        if (rc) return dalle_errprefix("%s", name);
        img = r;
    }
    d->imgs[d->n++] = img;
    return DALLE_OK;
}

// Appends the train split of dataset file PATH (at most `room` images).
static int dataset_add_dset(dataset *d, const char *path, int64_t room) {
    dset *ds = dset_open(path);
    if (!ds) return DALLE_ERR;
    int64_t n = 0;
    for (int64_t i = 0; i < dset_count(ds); i++) n += dset_split(ds, i) == DSET_TRAIN;
    if (room >= 0 && n > room) n = room;
    image_t *imgs = dalle_realloc(d->imgs, sizeof(image_t) * (size_t)(d->n + n + 1));
    if (!imgs) {
        dset_close(ds);
        return DALLE_ERR;
    }
    d->imgs = imgs;
    int D = dset_image_size(ds), rc = DALLE_OK;
    for (int64_t i = 0, added = 0; i < dset_count(ds) && added < n && rc == DALLE_OK; i++) {
        if (dset_split(ds, i) != DSET_TRAIN) continue;
        image_t img = {0};
        rc = image_alloc(&img, D, D);
        if (rc == DALLE_OK) {
            memcpy(img.data, dset_image(ds, i), (size_t)D * D * 3);
            rc = dataset_keep(d, img, path);
            added++;
        }
    }
    dset_close(ds);
    return rc;
}

// Loads the training images: every image of a folder (or comma-separated
// folders), or the train split of dataset files (.dset, comma-separated).
static int dataset_load(dataset *d, const char *dir, int S, int64_t max_images, uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->S = S;
    d->seed = seed;
    if (strstr(dir, ".dset")) {
        char *list = dalle_strdup(dir);
        if (!list) return DALLE_ERR;
        int rc = DALLE_OK;
        for (char *p = strtok(list, ","); p && rc == DALLE_OK; p = strtok(NULL, ","))
            rc = dataset_add_dset(d, p, max_images > 0 ? max_images - d->n : -1);
        dalle_free(list);
        if (rc == DALLE_OK && d->n == 0) rc = dalle_seterr("%s: no training images", dir);
        if (rc != DALLE_OK || loader_init(&d->order, d->n, stream_key(seed, STREAM_ORDER), 0, 1)) {
            dataset_free(d);
            return DALLE_ERR;
        }
        return DALLE_OK;
    }
    char **paths;
    int n;
    if (folder_list_images(dir, &paths, &n)) return DALLE_ERR;
    if (max_images > 0 && n > max_images) n = (int)max_images;
    d->imgs = dalle_calloc((size_t)n, sizeof(image_t));
    if (!d->imgs) goto fail;
    for (int i = 0; i < n; i++) {
        image_t img = {0};
        if (image_load(paths[i], &img) || dataset_keep(d, img, paths[i])) goto fail;
    }
    folder_free(paths, n);
    if (loader_init(&d->order, d->n, stream_key(seed, STREAM_ORDER), 0, 1)) goto fail2;
    return DALLE_OK;
fail:
    folder_free(paths, n);
fail2:
    dataset_free(d);
    return DALLE_ERR;
}

// The image index at global sample position pos (data/loader.h).
static int dataset_index(dataset *d, int64_t pos) { return (int)loader_item(&d->order, pos); }

// Writes sample `pos` as (3, S, S) floats in [0,1] into out. With augment,
// the paper's Listing 1: a random square crop of the shorter side s, resized
// (area) to t uniform in [min(s, 9S/8), min(s, 3S/2)], a random S x S crop
// and a random horizontal flip. Without, the centre S x S after resizing.
static int dataset_sample(dataset *d, int64_t pos, int augment, float *out) {
    const image_t *img = &d->imgs[dataset_index(d, pos)];
    int S = d->S, rc = DALLE_ERR;
    image_t sq = {0}, rs = {0}, fin = {0};
    if (!augment) {
        if (image_resize_crop(img, S, &fin)) return DALLE_ERR;
    } else {
        uint32_t w[4], w2[4];
        uint64_t key = stream_key(d->seed, STREAM_AUGMENT);
        philox4x32(key, 0, (uint64_t)pos, w);
        philox4x32(key, 1, (uint64_t)pos, w2);
        int s = DALLE_MIN(img->w, img->h);
        int x0 = (int)(w[0] % (uint32_t)(img->w - s + 1)), y0 = (int)(w[1] % (uint32_t)(img->h - s + 1));
        int lo = DALLE_MIN(s, (9 * S + 4) / 8), hi = DALLE_MIN(s, (3 * S + 1) / 2);
        int t = lo + (int)(w[2] % (uint32_t)(hi - lo + 1));
        if (image_crop(img, x0, y0, s, s, &sq) || image_resize(&sq, t, t, IMAGE_AREA, &rs)) goto done;
        int x1 = (int)(w2[0] % (uint32_t)(t - S + 1)), y1 = (int)(w2[1] % (uint32_t)(t - S + 1));
        if (image_crop(&rs, x1, y1, S, S, &fin)) goto done;
        if (w2[2] & 1) // horizontal flip
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S / 2; x++)
                    for (int c = 0; c < 3; c++) {
                        uint8_t *a = &fin.data[((size_t)y * S + x) * 3 + c], *b = &fin.data[((size_t)y * S + (S - 1 - x)) * 3 + c];
                        uint8_t tmp = *a;
                        *a = *b;
                        *b = tmp;
                    }
    }
    image_to_chw(&fin, out);
    rc = DALLE_OK;
done:
    image_free(&sq);
    image_free(&rs);
    image_free(&fin);
    return rc;
}

// ---------------------------------------------------------------- checkpoints

static const char *const STATE[] = {"ema.", "adam.m.", "adam.v."}; // the arrays of dp_state, in order

// Collective: rank 0 writes the checkpoint, the shards of the state gathered
// into whole tensors (the same file whatever the number of ranks).
static int save_checkpoint(const char *path, const dvae_model *m, dp_t *d, const dp_state *s, const dvae_train_opts *o,
                           int64_t step, int64_t skipped) {
    backend_sync(); // the parameters and the state are read on the host
    const float *full[3];
    float *tmp = NULL;
    if (dp_state_full(d, s, full, &tmp)) return DALLE_ERR;
    if (d->rank != 0) return DALLE_OK;
    st_writer *w = st_writer_new();
    char buf[64];
    int rc = DALLE_ERR;
    if (!w || dvae_write_meta(&m->cfg, w)) goto done;
    snprintf(buf, sizeof buf, "%lld", (long long)step);
    if (st_writer_meta(w, "train.step", buf)) goto done;
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
    if (st_writer_meta(w, "train.seed", buf)) goto done;
    snprintf(buf, sizeof buf, "%lld", (long long)skipped);
    if (skipped && st_writer_meta(w, "train.skipped", buf)) goto done; // steps without an update (not finite)
    if (st_writer_meta(w, "train.rng", "philox4x32-10, streams keyed by seed, counters by step")) goto done;
    if (st_writer_meta(w, "train.precision", o->bf16 ? "bf16" : "fp32")) goto done;
    char js[1024];
    snprintf(js, sizeof js,
             "{\"batch\": %d, \"lr\": %.17g, \"lr_end\": %.17g, \"lr_steps\": %lld, \"tau\": %.17g, "
             "\"tau_end\": %.17g, \"tau_steps\": %lld, \"kl\": %.17g, \"kl_end\": %.17g, \"kl_steps\": %lld, "
             "\"weight_decay\": %.17g, \"ema_decay\": %.17g, \"augment\": %d, \"max_images\": %lld}",
             o->batch, o->lr, o->lr_end, (long long)o->lr_steps, o->tau, o->tau_end, (long long)o->tau_steps, o->kl,
             o->kl_end, (long long)o->kl_steps, o->weight_decay, o->ema_decay, o->augment, (long long)o->max_images);
    if (st_writer_meta(w, "train.opts", js)) goto done;
    if (dvae_add_tensors(m, w, "", m->params, ST_F32)) goto done;
    for (int i = 0; i < 3; i++)
        if (dvae_add_tensors(m, w, STATE[i], full[i], ST_F32)) goto done;
    rc = st_writer_save(w, path);
done:
    st_writer_free(w);
    dalle_free(tmp);
    return rc;
}

// Reads the settings a run keeps across --resume from "train.opts".
static int read_opts(const st_file *f, dvae_train_opts *o) {
    const char *js = st_meta(f, "train.opts");
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    if (!j) return dalle_seterr("%s: metadata 'train.opts' missing or not JSON", f->path);
    struct { const char *key; double *d; int64_t *i; int *n; } fields[] = {
        {"batch", NULL, NULL, &o->batch}, {"lr", &o->lr, NULL, NULL}, {"lr_end", &o->lr_end, NULL, NULL},
        {"lr_steps", NULL, &o->lr_steps, NULL}, {"tau", &o->tau, NULL, NULL}, {"tau_end", &o->tau_end, NULL, NULL},
        {"tau_steps", NULL, &o->tau_steps, NULL}, {"kl", &o->kl, NULL, NULL}, {"kl_end", &o->kl_end, NULL, NULL},
        {"kl_steps", NULL, &o->kl_steps, NULL}, {"weight_decay", &o->weight_decay, NULL, NULL},
        {"ema_decay", &o->ema_decay, NULL, NULL}, {"augment", NULL, NULL, &o->augment},
        {"max_images", NULL, &o->max_images, NULL},
    };
    int rc = DALLE_OK;
    for (size_t k = 0; k < sizeof fields / sizeof *fields; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, fields[k].key);
        if (!cJSON_IsNumber(v)) {
            rc = dalle_seterr("%s: metadata 'train.opts': field '%s' missing or not a number", f->path, fields[k].key);
            break;
        }
        if (fields[k].d) *fields[k].d = v->valuedouble;
        else if (fields[k].i) *fields[k].i = (int64_t)v->valuedouble;
        else *fields[k].n = (int)v->valuedouble;
    }
    cJSON_Delete(j);
    return rc;
}

// With the CUDA backend: DALLE_ERR, with the numbers, when training config
// cfg with o's batch and micro-batch on K ranks would not fit in the GPU's
// free memory: the parameters, gradient, Adam moments and EMA (dp.h's
// layout), the encoder's and decoder's training arenas and scratch
// (dvae_exec_train_floats), the noise, the relaxed codes and the images:
// the peak of the allocations, as measured on the CPU backend.
static int fit_check(const dvae_config *cfg, const dvae_train_opts *o, int K) {
    int b = o->batch / K, mb = o->micro_batch > 0 ? o->micro_batch : b;
    if (backend()->kind == BACKEND_CPU || b < 1 || mb < 1 || b % mb) return DALLE_OK; // bad sizes: refused later
    dvae_model *m = dalle_calloc(1, sizeof *m); // the size tables and nets, no parameters
    if (!m) return DALLE_ERR;
    m->cfg = *cfg;
    int rc = dvae_build(m);
    m->enc.half = m->dec.half = o->bf16;
    if (rc == DALLE_OK) {
        const int64_t n = m->n_params, sharded = o->dp == DP_SHARD && K > 1, s = sharded ? (n + K - 1) / K : n;
        const int64_t VP = (int64_t)cfg->vocab_size * dvae_grid(cfg) * dvae_grid(cfg);
        // n more: a piece's gradient, or (as much) the trainer's own, freed once it is made
        int64_t se, sd, floats = n + (sharded ? K * s + s : n) + 3 * s + n;
        floats += dvae_exec_train_floats(&m->enc, mb, 0, &se) + dvae_exec_train_floats(&m->dec, mb, 1, &sd) + se + sd;
        floats += 2 * mb * VP + (int64_t)mb * 3 * cfg->image_size * cfg->image_size;
        if (o->bf16) floats += (n + 1) / 2; // the 16-bit codes
        char what[96];
        snprintf(what, sizeof what, "dvae train (micro-batch %d)", mb);
        rc = backend_check_fit(what, 4 * floats, "use a smaller --micro-batch or --batch, or --device cpu");
    }
    dvae_free(m);
    return rc;
}

// A new model with the parameters of checkpoint f (whose tensors must be
// the parameters, EMA and moments of its config); sets *step, *skipped, o's
// seed and the settings kept across --resume.
static dvae_model *load_checkpoint(const st_file *f, int64_t *step, int64_t *skipped, dvae_train_opts *o, int K) {
    static const char *const prefixes[] = {"", "ema.", "adam.m.", "adam.v."};
    dvae_model *m = NULL;
    dvae_config cfg;
    long long st = 0, sd = 0, sk = 0;
    if (dvae_config_from_file(f, &cfg) || st_meta_int(f, "train.step", &st) || st_meta_int(f, "train.seed", &sd) ||
        read_opts(f, o))
        return NULL;
    if (st_meta(f, "train.skipped") && st_meta_int(f, "train.skipped", &sk)) return NULL;
    const char *prec = st_meta(f, "train.precision"); // absent: fp32 (written before bf16 existed)
    if (prec && strcmp(prec, "fp32") && strcmp(prec, "bf16")) {
        dalle_seterr("%s: metadata 'train.precision' is '%s' (fp32 or bf16)", f->path, prec);
        return NULL;
    }
    o->bf16 = prec && !strcmp(prec, "bf16");
    if (fit_check(&cfg, o, K) || !(m = dvae_new(&cfg, 0))) return NULL;
    if (dvae_check_names(m, f, prefixes, 4) || dvae_read_tensors(m, f, "", m->params)) {
        dvae_free(m);
        return NULL;
    }
    *step = st;
    *skipped = sk;
    o->seed = (uint64_t)sd;
    o->cfg = cfg;
    return m;
}

// This rank's part of the EMA and Adam moments of checkpoint f (the whole
// tensors pass through d->grad).
static int load_state(const st_file *f, const dvae_model *m, dp_t *d, dp_state *s) {
    float *part[3] = {s->ema, s->m, s->v};
    for (int i = 0; i < 3; i++) {
        if (dvae_read_tensors(m, f, STATE[i], d->grad)) return DALLE_ERR;
        dp_take(d, d->grad, part[i]);
    }
    backend_memset0(d->grad, sizeof(float) * (size_t)d->n_grad);
    return DALLE_OK;
}

// ---------------------------------------------------------------- the loop

// This rank's gradient (n_params) of the images first .. first + pieces*mb - 1
// of step's global batch of B: their mean over `pieces` passes of t (made for
// mb images; a piece's gradient goes to `piece`, then into grad), each image
// with the augmentation and the Gumbel noise of its place; their mean losses.
// x (mb, 3, S, S), grad and piece are backend memory (the host writes x and
// the noise).
static int rank_gradient(dvae_trainer *t, dataset *d, const dvae_train_opts *o, int64_t step, int B, int64_t first,
                         int pieces, float tau, float beta, float *x, float *grad, float *piece, dvae_loss *L) {
    const dvae_config *c = &t->m->cfg;
    int mb = t->B, S = c->image_size;
    int64_t n = t->m->n_params, VP = (int64_t)c->vocab_size * dvae_grid(c) * dvae_grid(c);
    *L = (dvae_loss){0, 0, 0};
    for (int p = 0; p < pieces; p++) {
        int64_t at = first + (int64_t)p * mb; // in the batch
        backend_sync(); // the last pass may still read x (the noise op is queued behind it)
        for (int j = 0; j < mb; j++)
            if (dataset_sample(d, step * B + at + j, o->augment, x + (size_t)j * 3 * S * S)) return DALLE_ERR;
        dvae_map_pixels(x, (int64_t)mb * 3 * S * S);
        // the batch's noise is one stream per step, of which these images take their slice
        gumbel_noise(t->g, stream_key(o->seed, STREAM_GUMBEL), (uint64_t)step << 32, at * VP, mb * VP);
        t->grads = p ? piece : grad;
        dvae_loss l = dvae_trainer_step(t, x, tau, beta);
        if (p) axpy(grad, 1.0f, piece, n);
        L->loss += l.loss, L->rec += l.rec, L->kl += l.kl;
    }
    t->grads = grad;
    if (pieces > 1) {
        const float inv = 1.0f / (float)pieces;
        backend_sync();
        for (int64_t i = 0; i < n; i++) grad[i] *= inv;
        L->loss /= pieces, L->rec /= pieces, L->kl /= pieces;
    }
    return DALLE_OK;
}

int dvae_train(const dvae_train_opts *opts) {
    dvae_train_opts run = *opts, *o = &run; // a resume replaces the kept settings
    dvae_model *m = NULL;
    st_file *ck = NULL;
    dp_t dp = {0};
    dp_state s = {0};
    dataset data = {0};
    dvae_trainer t = {0};
    float *x = NULL, *piece = NULL; // piece (n_params): a piece's gradient, when a rank's part is in several
    int64_t step = 0;
    dp_skips skips = {0};
    int rc = DALLE_ERR, K = comm_size(o->comm), rank = comm_rank(o->comm), lead = rank == 0;

    if (o->batch < 1) return dalle_seterr("--batch must be at least 1");
    if (o->resume) {
        if (!(ck = st_open(o->resume)) || !(m = load_checkpoint(ck, &step, &skips.total, o, K))) goto done;
        dalle_log("resuming %s at step %lld (seed %llu; its batch, schedules and optimizer settings)", o->resume,
                  (long long)step, (unsigned long long)o->seed);
    } else {
        // horizons left at -1 sit at the paper's fractions of the run
        if (o->lr_steps < 0) o->lr_steps = o->steps * 2 / 5;
        if (o->tau_steps < 0) o->tau_steps = o->steps / 20;
        if (o->kl_steps < 0) o->kl_steps = o->steps / 600;
        if (fit_check(&o->cfg, o, K) || !(m = dvae_new(&o->cfg, o->seed))) return DALLE_ERR;
    }
    m->enc.half = m->dec.half = o->bf16;
    m->enc.fmt = m->dec.fmt = HALF_BF16;
    if (o->batch % K) {
        if (o->resume)
            dalle_seterr("%s: its batch of %d images is not divisible by %d ranks: resume on a number of ranks "
                         "that divides %d", o->resume, o->batch, K, o->batch);
        else dalle_seterr("--batch %d is not divisible by %d ranks (each rank takes batch/ranks)", o->batch, K);
        goto done;
    }
    if (dp_init(&dp, o->comm, o->dp, m->n_params) || dp_state_alloc(&dp, &s)) goto done;
    if (ck) {
        if (load_state(ck, m, &dp, &s)) goto done;
    } else {
        backend_copy(s.ema, m->params + dp.lo, sizeof(float) * (size_t)dp.len); // the EMA starts at the initialisation
    }
    st_close(ck);
    ck = NULL;
    const dvae_config *c = &m->cfg;
    // the global batch, this rank's part, and the pieces it computes it in
    int B = o->batch, b = B / K, mb = o->micro_batch > 0 ? o->micro_batch : b, pieces = b / mb, S = c->image_size;
    if (b % mb) {
        dalle_seterr("--micro-batch %d does not divide the %d images of each rank", mb, b);
        goto done;
    }
    if (dataset_load(&data, o->data_dir, S, o->max_images, o->seed)) goto done;
    char cfgjs[256];
    dvae_config_to_json(c, cfgjs, sizeof cfgjs);
    dalle_log("dvae train: %d images from %s, config %s, %lld parameters, batch %d, steps %lld",
              data.n, o->data_dir, cfgjs, (long long)m->n_params, B, (long long)o->steps);
    dalle_log("schedules (cosine): lr %g -> %g over %lld, tau %g -> %g over %lld, beta %g -> %g over %lld",
              o->lr, o->lr_end, (long long)o->lr_steps, o->tau, o->tau_end, (long long)o->tau_steps, o->kl,
              o->kl_end, (long long)o->kl_steps);
    if (K > 1)
        dalle_log("data parallel: %d ranks (%s) of %d images each, --dp %s: each rank updates %lld parameters", K,
                  comm_backend(o->comm), b, dp_mode_name(o->dp), (long long)dp.len);
    if (pieces > 1) dalle_log("each rank's %d images in %d pieces of %d (gradient accumulated)", b, pieces, mb);
    if (o->bf16) dalle_log("precision bf16: the convolutions' weights and inputs in bf16, products exact, sums and "
                           "master weights fp32 (no loss scaling: bf16 has fp32's range)");
    if (dvae_trainer_init(&t, m, mb)) goto done;
    backend_free(t.grads); // the step's gradient goes where dp reduces it
    t.grads = dp.grad;
    x = backend_alloc(sizeof(float) * (size_t)mb * 3 * S * S); // (mb, 3, S, S)
    if (!x) goto done;
    if (pieces > 1 && !(piece = backend_alloc(sizeof(float) * (size_t)m->n_params))) goto done;
    char dev[512];
    if (backend()->kind == BACKEND_CPU) dalle_logv("device %s", backend_describe(dev, sizeof dev));
    else dalle_log("device %s", backend_describe(dev, sizeof dev)); // GPU memory in use, all allocated now

    progress_t prog;
    progress_start(&prog, "dvae", step, o->steps, step * B);
    double acc_loss = 0, acc_rec = 0, acc_kl = 0;
    int acc_n = 0; // updates since the last log line
    int64_t stop = o->stop_after > 0 ? DALLE_MIN(o->steps, step + o->stop_after) : o->steps;
    while (step < stop) {
        float tau = (float)cosine_schedule(step, o->tau_steps, o->tau, o->tau_end);
        float beta = (float)cosine_schedule(step, o->kl_steps, o->kl, o->kl_end);
        float lr = (float)cosine_schedule(step, o->lr_steps, o->lr, o->lr_end);
        dvae_loss L;
        if (rank_gradient(&t, &data, o, step, B, (int64_t)rank * b, pieces, tau, beta, x, dp.grad, piece, &L))
            goto done;
        double st[3] = {L.loss, L.rec, L.kl}, sumsq;
        if (dp_reduce(&dp, st, 3, &sumsq)) goto done;
        L = (dvae_loss){st[0], st[1], st[2]};
        step++;
        int skip = dp_skip_check(&dp, &skips, &prog, step, L.loss, sumsq);
        if (skip < 0) goto done;
        if (!skip) {
            for (int i = 0; i < m->n_tensors; i++) { // this rank's part of each tensor
                const dvae_tensor *tt = &m->tensors[i];
                int64_t at, n = dp_overlap(&dp, tt->offset, tt->numel, &at), r = at - dp.lo;
                if (n)
                    adamw_update(m->params + at, s.m + r, s.v + r, dp.own + r, n, lr, 0.9f, 0.999f, 1e-8f,
                                 tt->is_weight ? (float)o->weight_decay : 0.0f, step - skips.total);
            }
            if (dp_gather_params(&dp, m->params)) goto done;
            acc_loss += L.loss;
            acc_rec += L.rec;
            acc_kl += L.kl;
            acc_n++;
        }
        ema_update(s.ema, m->params + dp.lo, dp.len, (float)o->ema_decay);

        char extra[160];
        snprintf(extra, sizeof extra, "loss %.5f rec %.5f kl %.4f tau %.3f beta %.3f lr %.2e", L.loss, L.rec, L.kl,
                 tau, beta, lr);
        progress_update(&prog, step, step * B, extra);
        if (o->log_every > 0 && (step % o->log_every == 0 || step == o->steps)) {
            char note[48];
            dp_skips_note(&skips, note);
            if (lead && acc_n) {
                if (prog.tty) progress_end(&prog);
                printf("step %lld loss %.6f rec %.6f kl %.6f tau %.4f beta %.4f lr %.3e%s\n", (long long)step,
                       acc_loss / acc_n, acc_rec / acc_n, acc_kl / acc_n, tau, beta, lr, note);
                fflush(stdout);
            }
            acc_loss = acc_rec = acc_kl = 0;
            acc_n = 0;
        }
        if (o->save_every > 0 && step % o->save_every == 0 && step < stop)
            if (save_checkpoint(o->out, m, &dp, &s, o, step, skips.total)) goto done;
    }
    progress_end(&prog);
    if (save_checkpoint(o->out, m, &dp, &s, o, step, skips.total)) goto done;
    dalle_log("dvae train: done at step %lld, checkpoint %s%s", (long long)step, o->out,
              skips.total ? " (some updates skipped, see the log)" : "");
    rc = DALLE_OK;
done:
    st_close(ck);
    backend_free(x);
    backend_free(piece);
    if (t.grads == dp.grad) t.grads = NULL; // lent, freed by dp_free
    dvae_trainer_free(&t);
    dataset_free(&data);
    dp_state_free(&s);
    dp_free(&dp);
    dvae_free(m);
    return rc;
}
