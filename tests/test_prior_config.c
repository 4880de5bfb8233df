// test_prior_config.c: the prior's config as JSON and what a config costs.
//   - prior_config_to_json / prior_config_from_json round trip every preset,
//     and every kind of bad object is refused with a message naming the
//     source and the field; prior_config_resolve takes presets and files;
//   - prior_costs_compute against the model it describes: the key counts
//     against the pairwise mask loops and the model's key lists, the
//     activation bytes against prior_acts_new's arena, the KV cache of tiny
//     by hand, and the paper's training FLOPs per token against 6 x params.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "dalle/dalle.h"
#include "dalle/prior.h"
#include "prior/model.h"
#include "test.h"

static const char *const PRESETS[] = {"paper", "small", "tiny"};

static int err_has(const char *a, const char *b) {
    const char *e = dalle_last_error();
    int ok = strstr(e, a) && (!b || strstr(e, b));
    if (!ok) fprintf(stderr, "    error was: %s (wanted '%s', '%s')\n", e, a, b ? b : "");
    return ok;
}

static void test_json_round_trip(void) {
    for (int p = 0; p < 3; p++) {
        prior_config c, back;
        CHECK(prior_config_preset(PRESETS[p], &c) == DALLE_OK);
        char *js = prior_config_to_json(&c);
        CHECK(js != NULL);
        memset(&back, 0x5a, sizeof back);
        CHECK(prior_config_from_json(js, &back, "round trip") == DALLE_OK);
        CHECK(!memcmp(&c, &back, sizeof c));
        if (p == 0)
            CHECK(!strcmp(js, "{\"n_layer\":64,\"n_head\":62,\"d_head\":64,\"text_len\":256,\"text_vocab\":16384,"
                              "\"grid\":32,\"image_vocab\":8192,\"conv_kernel\":11,\"mlp_mult\":4}"));
        dalle_free(js);
    }
    // whitespace, field order and integral floats do not matter
    prior_config c, want;
    prior_config_preset("tiny", &want);
    CHECK(prior_config_from_json(" { \"mlp_mult\": 4, \"conv_kernel\": 3.0, \"image_vocab\": 24, \"grid\": 4,\n"
                                 "\"text_vocab\": 40, \"text_len\": 6, \"d_head\": 8, \"n_head\": 2, \"n_layer\": 4 } ",
                                 &c, "x") == DALLE_OK);
    CHECK(!memcmp(&c, &want, sizeof c));
}

