// test_cuda_transformer.c: the prior's ops of the CUDA backend
// (src/backend/cuda/transformer_ops.cu, attention.cu) against the CPU
// backend, op by op (the linear layers also with a 16-bit model's weights
// and activations): the same random inputs in a host copy and in GPU
// (managed) memory, the CPU's op on the one and the GPU's on the other, then
// every output and gradient compared with |gpu - cpu| <= atol + rtol*|cpu|,
// atol a fraction of the tensor's largest |value| (the max error printed).
// Backward ops start from gradients that already hold something, since they
// accumulate. Attention runs on the prior's masks (row, column, conv) and
// dense causal ones, small and at the paper's layout (T = 256 + 32*32), and
// prints its GPU time at the paper's layout and the prior benchmark's size;
// both variants of the attention (SIMT and TF32 tensor cores, through
// DALLE_CUDA_ATTN) are checked and timed. Without a usable GPU it says so
// and passes.
//   DALLE_CUDA_LIB=build/libdalle-cuda.so build/tests/cuda/test_cuda_transformer
// With DALLE_CUDA_TF32=1 the linear layers run in TF32 and are held to
// TF32's tolerance. DALLE_CUDA_TEST_QUICK=1 (make test-cuda-emu, on the CPU
// emulator of tests/cuda-emu) skips the timings.

#include "../attn_lists.h"
#include "cuda_test.h"
#include "backend/attn_blocks.h"
#include "core/half.h"

// ---------------------------------------------------------------- linear
// Tolerance: sums of n_in (forward, din) or M (dw) products in another order
// (cuBLASLt against OpenBLAS): 2e-5 of the tensor's largest value in fp32;
// TF32 (10-bit mantissas of the inputs) 5e-3.

static double linear_frac(void) { return tf32 ? 5e-3 : 2e-5; }

// One shape: forward with beta 0 over a GPU output full of NaN (it must not
// be read) and with beta 1 over random values; the bias at an offset of
// bias_off floats (1: not 16-byte aligned, the bias kernel instead of the
// epilogue). Backward with din, dw, db, then dw alone.
static void linear_case(int64_t M, int n_in, int n_out, int bias, int bias_off) {
    char what[128];
    printf("   linear M=%lld %d -> %d%s%s\n", (long long)M, n_in, n_out, bias ? " +b" : "",
           bias_off ? " (bias unaligned)" : "");
    const uint64_t seed = 100 + (uint64_t)(M * 3 + n_in * 7 + n_out);
    pair in = pair_rand(M * n_in, seed, -1, 1), w = pair_rand((int64_t)n_out * n_in, seed + 1, -0.5f, 0.5f);
    pair b = pair_rand(n_out + bias_off, seed + 2, -1, 1), out = pair_new(M * n_out);
    const float *bh = bias ? b.h + bias_off : NULL, *bg = bias ? b.g + bias_off : NULL;
    const float frac = (float)linear_frac();

    for (int64_t i = 0; i < out.n; i++) out.g[i] = NAN;
    cpu->linear_forward(out.h, in.h, w.h, bh, M, n_in, n_out, 0);
    gpu->linear_forward(out.g, in.g, w.g, bg, M, n_in, n_out, 0);
    gpu->sync();
    check_pair("forward, beta 0", &out, frac, 1e-4);
    fill_uniform(out.h, out.n, seed + 3, -1, 1);
    memcpy(out.g, out.h, sizeof(float) * (size_t)out.n);
    cpu->linear_forward(out.h, in.h, w.h, bh, M, n_in, n_out, 1);
    gpu->linear_forward(out.g, in.g, w.g, bg, M, n_in, n_out, 1);
    gpu->sync();
    check_pair("forward, beta 1", &out, frac, 1e-4);

    pair dout = pair_rand(M * n_out, seed + 4, -1, 1), din = pair_rand(M * n_in, seed + 5, -1, 1);
    pair dw = pair_rand((int64_t)n_out * n_in, seed + 6, -1, 1), db = pair_rand(n_out, seed + 7, -1, 1);
    cpu->linear_backward(din.h, dw.h, db.h, dout.h, in.h, w.h, M, n_in, n_out);
    gpu->linear_backward(din.g, dw.g, db.g, dout.g, in.g, w.g, M, n_in, n_out);
    gpu->sync();
    check_pair("backward din", &din, frac, 1e-4);
    check_pair("backward dw", &dw, frac, 1e-4);
    check_pair("backward db (column sums)", &db, 1e-5, 1e-4);
    cpu->linear_backward(NULL, dw.h, NULL, dout.h, in.h, w.h, M, n_in, n_out);
    gpu->linear_backward(NULL, dw.g, NULL, dout.g, in.g, w.g, M, n_in, n_out);
    gpu->sync();
    snprintf(what, sizeof what, "backward dw alone (accumulates again)");
    check_pair(what, &dw, frac, 1e-4);
    pair_free(&in);
    pair_free(&w);
    pair_free(&b);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&din);
    pair_free(&dw);
    pair_free(&db);
}

