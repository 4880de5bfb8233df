// fuzz_shard.c: libFuzzer target for the training shard reader. Any input
// must either be refused with an error naming it, or open into a shard whose
// every record reads back with ids in range, passes its own config check, and
// writes back to exactly the input bytes (one valid encoding per shard); all
// under ASan/UBSan with no leak.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "data/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    shard *s = shard_open_mem(data, size, "fuzz.dshard");
    if (!s) {
        if (strncmp(dalle_last_error(), "fuzz.dshard: ", 13)) abort();
        return 0;
    }
    const shard_info *in = shard_get_info(s);
    const int64_t L = in->text_len, N = in->n_image, n = in->n_records;
    // the file holds every id, so these allocations are bounded by the input
    int32_t *text = dalle_malloc(sizeof(int32_t) * (size_t)(n * L));
    int32_t *image = dalle_malloc(sizeof(int32_t) * (size_t)(n * N));
    if (!text || !image) abort();
    for (int64_t r = 0; r < n; r++) {
        shard_read(s, r, text + r * L, image + r * N);
        for (int64_t k = 0; k < L; k++)
            if (text[r * L + k] < 0 || text[r * L + k] >= in->text_vocab + L) abort();
        for (int64_t k = 0; k < N; k++)
            if (image[r * N + k] < 0 || image[r * N + k] >= in->image_vocab) abort();
    }
    if (shard_check_config(s, in->text_len, in->grid, in->text_vocab, in->image_vocab) != DALLE_OK) abort();
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_shard_%ld.dshard", (long)getpid());
    if (shard_write(path, in, text, image, n) != DALLE_OK) abort();
    size_t len;
    char *back = dalle_read_file(path, &len);
    if (!back || len != size || memcmp(back, data, size)) abort();
    remove(path);
    dalle_free(back);
    dalle_free(text);
    dalle_free(image);
    shard_close(s);
    return 0;
}
