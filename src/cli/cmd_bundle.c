/* pxdiff bundle-info FILE [--checkpoint CKPT]: validate a feature bundle and summarize it
 * (docs/bundle.md). Any problem: one line "pxdiff: FILE: <problem>" on stderr, exit 1. */
#include <stdio.h>
#include <string.h>

#include "cli/options.h"
#include "io/bundle.h"
#include "pxdiff.h"

int cmd_bundle_info(int argc, char **argv);

int cmd_bundle_info(int argc, char **argv) {
  const char *ckpt = NULL, *file = NULL;
  const cli_opt opts[] = {
      {.name = "--checkpoint", .kind = CLI_PATH, .dst = &ckpt, .meta = "CKPT",
       .help = "also check the bundle's widths against this checkpoint"},
  };
  const cli_command c = {.name = "bundle-info", .args = "FILE [--checkpoint CKPT]",
                         .summary = "Validate a feature bundle (docs/bundle.md) and summarize it.",
                         .opts = opts, .n_opts = 1, .pos_name = "FILE", .min_pos = 1,
                         .max_pos = 1};
  int st = cli_parse(&c, argc, argv, &file, NULL);
  if (st != CLI_RUN) return st;
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
    px_dims D;
    int rc = px_model_get_dims(m, &D);
    if (!rc) rc = px_bundle_check_dims(b, &D);
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