static void test_linear(void) {
    linear_case(7, 33, 65, 1, 0);      // odd sizes: no aligned rows
    linear_case(3, 256, 768, 1, 1);    // sampling: a few rows; unaligned bias
    linear_case(256, 256, 768, 1, 0);  // qkv of the small prior
    linear_case(640, 512, 2048, 0, 0); // no bias
    linear_case(2560, 256, 256, 1, 0); // many rows: dw sums 2560 products
}

// ---- a 16-bit model's products: the weight as codes, the activations
// rounded to the format (as the prior stores them), so every product is exact
// on both sides and only the fp32 sums' order differs. Tolerance: fp16 runs
// the fp32 products over the decoded weight (2e-5 of the largest value, as
// above); bf16 the tensor cores, fp32 accumulation in their own order (5e-5).
static void linear16_case(int64_t M, int n_in, int n_out, half_fmt fmt) {
    const char *name = fmt == HALF_BF16 ? "bf16" : "fp16";
    printf("   linear16 %s M=%lld %d -> %d +b\n", name, (long long)M, n_in, n_out);
    const uint64_t seed = 300 + (uint64_t)(M * 3 + n_in * 7 + n_out);
    const int64_t nw = (int64_t)n_out * n_in;
    pair in = pair_rand(M * n_in, seed, -1, 1), wf = pair_rand(nw, seed + 1, -0.5f, 0.5f);
    pair b = pair_rand(n_out, seed + 2, -1, 1), out = pair_new(M * n_out);
    uint16_t *wh = malloc(sizeof(uint16_t) * (size_t)nw), *wg = gpu_elems(1, sizeof(uint16_t) * (size_t)nw);
    float *sh = malloc(sizeof(float) * (size_t)nw), *sg = gpu_elems(1, sizeof(float) * (size_t)nw); // scratch
    half_round(in.h, in.n, fmt, 0);
    memcpy(in.g, in.h, sizeof(float) * (size_t)in.n);
    half_from_f32(wh, wf.h, nw, fmt);
    memcpy(wg, wh, sizeof(uint16_t) * (size_t)nw);
    const double frac = fmt == HALF_BF16 ? 5e-5 : linear_frac();
    char what[96];

    for (int64_t i = 0; i < out.n; i++) out.g[i] = NAN;
    cpu->linear16_forward(out.h, in.h, wh, b.h, M, n_in, n_out, 0, fmt, sh);
    gpu->linear16_forward(out.g, in.g, wg, b.g, M, n_in, n_out, 0, fmt, sg);
    gpu->sync();
    snprintf(what, sizeof what, "%s forward, beta 0", name);
    check_pair(what, &out, frac, 1e-4);
    cpu->linear16_forward(out.h, in.h, wh, b.h, M, n_in, n_out, 1, fmt, sh);
    gpu->linear16_forward(out.g, in.g, wg, b.g, M, n_in, n_out, 1, fmt, sg);
    gpu->sync();
    snprintf(what, sizeof what, "%s forward, beta 1", name);
    check_pair(what, &out, frac, 1e-4);

    pair dout = pair_rand(M * n_out, seed + 4, -1, 1), din = pair_rand(M * n_in, seed + 5, -1, 1);
    pair dw = pair_rand(nw, seed + 6, -1, 1), db = pair_rand(n_out, seed + 7, -1, 1);
    half_round(dout.h, dout.n, fmt, 0);
    memcpy(dout.g, dout.h, sizeof(float) * (size_t)dout.n);
    cpu->linear16_backward(din.h, dw.h, db.h, dout.h, in.h, wh, M, n_in, n_out, fmt, sh);
    gpu->linear16_backward(din.g, dw.g, db.g, dout.g, in.g, wg, M, n_in, n_out, fmt, sg);
    gpu->sync();
    snprintf(what, sizeof what, "%s backward din", name);
    check_pair(what, &din, frac, 1e-4);
    snprintf(what, sizeof what, "%s backward dw", name);
    check_pair(what, &dw, frac, 1e-4);
    snprintf(what, sizeof what, "%s backward db (column sums)", name);
    check_pair(what, &db, 1e-5, 1e-4);
    cpu->linear16_backward(NULL, dw.h, NULL, dout.h, in.h, wh, M, n_in, n_out, fmt, sh);
    gpu->linear16_backward(NULL, dw.g, NULL, dout.g, in.g, wg, M, n_in, n_out, fmt, sg);
    gpu->sync();
    snprintf(what, sizeof what, "%s backward dw alone (accumulates again)", name);
    check_pair(what, &dw, frac, 1e-4);
    pair_free(&in), pair_free(&wf), pair_free(&b), pair_free(&out);
    pair_free(&dout), pair_free(&din), pair_free(&dw), pair_free(&db);
    free(wh), free(sh);
    gpu->free(wg), gpu->free(sg);
}

