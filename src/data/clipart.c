// clipart.c: the clip-art dataset (sources.h). Every .svg under the root
// (openclipart-svg's /usr/share/openclipart/svg), in sorted path order, is
// drawn by librsvg on a white cairo surface, its ink box fitted into the
// square with a margin (aspect kept), at 4x and reduced to S x S with the
// area filter. Captions come from the drawing's metadata read with libxml2
// (the work's dc:title, else the SVG <title>; dc:subject keywords;
// dc:description), the file name when the title is a collection's name or
// a file name, and the folders as categories, cleaned (see docs/data.md,
// "Clip art").
#include "sources.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <librsvg/rsvg.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "core/common.h"
#include "core/image.h"
#include "core/progress.h"

#define TEXT_LEN 256 // longest title, name, category list or keyword list kept
// The page of an SVG with neither width and height nor viewBox, in pixels:
// its drawing is found by its ink within.
#define NO_SIZE_PAGE 4096

// ---------------------------------------------------------------- the files

typedef struct {
    char **rel; // paths relative to the root, "animals/birds/duck.svg"
    int n, cap;
} file_list;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void files_free(file_list *l) {
    for (int i = 0; i < l->n; i++) dalle_free(l->rel[i]);
    dalle_free(l->rel);
    *l = (file_list){0};
}

// Adds the .svg files under ROOT/REL (REL "" at the top) to l.
static int walk(file_list *l, const char *root, const char *rel, int depth) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel);
    if (depth > 32) return dalle_seterr("%s: folders nested too deeply", dir);
    DIR *d = opendir(dir);
    if (!d) return dalle_seterr("%s: cannot open folder: %s", dir, strerror(errno));
    int rc = DALLE_OK;
    for (struct dirent *ent; rc == DALLE_OK && (ent = readdir(d));) {
        if (ent->d_name[0] == '.') continue;
        char sub[4096], full[8192];
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", ent->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (stat(full, &st)) continue;
        if (S_ISDIR(st.st_mode)) {
            rc = walk(l, root, sub, depth + 1);
            continue;
        }
        size_t len = strlen(sub);
        if (!S_ISREG(st.st_mode) || len < 4 || strcasecmp(sub + len - 4, ".svg")) continue;
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 1024;
            char **p = dalle_realloc(l->rel, sizeof *p * (size_t)cap);
            if (!p) rc = DALLE_ERR;
            else l->rel = p, l->cap = cap;
        }
        if (rc == DALLE_OK && !(l->rel[l->n++] = dalle_strdup(sub))) l->n--, rc = DALLE_ERR;
    }
    closedir(d);
    return rc;
}

// ---------------------------------------------------------------- cleaning names

// Words that mark a title as the name of a collection rather than of the
// drawing ("Part of the Flat Icon Collection (...)", "Lemon SVG theme").
static const char *const GENERIC[] = {"svg",      "collection", "theme",      "iconset",    "icons",
                                      "clipart",  "cliparts",   "sibmission", "submission", "various"};
// Parts of file names that say nothing about the drawing.
static const char *const STEM_NOISE[] = {"gnome", "gtk", "stock", "fs", "kde", "svg", "aiga", "icon", "clipart"};
// Keywords that say nothing about the drawing.
static const char *const KW_NOISE[] = {"hash", "icon", "icons", "theme", "clipart", "special", "unsorted", "mapsym"};

static int in_list(const char *w, size_t n, const char *const *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && !strncmp(w, list[i], n)) return 1;
    return 0;
}

static int has_word_of(const char *text, const char *const *list, size_t count) {
    for (const char *p = text; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, " ,");
        if (n && in_list(p, n, list, count)) return 1;
        p += n;
    }
    return 0;
}

static int has_letter(const char *s) {
    for (; *s; s++)
        if ((*s >= 'a' && *s <= 'z') || (unsigned char)*s >= 0x80) return 1;
    return 0;
}

