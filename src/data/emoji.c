// emoji.c: the emoji dataset (sources.h). Every fully-qualified emoji of
// Unicode's emoji-test.txt is shaped by HarfBuzz (so that ZWJ sequences,
// flags, keycaps and skin tones become one ligature glyph) and drawn by
// FreeType from Noto Color Emoji's colour bitmaps (CBDT, premultiplied BGRA),
// over white, centred in a square and reduced to S x S with the area filter.
// Captions come from the emoji's name and its English CLDR annotations.
//
// Also here: the output sink shared with clipart.c (duplicates, the split,
// the .dset writer, the PNG folder and its captions.tsv).
#include "sources.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ft2build.h>
#include FT_FREETYPE_H
#include <hb-ft.h>
#include <hb.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "core/common.h"
#include "core/image.h"
#include "core/progress.h"
#include "data/dataset.h"

// Share of items in the validation split, per mille (issue: ~5%).
#define VAL_PERMILLE 50
// Longest emoji sequence read from emoji-test.txt (the longest has 10
// code points), in code points and in UTF-8 bytes.
#define EMOJI_MAX_CP 16
#define EMOJI_MAX (4 * EMOJI_MAX_CP + 1)

const char *source_skip_name(int reason) {
    static const char *const NAMES[SOURCE_SKIP_N] = {"", "more than one glyph", "no glyph", "unreadable",
                                                     "render failed", "blank", "duplicate image"};
    DALLE_ASSERT(reason >= 1 && reason < SOURCE_SKIP_N);
    return NAMES[reason];
}

// ---------------------------------------------------------------- captions

// The length of the valid UTF-8 character at p (1 to 4), or 0 (a stray or
// cut byte, an overlong form, a surrogate, past U+10FFFF).
static size_t utf8_char_len(const unsigned char *p) {
    if (p[0] < 0x80) return 1;
    size_t n = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    for (size_t k = 1; k < n; k++)
        if ((p[k] & 0xC0) != 0x80) return 0;
    if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0) || (p[0] == 0xF0 && p[1] < 0x90) ||
        (p[0] == 0xF4 && p[1] >= 0x90))
        return 0;
    return n;
}

void source_caption_add(source_captions *c, const char *fmt, ...) {
    if (c->n == SOURCE_MAX_CAPTIONS) return;
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    char *t = c->text[c->n];
    size_t n = 0;
    int space = 0;
    for (const unsigned char *p = (const unsigned char *)raw; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f') {
            space = n > 0;
            continue;
        }
        if (space) {
            if (n + 1 >= SOURCE_CAPTION_LEN) break;
            t[n++] = ' ';
            space = 0;
        }
        // A character goes in whole or not at all; invalid bytes (text cut
        // short by the caller) are dropped.
        size_t len = utf8_char_len(p);
        if (len == 0) continue;
        if (n + len >= SOURCE_CAPTION_LEN) break;
        for (size_t k = 0; k < len; k++) t[n++] = (char)(p[k] >= 'A' && p[k] <= 'Z' ? p[k] + 32 : p[k]);
        p += len - 1;
    }
    t[n] = 0;
    if (n == 0) return;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->text[i], t)) return;
    c->n++;
}

// ---------------------------------------------------------------- output sink

struct source_sink {
    dset_writer *w; // NULL without --out
    char *png_dir;  // NULL without --png
    int S;
    uint64_t *seen; // hashes of the images written, open addressing (0: empty)
    size_t seen_cap, seen_n;
    char *tsv; // captions.tsv so far
    size_t tsv_n, tsv_cap;
    int64_t n;
};

