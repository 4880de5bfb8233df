// model.h: the prior's insides, shared by model.c (parameters, files),
// forward.c (the forward and backward passes), and the trainer and sampler.
// Sizes: B batch, T = L + N stream positions, L text positions, N = G*G image
// positions, d model width, f MLP width, NH heads of HS channels, Vt = text
// vocabulary + L (text ids and the text head), Vi image vocabulary.
#pragma once
#include <stddef.h>
#include <stdint.h>

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

struct prior_model {
    prior_config cfg;
    int d, f, NH, HS, L, N, T, Vt, Vi, G;
    prior_tensor *tensors; // (n_tensors) canonical order
    int n_tensors;
    float *params;         // (n_params)
    int64_t n_params;
    int64_t text_emb, text_pos, image_emb, row_emb, col_emb, lnf_w, lnf_b, text_head, image_head;
    prior_block *blocks;   // (n_layer)
    prior_keys keys[3];    // by prior_layer_type
    int dense;             // tests: 1 = the dense masked reference attention (forward only)
};

// Activations of a training batch (B sequences), one block for all.
typedef struct {
    int B;
    float *arena;
    int64_t arena_floats;
    float *x;          // (n_layer+1, B, T, d) residual stream entering each block; [n_layer] leaves the last
    float *ln1, *ln2;  // (n_layer, B, T, d)
    float *mu1, *rs1, *mu2, *rs2; // (n_layer, B, T)
    float *qkv;        // (n_layer, B, T, 3d)
    float *att;        // per layer: (B, NH, nnz of its type), layer l at att_off[l]
    int64_t *att_off;  // (n_layer)
    float *atty;       // (n_layer, B, T, d) attention output, before the projection
    float *xmid;       // (n_layer, B, T, d) residual stream after the attention
    float *fch, *fcg;  // (n_layer, B, T, f) before and after GELU
    float *lnf;        // (B, T, d)
    float *muf, *rsf;  // (B, T)
    float *logit_text; // (B, L-1, Vt) logits, then probabilities, then their gradient
    float *logit_img;  // (B, N, Vi)
    int32_t *tgt_text; // (B, L-1) targets
    int32_t *tgt_img;  // (B, N)
    // backward scratch
    float *dx, *dln, *dqkv, *datty, *dfc, *dfc2, *dscratch; // (B,T,d) x2, (B,T,3d), (B,T,d), (B,T,f) x2, (B,NH,T)
} prior_acts;

// The loss of a batch: loss = 1/8 text + 7/8 image (mean cross-entropies).
typedef struct {
    double loss, text, image;
} prior_loss;

// A model with parameters allocated (not initialised). NULL on a bad config or OOM.
prior_model *prior_model_new(const prior_config *cfg);
void prior_model_free(prior_model *m);
// Sparse Transformer initialisation from Philox (see docs/prior.md).
void prior_init(prior_model *m, uint64_t seed);
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

// The pieces of a training batch's activation arena, in floats, in the order
// of prior_acts' pointers (the single size table; prior_costs_compute uses
// it too). nnz: the key count of each prior_layer_type.
enum { PRIOR_ACT_PIECES = 27 };
void prior_act_sizes(const prior_config *c, const int64_t nnz[3], int B, int64_t sizes[PRIOR_ACT_PIECES]);

// Activations for batches of up to B sequences. NULL on OOM.
prior_acts *prior_acts_new(const prior_model *m, int B);
void prior_acts_free(prior_acts *a);

// Forward pass of B sequences: text (B, L) ids in [0, Vt), image (B, N) codes
// in [0, Vi). Fills every activation, the logits' softmax and the loss.
// B must not exceed the B of a. DALLE_ERR (with the position) on an id out of range.
int prior_forward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                  prior_loss *loss);
// Backward pass after prior_forward: grads (n_params) += d loss / d params.
void prior_backward(prior_model *m, prior_acts *a, const int32_t *text, const int32_t *image, int B,
                    float *grads);
