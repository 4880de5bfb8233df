// cuda_test.h: what the CUDA test programs share (tests/cuda/test_cuda_*.c,
// one translation unit each): the GPU and CPU tables, the DALLE_CUDA_TF32 and
// DALLE_CUDA_TEST_QUICK switches, buffers held twice (host copy for the CPU's
// op, GPU copy for the GPU's), the comparisons and a clock.
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test.h"
#include "../testfill.h"
#include "backend/backend.h"
#include "core/common.h"

static const backend_ops *gpu, *cpu;
static int tf32;  // DALLE_CUDA_TF32=1
static int quick; // DALLE_CUDA_TEST_QUICK=1

// ---------------------------------------------------------------- buffers

// The same n floats on the host (h, the CPU's) and in GPU memory (g). The
// host writes g only before a GPU op or after gpu->sync().
typedef struct {
    float *h, *g;
    int64_t n;
} pair;

// n elements of `size` bytes in GPU memory (at least one); aborts on failure.
static void *gpu_elems(int64_t n, size_t size) {
    void *p = gpu->alloc(size * (size_t)(n > 0 ? n : 1));
    if (!p) {
        printf("GPU alloc of %lld x %zu bytes failed: %s\n", (long long)n, size, gpu->last_error());
        abort();
    }
    return p;
}

static float *gpu_floats(int64_t n) { return gpu_elems(n, sizeof(float)); }

static pair pair_new(int64_t n) {
    pair p = {malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)), gpu_floats(n), n};
    if (!p.h) abort();
    return p;
}

// Both copies U(lo, hi) from stream `seed`.
static pair pair_rand(int64_t n, uint64_t seed, float lo, float hi) {
    pair p = pair_new(n);
    fill_uniform(p.h, n, seed, lo, hi);
    memcpy(p.g, p.h, sizeof(float) * (size_t)n);
    return p;
}

static void pair_free(pair *p) {
    free(p->h);
    gpu->free(p->g);
}

static double amax(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

// The GPU's copy against the CPU's, atol = scale * max|cpu| (for sums whose
// terms cancel) and rtol.
static void check_pair(const char *what, const pair *p, double scale, double rtol) {
    CHECK_CLOSE(what, p->g, p->h, p->n, scale * amax(p->h, p->n), rtol);
}

// A double result: |gpu - cpu| <= rtol * |cpu|.
static void check_scalar(const char *what, double got, double ref, double rtol) {
    const double d = fabs(got - ref);
    const int bad = !(d <= rtol * fabs(ref));
    printf("    %-48s gpu %.10g cpu %.10g  |d|/|cpu|=%.3e%s\n", what, got, ref, d / fmax(fabs(ref), 1e-300),
           bad ? "  <-- MISMATCH" : "");
    CHECK(!bad);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Loads the CUDA backend into gpu (and the CPU's into cpu) and reads the
// switches; 0 when there is no usable GPU (the caller prints its skip line).
static int cuda_test_init(void) {
    if (!(gpu = backend_cuda_load())) return 0;
    cpu = backend_cpu();
    const char *s = getenv("DALLE_CUDA_TF32");
    tf32 = s && atoi(s) == 1;
    s = getenv("DALLE_CUDA_TEST_QUICK");
    quick = s && atoi(s) == 1;
    return 1;
}
