// bpe_train.c: learning a "dalle" vocabulary from text (bpe_train).
// 1. Count: every line is normalised and split as bpe_encode does; the
//    distinct pieces ("words") are counted in a hash table.
// 2. Merge: each word is a sequence of symbols (first its bytes); pair counts
//    are the sums of word counts over adjacent symbol pairs. A max-heap holds
//    the pairs, most frequent first, ties to the smallest (left id, right id).
//    Applying a merge touches only the words that contain the pair (found
//    through per-pair occurrence lists) and updates only the counts of the
//    pairs around each occurrence: no recount. Heap entries are checked when
//    popped and pushed again if their count went down (lazy update).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "text/tokenizer.h"

bpe_train_opts bpe_train_default_opts(void) { return (bpe_train_opts){16384, 2}; }

// ---------------------------------------------------------------------------
// Distinct pieces and their counts

typedef struct {
    uint64_t *hash;  // (cap) 0 = empty
    uint32_t *word;  // (cap) index into off/len/count
    uint64_t cap, n;
    bpe_bytes bytes; // all words' bytes
    uint64_t *off;   // (n) word i is bytes.p[off[i] .. off[i] + len[i])
    uint32_t *len;
    int64_t *count;
    uint64_t wcap;
} wordmap;

static uint64_t hash_piece(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 29;
    return h ? h : 1;
}

static int wordmap_grow(wordmap *m) {
    uint64_t cap = m->cap ? m->cap * 2 : 1 << 16;
    uint64_t *h = dalle_calloc(cap, sizeof *h);
    uint32_t *w = dalle_malloc(cap * sizeof *w);
    if (!h || !w) {
        dalle_free(h);
        dalle_free(w);
        return DALLE_ERR;
    }
    for (uint64_t i = 0; i < m->cap; i++) {
        if (!m->hash[i]) continue;
        uint64_t j = m->hash[i] & (cap - 1);
        while (h[j]) j = (j + 1) & (cap - 1);
        h[j] = m->hash[i];
        w[j] = m->word[i];
    }
    dalle_free(m->hash);
    dalle_free(m->word);
    m->hash = h;
    m->word = w;
    m->cap = cap;
    return DALLE_OK;
}

static int wordmap_add(wordmap *m, const uint8_t *p, size_t n) {
    if (2 * (m->n + 1) > m->cap && wordmap_grow(m) != DALLE_OK) return DALLE_ERR;
    uint64_t h = hash_piece(p, n), i = h & (m->cap - 1);
    for (;; i = (i + 1) & (m->cap - 1)) {
        if (!m->hash[i]) break;
        if (m->hash[i] == h) {
            uint32_t w = m->word[i];
            if (m->len[w] == n && !memcmp(m->bytes.p + m->off[w], p, n)) {
                m->count[w]++;
                return DALLE_OK;
            }
        }
    }
    if (m->n == m->wcap) {
        uint64_t cap = m->wcap ? m->wcap * 2 : 1 << 16;
        uint64_t *o = dalle_realloc(m->off, cap * sizeof *o);
        if (o) m->off = o;
        uint32_t *l = dalle_realloc(m->len, cap * sizeof *l);
        if (l) m->len = l;
        int64_t *c = dalle_realloc(m->count, cap * sizeof *c);
        if (c) m->count = c;
        if (!o || !l || !c) return DALLE_ERR;
        m->wcap = cap;
    }
    if (m->n >= UINT32_MAX - 1 || n > UINT32_MAX) return dalle_seterr("too many distinct pieces");
    if (bpe_bytes_reserve(&m->bytes, n) != DALLE_OK) return DALLE_ERR;
    uint32_t w = (uint32_t)m->n++;
    m->off[w] = m->bytes.n;
    m->len[w] = (uint32_t)n;
    m->count[w] = 1;
    memcpy(m->bytes.p + m->bytes.n, p, n);
    m->bytes.n += n;
    m->hash[i] = h;
    m->word[i] = w;
    return DALLE_OK;
}

static void wordmap_free(wordmap *m) {
    dalle_free(m->hash);
    dalle_free(m->word);
    dalle_free(m->bytes.p);
    dalle_free(m->off);
    dalle_free(m->len);
    dalle_free(m->count);
}

