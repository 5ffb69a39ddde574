/* Named-tensor files: what the readers make of a checkpoint, before the model sees it.
 *
 * A reader indexes a file (names, dtypes, shapes, strides, byte offsets) without
 * reading tensor data; the model then asks for the tensors it keeps, one at a time,
 * which streams them from the file with pread (peak memory: the weights kept plus
 * one tensor's conversion buffer). Readers know bytes, names and shapes, never the model. */
#ifndef PX_IO_TENSORFILE_H
#define PX_IO_TENSORFILE_H

#include <stddef.h>
#include <stdint.h>

#define PX_MAX_DIMS 8

typedef enum {
  PX_DT_F32 = 0, PX_DT_F16, PX_DT_BF16, PX_DT_F64,
  PX_DT_I64, PX_DT_I32, PX_DT_I16, PX_DT_I8, PX_DT_U8, PX_DT_BOOL
} px_dtype;

size_t px_dtype_size(px_dtype t);
const char *px_dtype_name(px_dtype t);

typedef struct {
  char *name;                 /* full name as stored (prefix not stripped) */
  px_dtype dtype;
  int ndim;
  int64_t shape[PX_MAX_DIMS];
  int64_t stride[PX_MAX_DIMS]; /* in elements; contiguous row-major for safetensors */
  uint64_t offset;             /* absolute byte offset in the file of element [0,...,0] */
  uint64_t span;               /* bytes from offset that the view may touch (bounds-checked) */
} px_tensor_entry;

typedef enum { PX_FILE_PT = 1, PX_FILE_SAFETENSORS = 2 } px_file_kind;

/* A safetensors file's "__metadata__" (string to string, by the format's definition). */
typedef struct {
  int n;
  char **key, **value;
  int malformed;      /* 1: not an object; 2: a value is not a string (bad_key says which) */
  char bad_key[64];
} px_st_meta;

typedef struct {
  px_file_kind kind;
  char *path;
  px_st_meta meta;         /* safetensors only; empty when absent */
  int fd;                  /* kept open for px_tensorfile_read */
  uint64_t file_size;
  int n;
  px_tensor_entry *t;      /* n entries */
} px_tensorfile;

/* Open and index a file; kind is detected from content (zip magic -> .pt, else safetensors).
 * For .pt: the pickle's top-level dict; if it holds key "model" mapping to a dict,
 * that dict's tensors are indexed; otherwise the top-level dict's tensors
 * (a plain state dict). Other keys (optimizer state, counters, nested containers)
 * are parsed and ignored. Returns 0 or a px_status code with a message in err. */
int px_tensorfile_open(const char *path, px_tensorfile *tf, char *err, size_t errlen);
void px_tensorfile_close(px_tensorfile *tf);

/* Find by exact name; NULL if absent. */
const px_tensor_entry *px_tensorfile_find(const px_tensorfile *tf, const char *name);

/* Read one tensor as contiguous float32 into dst (numel floats), converting
 * f16/bf16/f64 and following strides. Errors on integer dtypes and out-of-file spans. */
int px_tensorfile_read_f32(const px_tensorfile *tf, const px_tensor_entry *e, float *dst,
                           char *err, size_t errlen);

int64_t px_entry_numel(const px_tensor_entry *e);

/* Write float32 tensors as safetensors (names in the order given; header JSON,
 * 8-byte aligned data). Written to path.tmp then renamed. */
typedef struct {
  const char *name;
  int ndim;
  const int64_t *shape;
  const float *data;
} px_st_write_item;
int px_safetensors_write(const char *path, const px_st_write_item *items, int n, char *err,
                         size_t errlen);

#endif
