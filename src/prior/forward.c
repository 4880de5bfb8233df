// forward.c: the prior's forward and backward passes over a batch (see
// model.h for the activations and docs/prior.md for the model). Every op is
// a call into the backend (backend/ops.h); this file only wires them. A
// bf16/fp16 model (mixed precision, docs/training.md) computes in fp32 too:
// its products take the 16-bit matrices as they are (linear16_forward and
// _backward: exact products, fp32 sums; bf16 on a GPU's tensor cores), and
// what it stores in 16 bits (a resblock's saved activations, its gradients)
// is rounded where it is produced, so that the computation goes on with the
// stored values. Those conversions and roundings are ops too (to_half,
// from_half, store_half, round_half): on a GPU the data stays there; only
// round_half's count of non-finite values comes back to the host.
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/ops.h"
#include "core/common.h"
#include "dalle/dalle.h"
#include "prior/model.h"

// The dense masked reference attention (tests): every position scores every
// k <= q, masked by prior_mask, one softmax. out (B, T, C).
static void attention_dense_forward(float *out, const float *qkv, const prior_model *m, prior_layer_type type,
                                    int B) {
    int T = m->T, C = m->d, HS = m->HS;
    float scale = 1.0f / sqrtf((float)HS);
    float *s = dalle_malloc(sizeof(float) * (size_t)T);
    DALLE_ASSERT(s);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < m->NH; h++)
            for (int q = 0; q < T; q++) {
                const float *qv = qkv + ((int64_t)b * T + q) * 3 * C + h * HS;
                float mx = -INFINITY, sum = 0;
                for (int k = 0; k < T; k++) {
                    const float *kv = qkv + ((int64_t)b * T + k) * 3 * C + C + h * HS;
                    float d = 0;
                    for (int c = 0; c < HS; c++) d += qv[c] * kv[c];
                    s[k] = prior_mask(&m->cfg, type, q, k) ? d * scale : -INFINITY;
                    mx = s[k] > mx ? s[k] : mx;
                }
                for (int k = 0; k < T; k++) sum += s[k] = expf(s[k] - mx);
                float *o = out + ((int64_t)b * T + q) * C + h * HS;
                memset(o, 0, sizeof(float) * (size_t)HS);
                for (int k = 0; k < T; k++) {
                    const float *vv = qkv + ((int64_t)b * T + k) * 3 * C + 2 * C + h * HS;
                    for (int c = 0; c < HS; c++) o[c] += s[k] / sum * vv[c];
                }
            }
    dalle_free(s);
}

// ---------------------------------------------------------------- pieces

// out (M, n_out) = in (M, n_in) . W^T + b + beta out for the matrix W at flat
// offset ow and the bias at ob: fp32, or W's 16-bit codes (linear16_forward,
// a->wbuf its scratch; in holds values stored in 16 bits).
static void product(const prior_model *m, prior_acts *a, float *out, const float *in, int64_t ow, int64_t ob,
                    int64_t M, int n_in, int n_out, float beta) {
    const float *P = m->params;
    if (m->prec == PRIOR_FP32) linear_forward(out, in, P + ow, P + ob, M, n_in, n_out, beta);
    else linear16_forward(out, in, m->w16 + (ow - m->n32), P + ob, M, n_in, n_out, beta, m->fmt, a->wbuf);
}

// Layer l's internals as fp32 buffers: its slices of the arrays when they
// keep every layer, else the one-layer arrays (prior_acts).
typedef struct {
    float *ln1, *ln2, *qkv, *att, *atty, *fch, *fcg, *mu1, *rs1, *mu2, *rs2;
} layer_bufs;

static layer_bufs layer_at(const prior_model *m, const prior_acts *a, int l, int B) {
    const int64_t BT = (int64_t)B * m->T, d = m->d, f = m->f, k = a->all32 ? l : 0, s = a->checkpoint ? 0 : l;
    return (layer_bufs){a->ln1 + k * BT * d, a->ln2 + k * BT * d, a->qkv + k * BT * 3 * d,
                        a->all32 ? a->att + a->att_off[l] : a->att, a->atty + k * BT * d, a->fch + k * BT * f,
                        a->fcg + k * BT * f, a->mu1 + s * BT, a->rs1 + s * BT, a->mu2 + s * BT, a->rs2 + s * BT};
}

