// opts.h: the option table every subcommand of `dalle` declares. The table is
// the single source of the parser and of the --help text, so help always
// lists every option with its default (the value in *ptr before parsing).
#pragma once
#include <stdint.h>

#define OPTS_MAX_POS 4096

typedef enum { OPT_FLAG, OPT_INT, OPT_I64, OPT_DOUBLE, OPT_STR } opt_type;

typedef struct {
    const char *name; // "--steps" (a short alias may follow after a comma: "--out,-o")
    opt_type type;
    void *ptr;        // int* (FLAG, INT), int64_t*, double*, const char**
    const char *help;
} opt_t;

// Parses argv[1..argc) against opts (terminated by a {NULL} entry);
// everything that is not an option goes to pos[] (*npos of them; pos has
// room for OPTS_MAX_POS entries, more is a usage error). Returns 0 to go on, 1 if --help was printed, and
// 2 after printing a usage error to stderr.
int opts_parse(int argc, char **argv, const char *usage, const opt_t *opts, char **pos, int *npos);

// Prints usage and the option table (with defaults) to stdout.
void opts_help(const char *usage, const opt_t *opts);