static void test_linear16(void) {
    for (int f = 0; f < 2; f++) {
        const half_fmt fmt = f ? HALF_BF16 : HALF_F16;
        linear16_case(7, 33, 65, fmt);      // odd sizes: no aligned rows
        linear16_case(256, 256, 768, fmt);  // qkv of the small prior
        linear16_case(640, 512, 2048, fmt); // fc
        linear16_case(2560, 256, 256, fmt); // many rows: dw sums 2560 products
    }
}

// ---------------------------------------------------------------- LayerNorm

static void layernorm_case(int64_t M, int C) {
    printf("   layernorm M=%lld C=%d\n", (long long)M, C);
    const uint64_t seed = 200 + (uint64_t)(M + C);
    pair in = pair_rand(M * C, seed, -2, 3), w = pair_rand(C, seed + 1, 0.5f, 1.5f), b = pair_rand(C, seed + 2, -1, 1);
    pair out = pair_new(M * C), mean = pair_new(M), rstd = pair_new(M);
    cpu->layernorm_forward(out.h, mean.h, rstd.h, in.h, w.h, b.h, M, C);
    gpu->layernorm_forward(out.g, mean.g, rstd.g, in.g, w.g, b.g, M, C);
    gpu->sync();
    check_pair("forward out", &out, 1e-5, 1e-4);
    check_pair("forward mean", &mean, 1e-6, 1e-5);
    check_pair("forward rstd", &rstd, 1e-6, 1e-5);
    // the backward from the CPU's saved statistics on both sides
    memcpy(mean.g, mean.h, sizeof(float) * (size_t)M);
    memcpy(rstd.g, rstd.h, sizeof(float) * (size_t)M);
    pair dout = pair_rand(M * C, seed + 3, -1, 1), din = pair_rand(M * C, seed + 4, -1, 1);
    pair dw = pair_rand(C, seed + 5, -1, 1), db = pair_rand(C, seed + 6, -1, 1);
    cpu->layernorm_backward(din.h, dw.h, db.h, dout.h, in.h, w.h, mean.h, rstd.h, M, C);
    gpu->layernorm_backward(din.g, dw.g, db.g, dout.g, in.g, w.g, mean.g, rstd.g, M, C);
    gpu->sync();
    check_pair("backward din", &din, 1e-5, 1e-4);
    check_pair("backward dw (column sums)", &dw, 1e-5, 1e-4);
    check_pair("backward db (column sums)", &db, 1e-5, 1e-4);
    pair_free(&in);
    pair_free(&w);
    pair_free(&b);
    pair_free(&out);
    pair_free(&mean);
    pair_free(&rstd);
    pair_free(&dout);
    pair_free(&din);
    pair_free(&dw);
    pair_free(&db);
}

