// model.h: the prior's insides, shared by model.c (parameters, files),
// forward.c (the forward and backward passes), and the trainer and sampler.
// Sizes: B batch, T = L + N stream positions, L text positions, N = G*G image
// positions, d model width, f MLP width, NH heads of HS channels, Vt = text
// vocabulary + L (text ids and the text head), Vi image vocabulary.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/half.h"
#include "core/safetensors.h"
#include "dalle/prior.h"

#define PRIOR_NAME_LEN 64

typedef enum { PT_EMBED, PT_MATRIX, PT_BIAS, PT_GAIN, PT_HEAD } prior_tensor_kind;

// One parameter tensor of the size table (the single source of truth for the
// layout, the checkpoint and the parameter count).
typedef struct {
    char name[PRIOR_NAME_LEN];
    int ndim;
    int64_t shape[2];
    int64_t offset, numel; // in floats, into the parameter block
    prior_tensor_kind kind;
    int resid;             // a residual projection (init scaled by 1/sqrt(2 n_layer))
} prior_tensor;

// Offsets (floats, into the parameter block) of one block's tensors.
typedef struct {
    int64_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b;
} prior_block;

// The keys each position attends in a layer type: keys[off[t] .. off[t+1]).
typedef struct {
    int32_t *off;  // (T+1)
    int32_t *keys; // (nnz)
    int64_t nnz;
} prior_keys;

// The flat parameter vector (n_params floats: parameters, gradients, the
// optimizer state, checkpoints) holds the tensors in canonical order. In a
// bf16 or fp16 model (mixed precision, docs/training.md) it holds the fp32
// tensors first (embeddings, gains, biases, heads: n32 floats) and then the
// blocks' matrices (qkv, proj, fc, fc2); the model itself keeps the first
// part in params and the matrices in 16 bits in w16.
struct prior_model {
    prior_config cfg;
    int d, f, NH, HS, L, N, T, Vt, Vi, G;
    prior_tensor *tensors; // (n_tensors) canonical order
    int n_tensors;
    prior_precision prec;  // storage of the blocks' matrices (and of a training batch's activations)
    half_fmt fmt;          // bf16 or fp16 when prec is
    float *params;         // (n32) the fp32 tensors (all of them in an fp32 model, n32 = n_params); backend memory
    int64_t n_params, n32;
    uint16_t *w16;         // (n_params - n32) the blocks' matrices in fmt, backend memory; NULL in an fp32 model
    int64_t text_emb, text_pos, image_emb, row_emb, col_emb, lnf_w, lnf_b, text_head, image_head;
    prior_block *blocks;   // (n_layer)
    prior_keys keys[3];    // by prior_layer_type
    int dense;             // tests: 1 = the dense masked reference attention (forward only)
};

// Activations of a training batch (B sequences), one block for all (backend
// memory, as are the model's params and key lists). Each
// layer has two resblocks (SPEC §3): attention, x -> xmid, and MLP, xmid ->
// the next x; x and xmid are the identity path (always fp32). The rest are a
// resblock's internals, kept for the backward pass in one of three ways:
//  - fp32 model: in the fp32 arrays, n_layer slices (the L below);
//  - bf16/fp16 model: in 16 bits in the h_* arrays, n_layer slices; the fp32
//    arrays hold one layer (L = 1), the one being computed, and GELU's
//    output is recomputed from fch in the backward pass (no h_fcg);
//  - checkpoint (activation checkpointing, any precision): not kept; the
//    backward pass recomputes each resblock's internals from x or xmid into
//    the one-layer fp32 arrays, with the same ops as the forward pass, so
//    the results are the same bits.
typedef struct {
    int B;
    int checkpoint;    // internals recomputed in the backward pass
    int all32;         // the fp32 arrays hold every layer (fp32 model, no checkpointing)
    float *arena;
    int64_t arena_floats;
    float *x;          // (n_layer+1, B, T, d) residual stream entering each block; [n_layer] leaves the last
    float *ln1, *ln2;  // (L, B, T, d)
    float *mu1, *rs1, *mu2, *rs2; // (n_layer, B, T); (1, B, T) with checkpointing
    float *qkv;        // (L, B, T, 3d)
    float *att;        // per layer: (B, NH, nnz of its type), layer l at att_off[l]; one layer: at 0
    int64_t *att_off;  // (n_layer)
    float *atty;       // (L, B, T, d) attention output, before the projection
    float *xmid;       // (n_layer, B, T, d) residual stream after the attention
    float *fch, *fcg;  // (L, B, T, f) before and after GELU
    float *lnf;        // (B, T, d)
    float *muf, *rsf;  // (B, T)
    float *logit_text; // (B, L-1, Vt) logits, then probabilities, then their gradient
    float *logit_img;  // (B, N, Vi)
    int32_t *tgt_text; // (B, L-1) targets
    int32_t *tgt_img;  // (B, N)
    int64_t *emb_rows; // (B, T, 3) the embedding rows each position sums (embed_sum_forward), outside the arena
    // backward scratch
    float *dx, *dln, *dqkv, *datty, *dfc, *dfc2, *dscratch; // (B,T,d) x2, (B,T,3d), (B,T,d), (B,T,f) x2, (B,NH,T)
    // bf16/fp16 model, no checkpointing: the internals of every layer in 16 bits
    uint16_t *h_ln1, *h_ln2, *h_atty; // (n_layer, B, T, d)
    uint16_t *h_qkv;                  // (n_layer, B, T, 3d)
    uint16_t *h_att;                  // as att of every layer, at att_off[l]
    uint16_t *h_fch;                  // (n_layer, B, T, f)
    // bf16/fp16 model: one matrix in fp32 for a product, the parameter
    // gradients of one product, the resblocks' gradient multipliers and counts
    float *wbuf;       // (max(3d*d, f*d))
    float *pgrad;      // (max(3d*d + 3d, f*d + f))
    float *grad_mult;  // (2 n_layer) set by the caller, 1 by default: resblock r = 2l (attention), 2l+1 (MLP)
    int64_t *nonfinite; // (2 n_layer) added to by prior_backward, zeroed by the caller
} prior_acts;

