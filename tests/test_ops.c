// test_ops.c: the CPU backend (src/backend/cpu/) against the contract of
// src/backend/ops.h. Three kinds of check:
//  1. every op against a naive reference written here in plain C (double
//     sums), on odd shapes, alpha/beta, the conv with its own im2col chunks
//     and with forced small ones (several chunks, a short last one);
//  2. every backward against central differences of the linear functional
//     L = sum(r * out) (r random, L in double), starting from gradients that
//     already hold something, since backward ops accumulate;
//  3. the one-hot conv against a k = 1 conv of the explicit one-hot tensor.
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/ops.h"
#include "core/half.h"
#include "test.h"
#include "testfill.h"

static float *falloc(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) abort();
    return p;
}
static float *frand(int64_t n, uint64_t seed, float lo, float hi) {
    float *p = falloc(n);
    fill_uniform(p, n, seed, lo, hi);
    return p;
}
static float *fcopy(const float *x, int64_t n) {
    float *p = falloc(n);
    memcpy(p, x, sizeof(float) * (size_t)n);
    return p;
}

// ---------------------------------------------------------------- references

// out (B, Co, H, W) = alpha * (conv(in, w) + b) + beta * out, the 7-loop way.
static void ref_conv_forward(float *out, const float *in, const float *w, const float *b, int B,
                             int Ci, int Co, int H, int W, int k, float alpha, float beta) {
    const int p = (k - 1) / 2;
    for (int bi = 0; bi < B; bi++)
        for (int co = 0; co < Co; co++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double s = b ? b[co] : 0;
                    for (int ci = 0; ci < Ci; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int sy = y + ky - p, sx = x + kx - p;
                                if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue;
                                s += (double)w[((co * Ci + ci) * k + ky) * k + kx] *
                                     in[((bi * Ci + ci) * H + sy) * W + sx];
                            }
                    float *o = &out[((bi * Co + co) * H + y) * W + x];
                    *o = (float)(alpha * s + (beta != 0 ? (double)beta * *o : 0));
                }
}

// din += alpha * dconv/din . dout, dw += ..., db += ... (each may be NULL).
static void ref_conv_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                              const float *w, int B, int Ci, int Co, int H, int W, int k,
                              float alpha) {
    const int p = (k - 1) / 2;
    const int64_t nin = (int64_t)B * Ci * H * W, nw = (int64_t)Co * Ci * k * k;
    double *gi = calloc((size_t)nin, sizeof(double)), *gw = calloc((size_t)nw, sizeof(double));
    double *gb = calloc((size_t)Co, sizeof(double));
    for (int bi = 0; bi < B; bi++)
        for (int co = 0; co < Co; co++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double g = dout[((bi * Co + co) * H + y) * W + x];
                    gb[co] += g;
                    for (int ci = 0; ci < Ci; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int sy = y + ky - p, sx = x + kx - p;
                                if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue;
                                int64_t iw = ((co * Ci + ci) * k + ky) * k + kx;
                                int64_t ii = ((bi * Ci + ci) * H + sy) * W + sx;
                                gi[ii] += g * w[iw];
                                gw[iw] += g * in[ii];
                            }
                }
    if (din) for (int64_t i = 0; i < nin; i++) din[i] += (float)(alpha * gi[i]);
    if (dw) for (int64_t i = 0; i < nw; i++) dw[i] += (float)(alpha * gw[i]);
    if (db) for (int i = 0; i < Co; i++) db[i] += (float)(alpha * gb[i]);
    free(gi);
    free(gw);
    free(gb);
}

// ---------------------------------------------------------------- conv vs reference

// The scratch that conv2d_*_rows need (cpu.h).
static int64_t scratch_for_rows(int Ci, int W, int k, int rows) {
    return k == 1 ? 0 : (int64_t)Ci * k * k * rows * W;
}

typedef struct {
    int B, Ci, Co, H, W, k;
    float alpha, beta;
    int bias;
} ConvCase;

// {B, Ci, Co, H, W, k, alpha, beta, bias?}: k = 1, 3, 5, 7, odd sizes, kernels
// wider than the image, beta = 0 over NaN, beta != 0 with and without bias.
static const ConvCase conv_cases[] = {
    {1, 1, 1, 1, 1, 1, 1.0f, 0.0f, 1},    {2, 3, 5, 5, 7, 1, 1.0f, 0.0f, 1},
    {2, 3, 5, 5, 7, 3, 1.0f, 0.0f, 1},    {2, 3, 5, 5, 7, 7, 1.0f, 0.0f, 1},
    {2, 3, 5, 5, 7, 3, 0.7f, 0.0f, 0},    {2, 3, 5, 5, 7, 3, -1.3f, 0.6f, 1},
    {2, 3, 5, 5, 7, 1, 0.5f, -2.0f, 1},   {1, 4, 6, 9, 4, 3, 2.0f, 1.0f, 0},
    {1, 6, 2, 3, 2, 7, 1.0f, 0.25f, 1},   {2, 8, 3, 6, 11, 5, 1.5f, 0.0f, 0},
};

