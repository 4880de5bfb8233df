// shard.c: reader and writer of the training shard (format in shard.h). The
// reader maps the file and checks the header, the size and every id before it
// hands out a single record, so the trainer can index records without checks;
// the writer refuses what the reader would refuse, before creating the file.
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"

// Ids are loaded with memcpy into host integers.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard.c assumes a little-endian host (the format is little-endian)"
#endif

struct shard {
    char *path;          // for messages
    const uint8_t *data; // the whole file (len bytes)
    size_t len;
    int mapped;          // 1: mmap'ed (munmap), 0: dalle_malloc'ed copy
    int id_bytes;        // 2 or 4
    shard_info info;
};

// ---------------------------------------------------------------- shared rules

// Records "PATH: header: ..."; returns DALLE_ERR.
static int header_err(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int header_err(const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dalle_seterr("%s: header: %s", path, msg);
}

// The message for an id out of range, the same from the reader and the writer.
static int bad_id_err(const char *path, int64_t rec, int is_text, int64_t pos, int64_t value, int64_t limit) {
    return dalle_seterr("%s: record %" PRId64 ": %s at position %" PRId64 " is %" PRId64 ", not in [0, %" PRId64
                        ") (%s)",
                        path, rec, is_text ? "text id" : "image code", pos, value, limit,
                        is_text ? "text_vocab + text_len" : "image_vocab");
}

// The header's sizes: positive, within int32, N = G*G, text ids within int32.
static int check_sizes(const char *path, int64_t L, int64_t N, int64_t G, int64_t Vt, int64_t Vi) {
    const struct {
        const char *name;
        int64_t v;
    } f[] = {{"text_len", L}, {"n_image", N}, {"grid", G}, {"text_vocab", Vt}, {"image_vocab", Vi}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        if (f[i].v <= 0) return header_err(path, "%s is %" PRId64 " (must be positive)", f[i].name, f[i].v);
        if (f[i].v > INT32_MAX)
            return header_err(path, "%s is %" PRId64 ", more than 2^31 - 1", f[i].name, f[i].v);
    }
    if (G * G != N)
        return header_err(path, "n_image is %" PRId64 ", but grid^2 = %" PRId64 "^2 = %" PRId64, N, G, G * G);
    if (Vt + L > INT32_MAX)
        return header_err(path, "text_vocab + text_len = %" PRId64 " is more than 2^31 - 1 (text ids are int32)",
                          Vt + L);
    return DALLE_OK;
}

// The one id width a shard with these sizes has.
static int id_bytes_for(int64_t L, int64_t Vt, int64_t Vi) { return Vt + L <= 65535 && Vi <= 65535 ? 2 : 4; }

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

// The largest of n ids at p (a loop without exits, so that it vectorises).
static uint32_t max_ids(const uint8_t *p, int64_t n, int id_bytes) {
    uint32_t m = 0;
    if (id_bytes == 2) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            m = v > m ? v : m;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            m = v > m ? v : m;
        }
    }
    return m;
}

