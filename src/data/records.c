// records.c: several shards read as one sequence (records.h).
#include <string.h>

#include "core/common.h"
#include "dalle/dalle.h"
#include "data/records.h"

void records_free(records *r) {
    for (int i = 0; i < r->n; i++) shard_close(r->sh[i]);
    dalle_free(r->sh);
    dalle_free(r->start);
    loader_free(&r->order);
    memset(r, 0, sizeof *r);
}

int records_open(records *r, const char *const *paths, int n, const shard_info *want, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->sh = dalle_calloc((size_t)(n ? n : 1), sizeof *r->sh);
    r->start = dalle_calloc((size_t)n + 1, sizeof *r->start);
    if (!r->sh || !r->start) goto fail;
    for (int i = 0; i < n; i++) {
        if (!(r->sh[i] = shard_open(paths[i]))) goto fail;
        r->n++;
        if (!want) r->info = *shard_get_info(r->sh[0]), want = &r->info;
        if (shard_check_config(r->sh[i], want->text_len, want->grid, want->text_vocab, want->image_vocab)) goto fail;
        r->start[i + 1] = r->start[i] + shard_get_info(r->sh[i])->n_records;
    }
    if (n) r->info = *shard_get_info(r->sh[0]);
    r->total = r->start[n];
    if (r->total && loader_init(&r->order, r->total, seed, 0, 1)) goto fail;
    return DALLE_OK;
fail:
    records_free(r);
    return DALLE_ERR;
}

void records_read(const records *r, int64_t idx, int32_t *text, int32_t *image) {
    DALLE_ASSERT(idx >= 0 && idx < r->total);
    int s = 0;
    while (idx >= r->start[s + 1]) s++;
    shard_read(r->sh[s], idx - r->start[s], text, image);
}

void records_shuffled(records *r, int64_t pos, int32_t *text, int32_t *image) {
    records_read(r, loader_item(&r->order, pos), text, image);
}