source_sink *source_sink_open(const char *out, const char *png_dir, int size) {
    DALLE_ASSERT(out || png_dir);
    source_sink *s = dalle_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->S = size;
    s->seen_cap = 1 << 12;
    if (!(s->seen = dalle_calloc(s->seen_cap, sizeof *s->seen))) goto fail;
    if (png_dir) {
        struct stat st;
        if (mkdir(png_dir, 0777) && errno != EEXIST) {
            dalle_seterr("%s: cannot create folder: %s", png_dir, strerror(errno));
            goto fail;
        }
        if (stat(png_dir, &st) || !S_ISDIR(st.st_mode)) {
            dalle_seterr("%s: not a folder", png_dir);
            goto fail;
        }
        if (!(s->png_dir = dalle_strdup(png_dir))) goto fail;
    }
    if (out && !(s->w = dset_writer_open(out, size))) goto fail;
    return s;
fail:
    source_sink_abort(s);
    return NULL;
}

// Adds hash h to the set; 0 if it was there already.
static int seen_add(source_sink *s, uint64_t h) {
    if (!h) h = 1;
    if (2 * (s->seen_n + 1) > s->seen_cap) {
        size_t cap = 2 * s->seen_cap;
        uint64_t *t = dalle_calloc(cap, sizeof *t);
        if (!t) return DALLE_ERR;
        for (size_t i = 0; i < s->seen_cap; i++) {
            uint64_t v = s->seen[i];
            if (!v) continue;
            size_t j = (size_t)v & (cap - 1);
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = v;
        }
        dalle_free(s->seen);
        s->seen = t;
        s->seen_cap = cap;
    }
    size_t j = (size_t)h & (s->seen_cap - 1);
    for (; s->seen[j]; j = (j + 1) & (s->seen_cap - 1))
        if (s->seen[j] == h) return 0;
    s->seen[j] = h;
    s->seen_n++;
    return 1;
}

static int tsv_append(source_sink *s, const char *text, size_t len) {
    if (s->tsv_n + len > s->tsv_cap) {
        size_t cap = s->tsv_cap ? s->tsv_cap : 1 << 16;
        while (cap < s->tsv_n + len) cap *= 2;
        char *p = dalle_realloc(s->tsv, cap);
        if (!p) return DALLE_ERR;
        s->tsv = p;
        s->tsv_cap = cap;
    }
    memcpy(s->tsv + s->tsv_n, text, len);
    s->tsv_n += len;
    return DALLE_OK;
}

int source_sink_add(source_sink *s, const uint8_t *pixels, const source_captions *c, const char *source,
                    source_report *rep) {
    DALLE_ASSERT(c->n >= 1);
    size_t bytes = (size_t)s->S * (size_t)s->S * 3;
    int fresh = seen_add(s, dset_fnv(pixels, bytes));
    if (fresh <= 0) {
        if (fresh == 0) rep->skipped[SOURCE_SKIP_DUPLICATE]++;
        return fresh;
    }
    int split = dset_split_of(source, VAL_PERMILLE);
    const char *caps[SOURCE_MAX_CAPTIONS];
    for (int k = 0; k < c->n; k++) caps[k] = c->text[k];
    if (s->w && dset_writer_add(s->w, pixels, caps, c->n, split, source)) return DALLE_ERR;
    if (s->png_dir) {
        char name[32], path[4096], row[SOURCE_CAPTION_LEN + 40];
        snprintf(name, sizeof name, "%05lld.png", (long long)s->n);
        snprintf(path, sizeof path, "%s/%s", s->png_dir, name);
        image_t img = {s->S, s->S, (uint8_t *)pixels};
        if (image_save_png(path, &img)) return DALLE_ERR;
        for (int k = 0; k < c->n; k++) {
            int len = snprintf(row, sizeof row, "%s\t%s\n", name, c->text[k]);
            if (tsv_append(s, row, (size_t)len)) return DALLE_ERR;
        }
    }
    s->n++;
    rep->items++;
    rep->val += split == DSET_VAL;
    rep->captions += c->n;
    return 1;
}

static void sink_free(source_sink *s) {
    dalle_free(s->seen);
    dalle_free(s->png_dir);
    dalle_free(s->tsv);
    dalle_free(s);
}

