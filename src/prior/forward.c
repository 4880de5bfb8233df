// forward.c: the prior's forward and backward passes over a batch (see
// model.h for the activations and docs/prior.md for the model). Every op is
// a call into the backend (backend/ops.h); this file only wires them.
#include <math.h>
#include <string.h>

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

int prior_forward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                  prior_loss *loss) {
    DALLE_ASSERT(B >= 1 && B <= a->B);
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
    // Embeddings.
    float *x0 = a->x;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < BT; r++) {
        int b = (int)(r / T), t = (int)(r % T);
        float *o = x0 + r * d;
        if (t < L) {
            const float *e = P + m->text_emb + (int64_t)text[b * L + t] * d, *p = P + m->text_pos + (int64_t)t * d;
            for (int c = 0; c < d; c++) o[c] = e[c] + p[c];
        } else {
            int j = t - L, id = j == 0 ? m->Vi : image[(int64_t)b * N + j - 1];
            const float *e = P + m->image_emb + (int64_t)id * d, *rw = P + m->row_emb + (int64_t)(j / G) * d,
                        *cl = P + m->col_emb + (int64_t)(j % G) * d;
            for (int c = 0; c < d; c++) o[c] = e[c] + rw[c] + cl[c];
        }
    }
    // Blocks.
    for (int l = 0; l < nl; l++) {
        const prior_block *w = &m->blocks[l];
        prior_layer_type type = prior_layer_type_of(&m->cfg, l);
        const prior_keys *k = &m->keys[type];
        float *x = a->x + (int64_t)l * BT * d, *xn = x + BT * d;
        float *ln1 = a->ln1 + (int64_t)l * BT * d, *ln2 = a->ln2 + (int64_t)l * BT * d;
        float *qkv = a->qkv + (int64_t)l * BT * 3 * d, *atty = a->atty + (int64_t)l * BT * d;
        float *xmid = a->xmid + (int64_t)l * BT * d;
        float *fch = a->fch + (int64_t)l * BT * f, *fcg = a->fcg + (int64_t)l * BT * f;
        layernorm_forward(ln1, a->mu1 + l * BT, a->rs1 + l * BT, x, P + w->ln1_w, P + w->ln1_b, BT, d);
        linear_forward(qkv, ln1, P + w->qkv_w, P + w->qkv_b, BT, d, 3 * d, 0);
        if (m->dense)
            attention_dense_forward(atty, qkv, m, type, B);
        else
            attention_forward(atty, a->att + a->att_off[l], qkv, k->off, k->keys, k->nnz, B, T, m->NH, m->HS);
        memcpy(xmid, x, sizeof(float) * (size_t)(BT * d));
        linear_forward(xmid, atty, P + w->proj_w, P + w->proj_b, BT, d, d, 1);
        layernorm_forward(ln2, a->mu2 + l * BT, a->rs2 + l * BT, xmid, P + w->ln2_w, P + w->ln2_b, BT, d);
        linear_forward(fch, ln2, P + w->fc_w, P + w->fc_b, BT, d, f, 0);
        gelu_forward(fcg, fch, BT * f);
        memcpy(xn, xmid, sizeof(float) * (size_t)(BT * d));
        linear_forward(xn, fcg, P + w->fc2_w, P + w->fc2_b, BT, f, d, 1);
    }
    // Heads and loss.
    layernorm_forward(a->lnf, a->muf, a->rsf, a->x + (int64_t)nl * BT * d, P + m->lnf_w, P + m->lnf_b, BT, d);
    for (int b = 0; b < B; b++) {
        const float *h = a->lnf + (int64_t)b * T * d;
        linear_forward(a->logit_text + (int64_t)b * (L - 1) * m->Vt, h, P + m->text_head, NULL, L - 1, d, m->Vt, 0);
        linear_forward(a->logit_img + (int64_t)b * N * m->Vi, h + (int64_t)L * d, P + m->image_head, NULL, N, d,
                       m->Vi, 0);
        for (int t = 0; t + 1 < L; t++) a->tgt_text[b * (L - 1) + t] = text[b * L + t + 1];
        memcpy(a->tgt_img + (int64_t)b * N, image + (int64_t)b * N, sizeof(int32_t) * (size_t)N);
    }
    double lt = softmax_xent_forward(a->logit_text, a->tgt_text, (int64_t)B * (L - 1), m->Vt) / (B * (L - 1.0));
    double li = softmax_xent_forward(a->logit_img, a->tgt_img, (int64_t)B * N, m->Vi) / ((double)B * N);
    if (loss) *loss = (prior_loss){lt / 8 + 7 * li / 8, lt, li};
    return DALLE_OK;
}