static void test_layernorm(void) {
    layernorm_case(1000, 256);
    layernorm_case(37, 3968); // the paper's width
    layernorm_case(5000, 33);
}

// ---------------------------------------------------------------- GELU
// The CPU's tanh is a polynomial (relative error ~1e-7), the GPU's tanhf.

static void test_gelu(void) {
    const int64_t n = 1000003;
    pair in = pair_rand(n, 300, -6, 6), out = pair_new(n), dout = pair_rand(n, 301, -1, 1);
    pair din = pair_rand(n, 302, -1, 1);
    cpu->gelu_forward(out.h, in.h, n);
    gpu->gelu_forward(out.g, in.g, n);
    cpu->gelu_backward(din.h, dout.h, in.h, n);
    gpu->gelu_backward(din.g, dout.g, in.g, n);
    gpu->sync();
    check_pair("gelu forward", &out, 1e-6, 1e-5);
    check_pair("gelu backward", &din, 1e-6, 1e-5);
    pair_free(&in);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&din);
}

// ---------------------------------------------------------------- softmax cross-entropy

static void xent_case(int64_t M, int V) {
    printf("   softmax_xent M=%lld V=%d\n", (long long)M, V);
    const uint64_t seed = 400 + (uint64_t)(M + V);
    pair x = pair_rand(M * V, seed, -8, 8);
    int32_t *tg = gpu_elems(1, sizeof(int32_t) * (size_t)M);
    for (int64_t r = 0; r < M; r++) tg[r] = (int32_t)(fill_u(seed + 1, (uint64_t)r) * V);
    const double lc = cpu->softmax_xent_forward(x.h, tg, M, V);
    const double lg = gpu->softmax_xent_forward(x.g, tg, M, V);
    gpu->sync();
    check_scalar("loss (sum of -log p)", lg, lc, 1e-5);
    check_pair("probabilities", &x, 1e-5, 1e-4);
    cpu->softmax_xent_backward(x.h, tg, M, V, 1.0f / (float)M);
    gpu->softmax_xent_backward(x.g, tg, M, V, 1.0f / (float)M);
    gpu->sync();
    check_pair("backward (p - onehot) / M", &x, 1e-5, 1e-4);
    pair_free(&x);
    gpu->free(tg);
}

static void test_softmax_xent(void) {
    xent_case(64, 16640); // the paper's text vocabulary (16384 + 256)
    xent_case(300, 8192); // image codes
    xent_case(5, 7);      // fewer columns than threads
}

// ---------------------------------------------------------------- embeddings

static void test_embed_sum(void) {
    const int64_t M = 777;
    const int K = 3, C = 96, R = 50; // R table rows: ids repeat
    pair table = pair_rand((int64_t)R * C, 500, -1, 1), out = pair_new(M * C);
    int64_t *rows = gpu_elems(1, sizeof(int64_t) * (size_t)(M * K));
    for (int64_t i = 0; i < M * K; i++) {
        const double u = fill_u(501, (uint64_t)i);
        rows[i] = u < 0.2 ? -1 : (int64_t)(u * R) * C; // some slots name no row
    }
    cpu->embed_sum_forward(out.h, table.h, rows, M, K, C);
    gpu->embed_sum_forward(out.g, table.g, rows, M, K, C);
    gpu->sync();
    check_pair("forward (the CPU's sums exactly)", &out, 0, 0);
    pair dout = pair_rand(M * C, 502, -1, 1), dtable = pair_rand((int64_t)R * C, 503, -1, 1);
    cpu->embed_sum_backward(dtable.h, dout.h, rows, M, K, C);
    gpu->embed_sum_backward(dtable.g, dout.g, rows, M, K, C);
    gpu->sync();
    check_pair("backward (atomics: any order)", &dtable, 1e-5, 1e-4);
    pair_free(&table);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&dtable);
    gpu->free(rows);
}

