// Projections: Y = X W^T + bias. cuBLASLt with the bias (and ReLU) in the epilogue
// (gemm_lt.cu), cuBLAS after a bias fill when Lt has no algorithm. fp32 (exact), TF32, or
// 16-bit operands with fp32 accumulation when the model's weight handle carries a 16-bit
// copy (backend.h px_weight; the model owns it). A 16-bit GEMM input is stored times 2^-e and
// the product scaled back by alpha = 2^e (fp16_range.c proves the range).
#include "cuda/context.cuh"
#include "cuda/gemm_lt.h"
#include "cuda/half_io.cuh"
#include "cuda/launch.cuh"

namespace pxcuda {

__global__ void k_fill_bias(int M, int C, float *Y, int ldy, const float *bias, int accumulate) {
  px_pdl_enter();
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *y = Y + (size_t)r * ldy;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] = accumulate ? y[c] + bias[c] : bias[c];
  }
}

__global__ void k_relu_rows(int N, float *Y, int ldy) {
  px_pdl_enter();
  float *y = Y + (size_t)blockIdx.y * ldy;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < N) y[c] = fmaxf(y[c], 0.0f);
}

// Y [M, K] (contiguous) = X [M, K] (row stride ldx) in bf16 (AB = 1) or fp16 (AB = 2);
// four values per thread when the rows allow 16-byte loads.
// Times sc (a power of two: exact), as GEMM inputs stored times 2^-e are.
template <int AB>
__global__ void k_to_half(int M, int K, const float *X, int ldx, uint16_t *Y, float sc) {
  px_pdl_enter();
  const bool v4 = ((K | ldx) & 3) == 0 && ((uintptr_t)X & 15) == 0 && ((uintptr_t)Y & 7) == 0;
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const float *x = X + (size_t)r * ldx;
    const size_t y = (size_t)r * K;
    if (v4) {
      for (int c = (blockIdx.x * blockDim.x + threadIdx.x) * 4; c < K; c += gridDim.x * blockDim.x * 4) {
        const float4 v = *reinterpret_cast<const float4 *>(x + c);
        store4<AB>(Y, y + c, make_float4(v.x * sc, v.y * sc, v.z * sc, v.w * sc));
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < K; c += gridDim.x * blockDim.x)
        store1<AB>(Y, y + c, x[c] * sc);
    }
  }
}

// n floats to bf16 / fp16 (weights, once).
template <int AB>
__global__ void k_to_half_flat(int64_t n, const float *X, uint16_t *Y) {
  px_pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Y[i] = to_half1<AB>(X[i]);
}

void to_half(Ctx &g, int ab, int M, int K, const float *X, int ldx, uint16_t *Y, int e) {
  const int threads = 256;
  const dim3 grid((unsigned)((K + 4 * threads - 1) / (4 * threads)), (unsigned)(M < 65535 ? M : 65535));
  const float sc = ldexpf(1.0f, -e);
  if (ab == 1)
    px_launch((k_to_half<1>), grid, threads, 0, g.stream, g.pdl, M, K, X, ldx, Y, sc);
  else
    px_launch((k_to_half<2>), grid, threads, 0, g.stream, g.pdl, M, K, X, ldx, Y, sc);
  LAUNCHED("to_half");
}

