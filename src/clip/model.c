// model.c: the contrastive model's parameters (one block carved by the size
// table in canonical order: the text tower's tensors, the image tower's, then
// logit_scale), CLIP's initialisation, the towers' key lists, the files
// (safetensors, metadata "dalle.kind" = "clip" and "clip.config" = the config
// as JSON) and the activation memory. What the ops touch (parameters, key
// lists, activations) is backend memory (backend.h); the loss head's arrays
// are host memory.
#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "clip/model.h"
#include "core/common.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "dalle/dalle.h"

// ---------------------------------------------------------------- config

// The fields in the order of the struct (the JSON order), with their bounds.
static const struct {
    const char *name;
    size_t off;
    int lo, hi;
} CFG_FIELDS[] = {
    {"n_layer", offsetof(clip_config, n_layer), 1, 256},
    {"n_head", offsetof(clip_config, n_head), 1, 1024},
    {"d_head", offsetof(clip_config, d_head), 1, 1024},
    {"mlp_mult", offsetof(clip_config, mlp_mult), 1, 64},
    {"embed", offsetof(clip_config, embed), 1, 1 << 16},
    {"text_len", offsetof(clip_config, text_len), 1, 1 << 16},
    {"text_vocab", offsetof(clip_config, text_vocab), 1, 1 << 24},
    {"grid", offsetof(clip_config, grid), 1, 1024},
    {"image_vocab", offsetof(clip_config, image_vocab), 1, 1 << 24},
};
#define N_CFG_FIELDS ((int)(sizeof CFG_FIELDS / sizeof *CFG_FIELDS))
#define CFG_FIELD(c, i) (*(int *)((char *)(c) + CFG_FIELDS[i].off))

int clip_config_check(const clip_config *c) {
    for (int i = 0; i < N_CFG_FIELDS; i++) {
        int v = CFG_FIELD(c, i);
        if (v < CFG_FIELDS[i].lo || v > CFG_FIELDS[i].hi)
            return dalle_seterr("clip config: %s = %d is outside [%d, %d]", CFG_FIELDS[i].name, v, CFG_FIELDS[i].lo,
                                CFG_FIELDS[i].hi);
    }
    if ((int64_t)c->n_head * c->d_head > 1 << 16)
        return dalle_seterr("clip config: d = n_head*d_head = %lld is too large", (long long)c->n_head * c->d_head);
    if ((int64_t)c->text_vocab + c->text_len > INT32_MAX)
        return dalle_seterr("clip config: text_vocab + text_len is too large");
    return DALLE_OK;
}

static char *config_to_json(const clip_config *c) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "{");
    for (int i = 0; i < N_CFG_FIELDS; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%s\"%s\":%d", i ? "," : "", CFG_FIELDS[i].name, CFG_FIELD(c, i));
    snprintf(buf + n, sizeof buf - (size_t)n, "}");
    return dalle_strdup(buf);
}

// The config of JSON text js; errors name WHAT (the file and the key).
static int config_from_json(const char *js, clip_config *c, const char *what) {
    cJSON *j = cJSON_Parse(js);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return dalle_seterr("%s: not a JSON object", what);
    }
    int rc = DALLE_OK, n = 0;
    for (const cJSON *v = j->child; v; v = v->next) n++;
    for (int i = 0; i < N_CFG_FIELDS && rc == DALLE_OK; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, CFG_FIELDS[i].name);
        if (!v) rc = dalle_seterr("%s: field '%s' missing", what, CFG_FIELDS[i].name);
        else if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > INT_MAX)
            rc = dalle_seterr("%s: field '%s' is not an integer", what, CFG_FIELDS[i].name);
        else CFG_FIELD(c, i) = (int)v->valuedouble;
    }
    if (rc == DALLE_OK && n != N_CFG_FIELDS)
        rc = dalle_seterr("%s: %d fields where the config has %d", what, n, N_CFG_FIELDS);
    if (rc == DALLE_OK && clip_config_check(c) != DALLE_OK) rc = dalle_errprefix("%s", what);
    cJSON_Delete(j);
    return rc;
}

// ---------------------------------------------------------------- tensors

