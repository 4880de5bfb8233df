// safetensors.c: reader and writer of the safetensors checkpoint format
// (https://github.com/huggingface/safetensors), limited to F32, F16 and BF16.
// The reader checks the whole header against the file before it hands out a
// single data pointer, with the same rules as the official Rust crate: the
// tensors, sorted by offset, must tile the data region with no gap or overlap.
// The writer produces what the Python package produces: compact JSON, padded
// with spaces so that the data starts 8-byte aligned.
#include "safetensors.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

// Data is copied between the file and float arrays as raw bytes.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

// The official crate's limit: a larger header is refused before parsing.
#define ST_MAX_HEADER 100000000ull
// Integers in the header are parsed by cJSON as doubles; above 2^53 they are
// no longer exact, so larger values are refused rather than silently rounded.
#define ST_MAX_INT ((uint64_t)1 << 53)

// ---------------------------------------------------------------- dtypes

size_t st_dtype_size(st_dtype dt) {
    DALLE_ASSERT(dt == ST_F32 || dt == ST_F16 || dt == ST_BF16);
    return dt == ST_F32 ? 4 : 2;
}

const char *st_dtype_name(st_dtype dt) {
    DALLE_ASSERT(dt == ST_F32 || dt == ST_F16 || dt == ST_BF16);
    return dt == ST_F32 ? "F32" : dt == ST_F16 ? "F16" : "BF16";
}

int st_dtype_parse(const char *name, st_dtype *dt) {
    if (!strcmp(name, "f32")) *dt = ST_F32;
    else if (!strcmp(name, "f16")) *dt = ST_F16;
    else if (!strcmp(name, "bf16")) *dt = ST_BF16;
    else return DALLE_ERR;
    return DALLE_OK;
}

// ---------------------------------------------------------------- reader

// st_file as allocated: the public part, and the tensors' indices sorted by
// name so that duplicate names are found, and st_find runs, in log time.
typedef struct {
    st_file pub;
    int *by_name;
} st_file_priv;

// Records "PATH: header: ..."; returns DALLE_ERR.
static int header_err(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int header_err(const char *path, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dalle_seterr("%s: header: %s", path, msg);
}

// Records "PATH: tensor 'NAME': ...".
static int tensor_err(const char *path, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tensor_err(const char *path, const char *name, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dalle_seterr("%s: tensor '%s': %s", path, name, msg);
}

// Length of the valid UTF-8 prefix of s[0..n) (n when all of it is valid).
// Overlong forms, surrogates and code points past U+10FFFF are invalid.
static size_t utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

// A JSON number that is an integer in [0, max]; max <= 2^53 keeps it exact.
static int json_uint(const cJSON *v, double max, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= max) || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

// Writes "(a, b, c)" into buf.
static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, ")");
}

// Fills t (except `data`) from one header entry and returns its data offsets.
static int parse_entry(const char *path, const cJSON *e, st_tensor *t, size_t data_len,
                       uint64_t *begin, uint64_t *end) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return tensor_err(path, name, "entry is not a JSON object");
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *f = e->child; f; f = f->next) {
        const cJSON **slot = !strcmp(f->string, "dtype")          ? &dtype
                             : !strcmp(f->string, "shape")        ? &shape
                             : !strcmp(f->string, "data_offsets") ? &offs
                                                                  : NULL;
        if (!slot) return tensor_err(path, name, "unknown field '%s'", f->string);
        if (*slot) return tensor_err(path, name, "field '%s' given twice", f->string);
        *slot = f;
    }
    if (!dtype) return tensor_err(path, name, "no \"dtype\"");
    if (!shape) return tensor_err(path, name, "no \"shape\"");
    if (!offs) return tensor_err(path, name, "no \"data_offsets\"");

    if (!cJSON_IsString(dtype)) return tensor_err(path, name, "\"dtype\" is not a string");
    const char *ds = dtype->valuestring;
    if (!strcmp(ds, "F32")) t->dtype = ST_F32;
    else if (!strcmp(ds, "F16")) t->dtype = ST_F16;
    else if (!strcmp(ds, "BF16")) t->dtype = ST_BF16;
    else return tensor_err(path, name, "dtype '%s' is not supported (only F32, F16, BF16)", ds);

    if (!cJSON_IsArray(shape)) return tensor_err(path, name, "\"shape\" is not an array");
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return tensor_err(path, name, "%d dimensions, more than the %d supported", ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    t->numel = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, (double)ST_MAX_INT, &v))
            return tensor_err(path, name, "shape[%d] is not an integer in [0, 2^53]", i);
        t->shape[i] = (int64_t)v;
        // checked in order, as the official crate does: an overflowing
        // prefix is an error even when a later dimension is 0
        if (v && t->numel > INT64_MAX / (int64_t)v)
            return tensor_err(path, name, "shape's element count overflows int64");
        t->numel *= (int64_t)v;
    }

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return tensor_err(path, name, "\"data_offsets\" is not an array [begin, end]");
    if (!json_uint(offs->child, (double)data_len, begin) ||
        !json_uint(offs->child->next, (double)data_len, end))
        return tensor_err(path, name, "data_offsets are not integers in [0, %zu] (the data length)",
                          data_len);
    if (*begin > *end)
        return tensor_err(path, name, "data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                          *begin, *end);
    size_t dsize = st_dtype_size(t->dtype), nbytes = (size_t)(*end - *begin);
    if (nbytes % dsize || (uint64_t)(nbytes / dsize) != (uint64_t)t->numel) {
        char s[256];
        shape_str(s, sizeof s, t->ndim, t->shape);
        return tensor_err(path, name, "data_offsets span %zu bytes, but %s %s needs %" PRId64 " x %zu",
                          nbytes, st_dtype_name(t->dtype), s, t->numel, dsize);
    }
    t->nbytes = nbytes;
    return DALLE_OK;
}

