// test_prior.c: the transformer prior against its references.
//   - the masks against tests/data/prior_tiny.safetensors (made by
//     tests/ref/gen_prior_ref.py from the dense-mask PyTorch model);
//   - logits, the three losses and every parameter's gradient of the sparse
//     C model against the same file (tiny, B = 2, the test fill);
//   - the sparse path against the C dense masked reference at `small`;
//   - finite differences of the loss for a sample of every tensor.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "core/common.h"
#include "core/safetensors.h"
#include "dalle/dalle.h"
#include "prior/model.h"
#include "prior/sample.h"
#include "test.h"
#include "testfill.h"
#include "testref.h"

#define REF "tests/data/prior_tiny.safetensors"

static st_file *ref;

// The test fill of gen_prior_ref.py: tensor t from seed 10000 + t.
static void fill_params(prior_model *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        uint64_t seed = 10000 + (uint64_t)i;
        switch (t->kind) {
        case PT_GAIN: fill_uniform(p, t->numel, seed, 0.9f, 1.1f); break;
        case PT_BIAS: fill_uniform(p, t->numel, seed, -0.1f, 0.1f); break;
        case PT_EMBED: fill_uniform(p, t->numel, seed, -0.5f, 0.5f); break;
        case PT_MATRIX:
        case PT_HEAD: {
            float s = (float)(1.0 / sqrt((double)t->shape[1]));
            fill_uniform(p, t->numel, seed, -s, s);
            break;
        }
        }
    }
}

static void fill_inputs(const prior_model *m, int B, int32_t *text, int32_t *image) {
    for (int64_t i = 0; i < (int64_t)B * m->L; i++) text[i] = (int32_t)floor(fill_u(11000, (uint64_t)i) * m->Vt);
    for (int64_t i = 0; i < (int64_t)B * m->N; i++) image[i] = (int32_t)floor(fill_u(11001, (uint64_t)i) * m->Vi);
}

// |got - ref| <= 1e-4 * max|ref| + 1e-4 |ref|.
static void compare(const char *name, const float *got, int64_t n) {
    int64_t rn;
    float *r = ref_tensor(ref, name, &rn);
    CHECK(r && rn == n);
    if (!r || rn != n) return;
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(r[i]));
    CHECK_CLOSE(name, got, r, n, 1e-4 * mx, 1e-4);
    free(r);
}

static prior_model *tiny_model(void) {
    prior_config c;
    DALLE_ASSERT(prior_config_preset("tiny", &c) == DALLE_OK);
    prior_model *m = prior_model_new(&c, PRIOR_FP32);
    DALLE_ASSERT(m);
    fill_params(m);
    return m;
}

static void test_masks(void) {
    prior_config c;
    CHECK(prior_config_preset("tiny", &c) == DALLE_OK);
    int T = c.text_len + c.grid * c.grid;
    static const char *names[] = {"mask.row", "mask.column", "mask.conv"};
    for (int type = 0; type < 3; type++) {
        int64_t n;
        float *r = ref_tensor(ref, names[type], &n);
        CHECK(r && n == (int64_t)T * T);
        if (!r) continue;
        int bad = 0;
        for (int q = 0; q < T; q++)
            for (int k = 0; k < T; k++) bad += prior_mask(&c, (prior_layer_type)type, q, k) != (r[q * T + k] != 0);
        CHECK(bad == 0);
        free(r);
    }
    // The paper's layer types: column at 1-based layers 2, 6, ..., 62, conv at 64.
    CHECK(prior_config_preset("paper", &c) == DALLE_OK);
    int cols = 0, rows = 0;
    for (int l = 0; l < 63; l++) {
        if (prior_layer_type_of(&c, l) == PRIOR_COLUMN) cols++;
        else rows++;
    }
    CHECK(cols == 16 && rows == 47 && prior_layer_type_of(&c, 63) == PRIOR_CONV && prior_layer_type_of(&c, 1) == PRIOR_COLUMN);
    // An interior query of the paper's grid: 33 row keys, 61 conv keys.
    int i = 16 * 32 + 16, nrow = 0, nconv = 0;
    for (int j = 0; j <= i; j++) {
        nrow += prior_mask_image(&c, PRIOR_ROW, i, j);
        nconv += prior_mask_image(&c, PRIOR_CONV, i, j);
    }
    CHECK(nrow == 33 && nconv == 61);
}

