// common.cuh: kernel helpers that the op files of the CUDA backend share:
// the grid of an elementwise (grid-stride) loop, and the sums that end in one
// double on the host (losses, norms). A reducing kernel writes one double
// partial per block into device memory (block_sum_double gives the block's
// sum); cuda_sum_partials adds them up on the GPU in a fixed order (one
// block, a fixed thread count) and copies the result back, so a given grid
// gives the same bits on every run. Private to src/backend/cuda/.
#pragma once
#include <stdint.h>

#include "backend/cuda/cuda.h"

// Threads per block of the elementwise kernels.
#define CUDA_THREADS 256
// Threads of the final reduction.
#define REDUCE_THREADS 1024

// Blocks of CUDA_THREADS for a grid-stride loop over n > 0 elements: one
// element per thread up to 2^24 elements, then the loop strides.
static inline unsigned cuda_grid_1d(int64_t n) {
    const int64_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    return (unsigned)(b < 65536 ? b : 65536);
}

// The sum of v over the threads of a 1-D block (blockDim.x a multiple of 32,
// at most 1024), valid in thread 0. Every thread of the block must call it.
__device__ inline double block_sum_double(double v) {
    __shared__ double warp_sums[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    double s = 0.0;
    if (threadIdx.x == 0)
        for (int i = 0; i < (int)(blockDim.x >> 5); i++) s += warp_sums[i];
    __syncthreads(); // warp_sums may be reused by a following call
    return s;
}

// out[0] = the sum of partials[0..n) in double; one block of REDUCE_THREADS.
static __global__ void sum_partials_kernel(double *out, const double *partials, int n) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partials[i];
    s = block_sum_double(s);
    if (threadIdx.x == 0) out[0] = s;
}

// The sum of partials[0..n), n >= 1, written by kernels already issued on
// cuda_stream; partials is device memory with room for n + 1 doubles (the
// total goes to partials[n] before it is copied back). Waits for the stream.
static inline double cuda_sum_partials(double *partials, int n) {
    sum_partials_kernel<<<1, REDUCE_THREADS, 0, cuda_stream>>>(partials + n, partials, n);
    CUDA_LAUNCHED("sum_partials_kernel");
    double h = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&h, partials + n, sizeof h, cudaMemcpyDeviceToHost, cuda_stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
    return h;
}
