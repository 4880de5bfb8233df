// bench_common.h: what the benchmark programs share: the sgemm yardstick and
// running the PyTorch side of a comparison in the same run.
#pragma once
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

// GFLOP/s of OpenBLAS sgemm on an n x n x n product, best of `repeats` (after
// one warm-up): the practical peak of this CPU for GEMM-based ops.
static inline double bench_sgemm_peak(int n, int repeats) {
    size_t nn = (size_t)n * n;
    float *a = dalle_malloc(sizeof(float) * nn), *b = dalle_malloc(sizeof(float) * nn), *c = dalle_malloc(sizeof(float) * nn);
    DALLE_ASSERT(a && b && c);
    for (size_t i = 0; i < nn; i++) a[i] = b[i] = (float)((i * 7919 % 2003) - 1001) / 1001.0f;
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) {
        double t = dalle_time();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = dalle_time() - t;
        if (r > 0 && t < best) best = t;
    }
    dalle_free(a), dalle_free(b), dalle_free(c);
    return 2.0 * n * n * n / best / 1e9;
}

// Runs CMD (a Python script printing one JSON line) and returns the number
// after "\"KEY\":" in its output, or -1 if it failed (torch missing, ...).
static inline double bench_run_json(const char *cmd, const char *key) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[4096], pat[128];
    double v = -1;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    while (fgets(line, sizeof line, p)) {
        char *at = strstr(line, pat);
        if (at) v = atof(at + strlen(pat));
    }
    if (pclose(p) != 0) return -1;
    return v;
}

// The number after "KEY": in the JSON text s, or -1 when absent.
static inline double bench_json_num(const char *s, const char *key) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = s ? strstr(s, pat) : NULL;
    return at ? atof(at + strlen(pat)) : -1;
}
