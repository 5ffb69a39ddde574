// Flash attention on the tensor cores (TF32 mma.sync.m16n8k8, fp32 accumulation) for the
// CUDA backend's TF32 and BF16 precisions.
//
// One block per (query tile, head, sample); each warp owns 16 query rows. Per 64-key tile:
// K and V are staged in shared memory already rounded to tf32 (cvt.rna), S = Q K^T + bias
// runs on the tensor cores with the pair bias as the accumulator's initial value (so the
// bias is added in fp32, exactly), keys outside the sequence / window get -inf, the online
// softmax (running max and sum per row) is fp32, and O += P V again on the tensor cores.
//
// P never leaves registers: the m16n8k8 accumulator gives a thread columns 2t and 2t+1 of
// rows g and g+8, while the A operand wants columns t and t+4. Since P V sums over keys,
// the k-slots are relabelled instead of moving data: slot t is key 2t and slot t+4 is key
// 2t+1 of each 8-key group, and the V operand (B, element (k, n)) is read from the V rows
// of those keys. The softmax denominator sums the same tf32-rounded P that multiplies V.
//
// Shared rows are D + 4 words: with g = lane / 4, t = lane % 4, the K reads (row g, word
// t) and V reads (row 2t, word g) both land on 32 distinct banks.
#include "cuda/attention_tc.h"

#include <cstdint>
#include <cstdlib>