int source_sink_finish(source_sink *s) {
    int rc = DALLE_OK;
    if (s->png_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/captions.tsv", s->png_dir);
        rc = dalle_write_file_atomic(path, s->tsv ? s->tsv : "", s->tsv_n);
    }
    if (s->w) {
        if (rc == DALLE_OK) rc = dset_writer_finish(s->w);
        else dset_writer_abort(s->w);
    }
    sink_free(s);
    return rc;
}

void source_sink_abort(source_sink *s) {
    if (!s) return;
    if (s->w) dset_writer_abort(s->w);
    sink_free(s);
}

// ---------------------------------------------------------------- CLDR annotations

// One emoji's annotations: keys are the emoji without U+FE0F, because CLDR
// writes most of them unqualified.
typedef struct {
    char *key;
    int order;  // file, then position: the first one of a key wins
    char *tts;  // the short name ("grinning face"), or NULL
    char *kw;   // keywords "face | grin | grinning face", or NULL
} cldr_entry;

typedef struct {
    cldr_entry *e;
    int n, cap;
} cldr_map;

// Copies S without its U+FE0F into T (room for strlen(S) + 1).
static void strip_fe0f(char *t, const char *s) {
    for (const char *p = s; *p;)
        if (!strncmp(p, "\xEF\xB8\x8F", 3)) p += 3;
        else *t++ = *p++;
    *t = 0;
}

static int cldr_push(cldr_map *m, const char *cp, const char *type, const char *text) {
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 4096;
        cldr_entry *e = dalle_realloc(m->e, sizeof *e * (size_t)cap);
        if (!e) return DALLE_ERR;
        m->e = e;
        m->cap = cap;
    }
    cldr_entry *e = &m->e[m->n];
    *e = (cldr_entry){.order = m->n};
    int tts = type && !strcmp(type, "tts");
    if (!(e->key = dalle_malloc(strlen(cp) + 1)) || !(*(tts ? &e->tts : &e->kw) = dalle_strdup(text))) {
        dalle_free(e->key);
        return DALLE_ERR;
    }
    strip_fe0f(e->key, cp);
    m->n++;
    return DALLE_OK;
}

// Reads the <annotation cp="..." [type="tts"]>text</annotation> elements of
// one CLDR annotations file. A missing file is an error only if REQUIRED.
static int cldr_load(cldr_map *m, const char *path, int required) {
    struct stat st;
    if (!required && stat(path, &st)) return DALLE_OK;
    xmlDoc *doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) return dalle_seterr("%s: cannot read as XML (CLDR annotations; package unicode-cldr-core)", path);
    int rc = DALLE_OK;
    xmlNode *root = xmlDocGetRootElement(doc);
    for (xmlNode *sec = root ? root->children : NULL; sec && rc == DALLE_OK; sec = sec->next) {
        if (sec->type != XML_ELEMENT_NODE || strcmp((const char *)sec->name, "annotations")) continue;
        for (xmlNode *a = sec->children; a && rc == DALLE_OK; a = a->next) {
            if (a->type != XML_ELEMENT_NODE || strcmp((const char *)a->name, "annotation")) continue;
            xmlChar *cp = xmlGetProp(a, (const xmlChar *)"cp"), *type = xmlGetProp(a, (const xmlChar *)"type");
            xmlChar *text = xmlNodeGetContent(a);
            if (cp && text) rc = cldr_push(m, (const char *)cp, (const char *)type, (const char *)text);
            xmlFree(cp);
            xmlFree(type);
            xmlFree(text);
        }
    }
    xmlFreeDoc(doc);
    return rc;
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(((const cldr_entry *)a)->key, ((const cldr_entry *)b)->key);
}

