// test_mixed.c: mixed-precision training of the prior (docs/training.md).
//   - the gradient scale rules of train/mixed.h, step by step: growth by
//     2^(1/1000), a shrink by sqrt(2) and a skip on overflow, no second
//     shrink within 125 steps, the clamps, dynamic loss scaling, the
//     --grad-scale-init syntax and the checkpoint JSON;
//   - the passes of the tiny prior: activation checkpointing gives the same
//     bits as keeping the activations (fp32, bf16, fp16); a bf16/fp16 model
//     gives the fp32 gradients within its rounding; a scale far too high
//     overflows its resblock alone (the filter keeps the rest finite);
//   - the activation arenas of every storage mode have the sizes
//     prior_costs_compute gives.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dalle/dalle.h"
#include "prior/model.h"
#include "test.h"
#include "testfill.h"
#include "train/mixed.h"

// ---------------------------------------------------------------- scales

static void test_resblock_rule(void) {
    gscale g;
    CHECK(gscale_init(&g, GSCALE_RESBLOCK, 4, 0) == DALLE_OK);
    const double grow = exp2(0.001), s0 = 8192;
    double ok[4] = {0, 0, 0, 0}, over1[4] = {0, 3, 0, 0};
    CHECK(g.scale[0] == s0 && g.scale[3] == s0);
    CHECK(gscale_update(&g, ok, 1) == 0);
    CHECK(g.scale[1] == s0 * grow);
    // resblock 1 overflows: it alone shrinks by sqrt(2), the others grow, the update is skipped
    CHECK(gscale_update(&g, over1, 2) == 1);
    CHECK(g.scale[1] == s0 * grow / sqrt(2.0) && g.scale[0] == s0 * grow * grow);
    // again within 125 steps: skipped, but no second shrink
    double s1 = g.scale[1];
    CHECK(gscale_update(&g, over1, 3) == 1 && g.scale[1] == s1);
    CHECK(gscale_update(&g, over1, 126) == 1 && g.scale[1] == s1);
    // 125 steps after the shrink it may shrink again
    CHECK(gscale_update(&g, over1, 127) == 1 && g.scale[1] == s1 / sqrt(2.0));
    // clamps: [2^7, 2^24] after an update
    CHECK(gscale_set(&g, "0=1e30,2=100") == DALLE_OK && g.scale[0] == 1e30 && g.scale[2] == 100 && g.scale[3] != 100);
    CHECK(gscale_update(&g, ok, 128) == 0 && g.scale[0] == 16777216.0 && g.scale[2] == 128.0);
    double over0[4] = {1, 0, 0, 0};
    CHECK(gscale_update(&g, over0, 129) == 1 && g.scale[0] == 16777216.0 / sqrt(2.0));
    for (int s = 0; s < 20; s++) gscale_update(&g, over1, 300 + 125 * s); // 20 shrinks of 1: down to the floor
    CHECK(g.scale[1] == 128.0);
    // the checkpoint form gives back the same state, bit for bit
    char *js = gscale_to_json(&g);
    gscale h;
    CHECK(js && gscale_from_json(&h, 4, js, "test") == DALLE_OK);
    if (js && h.scale) {
        CHECK(h.mode == g.mode && !memcmp(h.scale, g.scale, sizeof(double) * 4) && !memcmp(h.shrunk, g.shrunk, 8 * 4));
        gscale_free(&h);
    }
    CHECK(gscale_from_json(&h, 5, js, "ck.st") == DALLE_ERR && strstr(dalle_last_error(), "4 gradient scales"));
    dalle_free(js);
    // the option's syntax
    CHECK(gscale_set(&g, "3=2,x") == DALLE_ERR && strstr(dalle_last_error(), "r=S"));
    CHECK(gscale_set(&g, "4=2") == DALLE_ERR && strstr(dalle_last_error(), "[0, 4)"));
    CHECK(gscale_set(&g, "-1") == DALLE_ERR);
    CHECK(gscale_set(&g, "512") == DALLE_OK && g.scale[0] == 512 && g.scale[3] == 512);
    gscale_free(&g);
}

