// test_cuda_ops.c: the dVAE's, the optimizer's and mixed precision's ops of
// the CUDA backend (src/backend/cuda/dvae_ops.cu, optim_ops.cu, half_ops.cu, conv16_ops.cu,
// cuda.cu's strided copy) against the CPU backend, op by op: the same random inputs in a host copy and in GPU (managed) memory, the
// CPU's op on the one and the GPU's on the other, then every output and
// every gradient compared with |gpu - cpu| <= atol + rtol*|cpu| (the max
// error printed). Backward ops start from gradients that already hold
// something, since they accumulate. Each convolution shape also prints its
// GPU time (ms and GFLOP/s), for the GPU session's information. Without a
// usable GPU it says so and passes.
//   DALLE_CUDA_LIB=build/libdalle-cuda.so build/tests/cuda/test_cuda_ops
// With DALLE_CUDA_TF32=1 the convolutions run in TF32 and are held to TF32's
// tolerance instead of fp32's. DALLE_CUDA_TEST_QUICK=1 (make test-cuda-emu,
// on the CPU emulator of tests/cuda-emu) skips the timings and the
// convolutions over QUICK_MACS multiply-adds.

#include "cuda_test.h"
#include "backend/conv16.h"

// The largest convolution (multiply-adds of its forward) a quick run checks.
#define QUICK_MACS 1e8

// ---------------------------------------------------------------- conv2d

// Tolerances of the convolutions, relative to the largest |value| of each
// tensor (sums of up to Ci*k*k or B*H*W products, in another order and, for
// Winograd or FFT algorithms on either side, through transforms): fp32 1e-4;
// TF32 (10-bit mantissas of the products) 5e-3.
static double conv_tol(void) { return tf32 ? 5e-3 : 1e-4; }

typedef struct {
    int B, Ci, Co, H, W, k;
    int bias;    // with a bias
    float alpha; // of the forward and the backward
    const char *note;
} conv_shape;

// The ms of one `call` (waited for), over enough calls to pass 20 ms (after the first,
// which finds the algorithms, has run).
#define TIME_MS(ms, call)                                                 \
    do {                                                                  \
        int reps_ = 0;                                                    \
        const double t0_ = now_s();                                       \
        do {                                                              \
            call;                                                         \
            gpu->sync();                                                  \
            reps_++;                                                      \
        } while (now_s() - t0_ < 0.02 && reps_ < 1000);                   \
        (ms) = 1e3 * (now_s() - t0_) / reps_;                             \
    } while (0)

