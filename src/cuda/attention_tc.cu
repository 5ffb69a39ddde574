// Flash attention on the tensor cores (TF32 mma.sync.m16n8k8, fp32 accumulation) for the
// CUDA backend's TF32 and BF16 precisions, and on fp16 operands (m16n8k16) for the FP16
// precision's full attention (k_attention_h16, below).
//
// Each warp owns 16 query rows. Per 64-key tile: K and V sit in shared memory already
// rounded to tf32, S = Q K^T + bias runs on the tensor cores with the pair bias as the
// accumulator's initial value (so the bias is added in fp32, exactly), keys outside the
// sequence / window get -inf, the online softmax (running max and sum per row) is fp32,
// and O += P V again on the tensor cores.
//  - Full attention (k_attention_tc): one block per (128 queries, head, sample), 8 warps
//    (64 queries, 4 warps, when that takes fewer waves of blocks);
//    K/V tiles of 64 keys stream through a two-stage cp.async ring.
//  - Local attention (k_attention_tc_local): one block per (4 query trunks of 32, head,
//    sample), 8 warps. The trunks' windows (nk keys each, 32 apart) overlap, so the block
//    stages their union (96 + nk keys) once and every warp sweeps its own window out of
//    it: each key is copied and rounded by ~1.75 blocks instead of 4, and one barrier per
//    block replaces two per tile. With 128 registers and ~76 KB of shared memory (d = 32,
//    nk = 128) two blocks, 16 warps, fit an SM (the 2-warp block of one trunk, 168
//    registers and 43 KB, gave ~10).
//
// P never leaves registers: the m16n8k8 accumulator gives a thread columns 2t and 2t+1 of
// rows g and g+8, while the A operand wants columns t and t+4. Since P V sums over keys,
// the k-slots are relabelled instead of moving data: slot t is key 2t and slot t+4 is key
// 2t+1 of each 8-key group, and the V operand (B, element (k, n)) is read from the V rows
// of those keys. The softmax denominator sums the same tf32-rounded P that multiplies V.
//
// History (H200, S=10 samples; full: T=330, H=16, d=48; local: N=2320, H=4, d=32):
//  - first version, 64 queries per block, cvt.rna/__expf, predicated scalar bias loads:
//    full 76.9 us, local 49.5 us per call (the exact fp32 kernel: 316.5 / 146.4 us).
//    ncu: ~1460 instructions per warp per key tile for 96 mma; issue- and latency-bound.
//  - rounding by one integer add, exp2 with one FFMA, 8-byte bias loads and no per-key
//    predicates on full tiles, per-thread chunk offsets computed once: full 68 us, local
//    43 us; 128 queries per block for full attention: 58 us.
//  - local: 4 trunks per block sharing one staged span of keys (above).
// Error vs the fp32 CPU kernels: ~3.2e-4 relative (a CPU emulation of bf16 operands gives
// ~2.6e-3, so this kernel keeps tf32 operands for the BF16 precision too).
#include "cuda/attention_tc.h"
#include "cuda/half_io.cuh"
#include "cuda/launch.cuh"
#include "cuda/mma.cuh"

#include <cstdint>
#include <cstdlib>
#include <type_traits>

namespace {

constexpr int KT = 64;  // keys per tile
constexpr float L2E = 1.4426950408889634f;  // log2(e): exp(x) = 2^(x log2 e)

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
// The same rounding in one integer add: the mma reads only the top 19 bits of a tf32
// operand, so adding half of the dropped range rounds to nearest, ties away from zero,
// exactly as cvt.rna does for finite values (cvt.rna is three instructions on sm_90: an
// infinity test, the add and a mask). tf32_val gives the rounded value as a float.
__device__ __forceinline__ uint32_t tf32_op(float x) { return __float_as_uint(x) + 0x1000u; }
__device__ __forceinline__ float tf32_val(uint32_t op) { return __uint_as_float(op & 0xffffe000u); }
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// c += a b for one m16n8k8 TF32 tile (a row-major 16x8, b column-major 8x8).
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}


// Shared row strides: K rows are read as 16-byte vectors (row g, word 4t) and want a
// stride of 16 (mod 32) words; V rows are read as 8-byte pairs (row 2t, word 2g) and
// want D + 4. Both are then free of bank conflicts, from any first row.
template <int D>
struct TcCfg {
  static constexpr int DPK = (D % 32 == 16) ? D : D + 16;
  static constexpr int DPV = D + 4;
  static constexpr int STAGE = KT * (DPK + DPV);      // floats per pipeline stage (full)
  static constexpr int SMEM = 2 * STAGE * (int)sizeof(float);  // two stages (full)
};

template <bool B>
struct Flag {
  static constexpr bool value = B;
};
template <int N>
struct Int {
  static constexpr int value = N;
};

// Feature relabelling (sums over features / keys don't care about order):
//  - Q K^T: k-slots (t, t+4) of step 2m are features 16m+4t, +1 and of step 2m+1 features
//    16m+4t+2, +3, so a thread's K operand for two steps is one 16-byte shared load.
//  - P V: column n of output tile 2m is feature 16m+2n, of tile 2m+1 feature 16m+2n+1, so
//    the V operand is an 8-byte load and a thread's outputs are float4 runs.

// Q fragments of rows qp0, qp1 (pointers at feature 4t), scaled, tf32, relabelled as above.
template <int D>
__device__ __forceinline__ void load_q(uint32_t (&qa)[D / 8][4], const float *qp0, const float *qp1,
                                       float scale) {
#pragma unroll
  for (int m = 0; m < D / 16; m++) {
    const float4 x = __ldg(reinterpret_cast<const float4 *>(qp0 + 16 * m));
    const float4 y = __ldg(reinterpret_cast<const float4 *>(qp1 + 16 * m));
    qa[2 * m][0] = to_tf32(x.x * scale);
    qa[2 * m][2] = to_tf32(x.y * scale);
    qa[2 * m + 1][0] = to_tf32(x.z * scale);
    qa[2 * m + 1][2] = to_tf32(x.w * scale);
    qa[2 * m][1] = to_tf32(y.x * scale);
    qa[2 * m][3] = to_tf32(y.y * scale);
    qa[2 * m + 1][1] = to_tf32(y.z * scale);
    qa[2 * m + 1][3] = to_tf32(y.w * scale);
  }
}

// Bias of the tile of keys t0.. as the accumulators' initial values (masked keys get -inf
// in tile_math). b0p, b1p are the thread's two bias rows indexed by absolute key; FULL:
// all KT keys valid and 8-byte loads allowed (no per-key predicates).
template <bool FULL>
__device__ __forceinline__ void load_bias(float (&sc)[KT / 8][4], const float *b0p, const float *b1p,
                                          int t0, int kend, int t) {
#pragma unroll
  for (int n = 0; n < KT / 8; n++) {
    const int j = t0 + 8 * n + 2 * t;
    if (FULL) {
      const float2 x = __ldg(reinterpret_cast<const float2 *>(b0p + j));
      const float2 y = __ldg(reinterpret_cast<const float2 *>(b1p + j));
      sc[n][0] = x.x;
      sc[n][1] = x.y;
      sc[n][2] = y.x;
      sc[n][3] = y.y;
    } else {
      sc[n][0] = j < kend ? __ldg(b0p + j) : 0.0f;
      sc[n][1] = j + 1 < kend ? __ldg(b0p + j + 1) : 0.0f;
      sc[n][2] = j < kend ? __ldg(b1p + j) : 0.0f;
      sc[n][3] = j + 1 < kend ? __ldg(b1p + j + 1) : 0.0f;
    }
  }
}

// One key tile of a warp's 16 rows: S = Q K^T + bias (sc holds the bias), online softmax,
// O += P V. Ks and Vs are the tile's first K and V rows in shared memory (tf32 already);
// nk >= 1 keys are valid (FULL: nk == KT). Rows of 8-key groups at or past nk are never
// read; the rest of a partly valid group is read and must be finite (its P is 0).
template <int D, bool FULL>
__device__ __forceinline__ void tile_math(float (&sc)[KT / 8][4], const uint32_t *Ks, const uint32_t *Vs,
                                          int nk, const uint32_t (&qa)[D / 8][4], float (&o)[D / 8][4],
                                          float &m0, float &m1, float &l0, float &l1, int g, int t) {
  constexpr int DK = D / 8, DG = D / 16, DPK = TcCfg<D>::DPK, DPV = TcCfg<D>::DPV;
  // S = Q K^T + bias.
#pragma unroll
  for (int n = 0; n < KT / 8; n++) {
    if (FULL || 8 * n < nk) {
      const uint32_t *kr = Ks + (8 * n + g) * DPK + 4 * t;
#pragma unroll
      for (int m = 0; m < DG; m++) {
        const uint4 kv = *reinterpret_cast<const uint4 *>(kr + 16 * m);
        mma_tf32(sc[n], qa[2 * m], kv.x, kv.y);
        mma_tf32(sc[n], qa[2 * m + 1], kv.z, kv.w);
      }
    }
  }
  if (!FULL && nk < KT) {
#pragma unroll
    for (int n = 0; n < KT / 8; n++) {
      const int jj = 8 * n + 2 * t;
      if (jj >= nk) sc[n][0] = sc[n][2] = -INFINITY;
      if (jj + 1 >= nk) sc[n][1] = sc[n][3] = -INFINITY;
    }
  }
  // Online softmax (each row's 64 columns live in one quad of lanes), base 2.
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
  // Every tile holds at least one valid key (callers guarantee nk >= 1), so mx0, mx1 are
  // finite; the first tile's m = -inf gives a factor 0, never inf - inf.
  const float f0 = ex2((m0 - mx0) * L2E), f1 = ex2((m1 - mx1) * L2E);
  const float nm0 = -mx0 * L2E, nm1 = -mx1 * L2E;
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
    if (FULL || 8 * n < nk) {
      uint32_t pa[4];
      pa[0] = tf32_op(ex2(fmaf(sc[n][0], L2E, nm0)));  // row g,   key 8n+2t   (slot t)
      pa[1] = tf32_op(ex2(fmaf(sc[n][2], L2E, nm1)));  // row g+8, key 8n+2t   (slot t)
      pa[2] = tf32_op(ex2(fmaf(sc[n][1], L2E, nm0)));  // row g,   key 8n+2t+1 (slot t+4)
      pa[3] = tf32_op(ex2(fmaf(sc[n][3], L2E, nm1)));  // row g+8, key 8n+2t+1 (slot t+4)
      l0 += tf32_val(pa[0]) + tf32_val(pa[2]);
      l1 += tf32_val(pa[1]) + tf32_val(pa[3]);
      const uint32_t *v0 = Vs + (8 * n + 2 * t) * DPV + 2 * g, *v1 = v0 + DPV;
#pragma unroll
      for (int m = 0; m < DG; m++) {
        const uint2 a = *reinterpret_cast<const uint2 *>(v0 + 16 * m);
        const uint2 b = *reinterpret_cast<const uint2 *>(v1 + 16 * m);
        mma_tf32(o[2 * m], pa, a.x, b.x);
        mma_tf32(o[2 * m + 1], pa, a.y, b.y);
      }
    }
  }
}

