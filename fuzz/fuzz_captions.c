// fuzz_captions.c: libFuzzer target for the caption file reader of `dalle data
// build` (TSV rows file<TAB>caption, or JSON Lines). Any input is either
// refused with an error naming it, or parsed into images and captions.
#include <stdint.h>
#include <stdlib.h>

#include "core/common.h"
#include "data/build.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t images = 0, captions = 0;
    size_t mem0 = dalle_mem_current();
    int rc = data_captions_check("fuzz.tsv", (const char *)data, size, &images, &captions);
    if (rc == 0 && (images < 0 || captions < 0)) abort();
    if (dalle_mem_current() != mem0) abort(); // nothing leaks, on either path
    // the caption filters on the raw bytes, as a string
    char *s = dalle_malloc(size + 1);
    if (s) {
        for (size_t i = 0; i < size; i++) s[i] = data[i] ? (char)data[i] : ' ';
        s[size] = 0;
        (void)caption_long_enough(s, 2);
        (void)caption_is_english(s, 0.9);
        (void)caption_is_date_boilerplate(s);
        dalle_free(s);
    }
    return 0;
}
