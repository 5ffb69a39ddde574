/* pxdiff bundle-info FILE [--checkpoint CKPT]: validate a feature bundle and summarize it
 * (docs/bundle.md). Any problem: one line "pxdiff: FILE: <problem>" on stderr, exit 1. */
#include <stdio.h>
#include <string.h>

#include "io/bundle.h"
#include "pxdiff.h"

int cmd_bundle_info(int argc, char **argv);

int cmd_bundle_info(int argc, char **argv) {
  const char *file = NULL, *ckpt = NULL;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--checkpoint")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "pxdiff: bundle-info: --checkpoint needs a value\n");
        return 2;
      }
      ckpt = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "pxdiff: bundle-info: unknown option '%s'\n", argv[i]);
      return 2;
    } else if (file) {
      fprintf(stderr, "pxdiff: bundle-info: one bundle at a time (got '%s' and '%s')\n", file,
              argv[i]);
      return 2;
    } else {
      file = argv[i];
    }
  }
  if (!file) {
    fprintf(stderr, "pxdiff: bundle-info: usage: pxdiff bundle-info FILE [--checkpoint CKPT]\n");
    return 2;
  }
  px_bundle *b = NULL;
  if (px_bundle_open(file, &b) != 0) {
    fprintf(stderr, "pxdiff: %s\n", px_last_error());
    return 1;
  }
  if (ckpt) {
    px_model *m = NULL;
    if (px_model_load(ckpt, &m) != 0) {
      fprintf(stderr, "pxdiff: %s\n", px_last_error());
      px_bundle_free(b);
      return 1;
    }
    int rc = px_bundle_check_model(b, m);
    px_model_free(m);
    if (rc) {
      fprintf(stderr, "pxdiff: %s\n", px_last_error());
      px_bundle_free(b);
      return 1;
    }
  }
  px_bundle_summary(b, stdout);
  if (ckpt) printf("checkpoint: %s: widths agree\n", ckpt);
  px_bundle_free(b);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "pxdiff: bundle-info: cannot write the summary\n");
    return 1;
  }
  return 0;
}