static uint32_t load_id(const uint8_t *p, int64_t i, int id_bytes) {
    if (id_bytes == 2) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

// ---------------------------------------------------------------- reader

// Validates s->data[0..len) and fills s->info and s->id_bytes.
static int parse(shard *s) {
    const uint8_t *b = s->data;
    const char *path = s->path;
    if (s->len < SHARD_HEADER_BYTES)
        return dalle_seterr("%s: %zu bytes, too short for the %d-byte shard header", path, s->len,
                            SHARD_HEADER_BYTES);
    if (memcmp(b, SHARD_MAGIC, 8)) return header_err(path, "magic is not \"" SHARD_MAGIC "\" (not a dalle shard)");
    uint32_t version = rd32(b + 8);
    if (version != SHARD_VERSION)
        return header_err(path, "version %" PRIu32 ", this build reads only version %d", version, SHARD_VERSION);
    int64_t L = rd32(b + 12), N = rd32(b + 16), G = rd32(b + 20), Vt = rd32(b + 24), Vi = rd32(b + 28);
    if (check_sizes(path, L, N, G, Vt, Vi)) return DALLE_ERR;
    uint32_t id_bytes = rd32(b + 32), reserved = rd32(b + 36);
    if (reserved) return header_err(path, "the reserved u32 at byte 36 is %" PRIu32 ", must be 0", reserved);
    for (int k = 56; k < SHARD_HEADER_BYTES; k++)
        if (b[k]) return header_err(path, "reserved byte %d is 0x%02x, must be 0", k, b[k]);
    if (id_bytes != 2 && id_bytes != 4) return header_err(path, "id_bytes is %" PRIu32 ", must be 2 or 4", id_bytes);
    int want = id_bytes_for(L, Vt, Vi);
    if ((int)id_bytes != want)
        return header_err(path,
                          "id_bytes is %" PRIu32 ", but text_vocab + text_len = %" PRId64 " and image_vocab = %" PRId64
                          " make it %d (2 when both are at most 65535)",
                          id_bytes, Vt + L, Vi, want);
    uint64_t n = rd64(b + 40);
    if (n == 0) return header_err(path, "n_records is 0 (a shard holds at least one record)");
    uint64_t rec = (uint64_t)(L + N) * id_bytes; // < 2^34
    if (n > (UINT64_MAX - SHARD_HEADER_BYTES) / rec)
        return header_err(path, "n_records %" PRIu64 " of %" PRIu64 " bytes each: the size overflows 64 bits", n,
                          rec);
    uint64_t size = SHARD_HEADER_BYTES + n * rec;
    if ((uint64_t)s->len < size)
        return dalle_seterr("%s: truncated: the file has %zu bytes, %" PRIu64 " fewer than the %" PRIu64
                            " that %" PRIu64 " records of %" PRIu64 " bytes need",
                            path, s->len, size - s->len, size, n, rec);
    if ((uint64_t)s->len > size)
        return dalle_seterr("%s: trailing bytes: the file has %zu bytes, %" PRIu64 " more than the %" PRIu64
                            " that %" PRIu64 " records of %" PRIu64 " bytes need",
                            path, s->len, s->len - size, size, n, rec);
    uint64_t sum = dalle_fnv1a(DALLE_FNV_START, b + SHARD_HEADER_BYTES, (size_t)(n * rec));
    if (sum != rd64(b + 48))
        return dalle_seterr("%s: checksum mismatch: the records hash to %016" PRIx64 ", the header says %016" PRIx64
                            " (corrupt file)",
                            path, sum, rd64(b + 48));
    // every id: per record the maximum first (fast), then where it went wrong
    const uint32_t tlim = (uint32_t)(Vt + L), ilim = (uint32_t)Vi;
    for (uint64_t r = 0; r < n; r++) {
        const uint8_t *t = b + SHARD_HEADER_BYTES + r * rec, *im = t + L * id_bytes;
        if (max_ids(t, L, (int)id_bytes) >= tlim)
            for (int64_t i = 0; i < L; i++) {
                uint32_t v = load_id(t, i, (int)id_bytes);
                if (v >= tlim) return bad_id_err(path, (int64_t)r, 1, i, v, tlim);
            }
        if (max_ids(im, N, (int)id_bytes) >= ilim)
            for (int64_t i = 0; i < N; i++) {
                uint32_t v = load_id(im, i, (int)id_bytes);
                if (v >= ilim) return bad_id_err(path, (int64_t)r, 0, i, v, ilim);
            }
    }
    s->id_bytes = (int)id_bytes;
    s->info = (shard_info){(int)L, (int)N, (int)G, (int)Vt, (int)Vi, (int64_t)n};
    return DALLE_OK;
}

// Wraps data (mapped or owned) into a shard and validates it; on any error
// releases data and returns NULL.
static shard *open_data(const uint8_t *data, size_t len, int mapped, const char *name) {
    shard *s = dalle_calloc(1, sizeof *s);
    char *path = dalle_strdup(name);
    if (!s || !path) {
        dalle_free(s);
        dalle_free(path);
        if (mapped && len) munmap((void *)data, len);
        if (!mapped) dalle_free((void *)data);
        dalle_errprefix("%s", name);
        return NULL;
    }
    *s = (shard){.path = path, .data = data, .len = len, .mapped = mapped};
    if (parse(s)) {
        shard_close(s);
        return NULL;
    }
    return s;
}

shard *shard_open(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dalle_seterr("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        dalle_seterr("%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        dalle_seterr("%s: cannot open: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    void *m = NULL;
    if (len) { // mmap refuses a length of 0; parse() refuses the empty file
        m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            dalle_seterr("%s: cannot map: %s", path, strerror(errno));
            close(fd);
            return NULL;
        }
    }
    close(fd);
    return open_data(m, len, 1, path);
}

shard *shard_open_mem(const void *data, size_t n, const char *name) {
    uint8_t *buf = dalle_malloc(n ? n : 1);
    if (!buf) {
        dalle_errprefix("%s", name);
        return NULL;
    }
    if (n) memcpy(buf, data, n);
    return open_data(buf, n, 0, name);
}

void shard_close(shard *s) {
    if (!s) return;
    if (s->mapped) {
        if (s->len) munmap((void *)s->data, s->len);
    } else {
        dalle_free((void *)s->data);
    }
    dalle_free(s->path);
    dalle_free(s);
}

const shard_info *shard_get_info(const shard *s) { return &s->info; }

const char *shard_path(const shard *s) { return s->path; }

int shard_id_bytes(const shard *s) { return s->id_bytes; }

void shard_read(const shard *s, int64_t i, int32_t *text, int32_t *image) {
    DALLE_ASSERT(i >= 0 && i < s->info.n_records);
    const int L = s->info.text_len, N = s->info.n_image, w = s->id_bytes;
    const uint8_t *p = s->data + SHARD_HEADER_BYTES + (size_t)i * (size_t)(L + N) * (size_t)w;
    for (int k = 0; k < L; k++) text[k] = (int32_t)load_id(p, k, w);
    for (int k = 0; k < N; k++) image[k] = (int32_t)load_id(p + (size_t)L * w, k, w);
}

int shard_check_config(const shard *s, int text_len, int grid, int text_vocab, int image_vocab) {
    const struct {
        const char *name;
        int have, want;
    } f[] = {{"text_len", s->info.text_len, text_len},
             {"grid", s->info.grid, grid},
             {"text_vocab", s->info.text_vocab, text_vocab},
             {"image_vocab", s->info.image_vocab, image_vocab}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].have != f[i].want)
            return dalle_seterr("%s: made for another model: the shard's %s is %d, the model's %d", s->path,
                                f[i].name, f[i].have, f[i].want);
    return DALLE_OK;
}

// ---------------------------------------------------------------- writer

// Buffered little-endian output of ids.
typedef struct {
    FILE *f;
    uint8_t *buf;
    size_t n, cap;
    int ok;
    uint64_t sum; // FNV-1a of everything flushed
} wbuf;

static void wb_flush(wbuf *w) {
    w->sum = dalle_fnv1a(w->sum, w->buf, w->n);
    if (w->ok && w->n && fwrite(w->buf, 1, w->n, w->f) != w->n) w->ok = 0;
    w->n = 0;
}

static void wb_ids(wbuf *w, const int32_t *ids, int64_t count, int id_bytes) {
    for (int64_t i = 0; i < count; i++) {
        if (w->n + 4 > w->cap) wb_flush(w);
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < id_bytes; k++) w->buf[w->n++] = (uint8_t)(v >> (8 * k));
    }
}