// An internal x (n) just computed by a 16-bit model: stored in 16 bits at h
// (NULL: recomputed, not stored), and x becomes the stored values. Nothing
// in an fp32 model.
static void keep(const prior_model *m, uint16_t *h, float *x, int64_t n) {
    if (m->prec == PRIOR_FP32) return;
    if (h) store_half(h, x, n, m->fmt);
    else round_half(x, n, m->fmt, 0);
}

// A 16-bit model's gradient x (n) just computed by an op, rounded to its
// format, the non-finite values zeroed: their count.
static int64_t round16(const prior_model *m, float *x, int64_t n) { return round_half(x, n, m->fmt, 1); }

// The attention resblock of layer l up to its output projection: ln_1(x),
// qkv, the attention probabilities and output, into v. store: the forward
// pass (a 16-bit model keeps them in 16 bits), else a recomputation.
static void attn_internals(prior_model *m, prior_acts *a, int l, int B, const layer_bufs *v, int store) {
    const prior_block *w = &m->blocks[l];
    const prior_layer_type type = prior_layer_type_of(&m->cfg, l);
    const prior_keys *k = &m->keys[type];
    const int64_t BT = (int64_t)B * m->T, d = m->d;
    const float *P = m->params;
    const int h = store && a->h_ln1;
    layernorm_forward(v->ln1, v->mu1, v->rs1, a->x + l * BT * d, P + w->ln1_w, P + w->ln1_b, BT, (int)d);
    keep(m, h ? a->h_ln1 + l * BT * d : NULL, v->ln1, BT * d);
    product(m, a, v->qkv, v->ln1, w->qkv_w, w->qkv_b, BT, (int)d, (int)(3 * d), 0);
    keep(m, h ? a->h_qkv + l * BT * 3 * d : NULL, v->qkv, BT * 3 * d);
    if (m->dense) {
        attention_dense_forward(v->atty, v->qkv, m, type, B);
    } else {
        attention_forward(v->atty, v->att, v->qkv, k->off, k->keys, k->nnz, B, m->T, m->NH, m->HS);
        keep(m, h ? a->h_att + a->att_off[l] : NULL, v->att, (int64_t)B * m->NH * k->nnz);
    }
    keep(m, h ? a->h_atty + l * BT * d : NULL, v->atty, BT * d);
}

// The MLP resblock of layer l up to its second matrix: ln_2(xmid), fc, and
// GELU, into v. A 16-bit model stores ln_2 and fc and recomputes GELU.
static void mlp_internals(prior_model *m, prior_acts *a, int l, int B, const layer_bufs *v, int store) {
    const prior_block *w = &m->blocks[l];
    const int64_t BT = (int64_t)B * m->T, d = m->d, f = m->f;
    const float *P = m->params;
    const int h = store && a->h_ln2;
    layernorm_forward(v->ln2, v->mu2, v->rs2, a->xmid + l * BT * d, P + w->ln2_w, P + w->ln2_b, BT, (int)d);
    keep(m, h ? a->h_ln2 + l * BT * d : NULL, v->ln2, BT * d);
    product(m, a, v->fch, v->ln2, w->fc_w, w->fc_b, BT, (int)d, (int)f, 0);
    keep(m, h ? a->h_fch + l * BT * f : NULL, v->fch, BT * f);
    gelu_forward(v->fcg, v->fch, BT * f);
    keep(m, NULL, v->fcg, BT * f);
}

