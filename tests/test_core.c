// test_core.c: the small pieces of src/core and src/train: Philox against the
// Random123 known answers, the distributions it feeds, the counting
// allocator, atomic file writes, and the schedules.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/common.h"
#include "core/rng.h"
#include "data/folder.h"
#include "test.h"
#include "train/optim.h"

// Known-answer tests of Philox4x32-10 from Random123 (kat_vectors).
static void test_philox_kat(void) {
    uint32_t o[4];
    philox4x32(0, 0, 0, o);
    CHECK(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u);
    philox4x32(0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull, o);
    CHECK(o[0] == 0x408f276du && o[1] == 0x41c83b0eu && o[2] == 0xa20bc7c6u && o[3] == 0x6d5451fdu);
    philox4x32(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull, o);
    CHECK(o[0] == 0xd16cfe09u && o[1] == 0x94fdccebu && o[2] == 0x5001e420u && o[3] == 0x24126ea1u);
}

// Uniforms lie strictly inside (0, 1), Gumbel noise is finite, the moments
// are right, and the numbers do not depend on the thread count.
static void test_rng_distributions(void) {
    const int64_t n = 1 << 22;
    float *u = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n), *z = malloc(sizeof(float) * n);
    rng_t r;
    rng_init(&r, 42);
    rng_uniform(&r, u, n);
    CHECK(r.counter == (uint64_t)n / 4);
    double mean = 0, lo = 1, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        mean += u[i];
        lo = fmin(lo, u[i]);
        hi = fmax(hi, u[i]);
    }
    mean /= n;
    printf("    uniform: mean %.5f, min %.3g, max 1 - %.3g\n", mean, lo, 1 - hi);
    CHECK(lo > 0 && hi < 1 && fabs(mean - 0.5) < 1e-3);
    rng_gumbel(&r, g, n);
    double gm = 0;
    int finite = 1;
    for (int64_t i = 0; i < n; i++) {
        finite &= isfinite(g[i]);
        gm += g[i];
    }
    gm /= n;
    printf("    gumbel: mean %.5f (Euler-Mascheroni 0.57722)\n", gm);
    CHECK(finite && fabs(gm - 0.5772157) < 5e-3);
    rng_normal(&r, z, n, 1.0f, 2.0f);
    double zm = 0, zv = 0;
    for (int64_t i = 0; i < n; i++) zm += z[i];
    zm /= n;
    for (int64_t i = 0; i < n; i++) zv += (z[i] - zm) * (z[i] - zm);
    zv /= n;
    printf("    normal(1, 2): mean %.4f, std %.4f\n", zm, sqrt(zv));
    CHECK(fabs(zm - 1) < 5e-3 && fabs(sqrt(zv) - 2) < 5e-3);

    // the same stream on one thread gives the same numbers
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    rng_t r1;
    rng_init(&r1, 42);
    rng_uniform(&r1, g, n);
    omp_set_num_threads(threads);
    CHECK(!memcmp(g, u, sizeof(float) * n));
    free(u);
    free(g);
    free(z);
}

// rng_gumbel_at gives any slice of what rng_gumbel draws (the dVAE's ranks
// draw their samples' noise this way), whatever its alignment to the blocks.
static void test_rng_gumbel_slices(void) {
    enum { n = 1000 };
    float all[n], part[n];
    rng_t r = {7, 123}, r0 = r;
    rng_gumbel(&r, all, n);
    const int64_t cuts[][2] = {{0, n}, {0, 1}, {1, 3}, {3, 5}, {4, 8}, {250, 250}, {997, 3}, {513, 0}};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        rng_gumbel_at(&r0, cuts[k][0], part, cuts[k][1]);
        CHECK(!memcmp(part, all + cuts[k][0], sizeof(float) * (size_t)cuts[k][1]));
    }
    CHECK(r0.counter == 123);
}

static void test_allocator(void) {
    size_t before = dalle_mem_current();
    char *a = dalle_malloc(1000), *b = dalle_calloc(10, 100);
    CHECK(a && b && ((uintptr_t)a % 64) == 0 && ((uintptr_t)b % 64) == 0);
    CHECK(dalle_mem_current() == before + 2000);
    CHECK(dalle_mem_peak() >= before + 2000);
    for (int i = 0; i < 1000; i++) CHECK(b[i] == 0);
    a = dalle_realloc(a, 5000);
    CHECK(a && dalle_mem_current() == before + 6000);
    dalle_free(a);
    dalle_free(b);
    dalle_free(NULL);
    CHECK(dalle_mem_current() == before);
    CHECK(dalle_malloc(SIZE_MAX - 10) == NULL && strstr(dalle_last_error(), "out of memory"));
}

static void test_files(void) {
    const char *path = "build/test_core_file.txt";
    CHECK(dalle_write_file_atomic(path, "hello", 5) == DALLE_OK);
    size_t len;
    char *s = dalle_read_file(path, &len);
    CHECK(s && len == 5 && !strcmp(s, "hello"));
    dalle_free(s);
    remove(path);
    CHECK(dalle_read_file("build/no/such/file", &len) == NULL && strstr(dalle_last_error(), "build/no/such/file"));
    CHECK(dalle_write_file_atomic("build/no/such/dir/x", "a", 1) == DALLE_ERR);
    struct stat st;
    CHECK(stat("build/no/such/dir/x", &st) != 0);
}

static void test_folder(void) {
    char **paths;
    int n;
    CHECK(folder_list_images("tests/data/img", &paths, &n) == DALLE_OK && n > 10);
    for (int i = 1; i < n; i++) CHECK(strcmp(paths[i - 1], paths[i]) < 0);
    folder_free(paths, n);
    CHECK(folder_list_images("tests/data/nope", &paths, &n) == DALLE_ERR && strstr(dalle_last_error(), "tests/data/nope"));
    CHECK(folder_list_images("include", &paths, &n) == DALLE_ERR && strstr(dalle_last_error(), "no .png"));
}

static void test_schedules(void) {
    CHECK(fabs(cosine_schedule(0, 100, 1.0, 1.0 / 16) - 1.0) < 1e-12);
    CHECK(fabs(cosine_schedule(50, 100, 1.0, 1.0 / 16) - (1.0 + 1.0 / 16) / 2) < 1e-12);
    CHECK(cosine_schedule(100, 100, 1.0, 1.0 / 16) == 1.0 / 16);
    CHECK(cosine_schedule(1000, 100, 0.0, 6.6) == 6.6);
    CHECK(cosine_schedule(5, 0, 0.0, 6.6) == 6.6);
}

int main(void) {
    RUN(test_philox_kat);
    RUN(test_rng_distributions);
    RUN(test_rng_gumbel_slices);
    RUN(test_allocator);
    RUN(test_files);
    RUN(test_folder);
    RUN(test_schedules);
    return test_summary();
}
