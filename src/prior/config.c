// config.c: the prior's configurations, layer types and attention masks
// (include/dalle/prior.h). The masks here are the definition: the sparse
// attention kernels visit exactly the keys prior_mask allows, and the dense
// reference path of the tests applies prior_mask itself.
#include <stddef.h>
#include <string.h>

#include "core/common.h"
#include "dalle/dalle.h"
#include "dalle/prior.h"

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
