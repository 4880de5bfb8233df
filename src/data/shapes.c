// shapes.c: the `shapes` dataset (see shapes.h and docs/data.md): scene
// sampling, rendering, captions, and the checker that reads images and
// captions back. S is the canvas side in pixels throughout.
#include "data/shapes.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/dataset.h"

const uint8_t shapes_palette[SHAPES_NCOLOR][3] = {
    {220, 40, 40}, {40, 170, 60}, {40, 80, 220}, {240, 200, 30}, {140, 60, 180}, {245, 130, 30}, {20, 20, 20},
};
const char *const shapes_color_names[SHAPES_NCOLOR] = {"red", "green", "blue", "yellow", "purple", "orange", "black"};
const char *const shapes_shape_names[SHAPES_NSHAPE] = {"circle", "square", "triangle", "diamond"};
const char *const shapes_size_names[SHAPES_NSIZE] = {"small", "large"};
const char *const shapes_cell_names[SHAPES_NCELL] = {"top left", "top",         "top right",
                                                     "left",     "center",      "right",
                                                     "bottom left", "bottom",   "bottom right"};
const char *const shapes_rel_names[SHAPES_NREL] = {"to the left of", "to the right of", "above", "below"};
// The preposition before each cell's name in captions ("at the top", "on the left").
static const char *const CELL_PREP[SHAPES_NCELL] = {"in the", "at the", "in the", "on the", "in the",
                                                    "on the", "in the", "at the", "in the"};
static const int REL_CONVERSE[SHAPES_NREL] = {SHAPES_RIGHT_OF, SHAPES_LEFT_OF, SHAPES_BELOW, SHAPES_ABOVE};
// Area of each shape over its bounding box a x a.
static const double SHAPE_FILL[SHAPES_NSHAPE] = {0.78539816339744831, 1.0, 0.5, 0.5};

shapes_gen_opts shapes_default_gen_opts(void) {
    shapes_gen_opts o = {0, 50, 50, 0.5};
    int rc = shapes_parse_holdout(SHAPES_DEFAULT_HOLDOUT, &o.holdout);
    DALLE_ASSERT(rc == DALLE_OK);
    return o;
}

// Index of NAME (len bytes) in names[0..n), or -1.
static int lookup(const char *const *names, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && !strncmp(names[i], name, len)) return i;
    return -1;
}

int shapes_parse_holdout(const char *list, uint32_t *mask) {
    uint32_t m = 0;
    const char *p = list;
    while (isspace((unsigned char)*p)) p++;
    while (*p) { // "colour shape" entries separated by commas; "" holds out nothing
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        const char *sp = a;
        while (sp < b && !isspace((unsigned char)*sp)) sp++;
        const char *w2 = sp;
        while (w2 < b && isspace((unsigned char)*w2)) w2++;
        int c = lookup(shapes_color_names, SHAPES_NCOLOR, a, (size_t)(sp - a));
        int s = lookup(shapes_shape_names, SHAPES_NSHAPE, w2, (size_t)(b - w2));
        if (c < 0 || s < 0)
            return dalle_seterr("holdout: '%.*s' is not a 'colour shape' pair (colours: red green blue yellow "
                                "purple orange black; shapes: circle square triangle diamond)",
                                (int)(end - p), p);
        m |= 1u << (c * SHAPES_NSHAPE + s);
        if (!*end) break;
        p = end + 1;
        if (!*p) return dalle_seterr("holdout: '%s' ends in a comma", list);
    }
    *mask = m;
    return DALLE_OK;
}

int shapes_scene_uses(const shapes_scene *sc, uint32_t mask) {
    for (int i = 0; i < sc->n; i++)
        if (mask >> (sc->obj[i].color * SHAPES_NSHAPE + sc->obj[i].shape) & 1) return 1;
    return 0;
}

int shapes_check_gen_opts(const shapes_gen_opts *o) {
    const uint32_t all = (1u << (SHAPES_NCOLOR * SHAPES_NSHAPE)) - 1;
    if (o->holdout & ~all)
        return dalle_seterr("shapes: holdout mask has bits beyond the %d pairs", SHAPES_NCOLOR * SHAPES_NSHAPE);
    if (o->val_permille < 0 || o->val_permille > 1000)
        return dalle_seterr("shapes: val share %d not in [0, 1000] permille", o->val_permille);
    if (o->test_permille < 0 || o->test_permille > 1000)
        return dalle_seterr("shapes: test share %d not in [0, 1000] permille", o->test_permille);
    if (!(o->two_share >= 0 && o->two_share <= 1))
        return dalle_seterr("shapes: two-object share %g not in [0, 1]", o->two_share);
    if (o->holdout == all && o->test_permille < 1000)
        return dalle_seterr("shapes: every colour-shape pair is held out: no training scene is possible");
    return DALLE_OK;
}

// Draws of scene `index`: the words of Philox blocks (seed; index, 0), (seed; index, 1), ...
typedef struct {
    uint64_t key, index, block;
    uint32_t w[4];
    int used;
} draw_t;

