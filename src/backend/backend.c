// backend.c: the run-time choice of the compute device (backend.h) and the
// functions of ops.h, each of which calls the selected backend's entry. The
// CPU table is built here from backend/cpu/; the CUDA one comes from
// libdalle-cuda.so, loaded with dlopen by backend_cuda_load. With the CUDA
// backend selected the ops only queue on its stream; with DALLE_CUDA_ASYNC=0
// each dispatcher waits for its op (backend_sync), for debugging.
#include "backend/backend.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/conv16.h"
#include "backend/cpu/cpu.h"
#include "backend/ops.h"
#include "core/common.h"

static const backend_ops cpu_table = {
    .name = "cpu",
    .kind = BACKEND_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .sync = cpu_sync,
    .memset0 = cpu_memset0,
    .copy = cpu_copy,
    .mem_info = cpu_mem_info,
    .device_name = cpu_device_name,
    .last_error = cpu_last_error,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .conv2d_scratch_floats = cpu_conv2d_scratch_floats,
    .onehot_conv_forward = cpu_onehot_conv_forward,
    .relu_forward = cpu_relu_forward,
    .relu_backward = cpu_relu_backward,
    .maxpool2_forward = cpu_maxpool2_forward,
    .maxpool2_backward = cpu_maxpool2_backward,
    .upsample2_forward = cpu_upsample2_forward,
    .upsample2_backward = cpu_upsample2_backward,
    .axpy = cpu_axpy,
    .copy2d = cpu_copy2d,
    .gumbel_softmax_forward = cpu_gumbel_softmax_forward,
    .gumbel_softmax_backward = cpu_gumbel_softmax_backward,
    .gumbel_noise = cpu_gumbel_noise,
    .kl_uniform_forward_backward = cpu_kl_uniform_forward_backward,
    .logit_laplace_nll = cpu_logit_laplace_nll,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .attention_decode = cpu_attention_decode,
    .softmax_xent_forward = cpu_softmax_xent_forward,
    .softmax_xent_backward = cpu_softmax_xent_backward,
    .embed_sum_forward = cpu_embed_sum_forward,
    .embed_sum_backward = cpu_embed_sum_backward,
    .to_half = cpu_to_half,
    .from_half = cpu_from_half,
    .store_half = cpu_store_half,
    .round_half = cpu_round_half,
    .linear16_forward = cpu_linear16_forward,
    .linear16_backward = cpu_linear16_backward,
    .conv2d16_forward = cpu_conv2d16_forward,
    .conv2d16_backward = cpu_conv2d16_backward,
    .adamw_update = cpu_adamw_update,
    .adamw_update16 = cpu_adamw_update16,
    .ema_update = cpu_ema_update,
    .grad_sumsq = cpu_grad_sumsq,
    // collectives: NULL, comm.c uses MPI on the CPU
};

static const backend_ops *g_ops = &cpu_table;
static int g_sync_after = 0; // CUDA selected and DALLE_CUDA_ASYNC=0: wait after each op
static atomic_long g_live;   // blocks from backend_alloc not yet freed

const backend_ops *backend(void) { return g_ops; }
const backend_ops *backend_cpu(void) { return &cpu_table; }

// ---------------------------------------------------------------- loading

// The first entry of the table the library left NULL that the models need
// (the collectives may be missing: comm.c says so when asked for them).
static const char *missing_entry(const backend_ops *o) {
#define NEED(f)                                                                                                        \
    if (!o->f) return #f;
    NEED(alloc) NEED(free) NEED(sync) NEED(memset0) NEED(copy) NEED(mem_info) NEED(device_name) NEED(last_error)
    NEED(conv2d_forward) NEED(conv2d_backward) NEED(conv2d_scratch_floats) NEED(onehot_conv_forward)
    NEED(relu_forward) NEED(relu_backward) NEED(maxpool2_forward) NEED(maxpool2_backward) NEED(upsample2_forward)
    NEED(upsample2_backward) NEED(axpy) NEED(copy2d) NEED(gumbel_softmax_forward) NEED(gumbel_softmax_backward)
    NEED(gumbel_noise) NEED(kl_uniform_forward_backward) NEED(logit_laplace_nll) NEED(linear_forward)
    NEED(linear_backward)
    NEED(layernorm_forward) NEED(layernorm_backward) NEED(gelu_forward) NEED(gelu_backward)
    NEED(attention_forward) NEED(attention_backward) NEED(attention_decode) NEED(softmax_xent_forward)
    NEED(softmax_xent_backward) NEED(embed_sum_forward) NEED(embed_sum_backward) NEED(adamw_update)
    NEED(ema_update) NEED(grad_sumsq) NEED(to_half) NEED(from_half) NEED(store_half) NEED(round_half)
    NEED(adamw_update16) NEED(linear16_forward) NEED(linear16_backward) NEED(conv2d16_forward)
    NEED(conv2d16_backward)
#undef NEED
    return NULL;
}

