/* The vocabulary every checkpoint reader shares: dtypes and one tensor's index entry
 * (name, dtype, shape, strides, byte range). Kept apart from the front end
 * (tensorfile.h) so that the readers (pickle.c, safetensors.c) and the front end that
 * dispatches to them each include only what lies below them: no include circle. */
#ifndef PX_IO_TENSOR_TYPES_H
#define PX_IO_TENSOR_TYPES_H

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

/* Elements of e; -1 for shapes no reader produces (negative sizes, more than 2^62). */
int64_t px_entry_numel(const px_tensor_entry *e);

#endif