// Runs conv2d_forward and conv2d_forward_rows (rows 1, 2 and 3: many
// chunks, a short last one) against the reference.
static void test_conv_forward_reference(void) {
    for (size_t t = 0; t < sizeof conv_cases / sizeof *conv_cases; t++) {
        const ConvCase c = conv_cases[t];
        const int64_t nin = (int64_t)c.B * c.Ci * c.H * c.W, nout = (int64_t)c.B * c.Co * c.H * c.W;
        const int64_t nw = (int64_t)c.Co * c.Ci * c.k * c.k;
        float *in = frand(nin, 10 + t, -1, 1);                         // (B, Ci, H, W)
        float *w = frand(nw, 20 + t, -0.5f, 0.5f);                     // (Co, Ci, k, k)
        float *b = c.bias ? frand(c.Co, 30 + t, -0.3f, 0.3f) : NULL;   // (Co,)
        float *out0 = frand(nout, 40 + t, -1, 1);                      // (B, Co, H, W)
        if (c.beta == 0) for (int64_t i = 0; i < nout; i++) out0[i] = NAN;
        float *ref = fcopy(out0, nout);
        ref_conv_forward(ref, in, w, b, c.B, c.Ci, c.Co, c.H, c.W, c.k, c.alpha, c.beta);
        for (int rows = 0; rows <= 3; rows++) { // 0: the public entry point
            if (rows > c.H || (rows > 0 && c.k == 1)) continue;
            int64_t ns = rows ? scratch_for_rows(c.Ci, c.W, c.k, rows)
                              : conv2d_scratch_floats(c.Ci, c.Co, c.H, c.W, c.k);
            float *scratch = ns ? falloc(ns) : NULL;
            float *out = fcopy(out0, nout);
            if (rows)
                conv2d_forward_rows(out, in, w, b, c.B, c.Ci, c.Co, c.H, c.W, c.k, c.alpha, c.beta,
                                    rows, scratch);
            else
                conv2d_forward(out, in, w, b, c.B, c.Ci, c.Co, c.H, c.W, c.k, c.alpha, c.beta,
                               scratch);
            char what[96];
            snprintf(what, sizeof what, "B%d Ci%d Co%d %dx%d k%d a%g b%g%s rows%d", c.B, c.Ci, c.Co,
                     c.H, c.W, c.k, c.alpha, c.beta, c.bias ? "" : " nobias", rows);
            CHECK_CLOSE(what, out, ref, nout, 1e-5, 1e-5);
            free(out);
            free(scratch);
        }
        free(in);
        free(w);
        free(b);
        free(out0);
        free(ref);
    }
}

// The backward of every case, accumulating into random gradients, with each
// of din, dw, db left out in turn.
static void test_conv_backward_reference(void) {
    for (size_t t = 0; t < sizeof conv_cases / sizeof *conv_cases; t++) {
        const ConvCase c = conv_cases[t];
        const int64_t nin = (int64_t)c.B * c.Ci * c.H * c.W, nout = (int64_t)c.B * c.Co * c.H * c.W;
        const int64_t nw = (int64_t)c.Co * c.Ci * c.k * c.k;
        float *in = frand(nin, 50 + t, -1, 1);        // (B, Ci, H, W)
        float *w = frand(nw, 60 + t, -0.5f, 0.5f);    // (Co, Ci, k, k)
        float *dout = frand(nout, 70 + t, -1, 1);     // (B, Co, H, W)
        float *din0 = frand(nin, 80 + t, -1, 1), *dw0 = frand(nw, 90 + t, -1, 1);
        float *db0 = frand(c.Co, 100 + t, -1, 1);
        float *rin = fcopy(din0, nin), *rw = fcopy(dw0, nw), *rb = fcopy(db0, c.Co);
        ref_conv_backward(rin, rw, rb, dout, in, w, c.B, c.Ci, c.Co, c.H, c.W, c.k, c.alpha);
        for (int rows = 0; rows <= 3; rows++) {
            if (rows > c.H || (rows > 0 && c.k == 1)) continue;
            // which gradient is NULL (3: none); all four for two of the chunkings
            for (int skip = rows % 2 ? 3 : 0; skip < 4; skip++) {
                int64_t ns = rows ? scratch_for_rows(c.Ci, c.W, c.k, rows)
                                  : conv2d_scratch_floats(c.Ci, c.Co, c.H, c.W, c.k);
                float *scratch = ns ? falloc(ns) : NULL;
                float *din = fcopy(din0, nin), *dw = fcopy(dw0, nw), *db = fcopy(db0, c.Co);
                float *pi = skip == 0 ? NULL : din, *pw = skip == 1 ? NULL : dw;
                float *pb = skip == 2 ? NULL : db;
                if (rows)
                    conv2d_backward_rows(pi, pw, pb, dout, in, w, c.B, c.Ci, c.Co, c.H, c.W, c.k,
                                         c.alpha, rows, scratch);
                else
                    conv2d_backward(pi, pw, pb, dout, in, w, c.B, c.Ci, c.Co, c.H, c.W, c.k,
                                    c.alpha, scratch);
                char what[96];
                snprintf(what, sizeof what, "B%d Ci%d Co%d %dx%d k%d rows%d skip%d", c.B, c.Ci,
                         c.Co, c.H, c.W, c.k, rows, skip);
                char wi[128], ww[128], wb[128];
                snprintf(wi, sizeof wi, "din %s", what);
                snprintf(ww, sizeof ww, "dw %s", what);
                snprintf(wb, sizeof wb, "db %s", what);
                CHECK_CLOSE(wi, din, skip == 0 ? din0 : rin, nin, 1e-5, 1e-5);
                CHECK_CLOSE(ww, dw, skip == 1 ? dw0 : rw, nw, 1e-5, 1e-5);
                CHECK_CLOSE(wb, db, skip == 2 ? db0 : rb, c.Co, 1e-5, 1e-5);
                free(din);
                free(dw);
                free(db);
                free(scratch);
            }
        }
        free(in);
        free(w);
        free(dout);
        free(din0);
        free(dw0);
        free(db0);
        free(rin);
        free(rw);
        free(rb);
    }
}

