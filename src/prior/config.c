// config.c: the prior's configurations, layer types and attention masks
// (include/dalle/prior.h). The masks here are the definition: the sparse
// attention kernels visit exactly the keys prior_mask allows, and the dense
// reference path of the tests applies prior_mask itself. Also the config as
// JSON, and what a config costs (parameters, FLOPs, memory) without building it.
#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "dalle/dalle.h"
#include "dalle/prior.h"
#include "prior/model.h"

int prior_config_preset(const char *name, prior_config *cfg) {
    static const struct {
        const char *name;
        prior_config c;
    } P[] = {
        // n_layer n_head d_head text_len text_vocab grid image_vocab conv_kernel mlp_mult
        {"paper", {64, 62, 64, 256, 16384, 32, 8192, 11, 4}},
        {"small", {8, 4, 64, 32, 4096, 16, 512, 11, 4}},
        {"tiny", {4, 2, 8, 6, 40, 4, 24, 3, 4}},
    };
    for (size_t i = 0; i < sizeof P / sizeof *P; i++)
        if (!strcmp(name, P[i].name)) {
            *cfg = P[i].c;
            return DALLE_OK;
        }
    return dalle_seterr("unknown prior preset '%s' (paper, small, tiny)", name);
}

int prior_config_check(const prior_config *c) {
    static const struct {
        const char *name;
        size_t off;
        int lo, hi;
    } F[] = {
        {"n_layer", offsetof(prior_config, n_layer), 1, 1024},
        {"n_head", offsetof(prior_config, n_head), 1, 1024},
        {"d_head", offsetof(prior_config, d_head), 1, 1024},
        {"text_len", offsetof(prior_config, text_len), 2, 1 << 16},
        {"text_vocab", offsetof(prior_config, text_vocab), 1, 1 << 24},
        {"grid", offsetof(prior_config, grid), 1, 1024},
        {"image_vocab", offsetof(prior_config, image_vocab), 1, 1 << 24},
        {"conv_kernel", offsetof(prior_config, conv_kernel), 1, 2047},
        {"mlp_mult", offsetof(prior_config, mlp_mult), 1, 64},
    };
    for (size_t i = 0; i < sizeof F / sizeof *F; i++) {
        int v = *(const int *)((const char *)c + F[i].off);
        if (v < F[i].lo || v > F[i].hi)
            return dalle_seterr("prior config: %s = %d is outside [%d, %d]", F[i].name, v, F[i].lo, F[i].hi);
    }
    if (c->conv_kernel % 2 == 0 || c->conv_kernel > 2 * c->grid - 1)
        return dalle_seterr("prior config: conv_kernel = %d must be odd and at most 2*grid-1 = %d", c->conv_kernel,
                            2 * c->grid - 1);
    if ((int64_t)c->n_head * c->d_head > 1 << 16)
        return dalle_seterr("prior config: d_model = n_head*d_head = %lld is too large",
                            (long long)c->n_head * c->d_head);
    return DALLE_OK;
}

prior_layer_type prior_layer_type_of(const prior_config *cfg, int l) {
    if (l == cfg->n_layer - 1) return PRIOR_CONV;
    return ((l + 1 - 2) % 4 + 4) % 4 == 0 ? PRIOR_COLUMN : PRIOR_ROW;
}

int prior_mask_image(const prior_config *cfg, prior_layer_type type, int i, int j) {
    int G = cfg->grid, d = i - j;
    if (d < 0) return 0;
    switch (type) {
    case PRIOR_ROW: return d <= G;
    case PRIOR_COLUMN: return d % G == 0;
    case PRIOR_CONV: {
        int r = (cfg->conv_kernel - 1) / 2;
        // d = dr*G + dc with |dc| <= r < G/2... in general: try each row offset.
        for (int dr = 0; dr <= r; dr++) {
            int dc = d - dr * G;
            if (dc >= -r && dc <= r) return 1;
        }
        return 0;
    }
    }
    return 0;
}

int prior_mask(const prior_config *cfg, prior_layer_type type, int q, int k) {
    if (k > q) return 0;
    int L = cfg->text_len;
    if (q < L || k < L) return 1;
    return prior_mask_image(cfg, type, q - L, k - L);
}

int64_t prior_param_count(const prior_config *c) {
    int64_t d = (int64_t)c->n_head * c->d_head, f = d * c->mlp_mult;
    int64_t Vt = (int64_t)c->text_vocab + c->text_len, Vi = c->image_vocab;
    int64_t emb = Vt * d + (int64_t)c->text_len * d + (Vi + 1) * d + 2 * (int64_t)c->grid * d;
    int64_t block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (f * d + f) + (d * f + d);
    int64_t head = 2 * d + Vt * d + Vi * d;
    return emb + c->n_layer * block + head;
}

