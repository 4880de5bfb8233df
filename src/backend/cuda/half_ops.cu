// half_ops.cu: the 16-bit conversions of mixed precision on the GPU (ops.h:
// to_half, from_half, store_half, round_half), so that a bf16/fp16 prior's
// matrices, saved activations and gradients are converted and rounded where
// the ops run instead of on the host. Each element goes through core/half.h's
// own scalar functions (host-and-device under nvcc), so the codes and values
// are those of the CPU bit for bit: round to nearest even, fp16 overflow to
// infinity and subnormals, NaN kept quiet with its payload. One grid-stride
// kernel per op on cuda_stream; round_half counts the non-finite results on
// the GPU and copies the count back. The encoding and decoding serve
// transformer_ops.cu's 16-bit products too (cuda.h).
#include <math.h>

#include "backend/cuda/common.cuh"

// dst (n) = src (n) in fmt.
static __global__ void to_half_kernel(uint16_t *dst, const float *src, int64_t n, half_fmt fmt) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = half_encode(src[i], fmt);
}

// dst (n) = the values of src (n).
static __global__ void from_half_kernel(float *dst, const uint16_t *src, int64_t n, half_fmt fmt) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = half_decode(src[i], fmt);
}

// dst (n) = x (n) in fmt; x = the stored values.
static __global__ void store_half_kernel(uint16_t *dst, float *x, int64_t n, half_fmt fmt) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const uint16_t h = half_encode(x[i], fmt);
        dst[i] = h;
        x[i] = half_decode(h, fmt);
    }
}

// x (n) rounded to fmt; each warp adds its count of non-finite results to
// *count (an integer: the order of the additions does not matter); with
// filter, those results become +0 (as the CPU's).
static __global__ void round_half_kernel(float *x, int64_t n, half_fmt fmt, int filter, unsigned long long *count) {
    unsigned bad = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float r = half_decode(half_encode(x[i], fmt), fmt);
        if (!(fabsf(r) < INFINITY)) { // inf or NaN
            bad++;
            if (filter) r = 0.0f;
        }
        x[i] = r;
    }
    for (int o = 16; o > 0; o >>= 1) bad += __shfl_down_sync(0xffffffffu, bad, o);
    if (threadIdx.x % 32 == 0 && bad) atomicAdd(count, (unsigned long long)bad);
}

void cuda_half_encode(uint16_t *dst, const float *src, int64_t n, half_fmt fmt) {
    if (n <= 0) return;
    to_half_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(dst, src, n, fmt);
    CUDA_LAUNCHED("to_half_kernel");
}

void cuda_half_decode(float *dst, const uint16_t *src, int64_t n, half_fmt fmt) {
    if (n <= 0) return;
    from_half_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(dst, src, n, fmt);
    CUDA_LAUNCHED("from_half_kernel");
}

static void cuda_store_half(uint16_t *dst, float *x, int64_t n, half_fmt fmt) {
    if (n <= 0) return;
    store_half_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(dst, x, n, fmt);
    CUDA_LAUNCHED("store_half_kernel");
}

// The count lives in device memory of this file (allocated on first use);
// the call waits for the stream to copy it back.
static int64_t cuda_round_half(float *x, int64_t n, half_fmt fmt, int filter) {
    static unsigned long long *count = NULL;
    if (n <= 0) return 0;
    if (!count) CUDA_CHECK(cudaMalloc(&count, sizeof *count));
    CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof *count, cuda_stream));
    round_half_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(x, n, fmt, filter, count);
    CUDA_LAUNCHED("round_half_kernel");
    unsigned long long h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, count, sizeof h, cudaMemcpyDeviceToHost, cuda_stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
    return (int64_t)h;
}

void cuda_register_half_ops(backend_ops *ops) {
    ops->to_half = cuda_half_encode;
    ops->from_half = cuda_half_decode;
    ops->store_half = cuda_store_half;
    ops->round_half = cuda_round_half;
}