// The Winograd 3x3 convolution, both tile sizes, against the direct
// reference, with odd sizes, alpha/beta, thin layers (fused: blocks of
// tiles per thread, more blocks than threads and fewer) and a layer wide
// enough for chunks, whose rows of tiles split into two or more. The error
// is held to 2e-5 of the output's largest value (F(4x4) rounds differently
// from the direct sum).
static void test_conv_winograd(void) {
    const struct { int B, Ci, Co, H, W; float alpha, beta; } cs[] = {
        {2, 3, 5, 5, 7, 0.7f, 0.0f}, {1, 4, 6, 1, 1, 1.0f, 1.0f}, {1, 8, 4, 6, 3, 0.25f, 0.5f}, {1, 48, 56, 200, 64, 1.0f, 0.0f},
        {40, 3, 4, 10, 9, 1.0f, 1.0f}, // blocks span images
        {8, 64, 48, 6, 7, 1.0f, 1.0f},  // a chunk spans images
    };
    for (int m = 2; m <= 4; m += 2)
        for (size_t t = 0; t < sizeof cs / sizeof *cs; t++) {
            const int B = cs[t].B, Ci = cs[t].Ci, Co = cs[t].Co, H = cs[t].H, W = cs[t].W;
            const int64_t nin = (int64_t)B * Ci * H * W, nout = (int64_t)B * Co * H * W, nw = (int64_t)Co * Ci * 9;
            const int TH = B * ((H + m - 1) / m), rows = winograd_chunk_tile_rows(Ci, Co, H, W, m);
            float *in = frand(nin, 400 + t, -1, 1), *w = frand(nw, 410 + t, -0.3f, 0.3f), *b = frand(Co, 420 + t, -1, 1);
            float *out = frand(nout, 430 + t, -1, 1), *ref = fcopy(out, nout);
            if (cs[t].beta == 0.0f)
                for (int64_t i = 0; i < nout; i++) out[i] = NAN; // beta = 0 must not read out
            float *scratch = falloc(winograd_scratch_floats(Ci, Co, H, W, m));
            conv3x3_winograd_forward(out, in, w, b, B, Ci, Co, H, W, cs[t].alpha, cs[t].beta, m, scratch);
            ref_conv_forward(ref, in, w, b, B, Ci, Co, H, W, 3, cs[t].alpha, cs[t].beta);
            float maxref = 0;
            for (int64_t i = 0; i < nout; i++) maxref = fmaxf(maxref, fabsf(ref[i]));
            char what[96];
            if (Ci + Co <= WG_FUSED_MAX) snprintf(what, sizeof what, "F(%dx%d,3x3) %dx%d %d->%d, fused", m, m, H, W, Ci, Co);
            else snprintf(what, sizeof what, "F(%dx%d,3x3) %dx%d %d->%d, %d chunk(s)", m, m, H, W, Ci, Co, (TH + rows - 1) / rows);
            CHECK_CLOSE(what, out, ref, nout, 2e-5 * maxref, 0);
            // the weight gradient, added to what dw held
            float *dout = frand(nout, 440 + t, -1, 1), *dw = frand(nw, 450 + t, -1, 1), *rw = fcopy(dw, nw);
            float *rin = calloc((size_t)nin, sizeof(float)), *rb = calloc((size_t)Co, sizeof(float));
            conv3x3_winograd_backward_filter(dw, dout, in, B, Ci, Co, H, W, 0.5f, m, scratch);
            ref_conv_backward(rin, rw, rb, dout, in, w, B, Ci, Co, H, W, 3, 0.5f);
            float maxw = 0;
            for (int64_t i = 0; i < nw; i++) maxw = fmaxf(maxw, fabsf(rw[i]));
            snprintf(what, sizeof what, "F(%dx%d,3x3) dW %dx%d %d->%d", m, m, H, W, Ci, Co);
            CHECK_CLOSE(what, dw, rw, nw, 2e-5 * maxw, 0);
            free(dout), free(dw), free(rw), free(rin), free(rb);
            free(in), free(w), free(b), free(out), free(ref), free(scratch);
        }
    const int th = (200 + 3) / 4, wr = winograd_chunk_tile_rows(48, 56, 200, 64, 4);
    CHECK((th + wr - 1) / wr >= 2 && conv3x3_winograd_m(1, 200, 64) == 4 && 48 + 56 > WG_FUSED_MAX);
    CHECK(3 + 4 <= WG_FUSED_MAX && 32 <= WG_FUSED_MAX); // the others run fused, but:
    CHECK(64 + 48 > WG_FUSED_MAX && winograd_chunk_tile_rows(64, 48, 6, 7, 2) > 3); // one chunk holds several images
    CHECK(conv3x3_winograd_m(1, 32, 32) == 2 && conv3x3_winograd_m(1, 6, 3) == 0);
    CHECK(conv3x3_winograd_m(8, 16, 16) == 4 && conv3x3_winograd_m(4, 8, 8) == 2); // batches of small images
}