static void test_parity_tiny(void) {
    prior_model *m = tiny_model();
    const int B = 2;
    prior_acts *a = prior_acts_new(m, B, 0);
    int32_t text[64], image[64];
    fill_inputs(m, B, text, image);
    int64_t n;
    float *rt = ref_tensor(ref, "in.text", &n), *ri = ref_tensor(ref, "in.image", &n);
    int same = rt && ri;
    for (int i = 0; same && i < B * m->L; i++) same = rt[i] == (float)text[i];
    for (int i = 0; same && i < B * m->N; i++) same = ri[i] == (float)image[i];
    CHECK(same);
    free(rt);
    free(ri);
    prior_loss loss;
    CHECK(prior_forward(m, a, text, image, B, &loss) == DALLE_OK);
    float l3[3] = {(float)loss.loss, (float)loss.text, (float)loss.image};
    compare("loss", &l3[0], 1);
    compare("loss_text", &l3[1], 1);
    compare("loss_image", &l3[2], 1);
    printf("    loss %.6f (text %.6f, image %.6f)\n", loss.loss, loss.text, loss.image);
    // The logits were turned into probabilities: recompute them with a second
    // forward into fresh activations and compare before the softmax.
    prior_acts *a2 = prior_acts_new(m, B, 0);
    float *lt = malloc(sizeof(float) * (size_t)B * (m->L - 1) * m->Vt), *li = malloc(sizeof(float) * (size_t)B * m->N * m->Vi);
    {
        // logits = lnf . head^T
        prior_forward(m, a2, text, image, B, NULL);
        for (int b = 0; b < B; b++) {
            linear_forward(lt + (int64_t)b * (m->L - 1) * m->Vt, a2->lnf + (int64_t)b * m->T * m->d,
                           m->params + m->text_head, NULL, m->L - 1, m->d, m->Vt, 0);
            linear_forward(li + (int64_t)b * m->N * m->Vi, a2->lnf + ((int64_t)b * m->T + m->L) * m->d,
                           m->params + m->image_head, NULL, m->N, m->d, m->Vi, 0);
        }
    }
    compare("text_logits", lt, (int64_t)B * (m->L - 1) * m->Vt);
    compare("image_logits", li, (int64_t)B * m->N * m->Vi);
    float *g = calloc((size_t)m->n_params, sizeof(float));
    prior_backward(m, a, text, image, B, g);
    for (int i = 0; i < m->n_tensors; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", m->tensors[i].name);
        compare(name, g + m->tensors[i].offset, m->tensors[i].numel);
    }
    free(g);
    free(lt);
    free(li);
    prior_acts_free(a);
    prior_acts_free(a2);
    prior_model_free(m);
}

