// test_attn_blocks.c: the tiling plan of the block-sparse attention kernels
// (src/backend/attn_blocks.c) on the prior's real masks, and a plain-C
// emulation of the CUDA kernels (src/backend/cuda/attention.cu) that walks
// the plan exactly as they do: the forward's online softmax over the key
// blocks of each query block, saving the log-sum-exp; the backward's
// recomputation per key block from it, with D = rowsum(dO * O) from the
// forward's output; compared with the CPU attention. This machine has no
// GPU: the emulation is where the kernels' logic is checked.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/attn_blocks.h"
#include "backend/backend.h"
#include "core/half.h"
#include "dalle/prior.h"
#include "attn_lists.h"
#include "test.h"
#include "testfill.h"

static key_lists lists_causal(int T) { return lists_build(T, allow_causal, NULL, malloc, free); }
static key_lists lists_window(int T, int n) { return lists_build(T, allow_window, &n, malloc, free); }
static key_lists lists_random(int T, uint64_t seed) { return lists_build(T, allow_random, &seed, malloc, free); }
static key_lists lists_full(int T) { return lists_build(T, allow_all, NULL, malloc, free); }

// ---------------------------------------------------------------- the plan

// Checks the plan of kl against the lists: every allowed pair of the plan is
// a listed key and every listed key is allowed by exactly one pair; pairs in
// order; full pairs really full; the by-key-block listing a permutation.
static void check_plan(const key_lists *kl, int BQ, int BK, const char *what) {
    attn_plan pl;
    char err[256] = "";
    int rc = attn_plan_build(&pl, kl->off, kl->keys, kl->nnz, kl->T, BQ, BK, err, sizeof err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "  %s: %s\n", what, err);
        return;
    }
    const int T = kl->T;
    unsigned char *want = calloc((size_t)T * T, 1), *got = calloc((size_t)T * T, 1);
    for (int q = 0; q < T; q++)
        for (int i = kl->off[q]; i < kl->off[q + 1]; i++) want[(int64_t)q * T + kl->keys[i]] = 1;
    int order_ok = 1, range_ok = 1, full_ok = 1;
    int64_t allowed = 0, dup = 0;
    CHECK(pl.n_qb == (T + BQ - 1) / BQ && pl.n_kb == (T + BK - 1) / BK);
    CHECK(pl.q_off[0] == 0 && pl.q_off[pl.n_qb] == pl.n_pairs);
    for (int qb = 0; qb < pl.n_qb; qb++)
        for (int p = pl.q_off[qb]; p < pl.q_off[qb + 1]; p++) {
            order_ok &= pl.pair_qb[p] == qb && (p == pl.q_off[qb] || pl.pair_kb[p] > pl.pair_kb[p - 1]);
            int q0 = qb * BQ, k0 = pl.pair_kb[p] * BK, n_in = 0;
            for (int r = 0; r < BQ; r++)
                for (int c = 0; c < BK; c++) {
                    if (!attn_plan_allows(&pl, p, r, c)) continue;
                    n_in++;
                    if (q0 + r >= T || k0 + c >= T) {
                        range_ok = 0;
                        continue;
                    }
                    dup += got[(int64_t)(q0 + r) * T + k0 + c]++;
                    allowed++;
                }
            if (pl.pair_mask[p] < 0) full_ok &= n_in == BQ * BK;
            else full_ok &= n_in > 0 && n_in < BQ * BK;
        }
    CHECK(order_ok);
    CHECK(range_ok);
    CHECK(full_ok);
    CHECK(dup == 0);
    CHECK(allowed == kl->nnz);
    CHECK(memcmp(want, got, (size_t)T * T) == 0);
    // by key block: each pair once, query blocks ascending
    int *seen = calloc((size_t)pl.n_pairs + 1, sizeof *seen);
    int kb_ok = pl.k_off[0] == 0 && pl.k_off[pl.n_kb] == pl.n_pairs;
    for (int kb = 0; kb < pl.n_kb; kb++)
        for (int i = pl.k_off[kb]; i < pl.k_off[kb + 1]; i++) {
            int p = pl.k_pairs[i];
            kb_ok &= p >= 0 && p < pl.n_pairs && pl.pair_kb[p] == kb && !seen[p]++;
            kb_ok &= i == pl.k_off[kb] || pl.pair_qb[p] > pl.pair_qb[pl.k_pairs[i - 1]];
        }
    CHECK(kb_ok);
    printf("    %-28s T=%-5d %2dx%-2d pairs %5d (%5d partial), visited %9lld for nnz %9lld (%.1f%%)\n", what, T, BQ,
           BK, pl.n_pairs, pl.n_partial, (long long)attn_plan_visited(&pl), (long long)kl->nnz,
           100.0 * (double)kl->nnz / (double)(attn_plan_visited(&pl) ? attn_plan_visited(&pl) : 1));
    free(seen);
    free(want);
    free(got);
    attn_plan_free(&pl);
}