static void test_json_errors(void) {
    static const struct {
        const char *json, *want;
    } BAD[] = {
        {"{\"n_layer\":4,\"n_head\":2,\"d_head\":8,\"text_len\":6,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":3}", "field 'mlp_mult' missing"},
        {"{\"n_layer\":\"4\",\"n_head\":2,\"d_head\":8,\"text_len\":6,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":3,\"mlp_mult\":4}", "'n_layer' is not an integer"},
        {"{\"n_layer\":4,\"n_head\":2.5,\"d_head\":8,\"text_len\":6,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":3,\"mlp_mult\":4}", "'n_head' is not an integer"},
        {"{\"n_layer\":4,\"n_head\":2,\"d_head\":1e300,\"text_len\":6,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":3,\"mlp_mult\":4}", "'d_head' is not an integer"},
        {"{\"n_layer\":4,\"n_head\":2,\"d_head\":8,\"text_len\":null,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":3,\"mlp_mult\":4}", "'text_len' is not an integer"},
        {"{\"n_layer\":4,\"n_head\":2,\"d_head\":8,\"text_len\":6,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":3,\"mlp_mult\":4,\"dropout\":0}", "unknown field 'dropout'"},
        {"{\"n_layer\":4,\"n_layer\":4,\"n_head\":2,\"d_head\":8,\"text_len\":6,\"text_vocab\":40,\"grid\":4,"
         "\"image_vocab\":24,\"conv_kernel\":3,\"mlp_mult\":4}", "'n_layer' appears twice"},
        {"{\"n_layer\":4,\"n_head\":2,\"d_head\":8,\"text_len\":6,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":4,\"mlp_mult\":4}", "conv_kernel = 4"},
        {"{\"n_layer\":0,\"n_head\":2,\"d_head\":8,\"text_len\":6,\"text_vocab\":40,\"grid\":4,\"image_vocab\":24,"
         "\"conv_kernel\":3,\"mlp_mult\":4}", "n_layer = 0"},
        {"[4, 2, 8]", "not a JSON object"},
        {"{\"n_layer\":4,", "not valid JSON"},
        {"{} {}", "not valid JSON"},
        {"", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        prior_config c;
        prior_config_preset("small", &c);
        prior_config before = c;
        CHECK(prior_config_from_json(BAD[i].json, &c, "cfg.json") == DALLE_ERR);
        CHECK(err_has("cfg.json", BAD[i].want));
        CHECK(!memcmp(&c, &before, sizeof c)); // untouched on failure
    }
}

static void test_resolve(void) {
    prior_config c, want;
    CHECK(prior_config_resolve("paper", &c) == DALLE_OK);
    prior_config_preset("paper", &want);
    CHECK(!memcmp(&c, &want, sizeof c));
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_prior_config.%d.json", (int)getpid());
    prior_config_preset("tiny", &want);
    char *js = prior_config_to_json(&want);
    CHECK(js && dalle_write_file_atomic(path, js, strlen(js)) == DALLE_OK);
    dalle_free(js);
    CHECK(prior_config_resolve(path, &c) == DALLE_OK);
    CHECK(!memcmp(&c, &want, sizeof c));
    CHECK(dalle_write_file_atomic(path, "{\"n_layer\": 4}", 14) == DALLE_OK);
    CHECK(prior_config_resolve(path, &c) == DALLE_ERR && err_has(path, "field 'n_head' missing"));
    unlink(path);
    CHECK(prior_config_resolve(path, &c) == DALLE_ERR && err_has("not a preset", "cannot open"));
    CHECK(prior_config_resolve("huge", &c) == DALLE_ERR && err_has("'huge' is not a preset", NULL));
}

// The pairs (query, key) of the whole stream that prior_mask allows, by the
// definition (every pair).
static int64_t pairs_by_definition(const prior_config *c, prior_layer_type type) {
    int T = c->text_len + c->grid * c->grid;
    int64_t n = 0;
    for (int q = 0; q < T; q++)
        for (int k = 0; k <= q; k++) n += prior_mask(c, type, q, k);
    return n;
}

static void test_costs_key_counts(void) {
    prior_config cs[5];
    prior_config_preset("tiny", &cs[0]);
    prior_config_preset("small", &cs[1]);
    prior_config_preset("paper", &cs[2]);
    cs[3] = cs[2], cs[3].grid = 4, cs[3].conv_kernel = 7;         // the masks of `dalle masks --grid 4`
    cs[4] = cs[1], cs[4].grid = 6, cs[4].conv_kernel = 9;         // a window wider than half a row
    for (int i = 0; i < 5; i++) {
        prior_costs k;
        CHECK(prior_costs_compute(&cs[i], 1, 1, &k) == DALLE_OK);
        int64_t T = cs[i].text_len + cs[i].grid * cs[i].grid;
        CHECK(k.nnz_dense == T * (T + 1) / 2);
        for (int t = 0; t < 3; t++) {
            CHECK(k.nnz[t] == pairs_by_definition(&cs[i], (prior_layer_type)t));
            CHECK(k.nnz[t] <= k.nnz_dense);
        }
        CHECK(k.n_layers[0] + k.n_layers[1] + k.n_layers[2] == cs[i].n_layer && k.n_layers[2] == 1);
        if (i < 2) { // against the model's key lists
            prior_model *m = prior_model_new(&cs[i], PRIOR_FP32);
            CHECK(m != NULL);
            for (int t = 0; m && t < 3; t++) CHECK(k.nnz[t] == m->keys[t].nnz);
            prior_model_free(m);
        }
    }
    // the paper's layers: 47 row, 16 column, 1 conv; conv sees 61 image keys once past the first rows
    prior_costs k;
    CHECK(prior_costs_compute(&cs[2], 1, 1, &k) == DALLE_OK);
    CHECK(k.n_layers[0] == 47 && k.n_layers[1] == 16 && k.n_layers[2] == 1);
    int seen = 0;
    for (int j = 0; j <= 1023; j++) seen += prior_mask_image(&cs[2], PRIOR_CONV, 1023, j);
    CHECK(seen == 61);
}

static void test_costs_activations(void) {
    for (int p = 1; p < 3; p++) {
        prior_config c;
        prior_config_preset(PRESETS[p], &c);
        prior_model *m = prior_model_new(&c, PRIOR_FP32);
        CHECK(m != NULL);
        if (!m) continue;
        for (int B = 1; B <= 3; B += 2) {
            prior_costs k;
            CHECK(prior_costs_compute(&c, B, 7, &k) == DALLE_OK);
            prior_acts *a = prior_acts_new(m, B, 0);
            CHECK(a != NULL);
            if (a) {
                printf("    %-6s B=%d activations %lld bytes, prior_acts_new %lld\n", PRESETS[p], B,
                       (long long)k.bytes_acts, (long long)(4 * a->arena_floats));
                CHECK(k.bytes_acts == 4 * a->arena_floats);
            }
            prior_acts_free(a);
            CHECK(k.params == m->n_params && k.bytes_weights == 4 * m->n_params);
            CHECK(k.bytes_weights16 == 2 * k.params && k.bytes_grads == 4 * k.params);
            CHECK(k.bytes_adam == 8 * k.params && k.bytes_adam16 == 4 * k.params);
        }
        prior_model_free(m);
    }
}

static void test_costs_sampling(void) {
    // tiny: L 6, d 16, G 4, r 1; layers row, column, row, conv keep 5, 16, 5, 6 image positions
    prior_config c;
    prior_config_preset("tiny", &c);
    prior_costs k;
    CHECK(prior_costs_compute(&c, 1, 512, &k) == DALLE_OK);
    int64_t floats = 2 * 16 * ((6 + 512 * 5) * 2 + (6 + 512 * 16) + (6 + 512 * 6));
    CHECK(k.bytes_kv == 4 * floats);
    CHECK(k.bytes_sample == k.bytes_kv + k.bytes_weights);
    // each cache window holds every key its layer type may attend, and row and conv need all of it
    for (int p = 0; p < 3; p++) {
        prior_config_preset(PRESETS[p], &c);
        int G = c.grid, N = G * G, r = (c.conv_kernel - 1) / 2;
        int W[3] = {G + 1, N, r * G + r + 1};
        for (int t = 0; t < 3; t++) {
            int far = 0;
            for (int j = 0; j < N; j++)
                if (prior_mask_image(&c, (prior_layer_type)t, N - 1, j)) far = DALLE_MAX(far, N - 1 - j);
            CHECK(far < W[t]);
            if (t != PRIOR_COLUMN) CHECK(far == W[t] - 1);
        }
    }
}

static void test_costs_flops(void) {
    prior_config c;
    prior_config_preset("paper", &c);
    prior_costs k;
    CHECK(prior_costs_compute(&c, 1, 512, &k) == DALLE_OK);
    double six_n = 6.0 * (double)k.params;
    printf("    paper: params %lld, training FLOPs/token %.4g sparse, %.4g dense; 6 x params %.4g (ratio %.3f)\n",
           (long long)k.params, k.flops_train, k.flops_train_dense, six_n, k.flops_train / six_n);
    CHECK(k.params > 12.28e9 && k.params < 12.30e9);
    CHECK(k.flops_train > 0.95 * six_n && k.flops_train < 1.05 * six_n); // within 5%
    CHECK(k.flops_train == 3 * k.flops_fwd && k.flops_train_dense == 3 * k.flops_fwd_dense);
    CHECK(k.flops_attn < k.flops_attn_dense && k.flops_fwd < k.flops_fwd_dense);
    // the matrix products of a layer: 2 * (3d^2 + d^2 + 2 d f) per token, and the heads
    double d = 3968, f = 4 * d, T = 1280;
    double want = 64 * 2 * (4 * d * d + 2 * d * f) + 2 * d * (255.0 * (16384 + 256) + 1024.0 * 8192) / T;
    CHECK(fabs(k.flops_matmul - want) < 1e-9 * want);
    CHECK(fabs(k.flops_attn_dense - 64 * 4 * d * (T + 1) / 2) < 1e-9 * k.flops_attn_dense);
}

static void test_costs_errors(void) {
    prior_config c;
    prior_costs k;
    prior_config_preset("tiny", &c);
    CHECK(prior_costs_compute(&c, 0, 1, &k) == DALLE_ERR && err_has("batch = 0", NULL));
    CHECK(prior_costs_compute(&c, 1, -3, &k) == DALLE_ERR && err_has("candidates = -3", NULL));
    c.conv_kernel = 2;
    CHECK(prior_costs_compute(&c, 1, 1, &k) == DALLE_ERR && err_has("conv_kernel", NULL));
    // a config whose activations cannot be counted in 64 bits is refused, not wrapped
    prior_config_preset("paper", &c);
    c.n_layer = 1024, c.mlp_mult = 64, c.grid = 1024, c.n_head = 1024;
    CHECK(prior_costs_compute(&c, 1 << 20, 1 << 20, &k) == DALLE_ERR && err_has("exceed", NULL));
}

int main(void) {
    RUN(test_json_round_trip);
    RUN(test_json_errors);
    RUN(test_resolve);
    RUN(test_costs_key_counts);
    RUN(test_costs_activations);
    RUN(test_costs_sampling);
    RUN(test_costs_flops);
    RUN(test_costs_errors);
    return test_summary();
}
