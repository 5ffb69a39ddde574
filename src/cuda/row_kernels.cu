// Row kernels: everything that reads a row (or a few values) and writes it back, between
// the GEMMs. LayerNorm and AdaLN keep the row in registers (one warp per row, float4
// loads; the conditioning loaded with the row so that all loads are in flight at once, or,
// for the wide token rows, after the reductions so that twice the warps fit an SM);
// the residual + AdaLN of two consecutive block stages is one pass; at fp16/bf16 the
// producers of GEMM inputs store 16-bit values directly, so no conversion pass runs
// before the GEMM (each has a fallback for shapes its fast kernel does not take: the fp32
// result into scratch, then converted). No atomics: results are deterministic. Also the noise embedding and the
// EDM mix (the sampler's per-call scalings) on the device.
#include "cuda/context.cuh"
#include "cuda/half_io.cuh"
#include "cuda/launch.cuh"

namespace pxcuda {

// One warp per row: mean and variance in two passes over the row (fp32).
// mode 0: Y = LN(X) * w + b (w, b optional); mode 1: Y = LN(X) * G[r % g] + B[r % g].
__global__ void k_layernorm(int M, int C, const float *X, const float *w, const float *b,
                            const float *G, const float *B, int g_rows, float *Y) {
  px_pdl_enter();
  int warps = blockDim.x / 32;
  int row = blockIdx.x * warps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= M) return;
  const float *x = X + (size_t)row * C;
  float s = 0;
  for (int c = lane; c < C; c += 32) s += x[c];
  const float mean = warp_sum(s) / C;
  float ss = 0;
  for (int c = lane; c < C; c += 32) {
    float d = x[c] - mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(warp_sum(ss) / C + 1e-5f);
  float *y = Y + (size_t)row * C;
  if (G) {
    const float *g = G + (size_t)(row % g_rows) * C, *bb = B + (size_t)(row % g_rows) * C;
    for (int c = lane; c < C; c += 32) y[c] = g[c] * ((x[c] - mean) * rstd) + bb[c];
  } else {
    for (int c = lane; c < C; c += 32) {
      float v = (x[c] - mean) * rstd;
      if (w) v *= w[c];
      if (b) v += b[c];
      y[c] = v;
    }
  }
}

// Register-resident row kernels for C <= 128 * NV with C % 4 == 0 (one warp per row,
// float4 loads, the row read once): LayerNorm / AdaLN, and the fused residual + AdaLN.
// mode 0: Y = LN(X) * w + b; mode 1: Y = LN(X) * G + B; mode 2: X += Gr * R, then mode 1
// on the updated X (written back). Y is stored as OT (store4): 16-bit for GEMM inputs. R is of
// type rt (load4_scaled: a 16-bit GEMM output, read times rsc).
// A warp takes spw rows that share their conditioning row (rows t, t + g_rows, ...: the same
// token of spw samples; row_groups), so that row's G, B and Gr come from L1 after the first:
// with one warp per consecutive row, every sample's row read them again from L2 (at 100
// samples of 330 tokens, 9 KB of L2 reads per 4.5 KB row of DRAM traffic).
// Group q of the nq groups holds rows ((q / g_rows) spw + rep) g_rows + q % g_rows, rep < spw,
// those below M.
struct RowGroups {
  int64_t nq;
  int M, g_rows, spw;
  __host__ __device__ RowGroups(int M_, int g_rows_, int spw_) : M(M_), g_rows(g_rows_), spw(spw_) {
    nq = (int64_t)g_rows * (((M + g_rows - 1) / g_rows + spw - 1) / spw);
  }
  __device__ int64_t row(int64_t q, int rep) const { return ((q / g_rows) * spw + rep) * g_rows + q % g_rows; }
};

template <int NV, int OT, bool LATE>
__device__ __forceinline__ void row_ln_body(int M, int C, float *X, const float *w, const float *b, const float *G,
                         const float *B, int g_rows, const float *Gr, int gr_rows, const void *Rr, int rt,
                         float rsc, void *Y, int mode, int spw) {
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  const int C4 = C / 4;
  const RowGroups rg(M, g_rows, spw);
  for (int64_t q = blockIdx.x * (int64_t)warps + threadIdx.x / 32; q < rg.nq; q += (int64_t)gridDim.x * warps)
  for (int rep = 0; rep < spw; rep++) {
    const int64_t row64 = rg.row(q, rep);
    if (row64 >= M) break;
    const int row = (int)row64;
    float4 v[NV], ga[NV], ba[NV];
    float4 *x4 = reinterpret_cast<float4 *>(X + (size_t)row * C);
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int c = lane + 32 * k;
      if (c < C4) {
        v[k] = x4[c];
        // The output's scale and shift are loaded here, with the row, not after the two
        // reductions: a warp then has all its loads in flight at once (the token rows were
        // only ~12 warps per SM, too few to hide three dependent rounds of memory latency).
        // LATE (k_row_ln_late) loads them after the reductions instead, for more warps.
        if (!LATE) {
          if (mode != 0) {
            ga[k] = reinterpret_cast<const float4 *>(G + (size_t)(row % g_rows) * C)[c];
            ba[k] = reinterpret_cast<const float4 *>(B + (size_t)(row % g_rows) * C)[c];
          } else {
            ga[k] = w ? reinterpret_cast<const float4 *>(w)[c] : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            ba[k] = b ? reinterpret_cast<const float4 *>(b)[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          }
        }
        if (mode == 2) {
          const float4 g = reinterpret_cast<const float4 *>(Gr + (size_t)(row % gr_rows) * C)[c];
          const float4 y = load4_scaled(Rr, (size_t)row * C + 4 * c, rt, rsc);
          v[k].x += g.x * y.x;
          v[k].y += g.y * y.y;
          v[k].z += g.z * y.z;
          v[k].w += g.w * y.w;
        }
        s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
      }
    }
    const float mean = warp_sum(s) / C;
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int c = lane + 32 * k;
      if (c < C4) {
        const float a = v[k].x - mean, bb = v[k].y - mean, cc = v[k].z - mean, d = v[k].w - mean;
        ss += (a * a + bb * bb) + (cc * cc + d * d);
      }
    }
    const float rstd = rsqrtf(warp_sum(ss) / C + 1e-5f);
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int c = lane + 32 * k;
      if (c >= C4) continue;
      float4 o = make_float4((v[k].x - mean) * rstd, (v[k].y - mean) * rstd, (v[k].z - mean) * rstd,
                             (v[k].w - mean) * rstd);
      if (LATE && mode != 0) {
        ga[k] = __ldg(reinterpret_cast<const float4 *>(G + (size_t)(row % g_rows) * C) + c);
        ba[k] = __ldg(reinterpret_cast<const float4 *>(B + (size_t)(row % g_rows) * C) + c);
      } else if (LATE) {
        ga[k] = w ? __ldg(reinterpret_cast<const float4 *>(w) + c) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
        ba[k] = b ? __ldg(reinterpret_cast<const float4 *>(b) + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
      const float4 g = ga[k], bb = ba[k];
      if (mode != 0) {
        o = make_float4(g.x * o.x + bb.x, g.y * o.y + bb.y, g.z * o.z + bb.z, g.w * o.w + bb.w);
      } else {
        if (w) o = make_float4(o.x * g.x, o.y * g.y, o.z * g.z, o.w * g.w);
        if (b) o = make_float4(o.x + bb.x, o.y + bb.y, o.z + bb.z, o.w + bb.w);
      }
      store4<OT>(Y, (size_t)row * C + 4 * c, o);
      // The updated row is written back here, after every load of the row: a store in the
      // load loop kept the next chunk's loads behind it (X may alias G, B, Gr or R as far as
      // the compiler knows), six dependent rounds of memory latency per token row.
      if (mode == 2) x4[c] = v[k];
    }
  }
}

template <int NV, int OT>
__global__ void k_row_ln(int M, int C, float *X, const float *w, const float *b, const float *G, const float *B,
                         int g_rows, const float *Gr, int gr_rows, const void *Rr, int rt, float rsc, void *Y,
                         int mode, int spw) {
  px_pdl_enter();
  row_ln_body<NV, OT, false>(M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode, spw);
}
// Rows of 257 to 1024 values (the token blocks' C = 768, c_s = 384): G and B are loaded after the two
// reductions, from L1 or L2, instead of with the row. k_row_ln holds them in registers while
// the row loads (110 registers at C = 768: 16 warps per SM, 1.6 waves of blocks at 10 samples
// of 330 tokens); here at most 64 (32 warps per SM), so twice the rows' DRAM reads are in
// flight (ncu, H200, residual + AdaLN at 330 tokens: 16.1 -> 14.1 us per launch at 10 samples,
// 121 -> 104 us at 100). The same arithmetic in the same order (the same values).
template <int NV, int OT>
__global__ void __launch_bounds__(256, 4)
k_row_ln_late(int M, int C, float *X, const float *w, const float *b, const float *G, const float *B, int g_rows,
              const float *Gr, int gr_rows, const void *Rr, int rt, float rsc, void *Y, int mode, int spw) {
  px_pdl_enter();
  row_ln_body<NV, OT, true>(M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode, spw);
}

// Rows per warp for M rows whose conditioning repeats every g_rows rows: up to 8 of one
// conditioning row, while the launch keeps >= 4096 warps (as many as one row per warp gives
// when M is smaller: spw 1). Any grouping computes the same values. PXDIFF_NO_ROW_GROUPS (read
// when the context is made) keeps one row per warp (comparisons).
static int row_groups(const Ctx &g, int M, int g_rows) {
  if (g.no_row_groups) return 1;
  const int ns = g_rows > 0 ? (M + g_rows - 1) / g_rows : 1;
  int spw = M / 4096;
  if (spw > 8) spw = 8;
  if (spw > ns) spw = ns;
  return spw < 1 ? 1 : spw;
}

// Blocks of 8 warps for the row groups of row_groups (at most 65535 * 4: the warps loop).
static int group_blocks(int M, int g_rows, int spw) {
  const int64_t b = (RowGroups(M, g_rows, spw).nq + 7) / 8;
  return (int)(b > 65535 * 4 ? 65535 * 4 : b < 1 ? 1 : b);
}

template <int NV, bool LATE>
static void launch_row_ln_as(Ctx &g, int ot, int blocks, int M, int C, float *X, const float *w, const float *b,
                             const float *G, const float *B, int g_rows, const float *Gr, int gr_rows, const void *Rr,
                             int rt, float rsc, void *Y, int mode, int spw) {
  auto kern = [&](auto k) {
    px_launch(k, blocks, 256, 0, g.stream, g.pdl, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode, spw);
  };
  if constexpr (LATE)
    ot == 0 ? kern(k_row_ln_late<NV, 0>) : ot == 1 ? kern(k_row_ln_late<NV, 1>) : kern(k_row_ln_late<NV, 2>);
  else
    ot == 0 ? kern(k_row_ln<NV, 0>) : ot == 1 ? kern(k_row_ln<NV, 1>) : kern(k_row_ln<NV, 2>);
}

// PXDIFF_NO_LATE_ROWS (read when the context is made) keeps k_row_ln for the wide rows too.
template <int NV>
void launch_row_ln(Ctx &g, int ot, int M, int C, float *X, const float *w, const float *b, const float *G,
                   const float *B, int g_rows, const float *Gr, int gr_rows, const void *Rr, int rt, float rsc,
                   void *Y, int mode) {
  const int gr = mode == 0 ? 1 : g_rows, spw = row_groups(g, M, gr);
  const int blocks = group_blocks(M, gr, spw);
  if constexpr (NV >= 4) {  // k_row_ln_late: the wide rows only
    if (g.late_rows)
      return launch_row_ln_as<NV, true>(g, ot, blocks, M, C, X, w, b, G, B, gr, Gr, gr_rows, Rr, rt, rsc, Y, mode,
                                        spw);
  }
  launch_row_ln_as<NV, false>(g, ot, blocks, M, C, X, w, b, G, B, gr, Gr, gr_rows, Rr, rt, rsc, Y, mode, spw);
}

// Launch k_row_ln when the row fits registers and is float4-aligned (8-byte for a 16-bit R);
// false otherwise. ot: Y's type (0 float, 1 bf16, 2 fp16); rt, re: R's type and exponent.
bool row_ln(Ctx &g, int M, int C, float *X, const float *w, const float *b, const float *G, const float *B,
            int g_rows, const float *Gr, int gr_rows, const void *Rr, void *Y, int mode, int ot = 0, int rt = 0,
            int re = 0) {
  auto al = [](const void *p) { return p == nullptr || ((uintptr_t)p % 16) == 0; };
  if (C % 4 || C > 1024 || !al(X) || !al(w) || !al(b) || !al(G) || !al(B) || !al(Gr) || !al(Y) ||
      (rt == 0 ? !al(Rr) : ((uintptr_t)Rr % 8) != 0))
    return false;
  const int nv = (C / 4 + 31) / 32;
  const float rsc = ldexpf(1.0f, re);
  if (nv <= 1)
    launch_row_ln<1>(g, ot, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode);
  else if (nv <= 2)
    launch_row_ln<2>(g, ot, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode);
  else if (nv <= 4)
    launch_row_ln<4>(g, ot, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode);
  else if (nv <= 6)
    launch_row_ln<6>(g, ot, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode);
  else
    launch_row_ln<8>(g, ot, M, C, X, w, b, G, B, g_rows, Gr, gr_rows, Rr, rt, rsc, Y, mode);
  LAUNCHED("row_ln");
  return true;
}

__global__ void k_gated_residual(int M, int C, float *A, const float *G, int g_rows, const float *Y) {
  px_pdl_enter();
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *a = A + (size_t)r * C;
    const float *g = G + (size_t)(r % g_rows) * C, *y = Y + (size_t)r * C;
    if ((C & 3) == 0) { /* float4 path (buffers are 16-byte aligned, rows C floats) */
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C / 4; c += gridDim.x * blockDim.x) {
        float4 av = reinterpret_cast<float4 *>(a)[c];
        const float4 gv = reinterpret_cast<const float4 *>(g)[c], yv = reinterpret_cast<const float4 *>(y)[c];
        av.x += gv.x * yv.x;
        av.y += gv.y * yv.y;
        av.z += gv.z * yv.z;
        av.w += gv.w * yv.w;
        reinterpret_cast<float4 *>(a)[c] = av;
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) a[c] += g[c] * y[c];
    }
  }
}

