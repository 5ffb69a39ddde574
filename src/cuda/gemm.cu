// Projections: Y = X W^T + bias. cuBLASLt with the bias (and ReLU) in the epilogue
// (gemm_lt.cu), cuBLAS after a bias fill when Lt has no algorithm. fp32 (exact), TF32, or
// 16-bit operands with fp32 accumulation when the model gave a weight a 16-bit copy
// (weight_x16_make; the copies live here, keyed by the fp32 matrix's device address). At
// fp16 a GEMM input is stored times 2^-e and the product scaled back by alpha = 2^e
// (fp16_range.c proves the range).
#include "cuda/context.cuh"
#include "cuda/gemm_lt.h"
#include "cuda/half_io.cuh"

namespace pxcuda {

__global__ void k_fill_bias(int M, int C, float *Y, int ldy, const float *bias, int accumulate) {
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *y = Y + (size_t)r * ldy;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] = accumulate ? y[c] + bias[c] : bias[c];
  }
}

__global__ void k_relu_rows(int N, float *Y, int ldy) {
  float *y = Y + (size_t)blockIdx.y * ldy;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < N) y[c] = fmaxf(y[c], 0.0f);
}

// Y [M, K] (contiguous) = X [M, K] (row stride ldx) in bf16 (AB = 1) or fp16 (AB = 2);
// four values per thread when the rows allow 16-byte loads.
// Times sc (a power of two: exact), as GEMM inputs stored times 2^-e are.
template <int AB>
__global__ void k_to_half(int M, int K, const float *X, int ldx, uint16_t *Y, float sc) {
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
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Y[i] = to_half1<AB>(X[i]);
}

void to_half(Ctx &g, int ab, int M, int K, const float *X, int ldx, uint16_t *Y, int e) {
  const int threads = 256;
  const dim3 grid((unsigned)((K + 4 * threads - 1) / (4 * threads)), (unsigned)(M < 65535 ? M : 65535));
  const float sc = ldexpf(1.0f, -e);
  if (ab == 1)
    k_to_half<1><<<grid, threads, 0, g.stream>>>(M, K, X, ldx, Y, sc);
  else
    k_to_half<2><<<grid, threads, 0, g.stream>>>(M, K, X, ldx, Y, sc);
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
  const int r = px_gemm_lt(g.stream, ws, ws ? g.blas_ws_bytes : 0, precision != PX_PRECISION_FP32, p);
  if (r < 0) fail_blas(g, CUBLAS_STATUS_EXECUTION_FAILED, "cublasLtMatmul");
  return r != 0;
}

void relu_rows(Ctx &g, int M, int N, float *Y, int ldy) {
  for (int r = 0; r < M; r += 65535) {  // rows may be strided (ldy > N)
    const int rows = M - r < 65535 ? M - r : 65535;
    k_relu_rows<<<dim3((N + 255) / 256, rows), 256, 0, g.stream>>>(N, Y + (size_t)r * ldy, ldy);
  }
  LAUNCHED("relu_rows");
}

// For the cuBLAS fallbacks (no epilogue): Y = bias (or Y += bias), then the GEMM with the
// returned beta accumulates onto it.
float prefill_bias(Ctx &g, int M, int N, float *Y, int ldy, const float *bias, int accumulate) {
  if (!bias) return accumulate ? 1.0f : 0.0f;
  k_fill_bias<<<grid2d(M, N, threads_for(N)), threads_for(N), 0, g.stream>>>(M, N, Y, ldy, bias, accumulate);
  LAUNCHED("fill_bias");
  return 1.0f;
}

