// bench_conv.c: how fast the CPU convolutions (src/backend/cpu/conv.c) run on
// the dVAE's own layer shapes, against two yardsticks: OpenBLAS's sgemm on a
// large square product (the "peak" a GEMM-based conv can hope for) and
// PyTorch's CPU conv (oneDNN) through bench/conv_torch.py, same thread count.
//   build/bench/bench_conv [REPEATS [ROUNDS [notorch]]]   (from the repository root)
// Each time is the best of ROUNDS x REPEATS runs (default 3 x 3): the machine
// is shared, and the best run is the one least disturbed.
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "bench_common.h"
#include "core/common.h"

// Layer shapes of OpenAI's dVAE (n_hid 256, 4 groups, vocabulary 8192), B = 1.
typedef struct {
    const char *what;
    int Ci, Co, H, k;
} Shape;
static const Shape shapes[] = {
    {"enc in    7x7    3->256  @256", 3, 256, 256, 7},
    {"enc g1    3x3  256->64   @256", 256, 64, 256, 3},
    {"enc g1    3x3   64->64   @256", 64, 64, 256, 3},
    {"enc g1    1x1   64->256  @256", 64, 256, 256, 1},
    {"enc g2    3x3  128->128  @128", 128, 128, 128, 3},
    {"enc g4    3x3 1024->512  @32", 1024, 512, 32, 3},
    {"enc out   1x1 2048->8192 @32", 2048, 8192, 32, 1},
    {"dec g1    3x3  512->512  @32", 512, 512, 32, 3},
    {"dec g4    3x3   64->256  @256", 64, 256, 256, 3},
};
#define NSHAPES ((int)(sizeof shapes / sizeof *shapes))

static float *alloc_fill(int64_t n, float scale) {
    float *p = dalle_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) {
        fprintf(stderr, "bench_conv: %s\n", dalle_last_error());
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) p[i] = scale * (float)((i * 7919 % 2003) - 1001) / 1001.0f;
    return p;
}

// Lowers fwd/bwd to our best-of-`repeats` seconds for the forward and the
// backward (din, dw, db) on s.
static void time_ours(const Shape *s, int repeats, double *fwd, double *bwd) {
    const int64_t HW = (int64_t)s->H * s->H, nw = (int64_t)s->Co * s->Ci * s->k * s->k;
    float *x = alloc_fill(s->Ci * HW, 1), *w = alloc_fill(nw, 0.05f), *b = alloc_fill(s->Co, 0.1f);
    float *out = alloc_fill(s->Co * HW, 0), *dout = alloc_fill(s->Co * HW, 1);
    float *dx = alloc_fill(s->Ci * HW, 0), *dw = alloc_fill(nw, 0), *db = alloc_fill(s->Co, 0);
    float *scratch = alloc_fill(conv2d_scratch_floats(s->Ci, s->Co, s->H, s->H, s->k), 0);
    for (int r = 0; r <= repeats; r++) { // run 0 warms up
        double t = dalle_time();
        conv2d_forward(out, x, w, b, 1, s->Ci, s->Co, s->H, s->H, s->k, 1.0f, 0.0f, scratch);
        t = dalle_time() - t;
        if (r > 0 && t < *fwd) *fwd = t;
        t = dalle_time();
        conv2d_backward(dx, dw, db, dout, x, w, 1, s->Ci, s->Co, s->H, s->H, s->k, 1.0f, scratch);
        t = dalle_time() - t;
        if (r > 0 && t < *bwd) *bwd = t;
    }
    dalle_free(x), dalle_free(w), dalle_free(b), dalle_free(out), dalle_free(dout);
    dalle_free(dx), dalle_free(dw), dalle_free(db), dalle_free(scratch);
}

