// cmd_dvae.c: `dalle dvae ...`, stage 1 from the command line.
//   dalle dvae train  --data DIR -o dvae.safetensors [--preset small] ...
//   dalle dvae encode --model M IMAGE... [-o tokens.txt]
//   dalle dvae decode --model M tokens.txt -o out.png
//   dalle dvae recon  --model M IMAGE... -o recon.png
//   dalle dvae init   --preset P -o M          (a randomly initialised model)
//   dalle dvae info   [--preset P | --model M]
// Token grids as text: G lines of G whitespace-separated codes per image,
// raster order, a blank line between images (read by cli_parse_grids, tokens.c).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/common.h"
#include "core/image.h"
#include "core/progress.h"
#include "dalle/dalle.h"
#include "dvae/model.h"
#include "dvae/train.h"
#include "opts.h"

// Loads PATH as (3, S, S) floats in [0, 1]. An image of another size is
// resized (shorter side to S, Lanczos) and centre-cropped, as the official
// notebook does, with a note.
static int load_image_chw(const char *path, int S, float *out) {
    image_t img = {0}, sq = {0};
    if (image_load(path, &img)) return DALLE_ERR;
    const image_t *use = &img;
    if (img.w != S || img.h != S) {
        dalle_log("note: %s is %dx%d; resized and centre-cropped to %dx%d as the official notebook does", path,
                  img.w, img.h, S, S);
        if (image_resize_crop(&img, S, &sq)) {
            image_free(&img);
            return dalle_errprefix("%s", path);
        }
        use = &sq;
    }
    image_to_chw(use, out);
    image_free(&img);
    image_free(&sq);
    return DALLE_OK;
}

// Writes (3, S, S) floats in [0, 1] as a PNG (atomically).
static int save_image_chw(const char *path, const float *x, int S) {
    image_t img = {0};
    if (image_alloc(&img, S, S)) return DALLE_ERR;
    image_from_chw(&img, x);
    int rc = image_save_png(path, &img);
    image_free(&img);
    return rc;
}

// "out.png" with k of n -> "out.png" (n == 1) or "out-K.png" (1-based).
static void numbered_path(char *buf, size_t len, const char *path, int k, int n) {
    if (n == 1) {
        snprintf(buf, len, "%s", path);
        return;
    }
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) dot = path + strlen(path);
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - path), path, k + 1, dot);
}

// ---------------------------------------------------------------- train