int prior_forward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                  prior_loss *loss) {
    DALLE_ASSERT(B >= 1 && B <= a->B);
    DALLE_ASSERT(!m->dense || a->all32);
    const int L = m->L, N = m->N, T = m->T, G = m->G, d = m->d, f = m->f, nl = m->cfg.n_layer;
    const int64_t BT = (int64_t)B * T;
    for (int64_t i = 0; i < (int64_t)B * L; i++)
        if (text[i] < 0 || text[i] >= m->Vt)
            return dalle_seterr("text id %d at sequence %lld, position %lld is outside [0, %d)", text[i],
                                (long long)(i / L), (long long)(i % L), m->Vt);
    for (int64_t i = 0; i < (int64_t)B * N; i++)
        if (image[i] < 0 || image[i] >= m->Vi)
            return dalle_seterr("image code %d at sequence %lld, position %lld is outside [0, %d)", image[i],
                                (long long)(i / N), (long long)(i % N), m->Vi);
    const float *P = m->params;
    // Embeddings: the rows each position sums (text: token, position; image:
    // token, row, column), and the targets, written on the host.
    backend_sync();
    int64_t *rows = a->emb_rows;
    for (int64_t r = 0; r < BT; r++) {
        int b = (int)(r / T), t = (int)(r % T);
        int64_t *o = rows + r * 3;
        if (t < L) {
            o[0] = m->text_emb + (int64_t)text[b * L + t] * d, o[1] = m->text_pos + (int64_t)t * d, o[2] = -1;
        } else {
            int j = t - L, id = j == 0 ? m->Vi : image[(int64_t)b * N + j - 1];
            o[0] = m->image_emb + (int64_t)id * d, o[1] = m->row_emb + (int64_t)(j / G) * d;
            o[2] = m->col_emb + (int64_t)(j % G) * d;
        }
    }
    for (int b = 0; b < B; b++) {
        for (int t = 0; t + 1 < L; t++) a->tgt_text[b * (L - 1) + t] = text[b * L + t + 1];
        memcpy(a->tgt_img + (int64_t)b * N, image + (int64_t)b * N, sizeof(int32_t) * (size_t)N);
    }
    embed_sum_forward(a->x, P, rows, BT, 3, d);
    // Blocks: two resblocks each, their outputs added to the identity path.
    for (int l = 0; l < nl; l++) {
        const prior_block *w = &m->blocks[l];
        const layer_bufs v = layer_at(m, a, l, B);
        float *x = a->x + (int64_t)l * BT * d, *xn = x + BT * d, *xmid = a->xmid + (int64_t)l * BT * d;
        attn_internals(m, a, l, B, &v, 1);
        backend_copy(xmid, x, sizeof(float) * (size_t)(BT * d));
        product(m, a, xmid, v.atty, w->proj_w, w->proj_b, BT, d, d, 1);
        mlp_internals(m, a, l, B, &v, 1);
        backend_copy(xn, xmid, sizeof(float) * (size_t)(BT * d));
        product(m, a, xn, v.fcg, w->fc2_w, w->fc2_b, BT, f, d, 1);
    }
    // Heads and loss.
    layernorm_forward(a->lnf, a->muf, a->rsf, a->x + (int64_t)nl * BT * d, P + m->lnf_w, P + m->lnf_b, BT, d);
    for (int b = 0; b < B; b++) {
        const float *h = a->lnf + (int64_t)b * T * d;
        linear_forward(a->logit_text + (int64_t)b * (L - 1) * m->Vt, h, P + m->text_head, NULL, L - 1, d, m->Vt, 0);
        linear_forward(a->logit_img + (int64_t)b * N * m->Vi, h + (int64_t)L * d, P + m->image_head, NULL, N, d,
                       m->Vi, 0);
    }
    double lt = softmax_xent_forward(a->logit_text, a->tgt_text, (int64_t)B * (L - 1), m->Vt) / (B * (L - 1.0));
    double li = softmax_xent_forward(a->logit_img, a->tgt_img, (int64_t)B * N, m->Vi) / ((double)B * N);
    if (loss) *loss = (prior_loss){lt / 8 + 7 * li / 8, lt, li};
    return DALLE_OK;
}

// ---------------------------------------------------------------- backward

