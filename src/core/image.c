// image.c: image files in and out, and the resampling that feeds the dVAE.
// Decoding goes through libpng and libjpeg-turbo with every library error
// caught (setjmp/longjmp) and turned into a message naming the file; the
// libraries never print. JPEG EXIF orientation comes from a small
// bounds-checked parser here. Lanczos resampling is PIL's algorithm in PIL's
// own fixed point, so the pixels the dVAE sees equal what the official
// notebook (PIL + torchvision) gives PyTorch users.
#include "image.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h> // before jpeglib.h, which uses FILE and size_t
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "common.h"

// 16384^2 = 2^28, so the side limit also caps an image at 2^28 pixels
// (768 MiB as RGB) before anything is allocated.
#define MAX_SIDE 16384
// A progressive JPEG holds all its DCT coefficients in memory (about 6 bytes
// per pixel at 4:4:4); past this, libjpeg fails instead of allocating more.
#define JPEG_MAX_MEMORY (512L << 20)
// Real progressive JPEGs have ~10 scans; thousands of tiny ones are a known
// way to make a small file decode for minutes.
#define JPEG_MAX_SCANS 500
// Largest ancillary chunk libpng may inflate (iCCP, zTXt...), which we ignore.
#define PNG_MAX_CHUNK (8u << 20)
#define MSG_LEN 200

static int check_size(const char *name, long w, long h) {
    if (w <= 0 || h <= 0) return dalle_seterr("%s: image %ldx%ld has no pixels", name, w, h);
    if (w > MAX_SIDE || h > MAX_SIDE)
        return dalle_seterr("%s: image %ldx%ld is larger than %d per side", name, w, h, MAX_SIDE);
    return DALLE_OK;
}

int image_alloc(image_t *img, int w, int h) {
    *img = (image_t){0};
    if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE)
        return dalle_seterr("image size %dx%d is not within 1..%d per side", w, h, MAX_SIDE);
    img->data = dalle_calloc((size_t)w * (size_t)h, 3);
    if (!img->data) return DALLE_ERR;
    img->w = w;
    img->h = h;
    return DALLE_OK;
}

void image_free(image_t *img) {
    dalle_free(img->data);
    *img = (image_t){0};
}

// Alpha over white, rounded to nearest.
static inline uint8_t over_white(unsigned c, unsigned a) {
    return (uint8_t)((c * a + 255 * (255 - a) + 127) / 255);
}

// ---------------------------------------------------------------- libpng glue
// libpng calls the error function and expects it not to return (if it does,
// libpng prints the message itself), so it records the text and jumps to the
// png_jmpbuf of the current call. error_ptr is the context's message buffer.

static void png_on_error(png_structp png, png_const_charp msg) {
    snprintf(png_get_error_ptr(png), MSG_LEN, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png; // warnings (bad ancillary chunks and the like) are not our business
    (void)msg;
}

static png_voidp png_alloc(png_structp png, png_alloc_size_t n) {
    (void)png;
    return dalle_malloc(n);
}

static void png_dealloc(png_structp png, png_voidp p) {
    (void)png;
    dalle_free(p);
}

// ---------------------------------------------------------------- PNG load

typedef struct {
    char msg[MSG_LEN]; // libpng's error, if it raised one
    const uint8_t *data;
    size_t len, pos;
    int truncated;
    png_structp png;
    png_infop info;
    uint8_t *pix; // decoded pixels, 3 or 4 bytes each
    png_bytep *rows;
} png_in;

static void png_read_mem(png_structp png, png_bytep dst, size_t n) {
    png_in *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        c->truncated = 1;
        png_error(png, "truncated");
    }
    memcpy(dst, c->data + c->pos, n);
    c->pos += n;
}

