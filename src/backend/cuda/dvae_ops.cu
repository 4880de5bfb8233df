// dvae_ops.cu: the dVAE's ops on the GPU, with the contracts of ops.h and the
// CPU versions (backend/cpu/conv.c, pool.c, elementwise.c, dvae/loss.c) as
// the reference: the convolutions through cuDNN, the one-hot input of the
// decoder (a gather), ReLU, 2x2 max-pooling, nearest upsampling, and the
// terms of the ELBO (Gumbel noise and softmax, KL to the uniform prior, logit-Laplace
// likelihood). Everything runs on cuda_stream; the losses reduce on the GPU
// in double and copy one scalar back.
//
// Sizes as in ops.h: B batch, Ci/Co/C channels, H/W spatial, k kernel side,
// V codes, P = G*G code positions, N = S*S pixels. All tensors NCHW fp32.
#include <assert.h>
#include <cudnn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/common.cuh"

// ---------------------------------------------------------------- cuDNN

// A cuDNN call that must succeed; a failure is a bug or a dead device.
static void cudnn_check_fail(cudnnStatus_t s, const char *call, const char *file, int line) {
    fprintf(stderr, "dalle: cuDNN error at %s:%d: %s: %s\n", file, line, call, cudnnGetErrorString(s));
    abort();
}
#define CUDNN_CHECK(call)                                                                \
    do {                                                                                 \
        cudnnStatus_t s_ = (call);                                                       \
        if (s_ != CUDNN_STATUS_SUCCESS) cudnn_check_fail(s_, #call, __FILE__, __LINE__); \
    } while (0)

static cudnnHandle_t g_cudnn = NULL;
// The math the algorithms may use. fp32 by default: CUDNN_FMA_MATH keeps
// cuDNN off the tensor cores (its DEFAULT_MATH would allow TF32 on sm_80+).
// DALLE_CUDA_TF32=1 in the environment allows TF32 tensor-core convolutions
// (about 3 decimal digits of the products: faster, but not the fp32 contract
// the tests check).
static cudnnMathType_t g_math = CUDNN_FMA_MATH;

// The handle, created on first use (a process that never convolves never
// pays for cuDNN), bound to cuda_stream.
static cudnnHandle_t cudnn(void) {
    if (!g_cudnn) {
        CUDNN_CHECK(cudnnCreate(&g_cudnn));
        CUDNN_CHECK(cudnnSetStream(g_cudnn, cuda_stream));
        const char *s = getenv("DALLE_CUDA_TF32");
        g_math = s && atoi(s) == 1 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    }
    return g_cudnn;
}

// ---------------------------------------------------------------- conv plans
// cuDNN's legacy convolution API (deprecated in cuDNN 9 in favour of the
// graph API, still shipped and supported): one plan per shape holds the
// descriptors and, found on first use of each direction, its algorithm.

// One algorithm of one direction: cuDNN's algo enum as an int, the math type
// it was measured with, its workspace in bytes.
typedef struct {
    int found;
    int algo;
    cudnnMathType_t math;
    size_t ws;
} conv_algo;

typedef struct {
    int B, Ci, Co, H, W, k;             // the key; B == 0: a free slot
    cudnnTensorDescriptor_t x, y;       // (B, Ci, H, W), (B, Co, H, W)
    cudnnFilterDescriptor_t w;          // (Co, Ci, k, k)
    cudnnConvolutionDescriptor_t conv;  // pad (k-1)/2, stride 1, cross-correlation, fp32
    conv_algo algo[3];                  // by conv_dir
} conv_plan;

// The three passes, each with its own algorithm.
enum conv_dir { CONV_FWD, CONV_BWD_DATA, CONV_BWD_FILTER };

// The dVAE has about a dozen shapes; a test or a second model more. When the
// table is full the oldest plan is dropped (and found again if it returns).
#define CONV_PLANS 64
static conv_plan g_plans[CONV_PLANS];
static int g_plan_next = 0; // the slot to reuse when all are taken

static void conv_plan_drop(conv_plan *p) {
    if (!p->B) return;
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->x));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->y));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(p->w));
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->conv));
    p->B = 0;
}