// Calls fn on the key lists of each layer type of PRESET (row, column, conv).
static void for_each_mask(const char *preset, void (*fn)(const key_lists *kl, const char *what, const int *arg),
                          const int *arg) {
    prior_config cfg;
    CHECK(prior_config_preset(preset, &cfg) == 0);
    static const char *names[3] = {"row", "column", "conv"};
    for (int t = 0; t < 3; t++) {
        key_lists kl = lists_prior(&cfg, (prior_layer_type)t, malloc, free);
        char what[64];
        snprintf(what, sizeof what, "%s %s", preset, names[t]);
        fn(&kl, what, arg);
        lists_free(&kl);
    }
}

static void plans_of(const key_lists *kl, const char *what, const int *arg) {
    (void)arg;
    check_plan(kl, ATTN_BQ, ATTN_BK, what);
    if (kl->T <= 400) { // odd tile sides: blocks that cross T and the text/image border
        check_plan(kl, 16, 32, what);
        check_plan(kl, 5, 7, what);
    }
}
static void check_config_plans(const char *preset) { for_each_mask(preset, plans_of, NULL); }

static void test_plan_tiny(void) { check_config_plans("tiny"); }
static void test_plan_small(void) { check_config_plans("small"); }
static void test_plan_paper(void) { check_config_plans("paper"); }

static void test_plan_other_lists(void) {
    key_lists kl = lists_causal(1280);
    check_plan(&kl, ATTN_BQ, ATTN_BK, "dense causal");
    lists_free(&kl);
    kl = lists_causal(100);
    check_plan(&kl, ATTN_BQ, ATTN_BK, "dense causal");
    check_plan(&kl, 64, 1, "dense causal");
    lists_free(&kl);
    kl = lists_random(150, 7);
    check_plan(&kl, ATTN_BQ, ATTN_BK, "random");
    check_plan(&kl, 3, 64, "random");
    lists_free(&kl);
    kl = lists_causal(1); // one position
    check_plan(&kl, ATTN_BQ, ATTN_BK, "T=1");
    lists_free(&kl);
}

// Malformed lists are refused with a message naming the query.
static void test_plan_bad_lists(void) {
    attn_plan pl;
    char err[256];
    int32_t off[4] = {0, 1, 3, 4}, keys[4] = {0, 0, 1, 2};
    CHECK(attn_plan_build(&pl, off, keys, 4, 3, 64, 64, err, sizeof err) == 0);
    attn_plan_free(&pl);
    keys[2] = 0; // query 1: keys 0, 0
    CHECK(attn_plan_build(&pl, off, keys, 4, 3, 64, 64, err, sizeof err) == -1);
    CHECK(strstr(err, "query 1") != NULL);
    CHECK(pl.blob == NULL && pl.n_pairs == 0);
    keys[2] = 1;
    keys[3] = 3; // out of range
    CHECK(attn_plan_build(&pl, off, keys, 4, 3, 64, 64, err, sizeof err) == -1);
    CHECK(strstr(err, "query 2") != NULL);
    keys[3] = 2;
    CHECK(attn_plan_build(&pl, off, keys, 5, 3, 64, 64, err, sizeof err) == -1); // nnz != off[T]
    CHECK(attn_plan_build(&pl, off, keys, 4, 3, 64, 65, err, sizeof err) == -1); // BK > 64
    off[1] = 2;
    off[2] = 1; // decreasing
    CHECK(attn_plan_build(&pl, off, keys, 4, 3, 64, 64, err, sizeof err) == -1);
}

