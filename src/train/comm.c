// comm.c: comm.h with OpenMPI (compiled with -DDALLE_MPI when the Makefile
// finds it), or with one rank only. MPI counts are ints: a sum or broadcast
// goes in pieces of at most 2^30 elements; a per-rank block of more than
// INT_MAX elements is refused (take more ranks).
#include "train/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dalle/dalle.h"

#ifdef DALLE_MPI
#include <mpi.h>
#endif

struct comm {
    int rank, size;
    int mpi; // MPI_Init was called: MPI_COMM_WORLD is the communicator
};

comm *comm_open(void) {
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

void comm_close(comm *c) {
    if (!c) return;
#ifdef DALLE_MPI
    if (c->mpi) MPI_Finalize();
#endif
    dalle_free(c);
}

int comm_rank(const comm *c) { return c ? c->rank : 0; }
int comm_size(const comm *c) { return c ? c->size : 1; }
const char *comm_backend(const comm *c) { return c && c->mpi ? "OpenMPI" : "none"; }

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