// Flat float4 versions of the broadcast row updates, one float4 per thread over the whole
// [M, C] array (C % 4 == 0, 16-byte aligned buffers; checked by the callers). The 2D grids
// above give a block per row: for the atom rows (C = 128) that is 11600 blocks of 64 or 128
// threads, each moving 512 bytes with scalar loads (~10 us per launch for ~12 MB, ncu, H200).
// kind 0: A[r] += G[r % g_rows] * Y[r] (gated residual); 1: A[r] += G[r % g_rows] (add_rows).
// Y of type yt (load4_scaled, read times ysc).
__global__ void k_rows_update4(int64_t n4, int C4, float4 *A, const float4 *G, int g_rows, const void *Y, int yt,
                               float ysc, int kind) {
  px_pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / C4;
    const int c = (int)(i - r * C4);
    const float4 g = G[(r % g_rows) * C4 + c];
    float4 a = A[i];
    if (kind == 0) {
      const float4 y = load4_scaled(Y, 4 * (size_t)i, yt, ysc);
      a.x += g.x * y.x;
      a.y += g.y * y.y;
      a.z += g.z * y.z;
      a.w += g.w * y.w;
    } else {
      a.x += g.x;
      a.y += g.y;
      a.z += g.z;
      a.w += g.w;
    }
    A[i] = a;
  }
}