// The plan of these sizes, made on first use (no algorithm found yet).
static conv_plan *conv_plan_get(int B, int Ci, int Co, int H, int W, int k) {
    if (B < 1 || Ci < 1 || Co < 1 || H < 1 || W < 1 || k < 1 || k % 2 == 0) {
        fprintf(stderr, "dalle: conv2d on CUDA: bad sizes B %d Ci %d Co %d H %d W %d k %d\n", B, Ci, Co, H, W, k);
        abort();
    }
    conv_plan *p = NULL;
    for (int i = 0; i < CONV_PLANS; i++) {
        conv_plan *q = &g_plans[i];
        if (q->B == B && q->Ci == Ci && q->Co == Co && q->H == H && q->W == W && q->k == k) return q;
        if (!q->B && !p) p = q;
    }
    if (!p) {
        p = &g_plans[g_plan_next];
        g_plan_next = (g_plan_next + 1) % CONV_PLANS;
        conv_plan_drop(p);
    }
    (void)cudnn(); // reads DALLE_CUDA_TF32 into g_math
    memset(p, 0, sizeof *p);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Ci, H, W));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Co, H, W));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, Co, Ci, k, k));
    const int pad = (k - 1) / 2;
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, g_math));
    p->B = B, p->Ci = Ci, p->Co = Co, p->H = H, p->W = W, p->k = k;
    return p;
}

// One measured (or ranked) algorithm, whatever the direction.
typedef struct {
    int algo;
    cudnnStatus_t status;
    float time; // ms measured by cudnnFind, or the heuristic's rank
    size_t memory;
    int deterministic;
    cudnnMathType_t math;
} conv_candidate;

// Fills c[0..n) from any of cuDNN's three perf structs (same field names).
#define CONV_CANDIDATES(c, perf, n, ranked)                                                        \
    for (int i_ = 0; i_ < (n); i_++) {                                                             \
        const conv_candidate c_ = {(int)(perf)[i_].algo, (perf)[i_].status,                        \
                                   (ranked) ? (float)i_ : (perf)[i_].time, (perf)[i_].memory,      \
                                   (perf)[i_].determinism == CUDNN_DETERMINISTIC, (perf)[i_].mathType}; \
        (c)[i_] = c_;                                                                              \
    }

// The workspace an algorithm may ask for: a quarter of the free memory, at
// most 1 GiB (cuDNN's FFT algorithms can want several).
static size_t conv_ws_cap(void) {
    size_t fr = 0, tot = 0;
    CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    const size_t gib = (size_t)1 << 30;
    return fr / 4 < gib ? fr / 4 : gib;
}

