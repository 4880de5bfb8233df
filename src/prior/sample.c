// sample.c: caption -> image codes with a KV cache (prior_sample).
// The caption's L text positions run once, as a batch, and their keys and
// values are shared by every candidate. Then the N image positions run one at
// a time for all candidates together (the matrix products have M = n_cand
// rows). The cache keeps, per layer, only what its mask can reach: row layers
// a ring of the last G+1 image positions, conv layers the last r*G + r + 1,
// column layers all N. Candidate c's draw at image position j is Philox
// (seed, stream c, counter j), so a run is reproducible from its seed. The
// cache and the work buffers are backend memory; the host fills the
// embedding rows of each step and copies them in, copies the logits out, and
// draws the K codes on its threads.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/ops.h"
#include "core/common.h"
#include "core/progress.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "prior/model.h"
#include "prior/sample.h"

prior_sample_opts prior_sample_default_opts(void) {
    return (prior_sample_opts){.temperature = 1.0f, .top_p = 1.0f, .guidance = 1.0f};
}

// Image positions a layer of type TYPE keeps in its ring.
int prior_cache_window(const prior_config *c, prior_layer_type type) {
    int G = c->grid, r = (c->conv_kernel - 1) / 2;
    switch (type) {
    case PRIOR_ROW: return G + 1;
    case PRIOR_COLUMN: return G * G;
    case PRIOR_CONV: return DALLE_MIN(r * G + r + 1, G * G);
    }
    return G * G;
}

typedef struct {
    int K;                // candidates
    float *kt, *vt;       // (n_layer, L, d) the caption's keys and values
    float *ki, *vi;       // layer l at img_off[l]: (K, W[l], d)
    int64_t *img_off;     // (n_layer)
    int *W;               // (n_layer)
    float *x, *ln, *atty; // (K, d)
    float *qkv;           // (K, 3d)
    float *fch, *fcg;     // (K, f)
    float *logits;        // (K, Vi)
    float *s;             // (K*NH, L + N) attention scores
    float *mu, *rs;       // (K) LayerNorm statistics
    int64_t *rows;        // (max(L, K), 3) embedding rows (embed_sum_forward)
    int64_t *hrows;       // (max(L, K), 3) host memory: rows as the host fills them
    float *hlogits;       // (K, Vi) host memory: the logits of the last step
} kv_cache;

// The first n (row, 3) entries of hrows into the backend's rows.
static void upload_rows(kv_cache *c, int64_t n) { backend_copy(c->rows, c->hrows, sizeof(int64_t) * 3 * (size_t)n); }

static void cache_free(kv_cache *c) {
    backend_free(c->kt);
    backend_free(c->ki);
    dalle_free(c->img_off);
    dalle_free(c->W);
    backend_free(c->x);
    backend_free(c->rows);
    dalle_free(c->hrows);
    dalle_free(c->hlogits);
}

static int cache_new(const prior_model *m, int K, kv_cache *c) {
    memset(c, 0, sizeof *c);
    int nl = m->cfg.n_layer, d = m->d;
    c->K = K;
    c->img_off = dalle_malloc(sizeof(int64_t) * (size_t)nl);
    c->W = dalle_malloc(sizeof(int) * (size_t)nl);
    if (!c->img_off || !c->W) goto fail;
    int64_t img = 0;
    for (int l = 0; l < nl; l++) {
        c->W[l] = prior_cache_window(&m->cfg, prior_layer_type_of(&m->cfg, l));
        c->img_off[l] = img;
        img += (int64_t)K * c->W[l] * d;
    }
    c->kt = backend_alloc(sizeof(float) * (size_t)(2 * (int64_t)nl * m->L * d));
    c->ki = backend_alloc(sizeof(float) * (size_t)(2 * img));
    int64_t work = (int64_t)K * (3 * d + 3 * d + 2 * m->f + m->Vi) + (int64_t)K * m->NH * m->T + 2 * (int64_t)K;
    c->x = backend_alloc(sizeof(float) * (size_t)work);
    c->rows = backend_alloc(sizeof(int64_t) * 3 * (size_t)DALLE_MAX(m->L, K));
    c->hrows = dalle_malloc(sizeof(int64_t) * 3 * (size_t)DALLE_MAX(m->L, K));
    c->hlogits = dalle_malloc(sizeof(float) * (size_t)K * (size_t)m->Vi);
    if (!c->kt || !c->ki || !c->x || !c->rows || !c->hrows || !c->hlogits) {
        dalle_errprefix("prior sample: KV cache for %d candidates", K);
        goto fail;
    }
    c->vt = c->kt + (int64_t)nl * m->L * d;
    c->vi = c->ki + img;
    c->ln = c->x + (int64_t)K * d;
    c->atty = c->ln + (int64_t)K * d;
    c->qkv = c->atty + (int64_t)K * d;
    c->fch = c->qkv + (int64_t)K * 3 * d;
    c->fcg = c->fch + (int64_t)K * m->f;
    c->logits = c->fcg + (int64_t)K * m->f;
    c->s = c->logits + (int64_t)K * m->Vi;
    c->mu = c->s + (int64_t)K * m->NH * m->T;
    c->rs = c->mu + K;
    return DALLE_OK;
fail:
    cache_free(c);
    return DALLE_ERR;
}

