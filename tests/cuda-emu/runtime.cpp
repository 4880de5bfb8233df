// runtime.cpp (tests/cuda-emu): the CPU stand-in for the CUDA runtime that
// include/cuda_runtime.h declares: the device (an H100's properties), the one
// stream and its queue of deferred work, the record of allocations, and the
// scheduler that runs each thread block as fibers with real barriers. Part of
// the emulated libdalle-cuda.so of `make test-cuda-emu`.
//
// Fibers: one per thread of a block, each with its own stack (mmap'ed, a
// guard page below), reused by every block and launch. A fiber runs until it
// finishes or reaches a barrier (__syncthreads, a shuffle), then switches
// back to the scheduler; when every fiber waits or is done, the scheduler
// releases the warps whose 32 lanes all wait at a shuffle, else the block
// barrier once every live thread waits there, and reports as a bug a warp
// whose lanes wait at different barriers (a deadlock on a GPU) or threads
// that wait at different __syncthreads. The switch is a few instructions of
// assembly on x86-64 (swapcontext costs two system calls) and ucontext
// elsewhere; under AddressSanitizer each switch is announced to it.
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "backend/cuda/cuda.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

// The fibers switch with a few instructions where there are some (x86-64),
// else with ucontext (also with -DEMU_UCONTEXT, to compare).
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#define EMU_ASM_SWITCH 0
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

// The emulated device: an H100 SXM's figures, so that launch limits and
// shared-memory sizes are checked against the real ones.
#define EMU_TOTAL_MEM ((size_t)80 << 30)
#define EMU_SMEM_DEFAULT 49152   // dynamic shared memory without cudaFuncSetAttribute
#define EMU_SMEM_OPTIN 232448    // the most a kernel may opt into

static cudaError_t g_last_error = cudaSuccess;

static cudaError_t set_error(cudaError_t e) {
    if (e != cudaSuccess) g_last_error = e;
    return e;
}

// An emulator-detected bug of the code under test: the message, then abort.
static void emu_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void emu_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dalle: CUDA emulator: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

// ---------------------------------------------------------------- device

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return set_error(device == 0 ? cudaSuccess : cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "CUDA emulator on the CPU (tests/cuda-emu)");
    prop->totalGlobalMem = EMU_TOTAL_MEM;
    prop->sharedMemPerBlock = EMU_SMEM_DEFAULT;
    prop->sharedMemPerBlockOptin = EMU_SMEM_OPTIN;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 132;
    prop->l2CacheSize = 50 << 20;
    prop->managedMemory = 1;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    const cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    }
    return "unknown error";
}

// ---------------------------------------------------------------- the stream and its queue

struct emu_stream {
    int made;
};
static emu_stream g_stream;

typedef struct {
    void (*op)(void *);
    void (*drop)(void *);
    void *ctx;
} queued;
static queued *g_queue = NULL;
static int g_queued = 0, g_queue_cap = 0, g_flushing = 0;

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
    (void)flags;
    if (g_stream.made) emu_fail("a second stream: the backend issues everything on cuda_stream");
    g_stream.made = 1;
    *stream = &g_stream;
    return cudaSuccess;
}

void emu_check_stream(cudaStream_t s, const char *what) {
    if (s != &g_stream || !g_stream.made)
        emu_fail("%s on stream %p, not cuda_stream (%p): every op must be issued on cuda_stream", what, (void *)s,
                 (void *)&g_stream);
}

void emu_enqueue(void (*op)(void *), void (*drop)(void *), void *ctx) {
    if (g_flushing) emu_fail("work queued from inside a kernel or library call");
    if (g_queued == g_queue_cap) {
        g_queue_cap = g_queue_cap ? 2 * g_queue_cap : 64;
        g_queue = (queued *)realloc(g_queue, sizeof *g_queue * (size_t)g_queue_cap);
        if (!g_queue) emu_fail("out of host memory for the queue");
    }
    g_queue[g_queued++] = queued{op, drop, ctx};
}

// Runs the queued work in order: the stream is then idle.
static void flush(void) {
    g_flushing = 1;
    for (int i = 0; i < g_queued; i++) {
        g_queue[i].op(g_queue[i].ctx);
        g_queue[i].drop(g_queue[i].ctx);
    }
    g_queued = 0;
    g_flushing = 0;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    emu_check_stream(stream, "cudaStreamSynchronize");
    flush();
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    flush();
    return cudaSuccess;
}

