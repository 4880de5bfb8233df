// fuzz_safetensors.c: libFuzzer target for the safetensors reader. Any input
// must either be refused with an error or open into tensors whose every byte
// can be read back as float32 (under ASan/UBSan, with no leak).
#include <stdint.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f = st_open_mem(data, size, "fuzz.safetensors");
    if (!f) return 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (st_find(f, t->name) != t) abort(); // names are unique
        // numel fits the data region, so this allocation is bounded by the input
        float *out = dalle_malloc((size_t)t->numel * sizeof(float) + 1);
        if (!out) continue;
        if (st_read_f32(f, t->name, out, t->ndim, t->shape) != DALLE_OK) abort();
        dalle_free(out);
    }
    st_close(f);
    return 0;
}