// Normalise and store rows i0, i1 (those < L) of sample base / L, head h, times the
// attention gate sigmoid(G) when one is given (fused gating); O's elements are OT (store4).
template <int D, int OT>
__device__ __forceinline__ void store_rows(const float (&o)[D / 8][4], float l0, float l1, void *O,
                                           const float *G, int ldg, size_t base, int L, int H, int h,
                                           int i0, int i1, int t) {
  constexpr int DG = D / 16;
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = __frcp_rn(l0), inv1 = __frcp_rn(l1);
  const int C = H * D;
  auto gate = [&](int row, int m) -> float4 {
    if (!G) return make_float4(1.0f, 1.0f, 1.0f, 1.0f);
    const float4 gv = *reinterpret_cast<const float4 *>(G + (base + row) * (size_t)ldg + h * D + 4 * t + 16 * m);
    return make_float4(__frcp_rn(1.0f + __expf(-gv.x)), __frcp_rn(1.0f + __expf(-gv.y)),
                       __frcp_rn(1.0f + __expf(-gv.z)), __frcp_rn(1.0f + __expf(-gv.w)));
  };
  if (i0 < L) {
    const size_t out = (base + i0) * C + h * D + 4 * t;
#pragma unroll
    for (int m = 0; m < DG; m++) {
      const float4 gs = gate(i0, m);
      store4<OT>(O, out + 16 * m,
                 make_float4(o[2 * m][0] * inv0 * gs.x, o[2 * m + 1][0] * inv0 * gs.y, o[2 * m][1] * inv0 * gs.z,
                             o[2 * m + 1][1] * inv0 * gs.w));
    }
  }
  if (i1 < L) {
    const size_t out = (base + i1) * C + h * D + 4 * t;
#pragma unroll
    for (int m = 0; m < DG; m++) {
      const float4 gs = gate(i1, m);
      store4<OT>(O, out + 16 * m,
                 make_float4(o[2 * m][2] * inv1 * gs.x, o[2 * m + 1][2] * inv1 * gs.y, o[2 * m][3] * inv1 * gs.z,
                             o[2 * m + 1][3] * inv1 * gs.w));
    }
  }
}

