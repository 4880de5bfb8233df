// dp.h: data-parallel training over the K ranks of a communicator (comm.h),
// shared by the prior's and the dVAE's trainers (SPEC §3 "Distribution").
//
// Each rank computes the gradient of its B/K samples of the global batch
// (their mean); the global gradient is the mean over the ranks. The flat
// parameter vector (n) is padded to K*shard. In DP_SHARD mode (the paper's
// parameter sharding, ZeRO stages 1 and 2) rank r owns the range
// [r*shard, (r+1)*shard) of it: the gradient is reduce-scattered so that r
// holds the summed gradient of its range only, r alone keeps the Adam moments
// and the EMA of that range and updates those parameters, and the parameters
// are then all-gathered for the next forward pass. In DP_ALLREDUCE mode the
// whole gradient is all-reduced and every rank owns (and updates) everything.
// With K = 1 both modes are the plain single-process step, bit for bit.
#pragma once
#include <stdint.h>

#include "core/progress.h"
#include "train/comm.h"
#include "train/powersgd.h"

typedef enum { DP_SHARD, DP_ALLREDUCE } dp_mode;

typedef struct {
    comm *c;          // NULL: one rank
    dp_mode mode;
    int rank, K;
    int64_t n;        // parameters
    int sharded;      // DP_SHARD with K > 1
    int64_t shard;    // sharded: floats per rank's block, K*shard >= n; else n
    int64_t n_grad;   // floats of grad: K*shard when sharded, else n
    int64_t lo, len;  // the parameters this rank updates: [lo, lo+len)
    int64_t cap;      // floats of each per-range array (state, own): shard when sharded, else n
    float *grad;      // (n_grad) this rank's gradient, zero beyond n: the backward pass fills it
    float *own;       // (cap) the mean gradient of [lo, lo+len) after dp_reduce (grad itself unless sharded)
    powersgd *psgd;   // not sharded: compress the all-reduce with PowerSGD (borrowed; NULL: plain fp32)
} dp_t;

// The per-parameter training state of this rank's range, one block.
typedef struct {
    float *ema, *m, *v; // (cap) each: the EMA, Adam's first and second moments
} dp_state;

// The steps whose update was skipped because the loss or the gradient was
// not finite on some rank (dp_reduce gives every rank the same values, so
// all ranks skip together).
typedef struct {
    int64_t total;  // in the run (kept in checkpoints: Adam's step counts the updates)
    int in_a_row;   // consecutive ones; the run stops at DP_MAX_SKIPS
    int since_log;  // since the last log line
} dp_skips;
enum { DP_MAX_SKIPS = 100 };

// "shard" / "allreduce" -> *mode; DALLE_ERR naming the value otherwise.
int dp_mode_parse(const char *s, dp_mode *mode);
const char *dp_mode_name(dp_mode mode);

// Lays out n parameters over the ranks of c and allocates grad (and own),
// zeroed, in backend memory (as is the state of dp_state_alloc).
// DALLE_ERR on out-of-memory.
int dp_init(dp_t *d, comm *c, dp_mode mode, int64_t n);
void dp_free(dp_t *d);
// A zeroed state of cap floats per array. DALLE_ERR on out-of-memory.
int dp_state_alloc(const dp_t *d, dp_state *s);
void dp_state_free(dp_state *s);

// Collective. Averages grad over the ranks into own (this rank's range), and
// stats (n_stats, each rank's values, e.g. its losses) over the ranks in
// place; *sumsq = the squared L2 norm of the whole mean gradient (the same on
// every rank; NaN or inf when any rank's gradient or stats were). With psgd
// the mean gradient is PowerSGD's approximation of it (powersgd_reduce).
int dp_reduce(dp_t *d, double *stats, int n_stats, double *sumsq);
// Collective, after each rank updated params[lo, lo+len): every rank gets all
// of params (n). A no-op unless parameters are sharded.
int dp_gather_params(dp_t *d, float *params);
// Collective, after the update: *full (n) = the whole of an array of which
// each rank holds its range in part (len): part itself unless sharded, else
// every rank's part gathered into grad (used up until the next backward
// pass fills it again).
int dp_gather(dp_t *d, const float *part, const float **full);
// Collective, between steps: the whole arrays of s for a checkpoint, on rank
// 0: full[0..2] = ema, m, v (n each), borrowed from s when this rank holds
// everything, else gathered into grad and *tmp (rank 0 only; free it with
// dalle_free). Other ranks get NULLs.
int dp_state_full(dp_t *d, const dp_state *s, const float *full[3], float **tmp);
// This rank's part of a whole per-parameter array read from a checkpoint:
// part (cap) = full[lo, lo+len), zero beyond.
void dp_take(const dp_t *d, const float *full, float *part);
// After step `step` (1-based) with the mean loss and the squared gradient
// norm of dp_reduce: 0 when both are finite (the update goes ahead); else 1
// after counting the skip and printing it on rank 0 (stdout, after ending
// prog's line; prog may be NULL), or DALLE_ERR with the error set when it is
// the DP_MAX_SKIPS-th in a row.
int dp_skip_check(const dp_t *d, dp_skips *s, progress_t *prog, int64_t step, double loss, double sumsq);
// Skips step `step` for the reason WHY (the same on every rank) as
// dp_skip_check does: counts it, prints "step N skipped: WHY" on rank 0;
// 1, or DALLE_ERR when it is the DP_MAX_SKIPS-th in a row.
int dp_skip(const dp_t *d, dp_skips *s, progress_t *prog, int64_t step, const char *why);
// " (N steps skipped)" for the log line when steps were skipped since the
// last one, else ""; starts a new count. buf (48).
const char *dp_skips_note(dp_skips *s, char *buf);
// The part of the parameters [a, a+numel) that this rank updates: sets
// *start (>= a) and returns its length (0: none).
int64_t dp_overlap(const dp_t *d, int64_t a, int64_t numel, int64_t *start);
