// fuzz_bpe_json.c: libFuzzer target for the tokenizer loader (tokenizer.json,
// CLIP's merges file, gzipped or not). Any input must either be refused with
// an error or load into a tokenizer that encodes text and, for "dalle",
// decodes it back to the normalised text exactly (under ASan/UBSan, no leak).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bpe_tokenizer *t = bpe_load_mem("fuzz.json", data, size);
    if (!t) return 0;
    static const char text[] = "The CAT sat on the mat &amp; \xce\xa3 caf\xc3\xa9 \xff 123 it's";
    int32_t ids[256];
    char out[512];
    int64_t k = bpe_encode(t, text, sizeof text - 1, NULL, ids, 256);
    if (k < 0 || k > 256) abort();
    int64_t m = bpe_decode(t, ids, k, out, sizeof out);
    if (m < 0) abort();
    if (t->kind == BPE_DALLE && (m != (int64_t)t->norm.n || memcmp(out, t->norm.p, (size_t)m))) abort();
    bpe_free(t);
    return 0;
}