static uint32_t draw_u32(draw_t *d) {
    if (d->used == 4) {
        philox4x32(d->key, d->index, d->block++, d->w);
        d->used = 0;
    }
    return d->w[d->used++];
}
static int draw_int(draw_t *d, int n) { return (int)(((uint64_t)draw_u32(d) * (uint64_t)n) >> 32); }
static double draw_unit(draw_t *d) { return (draw_u32(d) + 0.5) / 4294967296.0; }

// Can A (cell a) stand REL to B (cell b)? Along the relation's axis A comes
// first; the other axis differs less (so the relation is the dominant one).
static int rel_holds_strict(int rel, int a, int b) {
    int dc = b % 3 - a % 3, dr = b / 3 - a / 3;
    switch (rel) {
    case SHAPES_LEFT_OF: return dc > 0 && abs(dr) < dc;
    case SHAPES_RIGHT_OF: return dc < 0 && abs(dr) < -dc;
    case SHAPES_ABOVE: return dr > 0 && abs(dc) < dr;
    default: return dr < 0 && abs(dc) < -dr;
    }
}

int shapes_generate(shapes_scene *sc, uint64_t seed, uint64_t index, const shapes_gen_opts *o) {
    if (shapes_check_gen_opts(o)) return DALLE_ERR;
    draw_t d = {seed, index, 0, {0}, 4};
    int test = o->holdout && draw_unit(&d) * 1000 < o->test_permille;
    int two = draw_unit(&d) < o->two_share;
    for (int tries = 0;; tries++) {
        DALLE_ASSERT(tries < 100000); // train scenes exist: shapes_check_gen_opts
        memset(sc, 0, sizeof *sc);
        sc->n = two ? 2 : 1;
        sc->rel = SHAPES_ANY;
        for (int i = 0; i < sc->n; i++) {
            sc->obj[i].color = draw_int(&d, SHAPES_NCOLOR);
            sc->obj[i].shape = draw_int(&d, SHAPES_NSHAPE);
            sc->obj[i].size = draw_int(&d, SHAPES_NSIZE);
        }
        if (test) { // one object (chosen at random) takes a held-out pair
            int k = draw_int(&d, __builtin_popcount(o->holdout)), bit = 0;
            for (;; bit++)
                if (o->holdout >> bit & 1 && k-- == 0) break;
            shapes_object *ob = &sc->obj[draw_int(&d, sc->n)];
            ob->color = bit / SHAPES_NSHAPE;
            ob->shape = bit % SHAPES_NSHAPE;
        }
        if (two) {
            // Two large objects in neighbouring cells would touch: they keep a
            // cell between them.
            int both_large = sc->obj[0].size == SHAPES_LARGE && sc->obj[1].size == SHAPES_LARGE;
            int pairs[SHAPES_NCELL * SHAPES_NCELL][2], np = 0;
            sc->rel = draw_int(&d, SHAPES_NREL);
            for (int a = 0; a < SHAPES_NCELL; a++)
                for (int b = 0; b < SHAPES_NCELL; b++) {
                    int far = abs(a % 3 - b % 3) >= 2 || abs(a / 3 - b / 3) >= 2;
                    if (rel_holds_strict(sc->rel, a, b) && (!both_large || far)) {
                        pairs[np][0] = a;
                        pairs[np++][1] = b;
                    }
                }
            int k = draw_int(&d, np);
            sc->obj[0].cell = pairs[k][0];
            sc->obj[1].cell = pairs[k][1];
        } else {
            sc->obj[0].cell = draw_int(&d, SHAPES_NCELL);
        }
        if (test || !shapes_scene_uses(sc, o->holdout)) break;
    }
    if (test) return DSET_TEST;
    char name[128];
    shapes_scene_name(sc, name, sizeof name);
    return dset_split_of(name, o->val_permille);
}

void shapes_scene_name(const shapes_scene *sc, char *buf, size_t n) {
    // objects ordered by cell: the same picture drawn as "A left of B" or
    // "B right of A" gets one name
    int order[2] = {0, 1};
    if (sc->n == 2 && sc->obj[1].cell < sc->obj[0].cell) order[0] = 1, order[1] = 0;
    size_t k = (size_t)snprintf(buf, n, "shapes");
    for (int i = 0; i < sc->n && k < n; i++) {
        const shapes_object *o = &sc->obj[order[i]];
        k += (size_t)snprintf(buf + k, n - k, "/%s-%s-%s-%d", shapes_size_names[o->size], shapes_color_names[o->color],
                              shapes_shape_names[o->shape], o->cell);
    }
}

// Is the point (dx, dy) from the centre inside shape s of half-side h?
static int inside(int s, double dx, double dy, double h) {
    switch (s) {
    case SHAPES_CIRCLE: return dx * dx + dy * dy <= h * h;
    case SHAPES_SQUARE: return fabs(dx) <= h && fabs(dy) <= h;
    case SHAPES_DIAMOND: return fabs(dx) + fabs(dy) <= h;
    default: return dy <= h && 2 * fabs(dx) <= dy + h; // triangle, apex up at dy = -h
    }
}

// Share of pixel (x, y) covered by shape s (side a, bbox centre (cx, cy)),
// from q x q samples.
static float coverage(int s, double cx, double cy, double a, int x, int y, int q) {
    int in = 0;
    for (int j = 0; j < q; j++)
        for (int i = 0; i < q; i++) in += inside(s, x + (i + 0.5) / q - cx, y + (j + 0.5) / q - cy, a / 2);
    return (float)in / (float)(q * q);
}

