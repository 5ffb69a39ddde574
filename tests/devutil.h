/* Helpers of the tests that drive a backend's device memory directly (the CUDA kernel tests). */
#pragma once

#include <stdint.h>
#include <stdlib.h>

#include "backend.h"

/* n 16-bit values on g, every one poisoned (0xFFFF: NaN as fp16 and as bf16): an output
 * buffer before a run, so that a value the run does not write fails the comparison. */
static inline uint16_t *tu_dev_poison16(px_backend *g, size_t n) {
  uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) h[i] = 0xFFFFu;
  uint16_t *d = g->alloc(g, sizeof(uint16_t) * (n ? n : 1));
  g->upload(g, d, h, sizeof(uint16_t) * n);
  free(h);
  return d;
}

/* The first byte at which `bytes` bytes of a (da on context a) and b (db on context b; may
 * be a) differ; `bytes` when they are the same and neither context has an error. */
static inline size_t tu_dev_first_difference(px_backend *a, const void *da, px_backend *b, const void *db,
                                             size_t bytes) {
  unsigned char *x = malloc(bytes + 1), *y = malloc(bytes + 1);
  a->download(a, x, da, bytes);
  b->download(b, y, db, bytes);
  size_t i = 0;
  while (i < bytes && x[i] == y[i]) i++;
  if (i == bytes && (a->status(a) != 0 || b->status(b) != 0)) i = 0;
  free(x);
  free(y);
  return i;
}
