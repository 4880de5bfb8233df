// model.c: the dVAE networks of OpenAI's `dall_e` package, compiled from a
// config into op lists (see model.h), run forward and backward through the
// backend's ops (parameters and activations in backend memory), and read from
// / written to safetensors model files.
//
// Architecture (SPEC §1.2-1.3): four groups of n_blk_per_group pre-activation
// residual blocks, out = id_path(x) + post_gain * res_path(x), post_gain =
// 1/n_layers^2. Encoder: 7x7 input conv, blocks with kernels 3,3,3,1, max-pool
// after groups 1..n_pool, ReLU + 1x1 conv to V logits. Decoder: 1x1 input conv
// from V, blocks with kernels 1,3,3,3, nearest x2 upsampling after groups
// (4-n_pool)..3, ReLU + 1x1 conv to 6 channels (mu and ln b of R, G, B).
#include "model.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/ops.h"
#include "core/common.h"
#include "core/rng.h"
#include "core/safetensors.h"

// ---------------------------------------------------------------- config

int dvae_config_preset(const char *name, dvae_config *cfg) {
    if (!strcmp(name, "paper")) *cfg = (dvae_config){256, 2, 8192, 128, 256, 3};
    else if (!strcmp(name, "small")) *cfg = (dvae_config){64, 1, 512, 64, 64, 2};
    else if (!strcmp(name, "tiny")) *cfg = (dvae_config){8, 2, 32, 8, 16, 2};
    else return dalle_seterr("unknown dVAE preset '%s' (paper, small, tiny)", name);
    return DALLE_OK;
}

int dvae_config_check(const dvae_config *c) {
    if (c->n_hid < 4 || c->n_hid % 4) return dalle_seterr("dvae config: n_hid %d must be a positive multiple of 4", c->n_hid);
    if (c->n_hid > 65536) return dalle_seterr("dvae config: n_hid %d is too large", c->n_hid);
    if (c->n_blk_per_group < 1 || c->n_blk_per_group > 64) return dalle_seterr("dvae config: n_blk_per_group %d must be in [1, 64]", c->n_blk_per_group);
    if (c->vocab_size < 2 || c->vocab_size > (1 << 20)) return dalle_seterr("dvae config: vocab_size %d must be in [2, 2^20]", c->vocab_size);
    if (c->n_init < 1 || c->n_init > 65536) return dalle_seterr("dvae config: n_init %d must be in [1, 65536]", c->n_init);
    if (c->n_pool < 0 || c->n_pool > 3) return dalle_seterr("dvae config: n_pool %d must be in [0, 3]", c->n_pool);
    if (c->image_size < 1 || c->image_size > 4096 || c->image_size % (1 << c->n_pool))
        return dalle_seterr("dvae config: image_size %d must be in [1, 4096] and divisible by 2^n_pool = %d", c->image_size, 1 << c->n_pool);
    return DALLE_OK;
}

int dvae_grid(const dvae_config *cfg) { return cfg->image_size >> cfg->n_pool; }

// ---------------------------------------------------------------- building

typedef struct {
    dvae_model *m;
    dvae_net *net;
    int cap_ops, cap_slots;
} builder;

static int add_tensor(dvae_model *m, const char *name, int ndim, const int64_t *shape, int is_weight, int fan_in) {
    int i = dvae_find_tensor(m, name);
    if (i >= 0) return i; // the second decoder net reuses the first one's tensors
    DALLE_ASSERT(m->n_tensors < DVAE_MAX_TENSORS && strlen(name) < DVAE_NAME_LEN);
    dvae_tensor *t = &m->tensors[m->n_tensors];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) t->numel *= (t->shape[d] = shape[d]);
    t->offset = m->n_params;
    t->is_weight = is_weight;
    t->fan_in = fan_in;
    m->n_params += t->numel;
    return m->n_tensors++;
}

