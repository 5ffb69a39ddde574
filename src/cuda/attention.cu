// The exact fp32 attention with pair bias (the fp32 precision, and the fallback of the
// tensor-core kernels in attention_tc.cu): fused kernels for the head widths the model
// uses (one block per query tile, the keys streamed through shared memory, softmax in
// registers, the gate applied on the way out), the 32x128 local atom attention as one
// kernel per (trunk, head, sample), and a cuBLAS + softmax path for any other shape.
#include "cuda/context.cuh"
#include "cuda/attention_tc.h"
#include "cuda/half_io.cuh"
#include "cuda/launch.cuh"

namespace pxcuda {

// Rows of T logits (one warp each): L = softmax(L + bias) in place; bias row = L row index
// modulo (H*T) (bias is [H, T, T], the logits [H, T, T] of one sample).
__global__ void k_softmax_bias(int rows, int T, float *L, const float *bias) {
  px_pdl_enter();
  int warps = blockDim.x / 32;
  int row = blockIdx.x * warps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;
  float *l = L + (size_t)row * T;
  const float *b = bias + (size_t)row * T;
  float mx = -INFINITY;
  for (int j = lane; j < T; j += 32) {
    float v = l[j] + b[j];
    l[j] = v;
    mx = fmaxf(mx, v);
  }
  mx = warp_max(mx);
  float sum = 0;
  for (int j = lane; j < T; j += 32) {
    float e = __expf(l[j] - mx);
    l[j] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int j = lane; j < T; j += 32) l[j] *= inv;
}

// Local atom attention, one block per (trunk, head, sample), nk threads (one per key).
// Shared memory: K and V windows [nk][d+1], the trunk's queries [nq][d+1], P [nq][nk].
__global__ void k_attention_local(int N, int H, int d, int nq, int nk, const float *Q,
                                  const float *K, const float *V, int ld, const float *bias,
                                  float scale, float *O) {
  px_pdl_enter();
  extern __shared__ float sm[];
  const int dp = d + 1;
  float *Ks = sm, *Vs = Ks + nk * dp, *Qs = Vs + nk * dp, *P = Qs + nq * dp;
  const int t = blockIdx.x, h = blockIdx.y, s = blockIdx.z, n_trunks = gridDim.x;
  const int q0 = t * nq, kstart = q0 - (nk - nq) / 2;
  const int C = H * d;
  const size_t base = (size_t)s * N;
  for (int idx = threadIdx.x; idx < nk * d; idx += blockDim.x) {
    int j = idx / d, c = idx % d, a = kstart + j;
    bool ok = a >= 0 && a < N;
    Ks[j * dp + c] = ok ? K[(base + a) * ld + h * d + c] : 0.0f;
    Vs[j * dp + c] = ok ? V[(base + a) * ld + h * d + c] : 0.0f;
  }
  for (int idx = threadIdx.x; idx < nq * d; idx += blockDim.x) {
    int i = idx / d, c = idx % d, a = q0 + i;
    Qs[i * dp + c] = a < N ? Q[(base + a) * ld + h * d + c] : 0.0f;
  }
  __syncthreads();
  const float *bt = bias + (((size_t)h * n_trunks + t) * nq) * nk;
  for (int j = threadIdx.x; j < nk; j += blockDim.x) {
    const int a = kstart + j;
    const bool ok = a >= 0 && a < N;
    for (int i = 0; i < nq; i++) {
      float acc = 0;
      for (int c = 0; c < d; c++) acc += Qs[i * dp + c] * Ks[j * dp + c];
      P[i * nk + j] = ok ? acc * scale + bt[(size_t)i * nk + j] : -INFINITY;
    }
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  for (int i = warp; i < nq; i += nw) {
    float *p = P + i * nk;
    float mx = -INFINITY;
    for (int j = lane; j < nk; j += 32) mx = fmaxf(mx, p[j]);
    mx = warp_max(mx);
    float sum = 0;
    for (int j = lane; j < nk; j += 32) {
      float e = __expf(p[j] - mx);  // exp(-inf) = 0 for masked keys
      p[j] = e;
      sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < nk; j += 32) p[j] *= inv;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < nq * d; idx += blockDim.x) {
    int i = idx / d, c = idx % d;
    if (q0 + i >= N) continue;
    float acc = 0;
    const float *p = P + i * nk;
    for (int j = 0; j < nk; j++) acc += p[j] * Vs[j * dp + c];
    O[(base + q0 + i) * C + h * d + c] = acc;
  }
}

// Fused attention: one block per (32-query tile, head, sample), 4 threads per query, each
// taking every 4th key of a 64-key tile staged in shared memory together with the tile
// of pair bias; online softmax in fp32 (exact arithmetic, no tensor cores); the four
// partial (max, sum, output) triples of a query are merged at the end. Full attention
// sweeps all L keys; local attention (atom transformers) the 128-key window of its
// 32-atom trunk starting 48 atoms before it, clipped to [0, N): masked keys never enter
// the softmax, which is what upstream's -1e10 gives (weight exactly 0).
constexpr int AQ = 32, ASPLIT = 4, AKT = 64;

template <int D>
__global__ void __launch_bounds__(AQ * ASPLIT)
k_attention_fused(int L, int H, int ld, const float *__restrict__ Q, const float *__restrict__ K,
                  const float *__restrict__ V, const float *__restrict__ bias, int local,
                  int n_trunks, float scale, float *__restrict__ O, const float *__restrict__ G,
                  int ldg) {
  px_pdl_enter();
  constexpr int DP = D + 4;  // shared row stride: float4-aligned, splits land on other banks
  __shared__ __align__(16) float kv[2 * AKT * DP];
  __shared__ float Bs[AQ * (AKT + 1)];
  float *Ks = kv, *Vs = kv + AKT * DP;
  const int tile = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, qi = tid / ASPLIT, sp = tid % ASPLIT;
  const int q0 = tile * AQ, i = q0 + qi;
  const bool qvalid = i < L;
  const size_t base = (size_t)s * L;
  const int kstart = q0 - 48;  // local window origin (window position 0)
  const int kbeg = local ? max(kstart, 0) : 0;
  const int kend = local ? min(kstart + 128, L) : L;
  float q[D], o[D];
#pragma unroll
  for (int c = 0; c < D; c++) {
    q[c] = qvalid ? Q[(base + i) * ld + h * D + c] * scale : 0.0f;
    o[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int t0 = kbeg; t0 < kend; t0 += AKT) {
    const int nk = min(AKT, kend - t0);
    __syncthreads();
    for (int idx = tid; idx < nk * (D / 4); idx += AQ * ASPLIT) {
      const int j = idx / (D / 4), c4 = (idx % (D / 4)) * 4;
      const size_t g = (base + t0 + j) * ld + h * D + c4;
      *reinterpret_cast<float4 *>(Ks + j * DP + c4) = *reinterpret_cast<const float4 *>(K + g);
      *reinterpret_cast<float4 *>(Vs + j * DP + c4) = *reinterpret_cast<const float4 *>(V + g);
    }
    for (int idx = tid; idx < AQ * nk; idx += AQ * ASPLIT) {
      const int r = idx / nk, j = idx % nk, ii = q0 + r;
      float b = 0.0f;
      if (ii < L)
        b = local ? bias[(((size_t)h * n_trunks + tile) * AQ + r) * 128 + (t0 + j - kstart)]
                  : bias[((size_t)h * L + ii) * L + t0 + j];
      Bs[r * (AKT + 1) + j] = b;
    }
    __syncthreads();
    if (qvalid) {
      for (int jj = sp; jj < nk; jj += ASPLIT) {
        const float *kr = Ks + jj * DP;
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma unroll
        for (int c = 0; c < D; c += 4) {
          const float4 k4 = *reinterpret_cast<const float4 *>(kr + c);
          a0 += q[c] * k4.x;
          a1 += q[c + 1] * k4.y;
          a2 += q[c + 2] * k4.z;
          a3 += q[c + 3] * k4.w;
        }
        const float sc = (a0 + a1) + (a2 + a3) + Bs[qi * (AKT + 1) + jj];
        if (sc > m) {
          const float f = __expf(m - sc);  // 0 on the first key (m = -inf)
          l *= f;
#pragma unroll
          for (int c = 0; c < D; c++) o[c] *= f;
          m = sc;
        }
        const float p = __expf(sc - m);
        l += p;
        const float *vr = Vs + jj * DP;
#pragma unroll
        for (int c = 0; c < D; c += 4) {
          const float4 v4 = *reinterpret_cast<const float4 *>(vr + c);
          o[c] += p * v4.x;
          o[c + 1] += p * v4.y;
          o[c + 2] += p * v4.z;
          o[c + 3] += p * v4.w;
        }
      }
    }
  }
  // Merge the ASPLIT partial results of each query through shared memory.
  __syncthreads();
  float *part = kv;  // AQ*ASPLIT*(D+2) <= 2*AKT*DP floats for D in {16, 32, 48, 64}
  part[tid * (D + 2)] = m;
  part[tid * (D + 2) + 1] = l;
#pragma unroll
  for (int c = 0; c < D; c++) part[tid * (D + 2) + 2 + c] = o[c];
  __syncthreads();
  if (!qvalid) return;
  const float *pq = part + qi * ASPLIT * (D + 2);
  float M = -INFINITY;
#pragma unroll
  for (int k = 0; k < ASPLIT; k++) M = fmaxf(M, pq[k * (D + 2)]);
  float w[ASPLIT], lsum = 0.0f;
#pragma unroll
  for (int k = 0; k < ASPLIT; k++) {
    w[k] = __expf(pq[k * (D + 2)] - M);
    lsum += pq[k * (D + 2) + 1] * w[k];
  }
  const float inv = 1.0f / lsum;
  float *out = O + (base + i) * (size_t)(H * D) + h * D;
  for (int c = sp; c < D; c += ASPLIT) {
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < ASPLIT; k++) acc += pq[k * (D + 2) + 2 + c] * w[k];
    out[c] = G ? acc * inv * sigmoidf_(G[(base + i) * (size_t)ldg + h * D + c]) : acc * inv;
  }
}

// Launch the fused kernel for head widths it is compiled for; false otherwise.
bool attention_fused(Ctx &g, int S, int L, int H, int d, int ld, const float *Q, const float *K,
                     const float *V, const float *bias, int local, float scale, float *O,
                     const float *G, int ldg) {
  const int tiles = (L + AQ - 1) / AQ;
  // float4 loads need 16-byte aligned rows.
  if ((ld % 4) || ((uintptr_t)Q % 16) || ((uintptr_t)K % 16) || ((uintptr_t)V % 16)) return false;
  dim3 grid(tiles, H, S);
  switch (d) {
#define PX_ATT_CASE(DD)                                                                                             \
  case DD:                                                                                                          \
    px_launch((k_attention_fused<DD>), grid, AQ * ASPLIT, 0, g.stream, g.pdl, L, H, ld, Q, K, V, bias, local, tiles, \
              scale, O, G, ldg);                                                                                    \
    LAUNCHED("attention_fused");                                                                                    \
    return true;
    PX_ATT_CASE(16)
    PX_ATT_CASE(32)
    PX_ATT_CASE(48)
    PX_ATT_CASE(64)
#undef PX_ATT_CASE
    default:
      return false;
  }
}

// The fp32 attention (tensor cores at the reduced precisions, else exact fp32).
static void attention_full_f32(px_backend *b, Ctx &g, int S, int T, int H, int d, const float *Q, const float *K,
                               const float *V, int ld, const float *bias, float scale, float *O, const float *G,
                               int ldg) {
  if (precision_of(b) != PX_PRECISION_FP32 &&
      px_attention_tc(&g.tc, g.stream, S, T, H, d, ld, Q, K, V, bias, 0, 0, 0, scale, O, G, ldg, 0)) {
    LAUNCHED("attention_tc");  // tensor cores (tf32) for the reduced precisions
    return;
  }
  if (!g.cublas_attention && attention_fused(g, S, T, H, d, ld, Q, K, V, bias, 0, scale, O, G, ldg)) return;
  const size_t per = (size_t)H * T * T;
  float *L = grow(g, g.logits[g.cur_lane], g.logits_n[g.cur_lane], per);
  if (!L) return;
  gemm_math_mode(g, precision_of(b));
  const float zero = 0.0f, one = 1.0f;
  const int C = H * d;
  for (int s = 0; s < S; s++) {
    const size_t off = (size_t)s * T * ld;
    // L[h] (row-major [T_q, T_k]) = scale * Q_h K_h^T, as column-major L^T = K Q^T.
    CKB(cublasSgemmStridedBatched(g.blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, d, &scale, K + off, ld, d,
                                  Q + off, ld, d, &zero, L, T, (long long)T * T, H));
    px_launch(k_softmax_bias, (H * T + 7) / 8, 256, 0, g.stream, g.pdl, H * T, T, L, bias);
    LAUNCHED("softmax_bias");
    // O_h (row-major [T, d], row stride C) = P_h V_h, as column-major O^T = V^T P^T.
    CKB(cublasSgemmStridedBatched(g.blas, CUBLAS_OP_N, CUBLAS_OP_N, d, T, T, &one, V + off, ld, d,
                                  L, T, (long long)T * T, &zero, O + (size_t)s * T * C, C, d, H));
  }
  if (G) {
    be_sigmoid_mul(b, S * T, C, O, C, G, ldg);
    g.op = "attention_full";
  }
}

// O of type ot: a 16-bit O is written by the tensor-core kernel's epilogue (no conversion
// pass) when it takes the shape, else converted from an fp32 result.
void be_attention_full(px_backend *b, int S, int T, int H, int d, const float *Q, const float *K, const float *V,
                       int ld, const float *bias, float scale, void *O, const float *G, int ldg, px_etype ot) {
  CTX(b);
  if (ot == PX_F32) {
    PROF("attention_full");
    attention_full_f32(b, g, S, T, H, d, Q, K, V, ld, bias, scale, (float *)O, G, ldg);
    return;
  }
  PROF("attention_full_x16");
  if (ot != PX_BF16 && ot != PX_F16) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "attention_full on %s: unknown output type %d", g.name, (int)ot));
    return;
  }
  if (px_attention_tc(&g.tc, g.stream, S, T, H, d, ld, Q, K, V, bias, 0, 0, 0, scale, O, G, ldg, (int)ot)) {
    LAUNCHED("attention_tc_x16");
    return;
  }
  float *t = f32_scratch(g, (size_t)S * T * H * d);
  if (!t) return;
  attention_full_f32(b, g, S, T, H, d, Q, K, V, ld, bias, scale, t, G, ldg);
  to_half(g, (int)ot, S * T, H * d, t, H * d, (uint16_t *)O);
}

