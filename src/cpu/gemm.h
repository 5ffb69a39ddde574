/* The CPU backend's own fp32 GEMM for Y = X W^T (X [M, K] rows, W [N, K] rows), x86 only.
 *
 * Why not cblas for these: the backend cuts every GEMM into tiles of one sample's rows (a
 * sample's bits must not depend on the batch or the thread count), and a BLAS call packs both
 * operands again for every tile. At 80 tokens that repacking of the weights was a quarter of
 * the GEMM time (perf: sgemm_incopy 11.5% of the call against 43.6% in the kernel), and tiles
 * small enough to spread over 16 threads would repack the activations too.
 *
 * This kernel packs nothing: every output is a dot product of an X row and a W row, both
 * contiguous along K, accumulated in vector lanes (lane l sums k = l, l + V, l + 2V, ...; the
 * K tail is a masked load, zeros elsewhere) and reduced by one fixed tree. Each output's
 * arithmetic therefore depends on K alone, never on which tile, thread or microkernel shape
 * computed it, so tiles can be cut freely. A microkernel keeps MR x NR accumulators in
 * registers: MR X-vector and NR W-vector loads feed MR * NR FMAs.
 *
 * Two variants, chosen at run time by the CPU (one per process, so results never depend on
 * anything but the machine): AVX-512 (16 lanes, 4 x 6 outputs) and AVX2 + FMA (8 lanes,
 * 3 x 4 outputs). Elsewhere px_gemm_isa() is 0 and the backend uses cblas. */
#ifndef PX_CPU_GEMM_H
#define PX_CPU_GEMM_H

#include <stddef.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(PX_NO_OWN_GEMM)
#define PX_OWN_GEMM 1
#include <immintrin.h>

enum { PX_GEMM_BLAS = 0, PX_GEMM_AVX2 = 2, PX_GEMM_AVX512 = 3 };

/* ---------------------------------------------------------------- AVX-512 -- */
/* GCC tuned for Zen (-mtune=native here) folds each W load into every FMA that uses it (MR
 * loads instead of one): measured 2x slower, so GCC tunes these generically. */
#if defined(__clang__)
#define PX_TUNE ""
#else
#define PX_TUNE ",tune=generic"
#endif
#define PX_TGT512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma" PX_TUNE)))