// Full attention: QT = 128 or 64 queries per block (8 or 4 warps of 16 rows), bias [H, L, L].
// K/V tiles stream through a two-stage cp.async ring; each thread rounds the chunks it
// copied to tf32 in place once they land. Full tiles whose bias rows allow 8-byte loads
// (every tile but the last when L is even) take a path without per-key predicates.
// O's elements are OT (store4): 16-bit when the output only feeds a 16-bit GEMM.
template <int D, int OT, int QT>
__global__ void __launch_bounds__(QT * 2, 256 / QT)
k_attention_tc(int L, int H, int ld, const float *__restrict__ Q, const float *__restrict__ K,
               const float *__restrict__ V, const float *__restrict__ bias, float scale,
               void *__restrict__ O, const float *__restrict__ G, int ldg) {
  px_pdl_enter();
  constexpr int NT = QT * 2, DK = D / 8, CH = D / 4;
  constexpr int CPT = KT * CH / NT;  // 16-byte chunks of K (and of V) per thread per tile
  static_assert(KT * CH % NT == 0, "chunks must divide evenly among the threads");
  constexpr int DPK = TcCfg<D>::DPK, DPV = TcCfg<D>::DPV, STAGE = TcCfg<D>::STAGE;
  extern __shared__ __align__(16) float smem[];
  const int tile = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int q0 = tile * QT;
  const size_t base = (size_t)s * L;
  const int r0 = w * 16 + g, r1 = r0 + 8;  // rows of this thread within the block's tile
  const int i0 = q0 + r0, i1 = q0 + r1;
  // Rows past L compute on row L-1's data (never stored): no out-of-range reads.
  const int c0 = min(i0, L - 1), c1 = min(i1, L - 1);
  const int ntiles = (L + KT - 1) / KT;
  // This block's K and V rows start here; chunk offsets below are 32-bit from it.
  const float *Kb0 = K + base * ld + h * D, *Vb0 = V + base * ld + h * D;

  // Stage `it` of the ring: K rows then V rows; keys past the end are zero-filled.
  auto issue = [&](int it) {
    float *Ks = smem + (it & 1) * STAGE, *Vs = Ks + KT * DPK;
    const int nk = min(KT, L - it * KT);
#pragma unroll
    for (int i = 0; i < CPT; i++) {
      const int idx = tid + i * NT, j = idx / CH, c4 = (idx % CH) * 4;
      const bool ok = j < nk;
      const int go = ok ? (it * KT + j) * ld + c4 : 0;
      cp_async16(Ks + j * DPK + c4, Kb0 + go, ok);
      cp_async16(Vs + j * DPV + c4, Vb0 + go, ok);
    }
    cp_async_commit();
  };
  issue(0);

  // Bias rows, indexed by key j; 8-byte loads at every even key when L is even.
  const float *b0p = bias + ((int64_t)h * L + c0) * L, *b1p = bias + ((int64_t)h * L + c1) * L;
  const bool bias8 = (L % 2 == 0) && ((uintptr_t)bias % 8 == 0);

  // Q fragments, in registers for the whole sweep.
  uint32_t qa[DK][4];
  load_q<D>(qa, Q + (base + c0) * ld + h * D + 4 * t, Q + (base + c1) * ld + h * D + 4 * t, scale);
  float o[DK][4];
#pragma unroll
  for (int dn = 0; dn < DK; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  // Warps whose 16 rows all lie past L (the last query tile) only help stage K/V: their
  // math would be discarded (at L = 330, 3 of the 24 warps of a head's 3 tiles).
  const bool active = q0 + w * 16 < L;
  auto tile_step = [&](int it, auto full) {
    constexpr bool FULL = decltype(full)::value;
    const int t0 = it * KT, nk = FULL ? KT : min(KT, L - t0);
    float sc[KT / 8][4];
    if (active) load_bias<FULL>(sc, b0p, b1p, t0, L, t);
    if (it + 1 < ntiles) {
      issue(it + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    float *Kst = smem + (it & 1) * STAGE, *Vst = Kst + KT * DPK;
    // Round this thread's own chunks to tf32 (no barrier needed before: they are its own).
#pragma unroll
    for (int i = 0; i < CPT; i++) {
      const int idx = tid + i * NT, j = idx / CH, c4 = (idx % CH) * 4;
      uint4 *kp = reinterpret_cast<uint4 *>(Kst + j * DPK + c4);
      uint4 *vp = reinterpret_cast<uint4 *>(Vst + j * DPV + c4);
      const float4 kx = *reinterpret_cast<const float4 *>(kp), vx = *reinterpret_cast<const float4 *>(vp);
      *kp = make_uint4(tf32_op(kx.x), tf32_op(kx.y), tf32_op(kx.z), tf32_op(kx.w));
      *vp = make_uint4(tf32_op(vx.x), tf32_op(vx.y), tf32_op(vx.z), tf32_op(vx.w));
    }
    __syncthreads();
    if (active)
      tile_math<D, FULL>(sc, reinterpret_cast<const uint32_t *>(Kst), reinterpret_cast<const uint32_t *>(Vst),
                         nk, qa, o, m0, m1, l0, l1, g, t);
    __syncthreads();  // this stage is refilled by the next iteration's issue()
  };

  for (int it = 0; it < ntiles; it++) {
    if (bias8 && L - it * KT >= KT)
      tile_step(it, Flag<true>());
    else
      tile_step(it, Flag<false>());
  }
  store_rows<D, OT>(o, l0, l1, O, G, ldg, base, L, H, h, i0, i1, t);
}

// ---- fp16 operands (the FP16 precision's full attention) ----
//
// The same flash attention on mma.sync.m16n8k16 with fp16 operands and fp32 accumulation,
// for token blocks whose GEMM inputs are fp16 (out_type 2): fp16 keeps tf32's 10-bit
// mantissa, so the error is the TF32 kernel's, while a key tile takes half the tensor
// instructions (48 instead of 96 at d = 48) and half the shared-memory bytes per operand.
// Range: Q (scaled), K and V are stored as fp16; model/fp16_range.c admits a block to fp16
// only when its bounds on |q|, |k|, |v| fit fp16 (qkv, att), P lies in [0, 1], and S and O
// accumulate in fp32. P is rounded to fp16 for the mma (subnormal below 2^-14: those
// weights are under 2^-14 of the row's largest); the softmax denominator sums the unrounded
// fp32 P (round to nearest: the difference is unbiased, at the rounding's own size).
//
// Staging: each thread cp.asyncs its own 16-byte chunks of the next tile's K and V rows
// (fp32, one landing area) while the warps compute on the current tile, then converts
// exactly those chunks to fp16 into one of two fp16 stages: no other thread reads the
// landing area, so it needs no barrier, and one barrier per tile (the fp16 stage is full)
// replaces the TF32 kernel's two. Operands come out of the fp16 stages by ldmatrix: K
// row-major (rows = keys: the B operand of S = Q K^T as stored), V also row-major, read
// transposed (.trans) as the B operand of O = P V. P goes from the S accumulators to the A
// operand of P V without moving (the m16n8 accumulator of keys 8n.. and 8n+8.. is the
// m16n8k16 A fragment of keys 16j..). V's columns are stored permuted within each 16:
// smem column 8 e + n holds feature 2 n + e, so output tile 2m, column n is feature
// 16 m + 2 n and tile 2m+1 feature 16 m + 2 n + 1: store_rows' layout (float4 runs).
template <int D>
struct H16Cfg {
  static constexpr int DP = D + 8;                   // halves per fp16 row: 16-byte aligned rows, ldmatrix conflict-free
  static constexpr int LAND = 2 * KT * D;            // floats of the fp32 landing area (K rows, then V rows)
  static constexpr int STAGE = 2 * KT * DP;          // halves per fp16 stage (K rows, then V rows)
  static constexpr int SMEM = LAND * (int)sizeof(float) + 2 * STAGE * 2;
};


// Q fragments (m16n8k16 A, row-major, features in order) of rows qp0, qp1, scaled, fp16.
template <int D>
__device__ __forceinline__ void load_q16(uint32_t (&qa)[D / 16][4], const float *qp0, const float *qp1,
                                         float scale, int t) {
#pragma unroll
  for (int m = 0; m < D / 16; m++) {
    const float2 a = __ldg(reinterpret_cast<const float2 *>(qp0 + 16 * m + 2 * t));
    const float2 b = __ldg(reinterpret_cast<const float2 *>(qp1 + 16 * m + 2 * t));
    const float2 c = __ldg(reinterpret_cast<const float2 *>(qp0 + 16 * m + 2 * t + 8));
    const float2 e = __ldg(reinterpret_cast<const float2 *>(qp1 + 16 * m + 2 * t + 8));
    qa[m][0] = pack_half2<2>(a.x * scale, a.y * scale);
    qa[m][1] = pack_half2<2>(b.x * scale, b.y * scale);
    qa[m][2] = pack_half2<2>(c.x * scale, c.y * scale);
    qa[m][3] = pack_half2<2>(e.x * scale, e.y * scale);
  }
}

// One key tile of a warp's 16 rows on fp16 operands (as tile_math). Kh, Vh: the stage's
// first K and V rows (DP halves each, every row finite: keys past the end are zeros).
template <int D, bool FULL>
__device__ __forceinline__ void tile_math16(float (&sc)[KT / 8][4], const uint16_t *Kh, const uint16_t *Vh,
                                            int nk, const uint32_t (&qa)[D / 16][4], float (&o)[D / 8][4],
                                            float &m0, float &m1, float &l0, float &l1, int lane) {
  constexpr int DP = H16Cfg<D>::DP;
  const int t = lane & 3;
  // S = Q K^T + bias, two 8-key groups per ldmatrix: matrices (keys +0..7 | +8..15) x
  // (features 16m.. | 16m+8..) give b0, b1 of each group.
  const uint16_t *kl = Kh + (8 * (lane >> 4) + (lane & 7)) * DP + 8 * ((lane >> 3) & 1);
#pragma unroll
  for (int n2 = 0; n2 < KT / 16; n2++) {
    if (FULL || 16 * n2 < nk) {
#pragma unroll
      for (int m = 0; m < D / 16; m++) {
        uint32_t kb[4];
        ldsm4(kb, kl + 16 * n2 * DP + 16 * m);
        mma_f16(sc[2 * n2], qa[m], kb[0], kb[1]);
        mma_f16(sc[2 * n2 + 1], qa[m], kb[2], kb[3]);
      }
    }
  }
  if (!FULL && nk < KT) {
#pragma unroll
    for (int n = 0; n < KT / 8; n++) {
      const int jj = 8 * n + 2 * t;
      if (jj >= nk) sc[n][0] = sc[n][2] = -INFINITY;
      if (jj + 1 >= nk) sc[n][1] = sc[n][3] = -INFINITY;
    }
  }
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
  const float f0 = ex2((m0 - mx0) * L2E), f1 = ex2((m1 - mx1) * L2E);
  const float nm0 = -mx0 * L2E, nm1 = -mx1 * L2E;
  m0 = mx0;
  m1 = mx1;
  l0 *= f0;
  l1 *= f1;
#pragma unroll
  for (int dn = 0; dn < D / 8; dn++) {
    o[dn][0] *= f0;
    o[dn][1] *= f0;
    o[dn][2] *= f1;
    o[dn][3] *= f1;
  }
  // O += P V, 16 keys per step: matrices (keys +0..7 | +8..15) x (smem columns 16m.. |
  // 16m+8..), transposed, give b0, b1 of output tiles 2m and 2m+1.
  const uint16_t *vl = Vh + (8 * ((lane >> 3) & 1) + (lane & 7)) * DP + 8 * (lane >> 4);
#pragma unroll
  for (int j = 0; j < KT / 16; j++) {
    if (FULL || 16 * j < nk) {
      const float p00 = ex2(fmaf(sc[2 * j][0], L2E, nm0)), p01 = ex2(fmaf(sc[2 * j][1], L2E, nm0));
      const float p02 = ex2(fmaf(sc[2 * j][2], L2E, nm1)), p03 = ex2(fmaf(sc[2 * j][3], L2E, nm1));
      const float p10 = ex2(fmaf(sc[2 * j + 1][0], L2E, nm0)), p11 = ex2(fmaf(sc[2 * j + 1][1], L2E, nm0));
      const float p12 = ex2(fmaf(sc[2 * j + 1][2], L2E, nm1)), p13 = ex2(fmaf(sc[2 * j + 1][3], L2E, nm1));
      l0 += (p00 + p01) + (p10 + p11);
      l1 += (p02 + p03) + (p12 + p13);
      const uint32_t pa[4] = {pack_half2<2>(p00, p01), pack_half2<2>(p02, p03), pack_half2<2>(p10, p11),
                              pack_half2<2>(p12, p13)};
#pragma unroll
      for (int m = 0; m < D / 16; m++) {
        uint32_t vb[4];
        ldsm4_t(vb, vl + 16 * j * DP + 16 * m);
        mma_f16(o[2 * m], pa, vb[0], vb[1]);
        mma_f16(o[2 * m + 1], pa, vb[2], vb[3]);
      }
    }
  }
}

// Full attention on fp16 operands: QT = 128 or 64 queries per block (8 or 4 warps), bias
// [H, L, L], O's elements OT (store4; the backend launches it for fp16 outputs).
template <int D, int OT, int QT>
__global__ void __launch_bounds__(QT * 2, 256 / QT)
k_attention_h16(int L, int H, int ld, const float *__restrict__ Q, const float *__restrict__ K,
                const float *__restrict__ V, const float *__restrict__ bias, float scale,
                void *__restrict__ O, const float *__restrict__ G, int ldg) {
  px_pdl_enter();
  constexpr int NT = QT * 2, CH = D / 4, DP = H16Cfg<D>::DP;
  constexpr int CPT = KT * CH / NT;  // 16-byte chunks of K (and of V) per thread per tile
  static_assert(KT * CH % NT == 0, "chunks must divide evenly among the threads");
  extern __shared__ __align__(16) float smem[];
  float *land = smem;  // [KT][D] K rows, then [KT][D] V rows
  uint16_t *stages = reinterpret_cast<uint16_t *>(smem + H16Cfg<D>::LAND);
  const int tile = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int q0 = tile * QT;
  const size_t base = (size_t)s * L;
  const int r0 = w * 16 + g, r1 = r0 + 8;
  const int i0 = q0 + r0, i1 = q0 + r1;
  const int c0 = min(i0, L - 1), c1 = min(i1, L - 1);  // rows past L: row L-1's data, never stored
  const int ntiles = (L + KT - 1) / KT;
  const float *Kb0 = K + base * ld + h * D, *Vb0 = V + base * ld + h * D;

  // This thread's chunks of tile `it` into the landing area; keys past the end zero-filled.
  auto issue = [&](int it) {
    const int nk = min(KT, L - it * KT);
#pragma unroll
    for (int i = 0; i < CPT; i++) {
      const int idx = tid + i * NT, j = idx / CH, c4 = (idx % CH) * 4;
      const bool ok = j < nk;
      const int go = ok ? (it * KT + j) * ld + c4 : 0;
      cp_async16(land + idx * 4, Kb0 + go, ok);
      cp_async16(land + KT * D + idx * 4, Vb0 + go, ok);
    }
    cp_async_commit();
  };
  issue(0);

  const float *b0p = bias + ((int64_t)h * L + c0) * L, *b1p = bias + ((int64_t)h * L + c1) * L;
  const bool bias8 = (L % 2 == 0) && ((uintptr_t)bias % 8 == 0);
  uint32_t qa[D / 16][4];
  load_q16<D>(qa, Q + (base + c0) * ld + h * D, Q + (base + c1) * ld + h * D, scale, t);
  float o[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  const bool active = q0 + w * 16 < L;  // warps wholly past L only stage K / V

  auto tile_step = [&](int it, auto full) {
    constexpr bool FULL = decltype(full)::value;
    const int t0 = it * KT, nk = FULL ? KT : min(KT, L - t0);
    float sc[KT / 8][4];
    if (active) load_bias<FULL>(sc, b0p, b1p, t0, L, t);
    uint16_t *Kh = stages + (it & 1) * H16Cfg<D>::STAGE, *Vh = Kh + KT * DP;
    cp_async_wait<0>();
    // Own chunks to fp16. The stage was last read by tile it-2's math, which every warp
    // finished before tile it-1's barrier. At most 3 chunks at a time: with the bias (32
    // registers) live, 6 at once spilled at QT = 64 (d = 48).
#pragma unroll 3
    for (int i = 0; i < CPT; i++) {
      const int idx = tid + i * NT, j = idx / CH, c4 = (idx % CH) * 4;
      const float4 kx = *reinterpret_cast<const float4 *>(land + idx * 4);
      const float4 vx = *reinterpret_cast<const float4 *>(land + KT * D + idx * 4);
      *reinterpret_cast<uint2 *>(Kh + j * DP + c4) = make_uint2(pack_half2<2>(kx.x, kx.y), pack_half2<2>(kx.z, kx.w));
      // V: feature 16m + 2n + e at smem column 16m + 8e + n (c4 = 16m + 4u: n = 2u, 2u+1).
      uint16_t *vr = Vh + j * DP + (c4 & ~15) + ((c4 & 15) >> 1);
      *reinterpret_cast<uint32_t *>(vr) = pack_half2<2>(vx.x, vx.z);
      *reinterpret_cast<uint32_t *>(vr + 8) = pack_half2<2>(vx.y, vx.w);
    }
    // The landing area is this thread's alone, and its values are in registers (stored
    // above): the next tile's copies may land now, during this tile's math.
    if (it + 1 < ntiles) issue(it + 1);
    __syncthreads();
    if (active) tile_math16<D, FULL>(sc, Kh, Vh, nk, qa, o, m0, m1, l0, l1, lane);
  };

  for (int it = 0; it < ntiles; it++) {
    if (bias8 && L - it * KT >= KT)
      tile_step(it, Flag<true>());
    else
      tile_step(it, Flag<false>());
  }
  store_rows<D, OT>(o, l0, l1, O, G, ldg, base, L, H, h, i0, i1, t);
}

// Full attention on fp16 inputs (the FP16 precision's token blocks: the [q k v g] GEMM
// writes fp16 without q's bias, which is added here in fp32). Nothing is converted on the
// way in: K / V tiles go by cp.async straight into two fp16 stages (V in its natural column
// order: output tile dn holds features 8 dn + 2t, +1), one barrier per tile (after the wait
// for the tile's copies, before the next tile's issue, so a stage is refilled only after
// every warp has left it). The pair bias goes by cp.async into shared memory too, so that
// it lands during the previous tile's math instead of being read from global memory at the
// start of each tile:
//  - 128 queries (8 warps, two blocks per SM by registers): two block-wide bias stages of
//    QT x 64 floats, filled with the K / V stage after the barrier;
//  - 64 queries (4 warps): each warp's 16 bias rows are its own, in one stage: the warp
//    reads the tile's values into its accumulators and, after a warp sync, issues the next
//    tile's copy into the same place (no barrier guards the bias). One stage, not two, keeps
//    the block at 47 KB (d = 48), so four blocks fit an SM: the launches that take 64-query
//    blocks are those where they need fewer waves (150 tokens, 10 samples: one wave of
//    480 blocks instead of two).
// A bias row stride of 72 words makes a half-warp's 8-byte reads of rows g, columns 2t
// conflict-free. Shared bytes at d = 48: 28 KB of K / V + 72 KB (128 queries) or 18 KB (64).
// B16: the bias is the design cache's fp16 copy (rows padded to a multiple of 8 halves):
// half the bytes through shared memory (copied and read), a quarter of the copies (16 bytes
// each), rows of 72 halves (36 words: a warp's 4-byte reads of rows g, columns 2t
// conflict-free); 36 KB of bias stages at 128 queries.
template <int D, int QT, bool B16 = false>
struct H16InCfg {
  static constexpr int DP = D + 8;           // halves per K / V row (16-byte aligned, ldmatrix conflict-free)
  static constexpr int KV = 2 * KT * DP;     // halves per K / V stage (K rows, then V rows)
  static constexpr int EB = B16 ? 2 : 4;     // bytes per bias element
  static constexpr int BS = KT + 8;          // elements per staged bias row
  static constexpr bool WARP_BIAS = QT == 64;  // per-warp, single-stage bias (above)
  static constexpr int BST = QT * BS;          // elements per bias stage
  static constexpr int GATE = QT * D;          // halves of the staged gate rows (D per row)
  static constexpr int SMEM = 2 * KV * 2 + (WARP_BIAS ? 1 : 2) * BST * EB + GATE * 2;
};

// cp.async of BV = 4, 8 or 16 bytes (zero-filled when !ok); 4 and 8 go through L1 (.ca).
template <int BV>
__device__ __forceinline__ void cp_async_n(void *dst, const void *src, bool ok) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  if (BV == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(d), "l"(src), "n"(BV), "r"(ok ? BV : 0)
                 : "memory");
}

__device__ __forceinline__ float2 half2_f2(uint32_t u) {
  return __half22float2(*reinterpret_cast<const __half2 *>(&u));
}

// Q fragments (m16n8k16 A) of rows qp0, qp1 (fp16, features in order): (q + qb) * scale,
// rounded to fp16 again.
template <int D>
__device__ __forceinline__ void load_q16in(uint32_t (&qa)[D / 16][4], const uint16_t *qp0, const uint16_t *qp1,
                                           const float *qb, float scale, int t) {
#pragma unroll
  for (int m = 0; m < D / 16; m++) {
    const int f0 = 16 * m + 2 * t, f1 = f0 + 8;
    const float2 b0 = qb ? *reinterpret_cast<const float2 *>(qb + f0) : make_float2(0.0f, 0.0f);
    const float2 b1 = qb ? *reinterpret_cast<const float2 *>(qb + f1) : make_float2(0.0f, 0.0f);
    const float2 a = half2_f2(*reinterpret_cast<const uint32_t *>(qp0 + f0));
    const float2 b = half2_f2(*reinterpret_cast<const uint32_t *>(qp1 + f0));
    const float2 c = half2_f2(*reinterpret_cast<const uint32_t *>(qp0 + f1));
    const float2 e = half2_f2(*reinterpret_cast<const uint32_t *>(qp1 + f1));
    qa[m][0] = pack_half2<2>((a.x + b0.x) * scale, (a.y + b0.y) * scale);
    qa[m][1] = pack_half2<2>((b.x + b0.x) * scale, (b.y + b0.y) * scale);
    qa[m][2] = pack_half2<2>((c.x + b1.x) * scale, (c.y + b1.y) * scale);
    qa[m][3] = pack_half2<2>((e.x + b1.x) * scale, (e.y + b1.y) * scale);
  }
}

// Normalise, gate and store rows i0, i1 (those < L) in fp16; o in the natural column order.
// g0, g1: the gates of rows i0 and i1 from this head's feature 2t on (global or shared
// memory; null when ungated; read only for rows < L).
template <int D>
__device__ __forceinline__ void store_rows16in(const float (&o)[D / 8][4], float l0, float l1, uint16_t *O,
                                               const uint16_t *g0, const uint16_t *g1, size_t base, int H, int h,
                                               int L, int i0, int i1, int t) {
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv[2] = {__frcp_rn(l0), __frcp_rn(l1)};
  const int rows[2] = {i0, i1}, C = H * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (rows[r] >= L) continue;
    uint16_t *out = O + (base + rows[r]) * C + h * D + 2 * t;
    const uint16_t *gp = r ? g1 : g0;
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
      float x = o[dn][2 * r] * inv[r], y = o[dn][2 * r + 1] * inv[r];
      if (gp) {
        const float2 gv = half2_f2(*reinterpret_cast<const uint32_t *>(gp + 8 * dn));
        x *= __frcp_rn(1.0f + __expf(-gv.x));
        y *= __frcp_rn(1.0f + __expf(-gv.y));
      }
      *reinterpret_cast<uint32_t *>(out + 8 * dn) = pack_half2<2>(x, y);
    }
  }
}

// QT = 128 or 64 queries per block (8 or 4 warps of 16 rows). The bias: fp32 [H, L, L]
// (B16 false; BV, the bytes per bias copy: 16 when L % 4 == 0, 8 when L is even, else 4,
// with a bias aligned to match), or fp16 [H, L, ldb] (B16: BV 16, ldb a multiple of 8, the
// bias 16-byte aligned). Q, K, V, G fp16 with row stride ld; O fp16 [S*L, H*D].
template <int D, int QT, int BV, bool B16>
__global__ void __launch_bounds__(QT * 2, 256 / QT)
k_attention_h16in(int L, int H, int ld, const uint16_t *__restrict__ Q, const uint16_t *__restrict__ K,
                  const uint16_t *__restrict__ V, const uint16_t *__restrict__ G, const float *__restrict__ qb,
                  const void *__restrict__ bias_, int ldb, float scale, uint16_t *__restrict__ O) {
  px_pdl_enter();
  using Cfg = H16InCfg<D, QT, B16>;
  using BT = typename std::conditional<B16, uint16_t, float>::type;  // a bias element
  const BT *bias = static_cast<const BT *>(bias_);
  constexpr int NT = QT * 2, DP = Cfg::DP, CH = D / 8;  // CH: 16-byte chunks per K / V row
  constexpr int KV_PT = 2 * KT * CH / NT;               // K and V chunks per thread per tile
  constexpr int EPC = BV / Cfg::EB;                     // bias elements per copy
  constexpr int BPR = KT / EPC;                         // bias copies per row of a tile
  static_assert(2 * KT * CH % NT == 0, "K / V copies must divide evenly among the threads");
  static_assert(!B16 || BV == 16, "the fp16 bias goes by 16-byte copies");
  extern __shared__ __align__(16) float smem[];
  uint16_t *kv = reinterpret_cast<uint16_t *>(smem);  // [2][K rows, V rows]
  BT *bst = reinterpret_cast<BT *>(smem + Cfg::KV);   // bias stage(s) (2 * KV halves = KV floats)
  const int tile = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int q0 = tile * QT;
  const size_t base = (size_t)s * L;
  const int r0 = w * 16 + g, r1 = r0 + 8;
  const int i0 = q0 + r0, i1 = q0 + r1;
  const int c0 = min(i0, L - 1), c1 = min(i1, L - 1);  // rows past L: row L-1's data, never stored
  const int ntiles = (L + KT - 1) / KT;
  const uint16_t *Kb = K + base * ld + h * D, *Vb = V + base * ld + h * D;
  const BT *Bb = bias + ((int64_t)h * L + q0) * ldb;   // the block's first bias row
  const bool active = q0 + w * 16 < L;                 // warps wholly past L only copy

  // K / V rows of tile `it` into stage it & 1 (keys past L zero-filled); no commit.
  auto issue_kv = [&](int it) {
    const int k0 = it * KT;
    uint16_t *Ks = kv + (it & 1) * Cfg::KV;
#pragma unroll
    for (int i = 0; i < KV_PT; i++) {  // row jr: K rows first, then V rows (Vs = Ks + KT DP)
      const int idx = tid + i * NT, jr = idx / CH, j = jr % KT, c = (idx % CH) * 8;
      const bool ok = k0 + j < L;
      const size_t go = ok ? (size_t)(k0 + j) * ld + c : 0;
      cp_async_n<16>(Ks + jr * DP + c, (jr < KT ? Kb : Vb) + go, ok);
    }
  };
  // Bias rows [r_first, r_first + NR) of the block for the keys of tile `it` into dst (row
  // stride BS), copied by NTHR threads of which this is `me` (rows and keys past L
  // zero-filled). Where a row takes at most NTHR copies, a thread's copies share a column
  // and step by whole rows: a running pointer, partly unrolled (fully unrolled, the compiler
  // kept every copy's address live and spilled). No commit.
  auto issue_bias = [&](int it, BT *dst, int r_first, auto nthr, auto nr, int me) {
    constexpr int NTHR = decltype(nthr)::value, NR = decltype(nr)::value, N = NR * BPR / NTHR;
    static_assert(NR * BPR % NTHR == 0, "bias copies must divide evenly among the threads");
    const int k0 = it * KT;
    if constexpr (NTHR % BPR == 0) {
      constexpr int RS = NTHR / BPR;
      const int c = (me % BPR) * EPC, rb = r_first + me / BPR;
      const bool kok = k0 + c < L;
      const BT *src = Bb + (int64_t)rb * ldb + k0 + c;
      BT *d = dst + (rb - r_first) * Cfg::BS + c;
#pragma unroll 4
      for (int i = 0; i < N; i++) {
        const bool ok = kok && q0 + rb + i * RS < L;
        cp_async_n<BV>(d, ok ? src : bias, ok);
        src += (int64_t)RS * ldb;
        d += RS * Cfg::BS;
      }
    } else {
#pragma unroll 4
      for (int i = 0; i < N; i++) {
        const int idx = me + i * NTHR, r = r_first + idx / BPR, c = (idx % BPR) * EPC;
        const bool ok = k0 + c < L && q0 + r < L;
        cp_async_n<BV>(dst + (r - r_first) * Cfg::BS + c, ok ? Bb + (int64_t)r * ldb + k0 + c : bias, ok);
      }
    }
  };
  // The gate rows of this warp's 16 queries, by cp.async with the first tile into shared
  // memory of their own (D halves per row; rows past L zero-filled), so that they have
  // arrived when the rows are stored instead of being loaded then (ncu, 100 samples of 330
  // tokens: the waits on those loads were ~13% of the kernel's stall samples).
  auto gate_rows = [&]() {  // this warp's 16 rows (recomputed where needed: no register held)
    return reinterpret_cast<uint16_t *>(bst + (Cfg::WARP_BIAS ? 1 : 2) * Cfg::BST) + w * 16 * D;
  };
  auto issue_gate = [&]() {
    uint16_t *gst = gate_rows();
    constexpr int CPR = D / 8;  // 16-byte chunks per gate row
#pragma unroll
    for (int c = lane; c < 16 * CPR; c += 32) {
      const int r = c / CPR, ch = c % CPR, gi = q0 + w * 16 + r;
      const bool ok = gi < L;
      cp_async_n<16>(gst + r * D + ch * 8, G + (base + (ok ? gi : 0)) * (size_t)ld + h * D + ch * 8, ok);
    }
  };
  BT *bw = Cfg::WARP_BIAS ? bst + w * 16 * Cfg::BS : nullptr;  // 64 queries: this warp's rows
  issue_kv(0);
  if (Cfg::WARP_BIAS) {
    if (active) issue_bias(0, bw, w * 16, Int<32>(), Int<16>(), lane);
  } else {
    issue_bias(0, bst, 0, Int<NT>(), Int<QT>(), tid);
  }
  if (active && G) issue_gate();
  cp_async_commit();

  uint32_t qa[D / 16][4];
  load_q16in<D>(qa, Q + (base + c0) * ld + h * D, Q + (base + c1) * ld + h * D, qb ? qb + h * D : nullptr, scale,
                t);
  float o[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  auto tile_step = [&](int it, auto full) {
    constexpr bool FULL = decltype(full)::value;
    const int nk = FULL ? KT : min(KT, L - it * KT);
    cp_async_wait<0>();
    __syncthreads();  // tile it landed for every thread; every warp left stage (it + 1) & 1
    const bool more = it + 1 < ntiles;
    if (more) {
      issue_kv(it + 1);
      if (!Cfg::WARP_BIAS) issue_bias(it + 1, bst + ((it + 1) & 1) * Cfg::BST, 0, Int<NT>(), Int<QT>(), tid);
    }
    const BT *bs = Cfg::WARP_BIAS ? bw : bst + (it & 1) * Cfg::BST + w * 16 * Cfg::BS;  // the warp's rows
    float sc[KT / 8][4];
    if (active) {
#pragma unroll
      for (int n = 0; n < KT / 8; n++) {
        float2 x, y;
        if constexpr (B16) {
          x = half2_f2(*reinterpret_cast<const uint32_t *>(bs + g * Cfg::BS + 8 * n + 2 * t));
          y = half2_f2(*reinterpret_cast<const uint32_t *>(bs + (g + 8) * Cfg::BS + 8 * n + 2 * t));
        } else {
          x = *reinterpret_cast<const float2 *>(bs + g * Cfg::BS + 8 * n + 2 * t);
          y = *reinterpret_cast<const float2 *>(bs + (g + 8) * Cfg::BS + 8 * n + 2 * t);
        }
        sc[n][0] = x.x;
        sc[n][1] = x.y;
        sc[n][2] = y.x;
        sc[n][3] = y.y;
      }
      if (Cfg::WARP_BIAS && more) {
        __syncwarp();  // every lane has read the warp's rows before any overwrites them
        issue_bias(it + 1, bw, w * 16, Int<32>(), Int<16>(), lane);
      }
    }
    cp_async_commit();
    if (!active) return;
    const uint16_t *Ks = kv + (it & 1) * Cfg::KV, *Vs = Ks + KT * DP;
    tile_math16<D, FULL>(sc, Ks, Vs, nk, qa, o, m0, m1, l0, l1, lane);
  };

  for (int it = 0; it < ntiles; it++) {
    if (L - it * KT >= KT)
      tile_step(it, Flag<true>());
    else
      tile_step(it, Flag<false>());
  }
  const uint16_t *g0 = nullptr, *g1 = nullptr;  // inactive warps store nothing
  if (active && G) {  // the gate landed with the first tile (every lane waited at that tile)
    const uint16_t *gst = gate_rows();
    g0 = gst + g * D + 2 * t;
    g1 = gst + (g + 8) * D + 2 * t;
  }
  store_rows16in<D>(o, l0, l1, O, g0, g1, base, H, h, L, i0, i1, t);
}

// A local-attention warp's window (k_attention_tc_local, k_attention_h16in_local): trunk tr
// of ntr (queries 32 tr ..) sees keys kstart .. kstart + nkw - 1, valid kbeg .. kend - 1
// (kbeg < kend when the trunk exists: its first query lies in its own window); b0p, b1p are
// the thread's two bias rows (r0, r1 of the trunk) indexed by absolute key, with 8-byte loads
// at every even key when the row offsets (row * nkw - kstart) are even (bias8). The warp's
// tiles start at kbeg and step by KT, so every tile holds at least one valid key.
struct LocalWindow {
  int kstart, kbeg, kend;
  const float *b0p, *b1p;
  bool bias8;
  __device__ LocalWindow(const float *bias, int h, int ntr, int tr, int off, int nkw, int L, int r0, int r1) {
    kstart = 32 * tr - off;
    kbeg = max(kstart, 0);
    kend = min(kstart + nkw, L);
    const int64_t rowb = ((int64_t)h * ntr + tr) * 32;
    b0p = bias + (rowb + r0) * nkw - kstart;
    b1p = bias + (rowb + r1) * nkw - kstart;
    bias8 = (nkw % 2 == 0) && (kstart % 2 == 0) && ((uintptr_t)bias % 8 == 0);
  }
  // The first tile's bias (loaded by the kernels while their copies are in flight).
  __device__ void load_first(float (&sc)[KT / 8][4], int t) const {
    if (bias8 && kend - kbeg >= KT)
      load_bias<true>(sc, b0p, b1p, kbeg, kend, t);
    else
      load_bias<false>(sc, b0p, b1p, kbeg, kend, t);
  }
  // Every tile of the window, sc holding the first tile's bias on entry: the tile's bias, then
  // math(full, k0, nk) for keys kbeg + k0 .. (nk of them; full: nk == KT on 8-byte loads).
  template <typename Math>
  __device__ void sweep(float (&sc)[KT / 8][4], int t, Math math) const {
    for (int k0 = 0; k0 < kend - kbeg; k0 += KT) {
      const int nk = min(KT, kend - kbeg - k0);
      if (bias8 && nk == KT) {
        if (k0) load_bias<true>(sc, b0p, b1p, kbeg + k0, kend, t);
        math(Flag<true>(), k0, KT);
      } else {
        if (k0) load_bias<false>(sc, b0p, b1p, kbeg + k0, kend, t);
        math(Flag<false>(), k0, nk);
      }
    }
  }
};

// Local attention: query trunks of 32 see windows of nkw keys starting 32 tr - off,
// off = (nkw - 32) / 2; bias [H, n_trunks, 32, nkw]. A block takes TPB consecutive
// trunks (TPB = 4 at the model's sizes: 128 queries, 8 warps; fewer where shared memory
// is short or there are fewer trunks), two warps of 16 rows per trunk. Neighbouring
// windows overlap by nkw - 32 keys, so the block stages the union of its trunks' windows,
// SPAN = 32 (TPB - 1) + nkw keys from u0 = 32 TPB blockIdx.x - off, into shared memory
// once (one cp.async wave, zero-filled outside [0, L), each thread rounding its own
// chunks to tf32, one barrier) and each warp then sweeps its own window, which starts at
// shared row 32 (w / 2), without further barriers. Smem row p holds key u0 + p.
// Why: a key is copied and rounded by SPAN / (32 TPB) = 1.75 blocks on average (TPB = 4,
// nkw = 128) instead of 4 (one 2-warp block per trunk, each streaming its own window), and
// the block is 8 warps with ~76 KB of shared memory (D = 32) against 2 warps with 43 KB
// and 168 registers, so 2 blocks (16 warps) fit an SM instead of ~10 warps.
// A warp's tiles start at its first in-range key kbeg and step by KT, so every tile holds
// at least one valid key (the online softmax never sees an all-masked tile); 8 spare zero
// rows after the span cover the reads of a partly valid last 8-key group.
// OT: O's elements (0 float, 2 fp16: the FP16 precision's atom blocks, whose output GEMM
// reads fp16; the operands stay tf32 either way, only the store differs).
template <int D, int OT>
__global__ void __launch_bounds__(256, 2)
k_attention_tc_local(int L, int H, int ld, const float *__restrict__ Q, const float *__restrict__ K,
                     const float *__restrict__ V, const float *__restrict__ bias, int nkw, int tpb,
                     float scale, void *__restrict__ O, const float *__restrict__ G, int ldg) {
  px_pdl_enter();
  constexpr int DK = D / 8, CH = D / 4, DPK = TcCfg<D>::DPK, DPV = TcCfg<D>::DPV;
  extern __shared__ __align__(16) float smem[];
  const int h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int ntr = (L + 31) / 32, off = (nkw - 32) / 2;
  const int span = 32 * (tpb - 1) + nkw, rows = span + 8;  // + 8 zero rows, see above
  const int u0 = 32 * tpb * blockIdx.x - off;                 // key of shared row 0
  float *Ks = smem, *Vs = smem + rows * DPK;
  const size_t base = (size_t)s * L;
  // This sample's K and V rows start here; chunk offsets below are 32-bit from it.
  const float *Kb0 = K + base * ld + h * D, *Vb0 = V + base * ld + h * D;

  // Stage the whole span at once: row p is key u0 + p, zero outside [0, L) and past span.
  const int nch = rows * CH;
  for (int idx = tid; idx < nch; idx += blockDim.x) {
    const int p = idx / CH, c4 = (idx % CH) * 4, a = u0 + p;
    const bool ok = p < span && a >= 0 && a < L;
    const int go = ok ? a * ld + c4 : 0;
    cp_async16(Ks + p * DPK + c4, Kb0 + go, ok);
    cp_async16(Vs + p * DPV + c4, Vb0 + go, ok);
  }
  cp_async_commit();

  const int tl = w >> 1, tr = tpb * blockIdx.x + tl;  // this warp's trunk (in block, overall)
  const bool active = tr < ntr;                       // warp-uniform
  const int r0 = (w & 1) * 16 + g, r1 = r0 + 8;       // this thread's rows within the trunk
  const int i0 = 32 * tr + r0, i1 = i0 + 8;
  // Rows past L compute on row L-1's data (never stored): no out-of-range reads.
  const int c0 = min(i0, L - 1), c1 = min(i1, L - 1);
  uint32_t qa[DK][4];  // loaded while the copies are in flight
  load_q<D>(qa, Q + (base + c0) * ld + h * D + 4 * t, Q + (base + c1) * ld + h * D + 4 * t, scale);

  // This warp's window (shared row of key j: j - u0 = 32 tl + (j - kstart)); the first
  // tile's bias is loaded while the copies are in flight too.
  const LocalWindow win(bias, h, ntr, tr, off, nkw, L, r0, r1);
  float sc[KT / 8][4];
  if (active) win.load_first(sc, t);

  cp_async_wait<0>();
  // Round this thread's own chunks to tf32 (no barrier needed before: they are its own).
  for (int idx = tid; idx < nch; idx += blockDim.x) {
    const int p = idx / CH, c4 = (idx % CH) * 4;
    uint4 *kp = reinterpret_cast<uint4 *>(Ks + p * DPK + c4);
    uint4 *vp = reinterpret_cast<uint4 *>(Vs + p * DPV + c4);
    const float4 kx = *reinterpret_cast<const float4 *>(kp), vx = *reinterpret_cast<const float4 *>(vp);
    *kp = make_uint4(tf32_op(kx.x), tf32_op(kx.y), tf32_op(kx.z), tf32_op(kx.w));
    *vp = make_uint4(tf32_op(vx.x), tf32_op(vx.y), tf32_op(vx.z), tf32_op(vx.w));
  }
  __syncthreads();  // the only barrier: warps past the last trunk leave after it
  if (!active) return;

  const uint32_t *Kw = reinterpret_cast<const uint32_t *>(Ks) + (win.kbeg - u0) * DPK;
  const uint32_t *Vw = reinterpret_cast<const uint32_t *>(Vs) + (win.kbeg - u0) * DPV;
  float o[DK][4];
#pragma unroll
  for (int dn = 0; dn < DK; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  win.sweep(sc, t, [&](auto full, int k0, int nk) {
    tile_math<D, decltype(full)::value>(sc, Kw + k0 * DPK, Vw + k0 * DPV, nk, qa, o, m0, m1, l0, l1, g, t);
  });
  store_rows<D, OT>(o, l0, l1, O, G, ldg, base, L, H, h, i0, i1, t);
}

// Shared bytes of a local block of tpb trunks and windows of nk keys.
template <int D>
constexpr int64_t local_smem(int tpb, int nk) {
  return (int64_t)(32 * (tpb - 1) + nk + 8) * (TcCfg<D>::DPK + TcCfg<D>::DPV) * (int64_t)sizeof(float);
}

// Local attention on fp16 inputs (the FP16 precision's atom blocks: the [q g] and [k v]
// GEMMs write fp16 without q's bias, which is added in fp32 as Q is loaded, as in
// k_attention_h16in). The block layout is k_attention_tc_local's: TPB trunks of 32 queries,
// two warps each, the union of their windows staged once by cp.async, one barrier. But the
// rows land as they are (fp16, no rounding pass) in rows of D + 8 halves read by ldmatrix,
// and the tiles run tile_math16 (m16n8k16): half the staged bytes of the TF32 kernel (D =
// 32, nkw = 128: 38 KB a block instead of 76 KB) and half its tensor instructions per key.
// A warp's partly valid last tile reads whole 16-key groups, so 16 zero rows follow the span.
template <int D>
struct H16LocalCfg {
  static constexpr int DP = D + 8;  // halves per staged row (16-byte aligned, ldmatrix conflict-free)
  static constexpr int SPARE = 16;  // zero rows after the span
};

template <int D>
__global__ void __launch_bounds__(256, 2)
k_attention_h16in_local(int L, int H, int ld, const uint16_t *__restrict__ Q, const uint16_t *__restrict__ K,
                        const uint16_t *__restrict__ V, const uint16_t *__restrict__ G,
                        const float *__restrict__ qb, const float *__restrict__ bias, int nkw, int tpb, float scale,
                        uint16_t *__restrict__ O) {
  px_pdl_enter();
  constexpr int CH = D / 8, DP = H16LocalCfg<D>::DP;  // CH: 16-byte chunks per row
  extern __shared__ __align__(16) float smem[];
  const int h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int ntr = (L + 31) / 32, off = (nkw - 32) / 2;
  const int span = 32 * (tpb - 1) + nkw, rows = span + H16LocalCfg<D>::SPARE;
  const int u0 = 32 * tpb * blockIdx.x - off;  // key of shared row 0
  uint16_t *Ks = reinterpret_cast<uint16_t *>(smem), *Vs = Ks + rows * DP;
  uint16_t *Gs = Vs + rows * DP;  // the block's gate rows (D halves each), first query q_first
  const int q_first = 32 * tpb * blockIdx.x;
  const size_t base = (size_t)s * L;
  const uint16_t *Kb = K + base * ld + h * D, *Vb = V + base * ld + h * D;

  // Stage the whole span: row p is key u0 + p, zero outside [0, L) and past the span; and
  // the gate rows of the block's queries (zero past L), so that they have arrived when the
  // rows are stored instead of being loaded then (as k_attention_h16in).
  auto stage = [&](int p, int c) {  // row p, halves c.. of K and V
    const int a = u0 + p;
    const bool ok = p < span && a >= 0 && a < L;
    const size_t go = ok ? (size_t)a * ld + c : 0;
    cp_async16(reinterpret_cast<float *>(Ks + p * DP + c), reinterpret_cast<const float *>(Kb + go), ok);
    cp_async16(reinterpret_cast<float *>(Vs + p * DP + c), reinterpret_cast<const float *>(Vb + go), ok);
  };
  for (int idx = tid; idx < rows * CH; idx += blockDim.x) stage(idx / CH, (idx % CH) * 8);
  if (G) {
    for (int idx = tid; idx < 32 * tpb * CH; idx += blockDim.x) {
      const int r = idx / CH, c = (idx % CH) * 8, a = q_first + r;
      const bool ok = a < L;
      cp_async16(reinterpret_cast<float *>(Gs + r * D + c),
                 reinterpret_cast<const float *>(G + (base + (ok ? a : 0)) * (size_t)ld + h * D + c), ok);
    }
  }
  cp_async_commit();

  const int tl = w >> 1, tr = tpb * blockIdx.x + tl;  // this warp's trunk (in block, overall)
  const bool active = tr < ntr;                       // warp-uniform
  const int r0 = (w & 1) * 16 + g, r1 = r0 + 8;
  const int i0 = 32 * tr + r0, i1 = i0 + 8;
  const int c0 = min(i0, L - 1), c1 = min(i1, L - 1);  // rows past L: row L-1's data, never stored
  uint32_t qa[D / 16][4];                              // loaded while the copies are in flight
  load_q16in<D>(qa, Q + (base + c0) * ld + h * D, Q + (base + c1) * ld + h * D, qb ? qb + h * D : nullptr, scale,
                t);

  const LocalWindow win(bias, h, ntr, tr, off, nkw, L, r0, r1);  // as in k_attention_tc_local
  float sc[KT / 8][4];
  if (active) win.load_first(sc, t);
  cp_async_wait<0>();
  __syncthreads();  // the only barrier: warps past the last trunk leave after it
  if (!active) return;

  const uint16_t *Kw = Ks + (win.kbeg - u0) * DP, *Vw = Vs + (win.kbeg - u0) * DP;
  float o[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  win.sweep(sc, t, [&](auto full, int k0, int nk) {
    tile_math16<D, decltype(full)::value>(sc, Kw + k0 * DP, Vw + k0 * DP, nk, qa, o, m0, m1, l0, l1, lane);
  });
  const uint16_t *g0 = G ? Gs + (i0 - q_first) * D + 2 * t : nullptr;
  const uint16_t *g1 = G ? Gs + (i1 - q_first) * D + 2 * t : nullptr;
  store_rows16in<D>(o, l0, l1, O, g0, g1, base, H, h, L, i0, i1, t);
}

// Shared bytes of an fp16-input local block of tpb trunks and windows of nk keys.
template <int D>
constexpr int64_t local_smem_h16(int tpb, int nk) {
  return (int64_t)(32 * (tpb - 1) + nk + H16LocalCfg<D>::SPARE) * 2 * H16LocalCfg<D>::DP * 2 +
         (int64_t)32 * tpb * D * 2;  // the block's gate rows
}

// Head width D's slot in PxTcDevice::lim.
constexpr int lim_index(int D) { return D == 16 ? 0 : D == 32 ? 1 : D == 48 ? 2 : 3; }

// Per D on the current device: the full kernel gets its fixed size, the local kernel the
// device's opt-in maximum (the size a launch passes decides occupancy, not this limit).
template <int D>
PxTcDevice::Lim configure() {
  int dev = 0, optin = 0, per_sm = 0, sms = 0;
  auto full = [](auto kernel) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, TcCfg<D>::SMEM) == cudaSuccess;
  };
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      optin < TcCfg<D>::SMEM || optin < H16Cfg<D>::SMEM || !full(k_attention_tc<D, 0, 128>) ||
      !full(k_attention_tc<D, 1, 128>) || !full(k_attention_tc<D, 2, 128>) || !full(k_attention_tc<D, 0, 64>) ||
      !full(k_attention_tc<D, 1, 64>) || !full(k_attention_tc<D, 2, 64>) ||
      cudaFuncSetAttribute(k_attention_h16<D, 2, 128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           H16Cfg<D>::SMEM) != cudaSuccess ||
      cudaFuncSetAttribute(k_attention_h16<D, 2, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           H16Cfg<D>::SMEM) != cudaSuccess ||
      cudaFuncSetAttribute(k_attention_tc_local<D, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           optin) != cudaSuccess ||
      cudaFuncSetAttribute(k_attention_tc_local<D, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           optin) != cudaSuccess) {
    cudaGetLastError();  // not a sticky error: the exact kernels run instead
    return PxTcDevice::Lim{0, 0, 0};
  }
  return PxTcDevice::Lim{optin, per_sm, sms};
}

// Queries per block of a full attention launch: 64 (4 warps) when that takes fewer waves of
// blocks than 128 (8 warps), else 128. Blocks per SM by shared memory (smem64 / smem128
// bytes each, plus the 1 KB the system reserves per block) and by registers (<= 128 per
// thread: 256 / qt blocks).
static int full_query_tile(const PxTcDevice::Lim &lim, int S, int L, int H, int smem64, int smem128) {
  if (lim.sms <= 0) return 128;
  auto waves = [&](int qt, int smem) {
    const int by_smem = lim.per_sm / (smem + 1024);
    const int per_sm = by_smem < 256 / qt ? by_smem : 256 / qt;
    const int64_t blocks = (int64_t)((L + qt - 1) / qt) * H * S, slots = (int64_t)lim.sms * (per_sm > 0 ? per_sm : 1);
    return (blocks + slots - 1) / slots;
  };
  return waves(64, smem64) < waves(128, smem128) ? 64 : 128;
}

// The fp16-input kernels' shared memory on the current device (d = 32, 48, 64); false when
// refused (attention_full_h16 then converts its inputs and runs the fp32-input path).
template <int D>
bool configure_h16in() {
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      optin < H16InCfg<D, 128>::SMEM)
    return false;
  bool ok = true;
  auto set = [&](auto kernel, int bytes) {
    ok = ok && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess;
  };
  set(k_attention_h16in<D, 128, 16, false>, H16InCfg<D, 128>::SMEM);
  set(k_attention_h16in<D, 128, 8, false>, H16InCfg<D, 128>::SMEM);
  set(k_attention_h16in<D, 128, 4, false>, H16InCfg<D, 128>::SMEM);
  set(k_attention_h16in<D, 64, 16, false>, H16InCfg<D, 64>::SMEM);
  set(k_attention_h16in<D, 64, 8, false>, H16InCfg<D, 64>::SMEM);
  set(k_attention_h16in<D, 64, 4, false>, H16InCfg<D, 64>::SMEM);
  set(k_attention_h16in<D, 128, 16, true>, H16InCfg<D, 128, true>::SMEM);
  set(k_attention_h16in<D, 64, 16, true>, H16InCfg<D, 64, true>::SMEM);
  set(k_attention_h16in_local<D>, optin);
  if (!ok) cudaGetLastError();  // not sticky: the fallback runs instead
  return ok;
}