// The caption: positions 0..L-1 as one batch; fills kt, vt.
static int run_prefix(const prior_model *m, kv_cache *c, const int32_t *text) {
    int L = m->L, d = m->d, f = m->f, nl = m->cfg.n_layer;
    const float *P = m->params;
    float *x = backend_alloc(sizeof(float) * (size_t)L * (6 * d + 2 * f + 2));
    float *p = backend_alloc(sizeof(float) * (size_t)m->NH * L * (L + 1) / 2 + 1);
    if (!x || !p) {
        backend_free(x);
        backend_free(p);
        return DALLE_ERR;
    }
    float *ln = x + (int64_t)L * d, *qkv = ln + (int64_t)L * d, *atty = qkv + (int64_t)L * 3 * d;
    float *fch = atty + (int64_t)L * d, *fcg = fch + (int64_t)L * f, *mu = fcg + (int64_t)L * f, *rs = mu + L;
    for (int t = 0; t < L; t++) {
        c->hrows[3 * t] = m->text_emb + (int64_t)text[t] * d;
        c->hrows[3 * t + 1] = m->text_pos + (int64_t)t * d;
        c->hrows[3 * t + 2] = -1;
    }
    upload_rows(c, L);
    embed_sum_forward(x, P, c->rows, L, 3, d);
    for (int l = 0; l < nl; l++) {
        const prior_block *w = &m->blocks[l];
        const prior_keys *k = &m->keys[prior_layer_type_of(&m->cfg, l)]; // its first L lists are causal text
        layernorm_forward(ln, mu, rs, x, P + w->ln1_w, P + w->ln1_b, L, d);
        linear_forward(qkv, ln, P + w->qkv_w, P + w->qkv_b, L, d, 3 * d, 0);
        copy2d(c->kt + (int64_t)l * L * d, d, qkv + d, 3 * d, L, d);     // the L keys
        copy2d(c->vt + (int64_t)l * L * d, d, qkv + 2 * d, 3 * d, L, d); // and values
        if (l == nl - 1) break; // the last layer's output at text positions is never used
        attention_forward(atty, p, qkv, k->off, k->keys, k->off[L], 1, L, m->NH, m->HS);
        linear_forward(x, atty, P + w->proj_w, P + w->proj_b, L, d, d, 1);
        layernorm_forward(ln, mu, rs, x, P + w->ln2_w, P + w->ln2_b, L, d);
        linear_forward(fch, ln, P + w->fc_w, P + w->fc_b, L, d, f, 0);
        gelu_forward(fcg, fch, (int64_t)L * f);
        linear_forward(x, fcg, P + w->fc2_w, P + w->fc2_b, L, f, d, 1);
    }
    backend_free(x);
    backend_free(p);
    return DALLE_OK;
}

