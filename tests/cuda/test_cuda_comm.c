// test_cuda_comm.c: the NCCL collectives of the CUDA backend (comm_nccl.cu)
// on a one-rank communicator, and train/comm.c using them: all-reduce,
// reduce-scatter, all-gather and broadcast on managed memory (and on plain
// host memory, which the backend stages), each against the values one rank
// must get, ordered on the GPU's stream after the op before it; the errors of
// a bad rank and a bad root. Without a usable GPU it says so and passes.
//   build/tests/cuda/test_cuda_comm
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "backend/backend.h"
#include "core/common.h"
#include "train/comm.h"

static const backend_ops *gpu;

// Odd sizes, one of them over 2^24 floats (64 MiB + 4 bytes): no rounding of
// the count anywhere, and more than one of NCCL's internal chunks.
static const int64_t SIZES[] = {1, 1000003, ((int64_t)1 << 24) + 1};

static float value(int64_t i) { return (float)((i * 7919) % 2003 - 1001) * 0.25f; } // exact in fp32

static void fill(float *p, int64_t n, int64_t from) {
    for (int64_t i = 0; i < n; i++) p[i] = value(from + i);
}

// 1 if p[0..n) == value(from + i) everywhere; prints the first mismatch.
static int holds(const char *what, const float *p, int64_t n, int64_t from) {
    for (int64_t i = 0; i < n; i++)
        if (p[i] != value(from + i)) {
            printf("    %s: element %lld of %lld is %g, expected %g\n", what, (long long)i, (long long)n, p[i],
                   value(from + i));
            return 0;
        }
    printf("    %-40s n=%-9lld exact\n", what, (long long)n);
    return 1;
}

static int zeros(const char *what, const float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (p[i] != 0) {
            printf("    %s: element %lld of %lld is %g, expected 0\n", what, (long long)i, (long long)n, p[i]);
            return 0;
        }
    printf("    %-40s n=%-9lld exact\n", what, (long long)n);
    return 1;
}

static void *open_one_rank(void) {
    int bytes = gpu->comm_id_bytes();
    CHECK(bytes > 0 && bytes <= 4096);
    void *id = calloc(1, (size_t)bytes), *c = NULL;
    CHECK(id && gpu->comm_id_new(id) == 0);
    if (id) c = gpu->comm_init(id, 0, 1);
    if (!c) printf("    NCCL init failed: %s\n", gpu->last_error());
    CHECK(c != NULL);
    free(id);
    return c;
}

// Every collective on managed buffers; then a memset on the stream just
// before an all-reduce (a collective on another stream could miss it).
static void test_nccl_managed(void) {
    void *c = open_one_rank();
    if (!c) return;
    int64_t nmax = SIZES[sizeof SIZES / sizeof *SIZES - 1];
    float *a = gpu->alloc(sizeof(float) * (size_t)nmax), *b = gpu->alloc(sizeof(float) * (size_t)nmax);
    float *h = malloc(sizeof(float) * (size_t)nmax);
    CHECK(a && b && h);
    if (!a || !b || !h) goto done;
    for (size_t s = 0; s < sizeof SIZES / sizeof *SIZES; s++) {
        int64_t n = SIZES[s];
        fill(h, n, 3);
        gpu->copy(a, h, sizeof(float) * (size_t)n);
        CHECK(gpu->comm_allreduce_sum(c, a, n) == 0);
        gpu->sync();
        CHECK(holds("all-reduce (1 rank: unchanged)", a, n, 3));

        gpu->memset0(b, sizeof(float) * (size_t)n);
        CHECK(gpu->comm_reduce_scatter_sum(c, a, b, n) == 0); // K = 1: shard = n
        gpu->sync();
        CHECK(holds("reduce-scatter (1 rank: the input)", b, n, 3));

        fill(a, n, 11); // host writes managed memory between ops (after the sync above)
        gpu->memset0(b, sizeof(float) * (size_t)n);
        CHECK(gpu->comm_allgather(c, a, b, n) == 0);
        gpu->sync();
        CHECK(holds("all-gather (1 rank: the shard)", b, n, 11));

        CHECK(gpu->comm_bcast(c, b, n, 0) == 0);
        gpu->sync();
        CHECK(holds("broadcast from root 0", b, n, 11));

        // stream order: a memset issued just before must be seen by the collective
        gpu->memset0(b, sizeof(float) * (size_t)n);
        CHECK(gpu->comm_allreduce_sum(c, b, n) == 0);
        gpu->sync();
        CHECK(zeros("memset, then all-reduce on the stream", b, n));
    }
done:
    gpu->free(a);
    gpu->free(b);
    free(h);
    gpu->comm_close(c);
}

