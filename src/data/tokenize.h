// tokenize.h: `dalle data tokenize`: a dataset (.dset) becomes pre-tokenized
// shards (shard.h) for the prior: every (image, caption) pair of the chosen
// split is one record, the caption in DALL-E's text layout (bpe_layout) and
// the image as the dVAE's argmax codes.
#pragma once
#include <stdint.h>

typedef struct {
    const char *dataset;   // .dset file
    const char *dvae;      // dVAE model file
    const char *tokenizer; // tokenizer file
    const char *out;       // shard path; with records_per_shard, NAME-00000.dshard, ...
    int text_len;          // L (256)
    int split;             // DSET_TRAIN, DSET_VAL, DSET_TEST, or -1 for all
    int64_t records_per_shard; // 0: one shard
    int augment;           // the paper's Listing 2 (dataset images larger than the dVAE's input)
    float dropout;         // BPE dropout when tokenizing (0: off)
    uint64_t seed;         // augmentation and dropout draws: a function of (seed, record)
    int batch;             // images per dVAE call
} data_tokenize_opts;

data_tokenize_opts data_tokenize_defaults(void);
// Writes the shards; returns the number of records, or -1 with the error set.
int64_t data_tokenize(const data_tokenize_opts *o);
