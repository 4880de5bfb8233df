// bench_gpu_prior.c: the transformer prior on the GPU (the CUDA backend), the
// dalle.c side of docs/cuda.md "Benchmarks"; bench/gpu/prior_torch_gpu.py is
// PyTorch's, and bench/gpu/report.py sets the two side by side.
//   build/bench/gpu/bench_gpu_prior train CONFIG [BATCH [STEPS [SECONDS]]]   (8 5 20)
//   build/bench/gpu/bench_gpu_prior sample CONFIG [CANDIDATES]               (32)
// CONFIG: a preset or a prior config JSON (bench/gpu/prior-350m.json).
// train: the library's own step as the trainer runs it (prior_forward,
// prior_backward, AdamW per tensor with the prior's decay rule), fp32 storage
// (TF32 where DALLE_CUDA_TF32=1), or with DALLE_BENCH_PRECISION=bf16 (fp16)
// the trainer's mixed precision (16-bit matrices, activations and gradients,
// bf16 products on the tensor cores, fp32 master weights, adamw_update16 and
// the 16-bit weights remade from the master each step; gradient scale 1: the
// scales change no work); one warm-up step, then timed steps until
// STEPS or SECONDS; tokens/s of the best step, and model FLOPs utilisation:
// the sparse model's training FLOPs per token (prior_costs_compute) x tokens/s
// / the H100's bf16 dense peak (bench_gpu.h).
// sample: CANDIDATES images of one caption with prior_sample (KV cache), all N
// positions timed (the first call's set-up included); image tokens/s.
// Prints the figures and "BENCH {json}" lines: first the model's FLOPs per
// token (before touching the GPU), then the measurement. Without a GPU, or
// while the model code does not allocate through the backend, it says so and
// exits 0.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gpu.h"
#include "core/common.h"
#include "prior/model.h"
#include "prior/sample.h"
#include "train/optim.h"

#define NAME_TRAIN "prior_train"
#define NAME_SAMPLE "prior_sample"

static int die(const char *what) {
    fprintf(stderr, "bench_gpu_prior: %s: %s\n", what, dalle_last_error());
    return 1;
}

// The mode of the figures: the storage precision, else fp32 or tf32.
static const char *bench_mode(const prior_model *m) {
    return bench_gpu_mode(m->prec == PRIOR_FP32 ? NULL : prior_precision_name(m->prec));
}

