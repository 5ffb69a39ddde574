// GEMMs through cuBLASLt for the CUDA backend: Y = act(X W^T + bias) + beta Y, row-major,
// optionally strided-batched, with the bias and ReLU applied in the GEMM's epilogue (no
// separate pass over Y). See gemm_lt.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

struct PxGemm {
  int count;             // batch count (1: a single GEMM)
  int M, N, K;           // Y [M, N] = X [M, K] W[N, K]^T
  const void *X;         // float, or ab_type's half type
  int ldx;
  int64_t sx;            // batch strides in elements
  const void *W;
  int64_t sw;
  const float *bias;     // [N] per batch (stride sb), or null
  int64_t sb;
  int relu;              // apply max(., 0) after the bias
  int accumulate;        // beta = 1 (Y += ...), else beta = 0
  float *Y;
  int ldy;
  int64_t sy;
  int ab_type;           // X and W: 0 float, 1 bfloat16, 2 half (then fp32 accumulation, Y float)
  int alpha_exp;         // Y = 2^alpha_exp X W^T (+ bias): undoes an input stored times 2^-alpha_exp
  int y_type;            // Y: 0 float, or ab_type's 16-bit type (a GEMM input of the next layer)
};

// A backend context's cuBLASLt handle and plans (made and freed with the context).
struct PxLt;
PxLt *px_gemm_lt_create();  // nullptr when out of memory (the GEMMs then take cuBLAS)
void px_gemm_lt_destroy(PxLt *lt);

// Float operands: tf32 selects TF32 tensor cores (fp32 accumulation), else exact fp32. Returns 1 when the GEMM was
// queued on `stream`, 0 when cuBLASLt has no algorithm for it (the caller falls back);
// a failure of a queued GEMM is returned as -1.
int px_gemm_lt(PxLt *lt, cudaStream_t stream, void *workspace, size_t ws_bytes, int tf32, const PxGemm &p);