// Adds PREFIX.w (n_out, n_in, k, k) and PREFIX.b (n_out); returns w's index
// (b's is the next one).
static int add_conv_tensors(dvae_model *m, const char *prefix, int n_in, int n_out, int k) {
    char name[2 * DVAE_NAME_LEN];
    snprintf(name, sizeof name, "%s.w", prefix);
    int wi = add_tensor(m, name, 4, (int64_t[]){n_out, n_in, k, k}, 1, n_in * k * k);
    snprintf(name, sizeof name, "%s.b", prefix);
    int bi = add_tensor(m, name, 1, (int64_t[]){n_out}, 0, n_in * k * k);
    DALLE_ASSERT(bi == wi + 1);
    return wi;
}

static int new_slot(builder *b, int c, int h, int w) {
    dvae_net *n = b->net;
    if (n->n_slots == b->cap_slots) {
        b->cap_slots = b->cap_slots ? 2 * b->cap_slots : 64;
        n->slots = dalle_realloc(n->slots, sizeof *n->slots * (size_t)b->cap_slots);
        DALLE_ASSERT(n->slots); // a few KB; see dvae_build
    }
    n->slots[n->n_slots] = (dvae_slot){c, h, w};
    return n->n_slots++;
}

static void add_op(builder *b, dvae_op op) {
    dvae_net *n = b->net;
    if (n->n_ops == b->cap_ops) {
        b->cap_ops = b->cap_ops ? 2 * b->cap_ops : 64;
        n->ops = dalle_realloc(n->ops, sizeof *n->ops * (size_t)b->cap_ops);
        DALLE_ASSERT(n->ops);
    }
    n->ops[n->n_ops++] = op;
}

static int conv_op(builder *b, const char *prefix, int in, int out, int k, float alpha, float beta) {
    const dvae_slot *si = &b->net->slots[in], *so = &b->net->slots[out];
    int wi = add_conv_tensors(b->m, prefix, si->c, so->c, k);
    add_op(b, (dvae_op){.kind = OP_CONV, .in = in, .out = out, .wi = wi, .bi = wi + 1, .k = k,
                        .w_off = b->m->tensors[wi].offset, .b_off = b->m->tensors[wi + 1].offset,
                        .ci = si->c, .co = so->c, .h = si->h, .w = si->w, .alpha = alpha, .beta = beta});
    return out;
}

static int unary_op(builder *b, dvae_op_kind kind, int in, int c, int h, int w) {
    int out = new_slot(b, c, h, w);
    const dvae_slot *si = &b->net->slots[in];
    add_op(b, (dvae_op){.kind = kind, .in = in, .out = out, .ci = si->c, .co = c, .h = si->h, .w = si->w});
    return out;
}

// One residual block: out = id_path(x) + post_gain * res_path(x), where
// res_path = relu, conv k[0] (n_in->h), relu, conv k[1], relu, conv k[2], relu, conv k[3] (h->n_out).
static int res_block(builder *b, const char *prefix, int x, int n_out, const int k[4], float post_gain) {
    const dvae_slot s = b->net->slots[x];
    int hid = n_out / 4;
    char name[2 * DVAE_NAME_LEN];
    int out = new_slot(b, n_out, s.h, s.w);
    if (s.c != n_out) {
        snprintf(name, sizeof name, "%s.id_path", prefix);
        conv_op(b, name, x, out, 1, 1.0f, 0.0f);
    } else {
        add_op(b, (dvae_op){.kind = OP_COPY, .in = x, .out = out, .ci = s.c, .co = s.c, .h = s.h, .w = s.w});
    }
    int cur = unary_op(b, OP_RELU, x, s.c, s.h, s.w);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.res_path.conv_%d", prefix, i + 1);
        if (i < 3) {
            int c = conv_op(b, name, cur, new_slot(b, hid, s.h, s.w), k[i], 1.0f, 0.0f);
            cur = unary_op(b, OP_RELU, c, hid, s.h, s.w);
        } else {
            conv_op(b, name, cur, out, k[i], post_gain, 1.0f);
        }
    }
    return out;
}

