// build.c: `dalle data build` (build.h): caption file + image folder ->
// dataset, with the paper's filters. Order: the images in the order the
// caption file first names them; all of an image's rows are its captions.
#include <cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "core/image.h"
#include "core/progress.h"
#include "dalle/dalle.h"
#include "data/build.h"
#include "data/dataset.h"
#include "text/unicode.h"

data_build_opts data_build_defaults(int size) {
    return (data_build_opts){NULL, NULL, NULL, size, 50, 2, 0.9, 1, 2.0, size};
}

// ---------------------------------------------------------------- caption filters

int caption_long_enough(const char *s, int min_words) {
    if (min_words <= 0) return 1;
    int words = 0, in = 0;
    for (const char *p = s; *p; p++) {
        int sp = *p == ' ';
        if (!sp && !in) words++;
        in = !sp;
    }
    return words >= min_words;
}

// English function words: a caption of more than 3 words needs one of them.
static const char *const FUNCTION_WORDS[] = {
    "a", "an", "the", "of", "in", "on", "at", "to", "with", "and", "or", "but", "is", "are", "was", "were", "be",
    "been", "for", "from", "by", "as", "this", "that", "these", "those", "it", "its", "he", "she", "his", "her",
    "they", "their", "our", "my", "your", "we", "you", "some", "two", "three", "four", "one", "near", "under",
    "over", "next", "behind", "above", "below", "into", "onto", "up", "down", "out", "off", "has", "have", "had",
    "there", "here", "while", "who", "which", "what", "where", "when", "how", "very", "not", "no", "all", "each",
    "other", "than", "then", "so", "if", "about", "through", "between", "around", "without", "can", "will"};

int caption_is_english(const char *s, double min_ascii) {
    if (min_ascii <= 0) return 1;
    size_t n = strlen(s);
    int64_t letters = 0, ascii = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += uni_decode((const uint8_t *)s + i, n - i, &cp);
        if (uni_class(UNI_HF, cp) & UNI_L) {
            letters++;
            ascii += cp < 128;
        }
    }
    if (letters == 0 || (double)ascii < min_ascii * (double)letters) return 0;
    int words = 0, function = 0;
    for (const char *p = s; *p;) {
        while (*p && !isalpha((unsigned char)*p)) p++;
        const char *w = p;
        while (*p && isalpha((unsigned char)*p)) p++;
        if (p == w) break;
        words++;
        for (size_t k = 0; k < sizeof FUNCTION_WORDS / sizeof *FUNCTION_WORDS && !function; k++)
            function = strlen(FUNCTION_WORDS[k]) == (size_t)(p - w) && !strncasecmp(FUNCTION_WORDS[k], w, (size_t)(p - w));
    }
    return function || words <= 3;
}

// Words that boilerplate date captions are made of, besides the dates.
static const char *const BOILER[] = {"photographed", "taken", "photo", "picture", "image", "img", "dsc", "pic",
                                     "on", "at", "in", "the", "of", "date", "uploaded", "shot", "captured", "am",
                                     "pm", "utc", "gmt"};
static const char *const DATE_NAMES[] = {
    "jan", "january", "feb", "february", "mar", "march", "apr", "april", "may", "jun", "june", "jul", "july",
    "aug", "august", "sep", "sept", "september", "oct", "october", "nov", "november", "dec", "december",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};

static int in_list(const char *w, size_t n, const char *const *list, size_t count) {
    for (size_t k = 0; k < count; k++)
        if (strlen(list[k]) == n && !strncasecmp(list[k], w, n)) return 1;
    return 0;
}

// A number, date or time (digits with - / . : _ separators, an ordinal such
// as 3rd) or a camera file name (img_1234, dsc01234).
static int is_dateish_token(const char *w, size_t n) {
    size_t i = 0, digits = 0;
    if (n > 3 && (!strncasecmp(w, "img", 3) || !strncasecmp(w, "dsc", 3))) i = 3;
    for (; i < n; i++) {
        if (isdigit((unsigned char)w[i])) digits++;
        else if (strchr("-/.:_", w[i])) continue;
        else if (digits && n - i == 2 && in_list(w + i, 2, (const char *const[]){"st", "nd", "rd", "th"}, 4)) break;
        else return 0;
    }
    return digits > 0;
}

