// forward.c: the contrastive model's passes (clip.h). Each tower (embedding
// sum, n_layer pre-LN blocks, final LayerNorm, the pooled feature) is a
// sequence of ops (backend/ops.h); the pooling is an embed_sum over the
// pooled rows of the final LayerNorm (text: position L-1; image: all N,
// divided by N on the host). The loss head is tiny (NT x B): after
// backend_sync the host projects the (NT, d) and (B, d) features, normalises
// them, forms the NT x B logits and the cross-entropies in double, and hands
// the features' gradient back to the towers' backward passes (dpooled).
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/ops.h"
#include "clip/model.h"
#include "core/common.h"
#include "dalle/dalle.h"

// ---------------------------------------------------------------- towers

// DALLE_ERR naming the sequence and position of the first id of ids (B, T)
// outside [0, V).
static int check_ids(const clip_model *m, int w, const int32_t *ids, int B) {
    const clip_tower *tw = &m->tower[w];
    for (int64_t i = 0; i < (int64_t)B * tw->T; i++)
        if (ids[i] < 0 || ids[i] >= tw->V)
            return dalle_seterr("clip: %s %d at sequence %lld, position %lld is outside [0, %d)",
                                w == CLIP_TEXT ? "text id" : "image code", ids[i], (long long)(i / tw->T),
                                (long long)(i % tw->T), tw->V);
    return DALLE_OK;
}

// Layer l's slices of a tower's activations (x the block's input, xn its output).
typedef struct {
    float *x, *xmid, *xn, *ln1, *ln2, *atty, *mu1, *rs1, *mu2, *rs2, *qkv, *att, *fch, *fcg;
} layer_view;

static layer_view layer_at(const clip_model *m, int w, const clip_tower_acts *t, int l, int B) {
    const int64_t BT = (int64_t)B * m->tower[w].T, d = m->d, f = m->f, k = t->layers == 1 ? 0 : l;
    return (layer_view){t->x + l * BT * d,       t->xmid + k * BT * d, t->x + (l + 1) * BT * d,
                        t->ln1 + k * BT * d,     t->ln2 + k * BT * d,  t->atty + k * BT * d,
                        t->mu1 + k * BT,         t->rs1 + k * BT,      t->mu2 + k * BT,
                        t->rs2 + k * BT,         t->qkv + k * BT * 3 * d,
                        t->att + k * B * m->NH * m->tower[w].nnz,      t->fch + k * BT * f,
                        t->fcg + k * BT * f};
}

// Tower w over ids (B, T), checked: every activation up to t->pooled.
static void tower_forward(clip_model *m, int w, clip_tower_acts *t, const int32_t *ids, int B) {
    const clip_tower *tw = &m->tower[w];
    const int T = tw->T, d = m->d, f = m->f, nl = m->cfg.n_layer;
    const int64_t BT = (int64_t)B * T;
    const float *P = m->params;
    backend_sync(); // the host writes the rows, which an op may still read
    for (int64_t r = 0; r < BT; r++) {
        t->emb_rows[2 * r] = tw->emb + (int64_t)ids[r] * d;
        t->emb_rows[2 * r + 1] = tw->pos + (r % T) * d;
    }
    embed_sum_forward(t->x, P, t->emb_rows, BT, 2, d);
    for (int l = 0; l < nl; l++) {
        const clip_block *b = &tw->blocks[l];
        const layer_view v = layer_at(m, w, t, l, B);
        layernorm_forward(v.ln1, v.mu1, v.rs1, v.x, P + b->ln1_w, P + b->ln1_b, BT, d);
        linear_forward(v.qkv, v.ln1, P + b->qkv_w, P + b->qkv_b, BT, d, 3 * d, 0);
        attention_forward(v.atty, v.att, v.qkv, tw->off, tw->keys, tw->nnz, B, T, m->NH, m->HS);
        backend_copy(v.xmid, v.x, sizeof(float) * (size_t)(BT * d));
        linear_forward(v.xmid, v.atty, P + b->proj_w, P + b->proj_b, BT, d, d, 1);
        layernorm_forward(v.ln2, v.mu2, v.rs2, v.xmid, P + b->ln2_w, P + b->ln2_b, BT, d);
        linear_forward(v.fch, v.ln2, P + b->fc_w, P + b->fc_b, BT, d, f, 0);
        gelu_forward(v.fcg, v.fch, BT * f);
        backend_copy(v.xn, v.xmid, sizeof(float) * (size_t)(BT * d));
        linear_forward(v.xn, v.fcg, P + b->fc2_w, P + b->fc2_b, BT, f, d, 1);
    }
    layernorm_forward(t->lnf, t->muf, t->rsf, t->x + nl * BT * d, P + tw->lnf_w, P + tw->lnf_b, BT, d);
    embed_sum_forward(t->pooled, t->lnf, t->pool_rows, B, tw->pool, d);
}

