// test_dvae.c: the dVAE against OpenAI's released code (run in PyTorch by
// tests/ref/gen_dvae_ref.py): parameter names and counts, encoder logits and
// decoder outputs at four configurations including the full paper one at
// 256x256, the loss pieces, a whole training step's gradients and AdamW
// update, and finite differences of the whole loss.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/safetensors.h"
#include "dvae/model.h"
#include "dvae/train.h"
#include "test.h"
#include "testfill.h"
#include "testref.h"
#include "train/optim.h"

// The parity goal: max |C - torch| <= 1e-4 * max |torch| over each tensor.
#define PARITY 1e-4

// A model of `cfg` with the test fill of docs/CONVENTIONS.md.
static dvae_model *fill_model(const dvae_config *cfg) {
    dvae_model *m = dvae_new(cfg, 0);
    DALLE_ASSERT(m);
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *t = &m->tensors[i];
        int enc = i < m->n_enc_tensors;
        uint64_t seed = enc ? 1000 + (uint64_t)i : 2000 + (uint64_t)(i - m->n_enc_tensors);
        float scale = t->is_weight ? 1.0f / sqrtf((float)t->fan_in) : 0.1f;
        fill_uniform(m->params + t->offset, t->numel, seed, -scale, scale);
    }
    return m;
}

static st_file *open_ref(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/data/%s.safetensors", name);
    st_file *f = st_open(path);
    if (!f) fprintf(stderr, "  %s\n", dalle_last_error());
    return f;
}

// Reads a reference tensor as float32 (any shape) into a new buffer.
static double meta_double(const st_file *f, const char *key) {
    const char *v = st_meta(f, key);
    DALLE_ASSERT(v);
    return atof(v);
}

// Compares got (n_full) with the reference `name` of f: the full tensor, or
// every stride-th element when only "<name>.sample" is stored.
static void compare_ref(const st_file *f, const char *name, const float *got, int64_t n_full, const char *label) {
    char key[128];
    snprintf(key, sizeof key, "%s.maxabs", name);
    double maxabs = meta_double(f, key);
    int64_t n;
    float *ref;
    if (st_find(f, name)) {
        ref = ref_tensor(f, name, &n);
        CHECK(n == n_full);
        CHECK_CLOSE(label, got, ref, n, PARITY * maxabs, 0);
    } else {
        snprintf(key, sizeof key, "%s.sample", name);
        ref = ref_tensor(f, key, &n);
        snprintf(key, sizeof key, "%s.stride", name);
        int64_t stride = (int64_t)meta_double(f, key);
        float *sub = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) sub[i] = got[i * stride];
        CHECK((n - 1) * stride < n_full);
        char l2[160];
        snprintf(l2, sizeof l2, "%s (every %lld-th)", label, (long long)stride);
        CHECK_CLOSE(l2, sub, ref, n, PARITY * maxabs, 0);
        free(sub);
    }
    free(ref);
}