int caption_is_date_boilerplate(const char *s) {
    int dates = 0;
    for (const char *p = s; *p;) {
        while (*p && strchr(" ,()", *p)) p++;
        const char *w = p;
        while (*p && !strchr(" ,()", *p)) p++;
        size_t n = (size_t)(p - w);
        while (n && w[n - 1] == '.') n--;
        if (!n) continue;
        if (is_dateish_token(w, n) || in_list(w, n, DATE_NAMES, sizeof DATE_NAMES / sizeof *DATE_NAMES)) dates++;
        else if (!in_list(w, n, BOILER, sizeof BOILER / sizeof *BOILER)) return 0;
    }
    return dates > 0;
}

// Cleans a caption in place: control characters become spaces, white space
// runs collapse, the ends are trimmed. 0 if it is not valid UTF-8.
static int clean_caption(char *s) {
    size_t n = strlen(s), o = 0;
    int space = 1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = uni_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp >= UNI_BAD_BYTE) return 0;
        if (cp < 0x20 || cp == 0x7f || (uni_class(UNI_HF, cp) & UNI_S)) {
            if (!space) s[o++] = ' ';
            space = 1;
        } else {
            memmove(s + o, s + i, k);
            o += k;
            space = 0;
        }
        i += k;
    }
    while (o && s[o - 1] == ' ') o--;
    s[o] = 0;
    return 1;
}

// ---------------------------------------------------------------- the caption file

typedef struct {
    char *file;
    char **caps;
    int n, cap;
} entry;

typedef struct {
    entry *e;
    int n, cap;
    int *table; // open addressing on file name -> entry index + 1
    int tcap;
} entries;

static int entries_find(entries *es, const char *file, int create) {
    if (2 * (es->n + 1) > es->tcap) {
        int cap = es->tcap ? es->tcap * 2 : 1024;
        int *t = dalle_calloc((size_t)cap, sizeof *t);
        if (!t) return -1;
        for (int i = 0; i < es->n; i++) {
            uint64_t h = dset_fnv(es->e[i].file, strlen(es->e[i].file));
            int j = (int)(h & (uint64_t)(cap - 1));
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = i + 1;
        }
        dalle_free(es->table);
        es->table = t;
        es->tcap = cap;
    }
    uint64_t h = dset_fnv(file, strlen(file));
    int j = (int)(h & (uint64_t)(es->tcap - 1));
    while (es->table[j]) {
        if (!strcmp(es->e[es->table[j] - 1].file, file)) return es->table[j] - 1;
        j = (j + 1) & (es->tcap - 1);
    }
    if (!create) return -1;
    if (es->n == es->cap) {
        int cap = es->cap ? es->cap * 2 : 256;
        entry *p = dalle_realloc(es->e, sizeof *p * (size_t)cap);
        if (!p) return -1;
        es->e = p;
        es->cap = cap;
    }
    es->e[es->n] = (entry){dalle_strdup(file), NULL, 0, 0};
    if (!es->e[es->n].file) return -1;
    es->table[j] = es->n + 1;
    return es->n++;
}

static int entry_add(entry *e, const char *cap, size_t len) {
    if (e->n == e->cap) {
        int c = e->cap ? e->cap * 2 : 4;
        char **p = dalle_realloc(e->caps, sizeof *p * (size_t)c);
        if (!p) return DALLE_ERR;
        e->caps = p;
        e->cap = c;
    }
    char *s = dalle_malloc(len + 1);
    if (!s) return DALLE_ERR;
    memcpy(s, cap, len);
    s[len] = 0;
    e->caps[e->n++] = s;
    return DALLE_OK;
}

