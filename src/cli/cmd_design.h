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

/* --pdb: one-character chain ids for the design's chains (letter[c] for chain c; the
 * rule in design_output.c); refused above 62 chains. */
int design_pdb_chains(const px_design_input *in, int binder_first, char (*letter)[2]);
/* The sample as a PDB file (binder residues GLY; REMARK 1 lines name the task, the sample
 * and the chain-id mapping; the binder's chain first with binder_first). A value that does
 * not fit PDB's columns is refused with one line naming the design; nothing is written. */
int design_write_pdb(const char *path, const px_design_input *in, const float *xyz, const char *task_name,
                     long sample, int binder_first, const char (*letter)[2]);

#endif
