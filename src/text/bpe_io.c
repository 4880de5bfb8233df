// bpe_io.c: tokenizer files. Two formats load:
//   tokenizer.json of the Hugging Face `tokenizers` library, BPE model, with
//     the normaliser and pre-tokeniser pipeline that bpe_save writes (others
//     are refused by name); vocab {token: id}, merges ["a b", ...] or
//     [["a", "b"], ...]. Token strings are byte-level (GPT-2's
//     bytes_to_unicode alphabet).
//   CLIP's bpe_simple_vocab_16e6.txt(.gz): a "#version" line, "a b" merge lines,
//     of which CLIP uses the first 48894; its vocabulary is the 256 bytes,
//     their `</w>` forms, one token per merge, <|startoftext|>, <|endoftext|>.
// Everything is checked before use; a bad file is an error naming the file.
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/common.h"
#include "text/tokenizer.h"

enum { CLIP_MERGES = 49152 - 256 - 2, MAX_FILE = 256 << 20 };

// The regex of the pre-tokeniser bpe_save writes: CLIP's pattern with the
// optional space before each piece (see bpe.c).
static const char DALLE_SPLIT[] =
    " ?'s| ?'t| ?'re| ?'ve| ?'m| ?'ll| ?'d| ?[\\p{L}]+| ?[\\p{N}]| ?[^\\s\\p{L}\\p{N}]+";

// ---------------------------------------------------------------------------
// A string -> id map for loading (later insertions of a key win, as Python's
// dict(zip(...)) does for CLIP's vocabulary).

typedef struct {
    const char **key; // (cap) borrowed strings
    size_t *len;
    int32_t *val;
    size_t cap, n;
} strmap;

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int strmap_init(strmap *m, size_t n) {
    m->cap = 64;
    while (m->cap < 2 * n + 2) m->cap *= 2;
    m->n = 0;
    m->key = dalle_calloc(m->cap, sizeof *m->key);
    m->len = dalle_calloc(m->cap, sizeof *m->len);
    m->val = dalle_calloc(m->cap, sizeof *m->val);
    return m->key && m->len && m->val ? DALLE_OK : DALLE_ERR;
}
static void strmap_free(strmap *m) {
    dalle_free(m->key);
    dalle_free(m->len);
    dalle_free(m->val);
}
static size_t strmap_slot(const strmap *m, const char *s, size_t n) {
    size_t i = str_hash(s, n) & (m->cap - 1);
    while (m->key[i] && !(m->len[i] == n && !memcmp(m->key[i], s, n))) i = (i + 1) & (m->cap - 1);
    return i;
}
// Inserts or overwrites; returns the previous value or -1. The map never fills:
// its capacity is twice the number of keys given to strmap_init.
static int32_t strmap_put(strmap *m, const char *s, size_t n, int32_t v) {
    size_t i = strmap_slot(m, s, n);
    int32_t old = m->key[i] ? m->val[i] : -1;
    if (!m->key[i]) m->n++;
    DALLE_ASSERT(m->n < m->cap);
    m->key[i] = s;
    m->len[i] = n;
    m->val[i] = v;
    return old;
}
static int32_t strmap_get(const strmap *m, const char *s, size_t n) {
    size_t i = strmap_slot(m, s, n);
    return m->key[i] ? m->val[i] : -1;
}

// Byte-level string s[0..n) -> bytes (out has room for n) and the `</w>` flag
// when eow_suffix. Returns the byte count, or -1 if a character is not one of
// the 256 byte-level characters.
static long bytes_of_token(const char *s, size_t n, int eow_suffix, uint8_t *out, int *eow) {
    *eow = 0;
    if (eow_suffix && n >= 4 && !memcmp(s + n - 4, "</w>", 4)) {
        *eow = 1;
        n -= 4;
    }
    long k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += uni_decode((const uint8_t *)s + i, n - i, &cp);
        int b = bpe_cp_byte(cp);
        if (b < 0) return -1;
        out[k++] = (uint8_t)b;
    }
    return k;
}

// Adds token string s (byte-level) as the next id.
static int add_token_str(bpe_tokenizer *t, const char *s, size_t n, int eow_suffix, int flags,
                         const char *path) {
    uint8_t buf[1024];
    uint8_t *b = n <= sizeof buf ? buf : dalle_malloc(n);
    if (!b) return -1;
    int eow;
    long k = bytes_of_token(s, n, eow_suffix, b, &eow);
    int id = -1;
    if (k < 0)
        dalle_seterr("%s: token \"%.*s\" (id %d) is not byte-level text", path, (int)DALLE_MIN(n, 64),
                     s, t->V);
    else
        id = bpe_add_token(t, b, (size_t)k, flags | (eow ? TOK_EOW : 0));
    if (b != buf) dalle_free(b);
    return id;
}

