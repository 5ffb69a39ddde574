/* The `sample` and `demo` commands (cmd_sample.c) and the built-in demo problem
 * (demo_design.c). */
#ifndef PX_CLI_CMD_SAMPLE_H
#define PX_CLI_CMD_SAMPLE_H

#include "pxdiff.h"

int cmd_sample(int argc, char **argv);
int cmd_demo(int argc, char **argv);
/* The model's precision for messages: "tf32", or at fp16 / bf16 "fp16, 16-bit GEMM inputs
 * in 24/24 token blocks" (blocks that fp16's range cannot hold run TF32). Static buffer. */
const char *cmd_precision_label(const px_model *m);

/* The demo's design problem: a 60-residue target (chain A) and a 20-residue designed
 * binder (chain B), atoms N, CA, C, O, CB per residue with an idealized reference
 * conformer; s_inputs and z_trunk are deterministic synthetic values of the model's
 * widths (residue-type rows; a sequence-separation template for target pairs). */
#define PX_DEMO_TARGET 60
#define PX_DEMO_BINDER 20
#define PX_DEMO_ATOMS_PER_RES 5

typedef struct {
  px_features f;
  int n_target, n_binder;
  /* per atom, for the structure writers */
  const char **atom_name, **element, **res_name, **chain_id;
  int *res_seq;
  float *designed; /* 1 for binder atoms, 0 for target atoms */
  void *mem[24];
} px_demo_design;

int px_demo_design_make(const px_dims *D, px_demo_design *out);
void px_demo_design_free(px_demo_design *d);

#endif
