// bpe.c: text -> ids and back. The pipeline of one call to bpe_encode:
//   normalise (bpe_normalize) -> split into pieces (bpe_next_piece) ->
//   each piece's bytes -> BPE merges (cached per distinct piece) -> ids.
// Merging follows the reference tokenizers: repeatedly apply the applicable
// merge of lowest rank, leftmost first. Short pieces use a rank array
// (quadratic but tiny), long ones a heap over a linked list (n log n), so a
// 100 MB piece is merely slow, never quadratic. Both give the same result.
#include <limits.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "text/tokenizer.h"

enum { CACHE_MAX_PIECE = 255, CACHE_MAX_SLOTS = 1 << 20 };

int bpe_scan_max = 96;

int bpe_bytes_reserve(bpe_bytes *b, size_t more) {
    if (b->n + more <= b->cap) return DALLE_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    uint8_t *p = dalle_realloc(b->p, cap);
    if (!p) return DALLE_ERR;
    b->p = p;
    b->cap = cap;
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// Construction

bpe_tokenizer *bpe_new(bpe_kind_t kind, int max_v, int with_base) {
    bpe_tokenizer *t = dalle_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->flavor = kind == BPE_CLIP ? UNI_CLIP : UNI_HF;
    if (max_v < 512) max_v = 512;
    t->tok_off = dalle_malloc(sizeof(uint32_t) * ((size_t)max_v + 1));
    t->tok_flags = dalle_calloc((size_t)max_v, 1);
    t->merge_a = dalle_malloc(sizeof(int32_t) * (size_t)max_v);
    t->merge_b = dalle_malloc(sizeof(int32_t) * (size_t)max_v);
    t->merge_out = dalle_malloc(sizeof(int32_t) * (size_t)max_v);
    if (!t->tok_off || !t->tok_flags || !t->merge_a || !t->merge_b || !t->merge_out) goto fail;
    t->tok_off[0] = 0;
    t->max_v = max_v;
    memset(t->byte_id, -1, sizeof t->byte_id);
    for (int eow = 0; with_base && eow <= (kind == BPE_CLIP); eow++)
        for (int i = 0; i < 256; i++) {
            uint8_t b = (uint8_t)bpe_byte_of_id(i);
            int id = bpe_add_token(t, &b, 1, TOK_VALID | (eow ? TOK_EOW : 0));
            if (id < 0) goto fail;
            t->byte_id[eow][b] = id;
        }
    for (int c = 0; c < 128; c++) t->ascii_cls[c] = (uint8_t)uni_class(t->flavor, (uint32_t)c);
    return t;
fail:
    bpe_free(t);
    return NULL;
}

int bpe_add_token(bpe_tokenizer *t, const uint8_t *bytes, size_t n, int flags) {
    if (t->V >= t->max_v) {
        dalle_seterr("too many tokens (more than %d)", t->max_v);
        return -1;
    }
    size_t off = t->tok_off[t->V];
    if (n > UINT32_MAX - off) {
        dalle_seterr("tokens too long");
        return -1;
    }
    bpe_bytes b = {t->tok_bytes, off, t->tok_bytes_cap};
    if (bpe_bytes_reserve(&b, n) != DALLE_OK) return -1;
    t->tok_bytes = b.p;
    t->tok_bytes_cap = b.cap;
    if (n) memcpy(t->tok_bytes + off, bytes, n);
    t->tok_flags[t->V] = (uint8_t)flags;
    t->tok_off[t->V + 1] = (uint32_t)(off + n);
    return t->V++;
}

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
}
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

// The merge of pair (a, b), or NULL if there is none.
static inline const bpe_mslot *merge_find(const bpe_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    for (uint64_t i = mix64(key) & t->mmask;; i = (i + 1) & t->mmask) {
        const bpe_mslot *s = &t->mtab[i];
        if (s->key == key) return s;
        if (s->key == 0) return NULL;
    }
}

int bpe_add_merge(bpe_tokenizer *t, int32_t a, int32_t b, int32_t out) {
    if (t->M >= t->max_v) {
        dalle_seterr("too many merges (more than %d)", t->max_v);
        return -1;
    }
    t->merge_a[t->M] = a;
    t->merge_b[t->M] = b;
    t->merge_out[t->M] = out;
    return t->M++;
}

