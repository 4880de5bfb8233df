// opts.c: see opts.h.
#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Does ARG name option o ("--out" or its alias "-o")?
static int matches(const opt_t *o, const char *arg, size_t len) {
    const char *n = o->name;
    while (*n) {
        const char *comma = strchr(n, ',');
        size_t nl = comma ? (size_t)(comma - n) : strlen(n);
        if (nl == len && !strncmp(n, arg, len)) return 1;
        if (!comma) break;
        n = comma + 1;
    }
    return 0;
}

static void print_default(const opt_t *o) {
    switch (o->type) {
    case OPT_FLAG: break;
    case OPT_INT: printf(" (default %d)", *(int *)o->ptr); break;
    case OPT_I64: printf(" (default %lld)", (long long)*(int64_t *)o->ptr); break;
    case OPT_DOUBLE: // NaN: the default is not a number (the help says what)
        if (!isnan(*(double *)o->ptr)) printf(" (default %g)", *(double *)o->ptr);
        break;
    case OPT_STR: {
        const char *s = *(const char **)o->ptr;
        if (s) printf(" (default %s)", s);
        else printf(" (no default)");
    } break;
    }
}

void opts_help(const char *usage, const opt_t *opts) {
    printf("%s\n", usage);
    if (!opts || !opts[0].name) return;
    printf("\noptions:\n");
    for (const opt_t *o = opts; o->name; o++) {
        const char *arg = o->type == OPT_FLAG ? "" : o->type == OPT_STR ? " S" : " N";
        char head[64];
        snprintf(head, sizeof head, "%s%s", o->name, arg);
        printf("  %-24s %s", head, o->help);
        print_default(o);
        printf("\n");
    }
    printf("  %-24s %s\n", "--help,-h", "print this help");
}

static int set_value(const opt_t *o, const char *flag, const char *v) {
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_FLAG: *(int *)o->ptr = 1; return 0;
    case OPT_STR: *(const char **)o->ptr = v; return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (*end || end == v || errno || x < -2147483647L || x > 2147483647L) break;
        *(int *)o->ptr = (int)x;
        return 0;
    }
    case OPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (*end || end == v || errno) break;
        *(int64_t *)o->ptr = x;
        return 0;
    }
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (*end || end == v || errno) break;
        *(double *)o->ptr = x;
        return 0;
    }
    }
    fprintf(stderr, "dalle: option %s: '%s' is not a valid %s\n", flag, v,
            o->type == OPT_DOUBLE ? "number" : "integer");
    return 2;
}

int opts_parse(int argc, char **argv, const char *usage, const opt_t *opts, char **pos, int *npos) {
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            opts_help(usage, opts);
            return 1;
        }
        int rest = !strcmp(a, "--"); // everything after "--" is positional
        if (rest || a[0] != '-' || !strcmp(a, "-")) {
            for (int j = rest ? i + 1 : i; j < (rest ? argc : i + 1); j++) {
                if (*npos == OPTS_MAX_POS) {
                    fprintf(stderr, "dalle: more than %d arguments\n", OPTS_MAX_POS);
                    return 2;
                }
                pos[(*npos)++] = argv[j];
            }
            if (rest) break;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const opt_t *o = opts;
        while (o->name && !matches(o, a, len)) o++;
        if (!o->name) {
            fprintf(stderr, "dalle: unknown option %.*s (see --help)\n", (int)len, a);
            return 2;
        }
        const char *v = NULL;
        if (o->type != OPT_FLAG) {
            if (eq) v = eq + 1;
            else if (i + 1 < argc) v = argv[++i];
            else {
                fprintf(stderr, "dalle: option %.*s needs a value\n", (int)len, a);
                return 2;
            }
        } else if (eq) {
            fprintf(stderr, "dalle: option %.*s takes no value\n", (int)len, a);
            return 2;
        }
        int rc = set_value(o, a, v);
        if (rc) return rc;
    }
    return 0;
}