// Y[s, n] += A[s % a_samples, a2t[n]] over [S*N, C], one float4 per thread (as above).
__global__ void k_tokens_to_atoms_add4(int64_t n4, int N, int T, int C4, int a_samples, const float4 *A,
                                       const int64_t *a2t, float4 *Y) {
  px_pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / C4;
    const int c = (int)(i - r * C4), s = (int)(r / N), n = (int)(r % N);
    const float4 a = A[((int64_t)(s % a_samples) * T + a2t[n]) * C4 + c];
    float4 y = Y[i];
    y.x += a.x;
    y.y += a.y;
    y.z += a.z;
    y.w += a.w;
    Y[i] = y;
  }
}

static bool al16(const void *p) { return ((uintptr_t)p % 16) == 0; }

__global__ void k_sigmoid_mul(int M, int C, float *O, int ldo, const float *P, int ldp) {
  px_pdl_enter();
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *o = O + (size_t)r * ldo;
    const float *p = P + (size_t)r * ldp;
    if (((C | ldo | ldp) & 3) == 0) {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C / 4; c += gridDim.x * blockDim.x) {
        float4 ov = reinterpret_cast<float4 *>(o)[c];
        const float4 pv = reinterpret_cast<const float4 *>(p)[c];
        ov.x *= sigmoidf_(pv.x);
        ov.y *= sigmoidf_(pv.y);
        ov.z *= sigmoidf_(pv.z);
        ov.w *= sigmoidf_(pv.w);
        reinterpret_cast<float4 *>(o)[c] = ov;
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) o[c] *= sigmoidf_(p[c]);
    }
  }
}

