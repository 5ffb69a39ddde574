/* Which cblas: OpenBLAS on Linux, Accelerate on macOS (chosen by the Makefile). */
#ifndef PX_CPU_BLAS_H
#define PX_CPU_BLAS_H

#if defined(PX_BLAS_ACCELERATE)
#include <Accelerate/Accelerate.h>
#define PX_BLAS_NAME "Accelerate"
static inline void px_blas_set_threads(int n) { (void)n; }
#else
#include <cblas.h>
#define PX_BLAS_NAME "OpenBLAS"
void openblas_set_num_threads(int num_threads);
static inline void px_blas_set_threads(int n) { openblas_set_num_threads(n); }
#endif

#endif
