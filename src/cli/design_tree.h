/* The output tree of `pxdiff design` / `pxdiff demo` (design_tree.c): DUMP/<task>/seed_<s>
 * under the run-output protocol (run_output.h), sharded runs' share of it, and DUMP's
 * top-level files. */
#ifndef PX_CLI_DESIGN_TREE_H
#define PX_CLI_DESIGN_TREE_H

#include <stdint.h>

#include "cli/campaign.h"
#include "cli/design_opts.h"
#include "cli/design_run.h"
#include "cli/run_output.h"

typedef struct {
  char dir[4096];    /* DUMP/<task>/seed_<s> */
  char prefix[256];  /* <task>_sample_ */
  run_layout L;
  /* sharded runs: the case's units (chunk c = units[c]) and this shard's number */
  const campaign_unit *units;
  long chunk;
  int shard_k;
} case_layout;

/* --resume, --overwrite or neither. */
static inline run_mode mode_of(const design_opts *o) {
  return o->resume ? RUN_RESUME : o->overwrite ? RUN_OVERWRITE : RUN_FRESH;
}

/* Sample i is this shard's (always, unsharded). */
int owns_sample(const case_layout *cl, long i);
/* The layout of DUMP/<task>/seed_<seed> (units: the case's units in the queue). */
int make_layout(case_layout *cl, const design_opts *o, const char *task, uint64_t seed,
                const campaign_unit *units);

/* DUMP's top-level files, as `pxdesign infer` writes them (after every input was checked). */
int write_top_level(const design_opts *o, const design_job *J);
/* Every (task, seed) directory can take this run: checked before anything is loaded. */
int precheck_outputs(const design_opts *o, const design_job *J, const campaign_queue *q);

#endif