int bpe_finish(bpe_tokenizer *t) {
    uint64_t cap = 1024;
    while (cap < 2 * (uint64_t)t->M) cap *= 2;
    t->mtab = dalle_calloc(cap, sizeof *t->mtab);
    if (!t->mtab) return DALLE_ERR;
    t->mmask = cap - 1;
    for (int r = 0; r < t->M; r++) {
        int32_t a = t->merge_a[r], b = t->merge_b[r];
        uint64_t key = pair_key(a, b), i = mix64(key) & t->mmask;
        while (t->mtab[i].key && t->mtab[i].key != key) i = (i + 1) & t->mmask;
        if (t->mtab[i].key == key)
            return dalle_seterr("merge %d repeats merge %d (the same pair of tokens)", r,
                                t->mtab[i].rank);
        t->mtab[i] = (bpe_mslot){key, r, t->merge_out[r]};
    }
    t->cmask = (1u << 14) - 1;
    t->cache = dalle_calloc(t->cmask + 1, sizeof *t->cache);
    return t->cache ? DALLE_OK : DALLE_ERR;
}

void bpe_free(bpe_tokenizer *t) {
    if (!t) return;
    dalle_free(t->tok_off);
    dalle_free(t->tok_bytes);
    dalle_free(t->tok_flags);
    dalle_free(t->merge_a);
    dalle_free(t->merge_b);
    dalle_free(t->merge_out);
    dalle_free(t->mtab);
    for (int i = 0; i < t->n_special; i++) dalle_free(t->special_str[i]);
    dalle_free(t->cache);
    dalle_free(t->cache_bytes.p);
    dalle_free(t->cache_ids);
    dalle_free(t->norm.p);
    dalle_free(t->tmp.p);
    dalle_free(t->ids);
    dalle_free(t->sym);
    dalle_free(t);
}

int bpe_vocab_size(const bpe_tokenizer *t) { return t->V; }
const char *bpe_kind(const bpe_tokenizer *t) { return t->kind == BPE_CLIP ? "clip" : "dalle"; }
int bpe_merge_count(const bpe_tokenizer *t) { return t->M; }

int bpe_special_id(const bpe_tokenizer *t, const char *name) {
    for (int i = 0; i < t->n_special; i++)
        if (!strcmp(t->special_str[i], name)) return t->special_id[i];
    return -1;
}

// ---------------------------------------------------------------------------
// Normalisation

// The start of the code point that ends at s[i) (i > 0), as forward decoding
// from the start would have split it: the longest k <= 4 whose k bytes decode
// as exactly one k-byte sequence, else one byte.
static size_t prev_cp(const uint8_t *s, size_t i, uint32_t *cp) {
    for (size_t k = i < 4 ? i : 4; k > 1; k--)
        if (uni_decode(s + i - k, k, cp) == k) return i - k;
    uni_decode(s + i - 1, 1, cp);
    return i - 1;
}

static inline size_t decode_at(const uint8_t *s, size_t n, size_t i, uint32_t *cp) {
    if (s[i] < 0x80) {
        *cp = s[i];
        return 1;
    }
    return uni_decode(s + i, n - i, cp);
}

static inline unsigned cls_of(const bpe_tokenizer *t, uint32_t cp) {
    return cp < 128 ? t->ascii_cls[cp] : uni_class(t->flavor, cp);
}

// Python's final-sigma rule for U+03A3 at s[i, i+2) of the joined text s[0..n).
static int final_sigma(const uint8_t *s, size_t n, size_t i) {
    uint32_t c = 0;
    size_t j = i;
    int found = 0;
    while (j > 0) {
        j = prev_cp(s, j, &c);
        if (!uni_case_ignorable(c)) {
            found = 1;
            break;
        }
    }
    if (!found || !uni_cased(c)) return 0;
    for (j = i + 2; j < n;) {
        j += decode_at(s, n, j, &c);
        if (!uni_case_ignorable(c)) return !uni_cased(c);
    }
    return 1;
}