static void add_tensor(clip_model *m, const char *name, int64_t r, int64_t c, clip_tensor_kind kind, float std,
                       int64_t *slot) {
    clip_tensor_info *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    t->numel = c ? r * c : r;
    t->kind = kind;
    t->std = std;
    t->offset = m->n_params;
    m->n_params += t->numel;
    *slot = t->offset;
}

// Tower w's tensors, with CLIP's initial standard deviations: qkv d^-1/2,
// mlp.fc (2d)^-1/2, the two residual projections d^-1/2 (2 n_layer)^-1/2,
// the joint projection d^-1/2.
static void add_tower(clip_model *m, int w) {
    clip_tower *tw = &m->tower[w];
    const int64_t d = m->d, f = m->f;
    const int nl = m->cfg.n_layer;
    const float sd = 1.0f / sqrtf((float)d), s_resid = sd / sqrtf(2.0f * (float)nl), s_fc = 1.0f / sqrtf(2.0f * d);
    char n[CLIP_NAME_LEN];
#define T_(slot, suffix, r, c, kind, std)                        \
    snprintf(n, sizeof n, "%s.%s", tw->name, suffix);            \
    add_tensor(m, n, r, c, kind, std, slot)
    T_(&tw->emb, "token_embedding", tw->V, d, CT_EMBED, 0.02f);
    T_(&tw->pos, "positional_embedding", tw->T, d, CT_POS, 0.01f);
    for (int l = 0; l < nl; l++) {
        clip_block *b = &tw->blocks[l];
#define B_(field, suffix, r, c, kind, std)                          \
    snprintf(n, sizeof n, "%s.blocks.%d.%s", tw->name, l, suffix); \
    add_tensor(m, n, r, c, kind, std, &b->field)
        B_(ln1_w, "ln_1.weight", d, 0, CT_GAIN, 0);
        B_(ln1_b, "ln_1.bias", d, 0, CT_BIAS, 0);
        B_(qkv_w, "attn.qkv.weight", 3 * d, d, CT_MATRIX, sd);
        B_(qkv_b, "attn.qkv.bias", 3 * d, 0, CT_BIAS, 0);
        B_(proj_w, "attn.proj.weight", d, d, CT_MATRIX, s_resid);
        B_(proj_b, "attn.proj.bias", d, 0, CT_BIAS, 0);
        B_(ln2_w, "ln_2.weight", d, 0, CT_GAIN, 0);
        B_(ln2_b, "ln_2.bias", d, 0, CT_BIAS, 0);
        B_(fc_w, "mlp.fc.weight", f, d, CT_MATRIX, s_fc);
        B_(fc_b, "mlp.fc.bias", f, 0, CT_BIAS, 0);
        B_(fc2_w, "mlp.proj.weight", d, f, CT_MATRIX, s_resid);
        B_(fc2_b, "mlp.proj.bias", d, 0, CT_BIAS, 0);
#undef B_
    }
    T_(&tw->lnf_w, "ln_final.weight", d, 0, CT_GAIN, 0);
    T_(&tw->lnf_b, "ln_final.bias", d, 0, CT_BIAS, 0);
    T_(&tw->proj, "projection", d, m->E, CT_PROJ, sd);
#undef T_
}

// The key lists of tower w: text causal (t attends 0..t), image full.
static int build_keys(clip_tower *tw, int causal) {
    const int T = tw->T;
    tw->nnz = causal ? (int64_t)T * (T + 1) / 2 : (int64_t)T * T;
    if (tw->nnz > INT32_MAX) return dalle_seterr("clip: %s attention too large (%lld keys)", tw->name, (long long)tw->nnz);
    tw->off = backend_alloc(sizeof(int32_t) * (size_t)(T + 1));
    tw->keys = backend_alloc(sizeof(int32_t) * (size_t)tw->nnz);
    if (!tw->off || !tw->keys) return DALLE_ERR;
    int32_t *k = tw->keys;
    for (int t = 0; t < T; t++) {
        tw->off[t] = (int32_t)(k - tw->keys);
        for (int j = 0; j < (causal ? t + 1 : T); j++) *k++ = j;
    }
    tw->off[T] = (int32_t)tw->nnz;
    return DALLE_OK;
}

