// backend.h: the compute device, chosen at run time. The model code calls the
// ops of ops.h; each op dispatches through the table of the selected backend.
// The CPU backend (backend/cpu/, functions named cpu_OP) is linked into every
// build and is the reference. The CUDA backend (backend/cuda/, functions
// named cuda_OP) is a shared library, build/libdalle-cuda.so, that
// backend_select("cuda") loads with dlopen: the CPU build and its tests never
// link CUDA, and a machine without a GPU says so once and runs on the CPU.
//
// Memory: every pointer an op reads or writes comes from backend_alloc. On the
// CPU that is ordinary (counted) host memory; on CUDA it is managed memory
// (cudaMallocManaged), which host code may also read and write, but only after
// backend_sync() has waited for the ops in flight. Sizes and layouts are those
// of ops.h.
//
// Synchronisation: with the CUDA backend selected, the functions of ops.h
// (backend.c's dispatchers) and backend_memset0 queue their op on the stream
// and return; host code must call backend_sync() before it touches what they
// write, or writes what they may still read (backend_copy waits for its copy,
// and ops returning a value wait for it). DALLE_CUDA_ASYNC=0 in the
// environment makes every op wait before returning (for debugging).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/half.h"

typedef enum { BACKEND_CPU = 0, BACKEND_CUDA = 1 } backend_kind;