// Tower w's backward pass from t->dpooled: its parameters' gradients added
// to g. a: the shared backward scratch.
static void tower_backward(clip_model *m, int w, clip_tower_acts *t, clip_acts *a, int B, float *g) {
    const clip_tower *tw = &m->tower[w];
    const int T = tw->T, d = m->d, f = m->f, nl = m->cfg.n_layer;
    const int64_t BT = (int64_t)B * T, nd = sizeof(float) * (size_t)(BT * d), nf = sizeof(float) * (size_t)(BT * f);
    const float *P = m->params;
    float *dx = a->dx, *dln = a->dln;
    backend_memset0(dln, nd);
    embed_sum_backward(dln, t->dpooled, t->pool_rows, B, tw->pool, d);
    backend_memset0(dx, nd);
    layernorm_backward(dx, g + tw->lnf_w, g + tw->lnf_b, dln, t->x + nl * BT * d, P + tw->lnf_w, t->muf, t->rsf, BT,
                       d);
    // dx: the gradient of the block's output on entry, of its input on exit;
    // each LayerNorm's backward adds to it (the identity paths).
    for (int l = nl - 1; l >= 0; l--) {
        const clip_block *b = &tw->blocks[l];
        const layer_view v = layer_at(m, w, t, l, B);
        backend_memset0(a->dfc, nf);
        linear_backward(a->dfc, g + b->fc2_w, g + b->fc2_b, dx, v.fcg, P + b->fc2_w, BT, f, d);
        backend_memset0(a->dfc2, nf);
        gelu_backward(a->dfc2, a->dfc, v.fch, BT * f);
        backend_memset0(dln, nd);
        linear_backward(dln, g + b->fc_w, g + b->fc_b, a->dfc2, v.ln2, P + b->fc_w, BT, d, f);
        layernorm_backward(dx, g + b->ln2_w, g + b->ln2_b, dln, v.xmid, P + b->ln2_w, v.mu2, v.rs2, BT, d);
        backend_memset0(a->datty, nd);
        linear_backward(a->datty, g + b->proj_w, g + b->proj_b, dx, v.atty, P + b->proj_w, BT, d, d);
        backend_memset0(a->dqkv, 3 * nd);
        attention_backward(a->dqkv, a->datty, v.qkv, v.atty, v.att, tw->off, tw->keys, tw->nnz, B, T, m->NH, m->HS,
                           a->dscore);
        backend_memset0(dln, nd);
        linear_backward(dln, g + b->qkv_w, g + b->qkv_b, a->dqkv, v.ln1, P + b->qkv_w, BT, d, 3 * d);
        layernorm_backward(dx, g + b->ln1_w, g + b->ln1_b, dln, v.x, P + b->ln1_w, v.mu1, v.rs1, BT, d);
    }
    embed_sum_backward(g, dx, t->emb_rows, BT, 2, d);
}

// ---------------------------------------------------------------- the head (host)

