/* The safetensors reader's entry point for tensorfile.c (internal to src/io). */
#ifndef PX_IO_SAFETENSORS_H
#define PX_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io/tensorfile.h"

/* Index the safetensors file open on fd (size fsize): every tensor's name, dtype, shape
 * and byte range, validated (header length, JSON, dtypes, offsets in range, no overlap).
 * 0 or a px_status code with a one-line message naming path in err. */
int px_safetensors_index(int fd, uint64_t fsize, const char *path, px_tensor_entry **out,
                         int *nout, px_st_meta *meta, char *err, size_t errlen);
/* Free what px_safetensors_index put in meta. */
void px_st_meta_free(px_st_meta *meta);

#endif