static int cmp_entry(const void *a, const void *b) {
    const cldr_entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static void cldr_free(cldr_map *m) {
    for (int i = 0; i < m->n; i++) {
        dalle_free(m->e[i].key);
        dalle_free(m->e[i].tts);
        dalle_free(m->e[i].kw);
    }
    dalle_free(m->e);
    *m = (cldr_map){0};
}

// Sorts by key and merges the entries of each key into its first one.
static void cldr_index(cldr_map *m) {
    qsort(m->e, (size_t)m->n, sizeof *m->e, cmp_entry);
    int n = 0;
    for (int i = 0; i < m->n; i++) {
        cldr_entry *e = &m->e[i];
        if (n > 0 && !strcmp(m->e[n - 1].key, e->key)) {
            cldr_entry *d = &m->e[n - 1];
            if (!d->tts) d->tts = e->tts, e->tts = NULL;
            if (!d->kw) d->kw = e->kw, e->kw = NULL;
            dalle_free(e->key);
            dalle_free(e->tts);
            dalle_free(e->kw);
        } else m->e[n++] = *e;
    }
    m->n = n;
}

// The annotations of EMOJI (UTF-8, shorter than EMOJI_MAX bytes), or NULL.
static const cldr_entry *cldr_find(const cldr_map *m, const char *emoji) {
    char key[EMOJI_MAX];
    strip_fe0f(key, emoji);
    cldr_entry probe = {.key = key};
    return bsearch(&probe, m->e, (size_t)m->n, sizeof *m->e, cmp_key);
}

// ---------------------------------------------------------------- emoji-test.txt

typedef struct {
    char hex[8 * EMOJI_MAX_CP]; // "1F469 200D 1F467": the code points, the split's and source's name
    char utf8[EMOJI_MAX];
    const char *name; // "woman: red hair", into the file's text
    int skip;         // 0, or why it is left out (SOURCE_SKIP_*)
} emoji_item;

// Pass 1's record of a drawn emoji: duplicates sort next to each other, the
// one to keep first.
typedef struct {
    uint64_t hash; // of the pixels
    size_t name_len;
    int i;
} emoji_rank;

static int cmp_rank(const void *a, const void *b) {
    const emoji_rank *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    if (x->name_len != y->name_len) return x->name_len < y->name_len ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static size_t utf8_put(char *out, uint32_t c) {
    if (c < 0x80) return out[0] = (char)c, 1;
    if (c < 0x800) return out[0] = (char)(0xC0 | c >> 6), out[1] = (char)(0x80 | (c & 0x3F)), 2;
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12), out[1] = (char)(0x80 | (c >> 6 & 0x3F)), out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18), out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F)), out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

// Parses one line of emoji-test.txt (NUL-terminated, in place):
//   "1F44B 1F3FD ; fully-qualified # 👋🏽 E1.0 waving hand: medium skin tone"
// 1 for a fully-qualified emoji (filled in), 0 for any other line, DALLE_ERR
// if it does not parse.
static int parse_line(char *line, emoji_item *it) {
    if (line[0] == '#' || line[0] == 0) return 0;
    char *semi = strchr(line, ';'), *hash = strchr(line, '#');
    if (!semi || !hash || hash < semi) return DALLE_ERR;
    char status[32] = "";
    sscanf(semi + 1, "%31s", status);
    if (strcmp(status, "fully-qualified")) return 0;
    *it = (emoji_item){0};
    size_t nh = 0, nu = 0;
    int ncp = 0;
    for (char *p = line; p < semi;) {
        while (p < semi && *p == ' ') p++;
        if (p == semi) break;
        char *end;
        unsigned long c = strtoul(p, &end, 16);
        if (end == p || end > semi || c > 0x10FFFF || ncp == EMOJI_MAX_CP) return DALLE_ERR;
        nh += (size_t)snprintf(it->hex + nh, sizeof it->hex - nh, "%s%04lX", ncp ? " " : "", c);
        nu += utf8_put(it->utf8 + nu, (uint32_t)c);
        ncp++;
        p = end;
    }
    if (ncp == 0) return DALLE_ERR;
    it->utf8[nu] = 0;
    // After '#': the emoji, its version "E1.0", then the name.
    char *p = hash + 1;
    while (*p == ' ') p++;
    while (*p && *p != ' ') p++;
    while (*p == ' ') p++;
    if (*p != 'E') return DALLE_ERR;
    while (*p && *p != ' ') p++;
    while (*p == ' ') p++;
    char *e = p + strlen(p);
    while (e > p && (e[-1] == ' ' || e[-1] == '\r')) *--e = 0;
    if (e == p) return DALLE_ERR;
    it->name = p;
    return 1;
}