// A fused convolution's scratch is sized for the processors, not for the
// sizing thread's thread count (a server's worker threads may see another):
// sized under 1 thread, run under 8 (ASan would see an overflow), it still
// matches the reference.
static void test_conv_winograd_threads(void) {
    const int B = 8, Ci = 16, Co = 16, H = 16, W = 16, m = 4;
    const int64_t nin = (int64_t)B * Ci * H * W, nw = (int64_t)Co * Ci * 9;
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    float *scratch = falloc(winograd_scratch_floats(Ci, Co, H, W, m));
    omp_set_num_threads(8);
    float *in = frand(nin, 460, -1, 1), *w = frand(nw, 461, -0.3f, 0.3f), *out = falloc(nin), *ref = falloc(nin);
    float *dout = frand(nin, 462, -1, 1), *dw = calloc((size_t)nw, sizeof(float)), *rw = calloc((size_t)nw, sizeof(float));
    float *rin = calloc((size_t)nin, sizeof(float)), *rb = calloc((size_t)Co, sizeof(float)); // all summed into
    conv3x3_winograd_forward(out, in, w, NULL, B, Ci, Co, H, W, 1.0f, 0.0f, m, scratch);
    conv3x3_winograd_backward_filter(dw, dout, in, B, Ci, Co, H, W, 1.0f, m, scratch);
    omp_set_num_threads(saved);
    ref_conv_forward(ref, in, w, NULL, B, Ci, Co, H, W, 3, 1.0f, 0.0f);
    ref_conv_backward(rin, rw, rb, dout, in, w, B, Ci, Co, H, W, 3, 1.0f);
    CHECK_CLOSE("fused, sized under 1 thread, run under 8", out, ref, nin, 1e-4, 0);
    CHECK_CLOSE("fused dW, sized under 1 thread, run under 8", dw, rw, nw, 1e-3, 0);
    free(scratch), free(in), free(w), free(out), free(ref), free(dout), free(dw), free(rw), free(rin), free(rb);
}

// A shape for which the public entry points themselves split the image into
// three im2col chunks, the last one shorter.
static void test_conv_public_chunks(void) {
    const int B = 1, Ci = 16, Co = 2, W = 64, k = 7;
    const int most = (int)(CPU_CONV_CHUNK_FLOATS / (Ci * k * k * W)); // rows that fit
    const int H = 2 * most + 1;
    const int rows = conv2d_chunk_rows(Ci, H, W, k);
    printf("    chunk rows %d of H %d\n", rows, H);
    CHECK((H + rows - 1) / rows == 3 && H % rows != 0);
    CHECK(conv2d_scratch_floats(Ci, Co, H, W, k) == scratch_for_rows(Ci, W, k, rows));
    CHECK((int64_t)Ci * k * k * W * rows <= CPU_CONV_CHUNK_FLOATS);
    const int64_t nin = (int64_t)B * Ci * H * W, nout = (int64_t)B * Co * H * W;
    const int64_t nw = (int64_t)Co * Ci * k * k;
    float *in = frand(nin, 200, -1, 1), *w = frand(nw, 201, -0.1f, 0.1f);
    float *b = frand(Co, 202, -1, 1), *dout = frand(nout, 203, -1, 1);
    float *scratch = falloc(conv2d_scratch_floats(Ci, Co, H, W, k));
    float *out = falloc(nout), *ref = falloc(nout);
    conv2d_forward(out, in, w, b, B, Ci, Co, H, W, k, 1.0f, 0.0f, scratch);
    ref_conv_forward(ref, in, w, b, B, Ci, Co, H, W, k, 1.0f, 0.0f);
    CHECK_CLOSE("forward", out, ref, nout, 1e-5, 1e-5);
    float *din = calloc((size_t)nin, sizeof(float)), *dw = calloc((size_t)nw, sizeof(float));
    float *db = calloc((size_t)Co, sizeof(float));
    float *rin = calloc((size_t)nin, sizeof(float)), *rw = calloc((size_t)nw, sizeof(float));
    float *rb = calloc((size_t)Co, sizeof(float));
    conv2d_backward(din, dw, db, dout, in, w, B, Ci, Co, H, W, k, 0.5f, scratch);
    ref_conv_backward(rin, rw, rb, dout, in, w, B, Ci, Co, H, W, k, 0.5f);
    CHECK_CLOSE("din", din, rin, nin, 1e-5, 1e-5);
    CHECK_CLOSE("dw", dw, rw, nw, 1e-4, 1e-5); // sums of H*W products
    CHECK_CLOSE("db", db, rb, Co, 1e-4, 1e-5);
    // deterministic: a second run gives the same bits
    float *out2 = falloc(nout), *din2 = calloc((size_t)nin, sizeof(float));
    float *dw2 = calloc((size_t)nw, sizeof(float)), *db2 = calloc((size_t)Co, sizeof(float));
    conv2d_forward(out2, in, w, b, B, Ci, Co, H, W, k, 1.0f, 0.0f, scratch);
    conv2d_backward(din2, dw2, db2, dout, in, w, B, Ci, Co, H, W, k, 0.5f, scratch);
    CHECK(memcmp(out, out2, sizeof(float) * nout) == 0);
    CHECK(memcmp(din, din2, sizeof(float) * nin) == 0);
    CHECK(memcmp(dw, dw2, sizeof(float) * nw) == 0);
    CHECK(memcmp(db, db2, sizeof(float) * Co) == 0);
    free(out2), free(din2), free(dw2), free(db2);
    free(in), free(w), free(b), free(dout), free(scratch), free(out), free(ref);
    free(din), free(dw), free(db), free(rin), free(rw), free(rb);
}

