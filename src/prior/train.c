// train.c: the prior's training loop (train.h). Data order: the records of
// all training shards, concatenated, visited epoch by epoch in a permutation
// drawn from Philox keyed by (seed, epoch); batch b of step t takes records
// at positions t*B .. t*B + B - 1 of that sequence (rank r of K computes
// t*B + r*B/K .. t*B + (r+1)*B/K - 1). Nothing else is random, so the step
// counter is the whole data cursor.
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/common.h"
#include "core/progress.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "data/records.h"
#include "prior/model.h"
#include "prior/train.h"
#include "train/mixed.h"
#include "train/optim.h"

void prior_train_defaults(prior_train_opts *o, int64_t steps) {
    memset(o, 0, sizeof *o);
    prior_config_preset("small", &o->cfg);
    o->batch = 8;
    o->steps = steps;
    o->lr = 4.5e-4;
    o->warmup = 5000;
    o->lr_end = 4.5e-4 / 32;
    o->beta1 = 0.9;
    o->beta2 = 0.96;
    o->eps = 1e-8;
    o->weight_decay = 4.5e-2;
    o->clip = 4;
    o->ema_decay = 0.99;
    o->ema_every = 25;
    o->log_every = 100;
    o->eval_every = 1000;
    o->eval_batches = 8;
}

double prior_lr_at(const prior_train_opts *o, int64_t t) {
    if (t < o->warmup) return o->lr * (double)(t + 1) / (double)o->warmup;
    int64_t span = o->steps - o->warmup;
    if (span <= 0) return o->lr;
    return cosine_schedule(t - o->warmup, span, o->lr, o->lr_end);
}

// ---------------------------------------------------------------- checkpoints

static const char *const KEPT[] = {"batch", "lr", "warmup", "lr_end", "beta1", "beta2", "eps",
                                   "weight_decay", "clip", "ema_decay", "ema_every"};
#define PRIOR_DROP_STREAM 0x63617064726f70ULL // Philox stream of the caption dropout ("capdrop")
static const char *const STATE[] = {"ema.", "adam.m.", "adam.v."}; // the arrays of dp_state, in order
#define PSGD_ERROR "powersgd.error" // (K, n_err): the error feedback of each of the K ranks

// The training state that 16-bit precision adds, for this rank's range
// (cap each, backend memory): the fp32 master weights, which the update
// changes and the model's weights are made from, and Adam's moments in the
// paper's 16-bit formats (core/half.h; the adamw_update16 op); the EMA stays
// in dp_state (fp32, its m and v unused). And the gradient scales.
typedef struct {
    float *master;
    uint16_t *m, *v;
    gscale g;
} half_state;

static int half_state_alloc(const dp_t *d, dp_state *s, half_state *h) {
    s->ema = backend_alloc(sizeof(float) * (size_t)d->cap); // dp_state_free frees it
    h->master = backend_alloc(sizeof(float) * (size_t)d->cap);
    h->m = backend_alloc(2 * sizeof(uint16_t) * (size_t)d->cap);
    if (!s->ema || !h->master || !h->m) return DALLE_ERR;
    backend_memset0(s->ema, sizeof(float) * (size_t)d->cap);
    backend_memset0(h->master, sizeof(float) * (size_t)d->cap);
    backend_memset0(h->m, 2 * sizeof(uint16_t) * (size_t)d->cap);
    h->v = h->m + d->cap;
    return DALLE_OK;
}

static void half_state_free(half_state *h) {
    backend_free(h->master);
    backend_free(h->m);
    gscale_free(&h->g);
    memset(h, 0, sizeof *h);
}