// Y = silu(X[:, :C]) * X[:, C:] * sc (sc a power of two: exact; 1 for fp32 outputs), X of
// type IT and Y of type OT (load4 / store4: 16-bit GEMM inputs and outputs); four values per
// thread when vec (C % 4 == 0 and aligned rows, checked by the caller).
template <int IT, int OT>
__global__ void k_swiglu(int M, int C, const void *X, void *Y, float sc, int vec) {
  px_pdl_enter();
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const size_t xa = (size_t)r * 2 * C, xb = xa + C;
    if (vec) {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C / 4; c += gridDim.x * blockDim.x) {
        const float4 a = load4<IT>(X, xa + 4 * c), b = load4<IT>(X, xb + 4 * c);
        float4 y = make_float4(a.x * sigmoidf_(a.x) * b.x, a.y * sigmoidf_(a.y) * b.y, a.z * sigmoidf_(a.z) * b.z,
                               a.w * sigmoidf_(a.w) * b.w);
        if (OT) y = make_float4(y.x * sc, y.y * sc, y.z * sc, y.w * sc);
        store4<OT>(Y, (size_t)r * C + 4 * c, y);
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        const float a = load1<IT>(X, xa + c);
        float y = a * sigmoidf_(a) * load1<IT>(X, xb + c);
        if (OT) y *= sc;
        store1<OT>(Y, (size_t)r * C + c, y);
      }
    }
  }
}

// Launch k_swiglu for X of type it and Y of type ot (0 float, 1 bf16, 2 fp16).
void swiglu_typed(Ctx &g, int it, int ot, int M, int H, const void *X, void *Y, float sc) {
  const size_t xa = it ? 8 : 16, ya = ot ? 8 : 16;  // alignment the vector loads / stores need
  const int vec = H % 4 == 0 && (uintptr_t)X % xa == 0 && (uintptr_t)Y % ya == 0;
  const int cols = vec ? H / 4 : H;
  const dim3 grid = grid2d(M, cols, threads_for(cols));
  const int thr = threads_for(cols);
#define PX_SWIGLU(I, O) \
  if (it == I && ot == O) px_launch((k_swiglu<I, O>), grid, thr, 0, g.stream, g.pdl, M, H, X, Y, sc, vec);
  PX_SWIGLU(0, 0)
  PX_SWIGLU(0, 1)
  PX_SWIGLU(0, 2)
  PX_SWIGLU(1, 1)
  PX_SWIGLU(2, 2)
#undef PX_SWIGLU
  LAUNCHED("swiglu");
}

// Four values per thread when X is 16-byte aligned (the s-side gates: ~8M values per call).
__global__ void k_activation4(int64_t n4, float4 *X, int kind) {
  px_pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    float4 v = X[i];
    if (kind == PX_ACT_SIGMOID) {
      v.x = sigmoidf_(v.x); v.y = sigmoidf_(v.y); v.z = sigmoidf_(v.z); v.w = sigmoidf_(v.w);
    } else {
      v.x = fmaxf(v.x, 0.0f); v.y = fmaxf(v.y, 0.0f); v.z = fmaxf(v.z, 0.0f); v.w = fmaxf(v.w, 0.0f);
    }
    X[i] = v;
  }
}

__global__ void k_activation(int64_t n, float *X, int kind) {
  px_pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    X[i] = kind == PX_ACT_SIGMOID ? sigmoidf_(X[i]) : fmaxf(X[i], 0.0f);
}

__global__ void k_add_rows(int M, int C, float *Y, const float *A, int a_rows) {
  px_pdl_enter();
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    float *y = Y + (size_t)r * C;
    const float *a = A + (size_t)(r % a_rows) * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] += a[c];
  }
}

// First atom n with a2t[n] >= t (a2t sorted), searched by the whole block in rounds: each
// thread probes one of blockDim evenly spaced atoms of [lo, hi), and the count of probes
// below t narrows the range to one spacing. Two rounds up to blockDim^2 atoms, where one
// thread's binary search was ~12 dependent loads (H200, 2320 atoms: ~40% of the kernel).
// Every thread returns the same value (uniform control flow: __syncthreads_count).
__device__ int block_lower_bound(const int64_t *a2t, int N, int64_t t) {
  int lo = 0, hi = N;  // the answer lies in [lo, hi]
  while (lo < hi) {
    const int nt = (int)blockDim.x, q = (hi - lo + nt - 1) / nt;
    const int p = lo + (int)threadIdx.x * q;
    const int c = __syncthreads_count(p < hi && a2t[p] < t);
    if (c == 0) return lo;
    const int nlo = lo + (c - 1) * q + 1, nhi = min(lo + c * q, hi);
    lo = nlo;
    hi = nhi;
  }
  return lo;
}

