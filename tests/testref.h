// testref.h: reading the reference tensors that tests/ref/*.py write into a
// safetensors file, for the tests that compare against them.
#pragma once
#include <stdio.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/safetensors.h"

// Tensor NAME of f as float32 (malloc'd, the caller frees), its size in *n;
// NULL, with a line on stderr, when f has no such tensor.
static inline float *ref_tensor(const st_file *f, const char *name, int64_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t) {
        fprintf(stderr, "  reference tensor %s missing\n", name);
        return NULL;
    }
    float *buf = malloc(sizeof(float) * (size_t)t->numel);
    DALLE_ASSERT(buf && st_read_f32(f, name, buf, t->ndim, t->shape) == DALLE_OK);
    *n = t->numel;
    return buf;
}