// Cleans a title, folder name or keyword into OUT: ASCII lower case,
// " - " to ", ", other '_' and '-' to spaces, "(...)" holding a digit (dates)
// dropped, spaces collapsed and trimmed.
static void clean_words(char *out, size_t cap, const char *in) {
    size_t n = 0;
    int space = 0;
    for (const char *p = in; *p && n + 3 < cap; p++) {
        char c = *p;
        if (c == '(') {
            const char *q = strchr(p, ')');
            if (q && strpbrk(p, "0123456789") && strpbrk(p, "0123456789") < q) {
                p = q;
                space = n > 0;
                continue;
            }
        }
        if (c == ' ' && p[1] == '-' && p[2] == ' ') {
            if (n) out[n++] = ',';
            space = n > 0;
            p += 2;
            continue;
        }
        if (c == '_' || c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = n > 0;
            continue;
        }
        if (space) out[n++] = ' ', space = 0;
        out[n++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
    }
    while (n > 0 && (out[n - 1] == ',' || out[n - 1] == ' ' || out[n - 1] == '.')) n--;
    out[n] = 0;
}

// The drawing's name from its title into OUT; 0 if the title is empty, a
// collection's name, or a file name ("Clipart by Nicu Buculei - head1").
static int title_name(char *out, size_t cap, const char *title) {
    while (*title == ' ' || *title == '\t' || *title == '\n') title++;
    if (!strncasecmp(title, "clipart by ", 11)) {
        const char *dash = strstr(title, " - ");
        if (!dash) return 0;
        title = dash + 3;
    }
    size_t n = strlen(title);
    while (n > 0 && strchr(" \t\r\n", title[n - 1])) n--;
    if (n && !memchr(title, ' ', n) && (memchr(title, '_', n) || strpbrk(title, "0123456789"))) return 0;
    clean_words(out, cap, title);
    return has_letter(out) && !has_word_of(out, GENERIC, sizeof GENERIC / sizeof *GENERIC) &&
           strcmp(out, "map symbols");
}

// Whether a word of TEXT starts with W[0..n).
static int starts_a_word(const char *text, const char *w, size_t n) {
    for (const char *p = text; *p; p++)
        if ((p == text || p[-1] == ' ' || p[-1] == ',') && !strncmp(p, w, n)) return 1;
    return 0;
}

// The drawing's name from its file name into OUT ("001_star_butterfly.svg":
// "star butterfly"): words without their leading and trailing digits, and
// without words that still hold a digit, single letters, STEM_NOISE, and
// the start of a word of AGENTS (file names end in the author's name,
// cut short: "sport_architetto_frances_01.svg").
static void stem_name(char *out, size_t cap, const char *rel, const char *agents) {
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    size_t len = strlen(base) - 4, n = 0; // without ".svg"
    out[0] = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && !isalnum((unsigned char)base[i]) && (unsigned char)base[i] < 0x80) i++;
        size_t j = i;
        while (j < len && (isalnum((unsigned char)base[j]) || (unsigned char)base[j] >= 0x80)) j++;
        size_t a = i, b = j;
        i = j;
        while (a < b && isdigit((unsigned char)base[a])) a++;
        while (b > a && isdigit((unsigned char)base[b - 1])) b--;
        char w[TEXT_LEN];
        size_t wn = DALLE_MIN(b - a, sizeof w - 1);
        for (size_t k = 0; k < wn; k++) w[k] = (char)tolower((unsigned char)base[a + k]);
        w[wn] = 0;
        if (wn < 2 || strpbrk(w, "0123456789") || in_list(w, wn, STEM_NOISE, sizeof STEM_NOISE / sizeof *STEM_NOISE) ||
            starts_a_word(agents, w, wn))
            continue;
        if (n + wn + 2 > cap) break;
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? " " : "", w);
    }
}

