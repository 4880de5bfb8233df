// progress.c: see progress.h.
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "common.h"

void progress_start(progress_t *p, const char *label, int64_t step0, int64_t total, int64_t items0) {
    p->label = label;
    p->total = total;
    p->t0 = p->t_last = dalle_time();
    p->interval = 10.0;
    p->tty = isatty(2);
    p->items0 = items0;
    p->step0 = step0;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%ds", (int)s);
}

void progress_update(progress_t *p, int64_t step, int64_t items, const char *extra) {
    if (dalle_log_level < 1) return;
    double now = dalle_time();
    int last = p->total > 0 && step >= p->total;
    if (!last && now - p->t_last < (p->tty ? 0.1 : p->interval)) return;
    p->t_last = now;
    double el = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
    double rate = (double)(items - p->items0) / el;
    char eta[32] = "";
    if (p->total > 0 && step > p->step0)
        fmt_eta(eta, sizeof eta, el / (double)(step - p->step0) * (double)(p->total - step));
    char total[32] = "";
    if (p->total > 0) snprintf(total, sizeof total, "/%lld", (long long)p->total);
    fprintf(stderr, "%s%s step %lld%s | %s%s%.1f items/s%s%s%s", p->tty ? "\r\033[K" : "",
            p->label, (long long)step, total, extra ? extra : "", extra ? " | " : "", rate,
            eta[0] ? " | ETA " : "", eta, p->tty ? "" : "\n");
    fflush(stderr);
}

void progress_end(progress_t *p) {
    if (p->tty && dalle_log_level >= 1) fputc('\n', stderr);
}
