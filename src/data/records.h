// records.h: the records of several training shards (data/shard.h) read as
// one sequence, and visited in the shuffled order of data/loader.h. What the
// trainers that read shards share (the prior's, src/prior/train.c, and the
// reranker's, src/clip/train.c).
#pragma once
#include <stdint.h>

#include "data/loader.h"
#include "data/shard.h"

typedef struct {
    shard **sh;
    int n;
    int64_t *start;  // (n+1) cumulative record counts
    int64_t total;
    shard_info info; // the sizes every shard has (n_records: the first shard's)
    loader order;    // the visiting order
} records;

// Opens the n shards PATHS, all of the sizes of want (text_len, grid,
// text_vocab, image_vocab), or with want NULL of the first shard's, and a
// visiting order drawn from seed. DALLE_ERR with a message naming the file
// and the field that differs (r is then empty).
int records_open(records *r, const char *const *paths, int n, const shard_info *want, uint64_t seed);
void records_free(records *r);
// Record idx (0 <= idx < total, in shard order) into text (L) and image (N).
void records_read(const records *r, int64_t idx, int32_t *text, int32_t *image);
// The record at sample position pos of a run (loader_item of the order).
void records_shuffled(records *r, int64_t pos, int32_t *text, int32_t *image);