static void build_encoder(dvae_model *m) {
    const dvae_config *c = &m->cfg;
    builder b = {.m = m, .net = &m->enc};
    int S = c->image_size, H = S;
    float post_gain = 1.0f / (float)((4 * c->n_blk_per_group) * (4 * c->n_blk_per_group));
    int x = new_slot(&b, 3, S, S);
    m->enc.in_slot = x;
    int cur = conv_op(&b, "encoder.blocks.input", x, new_slot(&b, c->n_hid, S, S), 7, 1.0f, 0.0f);
    static const int k[4] = {3, 3, 3, 1};
    for (int g = 1; g <= 4; g++) {
        int n_out = c->n_hid << (g - 1);
        for (int blk = 1; blk <= c->n_blk_per_group; blk++) {
            char prefix[DVAE_NAME_LEN];
            snprintf(prefix, sizeof prefix, "encoder.blocks.group_%d.block_%d", g, blk);
            cur = res_block(&b, prefix, cur, n_out, k, post_gain);
        }
        if (g <= c->n_pool) {
            cur = unary_op(&b, OP_POOL, cur, n_out, H / 2, H / 2);
            H /= 2;
        }
    }
    cur = unary_op(&b, OP_RELU, cur, 8 * c->n_hid, H, H);
    m->enc.out_slot = conv_op(&b, "encoder.blocks.output.conv", cur, new_slot(&b, c->vocab_size, H, H), 1, 1.0f, 0.0f);
}

static void build_decoder(dvae_model *m, dvae_net *net, int onehot) {
    const dvae_config *c = &m->cfg;
    builder b = {.m = m, .net = net};
    int G = dvae_grid(c), H = G;
    float post_gain = 1.0f / (float)((4 * c->n_blk_per_group) * (4 * c->n_blk_per_group));
    int z = new_slot(&b, c->vocab_size, G, G);
    net->in_slot = z;
    int cur = new_slot(&b, c->n_init, G, G);
    if (onehot) {
        int wi = add_conv_tensors(m, "decoder.blocks.input", c->vocab_size, c->n_init, 1);
        add_op(&b, (dvae_op){.kind = OP_ONEHOT, .in = z, .out = cur, .wi = wi, .bi = wi + 1, .k = 1,
                             .w_off = m->tensors[wi].offset, .b_off = m->tensors[wi + 1].offset,
                             .ci = c->vocab_size, .co = c->n_init, .h = G, .w = G});
    } else {
        conv_op(&b, "decoder.blocks.input", z, cur, 1, 1.0f, 0.0f);
    }
    static const int k[4] = {1, 3, 3, 3};
    for (int g = 1; g <= 4; g++) {
        int n_out = c->n_hid << (4 - g);
        for (int blk = 1; blk <= c->n_blk_per_group; blk++) {
            char prefix[DVAE_NAME_LEN];
            snprintf(prefix, sizeof prefix, "decoder.blocks.group_%d.block_%d", g, blk);
            cur = res_block(&b, prefix, cur, n_out, k, post_gain);
        }
        if (g <= 3 && g >= 4 - c->n_pool) {
            cur = unary_op(&b, OP_UPSAMPLE, cur, n_out, 2 * H, 2 * H);
            H *= 2;
        }
    }
    cur = unary_op(&b, OP_RELU, cur, c->n_hid, H, H);
    net->out_slot = conv_op(&b, "decoder.blocks.output.conv", cur, new_slot(&b, 6, H, H), 1, 1.0f, 0.0f);
}

int dvae_find_tensor(const dvae_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

int dvae_build(dvae_model *m) {
    if (dvae_config_check(&m->cfg)) return DALLE_ERR;
    m->n_tensors = 0;
    m->n_params = 0;
    build_encoder(m);
    m->n_enc_tensors = m->n_tensors;
    build_decoder(m, &m->dec, 0);
    build_decoder(m, &m->dec_ids, 1);
    return DALLE_OK;
}

int64_t dvae_param_count(const dvae_config *cfg) {
    dvae_model *m = dalle_calloc(1, sizeof *m);
    if (!m) return -1;
    m->cfg = *cfg;
    int64_t n = dvae_build(m) ? -1 : m->n_params;
    dvae_free(m);
    return n;
}

// ---------------------------------------------------------------- lifetime

static dvae_model *model_alloc(const dvae_config *cfg) {
    dvae_model *m = dalle_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    if (dvae_build(m)) goto fail;
    m->params = backend_alloc(sizeof(float) * (size_t)m->n_params);
    if (!m->params) {
        dalle_errprefix("dvae: parameters (%.1f MB)", 4.0 * (double)m->n_params / 1e6);
        goto fail;
    }
    return m;
fail:
    dvae_free(m);
    return NULL;
}

dvae_model *dvae_new(const dvae_config *cfg, uint64_t seed) {
    dvae_model *m = model_alloc(cfg);
    if (!m) return NULL;
    rng_t rng;
    rng_init(&rng, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->is_weight) rng_normal(&rng, p, t->numel, 0.0f, 1.0f / sqrtf((float)t->fan_in));
        else memset(p, 0, sizeof(float) * (size_t)t->numel);
    }
    return m;
}

