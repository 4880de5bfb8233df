// conv.c: the CPU convolutions of ops.h (conv2d forward/backward and the
// one-hot 1x1 conv of the dVAE decoder's input), as OpenBLAS matrix products.
//
// Per image, with X the input (Ci, H*W) and Wm the weights (Co, Ci*k*k):
//  - k = 1 is a product as it stands: out (Co, HW) = Wm x X, no copy;
//  - k > 1 unrolls X into cols (Ci*k*k, HW) (im2col) and takes Wm x cols. To
//    keep the scratch bounded, cols is built for a chunk of output rows at a
//    time, and each product writes its block of `out` in place (ldc = H*W).
// The backward reuses the same chunks: dW += dout x cols^T, then the same
// buffer takes dcols = Wm^T x dout, which col2im scatter-adds into din.
//
// OpenMP threads the copying loops; these products are called outside any
// parallel region, so OpenBLAS threads each one itself (winograd.c instead
// gives each thread whole products, which OpenBLAS then runs single-threaded).
// Every sum has a fixed order for a given thread count, so results are
// deterministic.
#include <cblas.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/common.h"

// ---------------------------------------------------------------- chunking

int conv2d_chunk_rows(int Ci, int H, int W, int k) {
    const int64_t row = (int64_t)Ci * k * k * W; // floats of cols per output row
    const int64_t most = DALLE_MAX(1, DALLE_MIN(CPU_CONV_CHUNK_FLOATS / row, (int64_t)H));
    // as many chunks as that needs, but evened out: no thin last chunk
    const int64_t chunks = (H + most - 1) / most;
    return (int)((H + chunks - 1) / chunks);
}

int64_t cpu_conv2d_scratch_floats(int Ci, int Co, int H, int W, int k) {
    if (k == 1) return 0;
    int64_t cols = (int64_t)Ci * k * k * W * conv2d_chunk_rows(Ci, H, W, k); // im2col (dW)
    if (k != 3) return cols;
    // Winograd, either tile size (the batch picks): the forward, and the
    // backward's din with the flipped, transposed weights first
    int64_t most = cols;
    for (int m = 2; m <= 4; m += 2) {
        const int64_t din = 9LL * Ci * Co + winograd_scratch_floats(Co, Ci, H, W, m);
        most = DALLE_MAX(most, DALLE_MAX(winograd_scratch_floats(Ci, Co, H, W, m), din));
    }
    return most;
}

// The output columns [x0, x1) whose tap at horizontal offset dx (-p..p) falls
// inside the image: 0 <= x + dx < W (empty when |dx| >= W).
static void tap_span(int W, int dx, int *x0, int *x1) {
    *x0 = DALLE_MIN(W, DALLE_MAX(0, -dx));
    *x1 = DALLE_MAX(*x0, DALLE_MIN(W, W - dx));
}

// cols (Ci*k*k, n*W) = the taps of output rows [y0, y0+n) of one image
// in (Ci, H, W); zero where a tap falls in the padding.
static void im2col(float *cols, const float *in, int Ci, int H, int W, int k, int y0, int n) {
    const int p = (k - 1) / 2, kk = k * k;
    const int64_t ncol = (int64_t)n * W;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < Ci * kk; r++) {
        const int ci = r / kk, ky = r % kk / k, dx = r % k - p;
        int x0, x1;
        tap_span(W, dx, &x0, &x1);
        const float *src = in + (int64_t)ci * H * W;
        float *dst = cols + r * ncol;
        for (int y = y0; y < y0 + n; y++, dst += W) {
            const int sy = y + ky - p;
            if (sy < 0 || sy >= H) {
                memset(dst, 0, sizeof(float) * W);
                continue;
            }
            const float *s = src + (int64_t)sy * W + dx;
            memset(dst, 0, sizeof(float) * x0);
            memcpy(dst + x0, s + x0, sizeof(float) * (x1 - x0));
            memset(dst + x1, 0, sizeof(float) * (W - x1));
        }
    }
}