// Encoder logits, argmax codes and decoder outputs of config `name` against torch.
static void parity(const char *name) {
    st_file *f = open_ref(name[0] == 'p' ? "dvae_fwd_paper" : name[0] == 't' ? "dvae_fwd_tiny" : name[0] == 'm' ? "dvae_fwd_mid" : "dvae_fwd_small");
    CHECK(f != NULL);
    if (!f) return;
    dvae_config cfg;
    const char *js = st_meta(f, "dvae.config");
    // the reference's config (the "mid" one is no preset)
    CHECK(js && sscanf(js, "{\"n_hid\": %d, \"n_blk_per_group\": %d, \"vocab_size\": %d, \"n_init\": %d, \"image_size\": %d, \"n_pool\": %d}",
                      &cfg.n_hid, &cfg.n_blk_per_group, &cfg.vocab_size, &cfg.n_init, &cfg.image_size, &cfg.n_pool) == 6);
    int B = atoi(st_meta(f, "ref.batch"));
    int S = cfg.image_size, G = dvae_grid(&cfg), V = cfg.vocab_size, P = G * G;
    dvae_model *m = fill_model(&cfg);

    float *x = malloc(sizeof(float) * (size_t)B * 3 * S * S);   // (B, 3, S, S)
    float *logits = malloc(sizeof(float) * (size_t)B * V * P);  // (B, V, G, G)
    float *stats = malloc(sizeof(float) * (size_t)B * 6 * S * S); // (B, 6, S, S)
    int32_t *codes = malloc(sizeof(int32_t) * (size_t)B * P);
    fill_uniform(x, (int64_t)B * 3 * S * S, 3000, 0.1f, 0.9f);
    double t0 = dalle_time();
    CHECK(dvae_encode_logits(m, x, B, logits) == DALLE_OK);
    double t1 = dalle_time();
    compare_ref(f, "enc.logits", logits, (int64_t)B * V * P, "encoder logits");

    // argmax codes: equal wherever torch's top-2 margin exceeds our tolerance
    int64_t n;
    float *ref_codes = ref_tensor(f, "codes", &n), *margin = ref_tensor(f, "codes.margin", &n);
    double maxabs = meta_double(f, "enc.logits.maxabs");
    int mismatched = 0, near_ties = 0;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++) {
            int best = 0;
            for (int v = 1; v < V; v++)
                if (logits[((int64_t)b * V + v) * P + p] > logits[((int64_t)b * V + best) * P + p]) best = v;
            if (best != (int)ref_codes[b * P + p]) {
                if (margin[b * P + p] <= 2 * PARITY * maxabs) near_ties++;
                else mismatched++;
            }
        }
    printf("    argmax codes: %d differ beyond ties, %d near-ties differ (of %d)\n", mismatched, near_ties, B * P);
    CHECK(mismatched == 0);
    free(ref_codes);
    free(margin);

    float *dcodes = ref_tensor(f, "dec.codes", &n);
    for (int64_t i = 0; i < n; i++) codes[i] = (int32_t)dcodes[i];
    free(dcodes);
    double t2 = dalle_time();
    CHECK(dvae_decode_stats(m, codes, B, stats) == DALLE_OK);
    double t3 = dalle_time();
    compare_ref(f, "dec.out_codes", stats, (int64_t)B * 6 * S * S, "decoder output (one-hot codes)");
    printf("    encoder %.2fs, decoder %.2fs for B=%d at %dx%d\n", t1 - t0, t3 - t2, B, S, S);

    if (st_find(f, "dec.out_soft")) { // the dense input conv on soft codes, as in training
        dvae_exec e;
        CHECK(dvae_exec_init(&e, &m->dec, B, 0, 0) == DALLE_OK);
        float *z = malloc(sizeof(float) * (size_t)B * V * P);
        float *zero = calloc((size_t)B * V * P, sizeof(float));
        gumbel_softmax_forward(z, logits, zero, 1.0f, B, V, P); // plain softmax
        e.act[m->dec.in_slot] = z;
        compare_ref(f, "dec.out_soft", dvae_forward(&e, m->params), (int64_t)B * 6 * S * S, "decoder output (soft codes)");
        dvae_exec_free(&e);
        free(z);
        free(zero);
    }
    free(x);
    free(logits);
    free(stats);
    free(codes);
    dvae_free(m);
    st_close(f);
}

static void test_parity_tiny(void) { parity("tiny"); }
static void test_parity_mid(void) { parity("mid"); }
static void test_parity_small(void) { parity("small"); }
static void test_parity_paper(void) {
    if (getenv("DALLE_TEST_QUICK")) {
        printf("    skipped: DALLE_TEST_QUICK is set\n");
        return;
    }
    parity("paper");
}

