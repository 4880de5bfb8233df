// test_backend.c: the run-time backend layer (src/backend/backend.c) on the
// CPU: the table and its dispatch, memory, the choice of device (a missing
// CUDA library falls back to the CPU with the reason), the refusal of a run
// that does not fit in the GPU's memory (its pure part), and the ops that
// the CPU backend gained for the GPU work: embed_sum_forward/backward against
// the loops they replaced (bit for bit) and attention_decode against a
// double-precision reference.
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/ops.h"
#include "core/common.h"
#include "test.h"
#include "testfill.h"

static void test_cpu_table(void) {
    CHECK(backend() == backend_cpu());
    CHECK(backend()->kind == BACKEND_CPU && !strcmp(backend()->name, "cpu"));
    CHECK(strstr(backend()->device_name(), "CPU") != NULL);
    size_t fr = 1, tot = 1;
    CHECK(backend()->mem_info(&fr, &tot) == 0 && fr == 0 && tot == 0);
    CHECK(backend()->comm_init == NULL); // the CPU's collectives are comm.c's (MPI)
}

static void test_memory(void) {
    float *a = backend_alloc(sizeof(float) * 1000), *b = backend_alloc(sizeof(float) * 1000);
    CHECK(a && b && ((uintptr_t)a % 64) == 0 && ((uintptr_t)b % 64) == 0);
    fill_uniform(a, 1000, 1, -1, 1);
    backend_copy(b, a, sizeof(float) * 1000);
    CHECK(memcmp(a, b, sizeof(float) * 1000) == 0);
    backend_memset0(b + 10, sizeof(float) * 20);
    int bad = 0;
    for (int i = 0; i < 1000; i++) bad += b[i] != (i >= 10 && i < 30 ? 0.0f : a[i]);
    CHECK(bad == 0);
    backend_sync();
    backend_free(a);
    backend_free(b);
    backend_free(NULL);
}

static void test_select(void) {
    CHECK(backend_select("tpu") == DALLE_ERR);
    CHECK(strstr(dalle_last_error(), "unknown device") != NULL);
    CHECK(backend_select("cpu") == BACKEND_CPU);
    // No library where DALLE_CUDA_LIB points: "cuda" says why (on stderr)
    // and runs on the CPU; "auto" quietly so; the reason stays available.
    setenv("DALLE_CUDA_LIB", "/nonexistent/libdalle-cuda.so", 1);
    CHECK(backend_cuda_load() == NULL);
    CHECK(strstr(dalle_last_error(), "/nonexistent/libdalle-cuda.so not found") != NULL);
    CHECK(backend_select("cuda") == BACKEND_CPU);
    CHECK(backend() == backend_cpu());
    CHECK(backend_select("auto") == BACKEND_CPU);
    CHECK(backend_cuda_load() == NULL && strstr(dalle_last_error(), "not found") != NULL);
}

// A run fits when its bytes plus the libraries' reserve are free; else the
// message gives both sides. On the CPU nothing is ever refused.
static void test_fit_message(void) {
    char msg[512];
    const size_t GiB = (size_t)1 << 30, free_b = 10 * GiB, total = 80 * GiB;
    CHECK(backend_fit_message("x", (int64_t)(free_b - BACKEND_GPU_RESERVE), free_b, total, msg, sizeof msg) == 0);
    CHECK(msg[0] == 0);
    CHECK(backend_fit_message("prior train", (int64_t)(free_b - BACKEND_GPU_RESERVE) + 1, free_b, total, msg,
                              sizeof msg) == 1);
    CHECK(strstr(msg, "prior train needs 9.50 GiB of GPU memory (+0.50 GiB for the libraries), 10.00 GiB free of "
                      "80.00 GiB") != NULL);
    printf("    %s\n", msg);
    CHECK(backend_fit_message("big", (int64_t)100 * GiB, 0, total, msg, sizeof msg) == 1);
    CHECK(strstr(msg, "needs 100.00 GiB") && strstr(msg, "0.00 GiB free"));
    CHECK(backend_check_fit("anything", INT64_MAX / 2, "hint") == DALLE_OK); // the CPU
}