// ---------------------------------------------------------------- finite differences
// Each op below is linear in what is perturbed (or piecewise linear with the
// kinks farther than the step), so a central difference is exact up to float
// rounding of the op's outputs; L is summed in double. The tolerance, 1e-3
// absolute on gradients of order 1, leaves room for that rounding divided by
// the step, and is far below any wrong term (of order 0.1 or more).
#define FD_TOL 1e-3

// The functional: L = sum(r * out), in double.
static double dotd(const float *r, const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)r[i] * x[i];
    return s;
}

typedef void (*ForwardFn)(void *ctx, float *out);

// fd[i] = dL/dp[i] by central differences with step h, with the op's output
// (nout floats) produced by fwd(ctx, out) from whatever p holds.
static void central_diff(float *fd, float *p, int64_t np, float h, const float *r, int64_t nout,
                         ForwardFn fwd, void *ctx) {
    float *out = falloc(nout);
    for (int64_t i = 0; i < np; i++) {
        const float p0 = p[i], hi = p0 + h, lo = p0 - h;
        p[i] = hi;
        fwd(ctx, out);
        double lp = dotd(r, out, nout);
        p[i] = lo;
        fwd(ctx, out);
        double lm = dotd(r, out, nout);
        p[i] = p0;
        fd[i] = (float)((lp - lm) / ((double)hi - lo));
    }
    free(out);
}

typedef struct {
    float *in, *w, *b, *scratch;
    int B, Ci, Co, H, W, k;
    float alpha;
} ConvCtx;

static void conv_fwd(void *ctx, float *out) {
    ConvCtx *c = ctx;
    conv2d_forward(out, c->in, c->w, c->b, c->B, c->Ci, c->Co, c->H, c->W, c->k, c->alpha, 0.0f,
                   c->scratch);
}

static void test_conv_backward_fd(void) {
    const int ks[] = {1, 3, 5};
    for (int t = 0; t < 3; t++) {
        ConvCtx c = {.B = 2, .Ci = 2, .Co = 3, .H = 4, .W = 5, .k = ks[t], .alpha = 0.8f};
        const int64_t nin = (int64_t)c.B * c.Ci * c.H * c.W, nout = (int64_t)c.B * c.Co * c.H * c.W;
        const int64_t nw = (int64_t)c.Co * c.Ci * c.k * c.k;
        c.in = frand(nin, 300 + t, -1, 1);
        c.w = frand(nw, 310 + t, -1, 1);
        c.b = frand(c.Co, 320 + t, -1, 1);
        int64_t ns = conv2d_scratch_floats(c.Ci, c.Co, c.H, c.W, c.k);
        c.scratch = ns ? falloc(ns) : NULL;
        float *r = frand(nout, 330 + t, -1, 1); // dL/dout
        // gradients start non-zero: the backward must add to them
        float *din = frand(nin, 340 + t, -1, 1), *dw = frand(nw, 350 + t, -1, 1);
        float *db = frand(c.Co, 360 + t, -1, 1);
        float *ein = fcopy(din, nin), *ew = fcopy(dw, nw), *eb = fcopy(db, c.Co);
        float *fin = falloc(nin), *fw = falloc(nw), *fb = falloc(c.Co);
        central_diff(fin, c.in, nin, 0.5f, r, nout, conv_fwd, &c);
        central_diff(fw, c.w, nw, 0.5f, r, nout, conv_fwd, &c);
        central_diff(fb, c.b, c.Co, 0.5f, r, nout, conv_fwd, &c);
        for (int64_t i = 0; i < nin; i++) ein[i] += fin[i];
        for (int64_t i = 0; i < nw; i++) ew[i] += fw[i];
        for (int i = 0; i < c.Co; i++) eb[i] += fb[i];
        conv2d_backward(din, dw, db, r, c.in, c.w, c.B, c.Ci, c.Co, c.H, c.W, c.k, c.alpha,
                        c.scratch);
        char what[64];
        snprintf(what, sizeof what, "fd din k%d", c.k);
        CHECK_CLOSE(what, din, ein, nin, FD_TOL, FD_TOL);
        snprintf(what, sizeof what, "fd dw k%d", c.k);
        CHECK_CLOSE(what, dw, ew, nw, FD_TOL, FD_TOL);
        snprintf(what, sizeof what, "fd db k%d", c.k);
        CHECK_CLOSE(what, db, eb, c.Co, FD_TOL, FD_TOL);
        free(c.in), free(c.w), free(c.b), free(c.scratch), free(r);
        free(din), free(dw), free(db), free(ein), free(ew), free(eb), free(fin), free(fw), free(fb);
    }
}