// fp16 [q k v g] rows (stride ld) to fp32 rows of 4C: q + q_bias, k, v, g (the fallback of
// attention_full_h16).
__global__ void k_qkvg_to_f32(int M, int C, int ld, const uint16_t *Q, const uint16_t *K, const uint16_t *V,
                              const uint16_t *G, const float *qb, float *Y) {
  px_pdl_enter();
  const int64_t n = (int64_t)M * 4 * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / (4 * C);
    const int c = (int)(i % (4 * C)), part = c / C, j = c % C;
    const uint16_t *src = part == 0 ? Q : part == 1 ? K : part == 2 ? V : G;
    float v = src ? load1<2>(src, (size_t)r * ld + j) : 0.0f;
    if (part == 0 && qb) v += qb[j];
    Y[i] = v;
  }
}

// The fallback of the fp16-input attentions: M fp16 rows of q, k, v, g (stride ld) as fp32
// [M, 4C] rows (q + q_bias, k, v, g) at the start of the lane's scratch, followed by room for
// an fp32 [M, C] output at the returned pointer + 4 M C. NULL when the scratch cannot be had
// (reported as the op's out-of-memory) or M <= 0.
static float *qkvg_f32_scratch(Ctx &g, int M, int C, int ld, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                               const uint16_t *gt, const float *q_bias) {
  float *t = f32_scratch(g, (size_t)M * 5 * C);
  if (!t || M <= 0) return nullptr;
  px_launch(k_qkvg_to_f32, (int)std::min<int64_t>(((int64_t)M * 4 * C + 255) / 256, 65535), 256, 0, g.stream, g.pdl, M,
            C, ld, q, k, v, gt, q_bias, t);
  LAUNCHED("qkvg_to_f32");
  return t;
}