// The part of load_png that may longjmp. Everything it allocates hangs off
// `c`, which lives in the caller's frame, so nothing is lost on the jump.
static int png_decode(png_in *c, const char *name, image_t *out) {
    if (setjmp(png_jmpbuf(c->png))) return DALLE_ERR;
    png_set_read_fn(c->png, c, png_read_mem);
    png_set_chunk_malloc_max(c->png, PNG_MAX_CHUNK);
    png_read_info(c->png, c->info);

    png_uint_32 w, h;
    int depth, type, interlace;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &type, &interlace, NULL, NULL);
    if (check_size(name, (long)w, (long)h)) return DALLE_ERR;

    // Everything to 8-bit RGB or RGBA. strip_16 keeps the high byte, as PIL does.
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    if (png_get_valid(c->png, c->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(c->png);
    if (depth == 16) png_set_strip_16(c->png);
    if (!(type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    int ch = png_get_channels(c->png, c->info);
    DALLE_ASSERT((ch == 3 || ch == 4) && png_get_rowbytes(c->png, c->info) == (size_t)w * ch);

    // Interlaced images need all rows at once, so decode the whole image, then
    // composite RGBA to RGB in place (the buffer keeps its 4-byte size).
    size_t n = (size_t)w * h;
    c->pix = dalle_malloc(n * ch);
    c->rows = dalle_malloc(h * sizeof *c->rows);
    if (!c->pix || !c->rows) return dalle_errprefix("%s", name);
    for (png_uint_32 y = 0; y < h; y++) c->rows[y] = c->pix + (size_t)y * w * ch;
    png_read_image(c->png, c->rows);
    // No png_read_end: what follows the pixels (IEND, late text chunks) cannot
    // change them, and a file cut just after its last IDAT is still usable.

    if (ch == 4) {
        for (size_t i = 0; i < n; i++) { // writes trail reads: 3i+2 < 4i+4
            const uint8_t *s = c->pix + 4 * i;
            uint8_t r = s[0], g = s[1], b = s[2], a = s[3];
            uint8_t *d = c->pix + 3 * i;
            d[0] = over_white(r, a);
            d[1] = over_white(g, a);
            d[2] = over_white(b, a);
        }
    }
    out->w = (int)w;
    out->h = (int)h;
    out->data = c->pix;
    c->pix = NULL;
    return DALLE_OK;
}

static int load_png(const uint8_t *data, size_t len, const char *name, image_t *out) {
    png_in c = {.data = data, .len = len};
    c.png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, c.msg, png_on_error, png_on_warning,
                                     NULL, png_alloc, png_dealloc);
    if (c.png) c.info = png_create_info_struct(c.png);
    int rc = c.info ? png_decode(&c, name, out) : dalle_seterr("%s: out of memory", name);
    if (rc != DALLE_OK && c.truncated) dalle_seterr("%s: truncated PNG data", name);
    else if (rc != DALLE_OK && c.msg[0]) dalle_seterr("%s: cannot decode PNG: %s", name, c.msg);
    png_destroy_read_struct(&c.png, &c.info, NULL);
    dalle_free(c.rows);
    dalle_free(c.pix);
    return rc;
}

// ---------------------------------------------------------------- EXIF

static unsigned rd16(const uint8_t *p, int be) {
    return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t rd32(const uint8_t *p, int be) {
    return be ? (uint32_t)rd16(p, 1) << 16 | rd16(p + 2, 1)
              : (uint32_t)rd16(p + 2, 0) << 16 | rd16(p, 0);
}

// The orientation tag (0x0112) of an APP1 Exif payload, 1..8; 1 if absent or
// if anything about the payload is malformed (bad EXIF never fails a load).
static int exif_orientation(const uint8_t *p, size_t n) {
    if (n < 6 + 8 || memcmp(p, "Exif\0\0", 6) != 0) return 1;
    p += 6; // the TIFF header: every offset below is relative to it
    n -= 6;
    int be;
    if (memcmp(p, "II", 2) == 0) be = 0;
    else if (memcmp(p, "MM", 2) == 0) be = 1;
    else return 1;
    if (rd16(p + 2, be) != 42) return 1;
    uint32_t ifd = rd32(p + 4, be);
    if (ifd > n - 2) return 1;
    unsigned count = rd16(p + ifd, be);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)12 * i;
        if (e + 12 > n) break;
        if (rd16(p + e, be) != 0x0112) continue;
        unsigned type = rd16(p + e + 2, be);
        uint32_t v;
        if (rd32(p + e + 4, be) != 1) return 1; // value count
        if (type == 3) v = rd16(p + e + 8, be);      // SHORT, as the standard says
        else if (type == 4) v = rd32(p + e + 8, be); // LONG, from some writers
        else return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

// Applies EXIF orientation `o` (2..8) to w x h pixels: dst gets the upright
// image (h x w for 5..8). Each orientation is a start pixel in the source and
// the source steps taken per output column and per output row; the mapping is
// PIL's ImageOps.exif_transpose.
static void orient(const uint8_t *src, int w, int h, int o, uint8_t *dst) {
    ptrdiff_t W = w, last_row = (ptrdiff_t)(h - 1) * w;
    const struct { ptrdiff_t start, dx, dy; } m[9] = {
        [2] = {W - 1, -1, W},                 // mirror left-right
        [3] = {last_row + W - 1, -1, -W},     // rotate 180
        [4] = {last_row, 1, -W},              // mirror top-bottom
        [5] = {0, W, 1},                      // transpose
        [6] = {last_row, -W, 1},              // rotate 90 clockwise
        [7] = {last_row + W - 1, -W, -1},     // transverse
        [8] = {W - 1, W, -1},                 // rotate 90 counter-clockwise
    };
    int ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    for (int y = 0; y < oh; y++) {
        ptrdiff_t s = m[o].start + y * m[o].dy;
        uint8_t *d = dst + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++, s += m[o].dx, d += 3) memcpy(d, src + s * 3, 3);
    }
}

// ---------------------------------------------------------------- JPEG load

typedef struct {
    struct jpeg_error_mgr pub; // first, so that cinfo->err points at the whole
    jmp_buf jump;
    int failed;      // libjpeg raised an error (msg_code says which)
    const char *why; // or we stopped it, for this reason
} jpeg_err;

static void jpeg_on_error(j_common_ptr ci) {
    jpeg_err *e = (jpeg_err *)ci->err;
    e->failed = 1;
    longjmp(e->jump, 1);
}

// Warnings (level -1) are corrupt-data notices libjpeg recovers from; all
// are ignored except running out of data, which libjpeg would paper over with
// grey rows.
static void jpeg_on_message(j_common_ptr ci, int level) {
    jpeg_err *e = (jpeg_err *)ci->err;
    if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF) {
        e->why = "truncated JPEG data";
        longjmp(e->jump, 1);
    }
}

static void jpeg_no_output(j_common_ptr ci) { (void)ci; }

static void jpeg_on_progress(j_common_ptr ci) {
    if (((j_decompress_ptr)ci)->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_err *e = (jpeg_err *)ci->err;
        e->why = "too many scans in progressive JPEG";
        longjmp(e->jump, 1);
    }
}

typedef struct {
    struct jpeg_decompress_struct ci;
    jpeg_err err;
    struct jpeg_progress_mgr progress;
    uint8_t *pix, *row, *turned;
} jpeg_in;

// The part of load_jpeg that may longjmp; see png_decode.
static int jpeg_decode(jpeg_in *c, const uint8_t *data, size_t len, const char *name,
                       image_t *out) {
    if (setjmp(c->err.jump)) return DALLE_ERR;
    jpeg_create_decompress(&c->ci);
    c->ci.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    c->ci.progress = &c->progress;
    jpeg_mem_src(&c->ci, data, (unsigned long)len);
    jpeg_save_markers(&c->ci, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&c->ci, TRUE);
    if (check_size(name, (long)c->ci.image_width, (long)c->ci.image_height)) return DALLE_ERR;

    int o = 1;
    for (jpeg_saved_marker_ptr m = c->ci.marker_list; m; m = m->next) {
        if (m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            o = exif_orientation(m->data, m->data_length);
            break;
        }
    }
    // libjpeg turns grey and YCbCr into RGB itself, but CMYK/YCCK only into CMYK.
    int cmyk = c->ci.jpeg_color_space == JCS_CMYK || c->ci.jpeg_color_space == JCS_YCCK;
    c->ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&c->ci);

    int w = (int)c->ci.output_width, h = (int)c->ci.output_height;
    c->pix = dalle_malloc((size_t)w * h * 3);
    if (cmyk) c->row = dalle_malloc((size_t)w * 4);
    if (!c->pix || (cmyk && !c->row)) return dalle_errprefix("%s", name);
    while ((int)c->ci.output_scanline < h) {
        uint8_t *dst = c->pix + (size_t)c->ci.output_scanline * w * 3;
        JSAMPROW row = cmyk ? c->row : dst;
        if (jpeg_read_scanlines(&c->ci, &row, 1) != 1)
            return dalle_seterr("%s: truncated JPEG data", name);
        // Photoshop stores CMYK inverted and PIL assumes it always is; then
        // PIL's CMYK->RGB: R = (255-K) - (C*(255-K))/255, in its rounding.
        for (int x = 0; cmyk && x < w; x++) {
            const uint8_t *s = c->row + 4 * x;
            int nk = s[3];
            for (int k = 0; k < 3; k++) {
                int t = (255 - s[k]) * nk + 128;
                dst[3 * x + k] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
            }
        }
    }
    // No jpeg_finish_decompress: it only reads on to EOI, and a file missing
    // its last bytes after the final scanline still has all its pixels.

    if (o != 1) {
        c->turned = dalle_malloc((size_t)w * h * 3);
        if (!c->turned) return dalle_errprefix("%s", name);
        orient(c->pix, w, h, o, c->turned);
        uint8_t *t = c->pix;
        c->pix = c->turned;
        c->turned = t;
    }
    out->w = o >= 5 ? h : w;
    out->h = o >= 5 ? w : h;
    out->data = c->pix;
    c->pix = NULL;
    return DALLE_OK;
}

