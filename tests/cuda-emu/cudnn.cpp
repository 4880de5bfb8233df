// cudnn.cpp (tests/cuda-emu): the naive cuDNN convolutions that
// include/cudnn.h declares, and its emulated algorithms. A call is checked
// when it is issued (descriptors, algorithm, workspace, operands in device
// memory) and queued on the handle's stream, which must be cuda_stream.
//
// Sizes as cuDNN names them: x (N, C, H, W), w (K, C, R, S), y (N, K, P, Q)
// with P = (H + 2 pad_h - dil_h (R-1) - 1) / u + 1 (Q likewise).
#include <cudnn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct emu_cudnn_context {
    cudaStream_t stream; // 0, the legacy stream, until cudnnSetStream
};
struct emu_cudnn_tensor {
    int n, c, h, w; // n == 0: not set
};
struct emu_cudnn_filter {
    int k, c, r, s; // k == 0: not set
};
struct emu_cudnn_conv {
    int pad_h, pad_w, u, v, dil_h, dil_w; // u == 0: not set
    cudnnMathType_t math;
};

const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_ALLOC_FAILED: return "CUDNN_STATUS_ALLOC_FAILED";
    }
    return "unknown cuDNN status";
}

// A refusal with the emulator's reason printed first.
static cudnnStatus_t refuse(cudnnStatus_t s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cudnnStatus_t refuse(cudnnStatus_t s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dalle: cuDNN emulator: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return s;
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
    *handle = (emu_cudnn_context *)calloc(1, sizeof(emu_cudnn_context));
    return *handle ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}

// The descriptors: made zeroed (unset), freed by their Destroy.
#define EMU_DESCRIPTOR(T, create, destroy)                                                                       \
    cudnnStatus_t create(T *desc) {                                                                              \
        *desc = (T)calloc(1, sizeof **desc);                                                                     \
        return *desc ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;                                         \
    }                                                                                                            \
    cudnnStatus_t destroy(T desc) {                                                                              \
        free(desc);                                                                                              \
        return CUDNN_STATUS_SUCCESS;                                                                             \
    }
EMU_DESCRIPTOR(cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor)
EMU_DESCRIPTOR(cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor)
EMU_DESCRIPTOR(cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor)
#undef EMU_DESCRIPTOR

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
    if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT)
        return refuse(CUDNN_STATUS_NOT_SUPPORTED, "tensor format %d type %d (NCHW fp32 only)", format, type);
    if (n < 1 || c < 1 || h < 1 || w < 1) return refuse(CUDNN_STATUS_BAD_PARAM, "tensor %d x %d x %d x %d", n, c, h, w);
    *desc = emu_cudnn_tensor{n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
    if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT)
        return refuse(CUDNN_STATUS_NOT_SUPPORTED, "filter format %d type %d (NCHW fp32 only)", format, type);
    if (k < 1 || c < 1 || h < 1 || w < 1) return refuse(CUDNN_STATUS_BAD_PARAM, "filter %d x %d x %d x %d", k, c, h, w);
    *desc = emu_cudnn_filter{k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
    if (mode != CUDNN_CROSS_CORRELATION || compute != CUDNN_DATA_FLOAT)
        return refuse(CUDNN_STATUS_NOT_SUPPORTED, "convolution mode %d compute %d (cross-correlation in fp32 only)",
                      mode, compute);
    if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dilation_h < 1 || dilation_w < 1)
        return refuse(CUDNN_STATUS_BAD_PARAM, "convolution pad %d,%d stride %d,%d dilation %d,%d", pad_h, pad_w, u, v,
                      dilation_h, dilation_w);
    const cudnnMathType_t math = desc->math;
    *desc = emu_cudnn_conv{pad_h, pad_w, u, v, dilation_h, dilation_w, math};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math) {
    if (math < CUDNN_DEFAULT_MATH || math > CUDNN_FMA_MATH) return refuse(CUDNN_STATUS_BAD_PARAM, "math type %d", math);
    desc->math = math;
    return CUDNN_STATUS_SUCCESS;
}