// Sort records carry their own keys (qsort has no context pointer) and the
// tensor's index, which also breaks ties so the reported name is stable.
typedef struct {
    uint64_t begin, end;
    int idx;
} span;

static int cmp_span(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

typedef struct {
    const char *name;
    int idx;
} named;

static int cmp_named(const void *pa, const void *pb) {
    const named *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

// Stores "__metadata__" (an object of strings) into f. Duplicate keys are
// found by sorting, so that a huge header cannot make this quadratic.
static int parse_metadata(const char *path, const cJSON *m, st_file *f) {
    if (!cJSON_IsObject(m)) return header_err(path, "__metadata__ is not a JSON object");
    int n = cJSON_GetArraySize(m);
    size_t nalloc = n ? (size_t)n : 1;
    f->meta_keys = dalle_calloc(nalloc, sizeof(char *));
    f->meta_vals = dalle_calloc(nalloc, sizeof(char *));
    named *nm = dalle_calloc(nalloc, sizeof *nm);
    int rc = DALLE_ERR;
    if (!f->meta_keys || !f->meta_vals || !nm) {
        dalle_errprefix("%s", path);
        goto done;
    }
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            header_err(path, "__metadata__: value of '%s' is not a string", e->string);
            goto done;
        }
        // n_meta counts complete pairs so that st_close frees exactly those
        char *key = dalle_strdup(e->string), *val = dalle_strdup(e->valuestring);
        if (!key || !val) {
            dalle_free(key);
            dalle_free(val);
            dalle_errprefix("%s", path);
            goto done;
        }
        nm[f->n_meta] = (named){key, f->n_meta};
        f->meta_keys[f->n_meta] = key;
        f->meta_vals[f->n_meta++] = val;
    }
    qsort(nm, (size_t)n, sizeof *nm, cmp_named);
    for (int i = 1; i < n; i++)
        if (!strcmp(nm[i].name, nm[i - 1].name)) {
            header_err(path, "__metadata__: key '%s' given twice", nm[i].name);
            goto done;
        }
    rc = DALLE_OK;
done:
    dalle_free(nm);
    return rc;
}

// The tensors sorted by (begin, end) must cover [0, data_len) exactly.
static int check_tiling(const char *path, const st_file *f, const span *sp, size_t data_len) {
    uint64_t at = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[sp[i].idx].name;
        if (sp[i].begin > at)
            return tensor_err(path, name, "data starts at byte %" PRIu64 ", leaving a gap after byte %" PRIu64,
                              sp[i].begin, at);
        if (sp[i].begin < at)
            return tensor_err(path, name, "data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' (ends at %" PRIu64 ")",
                              sp[i].begin, sp[i].end, f->tensors[sp[i - 1].idx].name, at);
        at = sp[i].end;
    }
    if (at != data_len)
        return header_err(path, "tensors cover %" PRIu64 " of the %zu data bytes after the header", at,
                          data_len);
    return DALLE_OK;
}

