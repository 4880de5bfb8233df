// cublaslt.cpp (tests/cuda-emu): the naive cuBLASLt that include/cublasLt.h
// declares. A product is checked when it is issued (as cuBLASLt validates its
// arguments before it returns) and queued on the stream like any GPU work.
#include <cublasLt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct emu_lt_context {
    int made;
};
struct emu_lt_desc {
    cublasComputeType_t compute;
    int32_t transa, transb;  // cublasOperation_t
    uint32_t epilogue;       // cublasLtEpilogue_t
    const float *bias;       // (rows of D) with the BIAS epilogue
};
struct emu_lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct emu_lt_pref {
    uint64_t max_workspace;
    uint32_t align[4]; // A, B, C, D
};

static emu_lt_context g_handle;

const char *cublasLtGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "unknown cuBLAS status";
}

// A refusal with the emulator's reason printed first (cuBLASLt logs its own
// with CUBLASLT_LOG_LEVEL).
static cublasStatus_t refuse(cublasStatus_t s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cublasStatus_t refuse(cublasStatus_t s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dalle: cuBLASLt emulator: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return s;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    g_handle.made = 1;
    *handle = &g_handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute, cudaDataType scale) {
    if ((compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) || scale != CUDA_R_32F)
        return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "compute type %d, scale type %d", (int)compute, (int)scale);
    *desc = (emu_lt_desc *)calloc(1, sizeof(emu_lt_desc));
    if (!*desc) return CUBLAS_STATUS_ALLOC_FAILED;
    (*desc)->compute = compute;
    (*desc)->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    free(desc);
    return CUBLAS_STATUS_SUCCESS;
}

// Each attribute has its documented type; a buffer of another size is refused.
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (size != sizeof(int32_t)) break;
        memcpy(attr == CUBLASLT_MATMUL_DESC_TRANSA ? &desc->transa : &desc->transb, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof(uint32_t)) break;
        memcpy(&desc->epilogue, buf, size);
        if (desc->epilogue != CUBLASLT_EPILOGUE_DEFAULT && desc->epilogue != CUBLASLT_EPILOGUE_BIAS)
            return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "epilogue %u", desc->epilogue);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof(void *)) break;
        memcpy(&desc->bias, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "matmul attribute %d with %zu bytes", (int)attr, size);
}

// Column-major rows x cols with leading dimension ld >= rows.
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (type != CUDA_R_32F && type != CUDA_R_16BF) return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "data type %d", type);
    if (ld < 1 || (uint64_t)ld < rows)
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "layout %llu x %llu with ld %lld", (unsigned long long)rows,
                      (unsigned long long)cols, (long long)ld);
    *layout = (emu_lt_layout *)calloc(1, sizeof(emu_lt_layout));
    if (!*layout) return CUBLAS_STATUS_ALLOC_FAILED;
    **layout = emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    free(layout);
    return CUBLAS_STATUS_SUCCESS;
}

// Without alignment attributes the heuristic assumes 256-byte operands.
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    *pref = (emu_lt_pref *)calloc(1, sizeof(emu_lt_pref));
    if (!*pref) return CUBLAS_STATUS_ALLOC_FAILED;
    for (int i = 0; i < 4; i++) (*pref)->align[i] = 256;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    free(pref);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && size == sizeof(uint64_t)) {
        memcpy(&pref->max_workspace, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES &&
        size == sizeof(uint32_t)) {
        memcpy(&pref->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "preference attribute %d with %zu bytes", (int)attr, size);
}

// The shapes of op(A) (m, k), op(B) (k, n), C and D (m, n); 0 if they do not fit.
static int product_shape(const emu_lt_desc *desc, const emu_lt_layout *a, const emu_lt_layout *b,
                         const emu_lt_layout *c, const emu_lt_layout *d, uint64_t *m, uint64_t *n, uint64_t *k) {
    *m = d->rows;
    *n = d->cols;
    *k = desc->transa ? a->rows : a->cols;
    return (desc->transa ? a->cols : a->rows) == *m && (desc->transb ? b->rows : b->cols) == *n &&
           (desc->transb ? b->cols : b->rows) == *k && c->rows == *m && c->cols == *n && a->type == b->type &&
           c->type == CUDA_R_32F && d->type == CUDA_R_32F &&
           !(a->type == CUDA_R_16BF && desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32);
}

// One algorithm for any product it can do, found for the preference's alignments.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *returned) {
    uint64_t m, n, k;
    *returned = 0;
    if (handle != &g_handle || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (!product_shape(desc, a, b, c, d, &m, &n, &k)) return CUBLAS_STATUS_NOT_SUPPORTED;
    memset(results, 0, sizeof *results);
    results->algo.data[0] = 1;
    for (int i = 0; i < 4; i++) results->algo.data[1 + i] = pref->align[i];
    results->state = CUBLAS_STATUS_SUCCESS;
    results->wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

// The bytes from the first to past the last element of layout l.
static size_t layout_bytes(const emu_lt_layout *l) {
    if (l->rows == 0 || l->cols == 0) return 0;
    return ((l->cols - 1) * (uint64_t)l->ld + l->rows) * (l->type == CUDA_R_16BF ? 2 : 4);
}

static cublasStatus_t check_operand(const char *name, const void *p, size_t bytes, uint64_t align) {
    size_t room = 0;
    if (!emu_device_visible(p, &room))
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "%s (%p) is host memory, not a device allocation", name, p);
    if (room < bytes)
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "%s: %zu bytes at %p run %zu bytes past its allocation", name,
                      bytes, p, bytes - room);
    if ((uintptr_t)p % align)
        return refuse(CUBLAS_STATUS_INVALID_VALUE,
                      "%s at %p is not %llu-byte aligned, as the algorithm's preference promised", name, p,
                      (unsigned long long)align);
    return CUBLAS_STATUS_SUCCESS;
}

