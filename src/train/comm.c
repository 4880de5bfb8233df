// comm.c: comm.h with OpenMPI (compiled with -DDALLE_MPI when the Makefile
// finds it), or with one rank only. MPI counts are ints: a sum or broadcast
// goes in pieces of at most 2^30 elements; a per-rank block of more than
// INT_MAX elements is refused (take more ranks).
//
// With the CUDA backend selected (backend_select before comm_open), the float
// collectives (all-reduce, reduce-scatter, all-gather, broadcast) go through
// the backend's NCCL entries on the GPU's stream: rank 0 makes NCCL's id, MPI
// broadcasts it, every rank joins; one rank without MPI opens a one-rank NCCL
// communicator (the same code path). Each returns with its result in place,
// as MPI's do. MPI keeps the bootstrap, the doubles, gather (after a sync),
// barrier and abort.
#include "train/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/common.h"
#include "dalle/dalle.h"

#ifdef DALLE_MPI
#include <mpi.h>
#endif

struct comm {
    int rank, size;
    int mpi;                // MPI_Init was called: MPI_COMM_WORLD is the communicator
    const backend_ops *gpu; // the CUDA backend whose NCCL entries carry the float collectives, or NULL
    void *nccl;             // its communicator
};

// The selected backend if it has NCCL collectives, else NULL (the CPU: MPI).
static const backend_ops *nccl_backend(void) {
    const backend_ops *b = backend();
    return b->kind == BACKEND_CUDA && b->comm_id_bytes && b->comm_id_new && b->comm_init && b->comm_close &&
                   b->comm_allreduce_sum && b->comm_reduce_scatter_sum && b->comm_allgather && b->comm_bcast
               ? b
               : NULL;
}

// Joins every rank to one NCCL communicator: rank 0 makes the id and MPI
// broadcasts it (with a flag, so that a failure on rank 0 reaches all ranks
// instead of leaving them waiting). DALLE_ERR with the error set.
static int nccl_open(comm *c, const backend_ops *b) {
    int bytes = b->comm_id_bytes();
    unsigned char *msg = dalle_calloc(1, (size_t)bytes + 1); // [0]: rank 0's id is good; [1..]: the id
    if (!msg) return DALLE_ERR;
    int rc = DALLE_OK;
    if (c->rank == 0) {
        msg[0] = b->comm_id_new(msg + 1) == 0;
        if (!msg[0]) rc = dalle_seterr("NCCL id on rank 0: %s", b->last_error());
    }
#ifdef DALLE_MPI
    if (c->mpi && c->size > 1) {
        char err[MPI_MAX_ERROR_STRING];
        int len = 0, e = MPI_Bcast(msg, bytes + 1, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (e != MPI_SUCCESS) {
            MPI_Error_string(e, err, &len);
            rc = dalle_seterr("broadcast of the NCCL id: %s", err);
        } else if (!msg[0] && c->rank != 0)
            rc = dalle_seterr("rank 0 could not make the NCCL id");
    }
#endif
    if (rc == DALLE_OK && !(c->nccl = b->comm_init(msg + 1, c->rank, c->size)))
        rc = dalle_seterr("NCCL communicator, rank %d of %d: %s", c->rank, c->size, b->last_error());
    dalle_free(msg);
    if (rc == DALLE_OK) c->gpu = b;
    return rc;
}

// After a float collective issued on the GPU's stream (rc: its return):
// waits for it (comm.h's contract: the result is in place on return), or
// returns DALLE_ERR with the error set from the backend's last error.
static int nccl_done(const comm *c, int rc, const char *what) {
    if (rc) return dalle_seterr("%s (NCCL, rank %d of %d): %s", what, c->rank, c->size, c->gpu->last_error());
    c->gpu->sync();
    return DALLE_OK;
}

// The MPI part of comm_open: MPI_COMM_WORLD, or one rank without MPI.
static comm *comm_open_mpi(void) {
    comm *c = dalle_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->size = 1;
    const char *world = getenv("OMPI_COMM_WORLD_SIZE");
    if (!world) return c;
#ifdef DALLE_MPI
    int provided = 0; // only the main thread calls MPI; OpenMP threads compute
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        dalle_free(c);
        dalle_seterr("MPI_Init failed (started by mpirun with %s ranks)", world);
        return NULL;
    }
    c->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
#else
    if (atoi(world) > 1) {
        dalle_free(c);
        dalle_seterr("started by mpirun with %s ranks, but this dalle was built without MPI "
                     "(install libopenmpi-dev, then rebuild: make clean all)", world);
        return NULL;
    }
#endif
    return c;
}

comm *comm_open(void) {
    comm *c = comm_open_mpi();
    if (!c) return NULL;
    const backend_ops *b = nccl_backend();
    if (b && nccl_open(c, b) != DALLE_OK) {
        comm_close(c);
        return NULL;
    }
    return c;
}

