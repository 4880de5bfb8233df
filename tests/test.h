// test.h: the minimal harness every test program uses.
//   static void test_something(void) { CHECK(x == 1); CHECK_CLOSE("t", got, ref, n, 1e-5, 1e-4); }
//   int main(void) { RUN(test_something); return test_summary(); }
// Each program ends with one "N passed, N failed" line; tests/run adds them up.
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>

static int test_fail_count_ = 0, test_pass_count_ = 0, test_cur_failed_ = 0;
static const char *test_cur_name_ = "";

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "  FAIL %s: %s (%s:%d)\n", test_cur_name_, #cond, __FILE__, \
                    __LINE__);                                                        \
            test_cur_failed_ = 1;                                                     \
        }                                                                             \
    } while (0)

// Compares got[0..n) with ref[0..n): |got - ref| <= atol + rtol*|ref| everywhere.
// Prints the max absolute and relative difference; fails the test if any
// element is out of tolerance or NaN.
static inline int check_close_(const char *what, const float *got, const float *ref, int64_t n,
                               double atol, double rtol, const char *file, int line) {
    double maxabs = 0, maxrel = 0, maxref = 0;
    int64_t bad = 0, first_bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        double r = fabs((double)ref[i]);
        if (!(d <= atol + rtol * r)) {
            if (first_bad < 0) first_bad = i;
            bad++;
        }
        if (d > maxabs || d != d) maxabs = d;
        if (r > maxref) maxref = r;
        double rel = d / (r > 1e-30 ? r : 1e-30);
        if (d > atol && rel > maxrel) maxrel = rel;
    }
    // relative to the tensor's scale: the figure the parity goals are stated in
    double scaled = maxabs / (maxref > 0 ? maxref : 1);
    printf("    %-48s n=%-9lld max|d|=%.3e  max|d|/max|ref|=%.3e%s\n", what, (long long)n,
           maxabs, scaled, bad ? "  <-- MISMATCH" : "");
    if (bad) {
        fprintf(stderr, "  FAIL %s: %s: %lld of %lld out of tolerance, first at %lld: got %g ref %g (%s:%d)\n",
                test_cur_name_, what, (long long)bad, (long long)n, (long long)first_bad,
                got[first_bad], ref[first_bad], file, line);
        test_cur_failed_ = 1;
        return 0;
    }
    return 1;
}
#define CHECK_CLOSE(what, got, ref, n, atol, rtol) \
    check_close_(what, got, ref, n, atol, rtol, __FILE__, __LINE__)

#define RUN(fn)                                                         \
    do {                                                                \
        test_cur_name_ = #fn;                                           \
        test_cur_failed_ = 0;                                           \
        printf("  %s\n", #fn);                                          \
        fflush(stdout);                                                 \
        fn();                                                           \
        if (test_cur_failed_) test_fail_count_++; else test_pass_count_++; \
        printf("  %s %s\n", test_cur_failed_ ? "FAIL" : "ok  ", #fn);   \
        fflush(stdout);                                                 \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_pass_count_, test_fail_count_);
    return test_fail_count_ ? 1 : 0;
}