static int load_jpeg(const uint8_t *data, size_t len, const char *name, image_t *out) {
    jpeg_in c = {0};
    c.ci.err = jpeg_std_error(&c.err.pub);
    c.err.pub.error_exit = jpeg_on_error;
    c.err.pub.emit_message = jpeg_on_message;
    c.err.pub.output_message = jpeg_no_output;
    c.progress.progress_monitor = jpeg_on_progress;
    int rc = jpeg_decode(&c, data, len, name, out);
    if (rc != DALLE_OK && c.err.why) {
        dalle_seterr("%s: %s", name, c.err.why);
    } else if (rc != DALLE_OK && c.err.failed && c.err.pub.msg_code == JERR_NO_BACKING_STORE) {
        dalle_seterr("%s: JPEG needs more than %ld MiB to decode", name, JPEG_MAX_MEMORY >> 20);
    } else if (rc != DALLE_OK && c.err.failed) {
        char msg[JMSG_LENGTH_MAX];
        c.err.pub.format_message((j_common_ptr)&c.ci, msg);
        dalle_seterr("%s: cannot decode JPEG: %s", name, msg);
    }
    jpeg_destroy_decompress(&c.ci); // safe after a failed create: it checks ci.mem
    dalle_free(c.pix);
    dalle_free(c.row);
    dalle_free(c.turned);
    return rc;
}

