// model.h: the dVAE's insides, shared by model.c (the networks) and train.c
// (the training loop). The relaxation and the likelihood (Gumbel-softmax, KL,
// logit-Laplace) are backend ops (backend/ops.h).
//
// Each network (encoder, decoder) is compiled from the config into a list of
// ops over numbered activation "slots" (dvae_net). A dvae_exec binds a net to
// memory for a batch size: for training every slot gets its own memory (the
// backward pass needs them all) plus a gradient; for inference slots share a
// few buffers by liveness, so the paper model at 256x256 needs ~3 feature maps.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "backend/ops.h"
#include "core/safetensors.h"
#include "dalle/dvae.h"

#define DVAE_MAX_TENSORS 1024
#define DVAE_NAME_LEN 80

// One parameter tensor of the size table (the single source of truth for the
// parameter layout, the checkpoint and the parameter count).
typedef struct {
    char name[DVAE_NAME_LEN]; // official key with "encoder."/"decoder." prefix
    int ndim;                 // 4 for w, 1 for b
    int64_t shape[4];
    int64_t offset;           // into the parameter block, in floats
    int64_t numel;
    int is_weight;            // 1 for conv weights (decayed), 0 for biases
    int fan_in;               // n_in * kw * kw of its conv
} dvae_tensor;

typedef enum { OP_CONV, OP_ONEHOT, OP_RELU, OP_COPY, OP_POOL, OP_UPSAMPLE } dvae_op_kind;

typedef struct {
    dvae_op_kind kind;
    int in, out;         // slots
    int wi, bi;          // tensor indices of weight and bias (conv, onehot)
    int64_t w_off, b_off; // their offsets in the parameter block
    int k, ci, co, h, w; // kernel, channels in/out, spatial size of the input
    float alpha, beta;   // conv: out = alpha*(conv + b) + beta*out; beta is 0 or 1
} dvae_op;

typedef struct {
    int c, h, w; // per-image shape of a slot
} dvae_slot;

typedef struct {
    dvae_op *ops;     // (n_ops,)
    int n_ops;
    dvae_slot *slots; // (n_slots,)
    int n_slots;
    int in_slot, out_slot;
    // 16-bit convolutions in training bindings (dvae train --precision bf16):
    // set by the trainer before it binds the net; inference stays fp32
    int half;
    half_fmt fmt;
} dvae_net;

// A net bound to memory for B images. Every buffer is backend memory
// (backend.h); so must be the input slot's pointer the caller sets, and codes.
typedef struct {
    const dvae_net *net;
    int B, train;
    float **act;       // (n_slots,) slot pointers; act[in_slot] is the caller's
    float **grad;      // (n_slots,) training only; grad[in_slot] only if need_din
    float *arena;      // activations (and gradients) in one block
    float *scratch;    // the convolutions' scratch (conv2d_scratch_floats of the selected backend)
    int64_t arena_floats, scratch_floats;
    const int32_t *codes; // input of an OP_ONEHOT net: (B, G*G)
    // a training binding of a 16-bit net (net->half): the 16-bit codes of the
    // parameter block (n_params, made from the fp32 master by the caller
    // before each forward), the convolutions' weights; scratch is then sized
    // for conv2d16_* (conv2d16_scratch_floats)
    const uint16_t *w16;
    // inference through dvae_encode_logits / dvae_decode_stats: the input,
    // copied from the caller's host memory (one of the two)
    float *in_buf;        // (B, c, h, w) of the input slot
    int32_t *codes_buf;   // (B, G*G)
} dvae_exec;

struct dvae_model {
    dvae_config cfg;
    dvae_tensor tensors[DVAE_MAX_TENSORS]; // encoder tensors, then decoder
    int n_tensors, n_enc_tensors;
    float *params;    // (n_params,) one block for all tensors, backend memory
    int64_t n_params;
    dvae_net enc;     // image (3,S,S) -> logits (V,G,G)
    dvae_net dec;     // soft codes (V,G,G) -> stats (6,S,S), dense input conv
    dvae_net dec_ids; // codes (G*G,) -> stats, input conv as an embedding lookup
    // inference bindings of enc and dec_ids, kept for the last batch size so
    // that encoding or decoding image after image allocates once (a model is
    // used by one thread at a time)
    dvae_exec enc_run, dec_run;
};


