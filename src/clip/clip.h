// clip.h: the contrastive image-text model that reranks sampled images
// (DALL-E, SPEC §4: "reranking ... by a contrastive model"): CLIP's design
// at this project's scale. Two transformer towers map a caption and an
// image into one space of E dimensions; their cosine, times a learnt scale,
// is the score. The image tower reads the dVAE's codes (the prior's image
// tokens), not pixels, so that candidates are scored before they are
// decoded and the model trains on the prior's own shards.
// Sizes: B batch, L text positions and Vt + L text ids (as the prior's and
// the shards': Vt BPE ids and L per-position padding ids), N = G*G image
// codes from a codebook of Vi,
// d model width (NH heads of HS), E joint embedding.
//   text tower:  token + position embedding, n_layer pre-LN blocks with a
//                causal mask, final LayerNorm, the feature at position L-1,
//                times text.projection (d, E), L2-normalised
//   image tower: code + position embedding, n_layer pre-LN blocks, full
//                attention, final LayerNorm, mean over the N positions, times
//                image.projection (d, E), L2-normalised
//   loss:        logits (B, B) = exp(logit_scale) * T I^T (clamped at 100);
//                the mean of the cross-entropies over rows and over columns;
//                training may add extra captions as negatives (clip_step)
#pragma once
#include <stdint.h>

typedef struct {
    int n_layer;     // blocks per tower
    int n_head;      // NH
    int d_head;      // HS: d = NH * HS
    int mlp_mult;    // MLP width f = mlp_mult * d
    int embed;       // E
    int text_len;    // L
    int text_vocab;  // Vt (the BPE vocabulary: ids are < Vt + L)
    int grid;        // G
    int image_vocab; // Vi
} clip_config;

typedef struct clip_model clip_model;

// A model with fresh parameters drawn from seed (CLIP's initialisation);
// NULL with the error set on a bad config or out of memory.
clip_model *clip_new(const clip_config *c, uint64_t seed);
// Loads PATH (a safetensors file that `dalle clip train` wrote: the model or
// a checkpoint, whose EMA weights it takes); NULL with an error naming the
// file and the tensor or field.
clip_model *clip_load(const char *path);
// Frees the model; NULL is a no-op.
void clip_free(clip_model *m);
// The model's config.
const clip_config *clip_get_config(const clip_model *m);
// out (B, E) host memory: the unit embeddings of B captions, text (B, L) ids
// in [0, Vt + L). DALLE_ERR with the error set on an id out of range.
int clip_embed_text(clip_model *m, const int32_t *text, int B, float *out);
// out (B, E) host memory: the unit embeddings of B images given as codes
// (B, N) in [0, Vi). DALLE_ERR with the error set on a code out of range.
int clip_embed_image(clip_model *m, const int32_t *codes, int B, float *out);
// exp(logit_scale), clamped at 100: the factor of the cosines in the loss.
float clip_scale(const clip_model *m);

// ---- training (src/clip/train.c and `dalle clip train` use these)

// The flat parameter vector (backend memory, clip_param_count floats) in the
// canonical order of the tensors; names follow CLIP's state dict
// ("text.token_embedding", "text.blocks.0.attn.qkv.weight", ...,
// "image.projection", "logit_scale").
float *clip_params(clip_model *m);
int64_t clip_param_count(const clip_model *m);
// Tensor i of clip_n_tensors: its name, offset and size in floats, and
// whether AdamW's weight decay applies (matrices and embeddings: 1; gains,
// biases, logit_scale: 0).
int clip_n_tensors(const clip_model *m);
void clip_tensor(const clip_model *m, int i, const char **name, int64_t *offset, int64_t *numel, int *decay);
// Writes the model with parameters PARAMS (clip_param_count floats, backend
// or host memory: the model's own, or an EMA of them) to PATH (temp file,
// then rename), its config in the metadata (dalle.kind "clip").
int clip_save(const clip_model *m, const float *params, const char *path);

// The activations of a batch of up to B pairs and up to NT >= B captions
// (the B paired ones, then extra negatives) (backend memory).
typedef struct clip_acts clip_acts;
clip_acts *clip_acts_new(const clip_model *m, int B, int NT);
void clip_acts_free(clip_acts *a);
// One batch of B pairs (caption i goes with image i, i < B): text (NT, L),
// NT >= B, whose captions B..NT-1 are extra negatives (hard negatives:
// NegCLIP), codes (B, N). Both towers, the loss (returned): the mean of the
// B row cross-entropies (each paired caption over the B images) and the B
// column ones (each image over the NT captions); with grad (clip_param_count
// floats, backend memory) not NULL the backward pass, added (+=) into grad.
// acc (may be NULL): the share of those 2B rows and columns whose argmax is
// the pair. NAN with the error set on an id or code out of range, or B or NT
// beyond a's.
double clip_step(clip_model *m, clip_acts *a, const int32_t *text, int NT, const int32_t *codes, int B, float *grad,
                 double *acc);