// Collective: rank 0 writes the checkpoint, the shards of the state gathered
// into whole tensors (the same file whatever the number of ranks). params
// (n_params) the whole parameters; h: 16-bit precision (its moments are
// written decoded, in F32: exact, and the same file layout for every
// precision), else NULL.
static int save_checkpoint(const char *path, const prior_model *m, dp_t *d, const dp_state *s, const float *params,
                           const half_state *h, const float *psgd_err, const prior_train_opts *o, int64_t step,
                           int64_t skipped, int64_t records) {
    backend_sync(); // the parameters and the state are read on the host
    const float *full[3];
    float *tmp = NULL, *dec = NULL;
    dp_state s32 = *s;
    if (h) {
        if (!(dec = dalle_calloc(2 * (size_t)d->cap, sizeof(float)))) return DALLE_ERR;
        for (int64_t i = 0; i < d->len; i++) dec[i] = e6m9_to_f32(h->m[i]), dec[d->cap + i] = ue6m10_to_f32(h->v[i]);
        s32.m = dec, s32.v = dec + d->cap;
    }
    int rc = dp_state_full(d, &s32, full, &tmp);
    if (rc || d->rank != 0) {
        dalle_free(dec);
        dalle_free(tmp);
        return rc;
    }
    st_writer *w = st_writer_new();
    char buf[64], js[1024], *gjs = NULL;
    rc = DALLE_ERR;
    if (!w || prior_write_meta(&m->cfg, w, "prior-checkpoint")) goto done;
    snprintf(buf, sizeof buf, "%lld", (long long)step);
    if (st_writer_meta(w, "train.step", buf)) goto done;
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
    if (st_writer_meta(w, "train.seed", buf)) goto done;
    snprintf(buf, sizeof buf, "%lld", (long long)records);
    if (st_writer_meta(w, "train.records", buf)) goto done;
    snprintf(buf, sizeof buf, "%lld", (long long)(step * o->batch));
    if (st_writer_meta(w, "train.cursor", buf)) goto done; // the loader's next sample position
    snprintf(buf, sizeof buf, "%lld", (long long)skipped);
    if (skipped && st_writer_meta(w, "train.skipped", buf)) goto done; // steps without an update (not finite)
    // The EMA accumulates from zero: after k updates its weights sum to
    // 1 - decay^k, so readers scale it by the inverse (as Adam debiases its
    // moments). 0 while there has been no update (readers then take the
    // parameters themselves).
    int64_t k = o->ema_every > 0 ? step / o->ema_every : 0;
    snprintf(buf, sizeof buf, "%.17g", k ? 1.0 / (1.0 - pow(o->ema_decay, (double)k)) : 0.0);
    if (st_writer_meta(w, "train.ema_scale", buf)) goto done;
    snprintf(js, sizeof js,
             "{\"batch\": %d, \"lr\": %.17g, \"warmup\": %lld, \"lr_end\": %.17g, \"beta1\": %.17g, \"beta2\": %.17g, "
             "\"eps\": %.17g, \"weight_decay\": %.17g, \"clip\": %.17g, \"ema_decay\": %.17g, \"ema_every\": %lld, "
             "\"caption_dropout\": %.17g}",
             o->batch, o->lr, (long long)o->warmup, o->lr_end, o->beta1, o->beta2, o->eps, o->weight_decay, o->clip,
             o->ema_decay, (long long)o->ema_every, o->caption_dropout);
    if (st_writer_meta(w, "train.opts", js)) goto done;
    // 16-bit precision only, so that an fp32 checkpoint stays what it was
    if (h && (st_writer_meta(w, "train.precision", prior_precision_name(m->prec)) || !(gjs = gscale_to_json(&h->g)) ||
              st_writer_meta(w, "train.grad_scale", gjs)))
        goto done;
    if (prior_add_tensors(m, w, "", params, ST_F32)) goto done;
    for (int i = 0; i < 3; i++)
        if (prior_add_tensors(m, w, STATE[i], full[i], ST_F32)) goto done;
    if (d->psgd) { // PowerSGD only: its rank, and each rank's error feedback
        const int64_t shape[2] = {d->K, d->psgd->n_err};
        snprintf(buf, sizeof buf, "%d", d->psgd->rank);
        if (st_writer_meta(w, "train.powersgd", buf) ||
            st_writer_add(w, PSGD_ERROR, ST_F32, psgd_err, 2, shape))
            goto done;
    }
    rc = st_writer_save(w, path);
done:
    st_writer_free(w);
    dalle_free(gjs);
    dalle_free(dec);
    dalle_free(tmp);
    return rc;
}

static int read_kept(const st_file *f, prior_train_opts *o) {
    const char *js = st_meta(f, "train.opts");
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    if (!j) return dalle_seterr("%s: metadata 'train.opts' missing or not JSON", f->path);
    double v[11];
    int rc = DALLE_OK;
    for (int k = 0; k < 11; k++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, KEPT[k]);
        if (!cJSON_IsNumber(e)) {
            rc = dalle_seterr("%s: metadata 'train.opts': '%s' missing or not a number", f->path, KEPT[k]);
            break;
        }
        v[k] = e->valuedouble;
    }
    // caption_dropout came later: a checkpoint without it had none
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(j, "caption_dropout");
    o->caption_dropout = cJSON_IsNumber(cd) ? cd->valuedouble : 0.0;
    cJSON_Delete(j);
    if (rc) return rc;
    o->batch = (int)v[0], o->lr = v[1], o->warmup = (int64_t)v[2], o->lr_end = v[3], o->beta1 = v[4];
    o->beta2 = v[5], o->eps = v[6], o->weight_decay = v[7], o->clip = v[8], o->ema_decay = v[9];
    o->ema_every = (int64_t)v[10];
    return DALLE_OK;
}

