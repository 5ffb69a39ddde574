/* Process-wide settings: thread count and the BLAS in use. */
#include "cpu/blas.h"
#include "pxdiff.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void px_set_num_threads(int n) {
  if (n <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  px_blas_set_threads(n);
}

const char *px_blas_name(void) { return PX_BLAS_NAME; }