template <int D>
void launch_h16in(const PxTcDevice::Lim &lim, cudaStream_t st, bool pdl, int S, int L, int H, int ld, const uint16_t *Q,
                  const uint16_t *K, const uint16_t *V, const uint16_t *G, const float *qb, const float *bias,
                  const uint16_t *bias16, int ldb, float scale, uint16_t *O) {
  const dim3 g64((L + 63) / 64, H, S), g128((L + 127) / 128, H, S);
  if (bias16) {  // the fp16 bias, rows of ldb halves
    if (full_query_tile(lim, S, L, H, H16InCfg<D, 64, true>::SMEM, H16InCfg<D, 128, true>::SMEM) == 64)
      px_launch((k_attention_h16in<D, 64, 16, true>), g64, 128, H16InCfg<D, 64, true>::SMEM, st, pdl, L, H, ld, Q, K, V,
                G, qb, (const void *)bias16, ldb, scale, O);
    else
      px_launch((k_attention_h16in<D, 128, 16, true>), g128, 256, H16InCfg<D, 128, true>::SMEM, st, pdl, L, H, ld, Q, K,
                V, G, qb, (const void *)bias16, ldb, scale, O);
    return;
  }
  // 64-query blocks when they take fewer waves (as the fp32-input kernels)
  const bool q64 = full_query_tile(lim, S, L, H, H16InCfg<D, 64>::SMEM, H16InCfg<D, 128>::SMEM) == 64;
  const int bv = (L % 4 == 0 && (uintptr_t)bias % 16 == 0) ? 16 : (L % 2 == 0 && (uintptr_t)bias % 8 == 0) ? 8 : 4;
#define PX_H16IN(QT_, BV_)                                                                                             \
  px_launch((k_attention_h16in<D, QT_, BV_, false>), QT_ == 64 ? g64 : g128, 2 * QT_, H16InCfg<D, QT_>::SMEM, st, pdl, \
            L, H, ld, Q, K, V, G, qb, (const void *)bias, L, scale, O)
  if (q64) {
    if (bv == 16) PX_H16IN(64, 16);
    else if (bv == 8) PX_H16IN(64, 8);
    else PX_H16IN(64, 4);
  } else {
    if (bv == 16) PX_H16IN(128, 16);
    else if (bv == 8) PX_H16IN(128, 8);
    else PX_H16IN(128, 4);
  }
#undef PX_H16IN
}