// With the CUDA backend: DALLE_ERR, with the numbers, when a run of config c
// with o's batch, micro-batch, precision, checkpointing and data-parallel
// mode on K ranks would not fit in the GPU's free memory. The bytes come from
// the size tables (prior_costs_compute, prior_rank_costs_compute) and the
// trainer's layout: what lives in backend memory (the 16-bit weights and
// Adam moments of mixed precision stay on the host).
static int fit_check(const prior_config *c, const prior_train_opts *o, int K) {
    int b = o->batch / K, mb = o->micro_batch > 0 ? o->micro_batch : b;
    if (backend()->kind == BACKEND_CPU || b < 1 || mb < 1 || b % mb) return DALLE_OK; // bad sizes: refused later
    prior_costs k;
    prior_rank_costs r;
    const int half = o->precision != PRIOR_FP32, ck = o->checkpoint_acts;
    if (prior_costs_compute(c, mb, 1, &k) || prior_rank_costs_compute(c, o->dp == DP_SHARD ? K : 1, o->precision, &r))
        return DALLE_ERR;
    const int64_t n = k.params, s = r.shard, T = (int64_t)c->text_len + (int64_t)c->grid * c->grid;
    // weights (16-bit: the fp32 rest, the 16-bit matrices and the master), gradients, Adam's moments, the EMA
    int64_t need = (half ? 4 * (n - k.params16) + 2 * k.params16 + 4 * s : 4 * n) + r.bytes_grads + r.bytes_adam;
    need += 4 * s;
    need += half ? (ck ? k.bytes_acts_ckpt16 : k.bytes_acts16) : (ck ? k.bytes_acts_ckpt : k.bytes_acts);
    need += 24 * mb * T + 4 * mb * T;                             // embedding rows, batch ids
    need += 4 * (3 * (T + 1) + k.nnz[0] + k.nnz[1] + k.nnz[2]);   // key lists
    if (b / mb > 1) need += 4 * n;                                // a piece's gradient
    char what[160];
    snprintf(what, sizeof what, "prior train (%s, micro-batch %d%s)", prior_precision_name(o->precision), mb,
             ck ? ", activation checkpointing" : "");
    return backend_check_fit(what, need,
                             "use a smaller --micro-batch, --checkpoint-acts, --precision bf16, or --device cpu");
}

// A new model for checkpoint f, at its precision, with its parameters when
// fp32 (a 16-bit model gets them in load_state); sets the step, the skipped
// steps, the record count and the settings kept across --resume.
static prior_model *load_checkpoint(const st_file *f, int64_t *step, int64_t *skipped, int64_t *records,
                                    prior_train_opts *o, int K) {
    prior_model *m = NULL;
    prior_config cfg;
    long long st = 0, sd = 0, rec = 0, sk = 0;
    if (prior_config_from_file(f, &cfg) || st_meta_int(f, "train.step", &st) || st_meta_int(f, "train.seed", &sd) ||
        st_meta_int(f, "train.records", &rec) || read_kept(f, o))
        return NULL;
    if (st_meta(f, "train.skipped") && st_meta_int(f, "train.skipped", &sk)) return NULL;
    long long ps = 0;
    if (st_meta(f, "train.powersgd") && st_meta_int(f, "train.powersgd", &ps)) return NULL;
    o->powersgd = (int)ps;
    const char *prec = st_meta(f, "train.precision");
    o->precision = PRIOR_FP32;
    if (prec && prior_precision_parse(prec, &o->precision)) {
        dalle_errprefix("%s: metadata 'train.precision'", f->path);
        return NULL;
    }
    if (fit_check(&cfg, o, K) || !(m = prior_model_new(&cfg, o->precision))) return NULL;
    if (o->precision == PRIOR_FP32 && prior_read_tensors(m, f, "", m->params)) {
        prior_model_free(m);
        return NULL;
    }
    *step = st;
    *skipped = sk;
    *records = rec;
    o->seed = (uint64_t)sd;
    o->cfg = cfg;
    return m;
}