void comm_close(comm *c) {
    if (!c) return;
    if (c->nccl) c->gpu->comm_close(c->nccl);
#ifdef DALLE_MPI
    if (c->mpi) MPI_Finalize();
#endif
    dalle_free(c);
}

int comm_rank(const comm *c) { return c ? c->rank : 0; }
int comm_size(const comm *c) { return c ? c->size : 1; }
const char *comm_backend(const comm *c) {
    if (c && c->nccl) return c->mpi ? "NCCL (OpenMPI bootstrap)" : "NCCL";
    return c && c->mpi ? "OpenMPI" : "none";
}

#ifdef DALLE_MPI
#define MPI_CHUNK ((int64_t)1 << 30)
static int mpi_check(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return DALLE_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return dalle_seterr("%s: %s", what, msg);
}
static int block_fits(int64_t n, const char *what) {
    if (n <= INT_MAX) return DALLE_OK;
    return dalle_seterr("%s: a block of %lld elements per rank is more than MPI's int count; use more ranks", what,
                        (long long)n);
}
#endif

int comm_allreduce_sum(comm *c, float *buf, int64_t n) {
    if (c && c->nccl) return nccl_done(c, c->gpu->comm_allreduce_sum(c->nccl, buf, n), "all-reduce");
#ifdef DALLE_MPI
    if (c && c->mpi)
        for (int64_t i = 0; i < n; i += MPI_CHUNK)
            if (mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)DALLE_MIN(MPI_CHUNK, n - i), MPI_FLOAT, MPI_SUM,
                                        MPI_COMM_WORLD),
                          "all-reduce"))
                return DALLE_ERR;
#else
    (void)c, (void)buf, (void)n;
#endif
    return DALLE_OK;
}

int comm_allreduce_sum_f64(comm *c, double *buf, int n) {
#ifdef DALLE_MPI
    if (c && c->mpi)
        return mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "all-reduce");
#else
    (void)c, (void)buf, (void)n;
#endif
    return DALLE_OK;
}

int comm_reduce_scatter_sum(comm *c, const float *in, float *out, int64_t shard) {
    if (c && c->nccl)
        return nccl_done(c, c->gpu->comm_reduce_scatter_sum(c->nccl, in, out, shard), "reduce-scatter");
#ifdef DALLE_MPI
    if (c && c->mpi) {
        if (block_fits(shard, "reduce-scatter")) return DALLE_ERR;
        return mpi_check(MPI_Reduce_scatter_block(in, out, (int)shard, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                         "reduce-scatter");
    }
#endif
    (void)c;
    memcpy(out, in, sizeof(float) * (size_t)shard);
    return DALLE_OK;
}

int comm_allgather(comm *c, const float *shard, float *out, int64_t n_shard) {
    if (c && c->nccl) return nccl_done(c, c->gpu->comm_allgather(c->nccl, shard, out, n_shard), "all-gather");
#ifdef DALLE_MPI
    if (c && c->mpi) {
        if (block_fits(n_shard, "all-gather")) return DALLE_ERR;
        return mpi_check(MPI_Allgather(shard, (int)n_shard, MPI_FLOAT, out, (int)n_shard, MPI_FLOAT, MPI_COMM_WORLD),
                         "all-gather");
    }
#endif
    (void)c;
    memcpy(out, shard, sizeof(float) * (size_t)n_shard);
    return DALLE_OK;
}

int comm_gather(comm *c, const float *shard, float *out, int64_t n_shard, int root) {
    if (c && c->nccl) c->gpu->sync(); // MPI (or memcpy) reads managed memory on the host
#ifdef DALLE_MPI
    if (c && c->mpi) {
        if (block_fits(n_shard, "gather")) return DALLE_ERR;
        return mpi_check(MPI_Gather(shard, (int)n_shard, MPI_FLOAT, out, (int)n_shard, MPI_FLOAT, root, MPI_COMM_WORLD),
                         "gather");
    }
#endif
    (void)c, (void)root;
    memcpy(out, shard, sizeof(float) * (size_t)n_shard);
    return DALLE_OK;
}

int comm_bcast(comm *c, float *buf, int64_t n, int root) {
    if (c && c->nccl) return nccl_done(c, c->gpu->comm_bcast(c->nccl, buf, n, root), "broadcast");
#ifdef DALLE_MPI
    if (c && c->mpi)
        for (int64_t i = 0; i < n; i += MPI_CHUNK)
            if (mpi_check(MPI_Bcast(buf + i, (int)DALLE_MIN(MPI_CHUNK, n - i), MPI_FLOAT, root, MPI_COMM_WORLD),
                          "broadcast"))
                return DALLE_ERR;
#else
    (void)c, (void)buf, (void)n, (void)root;
#endif
    return DALLE_OK;
}

int comm_barrier(comm *c) {
#ifdef DALLE_MPI
    if (c && c->mpi) return mpi_check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
#else
    (void)c;
#endif
    return DALLE_OK;
}

_Noreturn void comm_abort(comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
#ifdef DALLE_MPI
    if (c && c->mpi) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)c;
#endif
    exit(code);
}