// ---------------------------------------------------------------- loading

static int has_prefix(const uint8_t *p, size_t len, const uint8_t *magic, size_t n) {
    return memcmp(p, magic, DALLE_MIN(len, n)) == 0;
}

int image_load_mem(const void *data, size_t len, const char *name, image_t *out) {
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t jpeg_magic[3] = {0xff, 0xd8, 0xff};
    const uint8_t *p = data;
    *out = (image_t){0};
    if (len == 0) return dalle_seterr("%s: empty file", name);
    if (has_prefix(p, len, png_magic, sizeof png_magic)) {
        if (len < sizeof png_magic) return dalle_seterr("%s: truncated PNG data", name);
        return load_png(p, len, name, out);
    }
    if (has_prefix(p, len, jpeg_magic, sizeof jpeg_magic)) {
        if (len < sizeof jpeg_magic) return dalle_seterr("%s: truncated JPEG data", name);
        return load_jpeg(p, len, name, out);
    }
    return dalle_seterr("%s: not a PNG or JPEG file", name);
}

int image_load(const char *path, image_t *out) {
    size_t len;
    *out = (image_t){0};
    char *data = dalle_read_file(path, &len);
    if (!data) return DALLE_ERR;
    int rc = image_load_mem(data, len, path, out);
    dalle_free(data);
    return rc;
}