// ---------------------------------------------------------------- captions

// Whether TEXT contains WORDS, ignoring ASCII case.
static int contains_nocase(const char *text, const char *words) {
    size_t n = strlen(words);
    for (const char *p = text; *p; p++)
        if (!strncasecmp(p, words, n)) return 1;
    return n == 0;
}

// Whether TEXT holds WORD[0..n) as whole words, ignoring ASCII case.
static int has_words(const char *text, const char *word, size_t n) {
    for (const char *p = text; *p; p++) {
        int start = p == text || p[-1] == ' ' || p[-1] == ',' || p[-1] == ':';
        if (start && !strncasecmp(p, word, n) && (p[n] == 0 || strchr(" ,:", p[n]))) return 1;
    }
    return 0;
}

// "a " or "an " for a noun phrase, or "" when its head (the word before
// "with", "in", "of"... or the last one) looks plural: "folded hands",
// "people holding hands".
static const char *article(const char *phrase) {
    static const char *const PREP[] = {" with ", " in ", " of ", " on ", " for ", " at ", " holding ", " from ", ","};
    size_t end = strlen(phrase);
    for (size_t i = 0; i < sizeof PREP / sizeof *PREP; i++) {
        const char *p = strstr(phrase, PREP[i]);
        if (p && (size_t)(p - phrase) < end) end = (size_t)(p - phrase);
    }
    size_t start = end;
    while (start > 0 && phrase[start - 1] != ' ') start--;
    const char *head = phrase + start;
    size_t n = end - start;
    static const char *const PLURAL[] = {"people", "men", "women", "children", "feet"};
    for (size_t i = 0; i < sizeof PLURAL / sizeof *PLURAL; i++)
        if (n == strlen(PLURAL[i]) && !strncmp(head, PLURAL[i], n)) return "";
    if (n > 2 && head[n - 1] == 's' && !strchr("siu", head[n - 2])) return "";
    static const char *const A[] = {"uni", "use", "usu", "one", "eu", "ur"};
    for (size_t i = 0; i < sizeof A / sizeof *A; i++)
        if (!strncmp(phrase, A[i], strlen(A[i]))) return "a ";
    return phrase[0] && strchr("aeiou", phrase[0]) ? "an " : "a ";
}