// attention_full on fp16 inputs: the fp16-input kernel when it takes the shape, else the
// inputs converted to fp32 (q's bias added) and the fp32-input path, its output converted.
void be_attention_full_h16(px_backend *b, int S, int T, int H, int d, const void *Q, const void *K, const void *V,
                           const void *G, int ld, const float *q_bias, const float *bias, const void *bias16, int ldb16,
                           float scale, void *O) {
  CTX(b);
  PROF("attention_full_h16");
  const uint16_t *q = (const uint16_t *)Q, *k = (const uint16_t *)K, *v = (const uint16_t *)V,
                 *gt = (const uint16_t *)G;
  if (px_attention_tc_h16in(&g.tc, g.stream, S, T, H, d, ld, q, k, v, gt, q_bias, bias, (const uint16_t *)bias16, ldb16,
                            scale, (uint16_t *)O)) {
    LAUNCHED("attention_tc_h16in");
    return;
  }
  const int C = H * d, M = S * T;
  float *t = qkvg_f32_scratch(g, M, C, ld, q, k, v, gt, q_bias);
  if (!t) return;
  float *o = t + (size_t)M * 4 * C;
  attention_full_f32(b, g, S, T, H, d, t, t + C, t + 2 * C, 4 * C, bias, scale, o, G ? t + 3 * C : nullptr, 4 * C);
  to_half(g, (int)PX_F16, M, C, o, C, (uint16_t *)O);
}

