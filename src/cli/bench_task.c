/* `pxdiff bench --task FILE`: the per-design preparation of a real task timed as upstream's is
 * in bench/bench_design_cpu.py (docs/benchmarks.md): the first call, then the median of
 * --reps more calls in the same process (buffers and pages already in place, as for every
 * design of a campaign after its first). Stages: parse (the task file and the structures it
 * names, read again each time: upstream's featurization starts from the files too),
 * featurize, condition embedding, and the diffusion module's design cache. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/bench_task.h"
#include "cli/design_run.h"
#include "cli/options.h"
#include "platform.h"

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return v[n / 2];
}

int bench_task(const char *task, const char *ckpt, px_device_ref dev, int precision, int reps, int dtype) {
  design_job J;
  design_models M;
  int rc = design_job_read(&J, task, NULL);
  if (rc) return cli_fail(px_last_error());
  rc = ckpt ? design_models_load(&M, ckpt, dev, -1, precision) : design_models_synthetic(&M, 1, dev, -1, precision);
  if (rc) {
    design_job_free(&J);
    return cli_fail(px_last_error());
  }
  double *t = calloc((size_t)(reps + 1) * 4, sizeof(double));
  if (!t) rc = cli_fail("out of memory");
  double *tp = t, *tf = t ? t + reps + 1 : NULL, *te = t ? t + 2 * (reps + 1) : NULL;
  double *td = t ? t + 3 * (reps + 1) : NULL;
  int T = 0, N = 0;
  for (int r = 0; r <= reps && !rc; r++) {
    design_job Jr;
    const double t0 = px_time_now();
    if (design_job_read(&Jr, task, NULL)) {
      rc = cli_fail(px_last_error());
      break;
    }
    tp[r] = px_time_now() - t0;
    design_case C;
    if (design_case_make(&C, &Jr, 0, &M, 1, 1, dtype, NULL, 1)) {
      rc = cli_fail(px_last_error());
    } else {
      tf[r] = C.t_featurize, te[r] = C.t_embed, td[r] = C.t_design;
      T = C.in->n_token, N = C.in->n_atom;
    }
    design_case_free(&C);
    design_job_free(&Jr);
  }
  if (!rc) {
    printf("pxdiff bench: task %s (%s), %d tokens, %d atoms, backend %s, %d threads, %s weights, dtype %s\n",
           J.tasks.task[0].name, task, T, N, px_model_backend_name(M.model), px_num_threads(),
           ckpt ? "checkpoint" : "synthetic", dtype == DESIGN_DTYPE_BF16 ? "bf16" : "fp32");
    printf("  %-16s %10s %12s\n", "stage (s)", "first", "median");
    const char *names[4] = {"parse", "featurize", "embed", "design cache"};
    double *v[4] = {tp, tf, te, td};
    for (int k = 0; k < 4; k++) {
      const double first = v[k][0];
      printf("  %-16s %10.4f %12.4f\n", names[k], first, median(v[k] + 1, reps));
    }
  }
  free(t);
  design_models_free(&M);
  design_job_free(&J);
  return rc;
}
