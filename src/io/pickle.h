/* Restricted unpickler for torch.save's data.pkl: it builds a small object graph
 * (dicts, lists, tuples, scalars, strings, tensors over persistent storages) with
 * every size bounded, refuses globals outside a short whitelist, never executes
 * anything, and flattens the result into tensor entries. */
#ifndef PX_IO_PICKLE_H
#define PX_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "io/tensor_types.h"

/* Where the bytes of storage `key` lie in the file: absolute offset and byte count.
 * Returns 0 or a px_status code with a message in err. */
typedef int (*px_pickle_storage_fn)(void *ctx, const char *key, uint64_t *offset,
                                    uint64_t *nbytes, char *err, size_t errlen);

/* Parse the pickle in buf[0..n) and index its tensors: the top-level object must be a
 * dict; if it maps "model" to a dict, that dict's tensor values are indexed, else the
 * top-level dict's. Non-tensor values are parsed and ignored. `where` names the pickle
 * in messages (e.g. "model.pt: data.pkl"). On success *out holds *nout entries
 * (names malloc'ed; free each name and the array). */
int px_pickle_index(const uint8_t *buf, size_t n, const char *where, px_pickle_storage_fn fn,
                    void *ctx, px_tensor_entry **out, int *nout, char *err, size_t errlen);

#endif
