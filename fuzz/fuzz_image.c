// fuzz_image.c: libFuzzer target for the image loader. Any byte string must
// either load (and then survive the notebook's resize + crop) or fail with a
// message, without crashes, leaks, undefined behaviour or huge allocations.
//   make fuzz && build-fuzz/fuzz_image -max_len=65536 CORPUS_DIR fuzz/corpus/fuzz_image
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image_t img, out;
    if (image_load_mem(data, size, "fuzz", &img) != DALLE_OK) return 0;
    DALLE_ASSERT(img.w > 0 && img.h > 0 && img.data);
    if (image_resize_crop(&img, 32, &out) == DALLE_OK) {
        DALLE_ASSERT(out.w == 32 && out.h == 32);
        image_free(&out);
    }
    image_free(&img);
    return 0;
}
