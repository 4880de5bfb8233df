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

#ifdef __cplusplus
}
#endif