// ---------------------------------------------------------------- memory
// Live allocations sorted by address: a pointer is device-visible when it
// lies in one (or just past its end: the end of an empty range).

typedef struct {
    char *base;
    size_t bytes;
    cudaMemoryType type;
} allocation;
static allocation *g_allocs = NULL;
static int g_n_allocs = 0, g_allocs_cap = 0;
static size_t g_allocated = 0;

// The index of the last allocation whose base is <= p, or -1.
static int alloc_find(const void *p) {
    int lo = 0, hi = g_n_allocs - 1, at = -1;
    while (lo <= hi) {
        const int mid = (lo + hi) / 2;
        if (g_allocs[mid].base <= (const char *)p) at = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    return at;
}

int emu_device_visible(const void *p, size_t *room) {
    const int i = alloc_find(p);
    if (i < 0 || (const char *)p > g_allocs[i].base + g_allocs[i].bytes) return 0;
    if (room) *room = (size_t)(g_allocs[i].base + g_allocs[i].bytes - (const char *)p);
    return 1;
}

// Fresh memory holds NaN bytes (0xFF..., a NaN in every float): a read of
// what nothing wrote shows in the results.
static cudaError_t emu_alloc(void **p, size_t bytes, cudaMemoryType type) {
    *p = NULL;
    if (bytes > EMU_TOTAL_MEM - g_allocated) return set_error(cudaErrorMemoryAllocation);
    // 256-byte aligned as cudaMalloc's, and not padded: under AddressSanitizer
    // a kernel that reads or writes past the end is caught
    void *mem = NULL;
    if (posix_memalign(&mem, 256, bytes ? bytes : 1)) return set_error(cudaErrorMemoryAllocation);
    char *m = (char *)mem;
    memset(m, 0xFF, bytes);
    if (g_n_allocs == g_allocs_cap) {
        g_allocs_cap = g_allocs_cap ? 2 * g_allocs_cap : 256;
        g_allocs = (allocation *)realloc(g_allocs, sizeof *g_allocs * (size_t)g_allocs_cap);
        if (!g_allocs) emu_fail("out of host memory for the allocation record");
    }
    const int at = alloc_find(m) + 1;
    memmove(g_allocs + at + 1, g_allocs + at, sizeof *g_allocs * (size_t)(g_n_allocs - at));
    g_allocs[at] = allocation{m, bytes, type};
    g_n_allocs++;
    g_allocated += bytes;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) { return emu_alloc(p, bytes, cudaMemoryTypeDevice); }

cudaError_t cudaMallocManaged(void **p, size_t bytes, unsigned flags) {
    (void)flags;
    return emu_alloc(p, bytes, cudaMemoryTypeManaged);
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    flush(); // cudaFree waits for the device
    const int i = alloc_find(p);
    if (i < 0 || g_allocs[i].base != p) {
        fprintf(stderr, "dalle: CUDA emulator: cudaFree(%p): not the start of an allocation\n", p);
        return set_error(cudaErrorInvalidValue);
    }
    g_allocated -= g_allocs[i].bytes;
    free(g_allocs[i].base);
    memmove(g_allocs + i, g_allocs + i + 1, sizeof *g_allocs * (size_t)(g_n_allocs - i - 1));
    g_n_allocs--;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = EMU_TOTAL_MEM - g_allocated;
    *total_bytes = EMU_TOTAL_MEM;
    return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attr, const void *p) {
    memset(attr, 0, sizeof *attr);
    const int i = alloc_find(p);
    if (i >= 0 && (const char *)p < g_allocs[i].base + g_allocs[i].bytes) {
        attr->type = g_allocs[i].type;
        attr->devicePointer = (void *)p;
        if (attr->type == cudaMemoryTypeManaged) attr->hostPointer = (void *)p;
    } else {
        attr->type = cudaMemoryTypeUnregistered;
    }
    return cudaSuccess;
}

// A range the device writes or reads: [p, p + bytes) within one allocation.
static int device_range(const void *p, size_t bytes, const char *what) {
    size_t room = 0;
    if (!emu_device_visible(p, &room)) {
        fprintf(stderr, "dalle: CUDA emulator: %s: %p is host memory, not a device allocation\n", what, p);
        return 0;
    }
    if (room < bytes) {
        fprintf(stderr, "dalle: CUDA emulator: %s: %zu bytes at %p run %zu bytes past the end of its allocation\n",
                what, bytes, p, bytes - room);
        return 0;
    }
    return 1;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream) {
    emu_check_stream(stream, "cudaMemsetAsync");
    if (bytes == 0) return cudaSuccess;
    if (!device_range(p, bytes, "cudaMemsetAsync")) return set_error(cudaErrorInvalidValue);
    emu_enqueue_fn([=]() { memset(p, value, bytes); });
    return cudaSuccess;
}

// Pageable host memory, as the CUDA runtime treats it: the source is read
// before the call returns (staged), and a copy into it is synchronous.
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    emu_check_stream(stream, "cudaMemcpyAsync");
    if (bytes == 0) return cudaSuccess;
    const int dst_dev = emu_device_visible(dst, NULL), src_dev = emu_device_visible(src, NULL);
    if ((kind == cudaMemcpyHostToDevice && !dst_dev) || (kind == cudaMemcpyDeviceToHost && !src_dev)) {
        fprintf(stderr, "dalle: CUDA emulator: cudaMemcpyAsync of kind %d from %p (%s) to %p (%s)\n", (int)kind,
                src, src_dev ? "device" : "host", dst, dst_dev ? "device" : "host");
        return set_error(cudaErrorInvalidValue);
    }
    if ((dst_dev && !device_range(dst, bytes, "cudaMemcpyAsync destination")) ||
        (src_dev && !device_range(src, bytes, "cudaMemcpyAsync source")))
        return set_error(cudaErrorInvalidValue);
    if ((const char *)dst < (const char *)src + bytes && (const char *)src < (const char *)dst + bytes) {
        fprintf(stderr, "dalle: CUDA emulator: cudaMemcpyAsync: source and destination overlap\n");
        return set_error(cudaErrorInvalidValue);
    }
    if (!dst_dev) { // into host memory: waits for the stream
        flush();
        memcpy(dst, src, bytes);
    } else if (!src_dev) { // from host memory: staged now
        char *staged = (char *)malloc(bytes);
        if (!staged) return set_error(cudaErrorMemoryAllocation);
        memcpy(staged, src, bytes);
        emu_enqueue_fn([=]() {
            memcpy(dst, staged, bytes);
            free(staged);
        });
    } else {
        emu_enqueue_fn([=]() { memcpy(dst, src, bytes); });
    }
    return cudaSuccess;
}