void dvae_free(dvae_model *m) {
    if (!m) return;
    dvae_exec_free(&m->enc_run);
    dvae_exec_free(&m->dec_run);
    backend_free(m->params);
    dvae_net *nets[3] = {&m->enc, &m->dec, &m->dec_ids};
    for (int i = 0; i < 3; i++) {
        dalle_free(nets[i]->ops);
        dalle_free(nets[i]->slots);
    }
    dalle_free(m);
}

const dvae_config *dvae_get_config(const dvae_model *m) { return &m->cfg; }

// ---------------------------------------------------------------- execution

static int64_t slot_floats(const dvae_net *n, int s, int B) {
    const dvae_slot *sl = &n->slots[s];
    return (int64_t)B * sl->c * sl->h * sl->w;
}

// Inference: assigns each slot a buffer by liveness. A slot's buffer is taken
// at its first write and returned after its last read; buffers grow to the
// largest slot they hold. Returns the number of buffers; buf_of[s] = the
// buffer of slot s (-1 for the net input, which the caller provides).
static int plan_buffers(const dvae_net *n, int B, int *buf_of, int64_t *cap, int max_bufs) {
    int *last = dalle_malloc(sizeof(int) * (size_t)n->n_slots);
    DALLE_ASSERT(last);
    for (int s = 0; s < n->n_slots; s++) { last[s] = -1; buf_of[s] = -1; }
    for (int i = 0; i < n->n_ops; i++) {
        last[n->ops[i].in] = i;
        if (n->ops[i].beta != 0.0f) last[n->ops[i].out] = i;
    }
    last[n->out_slot] = n->n_ops;
    int nb = 0, busy[64] = {0};
    DALLE_ASSERT(max_bufs <= 64);
    for (int i = 0; i < n->n_ops; i++) {
        int s = n->ops[i].out;
        if (buf_of[s] < 0) {
            int64_t need = slot_floats(n, s, B);
            int best = -1;
            for (int j = 0; j < nb; j++) // the smallest free buffer that fits, else the largest free
                if (!busy[j] && (best < 0 || (cap[j] >= need ? (cap[best] < need || cap[j] < cap[best]) : cap[j] > cap[best])))
                    best = j;
            if (best < 0) {
                DALLE_ASSERT(nb < max_bufs);
                best = nb++;
                cap[best] = 0;
            }
            if (cap[best] < need) cap[best] = need;
            busy[best] = 1;
            buf_of[s] = best;
        }
        int in = n->ops[i].in;
        if (last[in] == i && buf_of[in] >= 0) busy[buf_of[in]] = 0;
    }
    dalle_free(last);
    return nb;
}

int64_t dvae_exec_train_floats(const dvae_net *net, int B, int need_din, int64_t *scratch) {
    *scratch = 0;
    for (int i = 0; i < net->n_ops; i++) {
        const dvae_op *op = &net->ops[i];
        if (op->kind != OP_CONV) continue;
        int64_t s = net->half ? conv2d16_scratch_floats(B, op->ci, op->co, op->h, op->w, op->k)
                              : conv2d_scratch_floats(op->ci, op->co, op->h, op->w, op->k);
        if (s > *scratch) *scratch = s;
    }
    int64_t total = 0;
    for (int s = 0; s < net->n_slots; s++) {
        int64_t n = slot_floats(net, s, B);
        if (s != net->in_slot) total += n;
        if (s != net->in_slot || need_din) total += n;
    }
    return total;
}