static int bench_train(prior_model *m, const prior_costs *pc, int B, int steps, double seconds) {
    int64_t n = m->n_params;
    const int half = m->prec != PRIOR_FP32;
    prior_acts *a = prior_acts_new(m, B, 0);
    // fp32: Adam's moments (n each); 16-bit: the master weights (n), then the moments as codes
    float *g = backend_alloc(sizeof(float) * (size_t)n), *am = backend_alloc(sizeof(float) * (size_t)n),
          *av = half ? NULL : backend_alloc(sizeof(float) * (size_t)n);
    uint16_t *m16 = half ? backend_alloc(2 * sizeof(uint16_t) * (size_t)n) : NULL, *v16 = m16 ? m16 + n : NULL;
    int32_t *text = backend_alloc(sizeof(int32_t) * (size_t)B * m->L),
            *image = backend_alloc(sizeof(int32_t) * (size_t)B * m->N);
    if (!a || !g || !am || (!av && !m16) || !text || !image) return die("activations, gradient and Adam state");
    if (half) {
        prior_init(m, 1, am);
        prior_set_params(m, am);
        backend_memset0(m16, 2 * sizeof(uint16_t) * (size_t)n);
    } else {
        prior_init(m, 1, m->params);
        backend_memset0(am, sizeof(float) * (size_t)n);
        backend_memset0(av, sizeof(float) * (size_t)n);
    }
    backend_sync();
    for (int i = 0; i < B * m->L; i++) text[i] = (int32_t)((i * 7919u) % (unsigned)m->Vt);
    for (int i = 0; i < B * m->N; i++) image[i] = (int32_t)((i * 104729u) % (unsigned)m->Vi);

    adamw_params h = {1e-4f, 0.9f, 0.96f, 1e-8f, 0.045f};
    double best = 1e30, sum = 0, start = 0, loss0 = 0, loss_last = 0;
    int timed = 0;
    for (int s = 0; s == 0 || (timed < steps && (timed == 0 || dalle_time() - start < seconds)); s++) {
        double t0 = dalle_time();
        prior_loss l;
        if (prior_forward(m, a, text, image, B, &l)) return die("forward");
        backend_memset0(g, sizeof(float) * (size_t)n);
        prior_backward(m, a, text, image, B, g);
        for (int i = 0; i < m->n_tensors; i++) {
            const prior_tensor *t = &m->tensors[i];
            const int64_t o = t->offset;
            float wd = t->kind == PT_MATRIX || t->kind == PT_HEAD ? h.weight_decay : 0.0f;
            if (half)
                adamw_update16(am + o, m16 + o, v16 + o, g + o, t->numel, h.lr, h.beta1, h.beta2, h.eps, wd, s + 1);
            else
                adamw_update(m->params + o, am + o, av + o, g + o, t->numel, h.lr, h.beta1, h.beta2, h.eps, wd,
                             s + 1);
        }
        if (half) prior_set_params(m, am);
        backend_sync();
        double dt = dalle_time() - t0;
        if (s == 0) {
            loss0 = l.loss;
            start = dalle_time();
            printf("  warm-up step: %.2f s, loss %.4f\n", dt, l.loss);
            backend_profile_reset(); // DALLE_PROFILE=1: the timed steps alone
            continue;
        }
        loss_last = l.loss;
        timed++;
        sum += dt;
        if (dt < best) best = dt;
    }
    double tokens = (double)B * m->T, tok_s = tokens / best;
    double mfu = tok_s * pc->flops_train / BENCH_GPU_PEAK_FLOPS;
    printf("%s, dalle.c %s: batch %d x T %d: %.0f tok/s best (%.1f ms/step; mean %.1f ms over %d steps); "
           "MFU %.1f%% of %.1f TFLOP/s; loss %.4f -> %.4f; %.1f GiB in use on the device\n",
           NAME_TRAIN, bench_mode(m), B, m->T, tok_s, best * 1e3, sum / timed * 1e3, timed, 100 * mfu,
           BENCH_GPU_PEAK_FLOPS / 1e12, loss0, loss_last, bench_gpu_used_gib());
    printf("BENCH {\"bench\":\"%s\",\"impl\":\"dalle.c\",\"mode\":\"%s\",\"batch\":%d,\"T\":%d,\"steps\":%d,"
           "\"tokens_per_s\":%.3f,\"tokens_per_s_mean\":%.3f,\"s_per_step\":%.6f,\"mfu\":%.5f,\"device_gib\":%.2f,"
           "\"loss_first\":%.6f,\"loss_last\":%.6f}\n",
           NAME_TRAIN, bench_mode(m), B, m->T, timed, tok_s, tokens * timed / sum, best, mfu,
           bench_gpu_used_gib(), loss0, loss_last);
    prior_acts_free(a);
    backend_free(g), backend_free(am), backend_free(av), backend_free(m16), backend_free(text), backend_free(image);
    return 0;
}

