// cmd_prior.c: `dalle info` and `dalle masks`, the transformer prior's config
// seen from the command line (no model is built).
//   dalle info  --config C [--batch B] [--candidates K] [--ranks K --precision P]
//   dalle masks --config C [--grid G] --layer-type row|column|conv [--format txt|png] [-o FILE]
// C is a preset (paper, small, tiny) or a JSON file of the nine config fields
// (prior_config_resolve). info prints the parameter count, FLOPs per token
// and the memory of training and sampling (prior_costs_compute); masks prints
// or draws the image->image attention mask of a layer type (paper Fig. 11).
// With --ranks or --precision, info also prints the memory of each rank of a
// sharded data-parallel run and what it sends (prior_rank_costs_compute).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "cli.h"
#include "core/common.h"
#include "core/image.h"
#include "dalle/dalle.h"
#include "dalle/prior.h"
#include "opts.h"

// ---------------------------------------------------------------- info

// 12294125568 -> "12,294,125,568".
static const char *thousands(int64_t v, char *buf, size_t len) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v)), k = 0;
    char out[48];
    if (v < 0) out[k++] = '-';
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = 0;
    snprintf(buf, len, "%s", out);
    return buf;
}

// FLOPs with a decimal prefix: "72.95 GFLOP".
static const char *flops_str(double x, char *buf, size_t len) {
    static const char *P[] = {"", "k", "M", "G", "T", "P"};
    int p = 0;
    while (p < 5 && fabs(x) >= 1000) x /= 1000, p++;
    snprintf(buf, len, "%.2f %sFLOP", x, P[p]);
    return buf;
}

// Bytes in decimal units: GB = 10^9 bytes, MB = 10^6, kB = 10^3.
static const char *bytes_str(int64_t b, char *buf, size_t len) {
    double x = (double)b;
    if (x >= 1e9) snprintf(buf, len, "%.2f GB", x / 1e9);
    else if (x >= 1e6) snprintf(buf, len, "%.2f MB", x / 1e6);
    else if (x >= 1e3) snprintf(buf, len, "%.2f kB", x / 1e3);
    else snprintf(buf, len, "%lld B", (long long)b);
    return buf;
}

// The memory of one of K ranks training with sharded parameters, and its traffic.
// With PowerSGD of rank psgd, the all-reduce's traffic (prior_psgd_costs_compute).
static int print_rank_costs(const prior_config *c, int ranks, prior_precision prec, int psgd) {
    prior_rank_costs r;
    prior_psgd_costs p;
    if (prior_rank_costs_compute(c, ranks, prec, &r) || prior_psgd_costs_compute(c, ranks, psgd, &p)) return DALLE_ERR;
    int half = prec != PRIOR_FP32;
    char a[64], b[64];
    printf("\nper rank: %d rank%s, parameters sharded (--dp shard), --precision %s: each rank updates %s "
           "parameters\n", ranks, ranks > 1 ? "s" : "", prior_precision_name(prec), thousands(r.shard, b, sizeof b));
    const struct {
        const char *what;
        int64_t bytes;
    } M[] = {
        {half ? "weights (16-bit matrices, fp32 rest), whole" : "weights fp32, whole", r.bytes_weights},
        {"master weights fp32, the shard", r.bytes_master},
        {ranks > 1 ? "gradient fp32, whole, and the reduced shard" : "gradient fp32", r.bytes_grads},
        {half ? "Adam moments e6m9/ue6m10, the shard" : "Adam moments fp32, the shard", r.bytes_adam},
        {"EMA fp32, the shard", r.bytes_ema},
        {"activations per sequence", r.bytes_acts_seq},
        {"  with activation checkpointing", r.bytes_acts_seq_ckpt},
    };
    for (size_t i = 0; i < sizeof M / sizeof *M; i++)
        if (M[i].bytes || i != 1) printf("  %-42s %12s\n", M[i].what, bytes_str(M[i].bytes, a, sizeof a));
    int64_t state = r.bytes_weights + r.bytes_master + r.bytes_grads + r.bytes_adam + r.bytes_ema;
    printf("  %-42s %12s\n", "total, one sequence checkpointed", bytes_str(state + r.bytes_acts_seq_ckpt, a, sizeof a));
    printf("bytes each rank sends per step\n");
    printf("  %-42s %12s\n", "reduce-scatter + all-gather (ring), fp32", bytes_str(r.bytes_sent, a, sizeof a));
    printf("  %-42s %12s\n", "all-reduce (--dp allreduce, ring), fp32", bytes_str(p.bytes_plain, a, sizeof a));
    char what[64], n[32];
    snprintf(what, sizeof what, "with PowerSGD rank %d, P and Q fp32", psgd);
    printf("  %-42s %12s   %.1f%% less (%s floats reduced, not %s)\n", what, bytes_str(p.bytes_psgd, a, sizeof a),
           100.0 * (1.0 - (double)p.floats_psgd / (double)p.floats_plain), thousands(p.floats_psgd, b, sizeof b),
           thousands(p.floats_plain, n, sizeof n));
    printf("  %-42s %12s   %.1f%% less than fp32 uncompressed\n", "  P and Q in 16 bits (the paper's 1-6-9)",
           bytes_str(p.bytes_psgd16, a, sizeof a), 100.0 * (1.0 - (double)p.bytes_psgd16 / (double)p.bytes_plain));
    return DALLE_OK;
}