// Image position j for all K candidates: codes (K, N) holds codes < j.
// Leaves the image logits of position j in c->logits (K, Vi), backend memory.
static void run_image_step(const prior_model *m, kv_cache *c, int j, const int32_t *codes) {
    int L = m->L, N = m->N, G = m->G, d = m->d, f = m->f, nl = m->cfg.n_layer, K = c->K;
    int NH = m->NH, HS = m->HS;
    const float *P = m->params;
    float *mup = c->mu, *rsp = c->rs;
    for (int k = 0; k < K; k++) {
        int id = j == 0 ? m->Vi : codes[(int64_t)k * N + j - 1];
        c->hrows[3 * k] = m->image_emb + (int64_t)id * d;
        c->hrows[3 * k + 1] = m->row_emb + (int64_t)(j / G) * d;
        c->hrows[3 * k + 2] = m->col_emb + (int64_t)(j % G) * d;
    }
    upload_rows(c, K); // after the last step's ops, in stream order
    embed_sum_forward(c->x, P, c->rows, K, 3, d);
    for (int l = 0; l < nl; l++) {
        const prior_block *w = &m->blocks[l];
        const prior_keys *kl = &m->keys[prior_layer_type_of(&m->cfg, l)];
        int W = c->W[l];
        layernorm_forward(c->ln, mup, rsp, c->x, P + w->ln1_w, P + w->ln1_b, K, d);
        linear_forward(c->qkv, c->ln, P + w->qkv_w, P + w->qkv_b, K, d, 3 * d, 0);
        // each candidate's key and value into ring row j % W of its (W, d) block
        float *ki = c->ki + c->img_off[l], *vi = c->vi + c->img_off[l];
        copy2d(ki + (int64_t)(j % W) * d, (int64_t)W * d, c->qkv + d, 3 * d, K, d);
        copy2d(vi + (int64_t)(j % W) * d, (int64_t)W * d, c->qkv + 2 * d, 3 * d, K, d);
        // The image keys of position L + j (its list holds all L text keys first).
        const int32_t *img_keys = kl->keys + kl->off[L + j] + L;
        int n_img = kl->off[L + j + 1] - kl->off[L + j] - L;
        const float *kt = c->kt + (int64_t)l * L * d, *vt = c->vt + (int64_t)l * L * d;
        attention_decode(c->atty, c->qkv, kt, vt, ki, vi, img_keys, n_img, L, W, K, NH, HS, c->s);
        linear_forward(c->x, c->atty, P + w->proj_w, P + w->proj_b, K, d, d, 1);
        layernorm_forward(c->ln, mup, rsp, c->x, P + w->ln2_w, P + w->ln2_b, K, d);
        linear_forward(c->fch, c->ln, P + w->fc_w, P + w->fc_b, K, d, f, 0);
        gelu_forward(c->fcg, c->fch, (int64_t)K * f);
        linear_forward(c->x, c->fcg, P + w->fc2_w, P + w->fc2_b, K, f, d, 1);
    }
    layernorm_forward(c->ln, mup, rsp, c->x, P + m->lnf_w, P + m->lnf_b, K, d);
    linear_forward(c->logits, c->ln, P + m->image_head, NULL, K, d, m->Vi, 0);
}

typedef struct {
    float v;
    int i;
} vi_pair;

static int cmp_desc(const void *a, const void *b) {
    float x = ((const vi_pair *)a)->v, y = ((const vi_pair *)b)->v;
    if (x != y) return x < y ? 1 : -1;
    return ((const vi_pair *)a)->i - ((const vi_pair *)b)->i;
}

int prior_sample_logits(const float *logits, int V, const prior_sample_opts *o, uint64_t stream, uint64_t counter,
                        void *work) {
    vi_pair *pv = work; // (V)
    float t = o->temperature > 0 ? o->temperature : 1e-6f;
    for (int i = 0; i < V; i++) pv[i] = (vi_pair){logits[i] / t, i};
    int n = V;
    if ((o->top_k > 0 && o->top_k < V) || o->top_p < 1.0f) {
        qsort(pv, (size_t)V, sizeof *pv, cmp_desc);
        if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    }
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, pv[i].v);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += pv[i].v = expf(pv[i].v - mx);
    if (o->top_p < 1.0f) { // the smallest prefix (sorted) whose mass reaches top_p
        double acc = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            acc += pv[i].v / sum;
            if (acc >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++) sum += pv[i].v;
    }
    uint32_t w[4];
    philox4x32(o->seed, stream, counter, w);
    double u = ((double)(w[0] >> 8) + 0.5) / 16777216.0 * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += pv[i].v;
        if (u < acc) return pv[i].i;
    }
    return pv[n - 1].i;
}

