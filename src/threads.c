/* The engine's thread count (px_num_threads, px_set_num_threads): a process-wide setting
 * below every layer. It is the default of every CPU backend context: a context runs its
 * parallel regions on its own count when it has one (backend.h px_backend_set_threads; a model
 * handle's through px_model_set_num_threads), else on this one, as the shared context
 * (px_cpu_backend) always does. Host work outside a backend context (the sampler's noise,
 * rng.c, the embedder, the model's preparation) reads it directly. */
#include <stdatomic.h>
#include <stdlib.h>

#include "platform.h"
#include "pxdiff.h"

/* The engine's own thread count. Every OpenMP region of the library names it in a
 * num_threads clause, so what the host process did to OpenMP (PyTorch sets its OpenMP
 * threads to 1 on a 2-core machine, omp_set_num_threads anywhere in the process) neither
 * slows the engine nor is changed by it: the engine never calls omp_set_num_threads. */
static _Atomic int threads_set;     /* px_set_num_threads; 0: not set */
static _Atomic int threads_default; /* PXDIFF_NUM_THREADS or the usable CPUs; 0: not yet read */

/* PXDIFF_NUM_THREADS as a whole positive number, else 0 (unset or not a count: ignored). */
static int env_threads(void) {
  const char *s = getenv("PXDIFF_NUM_THREADS");
  if (!s || !*s) return 0;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9' || v > 100000) return 0;
    v = v * 10 + (*p - '0');
  }
  return v >= 1 && v <= 4096 ? (int)v : 0;
}

int px_num_threads(void) {
  int n = atomic_load_explicit(&threads_set, memory_order_relaxed);
  if (n > 0) return n;
  n = atomic_load_explicit(&threads_default, memory_order_relaxed);
  if (n > 0) return n;
  /* Read once (the affinity mask and cgroup files are not re-read at every region); two
   * threads racing here compute the same value. */
  n = env_threads();
  if (n <= 0) n = px_usable_cpus();
  atomic_store_explicit(&threads_default, n, memory_order_relaxed);
  return n;
}

void px_set_num_threads(int n) {
  atomic_store_explicit(&threads_set, n > 0 ? (n > 4096 ? 4096 : n) : 0, memory_order_relaxed);
}