// This rank's part of the EMA and Adam moments of checkpoint f (the whole
// tensors pass through d->grad); in 16-bit precision (h) also the master
// weights, the model's weights and the gradient scales.
static int load_state(const st_file *f, prior_model *m, dp_t *d, dp_state *s, half_state *h) {
    if (h) {
        const char *js = st_meta(f, "train.grad_scale");
        char what[600];
        snprintf(what, sizeof what, "%s: metadata 'train.grad_scale'", f->path);
        if (!js) return dalle_seterr("%s missing", what);
        if (gscale_from_json(&h->g, 2 * m->cfg.n_layer, js, what) || prior_read_tensors(m, f, "", d->grad))
            return DALLE_ERR;
        dp_take(d, d->grad, h->master);
        prior_set_params(m, d->grad);
    }
    float *part[3] = {s->ema, s->m, s->v};
    for (int i = 0; i < 3; i++) {
        if (prior_read_tensors(m, f, STATE[i], d->grad)) return DALLE_ERR;
        if (!h || i == 0) {
            dp_take(d, d->grad, part[i]);
            continue;
        }
        uint16_t *q = i == 1 ? h->m : h->v; // exact: the values were decoded from these formats
        backend_sync();                     // (zeroed by an op)
        for (int64_t j = 0; j < d->len; j++)
            q[j] = i == 1 ? f32_to_e6m9(d->grad[d->lo + j]) : f32_to_ue6m10(d->grad[d->lo + j]);
    }
    backend_memset0(d->grad, sizeof(float) * (size_t)d->n_grad);
    return DALLE_OK;
}

// PowerSGD (o->powersgd > 0, docs/training.md): compresses the gradients of
// the blocks' matrices (embeddings, heads, gains and biases are all-reduced
// as they are); when resuming checkpoint f, this rank's error feedback is its
// own row of the checkpoint's when it was written by as many ranks, else the
// mean of its rows (the same run: the ranks' errors act through their mean).
static int psgd_setup(powersgd *p, dp_t *d, const prior_model *m, const prior_train_opts *o, const st_file *f) {
    if (d->sharded)
        return dalle_seterr("--powersgd needs --dp allreduce: it compresses an all-reduce of whole gradients, and "
                            "--dp shard reduce-scatters them");
    int64_t(*mats)[3] = dalle_malloc(sizeof *mats * (size_t)m->n_tensors);
    if (!mats) return DALLE_ERR;
    int n_mat = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        if (t->kind != PT_MATRIX) continue;
        DALLE_ASSERT(t->ndim == 2);
        mats[n_mat][0] = t->offset, mats[n_mat][1] = t->shape[0], mats[n_mat][2] = t->shape[1];
        n_mat++;
    }
    int rc = powersgd_init(p, o->powersgd, m->n_params, (const int64_t(*)[3])mats, n_mat, o->seed);
    dalle_free(mats);
    if (rc) return DALLE_ERR;
    d->psgd = p;
    if (!f) return DALLE_OK;
    const st_tensor *t = st_find(f, PSGD_ERROR);
    if (!t || t->ndim != 2 || t->shape[1] != p->n_err || t->shape[0] < 1)
        return dalle_seterr("%s: tensor '%s' missing or not (ranks, %lld)", f->path, PSGD_ERROR, (long long)p->n_err);
    int64_t K = t->shape[0];
    float *all = dalle_malloc(sizeof(float) * (size_t)(K * p->n_err));
    if (!all) return DALLE_ERR;
    if (st_read_f32(f, PSGD_ERROR, all, 2, t->shape)) {
        dalle_free(all);
        return DALLE_ERR;
    }
    if (K == d->K) {
        memcpy(p->err, all + d->rank * p->n_err, sizeof(float) * (size_t)p->n_err);
    } else {
        for (int64_t j = 0; j < p->n_err; j++) {
            double e = 0;
            for (int64_t k = 0; k < K; k++) e += all[k * p->n_err + j];
            p->err[j] = (float)(e / (double)K);
        }
        if (d->rank == 0)
            dalle_log("PowerSGD: the checkpoint's error feedback of %lld ranks averaged for %d", (long long)K, d->K);
    }
    dalle_free(all);
    return DALLE_OK;
}

// ---------------------------------------------------------------- the loop

// Mean losses over the first n_batches global batches (B) of the held-out
// records, in pieces of b records shared round-robin by the ranks.
static int evaluate(prior_model *m, prior_acts *a, records *val, int B, int b, int64_t n_batches, dp_t *d,
                    int32_t *text, int32_t *image, prior_loss *out) {
    double sum[4] = {0, 0, 0, 0}; // loss, text, image (each times the records), records
    int64_t n = DALLE_MIN(val->total, n_batches * B);
    for (int64_t i = 0, piece = 0; i < n; i += b, piece++) {
        if (piece % d->K != d->rank) continue;
        int nb = (int)DALLE_MIN((int64_t)b, n - i);
        for (int k = 0; k < nb; k++) records_read(val, i + k, text + (int64_t)k * m->L, image + (int64_t)k * m->N);
        prior_loss l;
        if (prior_forward(m, a, text, image, nb, &l)) return DALLE_ERR;
        sum[0] += l.loss * nb, sum[1] += l.text * nb, sum[2] += l.image * nb;
        sum[3] += nb;
    }
    if (d->K > 1 && comm_allreduce_sum_f64(d->c, sum, 4)) return DALLE_ERR;
    *out = (prior_loss){0, 0, 0};
    if (sum[3] > 0) *out = (prior_loss){sum[0] / sum[3], sum[1] / sum[3], sum[2] / sum[3]};
    return DALLE_OK;
}