// Element (i, j) of a column-major operand of type `type`.
static double element(const void *p, cudaDataType type, int64_t ld, uint64_t i, uint64_t j, int tf32) {
    float x;
    if (type == CUDA_R_16BF) {
        const uint32_t u = (uint32_t)((const uint16_t *)p)[i + j * ld] << 16;
        memcpy(&x, &u, 4);
    } else {
        x = ((const float *)p)[i + j * ld];
    }
    if (tf32 && isfinite(x)) { // to nearest, ties away from zero, as the tensor cores' conversion
        uint32_t u;
        memcpy(&u, &x, 4);
        u = (u + 0x1000u) & 0xFFFFE000u;
        memcpy(&x, &u, 4);
    }
    return x;
}

typedef struct {
    emu_lt_desc desc;
    emu_lt_layout a, b, c, d;
    const void *A, *B, *C;
    float *D;
    float alpha, beta;
} product;

// op(A) and op(B) are first copied to rows of k doubles (rows of op(A),
// columns of op(B)), so that each element of D is one contiguous dot product.
static void product_run(const product *p) {
    const emu_lt_desc *desc = &p->desc;
    const uint64_t m = p->d.rows, n = p->d.cols, k = desc->transa ? p->a.rows : p->a.cols;
    const int tf32 = desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    double *ar = (double *)malloc(sizeof(double) * (m * k + 1)), *bc = (double *)malloc(sizeof(double) * (n * k + 1));
    if (!ar || !bc) {
        fprintf(stderr, "dalle: cuBLASLt emulator: out of host memory for a %llu x %llu x %llu product\n",
                (unsigned long long)m, (unsigned long long)n, (unsigned long long)k);
        abort();
    }
    for (uint64_t i = 0; i < m; i++)
        for (uint64_t q = 0; q < k; q++)
            ar[i * k + q] = desc->transa ? element(p->A, p->a.type, p->a.ld, q, i, tf32)
                                         : element(p->A, p->a.type, p->a.ld, i, q, tf32);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t q = 0; q < k; q++)
            bc[j * k + q] = desc->transb ? element(p->B, p->b.type, p->b.ld, j, q, tf32)
                                         : element(p->B, p->b.type, p->b.ld, q, j, tf32);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            const double *x = ar + i * k, *y = bc + j * k;
            double s = 0.0;
            for (uint64_t q = 0; q < k; q++) s += x[q] * y[q];
            double r = p->alpha * s;
            if (p->beta != 0.0f) r += p->beta * ((const float *)p->C)[i + j * p->c.ld];
            if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS) r += desc->bias[i];
            p->D[i + j * p->d.ld] = (float)r;
        }
    free(ar);
    free(bc);
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b, const void *beta,
                              const void *C, cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
    uint64_t m, n, k;
    if (handle != &g_handle) return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "not a handle of cublasLtCreate");
    emu_check_stream(stream, "cublasLtMatmul");
    if (!product_shape(desc, a, b, c, d, &m, &n, &k))
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "operand shapes or types do not make a product");
    const uint64_t no_align[5] = {1, 4, 4, 4, 4};
    const uint64_t *al = algo ? algo->data : no_align;
    if (algo && algo->data[0] != 1) return refuse(CUBLAS_STATUS_INVALID_VALUE, "an algorithm no heuristic gave");
    cublasStatus_t s;
    if ((k > 0 && ((s = check_operand("A", A, layout_bytes(a), al[1])) != CUBLAS_STATUS_SUCCESS ||
                   (s = check_operand("B", B, layout_bytes(b), al[2])) != CUBLAS_STATUS_SUCCESS)) ||
        (s = check_operand("D", D, layout_bytes(d), al[4])) != CUBLAS_STATUS_SUCCESS)
        return s;
    product p = {*desc, *a, *b, *c, *d, A, B, C, (float *)D, *(const float *)alpha, *(const float *)beta};
    if (p.beta != 0.0f && (s = check_operand("C", C, layout_bytes(c), al[3])) != CUBLAS_STATUS_SUCCESS) return s;
    if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS &&
        (s = check_operand("the bias", desc->bias, sizeof(float) * m, 4)) != CUBLAS_STATUS_SUCCESS)
        return s;
    if (workspace_bytes && (s = check_operand("the workspace", workspace, workspace_bytes, 1)) != CUBLAS_STATUS_SUCCESS)
        return s;
    emu_enqueue_fn([=]() { product_run(&p); });
    return CUBLAS_STATUS_SUCCESS;
}
