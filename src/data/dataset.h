// dataset.h: a captioned image dataset in one file (.dset), what `dalle data
// build`, `dalle data shapes|emoji|clipart` write and what `dalle data
// tokenize` and `dalle dvae train` read (mmap). Little-endian:
//
//   header, 64 bytes:
//     0  magic "DALLEDST"         8 bytes
//     8  u32 version (1)
//    12  u32 image_size S          every image is S x S RGB, 8 bits
//    16  u64 n_items
//    24  u64 index_offset          n_items index entries of 32 bytes
//    32  u64 captions_offset       UTF-8 text, captions separated by '\n'
//    40  u64 captions_bytes
//    48  u64 checksum              FNV-1a 64 of every byte from offset 64 to the end
//    56  u64 reserved (0)
//   images at offset 64: n_items x S*S*3 bytes (item i at 64 + i*S*S*3), HWC
//   index entry i: u64 caption_offset (relative to captions_offset),
//                  u32 caption_bytes, u16 n_captions, u8 split, u8 reserved 0,
//                  u64 source_hash (FNV-1a of the source's name: the split is a
//                  function of it, so it is stable across rebuilds),
//                  u64 image_hash (FNV-1a of the pixels: exact duplicates)
//   captions: item i's captions, each ending in '\n', n_captions >= 1 of them.
//
// The reader validates the whole file before use (sizes, offsets, the
// checksum, every caption valid UTF-8 without NUL, counts).
#pragma once
#include <stddef.h>
#include <stdint.h>

enum { DSET_TRAIN = 0, DSET_VAL = 1, DSET_TEST = 2 };

typedef struct dset dset;

// Opens and validates PATH (mmap, read-only). NULL with the error set (naming
// PATH and what is wrong) on any problem.
dset *dset_open(const char *path);
// The same over a copy of data[0..n); NAME is used in messages.
dset *dset_open_mem(const void *data, size_t n, const char *name);
void dset_close(dset *d);
int64_t dset_count(const dset *d);
int dset_image_size(const dset *d);
// Item i's pixels: S*S*3 bytes, HWC RGB (valid while d is open).
const uint8_t *dset_image(const dset *d, int64_t i);
// Item i's split (DSET_TRAIN, DSET_VAL or DSET_TEST) and number of captions.
int dset_split(const dset *d, int64_t i);
int dset_caption_count(const dset *d, int64_t i);
// Caption k of item i: *len bytes at the returned pointer (not NUL-terminated).
const char *dset_caption(const dset *d, int64_t i, int k, size_t *len);

// Writing: items are appended to PATH.tmp.PID; dset_writer_finish writes the
// index, the captions and the checksum, then renames to PATH. Nothing is left
// behind on failure or dset_writer_abort.
typedef struct dset_writer dset_writer;
dset_writer *dset_writer_open(const char *path, int image_size);
// Appends one item: pixels (S*S*3, HWC RGB), captions[0..n) (each valid UTF-8,
// no '\n' or NUL: the caller cleans them), the split, and the name of its
// source (hashed). Returns DALLE_OK, or DALLE_ERR with the error set.
int dset_writer_add(dset_writer *w, const uint8_t *pixels, const char *const *captions, int n, int split,
                    const char *source);
// Whether an item with exactly these pixels was added already.
int dset_writer_has_image(const dset_writer *w, const uint8_t *pixels);
int64_t dset_writer_count(const dset_writer *w);
int dset_writer_finish(dset_writer *w);
void dset_writer_abort(dset_writer *w);

// The split of a source name: FNV-1a 64 of NAME, its value mod 1000 below
// val_permille gives DSET_VAL, else DSET_TRAIN (stable across rebuilds).
int dset_split_of(const char *name, int val_permille);
// FNV-1a 64 of data[0..n).
uint64_t dset_fnv(const void *data, size_t n);