// ---------------------------------------------------------------- attention
// Both variants of the GPU's forward and backward run on every case: SIMT
// (DALLE_CUDA_ATTN=simt, fp32 arithmetic) and tensor cores (tc: TF32
// operands, fp32 accumulation), chosen through the environment variable
// that attention.cu reads at each call. Tolerances, SIMT: outputs are convex
// combinations of values, 1e-5 of the largest; gradients sum over up to T
// keys (dq by atomics, in any order): 1e-5 of the largest, rtol 1e-4. TF32
// (10-bit mantissas of q, k, v, dO, P, dS: each product within 2^-10): 2e-3
// of the largest for the output and the probabilities, 5e-3 for the
// gradients (the linear layers' TF32 tolerance), rtol 1e-3.

static const char *attn_variants[2] = {"simt", "tc"};
static double attn_frac(int v, int grad) { return v == 0 ? 1e-5 : grad ? 5e-3 : 2e-3; }
static double attn_rtol(int v) { return v == 0 ? 1e-4 : 1e-3; }

// Sets DALLE_CUDA_ATTN to `v`, or back to what it was when v is NULL.
static void attn_variant_set(const char *v) {
    static int saved = 0;
    static char *orig = NULL;
    if (!saved) {
        const char *s = getenv("DALLE_CUDA_ATTN");
        orig = s ? strdup(s) : NULL;
        saved = 1;
    }
    if (v) setenv("DALLE_CUDA_ATTN", v, 1);
    else if (orig) setenv("DALLE_CUDA_ATTN", orig, 1);
    else unsetenv("DALLE_CUDA_ATTN");
}

// The probabilities the GPU's saved lse gives (exp(q.k/sqrt(HS) - lse)), for
// every query of (b, h) = (0, 0), against the CPU's p.
static void check_lse(const key_lists *kl, const float *qkv, const float *p_gpu, const float *p_cpu, int NH, int HS,
                      int v) {
    const int C = NH * HS, split = attn_lse_split(kl->nnz, kl->T);
    const float scale = 1.0f / sqrtf((float)HS);
    pair pr = pair_new(kl->nnz);
    for (int t = 0; t < kl->T; t++) {
        const float lse = attn_lse_load(p_gpu, split, t);
        for (int i = kl->off[t]; i < kl->off[t + 1]; i++) {
            const float *q = qkv + (int64_t)t * 3 * C, *k = qkv + (int64_t)kl->keys[i] * 3 * C + C;
            float dot = 0;
            for (int c = 0; c < HS; c++) dot += q[c] * k[c];
            pr.g[i] = expf(dot * scale - lse);
            pr.h[i] = p_cpu[i];
        }
    }
    char what[96];
    snprintf(what, sizeof what, "[%s] probabilities from the saved lse (b=0, h=0)", attn_variants[v]);
    check_pair(what, &pr, attn_frac(v, 0), attn_rtol(v));
    pair_free(&pr);
}