int shard_write(const char *path, const shard_info *info, const int32_t *text, const int32_t *image, int64_t n) {
    const int64_t L = info->text_len, N = info->n_image, G = info->grid, Vt = info->text_vocab,
                  Vi = info->image_vocab;
    if (check_sizes(path, L, N, G, Vt, Vi)) return DALLE_ERR;
    if (n <= 0) return dalle_seterr("%s: %" PRId64 " records to write (a shard holds at least one)", path, n);
    DALLE_ASSERT(text && image);
    for (int64_t r = 0; r < n; r++) {
        for (int64_t i = 0; i < L; i++) {
            int32_t v = text[r * L + i];
            if (v < 0 || v >= Vt + L) return bad_id_err(path, r, 1, i, v, Vt + L);
        }
        for (int64_t i = 0; i < N; i++) {
            int32_t v = image[r * N + i];
            if (v < 0 || v >= Vi) return bad_id_err(path, r, 0, i, v, Vi);
        }
    }
    const int id_bytes = id_bytes_for(L, Vt, Vi);
    const uint64_t rec = (uint64_t)(L + N) * (uint64_t)id_bytes;
    if ((uint64_t)n > (UINT64_MAX - SHARD_HEADER_BYTES) / rec)
        return dalle_seterr("%s: %" PRId64 " records of %" PRIu64 " bytes: too large", path, n, rec);

    uint8_t h[SHARD_HEADER_BYTES] = {0};
    memcpy(h, SHARD_MAGIC, 8);
    wr32(h + 8, SHARD_VERSION);
    wr32(h + 12, (uint32_t)L);
    wr32(h + 16, (uint32_t)N);
    wr32(h + 20, (uint32_t)G);
    wr32(h + 24, (uint32_t)Vt);
    wr32(h + 28, (uint32_t)Vi);
    wr32(h + 32, (uint32_t)id_bytes);
    wr64(h + 40, (uint64_t)n);

    // the same temp-file-and-rename as dalle_write_file_atomic, streamed
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return dalle_seterr("%s: path too long", path);
    wbuf w = {.cap = 1 << 20, .ok = 1};
    if (!(w.buf = dalle_malloc(w.cap))) return dalle_errprefix("%s", path);
    if (!(w.f = fopen(tmp, "wb"))) {
        dalle_free(w.buf);
        return dalle_seterr("%s: cannot create: %s", path, strerror(errno));
    }
    w.ok = fwrite(h, 1, sizeof h, w.f) == sizeof h;
    w.sum = DALLE_FNV_START;
    for (int64_t r = 0; r < n && w.ok; r++) {
        wb_ids(&w, text + r * L, L, id_bytes);
        wb_ids(&w, image + r * N, N, id_bytes);
    }
    wb_flush(&w);
    wr64(h + 48, w.sum); // the records' checksum, now known: rewrite the header
    if (w.ok) w.ok = fseek(w.f, 0, SEEK_SET) == 0 && fwrite(h, 1, sizeof h, w.f) == sizeof h;
    dalle_free(w.buf);
    int ok = (fclose(w.f) == 0) && w.ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return dalle_seterr("%s: cannot write: %s", path, strerror(e));
    }
    return DALLE_OK;
}
