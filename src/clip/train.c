// train.c: the reranker's training loop (train.h). Data order: the records of
// all training shards, concatenated, visited epoch by epoch in the loader's
// permutation (data/records.h); step t takes the sample positions t*B ..
// t*B + B - 1. Memory: the parameters are the model's (clip_params); the
// gradient, Adam's moments and the EMA are one backend block of 4 vectors.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "clip/train.h"
#include "core/common.h"
#include "core/progress.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "data/records.h"
#include "train/optim.h"

enum { EVAL_MAX_BATCHES = 32 };

void clip_train_defaults(clip_train_opts *o, int64_t steps) {
    memset(o, 0, sizeof *o);
    o->cfg = (clip_config){.n_layer = 4, .n_head = 4, .d_head = 32, .mlp_mult = 4, .embed = 128};
    o->batch = 64;
    o->steps = steps;
    o->warmup = 200;
    o->lr = 5e-4;
    o->lr_end = 0;
    o->beta1 = 0.9;
    o->beta2 = 0.98;
    o->eps = 1e-6;
    o->weight_decay = 0.2;
    o->clip = 1;
    o->ema_decay = 0.999;
    o->log_every = 50;
    o->eval_every = 500;
}

double clip_lr_at(const clip_train_opts *o, int64_t t) {
    int64_t warmup = DALLE_MIN(o->warmup, o->steps / 2);
    if (t < warmup) return o->lr * (double)(t + 1) / (double)warmup;
    return cosine_schedule(t - warmup, o->steps - warmup, o->lr, o->lr_end);
}

struct clip_caption_set {
    uint64_t *slot; // (cap) open addressing, linear probing; 0: empty
    int64_t cap;    // a power of two, at least twice the captions
};

// FNV-1a of a caption's L ids, never 0 (the empty slot).
static uint64_t caption_hash(const int32_t *text, int L) {
    uint64_t h = 14695981039346656037ull;
    for (int i = 0; i < L; i++)
        for (int b = 0; b < 4; b++) h = (h ^ (((uint32_t)text[i] >> (8 * b)) & 0xff)) * 1099511628211ull;
    return h ? h : 1;
}

clip_caption_set *clip_caption_set_new(int64_t n) {
    clip_caption_set *s = dalle_calloc(1, sizeof *s);
    if (!s) return NULL;
    for (s->cap = 16; s->cap < 2 * n; s->cap *= 2) {}
    if (!(s->slot = dalle_calloc((size_t)s->cap, sizeof *s->slot))) {
        dalle_free(s);
        return NULL;
    }
    return s;
}

void clip_caption_set_free(clip_caption_set *s) {
    if (!s) return;
    dalle_free(s->slot);
    dalle_free(s);
}

// The slot of hash h: its own, or the empty one where it would go.
static int64_t caption_slot(const clip_caption_set *s, uint64_t h) {
    int64_t i = (int64_t)(h & (uint64_t)(s->cap - 1));
    while (s->slot[i] && s->slot[i] != h) i = (i + 1) & (s->cap - 1);
    return i;
}

void clip_caption_set_add(clip_caption_set *s, const int32_t *text, int L) {
    const uint64_t h = caption_hash(text, L);
    s->slot[caption_slot(s, h)] = h;
}

int clip_caption_set_has(const clip_caption_set *s, const int32_t *text, int L) {
    const uint64_t h = caption_hash(text, L);
    return s->slot[caption_slot(s, h)] == h;
}

// Edit e of caption text (L ids) into out, in the order clip_hard_negative
// counts them: first the replacements (a swappable position, in order, by
// each other word of its group, in the swap lists' order), then the
// exchanges (positions p < q of one group holding different words). 0 when
// there is no edit e (out then holds text).
static int apply_edit(const int32_t *text, int L, const int *group_of, const int32_t *swap_ids,
                      const int *swap_group, int n_swap, int64_t e, int32_t *out) {
    memcpy(out, text, sizeof(int32_t) * (size_t)L);
    for (int p = 0; p < L; p++) {
        const int g = group_of[text[p]];
        if (g < 0) continue;
        for (int i = 0; i < n_swap; i++)
            if (swap_group[i] == g && swap_ids[i] != text[p] && e-- == 0) return out[p] = swap_ids[i], 1;
    }
    for (int p = 0; p < L; p++)
        for (int q = p + 1; q < L && group_of[text[p]] >= 0; q++)
            if (group_of[text[q]] == group_of[text[p]] && text[q] != text[p] && e-- == 0)
                return out[p] = text[q], out[q] = text[p], 1;
    return 0;
}