// The loss of a batch: loss = 1/8 text + 7/8 image (mean cross-entropies).
typedef struct {
    double loss, text, image;
} prior_loss;

// A model with parameters allocated (not initialised), stored at precision
// PREC (see prior_model). NULL on a bad config or OOM.
prior_model *prior_model_new(const prior_config *cfg, prior_precision prec);
void prior_model_free(prior_model *m);
// Sparse Transformer initialisation from Philox (see docs/prior.md) into
// dst (n_params, m's flat layout): m->params for an fp32 model.
void prior_init(const prior_model *m, uint64_t seed, float *dst);
// The model's weights from a flat parameter vector full (n_params, backend
// memory): copied, the 16-bit matrices rounded from it (the to_half op).
// full may be m->params (fp32 model).
void prior_set_params(prior_model *m, const float *full);
// Index of the tensor NAME, or -1.
int prior_find_tensor(const prior_model *m, const char *name);

// Files (io.c): metadata "dalle.kind" = KIND and "prior.config"; the tensors
// under PREFIX from src (n_params); reading them back (shapes checked); the
// config of a prior file; a model file in DTYPE (F32, F16, BF16).
int prior_write_meta(const prior_config *cfg, st_writer *w, const char *kind);
int prior_add_tensors(const prior_model *m, st_writer *w, const char *prefix, const float *src, st_dtype dtype);
int prior_read_tensors(const prior_model *m, const st_file *f, const char *prefix, float *dst);
int prior_config_from_file(const st_file *f, prior_config *cfg);
int prior_save_as(const prior_model *m, const char *path, st_dtype dtype);

// The pieces of a training batch's activation arena, in floats (16-bit
// pieces: half as many, rounded up), in the order of prior_acts' pointers
// (the single size table; prior_costs_compute uses it too), for a model
// stored at PREC, with or without checkpointing. nnz: the key count of each
// prior_layer_type.
enum { PRIOR_ACT_PIECES = 35 };
void prior_act_sizes(const prior_config *c, const int64_t nnz[3], int B, prior_precision prec, int checkpoint,
                     int64_t sizes[PRIOR_ACT_PIECES]);

// Activations for batches of up to B sequences of model m (its precision),
// with activation checkpointing or not. NULL on OOM.
prior_acts *prior_acts_new(const prior_model *m, int B, int checkpoint);
void prior_acts_free(prior_acts *a);

// Forward pass of B sequences: text (B, L) ids in [0, Vt), image (B, N) codes
// in [0, Vi) (host-readable: read on the host only). Fills every activation,
// the logits' softmax and the loss.
// B must not exceed the B of a. DALLE_ERR (with the position) on an id out of range.
int prior_forward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                  prior_loss *loss);
// Backward pass after prior_forward of the same batch (text, image and B as
// given to it; the forward pass kept what they give: the embedding rows and
// the targets): grads (n_params, backend memory) += d loss / d params.
// In a bf16/fp16 model each resblock r scales the gradient it receives from
// the identity path by a->grad_mult[r], rounds its internal gradients and
// its parameter gradients to 16 bits (fp16 overflows to infinity) and zeroes
// the non-finite ones (the paper's filter), and divides what it returns to
// the identity path, and its parameter gradients, by the multiplier again;
// a->nonfinite[r] counts the non-finite values it met (its gradients are then
// not to be trusted: the trainer skips the update).
void prior_backward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                    float *grads);
