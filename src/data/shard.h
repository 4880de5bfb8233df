// shard.h: the pre-tokenized training shard, what the prior's trainer reads.
// `dalle shard pack` makes one from the text ids of `dalle bpe encode --layout`
// and the image codes of `dalle dvae encode`; see docs/data.md.
//
// File format (version 2), every integer little-endian:
//
//   offset size  field
//        0    8  magic "DALLESHD"
//        8    4  u32 version = 2
//       12    4  u32 text_len L         text positions per record
//       16    4  u32 n_image N          image codes per record, = G*G
//       20    4  u32 grid G
//       24    4  u32 text_vocab Vt      the BPE vocabulary; text ids are < Vt + L
//                                       (BPE ids < Vt, padding ids Vt + i, docs/prior.md)
//       28    4  u32 image_vocab Vi     image codes are < Vi
//       32    4  u32 id_bytes           2 if Vt + L <= 65535 and Vi <= 65535, else 4
//       36    4  u32 reserved = 0
//       40    8  u64 n_records
//       48    8  u64 checksum           FNV-1a 64 of every byte after the header
//       56    8  reserved, all zero
//       64       n_records records, each L text ids then N image codes (raster
//                order), every one an unsigned id_bytes-wide integer
//
// so a file is exactly 64 + n_records * (L + N) * id_bytes bytes. L, N, G, Vt,
// Vi and n_records are positive, Vt + L and Vi at most 2^31 - 1 (ids are read
// into int32), and id_bytes is the one value the rule above gives: a file has
// a single valid encoding. Records start at 64 + i * (L + N) * id_bytes, so an
// id is always aligned to its width.
//
// Sizes: L text positions, N = G*G image positions, Vt/Vi vocabularies.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define SHARD_MAGIC "DALLESHD"
#define SHARD_VERSION 2
#define SHARD_HEADER_BYTES 64

// The header of a shard (and what shard_write is told to write).
typedef struct {
    int text_len;      // L
    int n_image;       // N = grid * grid
    int grid;          // G
    int text_vocab;    // Vt: text ids are < Vt + L
    int image_vocab;   // Vi: image codes are < Vi
    int64_t n_records;
} shard_info;

// An open shard (opaque): the file's bytes, mapped or copied, and its header.
typedef struct shard shard;

// Maps PATH read-only and validates all of it before returning: magic,
// version, every header field, the exact file size and every id of every
// record. NULL with the error set (naming PATH and the field, or the record
// and position) on any problem. Free with shard_close.
shard *shard_open(const char *path);
// Same, from a memory buffer, which is copied (the caller keeps its own);
// `name` is used in messages.
shard *shard_open_mem(const void *data, size_t n, const char *name);
// Unmaps or frees everything; NULL is a no-op.
void shard_close(shard *s);

// The header. The pointer lives as long as s.
const shard_info *shard_get_info(const shard *s);
// The path (or name) the shard was opened with.
const char *shard_path(const shard *s);
// Bytes per stored id: 2 or 4.
int shard_id_bytes(const shard *s);

// Copies record i (0 <= i < n_records, asserted) into text (L) and image (N).
void shard_read(const shard *s, int64_t i, int32_t *text, int32_t *image);

// DALLE_OK if the shard was made for a model with these sizes; otherwise
// DALLE_ERR with a message naming the file and the first field that differs
// (checked in the order text_len, grid, text_vocab, image_vocab).
int shard_check_config(const shard *s, int text_len, int grid, int text_vocab, int image_vocab);

// Writes n records, text (n, L) and image (n, N), to PATH atomically (PATH.tmp.PID
// streamed, then renamed; nothing is left behind on failure). info's sizes
// follow the rules above (its n_records is ignored: n is written; n >= 1);
// every id is checked before the file is created. The id width is picked by
// the rule above. DALLE_OK, or DALLE_ERR naming PATH (and the record and
// position of a bad id).
int shard_write(const char *path, const shard_info *info, const int32_t *text, const int32_t *image,
                int64_t n);