// ---------------------------------------------------------------- shapes

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER };

typedef struct {
    emu_cudnn_tensor x, y;
    emu_cudnn_filter w;
    emu_cudnn_conv conv;
} conv_shape;

// The shape of a call, checked as cuDNN would (BAD_PARAM when the output
// descriptor is not the convolution's output).
static cudnnStatus_t shape_of(conv_shape *s, const emu_cudnn_tensor *x, const emu_cudnn_filter *w,
                              const emu_cudnn_conv *conv, const emu_cudnn_tensor *y) {
    if (!x->n || !y->n || !w->k || !conv->u) return refuse(CUDNN_STATUS_BAD_PARAM, "a descriptor was never set");
    const int P = (x->h + 2 * conv->pad_h - conv->dil_h * (w->r - 1) - 1) / conv->u + 1;
    const int Q = (x->w + 2 * conv->pad_w - conv->dil_w * (w->s - 1) - 1) / conv->v + 1;
    if (x->c != w->c || y->n != x->n || y->c != w->k || y->h != P || y->w != Q)
        return refuse(CUDNN_STATUS_BAD_PARAM,
                      "x %dx%dx%dx%d, w %dx%dx%dx%d: y must be %dx%dx%dx%d, its descriptor says %dx%dx%dx%d", x->n,
                      x->c, x->h, x->w, w->k, w->c, w->r, w->s, x->n, w->k, P, Q, y->n, y->c, y->h, y->w);
    *s = conv_shape{*x, *y, *w, *conv};
    return CUDNN_STATUS_SUCCESS;
}

static size_t tensor_bytes(const emu_cudnn_tensor *t) { return sizeof(float) * (size_t)t->n * t->c * t->h * t->w; }
static size_t filter_bytes(const emu_cudnn_filter *f) { return sizeof(float) * (size_t)f->k * f->c * f->r * f->s; }

// ---------------------------------------------------------------- the emulated algorithms

typedef struct {
    int algo[3];       // its enum value in each direction (DIR_*)
    float time;        // what Find "measures", ms
    int deterministic;
    int tensor_op;     // TF32 on the tensor cores: offered and run only where the math type allows
    int fails;         // listed by Find with NOT_SUPPORTED
    int huge;          // asks for more workspace than any GPU has
} emu_algo;

static const emu_algo EMU_ALGOS[] = {
    {{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1},
     1.0f, 1, 0, 0, 0},
    {{CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0},
     0.95f, 0, 0, 0, 0},
    {{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3},
     0.4f, 1, 1, 0, 0},
    {{CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT},
     0.2f, 1, 0, 0, 1},
    {{CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD},
     -1.0f, 0, 0, 1, 0},
};
enum { N_EMU_ALGOS = sizeof EMU_ALGOS / sizeof EMU_ALGOS[0] };

static int tensor_ops_allowed(cudnnMathType_t m) { return m != CUDNN_FMA_MATH; }

// The workspace algorithm a needs for shape s: each its own amount.
static size_t workspace_of(const emu_algo *a, const conv_shape *s) {
    if (a->huge) return (size_t)1 << 40;
    const size_t im2col = sizeof(float) * (size_t)s->w.c * s->w.r * s->w.s * s->y.h * s->y.w;
    return a->tensor_op ? im2col / 2 + 4096 : a->deterministic ? 256 * (size_t)s->w.k : im2col;
}

static const emu_algo *algo_of(int dir, int algo) {
    for (int i = 0; i < N_EMU_ALGOS; i++)
        if (EMU_ALGOS[i].algo[dir] == algo && !EMU_ALGOS[i].fails) return &EMU_ALGOS[i];
    return NULL;
}