// ---------------------------------------------------------------- kernel attributes

typedef struct {
    const void *kernel;
    int max_dynamic_smem;
} kernel_attr;
enum { MAX_KERNEL_ATTRS = 256 };
static kernel_attr g_attrs[MAX_KERNEL_ATTRS];
static int g_n_attrs = 0;

cudaError_t cudaFuncSetAttribute(const void *kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > EMU_SMEM_OPTIN)
        return set_error(cudaErrorInvalidValue);
    int i = 0;
    while (i < g_n_attrs && g_attrs[i].kernel != kernel) i++;
    if (i == g_n_attrs) {
        if (g_n_attrs == MAX_KERNEL_ATTRS) emu_fail("attributes of more than %d kernels", MAX_KERNEL_ATTRS);
        g_n_attrs++;
    }
    g_attrs[i] = kernel_attr{kernel, value};
    return cudaSuccess;
}

static int max_dynamic_smem(const void *kernel) {
    for (int i = 0; i < g_n_attrs; i++)
        if (g_attrs[i].kernel == kernel)
            return g_attrs[i].max_dynamic_smem > EMU_SMEM_DEFAULT ? g_attrs[i].max_dynamic_smem : EMU_SMEM_DEFAULT;
    return EMU_SMEM_DEFAULT;
}

// ---------------------------------------------------------------- fibers

enum { F_RUN, F_AT_BLOCK, F_AT_WARP, F_DONE };
#define FIBER_STACK ((size_t)256 << 10)