// The ids of the 256 single-byte tokens (and their `</w>` forms), looked up
// by string in M. Error naming the first one missing.
static int find_byte_ids(bpe_tokenizer *t, const strmap *m, const char *path) {
    for (int eow = 0; eow <= (t->kind == BPE_CLIP); eow++)
        for (int b = 0; b < 256; b++) {
            char s[16];
            uint8_t u[4];
            size_t k = uni_encode(bpe_byte_cp(b), u);
            memcpy(s, u, k);
            if (eow) memcpy(s + k, "</w>", 4), k += 4;
            int32_t id = strmap_get(m, s, k);
            if (id < 0)
                return dalle_seterr("%s: the vocabulary lacks the token for byte 0x%02x (\"%.*s\"); "
                                    "byte-level BPE needs all 256",
                                    path, b, (int)k, s);
            t->byte_id[eow][b] = id;
        }
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// CLIP's merges file

static uint8_t *gunzip(const uint8_t *src, size_t n, size_t *out_n, const char *path) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        dalle_seterr("%s: zlib init failed", path);
        return NULL;
    }
    size_t cap = 4 * n + 1024, len = 0;
    uint8_t *out = dalle_malloc(cap + 1);
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)DALLE_MIN(n, (size_t)UINT32_MAX);
    int rc = Z_OK;
    while (out && rc != Z_STREAM_END) {
        if (len == cap) {
            if (cap >= MAX_FILE) {
                dalle_seterr("%s: decompresses to more than %d MB", path, MAX_FILE >> 20);
                goto fail;
            }
            cap *= 2;
            uint8_t *p = dalle_realloc(out, cap + 1);
            if (!p) goto fail;
            out = p;
        }
        z.next_out = out + len;
        z.avail_out = (uInt)DALLE_MIN(cap - len, (size_t)UINT32_MAX);
        rc = inflate(&z, Z_NO_FLUSH);
        len = (size_t)(z.next_out - out);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            dalle_seterr("%s: corrupt gzip data (%s)", path, z.msg ? z.msg : "truncated");
            goto fail;
        }
        if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
            dalle_seterr("%s: truncated gzip data", path);
            goto fail;
        }
    }
    inflateEnd(&z);
    if (!out) return NULL;
    out[len] = 0;
    *out_n = len;
    return out;
fail:
    inflateEnd(&z);
    dalle_free(out);
    return NULL;
}

