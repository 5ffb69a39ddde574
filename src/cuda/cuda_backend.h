/* The CUDA backend (compiled when nvcc is found; see Makefile). C linkage. It knows the
 * kernel interface (backend.h) and nothing of the model: src/backends.c is the one place
 * the library calls in here from; the model reaches it through px_backend operations. */
#ifndef PX_CUDA_BACKEND_H
#define PX_CUDA_BACKEND_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Usable CUDA devices (0 when the driver or a device is missing). */
int px_cuda_count(void);

/* Backend contexts. A context owns everything the CUDA backend keeps for one device (its
 * streams, cuBLAS handle, scratch, the caller's stream); it has one
 * px_backend view per precision (fp32, tf32, bf16, fp16), which share it. Contexts are
 * independent: several may live in one process, on one device or on several.
 *
 * A new context on cuda:`device`, viewed at `precision`; NULL with the reason set. */
px_backend *px_cuda_backend_create(int device, int precision);
/* Free a context made by px_cuda_backend_create (after its buffers are freed); the shared
 * contexts below are kept until exit. */
void px_cuda_backend_destroy(px_backend *b);
/* The same context at another precision. */
px_backend *px_cuda_backend_view(px_backend *b, int precision);
/* The CUDA device a context runs on. */
int px_cuda_backend_device(const px_backend *b);
/* The process's shared context of cuda:`device` (made on first use; NULL with the reason
 * set when the device cannot be used): models and the condition embedder use cuda:0's. */
px_backend *px_cuda_device_backend(int device, int precision);
/* px_cuda_device_backend(0, precision). */
px_backend *px_cuda_backend(int precision);

/* Free and total memory of cuda:`device` (cudaMemGetInfo), bytes; 0 or a px_status code. */
int px_cuda_mem_info(int device, int64_t *free_bytes, int64_t *total_bytes);

/* Device memory in use by pxdiff and the peak since the last reset, in bytes. */
int64_t px_cuda_memory_in_use(void);
int64_t px_cuda_memory_peak(void);
void px_cuda_memory_reset_peak(void);

#ifdef __cplusplus
}
#endif
#endif
