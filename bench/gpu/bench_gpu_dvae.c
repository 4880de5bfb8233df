// bench_gpu_dvae.c: dVAE training on the GPU (the CUDA backend), the dalle.c
// side of docs/cuda.md "Benchmarks"; bench/gpu/dvae_torch_gpu.py runs OpenAI's
// architecture in PyTorch, and bench/gpu/report.py sets the two side by side.
//   build/bench/gpu/bench_gpu_dvae [PRESET [BATCH [STEPS [SECONDS]]]]   (paper 8 5 20)
// One step is the trainer's (dvae_trainer_step: encoder, Gumbel softmax,
// decoder, logit-Laplace + KL, backward; then AdamW per tensor, decay on the
// conv weights), fp32 storage (TF32 where DALLE_CUDA_TF32=1), or with
// DALLE_BENCH_PRECISION=bf16 the convolutions of `dvae train --precision bf16`
// (conv2d16: bf16 weight codes remade from the fp32 master each step, inputs
// and results rounded to bf16, fp32 sums; mode "bf16"), with the step's
// Gumbel noise drawn on the GPU inside it (the gumbel_noise op, as the
// trainer does; PyTorch draws its own in its step too). One warm-up step,
// then timed steps until STEPS or SECONDS; images/s of the best step. Prints
// the figures and a "BENCH {json}" line; without a GPU, or while the model
// code does not allocate through the backend, it says so and exits 0.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "bench_gpu.h"
#include "core/rng.h"
#include "dvae/model.h"
#include "dvae/train.h"
#include "train/optim.h"

#define NAME "dvae_train"

static int die(const char *what) {
    fprintf(stderr, "bench_gpu_dvae: %s: %s\n", what, dalle_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *preset = argc > 1 ? argv[1] : "paper";
    int B = argc > 2 ? atoi(argv[2]) : 8, steps = argc > 3 ? atoi(argv[3]) : 5;
    double seconds = argc > 4 ? atof(argv[4]) : 20;
    dvae_config cfg;
    if (B < 1 || steps < 1 || dvae_config_preset(preset, &cfg)) {
        fprintf(stderr, "usage: bench_gpu_dvae [PRESET [BATCH [STEPS [SECONDS]]]] (%s)\n", dalle_last_error());
        return 2;
    }
    if (!bench_gpu_select(NAME)) return 0;
    size_t host0 = dalle_mem_current();
    dvae_model *m = dvae_new(&cfg, 1);
    if (!m) return die("model");
    if (!bench_gpu_on_device(host0, 4.0 * (double)m->n_params, NAME)) {
        dvae_free(m);
        return 0;
    }
    const char *ps = getenv("DALLE_BENCH_PRECISION");
    const int bf16 = ps && !strcmp(ps, "bf16");
    if (ps && *ps && !bf16 && strcmp(ps, "fp32")) {
        fprintf(stderr, "bench_gpu_dvae: DALLE_BENCH_PRECISION=%s: fp32 or bf16\n", ps);
        return 2;
    }
    m->enc.half = m->dec.half = bf16; // before the trainer binds the nets
    m->enc.fmt = m->dec.fmt = HALF_BF16;
    const char *mode = bench_gpu_mode(bf16 ? "bf16" : NULL);
    int S = cfg.image_size, G = dvae_grid(&cfg);
    int64_t n = m->n_params, nx = (int64_t)B * 3 * S * S, ng = (int64_t)B * cfg.vocab_size * G * G;
    dvae_trainer t;
    if (dvae_trainer_init(&t, m, B)) return die("trainer");
    float *x = backend_alloc(sizeof(float) * (size_t)nx), *am = backend_alloc(sizeof(float) * (size_t)n),
          *av = backend_alloc(sizeof(float) * (size_t)n);
    if (!x || !am || !av) return die("images and Adam state");
    backend_memset0(am, sizeof(float) * (size_t)n);
    backend_memset0(av, sizeof(float) * (size_t)n);
    backend_sync();
    rng_t r;
    rng_init(&r, 7);
    rng_uniform(&r, x, nx);
    dvae_map_pixels(x, nx);
    printf("%s: %s %dx%d, batch %d, %lld parameters, %lld Gumbel draws a step\n", NAME, preset, S, S, B,
           (long long)n, (long long)ng);

    adamw_params h = {1e-4f, 0.9f, 0.999f, 1e-8f, 1e-4f};
    double best = 1e30, sum = 0, start = 0;
    dvae_loss l0 = {0}, l = {0};
    int timed = 0;
    for (int s = 0; s == 0 || (timed < steps && (timed == 0 || dalle_time() - start < seconds)); s++) {
        double t0 = dalle_time();
        gumbel_noise(t.g, 7, (uint64_t)(s + 1) << 32, 0, ng);
        l = dvae_trainer_step(&t, x, 1.0f / 16, 6.6f);
        for (int i = 0; i < m->n_tensors; i++) {
            const dvae_tensor *tt = &m->tensors[i];
            adamw_update(m->params + tt->offset, am + tt->offset, av + tt->offset, t.grads + tt->offset, tt->numel,
                         h.lr, h.beta1, h.beta2, h.eps, tt->is_weight ? h.weight_decay : 0.0f, s + 1);
        }
        backend_sync();
        double dt = dalle_time() - t0;
        if (s == 0) {
            l0 = l;
            start = dalle_time();
            printf("  warm-up step: %.2f s, loss %.4f\n", dt, l.loss);
            backend_profile_reset(); // DALLE_PROFILE=1: the timed steps alone
            continue;
        }
        timed++;
        sum += dt;
        printf("  step %d: %.1f ms, loss %.4f\n", s, dt * 1e3, l.loss);
        if (dt < best) best = dt;
    }
    printf("%s, dalle.c %s: %s %dx%d, batch %d: %.1f images/s best (%.1f ms/step; mean %.1f ms over %d steps); "
           "loss %.4f -> %.4f; %.1f GiB in use on the device\n",
           NAME, mode, preset, S, S, B, B / best, best * 1e3, sum / timed * 1e3, timed, l0.loss, l.loss,
           bench_gpu_used_gib());
    printf("BENCH {\"bench\":\"%s\",\"impl\":\"dalle.c\",\"mode\":\"%s\",\"preset\":\"%s\",\"batch\":%d,"
           "\"image_size\":%d,\"steps\":%d,\"images_per_s\":%.4f,\"images_per_s_mean\":%.4f,\"s_per_step\":%.6f,"
           "\"device_gib\":%.2f,\"loss_first\":%.6f,\"loss_last\":%.6f}\n",
           NAME, mode, preset, B, S, timed, B / best, B * timed / sum, best, bench_gpu_used_gib(),
           l0.loss, l.loss);
    backend_free(x), backend_free(am), backend_free(av);
    dvae_trainer_free(&t);
    dvae_free(m);
    return 0;
}