int cmd_info(int argc, char **argv) {
    const char *spec = NULL, *precision = NULL;
    int batch = 1, cand = 512, ranks = 0, psgd = 896;
    const opt_t opts[] = {
        {"--config,-c", OPT_STR, &spec, "prior config: a preset (paper, small, tiny) or a JSON file (required)"},
        {"--batch", OPT_INT, &batch, "sequences per training batch, for the activation memory"},
        {"--candidates", OPT_INT, &cand, "images sampled per caption, for the sampling cache (paper: 512)"},
        {"--ranks", OPT_INT, &ranks, "data-parallel ranks: print each rank's memory and traffic (paper: 1024)"},
        {"--precision", OPT_STR, &precision, "fp32, bf16 or fp16 for the per-rank figures (default fp32)"},
        {"--powersgd", OPT_INT, &psgd, "PowerSGD rank for the per-rank traffic (paper: 896 for 12B)"},
        {NULL, 0, NULL, NULL},
    };
    char *pos[OPTS_MAX_POS];
    int npos;
    int prc = opts_parse(argc, argv, "usage: dalle info --config C [--batch B] [--candidates K] [--ranks K] "
                                     "[--precision fp32|bf16|fp16] [--powersgd R]\n"
                                     "       dalle info --device D   (the device alone: name, GPU memory free/total)",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos) {
        fprintf(stderr, "dalle: info: unexpected argument '%s'\n", pos[0]);
        return 2;
    }
    char dev[512];
    if (!spec && cli_device_given) { // `dalle info --device D`: the device alone
        printf("device %s\n", backend_describe(dev, sizeof dev));
        return 0;
    }
    if (!spec) {
        fprintf(stderr, "dalle: info: needs --config C (paper, small, tiny or a JSON file)\n");
        return 2;
    }
    prior_config c;
    prior_costs k;
    prior_precision prec = PRIOR_FP32;
    if ((precision && prior_precision_parse(precision, &prec)) || prior_config_resolve(spec, &c) ||
        prior_costs_compute(&c, batch, cand, &k))
        return cli_fail();
    char *js = prior_config_to_json(&c);
    if (!js) return cli_fail();
    prior_config preset;
    int is_preset = prior_config_preset(spec, &preset) == DALLE_OK;
    int d = c.n_head * c.d_head, N = c.grid * c.grid, T = c.text_len + N;
    char a[64], b[64];

    printf("config %s (%s)\n  %s\n", spec, is_preset ? "preset" : "file", js);
    dalle_free(js);
    printf("  d_model %d (%d heads of %d), MLP width %d; %d layers: %d row, %d column, %d conv (%dx%d)\n", d,
           c.n_head, c.d_head, d * c.mlp_mult, c.n_layer, k.n_layers[PRIOR_ROW], k.n_layers[PRIOR_COLUMN],
           k.n_layers[PRIOR_CONV], c.conv_kernel, c.conv_kernel);
    printf("  stream T = %d positions: L = %d text + N = %d image (%dx%d grid); vocabularies %d text "
           "(+%d padding ids), %d image\n",
           T, c.text_len, N, c.grid, c.grid, c.text_vocab, c.text_len, c.image_vocab);
    if (k.params >= 100000000) printf("parameters %s (%.2f billion)\n", thousands(k.params, a, sizeof a), (double)k.params / 1e9);
    else printf("parameters %s (%.4g million)\n", thousands(k.params, a, sizeof a), (double)k.params / 1e6);

    printf("\nFLOPs per token (2 per multiply-add, averaged over the T = %d positions)\n", T);
    printf("  %-28s %18s %18s %13s\n", "", "sparse (this model)", "dense causal", "dense/sparse");
    printf("  %-28s %18s %18s %13.3f\n", "forward", flops_str(k.flops_fwd, a, sizeof a),
           flops_str(k.flops_fwd_dense, b, sizeof b), k.flops_fwd_dense / k.flops_fwd);
    printf("  %-28s %18s %18s %13.3f\n", "training step (3x forward)", flops_str(k.flops_train, a, sizeof a),
           flops_str(k.flops_train_dense, b, sizeof b), k.flops_train_dense / k.flops_train);
    printf("  %-28s %18s %18s %13.3f\n", "  of the forward: attention", flops_str(k.flops_attn, a, sizeof a),
           flops_str(k.flops_attn_dense, b, sizeof b), k.flops_attn_dense / k.flops_attn);
    printf("  %-28s %18s\n", "  of the forward: matmuls", flops_str(k.flops_matmul, a, sizeof a));
    printf("  training step / (6 x parameters) = %.3f\n", k.flops_train / (6.0 * (double)k.params));

    printf("\nmemory (GB = 10^9 bytes, MB = 10^6)\n");
    const struct {
        const char *what;
        int64_t bytes;
    } M[] = {
        {"weights fp32", k.bytes_weights},
        {"weights 16-bit", k.bytes_weights16},
        {"gradients fp32", k.bytes_grads},
        {"Adam moments fp32", k.bytes_adam},
        {"Adam moments 16-bit", k.bytes_adam16},
    };
    for (size_t i = 0; i < sizeof M / sizeof *M; i++) printf("  %-42s %12s\n", M[i].what, bytes_str(M[i].bytes, a, sizeof a));
    char what[96];
    snprintf(what, sizeof what, "activations, training batch of %d", k.batch);
    printf("  %-42s %12s\n", what, bytes_str(k.bytes_acts, a, sizeof a));
    printf("  %-42s %12s\n", "  with activation checkpointing", bytes_str(k.bytes_acts_ckpt, a, sizeof a));
    printf("  %-42s %12s\n", "  16-bit storage (bf16, fp16)", bytes_str(k.bytes_acts16, a, sizeof a));
    printf("  %-42s %12s\n", "  16-bit storage and checkpointing", bytes_str(k.bytes_acts_ckpt16, a, sizeof a));
    printf("  %-42s %12s\n", "training total, all fp32",
           bytes_str(k.bytes_weights + k.bytes_grads + k.bytes_adam + k.bytes_acts, a, sizeof a));
    snprintf(what, sizeof what, "sampling: KV cache (fp32), %d candidates", k.n_cand);
    printf("  %-42s %12s\n", what, bytes_str(k.bytes_kv, a, sizeof a));
    printf("  %-42s %12s\n", "sampling total (cache + fp32 weights)", bytes_str(k.bytes_sample, a, sizeof a));
    if ((ranks || precision) && print_rank_costs(&c, ranks ? ranks : 1, prec, psgd)) return cli_fail();
    printf("\ndevice %s\n", backend_describe(dev, sizeof dev));
    return 0;
}