// The split lse: three floats, each unchanged by rounding to bf16 (and to
// fp16 but for ~3e-8 in the smallest), whose sum is the lse.
static void test_lse_split(void) {
    int exact = 1, close16 = 1;
    float p[3], r[3];
    for (int i = 0; i < 20000; i++) {
        const float x = (float)((fill_u(21, (uint64_t)i) - 0.3) * (i % 3 ? 40.0 : 1e-3));
        attn_lse_store(p, 1, 0, x);
        exact &= attn_lse_load(p, 1, 0) == x;
        for (int f = 0; f < 2; f++) {
            memcpy(r, p, sizeof r);
            half_round(r, 3, f ? HALF_F16 : HALF_BF16, 0);
            const float y = attn_lse_load(r, 1, 0);
            if (f) close16 &= fabsf(y - x) <= 1e-7f + 1e-7f * fabsf(x);
            else exact &= y == x;
        }
    }
    CHECK(exact);
    CHECK(close16);
    attn_lse_store(p, 1, 0, -INFINITY); // an empty list
    CHECK(attn_lse_load(p, 1, 0) == -INFINITY);
    attn_lse_store(p, 0, 1, 2.5f); // unsplit: p[t]
    CHECK(p[1] == 2.5f);
}

// ---------------------------------------------------------------- emulation
// The kernels of attention.cu, one thread block at a time, in plain C: the
// same tiles, the same walk over the plan, the same arithmetic (fp32,
// scores q.k * scale, -inf outside the mask, rescaling by exp(m_old - m_new)).

enum { EMU_HS = 64 };

typedef struct {
    const attn_plan *pl;
    int B, T, NH, HS;
    float scale;
} emu_shape;

// Rows [t0, t0 + n) of q, k or v (part 0, 1, 2) of head h of sequence b into
// tile (n, EMU_HS), zero beyond T (as the kernels' guarded loads).
static void emu_load(float tile[][EMU_HS], const float *qkv, const emu_shape *s, int b, int h, int part, int t0,
                     int n) {
    const int C = s->NH * s->HS;
    for (int r = 0; r < n; r++)
        for (int c = 0; c < EMU_HS; c++) {
            int t = t0 + r;
            tile[r][c] = t < s->T && c < s->HS ? qkv[((int64_t)b * s->T + t) * 3 * C + part * C + h * s->HS + c] : 0;
        }
}

// Rows of dout (B, T, C) the same way.
static void emu_load_dout(float tile[][EMU_HS], const float *dout, const emu_shape *s, int b, int h, int t0, int n) {
    const int C = s->NH * s->HS;
    for (int r = 0; r < n; r++)
        for (int c = 0; c < EMU_HS; c++) {
            int t = t0 + r;
            tile[r][c] = t < s->T && c < s->HS ? dout[((int64_t)b * s->T + t) * C + h * s->HS + c] : 0;
        }
}

static float emu_dot(const float *a, const float *b) {
    float acc = 0;
    for (int c = 0; c < EMU_HS; c++) acc += a[c] * b[c];
    return acc;
}

// attn_forward_kernel for query block qb of (b, h): out (B, T, C) and lse
// (B, NH, nnz: the first T of each (b, h), split where there is room).
static void emu_forward_block(float *out, float *lse, const float *qkv, const emu_shape *s, int qb, int b, int h) {
    const attn_plan *pl = s->pl;
    const int BQ = pl->BQ, BK = pl->BK, q0 = qb * BQ, C = s->NH * s->HS;
    static float Q[64][EMU_HS], K[64][EMU_HS], V[64][EMU_HS], O[64][EMU_HS], S[64][64];
    float m[64], l[64];
    emu_load(Q, qkv, s, b, h, 0, q0, BQ);
    for (int r = 0; r < BQ; r++) {
        m[r] = -INFINITY;
        l[r] = 0;
        for (int c = 0; c < EMU_HS; c++) O[r][c] = 0;
    }
    for (int p = pl->q_off[qb]; p < pl->q_off[qb + 1]; p++) {
        const int k0 = pl->pair_kb[p] * BK;
        emu_load(K, qkv, s, b, h, 1, k0, BK);
        emu_load(V, qkv, s, b, h, 2, k0, BK);
        for (int r = 0; r < BQ; r++)
            for (int c = 0; c < BK; c++) S[r][c] = attn_plan_allows(pl, p, r, c) ? emu_dot(Q[r], K[c]) * s->scale : -INFINITY;
        for (int r = 0; r < BQ; r++) {
            float mx = m[r];
            for (int c = 0; c < BK; c++) mx = fmaxf(mx, S[r][c]);
            if (mx == -INFINITY) continue; // nothing allowed so far: exp(-inf - -inf) would be NaN
            float alpha = expf(m[r] - mx), sum = 0;
            for (int c = 0; c < BK; c++) sum += S[r][c] = expf(S[r][c] - mx);
            l[r] = l[r] * alpha + sum;
            for (int c = 0; c < EMU_HS; c++) {
                float acc = 0;
                for (int j = 0; j < BK; j++) acc += S[r][j] * V[j][c];
                O[r][c] = O[r][c] * alpha + acc;
            }
            m[r] = mx;
        }
    }
    for (int r = 0; r < BQ && q0 + r < s->T; r++) {
        const int t = q0 + r;
        const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
        const int64_t bh = (int64_t)b * s->NH + h;
        for (int c = 0; c < s->HS; c++) out[((int64_t)b * s->T + t) * C + h * s->HS + c] = O[r][c] * inv;
        attn_lse_store(lse + bh * pl->nnz, attn_lse_split(pl->nnz, s->T), t, l[r] > 0 ? m[r] + logf(l[r]) : -INFINITY);
    }
}