// din (Ci, H, W) += the taps of cols (Ci*k*k, n*W) for output rows
// [y0, y0+n) put back where im2col took them from. Each thread owns whole
// rows of din and gathers the taps that land there in a fixed order, so there
// are no races and the sums do not depend on the thread count.
static void col2im_add(float *din, const float *cols, int Ci, int H, int W, int k, int y0, int n) {
    const int p = (k - 1) / 2, kk = k * k;
    const int64_t ncol = (int64_t)n * W;
    const int s0 = DALLE_MAX(0, y0 - p), s1 = DALLE_MIN(H, y0 + n + p); // rows touched
#pragma omp parallel for collapse(2) schedule(static)
    for (int ci = 0; ci < Ci; ci++)
        for (int sy = s0; sy < s1; sy++) {
            float *d = din + ((int64_t)ci * H + sy) * W;
            for (int ky = 0; ky < k; ky++) {
                const int y = sy - ky + p; // the output row whose tap ky reads row sy
                if (y < y0 || y >= y0 + n) continue;
                for (int kx = 0; kx < k; kx++) {
                    const int dx = kx - p;
                    int x0, x1;
                    tap_span(W, dx, &x0, &x1);
                    const float *src = cols + (int64_t)(ci * kk + ky * k + kx) * ncol +
                                       (int64_t)(y - y0) * W;
                    for (int x = x0; x < x1; x++) d[x + dx] += src[x];
                }
            }
        }
}

// Columns [c0, c0+n) of every channel of out (Co, HW) = alpha*b + beta*out,
// the part of the forward that sgemm (then with beta = 1) cannot do.
// beta = 0 overwrites, so that NaN garbage does not survive.
static void bias_fill(float *out, const float *b, int Co, int64_t HW, int64_t c0, int64_t n,
                      float alpha, float beta) {
#pragma omp parallel for schedule(static)
    for (int co = 0; co < Co; co++) {
        float *o = out + co * HW + c0;
        const float v = alpha * b[co];
        if (beta == 0)
            for (int64_t i = 0; i < n; i++) o[i] = v;
        else
            for (int64_t i = 0; i < n; i++) o[i] = beta * o[i] + v;
    }
}

// ---------------------------------------------------------------- conv2d

void conv2d_forward_rows(float *out, const float *in, const float *w, const float *b, int B,
                         int Ci, int Co, int H, int W, int k, float alpha, float beta, int rows,
                         float *scratch) {
    DALLE_ASSERT(k >= 1 && k % 2 == 1 && B >= 1 && Ci >= 1 && Co >= 1 && H >= 1 && W >= 1);
    const int64_t HW = (int64_t)H * W;
    const int K = Ci * k * k;
    // With a bias, out is prepared first and sgemm adds to it (beta = 1);
    // without, sgemm applies beta itself (and beta = 0 ignores NaN in out).
    const float gemm_beta = b ? 1.0f : beta;
    for (int bi = 0; bi < B; bi++) {
        const float *x = in + (int64_t)bi * Ci * HW; // (Ci, H, W)
        float *o = out + (int64_t)bi * Co * HW;      // (Co, H, W)
        if (k == 1) {
            if (b) bias_fill(o, b, Co, HW, 0, HW, alpha, beta);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, (int)HW, Ci, alpha, w, Ci,
                        x, (int)HW, gemm_beta, o, (int)HW);
            continue;
        }
        DALLE_ASSERT(rows >= 1 && rows <= H && scratch);
        for (int y0 = 0; y0 < H; y0 += rows) {
            const int n = DALLE_MIN(rows, H - y0), N = n * W;
            im2col(scratch, x, Ci, H, W, k, y0, n); // cols (K, N)
            if (b) bias_fill(o, b, Co, HW, (int64_t)y0 * W, N, alpha, beta);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, N, K, alpha, w, K, scratch,
                        N, gemm_beta, o + (int64_t)y0 * W, (int)HW);
        }
    }
}

void cpu_conv2d_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci,
                        int Co, int H, int W, int k, float alpha, float beta, float *scratch) {
    const int m = k == 3 ? conv3x3_winograd_m(B, H, W) : 0;
    if (m) {
        conv3x3_winograd_forward(out, in, w, b, B, Ci, Co, H, W, alpha, beta, m, scratch);
        return;
    }
    conv2d_forward_rows(out, in, w, b, B, Ci, Co, H, W, k, alpha, beta,
                        conv2d_chunk_rows(Ci, H, W, k), scratch);
}

// db (Co) += alpha * the sum of dout (B, Co, HW) over batch and space, in
// double, one channel per thread. The SIMD reduction's order is fixed by the
// code, not by the thread count.
static void bias_grad(float *db, const float *dout, int B, int Co, int64_t HW, float alpha) {
#pragma omp parallel for schedule(static)
    for (int co = 0; co < Co; co++) {
        double s = 0;
        for (int bi = 0; bi < B; bi++) {
            const float *g = dout + ((int64_t)bi * Co + co) * HW;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < HW; i++) s += g[i];
        }
        db[co] += (float)(alpha * s);
    }
}

