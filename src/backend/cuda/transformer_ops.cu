// transformer_ops.cu: the prior's dense ops on the GPU, with the contracts of
// ops.h and the CPU versions (backend/cpu/transformer.c) as the reference:
// linear layers through cuBLASLt (bias as its epilogue; a bf16 model's on
// the tensor cores), LayerNorm, GELU, softmax cross-entropy, and the
// embeddings as sums of table rows.
// Column sums (bias and LayerNorm gain gradients) are per-block partial sums
// over row chunks, then one fixed-order pass: no atomics, the same bits on
// every run. Attention lives in attention.cu.
//
// Sizes as in ops.h: M rows (tokens), C channels, n_in/n_out the features of
// a linear layer, V vocabulary. Row-major fp32 throughout.
#include <cublasLt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/common.cuh"

// ---------------------------------------------------------------- cuBLASLt

static void cublas_check_fail(cublasStatus_t s, const char *call, const char *file, int line) {
    fprintf(stderr, "dalle: cuBLASLt error at %s:%d: %s: %s\n", file, line, call, cublasLtGetStatusString(s));
    abort();
}
#define CUBLAS_CHECK(call)                                                                \
    do {                                                                                  \
        cublasStatus_t s_ = (call);                                                       \
        if (s_ != CUBLAS_STATUS_SUCCESS) cublas_check_fail(s_, #call, __FILE__, __LINE__); \
    } while (0)

#define LT_WORKSPACE ((size_t)32 << 20)

static cublasLtHandle_t g_lt = NULL;
static void *g_lt_ws = NULL; // LT_WORKSPACE bytes, cuBLASLt's own (not cuda_workspace: the ops use that too)
// fp32 products by default; DALLE_CUDA_TF32=1 in the environment allows the
// TF32 tensor cores (10-bit mantissas of the inputs: faster, but not the fp32
// contract the tests check).
static cublasComputeType_t g_compute32 = CUBLAS_COMPUTE_32F;

// The handle and its workspace, made on first use.
static cublasLtHandle_t lt(void) {
    if (!g_lt) {
        CUBLAS_CHECK(cublasLtCreate(&g_lt));
        CUDA_CHECK(cudaMalloc(&g_lt_ws, LT_WORKSPACE));
    }
    return g_lt;
}

// The largest power of two (up to 256) that divides the address: the
// alignment cuBLASLt may assume (its heuristic assumes 256 otherwise).
static uint32_t ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 4 && a % al) al >>= 1;
    return al;
}

// One product shape of column-major cuBLASLt: D (m, n; ldc) = alpha op(A)
// op(B) + beta C, C = D, op(A) (m, k), op(B) (k, n), A and B of type ab
// (C, D, alpha, beta fp32), with the bias epilogue or not.
typedef struct {
    int transa, transb;
    uint64_t m, n, k;
    int64_t lda, ldb, ldc;
    int ab;       // cudaDataType of A and B
    int bias;     // the epilogue adds a bias (m)
    uint32_t align_a, align_b, align_c, align_bias;
    int compute;  // cublasComputeType_t
} mm_key;

typedef struct {
    mm_key key;
    int used;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int has_algo; // 0: no algorithm for this key (the caller falls back)
} mm_plan;

enum { N_MM = 64 };
static mm_plan g_mm[N_MM];
static int g_mm_next = 0; // the slot replaced next when all are used

