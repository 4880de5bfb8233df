// cmd_clip.c: `dalle clip ...`, the contrastive reranker (src/clip/clip.h).
//   dalle clip train [options] -o clip.safetensors SHARD...
//   dalle clip score --model M (--caption TEXT -t TOKENIZER | --ids IDS) CODES
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "clip/clip.h"
#include "clip/train.h"
#include "core/common.h"
#include "dalle/dalle.h"
#include "opts.h"

enum { SWAP_MAX = 256 };

// The swap groups of --swap ("w1,w2,... w3,w4,..": groups apart by spaces,
// words by commas) as mid-caption BPE ids of tokenizer TOK: each word must
// be one token after another word ("a WORD" encodes as "a" and one id),
// appear once and, with NEED_MATES, have another word in its group. OPT:
// the option's name, for messages.
static int parse_words(const char *opt, const char *tok, const char *spec, int need_mates, int32_t *ids, int *group,
                       int *n) {
    bpe_tokenizer *t = bpe_load(tok);
    if (!t) return DALLE_ERR;
    int32_t pre[8], buf[8];
    const int64_t n_pre = bpe_encode(t, "a", 1, NULL, pre, 8);
    const char *word_at[SWAP_MAX];
    int word_len[SWAP_MAX], rc = DALLE_OK, g = 0;
    *n = 0;
    for (const char *p = spec; *p && rc == DALLE_OK;) {
        const int len = (int)strcspn(p, ", ");
        if (len > 0) {
            char text[128];
            if (len > (int)sizeof text - 3 || *n == SWAP_MAX) {
                rc = dalle_seterr("%s: '%.*s': too long a word or more than %d words", opt, len, p, SWAP_MAX);
                break;
            }
            snprintf(text, sizeof text, "a %.*s", len, p);
            int64_t k = bpe_encode(t, text, strlen(text), NULL, buf, 8);
            if (k != n_pre + 1 || memcmp(buf, pre, sizeof(int32_t) * (size_t)n_pre)) {
                rc = dalle_seterr("%s: '%s' is not one token of %s after another word (it is %lld ids in '%s')",
                                  opt, text + 2, tok, (long long)(k - n_pre), text);
                break;
            }
            word_at[*n] = p, word_len[*n] = len, ids[*n] = buf[n_pre], group[*n] = g, ++*n;
        }
        p += len;
        if (*p == ' ' && len > 0) g++;
        if (*p) p++;
    }
    for (int i = 0; i < *n && rc == DALLE_OK; i++) {
        int mates = 0;
        for (int j = 0; j < *n; j++) {
            if (j != i && ids[j] == ids[i])
                rc = dalle_seterr("%s: '%.*s' appears twice", opt, word_len[i], word_at[i]);
            mates += j != i && group[j] == group[i];
        }
        if (need_mates && !mates && rc == DALLE_OK)
            rc = dalle_seterr("%s: '%.*s' is alone in its group (a word needs another to stand in for it)", opt,
                              word_len[i], word_at[i]);
    }
    bpe_free(t);
    return rc;
}