// Trunks per block for a local kernel (both take __launch_bounds__(256, 2): <= 128 registers
// per thread, 8 / tpb blocks of 64 tpb threads) whose block of k trunks needs smem(k) bytes:
// the most resident warps per SM, ties to more trunks (less re-staging). Blocks per SM by
// shared memory count the 1 KB per block the system reserves. 0 when even one trunk's window
// does not fit. sm_90: 4 trunks, 2 blocks (16 warps) per SM for d <= 48 and nk <= 128.
template <typename SmemFn>
int local_trunks(const PxTcDevice::Lim &lim, int ntr, SmemFn smem) {
  int tpb = 0, best = 0;
  for (int k = min(4, ntr); k >= 1; k--) {
    const int64_t sm = smem(k);
    if (sm > lim.optin) continue;
    const int warps = 2 * k * min(lim.per_sm / ((int)sm + 1024), 8 / k);
    if (warps > best) best = warps, tpb = k;
  }
  return tpb;
}

template <int D>
cudaError_t launch(const PxTcDevice::Lim &lim, bool no_h16, cudaStream_t st, bool pdl, int S, int L, int H, int ld,
                   const float *Q, const float *K, const float *V, const float *bias, int local, int nk, float scale,
                   void *O, const float *G, int ldg, int ot) {
  if (lim.optin == 0) return cudaErrorInvalidValue;
  if (local) {
    const int ntr = (L + 31) / 32;
    const int tpb = local_trunks(lim, ntr, [nk](int k) { return local_smem<D>(k, nk); });
    // A window too wide for shared memory (nk above ~680 at d = 32 on sm_90) goes to the
    // exact kernel.
    if (!tpb) return cudaErrorInvalidValue;
    dim3 grid((ntr + tpb - 1) / tpb, H, S);
    if (ot == 2)
      px_launch((k_attention_tc_local<D, 2>), grid, 64 * tpb, (size_t)local_smem<D>(tpb, nk), st, pdl, L, H, ld, Q, K,
                V, bias, nk, tpb, scale, O, G, ldg);
    else
      px_launch((k_attention_tc_local<D, 0>), grid, 64 * tpb, (size_t)local_smem<D>(tpb, nk), st, pdl, L, H, ld, Q, K,
                V, bias, nk, tpb, scale, O, G, ldg);
  } else {
    // 128 queries (8 warps) per block: each staged K/V tile serves twice the rows of a
    // 64-query block (H200, T=330, H=16, S=10: 58 us per call against 68 us). But a block
    // lasts one sweep over all keys whatever its rows, so the launch takes about as many
    // sweeps as it has waves of blocks: 64-query blocks (4 warps, up to 4 per SM by
    // registers, fewer where shared memory is short) are taken when they need fewer waves
    // (d = 48, T=150, S=10: 320 blocks of 128 queries are two waves of 2 x 132, 480 of 64
    // one wave of 4 x 132).
    // fp16 outputs (the FP16 precision's blocks) take the fp16-operand kernel unless
    // PXDIFF_NO_H16_ATTENTION was set when the context was made (then the TF32 one, for
    // comparisons).
    const bool h16 = ot == 2 && !no_h16;
    const int smem = h16 ? H16Cfg<D>::SMEM : TcCfg<D>::SMEM;
    const int qt = full_query_tile(lim, S, L, H, smem, smem);
#define PX_FULL_ATT(OT_, QT_)                                                                                       \
  px_launch((k_attention_tc<D, OT_, QT_>), dim3((L + QT_ - 1) / QT_, H, S), 2 * QT_, TcCfg<D>::SMEM, st, pdl, L, H, \
            ld, Q, K, V, bias, scale, O, G, ldg)
    if (h16) {
      if (qt == 128)
        px_launch((k_attention_h16<D, 2, 128>), dim3((L + 127) / 128, H, S), 256, H16Cfg<D>::SMEM, st, pdl, L, H, ld, Q,
                  K, V, bias, scale, O, G, ldg);
      else
        px_launch((k_attention_h16<D, 2, 64>), dim3((L + 63) / 64, H, S), 128, H16Cfg<D>::SMEM, st, pdl, L, H, ld, Q, K,
                  V, bias, scale, O, G, ldg);
    } else if (qt == 128) {
      if (ot == 0) PX_FULL_ATT(0, 128);
      else if (ot == 1) PX_FULL_ATT(1, 128);
      else PX_FULL_ATT(2, 128);
    } else {
      if (ot == 0) PX_FULL_ATT(0, 64);
      else if (ot == 1) PX_FULL_ATT(1, 64);
      else PX_FULL_ATT(2, 64);
    }
#undef PX_FULL_ATT
  }
  return cudaSuccess;
}

}  // namespace