void conv2d_backward_rows(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int B, int Ci, int Co, int H, int W, int k, float alpha,
                          int rows, float *scratch) {
    DALLE_ASSERT(k >= 1 && k % 2 == 1 && B >= 1 && Ci >= 1 && Co >= 1 && H >= 1 && W >= 1);
    const int64_t HW = (int64_t)H * W;
    const int K = Ci * k * k;
    if (db) bias_grad(db, dout, B, Co, HW, alpha);
    if (!dw && !din) return;
    for (int bi = 0; bi < B; bi++) {
        const float *x = in + (int64_t)bi * Ci * HW;    // (Ci, H, W)
        const float *g = dout + (int64_t)bi * Co * HW;  // (Co, H, W)
        float *dx = din ? din + (int64_t)bi * Ci * HW : NULL; // (Ci, H, W)
        if (k == 1) {
            // dW (Co, Ci) += alpha * g (Co, HW) x X^T;  dX (Ci, HW) += alpha * Wm^T x g
            if (dw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, Ci, (int)HW, alpha, g,
                            (int)HW, x, (int)HW, 1.0f, dw, Ci);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ci, (int)HW, Co, alpha, w, Ci,
                            g, (int)HW, 1.0f, dx, (int)HW);
            continue;
        }
        DALLE_ASSERT(rows >= 1 && rows <= H && scratch);
        for (int y0 = 0; y0 < H; y0 += rows) {
            const int n = DALLE_MIN(rows, H - y0), N = n * W;
            const float *gc = g + (int64_t)y0 * W; // (Co, N) with row stride HW
            if (dw) {
                im2col(scratch, x, Ci, H, W, k, y0, n); // cols (K, N)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, K, N, alpha, gc, (int)HW,
                            scratch, N, 1.0f, dw, K);
            }
            if (dx) {
                // dcols (K, N) = alpha * Wm^T x g, in the same buffer
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, Co, alpha, w, K, gc,
                            (int)HW, 0.0f, scratch, N);
                col2im_add(dx, scratch, Ci, H, W, k, y0, n);
            }
        }
    }
}

void cpu_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                         const float *w, int B, int Ci, int Co, int H, int W, int k, float alpha,
                         float *scratch) {
    const int m = k == 3 ? conv3x3_winograd_m(B, H, W) : 0;
    if (m && din) {
        // din += alpha * conv(dout, w') with w'[ci][co] = w[co][ci] rotated by 180
        // degrees: the 'same' 3x3 correlation's adjoint, done by Winograd too.
        float *wt = scratch; // (Ci, Co, 3, 3)
#pragma omp parallel for schedule(static)
        for (int ci = 0; ci < Ci; ci++)
            for (int co = 0; co < Co; co++)
                for (int t = 0; t < 9; t++) wt[((int64_t)ci * Co + co) * 9 + t] = w[((int64_t)co * Ci + ci) * 9 + 8 - t];
        conv3x3_winograd_forward(din, dout, wt, NULL, B, Co, Ci, H, W, alpha, 1.0f, m, scratch + 9LL * Ci * Co);
        din = NULL;
    }
    if (m && dw) {
        conv3x3_winograd_backward_filter(dw, dout, in, B, Ci, Co, H, W, alpha, m, scratch);
        dw = NULL; // what is left (db) is the im2col path's
    }
    conv2d_backward_rows(din, dw, db, dout, in, w, B, Ci, Co, H, W, k, alpha,
                         conv2d_chunk_rows(Ci, H, W, k), scratch);
}

// ---------------------------------------------------------------- one-hot conv

void cpu_onehot_conv_forward(float *out, const int32_t *codes, const float *w, const float *bias, int B,
                             int V, int Co, int HW) {
    // One output channel per thread: its weight row (V floats) stays in cache
    // while the codes of every image index into it.
#pragma omp parallel for schedule(static)
    for (int c = 0; c < Co; c++) {
        const float *wr = w + (int64_t)c * V;
        const float bc = bias ? bias[c] : 0.0f;
        for (int bi = 0; bi < B; bi++) {
            const int32_t *z = codes + (int64_t)bi * HW;
            float *o = out + ((int64_t)bi * Co + c) * HW;
            for (int i = 0; i < HW; i++) {
                DALLE_ASSERT(z[i] >= 0 && z[i] < V);
                o[i] = wr[z[i]] + bc;
            }
        }
    }
}
