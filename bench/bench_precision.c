// bench_precision.c: the prior's mixed precision on this CPU (docs/training.md,
// "Mixed precision"): the time of a training step (forward, loss, backward,
// AdamW, EMA, as one process of `dalle train` does it) and the peak memory,
// for fp32, bf16 and fp16 storage, each with and without activation
// checkpointing.
//   build/bench/bench_precision [PRESET [BATCH [STEPS]]]   (defaults small 8 5)
// Each setting runs in a fresh process (this program again, with --one), so
// that the peaks are its own: the resident set (getrusage's ru_maxrss: all
// the process touched, OpenBLAS's buffers included) and the library
// allocator's peak (dalle_mem_peak: the sum of the live blocks, the model,
// gradient, optimizer state and activations). Step time: the best of STEPS
// after one warm-up step.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_common.h"
#include "core/common.h"
#include "prior/model.h"
#include "train/optim.h"

static void die(const char *what) {
    fprintf(stderr, "bench_precision: %s: %s\n", what, dalle_last_error());
    exit(1);
}

// One setting, in this process: prints a JSON line.
static int run_one(const char *preset, int B, int steps, prior_precision prec, int ckpt) {
    prior_config c;
    if (prior_config_preset(preset, &c)) die("preset");
    prior_model *m = prior_model_new(&c, prec);
    if (!m) die("model");
    int64_t n = m->n_params, half = prec != PRIOR_FP32;
    // the trainer's state at one rank: fp32 model: the parameters are the
    // master, two fp32 moments; 16-bit: an fp32 master, two 16-bit moments
    float *g = dalle_calloc((size_t)n, sizeof(float)), *ema = dalle_calloc((size_t)n, sizeof(float));
    float *master = half ? dalle_calloc((size_t)n, sizeof(float)) : m->params;
    float *am = half ? NULL : dalle_calloc((size_t)n, sizeof(float)), *av = half ? NULL : dalle_calloc((size_t)n, sizeof(float));
    uint16_t *hm = half ? dalle_calloc((size_t)n, sizeof(uint16_t)) : NULL, *hv = half ? dalle_calloc((size_t)n, sizeof(uint16_t)) : NULL;
    prior_acts *a = prior_acts_new(m, B, ckpt);
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)B * m->L), *image = dalle_malloc(sizeof(int32_t) * (size_t)B * m->N);
    if (!g || !ema || !master || !a || !text || !image || (half ? !hm || !hv : !am || !av)) die("alloc");
    prior_init(m, 1, master);
    prior_set_params(m, master);
    for (int i = 0; i < B * m->L; i++) text[i] = (int32_t)((i * 7919u) % (unsigned)m->Vt);
    for (int i = 0; i < B * m->N; i++) image[i] = (int32_t)((i * 104729u) % (unsigned)m->Vi);
    for (int r = 0; r < 2 * c.n_layer; r++) a->grad_mult[r] = 8192.0f;
    double best = 1e30, loss = 0;
    adamw_params h = {1e-4f, 0.9f, 0.96f, 1e-8f, 0.045f};
    for (int s = 0; s <= steps; s++) {
        double t0 = dalle_time();
        prior_loss l;
        if (prior_forward(m, a, text, image, B, &l)) die("forward");
        memset(g, 0, sizeof(float) * (size_t)n);
        prior_backward(m, a, text, image, B, g);
        for (int i = 0; i < m->n_tensors; i++) {
            const prior_tensor *t = &m->tensors[i];
            int decay = t->kind == PT_MATRIX || t->kind == PT_HEAD;
            if (half)
                adamw_update16(master + t->offset, hm + t->offset, hv + t->offset, g + t->offset, t->numel, h.lr,
                               h.beta1, h.beta2, h.eps, decay ? h.weight_decay : 0.0f, s + 1);
            else
                adamw_update(master + t->offset, am + t->offset, av + t->offset, g + t->offset, t->numel, h.lr, h.beta1,
                             h.beta2, h.eps, decay ? h.weight_decay : 0.0f, s + 1);
        }
        prior_set_params(m, master);
        ema_update(ema, master, n, 0.99f);
        double dt = dalle_time() - t0;
        if (s > 0 && dt < best) best = dt;
        loss = l.loss;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"step_s\": %.6f, \"maxrss_mb\": %.2f, \"alloc_peak_mb\": %.2f, \"acts_mb\": %.2f, \"loss\": %.6f}\n",
           best, ru.ru_maxrss / 1024.0, (double)dalle_mem_peak() / 1e6, 4.0 * (double)a->arena_floats / 1e6, loss);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 7 && !strcmp(argv[1], "--one")) {
        prior_precision p;
        if (prior_precision_parse(argv[5], &p)) die("precision");
        return run_one(argv[2], atoi(argv[3]), atoi(argv[4]), p, atoi(argv[6]));
    }
    const char *preset = argc > 1 ? argv[1] : "small";
    int B = argc > 2 ? atoi(argv[2]) : 8, steps = argc > 3 ? atoi(argv[3]) : 5;
    printf("bench_precision: preset %s, batch %d, %d threads, best of %d steps; peaks of a fresh process each\n",
           preset, B, omp_get_max_threads(), steps);
    printf("  %-9s %-10s %9s %9s %11s %11s %11s %10s\n", "precision", "checkpoint", "step (s)", "speed",
           "RSS (MB)", "alloc (MB)", "acts (MB)", "loss");
    double base = 0;
    for (int p = 0; p < 3; p++)
        for (int ck = 0; ck < 2; ck++) {
            char cmd[1024], line[1024] = "";
            const char *name = prior_precision_name((prior_precision)p);
            snprintf(cmd, sizeof cmd, "%s --one %s %d %d %s %d", argv[0], preset, B, steps, name, ck);
            FILE *f = popen(cmd, "r");
            if (!f) die("popen");
            while (fgets(line, sizeof line, f) && !strstr(line, "step_s")) {}
            if (pclose(f) != 0 || !strstr(line, "step_s")) {
                fprintf(stderr, "bench_precision: '%s' failed\n", cmd);
                return 1;
            }
            double t = bench_json_num(line, "step_s");
            if (p == 0 && ck == 0) base = t;
            printf("  %-9s %-10s %9.3f %8.2fx %11.1f %11.1f %11.1f %10.6f\n", name, ck ? "yes" : "no", t, base / t,
                   bench_json_num(line, "maxrss_mb"), bench_json_num(line, "alloc_peak_mb"),
                   bench_json_num(line, "acts_mb"), bench_json_num(line, "loss"));
            fflush(stdout);
        }
    return 0;
}