static void test_dynamic_rule(void) {
    gscale g;
    CHECK(gscale_init(&g, GSCALE_DYNAMIC, 3, 4) == DALLE_OK);
    double ok[3] = {0, 0, 0}, over[3] = {0, 0, 1};
    CHECK(g.scale[0] == 65536 && g.scale[2] == 65536);
    for (int s = 1; s <= 3; s++) CHECK(gscale_update(&g, ok, s) == 0 && g.scale[0] == 65536);
    CHECK(gscale_update(&g, ok, 4) == 0 && g.scale[0] == 131072 && g.scale[1] == 131072); // 4 good in a row
    CHECK(gscale_update(&g, ok, 5) == 0 && gscale_update(&g, over, 6) == 1 && g.scale[2] == 65536);
    for (int s = 7; s <= 9; s++) gscale_update(&g, ok, s);
    CHECK(g.scale[0] == 65536); // the count restarted at the overflow
    CHECK(gscale_set(&g, "1e9") == DALLE_OK && gscale_update(&g, ok, 10) == 0 && g.scale[0] == 16777216.0);
    CHECK(gscale_set(&g, "1") == DALLE_OK && gscale_update(&g, over, 11) == 1 && g.scale[0] == 1.0);
    CHECK(gscale_set(&g, "0=4") == DALLE_ERR && strstr(dalle_last_error(), "one scale"));
    gscale_free(&g);
}

// ---------------------------------------------------------------- the passes

static prior_config tiny(void) {
    prior_config c;
    DALLE_ASSERT(prior_config_preset("tiny", &c) == DALLE_OK);
    return c;
}

// m's flat parameters (n_params): the initialisation plus a perturbation, so
// that the heads are not zero; tensor by tensor, the same values in every
// layout.
static float *test_params(const prior_model *m) {
    float *p = calloc((size_t)m->n_params, sizeof(float));
    prior_init(m, 3, p);
    for (int i = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        for (int64_t j = 0; j < t->numel; j++)
            p[t->offset + j] += 0.1f * (float)(fill_u(77 + (uint64_t)i, (uint64_t)j) - 0.5);
    }
    return p;
}

static void fill_inputs(const prior_model *m, int B, int32_t *text, int32_t *image) {
    for (int64_t i = 0; i < (int64_t)B * m->L; i++) text[i] = (int32_t)floor(fill_u(11000, (uint64_t)i) * m->Vt);
    for (int64_t i = 0; i < (int64_t)B * m->N; i++) image[i] = (int32_t)floor(fill_u(11001, (uint64_t)i) * m->Vi);
}

// The loss and the gradient (n_params, canonical tensor order: tensor by
// tensor, whatever the layout) of model m with or without checkpointing;
// mult: the resblocks' multiplier (16-bit), nonfinite: their counts (2 n_layer).
static float *gradient(prior_model *m, int ckpt, float mult, int hot, double *loss, int64_t *nonfinite) {
    const int B = 3, nl = m->cfg.n_layer;
    int32_t text[3 * 64], image[3 * 64];
    fill_inputs(m, B, text, image);
    prior_acts *a = prior_acts_new(m, B, ckpt);
    float *g = calloc((size_t)m->n_params, sizeof(float)), *out = malloc(sizeof(float) * (size_t)m->n_params);
    DALLE_ASSERT(a && g && out);
    for (int r = 0; r < 2 * nl; r++) a->grad_mult[r] = r == hot ? 1e30f : mult;
    prior_loss l;
    DALLE_ASSERT(prior_forward(m, a, text, image, B, &l) == DALLE_OK);
    prior_backward(m, a, text, image, B, g);
    *loss = l.loss;
    if (nonfinite) memcpy(nonfinite, a->nonfinite, sizeof(int64_t) * 2 * (size_t)nl);
    for (int i = 0, at = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        memcpy(out + at, g + t->offset, sizeof(float) * (size_t)t->numel);
        at += (int)t->numel;
    }
    free(g);
    prior_acts_free(a);
    return out;
}

// A tiny model at PREC with the test parameters.
static prior_model *model(prior_precision prec) {
    prior_config c = tiny();
    prior_model *m = prior_model_new(&c, prec);
    DALLE_ASSERT(m);
    float *p = test_params(m);
    prior_set_params(m, p);
    free(p);
    return m;
}

static void test_checkpointing_same_bits(void) {
    for (int p = 0; p < 3; p++) {
        prior_model *m = model((prior_precision)p);
        double l0, l1;
        float *g0 = gradient(m, 0, 8192, -1, &l0, NULL), *g1 = gradient(m, 1, 8192, -1, &l1, NULL);
        int same = l0 == l1 && !memcmp(g0, g1, sizeof(float) * (size_t)m->n_params);
        printf("    %s: loss %.7f, activation checkpointing gives the same loss and gradient bits: %s\n",
               prior_precision_name((prior_precision)p), l0, same ? "yes" : "NO");
        CHECK(same);
        free(g0), free(g1);
        prior_model_free(m);
    }
}

