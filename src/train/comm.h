// comm.h: the collectives of data-parallel training (SPEC §3 "Distribution",
// src/train/dp.h), behind one opaque handle: implemented with OpenMPI, and
// with the CUDA backend selected the float collectives with NCCL on the GPU
// (buffers then come from backend_alloc; see comm.c). A process
// that OpenMPI's mpirun did not start gets a communicator of one rank that
// makes no MPI call at all (so `dalle train` alone never touches MPI).
//
// Every rank must make the same calls in the same order with the same sizes
// (MPI's rule): the trainers keep their control flow identical on all ranks.
// Sizes are in elements; K is comm_size(c). Functions return DALLE_OK, or
// DALLE_ERR with the error set (MPI's own errors abort the job by default).
#pragma once
#include <stdint.h>

typedef struct comm comm;

// Opens the job's communicator: MPI_COMM_WORLD after MPI_Init when started
// by mpirun (OMPI_COMM_WORLD_SIZE set), else one rank without MPI; with the
// CUDA backend selected (call backend_select first), an NCCL communicator of
// as many ranks too. NULL with the error set when mpirun started a build
// without MPI, or MPI_Init or NCCL's set-up failed.
comm *comm_open(void);
// MPI_Finalize (if MPI was initialised) and free; NULL is a no-op.
void comm_close(comm *c);

int comm_rank(const comm *c); // 0 .. K-1; 0 for NULL
int comm_size(const comm *c); // K; 1 for NULL
// "OpenMPI", "none" (one rank, no MPI), "NCCL (OpenMPI bootstrap)" or
// "NCCL" (one rank), for logs.
const char *comm_backend(const comm *c);

// buf (n) = the sum over the ranks of their buf (n), on every rank.
int comm_allreduce_sum(comm *c, float *buf, int64_t n);
// The same for a few doubles (losses, squared norms): buf (n).
int comm_allreduce_sum_f64(comm *c, double *buf, int n);
// out (shard) = the sum over the ranks of their in[r*shard .. (r+1)*shard)
// for this rank r; in (K*shard), out (shard) distinct.
int comm_reduce_scatter_sum(comm *c, const float *in, float *out, int64_t shard);
// out (K*shard) = every rank's shard (shard), in rank order, on every rank.
int comm_allgather(comm *c, const float *shard, float *out, int64_t n_shard);
// out (K*shard), on rank root only (unused elsewhere, may be NULL) = every
// rank's shard (shard), in rank order.
int comm_gather(comm *c, const float *shard, float *out, int64_t n_shard, int root);
// buf (n) on every rank = root's buf (n).
int comm_bcast(comm *c, float *buf, int64_t n, int root);
// Returns when every rank has called it.
int comm_barrier(comm *c);
// Ends the job: MPI_Abort on every rank with status code (so that no rank
// waits forever on one that failed); exit(code) with one rank. For the
// program's top level only, after the error was printed.
_Noreturn void comm_abort(comm *c, int code);
