// fuzz_dset.c: libFuzzer target for the dataset reader (data/dataset.h). Any
// input must either be refused with an error or open into items whose every
// pixel and caption can be read.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dset *d = dset_open_mem(data, size, "fuzz.dset");
    if (!d) return 0;
    int S = dset_image_size(d);
    uint64_t sum = 0;
    for (int64_t i = 0; i < dset_count(d); i++) {
        const uint8_t *p = dset_image(d, i);
        for (int64_t k = 0; k < (int64_t)S * S * 3; k++) sum += p[k];
        if (dset_split(d, i) < 0 || dset_split(d, i) > 2) abort();
        for (int k = 0; k < dset_caption_count(d, i); k++) {
            size_t len;
            const char *c = dset_caption(d, i, k, &len);
            if (!len || memchr(c, '\n', len)) abort();
        }
    }
    (void)sum;
    dset_close(d);
    return 0;
}