// grid (T, S): each block sums its token's atoms in atom order (deterministic), four
// channels per thread where C allows it (the same sums, element by element).
__global__ void k_atoms_to_tokens(int N, int T, int C, const float *X, const int64_t *a2t,
                                  const float *inv_count, float *Y) {
  px_pdl_enter();
  const int t = blockIdx.x, s = blockIdx.y;
  const int n0 = block_lower_bound(a2t, N, t), n1 = block_lower_bound(a2t, N, t + 1);
  const float w = inv_count[t];
  if ((C & 3) == 0 && ((uintptr_t)X & 15) == 0 && ((uintptr_t)Y & 15) == 0) {
    const int C4 = C / 4;
    const float4 *x4 = reinterpret_cast<const float4 *>(X) + (size_t)s * N * C4;
    float4 *y4 = reinterpret_cast<float4 *>(Y) + ((size_t)s * T + t) * C4;
    for (int c = threadIdx.x; c < C4; c += blockDim.x) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      for (int n = n0; n < n1; n++) {
        const float4 v = x4[(size_t)n * C4 + c];
        acc.x += v.x;
        acc.y += v.y;
        acc.z += v.z;
        acc.w += v.w;
      }
      y4[c] = make_float4(acc.x * w, acc.y * w, acc.z * w, acc.w * w);
    }
    return;
  }
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float acc = 0;
    for (int n = n0; n < n1; n++) acc += X[((size_t)s * N + n) * C + c];
    Y[((size_t)s * T + t) * C + c] = acc * w;
  }
}

__global__ void k_tokens_to_atoms_add(int S, int N, int T, int C, int a_samples, const float *A,
                                      const int64_t *a2t, float *Y) {
  px_pdl_enter();
  const int M = S * N;
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const int s = r / N, n = r % N;
    const float *a = A + ((size_t)(s % a_samples) * T + (size_t)a2t[n]) * C;
    float *y = Y + (size_t)r * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] += a[c];
  }
}

void be_layernorm(px_backend *b, int M, int C, const float *X, const float *w, const float *bias,
                  float *Y) {
  CTX(b);
  PROF("layernorm");
  if (X != Y && row_ln(g, M, C, const_cast<float *>(X), w, bias, nullptr, nullptr, 1, nullptr, 1, nullptr, Y, 0)) return;
  if (X == Y && row_ln(g, M, C, Y, w, bias, nullptr, nullptr, 1, nullptr, 1, nullptr, Y, 0)) return;
  px_launch(k_layernorm, (M + 7) / 8, 256, 0, g.stream, g.pdl, M, C, X, w, bias, nullptr, nullptr, 1, Y);
  LAUNCHED("layernorm");
}

// An output type the row kernels can write: fp32, bf16 or fp16 (else the op's failure, kept).
static bool out_type_ok(Ctx &g, int t) {
  if (t == PX_F32 || t == PX_BF16 || t == PX_F16) return true;
  keep_failure(g, px_fail(PX_ERR_BACKEND, "%s on %s: unknown element type %d", g.op, g.name, t));
  return false;
}

// AdaLN into Y of type ot; a 16-bit Y is written by the row kernel itself (no conversion pass)
// unless the row is too wide for it.
static void adaln_typed(Ctx &g, int M, int C, const float *X, const float *G, const float *B, int g_rows, void *Y,
                        int ot) {
  if (row_ln(g, M, C, const_cast<float *>(X), nullptr, nullptr, G, B, g_rows, nullptr, 1, nullptr, Y, 1, ot)) return;
  float *y = (float *)Y;
  if (ot) {
    y = f32_scratch(g, (size_t)M * C);
    if (!y) return;
  }
  px_launch(k_layernorm, (M + 7) / 8, 256, 0, g.stream, g.pdl, M, C, X, nullptr, nullptr, G, B, g_rows, y);
  LAUNCHED("adaln");
  if (ot) to_half(g, ot, M, C, y, C, (uint16_t *)Y);
}

void be_adaln(px_backend *b, int M, int C, const float *X, const float *G, const float *B, int g_rows, void *Y,
              px_etype yt) {
  CTX(b);
  PROF(yt != PX_F32 ? "adaln_x16" : "adaln");
  if (out_type_ok(g, yt)) adaln_typed(g, M, C, X, G, B, g_rows, Y, (int)yt);
}

// X[i] * 2^e for n values of 16-bit type t (1 bf16, 2 fp16) to fp32.
__global__ void k_half_to_float(int64_t n, int t, const void *X, float sc, float *Y) {
  px_pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Y[i] = (t == 1 ? load1<1>(X, (size_t)i) : load1<2>(X, (size_t)i)) * sc;
}

// A 16-bit GEMM output (type yt, stored times 2^-ye) for a kernel that takes fp32 rows: the
// fp32 values in the lane's scratch (no later use of the scratch precedes the consumer on the
// stream). fp32 Y is returned as it is.
static const float *rows_f32(Ctx &g, int64_t n, const void *Y, px_etype yt, int ye) {
  if (yt == PX_F32) return (const float *)Y;
  float *t = f32_scratch(g, (size_t)n);
  if (!t || n <= 0) return t;
  px_launch(k_half_to_float, blocks_for(n, 256), 256, 0, g.stream, g.pdl, n, (int)yt, Y, ldexpf(1.0f, ye), t);
  LAUNCHED("half_to_float");
  return t;
}

