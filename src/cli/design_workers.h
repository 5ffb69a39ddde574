/* The workers of `pxdiff design` / `pxdiff demo` and the run loop (design_workers.c): the
 * queue's units computed on one worker per backend context, each case's files written. */
#ifndef PX_CLI_DESIGN_WORKERS_H
#define PX_CLI_DESIGN_WORKERS_H

#include <stddef.h>

#include "cli/campaign.h"
#include "cli/design_opts.h"
#include "cli/design_run.h"
#include "cli/progress.h"
#include "platform.h"

typedef struct campaign_io campaign_io; /* the campaign side of a run (design_workers.c) */
typedef struct case_run case_run;       /* one open (task, seed) case (design_workers.c) */

typedef struct work work;

typedef struct {
  work *W;
  int id;
  px_model *model;   /* the run's model (one worker) or a handle of it on its own context */
  char name[48];     /* "cuda:0", "cuda:0 (context 2)", "cpu" */
  px_design *design; /* the design cache of case case_id, on this worker's context */
  long case_id;
  float *x;
  size_t x_floats;
  int cur;                 /* samples in the unit being computed */
  _Atomic double frac;     /* of those, the fraction done (progress) */
  long fail_after;         /* PXDIFF_TEST_FAIL_WORKER: its context fails at its unit fail_after + 1 */
  int dead;
  px_thread *thread;
} worker;

struct work {
  const design_opts *o;
  const design_job *J;
  const design_models *M;
  const px_conformers *conf;
  const char *model_desc;
  const campaign_queue *q;
  long per;
  campaign_io *io;
  px_mutex *mu; /* everything below and the shared case state */
  long cursor;
  long *retry; /* units handed back by a failed worker */
  long n_retry, cap_retry;
  case_run **cases; /* [tasks * seeds], open cases */
  int rc;           /* 0, 1 (failed), 130 (interrupted): stops every worker */
  _Atomic int stop;
  int n_alive, busy;
  int written;
  cli_progress pr;
  worker *w;
  int n_w;
};

/* The workers: one on the main thread with the run's model, or one thread per context each
 * with a handle of the model on that context (px_model_share, px_model_set_device). */
int workers_make(work *W, const design_opts *o, const design_models *M);
void workers_free(work *W, const design_models *M);
/* Runs the queue q on W's workers (made by workers_make): DUMP's top-level files, the
 * campaign's status and designs.csv, every case of this shard. 0, 1 (failed) or 130
 * (interrupted). */
int run_design(design_opts *o, const design_job *J, const design_models *M, const px_conformers *conf,
               const char *model_desc, double t_start, const campaign_queue *q, work *Wp);

#endif
