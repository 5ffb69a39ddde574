/* `pxdiff bench --task FILE` (bench_task.c). */
#ifndef PX_CLI_BENCH_TASK_H
#define PX_CLI_BENCH_TASK_H

#include "pxdiff.h"

/* Times featurize, condition embedding and design cache of the file's first task: the first
 * call and the median of reps more; dtype as design_case_make. Returns the exit status. */
int bench_task(const char *task, const char *ckpt, px_device_ref dev, int precision, int reps, int dtype);

#endif
