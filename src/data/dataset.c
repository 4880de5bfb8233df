// dataset.c: the .dset file (dataset.h): a validating reader over mmap and an
// atomic writer (images streamed to a temporary file, index and captions
// appended at the end, the header with the checksum written last).
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "data/dataset.h"
#include "dalle/dalle.h"
#include "text/unicode.h"

enum { HDR = 64, ENTRY = 32, MAX_CAPTIONS = 65535 };
static const char MAGIC[8] = {'D', 'A', 'L', 'L', 'E', 'D', 'S', 'T'};

uint64_t dset_fnv(const void *data, size_t n) { return dalle_fnv1a(DALLE_FNV_START, data, n); }

int dset_split_of(const char *name, int val_permille) {
    return (int)(dset_fnv(name, strlen(name)) % 1000) < val_permille ? DSET_VAL : DSET_TRAIN;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// ---------------------------------------------------------------- reader

struct dset {
    const uint8_t *base;
    size_t size;
    int mapped;     // base is an mmap
    int owned;      // base is a dalle_malloc'ed copy
    int S;
    int64_t n;
    const uint8_t *index, *captions;
    uint64_t captions_bytes;
    char *name;
};

static dset *validate(dset *d) {
    const uint8_t *p = d->base;
    const char *name = d->name;
    if (d->size < HDR || memcmp(p, MAGIC, 8)) {
        dalle_seterr("%s: not a dalle.c dataset (no DALLEDST header)", name);
        return NULL;
    }
    uint32_t version = rd32(p + 8), S = rd32(p + 12);
    uint64_t n = rd64(p + 16), ioff = rd64(p + 24), coff = rd64(p + 32), cbytes = rd64(p + 40), sum = rd64(p + 48);
    if (version != 1) return dalle_seterr("%s: dataset version %u (this build reads 1)", name, version), NULL;
    if (S < 1 || S > 4096) return dalle_seterr("%s: image size %u is outside [1, 4096]", name, S), NULL;
    if (rd64(p + 56)) return dalle_seterr("%s: reserved header bytes are not zero", name), NULL;
    uint64_t img = (uint64_t)S * S * 3;
    if (n > ((uint64_t)1 << 40) / img) return dalle_seterr("%s: %llu items is too many", name, (unsigned long long)n), NULL;
    if (ioff != HDR + n * img || coff != ioff + n * ENTRY || cbytes > d->size || coff + cbytes != d->size) {
        dalle_seterr("%s: the layout does not match the file (%zu bytes; %llu items of %ux%u need the index at %llu, "
                     "captions at %llu): truncated or corrupt",
                     name, d->size, (unsigned long long)n, S, S, (unsigned long long)(HDR + n * img),
                     (unsigned long long)(HDR + n * img + n * ENTRY));
        return NULL;
    }
    if (dset_fnv(p + HDR, d->size - HDR) != sum) return dalle_seterr("%s: checksum mismatch (corrupt file)", name), NULL;
    d->S = (int)S;
    d->n = (int64_t)n;
    d->index = p + ioff;
    d->captions = p + coff;
    d->captions_bytes = cbytes;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = d->index + i * ENTRY;
        uint64_t off = rd64(e);
        uint32_t len = rd32(e + 8);
        unsigned nc = (unsigned)e[12] | (unsigned)e[13] << 8, split = e[14];
        if (off > cbytes || len > cbytes - off || nc < 1 || split > DSET_TEST || e[15])
            return dalle_seterr("%s: item %llu: bad index entry", name, (unsigned long long)i), NULL;
        // exactly nc captions, each non-empty valid UTF-8 ending in '\n', no NUL
        const uint8_t *c = d->captions + off, *end = c + len;
        unsigned count = 0;
        while (c < end) {
            const uint8_t *nl = memchr(c, '\n', (size_t)(end - c));
            if (!nl || nl == c) break;
            for (const uint8_t *q = c; q < nl;) {
                uint32_t cp;
                size_t k = uni_decode(q, (size_t)(nl - q), &cp);
                if (cp >= UNI_BAD_BYTE || cp == 0)
                    return dalle_seterr("%s: item %llu: a caption is not valid UTF-8", name, (unsigned long long)i), NULL;
                q += k;
            }
            count++;
            c = nl + 1;
        }
        if (c != end || count != nc)
            return dalle_seterr("%s: item %llu: its captions do not match the index", name, (unsigned long long)i), NULL;
    }
    return d;
}

