// test_powersgd.c: the PowerSGD compression step (train/powersgd.h), on one
// rank (the K-rank run is the same arithmetic on the mean: cli_powersgd.sh):
//   - a matrix of rank <= r comes back exactly (to rounding), its error ~0,
//     and the entries outside the matrices pass through untouched;
//   - error feedback: over many steps, the gradients applied plus the final
//     error equal the sum of the true gradients;
//   - P after the Householder QR is orthonormal;
//   - the fixed Q is a function of the seed alone.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "test.h"
#include "train/powersgd.h"

// A flat gradient of 120 floats: plain [0,5), a 12x7 matrix at 5, plain
// [89,92), a 6x4 matrix at 92, plain [116,120). Given out of order on purpose.
static const int64_t MATS[2][3] = {{92, 6, 4}, {5, 12, 7}};
enum { NFLAT = 120 };

static void test_low_rank_exact(void) {
    powersgd p;
    CHECK(powersgd_init(&p, 3, NFLAT, MATS, 2, 7) == DALLE_OK);
    CHECK(p.n_err == 12 * 7 + 6 * 4 && p.n_plain == NFLAT - p.n_err);
    CHECK(powersgd_floats(&p) == p.n_plain + (12 + 7) * 3 + (6 + 4) * 3);
    float g[NFLAT], ref[NFLAT], a[12 * 3], b[3 * 7];
    rng_t r;
    rng_init(&r, 1);
    rng_normal(&r, g, NFLAT, 0, 1);
    // rank 2 and rank 3 matrices: A (n x k) B (k x m)
    for (int t = 0; t < 2; t++) {
        int64_t off = MATS[1 - t][0], n = MATS[1 - t][1], m = MATS[1 - t][2], k = t ? 3 : 2;
        rng_normal(&r, a, n * k, 0, 1);
        rng_normal(&r, b, k * m, 0, 1);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < m; j++) {
                float s = 0;
                for (int64_t q = 0; q < k; q++) s += a[i * k + q] * b[q * m + j];
                g[off + i * m + j] = s;
            }
    }
    memcpy(ref, g, sizeof g);
    CHECK(powersgd_reduce(&p, NULL, g) == DALLE_OK);
    CHECK_CLOSE("low rank: M^ == M", g, ref, NFLAT, 1e-5, 1e-4);
    CHECK(!memcmp(g, ref, 5 * sizeof(float)) && !memcmp(g + 89, ref + 89, 3 * sizeof(float)) &&
          !memcmp(g + 116, ref + 116, 4 * sizeof(float)));
    float zero[12 * 7 + 6 * 4] = {0};
    CHECK_CLOSE("low rank: error ~ 0", p.err, zero, p.n_err, 1e-5, 0);
    powersgd_free(&p);
}

static void test_error_feedback(void) {
    powersgd p;
    CHECK(powersgd_init(&p, 1, NFLAT, MATS, 2, 9) == DALLE_OK);
    double sum_true[NFLAT] = {0}, sum_used[NFLAT] = {0};
    float g[NFLAT];
    rng_t r;
    rng_init(&r, 2);
    for (int step = 0; step < 50; step++) {
        rng_normal(&r, g, NFLAT, 0.1f, 1);
        for (int i = 0; i < NFLAT; i++) sum_true[i] += g[i];
        CHECK(powersgd_reduce(&p, NULL, g) == DALLE_OK);
        for (int i = 0; i < NFLAT; i++) sum_used[i] += g[i];
    }
    float got[NFLAT], want[NFLAT];
    for (int i = 0; i < NFLAT; i++) got[i] = (float)sum_used[i], want[i] = (float)sum_true[i];
    for (int t = 0; t < 2; t++) // the error of each matrix
        for (int64_t i = 0; i < p.mat[t].n * p.mat[t].m; i++) got[p.mat[t].off + i] += p.err[p.mat[t].at_e + i];
    CHECK_CLOSE("sum of M^ + final error == sum of gradients", got, want, NFLAT, 1e-4, 1e-5);
    // rank 1 of a full-rank matrix: the error is not small, so the check above means something
    double e2 = 0;
    for (int64_t i = 0; i < p.n_err; i++) e2 += (double)p.err[i] * p.err[i];
    CHECK(e2 > 1);
    powersgd_free(&p);
}

static void test_orthogonal(void) {
    enum { N = 50, R = 5 };
    float P[N * R], qr[N * R + R + 64 * R], I[R * R], ref[R * R];
    rng_t r;
    rng_init(&r, 3);
    rng_normal(&r, P, N * R, 0, 1);
    CHECK(powersgd_orthogonalise(P, N, R, qr, 64 * R) == DALLE_OK);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            double s = 0;
            for (int k = 0; k < N; k++) s += (double)P[k * R + i] * P[k * R + j];
            I[i * R + j] = (float)s, ref[i * R + j] = i == j;
        }
    CHECK_CLOSE("P^T P == I after the QR", I, ref, R * R, 1e-5, 0);
}

static void test_fixed_q(void) {
    powersgd a, b, c;
    CHECK(powersgd_init(&a, 2, NFLAT, MATS, 2, 11) == DALLE_OK);
    CHECK(powersgd_init(&b, 2, NFLAT, MATS, 2, 11) == DALLE_OK);
    CHECK(powersgd_init(&c, 2, NFLAT, MATS, 2, 12) == DALLE_OK);
    CHECK(!memcmp(a.q0, b.q0, sizeof(float) * (size_t)a.n_q));
    CHECK(memcmp(a.q0, c.q0, sizeof(float) * (size_t)a.n_q) != 0);
    // Q stays fixed: a step leaves it as it was
    float g[NFLAT] = {1, 2, 3};
    CHECK(powersgd_reduce(&a, NULL, g) == DALLE_OK && !memcmp(a.q0, b.q0, sizeof(float) * (size_t)a.n_q));
    powersgd_free(&c);
    const int64_t bad[1][3] = {{100, 5, 5}}; // outside the gradient
    CHECK(powersgd_init(&c, 1, NFLAT, bad, 1, 1) == DALLE_ERR);
    const int64_t overlap[2][3] = {{0, 4, 4}, {10, 2, 2}};
    CHECK(powersgd_init(&c, 1, NFLAT, overlap, 2, 1) == DALLE_ERR);
    powersgd_free(&a);
    powersgd_free(&b);
}

int main(void) {
    RUN(test_low_rank_exact);
    RUN(test_error_feedback);
    RUN(test_orthogonal);
    RUN(test_fixed_q);
    return test_summary();
}
