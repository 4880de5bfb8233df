// image.h: image files in and out (PNG via libpng, JPEG via libjpeg-turbo),
// and the resize + centre-crop that the official dVAE notebook applies.
// Images in memory are 8-bit RGB, row-major, interleaved: data[(y*w + x)*3 + c].
#pragma once
#include <stdint.h>
#include <stddef.h>

typedef struct {
    int w, h;
    uint8_t *data; // (h, w, 3)
} image_t;

// Loads a PNG or JPEG (chosen by the file's magic bytes, not its name).
// Grayscale becomes RGB, palette is expanded, 16-bit is reduced to 8,
// alpha is composited on white. JPEG EXIF orientation is honoured.
// Returns DALLE_OK, or DALLE_ERR with a message naming PATH and what is wrong
// (missing, empty, truncated, not an image, too large: > 16384 per side).
int image_load(const char *path, image_t *out);
// Same from memory; `name` is used in messages.
int image_load_mem(const void *data, size_t len, const char *name, image_t *out);

// Writes an 8-bit RGB PNG atomically (temp file + rename).
int image_save_png(const char *path, const image_t *img);
// Encodes an 8-bit RGB PNG into *out (dalle_malloc'ed, *len bytes).
int image_encode_png(const image_t *img, uint8_t **out, size_t *len);

// Frees the pixels; safe on a zeroed image_t.
void image_free(image_t *img);

// Allocates an image of w x h (zeroed). DALLE_ERR on out-of-memory.
int image_alloc(image_t *img, int w, int h);

// Resizes so the shorter side is `size` (Lanczos-3, like PIL's LANCZOS),
// then centre-crops to size x size, into `out` (allocated here).
// An image already size x size is copied unchanged.
// The new size is the notebook's (round(r*h), round(r*w)), r = size/min(w,h),
// Python's round (half to even); the crop is torchvision's CenterCrop. Unlike
// the notebook, an image smaller than `size` is upscaled rather than refused.
int image_resize_crop(const image_t *in, int size, image_t *out);

// Resampling filters of image_resize.
enum {
    IMAGE_LANCZOS = 0, // PIL's Image.LANCZOS (Lanczos-3, antialiased), bit-exact
    IMAGE_AREA = 1,    // box average with fractional coverage (TF AREA), rounded
};

// Resizes `in` to w x h with `filter` into `out` (allocated here). Same size:
// a copy. DALLE_ERR on a bad size or out-of-memory.
int image_resize(const image_t *in, int w, int h, int filter, image_t *out);

// Copies the w x h rectangle at (x, y) of `in` into `out` (allocated here).
// DALLE_ERR if the rectangle is empty or not inside the image.
int image_crop(const image_t *in, int x, int y, int w, int h, image_t *out);

// Writes the image as planar floats (3, h, w), each pixel x/255 (torchvision's
// ToTensor, float32 division).
void image_to_chw(const image_t *img, float *out);

// Fills `img` (already allocated, same w and h) from planar floats (3, h, w):
// clamps to [0, 1] (NaN counts as 0) and TRUNCATES x*255, as torchvision's
// ToPILImage does (float32 multiply, then a cast to uint8).
void image_from_chw(image_t *img, const float *in);
