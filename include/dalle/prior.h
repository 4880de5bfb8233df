// prior.h: stage 2 of DALL-E, the transformer prior (public API).
// A decoder-only transformer over one stream of T = L + N tokens: the L text
// ids of a caption (BPE ids, or the padding id Vt + i at an empty position i)
// followed by the N = G*G image codes of the dVAE in raster order. Position
// L + j holds a start-of-image token (j = 0) or image code j - 1, and predicts
// image code j; text position t < L - 1 predicts text id t + 1. Attention is
// causal over the text, every image query sees all text, and image->image
// attention is sparse: row, column, or (last layer) convolutional masks.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_layer;     // transformer blocks (paper 64)
    int n_head;      // attention heads (62)
    int d_head;      // channels per head (64); d_model = n_head * d_head (3968)
    int text_len;    // L, text positions (256)
    int text_vocab;  // Vt, BPE vocabulary (16384); text ids are < Vt + L (padding)
    int grid;        // G, the image grid side (32): N = G*G image tokens
    int image_vocab; // Vi, the dVAE codebook (8192)
    int conv_kernel; // side of the last layer's convolutional mask (11), odd
    int mlp_mult;    // MLP width / d_model (4)
} prior_config;

typedef struct prior_model prior_model;

// The image->image attention pattern of a layer.
typedef enum { PRIOR_ROW = 0, PRIOR_COLUMN = 1, PRIOR_CONV = 2 } prior_layer_type;

// Fills *cfg with the preset NAME: "paper" (12B: 64 layers, 62 heads of 64,
// 256 text + 1024 image tokens), "small" (trains on a laptop CPU) or "tiny"
// (tests). DALLE_ERR for an unknown name.
int prior_config_preset(const char *name, prior_config *cfg);
// Checks a config (positive sizes, odd conv_kernel <= 2*grid-1, ...).
// DALLE_ERR with a message naming the field.
int prior_config_check(const prior_config *cfg);
// The layer type of layer l (0-based): conv for the last layer, column when
// (l+1 - 2) mod 4 == 0 (1-based layers 2, 6, 10, ...), row otherwise.
prior_layer_type prior_layer_type_of(const prior_config *cfg, int l);
// Whether image query i may attend image key j (raster indices, 0 <= i, j < N)
// in a layer of type TYPE: always j <= i; row: i - j <= G; column:
// (i - j) mod G == 0; conv: i - j = dr*G + dc with 0 <= dr <= r, |dc| <= r,
// r = (conv_kernel - 1) / 2 (offsets in raster order, so the window wraps
// around the row ends as row attention does).
int prior_mask_image(const prior_config *cfg, prior_layer_type type, int i, int j);
// Whether stream position q may attend stream position k (0 <= q, k < T):
// k <= q, and image->image pairs as prior_mask_image for the image indices
// q - L, k - L. Text keys are always visible to image queries.
int prior_mask(const prior_config *cfg, prior_layer_type type, int q, int k);

// Parameters in the model (embeddings and heads included).
int64_t prior_param_count(const prior_config *cfg);

// How a training run stores the prior (SPEC §3 "Mixed precision",
// docs/training.md): fp32 throughout, or the resblocks' weight matrices,
// saved activations and internal gradients in bf16 or fp16 and Adam's
// moments in the paper's 16-bit formats. Arithmetic is fp32 either way.
typedef enum { PRIOR_FP32 = 0, PRIOR_BF16 = 1, PRIOR_FP16 = 2 } prior_precision;
// "fp32", "bf16" or "fp16" -> *p; DALLE_ERR naming the value otherwise.
int prior_precision_parse(const char *s, prior_precision *p);
// "fp32", "bf16" or "fp16".
const char *prior_precision_name(prior_precision p);

// Loads a prior model file, or a training checkpoint (its EMA weights when
// use_ema and present). A file of another architecture, missing, extra or
// mis-shaped tensors are errors naming the file and the tensor. NULL on error.
prior_model *prior_load(const char *path, int use_ema);
// Writes the parameters (only), F32, atomically.
int prior_save(const prior_model *m, const char *path);
// Frees the model; NULL is a no-op.
void prior_free(prior_model *m);
// The model's config (owned by the model).
const prior_config *prior_get_config(const prior_model *m);

// Reads a config from JSON text: an object with exactly the nine integer
// fields of prior_config (all required; a missing, unknown or duplicated
// field, or a value that is not an integer, is an error), then checks it with
// prior_config_check. WHAT names the source in messages (a file name).
// *cfg is only written on success. DALLE_ERR with a message naming WHAT and
// the field.
int prior_config_from_json(const char *json, prior_config *cfg, const char *what);
// The config as compact JSON, fields in the order of the struct:
// {"n_layer":64,"n_head":62,...}. The caller frees it with dalle_free. NULL
// on out-of-memory.
char *prior_config_to_json(const prior_config *cfg);
// SPEC is a preset name (paper, small, tiny), or else the path of a JSON file
// holding a config (prior_config_from_json). DALLE_ERR with a message naming
// SPEC (the file) on an unknown preset, a missing file or a bad config.
int prior_config_resolve(const char *spec, prior_config *cfg);

