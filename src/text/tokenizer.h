// tokenizer.h: the inside of bpe_tokenizer, shared by the encoder (bpe.c),
// the file formats (bpe_io.c) and the trainer (bpe_train.c).
// Sizes: V vocabulary, M merges. Token ids 0..255 are always the 256 single
// bytes in CLIP's bytes_to_unicode order; "clip" has their `</w>` forms next.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "dalle/bpe.h"
#include "text/unicode.h"

typedef enum { BPE_DALLE = 0, BPE_CLIP = 1 } bpe_kind_t;

enum {
    TOK_VALID = 1,   // the id has a token
    TOK_EOW = 2,     // ends a word (`</w>`, "clip" only)
    TOK_SPECIAL = 4, // a special token, matched whole in the text ("clip")
};

enum { BPE_MAX_SPECIAL = 8, BPE_MAX_V = 1 << 24 };

// One slot of the merge table, open addressing on the pair (a, b).
typedef struct {
    uint64_t key;  // (a << 32 | b) + 1; 0 = empty
    int32_t rank;  // merge priority, 0 first
    int32_t out;   // id of the merged token
} bpe_mslot;

// One slot of the piece cache: a piece's bytes and the ids BPE gave it.
typedef struct {
    uint64_t hash; // 0 = empty
    uint32_t boff, blen; // bytes in cache_bytes
    uint32_t ioff, ilen; // ids in cache_ids
} bpe_cslot;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bpe_bytes;

struct bpe_tokenizer {
    bpe_kind_t kind;
    uni_flavor flavor; // Unicode tables: UNI_CLIP for "clip", UNI_HF for "dalle"
    int V, max_v;       // ids in use; capacity of the per-id arrays
    uint32_t *tok_off;  // (V+1) token i is tok_bytes[tok_off[i] .. tok_off[i+1])
    uint8_t *tok_bytes; // the tokens' bytes (without `</w>`)
    size_t tok_bytes_cap;
    uint8_t *tok_flags; // (V) TOK_*
    int32_t byte_id[2][256]; // [eow][byte] the single-byte tokens
    int M;
    int32_t *merge_a, *merge_b, *merge_out; // (M) in rank order
    bpe_mslot *mtab;                        // (mmask + 1)
    uint64_t mmask;
    int n_special;
    int32_t special_id[BPE_MAX_SPECIAL];
    char *special_str[BPE_MAX_SPECIAL];
    uint8_t ascii_cls[128]; // uni_class of ASCII, for the fast path

    // Piece cache (see bpe.c), and work buffers reused across calls.
    bpe_cslot *cache;
    uint64_t cmask;
    size_t cache_used;
    bpe_bytes cache_bytes;
    int32_t *cache_ids;
    size_t cache_nids, cache_idcap;
    bpe_bytes norm, tmp;     // normalised text, scratch
    int32_t *ids;            // encode output
    size_t nids, idcap;
    int32_t *sym;            // BPE work (symbols, ranks, links)
    size_t symcap;
};

// CLIP's bytes_to_unicode(): byte b is shown in token strings as the code
// point bpe_byte_cp(b): itself when printable (33-126, 161-172, 174-255),
// else 256 + its rank among the others. Token ids 0..255 list the printable
// bytes first, then the others, as CLIP's vocabulary does.
static inline uint32_t bpe_byte_cp(int b) {
    if (b < 33) return 256 + (uint32_t)b;
    if (b < 127) return (uint32_t)b;
    if (b < 161) return 256 + 33 + (uint32_t)(b - 127);
    if (b == 173) return 256 + 67;
    return (uint32_t)b;
}
// The byte a byte-level code point stands for, or -1 if CP is not one.
static inline int bpe_cp_byte(uint32_t cp) {
    if (cp < 256) return (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 255 && cp != 173) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 127);
    return cp == 256 + 67 ? 173 : -1;
}
// The byte of base token id i (0..255).
static inline int bpe_byte_of_id(int i) {
    if (i < 94) return 33 + i;
    if (i < 106) return 161 + (i - 94);
    if (i < 188) return 174 + (i - 106);
    if (i < 221) return i - 188;
    if (i < 255) return 127 + (i - 221);
    return 173;
}

// An empty tokenizer with room for max_v ids; with_base adds the base
// vocabulary as ids 0.. (the 256 bytes, then their `</w>` forms for "clip").
// NULL on OOM.
bpe_tokenizer *bpe_new(bpe_kind_t kind, int max_v, int with_base);
// Loads a tokenizer file's content data[0..n) (see bpe_load); PATH names it
// in errors.
bpe_tokenizer *bpe_load_mem(const char *path, const uint8_t *data, size_t n);
// Appends token bytes[0..n) with flags as id V; returns the id or -1 (OOM).
int bpe_add_token(bpe_tokenizer *t, const uint8_t *bytes, size_t n, int flags);
// Appends merge (a, b) -> out with the next rank; -1 on OOM, or with the
// error set when the pair is already a merge.
int bpe_add_merge(bpe_tokenizer *t, int32_t a, int32_t b, int32_t out);
// Finishes construction: the merge table and the caches. DALLE_OK or DALLE_ERR.
int bpe_finish(bpe_tokenizer *t);

// Pieces up to this many bytes merge by scanning a rank array, longer ones
// through a heap (the same result; tests set it to compare the two).
extern int bpe_scan_max;

// Growable byte buffer: reserve room for n more bytes. DALLE_OK / DALLE_ERR.
int bpe_bytes_reserve(bpe_bytes *b, size_t more);

// Normalises text[0..n) into t->norm as T's kind does (see dalle/bpe.h).
int bpe_normalize(bpe_tokenizer *t, const uint8_t *text, size_t n);

// One piece of pre-tokenised text: bytes [off, off+len) of the normalised
// text, or the special token `special` (>= 0).
typedef struct {
    size_t off, len;
    int32_t special;
} bpe_piece;

// Finds the piece at or after *pos in s[0..n) (normalised text); advances *pos
// past it. Returns 0 when there is none left.
int bpe_next_piece(const bpe_tokenizer *t, const uint8_t *s, size_t n, size_t *pos, bpe_piece *pc);