void be_gated_residual(px_backend *b, int M, int C, float *A, const float *G, int g_rows, const void *Y,
                       px_etype yt, int ye) {
  CTX(b);
  PROF(yt != PX_F32 ? "gated_residual_x16" : "gated_residual");
  if (!out_type_ok(g, yt)) return;
  if (C % 4 == 0 && M > 0 && al16(A) && al16(G) && (yt == PX_F32 ? al16(Y) : (uintptr_t)Y % 8 == 0)) {
    const int64_t n4 = (int64_t)M * (C / 4);
    px_launch(k_rows_update4, blocks_for(n4, 256), 256, 0, g.stream, g.pdl, n4, C / 4, reinterpret_cast<float4 *>(A),
              reinterpret_cast<const float4 *>(G), g_rows, Y, (int)yt, ldexpf(1.0f, ye), 0);
    LAUNCHED("gated_residual4");
    return;
  }
  const float *y = rows_f32(g, (int64_t)M * C, Y, yt, ye);
  if (!y) return;
  const int cols = (C & 3) ? C : C / 4;
  px_launch(k_gated_residual, grid2d(M, cols, threads_for(cols)), threads_for(cols), 0, g.stream, g.pdl, M, C, A, G,
            g_rows, y);
  LAUNCHED("gated_residual");
}

void be_residual_adaln(px_backend *b, int M, int C, float *A, const float *Gr, int gr_rows, const void *Y,
                       px_etype yt, int ye, const float *Gn, const float *Bn, int gn_rows, void *An, px_etype ant) {
  CTX(b);
  PROF(ant != PX_F32 ? "residual_adaln_x16" : "residual_adaln");
  if (!out_type_ok(g, ant) || !out_type_ok(g, yt)) return;
  if (row_ln(g, M, C, A, nullptr, nullptr, Gn, Bn, gn_rows, Gr, gr_rows, Y, An, 2, (int)ant, (int)yt, ye)) return;
  be_gated_residual(b, M, C, A, Gr, gr_rows, Y, yt, ye);
  g.op = "residual_adaln";
  adaln_typed(g, M, C, A, Gn, Bn, gn_rows, An, (int)ant);
}

// The two AdaLNs of an atom block's cross attention in one pass (backend.h adaln_pair), for
// C <= 128 * NV, C % 4 == 0: one warp per row, the row in registers. With Gr, A += Gr * Rr
// first (written back); Y1 = LN(A) * G1 + B1, then Y2 = LN(Y1) * G2 + B2 from the fp32 Y1
// (before it is rounded for its store); both stored as OT. All conditioning rows r % g_rows.
// Against residual_adaln + adaln: one launch and one read of the row instead of two, and the
// fp32 Y1 is never written (at fp16: 4 B per value written and read again, less).
template <int NV, int OT>
__global__ void k_row_ln_pair(int M, int C, float *A, const float *Gr, const void *Rr, int rt, float rsc,
                              const float *G1, const float *B1, const float *G2, const float *B2, int g_rows, void *Y1,
                              void *Y2, int spw) {
  px_pdl_enter();
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  const int C4 = C / 4;
  // spw rows of one conditioning row per warp, as k_row_ln
  const RowGroups rg(M, g_rows, spw);
  for (int64_t q = blockIdx.x * (int64_t)warps + threadIdx.x / 32; q < rg.nq; q += (int64_t)gridDim.x * warps)
  for (int rep = 0; rep < spw; rep++) {
    const int64_t row64 = rg.row(q, rep);
    if (row64 >= M) break;
    const int row = (int)row64;
    float4 v[NV], g1[NV], b1[NV], g2[NV], b2[NV];
    float4 *x4 = reinterpret_cast<float4 *>(A + (size_t)row * C);
    const size_t go = (size_t)(row % g_rows) * C;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int c = lane + 32 * k;
      if (c < C4) {
        v[k] = x4[c];
        g1[k] = reinterpret_cast<const float4 *>(G1 + go)[c];
        b1[k] = reinterpret_cast<const float4 *>(B1 + go)[c];
        g2[k] = reinterpret_cast<const float4 *>(G2 + go)[c];
        b2[k] = reinterpret_cast<const float4 *>(B2 + go)[c];
        if (Gr) {
          const float4 g = reinterpret_cast<const float4 *>(Gr + go)[c];
          const float4 y = load4_scaled(Rr, (size_t)row * C + 4 * c, rt, rsc);
          v[k].x += g.x * y.x;
          v[k].y += g.y * y.y;
          v[k].z += g.z * y.z;
          v[k].w += g.w * y.w;
        }
        s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
      }
    }
    if (Gr) { /* written back after all the row's loads (k_row_ln) */
#pragma unroll
      for (int k = 0; k < NV; k++)
        if (lane + 32 * k < C4) x4[lane + 32 * k] = v[k];
    }
#pragma unroll
    for (int pass = 0; pass < 2; pass++) {
      if (pass) {
        s = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++)
          if (lane + 32 * k < C4) s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
      }
      const float mean = warp_sum(s) / C;
      float ss = 0.0f;
#pragma unroll
      for (int k = 0; k < NV; k++) {
        if (lane + 32 * k < C4) {
          const float a = v[k].x - mean, bb = v[k].y - mean, cc = v[k].z - mean, d = v[k].w - mean;
          ss += (a * a + bb * bb) + (cc * cc + d * d);
        }
      }
      const float rstd = rsqrtf(warp_sum(ss) / C + 1e-5f);
#pragma unroll
      for (int k = 0; k < NV; k++) {
        const int c = lane + 32 * k;
        if (c >= C4) continue;
        const float4 g = pass ? g2[k] : g1[k], bb = pass ? b2[k] : b1[k];
        v[k] = make_float4(g.x * ((v[k].x - mean) * rstd) + bb.x, g.y * ((v[k].y - mean) * rstd) + bb.y,
                           g.z * ((v[k].z - mean) * rstd) + bb.z, g.w * ((v[k].w - mean) * rstd) + bb.w);
        store4<OT>(pass ? Y2 : Y1, (size_t)row * C + 4 * c, v[k]);
      }
    }
  }
}