// Forward and backward of one key list at (B, NH, HS), each GPU variant
// against the CPU.
static void attention_case(const key_lists *kl, int B, int NH, int HS, const char *what) {
    const int T = kl->T, C = NH * HS;
    printf("   attention %s: T=%d nnz=%lld B=%d NH=%d HS=%d\n", what, T, (long long)kl->nnz, B, NH, HS);
    const uint64_t seed = 600 + (uint64_t)(T + NH * 7 + HS * 13 + B);
    pair qkv = pair_rand((int64_t)B * T * 3 * C, seed, -1.5f, 1.5f), out = pair_new((int64_t)B * T * C);
    pair p = pair_new((int64_t)B * NH * kl->nnz);
    pair dout = pair_rand(out.n, seed + 1, -1, 1), dqkv = pair_rand(qkv.n, seed + 2, -0.5f, 0.5f);
    float *dqkv0 = malloc(sizeof(float) * (size_t)dqkv.n); // what the backward accumulates into
    memcpy(dqkv0, dqkv.h, sizeof(float) * (size_t)dqkv.n);
    float *scratch_h = malloc(sizeof(float) * (size_t)B * NH * T);
    float *scratch_g = gpu_elems(1, sizeof(float) * (size_t)B * NH * T);
    cpu->attention_forward(out.h, p.h, qkv.h, kl->off, kl->keys, kl->nnz, B, T, NH, HS);
    cpu->attention_backward(dqkv.h, dout.h, qkv.h, out.h, p.h, kl->off, kl->keys, kl->nnz, B, T, NH, HS, scratch_h);
    char line[96];
    for (int v = 0; v < 2; v++) {
        attn_variant_set(attn_variants[v]);
        for (int64_t i = 0; i < out.n; i++) out.g[i] = NAN; // every output is written
        memcpy(dqkv.g, dqkv0, sizeof(float) * (size_t)dqkv.n);
        gpu->attention_forward(out.g, p.g, qkv.g, kl->off, kl->keys, kl->nnz, B, T, NH, HS);
        gpu->sync();
        snprintf(line, sizeof line, "[%s] forward out", attn_variants[v]);
        check_pair(line, &out, attn_frac(v, 0), attn_rtol(v));
        check_lse(kl, qkv.h, p.g, p.h, NH, HS, v);
        gpu->attention_backward(dqkv.g, dout.g, qkv.g, out.g, p.g, kl->off, kl->keys, kl->nnz, B, T, NH, HS, scratch_g);
        gpu->sync();
        snprintf(line, sizeof line, "[%s] backward dqkv", attn_variants[v]);
        check_pair(line, &dqkv, attn_frac(v, 1), attn_rtol(v));
    }
    attn_variant_set(NULL);
    free(dqkv0);
    free(scratch_h);
    gpu->free(scratch_g);
    pair_free(&qkv);
    pair_free(&out);
    pair_free(&p);
    pair_free(&dout);
    pair_free(&dqkv);
}

static void prior_cases(const char *preset, int B, int NH, int HS) {
    prior_config cfg;
    CHECK(prior_config_preset(preset, &cfg) == 0);
    static const char *names[3] = {"row", "column", "conv"};
    for (int t = 0; t < 3; t++) {
        key_lists kl = lists_prior(&cfg, (prior_layer_type)t, gpu->alloc, gpu->free);
        char what[64];
        snprintf(what, sizeof what, "%s %s", preset, names[t]);
        attention_case(&kl, B, NH, HS, what);
        lists_free(&kl);
    }
}

static void test_attention_small(void) {
    prior_cases("tiny", 3, 2, 8); // HS 8: padded to 32
    prior_cases("small", 2, 4, 64);
    key_lists kl = lists_build(200, allow_causal, NULL, gpu->alloc, gpu->free);
    attention_case(&kl, 2, 3, 40, "dense causal"); // HS 40: padded to 64
    attention_case(&kl, 1, 2, 128, "dense causal");
    lists_free(&kl);
    const int n = 3; // nnz < 3T: the lse in one float per query
    kl = lists_build(150, allow_window, &n, gpu->alloc, gpu->free);
    attention_case(&kl, 2, 2, 64, "window 3");
    lists_free(&kl);
    const uint64_t seed = 5; // not causal, some lists empty
    kl = lists_build(130, allow_random, &seed, gpu->alloc, gpu->free);
    attention_case(&kl, 1, 2, 16, "random");
    lists_free(&kl);
}

// The paper's layout (256 text + 32x32 image, conv 11x11) at NH 4, HS 64.
static void test_attention_paper_layout(void) {
    prior_cases("paper", 1, 4, 64);
    key_lists kl = lists_build(1280, allow_causal, NULL, gpu->alloc, gpu->free);
    attention_case(&kl, 1, 4, 64, "dense causal");
    lists_free(&kl);
}