// Distinct values, none within 0.05 of zero or of each other:
// (perm(i) - n/2 + 0.5) * 0.1 for a fixed shuffle of 0..n-1.
static float *distinct_values(int64_t n, uint64_t seed) {
    float *x = falloc(n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((i - n / 2 + 0.5) * 0.1);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(fill_u(seed, (uint64_t)i) * (double)(i + 1));
        float tmp = x[i];
        x[i] = x[j];
        x[j] = tmp;
    }
    return x;
}

typedef struct {
    float *in;
    int64_t n;
    int B, C, H, W;
} PlainCtx;

static void relu_fwd(void *ctx, float *out) {
    PlainCtx *c = ctx;
    relu_forward(out, c->in, c->n);
}
static void maxpool_fwd(void *ctx, float *out) {
    PlainCtx *c = ctx;
    maxpool2_forward(out, c->in, c->B, c->C, c->H, c->W);
}
static void upsample_fwd(void *ctx, float *out) {
    PlainCtx *c = ctx;
    upsample2_forward(out, c->in, c->B, c->C, c->H, c->W);
}

// FD check of din for an op from PlainCtx.in (nin) to out (nout); `bwd`
// runs the op's backward on (din, dout = r).
static void fd_plain(const char *what, PlainCtx *c, int64_t nin, int64_t nout, ForwardFn fwd,
                     void (*bwd)(PlainCtx *c, float *din, const float *dout), uint64_t seed) {
    float *r = frand(nout, seed, -1, 1);
    float *din = frand(nin, seed + 1, -1, 1), *expect = fcopy(din, nin), *fd = falloc(nin);
    central_diff(fd, c->in, nin, 0.01f, r, nout, fwd, c);
    for (int64_t i = 0; i < nin; i++) expect[i] += fd[i];
    bwd(c, din, r);
    CHECK_CLOSE(what, din, expect, nin, FD_TOL, FD_TOL);
    free(r), free(din), free(expect), free(fd);
}
static void relu_bwd(PlainCtx *c, float *din, const float *dout) {
    relu_backward(din, dout, c->in, c->n);
}
static void maxpool_bwd(PlainCtx *c, float *din, const float *dout) {
    maxpool2_backward(din, dout, c->in, c->B, c->C, c->H, c->W);
}
static void upsample_bwd(PlainCtx *c, float *din, const float *dout) {
    upsample2_backward(din, dout, c->B, c->C, c->H, c->W);
}

static void test_plain_backward_fd(void) {
    PlainCtx c = {.B = 2, .C = 3, .H = 4, .W = 6};
    c.n = (int64_t)c.B * c.C * c.H * c.W;
    c.in = distinct_values(c.n, 400);
    fd_plain("fd relu", &c, c.n, c.n, relu_fwd, relu_bwd, 410);
    fd_plain("fd maxpool2", &c, c.n, c.n / 4, maxpool_fwd, maxpool_bwd, 420);
    fd_plain("fd upsample2", &c, c.n, c.n * 4, upsample_fwd, upsample_bwd, 430);
    free(c.in);
}

// ---------------------------------------------------------------- the other ops

static void test_relu(void) {
    const int64_t n = 100003; // long enough for the threaded path, odd
    float *in = frand(n, 500, -1, 1), *dout = frand(n, 501, -1, 1), *din0 = frand(n, 502, -1, 1);
    in[0] = 0.0f;
    in[1] = -0.0f;
    float *ref = falloc(n), *rdin = fcopy(din0, n);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = in[i] > 0 ? in[i] : 0.0f;
        if (in[i] > 0) rdin[i] += dout[i];
    }
    float *out = falloc(n);
    relu_forward(out, in, n);
    CHECK_CLOSE("relu forward", out, ref, n, 0, 0);
    float *din = fcopy(din0, n);
    relu_backward(din, dout, in, n);
    CHECK_CLOSE("relu backward (input)", din, rdin, n, 0, 0);
    memcpy(din, din0, sizeof(float) * n);
    relu_backward(din, dout, out, n); // the output has the input's sign where it matters
    CHECK_CLOSE("relu backward (output)", din, rdin, n, 0, 0);
    relu_forward(in, in, n);
    CHECK_CLOSE("relu forward in place", in, ref, n, 0, 0);
    free(in), free(dout), free(din0), free(ref), free(rdin), free(out), free(din);
}

static void test_maxpool2(void) {
    const int B = 2, C = 3, H = 6, W = 10, Ho = H / 2, Wo = W / 2;
    const int64_t nin = (int64_t)B * C * H * W, nout = (int64_t)B * C * Ho * Wo;
    // values on a coarse grid so that many windows hold ties
    float *in = falloc(nin);
    for (int64_t i = 0; i < nin; i++) in[i] = (float)(int)(fill_u(600, (uint64_t)i) * 4) - 1;
    float *dout = frand(nout, 601, -1, 1), *din0 = frand(nin, 602, -1, 1);
    float *ref = falloc(nout), *rdin = fcopy(din0, nin);
    for (int pl = 0; pl < B * C; pl++)
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                int64_t best = -1;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int64_t at = ((int64_t)pl * H + 2 * i + dy) * W + 2 * j + dx;
                        if (best < 0 || in[at] > in[best]) best = at;
                    }
                int64_t o = ((int64_t)pl * Ho + i) * Wo + j;
                ref[o] = in[best];
                rdin[best] += dout[o];
            }
    float *out = falloc(nout), *din = fcopy(din0, nin);
    maxpool2_forward(out, in, B, C, H, W);
    CHECK_CLOSE("maxpool2 forward", out, ref, nout, 0, 0);
    maxpool2_backward(din, dout, in, B, C, H, W);
    CHECK_CLOSE("maxpool2 backward (ties: first max)", din, rdin, nin, 0, 0);
    free(in), free(dout), free(din0), free(ref), free(rdin), free(out), free(din);
}