int prior_sample(prior_model *m, const int32_t *text, int n_cand, const prior_sample_opts *o, int32_t *codes) {
    prior_sample_opts opts = o ? *o : prior_sample_default_opts();
    const int guided = opts.guidance != 1.0f;
    for (int t = 0; t < m->L; t++)
        if (text[t] < 0 || text[t] >= m->Vt)
            return dalle_seterr("prior sample: text id %d at position %d is outside [0, %d)", text[t], t, m->Vt);
    if (n_cand < 1) return dalle_seterr("prior sample: %d candidates", n_cand);
    if (!(opts.guidance >= 0 && opts.guidance <= 100))
        return dalle_seterr("prior sample: guidance %g is outside [0, 100]", opts.guidance);
    kv_cache c, u; // the caption's streams, and with guidance the empty caption's
    memset(&u, 0, sizeof u);
    if (cache_new(m, n_cand, &c) != DALLE_OK) return DALLE_ERR;
    if (guided && cache_new(m, n_cand, &u) != DALLE_OK) {
        cache_free(&c);
        return DALLE_ERR;
    }
    const int nt = omp_get_max_threads();
    const int64_t KV = (int64_t)n_cand * m->Vi;
    vi_pair *work = dalle_malloc(sizeof(vi_pair) * (size_t)m->Vi * (size_t)nt); // (threads, Vi)
    int32_t *empty = guided ? dalle_malloc(sizeof(int32_t) * (size_t)m->L) : NULL; // (L) padding everywhere
    if (empty)
        for (int t = 0; t < m->L; t++) empty[t] = m->Vt - m->L + t;
    if (!work || (guided && !empty) || run_prefix(m, &c, text) != DALLE_OK ||
        (guided && run_prefix(m, &u, empty) != DALLE_OK)) {
        dalle_free(empty);
        dalle_free(work);
        cache_free(&c);
        cache_free(&u);
        return DALLE_ERR;
    }
    progress_t pr;
    if (opts.progress) progress_start(&pr, "sample", 0, m->N, 0);
    for (int j = 0; j < m->N; j++) {
        double t0 = opts.step_seconds ? dalle_time() : 0;
        run_image_step(m, &c, j, codes);
        if (guided) run_image_step(m, &u, j, codes);
        backend_copy(c.hlogits, c.logits, sizeof(float) * (size_t)KV); // waits for the step
        if (guided) {
            backend_copy(u.hlogits, u.logits, sizeof(float) * (size_t)KV);
            const float s = opts.guidance;
            for (int64_t i = 0; i < KV; i++) c.hlogits[i] = u.hlogits[i] + s * (c.hlogits[i] - u.hlogits[i]);
        }
        // each candidate's draw depends on (seed, k, j) alone: any thread may make it
        #pragma omp parallel for num_threads(DALLE_MIN(nt, n_cand)) schedule(static)
        for (int k = 0; k < n_cand; k++)
            codes[(int64_t)k * m->N + j] = prior_sample_logits(c.hlogits + (int64_t)k * m->Vi, m->Vi, &opts,
                                                               (uint64_t)k, (uint64_t)j,
                                                               work + (int64_t)omp_get_thread_num() * m->Vi);
        if (opts.step_seconds) opts.step_seconds[j] = dalle_time() - t0;
        if (opts.progress) progress_update(&pr, j + 1, (int64_t)(j + 1) * n_cand, NULL);
        if (opts.on_step) opts.on_step(opts.user, j + 1, m->N);
    }
    if (opts.progress) progress_end(&pr);
    dalle_free(empty);
    dalle_free(work);
    cache_free(&c);
    cache_free(&u);
    return DALLE_OK;
}