// ---------------------------------------------------------------- masks

#define MASK_MAX_N 4096    // image positions a text mask may have (grid 64)
#define MASK_MAX_PX 2048   // side of the largest picture
#define MASK_TARGET_PX 512 // cells grow until the picture is about this wide

// Draws the N x N mask: cell (i, j) is s x s pixels, dark where query i
// attends key j. With cells of 4 pixels or more, a light line edges each cell
// and a darker one each image row (every G cells).
static int draw_mask(const prior_config *c, prior_layer_type type, const char *path) {
    int N = c->grid * c->grid;
    int s = (MASK_TARGET_PX + N - 1) / N;
    image_t img = {0};
    if (image_alloc(&img, N * s, N * s)) return DALLE_ERR;
    int W = N * s;
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            int i = y / s, j = x / s, v = prior_mask_image(c, type, i, j) ? 40 : 255;
            if (s >= 4) {
                int ex = x % s == 0 || x == W - 1, ey = y % s == 0 || y == W - 1;
                int gx = ex && (x == W - 1 || j % c->grid == 0), gy = ey && (y == W - 1 || i % c->grid == 0);
                if (gx || gy) v = 120;
                else if (ex || ey) v = v == 255 ? 205 : 90;
            }
            uint8_t *p = img.data + ((size_t)y * W + x) * 3;
            p[0] = p[1] = p[2] = (uint8_t)v;
        }
    int rc = image_save_png(path, &img);
    image_free(&img);
    return rc;
}

