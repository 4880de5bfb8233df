// build.h: `dalle data build`: a folder of images and a caption file become a
// dataset (.dset), through the paper's filters (SPEC §4), each on by default,
// each with its threshold as an option, each counted in the report.
#pragma once
#include <stdint.h>

typedef struct {
    const char *images;   // folder the caption file's names are relative to
    const char *captions; // TSV (file<TAB>caption, several rows per image) or JSON Lines
                          // ({"file": ..., "caption": ...} or "captions": [...])
    const char *out;      // dataset file
    int size;             // S: images are resized (area down, Lanczos up) and centre-cropped
    int val_permille;     // share of sources in the validation split (by hash of the file name)
    // filters (0 or negative turns one off)
    int min_words;        // captions with fewer words are dropped (2)
    double english;       // a caption is English when this share of its letters are ASCII (0.9) and it
                          // has an English function word, or it has at most 3 words
    int drop_dates;       // drop boilerplate date captions ("photographed on <date>", bare dates) (1)
    double max_aspect;    // images with aspect ratio outside [1/max, max] are dropped (2)
    int min_side;         // images whose shorter side is below this are dropped (S)
} data_build_opts;

// Counts of the report.
typedef struct {
    int64_t rows, images_named, written, captions_kept;
    int64_t missing, unreadable, too_small, aspect, duplicate, no_caption_left;
    int64_t cap_short, cap_english, cap_date, cap_utf8;
} data_build_report;

// Defaults for images of side SIZE.
data_build_opts data_build_defaults(int size);
// Builds o->out. Bad images and rows are skipped with a warning (at
// --verbose) and counted; a bad caption file or an empty result is an error.
// The output appears only when complete (temporary file, then rename).
int data_build(const data_build_opts *o, data_build_report *r);

// Parses a caption file's content (TSV or JSON Lines) without building:
// the number of images it names and of captions. DALLE_ERR with the error
// set (naming NAME and the line) on a malformed file. (Tests, fuzzing.)
int data_captions_check(const char *name, const char *text, size_t n, int64_t *images, int64_t *captions);

// The filters, for tests: 1 if the caption passes.
int caption_long_enough(const char *s, int min_words);
int caption_is_english(const char *s, double min_ascii);
int caption_is_date_boilerplate(const char *s);
