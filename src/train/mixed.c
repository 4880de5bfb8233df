// mixed.c: the gradient scales of 16-bit training (mixed.h).
#include "train/mixed.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "dalle/dalle.h"

int gscale_mode_parse(const char *s, gscale_mode *mode) {
    if (!strcmp(s, "resblock")) *mode = GSCALE_RESBLOCK;
    else if (!strcmp(s, "dynamic")) *mode = GSCALE_DYNAMIC;
    else return dalle_seterr("--loss-scale '%s': expected resblock or dynamic", s);
    return DALLE_OK;
}

const char *gscale_mode_name(gscale_mode mode) { return mode == GSCALE_RESBLOCK ? "resblock" : "dynamic"; }

int gscale_init(gscale *g, gscale_mode mode, int n, int64_t window) {
    memset(g, 0, sizeof *g);
    g->mode = mode;
    g->n = n;
    g->window = window > 0 ? window : 2000;
    g->scale = dalle_malloc(sizeof(double) * (size_t)n);
    g->shrunk = dalle_malloc(sizeof(int64_t) * (size_t)n);
    if (!g->scale || !g->shrunk) {
        gscale_free(g);
        return DALLE_ERR;
    }
    for (int r = 0; r < n; r++) {
        g->scale[r] = mode == GSCALE_RESBLOCK ? GSCALE_INIT_RESBLOCK : GSCALE_INIT_DYNAMIC;
        g->shrunk[r] = -GSCALE_WINDOW;
    }
    return DALLE_OK;
}

void gscale_free(gscale *g) {
    dalle_free(g->scale);
    dalle_free(g->shrunk);
    memset(g, 0, sizeof *g);
}

// A positive finite number that fills all of s, or -1.
static double positive(const char *s) {
    char *end;
    double v = strtod(s, &end);
    return end != s && !*end && v > 0 && isfinite(v) ? v : -1;
}

int gscale_set(gscale *g, const char *spec) {
    double v = positive(spec);
    if (v > 0) {
        for (int r = 0; r < g->n; r++) g->scale[r] = v;
        return DALLE_OK;
    }
    if (g->mode == GSCALE_DYNAMIC)
        return dalle_seterr("--grad-scale-init '%s': dynamic loss scaling has one scale: give a number", spec);
    char buf[256];
    if (strlen(spec) >= sizeof buf) return dalle_seterr("--grad-scale-init: '%.32s...' is too long", spec);
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *item = strtok(buf, ","); item; item = strtok(NULL, ",")) {
        char *eq = strchr(item, '='), *end;
        long r = eq ? strtol(item, &end, 10) : -1;
        if (!eq || end != eq || r < 0 || r >= g->n || (v = positive(eq + 1)) < 0)
            return dalle_seterr("--grad-scale-init '%s': expected a scale, or r=S,... with resblocks r in [0, %d) "
                                "(2l attention, 2l+1 MLP of layer l) and scales S > 0", spec, g->n);
        g->scale[r] = v;
    }
    return DALLE_OK;
}

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

int gscale_update(gscale *g, const double *nonfinite, int64_t step) {
    int skip = 0;
    for (int r = 0; r < g->n; r++) skip |= nonfinite[r] != 0;
    if (g->mode == GSCALE_DYNAMIC) {
        double s = g->scale[0];
        if (skip) s /= 2, g->good = 0;
        else if (++g->good >= g->window) s *= 2, g->good = 0;
        s = clamp(s, GSCALE_MIN_DYNAMIC, GSCALE_MAX);
        for (int r = 0; r < g->n; r++) g->scale[r] = s;
        return skip;
    }
    const double grow = exp2(1.0 / 1000.0), shrink = sqrt(2.0);
    for (int r = 0; r < g->n; r++) {
        if (nonfinite[r] == 0) {
            g->scale[r] *= grow;
        } else if (step - g->shrunk[r] >= GSCALE_WINDOW) {
            g->scale[r] /= shrink;
            g->shrunk[r] = step;
        }
        g->scale[r] = clamp(g->scale[r], GSCALE_MIN_RESBLOCK, GSCALE_MAX);
    }
    return skip;
}

void gscale_range(const gscale *g, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int r = 0; r < g->n; r++) {
        double v = log2(g->scale[r]);
        *lo = v < *lo ? v : *lo;
        *hi = v > *hi ? v : *hi;
    }
}

char *gscale_to_json(const gscale *g) {
    size_t cap = 128 + (size_t)g->n * 48, len = 0;
    char *s = dalle_malloc(cap);
    if (!s) return NULL;
    len += (size_t)snprintf(s + len, cap - len, "{\"mode\": \"%s\", \"good\": %lld, \"window\": %lld, \"scales\": [",
                            gscale_mode_name(g->mode), (long long)g->good, (long long)g->window);
    for (int r = 0; r < g->n; r++) len += (size_t)snprintf(s + len, cap - len, "%s%.17g", r ? ", " : "", g->scale[r]);
    len += (size_t)snprintf(s + len, cap - len, "], \"shrunk\": [");
    for (int r = 0; r < g->n; r++)
        len += (size_t)snprintf(s + len, cap - len, "%s%lld", r ? ", " : "", (long long)g->shrunk[r]);
    snprintf(s + len, cap - len, "]}");
    DALLE_ASSERT(len + 2 < cap);
    return s;
}

int gscale_from_json(gscale *g, int n, const char *json, const char *what) {
    cJSON *j = cJSON_Parse(json);
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode"), *good = cJSON_GetObjectItemCaseSensitive(j, "good");
    const cJSON *win = cJSON_GetObjectItemCaseSensitive(j, "window");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "scales"), *sh = cJSON_GetObjectItemCaseSensitive(j, "shrunk");
    gscale_mode gm = GSCALE_RESBLOCK;
    int rc = DALLE_OK;
    memset(g, 0, sizeof *g);
    if (!j || !cJSON_IsString(mode) || gscale_mode_parse(mode->valuestring, &gm) || !cJSON_IsNumber(good) ||
        !cJSON_IsNumber(win) || !cJSON_IsArray(sc) || !cJSON_IsArray(sh)) {
        rc = dalle_seterr("%s: not the JSON of gradient scales", what);
    } else if (cJSON_GetArraySize(sc) != n || cJSON_GetArraySize(sh) != n) {
        rc = dalle_seterr("%s: %d gradient scales, expected %d", what, cJSON_GetArraySize(sc), n);
    } else if (!(rc = gscale_init(g, gm, n, (int64_t)win->valuedouble))) {
        g->good = (int64_t)good->valuedouble;
        for (int r = 0; r < n && !rc; r++) {
            const cJSON *a = cJSON_GetArrayItem(sc, r), *b = cJSON_GetArrayItem(sh, r);
            if (!cJSON_IsNumber(a) || !(a->valuedouble > 0) || !cJSON_IsNumber(b))
                rc = dalle_seterr("%s: gradient scale %d is not a positive number", what, r);
            else g->scale[r] = a->valuedouble, g->shrunk[r] = (int64_t)b->valuedouble;
        }
        if (rc) gscale_free(g);
    }
    cJSON_Delete(j);
    return rc;
}
