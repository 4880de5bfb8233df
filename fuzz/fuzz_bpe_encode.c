// fuzz_bpe_encode.c: libFuzzer target for encoding: normalisation, the
// pre-tokeniser, BPE merging (scan and heap paths, dropout) on any bytes,
// with a small vocabulary trained here and, when scripts/setup has fetched it,
// CLIP's (CLIP's cleaning: html.unescape, final sigma). "dalle" must decode
// back to exactly its normalised text.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "text/tokenizer.h"

static bpe_tokenizer *small, *clip;

static void init(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz-bpe-%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) abort();
    for (int i = 0; i < 20; i++)
        fprintf(f, "The quick brown fox jumps over the lazy dog %d times. Caf\xc3\xa9 \xce\xa3\xce\xbf\xcf\x86\xce\xaf\xce\xb1 "
                   "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\xb1 it's we're\n", i);
    fclose(f);
    const char *paths[] = {path};
    bpe_train_opts o = {400, 2};
    small = bpe_train(paths, 1, &o);
    unlink(path);
    if (!small) abort();
    clip = bpe_load("ext/bpe_simple_vocab_16e6.txt.gz"); // optional
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!small) init();
    bpe_dropout drop = {0, 0, 0}, *dp = NULL;
    if (size > 0 && data[0] < 64) { // some inputs run with dropout
        drop = (bpe_dropout){(float)data[0] / 64.0f, data[0], size};
        dp = &drop;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (3 * size + 16));
    char *out = malloc(3 * size + 16);
    int64_t k = bpe_encode(small, (const char *)data, size, dp, ids, (int64_t)(3 * size + 16));
    if (k < 0 || k > (int64_t)(3 * size + 16)) abort();
    int64_t m = bpe_decode(small, ids, k, out, (int64_t)(3 * size + 16));
    if (m != (int64_t)small->norm.n || memcmp(out, small->norm.p, (size_t)m)) abort();
    if (clip) {
        int64_t kc = bpe_encode(clip, (const char *)data, size, dp, NULL, 0);
        if (kc < 0) abort();
        int32_t *cid = malloc(sizeof(int32_t) * ((size_t)kc + 1));
        if (bpe_encode(clip, (const char *)data, size, dp, cid, kc) != kc) abort();
        if (bpe_decode(clip, cid, kc, NULL, 0) < 0) abort();
        free(cid);
    }
    free(ids);
    free(out);
    return 0;
}
