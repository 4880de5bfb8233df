// common.h: what every file of libdalle uses: the always-on assert for broken
// invariants, the error message for bad input, logging, and the counting
// allocator. Private to the library (the public face is include/dalle/).
//
// Two tiers of errors (see docs/STYLE in the README):
//  - a bug (a broken invariant) hits DALLE_ASSERT, which names file and line
//    and aborts, in every build;
//  - bad input, I/O failure and out-of-memory return DALLE_ERR (or NULL) to
//    the caller after dalle_seterr() has recorded a message that names the
//    file, the tensor or the field. Library code never calls exit().
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dalle/dalle.h"

#define DALLE_ASSERT(cond)                                                     \
    do {                                                                       \
        if (!(cond)) dalle_assert_fail(#cond, __FILE__, __LINE__);             \
    } while (0)

// Prints "assertion failed: EXPR at FILE:LINE" and aborts.
_Noreturn void dalle_assert_fail(const char *expr, const char *file, int line);

// Records the thread's error message (printf format); always returns DALLE_ERR
// so callers can write `return dalle_seterr(...)`.
int dalle_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Prepends "PREFIX: " to the thread's current error message (to add the file
// name at the level that knows it). Returns DALLE_ERR.
int dalle_errprefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Logging to stderr. dalle_log_level: 0 quiet, 1 normal (default), 2 verbose.
extern int dalle_log_level;
void dalle_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  // level >= 1
void dalle_logv(const char *fmt, ...) __attribute__((format(printf, 1, 2))); // level >= 2

// Counting allocator: every heap block of the library goes through these, so
// that `--verbose` can report the peak. All return NULL (with the error set)
// on out-of-memory; dalle_free(NULL) is a no-op. Blocks are 64-byte aligned.
void *dalle_malloc(size_t n);
void *dalle_calloc(size_t count, size_t size);
void *dalle_realloc(void *p, size_t n);
void dalle_free(void *p);
char *dalle_strdup(const char *s);
size_t dalle_mem_current(void); // bytes live now
size_t dalle_mem_peak(void);    // largest dalle_mem_current() so far

// Reads a whole file into a dalle_malloc'ed buffer (NUL-terminated, *len set
// to the size without the NUL). NULL with the error set (naming the path) on
// failure.
char *dalle_read_file(const char *path, size_t *len);

// Writes `len` bytes to PATH atomically: to PATH.tmp.PID, then rename. No
// partial file is left on failure.
int dalle_write_file_atomic(const char *path, const void *data, size_t len);

// FNV-1a 64 of data[0..n), continued from h (start with DALLE_FNV_START):
// the checksum of the dataset and shard files.
#define DALLE_FNV_START 0xCBF29CE484222325ull
uint64_t dalle_fnv1a(uint64_t h, const void *data, size_t n);

// Seconds since an arbitrary fixed point (monotonic clock).
double dalle_time(void);

#define DALLE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DALLE_MAX(a, b) ((a) > (b) ? (a) : (b))
