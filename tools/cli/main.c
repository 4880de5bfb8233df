// main.c: the `dalle` program: global options, then one subcommand.
//   dalle [--threads N] [--device cpu|cuda|auto] [--verbose|--quiet] COMMAND [options]
// Each command is a thin layer over libdalle (include/dalle/dalle.h).
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cli.h"
#include "core/common.h"
#include "train/comm.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} COMMANDS[] = {
    {"generate", cmd_generate, "caption -> images with a model directory (tokenizer, prior, dVAE): a PNG grid"},
    {"serve", cmd_serve, "the local web app and an HTTP API (OpenAI's /v1/images/generations)"},
    {"dvae", cmd_dvae, "stage 1: train the discrete VAE, encode images to tokens, decode, reconstruct"},
    {"bpe", cmd_bpe, "the text tokenizer: train a BPE vocabulary, encode captions to ids, decode"},
    {"data", cmd_data, "datasets: build from folders (the paper's filters), emoji, clip art, shapes, tokenize"},
    {"shard", cmd_shard, "pre-tokenized training shards (text ids + image codes): pack, info"},
    {"train", cmd_train, "stage 2: train the transformer prior on shards (AdamW, warm-up, clipping, EMA, --resume)"},
    {"sample", cmd_sample, "caption -> image codes with the prior (KV cache; temperature, top-k, top-p)"},
    {"clip", cmd_clip, "the contrastive reranker: train it on shards, score images' codes against a caption"},
    {"export", cmd_export, "prior checkpoint -> model file (EMA weights; f32, f16 or bf16)"},
    {"info", cmd_info, "a prior config: parameters, FLOPs per token, memory for training and sampling"},
    {"masks", cmd_masks, "print or draw the attention masks of a prior config (paper Fig. 11)"},
    {"diff", cmd_diff, "compare two safetensors files (checkpoints) tensor by tensor, relative to each one's scale"},
};

static void usage(void) {
    printf("dalle %s: DALL-E (Ramesh et al. 2021) in C\n\n"
           "usage: dalle [global options] COMMAND [options]   (dalle COMMAND --help for more)\n\ncommands:\n",
           DALLE_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        printf("  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    printf("\nglobal options (anywhere on the line):\n"
           "  --threads N       threads for OpenBLAS and OpenMP (default: all cores, %d here)\n"
           "  --device D        cpu, cuda (a GPU; without one: says why, runs on the CPU) or auto\n"
           "                    (default: $DALLE_DEVICE, else cpu)\n"
           "  --verbose,-v      more detail, and the peak memory of the allocator at exit\n"
           "  --quiet,-q        errors only\n"
           "  --version         print the version\n"
           "  --help,-h         print this help\n",
           omp_get_num_procs());
}

int cli_fail(void) {
    fprintf(stderr, "dalle: %s\n", dalle_last_error());
    return 1;
}

static int rank_verbose; // --verbose on a quiet rank: its peak memory is still printed

comm *cli_comm_open(void) {
    comm *c = comm_open();
    if (!c) {
        cli_fail();
        return NULL;
    }
    if (comm_rank(c) != 0) {
        rank_verbose = dalle_log_level >= 2;
        dalle_log_level = 0;
    }
    return c;
}

int cli_comm_finish(comm *c, int failed) {
    if (rank_verbose)
        fprintf(stderr, "dalle: rank %d: peak memory %.1f MiB (library allocations)\n", comm_rank(c),
                (double)dalle_mem_peak() / (1 << 20));
    if (failed) {
        if (comm_size(c) > 1) {
            fprintf(stderr, "dalle: rank %d of %d: %s\n", comm_rank(c), comm_size(c), dalle_last_error());
            comm_abort(c, 1);
        }
        cli_fail();
    }
    comm_close(c);
    return failed ? 1 : 0;
}

int cli_device_given;

int main(int argc, char **argv) {
    // Global options may stand anywhere: take them out of argv first.
    int n = 1, threads = 0;
    const char *device = getenv("DALLE_DEVICE");
    cli_device_given = device && *device;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) dalle_log_level = 2;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) dalle_log_level = 0;
        else if (!strcmp(argv[i], "--threads")) {
            char *end = NULL;
            if (i + 1 < argc) threads = (int)strtol(argv[++i], &end, 10);
            if (!end || *end || threads < 1) {
                fprintf(stderr, "dalle: --threads needs a positive integer\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--device")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dalle: --device needs cpu, cuda or auto\n");
                return 2;
            }
            device = argv[++i];
            cli_device_given = 1;
        } else argv[n++] = argv[i];
    }
    argc = n;
    if (threads) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dalle %s\n", DALLE_VERSION);
        return 0;
    }
    // The device, before anything allocates (a missing GPU: one line, then the CPU).
    if (backend_select(cli_device_given ? device : "cpu") == DALLE_ERR) {
        fprintf(stderr, "dalle: --device: %s\n", dalle_last_error());
        return 2;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++) {
        if (strcmp(argv[1], COMMANDS[i].name)) continue;
        int rc = COMMANDS[i].fn(argc - 1, argv + 1);
        if (dalle_log_level >= 2)
            fprintf(stderr, "dalle: peak memory %.1f MiB (library allocations)\n", (double)dalle_mem_peak() / (1 << 20));
        return rc;
    }
    fprintf(stderr, "dalle: unknown command '%s' (see dalle --help)\n", argv[1]);
    return 2;
}