// The prior's embedding sums: text rows (token + position), image rows
// (token + row + column), and a row naming nothing, against the loops of
// forward.c they replaced, bit for bit.
static void test_embed_sum(void) {
    enum { C = 37, NT = 50, M = 300, K = 3 };
    float *table = malloc(sizeof(float) * NT * C), *out = malloc(sizeof(float) * M * C);
    float *ref = malloc(sizeof(float) * M * C), *dout = malloc(sizeof(float) * M * C);
    float *dt = calloc(NT * C, sizeof(float)), *dref = calloc(NT * C, sizeof(float));
    int64_t *rows = malloc(sizeof(int64_t) * M * K);
    fill_uniform(table, NT * C, 2, -1, 1);
    fill_uniform(dout, M * C, 3, -1, 1);
    for (int r = 0; r < M; r++) {
        int kinds = r == 7 ? 0 : r % 3 == 0 ? 2 : 3; // rows naming 0, 2 or 3 table rows
        for (int k = 0; k < K; k++)
            rows[r * K + k] = k < kinds ? (int64_t)((r * 7 + k * 13) % NT) * C : -1;
    }
    embed_sum_forward(out, table, rows, M, K, C);
    for (int r = 0; r < M; r++)
        for (int c = 0; c < C; c++) {
            const int64_t *rr = rows + r * K;
            float *o = ref + r * C + c;
            if (rr[0] < 0) *o = 0;
            else if (rr[2] < 0) *o = table[rr[0] + c] + table[rr[1] + c];
            else *o = table[rr[0] + c] + table[rr[1] + c] + table[rr[2] + c];
        }
    CHECK(memcmp(out, ref, sizeof(float) * M * C) == 0);
    fill_uniform(dt, NT * C, 4, -1, 1);
    memcpy(dref, dt, sizeof(float) * NT * C);
    embed_sum_backward(dt, dout, rows, M, K, C);
    for (int r = 0; r < M; r++)
        for (int k = 0; k < K; k++)
            if (rows[r * K + k] >= 0)
                for (int c = 0; c < C; c++) dref[rows[r * K + k] + c] += dout[r * C + c];
    CHECK(memcmp(dt, dref, sizeof(float) * NT * C) == 0);
    free(table), free(out), free(ref), free(dout), free(dt), free(dref), free(rows);
}

// attention_decode: K candidates, NH heads, L caption keys and a ring of W
// image rows of which n_img are attended, against a double reference.
static void test_attention_decode(void) {
    enum { K = 3, NH = 2, HS = 8, C = NH * HS, L = 5, W = 6, n_img = 4 };
    const int32_t img_keys[n_img] = {L + 0, L + 3, L + 7, L + 8}; // rings rows 0, 3, 1, 2
    float *qkv = malloc(sizeof(float) * K * 3 * C), *kt = malloc(sizeof(float) * L * C);
    float *vt = malloc(sizeof(float) * L * C), *ki = malloc(sizeof(float) * K * W * C);
    float *vi = malloc(sizeof(float) * K * W * C), *out = malloc(sizeof(float) * K * C);
    float *ref = malloc(sizeof(float) * K * C), *scratch = malloc(sizeof(float) * K * NH * (L + n_img));
    fill_uniform(qkv, K * 3 * C, 5, -1, 1);
    fill_uniform(kt, L * C, 6, -1, 1);
    fill_uniform(vt, L * C, 7, -1, 1);
    fill_uniform(ki, K * W * C, 8, -1, 1);
    fill_uniform(vi, K * W * C, 9, -1, 1);
    attention_decode(out, qkv, kt, vt, ki, vi, img_keys, n_img, L, W, K, NH, HS, scratch);
    for (int k = 0; k < K; k++)
        for (int h = 0; h < NH; h++) {
            double s[L + n_img], mx = -1e300, sum = 0;
            const float *kr[L + n_img], *vr[L + n_img];
            for (int t = 0; t < L; t++) kr[t] = kt + t * C + h * HS, vr[t] = vt + t * C + h * HS;
            for (int e = 0; e < n_img; e++) {
                int row = (img_keys[e] - L) % W;
                kr[L + e] = ki + (k * W + row) * C + h * HS;
                vr[L + e] = vi + (k * W + row) * C + h * HS;
            }
            for (int e = 0; e < L + n_img; e++) {
                double a = 0;
                for (int i = 0; i < HS; i++) a += (double)qkv[k * 3 * C + h * HS + i] * kr[e][i];
                s[e] = a / sqrt((double)HS);
                mx = s[e] > mx ? s[e] : mx;
            }
            for (int e = 0; e < L + n_img; e++) sum += s[e] = exp(s[e] - mx);
            for (int i = 0; i < HS; i++) {
                double o = 0;
                for (int e = 0; e < L + n_img; e++) o += s[e] / sum * vr[e][i];
                ref[k * C + h * HS + i] = (float)o;
            }
        }
    CHECK_CLOSE("attention_decode", out, ref, K * C, 1e-6, 1e-5);
    free(qkv), free(kt), free(vt), free(ki), free(vi), free(out), free(ref), free(scratch);
}

int main(void) {
    RUN(test_cpu_table);
    RUN(test_memory);
    RUN(test_select);
    RUN(test_fit_message);
    RUN(test_embed_sum);
    RUN(test_attention_decode);
    return test_summary();
}
