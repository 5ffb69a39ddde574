// The atom blocks' transition up-projection and SwiGLU in one kernel (backend.h linear_swiglu):
// hs = silu(X W1^T) * (X W2^T) * 2^-e on fp16 operands, fp32 accumulation, fp16 output.
//
// Why: at the atoms' width (K = 128, hidden 256) the [x1 x2] GEMM is memory-bound, and the
// SwiGLU after it reads its whole output back: per row 256 B in, 1024 B of [x1 x2] written,
// read again, 512 B of hs written. Fused, [x1 x2] never leaves registers: 768 B per row
// instead of 2816 (at 100 samples of 1786 atoms, 137 MB per block instead of 503 MB).
//
// Layout: a block owns 128 rows and 64 hidden columns (x1's and x2's), 8 warps of 16 rows.
// The block's X rows and the 2 x 64 weight rows are staged once by cp.async (rows of K + 8
// halves: 16-byte aligned and ldmatrix conflict-free), each warp then runs K / 16 steps of
// m16n8k16 (16 tensor instructions a step) with A and B fragments read by ldmatrix (the
// weight rows are the B operand as stored, as K is in the flash attention), applies the SwiGLU
// to its accumulators, and the tile goes out through shared memory in 16-byte stores. x1 and
// x2 stay fp32 until the product (the unfused path rounds both to fp16 first).
#include "cuda/context.cuh"
#include "cuda/half_io.cuh"
#include "cuda/mma.cuh"

