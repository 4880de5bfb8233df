// conv16_ops.cu: a 16-bit dVAE's convolutions on the GPU (ops.h
// conv2d16_forward / conv2d16_backward, dvae train --precision bf16), the
// CPU's composition (backend/cpu/conv16.c) step for step: inputs rounded to
// the format, the weight decoded from its codes, the backend's own fp32
// convolution (dvae_ops.cu: cuDNN, FMA math), its result rounded to the
// format, then bias, alpha, beta and accumulation in fp32. So it gives the
// CPU's values up to the order of the convolution's sums. What it does not do
// yet: hand cuDNN bf16 data (CUDNN_DATA_BFLOAT16, fp32 compute) for the tensor
// cores; the rounding points are those such a call has, so only this file
// would change. The scratch has the CPU's layout (backend/conv16.h).
#include "backend/conv16.h"
#include "backend/cuda/common.cuh"

// The entries of the table this file composes (set at registration, after
// dvae_ops.cu's and optim_ops.cu's).
static void (*conv_fwd)(float *, const float *, const float *, const float *, int, int, int, int, int, int, float,
                        float, float *);
static void (*conv_bwd)(float *, float *, float *, const float *, const float *, const float *, int, int, int, int,
                        int, int, float, float *);
static int64_t (*conv_scratch)(int, int, int, int, int);
static void (*axpy_op)(float *, float, const float *, int64_t);

// dst (n) = src (n) rounded to fmt (dst may equal src).
static __global__ void round_copy_kernel(float *dst, const float *src, int64_t n, half_fmt fmt) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = half_decode(half_encode(src[i], fmt), fmt);
}

static void round_copy(float *dst, const float *src, int64_t n, half_fmt fmt) {
    if (n <= 0) return;
    round_copy_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(dst, src, n, fmt);
    CUDA_LAUNCHED("round_copy_kernel");
}

// out (B, Co, HW) = alpha * (t + b[c]) (+ beta * out when beta != 0), in the
// CPU's order without contraction; b may be NULL.
static __global__ void epilogue_kernel(float *out, const float *t, const float *b, int Co, int64_t HW, int64_t n,
                                       float alpha, float beta) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float bias = b ? b[(i / HW) % Co] : 0.0f;
        const float v = __fmul_rn(alpha, __fadd_rn(t[i], bias));
        out[i] = beta != 0.0f ? __fadd_rn(v, __fmul_rn(beta, out[i])) : v;
    }
}

// The scratch's parts (backend/conv16.h).
static conv16_parts split(float *scratch, int B, int Ci, int Co, int H, int W, int k) {
    return conv16_split(scratch, conv_scratch(Ci, Co, H, W, k), B, Ci, Co, H, W, k);
}

static void cuda_conv2d16_forward(float *out, const float *in, const uint16_t *w, const float *b, int B, int Ci,
                                  int Co, int H, int W, int k, float alpha, float beta, half_fmt fmt,
                                  float *scratch) {
    const int64_t HW = (int64_t)H * W, n = (int64_t)B * Co * HW;
    conv16_parts p = split(scratch, B, Ci, Co, H, W, k);
    cuda_half_decode(p.w, w, (int64_t)Co * Ci * k * k, fmt);
    round_copy(p.i, in, (int64_t)B * Ci * HW, fmt);
    conv_fwd(p.o, p.i, p.w, NULL, B, Ci, Co, H, W, k, 1.0f, 0.0f, p.conv); // (B, Co, H, W)
    round_copy(p.o, p.o, n, fmt);
    if (n <= 0) return;
    epilogue_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(out, p.o, b, Co, HW, n, alpha, beta);
    CUDA_LAUNCHED("epilogue_kernel");
}

static void cuda_conv2d16_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                                   const uint16_t *w, int B, int Ci, int Co, int H, int W, int k, float alpha,
                                   half_fmt fmt, float *scratch) {
    const int64_t HW = (int64_t)H * W, nw = (int64_t)Co * Ci * k * k, nin = (int64_t)B * Ci * HW;
    conv16_parts p = split(scratch, B, Ci, Co, H, W, k);
    cuda_half_decode(p.w, w, nw, fmt);
    round_copy(p.o, dout, (int64_t)B * Co * HW, fmt); // r(dout)
    if (dw) {
        round_copy(p.i, in, nin, fmt); // r(in)
        CUDA_CHECK(cudaMemsetAsync(p.w2, 0, sizeof(float) * (size_t)nw, cuda_stream));
        conv_bwd(NULL, p.w2, NULL, p.o, p.i, p.w, B, Ci, Co, H, W, k, 1.0f, p.conv);
        round_copy(p.w2, p.w2, nw, fmt);
        axpy_op(dw, alpha, p.w2, nw);
    }
    if (din) {
        CUDA_CHECK(cudaMemsetAsync(p.i, 0, sizeof(float) * (size_t)nin, cuda_stream));
        conv_bwd(p.i, NULL, NULL, p.o, in, p.w, B, Ci, Co, H, W, k, 1.0f, p.conv);
        round_copy(p.i, p.i, nin, fmt);
        axpy_op(din, alpha, p.i, nin);
    }
    if (db) conv_bwd(NULL, NULL, db, dout, in, p.w, B, Ci, Co, H, W, k, alpha, p.conv);
}

void cuda_register_conv16_ops(backend_ops *ops) {
    conv_fwd = ops->conv2d_forward;
    conv_bwd = ops->conv2d_backward;
    conv_scratch = ops->conv2d_scratch_floats;
    axpy_op = ops->axpy;
    ops->conv2d16_forward = cuda_conv2d16_forward;
    ops->conv2d16_backward = cuda_conv2d16_backward;
}