// Sparse key lists against the dense masked reference, on a config with
// every pattern non-trivial (small: G 16, 11x11 conv).
static void test_sparse_equals_dense(void) {
    prior_config c;
    CHECK(prior_config_preset("small", &c) == DALLE_OK);
    c.n_layer = 4; // row, column, row, conv
    c.text_vocab = 64;
    prior_model *m = prior_model_new(&c, PRIOR_FP32);
    CHECK(m != NULL);
    if (!m) return;
    prior_init(m, 3, m->params);
    // non-zero heads and a larger scale, so attention is far from uniform
    for (int64_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * (float)(fill_u(77, (uint64_t)i) - 0.5);
    prior_acts *a = prior_acts_new(m, 1, 0);
    int32_t *text = malloc(sizeof(int32_t) * (size_t)m->L), *image = malloc(sizeof(int32_t) * (size_t)m->N);
    fill_inputs(m, 1, text, image);
    prior_loss ls, ld;
    CHECK(prior_forward(m, a, text, image, 1, &ls) == DALLE_OK);
    int64_t n = (int64_t)m->T * m->d * (c.n_layer + 1);
    float *xs = malloc(sizeof(float) * (size_t)n);
    memcpy(xs, a->x, sizeof(float) * (size_t)n);
    m->dense = 1;
    CHECK(prior_forward(m, a, text, image, 1, &ld) == DALLE_OK);
    CHECK_CLOSE("residual stream, sparse vs dense", xs, a->x, n, 1e-5, 1e-5);
    printf("    loss sparse %.7f dense %.7f\n", ls.loss, ld.loss);
    CHECK(fabs(ls.loss - ld.loss) < 1e-5);
    int64_t sparse = 0, dense = 0;
    for (int l = 0; l < c.n_layer; l++) sparse += m->keys[prior_layer_type_of(&c, l)].nnz;
    dense = (int64_t)c.n_layer * m->T * (m->T + 1) / 2;
    printf("    attention scores computed: %lld sparse vs %lld causal dense (%.1f%%)\n", (long long)sparse,
           (long long)dense, 100.0 * (double)sparse / (double)dense);
    free(xs);
    free(text);
    free(image);
    prior_acts_free(a);
    prior_model_free(m);
}

// Finite differences of the loss (double-sided, float32 forward) against the
// analytic gradient for a few elements of every tensor.
static void test_finite_differences(void) {
    prior_model *m = tiny_model();
    const int B = 2;
    prior_acts *a = prior_acts_new(m, B, 0);
    int32_t text[64], image[64];
    fill_inputs(m, B, text, image);
    text[3] = m->Vt - 2; // a padding id too
    prior_loss l0;
    prior_forward(m, a, text, image, B, &l0);
    float *g = calloc((size_t)m->n_params, sizeof(float));
    prior_backward(m, a, text, image, B, g);
    int bad = 0, checked = 0;
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const prior_tensor *t = &m->tensors[i];
        for (int s = 0; s < 3; s++) {
            int64_t j = t->offset + (int64_t)(fill_u(500 + (uint64_t)i, (uint64_t)s) * (double)t->numel);
            // embedding rows only get gradient where ids occur: pick the row of text[0]/image[0]
            if (t->kind == PT_EMBED && !strcmp(t->name, "text_emb.weight")) j = t->offset + (int64_t)text[s] * m->d + s;
            if (t->kind == PT_EMBED && !strcmp(t->name, "image_emb.weight")) j = t->offset + (int64_t)image[s] * m->d + s;
            float keep = m->params[j], h = 1e-2f;
            prior_loss lp, lm;
            m->params[j] = keep + h;
            prior_forward(m, a, text, image, B, &lp);
            m->params[j] = keep - h;
            prior_forward(m, a, text, image, B, &lm);
            m->params[j] = keep;
            double fd = (lp.loss - lm.loss) / (2.0 * h), an = g[j];
            double err = fabs(fd - an) / (fabs(an) + 1e-3);
            worst = fmax(worst, err);
            checked++;
            if (err > 2e-2) {
                if (bad++ < 5) fprintf(stderr, "  %s[%lld]: fd %.6g analytic %.6g\n", t->name, (long long)(j - t->offset), fd, an);
            }
        }
    }
    printf("    %d elements, worst |fd - grad| / (|grad| + 1e-3) = %.2e\n", checked, worst);
    CHECK(bad == 0);
    free(g);
    prior_acts_free(a);
    prior_model_free(m);
}