// SPEC §1.4: the official state-dict keys and sizes.
static void test_param_table(void) {
    dvae_config cfg;
    dvae_config_preset("paper", &cfg);
    dvae_model *m = dvae_new(&cfg, 1);
    CHECK(m != NULL);
    if (!m) return;
    int64_t enc = 0;
    for (int i = 0; i < m->n_enc_tensors; i++) enc += m->tensors[i].numel;
    printf("    encoder %d tensors %lld params, decoder %d tensors %lld params\n", m->n_enc_tensors, (long long)enc,
           m->n_tensors - m->n_enc_tensors, (long long)(m->n_params - enc));
    CHECK(m->n_enc_tensors == 74 && enc == 53786240);
    CHECK(m->n_tensors - m->n_enc_tensors == 76 && m->n_params - enc == 43829766);
    int i = dvae_find_tensor(m, "encoder.blocks.group_2.block_1.id_path.w");
    CHECK(i >= 0 && m->tensors[i].shape[0] == 512 && m->tensors[i].shape[1] == 256 && m->tensors[i].shape[2] == 1);
    i = dvae_find_tensor(m, "encoder.blocks.output.conv.w");
    CHECK(i >= 0 && m->tensors[i].shape[0] == 8192 && m->tensors[i].shape[1] == 2048);
    i = dvae_find_tensor(m, "decoder.blocks.output.conv.w");
    CHECK(i >= 0 && m->tensors[i].shape[0] == 6 && m->tensors[i].shape[1] == 256);
    CHECK(dvae_find_tensor(m, "decoder.blocks.group_1.block_1.id_path.w") >= 0);
    CHECK(dvae_find_tensor(m, "encoder.blocks.group_1.block_1.id_path.w") < 0);
    CHECK(dvae_find_tensor(m, "decoder.blocks.group_4.block_2.res_path.conv_1.w") >= 0);
    dvae_free(m);
}

static float *ref_or_die(const st_file *f, const char *name, int64_t *n) {
    float *r = ref_tensor(f, name, n);
    DALLE_ASSERT(r);
    return r;
}

// The loss pieces alone against torch autograd.
static void test_loss_pieces(void) {
    st_file *f = open_ref("dvae_ops_ref");
    CHECK(f != NULL);
    if (!f) return;
    int64_t n;
    float *x = ref_or_die(f, "ll.x", &n), *mu = ref_or_die(f, "ll.mu", &n), *lnb = ref_or_die(f, "ll.lnb", &n);
    int B = 2, N = 16 * 16;
    float *stats = malloc(sizeof(float) * (size_t)B * 6 * N), *dstats = malloc(sizeof(float) * (size_t)B * 6 * N);
    for (int b = 0; b < B; b++) {
        memcpy(stats + (size_t)b * 6 * N, mu + (size_t)b * 3 * N, sizeof(float) * 3 * N);
        memcpy(stats + (size_t)b * 6 * N + 3 * N, lnb + (size_t)b * 3 * N, sizeof(float) * 3 * N);
    }
    float nll = (float)logit_laplace_nll(dstats, stats, x, 1.0f, B, N);
    float *ref = ref_or_die(f, "ll.nll_sum", &n);
    CHECK_CLOSE("logit-Laplace nll sum", &nll, ref, 1, 0, 1e-5);
    free(ref);
    float *gmu = ref_or_die(f, "ll.grad_mu", &n), *glnb = ref_or_die(f, "ll.grad_lnb", &n);
    for (int b = 0; b < B; b++) {
        CHECK_CLOSE("d nll / d mu", dstats + (size_t)b * 6 * N, gmu + (size_t)b * 3 * N, 3 * N, 1e-5, 1e-4);
        CHECK_CLOSE("d nll / d ln b", dstats + (size_t)b * 6 * N + 3 * N, glnb + (size_t)b * 3 * N, 3 * N, 1e-5, 1e-4);
    }
    free(gmu); free(glnb); free(x); free(mu); free(lnb); free(stats); free(dstats);

    int V = 32, P = 16;
    float *logits = ref_or_die(f, "gs.logits", &n), *g = ref_or_die(f, "gs.g", &n), *r = ref_or_die(f, "gs.r", &n);
    float *y = malloc(sizeof(float) * (size_t)n), *dl = calloc((size_t)n, sizeof(float));
    gumbel_softmax_forward(y, logits, g, 0.5f, B, V, P);
    ref = ref_or_die(f, "gs.y", &n);
    CHECK_CLOSE("gumbel softmax", y, ref, n, 1e-6, 1e-5);
    free(ref);
    gumbel_softmax_backward(dl, r, y, 0.5f, B, V, P);
    ref = ref_or_die(f, "gs.grad_logits", &n);
    CHECK_CLOSE("gumbel softmax backward", dl, ref, n, 1e-6, 1e-4);
    free(ref);
    memset(dl, 0, sizeof(float) * (size_t)n);
    float kl = (float)kl_uniform_forward_backward(dl, logits, 1.0f, B, V, P);
    ref = ref_or_die(f, "kl.sum", &n);
    CHECK_CLOSE("KL to uniform, sum", &kl, ref, 1, 1e-5, 1e-5);
    free(ref);
    ref = ref_or_die(f, "kl.grad_logits", &n);
    CHECK_CLOSE("KL backward", dl, ref, n, 1e-6, 1e-4);
    free(ref);
    free(logits); free(g); free(r); free(y); free(dl);
    st_close(f);
}