// Fills perf (any of the three perf structs, same fields) as Find ranks them:
// those that ran by time, then the failures.
#define EMU_FIND(dir, s, requested, returned, perf)                                                                \
    do {                                                                                                         \
        int n_ = 0;                                                                                              \
        for (int pass_ = 0; pass_ < 2; pass_++)                                                                  \
            for (int o_ = 0; o_ < N_EMU_ALGOS; o_++) {                                                           \
                const emu_algo *a_ = &EMU_ALGOS[o_];                                                             \
                if (a_->fails != pass_ || (a_->tensor_op && !tensor_ops_allowed((s).conv.math))) continue;      \
                if (n_ == (requested)) break;                                                                    \
                int at_ = n_++;                                                                                  \
                while (at_ > 0 && !pass_ && (perf)[at_ - 1].time > a_->time) {                                   \
                    (perf)[at_] = (perf)[at_ - 1];                                                               \
                    at_--;                                                                                       \
                }                                                                                                \
                memset(&(perf)[at_], 0, sizeof (perf)[at_]);                                                     \
                (perf)[at_].algo = (decltype((perf)[at_].algo))a_->algo[dir];                                    \
                (perf)[at_].status = a_->fails ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_SUCCESS;              \
                (perf)[at_].time = a_->time;                                                                     \
                (perf)[at_].memory = a_->fails ? 0 : workspace_of(a_, &(s));                                     \
                (perf)[at_].determinism = a_->deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;     \
                (perf)[at_].mathType = a_->tensor_op ? CUDNN_TENSOR_OP_MATH : (s).conv.math;                     \
            }                                                                                                    \
        *(returned) = n_;                                                                                        \
    } while (0)

cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                   cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                                                   cudnnTensorDescriptor_t y, int requested, int *returned,
                                                   cudnnConvolutionFwdAlgoPerf_t *perf) {
    conv_shape s;
    cudnnStatus_t st;
    if (!handle) return CUDNN_STATUS_NOT_INITIALIZED;
    if ((st = shape_of(&s, x, w, conv, y)) != CUDNN_STATUS_SUCCESS) return st;
    EMU_FIND(DIR_FWD, s, requested, returned, perf);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                     cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                                                     cudnnTensorDescriptor_t y, int requested, int *returned,
                                                     cudnnConvolutionFwdAlgoPerf_t *perf) {
    return cudnnFindConvolutionForwardAlgorithm(handle, x, w, conv, y, requested, returned, perf);
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t handle, cudnnFilterDescriptor_t w,
                                                        cudnnTensorDescriptor_t dy,
                                                        cudnnConvolutionDescriptor_t conv,
                                                        cudnnTensorDescriptor_t dx, int requested, int *returned,
                                                        cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    conv_shape s;
    cudnnStatus_t st;
    if (!handle) return CUDNN_STATUS_NOT_INITIALIZED;
    if ((st = shape_of(&s, dx, w, conv, dy)) != CUDNN_STATUS_SUCCESS) return st;
    EMU_FIND(DIR_BWD_DATA, s, requested, returned, perf);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t handle, cudnnFilterDescriptor_t w,
                                                          cudnnTensorDescriptor_t dy,
                                                          cudnnConvolutionDescriptor_t conv,
                                                          cudnnTensorDescriptor_t dx, int requested, int *returned,
                                                          cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    return cudnnFindConvolutionBackwardDataAlgorithm(handle, w, dy, conv, dx, requested, returned, perf);
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                          cudnnTensorDescriptor_t dy,
                                                          cudnnConvolutionDescriptor_t conv,
                                                          cudnnFilterDescriptor_t dw, int requested, int *returned,
                                                          cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
    conv_shape s;
    cudnnStatus_t st;
    if (!handle) return CUDNN_STATUS_NOT_INITIALIZED;
    if ((st = shape_of(&s, x, dw, conv, dy)) != CUDNN_STATUS_SUCCESS) return st;
    EMU_FIND(DIR_BWD_FILTER, s, requested, returned, perf);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                            cudnnTensorDescriptor_t dy,
                                                            cudnnConvolutionDescriptor_t conv,
                                                            cudnnFilterDescriptor_t dw, int requested,
                                                            int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
    return cudnnFindConvolutionBackwardFilterAlgorithm(handle, x, dy, conv, dw, requested, returned, perf);
}

