// dvae.h: stage 1 of DALL-E, the discrete VAE (public API).
// An image (3, S, S) with pixels in [0, 1] becomes a grid of G x G codes from a
// codebook of V entries (G = S >> n_pool; the paper: S 256, G 32, V 8192), and
// back. The architecture and parameter names are those of OpenAI's released
// `dall_e` Encoder and Decoder, so their weights, converted with
// tools/convert_openai_dvae.py, load unchanged.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_hid;           // hidden channels of the first encoder group (paper 256)
    int n_blk_per_group; // residual blocks in each of the 4 groups (2)
    int vocab_size;      // codebook size V (8192)
    int n_init;          // channels of the decoder's input 1x1 conv (128)
    int image_size;      // S (256)
    int n_pool;          // max-pools in the encoder = upsamplings in the decoder (3)
} dvae_config;

typedef struct dvae_model dvae_model;

// Fills *cfg with the preset NAME: "paper" (OpenAI's released model), "small"
// (trains on a laptop CPU: 64x64 images, 16x16 grid, V 512) or "tiny" (tests).
// DALLE_ERR for an unknown name.
int dvae_config_preset(const char *name, dvae_config *cfg);
// Checks a config (positive sizes, n_hid % 4 == 0, image_size divisible by
// 2^n_pool, n_pool <= 3). DALLE_ERR with a message naming the field.
int dvae_config_check(const dvae_config *cfg);
// The grid side G = image_size >> n_pool.
int dvae_grid(const dvae_config *cfg);
// The number of parameters of encoder and decoder together.
int64_t dvae_param_count(const dvae_config *cfg);

// A new model with the official initialisation: weights N(0, 1/sqrt(fan_in)),
// biases 0, drawn from Philox with SEED. NULL on a bad config or OOM.
dvae_model *dvae_new(const dvae_config *cfg, uint64_t seed);
// Loads a model file (safetensors with "encoder.*" and "decoder.*" tensors and
// the config in its metadata). With use_ema and "ema.*" tensors present (a
// training checkpoint), the EMA weights are loaded. Missing, extra or
// mis-shaped tensors, wrong dtypes and bad configs are errors naming the file
// and the tensor. NULL on error.
dvae_model *dvae_load(const char *path, int use_ema);
// Writes the parameters (only) as a model file, atomically.
int dvae_save(const dvae_model *m, const char *path);
// Frees the model; NULL is a no-op.
void dvae_free(dvae_model *m);
// The model's config (owned by the model).
const dvae_config *dvae_get_config(const dvae_model *m);

// Encodes B images x (B, 3, S, S), pixels in [0, 1], into codes (B, G*G),
// raster order, argmax of the encoder logits (no Gumbel noise, as the
// transformer sees them).
int dvae_encode(dvae_model *m, const float *x, int B, int32_t *codes);
// Decodes codes (B, G*G) into images x (B, 3, S, S) in [0, 1]:
// unmap_pixels(sigmoid(mu)), the paper's x^ (ln b is not used).
int dvae_decode(dvae_model *m, const int32_t *codes, int B, float *x);

#ifdef __cplusplus
}
#endif