// Validates the header and fills f; buf/len are already in f.
static int parse_file(st_file_priv *fp) {
    st_file *f = &fp->pub;
    const char *path = f->path;
    if (f->len < 8)
        return header_err(path, "file is %zu bytes, too short for the 8-byte header length", f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->buf[i];
    if (hlen > ST_MAX_HEADER)
        return header_err(path, "length %" PRIu64 " exceeds the %llu-byte limit", hlen, ST_MAX_HEADER);
    if (hlen > f->len - 8)
        return header_err(path, "length %" PRIu64 " runs past the end of the file (%zu bytes follow it)",
                          hlen, f->len - 8);
    const uint8_t *h = f->buf + 8;
    size_t data_len = f->len - 8 - (size_t)hlen;
    // The crate requires '{' first; JSON itself forbids raw control bytes.
    if (hlen == 0 || h[0] != '{') return header_err(path, "does not start with '{'");
    size_t good = utf8_valid_prefix(h, (size_t)hlen);
    if (good != hlen) return header_err(path, "invalid UTF-8 at byte %zu", good);
    for (size_t i = 0; i < hlen; i++)
        if (h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r')
            return header_err(path, "control byte 0x%02x at byte %zu", h[i], i);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)h, (size_t)hlen, &end, 0);
    if (!root) return header_err(path, "not valid JSON (at byte %td)", end - (const char *)h);
    int rc = DALLE_ERR;
    span *sp = NULL;
    named *nm = NULL;
    // after the JSON only padding may follow (the writer pads with spaces)
    for (const char *p = end; p < (const char *)h + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            header_err(path, "unexpected text after the JSON object at byte %td", p - (const char *)h);
            goto done;
        }
    DALLE_ASSERT(cJSON_IsObject(root)); // it parsed, and starts with '{'

    const cJSON *meta = NULL;
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__")) {
            n++;
        } else if (meta) {
            header_err(path, "__metadata__ given twice");
            goto done;
        } else {
            meta = e;
        }
    }
    if (meta && parse_metadata(path, meta, f)) goto done;

    size_t nalloc = n ? (size_t)n : 1;
    f->tensors = dalle_calloc(nalloc, sizeof *f->tensors);
    fp->by_name = dalle_calloc(nalloc, sizeof *fp->by_name);
    sp = dalle_calloc(nalloc, sizeof *sp);
    nm = dalle_calloc(nalloc, sizeof *nm);
    if (!f->tensors || !fp->by_name || !sp || !nm) {
        dalle_errprefix("%s", path);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == meta) continue;
        if (!e->string[0]) {
            header_err(path, "a tensor has an empty name");
            goto done;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        if (parse_entry(path, e, t, data_len, &sp[f->n_tensors].begin, &sp[f->n_tensors].end))
            goto done;
        if (!(t->name = dalle_strdup(e->string))) {
            dalle_errprefix("%s", path);
            goto done;
        }
        t->data = h + hlen + sp[f->n_tensors].begin;
        sp[f->n_tensors].idx = f->n_tensors;
        nm[f->n_tensors] = (named){t->name, f->n_tensors};
        f->n_tensors++;
    }

    qsort(nm, (size_t)n, sizeof *nm, cmp_named);
    for (int i = 0; i < n; i++) {
        if (i && !strcmp(nm[i].name, nm[i - 1].name)) {
            tensor_err(path, nm[i].name, "name given twice");
            goto done;
        }
        fp->by_name[i] = nm[i].idx;
    }
    qsort(sp, (size_t)n, sizeof *sp, cmp_span);
    rc = check_tiling(path, f, sp, data_len);
done:
    dalle_free(sp);
    dalle_free(nm);
    cJSON_Delete(root);
    return rc;
}

// Takes ownership of buf (len bytes) and validates it; NULL on error.
static st_file *open_buf(uint8_t *buf, size_t len, const char *name) {
    st_file_priv *fp = dalle_calloc(1, sizeof *fp);
    char *path = dalle_strdup(name);
    if (!fp || !path) {
        dalle_free(fp);
        dalle_free(path);
        dalle_free(buf);
        dalle_errprefix("%s", name);
        return NULL;
    }
    fp->pub.path = path;
    fp->pub.buf = buf;
    fp->pub.len = len;
    if (parse_file(fp)) {
        st_close(&fp->pub);
        return NULL;
    }
    return &fp->pub;
}

st_file *st_open(const char *path) {
    size_t len;
    char *buf = dalle_read_file(path, &len);
    if (!buf) return NULL;
    return open_buf((uint8_t *)buf, len, path);
}

st_file *st_open_mem(const void *data, size_t len, const char *name) {
    uint8_t *buf = dalle_malloc(len ? len : 1);
    if (!buf) {
        dalle_errprefix("%s", name);
        return NULL;
    }
    if (len) memcpy(buf, data, len);
    return open_buf(buf, len, name);
}