int dvae_exec_init(dvae_exec *e, const dvae_net *net, int B, int train, int need_din) {
    memset(e, 0, sizeof *e);
    e->net = net;
    e->B = B;
    e->train = train;
    e->act = dalle_calloc((size_t)net->n_slots, sizeof(float *));
    e->grad = dalle_calloc((size_t)net->n_slots, sizeof(float *));
    if (!e->act || !e->grad) goto fail;
    int64_t train_floats = dvae_exec_train_floats(net, B, need_din, &e->scratch_floats);
    if (!train && net->half) { // inference runs the fp32 convolutions
        dvae_net fp32 = *net;
        fp32.half = 0;
        train_floats = dvae_exec_train_floats(&fp32, B, need_din, &e->scratch_floats);
    }
    if (train) {
        e->arena_floats = train_floats;
        e->arena = backend_alloc(sizeof(float) * (size_t)train_floats);
        if (!e->arena) goto fail;
        float *p = e->arena;
        for (int s = 0; s < net->n_slots; s++) {
            int64_t n = slot_floats(net, s, B);
            if (s != net->in_slot) { e->act[s] = p; p += n; }
            if (s != net->in_slot || need_din) { e->grad[s] = p; p += n; }
        }
    } else {
        int buf_of[4096];
        int64_t cap[64], off[64];
        DALLE_ASSERT(net->n_slots <= 4096);
        int nb = plan_buffers(net, B, buf_of, cap, 64);
        int64_t total = 0;
        for (int j = 0; j < nb; j++) { off[j] = total; total += (cap[j] + 15) & ~(int64_t)15; }
        e->arena_floats = total;
        e->arena = backend_alloc(sizeof(float) * (size_t)total);
        if (!e->arena) goto fail;
        for (int s = 0; s < net->n_slots; s++)
            if (s != net->in_slot && buf_of[s] >= 0) e->act[s] = e->arena + off[buf_of[s]];
    }
    if (e->scratch_floats) {
        e->scratch = backend_alloc(sizeof(float) * (size_t)e->scratch_floats);
        if (!e->scratch) goto fail;
    }
    return DALLE_OK;
fail:
    dvae_exec_free(e);
    return DALLE_ERR;
}

void dvae_exec_free(dvae_exec *e) {
    dalle_free(e->act);
    dalle_free(e->grad);
    backend_free(e->arena);
    backend_free(e->scratch);
    backend_free(e->in_buf);
    backend_free(e->codes_buf);
    memset(e, 0, sizeof *e);
}

float *dvae_forward(dvae_exec *e, const float *params) {
    const dvae_net *n = e->net;
    int B = e->B;
    for (int i = 0; i < n->n_ops; i++) {
        const dvae_op *op = &n->ops[i];
        float *out = e->act[op->out];
        const float *in = e->act[op->in];
        int64_t nin = (int64_t)B * op->ci * op->h * op->w;
        switch (op->kind) {
        case OP_CONV:
            if (e->train && n->half)
                conv2d16_forward(out, in, e->w16 + op->w_off, params + op->b_off, B, op->ci, op->co, op->h,
                                 op->w, op->k, op->alpha, op->beta, n->fmt, e->scratch);
            else
                conv2d_forward(out, in, params + op->w_off, params + op->b_off, B, op->ci, op->co, op->h,
                               op->w, op->k, op->alpha, op->beta, e->scratch);
            break;
        case OP_ONEHOT:
            onehot_conv_forward(out, e->codes, params + op->w_off, params + op->b_off, B, op->ci,
                                op->co, op->h * op->w);
            break;
        case OP_RELU: relu_forward(out, in, nin); break;
        case OP_COPY: backend_copy(out, in, sizeof(float) * (size_t)nin); break;
        case OP_POOL: maxpool2_forward(out, in, B, op->ci, op->h, op->w); break;
        case OP_UPSAMPLE: upsample2_forward(out, in, B, op->ci, op->h, op->w); break;
        }
    }
    return e->act[n->out_slot];
}