// ---------------------------------------------------------------- JSON

// The nine fields in the order of the struct (the JSON order).
static const struct {
    const char *name;
    size_t off;
} CFG_FIELDS[] = {
    {"n_layer", offsetof(prior_config, n_layer)},         {"n_head", offsetof(prior_config, n_head)},
    {"d_head", offsetof(prior_config, d_head)},           {"text_len", offsetof(prior_config, text_len)},
    {"text_vocab", offsetof(prior_config, text_vocab)},   {"grid", offsetof(prior_config, grid)},
    {"image_vocab", offsetof(prior_config, image_vocab)}, {"conv_kernel", offsetof(prior_config, conv_kernel)},
    {"mlp_mult", offsetof(prior_config, mlp_mult)},
};
#define N_CFG_FIELDS ((int)(sizeof CFG_FIELDS / sizeof *CFG_FIELDS))

int prior_config_from_json(const char *json, prior_config *cfg, const char *what) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(json, &end, 1);
    if (!j) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return dalle_seterr("%s: prior config: not valid JSON (at byte %zu)", what, at);
    }
    int rc = DALLE_OK, seen[N_CFG_FIELDS] = {0};
    prior_config c = {0};
    if (!cJSON_IsObject(j)) {
        rc = dalle_seterr("%s: prior config: not a JSON object", what);
        goto done;
    }
    for (const cJSON *v = j->child; v; v = v->next) {
        int f = 0;
        while (f < N_CFG_FIELDS && strcmp(CFG_FIELDS[f].name, v->string)) f++;
        if (f == N_CFG_FIELDS) {
            rc = dalle_seterr("%s: prior config: unknown field '%s'", what, v->string);
            goto done;
        }
        if (seen[f]++) {
            rc = dalle_seterr("%s: prior config: field '%s' appears twice", what, v->string);
            goto done;
        }
        double x = v->valuedouble;
        if (!cJSON_IsNumber(v) || !(x >= INT_MIN && x <= INT_MAX) || x != floor(x)) {
            rc = dalle_seterr("%s: prior config: field '%s' is not an integer", what, v->string);
            goto done;
        }
        *(int *)((char *)&c + CFG_FIELDS[f].off) = (int)x;
    }
    for (int f = 0; f < N_CFG_FIELDS; f++)
        if (!seen[f]) {
            rc = dalle_seterr("%s: prior config: field '%s' missing", what, CFG_FIELDS[f].name);
            goto done;
        }
    if (prior_config_check(&c) != DALLE_OK) {
        rc = dalle_errprefix("%s", what);
        goto done;
    }
    *cfg = c;
done:
    cJSON_Delete(j);
    return rc;
}

char *prior_config_to_json(const prior_config *cfg) {
    size_t cap = 32 + (size_t)N_CFG_FIELDS * 32, n = 0;
    char *s = dalle_malloc(cap);
    if (!s) return NULL;
    n += (size_t)snprintf(s + n, cap - n, "{");
    for (int f = 0; f < N_CFG_FIELDS; f++)
        n += (size_t)snprintf(s + n, cap - n, "%s\"%s\":%d", f ? "," : "", CFG_FIELDS[f].name,
                              *(const int *)((const char *)cfg + CFG_FIELDS[f].off));
    snprintf(s + n, cap - n, "}");
    DALLE_ASSERT(n + 1 < cap);
    return s;
}

int prior_config_resolve(const char *spec, prior_config *cfg) {
    if (prior_config_preset(spec, cfg) == DALLE_OK) return DALLE_OK;
    char *js = dalle_read_file(spec, NULL);
    if (!js) return dalle_errprefix("prior config '%s' is not a preset (paper, small, tiny), and as a file", spec);
    int rc = prior_config_from_json(js, cfg, spec);
    dalle_free(js);
    return rc;
}

// ---------------------------------------------------------------- costs

// Keys of the image queries of pattern TYPE: the sum over i < N of the image
// keys j <= i that prior_mask_image allows. Every pattern depends on i - j
// only, so query i allows exactly the offsets 0..i that query N-1 allows
// among its first i+1: one pass over the offsets gives all counts (O(N)
// calls; tests/test_prior_config.c checks it against the pairwise loop and
// the model's key lists).
static int64_t image_pairs(const prior_config *cfg, prior_layer_type type) {
    int64_t N = (int64_t)cfg->grid * cfg->grid, below = 0, sum = 0;
    for (int64_t i = 0; i < N; i++) {
        below += prior_mask_image(cfg, type, (int)i, 0); // offset i
        sum += below;
    }
    return sum;
}