static void test_upsample2(void) {
    const int B = 2, C = 3, H = 5, W = 7;
    const int64_t nin = (int64_t)B * C * H * W, nout = 4 * nin;
    float *in = frand(nin, 700, -1, 1), *dout = frand(nout, 701, -1, 1);
    float *din0 = frand(nin, 702, -1, 1);
    float *ref = falloc(nout), *rdin = fcopy(din0, nin);
    for (int pl = 0; pl < B * C; pl++)
        for (int y = 0; y < 2 * H; y++)
            for (int x = 0; x < 2 * W; x++) {
                int64_t o = ((int64_t)pl * 2 * H + y) * 2 * W + x;
                int64_t i = ((int64_t)pl * H + y / 2) * W + x / 2;
                ref[o] = in[i];
                rdin[i] += dout[o];
            }
    float *out = falloc(nout), *din = fcopy(din0, nin);
    upsample2_forward(out, in, B, C, H, W);
    CHECK_CLOSE("upsample2 forward", out, ref, nout, 0, 0);
    upsample2_backward(din, dout, B, C, H, W);
    CHECK_CLOSE("upsample2 backward", din, rdin, nin, 1e-6, 1e-6);
    free(in), free(dout), free(din0), free(ref), free(rdin), free(out), free(din);
}

static void test_axpy(void) {
    const int64_t n = 70001;
    float *x = frand(n, 800, -1, 1), *y = frand(n, 801, -1, 1), *ref = fcopy(y, n);
    for (int64_t i = 0; i < n; i++) ref[i] += -0.37f * x[i];
    axpy(y, -0.37f, x, n);
    CHECK_CLOSE("axpy", y, ref, n, 1e-7, 1e-6);
    free(x), free(y), free(ref);
}

// The one-hot conv equals a k = 1 conv of the explicit one-hot tensor.
static void test_onehot_conv(void) {
    const int B = 2, V = 37, Co = 5, H = 3, W = 7, HW = H * W;
    int32_t *codes = malloc(sizeof(int32_t) * B * HW);
    for (int i = 0; i < B * HW; i++) codes[i] = (int32_t)(fill_u(900, (uint64_t)i) * V);
    codes[0] = 0;
    codes[1] = V - 1;
    float *w = frand((int64_t)Co * V, 901, -1, 1), *b = frand(Co, 902, -1, 1);
    float *onehot = calloc((size_t)B * V * HW, sizeof(float)); // (B, V, H, W)
    for (int bi = 0; bi < B; bi++)
        for (int i = 0; i < HW; i++) onehot[((int64_t)bi * V + codes[bi * HW + i]) * HW + i] = 1;
    const int64_t nout = (int64_t)B * Co * HW;
    float *ref = falloc(nout), *out = falloc(nout);
    conv2d_forward(ref, onehot, w, b, B, V, Co, H, W, 1, 1.0f, 0.0f, NULL);
    onehot_conv_forward(out, codes, w, b, B, V, Co, HW);
    CHECK_CLOSE("onehot vs conv k=1", out, ref, nout, 1e-6, 1e-6);
    free(codes), free(w), free(b), free(onehot), free(ref), free(out);
}

// ---------------------------------------------------------------- conv2d16

// x (n) rounded to bf16 (a copy).
static float *bf16_copy(const float *x, int64_t n) {
    float *r = fcopy(x, n);
    half_round(r, n, HALF_BF16, 0);
    return r;
}

// The largest |x| of x (n).
static double amax_f(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

// The fraction of got (n) off ref by more than 1e-5 of ref's largest: a sum
// order may flip a rounding now and then, a missing rounding moves most.
static double frac_off(const float *got, const float *ref, int64_t n) {
    const double tol = 1e-5 * amax_f(ref, n);
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) off += fabs((double)got[i] - ref[i]) > tol;
    return n ? (double)off / (double)n : 0;
}

// Elements of x (n) that are not bf16 values.
static int64_t not_bf16(const float *x, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += half_decode(half_encode(x[i], HALF_BF16), HALF_BF16) != x[i];
    return bad;
}