static int is_tensor_op(cudnnMathType_t m) {
    return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// The index of the algorithm to use among c[0..n), or -1: the fastest that
// ran, fits `cap` and (in fp32) uses no tensor cores, unless a deterministic
// one is within 10% of it (the same bits from run to run are worth that much).
static int conv_pick(const conv_candidate *c, int n, size_t cap) {
    int best = -1, best_det = -1;
    for (int i = 0; i < n; i++) {
        if (c[i].status != CUDNN_STATUS_SUCCESS || c[i].memory > cap || c[i].time < 0) continue;
        if (g_math == CUDNN_FMA_MATH && is_tensor_op(c[i].math)) continue;
        if (best < 0 || c[i].time < c[best].time) best = i;
        if (c[i].deterministic && (best_det < 0 || c[i].time < c[best_det].time)) best_det = i;
    }
    if (best_det >= 0 && c[best_det].time <= 1.1f * c[best].time) return best_det;
    return best;
}

static void conv_algo_set(conv_algo *a, const conv_candidate *c, int n, const conv_plan *p, const char *dir) {
    const int i = conv_pick(c, n, conv_ws_cap());
    if (i < 0) {
        fprintf(stderr, "dalle: cuDNN has no %s algorithm for conv B %d Ci %d Co %d H %d W %d k %d\n", dir, p->B,
                p->Ci, p->Co, p->H, p->W, p->k);
        abort();
    }
    a->found = 1;
    a->algo = c[i].algo;
    // in fp32 the algorithm runs under FMA math whatever cuDNN reports (its
    // DEFAULT_MATH would let TF32 in)
    a->math = g_math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : c[i].math;
    a->ws = c[i].memory;
}

// Finds the algorithm of direction `dir` of plan p: cudnnFind (runs them all
// once, on buffers of its own), or where that fails (out of memory) the
// heuristics' ranking.
#define MAX_ALGOS 16
static void conv_find(conv_plan *p, conv_dir dir) {
    static const char *names[3] = {"forward", "backward-data", "backward-filter"};
    cudnnHandle_t h = cudnn();
    conv_candidate c[MAX_ALGOS];
    int n = 0;
    bool ranked = false;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, g_math));
    if (dir == CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
        ranked = cudnnFindConvolutionForwardAlgorithm(h, p->x, p->w, p->conv, p->y, MAX_ALGOS, &n, perf) !=
                 CUDNN_STATUS_SUCCESS;
        if (ranked)
            CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p->x, p->w, p->conv, p->y, MAX_ALGOS, &n, perf));
        CONV_CANDIDATES(c, perf, n, ranked);
    } else if (dir == CONV_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
        ranked = cudnnFindConvolutionBackwardDataAlgorithm(h, p->w, p->y, p->conv, p->x, MAX_ALGOS, &n, perf) !=
                 CUDNN_STATUS_SUCCESS;
        if (ranked)
            CUDNN_CHECK(
                cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->w, p->y, p->conv, p->x, MAX_ALGOS, &n, perf));
        CONV_CANDIDATES(c, perf, n, ranked);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
        ranked = cudnnFindConvolutionBackwardFilterAlgorithm(h, p->x, p->y, p->conv, p->w, MAX_ALGOS, &n, perf) !=
                 CUDNN_STATUS_SUCCESS;
        if (ranked)
            CUDNN_CHECK(
                cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x, p->y, p->conv, p->w, MAX_ALGOS, &n, perf));
        CONV_CANDIDATES(c, perf, n, ranked);
    }
    conv_algo_set(&p->algo[dir], c, n, p, names[dir]);
}

// Direction `dir` of plan p ready to run: its algorithm (found on first
// use), the conv descriptor's math type set to it, its workspace in *ws.
static const conv_algo *conv_ready(conv_plan *p, conv_dir dir, void **ws) {
    conv_algo *a = &p->algo[dir];
    if (!a->found) conv_find(p, dir);
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, a->math));
    *ws = cuda_workspace(a->ws);
    return a;
}

// ---------------------------------------------------------------- conv2d

// out (B, Co, HW) += alpha * b[c]
static __global__ void bias_add_kernel(float *out, const float *b, float alpha, int Co, int64_t HW, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] += alpha * b[(i / HW) % Co];
}

// db (Co) += alpha * the sum of dout (B, Co, HW) over batch and space, in
// double as the CPU; one block per channel.
static __global__ void bias_grad_kernel(float *db, const float *dout, float alpha, int B, int Co, int64_t HW) {
    const int c = blockIdx.x;
    double s = 0.0;
    for (int b = 0; b < B; b++) {
        const float *g = dout + ((int64_t)b * Co + c) * HW;
        for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) s += g[i];
    }
    s = block_sum_double(s);
    if (threadIdx.x == 0) db[c] += (float)(alpha * s);
}

// out = alpha * (conv(in, w) + b) + beta * out: cuDNN's alpha/beta (beta 0
// never reads out, so NaN garbage there is fine), then the bias.
static void cuda_conv2d_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci, int Co,
                                int H, int W, int k, float alpha, float beta, float *scratch) {
    (void)scratch; // cuda_conv2d_scratch_floats is 0: the workspace is cuda_workspace's
    conv_plan *p = conv_plan_get(B, Ci, Co, H, W, k);
    void *ws;
    const conv_algo *a = conv_ready(p, CONV_FWD, &ws);
    CUDNN_CHECK(cudnnConvolutionForward(cudnn(), &alpha, p->x, in, p->w, w, p->conv,
                                        (cudnnConvolutionFwdAlgo_t)a->algo, ws, a->ws, &beta, p->y, out));
    if (b) {
        const int64_t HW = (int64_t)H * W, n = (int64_t)B * Co * HW;
        bias_add_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(out, b, alpha, Co, HW, n);
        CUDA_LAUNCHED("bias_add_kernel");
    }
}