// Image positions a layer of type TYPE must keep in the sampling cache: the
// largest offset it may attend, plus one.
static int64_t cache_window(const prior_config *cfg, prior_layer_type type) {
    int64_t G = cfg->grid, r = (cfg->conv_kernel - 1) / 2;
    switch (type) {
    case PRIOR_ROW: return G + 1;
    case PRIOR_COLUMN: return G * G;
    case PRIOR_CONV: return r * G + r + 1;
    }
    return G * G;
}

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

// The bytes of prior_acts_new's arena (same pieces, same rounding) for a
// model at PREC (bf16 and fp16 take the same room).
static int64_t act_bytes(const prior_config *cfg, const int64_t nnz[3], int B, prior_precision prec, int ckpt) {
    int64_t sizes[PRIOR_ACT_PIECES], floats = 0;
    prior_act_sizes(cfg, nnz, B, prec, ckpt, sizes);
    for (int i = 0; i < PRIOR_ACT_PIECES; i++) floats += round16(sizes[i]);
    return 4 * floats;
}

// The parameters a 16-bit model keeps in 16 bits: the blocks' matrices.
static int64_t params16(const prior_config *c) {
    int64_t d = (int64_t)c->n_head * c->d_head, f = d * c->mlp_mult;
    return c->n_layer * (3 * d * d + d * d + 2 * f * d);
}

int prior_precision_parse(const char *s, prior_precision *p) {
    if (!strcmp(s, "fp32")) *p = PRIOR_FP32;
    else if (!strcmp(s, "bf16")) *p = PRIOR_BF16;
    else if (!strcmp(s, "fp16")) *p = PRIOR_FP16;
    else return dalle_seterr("precision '%s': expected fp32, bf16 or fp16", s);
    return DALLE_OK;
}

const char *prior_precision_name(prior_precision p) {
    return p == PRIOR_FP32 ? "fp32" : p == PRIOR_BF16 ? "bf16" : "fp16";
}

int prior_costs_compute(const prior_config *cfg, int batch, int n_cand, prior_costs *out) {
    if (prior_config_check(cfg) != DALLE_OK) return DALLE_ERR;
    if (batch < 1 || batch > 1 << 20) return dalle_seterr("prior costs: batch = %d is outside [1, 2^20]", batch);
    if (n_cand < 1 || n_cand > 1 << 20)
        return dalle_seterr("prior costs: candidates = %d is outside [1, 2^20]", n_cand);
    prior_costs c = {0};
    int nl = cfg->n_layer;
    int64_t d = (int64_t)cfg->n_head * cfg->d_head, f = d * cfg->mlp_mult, L = cfg->text_len;
    int64_t N = (int64_t)cfg->grid * cfg->grid, T = L + N, Vt = cfg->text_vocab + L, Vi = cfg->image_vocab;
    int64_t B = batch, BT = B * T, K = n_cand;

    c.params = prior_param_count(cfg);
    for (int l = 0; l < nl; l++) c.n_layers[prior_layer_type_of(cfg, l)]++;
    // text queries see the causal text; image queries all L text keys and their image keys
    for (int t = 0; t < 3; t++) c.nnz[t] = L * (L + 1) / 2 + N * L + image_pairs(cfg, (prior_layer_type)t);
    c.nnz_dense = T * (T + 1) / 2;

    double layer = 2.0 * (double)d * (3.0 * (double)d + (double)d + 2.0 * (double)f); // qkv, proj, fc, fc2
    double heads = 2.0 * (double)d * ((double)(L - 1) * (double)Vt + (double)N * (double)Vi) / (double)T;
    c.flops_matmul = nl * layer + heads;
    for (int t = 0; t < 3; t++) c.flops_attn += c.n_layers[t] * 4.0 * (double)d * (double)c.nnz[t] / (double)T;
    c.flops_attn_dense = nl * 4.0 * (double)d * (double)c.nnz_dense / (double)T;
    c.flops_fwd = c.flops_matmul + c.flops_attn;
    c.flops_fwd_dense = c.flops_matmul + c.flops_attn_dense;
    c.flops_train = 3 * c.flops_fwd;
    c.flops_train_dense = 3 * c.flops_fwd_dense;

    c.bytes_weights = 4 * c.params;
    c.bytes_weights16 = 2 * c.params;
    c.bytes_grads = 4 * c.params;
    c.bytes_adam = 8 * c.params;
    c.bytes_adam16 = 4 * c.params;

    // The activations: prior_acts_new's size table (src/prior/model.c), each piece
    // rounded up to 16 floats as it does. Bounded in double first so the int64 sums cannot overflow.
    double att_d = 0, big = (double)BT * (double)(nl + 1) * (double)(6 * d + 2 * f + 4) * 2.0 +
                            (double)B * (double)((L - 1) * Vt + N * Vi);
    for (int l = 0; l < nl; l++) att_d += (double)B * cfg->n_head * (double)c.nnz[prior_layer_type_of(cfg, l)];
    if (big + att_d > 0x1p58) return dalle_seterr("prior costs: the activations of batch %d exceed 2^60 bytes", batch);
    c.batch = batch;
    c.bytes_acts = act_bytes(cfg, c.nnz, batch, PRIOR_FP32, 0);
    c.bytes_acts16 = act_bytes(cfg, c.nnz, batch, PRIOR_FP16, 0);
    c.bytes_acts_ckpt = act_bytes(cfg, c.nnz, batch, PRIOR_FP32, 1);
    c.bytes_acts_ckpt16 = act_bytes(cfg, c.nnz, batch, PRIOR_FP16, 1);
    c.params16 = params16(cfg);

    double kv_d = 0;
    for (int l = 0; l < nl; l++)
        kv_d += 2.0 * (double)d * ((double)L + (double)K * (double)cache_window(cfg, prior_layer_type_of(cfg, l)));
    if (kv_d > 0x1p58) return dalle_seterr("prior costs: the cache of %d candidates exceeds 2^60 bytes", n_cand);
    int64_t kv = 0;
    for (int l = 0; l < nl; l++) kv += 2 * d * (L + K * cache_window(cfg, prior_layer_type_of(cfg, l)));
    c.n_cand = n_cand;
    c.bytes_kv = 4 * kv;
    c.bytes_sample = c.bytes_kv + c.bytes_weights;
    *out = c;
    return DALLE_OK;
}

