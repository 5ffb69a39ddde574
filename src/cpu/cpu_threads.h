/* The thread count of a CPU context's parallel regions: every `omp parallel` of the CPU
 * backend names px_cpu_threads(b) in its num_threads clause, b the context the op was called
 * on (helpers without one take it, or its count, as a parameter). The context's own count
 * (backend.h px_backend.threads, px_backend_set_threads), else the process's (px_num_threads).
 * No kernel reduces across threads, so results do not depend on it. */
#ifndef PX_CPU_THREADS_H
#define PX_CPU_THREADS_H

#include "backend.h"
#include "pxdiff.h"

static inline int px_cpu_threads(const px_backend *b) { return b && b->threads > 0 ? b->threads : px_num_threads(); }

#endif