// The descriptors and algorithm of key K, made on first use. has_algo is 0
// where cuBLASLt has no algorithm for it (a bias epilogue it cannot fuse:
// the caller adds the bias itself).
static mm_plan *mm_plan_get(const mm_key *k) {
    for (int i = 0; i < N_MM; i++)
        if (g_mm[i].used && !memcmp(&g_mm[i].key, k, sizeof *k)) return &g_mm[i];
    mm_plan *p = &g_mm[g_mm_next];
    g_mm_next = (g_mm_next + 1) % N_MM;
    if (p->used) {
        CUDA_CHECK(cudaStreamSynchronize(cuda_stream)); // no product in flight uses them
        CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->la));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lb));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lc));
    }
    memset(p, 0, sizeof *p);
    p->key = *k;
    p->used = 1;
    const cublasOperation_t ta = k->transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = k->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)k->compute, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (k->bias) {
        const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    }
    // the layouts of the matrices as stored: op(A) (m, k) is A (k, m) when transposed
    const cudaDataType ab = (cudaDataType)k->ab;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, ab, k->transa ? k->k : k->m, k->transa ? k->m : k->k, k->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, ab, k->transb ? k->n : k->k, k->transb ? k->k : k->n, k->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, k->m, k->n, k->ldc));

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = LT_WORKSPACE;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k->align_a,
                                                      sizeof k->align_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k->align_b,
                                                      sizeof k->align_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k->align_c,
                                                      sizeof k->align_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->align_c,
                                                      sizeof k->align_c));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt(), p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (s == CUBLAS_STATUS_SUCCESS && found > 0) {
        p->algo = res.algo;
        p->has_algo = 1;
    } else if (!k->bias) {
        fprintf(stderr, "dalle: cuBLASLt has no algorithm for a %llu x %llu x %llu product (%s)\n",
                (unsigned long long)k->m, (unsigned long long)k->n, (unsigned long long)k->k,
                cublasLtGetStatusString(s));
        abort();
    }
    return p;
}

// out (M, n_out) += b (n_out) on every row.
static __global__ void add_bias_kernel(float *out, const float *b, int64_t M, int n_out) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * n_out;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] += b[i % n_out];
}

// D = alpha op(A) op(B) + beta D (+ bias (m) on every column), column-major
// as cuBLASLt sees it (see mm_key); A, B of type ab. With beta 0, D is not
// read. The bias goes into the epilogue where cuBLASLt can fuse it.
static void lt_matmul(float *D, const void *A, const void *B, const float *bias, int transa, int transb, uint64_t m,
                      uint64_t n, uint64_t k, int64_t lda, int64_t ldb, int64_t ldc, cudaDataType ab,
                      cublasComputeType_t compute, float alpha, float beta) {
    if (m == 0 || n == 0) return;
    mm_key key;
    memset(&key, 0, sizeof key); // no stray padding bytes in the memcmp
    key.transa = transa;
    key.transb = transb;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.ab = (int)ab;
    key.bias = bias != NULL && ptr_align(bias) >= 16;
    key.align_a = ptr_align(A);
    key.align_b = ptr_align(B);
    key.align_c = ptr_align(D);
    key.align_bias = key.bias ? ptr_align(bias) : 0;
    key.compute = (int)compute;
    mm_plan *p = mm_plan_get(&key);
    if (!p->has_algo) { // the epilogue could not be fused: the product, then the bias
        key.bias = 0;
        key.align_bias = 0;
        p = mm_plan_get(&key);
    }
    if (key.bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (k == 0) { // no product: cuBLASLt may refuse k = 0
        if (beta != 1.0f) CUDA_CHECK(cudaMemsetAsync(D, 0, sizeof(float) * m * n, cuda_stream)); // beta 0 only here
    } else {
        CUBLAS_CHECK(cublasLtMatmul(lt(), p->desc, &alpha, A, p->la, B, p->lb, &beta, D, p->lc, D, p->lc, &p->algo,
                                    g_lt_ws, LT_WORKSPACE, cuda_stream));
    }
    if (bias && (!key.bias || k == 0)) {
        add_bias_kernel<<<cuda_grid_1d((int64_t)m * n), CUDA_THREADS, 0, cuda_stream>>>(D, bias, (int64_t)n, (int)m);
        CUDA_LAUNCHED("add_bias_kernel");
    }
}

// ---------------------------------------------------------------- linear
// Row-major (PyTorch) x (M, n_in), w (n_out, n_in) are, to column-major
// cuBLASLt, x^T (n_in, M) and w^T (n_in, n_out); out^T (n_out, M) = w x^T
// is the product with A = w transposed, B = x.

static void cuda_linear_forward(float *out, const float *in, const float *w, const float *b, int64_t M, int n_in,
                                int n_out, float beta) {
    lt_matmul(out, w, in, b, 1, 0, (uint64_t)n_out, (uint64_t)M, (uint64_t)n_in, n_in, n_in, n_out, CUDA_R_32F,
              g_compute32, 1.0f, beta);
}

// ---- column sums: dw (C) += sum over rows of g * (x - mean) * rstd and
// db (C) += sum over rows of g, for g, x (M, C); or, with x NULL, db only.
// Each block sums 32 columns over one chunk of rows (CS_ROWS threads down
// the rows), writing a partial; one pass then adds the partials in order.

#define CS_ROWS 8

// part_w, part_b (R, C): the sums of row chunk blockIdx.y (rows [y*rpc, (y+1)*rpc)).
static __global__ void colsum_partial_kernel(float *part_w, float *part_b, const float *g, const float *x,
                                             const float *mean, const float *rstd, int64_t M, int C, int64_t rpc) {
    __shared__ float sw[CS_ROWS][33], sb[CS_ROWS][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int64_t r0 = blockIdx.y * rpc, r1 = r0 + rpc < M ? r0 + rpc : M;
    float aw = 0.0f, ab = 0.0f;
    if (c < C)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += CS_ROWS) {
            const float gv = g[r * C + c];
            ab += gv;
            if (x) aw += gv * (x[r * C + c] - mean[r]) * rstd[r];
        }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int i = 1; i < CS_ROWS; i++) {
            aw += sw[i][threadIdx.x];
            ab += sb[i][threadIdx.x];
        }
        part_b[(int64_t)blockIdx.y * C + c] = ab;
        if (x) part_w[(int64_t)blockIdx.y * C + c] = aw;
    }
}