// Whether the comma-separated LIST holds ITEM[0..n).
static int list_has(const char *list, const char *item, size_t n) {
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && !strncmp(p, item, n)) return 1;
        p += k;
        while (*p == ',' || *p == ' ') p++;
    }
    return 0;
}

// Appends ITEM to the comma-separated LIST unless it is empty, noise, NAME,
// or in the list already.
static void list_add(char *list, size_t cap, const char *item, const char *name) {
    size_t n = strlen(item), ln = strlen(list);
    if (!n || !has_letter(item) || !strcmp(item, name) || !strncmp(item, "0x", 2) ||
        in_list(item, n, KW_NOISE, sizeof KW_NOISE / sizeof *KW_NOISE) ||
        has_word_of(item, GENERIC, sizeof GENERIC / sizeof *GENERIC))
        return;
    if (list_has(list, item, n)) return;
    if (ln + n + 3 < cap) snprintf(list + ln, cap - ln, "%s%s", ln ? ", " : "", item);
}

// ---------------------------------------------------------------- metadata

#define NS_DC "http://purl.org/dc/elements/1.1/"

typedef struct {
    char title[TEXT_LEN];       // raw
    char description[TEXT_LEN]; // raw
    char keywords[TEXT_LEN];    // cleaned, "astronomy, planet, space"
    char agents[TEXT_LEN];      // cleaned names of the creator, rights holder, publisher
} svg_meta;

static int is_elem(const xmlNode *n, const char *name, const char *ns) {
    return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name) &&
           (!ns || (n->ns && n->ns->href && !strcmp((const char *)n->ns->href, ns)));
}

static void node_text(char *out, size_t cap, xmlNode *n) {
    xmlChar *t = xmlNodeGetContent(n);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
    xmlFree(t);
}

// The first element named NAME (any namespace) in document order.
static xmlNode *find_elem(xmlNode *n, const char *name, int depth) {
    for (; n && depth < 64; n = n->next) {
        if (is_elem(n, name, NULL)) return n;
        xmlNode *f = find_elem(n->children, name, depth + 1);
        if (f) return f;
    }
    return NULL;
}

static void collect_keywords(svg_meta *m, xmlNode *n, int depth) {
    for (; n && depth < 16; n = n->next) {
        if (is_elem(n, "li", NULL)) {
            char raw[TEXT_LEN], kw[TEXT_LEN];
            node_text(raw, sizeof raw, n);
            clean_words(kw, sizeof kw, raw);
            list_add(m->keywords, sizeof m->keywords, kw, "");
        } else collect_keywords(m, n->children, depth + 1);
    }
}

// Reads the title, description and keywords of the work (RDF metadata
// cc:Work), else the SVG's own <title>. DALLE_ERR if it is not XML.
static int read_meta(const char *path, svg_meta *m) {
    *m = (svg_meta){0};
    xmlDoc *doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_HUGE);
    if (!doc) return dalle_seterr("%s: not well-formed XML", path);
    xmlNode *root = xmlDocGetRootElement(doc);
    xmlNode *work = root ? find_elem(root->children, "Work", 0) : NULL;
    for (xmlNode *n = work ? work->children : NULL; n; n = n->next) {
        if (is_elem(n, "title", NS_DC)) node_text(m->title, sizeof m->title, n);
        else if (is_elem(n, "description", NS_DC)) node_text(m->description, sizeof m->description, n);
        else if (is_elem(n, "subject", NS_DC)) collect_keywords(m, n->children, 0);
        else if (is_elem(n, "creator", NS_DC) || is_elem(n, "rights", NS_DC) || is_elem(n, "publisher", NS_DC) ||
                 is_elem(n, "contributor", NS_DC)) {
            xmlNode *t = find_elem(n->children, "title", 0);
            char raw[TEXT_LEN], name[TEXT_LEN];
            if (!t) continue;
            node_text(raw, sizeof raw, t);
            clean_words(name, sizeof name, raw);
            list_add(m->agents, sizeof m->agents, name, "");
        }
    }
    for (xmlNode *n = root && !m->title[0] ? root->children : NULL; n; n = n->next)
        if (is_elem(n, "title", NULL)) {
            node_text(m->title, sizeof m->title, n);
            break;
        }
    xmlFreeDoc(doc);
    return DALLE_OK;
}