// ---------------------------------------------------------------- running a convolution

typedef struct {
    int dir;
    conv_shape s;
    int tf32;             // the tensor-core algorithm: inputs rounded to TF32
    float alpha, beta;
    const float *a, *b;   // the inputs: (x, w), (dy, w), (x, dy) by direction
    float *out;           // y, dx, dw
    void *workspace;
    size_t workspace_bytes;
} conv_call;

// x rounded to TF32 (10-bit mantissa; to nearest, ties away), where asked.
static double in(float x, int tf32) {
    if (tf32 && isfinite(x)) {
        uint32_t u;
        memcpy(&u, &x, 4);
        u = (u + 0x1000u) & 0xFFFFE000u;
        memcpy(&x, &u, 4);
    }
    return x;
}

// out = alpha acc + beta out, out not read when beta is 0.
static void blend(float *out, const double *acc, size_t n, float alpha, float beta) {
    for (size_t i = 0; i < n; i++) out[i] = (float)(alpha * acc[i] + (beta != 0.0f ? (double)beta * out[i] : 0.0));
}

static void conv_run(const conv_call *c) {
    const emu_cudnn_tensor X = c->s.x, Y = c->s.y;
    const emu_cudnn_filter F = c->s.w;
    const emu_cudnn_conv cv = c->s.conv;
    const int t = c->tf32;
    if (c->workspace_bytes) memset(c->workspace, 0xFF, c->workspace_bytes); // what an algorithm leaves: garbage
    if (c->dir == DIR_FWD) { // y[n,k,p,q] = sum over c, r, s of x[n,c,ih,iw] w[k,c,r,s]
        double *acc = (double *)malloc(sizeof(double) * (size_t)Y.h * Y.w);
        for (int n = 0; n < Y.n; n++)
            for (int k = 0; k < Y.c; k++) {
                memset(acc, 0, sizeof(double) * (size_t)Y.h * Y.w);
                for (int ch = 0; ch < X.c; ch++)
                    for (int r = 0; r < F.r; r++)
                        for (int s = 0; s < F.s; s++) {
                            const double wv = in(c->b[(((size_t)k * F.c + ch) * F.r + r) * F.s + s], t);
                            const float *xp = c->a + ((size_t)n * X.c + ch) * X.h * X.w;
                            for (int p = 0; p < Y.h; p++) {
                                const int ih = p * cv.u - cv.pad_h + r * cv.dil_h;
                                if (ih < 0 || ih >= X.h) continue;
                                for (int q = 0; q < Y.w; q++) {
                                    const int iw = q * cv.v - cv.pad_w + s * cv.dil_w;
                                    if (iw >= 0 && iw < X.w) acc[p * Y.w + q] += wv * in(xp[ih * X.w + iw], t);
                                }
                            }
                        }
                blend(c->out + ((size_t)n * Y.c + k) * Y.h * Y.w, acc, (size_t)Y.h * Y.w, c->alpha, c->beta);
            }
        free(acc);
    } else if (c->dir == DIR_BWD_DATA) { // dx[n,c,ih,iw] = sum over k, r, s of dy[n,k,p,q] w[k,c,r,s]
        double *acc = (double *)malloc(sizeof(double) * (size_t)X.h * X.w);
        for (int n = 0; n < X.n; n++)
            for (int ch = 0; ch < X.c; ch++) {
                memset(acc, 0, sizeof(double) * (size_t)X.h * X.w);
                for (int k = 0; k < Y.c; k++)
                    for (int r = 0; r < F.r; r++)
                        for (int s = 0; s < F.s; s++) {
                            const double wv = in(c->b[(((size_t)k * F.c + ch) * F.r + r) * F.s + s], t);
                            const float *gp = c->a + ((size_t)n * Y.c + k) * Y.h * Y.w;
                            for (int p = 0; p < Y.h; p++) {
                                const int ih = p * cv.u - cv.pad_h + r * cv.dil_h;
                                if (ih < 0 || ih >= X.h) continue;
                                for (int q = 0; q < Y.w; q++) {
                                    const int iw = q * cv.v - cv.pad_w + s * cv.dil_w;
                                    if (iw >= 0 && iw < X.w) acc[ih * X.w + iw] += wv * in(gp[p * Y.w + q], t);
                                }
                            }
                        }
                blend(c->out + ((size_t)n * X.c + ch) * X.h * X.w, acc, (size_t)X.h * X.w, c->alpha, c->beta);
            }
        free(acc);
    } else { // dw[k,c,r,s] = sum over n, p, q of dy[n,k,p,q] x[n,c,ih,iw]
        for (int k = 0; k < F.k; k++)
            for (int ch = 0; ch < F.c; ch++)
                for (int r = 0; r < F.r; r++)
                    for (int s = 0; s < F.s; s++) {
                        double acc = 0.0;
                        for (int n = 0; n < X.n; n++) {
                            const float *xp = c->a + ((size_t)n * X.c + ch) * X.h * X.w;
                            const float *gp = c->b + ((size_t)n * Y.c + k) * Y.h * Y.w;
                            for (int p = 0; p < Y.h; p++) {
                                const int ih = p * cv.u - cv.pad_h + r * cv.dil_h;
                                if (ih < 0 || ih >= X.h) continue;
                                for (int q = 0; q < Y.w; q++) {
                                    const int iw = q * cv.v - cv.pad_w + s * cv.dil_w;
                                    if (iw >= 0 && iw < X.w) acc += in(gp[p * Y.w + q], t) * in(xp[ih * X.w + iw], t);
                                }
                            }
                        }
                        blend(c->out + (((size_t)k * F.c + ch) * F.r + r) * F.s + s, &acc, 1, c->alpha, c->beta);
                    }
    }
}