static inline void put_cp(bpe_bytes *o, uint32_t cp) {
    if (cp < 0x80)
        o->p[o->n++] = (uint8_t)cp;
    else
        o->n += uni_encode(cp, o->p + o->n);
}

static void swap_bytes(bpe_bytes *a, bpe_bytes *b) {
    bpe_bytes t = *a;
    *a = *b;
    *b = t;
}

// CLIP: html.unescape twice, strip, " ".join(split()), lower().
static int normalize_clip(bpe_tokenizer *t, const uint8_t *s, size_t n) {
    t->norm.n = t->tmp.n = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (!memchr(s, '&', n)) break;
        bpe_bytes *o = pass == 0 ? &t->tmp : &t->norm;
        o->n = 0;
        if (bpe_bytes_reserve(o, 2 * n + 8) != DALLE_OK) return DALLE_ERR;
        o->n = uni_html_unescape(s, n, o->p);
        s = o->p;
        n = o->n;
        if (pass == 1) swap_bytes(&t->tmp, &t->norm); // s now lives in tmp
    }
    // Join: white space runs -> one space, ends stripped. Into norm; the lower
    // case pass then goes norm -> tmp and the buffers swap.
    bpe_bytes *j = (s == t->norm.p) ? &t->tmp : &t->norm;
    j->n = 0;
    if (bpe_bytes_reserve(j, n) != DALLE_OK) return DALLE_ERR;
    int pending = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = decode_at(s, n, i, &cp);
        if (cls_of(t, cp) & UNI_WS) {
            pending = j->n > 0;
        } else {
            if (pending) j->p[j->n++] = ' ';
            pending = 0;
            memcpy(j->p + j->n, s + i, k);
            j->n += k;
        }
        i += k;
    }
    bpe_bytes *o = (j == &t->norm) ? &t->tmp : &t->norm;
    o->n = 0;
    if (bpe_bytes_reserve(o, 3 * j->n + 4) != DALLE_OK) return DALLE_ERR;
    const uint8_t *q = j->p;
    size_t m = j->n;
    for (size_t i = 0; i < m;) {
        uint8_t c = q[i];
        if (c < 0x80) {
            o->p[o->n++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            i++;
            continue;
        }
        uint32_t cp, low[3];
        size_t k = uni_decode(q + i, m - i, &cp);
        if (cp == 0x3A3) {
            put_cp(o, final_sigma(q, m, i) ? 0x3C2 : 0x3C3);
        } else {
            int nl = uni_lower(UNI_CLIP, cp, low);
            for (int e = 0; e < nl; e++) put_cp(o, low[e]);
        }
        i += k;
    }
    if (o != &t->norm) swap_bytes(&t->tmp, &t->norm);
    return DALLE_OK;
}

// "dalle" (as tokenizers' Replace(\s+ -> " "), Strip, Lowercase): runs of
// white space become one space, the ends are stripped, letters lower-cased.
static int normalize_dalle(bpe_tokenizer *t, const uint8_t *s, size_t n) {
    size_t a = 0, b = n;
    uint32_t cp;
    while (a < b) {
        size_t k = decode_at(s, n, a, &cp);
        if (!(cls_of(t, cp) & (UNI_S | UNI_WS))) break;
        a += k;
    }
    while (b > a) {
        size_t p = prev_cp(s, b, &cp);
        if (!(cls_of(t, cp) & (UNI_S | UNI_WS))) break;
        b = p;
    }
    bpe_bytes *o = &t->norm;
    o->n = 0;
    if (bpe_bytes_reserve(o, 3 * (b - a) + 4) != DALLE_OK) return DALLE_ERR;
    int in_space = 0;
    for (size_t i = a; i < b;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (t->ascii_cls[c] & UNI_S) {
                if (!in_space) o->p[o->n++] = ' ';
                in_space = 1;
            } else {
                o->p[o->n++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                in_space = 0;
            }
            i++;
            continue;
        }
        size_t k = uni_decode(s + i, b - i, &cp);
        i += k;
        if (uni_class(UNI_HF, cp) & UNI_S) {
            if (!in_space) o->p[o->n++] = ' ';
            in_space = 1;
            continue;
        }
        in_space = 0;
        uint32_t low[3];
        int nl = uni_lower(UNI_HF, cp, low);
        for (int e = 0; e < nl; e++) put_cp(o, low[e]);
    }
    return DALLE_OK;
}