// attn_rowdot_kernel: D (B, NH, T) = rowsum(dout * out) over each head's
// channels, as a warp sums them (lane-strided partials, then a butterfly).
static void emu_rowdot(float *D, const float *dout, const float *out, const emu_shape *s) {
    const int C = s->NH * s->HS;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++)
            for (int h = 0; h < s->NH; h++) {
                const int64_t row = ((int64_t)b * s->T + t) * C + h * s->HS;
                float lane[32];
                for (int l = 0; l < 32; l++) {
                    lane[l] = 0;
                    for (int c = l; c < s->HS; c += 32) lane[l] += dout[row + c] * out[row + c];
                }
                for (int o = 16; o > 0; o >>= 1)
                    for (int l = 0; l < o; l++) lane[l] += lane[l + o]; // lane 0's sum of the xor butterfly
                D[((int64_t)b * s->NH + h) * s->T + t] = lane[0];
            }
}

// attn_backward_kernel for key block kb of (b, h): dk, dv of its keys, dq
// of every query that attends them (the kernel's atomicAdd), into dqkv.
static void emu_backward_block(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D,
                               const emu_shape *s, int kb, int b, int h) {
    const attn_plan *pl = s->pl;
    const int BQ = pl->BQ, BK = pl->BK, k0 = kb * BK, C = s->NH * s->HS;
    const int64_t bh = (int64_t)b * s->NH + h;
    static float K[64][EMU_HS], V[64][EMU_HS], Q[64][EMU_HS], dO[64][EMU_HS], dK[64][EMU_HS], dV[64][EMU_HS];
    static float P[64][64], dS[64][64];
    emu_load(K, qkv, s, b, h, 1, k0, BK);
    emu_load(V, qkv, s, b, h, 2, k0, BK);
    memset(dK, 0, sizeof dK);
    memset(dV, 0, sizeof dV);
    for (int i = pl->k_off[kb]; i < pl->k_off[kb + 1]; i++) {
        const int p = pl->k_pairs[i], q0 = pl->pair_qb[p] * BQ;
        emu_load(Q, qkv, s, b, h, 0, q0, BQ);
        emu_load_dout(dO, dout, s, b, h, q0, BQ);
        for (int r = 0; r < BQ; r++) {
            const int t = q0 + r;
            const int split = attn_lse_split(pl->nnz, s->T);
            const float lr = t < s->T ? attn_lse_load(lse + bh * pl->nnz, split, t) : 0;
            const float Dr = t < s->T ? D[bh * s->T + t] : 0;
            for (int c = 0; c < BK; c++) {
                if (!attn_plan_allows(pl, p, r, c)) {
                    P[r][c] = dS[r][c] = 0;
                    continue;
                }
                float pr = expf(emu_dot(Q[r], K[c]) * s->scale - lr), dp = emu_dot(dO[r], V[c]);
                P[r][c] = pr;
                dS[r][c] = pr * (dp - Dr) * s->scale;
            }
        }
        for (int c = 0; c < BK; c++)
            for (int d = 0; d < EMU_HS; d++) {
                float av = 0, ak = 0;
                for (int r = 0; r < BQ; r++) {
                    av += P[r][c] * dO[r][d];
                    ak += dS[r][c] * Q[r][d];
                }
                dV[c][d] += av;
                dK[c][d] += ak;
            }
        for (int r = 0; r < BQ && q0 + r < s->T; r++)
            for (int d = 0; d < s->HS; d++) {
                float aq = 0;
                for (int c = 0; c < BK; c++) aq += dS[r][c] * K[c][d];
                dqkv[((int64_t)b * s->T + q0 + r) * 3 * C + h * s->HS + d] += aq;
            }
    }
    for (int c = 0; c < BK && k0 + c < s->T; c++)
        for (int d = 0; d < s->HS; d++) {
            float *row = dqkv + ((int64_t)b * s->T + k0 + c) * 3 * C + h * s->HS + d;
            row[C] += dK[c][d];
            row[2 * C] += dV[c][d];
        }
}

