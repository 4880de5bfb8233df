// comm_nccl.cu: the float collectives of data-parallel training (train/comm.h)
// among the GPUs of a job, with NCCL, on cuda_stream. src/train/comm.c uses
// these entries of the op table when the CUDA backend is selected: rank 0
// makes an id (comm_id_new), comm.c broadcasts it over MPI, every rank calls
// comm_init; MPI keeps the bootstrap, the doubles, gather, barrier and abort.
//
// Each collective is issued on cuda_stream, so it is ordered after the ops
// before it and before the ops after it; it returns without waiting (comm.c
// syncs where its contract needs the result on the host). Buffers should be
// backend_alloc'ed (managed) memory; a plain host buffer is accepted too and
// staged through the device workspace, which waits for the result.
// Errors (a bad argument, a dead peer) return nonzero with last_error() set.
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"

typedef struct {
    ncclComm_t nc;
    int rank, world;
} nccl_comm;

// 0, or 1 with the error set: "NCCL all-reduce: <reason> (<NCCL's last message>)".
static int nccl_check(ncclResult_t r, const nccl_comm *c, const char *what) {
    if (r == ncclSuccess) return 0;
    const char *detail = c ? ncclGetLastError(c->nc) : ncclGetLastError(NULL);
    cuda_set_error("NCCL %s: %s%s%s%s", what, ncclGetErrorString(r), detail && *detail ? " (" : "",
                   detail ? detail : "", detail && *detail ? ")" : "");
    return 1;
}

static int nc_id_bytes(void) { return (int)sizeof(ncclUniqueId); }

static int nc_id_new(void *id) { return nccl_check(ncclGetUniqueId((ncclUniqueId *)id), NULL, "unique id"); }

static void *nc_init(const void *id, int rank, int world) {
    if (world < 1 || rank < 0 || rank >= world) {
        cuda_set_error("NCCL init: rank %d of %d", rank, world);
        return NULL;
    }
    nccl_comm *c = (nccl_comm *)calloc(1, sizeof *c);
    if (!c) {
        cuda_set_error("NCCL init: out of host memory");
        return NULL;
    }
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    c->rank = rank;
    c->world = world;
    if (nccl_check(ncclCommInitRank(&c->nc, world, uid, rank), NULL, "init")) {
        free(c);
        return NULL;
    }
    return c;
}

static void nc_close(void *cv) {
    nccl_comm *c = (nccl_comm *)cv;
    if (!c) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
    ncclCommDestroy(c->nc);
    free(c);
}

// 1 for memory the GPU cannot address (plain malloc), 0 for device, managed
// or registered host memory.
static int is_host_only(const void *p) {
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError(); // older runtimes fail on unregistered memory: clear it
        return 1;
    }
    return a.type == cudaMemoryTypeUnregistered;
}

// A buffer as NCCL sees it: the caller's own if the GPU can address it, else
// a piece of the workspace (the caller's data copied in when `in` is set).
// base is the workspace, *used the floats of it already taken.
static float *stage(const float *p, int64_t n, int in, float *base, int64_t *used) {
    if (!is_host_only(p)) return (float *)p;
    float *d = base + *used;
    *used += (n + 63) & ~(int64_t)63;
    if (in) CUDA_CHECK(cudaMemcpyAsync(d, p, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice, cuda_stream));
    return d;
}

// Copies a staged result back to the caller's host buffer and waits for it.
static void unstage(float *host, const float *dev, int64_t n) {
    if (host == dev) return;
    CUDA_CHECK(cudaMemcpyAsync(host, dev, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost, cuda_stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
}

// The workspace for up to two staged buffers of na and nb floats.
static float *stage_room(const void *a, int64_t na, const void *b, int64_t nb) {
    int64_t need = (is_host_only(a) ? (na + 63) & ~(int64_t)63 : 0) + (is_host_only(b) ? (nb + 63) & ~(int64_t)63 : 0);
    return need ? (float *)cuda_workspace(sizeof(float) * (size_t)need) : NULL;
}

static int nc_allreduce_sum(void *cv, float *buf, int64_t n) {
    nccl_comm *c = (nccl_comm *)cv;
    if (n <= 0) return 0;
    int64_t used = 0;
    float *base = stage_room(buf, n, buf, 0), *d = stage(buf, n, 1, base, &used);
    if (nccl_check(ncclAllReduce(d, d, (size_t)n, ncclFloat, ncclSum, c->nc, cuda_stream), c, "all-reduce"))
        return 1;
    unstage(buf, d, n);
    return 0;
}

static int nc_reduce_scatter_sum(void *cv, const float *in, float *out, int64_t shard) {
    nccl_comm *c = (nccl_comm *)cv;
    if (shard <= 0) return 0;
    int64_t used = 0, nin = shard * c->world;
    float *base = stage_room(in, nin, out, shard);
    float *din = stage(in, nin, 1, base, &used), *dout = stage(out, shard, 0, base, &used);
    if (nccl_check(ncclReduceScatter(din, dout, (size_t)shard, ncclFloat, ncclSum, c->nc, cuda_stream), c,
                   "reduce-scatter"))
        return 1;
    unstage(out, dout, shard);
    return 0;
}

static int nc_allgather(void *cv, const float *shard, float *out, int64_t n_shard) {
    nccl_comm *c = (nccl_comm *)cv;
    if (n_shard <= 0) return 0;
    int64_t used = 0, nout = n_shard * c->world;
    float *base = stage_room(shard, n_shard, out, nout);
    float *din = stage(shard, n_shard, 1, base, &used), *dout = stage(out, nout, 0, base, &used);
    if (nccl_check(ncclAllGather(din, dout, (size_t)n_shard, ncclFloat, c->nc, cuda_stream), c, "all-gather"))
        return 1;
    unstage(out, dout, nout);
    return 0;
}

static int nc_bcast(void *cv, float *buf, int64_t n, int root) {
    nccl_comm *c = (nccl_comm *)cv;
    if (root < 0 || root >= c->world) {
        cuda_set_error("NCCL broadcast: root %d of %d ranks", root, c->world);
        return 1;
    }
    if (n <= 0) return 0;
    int64_t used = 0;
    float *base = stage_room(buf, n, buf, 0), *d = stage(buf, n, 1, base, &used);
    if (nccl_check(ncclBroadcast(d, d, (size_t)n, ncclFloat, root, c->nc, cuda_stream), c, "broadcast")) return 1;
    unstage(buf, d, n);
    return 0;
}

void cuda_register_comm(backend_ops *ops) {
    ops->comm_id_bytes = nc_id_bytes;
    ops->comm_id_new = nc_id_new;
    ops->comm_init = nc_init;
    ops->comm_close = nc_close;
    ops->comm_allreduce_sum = nc_allreduce_sum;
    ops->comm_reduce_scatter_sum = nc_reduce_scatter_sum;
    ops->comm_allgather = nc_allgather;
    ops->comm_bcast = nc_bcast;
}