// Y = 2^w.e X16 W16^T (+ bias) on 16-bit operands, fp32 accumulation; X16 [M, K] contiguous.
// yt: Y's type, 0 float or the operands' 16-bit type (then no bias, accumulate or ReLU).
void gemm_half(Ctx &g, int ab, int M, int N, int K, const uint16_t *xh, const Ctx::HalfW &w, const float *bias, void *Y,
               int ldy, int accumulate, int relu, int yt = 0) {
  const int prec = ab == 1 ? PX_PRECISION_BF16 : PX_PRECISION_FP16;
  if (linear_lt(g, prec, PxGemm{1, M, N, K, xh, K, 0, w.p, 0, bias, 0, relu, accumulate, (float *)Y, ldy, 0, ab, w.e,
                             yt}))
    return;
  // No cuBLASLt algorithm: cublasGemmEx after a bias fill, ReLU after.
  const float beta = yt ? 0.0f : prefill_bias(g, M, N, (float *)Y, ldy, bias, accumulate);
  const float alpha = ldexpf(1.0f, w.e);
  const cudaDataType_t t = ab == 1 ? CUDA_R_16BF : CUDA_R_16F;
  CKB(cublasGemmEx(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w.p, t, K, xh, t, K, &beta, Y,
                   yt ? t : CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (relu) relu_rows(g, M, N, (float *)Y, ldy);
}

// A GEMM on 16-bit operands (BF16 / FP16 precisions) when W has a 16-bit copy: X is
// converted into per-lane scratch, accumulation stays fp32. False: the caller runs it in fp32/tf32.
bool linear_half(Ctx &g, int prec, int M, int N, int K, const float *X, int ldx, const float *W, const float *bias,
                 float *Y, int ldy, int accumulate, int relu) {
  const int ab = half_type(prec);
  if (!ab) return false;
  auto it = g.whalf.find(W);
  if (it == g.whalf.end() || K < 16) return false;
  uint16_t *xh = grow(g, g.xh[g.cur_lane], g.xh_n[g.cur_lane], (size_t)M * K);
  if (!xh) return false;
  to_half(g, ab, M, K, X, ldx, xh, it->second.e);
  gemm_half(g, ab, M, N, K, xh, it->second, bias, Y, ldy, accumulate, relu);
  return true;
}

void linear_impl(px_backend *b, int M, int N, int K, const float *X, int ldx, const float *W,
                 const float *bias, float *Y, int ldy, int accumulate, int relu) {
  Ctx &g = ctx_of(b);
  if (M <= 0 || N <= 0) return;
  const int prec = precision_of(b);
  if (linear_half(g, prec, M, N, K, X, ldx, W, bias, Y, ldy, accumulate, relu)) return;
  // fp32 operands: exact fp32, or TF32 tensor cores for every reduced precision.
  const int fprec = prec == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32;
  if (linear_lt(g, fprec, PxGemm{1, M, N, K, X, ldx, 0, W, 0, bias, 0, relu, accumulate, Y, ldy, 0, 0})) return;
  const float beta = prefill_bias(g, M, N, Y, ldy, bias, accumulate);
  const float one = 1.0f;
  // Row-major Y = X W^T is column-major Y^T = W X^T: cuBLAS(op_T on W, op_N on X).
  gemm_math_mode(g, fprec);
  CKB(cublasSgemm(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, K, X, ldx, &beta, Y, ldy));
  if (relu) relu_rows(g, M, N, Y, ldy);
}

void be_linear(px_backend *b, int M, int N, int K, const float *X, int ldx, const float *W,
               const float *bias, float *Y, int ldy, int accumulate, int /*seg*/) {
  CTX(b);
  PROF("linear");
  linear_impl(b, M, N, K, X, ldx, W, bias, Y, ldy, accumulate, 0);
}

void be_linear_relu(px_backend *b, int M, int N, int K, const float *X, int ldx, const float *W,
                    const float *bias, float *Y, int ldy, int /*seg*/) {
  CTX(b);
  PROF("linear_relu");
  linear_impl(b, M, N, K, X, ldx, W, bias, Y, ldy, 0, 1);
}

__global__ void k_fill_bias_batched(int count, int M, int N, float *Y, int64_t sy, const float *bias,
                                    int64_t sb) {
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
    k_fill_bias_batched<<<grid2d(count * M, N, threads_for(N)), threads_for(N), 0, g.stream>>>(count, M, N, Y, sy, bias, sb);
    LAUNCHED("fill_bias_batched");
    beta = 1.0f;
  }
  const float one = 1.0f;
  gemm_math_mode(g, precision_of(b) == PX_PRECISION_FP32 ? PX_PRECISION_FP32 : PX_PRECISION_TF32);
  CKB(cublasSgemmStridedBatched(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, K, sw, X, K, sx, &beta,
                                Y, N, sy, count));
}

int be_x16_weight(px_backend *b, const float *W, int K) {
  CTX(b);
  if (!half_type(precision_of(b)) || K < 16) return -1;
  auto it = g.whalf.find(W);
  return it == g.whalf.end() ? -1 : it->second.e;
}

void be_linear_x16(px_backend *b, int M, int N, int K, const void *X16, const float *W, const float *bias,
                   void *Y, int ldy, int y16) {
  CTX(b);
  PROF("linear_x16");
  if (M <= 0 || N <= 0) return;
  const int ab = half_type(precision_of(b));
  auto it = g.whalf.find(W);
  if (!ab || it == g.whalf.end() || (y16 && bias)) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "internal: linear_x16 without a 16-bit weight, or a 16-bit Y with a bias"));
    return;
  }
  gemm_half(g, ab, M, N, K, (const uint16_t *)X16, it->second, bias, Y, ldy, 0, 0, y16 ? ab : 0);
}

// A 16-bit copy of a device weight matrix (converted on the device), used by linear_half
// and linear_x16; its GEMM input is stored times 2^-e.
int add_half_weight(Ctx &g, const float *W, size_t n, int precision, int e) {
  if (g.whalf.count(W)) return 0;
  auto *dst = (uint16_t *)dev_alloc(g, n * sizeof(uint16_t) + 16);
  if (!dst) return PX_ERR_NOMEM;
  const unsigned blocks = (unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
  if (precision == PX_PRECISION_BF16)
    k_to_half_flat<1><<<blocks, 256, 0, g.stream>>>((int64_t)n, W, dst);
  else
    k_to_half_flat<2><<<blocks, 256, 0, g.stream>>>((int64_t)n, W, dst);
  LAUNCHED("to_half_flat");
  g.whalf[W] = Ctx::HalfW{dst, e};
  return g.sticky;
}

int be_weight_x16_make(px_backend *b, const float *W, size_t n, int e) {
  CTX(b);
  const int prec = precision_of(b);
  if (!half_type(prec)) return px_fail(PX_ERR_INPUT, "weight_x16_make: the %s view has no 16-bit weights", g.name);
  int rc = add_half_weight(g, W, n, prec, e);
  if (rc) g.sticky = 0;  // reported here, by this op
  return rc;
}

// Free the fp32 copy of W, which has a 16-bit copy that its GEMMs use instead (FP16: every
// GEMM on it goes through linear_x16). The 16-bit buffer's address then names the matrix
// (a live allocation, so no later buffer can share it): returned, for the caller's slot.
float *be_weight_drop_fp32(px_backend *b, float *W) {
  CTX(b);
  auto it = g.whalf.find(W);
  if (it == g.whalf.end()) return nullptr;
  const Ctx::HalfW hw = it->second;
  CK(cudaStreamSynchronize(g.main));  // queued conversions have read the fp32 copy
  g.whalf.erase(it);
  dev_free(g, W);
  float *key = reinterpret_cast<float *>(hw.p);
  g.whalf[key] = hw;
  g.generation++;
  return key;
}

}  // namespace pxcuda
