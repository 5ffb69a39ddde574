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
const char *px_cpu_bf16_name(void) { return px_cpu_bf16_describe(); }

int px_backend_device_count(int kind) {
  if (kind == PX_DEVICE_CPU) return 1;
#ifdef PX_HAVE_CUDA
  if (kind == PX_DEVICE_CUDA) return px_cuda_count();
#endif
  return 0;
}

int px_backend_built(int kind) {
#ifdef PX_HAVE_CUDA
  if (kind == PX_DEVICE_CUDA) return 1;
#endif
  return kind == PX_DEVICE_CPU;
}

int px_cuda_device_count(void) { return px_backend_device_count(PX_DEVICE_CUDA); }

int px_device_built(enum px_device device) { return px_backend_built((int)device); }

#ifndef PX_HAVE_CUDA
/* The one answer for every request that needs a backend this build lacks. */
static int not_built(void) {
  return px_fail(PX_ERR_BACKEND, "this pxdiff was built without CUDA (rebuild with nvcc on PATH)");
}
#endif

/* A CUDA backend of device `index`: the process's shared context, or (own) a new one. */
static px_backend *cuda_backend(int index, int precision, int own) {
#ifdef PX_HAVE_CUDA
  if (precision == PX_PRECISION_DEFAULT) precision = PX_PRECISION_FP32;
  return own ? px_cuda_backend_create(index, precision) : px_cuda_device_backend(index, precision);
#else
  (void)index, (void)precision, (void)own;
  not_built();
  return NULL;
#endif
}

px_backend *px_backend_get(int kind, int index, int precision) {
  if (kind == PX_DEVICE_CPU) {
    if (index != 0) {
      px_fail(PX_ERR_BACKEND, "no CPU device %d (the CPU is device 0)", index);
      return NULL;
    }
    if (precision == PX_PRECISION_BF16 && !px_cpu_backend()->convert) {
      px_fail(PX_ERR_BACKEND, "the CPU backend has no bf16 here (it needs AVX512_BF16: %s)", px_cpu_bf16_describe());
      return NULL;
    }
    if (precision != PX_PRECISION_DEFAULT && precision != PX_PRECISION_FP32 && precision != PX_PRECISION_BF16) {
      px_fail(PX_ERR_BACKEND, "the CPU backend computes in fp32 or bf16 (asked for %s)",
              precision == PX_PRECISION_TF32 ? "tf32" : "fp16");
      return NULL;
    }
    return px_cpu_backend();
  }
  if (kind == PX_DEVICE_CUDA) return cuda_backend(index, precision, 0);
  px_fail(PX_ERR_INPUT, "unknown device %d", kind);
  return NULL;
}

px_backend *px_backend_create(int kind, int index, int precision) {
  if (kind == PX_DEVICE_CUDA) return cuda_backend(index, precision, 1);
  if (!px_backend_get(kind, index, precision)) return NULL; /* the reason is set */
  return px_cpu_backend_create();
}

void px_backend_destroy(px_backend *b) {
  if (!b) return;
  if (px_cpu_backend_is(b)) {
    px_cpu_backend_destroy(b); /* not the shared one */
    return;
  }
#ifdef PX_HAVE_CUDA
  px_cuda_backend_destroy(b);
#endif
}

int px_backend_index(const px_backend *b) {
#ifdef PX_HAVE_CUDA
  if (b && b->device_memory) return px_cuda_backend_device(b);
#endif
  (void)b;
  return 0;
}

int px_backend_set_threads(px_backend *b, int n) {
  if (!b) return px_fail(PX_ERR_INPUT, "px_backend_set_threads: NULL backend");
  if (n < 0) return px_fail(PX_ERR_INPUT, "thread count %d: 0 (the process's count) or more", n);
  if (!px_cpu_backend_is(b))
    return px_fail(PX_ERR_BACKEND, "%s computes on its device: it has no thread count (px_set_num_threads sets the "
                   "host's)", b->name);
  if (b == px_cpu_backend())
    return px_fail(PX_ERR_BACKEND, "the shared CPU context runs on the process's count (px_set_num_threads); a "
                   "context of its own (px_backend_create) has a count of its own");
  b->threads = n > 4096 ? 4096 : n; /* px_set_num_threads's cap */
  return PX_OK;
}

int px_backend_threads(const px_backend *b) { return b && b->threads > 0 ? b->threads : px_num_threads(); }

int px_device_memory(enum px_device device, int index, int64_t *free_bytes, int64_t *total_bytes) {
  if (!free_bytes || !total_bytes) return px_fail(PX_ERR_INPUT, "px_device_memory: NULL argument");
  *free_bytes = *total_bytes = 0;
  if (device == PX_DEVICE_CPU) return PX_OK; /* not reported: the CPU's memory is the host's */
  if (device != PX_DEVICE_CUDA) return px_fail(PX_ERR_INPUT, "px_device_memory: unknown device %d", (int)device);
#ifdef PX_HAVE_CUDA
  return px_cuda_mem_info(index, free_bytes, total_bytes);
#else
  (void)index;
  return not_built();
#endif
}
