// model.c: the prior's parameters (one block, carved by the size table in
// canonical order: docs/prior.md; a bf16/fp16 model keeps the blocks'
// matrices in a second, 16-bit block), its initialisation, the key lists of
// the three attention patterns, and the activation memory of a training batch.
// What the ops read or write (the fp32 parameters, the key lists, the
// activations) is backend memory (backend.h).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/ops.h"
#include "core/common.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "prior/model.h"

// Appends a tensor to the table; its offset is written to *slot by layout().
static void add_tensor(prior_model *m, int64_t **slots, const char *name, int64_t r, int64_t c,
                       prior_tensor_kind kind, int resid, int64_t *slot) {
    slots[m->n_tensors] = slot;
    prior_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    t->numel = c ? r * c : r;
    t->kind = kind;
    t->resid = resid;
    m->n_params += t->numel;
}

// The flat layout (see prior_model): canonical order, or in a 16-bit model
// the fp32 tensors first and the blocks' matrices after them.
static void layout(prior_model *m, int64_t **slots) {
    int64_t at = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < m->n_tensors; i++) {
            prior_tensor *t = &m->tensors[i];
            int second = m->prec != PRIOR_FP32 && t->kind == PT_MATRIX;
            if (second != pass) continue;
            t->offset = at;
            *slots[i] = at;
            at += t->numel;
        }
        if (pass == 0) m->n32 = at;
    }
    DALLE_ASSERT(at == m->n_params);
}

// Key lists of pattern TYPE: position t attends every k <= t that prior_mask allows.
static int build_keys(prior_model *m, prior_layer_type type, prior_keys *k) {
    int T = m->T;
    k->off = backend_alloc(sizeof(int32_t) * (size_t)(T + 1));
    if (!k->off) return DALLE_ERR;
    int64_t nnz = 0;
    for (int q = 0; q < T; q++) {
        k->off[q] = (int32_t)nnz;
        if (q < m->L) {
            nnz += q + 1;
            continue;
        }
        nnz += m->L;
        for (int j = 0; j <= q - m->L; j++) nnz += prior_mask_image(&m->cfg, type, q - m->L, j);
    }
    if (nnz > INT32_MAX) return dalle_seterr("prior: attention pattern too large (%lld keys)", (long long)nnz);
    k->off[T] = (int32_t)nnz;
    k->nnz = nnz;
    k->keys = backend_alloc(sizeof(int32_t) * (size_t)(nnz ? nnz : 1));
    if (!k->keys) return DALLE_ERR;
    for (int q = 0; q < T; q++) {
        int32_t *o = k->keys + k->off[q];
        for (int j = 0; j <= q; j++)
            if (prior_mask(&m->cfg, type, q, j)) *o++ = j;
    }
    return DALLE_OK;
}

static void free_keys(prior_model *m) {
    for (int i = 0; i < 3; i++) {
        backend_free(m->keys[i].off);
        backend_free(m->keys[i].keys);
        m->keys[i] = (prior_keys){0};
    }
}

static int prior_build_keys(prior_model *m) {
    free_keys(m);
    for (int i = 0; i < 3; i++)
        if (build_keys(m, (prior_layer_type)i, &m->keys[i]) != DALLE_OK) return DALLE_ERR;
    return DALLE_OK;
}