// din += alpha * conv^T(dout), dw += alpha * dout (x) in, db += alpha * sum dout:
// cuDNN's backward passes with beta = 1 accumulate.
static void cuda_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                                 const float *w, int B, int Ci, int Co, int H, int W, int k, float alpha,
                                 float *scratch) {
    (void)scratch;
    const float one = 1.0f;
    if (db) {
        bias_grad_kernel<<<Co, CUDA_THREADS, 0, cuda_stream>>>(db, dout, alpha, B, Co, (int64_t)H * W);
        CUDA_LAUNCHED("bias_grad_kernel");
    }
    if (!din && !dw) return;
    conv_plan *p = conv_plan_get(B, Ci, Co, H, W, k);
    if (din) {
        void *ws;
        const conv_algo *a = conv_ready(p, CONV_BWD_DATA, &ws);
        CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn(), &alpha, p->w, w, p->y, dout, p->conv,
                                                 (cudnnConvolutionBwdDataAlgo_t)a->algo, ws, a->ws, &one, p->x, din));
    }
    if (dw) {
        void *ws;
        const conv_algo *a = conv_ready(p, CONV_BWD_FILTER, &ws);
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn(), &alpha, p->x, in, p->y, dout, p->conv,
                                                   (cudnnConvolutionBwdFilterAlgo_t)a->algo, ws, a->ws, &one, p->w,
                                                   dw));
    }
}

static int64_t cuda_conv2d_scratch_floats(int Ci, int Co, int H, int W, int k) {
    (void)Ci, (void)Co, (void)H, (void)W, (void)k;
    return 0;
}

// ---------------------------------------------------------------- one-hot conv

// out (B, Co, HW): out[b, c, p] = w[c, codes[b, p]] + bias[c]; w (Co, V).
static __global__ void onehot_conv_kernel(float *out, const int32_t *codes, const float *w, const float *bias,
                                          int V, int Co, int64_t HW, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t p = e % HW, bc = e / HW;
        const int c = (int)(bc % Co);
        const int32_t z = codes[(bc / Co) * HW + p];
        assert(z >= 0 && z < V);
        out[e] = w[(int64_t)c * V + z] + (bias ? bias[c] : 0.0f);
    }
}

static void cuda_onehot_conv_forward(float *out, const int32_t *codes, const float *w, const float *bias, int B,
                                     int V, int Co, int HW) {
    const int64_t n = (int64_t)B * Co * HW;
    if (n <= 0) return;
    onehot_conv_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(out, codes, w, bias, V, Co, HW, n);
    CUDA_LAUNCHED("onehot_conv_kernel");
}

// ---------------------------------------------------------------- ReLU

static __global__ void relu_forward_kernel(float *out, const float *in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = in[i] > 0 ? in[i] : 0.0f;
}

static __global__ void relu_backward_kernel(float *din, const float *dout, const float *in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        din[i] += in[i] > 0 ? dout[i] : 0.0f;
}

static void cuda_relu_forward(float *out, const float *in, int64_t n) {
    if (n <= 0) return;
    relu_forward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(out, in, n);
    CUDA_LAUNCHED("relu_forward_kernel");
}

static void cuda_relu_backward(float *din, const float *dout, const float *in, int64_t n) {
    if (n <= 0) return;
    relu_backward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(din, dout, in, n);
    CUDA_LAUNCHED("relu_backward_kernel");
}

// ---------------------------------------------------------------- max-pool 2x2