// dw, db (C) += the R partials of each column, in order (dw NULL: db only).
static __global__ void colsum_finish_kernel(float *dw, float *db, const float *part_w, const float *part_b, int R,
                                            int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.0f, ab = 0.0f;
    for (int i = 0; i < R; i++) {
        ab += part_b[(int64_t)i * C + c];
        if (dw) aw += part_w[(int64_t)i * C + c];
    }
    db[c] += ab;
    if (dw) dw[c] += aw;
}

static void colsum_add(float *dw, float *db, const float *g, const float *x, const float *mean, const float *rstd,
                       int64_t M, int C) {
    if (M <= 0 || C <= 0) return;
    // about four blocks per multiprocessor, chunks of at least 64 rows
    const int col_blocks = (C + 31) / 32;
    int64_t R = (4 * (int64_t)cuda_prop.multiProcessorCount + col_blocks - 1) / col_blocks;
    const int64_t most = (M + 63) / 64;
    R = R < most ? R : most;
    R = R < 1 ? 1 : R > 65535 ? 65535 : R;
    const int64_t rpc = (M + R - 1) / R;
    R = (M + rpc - 1) / rpc;
    float *part = (float *)cuda_workspace(sizeof(float) * 2 * (size_t)R * C);
    float *part_w = x ? part + R * C : NULL;
    colsum_partial_kernel<<<dim3((unsigned)col_blocks, (unsigned)R), dim3(32, CS_ROWS), 0, cuda_stream>>>(
        part_w, part, g, x, mean, rstd, M, C, rpc);
    CUDA_LAUNCHED("colsum_partial_kernel");
    colsum_finish_kernel<<<(C + CUDA_THREADS - 1) / CUDA_THREADS, CUDA_THREADS, 0, cuda_stream>>>(
        x ? dw : NULL, db, part_w, part, (int)R, C);
    CUDA_LAUNCHED("colsum_finish_kernel");
}

// din (M, n_in) += dout w: din^T = w^T dout^T, A = w (n_in, n_out), B = dout^T (n_out, M).
// dw (n_out, n_in) += dout^T in: dw^T = in^T dout, A = in^T (n_in, M), B = dout^T transposed.
static void cuda_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                                 int64_t M, int n_in, int n_out) {
    if (din)
        lt_matmul(din, w, dout, NULL, 0, 0, (uint64_t)n_in, (uint64_t)M, (uint64_t)n_out, n_in, n_out, n_in,
                  CUDA_R_32F, g_compute32, 1.0f, 1.0f);
    if (dw)
        lt_matmul(dw, in, dout, NULL, 0, 1, (uint64_t)n_in, (uint64_t)n_out, (uint64_t)M, n_in, n_out, n_in,
                  CUDA_R_32F, g_compute32, 1.0f, 1.0f);
    if (db) colsum_add(NULL, db, dout, NULL, NULL, NULL, M, n_out);
}

