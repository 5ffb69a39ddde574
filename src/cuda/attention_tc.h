// Tensor-core (TF32 / FP16 mma.sync) flash attention for the CUDA backend's reduced
// precisions (TF32, BF16, FP16); PX_PRECISION_FP32 keeps the exact fp32 kernels in attention.cu.
#ifndef PX_CUDA_ATTENTION_TC_H
#define PX_CUDA_ATTENTION_TC_H

#include <cuda_runtime.h>

#include <cstdint>

// What the launches need to know about one device, kept by each backend context (a
// process with contexts on two kinds of GPU launches each with its own device's limits):
// per head width (16, 32, 48, 64), the shared memory a block may opt into (0: the kernels
// could not be configured there, the exact kernels run instead), per SM, and the SM count.
// Filled by px_attention_tc_init on the context's device when the context is made.
struct PxTcDevice {
  struct Lim {
    int optin, per_sm, sms;
  } lim[4];
  bool disabled;  // PXDIFF_NO_TC_ATTENTION was set when the context was made
  bool no_h16;    // PXDIFF_NO_H16_ATTENTION: fp16 outputs from the TF32 kernel (comparisons)
  bool h16in[3];  // the fp16-input kernels of d = 32, 48, 64 could be configured
  bool pdl;       // launches with programmatic dependent launch (the context's Ctx::pdl, launch.cuh)
};

// Configure the kernels' shared memory on the current device and record its limits.
void px_attention_tc_init(PxTcDevice *dev);

// Launch full (local = 0: bias [H, L, L]) or local attention (local = 1: query trunks of
// nq = 32, windows of nk keys starting (nk - nq) / 2 before the trunk, bias
// [H, n_trunks, 32, nk]) on `stream`, with the contracts of backend.h's attention_full /
// attention_local. Returns 1 when launched (the caller checks cudaGetLastError), 0 when
// the shape or alignment is not one it handles (d not in {16, 32, 48, 64}, ld not a
// multiple of 4, unaligned Q/K/V, local nq != 32), the device's limits (dev) rule the
// kernels out, or PXDIFF_NO_TC_ATTENTION was set.
// With G (row stride ldg) the output is multiplied by sigmoid(G) (the fused attention gate).
// out_type: O's elements, 0 float, 1 bf16, 2 fp16 (16-bit outputs feed a 16-bit GEMM; local
// attention takes 0 and 2, on tf32 operands either way). out_type 2 runs on fp16 operands (Q scaled, K, V rounded to fp16;
// the caller keeps them in fp16's range, model/fp16_range.c) unless PXDIFF_NO_H16_ATTENTION
// was set; the others on tf32 operands.
int px_attention_tc(const PxTcDevice *dev, cudaStream_t stream, int S, int L, int H, int d, int ld, const float *Q,
                    const float *K, const float *V, const float *bias, int local, int nq, int nk,
                    float scale, void *O, const float *G, int ldg, int out_type);

// Full attention on fp16 inputs (backend.h attention_full_h16): Q, K, V, G fp16 with row
// stride ld, q_bias [H*d] fp32 added to Q (NULL: none), bias [H, L, L] fp32 or, where
// bias16 is given (16-byte aligned, ldb16 >= L a multiple of 8), bias16 [H, L, ldb16] fp16 instead, O fp16
// [S*L, H*d]; G may be NULL. Returns 1 when launched, 0 when d is not 32, 48 or 64, ld is
// not a multiple of 8, a pointer is misaligned (Q, K, V, G 16 bytes, q_bias 8, bias and O
// 4), the kernels could not be configured, or PXDIFF_NO_TC_ATTENTION was set.
int px_attention_tc_h16in(const PxTcDevice *dev, cudaStream_t stream, int S, int L, int H, int d, int ld,
                          const uint16_t *Q, const uint16_t *K, const uint16_t *V, const uint16_t *G,
                          const float *q_bias, const float *bias, const uint16_t *bias16, int ldb16, float scale,
                          uint16_t *O);

// Local attention on fp16 inputs (backend.h attention_local_h16): query trunks of nq = 32,
// windows of nk keys (nk - nq even), bias [H, n_trunks, 32, nk] fp32; Q, K, V, G fp16 with
// row stride ld, q_bias [H*d] fp32 added to Q (NULL: none), O fp16 [S*L, H*d]; G may be
// NULL. Returns 1 when launched, 0 when the shape, the alignment (Q, K, V, G 16 bytes, bias,
// O 4, q_bias 8) or the device rules the kernel out, or PXDIFF_NO_TC_ATTENTION was set.
int px_attention_tc_h16in_local(const PxTcDevice *dev, cudaStream_t stream, int S, int L, int H, int d, int nq,
                                int nk, int ld, const uint16_t *Q, const uint16_t *K, const uint16_t *V,
                                const uint16_t *G, const float *q_bias, const float *bias, float scale, uint16_t *O);

#endif