// The index in plane `x` (H, W rows of W) of the max of window (i, j): scan
// order (0,0) (0,1) (1,0) (1,1) with strict >, so the first max wins (the CPU's).
static __device__ int64_t maxpool2_at(const float *x, int W, int i, int j) {
    const int64_t r0 = (int64_t)2 * i * W + 2 * j, r1 = r0 + W;
    int64_t at = r0;
    if (x[r0 + 1] > x[at]) at = r0 + 1;
    if (x[r1] > x[at]) at = r1;
    if (x[r1 + 1] > x[at]) at = r1 + 1;
    return at;
}

// One thread per output: out (B*C planes, Ho, Wo), in (planes, H, W).
static __global__ void maxpool2_forward_kernel(float *out, const float *in, int H, int W, int64_t n) {
    const int Ho = H / 2, Wo = W / 2;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int j = (int)(e % Wo);
        const int64_t t = e / Wo;
        const int i = (int)(t % Ho);
        const float *x = in + (t / Ho) * H * W;
        out[e] = x[maxpool2_at(x, W, i, j)];
    }
}

// The windows do not overlap: each thread adds to its own input element.
static __global__ void maxpool2_backward_kernel(float *din, const float *dout, const float *in, int H, int W,
                                                int64_t n) {
    const int Ho = H / 2, Wo = W / 2;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int j = (int)(e % Wo);
        const int64_t t = e / Wo;
        const int i = (int)(t % Ho);
        const int64_t plane = (t / Ho) * H * W;
        din[plane + maxpool2_at(in + plane, W, i, j)] += dout[e];
    }
}

static void maxpool2_check(int H, int W) {
    if (H % 2 || W % 2) {
        fprintf(stderr, "dalle: maxpool2 on CUDA: H %d and W %d must be even\n", H, W);
        abort();
    }
}

static void cuda_maxpool2_forward(float *out, const float *in, int B, int C, int H, int W) {
    maxpool2_check(H, W);
    const int64_t n = (int64_t)B * C * (H / 2) * (W / 2);
    if (n <= 0) return;
    maxpool2_forward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(out, in, H, W, n);
    CUDA_LAUNCHED("maxpool2_forward_kernel");
}

static void cuda_maxpool2_backward(float *din, const float *dout, const float *in, int B, int C, int H, int W) {
    maxpool2_check(H, W);
    const int64_t n = (int64_t)B * C * (H / 2) * (W / 2);
    if (n <= 0) return;
    maxpool2_backward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(din, dout, in, H, W, n);
    CUDA_LAUNCHED("maxpool2_backward_kernel");
}

// ---------------------------------------------------------------- upsample x2

// One thread per output: out (planes, 2H, 2W), in (planes, H, W).
static __global__ void upsample2_forward_kernel(float *out, const float *in, int H, int W, int64_t n) {
    const int Ho = 2 * H, Wo = 2 * W;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int X = (int)(e % Wo);
        const int64_t t = e / Wo;
        const int Y = (int)(t % Ho);
        out[e] = in[(t / Ho) * H * W + (int64_t)(Y / 2) * W + X / 2];
    }
}

// One thread per input: din (planes, H, W) += the 2x2 block of dout, summed
// in the CPU's order (row pairs first).
static __global__ void upsample2_backward_kernel(float *din, const float *dout, int H, int W, int64_t n) {
    const int Wo = 2 * W;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int j = (int)(e % W);
        const int64_t t = e / W;
        const int i = (int)(t % H);
        const float *r0 = dout + (t / H) * 4 * H * W + (int64_t)2 * i * Wo, *r1 = r0 + Wo;
        din[e] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
    }
}

static void cuda_upsample2_forward(float *out, const float *in, int B, int C, int H, int W) {
    const int64_t n = (int64_t)B * C * 4 * H * W;
    if (n <= 0) return;
    upsample2_forward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(out, in, H, W, n);
    CUDA_LAUNCHED("upsample2_forward_kernel");
}

static void cuda_upsample2_backward(float *din, const float *dout, int B, int C, int H, int W) {
    const int64_t n = (int64_t)B * C * H * W;
    if (n <= 0) return;
    upsample2_backward_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(din, dout, H, W, n);
    CUDA_LAUNCHED("upsample2_backward_kernel");
}