namespace pxcuda {
namespace {

constexpr int SG_ROWS = 128, SG_COLS = 64;

template <int K>
struct SgCfg {
  static constexpr int XP = K + 8;                                       // halves per staged row
  static constexpr int YP = SG_COLS + 8;                                 // halves per output row
  static constexpr int SMEM = (SG_ROWS + 2 * SG_COLS) * XP * 2;          // X rows, W1 rows, W2 rows
  static_assert(SG_ROWS * YP <= SG_ROWS * XP, "the output tile reuses the X rows' space");
};

template <int K>
__global__ void __launch_bounds__(256, 2)
k_swiglu_gemm(int M, int H, const uint16_t *__restrict__ X, const uint16_t *__restrict__ W,
              uint16_t *__restrict__ Y, float sc) {
  using Cfg = SgCfg<K>;
  constexpr int XP = Cfg::XP, YP = Cfg::YP, CH = K / 8;  // CH: 16-byte chunks per row
  extern __shared__ __align__(16) uint16_t sm[];
  uint16_t *Xs = sm, *W1s = Xs + SG_ROWS * XP, *W2s = W1s + SG_COLS * XP;
  const int r0 = blockIdx.x * SG_ROWS, j0 = blockIdx.y * SG_COLS;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;

  for (int idx = tid; idx < SG_ROWS * CH; idx += blockDim.x) {  // rows past M zero-filled
    const int r = idx / CH, c = (idx % CH) * 8;
    const bool ok = r0 + r < M;
    cp_async16(reinterpret_cast<float *>(Xs + r * XP + c),
               reinterpret_cast<const float *>(X + (ok ? (size_t)(r0 + r) * K + c : 0)), ok);
  }
  for (int idx = tid; idx < SG_COLS * CH; idx += blockDim.x) {
    const int r = idx / CH, c = (idx % CH) * 8;
    cp_async16(reinterpret_cast<float *>(W1s + r * XP + c),
               reinterpret_cast<const float *>(W + (size_t)(j0 + r) * K + c), true);
    cp_async16(reinterpret_cast<float *>(W2s + r * XP + c),
               reinterpret_cast<const float *>(W + (size_t)(H + j0 + r) * K + c), true);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  float c1[SG_COLS / 8][4], c2[SG_COLS / 8][4];
#pragma unroll
  for (int n = 0; n < SG_COLS / 8; n++)
#pragma unroll
    for (int i = 0; i < 4; i++) c1[n][i] = c2[n][i] = 0.0f;
  // A: matrices (rows +0..7 | +8..15) x (k +0..7 | +8..15) in fragment order a0..a3;
  // B: (weight rows +0..7 | +8..15) x (k +0..7 | +8..15) give b0, b1 of two 8-column tiles.
  const uint16_t *xl = Xs + (w * 16 + (lane & 15)) * XP + 8 * (lane >> 4);
  const int wo = (8 * (lane >> 4) + (lane & 7)) * XP + 8 * ((lane >> 3) & 1);
#pragma unroll
  for (int ks = 0; ks < K / 16; ks++) {
    uint32_t a[4];
    ldsm4(a, xl + 16 * ks);
#pragma unroll
    for (int n2 = 0; n2 < SG_COLS / 16; n2++) {
      uint32_t b[4];
      ldsm4(b, W1s + 16 * n2 * XP + wo + 16 * ks);
      mma_f16(c1[2 * n2], a, b[0], b[1]);
      mma_f16(c1[2 * n2 + 1], a, b[2], b[3]);
      ldsm4(b, W2s + 16 * n2 * XP + wo + 16 * ks);
      mma_f16(c2[2 * n2], a, b[0], b[1]);
      mma_f16(c2[2 * n2 + 1], a, b[2], b[3]);
    }
  }
  __syncthreads();  // every warp is done with the X rows: the output tile takes their place
  uint16_t *Ys = Xs;
#pragma unroll
  for (int n = 0; n < SG_COLS / 8; n++) {
    const int col = 8 * n + 2 * t;
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; i++) v[i] = c1[n][i] * sigmoidf_(c1[n][i]) * c2[n][i] * sc;
    *reinterpret_cast<uint32_t *>(Ys + (w * 16 + g) * YP + col) = pack_half2<2>(v[0], v[1]);
    *reinterpret_cast<uint32_t *>(Ys + (w * 16 + g + 8) * YP + col) = pack_half2<2>(v[2], v[3]);
  }
  __syncthreads();
  for (int idx = tid; idx < SG_ROWS * (SG_COLS / 8); idx += blockDim.x) {
    const int r = idx / (SG_COLS / 8), c = (idx % (SG_COLS / 8)) * 8;
    if (r0 + r < M)
      *reinterpret_cast<uint4 *>(Y + (size_t)(r0 + r) * H + j0 + c) = *reinterpret_cast<const uint4 *>(Ys + r * YP + c);
  }
}

}  // namespace

// Configure the kernel's shared memory on the current device (false: the unfused path runs).
bool swiglu_gemm_init() {
  const bool ok = cudaFuncSetAttribute(k_swiglu_gemm<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       SgCfg<128>::SMEM) == cudaSuccess;
  if (!ok) cudaGetLastError();  // not sticky
  return ok;
}

// hs = silu(X W1^T) * (X W2^T) * 2^-e: the fused kernel for fp16 operands, K = 128, H a
// multiple of 64 and 16-byte aligned rows (the atom blocks); else the [x1 x2] GEMM into
// scratch and the SwiGLU.
void be_linear_swiglu(px_backend *b, int M, int H, int K, const void *X, px_weight W, void *Y, int e) {
  CTX(b);
  PROF("linear_swiglu");
  if (M <= 0 || H <= 0) return;
  if (g.swiglu_gemm && K == 128 && H % SG_COLS == 0 && W.h16 && W.h16_type == PX_F16 && W.e == 0 &&
      (uintptr_t)X % 16 == 0 && (uintptr_t)W.h16 % 16 == 0 && (uintptr_t)Y % 16 == 0) {
    const dim3 grid((unsigned)((M + SG_ROWS - 1) / SG_ROWS), (unsigned)(H / SG_COLS));
    k_swiglu_gemm<128><<<grid, 256, SgCfg<128>::SMEM, g.stream>>>(M, H, (const uint16_t *)X,
                                                                  (const uint16_t *)W.h16, (uint16_t *)Y,
                                                                  ldexpf(1.0f, -e));
    LAUNCHED("swiglu_gemm");
    return;
  }
  // [x1 x2] in fp16 (2 M H halves = M H floats of scratch), then the SwiGLU.
  float *t = f32_scratch(g, (size_t)M * H);
  if (!t) return;
  be_linear(b, M, 2 * H, K, X, K, W, nullptr, t, 2 * H, 0, 0, PX_F16, PX_F16);
  g.op = "linear_swiglu";
  be_swiglu(b, M, H, t, Y, PX_F16, PX_F16, e);
}

}  // namespace pxcuda
