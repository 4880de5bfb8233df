// cmd_train.c: `dalle train` (the transformer prior, on pre-tokenized shards)
// and `dalle sample` (caption -> image codes with the KV cache).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/common.h"
#include "dalle/dalle.h"
#include "opts.h"
#include "prior/model.h"
#include "prior/sample.h"
#include "prior/train.h"
#include "train/comm.h"

// Splits a comma-separated list in place into out (at most max); returns the count.
static int split_list(char *s, const char **out, int max) {
    int n = 0;
    for (char *p = s; p && *p && n < max;) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        if (*p) out[n++] = p;
        p = c ? c + 1 : NULL;
    }
    return n;
}

int cmd_train(int argc, char **argv) {
    prior_train_opts o;
    prior_train_defaults(&o, 10000);
    const char *config = "small", *val = NULL, *dp = "shard", *precision = "fp32", *loss_scale = "resblock";
    int64_t seed = 0;
    opt_t opts[] = {
        {"--config", OPT_STR, &config, "preset (paper, small, tiny) or a config JSON file"},
        {"--out,-o", OPT_STR, &o.out, "checkpoint to write (required)"},
        {"--resume", OPT_STR, &o.resume, "continue this checkpoint (its config, seed and optimizer settings)"},
        {"--val", OPT_STR, &val, "held-out shards, comma-separated"},
        {"--batch", OPT_INT, &o.batch, "sequences per step (all ranks together)"},
        {"--micro-batch", OPT_INT, &o.micro_batch, "sequences per forward/backward pass, the gradient accumulated "
                                                   "(0: each rank's whole part of the batch)"},
        {"--steps", OPT_I64, &o.steps, "total steps"},
        {"--seed", OPT_I64, &seed, "initialisation and data order"},
        {"--lr", OPT_DOUBLE, &o.lr, "peak step size (paper 4.5e-4)"},
        {"--warmup", OPT_I64, &o.warmup, "linear warm-up steps (paper 5000)"},
        {"--lr-end", OPT_DOUBLE, &o.lr_end, "step size at the end, reached by cosine decay after the warm-up"},
        {"--beta2", OPT_DOUBLE, &o.beta2, "AdamW beta2 (paper 0.96)"},
        {"--weight-decay", OPT_DOUBLE, &o.weight_decay, "AdamW decay of the weight matrices (paper 4.5e-2)"},
        {"--clip", OPT_DOUBLE, &o.clip, "clip the gradient at this global norm (0: off)"},
        {"--ema-decay", OPT_DOUBLE, &o.ema_decay, "EMA of the parameters: decay ..."},
        {"--ema-every", OPT_I64, &o.ema_every, "... applied every this many steps (paper: 0.99 every 25)"},
        {"--save-every", OPT_I64, &o.save_every, "write the checkpoint every this many steps (0: at the end)"},
        {"--log-every", OPT_I64, &o.log_every, "print the mean train losses every this many steps"},
        {"--eval-every", OPT_I64, &o.eval_every, "held-out losses every this many steps"},
        {"--eval-batches", OPT_I64, &o.eval_batches, "held-out batches per evaluation"},
        {"--stop-after", OPT_I64, &o.stop_after, "stop (with a checkpoint) after this many steps of this run"},
        {"--dp", OPT_STR, &dp, "under mpirun: shard (gradients reduce-scattered, each rank updates its shard) "
                               "or allreduce (every rank updates everything)"},
        {"--precision", OPT_STR, &precision, "fp32, or bf16 / fp16: the resblocks' matrices, activations and "
                                             "gradients in 16 bits, Adam's moments in the paper's 16-bit formats"},
        {"--loss-scale", OPT_STR, &loss_scale, "bf16/fp16: resblock (the paper's per-resblock gradient scales) or "
                                               "dynamic (one loss scale)"},
        {"--grad-scale-init", OPT_STR, &o.grad_scale_init, "bf16/fp16: initial scale(s) per rank (default 2^13 "
                                                           "resblock, 2^16 dynamic), or r=S,... for resblocks r "
                                                           "(2l attention, 2l+1 MLP); clamped after the first step"},
        {"--loss-scale-window", OPT_I64, &o.loss_scale_window, "dynamic: double the scale after this many finite "
                                                               "steps (0: 2000)"},
        {"--powersgd", OPT_INT, &o.powersgd, "with --dp allreduce: compress the resblocks' matrix gradients with "
                                             "PowerSGD of this rank (error feedback, fixed Q; 0: off)"},
        {"--caption-dropout", OPT_DOUBLE, &o.caption_dropout, "train this fraction of the records with the empty "
                                                               "caption, for generate --guidance (not in the paper)"},
        {"--checkpoint-acts", OPT_FLAG, &o.checkpoint_acts, "recompute each resblock's internals in the backward "
                                                            "pass (less memory, same results)"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv,
                         "usage: dalle train [options] -o CHECKPOINT SHARD...\n"
                         "       mpirun -np K dalle train [options] -o CHECKPOINT SHARD...   (K ranks share each batch)\n"
                         "Trains the transformer prior on pre-tokenized shards (dalle shard pack).",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!o.out || npos == 0) {
        fprintf(stderr, "dalle: train: needs -o CHECKPOINT and at least one shard\n");
        return 2;
    }
    o.seed = (uint64_t)seed;
    if (dp_mode_parse(dp, &o.dp) || prior_precision_parse(precision, &o.precision) ||
        gscale_mode_parse(loss_scale, &o.loss_scale) || (!o.resume && prior_config_resolve(config, &o.cfg)))
        return cli_fail();
    o.shards = (const char **)pos;
    o.n_shards = npos;
    const char *vals[256];
    char *vcopy = val ? dalle_strdup(val) : NULL;
    o.val_shards = vals;
    o.n_val = vcopy ? split_list(vcopy, vals, 256) : 0;
    int rc = 1;
    if ((o.comm = cli_comm_open())) rc = cli_comm_finish(o.comm, prior_train(&o) != DALLE_OK);
    dalle_free(vcopy);
    return rc;
}

int cmd_sample(int argc, char **argv) {
    const char *model = NULL, *tok = NULL, *caption = NULL, *ids = NULL, *out = NULL;
    int n = 4, ema = 1;
    int64_t seed = 0;
    double temperature = 1, top_p = 1, guidance = 1;
    int top_k = 0;
    opt_t opts[] = {
        {"--model", OPT_STR, &model, "prior model or training checkpoint (required)"},
        {"--tokenizer,-t", OPT_STR, &tok, "tokenizer for --caption"},
        {"--caption,-c", OPT_STR, &caption, "the caption (needs --tokenizer)"},
        {"--ids", OPT_STR, &ids, "or the text ids, space-separated (padded with DALL-E's padding ids)"},
        {"-n", OPT_INT, &n, "candidates"},
        {"--seed", OPT_I64, &seed, "candidate c draws from Philox (seed, c, position)"},
        {"--temperature", OPT_DOUBLE, &temperature, "divide the logits by this"},
        {"--top-k", OPT_INT, &top_k, "keep the k most likely codes (0: all)"},
        {"--top-p", OPT_DOUBLE, &top_p, "keep the most likely codes up to this mass (1: all)"},
        {"--guidance", OPT_DOUBLE, &guidance, "classifier-free guidance scale against the empty caption (not in "
                                              "the paper; 1: off, costs twice the sampling)"},
        {"--ema", OPT_INT, &ema, "use a checkpoint's EMA weights (1) or its raw ones (0)"},
        {"--out,-o", OPT_STR, &out, "codes file (default: standard output): G lines of G codes per candidate, "
                                    "a blank line between, as `dalle dvae decode` reads"},
        {NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle sample --model PRIOR (--caption TEXT -t TOKENIZER | --ids IDS) [options]",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!model || (!caption == !ids) || (caption && !tok) || n < 1 || npos) {
        fprintf(stderr, "dalle: sample: needs --model and either --caption with --tokenizer or --ids, and -n >= 1\n");
        return 2;
    }
    prior_model *m = prior_load(model, ema);
    if (!m) return cli_fail();
    const prior_config *c = prior_get_config(m);
    int L = c->text_len, N = c->grid * c->grid, rc = 1;
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)L), *codes = dalle_malloc(sizeof(int32_t) * (size_t)n * N);
    char *buf = NULL;
    if (!text || !codes) goto fail;
    if (cli_caption_ids("sample", tok, caption, ids, model, c->text_vocab, L, text)) goto fail;
    prior_sample_opts so = prior_sample_default_opts();
    so.temperature = (float)temperature, so.top_k = top_k, so.top_p = (float)top_p, so.seed = (uint64_t)seed;
    so.guidance = (float)guidance, so.progress = 1;
    if (prior_sample(m, text, n, &so, codes)) goto fail;
    size_t cap = (size_t)n * N * 12 + (size_t)n + 16, len = 0;
    buf = dalle_malloc(cap);
    if (!buf) goto fail;
    for (int k = 0; k < n; k++) {
        if (k) buf[len++] = '\n';
        for (int i = 0; i < N; i++)
            len += (size_t)snprintf(buf + len, cap - len, "%d%c", codes[(int64_t)k * N + i],
                                    i % c->grid == c->grid - 1 ? '\n' : ' ');
    }
    if (out) {
        if (dalle_write_file_atomic(out, buf, len)) goto fail;
    } else if (fwrite(buf, 1, len, stdout) != len) {
        dalle_seterr("cannot write to standard output");
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    rc = cli_fail();
done:
    dalle_free(buf);
    dalle_free(text);
    dalle_free(codes);
    prior_free(m);
    return rc;
}

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *dtype = "f32";
    int no_ema = 0;
    opt_t opts[] = {
        {"--model,-m", OPT_STR, &model, "prior training checkpoint or model file (required)"},
        {"--out,-o", OPT_STR, &out, "model file to write: parameters only (required)"},
        {"--dtype", OPT_STR, &dtype, "storage: f32, f16 or bf16"},
        {"--no-ema", OPT_FLAG, &no_ema, "export the raw parameters, not the (debiased) EMA"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv, "usage: dalle export --model CHECKPOINT -o prior.safetensors [--dtype f16]\n"
                                     "Writes a prior checkpoint's EMA weights (or raw ones) as a model file.",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    st_dtype dt = ST_F32;
    if (!model || !out || npos || st_dtype_parse(dtype, &dt)) {
        fprintf(stderr, "dalle: export: needs --model, -o and --dtype f32|f16|bf16\n");
        return 2;
    }
    prior_model *m = prior_load(model, !no_ema);
    if (!m) return cli_fail();
    int rc = prior_save_as(m, out, dt) ? cli_fail() : 0;
    prior_free(m);
    return rc;
}