int bpe_normalize(bpe_tokenizer *t, const uint8_t *text, size_t n) {
    return t->kind == BPE_CLIP ? normalize_clip(t, text, n) : normalize_dalle(t, text, n);
}

// ---------------------------------------------------------------------------
// Pre-tokenisation: CLIP's pattern
//   'S|'T|'RE|'VE|'M|'LL|'D|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (case-insensitive for "clip", so U+017F long s matches s), preceded by the
// special tokens for "clip". Text the pattern does not match (white space) is
// dropped by "clip"; "dalle" keeps the single space before a piece in it.

// Does the contraction lit (lower-case ASCII) follow at s[i]? Its length or 0.
static size_t match_lit(const bpe_tokenizer *t, const uint8_t *s, size_t n, size_t i,
                        const char *lit) {
    size_t j = i;
    for (const char *c = lit; *c; c++) {
        if (j >= n) return 0;
        uint32_t cp;
        size_t k = decode_at(s, n, j, &cp);
        if (cp != (uint32_t)*c && !(t->kind == BPE_CLIP && uni_ifold(cp, *c))) return 0;
        j += k;
    }
    return j - i;
}

// Is a special token at s[i]? Its index (and *len) or -1. "clip" only.
static int match_special(const bpe_tokenizer *t, const uint8_t *s, size_t n, size_t i,
                         size_t *len) {
    for (int k = 0; k < t->n_special; k++) {
        const char *sp = t->special_str[k];
        size_t j = i;
        const char *c = sp;
        for (; *c; c++) {
            if (j >= n) break;
            uint32_t cp;
            size_t m = decode_at(s, n, j, &cp);
            uint32_t want = (uint8_t)*c;
            if (cp != want && !(strchr("strevmld", *c) && uni_ifold(cp, *c))) break;
            j += m;
        }
        if (!*c) {
            *len = j - i;
            return k;
        }
    }
    return -1;
}

int bpe_next_piece(const bpe_tokenizer *t, const uint8_t *s, size_t n, size_t *pos, bpe_piece *pc) {
    static const char *contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = *pos;
    uint32_t cp;
    while (i < n) {
        size_t k = decode_at(s, n, i, &cp);
        unsigned c = cls_of(t, cp);
        if (c & UNI_S) { // (for "clip" also U+0345, which the pattern never matches)
            i += k;
            continue;
        }
        size_t start = i, end = i;
        pc->special = -1;
        if (t->n_special && s[i] == '<') {
            size_t len;
            int sp = match_special(t, s, n, i, &len);
            if (sp >= 0) {
                pc->special = t->special_id[sp];
                end = i + len;
                goto emit;
            }
        }
        if (cp == '\'') {
            for (int q = 0; q < 7; q++) {
                size_t len = match_lit(t, s, n, i, contractions[q]);
                if (len) {
                    end = i + len;
                    goto emit;
                }
            }
        }
        if (c & UNI_L) {
            end = i + k;
            while (end < n) {
                size_t m = decode_at(s, n, end, &cp);
                if (!(cls_of(t, cp) & UNI_L)) break;
                end += m;
            }
        } else if (c & UNI_N) {
            end = i + k;
        } else {
            end = i + k;
            while (end < n) {
                size_t m = decode_at(s, n, end, &cp);
                unsigned d = cls_of(t, cp);
                if (d & (UNI_S | UNI_L | UNI_N)) break;
                end += m;
            }
        }
    emit:
        if (t->kind == BPE_DALLE && start > 0 && s[start - 1] == ' ') start--;
        pc->off = start;
        pc->len = end - start;
        *pos = end;
        return 1;
    }
    *pos = n;
    return 0;
}

// ---------------------------------------------------------------------------
// BPE of one piece

typedef struct {
    uint64_t key, hi, ctr;
    uint32_t w[4];
    int k;
    float p;
} drop_rng;