// Keywords kept per caption: the first ones, which say most.
#define MAX_KEYWORDS 6
// Descriptions that describe the tool, not the drawing.
static const char *const DESC_NOISE[] = {"http", "www.", "inkscape", "sodipodi", "created with", "made with", "@"};

// The captions of one drawing (see docs/data.md, "Clip art"):
//   NAME                           "saturn"
//   clip art of NAME               "clip art of saturn"
//   NAME, FOLDERS                  "saturn, astronomy, science" (innermost first)
//   NAME: KEYWORDS                 "saturn: planet, space" (up to MAX_KEYWORDS)
//   DESCRIPTION                    "the planet saturn" (short ones)
// NAME is the cleaned title, else the cleaned file name, else the innermost
// folder. Folders and keywords that repeat the name, each other, or the
// author's name are left out.
static void clipart_captions(source_captions *c, const char *rel, const svg_meta *m) {
    char name[TEXT_LEN], folders[TEXT_LEN] = "", cats[TEXT_LEN] = "", kws[TEXT_LEN] = "", desc[TEXT_LEN];
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", rel);
    for (char *slash; (slash = strrchr(dirs, '/'));) {
        *slash = 0;
        char *part = strrchr(dirs, '/'), cat[TEXT_LEN];
        clean_words(cat, sizeof cat, part ? part + 1 : dirs);
        list_add(folders, sizeof folders, cat, "");
    }
    if (!title_name(name, sizeof name, m->title) || list_has(m->agents, name, strlen(name)))
        stem_name(name, sizeof name, rel, m->agents);
    if (!name[0]) snprintf(name, sizeof name, "%.*s", (int)strcspn(folders, ","), folders[0] ? folders : "clip art");
    for (const char *p = folders; *p;) {
        size_t k = strcspn(p, ",");
        char item[TEXT_LEN];
        snprintf(item, sizeof item, "%.*s", (int)k, p);
        list_add(cats, sizeof cats, item, name);
        for (p += k; *p == ',' || *p == ' ';) p++;
    }
    int nk = 0;
    for (const char *p = m->keywords; *p && nk < MAX_KEYWORDS;) {
        size_t k = strcspn(p, ",");
        if (!list_has(cats, p, k) && !list_has(m->agents, p, k) && !list_has(kws, p, k)) {
            char item[TEXT_LEN];
            snprintf(item, sizeof item, "%.*s", (int)k, p);
            size_t before = strlen(kws);
            list_add(kws, sizeof kws, item, name);
            nk += strlen(kws) != before;
        }
        for (p += k; *p == ',' || *p == ' ';) p++;
    }
    source_caption_add(c, "%s", name);
    source_caption_add(c, "clip art of %s", name);
    if (cats[0]) source_caption_add(c, "%s, %s", name, cats);
    if (kws[0]) source_caption_add(c, "%s: %s", name, kws);
    clean_words(desc, sizeof desc, m->description);
    size_t dn = strlen(desc);
    int noise = !has_letter(desc) || !strcmp(desc, name) || list_has(m->agents, desc, dn) ||
                has_word_of(desc, KW_NOISE, sizeof KW_NOISE / sizeof *KW_NOISE);
    for (size_t i = 0; i < sizeof DESC_NOISE / sizeof *DESC_NOISE; i++) noise |= strstr(desc, DESC_NOISE[i]) != NULL;
    if (dn >= 3 && dn <= 100 && !noise) source_caption_add(c, "%s", desc);
}

// ---------------------------------------------------------------- rendering

