// cuda_runtime.h (tests/cuda-emu): a CPU stand-in for the CUDA runtime and
// the kernel language, so that the CUDA backend's own source
// (src/backend/cuda/*.cu) compiles with g++ and runs on the host. `make
// test-cuda-emu` builds it into an emulated libdalle-cuda.so and runs the
// tests/cuda programs against it: the same tests that a GPU runs, with no
// nvcc and no GPU (runtime.cpp implements what this header declares).
//
// Kernels: each thread block runs as one fiber per thread on one OS thread;
// __syncthreads and the warp shuffles are real barriers (a fiber waits until
// every live thread of the block, or every lane of its warp, has arrived).
// Blocks run one after another, so __shared__ variables are statics; the
// dynamic shared memory is one buffer, filled with NaN bytes before each
// block (a read before any write shows). Between two barriers the threads
// run one at a time, in opposite orders in alternate blocks (runtime.cpp), so
// that a missing barrier usually changes the results. The Makefile's sed
// rewrites the two
// things g++ cannot parse: `kernel<<<grid, block, smem, stream>>>(args)` into
// emu_launch(emu_config(grid, block, smem, stream), "kernel", kernel, args)
// and `extern __shared__ T name[];` into a T pointer to that buffer.
//
// Asynchrony: there is one stream, made by cudaStreamCreateWithFlags (the
// backend's cuda_stream); work on any other stream aborts (the backend issues
// everything on cuda_stream). Launches, async copies and memsets, cuBLASLt
// products and cuDNN convolutions are queued and run only when the host waits
// (cudaStreamSynchronize, a copy into host memory, cudaFree): a host read
// that misses a sync sees stale data, as it may on a GPU.
//
// Memory: cudaMalloc and cudaMallocManaged return host memory filled with NaN
// bytes, not padded (under AddressSanitizer an access past the end is
// reported), and recorded, so that a kernel given a pointer into no
// allocation (host memory) aborts at its launch, naming the kernel and the
// argument.
//
// Not emulated: concurrency between blocks (they run in order: a race
// between blocks goes unseen), warp masks other than the full warp, streams
// other than one, events, graphs, half-precision arithmetic, the GPU's
// rounding (nvcc contracts a*b+c into FMAs; this build does not).
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <type_traits>

// ---------------------------------------------------------------- the kernel language

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The running thread's indices and the running launch's sizes (set by the
// scheduler before it switches to a thread's fiber).
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

// Waits until every live thread of the block has arrived at this
// __syncthreads (the same source line: threads waiting at two different ones
// are reported, a divergent barrier).
void emu_syncthreads(const char *file, int line);
#define __syncthreads() emu_syncthreads(__FILE__, __LINE__)

// The warp shuffles of the full warp (mask 0xffffffff: all 32 lanes take
// part, as every use in the backend does; another mask aborts). Each lane
// publishes its value and waits for the whole warp (emu_shfl_exchange).
// The lane of the running thread in its warp (its linear index % 32).
int emu_lane(void);
void emu_shfl_exchange(unsigned mask, const void *v, size_t size, int src_lane, void *out);
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    T r;
    emu_shfl_exchange(mask, &v, sizeof v, (emu_lane() ^ lane_mask) & 31, &r);
    return r;
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    const int lane = emu_lane(), src = lane + (int)delta < 32 ? lane + (int)delta : lane;
    T r;
    emu_shfl_exchange(mask, &v, sizeof v, src, &r);
    return r;
}

// Atomics: fibers switch only at barriers, so a plain read-modify-write is atomic.
template <typename T> inline T atomicAdd(T *p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}

// The rounded arithmetic intrinsics: host float arithmetic rounds each
// operation to nearest (the emulator is built with -ffp-contract=off).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }

#define CUDART_INF_F INFINITY

// ---------------------------------------------------------------- the runtime API

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
} cudaError_t;