template <int NV>
static void launch_row_ln_pair(Ctx &g, int ot, int M, int C, float *A, const float *Gr, const void *Rr,
                               int rt, float rsc, const float *G1, const float *B1, const float *G2, const float *B2,
                               int g_rows, void *Y1, void *Y2) {
  const int spw = row_groups(g, M, g_rows);
  const int blocks = group_blocks(M, g_rows, spw);
  if (ot == 0)
    px_launch((k_row_ln_pair<NV, 0>), blocks, 256, 0, g.stream, g.pdl, M, C, A, Gr, Rr, rt, rsc, G1, B1, G2, B2, g_rows,
              Y1, Y2, spw);
  else if (ot == 1)
    px_launch((k_row_ln_pair<NV, 1>), blocks, 256, 0, g.stream, g.pdl, M, C, A, Gr, Rr, rt, rsc, G1, B1, G2, B2, g_rows,
              Y1, Y2, spw);
  else
    px_launch((k_row_ln_pair<NV, 2>), blocks, 256, 0, g.stream, g.pdl, M, C, A, Gr, Rr, rt, rsc, G1, B1, G2, B2, g_rows,
              Y1, Y2, spw);
}

void be_adaln_pair(px_backend *b, int M, int C, float *A, const float *Gr, const void *Rr, px_etype rt, int re,
                   const float *G1, const float *B1, const float *G2, const float *B2, int g_rows, void *Y1, void *Y2,
                   px_etype yt) {
  CTX(b);
  PROF(yt != PX_F32 ? "adaln_pair_x16" : "adaln_pair");
  if (!out_type_ok(g, yt) || !out_type_ok(g, rt) || M <= 0) return;
  auto al = [](const void *p) { return p == nullptr || ((uintptr_t)p % 16) == 0; };
  const int ot = (int)yt;
  if (C % 4 == 0 && C <= 256 && al(A) && al(Gr) && (rt == PX_F32 ? al(Rr) : (uintptr_t)Rr % 8 == 0) && al(G1) &&
      al(B1) && al(G2) && al(B2) && al(Y1) && al(Y2) && (ot == 0 || ((uintptr_t)Y1 % 8 == 0 && (uintptr_t)Y2 % 8 == 0))) {
    const float rsc = ldexpf(1.0f, re);
    if (C <= 128)
      launch_row_ln_pair<1>(g, ot, M, C, A, Gr, Rr, (int)rt, rsc, G1, B1, G2, B2, g_rows, Y1, Y2);
    else
      launch_row_ln_pair<2>(g, ot, M, C, A, Gr, Rr, (int)rt, rsc, G1, B1, G2, B2, g_rows, Y1, Y2);
    LAUNCHED("row_ln_pair");
    return;
  }
  // Other shapes: the residual, then both AdaLNs in fp32 (the second from the first's fp32
  // rows), each converted when 16-bit.
  if (Gr) {
    be_gated_residual(b, M, C, A, Gr, g_rows, Rr, rt, re);
    g.op = "adaln_pair";
  }
  const size_t n = (size_t)M * C;
  float *t1 = ot ? f32_scratch(g, 2 * n) : (float *)Y1;
  if (!t1) return;
  float *t2 = ot ? t1 + n : (float *)Y2;
  px_launch(k_layernorm, (M + 7) / 8, 256, 0, g.stream, g.pdl, M, C, A, nullptr, nullptr, G1, B1, g_rows, t1);
  px_launch(k_layernorm, (M + 7) / 8, 256, 0, g.stream, g.pdl, M, C, t1, nullptr, nullptr, G2, B2, g_rows, t2);
  LAUNCHED("adaln_pair");
  if (ot) {
    to_half(g, ot, M, C, t1, C, (uint16_t *)Y1);
    to_half(g, ot, M, C, t2, C, (uint16_t *)Y2);
  }
}

void be_sigmoid_mul(px_backend *b, int M, int C, float *O, int ldo, const float *P, int ldp) {
  CTX(b);
  PROF("sigmoid_mul");
  const int cols = ((C | ldo | ldp) & 3) ? C : C / 4;
  px_launch(k_sigmoid_mul, grid2d(M, cols, threads_for(cols)), threads_for(cols), 0, g.stream, g.pdl, M, C, O, ldo, P,
            ldp);
  LAUNCHED("sigmoid_mul");
}

void be_swiglu(px_backend *b, int M, int H, const void *X, void *Y, px_etype xt, px_etype yt, int e) {
  CTX(b);
  PROF(yt != PX_F32 ? "swiglu_x16" : "swiglu");
  // The kernel's instances: fp32 -> any type, or a 16-bit input to the same 16-bit type;
  // only a 16-bit output is scaled.
  const bool ok = (xt == PX_F32 ? (yt == PX_F32 || yt == PX_BF16 || yt == PX_F16) : (xt == PX_BF16 || xt == PX_F16) && yt == xt) &&
                  (yt != PX_F32 || e == 0);
  if (!ok) {
    keep_failure(g, px_fail(PX_ERR_BACKEND, "swiglu on %s: no kernel for input type %d, output type %d, e = %d", g.name,
                            (int)xt, (int)yt, e));
    return;
  }
  swiglu_typed(g, (int)xt, (int)yt, M, H, X, Y, ldexpf(1.0f, -e));
}

void be_activation(px_backend *b, int64_t n, float *X, int kind) {
  CTX(b);
  PROF("activation");
  if (n > 0 && n % 4 == 0 && (uintptr_t)X % 16 == 0) {
    px_launch(k_activation4, blocks_for(n / 4, 256), 256, 0, g.stream, g.pdl, n / 4, reinterpret_cast<float4 *>(X),
              kind);
    LAUNCHED("activation4");
    return;
  }
  px_launch(k_activation, blocks_for(n, 256), 256, 0, g.stream, g.pdl, n, X, kind);
  LAUNCHED("activation");
}