void px_attention_tc_init(PxTcDevice *dev) {
  dev->lim[lim_index(16)] = configure<16>();
  dev->lim[lim_index(32)] = configure<32>();
  dev->lim[lim_index(48)] = configure<48>();
  dev->lim[lim_index(64)] = configure<64>();
  dev->disabled = getenv("PXDIFF_NO_TC_ATTENTION") != nullptr;
  dev->no_h16 = getenv("PXDIFF_NO_H16_ATTENTION") != nullptr;
  dev->h16in[0] = configure_h16in<32>();
  dev->h16in[1] = configure_h16in<48>();
  dev->h16in[2] = configure_h16in<64>();
}

int px_attention_tc_h16in(const PxTcDevice *dev, cudaStream_t stream, int S, int L, int H, int d, int ld,
                          const uint16_t *Q, const uint16_t *K, const uint16_t *V, const uint16_t *G,
                          const float *q_bias, const float *bias, const uint16_t *bias16, int ldb16, float scale,
                          uint16_t *O) {
  const int slot = d == 32 ? 0 : d == 48 ? 1 : d == 64 ? 2 : -1;
  if (dev->disabled || slot < 0 || !dev->h16in[slot] || dev->lim[lim_index(d)].optin == 0) return 0;
  if ((ld % 8) || ((uintptr_t)Q % 16) || ((uintptr_t)K % 16) || ((uintptr_t)V % 16) || ((uintptr_t)O % 4) ||
      ((uintptr_t)G % 16) || ((uintptr_t)bias % 4) || ((uintptr_t)q_bias % 8))
    return 0;
  if (S > 65535 || H > 65535) return 0;
  if (S <= 0 || L <= 0 || H <= 0) return 1;  // nothing to compute
  const PxTcDevice::Lim &lim = dev->lim[lim_index(d)];
  if ((uintptr_t)bias16 % 16 || ldb16 % 8 || ldb16 < L) bias16 = nullptr;  // the fp32 bias then
  if (d == 32)
    launch_h16in<32>(lim, stream, dev->pdl, S, L, H, ld, Q, K, V, G, q_bias, bias, bias16, ldb16, scale, O);
  else if (d == 48)
    launch_h16in<48>(lim, stream, dev->pdl, S, L, H, ld, Q, K, V, G, q_bias, bias, bias16, ldb16, scale, O);
  else
    launch_h16in<64>(lim, stream, dev->pdl, S, L, H, ld, Q, K, V, G, q_bias, bias, bias16, ldb16, scale, O);
  return 1;
}