// One shape: the forward with beta 0 (the GPU's output full of NaN, which it
// must not read) and with beta 1 over a random output; the backward into
// gradients that hold random values, with all of din, dw, db, then with dw
// alone (din and db NULL) accumulating again. Then the GPU's timing.
static void conv_case(const conv_shape *s) {
    const int B = s->B, Ci = s->Ci, Co = s->Co, H = s->H, W = s->W, k = s->k;
    const int64_t n_in = (int64_t)B * Ci * H * W, n_out = (int64_t)B * Co * H * W, n_w = (int64_t)Co * Ci * k * k;
    const double tol = conv_tol();
    char what[160], name[96];
    snprintf(name, sizeof name, "conv %dx%dx%dx%d k%d ->%d%s a%g", B, Ci, H, W, k, Co, s->bias ? " +b" : "",
             s->alpha);
    printf("   %s (%s)\n", name, s->note);
    const uint64_t seed = 1000 + (uint64_t)(B * 7 + Ci * 131 + Co * 17 + H * 3 + W * 5 + k);
    pair in = pair_rand(n_in, seed, -1, 1), w = pair_rand(n_w, seed + 1, -0.5f, 0.5f);
    pair b = pair_rand(Co, seed + 2, -1, 1), out = pair_new(n_out);
    const float *bh = s->bias ? b.h : NULL, *bg = s->bias ? b.g : NULL;
    const int64_t cs = cpu->conv2d_scratch_floats(Ci, Co, H, W, k), gs = gpu->conv2d_scratch_floats(Ci, Co, H, W, k);
    float *cscratch = malloc(sizeof(float) * (size_t)(cs > 0 ? cs : 1)), *gscratch = gs > 0 ? gpu_floats(gs) : NULL;
    if (!cscratch) abort();

    // forward, beta 0: NaN in the GPU's output must not survive
    memset(out.h, 0, sizeof(float) * (size_t)n_out);
    for (int64_t i = 0; i < n_out; i++) out.g[i] = NAN;
    cpu->conv2d_forward(out.h, in.h, w.h, bh, B, Ci, Co, H, W, k, s->alpha, 0.0f, cscratch);
    gpu->conv2d_forward(out.g, in.g, w.g, bg, B, Ci, Co, H, W, k, s->alpha, 0.0f, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s out, beta 0 over NaN", name);
    check_pair(what, &out, tol, tol);

    // forward, beta 1 over the same random output on both sides
    fill_uniform(out.h, n_out, seed + 3, -1, 1);
    memcpy(out.g, out.h, sizeof(float) * (size_t)n_out);
    cpu->conv2d_forward(out.h, in.h, w.h, bh, B, Ci, Co, H, W, k, s->alpha, 1.0f, cscratch);
    gpu->conv2d_forward(out.g, in.g, w.g, bg, B, Ci, Co, H, W, k, s->alpha, 1.0f, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s out, beta 1", name);
    check_pair(what, &out, tol, tol);

    // backward, accumulating into random gradients
    pair dout = pair_rand(n_out, seed + 4, -1, 1), din = pair_rand(n_in, seed + 5, -1, 1);
    pair dw = pair_rand(n_w, seed + 6, -1, 1), db = pair_rand(Co, seed + 7, -1, 1);
    cpu->conv2d_backward(din.h, dw.h, db.h, dout.h, in.h, w.h, B, Ci, Co, H, W, k, s->alpha, cscratch);
    gpu->conv2d_backward(din.g, dw.g, db.g, dout.g, in.g, w.g, B, Ci, Co, H, W, k, s->alpha, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s din +=", name);
    check_pair(what, &din, tol, tol);
    snprintf(what, sizeof what, "%s dw +=", name);
    check_pair(what, &dw, tol, tol);
    snprintf(what, sizeof what, "%s db +=", name);
    check_pair(what, &db, tol, tol);
    cpu->conv2d_backward(NULL, dw.h, NULL, dout.h, in.h, w.h, B, Ci, Co, H, W, k, s->alpha, cscratch);
    gpu->conv2d_backward(NULL, dw.g, NULL, dout.g, in.g, w.g, B, Ci, Co, H, W, k, s->alpha, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s dw += again (din, db NULL)", name);
    check_pair(what, &dw, tol, tol);

    // timing on the GPU (algorithms found above)
    if (!quick) {
        const double flop = 2.0 * B * Co * H * W * (double)Ci * k * k;
        double fwd_ms = 0, bwd_ms = 0;
        TIME_MS(fwd_ms, gpu->conv2d_forward(out.g, in.g, w.g, bg, B, Ci, Co, H, W, k, s->alpha, 0.0f, gscratch));
        TIME_MS(bwd_ms, gpu->conv2d_backward(din.g, dw.g, s->bias ? db.g : NULL, dout.g, in.g, w.g, B, Ci, Co, H,
                                             W, k, s->alpha, gscratch));
        printf("    time %-44s fwd %8.3f ms %7.0f GFLOP/s   bwd (din+dw) %8.3f ms %7.0f GFLOP/s\n", name, fwd_ms,
               flop / fwd_ms * 1e-6, bwd_ms, 2 * flop / bwd_ms * 1e-6);
    }

    pair_free(&in), pair_free(&w), pair_free(&b), pair_free(&out);
    pair_free(&dout), pair_free(&din), pair_free(&dw), pair_free(&db);
    free(cscratch);
    gpu->free(gscratch);
}

static void test_conv2d(void) {
    static const conv_shape shapes[] = {
        {2, 3, 5, 7, 9, 1, 1, 1.0f, "k 1, odd sizes"},
        {3, 37, 19, 9, 23, 1, 1, 2.0f, "k 1, alpha 2"},
        {2, 5, 7, 13, 11, 3, 1, 0.75f, "k 3, odd sizes"},
        {2, 33, 65, 17, 15, 3, 0, 0.5f, "k 3, no bias, channels past 32 and 64"},
        {1, 4, 6, 10, 10, 7, 1, 1.25f, "k 7"},
        {2, 3, 8, 33, 31, 7, 1, 1.0f, "k 7, 33x31"},
        // the dVAE at 64x64 input, n_hid 64, batch 1 (model.c's layers)
        {1, 3, 64, 64, 64, 7, 1, 1.0f, "dVAE encoder input"},
        {1, 64, 16, 64, 64, 3, 1, 1.0f, "dVAE encoder group 1 res conv_1"},
        {1, 16, 16, 64, 64, 3, 1, 1.0f, "dVAE res conv_2"},
        {1, 16, 64, 64, 64, 1, 1, 1.0f / 64, "dVAE res conv_4 (post gain)"},
        {1, 64, 128, 32, 32, 1, 1, 1.0f, "dVAE group 2 id_path"},
        {1, 512, 8192, 8, 8, 1, 1, 1.0f, "dVAE encoder output (V 8192)"},
        {1, 8192, 128, 8, 8, 1, 1, 1.0f, "dVAE dense decoder input"},
        {1, 64, 6, 64, 64, 1, 1, 1.0f, "dVAE decoder output"},
        // the paper's dVAE (n_hid 256, 256x256), batch 1: the layers that set its speed
        {1, 3, 256, 256, 256, 7, 1, 1.0f, "paper encoder input"},
        {1, 256, 64, 256, 256, 3, 1, 1.0f, "paper encoder group 1 res conv_1"},
        {1, 64, 64, 256, 256, 3, 1, 1.0f, "paper res conv_2"},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const conv_shape *s = &shapes[i];
        if (quick && (double)s->B * s->Co * s->H * s->W * s->Ci * s->k * s->k > QUICK_MACS) {
            printf("   conv %dx%dx%dx%d k%d ->%d (%s): skipped (DALLE_CUDA_TEST_QUICK)\n", s->B, s->Ci, s->H, s->W,
                   s->k, s->Co, s->note);
            continue;
        }
        conv_case(s);
    }
}

// ---------------------------------------------------------------- conv2d16

// A bf16 dVAE's convolutions (conv2d16_*): both sides round the same inputs
// and the same weight codes exactly, then round their fp32 sums to bf16. Sums
// in another order may round to the neighbouring bf16 value, one step of at
// most 2^-7 of the value: each element within that of the CPU's (atol 2^-7
// of the largest, for sums that cancel), and at most 5% of them off by more
// than the fp32 tolerance (a missing or wrong rounding moves nearly all).
static void check16(const char *what, const pair *p) {
    const double tol = conv_tol(), m = amax(p->h, p->n);
    int64_t off = 0;
    for (int64_t i = 0; i < p->n; i++)
        if (fabs((double)p->g[i] - p->h[i]) > tol * m + tol * fabs((double)p->h[i])) off++;
    CHECK_CLOSE(what, p->g, p->h, p->n, m / 128, 1.0 / 128);
    const double frac = p->n ? (double)off / (double)p->n : 0;
    printf("    %-48s %lld of %lld past fp32's tolerance (%.2f%%)%s\n", what, (long long)off, (long long)p->n,
           100 * frac, frac > 0.05 ? "  <-- MISMATCH" : "");
    CHECK(frac <= 0.05);
}

// One shape in bf16: the forward with beta 0 over NaN and beta 1; the
// backward into random gradients (all three, then dw alone).
static void conv16_case(const conv_shape *s) {
    const int B = s->B, Ci = s->Ci, Co = s->Co, H = s->H, W = s->W, k = s->k;
    const int64_t n_in = (int64_t)B * Ci * H * W, n_out = (int64_t)B * Co * H * W, n_w = (int64_t)Co * Ci * k * k;
    char what[160], name[96];
    snprintf(name, sizeof name, "conv16 %dx%dx%dx%d k%d ->%d%s a%g", B, Ci, H, W, k, Co, s->bias ? " +b" : "",
             s->alpha);
    printf("   %s (%s)\n", name, s->note);
    const uint64_t seed = 5000 + (uint64_t)(B * 7 + Ci * 131 + Co * 17 + H * 3 + W * 5 + k);
    pair in = pair_rand(n_in, seed, -1, 1), wf = pair_rand(n_w, seed + 1, -0.5f, 0.5f);
    pair b = pair_rand(Co, seed + 2, -1, 1), out = pair_new(n_out);
    const float *bh = s->bias ? b.h : NULL, *bg = s->bias ? b.g : NULL;
    uint16_t *wh = malloc(sizeof(uint16_t) * (size_t)n_w), *wg = gpu_elems(n_w, sizeof(uint16_t));
    if (!wh) abort();
    cpu->to_half(wh, wf.h, n_w, HALF_BF16);
    memcpy(wg, wh, sizeof(uint16_t) * (size_t)n_w);
    const int64_t cs = conv16_scratch(cpu->conv2d_scratch_floats(Ci, Co, H, W, k), B, Ci, Co, H, W, k);
    const int64_t gs = conv16_scratch(gpu->conv2d_scratch_floats(Ci, Co, H, W, k), B, Ci, Co, H, W, k);
    float *cscratch = malloc(sizeof(float) * (size_t)cs), *gscratch = gpu_floats(gs);
    if (!cscratch) abort();

    memset(out.h, 0, sizeof(float) * (size_t)n_out);
    for (int64_t i = 0; i < n_out; i++) out.g[i] = NAN;
    cpu->conv2d16_forward(out.h, in.h, wh, bh, B, Ci, Co, H, W, k, s->alpha, 0.0f, HALF_BF16, cscratch);
    gpu->conv2d16_forward(out.g, in.g, wg, bg, B, Ci, Co, H, W, k, s->alpha, 0.0f, HALF_BF16, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s out, beta 0 over NaN", name);
    check16(what, &out);

    fill_uniform(out.h, n_out, seed + 3, -1, 1);
    memcpy(out.g, out.h, sizeof(float) * (size_t)n_out);
    cpu->conv2d16_forward(out.h, in.h, wh, bh, B, Ci, Co, H, W, k, s->alpha, 1.0f, HALF_BF16, cscratch);
    gpu->conv2d16_forward(out.g, in.g, wg, bg, B, Ci, Co, H, W, k, s->alpha, 1.0f, HALF_BF16, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s out, beta 1", name);
    check16(what, &out);

    pair dout = pair_rand(n_out, seed + 4, -1, 1), din = pair_rand(n_in, seed + 5, -1, 1);
    pair dw = pair_rand(n_w, seed + 6, -1, 1), db = pair_rand(Co, seed + 7, -1, 1);
    cpu->conv2d16_backward(din.h, dw.h, db.h, dout.h, in.h, wh, B, Ci, Co, H, W, k, s->alpha, HALF_BF16, cscratch);
    gpu->conv2d16_backward(din.g, dw.g, db.g, dout.g, in.g, wg, B, Ci, Co, H, W, k, s->alpha, HALF_BF16, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s din +=", name);
    check16(what, &din);
    snprintf(what, sizeof what, "%s dw +=", name);
    check16(what, &dw);
    snprintf(what, sizeof what, "%s db += (fp32)", name);
    check_pair(what, &db, conv_tol(), conv_tol());
    cpu->conv2d16_backward(NULL, dw.h, NULL, dout.h, in.h, wh, B, Ci, Co, H, W, k, s->alpha, HALF_BF16, cscratch);
    gpu->conv2d16_backward(NULL, dw.g, NULL, dout.g, in.g, wg, B, Ci, Co, H, W, k, s->alpha, HALF_BF16, gscratch);
    gpu->sync();
    snprintf(what, sizeof what, "%s dw += again (din, db NULL)", name);
    check16(what, &dw);

    if (!quick) { // the composition's time, beside conv_case's fp32 one
        const double flop = 2.0 * B * Co * H * W * (double)Ci * k * k;
        double fwd_ms = 0, bwd_ms = 0;
        TIME_MS(fwd_ms, gpu->conv2d16_forward(out.g, in.g, wg, bg, B, Ci, Co, H, W, k, s->alpha, 0.0f, HALF_BF16,
                                              gscratch));
        TIME_MS(bwd_ms, gpu->conv2d16_backward(din.g, dw.g, NULL, dout.g, in.g, wg, B, Ci, Co, H, W, k, s->alpha,
                                               HALF_BF16, gscratch));
        printf("    time %-44s fwd %8.3f ms %7.0f GFLOP/s   bwd (din+dw) %8.3f ms %7.0f GFLOP/s\n", name, fwd_ms,
               flop / fwd_ms * 1e-6, bwd_ms, 2 * flop / bwd_ms * 1e-6);
    }

    pair_free(&in), pair_free(&wf), pair_free(&b), pair_free(&out);
    pair_free(&dout), pair_free(&din), pair_free(&dw), pair_free(&db);
    free(wh), free(cscratch);
    gpu->free(wg), gpu->free(gscratch);
}

static void test_conv2d16(void) {
    static const conv_shape shapes[] = {
        {2, 3, 5, 7, 9, 1, 1, 1.0f, "k 1, odd sizes"},
        {2, 5, 7, 13, 11, 3, 1, 0.75f, "k 3, odd sizes"},
        {2, 33, 65, 17, 15, 3, 0, 0.5f, "k 3, no bias, channels past 32 and 64"},
        {2, 3, 8, 33, 31, 7, 1, 1.0f, "k 7, 33x31"},
        {1, 16, 64, 64, 64, 1, 1, 1.0f / 64, "dVAE res conv_4 (post gain)"},
        {1, 64, 16, 64, 64, 3, 1, 1.0f, "dVAE encoder group 1 res conv_1"},
        {1, 3, 256, 256, 256, 7, 1, 1.0f, "paper encoder input"},
        {1, 256, 64, 256, 256, 3, 1, 1.0f, "paper encoder group 1 res conv_1"},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const conv_shape *s = &shapes[i];
        if (quick && (double)s->B * s->Co * s->H * s->W * s->Ci * s->k * s->k > QUICK_MACS) {
            printf("   conv16 %dx%dx%dx%d k%d ->%d (%s): skipped (DALLE_CUDA_TEST_QUICK)\n", s->B, s->Ci, s->H,
                   s->W, s->k, s->Co, s->note);
            continue;
        }
        conv16_case(s);
    }
}

// ---------------------------------------------------------------- one-hot conv

// A gather: expected bit-exact (rtol 1e-6 allows nothing but noise).
static void test_onehot_conv(void) {
    static const int sizes[][4] = {{2, 37, 5, 49}, {2, 8192, 128, 64}}; // B, V, Co, HW
    for (int s = 0; s < 2; s++) {
        const int B = sizes[s][0], V = sizes[s][1], Co = sizes[s][2], HW = sizes[s][3];
        int32_t *codes = gpu->alloc(sizeof(int32_t) * (size_t)B * HW);
        if (!codes) abort();
        for (int64_t i = 0; i < (int64_t)B * HW; i++) codes[i] = (int32_t)(fill_u(77, (uint64_t)i) * V);
        codes[0] = 0, codes[1] = V - 1; // both ends of the table
        pair w = pair_rand((int64_t)Co * V, 78, -1, 1), bias = pair_rand(Co, 79, -1, 1);
        pair out = pair_new((int64_t)B * Co * HW);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            cpu->onehot_conv_forward(out.h, codes, w.h, with_bias ? bias.h : NULL, B, V, Co, HW);
            gpu->onehot_conv_forward(out.g, codes, w.g, with_bias ? bias.g : NULL, B, V, Co, HW);
            gpu->sync();
            char what[96];
            snprintf(what, sizeof what, "onehot B%d V%d Co%d HW%d%s", B, V, Co, HW, with_bias ? " +b" : "");
            check_pair(what, &out, 0, 1e-6);
        }
        gpu->free(codes);
        pair_free(&w), pair_free(&bias), pair_free(&out);
    }
}

// ---------------------------------------------------------------- elementwise

// ReLU, axpy: expected bit-exact (rtol 1e-6). Inputs include exact zeros.
static void test_relu_axpy(void) {
    const int64_t n = 100003;
    pair in = pair_rand(n, 81, -1, 1), out = pair_new(n);
    for (int64_t i = 0; i < n; i += 97) in.h[i] = in.g[i] = 0.0f;
    cpu->relu_forward(out.h, in.h, n);
    gpu->relu_forward(out.g, in.g, n);
    gpu->sync();
    check_pair("relu_forward", &out, 0, 1e-6);
    pair dout = pair_rand(n, 82, -1, 1), din = pair_rand(n, 83, -1, 1);
    cpu->relu_backward(din.h, dout.h, in.h, n);
    gpu->relu_backward(din.g, dout.g, in.g, n);
    gpu->sync();
    check_pair("relu_backward +=", &din, 0, 1e-6);
    gpu->relu_forward(in.g, in.g, n); // in place
    gpu->sync();
    CHECK_CLOSE("relu_forward in place", in.g, out.h, n, 0, 1e-6);
    cpu->axpy(din.h, -0.37f, dout.h, n);
    gpu->axpy(din.g, -0.37f, dout.g, n);
    gpu->sync();
    check_pair("axpy", &din, 0, 1e-6);
    pair_free(&in), pair_free(&out), pair_free(&dout), pair_free(&din);
}

// The strided copy: bit-exact, and the destination's gaps between rows keep
// their values. Shapes: odd strides, the sampler's ring rows (K candidates'
// keys from qkv rows of 3d into rows W*d apart), contiguous rows, nothing.
static void test_copy2d(void) {
    static const int64_t shapes[][4] = {{5, 7, 9, 21}, {64, 1024, 33 * 1024, 3 * 1024}, {3, 100, 100, 100},
                                        {0, 10, 10, 10}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], cols = shapes[s][1], ds = shapes[s][2], ss = shapes[s][3];
        const int64_t nd = rows * ds + 5, ns = rows * ss + 3;
        pair src = pair_rand(ns, 70 + s, -1, 1), dst = pair_rand(nd, 75 + s, -1, 1);
        cpu->copy2d(dst.h + 2, ds, src.h + 1, ss, rows, cols);
        gpu->copy2d(dst.g + 2, ds, src.g + 1, ss, rows, cols);
        gpu->sync();
        char what[96];
        snprintf(what, sizeof what, "copy2d %lld x %lld, strides %lld <- %lld", (long long)rows, (long long)cols,
                 (long long)ds, (long long)ss);
        CHECK_CLOSE(what, dst.g, dst.h, nd, 0, 0);
        pair_free(&src), pair_free(&dst);
    }
}

// Max-pool and upsampling: expected bit-exact (rtol 1e-6). The pool's input
// has many ties (values on a grid of 4), where the first max must win.
static void test_pool_upsample(void) {
    const int B = 2, C = 3, H = 10, W = 14;
    const int64_t n = (int64_t)B * C * H * W, n4 = n / 4;
    pair in = pair_rand(n, 91, 0, 1), out = pair_new(n4);
    for (int64_t i = 0; i < n; i++) in.h[i] = in.g[i] = floorf(in.h[i] * 4);
    cpu->maxpool2_forward(out.h, in.h, B, C, H, W);
    gpu->maxpool2_forward(out.g, in.g, B, C, H, W);
    gpu->sync();
    check_pair("maxpool2_forward (ties)", &out, 0, 1e-6);
    pair dout = pair_rand(n4, 92, -1, 1), din = pair_rand(n, 93, -1, 1);
    cpu->maxpool2_backward(din.h, dout.h, in.h, B, C, H, W);
    gpu->maxpool2_backward(din.g, dout.g, in.g, B, C, H, W);
    gpu->sync();
    check_pair("maxpool2_backward += (first max wins)", &din, 0, 1e-6);

    // upsample (B, C, 5, 7) -> (B, C, 10, 14)
    pair up = pair_new(n), small = pair_rand(n4, 94, -1, 1);
    cpu->upsample2_forward(up.h, small.h, B, C, H / 2, W / 2);
    gpu->upsample2_forward(up.g, small.g, B, C, H / 2, W / 2);
    gpu->sync();
    check_pair("upsample2_forward", &up, 0, 1e-6);
    pair dup = pair_rand(n, 95, -1, 1), dsmall = pair_rand(n4, 96, -1, 1);
    cpu->upsample2_backward(dsmall.h, dup.h, B, C, H / 2, W / 2);
    gpu->upsample2_backward(dsmall.g, dup.g, B, C, H / 2, W / 2);
    gpu->sync();
    check_pair("upsample2_backward +=", &dsmall, 0, 1e-6);
    pair_free(&in), pair_free(&out), pair_free(&dout), pair_free(&din);
    pair_free(&up), pair_free(&small), pair_free(&dup), pair_free(&dsmall);
}

// ---------------------------------------------------------------- dVAE losses

// (B, V, P): odd sizes, the real vocabulary on an 8x8 grid, a 32x32 grid.
static const int SOFTMAX_SIZES[][3] = {{2, 37, 49}, {1, 8192, 64}, {3, 512, 1024}};

// Gumbel-softmax: exp and a sum over V in another order; tolerance 1e-5
// relative plus 1e-6 of the largest value (forward), 1e-5 of it (backward:
// a dot over V, then a difference).
static void test_gumbel_softmax(void) {
    for (int s = 0; s < 3; s++) {
        const int B = SOFTMAX_SIZES[s][0], V = SOFTMAX_SIZES[s][1], P = SOFTMAX_SIZES[s][2];
        const int64_t n = (int64_t)B * V * P;
        const float tau = 0.7f;
        pair logits = pair_rand(n, 101 + s, -3, 3), g = pair_rand(n, 111 + s, -1, 4), z = pair_new(n);
        cpu->gumbel_softmax_forward(z.h, logits.h, g.h, tau, B, V, P);
        gpu->gumbel_softmax_forward(z.g, logits.g, g.g, tau, B, V, P);
        gpu->sync();
        char what[96];
        snprintf(what, sizeof what, "gumbel_softmax_forward B%d V%d P%d", B, V, P);
        check_pair(what, &z, 1e-6, 1e-5);
        // the backward from the same z on both sides (the CPU's)
        memcpy(z.g, z.h, sizeof(float) * (size_t)n);
        pair dz = pair_rand(n, 121 + s, -1, 1), dl = pair_rand(n, 131 + s, -1, 1);
        cpu->gumbel_softmax_backward(dl.h, dz.h, z.h, tau, B, V, P);
        gpu->gumbel_softmax_backward(dl.g, dz.g, z.g, tau, B, V, P);
        gpu->sync();
        snprintf(what, sizeof what, "gumbel_softmax_backward += B%d V%d P%d", B, V, P);
        check_pair(what, &dl, 1e-5, 1e-5);
        pair_free(&logits), pair_free(&g), pair_free(&z), pair_free(&dz), pair_free(&dl);
    }
}

// Gumbel noise: the same Philox uniforms on both sides, then two logf each,
// which may round differently (CUDA's logf is within 1 ulp, glibc's too):
// |d| <= 2.5e-7 (1 + |cpu|). A different uniform, even the next one, moves g
// by at least e * 2^-23 = 3.2e-7 where g is 0, and far more elsewhere; the
// count of values whose bits differ is printed. Slices at odd offsets and a
// 64-bit counter that carries into its high word.
static void test_gumbel_noise(void) {
    static const struct {
        uint64_t key, counter;
        int64_t first, n;
    } cases[] = {{0x9E3779B97F4A7C15ull, 7ull << 32, 0, 1000003},
                 {3, 0xFFFFFFFFFFFFFFF0ull, 5, 4099}, // the counter wraps as uint64 on both
                 {0xFFFFFFFFFFFFFFFFull, 123, 1 << 20, 3},
                 {42, 9ull << 32, 6, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t n = cases[c].n;
        pair g = pair_new(n);
        for (int64_t i = 0; i < n; i++) g.g[i] = NAN; // every value is written
        cpu->gumbel_noise(g.h, cases[c].key, cases[c].counter, cases[c].first, n);
        gpu->gumbel_noise(g.g, cases[c].key, cases[c].counter, cases[c].first, n);
        gpu->sync();
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++) differ += memcmp(&g.g[i], &g.h[i], sizeof(float)) != 0;
        char what[96];
        snprintf(what, sizeof what, "gumbel_noise first %lld n %lld", (long long)cases[c].first, (long long)n);
        CHECK_CLOSE(what, g.g, g.h, n, 2.5e-7, 2.5e-7);
        printf("    %-48s %lld of %lld values differ in their bits\n", "", (long long)differ, (long long)n);
        pair_free(&g);
    }
}

// KL to the uniform prior: sums over V in float per position (as the CPU),
// so 1e-4 relative on the total and on the gradient (plus 1e-5 of its
// largest value); once with the gradient, once without.
static void test_kl_uniform(void) {
    for (int s = 0; s < 3; s++) {
        const int B = SOFTMAX_SIZES[s][0], V = SOFTMAX_SIZES[s][1], P = SOFTMAX_SIZES[s][2];
        const int64_t n = (int64_t)B * V * P;
        pair logits = pair_rand(n, 141 + s, -3, 3), dl = pair_rand(n, 151 + s, -1, 1);
        const double ref = cpu->kl_uniform_forward_backward(dl.h, logits.h, 0.3f, B, V, P);
        const double got = gpu->kl_uniform_forward_backward(dl.g, logits.g, 0.3f, B, V, P);
        gpu->sync();
        char what[96];
        snprintf(what, sizeof what, "kl_uniform B%d V%d P%d sum", B, V, P);
        check_scalar(what, got, ref, 1e-4);
        snprintf(what, sizeof what, "kl_uniform B%d V%d P%d dlogits +=", B, V, P);
        check_pair(what, &dl, 1e-5, 1e-4);
        const double ref0 = cpu->kl_uniform_forward_backward(NULL, logits.h, 0.3f, B, V, P);
        const double got0 = gpu->kl_uniform_forward_backward(NULL, logits.g, 0.3f, B, V, P);
        snprintf(what, sizeof what, "kl_uniform B%d V%d P%d sum, no gradient", B, V, P);
        check_scalar(what, got0, ref0, 1e-4);
        pair_free(&logits), pair_free(&dl);
    }
}

// Logit-Laplace: per-element terms as the CPU's (logf, log1pf, expf within
// a few ulps), summed in double: 1e-5 relative on the sum; the gradient,
// written (=) over garbage, 1e-5 relative plus 1e-6 absolute (1 - |d|/b
// cancels).
static void test_logit_laplace(void) {
    static const int sizes[][2] = {{2, 37 * 37}, {1, 64 * 64}, {3, 256 * 256}}; // B, N
    for (int s = 0; s < 3; s++) {
        const int B = sizes[s][0], N = sizes[s][1];
        pair stats = pair_rand((int64_t)B * 6 * N, 161 + s, -3, 3);
        pair x = pair_rand((int64_t)B * 3 * N, 171 + s, 0.1f, 0.9f);
        for (int b = 0; b < B; b++) // ln b in [-2, 1]
            for (int64_t i = 3 * (int64_t)N; i < 6 * (int64_t)N; i++) {
                float *hp = &stats.h[(int64_t)b * 6 * N + i];
                *hp = -2.0f + (*hp + 3.0f) * 0.5f;
                stats.g[(int64_t)b * 6 * N + i] = *hp;
            }
        pair d = pair_new((int64_t)B * 6 * N);
        for (int64_t i = 0; i < d.n; i++) d.h[i] = 12345.0f, d.g[i] = NAN;
        const double ref = cpu->logit_laplace_nll(d.h, stats.h, x.h, 0.5f, B, N);
        const double got = gpu->logit_laplace_nll(d.g, stats.g, x.g, 0.5f, B, N);
        gpu->sync();
        char what[96];
        snprintf(what, sizeof what, "logit_laplace_nll B%d N%d sum", B, N);
        check_scalar(what, got, ref, 1e-5);
        snprintf(what, sizeof what, "logit_laplace_nll B%d N%d dstats =", B, N);
        CHECK_CLOSE(what, d.g, d.h, d.n, 1e-6, 1e-5);
        const double ref0 = cpu->logit_laplace_nll(NULL, stats.h, x.h, 0.5f, B, N);
        const double got0 = gpu->logit_laplace_nll(NULL, stats.g, x.g, 0.5f, B, N);
        snprintf(what, sizeof what, "logit_laplace_nll B%d N%d sum, no gradient", B, N);
        check_scalar(what, got0, ref0, 1e-5);
        pair_free(&stats), pair_free(&x), pair_free(&d);
    }
}

// ---------------------------------------------------------------- optimizer

// AdamW and the EMA round each operation as the CPU does: expected
// bit-exact; tolerance 1e-6 relative (1e-7 absolute for p near 0).
static void test_adamw_ema(void) {
    const int64_t n = 100003;
    pair p = pair_rand(n, 181, -1, 1), m = pair_rand(n, 182, -0.1f, 0.1f), v = pair_rand(n, 183, 0, 0.01f);
    pair g = pair_rand(n, 184, -1, 1);
    static const struct {
        int64_t t;
        float lr, wd;
    } steps[] = {{1, 1e-3f, 0.01f}, {2, 1e-3f, 0.0f}, {1000, 3e-4f, 0.1f}};
    for (int s = 0; s < 3; s++) {
        cpu->adamw_update(p.h, m.h, v.h, g.h, n, steps[s].lr, 0.9f, 0.999f, 1e-8f, steps[s].wd, steps[s].t);
        gpu->adamw_update(p.g, m.g, v.g, g.g, n, steps[s].lr, 0.9f, 0.999f, 1e-8f, steps[s].wd, steps[s].t);
        gpu->sync();
        char what[96];
        snprintf(what, sizeof what, "adamw t %lld wd %g: p", (long long)steps[s].t, steps[s].wd);
        CHECK_CLOSE(what, p.g, p.h, n, 1e-7, 1e-6);
        snprintf(what, sizeof what, "adamw t %lld wd %g: m", (long long)steps[s].t, steps[s].wd);
        CHECK_CLOSE(what, m.g, m.h, n, 1e-7, 1e-6);
        snprintf(what, sizeof what, "adamw t %lld wd %g: v", (long long)steps[s].t, steps[s].wd);
        CHECK_CLOSE(what, v.g, v.h, n, 1e-9, 1e-6);
        fill_uniform(g.h, n, 190 + (uint64_t)s, -1, 1); // the next step's gradient
        memcpy(g.g, g.h, sizeof(float) * (size_t)n);
    }
    pair ema = pair_rand(n, 185, -1, 1);
    cpu->ema_update(ema.h, p.h, n, 0.999f);
    gpu->ema_update(ema.g, p.g, n, 0.999f);
    gpu->sync();
    check_pair("ema_update", &ema, 0, 1e-6);
    pair_free(&p), pair_free(&m), pair_free(&v), pair_free(&g), pair_free(&ema);
}

// The squared norm: exact squares summed in double in another order:
// 1e-10 relative. Also from an odd offset (a rank's shard of a gradient).
static void test_grad_sumsq(void) {
    const int64_t n = 1000003;
    pair g = pair_rand(n, 201, -2, 2);
    check_scalar("grad_sumsq n 1000003", gpu->grad_sumsq(g.g, n), cpu->grad_sumsq(g.h, n), 1e-10);
    check_scalar("grad_sumsq from offset 3, n 999", gpu->grad_sumsq(g.g + 3, 999), cpu->grad_sumsq(g.h + 3, 999),
                 1e-10);
    check_scalar("grad_sumsq n 1", gpu->grad_sumsq(g.g + 5, 1), cpu->grad_sumsq(g.h + 5, 1), 1e-10);
    CHECK(gpu->grad_sumsq(g.g, 0) == 0.0);
    pair_free(&g);
}

// ---------------------------------------------------------------- mixed precision

static uint16_t *gpu_codes(int64_t n) { return gpu_elems(n, sizeof(uint16_t)); }

// The number of the n elements of size `size` whose bytes differ (NaN is
// compared by its bits), printed with the first difference.
static int64_t bits_differ(const char *what, const void *got, const void *ref, int64_t n, size_t size) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp((const char *)got + i * size, (const char *)ref + i * size, size)) {
            bad++;
            if (first < 0) first = i;
        }
    printf("    %-48s n=%-9lld %lld differ in their bits", what, (long long)n, (long long)bad);
    if (first >= 0) {
        uint32_t g = 0, r = 0;
        memcpy(&g, (const char *)got + first * size, size);
        memcpy(&r, (const char *)ref + first * size, size);
        printf(" (first at %lld: gpu 0x%x cpu 0x%x)  <-- MISMATCH", (long long)first, g, r);
    }
    printf("\n");
    return bad;
}

// The float32 inputs of the conversion checks: every pattern of the high 16
// bits (every bf16 code, every exponent and sign, inf and NaN) with low bits
// on and around the rounding points of bf16 (bit 15) and of fp16's normals
// (bit 12) and subnormals (bits 13, 14, and above through the high bits):
// exact ties with either parity and their neighbours.
static const uint32_t LOW_BITS[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x2000, 0x2fff, 0x3000,
                                    0x3001, 0x4000, 0x7fff, 0x8000, 0x8001, 0xc000, 0xffff};
#define N_LOW ((int64_t)(sizeof LOW_BITS / sizeof LOW_BITS[0]))

// to_half, from_half, store_half and round_half (filter 0 and 1) of every
// 16-bit code and of the inputs above, in fp16 and bf16, against the CPU's
// functions: bit for bit, NaN payloads included, and the same non-finite
// counts; round_half also on a slice at an odd offset.
static void test_half_conversions(void) {
    const int64_t n = 65536 * N_LOW;
    float *x = malloc(sizeof(float) * (size_t)n), *xg = gpu_floats(n), *back = malloc(sizeof(float) * (size_t)n);
    uint16_t *codes = malloc(sizeof(uint16_t) * 65536), *cg = gpu_codes(n), *ch = malloc(sizeof(uint16_t) * n);
    float *dec = malloc(sizeof(float) * 65536), *decg = gpu_floats(65536);
    for (int64_t i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)(i / N_LOW) << 16 | LOW_BITS[i % N_LOW];
        memcpy(&x[i], &u, 4);
    }
    for (int fi = 0; fi < 2; fi++) {
        const half_fmt fmt = fi ? HALF_BF16 : HALF_F16;
        const char *name = fi ? "bf16" : "fp16";
        char what[96];
        // every code to float
        for (int i = 0; i < 65536; i++) codes[i] = (uint16_t)i, cg[i] = (uint16_t)i;
        cpu->from_half(dec, codes, 65536, fmt);
        gpu->from_half(decg, cg, 65536, fmt);
        gpu->sync();
        snprintf(what, sizeof what, "from_half %s, every code", name);
        CHECK(bits_differ(what, decg, dec, 65536, sizeof(float)) == 0);
        // floats to codes
        memcpy(xg, x, sizeof(float) * (size_t)n);
        cpu->to_half(ch, x, n, fmt);
        gpu->to_half(cg, xg, n, fmt);
        gpu->sync();
        snprintf(what, sizeof what, "to_half %s, ties and neighbours", name);
        CHECK(bits_differ(what, cg, ch, n, sizeof(uint16_t)) == 0);
        // store: the codes, and x becomes their values
        memcpy(back, x, sizeof(float) * (size_t)n);
        cpu->store_half(ch, back, n, fmt);
        gpu->store_half(cg, xg, n, fmt);
        gpu->sync();
        snprintf(what, sizeof what, "store_half %s codes", name);
        CHECK(bits_differ(what, cg, ch, n, sizeof(uint16_t)) == 0);
        snprintf(what, sizeof what, "store_half %s values", name);
        CHECK(bits_differ(what, xg, back, n, sizeof(float)) == 0);
        // round in place, counting (and filtering) the non-finite results
        for (int filter = 0; filter < 2; filter++) {
            memcpy(back, x, sizeof(float) * (size_t)n);
            memcpy(xg, x, sizeof(float) * (size_t)n);
            const int64_t nc = cpu->round_half(back, n, fmt, filter), ng = gpu->round_half(xg, n, fmt, filter);
            snprintf(what, sizeof what, "round_half %s filter %d", name, filter);
            CHECK(bits_differ(what, xg, back, n, sizeof(float)) == 0);
            printf("    %-48s gpu %lld cpu %lld non-finite\n", "", (long long)ng, (long long)nc);
            CHECK(ng == nc && nc > 0);
        }
        const int64_t off = 65536 * 7 + 3, m = 4099; // around 65504 and 65520: fp16's overflow
        memcpy(back, x, sizeof(float) * (size_t)n);
        memcpy(xg, x, sizeof(float) * (size_t)n);
        const int64_t nc = cpu->round_half(back + off, m, fmt, 1), ng = gpu->round_half(xg + off, m, fmt, 1);
        snprintf(what, sizeof what, "round_half %s filter 1, %lld from %lld", name, (long long)m, (long long)off);
        CHECK(bits_differ(what, xg, back, n, sizeof(float)) == 0 && ng == nc);
        CHECK(gpu->round_half(xg, 0, fmt, 1) == 0);
    }
    free(x), free(back), free(codes), free(ch), free(dec);
    gpu->free(xg), gpu->free(cg), gpu->free(decg);
}

// AdamW with e6m9/ue6m10 moments: the same operations as adamw_update between
// the conversions, expected bit-exact: the moments' codes must match, p
// within 1e-6 relative (1e-7 absolute), as test_adamw_ema. Moments include
// zero, subnormal codes, the largest codes and negative m.
static void test_adamw16(void) {
    const int64_t n = 100003;
    pair p = pair_rand(n, 211, -1, 1), g = pair_rand(n, 212, -1, 1), mf = pair_rand(n, 213, -0.1f, 0.1f);
    pair vf = pair_rand(n, 214, 0, 0.01f);
    uint16_t *mh = malloc(sizeof(uint16_t) * n), *vh = malloc(sizeof(uint16_t) * n);
    uint16_t *mg = gpu_codes(n), *vg = gpu_codes(n);
    for (int64_t i = 0; i < n; i++) {
        mh[i] = f32_to_e6m9(mf.h[i]);
        vh[i] = f32_to_ue6m10(vf.h[i]);
        if (i % 101 == 0) mh[i] = (uint16_t)(i % 3 ? 0x0005 : 0x7fff), vh[i] = (uint16_t)(i % 2 ? 0x0003 : 0xffff);
        if (i % 103 == 0) g.h[i] = g.g[i] = 0.0f;
        mg[i] = mh[i], vg[i] = vh[i];
    }
    static const struct {
        int64_t t;
        float lr, wd;
    } steps[] = {{1, 1e-3f, 0.01f}, {2, 1e-3f, 0.0f}, {1000, 3e-4f, 0.1f}};
    for (int s = 0; s < 3; s++) {
        cpu->adamw_update16(p.h, mh, vh, g.h, n, steps[s].lr, 0.9f, 0.96f, 1e-8f, steps[s].wd, steps[s].t);
        gpu->adamw_update16(p.g, mg, vg, g.g, n, steps[s].lr, 0.9f, 0.96f, 1e-8f, steps[s].wd, steps[s].t);
        gpu->sync();
        char what[96];
        snprintf(what, sizeof what, "adamw_update16 t %lld p", (long long)steps[s].t);
        CHECK_CLOSE(what, p.g, p.h, n, 1e-7, 1e-6);
        snprintf(what, sizeof what, "adamw_update16 t %lld m (e6m9)", (long long)steps[s].t);
        CHECK(bits_differ(what, mg, mh, n, sizeof(uint16_t)) == 0);
        snprintf(what, sizeof what, "adamw_update16 t %lld v (ue6m10)", (long long)steps[s].t);
        CHECK(bits_differ(what, vg, vh, n, sizeof(uint16_t)) == 0);
    }
    pair_free(&p), pair_free(&g), pair_free(&mf), pair_free(&vf);
    free(mh), free(vh);
    gpu->free(mg), gpu->free(vg);
}

int main(void) {
    if (!cuda_test_init()) {
        printf("test_cuda_ops: no GPU: skipped (%s)\n", dalle_last_error());
        return test_summary();
    }
    printf("test_cuda_ops: %s%s%s\n", gpu->device_name(), tf32 ? " (DALLE_CUDA_TF32=1: TF32 convolutions)" : "",
           quick ? " (DALLE_CUDA_TEST_QUICK=1: no timings, no large convolutions)" : "");
    RUN(test_relu_axpy);
    RUN(test_copy2d);
    RUN(test_pool_upsample);
    RUN(test_onehot_conv);
    RUN(test_gumbel_softmax);
    RUN(test_gumbel_noise);
    RUN(test_kl_uniform);
    RUN(test_logit_laplace);
    RUN(test_adamw_ema);
    RUN(test_grad_sumsq);
    RUN(test_half_conversions);
    RUN(test_adamw16);
    RUN(test_conv2d);
    RUN(test_conv2d16);
    return test_summary();
}