static bpe_tokenizer *load_clip(const char *path, const char *s, size_t n) {
    // Lines 1 .. CLIP_MERGES (0 is "#version ...").
    const char *line_end = memchr(s, '\n', n);
    const char *v = s;
    while (line_end && v + 8 <= line_end && memcmp(v, "#version", 8)) v++;
    if (!line_end || v + 8 > line_end) {
        dalle_seterr("%s: not a CLIP merges file (its first line has no \"#version\")", path);
        return NULL;
    }
    const char *p = line_end + 1, *end = s + n;
    const char **fa = dalle_malloc(sizeof(char *) * 4 * CLIP_MERGES);
    size_t *fl = dalle_malloc(sizeof(size_t) * 4 * CLIP_MERGES);
    char *joined = NULL, *base = NULL;
    bpe_tokenizer *t = NULL;
    strmap m = {0};
    int nm = 0;
    if (!fa || !fl) goto fail;
    for (; nm < CLIP_MERGES && p < end; nm++) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        // Python's str.split(): runs of white space separate fields.
        int nf = 0;
        for (const char *q = p; q < e;) {
            while (q < e && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\v' || *q == '\f')) q++;
            if (q == e) break;
            const char *f = q;
            while (q < e && !(*q == ' ' || *q == '\t' || *q == '\r' || *q == '\v' || *q == '\f')) q++;
            if (nf < 2) {
                fa[2 * nm + nf] = f;
                fl[2 * nm + nf] = (size_t)(q - f);
            }
            nf++;
        }
        if (nf != 2) {
            dalle_seterr("%s: line %d: expected two tokens, found %d", path, nm + 2, nf);
            goto fail;
        }
        p = e + 1;
    }
    size_t total = 0;
    for (int i = 0; i < nm; i++) total += fl[2 * i] + fl[2 * i + 1];
    joined = dalle_malloc(total + 1);
    t = bpe_new(BPE_CLIP, 512 + nm + 2, 1);
    if (!joined || !t || strmap_init(&m, 512 + (size_t)nm + 2) != DALLE_OK) goto fail;
    // The 512 base strings (bpe_new made their tokens), then each merge's
    // concatenation, in id order.
    base = dalle_malloc(512 * 8);
    if (!base) goto fail;
    for (int i = 0; i < 512; i++) {
        uint8_t u[4];
        size_t k = uni_encode(bpe_byte_cp(bpe_byte_of_id(i & 255)), u);
        memcpy(base + 8 * i, u, k);
        if (i >= 256) memcpy(base + 8 * i + k, "</w>", 4), k += 4;
        strmap_put(&m, base + 8 * i, k, i);
    }
    size_t off = 0;
    for (int i = 0; i < nm; i++) {
        char *j = joined + off;
        memcpy(j, fa[2 * i], fl[2 * i]);
        memcpy(j + fl[2 * i], fa[2 * i + 1], fl[2 * i + 1]);
        size_t k = fl[2 * i] + fl[2 * i + 1];
        off += k;
        if (add_token_str(t, j, k, 1, TOK_VALID, path) < 0) goto fail;
        strmap_put(&m, j, k, t->V - 1);
    }
    static const char *specials[2] = {"<|startoftext|>", "<|endoftext|>"};
    for (int i = 0; i < 2; i++) {
        int id = add_token_str(t, specials[i], strlen(specials[i]), 0, TOK_VALID | TOK_SPECIAL, path);
        if (id < 0 || !(t->special_str[i] = dalle_strdup(specials[i]))) goto fail;
        strmap_put(&m, specials[i], strlen(specials[i]), id);
        t->special_id[i] = id;
        t->n_special++;
    }
    if (find_byte_ids(t, &m, path) != DALLE_OK) goto fail;
    off = 0;
    for (int i = 0; i < nm; i++) {
        int32_t a = strmap_get(&m, fa[2 * i], fl[2 * i]);
        int32_t b = strmap_get(&m, fa[2 * i + 1], fl[2 * i + 1]);
        int32_t o = strmap_get(&m, joined + off, fl[2 * i] + fl[2 * i + 1]);
        off += fl[2 * i] + fl[2 * i + 1];
        if (a < 0 || b < 0) {
            dalle_seterr("%s: line %d: merge names a token that is not in the vocabulary", path, i + 2);
            goto fail;
        }
        if (bpe_add_merge(t, a, b, o) < 0) goto fail;
    }
    if (bpe_finish(t) != DALLE_OK) {
        dalle_errprefix("%s", path);
        goto fail;
    }
    strmap_free(&m);
    dalle_free(fa);
    dalle_free(fl);
    dalle_free(joined);
    dalle_free(base);
    return t;
fail:
    strmap_free(&m);
    dalle_free(fa);
    dalle_free(fl);
    dalle_free(joined);
    dalle_free(base);
    bpe_free(t);
    return NULL;
}

// ---------------------------------------------------------------------------
// tokenizer.json

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}
static int jstr_is(const cJSON *o, const char *k, const char *want) {
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) && !strcmp(v->valuestring, want);
}
// Absent, null, false, or the empty string.
static int jfalsy(const cJSON *o, const char *k) {
    const cJSON *v = jget(o, k);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsString(v) && !v->valuestring[0]);
}
static const char *jtype(const cJSON *o) {
    const cJSON *v = jget(o, "type");
    return cJSON_IsString(v) ? v->valuestring : "(no type)";
}

