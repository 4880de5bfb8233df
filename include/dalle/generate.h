// generate.h: text to image, the whole of DALL-E behind four calls (public API).
// A model is a directory:
//   config.json        {"format": "dalle.c model", "version": 1, "name": ..., "text_len": L}
//   tokenizer.json     the BPE tokenizer (dalle bpe train)
//   dvae.safetensors   stage 1 (dalle dvae train / export)
//   prior.safetensors  stage 2 (dalle train; a checkpoint works too: its EMA weights)
//   clip.safetensors   optional: the contrastive reranker (dalle clip train), for p.candidates
//
// Example:
//   dalle_model *m = dalle_model_load("models/default");
//   if (!m) { fprintf(stderr, "%s\n", dalle_last_error()); return 1; }
//   int S = dalle_model_image_size(m);
//   dalle_gen_params p = dalle_gen_default_params();
//   p.n = 4;
//   uint8_t *pixels = malloc((size_t)p.n * S * S * 3);       // n images, S x S RGB
//   if (dalle_generate(m, "a small red circle in the top left", &p, pixels)) ...
//   free(pixels);
//   dalle_model_free(m);
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dalle_model dalle_model;

typedef struct {
    int n;             // images to generate (candidates sharing the caption's cached prefix)
    int candidates;    // > n: draw this many, keep the n that the reranker scores best (needs
                       // clip.safetensors); 0 or <= n: no reranking
    uint64_t seed;     // candidate c draws from Philox (seed, c, position): reproducible
    float temperature; // 1
    int top_k;         // 0: off
    float top_p;       // 1: off
    float guidance;    // classifier-free guidance scale (not in the DALL-E paper): 1 off; s > 1
                       // draws from u + s (l - u), u the logits under the empty caption
    int progress;      // show a progress line on stderr
    void (*on_progress)(void *user, int done, int total); // if not NULL: called as image tokens are drawn
    void *user;
} dalle_gen_params;

// n 1, no reranking, seed 0, temperature 1, top_k 0, top_p 1, guidance 1, no progress line.
dalle_gen_params dalle_gen_default_params(void);
// Loads a model directory and checks that its parts fit together (the
// prior's text vocabulary is the tokenizer's, its grid and image vocabulary
// the dVAE's, and the reranker's, when there is one, has the prior's text
// positions, text vocabulary, grid and image vocabulary). NULL with an error
// naming the file and the mismatch.
dalle_model *dalle_model_load(const char *dir);
// 1 when the directory has a reranker (clip.safetensors): p.candidates > p.n
// works; else 0.
int dalle_model_can_rerank(const dalle_model *m);
// The side S of the generated images.
int dalle_model_image_size(const dalle_model *m);
// The guidance scale the model recommends (config.json's "sampling":
// {"guidance": S}), or 1 (off) when it names none. dalle_gen_default_params
// does not apply it: callers that want it set p.guidance to it.
float dalle_model_guidance(const dalle_model *m);
// Generates p->n images for CAPTION (UTF-8, any length: captions longer than
// the model's text positions are cut, with a note on stderr) into pixels
// (p->n * S * S * 3 bytes, row-major RGB, image after image). With
// p->candidates > p->n, samples that many and keeps the p->n whose codes have
// the highest cosine with the caption under the reranker, best first (ties:
// the earlier candidate); only those are decoded. DALLE_ERR on a bad count (n in
// [1, 4096], candidates at most 4096), candidates > n without a reranker, or
// out-of-memory.
int dalle_generate(dalle_model *m, const char *caption, const dalle_gen_params *p, uint8_t *pixels);
// Frees the model; NULL is a no-op. A model is used by one thread at a time.
void dalle_model_free(dalle_model *m);

#ifdef __cplusplus
}
#endif