int px_attention_tc_h16in_local(const PxTcDevice *dev, cudaStream_t stream, int S, int L, int H, int d, int nq,
                                int nk, int ld, const uint16_t *Q, const uint16_t *K, const uint16_t *V,
                                const uint16_t *G, const float *q_bias, const float *bias, float scale, uint16_t *O) {
  const int slot = d == 32 ? 0 : d == 48 ? 1 : d == 64 ? 2 : -1;
  if (dev->disabled || slot < 0 || !dev->h16in[slot] || dev->lim[lim_index(d)].optin == 0) return 0;
  if (nq != 32 || nk < nq || (nk - nq) % 2) return 0;
  if ((ld % 8) || ((uintptr_t)Q % 16) || ((uintptr_t)K % 16) || ((uintptr_t)V % 16) || ((uintptr_t)O % 4) ||
      ((uintptr_t)G % 16) || ((uintptr_t)bias % 4) || ((uintptr_t)q_bias % 8))
    return 0;
  if (S > 65535 || H > 65535) return 0;
  if (S <= 0 || L <= 0 || H <= 0) return 1;  // nothing to compute
  const PxTcDevice::Lim &lim = dev->lim[lim_index(d)];
  const int ntr = (L + 31) / 32;
#define PX_H16IN_LOCAL(D_)                                                                                         \
  do {                                                                                                             \
    const int tpb = local_trunks(lim, ntr, [nk](int k) { return local_smem_h16<D_>(k, nk); });                     \
    if (!tpb) return 0; /* a window too wide for shared memory: the fallback */                                    \
    const dim3 grid((ntr + tpb - 1) / tpb, H, S);                                                                  \
    const size_t smem = (size_t)local_smem_h16<D_>(tpb, nk);                                                       \
    px_launch((k_attention_h16in_local<D_>), grid, 64 * tpb, smem, stream, dev->pdl, L, H, ld, Q, K, V, G, q_bias, \
              bias, nk, tpb, scale, O);                                                                            \
  } while (0)
  if (d == 32) PX_H16IN_LOCAL(32);
  else if (d == 48) PX_H16IN_LOCAL(48);
  else PX_H16IN_LOCAL(64);
#undef PX_H16IN_LOCAL
  return 1;
}