dset *dset_open(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        dalle_seterr("%s: cannot open", path);
        return NULL;
    }
    struct stat st;
    dset *d = dalle_calloc(1, sizeof *d);
    if (!d || fstat(fd, &st) || !(d->name = dalle_strdup(path))) {
        close(fd);
        dalle_free(d);
        dalle_seterr("%s: cannot stat", path);
        return NULL;
    }
    d->size = (size_t)st.st_size;
    if (d->size >= HDR) {
        void *m = mmap(NULL, d->size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            dalle_seterr("%s: cannot map", path);
            dset_close(d);
            return NULL;
        }
        d->base = m;
        d->mapped = 1;
    } else {
        d->base = (const uint8_t *)"";
    }
    close(fd);
    if (!validate(d)) {
        dset_close(d);
        return NULL;
    }
    return d;
}

dset *dset_open_mem(const void *data, size_t n, const char *name) {
    dset *d = dalle_calloc(1, sizeof *d);
    uint8_t *copy = dalle_malloc(n ? n : 1);
    if (!d || !copy || !(d->name = dalle_strdup(name))) {
        dalle_free(d);
        dalle_free(copy);
        return NULL;
    }
    if (n) memcpy(copy, data, n);
    d->base = copy;
    d->owned = 1;
    d->size = n;
    if (!validate(d)) {
        dset_close(d);
        return NULL;
    }
    return d;
}

void dset_close(dset *d) {
    if (!d) return;
    if (d->mapped) munmap((void *)d->base, d->size);
    else if (d->owned) dalle_free((void *)d->base);
    dalle_free(d->name);
    dalle_free(d);
}

int64_t dset_count(const dset *d) { return d->n; }
int dset_image_size(const dset *d) { return d->S; }
const uint8_t *dset_image(const dset *d, int64_t i) {
    DALLE_ASSERT(i >= 0 && i < d->n);
    return d->base + HDR + (uint64_t)i * d->S * d->S * 3;
}
int dset_split(const dset *d, int64_t i) {
    DALLE_ASSERT(i >= 0 && i < d->n);
    return d->index[(uint64_t)i * ENTRY + 14];
}
int dset_caption_count(const dset *d, int64_t i) {
    DALLE_ASSERT(i >= 0 && i < d->n);
    const uint8_t *e = d->index + (uint64_t)i * ENTRY;
    return e[12] | e[13] << 8;
}
const char *dset_caption(const dset *d, int64_t i, int k, size_t *len) {
    DALLE_ASSERT(k >= 0 && k < dset_caption_count(d, i));
    const uint8_t *e = d->index + (uint64_t)i * ENTRY;
    const char *c = (const char *)d->captions + rd64(e), *end = c + rd32(e + 8);
    for (int j = 0; j < k; j++) c = (const char *)memchr(c, '\n', (size_t)(end - c)) + 1; // validated
    *len = (size_t)((const char *)memchr(c, '\n', (size_t)(end - c)) - c);
    return c;
}

// ---------------------------------------------------------------- writer

struct dset_writer {
    char *path, *tmp;
    FILE *f;
    int S;
    int64_t n;
    uint8_t *index;       // (n, ENTRY)
    size_t index_cap;
    char *caps;           // captions text
    size_t caps_n, caps_cap;
    uint64_t *img_hash;   // (n) the pixels' hashes, in item order
    uint64_t *seen;       // (seen_cap) open-addressing set of them, 0 = empty
    size_t seen_cap;
    uint64_t sum;         // running FNV of the images
};