// The backward pass: D from the forward's output, then every key block.
static void emu_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                         float *D, const emu_shape *s) {
    emu_rowdot(D, dout, out, s);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++)
            for (int kb = 0; kb < s->pl->n_kb; kb++) emu_backward_block(dqkv, dout, qkv, lse, D, s, kb, b, h);
}

// Forward and backward of the emulation against the CPU ops on random data.
static void check_emulation(const key_lists *kl, int B, int NH, int HS, const char *what) {
    CHECK(HS <= EMU_HS);
    attn_plan pl;
    char err[256];
    CHECK(attn_plan_build(&pl, kl->off, kl->keys, kl->nnz, kl->T, ATTN_BQ, ATTN_BK, err, sizeof err) == 0);
    const int T = kl->T, C = NH * HS;
    const int64_t n_qkv = (int64_t)B * T * 3 * C, n_out = (int64_t)B * T * C, n_p = (int64_t)B * NH * kl->nnz;
    float *qkv = malloc(sizeof(float) * n_qkv), *dout = malloc(sizeof(float) * n_out);
    float *out_ref = malloc(sizeof(float) * n_out), *out_emu = malloc(sizeof(float) * n_out);
    float *p_ref = malloc(sizeof(float) * n_p), *p_emu = malloc(sizeof(float) * n_p);
    float *dqkv_ref = malloc(sizeof(float) * n_qkv), *dqkv_emu = malloc(sizeof(float) * n_qkv);
    float *scratch = malloc(sizeof(float) * (size_t)B * NH * T), *D = malloc(sizeof(float) * (size_t)B * NH * T);
    fill_uniform(qkv, n_qkv, 11, -2.0f, 2.0f); // scores of a few units: a real softmax
    fill_uniform(dout, n_out, 12, -1.0f, 1.0f);
    fill_uniform(dqkv_ref, n_qkv, 13, -0.5f, 0.5f); // the backward accumulates
    memcpy(dqkv_emu, dqkv_ref, sizeof(float) * n_qkv);

    const backend_ops *cpu = backend_cpu();
    cpu->attention_forward(out_ref, p_ref, qkv, kl->off, kl->keys, kl->nnz, B, T, NH, HS);
    cpu->attention_backward(dqkv_ref, dout, qkv, out_ref, p_ref, kl->off, kl->keys, kl->nnz, B, T, NH, HS, scratch);

    emu_shape s = {&pl, B, T, NH, HS, 1.0f / sqrtf((float)HS)};
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int qb = 0; qb < pl.n_qb; qb++) emu_forward_block(out_emu, p_emu, qkv, &s, qb, b, h);
    emu_backward(dqkv_emu, dout, qkv, out_emu, p_emu, D, &s);
    char name[96];
    snprintf(name, sizeof name, "%s out B%d NH%d HS%d", what, B, NH, HS);
    CHECK_CLOSE(name, out_emu, out_ref, n_out, 1e-5, 1e-4);
    snprintf(name, sizeof name, "%s dqkv", what);
    CHECK_CLOSE(name, dqkv_emu, dqkv_ref, n_qkv, 2e-5, 1e-4);
    // A 16-bit model rounds p like any activation: the split lse survives it.
    for (int f = 0; f < 2 && attn_lse_split(kl->nnz, T); f++) {
        fill_uniform(dqkv_emu, n_qkv, 13, -0.5f, 0.5f);
        half_round(p_emu, n_p, f ? HALF_F16 : HALF_BF16, 0);
        emu_backward(dqkv_emu, dout, qkv, out_emu, p_emu, D, &s);
        snprintf(name, sizeof name, "%s dqkv, p rounded to %s", what, f ? "fp16" : "bf16");
        CHECK_CLOSE(name, dqkv_emu, dqkv_ref, n_qkv, 2e-5, 1e-4);
    }
    // ... and its output, which the backward then gets: D moves by one
    // rounding of O (as FlashAttention's from its bf16 O), dqkv by about
    // 2^-9 (bf16) or 2^-12 (fp16) of D's terms.
    for (int f = 0; f < 2; f++) {
        memcpy(out_ref, out_emu, sizeof(float) * n_out);
        half_round(out_ref, n_out, f ? HALF_F16 : HALF_BF16, 0);
        fill_uniform(dqkv_emu, n_qkv, 13, -0.5f, 0.5f);
        emu_backward(dqkv_emu, dout, qkv, out_ref, p_emu, D, &s);
        snprintf(name, sizeof name, "%s dqkv, out rounded to %s", what, f ? "fp16" : "bf16");
        CHECK_CLOSE(name, dqkv_emu, dqkv_ref, n_qkv, f ? 1e-3 : 1e-2, 1e-3);
    }
    // the saved log-sum-exp gives back the CPU's probabilities
    int lse_ok = 1;
    for (int b = 0; b < B && lse_ok; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const int64_t bh = (int64_t)b * NH + h;
                const float *q = qkv + ((int64_t)b * T + t) * 3 * C + h * HS;
                for (int i = kl->off[t]; i < kl->off[t + 1]; i++) {
                    const float *k = qkv + ((int64_t)b * T + kl->keys[i]) * 3 * C + C + h * HS;
                    float dot = 0;
                    for (int c = 0; c < HS; c++) dot += q[c] * k[c];
                    float pr = expf(dot * s.scale - attn_lse_load(p_emu + bh * kl->nnz, attn_lse_split(kl->nnz, T), t));
                    lse_ok &= fabsf(pr - p_ref[bh * kl->nnz + i]) <= 1e-5f + 1e-4f * p_ref[bh * kl->nnz + i];
                }
            }
    CHECK(lse_ok);
    free(qkv);
    free(dout);
    free(out_ref);
    free(out_emu);
    free(p_ref);
    free(p_emu);
    free(dqkv_ref);
    free(dqkv_emu);
    free(scratch);
    free(D);
    attn_plan_free(&pl);
}