int clip_hard_negative(const int32_t *text, int L, const int *group_of, const int32_t *swap_ids,
                       const int *swap_group, int n_swap, const clip_caption_set *known, uint64_t seed,
                       int64_t step, int k, int32_t *out) {
    int64_t n = 0; // the edits whose caption is known
    for (int64_t e = 0; apply_edit(text, L, group_of, swap_ids, swap_group, n_swap, e, out); e++)
        n += !known || clip_caption_set_has(known, out, L);
    if (n == 0) return 0;
    uint32_t u[4];
    philox4x32(seed ^ 0x6e656763u, (uint64_t)step, (uint64_t)k, u); // "negc"
    int64_t pick = (int64_t)((((uint64_t)u[0] << 32) | u[1]) % (uint64_t)n);
    for (int64_t e = 0; apply_edit(text, L, group_of, swap_ids, swap_group, n_swap, e, out); e++)
        if ((!known || clip_caption_set_has(known, out, L)) && pick-- == 0) return 1;
    DALLE_ASSERT(0);
    return 0;
}

int clip_drop_word(int32_t *text, int L, int Vt, const int32_t *drop_ids, int n_drop, double p, uint64_t seed,
                   int64_t step, int k) {
    uint32_t u[4];
    philox4x32(seed ^ 0x64726f70u, (uint64_t)step, (uint64_t)k, u); // "drop"
    if ((double)u[0] / 4294967296.0 >= p) return 0;
    int pos[256], n = 0; // the caption's drop words (the first 256)
    for (int i = 0; i < L && n < 256; i++)
        for (int j = 0; j < n_drop; j++)
            if (text[i] == drop_ids[j]) pos[n++] = i;
    if (n == 0) return 0;
    const int at = pos[u[1] % (uint32_t)n];
    for (int i = at; i < L - 1; i++) text[i] = text[i + 1] >= Vt ? Vt + i : text[i + 1];
    text[L - 1] = Vt + L - 1;
    return 1;
}

// group_of (text_vocab + L entries, every text id): each id's swap group,
// -1 for none, from o's swap lists; DALLE_ERR naming the bad id.
static int swap_table(const clip_train_opts *o, int text_vocab, int L, int *group_of) {
    for (int i = 0; i < text_vocab + L; i++) group_of[i] = -1;
    for (int i = 0; i < o->n_swap; i++) {
        const int32_t id = o->swap_ids[i];
        if (id < 0 || id >= text_vocab)
            return dalle_seterr("clip train: swap id %d is not a BPE id (the shards' text vocabulary is %d)", id,
                                text_vocab);
        if (group_of[id] >= 0) return dalle_seterr("clip train: swap id %d is in the swap lists twice", id);
        if (o->swap_group[i] < 0) return dalle_seterr("clip train: swap group %d is negative", o->swap_group[i]);
        group_of[id] = o->swap_group[i];
    }
    for (int i = 0; i < o->n_swap; i++) {
        int size = 0;
        for (int j = 0; j < o->n_swap; j++) size += o->swap_group[j] == o->swap_group[i];
        if (size < 2)
            return dalle_seterr("clip train: swap id %d is alone in its group (a word needs another to stand in "
                                "for it)", o->swap_ids[i]);
    }
    return DALLE_OK;
}

// The held-out loss and in-batch accuracy: the mean over the first batches of
// B records of the held-out shard's fixed shuffled order (records that follow
// each other in a shard often share an image: the captions of one scene), as
// many whole batches as there are, at most EVAL_MAX_BATCHES (one smaller
// batch when the shard holds fewer than B), no gradient.
static int evaluate(clip_model *m, clip_acts *a, records *val, int B, int32_t *text, int32_t *codes, double *loss,
                    double *acc) {
    const int L = val->info.text_len, N = val->info.n_image;
    int b = (int)DALLE_MIN((int64_t)B, val->total);
    int64_t n_batches = DALLE_MIN(val->total / b, (int64_t)EVAL_MAX_BATCHES);
    *loss = *acc = 0;
    for (int64_t i = 0; i < n_batches; i++) {
        for (int k = 0; k < b; k++) records_shuffled(val, i * b + k, text + (int64_t)k * L, codes + (int64_t)k * N);
        double l_acc;
        double l = clip_step(m, a, text, b, codes, b, NULL, &l_acc);
        if (!isfinite(l)) return dalle_seterr("clip train: the held-out loss is not finite");
        *loss += l / (double)n_batches, *acc += l_acc / (double)n_batches;
    }
    return DALLE_OK;
}