// The op table. Every entry has the contract of the ops.h function of the same
// name (ops.h documents sizes, layouts, accumulation); an implementation may
// keep different private state in the buffers ops.h calls "kept for the
// backward" (attention_forward's p) as long as its own backward reads it.
typedef struct backend_ops {
    const char *name;   // "cpu", "cuda"
    backend_kind kind;
    // ---- memory and synchronisation
    void *(*alloc)(size_t bytes);   // NULL (error set) on OOM; 64-byte aligned on the CPU, 256 on CUDA
    void (*free)(void *p);          // NULL is a no-op
    void (*sync)(void);             // waits for every op issued so far
    void (*memset0)(void *p, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes); // any two backend_alloc'ed or host pointers
    // free and total bytes of the device memory; 0 with both 0 on the CPU
    int (*mem_info)(size_t *free_bytes, size_t *total_bytes);
    // "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" or "x86_64 CPU, 2 threads": for logs
    const char *(*device_name)(void);
    // the message of the last failure of alloc or a comm_* entry ("" if none)
    const char *(*last_error)(void);

    // ---- the dVAE (ops.h)
    void (*conv2d_forward)(float *out, const float *in, const float *w, const float *b, int B, int Ci, int Co,
                           int H, int W, int k, float alpha, float beta, float *scratch);
    void (*conv2d_backward)(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            int B, int Ci, int Co, int H, int W, int k, float alpha, float *scratch);
    int64_t (*conv2d_scratch_floats)(int Ci, int Co, int H, int W, int k);
    void (*onehot_conv_forward)(float *out, const int32_t *codes, const float *w, const float *bias, int B, int V,
                                int Co, int HW);
    void (*relu_forward)(float *out, const float *in, int64_t n);
    void (*relu_backward)(float *din, const float *dout, const float *in, int64_t n);
    void (*maxpool2_forward)(float *out, const float *in, int B, int C, int H, int W);
    void (*maxpool2_backward)(float *din, const float *dout, const float *in, int B, int C, int H, int W);
    void (*upsample2_forward)(float *out, const float *in, int B, int C, int H, int W);
    void (*upsample2_backward)(float *din, const float *dout, int B, int C, int H, int W);
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    void (*copy2d)(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows, int64_t cols);
    void (*gumbel_softmax_forward)(float *z, const float *logits, const float *g, float tau, int B, int V, int P);
    void (*gumbel_softmax_backward)(float *dlogits, const float *dz, const float *z, float tau, int B, int V,
                                    int P);
    void (*gumbel_noise)(float *g, uint64_t key, uint64_t counter, int64_t first, int64_t n);
    double (*kl_uniform_forward_backward)(float *dlogits, const float *logits, float scale, int B, int V, int P);
    double (*logit_laplace_nll)(float *dstats, const float *stats, const float *x, float scale, int B, int N);

    // ---- the transformer (ops.h)
    void (*linear_forward)(float *out, const float *in, const float *w, const float *b, int64_t M, int n_in,
                           int n_out, float beta);
    void (*linear_backward)(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            int64_t M, int n_in, int n_out);
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *in, const float *w,
                              const float *b, int64_t M, int C);
    void (*layernorm_backward)(float *din, float *dw, float *db, const float *dout, const float *in,
                               const float *w, const float *mean, const float *rstd, int64_t M, int C);
    void (*gelu_forward)(float *out, const float *in, int64_t n);
    void (*gelu_backward)(float *din, const float *dout, const float *in, int64_t n);
    void (*attention_forward)(float *out, float *p, const float *qkv, const int32_t *off, const int32_t *keys,
                              int64_t nnz, int B, int T, int NH, int HS);
    void (*attention_backward)(float *dqkv, const float *dout, const float *qkv, const float *out, const float *p,
                               const int32_t *off, const int32_t *keys, int64_t nnz, int B, int T, int NH, int HS,
                               float *scratch);
    void (*attention_decode)(float *out, const float *qkv, const float *kt, const float *vt, const float *ki,
                             const float *vi, const int32_t *img_keys, int n_img, int L, int W, int K, int NH,
                             int HS, float *scratch);
    double (*softmax_xent_forward)(float *logits, const int32_t *targets, int64_t M, int V);
    void (*softmax_xent_backward)(float *probs, const int32_t *targets, int64_t M, int V, float scale);
    void (*embed_sum_forward)(float *out, const float *table, const int64_t *rows, int64_t M, int K, int C);
    void (*embed_sum_backward)(float *dtable, const float *dout, const int64_t *rows, int64_t M, int K, int C);

    // ---- mixed precision (ops.h)
    void (*to_half)(uint16_t *dst, const float *src, int64_t n, half_fmt fmt);
    void (*from_half)(float *dst, const uint16_t *src, int64_t n, half_fmt fmt);
    void (*store_half)(uint16_t *dst, float *x, int64_t n, half_fmt fmt);
    int64_t (*round_half)(float *x, int64_t n, half_fmt fmt, int filter);
    void (*linear16_forward)(float *out, const float *in, const uint16_t *w, const float *b, int64_t M, int n_in,
                             int n_out, float beta, half_fmt fmt, float *scratch);
    void (*linear16_backward)(float *din, float *dw, float *db, const float *dout, const float *in,
                              const uint16_t *w, int64_t M, int n_in, int n_out, half_fmt fmt, float *scratch);
    void (*conv2d16_forward)(float *out, const float *in, const uint16_t *w, const float *b, int B, int Ci, int Co,
                             int H, int W, int k, float alpha, float beta, half_fmt fmt, float *scratch);
    void (*conv2d16_backward)(float *din, float *dw, float *db, const float *dout, const float *in,
                              const uint16_t *w, int B, int Ci, int Co, int H, int W, int k, float alpha,
                              half_fmt fmt, float *scratch);

    // ---- the optimizer (ops.h)
    void (*adamw_update)(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int64_t t);
    void (*adamw_update16)(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, float lr, float beta1,
                           float beta2, float eps, float weight_decay, int64_t t);
    void (*ema_update)(float *ema, const float *p, int64_t n, float decay);
    double (*grad_sumsq)(const float *g, int64_t n);

    // ---- collectives among the GPUs of a job (NCCL), on backend_alloc'ed
    // buffers, with comm.h's contracts; NULL entries on the CPU, where comm.c
    // uses MPI. Rank 0 makes an id (comm_id_bytes() bytes) with comm_id_new,
    // comm.c broadcasts it over MPI, every rank calls comm_init. Integer
    // entries return 0, or nonzero with last_error() set.
    int (*comm_id_bytes)(void);
    int (*comm_id_new)(void *id);
    void *(*comm_init)(const void *id, int rank, int world); // NULL on failure
    void (*comm_close)(void *c);
    int (*comm_allreduce_sum)(void *c, float *buf, int64_t n);
    int (*comm_reduce_scatter_sum)(void *c, const float *in, float *out, int64_t shard);
    int (*comm_allgather)(void *c, const float *shard, float *out, int64_t n_shard);
    int (*comm_bcast)(void *c, float *buf, int64_t n, int root);
} backend_ops;