prior_model *prior_model_new(const prior_config *cfg, prior_precision prec) {
    if (prior_config_check(cfg) != DALLE_OK) return NULL;
    prior_model *m = dalle_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->prec = prec;
    m->fmt = prec == PRIOR_FP16 ? HALF_F16 : HALF_BF16;
    m->NH = cfg->n_head;
    m->HS = cfg->d_head;
    m->d = m->NH * m->HS;
    m->f = m->d * cfg->mlp_mult;
    m->L = cfg->text_len;
    m->G = cfg->grid;
    m->N = m->G * m->G;
    m->T = m->L + m->N;
    m->Vt = cfg->text_vocab + m->L;
    m->Vi = cfg->image_vocab;
    int nl = cfg->n_layer, n_tensors = 5 + 12 * nl + 4;
    int64_t **slots = dalle_calloc((size_t)n_tensors, sizeof *slots);
    m->tensors = dalle_calloc((size_t)n_tensors, sizeof *m->tensors);
    m->blocks = dalle_calloc((size_t)nl, sizeof *m->blocks);
    if (!slots || !m->tensors || !m->blocks) goto fail;
    int64_t d = m->d, f = m->f;
    add_tensor(m, slots, "text_emb.weight", m->Vt, d, PT_EMBED, 0, &m->text_emb);
    add_tensor(m, slots, "text_pos_emb.weight", m->L, d, PT_EMBED, 0, &m->text_pos);
    add_tensor(m, slots, "image_emb.weight", m->Vi + 1, d, PT_EMBED, 0, &m->image_emb);
    add_tensor(m, slots, "row_emb.weight", m->G, d, PT_EMBED, 0, &m->row_emb);
    add_tensor(m, slots, "col_emb.weight", m->G, d, PT_EMBED, 0, &m->col_emb);
    for (int l = 0; l < nl; l++) {
        prior_block *b = &m->blocks[l];
        char n[PRIOR_NAME_LEN];
#define T_(field, suffix, r, c, kind, resid)                         \
    snprintf(n, sizeof n, "blocks.%d.%s", l, suffix);                 \
    add_tensor(m, slots, n, r, c, kind, resid, &b->field)
        T_(ln1_w, "ln_1.weight", d, 0, PT_GAIN, 0);
        T_(ln1_b, "ln_1.bias", d, 0, PT_BIAS, 0);
        T_(qkv_w, "attn.qkv.weight", 3 * d, d, PT_MATRIX, 0);
        T_(qkv_b, "attn.qkv.bias", 3 * d, 0, PT_BIAS, 0);
        T_(proj_w, "attn.proj.weight", d, d, PT_MATRIX, 1);
        T_(proj_b, "attn.proj.bias", d, 0, PT_BIAS, 0);
        T_(ln2_w, "ln_2.weight", d, 0, PT_GAIN, 0);
        T_(ln2_b, "ln_2.bias", d, 0, PT_BIAS, 0);
        T_(fc_w, "mlp.fc.weight", f, d, PT_MATRIX, 0);
        T_(fc_b, "mlp.fc.bias", f, 0, PT_BIAS, 0);
        T_(fc2_w, "mlp.proj.weight", d, f, PT_MATRIX, 1);
        T_(fc2_b, "mlp.proj.bias", d, 0, PT_BIAS, 0);
#undef T_
    }
    add_tensor(m, slots, "ln_f.weight", d, 0, PT_GAIN, 0, &m->lnf_w);
    add_tensor(m, slots, "ln_f.bias", d, 0, PT_BIAS, 0, &m->lnf_b);
    add_tensor(m, slots, "text_head.weight", m->Vt, d, PT_HEAD, 0, &m->text_head);
    add_tensor(m, slots, "image_head.weight", m->Vi, d, PT_HEAD, 0, &m->image_head);
    DALLE_ASSERT(m->n_tensors == n_tensors && m->n_params == prior_param_count(cfg));
    layout(m, slots);
    m->params = backend_alloc(sizeof(float) * (size_t)m->n32);
    if (!m->params) {
        dalle_errprefix("prior: parameters (%.1f MB)", 4.0 * (double)m->n32 / 1e6);
        goto fail;
    }
    backend_memset0(m->params, sizeof(float) * (size_t)m->n32);
    if (prec != PRIOR_FP32) {
        if (!(m->w16 = backend_alloc(sizeof(uint16_t) * (size_t)(m->n_params - m->n32)))) {
            dalle_errprefix("prior: 16-bit matrices (%.1f MB)", 2.0 * (double)(m->n_params - m->n32) / 1e6);
            goto fail;
        }
        backend_memset0(m->w16, sizeof(uint16_t) * (size_t)(m->n_params - m->n32));
    }
    if (prior_build_keys(m) != DALLE_OK) goto fail;
    dalle_free(slots);
    return m;
fail:
    dalle_free(slots);
    prior_model_free(m);
    return NULL;
}

