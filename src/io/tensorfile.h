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

#include "io/safetensors.h" /* px_st_meta, and the safetensors writer for callers */
#include "io/tensor_types.h"

typedef enum { PX_FILE_PT = 1, PX_FILE_SAFETENSORS = 2 } px_file_kind;

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

#endif
