// cmd_data_sources.c: `dalle data emoji` and `dalle data clipart` (being written).
#include <stdio.h>

#include "cli.h"

int data_cmd_emoji(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "dalle: data emoji: not yet\n");
    return 2;
}

int data_cmd_clipart(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "dalle: data clipart: not yet\n");
    return 2;
}
