// cuda.cu: the core of the CUDA backend (libdalle-cuda.so): finding the
// device, managed memory, the stream, errors, the shared workspace, the
// strided copy, and the entry point that fills the op table (backend.h). The
// ops themselves live in the other files of this folder.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/common.cuh"

cudaStream_t cuda_stream;
cudaDeviceProp cuda_prop;

static char g_error[512];
static char g_name[640];
static int g_sync_each = 0; // DALLE_CUDA_SYNC=1: wait after every kernel
static void *g_ws = NULL;
static size_t g_ws_bytes = 0;

void cuda_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
}

void cuda_check_fail(cudaError_t e, const char *file, int line) {
    fprintf(stderr, "dalle: CUDA error at %s:%d: %s\n", file, line, cudaGetErrorString(e));
    abort();
}

void cuda_after_launch(const char *kernel, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && g_sync_each) e = cudaStreamSynchronize(cuda_stream);
    if (e != cudaSuccess) {
        fprintf(stderr, "dalle: CUDA kernel %s at %s:%d: %s\n", kernel, file, line, cudaGetErrorString(e));
        abort();
    }
}

void *cuda_workspace(size_t bytes) {
    if (bytes <= g_ws_bytes) return g_ws;
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream)); // the old one may be in use
    CUDA_CHECK(cudaFree(g_ws));
    size_t n = bytes + bytes / 4;
    CUDA_CHECK(cudaMalloc(&g_ws, n));
    g_ws_bytes = n;
    return g_ws;
}

// Managed memory: the host code of the models may read and write it after a
// sync; the ops run on it where it lives (it migrates to the GPU on first use).
static void *cu_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMallocManaged(&p, bytes ? bytes : 1, cudaMemAttachGlobal);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        cuda_set_error("GPU out of memory: %.1f MiB asked, %.1f of %.1f MiB free (%s)", bytes / 1048576.0,
                       fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_free(void *p) {
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
    CUDA_CHECK(cudaFree(p));
}

static void cu_sync(void) { CUDA_CHECK(cudaStreamSynchronize(cuda_stream)); }

static void cu_memset0(void *p, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream)); }

static void cu_copy(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cuda_stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream)); // src may be host memory the caller reuses
}

// dst[r*ds + c] = src[r*ss + c], i = r*cols + c < rows*cols: consecutive
// threads take consecutive floats of a row (a kernel rather than
// cudaMemcpy2DAsync: the CPU emulator of tests/cuda-emu runs it too).
static __global__ void copy2d_kernel(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows,
                                     int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        dst[r * ds + c] = src[r * ss + c];
    }
}

static void cu_copy2d(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                      int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    copy2d_kernel<<<cuda_grid_1d(rows * cols), CUDA_THREADS, 0, cuda_stream>>>(dst, dst_stride, src, src_stride, rows,
                                                                                cols);
    CUDA_LAUNCHED("copy2d_kernel");
}

static int cu_mem_info(size_t *free_bytes, size_t *total_bytes) {
    return cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess ? 0 : 1;
}

static const char *cu_device_name(void) { return g_name; }
static const char *cu_last_error(void) { return g_error; }

extern "C" __attribute__((visibility("default"))) int dalle_cuda_backend_init(backend_ops *ops, char *err,
                                                                              size_t err_len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(err, err_len, "no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 1;
    }
    // One GPU per rank: DALLE_CUDA_DEVICE, else the rank on this machine
    // under mpirun (OpenMPI's OMPI_COMM_WORLD_LOCAL_RANK) modulo the devices.
    int dev = 0;
    const char *s = getenv("DALLE_CUDA_DEVICE"), *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (s) dev = atoi(s);
    else if (lr) dev = atoi(lr) % n;
    if (dev < 0 || dev >= n) {
        snprintf(err, err_len, "DALLE_CUDA_DEVICE=%d: only %d device(s)", dev, n);
        return 1;
    }
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaGetDeviceProperties(&cuda_prop, dev)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&cuda_stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(err, err_len, "CUDA device %d: %s", dev, cudaGetErrorString(e));
        return 1;
    }
    if (!cuda_prop.managedMemory) {
        snprintf(err, err_len, "CUDA device %d (%s) has no managed memory", dev, cuda_prop.name);
        return 1;
    }
    s = getenv("DALLE_CUDA_SYNC");
    g_sync_each = s && atoi(s) > 0;
    snprintf(g_name, sizeof g_name, "%s, sm_%d%d, %d SMs, %.1f GiB", cuda_prop.name, cuda_prop.major,
             cuda_prop.minor, cuda_prop.multiProcessorCount, cuda_prop.totalGlobalMem / 1073741824.0);
    memset(ops, 0, sizeof *ops);
    ops->name = "cuda";
    ops->kind = BACKEND_CUDA;
    ops->alloc = cu_alloc;
    ops->free = cu_free;
    ops->sync = cu_sync;
    ops->memset0 = cu_memset0;
    ops->copy = cu_copy;
    ops->copy2d = cu_copy2d;
    ops->mem_info = cu_mem_info;
    ops->device_name = cu_device_name;
    ops->last_error = cu_last_error;
    cuda_register_dvae_ops(ops);
    cuda_register_optim_ops(ops);
    cuda_register_half_ops(ops);
    cuda_register_conv16_ops(ops); // composes the conv and axpy entries registered above
    cuda_register_transformer_ops(ops);
    cuda_register_attention_ops(ops);
    cuda_register_comm(ops);
    return 0;
}
