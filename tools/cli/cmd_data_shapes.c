// cmd_data_shapes.c: `dalle data shapes` and `dalle data shapes-check` (being written).
#include <stdio.h>

#include "cli.h"

int data_cmd_shapes(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "dalle: data shapes: not yet\n");
    return 2;
}

int data_cmd_shapes_check(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "dalle: data shapes-check: not yet\n");
    return 2;
}