// ---------------------------------------------------------------- softmax over codes
// logits and z are (B, V, P): the V values of one position lie P apart. A
// block takes COL_TX consecutive positions of one image (threadIdx.x, so
// that each load of a warp is one contiguous row) and COL_TY threads per
// position stride over V (threadIdx.y); grid (ceil(P / COL_TX), B).
#define COL_TX 32
#define COL_TY 8

// The max (take_max) or the sum of v over the COL_TY threads of each
// position, combined in the order ty = 0, 1, ..., returned to all of them.
// Every thread of the block must call it.
static __device__ float col_combine(float v, bool take_max) {
    __shared__ float part[COL_TY][COL_TX];
    __shared__ float result[COL_TX];
    part[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.y == 0) {
        float r = part[0][threadIdx.x];
        for (int i = 1; i < COL_TY; i++) r = take_max ? fmaxf(r, part[i][threadIdx.x]) : r + part[i][threadIdx.x];
        result[threadIdx.x] = r;
    }
    __syncthreads();
    const float r = result[threadIdx.x];
    __syncthreads(); // part and result are reused by the next call
    return r;
}

static dim3 col_grid(int B, int P) {
    if (B > 65535) {
        fprintf(stderr, "dalle: CUDA softmax over codes: batch %d over 65535\n", B);
        abort();
    }
    return dim3((unsigned)((P + COL_TX - 1) / COL_TX), (unsigned)B);
}

// z = softmax over V of (logits + g) * inv_tau, the CPU's arithmetic: z holds
// the scaled scores, then exp(s - max), then the normalised values.
static __global__ void gumbel_softmax_forward_kernel(float *z, const float *logits, const float *g, float inv_tau,
                                                     int V, int P) {
    const int p = blockIdx.x * COL_TX + threadIdx.x;
    const bool ok = p < P;
    const int64_t base = (int64_t)blockIdx.y * V * P + p;
    float mx = -INFINITY;
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) {
            const int64_t i = base + (int64_t)v * P;
            const float s = (logits[i] + g[i]) * inv_tau;
            z[i] = s;
            mx = fmaxf(mx, s);
        }
    mx = col_combine(mx, true);
    float sum = 0.0f;
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) {
            const int64_t i = base + (int64_t)v * P;
            const float e = expf(z[i] - mx);
            z[i] = e;
            sum += e;
        }
    sum = col_combine(sum, false);
    const float inv = 1.0f / sum;
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) z[base + (int64_t)v * P] *= inv;
}

// dlogits += inv_tau * z * (dz - sum_k z_k dz_k)
static __global__ void gumbel_softmax_backward_kernel(float *dlogits, const float *dz, const float *z,
                                                      float inv_tau, int V, int P) {
    const int p = blockIdx.x * COL_TX + threadIdx.x;
    const bool ok = p < P;
    const int64_t base = (int64_t)blockIdx.y * V * P + p;
    float dot = 0.0f;
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) {
            const int64_t i = base + (int64_t)v * P;
            dot += z[i] * dz[i];
        }
    dot = col_combine(dot, false);
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) {
            const int64_t i = base + (int64_t)v * P;
            dlogits[i] += inv_tau * z[i] * (dz[i] - dot);
        }
}

static void cuda_gumbel_softmax_forward(float *z, const float *logits, const float *g, float tau, int B, int V,
                                        int P) {
    if ((int64_t)B * V * P <= 0) return;
    gumbel_softmax_forward_kernel<<<col_grid(B, P), dim3(COL_TX, COL_TY), 0, cuda_stream>>>(z, logits, g,
                                                                                           1.0f / tau, V, P);
    CUDA_LAUNCHED("gumbel_softmax_forward_kernel");
}

static void cuda_gumbel_softmax_backward(float *dlogits, const float *dz, const float *z, float tau, int B, int V,
                                         int P) {
    if ((int64_t)B * V * P <= 0) return;
    gumbel_softmax_backward_kernel<<<col_grid(B, P), dim3(COL_TX, COL_TY), 0, cuda_stream>>>(dlogits, dz, z,
                                                                                            1.0f / tau, V, P);
    CUDA_LAUNCHED("gumbel_softmax_backward_kernel");
}