static int bench_sample(prior_model *m, int cand) {
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)m->L);
    int32_t *codes = dalle_malloc(sizeof(int32_t) * (size_t)cand * m->N);
    double *sec = dalle_malloc(sizeof(double) * (size_t)m->N);
    if (!text || !codes || !sec) return die("sampling buffers");
    for (int i = 0; i < m->L; i++) text[i] = (int32_t)((i * 7919u) % (unsigned)m->Vt);
    prior_sample_opts so = prior_sample_default_opts();
    so.step_seconds = sec;
    double t0 = dalle_time();
    if (prior_sample(m, text, cand, &so, codes)) return die("sample");
    double s = dalle_time() - t0, tok_s = (double)cand * m->N / s;
    printf("%s, dalle.c %s: %d candidates x %d image tokens in %.2f s: %.0f image tok/s (%.2f ms per position); "
           "ms per position by eighth of the image:",
           NAME_SAMPLE, bench_mode(m), cand, m->N, s, tok_s, 1e3 * s / m->N);
    for (int e = 0; e < 8 && m->N >= 8; e++) {
        double t = 0;
        for (int j = e * m->N / 8; j < (e + 1) * m->N / 8; j++) t += sec[j];
        printf(" %.2f", 1e3 * t / (m->N / 8));
    }
    printf("\nBENCH {\"bench\":\"%s\",\"impl\":\"dalle.c\",\"mode\":\"%s\",\"candidates\":%d,\"N\":%d,"
           "\"seconds\":%.4f,\"image_tokens_per_s\":%.3f,\"device_gib\":%.2f}\n",
           NAME_SAMPLE, bench_mode(m), cand, m->N, s, tok_s, bench_gpu_used_gib());
    dalle_free(text), dalle_free(codes), dalle_free(sec);
    return 0;
}

int main(int argc, char **argv) {
    int train = argc > 2 && !strcmp(argv[1], "train"), sample = argc > 2 && !strcmp(argv[1], "sample");
    if (!train && !sample) {
        fprintf(stderr, "usage: bench_gpu_prior train CONFIG [BATCH [STEPS [SECONDS]]] | sample CONFIG [CANDIDATES]\n");
        return 2;
    }
    int B = train && argc > 3 ? atoi(argv[3]) : 8, steps = train && argc > 4 ? atoi(argv[4]) : 5;
    double seconds = train && argc > 5 ? atof(argv[5]) : 20;
    int cand = sample && argc > 3 ? atoi(argv[3]) : 32;
    if (B < 1 || steps < 1 || cand < 1) {
        fprintf(stderr, "bench_gpu_prior: BATCH, STEPS and CANDIDATES must be >= 1\n");
        return 2;
    }
    prior_config c;
    prior_costs pc;
    if (prior_config_resolve(argv[2], &c) || prior_costs_compute(&c, B, cand, &pc)) return die(argv[2]);
    printf("BENCH {\"bench\":\"prior_costs\",\"config\":\"%s\",\"params\":%lld,\"T\":%d,"
           "\"flops_train_per_token\":%.6e,\"flops_train_dense_per_token\":%.6e,\"peak_flops\":%.6e}\n",
           argv[2], (long long)pc.params, c.text_len + c.grid * c.grid, pc.flops_train, pc.flops_train_dense,
           BENCH_GPU_PEAK_FLOPS);
    const char *name = train ? NAME_TRAIN : NAME_SAMPLE;
    if (!bench_gpu_select(name)) return 0;
    // DALLE_BENCH_PRECISION: the storage of a training run (sampling runs an fp32 model)
    prior_precision prec = PRIOR_FP32;
    const char *ps = getenv("DALLE_BENCH_PRECISION");
    if (train && ps && *ps && prior_precision_parse(ps, &prec)) return die("DALLE_BENCH_PRECISION");
    size_t host0 = dalle_mem_current();
    prior_model *m = prior_model_new(&c, prec);
    if (!m) return die("model");
    if (!bench_gpu_on_device(host0, 4.0 * (double)m->n32 + 2.0 * (double)(m->n_params - m->n32), name)) {
        prior_model_free(m);
        return 0;
    }
    if (!train) prior_init(m, 1, m->params);
    printf("%s: %s: %lld parameters, T = %d, DALLE_CUDA_ASYNC=%s\n", name, argv[2], (long long)m->n_params, m->T,
           getenv("DALLE_CUDA_ASYNC") ? getenv("DALLE_CUDA_ASYNC") : "unset");
    int rc = train ? bench_train(m, &pc, B, steps, seconds) : bench_sample(m, cand);
    prior_model_free(m);
    return rc;
}