// The entry point of libdalle-cuda.so (found with dlsym): fills *ops and
// returns 0, or returns nonzero with the reason in err (no driver, no device).
// The library is self-contained: it calls nothing of libdalle.
#define BACKEND_CUDA_ENTRY "dalle_cuda_backend_init"
typedef int (*backend_cuda_entry_fn)(backend_ops *ops, char *err, size_t err_len);

// Selects the backend of this process by NAME: "cpu", "cuda", or "auto"
// (cuda where a GPU is usable, else the CPU). "cuda" without a usable GPU (no
// libdalle-cuda.so beside the program or in $DALLE_CUDA_LIB, no driver, no
// device) prints one line saying why and selects the CPU. Returns the kind
// selected; DALLE_ERR (error set) only for an unknown NAME. Call it once, at
// the start, before any backend_alloc.
int backend_select(const char *name);
// The selected table (the CPU's until backend_select picks another).
const backend_ops *backend(void);
// The CPU table, always available (the reference the CUDA tests compare with).
const backend_ops *backend_cpu(void);
// Loads the CUDA table without selecting it: NULL, with the reason in the
// error, where it cannot be used. For tests and `dalle info --device`.
const backend_ops *backend_cuda_load(void);

// Shorthands for the selected backend's memory functions. backend_alloc:
// NULL with the error set (on CUDA the device's message: bytes asked, free)
// on failure; backend_free(NULL) is a no-op.
void *backend_alloc(size_t bytes);
void backend_free(void *p);
void backend_sync(void);
// Zeroes bytes at p (backend memory); copies bytes from src to dst (either
// may be host or backend memory; they may overlap on the CPU only). Both
// wait for their op as the ops do (above).
void backend_memset0(void *p, size_t bytes);
void backend_copy(void *dst, const void *src, size_t bytes);

// With DALLE_PROFILE=1 in the environment, every op (ops.h, backend_memset0,
// backend_copy) waits for its work and adds its wall time to a table by op
// name; this prints the table on stderr (registered with atexit when the
// first op runs; does nothing when not profiling).
void backend_profile_print(void);
// Profiling: forgets what was counted so far (a benchmark's warm-up).
void backend_profile_reset(void);

// One line on the selected device for logs and `dalle info`: "cpu (x86_64
// CPU, 2 threads)" or "cuda (NAME): GPU memory 3.20 GiB in use, 75.90 GiB
// free of 79.10 GiB". Returns buf (n bytes).
const char *backend_describe(char *buf, size_t n);

// Room the GPU libraries need beyond the buffers a run allocates (the CUDA
// context, cuBLASLt/cuDNN workspaces, NCCL): a run must leave this free.
#define BACKEND_GPU_RESERVE ((size_t)512 << 20)
// Whether NEEDED bytes of GPU memory (plus BACKEND_GPU_RESERVE) fit in
// FREE_BYTES of TOTAL_BYTES: 0 if so; else 1 with msg (n bytes) = "WHAT needs
// X GiB of GPU memory (+0.50 GiB for the libraries), Y GiB free of Z GiB".
// A pure function (testable on the CPU).
int backend_fit_message(const char *what, int64_t needed, size_t free_bytes, size_t total_bytes, char *msg,
                        size_t n);
// With the CUDA backend selected: DALLE_ERR with that message (and HINT
// after it, if not NULL) when NEEDED bytes do not fit in the GPU's free
// memory now; DALLE_OK otherwise, and always on the CPU.
int backend_check_fit(const char *what, int64_t needed, const char *hint);
