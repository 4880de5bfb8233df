// cmd_diff.c: `dalle diff A B`: compares two safetensors files (checkpoints,
// model files) tensor by tensor. Each tensor's largest difference is taken
// relative to its scale (the largest |value| of B's tensor), as the tests
// compare against references; the metadata is compared too. Used by the
// equivalence tests of data-parallel training (tests/cli_mpi.sh).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/common.h"
#include "core/safetensors.h"
#include "opts.h"

// The largest |a - b| over n values relative to max |b| (absolute when b is all zeros).
static double rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; // NaN wins
        scale = fmax(scale, fabs((double)b[i]));
    }
    return scale > 0 ? d / scale : d;
}

// Compares the metadata of a and b; prints each difference. Returns how many.
static int meta_diff(const st_file *a, const st_file *b) {
    int n = 0;
    for (int i = 0; i < a->n_meta; i++) {
        const char *v = st_meta(b, a->meta_keys[i]);
        if (v && !strcmp(v, a->meta_vals[i])) continue;
        printf("metadata '%s': '%.60s' vs %s%.60s%s\n", a->meta_keys[i], a->meta_vals[i], v ? "'" : "", v ? v : "absent",
               v ? "'" : "");
        n++;
    }
    for (int i = 0; i < b->n_meta; i++)
        if (!st_meta(a, b->meta_keys[i])) {
            printf("metadata '%s': absent vs '%.60s'\n", b->meta_keys[i], b->meta_vals[i]);
            n++;
        }
    return n;
}

// Whether name starts with one of the comma-separated prefixes of list (NULL: none).
static int skipped(const char *name, const char *list) {
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n && !strncmp(name, p, n)) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

int cmd_diff(int argc, char **argv) {
    double tol = 1e-6;
    int each = 0, no_meta = 0;
    const char *skip = NULL;
    opt_t opts[] = {
        {"--tol", OPT_DOUBLE, &tol, "largest difference allowed, relative to each tensor's scale"},
        {"--skip", OPT_STR, &skip, "leave out the tensors whose names start with these prefixes (comma-separated, "
                                   "e.g. adam.)"},
        {"--each", OPT_FLAG, &each, "print every tensor's difference"},
        {"--no-meta", OPT_FLAG, &no_meta, "ignore the metadata"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv,
                         "usage: dalle diff [options] A.safetensors B.safetensors\n"
                         "Compares two files tensor by tensor (same names and shapes; the difference of each\n"
                         "relative to B's largest |value|) and their metadata. Exit 0 when all is within --tol.",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos != 2) {
        fprintf(stderr, "dalle: diff: needs two files\n");
        return 2;
    }
    st_file *a = st_open(pos[0]), *b = a ? st_open(pos[1]) : NULL;
    float *x = NULL, *y = NULL;
    int rc = 1;
    if (!b) goto fail;
    if (a->n_tensors != b->n_tensors) {
        dalle_seterr("%s has %d tensors, %s %d", a->path, a->n_tensors, b->path, b->n_tensors);
        goto fail;
    }
    double worst = 0;
    const char *worst_name = "";
    int compared = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        const st_tensor *ta = &a->tensors[i];
        const st_tensor *tb = st_find(b, ta->name);
        if (skipped(ta->name, skip)) continue;
        compared++;
        if (!tb) {
            dalle_seterr("%s has no tensor '%s'", b->path, ta->name);
            goto fail;
        }
        dalle_free(x);
        dalle_free(y);
        x = dalle_malloc(sizeof(float) * (size_t)(ta->numel ? ta->numel : 1));
        y = dalle_malloc(sizeof(float) * (size_t)(ta->numel ? ta->numel : 1));
        if (!x || !y || st_read_f32(a, ta->name, x, ta->ndim, ta->shape) || st_read_f32(b, ta->name, y, ta->ndim, ta->shape))
            goto fail;
        double d = rel_diff(x, y, ta->numel);
        if (each) printf("%-48s %.3e\n", ta->name, d);
        if (!(d <= worst) && !isnan(worst)) worst = d, worst_name = ta->name; // a NaN stays
    }
    int nmeta = no_meta ? 0 : meta_diff(a, b);
    printf("%d tensors: max difference %.3e of the tensor's scale%s%s%s; %s\n", compared, worst,
           worst_name[0] ? " (" : "", worst_name, worst_name[0] ? ")" : "",
           no_meta ? "metadata not compared" : nmeta ? "metadata differs" : "metadata identical");
    rc = worst <= tol && nmeta == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "dalle: diff: %s and %s differ (tolerance %.1e)\n", a->path, b->path, tol);
    goto done;
fail:
    rc = cli_fail();
done:
    dalle_free(x);
    dalle_free(y);
    st_close(a);
    st_close(b);
    return rc;
}