void dvae_backward(dvae_exec *e, const float *params, float *dparams) {
    const dvae_net *n = e->net;
    int B = e->B;
    DALLE_ASSERT(e->train && n->n_slots <= 4096);
    // Each gradient slot is zeroed just before the first op (in backward
    // order) that adds to it or reads it, not all of them up front: the zeros
    // are then still in cache when that op reads them back.
    unsigned char zeroed[4096];
    memset(zeroed, 0, (size_t)n->n_slots);
    zeroed[n->out_slot] = 1; // the caller's
    for (int i = n->n_ops - 1; i >= 0; i--) {
        const dvae_op *op = &n->ops[i];
        const int touch[2] = {op->out, op->in};
        for (int k = 0; k < 2; k++)
            if (e->grad[touch[k]] && !zeroed[touch[k]]) {
                backend_memset0(e->grad[touch[k]], sizeof(float) * (size_t)slot_floats(n, touch[k], B));
                zeroed[touch[k]] = 1;
            }
        const float *dout = e->grad[op->out];
        float *din = e->grad[op->in]; // NULL for the net's input unless need_din
        const float *in = e->act[op->in];
        int64_t nin = (int64_t)B * op->ci * op->h * op->w;
        switch (op->kind) {
        case OP_CONV:
            if (n->half)
                conv2d16_backward(din, dparams + op->w_off, dparams + op->b_off, dout, in, e->w16 + op->w_off,
                                  B, op->ci, op->co, op->h, op->w, op->k, op->alpha, n->fmt, e->scratch);
            else
                conv2d_backward(din, dparams + op->w_off, dparams + op->b_off, dout, in, params + op->w_off,
                                B, op->ci, op->co, op->h, op->w, op->k, op->alpha, e->scratch);
            break;
        case OP_ONEHOT: DALLE_ASSERT(!"the one-hot input conv has no backward"); break;
        case OP_RELU: if (din) relu_backward(din, dout, e->act[op->out], nin); break;
        case OP_COPY: if (din) axpy(din, 1.0f, dout, nin); break;
        case OP_POOL: if (din) maxpool2_backward(din, dout, in, B, op->ci, op->h, op->w); break;
        case OP_UPSAMPLE: if (din) upsample2_backward(din, dout, B, op->ci, op->h, op->w); break;
        }
    }
}

// ---------------------------------------------------------------- encode / decode

void dvae_map_pixels(float *x, int64_t n) {
    const float eps = DVAE_LOGIT_LAPLACE_EPS;
    for (int64_t i = 0; i < n; i++) x[i] = (1.0f - 2.0f * eps) * x[i] + eps;
}