// ---- A 16-bit model's products (ops.h: linear16_forward, _backward). bf16:
// the weight's codes as they are and the activations converted to bf16
// (exactly: the caller stored them in bf16) in the workspace, products on
// the tensor cores, accumulated in fp32 (cuBLASLt's COMPUTE_32F). fp16: the
// weight decoded into scratch, then the fp32 products above (an fp16
// tensor-core path would need its inputs' range checked: not yet).

// Room for n 16-bit codes rounded up to 256 bytes (the next buffer aligned).
static size_t codes_bytes(int64_t n) { return ((size_t)n * 2 + 255) & ~(size_t)255; }

static void cuda_linear16_forward(float *out, const float *in, const uint16_t *w, const float *b, int64_t M,
                                  int n_in, int n_out, float beta, half_fmt fmt, float *scratch) {
    if (fmt != HALF_BF16) {
        cuda_half_decode(scratch, w, (int64_t)n_out * n_in, fmt);
        cuda_linear_forward(out, in, scratch, b, M, n_in, n_out, beta);
        return;
    }
    if (M <= 0 || n_out <= 0) return;
    uint16_t *in16 = (uint16_t *)cuda_workspace(codes_bytes(M * n_in)); // (M, n_in)
    cuda_half_encode(in16, in, M * n_in, HALF_BF16);
    lt_matmul(out, w, in16, b, 1, 0, (uint64_t)n_out, (uint64_t)M, (uint64_t)n_in, n_in, n_in, n_out, CUDA_R_16BF,
              CUBLAS_COMPUTE_32F, 1.0f, beta);
}

// The bias gradient (fp32 column sums of dout) last: colsum_add takes the
// workspace over, after the products that read the codes there.
static void cuda_linear16_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                                   const uint16_t *w, int64_t M, int n_in, int n_out, half_fmt fmt, float *scratch) {
    if (fmt != HALF_BF16) {
        cuda_half_decode(scratch, w, (int64_t)n_out * n_in, fmt);
        cuda_linear_backward(din, dw, db, dout, in, scratch, M, n_in, n_out);
        return;
    }
    if (M > 0 && (din || dw)) {
        char *ws = (char *)cuda_workspace(codes_bytes(M * n_out) + (dw ? codes_bytes(M * n_in) : 0));
        uint16_t *dout16 = (uint16_t *)ws, *in16 = (uint16_t *)(ws + codes_bytes(M * n_out)); // (M, n_out), (M, n_in)
        cuda_half_encode(dout16, dout, M * n_out, HALF_BF16);
        if (din)
            lt_matmul(din, w, dout16, NULL, 0, 0, (uint64_t)n_in, (uint64_t)M, (uint64_t)n_out, n_in, n_out, n_in,
                      CUDA_R_16BF, CUBLAS_COMPUTE_32F, 1.0f, 1.0f);
        if (dw) {
            cuda_half_encode(in16, in, M * n_in, HALF_BF16);
            lt_matmul(dw, in16, dout16, NULL, 0, 1, (uint64_t)n_in, (uint64_t)n_out, (uint64_t)M, n_in, n_out, n_in,
                      CUDA_R_16BF, CUBLAS_COMPUTE_32F, 1.0f, 1.0f);
        }
    }
    if (db) colsum_add(NULL, db, dout, NULL, NULL, NULL, M, n_out);
}

// ---------------------------------------------------------------- LayerNorm
// One warp per row.

#define LN_WARPS 8

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out (M, C) = (in - mean) * rstd * w + b; mean, rstd (M) saved.
static __global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *in, const float *w,
                                                const float *b, int64_t M, int C) {
    const int64_t row = (int64_t)blockIdx.x * LN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= M) return; // whole warps leave: no block-wide sync below
    const float *x = in + row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    const float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float d = x[c] - m;
        v += d * d;
    }
    const float rs = 1.0f / sqrtf(warp_sum(v) / C + 1e-5f);
    float *o = out + row * C;
    for (int c = lane; c < C; c += 32) o[c] = (x[c] - m) * rs * w[c] + b[c];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}