// The library's path: $DALLE_CUDA_LIB, else libdalle-cuda.so in the
// directory of this program. 0, or DALLE_ERR with the error set.
static int cuda_lib_path(char *path, size_t n) {
    const char *env = getenv("DALLE_CUDA_LIB");
    if (env && *env) {
        if (snprintf(path, n, "%s", env) >= (int)n) return dalle_seterr("DALLE_CUDA_LIB: path too long");
        return DALLE_OK;
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return dalle_seterr("cannot find this program's directory (/proc/self/exe) to look for "
                                      "libdalle-cuda.so: set DALLE_CUDA_LIB");
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    if (snprintf(path, n, "%s/libdalle-cuda.so", slash ? exe : ".") >= (int)n)
        return dalle_seterr("libdalle-cuda.so: path too long");
    return DALLE_OK;
}

const backend_ops *backend_cuda_load(void) {
    static backend_ops table;
    static int tried = 0, ok = 0;
    static char why[1024];
    if (tried) {
        if (!ok) dalle_seterr("%s", why);
        return ok ? &table : NULL;
    }
    tried = 1;
    char path[4096];
    if (cuda_lib_path(path, sizeof path) != DALLE_OK) goto fail;
    if (access(path, F_OK) != 0) {
        dalle_seterr("no CUDA backend: %s not found (built with nvcc: make; or set DALLE_CUDA_LIB)", path);
        goto fail;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        dalle_seterr("cannot load the CUDA backend: %s", dlerror());
        goto fail;
    }
    backend_cuda_entry_fn entry = (backend_cuda_entry_fn)dlsym(lib, BACKEND_CUDA_ENTRY);
    if (!entry) {
        dalle_seterr("%s: no entry point %s", path, BACKEND_CUDA_ENTRY);
        dlclose(lib);
        goto fail;
    }
    char err[512] = "";
    if (entry(&table, err, sizeof err) != 0) {
        dalle_seterr("%s", err[0] ? err : "the CUDA backend did not start (no reason given)");
        goto fail; // the library stays loaded: CUDA's runtime does not like being unloaded
    }
    const char *miss = missing_entry(&table);
    if (miss) {
        dalle_seterr("%s: incomplete CUDA backend (no %s)", path, miss);
        goto fail;
    }
    ok = 1;
    return &table;
fail:
    snprintf(why, sizeof why, "%s", dalle_last_error());
    return NULL;
}

// ---------------------------------------------------------------- selection

int backend_select(const char *name) {
    const backend_ops *want = NULL;
    if (!strcmp(name, "cpu")) {
        want = &cpu_table;
    } else if (!strcmp(name, "cuda") || !strcmp(name, "auto")) {
        want = backend_cuda_load();
        if (!want) {
            if (!strcmp(name, "cuda")) fprintf(stderr, "dalle: --device cuda: %s; running on the CPU\n", dalle_last_error());
            else dalle_logv("device auto: %s; running on the CPU", dalle_last_error());
            want = &cpu_table;
        }
    } else {
        return dalle_seterr("unknown device '%s' (cpu, cuda or auto)", name);
    }
    // Memory of one backend cannot be handed to another's ops.
    DALLE_ASSERT(want == g_ops || atomic_load(&g_live) == 0);
    g_ops = want;
    const char *async = getenv("DALLE_CUDA_ASYNC");
    g_sync_after = want->kind == BACKEND_CUDA && async && *async && atoi(async) == 0;
    return want->kind;
}

// ---------------------------------------------------------------- memory

void *backend_alloc(size_t bytes) {
    void *p = g_ops->alloc(bytes);
    if (!p) {
        if (g_ops->kind != BACKEND_CPU) dalle_seterr("%s", g_ops->last_error());
        return NULL;
    }
    atomic_fetch_add(&g_live, 1);
    return p;
}

void backend_free(void *p) {
    if (!p) return;
    atomic_fetch_sub(&g_live, 1);
    g_ops->free(p);
}

void backend_sync(void) { g_ops->sync(); }

// ---------------------------------------------------------------- reports

static double gib(double bytes) { return bytes / (double)(1 << 30); }

const char *backend_describe(char *buf, size_t n) {
    size_t fr = 0, tot = 0;
    if (g_ops->kind == BACKEND_CPU || g_ops->mem_info(&fr, &tot) != 0 || tot == 0)
        snprintf(buf, n, "%s (%s)", g_ops->name, g_ops->device_name());
    else
        snprintf(buf, n, "%s (%s): GPU memory %.2f GiB in use, %.2f GiB free of %.2f GiB", g_ops->name,
                 g_ops->device_name(), gib((double)(tot - fr)), gib((double)fr), gib((double)tot));
    return buf;
}

int backend_fit_message(const char *what, int64_t needed, size_t free_bytes, size_t total_bytes, char *msg,
                        size_t n) {
    msg[0] = 0;
    if (needed >= 0 && (uint64_t)needed + BACKEND_GPU_RESERVE <= (uint64_t)free_bytes) return 0;
    snprintf(msg, n, "%s needs %.2f GiB of GPU memory (+%.2f GiB for the libraries), %.2f GiB free of %.2f GiB", what,
             gib((double)needed), gib((double)BACKEND_GPU_RESERVE), gib((double)free_bytes), gib((double)total_bytes));
    return 1;
}

int backend_check_fit(const char *what, int64_t needed, const char *hint) {
    size_t fr = 0, tot = 0;
    if (g_ops->kind == BACKEND_CPU || g_ops->mem_info(&fr, &tot) != 0) return DALLE_OK;
    char msg[512];
    if (!backend_fit_message(what, needed, fr, tot, msg, sizeof msg)) return DALLE_OK;
    return hint ? dalle_seterr("%s: %s", msg, hint) : dalle_seterr("%s", msg);
}

// ---------------------------------------------------------------- profile

// DALLE_PROFILE=1: every op waits for its work and adds its wall time to a
// table by name, printed on stderr at exit (backend_profile_print).
typedef struct {
    const char *name;
    int64_t calls;
    double seconds;
} prof_row;
enum { PROF_ROWS = 64 };
static int g_prof = -1; // -1: DALLE_PROFILE not read yet
static prof_row g_prof_rows[PROF_ROWS];
static double g_prof_t0; // when profiling started

static int profiling(void) {
    if (g_prof < 0) {
        const char *s = getenv("DALLE_PROFILE");
        g_prof = s && atoi(s) == 1;
        if (g_prof) {
            g_prof_t0 = dalle_time();
            atexit(backend_profile_print);
        }
    }
    return g_prof;
}

static int prof_cmp(const void *a, const void *b) {
    double x = ((const prof_row *)a)->seconds, y = ((const prof_row *)b)->seconds;
    return (x < y) - (x > y);
}

void backend_profile_print(void) {
    if (g_prof != 1) return;
    prof_row rows[PROF_ROWS];
    int n = 0;
    double ops = 0;
    int64_t calls = 0;
    for (int i = 0; i < PROF_ROWS && g_prof_rows[i].name; i++) {
        rows[n++] = g_prof_rows[i];
        ops += g_prof_rows[i].seconds;
        calls += g_prof_rows[i].calls;
    }
    qsort(rows, (size_t)n, sizeof *rows, prof_cmp);
    double wall = dalle_time() - g_prof_t0;
    fprintf(stderr, "profile (DALLE_PROFILE=1, %s): %.3f s wall, %.3f s in %lld ops, %.3f s outside them\n",
            g_ops->name, wall, ops, (long long)calls, wall - ops);
    fprintf(stderr, "  %-28s %9s %11s %11s %7s\n", "op", "calls", "total ms", "mean us", "of wall");
    for (int i = 0; i < n; i++)
        fprintf(stderr, "  %-28s %9lld %11.2f %11.1f %6.1f%%\n", rows[i].name, (long long)rows[i].calls,
                rows[i].seconds * 1e3, rows[i].seconds / (double)rows[i].calls * 1e6,
                wall > 0 ? 100 * rows[i].seconds / wall : 0.0);
}

void backend_profile_reset(void) {
    if (!profiling()) return;
    g_ops->sync();
    memset(g_prof_rows, 0, sizeof g_prof_rows);
    g_prof_t0 = dalle_time();
}

// Before an op: the time (profiling: once earlier work has finished), else 0.
static inline double op_begin(void) {
    if (g_prof == 0) return 0;
    if (!profiling()) return 0;
    g_ops->sync();
    return dalle_time();
}

// After op NAME that began at t0: waits for it where the selected backend
// runs asynchronously when DALLE_CUDA_ASYNC=0, and profiles it.
static inline void op_end(const char *name, double t0) {
    if (g_sync_after || g_prof == 1) g_ops->sync();
    if (g_prof != 1) return;
    double dt = dalle_time() - t0;
    for (int i = 0; i < PROF_ROWS; i++) {
        prof_row *r = &g_prof_rows[i];
        if (!r->name) r->name = name; // a new row (the ops run on one thread)
        if (r->name == name || !strcmp(r->name, name)) {
            r->calls++;
            r->seconds += dt;
            return;
        }
    }
}

void backend_memset0(void *p, size_t bytes) {
    const double t0 = op_begin();
    g_ops->memset0(p, bytes);
    op_end("memset0", t0);
}

void backend_copy(void *dst, const void *src, size_t bytes) {
    const double t0 = op_begin();
    g_ops->copy(dst, src, bytes);
    op_end("copy", t0);
}

// ---------------------------------------------------------------- the ops of ops.h

void conv2d_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci, int Co, int H, int W,
                    int k, float alpha, float beta, float *scratch) {
    const double t0 = op_begin();
    g_ops->conv2d_forward(out, in, w, b, B, Ci, Co, H, W, k, alpha, beta, scratch);
    op_end("conv2d_forward", t0);
}

void conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int B,
                     int Ci, int Co, int H, int W, int k, float alpha, float *scratch) {
    const double t0 = op_begin();
    g_ops->conv2d_backward(din, dw, db, dout, in, w, B, Ci, Co, H, W, k, alpha, scratch);
    op_end("conv2d_backward", t0);
}

int64_t conv2d_scratch_floats(int Ci, int Co, int H, int W, int k) {
    return g_ops->conv2d_scratch_floats(Ci, Co, H, W, k);
}

void onehot_conv_forward(float *out, const int32_t *codes, const float *w, const float *bias, int B, int V, int Co,
                         int HW) {
    const double t0 = op_begin();
    g_ops->onehot_conv_forward(out, codes, w, bias, B, V, Co, HW);
    op_end("onehot_conv_forward", t0);
}

void relu_forward(float *out, const float *in, int64_t n) {
    const double t0 = op_begin();
    g_ops->relu_forward(out, in, n);
    op_end("relu_forward", t0);
}

void relu_backward(float *din, const float *dout, const float *in, int64_t n) {
    const double t0 = op_begin();
    g_ops->relu_backward(din, dout, in, n);
    op_end("relu_backward", t0);
}

void maxpool2_forward(float *out, const float *in, int B, int C, int H, int W) {
    const double t0 = op_begin();
    g_ops->maxpool2_forward(out, in, B, C, H, W);
    op_end("maxpool2_forward", t0);
}