// 1 when the record at data position pos loses its caption (o->caption_dropout).
static int caption_dropped(const prior_train_opts *o, int64_t pos) {
    if (o->caption_dropout <= 0) return 0;
    uint32_t w[4];
    philox4x32(o->seed, PRIOR_DROP_STREAM, (uint64_t)pos, w);
    return ((double)(w[0] >> 8) + 0.5) / 16777216.0 < o->caption_dropout;
}

// This rank's gradient (n_params) of the sequences at positions pos ..
// pos + pieces*mb - 1: their mean over `pieces` passes of mb sequences (a
// piece's gradient goes to `piece`, then into grad), and their mean losses.
// grad and piece are backend memory; text and image too (written here).
static int rank_gradient(prior_model *m, prior_acts *a, records *data, const prior_train_opts *o, int64_t pos,
                         int mb, int pieces, int32_t *text, int32_t *image, float *grad, float *piece, prior_loss *L) {
    *L = (prior_loss){0, 0, 0};
    backend_memset0(grad, sizeof(float) * (size_t)m->n_params);
    for (int p = 0; p < pieces; p++) {
        for (int j = 0; j < mb; j++) {
            const int64_t at = pos + (int64_t)p * mb + j;
            int32_t *tj = text + (int64_t)j * m->L;
            records_shuffled(data, at, tj, image + (int64_t)j * m->N);
            if (caption_dropped(o, at))
                for (int t = 0; t < m->L; t++) tj[t] = m->Vt - m->L + t; // the empty caption's layout
        }
        prior_loss l;
        if (prior_forward(m, a, text, image, mb, &l)) return DALLE_ERR;
        if (p) backend_memset0(piece, sizeof(float) * (size_t)m->n_params);
        prior_backward(m, a, text, image, mb, p ? piece : grad);
        if (p) axpy(grad, 1.0f, piece, m->n_params);
        L->loss += l.loss, L->text += l.text, L->image += l.image;
    }
    if (pieces > 1) {
        const float inv = 1.0f / (float)pieces;
        backend_sync();
        for (int64_t i = 0; i < m->n_params; i++) grad[i] *= inv;
        L->loss /= pieces, L->text /= pieces, L->image /= pieces;
    }
    return DALLE_OK;
}

// Collective: the checkpoint, with the whole parameters (16-bit precision:
// the master weights, gathered to rank 0 when sharded).
static int save(const char *path, const prior_model *m, dp_t *d, const dp_state *s, const half_state *h,
                const prior_train_opts *o, int64_t step, int64_t skipped, int64_t records) {
    const float *params = h ? h->master : m->params;
    float *tmp = NULL;
    if (h && d->sharded) {
        if (d->rank == 0 && !(tmp = dalle_malloc(sizeof(float) * (size_t)d->n_grad))) return DALLE_ERR;
        if (comm_gather(d->c, h->master, tmp, d->shard, 0)) {
            dalle_free(tmp);
            return DALLE_ERR;
        }
        params = tmp;
    }
    float *err = NULL; // (K, n_err) every rank's PowerSGD error, on rank 0
    if (d->psgd) {
        if (d->rank == 0 && !(err = dalle_malloc(sizeof(float) * (size_t)(d->K * d->psgd->n_err)))) {
            dalle_free(tmp);
            return DALLE_ERR;
        }
        if (comm_gather(d->c, d->psgd->err, err, d->psgd->n_err, 0)) {
            dalle_free(tmp);
            dalle_free(err);
            return DALLE_ERR;
        }
    }
    int rc = save_checkpoint(path, m, d, s, params, h, err, o, step, skipped, records);
    dalle_free(tmp);
    dalle_free(err);
    return rc;
}