// The captions of one emoji (see docs/data.md, "Emoji"):
//   NAME                      "waving hand: medium skin tone"
//   A PHRASE                  "a waving hand, medium skin tone", "a flag of japan"
//   an emoji of A PHRASE      "an emoji of a grinning face"
//   the CLDR short name       (when it differs from NAME)
//   PHRASE, KEYWORDS          "grinning face, grin" (the CLDR keywords not in the name)
static void emoji_captions(source_captions *c, const char *name, const cldr_entry *e) {
    char lower[SOURCE_CAPTION_LEN], phrase[2 * SOURCE_CAPTION_LEN];
    snprintf(lower, sizeof lower, "%s", name);
    for (char *p = lower; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p += 32;
    char *colon = strstr(lower, ": ");
    const char *qual = colon ? colon + 2 : NULL;
    if (colon) *colon = 0; // lower is now the base name
    if (!qual) snprintf(phrase, sizeof phrase, "%s", lower);
    else if (!strcmp(lower, "flag") || !strcmp(lower, "family")) snprintf(phrase, sizeof phrase, "%s of %s", lower, qual);
    else if (!strcmp(lower, "keycap")) snprintf(phrase, sizeof phrase, "keycap %s", qual);
    else snprintf(phrase, sizeof phrase, "%s, %s", lower, qual);
    const char *art = article(phrase);

    source_caption_add(c, "%s", name);
    source_caption_add(c, "%s%s", art, phrase);
    source_caption_add(c, "an emoji of %s%s", art, phrase);
    if (!e) return;
    if (e->tts) source_caption_add(c, "%s", e->tts);
    if (!e->kw) return;
    char kws[SOURCE_CAPTION_LEN] = "";
    size_t n = 0;
    for (const char *p = e->kw; *p && n < sizeof kws - 1;) {
        while (*p == ' ' || *p == '|') p++;
        const char *q = strchr(p, '|');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ') len--;
        // Keywords already in the name say nothing new.
        if (len && !has_words(name, p, len) && !(e->tts && has_words(e->tts, p, len)) && n + len + 2 < sizeof kws)
            n += (size_t)snprintf(kws + n, sizeof kws - n, "%s%.*s", n ? ", " : "", (int)len, p);
        p = q ? q + 1 : p + strlen(p);
    }
    if (n) source_caption_add(c, "%s, %s", phrase, kws);
}

// ---------------------------------------------------------------- rendering

typedef struct {
    FT_Library ft;
    FT_Face face;
    hb_font_t *font;
    hb_buffer_t *buf;
    image_t canvas; // the glyph over white, square
} emoji_renderer;

static void renderer_free(emoji_renderer *r) {
    if (r->buf) hb_buffer_destroy(r->buf);
    if (r->font) hb_font_destroy(r->font); // drops the face's last reference
    else if (r->face) FT_Done_Face(r->face);
    if (r->ft) FT_Done_FreeType(r->ft);
    image_free(&r->canvas);
    *r = (emoji_renderer){0};
}

static int renderer_init(emoji_renderer *r, const char *path) {
    *r = (emoji_renderer){0};
    if (FT_Init_FreeType(&r->ft)) return dalle_seterr("FreeType: cannot initialise");
    if (FT_New_Face(r->ft, path, 0, &r->face)) {
        r->face = NULL;
        renderer_free(r);
        return dalle_seterr("%s: cannot open as a font (package fonts-noto-color-emoji)", path);
    }
    // A CBDT font has bitmap strikes only: take the largest.
    if (!FT_HAS_COLOR(r->face) || !FT_HAS_FIXED_SIZES(r->face) || r->face->num_fixed_sizes < 1) {
        renderer_free(r);
        return dalle_seterr("%s: not a colour bitmap font (expected Noto Color Emoji, CBDT)", path);
    }
    int best = 0;
    for (int i = 1; i < r->face->num_fixed_sizes; i++)
        if (r->face->available_sizes[i].y_ppem > r->face->available_sizes[best].y_ppem) best = i;
    if (FT_Select_Size(r->face, best)) {
        renderer_free(r);
        return dalle_seterr("%s: cannot select its bitmap strike", path);
    }
    r->font = hb_ft_font_create_referenced(r->face);
    hb_ft_font_set_load_flags(r->font, FT_LOAD_COLOR);
    r->buf = hb_buffer_create();
    if (!hb_buffer_allocation_successful(r->buf)) {
        renderer_free(r);
        return dalle_seterr("HarfBuzz: out of memory");
    }
    return DALLE_OK;
}

// Shapes and draws one emoji into `out` (S x S, allocated here). Returns
// DALLE_OK, a SOURCE_SKIP_* reason (> 0: out untouched), or DALLE_ERR.
static int render_emoji(emoji_renderer *r, const char *utf8, int S, image_t *out, unsigned *n_glyphs) {
    hb_buffer_clear_contents(r->buf);
    hb_buffer_set_flags(r->buf, HB_BUFFER_FLAG_REMOVE_DEFAULT_IGNORABLES); // variation selectors leave no glyph
    hb_buffer_add_utf8(r->buf, utf8, -1, 0, -1);
    hb_buffer_guess_segment_properties(r->buf);
    hb_shape(r->font, r->buf, NULL, 0);
    const hb_glyph_info_t *info = hb_buffer_get_glyph_infos(r->buf, n_glyphs);
    if (*n_glyphs != 1) return SOURCE_SKIP_GLYPHS; // the font has no ligature for this sequence
    if (info[0].codepoint == 0) return SOURCE_SKIP_MISSING;
    if (FT_Load_Glyph(r->face, info[0].codepoint, FT_LOAD_COLOR))
        return dalle_seterr("cannot load glyph %u", info[0].codepoint);
    const FT_Bitmap *bm = &r->face->glyph->bitmap;
    if (bm->pixel_mode != FT_PIXEL_MODE_BGRA || bm->width == 0 || bm->rows == 0)
        return dalle_seterr("glyph %u is not a colour bitmap", info[0].codepoint);
    int w = (int)bm->width, h = (int)bm->rows, side = DALLE_MAX(w, h);
    if (r->canvas.w != side) {
        image_free(&r->canvas);
        if (image_alloc(&r->canvas, side, side)) return DALLE_ERR;
    }
    memset(r->canvas.data, 255, (size_t)side * (size_t)side * 3);
    int x0 = (side - w) / 2, y0 = (side - h) / 2;
    for (int y = 0; y < h; y++) {
        const uint8_t *src = bm->buffer + (ptrdiff_t)y * bm->pitch; // premultiplied B, G, R, A
        uint8_t *dst = r->canvas.data + ((size_t)(y0 + y) * (size_t)side + (size_t)x0) * 3;
        for (int x = 0; x < w; x++, src += 4, dst += 3) {
            int white = 255 - src[3]; // premultiplied over white: c + (1 - a)
            dst[0] = (uint8_t)DALLE_MIN(255, src[2] + white);
            dst[1] = (uint8_t)DALLE_MIN(255, src[1] + white);
            dst[2] = (uint8_t)DALLE_MIN(255, src[0] + white);
        }
    }
    return image_resize(&r->canvas, S, S, IMAGE_AREA, out);
}

// ---------------------------------------------------------------- the build

emoji_opts emoji_default_opts(void) {
    return (emoji_opts){
        .size = 64,
        .font = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
        .emoji_test = "/usr/share/unicode/emoji/emoji-test.txt",
        .cldr = "/usr/share/unicode/cldr/common",
    };
}

int emoji_build(const emoji_opts *o, source_report *rep_out) {
    source_report rep = {0};
    double t0 = dalle_time();
    if (o->size < 1 || o->size > 4096) return dalle_seterr("emoji: size %d is not within 1..4096", o->size);
    if (!o->out && !o->png_dir) return dalle_seterr("emoji: no output (a .dset file or a PNG folder)");
    int rc = DALLE_ERR;
    char *text = NULL;
    emoji_item *items = NULL;
    emoji_rank *order = NULL;
    int n_items = 0;
    cldr_map cldr = {0};
    emoji_renderer r = {0};
    source_sink *sink = NULL;
    image_t img = {0};
    char path[4096];

    size_t len;
    if (!(text = dalle_read_file(o->emoji_test, &len))) {
        dalle_errprefix("emoji-test.txt (package unicode-data)");
        goto done;
    }
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    if (!(items = dalle_malloc(sizeof *items * n_lines))) goto done;
    int line_no = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        line_no++;
        int k = parse_line(line, &items[n_items]);
        if (k < 0) {
            dalle_seterr("%s:%d: not an emoji-test.txt line", o->emoji_test, line_no);
            goto done;
        }
        if (k == 0 || (o->match && !contains_nocase(items[n_items].name, o->match))) continue;
        if (o->limit > 0 && n_items == o->limit) break;
        n_items++;
    }
    if (n_items == 0) {
        dalle_seterr("%s: no fully-qualified emoji%s%s", o->emoji_test, o->match ? " matching " : "",
                     o->match ? o->match : "");
        goto done;
    }
    snprintf(path, sizeof path, "%s/annotations/en.xml", o->cldr);
    if (cldr_load(&cldr, path, 1)) goto done;
    snprintf(path, sizeof path, "%s/annotationsDerived/en.xml", o->cldr);
    if (cldr_load(&cldr, path, 0)) goto done;
    cldr_index(&cldr);
    if (renderer_init(&r, o->font) || !(sink = source_sink_open(o->out, o->png_dir, o->size))) goto done;

    // Pass 1 draws every emoji to find those the font draws alike
    // (territories under a country's flag, skin tones a glyph ignores): of
    // each group the one with the shortest name is kept ("flag: france",
    // not "flag: st. martin"), the first on a tie. Pass 2 writes.
    if (!(order = dalle_malloc(sizeof *order * (size_t)n_items))) goto done;
    progress_t prog;
    progress_start(&prog, "emoji", 0, 2 * (int64_t)n_items, 0);
    int n_order = 0;
    for (int i = 0; i < n_items; i++) {
        emoji_item *it = &items[i];
        unsigned n_glyphs = 0;
        it->skip = render_emoji(&r, it->utf8, o->size, &img, &n_glyphs);
        if (it->skip < 0) {
            dalle_errprefix("%s: emoji %s (%s)", o->font, it->hex, it->name);
            goto done;
        }
        if (it->skip > 0)
            dalle_logv("emoji: skipped %s (%s): %s (%u glyphs)", it->hex, it->name, source_skip_name(it->skip), n_glyphs);
        else order[n_order++] = (emoji_rank){dset_fnv(img.data, (size_t)o->size * (size_t)o->size * 3), strlen(it->name), i};
        image_free(&img);
        progress_update(&prog, i + 1, i + 1, NULL);
    }
    qsort(order, (size_t)n_order, sizeof *order, cmp_rank);
    for (int j = 1, keep = 0; j < n_order; j++) {
        if (order[j].hash != order[keep].hash) {
            keep = j;
            continue;
        }
        emoji_item *it = &items[order[j].i];
        it->skip = SOURCE_SKIP_DUPLICATE;
        dalle_logv("emoji: skipped %s (%s): the image of %s", it->hex, it->name, items[order[keep].i].name);
    }
    for (int i = 0; i < n_items; i++) {
        const emoji_item *it = &items[i];
        rep.inputs++;
        if (it->skip > 0) rep.skipped[it->skip]++;
        else {
            unsigned n_glyphs;
            source_captions caps = {0};
            emoji_captions(&caps, it->name, cldr_find(&cldr, it->utf8));
            int added = render_emoji(&r, it->utf8, o->size, &img, &n_glyphs);
            if (added == DALLE_OK) added = source_sink_add(sink, img.data, &caps, it->hex, &rep);
            image_free(&img);
            if (added != 1) goto done; // drawn twice alike: neither a skip nor a duplicate now
        }
        progress_update(&prog, n_items + i + 1, n_items + i + 1, NULL);
    }
    progress_end(&prog);
    rc = source_sink_finish(sink);
    sink = NULL;
done:
    source_sink_abort(sink);
    image_free(&img);
    renderer_free(&r);
    cldr_free(&cldr);
    dalle_free(order);
    dalle_free(items);
    dalle_free(text);
    rep.seconds = dalle_time() - t0;
    if (rep_out) *rep_out = rep;
    return rc;
}