// The normaliser and pre-tokeniser must be those bpe_save writes.
static int check_pipeline(const cJSON *root, const char *path) {
    const cJSON *nz = jget(root, "normalizer");
    const cJSON *ns = cJSON_IsObject(nz) ? jget(nz, "normalizers") : NULL;
    if (!cJSON_IsObject(nz) || !jstr_is(nz, "type", "Sequence") || cJSON_GetArraySize(ns) != 3)
        goto bad_norm;
    const cJSON *r = cJSON_GetArrayItem(ns, 0), *s = cJSON_GetArrayItem(ns, 1),
                *l = cJSON_GetArrayItem(ns, 2);
    const cJSON *rp = jget(r, "pattern");
    if (!jstr_is(r, "type", "Replace") || !jstr_is(rp, "Regex", "\\s+") || !jstr_is(r, "content", " ") ||
        !jstr_is(s, "type", "Strip") || !cJSON_IsTrue(jget(s, "strip_left")) ||
        !cJSON_IsTrue(jget(s, "strip_right")) || !jstr_is(l, "type", "Lowercase"))
        goto bad_norm;
    const cJSON *pz = jget(root, "pre_tokenizer");
    const cJSON *ps = cJSON_IsObject(pz) ? jget(pz, "pretokenizers") : NULL;
    if (!cJSON_IsObject(pz) || !jstr_is(pz, "type", "Sequence") || cJSON_GetArraySize(ps) != 2)
        goto bad_pre;
    const cJSON *sp = cJSON_GetArrayItem(ps, 0), *bl = cJSON_GetArrayItem(ps, 1);
    if (!jstr_is(sp, "type", "Split") || !jstr_is(jget(sp, "pattern"), "Regex", DALLE_SPLIT) ||
        !jstr_is(sp, "behavior", "Isolated") || !jfalsy(sp, "invert") ||
        !jstr_is(bl, "type", "ByteLevel") || !jfalsy(bl, "add_prefix_space") ||
        !jfalsy(bl, "use_regex"))
        goto bad_pre;
    return DALLE_OK;
bad_norm:
    return dalle_seterr("%s: normalizer: only the pipeline `dalle bpe train` writes is supported "
                        "(Sequence of Replace \\s+ -> \" \", Strip, Lowercase); found %s",
                        path, cJSON_IsObject(nz) ? jtype(nz) : "something else");
bad_pre:
    return dalle_seterr("%s: pre_tokenizer: only the pipeline `dalle bpe train` writes is "
                        "supported (Sequence of Split with CLIP's pattern, ByteLevel without its "
                        "regex); found %s",
                        path, cJSON_IsObject(pz) ? jtype(pz) : "something else");
}

typedef struct {
    const char *s;
    size_t n;
    int32_t id;
} vocab_entry;

static int cmp_entry(const void *a, const void *b) {
    int32_t x = ((const vocab_entry *)a)->id, y = ((const vocab_entry *)b)->id;
    return (x > y) - (x < y);
}

