/* Shared body of the libFuzzer harnesses: write the input to a temp file, open it with
 * px_tensorfile_open and read every floating-point tensor. */
#ifndef PX_FUZZ_COMMON_H
#define PX_FUZZ_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/tensorfile.h"

static char px_fuzz_path[128];
static void px_fuzz_cleanup(void) { remove(px_fuzz_path); }

static int px_fuzz_one(const char *tag, const uint8_t *data, size_t size) {
  char *path = px_fuzz_path;
  if (!path[0]) {
    snprintf(path, sizeof px_fuzz_path, "/tmp/pxdiff_fuzz_%s_%ld.bin", tag, (long)getpid());
    atexit(px_fuzz_cleanup);
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
  px_tensorfile tf;
  char err[512];
  err[0] = 0;
  if (px_tensorfile_open(path, &tf, err, sizeof err) != 0) {
    if (!err[0] || strchr(err, '\n')) { /* one non-empty line, always */
      fprintf(stderr, "bad message: '%s'\n", err);
      abort();
    }
    return 0;
  }
  for (int i = 0; i < tf.n; i++) {
    const px_tensor_entry *e = &tf.t[i];
    if (!e->name) abort();
    if (px_tensorfile_find(&tf, e->name) == NULL) abort();
    int64_t n = px_entry_numel(e);
    if (n < 0) abort();
    if (n > (1 << 22)) continue; /* stride-0 views may claim sizes beyond the file */
    float *dst = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!dst) continue;
    px_tensorfile_read_f32(&tf, e, dst, err, sizeof err);
    free(dst);
  }
  px_tensorfile_close(&tf);
  return 0;
}

#endif