static cudnnStatus_t check_operand(const char *name, const void *p, size_t bytes) {
    size_t room = 0;
    if (!emu_device_visible(p, &room))
        return refuse(CUDNN_STATUS_BAD_PARAM, "%s (%p) is host memory, not a device allocation", name, p);
    if (room < bytes)
        return refuse(CUDNN_STATUS_BAD_PARAM, "%s: %zu bytes at %p run %zu bytes past its allocation", name, bytes, p,
                      bytes - room);
    return CUDNN_STATUS_SUCCESS;
}

// Checks a call of direction c->dir with algorithm `algo` and queues it.
static cudnnStatus_t conv_issue(cudnnHandle_t handle, conv_call *c, int algo, const char *what) {
    static const char *names[3] = {"x", "dy", "x"}, *names_b[3] = {"w", "w", "dy"}, *names_out[3] = {"y", "dx", "dw"};
    if (!handle) return CUDNN_STATUS_NOT_INITIALIZED;
    emu_check_stream(handle->stream, what);
    const emu_algo *a = algo_of(c->dir, algo);
    if (!a) return refuse(CUDNN_STATUS_NOT_SUPPORTED, "%s: algorithm %d (not one Find offers)", what, algo);
    if (a->tensor_op && !tensor_ops_allowed(c->s.conv.math))
        return refuse(CUDNN_STATUS_NOT_SUPPORTED, "%s: tensor-core algorithm %d under CUDNN_FMA_MATH", what, algo);
    const size_t need = workspace_of(a, &c->s);
    if (c->workspace_bytes < need)
        return refuse(CUDNN_STATUS_BAD_PARAM, "%s: algorithm %d needs %zu bytes of workspace, given %zu", what, algo,
                      need, c->workspace_bytes);
    const size_t bytes_a = c->dir == DIR_BWD_DATA ? tensor_bytes(&c->s.y) : tensor_bytes(&c->s.x);
    const size_t bytes_b = c->dir == DIR_BWD_FILTER ? tensor_bytes(&c->s.y) : filter_bytes(&c->s.w);
    const size_t bytes_out = c->dir == DIR_FWD       ? tensor_bytes(&c->s.y)
                             : c->dir == DIR_BWD_DATA ? tensor_bytes(&c->s.x)
                                                      : filter_bytes(&c->s.w);
    cudnnStatus_t s;
    if ((s = check_operand(names[c->dir], c->a, bytes_a)) != CUDNN_STATUS_SUCCESS ||
        (s = check_operand(names_b[c->dir], c->b, bytes_b)) != CUDNN_STATUS_SUCCESS ||
        (s = check_operand(names_out[c->dir], c->out, bytes_out)) != CUDNN_STATUS_SUCCESS ||
        (c->workspace_bytes &&
         (s = check_operand("the workspace", c->workspace, c->workspace_bytes)) != CUDNN_STATUS_SUCCESS))
        return s;
    c->tf32 = a->tensor_op;
    const conv_call call = *c;
    emu_enqueue_fn([=]() { conv_run(&call); });
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha, cudnnTensorDescriptor_t x_desc,
                                      const void *x, cudnnFilterDescriptor_t w_desc, const void *w,
                                      cudnnConvolutionDescriptor_t conv, cudnnConvolutionFwdAlgo_t algo,
                                      void *workspace, size_t workspace_bytes, const void *beta,
                                      cudnnTensorDescriptor_t y_desc, void *y) {
    conv_call c = {DIR_FWD, {}, 0, *(const float *)alpha, *(const float *)beta, (const float *)x, (const float *)w,
                   (float *)y, workspace, workspace_bytes};
    cudnnStatus_t s = shape_of(&c.s, x_desc, w_desc, conv, y_desc);
    return s != CUDNN_STATUS_SUCCESS ? s : conv_issue(handle, &c, algo, "cudnnConvolutionForward");
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void *alpha, cudnnFilterDescriptor_t w_desc,
                                           const void *w, cudnnTensorDescriptor_t dy_desc, const void *dy,
                                           cudnnConvolutionDescriptor_t conv, cudnnConvolutionBwdDataAlgo_t algo,
                                           void *workspace, size_t workspace_bytes, const void *beta,
                                           cudnnTensorDescriptor_t dx_desc, void *dx) {
    conv_call c = {DIR_BWD_DATA, {}, 0, *(const float *)alpha, *(const float *)beta, (const float *)dy,
                   (const float *)w, (float *)dx, workspace, workspace_bytes};
    cudnnStatus_t s = shape_of(&c.s, dx_desc, w_desc, conv, dy_desc);
    return s != CUDNN_STATUS_SUCCESS ? s : conv_issue(handle, &c, algo, "cudnnConvolutionBackwardData");
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void *alpha,
                                             cudnnTensorDescriptor_t x_desc, const void *x,
                                             cudnnTensorDescriptor_t dy_desc, const void *dy,
                                             cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *workspace,
                                             size_t workspace_bytes, const void *beta,
                                             cudnnFilterDescriptor_t dw_desc, void *dw) {
    conv_call c = {DIR_BWD_FILTER, {}, 0, *(const float *)alpha, *(const float *)beta, (const float *)x,
                   (const float *)dy, (float *)dw, workspace, workspace_bytes};
    cudnnStatus_t s = shape_of(&c.s, x_desc, dw_desc, conv, dy_desc);
    return s != CUDNN_STATUS_SUCCESS ? s : conv_issue(handle, &c, algo, "cudnnConvolutionBackwardFilter");
}
