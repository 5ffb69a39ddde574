/* Which cblas: chosen by the Makefile (BLAS=<pkg-config name>, else the first of Accelerate,
 * MKL, BLIS, OpenBLAS, -lblas the machine has: scripts/detect-blas.sh), and
 * identified again at run time, since on Debian libblas.so.3 / libopenblas can be any of
 * several builds through alternatives. px_cpu_blas_describe() (backend.h; px_blas_name(),
 * `pxdiff info`) names both: the build's choice (PX_BLAS_BUILT), the library actually loaded
 * (version, threading), and the GEMM kernel the CPU backend uses for deep GEMMs (cpu/gemm.h). */
#ifndef PX_CPU_BLAS_H
#define PX_CPU_BLAS_H

/* The build's choice (Makefile: BLAS=, or scripts/detect-blas.sh), as its define names it. */
#if defined(PX_BLAS_ACCELERATE)
#define PX_BLAS_BUILT "Accelerate"
#elif defined(PX_BLAS_MKL)
#define PX_BLAS_BUILT "MKL"
#elif defined(PX_BLAS_BLIS)
#define PX_BLAS_BUILT "BLIS"
#elif defined(PX_BLAS_OPENBLAS)
#define PX_BLAS_BUILT "OpenBLAS"
#else
#define PX_BLAS_BUILT "cblas"
#endif

#if defined(PX_BLAS_ACCELERATE)
#include <Accelerate/Accelerate.h>
static inline void px_blas_set_threads(int n) { (void)n; }
static inline int px_blas_get_threads(void) { return 1; }
#else
#if defined(PX_BLAS_MKL)
#include <mkl_cblas.h>
#elif defined(PX_BLAS_BLIS)
/* BLIS's cblas.h carries BLIS's own headers: unused static functions, and POSIX types
 * (pthread_barrier_t) that -std=c11 hides, so its includer defines _POSIX_C_SOURCE first. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <cblas.h>
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#include <cblas.h>
#endif

/* Thread controls and identification of the cblas implementations we know, declared weak:
 * whichever library is loaded defines its own, the others stay NULL. That keeps one build
 * linkable against OpenBLAS, BLIS or MKL (only OpenBLAS's were strong before: another cblas
 * failed to link). */
#if defined(__GNUC__) || defined(__clang__)
/* default visibility: under -fvisibility=hidden a weak reference would otherwise be bound to
 * NULL at link time instead of to the library loaded at run time */
#define PX_WEAK __attribute__((weak, visibility("default")))
#else
#define PX_WEAK
#endif
/* An OpenBLAS build (the Makefile defines PX_BLAS_OPENBLAS) references OpenBLAS's strongly:
 * a static libopenblas.a then still brings them in. */
#if defined(PX_BLAS_OPENBLAS)
#define PX_WEAK_OB
#define PX_OPENBLAS_LOADED 1
#else
#define PX_WEAK_OB PX_WEAK
#define PX_OPENBLAS_LOADED (openblas_set_num_threads != 0 && openblas_get_num_threads != 0 && \
                            openblas_get_config != 0 && openblas_get_parallel != 0)
#endif
PX_WEAK_OB void openblas_set_num_threads(int num_threads);
PX_WEAK_OB int openblas_get_num_threads(void);
PX_WEAK_OB char *openblas_get_config(void);
PX_WEAK_OB int openblas_get_parallel(void);
PX_WEAK int mkl_set_num_threads_local(int nt);
PX_WEAK void mkl_get_version_string(char *buf, int len);
PX_WEAK char *bli_info_get_version_str(void);

/* OpenBLAS's thread count is process-wide and shared with the host (Debian's PyTorch links
 * the same libopenblas): the CPU backend sets 1 around its own GEMMs and restores it. MKL's
 * thread-local count does the same job there; BLIS runs single-threaded unless its own
 * environment variables say otherwise. */
static inline void px_blas_set_threads(int n) {
  if (PX_OPENBLAS_LOADED) openblas_set_num_threads(n);
  else if (mkl_set_num_threads_local) mkl_set_num_threads_local(n);
}
static inline int px_blas_get_threads(void) {
  if (PX_OPENBLAS_LOADED) return openblas_get_num_threads();
  if (mkl_set_num_threads_local) return 0; /* 0 restores MKL's global setting */
  return 1;
}
#endif

#endif