// A model with its tables, key lists and zeroed parameters.
static clip_model *model_new(const clip_config *c) {
    if (clip_config_check(c) != DALLE_OK) return NULL;
    clip_model *m = dalle_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *c;
    m->NH = c->n_head;
    m->HS = c->d_head;
    m->d = m->NH * m->HS;
    m->f = m->d * c->mlp_mult;
    m->E = c->embed;
    const int nl = c->n_layer, N = c->grid * c->grid;
    m->tower[CLIP_TEXT] = (clip_tower){.name = "text", .T = c->text_len, .V = c->text_vocab + c->text_len, .pool = 1};
    m->tower[CLIP_IMAGE] = (clip_tower){.name = "image", .T = N, .V = c->image_vocab, .pool = N};
    const int n_tensors = 2 * (5 + 12 * nl) + 1;
    m->tensors = dalle_calloc((size_t)n_tensors, sizeof *m->tensors);
    for (int w = 0; w < 2; w++) m->tower[w].blocks = dalle_calloc((size_t)nl, sizeof(clip_block));
    if (!m->tensors || !m->tower[0].blocks || !m->tower[1].blocks) goto fail;
    for (int w = 0; w < 2; w++) add_tower(m, w);
    add_tensor(m, "logit_scale", 1, 0, CT_SCALE, 0, &m->logit_scale);
    DALLE_ASSERT(m->n_tensors == n_tensors);
    for (int w = 0; w < 2; w++)
        if (build_keys(&m->tower[w], w == CLIP_TEXT) != DALLE_OK) goto fail;
    if (!(m->params = backend_alloc(sizeof(float) * (size_t)m->n_params))) {
        dalle_errprefix("clip: parameters (%.1f MB)", 4.0 * (double)m->n_params / 1e6);
        goto fail;
    }
    backend_memset0(m->params, sizeof(float) * (size_t)m->n_params);
    return m;
fail:
    clip_free(m);
    return NULL;
}

clip_model *clip_new(const clip_config *c, uint64_t seed) {
    clip_model *m = model_new(c);
    if (!m) return NULL;
    backend_sync(); // the zeroing may still be queued
    rng_t r;
    rng_init(&r, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const clip_tensor_info *t = &m->tensors[i];
        float *p = m->params + t->offset;
        switch (t->kind) {
        case CT_EMBED:
        case CT_POS:
        case CT_MATRIX:
        case CT_PROJ: rng_normal(&r, p, t->numel, 0.0f, t->std); break;
        case CT_GAIN:
            for (int64_t j = 0; j < t->numel; j++) p[j] = 1.0f;
            break;
        case CT_BIAS: break; // zero
        case CT_SCALE: p[0] = logf(1.0f / 0.07f); break;
        }
    }
    return m;
}

void clip_free(clip_model *m) {
    if (!m) return;
    for (int w = 0; w < 2; w++) {
        backend_free(m->tower[w].off);
        backend_free(m->tower[w].keys);
        dalle_free(m->tower[w].blocks);
        clip_tower_acts_free(m->infer[w]);
    }
    dalle_free(m->tensors);
    backend_free(m->params);
    dalle_free(m);
}

const clip_config *clip_get_config(const clip_model *m) { return &m->cfg; }
float *clip_params(clip_model *m) { return m->params; }
int64_t clip_param_count(const clip_model *m) { return m->n_params; }
int clip_n_tensors(const clip_model *m) { return m->n_tensors; }

void clip_tensor(const clip_model *m, int i, const char **name, int64_t *offset, int64_t *numel, int *decay) {
    DALLE_ASSERT(i >= 0 && i < m->n_tensors);
    const clip_tensor_info *t = &m->tensors[i];
    if (name) *name = t->name;
    if (offset) *offset = t->offset;
    if (numel) *numel = t->numel;
    if (decay) *decay = t->kind == CT_EMBED || t->kind == CT_POS || t->kind == CT_MATRIX || t->kind == CT_PROJ;
}

float clip_scale(const clip_model *m) {
    backend_sync();
    return fminf(expf(m->params[m->logit_scale]), 100.0f);
}

// ---------------------------------------------------------------- files