void maxpool2_backward(float *din, const float *dout, const float *in, int B, int C, int H, int W) {
    const double t0 = op_begin();
    g_ops->maxpool2_backward(din, dout, in, B, C, H, W);
    op_end("maxpool2_backward", t0);
}

void upsample2_forward(float *out, const float *in, int B, int C, int H, int W) {
    const double t0 = op_begin();
    g_ops->upsample2_forward(out, in, B, C, H, W);
    op_end("upsample2_forward", t0);
}

void upsample2_backward(float *din, const float *dout, int B, int C, int H, int W) {
    const double t0 = op_begin();
    g_ops->upsample2_backward(din, dout, B, C, H, W);
    op_end("upsample2_backward", t0);
}

void axpy(float *y, float a, const float *x, int64_t n) {
    const double t0 = op_begin();
    g_ops->axpy(y, a, x, n);
    op_end("axpy", t0);
}

void copy2d(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows, int64_t cols) {
    const double t0 = op_begin();
    g_ops->copy2d(dst, dst_stride, src, src_stride, rows, cols);
    op_end("copy2d", t0);
}

void gumbel_softmax_forward(float *z, const float *logits, const float *g, float tau, int B, int V, int P) {
    const double t0 = op_begin();
    g_ops->gumbel_softmax_forward(z, logits, g, tau, B, V, P);
    op_end("gumbel_softmax_forward", t0);
}