// ---------------------------------------------------------------- Gumbel noise
// Philox4x32-10 as core/rng.c computes it (the same rounds and constants; the
// library cannot call libdalle's): the four words of block (key, 0, ctr).
static __device__ void philox4x32_dev(uint64_t key, uint64_t ctr, uint32_t w[4]) {
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2; // mul.wide.u32
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (uint32_t)p1;
        c2 = n2;
        c3 = (uint32_t)p0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    w[0] = c0, w[1] = c1, w[2] = c2, w[3] = c3;
}

// g[i] = -ln(-ln u) for the draws first + i, i < n: one thread per Philox
// block j (draws 4j .. 4j+3), from block b0 = first / 4 on. The uniform is
// rng.c's u01, exact in float: (w >> 9 + 1/2) / 2^23.
static __global__ void gumbel_noise_kernel(float *g, uint64_t key, uint64_t counter, int64_t first, int64_t n,
                                           int64_t b0, int64_t nblk) {
    for (int64_t jj = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; jj < nblk;
         jj += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = b0 + jj;
        uint32_t w[4];
        philox4x32_dev(key, counter + (uint64_t)j, w);
        #pragma unroll
        for (int q = 0; q < 4; q++) {
            const int64_t i = 4 * j + q - first;
            if (i >= 0 && i < n) {
                const float u = ((float)(w[q] >> 9) + 0.5f) * (1.0f / 8388608.0f);
                g[i] = -logf(-logf(u));
            }
        }
    }
}

static void cuda_gumbel_noise(float *g, uint64_t key, uint64_t counter, int64_t first, int64_t n) {
    if (n <= 0) return;
    const int64_t b0 = first / 4, nblk = (first + n + 3) / 4 - b0;
    gumbel_noise_kernel<<<cuda_grid_1d(nblk), CUDA_THREADS, 0, cuda_stream>>>(g, key, counter, first, n, b0, nblk);
    CUDA_LAUNCHED("gumbel_noise_kernel");
}

// KL(q || uniform) = sum_k q ln q + ln V per position, q = softmax(logits)
// over V, as the CPU: lse = max + ln sum exp(l - max), ln q = l - lse.
// Writes the block's sum of its positions' terms (in position order) to
// partials[block]; with dlogits, adds scale * q (ln q - sum_k q ln q).
static __global__ void kl_uniform_kernel(float *dlogits, double *partials, const float *logits, float scale, int V,
                                         int P, double log_v) {
    __shared__ double term[COL_TX];
    const int p = blockIdx.x * COL_TX + threadIdx.x;
    const bool ok = p < P;
    const int64_t base = (int64_t)blockIdx.y * V * P + p;
    float mx = -INFINITY;
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) mx = fmaxf(mx, logits[base + (int64_t)v * P]);
    mx = col_combine(mx, true);
    float se = 0.0f;
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) se += expf(logits[base + (int64_t)v * P] - mx);
    se = col_combine(se, false);
    const float lse = mx + logf(se);
    float qlq = 0.0f;
    if (ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) {
            const float lq = logits[base + (int64_t)v * P] - lse;
            qlq += expf(lq) * lq;
        }
    qlq = col_combine(qlq, false);
    if (threadIdx.y == 0) term[threadIdx.x] = ok ? (double)qlq + log_v : 0.0;
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        double s = 0.0;
        for (int i = 0; i < COL_TX; i++) s += term[i];
        partials[blockIdx.y * gridDim.x + blockIdx.x] = s;
    }
    if (dlogits && ok)
        for (int v = threadIdx.y; v < V; v += COL_TY) {
            const int64_t i = base + (int64_t)v * P;
            const float lq = logits[i] - lse;
            dlogits[i] += scale * expf(lq) * (lq - qlq);
        }
}

