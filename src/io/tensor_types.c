/* Dtype sizes and names, element counts (tensor_types.h). */
#include "io/tensor_types.h"

size_t px_dtype_size(px_dtype t) {
  switch (t) {
  case PX_DT_F32: case PX_DT_I32: return 4;
  case PX_DT_F16: case PX_DT_BF16: case PX_DT_I16: return 2;
  case PX_DT_F64: case PX_DT_I64: return 8;
  case PX_DT_I8: case PX_DT_U8: case PX_DT_BOOL: return 1;
  }
  return 1;
}

const char *px_dtype_name(px_dtype t) {
  switch (t) {
  case PX_DT_F32: return "F32";
  case PX_DT_F16: return "F16";
  case PX_DT_BF16: return "BF16";
  case PX_DT_F64: return "F64";
  case PX_DT_I64: return "I64";
  case PX_DT_I32: return "I32";
  case PX_DT_I16: return "I16";
  case PX_DT_I8: return "I8";
  case PX_DT_U8: return "U8";
  case PX_DT_BOOL: return "BOOL";
  }
  return "?";
}

int64_t px_entry_numel(const px_tensor_entry *e) {
  int64_t n = 1;
  if (e->ndim < 0 || e->ndim > PX_MAX_DIMS) return -1;
  for (int d = 0; d < e->ndim; d++)
    if (e->shape[d] < 0) return -1;
  for (int d = 0; d < e->ndim; d++) {
    if (e->shape[d] == 0) return 0;
    if (e->shape[d] > ((int64_t)1 << 62) / n) return -1;
    n *= e->shape[d];
  }
  return n;
}