static int dvae_cmd_train(int argc, char **argv) {
    dvae_train_opts o;
    const char *preset = "small", *dp = "shard", *precision = "fp32";
    int n_hid = 0, n_blk = 0, vocab = 0, n_init = 0, image_size = 0, n_pool = -1, no_augment = 0;
    dvae_train_defaults(&o, 10000);
    o.out = "dvae.safetensors";
    int64_t seed = (int64_t)o.seed;
    const opt_t opts[] = {
        {"--data", OPT_STR, &o.data_dir, "folder of PNG/JPEG training images, or a dataset file (.dset: its train split)"},
        {"--out,-o", OPT_STR, &o.out, "checkpoint to write (parameters, EMA, Adam state, step)"},
        {"--resume", OPT_STR, &o.resume, "continue the run saved in this checkpoint (its settings; --steps may extend it)"},
        {"--preset", OPT_STR, &preset, "model size: paper, small, tiny"},
        {"--n-hid", OPT_INT, &n_hid, "override the preset's n_hid (0: keep)"},
        {"--n-blk", OPT_INT, &n_blk, "override n_blk_per_group (0: keep)"},
        {"--vocab", OPT_INT, &vocab, "override vocab_size (0: keep)"},
        {"--n-init", OPT_INT, &n_init, "override n_init (0: keep)"},
        {"--image-size", OPT_INT, &image_size, "override image_size (0: keep)"},
        {"--n-pool", OPT_INT, &n_pool, "override n_pool (-1: keep)"},
        {"--batch", OPT_INT, &o.batch, "images per step, all ranks together (paper: 512 over 64 GPUs)"},
        {"--micro-batch", OPT_INT, &o.micro_batch, "images per forward/backward pass, the gradient accumulated "
                                                   "(0: each rank's whole part of the batch)"},
        {"--steps", OPT_I64, &o.steps, "total steps (paper: 3,000,000)"},
        {"--seed", OPT_I64, &seed, "seed of the initialisation, data order, augmentation and noise"},
        {"--lr", OPT_DOUBLE, &o.lr, "initial step size"},
        {"--lr-end", OPT_DOUBLE, &o.lr_end, "final step size (cosine)"},
        {"--lr-steps", OPT_I64, &o.lr_steps, "steps of the step-size decay (-1: 40% of --steps)"},
        {"--tau", OPT_DOUBLE, &o.tau, "initial relaxation temperature"},
        {"--tau-end", OPT_DOUBLE, &o.tau_end, "final temperature (cosine)"},
        {"--tau-steps", OPT_I64, &o.tau_steps, "steps of the temperature annealing (-1: 5% of --steps)"},
        {"--kl", OPT_DOUBLE, &o.kl, "initial KL weight beta"},
        {"--kl-end", OPT_DOUBLE, &o.kl_end, "final KL weight (cosine)"},
        {"--kl-steps", OPT_I64, &o.kl_steps, "steps of the KL weight increase (-1: 1/600 of --steps)"},
        {"--weight-decay", OPT_DOUBLE, &o.weight_decay, "AdamW weight decay (conv weights only)"},
        {"--ema", OPT_DOUBLE, &o.ema_decay, "decay of the parameters' exponential moving average"},
        {"--no-augment", OPT_FLAG, &no_augment, "centre crops only (no random crop, resize and flip)"},
        {"--save-every", OPT_I64, &o.save_every, "also write the checkpoint every this many steps (0: at the end)"},
        {"--log-every", OPT_I64, &o.log_every, "print the mean losses every this many steps"},
        {"--max-images", OPT_I64, &o.max_images, "use at most this many images of the folder (0: all)"},
        {"--stop-after", OPT_I64, &o.stop_after, "stop after this many steps of this run, with a checkpoint (0: never)"},
        {"--dp", OPT_STR, &dp, "under mpirun: shard (gradients reduce-scattered, each rank updates its shard) "
                               "or allreduce (every rank updates everything)"},
        {"--precision", OPT_STR, &precision, "fp32, or bf16: the convolutions' weights and inputs in bf16, sums "
                                             "and master weights fp32 (a resumed run keeps its checkpoint's)"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos;
    int rc = opts_parse(argc, argv,
                        "usage: dalle dvae train --data DIR [-o dvae.safetensors] [options]\n"
                        "       mpirun -np K dalle dvae train ...   (K ranks share each batch)",
                        opts, pos, &npos);
    if (rc) return rc == 1 ? 0 : 2;
    if (npos) {
        fprintf(stderr, "dalle: dvae train: unexpected argument '%s'\n", pos[0]);
        return 2;
    }
    if (!o.data_dir) {
        fprintf(stderr, "dalle: dvae train: --data DIR is required\n");
        return 2;
    }
    if (dvae_config_preset(preset, &o.cfg)) return cli_fail();
    if (n_hid) o.cfg.n_hid = n_hid;
    if (n_blk) o.cfg.n_blk_per_group = n_blk;
    if (vocab) o.cfg.vocab_size = vocab;
    if (n_init) o.cfg.n_init = n_init;
    if (image_size) o.cfg.image_size = image_size;
    if (n_pool >= 0) o.cfg.n_pool = n_pool;
    if (dvae_config_check(&o.cfg)) return cli_fail();
    o.seed = (uint64_t)seed;
    o.augment = !no_augment;
    if (dp_mode_parse(dp, &o.dp)) return cli_fail();
    if (!strcmp(precision, "fp16")) {
        fprintf(stderr, "dalle: dvae train: --precision fp16 is not supported for the dVAE (fp16's range would need "
                        "loss scaling): use bf16 or fp32\n");
        return 2;
    }
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) {
        fprintf(stderr, "dalle: dvae train: --precision '%s': expected fp32 or bf16\n", precision);
        return 2;
    }
    o.bf16 = !strcmp(precision, "bf16");
    if (!(o.comm = cli_comm_open())) return 1;
    return cli_comm_finish(o.comm, dvae_train(&o) != DALLE_OK);
}

// ---------------------------------------------------------------- encode

static int dvae_cmd_encode(int argc, char **argv) {
    const char *model = NULL, *out = "-";
    int no_ema = 0;
    const opt_t opts[] = {
        {"--model,-m", OPT_STR, &model, "dVAE model file (.safetensors)"},
        {"--out,-o", OPT_STR, &out, "token grid file ('-': standard output)"},
        {"--no-ema", OPT_FLAG, &no_ema, "use a checkpoint's raw parameters, not its EMA"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos, rc = 1;
    char *text = NULL;
    dvae_model *m = NULL;
    float *x = NULL;
    int32_t *codes = NULL;
    int prc = opts_parse(argc, argv, "usage: dalle dvae encode --model M IMAGE... [-o tokens.txt]\n"
                         "Writes each image's G x G grid of codes: G lines of G integers, a blank line between images.",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!model || npos == 0) {
        fprintf(stderr, "dalle: dvae encode: needs --model and at least one image\n");
        return 2;
    }
    if (!(m = dvae_load(model, !no_ema))) goto done;
    const dvae_config *c = dvae_get_config(m);
    int S = c->image_size, G = dvae_grid(c);
    x = dalle_malloc(sizeof(float) * 3 * (size_t)S * S); // (1, 3, S, S)
    codes = dalle_malloc(sizeof(int32_t) * (size_t)G * G);
    size_t cap = (size_t)npos * ((size_t)G * G * 7 + 2) + 1, len = 0;
    text = dalle_malloc(cap);
    if (!x || !codes || !text) goto done;
    progress_t prog;
    progress_start(&prog, "encode", 0, npos, 0);
    for (int i = 0; i < npos; i++) {
        if (load_image_chw(pos[i], S, x) || dvae_encode(m, x, 1, codes)) goto done;
        if (npos > 1) progress_update(&prog, i + 1, i + 1, NULL);
        if (i) text[len++] = '\n';
        for (int r = 0; r < G; r++)
            for (int q = 0; q < G; q++)
                len += (size_t)snprintf(text + len, cap - len, "%d%c", codes[r * G + q], q == G - 1 ? '\n' : ' ');
    }
    if (npos > 1) progress_end(&prog);
    if (!strcmp(out, "-")) {
        fwrite(text, 1, len, stdout);
        rc = fflush(stdout) ? 1 : 0;
    } else {
        rc = dalle_write_file_atomic(out, text, len) ? 1 : 0;
    }
done:
    if (rc) cli_fail();
    dalle_free(text);
    dalle_free(codes);
    dalle_free(x);
    dvae_free(m);
    return rc;
}

// ---------------------------------------------------------------- decode

static int dvae_cmd_decode(int argc, char **argv) {
    const char *model = NULL, *out = "decoded.png";
    int no_ema = 0;
    const opt_t opts[] = {
        {"--model,-m", OPT_STR, &model, "dVAE model file (.safetensors)"},
        {"--out,-o", OPT_STR, &out, "output PNG; several grids give OUT-1.png, OUT-2.png, ..."},
        {"--no-ema", OPT_FLAG, &no_ema, "use a checkpoint's raw parameters, not its EMA"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos;
    int prc = opts_parse(argc, argv, "usage: dalle dvae decode --model M TOKENS.txt [-o out.png]", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!model || npos != 1) {
        fprintf(stderr, "dalle: dvae decode: needs --model and one token file\n");
        return 2;
    }
    int rc = 1, n = 0;
    char *text = NULL;
    int32_t *codes = NULL;
    float *x = NULL;
    dvae_model *m = dvae_load(model, !no_ema);
    if (!m) goto done;
    const dvae_config *c = dvae_get_config(m);
    int S = c->image_size, G = dvae_grid(c);
    if (!(text = dalle_read_file(pos[0], NULL))) goto done;
    if (cli_parse_grids(pos[0], text, G, c->vocab_size, &codes, &n)) goto done;
    if (!(x = dalle_malloc(sizeof(float) * 3 * (size_t)S * S))) goto done;
    for (int i = 0; i < n; i++) {
        char path[4096];
        numbered_path(path, sizeof path, out, i, n);
        if (dvae_decode(m, codes + (size_t)i * G * G, 1, x) || save_image_chw(path, x, S)) goto done;
        dalle_logv("wrote %s", path);
    }
    rc = 0;
done:
    if (rc) cli_fail();
    dalle_free(x);
    dalle_free(codes);
    dalle_free(text);
    dvae_free(m);
    return rc;
}

// ---------------------------------------------------------------- recon

static int dvae_cmd_recon(int argc, char **argv) {
    const char *model = NULL, *out = "recon.png", *grid_path = NULL;
    int no_ema = 0;
    const opt_t opts[] = {
        {"--model,-m", OPT_STR, &model, "dVAE model file (.safetensors)"},
        {"--out,-o", OPT_STR, &out, "reconstruction PNG; several images give OUT-1.png, OUT-2.png, ..."},
        {"--grid", OPT_STR, &grid_path, "also write one PNG with each input and its reconstruction side by side"},
        {"--no-ema", OPT_FLAG, &no_ema, "use a checkpoint's raw parameters, not its EMA"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos, rc = 1;
    int prc = opts_parse(argc, argv, "usage: dalle dvae recon --model M IMAGE... [-o recon.png]\n"
                         "Encodes and decodes each image; prints its PSNR and the codebook usage.", opts, pos, &npos);
    if (prc || !model || npos == 0) {
        if (!prc) fprintf(stderr, "dalle: dvae recon: needs --model and at least one image\n");
        return prc == 1 ? 0 : 2;
    }
    float *x = NULL, *y = NULL;
    int32_t *codes = NULL;
    uint8_t *used = NULL;
    image_t grid = {0}, tile = {0};
    dvae_model *m = dvae_load(model, !no_ema);
    if (!m) goto done;
    const dvae_config *c = dvae_get_config(m);
    int S = c->image_size, G = dvae_grid(c), V = c->vocab_size;
    size_t nx = 3 * (size_t)S * S;
    x = dalle_malloc(sizeof(float) * nx);
    y = dalle_malloc(sizeof(float) * nx);
    codes = dalle_malloc(sizeof(int32_t) * (size_t)G * G);
    used = dalle_calloc((size_t)V, 1);
    if (!x || !y || !codes || !used) goto done;
    if (grid_path && (image_alloc(&grid, 2 * S, npos * S) || image_alloc(&tile, S, S))) goto done;
    double psnr_sum = 0;
    for (int i = 0; i < npos; i++) {
        char path[4096];
        numbered_path(path, sizeof path, out, i, npos);
        if (load_image_chw(pos[i], S, x) || dvae_encode(m, x, 1, codes) || dvae_decode(m, codes, 1, y) ||
            save_image_chw(path, y, S))
            goto done;
        double mse = 0;
        for (size_t k = 0; k < nx; k++) mse += ((double)x[k] - y[k]) * ((double)x[k] - y[k]);
        mse /= (double)nx;
        double psnr = mse > 0 ? 10.0 * log10(1.0 / mse) : 99.0;
        psnr_sum += psnr;
        for (int k = 0; k < G * G; k++) used[codes[k]] = 1;
        for (int side = 0; grid_path && side < 2; side++) { // row i: input | reconstruction
            image_from_chw(&tile, side ? y : x);
            for (int row = 0; row < S; row++)
                memcpy(grid.data + ((size_t)(i * S + row) * 2 * S + (size_t)side * S) * 3, tile.data + (size_t)row * S * 3, (size_t)S * 3);
        }
        printf("%s: PSNR %.2f dB -> %s\n", pos[i], psnr, path);
    }
    int n_used = 0;
    for (int v = 0; v < V; v++) n_used += used[v] != 0;
    printf("mean PSNR %.2f dB over %d image%s; codebook usage %d of %d codes (%.1f%%)\n", psnr_sum / npos, npos,
           npos == 1 ? "" : "s", n_used, V, 100.0 * n_used / V);
    if (grid_path) {
        if (image_save_png(grid_path, &grid)) goto done;
        printf("side by side: %s\n", grid_path);
    }
    rc = 0;
done:
    if (rc) cli_fail();
    image_free(&grid);
    image_free(&tile);
    dalle_free(used);
    dalle_free(codes);
    dalle_free(x);
    dalle_free(y);
    dvae_free(m);
    return rc;
}

// ---------------------------------------------------------------- export, init, info

static int dvae_cmd_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *dtype = "f32";
    int no_ema = 0;
    const opt_t opts[] = {
        {"--model,-m", OPT_STR, &model, "training checkpoint or model file"},
        {"--out,-o", OPT_STR, &out, "model file to write (parameters only)"},
        {"--dtype", OPT_STR, &dtype, "storage: f32, f16 or bf16"},
        {"--no-ema", OPT_FLAG, &no_ema, "export the raw parameters, not the EMA"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos;
    int prc = opts_parse(argc, argv, "usage: dalle dvae export --model CKPT -o M.safetensors [--dtype f16]\n"
                         "Writes a checkpoint's EMA weights (or raw ones) as a model file.", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    st_dtype dt = ST_F32;
    if (!model || !out || npos || st_dtype_parse(dtype, &dt)) {
        fprintf(stderr, "dalle: dvae export: needs --model, -o and --dtype f32|f16|bf16\n");
        return 2;
    }
    dvae_model *m = dvae_load(model, !no_ema);
    if (!m) return cli_fail();
    int rc = dvae_save_as(m, out, dt) ? cli_fail() : 0;
    dvae_free(m);
    return rc;
}

static int dvae_cmd_init(int argc, char **argv) {
    const char *preset = "small", *out = NULL;
    int64_t seed = 1;
    const opt_t opts[] = {
        {"--preset", OPT_STR, &preset, "model size: paper, small, tiny"},
        {"--out,-o", OPT_STR, &out, "model file to write"},
        {"--seed", OPT_I64, &seed, "seed of the initialisation"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos;
    int prc = opts_parse(argc, argv, "usage: dalle dvae init --preset P -o M.safetensors\n"
                         "Writes a randomly initialised model (the official initialisation).", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!out || npos) {
        fprintf(stderr, "dalle: dvae init: needs -o FILE and no other arguments\n");
        return 2;
    }
    dvae_config cfg;
    if (dvae_config_preset(preset, &cfg)) return cli_fail();
    dvae_model *m = dvae_new(&cfg, (uint64_t)seed);
    if (!m) return cli_fail();
    int rc = dvae_save(m, out) ? cli_fail() : 0;
    dvae_free(m);
    return rc;
}

static int dvae_cmd_info(int argc, char **argv) {
    const char *preset = "paper", *model = NULL;
    const opt_t opts[] = {
        {"--preset", OPT_STR, &preset, "describe this preset: paper, small, tiny"},
        {"--model,-m", OPT_STR, &model, "describe this model file instead"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos;
    int prc = opts_parse(argc, argv, "usage: dalle dvae info [--preset P | --model M]", opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    dvae_config cfg;
    if (model) {
        dvae_model *m = dvae_load(model, 1);
        if (!m) return cli_fail();
        cfg = *dvae_get_config(m);
        dvae_free(m);
    } else if (dvae_config_preset(preset, &cfg)) {
        return cli_fail();
    }
    char js[256];
    dvae_config_to_json(&cfg, js, sizeof js);
    int64_t n = dvae_param_count(&cfg);
    printf("config %s\nimage %dx%d -> grid %dx%d of %d codes\nparameters %lld (%.1f MiB in fp32)\n", js,
           cfg.image_size, cfg.image_size, dvae_grid(&cfg), dvae_grid(&cfg), cfg.vocab_size, (long long)n,
           (double)n * 4 / (1 << 20));
    return 0;
}

// ---------------------------------------------------------------- dispatch

int cmd_dvae(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        const char *help;
    } SUB[] = {
        {"train", dvae_cmd_train, "train a dVAE on a folder of images (Gumbel-softmax, logit-Laplace, KL)"},
        {"encode", dvae_cmd_encode, "images -> token grids (text)"},
        {"decode", dvae_cmd_decode, "token grids -> PNG images"},
        {"recon", dvae_cmd_recon, "images -> reconstructions; PSNR and codebook usage"},
        {"export", dvae_cmd_export, "checkpoint -> model file (EMA weights; f32, f16 or bf16)"},
        {"init", dvae_cmd_init, "write a randomly initialised model"},
        {"info", dvae_cmd_info, "config and parameter count of a preset or model"},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: dalle dvae SUBCOMMAND [options]   (dalle dvae SUBCOMMAND --help for its options)\n\n");
        for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++) printf("  %-8s %s\n", SUB[i].name, SUB[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++)
        if (!strcmp(argv[1], SUB[i].name)) return SUB[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dalle: dvae: unknown subcommand '%s' (see dalle dvae --help)\n", argv[1]);
    return 2;
}