// O of type ot: fp16 (the FP16 precision's atom blocks) is written by the tensor-core
// kernel's epilogue when it takes the shape, else converted from an fp32 result.
void be_attention_local(px_backend *b, int S, int N, int H, int d, int nq, int nk, const float *Q,
                        const float *K, const float *V, int ld, const float *bias, float scale,
                        void *Ov, const float *G, int ldg, px_etype ot) {
  CTX(b);
  PROF(ot != PX_F32 ? "attention_local_x16" : "attention_local");
  if (ot != PX_F32 && ot != PX_BF16 && ot != PX_F16) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "attention_local on %s: unknown output type %d", g.name, (int)ot));
    return;
  }
  if (precision_of(b) != PX_PRECISION_FP32 &&
      px_attention_tc(&g.tc, g.stream, S, N, H, d, ld, Q, K, V, bias, 1, nq, nk, scale, Ov, G, ldg, (int)ot)) {
    LAUNCHED(ot != PX_F32 ? "attention_tc_local_x16" : "attention_tc_local");
    return;
  }
  float *O = (float *)Ov;
  if (ot != PX_F32) {
    O = f32_scratch(g, (size_t)S * N * H * d);
    if (!O) return;
  }
  const int C = H * d;
  if (!(nq == AQ && nk == 128 && attention_fused(g, S, N, H, d, ld, Q, K, V, bias, 1, scale, O, G, ldg))) {
    const int n_trunks = (N + nq - 1) / nq;
    const size_t smem = sizeof(float) * ((size_t)(2 * nk + nq) * (d + 1) + (size_t)nq * nk);
    if (smem > 48 * 1024 && smem > g.local_smem_configured) {
      CK(cudaFuncSetAttribute(k_attention_local, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
      g.local_smem_configured = smem;
    }
    dim3 grid(n_trunks, H, S);
    px_launch(k_attention_local, grid, nk, smem, g.stream, g.pdl, N, H, d, nq, nk, Q, K, V, ld, bias, scale, O);
    LAUNCHED("attention_local");
    if (G) be_sigmoid_mul(b, S * N, C, O, C, G, ldg);
  }
  if (ot != PX_F32) {
    g.op = "attention_local";
    to_half(g, (int)ot, S * N, C, O, C, (uint16_t *)Ov);
  }
}

// attention_local on fp16 inputs: the fp16-input kernel when it takes the shape, else the
// inputs converted to fp32 (q's bias added) and attention_local with an fp16 output.
void be_attention_local_h16(px_backend *b, int S, int N, int H, int d, int nq, int nk, const void *Q, const void *K,
                            const void *V, const void *G, int ld, const float *q_bias, const float *bias, float scale,
                            void *O) {
  CTX(b);
  PROF("attention_local_h16");
  const uint16_t *q = (const uint16_t *)Q, *k = (const uint16_t *)K, *v = (const uint16_t *)V,
                 *gt = (const uint16_t *)G;
  if (px_attention_tc_h16in_local(&g.tc, g.stream, S, N, H, d, nq, nk, ld, q, k, v, gt, q_bias, bias, scale,
                                  (uint16_t *)O)) {
    LAUNCHED("attention_tc_h16in_local");
    return;
  }
  const int C = H * d, M = S * N;
  float *t = qkvg_f32_scratch(g, M, C, ld, q, k, v, gt, q_bias);
  if (!t) return;
  // An fp32 output here (an fp16 one could take the same scratch), converted after.
  float *o = t + (size_t)M * 4 * C;
  be_attention_local(b, S, N, H, d, nq, nk, t, t + C, t + 2 * C, 4 * C, bias, scale, o, G ? t + 3 * C : nullptr,
                     4 * C, PX_F32);
  to_half(g, (int)PX_F16, M, C, o, C, (uint16_t *)O);
}

}  // namespace pxcuda