// g (n) += src (n) / s: a resblock's gradient leaving it, unscaled.
static void add_unscaled(float *g, const float *src, int64_t n, float s) { axpy(g, 1.0f / s, src, n); }

// A 16-bit model's resblock r: the gradient dx entering it from the identity
// path, times its multiplier, into in (n), in 16 bits (filtered). Returns
// the non-finite count.
static int64_t scaled_in(const prior_model *m, float *in, const float *dx, int64_t n, float s) {
    backend_memset0(in, sizeof(float) * (size_t)n);
    axpy(in, s, dx, n);
    return round16(m, in, n);
}

// A 16-bit model's resblock r: the gradients of one of its products (or its
// LayerNorm), a weight of nw floats then a bias of nb in a->pgrad, rounded to
// 16 bits, filtered (nothing non-finite reaches the fp32 gradient), and
// unscaled into grads at offsets ow and ob. Returns the non-finite count.
static int64_t flush_params(const prior_model *m, prior_acts *a, int r, float *grads, int64_t ow, int64_t nw,
                            int64_t ob, int64_t nb) {
    int64_t bad = round16(m, a->pgrad, nw + nb);
    add_unscaled(grads + ow, a->pgrad, nw, a->grad_mult[r]);
    add_unscaled(grads + ob, a->pgrad + nw, nb, a->grad_mult[r]);
    return bad;
}

// Zeroes the first n floats of a->pgrad and returns it.
static float *pgrad(prior_acts *a, int64_t n) {
    backend_memset0(a->pgrad, sizeof(float) * (size_t)n);
    return a->pgrad;
}

// A 16-bit model's resblock r: the backward pass of its product with the
// weight at ow (n_out, n_in) and the bias at ob: din (M, n_in) = dout . W in
// 16 bits, the parameter gradients into grads. Returns the non-finite count.
static int64_t linear_backward16(const prior_model *m, prior_acts *a, int r, float *grads, float *din,
                                 const float *dout, const float *in, int64_t ow, int64_t ob, int64_t M, int n_in,
                                 int n_out) {
    const int64_t nw = (int64_t)n_in * n_out;
    backend_memset0(din, sizeof(float) * (size_t)(M * n_in));
    float *pg = pgrad(a, nw + n_out);
    linear16_backward(din, pg, pg + nw, dout, in, m->w16 + (ow - m->n32), M, n_in, n_out, m->fmt, a->wbuf);
    int64_t bad = flush_params(m, a, r, grads, ow, nw, ob, n_out);
    return bad + round16(m, din, M * n_in);
}

// A 16-bit model's resblock r, last: the backward pass of its LayerNorm
// (gain at ow, bias at ob; in (M, d) its input, mean and rstd its
// statistics) from a->dln, and the gradient that leaves the resblock,
// unscaled, added to a->dx; bad: r's non-finite count so far.
static void leave16(const prior_model *m, prior_acts *a, int r, float *grads, const float *in, int64_t ow, int64_t ob,
                    const float *mean, const float *rstd, int64_t M, int64_t bad) {
    const int64_t d = m->d;
    backend_memset0(a->datty, sizeof(float) * (size_t)(M * d));
    float *pg = pgrad(a, 2 * d);
    layernorm_backward(a->datty, pg, pg + d, a->dln, in, m->params + ow, mean, rstd, M, (int)d);
    bad += flush_params(m, a, r, grads, ow, d, ob, d);
    bad += round16(m, a->datty, M * d);
    add_unscaled(a->dx, a->datty, M * d, a->grad_mult[r]);
    a->nonfinite[r] += bad;
}