// Counts the pieces of every line of PATH, read in blocks.
static int count_file(bpe_tokenizer *t, wordmap *m, const char *path, int64_t *lines,
                      int64_t *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return dalle_seterr("%s: cannot open", path);
    size_t cap = 1 << 24, have = 0;
    uint8_t *buf = dalle_malloc(cap);
    int rc = DALLE_ERR;
    if (!buf) goto done;
    for (;;) {
        if (have == cap) { // a line longer than the buffer: grow
            uint8_t *p = dalle_realloc(buf, cap * 2);
            if (!p) goto done;
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + have, 1, cap - have, f);
        if (got == 0 && ferror(f)) {
            dalle_seterr("%s: read error", path);
            goto done;
        }
        have += got;
        int eof = got == 0;
        *bytes += (int64_t)got;
        size_t start = 0;
        for (;;) {
            uint8_t *nl = memchr(buf + start, '\n', have - start);
            if (!nl && !(eof && start < have)) break;
            size_t end = nl ? (size_t)(nl - buf) : have;
            if (bpe_normalize(t, buf + start, end - start) != DALLE_OK) goto done;
            size_t pos = 0;
            bpe_piece pc;
            while (bpe_next_piece(t, t->norm.p, t->norm.n, &pos, &pc))
                if (wordmap_add(m, t->norm.p + pc.off, pc.len) != DALLE_OK) goto done;
            (*lines)++;
            start = nl ? end + 1 : have;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (eof) break;
    }
    rc = DALLE_OK;
done:
    if (rc != DALLE_OK) dalle_errprefix("%s", path);
    fclose(f);
    dalle_free(buf);
    return rc;
}

// ---------------------------------------------------------------------------
// Pairs

typedef struct {
    int32_t a, b;
    int64_t count;
    int32_t head; // first occurrence node, -1 = none
} pair_t;

typedef struct {
    int32_t word, next;
} occ_t;

typedef struct {
    int64_t count;
    int32_t a, b, pair;
} heap_t;

typedef struct {
    // Words: symbols of word w are sym[woff[w] .. woff[w] + wlen[w]).
    int32_t *sym;
    uint64_t *woff;
    uint32_t *wlen;
    const int64_t *wcount;
    uint32_t *stamp; // (n_words) the merge that last rewrote the word, + 1
    // Pairs: hash (a, b) -> index into pairs.
    uint64_t *pkey; // (pcap) (a << 32 | b) + 1, 0 = empty
    int32_t *pidx;
    uint64_t pcap, np;
    pair_t *pairs;
    uint64_t pairs_cap;
    occ_t *occ;
    uint64_t nocc, occ_cap;
    heap_t *heap;
    uint64_t nheap, heap_cap;
} trainer;

static inline uint64_t pkey_of(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
}
static inline uint64_t pmix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static int grow(void **p, uint64_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap) return DALLE_OK;
    uint64_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = dalle_realloc(*p, c * elem);
    if (!q) return DALLE_ERR;
    *p = q;
    *cap = c;
    return DALLE_OK;
}

static int pmap_grow(trainer *tr) {
    uint64_t cap = tr->pcap ? tr->pcap * 2 : 1 << 16;
    uint64_t *k = dalle_calloc(cap, sizeof *k);
    int32_t *v = dalle_malloc(cap * sizeof *v);
    if (!k || !v) {
        dalle_free(k);
        dalle_free(v);
        return DALLE_ERR;
    }
    for (uint64_t i = 0; i < tr->pcap; i++) {
        if (!tr->pkey[i]) continue;
        uint64_t j = pmix(tr->pkey[i]) & (cap - 1);
        while (k[j]) j = (j + 1) & (cap - 1);
        k[j] = tr->pkey[i];
        v[j] = tr->pidx[i];
    }
    dalle_free(tr->pkey);
    dalle_free(tr->pidx);
    tr->pkey = k;
    tr->pidx = v;
    tr->pcap = cap;
    return DALLE_OK;
}