// Evaluates the EMA weights: they take the parameters' place for the time of
// it (the parameters wait in `spare`, n floats of backend memory).
static int evaluate_ema(clip_model *m, clip_acts *a, records *val, int B, int32_t *text, int32_t *codes,
                        const float *ema, float *spare, double *loss, double *acc) {
    float *params = clip_params(m);
    const size_t bytes = sizeof(float) * (size_t)clip_param_count(m);
    backend_copy(spare, params, bytes);
    backend_copy(params, ema, bytes);
    int rc = evaluate(m, a, val, B, text, codes, loss, acc);
    backend_copy(params, spare, bytes);
    return rc;
}

int clip_train(const clip_train_opts *o) {
    records data = {0}, val = {0};
    clip_model *m = NULL;
    clip_acts *a = NULL;
    float *state = NULL; // backend: grad, adam m, adam v, ema (n each)
    int32_t *text = NULL, *codes = NULL;
    int *group_of = NULL;
    clip_caption_set *known = NULL;
    int rc = DALLE_ERR;
    const int B = o->batch;
    if (B < 2 || o->n_shards < 1 || o->steps < 1 || !o->out)
        return dalle_seterr("clip train: needs a batch of at least 2 (in-batch negatives), at least one shard, "
                            "at least one step and an output file");
    if (!(o->drop_p >= 0 && o->drop_p <= 1) || (o->drop_p > 0 && o->n_drop < 1))
        return dalle_seterr("clip train: word dropout needs a probability in [0, 1] (not %g) and drop words",
                            o->drop_p);
    if (records_open(&data, o->shards, o->n_shards, NULL, o->seed)) goto done;
    if (data.total == 0) {
        dalle_seterr("clip train: the shards hold no records");
        goto done;
    }
    if (o->val && records_open(&val, &o->val, 1, &data.info, 0)) goto done;
    if (o->val && val.total == 0) {
        dalle_seterr("%s: no records to hold out", o->val);
        goto done;
    }
    clip_config cfg = o->cfg;
    cfg.text_len = data.info.text_len, cfg.text_vocab = data.info.text_vocab;
    cfg.grid = data.info.grid, cfg.image_vocab = data.info.image_vocab;
    if (!(group_of = dalle_malloc(sizeof(int) * (size_t)(cfg.text_vocab + cfg.text_len))) ||
        swap_table(o, cfg.text_vocab, cfg.text_len, group_of))
        goto done;
    for (int i = 0; i < o->n_drop; i++)
        if (o->drop_ids[i] < 0 || o->drop_ids[i] >= cfg.text_vocab) {
            dalle_seterr("clip train: drop id %d is not a BPE id (the shards' text vocabulary is %d)", o->drop_ids[i],
                         cfg.text_vocab);
            goto done;
        }
    const int NT_max = o->n_swap ? 2 * B : B; // the pairs' captions, then at most one hard negative each
    if (!(m = clip_new(&cfg, o->seed)) || !(a = clip_acts_new(m, B, NT_max))) goto done;
    const int64_t n = clip_param_count(m);
    const int L = cfg.text_len, N = cfg.grid * cfg.grid;
    float *params = clip_params(m);
    if (!(state = backend_alloc(4 * sizeof(float) * (size_t)n))) goto done;
    float *grad = state, *adam_m = state + n, *adam_v = state + 2 * n, *ema = state + 3 * n;
    backend_memset0(state, 3 * sizeof(float) * (size_t)n);
    backend_copy(ema, params, sizeof(float) * (size_t)n);
    text = dalle_malloc(sizeof(int32_t) * (size_t)NT_max * L);
    codes = dalle_malloc(sizeof(int32_t) * (size_t)B * N);
    if (!text || !codes) goto done;
    dalle_log("clip train: %lld records in %d shards (%lld held out), %d layers of %d heads of %d, MLP %dd, E %d, "
              "L %d, Vt %d, %dx%d codes of %d; %lld parameters, batch %d, steps %lld, lr %g warm-up %lld -> %g",
              (long long)data.total, o->n_shards, (long long)val.total, cfg.n_layer, cfg.n_head, cfg.d_head,
              cfg.mlp_mult, cfg.embed, L, cfg.text_vocab, cfg.grid, cfg.grid, cfg.image_vocab, (long long)n, B,
              (long long)o->steps, o->lr, (long long)DALLE_MIN(o->warmup, o->steps / 2), o->lr_end);
    if (o->n_swap) {
        // the training captions: hard negatives are taken among them
        if (!(known = clip_caption_set_new(data.total))) goto done;
        for (int64_t i = 0; i < data.total; i++) {
            records_read(&data, i, text, codes);
            clip_caption_set_add(known, text, L);
        }
        dalle_log("clip train: hard negatives from %d swappable words, among the captions of the %lld records",
                  o->n_swap, (long long)data.total);
    }

    progress_t prog;
    progress_start(&prog, "clip", 0, o->steps, 0);
    double sum_loss = 0, sum_acc = 0, sum_neg = 0, sum_drop = 0, t_log = dalle_time();
    int64_t n_log = 0;
    for (int64_t step = 0; step < o->steps;) {
        for (int k = 0; k < B; k++)
            records_shuffled(&data, step * B + k, text + (int64_t)k * L, codes + (int64_t)k * N);
        for (int k = 0; o->drop_p > 0 && k < B; k++)
            sum_drop += clip_drop_word(text + (int64_t)k * L, L, cfg.text_vocab, o->drop_ids, o->n_drop, o->drop_p,
                                       o->seed, step, k);
        int NT = B;
        for (int k = 0; o->n_swap && k < B; k++)
            NT += clip_hard_negative(text + (int64_t)k * L, L, group_of, o->swap_ids, o->swap_group, o->n_swap, known,
                                     o->seed, step, k, text + (int64_t)NT * L);
        sum_neg += NT - B;
        backend_memset0(grad, sizeof(float) * (size_t)n);
        double acc, loss = clip_step(m, a, text, NT, codes, B, grad, &acc), norm = sqrt(grad_sumsq(grad, n));
        if (!isfinite(loss) || !isfinite(norm)) {
            dalle_seterr("clip train: the loss or the gradient is not finite at step %lld (try a lower --lr)",
                         (long long)step + 1);
            goto done;
        }
        if (o->clip > 0 && norm > o->clip) {
            const float k = (float)(o->clip / norm);
            backend_sync();
            for (int64_t i = 0; i < n; i++) grad[i] *= k;
        }
        const double lr = clip_lr_at(o, step);
        step++;
        for (int i = 0; i < clip_n_tensors(m); i++) {
            const char *name;
            int64_t off, len;
            int decay;
            clip_tensor(m, i, &name, &off, &len, &decay);
            adamw_update(params + off, adam_m + off, adam_v + off, grad + off, len, (float)lr, (float)o->beta1,
                         (float)o->beta2, (float)o->eps, decay ? (float)o->weight_decay : 0.0f, step);
        }
        ema_update(ema, params, n, (float)DALLE_MIN(o->ema_decay, (1.0 + (double)step) / (10.0 + (double)step)));
        sum_loss += loss, sum_acc += acc, n_log++;
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f acc %.3f |g| %.2f lr %.2e", loss, acc, norm, lr);
        progress_update(&prog, step, step * B, extra);
        if (o->log_every > 0 && (step % o->log_every == 0 || step == o->steps)) {
            double now = dalle_time();
            if (prog.tty) progress_end(&prog);
            printf("step %lld loss %.6f acc %.4f lr %.3e items/s %.1f", (long long)step, sum_loss / (double)n_log,
                   sum_acc / (double)n_log, lr, (double)(n_log * B) / DALLE_MAX(now - t_log, 1e-9));
            if (o->n_swap) printf(" hard negatives %.1f", sum_neg / (double)n_log);
            if (o->drop_p > 0) printf(" words dropped %.1f", sum_drop / (double)n_log);
            printf("\n");
            fflush(stdout);
            sum_loss = sum_acc = sum_neg = sum_drop = 0, n_log = 0, t_log = now;
        }
        if (val.total && o->eval_every > 0 && (step % o->eval_every == 0 || step == o->steps)) {
            double vl, va;
            if (evaluate_ema(m, a, &val, B, text, codes, ema, grad, &vl, &va)) goto done;
            if (prog.tty) progress_end(&prog);
            printf("step %lld held-out loss %.6f acc %.4f (EMA weights)\n", (long long)step, vl, va);
            fflush(stdout);
        }
        if (o->save_every > 0 && step % o->save_every == 0 && step < o->steps && clip_save(m, ema, o->out)) goto done;
    }
    progress_end(&prog);
    if (clip_save(m, ema, o->out)) goto done;
    dalle_log("clip train: done, %s (the EMA weights)", o->out);
    rc = DALLE_OK;
done:
    backend_free(state);
    dalle_free(group_of);
    clip_caption_set_free(known);
    dalle_free(text);
    dalle_free(codes);
    clip_acts_free(a);
    clip_free(m);
    records_free(&data);
    records_free(&val);
    return rc;
}