void gumbel_softmax_backward(float *dlogits, const float *dz, const float *z, float tau, int B, int V, int P) {
    const double t0 = op_begin();
    g_ops->gumbel_softmax_backward(dlogits, dz, z, tau, B, V, P);
    op_end("gumbel_softmax_backward", t0);
}

void gumbel_noise(float *g, uint64_t key, uint64_t counter, int64_t first, int64_t n) {
    const double t0 = op_begin();
    g_ops->gumbel_noise(g, key, counter, first, n);
    op_end("gumbel_noise", t0);
}

double kl_uniform_forward_backward(float *dlogits, const float *logits, float scale, int B, int V, int P) {
    const double t0 = op_begin();
    double r = g_ops->kl_uniform_forward_backward(dlogits, logits, scale, B, V, P);
    op_end("kl_uniform_forward_backward", t0);
    return r;
}

double logit_laplace_nll(float *dstats, const float *stats, const float *x, float scale, int B, int N) {
    const double t0 = op_begin();
    double r = g_ops->logit_laplace_nll(dstats, stats, x, scale, B, N);
    op_end("logit_laplace_nll", t0);
    return r;
}

void linear_forward(float *out, const float *in, const float *w, const float *b, int64_t M, int n_in, int n_out,
                    float beta) {
    const double t0 = op_begin();
    g_ops->linear_forward(out, in, w, b, M, n_in, n_out, beta);
    op_end("linear_forward", t0);
}

void linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int64_t M,
                     int n_in, int n_out) {
    const double t0 = op_begin();
    g_ops->linear_backward(din, dw, db, dout, in, w, M, n_in, n_out);
    op_end("linear_backward", t0);
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                       int64_t M, int C) {
    const double t0 = op_begin();
    g_ops->layernorm_forward(out, mean, rstd, in, w, b, M, C);
    op_end("layernorm_forward", t0);
}

void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int64_t M, int C) {
    const double t0 = op_begin();
    g_ops->layernorm_backward(din, dw, db, dout, in, w, mean, rstd, M, C);
    op_end("layernorm_backward", t0);
}

void gelu_forward(float *out, const float *in, int64_t n) {
    const double t0 = op_begin();
    g_ops->gelu_forward(out, in, n);
    op_end("gelu_forward", t0);
}

void gelu_backward(float *din, const float *dout, const float *in, int64_t n) {
    const double t0 = op_begin();
    g_ops->gelu_backward(din, dout, in, n);
    op_end("gelu_backward", t0);
}

void attention_forward(float *out, float *p, const float *qkv, const int32_t *off, const int32_t *keys, int64_t nnz,
                       int B, int T, int NH, int HS) {
    const double t0 = op_begin();
    g_ops->attention_forward(out, p, qkv, off, keys, nnz, B, T, NH, HS);
    op_end("attention_forward", t0);
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *p,
                        const int32_t *off, const int32_t *keys, int64_t nnz, int B, int T, int NH, int HS,
                        float *scratch) {
    const double t0 = op_begin();
    g_ops->attention_backward(dqkv, dout, qkv, out, p, off, keys, nnz, B, T, NH, HS, scratch);
    op_end("attention_backward", t0);
}

void attention_decode(float *out, const float *qkv, const float *kt, const float *vt, const float *ki,
                      const float *vi, const int32_t *img_keys, int n_img, int L, int W, int K, int NH, int HS,
                      float *scratch) {
    const double t0 = op_begin();
    g_ops->attention_decode(out, qkv, kt, vt, ki, vi, img_keys, n_img, L, W, K, NH, HS, scratch);
    op_end("attention_decode", t0);
}

double softmax_xent_forward(float *logits, const int32_t *targets, int64_t M, int V) {
    const double t0 = op_begin();
    double r = g_ops->softmax_xent_forward(logits, targets, M, V);
    op_end("softmax_xent_forward", t0);
    return r;
}

