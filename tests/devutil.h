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