// After backend_sync: tower w's features feat (B, d) (the pooled rows'
// mean), their projection emb (B, E) normalised to unit length, and the
// length before, norm (B) (at least 1e-12, as torch's F.normalize).
static void head_embed(const clip_model *m, int w, const float *pooled, int B, double *feat, double *emb,
                       double *norm) {
    const int d = m->d, E = m->E;
    const float *proj = m->params + m->tower[w].proj; // (d, E)
    for (int b = 0; b < B; b++) {
        double *x = feat + (int64_t)b * d, *y = emb + (int64_t)b * E, ss = 0;
        for (int i = 0; i < d; i++) x[i] = pooled[(int64_t)b * d + i] / (double)m->tower[w].pool;
        for (int e = 0; e < E; e++) y[e] = 0;
        for (int i = 0; i < d; i++)
            for (int e = 0; e < E; e++) y[e] += x[i] * proj[(int64_t)i * E + e];
        for (int e = 0; e < E; e++) ss += y[e] * y[e];
        norm[b] = fmax(sqrt(ss), 1e-12);
        for (int e = 0; e < E; e++) y[e] /= norm[b];
    }
}

// exp(logit_scale) clamped at 100; *clamped: whether the clamp applies (its
// gradient is then 0).
static double scale_of(const clip_model *m, int *clamped) {
    double s = exp((double)m->params[m->logit_scale]);
    *clamped = s > 100;
    return *clamped ? 100 : s;
}

// The loss of the batch from a->emb: logits (NT, B); the mean over the 2B
// cross-entropies of the rows of the B paired captions (each over the B
// images) and of the columns (each image over the NT captions, the extra
// ones negatives only); their gradient in a->dlogits, acc as clip.h.
static double head_loss(const clip_model *m, clip_acts *a, int NT, int B, double *acc) {
    const int E = m->E;
    int clamped;
    const double s = scale_of(m, &clamped);
    for (int i = 0; i < NT; i++)
        for (int j = 0; j < B; j++) {
            const double *u = a->emb[CLIP_TEXT] + (int64_t)i * E, *v = a->emb[CLIP_IMAGE] + (int64_t)j * E;
            double c = 0;
            for (int e = 0; e < E; e++) c += u[e] * v[e];
            a->logits[(int64_t)i * B + j] = s * c;
        }
    // dir 0: the rows (caption i over the B images), 1: the columns (image i
    // over the NT captions).
    double loss = 0;
    int right = 0;
    memset(a->dlogits, 0, sizeof(double) * (size_t)NT * B);
    for (int dir = 0; dir < 2; dir++)
        for (int i = 0; i < B; i++) {
            const int64_t step = dir ? B : 1, at = dir ? i : (int64_t)i * B, n = dir ? NT : B;
            const double *z = a->logits + at;
            double mx = z[0], sum = 0;
            int arg = 0;
            for (int j = 1; j < n; j++)
                if (z[j * step] > mx) mx = z[j * step], arg = j;
            for (int j = 0; j < n; j++) sum += exp(z[j * step] - mx);
            loss += mx + log(sum) - z[i * step];
            right += arg == i;
            for (int j = 0; j < n; j++)
                a->dlogits[at + j * step] += (exp(z[j * step] - mx) / sum - (j == i)) / (2.0 * B);
        }
    if (acc) *acc = right / (2.0 * B);
    return loss / (2.0 * B);
}

