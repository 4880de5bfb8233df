// sources.h: the built-in datasets made offline from Debian packages, each a
// set of captioned S x S images written as a .dset (dataset.h) and/or as a
// folder of PNGs:
//   emoji.c    every fully-qualified emoji of emoji-test.txt, drawn from Noto
//              Color Emoji (FreeType + HarfBuzz), captions from CLDR;
//   clipart.c  the openclipart-svg drawings (librsvg), captions from their
//              titles, keywords and folders.
// Both are deterministic: the same packages give the same bytes. The output
// side they share (the sink: duplicates, splits, captions.tsv) is in emoji.c.
#pragma once
#include <stdint.h>

// Why an input item was left out (source_report.skipped; from 1, so that
// a reason is never DALLE_OK).
enum {
    SOURCE_SKIP_GLYPHS = 1, // emoji: the sequence shapes into more than one glyph
    SOURCE_SKIP_MISSING,    // emoji: the font has no glyph for it
    SOURCE_SKIP_PARSE,      // clip art: librsvg or libxml2 cannot read it, or it has no size
    SOURCE_SKIP_RENDER,     // clip art: rendering failed
    SOURCE_SKIP_BLANK,      // nothing drawn: the image is all white
    SOURCE_SKIP_DUPLICATE,  // exactly the pixels of an item written before
    SOURCE_SKIP_N
};

typedef struct {
    int64_t inputs;   // input items looked at
    int64_t items;    // items written
    int64_t val;      // of which in the validation split (DSET_VAL)
    int64_t captions; // captions written
    int64_t skipped[SOURCE_SKIP_N]; // by reason; [0] unused
    double seconds;
} source_report;

// A short name for a skip reason ("more than one glyph", "blank", ...).
const char *source_skip_name(int reason);

typedef struct {
    int size;               // S: images are S x S (64)
    int64_t limit;          // only the first N emoji that match (0: all)
    const char *match;      // only emoji whose name contains this (NULL: all)
    const char *out;        // .dset to write (NULL: none)
    const char *png_dir;    // folder for NNNNN.png + captions.tsv (NULL: none)
    const char *font;       // the CBDT colour font, Noto Color Emoji
    const char *emoji_test; // Unicode's emoji-test.txt
    const char *cldr;       // CLDR's common/ folder (annotations/en.xml, annotationsDerived/en.xml)
} emoji_opts;

// The defaults: size 64, the Debian paths of the three packages, no output.
emoji_opts emoji_default_opts(void);
// Renders every fully-qualified emoji into o->out and/or o->png_dir (at least
// one) and fills *rep (may be NULL). DALLE_ERR with the error set on bad
// options or inputs, or if writing fails (then no output file is left).
int emoji_build(const emoji_opts *o, source_report *rep);

typedef struct {
    int size;            // S: images are S x S (64)
    int64_t limit;       // only the first N files that match, by sorted path (0: all)
    const char *match;   // only files whose relative path contains this (NULL: all)
    const char *out;     // .dset to write (NULL: none)
    const char *png_dir; // folder for NNNNN.png + captions.tsv (NULL: none)
    const char *root;    // the folder of SVG files (openclipart-svg's)
} clipart_opts;

// The defaults: size 64, root /usr/share/openclipart/svg, no output.
clipart_opts clipart_default_opts(void);
// Renders every .svg under o->root (recursively) into o->out and/or
// o->png_dir and fills *rep (may be NULL). A file that fails or renders blank
// is skipped and counted (a line per file at --verbose). DALLE_ERR as for
// emoji_build.
int clipart_build(const clipart_opts *o, source_report *rep);

// ---- shared by emoji.c and clipart.c

// Up to SOURCE_MAX_CAPTIONS distinct captions of one item.
#define SOURCE_MAX_CAPTIONS 8
#define SOURCE_CAPTION_LEN 256
typedef struct {
    char text[SOURCE_MAX_CAPTIONS][SOURCE_CAPTION_LEN];
    int n;
} source_captions;

// Formats a caption, lower-cases its ASCII letters, turns every run of
// whitespace (tabs, newlines) into one space, drops bytes that are not valid
// UTF-8, trims it, cuts it at a character boundary below SOURCE_CAPTION_LEN,
// and adds it unless it is empty, already there, or the set is full.
void source_caption_add(source_captions *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The output of a build: a dset_writer and/or a PNG folder.
typedef struct source_sink source_sink;
// Opens OUT (may be NULL) and/or creates PNG_DIR (may be NULL) for S x S images.
source_sink *source_sink_open(const char *out, const char *png_dir, int size);
// Adds one item (pixels S*S*3 HWC RGB) named SOURCE (its split is
// dset_split_of(SOURCE, 50)), unless its pixels equal an earlier item's.
// Returns 1 if added, 0 if a duplicate, DALLE_ERR on failure. Counts into *rep.
int source_sink_add(source_sink *s, const uint8_t *pixels, const source_captions *c, const char *source,
                    source_report *rep);
// Writes captions.tsv and finishes the .dset; frees s either way.
int source_sink_finish(source_sink *s);
// Frees s, leaving no .dset behind (PNGs already written stay).
void source_sink_abort(source_sink *s);