void st_close(st_file *f) {
    if (!f) return;
    st_file_priv *fp = (st_file_priv *)f;
    for (int i = 0; i < f->n_tensors; i++) dalle_free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        dalle_free(f->meta_keys[i]);
        dalle_free(f->meta_vals[i]);
    }
    dalle_free(f->tensors);
    dalle_free(f->meta_keys);
    dalle_free(f->meta_vals);
    dalle_free(fp->by_name);
    dalle_free(f->buf);
    dalle_free(f->path);
    dalle_free(fp);
}

int st_check_names(const st_file *f, const char *const *prefixes, int n, int (*known)(const void *ctx, const char *name),
                   const void *ctx, const char *why) {
    for (int i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        int ok = 0;
        for (int p = 0; p < n && !ok; p++) {
            size_t k = strlen(prefixes[p]);
            ok = !strncmp(name, prefixes[p], k) && known(ctx, name + k);
        }
        if (!ok) return dalle_seterr("%s: unexpected tensor '%s' (%s)", f->path, name, why);
    }
    return DALLE_OK;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    const st_file_priv *fp = (const st_file_priv *)f;
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const st_tensor *t = &f->tensors[fp->by_name[mid]];
        int c = strcmp(name, t->name);
        if (!c) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

int st_read_f32(const st_file *f, const char *name, float *out, int ndim, const int64_t *shape) {
    DALLE_ASSERT(ndim >= 0 && ndim <= ST_MAX_DIMS && (shape || !ndim));
    const st_tensor *t = st_find(f, name);
    if (!t) return dalle_seterr("%s: missing tensor '%s'", f->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[256], want[256];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(want, sizeof want, ndim, shape);
        return tensor_err(f->path, name, "shape %s, expected %s", got, want);
    }
    // t->data may sit at any byte offset: read element bytes, never cast.
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        if (t->nbytes) memcpy(out, p, t->nbytes);
        break;
    case ST_F16:
        for (int64_t i = 0; i < t->numel; i++)
            out[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case ST_BF16:
        for (int64_t i = 0; i < t->numel; i++)
            out[i] = bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    }
    return DALLE_OK;
}

// ---------------------------------------------------------------- writer

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const float *data;
} wtensor;

struct st_writer {
    wtensor *t;
    int n, cap;
    struct {
        char *key, *val;
    } *meta;
    int n_meta, cap_meta;
};

st_writer *st_writer_new(void) { return dalle_calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) dalle_free(w->t[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        dalle_free(w->meta[i].key);
        dalle_free(w->meta[i].val);
    }
    dalle_free(w->t);
    dalle_free(w->meta);
    dalle_free(w);
}

// arr (of `elem`-byte items) grown to hold at least need items, or NULL
// (arr untouched) on out-of-memory.
static void *grow(void *arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return arr;
    int ncap = *cap ? *cap * 2 : 16;
    void *p = dalle_realloc(arr, (size_t)ncap * elem);
    if (p) *cap = ncap;
    return p;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, const float *data, int ndim,
                  const int64_t *shape) {
    DALLE_ASSERT(dtype == ST_F32 || dtype == ST_F16 || dtype == ST_BF16);
    size_t nlen = strlen(name);
    if (!nlen) return dalle_seterr("safetensors writer: a tensor has an empty name");
    if (utf8_valid_prefix((const uint8_t *)name, nlen) != nlen)
        return dalle_seterr("safetensors writer: tensor '%s': name is not valid UTF-8", name);
    if (!strcmp(name, "__metadata__"))
        return dalle_seterr("safetensors writer: tensor '__metadata__': name is reserved");
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return dalle_seterr("safetensors writer: tensor '%s': %d dimensions (at most %d)", name, ndim,
                            ST_MAX_DIMS);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return dalle_seterr("safetensors writer: tensor '%s': added twice", name);
    // the byte count must stay within the reader's 2^53 integer limit
    const int64_t limit = (int64_t)ST_MAX_INT;
    int64_t nbytes = (int64_t)st_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return dalle_seterr("safetensors writer: tensor '%s': shape[%d] = %" PRId64 " is negative",
                                name, i, shape[i]);
        if (shape[i] > limit || (shape[i] && nbytes > limit / shape[i]))
            return dalle_seterr("safetensors writer: tensor '%s': too large", name);
        nbytes *= shape[i];
    }
    if ((uint64_t)nbytes > SIZE_MAX)
        return dalle_seterr("safetensors writer: tensor '%s': too large", name);
    DALLE_ASSERT(data || nbytes == 0);
    wtensor *arr = grow(w->t, &w->cap, w->n + 1, sizeof *w->t);
    if (!arr) return DALLE_ERR;
    w->t = arr;
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = dalle_strdup(name))) return DALLE_ERR;
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = (size_t)nbytes;
    t->data = data;
    w->n++;
    return DALLE_OK;
}