void shapes_render(uint8_t *pix, int S, const shapes_scene *sc) {
    DALLE_ASSERT(S >= 12 && sc->n >= 1 && sc->n <= SHAPES_MAX_OBJ);
    memset(pix, 255, (size_t)S * S * 3);
    for (int k = 0; k < sc->n; k++) {
        const shapes_object *o = &sc->obj[k];
        double a = o->size == SHAPES_LARGE ? S / 3.0 : S / 6.0;
        double cx = (2 * (o->cell % 3) + 1) * S / 6.0, cy = (2 * (o->cell / 3) + 1) * S / 6.0;
        int x0 = DALLE_MAX(0, (int)floor(cx - a / 2)), x1 = DALLE_MIN(S - 1, (int)ceil(cx + a / 2));
        int y0 = DALLE_MAX(0, (int)floor(cy - a / 2)), y1 = DALLE_MIN(S - 1, (int)ceil(cy + a / 2));
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                float c = coverage(o->shape, cx, cy, a, x, y, 2);
                if (c == 0) continue;
                uint8_t *p = pix + ((size_t)y * S + x) * 3;
                for (int ch = 0; ch < 3; ch++)
                    p[ch] = (uint8_t)lrintf(p[ch] + c * ((float)shapes_palette[o->color][ch] - p[ch]));
            }
    }
}

// "a" or "an" before WORD.
static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

int shapes_captions(const shapes_scene *sc, char caps[][SHAPES_CAPTION_MAX]) {
    const int N = SHAPES_CAPTION_MAX;
    if (sc->n == 1) {
        const shapes_object *o = &sc->obj[0];
        const char *sz = shapes_size_names[o->size], *col = shapes_color_names[o->color],
                   *sh = shapes_shape_names[o->shape], *pre = CELL_PREP[o->cell], *cell = shapes_cell_names[o->cell];
        snprintf(caps[0], N, "a %s %s %s %s %s", sz, col, sh, pre, cell);
        snprintf(caps[1], N, "a %s %s %s %s %s of the image", sz, col, sh, pre, cell);
        snprintf(caps[2], N, "there is a %s %s %s %s %s", sz, col, sh, pre, cell);
        snprintf(caps[3], N, "%s %s, a %s %s %s", pre, cell, sz, col, sh);
        return 4;
    }
    const shapes_object *A = &sc->obj[0], *B = &sc->obj[1];
    const char *ca = shapes_color_names[A->color], *cb = shapes_color_names[B->color];
    const char *sa = shapes_shape_names[A->shape], *sb = shapes_shape_names[B->shape];
    const char *za = shapes_size_names[A->size], *zb = shapes_size_names[B->size];
    const char *r = shapes_rel_names[sc->rel], *rc = shapes_rel_names[REL_CONVERSE[sc->rel]];
    snprintf(caps[0], N, "%s %s %s %s %s %s %s", article(ca), ca, sa, r, article(cb), cb, sb);
    snprintf(caps[1], N, "%s %s %s %s %s %s %s", article(cb), cb, sb, rc, article(ca), ca, sa);
    snprintf(caps[2], N, "a %s %s %s %s a %s %s %s", za, ca, sa, r, zb, cb, sb);
    snprintf(caps[3], N, "a %s %s %s %s a %s %s %s", zb, cb, sb, rc, za, ca, sa);
    return 4;
}

// ---- captions back into objects ----

enum { W_FILL, W_OF, W_IMAGE, W_SIZE, W_COLOR, W_SHAPE, W_VERT, W_HORZ, W_CENTER, W_REL };
static const struct {
    const char *w;
    int kind, val;
} WORDS[] = {
    {"a", W_FILL, 0},          {"an", W_FILL, 0},          {"the", W_FILL, 0},       {"there", W_FILL, 0},
    {"is", W_FILL, 0},         {"are", W_FILL, 0},         {"in", W_FILL, 0},        {"at", W_FILL, 0},
    {"on", W_FILL, 0},         {"to", W_FILL, 0},          {"and", W_FILL, 0},       {"with", W_FILL, 0},
    {"one", W_FILL, 0},        {"its", W_FILL, 0},         {"corner", W_FILL, 0},    {"side", W_FILL, 0},
    {"of", W_OF, 0},           {"image", W_IMAGE, 0},      {"picture", W_IMAGE, 0},  {"canvas", W_IMAGE, 0},
    {"small", W_SIZE, 0},      {"little", W_SIZE, 0},      {"tiny", W_SIZE, 0},      {"large", W_SIZE, 1},
    {"big", W_SIZE, 1},        {"red", W_COLOR, 0},        {"green", W_COLOR, 1},    {"blue", W_COLOR, 2},
    {"yellow", W_COLOR, 3},    {"purple", W_COLOR, 4},     {"orange", W_COLOR, 5},   {"black", W_COLOR, 6},
    {"circle", W_SHAPE, 0},    {"square", W_SHAPE, 1},     {"triangle", W_SHAPE, 2}, {"diamond", W_SHAPE, 3},
    {"top", W_VERT, 0},        {"upper", W_VERT, 0},       {"bottom", W_VERT, 2},    {"lower", W_VERT, 2},
    {"left", W_HORZ, 0},       {"right", W_HORZ, 2},       {"center", W_CENTER, 1},  {"centre", W_CENTER, 1},
    {"middle", W_CENTER, 1},   {"above", W_REL, SHAPES_ABOVE}, {"over", W_REL, SHAPES_ABOVE},
    {"below", W_REL, SHAPES_BELOW}, {"under", W_REL, SHAPES_BELOW}, {"beneath", W_REL, SHAPES_BELOW},
};
enum { MAX_TOKENS = 64 };

