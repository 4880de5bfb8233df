// loader.h: the order in which a trainer visits a dataset's items. Epoch e
// visits all items in a permutation drawn from Philox (seed, e) (Fisher-Yates);
// with world > 1 ranks, rank r takes the positions r, r + world, ... of that
// order, so the ranks see disjoint items of each epoch. A trainer's cursor
// is its sample position pos (saved in its checkpoints): the item of a
// position never depends on anything else, so a resumed run continues on the
// same next example.
#pragma once
#include <stdint.h>

typedef struct {
    int64_t total;      // items
    uint64_t seed;
    int rank, world;
    int64_t *perm;      // (total) the current epoch's order
    int64_t perm_epoch;
} loader;

// DALLE_ERR (error set) when total < 1 or rank is not in [0, world).
int loader_init(loader *l, int64_t total, uint64_t seed, int rank, int world);
// The item at this rank's sample position pos (0, 1, 2, ...).
int64_t loader_item(loader *l, int64_t pos);
void loader_free(loader *l);