int cmd_masks(int argc, char **argv) {
    const char *spec = NULL, *type_s = NULL, *format = "txt", *out = NULL;
    int grid = 0, kernel = 0;
    const opt_t opts[] = {
        {"--config,-c", OPT_STR, &spec, "prior config: a preset (paper, small, tiny) or a JSON file (required)"},
        {"--layer-type", OPT_STR, &type_s, "row, column or conv (required)"},
        {"--grid", OPT_INT, &grid,
         "image grid side G instead of the config's (0: keep); the conv kernel is then clamped to at most 2G-1"},
        {"--conv-kernel", OPT_INT, &kernel, "conv kernel side instead of the config's (0: keep), odd, at most 2G-1"},
        {"--format", OPT_STR, &format, "txt (one line of N '1'/'0' per query) or png (paper Fig. 11; needs -o)"},
        {"--out,-o", OPT_STR, &out, "output file (txt default: standard output)"},
        {NULL, 0, NULL, NULL},
    };
    const char *usage = "usage: dalle masks --config C [--grid G] --layer-type row|column|conv [--format txt|png] [-o FILE]\n"
                        "The image->image part of a layer type's attention mask: line i (raster order) holds\n"
                        "one character per key j, '1' where image query i attends image key j.";
    char *pos[OPTS_MAX_POS];
    int npos;
    int prc = opts_parse(argc, argv, usage, opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (npos) {
        fprintf(stderr, "dalle: masks: unexpected argument '%s'\n", pos[0]);
        return 2;
    }
    if (!spec || !type_s) {
        fprintf(stderr, "dalle: masks: needs --config C and --layer-type row|column|conv\n");
        return 2;
    }
    static const char *const TYPES[] = {"row", "column", "conv"};
    int type = 0;
    while (type < 3 && strcmp(type_s, TYPES[type])) type++;
    if (type == 3) {
        fprintf(stderr, "dalle: masks: --layer-type '%s' is not row, column or conv\n", type_s);
        return 2;
    }
    int png = !strcmp(format, "png");
    if (!png && strcmp(format, "txt")) {
        fprintf(stderr, "dalle: masks: --format '%s' is not txt or png\n", format);
        return 2;
    }
    if (png && !out) {
        fprintf(stderr, "dalle: masks: --format png needs -o FILE\n");
        return 2;
    }
    if (grid < 0 || kernel < 0) {
        fprintf(stderr, "dalle: masks: --grid and --conv-kernel must not be negative\n");
        return 2;
    }
    prior_config c;
    if (prior_config_resolve(spec, &c)) return cli_fail();
    if (grid) c.grid = grid;
    if (kernel) c.conv_kernel = kernel;
    if (c.grid <= 1024 && c.conv_kernel > 2 * c.grid - 1) {
        if (type == PRIOR_CONV && !kernel)
            dalle_log("note: conv_kernel %d clamped to %d (at most 2*grid-1 for grid %d)", c.conv_kernel,
                      2 * c.grid - 1, c.grid);
        if (!kernel) c.conv_kernel = 2 * c.grid - 1;
    }
    if (prior_config_check(&c)) return cli_fail();
    int N = c.grid * c.grid;
    if (N > (png ? MASK_MAX_PX : MASK_MAX_N)) {
        fprintf(stderr, "dalle: masks: grid %d has %d image positions, more than the %d a %s mask shows "
                        "(use --grid)\n", c.grid, N, png ? MASK_MAX_PX : MASK_MAX_N, png ? "png" : "txt");
        return 2;
    }
    if (png) return draw_mask(&c, (prior_layer_type)type, out) ? cli_fail() : 0;

    size_t len = (size_t)N * (size_t)(N + 1);
    char *txt = dalle_malloc(len);
    if (!txt) return cli_fail();
    char *p = txt;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) *p++ = prior_mask_image(&c, (prior_layer_type)type, i, j) ? '1' : '0';
        *p++ = '\n';
    }
    int rc = 0;
    if (out) rc = dalle_write_file_atomic(out, txt, len) ? cli_fail() : 0;
    else if (fwrite(txt, 1, len, stdout) != len || fflush(stdout)) {
        fprintf(stderr, "dalle: masks: cannot write to standard output\n");
        rc = 1;
    }
    dalle_free(txt);
    return rc;
}