void gemm_math_mode(Ctx &g, int precision) {
  cublasSetMathMode(g.blas, precision == PX_PRECISION_FP32
                                ? (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
                                : CUBLAS_TF32_TENSOR_OP_MATH);
}

// cuBLASLt with the bias (and ReLU) in the epilogue; 1 when it took the GEMM.
bool linear_lt(Ctx &g, int precision, const PxGemm &p) {
  if (g.no_lt) return false;
  void *ws = g.blas_ws[g.cur_lane];
  const int r = px_gemm_lt(g.lt, g.stream, ws, ws ? g.blas_ws_bytes : 0, precision != PX_PRECISION_FP32, p);
  if (r < 0) fail_blas(g, CUBLAS_STATUS_EXECUTION_FAILED, "cublasLtMatmul");
  return r != 0;
}

void relu_rows(Ctx &g, int M, int N, float *Y, int ldy) {
  for (int r = 0; r < M; r += 65535) {  // rows may be strided (ldy > N)
    const int rows = M - r < 65535 ? M - r : 65535;
    px_launch(k_relu_rows, dim3((N + 255) / 256, rows), 256, 0, g.stream, g.pdl, N, Y + (size_t)r * ldy, ldy);
  }
  LAUNCHED("relu_rows");
}

// For the cuBLAS fallbacks (no epilogue): Y = bias (or Y += bias), then the GEMM with the
// returned beta accumulates onto it.
float prefill_bias(Ctx &g, int M, int N, float *Y, int ldy, const float *bias, int accumulate) {
  if (!bias) return accumulate ? 1.0f : 0.0f;
  px_launch(k_fill_bias, grid2d(M, N, threads_for(N)), threads_for(N), 0, g.stream, g.pdl, M, N, Y, ldy, bias,
            accumulate);
  LAUNCHED("fill_bias");
  return 1.0f;
}

// Y = 2^w.e X16 W16^T (+ bias) on 16-bit operands (type ab = w.h16_type), fp32 accumulation;
// X16 [M, K] contiguous. yt: Y's type, 0 float or ab (then no bias, accumulate or ReLU, and Y
// is stored times 2^-w.ye).
void gemm_half(Ctx &g, int M, int N, int K, const uint16_t *xh, const px_weight &w, const float *bias, void *Y,
               int ldy, int accumulate, int relu, int yt) {
  const int ab = (int)w.h16_type;
  const int prec = ab == PX_BF16 ? PX_PRECISION_BF16 : PX_PRECISION_FP16;
  const int ax = w.e - (yt ? w.ye : 0);
  if (linear_lt(g, prec, PxGemm{1, M, N, K, xh, K, 0, w.h16, 0, bias, 0, relu, accumulate, (float *)Y, ldy, 0, ab, ax,
                             yt}))
    return;
  // No cuBLASLt algorithm: cublasGemmEx after a bias fill, ReLU after.
  const float beta = yt ? 0.0f : prefill_bias(g, M, N, (float *)Y, ldy, bias, accumulate);
  const float alpha = ldexpf(1.0f, ax);
  const cudaDataType_t t = ab == PX_BF16 ? CUDA_R_16BF : CUDA_R_16F;
  CKB(cublasGemmEx(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w.h16, t, K, xh, t, K, &beta, Y,
                   yt ? t : CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (relu) relu_rows(g, M, N, (float *)Y, ldy);
}

bool is_half(int t) { return t == PX_BF16 || t == PX_F16; }

// Y = X W^T + bias with the operand types the handle and xt / yt give:
//  - a 16-bit X (written so by the kernel that produced it): W's 16-bit copy, of X's type;
//  - an fp32 X and a W with a 16-bit copy, at a 16-bit precision (K >= 16): X converted into
//    per-lane scratch, then the same 16-bit GEMM (the bf16 precision's every GEMM);
//  - else fp32 operands: exact fp32, or TF32 tensor cores for every reduced precision.
void linear_impl(px_backend *b, int M, int N, int K, const void *X, int ldx, const px_weight &W, const float *bias,
                 void *Y, int ldy, int accumulate, int relu, int xt, int yt) {
  Ctx &g = ctx_of(b);
  if (M <= 0 || N <= 0) return;
  const int prec = precision_of(b);
  if (xt != PX_F32 || yt != PX_F32) {
    if (!is_half(xt) || !W.h16 || (int)W.h16_type != xt || ldx != K ||
        (yt != PX_F32 && (yt != xt || bias || accumulate || relu))) {
      keep_failure(g, px_fail(PX_ERR_BACKEND,
                              "%s on %s: a 16-bit input needs the weight's 16-bit copy of its type (ldx = K); a "
                              "16-bit output, a 16-bit input and no bias or accumulation",
                              g.op, g.name));
      return;
    }
    gemm_half(g, M, N, K, (const uint16_t *)X, W, bias, Y, ldy, accumulate, relu, yt);
    return;
  }
  if (half_type(prec) && W.h16 && is_half(W.h16_type) && K >= 16) {
    uint16_t *xh = grow(g, g.xh[g.cur_lane], g.xh_n[g.cur_lane], (size_t)M * K);
    if (!xh) return;  // reported as this op's out-of-memory
    to_half(g, (int)W.h16_type, M, K, (const float *)X, ldx, xh, W.e);
    gemm_half(g, M, N, K, xh, W, bias, Y, ldy, accumulate, relu, 0);
    return;
  }
  if (!W.f32) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "%s on %s: the weight has no fp32 matrix for fp32 operands", g.op, g.name));
    return;
  }
  const int fprec = prec == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32;
  if (linear_lt(g, fprec, PxGemm{1, M, N, K, X, ldx, 0, W.f32, 0, bias, 0, relu, accumulate, (float *)Y, ldy, 0, 0}))
    return;
  const float beta = prefill_bias(g, M, N, (float *)Y, ldy, bias, accumulate);
  const float one = 1.0f;
  // Row-major Y = X W^T is column-major Y^T = W X^T: cuBLAS(op_T on W, op_N on X).
  gemm_math_mode(g, fprec);
  CKB(cublasSgemm(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W.f32, K, (const float *)X, ldx, &beta,
                  (float *)Y, ldy));
  if (relu) relu_rows(g, M, N, (float *)Y, ldy);
}