// din (M, C) += rstd * (g w - mean(g w) - n mean(g w n)), n = (x - mean) rstd.
static __global__ void layernorm_backward_kernel(float *din, const float *dout, const float *in, const float *w,
                                                 const float *mean, const float *rstd, int64_t M, int C) {
    const int64_t row = (int64_t)blockIdx.x * LN_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= M) return;
    const float *x = in + row * C, *g = dout + row * C;
    const float m = mean[row], rs = rstd[row];
    float a = 0.0f, bb = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float dn = g[c] * w[c];
        a += dn;
        bb += dn * (x[c] - m) * rs;
    }
    a = warp_sum(a) / C;
    bb = warp_sum(bb) / C;
    float *d = din + row * C;
    for (int c = lane; c < C; c += 32) d[c] += rs * (g[c] * w[c] - a - (x[c] - m) * rs * bb);
}

static void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                                   const float *b, int64_t M, int C) {
    if (M <= 0) return;
    layernorm_forward_kernel<<<(unsigned)((M + LN_WARPS - 1) / LN_WARPS), 32 * LN_WARPS, 0, cuda_stream>>>(
        out, mean, rstd, in, w, b, M, C);
    CUDA_LAUNCHED("layernorm_forward_kernel");
}

static void cuda_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                                    const float *w, const float *mean, const float *rstd, int64_t M, int C) {
    if (M <= 0) return;
    layernorm_backward_kernel<<<(unsigned)((M + LN_WARPS - 1) / LN_WARPS), 32 * LN_WARPS, 0, cuda_stream>>>(
        din, dout, in, w, mean, rstd, M, C);
    CUDA_LAUNCHED("layernorm_backward_kernel");
    colsum_add(dw, db, dout, in, mean, rstd, M, C);
}

// ---------------------------------------------------------------- GELU

#define GELU_K 0.7978845608028654f // sqrt(2/pi)

static __global__ void gelu_forward_kernel(float *out, const float *in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float x = in[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

static __global__ void gelu_backward_kernel(float *din, const float *dout, const float *in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float x = in[i], t = tanhf(GELU_K * (x + 0.044715f * x * x * x));
        const float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        din[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
}

static void cuda_gelu_forward(float *out, const float *in, int64_t n) {
    if (n <= 0) return;
    gelu_forward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(out, in, n);
    CUDA_LAUNCHED("gelu_forward_kernel");
}

static void cuda_gelu_backward(float *din, const float *dout, const float *in, int64_t n) {
    if (n <= 0) return;
    gelu_backward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(din, dout, in, n);
    CUDA_LAUNCHED("gelu_backward_kernel");
}

// ---------------------------------------------------------------- softmax cross-entropy

#define XENT_THREADS 512

// Row blockIdx.x of logits (M, V) becomes its softmax; loss[row] = -log p[target].
// Each thread keeps an online (max, sum of exp) over its columns; the block
// merges them.
static __global__ void softmax_xent_forward_kernel(double *loss, float *logits, const int32_t *targets, int V) {
    __shared__ float sm[XENT_THREADS / 32], ss[XENT_THREADS / 32];
    float *x = logits + (int64_t)blockIdx.x * V;
    const float xt = x[targets[blockIdx.x]]; // read before any thread writes the row
    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x; j < V; j += XENT_THREADS) {
        const float v = x[j];
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }
    // merge (m, s) pairs: over the warp, then over the warps
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        const float mm = fmaxf(m, m2);
        s = (m == -INFINITY ? 0.0f : s * expf(m - mm)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mm));
        m = mm;
    }
    if (threadIdx.x % 32 == 0) {
        sm[threadIdx.x / 32] = m;
        ss[threadIdx.x / 32] = s;
    }
    __syncthreads();
    float mx = sm[0];
    for (int i = 1; i < XENT_THREADS / 32; i++) mx = fmaxf(mx, sm[i]);
    float sum = 0.0f;
    for (int i = 0; i < XENT_THREADS / 32; i++)
        if (sm[i] != -INFINITY) sum += ss[i] * expf(sm[i] - mx);
    if (threadIdx.x == 0) loss[blockIdx.x] = log((double)sum) - ((double)xt - mx);
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < V; j += XENT_THREADS) x[j] = expf(x[j] - mx) * inv;
}

