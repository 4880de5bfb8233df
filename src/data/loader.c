// loader.c: deterministic, resumable, rank-sharded visiting order (loader.h).
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "dalle/dalle.h"
#include "data/loader.h"

int loader_init(loader *l, int64_t total, uint64_t seed, int rank, int world) {
    memset(l, 0, sizeof *l);
    if (total < 1) return dalle_seterr("loader: no items");
    if (world < 1 || rank < 0 || rank >= world) return dalle_seterr("loader: rank %d of %d", rank, world);
    l->total = total;
    l->seed = seed;
    l->rank = rank;
    l->world = world;
    l->perm_epoch = -1;
    l->perm = dalle_malloc(sizeof(int64_t) * (size_t)total);
    return l->perm ? DALLE_OK : DALLE_ERR;
}

int64_t loader_item(loader *l, int64_t pos) {
    int64_t g = pos * l->world + l->rank, epoch = g / l->total;
    if (epoch != l->perm_epoch) {
        for (int64_t i = 0; i < l->total; i++) l->perm[i] = i;
        for (int64_t i = l->total - 1; i > 0; i--) {
            uint32_t w[4];
            philox4x32(l->seed, (uint64_t)epoch, (uint64_t)i, w);
            int64_t j = (int64_t)(((uint64_t)w[0] << 32 | w[1]) % (uint64_t)(i + 1));
            int64_t t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
        l->perm_epoch = epoch;
    }
    return l->perm[g % l->total];
}

void loader_free(loader *l) {
    dalle_free(l->perm);
    memset(l, 0, sizeof *l);
}