// 16-bit precision, after step `step` (1-based): the resblocks' non-finite
// counts of every rank decide the scales and whether the update is skipped;
// 1 and the reason in why (for the log) when it is.
static int overflow_check(half_state *h, prior_acts *a, dp_t *d, int64_t step, char *why, size_t len) {
    int n = h->g.n;
    double cnt[2 * 1024], before[2 * 1024]; // n <= 2 * 1024 layers (prior_config_check)
    for (int r = 0; r < n; r++) cnt[r] = (double)a->nonfinite[r], before[r] = h->g.scale[r];
    if (d->K > 1 && comm_allreduce_sum_f64(d->c, cnt, n)) return DALLE_ERR;
    if (!gscale_update(&h->g, cnt, step)) return 0;
    if (h->g.mode == GSCALE_DYNAMIC) {
        snprintf(why, len, "gradient overflow: loss scale 2^%.0f -> 2^%.0f", log2(before[0]), log2(h->g.scale[0]));
        return 1;
    }
    size_t k = (size_t)snprintf(why, len, "gradient overflow in resblock");
    for (int r = 0, shown = 0; r < n; r++) {
        if (cnt[r] == 0) continue;
        if (shown++ == 3) {
            snprintf(why + k, len - k, " ...");
            break;
        }
        k += (size_t)snprintf(why + k, len - k, " %d (layer %d %s, scale 2^%.2f -> 2^%.2f)", r, r / 2,
                              r % 2 ? "MLP" : "attention", log2(before[r]), log2(h->g.scale[r]));
        if (k >= len) break;
    }
    return 1;
}