static bpe_tokenizer *load_json(const char *path, const char *text, size_t n) {
    cJSON *root = cJSON_ParseWithLength(text, n);
    bpe_tokenizer *t = NULL;
    vocab_entry *ve = NULL;
    strmap m = {0};
    char *cat = NULL;
    if (!cJSON_IsObject(root)) {
        dalle_seterr("%s: not a JSON object%s", path, root ? "" : " (invalid JSON)");
        goto fail;
    }
    const cJSON *model = jget(root, "model");
    if (!cJSON_IsObject(model)) {
        dalle_seterr("%s: no \"model\" object", path);
        goto fail;
    }
    if (jget(model, "type") && !jstr_is(model, "type", "BPE")) {
        dalle_seterr("%s: model.type is %s; only BPE is supported", path, jtype(model));
        goto fail;
    }
    const cJSON *added = jget(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && (!cJSON_IsArray(added) || cJSON_GetArraySize(added) > 0)) {
        dalle_seterr("%s: added_tokens: special tokens are not supported", path);
        goto fail;
    }
    if (check_pipeline(root, path) != DALLE_OK) goto fail;
    static const char *must_be_off[] = {"continuing_subword_prefix", "end_of_word_suffix",
                                        "byte_fallback", "ignore_merges"};
    for (int i = 0; i < 4; i++)
        if (!jfalsy(model, must_be_off[i])) {
            dalle_seterr("%s: model.%s is set; not supported", path, must_be_off[i]);
            goto fail;
        }
    const cJSON *vocab = jget(model, "vocab"), *merges = jget(model, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        dalle_seterr("%s: model.vocab must be an object and model.merges an array", path);
        goto fail;
    }
    int nv = cJSON_GetArraySize(vocab);
    ve = dalle_malloc(sizeof *ve * (size_t)(nv ? nv : 1));
    if (!ve || strmap_init(&m, (size_t)nv) != DALLE_OK) goto fail;
    int k = 0;
    int32_t max_id = -1;
    for (const cJSON *v = vocab->child; v; v = v->next, k++) {
        double d = v->valuedouble;
        if (!cJSON_IsNumber(v) || !(d >= 0 && d < BPE_MAX_V) || d != (double)(int32_t)d) {
            dalle_seterr("%s: model.vocab[\"%.64s\"]: the id must be an integer in [0, %d)", path,
                         v->string, BPE_MAX_V);
            goto fail;
        }
        ve[k] = (vocab_entry){v->string, strlen(v->string), (int32_t)d};
        if (strmap_put(&m, ve[k].s, ve[k].n, ve[k].id) >= 0) {
            dalle_seterr("%s: model.vocab: token \"%.64s\" appears twice", path, v->string);
            goto fail;
        }
        if (ve[k].id > max_id) max_id = ve[k].id;
    }
    if ((int64_t)max_id >= 2 * (int64_t)nv + 256) {
        dalle_seterr("%s: model.vocab: ids reach %d for %d tokens; too sparse", path, max_id, nv);
        goto fail;
    }
    qsort(ve, (size_t)nv, sizeof *ve, cmp_entry);
    t = bpe_new(BPE_DALLE, max_id + 1, 0);
    if (!t) goto fail;
    for (int i = 0; i < nv; i++) {
        if (i > 0 && ve[i].id == ve[i - 1].id) {
            dalle_seterr("%s: model.vocab: id %d is given to \"%.64s\" and \"%.64s\"", path, ve[i].id,
                         ve[i - 1].s, ve[i].s);
            goto fail;
        }
        while (t->V < ve[i].id)
            if (bpe_add_token(t, NULL, 0, 0) < 0) goto fail; // a hole
        if (add_token_str(t, ve[i].s, ve[i].n, 0, TOK_VALID, path) < 0) goto fail;
    }
    if (find_byte_ids(t, &m, path) != DALLE_OK) goto fail;
    int i = 0;
    for (const cJSON *e = merges->child; e; e = e->next, i++) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                dalle_seterr("%s: model.merges[%d]: expected \"a b\"", path, i);
                goto fail;
            }
            a = e->valuestring, la = (size_t)(sp - a), b = sp + 1, lb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
            a = e->child->valuestring, la = strlen(a);
            b = e->child->next->valuestring, lb = strlen(b);
        } else {
            dalle_seterr("%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", path, i);
            goto fail;
        }
        int32_t ia = strmap_get(&m, a, la), ib = strmap_get(&m, b, lb);
        if (ia < 0 || ib < 0) {
            dalle_seterr("%s: model.merges[%d]: \"%.64s\" is not in the vocabulary", path, i,
                         ia < 0 ? a : b);
            goto fail;
        }
        cat = dalle_malloc(la + lb + 1);
        if (!cat) goto fail;
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        int32_t io = strmap_get(&m, cat, la + lb);
        dalle_free(cat);
        cat = NULL;
        if (io < 0) {
            dalle_seterr("%s: model.merges[%d]: the merged token \"%.64s%.64s\" is not in the "
                         "vocabulary",
                         path, i, a, b);
            goto fail;
        }
        if (bpe_add_merge(t, ia, ib, io) < 0) goto fail;
    }
    if (bpe_finish(t) != DALLE_OK) {
        dalle_errprefix("%s: model.merges", path);
        goto fail;
    }
    strmap_free(&m);
    dalle_free(ve);
    cJSON_Delete(root);
    return t;
fail:
    strmap_free(&m);
    dalle_free(ve);
    dalle_free(cat);
    cJSON_Delete(root);
    bpe_free(t);
    return NULL;
}

bpe_tokenizer *bpe_load_mem(const char *path, const uint8_t *data, size_t n) {
    if (n >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        size_t m;
        uint8_t *raw = gunzip(data, n, &m, path);
        if (!raw) return NULL;
        bpe_tokenizer *t = bpe_load_mem(path, raw, m);
        dalle_free(raw);
        return t;
    }
    size_t i = 0;
    while (i < n && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    if (i < n && data[i] == '{') return load_json(path, (const char *)data, n);
    return load_clip(path, (const char *)data, n);
}

bpe_tokenizer *bpe_load(const char *path) {
    size_t n;
    char *data = dalle_read_file(path, &n);
    if (!data) return NULL;
    if (n > MAX_FILE) {
        dalle_free(data);
        dalle_seterr("%s: larger than %d MB", path, MAX_FILE >> 20);
        return NULL;
    }
    bpe_tokenizer *t = bpe_load_mem(path, (const uint8_t *)data, n);
    dalle_free(data);
    return t;
}

// ---------------------------------------------------------------------------
// Writing tokenizer.json

// Token id's byte-level string (NUL-terminated) into out (room for 3*len+1).
static void token_string(const bpe_tokenizer *t, int id, char *out) {
    size_t k = 0;
    for (uint32_t j = t->tok_off[id]; j < t->tok_off[id + 1]; j++) {
        uint8_t u[4];
        size_t m = uni_encode(bpe_byte_cp(t->tok_bytes[j]), u);
        memcpy(out + k, u, m);
        k += m;
    }
    out[k] = 0;
}

static cJSON *obj_type(const char *type) {
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "type", type);
    return o;
}