void dvae_unmap_pixels(float *x, int64_t n) {
    const float eps = DVAE_LOGIT_LAPLACE_EPS;
    for (int64_t i = 0; i < n; i++) {
        float v = (x[i] - eps) / (1.0f - 2.0f * eps);
        x[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
}

// Runs `net` for inference on B items through the binding *e (re-made when
// B changes): the input (in, or the codes of a one-hot net: host memory) is
// copied into backend memory, and the output back to `out` (host).
static int run_inference(dvae_exec *e, const dvae_net *net, const float *params, const float *in,
                         const int32_t *codes, int B, float *out) {
    const int64_t n_in = codes ? (int64_t)B * net->slots[net->in_slot].h * net->slots[net->in_slot].w
                               : slot_floats(net, net->in_slot, B);
    if (e->net != net || e->B != B) {
        dvae_exec_free(e);
        if (dvae_exec_init(e, net, B, 0, 0)) return DALLE_ERR;
        if (codes ? !(e->codes_buf = backend_alloc(sizeof(int32_t) * (size_t)n_in))
                  : !(e->in_buf = backend_alloc(sizeof(float) * (size_t)n_in))) {
            dvae_exec_free(e);
            return DALLE_ERR;
        }
    }
    if (codes) backend_copy(e->codes_buf, codes, sizeof(int32_t) * (size_t)n_in);
    else backend_copy(e->in_buf, in, sizeof(float) * (size_t)n_in);
    e->act[net->in_slot] = e->in_buf;
    e->codes = e->codes_buf;
    const float *y = dvae_forward(e, params);
    backend_copy(out, y, sizeof(float) * (size_t)slot_floats(net, net->out_slot, B));
    return DALLE_OK;
}

int dvae_encode_logits(dvae_model *m, const float *x_mapped, int B, float *logits) {
    return run_inference(&m->enc_run, &m->enc, m->params, x_mapped, NULL, B, logits);
}

int dvae_decode_stats(dvae_model *m, const int32_t *codes, int B, float *stats) {
    int P = dvae_grid(&m->cfg) * dvae_grid(&m->cfg);
    for (int64_t i = 0; i < (int64_t)B * P; i++)
        if (codes[i] < 0 || codes[i] >= m->cfg.vocab_size)
            return dalle_seterr("code %d at position %lld is outside [0, %d)", codes[i], (long long)i, m->cfg.vocab_size);
    return run_inference(&m->dec_run, &m->dec_ids, m->params, NULL, codes, B, stats);
}

int dvae_encode(dvae_model *m, const float *x, int B, int32_t *codes) {
    const dvae_config *c = &m->cfg;
    int64_t nx = (int64_t)B * 3 * c->image_size * c->image_size;
    int V = c->vocab_size, P = dvae_grid(c) * dvae_grid(c);
    float *xm = dalle_malloc(sizeof(float) * (size_t)nx);
    float *logits = dalle_malloc(sizeof(float) * (size_t)B * V * P); // (B, V, P)
    int rc = DALLE_ERR;
    if (!xm || !logits) goto done;
    memcpy(xm, x, sizeof(float) * (size_t)nx);
    dvae_map_pixels(xm, nx);
    if (dvae_encode_logits(m, xm, B, logits)) goto done;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++) { // argmax over the channel axis, first max wins as in torch
            const float *l = logits + (int64_t)b * V * P + p;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (l[(int64_t)v * P] > l[(int64_t)best * P]) best = v;
            codes[(int64_t)b * P + p] = best;
        }
    rc = DALLE_OK;
done:
    dalle_free(xm);
    dalle_free(logits);
    return rc;
}

int dvae_decode(dvae_model *m, const int32_t *codes, int B, float *x) {
    const dvae_config *c = &m->cfg;
    int64_t N = (int64_t)c->image_size * c->image_size;
    float *stats = dalle_malloc(sizeof(float) * (size_t)B * 6 * N); // (B, 6, S, S)
    if (!stats) return DALLE_ERR;
    int rc = dvae_decode_stats(m, codes, B, stats);
    if (rc == DALLE_OK) {
        for (int b = 0; b < B; b++) {
            const float *mu = stats + (int64_t)b * 6 * N;
            float *xb = x + (int64_t)b * 3 * N;
            for (int64_t i = 0; i < 3 * N; i++) xb[i] = 1.0f / (1.0f + expf(-mu[i]));
        }
        dvae_unmap_pixels(x, (int64_t)B * 3 * N);
    }
    dalle_free(stats);
    return rc;
}

// ---------------------------------------------------------------- files

static const char *const CONFIG_FIELDS[6] = {"n_hid", "n_blk_per_group", "vocab_size", "n_init", "image_size", "n_pool"};

static int *config_field(dvae_config *c, int i) {
    int *f[6] = {&c->n_hid, &c->n_blk_per_group, &c->vocab_size, &c->n_init, &c->image_size, &c->n_pool};
    return f[i];
}

int dvae_config_to_json(const dvae_config *cfg, char *buf, size_t n) {
    dvae_config c = *cfg;
    size_t len = (size_t)snprintf(buf, n, "{");
    for (int i = 0; i < 6 && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s\"%s\": %d", i ? ", " : "", CONFIG_FIELDS[i], *config_field(&c, i));
    if (len < n) len += (size_t)snprintf(buf + len, n - len, "}");
    return len < n ? DALLE_OK : dalle_seterr("dvae config: JSON longer than %zu bytes", n);
}

int dvae_config_from_file(const st_file *f, dvae_config *cfg) {
    const char *kind = st_meta(f, "dalle.kind");
    if (!kind) return dalle_seterr("%s: metadata 'dalle.kind' missing (not a dalle.c dVAE file?)", f->path);
    if (strcmp(kind, "dvae")) return dalle_seterr("%s: metadata 'dalle.kind' is '%s', expected 'dvae'", f->path, kind);
    const char *js = st_meta(f, "dvae.config");
    if (!js) return dalle_seterr("%s: metadata 'dvae.config' missing", f->path);
    cJSON *j = cJSON_Parse(js);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return dalle_seterr("%s: metadata 'dvae.config' is not a JSON object", f->path);
    }
    int rc = DALLE_OK;
    for (int i = 0; i < 6; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, CONFIG_FIELDS[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble) {
            rc = dalle_seterr("%s: metadata 'dvae.config': field '%s' missing or not an integer", f->path, CONFIG_FIELDS[i]);
            break;
        }
        *config_field(cfg, i) = (int)v->valuedouble;
    }
    cJSON_Delete(j);
    if (rc == DALLE_OK && dvae_config_check(cfg)) rc = dalle_errprefix("%s", f->path);
    return rc;
}