typedef struct emu_stream *cudaStream_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaMemoryType {
    cudaMemoryTypeUnregistered = 0,
    cudaMemoryTypeHost = 1,
    cudaMemoryTypeDevice = 2,
    cudaMemoryTypeManaged = 3,
};
struct cudaPointerAttributes {
    enum cudaMemoryType type;
    int device;
    void *devicePointer, *hostPointer;
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamNonBlocking 0x01
#define cudaMemAttachGlobal 0x01

// The fields of cudaDeviceProp the backend reads, with an H100's values.
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int warpSize;
    int maxThreadsPerBlock;
    int major, minor;
    int multiProcessorCount;
    int l2CacheSize;
    int managedMemory;
};

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize(void);
// The error of the last launch or asynchronous call that failed, cleared.
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaMallocManaged(void **p, size_t bytes, unsigned flags = cudaMemAttachGlobal);
template <typename T> inline cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
template <typename T> inline cudaError_t cudaMallocManaged(T **p, size_t bytes, unsigned flags = cudaMemAttachGlobal) {
    return cudaMallocManaged((void **)p, bytes, flags);
}
// Waits for the stream (as cudaFree does on a GPU), then frees; NULL is a no-op.
cudaError_t cudaFree(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attr, const void *p);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaFuncSetAttribute(const void *kernel, cudaFuncAttribute attr, int value);

// ---------------------------------------------------------------- the emulator's own

// The stream the runtime made (the backend's cuda_stream); work issued on any
// other aborts with `what` in the message.
void emu_check_stream(cudaStream_t s, const char *what);
// The allocation that holds p (bytes from p to its end in *room), or 0 when
// p lies in none: host memory to a GPU.
int emu_device_visible(const void *p, size_t *room);
// Queues op(ctx) on the stream; drop(ctx) frees ctx after it ran.
void emu_enqueue(void (*op)(void *), void (*drop)(void *), void *ctx);
// Queues a copy of the callable f, run in order with the stream's other work.
template <typename F> inline void emu_enqueue_fn(const F &f) {
    emu_enqueue([](void *c) { (*(F *)c)(); }, [](void *c) { delete (F *)c; }, new F(f));
}

// A launch's configuration, as written between <<< and >>>.
struct emu_config {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    emu_config(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s), stream(st) {}
};

// Checks the configuration (an invalid one sets the error that
// cudaGetLastError returns and runs nothing, as a GPU does) and the stream;
// 1 if the launch may go ahead.
int emu_launch_check(const emu_config &c, const char *name, const void *kernel);
// Runs grid x block threads of body(ctx) (blocks in order, each as fibers)
// with c.smem bytes of dynamic shared memory.
void emu_run_grid(const emu_config &c, const char *name, void (*body)(void *), void *ctx);
// Aborts, naming the kernel and argument, when a pointer argument lies in no
// allocation (NULL passes: kernels take optional pointers).
void emu_check_pointer_arg(const char *name, int index, const void *p);
// The running block's dynamic shared memory (128-byte aligned, as
// `extern __shared__ __align__(128)` asks; the sed drops the __align__).
void *emu_dynamic_shared(void);
// A warp collective (wmma's _sync functions): a barrier of the warp, as a
// shuffle; aborts, naming op, when this lane's tag (its arguments) differs
// from lane 0's. Returns a key that is the same in every lane of the warp
// and differs from every other collective's of any block.
uint64_t emu_warp_collective(const char *op, uint64_t tag);
// The running thread's warp in its block.
int emu_warp_index(void);
// Aborts with the message, naming the kernel, block, thread and warp.
void emu_kernel_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

template <typename T> struct emu_same { typedef T type; };

template <typename A> inline void emu_check_arg(const char *name, int index, const A &a) {
    if constexpr (std::is_pointer<A>::value) emu_check_pointer_arg(name, index, (const void *)a);
    (void)name, (void)index, (void)a;
}

// kernel<<<c>>>(args): the arguments are converted to the kernel's parameter
// types at the call (as nvcc does) and copied into the queued launch.
template <typename... P>
inline void emu_launch(const emu_config &c, const char *name, void (*kernel)(P...),
                       typename emu_same<P>::type... args) {
    if (!emu_launch_check(c, name, (const void *)kernel)) return;
    int i = 0;
    (emu_check_arg(name, i++, args), ...);
    (void)i;
    emu_enqueue_fn([=]() {
        auto body = [&]() { kernel(args...); };
        emu_run_grid(c, name, [](void *b) { (*(decltype(body) *)b)(); }, &body);
    });
}