// AdamW against torch.optim.AdamW over three steps.
static void test_adamw(void) {
    st_file *f = open_ref("adamw_ref");
    CHECK(f != NULL);
    if (!f) return;
    int64_t n;
    for (int decay = 1; decay >= 0; decay--) {
        float *p = ref_or_die(f, "p0", &n);
        float *m = calloc((size_t)n, sizeof(float)), *v = calloc((size_t)n, sizeof(float));
        adamw_params h = {1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f};
        for (int t = 1; t <= 3; t++) {
            char name[32];
            snprintf(name, sizeof name, "g%d", t);
            float *g = ref_or_die(f, name, &n);
            adamw_update(p, m, v, g, n, h.lr, h.beta1, h.beta2, h.eps, decay ? h.weight_decay : 0.0f, t);
            free(g);
            snprintf(name, sizeof name, decay ? "p%d" : "p3_nodecay", t);
            if (!decay && t < 3) continue;
            float *ref = ref_or_die(f, name, &n);
            CHECK_CLOSE(name, p, ref, n, 1e-7, 1e-6);
            free(ref);
        }
        free(p); free(m); free(v);
    }
    st_close(f);
}

// The tiny model with the test fill, a trainer for B = 2, its input batch
// *x (2, 3, 16, 16) and the Gumbel noise of the reference (seed 5000).
static dvae_model *tiny_trainer(dvae_trainer *t, float **x) {
    dvae_config cfg;
    dvae_config_preset("tiny", &cfg);
    dvae_model *m = fill_model(&cfg);
    int B = 2, S = cfg.image_size, V = cfg.vocab_size, P = dvae_grid(&cfg) * dvae_grid(&cfg);
    DALLE_ASSERT(dvae_trainer_init(t, m, B) == DALLE_OK);
    *x = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    fill_uniform(*x, (int64_t)B * 3 * S * S, 3000, 0.1f, 0.9f);
    for (int64_t i = 0; i < (int64_t)B * V * P; i++) t->g[i] = (float)-log(-log(fill_u(5000, (uint64_t)i)));
    return m;
}