static void entries_free(entries *es) {
    for (int i = 0; i < es->n; i++) {
        for (int k = 0; k < es->e[i].n; k++) dalle_free(es->e[i].caps[k]);
        dalle_free(es->e[i].caps);
        dalle_free(es->e[i].file);
    }
    dalle_free(es->e);
    dalle_free(es->table);
}

// Parses a caption file's content text[0..n) (modified in place; TSV, or
// JSON Lines when it starts with '{') into es; PATH names it in errors.
static int parse_captions(const char *path, char *text, size_t n, entries *es, int64_t *rows) {
    size_t i = 0;
    while (i < n && isspace((unsigned char)text[i])) i++;
    int jsonl = i < n && text[i] == '{';
    int rc = DALLE_OK;
    int64_t line = 0;
    for (size_t a = 0; a < n && rc == DALLE_OK;) {
        char *nl = memchr(text + a, '\n', n - a);
        size_t b = nl ? (size_t)(nl - text) : n;
        line++;
        char *s = text + a;
        size_t len = b - a;
        if (len && s[len - 1] == '\r') len--;
        s[len] = 0;
        a = b + 1;
        if (!len) continue;
        (*rows)++;
        if (jsonl) {
            cJSON *j = cJSON_ParseWithLength(s, len);
            const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "file") : NULL;
            const cJSON *c = j ? cJSON_GetObjectItemCaseSensitive(j, "caption") : NULL;
            const cJSON *cs = j ? cJSON_GetObjectItemCaseSensitive(j, "captions") : NULL;
            if (!cJSON_IsString(f) || (!cJSON_IsString(c) && !cJSON_IsArray(cs))) {
                rc = dalle_seterr("%s: line %lld: expected {\"file\": ..., \"caption\": ...} or \"captions\": [...]",
                                  path, (long long)line);
            } else {
                int e = entries_find(es, f->valuestring, 1);
                if (e < 0) rc = DALLE_ERR;
                if (cJSON_IsString(c) && rc == DALLE_OK)
                    rc = entry_add(&es->e[e], c->valuestring, strlen(c->valuestring));
                for (const cJSON *x = cJSON_IsArray(cs) ? cs->child : NULL; x && rc == DALLE_OK; x = x->next)
                    if (cJSON_IsString(x)) rc = entry_add(&es->e[e], x->valuestring, strlen(x->valuestring));
            }
            cJSON_Delete(j);
        } else {
            char *tab = memchr(s, '\t', len);
            if (!tab) {
                rc = dalle_seterr("%s: line %lld: expected file<TAB>caption", path, (long long)line);
                break;
            }
            *tab = 0;
            int e = entries_find(es, s, 1);
            rc = e < 0 ? DALLE_ERR : entry_add(&es->e[e], tab + 1, strlen(tab + 1));
        }
    }
    return rc;
}

static int read_captions(const char *path, entries *es, int64_t *rows) {
    size_t n;
    char *text = dalle_read_file(path, &n);
    if (!text) return DALLE_ERR;
    int rc = parse_captions(path, text, n, es, rows);
    dalle_free(text);
    return rc;
}

int data_captions_check(const char *name, const char *text, size_t n, int64_t *images, int64_t *captions) {
    entries es = {0};
    int64_t rows = 0;
    char *copy = dalle_malloc(n + 1);
    if (!copy) return DALLE_ERR;
    memcpy(copy, text, n);
    copy[n] = 0;
    int rc = parse_captions(name, copy, n, &es, &rows);
    *images = es.n;
    *captions = 0;
    for (int i = 0; i < es.n; i++) *captions += es.e[i].n;
    entries_free(&es);
    dalle_free(copy);
    return rc;
}

// ---------------------------------------------------------------- the build