static double cuda_kl_uniform_forward_backward(float *dlogits, const float *logits, float scale, int B, int V,
                                               int P) {
    if ((int64_t)B * V * P <= 0) return 0.0;
    const dim3 grid = col_grid(B, P);
    const int n_part = (int)(grid.x * grid.y);
    double *part = (double *)cuda_workspace(sizeof(double) * ((size_t)n_part + 1));
    kl_uniform_kernel<<<grid, dim3(COL_TX, COL_TY), 0, cuda_stream>>>(dlogits, part, logits, scale, V, P,
                                                                     log((double)V));
    CUDA_LAUNCHED("kl_uniform_kernel");
    return cuda_sum_partials(part, n_part);
}

// ---------------------------------------------------------------- logit-Laplace

// At most this many blocks (and partial sums) for the likelihood.
#define LL_BLOCKS 1024

// Per pixel value x (B, 3, N), with mu = stats[:, 0:3], ln b = stats[:, 3:6]
// (stats (B, 6, N)), the CPU's terms in double: ln 2 + ln b + ln x +
// ln(1 - x) + |logit(x) - mu| / b; each block's sum to partials[block].
// With dstats, writes scale * the gradient (dmu, dlnb) there.
static __global__ void logit_laplace_kernel(float *dstats, double *partials, const float *stats, const float *x,
                                            float scale, int64_t N3, int64_t n) {
    const double ln2 = 0.6931471805599453;
    double acc = 0.0;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = e / N3, i = e - b * N3;
        const float *mu = stats + b * 2 * N3, *lnb = mu + N3;
        const float xi = x[e];
        const float d = logf(xi) - log1pf(-xi) - mu[i]; // logit(x) - mu
        const float inv_b = expf(-lnb[i]);
        acc += ln2 + (double)lnb[i] + (double)logf(xi) + (double)log1pf(-xi) + (double)(fabsf(d) * inv_b);
        if (dstats) {
            float *dmu = dstats + b * 2 * N3, *dlnb = dmu + N3;
            dmu[i] = scale * (d > 0 ? -inv_b : d < 0 ? inv_b : 0.0f);
            dlnb[i] = scale * (1.0f - fabsf(d) * inv_b);
        }
    }
    acc = block_sum_double(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

static double cuda_logit_laplace_nll(float *dstats, const float *stats, const float *x, float scale, int B, int N) {
    const int64_t N3 = 3 * (int64_t)N, n = B * N3;
    if (n <= 0) return 0.0;
    const unsigned blocks = cuda_grid_1d(n) < LL_BLOCKS ? cuda_grid_1d(n) : LL_BLOCKS;
    double *part = (double *)cuda_workspace(sizeof(double) * (blocks + 1));
    logit_laplace_kernel<<<blocks, CUDA_THREADS, 0, cuda_stream>>>(dstats, part, stats, x, scale, N3, n);
    CUDA_LAUNCHED("logit_laplace_kernel");
    return cuda_sum_partials(part, (int)blocks);
}

// ---------------------------------------------------------------- registration

void cuda_register_dvae_ops(backend_ops *ops) {
    ops->conv2d_forward = cuda_conv2d_forward;
    ops->conv2d_backward = cuda_conv2d_backward;
    ops->conv2d_scratch_floats = cuda_conv2d_scratch_floats;
    ops->onehot_conv_forward = cuda_onehot_conv_forward;
    ops->relu_forward = cuda_relu_forward;
    ops->relu_backward = cuda_relu_backward;
    ops->maxpool2_forward = cuda_maxpool2_forward;
    ops->maxpool2_backward = cuda_maxpool2_backward;
    ops->upsample2_forward = cuda_upsample2_forward;
    ops->upsample2_backward = cuda_upsample2_backward;
    ops->gumbel_softmax_forward = cuda_gumbel_softmax_forward;
    ops->gumbel_softmax_backward = cuda_gumbel_softmax_backward;
    ops->gumbel_noise = cuda_gumbel_noise;
    ops->kl_uniform_forward_backward = cuda_kl_uniform_forward_backward;
    ops->logit_laplace_nll = cuda_logit_laplace_nll;
}
