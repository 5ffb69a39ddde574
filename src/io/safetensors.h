/* safetensors: the reader's entry point for tensorfile.c, the metadata it keeps, and the
 * float32 writer. Below the front end (tensorfile.h), beside pickle.h. */
#ifndef PX_IO_SAFETENSORS_H
#define PX_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io/tensor_types.h"

/* A safetensors file's "__metadata__" (string to string, by the format's definition). */
typedef struct {
  int n;
  char **key, **value;
  int malformed;      /* 1: not an object; 2: a value is not a string (bad_key says which) */
  char bad_key[64];
} px_st_meta;

/* Index the safetensors file open on fd (size fsize): every tensor's name, dtype, shape
 * and byte range, validated (header length, JSON, dtypes, offsets in range, no overlap).
 * 0 or a px_status code with a one-line message naming path in err. */
int px_safetensors_index(int fd, uint64_t fsize, const char *path, px_tensor_entry **out,
                         int *nout, px_st_meta *meta, char *err, size_t errlen);
/* Free what px_safetensors_index put in meta. */
void px_st_meta_free(px_st_meta *meta);

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