// ---------------------------------------------------------------- PNG save

typedef struct {
    char msg[MSG_LEN];
    uint8_t *buf;
    size_t len, cap;
    png_structp png;
    png_infop info;
} png_out;

static void png_write_mem(png_structp png, png_bytep src, size_t n) {
    png_out *c = png_get_io_ptr(png);
    if (n > c->cap - c->len) {
        size_t cap = DALLE_MAX(c->cap * 2, c->len + n);
        uint8_t *b = dalle_realloc(c->buf, cap);
        if (!b) png_error(png, "out of memory");
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, src, n);
    c->len += n;
}

static void png_flush_mem(png_structp png) { (void)png; }

// The part of image_save_png that may longjmp; see png_decode.
static int png_encode(png_out *c, const image_t *img) {
    if (setjmp(png_jmpbuf(c->png))) return DALLE_ERR;
    png_set_write_fn(c->png, c, png_write_mem, png_flush_mem);
    png_set_IHDR(c->png, c->info, (png_uint_32)img->w, (png_uint_32)img->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(c->png, c->info);
    for (int y = 0; y < img->h; y++) png_write_row(c->png, img->data + (size_t)y * img->w * 3);
    png_write_end(c->png, NULL);
    return DALLE_OK;
}

int image_encode_png(const image_t *img, uint8_t **out, size_t *len) {
    DALLE_ASSERT(img->data && img->w > 0 && img->h > 0);
    png_out c = {0};
    c.png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, c.msg, png_on_error, png_on_warning,
                                      NULL, png_alloc, png_dealloc);
    if (c.png) c.info = png_create_info_struct(c.png);
    int rc = c.info ? png_encode(&c, img) : DALLE_ERR;
    png_destroy_write_struct(&c.png, &c.info);
    if (rc != DALLE_OK) {
        dalle_seterr("cannot encode PNG: %s", c.msg[0] ? c.msg : "out of memory");
        dalle_free(c.buf);
        return DALLE_ERR;
    }
    *out = c.buf;
    *len = c.len;
    return DALLE_OK;
}

int image_save_png(const char *path, const image_t *img) {
    uint8_t *buf;
    size_t len;
    if (image_encode_png(img, &buf, &len)) return dalle_errprefix("%s", path);
    int rc = dalle_write_file_atomic(path, buf, len);
    dalle_free(buf);
    return rc;
}

// ---------------------------------------------------------------- resampling
// Separable: a horizontal pass, then a vertical one, each output sample a
// weighted sum of a run of input samples. `taps_t` holds those runs for the
// output indices i0..i0+n-1 of one axis (a window of the full output grid, so
// that resize + crop computes only what the crop keeps; each output pixel
// depends only on its own position, so the result is the same).

typedef struct {
    int n, ksize;  // outputs; stride of the weight rows
    int *lo, *len; // input run of output i: [lo[i], lo[i] + len[i])
    int32_t *k;    // Lanczos: PIL's fixed-point weights
    double *w;     // area: exact weights
} taps_t;

// PIL keeps 8-bit weights with 22 fraction bits, leaving room for the sign and
// for partial sums above 255 from the negative lobes.
#define PREC 22

static void taps_free(taps_t *t) {
    dalle_free(t->lo);
    dalle_free(t->len);
    dalle_free(t->k);
    dalle_free(t->w);
    *t = (taps_t){0};
}