dset_writer *dset_writer_open(const char *path, int image_size) {
    if (image_size < 1 || image_size > 4096) {
        dalle_seterr("%s: image size %d is outside [1, 4096]", path, image_size);
        return NULL;
    }
    dset_writer *w = dalle_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->S = image_size;
    w->path = dalle_strdup(path);
    w->tmp = dalle_malloc(strlen(path) + 32);
    if (!w->path || !w->tmp) goto fail;
    sprintf(w->tmp, "%s.tmp.%d", path, (int)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        dalle_seterr("%s: cannot create", w->tmp);
        goto fail;
    }
    static const uint8_t zero[HDR] = {0};
    if (fwrite(zero, 1, HDR, w->f) != HDR) goto io;
    w->sum = DALLE_FNV_START;
    return w;
io:
    dalle_seterr("%s: write error", w->tmp);
fail:
    dset_writer_abort(w);
    return NULL;
}

int dset_writer_has_image(const dset_writer *w, const uint8_t *pixels) {
    uint64_t h = dset_fnv(pixels, (size_t)w->S * w->S * 3) | 1;
    if (!w->seen_cap) return 0;
    for (size_t i = h & (w->seen_cap - 1);; i = (i + 1) & (w->seen_cap - 1)) {
        if (w->seen[i] == h) return 1;
        if (!w->seen[i]) return 0;
    }
}

// Adds hash h (| 1, never 0) to the set, growing it to stay under half full.
static int seen_add(dset_writer *w, uint64_t h) {
    h |= 1;
    if (2 * ((size_t)w->n + 1) > w->seen_cap) {
        size_t cap = w->seen_cap ? w->seen_cap * 2 : 4096;
        uint64_t *s = dalle_calloc(cap, sizeof *s);
        if (!s) return DALLE_ERR;
        for (int64_t i = 0; i < w->n; i++) {
            uint64_t v = w->img_hash[i] | 1;
            size_t j = v & (cap - 1);
            while (s[j] && s[j] != v) j = (j + 1) & (cap - 1);
            s[j] = v;
        }
        dalle_free(w->seen);
        w->seen = s;
        w->seen_cap = cap;
    }
    size_t j = h & (w->seen_cap - 1);
    while (w->seen[j] && w->seen[j] != h) j = (j + 1) & (w->seen_cap - 1);
    w->seen[j] = h;
    return DALLE_OK;
}

int64_t dset_writer_count(const dset_writer *w) { return w->n; }