/* The fixed reduction tree of 16 lanes: halves, then quarters, ... (same for every output). */
PX_TGT512 static inline float px_hsum512(__m512 v) {
  __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

/* One MR x NR block of dot products (MR, NR compile-time constants after inlining). */
#define PX_DOT512_BODY(MR, NR)                                                                  \
  __m512 acc[MR][NR];                                                                           \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();                               \
  int k = 0;                                                                                    \
  for (; k + 16 <= K; k += 16) {                                                                \
    __m512 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm512_loadu_ps(X + (size_t)i * ldx + k);              \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m512 wv = _mm512_loadu_ps(W + (size_t)j * K + k);                                 \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  if (k < K) {                                                                                  \
    const __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);                                      \
    __m512 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm512_maskz_loadu_ps(m, X + (size_t)i * ldx + k);     \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m512 wv = _mm512_maskz_loadu_ps(m, W + (size_t)j * K + k);                        \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  PX_DOT512_REDUCE(MR, NR)

#define PX_DOT512_REDUCE(MR, NR)                                                                \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) out[i * PX_GEMM_MAXNR + j] = px_hsum512(acc[i][j]);

#define PX_GEMM_MAXNR 6

/* px_hsum512 of 16 vectors at once, the same tree for each (so the same bits): r[4 l + g] is
 * the sum of v[4 g + l]. Two vectors' quarters are paired before each add, so one add works
 * for 2, 4, 8 and 16 sums in turn: 45 instructions for 16 sums instead of ~130. */
PX_TGT512 static inline void px_hsum512_x16(const __m512 *v, float *r) {
  __m512 t[4], u[2];
  for (int g = 0; g < 4; g++) {
    __m512 s[2];
    for (int p = 0; p < 2; p++) { /* [a8.lo a8.hi b8.lo b8.hi], a8 = lo256(a) + hi256(a) */
      const __m512 a = v[4 * g + 2 * p], b = v[4 * g + 2 * p + 1];
      s[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    /* [a4 b4 c4 d4], a4 = a8.lo + a8.hi */
    t[g] = _mm512_add_ps(_mm512_shuffle_f32x4(s[0], s[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(s[0], s[1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  for (int p = 0; p < 2; p++) /* per 128-bit lane l: [x0 + x2, x1 + x3] of groups 2p and 2p + 1 */
    u[p] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * p], t[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(t[2 * p], t[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  /* per lane l: [g0, g1, g2, g3] of member l */
  _mm512_storeu_ps(r, _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1))));
}

PX_TGT512 static inline __attribute__((always_inline)) void px_dot512_4x6(int K, const float *X, int ldx,
                                                                        const float *W, float *out) {
#undef PX_DOT512_REDUCE
#define PX_DOT512_REDUCE(MR, NR)                                                                \
  {                                                                                             \
    __m512 v[16];                                                                               \
    float r[16];                                                                                \
    for (int k2 = 0; k2 < 16; k2++) v[k2] = acc[k2 / 4][k2 % 4];                                \
    px_hsum512_x16(v, r);                                                                       \
    for (int k2 = 0; k2 < 16; k2++) out[(k2 / 4) * PX_GEMM_MAXNR + k2 % 4] = r[4 * (k2 % 4) + k2 / 4]; \
    for (int k2 = 0; k2 < 8; k2++) v[k2] = acc[k2 / 2][4 + k2 % 2];                            \
    for (int k2 = 8; k2 < 16; k2++) v[k2] = _mm512_setzero_ps();                                \
    px_hsum512_x16(v, r);                                                                       \
    for (int k2 = 0; k2 < 8; k2++) out[(k2 / 2) * PX_GEMM_MAXNR + 4 + k2 % 2] = r[4 * (k2 % 4) + k2 / 4]; \
  }
  PX_DOT512_BODY(4, 6)
#undef PX_DOT512_REDUCE
#define PX_DOT512_REDUCE(MR, NR)                                                                \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) out[i * PX_GEMM_MAXNR + j] = px_hsum512(acc[i][j]);
}
/* Edge blocks: the same per-output arithmetic, fewer outputs. */
PX_TGT512 static void px_dot512_1x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT512_BODY(1, 1)
}
PX_TGT512 static void px_dot512_4x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT512_BODY(4, 1)
}
PX_TGT512 static void px_dot512_1x6(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT512_BODY(1, 6)
}

/* ------------------------------------------------------------------- AVX2 -- */
#define PX_TGT256 __attribute__((target("avx2,fma" PX_TUNE)))

PX_TGT256 static inline float px_hsum256(__m256 v) {
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

#define PX_DOT256_BODY(MR, NR)                                                                  \
  __m256 acc[MR][NR];                                                                           \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();                               \
  int k = 0;                                                                                    \
  for (; k + 8 <= K; k += 8) {                                                                  \
    __m256 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm256_loadu_ps(X + (size_t)i * ldx + k);              \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m256 wv = _mm256_loadu_ps(W + (size_t)j * K + k);                                 \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  if (k < K) {                                                                                  \
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(K - k),                              \
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));            \
    __m256 xv[MR];                                                                              \
    for (int i = 0; i < MR; i++) xv[i] = _mm256_maskload_ps(X + (size_t)i * ldx + k, m);        \
    for (int j = 0; j < NR; j++) {                                                              \
      const __m256 wv = _mm256_maskload_ps(W + (size_t)j * K + k, m);                           \
      for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);           \
    }                                                                                           \
  }                                                                                             \
  for (int i = 0; i < MR; i++)                                                                  \
    for (int j = 0; j < NR; j++) out[i * PX_GEMM_MAXNR + j] = px_hsum256(acc[i][j]);

PX_TGT256 static inline __attribute__((always_inline)) void px_dot256_3x4(int K, const float *X, int ldx,
                                                                        const float *W, float *out) {
  PX_DOT256_BODY(3, 4)
}
PX_TGT256 static void px_dot256_1x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT256_BODY(1, 1)
}
PX_TGT256 static void px_dot256_3x1(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT256_BODY(3, 1)
}
PX_TGT256 static void px_dot256_1x4(int K, const float *X, int ldx, const float *W, float *out) {
  PX_DOT256_BODY(1, 4)
}

/* Store an mr x nr block of sums: y = sum (+ bias) (or y = (y + bias) + sum when accumulating),
 * ReLU'd when asked. */
static inline __attribute__((always_inline)) void px_gemm_store(const float *out, int mr, int nr, float *Y,
                                                                int ldy, const float *bias, int accumulate,
                                                                int relu) {
  for (int i = 0; i < mr; i++) {
    float *y = Y + (size_t)i * ldy;
    for (int j = 0; j < nr; j++) {
      float v = out[i * PX_GEMM_MAXNR + j];
      if (accumulate) v += bias ? y[j] + bias[j] : y[j];
      else if (bias) v += bias[j];
      if (relu) v = v > 0.0f ? v : 0.0f;
      y[j] = v;
    }
  }
}

/* Rows of X per block: about 96 KB of them, a multiple of 12 (both kernels' heights divide it). */
static inline int px_gemm_row_block(int K) {
  int rb = (24 * 1024) / (K > 0 ? K : 1) / 12 * 12;
  return rb < 12 ? 12 : rb;
}

/* The outputs [0, mr) x [0, nc) of one tile. The caller keeps the tile's nc W rows small
 * enough for L2; X goes through in blocks of px_gemm_row_block rows (also L2), and within a
 * block, column blocks of NR W rows (L1) meet every MR rows of X in turn. */
#define PX_GEMM_TILE(NAME, TGT, MR, NR, FULL, ROW1, COL1, ONE)                                       \
  TGT static void NAME(int mr_all, int nc, int K, const float *X_all, int ldx, const float *W,       \
                       const float *bias, float *Y_all, int ldy, int accumulate, int relu) {         \
    float out[MR * PX_GEMM_MAXNR];                                                               \
    const int RB = px_gemm_row_block(K);                                                         \
    for (int rb = 0; rb < mr_all; rb += RB) {                                                    \
    const int mr = mr_all - rb < RB ? mr_all - rb : RB;                                          \
    const float *X = X_all + (size_t)rb * ldx;                                                   \
    float *Y = Y_all + (size_t)rb * ldy;                                                         \
    for (int c = 0; c < nc; c += NR) {                                                           \
      const int nr = nc - c < NR ? nc - c : NR;                                                  \
      const float *w = W + (size_t)c * K;                                                        \
      const float *bb = bias ? bias + c : NULL;                                                  \
      for (int r = 0; r < mr; r += MR) {                                                         \
        const int rr = mr - r < MR ? mr - r : MR;                                                \
        const float *x = X + (size_t)r * ldx;                                                    \
        if (rr == MR && nr == NR) {                                                              \
          FULL(K, x, ldx, w, out);                                                               \
        } else if (nr == NR) {                                                                   \
          for (int i = 0; i < rr; i++) ROW1(K, x + (size_t)i * ldx, ldx, w, out + i * PX_GEMM_MAXNR); \
        } else if (rr == MR) {                                                                   \
          for (int j = 0; j < nr; j++) {                                                         \
            float o1[MR * PX_GEMM_MAXNR];                                                        \
            COL1(K, x, ldx, w + (size_t)j * K, o1);                                              \
            for (int i = 0; i < MR; i++) out[i * PX_GEMM_MAXNR + j] = o1[i * PX_GEMM_MAXNR];     \
          }                                                                                      \
        } else {                                                                                 \
          for (int i = 0; i < rr; i++)                                                           \
            for (int j = 0; j < nr; j++) {                                                       \
              float o1[PX_GEMM_MAXNR];                                                           \
              ONE(K, x + (size_t)i * ldx, ldx, w + (size_t)j * K, o1);                           \
              out[i * PX_GEMM_MAXNR + j] = o1[0];                                                \
            }                                                                                    \
        }                                                                                        \
        px_gemm_store(out, rr, nr, Y + (size_t)r * ldy + c, ldy, bb, accumulate, relu);          \
      }                                                                                          \
    }                                                                                            \
    }                                                                                            \
  }

PX_GEMM_TILE(px_gemm_tile512, PX_TGT512, 4, 6, px_dot512_4x6, px_dot512_1x6, px_dot512_4x1, px_dot512_1x1)
PX_GEMM_TILE(px_gemm_tile256, PX_TGT256, 3, 4, px_dot256_3x4, px_dot256_1x4, px_dot256_3x1, px_dot256_1x1)

/* Which variant this CPU runs (fixed for the process). */
static inline int px_gemm_isa(void) {
  static int isa = -1;
  if (isa < 0) {
    __builtin_cpu_init();
    int v = PX_GEMM_BLAS;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
      v = PX_GEMM_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      v = PX_GEMM_AVX2;
    isa = v;
  }
  return isa;
}

static inline void px_gemm_tile(int isa, int mr, int nc, int K, const float *X, int ldx, const float *W,
                                const float *bias, float *Y, int ldy, int accumulate, int relu) {
  if (isa == PX_GEMM_AVX512) px_gemm_tile512(mr, nc, K, X, ldx, W, bias, Y, ldy, accumulate, relu);
  else px_gemm_tile256(mr, nc, K, X, ldx, W, bias, Y, ldy, accumulate, relu);
}

#else
#define PX_OWN_GEMM 0
enum { PX_GEMM_BLAS = 0, PX_GEMM_AVX2 = 2, PX_GEMM_AVX512 = 3 };
static inline int px_gemm_isa(void) { return PX_GEMM_BLAS; }
static inline void px_gemm_tile(int isa, int mr, int nc, int K, const float *X, int ldx, const float *W,
                                const float *bias, float *Y, int ldy, int accumulate, int relu) {
  (void)isa, (void)mr, (void)nc, (void)K, (void)X, (void)ldx, (void)W, (void)bias, (void)Y, (void)ldy;
  (void)accumulate, (void)relu;
}
#endif

#endif