// More key lists than the plan cache holds (16), then the first again: its
// plan is rebuilt, the results still the CPU's.
static void test_attention_plan_cache(void) {
    key_lists kls[20];
    for (int i = 0; i < 20; i++) {
        const int n = 1 + i;
        kls[i] = lists_build(90, allow_window, &n, gpu->alloc, gpu->free);
    }
    for (int i = 0; i < 20; i++) {
        pair qkv = pair_rand(90 * 3 * 64, 700 + (uint64_t)i, -1, 1), out = pair_new(90 * 64);
        float *p = gpu_elems(1, sizeof(float) * (size_t)kls[i].nnz);
        gpu->attention_forward(out.g, p, qkv.g, kls[i].off, kls[i].keys, kls[i].nnz, 1, 90, 1, 64);
        gpu->sync();
        gpu->free(p);
        pair_free(&qkv);
        pair_free(&out);
    }
    attention_case(&kls[0], 1, 1, 64, "window 1 after 19 others");
    attention_case(&kls[19], 1, 1, 64, "window 20");
    for (int i = 0; i < 20; i++) lists_free(&kls[i]);
}

// GPU time of the attention of one layer, per mask and variant: the paper's
// model (B 1, NH 62, HS 64) and the prior benchmark's (B 8, NH 16, HS 64).
// FLOPs as prior_costs counts them (4 HS per key and head forward; the
// backward recomputes: about 2.5x).
static void attention_timing(int B, int NH, const char *label) {
    prior_config cfg;
    CHECK(prior_config_preset("paper", &cfg) == 0);
    const int HS = 64, T = 1280, C = NH * HS;
    float *qkv = gpu_floats((int64_t)B * T * 3 * C), *out = gpu_floats((int64_t)B * T * C);
    float *dout = gpu_floats((int64_t)B * T * C), *dqkv = gpu_floats((int64_t)B * T * 3 * C);
    float *scratch = gpu_floats((int64_t)B * NH * T);
    fill_uniform(qkv, (int64_t)B * T * 3 * C, 800, -1, 1);
    fill_uniform(dout, (int64_t)B * T * C, 801, -1, 1);
    memset(dqkv, 0, sizeof(float) * (size_t)B * T * 3 * C);
    static const char *names[4] = {"row", "column", "conv", "dense causal"};
    double total[2][2] = {{0}};
    for (int t = 0; t < 4; t++) {
        key_lists kl = t < 3 ? lists_prior(&cfg, (prior_layer_type)t, gpu->alloc, gpu->free)
                             : lists_build(T, allow_causal, NULL, gpu->alloc, gpu->free);
        float *p = gpu_floats((int64_t)B * NH * kl.nnz);
        for (int v = 0; v < 2; v++) {
            attn_variant_set(attn_variants[v]);
            double ms[2];
            for (int dir = 0; dir < 2; dir++) {
                int reps = 0;
                double t0 = 0;
                for (; reps < 1000; reps++) { // the first call (plan, warm-up) is not timed
                    if (reps == 1) t0 = now_s();
                    if (reps > 1 && now_s() - t0 > 0.2) break;
                    if (dir == 0) gpu->attention_forward(out, p, qkv, kl.off, kl.keys, kl.nnz, B, T, NH, HS);
                    else
                        gpu->attention_backward(dqkv, dout, qkv, out, p, kl.off, kl.keys, kl.nnz, B, T, NH, HS,
                                                scratch);
                    gpu->sync();
                }
                ms[dir] = 1e3 * (now_s() - t0) / (reps - 1);
                if (t < 3) total[v][dir] += ms[dir];
            }
            const double flops = 4.0 * HS * (double)kl.nnz * B * NH;
            printf("    timing %-6s %-4s %-12s B=%d NH=%d HS=%d nnz=%lld: forward %.3f ms (%.0f GFLOP/s), backward "
                   "%.3f ms (%.0f GFLOP/s)\n",
                   label, attn_variants[v], names[t], B, NH, HS, (long long)kl.nnz, ms[0], flops / ms[0] * 1e-6, ms[1],
                   2.5 * flops / ms[1] * 1e-6);
        }
        gpu->free(p);
        lists_free(&kl);
    }
    for (int v = 0; v < 2; v++)
        printf("    timing %-6s %-4s row+column+conv: forward %.3f ms, backward %.3f ms\n", label, attn_variants[v],
               total[v][0], total[v][1]);
    attn_variant_set(NULL);
    gpu->free(qkv);
    gpu->free(out);
    gpu->free(dout);
    gpu->free(dqkv);
    gpu->free(scratch);
}