int dvae_write_meta(const dvae_config *cfg, st_writer *w) {
    char js[512];
    if (dvae_config_to_json(cfg, js, sizeof js)) return DALLE_ERR;
    if (st_writer_meta(w, "dalle.kind", "dvae") || st_writer_meta(w, "dalle.version", "1") ||
        st_writer_meta(w, "dvae.config", js))
        return DALLE_ERR;
    return DALLE_OK;
}

static int dvae_knows(const void *m, const char *name) { return dvae_find_tensor(m, name) >= 0; }

int dvae_check_names(const dvae_model *m, const st_file *f, const char *const *prefixes, int n_prefixes) {
    return st_check_names(f, prefixes, n_prefixes, dvae_knows, m, "not part of this dVAE config");
}

int dvae_read_tensors(const dvae_model *m, const st_file *f, const char *prefix, float *dst) {
    backend_sync(); // dst may be backend memory an op still writes (zeroing, a gradient)
    char name[DVAE_NAME_LEN + 32];
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *t = &m->tensors[i];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        if (st_read_f32(f, name, dst + t->offset, t->ndim, t->shape)) return DALLE_ERR;
    }
    return DALLE_OK;
}

int dvae_add_tensors(const dvae_model *m, st_writer *w, const char *prefix, const float *src, st_dtype dtype) {
    char name[DVAE_NAME_LEN + 32];
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *t = &m->tensors[i];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        if (st_writer_add(w, name, dtype, src + t->offset, t->ndim, t->shape)) return DALLE_ERR;
    }
    return DALLE_OK;
}

dvae_model *dvae_load(const char *path, int use_ema) {
    static const char *const prefixes[] = {"", "ema.", "adam.m.", "adam.v."};
    dvae_model *m = NULL;
    st_file *f = st_open(path);
    if (!f) return NULL;
    dvae_config cfg;
    if (dvae_config_from_file(f, &cfg)) goto fail;
    if (!(m = model_alloc(&cfg))) goto fail;
    if (dvae_check_names(m, f, prefixes, 4)) goto fail;
    char ema0[DVAE_NAME_LEN + 8];
    snprintf(ema0, sizeof ema0, "ema.%s", m->tensors[0].name);
    if (dvae_read_tensors(m, f, use_ema && st_find(f, ema0) ? "ema." : "", m->params)) goto fail;
    st_close(f);
    return m;
fail:
    st_close(f);
    dvae_free(m);
    return NULL;
}

int dvae_save_as(const dvae_model *m, const char *path, st_dtype dtype) {
    backend_sync(); // the parameters are read on the host
    st_writer *w = st_writer_new();
    if (!w) return DALLE_ERR;
    int rc = DALLE_ERR;
    if (!dvae_write_meta(&m->cfg, w) && !dvae_add_tensors(m, w, "", m->params, dtype)) rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}

int dvae_save(const dvae_model *m, const char *path) { return dvae_save_as(m, path, ST_F32); }
