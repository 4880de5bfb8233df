// bench_prior.c: the transformer prior's speed on this CPU against the same
// model in PyTorch (bench/prior_torch.py: dense (T, T) masks, its own KV cache
// for sampling), same preset, batch and thread count, same run.
//   build/bench/bench_prior [PRESET [BATCH [STEPS [notorch]]]]   (defaults small 4 5)
// Training: tokens/s of a full step (forward, loss, backward, AdamW), best of
// STEPS after a warm-up, and its FLOP rate (sparse model FLOPs, from
// prior_costs_compute) as a share of OpenBLAS's sgemm peak measured here.
// Sampling: image tokens/s of BATCH candidates for one caption, and the cost
// per token by position (eighths of the image).
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/common.h"
#include "prior/model.h"
#include "prior/sample.h"
#include "train/optim.h"

static void die(const char *what) {
    fprintf(stderr, "bench_prior: %s: %s\n", what, dalle_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    const char *preset = argc > 1 ? argv[1] : "small";
    int B = argc > 2 ? atoi(argv[2]) : 4, steps = argc > 3 ? atoi(argv[3]) : 5;
    int torch = !(argc > 4 && !strcmp(argv[4], "notorch"));
    int threads = omp_get_max_threads();
    prior_config c;
    if (prior_config_preset(preset, &c)) die("preset");
    prior_model *m = prior_model_new(&c, PRIOR_FP32);
    if (!m) die("model");
    prior_init(m, 1, m->params);
    prior_acts *a = prior_acts_new(m, B, 0);
    float *g = dalle_calloc((size_t)m->n_params, sizeof(float)), *am = dalle_calloc((size_t)m->n_params, sizeof(float)),
          *av = dalle_calloc((size_t)m->n_params, sizeof(float));
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)B * m->L), *image = dalle_malloc(sizeof(int32_t) * (size_t)B * m->N);
    if (!a || !g || !am || !av || !text || !image) die("alloc");
    for (int i = 0; i < B * m->L; i++) text[i] = (int32_t)((i * 7919u) % (unsigned)m->Vt);
    for (int i = 0; i < B * m->N; i++) image[i] = (int32_t)((i * 104729u) % (unsigned)m->Vi);

    double best = 1e30;
    adamw_params h = {1e-4f, 0.9f, 0.96f, 1e-8f, 0.045f};
    for (int s = 0; s <= steps; s++) {
        double t0 = dalle_time();
        prior_loss l;
        if (prior_forward(m, a, text, image, B, &l)) die("forward");
        memset(g, 0, sizeof(float) * (size_t)m->n_params);
        prior_backward(m, a, text, image, B, g);
        for (int i = 0; i < m->n_tensors; i++) {
            const prior_tensor *t = &m->tensors[i];
            adamw_update(m->params + t->offset, am + t->offset, av + t->offset, g + t->offset, t->numel, h.lr, h.beta1,
                         h.beta2, h.eps, t->kind == PT_MATRIX || t->kind == PT_HEAD ? h.weight_decay : 0.0f, s + 1);
        }
        double dt = dalle_time() - t0;
        if (s > 0 && dt < best) best = dt;
    }
    prior_costs pc;
    if (prior_costs_compute(&c, B, B, &pc)) die("costs");
    double tok_s = (double)B * m->T / best;
    double gflops = pc.flops_train * B * m->T / best / 1e9, gflops_dense = pc.flops_train_dense * B * m->T / best / 1e9;
    double peak = bench_sgemm_peak(2048, 3);

    prior_sample_opts so = prior_sample_default_opts();
    double *sec = dalle_malloc(sizeof(double) * (size_t)m->N);
    int32_t *codes = dalle_malloc(sizeof(int32_t) * (size_t)B * m->N);
    so.step_seconds = sec;
    double t0 = dalle_time();
    if (prior_sample(m, text, B, &so, codes)) die("sample");
    double sample_s = dalle_time() - t0, sample_tok_s = (double)B * m->N / sample_s;

    char line[4096] = "";
    int have = 0;
    if (torch) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "python3 bench/prior_torch.py %d %s %d %d", threads, preset, B, steps);
        FILE *p = popen(cmd, "r");
        if (p) {
            while (fgets(line, sizeof line, p))
                if (strstr(line, "train_tok_s")) have = 1;
            have &= pclose(p) == 0;
        }
    }
    printf("bench_prior: preset %s (%lld parameters, T = %d), batch %d, %d threads\n", preset, (long long)m->n_params,
           m->T, B, threads);
    printf("  train   dalle.c %8.0f tok/s  (%.1f ms/step)", tok_s, best * 1e3);
    if (have) printf("   PyTorch %8.0f tok/s   ratio %.2fx", bench_json_num(line, "train_tok_s"), tok_s / bench_json_num(line, "train_tok_s"));
    printf("\n  train   %.1f GFLOP/s sparse-model FLOPs (%.1f dense-equivalent); sgemm peak %.1f GFLOP/s: %.0f%% of peak\n",
           gflops, gflops_dense, peak, 100 * gflops / peak);
    printf("  sample  dalle.c %8.0f tok/s", sample_tok_s);
    if (have) printf("   PyTorch %8.0f tok/s   ratio %.2fx", bench_json_num(line, "sample_tok_s"), sample_tok_s / bench_json_num(line, "sample_tok_s"));
    printf("\n  sample  ms per token by eighth of the image, dalle.c:");
    for (int e = 0; e < 8; e++) {
        double s = 0;
        int n = 0;
        for (int j = e * m->N / 8; j < (e + 1) * m->N / 8; j++) s += sec[j], n++;
        printf(" %.2f", 1e3 * s / n);
    }
    if (have) {
        const char *at = strstr(line, "\"sample_ms_per_token_by_position\":");
        if (at) {
            const char *e = strchr(at, ']');
            printf("\n                                      PyTorch: %.*s", (int)(e ? e - at - 34 : 0), at + 35);
        }
    }
    printf("\n");
    return 0;
}