// The index of pair (a, b), created with count 0 if new; -1 on OOM.
static int32_t pair_get(trainer *tr, int32_t a, int32_t b) {
    if (2 * (tr->np + 1) > tr->pcap && pmap_grow(tr) != DALLE_OK) return -1;
    uint64_t key = pkey_of(a, b), i = pmix(key) & (tr->pcap - 1);
    while (tr->pkey[i]) {
        if (tr->pkey[i] == key) return tr->pidx[i];
        i = (i + 1) & (tr->pcap - 1);
    }
    if (tr->np >= INT32_MAX ||
        grow((void **)&tr->pairs, &tr->pairs_cap, tr->np + 1, sizeof *tr->pairs) != DALLE_OK)
        return -1;
    tr->pkey[i] = key;
    tr->pidx[i] = (int32_t)tr->np;
    tr->pairs[tr->np] = (pair_t){a, b, 0, -1};
    return (int32_t)tr->np++;
}

// Adds delta to the count of pair (a, b); a positive delta also records that
// word w holds it.
static int pair_add(trainer *tr, int32_t a, int32_t b, int64_t delta, uint32_t w) {
    int32_t p = pair_get(tr, a, b);
    if (p < 0) return DALLE_ERR;
    tr->pairs[p].count += delta;
    if (delta > 0) {
        if (grow((void **)&tr->occ, &tr->occ_cap, tr->nocc + 1, sizeof *tr->occ) != DALLE_OK)
            return DALLE_ERR;
        tr->occ[tr->nocc] = (occ_t){(int32_t)w, tr->pairs[p].head};
        tr->pairs[p].head = (int32_t)tr->nocc++;
    }
    return DALLE_OK;
}