int prior_train(const prior_train_opts *opts) {
    prior_train_opts run = *opts, *o = &run;
    prior_model *m = NULL;
    prior_acts *a = NULL;
    st_file *ck = NULL;
    dp_t dp = {0};
    dp_state s = {0};
    half_state hs = {0}, *h = NULL; // h: 16-bit precision
    records data = {0}, val = {0};
    int32_t *text = NULL, *image = NULL;
    float *piece = NULL; // (n_params) a piece's gradient, when a rank's part is computed in several
    int64_t step = 0, kept_records = -1;
    dp_skips skips = {0};
    powersgd psgd = {0};
    int rc = DALLE_ERR, K = comm_size(o->comm), rank = comm_rank(o->comm), lead = rank == 0;
    if (o->resume) {
        if (!(ck = st_open(o->resume)) || !(m = load_checkpoint(ck, &step, &skips.total, &kept_records, o, K)))
            goto done;
        dalle_log("resuming %s at step %lld (seed %llu; its batch, schedule, optimizer and precision settings)",
                  o->resume, (long long)step, (unsigned long long)o->seed);
    } else {
        if (fit_check(&o->cfg, o, K) || !(m = prior_model_new(&o->cfg, o->precision))) return DALLE_ERR;
        if (o->precision == PRIOR_FP32) prior_init(m, o->seed, m->params);
    }
    if (o->batch < 1 || o->n_shards < 1) {
        dalle_seterr("prior train: needs a batch of at least 1 and at least one shard");
        goto done;
    }
    if (!(o->caption_dropout >= 0 && o->caption_dropout < 1)) {
        dalle_seterr("--caption-dropout %g is outside [0, 1)", o->caption_dropout);
        goto done;
    }
    if (o->caption_dropout > 0)
        dalle_log("caption dropout: %g of the records train with the empty caption (for --guidance)", o->caption_dropout);
    if (o->batch % K) {
        if (o->resume)
            dalle_seterr("%s: its batch of %d sequences is not divisible by %d ranks: resume on a number of ranks "
                         "that divides %d", o->resume, o->batch, K, o->batch);
        else dalle_seterr("--batch %d is not divisible by %d ranks (each rank takes batch/ranks)", o->batch, K);
        goto done;
    }
    // The EMA starts at zero and is read debiased (see save_checkpoint).
    if (dp_init(&dp, o->comm, o->dp, m->n_params)) goto done;
    if (m->prec != PRIOR_FP32) {
        h = &hs;
        if (half_state_alloc(&dp, &s, h)) goto done;
        if (!ck) { // a new run: initialised in the flat vector (grad, free yet), which gives the master and the model
            prior_init(m, o->seed, dp.grad);
            dp_take(&dp, dp.grad, h->master);
            prior_set_params(m, dp.grad);
            backend_memset0(dp.grad, sizeof(float) * (size_t)dp.n_grad);
            if (gscale_init(&h->g, o->loss_scale, 2 * m->cfg.n_layer, o->loss_scale_window) ||
                (o->grad_scale_init && gscale_set(&h->g, o->grad_scale_init)))
                goto done;
        }
    } else if (dp_state_alloc(&dp, &s)) {
        goto done;
    }
    if (ck && load_state(ck, m, &dp, &s, h)) goto done;
    if (ck && opts->powersgd && opts->powersgd != o->powersgd)
        dalle_log("--powersgd %d ignored: resuming keeps the checkpoint's (%d; 0: off)", opts->powersgd, o->powersgd);
    if (o->powersgd < 0) {
        dalle_seterr("--powersgd %d: expected a rank of at least 1, or 0 (off)", o->powersgd);
        goto done;
    }
    if (o->powersgd > 0 && psgd_setup(&psgd, &dp, m, o, ck)) goto done;
    st_close(ck);
    ck = NULL;
    const prior_config *c = &m->cfg;
    const shard_info want = {.text_len = c->text_len, .grid = c->grid, .text_vocab = c->text_vocab,
                             .image_vocab = c->image_vocab};
    if (records_open(&data, o->shards, o->n_shards, &want, o->seed)) goto done;
    if (data.total == 0) {
        dalle_seterr("prior train: the shards hold no records");
        goto done;
    }
    if (kept_records >= 0 && kept_records != data.total) {
        dalle_seterr("%s was trained on %lld records, these shards hold %lld: resume needs the same shards",
                     o->resume, (long long)kept_records, (long long)data.total);
        goto done;
    }
    if (o->n_val && records_open(&val, o->val_shards, o->n_val, &want, 0)) goto done;
    // the global batch, this rank's part, and the pieces it computes it in
    int B = o->batch, b = B / K, mb = o->micro_batch > 0 ? o->micro_batch : b, pieces = b / mb;
    if (b % mb) {
        dalle_seterr("--micro-batch %d does not divide the %d sequences of each rank", mb, b);
        goto done;
    }
    if (!(a = prior_acts_new(m, mb, o->checkpoint_acts))) goto done;
    text = backend_alloc(sizeof(int32_t) * (size_t)mb * m->L);
    image = backend_alloc(sizeof(int32_t) * (size_t)mb * m->N);
    if (!text || !image) goto done;
    if (pieces > 1 && !(piece = backend_alloc(sizeof(float) * (size_t)m->n_params))) goto done;
    char *cjs = prior_config_to_json(c);
    dalle_log("prior train: %lld records in %d shards (%lld held out), config %s, %lld parameters, batch %d, "
              "steps %lld, lr %g warm-up %lld -> %g",
              (long long)data.total, o->n_shards, (long long)val.total, cjs ? cjs : "?", (long long)m->n_params, B,
              (long long)o->steps, o->lr, (long long)o->warmup, o->lr_end);
    dalle_free(cjs);
    if (K > 1)
        dalle_log("data parallel: %d ranks (%s) of %d sequences each, --dp %s: each rank updates %lld parameters",
                  K, comm_backend(o->comm), b, dp_mode_name(o->dp), (long long)dp.len);
    if (pieces > 1) dalle_log("each rank's %d sequences in %d pieces of %d (gradient accumulated)", b, pieces, mb);
    if (h)
        dalle_log("mixed precision: %s resblock matrices, activations and gradients, Adam moments in e6m9/ue6m10, "
                  "fp32 master weights; %s gradient scaling (%d scales)", prior_precision_name(m->prec),
                  gscale_mode_name(h->g.mode), h->g.n);
    if (dp.psgd)
        dalle_log("PowerSGD rank %d: %d matrices compressed (%lld floats), error feedback, fixed Gaussian Q; each rank "
                  "all-reduces %lld floats a step instead of %lld",
                  psgd.rank, psgd.n_mat, (long long)psgd.n_err, (long long)powersgd_floats(&psgd),
                  (long long)m->n_params);
    if (o->checkpoint_acts) dalle_log("activation checkpointing: each resblock's internals recomputed in the backward pass");
    char dev[512];
    if (backend()->kind == BACKEND_CPU) dalle_logv("device %s", backend_describe(dev, sizeof dev));
    else dalle_log("device %s", backend_describe(dev, sizeof dev)); // GPU memory in use, all allocated now

    progress_t prog;
    progress_start(&prog, "prior", step, o->steps, step * B * m->T);
    double acc[3] = {0, 0, 0};
    int acc_n = 0; // updates since the last log line
    int64_t stop = o->stop_after > 0 ? DALLE_MIN(o->steps, step + o->stop_after) : o->steps;
    while (step < stop) {
        prior_loss L;
        if (h) {
            for (int r = 0; r < h->g.n; r++) a->grad_mult[r] = (float)h->g.scale[r];
            memset(a->nonfinite, 0, sizeof(int64_t) * (size_t)h->g.n);
        }
        if (rank_gradient(m, a, &data, o, step * B + (int64_t)rank * b, mb, pieces, text, image, dp.grad, piece, &L))
            goto done;
        double st[3] = {L.loss, L.text, L.image}, sumsq;
        if (dp_reduce(&dp, st, 3, &sumsq)) goto done;
        L = (prior_loss){st[0], st[1], st[2]};
        double norm = sqrt(sumsq), lr = prior_lr_at(o, step);
        step++;
        char why[256];
        int over = h ? overflow_check(h, a, &dp, step, why, sizeof why) : 0;
        if (over < 0) goto done;
        int skip = dp_skip_check(&dp, &skips, &prog, step, L.loss, sumsq);
        // an overflow alone: the scales take care of it, so it does not count towards the stop
        if (!skip && over) skip = dp_skip(&dp, &skips, &prog, step, why);
        if (skip < 0) goto done;
        if (!skip) {
            if (o->clip > 0 && norm > o->clip) {
                float k = (float)(o->clip / norm);
                backend_sync();
                for (int64_t i = 0; i < dp.len; i++) dp.own[i] *= k;
            }
            adamw_params hp = {(float)lr, (float)o->beta1, (float)o->beta2, (float)o->eps, (float)o->weight_decay};
            for (int i = 0; i < m->n_tensors; i++) { // this rank's part of each tensor
                const prior_tensor *t = &m->tensors[i];
                int64_t at, n = dp_overlap(&dp, t->offset, t->numel, &at), r = at - dp.lo;
                int decay = t->kind == PT_MATRIX || t->kind == PT_HEAD;
                if (!n) continue;
                const float wd = decay ? hp.weight_decay : 0.0f;
                if (h) adamw_update16(h->master + r, h->m + r, h->v + r, dp.own + r, n, hp.lr, hp.beta1, hp.beta2,
                                      hp.eps, wd, step - skips.total);
                else adamw_update(m->params + at, s.m + r, s.v + r, dp.own + r, n, hp.lr, hp.beta1, hp.beta2, hp.eps,
                                  wd, step - skips.total);
            }
            if (h) {
                const float *full;
                if (dp_gather(&dp, h->master, &full)) goto done;
                prior_set_params(m, full);
            } else if (dp_gather_params(&dp, m->params)) {
                goto done;
            }
            acc[0] += L.loss, acc[1] += L.text, acc[2] += L.image;
            acc_n++;
        }
        if (o->ema_every > 0 && step % o->ema_every == 0)
            ema_update(s.ema, h ? h->master : m->params + dp.lo, dp.len, (float)o->ema_decay);
        char extra[160];
        snprintf(extra, sizeof extra, "loss %.4f text %.4f image %.4f |g| %.2f lr %.2e", L.loss, L.text, L.image, norm,
                 lr);
        progress_update(&prog, step, step * B * m->T, extra);
        if (o->log_every > 0 && (step % o->log_every == 0 || step == stop)) {
            char note[48], scales[64] = "";
            dp_skips_note(&skips, note);
            if (h) {
                double lo, hi;
                gscale_range(&h->g, &lo, &hi);
                if (h->g.mode == GSCALE_DYNAMIC) snprintf(scales, sizeof scales, " loss scale 2^%.0f", lo);
                else snprintf(scales, sizeof scales, " grad scales 2^%.2f..2^%.2f", lo, hi);
            }
            if (lead && acc_n) {
                if (prog.tty) progress_end(&prog);
                printf("step %lld loss %.6f text %.6f image %.6f lr %.3e%s%s\n", (long long)step, acc[0] / acc_n,
                       acc[1] / acc_n, acc[2] / acc_n, lr, scales, note);
                fflush(stdout);
            }
            acc[0] = acc[1] = acc[2] = 0;
            acc_n = 0;
        }
        if (val.total && o->eval_every > 0 && (step % o->eval_every == 0 || step == o->steps)) {
            prior_loss V;
            if (evaluate(m, a, &val, B, mb, o->eval_batches, &dp, text, image, &V)) goto done;
            if (lead) {
                if (prog.tty) progress_end(&prog);
                printf("step %lld held-out loss %.6f text %.6f image %.6f\n", (long long)step, V.loss, V.text, V.image);
                fflush(stdout);
            }
        }
        if (o->save_every > 0 && step % o->save_every == 0 && step < stop)
            if (save(o->out, m, &dp, &s, h, o, step, skips.total, data.total)) goto done;
    }
    progress_end(&prog);
    if (save(o->out, m, &dp, &s, h, o, step, skips.total, data.total)) goto done;
    dalle_log("prior train: done at step %lld, checkpoint %s%s", (long long)step, o->out,
              skips.total ? " (some updates skipped, see the log)" : "");
    rc = DALLE_OK;
done:
    st_close(ck);
    backend_free(piece);
    backend_free(text);
    backend_free(image);
    prior_acts_free(a);
    records_free(&data);
    records_free(&val);
    dp_state_free(&s);
    half_state_free(&hs);
    dp_free(&dp);
    powersgd_free(&psgd);
    prior_model_free(m);
    return rc;
}