typedef struct {
#if EMU_ASM_SWITCH
    void *sp;                 // the saved stack pointer
#else
    ucontext_t uc;            // the saved context
#endif
    char *stack;              // FIBER_STACK bytes above a guard page
    int state;                // F_*
    int linear;               // the thread's index in its block
    uint3 tid;
    unsigned shuffles;        // shuffles done in this block (lanes must agree)
    const char *barrier_file; // the __syncthreads it waits at
    int barrier_line;
    void *asan_fake;          // AddressSanitizer's fake stack while switched out
} fiber;

static fiber *g_fibers[1024];
static int g_n_fibers = 0;  // made so far (each reused by later blocks)
static int g_cur = -1;      // the running fiber, -1 in the scheduler
static int g_threads = 0;   // threads of the running block
static const char *g_kernel = "";
static void (*g_body)(void *);
static void *g_body_ctx;
#if EMU_ASM_SWITCH
static void *g_main_sp;       // the scheduler's saved stack pointer
#else
static ucontext_t g_main_uc;  // the scheduler's saved context
#endif
static const void *g_main_stack_lo; // the scheduler's stack (for AddressSanitizer)
static size_t g_main_stack_bytes;

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_START(fake, lo, bytes) __sanitizer_start_switch_fiber(fake, lo, bytes)
#define ASAN_FINISH(fake, lo, bytes) __sanitizer_finish_switch_fiber(fake, lo, bytes)
#else
#define ASAN_START(fake, lo, bytes) ((void)(fake), (void)(lo), (void)(bytes))
#define ASAN_FINISH(fake, lo, bytes) ((void)(fake), (void)(lo), (void)(bytes))
#endif

#if EMU_ASM_SWITCH
// Saves the callee-saved registers on the current stack and its pointer in
// *save, then resumes the stack `to` (saved the same way, or made by
// fiber_new). System V: rbx, rbp, r12-r15 are callee-saved.
extern "C" __attribute__((visibility("hidden"))) void emu_switch(void **save, void *to);
asm(".text\n"
    ".globl emu_switch\n"
    ".hidden emu_switch\n"
    ".type emu_switch, @function\n"
    ".p2align 4\n"
    "emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size emu_switch, .-emu_switch\n");
#endif

static void fiber_main(void);

static fiber *fiber_new(int linear) {
    fiber *f = (fiber *)calloc(1, sizeof *f);
    const size_t page = 4096;
    char *m = (char *)mmap(NULL, FIBER_STACK + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!f || m == MAP_FAILED) emu_fail("out of memory for the stack of thread %d", linear);
    mprotect(m, page, PROT_NONE); // an overflow faults instead of corrupting the next stack
    f->stack = m + page;
    f->linear = linear;
    f->state = F_DONE;
#if EMU_ASM_SWITCH
    // the frame emu_switch pops: six registers, then fiber_main as the return
    // address, above it a dummy return address for fiber_main's own frame
    void **sp = (void **)(((uintptr_t)f->stack + FIBER_STACK) & ~(uintptr_t)15);
    *--sp = NULL;
    *--sp = (void *)fiber_main;
    for (int i = 0; i < 6; i++) *--sp = NULL;
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = FIBER_STACK;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, fiber_main, 0);
#endif
    return f;
}

// From the scheduler into fiber f, until it waits or finishes.
static void switch_in(fiber *f) {
    void *fake = NULL;
    ASAN_START(&fake, f->stack, FIBER_STACK);
#if EMU_ASM_SWITCH
    emu_switch(&g_main_sp, f->sp);
#else
    swapcontext(&g_main_uc, &f->uc);
#endif
    ASAN_FINISH(fake, NULL, NULL);
}

// From the running fiber f back to the scheduler.
static void switch_out(fiber *f) {
    ASAN_START(&f->asan_fake, g_main_stack_lo, g_main_stack_bytes);
#if EMU_ASM_SWITCH
    emu_switch(&f->sp, g_main_sp);
#else
    swapcontext(&f->uc, &g_main_uc);
#endif
    ASAN_FINISH(f->asan_fake, &g_main_stack_lo, &g_main_stack_bytes);
}

// Each fiber runs the kernel once per block it is given, for ever.
static void fiber_main(void) {
    ASAN_FINISH(NULL, &g_main_stack_lo, &g_main_stack_bytes);
    for (;;) {
        g_body(g_body_ctx);
        fiber *f = g_fibers[g_cur];
        f->state = F_DONE;
        switch_out(f);
    }
}