// Draws the SVG at PATH into `out` (S x S, allocated here): its ink box
// (within its page) fitted into the square less a margin of S/16 per side,
// centred, over white, drawn at SS x the size and reduced with the area
// filter. Returns DALLE_OK, a SOURCE_SKIP_* reason (> 0, WHY says more), or
// DALLE_ERR (out of memory).
static int render_svg(const char *path, int S, image_t *out, char *why, size_t why_len) {
    int SS = DALLE_MAX(1, DALLE_MIN(4, 1024 / S)), R = S * SS;
    GError *err = NULL;
    RsvgHandle *h = rsvg_handle_new_from_file(path, &err);
    if (!h) {
        snprintf(why, why_len, "%s", err ? err->message : "cannot load");
        if (err) g_error_free(err);
        return SOURCE_SKIP_PARSE;
    }
    int rc = SOURCE_SKIP_PARSE;
    cairo_surface_t *surf = NULL;
    cairo_t *cr = NULL;
    image_t big = {0};
    double w = 0, hh = 0;
    if (!rsvg_handle_get_intrinsic_size_in_pixels(h, &w, &hh)) {
        // No absolute size: the viewBox's, or without one (width and height
        // 100%, user units are pixels) a page of NO_SIZE_PAGE pixels.
        gboolean has_vb = FALSE;
        RsvgRectangle vb = {0};
        rsvg_handle_get_intrinsic_dimensions(h, NULL, NULL, NULL, NULL, &has_vb, &vb);
        w = has_vb ? vb.width : NO_SIZE_PAGE;
        hh = has_vb ? vb.height : NO_SIZE_PAGE;
    }
    if (!(w > 0 && hh > 0 && w < 1e7 && hh < 1e7)) {
        snprintf(why, why_len, "no usable width, height or viewBox");
        goto done;
    }
    RsvgRectangle page = {0, 0, w, hh}, ink, logical;
    rc = SOURCE_SKIP_RENDER;
    if (!rsvg_handle_get_geometry_for_layer(h, NULL, &page, &ink, &logical, &err)) {
        snprintf(why, why_len, "%s", err ? err->message : "no geometry");
        goto done;
    }
    // The page clips the drawing: keep the ink inside it.
    double x0 = DALLE_MAX(ink.x, 0.0), y0 = DALLE_MAX(ink.y, 0.0);
    double x1 = DALLE_MIN(ink.x + ink.width, w), y1 = DALLE_MIN(ink.y + ink.height, hh);
    double side = DALLE_MAX(x1 - x0, y1 - y0);
    if (!(x1 > x0 || y1 > y0) || !(side > 1e-6 * DALLE_MAX(w, hh))) {
        snprintf(why, why_len, "no ink on the page");
        rc = SOURCE_SKIP_BLANK;
        goto done;
    }
    double scale = R * (1 - 2.0 / 16) / side;
    surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, R, R);
    cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_translate(cr, R / 2.0 - scale * (x0 + x1) / 2, R / 2.0 - scale * (y0 + y1) / 2);
    cairo_scale(cr, scale, scale);
    if (!rsvg_handle_render_document(h, cr, &page, &err) || cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
        snprintf(why, why_len, "%s", err ? err->message : cairo_status_to_string(cairo_status(cr)));
        goto done;
    }
    cairo_surface_flush(surf);
    if (image_alloc(&big, R, R)) {
        rc = DALLE_ERR;
        goto done;
    }
    const unsigned char *px = cairo_image_surface_get_data(surf);
    int stride = cairo_image_surface_get_stride(surf);
    for (int y = 0; y < R; y++)
        for (int x = 0; x < R; x++) {
            uint32_t v; // xRGB in native byte order
            memcpy(&v, px + (size_t)y * (size_t)stride + 4 * (size_t)x, 4);
            uint8_t *d = big.data + ((size_t)y * (size_t)R + (size_t)x) * 3;
            d[0] = (uint8_t)(v >> 16), d[1] = (uint8_t)(v >> 8), d[2] = (uint8_t)v;
        }
    if (image_resize(&big, S, S, IMAGE_AREA, out)) {
        rc = DALLE_ERR;
        goto done;
    }
    rc = SOURCE_SKIP_BLANK;
    snprintf(why, why_len, "all white");
    for (size_t i = 0; i < (size_t)S * (size_t)S * 3; i++)
        if (out->data[i] != 255) {
            rc = DALLE_OK;
            break;
        }
    if (rc) image_free(out);
