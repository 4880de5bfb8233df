// memory.c: the CPU backend's memory and device entries (backend.h): host
// memory from the counting allocator (so `--verbose` peaks include it),
// plain memset/memcpy, nothing to wait for, and a name for the logs.
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/common.h"

void *cpu_alloc(size_t bytes) { return dalle_malloc(bytes ? bytes : 1); }
void cpu_free(void *p) { dalle_free(p); }
void cpu_sync(void) {}
void cpu_memset0(void *p, size_t bytes) {
    if (bytes < ((size_t)1 << 20)) {
        if (bytes) memset(p, 0, bytes);
        return;
    }
    // large blocks (a step's gradients) in one piece per thread: one core
    // alone does not reach the memory's bandwidth
#pragma omp parallel
    {
        const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        const size_t lo = bytes / nt * t, hi = t + 1 == nt ? bytes : bytes / nt * (t + 1);
        memset((char *)p + lo, 0, hi - lo);
    }
}
void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}

int cpu_mem_info(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = 0;
    *total_bytes = 0;
    return 0;
}

const char *cpu_device_name(void) {
    static char name[96];
    snprintf(name, sizeof name, "%s CPU, %d threads",
#if defined(__x86_64__)
             "x86_64",
#elif defined(__aarch64__)
             "aarch64",
#else
             "host",
#endif
             omp_get_max_threads());
    return name;
}

const char *cpu_last_error(void) { return dalle_last_error(); }