static fiber *running(const char *what) {
    if (g_cur < 0) emu_fail("%s outside a kernel", what);
    return g_fibers[g_cur];
}

void emu_syncthreads(const char *file, int line) {
    fiber *f = running("__syncthreads");
    f->state = F_AT_BLOCK;
    f->barrier_file = file;
    f->barrier_line = line;
    switch_out(f);
}

int emu_lane(void) { return running("a warp shuffle")->linear % 32; }

// Two slots per thread, used by alternate shuffles: a lane that has passed
// shuffle k's barrier writes shuffle k+1's value while slower lanes may still
// read shuffle k's; shuffle k+2 waits for all of them at k+1's barrier.
static uint64_t g_slots[2][1024];

void emu_shfl_exchange(unsigned mask, const void *v, size_t size, int src_lane, void *out) {
    fiber *f = running("a warp shuffle");
    if (mask != 0xffffffffu) emu_fail("kernel %s: shuffle with mask %#x (only full warps are emulated)", g_kernel, mask);
    const int parity = f->shuffles++ & 1, src = (f->linear & ~31) + src_lane;
    memcpy(&g_slots[parity][f->linear], v, size);
    f->state = F_AT_WARP;
    switch_out(f);
    if (src >= g_threads)
        emu_fail("kernel %s: thread %d reads lane %d of a warp of %d threads", g_kernel, f->linear, src_lane,
                 g_threads - (f->linear & ~31));
    memcpy(out, &g_slots[parity][src], size);
}

static uint64_t g_block_serial = 0; // blocks run so far, over all launches

uint64_t emu_warp_collective(const char *op, uint64_t tag) {
    fiber *f = running(op);
    uint64_t lane0 = 0;
    emu_shfl_exchange(0xffffffffu, &tag, sizeof tag, 0, &lane0);
    if (lane0 != tag)
        emu_fail("kernel %s, block (%u,%u,%u): lane %d of warp %d calls wmma::%s with another pointer, ldm "
                 "or layout than lane 0 (they must be the same in every lane)",
                 g_kernel, blockIdx.x, blockIdx.y, blockIdx.z, f->linear % 32, f->linear / 32, op);
    return g_block_serial << 32 | f->shuffles;
}

int emu_warp_index(void) { return running("a warp collective")->linear / 32; }

void emu_kernel_fail(const char *fmt, ...) {
    const fiber *f = running("a kernel check");
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emu_fail("kernel %s, block (%u,%u,%u), thread %d (warp %d): %s", g_kernel, blockIdx.x, blockIdx.y, blockIdx.z,
             f->linear, f->linear / 32, msg);
}

// Releases every warp whose lanes all wait at a shuffle; 1 if any was. A warp
// with some lanes at a shuffle and others exited or at __syncthreads would
// hang on a GPU: reported.
static int release_warps(void) {
    int released = 0;
    for (int w0 = 0; w0 < g_threads; w0 += 32) {
        const int w1 = w0 + 32 < g_threads ? w0 + 32 : g_threads;
        int at = 0;
        for (int i = w0; i < w1; i++) at += g_fibers[i]->state == F_AT_WARP;
        if (at == 0) continue;
        if (at < w1 - w0)
            emu_fail("kernel %s, block (%u,%u,%u): %d lanes of warp %d wait at a shuffle while %d have exited or "
                     "wait at __syncthreads (a hang on a GPU)",
                     g_kernel, blockIdx.x, blockIdx.y, blockIdx.z, at, w0 / 32, w1 - w0 - at);
        for (int i = w0; i < w1; i++) {
            if (g_fibers[i]->shuffles != g_fibers[w0]->shuffles)
                emu_fail("kernel %s, block (%u,%u,%u): lanes of warp %d at different shuffles (%u and %u done)",
                         g_kernel, blockIdx.x, blockIdx.y, blockIdx.z, w0 / 32, g_fibers[w0]->shuffles,
                         g_fibers[i]->shuffles);
            g_fibers[i]->state = F_RUN;
        }
        released = 1;
    }
    return released;
}