// A whole training step of the tiny model: loss, every parameter gradient,
// and the parameters after one AdamW step, against torch autograd.
static void test_train_step(void) {
    st_file *f = open_ref("dvae_train_tiny");
    CHECK(f != NULL);
    if (!f) return;
    dvae_trainer t;
    float *x;
    dvae_model *m = tiny_trainer(&t, &x);
    dvae_loss L = dvae_trainer_step(&t, x, 0.5f, 2.0f);
    int64_t n;
    const char *names[3] = {"loss", "rec", "kl"};
    double got[3] = {L.loss, L.rec, L.kl};
    for (int i = 0; i < 3; i++) {
        float *ref = ref_or_die(f, names[i], &n), g = (float)got[i];
        // the KL per position (Σ q ln q + ln V) is a small difference of terms of
        // size ln V, so it gets an absolute floor besides the relative bound
        CHECK_CLOSE(names[i], &g, ref, 1, 1e-6, 1e-5);
        free(ref);
    }
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *tt = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "grad.%s", tt->name);
        float *ref = ref_or_die(f, name, &n);
        CHECK(n == tt->numel);
        float maxref = 0;
        for (int64_t k = 0; k < n; k++) maxref = fmaxf(maxref, fabsf(ref[k]));
        double err = 0;
        for (int64_t k = 0; k < n; k++) err = fmax(err, fabs((double)t.grads[tt->offset + k] - ref[k]));
        worst = fmax(worst, err / (maxref > 0 ? maxref : 1));
        if (err > 1e-3 * maxref + 1e-9) CHECK_CLOSE(name, t.grads + tt->offset, ref, n, 1e-3 * maxref + 1e-9, 0);
        free(ref);
    }
    printf("    %d parameter gradients: worst max|d|/max|ref| = %.2e\n", m->n_tensors, worst);
    CHECK(worst <= 1e-3);

    // one AdamW step, decay on conv weights only
    float *mom = calloc((size_t)m->n_params, sizeof(float)), *var = calloc((size_t)m->n_params, sizeof(float));
    adamw_params h = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f};
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *tt = &m->tensors[i];
        adamw_update(m->params + tt->offset, mom + tt->offset, var + tt->offset, t.grads + tt->offset, tt->numel, h.lr,
                     h.beta1, h.beta2, h.eps, tt->is_weight ? h.weight_decay : 0.0f, 1);
    }
    int bad = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *tt = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "step1.%s", tt->name);
        float *ref = ref_or_die(f, name, &n);
        // Adam's first step moves each weight by about lr * sign(g): tiny gradients
        // (|g| ~ eps) may differ, so allow lr per element where |g| is near eps.
        for (int64_t k = 0; k < n; k++) {
            double d = fabs((double)m->params[tt->offset + k] - ref[k]);
            if (d > 1e-6 + 1e-5 * fabs(ref[k]) && fabsf(t.grads[tt->offset + k]) > 1e-6f) bad++;
        }
        free(ref);
    }
    printf("    after one AdamW step: %d parameters differ beyond 1e-6 + 1e-5|p|\n", bad);
    CHECK(bad == 0);
    free(mom); free(var); free(x);
    dvae_trainer_free(&t);
    dvae_free(m);
    st_close(f);
}

// Finite differences of the whole loss (encoder, relaxation, decoder,
// likelihood and KL) against the analytic gradient, for a sample of
// parameters of every kind, in double-checked central differences.
static void test_grad_fd(void) {
    dvae_trainer t;
    float *x;
    dvae_model *m = tiny_trainer(&t, &x);
    const float tau = 0.7f, beta = 1.5f;
    dvae_trainer_step(&t, x, tau, beta);
    float *grads = malloc(sizeof(float) * (size_t)m->n_params);
    memcpy(grads, t.grads, sizeof(float) * (size_t)m->n_params);
    int checked = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const dvae_tensor *tt = &m->tensors[i];
        for (int s = 0; s < 2; s++) { // two entries of every tensor
            int64_t k = tt->offset + (int64_t)(fill_u(8000 + (uint64_t)i, (uint64_t)s) * (double)tt->numel);
            float p0 = m->params[k], h = 1e-2f * fmaxf(fabsf(p0), 0.05f);
            m->params[k] = p0 + h;
            double lp = dvae_trainer_step(&t, x, tau, beta).loss;
            m->params[k] = p0 - h;
            double lm = dvae_trainer_step(&t, x, tau, beta).loss;
            m->params[k] = p0;
            double fd = (lp - lm) / (2.0 * h), an = grads[k];
            // float32 losses near 1 give central differences a noise floor of ~1e-5
            double err = fabs(fd - an) / (1e-5 + 0.05 * fmax(fabs(fd), fabs(an)));
            worst = fmax(worst, err);
            checked++;
            if (err > 1.0) {
                bad++;
                printf("    %s[%lld]: finite difference %.6e, analytic %.6e\n", tt->name, (long long)(k - tt->offset), fd, an);
            }
        }
    }
    printf("    %d entries of %d tensors: worst |fd - analytic| / (1e-5 + 5%% max) = %.3f (must be <= 1)\n", checked, m->n_tensors, worst);
    CHECK(bad == 0);
    free(grads); free(x);
    dvae_trainer_free(&t);
    dvae_free(m);
}