// The head's backward pass from a->dlogits: logit_scale's and the
// projections' gradients added to g (host writes into backend memory after
// backend_sync), the features' gradient into each tower's dpooled.
static void head_backward(clip_model *m, clip_acts *a, int NT, int B, float *g) {
    const int d = m->d, E = m->E, n[2] = {NT, B};
    int clamped;
    const double s = scale_of(m, &clamped);
    double ds = 0;
    for (int64_t k = 0; k < (int64_t)NT * B; k++) ds += a->dlogits[k] * a->logits[k] / s;
    if (!clamped) g[m->logit_scale] += (float)(ds * s);
    // demb: d loss / d unit embeddings; logits = s T I^T.
    for (int w = 0; w < 2; w++) {
        const double *other = a->emb[1 - w];
        for (int i = 0; i < n[w]; i++) {
            double *du = a->demb[w] + (int64_t)i * E;
            for (int e = 0; e < E; e++) du[e] = 0;
            for (int j = 0; j < n[1 - w]; j++) {
                const double c = s * (w == CLIP_TEXT ? a->dlogits[(int64_t)i * B + j] : a->dlogits[(int64_t)j * B + i]);
                for (int e = 0; e < E; e++) du[e] += c * other[(int64_t)j * E + e];
            }
        }
    }
    for (int w = 0; w < 2; w++) {
        const clip_tower *tw = &m->tower[w];
        const float *proj = m->params + tw->proj;
        float *gproj = g + tw->proj;
        clip_tower_acts *t = a->t[w];
        for (int b = 0; b < n[w]; b++) {
            // Through the normalisation: dy = (du - u (u . du)) / |y|.
            const double *u = a->emb[w] + (int64_t)b * E, *x = a->feat[w] + (int64_t)b * d;
            double *dy = a->demb[w] + (int64_t)b * E, dot = 0;
            for (int e = 0; e < E; e++) dot += u[e] * dy[e];
            for (int e = 0; e < E; e++) dy[e] = (dy[e] - u[e] * dot) / a->norm[w][b];
            // y = x . proj: the projection's and the feature's gradients.
            for (int i = 0; i < d; i++) {
                double dx = 0;
                for (int e = 0; e < E; e++) {
                    gproj[(int64_t)i * E + e] += (float)(x[i] * dy[e]);
                    dx += dy[e] * proj[(int64_t)i * E + e];
                }
                t->dpooled[(int64_t)b * d + i] = (float)(dx / tw->pool);
            }
        }
    }
}

// ---------------------------------------------------------------- the interface

// Unit embeddings out (B, E) of ids (B, T) through tower w, in the model's
// inference activations (grown to B).
static int embed(clip_model *m, int w, const int32_t *ids, int B, float *out) {
    if (B < 1) return dalle_seterr("clip: a batch of %d", B);
    if (check_ids(m, w, ids, B) != DALLE_OK) return DALLE_ERR;
    if (!m->infer[w] || m->infer[w]->B < B) {
        clip_tower_acts_free(m->infer[w]);
        if (!(m->infer[w] = clip_tower_acts_new(m, w, B, 1))) return DALLE_ERR;
    }
    const int64_t d = m->d, E = m->E;
    double *h = dalle_malloc(sizeof(double) * (size_t)(B * (d + E + 1)));
    if (!h) return DALLE_ERR;
    tower_forward(m, w, m->infer[w], ids, B);
    backend_sync();
    head_embed(m, w, m->infer[w]->pooled, B, h, h + B * d, h + B * (d + E));
    for (int64_t i = 0; i < B * E; i++) out[i] = (float)h[B * d + i];
    dalle_free(h);
    return DALLE_OK;
}

int clip_embed_text(clip_model *m, const int32_t *text, int B, float *out) {
    return embed(m, CLIP_TEXT, text, B, out);
}

int clip_embed_image(clip_model *m, const int32_t *codes, int B, float *out) {
    return embed(m, CLIP_IMAGE, codes, B, out);
}

double clip_step(clip_model *m, clip_acts *a, const int32_t *text, int NT, const int32_t *codes, int B, float *grad,
                 double *acc) {
    if (B < 1 || B > a->B || NT < B || NT > a->NT) {
        dalle_seterr("clip: a batch of %d pairs and %d captions for activations of %d and %d", B, NT, a->B, a->NT);
        return NAN;
    }
    if (check_ids(m, CLIP_TEXT, text, NT) != DALLE_OK || check_ids(m, CLIP_IMAGE, codes, B) != DALLE_OK) return NAN;
    const int n[2] = {NT, B};
    tower_forward(m, CLIP_TEXT, a->t[CLIP_TEXT], text, NT);
    tower_forward(m, CLIP_IMAGE, a->t[CLIP_IMAGE], codes, B);
    backend_sync(); // the host reads the features and the parameters of the head
    for (int w = 0; w < 2; w++) head_embed(m, w, a->t[w]->pooled, n[w], a->feat[w], a->emb[w], a->norm[w]);
    double loss = head_loss(m, a, NT, B, acc);
    if (grad) {
        head_backward(m, a, NT, B, grad);
        for (int w = 0; w < 2; w++) tower_backward(m, w, a->t[w], a, n[w], grad);
    }
    return loss;
}