int shapes_parse_caption(const char *text, shapes_scene *out) {
    int kind[MAX_TOKENS], val[MAX_TOKENS], nt = 0;
    char word[MAX_TOKENS][24];
    // words: runs of ASCII letters, lowercased; anything else separates them,
    // except bytes outside ASCII, which make a word that is not known
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        if (!isalpha(*p) && *p < 128 && !isdigit(*p)) {
            p++;
            continue;
        }
        const unsigned char *b = p;
        while (*p && (isalnum(*p) || *p >= 128)) p++;
        size_t len = (size_t)(p - b);
        if (nt == MAX_TOKENS) return dalle_seterr("caption '%.80s': more than %d words", text, MAX_TOKENS);
        snprintf(word[nt], sizeof word[nt], "%.*s", (int)DALLE_MIN(len, sizeof word[nt] - 1), (const char *)b);
        for (char *c = word[nt]; *c; c++) *c = (char)tolower((unsigned char)*c);
        int k = -1;
        for (size_t i = 0; i < sizeof WORDS / sizeof *WORDS && k < 0; i++)
            if (len < sizeof word[nt] && !strcmp(WORDS[i].w, word[nt])) k = (int)i;
        if (k < 0)
            return dalle_seterr("caption '%.80s': unknown word '%s' (see docs/data.md, Shapes, for the grammar)", text,
                                word[nt]);
        kind[nt] = WORDS[k].kind;
        val[nt++] = WORDS[k].val;
    }
    shapes_scene sc = {0, {{-1, -1, -1, -1}, {-1, -1, -1, -1}}, SHAPES_ANY};
    shapes_object cur = {-1, -1, -1, -1}; // attributes seen before the shape word
    int pending = 0, pos_pending = -1, rel_after = -1; // rel_after: objects before the relation
    for (int i = 0; i < nt; i++) {
        int k = kind[i], v = val[i];
        if (k == W_FILL || k == W_OF || k == W_IMAGE) continue;
        if (k == W_SIZE || k == W_COLOR) {
            int *f = k == W_SIZE ? &cur.size : &cur.color;
            if (*f >= 0)
                return dalle_seterr("caption '%.80s': two %ss for one object at '%s'", text,
                                    k == W_SIZE ? "size" : "colour", word[i]);
            *f = v;
            pending = 1;
            continue;
        }
        if (k == W_SHAPE) {
            if (sc.n == SHAPES_MAX_OBJ)
                return dalle_seterr("caption '%.80s': more than two objects at '%s'", text, word[i]);
            cur.shape = v;
            cur.cell = pos_pending;
            sc.obj[sc.n++] = cur;
            cur = (shapes_object){-1, -1, -1, -1};
            pending = 0, pos_pending = -1;
            continue;
        }
        // "left of", "right of", "top of" followed by something that is not
        // the image: a relation ("on the left of the image" is a position)
        int j = i + 1;
        if ((k == W_HORZ || (k == W_VERT && !strcmp(word[i], "top"))) && j < nt && kind[j] == W_OF) {
            while (++j < nt && kind[j] == W_FILL) {}
            if (j < nt && kind[j] != W_IMAGE)
                v = k == W_VERT ? SHAPES_ABOVE : v == 0 ? SHAPES_LEFT_OF : SHAPES_RIGHT_OF, k = W_REL;
        }
        if (k == W_REL) {
            if (sc.n != 1 || pending || pos_pending >= 0 || rel_after >= 0)
                return dalle_seterr("caption '%.80s': '%s' must stand between two objects", text, word[i]);
            sc.rel = v;
            rel_after = sc.n;
            continue;
        }
        int cell; // a position: [top|bottom] [left|right] | left | right | center
        if (k == W_VERT) {
            int col = 1;
            if (i + 1 < nt && (kind[i + 1] == W_HORZ || kind[i + 1] == W_CENTER)) col = val[++i];
            cell = v * 3 + col;
        } else {
            cell = k == W_HORZ ? 3 + v : 4;
        }
        shapes_object *last = sc.n ? &sc.obj[sc.n - 1] : NULL;
        if (last && last->cell < 0 && !pending && rel_after != sc.n && pos_pending < 0) {
            last->cell = cell;
        } else {
            if (pos_pending >= 0)
                return dalle_seterr("caption '%.80s': two positions for one object at '%s'", text, word[i]);
            pos_pending = cell;
        }
    }
    if (pending) return dalle_seterr("caption '%.80s': a size or colour is not followed by a shape", text);
    if (pos_pending >= 0) return dalle_seterr("caption '%.80s': a position names no object", text);
    if (sc.n == 0) return dalle_seterr("caption '%.80s': names no shape (circle, square, triangle, diamond)", text);
    if (sc.rel >= 0 && sc.n != 2) return dalle_seterr("caption '%.80s': a relation needs an object after it", text);
    *out = sc;
    return DALLE_OK;
}