static double cuda_softmax_xent_forward(float *logits, const int32_t *targets, int64_t M, int V) {
    if (M <= 0) return 0.0;
    double *loss = (double *)cuda_workspace(sizeof(double) * ((size_t)M + 1));
    softmax_xent_forward_kernel<<<(unsigned)M, XENT_THREADS, 0, cuda_stream>>>(loss, logits, targets, V);
    CUDA_LAUNCHED("softmax_xent_forward_kernel");
    return cuda_sum_partials(loss, (int)M);
}

// probs (M, V) = scale * (probs - onehot(targets)).
static __global__ void softmax_xent_backward_kernel(float *probs, const int32_t *targets, int64_t M, int V,
                                                    float scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * V;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = probs[i];
        if (i % V == targets[i / V]) x -= 1.0f;
        probs[i] = x * scale;
    }
}

static void cuda_softmax_xent_backward(float *probs, const int32_t *targets, int64_t M, int V, float scale) {
    if (M <= 0) return;
    softmax_xent_backward_kernel<<<cuda_grid_1d(M * V), CUDA_THREADS, 0, cuda_stream>>>(probs, targets, M, V, scale);
    CUDA_LAUNCHED("softmax_xent_backward_kernel");
}

// ---------------------------------------------------------------- embeddings

// out (M, C): element (r, c) = the first named row's value, plus the others
// in order (the CPU's arithmetic exactly); 0 where no row is named.
static __global__ void embed_sum_forward_kernel(float *out, const float *table, const int64_t *rows, int64_t M, int K,
                                                int C) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * C;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / C;
        const int c = (int)(i % C);
        float acc = 0.0f;
        int first = 1;
        for (int k = 0; k < K; k++) {
            const int64_t at = rows[r * K + k];
            if (at < 0) continue;
            acc = first ? table[at + c] : acc + table[at + c];
            first = 0;
        }
        out[i] = acc;
    }
}

// dtable[rows[r*K + k] + c] += dout[r, c]: ids repeat, so atomics.
static __global__ void embed_sum_backward_kernel(float *dtable, const float *dout, const int64_t *rows, int64_t M,
                                                 int K, int C) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * C;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / C;
        const int c = (int)(i % C);
        const float g = dout[i];
        for (int k = 0; k < K; k++) {
            const int64_t at = rows[r * K + k];
            if (at >= 0) atomicAdd(dtable + at + c, g);
        }
    }
}

static void cuda_embed_sum_forward(float *out, const float *table, const int64_t *rows, int64_t M, int K, int C) {
    if (M <= 0 || C <= 0) return;
    embed_sum_forward_kernel<<<cuda_grid_1d(M * C), CUDA_THREADS, 0, cuda_stream>>>(out, table, rows, M, K, C);
    CUDA_LAUNCHED("embed_sum_forward_kernel");
}

static void cuda_embed_sum_backward(float *dtable, const float *dout, const int64_t *rows, int64_t M, int K, int C) {
    if (M <= 0 || C <= 0) return;
    embed_sum_backward_kernel<<<cuda_grid_1d(M * C), CUDA_THREADS, 0, cuda_stream>>>(dtable, dout, rows, M, K, C);
    CUDA_LAUNCHED("embed_sum_backward_kernel");
}

void cuda_register_transformer_ops(backend_ops *ops) {
    const char *s = getenv("DALLE_CUDA_TF32");
    g_compute32 = s && atoi(s) == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    ops->linear_forward = cuda_linear_forward;
    ops->linear_backward = cuda_linear_backward;
    ops->linear16_forward = cuda_linear16_forward;
    ops->linear16_backward = cuda_linear16_backward;
    ops->layernorm_forward = cuda_layernorm_forward;
    ops->layernorm_backward = cuda_layernorm_backward;
    ops->gelu_forward = cuda_gelu_forward;
    ops->gelu_backward = cuda_gelu_backward;
    ops->softmax_xent_forward = cuda_softmax_xent_forward;
    ops->softmax_xent_backward = cuda_softmax_xent_backward;
    ops->embed_sum_forward = cuda_embed_sum_forward;
    ops->embed_sum_backward = cuda_embed_sum_backward;
}
