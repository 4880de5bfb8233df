// bench_bpe.c: how fast the tokenizer (src/text/) encodes and trains, one
// thread, against tiktoken and the Hugging Face `tokenizers` library run in
// the same process tree on the same text (bench/bpe_ref.py).
//   build/bench/bench_bpe [REPEATS [train|notrain [ref-train]]]   (from the repository root)
// Encode: every line of the 6.8 MB test corpus (ext/text-corpus.txt: prose,
// code, emoji names in twelve scripts), MB/s of input, best of REPEATS (3),
// each from a freshly loaded tokenizer (an empty piece cache). The vocabulary
// is one of 16,384 trained here on that corpus; CLIP's (49,408) is timed too.
// Train: 16,384 tokens on ~100 MB (bench/make-bpe-corpus), goal < 60 s;
// "ref-train" also times the library's BpeTrainer on it (slow).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/common.h"
#include "dalle/bpe.h"

#define CORPUS "ext/text-corpus.txt"
#define BIG "ext/bench-bpe-corpus.txt"
#define CLIP "ext/bpe_simple_vocab_16e6.txt.gz"
#define TOK "ext/bench-bpe-16k.json"

static void die(const char *what) {
    fprintf(stderr, "bench_bpe: %s: %s\n", what, dalle_last_error());
    exit(1);
}

// Best seconds to encode every line of text[0..n) with a fresh tokenizer from PATH.
static double time_encode(const char *path, const char *text, size_t n, int repeats, int64_t *n_ids) {
    int32_t *ids = dalle_malloc(sizeof(int32_t) * (1 << 22));
    if (!ids) die("alloc");
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        bpe_tokenizer *t = bpe_load(path);
        if (!t) die(path);
        int64_t total = 0;
        double t0 = dalle_time();
        for (size_t a = 0; a < n;) {
            const char *e = memchr(text + a, '\n', n - a);
            size_t b = e ? (size_t)(e - text) : n;
            int64_t k = bpe_encode(t, text + a, b - a, NULL, ids, 1 << 22);
            if (k < 0) die("encode");
            total += k;
            a = b + 1;
        }
        double dt = dalle_time() - t0;
        if (dt < best) best = dt;
        *n_ids = total;
        bpe_free(t);
    }
    dalle_free(ids);
    return best;
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 3;
    int train = !(argc > 2 && !strcmp(argv[2], "notrain"));
    int ref_train = argc > 3 && !strcmp(argv[3], "ref-train");
    if (system("[ -f " CORPUS " ] || scripts/text-corpus " CORPUS) != 0) die("scripts/text-corpus");
    size_t n;
    char *text = dalle_read_file(CORPUS, &n);
    if (!text) die(CORPUS);

    // The 16,384-token vocabulary, trained on the corpus.
    bpe_train_opts o = bpe_train_default_opts();
    const char *paths[] = {CORPUS};
    bpe_tokenizer *t = bpe_train(paths, 1, &o);
    if (!t || bpe_save(t, TOK) != DALLE_OK) die("train");
    bpe_free(t);

    int64_t n_ids = 0, n_clip = 0;
    double t_ours = time_encode(TOK, text, n, repeats, &n_ids);
    double t_clip = time_encode(CLIP, text, n, repeats, &n_clip);
    double mb = (double)n / 1e6;

    double t_train = -1;
    if (train) {
        if (system("[ -f " BIG " ] || bench/make-bpe-corpus " BIG) != 0) die("bench/make-bpe-corpus");
        const char *big[] = {BIG};
        double t0 = dalle_time();
        bpe_tokenizer *tt = bpe_train(big, 1, &o);
        if (!tt) die("train 100 MB");
        t_train = dalle_time() - t0;
        bpe_free(tt);
    }

    char cmd[512], line[4096] = "";
    snprintf(cmd, sizeof cmd, "RAYON_NUM_THREADS=1 python3 bench/bpe_ref.py %s %s %d %s %s", CORPUS, TOK, repeats,
             ref_train ? BIG : "", ref_train ? "16384" : "");
    FILE *p = popen(cmd, "r");
    int have_ref = 0;
    if (p) {
        while (fgets(line, sizeof line, p))
            if (strstr(line, "tiktoken_mbps")) have_ref = 1;
        have_ref &= pclose(p) == 0;
    }
    double tk = have_ref ? bench_json_num(line, "tiktoken_mbps") : -1, hf = have_ref ? bench_json_num(line, "tokenizers_mbps") : -1;

    printf("bench_bpe: encode %s (%.1f MB, every line), one thread, best of %d\n", CORPUS, mb, repeats);
    printf("  dalle.c   vocab 16384 (dalle)  %7.1f MB/s   %.2f bytes/token\n", mb / t_ours, (double)n / (double)n_ids);
    printf("  dalle.c   vocab 49408 (CLIP)   %7.1f MB/s   %.2f bytes/token\n", mb / t_clip, (double)n / (double)n_clip);
    if (have_ref) {
        printf("  tiktoken  vocab 16384          %7.1f MB/s   (same ids: %s)   dalle.c / tiktoken   = %.2fx\n", tk,
               bench_json_num(line, "tiktoken_same_ids") == 1 ? "yes" : "NO", mb / t_ours / tk);
        printf("  tokenizers vocab 16384         %7.1f MB/s                      dalle.c / tokenizers = %.2fx\n", hf,
               mb / t_ours / hf);
    } else {
        printf("  (reference side skipped: pip install tiktoken tokenizers)\n");
    }
    if (train) {
        printf("bench_bpe: train 16384 tokens on %s: %.1f s (goal < 60 s)", BIG, t_train);
        double ht = have_ref ? bench_json_num(line, "tokenizers_train_s") : -1;
        if (ht > 0) printf("; tokenizers' BpeTrainer %.1f s, ratio %.2fx", ht, ht / t_train);
        printf("\n");
    }
    dalle_free(text);
    return 0;
}