// Builds the parameter size table and the three nets of m from m->cfg.
int dvae_build(dvae_model *m);
// Index of the tensor called NAME, or -1.
int dvae_find_tensor(const dvae_model *m, const char *name);

// Binds `net` for B images. train = 1 keeps every activation and allocates
// gradients (need_din: also the input slot's gradient). The input slot's
// pointer is left NULL for the caller to set (or codes, for dec_ids).
int dvae_exec_init(dvae_exec *e, const dvae_net *net, int B, int train, int need_din);
// The floats of the arena of a training binding of `net` for B images (every
// slot and its gradient), and in *scratch those of its convolutions' scratch
// on the selected backend: what dvae_exec_init(e, net, B, 1, need_din) allocates
// (with net->half, the scratch of the 16-bit convolutions).
int64_t dvae_exec_train_floats(const dvae_net *net, int B, int need_din, int64_t *scratch);
void dvae_exec_free(dvae_exec *e);
// Runs the net forward; returns the output slot (B, c, h, w).
float *dvae_forward(dvae_exec *e, const float *params);
// Backward from e->grad[out_slot] (set by the caller), accumulating parameter
// gradients into dparams (same layout as params) and, if allocated, the
// input's gradient into e->grad[in_slot]. Zeroes the other slot gradients (each just before its first use).
void dvae_backward(dvae_exec *e, const float *params, float *dparams);

// Encoder logits (B, V, G, G) of already-mapped pixels x (B, 3, S, S).
// x and logits are host memory (copied in and out).
int dvae_encode_logits(dvae_model *m, const float *x_mapped, int B, float *logits);
// Decoder output statistics (B, 6, S, S) for codes (B, G*G); host memory.
int dvae_decode_stats(dvae_model *m, const int32_t *codes, int B, float *stats);

// ---- model files (model.c). A model file holds "encoder.*" and "decoder.*";
// a training checkpoint adds "ema.*", "adam.m.*" and "adam.v.*" of the same
// tensors, and its state in the metadata.
int dvae_config_to_json(const dvae_config *cfg, char *buf, size_t n);
// Reads and checks the config from a file's metadata ("dvae.config").
int dvae_config_from_file(const st_file *f, dvae_config *cfg);
// Writes "dalle.kind", "dalle.version" and "dvae.config" metadata.
int dvae_write_meta(const dvae_config *cfg, st_writer *w);
// Errors (naming the tensor) if f holds a tensor that is not PREFIX + one of
// m's parameter names for one of the prefixes.
int dvae_check_names(const dvae_model *m, const st_file *f, const char *const *prefixes, int n_prefixes);
// Reads every parameter tensor under PREFIX into dst (n_params floats),
// checking shapes. Errors name file and tensor.
int dvae_read_tensors(const dvae_model *m, const st_file *f, const char *prefix, float *dst);
// Adds every parameter tensor under PREFIX, from src, to the writer, stored as dtype.
int dvae_add_tensors(const dvae_model *m, st_writer *w, const char *prefix, const float *src, st_dtype dtype);
// Writes the parameters as a model file stored as dtype (F32, F16, BF16), atomically.
int dvae_save_as(const dvae_model *m, const char *path, st_dtype dtype);

// map_pixels: x in [0,1] -> (1 - 2 eps) x + eps, eps = 0.1, in place.
void dvae_map_pixels(float *x, int64_t n);
// unmap_pixels: clamp((x - eps) / (1 - 2 eps), 0, 1), in place.
void dvae_unmap_pixels(float *x, int64_t n);
#define DVAE_LOGIT_LAPLACE_EPS 0.1f
