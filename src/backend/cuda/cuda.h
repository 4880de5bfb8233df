// cuda.h: what the files of the CUDA backend (libdalle-cuda.so) share: the
// stream every op runs on, the library handles, error checks, and the
// functions each file registers in the op table (backend.h). Private to
// src/backend/cuda/.
#pragma once
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The one stream of the process: every op is issued on it, in order.
extern cudaStream_t cuda_stream;
// Properties of the device in use (multiprocessors, shared memory, L2).
extern cudaDeviceProp cuda_prop;

// Records the message of a failure for backend_ops.last_error.
void cuda_set_error(const char *fmt, ...);
// A CUDA runtime call that must succeed; a failure is a bug or a dead device:
// prints "dalle: CUDA error at FILE:LINE: MESSAGE" and aborts.
void cuda_check_fail(cudaError_t e, const char *file, int line);
#define CUDA_CHECK(call)                                                                 \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) cuda_check_fail(e_, __FILE__, __LINE__);                  \
    } while (0)
// After a kernel launch: checks the launch (and, with DALLE_CUDA_SYNC=1 in the
// environment, waits for the kernel and checks its result: for debugging).
void cuda_after_launch(const char *kernel, const char *file, int line);
#define CUDA_LAUNCHED(name) cuda_after_launch(name, __FILE__, __LINE__)

// Device scratch of at least `bytes`, grown on demand, valid until the next
// call (ops that need a workspace share it; all run on cuda_stream).
void *cuda_workspace(size_t bytes);

// half_ops.cu's conversions (ops.h's to_half, from_half), for the other
// files: dst (n) = src (n) in fmt, or the values of the codes src (n);
// queued on cuda_stream.
void cuda_half_encode(uint16_t *dst, const float *src, int64_t n, half_fmt fmt);
void cuda_half_decode(float *dst, const uint16_t *src, int64_t n, half_fmt fmt);

// Each file of the backend fills its entries of the table (called once by
// dalle_cuda_backend_init after the device is set up).
void cuda_register_dvae_ops(backend_ops *ops);        // dvae_ops.cu: conv (cuDNN), pool, upsample, relu, losses
void cuda_register_optim_ops(backend_ops *ops);       // optim_ops.cu: AdamW (fp32, 16-bit moments), EMA, norms, axpy
void cuda_register_half_ops(backend_ops *ops);        // half_ops.cu: the 16-bit conversions of mixed precision
void cuda_register_conv16_ops(backend_ops *ops);      // conv16_ops.cu: a bf16 dVAE's convolutions (after dvae, optim)
void cuda_register_transformer_ops(backend_ops *ops); // transformer_ops.cu: linear (cuBLASLt), LN, GELU, xent, embeddings
void cuda_register_attention_ops(backend_ops *ops);   // attention.cu: block-sparse flash attention, decode
void cuda_register_comm(backend_ops *ops);            // comm_nccl.cu: NCCL collectives

#ifdef __cplusplus
}
#endif