int px_attention_tc(const PxTcDevice *dev, cudaStream_t stream, int S, int L, int H, int d, int ld, const float *Q,
                    const float *K, const float *V, const float *bias, int local, int nq, int nk,
                    float scale, void *O, const float *G, int ldg, int out_type) {
  if (dev->disabled) return 0;
  if (local && (nq != 32 || nk < nq || (out_type != 0 && out_type != 2))) return 0;
  if ((ld % 4) || ((uintptr_t)Q % 16) || ((uintptr_t)K % 16) || ((uintptr_t)V % 16) ||
      ((uintptr_t)O % 16) || (G && ((ldg % 4) || ((uintptr_t)G % 16))))
    return 0;
  if (S > 65535 || H > 65535) return 0;
  if (S <= 0 || L <= 0 || H <= 0) return 1;  // nothing to compute
  cudaError_t e;
  switch (d) {
    case 16:
      e = launch<16>(dev->lim[lim_index(16)], dev->no_h16, stream, dev->pdl, S, L, H, ld, Q, K, V, bias, local, nk,
                     scale, O, G, ldg, out_type);
      break;
    case 32:
      e = launch<32>(dev->lim[lim_index(32)], dev->no_h16, stream, dev->pdl, S, L, H, ld, Q, K, V, bias, local, nk,
                     scale, O, G, ldg, out_type);
      break;
    case 48:
      e = launch<48>(dev->lim[lim_index(48)], dev->no_h16, stream, dev->pdl, S, L, H, ld, Q, K, V, bias, local, nk,
                     scale, O, G, ldg, out_type);
      break;
    case 64:
      e = launch<64>(dev->lim[lim_index(64)], dev->no_h16, stream, dev->pdl, S, L, H, ld, Q, K, V, bias, local, nk,
                     scale, O, G, ldg, out_type);
      break;
    default: return 0;
  }
  return e == cudaSuccess ? 1 : 0;  // attribute refused: the exact kernel instead
}