void prior_model_free(prior_model *m) {
    if (!m) return;
    free_keys(m);
    dalle_free(m->tensors);
    dalle_free(m->blocks);
    backend_free(m->params);
    backend_free(m->w16);
    dalle_free(m);
}

int prior_find_tensor(const prior_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

void prior_init(const prior_model *m, uint64_t seed, float *dst) {
    backend_sync(); // dst may be backend memory an op (the model's zeroing) still writes
    rng_t r;
    rng_init(&r, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        float *p = dst + t->offset;
        switch (t->kind) {
        case PT_EMBED: rng_normal(&r, p, t->numel, 0.0f, 0.02f); break;
        case PT_MATRIX: {
            float std = 0.125f / sqrtf((float)t->shape[1]);
            if (t->resid) std /= sqrtf(2.0f * (float)m->cfg.n_layer);
            rng_normal(&r, p, t->numel, 0.0f, std);
            break;
        }
        case PT_GAIN:
            for (int64_t j = 0; j < t->numel; j++) p[j] = 1.0f;
            break;
        case PT_BIAS:
        case PT_HEAD: memset(p, 0, sizeof(float) * (size_t)t->numel); break;
        }
    }
}

void prior_set_params(prior_model *m, const float *full) {
    if (full != m->params) backend_copy(m->params, full, sizeof(float) * (size_t)m->n32);
    if (m->w16) to_half(m->w16, full + m->n32, m->n_params - m->n32, m->fmt);
}

void prior_act_sizes(const prior_config *c, const int64_t nnz[3], int B, prior_precision prec, int checkpoint,
                     int64_t sizes[PRIOR_ACT_PIECES]) {
    int nl = c->n_layer, NH = c->n_head, L = c->text_len, G = c->grid;
    int64_t d = (int64_t)NH * c->d_head, f = d * c->mlp_mult, N = (int64_t)G * G, T = L + N, BT = B * T;
    int64_t Vt = (int64_t)c->text_vocab + L, Vi = c->image_vocab, att = 0, att1 = 0;
    for (int l = 0; l < nl; l++) {
        int64_t n = (int64_t)B * NH * nnz[prior_layer_type_of(c, l)];
        att += n;
        att1 = DALLE_MAX(att1, n);
    }
    // Layers whose internals the fp32 arrays hold (prior_acts); the 16-bit
    // copies (h16: 1 or 0) and the 16-bit model's scratch (s16); halves
    // take half a float, rounded up.
    int64_t K = prec == PRIOR_FP32 && !checkpoint ? nl : 1, S = checkpoint ? 1 : nl;
    int64_t h16 = prec != PRIOR_FP32 && !checkpoint, s16 = prec != PRIOR_FP32;
#define HALVES(n) (h16 * (((n) + 1) / 2))
    // In the order of prior_acts' pointers; the int32 targets get float-sized slots.
    const int64_t s[PRIOR_ACT_PIECES] = {
        (nl + 1) * BT * d,                  // x
        K * BT * d, K * BT * d,             // ln1, ln2
        S * BT, S * BT, S * BT, S * BT,     // mu1 rs1 mu2 rs2
        K * BT * 3 * d,                     // qkv
        K == nl ? att : att1,               // att
        K * BT * d, nl * BT * d,            // atty, xmid
        K * BT * f, K * BT * f,             // fch, fcg
        BT * d, BT, BT,                     // lnf, muf, rsf
        B * (L - 1) * Vt,                   // logit_text
        B * N * Vi,                         // logit_img
        B * (L - 1), B * N,                 // targets
        BT * d, BT * d, BT * 3 * d, BT * d, BT * f, BT * f, B * NH * T, // backward scratch
        HALVES(nl * BT * d), HALVES(nl * BT * d), HALVES(nl * BT * d), // h_ln1, h_ln2, h_atty
        HALVES(nl * BT * 3 * d), HALVES(att), HALVES(nl * BT * f),    // h_qkv, h_att, h_fch
        s16 * DALLE_MAX(3 * d * d, f * d),                             // wbuf
        s16 * DALLE_MAX(3 * d * d + 3 * d, f * d + f),                // pgrad
    };
#undef HALVES
    memcpy(sizes, s, sizeof s);
}

prior_acts *prior_acts_new(const prior_model *m, int B, int checkpoint) {
    prior_acts *a = dalle_calloc(1, sizeof *a);
    if (!a) return NULL;
    int nl = m->cfg.n_layer;
    a->B = B;
    a->checkpoint = checkpoint;
    a->all32 = m->prec == PRIOR_FP32 && !checkpoint;
    a->att_off = dalle_malloc(sizeof(int64_t) * (size_t)nl);
    a->grad_mult = dalle_malloc(sizeof(float) * 2 * (size_t)nl);
    a->nonfinite = dalle_calloc(2 * (size_t)nl, sizeof(int64_t));
    if (!a->att_off || !a->grad_mult || !a->nonfinite) goto fail;
    for (int r = 0; r < 2 * nl; r++) a->grad_mult[r] = 1.0f;
    for (int l = 0, off = 0; l < nl; l++) {
        a->att_off[l] = off;
        off += (int64_t)B * m->NH * m->keys[prior_layer_type_of(&m->cfg, l)].nnz;
    }
    int64_t sizes[PRIOR_ACT_PIECES];
    const int64_t nnz[3] = {m->keys[0].nnz, m->keys[1].nnz, m->keys[2].nnz};
    prior_act_sizes(&m->cfg, nnz, B, m->prec, checkpoint, sizes);
    float **ptrs[] = {&a->x, &a->ln1, &a->ln2, &a->mu1, &a->rs1, &a->mu2, &a->rs2, &a->qkv, &a->att,
                      &a->atty, &a->xmid, &a->fch, &a->fcg, &a->lnf, &a->muf, &a->rsf, &a->logit_text,
                      &a->logit_img, (float **)&a->tgt_text, (float **)&a->tgt_img, &a->dx, &a->dln,
                      &a->dqkv, &a->datty, &a->dfc, &a->dfc2, &a->dscratch, (float **)&a->h_ln1,
                      (float **)&a->h_ln2, (float **)&a->h_atty, (float **)&a->h_qkv, (float **)&a->h_att,
                      (float **)&a->h_fch, &a->wbuf, &a->pgrad};
    int n = PRIOR_ACT_PIECES;
    DALLE_ASSERT(n == (int)(sizeof ptrs / sizeof *ptrs));
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (sizes[i] + 15) & ~(int64_t)15; // 64-byte aligned pieces
    a->arena = backend_alloc(sizeof(float) * (size_t)total);
    a->emb_rows = backend_alloc(sizeof(int64_t) * 3 * (size_t)B * m->T);
    if (!a->arena || !a->emb_rows) {
        dalle_errprefix("prior: activations for batch %d (%.1f MB)", B, 4.0 * (double)total / 1e6);
        goto fail;
    }
    a->arena_floats = total;
    float *p = a->arena;
    for (int i = 0; i < n; i++) {
        *ptrs[i] = sizes[i] ? p : NULL; // an absent piece (this mode does not use it) stays NULL
        p += (sizes[i] + 15) & ~(int64_t)15;
    }
    return a;
fail:
    prior_acts_free(a);
    return NULL;
}

void prior_acts_free(prior_acts *a) {
    if (!a) return;
    backend_free(a->arena);
    backend_free(a->emb_rows);
    dalle_free(a->att_off);
    dalle_free(a->grad_mult);
    dalle_free(a->nonfinite);
    dalle_free(a);
}
