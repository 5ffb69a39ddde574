/* The backend registry: which backends this build has, and their shared instances. The
 * only file outside src/cuda/ that knows the CUDA backend exists; the model, the sampler
 * and the CLI ask for a backend here and then use its px_backend operations. A new backend
 * (Metal, ROCm) adds its kind here and nowhere else above src/<backend>/. */
#include "backend.h"
#include "error.h"
#include "pxdiff.h"

#ifdef PX_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

const char *px_blas_name(void) { return px_cpu_blas_describe(); }

int px_backend_device_count(int kind) {
  if (kind == PX_DEVICE_CPU) return 1;
#ifdef PX_HAVE_CUDA
  if (kind == PX_DEVICE_CUDA) return px_cuda_count();
#endif
  return 0;
}

int px_cuda_device_count(void) { return px_backend_device_count(PX_DEVICE_CUDA); }

px_backend *px_backend_get(int kind, int index, int precision) {
  if (kind == PX_DEVICE_CPU) {
    if (precision != PX_PRECISION_DEFAULT && precision != PX_PRECISION_FP32) {
      px_fail(PX_ERR_BACKEND, "the CPU backend computes in fp32 only (asked for %s)",
              precision == PX_PRECISION_TF32 ? "tf32" : precision == PX_PRECISION_BF16 ? "bf16" : "fp16");
      return NULL;
    }
    return px_cpu_backend();
  }
  if (kind == PX_DEVICE_CUDA) {
#ifdef PX_HAVE_CUDA
    return px_cuda_device_backend(index, precision == PX_PRECISION_DEFAULT ? PX_PRECISION_FP32 : precision);
#else
    (void)index;
    px_fail(PX_ERR_BACKEND, "this pxdiff was built without CUDA (rebuild with nvcc on PATH)");
    return NULL;
#endif
  }
  px_fail(PX_ERR_INPUT, "unknown device %d", kind);
  return NULL;
}