// Heap order: higher count first, then smaller (a, b).
static inline int heap_before(const heap_t *x, const heap_t *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(trainer *tr, int32_t p) {
    if (grow((void **)&tr->heap, &tr->heap_cap, tr->nheap + 1, sizeof *tr->heap) != DALLE_OK)
        return DALLE_ERR;
    heap_t v = {tr->pairs[p].count, tr->pairs[p].a, tr->pairs[p].b, p};
    uint64_t i = tr->nheap++;
    while (i > 0 && heap_before(&v, &tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = v;
    return DALLE_OK;
}

static heap_t heap_pop(trainer *tr) {
    heap_t top = tr->heap[0], v = tr->heap[--tr->nheap];
    uint64_t i = 0, n = tr->nheap;
    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!heap_before(&tr->heap[c], &v)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    tr->heap[i] = v;
    return top;
}

// Replaces every occurrence of pair p (a, b) by the new token z in the words
// that hold it, left to right, updating the counts of the neighbouring pairs.
// Only pairs that contain z grow; they are all new.
static int apply_merge(trainer *tr, int32_t p, int32_t z, uint32_t stamp) {
    int32_t a = tr->pairs[p].a, b = tr->pairs[p].b;
    for (int32_t o = tr->pairs[p].head; o >= 0; o = tr->occ[o].next) {
        uint32_t w = (uint32_t)tr->occ[o].word;
        if (tr->stamp[w] == stamp) continue;
        tr->stamp[w] = stamp;
        int32_t *s = tr->sym + tr->woff[w];
        uint32_t n = tr->wlen[w], j = 0;
        int64_t c = tr->wcount[w];
        for (uint32_t i = 0; i < n; i++) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                // j: where the merged symbol goes; s[j-1] is its left neighbour.
                if (j > 0) {
                    if (pair_add(tr, s[j - 1], a, -c, w) || pair_add(tr, s[j - 1], z, c, w))
                        return DALLE_ERR;
                }
                if (i + 2 < n && pair_add(tr, b, s[i + 2], -c, w)) return DALLE_ERR;
                if (i + 2 < n && pair_add(tr, z, s[i + 2], c, w)) return DALLE_ERR;
                tr->pairs[p].count -= c;
                s[j++] = z;
                i++;
            } else {
                s[j++] = s[i];
            }
        }
        tr->wlen[w] = j;
    }
    tr->pairs[p].head = -1;
    return DALLE_OK;
}

bpe_tokenizer *bpe_train(const char *const *paths, int n_paths, const bpe_train_opts *o) {
    bpe_train_opts opts = o ? *o : bpe_train_default_opts();
    if (opts.vocab_size < 256 || opts.vocab_size > BPE_MAX_V) {
        dalle_seterr("bpe train: vocab size %d is outside [256, %d]", opts.vocab_size, BPE_MAX_V);
        return NULL;
    }
    if (opts.min_count < 1) opts.min_count = 1;
    double t0 = dalle_time();
    bpe_tokenizer *nt = bpe_new(BPE_DALLE, 512, 1), *t = NULL;
    wordmap wm = {0};
    trainer tr = {0};
    if (!nt) return NULL;
    int64_t lines = 0, bytes = 0;
    for (int i = 0; i < n_paths; i++)
        if (count_file(nt, &wm, paths[i], &lines, &bytes) != DALLE_OK) goto fail;
    dalle_log("bpe train: %lld lines, %.1f MB, %llu distinct pieces (%.1f s)", (long long)lines,
              (double)bytes / 1e6, (unsigned long long)wm.n, dalle_time() - t0);

    // Words as symbol sequences.
    tr.sym = dalle_malloc(sizeof(int32_t) * (wm.bytes.n + 1));
    tr.woff = dalle_malloc(sizeof(uint64_t) * (wm.n + 1));
    tr.wlen = dalle_malloc(sizeof(uint32_t) * (wm.n + 1));
    tr.stamp = dalle_calloc(wm.n + 1, sizeof(uint32_t));
    if (!tr.sym || !tr.woff || !tr.wlen || !tr.stamp) goto fail;
    tr.wcount = wm.count;
    for (uint64_t w = 0; w < wm.n; w++) {
        tr.woff[w] = wm.off[w];
        tr.wlen[w] = wm.len[w];
        const uint8_t *p = wm.bytes.p + wm.off[w];
        for (uint32_t i = 0; i < wm.len[w]; i++) tr.sym[wm.off[w] + i] = nt->byte_id[0][p[i]];
        for (uint32_t i = 0; i + 1 < wm.len[w]; i++)
            if (pair_add(&tr, tr.sym[wm.off[w] + i], tr.sym[wm.off[w] + i + 1], wm.count[w],
                         (uint32_t)w))
                goto fail;
    }
    for (uint64_t p = 0; p < tr.np; p++)
        if (heap_push(&tr, (int32_t)p)) goto fail;

    int n_merges = opts.vocab_size - 256;
    t = bpe_new(BPE_DALLE, opts.vocab_size, 1);
    if (!t) goto fail;
    while (t->M < n_merges && tr.nheap) {
        heap_t h = heap_pop(&tr);
        int64_t cur = tr.pairs[h.pair].count;
        if (cur != h.count) { // stale: its count went down since the push
            if (cur > 0 && heap_push(&tr, h.pair)) goto fail;
            continue;
        }
        if (cur < opts.min_count) break;
        int32_t a = h.a, b = h.b;
        // The new token: the bytes of a then b.
        uint32_t la = t->tok_off[a + 1] - t->tok_off[a], lb = t->tok_off[b + 1] - t->tok_off[b];
        uint8_t *buf = dalle_malloc(la + lb);
        if (!buf) goto fail;
        memcpy(buf, t->tok_bytes + t->tok_off[a], la);
        memcpy(buf + la, t->tok_bytes + t->tok_off[b], lb);
        int z = bpe_add_token(t, buf, la + lb, TOK_VALID);
        dalle_free(buf);
        if (z < 0 || bpe_add_merge(t, a, b, z) < 0) goto fail;
        // The pairs that contain z are the new ones (indices from np_before).
        uint64_t np_before = tr.np;
        if (apply_merge(&tr, h.pair, z, (uint32_t)t->M)) goto fail;
        for (uint64_t q = np_before; q < tr.np; q++)
            if (tr.pairs[q].count > 0 && heap_push(&tr, (int32_t)q)) goto fail;
    }
    if (t->M < n_merges)
        dalle_log("bpe train: stopped at %d merges (vocab %d): no pair is seen %d times", t->M,
                  t->V, opts.min_count);
    if (bpe_finish(t) != DALLE_OK) goto fail;
    dalle_log("bpe train: %d merges, vocab %d (%.1f s)", t->M, t->V, dalle_time() - t0);
    bpe_free(nt);
    wordmap_free(&wm);
    goto cleanup;
fail:
    bpe_free(t);
    bpe_free(nt);
    wordmap_free(&wm);
    t = NULL;
cleanup:
    dalle_free(tr.sym);
    dalle_free(tr.woff);
    dalle_free(tr.wlen);
    dalle_free(tr.stamp);
    dalle_free(tr.pkey);
    dalle_free(tr.pidx);
    dalle_free(tr.pairs);
    dalle_free(tr.occ);
    dalle_free(tr.heap);
    return t;
}