done:
    if (err) g_error_free(err);
    if (cr) cairo_destroy(cr);
    if (surf) cairo_surface_destroy(surf);
    image_free(&big);
    g_object_unref(h);
    return rc;
}

// ---------------------------------------------------------------- the build

clipart_opts clipart_default_opts(void) {
    return (clipart_opts){.size = 64, .root = "/usr/share/openclipart/svg"};
}

int clipart_build(const clipart_opts *o, source_report *rep_out) {
    source_report rep = {0};
    double t0 = dalle_time();
    if (o->size < 1 || o->size > 4096) return dalle_seterr("clipart: size %d is not within 1..4096", o->size);
    if (!o->out && !o->png_dir) return dalle_seterr("clipart: no output (a .dset file or a PNG folder)");
    int rc = DALLE_ERR;
    file_list files = {0};
    source_sink *sink = NULL;
    image_t img = {0};
    if (walk(&files, o->root, "", 0)) {
        dalle_errprefix("clip art (package openclipart-svg)");
        goto done;
    }
    qsort(files.rel, (size_t)files.n, sizeof *files.rel, cmp_str);
    int n = 0; // the files to draw, moved to the front
    for (int i = 0; i < files.n; i++) {
        if ((o->match && !strstr(files.rel[i], o->match)) || (o->limit > 0 && n == o->limit)) continue;
        char *t = files.rel[n];
        files.rel[n++] = files.rel[i];
        files.rel[i] = t;
    }
    if (n == 0) {
        dalle_seterr("%s: no .svg files%s%s", o->root, o->match ? " matching " : "", o->match ? o->match : "");
        goto done;
    }
    if (!(sink = source_sink_open(o->out, o->png_dir, o->size))) goto done;

    progress_t prog;
    progress_start(&prog, "clipart", 0, n, 0);
    for (int i = 0; i < n; i++) {
        const char *rel = files.rel[i];
        char path[8192], why[512] = "";
        snprintf(path, sizeof path, "%s/%s", o->root, rel);
        rep.inputs++;
        svg_meta meta;
        int k = read_meta(path, &meta) ? SOURCE_SKIP_PARSE : render_svg(path, o->size, &img, why, sizeof why);
        if (k == SOURCE_SKIP_PARSE && !why[0]) snprintf(why, sizeof why, "%s", dalle_last_error());
        if (k < 0) goto done;
        if (k > 0) {
            for (char *p = why; *p; p++) // library messages may hold newlines
                if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
            rep.skipped[k]++;
            dalle_logv("clipart: skipped %s: %s (%s)", rel, source_skip_name(k), why);
        } else {
            source_captions caps = {0};
            clipart_captions(&caps, rel, &meta);
            int added = source_sink_add(sink, img.data, &caps, rel, &rep);
            image_free(&img);
            if (added < 0) goto done;
            if (added == 0) dalle_logv("clipart: skipped %s: duplicate image", rel);
        }
        progress_update(&prog, i + 1, i + 1, NULL);
    }
    progress_end(&prog);
    rc = source_sink_finish(sink);
    sink = NULL;
done:
    source_sink_abort(sink);
    image_free(&img);
    files_free(&files);
    rep.seconds = dalle_time() - t0;
    if (rep_out) *rep_out = rep;
    return rc;
}