// The MLP resblock of layer l: dx is d(x_{l+1}) on entry, d(xmid) on return;
// its parameter gradients are added to gr. v holds its internals.
static void mlp_backward(prior_model *m, prior_acts *a, int l, int B, const layer_bufs *v, float *gr) {
    const prior_block *w = &m->blocks[l];
    const int64_t BT = (int64_t)B * m->T, d = m->d, f = m->f;
    const float *P = m->params;
    float *xmid = a->xmid + l * BT * d, *dx = a->dx, *dln = a->dln;
    if (m->prec == PRIOR_FP32) {
        // dx reaches xmid through the identity path too: the LayerNorm adds to it.
        backend_memset0(a->dfc, sizeof(float) * (size_t)(BT * f));
        linear_backward(a->dfc, gr + w->fc2_w, gr + w->fc2_b, dx, v->fcg, P + w->fc2_w, BT, (int)f, (int)d);
        backend_memset0(a->dfc2, sizeof(float) * (size_t)(BT * f));
        gelu_backward(a->dfc2, a->dfc, v->fch, BT * f);
        backend_memset0(dln, sizeof(float) * (size_t)(BT * d));
        linear_backward(dln, gr + w->fc_w, gr + w->fc_b, a->dfc2, v->ln2, P + w->fc_w, BT, (int)d, (int)f);
        layernorm_backward(dx, gr + w->ln2_w, gr + w->ln2_b, dln, xmid, P + w->ln2_w, v->mu2, v->rs2, BT, (int)d);
        return;
    }
    const int r = 2 * l + 1;
    int64_t bad = scaled_in(m, dln, dx, BT * d, a->grad_mult[r]);
    bad += linear_backward16(m, a, r, gr, a->dfc, dln, v->fcg, w->fc2_w, w->fc2_b, BT, (int)f, (int)d);
    backend_memset0(a->dfc2, sizeof(float) * (size_t)(BT * f));
    gelu_backward(a->dfc2, a->dfc, v->fch, BT * f);
    bad += round16(m, a->dfc2, BT * f);
    bad += linear_backward16(m, a, r, gr, dln, a->dfc2, v->ln2, w->fc_w, w->fc_b, BT, (int)d, (int)f);
    leave16(m, a, r, gr, xmid, w->ln2_w, w->ln2_b, v->mu2, v->rs2, BT, bad);
}

// The attention resblock of layer l: dx is d(xmid) on entry, d(x_l) on return.
static void attn_backward(prior_model *m, prior_acts *a, int l, int B, const layer_bufs *v, float *gr) {
    const prior_block *w = &m->blocks[l];
    const prior_keys *k = &m->keys[prior_layer_type_of(&m->cfg, l)];
    const int64_t BT = (int64_t)B * m->T, d = m->d;
    const float *P = m->params;
    float *x = a->x + l * BT * d, *dx = a->dx, *dln = a->dln;
    if (m->prec == PRIOR_FP32) {
        backend_memset0(a->datty, sizeof(float) * (size_t)(BT * d));
        linear_backward(a->datty, gr + w->proj_w, gr + w->proj_b, dx, v->atty, P + w->proj_w, BT, (int)d, (int)d);
        backend_memset0(a->dqkv, sizeof(float) * (size_t)(BT * 3 * d));
        attention_backward(a->dqkv, a->datty, v->qkv, v->atty, v->att, k->off, k->keys, k->nnz, B, m->T, m->NH,
                           m->HS, a->dscratch);
        backend_memset0(dln, sizeof(float) * (size_t)(BT * d));
        linear_backward(dln, gr + w->qkv_w, gr + w->qkv_b, a->dqkv, v->ln1, P + w->qkv_w, BT, (int)d, (int)(3 * d));
        layernorm_backward(dx, gr + w->ln1_w, gr + w->ln1_b, dln, x, P + w->ln1_w, v->mu1, v->rs1, BT, (int)d);
        return;
    }
    const int r = 2 * l;
    int64_t bad = scaled_in(m, dln, dx, BT * d, a->grad_mult[r]);
    bad += linear_backward16(m, a, r, gr, a->datty, dln, v->atty, w->proj_w, w->proj_b, BT, (int)d, (int)d);
    backend_memset0(a->dqkv, sizeof(float) * (size_t)(BT * 3 * d));
    // v->atty: the attention's output as stored in 16 bits (what the projection read)
    attention_backward(a->dqkv, a->datty, v->qkv, v->atty, v->att, k->off, k->keys, k->nnz, B, m->T, m->NH, m->HS,
                       a->dscratch);
    bad += round16(m, a->dqkv, BT * 3 * d);
    bad += linear_backward16(m, a, r, gr, dln, a->dqkv, v->ln1, w->qkv_w, w->qkv_b, BT, (int)d, (int)(3 * d));
    leave16(m, a, r, gr, x, w->ln1_w, w->ln1_b, v->mu1, v->rs1, BT, bad);
}

