/* Which cblas: OpenBLAS on Linux, Accelerate on macOS (chosen by the Makefile). */
#ifndef PX_CPU_BLAS_H
#define PX_CPU_BLAS_H

#if defined(PX_BLAS_ACCELERATE)
#include <Accelerate/Accelerate.h>
#define PX_BLAS_NAME "Accelerate"
static inline void px_blas_set_threads(int n) { (void)n; }
static inline int px_blas_get_threads(void) { return 1; }
#else
#include <cblas.h>
#define PX_BLAS_NAME "OpenBLAS"
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
/* OpenBLAS's thread count is process-wide and shared with the host (Debian's PyTorch links
 * the same libopenblas): the CPU backend sets 1 around its own GEMMs and restores it. */
static inline void px_blas_set_threads(int n) { openblas_set_num_threads(n); }
static inline int px_blas_get_threads(void) { return openblas_get_num_threads(); }
#endif

#endif
