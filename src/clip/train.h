// train.h: training the contrastive reranker (clip.h) on the prior's shards
// (data/shard.h): each record's caption ids and image codes are a positive
// pair, the other pairs of its batch the negatives (CLIP's in-batch InfoNCE,
// so the batch should be large). AdamW (weight decay on matrices and
// embeddings only), linear warm-up then cosine decay, gradient clipping at a
// global norm, an EMA of the parameters, which is what the model file holds.
// Hard negatives (after NegCLIP, Yuksekgonul et al. 2023): with swap groups,
// each caption that holds a word of a group adds a copy of itself with that
// word replaced by another of its group, or two words of one group
// exchanged, as a caption no image of the batch goes with; it teaches the
// attributes that in-batch negatives rarely tell apart (a red square from a
// red circle). The copy must be a caption of the training data: a made-up
// one ("a red triangle" where the data holds no red triangle) would teach
// that unseen combinations are wrong, the opposite of what a reranker of
// new combinations needs. Word dropout (drop_p) deletes attribute words
// from captions, so that a caption without its colour ("a triangle in the
// top left") must be matched by shape alone.
// `dalle clip train` is a thin layer over clip_train.
#pragma once
#include <stdint.h>

#include "clip/clip.h"

typedef struct {
    const char **shards;   // training shards (all of the same sizes)
    int n_shards;
    const char *val;       // held-out shard, or NULL
    const char *out;       // the model file (the EMA weights), written every save_every steps and at the end
    clip_config cfg;       // the towers (n_layer, n_head, d_head, mlp_mult, embed); text_len, text_vocab,
                           // grid and image_vocab are taken from the shards
    int batch;             // pairs per step: each pair's negatives are the batch's other B-1
    int64_t steps;
    int64_t warmup;        // linear warm-up steps (capped at steps/2), then cosine to lr_end at `steps`
    uint64_t seed;         // initialisation and data order
    double lr, lr_end;
    double beta1, beta2, eps;
    double weight_decay;   // on the matrices and embeddings (clip_tensor's decay flag)
    double clip;           // the gradient's global norm is clipped at this; 0: off
    double ema_decay;      // EMA decay of step t: min(ema_decay, (1 + t) / (10 + t)), so short runs track
    int64_t log_every;     // mean train loss and accuracy every this many steps
    int64_t eval_every;    // held-out loss and accuracy (EMA weights) every this many steps and at the end
    int64_t save_every;    // 0: at the end only
    const int32_t *swap_ids; // (n_swap) text ids (BPE ids < text_vocab, distinct) of words that stand in for
    const int *swap_group;   // (n_swap) one another within a group (group numbers, at least 2 ids each):
    int n_swap;              // hard negatives; 0: none
    const int32_t *drop_ids; // (n_drop) text ids of words that word dropout deletes
    int n_drop;
    double drop_p;           // the probability that a caption loses one of its drop words (uniform), its later
                             // tokens moving up a position; 0: off
} clip_train_opts;

// The defaults: 4 layers of 4 heads of 32, MLP 4d, E 128; batch 64, lr 5e-4
// with 200 warm-up steps and cosine to 0, AdamW (0.9, 0.98, 1e-6) with decay
// 0.2, clipping at 1, EMA 0.999, `steps` steps.
void clip_train_defaults(clip_train_opts *o, int64_t steps);
// The step size at step t (0-based).
double clip_lr_at(const clip_train_opts *o, int64_t t);
// A set of captions (their L ids, by a 64-bit hash) for up to n captions;
// NULL on out-of-memory.
typedef struct clip_caption_set clip_caption_set;
clip_caption_set *clip_caption_set_new(int64_t n);
void clip_caption_set_free(clip_caption_set *s);
void clip_caption_set_add(clip_caption_set *s, const int32_t *text, int L);
int clip_caption_set_has(const clip_caption_set *s, const int32_t *text, int L);
// Caption text (L ids, checked)'s hard negative for draw (seed, step, k)
// into out (L ids), given group_of (an entry per text id: its swap group, -1
// none): one of the caption's edits, uniformly, among those whose result is
// in KNOWN (NULL: any). An edit replaces a word of a group by another of its
// group or exchanges two different words of one group. 0 when there is no
// such edit (out is then scratch), else 1.
int clip_hard_negative(const int32_t *text, int L, const int *group_of, const int32_t *swap_ids,
                       const int *swap_group, int n_swap, const clip_caption_set *known, uint64_t seed,
                       int64_t step, int k, int32_t *out);
// Word dropout: with probability p (draw (seed, step, k)) deletes one of
// the drop words (drop_ids, n_drop) of caption text (L ids, Vt the BPE
// vocabulary: ids >= Vt are padding) in place, uniformly; the later tokens
// move up a position and the padding ids follow their positions (Vt + i).
// 1 when a word was deleted, else 0.
int clip_drop_word(int32_t *text, int L, int Vt, const int32_t *drop_ids, int n_drop, double p, uint64_t seed,
                   int64_t step, int k);
// Trains a new model as o says and writes o->out. DALLE_ERR with a message
// on bad options (swap ids out of range, repeated, or alone in a group),
// bad shards (or shards of different sizes, held-out ones included), a loss
// that is not finite, or I/O failure.
int clip_train(const clip_train_opts *o);
