// bench_gpu.h: what the GPU benchmark programs (bench/gpu/*.c) share:
// selecting the CUDA backend or saying why not, checking that a model's
// memory really came from the GPU, the peak the MFU figures divide by, and the
// "BENCH {json}" lines that bench/gpu/report.py sets beside PyTorch's.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/common.h"

// The H100 SXM's dense bf16 tensor-core peak, FLOP/s (NVIDIA's datasheet:
// 989.4 TFLOP/s, twice that with 2:4 sparsity). Every MFU figure of these
// benchmarks, fp32/TF32 runs included, is stated against it (TF32's dense
// peak is half of it).
#define BENCH_GPU_PEAK_FLOPS 989.4e12

static inline int bench_gpu_env_is(const char *name, const char *value) {
    const char *s = getenv(name);
    return s && !strcmp(s, value);
}

// The mode of a run's figures: the storage precision PREC ("bf16", "fp16";
// NULL for fp32 storage: "fp32", or "tf32" where DALLE_CUDA_TF32=1 lets the
// backend use TF32 tensor cores), "+tf32" after a 16-bit one with
// DALLE_CUDA_TF32=1, then "+sync" with DALLE_CUDA_ASYNC=0 and "+simt" or
// "+tc" with DALLE_CUDA_ATTN set (the attention kernels forced).
static inline const char *bench_gpu_mode(const char *prec) {
    static char buf[64];
    int tf32 = bench_gpu_env_is("DALLE_CUDA_TF32", "1");
    snprintf(buf, sizeof buf, "%s%s%s%s%s", prec ? prec : tf32 ? "tf32" : "fp32", prec && tf32 ? "+tf32" : "",
             bench_gpu_env_is("DALLE_CUDA_ASYNC", "0") ? "+sync" : "",
             bench_gpu_env_is("DALLE_CUDA_ATTN", "simt") ? "+simt" : "",
             bench_gpu_env_is("DALLE_CUDA_ATTN", "tc") ? "+tc" : "");
    return buf;
}

// Selects the CUDA backend: 1, or 0 after printing "no GPU: skipped (why)"
// and a BENCH line of BENCH_NAME with "skipped" (for the report).
// DALLE_BENCH_DEVICE=cpu runs the program on the CPU backend instead (a smoke
// test of the benchmark's own code on a machine without a GPU; tiny presets).
static inline int bench_gpu_select(const char *bench_name) {
    const char *dev = getenv("DALLE_BENCH_DEVICE");
    if (dev && !strcmp(dev, "cpu")) {
        printf("%s: on the CPU (DALLE_BENCH_DEVICE=cpu): a smoke test, not a GPU figure\n", bench_name);
        return backend_select("cpu") == BACKEND_CPU;
    }
    if (!backend_cuda_load() || backend_select("cuda") != BACKEND_CUDA) {
        printf("%s: no GPU: skipped (%s)\n", bench_name, dalle_last_error());
        printf("BENCH {\"bench\":\"%s\",\"impl\":\"dalle.c\",\"skipped\":\"no GPU\"}\n", bench_name);
        return 0;
    }
    size_t fr = 0, tot = 0;
    backend()->mem_info(&fr, &tot);
    printf("%s: %s (%.1f of %.1f GiB free)\n", bench_name, backend()->device_name(), fr / 1073741824.0,
           tot / 1073741824.0);
    return 1;
}

// 1 if the allocations since dalle_mem_current() was HOST_BEFORE left less
// than half of the BYTES a model's parameters take in host memory (they came
// from backend_alloc: the GPU); else 0 after printing why the GPU figures
// would be the CPU's and a BENCH line with "skipped".
static inline int bench_gpu_on_device(size_t host_before, double bytes, const char *bench_name) {
    if (backend()->kind == BACKEND_CPU) return 1; // DALLE_BENCH_DEVICE=cpu
    double host = (double)dalle_mem_current() - (double)host_before;
    if (host < bytes / 2) return 1;
    printf("%s: skipped: the model put %.0f MiB of its %.0f MiB of parameters in host memory: its code does "
           "not allocate through backend_alloc yet, so the ops would not run on the GPU\n",
           bench_name, host / 1048576, bytes / 1048576);
    printf("BENCH {\"bench\":\"%s\",\"impl\":\"dalle.c\",\"skipped\":\"model memory on the host\"}\n", bench_name);
    return 0;
}

// GiB of device memory in use now (by every process on the device).
static inline double bench_gpu_used_gib(void) {
    size_t fr = 0, tot = 0;
    backend()->mem_info(&fr, &tot);
    return (double)(tot - fr) / 1073741824.0;
}