int bpe_save(const bpe_tokenizer *t, const char *path) {
    if (t->kind != BPE_DALLE)
        return dalle_seterr("%s: a \"%s\" tokenizer cannot be written as tokenizer.json (its "
                            "cleaning has no `tokenizers` equivalent)",
                            path, bpe_kind(t));
    size_t maxlen = 0;
    for (int i = 0; i < t->V; i++) maxlen = DALLE_MAX(maxlen, t->tok_off[i + 1] - t->tok_off[i]);
    char *s1 = dalle_malloc(3 * maxlen + 1), *s2 = dalle_malloc(6 * maxlen + 2);
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    int rc = DALLE_ERR;
    if (!s1 || !s2 || !root) goto done;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", cJSON_CreateArray());
    cJSON *nz = obj_type("Sequence"), *ns = cJSON_CreateArray();
    cJSON *rep = obj_type("Replace"), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(pat, "Regex", "\\s+");
    cJSON_AddItemToObject(rep, "pattern", pat);
    cJSON_AddStringToObject(rep, "content", " ");
    cJSON *strip = obj_type("Strip");
    cJSON_AddTrueToObject(strip, "strip_left");
    cJSON_AddTrueToObject(strip, "strip_right");
    cJSON_AddItemToArray(ns, rep);
    cJSON_AddItemToArray(ns, strip);
    cJSON_AddItemToArray(ns, obj_type("Lowercase"));
    cJSON_AddItemToObject(nz, "normalizers", ns);
    cJSON_AddItemToObject(root, "normalizer", nz);
    cJSON *pz = obj_type("Sequence"), *ps = cJSON_CreateArray();
    cJSON *split = obj_type("Split"), *sp = cJSON_CreateObject();
    cJSON_AddStringToObject(sp, "Regex", DALLE_SPLIT);
    cJSON_AddItemToObject(split, "pattern", sp);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddFalseToObject(split, "invert");
    cJSON *bl = obj_type("ByteLevel");
    cJSON_AddFalseToObject(bl, "add_prefix_space");
    cJSON_AddFalseToObject(bl, "trim_offsets");
    cJSON_AddFalseToObject(bl, "use_regex");
    cJSON_AddItemToArray(ps, split);
    cJSON_AddItemToArray(ps, bl);
    cJSON_AddItemToObject(pz, "pretokenizers", ps);
    cJSON_AddItemToObject(root, "pre_tokenizer", pz);
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = obj_type("ByteLevel");
    cJSON_AddFalseToObject(dec, "add_prefix_space");
    cJSON_AddFalseToObject(dec, "trim_offsets");
    cJSON_AddFalseToObject(dec, "use_regex");
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *model = obj_type("BPE"), *vocab = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddFalseToObject(model, "ignore_merges");
    for (int i = 0; i < t->V; i++) {
        if (!(t->tok_flags[i] & TOK_VALID)) continue;
        token_string(t, i, s1);
        cJSON_AddItemToObject(vocab, s1, cJSON_CreateNumber(i));
    }
    for (int r = 0; r < t->M; r++) {
        token_string(t, t->merge_a[r], s2);
        size_t k = strlen(s2);
        s2[k] = ' ';
        token_string(t, t->merge_b[r], s2 + k + 1);
        cJSON_AddItemToArray(merges, cJSON_CreateString(s2));
    }
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    text = cJSON_Print(root);
    if (!text) {
        dalle_seterr("%s: out of memory writing JSON", path);
        goto done;
    }
    rc = dalle_write_file_atomic(path, text, strlen(text));
done:
    cJSON_free(text);
    cJSON_Delete(root);
    dalle_free(s1);
    dalle_free(s2);
    return rc;
}