// ---- images back into objects ----
//
// Each pixel p is read as a blend of white W and one palette colour c:
// alpha = (W-p).(W-c) / |W-c|^2 (clamped to [0, 1]), at the RGB distance of p
// from that blend. A pixel belongs to colour c when c's blend is the nearest,
// within PERP_MAX, and alpha >= 0.5 (edge pixels are blends with white, so
// grey at a black shape's edge is half black, not purple). Objects are the
// 8-connected components of one colour, tiny ones dropped. Each object's soft
// mask (alpha over its pixels and over the fringe within 2 pixels, with no
// floor: cutting the faint fringe of a blurred edge biases the fit more than
// the noise it removes) gives its mass M and centroid, both unchanged by a
// blur. Each shape hypothesis s then fixes the side a = sqrt(M / fill_s) and
// the centre; the shape is the one whose mask, rendered with the renderer's
// 2 x 2 sampling, sharp or box-blurred 3 x 3, best fits in squared error (over
// a small search of +-5% in a and +-1/4 pixel in the centre). The size is
// small or large by a against the geometric mean of S/6 and S/3; the cell is
// the grid cell of the box centre.
enum { PERP_MAX = 60 };

static float blend_alpha(const uint8_t *p, int c, float *dist) {
    float wc[3], wp[3], dot = 0, n2 = 0, d2 = 0;
    for (int ch = 0; ch < 3; ch++) {
        wc[ch] = 255.0f - shapes_palette[c][ch];
        wp[ch] = 255.0f - p[ch];
        dot += wc[ch] * wp[ch];
        n2 += wc[ch] * wc[ch];
    }
    float al = DALLE_MIN(1.0f, DALLE_MAX(0.0f, dot / n2));
    for (int ch = 0; ch < 3; ch++) d2 += (wp[ch] - al * wc[ch]) * (wp[ch] - al * wc[ch]);
    *dist = sqrtf(d2);
    return al;
}

typedef struct {
    int color, x0, y0, x1, y1; // bounding box of the hard mask
    double mass;
    shapes_object obj;
} blob_t;

// Squared error between the soft mask A (W x H at (x0, y0)) and shape s of
// side a centred at (cx, cy), rendered as shapes_render does, sharp or
// box-blurred 3 x 3, whichever is nearer. T, Tb: scratch of W*H.
static double template_error(int s, double cx, double cy, double a, const float *A, int x0, int y0, int W, int H,
                             float *T, float *Tb) {
    for (int i = 0; i < W * H; i++) T[i] = coverage(s, cx, cy, a, x0 + i % W, y0 + i / W, 2);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float sum = 0;
            int cnt = 0;
            for (int yy = DALLE_MAX(0, y - 1); yy <= DALLE_MIN(H - 1, y + 1); yy++)
                for (int xx = DALLE_MAX(0, x - 1); xx <= DALLE_MIN(W - 1, x + 1); xx++) sum += T[yy * W + xx], cnt++;
            Tb[y * W + x] = sum / (float)cnt;
        }
    double e = 0, eb = 0;
    for (int i = 0; i < W * H; i++) {
        e += (A[i] - T[i]) * (A[i] - T[i]);
        eb += (A[i] - Tb[i]) * (A[i] - Tb[i]);
    }
    return DALLE_MIN(e, eb);
}

// Reads the shape, size and cell of blob k (pixels comp == k) from its soft
// mask; A, T, Tb are scratch of S*S floats.
static void blob_measure(blob_t *b, int k, const uint8_t *pix, const int32_t *comp, int S, float *A, float *T,
                         float *Tb) {
    int x0 = DALLE_MAX(0, b->x0 - 3), x1 = DALLE_MIN(S - 1, b->x1 + 3);
    int y0 = DALLE_MAX(0, b->y0 - 3), y1 = DALLE_MIN(S - 1, b->y1 + 3);
    int W = x1 - x0 + 1, H = y1 - y0 + 1;
    double m = 0, mx = 0, my = 0;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            int id = comp[y * S + x];
            float d, al = blend_alpha(pix + ((size_t)y * S + x) * 3, b->color, &d), v = 0;
            if (id == k)
                v = al;
            else if (id < 0 && d <= PERP_MAX)
                for (int yy = DALLE_MAX(0, y - 2); yy <= DALLE_MIN(S - 1, y + 2) && !v; yy++)
                    for (int xx = DALLE_MAX(0, x - 2); xx <= DALLE_MIN(S - 1, x + 2); xx++)
                        if (comp[yy * S + xx] == k) {
                            v = al;
                            break;
                        }
            A[(y - y0) * W + (x - x0)] = v;
            m += v, mx += v * (x + 0.5), my += v * (y + 0.5);
        }
    mx /= m, my /= m;
    double best = INFINITY, best_a = 0, best_cy = my;
    for (int s = 0; s < SHAPES_NSHAPE; s++) {
        double a = sqrt(m / SHAPE_FILL[s]);
        double cy = s == SHAPES_TRIANGLE ? my - a / 6 : my; // a triangle's centroid is a/6 below its box centre
        // the moments fix the template up to noise: a small search around them
        for (int j = 0; j < 27; j++) {
            double ja = a * (1 + 0.05 * (j % 3 - 1)), jx = mx + 0.25 * (j / 3 % 3 - 1), jy = cy + 0.25 * (j / 9 - 1);
            double e = template_error(s, jx, jy, ja, A, x0, y0, W, H, T, Tb);
            if (e < best) best = e, b->obj.shape = s, best_a = ja, best_cy = jy;
        }
    }
    b->mass = m;
    b->obj.color = b->color;
    // small S/6 and large S/3: the threshold is their geometric mean
    b->obj.size = best_a > S * 0.23570226039551584 ? SHAPES_LARGE : SHAPES_SMALL;
    int col = (int)floor(mx * 3 / S), row = (int)floor(best_cy * 3 / S);
    b->obj.cell = DALLE_MIN(2, DALLE_MAX(0, row)) * 3 + DALLE_MIN(2, DALLE_MAX(0, col));
}