void prior_backward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                    float *grads) {
    DALLE_ASSERT(!m->dense && B <= a->B);
    (void)text, (void)image; // the forward pass kept the embedding rows and targets they give
    const int L = m->L, N = m->N, T = m->T, d = m->d, f = m->f, nl = m->cfg.n_layer;
    const int64_t BT = (int64_t)B * T;
    const float *P = m->params;
    float *gr = grads;
    softmax_xent_backward(a->logit_text, a->tgt_text, (int64_t)B * (L - 1), m->Vt, (float)(0.125 / (B * (L - 1.0))));
    softmax_xent_backward(a->logit_img, a->tgt_img, (int64_t)B * N, m->Vi, (float)(0.875 / ((double)B * N)));
    float *dln = a->dln, *dx = a->dx;
    backend_memset0(dln, sizeof(float) * (size_t)(BT * d));
    for (int b = 0; b < B; b++) {
        const float *h = a->lnf + (int64_t)b * T * d;
        float *dh = dln + (int64_t)b * T * d;
        linear_backward(dh, gr + m->text_head, NULL, a->logit_text + (int64_t)b * (L - 1) * m->Vt, h,
                        P + m->text_head, L - 1, d, m->Vt);
        linear_backward(dh + (int64_t)L * d, gr + m->image_head, NULL, a->logit_img + (int64_t)b * N * m->Vi,
                        h + (int64_t)L * d, P + m->image_head, N, d, m->Vi);
    }
    backend_memset0(dx, sizeof(float) * (size_t)(BT * d));
    layernorm_backward(dx, gr + m->lnf_w, gr + m->lnf_b, dln, a->x + (int64_t)nl * BT * d, P + m->lnf_w, a->muf,
                       a->rsf, BT, d);
    for (int l = nl - 1; l >= 0; l--) {
        const layer_bufs v = layer_at(m, a, l, B);
        const int64_t dd = (int64_t)BT * d, ff = (int64_t)BT * f;
        // Each resblock's internals: kept in fp32, reloaded from 16 bits
        // (GELU recomputed), or recomputed from the identity path.
        if (a->checkpoint) {
            mlp_internals(m, a, l, B, &v, 0);
        } else if (a->h_ln2) {
            from_half(v.ln2, a->h_ln2 + l * dd, dd, m->fmt);
            from_half(v.fch, a->h_fch + l * ff, ff, m->fmt);
            gelu_forward(v.fcg, v.fch, ff);
            keep(m, NULL, v.fcg, ff);
        }
        mlp_backward(m, a, l, B, &v, gr);
        if (a->checkpoint) {
            attn_internals(m, a, l, B, &v, 0);
        } else if (a->h_ln1) {
            int64_t na = (int64_t)B * m->NH * m->keys[prior_layer_type_of(&m->cfg, l)].nnz;
            from_half(v.ln1, a->h_ln1 + l * dd, dd, m->fmt);
            from_half(v.qkv, a->h_qkv + l * 3 * dd, 3 * dd, m->fmt);
            from_half(v.att, a->h_att + a->att_off[l], na, m->fmt);
            from_half(v.atty, a->h_atty + l * dd, dd, m->fmt);
        }
        attn_backward(m, a, l, B, &v, gr);
    }
    // Embeddings: the rows the forward pass summed, their gradient added to each.
    embed_sum_backward(gr, dx, a->emb_rows, BT, 3, d);
}