// Sampling with the KV cache gives the tokens of sampling by full
// recomputation (every step runs the whole stream through prior_forward);
// with guidance, the recomputation runs the empty caption's K streams too
// and mixes the two logits itself.
static void sample_check(prior_model *m, const prior_sample_opts *o, int K) {
    int N = m->N, KK = o->guidance != 1.0f ? 2 * K : K; // streams of the recomputation
    int32_t *text = malloc(sizeof(int32_t) * (size_t)m->L), *cache = malloc(sizeof(int32_t) * (size_t)K * N);
    int32_t *img = calloc((size_t)KK * N, sizeof(int32_t)), *txt = malloc(sizeof(int32_t) * (size_t)KK * m->L);
    for (int t = 0; t < m->L; t++) text[t] = (int32_t)floor(fill_u(12000, (uint64_t)t) * m->Vt);
    for (int k = 0; k < KK; k++)
        for (int t = 0; t < m->L; t++) txt[k * m->L + t] = k < K ? text[t] : m->Vt - m->L + t; // then padding
    CHECK(prior_sample(m, text, K, o, cache) == DALLE_OK);
    prior_acts *a = prior_acts_new(m, KK, 0);
    float *logits = malloc(sizeof(float) * 2 * (size_t)m->Vi);
    void *work = malloc(sizeof(float) * 2 * (size_t)m->Vi);
    for (int j = 0; j < N; j++) {
        prior_forward(m, a, txt, img, KK, NULL);
        for (int k = 0; k < K; k++) {
            linear_forward(logits, a->lnf + ((int64_t)k * m->T + m->L + j) * m->d, m->params + m->image_head, NULL, 1,
                           m->d, m->Vi, 0);
            if (KK > K) {
                float *u = logits + m->Vi;
                linear_forward(u, a->lnf + ((int64_t)(K + k) * m->T + m->L + j) * m->d, m->params + m->image_head,
                               NULL, 1, m->d, m->Vi, 0);
                for (int v = 0; v < m->Vi; v++) logits[v] = u[v] + o->guidance * (logits[v] - u[v]);
            }
            img[(int64_t)k * N + j] = prior_sample_logits(logits, m->Vi, o, (uint64_t)k, (uint64_t)j, work);
            if (KK > K) img[(int64_t)(K + k) * N + j] = img[(int64_t)k * N + j]; // both streams see the draw
        }
    }
    int diff = 0, distinct = 0;
    for (int64_t i = 0; i < (int64_t)K * N; i++) diff += img[i] != cache[i];
    for (int v = 0; v < m->Vi; v++)
        for (int64_t i = 0; i < (int64_t)K * N; i++)
            if (cache[i] == v) {
                distinct++;
                break;
            }
    printf("    %d candidates x %d codes: %d differ from recomputation (%d distinct codes)\n", K, N, diff, distinct);
    CHECK(diff == 0 && distinct > 1);
    free(text), free(cache), free(img), free(txt), free(logits), free(work);
    prior_acts_free(a);
}

static void test_sample_cache(void) {
    prior_model *m = tiny_model();
    prior_sample_opts o = prior_sample_default_opts();
    o.seed = 5;
    sample_check(m, &o, 3);
    o.temperature = 0.7f;
    o.top_k = 5;
    sample_check(m, &o, 2);
    o.top_k = 0;
    o.top_p = 0.8f;
    sample_check(m, &o, 2);
    o.top_p = 1.0f;
    o.guidance = 3.0f; // classifier-free guidance against the empty caption
    sample_check(m, &o, 3);
    prior_model_free(m);
    // every pattern with its ring buffer wrapping (row keeps 9 positions, conv 46, of 64)
    prior_config c;
    prior_config_preset("small", &c);
    c.n_layer = 4;
    c.text_vocab = 64;
    c.grid = 8;
    m = prior_model_new(&c, PRIOR_FP32);
    prior_init(m, 9, m->params);
    for (int64_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * (float)(fill_u(78, (uint64_t)i) - 0.5);
    o = prior_sample_default_opts();
    o.seed = 11;
    sample_check(m, &o, 2);
    prior_model_free(m);
}

static void test_bad_input(void) {
    prior_model *m = tiny_model();
    prior_acts *a = prior_acts_new(m, 1, 0);
    int32_t text[8] = {0}, image[16] = {0};
    text[2] = m->Vt;
    CHECK(prior_forward(m, a, text, image, 1, NULL) == DALLE_ERR && strstr(dalle_last_error(), "outside"));
    text[2] = 0;
    image[5] = -1;
    CHECK(prior_forward(m, a, text, image, 1, NULL) == DALLE_ERR && strstr(dalle_last_error(), "image code"));
    prior_config c = m->cfg;
    c.conv_kernel = 4;
    CHECK(prior_model_new(&c, PRIOR_FP32) == NULL && strstr(dalle_last_error(), "conv_kernel"));
    prior_acts_free(a);
    prior_model_free(m);
}

static void test_param_count(void) {
    prior_config c;
    CHECK(prior_config_preset("paper", &c) == DALLE_OK);
    int64_t n = prior_param_count(&c);
    printf("    paper: %lld parameters\n", (long long)n);
    CHECK(n > 12000000000LL && n < 12500000000LL);
    CHECK(prior_config_preset("tiny", &c) == DALLE_OK && prior_param_count(&c) == 15632);
}

int main(void) {
    ref = st_open(REF);
    if (!ref) {
        fprintf(stderr, "  %s\n", dalle_last_error());
        return 1;
    }
    RUN(test_masks);
    RUN(test_parity_tiny);
    RUN(test_sparse_equals_dense);
    RUN(test_finite_differences);
    RUN(test_sample_cache);
    RUN(test_bad_input);
    RUN(test_param_count);
    st_close(ref);
    return test_summary();
}