int shapes_parse_image(const uint8_t *pix, int w, int h, shapes_object *objs, int max) {
    if (w != h || w < 12)
        return dalle_seterr("shapes: image is %d x %d: the checker reads square images of side >= 12", w, h);
    const int S = w, n = S * S;
    // smallest object kept: a third of a small triangle's area, S^2/72
    const int min_area = DALLE_MAX(3, (int)(S * S / 72.0 * 0.35));
    int8_t *label = dalle_malloc((size_t)n);
    int32_t *comp = dalle_malloc(sizeof(int32_t) * (size_t)n), *queue = dalle_malloc(sizeof(int32_t) * (size_t)n);
    float *A = dalle_malloc(sizeof(float) * (size_t)n * 3);
    int cap = n / min_area + 1, nb = 0, rc = DALLE_ERR;
    blob_t *blobs = dalle_malloc(sizeof(blob_t) * (size_t)cap);
    if (!label || !comp || !queue || !A || !blobs) goto done;
    for (int i = 0; i < n; i++) {
        int best = -1;
        float best_d = INFINITY, best_al = 0;
        for (int c = 0; c < SHAPES_NCOLOR; c++) {
            float d, al = blend_alpha(pix + (size_t)i * 3, c, &d);
            if (d < best_d) best = c, best_d = d, best_al = al;
        }
        label[i] = (int8_t)(best_al >= 0.5f && best_d <= PERP_MAX ? best : -1);
        comp[i] = -1;
    }
    for (int i = 0; i < n; i++) {
        if (label[i] < 0 || comp[i] != -1) continue;
        int qn = 0, x0 = S, y0 = S, x1 = 0, y1 = 0;
        queue[qn++] = i;
        comp[i] = nb;
        for (int q = 0; q < qn; q++) {
            int x = queue[q] % S, y = queue[q] / S;
            x0 = DALLE_MIN(x0, x), x1 = DALLE_MAX(x1, x), y0 = DALLE_MIN(y0, y), y1 = DALLE_MAX(y1, y);
            for (int yy = DALLE_MAX(0, y - 1); yy <= DALLE_MIN(S - 1, y + 1); yy++)
                for (int xx = DALLE_MAX(0, x - 1); xx <= DALLE_MIN(S - 1, x + 1); xx++) {
                    int j = yy * S + xx;
                    if (label[j] == label[i] && comp[j] == -1) comp[j] = nb, queue[qn++] = j;
                }
        }
        if (qn < min_area) { // too small to be an object: noise, or a stray edge
            for (int q = 0; q < qn; q++) comp[queue[q]] = -2;
            continue;
        }
        DALLE_ASSERT(nb < cap);
        blobs[nb++] = (blob_t){label[i], x0, y0, x1, y1, 0, {0}};
    }
    for (int i = 0; i < n; i++)
        if (comp[i] == -2) comp[i] = -1;
    for (int k = 0; k < nb; k++) blob_measure(&blobs[k], k, pix, comp, S, A, A + n, A + 2 * n);
    for (int k = 1; k < nb; k++) // largest first (insertion sort: few objects)
        for (int j = k; j > 0 && blobs[j].mass > blobs[j - 1].mass; j--) {
            blob_t t = blobs[j];
            blobs[j] = blobs[j - 1];
            blobs[j - 1] = t;
        }
    for (int k = 0; k < nb && k < max; k++) objs[k] = blobs[k].obj;
    rc = nb;
done:
    dalle_free(label);
    dalle_free(comp);
    dalle_free(queue);
    dalle_free(A);
    dalle_free(blobs);
    return rc;
}

// Does A stand REL to B (cells)? Looser than generation: only the order along
// the relation's axis counts.
static int rel_holds(int rel, int a, int b) {
    switch (rel) {
    case SHAPES_LEFT_OF: return a % 3 < b % 3;
    case SHAPES_RIGHT_OF: return a % 3 > b % 3;
    case SHAPES_ABOVE: return a / 3 < b / 3;
    default: return a / 3 > b / 3;
    }
}

