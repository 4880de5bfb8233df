// train.h: training the dVAE (SPEC §2): Gumbel-softmax relaxation with tau
// annealed 1 -> 1/16, KL to the uniform prior with weight beta annealed
// 0 -> 6.6, logit-Laplace likelihood, AdamW, EMA, all schedules cosine.
#pragma once
#include <stdint.h>

#include "dalle/dvae.h"
#include "model.h"
#include "train/dp.h"

typedef struct {
    const char *data_dir;  // folder of PNG/JPEG images
    const char *out;       // checkpoint written every save_every steps and at the end
    const char *resume;    // checkpoint to continue, or NULL
    dvae_config cfg;       // ignored when resuming (the checkpoint's is used)
    int batch;             // images per step (the global batch: all ranks together)
    int micro_batch;       // images per forward/backward pass (0: a rank's whole part), the gradient accumulated
    int64_t steps;         // total steps (a resumed run continues to this)
    uint64_t seed;
    double lr, lr_end;     // step size, cosine 1e-4 -> 1.25e-6 ...
    int64_t lr_steps;      // ... over this many steps (paper: 1.2M of 3M)
    double tau, tau_end;   // temperature 1 -> 1/16 ...
    int64_t tau_steps;     // (paper: 150k)
    double kl, kl_end;     // KL weight beta 0 -> 6.6 ...
    int64_t kl_steps;      // (paper: 5000)
    double weight_decay;   // AdamW, on conv weights only (1e-4)
    double ema_decay;      // 0.999
    int augment;           // the paper's Listing 1 augmentation (random crops, resize, flip)
    int64_t save_every;    // 0: only at the end
    int64_t log_every;     // plain log line every this many steps
    int64_t max_images;    // use at most this many images of the folder (0: all)
    int64_t stop_after;    // stop (with a checkpoint) after this many steps of this run (0: never)
    comm *comm;            // the ranks of a data-parallel run (train/dp.h); NULL: this process alone
    dp_mode dp;            // DP_SHARD (default) or DP_ALLREDUCE
    int bf16;              // --precision bf16: the convolutions in bf16 (ops.h conv2d16_*), fp32 master,
                           // optimizer and losses; kept across --resume ("train.precision")
} dvae_train_opts;

// Default options for a run of `steps` steps. The schedule horizons are -1:
// dvae_train puts them at the paper's fractions of o->steps (tau 5%, beta
// 1/600, lr 40%: 150k, 5k and 1.2M of 3M).
void dvae_train_defaults(dvae_train_opts *o, int64_t steps);

// Trains (or resumes) as o says, writing o->out. A resumed run takes the
// checkpoint's config, seed, batch, schedules, optimizer and augmentation
// settings (stored in its metadata) and only steps, out, save_every,
// log_every, stop_after, micro_batch, comm and dp from o. With K ranks every rank calls it
// with the same options and computes B/K images of each global batch of B
// (positions step*B + rank*B/K + j, each with the augmentation and Gumbel
// noise it has in a one-process run); rank 0 alone prints and writes the
// checkpoint, which is the same file whatever K. A step whose loss or
// gradient is not finite on any rank is skipped by all (and logged); 100 in
// a row end the run. DALLE_ERR with a message on bad data, a bad checkpoint,
// a batch K does not divide, divergence or I/O failure; with K > 1 the caller
// then ends the job (comm_abort), as other ranks may wait in a collective.
int dvae_train(const dvae_train_opts *o);

// The loss of one batch, as the trainer computes it; the pieces are also
// used by the tests against PyTorch.
typedef struct {
    double loss; // rec + beta * kl_sum / (B*3*S*S): the paper's normalisation
    double rec;  // logit-Laplace NLL per pixel value (nats)
    double kl;   // KL per code position (nats)
} dvae_loss;

// State for training steps on B images: the encoder and decoder bound in
// training mode, the relaxation's buffers and the parameter gradient.
typedef struct {
    dvae_model *m;
    int B;
    dvae_exec enc, dec;
    float *g;       // (B, V, G, G) Gumbel noise
    float *z;       // (B, V, G, G) relaxed sample, the decoder's input
    float *dlogits; // (B, V, G, G)
    float *grads;   // (n_params,) (dvae_train lends its own, padded for the ranks)
    uint16_t *w16;  // (n_params,) the parameters' 16-bit codes when m's nets are 16-bit (dvae_net.half)
} dvae_trainer;

// With m->enc.half and m->dec.half set, the step runs the 16-bit convolutions
// (the codes remade from m->params at the start of each step).
int dvae_trainer_init(dvae_trainer *t, dvae_model *m, int B);
void dvae_trainer_free(dvae_trainer *t);
// Forward and backward of one batch x (B, 3, S, S) of MAPPED pixels (backend
// memory, backend.h) with the Gumbel noise in t->g: sets t->grads
// (overwrites) and returns the loss. The trainer's buffers (g, z, grads) are
// backend memory.
dvae_loss dvae_trainer_step(dvae_trainer *t, const float *x, float tau, float beta);