// Plain malloc'ed buffers: staged through the device, the result in place on return.
static void test_nccl_host_buffers(void) {
    void *c = open_one_rank();
    if (!c) return;
    int64_t n = 1000003;
    float *h1 = malloc(sizeof(float) * (size_t)n), *h2 = malloc(sizeof(float) * (size_t)n);
    float *m = gpu->alloc(sizeof(float) * (size_t)n);
    CHECK(h1 && h2 && m);
    if (h1 && h2 && m) {
        fill(h1, n, 5);
        CHECK(gpu->comm_allreduce_sum(c, h1, n) == 0);
        CHECK(holds("all-reduce, host buffer", h1, n, 5));
        gpu->memset0(m, sizeof(float) * (size_t)n);
        CHECK(gpu->comm_reduce_scatter_sum(c, h1, m, n) == 0); // host in, managed out
        gpu->sync();
        CHECK(holds("reduce-scatter, host in, managed out", m, n, 5));
        memset(h2, 0, sizeof(float) * (size_t)n);
        CHECK(gpu->comm_allgather(c, m, h2, n) == 0); // managed in, host out
        CHECK(holds("all-gather, managed in, host out", h2, n, 5));
        CHECK(gpu->comm_bcast(c, h2, n, 0) == 0);
        CHECK(holds("broadcast, host buffer", h2, n, 5));
    }
    free(h1);
    free(h2);
    gpu->free(m);
    gpu->comm_close(c);
}

static void test_nccl_errors(void) {
    int bytes = gpu->comm_id_bytes();
    void *id = calloc(1, (size_t)bytes);
    CHECK(id && gpu->comm_id_new(id) == 0);
    CHECK(gpu->comm_init(id, 1, 1) == NULL); // rank 1 of 1
    printf("    rank 1 of 1: %s\n", gpu->last_error());
    CHECK(strstr(gpu->last_error(), "rank 1 of 1") != NULL);
    free(id);
    void *c = open_one_rank();
    if (!c) return;
    float *m = gpu->alloc(sizeof(float) * 16);
    CHECK(m && gpu->comm_bcast(c, m, 16, 1) != 0); // root 1 of 1
    printf("    broadcast from root 1: %s\n", gpu->last_error());
    CHECK(strstr(gpu->last_error(), "root 1") != NULL);
    gpu->free(m);
    gpu->comm_close(c);
}

// train/comm.c with the CUDA backend selected: a one-rank NCCL communicator
// behind comm.h, each result in place on return (no backend_sync needed).
static void test_comm_c(void) {
    CHECK(backend_select("cuda") == BACKEND_CUDA);
    comm *c = comm_open();
    CHECK(c != NULL);
    if (!c) {
        printf("    comm_open: %s\n", dalle_last_error());
        return;
    }
    printf("    comm_backend: %s, rank %d of %d\n", comm_backend(c), comm_rank(c), comm_size(c));
    CHECK(!strcmp(comm_backend(c), "NCCL") && comm_size(c) == 1);
    int64_t n = 4099;
    float *a = backend_alloc(sizeof(float) * (size_t)n), *b = backend_alloc(sizeof(float) * (size_t)n);
    CHECK(a && b);
    if (a && b) {
        fill(a, n, 17);
        CHECK(comm_allreduce_sum(c, a, n) == DALLE_OK);
        CHECK(holds("comm_allreduce_sum", a, n, 17));
        CHECK(comm_reduce_scatter_sum(c, a, b, n) == DALLE_OK);
        CHECK(holds("comm_reduce_scatter_sum", b, n, 17));
        fill(a, n, 19);
        CHECK(comm_allgather(c, a, b, n) == DALLE_OK);
        CHECK(holds("comm_allgather", b, n, 19));
        fill(a, n, 23);
        CHECK(comm_gather(c, a, b, n, 0) == DALLE_OK);
        CHECK(holds("comm_gather", b, n, 23));
        CHECK(comm_bcast(c, b, n, 0) == DALLE_OK);
        CHECK(holds("comm_bcast", b, n, 23));
        double d[2] = {1.5, -2.25};
        CHECK(comm_allreduce_sum_f64(c, d, 2) == DALLE_OK && d[0] == 1.5 && d[1] == -2.25);
        CHECK(comm_barrier(c) == DALLE_OK);
    }
    backend_free(a);
    backend_free(b);
    comm_close(c);
}

int main(void) {
    gpu = backend_cuda_load();
    if (!gpu) {
        printf("test_cuda_comm: no GPU: skipped (%s)\n", dalle_last_error());
        return test_summary();
    }
    printf("test_cuda_comm: %s\n", gpu->device_name());
    if (!gpu->comm_init) {
        printf("  FAIL: the CUDA backend has no NCCL entries\n");
        return 1;
    }
    RUN(test_nccl_managed);
    RUN(test_nccl_host_buffers);
    RUN(test_nccl_errors);
    RUN(test_comm_c);
    return test_summary();
}