static int taps_alloc(taps_t *t, int n, int ksize, int fixed) {
    *t = (taps_t){.n = n, .ksize = ksize};
    t->lo = dalle_malloc((size_t)n * sizeof *t->lo);
    t->len = dalle_malloc((size_t)n * sizeof *t->len);
    if (fixed) t->k = dalle_calloc((size_t)n * ksize, sizeof *t->k);
    else t->w = dalle_calloc((size_t)n * ksize, sizeof *t->w);
    if (t->lo && t->len && (t->k || t->w)) return DALLE_OK;
    taps_free(t);
    return DALLE_ERR;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double lanczos3(double x) {
    return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

// PIL's precompute_coeffs + normalize_coeffs_8bpc for LANCZOS, expression for
// expression (the float rounding decides ties in the last bit).
static int taps_lanczos(int in_size, int out_size, int i0, int n, taps_t *t) {
    double scale = (double)in_size / out_size;
    double fscale = scale < 1.0 ? 1.0 : scale; // widen the filter when shrinking
    double support = 3.0 * fscale;
    if (taps_alloc(t, n, (int)ceil(support) * 2 + 1, 1)) return DALLE_ERR;
    double *w = dalle_malloc((size_t)t->ksize * sizeof *w);
    if (!w) {
        taps_free(t);
        return DALLE_ERR;
    }
    for (int i = 0; i < n; i++) {
        double center = (i0 + i + 0.5) * scale, ss = 1.0 / fscale, ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = lanczos3((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = t->k + (size_t)i * t->ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC)) : (int32_t)(0.5 + v * (1 << PREC));
        }
        t->lo[i] = xmin;
        t->len[i] = xmax;
    }
    dalle_free(w);
    return DALLE_OK;
}

// Area weights: output i covers [i*s, (i+1)*s) of the input, s = in/out, and
// each input pixel counts by the length of its overlap, over s.
static int taps_area(int in_size, int out_size, taps_t *t) {
    double s = (double)in_size / out_size;
    if (taps_alloc(t, out_size, (int)ceil(s) + 2, 0)) return DALLE_ERR;
    for (int i = 0; i < out_size; i++) {
        double a = (double)((int64_t)i * in_size) / out_size;
        double b = (double)((int64_t)(i + 1) * in_size) / out_size;
        int j0 = (int)floor(a), j1 = DALLE_MIN((int)ceil(b), in_size);
        double *w = t->w + (size_t)i * t->ksize;
        for (int j = j0; j < j1; j++) w[j - j0] = (fmin(j + 1, b) - fmax(j, a)) / s;
        t->lo[i] = j0;
        t->len[i] = j1 - j0;
    }
    return DALLE_OK;
}

// Input rows [*first, *last) that the vertical taps read.
static void taps_span(const taps_t *t, int *first, int *last) {
    *first = t->lo[0];
    *last = t->lo[0] + t->len[0];
    for (int i = 1; i < t->n; i++) {
        *first = DALLE_MIN(*first, t->lo[i]);
        *last = DALLE_MAX(*last, t->lo[i] + t->len[i]);
    }
}

// PIL's clip8: drop the fraction (the 0.5 was added up front), clamp.
static inline uint8_t clip8(int64_t v) {
    v >>= PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Only worth threads above this many multiply-adds.
#define OMP_MIN_WORK 200000

// Horizontal Lanczos pass: `rows` rows of `src` (stride `sstride` pixels)
// into rows of t->n pixels.
static void hpass_u8(const uint8_t *src, size_t sstride, int rows, const taps_t *t, uint8_t *dst) {
    int n = t->n;
#pragma omp parallel for schedule(static) if ((int64_t)rows * n * t->ksize > OMP_MIN_WORK)
    for (int y = 0; y < rows; y++) {
        for (int i = 0; i < n; i++) {
            const int32_t *k = t->k + (size_t)i * t->ksize;
            const uint8_t *s = src + ((size_t)y * sstride + t->lo[i]) * 3;
            int64_t a0 = 1 << (PREC - 1), a1 = a0, a2 = a0;
            for (int x = 0; x < t->len[i]; x++, s += 3) {
                a0 += (int64_t)s[0] * k[x];
                a1 += (int64_t)s[1] * k[x];
                a2 += (int64_t)s[2] * k[x];
            }
            uint8_t *d = dst + ((size_t)y * n + i) * 3;
            d[0] = clip8(a0);
            d[1] = clip8(a1);
            d[2] = clip8(a2);
        }
    }
}

// Vertical Lanczos pass: output row i sums rows lo[i] - row0 ... of `src`
// (`w` pixels wide, stride `sstride` pixels).
static void vpass_u8(const uint8_t *src, size_t sstride, int row0, int w, const taps_t *t,
                     uint8_t *dst) {
#pragma omp parallel for schedule(static) if ((int64_t)t->n * w * t->ksize > OMP_MIN_WORK)
    for (int i = 0; i < t->n; i++) {
        const int32_t *k = t->k + (size_t)i * t->ksize;
        const uint8_t *s0 = src + (size_t)(t->lo[i] - row0) * sstride * 3;
        uint8_t *d = dst + (size_t)i * w * 3;
        for (int x = 0; x < w * 3; x++) {
            int64_t a = 1 << (PREC - 1);
            for (int y = 0; y < t->len[i]; y++) a += (int64_t)s0[(size_t)y * sstride * 3 + x] * k[y];
            d[x] = clip8(a);
        }
    }
}

// Lanczos-resizes `in` to the grid nw x nh and keeps its ow x oh window at
// (x0, y0), as PIL's resize followed by a crop. Like PIL, an axis whose size
// does not change is not filtered at all, and the 8-bit rounding between the
// passes makes their order matter: Pillow >= 13 filters vertically first when
// the height shrinks and the width does not (older Pillow always went
// horizontal first; the two never differ for image_resize_crop, whose axes
// scale alike).
static int resample_lanczos(const image_t *in, int nw, int nh, int x0, int y0, int ow, int oh,
                            image_t *out) {
    taps_t tx = {0}, ty = {0};
    uint8_t *tmp = NULL;
    int rc = DALLE_ERR, hor = nw != in->w, ver = nh != in->h;
    if (image_alloc(out, ow, oh)) return DALLE_ERR;
    if (hor && taps_lanczos(in->w, nw, x0, ow, &tx)) goto done;
    if (ver && taps_lanczos(in->h, nh, y0, oh, &ty)) goto done;

    int first, last;
    if (hor && ver && nw >= in->w && nh < in->h) {
        // Vertical pass over the input columns [first, last) that the
        // horizontal taps read, then the horizontal pass.
        taps_span(&tx, &first, &last);
        for (int i = 0; i < ow; i++) tx.lo[i] -= first;
        tmp = dalle_malloc((size_t)oh * (last - first) * 3);
        if (!tmp) goto done;
        vpass_u8(in->data + (size_t)first * 3, (size_t)in->w, 0, last - first, &ty, tmp);
        hpass_u8(tmp, (size_t)(last - first), oh, &tx, out->data);
        rc = DALLE_OK;
        goto done;
    }
    // Horizontal first. The vertical step reads rows [first, last) of `src`,
    // which starts at column x0 of the (possibly resampled) image.
    first = y0;
    last = y0 + oh;
    if (ver) taps_span(&ty, &first, &last);
    const uint8_t *src = in->data + ((size_t)first * in->w + x0) * 3;
    size_t stride = (size_t)in->w;
    if (hor) {
        tmp = dalle_malloc((size_t)(last - first) * ow * 3);
        if (!tmp) goto done;
        hpass_u8(in->data + (size_t)first * in->w * 3, (size_t)in->w, last - first, &tx, tmp);
        src = tmp;
        stride = (size_t)ow;
    }
    if (ver) {
        vpass_u8(src, stride, first, ow, &ty, out->data);
    } else {
        for (int y = 0; y < oh; y++)
            memcpy(out->data + (size_t)y * ow * 3, src + (size_t)y * stride * 3, (size_t)ow * 3);
    }
    rc = DALLE_OK;
done:
    if (rc != DALLE_OK) image_free(out);
    taps_free(&tx);
    taps_free(&ty);
    dalle_free(tmp);
    return rc;
}

// Area-resizes `in` to out->w x out->h, keeping the horizontal pass in
// double so that the only rounding is the final one.
static int resample_area(const image_t *in, image_t *out) {
    int w = out->w, h = out->h;
    taps_t tx = {0}, ty = {0};
    double *tmp = NULL;
    int rc = DALLE_ERR;
    if (taps_area(in->w, w, &tx) || taps_area(in->h, h, &ty)) goto done;
    tmp = dalle_malloc((size_t)in->h * w * 3 * sizeof *tmp);
    if (!tmp) goto done;
#pragma omp parallel for schedule(static) if ((int64_t)in->h * w * tx.ksize > OMP_MIN_WORK)
    for (int y = 0; y < in->h; y++) {
        for (int i = 0; i < w; i++) {
            const double *k = tx.w + (size_t)i * tx.ksize;
            const uint8_t *s = in->data + ((size_t)y * in->w + tx.lo[i]) * 3;
            double a0 = 0, a1 = 0, a2 = 0;
            for (int x = 0; x < tx.len[i]; x++, s += 3) {
                a0 += s[0] * k[x];
                a1 += s[1] * k[x];
                a2 += s[2] * k[x];
            }
            double *d = tmp + ((size_t)y * w + i) * 3;
            d[0] = a0;
            d[1] = a1;
            d[2] = a2;
        }
    }
#pragma omp parallel for schedule(static) if ((int64_t)h * w * ty.ksize > OMP_MIN_WORK)
    for (int i = 0; i < h; i++) {
        const double *k = ty.w + (size_t)i * ty.ksize;
        const double *s0 = tmp + (size_t)ty.lo[i] * w * 3;
        uint8_t *d = out->data + (size_t)i * w * 3;
        for (int x = 0; x < w * 3; x++) {
            double a = 0.5;
            for (int y = 0; y < ty.len[i]; y++) a += s0[(size_t)y * w * 3 + x] * k[y];
            d[x] = (uint8_t)(a < 0 ? 0 : a >= 255 ? 255 : a);
        }
    }
    rc = DALLE_OK;
done:
    taps_free(&tx);
    taps_free(&ty);
    dalle_free(tmp);
    return rc;
}

int image_crop(const image_t *in, int x, int y, int w, int h, image_t *out) {
    *out = (image_t){0};
    if (w <= 0 || h <= 0 || x < 0 || y < 0 || x > in->w - w || y > in->h - h)
        return dalle_seterr("crop %dx%d at (%d, %d) is not inside the %dx%d image", w, h, x, y,
                            in->w, in->h);
    if (image_alloc(out, w, h)) return DALLE_ERR;
    for (int r = 0; r < h; r++)
        memcpy(out->data + (size_t)r * w * 3, in->data + ((size_t)(y + r) * in->w + x) * 3,
               (size_t)w * 3);
    return DALLE_OK;
}

int image_resize(const image_t *in, int w, int h, int filter, image_t *out) {
    *out = (image_t){0};
    if (filter != IMAGE_LANCZOS && filter != IMAGE_AREA)
        return dalle_seterr("image_resize: unknown filter %d", filter);
    if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE)
        return dalle_seterr("image_resize: size %dx%d is not within 1..%d per side", w, h, MAX_SIDE);
    if (w == in->w && h == in->h) return image_crop(in, 0, 0, w, h, out);
    if (filter == IMAGE_LANCZOS) return resample_lanczos(in, w, h, 0, 0, w, h, out);
    if (image_alloc(out, w, h)) return DALLE_ERR;
    if (resample_area(in, out) == DALLE_OK) return DALLE_OK;
    image_free(out);
    return DALLE_ERR;
}

// Python's round() of d / 2 (half to even), as torchvision's centre crop does.
static int half_even(int d) { return d / 2 + (d % 2 && (d / 2) % 2); }

int image_resize_crop(const image_t *in, int size, image_t *out) {
    *out = (image_t){0};
    if (size <= 0 || size > MAX_SIDE)
        return dalle_seterr("image_resize_crop: size %d is not within 1..%d", size, MAX_SIDE);
    // The notebook: r = size / min(w, h); (round(r*h), round(r*w)). rint in
    // the default rounding mode is Python's round: half to even.
    double r = (double)size / DALLE_MIN(in->w, in->h);
    int nw = (int)rint(r * in->w), nh = (int)rint(r * in->h);
    return resample_lanczos(in, nw, nh, half_even(nw - size), half_even(nh - size), size, size,
                            out);
}

// ---------------------------------------------------------------- tensors

void image_to_chw(const image_t *img, float *out) {
    size_t n = (size_t)img->w * img->h;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) out[c * n + i] = (float)img->data[i * 3 + c] / 255.0f;
}

void image_from_chw(image_t *img, const float *in) {
    size_t n = (size_t)img->w * img->h;
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++) {
            float v = in[c * n + i];
            v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; // NaN fails v > 0: 0
            img->data[i * 3 + c] = (uint8_t)(v * 255.0f);
        }
    }
}
