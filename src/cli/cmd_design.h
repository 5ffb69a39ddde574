/* `pxdiff design`, `pxdiff featurize` and the design-path `pxdiff demo` (cmd_design.c,
 * cmd_featurize.c), and the writer of one designed sample (design_output.c). */
#ifndef PX_CLI_CMD_DESIGN_H
#define PX_CLI_CMD_DESIGN_H

#include "featurize/featurize.h"

int cmd_design(int argc, char **argv);
int cmd_design_demo(int argc, char **argv);
int cmd_featurize(int argc, char **argv);

/* One sample as `pxdesign infer` writes it (io/structure.h, px_pxd_cif), followed by the
 * line "# <trailer>" (the run-output protocol's proof of completion; a CIF comment), written
 * atomically to path. xyz: [N, 3]. */
int design_write_cif(const char *path, const px_design_input *in, const float *xyz, const char *task_name,
                     long sample, const char *trailer);

#endif