// What a config costs, computed from its sizes alone (nothing is allocated).
// FLOPs count 2 per multiply-add and are per token: averaged over the
// T = L + N stream positions of one sequence. They include the matrix
// products (qkv, attention output, the two MLP matrices of each layer; the
// text head at the L-1 text predictions and the image head at the N image
// predictions) and attention (2*d per key for the scores, 2*d per key for the
// weighted sum of values); not LayerNorm, GELU, softmax, biases or embedding
// lookups. "Dense" is a causal model of the same shape in which every
// position attends every earlier one. Bytes are exact byte counts.
typedef struct {
    int64_t params;           // parameters (prior_param_count)
    int n_layers[3];          // layers of each prior_layer_type (row, column, conv)
    int64_t nnz[3];           // (query, key) pairs of each layer type over the T positions
    int64_t nnz_dense;        // T*(T+1)/2, the pairs of a dense causal layer
    double flops_matmul;      // FLOPs/token of the matrix products, all layers and both heads
    double flops_attn;        // FLOPs/token of attention, all layers, sparse masks
    double flops_attn_dense;  // the same for dense causal attention
    double flops_fwd;         // FLOPs/token of a forward pass: flops_matmul + flops_attn
    double flops_fwd_dense;   // flops_matmul + flops_attn_dense
    double flops_train;       // FLOPs/token of a training step (forward + backward): 3 * flops_fwd
    double flops_train_dense; // 3 * flops_fwd_dense
    int64_t bytes_weights;    // parameters in fp32: 4 * params
    int64_t bytes_weights16;  // parameters in a 16-bit format: 2 * params
    int64_t bytes_grads;      // gradients in fp32: 4 * params
    int64_t bytes_adam;       // Adam's two moments in fp32: 8 * params
    int64_t bytes_adam16;     // the two moments in 16 bits (the paper's): 4 * params
    int64_t params16;         // parameters that mixed precision stores in 16 bits: the blocks'
                              // matrices (qkv, proj, fc, fc2)
    int batch;                // B of bytes_acts
    int64_t bytes_acts;       // activations of a training batch of B sequences: exactly the
                              // arena of prior_acts_new(model, B, 0) (same pieces, same rounding)
    int64_t bytes_acts16;     // the same for a bf16 or fp16 model (16-bit saved activations)
    int64_t bytes_acts_ckpt;  // with activation checkpointing (prior_acts_new(model, B, 1)), fp32
    int64_t bytes_acts_ckpt16; // with checkpointing, bf16 or fp16
    int n_cand;               // K of the sampling figures
    int64_t bytes_kv;         // fp32 key/value cache for K candidates of one caption: over the
                              // layers, 2*d*(L + K*W) floats, W the image positions a layer
                              // keeps (row G+1, column N, conv r*G+r+1); text K/V shared
    int64_t bytes_sample;     // sampling memory: bytes_kv + bytes_weights
} prior_costs;

// Fills *out for CFG, a training batch of BATCH sequences and N_CAND sampling
// candidates (both in [1, 2^20]). DALLE_ERR (the message names the field) on
// a bad config or count, or when a figure would not fit in 64 bits.
int prior_costs_compute(const prior_config *cfg, int batch, int n_cand, prior_costs *out);

// The training memory of each of K ranks with the parameters sharded
// (`--dp shard`, docs/training.md) at precision PREC, and what each sends per
// step (computed, not allocated). s = ceil(params / K), the parameters a rank
// updates; n = params.
typedef struct {
    int ranks;                // K
    prior_precision prec;
    int64_t shard;            // s
    int64_t bytes_weights;    // the weights the passes read, whole on every rank: 4n in fp32; else
                              // 2 bytes for each of params16, 4 for the rest
    int64_t bytes_master;     // bf16/fp16: the fp32 master weights of the shard, 4s (fp32: 0, the
                              // weights are their own master)
    int64_t bytes_grads;      // the fp32 gradient, whole on every rank (padded to K s), plus the
                              // reduced shard when K > 1
    int64_t bytes_adam;       // Adam's two moments of the shard: 8s in fp32, 4s in 16 bits
    int64_t bytes_ema;        // the EMA of the shard, 4s
    int64_t bytes_acts_seq;   // activations of one sequence (batch 1) at PREC ...
    int64_t bytes_acts_seq_ckpt; // ... and with activation checkpointing
    int64_t bytes_sent;       // uncompressed, per step: a reduce-scatter of the gradient and an
                              // all-gather of the fp32 master, (K-1) s floats each in a ring: 8 (K-1) s
} prior_rank_costs;

// Fills *out for CFG on RANKS ranks (in [1, 2^20]) at PREC. DALLE_ERR (the
// message names the field) on a bad config or rank count.
int prior_rank_costs_compute(const prior_config *cfg, int ranks, prior_precision prec, prior_rank_costs *out);

// What each of K ranks sends per step when the gradient is all-reduced
// whole (`--dp allreduce`) in a ring (2 (K-1)/K of the bytes reduced), plain
// and with PowerSGD of rank r on the blocks' matrices (an n x m matrix sends
// P and Q, (n + m) min(r, n, m) floats, instead of n m; the rest goes as it
// is, in fp32). Q fixed: nothing else is sent.
typedef struct {
    int ranks, rank;          // K, r
    int64_t floats_plain;     // floats reduced uncompressed: the parameter count n
    int64_t floats_psgd;      // with PowerSGD: n - params16 + the P's and Q's
    int64_t floats_pq;        // the P's and Q's alone
    int64_t bytes_plain;      // sent per rank: fp32, uncompressed
    int64_t bytes_psgd;       // ... with PowerSGD, P and Q in fp32 (as `dalle train --powersgd` sends them)
    int64_t bytes_psgd16;     // ... with P and Q in a 16-bit format (the paper's 1-6-9), the rest fp32
} prior_psgd_costs;

// Fills *out for CFG on RANKS ranks (in [1, 2^20]) at PowerSGD rank r >= 1.
// DALLE_ERR (the message names the field) on a bad config, rank count or r.
int prior_psgd_costs_compute(const prior_config *cfg, int ranks, int r, prior_psgd_costs *out);

#ifdef __cplusplus
}
#endif