int clip_save(const clip_model *m, const float *params, const char *path) {
    backend_sync(); // params are read on the host
    st_writer *w = st_writer_new();
    char *js = config_to_json(&m->cfg);
    int rc = DALLE_ERR;
    if (!w || !js) goto done;
    if (st_writer_meta(w, "dalle.kind", "clip") || st_writer_meta(w, "dalle.version", "1") ||
        st_writer_meta(w, "clip.config", js))
        goto done;
    for (int i = 0; i < m->n_tensors; i++) {
        const clip_tensor_info *t = &m->tensors[i];
        if (st_writer_add(w, t->name, ST_F32, params + t->offset, t->ndim, t->shape)) goto done;
    }
    rc = st_writer_save(w, path);
done:
    dalle_free(js);
    st_writer_free(w);
    return rc;
}

static int find_tensor(const clip_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

static int clip_knows(const void *m, const char *name) { return find_tensor(m, name) >= 0; }

clip_model *clip_load(const char *path) {
    st_file *f = st_open(path);
    if (!f) return NULL;
    clip_model *m = NULL;
    const char *kind = st_meta(f, "dalle.kind"), *js = st_meta(f, "clip.config");
    if (!kind || strncmp(kind, "clip", 4) || (kind[4] && strcmp(kind + 4, "-checkpoint"))) {
        dalle_seterr("%s: not a clip model (metadata dalle.kind is '%s')", path, kind ? kind : "missing");
        goto fail;
    }
    if (!js) {
        dalle_seterr("%s: metadata 'clip.config' missing", path);
        goto fail;
    }
    char what[600];
    snprintf(what, sizeof what, "%s: metadata 'clip.config'", path);
    clip_config c;
    if (config_from_json(js, &c, what) != DALLE_OK || !(m = model_new(&c))) goto fail;
    // Every tensor must be one of ours, under a checkpoint's prefixes or none.
    static const char *const prefixes[] = {"", "ema.", "adam.m.", "adam.v."};
    if (st_check_names(f, prefixes, 4, clip_knows, m, "a model of another architecture?")) goto fail;
    // A checkpoint's EMA weights are the model it holds.
    const char *prefix = st_find(f, "ema.logit_scale") ? "ema." : "";
    backend_sync(); // the parameters' zeroing may still be queued
    for (int i = 0; i < m->n_tensors; i++) {
        const clip_tensor_info *t = &m->tensors[i];
        char name[CLIP_NAME_LEN + 8];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        if (st_read_f32(f, name, m->params + t->offset, t->ndim, t->shape)) goto fail;
    }
    st_close(f);
    return m;
fail:
    st_close(f);
    clip_free(m);
    return NULL;
}

// ---------------------------------------------------------------- activations

// Pieces of a tower's activation block in floats, in the order of the
// pointers of clip_tower_acts (the single size table).
enum { TOWER_PIECES = 18 };
static void tower_sizes(const clip_model *m, int w, int B, int layers, int64_t s[TOWER_PIECES]) {
    const clip_tower *tw = &m->tower[w];
    const int64_t BT = (int64_t)B * tw->T, d = m->d, f = m->f, K = layers;
    const int64_t sizes[TOWER_PIECES] = {
        (m->cfg.n_layer + 1) * BT * d,          // x
        K * BT * d, K * BT * d, K * BT * d, K * BT * d, // xmid, ln1, ln2, atty
        K * BT, K * BT, K * BT, K * BT,          // mu1 rs1 mu2 rs2
        K * BT * 3 * d,                         // qkv
        K * B * m->NH * tw->nnz,                // att
        K * BT * f, K * BT * f,                 // fch, fcg
        BT * d, BT, BT,                         // lnf, muf, rsf
        B * d, B * d,                           // pooled, dpooled
    };
    memcpy(s, sizes, sizeof sizes);
}

// One backend block for pieces sizes[n] (64-byte aligned), carved into *ptrs[i].
static float *carve(float **ptrs[], const int64_t *sizes, int n, const char *what, int B) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (sizes[i] + 15) & ~(int64_t)15;
    float *block = backend_alloc(sizeof(float) * (size_t)total);
    if (!block) {
        dalle_errprefix("clip: %s for batch %d (%.1f MB)", what, B, 4.0 * (double)total / 1e6);
        return NULL;
    }
    float *p = block;
    for (int i = 0; i < n; i++) {
        *ptrs[i] = p;
        p += (sizes[i] + 15) & ~(int64_t)15;
    }
    return block;
}

