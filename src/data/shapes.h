// shapes.h: the `shapes` dataset, synthetic scenes where text conditioning can
// be measured. A scene is one or two filled shapes on a white S x S canvas;
// its captions name every attribute, and a checker parses an image back into
// objects and scores it against a caption. `dalle data shapes` writes the
// dataset, `dalle data shapes-check` scores generated images (docs/data.md).
//
// Vocabulary: 7 colours x 4 shapes x 2 sizes x 9 cells (a 3 x 3 grid, cell =
// row*3 + col, row 0 at the top). A shape of size `a` (bounding box side:
// S/6 small, S/3 large) is centred on its cell's centre ((2col+1)S/6,
// (2row+1)S/6). Two-object scenes relate the objects: obj[0] REL obj[1].
#pragma once
#include <stddef.h>
#include <stdint.h>

enum {
    SHAPES_RED, SHAPES_GREEN, SHAPES_BLUE, SHAPES_YELLOW, SHAPES_PURPLE, SHAPES_ORANGE, SHAPES_BLACK, SHAPES_NCOLOR
};
enum { SHAPES_CIRCLE, SHAPES_SQUARE, SHAPES_TRIANGLE, SHAPES_DIAMOND, SHAPES_NSHAPE };
enum { SHAPES_SMALL, SHAPES_LARGE, SHAPES_NSIZE };
enum { SHAPES_NCELL = 9 };
enum { SHAPES_LEFT_OF, SHAPES_RIGHT_OF, SHAPES_ABOVE, SHAPES_BELOW, SHAPES_NREL };
// Scored attributes (the position of one object, or the relation of two).
enum { SHAPES_ATTR_COLOR, SHAPES_ATTR_SHAPE, SHAPES_ATTR_SIZE, SHAPES_ATTR_POS, SHAPES_NATTR };

enum {
    SHAPES_ANY = -1,          // an attribute a parsed caption does not mention
    SHAPES_MAX_OBJ = 2,       // objects in a scene or a caption
    SHAPES_MAX_CAPTIONS = 4,  // captions of a scene (shapes_captions)
    SHAPES_CAPTION_MAX = 128, // bytes of one caption, NUL included
    SHAPES_MAX_FOUND = 16,    // room for found objects the callers give shapes_parse_image
};

extern const uint8_t shapes_palette[SHAPES_NCOLOR][3];      // RGB
extern const char *const shapes_color_names[SHAPES_NCOLOR]; // "red", ...
extern const char *const shapes_shape_names[SHAPES_NSHAPE]; // "circle", ...
extern const char *const shapes_size_names[SHAPES_NSIZE];   // "small", "large"
extern const char *const shapes_cell_names[SHAPES_NCELL];   // "top left", ..., "center", ...
extern const char *const shapes_rel_names[SHAPES_NREL];     // "to the left of", ...

typedef struct {
    int color, shape, size, cell; // SHAPES_ANY where a parsed caption does not say
} shapes_object;

typedef struct {
    int n;                             // 1 or 2 objects
    shapes_object obj[SHAPES_MAX_OBJ];
    int rel;                           // obj[0] rel obj[1], or SHAPES_ANY
} shapes_scene;

// How scenes are drawn. holdout: bit color*SHAPES_NSHAPE + shape set for each
// held-out colour-shape pair.
typedef struct {
    uint32_t holdout;
    int val_permille;  // share of train/val scenes in DSET_VAL (by scene name)
    int test_permille; // share of scenes drawn as DSET_TEST (using a held-out pair)
    double two_share;  // share of two-object scenes
} shapes_gen_opts;

// The defaults: the held-out pairs below, 5% val, 5% test, half two-object.
shapes_gen_opts shapes_default_gen_opts(void);
#define SHAPES_DEFAULT_HOLDOUT "red triangle,blue circle,green square,yellow diamond,purple circle"

// Parses a comma-separated list of "colour shape" pairs ("" gives none) into a
// holdout mask. DALLE_ERR naming the bad entry.
int shapes_parse_holdout(const char *list, uint32_t *mask);
// Whether any object of sc is a pair of MASK.
int shapes_scene_uses(const shapes_scene *sc, uint32_t mask);

