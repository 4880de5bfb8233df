// model.h: the contrastive model's insides (clip.h), shared by model.c
// (parameters, initialisation, files, activation memory) and forward.c (the
// towers' forward and backward passes, the loss head, clip_step).
// Sizes: B batch, T a tower's positions (text L, image N = G*G), d model
// width (NH heads of HS), f = mlp_mult*d MLP width, E joint embedding, V a
// tower's ids (text: Vt + L, the BPE ids and the per-position padding ids;
// image: Vi).
#pragma once
#include <stdint.h>

#include "clip/clip.h"

#define CLIP_NAME_LEN 64

enum { CLIP_TEXT = 0, CLIP_IMAGE = 1 };

typedef enum { CT_EMBED, CT_POS, CT_MATRIX, CT_BIAS, CT_GAIN, CT_PROJ, CT_SCALE } clip_tensor_kind;

// One parameter tensor of the size table (the single source of truth for the
// layout, the files and the parameter count), in canonical order.
typedef struct {
    char name[CLIP_NAME_LEN];
    int ndim;
    int64_t shape[2];
    int64_t offset, numel; // in floats, into the parameter block
    clip_tensor_kind kind;
    float std;             // CT_MATRIX: its initial N(0, std)
} clip_tensor_info;

// Offsets (floats, into the parameter block) of one pre-LN block's tensors.
typedef struct {
    int64_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b;
} clip_block;

// A tower: its tensors and the key lists of its attention (text: causal;
// image: every position attends all N).
typedef struct {
    const char *name; // "text", "image"
    int T, V;         // positions, ids
    int pool;         // positions pooled into the feature: 1 (text: L-1) or T (image: the mean)
    int64_t emb, pos, lnf_w, lnf_b, proj; // proj (d, E)
    clip_block *blocks;                   // (n_layer)
    int32_t *off, *keys;                  // (T+1), (nnz): backend memory
    int64_t nnz;
} clip_tower;

// The activations of one tower for up to B sequences (backend memory, one
// block). layers: how many layers' internals the arrays keep (n_layer for
// training, 1 for inference, which overwrites them layer after layer).
typedef struct {
    int B, layers;
    float *arena;
    float *x;               // (n_layer+1, B, T, d) residual stream entering each block; [n_layer] leaves the last
    float *xmid;            // (layers, B, T, d) after the attention resblock
    float *ln1, *ln2, *atty; // (layers, B, T, d)
    float *mu1, *rs1, *mu2, *rs2; // (layers, B, T)
    float *qkv;             // (layers, B, T, 3d)
    float *att;             // (layers, B, NH, nnz) attention probabilities
    float *fch, *fcg;       // (layers, B, T, f) before and after GELU
    float *lnf;             // (B, T, d) final LayerNorm
    float *muf, *rsf;       // (B, T)
    float *pooled;          // (B, d) sum of the pooled rows of lnf
    float *dpooled;         // (B, d) its gradient (the host writes it)
    int64_t *rows;          // backend memory: emb_rows then pool_rows
    int64_t *emb_rows;      // (B, T, 2) token and position rows of each position (embed_sum_forward)
    int64_t *pool_rows;     // (B, pool) the rows of lnf pooled into each feature
} clip_tower_acts;

// A training batch's activations: both towers (text NT captions, image B
// images), the backward scratch they share (sized for the longer) and the
// loss head's host memory.
struct clip_acts {
    int B, NT;
    clip_tower_acts *t[2];
    float *scratch;                    // backend: the pieces below, one block
    float *dx, *dln, *datty, *dqkv;    // (S, d) x3, (S, 3d): S = max(NT L, B N) positions
    float *dfc, *dfc2;                 // (S, f) x2
    float *dscore;                     // (max(NT, B), NH, max(L, N)) attention_backward's scratch
    double *host;                      // host: the loss head's arrays, one block
    double *feat[2], *emb[2], *demb[2]; // (n, d), (n, E), (n, E): n = NT (text), B (image)
    double *norm[2];                   // (n) |emb| before the normalisation
    double *logits, *dlogits;          // (NT, B): caption i, image j at i*B + j
};

struct clip_model {
    clip_config cfg;
    int d, f, NH, HS, E;
    clip_tower tower[2];
    clip_tensor_info *tensors; // (n_tensors) canonical order
    int n_tensors;
    float *params;             // (n_params) backend memory
    int64_t n_params;
    int64_t logit_scale;       // offset of the scalar
    clip_tower_acts *infer[2]; // inference activations (clip_embed_*), grown with the batch
};

// Checks a config: every field positive and within bounds. DALLE_ERR with
// the field named.
int clip_config_check(const clip_config *c);

// Activations of tower W for up to B sequences, keeping LAYERS layers'
// internals (1 or n_layer). NULL (error set) on OOM.
clip_tower_acts *clip_tower_acts_new(const clip_model *m, int w, int B, int layers);
void clip_tower_acts_free(clip_tower_acts *t);

