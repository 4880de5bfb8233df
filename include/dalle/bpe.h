// bpe.h: DALL-E's text tokenizer, byte-level BPE (public API).
// A caption is normalised, split into pieces by CLIP's pre-tokenisation
// pattern, and each piece's UTF-8 bytes are merged by BPE into ids. Any bytes
// at all encode (no unknown token). Two kinds of vocabulary load:
//   "dalle": trained here (bpe_train), saved and loaded as a Hugging Face
//            tokenizers `tokenizer.json`; normalisation is lower-casing and
//            collapsed white space, the single space before a piece is part of
//            it, so decode(encode(x)) is the normalised x exactly.
//   "clip":  CLIP's bpe_simple_vocab_16e6.txt(.gz): CLIP's own cleaning
//            (html.unescape twice, white space, Python's lower()) and its
//            `</w>` end-of-word tokens; ids equal CLIP's SimpleTokenizer's.
// A tokenizer is not thread-safe (it caches pieces): use one per thread.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bpe_tokenizer bpe_tokenizer;

// BPE dropout (Provilkov et al. 2020): at every merge step each applicable
// merge is dropped with probability p. The draws are a pure function of
// (seed, index), so caption `index` of epoch `seed` always splits the same way.
typedef struct {
    float p;        // drop probability (DALL-E: 0.1); 0 = plain BPE
    uint64_t seed;  // Philox key
    uint64_t index; // which caption (selects the Philox stream)
} bpe_dropout;

// Loads a tokenizer: a tokenizer.json (recognised by its content) or CLIP's
// merges file, gzipped or not. Every field is validated; NULL with an error
// naming the file and the field on anything malformed or unsupported.
bpe_tokenizer *bpe_load(const char *path);
// Writes T as a tokenizer.json that the `tokenizers` library loads and that
// gives the same ids, atomically. "clip" vocabularies are refused (their
// cleaning has no `tokenizers` equivalent).
int bpe_save(const bpe_tokenizer *t, const char *path);
// Frees T; NULL is a no-op.
void bpe_free(bpe_tokenizer *t);

// V: ids are in [0, V). Holes (ids no token has) are allowed in loaded files.
int bpe_vocab_size(const bpe_tokenizer *t);
// "dalle" or "clip".
const char *bpe_kind(const bpe_tokenizer *t);
// The number of merges (the vocabulary is the 256 bytes, plus their `</w>`
// forms for "clip", plus one token per merge, plus special tokens).
int bpe_merge_count(const bpe_tokenizer *t);
// The id of the special token NAME ("<|startoftext|>", "<|endoftext|>"), -1 if none.
int bpe_special_id(const bpe_tokenizer *t, const char *name);

// Encodes text[0..n) (any bytes) into ids[0..cap). Returns the number of ids
// the text has, which may exceed cap (then only the first cap were written,
// as snprintf does), or -1 on out-of-memory. DROP may be NULL (plain BPE).
int64_t bpe_encode(bpe_tokenizer *t, const char *text, size_t n, const bpe_dropout *drop,
                   int32_t *ids, int64_t cap);
// Decodes ids[0..n) into out[0..cap) (UTF-8, not NUL-terminated). Returns the
// byte count the text has (may exceed cap, as snprintf), or -1 with the error
// set for an id that is not in the vocabulary. "dalle": the exact normalised
// text; "clip": CLIP's decode, each `</w>` becomes a space.
int64_t bpe_decode(const bpe_tokenizer *t, const int32_t *ids, int64_t n, char *out, int64_t cap);

// DALL-E's text layout: exactly text_len ids for one caption (the paper: 256).
// Position i holds the caption's i-th token; positions after the caption hold
// the per-position padding id V + i, so the text embedding has V + text_len
// rows. Truncation: a caption longer than text_len tokens keeps its first
// text_len tokens. Returns the number of caption tokens kept, or -1 on OOM.
int bpe_layout(bpe_tokenizer *t, const char *caption, size_t n, const bpe_dropout *drop,
               int text_len, int32_t *ids);

typedef struct {
    int vocab_size; // target V, including the 256 byte tokens (DALL-E: 16384)
    int min_count;  // a pair seen fewer times than this is never merged (2)
} bpe_train_opts;

// Defaults: vocab_size 16384, min_count 2.
bpe_train_opts bpe_train_default_opts(void);
// Trains a "dalle" tokenizer on the lines of files paths[0..n_paths): each
// line is normalised and split as bpe_encode does, pieces are counted, and
// merges are learned greedily, the most frequent pair first. Ties go to the
// pair whose (left id, right id) is smallest, ids numbered in creation order,
// so a run is deterministic. Stops early, with a log line, when no pair is
// seen min_count times. NULL with the error set on I/O failure.
bpe_tokenizer *bpe_train(const char *const *paths, int n_paths, const bpe_train_opts *o);

#ifdef __cplusplus
}
#endif