// Model files: a round trip, and every kind of bad file refused with a
// message naming the file and the tensor or field.
static void test_model_files(void) {
    dvae_config cfg;
    dvae_config_preset("tiny", &cfg);
    dvae_model *m = dvae_new(&cfg, 7);
    const char *path = "build/test_dvae_model.safetensors";
    CHECK(dvae_save(m, path) == DALLE_OK);
    dvae_model *l = dvae_load(path, 1);
    CHECK(l && l->n_params == m->n_params && !memcmp(l->params, m->params, sizeof(float) * (size_t)m->n_params));
    dvae_free(l);

    struct {
        const char *what, *expect;
        int mode;
    } cases[] = {
        {"missing tensor", "missing tensor 'decoder.blocks.output.conv.b'", 0},
        {"extra tensor", "unexpected tensor 'encoder.blocks.extra.w'", 1},
        {"mis-shaped tensor", "encoder.blocks.input.w", 2},
        {"bad config", "n_pool", 3},
        {"not a dVAE", "dalle.kind", 4},
    };
    // the writer borrows the data until st_writer_save: one zero block for all tensors
    float *zeros = calloc((size_t)m->n_params + 8 * 3 * 7 * 7, sizeof(float));
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        st_writer *w = st_writer_new();
        dvae_config bad = cfg;
        if (cases[c].mode == 3) bad.n_pool = 7;
        char js[256];
        dvae_config_to_json(&bad, js, sizeof js);
        st_writer_meta(w, "dalle.kind", cases[c].mode == 4 ? "prior" : "dvae");
        st_writer_meta(w, "dvae.config", js);
        for (int i = 0; i < m->n_tensors; i++) {
            const dvae_tensor *t = &m->tensors[i];
            if (cases[c].mode == 0 && i == m->n_tensors - 1) continue;
            int64_t shape[4];
            memcpy(shape, t->shape, sizeof shape);
            if (cases[c].mode == 2 && i == 0) shape[0] += 1; // one more output channel than the config says
            st_writer_add(w, t->name, ST_F16, zeros, t->ndim, shape);
        }
        float one = 1;
        if (cases[c].mode == 1) st_writer_add(w, "encoder.blocks.extra.w", ST_F32, &one, 1, (int64_t[]){1});
        CHECK(st_writer_save(w, path) == DALLE_OK);
        st_writer_free(w);
        dvae_model *b = dvae_load(path, 1);
        const char *msg = dalle_last_error();
        printf("    %-18s -> %s\n", cases[c].what, msg);
        CHECK(b == NULL && strstr(msg, path) && strstr(msg, cases[c].expect));
        dvae_free(b);
    }
    free(zeros);
    remove(path);
    dvae_free(m);
}

int main(void) {
    RUN(test_param_table);
    RUN(test_loss_pieces);
    RUN(test_adamw);
    RUN(test_parity_tiny);
    RUN(test_parity_mid);
    RUN(test_parity_small);
    RUN(test_parity_paper);
    RUN(test_train_step);
    RUN(test_grad_fd);
    RUN(test_model_files);
    return test_summary();
}
