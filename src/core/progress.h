// progress.h: the progress line of long work (training, encoding many images).
// On a terminal: one line redrawn in place ("step 120/1000 | loss 0.1234 |
// 25.3 img/s | ETA 1m20s"); otherwise a plain log line every `interval` seconds.
#pragma once
#include <stdint.h>

typedef struct {
    const char *label;
    int64_t total;     // steps in all (0: unknown, no ETA)
    double t0, t_last; // start, last print
    double interval;   // seconds between plain lines when not a terminal
    int tty;
    int64_t items0;    // items at start (for rate after a resume)
    int64_t step0;
} progress_t;

// Starts a progress display at step `step0` of `total` (items counted from `items0`).
void progress_start(progress_t *p, const char *label, int64_t step0, int64_t total, int64_t items0);
// Reports `step` and the running `items` count; `extra` (may be NULL) is
// printed as is, e.g. "loss 0.1234". Prints at most ~10 times a second on a
// terminal, every interval seconds otherwise, and always at the last step.
void progress_update(progress_t *p, int64_t step, int64_t items, const char *extra);
// Ends the line on a terminal.
void progress_end(progress_t *p);
