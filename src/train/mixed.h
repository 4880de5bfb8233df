// mixed.h: the gradient scales of 16-bit training (SPEC §3 "Mixed
// precision", docs/training.md). The model's resblocks (attention and MLP of
// each layer: r = 2l and 2l + 1) store their gradients in 16 bits; each
// multiplies the gradient it receives by a scale and divides what leaves it
// by the same scale, so that small gradients do not underflow
// (prior_backward applies them; this file keeps and updates them).
//
//  - GSCALE_RESBLOCK, the paper's per-resblock scaling: one scale per
//    resblock, 2^13 at the start; after each step a scale whose resblock's
//    gradients were finite grows by 2^(1/1000), one whose were not shrinks by
//    sqrt(2) (at most once in GSCALE_WINDOW steps) and the update is
//    skipped; every scale stays in [2^7, 2^24].
//  - GSCALE_DYNAMIC, plain dynamic loss scaling: one scale for every
//    resblock, 2^16 at the start, doubled after `window` steps in a row with
//    finite gradients, halved (and the update skipped) on a non-finite one,
//    kept in [1, 2^24].
//
// The scales here are per rank: the paper divides the loss by the global
// batch and multiplies its scales by M, the data-parallel replicas (M 2^13,
// clamps M 2^7 and M 2^24); a rank here takes the mean over its own B/M
// sequences, M times the paper's loss, so the paper's scale s is the scale
// s/M here, which is the same for any M. Checkpoints keep these.
#pragma once
#include <stdint.h>

typedef enum { GSCALE_RESBLOCK, GSCALE_DYNAMIC } gscale_mode;

#define GSCALE_INIT_RESBLOCK 8192.0 // 2^13
#define GSCALE_INIT_DYNAMIC 65536.0 // 2^16 (PyTorch's GradScaler)
#define GSCALE_MIN_RESBLOCK 128.0   // 2^7
#define GSCALE_MIN_DYNAMIC 1.0
#define GSCALE_MAX 16777216.0       // 2^24
#define GSCALE_WINDOW 125           // steps between two shrinks of a scale

typedef struct {
    gscale_mode mode;
    int n;             // resblocks (2 n_layer)
    double *scale;     // (n) per resblock (dynamic: all equal)
    int64_t *shrunk;   // (n) resblock mode: the step of each scale's last shrink (-GSCALE_WINDOW: none)
    int64_t good;      // dynamic: steps in a row with finite gradients since the last change
    int64_t window;    // dynamic: double after this many (default 2000, PyTorch's)
} gscale;

// "resblock" / "dynamic" -> *mode; DALLE_ERR naming the value otherwise.
int gscale_mode_parse(const char *s, gscale_mode *mode);
const char *gscale_mode_name(gscale_mode mode);

// n scales at the mode's start value. DALLE_ERR on out-of-memory.
int gscale_init(gscale *g, gscale_mode mode, int n, int64_t window);
void gscale_free(gscale *g);

// Sets initial scales from SPEC: a number (every scale) or a list
// "r=S,r=S,..." (those resblocks). Not clamped until the first update, so a
// test can force an overflow. DALLE_ERR naming SPEC on a bad value or index.
int gscale_set(gscale *g, const char *spec);

// After step `step` (1-based), whose resblock r had nonfinite[r] (n) values
// that were not finite (summed over the ranks): applies the rule above.
// Returns 1 when the update must be skipped (some count is not 0), else 0.
int gscale_update(gscale *g, const double *nonfinite, int64_t step);

// The range of the scales as log2: *lo, *hi.
void gscale_range(const gscale *g, double *lo, double *hi);

// The state as JSON for a checkpoint ({"mode", "good", "window", "scales",
// "shrunk"}; the caller frees it with dalle_free), and back into a new g of
// n scales: DALLE_ERR naming WHAT on bad JSON or another count of scales.
char *gscale_to_json(const gscale *g);
int gscale_from_json(gscale *g, int n, const char *json, const char *what);
