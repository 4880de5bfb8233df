// bench_dvae.c: images/s of the dVAE against PyTorch running OpenAI's own
// modules (bench/dvae_torch.py) on this machine, same threads, same run:
//   (a) encoder + decoder forward of the `paper` preset at 256x256 (encode to
//       argmax codes, decode the codes), B = 1;
//   (b) one training step of the `small` preset (64x64, B = 8): encoder,
//       Gumbel softmax, decoder, logit-Laplace + KL, backward, AdamW;
// and the share of the measured OpenBLAS sgemm peak that the convolutions
// reach (conv FLOPs / time / peak).
//   build/bench/bench_dvae [REPEATS]     (run from the repository root)
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "core/rng.h"
#include "dvae/model.h"
#include "dvae/train.h"
#include "train/optim.h"

// Multiply-adds x 2 of the convolutions of `net` for B items; with train,
// the backward too: the weight gradient always, the input gradient except
// into the net's input when need_din is 0.
static double conv_flops(const dvae_net *net, int B, int train, int need_din) {
    double f = 0;
    for (int i = 0; i < net->n_ops; i++) {
        const dvae_op *op = &net->ops[i];
        if (op->kind != OP_CONV) continue;
        double one = 2.0 * B * op->co * op->ci * op->k * op->k * op->h * op->w;
        f += one * (train ? (op->in == net->in_slot && !need_din ? 2 : 3) : 1);
    }
    return f;
}

static void fail(void) {
    fprintf(stderr, "bench_dvae: %s\n", dalle_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 3;
    int threads = omp_get_max_threads();
    printf("dVAE benchmark, %d threads (OpenBLAS %s)\n", threads, openblas_get_config());
    double peak = bench_sgemm_peak(2048, 3);
    printf("sgemm peak (2048^3): %.1f GFLOP/s\n\n", peak);

    // (a) paper preset inference
    dvae_config cfg;
    dvae_config_preset("paper", &cfg);
    dvae_model *m = dvae_new(&cfg, 1);
    if (!m) fail();
    int S = cfg.image_size, G = dvae_grid(&cfg);
    float *x = dalle_malloc(sizeof(float) * 3 * S * S), *y = dalle_malloc(sizeof(float) * 3 * S * S);
    int32_t *codes = dalle_malloc(sizeof(int32_t) * G * G);
    rng_t r;
    rng_init(&r, 7);
    rng_uniform(&r, x, 3 * S * S);
    double best = 1e30;
    for (int k = 0; k <= (repeats > 1 ? repeats - 1 : 1); k++) {
        double t = dalle_time();
        if (dvae_encode(m, x, 1, codes) || dvae_decode(m, codes, 1, y)) fail();
        t = dalle_time() - t;
        if (k > 0 && t < best) best = t; // run 0 warms up
    }
    double fl = conv_flops(&m->enc, 1, 0, 0) + conv_flops(&m->dec_ids, 1, 0, 0);
    double ours_a = 1.0 / best;
    printf("(a) paper 256x256 encode+decode, B=1: %.3f s/image = %.3f images/s; convs %.0f GFLOP (direct) -> %.1f effective GFLOP/s = %.0f%% of sgemm peak\n",
           best, ours_a, fl / 1e9, fl / best / 1e9, 100.0 * fl / best / 1e9 / peak);
    dvae_free(m);
    dalle_free(x), dalle_free(y), dalle_free(codes);

    // (b) small preset training step
    dvae_config_preset("small", &cfg);
    int B = 8;
    S = cfg.image_size;
    m = dvae_new(&cfg, 1);
    dvae_trainer t;
    if (!m || dvae_trainer_init(&t, m, B)) fail();
    float *xb = dalle_malloc(sizeof(float) * (size_t)B * 3 * S * S);
    float *mom = dalle_calloc((size_t)m->n_params, sizeof(float)), *var = dalle_calloc((size_t)m->n_params, sizeof(float));
    rng_uniform(&r, xb, (int64_t)B * 3 * S * S);
    dvae_map_pixels(xb, (int64_t)B * 3 * S * S);
    adamw_params h = {1e-4f, 0.9f, 0.999f, 1e-8f, 1e-4f};
    best = 1e30;
    for (int k = 0; k <= repeats + 2; k++) {
        double t0 = dalle_time();
        rng_gumbel(&r, t.g, (int64_t)B * cfg.vocab_size * dvae_grid(&cfg) * dvae_grid(&cfg));
        dvae_trainer_step(&t, xb, 1.0f / 16, 6.6f);
        for (int i = 0; i < m->n_tensors; i++) {
            const dvae_tensor *tt = &m->tensors[i];
            adamw_update(m->params + tt->offset, mom + tt->offset, var + tt->offset, t.grads + tt->offset, tt->numel, h.lr,
                         h.beta1, h.beta2, h.eps, tt->is_weight ? h.weight_decay : 0.0f, k + 1);
        }
        t0 = dalle_time() - t0;
        if (k > 0 && t0 < best) best = t0;
    }
    fl = conv_flops(&m->enc, B, 1, 0) + conv_flops(&m->dec, B, 1, 1);
    double ours_b = B / best;
    printf("(b) small 64x64 training step, B=%d: %.3f s/step = %.1f images/s; convs %.1f GFLOP (direct) -> %.1f effective GFLOP/s = %.0f%% of sgemm peak\n",
           B, best, ours_b, fl / 1e9, fl / best / 1e9, 100.0 * fl / best / 1e9 / peak);
    dvae_trainer_free(&t);
    dvae_free(m);
    dalle_free(xb), dalle_free(mom), dalle_free(var);

    // PyTorch, same machine, same threads, same run
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 bench/dvae_torch.py --threads %d --mode infer --preset paper --batch 1 --iters %d 2>/dev/null", threads, repeats);
    double torch_a = bench_run_json(cmd, "images_per_s");
    snprintf(cmd, sizeof cmd, "python3 bench/dvae_torch.py --threads %d --mode train --preset small --batch %d --iters %d 2>/dev/null", threads, B, repeats + 2);
    double torch_b = bench_run_json(cmd, "images_per_s");
    printf("\n%-44s %12s %12s %8s\n", "", "dalle.c", "PyTorch", "ratio");
    if (torch_a > 0) printf("%-44s %12.3f %12.3f %7.2fx\n", "(a) paper encode+decode, images/s", ours_a, torch_a, ours_a / torch_a);
    else printf("(a) PyTorch side unavailable (python3 with torch and DALL-E needed)\n");
    if (torch_b > 0) printf("%-44s %12.1f %12.1f %7.2fx\n", "(b) small training step, images/s", ours_b, torch_b, ours_b / torch_b);
    else printf("(b) PyTorch side unavailable\n");
    return 0;
}
