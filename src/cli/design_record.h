/* The record of one (task, seed) case of `pxdiff design` / `pxdiff demo` (design_record.c): the
 * run's fingerprint (what --resume must find unchanged: run_output.h) and summary.json. */
#ifndef PX_CLI_DESIGN_RECORD_H
#define PX_CLI_DESIGN_RECORD_H

#include <stdint.h>

#include "cli/design_opts.h"
#include "cli/design_run.h"
#include "cli/run_output.h"

/* The fingerprint of a case: the settings, features, model, device kind and precision that
 * decide its designs (and on a GPU the chunk). */
uint64_t design_case_fingerprint(const design_opts *o, const design_models *M, const px_model *eng,
                                 const design_case *C, uint64_t seed, const char *model_desc);
/* summary.json of a completed case (malloc'd; NULL with the reason set when out of memory).
 * extra: further top-level lines (the contexts of a several-context run), or NULL; letter:
 * the PDB chain ids with --pdb, else NULL. */
char *design_case_summary(const design_opts *o, const design_models *M, const px_model *eng, int n_ctx,
                          const design_case *C, const run_out *r, const px_task *task, uint64_t seed,
                          const char *model_desc, double t_sampling, int sampled, int computed,
                          const char (*letter)[2], const char *extra);

#endif