void softmax_xent_backward(float *probs, const int32_t *targets, int64_t M, int V, float scale) {
    const double t0 = op_begin();
    g_ops->softmax_xent_backward(probs, targets, M, V, scale);
    op_end("softmax_xent_backward", t0);
}

void embed_sum_forward(float *out, const float *table, const int64_t *rows, int64_t M, int K, int C) {
    const double t0 = op_begin();
    g_ops->embed_sum_forward(out, table, rows, M, K, C);
    op_end("embed_sum_forward", t0);
}

void embed_sum_backward(float *dtable, const float *dout, const int64_t *rows, int64_t M, int K, int C) {
    const double t0 = op_begin();
    g_ops->embed_sum_backward(dtable, dout, rows, M, K, C);
    op_end("embed_sum_backward", t0);
}

void to_half(uint16_t *dst, const float *src, int64_t n, half_fmt fmt) {
    const double t0 = op_begin();
    g_ops->to_half(dst, src, n, fmt);
    op_end("to_half", t0);
}

void from_half(float *dst, const uint16_t *src, int64_t n, half_fmt fmt) {
    const double t0 = op_begin();
    g_ops->from_half(dst, src, n, fmt);
    op_end("from_half", t0);
}

void store_half(uint16_t *dst, float *x, int64_t n, half_fmt fmt) {
    const double t0 = op_begin();
    g_ops->store_half(dst, x, n, fmt);
    op_end("store_half", t0);
}

int64_t round_half(float *x, int64_t n, half_fmt fmt, int filter) {
    const double t0 = op_begin();
    int64_t r = g_ops->round_half(x, n, fmt, filter);
    op_end("round_half", t0);
    return r;
}

void linear16_forward(float *out, const float *in, const uint16_t *w, const float *b, int64_t M, int n_in, int n_out,
                      float beta, half_fmt fmt, float *scratch) {
    const double t0 = op_begin();
    g_ops->linear16_forward(out, in, w, b, M, n_in, n_out, beta, fmt, scratch);
    op_end("linear16_forward", t0);
}

void linear16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                       int64_t M, int n_in, int n_out, half_fmt fmt, float *scratch) {
    const double t0 = op_begin();
    g_ops->linear16_backward(din, dw, db, dout, in, w, M, n_in, n_out, fmt, scratch);
    op_end("linear16_backward", t0);
}

void conv2d16_forward(float *out, const float *in, const uint16_t *w, const float *b, int B, int Ci, int Co, int H,
                      int W, int k, float alpha, float beta, half_fmt fmt, float *scratch) {
    const double t0 = op_begin();
    g_ops->conv2d16_forward(out, in, w, b, B, Ci, Co, H, W, k, alpha, beta, fmt, scratch);
    op_end("conv2d16_forward", t0);
}

void conv2d16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                       int B, int Ci, int Co, int H, int W, int k, float alpha, half_fmt fmt, float *scratch) {
    const double t0 = op_begin();
    g_ops->conv2d16_backward(din, dw, db, dout, in, w, B, Ci, Co, H, W, k, alpha, fmt, scratch);
    op_end("conv2d16_backward", t0);
}

int64_t conv2d16_scratch_floats(int B, int Ci, int Co, int H, int W, int k) {
    return conv16_scratch(g_ops->conv2d_scratch_floats(Ci, Co, H, W, k), B, Ci, Co, H, W, k);
}

void adamw_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t t) {
    const double t0 = op_begin();
    g_ops->adamw_update(p, m, v, g, n, lr, beta1, beta2, eps, weight_decay, t);
    op_end("adamw_update", t0);
}

void adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, float lr, float beta1,
                    float beta2, float eps, float weight_decay, int64_t t) {
    const double t0 = op_begin();
    g_ops->adamw_update16(p, m, v, g, n, lr, beta1, beta2, eps, weight_decay, t);
    op_end("adamw_update16", t0);
}

void ema_update(float *ema, const float *p, int64_t n, float decay) {
    const double t0 = op_begin();
    g_ops->ema_update(ema, p, n, decay);
    op_end("ema_update", t0);
}

double grad_sumsq(const float *g, int64_t n) {
    const double t0 = op_begin();
    double r = g_ops->grad_sumsq(g, n);
    op_end("grad_sumsq", t0);
    return r;
}