// The 16-bit gradients against fp32, tensor by tensor, relative to each
// tensor's largest gradient.
static void test_half_gradients(void) {
    prior_model *m32 = model(PRIOR_FP32);
    double l32;
    float *g32 = gradient(m32, 0, 1, -1, &l32, NULL);
    const double tol[3] = {0, 2e-2, 4e-3}; // bf16 (8 significant bits), fp16 (11)
    for (int p = 1; p < 3; p++) {
        prior_model *m = model((prior_precision)p);
        double l;
        int64_t nf[8];
        float *g = gradient(m, 0, 8192, -1, &l, nf);
        double worst = 0;
        for (int i = 0, at = 0; i < m->n_tensors; at += (int)m->tensors[i].numel, i++) {
            const prior_tensor *t = &m->tensors[i];
            double mx = 0, d = 0;
            for (int64_t j = 0; j < t->numel; j++) {
                mx = fmax(mx, fabs(g32[at + j]));
                d = fmax(d, fabs((double)g[at + j] - g32[at + j]));
            }
            if (mx > 0) worst = fmax(worst, d / mx);
        }
        int64_t bad = 0;
        for (int r = 0; r < 8; r++) bad += nf[r];
        printf("    %s: loss %.7f (fp32 %.7f), worst gradient difference %.2e of its tensor's largest (tolerance "
               "%.0e), non-finite %lld\n", prior_precision_name((prior_precision)p), l, l32, worst, tol[p],
               (long long)bad);
        CHECK(worst < tol[p] && fabs(l - l32) < tol[p] * l32 && bad == 0);
        free(g);
        prior_model_free(m);
    }
    free(g32);
    prior_model_free(m32);
}

// fp16, resblock 3 (layer 1's MLP) at 1e30: it overflows, the others do not,
// and no gradient is left non-finite.
static void test_forced_overflow(void) {
    prior_model *m = model(PRIOR_FP16);
    double l;
    int64_t nf[8];
    float *g = gradient(m, 0, 8192, 3, &l, nf);
    int64_t others = 0, finite = 1;
    for (int r = 0; r < 8; r++) others += r != 3 ? nf[r] : 0;
    for (int64_t i = 0; i < m->n_params; i++) finite &= isfinite(g[i]) != 0;
    printf("    resblock 3 at 1e30: %lld non-finite values there, %lld elsewhere; gradient finite: %s\n",
           (long long)nf[3], (long long)others, finite ? "yes" : "no");
    CHECK(nf[3] > 0 && others == 0 && finite);
    free(g);
    prior_model_free(m);
}

// The arena of each storage mode is what prior_costs_compute says, and the
// 16-bit model's weights are the rounded parameters.
static void test_sizes(void) {
    prior_config c = tiny();
    prior_costs k;
    CHECK(prior_costs_compute(&c, 3, 1, &k) == DALLE_OK);
    const int64_t want[4] = {k.bytes_acts, k.bytes_acts_ckpt, k.bytes_acts16, k.bytes_acts_ckpt16};
    for (int i = 0; i < 4; i++) {
        prior_model *m = prior_model_new(&c, i < 2 ? PRIOR_FP32 : PRIOR_BF16);
        prior_acts *a = prior_acts_new(m, 3, i % 2);
        CHECK(a && 4 * a->arena_floats == want[i]);
        prior_acts_free(a);
        prior_model_free(m);
    }
    printf("    tiny, batch 3: activations %lld bytes fp32, %lld checkpointed, %lld 16-bit, %lld both\n",
           (long long)want[0], (long long)want[1], (long long)want[2], (long long)want[3]);
    CHECK(k.bytes_acts16 < k.bytes_acts && k.bytes_acts_ckpt < k.bytes_acts);
    prior_model *m = prior_model_new(&c, PRIOR_FP16);
    float *p = test_params(m);
    prior_set_params(m, p);
    int bad = 0;
    for (int64_t i = 0; i < m->n_params; i++)
        bad += i < m->n32 ? m->params[i] != p[i] : m->w16[i - m->n32] != f32_to_f16(p[i]);
    CHECK(bad == 0 && m->n_params - m->n32 == k.params16);
    free(p);
    prior_model_free(m);
}

int main(void) {
    RUN(test_resblock_rule);
    RUN(test_dynamic_rule);
    RUN(test_checkpointing_same_bits);
    RUN(test_half_gradients);
    RUN(test_forced_overflow);
    RUN(test_sizes);
    return test_summary();
}