// Runs block blockIdx to the end. Between two barriers the threads run one
// after another, in index order in even blocks and in reverse in odd ones: a
// thread that reads what another writes with no barrier between them (a race)
// sees the value too early in one of the two orders.
static void run_block(int reverse) {
    g_block_serial++;
    for (int i = 0; i < g_threads; i++) {
        fiber *f = g_fibers[i];
        f->state = F_RUN;
        f->shuffles = 0;
        f->tid = uint3{i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
    }
    for (;;) {
        for (int k = 0; k < g_threads; k++) {
            const int i = reverse ? g_threads - 1 - k : k;
            if (g_fibers[i]->state == F_RUN) {
                g_cur = i;
                threadIdx = g_fibers[i]->tid;
                switch_in(g_fibers[i]);
            }
        }
        g_cur = -1;
        if (release_warps()) continue;
        // every live thread waits at __syncthreads, or all are done
        const fiber *first = NULL;
        for (int i = 0; i < g_threads; i++) {
            fiber *f = g_fibers[i];
            if (f->state == F_DONE) continue;
            if (!first) first = f;
            if (f->barrier_line != first->barrier_line || strcmp(f->barrier_file, first->barrier_file))
                emu_fail("kernel %s, block (%u,%u,%u): thread %d waits at the __syncthreads of %s:%d, thread %d at "
                         "%s:%d (a divergent barrier)",
                         g_kernel, blockIdx.x, blockIdx.y, blockIdx.z, first->linear, first->barrier_file,
                         first->barrier_line, f->linear, f->barrier_file, f->barrier_line);
            f->state = F_RUN;
        }
        if (!first) return;
    }
}

static char *g_smem = NULL; // the running block's dynamic shared memory

void *emu_dynamic_shared(void) {
    running("dynamic shared memory");
    return g_smem;
}

int emu_launch_check(const emu_config &c, const char *name, const void *kernel) {
    emu_check_stream(c.stream, name);
    const dim3 b = c.block, g = c.grid;
    const uint64_t threads = (uint64_t)b.x * b.y * b.z;
    if (threads < 1 || threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x < 1 || g.x > 0x7FFFFFFFu ||
        g.y < 1 || g.y > 65535 || g.z < 1 || g.z > 65535) {
        fprintf(stderr, "dalle: CUDA emulator: launch of %s: grid (%u,%u,%u), block (%u,%u,%u) out of limits\n", name,
                g.x, g.y, g.z, b.x, b.y, b.z);
        set_error(cudaErrorInvalidConfiguration);
        return 0;
    }
    if (c.smem > (size_t)max_dynamic_smem(kernel)) {
        fprintf(stderr,
                "dalle: CUDA emulator: launch of %s: %zu bytes of dynamic shared memory, the kernel may use %d "
                "(cudaFuncSetAttribute raises it up to %d)\n",
                name, c.smem, max_dynamic_smem(kernel), EMU_SMEM_OPTIN);
        set_error(cudaErrorInvalidValue);
        return 0;
    }
    return 1;
}

void emu_check_pointer_arg(const char *name, int index, const void *p) {
    if (p && !emu_device_visible(p, NULL))
        emu_fail("launch of %s: argument %d (%p) is host memory, not a device allocation", name, index, p);
}

void emu_run_grid(const emu_config &c, const char *name, void (*body)(void *), void *ctx) {
    const int threads = (int)(c.block.x * c.block.y * c.block.z);
    while (g_n_fibers < threads) {
        g_fibers[g_n_fibers] = fiber_new(g_n_fibers);
        g_n_fibers++;
    }
    const size_t smem = (c.smem + 127) & ~(size_t)127;
    g_smem = smem ? (char *)aligned_alloc(128, smem) : NULL;
    if (smem && !g_smem) emu_fail("out of host memory for %zu bytes of shared memory", smem);
    g_kernel = name;
    g_body = body;
    g_body_ctx = ctx;
    g_threads = threads;
    gridDim = c.grid;
    blockDim = c.block;
    for (unsigned z = 0; z < c.grid.z; z++)
        for (unsigned y = 0; y < c.grid.y; y++)
            for (unsigned x = 0; x < c.grid.x; x++) {
                blockIdx = uint3{x, y, z};
                if (smem) memset(g_smem, 0xFF, smem);
                run_block((x ^ y ^ z) & 1);
            }
    free(g_smem);
    g_smem = NULL;
}

// ---------------------------------------------------------------- the backend's NCCL file

// comm_nccl.cu is not emulated: the comm_* entries stay NULL.
void cuda_register_comm(backend_ops *ops) { (void)ops; }