static inline int dropped(drop_rng *r) {
    if (r->k == 4) {
        philox4x32(r->key, r->hi, r->ctr++, r->w);
        r->k = 0;
    }
    return (float)((r->w[r->k++] >> 8) * (1.0 / 16777216.0)) < r->p;
}

static int ensure_sym(bpe_tokenizer *t, size_t n) {
    if (n <= t->symcap) return DALLE_OK;
    size_t cap = t->symcap ? t->symcap : 1024;
    while (cap < n) cap *= 2;
    int32_t *p = dalle_realloc(t->sym, cap * sizeof(int32_t));
    if (!p) return DALLE_ERR;
    t->sym = p;
    t->symcap = cap;
    return DALLE_OK;
}

static inline int32_t rank_of(const bpe_tokenizer *t, int32_t a, int32_t b) {
    const bpe_mslot *m = merge_find(t, a, b);
    return m ? m->rank : INT32_MAX;
}

// Short pieces: a rank per adjacent pair; merge the lowest, leftmost.
// sym[0..n) -> returns the new n. Uses t->sym[n..2n) for the ranks.
static int merge_scan(const bpe_tokenizer *t, int32_t *sym, int n) {
    int32_t *r = sym + n;
    for (int i = 0; i + 1 < n; i++) r[i] = rank_of(t, sym[i], sym[i + 1]);
    while (n > 1) {
        int best = 0;
        for (int i = 1; i + 1 < n; i++)
            if (r[i] < r[best]) best = i;
        if (r[best] == INT32_MAX) break;
        sym[best] = t->merge_out[r[best]];
        memmove(sym + best + 1, sym + best + 2, sizeof(int32_t) * (size_t)(n - best - 2));
        memmove(r + best, r + best + 1, sizeof(int32_t) * (size_t)(n - best - 2));
        n--;
        if (best > 0) r[best - 1] = rank_of(t, sym[best - 1], sym[best]);
        if (best + 1 < n) r[best] = rank_of(t, sym[best], sym[best + 1]);
    }
    return n;
}

// Binary min-heap of (rank << 32 | position): lowest rank, then leftmost.
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}
static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

// Long pieces, and all pieces under dropout: a heap over a linked list. With
// dropout, a popped merge is dropped with probability p and set aside until
// the next merge is applied (the paper's fresh draw per merge step); when
// every applicable merge of a step is dropped, the piece is done.
static int merge_heap(bpe_tokenizer *t, int32_t *sym, int n, drop_rng *dr) {
    // Each merge pushes at most two entries: the heap never holds more than 3n.
    uint64_t *h = dalle_malloc(sizeof(uint64_t) * ((size_t)n * 3 + 1));
    uint64_t *aside = dr ? dalle_malloc(sizeof(uint64_t) * ((size_t)n * 3 + 1)) : NULL;
    int32_t *nx = dalle_malloc(sizeof(int32_t) * (size_t)n * 2);
    if (!h || !nx || (dr && !aside)) {
        dalle_free(h);
        dalle_free(aside);
        dalle_free(nx);
        return -1;
    }
    int32_t *pv = nx + n;
    size_t hn = 0, an = 0;
    for (int i = 0; i < n; i++) {
        nx[i] = i + 1 < n ? i + 1 : -1;
        pv[i] = i - 1;
        if (i + 1 < n) {
            int32_t r = rank_of(t, sym[i], sym[i + 1]);
            if (r != INT32_MAX) heap_push(h, &hn, (uint64_t)r << 32 | (uint32_t)i);
        }
    }
    while (hn) {
        uint64_t e = heap_pop(h, &hn);
        int32_t r = (int32_t)(e >> 32), i = (int32_t)(uint32_t)e, j = nx[i];
        if (sym[i] < 0 || j < 0 || sym[i] != t->merge_a[r] || sym[j] != t->merge_b[r]) continue;
        if (dr && dropped(dr)) {
            aside[an++] = e;
            continue;
        }
        sym[i] = t->merge_out[r];
        sym[j] = -1;
        nx[i] = nx[j];
        if (nx[j] >= 0) pv[nx[j]] = i;
        if (pv[i] >= 0) {
            int32_t q = rank_of(t, sym[pv[i]], sym[i]);
            if (q != INT32_MAX) heap_push(h, &hn, (uint64_t)q << 32 | (uint32_t)pv[i]);
        }
        if (nx[i] >= 0) {
            int32_t q = rank_of(t, sym[i], sym[nx[i]]);
            if (q != INT32_MAX) heap_push(h, &hn, (uint64_t)q << 32 | (uint32_t)i);
        }
        for (size_t a = 0; a < an; a++) heap_push(h, &hn, aside[a]);
        an = 0;
    }
    int m = 0;
    for (int i = 0; i >= 0 && i < n; i = nx[i]) sym[m++] = sym[i];
    dalle_free(h);
    dalle_free(aside);
    dalle_free(nx);
    return m;
}