int prior_rank_costs_compute(const prior_config *cfg, int ranks, prior_precision prec, prior_rank_costs *out) {
    prior_costs c;
    if (ranks < 1 || ranks > 1 << 20) return dalle_seterr("prior costs: ranks = %d is outside [1, 2^20]", ranks);
    if (prior_costs_compute(cfg, 1, 1, &c)) return DALLE_ERR;
    prior_rank_costs r = {0};
    int64_t n = c.params, K = ranks, s = (n + K - 1) / K, half = prec != PRIOR_FP32;
    r.ranks = ranks;
    r.prec = prec;
    r.shard = s;
    r.bytes_weights = half ? 2 * c.params16 + 4 * (n - c.params16) : 4 * n;
    r.bytes_master = half ? 4 * s : 0;
    r.bytes_grads = K > 1 ? 4 * (K * s + s) : 4 * n;
    r.bytes_adam = half ? 4 * s : 8 * s;
    r.bytes_ema = 4 * s;
    r.bytes_acts_seq = half ? c.bytes_acts16 : c.bytes_acts;
    r.bytes_acts_seq_ckpt = half ? c.bytes_acts_ckpt16 : c.bytes_acts_ckpt;
    r.bytes_sent = 8 * (K - 1) * s;
    *out = r;
    return DALLE_OK;
}

int prior_psgd_costs_compute(const prior_config *cfg, int ranks, int r, prior_psgd_costs *out) {
    prior_costs c;
    if (ranks < 1 || ranks > 1 << 20) return dalle_seterr("prior costs: ranks = %d is outside [1, 2^20]", ranks);
    if (r < 1) return dalle_seterr("prior costs: PowerSGD rank %d, expected at least 1", r);
    if (prior_costs_compute(cfg, 1, 1, &c)) return DALLE_ERR;
    int64_t d = (int64_t)cfg->n_head * cfg->d_head, f = d * cfg->mlp_mult;
    // each layer's matrices (rows, columns): qkv, proj, fc, fc2
    const int64_t shapes[4][2] = {{3 * d, d}, {d, d}, {f, d}, {d, f}};
    int64_t pq = 0;
    for (int i = 0; i < 4; i++)
        pq += (shapes[i][0] + shapes[i][1]) * DALLE_MIN((int64_t)r, DALLE_MIN(shapes[i][0], shapes[i][1]));
    pq *= cfg->n_layer;
    prior_psgd_costs o = {ranks, r, c.params, c.params - c.params16 + pq, pq, 0, 0, 0};
    // a ring all-reduce sends 2 (K-1)/K of the bytes reduced from each rank
    const double ring = 2.0 * (ranks - 1) / ranks;
    o.bytes_plain = (int64_t)(ring * 4.0 * (double)o.floats_plain);
    o.bytes_psgd = (int64_t)(ring * 4.0 * (double)o.floats_psgd);
    o.bytes_psgd16 = (int64_t)(ring * (4.0 * (double)(c.params - c.params16) + 2.0 * (double)pq));
    *out = o;
    return DALLE_OK;
}
