// safetensors.h: the checkpoint format of the whole project.
// File layout: u64 little-endian header length N, then N bytes of JSON
// {"NAME": {"dtype": "F32"|"F16"|"BF16", "shape": [..], "data_offsets": [a, b]},
//  "__metadata__": {"key": "string", ...}}, then the raw little-endian data;
// offsets are relative to the first byte after the header.
// The reader validates every offset, size and shape before any read and names
// the file and the tensor in each error.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/half.h" // the F16 and BF16 conversions

typedef enum { ST_F32 = 0, ST_F16, ST_BF16 } st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; // points into the file's buffer; nbytes = numel * dtype size
    size_t nbytes;
} st_tensor;

// Made only by st_open/st_open_mem (st_find relies on a private index kept
// beside it); read the fields, never build or change one by hand.
typedef struct {
    char *path;          // for messages
    uint8_t *buf;        // whole file
    size_t len;
    st_tensor *tensors;  // (n_tensors,)
    int n_tensors;
    char **meta_keys;    // (n_meta,)
    char **meta_vals;    // (n_meta,)
    int n_meta;
} st_file;

// Bytes per element of a dtype.
size_t st_dtype_size(st_dtype dt);
// "F32", "F16", "BF16".
const char *st_dtype_name(st_dtype dt);
// The dtype a command line names ("f32", "f16", "bf16"); DALLE_ERR for anything else.
int st_dtype_parse(const char *name, st_dtype *dt);

// Opens and fully validates PATH. NULL with the error set (naming PATH and
// the tensor or field) on any problem. Free with st_close.
st_file *st_open(const char *path);
// Same, from a memory buffer (copied); `name` is used in messages.
st_file *st_open_mem(const void *data, size_t len, const char *name);
// Frees everything; NULL is a no-op.
void st_close(st_file *f);

// The tensor called NAME, or NULL (no error set).
const st_tensor *st_find(const st_file *f, const char *name);
// The metadata value for KEY, or NULL.
const char *st_meta(const st_file *f, const char *key);
// Whether every tensor of f is one of a model's: PREFIX + NAME for one of the
// n prefixes and a NAME that known(ctx, NAME) accepts. DALLE_OK, else
// DALLE_ERR with "PATH: unexpected tensor 'T' (WHY)" for the first that is not.
int st_check_names(const st_file *f, const char *const *prefixes, int n, int (*known)(const void *ctx, const char *name),
                   const void *ctx, const char *why);
// The metadata value for KEY as an integer into *out. DALLE_ERR naming the
// file and the key when it is missing or not an integer.
int st_meta_int(const st_file *f, const char *key, long long *out);

// Copies tensor NAME into `out` as float32, converting from F16/BF16.
// Errors (naming file and tensor) if it is missing or its shape differs from
// shape[0..ndim). Returns DALLE_OK / DALLE_ERR.
int st_read_f32(const st_file *f, const char *name, float *out, int ndim, const int64_t *shape);

// Writer: collects tensors (pointers are borrowed until st_writer_save) and
// metadata, then writes the file atomically (temp file + rename).
typedef struct st_writer st_writer;
// An empty writer, or NULL (error set) on out-of-memory.
st_writer *st_writer_new(void);
// Adds float32 data stored as `dtype` (converted on save). The name (UTF-8,
// non-empty, not "__metadata__") is copied and must be new. Returns DALLE_OK/ERR.
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, const float *data, int ndim,
                  const int64_t *shape);
// Sets metadata KEY to VALUE (UTF-8, copied); each key once. DALLE_OK/ERR.
int st_writer_meta(st_writer *w, const char *key, const char *value);
// Writes PATH: "__metadata__" first, tensors in the order added, the header
// padded with spaces so that the data starts 8-byte aligned. DALLE_OK/ERR.
int st_writer_save(st_writer *w, const char *path);
// Frees the writer (not the borrowed data); NULL is a no-op.
void st_writer_free(st_writer *w);