// conv2d16_forward/backward (ops.h) against the reference on bf16-rounded
// operands, with the results rounded to bf16 and the rest in fp32: every case
// of conv_cases. The fp32 sums of the CPU and the double sums of the reference
// may round to neighbouring bf16 values: each element within 2^-7 of the
// reference's (relative, and of the largest for sums that cancel), at most 5%
// of them off by more than fp32's rounding (measured: none). The
// rounding points themselves are checked exactly: with alpha 1, beta 0, no
// bias, and gradients from zero, every result is a bf16 value; db is fp32.
static void test_conv2d16(void) {
    for (size_t t = 0; t < sizeof conv_cases / sizeof *conv_cases; t++) {
        const ConvCase c = conv_cases[t];
        const int64_t nin = (int64_t)c.B * c.Ci * c.H * c.W, nout = (int64_t)c.B * c.Co * c.H * c.W;
        const int64_t nw = (int64_t)c.Co * c.Ci * c.k * c.k;
        float *in = frand(nin, 110 + t, -1, 1), *w = frand(nw, 120 + t, -0.5f, 0.5f); // (B, Ci, H, W), (Co, Ci, k, k)
        float *b = c.bias ? frand(c.Co, 130 + t, -0.3f, 0.3f) : NULL;
        float *out0 = frand(nout, 140 + t, -1, 1), *dout = frand(nout, 150 + t, -1, 1); // (B, Co, H, W)
        if (c.beta == 0) for (int64_t i = 0; i < nout; i++) out0[i] = NAN;
        uint16_t *w16 = malloc(sizeof(uint16_t) * (size_t)nw);
        half_from_f32(w16, w, nw, HALF_BF16);
        float *rin = bf16_copy(in, nin), *rw = bf16_copy(w, nw), *rdout = bf16_copy(dout, nout);
        float *scratch = falloc(conv2d16_scratch_floats(c.B, c.Ci, c.Co, c.H, c.W, c.k));
        char what[96];
        snprintf(what, sizeof what, "bf16 B%d Ci%d Co%d %dx%d k%d a%g b%g%s", c.B, c.Ci, c.Co, c.H, c.W, c.k,
                 c.alpha, c.beta, c.bias ? "" : " nobias");

        // forward: r(conv(r(in), r(w))), then alpha (. + b) + beta out0
        float *ref = falloc(nout);
        ref_conv_forward(ref, rin, rw, NULL, c.B, c.Ci, c.Co, c.H, c.W, c.k, 1.0f, 0.0f);
        half_round(ref, nout, HALF_BF16, 0);
        for (int64_t i = 0; i < nout; i++) {
            const float bias = b ? b[(i / ((int64_t)c.H * c.W)) % c.Co] : 0.0f, v = c.alpha * (ref[i] + bias);
            ref[i] = c.beta != 0 ? v + c.beta * out0[i] : v;
        }
        float *out = fcopy(out0, nout);
        conv2d16_forward(out, in, w16, b, c.B, c.Ci, c.Co, c.H, c.W, c.k, c.alpha, c.beta, HALF_BF16, scratch);
        CHECK_CLOSE(what, out, ref, nout, amax_f(ref, nout) / 128, 1.0 / 128);
        CHECK(frac_off(out, ref, nout) <= 0.05);
        conv2d16_forward(out, in, w16, NULL, c.B, c.Ci, c.Co, c.H, c.W, c.k, 1.0f, 0.0f, HALF_BF16, scratch);
        CHECK(not_bf16(out, nout) == 0);

        // backward from zero, alpha 1: din, dw bf16 values; db the fp32 sums of dout
        float *din = falloc(nin), *dw = falloc(nw), *db = falloc(c.Co);
        float *gin = falloc(nin), *gw = falloc(nw), *gb = falloc(c.Co);
        memset(din, 0, sizeof(float) * (size_t)nin), memset(dw, 0, sizeof(float) * (size_t)nw);
        memset(db, 0, sizeof(float) * (size_t)c.Co);
        memset(gin, 0, sizeof(float) * (size_t)nin), memset(gw, 0, sizeof(float) * (size_t)nw);
        memset(gb, 0, sizeof(float) * (size_t)c.Co);
        conv2d16_backward(din, dw, db, dout, in, w16, c.B, c.Ci, c.Co, c.H, c.W, c.k, 1.0f, HALF_BF16, scratch);
        CHECK(not_bf16(din, nin) == 0 && not_bf16(dw, nw) == 0);
        ref_conv_backward(gin, gw, NULL, rdout, rin, rw, c.B, c.Ci, c.Co, c.H, c.W, c.k, 1.0f);
        ref_conv_backward(NULL, NULL, gb, dout, in, w, c.B, c.Ci, c.Co, c.H, c.W, c.k, 1.0f);
        half_round(gin, nin, HALF_BF16, 0);
        half_round(gw, nw, HALF_BF16, 0);
        CHECK_CLOSE("  din", din, gin, nin, amax_f(gin, nin) / 128, 1.0 / 128);
        CHECK_CLOSE("  dw", dw, gw, nw, amax_f(gw, nw) / 128, 1.0 / 128);
        CHECK(frac_off(din, gin, nin) <= 0.05 && frac_off(dw, gw, nw) <= 0.05);
        CHECK_CLOSE("  db (fp32)", db, gb, c.Co, 1e-5, 1e-5);

        free(in), free(w), free(b), free(out0), free(dout), free(w16), free(rin), free(rw), free(rdout);
        free(scratch), free(ref), free(out), free(din), free(dw), free(db), free(gin), free(gw), free(gb);
    }
}

int main(void) {
    RUN(test_conv_forward_reference);
    RUN(test_conv_backward_reference);
    RUN(test_conv_winograd);
    RUN(test_conv_winograd_threads);
    RUN(test_conv_public_chunks);
    RUN(test_conv_backward_fd);
    RUN(test_plain_backward_fd);
    RUN(test_relu);
    RUN(test_maxpool2);
    RUN(test_upsample2);
    RUN(test_axpy);
    RUN(test_onehot_conv);
    RUN(test_conv2d16);
    return test_summary();
}
