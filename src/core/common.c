// common.c: errors, logging, the counting allocator and small file helpers.
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------- errors

static _Thread_local char err_buf[1024];

_Noreturn void dalle_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "dalle: assertion failed: %s at %s:%d\n", expr, file, line);
    abort();
}

int dalle_seterr(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return DALLE_ERR;
}

int dalle_errprefix(const char *fmt, ...) {
    char prefix[512], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    snprintf(err_buf, sizeof err_buf, "%.500s: %.500s", prefix, old);
    return DALLE_ERR;
}

const char *dalle_last_error(void) { return err_buf; }

// ---------------------------------------------------------------- logging

int dalle_log_level = 1;

static void vlog(const char *fmt, va_list ap) {
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void dalle_log(const char *fmt, ...) {
    if (dalle_log_level < 1) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void dalle_logv(const char *fmt, ...) {
    if (dalle_log_level < 2) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

// ---------------------------------------------------------------- allocator
// Each block carries a 64-byte header holding its size, so that the block
// after it stays 64-byte aligned for SIMD and BLAS.

#define HDR 64
static atomic_size_t mem_cur, mem_peak;

static void count(ptrdiff_t delta) {
    size_t now = atomic_fetch_add(&mem_cur, (size_t)delta) + (size_t)delta;
    size_t peak = atomic_load(&mem_peak);
    while (now > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, now)) {}
}

void *dalle_malloc(size_t n) {
    if (n > SIZE_MAX - HDR) {
        dalle_seterr("out of memory (asked for %zu bytes)", n);
        return NULL;
    }
    void *p = NULL;
    if (posix_memalign(&p, HDR, n + HDR) != 0) {
        dalle_seterr("out of memory (asked for %zu bytes)", n);
        return NULL;
    }
    *(size_t *)p = n;
    count((ptrdiff_t)n);
    return (char *)p + HDR;
}

void *dalle_calloc(size_t count_, size_t size) {
    if (size && count_ > SIZE_MAX / size) {
        dalle_seterr("out of memory (%zu x %zu bytes)", count_, size);
        return NULL;
    }
    void *p = dalle_malloc(count_ * size);
    if (p) memset(p, 0, count_ * size);
    return p;
}

void *dalle_realloc(void *p, size_t n) {
    if (!p) return dalle_malloc(n);
    size_t old = *(size_t *)((char *)p - HDR);
    void *q = dalle_malloc(n);
    if (!q) return NULL;
    memcpy(q, p, DALLE_MIN(old, n));
    dalle_free(p);
    return q;
}

void dalle_free(void *p) {
    if (!p) return;
    char *base = (char *)p - HDR;
    count(-(ptrdiff_t) * (size_t *)base);
    free(base);
}

char *dalle_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = dalle_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

size_t dalle_mem_current(void) { return atomic_load(&mem_cur); }
size_t dalle_mem_peak(void) { return atomic_load(&mem_peak); }

// ---------------------------------------------------------------- files

char *dalle_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        dalle_seterr("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            char *nb = dalle_realloc(buf, ncap);
            if (!nb) goto fail;
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        dalle_seterr("%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
fail:
    if (!buf) dalle_errprefix("%s", path);
    dalle_free(buf);
    fclose(f);
    return NULL;
}

int dalle_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return dalle_seterr("%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return dalle_seterr("%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return dalle_seterr("%s: cannot write: %s", path, strerror(e));
    }
    return DALLE_OK;
}

double dalle_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t dalle_fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}