void be_linear(px_backend *b, int M, int N, int K, const void *X, int ldx, px_weight W, const float *bias, void *Y,
               int ldy, int accumulate, int /*seg*/, px_etype xt, px_etype yt) {
  CTX(b);
  PROF(xt != PX_F32 ? "linear_x16" : "linear");
  linear_impl(b, M, N, K, X, ldx, W, bias, Y, ldy, accumulate, 0, (int)xt, (int)yt);
}

void be_linear_relu(px_backend *b, int M, int N, int K, const float *X, int ldx, px_weight W, const float *bias,
                    float *Y, int ldy, int /*seg*/) {
  CTX(b);
  PROF("linear_relu");
  linear_impl(b, M, N, K, X, ldx, W, bias, Y, ldy, 0, 1, PX_F32, PX_F32);
}

__global__ void k_fill_bias_batched(int count, int M, int N, float *Y, int64_t sy, const float *bias,
                                    int64_t sb) {
  px_pdl_enter();
  for (int r = blockIdx.y; r < count * M; r += gridDim.y) {
    const int i = r / M, row = r % M;
    float *y = Y + i * sy + (size_t)row * N;
    const float *bb = bias + i * sb;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < N; c += gridDim.x * blockDim.x) y[c] = bb[c];
  }
}

void be_linear_batched(px_backend *b, int count, int M, int N, int K, const float *X, int64_t sx,
                       const float *W, int64_t sw, const float *bias, int64_t sb, float *Y, int64_t sy,
                       int /*seg*/) {
  CTX(b);
  PROF("linear_batched");
  if (count <= 0 || M <= 0 || N <= 0) return;
  const int prec = precision_of(b) == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32;
  if (linear_lt(g, prec, PxGemm{count, M, N, K, X, K, sx, W, sw, bias, sb, 0, 0, Y, N, sy})) return;
  float beta = 0.0f;
  if (bias) {
    px_launch(k_fill_bias_batched, grid2d(count * M, N, threads_for(N)), threads_for(N), 0, g.stream, g.pdl, count, M,
              N, Y, sy, bias, sb);
    LAUNCHED("fill_bias_batched");
    beta = 1.0f;
  }
  const float one = 1.0f;
  gemm_math_mode(g, precision_of(b) == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32);
  CKB(cublasSgemmStridedBatched(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, K, sw, X, K, sx, &beta,
                                Y, N, sy, count));
}

// A weight's 16-bit copy (the model calls this once per matrix when it is prepared).
void be_convert(px_backend *b, int64_t n, const float *X, void *Y, px_etype yt) {
  CTX(b);
  if (!is_half(yt)) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "convert on %s: type %d is not a 16-bit type", g.name, (int)yt));
    return;
  }
  if (n <= 0) return;
  const unsigned blocks = (unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
  if (yt == PX_BF16)
    px_launch((k_to_half_flat<1>), blocks, 256, 0, g.stream, g.pdl, n, X, (uint16_t *)Y);
  else
    px_launch((k_to_half_flat<2>), blocks, 256, 0, g.stream, g.pdl, n, X, (uint16_t *)Y);
  LAUNCHED("to_half_flat");
}

// Rows of X in 16 bits at row stride ldy, the pad columns zero (a pair bias's fp16 copy):
// one thread per output value, rows on y.
template <int AB>
__global__ void k_to_half_rows(int64_t M, int C, const float *X, int ldx, uint16_t *Y, int ldy) {
  px_pdl_enter();
  for (int64_t r = blockIdx.y; r < M; r += gridDim.y)
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < ldy; c += gridDim.x * blockDim.x)
      Y[r * ldy + c] = c < C ? to_half1<AB>(X[r * ldx + c]) : (uint16_t)0;
}

void be_convert_rows(px_backend *b, int64_t M, int C, const float *X, int ldx, void *Y, int ldy, px_etype yt) {
  CTX(b);
  if (!is_half(yt) || C < 0 || ldy < C || ldx < C) {
    keep_failure(
        g, px_fail(PX_ERR_BACKEND, "convert_rows on %s: type %d, C %d, ldx %d, ldy %d", g.name, (int)yt, C, ldx, ldy));
    return;
  }
  if (M <= 0 || ldy <= 0) return;
  const dim3 grid((unsigned)((ldy + 255) / 256), (unsigned)(M < 65535 ? M : 65535));
  if (yt == PX_BF16)
    px_launch((k_to_half_rows<1>), grid, 256, 0, g.stream, g.pdl, M, C, X, ldx, (uint16_t *)Y, ldy);
  else
    px_launch((k_to_half_rows<2>), grid, 256, 0, g.stream, g.pdl, M, C, X, ldx, (uint16_t *)Y, ldy);
  LAUNCHED("to_half_rows");
}

}  // namespace pxcuda