// Scene `index` of the stream SEED (Philox: a function of (seed, index, *o)
// only) into *sc; returns its split (DSET_TRAIN, DSET_VAL or DSET_TEST).
// Train and val scenes never use a held-out pair; test scenes use at least one.
// DALLE_ERR if the options allow no scene (every pair held out, shares out of range).
int shapes_generate(shapes_scene *sc, uint64_t seed, uint64_t index, const shapes_gen_opts *o);
// Checks the options shapes_generate will get: DALLE_ERR naming the field.
int shapes_check_gen_opts(const shapes_gen_opts *o);

// Canonical name of the scene's content (equal images, equal names): the
// source name whose hash gives the train/val split.
void shapes_scene_name(const shapes_scene *sc, char *buf, size_t n);

// Draws the scene on a white S x S canvas into pix (S*S*3, HWC RGB), each
// pixel the mean of 2 x 2 samples. S >= 12.
void shapes_render(uint8_t *pix, int S, const shapes_scene *sc);

// Writes the scene's captions (every phrasing, the first the plain one) into
// caps; returns how many (3 or more, at most SHAPES_MAX_CAPTIONS).
int shapes_captions(const shapes_scene *sc, char caps[][SHAPES_CAPTION_MAX]);

// Parses a caption (the phrasings shapes_captions writes, and the looser
// grammar of docs/data.md) into the objects it asks for: unmentioned
// attributes are SHAPES_ANY. DALLE_ERR with a message naming the word at fault.
int shapes_parse_caption(const char *text, shapes_scene *out);

// Finds the objects in an image (w x h, HWC RGB; square, w >= 12): writes up to
// `max` of them to objs, largest first, and returns how many it found (may
// exceed max). DALLE_ERR for an image it cannot score (not square, too small).
int shapes_parse_image(const uint8_t *pix, int w, int h, shapes_object *objs, int max);

// Scores found objects against a caption's objects: mentioned[a] and
// correct[a] count the attributes of kind a the caption mentions and how many
// of those the image has (best assignment of caption objects to found ones);
// exact is 1 when the image holds exactly the caption's objects, all correct.
typedef struct {
    int mentioned[SHAPES_NATTR], correct[SHAPES_NATTR];
    int exact;
} shapes_score;
void shapes_compare(const shapes_scene *want, const shapes_object *got, int n_got, shapes_score *score);

// "small red circle in the top left" (unmentioned attributes left out).
void shapes_object_str(const shapes_object *o, char *buf, size_t n);

// ---- the dataset and the folder checker (what `dalle data shapes` and
// `dalle data shapes-check --dir` run)

typedef struct {
    int64_t count;       // scenes 0 .. count-1 of the stream
    int size;            // S, 12 .. 4096
    uint64_t seed;
    shapes_gen_opts gen;
    const char *out;     // .dset file to write (NULL: none)
    const char *png_dir; // folder for NNNNN.png, captions.tsv, splits.tsv (NULL: none)
} shapes_build_opts;

typedef struct {
    int64_t items, split[3], captions; // split[DSET_TRAIN], [DSET_VAL], [DSET_TEST]
    double seconds;
} shapes_report;

// Writes scenes 0 .. count-1 to o->out and/or o->png_dir (created if needed;
// captions.tsv has a `file<TAB>caption` row per caption, splits.tsv a
// `file<TAB>train|val|test` row per image). The .dset and the .tsv files are
// written atomically; on failure no .dset is left (PNGs written stay).
// Fills *rep (may be NULL). DALLE_ERR with the error set.
int shapes_build(const shapes_build_opts *o, shapes_report *rep);

typedef struct {
    int64_t rows, images; // captions scored, images read
    int64_t mentioned[SHAPES_NATTR], correct[SHAPES_NATTR], exact;
} shapes_dir_score;

// Scores DIR/captions.tsv (`file<TAB>caption` rows, file relative to DIR;
// several rows may name one image): each row's caption against its image.
// At --verbose (dalle_log_level 2) logs each row that does not match.
// DALLE_ERR naming the file and line for a missing or unreadable image, a
// row without a tab, or a caption that does not parse.
int shapes_check_dir(const char *dir, shapes_dir_score *out);