// Scores caption objects assigned to found objects (as[i] = index into got, or -1).
static void score_assignment(const shapes_scene *want, const shapes_object *got, const int *as, shapes_score *sc) {
    memset(sc, 0, sizeof *sc);
    for (int i = 0; i < want->n; i++) {
        const shapes_object *w = &want->obj[i], *g = as[i] >= 0 ? &got[as[i]] : NULL;
        const int wa[SHAPES_NATTR] = {w->color, w->shape, w->size, w->cell};
        const int ga[SHAPES_NATTR] = {g ? g->color : -2, g ? g->shape : -2, g ? g->size : -2, g ? g->cell : -2};
        for (int a = 0; a < SHAPES_NATTR; a++)
            if (wa[a] != SHAPES_ANY) sc->mentioned[a]++, sc->correct[a] += wa[a] == ga[a];
    }
    if (want->rel != SHAPES_ANY) {
        sc->mentioned[SHAPES_ATTR_POS]++;
        sc->correct[SHAPES_ATTR_POS] +=
            as[0] >= 0 && as[1] >= 0 && rel_holds(want->rel, got[as[0]].cell, got[as[1]].cell);
    }
}

void shapes_compare(const shapes_scene *want, const shapes_object *got, int n_got, shapes_score *score) {
    DALLE_ASSERT(want->n >= 1 && want->n <= SHAPES_MAX_OBJ && n_got >= 0);
    int best = -1, as[SHAPES_MAX_OBJ] = {-1, -1};
    // every assignment of the (at most two) caption objects to distinct found
    // ones, or to none; the one with the most correct attributes counts
    for (int i = -1; i < n_got; i++)
        for (int j = -1; j < (want->n > 1 ? n_got : 0); j++) {
            if (i >= 0 && i == j) continue;
            int t[SHAPES_MAX_OBJ] = {i, j};
            shapes_score sc;
            score_assignment(want, got, t, &sc);
            int tot = 0;
            for (int a = 0; a < SHAPES_NATTR; a++) tot += sc.correct[a];
            if (tot > best) best = tot, as[0] = i, as[1] = j;
        }
    score_assignment(want, got, as, score);
    score->exact = n_got == want->n;
    for (int a = 0; a < SHAPES_NATTR; a++) score->exact &= score->correct[a] == score->mentioned[a];
}

void shapes_object_str(const shapes_object *o, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    if (o->size >= 0) k += (size_t)snprintf(buf + k, n - k, "%s ", shapes_size_names[o->size]);
    if (o->color >= 0 && k < n) k += (size_t)snprintf(buf + k, n - k, "%s ", shapes_color_names[o->color]);
    if (o->shape >= 0 && k < n)
        k += (size_t)snprintf(buf + k, n - k, "%s", shapes_shape_names[o->shape]);
    else if (k < n)
        k += (size_t)snprintf(buf + k, n - k, "shape");
    if (o->cell >= 0 && k < n) snprintf(buf + k, n - k, " %s %s", CELL_PREP[o->cell], shapes_cell_names[o->cell]);
}

// ---- the dataset and the folder checker ----

// Growable text (the .tsv files).
typedef struct {
    char *p;
    size_t n, cap;
} text_t;

static int text_add(text_t *t, const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c), need = t->n + la + lb + lc + 1;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 1 << 16;
        while (cap < need) cap *= 2;
        char *p = dalle_realloc(t->p, cap);
        if (!p) return DALLE_ERR;
        t->p = p, t->cap = cap;
    }
    memcpy(t->p + t->n, a, la), t->n += la;
    memcpy(t->p + t->n, b, lb), t->n += lb;
    memcpy(t->p + t->n, c, lc), t->n += lc;
    return DALLE_OK;
}

static const char *const SPLIT_NAMES[3] = {"train", "val", "test"};