int st_writer_meta(st_writer *w, const char *key, const char *value) {
    size_t kl = strlen(key), vl = strlen(value);
    if (utf8_valid_prefix((const uint8_t *)key, kl) != kl ||
        utf8_valid_prefix((const uint8_t *)value, vl) != vl)
        return dalle_seterr("safetensors writer: metadata '%s': not valid UTF-8", key);
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[i].key, key))
            return dalle_seterr("safetensors writer: metadata '%s': set twice", key);
    void *arr = grow(w->meta, &w->cap_meta, w->n_meta + 1, sizeof *w->meta);
    if (!arr) return DALLE_ERR;
    w->meta = arr;
    char *k = dalle_strdup(key), *v = dalle_strdup(value);
    if (!k || !v) {
        dalle_free(k);
        dalle_free(v);
        return DALLE_ERR;
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta++].val = v;
    return DALLE_OK;
}

// A growable text buffer for the header.
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = DALLE_MAX(b->cap * 2, b->len + n + 1 + 256);
        char *p = dalle_realloc(b->s, ncap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    DALLE_ASSERT(n >= 0 && (size_t)n < sizeof tmp); // only short numeric fields go through here
    sb_put(b, tmp, (size_t)n);
}

// Appends s as a JSON string: quotes, backslashes and control bytes escaped,
// UTF-8 (checked on entry) passed through.
static void sb_json_str(sbuf *b, const char *s) {
    sb_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_str(b, "\"");
}

int st_writer_save(st_writer *w, const char *path) {
    sbuf b = {0};
    sb_str(&b, "{");
    if (w->n_meta) {
        sb_str(&b, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&b, ",");
            sb_json_str(&b, w->meta[i].key);
            sb_str(&b, ":");
            sb_json_str(&b, w->meta[i].val);
        }
        sb_str(&b, "}");
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        if (i || w->n_meta) sb_str(&b, ",");
        sb_json_str(&b, t->name);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) sb_printf(&b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        if (off > SIZE_MAX - t->nbytes || off + t->nbytes > ST_MAX_INT) {
            dalle_free(b.s);
            return dalle_seterr("%s: tensor '%s': the file would be too large", path, t->name);
        }
        sb_printf(&b, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        off += t->nbytes;
    }
    sb_str(&b, "}");
    // pad so that the data starts 8-byte aligned, as the Python package does
    while (!b.failed && b.len % 8) sb_str(&b, " ");
    if (b.failed) {
        dalle_free(b.s);
        return dalle_errprefix("%s", path);
    }
    if (b.len > ST_MAX_HEADER) {
        dalle_free(b.s);
        return dalle_seterr("%s: header: %zu bytes, more than the %llu the format allows", path, b.len,
                            ST_MAX_HEADER);
    }
    if (off > SIZE_MAX - 8 - b.len) {
        dalle_free(b.s);
        return dalle_seterr("%s: the file would be too large", path);
    }
    size_t total = 8 + b.len + off;
    uint8_t *out = dalle_malloc(total);
    if (!out) {
        dalle_free(b.s);
        return dalle_errprefix("%s", path);
    }
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)b.len >> (8 * i));
    memcpy(out + 8, b.s, b.len);
    dalle_free(b.s);
    uint8_t *p = out + 8 + b.len;
    for (int i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        size_t numel = t->nbytes / st_dtype_size(t->dtype);
        if (t->dtype == ST_F32) {
            if (numel) memcpy(p, t->data, t->nbytes);
        } else {
            for (size_t k = 0; k < numel; k++) {
                uint16_t h = t->dtype == ST_F16 ? f32_to_f16(t->data[k]) : f32_to_bf16(t->data[k]);
                p[2 * k] = (uint8_t)h;
                p[2 * k + 1] = (uint8_t)(h >> 8);
            }
        }
        p += t->nbytes;
    }
    int rc = dalle_write_file_atomic(path, out, total);
    dalle_free(out);
    return rc;
}

int st_meta_int(const st_file *f, const char *key, long long *out) {
    const char *v = st_meta(f, key);
    char *end;
    if (!v) return dalle_seterr("%s: metadata '%s' missing (not a training checkpoint?)", f->path, key);
    *out = strtoll(v, &end, 10);
    if (*end || end == v) return dalle_seterr("%s: metadata '%s' is not an integer: '%s'", f->path, key, v);
    return DALLE_OK;
}