static int push_ids(bpe_tokenizer *t, const int32_t *ids, size_t n) {
    if (t->nids + n > t->idcap) {
        size_t cap = t->idcap ? t->idcap : 1024;
        while (cap < t->nids + n) cap *= 2;
        int32_t *p = dalle_realloc(t->ids, cap * sizeof(int32_t));
        if (!p) return DALLE_ERR;
        t->ids = p;
        t->idcap = cap;
    }
    memcpy(t->ids + t->nids, ids, n * sizeof(int32_t));
    t->nids += n;
    return DALLE_OK;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = mix64((h ^ v) * 0x94d049bb133111ebull);
    return h ? h : 1;
}

// The cache slot for piece p[0..n) with hash h: its entry, or the empty slot
// where it would go.
static inline bpe_cslot *cache_slot(bpe_tokenizer *t, const uint8_t *p, size_t n, uint64_t h) {
    for (uint64_t i = h & t->cmask;; i = (i + 1) & t->cmask) {
        bpe_cslot *s = &t->cache[i];
        if (!s->hash) return s;
        if (s->hash == h && s->blen == n && !memcmp(t->cache_bytes.p + s->boff, p, n)) return s;
    }
}

// Makes room for one more entry: grows the table up to CACHE_MAX_SLOTS, then
// starts it over empty. DALLE_ERR on OOM.
static int cache_room(bpe_tokenizer *t) {
    if (t->cache_used + 1 <= (t->cmask + 1) / 2) return DALLE_OK;
    uint64_t cap = (t->cmask + 1) * 2;
    if (cap > CACHE_MAX_SLOTS) {
        memset(t->cache, 0, (t->cmask + 1) * sizeof *t->cache);
        t->cache_used = 0;
        t->cache_bytes.n = 0;
        t->cache_nids = 0;
        return DALLE_OK;
    }
    bpe_cslot *old = t->cache, *nw = dalle_calloc(cap, sizeof *nw);
    if (!nw) return DALLE_ERR;
    uint64_t oldcap = t->cmask + 1;
    t->cache = nw;
    t->cmask = cap - 1;
    for (uint64_t i = 0; i < oldcap; i++) {
        if (!old[i].hash) continue;
        uint64_t j = old[i].hash & t->cmask;
        while (nw[j].hash) j = (j + 1) & t->cmask;
        nw[j] = old[i];
    }
    dalle_free(old);
    return DALLE_OK;
}