// Lowers tfwd/tbwd (seconds) to what bench/conv_torch.py measures. Returns 0
// when python3 with torch is not there.
static int time_torch(int threads, int repeats, double *tfwd, double *tbwd) {
    char cmd[2048];
    int len = snprintf(cmd, sizeof cmd, "python3 bench/conv_torch.py %d %d", threads, repeats);
    for (int i = 0; i < NSHAPES; i++)
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %d,%d,%d,%d", shapes[i].Ci,
                        shapes[i].Co, shapes[i].H, shapes[i].k);
    snprintf(cmd + len, sizeof cmd - (size_t)len, " 2>/dev/null");
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    int got = 0;
    char line[256];
    while (got < NSHAPES && fgets(line, sizeof line, f)) {
        char spec[64];
        double tf, tb;
        if (sscanf(line, "%63s %lf %lf", spec, &tf, &tb) != 3) continue;
        tfwd[got] = DALLE_MIN(tfwd[got], tf);
        tbwd[got] = DALLE_MIN(tbwd[got], tb);
        got++;
    }
    return pclose(f) == 0 && got == NSHAPES;
}

int main(int argc, char **argv) {
    const int repeats = argc > 1 ? atoi(argv[1]) : 3, rounds = argc > 2 ? atoi(argv[2]) : 3;
    const int want_torch = !(argc > 3 && strcmp(argv[3], "notorch") == 0);
    const int threads = omp_get_max_threads();
    printf("%s, core %s, %d threads; best of %d rounds of %d runs\n", openblas_get_config(),
           openblas_get_corename(), threads, rounds, repeats);

    // Rounds alternate ours and torch, so that both see the same spells of
    // load from whatever else runs on the machine.
    double peak = 0, ours_f[NSHAPES], ours_b[NSHAPES], torch_f[NSHAPES], torch_b[NSHAPES];
    for (int i = 0; i < NSHAPES; i++) ours_f[i] = ours_b[i] = torch_f[i] = torch_b[i] = 1e30;
    int have_torch = want_torch;
    for (int r = 0; r < rounds; r++) {
        peak = DALLE_MAX(peak, bench_sgemm_peak(2048, repeats));
        for (int i = 0; i < NSHAPES; i++) time_ours(&shapes[i], repeats, &ours_f[i], &ours_b[i]);
        if (have_torch) have_torch = time_torch(threads, repeats, torch_f, torch_b);
    }
    printf("sgemm 2048^3 (peak): %.1f GFLOP/s\n", peak);
    if (want_torch && !have_torch) printf("(no python3 with torch: no comparison)\n");

    printf("\n%-30s %7s %7s %6s   %7s %7s %6s", "layer (B=1)", "fwd ms", "GFLOP/s", "%peak",
           "bwd ms", "GFLOP/s", "%peak");
    if (have_torch) printf("   %9s %9s", "fwd/torch", "bwd/torch");
    printf("\n");
    double sum_ours = 0, sum_torch = 0;
    for (int i = 0; i < NSHAPES; i++) {
        const Shape *s = &shapes[i];
        // the backward is two products of the forward's size (dW and dX)
        const double flop = 2.0 * s->Ci * s->Co * s->k * s->k * (double)s->H * s->H;
        const double gf = flop / ours_f[i] / 1e9, gb = 2 * flop / ours_b[i] / 1e9;
        printf("%-30s %7.2f %7.1f %5.0f%%   %7.2f %7.1f %5.0f%%", s->what, ours_f[i] * 1e3, gf,
               100 * gf / peak, ours_b[i] * 1e3, gb, 100 * gb / peak);
        if (have_torch) // speed ratio: > 1 means ours is faster
            printf("   %9.2f %9.2f", torch_f[i] / ours_f[i], torch_b[i] / ours_b[i]);
        printf("\n");
        sum_ours += ours_f[i] + ours_b[i];
        sum_torch += torch_f[i] + torch_b[i];
    }
    if (have_torch)
        printf("all layers, forward + backward: ours %.1f ms, torch %.1f ms, speed ratio %.2f\n",
               sum_ours * 1e3, sum_torch * 1e3, sum_torch / sum_ours);
    return 0;
}