clip_tower_acts *clip_tower_acts_new(const clip_model *m, int w, int B, int layers) {
    DALLE_ASSERT(B >= 1 && (layers == 1 || layers == m->cfg.n_layer));
    const clip_tower *tw = &m->tower[w];
    clip_tower_acts *t = dalle_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->B = B;
    t->layers = layers;
    int64_t sizes[TOWER_PIECES];
    tower_sizes(m, w, B, layers, sizes);
    float **ptrs[TOWER_PIECES] = {&t->x, &t->xmid, &t->ln1, &t->ln2, &t->atty, &t->mu1, &t->rs1, &t->mu2, &t->rs2,
                                  &t->qkv, &t->att, &t->fch, &t->fcg, &t->lnf, &t->muf, &t->rsf, &t->pooled,
                                  &t->dpooled};
    const int64_t n_emb = 2 * (int64_t)B * tw->T, n_pool = (int64_t)B * tw->pool;
    if (!(t->arena = carve(ptrs, sizes, TOWER_PIECES, tw->name, B)) ||
        !(t->rows = backend_alloc(sizeof(int64_t) * (size_t)(n_emb + n_pool))))
        goto fail;
    t->emb_rows = t->rows;
    t->pool_rows = t->rows + n_emb;
    // The pooled rows of lnf (B, T, d): text the last position, image all.
    for (int b = 0; b < B; b++)
        for (int i = 0; i < tw->pool; i++)
            t->pool_rows[(int64_t)b * tw->pool + i] = ((int64_t)b * tw->T + tw->T - tw->pool + i) * m->d;
    return t;
fail:
    clip_tower_acts_free(t);
    return NULL;
}

void clip_tower_acts_free(clip_tower_acts *t) {
    if (!t) return;
    backend_free(t->arena);
    backend_free(t->rows);
    dalle_free(t);
}

clip_acts *clip_acts_new(const clip_model *m, int B, int NT) {
    DALLE_ASSERT(B >= 1 && NT >= B);
    clip_acts *a = dalle_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->B = B, a->NT = NT;
    const int n[2] = {NT, B}; // sequences per tower: text NT, image B
    const int64_t BT = DALLE_MAX((int64_t)NT * m->tower[0].T, (int64_t)B * m->tower[1].T), d = m->d, f = m->f,
                  E = m->E, T = DALLE_MAX(m->tower[0].T, m->tower[1].T);
    const int64_t sizes[] = {BT * d, BT * d, BT * d, BT * 3 * d, BT * f, BT * f, (int64_t)NT * m->NH * T};
    float **ptrs[] = {&a->dx, &a->dln, &a->datty, &a->dqkv, &a->dfc, &a->dfc2, &a->dscore};
    for (int w = 0; w < 2; w++)
        if (!(a->t[w] = clip_tower_acts_new(m, w, n[w], m->cfg.n_layer))) goto fail;
    if (!(a->scratch = carve(ptrs, sizes, 7, "backward scratch", NT))) goto fail;
    // host: feat, emb, demb and norm of each tower, logits, dlogits
    const int64_t per = (int64_t)(NT + B) * (d + 2 * E + 1);
    if (!(a->host = dalle_malloc(sizeof(double) * (size_t)(per + 2 * (int64_t)NT * B)))) goto fail;
    double *h = a->host;
    for (int w = 0; w < 2; w++) {
        a->feat[w] = h, h += n[w] * d;
        a->emb[w] = h, h += n[w] * E;
        a->demb[w] = h, h += n[w] * E;
        a->norm[w] = h, h += n[w];
    }
    a->logits = h, h += (int64_t)NT * B;
    a->dlogits = h;
    return a;
fail:
    clip_acts_free(a);
    return NULL;
}

void clip_acts_free(clip_acts *a) {
    if (!a) return;
    for (int w = 0; w < 2; w++) clip_tower_acts_free(a->t[w]);
    backend_free(a->scratch);
    dalle_free(a->host);
    dalle_free(a);
}