static void test_attention_timing(void) {
    attention_timing(1, 62, "paper");
    attention_timing(8, 16, "bench");
}

// ---------------------------------------------------------------- decode

// K candidates over L caption keys and a ring of W image rows per candidate;
// img_keys once in GPU memory and once in plain host memory (the backend
// copies it).
static void test_attention_decode(void) {
    const int K = 5, NH = 4, HS = 64, L = 32, W = 40, C = NH * HS, n_img = 30;
    pair qkv = pair_rand((int64_t)K * 3 * C, 900, -1.5f, 1.5f);
    pair kt = pair_rand((int64_t)L * C, 901, -1.5f, 1.5f), vt = pair_rand((int64_t)L * C, 902, -1, 1);
    pair ki = pair_rand((int64_t)K * W * C, 903, -1.5f, 1.5f), vi = pair_rand((int64_t)K * W * C, 904, -1, 1);
    pair out = pair_new((int64_t)K * C);
    int32_t *keys_g = gpu_elems(1, sizeof(int32_t) * n_img), *keys_h = malloc(sizeof(int32_t) * n_img);
    for (int e = 0; e < n_img; e++) keys_g[e] = keys_h[e] = L + 100 + 3 * e; // wraps around the ring
    float *scratch_h = malloc(sizeof(float) * (size_t)K * NH * (L + n_img));
    float *scratch_g = gpu_elems(1, sizeof(float) * (size_t)K * NH * (L + n_img));
    cpu->attention_decode(out.h, qkv.h, kt.h, vt.h, ki.h, vi.h, keys_h, n_img, L, W, K, NH, HS, scratch_h);
    gpu->attention_decode(out.g, qkv.g, kt.g, vt.g, ki.g, vi.g, keys_g, n_img, L, W, K, NH, HS, scratch_g);
    gpu->sync();
    check_pair("decode, img_keys in GPU memory", &out, 1e-5, 1e-4);
    memset(out.g, 0, sizeof(float) * (size_t)out.n);
    gpu->attention_decode(out.g, qkv.g, kt.g, vt.g, ki.g, vi.g, keys_h, n_img, L, W, K, NH, HS, scratch_g);
    gpu->sync();
    check_pair("decode, img_keys in host memory", &out, 1e-5, 1e-4);
    gpu->attention_decode(out.g, qkv.g, kt.g, vt.g, ki.g, vi.g, keys_g, 0, L, W, K, NH, HS, scratch_g);
    cpu->attention_decode(out.h, qkv.h, kt.h, vt.h, ki.h, vi.h, keys_h, 0, L, W, K, NH, HS, scratch_h);
    gpu->sync();
    check_pair("decode, caption keys only", &out, 1e-5, 1e-4);
    pair_free(&qkv);
    pair_free(&kt);
    pair_free(&vt);
    pair_free(&ki);
    pair_free(&vi);
    pair_free(&out);
    gpu->free(keys_g);
    free(keys_h);
    free(scratch_h);
    gpu->free(scratch_g);
}

int main(void) {
    if (!cuda_test_init()) {
        printf("test_cuda_transformer: no GPU: skipped (%s)\n", dalle_last_error());
        return test_summary();
    }
    printf("test_cuda_transformer: %s%s%s\n", gpu->device_name(),
           tf32 ? " (DALLE_CUDA_TF32=1: TF32 linear layers)" : "",
           quick ? " (DALLE_CUDA_TEST_QUICK=1: no timings)" : "");
    RUN(test_linear);
    RUN(test_linear16);
    RUN(test_layernorm);
    RUN(test_gelu);
    RUN(test_softmax_xent);
    RUN(test_embed_sum);
    RUN(test_attention_decode);
    RUN(test_attention_small);
    RUN(test_attention_plan_cache);
    RUN(test_attention_paper_layout);
    if (!quick) RUN(test_attention_timing);
    return test_summary();
}