namespace {

constexpr int KT = 64;  // keys per tile

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// c += a b for one m16n8k8 TF32 tile (a row-major 16x8, b column-major 8x8).
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// QT queries per block (64 for full attention, 32 = one trunk for local attention).
// Local: the window of nkw keys starts at q0 - (nkw - QT) / 2; bias [H, n_trunks, QT, nkw].
template <int D, int QT>
__global__ void __launch_bounds__(QT * 2)
k_attention_tc(int L, int H, int ld, const float *__restrict__ Q, const float *__restrict__ K,
               const float *__restrict__ V, const float *__restrict__ bias, int local, int nkw,
               float scale, float *__restrict__ O) {
  constexpr int NT = QT * 2, DP = D + 4, DK = D / 8;
  __shared__ __align__(16) uint32_t Ks[KT * DP];
  __shared__ __align__(16) uint32_t Vs[KT * DP];
  const int tile = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int q0 = tile * QT;
  const size_t base = (size_t)s * L;
  const int r0 = w * 16 + g, r1 = r0 + 8;  // rows of this thread within the block's tile
  const int i0 = q0 + r0, i1 = q0 + r1;
  // Rows past L compute on row L-1's data (never stored): no out-of-range reads.
  const int c0 = min(i0, L - 1), c1 = min(i1, L - 1);
  int kbeg = 0, kend = L, kstart = 0;
  if (local) {
    kstart = q0 - (nkw - QT) / 2;
    kbeg = max(kstart, 0);
    kend = min(kstart + nkw, L);
  }
  // Bias rows, indexed by absolute key j.
  const float *b0p, *b1p;
  if (local) {
    const int64_t rowb = ((int64_t)h * gridDim.x + tile) * QT;
    b0p = bias + (rowb + r0) * nkw - kstart;
    b1p = bias + (rowb + r1) * nkw - kstart;
  } else {
    b0p = bias + ((int64_t)h * L + c0) * L;
    b1p = bias + ((int64_t)h * L + c1) * L;
  }

  // Q fragments (scaled, tf32), kept in registers for the whole sweep.
  uint32_t qa[DK][4];
  {
    const float *qp0 = Q + (base + c0) * ld + h * D, *qp1 = Q + (base + c1) * ld + h * D;
#pragma unroll
    for (int kk = 0; kk < DK; kk++) {
      qa[kk][0] = to_tf32(qp0[8 * kk + t] * scale);
      qa[kk][1] = to_tf32(qp1[8 * kk + t] * scale);
      qa[kk][2] = to_tf32(qp0[8 * kk + t + 4] * scale);
      qa[kk][3] = to_tf32(qp1[8 * kk + t + 4] * scale);
    }
  }
  float o[DK][4];
#pragma unroll
  for (int dn = 0; dn < DK; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int t0 = kbeg; t0 < kend; t0 += KT) {
    const int nk = min(KT, kend - t0);
    // Bias of this tile as the accumulators' initial values (masked keys: -inf below).
    float sc[KT / 8][4];
#pragma unroll
    for (int n = 0; n < KT / 8; n++) {
      const int j = t0 + 8 * n + 2 * t;
      sc[n][0] = j < kend ? __ldg(b0p + j) : 0.0f;
      sc[n][1] = j + 1 < kend ? __ldg(b0p + j + 1) : 0.0f;
      sc[n][2] = j < kend ? __ldg(b1p + j) : 0.0f;
      sc[n][3] = j + 1 < kend ? __ldg(b1p + j + 1) : 0.0f;
    }
    __syncthreads();  // previous tile's readers are done
    for (int idx = tid; idx < KT * (D / 4); idx += NT) {
      const int j = idx / (D / 4), c4 = (idx % (D / 4)) * 4;
      float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
      if (j < nk) {
        const size_t gi = (base + t0 + j) * ld + h * D + c4;
        kv = __ldg(reinterpret_cast<const float4 *>(K + gi));
        vv = __ldg(reinterpret_cast<const float4 *>(V + gi));
      }
      *reinterpret_cast<uint4 *>(Ks + j * DP + c4) =
          make_uint4(to_tf32(kv.x), to_tf32(kv.y), to_tf32(kv.z), to_tf32(kv.w));
      *reinterpret_cast<uint4 *>(Vs + j * DP + c4) =
          make_uint4(to_tf32(vv.x), to_tf32(vv.y), to_tf32(vv.z), to_tf32(vv.w));
    }
    __syncthreads();

    // S = Q K^T + bias.
#pragma unroll
    for (int n = 0; n < KT / 8; n++) {
      if (8 * n < nk) {
        const uint32_t *kr = Ks + (8 * n + g) * DP + t;
#pragma unroll
        for (int kk = 0; kk < DK; kk++) mma_tf32(sc[n], qa[kk], kr[8 * kk], kr[8 * kk + 4]);
      }
    }
    if (nk < KT) {
#pragma unroll
      for (int n = 0; n < KT / 8; n++) {
        const int jj = 8 * n + 2 * t;
        if (jj >= nk) sc[n][0] = sc[n][2] = -INFINITY;
        if (jj + 1 >= nk) sc[n][1] = sc[n][3] = -INFINITY;
      }
    }
    // Online softmax (each row's 64 columns live in one quad of lanes).
    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int n = 0; n < KT / 8; n++) {
      mx0 = fmaxf(mx0, fmaxf(sc[n][0], sc[n][1]));
      mx1 = fmaxf(mx1, fmaxf(sc[n][2], sc[n][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // Every tile holds at least one valid key, so mx0, mx1 are finite; m = -inf gives 0.
    const float f0 = __expf(m0 - mx0), f1 = __expf(m1 - mx1);
    m0 = mx0;
    m1 = mx1;
    l0 *= f0;
    l1 *= f1;
#pragma unroll
    for (int dn = 0; dn < DK; dn++) {
      o[dn][0] *= f0;
      o[dn][1] *= f0;
      o[dn][2] *= f1;
      o[dn][3] *= f1;
    }
    // O += P V with P in tf32 straight from the accumulators (k-slot relabelling above).
#pragma unroll
    for (int n = 0; n < KT / 8; n++) {
      if (8 * n < nk) {
        uint32_t pa[4];
        pa[0] = to_tf32(__expf(sc[n][0] - mx0));  // row g,   key 8n+2t   (slot t)
        pa[1] = to_tf32(__expf(sc[n][2] - mx1));  // row g+8, key 8n+2t   (slot t)
        pa[2] = to_tf32(__expf(sc[n][1] - mx0));  // row g,   key 8n+2t+1 (slot t+4)
        pa[3] = to_tf32(__expf(sc[n][3] - mx1));  // row g+8, key 8n+2t+1 (slot t+4)
        l0 += __uint_as_float(pa[0]) + __uint_as_float(pa[2]);
        l1 += __uint_as_float(pa[1]) + __uint_as_float(pa[3]);
        const uint32_t *v0 = Vs + (8 * n + 2 * t) * DP + g, *v1 = v0 + DP;
#pragma unroll
        for (int dn = 0; dn < DK; dn++) mma_tf32(o[dn], pa, v0[8 * dn], v1[8 * dn]);
      }
    }
  }
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
  const int C = H * D;
  if (i0 < L) {
    float *out = O + (base + i0) * C + h * D + 2 * t;
#pragma unroll
    for (int dn = 0; dn < DK; dn++)
      *reinterpret_cast<float2 *>(out + 8 * dn) = make_float2(o[dn][0] * inv0, o[dn][1] * inv0);
  }
  if (i1 < L) {
    float *out = O + (base + i1) * C + h * D + 2 * t;
#pragma unroll
    for (int dn = 0; dn < DK; dn++)
      *reinterpret_cast<float2 *>(out + 8 * dn) = make_float2(o[dn][2] * inv1, o[dn][3] * inv1);
  }
}

template <int D>
void launch(cudaStream_t st, int S, int L, int H, int ld, const float *Q, const float *K,
            const float *V, const float *bias, int local, int nk, float scale, float *O) {
  if (local) {
    dim3 grid((L + 31) / 32, H, S);
    k_attention_tc<D, 32><<<grid, 64, 0, st>>>(L, H, ld, Q, K, V, bias, 1, nk, scale, O);
  } else {
    dim3 grid((L + 63) / 64, H, S);
    k_attention_tc<D, 64><<<grid, 128, 0, st>>>(L, H, ld, Q, K, V, bias, 0, 0, scale, O);
  }
}

}  // namespace

int px_attention_tc(cudaStream_t stream, int S, int L, int H, int d, int ld, const float *Q,
                    const float *K, const float *V, const float *bias, int local, int nq, int nk,
                    float scale, float *O) {
  static const int disabled = getenv("PXDIFF_NO_TC_ATTENTION") != nullptr;
  if (disabled) return 0;
  if (local && (nq != 32 || nk < nq)) return 0;
  if ((ld % 4) || ((uintptr_t)Q % 16) || ((uintptr_t)K % 16) || ((uintptr_t)V % 16) ||
      ((uintptr_t)O % 8))
    return 0;
  if (S > 65535 || H > 65535) return 0;
  if (S <= 0 || L <= 0 || H <= 0) return 1;  // nothing to compute
  switch (d) {
    case 16: launch<16>(stream, S, L, H, ld, Q, K, V, bias, local, nk, scale, O); return 1;
    case 32: launch<32>(stream, S, L, H, ld, Q, K, V, bias, local, nk, scale, O); return 1;
    case 48: launch<48>(stream, S, L, H, ld, Q, K, V, bias, local, nk, scale, O); return 1;
    case 64: launch<64>(stream, S, L, H, ld, Q, K, V, bias, local, nk, scale, O); return 1;
    default: return 0;
  }
}