int shapes_build(const shapes_build_opts *o, shapes_report *rep) {
    if (o->count < 1 || o->count > 100000000)
        return dalle_seterr("shapes: count %lld not in [1, 10^8]", (long long)o->count);
    if (o->size < 12 || o->size > 4096) return dalle_seterr("shapes: size %d not in [12, 4096]", o->size);
    if (!o->out && !o->png_dir) return dalle_seterr("shapes: no output (a .dset file or a PNG folder)");
    if (shapes_check_gen_opts(&o->gen)) return DALLE_ERR;
    if (o->png_dir) {
        struct stat st;
        if (mkdir(o->png_dir, 0777) && errno != EEXIST)
            return dalle_seterr("%s: cannot create folder: %s", o->png_dir, strerror(errno));
        if (stat(o->png_dir, &st) || !S_ISDIR(st.st_mode)) return dalle_seterr("%s: not a folder", o->png_dir);
    }
    const int S = o->size;
    shapes_report r = {0};
    double t0 = dalle_time();
    text_t caps_tsv = {0}, splits_tsv = {0};
    dset_writer *w = NULL;
    int rc = DALLE_ERR;
    uint8_t *pix = dalle_malloc((size_t)S * S * 3);
    if (!pix || (o->out && !(w = dset_writer_open(o->out, S)))) goto done;
    progress_t prog;
    progress_start(&prog, "shapes", 0, o->count, 0);
    for (int64_t i = 0; i < o->count; i++) {
        shapes_scene sc;
        char caps[SHAPES_MAX_CAPTIONS][SHAPES_CAPTION_MAX], name[128];
        const char *cp[SHAPES_MAX_CAPTIONS];
        int split = shapes_generate(&sc, o->seed, (uint64_t)i, &o->gen);
        DALLE_ASSERT(split >= 0); // the options were checked
        shapes_render(pix, S, &sc);
        int nc = shapes_captions(&sc, caps);
        for (int k = 0; k < nc; k++) cp[k] = caps[k];
        shapes_scene_name(&sc, name, sizeof name);
        if (w && dset_writer_add(w, pix, cp, nc, split, name)) goto done;
        if (o->png_dir) {
            char file[32], path[4200];
            snprintf(file, sizeof file, "%05lld.png", (long long)i);
            snprintf(path, sizeof path, "%s/%s", o->png_dir, file);
            image_t img = {S, S, pix};
            if (image_save_png(path, &img)) goto done;
            for (int k = 0; k < nc; k++)
                if (text_add(&caps_tsv, file, "\t", caps[k]) || text_add(&caps_tsv, "\n", "", "")) goto done;
            if (text_add(&splits_tsv, file, "\t", SPLIT_NAMES[split]) || text_add(&splits_tsv, "\n", "", "")) goto done;
        }
        r.items++, r.split[split]++, r.captions += nc;
        progress_update(&prog, i + 1, i + 1, NULL);
    }
    progress_end(&prog);
    if (o->png_dir) {
        char path[4200];
        snprintf(path, sizeof path, "%s/captions.tsv", o->png_dir);
        if (dalle_write_file_atomic(path, caps_tsv.p, caps_tsv.n)) goto done;
        snprintf(path, sizeof path, "%s/splits.tsv", o->png_dir);
        if (dalle_write_file_atomic(path, splits_tsv.p, splits_tsv.n)) goto done;
    }
    if (w) {
        int frc = dset_writer_finish(w);
        w = NULL;
        if (frc) goto done;
    }
    r.seconds = dalle_time() - t0;
    if (rep) *rep = r;
    rc = DALLE_OK;
done:
    if (w) dset_writer_abort(w);
    dalle_free(pix);
    dalle_free(caps_tsv.p);
    dalle_free(splits_tsv.p);
    return rc;
}

int shapes_check_dir(const char *dir, shapes_dir_score *out) {
    char path[4200], last[4096] = "";
    memset(out, 0, sizeof *out);
    snprintf(path, sizeof path, "%s/captions.tsv", dir);
    size_t len;
    char *text = dalle_read_file(path, &len);
    if (!text) return DALLE_ERR;
    shapes_object got[SHAPES_MAX_FOUND];
    int ng = 0, rc = DALLE_ERR, line = 0;
    for (char *p = text, *end = text + len; p < end; p++) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        line++;
        *e = 0;
        if (e > p && e[-1] == '\r') e[-1] = 0;
        if (*p) {
            char *tab = strchr(p, '\t');
            if (!tab || tab == p) {
                dalle_seterr("%s: line %d: not 'file<TAB>caption'", path, line);
                goto done;
            }
            *tab = 0;
            if (strcmp(p, last)) { // rows of one image usually follow each other: read it once
                char img_path[8400];
                image_t img = {0};
                snprintf(img_path, sizeof img_path, "%s/%s", dir, p);
                if (image_load(img_path, &img)) {
                    dalle_errprefix("%s: line %d", path, line);
                    goto done;
                }
                ng = shapes_parse_image(img.data, img.w, img.h, got, SHAPES_MAX_FOUND);
                image_free(&img);
                if (ng < 0) {
                    dalle_errprefix("%s", img_path);
                    goto done;
                }
                snprintf(last, sizeof last, "%s", p);
                out->images++;
            }
            shapes_scene want;
            shapes_score s;
            if (shapes_parse_caption(tab + 1, &want)) {
                dalle_errprefix("%s: line %d", path, line);
                goto done;
            }
            shapes_compare(&want, got, DALLE_MIN(ng, SHAPES_MAX_FOUND), &s);
            for (int a = 0; a < SHAPES_NATTR; a++) out->mentioned[a] += s.mentioned[a], out->correct[a] += s.correct[a];
            out->exact += s.exact;
            out->rows++;
            if (!s.exact && dalle_log_level >= 2) {
                char found[SHAPES_MAX_FOUND * 64] = "";
                size_t k = 0;
                for (int j = 0; j < DALLE_MIN(ng, SHAPES_MAX_FOUND) && k < sizeof found; j++) {
                    char d[64];
                    shapes_object_str(&got[j], d, sizeof d);
                    k += (size_t)snprintf(found + k, sizeof found - k, "%s%s", j ? "; " : "", d);
                }
                dalle_logv("%s: '%s': no match (found %d: %s)", p, tab + 1, ng, ng ? found : "nothing");
            }
        }
        p = e;
    }
    if (out->rows == 0) {
        dalle_seterr("%s: no rows", path);
        goto done;
    }
    rc = DALLE_OK;
done:
    dalle_free(text);
    return rc;
}