void be_add_rows(px_backend *b, int M, int C, float *Y, const float *A, int a_rows) {
  CTX(b);
  PROF("add_rows");
  if (C % 4 == 0 && M > 0 && al16(Y) && al16(A)) {
    const int64_t n4 = (int64_t)M * (C / 4);
    px_launch(k_rows_update4, blocks_for(n4, 256), 256, 0, g.stream, g.pdl, n4, C / 4, reinterpret_cast<float4 *>(Y),
              reinterpret_cast<const float4 *>(A), a_rows, nullptr, 0, 1.0f, 1);
    LAUNCHED("add_rows4");
    return;
  }
  px_launch(k_add_rows, grid2d(M, C, threads_for(C)), threads_for(C), 0, g.stream, g.pdl, M, C, Y, A, a_rows);
  LAUNCHED("add_rows");
}

void be_atoms_to_tokens(px_backend *b, int S, int N, int T, int C, const float *X,
                        const int64_t *a2t, const float *inv_count, float *Y) {
  CTX(b);
  PROF("atoms_to_tokens");
  dim3 grid(T, S);
  // 192 threads: one float4 of the model's 768 channels each.
  px_launch(k_atoms_to_tokens, grid, 192, 0, g.stream, g.pdl, N, T, C, X, a2t, inv_count, Y);
  LAUNCHED("atoms_to_tokens");
}

void be_tokens_to_atoms_add(px_backend *b, int S, int N, int T, int C, int a_samples,
                            const float *A, const int64_t *a2t, float *Y) {
  CTX(b);
  PROF("tokens_to_atoms_add");
  if (C % 4 == 0 && S > 0 && N > 0 && al16(A) && al16(Y)) {
    const int64_t n4 = (int64_t)S * N * (C / 4);
    px_launch(k_tokens_to_atoms_add4, blocks_for(n4, 256), 256, 0, g.stream, g.pdl, n4, N, T, C / 4, a_samples,
              reinterpret_cast<const float4 *>(A), a2t, reinterpret_cast<float4 *>(Y));
    LAUNCHED("tokens_to_atoms_add4");
    return;
  }
  px_launch(k_tokens_to_atoms_add, grid2d(S * N, C, threads_for(C)), threads_for(C), 0, g.stream, g.pdl, S, N, T, C,
            a_samples, A, a2t, Y);
  LAUNCHED("tokens_to_atoms_add");
}

__global__ void k_edm(int mode, int S, int N, const float *x, const float *t, int t_stride, float sigma,
                      const float *rup, float *out) {
  px_pdl_enter();
  const int64_t total = (int64_t)S * N * 3;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float th = t[i / (3 * (int64_t)N) * t_stride], sr = th / sigma;
    if (mode == 0) {
      out[i] = x[i] / sqrtf(sigma * sigma + th * th);
    } else {
      out[i] = 1.0f / (1.0f + sr * sr) * x[i] + th / sqrtf(1.0f + sr * sr) * rup[i];
    }
  }
}

__global__ void k_fourier(int S, int nf, const float *t, float sigma, const float *w, const float *b,
                          float *F) {
  px_pdl_enter();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < S * nf; i += gridDim.x * blockDim.x) {
    const int u = i / nf, f = i % nf;
    const float tau = logf(t[u] / sigma) / 4.0f;
    F[i] = cosf(2.0f * 3.14159265358979323846f * (tau * w[f] + b[f]));
  }
}

__global__ void k_rows_plus_vec(int S, int T, int C, const float *A, const float *v, float *Y) {
  px_pdl_enter();
  const int M = S * T;
  for (int r = blockIdx.y; r < M; r += gridDim.y) {
    const float *a = A + (size_t)(r % T) * C, *vv = v + (size_t)(r / T) * C;
    float *y = Y + (size_t)r * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) y[c] = a[c] + vv[c];
  }
}

// The noise-level conditioning: the Fourier features, their LayerNorm, Lin_n through this
// backend's GEMM (at the view's precision), then s0 broadcast plus each level's row.
void be_noise_cond(px_backend *b, int S, int T, int nf, int C, const float *t, float sigma, const float *w,
                   const float *bias, const float *ln_w, px_weight Wn, const float *s0, float *work, float *s) {
  CTX(b);
  float *F = work, *Fn = F + (size_t)S * nf, *v = Fn + (size_t)S * nf;
  px_launch(k_fourier, blocks_for((int64_t)S * nf, 256), 256, 0, g.stream, g.pdl, S, nf, t, sigma, w, bias, F);
  LAUNCHED("noise_cond (fourier)");
  be_layernorm(b, S, nf, F, ln_w, NULL, Fn);
  be_linear(b, S, C, nf, Fn, nf, Wn, NULL, v, C, 0, 1, PX_F32, PX_F32);
  px_launch(k_rows_plus_vec, grid2d(S * T, C, threads_for(C)), threads_for(C), 0, g.stream, g.pdl, S, T, C, s0, v, s);
  LAUNCHED("noise_cond (rows_plus_vec)");
}

void be_edm(px_backend *b, int mode, int S, int N, const float *x, const float *t, int t_stride, float sigma,
            const float *rup, float *out) {
  CTX(b);
  PROF("edm");
  px_launch(k_edm, blocks_for((int64_t)S * N * 3, 256), 256, 0, g.stream, g.pdl, mode, S, N, x, t, t_stride, sigma, rup,
            out);
  LAUNCHED("edm");
}

}  // namespace pxcuda
