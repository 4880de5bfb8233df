// train.h: training the prior (SPEC §3, paper App. B.2): AdamW (beta2 0.96,
// weight decay 4.5e-2 on weight matrices only), linear warm-up then decay,
// gradient clipping at global norm 4, an EMA of the parameters, on
// pre-tokenized shards (src/data/shard.h). Checkpoints hold the parameters,
// EMA, both Adam moments, the step and the settings; the data order and every
// random draw are functions of (seed, step), so --resume continues exactly as
// the uninterrupted run would have. Under mpirun the K ranks share each
// global batch (train/dp.h); a checkpoint is the same file whatever K.
#pragma once
#include <stdint.h>

#include "dalle/prior.h"
#include "train/dp.h"
#include "train/mixed.h"

typedef struct {
    const char **shards;     // training shards
    int n_shards;
    const char **val_shards; // held-out shards (may be none)
    int n_val;
    const char *out;         // checkpoint, written every save_every steps and at the end
    const char *resume;      // checkpoint to continue, or NULL
    prior_config cfg;        // ignored when resuming
    int batch;               // sequences per step (the global batch: all ranks together)
    int micro_batch;         // sequences per forward/backward pass (0: a rank's whole part); the gradient
                             // is accumulated over the pieces (activation memory follows micro_batch)
    int64_t steps;           // total steps (a resumed run continues to this)
    uint64_t seed;
    double lr;               // peak step size (paper 4.5e-4)
    int64_t warmup;          // linear warm-up steps (paper 5000)
    double lr_end;           // cosine decay from lr to lr_end at `steps` (paper: 4.5e-4/32 after 5 halvings)
    double beta1, beta2, eps;
    double weight_decay;     // on weight matrices (incl. the heads), not embeddings, gains, biases
    double clip;             // global gradient norm (4); 0: off
    double ema_decay;        // 0.99 ...
    int64_t ema_every;       // ... applied every this many steps (paper: 25)
    int64_t save_every, log_every, eval_every, eval_batches, stop_after;
    comm *comm;              // the ranks of a data-parallel run; NULL: this process alone
    dp_mode dp;              // DP_SHARD (default) or DP_ALLREDUCE
    // Mixed precision (docs/training.md); precision and scaling are kept across --resume.
    prior_precision precision;   // PRIOR_FP32 (default), or 16-bit storage in bf16 or fp16
    gscale_mode loss_scale;      // 16-bit: GSCALE_RESBLOCK (the paper's, default) or GSCALE_DYNAMIC
    const char *grad_scale_init; // 16-bit: initial scales (gscale_set), NULL: the mode's start value
    int64_t loss_scale_window;   // GSCALE_DYNAMIC: steps between doublings (0: 2000)
    int powersgd;                // rank of PowerSGD compression of the resblocks' matrices' gradients
                                 // (needs the all-reduce mode; 0: off); kept across --resume
    double caption_dropout;      // the fraction of training records whose caption becomes the empty one
                                 // (padding at every text position), so that the model also learns
                                 // p(image) for classifier-free guidance (not in the paper; 0: off; kept
                                 // across --resume). Record at data position pos drops when Philox
                                 // (seed, PRIOR_DROP_STREAM, pos) says so: reproducible, any rank count
    int checkpoint_acts;         // activation checkpointing: recompute each resblock's internals in
                                 // the backward pass (the same bits, less memory)
} prior_train_opts;

// The paper's settings for a run of `steps` steps.
void prior_train_defaults(prior_train_opts *o, int64_t steps);
// Trains (or resumes) as o says, writing o->out. With K ranks (o->comm) every
// rank must call it with the same options: each computes B/K sequences of
// each global batch of B (positions step*B + rank*B/K + j of the data order),
// rank 0 alone prints and writes. A step whose loss or gradient is not finite
// on any rank is skipped by all (and logged); 100 in a row end the run. In
// 16-bit precision a step in which a resblock's gradients overflowed on any
// rank is skipped too (the scales back off; these do not count towards the
// 100).
// DALLE_ERR with a message on bad shards (or shards of another config), a
// bad checkpoint, a batch K does not divide, divergence or I/O failure; with
// K > 1 the other ranks may then be blocked in a collective: the caller ends
// the job (comm_abort).
int prior_train(const prior_train_opts *o);
// The step size at step t (0-based): linear warm-up to lr over `warmup`
// steps, then cosine to lr_end at `steps`.
double prior_lr_at(const prior_train_opts *o, int64_t t);