int dset_writer_add(dset_writer *w, const uint8_t *pixels, const char *const *captions, int n, int split,
                    const char *source) {
    if (n < 1 || n > MAX_CAPTIONS) return dalle_seterr("%s: %d captions for one image", w->path, n);
    if (split < DSET_TRAIN || split > DSET_TEST) return dalle_seterr("%s: bad split %d", w->path, split);
    size_t need = 0;
    for (int k = 0; k < n; k++) {
        size_t len = strlen(captions[k]);
        if (!len || memchr(captions[k], '\n', len))
            return dalle_seterr("%s: caption '%s' of %s is empty or has a line break", w->path, captions[k], source);
        for (size_t q = 0; q < len;) {
            uint32_t cp;
            q += uni_decode((const uint8_t *)captions[k] + q, len - q, &cp);
            if (cp >= UNI_BAD_BYTE) return dalle_seterr("%s: a caption of %s is not valid UTF-8", w->path, source);
        }
        need += len + 1;
    }
    if (need > UINT32_MAX) return dalle_seterr("%s: the captions of %s are too long", w->path, source);
    size_t img = (size_t)w->S * w->S * 3;
    if (fwrite(pixels, 1, img, w->f) != img) return dalle_seterr("%s: write error", w->tmp);
    w->sum = dalle_fnv1a(w->sum, pixels, img);
    if ((size_t)(w->n + 1) * ENTRY > w->index_cap) {
        size_t cap = w->index_cap ? w->index_cap * 2 : 1024 * ENTRY;
        uint8_t *p = dalle_realloc(w->index, cap);
        uint64_t *hh = dalle_realloc(w->img_hash, cap / ENTRY * sizeof(uint64_t));
        if (p) w->index = p;
        if (hh) w->img_hash = hh;
        if (!p || !hh) return DALLE_ERR;
        w->index_cap = cap;
    }
    if (w->caps_n + need > w->caps_cap) {
        size_t cap = w->caps_cap ? w->caps_cap : 1 << 16;
        while (cap < w->caps_n + need) cap *= 2;
        char *p = dalle_realloc(w->caps, cap);
        if (!p) return DALLE_ERR;
        w->caps = p;
        w->caps_cap = cap;
    }
    uint8_t *e = w->index + (size_t)w->n * ENTRY;
    memset(e, 0, ENTRY);
    wr64(e, w->caps_n);
    wr32(e + 8, (uint32_t)need);
    e[12] = (uint8_t)n, e[13] = (uint8_t)(n >> 8), e[14] = (uint8_t)split;
    wr64(e + 16, dset_fnv(source, strlen(source)));
    w->img_hash[w->n] = dset_fnv(pixels, img);
    wr64(e + 24, w->img_hash[w->n]);
    if (seen_add(w, w->img_hash[w->n])) return DALLE_ERR;
    for (int k = 0; k < n; k++) {
        size_t len = strlen(captions[k]);
        memcpy(w->caps + w->caps_n, captions[k], len);
        w->caps[w->caps_n + len] = '\n';
        w->caps_n += len + 1;
    }
    w->n++;
    return DALLE_OK;
}

int dset_writer_finish(dset_writer *w) {
    int rc = DALLE_ERR;
    if (w->n == 0) {
        dalle_seterr("%s: no items to write", w->path);
        goto done;
    }
    size_t img = (size_t)w->S * w->S * 3;
    uint64_t ioff = HDR + (uint64_t)w->n * img, coff = ioff + (uint64_t)w->n * ENTRY;
    if (fwrite(w->index, 1, (size_t)w->n * ENTRY, w->f) != (size_t)w->n * ENTRY ||
        fwrite(w->caps, 1, w->caps_n, w->f) != w->caps_n)
        goto io;
    uint64_t sum = dalle_fnv1a(dalle_fnv1a(w->sum, w->index, (size_t)w->n * ENTRY), w->caps, w->caps_n);
    uint8_t h[HDR] = {0};
    memcpy(h, MAGIC, 8);
    wr32(h + 8, 1);
    wr32(h + 12, (uint32_t)w->S);
    wr64(h + 16, (uint64_t)w->n);
    wr64(h + 24, ioff);
    wr64(h + 32, coff);
    wr64(h + 40, w->caps_n);
    wr64(h + 48, sum);
    if (fseek(w->f, 0, SEEK_SET) || fwrite(h, 1, HDR, w->f) != HDR || fflush(w->f) || fsync(fileno(w->f))) goto io;
    if (fclose(w->f)) {
        w->f = NULL;
        goto io;
    }
    w->f = NULL;
    if (rename(w->tmp, w->path)) {
        dalle_seterr("%s: cannot rename %s into place", w->path, w->tmp);
        goto done;
    }
    rc = DALLE_OK;
    goto done;
io:
    dalle_seterr("%s: write error", w->tmp);
done:
    if (rc != DALLE_OK && w->tmp) unlink(w->tmp);
    if (w->f) fclose(w->f);
    w->f = NULL;
    dalle_free(w->path);
    dalle_free(w->tmp);
    dalle_free(w->index);
    dalle_free(w->img_hash);
    dalle_free(w->seen);
    dalle_free(w->caps);
    dalle_free(w);
    return rc;
}

void dset_writer_abort(dset_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    dalle_free(w->path);
    dalle_free(w->tmp);
    dalle_free(w->index);
    dalle_free(w->img_hash);
    dalle_free(w->seen);
    dalle_free(w->caps);
    dalle_free(w);
}
