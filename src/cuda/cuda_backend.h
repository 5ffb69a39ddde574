/* The CUDA backend (compiled when nvcc is found; see Makefile). C linkage, so the model
 * layer can call it without knowing CUDA. */
#ifndef PX_CUDA_BACKEND_H
#define PX_CUDA_BACKEND_H

#include "backend.h"
#include "pxdiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Usable CUDA devices (0 when the driver or a device is missing). */
int px_cuda_count(void);

/* Copy the model's weights to the device (a mirror of the weight struct) and make new
 * designs use the CUDA backend at `precision` (PX_PRECISION_DEFAULT picks the backend's
 * default). Re-preparing at another precision keeps the weights. */
int px_cuda_model_prepare(px_model *m, int precision);
/* Free the device copy; the model computes on the CPU again. */
void px_cuda_model_release(px_model *m);
/* px_model_x16_blocks for a model on the GPU. */
int px_cuda_x16_blocks(const px_model *m);

/* Move a design built on the CPU to the device (called by px_design_create when the model
 * is on CUDA): every backend buffer is replaced by a device copy. */
int px_cuda_design_upload(const px_model *m, px_design *d);

/* The backend object for a precision (fp32, tf32, bf16, fp16). */
px_backend *px_cuda_backend(int precision);

/* Give the device weight matrix W (n floats) a 16-bit copy (bf16 or fp16, per precision):
 * GEMMs with W then run on 16-bit operands at that precision, their input stored times
 * 2^-e (backend.h x16_weight). Done by px_cuda_model_prepare for the model's matrices;
 * exposed for the kernel tests. */
int px_cuda_half_weight(const float *W, size_t n, int precision, int e);

/* Device memory in use by pxdiff and the peak since the last reset, in bytes. */
int64_t px_cuda_memory_in_use(void);
int64_t px_cuda_memory_peak(void);
void px_cuda_memory_reset_peak(void);

#ifdef __cplusplus
}
#endif
#endif