// Appends the ids of piece p[0..n) (n >= 1) to t->ids.
static int encode_piece(bpe_tokenizer *t, const uint8_t *p, size_t n, drop_rng *dr) {
    int eow = t->kind == BPE_CLIP;
    if (n == 1) {
        int32_t id = t->byte_id[eow][p[0]];
        return push_ids(t, &id, 1);
    }
    int cacheable = !dr && n <= CACHE_MAX_PIECE;
    uint64_t h = 0;
    if (cacheable) {
        h = hash_bytes(p, n);
        bpe_cslot *s = cache_slot(t, p, n, h);
        if (s->hash) return push_ids(t, t->cache_ids + s->ioff, s->ilen);
    }
    if (ensure_sym(t, 2 * n) != DALLE_OK) return DALLE_ERR;
    int32_t *sym = t->sym;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[0][p[i]];
    if (eow) sym[n - 1] = t->byte_id[1][p[n - 1]];
    int m = (!dr && n <= (size_t)bpe_scan_max) ? merge_scan(t, sym, (int)n) : merge_heap(t, sym, (int)n, dr);
    if (m < 0) return DALLE_ERR;
    if (cacheable) {
        if (cache_room(t) != DALLE_OK) return DALLE_ERR;
        if (bpe_bytes_reserve(&t->cache_bytes, n) != DALLE_OK) return DALLE_ERR;
        if (t->cache_nids + (size_t)m > t->cache_idcap) {
            size_t cap = t->cache_idcap ? t->cache_idcap * 2 : 4096;
            while (cap < t->cache_nids + (size_t)m) cap *= 2;
            int32_t *q = dalle_realloc(t->cache_ids, cap * sizeof(int32_t));
            if (!q) return DALLE_ERR;
            t->cache_ids = q;
            t->cache_idcap = cap;
        }
        bpe_cslot *s = cache_slot(t, p, n, h);
        *s = (bpe_cslot){h, (uint32_t)t->cache_bytes.n, (uint32_t)n, (uint32_t)t->cache_nids,
                         (uint32_t)m};
        memcpy(t->cache_bytes.p + t->cache_bytes.n, p, n);
        t->cache_bytes.n += n;
        memcpy(t->cache_ids + t->cache_nids, sym, (size_t)m * sizeof(int32_t));
        t->cache_nids += (size_t)m;
        t->cache_used++;
    }
    return push_ids(t, sym, (size_t)m);
}

// Encodes into t->ids[0..t->nids).
static int encode_all(bpe_tokenizer *t, const char *text, size_t n, const bpe_dropout *drop) {
    t->nids = 0;
    if (bpe_normalize(t, (const uint8_t *)text, n) != DALLE_OK) return DALLE_ERR;
    drop_rng dr = {0}, *dp = NULL;
    if (drop && drop->p > 0) {
        dr = (drop_rng){drop->seed, drop->index, 0, {0}, 4, drop->p};
        dp = &dr;
    }
    const uint8_t *s = t->norm.p;
    size_t m = t->norm.n, pos = 0;
    bpe_piece pc;
    while (bpe_next_piece(t, s, m, &pos, &pc)) {
        int rc = pc.special >= 0 ? push_ids(t, &pc.special, 1)
                                 : encode_piece(t, s + pc.off, pc.len, dp);
        if (rc != DALLE_OK) return DALLE_ERR;
    }
    return DALLE_OK;
}

int64_t bpe_encode(bpe_tokenizer *t, const char *text, size_t n, const bpe_dropout *drop,
                   int32_t *ids, int64_t cap) {
    if (encode_all(t, text, n, drop) != DALLE_OK) return -1;
    size_t k = t->nids < (size_t)(cap > 0 ? cap : 0) ? t->nids : (size_t)(cap > 0 ? cap : 0);
    if (k) memcpy(ids, t->ids, k * sizeof(int32_t));
    return (int64_t)t->nids;
}

int bpe_layout(bpe_tokenizer *t, const char *caption, size_t n, const bpe_dropout *drop,
               int text_len, int32_t *ids) {
    if (encode_all(t, caption, n, drop) != DALLE_OK) return -1;
    int k = t->nids < (size_t)text_len ? (int)t->nids : text_len;
    if (k) memcpy(ids, t->ids, (size_t)k * sizeof(int32_t));
    for (int i = k; i < text_len; i++) ids[i] = t->V + i;
    return k;
}

int64_t bpe_decode(const bpe_tokenizer *t, const int32_t *ids, int64_t n, char *out, int64_t cap) {
    int64_t len = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->V || !(t->tok_flags[id] & TOK_VALID))
            return dalle_seterr("id %d at position %lld is not in the vocabulary (V = %d)", id,
                                (long long)i, t->V);
        uint32_t a = t->tok_off[id], b = t->tok_off[id + 1];
        for (uint32_t j = a; j < b; j++, len++)
            if (len < cap) out[len] = (char)t->tok_bytes[j];
        if (t->tok_flags[id] & TOK_EOW) {
            if (len < cap) out[len] = ' ';
            len++;
        }
    }
    return len;
}