static int clip_cmd_train(int argc, char **argv) {
    clip_train_opts o;
    clip_train_defaults(&o, 2000);
    int64_t seed = 0;
    const char *swap = NULL, *drop = NULL, *tok = NULL;
    int32_t swap_ids[SWAP_MAX], drop_ids[SWAP_MAX];
    int swap_group[SWAP_MAX], drop_group[SWAP_MAX];
    opt_t opts[] = {
        {"--out,-o", OPT_STR, &o.out, "model file to write: the EMA weights (required)"},
        {"--val", OPT_STR, &o.val, "held-out shard: loss and in-batch accuracy of the EMA weights"},
        {"--layers", OPT_INT, &o.cfg.n_layer, "blocks per tower"},
        {"--heads", OPT_INT, &o.cfg.n_head, "attention heads"},
        {"--head-dim", OPT_INT, &o.cfg.d_head, "width of a head (model width: heads x head-dim)"},
        {"--embed", OPT_INT, &o.cfg.embed, "width E of the joint embedding"},
        {"--mlp-mult", OPT_INT, &o.cfg.mlp_mult, "MLP width as a multiple of the model width"},
        {"--batch", OPT_INT, &o.batch, "pairs per step (each pair's negatives: the other pairs of its batch)"},
        {"--steps", OPT_I64, &o.steps, "steps"},
        {"--lr", OPT_DOUBLE, &o.lr, "peak step size"},
        {"--warmup", OPT_I64, &o.warmup, "linear warm-up steps (at most half the steps), then cosine decay"},
        {"--lr-end", OPT_DOUBLE, &o.lr_end, "step size at the end"},
        {"--wd", OPT_DOUBLE, &o.weight_decay, "AdamW weight decay of the matrices and embeddings"},
        {"--clip", OPT_DOUBLE, &o.clip, "clip the gradient at this global norm (0: off)"},
        {"--ema", OPT_DOUBLE, &o.ema_decay, "EMA decay of the parameters (step t: at most (1+t)/(10+t))"},
        {"--seed", OPT_I64, &seed, "initialisation and data order"},
        {"--log-every", OPT_I64, &o.log_every, "print the mean train loss and accuracy every this many steps"},
        {"--eval-every", OPT_I64, &o.eval_every, "held-out loss and accuracy every this many steps (and at the end)"},
        {"--save-every", OPT_I64, &o.save_every, "also write the model every this many steps (0: at the end only)"},
        {"--swap", OPT_STR, &swap,
         "hard negatives: groups of words that stand in for one another, \"w1,w2,.. w3,w4,..\" (needs -t)"},
        {"--drop-words", OPT_STR, &drop, "words that --drop-p deletes from captions, \"w1,w2,..\" (needs -t)"},
        {"--drop-p", OPT_DOUBLE, &o.drop_p, "the probability that a caption loses one of its --drop-words"},
        {"--tokenizer,-t", OPT_STR, &tok, "the shards' tokenizer, for --swap and --drop-words"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv,
                         "usage: dalle clip train [options] -o clip.safetensors SHARD...\n"
                         "Trains the contrastive reranker on the prior's shards (caption ids, image codes).",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!o.out || npos == 0) {
        fprintf(stderr, "dalle: clip train: needs -o MODEL and at least one shard\n");
        return 2;
    }
    if ((swap || drop) && !tok) {
        fprintf(stderr, "dalle: clip train: --swap and --drop-words need --tokenizer\n");
        return 2;
    }
    if (drop && !(o.drop_p > 0)) {
        fprintf(stderr, "dalle: clip train: --drop-words needs --drop-p (the probability of a deletion)\n");
        return 2;
    }
    if (swap) {
        if (parse_words("--swap", tok, swap, 1, swap_ids, swap_group, &o.n_swap)) return cli_fail();
        o.swap_ids = swap_ids, o.swap_group = swap_group;
    }
    if (drop) {
        if (parse_words("--drop-words", tok, drop, 0, drop_ids, drop_group, &o.n_drop)) return cli_fail();
        o.drop_ids = drop_ids;
    }
    o.seed = (uint64_t)seed;
    o.shards = (const char **)pos;
    o.n_shards = npos;
    return clip_train(&o) ? cli_fail() : 0;
}

static int clip_cmd_score(int argc, char **argv) {
    const char *model = NULL, *tok = NULL, *caption = NULL, *ids = NULL;
    opt_t opts[] = {
        {"--model,-m", OPT_STR, &model, "reranker model (dalle clip train) (required)"},
        {"--tokenizer,-t", OPT_STR, &tok, "tokenizer for --caption"},
        {"--caption,-c", OPT_STR, &caption, "the caption (needs --tokenizer)"},
        {"--ids", OPT_STR, &ids, "or the text ids, space-separated (padded with DALL-E's padding ids)"},
        {NULL, 0, NULL, NULL}};
    char *pos[OPTS_MAX_POS];
    int npos = 0;
    int prc = opts_parse(argc, argv,
                         "usage: dalle clip score --model M (--caption TEXT -t TOKENIZER | --ids IDS) CODES\n"
                         "Prints the cosine of the caption with each image of CODES (grids as `dalle dvae encode` "
                         "and `dalle sample` write them): a line 'INDEX COSINE' per image.",
                         opts, pos, &npos);
    if (prc) return prc == 1 ? 0 : 2;
    if (!model || (!caption == !ids) || (caption && !tok) || npos != 1) {
        fprintf(stderr, "dalle: clip score: needs --model, either --caption with --tokenizer or --ids, and one "
                        "codes file\n");
        return 2;
    }
    int rc = 1, n = 0;
    int32_t *text = NULL, *codes = NULL;
    char *file = NULL;
    float *emb = NULL;
    clip_model *m = clip_load(model);
    if (!m) goto done;
    const clip_config *c = clip_get_config(m);
    const int E = c->embed;
    if (!(text = dalle_malloc(sizeof(int32_t) * (size_t)c->text_len)) ||
        cli_caption_ids("clip score", tok, caption, ids, model, c->text_vocab, c->text_len, text) ||
        !(file = dalle_read_file(pos[0], NULL)) ||
        cli_parse_grids(pos[0], file, c->grid, c->image_vocab, &codes, &n) ||
        !(emb = dalle_malloc(sizeof(float) * (size_t)(n + 1) * E)) || clip_embed_text(m, text, 1, emb) ||
        clip_embed_image(m, codes, n, emb + E))
        goto done;
    for (int i = 0; i < n; i++) {
        double dot = 0;
        for (int e = 0; e < E; e++) dot += (double)emb[e] * emb[(int64_t)(i + 1) * E + e];
        printf("%d %.6f\n", i, dot);
    }
    rc = fflush(stdout) ? 1 : 0;
done:
    if (rc) cli_fail();
    dalle_free(emb);
    dalle_free(file);
    dalle_free(codes);
    dalle_free(text);
    clip_free(m);
    return rc;
}

int cmd_clip(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        const char *help;
    } SUB[] = {
        {"train", clip_cmd_train, "train the reranker on shards (in-batch InfoNCE, AdamW, warm-up, cosine, EMA)"},
        {"score", clip_cmd_score, "the cosine of a caption with each of some images' code grids"},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: dalle clip SUBCOMMAND [options]   (dalle clip SUBCOMMAND --help for its options)\n\n");
        for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++) printf("  %-8s %s\n", SUB[i].name, SUB[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof SUB / sizeof *SUB; i++)
        if (!strcmp(argv[1], SUB[i].name)) return SUB[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dalle: clip: unknown subcommand '%s' (see dalle clip --help)\n", argv[1]);
    return 2;
}