// Resizes the shorter side to S (area when shrinking, Lanczos when growing)
// and crops the centre S x S.
static int resize_square(const image_t *in, int S, image_t *out) {
    int sm = in->w < in->h ? in->w : in->h;
    int w = (int)(((int64_t)in->w * S + sm / 2) / sm), h = (int)(((int64_t)in->h * S + sm / 2) / sm);
    if (w < S) w = S;
    if (h < S) h = S;
    image_t r = {0};
    if (image_resize(in, w, h, sm > S ? IMAGE_AREA : IMAGE_LANCZOS, &r)) return DALLE_ERR;
    int rc = image_crop(&r, (w - S) / 2, (h - S) / 2, S, S, out);
    image_free(&r);
    return rc;
}

int data_build(const data_build_opts *o, data_build_report *r) {
    memset(r, 0, sizeof *r);
    entries es = {0};
    dset_writer *w = NULL;
    image_t img = {0}, sq = {0};
    const char **keep = NULL;
    int rc = DALLE_ERR;
    if (o->size < 8 || o->size > 4096) return dalle_seterr("data build: --size %d is outside [8, 4096]", o->size);
    if (read_captions(o->captions, &es, &r->rows)) goto done;
    r->images_named = es.n;
    if (!(w = dset_writer_open(o->out, o->size))) goto done;
    progress_t pr;
    progress_start(&pr, "data build", 0, es.n, 0);
    char path[4096];
    for (int i = 0; i < es.n; i++) {
        entry *e = &es.e[i];
        progress_update(&pr, i + 1, i + 1, NULL);
        snprintf(path, sizeof path, "%s/%s", o->images, e->file);
        FILE *f = fopen(path, "rb");
        if (!f) {
            r->missing++;
            dalle_logv("data build: %s: missing, skipped", path);
            continue;
        }
        fclose(f);
        image_free(&img);
        if (image_load(path, &img)) {
            r->unreadable++;
            dalle_logv("data build: skipped: %s", dalle_last_error());
            continue;
        }
        int sm = img.w < img.h ? img.w : img.h, lg = img.w < img.h ? img.h : img.w;
        if (o->min_side > 0 && sm < o->min_side) {
            r->too_small++;
            continue;
        }
        if (o->max_aspect > 0 && (double)lg > o->max_aspect * (double)sm) {
            r->aspect++;
            continue;
        }
        int nk = 0;
        dalle_free(keep);
        keep = dalle_malloc(sizeof(char *) * (size_t)(e->n ? e->n : 1));
        if (!keep) goto done;
        for (int k = 0; k < e->n; k++) {
            char *c = e->caps[k];
            if (!clean_caption(c)) {
                r->cap_utf8++;
                continue;
            }
            if (!caption_long_enough(c, o->min_words)) {
                r->cap_short++;
                continue;
            }
            if (!caption_is_english(c, o->english)) {
                r->cap_english++;
                continue;
            }
            if (o->drop_dates && caption_is_date_boilerplate(c)) {
                r->cap_date++;
                continue;
            }
            keep[nk++] = c;
        }
        if (!nk) {
            r->no_caption_left++;
            continue;
        }
        image_free(&sq);
        if (resize_square(&img, o->size, &sq)) goto done;
        if (dset_writer_has_image(w, sq.data)) {
            r->duplicate++;
            continue;
        }
        if (dset_writer_add(w, sq.data, keep, nk, dset_split_of(e->file, o->val_permille), e->file)) goto done;
        r->written++;
        r->captions_kept += nk;
    }
    progress_end(&pr);
    if (r->written == 0) {
        dalle_seterr("%s: no image left to write (of %lld named: %lld missing, %lld unreadable, %lld too small, %lld "
                     "with a bad aspect ratio, %lld duplicates, %lld without a caption that passes the filters)",
                     o->out, (long long)r->images_named, (long long)r->missing, (long long)r->unreadable,
                     (long long)r->too_small, (long long)r->aspect, (long long)r->duplicate,
                     (long long)r->no_caption_left);
        goto done;
    }
    rc = dset_writer_finish(w);
    w = NULL;
done:
    dalle_free(keep);
    dset_writer_abort(w);
    image_free(&img);
    image_free(&sq);
    entries_free(&es);
    return rc;
}