void prior_backward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                    float *grads) {
    DALLE_ASSERT(!m->dense);
    const int L = m->L, N = m->N, T = m->T, G = m->G, d = m->d, f = m->f, nl = m->cfg.n_layer;
    const int64_t BT = (int64_t)B * T;
    const float *P = m->params;
    float *gr = grads;
    softmax_xent_backward(a->logit_text, a->tgt_text, (int64_t)B * (L - 1), m->Vt, (float)(0.125 / (B * (L - 1.0))));
    softmax_xent_backward(a->logit_img, a->tgt_img, (int64_t)B * N, m->Vi, (float)(0.875 / ((double)B * N)));
    float *dln = a->dln, *dx = a->dx;
    memset(dln, 0, sizeof(float) * (size_t)(BT * d));
    for (int b = 0; b < B; b++) {
        const float *h = a->lnf + (int64_t)b * T * d;
        float *dh = dln + (int64_t)b * T * d;
        linear_backward(dh, gr + m->text_head, NULL, a->logit_text + (int64_t)b * (L - 1) * m->Vt, h,
                        P + m->text_head, L - 1, d, m->Vt);
        linear_backward(dh + (int64_t)L * d, gr + m->image_head, NULL, a->logit_img + (int64_t)b * N * m->Vi,
                        h + (int64_t)L * d, P + m->image_head, N, d, m->Vi);
    }
    memset(dx, 0, sizeof(float) * (size_t)(BT * d));
    layernorm_backward(dx, gr + m->lnf_w, gr + m->lnf_b, dln, a->x + (int64_t)nl * BT * d, P + m->lnf_w, a->muf,
                       a->rsf, BT, d);
    for (int l = nl - 1; l >= 0; l--) {
        const prior_block *w = &m->blocks[l];
        const prior_keys *k = &m->keys[prior_layer_type_of(&m->cfg, l)];
        float *x = a->x + (int64_t)l * BT * d;
        float *ln1 = a->ln1 + (int64_t)l * BT * d, *ln2 = a->ln2 + (int64_t)l * BT * d;
        float *qkv = a->qkv + (int64_t)l * BT * 3 * d, *atty = a->atty + (int64_t)l * BT * d;
        float *xmid = a->xmid + (int64_t)l * BT * d;
        float *fch = a->fch + (int64_t)l * BT * f, *fcg = a->fcg + (int64_t)l * BT * f;
        // MLP: dx is d(x_{l+1}), which reaches xmid through the identity path too.
        memset(a->dfc, 0, sizeof(float) * (size_t)(BT * f));
        linear_backward(a->dfc, gr + w->fc2_w, gr + w->fc2_b, dx, fcg, P + w->fc2_w, BT, f, d);
        memset(a->dfc2, 0, sizeof(float) * (size_t)(BT * f));
        gelu_backward(a->dfc2, a->dfc, fch, BT * f);
        memset(dln, 0, sizeof(float) * (size_t)(BT * d));
        linear_backward(dln, gr + w->fc_w, gr + w->fc_b, a->dfc2, ln2, P + w->fc_w, BT, d, f);
        layernorm_backward(dx, gr + w->ln2_w, gr + w->ln2_b, dln, xmid, P + w->ln2_w, a->mu2 + l * BT,
                           a->rs2 + l * BT, BT, d);
        // Attention: dx is now d(xmid).
        memset(a->datty, 0, sizeof(float) * (size_t)(BT * d));
        linear_backward(a->datty, gr + w->proj_w, gr + w->proj_b, dx, atty, P + w->proj_w, BT, d, d);
        memset(a->dqkv, 0, sizeof(float) * (size_t)(BT * 3 * d));
        attention_backward(a->dqkv, a->datty, qkv, a->att + a->att_off[l], k->off, k->keys, k->nnz, B, T, m->NH,
                           m->HS, a->dscratch);
        memset(dln, 0, sizeof(float) * (size_t)(BT * d));
        linear_backward(dln, gr + w->qkv_w, gr + w->qkv_b, a->dqkv, ln1, P + w->qkv_w, BT, d, 3 * d);
        layernorm_backward(dx, gr + w->ln1_w, gr + w->ln1_b, dln, x, P + w->ln1_w, a->mu1 + l * BT, a->rs1 + l * BT,
                           BT, d);
    }
    // Embeddings: scatter-add, split by channels (ids repeat across rows).
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < d; c0 += 16) {
        int c1 = c0 + 16 < d ? c0 + 16 : d;
        for (int64_t r = 0; r < BT; r++) {
            int b = (int)(r / T), t = (int)(r % T);
            const float *g = dx + r * d;
            float *e1, *e2, *e3 = NULL;
            if (t < L) {
                e1 = gr + m->text_emb + (int64_t)text[b * L + t] * d;
                e2 = gr + m->text_pos + (int64_t)t * d;
            } else {
                int j = t - L, id = j == 0 ? m->Vi : image[(int64_t)b * N + j - 1];
                e1 = gr + m->image_emb + (int64_t)id * d;
                e2 = gr + m->row_emb + (int64_t)(j / G) * d;
                e3 = gr + m->col_emb + (int64_t)(j % G) * d;
            }
            for (int c = c0; c < c1; c++) {
                e1[c] += g[c];
                e2[c] += g[c];
                if (e3) e3[c] += g[c];
            }
        }
    }
}