// arg: B, NH, HS.
static void emulation_of(const key_lists *kl, const char *what, const int *arg) {
    check_emulation(kl, arg[0], arg[1], arg[2], what);
}
static void check_config_emulation(const char *preset, int B, int NH, int HS) {
    const int arg[3] = {B, NH, HS};
    for_each_mask(preset, emulation_of, arg);
}

static void test_emulation_tiny(void) { check_config_emulation("tiny", 2, 2, 8); }
static void test_emulation_small(void) { check_config_emulation("small", 1, 2, 64); }
static void test_emulation_paper(void) { check_config_emulation("paper", 1, 1, 8); }

static void test_emulation_other_lists(void) {
    key_lists kl = lists_causal(200);
    check_emulation(&kl, 2, 1, 24, "dense causal");
    lists_free(&kl);
    kl = lists_random(150, 3); // empty lists give zero rows on both sides
    check_emulation(&kl, 1, 2, 5, "random");
    lists_free(&kl);
    kl = lists_window(70, 2); // nnz < 3T: lse in one float
    CHECK(!attn_lse_split(kl.nnz, kl.T));
    check_emulation(&kl, 2, 3, 16, "window 2");
    lists_free(&kl);
    // The CPU's matrix-product path; its backward takes blocks of B*NH/threads
    // query rows (3 on 2 threads), the last one partial.
    kl = lists_full(130);
    check_emulation(&kl, 2, 3, 16, "full");
    lists_free(&kl);
}

int main(void) {
    RUN(test_plan_tiny);
    RUN(test_plan_small);
    RUN(test_plan_paper);
    RUN(test_plan_other_lists);
    RUN(test_plan_bad_lists);
    RUN(test_lse_split);
    RUN(test_emulation_tiny);
    RUN(test_emulation_small);
    RUN(test_emulation_paper);
    RUN(test_emulation_other_lists);
    return test_summary();
}
